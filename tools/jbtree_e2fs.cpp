// SPDX-License-Identifier: MIT
// jbtree-e2fs: the jbtree maps on an ext4 image, through libext2fs.
//
//   jbtree-e2fs build    [--json] [--min-blocks N] [--memory SIZE] [--tmpdir DIR] [--progress] IMAGE
//                                                  scan, build the three maps, store them in the image
//   jbtree-e2fs check    [--json] IMAGE            verify the stored maps against the filesystem
//   jbtree-e2fs owner    [--json] IMAGE BLOCK...   owners of each block (as debugfs icheck, all owners)
//   jbtree-e2fs paths    [--json] IMAGE INODE...   every path of each inode (as debugfs ncheck)
//   jbtree-e2fs refcount [--json] IMAGE BLOCK...   data owners of each block (1 if not shared)
//   jbtree-e2fs replay   IMAGE                     replay the image's journal, as e2fsck -E journal_only
//   jbtree-e2fs --help | -h | help, jbtree-e2fs --version   (manual page: docs/jbtree-e2fs.8)
//
// Queries read the maps stored in the image by `build` (inode 5, written
// through the image's journal: ext2fs/stored_maps.hpp). Without stored maps,
// or when they are stale (the filesystem changed since the build), the
// maps are built in memory from a scan and stderr says so. Only `build`
// and `replay` write to the image.
//
// Output: a header line, then one tab-separated line per answer, as debugfs:
//   owner:    "Block\tInode number", then "BLOCK\tINODE" for each owner
//             (special owners as <superblock/descriptors>, <bitmaps>, ...),
//             or "BLOCK\t<block not found>";
//   paths:    "Inode\tPathname", then "INODE\t/a/b" for each path;
//   refcount: "Block\tRefcount", then "BLOCK\tN".
// --json prints one JSON object instead.
//
// Errors: every non-zero exit says why on stderr, and with --json also as
// one JSON object on stdout, {"error":CODE,"message":TEXT,"status":N}
// (check and the queries put these members into their result object). The
// codes are stable (docs/e2fsprogs.md, "Errors"); each has one exit status:
//   1 not_found, maps_absent, no_journal: nothing to answer with;
//   2 usage: bad arguments;
//   3 cannot_open, busy, needs_recovery, io: the image cannot be opened or
//     read now;
//   4 unsupported, not_clean, corrupted, journal_refused, stale_maps,
//     maps_inconsistent, no_space, internal: the image is damaged or
//     unsupported, or the maps are not right for it.
#include <jbtree/ext2fs/check_maps.hpp>
#include <jbtree/ext2fs/fast_commit_replay.hpp>
#include <jbtree/ext2fs/io_device.hpp>
#include <jbtree/ext2fs/journal_extents.hpp>
#include <jbtree/ext2fs/scan.hpp>
#include <jbtree/ext2fs/stored_maps.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>
#include <jbtree/journal/null_journal.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/storage/memory_storage.hpp>
#include <jbtree/volume/ownership.hpp>

#include <et/com_err.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace jbtree;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using ext2fs_adapter::stored_maps;
using ext2fs_adapter::describe_map_error;

constexpr int ok = 0;

