/* SPDX-License-Identifier: MIT */
/*
 * e4maps: the maps an ext4 image stores in its map file (inode 5,
 * docs/format.md section 8: one jbtree volume with an external journal,
 * the filesystem's own jbd2 log), opened and changed by kernel code. The
 * filesystem side (the ext4 patch in contrib/linux/) finds the map file's
 * run [first, first + blocks) and fills a struct kglue_fs
 * (kmaps_linux.h); this side (e4maps.cpp, C++ built with the kernel's
 * flags, over kernel_policies.hpp) checks the volume superblock, opens the
 * three trees from its anchors (slot 0 rmap, 1 refcount, 2 parent
 * pointers) and writes changed anchors back into it, in the handle of the
 * change. Tree nodes come from the volume's own bitmap through the
 * kglue_fs allocator (new_block/free_block), which the filesystem side
 * implements over [bitmap_start, bitmap_start + bitmap_blocks).
 *
 * Every call returns 0 or a negative errno. A volume that is not one (bad
 * magic, checksum, geometry or anchors) is -EUCLEAN with *why set: the
 * caller treats the maps as stale and leaves them alone.
 */
#ifndef E4MAPS_H
#define E4MAPS_H

#include "kglue.h"

#ifdef __cplusplus
extern "C" {
#endif

struct e4maps;

/* Where the volume keeps its bitmap and nodes (device blocks). */
struct e4maps_geometry {
	uint64_t first;        /* the volume superblock */
	uint64_t end;          /* first + block_count */
	uint64_t bitmap_start; /* bitmap_blocks blocks; bit i = block first + i */
	uint64_t data_start;   /* the first block a node may use */
	uint32_t bitmap_blocks;
};

/* Open the volume at `first`, `blocks` long (the map file's run), whose
 * node checksums must be seeded from `fs_uuid` (the filesystem's s_uuid).
 * Memory: one kglue_alloc. */
int e4maps_open(struct kglue_fs *fs, uint64_t first, uint64_t blocks, const unsigned char fs_uuid[16],
		struct e4maps **out, const char **why);
/* Close: nothing the maps changed may still be in an uncommitted
 * transaction (its nodes are sealed at commit by a trigger that calls into
 * m): commit first, or destroy the journal first. */
void e4maps_close(struct e4maps *m);
void e4maps_get_geometry(const struct e4maps *m, struct e4maps_geometry *g);
/* The 64 bytes of owner_data (the build stamp) as read at open or last set. */
const unsigned char *e4maps_owner_data(const struct e4maps *m);

/* Every tree verified: structural and record problems counted. */
int e4maps_verify(struct e4maps *m, uint64_t *problems);
void e4maps_sizes(struct e4maps *m, uint64_t *rmap, uint64_t *refcount, uint64_t *parent);

/*
 * Changes inside the caller's running handle (ext4's, the one of the
 * change they mirror). The caller reserves the change's buffer credits
 * when it starts the handle (e4maps_get_credits: the trees' worst case at
 * their current heights, the volume superblock and the bitmap blocks); no
 * revoke credits (freed nodes stay in the map file: never revoked). A
 * handle with fewer credits left is extended (jbd2_journal_extend) by the
 * shortfall, which fails when its transaction is full or already
 * committing (-ENOBUFS: that is why the caller reserves). A failure is returned, never
 * turned into a journal abort: the caller stops using the maps, which then
 * read as stale (their stamp is only made current at a clean unmount).
 */
struct e4maps_credits {
	uint32_t rmap_map, parent_add, parent_remove;
};
void e4maps_get_credits(struct e4maps *m, struct e4maps_credits *c);
/* What the changes cost since open: calls, handle extends (the caller's
 * reservation fell short), credits asked that way, extends refused; then
 * per kind of change (E4MAPS_RMAP_MAP ...) the calls and the buffer
 * credits they used, i.e. the map blocks they were the first to dirty in
 * their transaction (what jbd2 logs for the maps): tree nodes and bitmap
 * blocks (nodes), the volume superblock (anchors); and the nodes the calls
 * changed or freed, whether or not their transaction had them already. */
enum { E4MAPS_RMAP_MAP, E4MAPS_RMAP_UNMAP, E4MAPS_PARENT_ADD, E4MAPS_PARENT_REMOVE, E4MAPS_OTHER, E4MAPS_KINDS };
struct e4maps_stats {
	uint32_t changes, extends, extend_credits, extends_refused;
	uint32_t calls[E4MAPS_KINDS], nodes[E4MAPS_KINDS], anchors[E4MAPS_KINDS];
	uint32_t dirtied[E4MAPS_KINDS]; /* nodes each kind changed or freed, repeats included */
};
void e4maps_get_stats(const struct e4maps *m, struct e4maps_stats *s);
int e4maps_rmap_map_in(struct e4maps *m, struct kglue_handle *h, uint64_t start, uint64_t len, uint64_t owner,
		       uint64_t offset, uint32_t flags);
int e4maps_rmap_unmap_in(struct e4maps *m, struct kglue_handle *h, uint64_t start, uint64_t len, uint64_t owner,
			 uint64_t offset);
int e4maps_parent_add_in(struct e4maps *m, struct kglue_handle *h, uint64_t child, uint64_t parent,
			 uint32_t parent_gen, const char *name, size_t len);
int e4maps_parent_remove_in(struct e4maps *m, struct kglue_handle *h, uint64_t child, uint64_t parent,
			    const char *name, size_t len);
/* New owner data (the build stamp), written with the anchors in h. */
int e4maps_set_owner_data_in(struct e4maps *m, struct kglue_handle *h, const unsigned char *data);

/*
 * The maps' stamp (docs/format.md section 8; its layout and match rule are
 * jbtree/maps/map_stamp.hpp's). The full stamp (version 1) the filesystem
 * side computes from its superblock and group descriptors at a clean
 * unmount, after its last superblock write: e4maps_stamp_volume writes it
 * into `block`, the bytes of the volume superblock (read by the caller,
 * which writes it back): owner_data, generation + 1, checksum. Outside any
 * handle: the journal is gone by then.
 */
struct e4maps_stamp {
	uint64_t fs_wtime, fs_mtime, kbytes_written, free_blocks;
	uint32_t free_inodes, mnt_count, gdt_crc;
	uint64_t built_at;
};
void e4maps_stamp_volume(struct e4maps *m, unsigned char *block, const struct e4maps_stamp *st);
/*
 * The stamp the volume holds (as read at open, or last set) against the
 * filesystem as the mount found it (the superblock after the journal's
 * replay, before the mount wrote its own mount count and time; built_at
 * ignored): E4MAPS_STAMP_FULL if it is the full stamp (version 1) of that
 * state, E4MAPS_STAMP_LIVE if it is the live stamp (version 3, not
 * abandoned) of the mount that wrote that mount count, mount time, write
 * time and lifetime kilobytes written (s_wtime, s_kbytes_written: a
 * superblock written since by e2fsck or another tool changes them), else
 * E4MAPS_STAMP_NONE: the maps are stale and must not be kept (an older
 * kernel's live stamp, version 2, included).
 */
#define E4MAPS_STAMP_NONE 0
#define E4MAPS_STAMP_FULL 1
#define E4MAPS_STAMP_LIVE 2
int e4maps_stamp_check(const struct e4maps *m, const struct e4maps_stamp *found);
/*
 * The live stamp (docs/format.md section 8, version 3), written into the
 * volume superblock in handle h: the maps are kept by this kernel since the
 * mount that wrote s_mnt_count = mnt_count, s_mtime = mtime, s_wtime =
 * wtime and s_kbytes_written = kbytes_written; flags 1 (abandoned): the
 * kernel stopped keeping them. Needs the credits of one change of the
 * volume superblock (extends h otherwise, as every change).
 */
#define E4MAPS_STAMP_ABANDONED 1u
int e4maps_live_stamp_in(struct e4maps *m, struct kglue_handle *h, uint32_t mnt_count, uint64_t mtime,
			 uint64_t wtime, uint64_t kbytes_written, uint64_t written_at, uint32_t flags);
/* The live stamp written into `block`, the bytes of the volume superblock,
 * as e4maps_stamp_volume writes the full one (outside any handle, with
 * nothing of the maps in the journal): at unmount, the abandoned mark for
 * maps given up when that could not be journaled; at the thaw of a frozen
 * filesystem (whose journal the freeze flushed), the live stamp of the
 * superblock the thaw wrote. */
void e4maps_live_volume(struct e4maps *m, unsigned char *block, uint32_t mnt_count, uint64_t mtime, uint64_t wtime,
			uint64_t kbytes_written, uint64_t written_at, uint32_t flags);
/* crc32c without inversions (jbtree's crc32c_raw), for the stamp's gdt_crc. */
uint32_t e4maps_crc32c_raw(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
