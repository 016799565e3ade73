// SPDX-License-Identifier: MIT
// libFuzzer target: node validation and read paths on arbitrary block bytes.
//
// The input is a 20-byte header followed by 1..4 blocks of raw bytes (padded
// with zeros or truncated to the block size). The blocks go into a
// memory_storage as blocks 1..N, unchanged unless the header asks for one of
// a few optional fix-ups (see below) that help the fuzzer past checks it
// cannot solve by mutation, such as a CRC. (A second input mode, "patch
// mode", bulk loads a valid tree of up to 255 records instead and damages it
// with short structured patches: links, child pointers, keys, counts, whole
// block copies, the anchor. It reaches cross-node damage, such as sibling
// loops and shared children, with a few bytes of input.) Then:
//
//  1. check_node() on every block, expecting the header's own fields (so the
//     checks on content are reached) and, per a header bit, the real block
//     number instead of the header's self field. A node that passes must
//     have every key, payload and slotted record inside the block: every
//     byte is read, so AddressSanitizer flags anything outside.
//  2. A btree is opened with root = block 1, height = (block 1's level
//     % 3) + 1 (% 4 with four blocks) and block 1's tree id, and every read
//     path runs on it: find, contains, lower/upper_bound, first, last,
//     cursor next/prev/value, for_each (all and ranged), count, overlap
//     queries (interval trees), verify() and stats(). None may crash, trip a
//     sanitizer or run away; errors are expected.
//
// Checks beyond "no crash" (each a __builtin_trap(), i.e. a libFuzzer crash):
//  - a walk or cursor never yields more records than the blocks can hold
//    (more means it is cycling through sibling links: with a caller's
//    `while (!c.at_end()) c.next()` that is a hang);
//  - when verify() is clean, the tree is consistent: for_each, count,
//    cursors and stats() succeed, agree with each other and with
//    anchor.records, keys come out strictly increasing, find() finds each
//    record, and overlap queries match a brute-force filter of the records.
//
// With -DJBTREE_FUZZ_NODE_MUTATE=1 a few mutations (insert, erase, assign)
// then run on the damaged tree as well; they may fail, but must not corrupt
// memory. This is off by default (the read paths are the contract).
//
// Build with -DJBTREE_FUZZ_GEN_CORPUS to get a program that writes seed
// inputs (valid node images of small trees) instead: see fuzz/README.md.
#include <jbtree/jbtree.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#ifndef JBTREE_FUZZ_NODE_MUTATE
#define JBTREE_FUZZ_NODE_MUTATE 0
#endif
// A walk or cursor that cycles is stopped and ignored instead of reported
// (to keep fuzzing for other problems while a known loop is open):
// bit 0 (1): cursor next()/prev() loops; bit 1 (2): for_each()/count() loops.
#ifndef JBTREE_FUZZ_ALLOW_LOOPS
#define JBTREE_FUZZ_ALLOW_LOOPS 0
#endif

