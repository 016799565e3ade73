// Test helper: a BlockDevice that records its writes and flushes, so a test
// can rebuild what the disk could hold after a power failure at any point.
//
// Model. A crash_device is an in-memory image (image(): everything written so
// far). start_recording() snapshots the image as the *base* and clears the
// log; from then on every block written is one *event* (a write of n blocks
// is n events, in block order) and every successful flush is a *flush mark*
// (the number of events before it). Event numbers start at 0.
//
// Crash point k (0 <= k <= events()): the crash comes right after event k-1
// was written and before anything that followed it. A flush with mark m came
// after events [0, m) and before event m, so it has completed at crash point
// k exactly when m < k; a flush issued right after event k-1 (mark k) has
// not. durable(k), the largest mark below k (0 if none), splits the events
// into durable ones [0, durable(k)) and the unflushed window
// [durable(k), k). (The state "that flush completed, then the crash" is the
// prefix state at k; reorder_unflushed produces it too when it keeps the
// whole window in an order that ends each block with its last write.)
//
// The crashed states at point k (crash_mode):
//   prefix             events [0, k) applied in order: a device that lost
//                      nothing (what a well-behaved crash at k would leave);
//   torn_last          events [0, k-1) applied, and event k-1 torn: its block
//                      holds the new bytes [0, cut) and the bytes it had
//                      before event k-1 at [cut, block_size). The cut is a
//                      multiple of torn_granularity() (512 by default, a
//                      sector) chosen by the seed among granularity,
//                      2*granularity, .., block_size - granularity; when the
//                      block holds fewer than two granules the cut is
//                      block_size / 2 (harsher than real sector-atomic disks,
//                      on purpose). With k == 0 it is the same as prefix;
//   reorder_unflushed  events [0, durable(k)) applied in order, then of the
//                      unflushed window [durable(k), k) a subset chosen by
//                      the seed (each event with probability 1/2), applied in
//                      an order chosen by the seed. When the window writes
//                      one block several times, whichever of the chosen
//                      writes comes last in that order wins, as when a disk
//                      reorders its queue. No torn blocks in this mode.
// The same (k, mode, seed) always gives the same state (splitmix64, not
// std:: distributions, so it is the same on every platform too).
//
// Two ways to get a crashed state:
//
//   1. Loops (the intended use): a replayer holds the prefix image at its
//      position and advances one event at a time (one block copy each); at
//      each position, crash(mode, seed) gives a crash_state: a BlockDevice
//      that reads through to the replayer's prefix image except for the few
//      blocks the crash changes (torn block, unflushed window), and keeps the
//      test's own writes (say, journal recovery) in a copy-on-write overlay.
//      Making a crash state costs O(window * block_size), not O(image), so
//      100,000 crash states over a few-MiB image are cheap:
//
//        auto r = dev.replay();
//        do {
//            for (std::uint64_t seed = 0; seed < 8; ++seed) {
//                auto st = r.crash(crash_mode::reorder_unflushed, seed);
//                INFO(st.describe());
//                recover(st); verify(st); ...
//            }
//        } while (r.advance());
//
//      A crash_state reads the replayer's image: it is valid until the
//      replayer advances, seeks or dies (its I/O then gives errc::invalid
//      after an advance or seek; after the replayer's death it dangles).
//      materialize() copies the whole state out as an image vector.
//
//   2. One-off: dev.state_at(k, mode, seed) returns the whole image vector;
//      it replays from the base each time (O(image + k * block_size)).
//      Open it with crash_device(block_size, image) (which can record again:
//      crashes during recovery) or memory_device(image.data(), ...).
//
// Faults, for error-path tests: fail_writes_after(n) lets n more blocks be
// written, then fails: a write_blocks call that crosses the limit writes (and
// records) its blocks up to the limit and returns errc::io; every later write
// gives errc::io and changes nothing. fail_flushes_after(n) and
// fail_reads_after(n) do the same for flush calls and read calls (a failed
// flush is not a flush mark). clear_faults() lifts all three.
//
// I/O rules are memory_device's: errc::range outside the device (checked
// first), n == 0 is a no-op, errc::invalid for a bad block size or a null
// buffer. Counters count successful calls (and the blocks written by a call
// that failed part way). Memory: the log keeps a copy of every block
// written (events() * block_size bytes). Not thread-safe; allocation failure
// terminates (test code).
#pragma once

