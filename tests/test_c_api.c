/* SPDX-License-Identifier: MIT */
/*
 * The C API (include/jbtree/c/jbtree.h) tested from C: compiled as C11 with
 * -Wall -Wextra -pedantic, linked with the one C++ translation unit that
 * holds the implementation (c_api_impl.cpp). Every function is called, on
 * success and on its error paths; a crash (abandon without commit) gives
 * back the last commit; an injected allocation failure and an injected I/O
 * error each return a clean error and change nothing.
 *
 * Prints one line per failed check and a summary; exit status 0 only if
 * every check passed.
 */
#include <jbtree/c/jbtree.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failures;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		++checks;                                                              \
		if (!(cond)) {                                                         \
			++failures;                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                      \
	} while (0)

/* ---- a RAM disk with fault injection -------------------------------------------------- */

struct ramdisk {
	unsigned char *bytes;
	uint32_t bs;
	uint64_t blocks;
	long writes_left; /* < 0: no limit; 0: the next write fails with -EIO */
	int fail_reads;   /* nonzero: every read fails with -EIO */
};

static int rd_read(void *ctx, uint64_t blk, uint32_t n, void *buf)
{
	struct ramdisk *d = ctx;
	if (d->fail_reads)
		return -EIO;
	memcpy(buf, d->bytes + blk * d->bs, (size_t)n * d->bs);
	return 0;
}

static int rd_write(void *ctx, uint64_t blk, uint32_t n, const void *buf)
{
	struct ramdisk *d = ctx;
	if (d->writes_left == 0)
		return -EIO;
	if (d->writes_left > 0)
		--d->writes_left;
	memcpy(d->bytes + blk * d->bs, buf, (size_t)n * d->bs);
	return 0;
}

static int rd_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

/* ---- an allocator that counts, and can be told to fail ---------------------------------- */

struct counting_alloc {
	long live;       /* allocations not freed */
	long fail_after; /* < 0: never; else the allocation after this many more fails */
};

static void *ca_alloc(void *ctx, size_t size, size_t align)
{
	struct counting_alloc *a = ctx;
	void *p = NULL;
	if (a->fail_after == 0)
		return NULL;
	if (a->fail_after > 0)
		--a->fail_after;
	if (align < sizeof(void *))
		align = sizeof(void *);
	p = aligned_alloc(align, (size + align - 1) / align * align); /* C11: a multiple of align */
	if (!p)
		return NULL;
	++a->live;
	return p;
}

static void ca_free(void *ctx, void *p, size_t size, size_t align)
{
	struct counting_alloc *a = ctx;
	(void)size;
	(void)align;
	free(p);
	--a->live;
}

/* ---- visitors ------------------------------------------------------------------------ */

struct owners {
	int n;
	struct jbt_rmap_record r[8];
};

static int collect_owner(void *ctx, const struct jbt_rmap_record *r)
{
	struct owners *o = ctx;
	if (o->n < 8)
		o->r[o->n] = *r;
	++o->n;
	return 0;
}

static int stop_at_first(void *ctx, const struct jbt_rmap_record *r)
{
	(void)r;
	++*(int *)ctx;
	return 1;
}

struct paths {
	int n;
	char p[4][64];
};

static int collect_path(void *ctx, const char *path, size_t len)
{
	struct paths *ps = ctx;
	if (ps->n < 4 && len < 64) {
		memcpy(ps->p[ps->n], path, len);
		ps->p[ps->n][len] = 0;
	}
	++ps->n;
	return 0;
}

static int has_path(const struct paths *ps, const char *want)
{
	int i;
	for (i = 0; i < ps->n && i < 4; ++i)
		if (strcmp(ps->p[i], want) == 0)
			return 1;
	return 0;
}

static int log_state_calls[2];
static int on_log_state(void *ctx, int live)
{
	(void)ctx;
	++log_state_calls[live ? 1 : 0];
	return 0;
}
static uint64_t fixed_clock(void *ctx)
{
	(void)ctx;
	return 1700000000ull * 1000000000ull;
}

/* ---- the caller's own buffer cache and journal (for jbt_maps_open) ------------------------ */

struct my_cache {
	unsigned char *blocks; /* nblocks * 4096, updated in place */
	unsigned char used[1024];
	uint64_t nblocks;
	long pins;             /* buffers not released */
	long frees;
};

