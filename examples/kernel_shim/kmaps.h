/* SPDX-License-Identifier: MIT */
/*
 * kmaps: jbtree's three maps as C functions, the way ext4 code would call
 * them. Implemented in kmaps.cpp, which sees the kernel only through
 * kglue.h (opaque types, plain C calls): built with the kernel's own
 * code-generation flags into a module (examples/kernel_module/), or with
 * ordinary flags over the user-space model (kshim.c) for tests. Every call
 * returns 0 or a negative errno.
 *
 * Two ways to change the maps:
 *   - kmaps_X(m, ...): in a handle of its own, of exactly its credits;
 *   - kmaps_X_in(m, h, ...): inside the caller's running handle (ext4's),
 *     extended first if it has too few credits (jbd2_journal_extend); a
 *     refcount adjust over a long range extends or restarts the handle
 *     between steps (jbd2_journal_restart), as ext4's truncate does.
 *
 * Failures: a logical one (-EINVAL, -ENOENT, -EEXIST) and any failure
 * before the first block is dirtied (-ENOMEM, -EIO, -ENOSPC while
 * planning) change nothing and abort nothing. A failure after a block was
 * dirtied aborts the journal (jbd2_journal_abort, as ext4 does): nothing is
 * rolled back in memory, the disk keeps the last commit, and every further
 * call on these maps returns -EROFS. Reopen them (kmaps_open) after the
 * filesystem is remounted.
 *
 * Where the trees are (their roots, heights and record counts) lives in
 * one anchor block, rewritten in the same handle as every change that
 * moves a root, so whatever commits (kmaps_commit, or the journal on its
 * own) commits trees and anchors together. Each change reserves one
 * credit more than its trees need, for that block.
 */
#ifndef KMAPS_H
#define KMAPS_H

#include "kglue.h" /* also the integer types, kernel or user space */

#ifdef __cplusplus
extern "C" {
#endif

struct kmaps;

/* New, empty maps on fs (their anchor block allocated and written in a
 * handle of their own), or the maps whose anchor block is `anchor_block`;
 * node checksums seeded with `seed`. Memory: one kglue_alloc (kmalloc
 * GFP_NOFS) for the maps, their path buffer and verify reports. An anchor
 * block that is not one (magic, checksum, block number): -EUCLEAN. */
int kmaps_create(struct kglue_fs *fs, uint32_t seed, struct kmaps **out);
int kmaps_open(struct kglue_fs *fs, uint32_t seed, uint64_t anchor_block, struct kmaps **out);
void kmaps_destroy(struct kmaps *m);
/* Where the filesystem records the maps (e.g. a superblock field). */
uint64_t kmaps_anchor_block(const struct kmaps *m);

int kmaps_rmap_map(struct kmaps *m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset, uint32_t flags);
int kmaps_rmap_unmap(struct kmaps *m, uint64_t start, uint64_t len, uint64_t owner, uint64_t offset);
/* Owners of one block: up to `max` into owners[], the total in *n. */
int kmaps_rmap_owners(struct kmaps *m, uint64_t block, uint64_t *owners, int max, int *n);

int kmaps_refcount_adjust(struct kmaps *m, uint64_t start, uint64_t len, int delta);
int kmaps_refcount_get(struct kmaps *m, uint64_t block, uint32_t *count);

int kmaps_parent_add(struct kmaps *m, uint64_t child, uint64_t parent, uint32_t parent_gen, const char *name,
		     size_t len);
int kmaps_parent_remove(struct kmaps *m, uint64_t child, uint64_t parent, const char *name, size_t len);
/* The number of complete paths from root to ino. */
int kmaps_parent_paths(struct kmaps *m, uint64_t ino, uint64_t root, uint64_t *paths);

/* The same changes inside the caller's running handle. */
int kmaps_rmap_map_in(struct kmaps *m, struct kglue_handle *h, uint64_t start, uint64_t len, uint64_t owner,
		      uint64_t offset, uint32_t flags);
int kmaps_rmap_unmap_in(struct kmaps *m, struct kglue_handle *h, uint64_t start, uint64_t len, uint64_t owner,
			uint64_t offset);
int kmaps_refcount_adjust_in(struct kmaps *m, struct kglue_handle *h, uint64_t start, uint64_t len, int delta);
int kmaps_parent_add_in(struct kmaps *m, struct kglue_handle *h, uint64_t child, uint64_t parent,
			uint32_t parent_gen, const char *name, size_t len);
int kmaps_parent_remove_in(struct kmaps *m, struct kglue_handle *h, uint64_t child, uint64_t parent,
			   const char *name, size_t len);

/* Every tree verified: *problems structural and record problems. The
 * reports live in the kmaps allocation, not on the stack. */
int kmaps_verify(struct kmaps *m, uint64_t *problems);
/* Record counts. */
void kmaps_sizes(struct kmaps *m, uint64_t *rmap, uint64_t *refcount, uint64_t *parent);

/* kglue_force_commit; a failure aborts the journal as above. */
int kmaps_commit(struct kmaps *m);

/* Worst-case credits of one call at the trees' current heights (each call
 * also reserves as many revoke credits); refcount_step is per step of an
 * adjust. */
struct kmaps_credits {
	uint32_t rmap_map, parent_add, parent_remove, refcount_step;
};
void kmaps_get_credits(struct kmaps *m, struct kmaps_credits *c);

#ifdef __cplusplus
}
#endif

#endif
