// jbtree-e2fs against debugfs: on images made by mkfs.ext4 -d from generated
// trees and on the clean images of ../shared/corpus/ext4/, `owner` names the
// inode debugfs icheck names (among all owners) for every block, and
// `paths` gives exactly debugfs ncheck's paths for every inode; on the
// damaged images the tool reports or refuses, never crashes or hangs.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"
#include "ext4_image.hpp"
#include "crashed_maps.hpp"

#include <jbtree/ext2fs/map_file.hpp>
#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/journal/jbd2_journal.hpp>
#include <jbtree/volume/volume.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "ext4";
// The tool runs under the sanitizers of this build: their reports must not
// look like the tool's own exit codes (0..4).
const std::string tool = std::string("ASAN_OPTIONS=exitcode=99 UBSAN_OPTIONS=halt_on_error=1:exitcode=98 ") + JBTREE_E2FS_TOOL;

struct output {
    int status = -1; // exit status, or 128 + signal
    std::string out;
};

// stdout; stderr too with `with_stderr`, else dropped.
output capture(const std::string& cmd, bool with_stderr = false) {
    output o;
    FILE* p = popen((cmd + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
    if (!p) return o;
    char buf[65536];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
    const int st = pclose(p);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return o;
}
// stdout and stderr together.
output capture_all(const std::string& cmd) { return capture(cmd, true); }
int run(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// stdout and stderr apart, and how long it took.
struct split_output {
    int status = -1;
    std::string out, err;
    double seconds = 0;
};
split_output capture_split(const std::string& cmd) {
    const fs::path errf = fs::temp_directory_path() / ("jbtree-e2fs-stderr-" + std::to_string(getpid()));
    const auto t0 = std::chrono::steady_clock::now();
    const output o = capture("{ { " + cmd + " ; } 2>'" + errf.string() + "' ; }"); // capture() sends the outer stderr away
    split_output r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.status = o.status;
    r.out = o.out;
    std::ifstream in(errf, std::ios::binary);
    r.err.assign(std::istreambuf_iterator<char>(in), {});
    fs::remove(errf);
    return r;
}

// The text is exactly one JSON object (then a newline): its members, the
// strings decoded, anything else as written; ok false if it is not.
struct json_object {
    bool ok = false;
    std::map<std::string, std::string> members;
    // A member's value, or "<absent>".
    std::string operator[](const std::string& name) const {
        const auto it = members.find(name);
        return it == members.end() ? "<absent>" : it->second;
    }
};
json_object parse_json_object(const std::string& text) {
    json_object o;
    std::size_t i = 0;
    auto ws = [&] {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) ++i;
    };
    auto str = [&](std::string& out) {
        if (i >= text.size() || text[i] != '"') return false;
        for (++i; i < text.size(); ++i) {
            const char c = text[i];
            if (c == '"') {
                ++i;
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20) return false;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (++i >= text.size()) return false;
            const char e = text[i];
            if (e == 'u') {
                if (i + 4 >= text.size()) return false;
                const std::string hex = text.substr(i + 1, 4);
                if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return false;
                out += static_cast<char>(std::strtoul(hex.c_str(), nullptr, 16) & 0xFF); // the tool escapes bytes
                i += 4;
            } else if (std::string("\"\\/bfnrt").find(e) != std::string::npos) {
                out += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            } else return false;
        }
        return false;
    };
    std::function<bool()> value = [&]() -> bool {
        ws();
        if (i >= text.size()) return false;
        const char c = text[i];
        std::string ignored;
        if (c == '"') return str(ignored);
        if (c == '{' || c == '[') {
            const char close = c == '{' ? '}' : ']';
            ++i;
            ws();
            if (i < text.size() && text[i] == close) return ++i, true;
            for (;;) {
                if (c == '{') {
                    ws();
                    std::string k;
                    if (!str(k)) return false;
                    ws();
                    if (i >= text.size() || text[i++] != ':') return false;
                }
                if (!value()) return false;
                ws();
                if (i < text.size() && text[i] == ',') {
                    ++i;
                    continue;
                }
                if (i < text.size() && text[i] == close) return ++i, true;
                return false;
            }
        }
        for (const char* lit : {"true", "false", "null"})
            if (text.compare(i, std::strlen(lit), lit) == 0) return i += std::strlen(lit), true;
        const std::size_t start = i;
        if (text[i] == '-') ++i;
        while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.' || text[i] == 'e' ||
                                   text[i] == 'E' || text[i] == '+' || text[i] == '-'))
            ++i;
        return i > start && std::isdigit(static_cast<unsigned char>(text[i - 1]));
    };
    ws();
    if (i >= text.size() || text[i] != '{') return o;
    ++i;
    ws();
    if (i < text.size() && text[i] == '}') ++i;
    else
        for (;;) {
            ws();
            std::string k;
            if (!str(k)) return o;
            ws();
            if (i >= text.size() || text[i++] != ':') return o;
            ws();
            const std::size_t start = i;
            std::string v;
            if (i < text.size() && text[i] == '"') {
                if (!str(v)) return o;
            } else {
                if (!value()) return o;
                v = text.substr(start, i - start);
            }
            if (o.members.count(k)) return o; // a member twice
            o.members[k] = v;
            ws();
            if (i < text.size() && text[i] == ',') {
                ++i;
                continue;
            }
            if (i < text.size() && text[i] == '}') {
                ++i;
                break;
            }
            return o;
        }
    ws();
    o.ok = i == text.size(); // nothing after the one object
    return o;
}

// "N\tX" lines after the header.
std::vector<std::pair<std::string, std::string>> rows(const std::string& text) {
    std::vector<std::pair<std::string, std::string>> v;
    std::istringstream in(text);
    std::string line;
    bool header = true;
    while (std::getline(in, line)) {
        if (header) {
            header = false;
            continue;
        }
        const auto tab = line.find('\t');
        if (tab == std::string::npos) continue;
        v.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    }
    return v;
}

// debugfs names journal, resize and bad-block inodes by number; jbtree by
// their special owner.
std::string as_tool_owner(const std::string& icheck_inode) {
    if (icheck_inode == "8") return "<journal>";
    if (icheck_inode == "7") return "<reserved GDT>";
    if (icheck_inode == "1") return "<unknown>";
    if (icheck_inode == "5") return "<jbtree maps>"; // the map file, after build
    return icheck_inode;
}

std::string join(const std::vector<std::uint64_t>& v) {
    std::string s;
    for (auto x : v) s += " " + std::to_string(x);
    return s;
}

struct compare_stats {
    std::uint64_t blocks = 0, owned = 0, shared = 0, inodes = 0, paths = 0;
};

// Compare owner and paths with icheck and ncheck on `img`.
void compare_with_debugfs(const std::string& img, std::uint64_t nblocks, std::uint64_t ninodes, compare_stats& st,
                          const std::vector<std::uint64_t>& also = {}) {
    // Blocks: all of them up to 4096, else an even sample of 4096, and `also`.
    std::vector<std::uint64_t> blocks = also;
    const std::uint64_t step = nblocks > 4096 ? nblocks / 4096 : 1;
    for (std::uint64_t b = 0; b < nblocks; b += step) blocks.push_back(b);
    for (std::size_t i = 0; i < blocks.size(); i += 512) {
        const std::vector<std::uint64_t> part(blocks.begin() + static_cast<long>(i),
                                              blocks.begin() + static_cast<long>(std::min(blocks.size(), i + 512)));
        const output ic = capture("debugfs -R 'icheck" + join(part) + "' '" + img + "'");
        const output ow = capture(tool + " owner '" + img + "'" + join(part));
        REQUIRE(ic.status == 0);
        REQUIRE((ow.status == 0 || ow.status == 1));
        std::map<std::string, std::set<std::string>> owners;
        for (auto& [b, o] : rows(ow.out)) owners[b].insert(o);
        for (auto& row : rows(ic.out)) { // not [b, o]: CAPTURE's lambda, and clang 14 cannot capture bindings
            auto& b = row.first;
            auto& o = row.second;
            CAPTURE(b);
            CAPTURE(o);
            ++st.blocks;
            if (o == "<block not found>") continue; // free, or static metadata (jbtree names its special owner)
            ++st.owned;
            const auto it = owners.find(b);
            REQUIRE(it != owners.end());
            INFO("jbtree owners: " << [&] {
                std::string s;
                for (auto& x : it->second) s += x + " ";
                return s;
            }());
            REQUIRE(it->second.count(as_tool_owner(o)) == 1);
            if (it->second.size() > 1) ++st.shared;
        }
    }
    // Inodes: all up to 1024.
    std::vector<std::uint64_t> inodes;
    for (std::uint64_t i = 1; i <= std::min<std::uint64_t>(ninodes, 1024); ++i) inodes.push_back(i);
    for (std::size_t i = 0; i < inodes.size(); i += 256) {
        const std::vector<std::uint64_t> part(inodes.begin() + static_cast<long>(i),
                                              inodes.begin() + static_cast<long>(std::min(inodes.size(), i + 256)));
        const output nc = capture("debugfs -R 'ncheck" + join(part) + "' '" + img + "'");
        const output pa = capture(tool + " paths '" + img + "'" + join(part));
        REQUIRE(nc.status == 0);
        REQUIRE((pa.status == 0 || pa.status == 1));
        std::set<std::pair<std::string, std::string>> want, got;
        for (auto [ino, p] : rows(nc.out)) {
            if (p.rfind("//", 0) == 0) p.erase(0, 1); // ncheck prints entries of the root as "//name"
            want.insert({ino, p});
        }
        for (auto& r : rows(pa.out))
            if (r.first != "2") got.insert(r); // ncheck does not name the root itself
        CHECK(got == want);
        st.paths += got.size();
    }
    st.inodes += inodes.size();
}

std::uint64_t field(const std::string& img, const std::string& name) {
    const output o = capture("dumpe2fs -h '" + img + "' | grep '^" + name + ":'");
    const auto colon = o.out.find(':');
    return colon == std::string::npos ? 0 : std::strtoull(o.out.c_str() + colon + 1, nullptr, 10);
}

bool have_tools() {
    return run("mkfs.ext4 -V >/dev/null 2>&1") == 0 && run("debugfs -V >/dev/null 2>&1") == 0;
}

// A new directory under /tmp for one test case (empty path on failure).
fs::path make_temp_dir() {
    char t[] = "/tmp/jbtree-e2fs-XXXXXX";
    return mkdtemp(t) ? fs::path(t) : fs::path();
}

// The start of a test case that needs mkfs.ext4 and debugfs: a new directory
// under /tmp for it, or, without the tools, an empty path after saying SKIP.
fs::path case_dir_or_skip() {
    if (!have_tools()) {
        MESSAGE("SKIP: mkfs.ext4 or debugfs not installed");
        return {};
    }
    const fs::path t = make_temp_dir();
    REQUIRE(!t.empty());
    return t;
}