static int mc_read(void *ctx, uint64_t blkno, struct jbt_buffer *out)
{
	struct my_cache *c = ctx;
	if (blkno == 0 || blkno >= c->nblocks || !c->used[blkno])
		return -EIO;
	out->data = c->blocks + blkno * 4096;
	out->blkno = blkno;
	out->priv = NULL;
	++c->pins;
	return 0;
}

static int mc_allocate(void *ctx, struct jbt_buffer *out)
{
	struct my_cache *c = ctx;
	uint64_t b;
	for (b = 1; b < c->nblocks; ++b)
		if (!c->used[b]) {
			c->used[b] = 1;
			memset(c->blocks + b * 4096, 0, 4096);
			out->data = c->blocks + b * 4096;
			out->blkno = b;
			++c->pins;
			return 0;
		}
	return -ENOSPC;
}

static int mc_free(void *ctx, uint64_t blkno)
{
	struct my_cache *c = ctx;
	if (blkno >= c->nblocks || !c->used[blkno])
		return -EINVAL;
	c->used[blkno] = 0;
	++c->frees;
	return 0;
}

static void mc_release(void *ctx, struct jbt_buffer *b)
{
	struct my_cache *c = ctx;
	(void)b;
	--c->pins;
}

struct my_journal {
	uint32_t handle_credits[4];
	int open_handles;
	uint64_t tid;
	long dirtied, forgotten, max_credits;
};

static int mj_start(void *ctx, uint32_t credits, void **handle)
{
	struct my_journal *j = ctx;
	if (credits > j->max_credits)
		return -ENOSPC;
	if (j->open_handles == 4)
		return -EBUSY;
	j->handle_credits[j->open_handles] = credits;
	*handle = &j->handle_credits[j->open_handles++];
	return 0;
}
static uint32_t mj_credits_left(void *ctx, void *handle)
{
	(void)ctx;
	return *(uint32_t *)handle;
}
static uint64_t mj_tid(void *ctx, void *handle)
{
	(void)handle;
	return ((struct my_journal *)ctx)->tid;
}
static int mj_access(void *ctx, void *handle, struct jbt_buffer *b)
{
	uint32_t *credits = handle;
	(void)ctx;
	(void)b;
	if (*credits == 0)
		return -ENOSPC;
	--*credits;
	return 0;
}
static int mj_dirty(void *ctx, void *handle, struct jbt_buffer *b)
{
	(void)handle;
	(void)b;
	++((struct my_journal *)ctx)->dirtied;
	return 0;
}
static int mj_forget(void *ctx, void *handle, uint64_t blkno)
{
	(void)handle;
	(void)blkno;
	++((struct my_journal *)ctx)->forgotten;
	return 0;
}
static int mj_stop(void *ctx, void *handle)
{
	struct my_journal *j = ctx;
	(void)handle;
	--j->open_handles;
	++j->tid;
	return 0;
}

/* The maps over a caller's cache and journal: every function, then reopened
 * from the roots the caller kept. */
