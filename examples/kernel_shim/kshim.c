/* SPDX-License-Identifier: MIT */
/* kshim: the user-space model of kglue.h (see kshim.h), over a RAM disk. */
#include "kshim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory ---------------------------------------------------------------------------- */

static long alloc_fail_after, alloc_live;

void *kglue_alloc(size_t size)
{
	void *p;
	if (alloc_fail_after > 0 && --alloc_fail_after == 0)
		return NULL;
	p = malloc(size ? size : 1);
	if (p)
		++alloc_live;
	return p;
}

void kglue_free(void *p)
{
	if (!p)
		return;
	--alloc_live;
	free(p);
}

void kshim_fail_alloc_after(long n) { alloc_fail_after = n; }
long kshim_alloc_live(void) { return alloc_live; }

/* ---- the disk, the cache, the allocator, the journal ------------------------------------- */

struct kglue_buf {
	uint64_t blocknr;
	unsigned char *data;
	int count;    /* references */
	int in_use;   /* the slot holds blocknr */
	int uptodate; /* contents valid (read, or zeroed by kglue_new_block) */
	int locked;   /* lock_buffer held */
	int dirty;    /* dirtied in the running transaction: written at commit */
	int joined;   /* joined to the running transaction */
	int created;  /* joined by get_create_access */
};

struct kglue_handle {
	struct kglue_fs *fs;
	int credits, revokes;
};

struct kglue_fs {
	uint32_t blocksize;
	uint64_t blocks;
	unsigned char *disk;
	struct kglue_buf *cache;
	uint32_t ncache;
	uint32_t *slot_of;            /* block -> cache slot + 1 (0: not cached) */
	uint64_t alloc_cursor;        /* next-fit allocation starts here */
	unsigned char *committed_map; /* allocator as of the last commit */
	unsigned char *running_map;   /* ... and with the running transaction */
	unsigned char *revoked_map;   /* blocks revoked in the running transaction */
	long fail_read_after, fail_write_after, fail_new_block_after, violations;
	/* journal */
	int max_credits;
	int reserved; /* credits given to the running transaction's handles */
	uint64_t tid;
	int handles;
	int aborted;
};

static int bit(const unsigned char *m, uint64_t b) { return (m[b / 8] >> (b % 8)) & 1; }
static void set_bit(unsigned char *m, uint64_t b, int on)
{
	if (on)
		m[b / 8] |= (unsigned char)(1u << (b % 8));
	else
		m[b / 8] &= (unsigned char)~(1u << (b % 8));
}
static size_t map_bytes(const struct kglue_fs *fs) { return (size_t)(fs->blocks + 7) / 8; }

/* A rule broken: counted, and the call fails with err. */
static int violation(struct kglue_fs *fs, int err)
{
	++fs->violations;
	return err;
}
long kshim_rule_violations(struct kglue_fs *fs) { return fs->violations; }

struct kglue_fs *kshim_mount(uint32_t block_size, uint64_t blocks, uint32_t cache_buffers, int max_transaction_credits)
{
	struct kglue_fs *fs = calloc(1, sizeof *fs);
	uint32_t i;
	if (!fs)
		return NULL;
	fs->blocksize = block_size;
	fs->blocks = blocks;
	fs->disk = calloc((size_t)blocks, block_size);
	fs->cache = calloc(cache_buffers, sizeof *fs->cache);
	fs->ncache = cache_buffers;
	fs->committed_map = calloc(map_bytes(fs), 1);
	fs->running_map = calloc(map_bytes(fs), 1);
	fs->revoked_map = calloc(map_bytes(fs), 1);
	fs->slot_of = calloc((size_t)blocks, sizeof *fs->slot_of);
	fs->alloc_cursor = 1;
	fs->max_credits = max_transaction_credits;
	fs->tid = 1;
	if (!fs->disk || !fs->cache || !fs->committed_map || !fs->running_map || !fs->revoked_map || !fs->slot_of)
		return NULL;
	for (i = 0; i < cache_buffers; ++i) {
		fs->cache[i].data = malloc(block_size);
		if (!fs->cache[i].data)
			return NULL;
	}
	/* Block 0 is never handed out (it means "none" in a node pointer). */
	set_bit(fs->committed_map, 0, 1);
	set_bit(fs->running_map, 0, 1);
	return fs;
}

