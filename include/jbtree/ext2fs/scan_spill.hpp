// SPDX-License-Identifier: MIT
// jbtree: a scan's records in bounded memory: what scan_filesystem() drains
// into a scan_spill (a scan_sink) goes to sorted runs in temporary files
// (hosted/external_sort.hpp), and comes back merged, in the order and form
// the bulk loader takes, as streams:
//
//   scan_spill sp(budget, tmpdir);        sp.open() before the scan
//   scan_filesystem(fs, r, progress, &ee, &sp.sink());
//   sp.rmap_spilled() / sp.links_spilled()   which came to disk (the other
//                                         is in r, as without a sink)
//   sp.prepare_rmap() / prepare_links()   merge the runs down, count
//   rmap_stream s; sp.open_rmap(s)        canonical rmap records, key order
//   link_stream l; sp.open_links(l)       parent pointer records, key order
//
// The streams give exactly what the in-memory path gives
// (detail::canonicalize() of all records; keyed_links()), so a build from
// spilled records is the build without them, block for block. One case
// is not streamed: records that share blocks (a block listed twice, or
// owned twice: reflinks; damage on ext4) take canonicalize()'s general
// path, which groups by owner; prepare_rmap() then says so (shared()) and
// the caller gathers them in memory (gather_rmap()).
//
// Memory: records held in the scan up to `budget` (half for rmap records,
// half for links), and while merging one read buffer per run merged (at
// most a quarter of the budget) and one write buffer.
// Hosted: files and allocation; errors are errc (errc::io, with the errno
// in io_errno()).
#pragma once

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "jbtree/base/errc.hpp"
#include "jbtree/ext2fs/scan.hpp"
#include "jbtree/hosted/external_sort.hpp"
#include "jbtree/hosted/radix_sort.hpp"
#include "jbtree/maps/parent_map.hpp"
#include "jbtree/maps/rmap.hpp"