#include <jbtree/base/endian.hpp>
#include <jbtree/base/errc.hpp>
#include <jbtree/policy/block_device.hpp>
#include <jbtree/policy/block_storage.hpp>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace jt {

enum class crash_mode { prefix, torn_last, reorder_unflushed };

inline const char* describe(crash_mode m) noexcept {
    switch (m) {
    case crash_mode::prefix: return "prefix";
    case crash_mode::torn_last: return "torn_last";
    case crash_mode::reorder_unflushed: return "reorder_unflushed";
    }
    return "?";
}

namespace crash_detail {

// splitmix64: tiny, fast, the same everywhere.
struct rng {
    std::uint64_t s;
    std::uint64_t next() noexcept {
        std::uint64_t z = (s += 0x9E37'79B9'7F4A'7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58'476D'1CE4'E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D0'49BB'1331'11EBull;
        return z ^ (z >> 31);
    }
    // Uniform enough in [0, n) for test choices (n > 0).
    std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
};

inline rng make_rng(std::uint64_t seed, std::size_t k, crash_mode m) noexcept {
    rng r{seed * 0xD1B5'4A32'D192'ED03ull ^ (static_cast<std::uint64_t>(k) << 8) ^ static_cast<std::uint64_t>(m)};
    (void)r.next();
    return r;
}

// Range rule shared by the devices here.
inline jbtree::errc check_io(bool valid, std::uint64_t count, std::uint64_t blk, std::uint32_t n,
                             const void* buf) noexcept {
    if (!valid) return jbtree::errc::invalid;
    if (blk > count || n > count - blk) return jbtree::errc::range;
    if (n != 0 && buf == nullptr) return jbtree::errc::invalid;
    return jbtree::errc::ok;
}

} // namespace crash_detail

class crash_replayer;
class crash_state;

class crash_device {
public:
    // Previous-write link meaning "no earlier event wrote this block".
    static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
    static constexpr std::size_t no_limit = std::numeric_limits<std::size_t>::max();

    // A zero-filled device. Not recording until start_recording().
    crash_device(std::uint32_t block_size, std::uint64_t block_count)
        : bs_(block_size), count_(block_count),
          image_(jbtree::valid_block_size(block_size) ? static_cast<std::size_t>(block_count) * block_size : 0) {
        if (!jbtree::valid_block_size(block_size)) count_ = 0;
    }
    // A device holding `image` (size / block_size blocks; a partial last block
    // is kept in image() but is not part of the device).
    crash_device(std::uint32_t block_size, std::vector<unsigned char> image)
        : bs_(block_size), count_(jbtree::valid_block_size(block_size) ? image.size() / block_size : 0),
          image_(std::move(image)) {}

    // ---- BlockDevice ----
    [[nodiscard]] std::uint32_t block_size() const noexcept { return bs_; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return count_; }

    [[nodiscard]] jbtree::errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        JBTREE_TRY(check(blk, n, out));
        if (read_budget_ == 0) return jbtree::errc::io;
        if (read_budget_ != no_limit) --read_budget_;
        if (n) std::memmove(out, block(blk), std::size_t{n} * bs_);
        ++read_calls_;
        blocks_read_ += n;
        return jbtree::errc::ok;
    }

    [[nodiscard]] jbtree::errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        JBTREE_TRY(check(blk, n, in));
        for (std::uint32_t i = 0; i < n; ++i) {
            if (write_budget_ == 0) return jbtree::errc::io;
            if (write_budget_ != no_limit) --write_budget_;
            const unsigned char* src = in + std::size_t{i} * bs_;
            if (recording_) record(blk + i, src);
            std::memmove(block(blk + i), src, bs_);
            ++blocks_written_;
        }
        ++write_calls_;
        return jbtree::errc::ok;
    }

