// SPDX-License-Identifier: MIT
// libFuzzer target: the model filesystem (tests/model_fs.hpp) driven by the
// input. Each operation is decoded from a few bytes (below); after every one
// the rmap, refcount and parent pointer maps must equal what the model says,
// every verify() must be clean and the refcount/rmap cross-check must find
// nothing (model_fs::check_all). Any mismatch prints a line to stderr and
// calls __builtin_trap().
//
// Decoding (bytes past the end read as 0), at most 256 operations:
//   op = byte % 8
//   0 create   parent dir = byte, name = 1 byte, dir? = byte & 1
//   1 write    file = byte, logical = byte, length = 1 + byte % 32
//   2 punch    file, logical, length = 1 + byte % 48
//   3 truncate file, size = byte
//   4 clone    src file, dst file, src logical, dst logical, length = 1 + byte % 48
//   5 link     file, parent dir, name
//   6 unlink   file, which link
//   7 rename   file, which link, new parent dir, new name
// "file" and "dir" pick among the existing ones (index % count); an
// operation that makes no sense (no files yet, a name taken, a clone the
// rmap cannot hold) is skipped.
#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace {
[[noreturn]] void model_fail(const char* file, int line, const char* what) {
    std::fprintf(stderr, "fuzz_model: check failed at %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    __builtin_trap();
}
} // namespace

#define JT_MODEL_REQUIRE(cond)                                                                                         \
    do {                                                                                                               \
        if (!(cond)) model_fail(__FILE__, __LINE__, #cond);                                                            \
    } while (0)
#include "../tests/model_fs.hpp"

namespace {

using namespace jt_model;

struct reader {
    const std::uint8_t* p;
    std::size_t n;
    std::uint8_t byte() noexcept {
        if (n == 0) return 0;
        --n;
        return *p++;
    }
};

std::string name_of(std::uint8_t b) { return "n" + std::to_string(b); }

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    reader in{data, size};
    memory_backend be;
    model_fs<memory_backend> fs(be);
    std::vector<std::uint64_t> dirs{root_ino};
    for (int step = 0; step < 256 && in.n > 0; ++step) {
        std::vector<std::uint64_t> files;
        for (auto& [ino, node] : fs.inodes)
            if (!node.dir) files.push_back(ino);
        auto file = [&] { return files[in.byte() % files.size()]; };
        auto dir = [&] { return dirs[in.byte() % dirs.size()]; };
        auto links_of = [&](std::uint64_t f) {
            std::vector<entry> ls;
            for (auto& l : fs.links)
                if (std::get<0>(l) == f) ls.push_back(l);
            return ls;
        };
        unsigned op = in.byte() % 8;
        if (op != 0 && files.empty()) op = 0;
        switch (op) {
        case 0: {
            const std::uint64_t p = dir();
            const std::string name = name_of(in.byte());
            const bool is_dir = in.byte() & 1;
            if (fs.name_taken(p, name)) break;
            const std::uint64_t ino = fs.create(p, name, is_dir);
            if (is_dir) dirs.push_back(ino);
            break;
        }
        case 1: {
            const std::uint64_t f = file(), l = in.byte();
            fs.write(f, l, 1 + in.byte() % 32);
            break;
        }
        case 2: {
            const std::uint64_t f = file(), l = in.byte();
            fs.punch(f, l, 1 + in.byte() % 48);
            break;
        }
        case 3: {
            const std::uint64_t f = file();
            fs.truncate(f, in.byte());
            break;
        }
        case 4: {
            const std::uint64_t s = file(), t = file(), sl = in.byte(), dl = in.byte(), n = 1 + in.byte() % 48;
            if (fs.can_clone(s, sl, t, dl, n)) fs.clone(s, sl, t, dl, n);
            break;
        }
        case 5: {
            const std::uint64_t f = file(), p = dir();
            const std::string name = name_of(in.byte());
            if (!fs.name_taken(p, name)) fs.link_to(f, p, name);
            break;
        }
        case 6: {
            const auto ls = links_of(file());
            const std::uint8_t which = in.byte();
            if (!ls.empty()) fs.unlink(ls[which % ls.size()]);
            break;
        }
        default: {
            const auto ls = links_of(file());
            const std::uint8_t which = in.byte();
            const std::uint64_t np = dir();
            const std::string nn = name_of(in.byte());
            if (!ls.empty() && !fs.name_taken(np, nn)) fs.rename(ls[which % ls.size()], np, nn);
            break;
        }
        }
        fs.check_all();
    }
    return 0;
}
