// The parent pointer map (maps/parent_map.hpp) against a model: random
// add/remove/rename sequences with exact credits, every name length and byte,
// forced and real hash collisions, invalid names, paths_of on generated
// directory trees and on graphs with cycles, the on-disk record bytes, and a
// map on a jbd2 volume that survives reopening.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/volume/volume.hpp>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <tuple>

using namespace jt;

namespace {

using S = memory_storage<>;
using J = null_journal<S>;

// Every name hashes alike: each (child, parent) pair is one collision group.
struct one_hash {
    static std::uint32_t hash(const unsigned char*, std::size_t) noexcept { return 0x5EED5EEDu; }
};
// Four hash values: small groups mixing several names.
struct two_bit_hash {
    static std::uint32_t hash(const unsigned char* p, std::size_t n) noexcept { return crc32c(p, n) & 3u; }
};

template <class H = crc32c_name_hash>
using map_t = parent_map<S, J, H>;

name_ref nr(const std::string& s) { return name_ref(s.data(), s.size()); }
std::string str(name_ref n) { return std::string(reinterpret_cast<const char*>(n.data), n.size); }

// The 254 bytes a name may hold: 0x01..0xFF except '/'.
std::vector<unsigned char> allowed_bytes() {
    std::vector<unsigned char> v;
    for (unsigned b = 1; b <= 255; ++b)
        if (b != '/') v.push_back(static_cast<unsigned char>(b));
    return v;
}

std::string random_name(std::mt19937_64& rng, std::size_t len) {
    static const std::vector<unsigned char> ok = allowed_bytes();
    std::string s(len, 'x');
    for (auto& c : s) c = static_cast<char>(ok[rng() % ok.size()]);
    return s;
}
// Mostly short names, often medium, sometimes up to the 255-byte limit.
std::size_t random_len(std::mt19937_64& rng) {
    const unsigned r = static_cast<unsigned>(rng() % 10);
    if (r < 4) return 1 + rng() % 8;
    if (r < 7) return 9 + rng() % 32;
    return 41 + rng() % 215;
}

// The model: one entry per link, with its parent generation.
struct link_id {
    std::uint64_t child, parent;
    std::string name;
    auto operator<=>(const link_id&) const = default;
};
using model_t = std::map<link_id, std::uint32_t>;

// Everything the map holds, as the model would. Also checks that every key
// carries its name's hash.
template <class M>
model_t dump(M& m) {
    model_t out;
    bool hashes_ok = true;
    const errc e = m.tree().for_each([&](const parent_key& k, const parent_record& v) {
        if (k.hash != M::name_hash(v.name_view())) hashes_ok = false;
        out.emplace(link_id{k.child, k.parent, str(v.name_view())}, v.parent_gen);
        return true;
    });
    REQUIRE(e == errc::ok);
    REQUIRE(hashes_ok);
    return out;
}

std::string map_report_text(const parent_map_report& r) {
    std::string s = report_text(r.tree) + "; walk: " + describe(r.walk_error) + "; " +
                    std::to_string(r.problem_count) + " map problem(s)";
    for (std::uint32_t i = 0; i < r.kept(); ++i)
        s += std::string("; ") + describe(r.problems[i].kind) + " at child " + std::to_string(r.problems[i].key.child) +
             " parent " + std::to_string(r.problems[i].key.parent) + " index " + std::to_string(r.problems[i].key.index);
    return s;
}

#define CHECK_MAP_CLEAN(m)                                                                                             \
    do {                                                                                                               \
        const auto mrep_ = (m).verify();                                                                               \
        INFO(map_report_text(mrep_));                                                                                  \
        REQUIRE(mrep_.clean());                                                                                        \
    } while (0)

// Runs op in a handle of exactly `credits`; checks the credits used, and that
// a failed operation touched no block and changed nothing.
template <class M, class Op>
errc run(J& j, M& m, std::uint32_t credits, Op&& op) {
    auto h = j.start(credits);
    REQUIRE(h);
    const std::uint64_t g0 = m.tree().generation();
    const tree_anchor a0 = m.anchor();
    const errc e = op(*h);
    REQUIRE(h->used <= credits);
    if (e != errc::ok) {
        REQUIRE(h->used == 0);
        REQUIRE(m.tree().generation() == g0);
        REQUIRE(m.anchor() == a0);
    }
    REQUIRE(j.stop(*h) == errc::ok);
    return e;
}

// What the model says each operation returns (and does).
errc model_add(model_t& md, std::uint64_t c, std::uint64_t p, std::uint32_t g, const std::string& n) {
    return md.emplace(link_id{c, p, n}, g).second ? errc::ok : errc::exists;
}
errc model_remove(model_t& md, std::uint64_t c, std::uint64_t p, const std::string& n) {
    return md.erase(link_id{c, p, n}) ? errc::ok : errc::not_found;
}
errc model_rename(model_t& md, std::uint64_t c, std::uint64_t op, const std::string& on, std::uint64_t np,
                  std::uint32_t ng, const std::string& nn) {
    auto it = md.find(link_id{c, op, on});
    if (it == md.end()) return errc::not_found;
    if (op == np && on == nn) {
        it->second = ng;
        return errc::ok;
    }
    if (md.count(link_id{c, np, nn})) return errc::exists;
    md.erase(it);
    md.emplace(link_id{c, np, nn}, ng);
    return errc::ok;
}

// Invalid names: empty, 256 bytes, '/' or NUL anywhere, null data.
std::vector<std::string> invalid_names() {
    return {std::string(),
            std::string(256, 'a'),
            std::string("/"),
            std::string("a/b"),
            std::string("abc/"),
            std::string("\0", 1),
            std::string("a\0b", 3),
            std::string("ab\0", 3),
            std::string(254, 'x') + '/'};
}

struct diff_config {
    std::uint32_t block_size = 1024;
    int steps = 3000;
    int verify_every = 1;
    bool checksums = true;
    std::uint64_t seed = 1;
    std::uint64_t children = 40; // child inodes 1..children
    std::uint64_t parents = 8;   // parent inodes 1..parents
    std::size_t pool = 60;       // names to choose from (so links repeat)
};

template <class H>
void differential(const diff_config& cfg) {
    S s({cfg.block_size, cfg.checksums, 0xC0FFEEu});
    J j(s);
    auto mr = map_t<H>::create(s, j, 9);
    REQUIRE(mr);
    auto& m = *mr;
    model_t md;
    std::mt19937_64 rng(cfg.seed);
    std::vector<std::string> pool;
    pool.push_back(random_name(rng, 1));
    pool.push_back(random_name(rng, parent_name_max));
    while (pool.size() < cfg.pool) pool.push_back(random_name(rng, random_len(rng)));
    const std::vector<std::string> bad = invalid_names();

    auto any_name = [&]() { return rng() % 10 ? pool[rng() % pool.size()] : random_name(rng, random_len(rng)); };
    auto any_child = [&]() -> std::uint64_t { return 1 + rng() % cfg.children; };
    auto any_parent = [&]() -> std::uint64_t { return 1 + rng() % cfg.parents; };
    auto existing = [&]() -> link_id {
        auto it = md.begin();
        std::advance(it, static_cast<long>(rng() % md.size()));
        return it->first;
    };
    // Exact credits; now and then first with one credit less, which must
    // fail with no_credits and change nothing.
    auto exact = [&](std::uint32_t credits, auto&& op) {
        if (rng() % 8 == 0) REQUIRE(run(j, m, credits - 1, op) == errc::no_credits);
        return run(j, m, credits, op);
    };

    int counts[5] = {};
    for (int step = 0; step < cfg.steps; ++step) {
        CAPTURE(step);
        const int op = static_cast<int>(rng() % 100);
        if (op < 40) {
            const std::uint64_t c = any_child(), p = any_parent();
            const auto g = static_cast<std::uint32_t>(rng());
            const std::string n = any_name();
            const errc e = exact(m.add_credits(), [&](auto& h) { return m.add(h, c, p, g, nr(n)); });
            REQUIRE(e == model_add(md, c, p, g, n));
            ++counts[0];
        } else if (op < 58) {
            link_id l = !md.empty() && rng() % 10 < 7 ? existing() : link_id{any_child(), any_parent(), any_name()};
            const errc e = exact(m.remove_credits(), [&](auto& h) { return m.remove(h, l.child, l.parent, nr(l.name)); });
            REQUIRE(e == model_remove(md, l.child, l.parent, l.name));
            ++counts[1];
        } else if (op < 78) {
            link_id from = !md.empty() && rng() % 10 < 8 ? existing() : link_id{any_child(), any_parent(), any_name()};
            link_id to{from.child, from.parent, from.name};
            switch (rng() % 6) {
            case 0: to.name = any_name(); break;                        // same directory, new name
            case 1: to.parent = any_parent(); break;                    // other directory, same name
            case 2: to.parent = any_parent(); to.name = any_name(); break;
            case 3: break;                                              // onto itself: new generation
            case 4: {                                                   // onto another link of the child: exists
                auto it = md.lower_bound(link_id{from.child, 0, std::string()});
                if (it != md.end() && it->first.child == from.child) to = it->first;
                break;
            }
            default: to.name = random_name(rng, random_len(rng)); break;
            }
            const auto g = static_cast<std::uint32_t>(rng());
            const errc e = exact(m.rename_credits(), [&](auto& h) {
                return m.rename(h, from.child, from.parent, nr(from.name), to.parent, g, nr(to.name));
            });
            REQUIRE(e == model_rename(md, from.child, from.parent, from.name, to.parent, g, to.name));
            ++counts[2];
        } else if (op < 83) {
            // A bad name anywhere: errc::invalid, nothing changed, no block touched.
            const std::string& b = bad[rng() % bad.size()];
            const link_id l = !md.empty() ? existing() : link_id{1, 1, pool[0]};
            const int which = static_cast<int>(rng() % 5);
            const errc e = run(j, m, m.rename_credits(), [&](auto& h) {
                switch (which) {
                case 0: return m.add(h, l.child, l.parent, 1, nr(b));
                case 1: return m.remove(h, l.child, l.parent, nr(b));
                case 2: return m.rename(h, l.child, l.parent, nr(b), l.parent, 1, nr(l.name));
                case 3: return m.rename(h, l.child, l.parent, nr(l.name), l.parent, 1, nr(b));
                default: return m.add(h, l.child, l.parent, 1, name_ref(nullptr, 3));
                }
            });
            REQUIRE(e == errc::invalid);
            REQUIRE(m.find(l.child, l.parent, nr(b)).error() == errc::invalid);
            ++counts[3];
        } else if (op < 92) {
            link_id l = !md.empty() && rng() % 10 < 7 ? existing() : link_id{any_child(), any_parent(), any_name()};
            auto r = m.find(l.child, l.parent, nr(l.name));
            auto it = md.find(l);
            if (it == md.end()) REQUIRE(r.error() == errc::not_found);
            else {
                REQUIRE(r);
                REQUIRE(*r == it->second);
            }
        } else {
            // parents_of and link_count of one child against the model.
            const std::uint64_t c = any_child();
            std::vector<std::tuple<std::uint64_t, std::string, std::uint32_t>> got, want;
            REQUIRE(m.parents_of(c, [&](std::uint64_t p, std::uint32_t g, name_ref n) {
                got.emplace_back(p, str(n), g);
            }) == errc::ok);
            for (auto it = md.lower_bound(link_id{c, 0, std::string()}); it != md.end() && it->first.child == c; ++it)
                want.emplace_back(it->first.parent, it->first.name, it->second);
            // parents_of gives parents in ascending order (then by hash).
            REQUIRE(std::is_sorted(got.begin(), got.end(),
                                   [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); }));
            std::sort(got.begin(), got.end());
            REQUIRE(got == want);
            auto lc = m.link_count(c);
            REQUIRE(lc);
            REQUIRE(*lc == want.size());
            ++counts[4];
        }
        REQUIRE(m.size() == md.size());
        if (step % cfg.verify_every == 0) CHECK_MAP_CLEAN(m);
        if (step % 250 == 0) REQUIRE(dump(m) == md);
    }
    CHECK_MAP_CLEAN(m);
    REQUIRE(dump(m) == md);
    MESSAGE("block " << cfg.block_size << ": " << md.size() << " links at height " << m.tree().height() << "; adds "
                     << counts[0] << ", removes " << counts[1] << ", renames " << counts[2] << ", bad names "
                     << counts[3] << ", parents_of " << counts[4]);
    // Drain in random order: every block comes back.
    std::vector<link_id> all;
    for (auto& kv : md) all.push_back(kv.first);
    std::shuffle(all.begin(), all.end(), rng);
    for (std::size_t i = 0; i < all.size(); ++i) {
        const link_id& l = all[i];
        REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, l.child, l.parent, nr(l.name)); }) ==
                errc::ok);
        if (i % 97 == 0) CHECK_MAP_CLEAN(m);
    }
    REQUIRE(m.empty());
    REQUIRE(s.blocks_in_use() == 0);
}