void kshim_unmount(struct kglue_fs *fs)
{
	uint32_t i;
	for (i = 0; i < fs->ncache; ++i)
		free(fs->cache[i].data);
	free(fs->cache);
	free(fs->disk);
	free(fs->committed_map);
	free(fs->running_map);
	free(fs->revoked_map);
	free(fs->slot_of);
	free(fs);
}

void kshim_fail_read_after(struct kglue_fs *fs, long n) { fs->fail_read_after = n; }
void kshim_fail_write_after(struct kglue_fs *fs, long n) { fs->fail_write_after = n; }
void kshim_fail_new_block_after(struct kglue_fs *fs, long n) { fs->fail_new_block_after = n; }

uint32_t kglue_block_size(struct kglue_fs *fs) { return fs->blocksize; }
unsigned char *kglue_data(struct kglue_buf *b) { return b->data; }
uint64_t kglue_blocknr(const struct kglue_buf *b) { return b->blocknr; }
/* The shim remembers no verification and has no buffer triggers: nodes are
 * checked on every read and sealed on every change. */
int kglue_checked(const struct kglue_buf *b) { (void)b; return 0; }
void kglue_set_checked(struct kglue_buf *b) { (void)b; }
void kglue_set_sealer(struct kglue_fs *fs, void (*seal)(void *ctx, unsigned char *data, size_t size), void *ctx)
{
	(void)fs;
	(void)seal;
	(void)ctx;
}
int kglue_defer_seal(struct kglue_fs *fs, struct kglue_buf *b) { (void)fs; (void)b; return 0; }
int kglue_seal_pending(const struct kglue_buf *b) { (void)b; return 0; }

static struct kglue_buf *lookup(struct kglue_fs *fs, uint64_t block)
{
	uint32_t s = block < fs->blocks ? fs->slot_of[block] : 0;
	return s && fs->cache[s - 1].in_use && fs->cache[s - 1].blocknr == block ? &fs->cache[s - 1] : NULL;
}

/* A slot for `block`: a free one, or a clean unreferenced one. */
static struct kglue_buf *grab(struct kglue_fs *fs, uint64_t block)
{
	uint32_t i;
	struct kglue_buf *b = NULL;
	for (i = 0; i < fs->ncache && !b; ++i)
		if (!fs->cache[i].in_use)
			b = &fs->cache[i];
	for (i = 0; i < fs->ncache && !b; ++i)
		if (!fs->cache[i].count && !fs->cache[i].dirty && !fs->cache[i].joined)
			b = &fs->cache[i];
	if (!b)
		return NULL;
	if (b->in_use)
		fs->slot_of[b->blocknr] = 0;
	fs->slot_of[block] = (uint32_t)(b - fs->cache) + 1;
	b->blocknr = block;
	b->in_use = 1;
	b->count = b->uptodate = b->locked = b->dirty = b->joined = b->created = 0;
	return b;
}

struct kglue_buf *kglue_read(struct kglue_fs *fs, uint64_t blk, int *err)
{
	struct kglue_buf *b;
	*err = -EIO;
	if (blk >= fs->blocks)
		return NULL;
	b = lookup(fs, blk);
	if (b) {
		++b->count;
		return b;
	}
	if (fs->fail_read_after > 0 && --fs->fail_read_after == 0)
		return NULL; /* the disk failed */
	b = grab(fs, blk);
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	memcpy(b->data, fs->disk + blk * fs->blocksize, fs->blocksize);
	b->uptodate = 1;
	++b->count;
	return b;
}

void kglue_release(struct kglue_buf *b)
{
	if (b && b->count > 0)
		--b->count;
}

void kshim_drop_caches(struct kglue_fs *fs)
{
	uint32_t i;
	for (i = 0; i < fs->ncache; ++i)
		if (!fs->cache[i].count && !fs->cache[i].dirty && !fs->cache[i].joined)
			fs->cache[i].in_use = 0;
}

