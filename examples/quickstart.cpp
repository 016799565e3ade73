// jbtree quickstart: one engine, three record types, in memory.
//
// Shows the calls a tool makes: open storage and journal, create trees,
// insert/find/erase in a handle, walk with a cursor, ask an interval tree
// what overlaps a range, bulk load, verify, and read statistics.
// Build and run: bash scripts/demo.sh   (or build/release/examples/jbtree-quickstart)
#include <jbtree/hosted/file_device.hpp>
#include <jbtree/hosted/owned_memory.hpp>
#include <jbtree/jbtree.hpp>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <unistd.h>

using namespace jbtree;

namespace {

using storage = memory_storage<>;
using journal = null_journal<storage>;

// Exit with a message on any error: examples should not hide failures.
void check(errc e, const char* what) {
    if (e != errc::ok) {
        std::fprintf(stderr, "quickstart: %s failed: %s (%d)\n", what, describe(e), static_cast<int>(e));
        std::exit(1);
    }
}
template <class T>
T& check(result<T>& r, const char* what) {
    if (!r) check(r.error(), what);
    return *r;
}

void print_report(const char* name, const verify_report& rep) {
    std::printf("  verify(%s): %s, %" PRIu64 " nodes, %" PRIu64 " records, height %u\n", name,
                rep.clean() ? "clean" : "PROBLEMS", rep.nodes, rep.records, rep.height);
    for (std::uint32_t i = 0; i < rep.kept(); ++i)
        std::printf("    %s%s%s at block %" PRIu64 " entry %u\n", describe(rep.problems[i].kind),
                    rep.problems[i].kind == problem_kind::bad_node ? ": " : "",
                    rep.problems[i].kind == problem_kind::bad_node ? describe(rep.problems[i].fault) : "",
                    rep.problems[i].blkno, rep.problems[i].index);
}

} // namespace

// 6. Durable: two trees in a volume on a file, updated through a jbd2
// journal; a crash (the process just drops everything) loses only what was
// not committed.
void durable_volume_demo() {
    using vol_t = volume<hosted::file_device>;
    using map_t = btree<u64_map_traits, vol_t::storage, vol_t::journal_type>;
    using ext_t = btree<u64_extent_traits, vol_t::storage, vol_t::journal_type>;
    char path[] = "/tmp/jbtree-quickstart-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        std::perror("quickstart: mkstemp");
        std::exit(1);
    }
    close(fd);
    const std::uint32_t bs = 4096;
    const std::uint64_t blocks = 16384; // 64 MiB, sparse
    hosted::journal_sizes z;
    z.block_size = bs;
    z.bitmap_blocks = hosted::volume_bitmap_blocks(blocks, bs);
    hosted::owned_memory mem(z);
    std::printf("\n6. a volume in %s: two trees under one jbd2 journal\n", path);
    {
        auto dev_r = hosted::file_device::create(path, bs, blocks);
        auto& dev = check(dev_r, "create file");
        std::vector<unsigned char> scratch(bs);
        volume_geometry g;
        g.journal_blocks = 4096;
        check(vol_t::create(dev, g, scratch.data()), "create volume");
        vol_t v(dev, mem.volume());
        check(v.open({}), "open volume");
        auto m_r = map_t::create(v.store(), v.journal(), 1);
        auto e_r = ext_t::create(v.store(), v.journal(), 2);
        auto& m = check(m_r, "create map");
        auto& e = check(e_r, "create extents");
        // 20,000 operations: each handle inserts into both trees, and every
        // 1,000 handles the transaction is committed (durable).
        for (std::uint64_t i = 0; i < 20000; ++i) {
            auto h_r = v.start(m.insert_credits() + e.insert_credits());
            auto& h = check(h_r, "start handle");
            check(m.insert(h, i * 7919 % 100003, i), "insert map");
            check(e.insert(h, i * 16, 8), "insert extent");
            check(v.set_anchor(0, m.anchor()), "anchor");
            check(v.set_anchor(1, e.anchor()), "anchor");
            check(v.stop(h), "stop handle");
            if (i % 1000 == 999 && i < 19000) check(v.commit(), "commit");
        }
        const auto& js = v.journal().stats();
        std::printf("  20,000 handles, %" PRIu64 " commits: %" PRIu64 " blocks logged, %" PRIu64
                    " written home by checkpoints; the last 1,000 handles are not committed\n",
                    js.commits, js.logged_blocks, js.home_writes);
        std::printf("  crash! (no commit, no close)\n");
    }
    {
        auto dev_r = hosted::file_device::open(path, bs);
        auto& dev = check(dev_r, "open file");
        vol_t v(dev, mem.volume());
        jbd2::recovery_info ri;
        check(v.open({}, nullptr, &ri), "reopen volume");
        std::printf("  reopen: journal recovery replayed %" PRIu64 " transactions (%" PRIu64 " blocks)\n",
                    ri.transactions, ri.replayed);
        auto ma = v.anchor(0);
        auto ea = v.anchor(1);
        auto m_r = map_t::open(v.store(), v.journal(), check(ma, "anchor"));
        auto e_r = ext_t::open(v.store(), v.journal(), check(ea, "anchor"));
        auto& m = check(m_r, "open map");
        auto& e = check(e_r, "open extents");
        std::printf("  map holds %" PRIu64 " records, extents %" PRIu64 " (19,000 each were committed)\n",
                    m.anchor().records, e.anchor().records);
        print_report("map", m.verify());
        print_report("extents", e.verify());
        check(v.close(), "close volume");
        std::printf("  closed cleanly: everything checkpointed, journal empty\n");
    }
    unlink(path);
}

