// The BlockDevice implementations: memory_device, hosted::file_device, and
// the crash-simulating test device (tests/crash_device.hpp).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include "crash_device.hpp"

#include <jbtree/hosted/file_device.hpp>
#include <jbtree/storage/memory_device.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace jt;

static_assert(BlockDevice<memory_device>);
static_assert(BlockDevice<hosted::file_device>);
static_assert(BlockDevice<crash_device>);
static_assert(BlockDevice<crash_state>);
static_assert(!std::is_copy_constructible_v<hosted::file_device>);
static_assert(std::is_nothrow_move_constructible_v<hosted::file_device>);
static_assert(std::is_nothrow_move_assignable_v<hosted::file_device>);

namespace {

using bytes = std::vector<unsigned char>;

bytes filled(std::size_t n, unsigned char b) { return bytes(n, b); }

// Every byte of [p, p + n) equals b.
bool all_are(const unsigned char* p, std::size_t n, unsigned char b) {
    for (std::size_t i = 0; i < n; ++i)
        if (p[i] != b) return false;
    return true;
}

// A block whose bytes all differ from neighbours' and from other tags: byte i
// is tag ^ (i * 7), so a misplaced half block or wrong offset shows.
bytes tagged(std::size_t bs, unsigned char tag) {
    bytes b(bs);
    for (std::size_t i = 0; i < bs; ++i) b[i] = static_cast<unsigned char>(tag ^ (i * 7));
    return b;
}

// A unique file name under /tmp, removed at the end of the scope.
struct temp_file {
    std::string path;
    temp_file() {
        char name[] = "/tmp/jbtree-devices-XXXXXX";
        const int fd = ::mkstemp(name);
        REQUIRE(fd >= 0);
        ::close(fd);
        path = name;
    }
    ~temp_file() { ::unlink(path.c_str()); }
    const char* c_str() const { return path.c_str(); }
    std::uint64_t size() const {
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        return static_cast<std::uint64_t>(st.st_size);
    }
    // The file's bytes [off, off + n), read without the device.
    bytes read(std::uint64_t off, std::size_t n) const {
        const int fd = ::open(path.c_str(), O_RDONLY);
        REQUIRE(fd >= 0);
        bytes b(n);
        const ssize_t r = ::pread(fd, b.data(), n, static_cast<off_t>(off));
        ::close(fd);
        REQUIRE(r == static_cast<ssize_t>(n));
        return b;
    }
};

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

hosted::file_device must_open(const char* path, std::uint32_t bs, hosted::open_mode m = hosted::open_mode::read_write) {
    int err = -1;
    auto r = hosted::file_device::open(path, bs, m, &err);
    INFO("open errno " << err);
    REQUIRE(r);
    REQUIRE(err == 0);
    return rvalue(r).value();
}

} // namespace

// ---------------------------------------------------------------- memory_device

TEST_CASE("memory device: parameter checks") {
    bytes mem(8 * 1024);
    for (std::uint32_t bs : {0u, 1u, 256u, 511u, 1000u, 1025u, 131072u}) {
        INFO("block size " << bs);
        REQUIRE(memory_device::make(mem.data(), bs, 1).error() == errc::invalid);
        memory_device d(mem.data(), bs, 1);
        REQUIRE(!d.valid());
        unsigned char buf[1];
        REQUIRE(d.read_blocks(0, 0, buf) == errc::invalid);
        REQUIRE(d.write_blocks(0, 0, buf) == errc::invalid);
        REQUIRE(d.flush() == errc::invalid);
    }
    for (std::uint32_t bs : {512u, 1024u, 4096u, 65536u}) REQUIRE(memory_device::make(mem.data(), bs, 0));
    REQUIRE(memory_device::make(nullptr, 1024, 1).error() == errc::invalid);
    REQUIRE(memory_device::make(nullptr, 1024, 0)); // an empty device needs no memory
    // block_size * block_count must fit in size_t.
    REQUIRE(memory_device::make(mem.data(), 4096, std::numeric_limits<std::uint64_t>::max() / 2048).error() ==
            errc::invalid);
    memory_device none;
    REQUIRE(!none.valid());
    REQUIRE(none.block_count() == 0);
    REQUIRE(none.flush() == errc::invalid);
}

TEST_CASE("memory device: round trip in place, counters") {
    constexpr std::uint32_t bs = 1024;
    bytes mem(8 * bs, 0xEE);
    auto r = memory_device::make(mem.data(), bs, 8);
    REQUIRE(r);
    memory_device d = *r;
    REQUIRE(d.block_size() == bs);
    REQUIRE(d.block_count() == 8);
    REQUIRE(d.data() == mem.data());

    bytes in = tagged(bs, 1);
    const bytes b2 = tagged(bs, 2);
    in.insert(in.end(), b2.begin(), b2.end());
    REQUIRE(d.write_blocks(3, 2, in.data()) == errc::ok);
    // The memory is the disk image: blocks 3 and 4 at their byte offsets.
    REQUIRE(std::memcmp(mem.data() + 3 * bs, in.data(), 2 * bs) == 0);
    REQUIRE(all_are(mem.data(), 3 * bs, 0xEE));
    REQUIRE(all_are(mem.data() + 5 * bs, 3 * bs, 0xEE));

    bytes out(3 * bs);
    REQUIRE(d.read_blocks(2, 3, out.data()) == errc::ok);
    REQUIRE(all_are(out.data(), bs, 0xEE));
    REQUIRE(std::memcmp(out.data() + bs, in.data(), 2 * bs) == 0);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.flush() == errc::ok);

    REQUIRE(d.blocks_written() == 2);
    REQUIRE(d.write_calls() == 1);
    REQUIRE(d.blocks_read() == 3);
    REQUIRE(d.read_calls() == 1);
    REQUIRE(d.flushes() == 2);

    // The last block and n == 0 at the end are fine.
    REQUIRE(d.write_blocks(7, 1, in.data()) == errc::ok);
    REQUIRE(d.read_blocks(8, 0, out.data()) == errc::ok);
    REQUIRE(std::memcmp(mem.data() + 7 * bs, in.data(), bs) == 0);
    REQUIRE(d.write_calls() == 2);
    REQUIRE(d.blocks_written() == 3);

    d.reset_counters();
    REQUIRE(d.blocks_written() + d.write_calls() + d.blocks_read() + d.read_calls() + d.flushes() == 0);

    // Overlapping buffer (the device memory itself) is allowed: memmove.
    REQUIRE(d.write_blocks(4, 2, mem.data() + 3 * bs) == errc::ok);
    REQUIRE(std::memcmp(mem.data() + 4 * bs, in.data(), 2 * bs) == 0);
}