std::string json_string(const unsigned char* p, std::size_t n) {
    std::string s = "\"";
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned char c = p[i];
        if (c == '"' || c == '\\') s += '\\', s += static_cast<char>(c);
        else if (c < 0x20 || c >= 0x7F) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c); // bytes >= 0x7F as code points: names are bytes
            s += b;
        } else s += static_cast<char>(c);
    }
    return s + "\"";
}
std::string json_string(const std::string& s) {
    return json_string(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

// ---- errors -----------------------------------------------------------------------------
//
// One stable code per kind of failure, one exit status per code; fail()
// reports every one of them, on stderr always and on stdout as a JSON
// object with --json. Nothing else prints an error.

enum class ecode : std::uint8_t {
    not_found,         // some block has no owner, some inode no path
    maps_absent,       // check: no maps stored (inode 5 free, or someone else's)
    no_journal,        // replay: the filesystem has no internal journal
    usage,             // bad arguments
    cannot_open,       // the image cannot be opened: missing, unreadable, not ext2/3/4
    busy,              // mounted, or held by another program
    needs_recovery,    // the image's journal needs recovery first
    io,                // a read or write failed
    unsupported,       // a feature or size jbtree does not handle (no journal, no extents, inode 5 foreign)
    not_clean,         // build: the filesystem has errors or was not cleanly unmounted (run e2fsck)
    corrupted,         // damage: in the filesystem, the journal, the map file or its trees
    journal_refused,   // replay: a journal jbtree does not replay (left untouched; use e2fsck)
    stale_maps,        // check: the maps agree with nothing newer than the build (the filesystem changed since)
    maps_inconsistent, // check: the maps disagree with the filesystem
    no_space,          // build: no free contiguous run for the map file
    internal,          // anything else (out of memory, a bug)
};

struct err_info {
    const char* code;
    int status;
};

constexpr err_info describe(ecode e) noexcept {
    switch (e) {
    case ecode::not_found: return {"not_found", 1};
    case ecode::maps_absent: return {"maps_absent", 1};
    case ecode::no_journal: return {"no_journal", 1};
    case ecode::usage: return {"usage", 2};
    case ecode::cannot_open: return {"cannot_open", 3};
    case ecode::busy: return {"busy", 3};
    case ecode::needs_recovery: return {"needs_recovery", 3};
    case ecode::io: return {"io", 3};
    case ecode::unsupported: return {"unsupported", 4};
    case ecode::not_clean: return {"not_clean", 4};
    case ecode::corrupted: return {"corrupted", 4};
    case ecode::journal_refused: return {"journal_refused", 4};
    case ecode::stale_maps: return {"stale_maps", 4};
    case ecode::maps_inconsistent: return {"maps_inconsistent", 4};
    case ecode::no_space: return {"no_space", 4};
    case ecode::internal: return {"internal", 4};
    }
    return {"internal", 4};
}

// A failure found by a helper, reported by its caller through fail().
struct failure {
    ecode code = ecode::internal;
    std::string text;
};

// What every report needs to know, set once by main().
struct run_state {
    bool json = false;
    std::string image; // "" until the arguments are checked
} session;

// Print a JSON object made of `members` (comma-separated "name":value
// pairs, possibly empty) on stdout.
void print_object(const std::string& members) { std::printf("{%s}\n", members.c_str()); }

// Report a failure and return its exit status: "jbtree-e2fs: IMAGE: text"
// on stderr, always; with --json, one object on stdout: `members` (what
// the command has to say besides, e.g. check's findings) followed by
// "error", "message" (the stderr line without "jbtree-e2fs: ") and "status".
int fail(ecode e, const std::string& text, const std::string& members = {}) {
    const err_info k = describe(e);
    const std::string message = session.image.empty() ? text : session.image + ": " + text;
    std::fprintf(stderr, "jbtree-e2fs: %s\n", message.c_str());
    if (session.json)
        print_object(members + (members.empty() ? "" : ",") + "\"error\":\"" + k.code + "\",\"message\":" +
                     json_string(message) + ",\"status\":" + std::to_string(k.status));
    std::fflush(stdout);
    return k.status;
}
int fail(const failure& f, const std::string& members = {}) { return fail(f.code, f.text, members); }

constexpr const char* usage_text = "usage: jbtree-e2fs build [--json] [--min-blocks N] [--memory SIZE] [--tmpdir DIR]\n"
                                   "                         [--progress] IMAGE\n"
                                   "       jbtree-e2fs check [--json] IMAGE\n"
                                   "       jbtree-e2fs owner [--json] IMAGE BLOCK...\n"
                                   "       jbtree-e2fs paths [--json] IMAGE INODE...\n"
                                   "       jbtree-e2fs refcount [--json] IMAGE BLOCK...\n"
                                   "       jbtree-e2fs replay IMAGE\n"
                                   "       jbtree-e2fs --help | -h | help\n"
                                   "       jbtree-e2fs --version\n";

int usage_error(const std::string& why) {
    const int st = fail(ecode::usage, why);
    std::fputs(usage_text, stderr);
    return st;
}

// --help, -h, help: the usage and what each command does, on stdout.
int print_help() {
    std::fputs(usage_text, stdout);
    std::fputs("\n"
               "The back-pointer maps of an ext4 image (rmap, refcount, parent pointers),\n"
               "stored in its reserved inode 5 through its own journal.\n"
               "\n"
               "  build     scan the filesystem, build the three maps, store them in the image\n"
               "  check     verify the stored maps against the filesystem (both ways)\n"
               "  owner     every owner of each block (debugfs icheck names one)\n"
               "  paths     every path of each inode (as debugfs ncheck)\n"
               "  refcount  the number of data owners of each block (1 if not shared)\n"
               "  replay    replay the image's journal, as e2fsck -E journal_only\n"
               "\n"
               "  --json     one JSON object on stdout, errors included (not for replay)\n"
               "  --min-blocks N  build: make the map file at least N blocks (room to grow); without it\n"
               "                  a rebuild keeps the old map file's length if that is longer\n"
               "  --memory SIZE   build: records held in memory at once (default 32M; K, M, G\n"
               "             suffixes; at least 64K; 0 or unlimited: all in memory); past it they\n"
               "             go to sorted runs in temporary files. Peak memory is at most about\n"
               "             SIZE + libext2fs's bitmaps ((blocks + inodes) / 8 bytes) + 8 bytes\n"
               "             per directory + 25 MiB\n"
               "  --tmpdir DIR    build: where temporary files go (default $TMPDIR, else /tmp);\n"
               "             they are unlinked as soon as created: nothing is left behind\n"
               "  --progress      build: progress on stderr (default: when stderr is a terminal)\n"
               "  --help     this text;  --version  the versions of jbtree-e2fs and libext2fs\n"
               "\n"
               "Queries use the stored maps unless they are absent or stale (then they build\n"
               "them in memory and say so). Only build and replay write to the image, which\n"
               "must not be mounted. Exit status: 0 ok, 1 nothing found, 2 usage, 3 cannot\n"
               "open or read the image now, 4 damaged, unsupported or maps not right.\n"
               "Manual: jbtree-e2fs(8); error codes: docs/e2fsprogs.md.\n",
               stdout);
    return ok;
}

int print_version() {
    const char* lib = nullptr;
    const char* date = nullptr;
    ext2fs_get_library_version(&lib, &date);
    std::printf("jbtree-e2fs %s (libext2fs %s, %s)\n", JBTREE_VERSION_STRING, lib ? lib : "?", date ? date : "?");
    return ok;
}

// A libext2fs error opening an image: held by someone else, or not openable.
ecode open_error(errcode_t e) {
    return e == EBUSY || e == EXT2_ET_MMP_FSCK_ON || e == EXT2_ET_MMP_FAILED ? ecode::busy : ecode::cannot_open;
}

// A jbtree error reading the maps.
ecode read_error(errc e) { return e == errc::io ? ecode::io : e == errc::no_memory ? ecode::internal : ecode::corrupted; }

bool parse_u64(const char* s, std::uint64_t& v) {
    if (!s || !*s || *s == '-') return false;
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(s, &end, 0);
    if (errno || *end) return false;
    v = x;
    return true;
}

using ext2fs_adapter::owner_name;

// An image opened read-only, closed when it goes out of scope.
struct image {
    ext2_filsys fs = nullptr;
    image() = default;
    image(const image&) = delete;
    image& operator=(const image&) = delete;
    ~image() {
        if (fs) ext2fs_close_free(&fs);
    }
};

std::optional<failure> open_image(const char* path, image& img) {
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &img.fs))
        return failure{open_error(e), std::string("cannot open: ") + error_message(e)};
    return std::nullopt;
}

void scan_progress(std::uint64_t done, std::uint64_t total) {
    if (total >= 100000 && isatty(2)) std::fprintf(stderr, "\rscanning inodes: %llu/%llu%s", static_cast<unsigned long long>(done),
                                                    static_cast<unsigned long long>(total), done == total ? "\n" : "");
}

