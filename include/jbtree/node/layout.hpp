// SPDX-License-Identifier: MIT
// jbtree: where entries live inside a node, for one RecordTraits.
//
// Two layouts (docs/format.md has the byte-level picture):
//
// Fixed (internal nodes of every tree; leaves of fixed-value trees):
//   header | key[0..cap) | payload[0..cap)
//   Keys and payloads are separate arrays so a search reads keys only.
//   cap = (block_size - 64) / (key_size + payload_size).
//   Leaf payload = the encoded value. Internal payload = [high key] + le64 child.
//   Slots at index >= count are zero.
//
// Slotted (leaves of variable-value trees):
//   header | le16 slot[0..count) | free (zero) | record[count-1] ... record[0]
//   Records are packed at the end of the block in slot order: record 0 ends at
//   the block end, record i ends where record i-1 begins, and data_start is
//   where the last record begins. A record is le16 value_len | key | value.
//   The tiling invariant makes validation exact and O(count).
//
// Sizes are counted in "units": one unit per entry in fixed nodes, bytes
// (slot + record) in slotted nodes. Balancing works on units for both.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jbtree/base/endian.hpp"
#include "jbtree/node/header.hpp"
#include "jbtree/policy/record_traits.hpp"

namespace jbtree {

template <RecordTraits Traits>
class node_layout {
public:
    static constexpr std::uint32_t key_size = static_cast<std::uint32_t>(Traits::key_size);
    static constexpr bool slotted_leaves = !has_fixed_values<Traits>;
    static constexpr bool interval = is_interval<Traits>;
    // Internal entry payload: optional high key, then the child block number.
    static constexpr std::uint32_t internal_payload = (interval ? key_size : 0) + 8;
    static constexpr std::uint32_t child_offset = interval ? key_size : 0;
    static constexpr std::uint32_t slot_size = 2;
    static constexpr std::uint32_t record_prefix = 2; // le16 value_len

    static constexpr std::uint32_t leaf_payload() noexcept {
        if constexpr (slotted_leaves) return 0;
        else return static_cast<std::uint32_t>(Traits::value_size);
    }
    static constexpr std::uint32_t max_value_size() noexcept {
        if constexpr (slotted_leaves) return static_cast<std::uint32_t>(Traits::max_value_size);
        else return static_cast<std::uint32_t>(Traits::value_size);
    }
    // Units of one leaf entry holding a value of n bytes.
    static constexpr std::uint32_t leaf_units_for(std::uint32_t value_len) noexcept {
        if constexpr (slotted_leaves) return slot_size + record_prefix + key_size + value_len;
        else return (void)value_len, 1;
    }

    node_layout() noexcept = default;
    explicit node_layout(std::uint32_t block_size) noexcept
        : bs_(block_size), internal_cap_((block_size - node_header_size) / (key_size + internal_payload)),
          leaf_cap_(slotted_leaves ? block_size - node_header_size
                                   : (block_size - node_header_size) / (key_size + leaf_payload())) {}

    [[nodiscard]] std::uint32_t block_size() const noexcept { return bs_; }
    // Capacity in units.
    [[nodiscard]] std::uint32_t capacity(bool leaf) const noexcept { return leaf ? leaf_cap_ : internal_cap_; }
    // Largest number of entries a node can hold (fixed: capacity; slotted: smallest records).
    [[nodiscard]] std::uint32_t max_entries(bool leaf) const noexcept {
        return leaf && slotted_leaves ? leaf_cap_ / leaf_units_for(0) : capacity(leaf);
    }
    // Units of the largest possible entry.
    [[nodiscard]] static constexpr std::uint32_t max_entry_units(bool leaf) noexcept {
        return leaf ? leaf_units_for(max_value_size()) : 1;
    }
    // True when a node of this size can be split and balanced: it must hold at
    // least three of the largest entries (see docs/design.md, "Balancing").
    [[nodiscard]] bool usable() const noexcept {
        return internal_cap_ >= 4 && leaf_cap_ >= 3 * max_entry_units(true) && max_value_size() <= 0xFFFF;
    }

    // ---- header ---------------------------------------------------------
    [[nodiscard]] static std::uint32_t count(const unsigned char* n) noexcept { return header_of(n)->count.get(); }
    [[nodiscard]] static unsigned level(const unsigned char* n) noexcept { return header_of(n)->level.get(); }