TEST_CASE("memory device: range errors change nothing") {
    constexpr std::uint32_t bs = 512;
    bytes mem(4 * bs, 0x11);
    memory_device d(mem.data(), bs, 4);
    REQUIRE(d.valid());
    bytes buf(8 * bs, 0x22);
    const std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
    REQUIRE(d.write_blocks(4, 1, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(3, 2, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(0, 5, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(big, 1, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(big, 2, buf.data()) == errc::range); // blk + n wraps
    REQUIRE(d.write_blocks(5, 0, buf.data()) == errc::range);
    REQUIRE(d.read_blocks(4, 1, buf.data()) == errc::range);
    REQUIRE(d.read_blocks(2, std::numeric_limits<std::uint32_t>::max(), buf.data()) == errc::range);
    REQUIRE(d.write_blocks(0, 1, nullptr) == errc::invalid);
    REQUIRE(d.read_blocks(0, 1, nullptr) == errc::invalid);
    REQUIRE(all_are(mem.data(), mem.size(), 0x11));
    REQUIRE(all_are(buf.data(), buf.size(), 0x22));
    REQUIRE(d.write_calls() == 0);
    REQUIRE(d.read_calls() == 0);
    REQUIRE(d.blocks_written() == 0);
}

// ---------------------------------------------------------------- file_device

TEST_CASE("file device: create, write, flush, read back, reopen") {
    constexpr std::uint32_t bs = 1024;
    temp_file tf;
    {
        // Junk in the file first: create() must empty it.
        const bytes junk = filled(3 * bs + 17, 0x5A);
        const int fd = ::open(tf.c_str(), O_WRONLY);
        REQUIRE(::write(fd, junk.data(), junk.size()) == static_cast<ssize_t>(junk.size()));
        ::close(fd);
    }
    int err = -1;
    auto r = hosted::file_device::create(tf.c_str(), bs, 16, &err);
    REQUIRE(r);
    REQUIRE(err == 0);
    hosted::file_device d = rvalue(r).value();
    REQUIRE(d.is_open());
    REQUIRE(!d.read_only());
    REQUIRE(!d.failed());
    REQUIRE(d.block_size() == bs);
    REQUIRE(d.block_count() == 16);
    REQUIRE(tf.size() == 16 * bs);

    bytes all(16 * bs, 0xFF);
    REQUIRE(d.read_blocks(0, 16, all.data()) == errc::ok);
    REQUIRE(all_are(all.data(), all.size(), 0)); // the junk is gone
    REQUIRE(d.bytes_read() == 16 * bs);
    REQUIRE(d.read_calls() == 1);

    bytes in = tagged(bs, 0x30);
    for (unsigned char t : {0x31, 0x32}) {
        const bytes b = tagged(bs, t);
        in.insert(in.end(), b.begin(), b.end());
    }
    REQUIRE(d.write_blocks(2, 3, in.data()) == errc::ok);
    REQUIRE(d.write_blocks(15, 1, in.data()) == errc::ok);
    REQUIRE(d.write_calls() == 2);
    REQUIRE(d.bytes_written() == 4 * bs);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.flushes() == 1);

    // In the file at block_number * block_size, seen without the device.
    REQUIRE(tf.read(2 * bs, 3 * bs) == in);
    REQUIRE(tf.read(15 * bs, bs) == tagged(bs, 0x30));
    REQUIRE(all_are(tf.read(5 * bs, 10 * bs).data(), 10 * bs, 0));

    bytes back(3 * bs);
    REQUIRE(d.read_blocks(2, 3, back.data()) == errc::ok);
    REQUIRE(back == in);
    REQUIRE(d.bytes_read() == 19 * bs);
    REQUIRE(d.read_calls() == 2);
    d.reset_counters();
    REQUIRE(d.bytes_read() + d.bytes_written() + d.read_calls() + d.write_calls() + d.flushes() == 0);
    REQUIRE(d.close() == errc::ok);
    REQUIRE(!d.is_open());
    REQUIRE(d.close() == errc::ok); // twice is fine
    REQUIRE(d.read_blocks(0, 1, back.data()) == errc::invalid);
    REQUIRE(d.write_blocks(0, 1, back.data()) == errc::invalid);
    REQUIRE(d.flush() == errc::invalid);

    // Reopen read-write: same contents, block count from the size.
    hosted::file_device e = must_open(tf.c_str(), bs);
    REQUIRE(e.block_count() == 16);
    REQUIRE(e.read_blocks(2, 3, back.data()) == errc::ok);
    REQUIRE(back == in);
    REQUIRE(e.write_blocks(0, 1, in.data()) == errc::ok);
    REQUIRE(e.flush() == errc::ok);
    REQUIRE(tf.read(0, bs) == tagged(bs, 0x30));

    // Another block size: 16 KiB is four 4 KiB blocks.
    hosted::file_device f = must_open(tf.c_str(), 4096);
    REQUIRE(f.block_count() == 4);
    bytes big(4096);
    REQUIRE(f.read_blocks(0, 1, big.data()) == errc::ok);
    REQUIRE(std::memcmp(big.data() + 2 * bs, in.data(), 2 * bs) == 0);
}

TEST_CASE("file device: a partial last block is not part of the device") {
    constexpr std::uint32_t bs = 512;
    temp_file tf;
    REQUIRE(::truncate(tf.c_str(), 5 * bs + 100) == 0);
    hosted::file_device d = must_open(tf.c_str(), bs);
    REQUIRE(d.block_count() == 5);
    bytes b(bs);
    REQUIRE(d.read_blocks(5, 1, b.data()) == errc::range);
    REQUIRE(d.read_blocks(4, 1, b.data()) == errc::ok);
    hosted::file_device big = must_open(tf.c_str(), 4096);
    REQUIRE(big.block_count() == 0);
    REQUIRE(big.read_blocks(0, 1, b.data()) == errc::range);
    REQUIRE(big.read_blocks(0, 0, b.data()) == errc::ok);
}

TEST_CASE("file device: read-only mode refuses writes") {
    constexpr std::uint32_t bs = 512;
    temp_file tf;
    {
        auto r = hosted::file_device::create(tf.c_str(), bs, 4);
        REQUIRE(r);
        REQUIRE(r->write_blocks(1, 1, tagged(bs, 9).data()) == errc::ok);
        REQUIRE(r->flush() == errc::ok);
    }
    hosted::file_device d = must_open(tf.c_str(), bs, hosted::open_mode::read_only);
    REQUIRE(d.read_only());
    REQUIRE(d.block_count() == 4);
    bytes b(bs);
    REQUIRE(d.read_blocks(1, 1, b.data()) == errc::ok);
    REQUIRE(b == tagged(bs, 9));
    const bytes junk = filled(bs, 0xAB);
    REQUIRE(d.write_blocks(1, 1, junk.data()) == errc::invalid);
    REQUIRE(d.write_blocks(9, 1, junk.data()) == errc::range); // range is checked first
    REQUIRE(d.write_calls() == 0);
    REQUIRE(d.bytes_written() == 0);
    REQUIRE(d.flush() == errc::ok); // nothing to make durable
    REQUIRE(d.flushes() == 1);
    REQUIRE(!d.failed()); // a refused write is not a medium failure
    REQUIRE(tf.read(bs, bs) == tagged(bs, 9));
    // The descriptor really is read-only.
    REQUIRE(::pwrite(d.fd(), junk.data(), bs, 0) == -1);
    REQUIRE(errno == EBADF);
}

TEST_CASE("file device: open and create errors") {
    temp_file tf;
    int err = -1;
    for (std::uint32_t bs : {0u, 256u, 1000u, 131072u}) {
        INFO("block size " << bs);
        REQUIRE(hosted::file_device::create(tf.c_str(), bs, 1, &err).error() == errc::invalid);
        REQUIRE(err == 0);
        REQUIRE(hosted::file_device::open(tf.c_str(), bs).error() == errc::invalid);
    }
    REQUIRE(hosted::file_device::open(nullptr, 512).error() == errc::invalid);
    REQUIRE(hosted::file_device::create(nullptr, 512, 1).error() == errc::invalid);

    const std::string missing = tf.path + "-missing/x";
    REQUIRE(hosted::file_device::open(missing.c_str(), 512, hosted::open_mode::read_write, &err).error() ==
            errc::io);
    REQUIRE(err == ENOENT);
    REQUIRE(hosted::file_device::create(missing.c_str(), 512, 1, &err).error() == errc::io);
    REQUIRE(err == ENOENT);

    // Not a regular file or block device.
    REQUIRE(hosted::file_device::open("/dev/null", 512, hosted::open_mode::read_write, &err).error() ==
            errc::invalid);
    REQUIRE(hosted::file_device::create("/dev/null", 512, 1, &err).error() == errc::invalid);
    REQUIRE(hosted::file_device::open("/tmp", 512, hosted::open_mode::read_only, &err).error() == errc::invalid);
    REQUIRE(hosted::file_device::open("/tmp", 512, hosted::open_mode::read_write, &err).error() == errc::io);
    REQUIRE(err == EISDIR);

    // Larger than off_t can address: refused before touching the file.
    REQUIRE(::truncate(tf.c_str(), 777) == 0);
    REQUIRE(hosted::file_device::create(tf.c_str(), 65536, std::numeric_limits<std::uint64_t>::max() / 4096)
                .error() == errc::range);
    REQUIRE(tf.size() == 777);

    hosted::file_device closed;
    bytes b(512);
    REQUIRE(!closed.is_open());
    REQUIRE(closed.block_count() == 0);
    REQUIRE(closed.read_blocks(0, 0, b.data()) == errc::invalid);
    REQUIRE(closed.write_blocks(0, 1, b.data()) == errc::invalid);
    REQUIRE(closed.flush() == errc::invalid);
}

TEST_CASE("file device: range errors") {
    constexpr std::uint32_t bs = 512;
    temp_file tf;
    auto r = hosted::file_device::create(tf.c_str(), bs, 4);
    REQUIRE(r);
    hosted::file_device d = rvalue(r).value();
    bytes buf(8 * bs, 0x42);
    const std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
    REQUIRE(d.write_blocks(4, 1, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(3, 2, buf.data()) == errc::range);
    REQUIRE(d.write_blocks(big, 2, buf.data()) == errc::range);
    REQUIRE(d.read_blocks(4, 1, buf.data()) == errc::range);
    REQUIRE(d.read_blocks(1, std::numeric_limits<std::uint32_t>::max(), buf.data()) == errc::range);
    REQUIRE(d.read_blocks(5, 0, buf.data()) == errc::range);
    REQUIRE(d.read_blocks(4, 0, buf.data()) == errc::ok);
    REQUIRE(d.write_blocks(0, 1, nullptr) == errc::invalid);
    REQUIRE(d.bytes_written() == 0);
    REQUIRE(d.write_calls() == 0);
    REQUIRE(!d.failed());
    REQUIRE(tf.size() == 4 * bs); // nothing written past the end
    REQUIRE(all_are(tf.read(0, 4 * bs).data(), 4 * bs, 0));
}

TEST_CASE("file device: moves carry the descriptor, destruction closes it") {
    constexpr std::uint32_t bs = 512;
    temp_file t1, t2;
    REQUIRE(hosted::file_device::create(t1.c_str(), bs, 2));
    REQUIRE(hosted::file_device::create(t2.c_str(), bs, 3));
    hosted::file_device a = must_open(t1.c_str(), bs);
    const int fd1 = a.fd();
    REQUIRE(a.write_blocks(0, 1, tagged(bs, 1).data()) == errc::ok);

    hosted::file_device b = rvalue(a);
    REQUIRE(!a.is_open());
    REQUIRE(a.fd() == -1);
    REQUIRE(b.fd() == fd1);
    REQUIRE(b.block_count() == 2);
    REQUIRE(b.write_calls() == 1); // counters move with it
    bytes blk(bs);
    REQUIRE(b.read_blocks(0, 1, blk.data()) == errc::ok);
    REQUIRE(blk == tagged(bs, 1));
    REQUIRE(a.read_blocks(0, 1, blk.data()) == errc::invalid);

    hosted::file_device c = must_open(t2.c_str(), bs);
    const int fd2 = c.fd();
    REQUIRE(fd_is_open(fd2));
    c = rvalue(b); // closes c's own descriptor
    REQUIRE(!fd_is_open(fd2));
    REQUIRE(c.fd() == fd1);
    REQUIRE(c.block_count() == 2);
    REQUIRE(!b.is_open());
    c = rvalue(c); // self-move keeps the descriptor
    REQUIRE(c.fd() == fd1);
    REQUIRE(fd_is_open(fd1));
    {
        hosted::file_device d = rvalue(c);
        REQUIRE(fd_is_open(fd1));
    }
    REQUIRE(!fd_is_open(fd1));
}

TEST_CASE("file device: a file that shrank under the device gives io") {
    constexpr std::uint32_t bs = 1024;
    temp_file tf;
    auto r = hosted::file_device::create(tf.c_str(), bs, 4);
    REQUIRE(r);
    REQUIRE(::truncate(tf.c_str(), 2 * bs + 10) == 0);
    bytes b(2 * bs);
    REQUIRE(r->read_blocks(0, 2, b.data()) == errc::ok);
    REQUIRE(r->read_blocks(2, 1, b.data()) == errc::io); // 10 bytes, then end of file
    REQUIRE(r->read_blocks(3, 1, b.data()) == errc::io);
    REQUIRE(r->read_calls() == 1);
    REQUIRE(r->bytes_read() == 2 * bs + 10); // what the kernel delivered
}

TEST_CASE("file device: short writes are resumed; a failed write is sticky") {
    // RLIMIT_FSIZE cuts a write at the limit (a short write), and the next
    // write at the limit fails with EFBIG: a real pwrite failure without a
    // broken disk.
    constexpr std::uint32_t bs = 1024;
    temp_file tf;
    auto r = hosted::file_device::create(tf.c_str(), bs, 8);
    REQUIRE(r);
    hosted::file_device d = rvalue(r).value();
    bytes in = tagged(bs, 0x61);
    for (unsigned char t : {0x62, 0x63}) {
        const bytes b = tagged(bs, t);
        in.insert(in.end(), b.begin(), b.end());
    }

    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old;
    lim.rlim_cur = 4 * bs + 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    const errc e = d.write_blocks(3, 3, in.data()); // 3072 bytes at 3072: 1124 fit
    const int saved_errno = d.last_errno();
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
    std::signal(SIGXFSZ, old_handler);

    REQUIRE(e == errc::io);
    REQUIRE(saved_errno == EFBIG);
    REQUIRE(d.failed());
    REQUIRE(d.bytes_written() == bs + 100); // the short write was continued
    REQUIRE(d.write_calls() == 0);
    // What made it to the file: block 3 whole, block 4's first 100 bytes.
    REQUIRE(tf.read(3 * bs, bs) == tagged(bs, 0x61));
    const bytes b4 = tf.read(4 * bs, bs);
    REQUIRE(std::memcmp(b4.data(), in.data() + bs, 100) == 0);
    REQUIRE(all_are(b4.data() + 100, bs - 100, 0));

    // Sticky: no more writes or flushes, even ones that would now succeed.
    REQUIRE(d.write_blocks(0, 1, in.data()) == errc::io);
    REQUIRE(d.flush() == errc::io);
    REQUIRE(all_are(tf.read(0, bs).data(), bs, 0));
    REQUIRE(d.bytes_written() == bs + 100);
    // Reads still work.
    bytes back(bs);
    REQUIRE(d.read_blocks(3, 1, back.data()) == errc::ok);
    REQUIRE(back == tagged(bs, 0x61));
    // A fresh open starts clean.
    hosted::file_device again = must_open(tf.c_str(), bs);
    REQUIRE(!again.failed());
    REQUIRE(again.write_blocks(0, 1, in.data()) == errc::ok);
    REQUIRE(again.flush() == errc::ok);
}

TEST_CASE("file device: block device (JBTREE_TEST_BLOCK_DEVICE)") {
    // Needs a block device to spare, e.g. a loop device over a scratch file:
    //   JBTREE_TEST_BLOCK_DEVICE=/dev/loop0 (it is opened read-only).
    const char* path = std::getenv("JBTREE_TEST_BLOCK_DEVICE");
    if (!path || !*path) {
        MESSAGE("JBTREE_TEST_BLOCK_DEVICE not set: block device open not tested");
        return;
    }
    const int fd = ::open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    const off_t size = ::lseek(fd, 0, SEEK_END);
    ::close(fd);
    REQUIRE(size > 0);
    hosted::file_device d = must_open(path, 512, hosted::open_mode::read_only);
    REQUIRE(d.block_count() == static_cast<std::uint64_t>(size) / 512);
    bytes b(512);
    REQUIRE(d.read_blocks(d.block_count() - 1, 1, b.data()) == errc::ok);
    REQUIRE(d.read_blocks(d.block_count(), 1, b.data()) == errc::range);
}

// ---------------------------------------------------------------- crash_device

TEST_CASE("crash device: a plain device before recording") {
    constexpr std::uint32_t bs = 512;
    crash_device d(bs, 6);
    REQUIRE(d.block_size() == bs);
    REQUIRE(d.block_count() == 6);
    REQUIRE(d.image().size() == 6 * bs);
    REQUIRE(all_are(d.image().data(), d.image().size(), 0));
    REQUIRE(!d.recording());
    bytes two = tagged(bs, 1);
    const bytes t2 = tagged(bs, 2);
    two.insert(two.end(), t2.begin(), t2.end());
    REQUIRE(d.write_blocks(4, 2, two.data()) == errc::ok);
    REQUIRE(d.events() == 0); // not recording
    REQUIRE(std::memcmp(d.block(4), two.data(), 2 * bs) == 0);
    bytes out(2 * bs);
    REQUIRE(d.read_blocks(4, 2, out.data()) == errc::ok);
    REQUIRE(out == two);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.blocks_written() == 2);
    REQUIRE(d.write_calls() == 1);
    REQUIRE(d.blocks_read() == 2);
    REQUIRE(d.read_calls() == 1);
    REQUIRE(d.flushes() == 1);
    REQUIRE(d.flush_marks().empty());

    REQUIRE(d.write_blocks(5, 2, two.data()) == errc::range);
    REQUIRE(d.write_blocks(6, 1, two.data()) == errc::range);
    REQUIRE(d.read_blocks(std::numeric_limits<std::uint64_t>::max(), 2, out.data()) == errc::range);
    REQUIRE(d.write_blocks(0, 1, nullptr) == errc::invalid);
    REQUIRE(d.write_blocks(6, 0, nullptr) == errc::ok);
    REQUIRE(all_are(d.block(0), 4 * bs, 0));
    REQUIRE(d.blocks_written() == 2);

    crash_device bad(1000, 4);
    REQUIRE(bad.block_count() == 0);
    REQUIRE(bad.read_blocks(0, 0, out.data()) == errc::invalid);
    REQUIRE(bad.flush() == errc::invalid);

    // From an image: size / block_size blocks, contents as given.
    bytes img = tagged(3 * bs + 7, 0x44);
    crash_device from(bs, img);
    REQUIRE(from.block_count() == 3);
    REQUIRE(from.read_blocks(1, 2, out.data()) == errc::ok);
    REQUIRE(std::memcmp(out.data(), img.data() + bs, 2 * bs) == 0);
}

namespace {

// The scenario most crash tests below share (1 KiB blocks, 8 blocks).
// Before recording: block 1 = 0x11 everywhere, the rest zero. Then:
//   e0: 1 <- A    e1: 2 <- B    flush (mark 2)
//   e2: 3 <- C    e3: 1 <- D    e4, e5: 4, 5 <- E, F (one call)    flush (mark 6)
//   e6: 1 <- G    e7: 1 <- H
// with A..H = tagged(bs, 'a'..'h').
constexpr std::uint32_t sbs = 1024;
bytes T(char c) { return tagged(sbs, static_cast<unsigned char>(c)); }

void run_scenario(crash_device& d) {
    REQUIRE(d.write_blocks(1, 1, filled(sbs, 0x11).data()) == errc::ok);
    d.start_recording();
    REQUIRE(d.recording());
    REQUIRE(d.write_blocks(1, 1, T('a').data()) == errc::ok);
    REQUIRE(d.write_blocks(2, 1, T('b').data()) == errc::ok);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.write_blocks(3, 1, T('c').data()) == errc::ok);
    REQUIRE(d.write_blocks(1, 1, T('d').data()) == errc::ok);
    bytes ef = T('e');
    const bytes f = T('f');
    ef.insert(ef.end(), f.begin(), f.end());
    REQUIRE(d.write_blocks(4, 2, ef.data()) == errc::ok);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.write_blocks(1, 1, T('g').data()) == errc::ok);
    REQUIRE(d.write_blocks(1, 1, T('h').data()) == errc::ok);
}

// Block b of an image.
const unsigned char* blk(const bytes& img, std::uint64_t b, std::uint32_t bs = sbs) { return img.data() + b * bs; }
bool block_eq(const bytes& img, std::uint64_t b, const bytes& want) {
    return std::memcmp(blk(img, b, static_cast<std::uint32_t>(want.size())), want.data(), want.size()) == 0;
}

// Expected image from per-block contents: 'z' = zero block, '1' = 0x11 block,
// otherwise tagged(letter).
bytes expect(const char* blocks) {
    bytes img;
    for (const char* p = blocks; *p; ++p) {
        const bytes b = *p == 'z' ? filled(sbs, 0) : *p == '1' ? filled(sbs, 0x11) : T(*p);
        img.insert(img.end(), b.begin(), b.end());
    }
    return img;
}

// The reference: apply events [0, k) of the log to the base, naively.
bytes naive_prefix(const crash_device& d, std::size_t k) {
    bytes img = d.base();
    for (std::size_t e = 0; e < k; ++e)
        std::memcpy(img.data() + d.event_block(e) * d.block_size(), d.event_data(e), d.block_size());
    return img;
}

} // namespace

TEST_CASE("crash device: the log") {
    crash_device d(sbs, 8);
    run_scenario(d);
    REQUIRE(d.events() == 8);
    REQUIRE(d.flush_marks() == std::vector<std::size_t>{2, 6});
    const std::uint64_t blocks[] = {1, 2, 3, 1, 4, 5, 1, 1};
    const char tags[] = "abcdefgh";
    for (std::size_t e = 0; e < 8; ++e) {
        INFO("event " << e);
        REQUIRE(d.event_block(e) == blocks[e]);
        REQUIRE(std::memcmp(d.event_data(e), T(tags[e]).data(), sbs) == 0);
    }
    REQUIRE(d.previous_write(0) == crash_device::none);
    REQUIRE(d.previous_write(3) == 0);
    REQUIRE(d.previous_write(6) == 3);
    REQUIRE(d.previous_write(7) == 6);
    REQUIRE(d.previous_write(4) == crash_device::none);
    REQUIRE(all_are(d.data_before(0), sbs, 0x11)); // from the base
    REQUIRE(std::memcmp(d.data_before(7), T('g').data(), sbs) == 0);

    const std::size_t durable[] = {0, 0, 0, 2, 2, 2, 2, 6, 6};
    for (std::size_t k = 0; k <= 8; ++k) REQUIRE(d.durable(k) == durable[k]);

    REQUIRE(d.base() == expect("z1zzzzzz"));
    REQUIRE(d.image() == expect("zhbcefzz"));

    // start_recording() again: new base, empty log.
    d.start_recording();
    REQUIRE(d.events() == 0);
    REQUIRE(d.flush_marks().empty());
    REQUIRE(d.base() == d.image());
    REQUIRE(d.state_at(0, crash_mode::reorder_unflushed, 1) == d.image());

    // stop_recording(): writes still land, unlogged.
    d.stop_recording();
    REQUIRE(d.write_blocks(7, 1, T('x').data()) == errc::ok);
    REQUIRE(d.events() == 0);
    REQUIRE(block_eq(d.image(), 7, T('x')));
}

TEST_CASE("crash device: prefix states") {
    crash_device d(sbs, 8);
    run_scenario(d);
    const char* want[] = {"z1zzzzzz", "zazzzzzz", "zabzzzzz", "zabczzzz", "zdbczzzz",
                          "zdbcezzz", "zdbcefzz", "zgbcefzz", "zhbcefzz"};
    for (std::size_t k = 0; k <= 8; ++k) {
        INFO("k = " << k);
        REQUIRE(d.state_at(k, crash_mode::prefix, 0) == expect(want[k]));
        REQUIRE(d.state_at(k, crash_mode::prefix, 12345) == expect(want[k])); // seed plays no part
    }
    REQUIRE(d.state_at(8, crash_mode::prefix, 0) == d.image());

    // The replayer walks the same states one event at a time.
    auto r = d.replay();
    REQUIRE(r.end() == 8);
    std::size_t k = 0;
    do {
        REQUIRE(r.position() == k);
        REQUIRE(r.image() == expect(want[k]));
        auto st = r.crash(crash_mode::prefix, 7);
        REQUIRE(st.overlay_blocks() == 0);
        REQUIRE(st.applied().empty());
        REQUIRE(st.materialize() == expect(want[k]));
        ++k;
    } while (r.advance());
    REQUIRE(k == 9);
    REQUIRE(!r.advance());
    REQUIRE(r.position() == 8);
    r.seek(3); // backwards
    REQUIRE(r.image() == expect(want[3]));
    r.seek(5);
    REQUIRE(r.image() == expect(want[5]));
}

TEST_CASE("crash device: torn last write") {
    crash_device d(sbs, 8);
    run_scenario(d);
    // 1 KiB blocks, 512-byte sectors: the only cut is 512.
    // k = 4 tears e3 (block 1: D over A): first half D, second half A.
    for (std::uint64_t seed = 0; seed < 4; ++seed) {
        const bytes s = d.state_at(4, crash_mode::torn_last, seed);
        bytes b1 = T('a');
        std::memcpy(b1.data(), T('d').data(), 512);
        bytes want = expect("zabczzzz");
        std::memcpy(want.data() + sbs, b1.data(), sbs);
        REQUIRE(s == want);
    }
    // k = 1 tears e0 over the base's 0x11 block.
    {
        const bytes s = d.state_at(1, crash_mode::torn_last, 3);
        REQUIRE(std::memcmp(blk(s, 1), T('a').data(), 512) == 0);
        REQUIRE(all_are(blk(s, 1) + 512, 512, 0x11));
        REQUIRE(all_are(s.data(), sbs, 0));
        REQUIRE(all_are(blk(s, 2), 6 * sbs, 0));
    }
    // k = 6 tears e5 (block 5 over zeros); e4 is whole.
    {
        const bytes s = d.state_at(6, crash_mode::torn_last, 0);
        REQUIRE(std::memcmp(blk(s, 5), T('f').data(), 512) == 0);
        REQUIRE(all_are(blk(s, 5) + 512, 512, 0));
        REQUIRE(block_eq(s, 4, T('e')));
        REQUIRE(block_eq(s, 1, T('d')));
    }
    // k = 0: nothing to tear.
    REQUIRE(d.state_at(0, crash_mode::torn_last, 5) == d.base());

    // The replayer's crash state says what it did, and only block 1 differs.
    auto r = d.replay();
    r.seek(8);
    auto st = r.crash(crash_mode::torn_last, 0);
    REQUIRE(st.applied() == std::vector<std::size_t>{7});
    REQUIRE(st.torn_cut() == 512);
    REQUIRE(st.overlay_blocks() == 1);
    REQUIRE(std::memcmp(st.block(1), T('h').data(), 512) == 0);
    REQUIRE(std::memcmp(st.block(1) + 512, T('g').data() + 512, 512) == 0);
    REQUIRE(st.block(2) == r.block(2)); // read through, no copy
}

TEST_CASE("crash device: torn cuts at sector multiples, chosen by the seed") {
    constexpr std::uint32_t bs = 4096;
    crash_device d(bs, 2);
    d.start_recording();
    REQUIRE(d.write_blocks(1, 1, filled(bs, 0xAA).data()) == errc::ok);
    std::set<std::uint32_t> cuts;
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
        const bytes s = d.state_at(1, crash_mode::torn_last, seed);
        std::uint32_t cut = 0;
        while (cut < bs && s[bs + cut] == 0xAA) ++cut;
        INFO("seed " << seed << " cut " << cut);
        REQUIRE(cut % 512 == 0);
        REQUIRE(cut >= 512);
        REQUIRE(cut <= bs - 512);
        REQUIRE(all_are(s.data() + bs + cut, bs - cut, 0));
        REQUIRE(all_are(s.data(), bs, 0));
        REQUIRE(d.state_at(1, crash_mode::torn_last, seed) == s); // deterministic
        cuts.insert(cut);
    }
    REQUIRE(cuts == std::set<std::uint32_t>{512, 1024, 1536, 2048, 2560, 3072, 3584});

    // A granule as large as the block: cut in the middle.
    d.set_torn_granularity(4096);
    for (std::uint64_t seed = 0; seed < 5; ++seed) {
        const bytes s = d.state_at(1, crash_mode::torn_last, seed);
        REQUIRE(all_are(s.data() + bs, 2048, 0xAA));
        REQUIRE(all_are(s.data() + bs + 2048, 2048, 0));
    }
    // 512-byte blocks with 512-byte sectors: cut at 256.
    crash_device small(512, 1);
    small.start_recording();
    REQUIRE(small.write_blocks(0, 1, filled(512, 0xCC).data()) == errc::ok);
    const bytes s = small.state_at(1, crash_mode::torn_last, 9);
    REQUIRE(all_are(s.data(), 256, 0xCC));
    REQUIRE(all_are(s.data() + 256, 256, 0));
}

