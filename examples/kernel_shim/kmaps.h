/* SPDX-License-Identifier: MIT */
/*
 * kmaps: jbtree's three maps behind the kernel-style shim (kshim.h), as C
 * functions, the way ext4 code would call them. Implemented in kmaps.cpp,
 * compiled freestanding (no exceptions, RTTI, thread-safe statics, unwind
 * tables or C++ runtime). Every call returns 0 or a negative errno.
 *
 * Each change runs in one jbd2-like handle of exactly its credits. A change
 * that fails for lack of memory or an I/O error after it may have started
 * changing blocks aborts the running transaction (jbd2_journal_abort: back
 * to the last commit, the maps reopened from their committed roots) and
 * returns its error; a logical failure (-EINVAL, -ENOENT, -EEXIST) changes
 * nothing and aborts nothing.
 */
#ifndef KMAPS_H
#define KMAPS_H

#include <stddef.h>
#include <stdint.h>

#include "kshim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kmaps;

/* New, empty maps on sb, changed through journal; node checksums seeded
 * with `seed`. Memory: one kmalloc(GFP_NOFS) for the maps and their paths
 * buffer. */
int kmaps_create(struct super_block *sb, journal_t *journal, uint32_t seed, struct kmaps **out);
void kmaps_destroy(struct kmaps *m);

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

/* Every tree verified: *problems structural and record problems. */
int kmaps_verify(struct kmaps *m, uint64_t *problems);
/* Record counts. */
void kmaps_sizes(struct kmaps *m, uint64_t *rmap, uint64_t *refcount, uint64_t *parent);

/* jbd2_journal_force_commit; on failure the transaction is aborted as above. */
int kmaps_commit(struct kmaps *m);

/* Worst-case credits of one call at the trees' current heights (the
 * figures docs/kernel.md quotes); refcount_step is per step of an adjust. */
struct kmaps_credits {
	uint32_t rmap_map, parent_add, parent_remove, refcount_step;
};
void kmaps_get_credits(struct kmaps *m, struct kmaps_credits *c);

#ifdef __cplusplus
}
#endif

#endif