struct kglue_buf *kglue_new_block(struct kglue_fs *fs, int *err)
{
	uint64_t blk;
	struct kglue_buf *b;
	if (fs->aborted) {
		*err = -EROFS;
		return NULL;
	}
	/* next fit: from where the last allocation ended, once round */
	for (blk = 0; blk < fs->blocks; ++blk) {
		uint64_t b = (fs->alloc_cursor + blk) % fs->blocks;
		if (b && !bit(fs->running_map, b) && !bit(fs->committed_map, b)) {
			blk = b;
			break;
		}
	}
	if (blk < fs->blocks)
		fs->alloc_cursor = blk + 1;
	if (fs->fail_new_block_after > 0 && --fs->fail_new_block_after == 0)
		blk = fs->blocks; /* injected: the filesystem is full */
	if (blk == fs->blocks) {
		*err = -ENOSPC;
		return NULL;
	}
	b = lookup(fs, blk);
	if (b && (b->count || b->joined))
		return *err = violation(fs, -EIO), NULL; /* a free block still in use */
	if (!b)
		b = grab(fs, blk);
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	set_bit(fs->running_map, blk, 1);
	/* lock_buffer; zero; set_buffer_uptodate; unlock_buffer */
	b->locked = 1;
	memset(b->data, 0, fs->blocksize);
	b->uptodate = 1;
	b->locked = 0;
	++b->count;
	return b;
}

void kglue_free_block(struct kglue_fs *fs, uint64_t blk)
{
	if (blk < fs->blocks)
		set_bit(fs->running_map, blk, 0);
}

/* ---- the journal ------------------------------------------------------------------------ */

static void end_transaction(struct kglue_fs *fs)
{
	uint32_t i;
	for (i = 0; i < fs->ncache; ++i) {
		fs->cache[i].joined = 0;
		fs->cache[i].created = 0;
	}
	memset(fs->revoked_map, 0, map_bytes(fs));
	fs->reserved = 0;
	++fs->tid;
}

int kglue_force_commit(struct kglue_fs *fs)
{
	uint32_t i;
	long writes = 0;
	if (fs->aborted)
		return -EROFS;
	if (fs->handles)
		return violation(fs, -EBUSY);
	for (i = 0; i < fs->ncache; ++i)
		if (fs->cache[i].in_use && fs->cache[i].dirty)
			++writes;
	/* As jbd2's log write: the whole transaction reaches the disk or none
	 * of it does (the caller then aborts the journal). */
	if (fs->fail_write_after > 0) {
		if (fs->fail_write_after <= writes) {
			fs->fail_write_after = 0;
			return -EIO;
		}
		fs->fail_write_after -= writes;
	}
	for (i = 0; i < fs->ncache; ++i) {
		struct kglue_buf *b = &fs->cache[i];
		if (!b->in_use || !b->dirty)
			continue;
		memcpy(fs->disk + b->blocknr * fs->blocksize, b->data, fs->blocksize);
		b->dirty = 0;
	}
	memcpy(fs->committed_map, fs->running_map, map_bytes(fs));
	end_transaction(fs);
	return 0;
}

void kglue_abort(struct kglue_fs *fs, int err)
{
	(void)err;
	fs->aborted = 1; /* nothing is rolled back: the disk keeps the last commit */
}

int kglue_aborted(struct kglue_fs *fs) { return fs->aborted ? -EROFS : 0; }

int kshim_remount(struct kglue_fs *fs)
{
	uint32_t i;
	if (fs->handles)
		return -EBUSY;
	for (i = 0; i < fs->ncache; ++i)
		if (fs->cache[i].count)
			return -EBUSY;
	for (i = 0; i < fs->ncache; ++i)
		fs->cache[i].in_use = 0;
	memcpy(fs->running_map, fs->committed_map, map_bytes(fs));
	end_transaction(fs);
	fs->aborted = 0;
	return 0;
}

struct kglue_handle *kglue_start(struct kglue_fs *fs, int credits, int revoke_credits, int *err)
{
	struct kglue_handle *h;
	if (fs->aborted) {
		*err = -EROFS;
		return NULL;
	}
	if (credits <= 0 || revoke_credits < 0 || credits > fs->max_credits) {
		*err = -ENOSPC;
		return NULL;
	}
	if (fs->reserved + credits > fs->max_credits) {
		/* The running transaction is full: commit it first (jbd2 would wait). */
		*err = fs->handles ? -ENOSPC : kglue_force_commit(fs);
		if (*err)
			return NULL;
	}
	h = kglue_alloc(sizeof *h);
	if (!h) {
		*err = -ENOMEM;
		return NULL;
	}
	h->fs = fs;
	h->credits = credits;
	h->revokes = revoke_credits;
	fs->reserved += credits;
	++fs->handles;
	return h;
}