    [[nodiscard]] jbtree::errc flush() noexcept {
        if (!jbtree::valid_block_size(bs_)) return jbtree::errc::invalid;
        if (flush_budget_ == 0) return jbtree::errc::io;
        if (flush_budget_ != no_limit) --flush_budget_;
        if (recording_) flush_marks_.push_back(events_.size());
        ++flushes_;
        return jbtree::errc::ok;
    }

    // ---- the image ----
    // Everything written so far (the state if nothing were ever lost).
    // Changing it directly bypasses the log.
    [[nodiscard]] std::vector<unsigned char>& image() noexcept { return image_; }
    [[nodiscard]] const std::vector<unsigned char>& image() const noexcept { return image_; }
    // Block b of image() (b < block_count()).
    [[nodiscard]] unsigned char* block(std::uint64_t b) noexcept { return image_.data() + offset(b); }
    [[nodiscard]] const unsigned char* block(std::uint64_t b) const noexcept { return image_.data() + offset(b); }

    // ---- recording ----
    // Base := image(); the log (events and flush marks) is cleared.
    void start_recording() {
        base_ = image_;
        events_.clear();
        data_.clear();
        flush_marks_.clear();
        last_write_.clear();
        recording_ = true;
    }
    // Later writes change image() but are not logged (the log so far stays).
    void stop_recording() noexcept { recording_ = false; }
    [[nodiscard]] bool recording() const noexcept { return recording_; }

    // The image when recording started.
    [[nodiscard]] const std::vector<unsigned char>& base() const noexcept { return base_; }
    [[nodiscard]] const unsigned char* base_block(std::uint64_t b) const noexcept { return base_.data() + offset(b); }
    // Block writes recorded.
    [[nodiscard]] std::size_t events() const noexcept { return events_.size(); }
    // Event i: its block number, the bytes written, and the previous event
    // that wrote the same block (none if there is none).
    [[nodiscard]] std::uint64_t event_block(std::size_t i) const noexcept { return events_[i].blk; }
    [[nodiscard]] const unsigned char* event_data(std::size_t i) const noexcept { return data_.data() + i * bs_; }
    [[nodiscard]] std::size_t previous_write(std::size_t i) const noexcept { return events_[i].prev; }
    // Bytes of event i's block just before event i (from the log or the base).
    [[nodiscard]] const unsigned char* data_before(std::size_t i) const noexcept {
        const std::size_t p = events_[i].prev;
        return p == none ? base_block(events_[i].blk) : event_data(p);
    }
    // Flush marks: for each recorded flush, the number of events before it
    // (non-decreasing).
    [[nodiscard]] const std::vector<std::size_t>& flush_marks() const noexcept { return flush_marks_; }
    // Events made durable by the flushes completed at crash point k: the
    // largest flush mark below k, 0 if none.
    [[nodiscard]] std::size_t durable(std::size_t k) const noexcept {
        auto it = std::lower_bound(flush_marks_.begin(), flush_marks_.end(), k);
        return it == flush_marks_.begin() ? 0 : *(it - 1);
    }

    // Granularity of torn writes (see the top); a power of two.
    void set_torn_granularity(std::uint32_t g) noexcept { torn_granularity_ = g ? g : 1; }
    [[nodiscard]] std::uint32_t torn_granularity() const noexcept { return torn_granularity_; }

    // The state at crash point k (0 <= k <= events()) as a full image.
    [[nodiscard]] std::vector<unsigned char> state_at(std::size_t k, crash_mode mode, std::uint64_t seed) const;
    // A replayer positioned at crash point 0 (the base).
    [[nodiscard]] crash_replayer replay() const;

    // ---- faults ----
    void fail_writes_after(std::size_t blocks) noexcept { write_budget_ = blocks; }
    void fail_flushes_after(std::size_t flushes) noexcept { flush_budget_ = flushes; }
    void fail_reads_after(std::size_t calls) noexcept { read_budget_ = calls; }
    void clear_faults() noexcept { write_budget_ = flush_budget_ = read_budget_ = no_limit; }

