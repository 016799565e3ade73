// SPDX-License-Identifier: MIT
// jbtree: the parent pointer map (issue 4).
//
//   parent_map<Storage, Journal, NameHash = crc32c_name_hash>
//
// inode -> (parent directory, parent generation, name): one record per hard
// link, so a checker can answer "which directories link to inode I, under
// which names?" and rebuild the paths of an inode. A thin typed facade over
// the one engine, btree<parent_map_traits<NameHash>, Storage, Journal>: no
// tree code here, only the record codec and the domain operations.
//
// Record (docs/format.md §6.3 has the byte-level format; docs/maps.md the operations):
//   key   (24 bytes, fixed):  le64 child | le64 parent | le32 name_hash | le32 collision_index
//   value (5..259 bytes):     le32 parent_gen | name (1..255 bytes, no '/' and no NUL)
// Keys sort by (child, parent, hash, index), so the links of one inode are
// adjacent, and the links of one (child, parent) pair with one name hash (a
// "hash group") are adjacent. Different names that hash alike get different
// collision indexes; a lookup by name walks the group and compares the stored
// names. The hash is part of the on-disk format (default: CRC-32C of the
// name); NameHash is a template parameter so tests can force collisions.
//
// Mutations take a journal handle and have exact worst-case credit figures
// (add_credits(), remove_credits(), rename_credits()). Each validates its
// arguments, checks the handle's credits and does every lookup before it
// changes anything, so a logical failure (invalid, no_credits, exists,
// not_found) changes nothing. A resource failure once the change has started
// (I/O or corruption met while the engine plans the second half of a rename,
// a journal abort) can leave the handle's transaction half done: the caller
// must then abort it (not commit), as ext4 does with jbd2.
//
// Not thread-safe (as the engine): the caller serialises access.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/engine/btree.hpp"
#include "jbtree/engine/tree_anchor.hpp"
#include "jbtree/engine/verify_report.hpp"
#include "jbtree/policy/block_storage.hpp"
#include "jbtree/policy/journal.hpp"

namespace jbtree {

// ---- names ------------------------------------------------------------------

inline constexpr std::uint32_t parent_map_magic = 0x4A42'5031; // "JBP1" (on disk: 31 50 42 4A)
inline constexpr std::size_t parent_name_max = 255;             // NAME_MAX

// A name: bytes and length (no terminator; any bytes but '/' and NUL are
// valid, see valid_parent_name()). Views the caller's memory.
struct name_ref {
    const unsigned char* data = nullptr;
    std::size_t size = 0;

    constexpr name_ref() noexcept = default;
    name_ref(const void* p, std::size_t n) noexcept : data(static_cast<const unsigned char*>(p)), size(n) {}
    // From a string literal (its terminating NUL is not part of the name).
    template <std::size_t N>
    name_ref(const char (&s)[N]) noexcept : data(reinterpret_cast<const unsigned char*>(s)), size(N - 1) {}

    friend bool operator==(name_ref a, name_ref b) noexcept {
        return a.size == b.size && compare_bytes(a.data, b.data, a.size) == 0;
    }
};

// 1..255 bytes, none of them '/' or NUL.
[[nodiscard]] inline bool valid_parent_name(name_ref n) noexcept {
    if (n.size == 0 || n.size > parent_name_max || !n.data) return false;
    for (std::size_t i = 0; i < n.size; ++i)
        if (n.data[i] == 0 || n.data[i] == '/') return false;
    return true;
}

// The name hash of the key: a stateless type with
//   static std::uint32_t hash(const unsigned char* name, std::size_t len) noexcept;
template <class H>
concept ParentNameHash = requires(const unsigned char* p, std::size_t n) {
    { H::hash(p, n) } noexcept -> std::same_as<std::uint32_t>;
};

// The on-disk default: standard CRC-32C of the name bytes,
// ~crc32c_raw(~0, name, len) (crc32c("123456789") == 0xE3069283).
struct crc32c_name_hash {
    [[nodiscard]] static std::uint32_t hash(const unsigned char* p, std::size_t n) noexcept { return crc32c(p, n); }
};

// ---- the record ---------------------------------------------------------------

struct parent_key {
    std::uint64_t child = 0;  // the inode the link points to
    std::uint64_t parent = 0; // the directory holding the link
    std::uint32_t hash = 0;   // NameHash of the name
    std::uint32_t index = 0;  // collision index within (child, parent, hash)