// build's progress on stderr: "scanning inodes: N%", then "writing
// records: N%", at most 4 times a second and only when the percent moved
// (the last line of each always).
struct percent_meter {
    const char* what = "";
    bool tty = false;
    int last = -1;
    double last_time = 0;
    void show(std::uint64_t done, std::uint64_t total) {
        if (total == 0) return;
        const int pct = static_cast<int>(done >= total ? 100 : done * 100 / total);
        const double now = ext2fs_adapter::monotonic_seconds();
        if (pct == last || (pct != 100 && now - last_time < 0.25)) return;
        last = pct;
        last_time = now;
        // On a terminal one line, rewritten; else a line each.
        if (tty) std::fprintf(stderr, "\r%s: %3d%%%s", what, pct, pct == 100 ? "\n" : "");
        else std::fprintf(stderr, "%s: %d%%\n", what, pct);
        std::fflush(stderr);
    }
};

// Scan an open image.
std::optional<failure> scan_image(ext2_filsys fs, ext2fs_adapter::scan_result& r) {
    errcode_t ee = 0;
    const errc e = ext2fs_adapter::scan_filesystem(fs, r, &scan_progress, &ee);
    if (e == errc::ok) return std::nullopt;
    return failure{e == errc::corrupted ? ecode::corrupted : ecode::io,
                   std::string("scan failed: ") + describe(e) + (ee ? std::string(": ") + error_message(ee) : "")};
}

// The three maps of one image, in memory.
struct memory_maps {
    S s{{4096, false, 0}};
    J j{s};
    std::optional<rmap<S, J>> rm;
    std::optional<refcount_map<S, J>> rc;
    std::optional<parent_map<S, J>> pm;
};

std::optional<failure> build_in_memory(ext2_filsys fs, memory_maps& m) {
    ext2fs_adapter::scan_result r;
    if (auto f = scan_image(fs, r)) return f;
    auto rm = rmap<S, J>::create(m.s, m.j, 1);
    auto rc = refcount_map<S, J>::create(m.s, m.j, 2);
    auto pm = parent_map<S, J>::create(m.s, m.j, 3);
    if (!rm || !rc || !pm) return failure{ecode::internal, "cannot create the maps in memory"};
    m.rm.emplace(std::move(*rm));
    m.rc.emplace(std::move(*rc));
    m.pm.emplace(std::move(*pm));
    auto h = m.j.start(unlimited_credits);
    if (!h) return failure{ecode::internal, std::string("building the maps in memory: ") + describe(h.error())};
    const char* what = "";
    if (const errc e = ext2fs_adapter::load_maps(r, {}, *m.rm, *m.rc, *m.pm, *h, &what); e != errc::ok)
        return failure{e == errc::no_memory ? ecode::internal : ecode::corrupted,
                       std::string("building the ") + what + " map: " + describe(e)};
    (void)m.j.stop(*h);
    return std::nullopt;
}

// The end of a query: its answers as one object (with --json), or, when
// some argument found nothing, the not_found failure carrying them.
int finish_query(const std::string& members, std::size_t missing, std::size_t total, const char* what) {
    if (missing == 0) {
        if (session.json) print_object(members);
        return ok;
    }
    return fail(ecode::not_found, std::to_string(missing) + " of " + std::to_string(total) + " " + what, members);
}

// Why a map operation failed, naming the damaged node: why(slot, e),
// slot one of ext2fs_adapter::map_slot_rmap, ...; and where: the node of a
// map (rmap, refcount) holding a record that covers a block, or "".
struct error_text {
    std::function<std::string(std::uint32_t, errc)> why;
    std::function<std::string(std::uint32_t, std::uint64_t)> covering;
    std::function<std::string(const parent_key&)> holding; // the parent pointer node holding a record
    std::string operator()(std::uint32_t slot, errc e) const { return why(slot, e); }
};

template <class RM>
int cmd_owner(RM& rm, const std::vector<std::uint64_t>& blocks, const error_text& why) {
    const bool json = session.json;
    std::size_t missing = 0;
    std::string js = "\"owners\":[";
    if (!json) std::printf("Block\tInode number\n");
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const std::uint64_t b = blocks[i];
        std::vector<rmap_record> found;
        if (const errc e = rm.owners_of(b, [&](const rmap_record& r) {
                found.push_back(r);
                return true;
            });
            e != errc::ok)
            return fail(read_error(e), "owners of block " + std::to_string(b) + ": " + why(ext2fs_adapter::map_slot_rmap, e));
        if (found.empty()) ++missing;
        if (json) {
            js += std::string(i ? "," : "") + "{\"block\":" + std::to_string(b) + ",\"owners\":[";
            for (std::size_t k = 0; k < found.size(); ++k) {
                const rmap_record& r = found[k];
                js += std::string(k ? "," : "") + "{\"owner\":" +
                      (rmap_owner::is_special(r.owner) ? "\"" + owner_name(r.owner) + "\"" : std::to_string(r.owner)) +
                      ",\"start\":" + std::to_string(r.start) + ",\"length\":" + std::to_string(r.length) +
                      ",\"offset\":" + std::to_string(r.offset) + ",\"xattr\":" + ((r.flags & rmap_flags::xattr) ? "true" : "false") +
                      ",\"extent_tree\":" + ((r.flags & rmap_flags::bmbt) ? "true" : "false") +
                      ",\"unwritten\":" + ((r.flags & rmap_flags::unwritten) ? "true" : "false") + "}";
            }
            js += "]}";
            continue;
        }
        if (found.empty()) std::printf("%" PRIu64 "\t<block not found>\n", b);
        for (const rmap_record& r : found) std::printf("%" PRIu64 "\t%s\n", b, owner_name(r.owner).c_str());
    }
    return finish_query(js + "]", missing, blocks.size(), "blocks have no owner");
}

