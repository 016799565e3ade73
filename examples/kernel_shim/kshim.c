/* SPDX-License-Identifier: MIT */
/* kshim: the kernel-style environment of kshim.h, over a RAM disk. */
#include "kshim.h"

#include <stdlib.h>
#include <string.h>

/* ---- memory ---------------------------------------------------------------------------- */

static long kmalloc_fail_after, kmalloc_live;

void *kmalloc(size_t size, gfp_t flags)
{
	void *p;
	(void)flags;
	if (kmalloc_fail_after > 0 && --kmalloc_fail_after == 0)
		return NULL;
	p = malloc(size ? size : 1);
	if (p)
		++kmalloc_live;
	return p;
}

void kfree(const void *p)
{
	if (!p)
		return;
	--kmalloc_live;
	free((void *)p);
}

void kshim_fail_kmalloc_after(long n) { kmalloc_fail_after = n; }
long kshim_kmalloc_live(void) { return kmalloc_live; }

/* ---- the disk, the cache, the allocator -------------------------------------------------- */

struct super_block {
	uint32_t blocksize;
	uint64_t blocks;
	unsigned char *disk;
	struct buffer_head *cache;
	uint32_t ncache;
	unsigned char *committed_map; /* block allocator, as of the last commit */
	unsigned char *running_map;   /* ... and with the running transaction */
	long fail_read_after, fail_write_after;
	journal_t *journal;
};

struct journal_s {
	struct super_block *sb;
	int max_credits;
	int reserved; /* credits given to the running transaction's handles */
	uint64_t tid;
	int handles;
};

struct handle_s {
	journal_t *journal;
	int credits;
};

static int bit(const unsigned char *m, uint64_t b) { return (m[b / 8] >> (b % 8)) & 1; }
static void set_bit(unsigned char *m, uint64_t b, int on)
{
	if (on)
		m[b / 8] |= (unsigned char)(1u << (b % 8));
	else
		m[b / 8] &= (unsigned char)~(1u << (b % 8));
}

uint32_t kshim_blocksize(const struct super_block *sb) { return sb->blocksize; }

struct super_block *kshim_mount(uint32_t block_size, uint64_t blocks, uint32_t cache_buffers)
{
	struct super_block *sb = calloc(1, sizeof *sb);
	uint32_t i;
	if (!sb)
		return NULL;
	sb->blocksize = block_size;
	sb->blocks = blocks;
	sb->disk = calloc((size_t)blocks, block_size);
	sb->cache = calloc(cache_buffers, sizeof *sb->cache);
	sb->ncache = cache_buffers;
	sb->committed_map = calloc((size_t)(blocks + 7) / 8, 1);
	sb->running_map = calloc((size_t)(blocks + 7) / 8, 1);
	if (!sb->disk || !sb->cache || !sb->committed_map || !sb->running_map)
		return NULL;
	for (i = 0; i < cache_buffers; ++i) {
		sb->cache[i].b_size = block_size;
		sb->cache[i].b_data = malloc(block_size);
		if (!sb->cache[i].b_data)
			return NULL;
	}
	/* Block 0 is never handed out (it means "none" in a node pointer). */
	set_bit(sb->committed_map, 0, 1);
	set_bit(sb->running_map, 0, 1);
	return sb;
}

void kshim_unmount(struct super_block *sb)
{
	uint32_t i;
	for (i = 0; i < sb->ncache; ++i) {
		free(sb->cache[i].b_data);
		if (sb->cache[i].b_frozen)
			kfree(sb->cache[i].b_frozen);
	}
	free(sb->journal);
	free(sb->cache);
	free(sb->disk);
	free(sb->committed_map);
	free(sb->running_map);
	free(sb);
}

void kshim_fail_read_after(struct super_block *sb, long n) { sb->fail_read_after = n; }
void kshim_fail_write_after(struct super_block *sb, long n) { sb->fail_write_after = n; }

static struct buffer_head *lookup(struct super_block *sb, uint64_t block)
{
	uint32_t i;
	for (i = 0; i < sb->ncache; ++i)
		if (sb->cache[i].b_in_use && sb->cache[i].b_blocknr == block)
			return &sb->cache[i];
	return NULL;
}

