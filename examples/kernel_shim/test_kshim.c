/* SPDX-License-Identifier: MIT */
/*
 * The three maps driven through kglue.h's user-space model (kshim.c), from
 * C, with the model enforcing jbd2's rules (revoke credits, forget vs
 * revoke, uptodate new blocks, no rollback on abort). Checked:
 *   - the maps never break a rule (kshim_rule_violations stays 0), through
 *     growth and shrinking (node frees: forgets and revokes);
 *   - the model does catch the violations it claims to (double revoke, no
 *     revoke credits, forget of an old block);
 *   - a failure before anything is dirtied (allocation of the handle, a
 *     read error while planning) returns cleanly and aborts nothing;
 *   - a failure after (a read error mid-change, a write error at commit)
 *     aborts the journal: later calls give -EROFS, and after a remount the
 *     maps reopened from their committed roots verify clean and equal the
 *     last commit;
 *   - changes inside a caller's handle extend it, and a long refcount
 *     adjust restarts it between steps.
 * Prints the worst-case credits per call (docs/kernel.md). Exit 0 only if
 * every check passed.
 */
#include "kmaps.h"
#include "kshim.h"

#include <errno.h>
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

#define SEED 0x1234u

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

/* The reboot after an abort: the maps reopened from their anchor block on
 * a remounted filesystem verify clean and, if `want` is given, equal it
 * (a change spanning several transactions may have committed in part). */
static void reboot(struct kglue_fs *fs, struct kmaps **m, const struct snapshot *want)
{
	uint64_t problems = 1;
	uint64_t anchor = kmaps_anchor_block(*m);
	kmaps_destroy(*m);
	*m = NULL;
	CHECK(kshim_remount(fs) == 0);
	CHECK(kmaps_open(fs, SEED, anchor, m) == 0);
	if (!*m)
		return;
	CHECK(kmaps_verify(*m, &problems) == 0 && problems == 0);
	if (want)
		CHECK(same(take(*m), *want));
}

