# Shared helpers for scripts/test.sh and scripts/demo.sh (sourced, not run).

# Debian packages the build and tests need.
JBTREE_PACKAGES=(meson ninja-build g++ clang doctest-dev libbenchmark-dev libabsl-dev
                 libclang-rt-14-dev pkg-config libext2fs-dev e2fsprogs liblmdb-dev attr cmake groff-base
                 linux-headers-amd64 make binutils linux-source-6.1 xz-utils)

# Install whichever of the given packages (default: all of the above) are
# missing. As root: apt-get update (only if something is missing) + install.
# Otherwise: print what to install and exit 1.
jbtree_ensure_packages() {
    local pkgs=("$@") missing=() p
    [ ${#pkgs[@]} -gt 0 ] || pkgs=("${JBTREE_PACKAGES[@]}")
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# meson setup that works on a fresh or an existing build directory:
# reconfigure an existing one, and wipe it if reconfiguring fails.
#   jbtree_meson_setup BUILDDIR [meson options...]
jbtree_meson_setup() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" || meson setup --wipe "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# The release build of the examples and the tool (shared by demo.sh and
# test.sh); more meson options may follow (test.sh adds -Dwerror=true).
jbtree_build_release() {
    CXX=${JBTREE_CXX:-g++} jbtree_meson_setup build/release -Dbuildtype=release -Db_ndebug=true \
        -Dexamples=enabled -Dtool=enabled -Dtests=disabled -Dbench=disabled -Dfuzz=disabled "$@"
    meson compile -C build/release
}
