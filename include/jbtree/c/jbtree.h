/* SPDX-License-Identifier: MIT */
/*
 * jbtree: the C API (docs/c-api.md).
 *
 * An opaque volume (one jbd2 journal, an allocator and three trees on the
 * caller's block device) and the three maps in it: the rmap (block range ->
 * owner), the refcount map (shared block ranges) and parent pointers (inode
 * -> parent directories and names). For C callers such as e2fsprogs.
 *
 * The block device and all memory come from the caller (struct
 * jbt_block_io, struct jbt_allocator): the library allocates nothing behind
 * them and throws nothing. Every function returns 0 or a negative errno
 * value (-EINVAL, -ENOENT, -EEXIST, -EIO, -ENOMEM, -ENOSPC, -EUCLEAN for a
 * damaged structure, -EBADMSG for a bad checksum, ...); jbt_strerror() names
 * it.
 *
 * Changes are durable after jbt_volume_commit() or jbt_volume_close(); a
 * crash gives back the last commit (the journal replays on the next open).
 * A failed change returns its error and leaves the maps as they were,
 * except after an I/O or memory failure in the middle of a multi-block
 * change: then close without committing (jbt_volume_abandon) and open again.
 *
 * The implementation is header-only C++20: define JBTREE_C_IMPLEMENTATION in
 * exactly one C++ translation unit before including this header (with
 * include/ on the include path), and link that object with the C program.
 * Not thread-safe: one volume is used by one thread at a time.
 */
#ifndef JBTREE_C_JBTREE_H
#define JBTREE_C_JBTREE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The caller's block device: block_count blocks of block_size bytes
 * (1024..65536, a power of two). Each callback returns 0 or a negative errno;
 * flush makes every completed write durable. */
struct jbt_block_io {
	void *ctx;
	uint32_t block_size;
	uint64_t block_count;
	int (*read)(void *ctx, uint64_t blkno, uint32_t count, void *buf);
	int (*write)(void *ctx, uint64_t blkno, uint32_t count, const void *buf);
	int (*flush)(void *ctx);
};

/* The caller's memory: alloc returns size bytes aligned to align (a power of
 * two), or NULL; free gets back what alloc gave, with the same size and
 * align. */
struct jbt_allocator {
	void *ctx;
	void *(*alloc)(void *ctx, size_t size, size_t align);
	void (*free)(void *ctx, void *p, size_t size, size_t align);
};

/* Journal callbacks, all optional (NULL): clock_ns gives commit times
 * (nanoseconds since the epoch); log_state(ctx, 1) is called before the
 * first log block of a session is written and log_state(ctx, 0) after
 * close emptied the log (a host filesystem keeps a "needs recovery" flag
 * there); a nonzero return (negative errno) fails the commit or close. */
struct jbt_journal_hooks {
	void *ctx;
	uint64_t (*clock_ns)(void *ctx);
	int (*log_state)(void *ctx, int live);
};

/* Open-time sizes; zero fields take the defaults in brackets. */
struct jbt_open_options {
	uint32_t cache_blocks;           /* the buffer cache [1024] */
	uint32_t max_transaction_blocks; /* [256], at most a quarter of the journal */
};

typedef struct jbt_volume jbt_volume;

/* Lay out a new volume on the whole device (overwrites it): a journal of
 * journal_blocks blocks (0: an eighth of the device, at least 1024), node
 * checksums seeded from uuid (16 bytes, may be NULL). */
int jbt_volume_create(const struct jbt_block_io *io, const struct jbt_allocator *mem, uint32_t journal_blocks,
		      const uint8_t *uuid);

/* Open a volume: replays its journal if a crash left transactions in it,
 * loads the allocator, opens (or starts) the three maps. opts and hooks may
 * be NULL. *out is set only on success. */
int jbt_volume_open(const struct jbt_block_io *io, const struct jbt_allocator *mem,
		    const struct jbt_journal_hooks *hooks, const struct jbt_open_options *opts, jbt_volume **out);

/* Make every change so far durable. */
int jbt_volume_commit(jbt_volume *v);

/* Commit, checkpoint, mark the journal empty and free the volume (also when
 * it returns an error). */