int main(void)
{
	struct kglue_fs *fs = kshim_mount(4096, 65536, 512, 512);
	struct kmaps *m = NULL;
	struct snapshot before, after;
	struct kmaps_credits cr;
	struct kglue_handle *h;
	uint64_t problems = 1, paths = 0;
	uint64_t owners[4];
	int n = 0, e, k;

	if (!fs)
		return 2;
	CHECK(kmaps_create(fs, SEED, &m) == 0);
	/* /dir (1000) and a shared extent of inodes 7 and 8 */
	CHECK(kmaps_parent_add(m, 1000, 2, 1, "dir", 3) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 8, 7, 0, 0) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 8, 8, 0, 0) == 0);
	CHECK(kmaps_refcount_adjust(m, 5000, 8, +1) == 0);
	CHECK(kmaps_rmap_map(m, 5000, 1, 7, 0, 0) == -EEXIST); /* nothing changes */
	CHECK(kmaps_parent_add(m, 1000, 2, 1, "a/b", 3) == -EINVAL);
	CHECK(fill(m, 100000, 3000) == 0);
	CHECK(kmaps_commit(m) == 0);
	CHECK(kmaps_verify(m, &problems) == 0 && problems == 0);
	CHECK(kmaps_rmap_owners(m, 5003, owners, 4, &n) == 0 && n == 2);
	CHECK(kmaps_parent_paths(m, 1000, 2, &paths) == 0 && paths == 1);
	kmaps_get_credits(m, &cr);
	printf("worst-case credits at these heights: rmap map %u, parent add %u, parent remove %u, refcount step %u\n",
	       cr.rmap_map, cr.parent_add, cr.parent_remove, cr.refcount_step);

	/* Shrinking frees nodes: created-in-this-transaction ones are forgotten,
	 * older ones revoked, within the revoke credits. */
	{
		int i;
		char name[32];
		e = 0;
		for (i = 0; i < 1500 && !e; ++i) {
			e = kmaps_rmap_unmap(m, 100000 + (uint64_t)i * 4, 3, 100 + (uint64_t)i, 0);
			if (!e)
				e = kmaps_refcount_adjust(m, 100000 + (uint64_t)i * 4, 2, -1);
			if (!e) {
				snprintf(name, sizeof name, "file-100000-%d", i);
				e = kmaps_parent_remove(m, 100 + (uint64_t)i, 1000, name, strlen(name));
			}
		}
		CHECK(e == 0);
		CHECK(fill(m, 600000, 300) == 0); /* grow and shrink in one transaction */
		for (i = 0; i < 300 && !e; ++i)
			e = kmaps_rmap_unmap(m, 600000 + (uint64_t)i * 4, 3, 100 + (uint64_t)i, 0);
		CHECK(e == 0);
		CHECK(kmaps_commit(m) == 0);
		CHECK(kmaps_verify(m, &problems) == 0 && problems == 0);
	}
	CHECK(kshim_rule_violations(fs) == 0);

	/* The model catches what it claims to. */
	h = kglue_start(fs, 4, 1, &e);
	CHECK(h != NULL);
	if (h) {
		long v = kshim_rule_violations(fs);
		CHECK(kglue_revoke(h, 60000) == 0);
		CHECK(kglue_revoke(h, 60000) == -EIO);    /* twice */
		CHECK(kglue_revoke(h, 60001) == -EIO);    /* no revoke credit left */
		CHECK(kglue_forget(h, 60002) == -EINVAL); /* not created in this transaction */
		CHECK(kshim_rule_violations(fs) == v + 3);
		CHECK(kglue_stop(h) == 0);
		CHECK(kmaps_commit(m) == 0);
	}
	before = take(m);

	/* 1. The handle's allocation fails: -ENOMEM, nothing dirtied, no abort. */
	kshim_fail_alloc_after(1);
	CHECK(kmaps_rmap_map(m, 400000, 3, 777, 0, 0) == -ENOMEM);
	kshim_fail_alloc_after(0);
	CHECK(kglue_aborted(fs) == 0);
	CHECK(same(take(m), before));

	/* 2. Disk read errors in changes (caches dropped, so nodes come from
	 *    the disk): the k-th read of a change fails. Before anything is
	 *    dirtied that is a clean -EIO; after, the journal is aborted and
	 *    the reboot finds the last commit. */
	{
		int clean = 0, aborted = 0;
		for (k = 1; k <= 12; ++k) {
			CHECK(kmaps_commit(m) == 0);
			before = take(m);
			kshim_drop_caches(fs);
			kshim_fail_read_after(fs, k);
			/* 10 records of the 1,500 left: one handle */
			e = kmaps_refcount_adjust(m, 106000, 40, +1);
			kshim_fail_read_after(fs, 0);
			if (e == 0) {
				CHECK(kmaps_refcount_adjust(m, 106000, 40, -1) == 0);
				continue;
			}
			CHECK(e == -EIO);
			if (kglue_aborted(fs)) {
				++aborted;
				CHECK(kmaps_rmap_map(m, 1, 1, 9, 0, 0) == -EROFS);
				reboot(fs, &m, &before);
			} else {
				++clean;
				CHECK(same(take(m), before));
			}
		}
		printf("read errors: %d clean refusals, %d journal aborts\n", clean, aborted);
		CHECK(clean + aborted >= 1);
	}
	if (!m)
		return 1;

	/* 2b. The filesystem runs out of blocks for the maps' nodes in the k-th
	 *     allocation of a series of changes: a change that dirtied nothing
	 *     yet returns -ENOSPC cleanly (the maps stay valid); one that had
	 *     (an insert's split after assigns in the same adjust) aborts the
	 *     journal, and the reboot finds the last commit, valid. */
	{
		int clean = 0, aborted = 0, i;
		e = 0;
		for (i = 0; i < 600 && !e; ++i) /* records of 2 blocks, 2 apart */
			e = kmaps_refcount_adjust(m, 900000 + (uint64_t)i * 4, 2, +1);
		CHECK(e == 0);
		for (k = 1; k <= 6; ++k) {
			CHECK(kmaps_commit(m) == 0);
			before = take(m);
			/* over records and gaps: assigns, then inserts that split */
			kshim_fail_new_block_after(fs, k);
			e = kmaps_refcount_adjust(m, 900000, 2400, +1);
			kshim_fail_new_block_after(fs, 0);
			if (e == 0) {
				CHECK(kmaps_refcount_adjust(m, 900000, 2400, -1) == 0);
				continue;
			}
			CHECK(e == -ENOSPC);
			if (kglue_aborted(fs)) {
				++aborted;
				CHECK(kmaps_parent_add(m, 9, 1000, 1, "x", 1) == -EROFS);
				reboot(fs, &m, NULL); /* the adjust spans transactions */
				if (!m)
					return 1;
			} else {
				++clean;
				CHECK(kmaps_verify(m, &problems) == 0 && problems == 0);
			}
		}
		printf("no space for a node: %d clean refusals, %d journal aborts\n", clean, aborted);
		CHECK(aborted >= 1);
	}
	if (!m)
		return 1;
	CHECK(kmaps_commit(m) == 0);
	before = take(m);

	/* 3. A disk write error at commit: the journal is aborted, later calls
	 *    give -EROFS, the reboot finds the last commit. */
	CHECK(fill(m, 300000, 100) == 0);
	kshim_fail_write_after(fs, 3);
	CHECK(kmaps_commit(m) == -EIO);
	kshim_fail_write_after(fs, 0);
	CHECK(kglue_aborted(fs) == -EROFS);
	CHECK(kmaps_rmap_map(m, 1, 1, 9, 0, 0) == -EROFS);
	CHECK(kmaps_verify(m, &problems) == -EROFS);
	reboot(fs, &m, &before);
	if (!m)
		return 1;

	/* 4. Inside a caller's handle: a map extends a handle that is too
	 *    small; a long fragmented refcount adjust restarts it between steps. */
	h = kglue_start(fs, 1, 1, &e);
	CHECK(h != NULL);
	if (h) {
		CHECK(kmaps_rmap_map_in(m, h, 700000, 4, 4242, 0, 0) == 0);
		CHECK(kmaps_parent_add_in(m, h, 4242, 1000, 1, "in-handle", 9) == 0);
		CHECK(kmaps_refcount_adjust_in(m, h, 100000, 3000 * 4, +1) == 0); /* 3000 records, 3000 gaps */
		CHECK(kmaps_refcount_adjust_in(m, h, 100000, 3000 * 4, -1) == 0);
		CHECK(kmaps_rmap_unmap_in(m, h, 700000, 4, 4242, 0) == 0);
		CHECK(kmaps_parent_remove_in(m, h, 4242, 1000, "in-handle", 9) == 0);
		CHECK(kglue_stop(h) == 0);
	}
	CHECK(kmaps_commit(m) == 0);
	CHECK(same(take(m), before));

	/* And the maps go on working. */
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
	CHECK(kshim_rule_violations(fs) == 3); /* only the three provoked above */

	kmaps_destroy(m);
	CHECK(kshim_alloc_live() == 0);
	kshim_unmount(fs);
	printf("kernel shim: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