int fsck_n(const fs::path& img) { return run("e2fsck -fn '" + img.string() + "' >/dev/null 2>&1"); }

// Every regular file under `tree` reads back the same through a loop mount
// of `img`. Returns "" when it does, "SKIP: ..." when mounting is not
// possible here, else what differed.
std::string mount_and_compare(const fs::path& img, const fs::path& tree, std::size_t& files) {
    if (const std::string why = ext4img::loop_mount_skip_reason(); !why.empty()) return "SKIP: " + why;
    ext4img::loop_mount m(img); // read-write: the kernel updates the superblock
    if (!m.ok()) return "mount failed: " + m.error() + "\n" + m.kernel_log();
    std::string bad;
    for (const auto& e : fs::recursive_directory_iterator(tree)) {
        if (!e.is_regular_file() || e.is_symlink()) continue;
        const std::string rel = fs::relative(e.path(), tree).string();
        std::vector<unsigned char> want, got;
        if (!ext4img::read_file(e.path(), want) || !m.read(rel, got) || want != got) {
            bad += rel + " ";
            continue;
        }
        ++files;
    }
    if (!m.unmount()) return "umount failed";
    return bad.empty() ? "" : "files differ through the mount: " + bad;
}

std::string md5(const fs::path& img) { return capture("md5sum < '" + img.string() + "'").out; }

// A whole file's bytes.
std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Run debugfs -w over a file of commands (one a line); its complaints
// about single commands (a write that finds no room) are ignored.
void debugfs_script(const fs::path& img, const fs::path& dir, const std::vector<std::string>& cmds) {
    const fs::path f = dir / "debugfs.cmds";
    {
        std::ofstream out(f);
        for (const std::string& c : cmds) out << c << "\n";
    }
    run("debugfs -w -f '" + f.string() + "' '" + img.string() + "' >/dev/null 2>&1");
    fs::remove(f);
}

bool last_block_in_use(const fs::path& img) {
    const std::uint64_t n = field(img.string(), "Block count");
    return n && capture("debugfs -R 'testb " + std::to_string(n - 1) + "' '" + img.string() + "' 2>&1").out.find("marked in use") !=
                    std::string::npos;
}

// build refuses at once and writes nothing: exit 4, within the time
// bound, "not enough contiguous free space (need N blocks, largest free
// run M)" on stderr, with --json the no_space object carrying N and M.
void expect_no_space_refusal(const fs::path& img) {
    const std::string before = md5(img);
    for (const bool json : {false, true}) {
        CAPTURE(json);
        const split_output r = capture_split("timeout 60 env " + tool + " build " + (json ? "--json " : "") + "'" + img.string() + "'");
        INFO("stdout: " << r.out);
        INFO("stderr: " << r.err);
        CHECK(r.status == 4); // 124: timeout killed it
        CHECK(r.seconds < 60);
        const auto at = r.err.find("not enough contiguous free space (need ");
        REQUIRE(at != std::string::npos);
        unsigned long long need = 0, largest = ~0ull;
        REQUIRE(std::sscanf(r.err.c_str() + at, "not enough contiguous free space (need %llu blocks, largest free run %llu)",
                            &need, &largest) == 2);
        CHECK(largest < need);
        if (json) {
            const json_object o = parse_json_object(r.out);
            REQUIRE(o.ok);
            CHECK(o.members.count("error"));
            CHECK(o["error"] == "no_space");
            CHECK(o["status"] == "4");
            CHECK(o["built"] == "false");
            CHECK(o["need_blocks"] == std::to_string(need));
            CHECK(o["largest_free_run"] == std::to_string(largest));
            CHECK(r.err.find("jbtree-e2fs: " + o["message"]) != std::string::npos);
        } else {
            CHECK(r.out.empty());
        }
        CHECK(md5(img) == before); // refused before anything was written
    }
}

// `args` fails: exit `status`, a message on stderr; with --json (unless
// text_only) also one JSON object on stdout with "error" `code`, "status"
// and "message" (the stderr line). json_only: only the --json run fails.
enum class modes { both, text_only, json_only };
void expect_failure(const std::string& args, const std::string& code, int status, modes m = modes::both) {
    CAPTURE(args);
    if (m != modes::json_only) {
        const split_output t = capture_split("timeout 120 env " + tool + " " + args);
        INFO("stdout: " << t.out);
        INFO("stderr: " << t.err);
        CHECK(t.status == status);
        CHECK(t.err.find("jbtree-e2fs: ") != std::string::npos);
    }
    if (m == modes::text_only) return;
    const split_output j = capture_split("timeout 120 env " + tool + " --json " + args);
    INFO("stdout: " << j.out);
    INFO("stderr: " << j.err);
    CHECK(j.status == status);
    const json_object o = parse_json_object(j.out);
    REQUIRE(o.ok);
    REQUIRE(o.members.count("error") == 1);
    REQUIRE(o.members.count("message") == 1);
    REQUIRE(o.members.count("status") == 1);
    CHECK(o["error"] == code);
    CHECK(o["status"] == std::to_string(status));
    CHECK(!o["message"].empty());
    CHECK(j.err.find("jbtree-e2fs: " + o["message"] + "\n") != std::string::npos);
}

// check --json found nothing but staleness: the trees verify and agree
// with the filesystem record for record.
bool only_stale(const output& c) {
    return c.status == 4 && c.out.find("\"stale\":true") != std::string::npos &&
           c.out.find("\"rmap_missing\":0,\"rmap_extra\":0,\"refcount_mismatches\":0,\"parent_mismatches\":0") !=
               std::string::npos &&
           c.out.find("verification") == std::string::npos && c.out.find("accounts") == std::string::npos;
}

} // namespace

TEST_CASE("owner and paths agree with debugfs icheck/ncheck on mkfs.ext4 -d images of generated trees") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree";
    // Directories, hard links (also across directories), sparse files,
    // xattrs, symlinks (fast and slow), an empty file, a large file.
    std::mt19937_64 rng(5);
    fs::create_directories(tree);
    std::vector<fs::path> dirs{tree};
    for (int d = 0; d < 30; ++d) {
        fs::path p = dirs[rng() % dirs.size()] / ("dir" + std::to_string(d));
        fs::create_directory(p);
        dirs.push_back(p);
    }
    std::vector<fs::path> files;
    for (int f = 0; f < 150; ++f) {
        fs::path p = dirs[rng() % dirs.size()] / ("file" + std::to_string(f));
        const int kind = static_cast<int>(rng() % 6);
        std::string cmd;
        if (kind == 0) cmd = "truncate -s " + std::to_string((1 + rng() % 64) * 4096) + " '" + p.string() + "'";
        else if (kind == 1) // sparse: data, hole, data
            cmd = "dd if=/dev/urandom of='" + p.string() + "' bs=4096 count=2 2>/dev/null && dd if=/dev/urandom of='" +
                  p.string() + "' bs=4096 seek=" + std::to_string(10 + rng() % 50) + " count=3 conv=notrunc 2>/dev/null";
        else cmd = "head -c " + std::to_string(rng() % 60000) + " /dev/urandom > '" + p.string() + "'";
        REQUIRE(run(cmd) == 0);
        files.push_back(p);
    }
    for (int l = 0; l < 40; ++l) { // hard links
        const fs::path& f = files[rng() % files.size()];
        fs::path p = dirs[rng() % dirs.size()] / ("link" + std::to_string(l));
        fs::create_hard_link(f, p);
    }
    fs::create_symlink("file1", tree / "short-link");
    fs::create_symlink(std::string(200, 'x'), tree / "long-link");
    // An xattr on the source tree that mkfs.ext4 -d copies: too large for the
    // inode, small enough for a 1 KiB block, so on every image it gets a block
    // of its own (owned as `xattr`). setfattr (package attr) is a test
    // dependency, installed by scripts/test.sh: this path always runs.
    REQUIRE(run("setfattr -n user.big -v " + std::string(700, 'v') + " '" + files[0].string() + "'") == 0);
    for (const std::string opts : {"-b 4096", "-b 1024 -O ^metadata_csum", "-b 4096 -O bigalloc -C 16384"}) {
        CAPTURE(opts);
        const fs::path img = tmp / "gen.img";
        fs::remove(img);
        REQUIRE(run("mkfs.ext4 -q -F " + opts + " -N 1024 -d '" + tree.string() + "' '" + img.string() +
                    "' 32M >/dev/null 2>&1") == 0);
        // xattrs whatever the tmp filesystem supports: one too large for the
        // inode (it gets its own block, owned as `xattr`) on two files.
        std::vector<std::uint64_t> xattr_blocks;
        {
            const fs::path value = tmp / "xattr-value";
            std::ofstream(value) << std::string(600, 'x'); // more than the inode holds, less than a 1 KiB block
            for (int k : {1, 2}) {
                const std::string rel = "/" + fs::relative(files[static_cast<std::size_t>(k)], tree).string();
                REQUIRE(run("debugfs -w -R 'ea_set -f " + value.string() + " " + rel + " user.big' '" + img.string() +
                            "' >/dev/null 2>&1") == 0);
            }
            for (int k : {0, 1, 2}) { // each has an xattr block: compare its owner too
                const output stat = capture("debugfs -R 'stat /" + fs::relative(files[static_cast<std::size_t>(k)], tree).string() +
                                            "' '" + img.string() + "'");
                const auto at = stat.out.find("File ACL: ");
                REQUIRE(at != std::string::npos);
                xattr_blocks.push_back(std::strtoull(stat.out.c_str() + at + 10, nullptr, 10));
                CHECK(xattr_blocks.back() != 0);
            }
        }
        // A file of unwritten (preallocated) extents: owned, and flagged so.
        REQUIRE(run("debugfs -w -R 'write /dev/null prealloc' '" + img.string() + "' >/dev/null 2>&1") == 0);
        REQUIRE(run("debugfs -w -R 'fallocate /prealloc 0 39' '" + img.string() + "' >/dev/null 2>&1") == 0);
        const std::string pre = capture("debugfs -R 'blocks /prealloc' '" + img.string() + "'").out;
        REQUIRE(!pre.empty());
        const std::uint64_t prealloc_block = std::strtoull(pre.c_str(), nullptr, 10);
        CHECK(prealloc_block != 0);
        xattr_blocks.push_back(prealloc_block); // compared with icheck too
        {
            const output u = capture(tool + " owner --json '" + img.string() + "' " + std::to_string(prealloc_block));
            INFO(u.out);
            CHECK(u.status == 0);
            CHECK(u.out.find("\"unwritten\":true") != std::string::npos);
        }
        // A file of 13 separate extents: its tree has an index level, walked
        // through libext2fs's extent handle; the tree block is `extent_tree`.
        REQUIRE(run("debugfs -w -R 'write /dev/null deep' '" + img.string() + "' >/dev/null 2>&1") == 0);
        for (int k = 0; k <= 24; k += 2)
            REQUIRE(run("debugfs -w -R 'fallocate /deep " + std::to_string(k) + " " + std::to_string(k) + "' '" +
                        img.string() + "' >/dev/null 2>&1") == 0);
        {
            const std::string ex = capture("debugfs -R 'ex /deep' '" + img.string() + "' | awk 'NR==2{print $8}'").out;
            const std::uint64_t tree_block = std::strtoull(ex.c_str(), nullptr, 10);
            REQUIRE(tree_block != 0);
            xattr_blocks.push_back(tree_block);
            const output t = capture(tool + " owner --json '" + img.string() + "' " + std::to_string(tree_block));
            INFO(t.out);
            CHECK(t.out.find("\"extent_tree\":true") != std::string::npos);
        }
        compare_stats st;
        compare_with_debugfs(img.string(), field(img.string(), "Block count"), field(img.string(), "Inode count"), st,
                             xattr_blocks);
        MESSAGE(opts << ": " << st.blocks << " blocks compared (" << st.owned << " owned by an inode, " << st.shared
                     << " with several owners), " << st.inodes << " inodes, " << st.paths << " paths");

        // Stored maps: build, e2fsck stays clean, check is clean, and the
        // queries, now answered from the image, still agree with debugfs.
        const output b = capture_all(tool + " build '" + img.string() + "'");
        INFO(b.out);
        REQUIRE(b.status == 0);
        CHECK(fsck_n(img) == 0);
        const std::string built = capture("md5sum < '" + img.string() + "'").out;
        const output c = capture(tool + " check --json '" + img.string() + "'");
        INFO(c.out);
        CHECK(c.status == 0);
        CHECK(c.out.find("\"clean\":true") != std::string::npos);
        CHECK(capture("md5sum < '" + img.string() + "'").out == built); // check writes nothing
        {
            // A map block marked free in ext4's bitmap (ext4 could hand it
            // out): check says so.
            const fs::path copy = tmp / "freeb.img";
            fs::copy_file(img, copy, fs::copy_options::overwrite_existing);
            const std::string first = capture("debugfs -R 'blocks <5>' '" + copy.string() + "'").out;
            REQUIRE(!first.empty());
            REQUIRE(run("debugfs -w -R 'freeb " + first.substr(0, first.find(' ')) + "' '" + copy.string() + "' >/dev/null 2>&1") == 0);
            const output f = capture(tool + " check '" + copy.string() + "'");
            INFO(f.out);
            CHECK(f.status == 4);
            CHECK(f.out.find("is marked free in the block bitmap") != std::string::npos);
            fs::remove(copy);
        }
        const output q = capture_all(tool + " owner '" + img.string() + "' 0");
        CHECK(q.status == 0);
        CHECK(q.out.find("not using stored maps") == std::string::npos);
        compare_stats stored;
        compare_with_debugfs(img.string(), field(img.string(), "Block count"), field(img.string(), "Inode count"), stored,
                             xattr_blocks);
        CHECK(stored.paths == st.paths);
        // The kernel mounts it and reads every file; the mount makes the maps
        // stale, check says so, a new build is clean again.
        std::size_t files = 0;
        const std::string m = mount_and_compare(img, tree, files);
        if (m.rfind("SKIP: ", 0) == 0) {
            MESSAGE(m);
        } else {
            CHECK(m == "");
            MESSAGE(opts << ": " << files << " files read back through a loop mount after build");
            const output c2 = capture(tool + " check --json '" + img.string() + "'");
            INFO(c2.out);
            CHECK(only_stale(c2));
            const output q2 = capture_all(tool + " paths '" + img.string() + "' 12");
            CHECK(q2.out.find("they are stale") != std::string::npos);
        }
        REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null") == 0);
        CHECK(fsck_n(img) == 0);
        CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
    }
    fs::remove_all(tmp);
}