TEST_CASE("crash device: reordered unflushed writes") {
    crash_device d(sbs, 8);
    run_scenario(d);
    auto r = d.replay();

    SUBCASE("k = 6: window e2..e5 after the first flush") {
        r.seek(6);
        std::set<std::vector<std::size_t>> subsets;
        for (std::uint64_t seed = 0; seed < 300; ++seed) {
            auto st = r.crash(crash_mode::reorder_unflushed, seed);
            INFO(st.describe());
            REQUIRE(st.window_begin() == 2);
            std::vector<std::size_t> got = st.applied();
            std::sort(got.begin(), got.end());
            REQUIRE(std::adjacent_find(got.begin(), got.end()) == got.end());
            for (std::size_t e : got) REQUIRE((e >= 2 && e < 6));
            const auto has = [&](std::size_t e) { return std::count(got.begin(), got.end(), e) == 1; };
            // Durable: block 2 (e1). Block 1: e0's A unless e3 (D) made it.
            std::string want = "z";
            want += has(3) ? 'd' : 'a';
            want += 'b';
            want += has(2) ? 'c' : 'z';
            want += has(4) ? 'e' : 'z';
            want += has(5) ? 'f' : 'z';
            want += "zz";
            const bytes m = st.materialize();
            REQUIRE(m == expect(want.c_str()));
            REQUIRE(m == d.state_at(6, crash_mode::reorder_unflushed, seed)); // same choice both ways
            subsets.insert(got);
        }
        REQUIRE(subsets.size() == 16); // every subset of the window shows up
    }

    SUBCASE("k = 8: two writes of one block, in either order") {
        r.seek(8);
        std::set<std::vector<std::size_t>> orders;
        for (std::uint64_t seed = 0; seed < 200; ++seed) {
            auto st = r.crash(crash_mode::reorder_unflushed, seed);
            INFO(st.describe());
            REQUIRE(st.window_begin() == 6);
            const auto& a = st.applied();
            // Block 1 holds D (durable) unless a window write landed; the
            // last one applied wins.
            const char b1 = a.empty() ? 'd' : a.back() == 6 ? 'g' : 'h';
            std::string want = "z";
            want += b1;
            want += "bcefzz";
            REQUIRE(st.materialize() == expect(want.c_str()));
            REQUIRE(st.overlay_blocks() == 1);
            orders.insert(a);
        }
        const std::set<std::vector<std::size_t>> all = {{}, {6}, {7}, {6, 7}, {7, 6}};
        REQUIRE(orders == all);
    }

    SUBCASE("k = 2: the flush right after e1 has not completed") {
        r.seek(2);
        std::set<std::string> states;
        for (std::uint64_t seed = 0; seed < 100; ++seed) {
            auto st = r.crash(crash_mode::reorder_unflushed, seed);
            REQUIRE(st.window_begin() == 0);
            const bytes m = st.materialize();
            const char b1 = all_are(blk(m, 1), sbs, 0x11) ? '1' : block_eq(m, 1, T('a')) ? 'a' : '?';
            const char b2 = all_are(blk(m, 2), sbs, 0) ? 'z' : block_eq(m, 2, T('b')) ? 'b' : '?';
            std::string s{b1, b2};
            REQUIRE(s.find('?') == std::string::npos);
            REQUIRE(all_are(m.data(), sbs, 0));
            REQUIRE(all_are(blk(m, 3), 5 * sbs, 0));
            states.insert(s);
        }
        REQUIRE(states == std::set<std::string>{"1z", "az", "1b", "ab"});
    }

    SUBCASE("k = 3: only e2 is unflushed") {
        r.seek(3);
        for (std::uint64_t seed = 0; seed < 50; ++seed) {
            auto st = r.crash(crash_mode::reorder_unflushed, seed);
            const bytes m = st.materialize();
            REQUIRE(m == expect(st.applied().empty() ? "zabzzzzz" : "zabczzzz"));
        }
    }

    SUBCASE("k = 0: the base") {
        REQUIRE(r.crash(crash_mode::reorder_unflushed, 3).materialize() == d.base());
    }
}

