// A model filesystem drives all three maps: files and directories in memory
// (create, write/extend, punch, truncate, link, unlink, rename, reflink of a
// range, copy-on-write of shared blocks, delete), each filesystem operation
// in one journal handle changing rmap, refcount and parent pointers
// together. After every operation the maps equal what the model says and
// every cross-check is clean: rmap records = the model's mappings in
// canonical form, refcount = the model's sharing, the refcount cross_check
// against the rmap finds nothing, the blocks the refcount reports as freed
// are exactly the ones the model frees, parent pointers = the model's
// directory entries. The same workload on a jbtree volume is then crashed
// at every point of its write stream: each recovery gives back the maps of
// the last durable commit, every check clean, and the volume's allocator
// owns exactly the three maps' nodes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/maps/parent_map.hpp>
#include <jbtree/maps/refcount_map.hpp>
#include <jbtree/maps/rmap.hpp>
#include <jbtree/volume/ownership.hpp>
#include <jbtree/volume/volume.hpp>

#include "crash_device.hpp"
#define JT_MODEL_REQUIRE(cond) REQUIRE(cond)
#include "model_fs.hpp"

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <tuple>

using namespace jt;
using namespace jt_model;

namespace {

// A volume on a crash-recording device with the jbd2 journal.
struct volume_backend {
    using V = volume<crash_device>;
    using storage_type = V::storage;
    using journal_type = V::journal_type;
    // Each filesystem operation's handle (or the most one handle may have):
    // more than any one operation of this workload dirties, since credits
    // are charged once per block and transaction and the maps stay a few
    // dozen nodes. An operation that needed more would fail no_credits.
    static constexpr std::uint32_t op_credits = 250;
    V* v = nullptr;
    storage_type& storage() { return v->store(); }
    journal_type& journal() { return v->journal(); }
    result<journal_type::handle> start() { return v->start(std::min(op_credits, v->max_handle_credits())); }
    errc finish(journal_type::handle& h, const tree_anchor& a, const tree_anchor& b, const tree_anchor& c) {
        const errc e0 = v->set_anchor(0, a), e1 = v->set_anchor(1, b), e2 = v->set_anchor(2, c);
        const errc e = v->stop(h);
        return e0 != errc::ok ? e0 : e1 != errc::ok ? e1 : e2 != errc::ok ? e2 : e;
    }
};

// One random filesystem operation (or none, when the draw makes no sense).
template <class FS>
void random_op(FS& fs, std::mt19937_64& rng, std::vector<std::uint64_t>& dirs, std::size_t* counts) {
    std::vector<std::uint64_t> files;
    for (auto& [ino, in] : fs.inodes)
        if (!in.dir) files.push_back(ino);
    auto pick_file = [&] { return files[rng() % files.size()]; };
    auto links_of = [&](std::uint64_t f) {
        std::vector<entry> ls;
        for (auto& l : fs.links)
            if (std::get<0>(l) == f) ls.push_back(l);
        return ls;
    };
    const unsigned op = static_cast<unsigned>(rng() % 100);
    if (op < 8 || files.size() < 3) {
        const bool dir = rng() % 5 == 0;
        const std::uint64_t p = dirs[rng() % dirs.size()];
        const std::string name = random_name(rng);
        if (fs.name_taken(p, name)) return;
        const std::uint64_t ino = fs.create(p, name, dir);
        if (dir) dirs.push_back(ino);
        ++counts[0];
    } else if (op < 35) {
        fs.write(pick_file(), rng() % 96, 1 + rng() % 16);
        ++counts[1];
    } else if (op < 44) {
        fs.punch(pick_file(), rng() % 96, 1 + rng() % 24);
        ++counts[2];
    } else if (op < 47) {
        fs.truncate(pick_file(), rng() % 80);
        ++counts[3];
    } else if (op < 65) { // 18%
        // A third of the clones stay inside one file (non-overlapping
        // ranges): the file then maps blocks at several offsets.
        const std::uint64_t s = pick_file(), t = rng() % 3 == 0 ? s : pick_file();
        const std::uint64_t sl = rng() % 96, dl = rng() % 96, n = 1 + rng() % 24;
        if (!fs.can_clone(s, sl, t, dl, n)) return;
        fs.clone(s, sl, t, dl, n);
        ++counts[4];
    } else if (op < 71) {
        const std::uint64_t f = pick_file(), p = dirs[rng() % dirs.size()];
        const std::string name = random_name(rng);
        if (fs.name_taken(p, name)) return;
        fs.link_to(f, p, name);
        ++counts[5];
    } else if (op < 80) { // a file's link goes; its last link deletes it
        const auto ls = links_of(pick_file());
        if (ls.empty()) return;
        fs.unlink(ls[rng() % ls.size()]);
        ++counts[6];
    } else {
        const auto ls = links_of(pick_file());
        if (ls.empty()) return;
        const std::uint64_t np = dirs[rng() % dirs.size()];
        const std::string nn = random_name(rng);
        if (fs.name_taken(np, nn)) return;
        fs.rename(ls[rng() % ls.size()], np, nn);
        ++counts[7];
    }
}

std::string op_counts(const std::size_t* c) {
    return "creates " + std::to_string(c[0]) + ", writes " + std::to_string(c[1]) + ", punches " +
           std::to_string(c[2]) + ", truncates " + std::to_string(c[3]) + ", clones " + std::to_string(c[4]) +
           ", links " + std::to_string(c[5]) + ", unlinks " + std::to_string(c[6]) + ", renames " +
           std::to_string(c[7]);
}

// ---- crash injection ---------------------------------------------------------------

constexpr std::uint32_t vbs = 1024;
constexpr std::uint64_t vblocks = 12288;

hosted::journal_sizes volume_sizes() {
    hosted::journal_sizes z;
    z.block_size = vbs;
    z.cache_blocks = 2400;
    z.max_transaction_blocks = 1024;
    z.committed_capacity = 64;
    z.staging_blocks = 16;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(vblocks, vbs);
    z.revoke_capacity = 8192;
    return z;
}

// A new volume on the whole of dev with a journal of journal_blocks blocks.
void create_volume(crash_device& dev, std::uint32_t journal_blocks, unsigned char uuid_byte = 0) {
    std::vector<unsigned char> scratch(vbs);
    volume_geometry g;
    g.journal_blocks = journal_blocks;
    g.uuid[5] = uuid_byte;
    REQUIRE(volume<crash_device>::create(dev, g, scratch.data()) == errc::ok);
}

struct snapshot {
    expected_maps maps;
    std::map<std::uint64_t, std::uint32_t> gens;
    std::size_t commit_event = 0; // device events when its commit block had been written
};

// Open a crashed state: recover, open the three maps from their anchors,
// check them against the snapshot of the transaction they hold, and the
// allocator against their nodes. Returns that transaction's tid.
template <class Dev>
std::uint32_t check_crashed(Dev& dev, hosted::owned_memory& mem, const std::map<std::uint32_t, snapshot>& snaps,
                            std::uint32_t first_tid) {
    using V = volume<Dev>;
    V v(dev, mem.volume());
    jbd2::recovery_info info;
    volume_problem why{};
    const errc e = v.open({}, &why, &info);
    INFO("open: " << describe(e) << " / " << describe(why));
    REQUIRE(e == errc::ok);
    const std::uint32_t tid = info.end_tid - 1;
    REQUIRE(jbd2::tid_geq(tid, first_tid)); // the maps were created in the first transaction
    auto it = snaps.find(tid);
    REQUIRE(it != snaps.end());
    auto a0 = v.anchor(0), a1 = v.anchor(1), a2 = v.anchor(2);
    REQUIRE(a0);
    REQUIRE(a1);
    REQUIRE(a2);
    auto rm = rmap<typename V::storage, typename V::journal_type>::open(v.store(), v.journal(), *a0);
    auto rc = refcount_map<typename V::storage, typename V::journal_type>::open(v.store(), v.journal(), *a1);
    auto pm = parent_map<typename V::storage, typename V::journal_type>::open(v.store(), v.journal(), *a2);
    REQUIRE(rm);
    REQUIRE(rc);
    REQUIRE(pm);
    check_maps(*rm, *rc, *pm, it->second.maps, it->second.gens);
    std::vector<unsigned char> seen((vblocks + 7) / 8);
    const auto own = check_ownership(v, seen.data(), seen.size(), rm->tree(), rc->tree(), pm->tree());
    INFO("ownership: " << own.problem_count << " problem(s), first: "
                       << (own.problem_count ? describe(own.problems[0].kind) : "-"));
    REQUIRE(own.clean());
    REQUIRE(own.nodes == own.allocated);
    return tid;
}

} // namespace