TEST_CASE("build: a kill at every write leaves an image e2fsck finds clean after replay, with the old maps or the new") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree";
    fs::create_directories(tree / "d1" / "d2");
    for (int f = 0; f < 40; ++f)
        REQUIRE(run("head -c " + std::to_string(f * 3001) + " /dev/urandom > '" + (tree / ("d1/f" + std::to_string(f))).string() + "'") == 0);
    for (int l = 0; l < 10; ++l) fs::create_hard_link(tree / ("d1/f" + std::to_string(l)), tree / ("d1/d2/l" + std::to_string(l)));
    const std::string loop_skip = ext4img::loop_mount_skip_reason();
    int kernel_replays = 0, total_states = 0;
    for (const std::string opts : {"-b 4096", "-b 1024"}) {
        const fs::path fresh = tmp / "fresh.img", with_maps = tmp / "maps.img", img = tmp / "victim.img";
        fs::remove(fresh);
        REQUIRE(run("mkfs.ext4 -q -F " + opts + " -d '" + tree.string() + "' '" + fresh.string() + "' 16M >/dev/null 2>&1") == 0);
        fs::copy_file(fresh, with_maps, fs::copy_options::overwrite_existing);
        REQUIRE(run(tool + " build '" + with_maps.string() + "' >/dev/null") == 0);
        // From no maps (a first build) and from stored maps (a rebuild).
        for (const fs::path& base : {fresh, with_maps}) {
            const bool had_maps = base == with_maps;
            int writes = 0;
            for (int k = 1; k < 10000; ++k) {
                CAPTURE(opts);
                CAPTURE(had_maps);
                CAPTURE(k);
                fs::copy_file(base, img, fs::copy_options::overwrite_existing);
                const output b = capture_all("env JBTREE_E2FS_KILL_AFTER_WRITES=" + std::to_string(k) + " " + tool + " build '" + img.string() + "'");
                if (b.status == 0) { // finished before its k-th write
                    writes = k - 1;
                    break;
                }
                INFO(b.out);
                REQUIRE(b.status == 137);
                ++total_states;
                // Before the replay: queries and check refuse while the journal
                // needs recovery (exit 3), else answer as before the build.
                const bool needs_replay = capture("dumpe2fs -h '" + img.string() + "' | grep -c needs_recovery").out.rfind("1", 0) == 0;
                const output pre = capture(tool + " owner '" + img.string() + "' 0");
                CHECK(pre.status == (needs_replay ? 3 : 0));
                // Replay, by turns: jbtree's, e2fsck's, and the kernel's (a mount).
                bool kernel = false;
                if (k % 3 == 0) {
                    const int r = run(tool + " replay '" + img.string() + "' >/dev/null 2>&1");
                    CHECK((r == 0));
                } else if (k % 3 == 1 || !loop_skip.empty()) {
                    CHECK(run("e2fsck -E journal_only -y '" + img.string() + "' >/dev/null 2>&1") == 0);
                } else {
                    ext4img::loop_mount m(img);
                    const bool mounted = m.ok();
                    const std::string err = m.error() + m.kernel_log();
                    const bool unmounted = m.unmount();
                    INFO(err);
                    CHECK(mounted);
                    CHECK(unmounted);
                    kernel = true;
                    ++kernel_replays;
                }
                CHECK(fsck_n(img) == 0);
                // The maps: none (a first build killed early), or complete ones
                // that agree with the filesystem (stale only after a replay
                // rewrote the superblock or a mount).
                const output c = capture(tool + " check --json '" + img.string() + "'");
                INFO(c.out);
                if (c.status == 1) CHECK(!had_maps);
                else CHECK((c.status == 0 || only_stale(c)));
                if (kernel) CHECK(c.status != 0);
            }
            CHECK(writes > 0);
            MESSAGE(opts << std::string(had_maps ? ", rebuild" : ", first build") << ": killed before each of its " << writes << " writes");
        }
    }
    MESSAGE(total_states << " crash states, " << kernel_replays << " replayed by the kernel"
                         << (loop_skip.empty() ? "" : " (SKIP kernel replay: " + loop_skip + ")"));
    fs::remove_all(tmp);
}

// debugfs "ex <5>": the depth of inode 5's extent tree (the first entry's
// "Level" column reads "0/ D"), or -1.
int map_file_depth(const fs::path& img) {
    const output o = capture("debugfs -R 'ex <5>' '" + img.string() + "' 2>/dev/null | sed -n 2p");
    const auto slash = o.out.find('/');
    return slash == std::string::npos ? -1 : std::atoi(o.out.c_str() + slash + 1);
}

// The map file's length in blocks, from `check` ("in blocks A-B"), or 0.
std::uint64_t map_file_blocks(const fs::path& img) {
    const output o = capture(std::string(JBTREE_E2FS_TOOL) + " check '" + img.string() + "' 2>/dev/null");
    const auto at = o.out.find("in blocks ");
    if (at == std::string::npos) return 0;
    char* end = nullptr;
    const std::uint64_t a = std::strtoull(o.out.c_str() + at + 10, &end, 10);
    if (!end || *end != '-') return 0;
    const std::uint64_t b = std::strtoull(end + 1, nullptr, 10);
    return b >= a ? b - a + 1 : 0;
}