namespace {

using namespace jbtree;
using storage_t = memory_storage<>;
using journal_t = null_journal<storage_t>;

[[noreturn]] void fail_at(const char* file, int line, const char* what) {
    std::fprintf(stderr, "fuzz_node: check failed at %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    __builtin_trap();
}
#define FZ_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond);                                                               \
    } while (0)
// A bounded walk went past the number of records the blocks can hold: it is
// cycling, and an unbounded caller would hang.
#define FZ_NO_LOOP(cond, kind, what)                                                                                   \
    do {                                                                                                               \
        if (!(cond) && !(JBTREE_FUZZ_ALLOW_LOOPS & (kind))) fail_at(__FILE__, __LINE__, "endless loop: " what);      \
    } while (0)

// ---- input header ---------------------------------------------------------------
//
//  byte 0: bits 0-1 block size (0: 512, 1: 1024, 2: 4096, 3: 512)
//          bits 2-3 tree type (0: u64_map_traits, 1: u64_extent_traits,
//                   2: u64_blob_traits<200>, 3: u64_map_traits)
//          bits 4-5 checksums (0: off; 1: on, blocks as given;
//                   2, 3: on, and each block is sealed after the fix-ups)
//          bits 6-7 number of blocks - 1 (1..4)
//  byte 1: fix-ups, applied before sealing
//          bit 0 set each block's self field to its real block number
//          bit 1 fold links: every child pointer and sibling link v becomes
//                v % (N + 1), so it names one of the fuzzed blocks (or none)
//          bit 2 set magic, tree id and key/payload/flags fields of blocks
//                2..N to block 1's values
//          bit 3 check_node expects the real block number (else the header's self)
//          bit 4 check_node expects checksums off even if the storage has them on
//          bit 5 mirror links: for each block b (in order) whose right link r
//                names another fuzzed block, set r's left link to b (a
//                consistent doubly linked chain, or loop, in one step)
//          bit 7 patch mode: instead of raw blocks, the rest of the input is a
//                list of patches applied to a valid generated tree (see
//                run_patched); byte 2 then sets its size, byte 3 its fill
//                factor; bits 6-7 of byte 0 and bits 0-2 of byte 1 are ignored
//  byte 2: anchor record count (0..255)
//  byte 3: checksum seed (times 0x01010101)
//  bytes 4..19: two query keys (le64)
//  then N blocks.
constexpr std::size_t header_bytes = 20;

struct config {
    std::uint32_t bs = 512;
    unsigned traits = 0;
    unsigned csum = 0;
    unsigned nblocks = 1;
    std::uint8_t fix = 0;
    std::uint64_t records = 0;
    std::uint32_t seed = 0;
    std::uint64_t q[2] = {};
};

config parse(const std::uint8_t* d) {
    config c;
    static constexpr std::uint32_t sizes[4] = {512, 1024, 4096, 512};
    c.bs = sizes[d[0] & 3];
    c.traits = (d[0] >> 2) & 3;
    c.csum = (d[0] >> 4) & 3;
    c.nblocks = 1u + (d[0] >> 6);
    c.fix = d[1];
    c.records = d[2];
    c.seed = 0x01010101u * d[3];
    c.q[0] = load_le<std::uint64_t>(d + 4);
    c.q[1] = load_le<std::uint64_t>(d + 12);
    return c;
}

// Records a tree of these traits can hold in N blocks (a bound for walks).
template <class Traits>
std::uint64_t max_records(const node_layout<Traits>& lay, unsigned nblocks) {
    return std::uint64_t{lay.max_entries(true)} * nblocks;
}

template <class T>
void sink(const T& v) {
    // Keep reads from being optimised away.
    asm volatile("" : : "r"(&v) : "memory");
}

// Reads every byte check_node() vouched for.
template <class Traits>
void touch_node(const node_layout<Traits>& lay, const unsigned char* n) {
    using L = node_layout<Traits>;
    const bool leaf = L::level(n) == 0;
    const std::uint32_t cnt = L::count(n);
    static unsigned char buf[L::key_size + 0x10000];
    for (std::uint32_t i = 0; i < cnt; ++i) {
        std::memcpy(buf, lay.key(n, leaf, i), L::key_size);
        const std::uint32_t plen = lay.payload_len(n, leaf, i);
        FZ_CHECK(plen <= L::max_value_size() || !leaf || !L::slotted_leaves);
        std::memcpy(buf, lay.payload(n, leaf, i), plen);
        sink(buf);
        if (!leaf) sink(L::child(lay.payload(n, false, i)));
    }
    FZ_CHECK(lay.used_units(n, leaf) <= lay.capacity(leaf));
}

// The value stored under the i-th key of generated trees.
template <class Traits>
typename Traits::value_type seed_value(std::uint64_t i) {
    if constexpr (has_fixed_values<Traits>) {
        return is_interval<Traits> ? 1 + i % 7 : i * 1000 + 7;
    } else {
        typename Traits::value_type v;
        v.size = static_cast<std::uint16_t>((i * 37) % 150);
        for (std::size_t j = 0; j < v.size; ++j) v.bytes[j] = static_cast<unsigned char>('a' + (i + j) % 26);
        return v;
    }
}

// Apply the header's fix-ups to the raw blocks.
template <class Traits>
void fix_blocks(const config& c, storage_t& st) {
    using L = node_layout<Traits>;
    const L lay(c.bs);
    unsigned char* b1 = st.raw_block(1);
    for (unsigned b = 1; b <= c.nblocks; ++b) {
        unsigned char* n = st.raw_block(b);
        node_header* h = header_of(n);
        if (c.fix & 1) h->self.set(b);
        if ((c.fix & 4) && b > 1) {
            // magic .. checksum untouched; tree_id; flags/key_size/payload_size as block 1's.
            std::memcpy(n, b1, 4);
            std::memcpy(n + 40, b1 + 40, 4);
            std::memcpy(n + 50, b1 + 50, 6);
        }
        if (c.fix & 2) {
            const std::uint64_t m = c.nblocks + 1u;
            h->left.set(h->left.get() % m);
            h->right.set(h->right.get() % m);
            if (L::level(n) != 0) {
                const std::uint32_t cnt = L::count(n) < lay.capacity(false) ? L::count(n) : lay.capacity(false);
                for (std::uint32_t i = 0; i < cnt; ++i) {
                    unsigned char* p = lay.payload(n, false, i) + L::child_offset;
                    store_le<std::uint64_t>(p, load_le<std::uint64_t>(p) % m);
                }
            }
        }
    }
    if (c.fix & 32)
        for (unsigned b = 1; b <= c.nblocks; ++b) {
            const std::uint64_t r = header_of(st.raw_block(b))->right.get();
            if (r != 0 && r != b && r <= c.nblocks) header_of(st.raw_block(r))->left.set(b);
        }
    if (c.csum >= 2)
        for (unsigned b = 1; b <= c.nblocks; ++b) seal_node(st.raw_block(b), c.bs, c.seed);
}

template <class Traits>
class reader_checks {
public:
    using tree_t = btree<Traits, storage_t, journal_t>;
    using key_type = typename Traits::key_type;
    using value_type = typename Traits::value_type;
    static constexpr bool interval = tree_t::interval;