    [[nodiscard]] static constexpr std::uint16_t flags_for(bool leaf) noexcept {
        return static_cast<std::uint16_t>((leaf && slotted_leaves ? node_flag_slotted : 0) |
                                          (interval ? node_flag_interval : 0));
    }
    [[nodiscard]] static constexpr std::uint32_t payload_field_for(bool leaf) noexcept {
        return leaf ? leaf_payload() : internal_payload;
    }

    void init(unsigned char* n, std::uint64_t blkno, unsigned level, std::uint32_t tree_id) const noexcept {
        fill_bytes(n, 0, bs_);
        node_header* h = header_of(n);
        h->magic.set(Traits::magic);
        h->self.set(blkno);
        h->tree_id.set(tree_id);
        h->level.set(static_cast<std::uint16_t>(level));
        h->flags.set(flags_for(level == 0));
        h->key_size.set(static_cast<std::uint16_t>(key_size));
        h->payload_size.set(static_cast<std::uint16_t>(payload_field_for(level == 0)));
        h->data_start.set(level == 0 && slotted_leaves ? bs_ : 0);
    }

    // ---- entry access ---------------------------------------------------
    [[nodiscard]] const unsigned char* key(const unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        if (leaf && slotted_leaves) return record(n, i) + record_prefix;
        return n + node_header_size + i * key_size;
    }
    [[nodiscard]] unsigned char* key(unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        return const_cast<unsigned char*>(key(static_cast<const unsigned char*>(n), leaf, i));
    }
    [[nodiscard]] const unsigned char* payload(const unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        if (leaf && slotted_leaves) return record(n, i) + record_prefix + key_size;
        return n + node_header_size + capacity(leaf) * key_size + i * payload_field_for(leaf);
    }
    [[nodiscard]] unsigned char* payload(unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        return const_cast<unsigned char*>(payload(static_cast<const unsigned char*>(n), leaf, i));
    }
    [[nodiscard]] std::uint32_t payload_len(const unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        if (leaf && slotted_leaves) return load_le<std::uint16_t>(record(n, i));
        return payload_field_for(leaf);
    }
    [[nodiscard]] static std::uint64_t child(const unsigned char* payload) noexcept {
        return load_le<std::uint64_t>(payload + child_offset);
    }

    [[nodiscard]] std::uint32_t entry_units(const unsigned char* n, bool leaf, std::uint32_t i) const noexcept {
        if (leaf && slotted_leaves) return leaf_units_for(payload_len(n, true, i));
        return 1;
    }
    [[nodiscard]] std::uint32_t used_units(const unsigned char* n, bool leaf) const noexcept {
        if (leaf && slotted_leaves) return (bs_ - header_of(n)->data_start.get()) + slot_size * count(n);
        return count(n);
    }
    [[nodiscard]] std::uint32_t free_units(const unsigned char* n, bool leaf) const noexcept {
        return capacity(leaf) - used_units(n, leaf);
    }

    // ---- mutation (callers have checked that the result fits) -----------
    // Insert an entry at index i; plen is the payload length (fixed layouts
    // ignore it).
    void insert(unsigned char* n, bool leaf, std::uint32_t i, const unsigned char* k, const unsigned char* p,
                std::uint32_t plen) const noexcept {
        const std::uint32_t cnt = count(n);
        if (leaf && slotted_leaves) {
            const std::uint32_t rsz = record_prefix + key_size + plen;
            const std::uint32_t ds = header_of(n)->data_start.get();
            const std::uint32_t end = i == 0 ? bs_ : slot(n, i - 1); // new record ends here
            // Records i.. move down by rsz; their slots shift up one and drop by rsz.
            move_bytes(n + ds - rsz, n + ds, end - ds);
            for (std::uint32_t j = cnt; j > i; --j) set_slot(n, j, slot(n, j - 1) - rsz);
            unsigned char* r = n + end - rsz;
            store_le<std::uint16_t>(r, static_cast<std::uint16_t>(plen));
            copy_bytes(r + record_prefix, k, key_size);
            copy_bytes(r + record_prefix + key_size, p, plen);
            set_slot(n, i, end - rsz);
            header_of(n)->data_start.set(ds - rsz);
        } else {
            const std::uint32_t ps = payload_field_for(leaf);
            unsigned char* kp = key(n, leaf, i);
            unsigned char* pp = payload(n, leaf, i);
            move_bytes(kp + key_size, kp, (cnt - i) * key_size);
            move_bytes(pp + ps, pp, (cnt - i) * ps);
            copy_bytes(kp, k, key_size);
            copy_bytes(pp, p, ps);
        }
        header_of(n)->count.set(cnt + 1);
    }

