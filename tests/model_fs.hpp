// A model filesystem over the three maps, shared by tests/test_model_fs.cpp
// and fuzz/fuzz_model.cpp: files and directories in memory (per-block
// mappings, directory entries) and the maps they imply, each filesystem
// operation in one journal handle. See test_model_fs.cpp for what is checked.
//
// The includer defines JT_MODEL_REQUIRE(cond): doctest's REQUIRE in the
// tests, a trap in the fuzz target.
#pragma once

#ifndef JT_MODEL_REQUIRE
#error "define JT_MODEL_REQUIRE(cond) before including model_fs.hpp"
#endif

#include <jbtree/journal/null_journal.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/storage/memory_storage.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace jt_model {

using namespace jbtree;

// Where the maps live. A backend gives storage(), journal(), start() (a
// handle for one filesystem operation) and finish(handle, three anchors)
// (record the maps' anchors, stop the handle). This one: memory with a null
// journal and unlimited credits; test_model_fs.cpp adds a volume on a
// crash-recording device with the jbd2 journal.
struct memory_backend {
    using storage_type = memory_storage<>;
    using journal_type = null_journal<storage_type>;
    storage_type s{{1024, true, 21}};
    journal_type j{s};
    storage_type& storage() { return s; }
    journal_type& journal() { return j; }
    result<journal_type::handle> start() { return j.start(unlimited_credits); }
    errc finish(journal_type::handle& h, const tree_anchor&, const tree_anchor&, const tree_anchor&) {
        return j.stop(h);
    }
};

constexpr std::uint64_t root_ino = 2;
constexpr std::uint64_t space = 8192; // data blocks of the model filesystem

struct inode {
    bool dir = false;
    std::uint32_t gen = 1;
    std::map<std::uint64_t, std::uint64_t> blocks; // logical -> physical
};

using entry = std::tuple<std::uint64_t, std::uint64_t, std::string>; // child, parent, name

name_ref nr(const std::string& s) { return name_ref(s.data(), s.size()); }

// What the maps must hold, derived from the model.
struct expected_maps {
    std::vector<rmap_record> rmap;
    std::vector<refcount_record> refcount;
    std::set<entry> links;
};

// Compare three maps with what they must hold, and run every check: each
// verify(), the refcount cross-check against the rmap, parent generations.
template <class R, class C, class P>
void check_maps(R& rm, C& rc, P& pm, const expected_maps& want, const std::map<std::uint64_t, std::uint32_t>& gens) {
    const auto rv = rm.verify();
    JT_MODEL_REQUIRE(rv.clean());
    JT_MODEL_REQUIRE(rv.mergeable == 0);
    const auto cv = rc.verify();
    JT_MODEL_REQUIRE(cv.clean());
    JT_MODEL_REQUIRE(cv.mergeable == 0);
    JT_MODEL_REQUIRE(pm.verify().clean());
    std::vector<rmap_record> got;
    JT_MODEL_REQUIRE(rm.for_each([&](const rmap_record& r) {
        got.push_back(r);
        return true;
    }) == errc::ok);
    JT_MODEL_REQUIRE(got == want.rmap);
    std::vector<refcount_record> rgot;
    JT_MODEL_REQUIRE(rc.for_each([&](const refcount_record& r) {
        rgot.push_back(r);
        return true;
    }) == errc::ok);
    JT_MODEL_REQUIRE(rgot == want.refcount);
    // Cross-check: rmap data owners per block = refcount.
    std::vector<std::uint64_t> ends(256);
    auto src = rm.extents();
    auto bad = rc.cross_check(src, {ends.data(), ends.size()},
                              [](std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t) {});
    JT_MODEL_REQUIRE(bad);
    JT_MODEL_REQUIRE(*bad == 0);
    // Parent pointers = the directory entries, with the parents' generations.
    std::set<entry> pgot;
    JT_MODEL_REQUIRE(pm.tree().for_each([&](const parent_key& k, const parent_record& v) {
        auto g = gens.find(k.parent);
        JT_MODEL_REQUIRE(g != gens.end());
        JT_MODEL_REQUIRE(v.parent_gen == g->second);
        pgot.insert({k.child, k.parent, std::string(reinterpret_cast<const char*>(v.name), v.name_len)});
        return true;
    }) == errc::ok);
    JT_MODEL_REQUIRE(pgot == want.links);
    // The same through the map's own check against directory entries.
    auto dn = pm.cross_check(
        [&](auto&& visit) {
            for (const entry& l : want.links) {
                const std::string& nm = std::get<2>(l);
                if (!visit(std::get<0>(l), std::get<1>(l), gens.at(std::get<1>(l)), name_ref(nm.data(), nm.size())))
                    return;
            }
        },
        [&](std::uint64_t c, std::uint64_t p, name_ref n) {
            return want.links.count({c, p, std::string(reinterpret_cast<const char*>(n.data), n.size)}) != 0;
        },
        [](dirent_mismatch, std::uint64_t, std::uint64_t, name_ref) {});
    JT_MODEL_REQUIRE(dn);
    JT_MODEL_REQUIRE(*dn == 0);
}