int jbt_volume_close(jbt_volume *v);

/* Free the volume without committing: what was not committed is lost, as in
 * a crash. */
void jbt_volume_abandon(jbt_volume *v);

/* ---- or: the maps over the caller's own buffer cache and journal ------------------------ */

/* A pinned block of the caller's cache: data and blkno set by read/allocate,
 * priv the caller's (e.g. a struct buffer_head *). */
struct jbt_buffer {
	void *priv;
	unsigned char *data;
	uint64_t blkno;
};

/* The caller's buffer cache (a BlockStorage; docs/kernel.md maps it onto
 * sb_bread & co.). Block 0 is never a node. */
struct jbt_storage_ops {
	void *ctx;
	uint32_t block_size;    /* node size: 1024..65536, a power of two */
	uint32_t checksum_seed; /* node checksums: crc32c seed (ext4: s_csum_seed) */
	int (*read)(void *ctx, uint64_t blkno, struct jbt_buffer *out); /* pinned, as stored */
	int (*allocate)(void *ctx, struct jbt_buffer *out);             /* a new block, zero-filled, pinned */
	int (*free)(void *ctx, uint64_t blkno);                          /* the block is no longer a node */
	void (*release)(void *ctx, struct jbt_buffer *b);                /* unpin */
};

/* The caller's journal, with jbd2's handle calls (docs/kernel.md). */
struct jbt_journal_ops {
	void *ctx;
	int (*start)(void *ctx, uint32_t credits, void **handle);
	uint32_t (*credits_left)(void *ctx, void *handle);
	uint64_t (*transaction_id)(void *ctx, void *handle);
	int (*get_write_access)(void *ctx, void *handle, struct jbt_buffer *b);
	int (*get_create_access)(void *ctx, void *handle, struct jbt_buffer *b);
	int (*dirty_metadata)(void *ctx, void *handle, struct jbt_buffer *b); /* the block changed */
	int (*forget)(void *ctx, void *handle, uint64_t blkno);               /* freed: revoke it */
	int (*stop)(void *ctx, void *handle);
};

/* Where one tree starts: the caller keeps the three (rmap, refcount, parent
 * pointers) with its own metadata, changed in the same handle as the trees. */
struct jbt_root {
	uint64_t root;    /* root block, 0 = empty */
	uint64_t records;
	uint32_t tree_id; /* stamped in every node */
	uint32_t height;
};

/* The three maps over the caller's cache and journal. roots: the three
 * roots from jbt_maps_roots() after the last change, or NULL for new, empty
 * maps. jbt_volume_commit is then -EOPNOTSUPP (the caller's journal commits),
 * jbt_volume_close and jbt_volume_abandon free the object. */
int jbt_maps_open(const struct jbt_storage_ops *storage, const struct jbt_journal_ops *journal,
		  const struct jbt_allocator *mem, const struct jbt_root *roots, jbt_volume **out);

/* The current roots of the three trees (either kind of volume). */
int jbt_maps_roots(jbt_volume *v, struct jbt_root roots[3]);

/* ---- rmap: physical blocks -> owner ---------------------------------------------------- */

/* Special owners (not inodes), as in docs/maps.md. */
#define JBT_OWNER_FS (UINT64_MAX - 1)           /* superblocks, group descriptors */
#define JBT_OWNER_RESERVED_GDT (UINT64_MAX - 2) /* reserved GDT blocks */
#define JBT_OWNER_BITMAPS (UINT64_MAX - 3)      /* block and inode bitmaps */
#define JBT_OWNER_INODE_TABLE (UINT64_MAX - 4)  /* inode tables */
#define JBT_OWNER_JOURNAL (UINT64_MAX - 5)      /* the journal */
#define JBT_OWNER_JBTREE (UINT64_MAX - 6)       /* the maps' own blocks */
#define JBT_OWNER_UNKNOWN (UINT64_MAX - 7)      /* in use, owner unknown */

/* Record flags. */
#define JBT_RMAP_XATTR 1u     /* an extended-attribute block of the owner */
#define JBT_RMAP_BMBT 2u      /* a mapping block (extent tree) of the owner */
#define JBT_RMAP_UNWRITTEN 4u /* allocated, not written */