/* A slot for `block`: a free one, or a clean unreferenced one. */
static struct buffer_head *grab(struct super_block *sb, uint64_t block)
{
	uint32_t i;
	struct buffer_head *bh = NULL;
	for (i = 0; i < sb->ncache && !bh; ++i)
		if (!sb->cache[i].b_in_use)
			bh = &sb->cache[i];
	for (i = 0; i < sb->ncache && !bh; ++i)
		if (!sb->cache[i].b_count && !sb->cache[i].b_dirty && !sb->cache[i].b_joined)
			bh = &sb->cache[i];
	if (!bh)
		return NULL;
	bh->b_in_use = 1;
	bh->b_blocknr = block;
	bh->b_count = 0;
	bh->b_dirty = 0;
	return bh;
}

struct buffer_head *sb_getblk(struct super_block *sb, uint64_t block)
{
	struct buffer_head *bh;
	if (block >= sb->blocks)
		return NULL;
	bh = lookup(sb, block);
	if (!bh) {
		bh = grab(sb, block);
		if (!bh)
			return NULL;
		memset(bh->b_data, 0, sb->blocksize);
	}
	++bh->b_count;
	return bh;
}

struct buffer_head *sb_bread(struct super_block *sb, uint64_t block)
{
	struct buffer_head *bh;
	if (block >= sb->blocks)
		return NULL;
	bh = lookup(sb, block);
	if (bh) {
		++bh->b_count;
		return bh;
	}
	if (sb->fail_read_after > 0 && --sb->fail_read_after == 0)
		return NULL; /* the disk failed */
	bh = grab(sb, block);
	if (!bh)
		return NULL;
	memcpy(bh->b_data, sb->disk + block * sb->blocksize, sb->blocksize);
	++bh->b_count;
	return bh;
}

void brelse(struct buffer_head *bh)
{
	if (bh && bh->b_count > 0)
		--bh->b_count;
}

void mark_buffer_dirty(struct buffer_head *bh) { bh->b_dirty = 1; }

void kshim_drop_caches(struct super_block *sb)
{
	uint32_t i;
	for (i = 0; i < sb->ncache; ++i)
		if (!sb->cache[i].b_count && !sb->cache[i].b_dirty && !sb->cache[i].b_joined)
			sb->cache[i].b_in_use = 0;
}

int kshim_new_block(struct super_block *sb, uint64_t *block)
{
	uint64_t b;
	for (b = 1; b < sb->blocks; ++b) {
		/* Free now and at the last commit: never reuse a block freed in the
		 * running transaction (replay could still need its old contents). */
		if (!bit(sb->running_map, b) && !bit(sb->committed_map, b)) {
			set_bit(sb->running_map, b, 1);
			*block = b;
			return 0;
		}
	}
	return -KSHIM_ENOSPC;
}

void kshim_free_block(struct super_block *sb, uint64_t block)
{
	if (block < sb->blocks)
		set_bit(sb->running_map, block, 0);
}

/* ---- the journal ------------------------------------------------------------------------ */

journal_t *kshim_journal(struct super_block *sb, int max_transaction_credits)
{
	journal_t *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->sb = sb;
	j->max_credits = max_transaction_credits;
	j->tid = 1;
	sb->journal = j;
	return j;
}

handle_t *jbd2_journal_start(journal_t *journal, int nblocks)
{
	handle_t *h;
	if (nblocks <= 0 || nblocks > journal->max_credits)
		return ERR_PTR(-KSHIM_ENOSPC);
	if (journal->reserved + nblocks > journal->max_credits) {
		/* The running transaction is full: commit it first (jbd2 would wait). */
		int err = journal->handles ? -KSHIM_ENOSPC : jbd2_journal_force_commit(journal);
		if (err)
			return ERR_PTR(err);
	}
	h = kmalloc(sizeof *h, GFP_NOFS);
	if (!h)
		return ERR_PTR(-KSHIM_ENOMEM);
	h->journal = journal;
	h->credits = nblocks;
	journal->reserved += nblocks;
	++journal->handles;
	return h;
}

static int join(handle_t *handle, struct buffer_head *bh, int create)
{
	if (bh->b_joined)
		return 0;
	if (handle->credits <= 0)
		return -KSHIM_ENOSPC;
	if (!create) {
		bh->b_frozen = kmalloc(bh->b_size, GFP_NOFS);
		if (!bh->b_frozen)
			return -KSHIM_ENOMEM;
		memcpy(bh->b_frozen, bh->b_data, bh->b_size);
	}
	bh->b_created = create;
	bh->b_joined = 1;
	--handle->credits;
	return 0;
}