template <class Backend>
class model_fs {
public:
    using S = typename Backend::storage_type;
    using J = typename Backend::journal_type;
    using rmap_t = rmap<S, J>;
    using rc_t = refcount_map<S, J>;
    using pm_t = parent_map<S, J>;

    explicit model_fs(Backend& backend) : be(backend) {
        auto r = rmap_t::create(be.storage(), be.journal(), 1);
        auto c = rc_t::create(be.storage(), be.journal(), 2);
        auto p = pm_t::create(be.storage(), be.journal(), 3);
        JT_MODEL_REQUIRE(r);
        JT_MODEL_REQUIRE(c);
        JT_MODEL_REQUIRE(p);
        rm.emplace(std::move(*r));
        rc.emplace(std::move(*c));
        pm.emplace(std::move(*p));
        inodes[root_ino].dir = true;
        used.assign(space, 0);
    }

    // ---- operations: each one handle ---------------------------------------------

    // A new file or directory named `name` in `parent`.
    std::uint64_t create(std::uint64_t parent, const std::string& name, bool dir) {
        const std::uint64_t ino = next_ino++;
        inodes[ino].dir = dir;
        inodes[ino].gen = static_cast<std::uint32_t>(ino * 7);
        op([&](auto& h) { JT_MODEL_REQUIRE(pm->add(h, ino, parent, inodes[parent].gen, nr(name)) == errc::ok); });
        links.insert({ino, parent, name});
        return ino;
    }
    void link_to(std::uint64_t ino, std::uint64_t parent, const std::string& name) {
        op([&](auto& h) { JT_MODEL_REQUIRE(pm->add(h, ino, parent, inodes[parent].gen, nr(name)) == errc::ok); });
        links.insert({ino, parent, name});
    }
    // Remove one link; the last link of a file deletes it (all its blocks).
    void unlink(const entry& l) {
        const std::uint64_t ino = std::get<0>(l), parent = std::get<1>(l);
        const std::string name = std::get<2>(l);
        op([&](auto& h) {
            JT_MODEL_REQUIRE(pm->remove(h, ino, parent, nr(name)) == errc::ok);
            links.erase(l);
            if (link_count(ino) == 0) {
                punch_in(h, ino, 0, ~0ull >> 1);
                inodes.erase(ino);
            }
        });
    }
    void rename(const entry& l, std::uint64_t new_parent, const std::string& new_name) {
        const std::uint64_t ino = std::get<0>(l), parent = std::get<1>(l);
        const std::string name = std::get<2>(l);
        if (links.count({ino, new_parent, new_name})) return;
        op([&](auto& h) {
            JT_MODEL_REQUIRE(pm->rename(h, ino, parent, nr(name), new_parent, inodes[new_parent].gen, nr(new_name)) ==
                    errc::ok);
        });
        links.erase(l);
        links.insert({ino, new_parent, new_name});
    }
    // Write [l, l+n): allocate holes, copy-on-write shared blocks, overwrite
    // the rest in place.
    void write(std::uint64_t ino, std::uint64_t l, std::uint64_t n) {
        op([&](auto& h) {
            auto& b = inodes[ino].blocks;
            for (std::uint64_t x = l; x < l + n;) {
                auto it = b.find(x);
                if (it != b.end() && share_count(it->second) == 1) { // private: in place
                    ++x;
                    continue;
                }
                // A run of holes and shared blocks: unmap the shared ones
                // (they lose this owner), then map fresh blocks.
                std::uint64_t e = x;
                while (e < l + n) {
                    auto jt = b.find(e);
                    if (jt != b.end() && share_count(jt->second) == 1) break;
                    ++e;
                }
                punch_in(h, ino, x, e - x);
                map_new(h, ino, x, e - x);
                x = e;
            }
        });
    }
    void punch(std::uint64_t ino, std::uint64_t l, std::uint64_t n) {
        op([&](auto& h) { punch_in(h, ino, l, n); });
    }
    void truncate(std::uint64_t ino, std::uint64_t size) {
        op([&](auto& h) { punch_in(h, ino, size, (~0ull >> 1) - size); });
    }
    // Can src [sl, sl+n) be reflinked to dst at dl? Anything but ranges
    // that overlap inside one file (FICLONERANGE refuses those too): a file
    // may map one block at several offsets, which the rmap keeps as
    // overlapping records of one owner.
    bool can_clone(std::uint64_t src, std::uint64_t sl, std::uint64_t dst, std::uint64_t dl, std::uint64_t n) {
        return !(src == dst && sl < dl + n && dl < sl + n);
    }
    // Reflink src [sl, sl+n) to dst at dl: dst's old blocks there go first.
    void clone(std::uint64_t src, std::uint64_t sl, std::uint64_t dst, std::uint64_t dl, std::uint64_t n) {
        JT_MODEL_REQUIRE(can_clone(src, sl, dst, dl, n));
        if (src == dst) ++self_clones;
        op([&](auto& h) {
            punch_in(h, dst, dl, n);
            std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs; // src logical -> physical
            for (auto it = inodes[src].blocks.lower_bound(sl); it != inodes[src].blocks.end() && it->first < sl + n; ++it)
                pairs.push_back(*it);
            for (std::size_t i = 0; i < pairs.size();) {
                std::size_t k = i + 1; // a run continuous in both
                while (k < pairs.size() && pairs[k].first == pairs[k - 1].first + 1 &&
                       pairs[k].second == pairs[k - 1].second + 1)
                    ++k;
                const std::uint64_t p = pairs[i].second, len = k - i, d = dl + (pairs[i].first - sl);
                JT_MODEL_REQUIRE(rm->map(h, p, len, dst, d, 0) == errc::ok);
                auto r = rc->adjust(h, p, len, +1);
                JT_MODEL_REQUIRE(r);
                JT_MODEL_REQUIRE(r->done);
                for (std::uint64_t q = 0; q < len; ++q) {
                    inodes[dst].blocks[d + q] = p + q;
                    ++used[p + q];
                }
                i = k;
            }
        });
    }