    // ---- counters (successful calls; see the top) ----
    [[nodiscard]] std::uint64_t blocks_read() const noexcept { return blocks_read_; }
    [[nodiscard]] std::uint64_t blocks_written() const noexcept { return blocks_written_; }
    [[nodiscard]] std::uint64_t read_calls() const noexcept { return read_calls_; }
    [[nodiscard]] std::uint64_t write_calls() const noexcept { return write_calls_; }
    [[nodiscard]] std::uint64_t flushes() const noexcept { return flushes_; }

private:
    struct event {
        std::uint64_t blk;
        std::size_t prev;
    };

    [[nodiscard]] std::size_t offset(std::uint64_t b) const noexcept { return static_cast<std::size_t>(b) * bs_; }
    [[nodiscard]] jbtree::errc check(std::uint64_t blk, std::uint32_t n, const void* buf) const noexcept {
        return crash_detail::check_io(jbtree::valid_block_size(bs_), count_, blk, n, buf);
    }

    void record(std::uint64_t blk, const unsigned char* src) {
        const std::size_t i = events_.size();
        auto [it, fresh] = last_write_.try_emplace(blk, i);
        events_.push_back({blk, fresh ? none : it->second});
        it->second = i;
        data_.insert(data_.end(), src, src + bs_);
    }

    std::uint32_t bs_;
    std::uint64_t count_;
    std::vector<unsigned char> image_;
    std::vector<unsigned char> base_;
    bool recording_ = false;
    std::vector<event> events_;
    std::vector<unsigned char> data_; // event i's bytes at [i * bs_, (i + 1) * bs_)
    std::vector<std::size_t> flush_marks_;
    std::unordered_map<std::uint64_t, std::size_t> last_write_; // block -> last event writing it
    std::uint32_t torn_granularity_ = 512;
    std::size_t write_budget_ = no_limit;
    std::size_t flush_budget_ = no_limit;
    std::size_t read_budget_ = no_limit;
    std::uint64_t blocks_read_ = 0;
    std::uint64_t blocks_written_ = 0;
    std::uint64_t read_calls_ = 0;
    std::uint64_t write_calls_ = 0;
    std::uint64_t flushes_ = 0;
};

// Walks the crash points of a crash_device's log in order, holding the
// prefix image at its position (see the top of this file).
class crash_replayer {
public:
    // At crash point 0: a copy of the device's base image. The device must
    // outlive the replayer; recording more events meanwhile is fine (end()
    // grows), start_recording() again is not.
    explicit crash_replayer(const crash_device& d) : dev_(&d), image_(d.base()) {}

    [[nodiscard]] std::size_t position() const noexcept { return pos_; }
    [[nodiscard]] std::size_t end() const noexcept { return dev_->events(); }
    // The prefix image at position(): events [0, position()) applied.
    [[nodiscard]] const std::vector<unsigned char>& image() const noexcept { return image_; }
    [[nodiscard]] const unsigned char* block(std::uint64_t b) const noexcept {
        return image_.data() + static_cast<std::size_t>(b) * dev_->block_size();
    }

    // Applies event position() and moves to the next crash point; false
    // (and no move) at end().
    bool advance() noexcept {
        if (pos_ >= end()) return false;
        const std::uint32_t bs = dev_->block_size();
        std::memcpy(image_.data() + static_cast<std::size_t>(dev_->event_block(pos_)) * bs, dev_->event_data(pos_), bs);
        ++pos_;
        ++generation_;
        return true;
    }
    // Moves to crash point k (clamped to end()): forward by advancing,
    // backward by starting again from the base (O(k)).
    void seek(std::size_t k) {
        assert(k <= end());
        k = std::min(k, end());
        if (k < pos_) {
            image_ = dev_->base();
            pos_ = 0;
        }
        while (pos_ < k) (void)advance();
        ++generation_;
    }

    // The crashed state at position() (see crash_mode). Valid until this
    // replayer advances, seeks or is destroyed.
    [[nodiscard]] crash_state crash(crash_mode mode, std::uint64_t seed) const;

