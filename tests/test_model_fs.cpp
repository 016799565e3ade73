// A model filesystem drives all three maps: files and directories in memory
// (create, write/extend, punch, truncate, link, unlink, rename, reflink of a
// range, copy-on-write of shared blocks, delete), each filesystem operation
// in one journal handle changing rmap, refcount and parent pointers
// together. After every operation the maps equal what the model says and
// every cross-check is clean: rmap records = the model's mappings in
// canonical form, refcount = the model's sharing, the refcount cross_check
// against the rmap finds nothing, the blocks the refcount reports as freed
// are exactly the ones the model frees, parent pointers = the model's
// directory entries.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>

#include <map>
#include <optional>
#include <set>
#include <tuple>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;
using rmap_t = rmap<S, J>;
using rc_t = refcount_map<S, J>;
using pm_t = parent_map<S, J>;

constexpr std::uint64_t root_ino = 2;
constexpr std::uint64_t space = 20000; // data blocks of the model filesystem

struct inode {
    bool dir = false;
    std::uint32_t gen = 1;
    std::map<std::uint64_t, std::uint64_t> blocks; // logical -> physical
};

using entry = std::tuple<std::uint64_t, std::uint64_t, std::string>; // child, parent, name

name_ref nr(const std::string& s) { return name_ref(s.data(), s.size()); }