    reader_checks(tree_t& t, std::uint64_t bound) : t_(t), bound_(bound) {}

    // Every read path; `consistent` (verify() was clean) adds agreement checks.
    void run(const config& c, bool consistent) {
        std::vector<std::pair<key_type, value_type>> all;
        const errc walk_e = t_.for_each([&](const key_type& k, const value_type& v) noexcept {
            all.emplace_back(k, v);
            // Past the bound the walk is cycling; stop it here and report below.
            return all.size() <= bound_;
        });
        FZ_NO_LOOP(all.size() <= bound_, 2, "for_each() cycles through leaf sibling links");
        if (consistent) {
            FZ_CHECK(walk_e == errc::ok);
            FZ_CHECK(all.size() == t_.size());
            for (std::size_t i = 1; i < all.size(); ++i) FZ_CHECK(Traits::compare(all[i - 1].first, all[i].first) < 0);
            for (auto& kv : all) {
                auto f = t_.find(kv.first);
                FZ_CHECK(f.ok());
                FZ_CHECK(equal_values(*f, kv.second));
            }
            auto s = t_.stats();
            FZ_CHECK(s.ok());
            FZ_CHECK(s->records == t_.size());
        } else {
            (void)t_.stats();
        }

        key_type keys[4] = {c.q[0], c.q[1], all.empty() ? key_type{} : all.front().first,
                            all.empty() ? ~key_type{} : all.back().first};
        for (const key_type& k : keys) {
            auto f = t_.find(k);
            (void)t_.contains(k);
            if (consistent) {
                bool present = false;
                for (auto& kv : all) present = present || kv.first == k;
                FZ_CHECK(f.ok() == present);
                if (!present) FZ_CHECK(f.error() == errc::not_found);
            }
            cursor_forward(t_.lower_bound(k), consistent, all, k, false);
            cursor_forward(t_.upper_bound(k), consistent, all, k, true);
            cursor_backward(t_.lower_bound(k), false);
        }
        cursor_forward(t_.first(), consistent, all, key_type{}, false);
        cursor_backward(t_.last(), consistent);

        const key_type lo = c.q[0] < c.q[1] ? c.q[0] : c.q[1], hi = c.q[0] < c.q[1] ? c.q[1] : c.q[0];
        std::uint64_t seen = 0;
        const errc re = t_.for_each(lo, hi, [&](const key_type&, const value_type&) noexcept {
            return ++seen <= bound_;
        });
        FZ_NO_LOOP(seen <= bound_, 2, "for_each(lo, hi) cycles through leaf sibling links");
        if (seen > bound_) return; // count() over the same range would never return
        auto cnt = t_.count(lo, hi);
        std::uint64_t want = 0;
        for (auto& kv : all) want += kv.first >= lo && kv.first <= hi;
        if (consistent) {
            FZ_CHECK(re == errc::ok);
            FZ_CHECK(seen == want);
            FZ_CHECK(cnt.ok() && *cnt == want);
        }
        if constexpr (interval) overlaps(lo, hi, consistent, all);
    }

private:
    static bool equal_values(const value_type& a, const value_type& b) {
        if constexpr (requires { a == b; }) return a == b;
        else return std::memcmp(&a, &b, sizeof a) == 0;
    }