TEST_CASE("crash device: every crash state against a naive reference") {
    // Random writes (single and multi-block, repeated blocks) with random
    // flushes; each crash state is rebuilt from the log by brute force.
    constexpr std::uint32_t bs = 512;
    constexpr std::uint64_t nblocks = 24;
    crash_device d(bs, nblocks);
    std::mt19937_64 rng(42);
    for (std::uint64_t b = 0; b < nblocks; ++b)
        REQUIRE(d.write_blocks(b, 1, filled(bs, static_cast<unsigned char>(b)).data()) == errc::ok);
    d.start_recording();
    for (int op = 0; op < 120; ++op) {
        if (rng() % 5 == 0) {
            REQUIRE(d.flush() == errc::ok);
            continue;
        }
        const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng() % 3);
        const std::uint64_t b = rng() % (nblocks - n + 1);
        bytes buf(std::size_t{n} * bs);
        for (auto& c : buf) c = static_cast<unsigned char>(rng());
        REQUIRE(d.write_blocks(b, n, buf.data()) == errc::ok);
    }
    REQUIRE(d.events() > 150);
    REQUIRE(d.flush_marks().size() > 10);
    auto r = d.replay();
    do {
        const std::size_t k = r.position();
        INFO("k = " << k);
        REQUIRE(r.image() == naive_prefix(d, k));
        for (std::uint64_t seed = 0; seed < 4; ++seed) {
            // reorder: the durable prefix, then the applied window events in order.
            auto st = r.crash(crash_mode::reorder_unflushed, seed);
            INFO(st.describe());
            REQUIRE(st.window_begin() == d.durable(k));
            bytes want = naive_prefix(d, st.window_begin());
            for (std::size_t e : st.applied()) {
                REQUIRE((e >= st.window_begin() && e < k));
                std::memcpy(want.data() + d.event_block(e) * bs, d.event_data(e), bs);
            }
            REQUIRE(st.materialize() == want);
            // torn: prefix k-1 plus the torn block.
            auto tn = r.crash(crash_mode::torn_last, seed);
            if (k == 0) {
                REQUIRE(tn.materialize() == d.base());
                continue;
            }
            bytes tw = naive_prefix(d, k - 1);
            std::memcpy(tw.data() + d.event_block(k - 1) * bs, d.event_data(k - 1), bs / 2);
            REQUIRE(tn.torn_cut() == bs / 2);
            REQUIRE(tn.materialize() == tw);
        }
    } while (r.advance());
}

