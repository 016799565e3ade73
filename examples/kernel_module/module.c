// SPDX-License-Identifier: MIT
/*
 * jbtree_kmaps: jbtree's rmap, refcount and parent-pointer maps for a
 * filesystem that journals through jbd2 (docs/kernel.md). The module
 * exports the kmaps_* calls of kmaps.h; a filesystem fills a struct
 * kglue_fs (kmaps_linux.h) with its super_block, journal and allocator.
 */
#include <linux/module.h>

#include "kmaps_linux.h"

EXPORT_SYMBOL(kmaps_create);
EXPORT_SYMBOL(kmaps_open);
EXPORT_SYMBOL(kmaps_destroy);
EXPORT_SYMBOL(kmaps_anchor_block);
EXPORT_SYMBOL(kmaps_rmap_map);
EXPORT_SYMBOL(kmaps_rmap_unmap);
EXPORT_SYMBOL(kmaps_rmap_owners);
EXPORT_SYMBOL(kmaps_refcount_adjust);
EXPORT_SYMBOL(kmaps_refcount_get);
EXPORT_SYMBOL(kmaps_parent_add);
EXPORT_SYMBOL(kmaps_parent_remove);
EXPORT_SYMBOL(kmaps_parent_paths);
EXPORT_SYMBOL(kmaps_rmap_map_in);
EXPORT_SYMBOL(kmaps_rmap_unmap_in);
EXPORT_SYMBOL(kmaps_refcount_adjust_in);
EXPORT_SYMBOL(kmaps_parent_add_in);
EXPORT_SYMBOL(kmaps_parent_remove_in);
EXPORT_SYMBOL(kmaps_verify);
EXPORT_SYMBOL(kmaps_sizes);
EXPORT_SYMBOL(kmaps_commit);
EXPORT_SYMBOL(kmaps_get_credits);

static int __init jbtree_kmaps_init(void)
{
	pr_info("jbtree_kmaps: rmap, refcount and parent-pointer maps available\n");
	return 0;
}

static void __exit jbtree_kmaps_exit(void)
{
}

module_init(jbtree_kmaps_init);
module_exit(jbtree_kmaps_exit);
MODULE_DESCRIPTION("jbtree: journaled B+tree reverse maps for jbd2 filesystems");
MODULE_LICENSE("Dual MIT/GPL");
