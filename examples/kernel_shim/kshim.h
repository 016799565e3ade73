/* SPDX-License-Identifier: MIT */
/*
 * kshim: a small kernel-style C environment for jbtree (docs/kernel.md).
 *
 * Just enough of what ext4 code sees in the kernel, over a RAM disk, with
 * fault injection for tests:
 *   - kmalloc/kfree with GFP flags;
 *   - a buffer cache: sb_bread (read, NULL on an I/O error), sb_getblk (no
 *     read), brelse, mark_buffer_dirty;
 *   - a block allocator: kshim_new_block / kshim_free_block;
 *   - a jbd2-like journal: jbd2_journal_start (credits) / get_write_access /
 *     get_create_access / dirty_metadata / revoke / stop, force_commit, and
 *     abort, which rolls the running transaction back (the kernel would
 *     abort the journal and replay would give the same state: the last
 *     commit).
 *
 * A transaction lives in memory until jbd2_journal_force_commit writes its
 * buffers to the disk; blocks joined to it keep their pre-image for abort;
 * blocks allocated or freed in it are committed or rolled back with it. It
 * is a model of jbd2's rules (credits, one pre-image per block, no reuse of
 * a block freed in the running transaction), not its on-disk log.
 */
#ifndef KSHIM_H
#define KSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* errno values the shim returns (negated), as the kernel's. */
#define KSHIM_EIO 5
#define KSHIM_ENOMEM 12
#define KSHIM_EINVAL 22
#define KSHIM_ENOSPC 28

/* ERR_PTR and friends. */
#define KSHIM_MAX_ERRNO 4095
static inline void *ERR_PTR(long error) { return (void *)(intptr_t)error; }
static inline long PTR_ERR(const void *p) { return (long)(intptr_t)p; }
static inline int IS_ERR(const void *p) { return (uintptr_t)p >= (uintptr_t)-KSHIM_MAX_ERRNO; }

/* Memory. */
typedef unsigned int gfp_t;
#define GFP_KERNEL 0x1u
#define GFP_NOFS 0x2u /* may not recurse into the filesystem: what jbtree asks for */
void *kmalloc(size_t size, gfp_t flags);
void kfree(const void *p);

/* The buffer cache. */
struct buffer_head {
	uint64_t b_blocknr;
	uint32_t b_size;
	unsigned char *b_data;
	int b_count;             /* references (sb_bread / sb_getblk take one, brelse drops it) */
	int b_dirty;             /* changed since read or last commit */
	int b_in_use;            /* the slot holds b_blocknr */
	int b_joined;            /* joined to the running transaction */
	int b_created;           /* joined by get_create_access (no pre-image) */
	unsigned char *b_frozen; /* pre-image, for abort */
};

struct super_block;
struct buffer_head *sb_bread(struct super_block *sb, uint64_t block); /* NULL: I/O error or no free slot */
struct buffer_head *sb_getblk(struct super_block *sb, uint64_t block); /* NULL: no free slot */
void brelse(struct buffer_head *bh);
void mark_buffer_dirty(struct buffer_head *bh);
uint32_t kshim_blocksize(const struct super_block *sb);

/* The block allocator: 0 or -ENOSPC; frees take effect at commit. */
int kshim_new_block(struct super_block *sb, uint64_t *block);
void kshim_free_block(struct super_block *sb, uint64_t block);

/* The jbd2-like journal. */
typedef struct journal_s journal_t;
typedef struct handle_s handle_t;
handle_t *jbd2_journal_start(journal_t *journal, int nblocks); /* ERR_PTR(-ENOSPC) over the limit, -ENOMEM */
int jbd2_journal_get_write_access(handle_t *handle, struct buffer_head *bh);
int jbd2_journal_get_create_access(handle_t *handle, struct buffer_head *bh);
int jbd2_journal_dirty_metadata(handle_t *handle, struct buffer_head *bh);
int jbd2_journal_revoke(handle_t *handle, unsigned long long blocknr, struct buffer_head *bh);
int jbd2_journal_stop(handle_t *handle);
int kshim_handle_credits(const handle_t *handle); /* credits left */
uint64_t kshim_handle_tid(const handle_t *handle);
int jbd2_journal_force_commit(journal_t *journal); /* write the running transaction home */
void jbd2_journal_abort(journal_t *journal, int error); /* roll the running transaction back */

/* Setting up (for tests and the example). */
struct super_block *kshim_mount(uint32_t block_size, uint64_t blocks, uint32_t cache_buffers);
journal_t *kshim_journal(struct super_block *sb, int max_transaction_credits);
void kshim_unmount(struct super_block *sb); /* also frees the journal */
void kshim_drop_caches(struct super_block *sb); /* evict every clean, unreferenced buffer */

/* Fault injection: the n-th next kmalloc / disk read / disk write fails
 * (n = 1: the very next); 0 switches it off. */
void kshim_fail_kmalloc_after(long n);
void kshim_fail_read_after(struct super_block *sb, long n);
void kshim_fail_write_after(struct super_block *sb, long n);
long kshim_kmalloc_live(void); /* allocations not freed */

#ifdef __cplusplus
}
#endif

#endif