TEST_CASE("build: a map file longer than the inode's 4 extents gets an extent tree of any depth (issue 15)") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree";
    fs::create_directories(tree / "d1" / "d2");
    for (int f = 0; f < 30; ++f)
        REQUIRE(run("head -c " + std::to_string(f * 5003) + " /dev/urandom > '" + (tree / ("d1/f" + std::to_string(f))).string() + "'") == 0);
    for (int l = 0; l < 5; ++l) fs::create_hard_link(tree / ("d1/f" + std::to_string(l)), tree / ("d1/d2/l" + std::to_string(l)));
    // Metadata packed at the start and no backup superblocks: free runs
    // long enough for these map files. An inode holds 4 extents of 32,768
    // blocks; an extent block 340 (4 KiB) or 84 (1 KiB) entries, so
    // 140,000 blocks (5 extents) need depth 1 and 11,100,000 blocks at
    // 1 KiB (339 extents, 5 leaves) depth 2.
    struct shape {
        const char* mkfs;
        const char* size;
        std::uint64_t min_blocks;
        int depth;
        bool crash; // also killed at every write of the build
    };
    const std::string packed = " -O sparse_super2 -E packed_meta_blocks=1,num_backup_sb=0";
    for (const shape& sh : {shape{"-b 4096", "1G", 140000, 1, false}, shape{"-b 1024", "300M", 140000, 1, true},
                            shape{"-b 4096 -O bigalloc -C 16384", "1G", 140000, 1, false},
                            shape{"-b 1024 -N 4096", "12G", 11100000, 2, false}}) {
        CAPTURE(sh.mkfs);
        const fs::path fresh = tmp / "fresh.img", img = tmp / "img.img";
        fs::remove(fresh);
        REQUIRE(run("truncate -s " + std::string(sh.size) + " '" + fresh.string() + "' && mkfs.ext4 -q -F " + sh.mkfs + packed +
                    " -d '" + tree.string() + "' '" + fresh.string() + "' >/dev/null 2>&1") == 0);
        REQUIRE(run("cp --sparse=always '" + fresh.string() + "' '" + img.string() + "'") == 0);
        const std::string min = " --min-blocks " + std::to_string(sh.min_blocks) + " ";
        const output b = capture_all(tool + " build" + min + "'" + img.string() + "'");
        INFO(b.out);
        REQUIRE(b.status == 0);
        CHECK(b.out.find("its extent tree in") != std::string::npos);
        CHECK(map_file_depth(img) == sh.depth);
        CHECK(fsck_n(img) == 0);
        CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
        // The tree's blocks (after the run) and the run's ends belong to inode 5.
        const output ex = capture("debugfs -R 'ex <5>' '" + img.string() + "' 2>/dev/null | awk 'NR == 2 {print $(NF-1)}'");
        const std::uint64_t tree_block = std::strtoull(ex.out.c_str(), nullptr, 10);
        CHECK(tree_block > sh.min_blocks);
        for (const std::uint64_t blk : {tree_block}) {
            CHECK(capture("debugfs -R 'icheck " + std::to_string(blk) + "' '" + img.string() + "' 2>/dev/null").out.find("\t5\n") !=
                  std::string::npos);
            CHECK(capture(tool + " owner '" + img.string() + "' " + std::to_string(blk)).out.find("jbtree") != std::string::npos);
        }
        // The kernel mounts it and writes; the maps are then stale (and say
        // so), e2fsck stays clean, and a rebuild frees the whole tree.
        if (const std::string why = ext4img::loop_mount_skip_reason(); why.empty()) {
            ext4img::loop_mount m(img);
            REQUIRE(m.ok());
            CHECK(run("echo new > '" + (m.mount_point() / "new-file").string() + "'") == 0);
            CHECK(m.unmount());
            CHECK(fsck_n(img) == 0);
            CHECK(run(tool + " check '" + img.string() + "' >/dev/null 2>&1") == 4);
        } else
            MESSAGE("SKIP: kernel mount: " << why);
        // A rebuild would keep the map file's length, but a second file that
        // long does not fit beside the first here: it falls back to what
        // the maps need (the next test case keeps the length).
        REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null") == 0);
        CHECK(map_file_depth(img) == 0);
        CHECK(map_file_blocks(img) < sh.min_blocks);
        CHECK(fsck_n(img) == 0);
        CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
        if (!sh.crash) continue;
        // Killed before each write of a build that writes the tree, from no
        // maps: after a replay (jbtree's or e2fsck's) the image is clean and
        // holds no maps or complete ones.
        int writes = 0;
        for (int k = 1; k < 10000; ++k) {
            CAPTURE(k);
            REQUIRE(run("cp --sparse=always '" + fresh.string() + "' '" + img.string() + "'") == 0);
            const output kb = capture_all("env JBTREE_E2FS_KILL_AFTER_WRITES=" + std::to_string(k) + " " + tool + " build" + min +
                                          "'" + img.string() + "'");
            if (kb.status == 0) {
                writes = k - 1;
                break;
            }
            REQUIRE(kb.status == 137);
            if (k % 2) CHECK(run(tool + " replay '" + img.string() + "' >/dev/null 2>&1") == 0);
            else CHECK(run("e2fsck -E journal_only -y '" + img.string() + "' >/dev/null 2>&1") == 0);
            CHECK(fsck_n(img) == 0);
            const output c = capture(tool + " check --json '" + img.string() + "'");
            INFO(c.out);
            CHECK((c.status == 1 || c.status == 0 || only_stale(c)));
            if (c.status != 1) CHECK(map_file_depth(img) == sh.depth);
        }
        CHECK(writes > 0);
        MESSAGE(sh.mkfs << ": killed before each of its " << writes << " writes");
    }
    fs::remove_all(tmp);
}

TEST_CASE("build: a rebuild keeps a longer map file's length (the room the kernel grows the maps into) unless --min-blocks says otherwise") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree", img = tmp / "keep.img";
    fs::create_directories(tree / "d");
    for (int f = 0; f < 20; ++f)
        REQUIRE(run("head -c " + std::to_string(f * 3001) + " /dev/urandom > '" + (tree / ("d/f" + std::to_string(f))).string() + "'") == 0);
    REQUIRE(run("mkfs.ext4 -q -F -b 4096 -d '" + tree.string() + "' '" + img.string() + "' 64M >/dev/null 2>&1") == 0);
    REQUIRE(run(tool + " build --min-blocks 3000 '" + img.string() + "' >/dev/null") == 0);
    const std::uint64_t first = map_file_blocks(img);
    CHECK(first >= 3000);
    // Rebuilt without --min-blocks (as e2fsck rebuilds them): as long.
    REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null") == 0);
    CHECK(map_file_blocks(img) == first);
    CHECK(fsck_n(img) == 0);
    CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
    // --min-blocks 0: what the maps need, much less.
    REQUIRE(run(tool + " build --min-blocks 0 '" + img.string() + "' >/dev/null") == 0);
    const std::uint64_t small = map_file_blocks(img);
    CHECK(small > 0);
    CHECK(small < 300);
    CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
    // A file too long to have twice (more than half the free space): the
    // rebuild still succeeds, at what the maps need.
    REQUIRE(run(tool + " build --min-blocks 10000 '" + img.string() + "' >/dev/null") == 0);
    CHECK(map_file_blocks(img) >= 10000);
    REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null") == 0);
    CHECK(map_file_blocks(img) < 10000);
    CHECK(fsck_n(img) == 0);
    CHECK(run(tool + " check '" + img.string() + "' >/dev/null") == 0);
    fs::remove_all(tmp);
}

// A member's number in the text of a JSON object, nested ones included
// (the first "name": followed by digits), or -1.
long long json_number(const std::string& text, const std::string& name) {
    const std::string pat = "\"" + name + "\":";
    const std::size_t at = text.find(pat);
    if (at == std::string::npos) return -1;
    return std::strtoll(text.c_str() + at + pat.size(), nullptr, 10);
}

bool dir_is_empty(const fs::path& d) { return fs::is_directory(d) && fs::directory_iterator(d) == fs::directory_iterator(); }

TEST_CASE("build --memory: records spilled to sorted runs give the same map file as all in memory (issue 15)") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    // 2,400 files in 12 directories, names of 1 to 60 bytes (long ones are
    // held outside std::string), every 7th with a second name, and
    // names that repeat across directories; sizes 0 to 40 KiB.
    const fs::path tree = tmp / "tree";
    std::string script = "set -e; cd '" + tree.string() + "'; ";
    fs::create_directories(tree);
    for (int d = 0; d < 12; ++d) script += "mkdir -p d" + std::to_string(d) + "; ";
    REQUIRE(run(script) == 0);
    for (int f = 0; f < 2400; ++f) {
        const fs::path file = tree / ("d" + std::to_string(f % 12)) / ("f" + std::to_string(f) + std::string(static_cast<std::size_t>(f % 60), 'x'));
        std::FILE* o = std::fopen(file.c_str(), "wb");
        REQUIRE(o);
        const std::string data(static_cast<std::size_t>((f * 977) % 40000), static_cast<char>('a' + f % 26));
        std::fwrite(data.data(), 1, data.size(), o);
        std::fclose(o);
        if (f % 7 == 0) fs::create_hard_link(file, tree / ("d" + std::to_string((f + 1) % 12)) / ("link-" + std::to_string(f)));
    }
    const fs::path spill = tmp / "spill";
    fs::create_directories(spill);
    auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
    for (const char* mkfs : {"-b 4096", "-b 1024"}) {
        CAPTURE(mkfs);
        const fs::path fresh = tmp / "fresh.img", all = tmp / "all.img", bounded = tmp / "bounded.img";
        fs::remove(fresh);
        REQUIRE(run("mkfs.ext4 -q -F " + std::string(mkfs) + " -d " + q(tree) + " " + q(fresh) + " 200M >/dev/null 2>&1") == 0);
        fs::copy_file(fresh, all, fs::copy_options::overwrite_existing);
        fs::copy_file(fresh, bounded, fs::copy_options::overwrite_existing);
        const output a = capture(tool + " build --json --memory unlimited " + q(all));
        INFO(a.out);
        REQUIRE(a.status == 0);
        CHECK(json_number(a.out, "rmap_runs") == 0);
        // 64K: 32 KiB of records at once, read buffers of 4 KiB, 4 runs
        // merged at a time: many runs and several merge passes.
        const output b = capture("env TMPDIR=/nonexistent " + tool + " build --json --memory 64K --tmpdir " + q(spill) + " " + q(bounded));
        INFO(b.out);
        REQUIRE(b.status == 0);
        CHECK(json_number(b.out, "rmap_runs") > 4);
        CHECK(json_number(b.out, "link_runs") > 4);
        CHECK(json_number(b.out, "merge_passes") >= 2);
        for (const char* k : {"inodes", "rmap_records", "refcount_records", "parent_records", "first", "blocks", "nodes"})
            CHECK_MESSAGE(json_number(a.out, k) == json_number(b.out, k), k);
        CHECK(dir_is_empty(spill)); // unlinked as soon as created
        // The map files are the same, block for block, after the volume's
        // superblock (which holds the time of the build).
        const std::string bs = mkfs[3] == '4' ? "4096" : "1024";
        for (const fs::path& p : {all, bounded})
            REQUIRE(run("debugfs -R 'dump <5> " + p.string() + ".map' " + q(p) + " >/dev/null 2>&1") == 0);
        const std::string ma = slurp(all.string() + ".map"), mb = slurp(bounded.string() + ".map");
        const std::size_t sb = std::stoul(bs);
        REQUIRE(ma.size() > sb);
        CHECK(ma.size() == mb.size());
        CHECK(ma.compare(sb, std::string::npos, mb, sb, std::string::npos) == 0);
        CHECK(fsck_n(bounded) == 0);
        CHECK(run(tool + " check " + q(bounded) + " >/dev/null") == 0);
        // A rebuild in bounded memory (the old map file's records dropped
        // as they stream) gives the same counts again; $TMPDIR is the
        // default directory.
        const output c = capture("env TMPDIR=" + spill.string() + " " + tool + " build --json --memory 64K " + q(bounded));
        INFO(c.out);
        REQUIRE(c.status == 0);
        CHECK(json_number(c.out, "rmap_runs") > 4);
        for (const char* k : {"rmap_records", "refcount_records", "parent_records"})
            CHECK_MESSAGE(json_number(a.out, k) == json_number(c.out, k), k);
        CHECK(dir_is_empty(spill));
        CHECK(run(tool + " check " + q(bounded) + " >/dev/null") == 0);
        // Killed while writing the trees (after the runs were written): no
        // temporary file is left, and the image is clean after replay.
        fs::copy_file(fresh, bounded, fs::copy_options::overwrite_existing);
        CHECK(run("env JBTREE_E2FS_KILL_AFTER_WRITES=5 " + tool + " build --memory 64K --tmpdir " + q(spill) + " " + q(bounded) +
                  " >/dev/null 2>&1") == 137);
        CHECK(dir_is_empty(spill));
        CHECK(fsck_n(bounded) == 0);
        // A directory that cannot hold the files: refused, nothing written.
        fs::copy_file(fresh, bounded, fs::copy_options::overwrite_existing);
        const output r = capture_all(tool + " build --memory 64K --tmpdir /proc " + q(bounded));
        CHECK(r.status == 3);
        CHECK(r.out.find("cannot create a temporary file in /proc") != std::string::npos);
        CHECK(md5(bounded) == md5(fresh));
    }
    // --progress: percent of inodes scanned, then of records written, on
    // stderr only; --json's stdout stays one object.
    const fs::path img = tmp / "progress.img";
    REQUIRE(run("mkfs.ext4 -q -F -d " + q(tree) + " " + q(img) + " 200M >/dev/null 2>&1") == 0);
    const split_output p = capture_split(tool + " build --json --progress --memory 64K " + q(img));
    REQUIRE(p.status == 0);
    CHECK(parse_json_object(p.out).ok);
    CHECK(p.err.find("scanning inodes: 100%") != std::string::npos);
    CHECK(p.err.find("writing records: 100%") != std::string::npos);
    CHECK(p.err.find("scanning inodes") < p.err.find("writing records"));
    // Without --progress and not on a terminal: nothing on stderr.
    const split_output n = capture_split(tool + " build --json " + q(img));
    REQUIRE(n.status == 0);
    CHECK(n.err.empty());
    // Bad sizes and directories: usage, 2, naming the option.
    for (const std::string& bad : std::vector<std::string>{"--memory 12Q", "--memory ''", "--memory 1K", "--memory 65535", "--memory -5", "--memory 0x10",
                                  "--memory 99999999999999999999", "--memory", "--tmpdir /nonexistent", "--tmpdir " + q(img)}) {
        CAPTURE(bad);
        const split_output u = capture_split(tool + " build --json " + bad + " " + q(img));
        CHECK(u.status == 2);
        CHECK(parse_json_object(u.out)["error"] == "usage");
        CHECK(u.err.find(bad.substr(0, 8)) != std::string::npos);
    }
    fs::remove_all(tmp);
}