    friend bool operator==(const parent_key&, const parent_key&) = default;
};

struct parent_record {
    std::uint32_t parent_gen = 0; // the parent directory's generation (i_generation)
    std::uint16_t name_len = 0;   // 1..255
    unsigned char name[parent_name_max] = {};

    [[nodiscard]] name_ref name_view() const noexcept { return name_ref(name, name_len); }
};

template <ParentNameHash Hash = crc32c_name_hash>
struct parent_map_traits {
    using key_type = parent_key;
    using value_type = parent_record;
    using hash_type = Hash;
    static constexpr std::uint32_t magic = parent_map_magic;

    // Key: le64 child @0, le64 parent @8, le32 hash @16, le32 index @20.
    static constexpr std::size_t key_size = 24;
    static void encode_key(const key_type& k, unsigned char* out) noexcept {
        store_le<std::uint64_t>(out, k.child);
        store_le<std::uint64_t>(out + 8, k.parent);
        store_le<std::uint32_t>(out + 16, k.hash);
        store_le<std::uint32_t>(out + 20, k.index);
    }
    [[nodiscard]] static key_type decode_key(const unsigned char* in) noexcept {
        return key_type{load_le<std::uint64_t>(in), load_le<std::uint64_t>(in + 8), load_le<std::uint32_t>(in + 16),
                        load_le<std::uint32_t>(in + 20)};
    }
    [[nodiscard]] static int compare(const key_type& a, const key_type& b) noexcept {
        if (a.child != b.child) return a.child < b.child ? -1 : 1;
        if (a.parent != b.parent) return a.parent < b.parent ? -1 : 1;
        if (a.hash != b.hash) return a.hash < b.hash ? -1 : 1;
        if (a.index != b.index) return a.index < b.index ? -1 : 1;
        return 0;
    }