    template <class R>
    void cursor_forward(R&& rc, bool consistent, const std::vector<std::pair<key_type, value_type>>& all,
                        const key_type& from, bool upper) {
        if (!rc.ok()) {
            FZ_CHECK(!consistent);
            return;
        }
        auto& c = *rc;
        // Where a consistent tree's cursor must start.
        std::size_t pos = 0;
        if (consistent)
            while (pos < all.size() && (upper ? all[pos].first <= from : all[pos].first < from)) ++pos;
        std::uint64_t steps = 0;
        while (!c.at_end()) {
            if (++steps > bound_ + 1) {
                FZ_NO_LOOP(false, 1, "cursor next() cycles through leaf sibling links");
                return;
            }
            (void)c.value();
            if (consistent) {
                FZ_CHECK(pos < all.size() && c.key() == all[pos].first);
                auto v = c.value();
                FZ_CHECK(v.ok() && equal_values(*v, all[pos].second));
                ++pos;
            }
            if (c.next() != errc::ok) {
                FZ_CHECK(!consistent);
                return;
            }
        }
        if (consistent) FZ_CHECK(pos == all.size());
    }

    template <class R>
    void cursor_backward(R&& rc, bool consistent) {
        if (!rc.ok()) {
            FZ_CHECK(!consistent);
            return;
        }
        auto& c = *rc;
        std::uint64_t steps = 0;
        bool have_prev = false;
        key_type prev{};
        while (!c.at_end()) {
            if (++steps > bound_ + 1) {
                FZ_NO_LOOP(false, 1, "cursor prev() cycles through leaf sibling links");
                return;
            }
            if (consistent && have_prev) FZ_CHECK(Traits::compare(c.key(), prev) < 0);
            prev = c.key();
            have_prev = true;
            (void)c.value();
            if (c.prev() != errc::ok) {
                FZ_CHECK(!consistent);
                return;
            }
        }
        if (consistent && steps) FZ_CHECK(steps <= t_.size());
    }

    void overlaps(const key_type& lo, const key_type& hi, bool consistent,
                  const std::vector<std::pair<key_type, value_type>>& all)
        requires interval
    {
        std::vector<key_type> got;
        const errc e = t_.for_each_overlapping(lo, hi, [&](const key_type& k, const value_type&) noexcept {
            got.push_back(k);
            return got.size() <= bound_;
        });
        if (!consistent) return;
        FZ_CHECK(got.size() <= bound_);
        FZ_CHECK(e == errc::ok);
        std::vector<key_type> want;
        for (auto& kv : all)
            if (kv.first <= hi && Traits::high_key(kv.first, kv.second) >= lo) want.push_back(kv.first);
        FZ_CHECK(got == want);
    }