struct jbt_rmap_record {
	uint64_t start;  /* first block */
	uint64_t length; /* blocks */
	uint64_t owner;  /* inode number or JBT_OWNER_* */
	uint64_t offset; /* logical block of start in the owner (0 for special owners and BMBT) */
	uint32_t flags;  /* JBT_RMAP_* */
};

/* owner now owns blocks [start, start + length) at logical offset `offset`
 * (it may own some of them at other offsets too: a clone inside one file).
 * -EEXIST if it already owns one of them at that offset, or either mapping
 * is offset-less (special owners, BMBT). */
int jbt_rmap_map(jbt_volume *v, uint64_t start, uint64_t length, uint64_t owner, uint64_t offset, uint32_t flags);

/* owner no longer owns [start, start + length) (a record is cut as needed).
 * -ENOENT unless it owns all of them, at those offsets. */
int jbt_rmap_unmap(jbt_volume *v, uint64_t start, uint64_t length, uint64_t owner, uint64_t offset);

/* Every record covering `block`, each once, in key order: by start block,
 * then owner, then offset (not grouped by owner). visit returns 0 to go on,
 * nonzero to stop (jbt_rmap_owners then returns 0). */
typedef int (*jbt_rmap_visit)(void *ctx, const struct jbt_rmap_record *r);
int jbt_rmap_owners(jbt_volume *v, uint64_t block, jbt_rmap_visit visit, void *ctx);

/* ---- refcount: shared blocks --------------------------------------------------------- */

/* Add delta (+1 or -1) to the data-owner count of [start, start + length);
 * a block not in the map counts 1. Applied in as many transaction-sized
 * steps as it needs (each step atomic). */
int jbt_refcount_adjust(jbt_volume *v, uint64_t start, uint64_t length, int delta);

/* The count of one block (1 when not shared). */
int jbt_refcount_get(jbt_volume *v, uint64_t block, uint32_t *count);

/* ---- parent pointers: inode -> (parent directory, name) -------------------------------- */

/* A name is 1..255 bytes, none of them '/' or NUL (-EINVAL otherwise). */
int jbt_parent_add(jbt_volume *v, uint64_t child, uint64_t parent, uint32_t parent_generation, const char *name,
		   size_t name_len);
int jbt_parent_remove(jbt_volume *v, uint64_t child, uint64_t parent, const char *name, size_t name_len);

/* The parent generation stored for one link, -ENOENT if there is none. */
int jbt_parent_find(jbt_volume *v, uint64_t child, uint64_t parent, const char *name, size_t name_len,
		    uint32_t *parent_generation);

/* Every path from `root` down to `ino` ("/a/b/c", not NUL-terminated):
 * visit returns 0 to go on, nonzero to stop. Paths longer than 64 levels
 * and cycles are not visited; *complete (may be NULL) gets the number of
 * paths visited. */
typedef int (*jbt_path_visit)(void *ctx, const char *path, size_t len);
int jbt_parent_paths(jbt_volume *v, uint64_t ino, uint64_t root, jbt_path_visit visit, void *ctx, uint64_t *complete);

/* ---- checking ----------------------------------------------------------------------- */

struct jbt_verify_result {
	uint64_t rmap_records, refcount_records, parent_records;
	uint64_t problems;      /* structural and record problems in the three trees */
	uint64_t block_problems; /* allocator: blocks leaked, unallocated or owned twice */
	uint64_t refcount_mismatches; /* refcount map against the rmap's sharing */
};

/* Verify every tree, the allocator against the trees' blocks, and the
 * refcount map against the rmap. 0 with the counts filled in (clean when
 * problems, block_problems and refcount_mismatches are all 0). */
int jbt_verify(jbt_volume *v, struct jbt_verify_result *out);

/* A short English description of a jbt_* return value. */
const char *jbt_strerror(int err);

#ifdef __cplusplus
}
#endif

#if defined(__cplusplus) && defined(JBTREE_C_IMPLEMENTATION)
#include "jbtree/c/detail/implementation.hpp"
#endif

#endif /* JBTREE_C_JBTREE_H */