// ---- paths: a model ---------------------------------------------------------------

struct event {
    path_kind kind;
    std::uint64_t top;
    std::uint32_t depth;
    std::string path;
    auto operator<=>(const event&) const = default;
};

// The walk paths_of documents, over the model's links.
void model_walk(const model_t& md, std::uint64_t root, std::uint32_t max_depth, std::vector<std::uint64_t>& chain,
                const std::string& below, std::vector<event>& out) {
    const std::uint64_t x = chain.back();
    const auto n = static_cast<std::uint32_t>(chain.size());
    auto it = md.lower_bound(link_id{x, 0, std::string()});
    if (it == md.end() || it->first.child != x) {
        out.push_back({path_kind::detached, x, n - 1, below});
        return;
    }
    for (; it != md.end() && it->first.child == x; ++it) {
        const std::uint64_t p = it->first.parent;
        const std::string s = "/" + it->first.name + below;
        if (p == root) out.push_back({path_kind::complete, root, n, s});
        else if (std::find(chain.begin(), chain.end(), p) != chain.end()) out.push_back({path_kind::cycle, p, n, s});
        else if (n >= max_depth) out.push_back({path_kind::too_deep, p, n, s});
        else {
            chain.push_back(p);
            model_walk(md, root, max_depth, chain, s, out);
            chain.pop_back();
        }
    }
}
std::vector<event> model_paths(const model_t& md, std::uint64_t child, std::uint64_t root, std::uint32_t max_depth) {
    std::vector<event> out;
    if (child == root) out.push_back({path_kind::complete, root, 0, "/"});
    else if (max_depth == 0) out.push_back({path_kind::too_deep, child, 0, ""});
    else {
        std::vector<std::uint64_t> chain{child};
        model_walk(md, root, max_depth, chain, "", out);
    }
    std::sort(out.begin(), out.end());
    return out;
}

