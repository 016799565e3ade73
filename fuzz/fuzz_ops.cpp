// SPDX-License-Identifier: MIT
// libFuzzer target: operation sequences on a jbtree, checked against std::map.
//
// The input is decoded as a small configuration followed by a sequence of
// operations (see decode notes below and fuzz/README.md). Three tree types
// run on 512-byte blocks with padded keys and values, so nodes hold only a
// handful of entries and every balancing path (split, shift to a sibling,
// merge, borrow, drop, collapse, root growth) is reached by short inputs:
//
//   fmap_traits    u64 key in 48 bytes -> u64 value in 40 bytes (5 per leaf, 8 per internal node)
//   fext_traits    the same in interval mode, value = length (4 per internal node)
//   fblob_traits   u64 key in 40 bytes -> 0..100 byte value, slotted leaves
//
// After every operation the result is compared with the model (error codes
// included: insert of a present key -> errc::exists, erase/assign of an
// absent one -> errc::not_found), verify() must be clean, the record count
// must match, and the storage must hold exactly the tree's nodes (no leaked
// or double-freed blocks). Journal handles carry either unlimited credits,
// exactly the declared worst case (insert_credits()/erase_credits()/
// bulk_load_credits()), or one credit less; in every case the null journal's
// `used` counter must stay <= the declared worst case, an exact handle must
// never fail with errc::no_credits, and a short one must change nothing.
// Any mismatch prints a line to stderr and calls __builtin_trap().
#include <jbtree/jbtree.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace {

using namespace jbtree;

[[noreturn]] void fail_at(const char* file, int line, const char* what) {
    std::fprintf(stderr, "fuzz_ops: check failed at %s:%d: %s\n", file, line, what);
    std::fflush(stderr);
    __builtin_trap();
}
#define FZ_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond);                                                               \
    } while (0)