TEST_CASE("build on a filesystem with MMP leaves the MMP block released: e2fsck and the kernel accept it") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree", img = tmp / "mmp.img";
    fs::create_directories(tree / "d");
    REQUIRE(run("head -c 50000 /dev/urandom > '" + (tree / "d" / "f").string() + "'") == 0);
    REQUIRE(run("mkfs.ext4 -q -F -O mmp -d '" + tree.string() + "' '" + img.string() + "' 16M >/dev/null 2>&1") == 0);
    REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null 2>&1") == 0);
    CHECK(fsck_n(img) == 0);
    CHECK(run(tool + " check '" + img.string() + "' >/dev/null 2>&1") == 0);
    CHECK(run(tool + " build '" + img.string() + "' >/dev/null 2>&1") == 0); // and again: not "fsck is running"
    std::size_t files = 0;
    const std::string m = mount_and_compare(img, tree, files);
    if (m.rfind("SKIP: ", 0) == 0) MESSAGE(m);
    else {
        CHECK(m == "");
        CHECK(files == 1);
    }
    fs::remove_all(tmp);
}

TEST_CASE("build refuses at once, writing nothing, when no free run is as long as the map file (issue 17)") {
    // ext2fs_new_range, which build used to pick the run, never returns when
    // no free run is long enough and the last block is in use: both images
    // here hung build until it was killed.
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path one = tmp / "one";
    REQUIRE(run("head -c 4096 /dev/urandom > '" + one.string() + "'") == 0); // random: debugfs skips zero blocks
    SUBCASE("a 64 MiB image full of 4 KiB files and one large file, every other small file deleted") {
        const fs::path img = tmp / "fragmented.img";
        REQUIRE(run("mkfs.ext4 -q -F -b 4096 '" + img.string() + "' 64M >/dev/null 2>&1") == 0);
        const std::uint64_t free0 = field(img.string(), "Free blocks");
        REQUIRE(free0 > 1000);
        const std::uint64_t small = free0 - 200; // room left for directories and the large file
        std::vector<std::string> cmds;
        for (std::uint64_t d = 0; d <= small / 500; ++d) cmds.push_back("mkdir d" + std::to_string(d));
        for (std::uint64_t i = 0; i < small; ++i)
            cmds.push_back("write " + one.string() + " d" + std::to_string(i / 500) + "/f" + std::to_string(i));
        debugfs_script(img, tmp, cmds);
        // One file takes the rest (but what its extent tree needs), then
        // 4 KiB files take what is left, until no block is free.
        const std::uint64_t rest = field(img.string(), "Free blocks");
        REQUIRE(rest > 16);
        const fs::path big = tmp / "big";
        REQUIRE(run("head -c " + std::to_string((rest - 8) * 4096) + " /dev/urandom > '" + big.string() + "'") == 0);
        cmds.clear();
        cmds.push_back("write " + big.string() + " big");
        for (int g = 0; g < 16; ++g) cmds.push_back("write " + one.string() + " g" + std::to_string(g));
        debugfs_script(img, tmp, cmds);
        REQUIRE(field(img.string(), "Free blocks") == 0);
        cmds.clear();
        for (std::uint64_t i = 0; i < small; i += 2)
            cmds.push_back("rm d" + std::to_string(i / 500) + "/f" + std::to_string(i));
        debugfs_script(img, tmp, cmds);
        REQUIRE(field(img.string(), "Free blocks") >= small / 2);
        REQUIRE(fsck_n(img) == 0);
        REQUIRE(last_block_in_use(img)); // what made ext2fs_new_range loop
        expect_no_space_refusal(img);
        CHECK(fsck_n(img) == 0);
    }
    SUBCASE("maps built, then resize2fs -M, the free blocks left taken but one: the last block in use") {
        const fs::path tree = tmp / "tree", img = tmp / "shrunk.img";
        fs::create_directories(tree / "d");
        for (int f = 1; f <= 40; ++f)
            REQUIRE(run("head -c " + std::to_string(f * 3001) + " /dev/urandom > '" + (tree / "d" / ("f" + std::to_string(f))).string() + "'") == 0);
        REQUIRE(run("mkfs.ext4 -q -F -b 4096 -d '" + tree.string() + "' '" + img.string() + "' 16M >/dev/null 2>&1") == 0);
        REQUIRE(run(tool + " build '" + img.string() + "' >/dev/null 2>&1") == 0);
        REQUIRE(run("resize2fs -M '" + img.string() + "' >/dev/null 2>&1") == 0);
        const std::uint64_t left = field(img.string(), "Free blocks");
        std::vector<std::string> cmds;
        for (std::uint64_t g = 0; g < left + 2; ++g) cmds.push_back("write " + one.string() + " g" + std::to_string(g));
        cmds.push_back("rm g0");
        debugfs_script(img, tmp, cmds);
        REQUIRE(fsck_n(img) == 0);
        REQUIRE(last_block_in_use(img));
        expect_no_space_refusal(img);
        // Given room again, build stores the maps and all is clean.
        REQUIRE(run("truncate -s 16M '" + img.string() + "' && resize2fs '" + img.string() + "' >/dev/null 2>&1") == 0);
        const output b = capture_all("timeout 60 env " + tool + " build '" + img.string() + "'");
        INFO(b.out);
        CHECK(b.status == 0);
        CHECK(fsck_n(img) == 0);
        CHECK(run(tool + " check '" + img.string() + "' >/dev/null 2>&1") == 0);
    }
    fs::remove_all(tmp);
}