template <class M>
std::vector<event> map_paths(M& m, std::uint64_t child, std::uint64_t root, std::uint32_t max_depth,
                             path_summary* sum = nullptr) {
    // One byte of offset: the buffer need not be aligned.
    std::vector<unsigned char> mem(M::path_buffer_size(max_depth) + 1);
    std::vector<event> out;
    auto r = m.paths_of(child, root, max_depth, mem.data() + 1, mem.size() - 1, [&](const path_event& e) {
        out.push_back({e.kind, e.top, e.depth, std::string(reinterpret_cast<const char*>(e.path), e.size)});
    });
    REQUIRE(r);
    REQUIRE(r->events() == out.size());
    REQUIRE(!r->stopped);
    if (sum) *sum = *r;
    std::sort(out.begin(), out.end());
    return out;
}

// Adds every link of md to m (exact credits each).
template <class M>
void load(J& j, M& m, const model_t& md) {
    for (auto& entry : md) { // not [l, g]: clang 14 cannot capture structured bindings
        auto& l = entry.first;
        auto& g = entry.second;
        REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, l.child, l.parent, g, nr(l.name)); }) ==
                errc::ok);
    }
}

} // namespace

// ---- tests ------------------------------------------------------------------------

TEST_CASE("node sizes: 1 KiB is the smallest that holds three 255-byte names") {
    for (std::uint32_t bs : {512u, 1024u, 4096u, 65536u}) {
        CAPTURE(bs);
        S s({bs});
        J j(s);
        auto m = map_t<>::create(s, j, 1);
        if (bs == 512) REQUIRE(m.error() == errc::invalid);
        else REQUIRE(m);
    }
    // The largest entry: slot 2 + value_len 2 + key 24 + gen 4 + name 255.
    REQUIRE(node_layout<parent_map_traits<>>::max_entry_units(true) == 287);
}

TEST_CASE("differential: 1 KiB nodes, CRC-32C names") {
    for (std::uint64_t seed = 1; seed <= 2; ++seed) {
        CAPTURE(seed);
        differential<crc32c_name_hash>({1024, 3000, 1, true, seed, 40, 8, 60});
    }
}

TEST_CASE("differential: 1 KiB nodes, every name of a pair in one hash group") {
    differential<one_hash>({1024, 2500, 1, true, 11, 12, 3, 40});
}

TEST_CASE("differential: 1 KiB nodes, four hash values") {
    differential<two_bit_hash>({1024, 2500, 1, false, 21, 30, 6, 50});
}

TEST_CASE("differential: 4 KiB nodes") {
    differential<crc32c_name_hash>({4096, 9000, 40, true, 31, 400, 40, 400});
    differential<one_hash>({4096, 4000, 20, false, 32, 20, 4, 120});
}

TEST_CASE("names of every length 1..255 and every byte but '/' and NUL") {
    const std::vector<unsigned char> ok = allowed_bytes();
    REQUIRE(ok.size() == 254);
    std::vector<std::string> names;
    for (std::size_t len = 1; len <= parent_name_max; ++len) {
        std::string n(len, 'x');
        for (std::size_t i = 0; i < len; ++i) n[i] = static_cast<char>(ok[(len * 7 + i) % ok.size()]);
        names.push_back(n);
    }
    // The longest one holds every allowed byte.
    REQUIRE(std::set<char>(names.back().begin(), names.back().end()).size() == 254);
    auto body = [&](auto tag, std::uint32_t bs) {
        using M = map_t<decltype(tag)>;
        S s({bs, true, 7});
        J j(s);
        auto mr = M::create(s, j, 2);
        REQUIRE(mr);
        auto& m = *mr;
        model_t md;
        for (std::size_t i = 0; i < names.size(); ++i) md.emplace(link_id{77, 2, names[i]}, static_cast<std::uint32_t>(i));
        for (std::size_t i = 0; i < names.size(); ++i) md.emplace(link_id{78, 3 + i % 5, names[i]}, 1000u);
        load(j, m, md);
        CHECK_MAP_CLEAN(m);
        REQUIRE(dump(m) == md);
        for (std::size_t i = 0; i < names.size(); ++i) {
            auto g = m.find(77, 2, nr(names[i]));
            REQUIRE(g);
            REQUIRE(*g == i);
        }
        std::multiset<std::string> seen;
        REQUIRE(m.parents_of(77, [&](std::uint64_t p, std::uint32_t, name_ref n) {
            CHECK(p == 2);
            seen.insert(str(n));
            return true;
        }) == errc::ok);
        REQUIRE(seen == std::multiset<std::string>(names.begin(), names.end()));
        // Rename every link of 77 to the next length's name in parent 9, then remove them.
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::string& to = names[(i + 1) % names.size()];
            REQUIRE(run(j, m, m.rename_credits(), [&](auto& h) {
                return m.rename(h, 77, 2, nr(names[i]), 9, 5, nr(to));
            }) == errc::ok);
            REQUIRE(model_rename(md, 77, 2, names[i], 9, 5, to) == errc::ok);
        }
        CHECK_MAP_CLEAN(m);
        REQUIRE(dump(m) == md);
        for (auto& n : names)
            REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 77, 9, nr(n)); }) == errc::ok);
        REQUIRE(m.link_count(77).value() == 0);
        REQUIRE(m.link_count(78).value() == names.size());
        CHECK_MAP_CLEAN(m);
    };
    for (std::uint32_t bs : {1024u, 4096u}) {
        CAPTURE(bs);
        body(crc32c_name_hash{}, bs);
        body(one_hash{}, bs);
    }
}