    // Changes each advance() or seek(); crash states use it to detect that
    // they are stale.
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

private:
    const crash_device* dev_;
    std::vector<unsigned char> image_;
    std::size_t pos_ = 0;
    std::uint64_t generation_ = 0;
};

// A crashed disk: the replayer's prefix image plus an overlay of changed
// blocks (the crash's own changes, then the test's writes, copy-on-write).
// A BlockDevice; see the top of this file.
class crash_state {
public:
    // ---- BlockDevice ----
    [[nodiscard]] std::uint32_t block_size() const noexcept { return bs_; }
    [[nodiscard]] std::uint64_t block_count() const noexcept { return count_; }

    [[nodiscard]] jbtree::errc read_blocks(std::uint64_t blk, std::uint32_t n, unsigned char* out) noexcept {
        JBTREE_TRY(check(blk, n, out));
        for (std::uint32_t i = 0; i < n; ++i) std::memmove(out + std::size_t{i} * bs_, block(blk + i), bs_);
        blocks_read_ += n;
        return jbtree::errc::ok;
    }
    [[nodiscard]] jbtree::errc write_blocks(std::uint64_t blk, std::uint32_t n, const unsigned char* in) noexcept {
        JBTREE_TRY(check(blk, n, in));
        for (std::uint32_t i = 0; i < n; ++i) std::memmove(writable(blk + i), in + std::size_t{i} * bs_, bs_);
        blocks_written_ += n;
        return jbtree::errc::ok;
    }
    [[nodiscard]] jbtree::errc flush() noexcept {
        if (stale()) return jbtree::errc::invalid;
        ++flushes_;
        return jbtree::errc::ok;
    }

    // Current contents of block b (overlay, else the replayer's image).
    [[nodiscard]] const unsigned char* block(std::uint64_t b) const noexcept {
        auto it = overlay_.find(b);
        return it != overlay_.end() ? it->second.data() : rep_->block(b);
    }
    // The whole state as an image.
    [[nodiscard]] std::vector<unsigned char> materialize() const {
        std::vector<unsigned char> out = rep_->image();
        for (const auto& [b, bytes] : overlay_) std::memcpy(out.data() + static_cast<std::size_t>(b) * bs_, bytes.data(), bs_);
        return out;
    }

    // What the crash did, for assertions and INFO():
    [[nodiscard]] crash_mode mode() const noexcept { return mode_; }
    [[nodiscard]] std::size_t point() const noexcept { return k_; }
    // reorder_unflushed: start of the unflushed window (durable(k)); other
    // modes: k (torn_last: k - 1 when k > 0).
    [[nodiscard]] std::size_t window_begin() const noexcept { return window_begin_; }
    // reorder_unflushed: the window events applied, in the order applied;
    // torn_last: the torn event; prefix: empty.
    [[nodiscard]] const std::vector<std::size_t>& applied() const noexcept { return applied_; }
    // torn_last: bytes of the new contents kept (0 when nothing was torn).
    [[nodiscard]] std::uint32_t torn_cut() const noexcept { return cut_; }
    // Blocks that differ from (or were written over) the replayer's image.
    [[nodiscard]] std::size_t overlay_blocks() const noexcept { return overlay_.size(); }
    [[nodiscard]] std::string describe() const {
        std::string s = "crash point " + std::to_string(k_) + " (" + jt::describe(mode_) + ")";
        if (mode_ == crash_mode::reorder_unflushed) {
            s += ", window [" + std::to_string(window_begin_) + ", " + std::to_string(k_) + "), applied {";
            for (std::size_t i = 0; i < applied_.size(); ++i) s += (i ? "," : "") + std::to_string(applied_[i]);
            s += "}";
        } else if (mode_ == crash_mode::torn_last && !applied_.empty()) {
            s += ", event " + std::to_string(applied_[0]) + " torn at byte " + std::to_string(cut_);
        }
        return s;
    }