#define FZ_CHECK_ERR(got, want)                                                                                        \
    do {                                                                                                               \
        const ::jbtree::errc fz_g_ = (got), fz_w_ = (want);                                                            \
        if (fz_g_ != fz_w_) {                                                                                          \
            std::fprintf(stderr, "fuzz_ops: got errc %d (%s), expected %d (%s)\n", static_cast<int>(fz_g_),           \
                         describe(fz_g_), static_cast<int>(fz_w_), describe(fz_w_));                                   \
            fail_at(__FILE__, __LINE__, #got " == " #want);                                                            \
        }                                                                                                              \
    } while (0)

// ---- test record traits ------------------------------------------------------

// Canonical padded encoding: the u64 little-endian, then padding derived
// from it (equal keys encode to equal bytes, as the engine requires).
inline void pad_encode(std::uint64_t x, unsigned char* out, std::size_t n) noexcept {
    store_le<std::uint64_t>(out, x);
    for (std::size_t j = 8; j < n; ++j) out[j] = static_cast<unsigned char>((x >> ((j % 8) * 8)) ^ (j * 0x3b));
}

template <std::size_t K>
struct padded_key_codec {
    using key_type = std::uint64_t;
    static constexpr std::size_t key_size = K;
    static void encode_key(const key_type& k, unsigned char* out) noexcept { pad_encode(k, out, K); }
    [[nodiscard]] static key_type decode_key(const unsigned char* in) noexcept { return load_le<std::uint64_t>(in); }
    [[nodiscard]] static int compare(const key_type& a, const key_type& b) noexcept { return (a > b) - (a < b); }
};

struct fmap_traits : padded_key_codec<48> {
    using value_type = std::uint64_t;
    static constexpr std::uint32_t magic = 0x465a'4d31; // "FZM1"
    static constexpr std::size_t value_size = 40;
    static void encode_value(const value_type& v, unsigned char* out) noexcept { pad_encode(v, out, value_size); }
    [[nodiscard]] static value_type decode_value(const unsigned char* in) noexcept {
        return load_le<std::uint64_t>(in);
    }
};

// Interval mode: value = length; [k, k + len - 1], saturating; len 0 covers k only.
struct fext_traits : fmap_traits {
    static constexpr std::uint32_t magic = 0x465a'4531; // "FZE1"
    [[nodiscard]] static key_type high_key(const key_type& k, const value_type& len) noexcept {
        const std::uint64_t last = k + (len ? len - 1 : 0);
        return last < k ? ~std::uint64_t{0} : last;
    }
};

// Values of 0..100 bytes; the struct holds up to 128 so that oversized
// values (errc::range) can be expressed.
struct blob {
    std::uint16_t size = 0;
    unsigned char bytes[128] = {};
    friend bool operator==(const blob& a, const blob& b) noexcept {
        return a.size == b.size && std::memcmp(a.bytes, b.bytes, a.size > 128 ? 128 : a.size) == 0;
    }
};

struct fblob_traits : padded_key_codec<40> {
    using value_type = blob;
    static constexpr std::uint32_t magic = 0x465a'5331; // "FZS1"
    static constexpr std::size_t max_value_size = 100;
    [[nodiscard]] static std::size_t value_size_of(const value_type& v) noexcept { return v.size; }
    static void encode_value(const value_type& v, unsigned char* out) noexcept {
        // The engine must have refused anything above max_value_size already.
        if (v.size > max_value_size) __builtin_trap();
        std::memcpy(out, v.bytes, v.size);
    }
    [[nodiscard]] static bool decode_value(const unsigned char* in, std::size_t n, value_type& out) noexcept {
        if (n > max_value_size) return false;
        out.size = static_cast<std::uint16_t>(n);
        std::memcpy(out.bytes, in, n);
        return true;
    }
};

static_assert(RecordTraits<fmap_traits> && RecordTraits<fext_traits> && RecordTraits<fblob_traits>);
static_assert(is_interval<fext_traits> && !is_interval<fmap_traits>);
static_assert(!has_fixed_values<fblob_traits>);

// ---- input decoding ----------------------------------------------------------

class reader {
public:
    reader(const std::uint8_t* d, std::size_t n) noexcept : p_(d), end_(d + n) {}
    [[nodiscard]] bool done() const noexcept { return p_ >= end_; }
    std::uint8_t u8() noexcept { return p_ < end_ ? *p_++ : 0; }
    std::uint16_t u16() noexcept {
        const std::uint16_t lo = u8();
        return static_cast<std::uint16_t>(lo | (u8() << 8));
    }

private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
};

using storage_t = memory_storage<>;
using journal_t = null_journal<storage_t>;

// How the keys of one run are spread.
struct key_space {
    std::uint32_t n = 16;      // distinct key indices
    std::uint64_t stride = 1;  // key = index * stride (+ offset)
    bool top = false;          // keys count down from ~0 (tests saturation at the top of the space)
    bool wide = false;         // index taken from two bytes
    [[nodiscard]] std::uint64_t key(std::uint32_t idx) const noexcept {
        const std::uint64_t off = std::uint64_t{idx % n} * stride;
        return top ? ~std::uint64_t{0} - off : off;
    }
    std::uint64_t next(reader& r) const noexcept { return key(wide ? r.u16() : r.u8()); }
};

// Value generators per traits.
template <class Traits>
struct values;
template <>
struct values<fmap_traits> {
    static std::uint64_t make(reader& r) noexcept { return r.u16(); }
    static void bump(std::uint64_t& v) noexcept { v = v * 3 + 1; }
    static bool valid(const std::uint64_t&) noexcept { return true; }
};
template <>
struct values<fext_traits> {
    static std::uint64_t make(reader& r) noexcept {
        const std::uint8_t b = r.u8();
        if (b == 0xFF) return ~std::uint64_t{0}; // saturating high key
        if (b == 0xFE) return 0;                 // zero length: covers its key only
        return 1 + b % 12;
    }
    static void bump(std::uint64_t& v) noexcept { v = v % 12 + 2; }
    static bool valid(const std::uint64_t&) noexcept { return true; }
};
template <>
struct values<fblob_traits> {
    static blob make(reader& r) noexcept {
        blob v;
        const std::uint8_t b = r.u8();
        // 0..100 mostly; 0xF8..0xFF give 101..128 (too long: errc::range).
        v.size = b >= 0xF8 ? static_cast<std::uint16_t>(101 + (b - 0xF8) * 3 + (b == 0xFF ? 6 : 0)) : b % 101;
        std::uint8_t x = r.u8();
        for (std::size_t i = 0; i < v.size && i < sizeof v.bytes; ++i) v.bytes[i] = static_cast<unsigned char>(x += 0x9D);
        return v;
    }
    static void bump(blob& v) noexcept {
        if (v.size) v.bytes[0] ^= 0x5A;
        else v.size = 1;
    }
    static bool valid(const blob& v) noexcept { return v.size <= fblob_traits::max_value_size; }
};

// ---- the harness ---------------------------------------------------------------

enum class credit_mode : std::uint8_t { unlimited, exact, shortened };

template <class Traits>
class harness {
public:
    using tree_t = btree<Traits, storage_t, journal_t>;
    using key_type = typename Traits::key_type;
    using value_type = typename Traits::value_type;
    using model_t = std::map<key_type, value_type>;
    using V = values<Traits>;
    static constexpr bool interval = tree_t::interval;

    harness(const memory_storage_options& o, std::uint32_t tree_id, key_space ks) noexcept
        : st_(o), jr_(st_), ks_(ks), limited_(o.max_blocks != 0) {
        auto r = tree_t::create(st_, jr_, tree_id);
        FZ_CHECK(r.ok());
        t_.emplace(rvalue(*r));
    }

    void run(reader& r) {
        unsigned step = 0;
        while (!r.done() && step < 4000) {
            one_op(r, step);
            check_tree(step);
            ++step;
        }
        compare_all();
#ifdef JBTREE_FUZZ_DEBUG
        std::fprintf(stderr, "fuzz_ops: %u ops, max height %u, max records %zu, ok %u, failed %u (no_space %u, short handles refused %u)\n",
                     step, max_height_, max_records_, n_ok_, n_failed_, n_no_space_, n_refused_);
#endif
        // Tear down: erase everything with exact credits; the storage must end empty.
        while (!model_.empty()) {
            const key_type k = model_.begin()->first;
            auto h = start(credit_mode::exact, t_->erase_credits());
            FZ_CHECK_ERR(t_->erase(h.h, k), errc::ok);
            finish(h);
            model_.erase(model_.begin());
        }
        check_tree(0);
        FZ_CHECK(t_->height() == 0 && t_->anchor().root == 0);
        FZ_CHECK(st_.blocks_in_use() == 0);
    }

private:
    struct handle_use {
        typename journal_t::handle h;
        std::uint32_t declared; // the worst case the engine declared for this op
        credit_mode mode;
    };

    handle_use start(credit_mode m, std::uint64_t declared) {
        FZ_CHECK(declared > 0 && declared < unlimited_credits);
        std::uint32_t c = m == credit_mode::unlimited ? unlimited_credits
                          : m == credit_mode::exact  ? static_cast<std::uint32_t>(declared)
                                                     : static_cast<std::uint32_t>(declared - 1);
        if (c == 0) { // a handle needs one credit; "one less than 1" is not expressible
            c = 1;
            m = credit_mode::exact;
        }
        auto h = jr_.start(c);
        FZ_CHECK(h.ok());
        return handle_use{*h, static_cast<std::uint32_t>(declared), m};
    }
    void finish(handle_use& u) {
        FZ_CHECK(u.h.used <= u.declared); // never more blocks than declared
        FZ_CHECK_ERR(jr_.stop(u.h), errc::ok);
    }
    static credit_mode pick_mode(reader& r) noexcept {
        switch (r.u8() % 5) {
        case 0: return credit_mode::unlimited;
        case 4: return credit_mode::shortened;
        default: return credit_mode::exact;
        }
    }

    // Checks a mutation's result against the model's expectation. With a
    // short handle the engine must refuse (no_credits) anything it would
    // have done; a pure failure (not_found, exists, range...) may be
    // reported either way. Returns true if the mutation took effect.
    bool judge(handle_use& u, errc got, errc want) {
        count_result(got);
        if (u.mode == credit_mode::shortened) {
            if (got == errc::no_credits) {
                FZ_CHECK(u.h.used == 0); // refused before touching anything
                finish(u);
                return false;
            }
            FZ_CHECK(want != errc::ok); // a short handle must not let a change through
        }
        FZ_CHECK(got != errc::no_credits); // exact or unlimited handles always suffice
        if (got == errc::no_space && limited_) { // the storage's block limit, in the plan phase
            FZ_CHECK(u.h.used == 0); // plan-phase failure: nothing touched
            finish(u);
            return false;
        }
        FZ_CHECK_ERR(got, want);
        finish(u);
        return got == errc::ok;
    }

    [[nodiscard]] errc expect_insert(const key_type& k, const value_type& v) const {
        if (!V::valid(v)) return errc::range;
        return model_.count(k) ? errc::exists : errc::ok;
    }

    void one_op(reader& r, unsigned step) {
        const std::uint8_t op = r.u8();
        switch (op % 20) {
        case 0:
        case 1: { // insert
            const key_type k = ks_.next(r);
            const value_type v = V::make(r);
            auto u = start(pick_mode(r), t_->insert_credits());
            const errc want = expect_insert(k, v);
            if (judge(u, t_->insert(u.h, k, v), want)) model_.emplace(k, v);
            break;
        }
        case 2: { // insert_or_assign
            const key_type k = ks_.next(r);
            const value_type v = V::make(r);
            auto u = start(pick_mode(r), t_->insert_credits());
            const bool present = model_.count(k) != 0;
            bool inserted = !present;
            const errc want = V::valid(v) ? errc::ok : errc::range;
            if (judge(u, t_->insert_or_assign(u.h, k, v, &inserted), want)) {
                FZ_CHECK(inserted == !present);
                model_[k] = v;
            }
            break;
        }
        case 3: { // assign
            const key_type k = ks_.next(r);
            const value_type v = V::make(r);
            auto u = start(pick_mode(r), t_->assign_credits());
            const errc want = !V::valid(v) ? errc::range : model_.count(k) ? errc::ok : errc::not_found;
            if (judge(u, t_->assign(u.h, k, v), want)) model_[k] = v;
            break;
        }
        case 4:
        case 5:
        case 6: { // erase
            // Mostly keys that are present, so trees shrink as well as grow.
            key_type k = ks_.next(r);
            const std::uint8_t sel = r.u8();
            if (!model_.empty() && sel % 4 != 0) {
                auto it = model_.begin();
                std::advance(it, sel % model_.size());
                k = it->first;
            }
            auto u = start(pick_mode(r), t_->erase_credits());
            const errc want = model_.count(k) ? errc::ok : errc::not_found;
            if (judge(u, t_->erase(u.h, k), want)) model_.erase(k);
            break;
        }
        case 7: { // update (find + assign)
            const key_type k = ks_.next(r);
            auto u = start(pick_mode(r), t_->assign_credits());
            auto it = model_.find(k);
            const errc want = it == model_.end() ? errc::not_found : errc::ok;
            const errc got = t_->update(u.h, k, [](value_type& v) noexcept { V::bump(v); });
            if (judge(u, got, want)) V::bump(it->second);
            break;
        }
        case 8: { // find / contains
            const key_type k = ks_.next(r);
            auto it = model_.find(k);
            auto f = t_->find(k);
            if (it == model_.end()) {
                FZ_CHECK_ERR(f.error(), errc::not_found);
            } else {
                FZ_CHECK(f.ok());
                FZ_CHECK(*f == it->second);
            }
            auto c = t_->contains(k);
            FZ_CHECK(c.ok() && *c == (it != model_.end()));
            break;
        }
        case 9: { // lower_bound / upper_bound, then next a few times
            const key_type k = ks_.next(r);
            const std::uint8_t a = r.u8();
            const bool upper = a & 1;
            auto c = upper ? t_->upper_bound(k) : t_->lower_bound(k);
            FZ_CHECK(c.ok());
            auto it = upper ? model_.upper_bound(k) : model_.lower_bound(k);
            for (unsigned n = (a >> 1) % 12; ; --n) {
                expect_at(*c, it);
                if (!n) break;
                FZ_CHECK_ERR(c->next(), errc::ok);
                if (it != model_.end()) ++it;
            }
            break;
        }
        case 10: { // first/last/lower_bound, then prev a few times
            const key_type k = ks_.next(r);
            const std::uint8_t a = r.u8();
            std::optional<result<typename tree_t::cursor>> c;
            typename model_t::iterator it;
            switch (a % 3) {
            case 0: c.emplace(t_->last()); it = model_.empty() ? model_.end() : std::prev(model_.end()); break;
            case 1: c.emplace(t_->first()); it = model_.begin(); break;
            default: c.emplace(t_->lower_bound(k)); it = model_.lower_bound(k); break;
            }
            FZ_CHECK(c->ok());
            for (unsigned n = (a >> 2) % 14; ; --n) {
                expect_at(**c, it);
                if (!n) break;
                FZ_CHECK_ERR((*c)->prev(), errc::ok);
                // Before the first record: at_end(); prev() from at_end(): the last record.
                if (it == model_.end()) it = model_.empty() ? model_.end() : std::prev(model_.end());
                else if (it == model_.begin()) it = model_.end();
                else --it;
            }
            break;
        }
        case 11: { // count(lo, hi)
            const key_type lo = ks_.next(r), hi = ks_.next(r);
            std::uint64_t want = 0;
            if (lo <= hi)
                for (auto it = model_.lower_bound(lo); it != model_.end() && it->first <= hi; ++it) ++want;
            auto c = t_->count(lo, hi);
            FZ_CHECK(c.ok());
            FZ_CHECK(*c == want);
            break;
        }
        case 12: { // for_each(lo, hi), stopping after m records
            const key_type lo = ks_.next(r), hi = ks_.next(r);
            const unsigned m = r.u8() % 20 + 1;
            std::vector<std::pair<key_type, value_type>> got;
            const errc e = t_->for_each(lo, hi, [&](const key_type& k, const value_type& v) noexcept {
                got.emplace_back(k, v);
                return got.size() < m;
            });
            FZ_CHECK_ERR(e, errc::ok);
            std::size_t i = 0;
            if (lo <= hi)
                for (auto it = model_.lower_bound(lo); it != model_.end() && it->first <= hi && i < m; ++it, ++i) {
                    FZ_CHECK(i < got.size());
                    FZ_CHECK(got[i].first == it->first && got[i].second == it->second);
                }
            FZ_CHECK(got.size() == i);
            break;
        }
        case 13: bulk(r); break;
        case 14: { // overlap query (interval trees); others: a full comparison
            if constexpr (interval) overlap(r);
            else compare_all();
            break;
        }
        case 15:
        case 16: cursor_across_change(r); break;
        case 17: { // reopen from the anchor
            const tree_anchor a = t_->anchor();
            auto o = tree_t::open(st_, jr_, a);
            FZ_CHECK(o.ok());
            t_.emplace(rvalue(*o));
            FZ_CHECK(t_->anchor() == a);
            break;
        }
        case 18: { // stats
            auto s = t_->stats();
            FZ_CHECK(s.ok());
            FZ_CHECK(s->records == model_.size());
            FZ_CHECK(s->height == t_->height());
            FZ_CHECK(s->nodes() == st_.blocks_in_use());
            FZ_CHECK(s->leaf_units_used <= s->leaf_units_capacity);
            break;
        }
        default: { // a burst of ascending or descending inserts (fills nodes, exercises append/prepend splits)
            const std::uint8_t a = r.u8();
            const std::uint32_t start_idx = r.u8();
            const unsigned n = a % 16 + 1;
            const bool down = a & 0x80;
            for (unsigned i = 0; i < n; ++i) {
                const std::uint32_t idx = down ? start_idx + n - i : start_idx + i;
                const key_type k = ks_.key(idx);
                value_type v{};
                if constexpr (std::is_same_v<value_type, blob>) {
                    v.size = static_cast<std::uint16_t>((idx * 7) % 101);
                    for (std::size_t j = 0; j < v.size; ++j) v.bytes[j] = static_cast<unsigned char>(idx + j);
                } else if constexpr (interval) {
                    v = 1 + idx % 5;
                } else {
                    v = idx * 1000 + step;
                }
                auto u = start(credit_mode::exact, t_->insert_credits());
                if (judge(u, t_->insert(u.h, k, v), expect_insert(k, v))) model_.emplace(k, v);
                if (n > 1) check_tree(step);
            }
            break;
        }
        }
    }

    // The cursor stands where the model iterator does.
    template <class C>
    void expect_at(C& c, typename model_t::iterator it) {
        FZ_CHECK(c.at_end() == (it == model_.end()));
        if (it == model_.end()) return;
        FZ_CHECK(c.key() == it->first);
        auto v = c.value();
        FZ_CHECK(v.ok());
        FZ_CHECK(*v == it->second);
    }

    // A cursor survives a change of the tree: after it, next() goes to the
    // first record > its key, prev() to the last one < its key, value() finds
    // its key again (not_found if erased).
    void cursor_across_change(reader& r) {
        const key_type k = ks_.next(r);
        auto c = t_->lower_bound(k);
        FZ_CHECK(c.ok());
        auto it = model_.lower_bound(k);
        expect_at(*c, it);
        const bool was_end = c->at_end();
        const key_type at = was_end ? key_type{} : c->key();
        // The change: insert, erase (possibly the cursor's own record) or assign.
        const std::uint8_t a = r.u8();
        const key_type k2 = (a & 0x30) == 0 && !was_end ? at : ks_.next(r);
        auto u = start(credit_mode::exact, a % 3 == 1 ? t_->erase_credits() : t_->insert_credits());
        if (a % 3 == 0) {
            const value_type v = V::make(r);
            if (judge(u, t_->insert(u.h, k2, v), expect_insert(k2, v))) model_.emplace(k2, v);
        } else if (a % 3 == 1) {
            if (judge(u, t_->erase(u.h, k2), model_.count(k2) ? errc::ok : errc::not_found)) model_.erase(k2);
        } else {
            const value_type v = V::make(r);
            const errc want = !V::valid(v) ? errc::range : model_.count(k2) ? errc::ok : errc::not_found;
            if (judge(u, t_->assign(u.h, k2, v), want)) model_[k2] = v;
        }
        check_tree(0);
        switch ((a >> 6) & 3) {
        case 0:
        case 1: { // next
            FZ_CHECK_ERR(c->next(), errc::ok);
            expect_at(*c, was_end ? model_.end() : model_.upper_bound(at));
            break;
        }
        case 2: { // prev
            FZ_CHECK_ERR(c->prev(), errc::ok);
            typename model_t::iterator want;
            if (was_end) {
                want = model_.empty() ? model_.end() : std::prev(model_.end());
            } else {
                want = model_.lower_bound(at);
                want = want == model_.begin() ? model_.end() : std::prev(want);
            }
            expect_at(*c, want);
            break;
        }
        default: { // value
            if (was_end) break;
            auto v = c->value();
            auto m = model_.find(at);
            if (m == model_.end()) {
                FZ_CHECK_ERR(v.error(), errc::not_found);
            } else {
                FZ_CHECK(v.ok());
                FZ_CHECK(*v == m->second);
            }
            break;
        }
        }
    }

    // Bulk load of a small sorted batch (only succeeds into an empty tree).
    void bulk(reader& r) {
        const std::uint8_t a = r.u8(), b = r.u8(), seed = r.u8();
        const std::uint64_t n = a % 48;
        unsigned fill = 10 + b % 91;
        if (b >= 0xFC) fill = b & 1 ? 9 : 101; // invalid fill factors
        // 0: good; 1: a duplicate key (not ascending); 2: input ends early;
        // 3: an oversized value (slotted only).
        unsigned flaw = 0;
        if ((seed & 0x1F) == 1) flaw = 1;
        else if ((seed & 0x1F) == 2) flaw = 2;
        else if ((seed & 0x1F) == 3 && std::is_same_v<value_type, blob>) flaw = 3;
        const std::uint64_t flaw_at = n ? seed % n : 0;

        std::vector<std::pair<key_type, value_type>> batch;
        std::uint64_t x = seed * 2654435761u + 1;
        std::uint64_t key = ks_.top ? ~std::uint64_t{0} - (n * 4 + 4) * ks_.stride : (seed % 8) * ks_.stride;
        for (std::uint64_t i = 0; i < n; ++i) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            if (!(flaw == 1 && i == flaw_at && i > 0)) key += ks_.stride * (1 + ((x >> 33) % 3));
            value_type v{};
            if constexpr (std::is_same_v<value_type, blob>) {
                v.size = static_cast<std::uint16_t>((x >> 40) % 101);
                if (flaw == 3 && i == flaw_at) v.size = 101;
                for (std::size_t j = 0; j < v.size; ++j) v.bytes[j] = static_cast<unsigned char>(x >> (j % 7 * 8));
            } else if constexpr (interval) {
                v = 1 + (x >> 40) % 9;
            } else {
                v = x >> 20;
            }
            batch.emplace_back(key, v);
        }
        const std::uint64_t limit = flaw == 2 ? flaw_at : n;
        std::uint64_t pos = 0;
        auto src = [&](key_type& k, value_type& v) noexcept {
            if (pos >= limit) return false;
            k = batch[pos].first;
            v = batch[pos].second;
            ++pos;
            return true;
        };

        const std::uint64_t need = t_->bulk_load_credits(n, fill);
        errc want;
        if (!model_.empty()) want = errc::not_empty;
        else if (fill < tree_t::min_fill_percent || fill > tree_t::max_fill_percent) want = errc::invalid;
        else if (n == 0) want = errc::ok;
        else if (flaw == 1 && flaw_at > 0) want = errc::invalid;
        else if (flaw == 2) want = errc::invalid;
        else if (flaw == 3) want = errc::range;
        else want = errc::ok;
        if (fill >= tree_t::min_fill_percent && fill <= tree_t::max_fill_percent && n) FZ_CHECK(need > 0);

        auto u = start(need ? pick_mode(r) : credit_mode::unlimited, need ? need : 1);
        const credit_mode m = u.mode; // start() turns "one less than 1" into exact
        const errc got = t_->bulk_load(u.h, n, src, fill);
        count_result(got);
        if (got == errc::ok && want == errc::ok && n) {
            FZ_CHECK(m != credit_mode::shortened);
            for (auto& kv : batch) model_.insert(kv);
            FZ_CHECK(t_->size() == n);
        } else if (got == errc::no_space) {
            FZ_CHECK(model_.empty());
        } else if (got == errc::no_credits) {
            FZ_CHECK(m == credit_mode::shortened && model_.empty() && want != errc::not_empty);
            FZ_CHECK(u.h.used == 0);
        } else {
            FZ_CHECK_ERR(got, want);
        }
        if (got != errc::ok) FZ_CHECK(model_.empty() || got == errc::not_empty);
        if (need) FZ_CHECK(u.h.used <= need);
        FZ_CHECK_ERR(jr_.stop(u.h), errc::ok);
        // A failed load leaves the tree empty and gives every block back.
        if (got != errc::ok && got != errc::not_empty) {
            FZ_CHECK(t_->height() == 0 && t_->size() == 0);
            FZ_CHECK(st_.blocks_in_use() == 0);
        }
        compare_all();
    }

    // for_each_overlapping against brute force.
    void overlap(reader& r)
        requires interval
    {
        key_type lo = ks_.next(r), hi = ks_.next(r);
        const std::uint8_t a = r.u8();
        if (a & 1) hi = lo + (a >> 1) % 8 * ks_.stride;
        if (hi < lo && (a & 2)) std::swap(lo, hi);
        const unsigned m = a & 0x80 ? 1000000u : (a >> 2) % 8 + 1;
        std::vector<std::pair<key_type, value_type>> got;
        const errc e = t_->for_each_overlapping(lo, hi, [&](const key_type& k, const value_type& v) noexcept {
            got.emplace_back(k, v);
            return got.size() < m;
        });
        FZ_CHECK_ERR(e, errc::ok);
        std::size_t i = 0;
        if (lo <= hi)
            for (auto it = model_.begin(); it != model_.end() && i < m; ++it) {
                if (it->first > hi) break;
                if (Traits::high_key(it->first, it->second) < lo) continue;
                FZ_CHECK(i < got.size());
                FZ_CHECK(got[i].first == it->first && got[i].second == it->second);
                ++i;
            }
        FZ_CHECK(got.size() == i);
    }

    // The whole tree equals the model (for_each and a full cursor walk).
    void compare_all() {
        auto it = model_.begin();
        bool ok = true;
        const errc e = t_->for_each([&](const key_type& k, const value_type& v) noexcept {
            if (it == model_.end() || it->first != k || !(it->second == v)) ok = false;
            else ++it;
            return ok;
        });
        FZ_CHECK_ERR(e, errc::ok);
        FZ_CHECK(ok && it == model_.end());
        auto c = t_->first();
        FZ_CHECK(c.ok());
        for (auto m = model_.begin(); m != model_.end(); ++m) {
            FZ_CHECK(!c->at_end() && c->key() == m->first);
            FZ_CHECK_ERR(c->next(), errc::ok);
        }
        FZ_CHECK(c->at_end());
    }

    void count_result(errc e) noexcept {
        if (e == errc::ok) ++n_ok_;
        else ++n_failed_;
        if (e == errc::no_space) ++n_no_space_;
        if (e == errc::no_credits) ++n_refused_;
    }

    void check_tree(unsigned step) {
        if (t_->height() > max_height_) max_height_ = t_->height();
        if (model_.size() > max_records_) max_records_ = model_.size();
        const verify_report rep = t_->verify();
        if (!rep.clean()) {
            for (std::uint32_t i = 0; i < rep.kept(); ++i) {
                const verify_problem& p = rep.problems[i];
                std::fprintf(stderr, "verify: %s (%s) at block %llu index %u\n", describe(p.kind),
                             describe(p.fault), static_cast<unsigned long long>(p.blkno), p.index);
            }
            fail_at(__FILE__, __LINE__, "verify() clean");
        }
        FZ_CHECK(rep.records == model_.size());
        FZ_CHECK(t_->size() == model_.size());
        FZ_CHECK(rep.height == t_->height());
        FZ_CHECK(rep.nodes == st_.blocks_in_use()); // no leaked blocks, no block freed twice
        FZ_CHECK(t_->empty() == model_.empty());
        // A full comparison is O(n): do it always while small, else now and then.
        if (model_.size() <= 48 || step % 16 == 0) compare_all();
    }

    storage_t st_;
    journal_t jr_;
    key_space ks_;
    bool limited_;
    std::optional<tree_t> t_;
    model_t model_;
    // Statistics (printed with -DJBTREE_FUZZ_DEBUG).
    unsigned max_height_ = 0, n_ok_ = 0, n_failed_ = 0, n_no_space_ = 0, n_refused_ = 0;
    std::size_t max_records_ = 0;
};