    // Value: le32 parent_gen @0, name @4 (its length is the value length - 4).
    static constexpr std::size_t value_header = 4;
    static constexpr std::size_t max_value_size = value_header + parent_name_max;
    [[nodiscard]] static std::size_t value_size_of(const value_type& v) noexcept {
        return value_header + (v.name_len > parent_name_max ? parent_name_max : v.name_len);
    }
    static void encode_value(const value_type& v, unsigned char* out) noexcept {
        store_le<std::uint32_t>(out, v.parent_gen);
        copy_bytes(out + value_header, v.name, value_size_of(v) - value_header);
    }
    // Refuses a value whose name is empty, too long, or holds '/' or NUL.
    [[nodiscard]] static bool decode_value(const unsigned char* in, std::size_t n, value_type& out) noexcept {
        if (n <= value_header || n > max_value_size) return false;
        const std::size_t len = n - value_header;
        if (!valid_parent_name(name_ref(in + value_header, len))) return false;
        out.parent_gen = load_le<std::uint32_t>(in);
        out.name_len = static_cast<std::uint16_t>(len);
        copy_bytes(out.name, in + value_header, len);
        return true;
    }
    // A record the map can hold: its key's hash is its name's. Checked by
    // the engine on every fresh read of a leaf (node/validate.hpp), so a
    // damaged name, or a key whose hash was changed, is refused as a
    // damaged node instead of being answered as a path.
    [[nodiscard]] static bool valid_record(const key_type& k, const value_type& v) noexcept {
        return Hash::hash(v.name, v.name_len) == k.hash;
    }
};

// ---- paths ----------------------------------------------------------------------

// How one walk of paths_of() ended.
enum class path_kind : std::uint8_t {
    complete, // reached the root: path is "/a/b/child" ("/" for the root itself)
    cycle,    // the next inode up, `top`, is already on this walk: path is what lies below top
    too_deep, // the path has max_depth components and `top` (not the root) was not expanded
    detached, // `top` is not the root and has no parent links: path is what lies below top
};

[[nodiscard]] constexpr const char* describe(path_kind k) noexcept {
    switch (k) {
    case path_kind::complete: return "complete";
    case path_kind::cycle: return "cycle";
    case path_kind::too_deep: return "too deep";
    case path_kind::detached: return "detached";
    }
    return "unknown";
}

// One path handed to the paths_of() callback. `path` lies in the caller's
// buffer and is valid only during the call: every component preceded by
// '/', from `top` down to the child ("/a/b/c" means top -> a -> b -> c).
struct path_event {
    path_kind kind = path_kind::complete;
    std::uint64_t top = 0;   // the root (complete) or the inode where the walk stopped
    std::uint32_t depth = 0; // components in path
    const unsigned char* path = nullptr;
    std::size_t size = 0;
};

// How a parent pointer and the directory entries disagree (cross_check()).
enum class dirent_mismatch : std::uint8_t {
    missing,          // a directory entry has no parent pointer
    stale_generation, // the parent pointer stores another parent generation
    extra,            // a parent pointer has no directory entry
};

[[nodiscard]] constexpr const char* describe(dirent_mismatch m) noexcept {
    switch (m) {
    case dirent_mismatch::missing: return "directory entry without parent pointer";
    case dirent_mismatch::stale_generation: return "parent generation differs";
    case dirent_mismatch::extra: return "parent pointer without directory entry";
    }
    return "unknown";
}

// What paths_of() found.
struct path_summary {
    std::uint64_t complete = 0;
    std::uint64_t cycles = 0;
    std::uint64_t too_deep = 0;
    std::uint64_t detached = 0;
    bool stopped = false; // the callback returned false

    [[nodiscard]] std::uint64_t events() const noexcept { return complete + cycles + too_deep + detached; }
};

// ---- map-level verification --------------------------------------------------------

enum class parent_problem_kind : std::uint8_t {
    bad_hash,       // the key's hash is not NameHash(name)
    duplicate_name, // two records of one (child, parent) pair hold the same name
};

[[nodiscard]] constexpr const char* describe(parent_problem_kind k) noexcept {
    switch (k) {
    case parent_problem_kind::bad_hash: return "key hash differs from the name's hash";
    case parent_problem_kind::duplicate_name: return "same name twice for one child and parent";
    }
    return "unknown problem";
}

struct parent_problem {
    parent_problem_kind kind = parent_problem_kind::bad_hash;
    parent_key key{}; // the record (for duplicates: the later one)
};

struct parent_map_report {
    static constexpr std::uint32_t max_problems = 32;

    verify_report tree;          // the engine's structural check (node format, order, counts, values decode)
    errc walk_error = errc::ok;  // the record walk failed with this (it runs only on a clean tree)
    std::uint64_t records = 0;   // records the record walk checked
    std::uint32_t problem_count = 0;
    parent_problem problems[max_problems] = {};

    [[nodiscard]] bool clean() const noexcept { return tree.clean() && walk_error == errc::ok && problem_count == 0; }
    [[nodiscard]] std::uint32_t kept() const noexcept {
        return problem_count < max_problems ? problem_count : max_problems;
    }
    [[nodiscard]] bool has(parent_problem_kind k) const noexcept {
        for (std::uint32_t i = 0; i < kept(); ++i)
            if (problems[i].kind == k) return true;
        return false;
    }
    void add(const parent_problem& p) noexcept {
        if (problem_count < max_problems) problems[problem_count] = p;
        ++problem_count;
    }
};

// ---- the map ----------------------------------------------------------------------------

template <BlockStorage S, Journal<S> J, ParentNameHash NameHash = crc32c_name_hash>
class parent_map {
public:
    using traits_type = parent_map_traits<NameHash>;
    using tree_type = btree<traits_type, S, J>;
    using handle = typename J::handle;
    using key_type = parent_key;
    using value_type = parent_record;

