// SPDX-License-Identifier: MIT
// jbtree-e2fs: the jbtree maps on an ext4 image, through libext2fs.
//
//   jbtree-e2fs owner    [--json] IMAGE BLOCK...   owners of each block (as debugfs icheck, all owners)
//   jbtree-e2fs paths    [--json] IMAGE INODE...   every path of each inode (as debugfs ncheck)
//   jbtree-e2fs refcount [--json] IMAGE BLOCK...   data owners of each block (1 if not shared)
//   jbtree-e2fs replay   IMAGE                     replay the image's journal, as e2fsck -E journal_only
//
// This version builds the maps in memory from a scan of the image on every
// run (and says so on stderr); storing them inside the image is the next
// step (issue 5), with `build` and `check`. Only `replay` writes.
//
// Output: a header line, then one tab-separated line per answer, as debugfs:
//   owner:    "Block\tInode number", then "BLOCK\tINODE" for each owner
//             (special owners as <superblock/descriptors>, <bitmaps>, ...),
//             or "BLOCK\t<block not found>";
//   paths:    "Inode\tPathname", then "INODE\t/a/b" for each path;
//   refcount: "Block\tRefcount", then "BLOCK\tN".
// --json prints one JSON object instead.
// Exit status: 0 done; 1 a query found nothing for some argument; 2 bad
// arguments; 3 the image cannot be opened or read; 4 the image is damaged.
#include <jbtree/ext2fs/io_device.hpp>
#include <jbtree/ext2fs/journal_extents.hpp>
#include <jbtree/ext2fs/scan.hpp>
#include <jbtree/journal/jbd2_recovery.hpp>
#include <jbtree/journal/null_journal.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include <et/com_err.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace jbtree;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;

enum exit_code { ok = 0, not_found = 1, usage = 2, cannot_open = 3, damaged = 4 };

int usage_error(const char* why) {
    std::fprintf(stderr,
                 "jbtree-e2fs: %s\n"
                 "usage: jbtree-e2fs owner [--json] IMAGE BLOCK...\n"
                 "       jbtree-e2fs paths [--json] IMAGE INODE...\n"
                 "       jbtree-e2fs refcount [--json] IMAGE BLOCK...\n"
                 "       jbtree-e2fs replay IMAGE\n",
                 why);
    return usage;
}

bool parse_u64(const char* s, std::uint64_t& v) {
    if (!s || !*s || *s == '-') return false;
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(s, &end, 0);
    if (errno || *end) return false;
    v = x;
    return true;
}

std::string owner_name(std::uint64_t o) {
    switch (o) {
    case rmap_owner::fs: return "<superblock/descriptors>";
    case rmap_owner::reserved_gdt: return "<reserved GDT>";
    case rmap_owner::bitmaps: return "<bitmaps>";
    case rmap_owner::inode_table: return "<inode table>";
    case rmap_owner::journal: return "<journal>";
    case rmap_owner::jbtree: return "<jbtree maps>";
    case rmap_owner::unknown: return "<unknown>";
    }
    return std::to_string(o);
}

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

// The three maps of one image, in memory.
struct maps {
    S s{{4096, false, 0}};
    J j{s};
    std::optional<rmap<S, J>> rm;
    std::optional<refcount_map<S, J>> rc;
    std::optional<parent_map<S, J>> pm;
};

int open_image(const char* path, ext2_filsys& fs) {
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs)) {
        std::fprintf(stderr, "jbtree-e2fs: %s: cannot open: %s\n", path, error_message(e));
        return cannot_open;
    }
    return ok;
}