    // ---- checks ------------------------------------------------------------------------

    // What the maps must hold now.
    expected_maps expected() const {
        expected_maps w;
        for (auto& [ino, in] : inodes) {
            std::optional<rmap_record> cur;
            for (auto& [l, p] : in.blocks) {
                if (cur && cur->start + cur->length == p && cur->offset + cur->length == l) {
                    ++cur->length;
                    continue;
                }
                if (cur) w.rmap.push_back(*cur);
                cur = rmap_record{p, 1, ino, l, 0};
            }
            if (cur) w.rmap.push_back(*cur);
        }
        std::sort(w.rmap.begin(), w.rmap.end(), [](const rmap_record& a, const rmap_record& b) {
            return rmap_traits::compare(a.key(), b.key()) < 0;
        });
        for (std::uint64_t b = 0; b < space;) {
            if (used[b] < 2) {
                ++b;
                continue;
            }
            std::uint64_t e = b;
            while (e < space && used[e] == used[b]) ++e;
            w.refcount.push_back({b, static_cast<std::uint32_t>(e - b), used[b]});
            b = e;
        }
        w.links = links;
        return w;
    }
    std::map<std::uint64_t, std::uint32_t> generations() const {
        std::map<std::uint64_t, std::uint32_t> g;
        for (auto& [ino, in] : inodes) g[ino] = in.gen;
        return g;
    }
    void check_all() {
        check_maps(*rm, *rc, *pm, expected(), generations());
        JT_MODEL_REQUIRE(pm->size() == links.size());
        // Memory storage: the blocks in use are exactly the three maps' nodes
        // (on a volume, check_ownership does this block by block).
        if constexpr (requires(S& st) { st.blocks_in_use(); }) {
            std::uint64_t nodes = 0;
            JT_MODEL_REQUIRE(rm->tree().for_each_node([&](std::uint64_t, unsigned) { ++nodes; }) == errc::ok);
            JT_MODEL_REQUIRE(rc->tree().for_each_node([&](std::uint64_t, unsigned) { ++nodes; }) == errc::ok);
            JT_MODEL_REQUIRE(pm->tree().for_each_node([&](std::uint64_t, unsigned) { ++nodes; }) == errc::ok);
            JT_MODEL_REQUIRE(be.storage().blocks_in_use() == nodes);
        }
    }

    // ---- model queries -----------------------------------------------------------------