static void test_callers_backend(const struct jbt_allocator *mem)
{
	struct my_cache c;
	struct my_journal j;
	struct jbt_storage_ops so = { &c, 4096, 0xABCDu, mc_read, mc_allocate, mc_free, mc_release };
	struct jbt_journal_ops jo = { &j, mj_start, mj_credits_left, mj_tid, mj_access, mj_access, mj_dirty, mj_forget, mj_stop };
	struct jbt_root roots[3];
	struct jbt_verify_result vr;
	struct owners o;
	struct paths ps;
	jbt_volume *m = NULL;
	uint32_t count = 0, gen = 0;
	uint64_t b;
	char name[32];
	int ok = 1;

	memset(&c, 0, sizeof c);
	memset(&j, 0, sizeof j);
	c.nblocks = 1024;
	c.blocks = calloc(1024, 4096);
	j.max_credits = 64;
	if (!c.blocks)
		return;
	CHECK(jbt_maps_open(NULL, &jo, mem, NULL, &m) == -EINVAL);
	CHECK(jbt_maps_open(&so, &jo, mem, NULL, &m) == 0);
	/* Enough records for splits (and so for frees and forgets later). */
	for (b = 0; b < 600 && ok; ++b) {
		snprintf(name, sizeof name, "entry-%llu", (unsigned long long)b);
		ok = jbt_rmap_map(m, 10000 + 3 * b, 2, 100 + b, 0, 0) == 0 &&
		     jbt_parent_add(m, 100 + b, 2, 1, name, strlen(name)) == 0;
	}
	CHECK(ok);
	CHECK(jbt_rmap_map(m, 10000, 2, 999, 0, 0) == 0);
	CHECK(jbt_refcount_adjust(m, 10000, 2, +1) == 0);
	CHECK(jbt_refcount_get(m, 10001, &count) == 0 && count == 2);
	CHECK(jbt_refcount_adjust(m, 10003, 3, -1) == 0); /* unshared: nothing written */
	memset(&o, 0, sizeof o);
	CHECK(jbt_rmap_owners(m, 10001, collect_owner, &o) == 0 && o.n == 2);
	memset(&ps, 0, sizeof ps);
	CHECK(jbt_parent_paths(m, 105, 2, collect_path, &ps, NULL) == 0 && ps.n == 1 && has_path(&ps, "/entry-5"));
	CHECK(jbt_parent_find(m, 105, 2, "entry-5", 7, &gen) == 0 && gen == 1);
	CHECK(jbt_volume_commit(m) == -EOPNOTSUPP); /* the caller's journal commits */
	CHECK(jbt_verify(m, &vr) == 0 && vr.problems == 0 && vr.refcount_mismatches == 0);
	CHECK(vr.rmap_records == 601 && vr.parent_records == 600);
	CHECK(j.dirtied > 0 && j.open_handles == 0);
	/* A handle the journal refuses: the error comes back, nothing changes. */
	j.max_credits = 2;
	CHECK(jbt_parent_add(m, 7, 2, 1, "refused", 7) == -ENOSPC);
	j.max_credits = 64;
	CHECK(jbt_parent_find(m, 7, 2, "refused", 7, &gen) == -ENOENT);
	/* Removing half the records frees nodes: the journal forgets them. */
	for (b = 0; b < 300 && ok; ++b) {
		snprintf(name, sizeof name, "entry-%llu", (unsigned long long)b);
		ok = jbt_parent_remove(m, 100 + b, 2, name, strlen(name)) == 0;
	}
	CHECK(ok);
	CHECK(c.frees > 0 && j.forgotten == c.frees);
	CHECK(jbt_maps_roots(m, roots) == 0);
	CHECK(roots[2].records == 300 && roots[0].records == 601 && roots[2].tree_id == 3);
	CHECK(jbt_volume_close(m) == 0);
	CHECK(c.pins == 0);
	/* Reopened from the roots the caller kept. */
	CHECK(jbt_maps_open(&so, &jo, mem, roots, &m) == 0);
	CHECK(jbt_parent_find(m, 405, 2, "entry-305", 9, &gen) == 0);
	CHECK(jbt_parent_find(m, 105, 2, "entry-5", 7, &gen) == -ENOENT);
	CHECK(jbt_refcount_get(m, 10000, &count) == 0 && count == 2);
	CHECK(jbt_verify(m, &vr) == 0 && vr.problems == 0 && vr.parent_records == 300);
	jbt_volume_abandon(m);
	CHECK(c.pins == 0);
	/* Damaged roots are refused. */
	roots[0].root = 5000; /* past the cache */
	CHECK(jbt_maps_open(&so, &jo, mem, roots, &m) != 0);
	free(c.blocks);
}

static int verify_clean(jbt_volume *v, struct jbt_verify_result *r)
{
	return jbt_verify(v, r) == 0 && r->problems == 0 && r->block_problems == 0 && r->refcount_mismatches == 0;
}