int build_in_memory(const char* path, maps& m) {
    ext2_filsys fs = nullptr;
    if (int rc = open_image(path, fs)) return rc;
    std::fprintf(stderr, "jbtree-e2fs: %s holds no jbtree maps: building them in memory\n", path);
    ext2fs_adapter::scan_result r;
    errcode_t err = 0;
    const errc e = ext2fs_adapter::scan_filesystem(
        fs, r,
        [&](std::uint64_t done, std::uint64_t total) {
            if (total >= 200000) std::fprintf(stderr, "\rscanning inodes: %" PRIu64 "/%" PRIu64, done, total);
        },
        &err);
    if (fs->super->s_inodes_count >= 200000) std::fputc('\n', stderr);
    ext2fs_close_free(&fs);
    if (e != errc::ok) {
        std::fprintf(stderr, "jbtree-e2fs: %s: scan failed: %s%s%s\n", path, describe(e), err ? ": " : "",
                     err ? error_message(err) : "");
        return e == errc::corrupted ? damaged : cannot_open;
    }
    auto rm = rmap<S, J>::create(m.s, m.j, 1);
    auto rc = refcount_map<S, J>::create(m.s, m.j, 2);
    auto pm = parent_map<S, J>::create(m.s, m.j, 3);
    if (!rm || !rc || !pm) return damaged;
    m.rm.emplace(std::move(*rm));
    m.rc.emplace(std::move(*rc));
    m.pm.emplace(std::move(*pm));
    auto h = m.j.start(unlimited_credits);
    if (!h) return damaged;
    std::size_t i = 0;
    errc le = r.rmap.empty() ? errc::ok
                             : m.rm->tree().bulk_load(*h, r.rmap.size(),
                                                      [&](rmap_key& k, rmap_value& v) {
                                                          k = r.rmap[i].key();
                                                          v = r.rmap[i].value();
                                                          ++i;
                                                          return true;
                                                      },
                                                      90);
    if (le != errc::ok) {
        std::fprintf(stderr, "jbtree-e2fs: %s: rmap load: %s\n", path, describe(le));
        return damaged;
    }
    std::vector<std::uint64_t> ends(4096);
    auto src = m.rm->extents();
    auto n = refcount_map<S, J>::rebuild_count(src, {ends.data(), ends.size()});
    if (!n || (le = m.rc->rebuild_from_rmap(*h, src, {ends.data(), ends.size()}, *n)) != errc::ok) {
        std::fprintf(stderr, "jbtree-e2fs: %s: refcount rebuild: %s\n", path, describe(n ? le : n.error()));
        return damaged;
    }
    // Parent pointers: keys as add() makes them (hash, then collision index).
    struct keyed {
        parent_key k;
        const ext2fs_adapter::scan_link* l;
    };
    std::vector<keyed> ks;
    ks.reserve(r.links.size());
    for (const auto& l : r.links) {
        if (!parent_map<S, J>::valid_name(name_ref(l.name.data(), l.name.size()))) continue; // reported by check
        ks.push_back({parent_key{l.child, l.parent, parent_map<S, J>::name_hash(name_ref(l.name.data(), l.name.size())), 0}, &l});
    }
    std::sort(ks.begin(), ks.end(), [](const keyed& a, const keyed& b) {
        const int c = parent_map_traits<>::compare(a.k, b.k);
        return c != 0 ? c < 0 : a.l->name < b.l->name;
    });
    std::vector<keyed> uniq;
    for (const keyed& x : ks) {
        if (!uniq.empty() && uniq.back().k.child == x.k.child && uniq.back().k.parent == x.k.parent &&
            uniq.back().k.hash == x.k.hash) {
            if (uniq.back().l->name == x.l->name) continue; // the same entry twice: a damaged directory
            keyed y = x;
            y.k.index = uniq.back().k.index + 1;
            uniq.push_back(y);
        } else uniq.push_back(x);
    }
    i = 0;
    le = uniq.empty() ? errc::ok
                      : m.pm->tree().bulk_load(*h, uniq.size(),
                                               [&](parent_key& k, parent_record& v) {
                                                   k = uniq[i].k;
                                                   v.parent_gen = uniq[i].l->parent_gen;
                                                   v.name_len = static_cast<std::uint16_t>(uniq[i].l->name.size());
                                                   std::memcpy(v.name, uniq[i].l->name.data(), v.name_len);
                                                   ++i;
                                                   return true;
                                               },
                                               90);
    if (le != errc::ok) {
        std::fprintf(stderr, "jbtree-e2fs: %s: parent pointer load: %s\n", path, describe(le));
        return damaged;
    }
    (void)m.j.stop(*h);
    return ok;
}