template <class Traits>
void run_with(const memory_storage_options& o, std::uint32_t tree_id, key_space ks, reader& r) {
    harness<Traits> h(o, tree_id, ks);
    h.run(r);
}

// Input: byte 0 configuration, byte 1 key space, byte 2 storage limit, then ops.
//   byte 0: bits 0-1 tree type (0,3: map, 1: extent, 2: slotted blob);
//           bit 2 checksums on; bits 3-7 checksum seed / tree id material
//   byte 1: bits 0-1 key count (16, 64, 256, 2048 with two-byte indices);
//           bit 2 keys from the top of the u64 range; bit 3 stride 4 (extent gaps)
//   byte 2: 0..199 no block limit; 200..255: at most (byte - 200 + 3) blocks,
//           so allocations fail with errc::no_space mid-sequence
void run_input(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return;
    reader r(data, size);
    const std::uint8_t c0 = r.u8(), c1 = r.u8(), c2 = r.u8();
    memory_storage_options o;
    o.block_size = 512;
    o.checksums = (c0 & 4) != 0;
    o.checksum_seed = 0x9E3779B9u * (c0 >> 3);
    o.max_blocks = c2 >= 200 ? c2 - 200u + 3u : 0;
    const std::uint32_t tree_id = 1 + (c0 >> 3);
    key_space ks;
    static constexpr std::uint32_t counts[4] = {16, 64, 256, 2048};
    ks.n = counts[c1 & 3];
    ks.wide = (c1 & 3) == 3;
    ks.top = (c1 & 4) != 0;
    ks.stride = (c1 & 8) ? 4 : 1;
    switch (c0 & 3) {
    case 1: run_with<fext_traits>(o, tree_id, ks, r); break;
    case 2: run_with<fblob_traits>(o, tree_id, ks, r); break;
    default: run_with<fmap_traits>(o, tree_id, ks, r); break;
    }
}

} // namespace