TEST_CASE("crash device: a crash state is a copy-on-write BlockDevice") {
    crash_device d(sbs, 8);
    run_scenario(d);
    auto r = d.replay();
    r.seek(8);
    auto st = r.crash(crash_mode::prefix, 0);
    REQUIRE(st.block_size() == sbs);
    REQUIRE(st.block_count() == 8);
    bytes out(2 * sbs);
    REQUIRE(st.read_blocks(1, 2, out.data()) == errc::ok);
    REQUIRE(std::memcmp(out.data(), T('h').data(), sbs) == 0);
    REQUIRE(std::memcmp(out.data() + sbs, T('b').data(), sbs) == 0);

    // A "recovery" writing to the state changes only the state.
    bytes xy = T('x');
    const bytes y = T('y');
    xy.insert(xy.end(), y.begin(), y.end());
    REQUIRE(st.write_blocks(6, 2, xy.data()) == errc::ok);
    REQUIRE(st.flush() == errc::ok);
    REQUIRE(st.overlay_blocks() == 2);
    REQUIRE(st.blocks_written() == 2);
    REQUIRE(st.flushes() == 1);
    REQUIRE(st.read_blocks(6, 2, out.data()) == errc::ok);
    REQUIRE(out == xy);
    REQUIRE(all_are(r.block(6), 2 * sbs, 0)); // the replayer's image is untouched
    REQUIRE(all_are(d.block(6), 2 * sbs, 0)); // and so is the device
    REQUIRE(st.materialize() == expect("zhbcefxy"));
    REQUIRE(st.write_blocks(7, 2, xy.data()) == errc::range);
    REQUIRE(st.read_blocks(8, 1, out.data()) == errc::range);

    // A torn state written over keeps the test's bytes.
    auto tn = r.crash(crash_mode::torn_last, 0);
    REQUIRE(tn.write_blocks(1, 1, T('z').data()) == errc::ok);
    REQUIRE(std::memcmp(tn.block(1), T('z').data(), sbs) == 0);

    // Advancing the replayer makes older states stale.
    r.seek(7);
    REQUIRE(st.read_blocks(0, 1, out.data()) == errc::invalid);
    REQUIRE(st.write_blocks(0, 1, out.data()) == errc::invalid);
    REQUIRE(st.flush() == errc::invalid);
}

