// SPDX-License-Identifier: MIT
/*
 * kglue.h over Linux: buffer heads, jbd2 and kmalloc, compiled by Kbuild
 * against the real headers. A struct kglue_buf is a struct buffer_head, a
 * struct kglue_handle a handle_t; the C++ side only ever holds pointers.
 */
#include <linux/buffer_head.h>
#include <linux/jbd2.h>
#include <linux/slab.h>

#include "kmaps_linux.h"

static inline struct buffer_head *to_bh(struct kglue_buf *b) { return (struct buffer_head *)b; }
static inline struct kglue_buf *from_bh(struct buffer_head *bh) { return (struct kglue_buf *)bh; }
static inline handle_t *to_handle(const struct kglue_handle *h) { return (handle_t *)h; }

uint32_t kglue_block_size(struct kglue_fs *fs) { return fs->sb->s_blocksize; }

/* sb_bread, except that a block read from the device loses BH_Verified
 * (as ext4's own metadata reads clear it): kglue_checked then says no. */
struct kglue_buf *kglue_read(struct kglue_fs *fs, uint64_t blk, int *err)
{
	struct buffer_head *bh = sb_getblk(fs->sb, blk);

	if (!bh) {
		*err = -ENOMEM;
		return NULL;
	}
	if (!buffer_uptodate(bh)) {
		clear_buffer_verified(bh);
		if (bh_read(bh, 0) < 0) {
			brelse(bh);
			*err = -EIO;
			return NULL;
		}
	}
	*err = 0;
	return from_bh(bh);
}

int kglue_checked(const struct kglue_buf *b) { return buffer_verified((struct buffer_head *)b); }
void kglue_set_checked(struct kglue_buf *b) { set_buffer_verified(to_bh(b)); }

static void kglue_frozen(struct jbd2_buffer_trigger_type *t, struct buffer_head *bh, void *data, size_t size)
{
	struct kglue_fs *fs = container_of(t, struct kglue_fs, seal_trigger);

	fs->seal(fs->seal_ctx, data, size);
}

void kglue_set_sealer(struct kglue_fs *fs, void (*seal)(void *ctx, unsigned char *data, size_t size), void *ctx)
{
	fs->seal = seal;
	fs->seal_ctx = ctx;
	fs->seal_trigger.t_frozen = seal ? kglue_frozen : NULL;
	fs->seal_trigger.t_abort = NULL;
}

/* The buffer is journaled in the running handle (write or create access
 * taken): its journal head carries the trigger from now on; jbd2 runs it
 * on the bytes each commit logs or freezes. Checked: the change is ours. */
int kglue_defer_seal(struct kglue_fs *fs, struct kglue_buf *b)
{
	struct buffer_head *bh = to_bh(b);

	if (!fs->seal || !buffer_jbd(bh))
		return 0;
	jbd2_journal_set_triggers(bh, &fs->seal_trigger);
	set_buffer_verified(bh);
	return 1;
}

int kglue_seal_pending(const struct kglue_buf *b)
{
	struct buffer_head *bh = (struct buffer_head *)b;

	return buffer_jbd(bh) && buffer_jbddirty(bh);
}

struct kglue_buf *kglue_new_block(struct kglue_fs *fs, int *err)
{
	handle_t *handle = journal_current_handle();
	struct buffer_head *bh;
	u64 blk;

	if (!handle) {
		*err = -EINVAL; /* maps change only inside a handle */
		return NULL;
	}
	*err = fs->new_block(fs, handle, &blk);
	if (*err)
		return NULL;
	bh = sb_getblk(fs->sb, blk);
	if (!bh) {
		fs->free_block(fs, handle, blk);
		*err = -ENOMEM;
		return NULL;
	}
	/* As ext4 formats a new metadata block: zeroed under the buffer lock
	 * and uptodate before get_create_access. */
	lock_buffer(bh);
	memset(bh->b_data, 0, bh->b_size);
	set_buffer_uptodate(bh);
	clear_buffer_verified(bh);
	unlock_buffer(bh);
	return from_bh(bh);
}