template <class PM>
int cmd_paths(PM& pm, const std::vector<std::uint64_t>& inodes, const error_text& why) {
    const bool json = session.json;
    std::size_t missing = 0;
    std::vector<unsigned char> buf(PM::path_buffer_size(256));
    std::string js = "\"paths\":[";
    if (!json) std::printf("Inode\tPathname\n");
    for (std::size_t i = 0; i < inodes.size(); ++i) {
        const std::uint64_t ino = inodes[i];
        std::vector<std::string> found;
        std::string jpaths;
        auto r = pm.paths_of(ino, EXT2_ROOT_INO, 256, buf.data(), buf.size(), [&](const path_event& e) {
            if (e.kind != path_kind::complete) return;
            found.emplace_back(reinterpret_cast<const char*>(e.path), e.size);
            jpaths += std::string(jpaths.empty() ? "" : ",") + json_string(e.path, e.size);
        });
        if (!r)
            return fail(read_error(r.error()), "paths of inode " + std::to_string(ino) + ": " +
                                                   why(ext2fs_adapter::map_slot_parent, r.error()));
        // Every record those paths came from holds the name its key hashes.
        parent_key bad{};
        if (const errc ne = ext2fs_adapter::check_parent_names(pm, ino, bad); ne == errc::corrupted) {
            const std::string where = why.holding(bad);
            return fail(ecode::corrupted, "paths of inode " + std::to_string(ino) + ": " +
                                              (where.empty() ? std::string("parent pointer record of inode ") + std::to_string(bad.child) +
                                                                   " in directory " + std::to_string(bad.parent)
                                                             : where) +
                                              ": the name does not match its key's hash");
        } else if (ne != errc::ok)
            return fail(read_error(ne), "paths of inode " + std::to_string(ino) + ": " + why(ext2fs_adapter::map_slot_parent, ne));
        if (found.empty()) ++missing;
        if (json) {
            js += std::string(i ? "," : "") + "{\"inode\":" + std::to_string(ino) + ",\"paths\":[" + jpaths +
                  "],\"cycles\":" + std::to_string(r->cycles) + ",\"too_deep\":" + std::to_string(r->too_deep) +
                  ",\"detached\":" + std::to_string(r->detached) + "}";
            continue;
        }
        for (const std::string& p : found) std::printf("%" PRIu64 "\t%s\n", ino, p.c_str());
    }
    return finish_query(js + "]", missing, inodes.size(), "inodes have no path");
}

template <class RC, class RM>
int cmd_refcount(RC& rcm, RM& rm, const std::vector<std::uint64_t>& blocks, const error_text& why) {
    const bool json = session.json;
    std::string js = "\"refcounts\":[";
    if (!json) std::printf("Block\tRefcount\n");
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const std::uint64_t b = blocks[i];
        // Checked against the rmap's data owners of the block: a refcount
        // record can be wrong in ways no node check sees.
        const auto c = ext2fs_adapter::checked_refcount(rcm, rm, b);
        if (c.disagree) {
            std::string where = why.covering(ext2fs_adapter::map_slot_refcount, b);
            if (where.empty()) where = why.covering(ext2fs_adapter::map_slot_rmap, b);
            return fail(ecode::corrupted, "refcount of block " + std::to_string(b) + ": the refcount map says " +
                                              std::to_string(c.refcount) + ", the rmap has " + std::to_string(c.data_owners) +
                                              " data owners" + (where.empty() ? "" : ": " + where));
        }
        if (c.error != errc::ok)
            return fail(read_error(c.error), "refcount of block " + std::to_string(b) + ": " + why(c.slot, c.error));
        if (json) js += std::string(i ? "," : "") + "{\"block\":" + std::to_string(b) + ",\"refcount\":" + std::to_string(c.refcount) + "}";
        else std::printf("%" PRIu64 "\t%" PRIu32 "\n", b, c.refcount);
    }
    return finish_query(js + "]", 0, blocks.size(), "");
}

// owner / paths / refcount: from the stored maps when they are there and
// fresh, else from maps built in memory (said on stderr).
int cmd_query(const std::string& cmd, const char* path, const std::vector<std::uint64_t>& nums) {
    image img;
    if (auto f = open_image(path, img)) return fail(*f);
    ext2_filsys fs = img.fs;
    auto answer = [&](auto& rm, auto& rc, auto& pm, const error_text& why) {
        if (cmd == "owner") return cmd_owner(rm, nums, why);
        if (cmd == "paths") return cmd_paths(pm, nums, why);
        return cmd_refcount(rc, rm, nums, why);
    };
    {
        stored_maps sm;
        std::string why;
        const errc e = sm.open(fs, why);
        if (e == errc::ok && !sm.stale())
            return answer(sm.rm(), sm.rc(), sm.pm(),
                          error_text{[&](std::uint32_t slot, errc x) { return sm.describe_error(slot, x); },
                                     [&](std::uint32_t slot, std::uint64_t b) { return sm.node_covering(slot, b); },
                                     [&](const parent_key& k) { return sm.node_holding(k); }});
        if (e == errc::busy) // a scan would read metadata the journal is about to replace
            return fail(ext2fs_has_feature_journal_needs_recovery(fs->super) ? ecode::needs_recovery : ecode::busy, why);
        if (e == errc::ok) why = "they are stale (the filesystem changed since they were built)";
        std::fprintf(stderr, "jbtree-e2fs: %s: not using stored maps: %s: building them in memory\n", path, why.c_str());
    }
    memory_maps m;
    if (auto f = build_in_memory(fs, m)) return fail(*f);
    return answer(*m.rm, *m.rc, *m.pm,
                  error_text{[&](std::uint32_t slot, errc x) {
                                 const char* name = stored_maps::map_name(slot);
                                 return slot == ext2fs_adapter::map_slot_rmap       ? describe_map_error(name, m.rm->tree(), x)
                                        : slot == ext2fs_adapter::map_slot_refcount ? describe_map_error(name, m.rc->tree(), x)
                                                                                    : describe_map_error(name, m.pm->tree(), x);
                             },
                             [](std::uint32_t, std::uint64_t) { return std::string(); },
                             [](const parent_key&) { return std::string(); }});
}

struct build_progress {
    bool tty = false; // show progress (stderr a terminal, or --progress)
    percent_meter scan{"scanning inodes"}, load{"writing records"};
    std::uint64_t writes = 0;
    std::uint64_t kill_after = 0; // JBTREE_E2FS_KILL_AFTER_WRITES: a crash test
};

void on_build_write(void* ctx, std::uint64_t, std::uint32_t) {
    auto* p = static_cast<build_progress*>(ctx);
    if (p->kill_after && ++p->writes >= p->kill_after) _exit(137); // as SIGKILL: unflushed writes are lost
}