TEST_CASE("forced collisions: indexes, smallest free index, lookups compare names") {
    S s({1024});
    J j(s);
    auto mr = map_t<one_hash>::create(s, j, 3);
    REQUIRE(mr);
    auto& m = *mr;
    auto add = [&](const char* n, std::uint32_t g) {
        return run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 10, 2, g, name_ref(n, std::strlen(n))); });
    };
    auto keys = [&]() {
        std::vector<std::pair<std::uint32_t, std::string>> v;
        REQUIRE(m.tree().for_each([&](const parent_key& k, const parent_record& r) {
            CHECK(k.child == 10);
            CHECK(k.parent == 2);
            CHECK(k.hash == 0x5EED5EEDu);
            v.emplace_back(k.index, str(r.name_view()));
            return true;
        }) == errc::ok);
        return v;
    };
    using kv = std::vector<std::pair<std::uint32_t, std::string>>;
    REQUIRE(add("a", 1) == errc::ok);
    REQUIRE(add("b", 2) == errc::ok);
    REQUIRE(add("c", 3) == errc::ok);
    REQUIRE(keys() == kv{{0, "a"}, {1, "b"}, {2, "c"}});
    REQUIRE(add("b", 9) == errc::exists); // same link, other generation
    REQUIRE(m.find(10, 2, "b").value() == 2);
    REQUIRE(m.find(10, 2, "bb").error() == errc::not_found);
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 10, 2, "b"); }) == errc::ok);
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 10, 2, "b"); }) == errc::not_found);
    REQUIRE(add("d", 4) == errc::ok); // takes the freed index 1
    REQUIRE(keys() == kv{{0, "a"}, {1, "d"}, {2, "c"}});
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 10, 2, "a"); }) == errc::ok);
    // Rename within the group: the new name takes index 0 while "c" still holds 2.
    REQUIRE(run(j, m, m.rename_credits(), [&](auto& h) { return m.rename(h, 10, 2, "c", 2, 7, "e"); }) == errc::ok);
    REQUIRE(keys() == kv{{0, "e"}, {1, "d"}});
    REQUIRE(m.find(10, 2, "e").value() == 7);
    REQUIRE(m.find(10, 2, "c").error() == errc::not_found);
    // Onto an existing name of the same child: exists, nothing changed.
    REQUIRE(run(j, m, m.rename_credits(), [&](auto& h) { return m.rename(h, 10, 2, "e", 2, 7, "d"); }) ==
            errc::exists);
    // Onto itself: only the generation changes, the index stays.
    REQUIRE(run(j, m, m.rename_credits(), [&](auto& h) { return m.rename(h, 10, 2, "d", 2, 8, "d"); }) == errc::ok);
    REQUIRE(keys() == kv{{0, "e"}, {1, "d"}});
    REQUIRE(m.find(10, 2, "d").value() == 8);
    // The same name under another parent is another record (another group).
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 10, 3, 1, "d"); }) == errc::ok);
    REQUIRE(m.size() == 3);
    CHECK_MAP_CLEAN(m);
}

TEST_CASE("bulk load with number_collisions: every name found, as after adds") {
    // Links of a few (child, parent) pairs, all in one hash group each.
    struct link {
        parent_key k;
        std::string name;
    };
    std::vector<link> v;
    for (std::uint64_t c = 10; c < 13; ++c)
        for (std::uint64_t p = 2; p < 4; ++p)
            for (const char* n : {"x", "yy", "z", "w"}) v.push_back({parent_key{c, p, 0x5EED5EEDu, 0}, n});
    std::sort(v.begin(), v.end(), [](const link& a, const link& b) {
        const int c = parent_map_traits<>::compare(a.k, b.k);
        return c != 0 ? c < 0 : a.name < b.name;
    });
    map_t<one_hash>::number_collisions(v.begin(), v.end(), [](link& l) -> parent_key& { return l.k; });
    CHECK(v[0].k.index == 0);
    CHECK(v[3].k.index == 3);
    CHECK(v[4].k.index == 0); // the next (child, parent) starts again
    S s({1024});
    J j(s);
    auto mr = map_t<one_hash>::create(s, j, 3);
    REQUIRE(mr);
    auto h = j.start(unlimited_credits);
    REQUIRE(h);
    std::size_t i = 0;
    REQUIRE(mr->tree().bulk_load(*h, v.size(), [&](parent_key& k, parent_record& r) {
        k = v[i].k;
        r.parent_gen = 1;
        r.name_len = static_cast<std::uint16_t>(v[i].name.size());
        std::memcpy(r.name, v[i].name.data(), r.name_len);
        ++i;
        return true;
    }) == errc::ok);
    CHECK_MAP_CLEAN(*mr);
    for (const link& l : v) CHECK(mr->find(l.k.child, l.k.parent, nr(l.name)).value() == 1u);
    // And the map goes on as if the links had been added one by one.
    CHECK(run(j, *mr, mr->add_credits(), [&](auto& hh) { return mr->add(hh, 10, 2, 1, "z"); }) == errc::exists);
    REQUIRE(run(j, *mr, mr->add_credits(), [&](auto& hh) { return mr->add(hh, 10, 2, 1, "v"); }) == errc::ok);
    CHECK_MAP_CLEAN(*mr);
}

TEST_CASE("a real CRC-32C collision between two names") {
    // Two names with the same CRC-32C, found once by a search over the names
    // "n%05x" (CRC-32C is linear, so sequential names collide late: the
    // search needed 33.5 million tries, too slow to repeat here under ASan).
    // The test recomputes both checksums, so a wrong pair fails.
    const std::string a = "n1371838", b = "n2000402";
    REQUIRE(a != b);
    REQUIRE(crc32c(a.data(), a.size()) == crc32c(b.data(), b.size()));
    MESSAGE("crc32c(\"" << a << "\") == crc32c(\"" << b << "\") == 0x" << std::hex << crc32c(a.data(), a.size()));
    S s({4096});
    J j(s);
    auto mr = map_t<>::create(s, j, 4);
    REQUIRE(mr);
    auto& m = *mr;
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 12, 2, 1, nr(a)); }) == errc::ok);
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 12, 2, 2, nr(b)); }) == errc::ok);
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 12, 2, 3, nr(b)); }) == errc::exists);
    std::vector<std::uint32_t> idx;
    REQUIRE(m.tree().for_each([&](const parent_key& k, const parent_record&) {
        idx.push_back(k.index);
        return true;
    }) == errc::ok);
    REQUIRE(idx == std::vector<std::uint32_t>{0, 1});
    REQUIRE(m.find(12, 2, nr(a)).value() == 1);
    REQUIRE(m.find(12, 2, nr(b)).value() == 2);
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 12, 2, nr(a)); }) == errc::ok);
    REQUIRE(m.find(12, 2, nr(a)).error() == errc::not_found);
    REQUIRE(m.find(12, 2, nr(b)).value() == 2);
    CHECK_MAP_CLEAN(m);
}