    tree_t& t_;
    std::uint64_t bound_;
};

// check_node() on blocks 1..nblocks.
template <class Traits>
void check_blocks(const config& c, storage_t& st, unsigned nblocks) {
    using L = node_layout<Traits>;
    const L lay(c.bs); // may be unusable (u64_blob_traits<200> in 512 bytes): open() then refuses
    for (unsigned b = 1; b <= nblocks; ++b) {
        const unsigned char* n = st.raw_block(b);
        const node_header* h = header_of(n);
        const node_expectation want{(c.fix & 8) ? b : h->self.get(), h->tree_id.get(), h->level.get(),
                                    st.checksums() && !(c.fix & 16), st.checksum_seed()};
        const node_fault f = check_node(lay, n, want);
        (void)describe(f);
        (void)to_errc(f);
        if (f == node_fault::none) {
            touch_node(lay, n);
            FZ_CHECK(want.level < max_height);
            FZ_CHECK(L::count(n) != 0);
        }
        // A different level or tree id must never pass.
        if (h->level.get() + 1u < max_height) {
            node_expectation other = want;
            other.level = h->level.get() + 1u;
            FZ_CHECK(check_node(lay, n, other) != node_fault::none);
        }
        node_expectation other = want;
        other.tree_id = h->tree_id.get() ^ 1u;
        FZ_CHECK(check_node(lay, n, other) != node_fault::none);
    }
}

// Open the tree the anchor describes and run every read path on it.
template <class Traits>
void read_tree(const config& c, storage_t& st, journal_t& jr, const tree_anchor& a, unsigned nblocks) {
    using L = node_layout<Traits>;
    using tree_t = btree<Traits, storage_t, journal_t>;
    const L lay(c.bs);
    auto o = tree_t::open(st, jr, a);
    if (!o) return;
    tree_t& t = *o;

    const verify_report rep = t.verify();
#ifdef JBTREE_FUZZ_DEBUG
    std::fprintf(stderr, "fuzz_node: opened height %u, verify: %u problems, %llu records in %llu nodes\n",
                 t.height(), rep.problem_count, static_cast<unsigned long long>(rep.records),
                 static_cast<unsigned long long>(rep.nodes));
#endif
    FZ_CHECK(rep.problem_count >= rep.kept());
    for (std::uint32_t i = 0; i < rep.kept(); ++i) (void)describe(rep.problems[i].kind);
    reader_checks<Traits> rc(t, max_records(lay, nblocks));
    rc.run(c, rep.clean());

#if JBTREE_FUZZ_NODE_MUTATE
    // Mutations on a damaged tree: errors are fine, memory errors are not.
    auto hd = jr.start(unlimited_credits);
    FZ_CHECK(hd.ok());
    for (int i = 0; i < 3; ++i) {
        const typename Traits::value_type v = seed_value<Traits>(c.q[i & 1] + i);
        (void)t.insert(*hd, c.q[i & 1] + i, v);
        (void)t.erase(*hd, c.q[(i + 1) & 1]);
        (void)t.assign(*hd, c.q[0], v);
        (void)t.insert(*hd, c.q[1] - i, v);
    }
    (void)t.verify();
    (void)jr.stop(*hd);
#endif
}

// Raw mode: blocks 1..N straight from the input; root = block 1.
template <class Traits>
void run_raw(const config& c, storage_t& st, journal_t& jr) {
    fix_blocks<Traits>(c, st);
    check_blocks<Traits>(c, st, c.nblocks);
    const node_header* h1 = header_of(st.raw_block(1));
    const unsigned levels = c.nblocks >= 4 ? 4 : 3;
    tree_anchor a;
    a.root = 1;
    a.height = static_cast<std::uint16_t>(h1->level.get() % levels + 1);
    a.tree_id = h1->tree_id.get();
    a.records = c.records;
    read_tree<Traits>(c, st, jr, a, c.nblocks);
}

// Patch mode: a valid tree of (byte 2) records, keys 1, 4, 7, ..., is bulk
// loaded with fill factor 10 + (byte 3) % 91 percent, then damaged by 4-byte patches [sel, off_lo, off_hi, val]:
//   sel bits 0-2: block (1 + sel % nblocks); bits 3-5: kind
//   0: byte at off = val          1: flip bit val % 8 of byte at off
//   2: header field off % 5 (self, left, right, count, level) = small value
//   3: child pointer of internal entry off % count = val % (nblocks + 1)
//   4: key i = off % count set to val * 3 + (off >> 8) % 3 (order damage)
//   5: the block becomes a copy of block 1 + val % nblocks
//   6: anchor field off % 3 (root, height, records) = small value
//   7: swap the child pointers (and high keys) of two internal entries
// Then links are mirrored if byte 1 bit 5 asks for it, and blocks are sealed
// again when the checksum mode asks for it.
template <class Traits>
void run_patched(const config& c, storage_t& st, journal_t& jr, const std::uint8_t* p, std::size_t left) {
    using L = node_layout<Traits>;
    using tree_t = btree<Traits, storage_t, journal_t>;
    const L lay(c.bs);
    if (!lay.usable()) return;
    tree_anchor a;
    {
        auto t = tree_t::create(st, jr, 7u + (c.seed & 0xFF));
        FZ_CHECK(t.ok());
        auto h = jr.start(unlimited_credits);
        FZ_CHECK(h.ok());
        // Bulk load (fast); a low fill factor makes tall trees of few records.
        const std::uint64_t n = c.records;
        const unsigned fill = 10 + (c.seed & 0xFF) % 91;
        std::uint64_t i = 0;
        auto src = [&i](typename Traits::key_type& k, typename Traits::value_type& v) noexcept {
            k = i * 3 + 1;
            v = seed_value<Traits>(i++);
            return true;
        };
        const errc e = t->bulk_load(*h, n, src, fill);
        FZ_CHECK(e == errc::ok || e == errc::too_deep);
        (void)jr.stop(*h);
        a = t->anchor();
    }
    // A successful bulk load frees nothing: the nodes are blocks 1..B.
    const unsigned nb = static_cast<unsigned>(st.blocks_in_use());
    if (nb == 0) return;
    FZ_CHECK(st.raw_block(nb) != nullptr && st.raw_block(nb + 1) == nullptr);
    const std::uint32_t bs = c.bs;
    auto small = [nb](std::uint8_t v) -> std::uint64_t { return v >= 0xF0 ? ~std::uint64_t{0} - (v & 15) : v % (nb + 1u); };
    for (; left >= 4; p += 4, left -= 4) {
        const unsigned blk = 1 + p[0] % 8 % nb;
        const unsigned kind = (p[0] >> 3) & 7;
        const std::uint32_t off = p[1] | std::uint32_t{p[2]} << 8;
        const std::uint8_t val = p[3];
        unsigned char* n = st.raw_block(blk);
        node_header* h = header_of(n);
        const std::uint32_t cnt = L::count(n);
        const bool leaf = L::level(n) == 0;
        // Entries whose key (fixed layouts) or slot (slotted leaves) lies inside the block.
        const std::uint32_t room = lay.max_entries(leaf);
        const std::uint32_t in_cap = cnt < room ? cnt : room;
        switch (kind) {
        case 0: n[off % bs] = val; break;
        case 1: n[off % bs] ^= static_cast<unsigned char>(1u << (val & 7)); break;
        case 2:
            switch (off % 5) {
            case 0: h->self.set(small(val)); break;
            case 1: h->left.set(small(val)); break;
            case 2: h->right.set(small(val)); break;
            case 3: h->count.set(val); break;
            default: h->level.set(val % 10); break;
            }
            break;
        case 3:
            if (!leaf && in_cap) store_le<std::uint64_t>(lay.payload(n, false, off % in_cap) + L::child_offset, small(val));
            break;
        case 4:
            if (in_cap) {
                const std::uint32_t i = off % in_cap;
                unsigned char* k = nullptr;
                if (leaf && L::slotted_leaves) {
                    const std::uint32_t at = L::slot(n, i) + L::record_prefix;
                    if (at + L::key_size <= bs) k = n + at;
                } else {
                    k = lay.key(n, leaf, i);
                }
                if (k) store_le<std::uint64_t>(k, std::uint64_t{val} * 3 + (off >> 8) % 3);
            }
            break;
        case 5: std::memcpy(n, st.raw_block(1 + val % nb), bs); break;
        case 6:
            switch (off % 3) {
            case 0: a.root = small(val); break;
            case 1: a.height = static_cast<std::uint16_t>(val % 10); break;
            default: a.records = val; break;
            }
            break;
        default:
            if (!leaf && in_cap > 1) {
                unsigned char* x = lay.payload(n, false, off % in_cap);
                unsigned char* y = lay.payload(n, false, val % in_cap);
                unsigned char tmp[L::internal_payload];
                std::memcpy(tmp, x, sizeof tmp);
                std::memcpy(x, y, sizeof tmp);
                std::memcpy(y, tmp, sizeof tmp);
            }
            break;
        }
    }
    if (c.fix & 32) // mirror links, as in raw mode
        for (unsigned b = 1; b <= nb; ++b) {
            const std::uint64_t r = header_of(st.raw_block(b))->right.get();
            if (r != 0 && r != b && r <= nb) header_of(st.raw_block(r))->left.set(b);
        }
    if (c.csum >= 2)
        for (unsigned b = 1; b <= nb; ++b) seal_node(st.raw_block(b), bs, c.seed);
    check_blocks<Traits>(c, st, nb);
    read_tree<Traits>(c, st, jr, a, nb);
}

template <class Traits>
void run_mode(const config& c, storage_t& st, journal_t& jr, const std::uint8_t* p, std::size_t left) {
    if (c.fix & 128) {
        run_patched<Traits>(c, st, jr, p, left);
        return;
    }
    for (unsigned b = 1; b <= c.nblocks; ++b) {
        auto r = st.allocate();
        FZ_CHECK(r.ok() && r->blkno() == b);
        const std::size_t n = left < c.bs ? left : c.bs;
        if (n) std::memcpy(r->data(), p, n); // the rest stays zero
        p += n;
        left -= n;
    }
    run_raw<Traits>(c, st, jr);
}

void run_input(const std::uint8_t* data, std::size_t size) {
    if (size < header_bytes) return;
    const config c = parse(data);
    memory_storage_options o;
    o.block_size = c.bs;
    o.checksums = c.csum != 0;
    o.checksum_seed = c.seed;
    storage_t st(o);
    journal_t jr(st);
    const std::uint8_t* p = data + header_bytes;
    const std::size_t left = size - header_bytes;
    switch (c.traits) {
    case 1: run_mode<u64_extent_traits>(c, st, jr, p, left); break;
    case 2: run_mode<u64_blob_traits<200>>(c, st, jr, p, left); break;
    default: run_mode<u64_map_traits>(c, st, jr, p, left); break;
    }
}

} // namespace