// What build_stored_maps() refused or failed with, as an error code.
ecode build_error(ext2fs_adapter::build_problem p) {
    using ext2fs_adapter::build_problem;
    switch (p) {
    case build_problem::cannot_open: return ecode::cannot_open;
    case build_problem::in_use: return ecode::busy;
    case build_problem::needs_recovery: return ecode::needs_recovery;
    case build_problem::unsupported: return ecode::unsupported;
    case build_problem::not_clean: return ecode::not_clean;
    case build_problem::damaged: return ecode::corrupted;
    case build_problem::no_space: return ecode::no_space;
    case build_problem::io: return ecode::io;
    case build_problem::none:
    case build_problem::failed: break;
    }
    return ecode::internal;
}

// build's memory options.
struct build_memory {
    std::uint64_t bytes = 32ull << 20; // --memory (0: unlimited)
    std::string tmpdir;                  // --tmpdir, else $TMPDIR, else /tmp
    bool progress = false;               // --progress
};

// "256M", "1G", "65536", "unlimited", "0": bytes (0: unlimited); false if
// not a size.
bool parse_size(const char* s, std::uint64_t& out) {
    if (std::strcmp(s, "unlimited") == 0) {
        out = 0;
        return true;
    }
    std::string digits(s);
    std::uint64_t mul = 1;
    if (!digits.empty()) {
        switch (digits.back()) {
        case 'k': case 'K': mul = 1ull << 10; break;
        case 'm': case 'M': mul = 1ull << 20; break;
        case 'g': case 'G': mul = 1ull << 30; break;
        case 't': case 'T': mul = 1ull << 40; break;
        default: break;
        }
        if (mul != 1) digits.pop_back();
    }
    std::uint64_t v = 0;
    if (digits.empty() || !parse_u64(digits.c_str(), v) || v > UINT64_MAX / mul) return false;
    out = v * mul;
    return true;
}

int cmd_build(const char* path, std::optional<std::uint64_t> min_blocks, const build_memory& mem) {
    const bool json = session.json;
    build_progress prog;
    prog.tty = mem.progress || isatty(2);
    prog.scan.tty = prog.load.tty = isatty(2);
    if (const char* k = std::getenv("JBTREE_E2FS_KILL_AFTER_WRITES")) {
        std::uint64_t v = 0;
        if (!parse_u64(k, v)) return usage_error("JBTREE_E2FS_KILL_AFTER_WRITES is not a number");
        prog.kill_after = v;
    }
    ext2fs_adapter::build_hooks hooks;
    hooks.progress = [](void* c, std::uint64_t d, std::uint64_t t) {
        auto* p = static_cast<build_progress*>(c);
        if (p->tty) p->scan.show(d, t);
    };
    hooks.load_progress = [](void* c, std::uint64_t d, std::uint64_t t) {
        auto* p = static_cast<build_progress*>(c);
        if (p->tty) p->load.show(d, t);
    };
    hooks.before_write = &on_build_write;
    hooks.ctx = &prog;
    // --min-blocks sizes the file; without it a rebuild keeps the old length.
    hooks.min_blocks = min_blocks.value_or(0);
    hooks.keep_length = !min_blocks;
    hooks.memory = mem.bytes;
    hooks.tmpdir = mem.tmpdir.c_str();
    ext2fs_adapter::build_report rep;
    std::string why;
    const errc e = ext2fs_adapter::build_stored_maps(path, rep, why, hooks);
    if (e != errc::ok) {
        std::string members = "\"built\":false";
        if (rep.problem == ext2fs_adapter::build_problem::no_space)
            members += ",\"need_blocks\":" + std::to_string(rep.need_blocks) + ",\"largest_free_run\":" +
                       std::to_string(rep.largest_free_run);
        return fail(build_error(rep.problem), "build refused or failed: " + why, members);
    }
    if (json) {
        std::printf("{\"built\":true,\"inodes\":%" PRIu64 ",\"directories\":%" PRIu64 ",\"rmap_records\":%" PRIu64
                    ",\"refcount_records\":%" PRIu64 ",\"parent_records\":%" PRIu64 ",\"map_file\":{\"inode\":5,\"first\":%" PRIu64
                    ",\"blocks\":%" PRIu64 ",\"tree_blocks\":%" PRIu64 "},\"nodes\":%" PRIu64 ",\"journaled_fs_blocks\":%" PRIu32 ",\"replaced\":%s,\"memory\":%" PRIu64
                    ",\"spilled\":{\"rmap_runs\":%" PRIu64 ",\"link_runs\":%" PRIu64 ",\"merge_passes\":%" PRIu64 "}}\n",
                    rep.inodes, rep.directories, rep.rmap_records, rep.refcount_records, rep.parent_records, rep.first,
                    rep.blocks, rep.tree_blocks, rep.nodes, rep.journaled, rep.replaced ? "true" : "false", mem.bytes,
                    rep.rmap_runs, rep.link_runs, rep.merge_passes);
        return ok;
    }
    std::printf("%s: maps built from %" PRIu64 " inodes (%" PRIu64 " directories): %" PRIu64 " rmap, %" PRIu64
                " refcount, %" PRIu64 " parent pointer records\n",
                path, rep.inodes, rep.directories, rep.rmap_records, rep.refcount_records, rep.parent_records);
    std::printf("%s: stored in inode 5, blocks %" PRIu64 "-%" PRIu64 " (%" PRIu64 " tree blocks)%s%s; committed through the "
                "image's journal with %" PRIu32 " filesystem blocks\n",
                path, rep.first, rep.first + rep.blocks - 1, rep.nodes,
                rep.tree_blocks ? (", its extent tree in " + std::to_string(rep.tree_blocks) + " more").c_str() : "",
                rep.replaced ? ", replacing the old maps" : "", rep.journaled);
    return ok;
}