TEST_CASE("invalid names are refused before anything else, and change nothing") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 5);
    REQUIRE(mr);
    auto& m = *mr;
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 5, 2, 1, "ok"); }) == errc::ok);
    const std::uint64_t g0 = m.tree().generation();
    for (const std::string& b : invalid_names()) {
        CAPTURE(b.size());
        REQUIRE(!map_t<>::valid_name(nr(b)));
        // Even a handle with no credits to spare answers invalid, not no_credits.
        REQUIRE(run(j, m, 1, [&](auto& h) { return m.add(h, 5, 2, 1, nr(b)); }) == errc::invalid);
        REQUIRE(run(j, m, 1, [&](auto& h) { return m.remove(h, 5, 2, nr(b)); }) == errc::invalid);
        REQUIRE(run(j, m, 1, [&](auto& h) { return m.rename(h, 5, 2, "ok", 3, 1, nr(b)); }) == errc::invalid);
        REQUIRE(run(j, m, 1, [&](auto& h) { return m.rename(h, 5, 2, nr(b), 3, 1, "ok"); }) == errc::invalid);
        REQUIRE(m.find(5, 2, nr(b)).error() == errc::invalid);
    }
    REQUIRE(!map_t<>::valid_name(name_ref(nullptr, 1)));
    REQUIRE(map_t<>::valid_name(name_ref("\xff\x01.", 3)));
    REQUIRE(m.tree().generation() == g0);
    REQUIRE(m.size() == 1);
    REQUIRE(m.find(5, 2, "ok").value() == 1);
}

TEST_CASE("credits: exact figures are enough, one less changes nothing") {
    S s({1024, true, 3});
    J j(s);
    auto mr = map_t<>::create(s, j, 6);
    REQUIRE(mr);
    auto& m = *mr;
    std::mt19937_64 rng(99);
    model_t md;
    unsigned last_height = 0;
    int checked_heights = 0;
    // Grow the tree; at every new height check each operation both ways.
    for (int i = 0; i < 8000 && m.tree().height() < 4; ++i) {
        const std::string n = random_name(rng, 128 + rng() % 128);
        const std::uint64_t c = 1 + rng() % 500, p = 1 + rng() % 20;
        REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, c, p, 1, nr(n)); }) ==
                model_add(md, c, p, 1, n));
        if (m.tree().height() == last_height) continue;
        last_height = m.tree().height();
        ++checked_heights;
        const unsigned hh = last_height;
        REQUIRE(m.add_credits() == 2 * hh + 2);
        REQUIRE(m.remove_credits() == 2 * hh + 1);
        REQUIRE(m.rename_credits() == 4 * hh + 5);
        const link_id l = md.begin()->first;
        const std::string fresh = "fresh-" + std::to_string(i);
        // add
        REQUIRE(run(j, m, m.add_credits() - 1, [&](auto& h) { return m.add(h, 1, 1, 1, nr(fresh)); }) ==
                errc::no_credits);
        REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 1, 1, 1, nr(fresh)); }) == errc::ok);
        md.emplace(link_id{1, 1, fresh}, 1);
        // rename
        REQUIRE(run(j, m, m.rename_credits() - 1, [&](auto& h) {
            return m.rename(h, l.child, l.parent, nr(l.name), 999, 2, nr(fresh));
        }) == errc::no_credits);
        REQUIRE(run(j, m, m.rename_credits(), [&](auto& h) {
            return m.rename(h, l.child, l.parent, nr(l.name), 999, 2, nr(fresh));
        }) == errc::ok);
        REQUIRE(model_rename(md, l.child, l.parent, l.name, 999, 2, fresh) == errc::ok);
        // remove
        REQUIRE(run(j, m, m.remove_credits() - 1, [&](auto& h) { return m.remove(h, 1, 1, nr(fresh)); }) ==
                errc::no_credits);
        REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 1, 1, nr(fresh)); }) == errc::ok);
        md.erase(link_id{1, 1, fresh});
        // A missing link with too few credits: no_credits comes first.
        REQUIRE(run(j, m, m.remove_credits() - 1, [&](auto& h) { return m.remove(h, 1, 1, "absent"); }) ==
                errc::no_credits);
        CHECK_MAP_CLEAN(m);
    }
    REQUIRE(checked_heights >= 4);
    REQUIRE(dump(m) == md);
}

TEST_CASE("rename: the worst case fits its credits when the insert grows the tree") {
    // Many renames whose new record lands in a full leaf of a tree about to
    // grow: the insert may raise the height before the erase runs.
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 7);
    REQUIRE(mr);
    auto& m = *mr;
    model_t md;
    std::mt19937_64 rng(5);
    std::uint32_t most = 0;
    int grew = 0;
    for (int i = 0; i < 3000; ++i) {
        const std::string n = random_name(rng, 200 + rng() % 56);
        REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, i, 1, 1, nr(n)); }) == errc::ok);
        md.emplace(link_id{static_cast<std::uint64_t>(i), 1, n}, 1);
        const std::string to = random_name(rng, 200 + rng() % 56);
        const unsigned h0 = m.tree().height();
        const std::uint32_t credits = m.rename_credits();
        REQUIRE(credits == 4 * h0 + 5);
        auto h = j.start(credits);
        REQUIRE(h);
        REQUIRE(m.rename(*h, i, 1, nr(n), 2, 3, nr(to)) == errc::ok);
        REQUIRE(h->used <= credits);
        most = std::max(most, h->used);
        if (m.tree().height() > h0) ++grew;
        REQUIRE(j.stop(*h) == errc::ok);
        REQUIRE(model_rename(md, i, 1, n, 2, 3, to) == errc::ok);
    }
    CHECK_MAP_CLEAN(m);
    REQUIRE(dump(m) == md);
    CHECK(grew >= 2); // some renames did raise the tree
    MESSAGE("most credits one rename used: " << most << " (final height " << m.tree().height() << ", grown by a rename "
                                             << grew << " times)");
}

