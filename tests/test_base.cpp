// The base layer: crc32c (against known vectors, a bitwise reference and
// real ext4 superblocks), endian fields, errc/result, and the node header's
// layout and checksum.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <jbtree/base/crc32c.hpp>
#include <jbtree/base/endian.hpp>
#include <jbtree/base/errc.hpp>
#include <jbtree/node/header.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

using namespace jbtree;

namespace {

// CRC-32C one bit at a time, straight from the definition (reflected
// polynomial 0x82F63B78); shares nothing with the library's tables.
std::uint32_t reference_crc32c_raw(std::uint32_t crc, const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return crc;
}

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<unsigned char> v(n);
    for (auto& b : v) b = static_cast<unsigned char>(rng());
    return v;
}

const char check_string[] = "123456789";

} // namespace

// ---------------------------------------------------------------- crc32c

TEST_CASE("crc32c: standard check value") {
    CHECK(crc32c(check_string, 9) == 0xE3069283u);
    CHECK(crc32c_raw(~0u, check_string, 9) == ~0xE3069283u);
    CHECK(reference_crc32c_raw(~0u, reinterpret_cast<const unsigned char*>(check_string), 9) == ~0xE3069283u);
}

TEST_CASE("crc32c: empty input") {
    CHECK(crc32c(nullptr, 0) == 0u);
    CHECK(crc32c(check_string, 0) == 0u);
    CHECK(crc32c_raw(~0u, nullptr, 0) == ~0u);
    CHECK(crc32c_raw(0x12345678u, check_string, 0) == 0x12345678u);
    CHECK(crc32c_raw(0u, nullptr, 0) == 0u);
}

TEST_CASE("crc32c: RFC 3720 (iSCSI) test vectors") {
    unsigned char buf[32];
    std::memset(buf, 0, sizeof buf);
    CHECK(crc32c(buf, sizeof buf) == 0x8A9136AAu);
    std::memset(buf, 0xFF, sizeof buf);
    CHECK(crc32c(buf, sizeof buf) == 0x62A8AB43u);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
    CHECK(crc32c(buf, sizeof buf) == 0x46DD794Eu);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
    CHECK(crc32c(buf, sizeof buf) == 0x113FDB5Cu);
}