// check: the stored trees, their blocks, and both ways against a scan.
int cmd_check(const char* path) {
    const bool json = session.json;
    image img;
    if (auto f = open_image(path, img)) return fail(*f);
    ext2_filsys fs = img.fs;
    // Every problem found, and the one that decides the error code: damage
    // (or a read that failed) over disagreement over staleness.
    std::vector<std::string> problems;
    std::optional<failure> worst;
    auto rank = [](ecode e) { return e == ecode::stale_maps ? 1 : e == ecode::maps_inconsistent ? 2 : 3; };
    auto note = [&](ecode e, const std::string& p) {
        problems.push_back(p);
        if (!worst || rank(e) > rank(worst->code)) worst = failure{e, p};
    };
    std::string info;
    auto finish = [&](const char* state) {
        std::string js = std::string("\"image\":") + json_string(path) + ",\"maps\":\"" + state + "\",\"clean\":" +
                         (worst ? "false" : "true") + ",\"problems\":[";
        for (std::size_t i = 0; i < problems.size(); ++i) {
            if (i) js += ',';
            js += json_string(problems[i]); // not "," + string&&: a GCC 12 -Wrestrict false positive at -O3
        }
        js += "]" + info;
        if (!json) {
            for (const std::string& p : problems) std::printf("%s: problem: %s\n", path, p.c_str());
            std::printf("%s: %s\n", path, !worst ? "maps clean" : worst->code == ecode::maps_absent ? "no maps stored" : "maps NOT clean");
        }
        if (!worst) {
            if (json) print_object(js);
            return ok;
        }
        // The checks ran ("present"): say that the maps failed them.
        std::string text = std::strcmp(state, "present") == 0 ? "maps NOT clean: " + worst->text : worst->text;
        if (problems.size() > 1) text += " (and " + std::to_string(problems.size() - 1) + " more problems)";
        return fail(worst->code, text, js);
    };
    stored_maps sm;
    std::string why;
    const errc e = sm.open(fs, why, true);
    if (e == errc::not_found) {
        note(ecode::maps_absent, why);
        return finish("absent");
    }
    if (e == errc::busy) {
        note(ext2fs_has_feature_journal_needs_recovery(fs->super) ? ecode::needs_recovery : ecode::busy, why);
        return finish("unreadable");
    }
    if (e == errc::io) {
        note(ecode::io, why);
        return finish("unreadable");
    }
    if (e != errc::ok) {
        note(ecode::corrupted, why);
        return finish("damaged");
    }
    // The checks (check_maps.hpp): each problem with the error code it
    // decides, damage (or a read that failed) over disagreement over
    // staleness.
    ext2fs_adapter::map_check_summary sum;
    auto report = [&](const ext2fs_adapter::map_check_problem& p) {
        using ext2fs_adapter::map_check_kind;
        ecode c = ecode::corrupted;
        if (p.kind == map_check_kind::stale) c = ecode::stale_maps;
        else if (p.cause == errc::io) c = ecode::io;
        else if (p.kind == map_check_kind::rmap_missing || p.kind == map_check_kind::rmap_extra || p.kind == map_check_kind::parent)
            c = ecode::maps_inconsistent;
        note(c, p.text);
    };
    ext2fs_adapter::check_stamp(sm, report, sum);
    if (ext2fs_adapter::check_trees(sm, report, sum)) {
        ext2fs_adapter::scan_result r;
        if (auto f = scan_image(fs, r)) {
            note(f->code, "the filesystem cannot be scanned: " + f->text);
            return finish("present");
        }
        ext2fs_adapter::check_against(fs, sm, r, report, sum);
    }
    const std::uint64_t rmap_missing = sum.rmap_missing, rmap_extra = sum.rmap_extra, rc_diff = sum.refcount_mismatches,
                        pp_diff = sum.parent_mismatches;
    info = ",\"stale\":" + std::string(sm.stale() ? "true" : "false") + ",\"records\":{\"rmap\":" +
           std::to_string(sm.rm().size()) + ",\"refcount\":" + std::to_string(sm.rc().size()) + ",\"parent\":" +
           std::to_string(sm.pm().size()) + "},\"rmap_missing\":" + std::to_string(rmap_missing) + ",\"rmap_extra\":" +
           std::to_string(rmap_extra) + ",\"refcount_mismatches\":" + std::to_string(rc_diff) + ",\"parent_mismatches\":" +
           std::to_string(pp_diff);
    if (!json)
        std::printf("%s: stored maps: %" PRIu64 " rmap, %" PRIu64 " refcount, %" PRIu64 " parent pointer records in blocks %" PRIu64 "-%" PRIu64 "\n",
                    path, sm.rm().size(), sm.rc().size(), sm.pm().size(), sm.file().first, sm.file().first + sm.file().blocks - 1);
    return finish("present");
}

// A journal superblock e2fsck finds corrupt (a wrong checksum or checksum
// type): done as e2fsck -y / -p does ("journal superblock is corrupt.
// Fix? yes"): the journal superblock is reset (jbd2::reset_superblock: the
// log is dropped, nothing replayed), needs_recovery is cleared and, if it
// was set, the filesystem is marked not clean so that a full check
// follows. Exit status 4 (corrupted): the log's transactions are lost.
int reset_corrupt_journal(const char* path, const std::vector<jbd2::log_extent>& ext) {
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs))
        return fail(open_error(e), std::string("cannot open read-write: ") + error_message(e));
    ext2_inode ji{};
    if (errcode_t e = ext2fs_read_inode(fs, fs->super->s_journal_inum, &ji)) {
        ext2fs_adapter::close_without_writing(fs);
        return fail(ecode::io, std::string("reading the journal inode: ") + error_message(e));
    }
    const std::uint64_t maxlen = EXT2_I_SIZE(&ji) / fs->blocksize; // e2fsck's j_total_len
    std::vector<unsigned char> blk(fs->blocksize);
    ext2fs_adapter::io_device dev(fs);
    std::random_device rd;
    const std::uint32_t sequence = rd();
    if (dev.read_blocks(ext[0].start, 1, blk.data()) != errc::ok) {
        ext2fs_adapter::close_without_writing(fs);
        return fail(ecode::io, "reading the journal superblock");
    }
    jbd2::reset_superblock(blk.data(), fs->blocksize, static_cast<std::uint32_t>(maxlen), sequence);
    if (dev.write_blocks(ext[0].start, 1, blk.data()) != errc::ok || dev.flush() != errc::ok) {
        ext2fs_adapter::close_without_writing(fs);
        return fail(ecode::io, "writing the journal superblock");
    }
    const bool recover = ext2fs_has_feature_journal_needs_recovery(fs->super);
    ext2fs_clear_feature_journal_needs_recovery(fs->super);
    if (recover) fs->super->s_state &= static_cast<__u16>(~EXT2_VALID_FS);
    ext2fs_mark_super_dirty(fs);
    fs->flags |= EXT2_FLAG_MASTER_SB_ONLY; // as e2fsck: the backups are not touched
    if (errcode_t ce = ext2fs_close_free(&fs)) return fail(ecode::io, std::string("writing the superblock: ") + error_message(ce));
    return fail(ecode::corrupted, std::string("the journal superblock is corrupt (") +
                                      jbd2::describe(jbd2::sb_problem::bad_checksum) +
                                      "): reset as e2fsck does; its log was dropped, nothing replayed" +
                                      (recover ? "; the filesystem is marked not clean: run e2fsck -f" : ""));
}