int kglue_extend(struct kglue_handle *h, int credits, int revoke_credits)
{
	struct kglue_fs *fs = h->fs;
	if (fs->aborted)
		return -EROFS;
	if (credits < 0 || revoke_credits < 0)
		return violation(fs, -EINVAL);
	if (fs->reserved + credits > fs->max_credits)
		return 1; /* no room in this transaction: restart */
	fs->reserved += credits;
	h->credits += credits;
	h->revokes += revoke_credits;
	return 0;
}

int kglue_restart(struct kglue_handle *h, int credits, int revoke_credits)
{
	struct kglue_fs *fs = h->fs;
	int err = 0;
	if (fs->aborted)
		return -EROFS;
	if (credits <= 0 || credits > fs->max_credits)
		return -ENOSPC;
	/* The handle's changes go with the running transaction, which commits
	 * once this is its last handle; the handle goes on in the next one. */
	fs->reserved -= h->credits;
	if (fs->handles == 1) {
		--fs->handles;
		err = kglue_force_commit(fs);
		++fs->handles;
	}
	if (err)
		return err;
	fs->reserved += credits;
	h->credits = credits;
	h->revokes = revoke_credits;
	return 0;
}

int kglue_max_credits(struct kglue_fs *fs) { return fs->max_credits; }
int kglue_credits_left(const struct kglue_handle *h) { return h->credits; }
int kglue_revokes_left(const struct kglue_handle *h) { return h->revokes; }
uint64_t kglue_tid(const struct kglue_handle *h) { return h->fs->tid; }

static int join(struct kglue_handle *h, struct kglue_buf *b, int create)
{
	struct kglue_fs *fs = h->fs;
	if (fs->aborted)
		return -EROFS;
	if (create && (!b->uptodate || b->locked))
		return violation(fs, -EINVAL); /* new blocks: zeroed under the lock, uptodate */
	if (b->joined)
		return 0;
	if (h->credits <= 0)
		return violation(fs, -ENOSPC);
	b->created = create;
	b->joined = 1;
	--h->credits;
	return 0;
}

int kglue_get_write_access(struct kglue_handle *h, struct kglue_buf *b) { return join(h, b, 0); }
int kglue_get_create_access(struct kglue_handle *h, struct kglue_buf *b) { return join(h, b, 1); }

int kglue_dirty_metadata(struct kglue_handle *h, struct kglue_buf *b)
{
	if (h->fs->aborted)
		return -EROFS;
	if (!b->joined)
		return violation(h->fs, -EINVAL);
	b->dirty = 1;
	return 0;
}

int kglue_forget(struct kglue_handle *h, uint64_t blk)
{
	struct kglue_fs *fs = h->fs;
	struct kglue_buf *b = lookup(fs, blk);
	if (fs->aborted)
		return -EROFS;
	/* Only a block created in this transaction: anything older needs a
	 * revoke, or replay could bring back its logged contents. */
	if (!b || !b->joined || !b->created)
		return violation(fs, -EINVAL);
	b->dirty = 0; /* never goes home */
	b->joined = 0;
	b->created = 0;
	return 0;
}

int kglue_revoke(struct kglue_handle *h, uint64_t blk)
{
	struct kglue_fs *fs = h->fs;
	struct kglue_buf *b = lookup(fs, blk);
	if (fs->aborted)
		return -EROFS;
	if (h->revokes <= 0)
		return violation(fs, -EIO); /* jbd2: WARN_ON_ONCE(h_revoke_credits <= 0) */
	if (blk >= fs->blocks || bit(fs->revoked_map, blk))
		return violation(fs, -EIO); /* revoked twice */
	if (b && b->joined && b->created)
		return violation(fs, -EINVAL); /* created in this transaction: forget */
	set_bit(fs->revoked_map, blk, 1);
	--h->revokes;
	if (b) { /* revoke forgets a cached copy */
		b->dirty = 0;
		b->joined = 0;
	}
	return 0;
}

int kglue_stop(struct kglue_handle *h)
{
	struct kglue_fs *fs = h->fs;
	fs->reserved -= h->credits; /* unused credits go back */
	--fs->handles;
	kglue_free(h);
	return fs->aborted ? -EROFS : 0;
}