int cmd_owner(maps& m, const std::vector<std::uint64_t>& blocks, bool json) {
    int rc = ok;
    std::string js = "{\"owners\":[";
    if (!json) std::printf("Block\tInode number\n");
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const std::uint64_t b = blocks[i];
        std::vector<rmap_record> found;
        if (m.rm->owners_of(b, [&](const rmap_record& r) {
                found.push_back(r);
                return true;
            }) != errc::ok)
            return damaged;
        if (found.empty()) rc = not_found;
        if (json) {
            js += std::string(i ? "," : "") + "{\"block\":" + std::to_string(b) + ",\"owners\":[";
            for (std::size_t k = 0; k < found.size(); ++k) {
                const rmap_record& r = found[k];
                js += std::string(k ? "," : "") + "{\"owner\":" +
                      (rmap_owner::is_special(r.owner) ? "\"" + owner_name(r.owner) + "\"" : std::to_string(r.owner)) +
                      ",\"start\":" + std::to_string(r.start) + ",\"length\":" + std::to_string(r.length) +
                      ",\"offset\":" + std::to_string(r.offset) + ",\"xattr\":" + ((r.flags & rmap_flags::xattr) ? "true" : "false") +
                      ",\"extent_tree\":" + ((r.flags & rmap_flags::bmbt) ? "true" : "false") + "}";
            }
            js += "]}";
            continue;
        }
        if (found.empty()) std::printf("%" PRIu64 "\t<block not found>\n", b);
        for (const rmap_record& r : found) std::printf("%" PRIu64 "\t%s\n", b, owner_name(r.owner).c_str());
    }
    if (json) std::printf("%s]}\n", js.c_str());
    return rc;
}

int cmd_paths(maps& m, const std::vector<std::uint64_t>& inodes, bool json) {
    int rc = ok;
    std::vector<unsigned char> buf(parent_map<S, J>::path_buffer_size(256));
    std::string js = "{\"paths\":[";
    if (!json) std::printf("Inode\tPathname\n");
    for (std::size_t i = 0; i < inodes.size(); ++i) {
        const std::uint64_t ino = inodes[i];
        std::vector<std::string> found;
        std::string jpaths;
        auto r = m.pm->paths_of(ino, EXT2_ROOT_INO, 256, buf.data(), buf.size(), [&](const path_event& e) {
            if (e.kind != path_kind::complete) return;
            found.emplace_back(reinterpret_cast<const char*>(e.path), e.size);
            jpaths += std::string(jpaths.empty() ? "" : ",") + json_string(e.path, e.size);
        });
        if (!r) return damaged;
        if (found.empty()) rc = not_found;
        if (json) {
            js += std::string(i ? "," : "") + "{\"inode\":" + std::to_string(ino) + ",\"paths\":[" + jpaths +
                  "],\"cycles\":" + std::to_string(r->cycles) + ",\"too_deep\":" + std::to_string(r->too_deep) +
                  ",\"detached\":" + std::to_string(r->detached) + "}";
            continue;
        }
        for (const std::string& p : found) std::printf("%" PRIu64 "\t%s\n", ino, p.c_str());
    }
    if (json) std::printf("%s]}\n", js.c_str());
    return rc;
}

int cmd_refcount(maps& m, const std::vector<std::uint64_t>& blocks, bool json) {
    std::string js = "{\"refcounts\":[";
    if (!json) std::printf("Block\tRefcount\n");
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        auto c = m.rc->refcount_of(blocks[i]);
        if (!c) return damaged;
        if (json) js += std::string(i ? "," : "") + "{\"block\":" + std::to_string(blocks[i]) + ",\"refcount\":" + std::to_string(*c) + "}";
        else std::printf("%" PRIu64 "\t%" PRIu32 "\n", blocks[i], *c);
    }
    if (json) std::printf("%s]}\n", js.c_str());
    return ok;
}