    // Counters of the test's own I/O on this state.
    [[nodiscard]] std::uint64_t blocks_read() const noexcept { return blocks_read_; }
    [[nodiscard]] std::uint64_t blocks_written() const noexcept { return blocks_written_; }
    [[nodiscard]] std::uint64_t flushes() const noexcept { return flushes_; }

private:
    friend class crash_replayer;
    crash_state(const crash_replayer& r, std::uint32_t bs, std::uint64_t count, crash_mode m, std::size_t k)
        : rep_(&r), generation_(r.generation()), bs_(bs), count_(count), mode_(m), k_(k), window_begin_(k) {}

    [[nodiscard]] bool stale() const noexcept { return rep_->generation() != generation_; }
    [[nodiscard]] jbtree::errc check(std::uint64_t blk, std::uint32_t n, const void* buf) const noexcept {
        return crash_detail::check_io(!stale(), count_, blk, n, buf);
    }
    // Block b in the overlay, copied from the replayer's image if new there.
    unsigned char* writable(std::uint64_t b) {
        auto [it, fresh] = overlay_.try_emplace(b);
        if (fresh) it->second.assign(rep_->block(b), rep_->block(b) + bs_);
        return it->second.data();
    }
    void set(std::uint64_t b, const unsigned char* bytes) {
        auto& v = overlay_[b];
        v.assign(bytes, bytes + bs_);
    }

    const crash_replayer* rep_;
    std::uint64_t generation_;
    std::uint32_t bs_;
    std::uint64_t count_;
    crash_mode mode_;
    std::size_t k_;
    std::size_t window_begin_;
    std::vector<std::size_t> applied_;
    std::uint32_t cut_ = 0;
    std::map<std::uint64_t, std::vector<unsigned char>> overlay_;
    std::uint64_t blocks_read_ = 0;
    std::uint64_t blocks_written_ = 0;
    std::uint64_t flushes_ = 0;
};

inline crash_state crash_replayer::crash(crash_mode mode, std::uint64_t seed) const {
    const std::size_t k = pos_;
    const std::uint32_t bs = dev_->block_size();
    crash_state st(*this, bs, dev_->block_count(), mode, k);
    crash_detail::rng rng = crash_detail::make_rng(seed, k, mode);
    if (mode == crash_mode::torn_last && k > 0) {
        // The prefix image holds event k-1's bytes; put back the old tail.
        const std::size_t e = k - 1;
        const std::uint32_t g = dev_->torn_granularity();
        const std::uint32_t granules = g < bs ? bs / g : 1;
        const std::uint32_t cut =
            granules >= 2 ? g * static_cast<std::uint32_t>(1 + rng.below(granules - 1)) : bs / 2;
        unsigned char* b = st.writable(dev_->event_block(e));
        std::memcpy(b + cut, dev_->data_before(e) + cut, bs - cut);
        st.window_begin_ = e;
        st.applied_.push_back(e);
        st.cut_ = cut;
    } else if (mode == crash_mode::reorder_unflushed) {
        const std::size_t d = dev_->durable(k);
        st.window_begin_ = d;
        // Each block the window writes starts from its durable contents: the
        // bytes before the first window event writing it.
        for (std::size_t e = d; e < k; ++e) {
            const std::uint64_t b = dev_->event_block(e);
            if (!st.overlay_.count(b)) st.set(b, dev_->data_before(e));
        }
        for (std::size_t e = d; e < k; ++e)
            if (rng.next() >> 63) st.applied_.push_back(e);
        for (std::size_t i = st.applied_.size(); i > 1; --i) // Fisher-Yates
            std::swap(st.applied_[i - 1], st.applied_[rng.below(i)]);
        for (std::size_t e : st.applied_) st.set(dev_->event_block(e), dev_->event_data(e));
    }
    return st;
}

inline crash_replayer crash_device::replay() const { return crash_replayer(*this); }

inline std::vector<unsigned char> crash_device::state_at(std::size_t k, crash_mode mode, std::uint64_t seed) const {
    crash_replayer r(*this);
    r.seek(k);
    return r.crash(mode, seed).materialize();
}

static_assert(jbtree::BlockDevice<crash_device>);
static_assert(jbtree::BlockDevice<crash_state>);

} // namespace jt