namespace jbtree::ext2fs_adapter {

// The least budget a bounded build takes (smaller ones only make more runs).
inline constexpr std::uint64_t min_build_memory = 64 * 1024;

namespace detail {

inline void put64(unsigned char* p, std::uint64_t v) noexcept { std::memcpy(p, &v, 8); }
inline void put32(unsigned char* p, std::uint32_t v) noexcept { std::memcpy(p, &v, 4); }
inline std::uint64_t get64(const unsigned char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
inline std::uint32_t get32(const unsigned char* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

struct rmap_codec {
    static constexpr std::size_t max_size = 36;
    static std::size_t encode(const rmap_record& r, unsigned char* o) noexcept {
        put64(o, r.start), put64(o + 8, r.length), put64(o + 16, r.owner), put64(o + 24, r.offset), put32(o + 32, r.flags);
        return max_size;
    }
    static std::size_t decode(const unsigned char* p, std::size_t avail, rmap_record& r) noexcept {
        if (avail < max_size) return 0;
        r = rmap_record{get64(p), get64(p + 8), get64(p + 16), get64(p + 24), get32(p + 32)};
        return max_size;
    }
    static bool less(const rmap_record& a, const rmap_record& b) noexcept { return rmap_key_less(a, b); }
};

// A link as a run holds it: its key (index 0: numbered when merged), its
// directory's generation and its name.
struct spilled_link {
    parent_key key;
    std::uint32_t parent_gen = 0;
    std::uint8_t len = 0;
    char name[255];
};

// keyed_links()' order: key, then name (as std::string compares).
[[nodiscard]] inline int compare_names(const char* a, std::size_t al, const char* b, std::size_t bl) noexcept {
    if (const int c = std::memcmp(a, b, std::min(al, bl))) return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

struct link_codec {
    static constexpr std::size_t max_size = 25 + 255;
    static std::size_t encode(const spilled_link& l, unsigned char* o) noexcept {
        put64(o, l.key.child), put64(o + 8, l.key.parent), put32(o + 16, l.key.hash), put32(o + 20, l.parent_gen);
        o[24] = l.len;
        std::memcpy(o + 25, l.name, l.len);
        return 25 + std::size_t{l.len};
    }
    static std::size_t decode(const unsigned char* p, std::size_t avail, spilled_link& l) noexcept {
        if (avail < 25 || avail < 25 + std::size_t{p[24]} || p[24] == 0) return 0;
        l.key = parent_key{get64(p), get64(p + 8), get32(p + 16), 0};
        l.parent_gen = get32(p + 20);
        l.len = p[24];
        std::memcpy(l.name, p + 25, l.len);
        return 25 + std::size_t{l.len};
    }
    static bool less(const spilled_link& a, const spilled_link& b) noexcept {
        if (const int c = parent_map_traits<>::compare(a.key, b.key)) return c < 0;
        return compare_names(a.name, a.len, b.name, b.len) < 0;
    }
};

} // namespace detail

class scan_spill {
public:
    using rmap_runs = hosted::run_store<rmap_record, detail::rmap_codec>;
    using link_runs = hosted::run_store<detail::spilled_link, detail::link_codec>;

    // budget: bytes of records held at once (at least min_build_memory);
    // tmpdir: where the temporary files go.
    scan_spill(std::uint64_t budget, std::string tmpdir)
        : budget_(std::max(budget, min_build_memory)), dir_(std::move(tmpdir)), rm_(buffer_bytes()), ln_(buffer_bytes()) {
        sink_.rmap_limit = static_cast<std::size_t>(budget_ / 2 / sizeof(rmap_record));
        sink_.link_limit = static_cast<std::size_t>(budget_ / 2);
        sink_.drain_rmap = &drain_rmap;
        sink_.drain_links = &drain_links;
        sink_.ctx = this;
    }

    // Create the temporary files (empty, unlinked). errc::io (io_errno()).
    [[nodiscard]] errc open() noexcept {
        if (int e = rm_.open(dir_.c_str()); e != 0) return io(e);
        if (int e = ln_.open(dir_.c_str()); e != 0) return io(e);
        return errc::ok;
    }
    [[nodiscard]] scan_sink& sink() noexcept { return sink_; }
    [[nodiscard]] int io_errno() const noexcept { return errno_; }
    [[nodiscard]] bool rmap_spilled() const noexcept { return sink_.rmap_drained; }
    [[nodiscard]] bool links_spilled() const noexcept { return sink_.links_drained; }
    [[nodiscard]] const rmap_runs& rmap_store() const noexcept { return rm_; }
    [[nodiscard]] const link_runs& link_store() const noexcept { return ln_; }
    // Links drained (raw: as the scan found them) and their names' bytes.
    [[nodiscard]] std::uint64_t raw_links() const noexcept { return raw_links_; }
    [[nodiscard]] std::uint64_t raw_name_bytes() const noexcept { return raw_name_bytes_; }
    // Runs merged at once: a quarter of the budget in read buffers of
    // budget / 256 (4 KiB to 1 MiB) each: 64 runs for budgets from 1 MiB
    // to 256 MiB.
    [[nodiscard]] std::size_t fan_in() const noexcept {
        return std::max<std::size_t>(2, static_cast<std::size_t>(budget_ / 4 / buffer_bytes()));
    }
    [[nodiscard]] std::size_t buffer_bytes() const noexcept {
        return static_cast<std::size_t>(std::clamp<std::uint64_t>(budget_ / 256, 4096, 1 << 20));
    }

    // ---- the canonical rmap stream -------------------------------------------------------

    // merge_neighbours() over the runs' merge (each run canonical): with no
    // block shared, exactly canonicalize() of every record. shared: two
    // records overlap (the caller must not use the stream).
    class rmap_stream {
    public:
        [[nodiscard]] errc next(rmap_record& out, bool& got) noexcept {
            got = false;
            for (;;) {
                rmap_record r{};
                bool more = false;
                if (const int e = m_.next(r, more); e != 0) return owner_->io(e);
                if (!more) {
                    if (have_) {
                        out = p_, got = true, have_ = false;
                    }
                    return errc::ok;
                }
                if (!have_) {
                    p_ = r, have_ = true, end_ = r.start + r.length;
                    continue;
                }
                if (r.start < end_) shared = true;
                end_ = std::max(end_, r.start + r.length);
                if (p_.owner == r.owner && p_.flags == r.flags && p_.start + p_.length == r.start &&
                    (rmap_offsetless(r.owner, r.flags) || p_.offset + p_.length == r.offset)) {
                    p_.length += r.length;
                    continue;
                }
                if (p_.owner == r.owner && p_.flags == r.flags && r.start < p_.start + p_.length) continue;
                out = p_, got = true, p_ = r;
                return errc::ok;
            }
        }
        bool shared = false;

    private:
        friend class scan_spill;
        scan_spill* owner_ = nullptr;
        rmap_runs::merge m_;
        rmap_record p_{};
        bool have_ = false;
        std::uint64_t end_ = 0;
    };

    // Merge the runs down to fan_in() and count the canonical records (and
    // see whether any share a block: shared()). Calls check(record) on
    // each (e.g. first_owned_but_free); check returning false stops.
    template <class Check>
    [[nodiscard]] errc prepare_rmap(Check&& check) noexcept {
        if (const int e = rm_.reduce(fan_in()); e != 0) return io(e);
        rmap_stream s;
        JBTREE_TRY(open_rmap(s));
        rmap_count_ = 0;
        blocks_owned_ = 0;
        for (;;) {
            rmap_record r{};
            bool got = false;
            JBTREE_TRY(s.next(r, got));
            if (!got) break;
            ++rmap_count_;
            blocks_owned_ += r.length;
            if (!check(r)) break;
        }
        shared_ = s.shared || shared_runs_;
        return errc::ok;
    }
    [[nodiscard]] bool shared() const noexcept { return shared_; }
    [[nodiscard]] std::uint64_t rmap_count() const noexcept { return rmap_count_; }
    [[nodiscard]] std::uint64_t blocks_owned() const noexcept { return blocks_owned_; }

    [[nodiscard]] errc open_rmap(rmap_stream& s) noexcept {
        s.owner_ = this;
        s.have_ = false;
        s.shared = false;
        if (const int e = rm_.open_merge(s.m_); e != 0) return io(e);
        return errc::ok;
    }

    // Every spilled rmap record back in memory, canonical (the shared-block
    // case: not bounded by the budget).
    [[nodiscard]] errc gather_rmap(std::vector<rmap_record>& out) noexcept {
        rmap_runs::merge m;
        if (const int e = rm_.open_merge(m); e != 0) return io(e);
        out.clear();
        for (;;) {
            rmap_record r{};
            bool got = false;
            if (const int e = m.next(r, got); e != 0) return io(e);
            if (!got) break;
            out.push_back(r);
        }
        detail::canonicalize(out);
        return errc::ok;
    }

    // ---- the parent pointer stream ---------------------------------------------------

    // keyed_links() as a stream: duplicates dropped, collision indexes
    // numbered.
    class link_stream {
    public:
        [[nodiscard]] errc next(parent_key& k, parent_record& v, bool& got) noexcept {
            got = false;
            for (;;) {
                bool more = false;
                if (const int e = m_.next(cur_, more); e != 0) return owner_->io(e);
                if (!more) return errc::ok;
                const bool same_key = have_ && cur_.key.child == prev_.key.child && cur_.key.parent == prev_.key.parent &&
                                      cur_.key.hash == prev_.key.hash;
                if (same_key && detail::compare_names(cur_.name, cur_.len, prev_.name, prev_.len) == 0) continue;
                index_ = same_key ? index_ + 1 : 0;
                k = cur_.key;
                k.index = index_;
                v.parent_gen = cur_.parent_gen;
                v.name_len = cur_.len;
                std::memcpy(v.name, cur_.name, cur_.len);
                prev_ = cur_; // a 300-byte copy: a name must be kept to see a duplicate
                have_ = true;
                got = true;
                return errc::ok;
            }
        }

    private:
        friend class scan_spill;
        scan_spill* owner_ = nullptr;
        link_runs::merge m_;
        detail::spilled_link cur_{}, prev_{};
        bool have_ = false;
        std::uint32_t index_ = 0;
    };

    [[nodiscard]] errc prepare_links() noexcept {
        if (const int e = ln_.reduce(fan_in()); e != 0) return io(e);
        link_stream s;
        JBTREE_TRY(open_links(s));
        link_count_ = 0;
        for (;;) {
            parent_key k{};
            parent_record v{};
            bool got = false;
            JBTREE_TRY(s.next(k, v, got));
            if (!got) break;
            ++link_count_;
        }
        return errc::ok;
    }
    [[nodiscard]] std::uint64_t link_count() const noexcept { return link_count_; }
    [[nodiscard]] errc open_links(link_stream& s) noexcept {
        s.owner_ = this;
        s.have_ = false;
        s.index_ = 0;
        if (const int e = ln_.open_merge(s.m_); e != 0) return io(e);
        return errc::ok;
    }

private:
    errc io(int e) noexcept {
        errno_ = e;
        return errc::io;
    }

    static errc drain_rmap(void* ctx, std::vector<rmap_record>& v) {
        auto* self = static_cast<scan_spill*>(ctx);
        if (v.empty()) return errc::ok;
        // canonicalize()'s own test for a shared block, on the raw records.
        if (!std::is_sorted(v.begin(), v.end(), detail::rmap_key_less))
            hosted::radix_sort(v, [](const rmap_record& x) { return x.start; }, detail::rmap_key_less);
        for (std::size_t i = 1; i < v.size(); ++i)
            if (v[i].start - v[i - 1].start < v[i - 1].length) self->shared_runs_ = true;
        detail::canonicalize(v);
        if (const int e = self->rm_.write_run(v.data(), v.size()); e != 0) return self->io(e);
        v.clear();
        return errc::ok;
    }

    static errc drain_links(void* ctx, std::vector<scan_link>& v) {
        auto* self = static_cast<scan_spill*>(ctx);
        using traits = parent_map_traits<>;
        struct ix {
            parent_key key;
            const scan_link* link;
        };
        std::vector<ix> ks;
        ks.reserve(v.size());
        for (const scan_link& l : v) {
            ++self->raw_links_;
            self->raw_name_bytes_ += l.name.size();
            const name_ref name(l.name.data(), l.name.size());
            if (!valid_parent_name(name)) continue;
            ks.push_back({parent_key{l.child, l.parent, traits::hash_type::hash(name.data, name.size), 0}, &l});
        }
        hosted::radix_sort(
            ks, [](const ix& x) { return x.key.child; },
            [](const ix& a, const ix& b) {
                const int c = traits::compare(a.key, b.key);
                return c != 0 ? c < 0 : a.link->name < b.link->name;
            });
        const int e = self->ln_.write_run(ks.size(), [&](std::size_t i, detail::spilled_link& x) {
            x.key = ks[i].key;
            x.parent_gen = ks[i].link->parent_gen;
            x.len = static_cast<std::uint8_t>(ks[i].link->name.size());
            std::memcpy(x.name, ks[i].link->name.data(), x.len);
        });
        if (e != 0) return self->io(e);
        v.clear();
        return errc::ok;
    }

    std::uint64_t budget_;
    std::string dir_;
    rmap_runs rm_;
    link_runs ln_;
    scan_sink sink_;
    int errno_ = 0;
    bool shared_runs_ = false, shared_ = false;
    std::uint64_t raw_links_ = 0, raw_name_bytes_ = 0;
    std::uint64_t rmap_count_ = 0, blocks_owned_ = 0, link_count_ = 0;
};

} // namespace jbtree::ext2fs_adapter