TEST_CASE("model filesystem: hand-written scenario (write, reflink, copy-on-write, punch, delete)") {
    memory_backend be;
    model_fs<memory_backend> fs(be);
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

TEST_CASE("model filesystem: clones inside one file map a block at several offsets of one owner") {
    memory_backend be;
    model_fs<memory_backend> fs(be);
    const std::uint64_t a = fs.create(root_ino, "a", false);
    fs.write(a, 0, 8);
    const std::uint64_t p0 = fs.inodes[a].blocks[0];
    fs.clone(a, 0, a, 20, 8); // the same 8 blocks at offsets 0 and 20
    fs.check_all();
    fs.clone(a, 2, a, 40, 4); // and blocks 2..5 a third time, overlapping both
    fs.check_all();
    CHECK(fs.rc->refcount_of(p0 + 3).value() == 3);
    std::vector<rmap_record> owners;
    REQUIRE(fs.rm->owners_of(p0 + 3, [&](const rmap_record& r) {
        owners.push_back(r);
        return true;
    }) == errc::ok);
    REQUIRE(owners.size() == 3); // one owner, three offsets
    for (const auto& r : owners) CHECK(r.owner == a);
    CHECK(fs.rm->verify().clean());
    // Mapping a block again at an offset it already has is refused.
    auto h = be.start();
    REQUIRE(h);
    CHECK(fs.rm->map(*h, p0 + 1, 1, a, 21, 0) == errc::exists);
    REQUIRE(be.finish(*h, fs.rm->anchor(), fs.rc->anchor(), fs.pm->anchor()) == errc::ok);
    fs.write(a, 22, 2); // copy-on-write at offsets 22, 23 (blocks p0 + 2, p0 + 3)
    fs.check_all();
    CHECK(fs.rc->refcount_of(p0 + 3).value() == 2); // offsets 3 and 43 left
    fs.punch(a, 0, 8); // the first copy goes; offset 43 keeps p0 + 3
    fs.check_all();
    CHECK(fs.rc->refcount_of(p0 + 3).value() == 1);
    fs.truncate(a, 0);
    fs.check_all();
    CHECK(fs.free_blocks() == space);
    CHECK(fs.rm->empty());
    CHECK(fs.rc->empty());
}

TEST_CASE("model filesystem: random operation sequences, every map checked after every operation") {
    for (std::uint64_t seed : {1u, 2u}) {
        CAPTURE(seed);
        memory_backend be;
        model_fs<memory_backend> fs(be);
        std::mt19937_64 rng(seed);
        std::vector<std::uint64_t> dirs{root_ino};
        std::size_t counts[8] = {};
        const int steps = std::getenv("JBTREE_MODEL_OPS") ? std::atoi(std::getenv("JBTREE_MODEL_OPS")) : 10000;
        std::uint64_t peak_rmap = 0, peak_refcount = 0, peak_blocks = 0;
        for (int step = 0; step < steps; ++step) {
            CAPTURE(step);
            random_op(fs, rng, dirs, counts);
            fs.check_all();
            peak_rmap = std::max(peak_rmap, fs.rm->size());
            peak_refcount = std::max(peak_refcount, fs.rc->size());
            peak_blocks = std::max(peak_blocks, space - fs.free_blocks());
        }
        MESSAGE("seed " << seed << ": " << op_counts(counts) << "; at the end " << fs.inodes.size() << " inodes, "
                        << space - fs.free_blocks() << " blocks in use, rmap " << fs.rm->size()
                        << " records, refcount " << fs.rc->size() << ", parent pointers " << fs.pm->size()
                        << "; blocks freed by reports " << fs.freed_by_report << "; peaks: rmap " << peak_rmap
                        << ", refcount " << peak_refcount << ", blocks in use " << peak_blocks << "; clones inside one file "
                        << fs.self_clones);
        // The workload did build up shared data (and freed it again).
        CHECK(peak_refcount >= 10);
        CHECK(fs.freed_by_report > 1000);
        CHECK(fs.self_clones > static_cast<std::uint64_t>(steps) / 50); // clones inside one file happened
    }
}

TEST_CASE("model filesystem on a volume: a crash at every point recovers the last durable commit, every check clean") {
    crash_device dev(vbs, vblocks);
    create_volume(dev, 8192, 0x3C);
    hosted::owned_memory mem(volume_sizes());
    std::map<std::uint32_t, snapshot> snaps; // by tid
    std::uint32_t first_tid = 0;
    const int operations = std::getenv("JBTREE_MODEL_CRASH_OPS") ? std::atoi(std::getenv("JBTREE_MODEL_CRASH_OPS")) : 1000;
    std::size_t counts[8] = {};
    {
        volume<crash_device> v(dev, mem.volume());
        REQUIRE(v.open({}) == errc::ok);
        first_tid = v.journal().next_tid();
        dev.start_recording();
        volume_backend be{&v};
        model_fs<volume_backend> fs(be);
        // The maps exist from the first transaction on.
        fs.op_noop();
        std::uint32_t tid = v.journal().next_tid();
        auto note_commits = [&] {
            while (tid != v.journal().next_tid()) {
                snaps[tid] = snapshot{fs.expected(), fs.generations(), dev.events()};
                ++tid;
            }
        };
        fs.before_op = note_commits; // start() may commit the running transaction
        std::mt19937_64 rng(77);
        std::vector<std::uint64_t> dirs{root_ino};
        int next_commit = 1;
        for (int i = 0; i < operations; ++i) {
            CAPTURE(i);
            random_op(fs, rng, dirs, counts);
            if (--next_commit == 0) {
                REQUIRE(v.commit() == errc::ok);
                note_commits();
                next_commit = 1 + static_cast<int>(rng() % 4);
            }
        }
        REQUIRE(v.commit() == errc::ok);
        note_commits();
        fs.check_all();
        MESSAGE("workload: " << operations << " filesystem operations (" << op_counts(counts) << "), "
                             << snaps.size() << " commits, " << dev.events() << " block writes, "
                             << dev.flush_marks().size() << " flushes, " << v.journal().stats().checkpoints
                             << " checkpoints; maps: rmap " << fs.rm->size() << ", refcount " << fs.rc->size()
                             << ", parent pointers " << fs.pm->size() << " records");
        // The volume goes away without close(): the last crash point is "now".
    }
    // The exact event of each commit block: events() read after a commit can
    // include a checkpoint that the next handle's start() wrote after it.
    {
        std::size_t e = 0;
        for (auto& [t, sn] : snaps) {
            while (e < sn.commit_event) {
                const unsigned char* b = dev.event_data(e);
                if (load_be<std::uint32_t>(b) == 0xC03B3998u && load_be<std::uint32_t>(b + 4) == 2 &&
                    load_be<std::uint32_t>(b + 8) == t)
                    break;
                ++e;
            }
            REQUIRE(e < sn.commit_event); // found, at or before where it was noted
            sn.commit_event = e + 1;
        }
    }
    auto newest_written = [&](std::size_t k) {
        std::uint32_t t = first_tid - 1;
        for (const auto& [tid, s] : snaps)
            if (s.commit_event <= k) t = tid;
        return t;
    };
    // Before the first commit block there is nothing to recover: start at it.
    std::size_t k0 = snaps.begin()->second.commit_event;
    std::uint64_t states = 0;
    auto r = dev.replay();
    for (std::size_t k = 0; k < k0; ++k) REQUIRE(r.advance());
    for (std::size_t k = k0;; ++k) {
        INFO("crash point " << k << " of " << dev.events());
        const std::uint32_t written = newest_written(k);
        const std::uint32_t durable = newest_written(dev.durable(k));
        {
            auto st = r.crash(crash_mode::prefix, 0);
            REQUIRE(check_crashed(st, mem, snaps, first_tid) == written);
            ++states;
        }
        if (k > k0) {
            auto st = r.crash(crash_mode::torn_last, k);
            const std::size_t cut = st.torn_cut();
            const bool torn = std::memcmp(dev.event_data(k - 1) + cut, dev.data_before(k - 1) + cut, vbs - cut) != 0;
            REQUIRE(check_crashed(st, mem, snaps, first_tid) == newest_written(torn ? k - 1 : k));
            ++states;
        }
        if (jbd2::tid_geq(durable, first_tid)) {
            auto st = r.crash(crash_mode::reorder_unflushed, k * 13 + 5);
            const std::uint32_t got = check_crashed(st, mem, snaps, first_tid);
            REQUIRE(jbd2::tid_geq(got, durable));
            REQUIRE(jbd2::tid_geq(written, got));
            ++states;
        }
        if (!r.advance()) break;
    }
    MESSAGE("crash states recovered and checked: " << states);
    CHECK(states >= 2 * (dev.events() - k0));
}

TEST_CASE("rebuild each map beside the live one by bulk load and switch it in one transaction") {
    crash_device dev(vbs, vblocks);
    create_volume(dev, 8192);
    hosted::owned_memory mem(volume_sizes());
    using V = volume<crash_device>;
    using FS = model_fs<volume_backend>;
    expected_maps want;
    std::map<std::uint64_t, std::uint32_t> gens;
    std::size_t counts[8] = {};
    {
        V v(dev, mem.volume());
        REQUIRE(v.open({}) == errc::ok);
        volume_backend be{&v};
        FS fs(be);
        std::mt19937_64 rng(99);
        std::vector<std::uint64_t> dirs{root_ino};
        for (int i = 0; i < 1500; ++i) random_op(fs, rng, dirs, counts);
        REQUIRE(v.commit() == errc::ok);
        want = fs.expected();
        gens = fs.generations();
        REQUIRE(!want.rmap.empty());
        REQUIRE(!want.refcount.empty());
        std::vector<unsigned char> seen((vblocks + 7) / 8);
        const std::uint64_t nodes_before = check_ownership(v, seen.data(), seen.size(), fs.rm->tree(),
                                                           fs.rc->tree(), fs.pm->tree()).nodes;

        // rmap: from a "scan of the filesystem" (the model's records, in key order).
        {
            auto fresh = FS::rmap_t::create(v.store(), v.journal(), 11);
            REQUIRE(fresh);
            const std::uint64_t credits = fresh->tree().bulk_load_credits(want.rmap.size(), 90);
            REQUIRE(credits > 0);
            REQUIRE(credits <= v.max_handle_credits());
            auto h = v.start(static_cast<std::uint32_t>(credits));
            REQUIRE(h);
            std::size_t i = 0;
            REQUIRE(fresh->tree().bulk_load(*h, want.rmap.size(),
                                            [&](rmap_key& k, rmap_value& val) {
                                                k = want.rmap[i].key();
                                                val = want.rmap[i].value();
                                                ++i;
                                                return true;
                                            },
                                            90) == errc::ok);
            REQUIRE(fs.rm->tree().destroy(*h) == errc::ok);
            REQUIRE(fs.rm->empty());
            REQUIRE(v.set_anchor(0, fresh->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            fs.rm.emplace(std::move(*fresh));
        }
        // refcount: from the sweep of the (new) rmap.
        {
            auto fresh = FS::rc_t::create(v.store(), v.journal(), 12);
            REQUIRE(fresh);
            std::vector<std::uint64_t> ends(256);
            const sweep_scratch sc{ends.data(), ends.size()};
            auto src = fs.rm->extents();
            auto n = FS::rc_t::rebuild_count(src, sc);
            REQUIRE(n);
            REQUIRE(*n == want.refcount.size());
            auto h = v.start(static_cast<std::uint32_t>(fresh->rebuild_credits(*n)));
            REQUIRE(h);
            REQUIRE(fresh->rebuild_from_rmap(*h, src, sc, *n) == errc::ok);
            REQUIRE(fs.rc->tree().destroy(*h) == errc::ok);
            REQUIRE(v.set_anchor(1, fresh->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            fs.rc.emplace(std::move(*fresh));
        }
        // parent pointers: from the directory entries, keys computed as add() would.
        {
            auto fresh = FS::pm_t::create(v.store(), v.journal(), 13);
            REQUIRE(fresh);
            std::vector<std::pair<parent_key, const entry*>> keyed;
            for (const entry& l : want.links) {
                const std::string& nm = std::get<2>(l);
                keyed.push_back({parent_key{std::get<0>(l), std::get<1>(l), FS::pm_t::name_hash(nr(nm)), 0}, &l});
            }
            std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
                return parent_map_traits<>::compare(a.first, b.first) < 0;
            });
            FS::pm_t::number_collisions(keyed.begin(), keyed.end(), [](auto& x) -> parent_key& { return x.first; });
            const std::uint64_t credits = fresh->tree().bulk_load_credits(keyed.size(), 90);
            auto h = v.start(static_cast<std::uint32_t>(credits));
            REQUIRE(h);
            std::size_t i = 0;
            REQUIRE(fresh->tree().bulk_load(*h, keyed.size(),
                                            [&](parent_key& k, parent_record& r) {
                                                k = keyed[i].first;
                                                const std::string& nm = std::get<2>(*keyed[i].second);
                                                r.parent_gen = gens.at(k.parent);
                                                r.name_len = static_cast<std::uint16_t>(nm.size());
                                                std::memcpy(r.name, nm.data(), nm.size());
                                                ++i;
                                                return true;
                                            },
                                            90) == errc::ok);
            REQUIRE(fs.pm->tree().destroy(*h) == errc::ok);
            REQUIRE(v.set_anchor(2, fresh->anchor()) == errc::ok);
            REQUIRE(v.stop(*h) == errc::ok);
            fs.pm.emplace(std::move(*fresh));
        }
        REQUIRE(v.commit() == errc::ok);
        fs.check_all();
        const auto own = check_ownership(v, seen.data(), seen.size(), fs.rm->tree(), fs.rc->tree(), fs.pm->tree());
        REQUIRE(own.clean()); // the old trees' blocks all went back
        MESSAGE("rebuilt and switched: rmap " << want.rmap.size() << ", refcount " << want.refcount.size()
                                              << ", parent pointers " << want.links.size() << " records; nodes "
                                              << nodes_before << " before, " << own.nodes << " after");
        // The volume goes away without close(): recovery gives back the new maps.
    }
    V v(dev, mem.volume());
    REQUIRE(v.open({}) == errc::ok);
    auto a0 = v.anchor(0), a1 = v.anchor(1), a2 = v.anchor(2);
    REQUIRE(a0);
    REQUIRE(a1);
    REQUIRE(a2);
    CHECK(a0->tree_id == 11);
    CHECK(a1->tree_id == 12);
    CHECK(a2->tree_id == 13);
    auto rm = FS::rmap_t::open(v.store(), v.journal(), *a0);
    auto rc = FS::rc_t::open(v.store(), v.journal(), *a1);
    auto pm = FS::pm_t::open(v.store(), v.journal(), *a2);
    REQUIRE(rm);
    REQUIRE(rc);
    REQUIRE(pm);
    check_maps(*rm, *rc, *pm, want, gens);
    std::vector<unsigned char> seen((vblocks + 7) / 8);
    CHECK(check_ownership(v, seen.data(), seen.size(), rm->tree(), rc->tree(), pm->tree()).clean());
}

TEST_CASE("destroy refuses a tree larger than the transaction can forget, and changes nothing") {
    crash_device dev(vbs, vblocks);
    create_volume(dev, 2048);
    hosted::journal_sizes z = volume_sizes();
    z.max_transaction_blocks = 128; // also the most blocks one transaction can forget
    hosted::owned_memory mem(z);
    volume<crash_device> v(dev, mem.volume());
    REQUIRE(v.open({}) == errc::ok);
    using T = btree<u64_map_traits, volume<crash_device>::storage, volume<crash_device>::journal_type>;
    auto t = T::create(v.store(), v.journal(), 5);
    REQUIRE(t);
    const std::uint64_t n = 20000; // about 340 leaves of 1 KiB
    auto h = v.start(static_cast<std::uint32_t>(std::min<std::uint64_t>(t->bulk_load_credits(n, 100), v.max_handle_credits())));
    REQUIRE(h);
    std::uint64_t k = 0;
    const errc le = t->bulk_load(*h, n, [&](std::uint64_t& key, std::uint64_t& val) { key = val = k++; return true; }, 100);
    REQUIRE(v.stop(*h) == errc::ok);
    if (le != errc::ok) { // the load did not fit one transaction: build by inserts instead
        for (std::uint64_t x = 0; x < n; ++x) {
            auto hi = v.start(t->insert_credits());
            REQUIRE(hi);
            REQUIRE(t->insert(*hi, x, x) == errc::ok);
            REQUIRE(v.stop(*hi) == errc::ok);
        }
    }
    REQUIRE(v.commit() == errc::ok);
    const auto before = t->anchor();
    auto st = t->stats();
    REQUIRE(st);
    REQUIRE(st->nodes() > z.max_transaction_blocks);
    auto hd = v.start(1);
    REQUIRE(hd);
    CHECK(t->destroy(*hd) == errc::no_credits);
    REQUIRE(v.stop(*hd) == errc::ok);
    CHECK(t->anchor() == before);
    CHECK(t->verify().clean());
}