    std::uint64_t link_count(std::uint64_t ino) const {
        std::uint64_t n = 0;
        for (auto& l : links) n += std::get<0>(l) == ino;
        return n;
    }
    std::uint32_t share_count(std::uint64_t p) const { return used[p]; }
    bool name_taken(std::uint64_t parent, const std::string& name) const {
        for (auto& l : links)
            if (std::get<1>(l) == parent && std::get<2>(l) == name) return true;
        return false;
    }
    std::uint64_t free_blocks() const { return static_cast<std::uint64_t>(std::count(used.begin(), used.end(), 0u)); }

    // A handle that changes nothing but the anchors.
    void op_noop() {
        op([](auto&) {});
    }

    Backend& be;
    std::function<void()> before_op; // called right after each handle starts
    std::optional<rmap_t> rm;
    std::optional<rc_t> rc;
    std::optional<pm_t> pm;
    std::map<std::uint64_t, inode> inodes;
    std::set<entry> links;
    std::vector<std::uint32_t> used; // per physical block: owners (0 = free)
    std::uint64_t next_ino = 11, cursor = 0;
    std::uint64_t freed_by_report = 0;
    std::uint64_t self_clones = 0; // clones inside one file

private:
    template <class F>
    void op(F&& f) {
        auto h = be.start();
        JT_MODEL_REQUIRE(h);
        if (before_op) before_op();
        f(*h);
        JT_MODEL_REQUIRE(be.finish(*h, rm->anchor(), rc->anchor(), pm->anchor()) == errc::ok);
    }

    // Remove ino's blocks in [l, l+n): rmap unmap, refcount -1; the blocks
    // the refcount reports as dropped to 0 are freed, and they must be
    // exactly those the model's count says.
    template <class H>
    void punch_in(H& h, std::uint64_t ino, std::uint64_t l, std::uint64_t n) {
        auto& b = inodes[ino].blocks;
        std::vector<std::pair<std::uint64_t, std::uint64_t>> pairs;
        for (auto it = b.lower_bound(l); it != b.end() && it->first - l < n; ++it) pairs.push_back(*it);
        for (std::size_t i = 0; i < pairs.size();) {
            std::size_t k = i + 1;
            while (k < pairs.size() && pairs[k].first == pairs[k - 1].first + 1 &&
                   pairs[k].second == pairs[k - 1].second + 1)
                ++k;
            const std::uint64_t p = pairs[i].second, len = k - i;
            JT_MODEL_REQUIRE(rm->unmap(h, p, len, ino, pairs[i].first) == errc::ok);
            std::vector<std::uint64_t> freed;
            auto r = rc->adjust(h, p, len, -1, [&](std::uint64_t s0, std::uint64_t l0, std::uint32_t after) {
                if (after == 0)
                    for (std::uint64_t q = s0; q < s0 + l0; ++q) freed.push_back(q);
            });
            JT_MODEL_REQUIRE(r);
            JT_MODEL_REQUIRE(r->done);
            std::vector<std::uint64_t> want_freed;
            for (std::uint64_t q = p; q < p + len; ++q) {
                JT_MODEL_REQUIRE(used[q] >= 1);
                if (--used[q] == 0) want_freed.push_back(q);
            }
            JT_MODEL_REQUIRE(freed == want_freed);
            freed_by_report += freed.size();
            for (std::size_t q = i; q < k; ++q) b.erase(pairs[q].first);
            i = k;
        }
    }

    // Map n fresh blocks at logical l (next-fit runs of free blocks).
    template <class H>
    void map_new(H& h, std::uint64_t ino, std::uint64_t l, std::uint64_t n) {
        while (n) {
            std::uint64_t tries = 0;
            while (used[cursor] != 0) {
                cursor = (cursor + 1) % space;
                JT_MODEL_REQUIRE(++tries < space); // the model never fills up
            }
            std::uint64_t len = 0;
            while (len < n && cursor + len < space && used[cursor + len] == 0) ++len;
            JT_MODEL_REQUIRE(rm->map(h, cursor, len, ino, l, 0) == errc::ok);
            for (std::uint64_t q = 0; q < len; ++q) {
                used[cursor + q] = 1;
                inodes[ino].blocks[l + q] = cursor + q;
            }
            l += len;
            n -= len;
            cursor = (cursor + len) % space;
        }
    }
};

std::string random_name(std::mt19937_64& rng) {
    std::string s = "f";
    const std::size_t n = 1 + rng() % 12;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<char>('a' + rng() % 26);
    return s;
}

} // namespace jt_model