TEST_CASE("the record on disk, byte by byte") {
    S s({1024, true, 0x1234});
    J j(s);
    auto mr = map_t<>::create(s, j, 5);
    REQUIRE(mr);
    auto& m = *mr;
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) {
        return m.add(h, 0x0102030405060708ull, 0x1112131415161718ull, 0xA1B2C3D4u, "abc");
    }) == errc::ok);
    REQUIRE(crc32c("abc", 3) == 0x364B3FB7u);
    auto b = s.read(m.anchor().root);
    REQUIRE(b);
    const unsigned char* n = b->data();
    const std::vector<unsigned char> magic(n, n + 4);
    REQUIRE(magic == std::vector<unsigned char>{0x31, 0x50, 0x42, 0x4A}); // "1PBJ": le32 0x4A425031
    REQUIRE(load_le<std::uint32_t>(n + 40) == 5);                             // tree id
    REQUIRE(load_le<std::uint32_t>(n + 44) == 1);                             // count
    REQUIRE(load_le<std::uint16_t>(n + 48) == 0);                             // level
    REQUIRE(load_le<std::uint16_t>(n + 50) == node_flag_slotted);             // flags
    REQUIRE(load_le<std::uint16_t>(n + 52) == 24);                            // key size
    REQUIRE(load_le<std::uint16_t>(n + 54) == 0);                             // payload size
    const std::uint32_t rec = 1024 - (2 + 24 + 4 + 3);
    REQUIRE(load_le<std::uint32_t>(n + 56) == rec); // data_start
    REQUIRE(load_le<std::uint16_t>(n + 64) == rec); // slot 0
    const std::vector<unsigned char> bytes(n + rec, n + 1024);
    const std::vector<unsigned char> want = {
        0x07, 0x00,                                     // value_len = 4 + 3
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // child
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // parent
        0xB7, 0x3F, 0x4B, 0x36,                         // crc32c("abc")
        0x00, 0x00, 0x00, 0x00,                         // collision index
        0xD4, 0xC3, 0xB2, 0xA1,                         // parent generation
        'a',  'b',  'c'};
    REQUIRE(bytes == want);
    CHECK_MAP_CLEAN(m);
}

TEST_CASE("verify: wrong hashes, duplicate names and bad names in records") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 8);
    REQUIRE(mr);
    auto& m = *mr;
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 5, 2, 1, "dup"); }) == errc::ok);
    CHECK_MAP_CLEAN(m);
    auto raw = [&](parent_key k, const char* name) {
        parent_record r;
        r.parent_gen = 1;
        r.name_len = static_cast<std::uint16_t>(std::strlen(name));
        std::memcpy(r.name, name, r.name_len);
        auto h = j.start(m.tree().insert_credits());
        REQUIRE(h);
        REQUIRE(m.tree().insert(*h, k, r) == errc::ok);
        REQUIRE(j.stop(*h) == errc::ok);
    };
    const std::uint32_t hd = crc32c("dup", 3);
    raw(parent_key{5, 2, hd, 1}, "dup"); // the same name again, under index 1
    auto r1 = m.verify();
    CHECK(r1.tree.clean());
    CHECK(r1.has(parent_problem_kind::duplicate_name));
    CHECK(r1.problem_count == 1);
    CHECK(r1.problems[0].key == parent_key{5, 2, hd, 1});
    raw(parent_key{6, 2, 12345, 0}, "x"); // a key hash that is not the name's
    // The traits refuse such a record (valid_record): the tree walk reports
    // it as a record the traits reject (read from a device, its leaf would
    // be refused as damaged; tests/test_damage.cpp changes names on disk).
    auto r2 = m.verify();
    CHECK(r2.tree.has(problem_kind::bad_value));
    CHECK(!r2.clean());
    // A stored name with '/' does not decode: the engine reports it, lookups say corrupted.
    raw(parent_key{7, 2, crc32c("a/b", 3), 0}, "a/b");
    auto r3 = m.verify();
    CHECK(r3.tree.has(problem_kind::bad_value));
    CHECK(m.parents_of(7, [](std::uint64_t, std::uint32_t, name_ref) {}) == errc::corrupted);
}

// ---- paths ------------------------------------------------------------------------------

TEST_CASE("paths_of on generated directory trees with hard links") {
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        CAPTURE(seed);
        std::mt19937_64 rng(seed);
        const std::uint64_t root = 2;
        model_t md;
        std::vector<std::uint64_t> dirs{root};
        // Directories: each under an earlier one; some get a second parent
        // (not normal, but the map must not assume one parent).
        for (std::uint64_t d = 100; d < 160; ++d) {
            const std::uint64_t p = dirs[rng() % dirs.size()];
            md.emplace(link_id{d, p, random_name(rng, random_len(rng))}, 1);
            if (rng() % 8 == 0) {
                const std::uint64_t q = dirs[rng() % dirs.size()];
                md.emplace(link_id{d, q, random_name(rng, 1 + rng() % 12)}, 1);
            }
            dirs.push_back(d);
        }
        // Files with 1..4 hard links, sometimes two in one directory.
        std::vector<std::uint64_t> files;
        for (std::uint64_t f = 1000; f < 1200; ++f) {
            const int links = 1 + static_cast<int>(rng() % 4);
            const std::uint64_t first = dirs[rng() % dirs.size()];
            for (int k = 0; k < links; ++k) {
                const std::uint64_t p = rng() % 3 == 0 ? first : dirs[rng() % dirs.size()];
                md.emplace(link_id{f, p, random_name(rng, random_len(rng))}, 1);
            }
            files.push_back(f);
        }
        files.push_back(5000); // an unlinked inode
        for (std::uint32_t bs : {1024u, 4096u}) {
            CAPTURE(bs);
            S s({bs});
            J j(s);
            auto mr = map_t<>::create(s, j, 10);
            REQUIRE(mr);
            auto& m = *mr;
            load(j, m, md);
            CHECK_MAP_CLEAN(m);
            std::size_t complete = 0;
            for (const auto& set : {dirs, files}) {
                for (std::uint64_t x : set) {
                    CAPTURE(x);
                    path_summary sum;
                    const auto got = map_paths(m, x, root, 64, &sum);
                    const auto want = model_paths(md, x, root, 64);
                    REQUIRE(got == want);
                    REQUIRE(sum.cycles == 0);
                    REQUIRE(sum.too_deep == 0);
                    REQUIRE(sum.detached == (x == 5000 ? 1u : 0u));
                    complete += sum.complete;
                    // A shallow bound: the same walks, cut at 3 components.
                    REQUIRE(map_paths(m, x, root, 3) == model_paths(md, x, root, 3));
                }
            }
            MESSAGE("seed " << seed << ": " << md.size() << " links, " << complete << " complete paths");
        }
    }
}