TEST_CASE("crash device: crashed images open as devices again") {
    crash_device d(sbs, 8);
    run_scenario(d);
    bytes img = d.state_at(4, crash_mode::torn_last, 0);

    // As a memory_device over the vector.
    auto m = memory_device::make(img.data(), sbs, img.size() / sbs);
    REQUIRE(m);
    bytes out(sbs);
    REQUIRE(m->read_blocks(3, 1, out.data()) == errc::ok);
    REQUIRE(out == T('c'));

    // As a crash_device, which can record a crash during recovery.
    crash_device again(sbs, img);
    REQUIRE(again.block_count() == 8);
    REQUIRE(again.read_blocks(1, 1, out.data()) == errc::ok);
    REQUIRE(std::memcmp(out.data(), T('d').data(), 512) == 0);
    REQUIRE(std::memcmp(out.data() + 512, T('a').data() + 512, 512) == 0);
    again.start_recording();
    REQUIRE(again.write_blocks(1, 1, T('r').data()) == errc::ok);
    REQUIRE(again.state_at(0, crash_mode::prefix, 0) == img);
    bytes after = img;
    std::memcpy(after.data() + sbs, T('r').data(), sbs);
    REQUIRE(again.state_at(1, crash_mode::prefix, 0) == after);
}

TEST_CASE("crash device: injected write, flush and read failures") {
    constexpr std::uint32_t bs = 512;
    crash_device d(bs, 8);
    d.start_recording();
    d.fail_writes_after(3);
    bytes two = tagged(bs, 1);
    const bytes t2 = tagged(bs, 2);
    two.insert(two.end(), t2.begin(), t2.end());
    REQUIRE(d.write_blocks(0, 2, two.data()) == errc::ok);
    // Crosses the limit: block 5 is written (and logged), block 6 is not.
    REQUIRE(d.write_blocks(5, 2, two.data()) == errc::io);
    REQUIRE(std::memcmp(d.block(5), two.data(), bs) == 0);
    REQUIRE(all_are(d.block(6), bs, 0));
    REQUIRE(d.events() == 3);
    REQUIRE(d.event_block(2) == 5);
    REQUIRE(d.write_blocks(7, 1, two.data()) == errc::io);
    REQUIRE(all_are(d.block(7), bs, 0));
    REQUIRE(d.events() == 3);
    REQUIRE(d.write_calls() == 1);
    REQUIRE(d.blocks_written() == 3);
    // Range errors still come first.
    REQUIRE(d.write_blocks(8, 1, two.data()) == errc::range);

    d.fail_flushes_after(1);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.flush() == errc::io);
    REQUIRE(d.flush_marks() == std::vector<std::size_t>{3}); // failed flush: no mark
    REQUIRE(d.flushes() == 1);

    d.fail_reads_after(2);
    bytes out(bs);
    REQUIRE(d.read_blocks(0, 1, out.data()) == errc::ok);
    REQUIRE(d.read_blocks(1, 1, out.data()) == errc::ok);
    REQUIRE(d.read_blocks(0, 1, out.data()) == errc::io);
    REQUIRE(d.read_calls() == 2);

    d.fail_writes_after(0);
    REQUIRE(d.write_blocks(7, 1, two.data()) == errc::io);
    d.clear_faults();
    REQUIRE(d.write_blocks(7, 1, two.data()) == errc::ok);
    REQUIRE(d.flush() == errc::ok);
    REQUIRE(d.read_blocks(7, 1, out.data()) == errc::ok);
    REQUIRE(std::memcmp(out.data(), two.data(), bs) == 0);
    REQUIRE(d.events() == 4);
    REQUIRE(d.flush_marks() == std::vector<std::size_t>{3, 4});
}

