/* SPDX-License-Identifier: MIT */
/*
 * The kernel side of kglue.h: what an embedder (an ext4 patch, a test
 * module) fills in to give jbtree's maps a filesystem. Only kernel C code
 * includes this; kmaps.cpp never sees it.
 */
#ifndef KMAPS_LINUX_H
#define KMAPS_LINUX_H

#include <linux/fs.h>
#include <linux/jbd2.h>
#include <linux/types.h>

#include "kglue.h"
#include "kmaps.h"

struct kglue_fs {
	struct super_block *sb; /* blocks are read through its buffer cache */
	journal_t *journal;     /* and changed through its jbd2 journal */
	/*
	 * The filesystem's allocator for the maps' own blocks, called in the
	 * current task's running handle (ext4: ext4_new_meta_blocks and
	 * ext4_free_blocks(..., EXT4_FREE_BLOCKS_METADATA), whose bitmap
	 * changes then commit with the tree change). A block freed in the
	 * running transaction must not be handed out before it commits.
	 */
	int (*new_block)(struct kglue_fs *fs, handle_t *handle, u64 *blk);
	void (*free_block)(struct kglue_fs *fs, handle_t *handle, u64 blk);
	void *private_data;
	/* Set by kglue_set_sealer (zeroed by the filesystem side): the jbd2
	 * frozen trigger that seals a changed node once per commit. */
	struct jbd2_buffer_trigger_type seal_trigger;
	void (*seal)(void *ctx, unsigned char *data, size_t size);
	void *seal_ctx;
};

#endif