TEST_CASE("paths_of on random graphs with cycles, self links and detached inodes") {
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        CAPTURE(seed);
        std::mt19937_64 rng(seed);
        const std::uint64_t nodes = 4 + rng() % 9;
        model_t md;
        const int links = static_cast<int>(nodes + rng() % (2 * nodes));
        for (int i = 0; i < links; ++i)
            md.emplace(link_id{1 + rng() % nodes, 1 + rng() % nodes, random_name(rng, 1 + rng() % 20)}, 1);
        S s({1024});
        J j(s);
        auto mr = map_t<two_bit_hash>::create(s, j, 11);
        REQUIRE(mr);
        auto& m = *mr;
        load(j, m, md);
        for (std::uint32_t depth : {0u, 1u, 2u, 4u, 7u})
            for (std::uint64_t x = 1; x <= nodes + 1; ++x) {
                CAPTURE(depth);
                CAPTURE(x);
                REQUIRE(map_paths(m, x, 1, depth) == model_paths(md, x, 1, depth));
            }
    }
}

TEST_CASE("paths_of: depth bound on a deep chain") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 12);
    REQUIRE(mr);
    auto& m = *mr;
    // root 2 -> d1 -> d2 -> ... -> d20 -> file 500
    model_t md;
    for (std::uint64_t d = 1; d <= 20; ++d) md.emplace(link_id{100 + d, d == 1 ? 2 : 99 + d, "d" + std::to_string(d)}, 1);
    md.emplace(link_id{500, 120, "file"}, 1);
    load(j, m, md);
    std::string full;
    for (int d = 1; d <= 20; ++d) full += "/d" + std::to_string(d);
    full += "/file";
    auto deep = map_paths(m, 500, 2, 21);
    REQUIRE(deep.size() == 1);
    CHECK(deep[0].kind == path_kind::complete);
    CHECK(deep[0].depth == 21);
    CHECK(deep[0].path == full);
    auto cut = map_paths(m, 500, 2, 20);
    REQUIRE(cut.size() == 1);
    CHECK(cut[0].kind == path_kind::too_deep);
    CHECK(cut[0].depth == 20);
    CHECK(cut[0].top == 101); // d1 was not expanded
    CHECK(cut[0].path == full.substr(3)); // "/d2/.../file"
    auto none = map_paths(m, 500, 2, 0);
    REQUIRE(none == std::vector<event>{{path_kind::too_deep, 500, 0, ""}});
    REQUIRE(map_paths(m, 2, 2, 0) == std::vector<event>{{path_kind::complete, 2, 0, "/"}});
}

TEST_CASE("paths_of: a deliberate cycle is reported once per walk and never looped on") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 13);
    REQUIRE(mr);
    auto& m = *mr;
    // root 2 -> a(10) -> b(11) -> c(12) -> f(13); then a is also linked under c.
    model_t md{{{10, 2, "a"}, 1}, {{11, 10, "b"}, 1}, {{12, 11, "c"}, 1}, {{13, 12, "f"}, 1}};
    load(j, m, md);
    REQUIRE(map_paths(m, 13, 2, 100) == std::vector<event>{{path_kind::complete, 2, 4, "/a/b/c/f"}});
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 10, 12, 1, "loop"); }) == errc::ok);
    md.emplace(link_id{10, 12, "loop"}, 1);
    path_summary sum;
    const auto got = map_paths(m, 13, 2, 100, &sum);
    // f <- c <- b <- a, and a <- root (complete) or a <- c (c is on the walk).
    const std::vector<event> want = {{path_kind::complete, 2, 4, "/a/b/c/f"}, {path_kind::cycle, 12, 4, "/loop/b/c/f"}};
    REQUIRE(got == want);
    REQUIRE(got == model_paths(md, 13, 2, 100));
    CHECK(sum.complete == 1);
    CHECK(sum.cycles == 1);
    // A self link, and a ring that never reaches the root.
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 30, 30, 1, "self"); }) == errc::ok);
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 40, 41, 1, "x"); }) == errc::ok);
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 41, 40, 1, "y"); }) == errc::ok);
    REQUIRE(map_paths(m, 30, 2, 100) == std::vector<event>{{path_kind::cycle, 30, 1, "/self"}});
    REQUIRE(map_paths(m, 40, 2, 100) == std::vector<event>{{path_kind::cycle, 40, 2, "/y/x"}});
    // Removing the loop link removes the cycle.
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, 10, 12, "loop"); }) == errc::ok);
    REQUIRE(map_paths(m, 13, 2, 100) == std::vector<event>{{path_kind::complete, 2, 4, "/a/b/c/f"}});
    // Detached: a directory with no parent pointer.
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 50, 51, 1, "orphan"); }) == errc::ok);
    REQUIRE(map_paths(m, 50, 2, 100) == std::vector<event>{{path_kind::detached, 51, 1, "/orphan"}});
    REQUIRE(map_paths(m, 52, 2, 100) == std::vector<event>{{path_kind::detached, 52, 0, ""}});
}

TEST_CASE("paths_of: buffer size, early stop, and a callback that changes the map") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 14);
    REQUIRE(mr);
    auto& m = *mr;
    using M = map_t<>;
    // root 2 -> a(10) -> b(11)
    model_t md{{{10, 2, "a"}, 1}, {{11, 10, "b"}, 1}};
    load(j, m, md);
    const std::size_t F = M::path_frame_size;
    auto try_size = [&](std::size_t n) {
        std::vector<unsigned char> mem(n + 3);
        std::string got;
        auto r = m.paths_of(11, 2, 10, mem.data() + 3, n, [&](const path_event& e) {
            got.assign(reinterpret_cast<const char*>(e.path), e.size);
            return true;
        });
        return std::make_pair(r ? errc::ok : r.error(), got);
    };
    // Two frames and "/a/b": exactly enough, one byte less is errc::range.
    REQUIRE(try_size(2 * F + 4) == std::make_pair(errc::ok, std::string("/a/b")));
    REQUIRE(try_size(2 * F + 3).first == errc::range);
    REQUIRE(try_size(0).first == errc::range);
    REQUIRE(M::path_buffer_size(2) >= 2 * F + 4);
    {
        unsigned char one;
        auto r = m.paths_of(2, 2, 5, &one, 1, [](const path_event& e) { CHECK(e.size == 1); });
        REQUIRE(r);
        REQUIRE(m.paths_of(2, 2, 5, nullptr, 0, [](const path_event&) {}).error() == errc::range);
    }
    // Many paths: a file with 6 links, stopped after the second.
    for (int k = 0; k < 6; ++k)
        REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, 20, 11, 1, nr("f" + std::to_string(k))); }) ==
                errc::ok);
    std::vector<unsigned char> mem(M::path_buffer_size(8));
    int calls = 0;
    auto r = m.paths_of(20, 2, 8, mem.data(), mem.size(), [&](const path_event&) { return ++calls < 2; });
    REQUIRE(r);
    CHECK(calls == 2);
    CHECK(r->stopped);
    CHECK(r->complete == 2);
    // A callback that changes the map ends the walk with errc::invalid.
    auto r2 = m.paths_of(20, 2, 8, mem.data(), mem.size(), [&](const path_event&) {
        auto h = j.start(m.add_credits());
        CHECK(h);
        CHECK(m.add(*h, 21, 11, 1, "new") == errc::ok);
        CHECK(j.stop(*h) == errc::ok);
    });
    CHECK(r2.error() == errc::invalid);
    CHECK(m.parents_of(20, [&](std::uint64_t, std::uint32_t, name_ref) {
        auto h = j.start(m.add_credits());
        CHECK(h);
        CHECK(m.add(*h, 22, 11, 1, "new") == errc::ok);
        CHECK(j.stop(*h) == errc::ok);
    }) == errc::invalid);
}

