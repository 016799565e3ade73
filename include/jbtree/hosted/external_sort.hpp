// SPDX-License-Identifier: MIT
// jbtree: sorted runs in a temporary file and their k-way merge (external
// sorting), for inputs larger than the memory a program may use.
//
//   run_store<T, Codec> s(buffer_bytes);
//   int e = s.open(dir);               a temporary file in `dir` (unlinked at once)
//   e = s.write_run(v.data(), v.size());   each run sorted by Codec::less
//   e = s.reduce(max_fan_in);          merge runs until at most that many are left
//   run_store<T, Codec>::merge m;
//   e = s.open_merge(m);               again for each pass over the records
//   for (bool got; (e = m.next(x, got)) == 0 && got;) ...   in Codec::less order
//
// The file is created with mkstemp() in the directory given and unlinked at
// once: nothing is left behind whatever way the process ends (an error, a
// signal, a crash), and nothing is written anywhere else. Two files are
// used while runs are merged into fewer (a pass reads one, writes the
// other, then empties the first), so the disk taken is at most twice the
// encoded records.
//
// Codec, for a record type T:
//   static constexpr std::size_t max_size;                       encoded bytes, at most
//   static std::size_t encode(const T&, unsigned char* out);     bytes written
//   static std::size_t decode(const unsigned char* in, std::size_t avail, T& out);
//                                                                bytes read (0: malformed)
//   static bool less(const T&, const T&);
//
// Memory: a merge holds one read buffer of `buffer_bytes` and one decoded
// record per run merged, and a write buffer of `buffer_bytes`.
//
// Hosted code: files, allocation (std::vector); no exceptions are thrown
// here. Errors are errno values (0: success); EIO for a run that does not
// decode as written.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace jbtree::hosted {