TEST_CASE("--json: every failure is one JSON object on stdout (error code, message, status), and stderr always says why") {
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree";
    fs::create_directories(tree / "d");
    for (int f = 1; f <= 20; ++f)
        REQUIRE(run("head -c " + std::to_string(f * 2001) + " /dev/urandom > '" + (tree / "d" / ("f" + std::to_string(f))).string() + "'") == 0);
    auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
    auto make = [&](const std::string& name, const std::string& opts) {
        const fs::path img = tmp / name;
        REQUIRE(run("mkfs.ext4 -q -F " + opts + " -d '" + tree.string() + "' " + q(img) + " 16M >/dev/null 2>&1") == 0);
        return img;
    };
    const fs::path clean = make("clean.img", ""), with_maps = tmp / "maps.img";
    fs::copy_file(clean, with_maps);
    REQUIRE(run(tool + " build " + q(with_maps) + " >/dev/null 2>&1") == 0);
    auto copy_of = [&](const fs::path& from, const std::string& name) {
        const fs::path p = tmp / name;
        fs::copy_file(from, p, fs::copy_options::overwrite_existing);
        return p;
    };

    SUBCASE("bad arguments: usage, 2") {
        expect_failure("", "usage", 2);
        expect_failure("frob " + q(clean), "usage", 2);
        expect_failure("owner", "usage", 2);
        expect_failure("owner " + q(clean), "usage", 2);
        expect_failure("paths " + q(clean) + " x12", "usage", 2);
        expect_failure("refcount " + q(clean) + " -1", "usage", 2);
        expect_failure("build", "usage", 2);
        expect_failure("check " + q(clean) + " " + q(clean), "usage", 2);
        expect_failure("build --frob " + q(clean), "usage", 2);
        expect_failure("replay " + q(clean), "usage", 2, modes::json_only); // replay takes no --json
        expect_failure("replay", "usage", 2);
    }
    SUBCASE("no image, or not ext2/3/4: cannot_open, 3") {
        const fs::path junk = tmp / "junk.img";
        REQUIRE(run("head -c 4194304 /dev/urandom > " + q(junk)) == 0);
        for (const fs::path& p : {tmp / "missing.img", junk}) {
            expect_failure("owner " + q(p) + " 1", "cannot_open", 3);
            expect_failure("paths " + q(p) + " 2", "cannot_open", 3);
            expect_failure("refcount " + q(p) + " 1", "cannot_open", 3);
            expect_failure("check " + q(p), "cannot_open", 3);
            expect_failure("build " + q(p), "cannot_open", 3);
            expect_failure("replay " + q(p), "cannot_open", 3, modes::text_only);
        }
    }
    SUBCASE("the journal needs recovery (a build killed after its commit began): needs_recovery, 3") {
        const fs::path img = tmp / "killed.img";
        bool needs = false;
        for (int k = 1; k < 100 && !needs; ++k) {
            fs::copy_file(clean, img, fs::copy_options::overwrite_existing);
            REQUIRE(run("env JBTREE_E2FS_KILL_AFTER_WRITES=" + std::to_string(k) + " " + tool + " build " + q(img) +
                        " >/dev/null 2>&1") == 137);
            needs = capture("dumpe2fs -h " + q(img) + " 2>/dev/null | grep -c needs_recovery").out.rfind("1", 0) == 0;
        }
        REQUIRE(needs);
        const std::string before = md5(img);
        expect_failure("build " + q(img), "needs_recovery", 3);
        expect_failure("check " + q(img), "needs_recovery", 3);
        expect_failure("owner " + q(img) + " 0", "needs_recovery", 3);
        expect_failure("paths " + q(img) + " 12", "needs_recovery", 3);
        expect_failure("refcount " + q(img) + " 0", "needs_recovery", 3);
        CHECK(md5(img) == before);
        CHECK(run(tool + " replay " + q(img) + " >/dev/null 2>&1") == 0); // and then all is well
        CHECK(fsck_n(img) == 0);
    }
    SUBCASE("damaged map blocks: check says corrupted, 4; a query answers or says corrupted") {
        const fs::path img = copy_of(with_maps, "damaged.img");
        const std::string blocks = capture("debugfs -R 'blocks <5>' " + q(img)).out;
        std::istringstream in(blocks);
        std::vector<std::uint64_t> b;
        for (std::uint64_t x; in >> x;) b.push_back(x);
        REQUIRE(b.size() > 4);
        const std::uint64_t bs = field(img.string(), "Block size");
        for (std::size_t k = 2; k < 4; ++k) // the first tree nodes, after the volume superblock and bitmap
            REQUIRE(run("dd if=/dev/urandom of=" + q(img) + " bs=" + std::to_string(bs) + " seek=" + std::to_string(b[k]) +
                        " count=1 conv=notrunc 2>/dev/null") == 0);
        expect_failure("check " + q(img), "corrupted", 4);
        for (const char* cmd : {"owner", "paths", "refcount"}) {
            CAPTURE(cmd);
            const split_output o = capture_split(tool + " --json " + cmd + " " + q(img) + " 2");
            const json_object j = parse_json_object(o.out);
            REQUIRE(j.ok);
            if (o.status == 0) CHECK(j.members.count("error") == 0);
            else {
                CHECK(o.status == 4);
                CHECK(j["error"] == "corrupted");
                CHECK(!o.err.empty());
            }
        }
    }
    SUBCASE("check: maps_absent 1, stale_maps 4, maps_inconsistent 4") {
        expect_failure("check " + q(clean), "maps_absent", 1);
        const fs::path stale = copy_of(with_maps, "stale.img");
        REQUIRE(run("tune2fs -C 9 " + q(stale) + " >/dev/null 2>&1") == 0); // the superblock only: the stamp differs
        expect_failure("check " + q(stale), "stale_maps", 4);
        CHECK(run(tool + " owner " + q(stale) + " 0 >/dev/null 2>&1") == 0); // queries answer from a scan
        const fs::path changed = copy_of(with_maps, "changed.img");
        REQUIRE(run("debugfs -w -R 'ln /d/f1 /d/another-name' " + q(changed) + " >/dev/null 2>&1") == 0);
        expect_failure("check " + q(changed), "maps_inconsistent", 4);
        // check's own members are in the same object.
        const split_output o = capture_split(tool + " check --json " + q(changed));
        const json_object j = parse_json_object(o.out);
        REQUIRE(j.ok);
        CHECK(j["clean"] == "false");
        CHECK(j["parent_mismatches"] == "1");
    }
    SUBCASE("queries: not_found 1, with the answers in the same object") {
        expect_failure("owner " + q(with_maps) + " 0 99999999", "not_found", 1);
        expect_failure("paths " + q(with_maps) + " 2 4000", "not_found", 1);
        const split_output o = capture_split(tool + " owner --json " + q(with_maps) + " 0 99999999");
        const json_object j = parse_json_object(o.out);
        REQUIRE(j.ok);
        CHECK(j["owners"].find("\"block\":99999999,\"owners\":[]") != std::string::npos);
        CHECK(j["message"].find("1 of 2 blocks have no owner") != std::string::npos);
        const split_output fine = capture_split(tool + " refcount --json " + q(with_maps) + " 0");
        CHECK(fine.status == 0);
        CHECK(parse_json_object(fine.out).ok);
        CHECK(parse_json_object(fine.out).members.count("error") == 0);
    }
    SUBCASE("build refusals: unsupported 4 (no journal), not_clean 4; replay: no_journal 1, journal_refused 4") {
        const fs::path nojournal = make("nojournal.img", "-O ^has_journal");
        const std::string before = md5(nojournal);
        expect_failure("build " + q(nojournal), "unsupported", 4);
        expect_failure("replay " + q(nojournal), "no_journal", 1, modes::text_only);
        CHECK(md5(nojournal) == before);
        const fs::path dirty = copy_of(clean, "dirty.img");
        REQUIRE(run("debugfs -w -R 'ssv state 0' " + q(dirty) + " >/dev/null 2>&1") == 0); // not cleanly unmounted
        expect_failure("build " + q(dirty), "not_clean", 4);
        // A journal superblock without its magic: replay refuses it untouched.
        const fs::path badjournal = copy_of(clean, "badjournal.img");
        const std::uint64_t jblk = std::strtoull(capture("debugfs -R 'bmap <8> 0' " + q(badjournal)).out.c_str(), nullptr, 10);
        REQUIRE(jblk != 0);
        REQUIRE(run("dd if=/dev/zero of=" + q(badjournal) + " bs=" + std::to_string(field(badjournal.string(), "Block size")) +
                    " seek=" + std::to_string(jblk) + " count=1 conv=notrunc 2>/dev/null") == 0);
        const std::string bad_before = md5(badjournal);
        expect_failure("replay " + q(badjournal), "journal_refused", 4, modes::text_only);
        CHECK(md5(badjournal) == bad_before);
    }
    fs::remove_all(tmp);
}

namespace {
namespace xa = jbtree::ext2fs_adapter;
using crashed_maps::log_one_transaction;
using crashed_maps::stamp_now;
using crashed_maps::write_stamp;
} // namespace