int jbd2_journal_get_write_access(handle_t *handle, struct buffer_head *bh) { return join(handle, bh, 0); }
int jbd2_journal_get_create_access(handle_t *handle, struct buffer_head *bh) { return join(handle, bh, 1); }

int jbd2_journal_dirty_metadata(handle_t *handle, struct buffer_head *bh)
{
	(void)handle;
	if (!bh->b_joined)
		return -KSHIM_EINVAL;
	mark_buffer_dirty(bh);
	return 0;
}

int jbd2_journal_revoke(handle_t *handle, unsigned long long blocknr, struct buffer_head *bh)
{
	struct buffer_head *c = bh ? bh : lookup(handle->journal->sb, blocknr);
	/* The freed block's contents never go home: a joined copy stays (abort
	 * may need its pre-image) but is no longer written at commit. */
	if (c && c->b_joined && c->b_created) {
		c->b_dirty = 0;
	}
	return 0;
}

int jbd2_journal_stop(handle_t *handle)
{
	journal_t *j = handle->journal;
	j->reserved -= handle->credits; /* unused credits go back */
	--j->handles;
	kfree(handle);
	return 0;
}

int kshim_handle_credits(const handle_t *handle) { return handle->credits; }
uint64_t kshim_handle_tid(const handle_t *handle) { return handle->journal->tid; }

int jbd2_journal_force_commit(journal_t *journal)
{
	struct super_block *sb = journal->sb;
	uint32_t i;
	long writes = 0;
	if (journal->handles)
		return -KSHIM_EINVAL;
	for (i = 0; i < sb->ncache; ++i) {
		struct buffer_head *bh = &sb->cache[i];
		if (bh->b_in_use && bh->b_dirty && (bit(sb->running_map, bh->b_blocknr) || !bh->b_joined))
			++writes;
	}
	/* As jbd2's log write: the whole transaction reaches the disk or none
	 * of it does (then the transaction stays running: the caller aborts). */
	if (sb->fail_write_after > 0) {
		if (sb->fail_write_after <= writes) {
			sb->fail_write_after = 0;
			return -KSHIM_EIO;
		}
		sb->fail_write_after -= writes;
	}
	for (i = 0; i < sb->ncache; ++i) {
		struct buffer_head *bh = &sb->cache[i];
		if (!bh->b_in_use || !bh->b_dirty)
			continue;
		if (!bit(sb->running_map, bh->b_blocknr) && bh->b_joined) {
			bh->b_dirty = 0; /* freed in this transaction: nothing to write */
			continue;
		}
		memcpy(sb->disk + bh->b_blocknr * sb->blocksize, bh->b_data, sb->blocksize);
		bh->b_dirty = 0;
	}
	for (i = 0; i < sb->ncache; ++i) {
		struct buffer_head *bh = &sb->cache[i];
		if (bh->b_frozen)
			kfree(bh->b_frozen);
		bh->b_frozen = NULL;
		bh->b_joined = 0;
		bh->b_created = 0;
	}
	memcpy(sb->committed_map, sb->running_map, (size_t)(sb->blocks + 7) / 8);
	journal->reserved = 0;
	++journal->tid;
	return 0;
}

void jbd2_journal_abort(journal_t *journal, int error)
{
	struct super_block *sb = journal->sb;
	uint32_t i;
	(void)error;
	for (i = 0; i < sb->ncache; ++i) {
		struct buffer_head *bh = &sb->cache[i];
		if (!bh->b_joined)
			continue;
		if (bh->b_frozen) {
			memcpy(bh->b_data, bh->b_frozen, bh->b_size);
			kfree(bh->b_frozen);
			bh->b_frozen = NULL;
			bh->b_dirty = 0;
		} else {
			bh->b_in_use = 0; /* created in the transaction: gone */
			bh->b_dirty = 0;
		}
		bh->b_joined = 0;
		bh->b_created = 0;
	}
	memcpy(sb->running_map, sb->committed_map, (size_t)(sb->blocks + 7) / 8);
	journal->reserved = 0;
	++journal->tid;
}