// Replay the journal with jbtree's recovery, then finish the ext4
// superblock as e2fsck -E journal_only does: needs_recovery cleared, a
// failed replay clears "valid", an error flag the superblock had before the
// replay is kept (e2fsck 1.47.1 and later), and an error number in the
// journal superblock (a corrupt commit, or a journal aborted before the
// crash) marks the filesystem as having errors and is cleared.
int cmd_replay(const char* path) {
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs))
        return fail(open_error(e), std::string("cannot open read-write: ") + error_message(e));
    ext2fs_adapter::io_device dev(fs);
    std::vector<jbd2::log_extent> ext;
    errcode_t err = 0;
    errc e = ext2fs_adapter::journal_extents(fs, ext, &err);
    const auto n = static_cast<std::uint32_t>(ext.size());
    if (e != errc::ok) {
        ext2fs_adapter::close_without_writing(fs);
        if (e == errc::not_supported) return fail(ecode::no_journal, "no internal journal");
        return fail(e == errc::io ? ecode::io : ecode::corrupted, std::string("journal inode: ") + describe(e) +
                                                                  (err ? std::string(": ") + error_message(err) : ""));
    }
    jbd2::log_area<ext2fs_adapter::io_device> log(dev, ext.data(), n);
    std::vector<unsigned char> a(dev.block_size()), b(dev.block_size());
    std::vector<jbd2::revoke_entry> slots(1u << 16);
    jbd2::recovery_info info;
    const bool had_errors = fs->super->s_state & EXT2_ERROR_FS; // as read before the replay
    const bool flagged = ext2fs_has_feature_journal_needs_recovery(fs->super);
    // Fast commits are applied as e2fsck applies them, through this
    // filesystem as it was opened before the block replay (e2fsck's).
    ext2fs_adapter::fast_commit_replay fcr(fs);
    e = jbd2::recover(log, {a.data(), b.data(), slots.data(), slots.size()}, info, fcr);
    (void)dev.flush(); // recover() flushes what it wrote; this is for the io_channel cache
    // libext2fs still holds the superblock and descriptors from before the
    // replay: close without letting it write them, then open again.
    ext2fs_adapter::close_without_writing(fs);
    if (info.refused == jbd2::sb_problem::bad_checksum) return reset_corrupt_journal(path, ext);
    if (info.refused != jbd2::sb_problem::none) {
        const char* why = info.refused == jbd2::sb_problem::fast_commit && fcr.why() ? fcr.why() : jbd2::describe(info.refused);
        return fail(ecode::journal_refused, std::string("journal refused (") + why +
                                              "): nothing replayed, nothing written; use e2fsck");
    }
    if (info.nothing_to_do && !flagged) {
        std::printf("%s: the journal is empty: nothing to replay\n", path);
        return ok;
    }
    if (errcode_t oe = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs))
        return fail(ecode::io, std::string("cannot open again after the replay: ") + error_message(oe));
    ext2fs_clear_feature_journal_needs_recovery(fs->super);
    if (had_errors) fs->super->s_state |= EXT2_ERROR_FS;
    if (e != errc::ok) fs->super->s_state &= static_cast<__u16>(~EXT2_VALID_FS);
    bool journal_errno = false;
    ext2fs_adapter::io_device dev2(fs); // over the filesystem opened again
    if (dev2.read_blocks(ext[0].start, 1, a.data()) == errc::ok) { // the journal superblock
        auto* jsb = reinterpret_cast<jbd2::superblock*>(a.data());
        if (jsb->s_errno.get() != 0) {
            journal_errno = true;
            fs->super->s_state |= EXT2_ERROR_FS;
            jsb->s_errno.set(0);
            if (jsb->s_feature_incompat.get() & (jbd2::incompat_csum_v2 | jbd2::incompat_csum_v3))
                jsb->s_checksum.set(jbd2::superblock_checksum(a.data()));
            (void)dev2.write_blocks(ext[0].start, 1, a.data());
        }
    }
    // An empty log in a filesystem still marked needs_recovery (a crash
    // after the log was emptied, before the flag was cleared): e2fsck
    // "recovers" it all the same, which starts the next transaction id.
    if (info.nothing_to_do && dev2.read_blocks(ext[0].start, 1, a.data()) == errc::ok) {
        auto* jsb = reinterpret_cast<jbd2::superblock*>(a.data());
        jsb->s_sequence.set(jsb->s_sequence.get() + 1);
        if (jsb->s_feature_incompat.get() & (jbd2::incompat_csum_v2 | jbd2::incompat_csum_v3))
            jsb->s_checksum.set(jbd2::superblock_checksum(a.data()));
        (void)dev2.write_blocks(ext[0].start, 1, a.data());
        std::printf("%s: the journal is empty; the needs_recovery flag is cleared, as e2fsck does\n", path);
    }
    ext2fs_mark_super_dirty(fs);
    fs->flags |= EXT2_FLAG_MASTER_SB_ONLY; // as e2fsck: the backups are not touched
    // Writing the superblock sets s_wtime and raises s_kbytes_written,
    // which a live stamp of the patched kernel names: a replay that went
    // through changed nothing the journal did not, so a live stamp that
    // named the replayed state is moved along (not after a damaged
    // journal, a failed commit or a journal error: the file system then
    // needs e2fsck). ext2fs_close_free writes the superblock (again, after
    // the flush: with the bytes written since the open added to
    // s_kbytes_written, and s_wtime set anew), so the stamp is carried
    // only after it, to what is then on disk: the filesystem is opened
    // once more, its superblock read, the map file's volume superblock
    // written, and closed without writing its own superblock.
    const ext2fs_adapter::map_stamp before = ext2fs_adapter::stamp_of(fs);
    if (errcode_t fe = ext2fs_flush(fs)) {
        ext2fs_adapter::close_without_writing(fs);
        return fail(ecode::io, std::string("writing the superblock: ") + error_message(fe));
    }
    if (errcode_t ce = ext2fs_close_free(&fs)) return fail(ecode::io, std::string("writing the superblock: ") + error_message(ce));
    if (e == errc::ok && !info.failed_commit && !journal_errno) {
        bool carried = false;
        if (ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs) == 0) {
            carried = ext2fs_adapter::carry_live_stamp(fs, before) == errc::ok;
            ext2fs_adapter::close_without_writing(fs);
        }
        if (!carried)
            std::fprintf(stderr, "%s: warning: could not carry the maps' live stamp forward: they will read as stale\n", path);
    }
    const std::string fc_text =
        info.fc_valid ? ", " + std::to_string(info.fc_applied) + " of " + std::to_string(info.fc_valid) + " fast-commit tags applied"
                      : std::string();
    if (e == errc::ok)
        std::printf("%s: %" PRIu64 " transactions replayed, %" PRIu64 " blocks written, %" PRIu64 " revoked%s%s\n", path,
                    info.transactions, info.replayed, info.revoke_hits, fc_text.c_str(),
                    info.failed_commit ? "; a commit block failed its checksum: the filesystem is marked with errors"
                    : journal_errno    ? "; the journal recorded an error: the filesystem is marked with errors"
                                       : "");
    else
        return fail(ecode::corrupted, std::string(info.fc_result != errc::ok ? "the fast commits failed (" : "the journal is damaged (") +
                                          describe(e) +
                                          (info.fc_result != errc::ok && fcr.last_error() ? std::string(": ") + error_message(fcr.last_error()) : std::string()) +
                                          "): replayed " + std::to_string(info.transactions) + " transactions (" +
                                          std::to_string(info.replayed) + " blocks" + fc_text +
                                          ") as e2fsck does; the filesystem is marked not clean");
    return ok;
}