    // Bytes of the working memory one path of paths_of() needs per level
    // (its walk state), besides the path text itself.
    struct path_frame {
        parent_key link;        // the link followed at this level (valid once started)
        std::uint64_t ino;      // the inode at this level (level 0: the child)
        std::size_t pos;        // offset of the path text below this level
        std::uint32_t started;  // 1 once a link of ino has been taken
    };
    static constexpr std::size_t path_frame_size = sizeof(path_frame);

    // A paths_of() buffer of this size never gives errc::range: max_depth
    // frames, max_depth components of "/" + 255 bytes, and one byte ("/").
    [[nodiscard]] static constexpr std::size_t path_buffer_size(std::uint32_t max_depth) noexcept {
        return std::size_t{max_depth} * (path_frame_size + 1 + parent_name_max) + path_frame_size + 1;
    }

    // ---- opening ------------------------------------------------------------------------

    // A new, empty map (tree id as for btree::create). errc::invalid if the
    // block size cannot hold three 287-byte entries: nodes must be >= 1024.
    [[nodiscard]] static result<parent_map> create(S& s, J& j, std::uint32_t tree_id) noexcept {
        auto t = tree_type::create(s, j, tree_id);
        if (!t) return t.error();
        return parent_map(rvalue(*t), j);
    }
    // An existing map from its anchor (validates the anchor and the root).
    [[nodiscard]] static result<parent_map> open(S& s, J& j, const tree_anchor& a) noexcept {
        auto t = tree_type::open(s, j, a);
        if (!t) return t.error();
        return parent_map(rvalue(*t), j);
    }

    // The owner persists this after every change (a volume: set_anchor()).
    [[nodiscard]] const tree_anchor& anchor() const noexcept { return t_.anchor(); }
    // Number of links (records).
    [[nodiscard]] std::uint64_t size() const noexcept { return t_.size(); }
    [[nodiscard]] bool empty() const noexcept { return t_.empty(); }
    // The engine underneath (cursors, raw walks, stats).
    [[nodiscard]] tree_type& tree() noexcept { return t_; }
    [[nodiscard]] const tree_type& tree() const noexcept { return t_; }

    [[nodiscard]] static bool valid_name(name_ref n) noexcept { return valid_parent_name(n); }
    [[nodiscard]] static std::uint32_t name_hash(name_ref n) noexcept { return NameHash::hash(n.data, n.size); }

    // For a bulk load: number hash collisions as keys of one (child, parent,
    // hash) are numbered, 0, 1, 2, ... [first, last) must be sorted by
    // (child, parent, hash) (and, to be reproducible, by name within equal
    // hashes); key_of(element) gives a reference to something with child,
    // parent, hash and index members (a parent_key, or the caller's record).
    template <class It, class KeyOf>
    static constexpr void number_collisions(It first, It last, KeyOf&& key_of) noexcept {
        if (first == last) return;
        It prev = first;
        key_of(*first).index = 0;
        for (It it = ++first; it != last; prev = it, ++it) {
            auto& k = key_of(*it);
            const auto& p = key_of(*prev);
            k.index = (k.child == p.child && k.parent == p.parent && k.hash == p.hash) ? p.index + 1 : 0;
        }
    }

    // ---- credits: worst-case blocks one operation dirties ------------------------------
    //
    // With h = max(height, 1): add 2h + 2 (one insert), remove 2h + 1 (one
    // erase), rename 4h + 5 (an insert at height h, then an erase at a
    // height that insert may have raised to h + 1).
    [[nodiscard]] std::uint32_t add_credits() const noexcept { return t_.insert_credits(); }
    [[nodiscard]] std::uint32_t remove_credits() const noexcept { return t_.erase_credits(); }
    [[nodiscard]] std::uint32_t rename_credits() const noexcept { return t_.insert_credits() + t_.erase_credits() + 2u; }