#ifndef JBTREE_FUZZ_GEN_CORPUS

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    run_input(data, size);
    return 0;
}

#else // ---- seed generator: valid node images of small trees --------------------

#include <string>

namespace {

void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
        std::perror(path.c_str());
        std::exit(1);
    }
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

// Builds a tree of n records, then writes inputs whose blocks are the root
// (and, when N > 1, the blocks below it, renumbered 1..N in BFS order so that
// child pointers and sibling links stay in range after renumbering).
template <class Traits>
void gen(const std::string& dir, const char* name, unsigned traits_sel, unsigned bs_sel, std::uint32_t bs,
         unsigned n, bool csum, unsigned want_blocks) {
    using L = node_layout<Traits>;
    memory_storage_options o;
    o.block_size = bs;
    o.checksums = csum;
    o.checksum_seed = 0x01010101u * 0x5A;
    storage_t st(o);
    journal_t jr(st);
    auto t = btree<Traits, storage_t, journal_t>::create(st, jr, 7);
    auto h = jr.start(unlimited_credits);
    for (unsigned i = 0; i < n; ++i) (void)t->insert(*h, i * 3 + 1, seed_value<Traits>(i));
    // Keep at most want_blocks blocks: the root, then BFS order.
    const L lay(bs);
    std::vector<std::uint64_t> order{t->anchor().root};
    for (std::size_t i = 0; i < order.size() && order.size() < want_blocks; ++i) {
        const unsigned char* nb = st.raw_block(order[i]);
        if (L::level(nb) == 0) continue;
        for (std::uint32_t e = 0; e < L::count(nb) && order.size() < want_blocks; ++e)
            order.push_back(L::child(lay.payload(nb, false, e)));
    }
    // Old -> new block numbers (unknown blocks -> 0).
    auto renum = [&](std::uint64_t b) -> std::uint64_t {
        for (std::size_t i = 0; i < order.size(); ++i)
            if (order[i] == b) return i + 1;
        return 0;
    };
    const unsigned nb = static_cast<unsigned>(order.size());
    std::vector<unsigned char> out(header_bytes, 0);
    out[0] = static_cast<unsigned char>(bs_sel | traits_sel << 2 | (csum ? 2u : 0u) << 4 | (nb - 1) << 6);
    out[1] = 1 | 8; // self = real block number; expect it
    out[2] = static_cast<unsigned char>(n);
    out[3] = 0x5A;
    store_le<std::uint64_t>(&out[4], 4);
    store_le<std::uint64_t>(&out[12], n * 2);
    for (std::uint64_t b : order) {
        std::vector<unsigned char> blk(st.raw_block(b), st.raw_block(b) + bs);
        node_header* hd = header_of(blk.data());
        hd->self.set(renum(b));
        hd->left.set(renum(hd->left.get()));
        hd->right.set(renum(hd->right.get()));
        if (L::level(blk.data()) != 0)
            for (std::uint32_t e = 0; e < L::count(blk.data()); ++e) {
                unsigned char* p = lay.payload(blk.data(), false, e) + L::child_offset;
                store_le<std::uint64_t>(p, renum(load_le<std::uint64_t>(p)));
            }
        if (csum) seal_node(blk.data(), bs, o.checksum_seed);
        // Trailing zeros can be dropped: the target pads with zeros.
        std::size_t len = bs;
        if (b == order.back())
            while (len > node_header_size && blk[len - 1] == 0) --len;
        out.insert(out.end(), blk.begin(), blk.begin() + static_cast<std::ptrdiff_t>(len));
    }
    write_file(dir + "/" + name, out);
    (void)jr.stop(*h);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    const std::string d = argv[1];
    using M = u64_map_traits;
    using E = u64_extent_traits;
    using B = u64_blob_traits<200>;
    // Whole trees (verify() clean) ...
    gen<M>(d, "map-512-leaf", 0, 0, 512, 10, false, 1);
    gen<M>(d, "map-512-leaf-csum", 0, 0, 512, 20, true, 1);
    gen<M>(d, "map-1024-h2", 0, 1, 1024, 120, false, 4);
    gen<M>(d, "map-4096-leaf", 0, 2, 4096, 40, false, 1);
    gen<E>(d, "ext-512-leaf", 1, 0, 512, 12, false, 1);
    gen<E>(d, "ext-512-h2-csum", 1, 0, 512, 60, true, 4);
    gen<E>(d, "ext-1024-h2", 1, 1, 1024, 100, false, 4);
    gen<B>(d, "blob-1024-leaf", 2, 1, 1024, 8, false, 1);
    gen<B>(d, "blob-4096-h2", 2, 2, 4096, 120, false, 4);
    // ... and the top of larger trees (children beyond block N read as 0).
    gen<M>(d, "map-512-h3-top", 0, 0, 512, 900, true, 4);
    gen<E>(d, "ext-1024-h2-top", 1, 1, 1024, 2000, false, 3);
    gen<B>(d, "blob-1024-h2-top-csum", 2, 1, 1024, 40, true, 3);
    // Patch mode: generated trees with a few harmless-looking patches.
    auto patch_seed = [&](const char* name, unsigned char b0, unsigned char records, std::vector<unsigned char> patches) {
        std::vector<unsigned char> out(header_bytes, 0);
        out[0] = b0;
        out[1] = 128 | 8;
        out[2] = records;
        out[3] = 0x21;
        store_le<std::uint64_t>(&out[4], 10);
        store_le<std::uint64_t>(&out[12], 200);
        out.insert(out.end(), patches.begin(), patches.end());
        write_file(d + "/" + name, out);
    };
    patch_seed("patch-map-512-none", 0x00, 20, {});
    patch_seed("patch-map-512-link", 0x20, 40, {2 << 3 | 1, 2, 0, 3, 2 << 3 | 2, 1, 0, 2});
    patch_seed("patch-ext-512-child", 0x04, 120, {3 << 3 | 0, 1, 0, 2, 4 << 3 | 3, 5, 0, 9});
    patch_seed("patch-blob-1024-key", 0x09, 30, {4 << 3 | 2, 1, 0, 0, 1 << 3 | 1, 70, 1, 3});
    patch_seed("patch-map-1024-anchor", 0x21, 200, {6 << 3, 1, 0, 2, 5 << 3 | 3, 0, 0, 1});
    return 0;
}

#endif