void kglue_free_block(struct kglue_fs *fs, uint64_t blk)
{
	fs->free_block(fs, journal_current_handle(), blk);
}

unsigned char *kglue_data(struct kglue_buf *b) { return (unsigned char *)to_bh(b)->b_data; }
uint64_t kglue_blocknr(const struct kglue_buf *b) { return ((const struct buffer_head *)b)->b_blocknr; }
void kglue_release(struct kglue_buf *b) { brelse(to_bh(b)); }

struct kglue_handle *kglue_start(struct kglue_fs *fs, int credits, int revoke_credits, int *err)
{
	handle_t *h = jbd2__journal_start(fs->journal, credits, 0, revoke_credits, GFP_NOFS, 0, 0);

	if (IS_ERR(h)) {
		*err = PTR_ERR(h);
		return NULL;
	}
	*err = 0;
	return (struct kglue_handle *)h;
}

int kglue_extend(struct kglue_handle *h, int credits, int revoke_credits)
{
	return jbd2_journal_extend(to_handle(h), credits, revoke_credits);
}

int kglue_restart(struct kglue_handle *h, int credits, int revoke_credits)
{
	return jbd2__journal_restart(to_handle(h), credits, revoke_credits, GFP_NOFS);
}

int kglue_max_credits(struct kglue_fs *fs) { return fs->journal->j_max_transaction_buffers; }
int kglue_credits_left(const struct kglue_handle *h) { return jbd2_handle_buffer_credits(to_handle(h)); }
int kglue_revokes_left(const struct kglue_handle *h) { return to_handle(h)->h_revoke_credits; }
uint64_t kglue_tid(const struct kglue_handle *h) { return to_handle(h)->h_transaction->t_tid; }

int kglue_get_write_access(struct kglue_handle *h, struct kglue_buf *b)
{
	return jbd2_journal_get_write_access(to_handle(h), to_bh(b));
}

/* Under the buffer lock, as ext4 calls it: 6.1's jbd2 asserts the lock
 * (J_ASSERT_JH(jh, buffer_locked(...)) in jbd2_journal_get_create_access). */
int kglue_get_create_access(struct kglue_handle *h, struct kglue_buf *b)
{
	int err;

	lock_buffer(to_bh(b));
	err = jbd2_journal_get_create_access(to_handle(h), to_bh(b));
	unlock_buffer(to_bh(b));
	return err;
}

int kglue_dirty_metadata(struct kglue_handle *h, struct kglue_buf *b)
{
	return jbd2_journal_dirty_metadata(to_handle(h), to_bh(b));
}

/* Created in the running transaction: drop it from the transaction
 * (jbd2_journal_forget consumes the reference sb_find_get_block took). */
int kglue_forget(struct kglue_handle *h, uint64_t blk)
{
	handle_t *handle = to_handle(h);
	struct buffer_head *bh = sb_find_get_block(handle->h_transaction->t_journal->j_private, blk);

	if (!bh)
		return -EINVAL; /* a block created in this transaction is cached */
	return jbd2_journal_forget(handle, bh);
}

/* Logged by an earlier transaction: revoke it, which also forgets a
 * cached copy (the reference passes to jbd2_journal_revoke). */
int kglue_revoke(struct kglue_handle *h, uint64_t blk)
{
	handle_t *handle = to_handle(h);
	struct buffer_head *bh = sb_find_get_block(handle->h_transaction->t_journal->j_private, blk);

	return jbd2_journal_revoke(handle, blk, bh);
}

int kglue_stop(struct kglue_handle *h) { return jbd2_journal_stop(to_handle(h)); }
int kglue_force_commit(struct kglue_fs *fs) { return jbd2_journal_force_commit(fs->journal); }
void kglue_abort(struct kglue_fs *fs, int err) { jbd2_journal_abort(fs->journal, err); }
int kglue_aborted(struct kglue_fs *fs) { return is_journal_aborted(fs->journal) ? -EROFS : 0; }

void *kglue_alloc(size_t size) { return kmalloc(size, GFP_NOFS); }
void kglue_free(void *p) { kfree(p); }