    // ---- mutations --------------------------------------------------------------------------

    // Record the link `name` in directory `parent` (generation parent_gen)
    // to `child`. errc::invalid (bad name), no_credits, exists (that child
    // already has that name in that parent, whatever the generation).
    [[nodiscard]] errc add(handle& h, std::uint64_t child, std::uint64_t parent, std::uint32_t parent_gen,
                           name_ref name) noexcept {
        if (!valid_name(name)) return errc::invalid;
        if (j_->credits_left(h) < add_credits()) return errc::no_credits;
        const std::uint32_t hs = name_hash(name);
        probe p;
        JBTREE_TRY(probe_group(child, parent, name, hs, p));
        if (p.found) return errc::exists;
        if (!p.has_free) return errc::range; // 2^32 names share one hash in one directory
        return t_.insert(h, parent_key{child, parent, hs, p.free_index}, make_record(parent_gen, name));
    }

    // Remove the link `name` in `parent` to `child`. errc::invalid,
    // no_credits, not_found.
    [[nodiscard]] errc remove(handle& h, std::uint64_t child, std::uint64_t parent, name_ref name) noexcept {
        if (!valid_name(name)) return errc::invalid;
        if (j_->credits_left(h) < remove_credits()) return errc::no_credits;
        probe p;
        JBTREE_TRY(probe_group(child, parent, name, name_hash(name), p));
        if (!p.found) return errc::not_found;
        return t_.erase(h, p.key);
    }

    // Move the link (old_parent, old_name) of `child` to (new_parent,
    // new_parent_gen, new_name), in one handle. Checks both names, the
    // credits, that the old link exists (not_found) and that the new one does
    // not (exists) before changing anything. Renaming a link onto itself
    // only updates the parent generation. Order of changes: insert the new
    // record, then erase the old one (so an allocation failure, met while the
    // insert plans, changes nothing); if the erase then fails (I/O,
    // corruption, journal abort) both links are present and the transaction
    // must be aborted.
    [[nodiscard]] errc rename(handle& h, std::uint64_t child, std::uint64_t old_parent, name_ref old_name,
                              std::uint64_t new_parent, std::uint32_t new_parent_gen, name_ref new_name) noexcept {
        if (!valid_name(old_name) || !valid_name(new_name)) return errc::invalid;
        if (j_->credits_left(h) < rename_credits()) return errc::no_credits;
        probe o;
        JBTREE_TRY(probe_group(child, old_parent, old_name, name_hash(old_name), o));
        if (!o.found) return errc::not_found;
        if (old_parent == new_parent && old_name == new_name) {
            if (o.gen == new_parent_gen) return errc::ok;
            return t_.assign(h, o.key, make_record(new_parent_gen, new_name));
        }
        const std::uint32_t hs = name_hash(new_name);
        probe n;
        JBTREE_TRY(probe_group(child, new_parent, new_name, hs, n));
        if (n.found) return errc::exists;
        if (!n.has_free) return errc::range;
        JBTREE_TRY(t_.insert(h, parent_key{child, new_parent, hs, n.free_index}, make_record(new_parent_gen, new_name)));
        return t_.erase(h, o.key);
    }

    // ---- lookups ----------------------------------------------------------------------------------

    // The parent generation stored with the link; errc::not_found if absent,
    // errc::invalid for a bad name.
    [[nodiscard]] result<std::uint32_t> find(std::uint64_t child, std::uint64_t parent, name_ref name) noexcept {
        if (!valid_name(name)) return errc::invalid;
        probe p;
        JBTREE_TRY(probe_group(child, parent, name, name_hash(name), p));
        if (!p.found) return errc::not_found;
        return p.gen;
    }

    // Number of links to child.
    [[nodiscard]] result<std::uint64_t> link_count(std::uint64_t child) noexcept {
        return t_.count(lowest(child), highest(child));
    }