#ifndef JBTREE_FUZZ_GEN_CORPUS

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    run_input(data, size);
    return 0;
}

#else // ---- seed generator ------------------------------------------------------------

#include <cstdlib>
#include <string>

namespace {

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
        std::perror(path.c_str());
        std::exit(1);
    }
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

// A seed: the three configuration bytes, then `ops` operations drawn from
// `mix` (opcodes, each followed by pseudo-random argument bytes).
std::vector<std::uint8_t> seed(std::uint8_t c0, std::uint8_t c1, std::uint8_t c2, unsigned ops,
                               std::vector<std::uint8_t> mix, std::uint32_t x) {
    std::vector<std::uint8_t> out{c0, c1, c2};
    for (unsigned i = 0; i < ops; ++i) {
        x = x * 1103515245u + 12345u;
        out.push_back(mix[(x >> 16) % mix.size()]);
        for (int j = 0; j < 4; ++j) {
            x = x * 1103515245u + 12345u;
            out.push_back(static_cast<std::uint8_t>(x >> 16));
        }
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    const std::string d = std::string(argv[1]) + "/";
    // Opcodes (op % 20): 0-1 insert, 2 insert_or_assign, 3 assign, 4-6 erase,
    // 7 update, 8 find, 9 lower/upper_bound+next, 10 prev, 11 count,
    // 12 for_each, 13 bulk_load, 14 overlap/compare, 15-16 cursor across a
    // change, 17 reopen, 18 stats, 19 ascending/descending burst.
    const std::vector<std::uint8_t> grow{0, 1, 2, 19, 8, 9};
    const std::vector<std::uint8_t> churn{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18, 19};
    const std::vector<std::uint8_t> shrink{4, 5, 6, 4, 5, 6, 8, 10};
    auto cat = [](std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
        a.insert(a.end(), b.begin() + 3, b.end());
        return a;
    };
    write_file(d + "map-16-churn", seed(0x00, 0x00, 0, 120, churn, 1));
    write_file(d + "map-256-grow-shrink", cat(seed(0x00, 0x02, 0, 150, grow, 2), seed(0, 0, 0, 150, shrink, 3)));
    write_file(d + "map-2048-top-csum", seed(0x0C, 0x07, 0, 200, churn, 4));
    write_file(d + "map-64-nospace", seed(0x00, 0x01, 215, 150, churn, 5));
    write_file(d + "ext-64-overlap", seed(0x01, 0x09, 0, 160, {0, 1, 2, 14, 14, 4, 5, 19, 7}, 6));
    write_file(d + "ext-256-top", seed(0x05, 0x0E, 0, 160, churn, 7));
    write_file(d + "blob-64-churn", seed(0x02, 0x01, 0, 160, churn, 8));
    write_file(d + "blob-256-grow-shrink-csum",
               cat(seed(0x06, 0x02, 0, 120, grow, 9), seed(0, 0, 0, 150, shrink, 10)));
    // Bulk loads into the empty tree first, then changes.
    write_file(d + "map-bulk", cat(seed(0x00, 0x02, 0, 1, {13}, 11), seed(0, 0, 0, 80, churn, 12)));
    write_file(d + "ext-bulk", cat(seed(0x01, 0x01, 0, 1, {13}, 13), seed(0, 0, 0, 80, {14, 0, 4, 13}, 14)));
    write_file(d + "blob-bulk", cat(seed(0x02, 0x02, 0, 1, {13}, 15), seed(0, 0, 0, 80, churn, 16)));
    return 0;
}

#endif