int run_command(int argc, char** argv) {
    // --json anywhere: then even a usage error is a JSON object.
    std::vector<const char*> args;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) session.json = true;
        else args.push_back(argv[i]);
    }
    for (const char* a : args) {
        if (std::strcmp(a, "--help") == 0 || std::strcmp(a, "-h") == 0) return print_help();
        if (std::strcmp(a, "--version") == 0) return print_version();
    }
    if (args.size() == 1 && std::strcmp(args[0], "help") == 0) return print_help();
    if (args.empty()) return usage_error("no command");
    const std::string cmd = args[0];
    args.erase(args.begin());
    std::optional<std::uint64_t> min_blocks; // build --min-blocks N
    build_memory mem;
    if (const char* t = std::getenv("TMPDIR"); t && *t) mem.tmpdir = t;
    else mem.tmpdir = "/tmp";
    for (std::size_t i = 0; cmd == "build" && i < args.size(); ++i) {
        if (std::strcmp(args[i], "--progress") == 0) {
            mem.progress = true;
            args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
            --i;
            continue;
        }
        const bool mb = std::strcmp(args[i], "--min-blocks") == 0, me = std::strcmp(args[i], "--memory") == 0,
                   td = std::strcmp(args[i], "--tmpdir") == 0;
        if (!mb && !me && !td) continue;
        if (i + 1 == args.size()) return usage_error(std::string(args[i]) + " needs a value");
        const char* v = args[i + 1];
        if (mb) {
            std::uint64_t n = 0;
            if (!parse_u64(v, n)) return usage_error("--min-blocks needs a number of blocks");
            min_blocks = n;
        }
        if (me) {
            if (!parse_size(v, mem.bytes))
                return usage_error(std::string("--memory: not a size: ") + v + " (bytes, or with K, M, G: e.g. 256M; unlimited)");
            if (mem.bytes != 0 && mem.bytes < ext2fs_adapter::min_build_memory)
                return usage_error(std::string("--memory: ") + v + " is less than the least budget, 64K");
        }
        if (td) {
            struct stat st{};
            if (*v == 0 || stat(v, &st) != 0 || !S_ISDIR(st.st_mode))
                return usage_error(std::string("--tmpdir: not a directory: ") + v);
            mem.tmpdir = v;
        }
        args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
        --i;
    }
    for (const char* a : args)
        if (std::strncmp(a, "--", 2) == 0) return usage_error(std::string("unknown option: ") + a);
    if (cmd == "owner" || cmd == "paths" || cmd == "refcount") {
        if (args.size() < 2) return usage_error("need an IMAGE and at least one number");
        std::vector<std::uint64_t> nums;
        for (std::size_t i = 1; i < args.size(); ++i) {
            std::uint64_t v = 0;
            if (!parse_u64(args[i], v)) return usage_error(std::string("not a number: ") + args[i]);
            nums.push_back(v);
        }
        session.image = args[0];
        return cmd_query(cmd, args[0], nums);
    }
    if (cmd == "build" || cmd == "check") {
        if (args.size() != 1) return usage_error(cmd + " takes one IMAGE");
        session.image = args[0];
        return cmd == "build" ? cmd_build(args[0], min_blocks, mem) : cmd_check(args[0]);
    }
    if (cmd == "replay") {
        if (args.size() != 1) return usage_error("replay takes one IMAGE");
        if (session.json) return usage_error("replay does not take --json");
        session.image = args[0];
        return cmd_replay(args[0]);
    }
    return usage_error("unknown command: " + cmd);
}

} // namespace

int main(int argc, char** argv) {
    initialize_ext2_error_table(); // libext2fs's messages for error_message()
    try { // the adapter's vectors and strings allocate: even then, an error code and a message
        return run_command(argc, argv);
    } catch (const std::bad_alloc&) {
        return fail(ecode::internal, "out of memory");
    } catch (const std::exception& x) {
        return fail(ecode::internal, std::string("unexpected error: ") + x.what());
    }
}