    // Calls f(parent, parent_gen, name_ref) for every link of child, in key
    // order (parent ascending, then name hash, then collision index), until f
    // returns false (f may also return void). The name is valid only during
    // the call. f must not change the map (errc::invalid if it does).
    template <class F>
    [[nodiscard]] errc parents_of(std::uint64_t child, F&& f) noexcept {
        auto each = [&f](const parent_key& k, const parent_record& v) noexcept -> bool {
            if constexpr (std::is_void_v<decltype(f(k.parent, v.parent_gen, v.name_view()))>) {
                f(k.parent, v.parent_gen, v.name_view());
                return true;
            } else {
                return static_cast<bool>(f(k.parent, v.parent_gen, v.name_view()));
            }
        };
        return t_.for_each(lowest(child), highest(child), each);
    }

    // Every path from `root` down to `child`: one per combination of links
    // up the tree (a directory normally has one parent; the map does not
    // assume it). Calls f(const path_event&) for each walk, until f returns
    // false (or always, if f returns void):
    //   complete  the walk reached root: "/a/b/child" (child == root: "/");
    //   cycle     the next inode up is already on this walk (it is `top`);
    //             the walk is not followed further;
    //   too_deep  the path has max_depth components and has not reached the
    //             root (`top` is the next inode up, not expanded);
    //   detached  `top` is not the root and has no links (for the child
    //             itself: an unlinked inode, depth 0, empty path).
    // Cycles, truncation and detachment are findings, not failures: they are
    // reported and counted, and the other walks go on. The result is
    // errc::range if buf (size bytes) cannot hold a path and its walk state
    // (path_buffer_size(max_depth) always can), errc::invalid if f changed
    // the map, or an I/O/corruption error; events delivered before an error
    // stay delivered. No memory besides buf is used; the stack use is
    // constant. Each link costs one descent of the tree, and the cycle check
    // is linear in the depth.
    template <class F>
    [[nodiscard]] result<path_summary> paths_of(std::uint64_t child, std::uint64_t root, std::uint32_t max_depth,
                                                unsigned char* buf, std::size_t size, F&& f) noexcept {
        path_summary sum;
        if (!buf && size) return errc::invalid;
        const std::uint64_t g0 = t_.generation();
        auto emit = [&](path_kind kind, std::uint64_t top, std::uint32_t depth, std::size_t pos) noexcept -> bool {
            switch (kind) {
            case path_kind::complete: ++sum.complete; break;
            case path_kind::cycle: ++sum.cycles; break;
            case path_kind::too_deep: ++sum.too_deep; break;
            case path_kind::detached: ++sum.detached; break;
            }
            const path_event e{kind, top, depth, buf + pos, size - pos};
            bool go_on = true;
            if constexpr (std::is_void_v<decltype(f(e))>) f(e);
            else go_on = static_cast<bool>(f(e));
            if (!go_on) sum.stopped = true;
            return go_on;
        };
        if (child == root) {
            if (size < 1) return errc::range;
            buf[size - 1] = '/';
            (void)emit(path_kind::complete, root, 0, size - 1);
            return sum;
        }
        if (max_depth == 0) {
            (void)emit(path_kind::too_deep, child, 0, size);
            return sum;
        }
        if (size < path_frame_size) return errc::range;
        std::size_t n = 1; // frames on the stack
        put_frame(buf, 0, path_frame{parent_key{}, child, size, 0});
        while (n > 0) {
            path_frame fr = get_frame(buf, n - 1);
            auto c = fr.started ? t_.upper_bound(fr.link) : t_.lower_bound(lowest(fr.ino));
            if (!c) return c.error();
            // Each frame's links strictly increase (so every walk ends);
            // anything else is a damaged tree, not a path.
            if (!c->at_end() && fr.started && traits_type::compare(c->key(), fr.link) <= 0) return errc::corrupted;
            if (c->at_end() || c->key().child != fr.ino) {
                if (!fr.started && !emit(path_kind::detached, fr.ino, static_cast<std::uint32_t>(n - 1), fr.pos))
                    return sum;
                --n;
                continue;
            }
            auto v = c->value();
            if (!v) return v.error();
            fr.link = c->key();
            fr.started = 1;
            put_frame(buf, n - 1, fr);
            // This level's component goes just below the text of the levels under it.
            const std::size_t need = 1 + v->name_len;
            if (fr.pos < need || fr.pos - need < n * path_frame_size) return errc::range;
            const std::size_t pos = fr.pos - need;
            buf[pos] = '/';
            copy_bytes(buf + pos + 1, v->name, v->name_len);
            const std::uint64_t up = fr.link.parent;
            const auto depth = static_cast<std::uint32_t>(n);
            bool go_on;
            if (up == root) {
                go_on = emit(path_kind::complete, root, depth, pos);
            } else if (on_walk(buf, n, up)) {
                go_on = emit(path_kind::cycle, up, depth, pos);
            } else if (n >= max_depth) {
                go_on = emit(path_kind::too_deep, up, depth, pos);
            } else {
                if ((n + 1) * path_frame_size > pos) return errc::range;
                put_frame(buf, n, path_frame{parent_key{}, up, pos, 0});
                ++n;
                go_on = true;
            }
            if (!go_on) return sum;
            if (t_.generation() != g0) return errc::invalid;
        }
        return sum;
    }