// Replay the journal with jbtree's recovery, then finish the ext4
// superblock as e2fsck -E journal_only does: needs_recovery cleared, a
// failed replay clears "valid", a corrupt commit marks the filesystem as
// having errors (and clears the journal's s_errno again).
int cmd_replay(const char* path) {
    ext2_filsys fs = nullptr;
    if (errcode_t e = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs)) {
        std::fprintf(stderr, "jbtree-e2fs: %s: cannot open read-write: %s\n", path, error_message(e));
        return cannot_open;
    }
    ext2fs_adapter::io_device dev(fs);
    std::vector<jbd2::log_extent> ext(256);
    std::uint32_t n = 0;
    errcode_t err = 0;
    errc e = ext2fs_adapter::journal_extents(fs, ext.data(), static_cast<std::uint32_t>(ext.size()), n, &err);
    if (e != errc::ok) {
        fs->flags &= ~EXT2_FLAG_RW;
        ext2fs_close_free(&fs);
        std::fprintf(stderr, "jbtree-e2fs: %s: %s%s%s\n", path,
                     e == errc::not_supported ? "no internal journal" : "journal inode: ",
                     e == errc::not_supported ? "" : describe(e), err ? error_message(err) : "");
        return e == errc::not_supported ? not_found : damaged;
    }
    jbd2::log_area<ext2fs_adapter::io_device> log(dev, ext.data(), n);
    std::vector<unsigned char> a(dev.block_size()), b(dev.block_size());
    std::vector<jbd2::revoke_entry> slots(1u << 16);
    jbd2::recovery_info info;
    e = jbd2::recover(log, {a.data(), b.data(), slots.data(), slots.size()}, info);
    (void)dev.flush(); // recover() flushes what it wrote; this is for the io_channel cache
    // libext2fs still holds the superblock and descriptors from before the
    // replay: close without letting it write them, then open again.
    fs->flags &= ~EXT2_FLAG_RW;
    ext2fs_close_free(&fs);
    if (info.refused != jbd2::sb_problem::none) {
        std::fprintf(stderr, "jbtree-e2fs: %s: journal refused (%s): nothing replayed, nothing written\n", path,
                     jbd2::describe(info.refused));
        return damaged;
    }
    if (info.nothing_to_do) {
        std::printf("%s: the journal is empty: nothing to replay\n", path);
        return ok;
    }
    if (errcode_t oe = ext2fs_open2(path, nullptr, EXT2_FLAG_64BITS | EXT2_FLAG_RW, 0, 0, unix_io_manager, &fs)) {
        std::fprintf(stderr, "jbtree-e2fs: %s: cannot open again after the replay: %s\n", path, error_message(oe));
        return cannot_open;
    }
    ext2fs_clear_feature_journal_needs_recovery(fs->super);
    if (e != errc::ok) fs->super->s_state &= static_cast<__u16>(~EXT2_VALID_FS);
    if (info.failed_commit) {
        fs->super->s_state |= EXT2_ERROR_FS;
        ext2fs_adapter::io_device dev2(fs); // over the filesystem opened again
        if (dev2.read_blocks(ext[0].start, 1, a.data()) == errc::ok) { // the journal superblock
            auto* jsb = reinterpret_cast<jbd2::superblock*>(a.data());
            jsb->s_errno.set(0);
            if (jsb->s_feature_incompat.get() & (jbd2::incompat_csum_v2 | jbd2::incompat_csum_v3))
                jsb->s_checksum.set(jbd2::superblock_checksum(a.data()));
            (void)dev2.write_blocks(ext[0].start, 1, a.data());
        }
    }
    ext2fs_mark_super_dirty(fs);
    fs->flags |= EXT2_FLAG_MASTER_SB_ONLY; // as e2fsck: the backups are not touched
    if (errcode_t ce = ext2fs_close_free(&fs)) {
        std::fprintf(stderr, "jbtree-e2fs: %s: writing the superblock: %s\n", path, error_message(ce));
        return cannot_open;
    }
    if (e == errc::ok)
        std::printf("%s: %" PRIu64 " transactions replayed, %" PRIu64 " blocks written, %" PRIu64 " revoked%s\n", path,
                    info.transactions, info.replayed, info.revoke_hits,
                    info.failed_commit ? "; a commit block failed its checksum: the filesystem is marked with errors"
                                       : "");
    else
        std::fprintf(stderr,
                     "jbtree-e2fs: %s: the journal is damaged (%s): replayed the %" PRIu64
                     " complete transactions before the damage (%" PRIu64 " blocks); the filesystem is marked not clean\n",
                     path, describe(e), info.transactions, info.replayed);
    return e == errc::ok ? ok : damaged;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage_error("no command");
    const std::string cmd = argv[1];
    bool json = false;
    std::vector<const char*> args;
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) json = true;
        else args.push_back(argv[i]);
    }
    if (cmd == "owner" || cmd == "paths" || cmd == "refcount") {
        if (args.size() < 2) return usage_error("need an IMAGE and at least one number");
        std::vector<std::uint64_t> nums;
        for (std::size_t i = 1; i < args.size(); ++i) {
            std::uint64_t v = 0;
            if (!parse_u64(args[i], v)) return usage_error((std::string("not a number: ") + args[i]).c_str());
            nums.push_back(v);
        }
        maps m;
        if (int rc = build_in_memory(args[0], m)) return rc;
        if (cmd == "owner") return cmd_owner(m, nums, json);
        if (cmd == "paths") return cmd_paths(m, nums, json);
        return cmd_refcount(m, nums, json);
    }
    if (cmd == "replay") {
        if (args.size() != 1 || json) return usage_error("replay takes one IMAGE");
        return cmd_replay(args[0]);
    }
    return usage_error(("unknown command: " + cmd).c_str());
}
