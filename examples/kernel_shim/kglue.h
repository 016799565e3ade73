/* SPDX-License-Identifier: MIT */
/*
 * kglue: everything jbtree's maps (kmaps.cpp, C++) need from a kernel, as
 * plain C functions on opaque types. No kernel structure layout and no
 * kernel header is ever compiled into the C++ object: the layouts live only
 * in the glue, which is C compiled against the real headers by Kbuild
 * (examples/kernel_module/kglue_linux.c) or, for tests, the user-space
 * model in kshim.c. Every function returns 0 or a negative errno unless it
 * says otherwise.
 *
 * The jbd2 rules this interface carries (docs/kernel.md):
 *   - a handle is started with buffer credits AND revoke credits; every
 *     node an operation may free needs one revoke credit;
 *   - a block created (get_create_access) in the running transaction is
 *     given back with kglue_forget (jbd2_journal_forget: it was never
 *     logged, nothing to revoke); any other freed block with kglue_revoke
 *     (jbd2_journal_revoke, which also forgets a cached copy); never both;
 *   - new blocks come zeroed under lock_buffer and uptodate, before
 *     get_create_access;
 *   - an abort does not roll anything back: the journal refuses every
 *     further change (-EROFS) and the disk keeps the last commit.
 */
#ifndef KGLUE_H
#define KGLUE_H

#ifdef __KERNEL__
#include <linux/types.h> /* size_t, uint32_t, uint64_t */
#else
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct kglue_fs;     /* the filesystem: its block device, allocator and journal */
struct kglue_buf;    /* a pinned block (struct buffer_head) */
struct kglue_handle; /* a running journal handle (handle_t) */

/* ---- blocks ---- */
uint32_t kglue_block_size(struct kglue_fs *fs);
/* Read a block (sb_bread): NULL and *err = -EIO on failure. */
struct kglue_buf *kglue_read(struct kglue_fs *fs, uint64_t blk, int *err);
/* A new block for the maps from the filesystem's allocator, in the running
 * handle of the current task, zeroed under lock_buffer and marked
 * uptodate: NULL and *err (-ENOSPC, -ENOMEM, -EIO, -EROFS) on failure. */
struct kglue_buf *kglue_new_block(struct kglue_fs *fs, int *err);
/* Give a block back to the filesystem's allocator (it is reused only after
 * the running transaction commits). */
void kglue_free_block(struct kglue_fs *fs, uint64_t blk);
unsigned char *kglue_data(struct kglue_buf *b);
uint64_t kglue_blocknr(const struct kglue_buf *b);
void kglue_release(struct kglue_buf *b); /* brelse */
/* Optional, for a cache that remembers verification (jbtree's
 * CheckedBlockBuffer): 1 if the block was verified (kglue_set_checked)
 * since it was last read from the device or created (Linux: BH_Verified,
 * cleared by kglue_read when it reads the device and by kglue_new_block).
 * A glue without that memory returns 0 and ignores set_checked. */
int kglue_checked(const struct kglue_buf *b);
void kglue_set_checked(struct kglue_buf *b);
/* Optional, after jbd2's frozen trigger (jbtree's SealDeferringBuffer):
 * once kglue_set_sealer registered seal(ctx, data, size), which seals a
 * node's bytes in place, kglue_defer_seal(fs, b) on a block whose write
 * access was taken in the running handle returns 1 and promises seal() on
 * the block's bytes before they leave for the journal (Linux: the jbd2
 * buffer trigger t_frozen, which runs on the bytes a commit logs, or
 * freezes, so the home copy written at checkpoint is sealed too); 0: seal
 * it now (no sealer, or a glue without triggers). kglue_seal_pending: 1
 * while such a block may still carry a stale checksum (it is part of a
 * transaction not yet committed). The sealer must outlive every commit of
 * a transaction that holds such a block (force a commit before it goes). */
void kglue_set_sealer(struct kglue_fs *fs, void (*seal)(void *ctx, unsigned char *data, size_t size), void *ctx);
int kglue_defer_seal(struct kglue_fs *fs, struct kglue_buf *b);
int kglue_seal_pending(const struct kglue_buf *b);

/* ---- the journal ---- */
/* jbd2__journal_start(journal, credits, 0, revoke_credits, GFP_NOFS, ...):
 * NULL and *err (-ENOSPC: more than a transaction holds, -ENOMEM, -EROFS). */
struct kglue_handle *kglue_start(struct kglue_fs *fs, int credits, int revoke_credits, int *err);
/* jbd2_journal_extend: 0 extended, > 0 no room (restart instead), < 0 error. */
int kglue_extend(struct kglue_handle *h, int credits, int revoke_credits);
/* jbd2__journal_restart: the changes so far commit with the old
 * transaction; the handle continues in a new one with these credits. */
int kglue_restart(struct kglue_handle *h, int credits, int revoke_credits);
/* The most credits one transaction holds (jbd2_journal_get_max_txn_bufs). */
int kglue_max_credits(struct kglue_fs *fs);
int kglue_credits_left(const struct kglue_handle *h);
int kglue_revokes_left(const struct kglue_handle *h);
uint64_t kglue_tid(const struct kglue_handle *h);
int kglue_get_write_access(struct kglue_handle *h, struct kglue_buf *b);
int kglue_get_create_access(struct kglue_handle *h, struct kglue_buf *b);
int kglue_dirty_metadata(struct kglue_handle *h, struct kglue_buf *b);
int kglue_forget(struct kglue_handle *h, uint64_t blk); /* created in the running transaction */
int kglue_revoke(struct kglue_handle *h, uint64_t blk); /* uses one revoke credit */
int kglue_stop(struct kglue_handle *h);
int kglue_force_commit(struct kglue_fs *fs);
void kglue_abort(struct kglue_fs *fs, int err); /* jbd2_journal_abort: no rollback */
int kglue_aborted(struct kglue_fs *fs);         /* -EROFS after an abort, else 0 */

/* ---- memory ---- */
void *kglue_alloc(size_t size); /* kmalloc(size, GFP_NOFS) */
void kglue_free(void *p);       /* kfree */

#ifdef __cplusplus
}
#endif

#endif