// ---- on a volume (jbd2 journal) ---------------------------------------------------------

TEST_CASE("a parent map on a jbd2 volume: commits, reopens, verifies") {
    using V = volume<memory_device>;
    using PM = parent_map<V::storage, V::journal_type>;
    constexpr std::uint32_t bs = 4096;
    constexpr std::uint64_t blocks = 4096;
    std::vector<unsigned char> image(std::size_t{bs} * blocks);
    auto dev = memory_device::make(image.data(), bs, blocks);
    REQUIRE(dev);
    std::vector<unsigned char> scratch(bs);
    volume_geometry g;
    g.journal_blocks = 1024;
    g.uuid[0] = 7;
    REQUIRE(V::create(*dev, g, scratch.data()) == errc::ok);
    hosted::journal_sizes z;
    z.block_size = bs;
    z.cache_blocks = 1024;
    z.max_transaction_blocks = 256;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(blocks, bs);
    model_t md;
    std::mt19937_64 rng(17);
    {
        hosted::owned_memory mem(z);
        V v(*dev, mem.volume());
        REQUIRE(v.open({}) == errc::ok);
        auto pm = PM::create(v.store(), v.journal(), 1);
        REQUIRE(pm);
        for (int i = 0; i < 3000; ++i) {
            CAPTURE(i);
            const int op = static_cast<int>(rng() % 10);
            const std::uint64_t c = 1 + rng() % 300, p = 1 + rng() % 30;
            const std::string n = random_name(rng, random_len(rng));
            if (op < 6 || md.empty()) {
                auto h = v.start(pm->add_credits());
                REQUIRE(h);
                REQUIRE(pm->add(*h, c, p, i, nr(n)) == model_add(md, c, p, i, n));
                REQUIRE(v.set_anchor(0, pm->anchor()) == errc::ok);
                REQUIRE(v.stop(*h) == errc::ok);
            } else {
                auto it = md.begin();
                std::advance(it, static_cast<long>(rng() % md.size()));
                const link_id l = it->first;
                auto h = v.start(op < 8 ? pm->rename_credits() : pm->remove_credits());
                REQUIRE(h);
                if (op < 8) {
                    REQUIRE(pm->rename(*h, l.child, l.parent, nr(l.name), p, i, nr(n)) ==
                            model_rename(md, l.child, l.parent, l.name, p, i, n));
                } else {
                    REQUIRE(pm->remove(*h, l.child, l.parent, nr(l.name)) == errc::ok);
                    md.erase(l);
                }
                REQUIRE(v.set_anchor(0, pm->anchor()) == errc::ok);
                REQUIRE(v.stop(*h) == errc::ok);
            }
            if (i % 150 == 0) REQUIRE(v.commit() == errc::ok);
        }
        CHECK_MAP_CLEAN(*pm);
        REQUIRE(v.close() == errc::ok);
    }
    hosted::owned_memory mem(z);
    V v(*dev, mem.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a = v.anchor(0);
    REQUIRE(a);
    auto pm = PM::open(v.store(), v.journal(), *a);
    REQUIRE(pm);
    CHECK_MAP_CLEAN(*pm);
    REQUIRE(dump(*pm) == md);
    auto st = pm->stats();
    REQUIRE(st);
    MESSAGE("volume: " << md.size() << " links in " << st->nodes() << " nodes, leaf fill "
                       << st->leaf_fill_permille() / 10.0 << " %");
    REQUIRE(v.close() == errc::ok);
}

TEST_CASE("cross_check against directory entries: missing, stale generation and extra pointers are each named") {
    S s({1024});
    J j(s);
    auto mr = map_t<>::create(s, j, 20);
    REQUIRE(mr);
    auto& m = *mr;
    std::mt19937_64 rng(8);
    model_t dirents; // what the directories say: (child, parent, name) -> parent generation
    for (int i = 0; i < 400; ++i)
        dirents.emplace(link_id{100 + rng() % 150, 2 + rng() % 20, random_name(rng, random_len(rng))},
                        static_cast<std::uint32_t>(rng() % 5));
    load(j, m, dirents);
    auto for_each_entry = [&](auto&& visit) {
        for (auto& [l, g] : dirents)
            if (!visit(l.child, l.parent, g, nr(l.name))) return;
    };
    auto has_entry = [&](std::uint64_t c, std::uint64_t p, name_ref n) {
        return dirents.count(link_id{c, p, str(n)}) != 0;
    };
    using found_t = std::tuple<dirent_mismatch, std::uint64_t, std::uint64_t, std::string>;
    auto run_check = [&] {
        std::vector<found_t> found;
        auto r = m.cross_check(for_each_entry, has_entry,
                               [&](dirent_mismatch k, std::uint64_t c, std::uint64_t p, name_ref n) {
                                   found.emplace_back(k, c, p, str(n));
                               });
        REQUIRE(r);
        REQUIRE(*r == found.size());
        std::sort(found.begin(), found.end());
        return found;
    };
    CHECK(run_check().empty());
    // Three kinds of damage, one each.
    auto it = dirents.begin();
    std::advance(it, 17);
    const link_id gone = it->first; // the pointer goes, the entry stays
    REQUIRE(run(j, m, m.remove_credits(), [&](auto& h) { return m.remove(h, gone.child, gone.parent, nr(gone.name)); }) ==
            errc::ok);
    std::advance(it, 50);
    const link_id aged = it->first; // the parent was recreated: new generation in the entry
    it->second += 1;
    const link_id stray{999, 2, "stray"}; // a pointer with no entry
    REQUIRE(run(j, m, m.add_credits(), [&](auto& h) { return m.add(h, stray.child, stray.parent, 1, nr(stray.name)); }) ==
            errc::ok);
    std::vector<found_t> want{{dirent_mismatch::missing, gone.child, gone.parent, gone.name},
                              {dirent_mismatch::stale_generation, aged.child, aged.parent, aged.name},
                              {dirent_mismatch::extra, stray.child, stray.parent, stray.name}};
    std::sort(want.begin(), want.end());
    CHECK(run_check() == want);
    // A failing directory read ends the check with its error.
    auto r = m.cross_check([](auto&&) { return errc::io; }, has_entry,
                           [](dirent_mismatch, std::uint64_t, std::uint64_t, name_ref) {});
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::io);
}