TEST_CASE("crc32c: slice-by-8 equals the bitwise reference at every length and alignment") {
    const auto data = random_bytes(100 + 8, 0xC3C3'5EED);
    const std::uint32_t seeds[] = {~0u, 0u, 0xDEADBEEFu};
    for (std::uint32_t seed : seeds) {
        for (std::size_t off = 0; off < 8; ++off) {
            for (std::size_t len = 0; len <= 100; ++len) {
                CAPTURE(seed);
                CAPTURE(off);
                CAPTURE(len);
                const unsigned char* p = data.data() + off;
                REQUIRE(crc32c_raw(seed, p, len) == reference_crc32c_raw(seed, p, len));
            }
        }
    }
}

TEST_CASE("crc32c: the portable and the hardware implementations agree at every length and alignment") {
    const auto data = random_bytes(4096 + 8, 0x5EED'C0DE);
    const std::uint32_t seeds[] = {~0u, 0u, 0x9E3779B9u};
    for (std::uint32_t seed : seeds)
        for (std::size_t off = 0; off < 8; ++off)
            for (std::size_t len = 0; len <= 4096; len += (len < 80 ? 1 : 509)) {
                CAPTURE(seed);
                CAPTURE(off);
                CAPTURE(len);
                const unsigned char* p = data.data() + off;
                const std::uint32_t sw = detail::crc32c_raw_sw(seed, p, len);
                REQUIRE(sw == reference_crc32c_raw(seed, p, len));
                REQUIRE(crc32c_raw(seed, p, len) == sw); // whichever one the CPU selected
#ifdef JBTREE_HAVE_HW_CRC32C
                if (detail::cpu_has_sse42()) REQUIRE(detail::crc32c_raw_hw(seed, p, len) == sw);
#endif
            }
#ifdef JBTREE_HAVE_HW_CRC32C
    const std::string how = detail::cpu_has_sse42() ? "present, used" : "absent, slice-by-8 used";
    MESSAGE("SSE4.2 crc32: " << how);
#endif
}

TEST_CASE("crc32c: a large buffer equals the reference") {
    const auto data = random_bytes(65536 + 3, 7);
    CHECK(crc32c_raw(~0u, data.data(), data.size()) == reference_crc32c_raw(~0u, data.data(), data.size()));
    CHECK(crc32c_raw(~0u, data.data() + 3, 65536) == reference_crc32c_raw(~0u, data.data() + 3, 65536));
}

TEST_CASE("crc32c: incremental (split at every point) equals one-shot") {
    const auto data = random_bytes(300, 42);
    const std::uint32_t whole = crc32c_raw(~0u, data.data(), data.size());
    for (std::size_t i = 0; i <= data.size(); ++i) {
        CAPTURE(i);
        const std::uint32_t first = crc32c_raw(~0u, data.data(), i);
        REQUIRE(crc32c_raw(first, data.data() + i, data.size() - i) == whole);
    }
    // Three pieces, as ext4 checksums a structure around its checksum field.
    for (std::size_t i = 0; i <= 64; ++i)
        for (std::size_t j = i; j <= 64; ++j) {
            std::uint32_t c = crc32c_raw(~0u, data.data(), i);
            c = crc32c_raw(c, data.data() + i, j - i);
            c = crc32c_raw(c, data.data() + j, data.size() - j);
            REQUIRE(c == whole);
        }
}

// ext4 metadata_csum: s_checksum = crc32c_raw(~0, superblock, offsetof(s_checksum)).
// Checked against the superblocks of the e2fsprogs test images.
TEST_CASE("crc32c: ext4 superblock checksums of the corpus images") {
    namespace fs = std::filesystem;
    const fs::path dir = JBTREE_SOURCE_ROOT "/../shared/corpus/ext4";
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        MESSAGE("SKIP: corpus not found (" << dir.string() << ")");
        return;
    }
    std::vector<fs::path> images;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() > 7 && name.compare(name.size() - 7, 7, ".img.gz") == 0) images.push_back(e.path());
    }
    std::sort(images.begin(), images.end());
    if (images.empty()) {
        MESSAGE("SKIP: corpus not found (no *.img.gz in " << dir.string() << ")");
        return;
    }

    int with_csum = 0, matched = 0;
    std::vector<std::string> mismatches;
    for (const auto& img : images) {
        const std::string path = img.string();
        REQUIRE(path.find('\'') == std::string::npos);
        // Only the first 2 KiB are needed: boot block + superblock.
        const std::string cmd = "gzip -dc '" + path + "' 2>/dev/null | head -c 2048";
        FILE* f = popen(cmd.c_str(), "r");
        REQUIRE(f != nullptr);
        std::vector<unsigned char> buf(2048);
        const std::size_t got = std::fread(buf.data(), 1, buf.size(), f);
        pclose(f);
        if (got < 2048) continue; // too small to hold a superblock

        const unsigned char* sb = buf.data() + 1024;
        if (load_le<std::uint16_t>(sb + 0x38) != 0xEF53) continue;      // s_magic: deliberately zeroed/junk images
        if (!(load_le<std::uint32_t>(sb + 0x64) & 0x400u)) continue;    // s_feature_ro_compat & METADATA_CSUM
        ++with_csum;
        const std::uint32_t stored = load_le<std::uint32_t>(sb + 0x3FC); // s_checksum
        const std::uint32_t computed = crc32c_raw(~0u, sb, 0x3FC);
        if (computed == stored) {
            ++matched;
        } else {
            char line[64];
            std::snprintf(line, sizeof line, ": stored %08x computed %08x", static_cast<unsigned>(stored),
                          static_cast<unsigned>(computed));
            mismatches.push_back(img.filename().string() + line);
        }
    }
    for (const auto& m : mismatches) MESSAGE("superblock checksum mismatch: " << m);
    MESSAGE(with_csum << " metadata_csum images, " << matched << " matched");
    // All metadata_csum images in the corpus carry a valid superblock checksum
    // (the damaged ones damage other structures), so every one must match.
    REQUIRE(with_csum >= 1);
    CHECK(mismatches.empty());
    CHECK(matched == with_csum);
}