int main(void)
{
	struct ramdisk d = { NULL, 4096, 4096, -1, 0 };
	struct counting_alloc ca = { 0, -1 };
	struct jbt_block_io io = { &d, 4096, 4096, rd_read, rd_write, rd_flush };
	struct jbt_allocator mem = { &ca, ca_alloc, ca_free };
	struct jbt_journal_hooks hooks = { NULL, fixed_clock, on_log_state };
	struct jbt_open_options opts = { 512, 128 };
	const uint8_t uuid[16] = { 1, 2, 3, 4 };
	struct jbt_verify_result vr;
	struct owners o;
	struct paths ps;
	jbt_volume *v = NULL;
	uint32_t count = 0, gen = 0;
	uint64_t complete = 0;
	int stopped = 0, r;
	unsigned char *committed;

	d.bytes = calloc((size_t)d.blocks, d.bs);
	committed = malloc((size_t)d.blocks * d.bs);
	if (!d.bytes || !committed)
		return 2;

	/* Bad arguments. */
	CHECK(jbt_volume_create(NULL, &mem, 512, uuid) == -EINVAL);
	CHECK(jbt_volume_open(&io, NULL, NULL, NULL, &v) == -EINVAL);
	CHECK(jbt_volume_commit(NULL) == -EINVAL);
	CHECK(strcmp(jbt_strerror(-ENOENT), "not found") == 0);
	CHECK(strcmp(jbt_strerror(0), "success") == 0);

	CHECK(jbt_volume_create(&io, &mem, 512, uuid) == 0);
	CHECK(ca.live == 0);
	CHECK(jbt_volume_open(&io, &mem, &hooks, &opts, &v) == 0);

	/* rmap */
	CHECK(jbt_rmap_map(v, 1000, 10, 12, 0, 0) == 0);
	CHECK(jbt_rmap_map(v, 1010, 5, 12, 10, 0) == 0);          /* merges with the first */
	CHECK(jbt_rmap_map(v, 1000, 4, 13, 0, 0) == 0);           /* a second owner (shared) */
	CHECK(jbt_rmap_map(v, 2000, 1, 12, 0, JBT_RMAP_BMBT) == 0);
	CHECK(jbt_rmap_map(v, 3000, 8, JBT_OWNER_JOURNAL, 0, 0) == 0);
	CHECK(jbt_rmap_map(v, 1005, 1, 12, 5, 0) == -EEXIST);
	CHECK(jbt_rmap_map(v, 1, 0, 12, 0, 0) == -EINVAL);        /* empty range */
	memset(&o, 0, sizeof o);
	CHECK(jbt_rmap_owners(v, 1002, collect_owner, &o) == 0);
	CHECK(o.n == 2);
	CHECK(o.r[0].owner == 12 || o.r[1].owner == 12);
	CHECK(o.r[0].owner == 13 || o.r[1].owner == 13);
	memset(&o, 0, sizeof o);
	CHECK(jbt_rmap_owners(v, 1012, collect_owner, &o) == 0);
	CHECK(o.n == 1 && o.r[0].start == 1000 && o.r[0].length == 15 && o.r[0].offset == 0);
	memset(&o, 0, sizeof o);
	CHECK(jbt_rmap_owners(v, 3003, collect_owner, &o) == 0);
	CHECK(o.n == 1 && o.r[0].owner == JBT_OWNER_JOURNAL);
	CHECK(jbt_rmap_owners(v, 1001, stop_at_first, &stopped) == 0 && stopped == 1);
	CHECK(jbt_rmap_unmap(v, 1005, 2, 12, 5) == 0);            /* splits 1000+15 */
	memset(&o, 0, sizeof o);
	CHECK(jbt_rmap_owners(v, 1006, collect_owner, &o) == 0 && o.n == 0);
	CHECK(jbt_rmap_unmap(v, 1005, 1, 12, 5) == -ENOENT);
	CHECK(jbt_rmap_owners(v, 1, NULL, NULL) == -EINVAL);

	/* refcount */
	CHECK(jbt_refcount_adjust(v, 1000, 4, +1) == 0);
	CHECK(jbt_refcount_get(v, 1002, &count) == 0 && count == 2);
	CHECK(jbt_refcount_get(v, 1004, &count) == 0 && count == 1);
	CHECK(jbt_refcount_adjust(v, 1000, 4, +2) == -EINVAL);
	CHECK(jbt_refcount_get(v, 1, NULL) == -EINVAL);
	/* Decrements of what was incremented, down to unshared and past it
	 * (blocks in no record: nothing to write, no handle needed). */
	CHECK(jbt_refcount_adjust(v, 1002, 4, +1) == 0); /* 1000..1005: 2 2 3 3 2 2 */
	CHECK(jbt_refcount_adjust(v, 1000, 4, -1) == 0);
	CHECK(jbt_refcount_adjust(v, 1002, 4, -1) == 0);
	CHECK(jbt_refcount_get(v, 1003, &count) == 0 && count == 1);
	CHECK(jbt_refcount_adjust(v, 1000, 6, -1) == 0); /* all gaps: 1 -> 0 */
	CHECK(jbt_refcount_adjust(v, 1000, 4, +1) == 0);

	/* parent pointers: /a (12) with hard links /a/x and /b/y to inode 20 */
	CHECK(jbt_parent_add(v, 12, 2, 1, "a", 1) == 0);
	CHECK(jbt_parent_add(v, 14, 2, 1, "b", 1) == 0);
	CHECK(jbt_parent_add(v, 20, 12, 7, "x", 1) == 0);
	CHECK(jbt_parent_add(v, 20, 14, 9, "y", 1) == 0);
	CHECK(jbt_parent_add(v, 20, 14, 9, "y", 1) == -EEXIST);
	CHECK(jbt_parent_add(v, 20, 14, 9, "a/b", 3) == -EINVAL);
	CHECK(jbt_parent_find(v, 20, 14, "y", 1, &gen) == 0 && gen == 9);
	CHECK(jbt_parent_find(v, 20, 14, "z", 1, &gen) == -ENOENT);
	memset(&ps, 0, sizeof ps);
	CHECK(jbt_parent_paths(v, 20, 2, collect_path, &ps, &complete) == 0);
	CHECK(ps.n == 2 && complete == 2);
	CHECK(has_path(&ps, "/a/x") && has_path(&ps, "/b/y"));
	CHECK(jbt_parent_remove(v, 20, 12, "x", 1) == 0);
	CHECK(jbt_parent_remove(v, 20, 12, "x", 1) == -ENOENT);
	memset(&ps, 0, sizeof ps);
	CHECK(jbt_parent_paths(v, 20, 2, collect_path, &ps, NULL) == 0 && ps.n == 1 && has_path(&ps, "/b/y"));

	/* verify, commit */
	CHECK(verify_clean(v, &vr));
	CHECK(vr.rmap_records == 5 && vr.refcount_records == 1 && vr.parent_records == 3);
	CHECK(jbt_volume_commit(v) == 0);
	CHECK(log_state_calls[1] == 1);
	memcpy(committed, d.bytes, (size_t)d.blocks * d.bs);

	/* An injected allocation failure: the open fails cleanly, nothing leaks. */
	{
		jbt_volume *w = NULL;
		long before = ca.live;
		ca.fail_after = 3;
		CHECK(jbt_volume_open(&io, &mem, NULL, &opts, &w) == -ENOMEM);
		CHECK(w == NULL);
		CHECK(ca.live == before);
		ca.fail_after = -1;
	}

	/* An injected I/O error in a commit: the commit fails, the device holds
	 * the last commit. */
	CHECK(jbt_parent_add(v, 21, 12, 7, "later", 5) == 0);
	d.writes_left = 0;
	r = jbt_volume_commit(v);
	CHECK(r == -EIO);
	d.writes_left = -1;
	jbt_volume_abandon(v); /* a crash */
	v = NULL;
	CHECK(ca.live == 0);

	/* Reopen: the journal replays the last commit; "later" is gone. */
	CHECK(jbt_volume_open(&io, &mem, &hooks, &opts, &v) == 0);
	CHECK(jbt_parent_find(v, 21, 12, "later", 5, &gen) == -ENOENT);
	CHECK(jbt_parent_find(v, 20, 14, "y", 1, &gen) == 0 && gen == 9);
	CHECK(jbt_refcount_get(v, 1001, &count) == 0 && count == 2);
	CHECK(verify_clean(v, &vr));
	CHECK(vr.rmap_records == 5 && vr.parent_records == 3);

	/* A read error: queries fail cleanly once the blocks leave the cache;
	 * with a fresh open they cannot even start. */
	jbt_volume_abandon(v);
	d.fail_reads = 1;
	v = NULL;
	CHECK(jbt_volume_open(&io, &mem, NULL, &opts, &v) == -EIO);
	CHECK(v == NULL);
	d.fail_reads = 0;

	/* A long refcount adjust takes several handles, all applied. */
	CHECK(jbt_volume_open(&io, &mem, &hooks, &opts, &v) == 0);
	{
		uint64_t b;
		int ok = 1;
		for (b = 0; b < 2000; ++b) /* every other block: many records */
			if (jbt_refcount_adjust(v, 100000 + 2 * b, 1, +1) != 0)
				ok = 0;
		CHECK(ok);
		CHECK(jbt_refcount_adjust(v, 100000, 4000, +1) == 0); /* 2000 records change, 2000 gaps become records */
		CHECK(jbt_refcount_get(v, 100000, &count) == 0 && count == 3);
		CHECK(jbt_refcount_get(v, 100001, &count) == 0 && count == 2);
		CHECK(jbt_refcount_get(v, 103999, &count) == 0 && count == 2);
		/* Sound trees, but no rmap owners behind these counts: verify says so. */
		CHECK(jbt_verify(v, &vr) == 0 && vr.problems == 0 && vr.block_problems == 0);
		CHECK(vr.refcount_mismatches > 0);
	}
	CHECK(jbt_volume_close(v) == 0);
	CHECK(log_state_calls[0] >= 1);
	CHECK(ca.live == 0);

	test_callers_backend(&mem);
	CHECK(ca.live == 0);

	free(committed);
	free(d.bytes);
	printf("C API: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