TEST_CASE("the live stamp (version 3): fresh while the superblock names its mount; stale after another mount, a write outside the kernel (in the same second too), abandoned or unknown flags") {
    // The rule on its own (jbtree/maps/map_stamp.hpp, shared with the kernel glue).
    xa::map_stamp full{};
    full.magic.set(xa::map_stamp_magic);
    full.version.set(xa::map_stamp_full);
    full.fs_wtime.set(1000);
    full.fs_mtime.set(0x1'2345'6789ull);
    full.kbytes_written.set(77);
    full.free_blocks.set(5000);
    full.free_inodes.set(300);
    full.mnt_count.set(7);
    full.gdt_crc.set(0xABCD);
    CHECK(xa::stamp_matches(full, full));
    CHECK(xa::match_stamp(full, xa::state_in(full)) == xa::stamp_match::full);
    const xa::map_stamp live = xa::live_stamp(xa::state_in(full), 42);
    CHECK(live.version.get() == 3);
    CHECK(live.free_blocks.get() == 0);
    CHECK(live.gdt_crc.get() == 0);
    CHECK(live.kbytes_written.get() == 77);
    CHECK(live.built_at.get() == 42);
    CHECK(xa::stamp_matches(live, full));
    xa::map_stamp later = full; // blocks allocated, the journal replayed: the same mount
    later.free_blocks.set(4000);
    later.free_inodes.set(290);
    later.gdt_crc.set(0x1234);
    CHECK(xa::stamp_matches(live, later));
    CHECK(xa::match_stamp(live, xa::state_in(later)) == xa::stamp_match::live);
    CHECK(!xa::stamp_matches(full, later));
    xa::map_stamp written = later; // the superblock written outside the kernel (e2fsck, a tool)
    written.fs_wtime.set(2000);
    written.kbytes_written.set(80);
    CHECK(!xa::stamp_matches(live, written));
    // Within the same second as the mount's write: s_wtime the same,
    // s_kbytes_written raised by what the tool wrote.
    xa::map_stamp same_second = later;
    same_second.kbytes_written.set(78);
    CHECK(!xa::stamp_matches(live, same_second));
    CHECK(xa::match_stamp(live, xa::state_in(same_second)) == xa::stamp_match::stale);
    xa::map_stamp remounted = later;
    remounted.mnt_count.set(8);
    CHECK(!xa::stamp_matches(live, remounted));
    remounted = later;
    remounted.fs_mtime.set(0x1'2345'678Aull); // same count, another mount time (e2fsck reset the count since)
    CHECK(!xa::stamp_matches(live, remounted));
    CHECK(!xa::stamp_matches(xa::live_stamp(xa::state_in(full), 42, xa::map_stamp_abandoned), full));
    CHECK(!xa::stamp_matches(xa::live_stamp(xa::state_in(full), 42, 2), full)); // a flag this reader does not know
    // A filesystem whose superblock counts no bytes written: libext2fs
    // does not count them either, so a write would not show: never fresh.
    xa::map_stamp uncounted = full;
    uncounted.kbytes_written.set(0);
    CHECK(!xa::stamp_matches(xa::live_stamp(xa::state_in(uncounted), 42), uncounted));
    CHECK(xa::stamp_matches(uncounted, uncounted)); // a full stamp names everything: still fine
    // Version 2, the live stamp of older kernels (no s_kbytes_written):
    // stale even where all it names matches.
    xa::map_stamp v2 = live;
    v2.version.set(xa::map_stamp_live_v2);
    v2.kbytes_written.set(0);
    CHECK(!xa::stamp_matches(v2, full));
    v2.kbytes_written.set(77);
    CHECK(!xa::stamp_matches(v2, full));
    xa::map_stamp v4 = live;
    v4.version.set(4);
    CHECK(!xa::stamp_matches(v4, full));
    xa::map_stamp nomagic = live;
    nomagic.magic.set(0);
    CHECK(!xa::stamp_matches(nomagic, full));
    CHECK(!xa::stamp_matches(full, live)); // `now` is always a full stamp
    // The layout: the offsets of docs/format.md section 8.
    {
        const xa::map_stamp l = xa::live_stamp(xa::state_in(full), 0x0102030405060708ull, 1);
        unsigned char b[64];
        std::memcpy(b, &l, sizeof b);
        auto le = [&](int at, int n) {
            std::uint64_t v = 0;
            for (int i = 0; i < n; ++i) v |= std::uint64_t{b[at + i]} << (8 * i);
            return v;
        };
        CHECK(le(0x00, 4) == 0x3445424Au);
        CHECK(le(0x04, 4) == 3);
        CHECK(le(0x08, 8) == 1000);
        CHECK(le(0x10, 8) == 0x1'2345'6789ull);
        CHECK(le(0x18, 8) == 77);
        CHECK(le(0x20, 8) == 0);
        CHECK(le(0x28, 4) == 0);
        CHECK(le(0x2C, 4) == 7);
        CHECK(le(0x30, 4) == 0);
        CHECK(le(0x34, 4) == 1);
        CHECK(le(0x38, 8) == 0x0102030405060708ull);
    }

    // Through jbtree-e2fs check, on an image whose maps carry a live stamp.
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    const fs::path tree = tmp / "tree";
    fs::create_directories(tree / "d");
    for (int f = 1; f <= 10; ++f)
        REQUIRE(run("head -c " + std::to_string(f * 3001) + " /dev/urandom > '" + (tree / "d" / ("f" + std::to_string(f))).string() + "'") == 0);
    auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
    const fs::path img = tmp / "maps.img";
    REQUIRE(run("mkfs.ext4 -q -F -d " + q(tree) + " " + q(img) + " 16M >/dev/null 2>&1") == 0);
    REQUIRE(run(tool + " build " + q(img) + " >/dev/null 2>&1") == 0);
    xa::map_stamp now{};
    std::uint64_t first = 0;
    REQUIRE(stamp_now(img, now, first));
    auto copy_with = [&](const std::string& name, const xa::map_stamp& st) {
        const fs::path p = tmp / name;
        fs::copy_file(img, p, fs::copy_options::overwrite_existing);
        REQUIRE(write_stamp(p, st));
        return p;
    };
    SUBCASE("naming the superblock's mount: fresh, and stays fresh as the filesystem changes through the maps") {
        const fs::path p = copy_with("live.img", xa::live_stamp(xa::state_in(now), 1));
        const output o = capture_all(tool + " check " + q(p));
        CHECK_MESSAGE(o.status == 0, o.out);
        CHECK(o.out.find("stale") == std::string::npos);
        CHECK(fsck_n(p) == 0);
    }
    SUBCASE("another mount since (s_mnt_count changed): stale, saying so") {
        const fs::path p = copy_with("remounted.img", xa::live_stamp(xa::state_in(now), 1));
        REQUIRE(run("tune2fs -C " + std::to_string(now.mnt_count.get() + 1) + " " + q(p) + " >/dev/null 2>&1") == 0);
        const output o = capture_all(tool + " check " + q(p));
        CHECK(o.status == 4);
        CHECK_MESSAGE(o.out.find("kept live by the kernel during mount " + std::to_string(now.mnt_count.get())) !=
                          std::string::npos, o.out);
        expect_failure("check " + q(p), "stale_maps", 4);
    }
    SUBCASE("another mount time, abandoned, unknown flags: stale") {
        xa::map_fs_state other_mtime = xa::state_in(now);
        other_mtime.mtime += 1;
        const fs::path a = copy_with("mtime.img", xa::live_stamp(other_mtime, 1));
        expect_failure("check " + q(a), "stale_maps", 4);
        const fs::path b = copy_with("abandoned.img",
                                     xa::live_stamp(xa::state_in(now), 1, xa::map_stamp_abandoned));
        const output o = capture_all(tool + " check " + q(b));
        CHECK(o.status == 4);
        CHECK_MESSAGE(o.out.find("the kernel stopped keeping them") != std::string::npos, o.out);
        const fs::path c = copy_with("flags.img", xa::live_stamp(xa::state_in(now), 1, 4));
        expect_failure("check " + q(c), "stale_maps", 4);
    }
    SUBCASE("the superblock written outside the kernel (e2fsck, which may have released orphans outside the maps): stale") {
        const fs::path p = copy_with("fscked.img", xa::live_stamp(xa::state_in(now), 1));
        REQUIRE(run("sleep 1; e2fsck -fy " + q(p) + " >/dev/null 2>&1") <= 1);
        const output o = capture_all(tool + " check " + q(p));
        CHECK(o.status == 4);
        CHECK_MESSAGE(o.out.find("the superblock was written outside the kernel since") != std::string::npos, o.out);
    }
    SUBCASE("jbtree-e2fs replay carries a live stamp naming the replayed mount forward; e2fsck's replay leaves it stale") {
        // A filesystem left needing recovery with an empty log (a crash
        // after the log emptied): both replays then write the superblock.
        const fs::path a = tmp / "replay.img";
        fs::copy_file(img, a, fs::copy_options::overwrite_existing);
        REQUIRE(run("debugfs -w -R 'feature needs_recovery' " + q(a) + " >/dev/null 2>&1") == 0);
        xa::map_stamp flagged{};
        std::uint64_t f2 = 0;
        REQUIRE(stamp_now(a, flagged, f2));
        REQUIRE(write_stamp(a, xa::live_stamp(xa::state_in(flagged), 1)));
        const fs::path b = tmp / "replay-e2fsck.img";
        fs::copy_file(a, b, fs::copy_options::overwrite_existing);
        REQUIRE(run("sleep 1") == 0); // another second: the replays' s_wtime differs from the stamp's
        const output r = capture_all(tool + " replay " + q(a));
        REQUIRE_MESSAGE(r.status == 0, r.out);
        xa::map_stamp after{};
        REQUIRE(stamp_now(a, after, f2));
        CHECK(after.fs_wtime.get() != flagged.fs_wtime.get());
        CHECK(after.kbytes_written.get() != flagged.kbytes_written.get()); // carried too
        const output o = capture_all(tool + " check " + q(a));
        CHECK_MESSAGE(o.status == 0, o.out);
        CHECK(o.out.find("stale") == std::string::npos);
        REQUIRE(run("e2fsck -p -E journal_only " + q(b) + " >/dev/null 2>&1") <= 1); // 1: "file system was modified"
        const output o2 = capture_all(tool + " check " + q(b));
        CHECK_MESSAGE(o2.status == 4, o2.out);
        CHECK(o2.out.find("stale") != std::string::npos);
    }
    SUBCASE("a crash with a transaction to replay: e2fsck's replay within the mount's second leaves the maps stale (s_kbytes_written), jbtree-e2fs replay keeps them fresh, in that second or when every time() is another") {
        const fs::path a = tmp / "logged.img";
        fs::copy_file(img, a, fs::copy_options::overwrite_existing);
        const std::string logged = log_one_transaction(a);
        REQUIRE_MESSAGE(logged.empty(), logged);
        xa::map_stamp crashed{};
        std::uint64_t f2 = 0;
        REQUIRE(stamp_now(a, crashed, f2));
        REQUIRE(crashed.kbytes_written.get() != 0);
        REQUIRE(write_stamp(a, xa::live_stamp(xa::state_in(crashed), 1)));
        const std::string wtime = std::to_string(crashed.fs_wtime.get());
        // e2fsck writing the superblock in the second the crashed mount
        // wrote it (E2FSCK_TIME: e2fsck's clock, which it gives libext2fs).
        const fs::path b = tmp / "logged-e2fsck.img";
        fs::copy_file(a, b, fs::copy_options::overwrite_existing);
        REQUIRE(run("E2FSCK_TIME=" + wtime + " e2fsck -p -E journal_only " + q(b) + " >/dev/null 2>&1") <= 1);
        xa::map_stamp fscked{};
        REQUIRE(stamp_now(b, fscked, f2));
        CHECK(fscked.fs_wtime.get() == crashed.fs_wtime.get()); // the same second: s_wtime alone cannot tell
        CHECK(fscked.mnt_count.get() == crashed.mnt_count.get());
        CHECK(fscked.fs_mtime.get() == crashed.fs_mtime.get());
        CHECK(fscked.kbytes_written.get() > crashed.kbytes_written.get()); // the replay's bytes
        const output o = capture_all(tool + " check " + q(b));
        CHECK_MESSAGE(o.status == 4, o.out);
        CHECK_MESSAGE(o.out.find("the superblock was written outside the kernel since") != std::string::npos, o.out);
        expect_failure("check " + q(b), "stale_maps", 4);
        // jbtree-e2fs replay under a clock frozen at that second, and
        // under one where every time() call is a second later (its two
        // superblock writes, ext2fs_flush's and ext2fs_close's, then fall
        // in different seconds, and the second raises s_kbytes_written).
        for (const std::string step : {"0", "1"}) {
            CAPTURE(step);
            const fs::path c = tmp / ("logged-replay-" + step + ".img");
            fs::copy_file(a, c, fs::copy_options::overwrite_existing);
            const std::string timed = std::string("ASAN_OPTIONS=exitcode=99:verify_asan_link_order=0 UBSAN_OPTIONS=halt_on_error=1:exitcode=98 "
                                                  "LD_PRELOAD=" JBTREE_FAKE_TIME_LIB " JBTREE_FAKE_TIME=") + wtime +
                                      " JBTREE_FAKE_TIME_STEP=" + step + " " + JBTREE_E2FS_TOOL;
            const output r = capture_all(timed + " replay " + q(c));
            REQUIRE_MESSAGE(r.status == 0, r.out);
            CHECK_MESSAGE(r.out.find("1 transactions replayed") != std::string::npos, r.out);
            xa::map_stamp replayed{};
            REQUIRE(stamp_now(c, replayed, f2));
            CHECK(replayed.kbytes_written.get() > crashed.kbytes_written.get());
            if (step == "0") CHECK(replayed.fs_wtime.get() == crashed.fs_wtime.get());
            else CHECK(replayed.fs_wtime.get() > crashed.fs_wtime.get()); // the flush at that second, the close after it
            const output k = capture_all(tool + " check " + q(c));
            CHECK_MESSAGE(k.status == 0, k.out);
            CHECK(k.out.find("stale") == std::string::npos);
            CHECK(fsck_n(c) == 0);
        }
    }
    SUBCASE("what it cannot see: a change outside the kernel that leaves the mount named (check still finds it)") {
        const fs::path p = copy_with("outside.img", xa::live_stamp(xa::state_in(now), 1));
        REQUIRE(run("debugfs -w -R 'ln /d/f1 /d/another-name' " + q(p) + " >/dev/null 2>&1") == 0);
        expect_failure("check " + q(p), "maps_inconsistent", 4);
    }
    fs::remove_all(tmp);
}

