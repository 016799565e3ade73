// SPDX-License-Identifier: MIT
// hosted::run_store: sorted runs in temporary files and their k-way merge.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <jbtree/hosted/external_sort.hpp>

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using jbtree::hosted::run_store;
using jbtree::hosted::spill_file;

struct u64_codec {
    static constexpr std::size_t max_size = 8;
    static std::size_t encode(const std::uint64_t& x, unsigned char* o) noexcept {
        std::memcpy(o, &x, 8);
        return 8;
    }
    static std::size_t decode(const unsigned char* p, std::size_t avail, std::uint64_t& x) noexcept {
        if (avail < 8) return 0;
        std::memcpy(&x, p, 8);
        return 8;
    }
    // Only the high 32 bits are the key: equal keys must come out in the
    // order of their runs (the low bits say which run).
    static bool less(const std::uint64_t& a, const std::uint64_t& b) noexcept { return (a >> 32) < (b >> 32); }
};

// Variable-length records: a length byte, then the bytes.
struct str_codec {
    static constexpr std::size_t max_size = 1 + 255;
    static std::size_t encode(const std::string& s, unsigned char* o) noexcept {
        o[0] = static_cast<unsigned char>(s.size());
        std::memcpy(o + 1, s.data(), s.size());
        return 1 + s.size();
    }
    static std::size_t decode(const unsigned char* p, std::size_t avail, std::string& s) noexcept {
        if (avail < 1 || avail < 1 + std::size_t{p[0]}) return 0;
        s.assign(reinterpret_cast<const char*>(p + 1), p[0]);
        return 1 + std::size_t{p[0]};
    }
    static bool less(const std::string& a, const std::string& b) noexcept { return a < b; }
};

std::string make_dir() {
    char t[] = "/tmp/jbtree-xsort-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    return t;
}

std::size_t entries(const std::string& dir) {
    std::size_t n = 0;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
    closedir(d);
    return n;
}

template <class T, class C>
std::vector<T> drain(run_store<T, C>& s) {
    typename run_store<T, C>::merge m;
    REQUIRE(s.open_merge(m) == 0);
    std::vector<T> out;
    T x{};
    for (bool got = true;;) {
        REQUIRE(m.next(x, got) == 0);
        if (!got) break;
        out.push_back(x);
    }
    return out;
}

} // namespace

TEST_CASE("run_store: many runs merged in several passes give the records sorted, equal keys in run order") {
    const std::string dir = make_dir();
    std::mt19937_64 rng(5);
    for (std::size_t fan_in : {2u, 3u, 7u, 1000u}) {
        CAPTURE(fan_in);
        run_store<std::uint64_t, u64_codec> s(64); // buffers of 64 bytes: 8 records
        REQUIRE(s.open(dir.c_str()) == 0);
        CHECK(entries(dir) == 0); // unlinked at once
        std::vector<std::uint64_t> all;
        for (std::uint64_t r = 0; r < 40; ++r) {
            std::vector<std::uint64_t> run(rng() % 50); // some empty
            for (std::uint64_t& x : run) x = (rng() % 300) << 32 | r;
            std::stable_sort(run.begin(), run.end(), u64_codec::less);
            REQUIRE(s.write_run(run.data(), run.size()) == 0);
            all.insert(all.end(), run.begin(), run.end());
        }
        REQUIRE(s.reduce(fan_in) == 0);
        CHECK(s.runs() <= std::max<std::size_t>(fan_in, 2));
        if (fan_in == 2) CHECK(s.merge_passes() >= 4);
        std::stable_sort(all.begin(), all.end(), u64_codec::less); // run order among equal keys
        CHECK(drain(s) == all);
        CHECK(drain(s) == all); // a second pass reads the same
        CHECK(s.records() == all.size());
        CHECK(entries(dir) == 0);
    }
    rmdir(dir.c_str());
}

TEST_CASE("run_store: variable-length records across buffer boundaries") {
    const std::string dir = make_dir();
    std::mt19937 rng(9);
    run_store<std::string, str_codec> s(512);
    REQUIRE(s.open(dir.c_str()) == 0);
    std::vector<std::string> all;
    for (int r = 0; r < 25; ++r) {
        std::vector<std::string> run(rng() % 40);
        for (std::string& x : run) x = std::string(rng() % 256, static_cast<char>('a' + rng() % 26));
        std::sort(run.begin(), run.end());
        REQUIRE(s.write_run(run.data(), run.size()) == 0);
        all.insert(all.end(), run.begin(), run.end());
    }
    REQUIRE(s.reduce(3) == 0);
    std::sort(all.begin(), all.end());
    CHECK(drain(s) == all);
    CHECK(entries(dir) == 0);
    rmdir(dir.c_str());
}

TEST_CASE("spill_file: errno when the directory cannot hold it; nothing left behind") {
    spill_file f;
    CHECK(f.open("/nonexistent-jbtree-dir") == ENOENT);
    CHECK(f.open("") == EINVAL);
    CHECK(!f.is_open());
    run_store<std::uint64_t, u64_codec> s(64);
    CHECK(s.open("/nonexistent-jbtree-dir") == ENOENT);
    const std::uint64_t x = 1;
    CHECK(s.write_run(&x, 1) == EBADF);
    const std::string dir = make_dir();
    {
        spill_file g;
        REQUIRE(g.open(dir.c_str()) == 0);
        const char data[] = "some bytes";
        REQUIRE(g.append(data, sizeof data) == 0);
        char back[sizeof data] = {};
        std::size_t got = 0;
        REQUIRE(g.read(0, back, sizeof back, &got) == 0);
        CHECK(got == sizeof data);
        CHECK(std::memcmp(back, data, sizeof data) == 0);
        CHECK(entries(dir) == 0);
        REQUIRE(g.truncate() == 0);
        CHECK(g.size() == 0);
    }
    rmdir(dir.c_str());
}