TEST_CASE("crash device: many crash states of a multi-MiB image stay cheap") {
    // 4 MiB image, 4 KiB blocks, 6000 block writes with a flush every 16:
    // every crash point, three modes. Each state costs its window, not the
    // image; the prefix is checked block-wise as it advances.
    constexpr std::uint32_t bs = 4096;
    constexpr std::uint64_t nblocks = 1024;
    crash_device d(bs, nblocks);
    d.start_recording();
    std::mt19937_64 rng(7);
    bytes buf(bs);
    for (int i = 0; i < 6000; ++i) {
        const std::uint64_t b = rng() % nblocks;
        fill_bytes(buf.data(), static_cast<int>(i & 0xFF), bs);
        store_le<std::uint64_t>(buf.data(), static_cast<std::uint64_t>(i));
        REQUIRE(d.write_blocks(b, 1, buf.data()) == errc::ok);
        if (i % 16 == 15) REQUIRE(d.flush() == errc::ok);
    }
    auto r = d.replay();
    std::size_t states = 0;
    std::uint64_t reordered_blocks = 0;
    do {
        const std::size_t k = r.position();
        if (k > 0) {
            // The last event's block holds its bytes in the prefix image.
            REQUIRE(load_le<std::uint64_t>(r.block(d.event_block(k - 1))) == k - 1);
        }
        for (crash_mode m : {crash_mode::prefix, crash_mode::torn_last, crash_mode::reorder_unflushed}) {
            auto st = r.crash(m, k);
            REQUIRE(st.overlay_blocks() <= 16);
            reordered_blocks += st.overlay_blocks();
            ++states;
        }
    } while (r.advance());
    REQUIRE(states == 3 * 6001);
    REQUIRE(reordered_blocks > 0);
    REQUIRE(r.image() == d.image());
}
