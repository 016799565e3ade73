/* SPDX-License-Identifier: MIT */
/*
 * kshim: a user-space model of the kernel behind kglue.h, over a RAM disk,
 * for tests (docs/kernel.md). It implements every kglue_* function and
 * enforces the jbd2 rules a real kernel would (so a test catches a
 * violation the real one would only WARN about, or corrupt on):
 *   - handles carry buffer credits and revoke credits; joining a block
 *     uses a buffer credit, a revoke a revoke credit (none left: -EIO, as
 *     jbd2_journal_revoke's WARN_ON_ONCE path);
 *   - get_create_access only on a block that is uptodate and unlocked (as
 *     kglue_new_block leaves it);
 *   - kglue_forget only for a block created in the running transaction;
 *     kglue_revoke only for one that was not, at most once per block and
 *     transaction;
 *   - an abort rolls nothing back: every later change fails with -EROFS,
 *     the disk keeps the last commit, and kshim_remount() is the reboot
 *     (the cache is dropped, dirty buffers included).
 * A block freed in the running transaction is never handed out again
 * before it commits (replay could still need its old contents).
 */
#ifndef KSHIM_H
#define KSHIM_H

#include <stddef.h>
#include <stdint.h>

#include "kglue.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A RAM disk of `blocks` blocks, a buffer cache of `cache_buffers`, and a
 * journal whose transactions hold at most `max_transaction_credits`. */
struct kglue_fs *kshim_mount(uint32_t block_size, uint64_t blocks, uint32_t cache_buffers,
			     int max_transaction_credits);
void kshim_unmount(struct kglue_fs *fs);
/* Evict every clean, unreferenced buffer (the next reads come from disk). */
void kshim_drop_caches(struct kglue_fs *fs);
/* After an abort (or to model a crash): the cache is dropped, dirty
 * buffers included, the allocator returns to the last commit, the journal
 * accepts changes again. Buffers still referenced: -EBUSY. */
int kshim_remount(struct kglue_fs *fs);

/* Fault injection: the n-th next allocation / disk read / commit write
 * fails (n = 1: the very next); 0 switches it off. */
void kshim_fail_alloc_after(long n);
void kshim_fail_read_after(struct kglue_fs *fs, long n);
void kshim_fail_write_after(struct kglue_fs *fs, long n);
void kshim_fail_new_block_after(struct kglue_fs *fs, long n); /* -ENOSPC */
long kshim_alloc_live(void); /* kglue_alloc'd blocks not freed */
/* Violations of the rules above seen so far (each also returned an error). */
long kshim_rule_violations(struct kglue_fs *fs);

#ifdef __cplusplus
}
#endif

#endif