    // ---- checking ------------------------------------------------------------------------------------

    // The engine's verify() (structure, order, counts, every value decodes:
    // names valid), then, if that is clean, a walk over every record: the
    // key's hash is NameHash(name), and no (child, parent) pair holds one
    // name twice (checked within each hash group).
    [[nodiscard]] parent_map_report verify() noexcept {
        parent_map_report r;
        r.tree = t_.verify();
        if (!r.tree.clean()) return r;
        parent_key group{};
        bool have_group = false;
        errc inner = errc::ok;
        const errc e = t_.for_each([&](const parent_key& k, const parent_record& v) noexcept -> bool {
            ++r.records;
            if (name_hash(v.name_view()) != k.hash) r.add(parent_problem{parent_problem_kind::bad_hash, k});
            if (have_group && group.child == k.child && group.parent == k.parent && group.hash == k.hash) {
                // Earlier records of this hash group: none may hold the same name.
                const parent_record mine = v;
                bool dup = false;
                parent_key hi = k;
                hi.index = k.index - 1; // k.index > group.index: keys are strictly increasing
                inner = t_.for_each(group, hi, [&](const parent_key&, const parent_record& o) noexcept -> bool {
                    dup = o.name_view() == mine.name_view();
                    return !dup;
                });
                if (inner != errc::ok) return false;
                if (dup) r.add(parent_problem{parent_problem_kind::duplicate_name, k});
            } else {
                group = k;
                have_group = true;
            }
            return true;
        });
        r.walk_error = e != errc::ok ? e : inner;
        return r;
    }

    // Compare the map with the directory entries a checker read from the
    // directories themselves (the source of truth):
    //   for_each_entry(visit): calls visit(child, parent, parent_gen, name)
    //       for every entry, in any order (visit returns false to stop);
    //       may return errc (a failed directory read ends the check with it)
    //       or void;
    //   has_entry(child, parent, name) -> bool: is there such an entry?
    // f(dirent_mismatch, child, parent, name) for each disagreement: an
    // entry without a pointer (missing, including entries whose name the map
    // cannot hold), a pointer whose stored generation differs, a pointer
    // without an entry (extra). Returns the number of disagreements, or the
    // first read error.
    template <class ForEachEntry, class HasEntry, class F>
    [[nodiscard]] result<std::uint64_t> cross_check(ForEachEntry&& for_each_entry, HasEntry&& has_entry,
                                                    F&& f) noexcept {
        std::uint64_t n = 0;
        errc inner = errc::ok;
        auto visit = [&](std::uint64_t child, std::uint64_t parent, std::uint32_t gen, name_ref name) noexcept -> bool {
            auto g = find(child, parent, name);
            if (g) {
                if (*g != gen) {
                    f(dirent_mismatch::stale_generation, child, parent, name);
                    ++n;
                }
            } else if (g.error() == errc::not_found || g.error() == errc::invalid) {
                f(dirent_mismatch::missing, child, parent, name);
                ++n;
            } else {
                inner = g.error();
                return false;
            }
            return true;
        };
        if constexpr (std::is_void_v<decltype(for_each_entry(visit))>) {
            for_each_entry(visit);
        } else {
            const errc e = for_each_entry(visit);
            if (e != errc::ok) return e;
        }
        if (inner != errc::ok) return inner;
        const errc e = t_.for_each([&](const parent_key& k, const parent_record& v) noexcept -> bool {
            if (!has_entry(k.child, k.parent, v.name_view())) {
                f(dirent_mismatch::extra, k.child, k.parent, v.name_view());
                ++n;
            }
            return true;
        });
        if (e != errc::ok) return e;
        return n;
    }