int main() {
    // 4 KiB blocks in RAM, with checksums (seeded as a volume UUID would).
    storage disk({4096, true, crc32c_raw(~0u, "jbtree-demo-uuid", 16)});
    journal jnl(disk);

    std::printf("jbtree quickstart: block size %u, checksums %s\n\n", disk.block_size(),
                disk.checksums() ? "on" : "off");

    // 1. A plain map, u64 -> u64.
    auto map_r = btree<u64_map_traits, storage, journal>::create(disk, jnl, /*tree id*/ 1);
    auto& map = check(map_r, "create map");
    {
        // Every mutation runs in a journal handle with enough credits: one
        // insert needs at most map.insert_credits() blocks. The null journal
        // (no atomicity) can also hand out unlimited credits, as below.
        auto h_r = jnl.start(1001 * (2 * max_height + 2));
        auto& h = check(h_r, "start handle");
        for (std::uint64_t k = 1; k <= 1000; ++k) check(map.insert(h, k * k, k), "insert");
        check(map.erase(h, 25), "erase");
        check(jnl.stop(h), "stop handle");
    }
    std::printf("1. map: %" PRIu64 " records, height %u\n", map.size(), map.height());
    auto v = map.find(144);
    std::printf("  find(144) -> %" PRIu64 "\n", v ? *v : 0);
    std::printf("  find(25)  -> %s\n", describe(map.find(25).error()));
    auto c_r = map.lower_bound(20);
    auto& c = check(c_r, "lower_bound");
    std::printf("  records from key 20:");
    for (int i = 0; i < 5 && !c.at_end(); ++i) {
        std::printf(" %" PRIu64 "->%" PRIu64, c.key(), *c.value());
        check(c.next(), "cursor next");
    }
    std::printf("\n");
    print_report("map", map.verify());

    // 2. An interval tree: start -> length, asked what overlaps a range.
    auto ext_r = btree<u64_extent_traits, storage, journal>::create(disk, jnl, 2);
    auto& ext = check(ext_r, "create extents");
    {
        auto h_r = jnl.start(unlimited_credits);
        auto& h = check(h_r, "start handle");
        const std::uint64_t extents[][2] = {{100, 50}, {120, 10}, {400, 1}, {90, 400}, {1000, 8}};
        for (auto& e : extents) check(ext.insert(h, e[0], e[1]), "insert extent");
    }
    std::printf("\n2. extents overlapping [125, 130]:");
    check(ext.for_each_overlapping(125, 130, [](std::uint64_t start, std::uint64_t len) {
        std::printf(" [%" PRIu64 ", %" PRIu64 "]", start, start + len - 1);
        return true;
    }), "overlap query");
    std::printf("\n");
    print_report("extents", ext.verify());

    // 3. Variable-size values (slotted leaves): names up to 255 bytes.
    using names_traits = u64_blob_traits<255>;
    auto names_r = btree<names_traits, storage, journal>::create(disk, jnl, 3);
    auto& names = check(names_r, "create names");
    {
        auto h_r = jnl.start(unlimited_credits);
        auto& h = check(h_r, "start handle");
        const char* files[] = {"README", "lost+found", "a-much-longer-file-name-than-usual.tar.gz", "x"};
        std::uint64_t ino = 11;
        for (const char* f : files) {
            names_traits::value_type name;
            name.size = static_cast<std::uint16_t>(std::strlen(f));
            std::memcpy(name.bytes, f, name.size);
            check(names.insert(h, ino++, name), "insert name");
        }
    }
    std::printf("\n3. names:");
    check(names.for_each([](std::uint64_t ino, const names_traits::value_type& n) {
        std::printf(" %" PRIu64 "=%.*s", ino, static_cast<int>(n.size), reinterpret_cast<const char*>(n.bytes));
        return true;
    }), "walk names");
    std::printf("\n");
    print_report("names", names.verify());

    // 4. Bulk load a million sorted records at 100% fill.
    auto bulk_r = btree<u64_map_traits, storage, journal>::create(disk, jnl, 4);
    auto& bulk = check(bulk_r, "create bulk");
    {
        const std::uint64_t n = 1000000;
        auto h_r = jnl.start(static_cast<std::uint32_t>(bulk.bulk_load_credits(n, 100)));
        auto& h = check(h_r, "start handle");
        std::uint64_t i = 0;
        check(bulk.bulk_load(h, n, [&i](std::uint64_t& k, std::uint64_t& val) {
            k = 2 * i;
            val = i++;
            return true;
        }, 100), "bulk load");
    }
    auto st_r = bulk.stats();
    auto& st = check(st_r, "stats");
    std::printf("\n4. bulk load: %" PRIu64 " records, %" PRIu64 " leaves + %" PRIu64
                " internal nodes, leaf fill %.1f%%, %.2f bytes/record\n",
                st.records, st.leaves, st.internal_nodes, st.leaf_fill_permille() / 10.0,
                st.bytes_per_record_x100() / 100.0);
    print_report("bulk", bulk.verify());

    // 5. Damage one node on purpose: verify() says where.
    unsigned char* root = disk.raw_block(map.anchor().root);
    root[100] ^= 0xFF;
    std::printf("\n5. after flipping a byte of the map's root block %" PRIu64 ":\n", map.anchor().root);
    print_report("map", map.verify());
    std::printf("  find(144) -> %s\n", describe(map.find(144).error()));
    root[100] ^= 0xFF;
    print_report("map, repaired", map.verify());

    durable_volume_demo();
    return 0;
}