TEST_CASE("corpus: owner and paths agree with debugfs on the clean images; damaged ones never crash the tool") {
    if (!fs::exists(corpus)) {
        MESSAGE("SKIP: corpus not found at " << corpus);
        return;
    }
    const fs::path tmp = case_dir_or_skip();
    if (tmp.empty()) return;
    int clean = 0, damaged = 0, refused = 0, built = 0, build_refused = 0, tuned = 0;
    for (const auto& entry : fs::directory_iterator(corpus)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 7 || name.substr(name.size() - 7) != ".img.gz") continue;
        CAPTURE(name);
        const fs::path img = tmp / (name + ".img");
        REQUIRE(run("gzip -dc '" + entry.path().string() + "' > '" + img.string() + "'") == 0);
        std::string before = capture("md5sum < '" + img.string() + "'").out;
        int fsck = run("e2fsck -fn '" + img.string() + "' >/dev/null 2>&1");
        if (fsck == 0) {
            compare_stats st;
            compare_with_debugfs(img.string(), field(img.string(), "Block count"), field(img.string(), "Inode count"), st);
            ++clean;
        } else {
            // Damaged: any answer or a clear refusal; no crash, no hang.
            for (const char* q : {"owner", "paths", "refcount"}) {
                const output o = capture("timeout 120 env " + tool + " " + q + " '" + img.string() + "' 1 2 12 100");
                CAPTURE(q);
                CHECK(o.status <= 4); // answers (0, 1) or refusals (3, 4); not a timeout, signal or sanitizer report
                if (o.status >= 3) ++refused;
            }
            ++damaged;
        }
        // Nothing is written by the queries.
        CHECK(capture("md5sum < '" + img.string() + "'").out == before);
        // build stores the maps (then e2fsck stays clean and check is
        // clean) or refuses clearly; check reports or refuses; neither
        // crashes or hangs, on damaged images too.
        const std::string build = "timeout 300 env " + tool + " build '" + img.string() + "'";
        output b = capture_all(build);
        // Most corpus images are too small for a journal, or lack one or
        // extents: grow them (resize2fs -f) and add what build needs, then
        // build again. On a damaged image a build must not add a single
        // e2fsck complaint: its report is the same but the block count.
        std::string fsck_before;
        // e2fsck's report but the numbers the map file's allocation moves:
        // the summary's block count, and on an image whose free counts were
        // already wrong, both numbers of those complaints (the stored and
        // the counted free blocks drop by the map file's blocks alike).
        const std::string fsck_report_filter =
            "grep -v ' files (.* blocks$' | sed -E '/^Free blocks count wrong/s/[0-9]+/N/g'";
        if (b.status != 0 && (b.out.find("no internal journal") != std::string::npos ||
                              b.out.find("extents feature") != std::string::npos)) {
            CHECK(capture("md5sum < '" + img.string() + "'").out == before); // refused: nothing written
            const bool prepared = run("truncate -s 8M '" + img.string() + "' && resize2fs -f '" + img.string() +
                                      "' >/dev/null 2>&1; tune2fs -O extents,has_journal '" + img.string() +
                                      "' >/dev/null 2>&1") == 0;
            before = capture("md5sum < '" + img.string() + "'").out; // as the preparation left it
            fsck = fsck_n(img);
            if (prepared) {
                ++tuned;
                fsck_before = capture("e2fsck -fn '" + img.string() + "' | " + fsck_report_filter).out;
                b = capture_all(build);
            }
        }
        INFO("build: " << b.out);
        CHECK(b.status <= 4);
        CHECK(b.status != 1);
        const output c = capture_all("timeout 300 env " + tool + " check --json '" + img.string() + "'");
        INFO("check: " << c.out);
        CHECK(c.status <= 4);
        if (b.status == 0) {
            ++built;
            CHECK(c.status == 0);
            if (fsck == 0) CHECK(fsck_n(img) == 0);
            if (!fsck_before.empty()) CHECK(capture("e2fsck -fn '" + img.string() + "' | " + fsck_report_filter).out == fsck_before);
        } else {
            ++build_refused;
            CHECK(b.out.find("build refused or failed: ") != std::string::npos);
            CHECK(capture("md5sum < '" + img.string() + "'").out == before); // a refusal writes nothing
            CHECK(c.status != 0);
        }
        fs::remove(img);
    }
    fs::remove_all(tmp);
    MESSAGE(clean << " clean images compared with debugfs, " << damaged << " damaged images queried (" << refused
                  << " refusals); build stored maps in " << built << " images and refused " << build_refused
                  << " (" << tuned << " grown and given a journal first)");
    CHECK(built > 0);
    CHECK(clean > 0);
}

TEST_CASE("replay: a journal superblock with a bad checksum is reset as e2fsck -y resets it (issue 15)") {
    const fs::path jbd2_corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "jbd2";
    if (!fs::exists(jbd2_corpus) || run("e2fsck -V >/dev/null 2>&1") != 0) {
        MESSAGE("SKIP: corpus not found at " << jbd2_corpus << " (or no e2fsck)");
        return;
    }
    const fs::path tmp = make_temp_dir();
    REQUIRE(!tmp.empty());
    // Journals with checksums v2 and v3, a transaction pending (needs
    // recovery) or none (the log emptied first by a replay): an unused
    // superblock byte changed, the checksum left as it was.
    int compared = 0;
    for (const std::string name : {"j_recover_csum2_32bit", "j_recover_csum2_64bit"}) {
        for (const bool pending : {true, false}) {
            CAPTURE(name);
            CAPTURE(pending);
            const fs::path orig = tmp / "orig.img", theirs = tmp / "e2fsck.img", ours = tmp / "jbtree.img";
            REQUIRE(run("gzip -dc '" + (jbd2_corpus / (name + ".img.gz")).string() + "' > '" + orig.string() + "'") == 0);
            if (!pending) REQUIRE(run("e2fsck -E journal_only -y '" + orig.string() + "' >/dev/null 2>&1") <= 1);
            const std::uint64_t bs = field(orig.string(), "Block size");
            const std::uint64_t jsb = std::strtoull(capture("debugfs -c -R 'bmap <8> 0' '" + orig.string() + "' 2>/dev/null").out.c_str(), nullptr, 10);
            REQUIRE(jsb != 0);
            const std::uint64_t jsb_off = jsb * bs;
            REQUIRE(run("printf '\\001' | dd of='" + orig.string() + "' bs=1 seek=" + std::to_string(jsb_off + 0x48) +
                        " conv=notrunc status=none") == 0); // s_max_transaction: unused, but under the checksum
            fs::copy_file(orig, theirs, fs::copy_options::overwrite_existing);
            fs::copy_file(orig, ours, fs::copy_options::overwrite_existing);
            const std::string e2 = capture_all("e2fsck -E journal_only -y '" + theirs.string() + "'").out;
            REQUIRE(e2.find("Journal superblock is corrupt") != std::string::npos);
            const output o = capture_all(tool + " replay '" + ours.string() + "'");
            INFO(o.out);
            CHECK(o.status == 4); // the log is lost: reported as damage
            CHECK(o.out.find("reset as e2fsck does") != std::string::npos);
            std::string x = slurp(theirs), y = slurp(ours);
            REQUIRE(x.size() == y.size());
            // The journal superblock: e2fsck's but the random s_sequence.
            std::string xj = x.substr(jsb_off, bs), yj = y.substr(jsb_off, bs);
            for (std::size_t k = 0x18; k < 0x1C; ++k) xj[k] = yj[k] = 0;
            CHECK(xj == yj);
            // With a transaction pending, the lost log calls for a full
            // check: the tool leaves the filesystem marked not clean for
            // it. e2fsck goes on to that check by itself (here also when
            // nothing was pending); after `e2fsck -fy` on the tool's
            // image the two are the same but what e2fsck stamps from its
            // own run (times, s_kbytes_written, checksum) and the sequence.
            const std::size_t sb = 1024;
            CHECK(((static_cast<unsigned char>(y[sb + 0x3A]) & 1) == 0) == pending);
            CHECK((o.out.find("marked not clean") != std::string::npos) == pending);
            CHECK(run("e2fsck -fy '" + ours.string() + "' >/dev/null 2>&1") <= 1);
            y = slurp(ours);
            for (std::size_t k = 0x18; k < 0x1C; ++k) x[jsb_off + k] = y[jsb_off + k] = 0;
            for (std::size_t off : {0x30, 0x31, 0x32, 0x33, 0x40, 0x41, 0x42, 0x43, 0x3FC, 0x3FD, 0x3FE, 0x3FF})
                x[sb + off] = y[sb + off] = 0;
            for (std::size_t off = 0x178; off < 0x180; ++off) x[sb + off] = y[sb + off] = 0;
            CHECK(x == y);
            CHECK(run("e2fsck -fn '" + ours.string() + "' >/dev/null 2>&1") == 0);
            ++compared;
        }
    }
    CHECK(compared == 4);
    fs::remove_all(tmp);
}

TEST_CASE("replay gives the image e2fsck -E journal_only gives, for every corpus journal; refused ones are left alone") {
    const fs::path jbd2_corpus = fs::path(JBTREE_SOURCE_ROOT) / ".." / "shared" / "corpus" / "jbd2";
    if (!fs::exists(jbd2_corpus)) {
        MESSAGE("SKIP: corpus not found at " << jbd2_corpus);
        return;
    }
    if (run("e2fsck -V >/dev/null 2>&1") != 0) {
        MESSAGE("SKIP: e2fsck not installed");
        return;
    }
    const fs::path tmp = make_temp_dir();
    REQUIRE(!tmp.empty());
    int same = 0, refused = 0;
    for (const auto& entry : fs::directory_iterator(jbd2_corpus)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 7 || name.substr(name.size() - 7) != ".img.gz") continue;
        CAPTURE(name);
        const fs::path orig = tmp / "orig.img", theirs = tmp / "e2fsck.img", ours = tmp / "jbtree.img";
        REQUIRE(run("gzip -dc '" + entry.path().string() + "' > '" + orig.string() + "'") == 0);
        fs::copy_file(orig, theirs, fs::copy_options::overwrite_existing);
        fs::copy_file(orig, ours, fs::copy_options::overwrite_existing);
        const int rc_e2fsck = run("e2fsck -E journal_only -y '" + theirs.string() + "' >/dev/null 2>&1");
        const output o = capture(tool + " replay '" + ours.string() + "'");
        CAPTURE(o.status);
        REQUIRE((o.status == 0 || o.status == 4));
        std::string x = slurp(theirs), y = slurp(ours);
        REQUIRE(x.size() == y.size());
        if (o.status == 4 && y == slurp(orig)) { // refused: nothing written
            CHECK(rc_e2fsck != 0);            // e2fsck did not simply replay it either
            ++refused;
            continue;
        }
        // Fields e2fsck and libext2fs stamp from their own run: s_wtime,
        // s_kbytes_written and the superblock checksum. Nothing else may differ.
        for (std::size_t off : {0x30, 0x31, 0x32, 0x33, 0x3FC, 0x3FD, 0x3FE, 0x3FF}) x[1024 + off] = y[1024 + off] = 0;
        for (std::size_t off = 0x178; off < 0x180; ++off) x[1024 + off] = y[1024 + off] = 0;
        REQUIRE(x == y);
        // A second replay finds the journal empty and changes nothing.
        const std::string before = slurp(ours);
        const output again = capture(tool + " replay '" + ours.string() + "'");
        CHECK(again.status == 0);
        CHECK(slurp(ours) == before);
        ++same;
    }
    fs::remove_all(tmp);
    MESSAGE(same << " journals replayed to e2fsck's image, " << refused << " refused and left alone");
    CHECK(same > 0);
}