// A temporary file, unlinked as soon as it is created; closed by the
// destructor.
class spill_file {
public:
    spill_file() = default;
    spill_file(const spill_file&) = delete;
    spill_file& operator=(const spill_file&) = delete;
    spill_file(spill_file&& o) noexcept : fd_(std::exchange(o.fd_, -1)), size_(std::exchange(o.size_, 0)) {}
    spill_file& operator=(spill_file&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~spill_file() { close(); }

    // Create it in `dir` (a directory that must exist). errno, or 0.
    [[nodiscard]] int open(const char* dir) noexcept {
        close();
        if (dir == nullptr || *dir == 0) return EINVAL;
        std::string path(dir);
        if (path.back() != '/') path += '/';
        path += "jbtree-spill-XXXXXX";
        std::vector<char> buf(path.begin(), path.end());
        buf.push_back(0);
        const int fd = mkstemp(buf.data());
        if (fd < 0) return errno;
        if (unlink(buf.data()) != 0) {
            const int e = errno;
            ::close(fd);
            return e;
        }
        fd_ = fd;
        size_ = 0;
        return 0;
    }
    void close() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        size_ = 0;
    }
    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
    [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

    // Append n bytes. errno, or 0.
    [[nodiscard]] int append(const void* p, std::size_t n) noexcept {
        const auto* b = static_cast<const unsigned char*>(p);
        while (n) {
            const ssize_t w = pwrite(fd_, b, n, static_cast<off_t>(size_));
            if (w < 0) {
                if (errno == EINTR) continue;
                return errno;
            }
            if (w == 0) return EIO;
            b += w, n -= static_cast<std::size_t>(w), size_ += static_cast<std::uint64_t>(w);
        }
        return 0;
    }
    // Read up to n bytes at `off`; *got: how many (fewer only at the end).
    [[nodiscard]] int read(std::uint64_t off, void* p, std::size_t n, std::size_t* got) noexcept {
        auto* b = static_cast<unsigned char*>(p);
        std::size_t done = 0;
        while (done < n) {
            const ssize_t r = pread(fd_, b + done, n - done, static_cast<off_t>(off + done));
            if (r < 0) {
                if (errno == EINTR) continue;
                return errno;
            }
            if (r == 0) break;
            done += static_cast<std::size_t>(r);
        }
        *got = done;
        return 0;
    }
    // Empty it (its blocks are given back). errno, or 0.
    [[nodiscard]] int truncate() noexcept {
        if (ftruncate(fd_, 0) != 0) return errno;
        size_ = 0;
        return 0;
    }

private:
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

template <class T, class Codec>
class run_store {
public:
    struct run {
        std::uint64_t offset = 0, bytes = 0, count = 0;
    };

    // buffer_bytes: each read and write buffer (at least 2 * Codec::max_size).
    explicit run_store(std::size_t buffer_bytes) noexcept
        : buffer_(std::max<std::size_t>(buffer_bytes, 2 * Codec::max_size)) {}

    // The temporary files go into `dir`. errno, or 0.
    [[nodiscard]] int open(const char* dir) noexcept {
        runs_.clear();
        records_ = written_ = passes_ = 0;
        dir_ = dir ? dir : "";
        return file_[0].open(dir);
    }
    [[nodiscard]] bool is_open() const noexcept { return file_[0].is_open(); }
    [[nodiscard]] std::size_t runs() const noexcept { return runs_.size(); }
    [[nodiscard]] std::uint64_t records() const noexcept { return records_; }
    [[nodiscard]] std::uint64_t merge_passes() const noexcept { return passes_; }
    [[nodiscard]] std::uint64_t runs_written() const noexcept { return written_; }
    [[nodiscard]] std::size_t buffer_bytes() const noexcept { return buffer_; }

    // Append a run of n records, sorted by Codec::less. errno, or 0.
    [[nodiscard]] int write_run(const T* v, std::size_t n) noexcept {
        return write_run(n, [v](std::size_t i, T& x) { x = v[i]; });
    }
    // The same with the records made one at a time: get(i, x) fills x with
    // the i-th (a run of a type that is not T in memory).
    template <class Get>
    [[nodiscard]] int write_run(std::size_t n, Get&& get) noexcept {
        if (!file_[cur_].is_open()) return EBADF;
        if (n == 0) return 0;
        writer w(file_[cur_], buffer_);
        T x{};
        for (std::size_t i = 0; i < n; ++i) {
            get(i, x);
            if (const int e = w.put(x)) return e;
        }
        if (const int e = w.finish()) return e;
        runs_.push_back(w.done());
        records_ += n;
        ++written_;
        return 0;
    }

    // Merge runs, fan_in at a time (at least 2), until at most fan_in are
    // left. errno, or 0.
    [[nodiscard]] int reduce(std::size_t fan_in) noexcept {
        fan_in = std::max<std::size_t>(fan_in, 2);
        while (runs_.size() > fan_in) {
            spill_file& out = file_[cur_ ^ 1];
            if (!out.is_open())
                if (const int e = out.open(dir_.c_str())) return e;
            std::vector<run> next;
            for (std::size_t i = 0; i < runs_.size(); i += fan_in) {
                merge m;
                const std::size_t k = std::min(fan_in, runs_.size() - i);
                if (const int e = open_merge(m, i, k)) return e;
                writer w(out, buffer_);
                T x{};
                for (bool got = false;;) {
                    if (const int e = m.next(x, got)) return e;
                    if (!got) break;
                    if (const int e = w.put(x)) return e;
                }
                if (const int e = w.finish()) return e;
                next.push_back(w.done());
            }
            if (const int e = file_[cur_].truncate()) return e;
            runs_ = std::move(next);
            cur_ ^= 1;
            ++passes_;
        }
        return 0;
    }

    // The k-way merge of runs in Codec::less order (equal records: the
    // earlier run's first).
    class merge {
    public:
        // 0 and got: x is the next record; 0 and !got: the end; else errno.
        [[nodiscard]] int next(T& x, bool& got) noexcept {
            got = false;
            if (heap_.empty()) return 0;
            std::pop_heap(heap_.begin(), heap_.end(), greater{this});
            const std::size_t s = heap_.back();
            x = src_[s].head;
            bool more = false;
            if (const int e = src_[s].advance(more)) return e;
            if (more) std::push_heap(heap_.begin(), heap_.end(), greater{this});
            else heap_.pop_back();
            got = true;
            return 0;
        }

    private:
        friend class run_store;
        struct source {
            spill_file* f = nullptr;
            std::uint64_t pos = 0, end = 0; // file offsets still to read
            std::vector<unsigned char> buf;
            std::size_t at = 0, len = 0; // decoded up to `at` of buf's `len` bytes
            T head{};
            std::uint64_t index = 0; // the run's place, for equal records

            // Decode the next record into head; more false at the end.
            int advance(bool& more) noexcept {
                more = false;
                if (len - at < Codec::max_size && pos < end) {
                    std::memmove(buf.data(), buf.data() + at, len - at);
                    len -= at, at = 0;
                    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - len, end - pos));
                    std::size_t got = 0;
                    if (const int e = f->read(pos, buf.data() + len, want, &got)) return e;
                    if (got != want) return EIO;
                    pos += got, len += got;
                }
                if (at == len) return 0;
                const std::size_t n = Codec::decode(buf.data() + at, len - at, head);
                if (n == 0) return EIO;
                at += n;
                more = true;
                return 0;
            }
        };
        struct greater {
            const merge* m;
            bool operator()(std::size_t a, std::size_t b) const noexcept {
                const source& x = m->src_[a];
                const source& y = m->src_[b];
                if (Codec::less(y.head, x.head)) return true;
                if (Codec::less(x.head, y.head)) return false;
                return x.index > y.index;
            }
        };
        std::vector<source> src_;
        std::vector<std::size_t> heap_;
    };

