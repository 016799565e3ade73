/* SPDX-License-Identifier: MIT */
/*
 * The three maps driven through the kernel-style shim (kmaps.h over
 * kshim.h), from C. Injected faults: an allocation failure (kmalloc) in the
 * middle of changes, a disk read error, a disk write error at commit: each
 * returns a clean error and leaves the maps as they were at the last
 * commit (they verify clean and answer as before). Prints the worst-case
 * credits per call (docs/kernel.md). Exit 0 only if every check passed.
 */
#include "kmaps.h"

#include <stdio.h>
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

struct snapshot {
	uint64_t rmap, refcount, parent, paths, problems;
	uint32_t count;
	int owners;
};

static struct snapshot take(struct kmaps *m)
{
	struct snapshot s;
	uint64_t o[8];
	memset(&s, 0, sizeof s);
	kmaps_sizes(m, &s.rmap, &s.refcount, &s.parent);
	if (kmaps_parent_paths(m, 1000, 2, &s.paths) != 0)
		s.paths = 99;
	if (kmaps_verify(m, &s.problems) != 0)
		s.problems = 99;
	if (kmaps_refcount_get(m, 5000, &s.count) != 0)
		s.count = 99;
	if (kmaps_rmap_owners(m, 5000, o, 8, &s.owners) != 0)
		s.owners = 99;
	return s;
}

static int same(struct snapshot a, struct snapshot b)
{
	return a.rmap == b.rmap && a.refcount == b.refcount && a.parent == b.parent && a.paths == b.paths &&
	       a.problems == b.problems && a.count == b.count && a.owners == b.owners;
}

/* Enough changes to grow every tree to several levels. */
static int fill(struct kmaps *m, uint64_t base, int n)
{
	int i, e = 0;
	char name[32];
	for (i = 0; i < n && !e; ++i) {
		e = kmaps_rmap_map(m, base + (uint64_t)i * 4, 3, 100 + (uint64_t)i, 0, 0);
		if (!e)
			e = kmaps_refcount_adjust(m, base + (uint64_t)i * 4, 2, +1);
		if (!e) {
			snprintf(name, sizeof name, "file-%llu-%d", (unsigned long long)base, i);
			e = kmaps_parent_add(m, 100 + (uint64_t)i, 1000, 1, name, strlen(name));
		}
	}
	return e;
}

int main(void)
{
	struct super_block *sb = kshim_mount(4096, 65536, 256);
	journal_t *j;
	struct kmaps *m = NULL;
	struct snapshot before, after;
	struct kmaps_credits cr;
	uint64_t problems = 1, paths = 0;
	uint64_t owners[4];
	int n = 0, e, k;

	if (!sb || !(j = kshim_journal(sb, 512)))
		return 2;
	CHECK(kmaps_create(sb, j, 0x1234, &m) == 0);
	/* /dir (1000) and a hard-linked file (5) */
	CHECK(kmaps_parent_add(m, 1000, 2, 1, "dir", 3) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 8, 7, 0, 0) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 8, 8, 0, 0) == 0);
	CHECK(kmaps_refcount_adjust(m, 5000, 8, +1) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 1, 7, 0, 0) == -17);  /* -EEXIST: nothing changes */
	CHECK(kmaps_parent_add(m, 1000, 2, 1, "a/b", 3) == -22); /* -EINVAL */
	CHECK(fill(m, 100000, 3000) == 0);
	CHECK(kmaps_commit(m) == 0);
	CHECK(kmaps_verify(m, &problems) == 0 && problems == 0);
	CHECK(kmaps_rmap_owners(m, 5003, owners, 4, &n) == 0 && n == 2);
	CHECK(kmaps_parent_paths(m, 1000, 2, &paths) == 0 && paths == 1);
	kmaps_get_credits(m, &cr);
	printf("worst-case credits at these heights: rmap map %u, parent add %u, parent remove %u, refcount step %u\n",
	       cr.rmap_map, cr.parent_add, cr.parent_remove, cr.refcount_step);

	/* 1. Allocation failures: the k-th kmalloc of one change fails (the
	 *    handle and the journal's pre-images come from kmalloc), k = 1, 2,
	 *    ... until the change needs fewer: each failing change returns
	 *    -ENOMEM and the maps are as they were before it (the last commit). */
	{
		int injected = 0;
		uint64_t at = 400000;
		char name[32];
		int op;
		for (k = 1; k <= 12; ++k, at += 8) {
			for (op = 0; op < 3; ++op) {
				before = take(m);
				snprintf(name, sizeof name, "alloc-%d", k);
				kshim_fail_kmalloc_after(k);
				if (op == 0)
					e = kmaps_rmap_map(m, at, 3, 777, 0, 0);
				else if (op == 1)
					e = kmaps_parent_add(m, 777, 1000, 1, name, strlen(name));
				else
					e = kmaps_refcount_adjust(m, at, 2, +1);
				kshim_fail_kmalloc_after(0);
				CHECK(e == 0 || e == -12);
				if (e == -12) {
					++injected;
					after = take(m);
					CHECK(same(before, after));
				}
				CHECK(kmaps_commit(m) == 0);
			}
		}
		CHECK(injected >= 3);
		printf("allocation failures injected into %d changes\n", injected);
	}
	before = take(m);

	/* 2. A disk read error in the middle of a change (caches dropped, so the
	 *    tree's nodes come from the disk): -EIO, nothing changed. */
	kshim_drop_caches(sb);
	kshim_fail_read_after(sb, 2);
	e = kmaps_rmap_map(m, 200000, 3, 9999, 0, 0);
	kshim_fail_read_after(sb, 0);
	if (e != -5)
		fprintf(stderr, "read error: got %d\n", e);
	CHECK(e == -5);
	after = take(m);
	CHECK(same(before, after));

	/* 3. A disk write error at commit: -EIO, the transaction is rolled back. */
	CHECK(fill(m, 300000, 100) == 0);
	kshim_fail_write_after(sb, 3);
	CHECK(kmaps_commit(m) == -5);
	kshim_fail_write_after(sb, 0);
	after = take(m);
	CHECK(same(before, after));

	/* And the maps go on working afterwards. */
	CHECK(fill(m, 300000, 100) == 0);
	CHECK(kmaps_commit(m) == 0);
	after = take(m);
	CHECK(after.problems == 0 && after.rmap == before.rmap + 100 && after.parent == before.parent + 100);
	CHECK(kmaps_parent_remove(m, 1000, 2, "dir", 3) == 0);
	CHECK(kmaps_parent_paths(m, 1000, 2, &paths) == 0 && paths == 0);
	CHECK(kmaps_rmap_unmap(m, 5000, 8, 8, 0) == 0);
	CHECK(kmaps_refcount_adjust(m, 5000, 8, -1) == 0);
	CHECK(kmaps_refcount_get(m, 5001, &after.count) == 0 && after.count == 1);
	CHECK(kmaps_commit(m) == 0);
	CHECK(kmaps_verify(m, &problems) == 0 && problems == 0);

	kmaps_destroy(m);
	CHECK(kshim_kmalloc_live() == 0);
	kshim_unmount(sb);
	printf("kernel shim: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