    void erase(unsigned char* n, bool leaf, std::uint32_t i) const noexcept { erase_range(n, leaf, i, 1); }

    // Remove entries [i, i + m).
    void erase_range(unsigned char* n, bool leaf, std::uint32_t i, std::uint32_t m) const noexcept {
        const std::uint32_t cnt = count(n);
        if (m == 0) return;
        if (leaf && slotted_leaves) {
            const std::uint32_t ds = header_of(n)->data_start.get();
            const std::uint32_t end = i == 0 ? bs_ : slot(n, i - 1);   // end of record i
            const std::uint32_t begin = slot(n, i + m - 1);             // start of record i+m-1
            const std::uint32_t gap = end - begin;
            move_bytes(n + ds + gap, n + ds, begin - ds); // records after the range move up
            fill_bytes(n + ds, 0, gap);
            for (std::uint32_t j = i + m; j < cnt; ++j) set_slot(n, j - m, slot(n, j) + gap);
            fill_bytes(n + node_header_size + (cnt - m) * slot_size, 0, m * slot_size);
            header_of(n)->data_start.set(ds + gap);
        } else {
            const std::uint32_t ps = payload_field_for(leaf);
            unsigned char* kp = key(n, leaf, i);
            unsigned char* pp = payload(n, leaf, i);
            move_bytes(kp, kp + m * key_size, (cnt - i - m) * key_size);
            move_bytes(pp, pp + m * ps, (cnt - i - m) * ps);
            fill_bytes(key(n, leaf, cnt - m), 0, m * key_size);
            fill_bytes(payload(n, leaf, cnt - m), 0, m * ps);
        }
        header_of(n)->count.set(cnt - m);
    }

    // Append src's entries [0, m) to the end of dst, then remove them from src.
    void move_head_to(unsigned char* src, unsigned char* dst, bool leaf, std::uint32_t m) const noexcept {
        const std::uint32_t dc = count(dst);
        if (leaf && slotted_leaves) {
            for (std::uint32_t j = 0; j < m; ++j)
                insert(dst, true, dc + j, key(src, true, j), payload(src, true, j), payload_len(src, true, j));
        } else {
            const std::uint32_t ps = payload_field_for(leaf);
            copy_bytes(key(dst, leaf, dc), key(src, leaf, 0), m * key_size);
            copy_bytes(payload(dst, leaf, dc), payload(src, leaf, 0), m * ps);
            header_of(dst)->count.set(dc + m);
        }
        erase_range(src, leaf, 0, m);
    }

    // Prepend src's last m entries to dst, then remove them from src.
    void move_tail_to(unsigned char* src, unsigned char* dst, bool leaf, std::uint32_t m) const noexcept {
        const std::uint32_t sc = count(src);
        const std::uint32_t first = sc - m;
        if (leaf && slotted_leaves) {
            for (std::uint32_t j = 0; j < m; ++j)
                insert(dst, true, j, key(src, true, first + j), payload(src, true, first + j),
                       payload_len(src, true, first + j));
        } else {
            const std::uint32_t ps = payload_field_for(leaf);
            const std::uint32_t dc = count(dst);
            move_bytes(key(dst, leaf, m), key(dst, leaf, 0), dc * key_size);
            move_bytes(payload(dst, leaf, m), payload(dst, leaf, 0), dc * ps);
            copy_bytes(key(dst, leaf, 0), key(src, leaf, first), m * key_size);
            copy_bytes(payload(dst, leaf, 0), payload(src, leaf, first), m * ps);
            header_of(dst)->count.set(dc + m);
        }
        erase_range(src, leaf, first, m);
    }

    // ---- slotted internals (public for validation) ------------------------
    [[nodiscard]] static std::uint32_t slot(const unsigned char* n, std::uint32_t i) noexcept {
        return load_le<std::uint16_t>(n + node_header_size + i * slot_size);
    }

private:
    static void set_slot(unsigned char* n, std::uint32_t i, std::uint32_t off) noexcept {
        store_le<std::uint16_t>(n + node_header_size + i * slot_size, static_cast<std::uint16_t>(off));
    }
    [[nodiscard]] static const unsigned char* record(const unsigned char* n, std::uint32_t i) noexcept {
        return n + slot(n, i);
    }

    std::uint32_t bs_ = 0;
    std::uint32_t internal_cap_ = 0;
    std::uint32_t leaf_cap_ = 0;
};

} // namespace jbtree