// ---------------------------------------------------------------- endian

TEST_CASE("endian: field types are unaligned byte arrays") {
    CHECK(sizeof(le16) == 2);
    CHECK(sizeof(le32) == 4);
    CHECK(sizeof(le64) == 8);
    CHECK(sizeof(be16) == 2);
    CHECK(sizeof(be32) == 4);
    CHECK(sizeof(be64) == 8);
    CHECK(alignof(le16) == 1);
    CHECK(alignof(le32) == 1);
    CHECK(alignof(le64) == 1);
    CHECK(alignof(be16) == 1);
    CHECK(alignof(be32) == 1);
    CHECK(alignof(be64) == 1);
    struct packed {
        le16 a;
        le64 b;
        be32 c;
    };
    CHECK(sizeof(packed) == 14);
    CHECK(alignof(packed) == 1);
}

TEST_CASE("endian: byte order on the wire") {
    le16 a16;
    a16.set(0x1122);
    CHECK(a16.bytes[0] == 0x22);
    CHECK(a16.bytes[1] == 0x11);
    le32 a32;
    a32.set(0x11223344u);
    const unsigned char l32[] = {0x44, 0x33, 0x22, 0x11};
    CHECK(std::memcmp(a32.bytes, l32, 4) == 0);
    le64 a64;
    a64.set(0x1122334455667788ull);
    const unsigned char l64[] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
    CHECK(std::memcmp(a64.bytes, l64, 8) == 0);

    be16 b16;
    b16.set(0x1122);
    CHECK(b16.bytes[0] == 0x11);
    CHECK(b16.bytes[1] == 0x22);
    be32 b32;
    b32.set(0x11223344u);
    const unsigned char bb32[] = {0x11, 0x22, 0x33, 0x44};
    CHECK(std::memcmp(b32.bytes, bb32, 4) == 0);
    be64 b64;
    b64.set(0x1122334455667788ull);
    const unsigned char bb64[] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    CHECK(std::memcmp(b64.bytes, bb64, 8) == 0);

    // And back from the wire.
    const unsigned char wire[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    le32 r32;
    std::memcpy(r32.bytes, wire, 4);
    CHECK(r32.get() == 0x04030201u);
    be32 s32;
    std::memcpy(s32.bytes, wire, 4);
    CHECK(s32.get() == 0x01020304u);
    le64 r64;
    std::memcpy(r64.bytes, wire, 8);
    CHECK(r64.get() == 0x0807060504030201ull);
    be64 s64;
    std::memcpy(s64.bytes, wire, 8);
    CHECK(s64.get() == 0x0102030405060708ull);
    le16 r16;
    std::memcpy(r16.bytes, wire, 2);
    CHECK(r16.get() == 0x0201);
    be16 s16;
    std::memcpy(s16.bytes, wire, 2);
    CHECK(s16.get() == 0x0102);
}

TEST_CASE("endian: get/set round trips") {
    std::mt19937_64 rng(3);
    for (int i = 0; i < 1000; ++i) {
        const std::uint64_t v = rng();
        le16 a;
        a.set(static_cast<std::uint16_t>(v));
        REQUIRE(a.get() == static_cast<std::uint16_t>(v));
        le32 b;
        b.set(static_cast<std::uint32_t>(v));
        REQUIRE(b.get() == static_cast<std::uint32_t>(v));
        le64 c;
        c.set(v);
        REQUIRE(c.get() == v);
        be16 d;
        d.set(static_cast<std::uint16_t>(v));
        REQUIRE(d.get() == static_cast<std::uint16_t>(v));
        be32 e;
        e.set(static_cast<std::uint32_t>(v));
        REQUIRE(e.get() == static_cast<std::uint32_t>(v));
        be64 f;
        f.set(v);
        REQUIRE(f.get() == v);
    }
    le64 edge;
    edge.set(0);
    CHECK(edge.get() == 0);
    edge.set(~0ull);
    CHECK(edge.get() == ~0ull);
}

TEST_CASE("endian: load/store at unaligned offsets") {
    unsigned char buf[16];
    for (std::size_t off = 0; off < 8; ++off) {
        CAPTURE(off);
        std::memset(buf, 0xAA, sizeof buf);
        store_le<std::uint32_t>(buf + off, 0x11223344u);
        CHECK(buf[off] == 0x44);
        CHECK(buf[off + 3] == 0x11);
        CHECK(load_le<std::uint32_t>(buf + off) == 0x11223344u);
        CHECK(load_be<std::uint32_t>(buf + off) == 0x44332211u);
        if (off > 0) CHECK(buf[off - 1] == 0xAA); // no write outside the field
        CHECK(buf[off + 4] == 0xAA);

        store_be<std::uint64_t>(buf + off, 0x0102030405060708ull);
        CHECK(buf[off] == 0x01);
        CHECK(buf[off + 7] == 0x08);
        CHECK(load_be<std::uint64_t>(buf + off) == 0x0102030405060708ull);
        CHECK(load_le<std::uint64_t>(buf + off) == 0x0807060504030201ull);

        store_be<std::uint16_t>(buf + off, 0xABCD);
        CHECK(buf[off] == 0xAB);
        CHECK(buf[off + 1] == 0xCD);
        CHECK(load_le<std::uint16_t>(buf + off) == 0xCDAB);
        store_le<std::uint16_t>(buf + off, 0xABCD);
        CHECK(load_le<std::uint16_t>(buf + off) == 0xABCD);
    }
}

TEST_CASE("endian: byte helpers accept empty ranges") {
    unsigned char a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
    copy_bytes(nullptr, nullptr, 0);
    move_bytes(nullptr, nullptr, 0);
    fill_bytes(nullptr, 0, 0);
    CHECK(compare_bytes(nullptr, nullptr, 0) == 0);
    CHECK(compare_bytes(a, b, 3) == 0);
    CHECK(compare_bytes(a, b, 4) < 0);
    CHECK(compare_bytes(b, a, 4) > 0);
    move_bytes(a + 1, a, 3);
    CHECK(a[1] == 1);
    CHECK(a[3] == 3);
}

// ---------------------------------------------------------------- errc / result

TEST_CASE("errc: negative errno values, each described") {
    const errc all[] = {errc::ok,       errc::not_found,     errc::io,         errc::no_memory, errc::exists,
                        errc::invalid,  errc::no_space,      errc::range,      errc::not_empty, errc::too_deep,
                        errc::not_supported, errc::no_credits, errc::bad_checksum, errc::corrupted};
    for (errc e : all) {
        CAPTURE(static_cast<int>(e));
        const char* d = describe(e);
        REQUIRE(d != nullptr);
        CHECK(d[0] != '\0');
        CHECK(static_cast<int>(e) <= 0);
    }
    CHECK(static_cast<int>(errc::not_found) == -2);
    CHECK(static_cast<int>(errc::bad_checksum) == -74); // EBADMSG = EFSBADCRC
    CHECK(static_cast<int>(errc::corrupted) == -117);   // EUCLEAN = EFSCORRUPTED
    CHECK(describe(static_cast<errc>(-9999)) != nullptr);
    static_assert(describe(errc::ok) != nullptr); // usable at compile time
}

TEST_CASE("result: value or error") {
    result<int> v(42);
    REQUIRE(v.ok());
    CHECK(static_cast<bool>(v));
    CHECK(v.error() == errc::ok);
    CHECK(v.value() == 42);
    CHECK(*v == 42);
    *v = 7;
    CHECK(v.value() == 7);

    result<int> e(errc::not_found);
    CHECK_FALSE(e.ok());
    CHECK_FALSE(static_cast<bool>(e));
    CHECK(e.error() == errc::not_found);

    // result(errc::ok) would claim a value it does not have: it becomes invalid.
    result<int> bad(errc::ok);
    CHECK_FALSE(bad.ok());
    CHECK(bad.error() == errc::invalid);

    // Copies and moves keep the state.
    result<int> c(v);
    CHECK(c.ok());
    CHECK(*c == 7);
    result<int> m(rvalue(e));
    CHECK(m.error() == errc::not_found);

    struct pair {
        int a, b;
    };
    result<pair> p(pair{1, 2});
    REQUIRE(p);
    CHECK(p->a == 1);
    CHECK(p->b == 2);
    static_assert(!std::is_copy_assignable_v<result<int>>);
}

namespace {
errc fails_with(errc e) { return e; }
errc try_chain(errc first, int& reached) {
    JBTREE_TRY(fails_with(first));
    reached = 1;
    return errc::ok;
}
} // namespace

TEST_CASE("JBTREE_TRY propagates errors and continues on ok") {
    int reached = 0;
    CHECK(try_chain(errc::ok, reached) == errc::ok);
    CHECK(reached == 1);
    reached = 0;
    CHECK(try_chain(errc::io, reached) == errc::io);
    CHECK(reached == 0);
}

// ---------------------------------------------------------------- node header

TEST_CASE("node header: static layout") {
    CHECK(sizeof(node_header) == 64);
    CHECK(node_header_size == 64);
    CHECK(alignof(node_header) == 1);
    CHECK(std::is_trivially_copyable_v<node_header>);
    CHECK(offsetof(node_header, magic) == 0);
    CHECK(offsetof(node_header, checksum) == 4);
    CHECK(offsetof(node_header, self) == 8);
    CHECK(offsetof(node_header, txid) == 16);
    CHECK(offsetof(node_header, left) == 24);
    CHECK(offsetof(node_header, right) == 32);
    CHECK(offsetof(node_header, tree_id) == 40);
    CHECK(offsetof(node_header, count) == 44);
    CHECK(offsetof(node_header, level) == 48);
    CHECK(offsetof(node_header, flags) == 50);
    CHECK(offsetof(node_header, key_size) == 52);
    CHECK(offsetof(node_header, payload_size) == 54);
    CHECK(offsetof(node_header, data_start) == 56);
    CHECK(offsetof(node_header, reserved) == 60);
    CHECK(node_checksum_offset == 4);
}

TEST_CASE("node header: checksum ignores its own field and covers every other byte") {
    const std::uint32_t block_size = 512;
    const std::uint32_t seed = crc32c_raw(~0u, "0123456789abcdef", 16); // as ext4 seeds from the UUID
    auto block = random_bytes(block_size, 99);
    const std::uint32_t base = node_checksum(block.data(), block_size, seed);

    // Same as a plain crc over the block with the field zeroed.
    auto zeroed = block;
    std::memset(zeroed.data() + 4, 0, 4);
    CHECK(base == crc32c_raw(seed, zeroed.data(), block_size));

    // Changing the checksum field does not change the checksum.
    for (unsigned i = 4; i < 8; ++i) {
        auto b = block;
        b[i] ^= 0x5A;
        CHECK(node_checksum(b.data(), block_size, seed) == base);
    }
    // Changing any other byte does.
    for (std::uint32_t i = 0; i < block_size; ++i) {
        if (i >= 4 && i < 8) continue;
        auto b = block;
        b[i] ^= 0x01;
        CAPTURE(i);
        REQUIRE(node_checksum(b.data(), block_size, seed) != base);
    }
    // A different seed gives a different checksum.
    CHECK(node_checksum(block.data(), block_size, seed ^ 1u) != base);

    // seal_node stores it, and sealing again is idempotent.
    seal_node(block.data(), block_size, seed);
    CHECK(header_of(block.data())->checksum.get() == base);
    CHECK(node_checksum(block.data(), block_size, seed) == base);
    seal_node(block.data(), block_size, seed);
    CHECK(header_of(block.data())->checksum.get() == base);
}