class model_fs {
public:
    model_fs() : s({1024, true, 21}), j(s) {
        auto r = rmap_t::create(s, j, 1);
        auto c = rc_t::create(s, j, 2);
        auto p = pm_t::create(s, j, 3);
        REQUIRE(r);
        REQUIRE(c);
        REQUIRE(p);
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
        op([&](auto& h) { REQUIRE(pm->add(h, ino, parent, inodes[parent].gen, nr(name)) == errc::ok); });
        links.insert({ino, parent, name});
        return ino;
    }
    void link_to(std::uint64_t ino, std::uint64_t parent, const std::string& name) {
        op([&](auto& h) { REQUIRE(pm->add(h, ino, parent, inodes[parent].gen, nr(name)) == errc::ok); });
        links.insert({ino, parent, name});
    }
    // Remove one link; the last link of a file deletes it (all its blocks).
    void unlink(const entry& l) {
        const auto [ino, parent, name] = l;
        op([&](auto& h) {
            REQUIRE(pm->remove(h, ino, parent, nr(name)) == errc::ok);
            links.erase(l);
            if (link_count(ino) == 0) {
                punch_in(h, ino, 0, ~0ull >> 1);
                inodes.erase(ino);
            }
        });
    }
    void rename(const entry& l, std::uint64_t new_parent, const std::string& new_name) {
        const auto [ino, parent, name] = l;
        if (links.count({ino, new_parent, new_name})) return;
        op([&](auto& h) {
            REQUIRE(pm->rename(h, ino, parent, nr(name), new_parent, inodes[new_parent].gen, nr(new_name)) ==
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
    // Can src [sl, sl+n) be reflinked to dst at dl? The rmap keeps one
    // record per (block, owner): a file owns a block at one logical offset
    // only, so the clone must not give dst a block it keeps elsewhere.
    bool can_clone(std::uint64_t src, std::uint64_t sl, std::uint64_t dst, std::uint64_t dl, std::uint64_t n) {
        if (src == dst && sl < dl + n && dl < sl + n) return false; // overlapping self-clone
        std::set<std::uint64_t> kept;
        for (auto& [l, p] : inodes[dst].blocks)
            if (l < dl || l >= dl + n) kept.insert(p);
        for (auto it = inodes[src].blocks.lower_bound(sl); it != inodes[src].blocks.end() && it->first < sl + n; ++it)
            if (kept.count(it->second)) return false; // (a self-clone of mapped blocks always is)
        return true;
    }
    // Reflink src [sl, sl+n) to dst at dl: dst's old blocks there go first.
    void clone(std::uint64_t src, std::uint64_t sl, std::uint64_t dst, std::uint64_t dl, std::uint64_t n) {
        REQUIRE(can_clone(src, sl, dst, dl, n));
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
                REQUIRE(rm->map(h, p, len, dst, d, 0) == errc::ok);
                auto r = rc->adjust(h, p, len, +1);
                REQUIRE(r);
                REQUIRE(r->done);
                for (std::uint64_t q = 0; q < len; ++q) {
                    inodes[dst].blocks[d + q] = p + q;
                    ++used[p + q];
                }
                i = k;
            }
        });
    }

    // ---- checks ------------------------------------------------------------------------

    void check_all() {
        // Each tree and each map's own rules.
        const auto rv = rm->verify();
        REQUIRE(rv.clean());
        REQUIRE(rv.mergeable == 0);
        const auto cv = rc->verify();
        REQUIRE(cv.clean());
        REQUIRE(cv.mergeable == 0);
        REQUIRE(pm->verify().clean());
        // rmap = the model's mappings, canonical.
        std::vector<rmap_record> want;
        for (auto& [ino, in] : inodes) {
            std::optional<rmap_record> cur;
            for (auto& [l, p] : in.blocks) {
                if (cur && cur->start + cur->length == p && cur->offset + cur->length == l) {
                    ++cur->length;
                    continue;
                }
                if (cur) want.push_back(*cur);
                cur = rmap_record{p, 1, ino, l, 0};
            }
            if (cur) want.push_back(*cur);
        }
        std::sort(want.begin(), want.end(),
                  [](const rmap_record& a, const rmap_record& b) { return rmap_traits::compare(a.key(), b.key()) < 0; });
        std::vector<rmap_record> got;
        REQUIRE(rm->for_each([&](const rmap_record& r) {
            got.push_back(r);
            return true;
        }) == errc::ok);
        REQUIRE(got == want);
        // refcount = the model's sharing, canonical.
        std::vector<refcount_record> rwant, rgot;
        for (std::uint64_t b = 0; b < space;) {
            if (used[b] < 2) {
                ++b;
                continue;
            }
            std::uint64_t e = b;
            while (e < space && used[e] == used[b]) ++e;
            rwant.push_back({b, static_cast<std::uint32_t>(e - b), used[b]});
            b = e;
        }
        REQUIRE(rc->for_each([&](const refcount_record& r) {
            rgot.push_back(r);
            return true;
        }) == errc::ok);
        REQUIRE(rgot == rwant);
        // Cross-check: rmap data owners per block = refcount.
        std::vector<std::uint64_t> ends(256);
        auto src = rm->extents();
        auto bad = rc->cross_check(src, {ends.data(), ends.size()},
                                   [](std::uint64_t, std::uint64_t, std::uint32_t, std::uint32_t) {});
        REQUIRE(bad);
        REQUIRE(*bad == 0);
        // Parent pointers = the directory entries.
        std::set<entry> pgot;
        for (auto& [ino, in] : inodes) {
            (void)in;
            REQUIRE(pm->parents_of(ino, [&](std::uint64_t parent, std::uint32_t gen, name_ref name) {
                REQUIRE(gen == inodes[parent].gen);
                pgot.insert({ino, parent, std::string(reinterpret_cast<const char*>(name.data), name.size)});
                return true;
            }) == errc::ok);
        }
        REQUIRE(pgot == links);
        REQUIRE(pm->size() == links.size());
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

    S s;
    J j;
    std::optional<rmap_t> rm;
    std::optional<rc_t> rc;
    std::optional<pm_t> pm;
    std::map<std::uint64_t, inode> inodes;
    std::set<entry> links;
    std::vector<std::uint32_t> used; // per physical block: owners (0 = free)
    std::uint64_t next_ino = 11, cursor = 0;
    std::uint64_t freed_by_report = 0;

private:
    template <class F>
    void op(F&& f) {
        auto h = j.start(unlimited_credits);
        REQUIRE(h);
        f(*h);
        REQUIRE(j.stop(*h) == errc::ok);
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
            REQUIRE(rm->unmap(h, p, len, ino, pairs[i].first) == errc::ok);
            std::vector<std::uint64_t> freed;
            auto r = rc->adjust(h, p, len, -1, [&](std::uint64_t s0, std::uint64_t l0, std::uint32_t after) {
                if (after == 0)
                    for (std::uint64_t q = s0; q < s0 + l0; ++q) freed.push_back(q);
            });
            REQUIRE(r);
            REQUIRE(r->done);
            std::vector<std::uint64_t> want_freed;
            for (std::uint64_t q = p; q < p + len; ++q) {
                REQUIRE(used[q] >= 1);
                if (--used[q] == 0) want_freed.push_back(q);
            }
            REQUIRE(freed == want_freed);
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
                REQUIRE(++tries < space); // the model never fills up
            }
            std::uint64_t len = 0;
            while (len < n && cursor + len < space && used[cursor + len] == 0) ++len;
            REQUIRE(rm->map(h, cursor, len, ino, l, 0) == errc::ok);
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

} // namespace

TEST_CASE("model filesystem: hand-written scenario (write, reflink, copy-on-write, punch, delete)") {
    model_fs fs;
    const std::uint64_t d = fs.create(root_ino, "d", true);
    const std::uint64_t a = fs.create(d, "a", false);
    fs.write(a, 0, 16);
    fs.check_all();
    const std::uint64_t b = fs.create(d, "b", false);
    fs.clone(a, 0, b, 0, 16); // b shares all 16 blocks
    fs.check_all();
    CHECK(fs.rc->size() == 1);
    CHECK(fs.rc->refcount_of(fs.inodes[a].blocks[3]).value() == 2);
    fs.write(b, 4, 2); // copy-on-write: b gets 2 new blocks, the old ones are a's alone
    fs.check_all();
    CHECK(fs.rc->size() == 2);
    CHECK(fs.inodes[b].blocks[4] != fs.inodes[a].blocks[4]);
    fs.link_to(b, root_ino, "b-again");
    fs.unlink({b, d, "b"}); // one link left: nothing freed
    fs.check_all();
    CHECK(fs.freed_by_report == 0);
    fs.unlink({b, root_ino, "b-again"}); // the last link: b's 2 private blocks go
    fs.check_all();
    CHECK(fs.freed_by_report == 2);
    CHECK(fs.rc->empty());
    fs.punch(a, 0, 8);
    fs.check_all();
    CHECK(fs.freed_by_report == 10);
    fs.rename({a, d, "a"}, root_ino, "moved");
    fs.check_all();
    fs.truncate(a, 0);
    fs.check_all();
    CHECK(fs.free_blocks() == space);
    CHECK(fs.rm->empty());
}

TEST_CASE("model filesystem: random operation sequences, every map checked after every operation") {
    for (std::uint64_t seed : {1u, 2u}) {
        CAPTURE(seed);
        model_fs fs;
        std::mt19937_64 rng(seed);
        std::vector<std::uint64_t> dirs{root_ino};
        std::size_t counts[9] = {};
        const int steps = 3000;
        for (int step = 0; step < steps; ++step) {
            CAPTURE(step);
            std::vector<std::uint64_t> files;
            for (auto& [ino, in] : fs.inodes)
                if (!in.dir) files.push_back(ino);
            auto pick_file = [&] { return files[rng() % files.size()]; };
            const unsigned op = static_cast<unsigned>(rng() % 100);
            if (op < 10 || files.size() < 3) {
                const bool dir = rng() % 5 == 0;
                const std::uint64_t p = dirs[rng() % dirs.size()];
                const std::string name = random_name(rng);
                if (fs.name_taken(p, name)) continue;
                const std::uint64_t ino = fs.create(p, name, dir);
                if (dir) dirs.push_back(ino);
                ++counts[0];
            } else if (op < 35) {
                fs.write(pick_file(), rng() % 200, 1 + rng() % 24);
                ++counts[1];
            } else if (op < 45) {
                fs.punch(pick_file(), rng() % 200, 1 + rng() % 30);
                ++counts[2];
            } else if (op < 50) {
                fs.truncate(pick_file(), rng() % 150);
                ++counts[3];
            } else if (op < 65) {
                const std::uint64_t s = pick_file(), t = pick_file();
                const std::uint64_t sl = rng() % 200, dl = rng() % 200, n = 1 + rng() % 40;
                if (!fs.can_clone(s, sl, t, dl, n)) continue;
                fs.clone(s, sl, t, dl, n);
                ++counts[4];
            } else if (op < 73) {
                const std::uint64_t f = pick_file(), p = dirs[rng() % dirs.size()];
                const std::string name = random_name(rng);
                if (fs.name_taken(p, name)) continue;
                fs.link_to(f, p, name);
                ++counts[5];
            } else if (op < 85) {
                // unlink a file's link (deletes it with its last link)
                const std::uint64_t f = pick_file();
                std::vector<entry> ls;
                for (auto& l : fs.links)
                    if (std::get<0>(l) == f) ls.push_back(l);
                if (ls.empty()) continue;
                fs.unlink(ls[rng() % ls.size()]);
                ++counts[6];
            } else {
                const std::uint64_t f = pick_file();
                std::vector<entry> ls;
                for (auto& l : fs.links)
                    if (std::get<0>(l) == f) ls.push_back(l);
                if (ls.empty()) continue;
                const std::uint64_t np = dirs[rng() % dirs.size()];
                const std::string nn = random_name(rng);
                if (fs.name_taken(np, nn)) continue;
                fs.rename(ls[rng() % ls.size()], np, nn);
                ++counts[7];
            }
            fs.check_all();
        }
        std::uint64_t blocks = space - fs.free_blocks();
        MESSAGE("seed " << seed << ": creates " << counts[0] << ", writes " << counts[1] << ", punches " << counts[2]
                        << ", truncates " << counts[3] << ", clones " << counts[4] << ", links " << counts[5]
                        << ", unlinks " << counts[6] << ", renames " << counts[7] << "; at the end " << fs.inodes.size()
                        << " inodes, " << blocks << " blocks in use, rmap " << fs.rm->size() << " records, refcount "
                        << fs.rc->size() << ", parent pointers " << fs.pm->size() << "; blocks freed by reports "
                        << fs.freed_by_report);
        CHECK(fs.rc->size() > 0);
        CHECK(fs.freed_by_report > 0);
    }
}