    [[nodiscard]] result<tree_stats> stats() noexcept { return t_.stats(); }

private:
    parent_map(tree_type&& t, J& j) noexcept : t_(rvalue(t)), j_(&j) {}

    [[nodiscard]] static parent_key lowest(std::uint64_t child) noexcept { return parent_key{child, 0, 0, 0}; }
    [[nodiscard]] static parent_key highest(std::uint64_t child) noexcept {
        return parent_key{child, ~std::uint64_t{0}, ~std::uint32_t{0}, ~std::uint32_t{0}};
    }
    [[nodiscard]] static parent_record make_record(std::uint32_t gen, name_ref name) noexcept {
        parent_record r;
        r.parent_gen = gen;
        r.name_len = static_cast<std::uint16_t>(name.size);
        copy_bytes(r.name, name.data, name.size);
        return r;
    }

    // What one hash group says about a name.
    struct probe {
        bool found = false;
        parent_key key{};     // found: the record's key
        std::uint32_t gen = 0; // found: its parent generation
        bool has_free = true;
        std::uint32_t free_index = 0; // the smallest collision index not in use
    };
    // Walks the group (child, parent, hash) in index order.
    [[nodiscard]] errc probe_group(std::uint64_t child, std::uint64_t parent, name_ref name, std::uint32_t hs,
                                   probe& out) noexcept {
        out = probe{};
        std::uint64_t expect = 0; // indexes [0, expect) are all in use
        bool gap = false;
        const parent_key lo{child, parent, hs, 0};
        const parent_key hi{child, parent, hs, ~std::uint32_t{0}};
        JBTREE_TRY(t_.for_each(lo, hi, [&](const parent_key& k, const parent_record& v) noexcept -> bool {
            if (!gap) {
                if (k.index == expect) ++expect;
                else gap = true;
            }
            if (v.name_view() == name) {
                out.found = true;
                out.key = k;
                out.gen = v.parent_gen;
                return false;
            }
            return true;
        }));
        out.has_free = expect <= ~std::uint32_t{0};
        out.free_index = static_cast<std::uint32_t>(expect);
        return errc::ok;
    }

    // paths_of() frames live at the front of the caller's buffer (which has
    // no alignment promise: copied, not cast).
    static void put_frame(unsigned char* buf, std::size_t i, const path_frame& f) noexcept {
        copy_bytes(buf + i * path_frame_size, &f, path_frame_size);
    }
    [[nodiscard]] static path_frame get_frame(const unsigned char* buf, std::size_t i) noexcept {
        path_frame f;
        copy_bytes(&f, buf + i * path_frame_size, path_frame_size);
        return f;
    }
    [[nodiscard]] static bool on_walk(const unsigned char* buf, std::size_t n, std::uint64_t ino) noexcept {
        for (std::size_t i = 0; i < n; ++i)
            if (get_frame(buf, i).ino == ino) return true;
        return false;
    }

    tree_type t_;
    J* j_;
};

} // namespace jbtree