    // A merge of every run (call reduce() first to bound its memory).
    [[nodiscard]] int open_merge(merge& m) noexcept { return open_merge(m, 0, runs_.size()); }

private:
    class writer {
    public:
        writer(spill_file& f, std::size_t bytes) : f_(f), buf_(bytes), start_(f.size()) {}
        int put(const T& x) noexcept {
            if (buf_.size() - len_ < Codec::max_size)
                if (const int e = drain()) return e;
            len_ += Codec::encode(x, buf_.data() + len_);
            ++count_;
            return 0;
        }
        int finish() noexcept { return drain(); }
        [[nodiscard]] run done() const noexcept { return run{start_, f_.size() - start_, count_}; }

    private:
        int drain() noexcept {
            const int e = f_.append(buf_.data(), len_);
            len_ = 0;
            return e;
        }
        spill_file& f_;
        std::vector<unsigned char> buf_;
        std::size_t len_ = 0;
        std::uint64_t start_, count_ = 0;
    };

    [[nodiscard]] int open_merge(merge& m, std::size_t first, std::size_t k) noexcept {
        m.src_.clear();
        m.heap_.clear();
        m.src_.resize(k);
        for (std::size_t i = 0; i < k; ++i) {
            auto& s = m.src_[i];
            const run& r = runs_[first + i];
            s.f = &file_[cur_];
            s.pos = r.offset;
            s.end = r.offset + r.bytes;
            s.buf.resize(buffer_);
            s.index = i;
            bool more = false;
            if (const int e = s.advance(more)) return e;
            if (more) m.heap_.push_back(i);
        }
        std::make_heap(m.heap_.begin(), m.heap_.end(), typename merge::greater{&m});
        return 0;
    }

    std::size_t buffer_;
    std::string dir_;
    spill_file file_[2];
    unsigned cur_ = 0; // the file holding runs_
    std::vector<run> runs_;
    std::uint64_t records_ = 0, passes_ = 0, written_ = 0;
};

} // namespace jbtree::hosted
