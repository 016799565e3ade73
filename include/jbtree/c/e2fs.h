/* SPDX-License-Identifier: MIT */
/*
 * jbtree/c/e2fs.h: the maps `jbtree-e2fs build` stores in an ext4 image
 * (inode 5, docs/format.md section 8), from C, on a libext2fs ext2_filsys.
 * What debugfs and e2fsck call (contrib/e2fsprogs/, docs/e2fsprogs.md).
 *
 *   jbt_e2fs_maps *m;
 *   char why[256];
 *   int e = jbt_e2fs_open(fs, 0, &m, why, sizeof why);
 *   if (e == JBT_E2FS_ABSENT) ...          no maps stored
 *   jbt_e2fs_owners(m, block, 1, print_owner, ctx);
 *   jbt_e2fs_close(m);
 *
 * The implementation is C++ compiled in ONE translation unit of the
 * program, with exceptions and RTTI off (it refuses to compile otherwise)
 * and no C++ runtime needed at link time: a C program links it with its C
 * compiler driver and libext2fs, libcom_err and libc only.
 *
 *   // jbtree_e2fs.cpp, built: g++ -std=c++20 -fno-exceptions -fno-rtti -c
 *   #define JBTREE_E2FS_C_IMPLEMENTATION
 *   #include <jbtree/c/detail/e2fs_implementation.hpp>
 *
 * It allocates with malloc (the maps' caches, a scan's records); running
 * out of memory is reported as -ENOMEM where it can be, and aborts the
 * program with a message inside standard containers (as libstdc++ does
 * when built without exceptions).
 *
 * Errors: every int-returning call gives 0 or a negative errno. The ones
 * with a meaning of their own are named below; -EIO (libext2fs failed),
 * -ENOMEM, -EINVAL (a wrong argument) can come from any call.
 */
#ifndef JBTREE_C_E2FS_H
#define JBTREE_C_E2FS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <ext2fs/ext2fs.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EUCLEAN
#define EUCLEAN 117 /* Linux's "structure needs cleaning" (the kernel's EFSCORRUPTED) */
#endif

/* The states of the stored maps, as errors of jbt_e2fs_open() / build. */
#define JBT_E2FS_ABSENT (-ENOENT)       /* no maps stored: inode 5 is unused */
#define JBT_E2FS_FOREIGN (-EEXIST)      /* inode 5 holds something that is not jbtree's map file */
#define JBT_E2FS_NEEDS_REPLAY (-EAGAIN) /* the image's journal needs recovery first (e2fsck, jbtree-e2fs replay) */
#define JBT_E2FS_STALE (-ESTALE)        /* the filesystem changed since the maps were built */
#define JBT_E2FS_CORRUPT (-EUCLEAN)     /* the maps (or what locates them) are damaged */
#define JBT_E2FS_UNSUPPORTED (-EOPNOTSUPP) /* build: no internal journal, no extents, inode 5 foreign */
#define JBT_E2FS_NO_SPACE (-ENOSPC)     /* build: no contiguous free run large enough for the map file */
#define JBT_E2FS_BUSY (-EBUSY)          /* build: mounted, or held by another program */

typedef struct jbt_e2fs_maps jbt_e2fs_maps; /* the stored maps of one open ext2_filsys */
typedef struct jbt_e2fs_scan jbt_e2fs_scan; /* what the maps of a filesystem must contain */

/* ---- opening ---------------------------------------------------------------------------- */

#define JBT_E2FS_OPEN_STALE 0x1u /* open stale maps too (jbt_e2fs_info() says stale) */
#define JBT_E2FS_OPEN_CHECK 0x2u /* for jbt_e2fs_check(): a cache that holds the whole map file (up to
                                    64 MiB), which it reads several times; queries need only a small one */

/*
 * Open the maps stored in `fs` (opened read-only or read-write; nothing is
 * written). JBT_E2FS_ABSENT, JBT_E2FS_FOREIGN, JBT_E2FS_NEEDS_REPLAY,
 * JBT_E2FS_STALE (unless JBT_E2FS_OPEN_STALE), JBT_E2FS_CORRUPT, -EIO.
 * `why` (may be NULL) gets the reason in words, NUL-terminated, cut to
 * why_size. `fs` must stay open until jbt_e2fs_close().
 */
int jbt_e2fs_open(ext2_filsys fs, unsigned flags, jbt_e2fs_maps **out, char *why, size_t why_size);
void jbt_e2fs_close(jbt_e2fs_maps *m); /* NULL is fine */

struct jbt_e2fs_info {
	uint64_t rmap_records, refcount_records, parent_records;
	uint64_t first_block, blocks; /* the map file: one run of blocks */
	uint64_t built_at;            /* seconds since the epoch */
	int stale;                    /* 1: the filesystem changed since the build */
};
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow" /* C++: the function shares its struct's name, as C allows */
#endif
void jbt_e2fs_info(const jbt_e2fs_maps *m, struct jbt_e2fs_info *out);
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* After a call on `m` failed: what failed, in words, naming the map, the
 * block of a damaged node and the check it failed. "" if none did. */
const char *jbt_e2fs_last_error(const jbt_e2fs_maps *m);

/* ---- queries ------------------------------------------------------------------------------
 * Callbacks return 0 to go on, anything else to stop (the call then
 * returns 0). Queries read the stored maps only: a damaged node gives
 * JBT_E2FS_CORRUPT (or -EIO) and jbt_e2fs_last_error() names it. */

/* Owners that are not inodes (rmap_owner in docs/maps.md; the same values). */
#define JBT_E2FS_OWNER_FS (~0ull - 1)           /* superblocks and group descriptors (block 0 at 1 KiB) */
#define JBT_E2FS_OWNER_RESERVED_GDT (~0ull - 2) /* the resize inode's blocks */
#define JBT_E2FS_OWNER_BITMAPS (~0ull - 3)      /* block and inode bitmaps */
#define JBT_E2FS_OWNER_INODE_TABLE (~0ull - 4)  /* inode tables */
#define JBT_E2FS_OWNER_JOURNAL (~0ull - 5)      /* the journal inode's blocks */
#define JBT_E2FS_OWNER_JBTREE (~0ull - 6)       /* the map file itself */
#define JBT_E2FS_OWNER_UNKNOWN (~0ull - 7)      /* the bad-blocks inode, the MMP block */

/* Record flags (jbt_e2fs_owner.flags; jbt_e2fs_scan_blocks()'s flags; the rmap's values). */
#define JBT_E2FS_XATTR 0x1u     /* the owner's extended-attribute block (no offset) */
#define JBT_E2FS_TREE 0x2u      /* an extent-tree or indirect block of the owner (no offset) */
#define JBT_E2FS_UNWRITTEN 0x4u /* an unwritten (preallocated) extent */

struct jbt_e2fs_owner {
	uint64_t start, length; /* the record's blocks */
	uint64_t owner;         /* an inode number or a JBT_E2FS_OWNER_* */
	uint64_t offset;        /* logical block of `start` in the owner's file (data records) */
	uint32_t flags;         /* JBT_E2FS_UNWRITTEN, _TREE, _XATTR */
};
typedef int (*jbt_e2fs_owner_fn)(void *ctx, const struct jbt_e2fs_owner *o);

/* Every record owning a block of [block, block + count), in key order
 * (start, owner, offset); count >= 1. */
int jbt_e2fs_owners(jbt_e2fs_maps *m, uint64_t block, uint64_t count, jbt_e2fs_owner_fn fn, void *ctx);

/* The name of a special owner ("<journal>", "<inode table>", ...), NULL for an inode. */
const char *jbt_e2fs_owner_name(uint64_t owner);

/* Every path of inode `ino` from the root ("/a/b"), one call each; paths
 * through cycles or deeper than 256 names are skipped. */
typedef int (*jbt_e2fs_path_fn)(void *ctx, const char *path, size_t len);
int jbt_e2fs_paths(jbt_e2fs_maps *m, uint32_t ino, jbt_e2fs_path_fn fn, void *ctx);

/* The reference count of each block of [block, block + count) in maximal
 * stretches: 0 for blocks no file's data uses, 1 for a block one data
 * record owns, >= 2 for shared (reflinked) blocks. Checked against the
 * rmap: a disagreement is JBT_E2FS_CORRUPT. */
typedef int (*jbt_e2fs_refcount_fn)(void *ctx, uint64_t start, uint64_t length, uint32_t refcount);
int jbt_e2fs_refcount(jbt_e2fs_maps *m, uint64_t block, uint64_t count, jbt_e2fs_refcount_fn fn, void *ctx);

/* ---- what the maps must contain --------------------------------------------------------- */

/*
 * A scan: the records the maps of `fs` must hold. Either the library scans
 * the filesystem itself (jbt_e2fs_scan_filesystem), or a program that
 * walks every inode anyway (e2fsck's pass 1 and 2) hands over what it sees:
 *
 *   jbt_e2fs_scan_new(fs, &s);             static metadata (superblocks,
 *                                          descriptors, bitmaps, inode
 *                                          tables, MMP) is added here
 *   jbt_e2fs_scan_inode(s, ino, &inode);   each inode in use, once, before
 *                                          its blocks: 1 if the maps hold
 *                                          it, 0 if not (no link; its
 *                                          blocks are then ignored)
 *   jbt_e2fs_scan_blocks(s, ino, lblk, pblk, len, flags);
 *                                          its data extents (flags 0 or
 *                                          UNWRITTEN), tree blocks (TREE),
 *                                          xattr block (XATTR), any order
 *                                          and any size; -ERANGE outside
 *                                          the filesystem, -EINVAL bad
 *                                          flags or len 0
 *   jbt_e2fs_scan_link(s, dir, ino, name, len);
 *                                          each directory entry but "."
 *                                          and ".."
 *
 * Blocks of the journal, resize, bad-blocks inodes and of jbtree's map
 * file get their special owners here; pieces are merged as the library's
 * own scan merges them, so both give the same records. Once a scan was
 * given to jbt_e2fs_check() or jbt_e2fs_build() nothing more can be added
 * (-EINVAL); jbt_e2fs_check() leaves it as it is, jbt_e2fs_build() uses
 * it up (free it after).
 */
int jbt_e2fs_scan_new(ext2_filsys fs, jbt_e2fs_scan **out);
int jbt_e2fs_scan_filesystem(ext2_filsys fs, jbt_e2fs_scan **out); /* JBT_E2FS_CORRUPT: damage found */
void jbt_e2fs_scan_free(jbt_e2fs_scan *s);                         /* NULL is fine */
int jbt_e2fs_scan_inode(jbt_e2fs_scan *s, uint32_t ino, const struct ext2_inode *inode);
int jbt_e2fs_scan_blocks(jbt_e2fs_scan *s, uint32_t ino, uint64_t lblk, uint64_t pblk, uint64_t len, unsigned flags);
int jbt_e2fs_scan_link(jbt_e2fs_scan *s, uint32_t dir, uint32_t ino, const char *name, size_t len);

/* ---- checking ----------------------------------------------------------------------------- */

enum jbt_e2fs_problem_kind {
	JBT_E2FS_PROBLEM_STALE = 1,      /* the filesystem changed since the build */
	JBT_E2FS_PROBLEM_DAMAGED,        /* a tree fails verification, or cannot be read */
	JBT_E2FS_PROBLEM_VOLUME,         /* the maps' volume accounts its blocks wrongly */
	JBT_E2FS_PROBLEM_FREE_BUT_OWNED, /* an owned block is free in the block bitmap */
	JBT_E2FS_PROBLEM_RMAP_MISSING,   /* filesystem extents the rmap lacks */
	JBT_E2FS_PROBLEM_RMAP_EXTRA,     /* rmap records the filesystem does not have */
	JBT_E2FS_PROBLEM_REFCOUNT,       /* refcount stretches that disagree with the rmap */
	JBT_E2FS_PROBLEM_PARENT          /* parent pointers that disagree with the directories */
};
struct jbt_e2fs_problem {
	enum jbt_e2fs_problem_kind kind;
	uint64_t count;   /* how many records / stretches (1 for STALE, DAMAGED, VOLUME) */
	const char *text; /* in words, with the first instance; valid during the call */
};
typedef void (*jbt_e2fs_problem_fn)(void *ctx, const struct jbt_e2fs_problem *p);

struct jbt_e2fs_check_result {
	unsigned problems;   /* problem reports made (0: the maps are exact) */
	int stale, damaged;  /* 1 if such a problem was found */
	uint64_t rmap_missing, rmap_extra, refcount_mismatches, parent_mismatches;
};

/*
 * Check the maps against `scan` (NULL: scan the filesystem now): the trees
 * verify, the volume's accounting, every owned block in use in the bitmap
 * (fs->block_map is read if not loaded), rmap both ways, refcount against
 * the rmap, parent pointers against the directory entries. Each problem is
 * reported to `fn` (may be NULL); `out` (may be NULL) gets the summary.
 * Returns 0 when the check ran (clean or not), or the error that stopped
 * it. Open the maps with JBT_E2FS_OPEN_STALE to check stale ones.
 */
int jbt_e2fs_check(jbt_e2fs_maps *m, jbt_e2fs_scan *scan, jbt_e2fs_problem_fn fn, void *ctx,
		   struct jbt_e2fs_check_result *out);

/* ---- building -------------------------------------------------------------------------- */

struct jbt_e2fs_build_result {
	uint64_t rmap_records, refcount_records, parent_records;
	uint64_t first_block, blocks; /* the new map file */
	int replaced;                 /* 1: an older map file was replaced */
};

/*
 * Build the maps from `scan` (NULL: scan now) and store them in `fs`
 * (opened read-write with its bitmaps as they must be), replacing older
 * ones, through the image's jbd2 journal in one transaction, as
 * `jbtree-e2fs build` does (docs/e2fsprogs.md). On return the journal is
 * empty again and `fs` is flushed and still open: close it without
 * changing it further, or the maps read as stale (a later superblock write
 * changes what the build stamp recorded). JBT_E2FS_UNSUPPORTED,
 * JBT_E2FS_NEEDS_REPLAY, JBT_E2FS_CORRUPT (the filesystem has errors, is
 * not clean, or an owned block is free in the bitmap), JBT_E2FS_NO_SPACE
 * (found before anything is written), -EIO. A failure after the commit
 * leaves the build in the journal, replayed by e2fsck or the kernel.
 */
int jbt_e2fs_build(ext2_filsys fs, jbt_e2fs_scan *scan, struct jbt_e2fs_build_result *out, char *why,
		   size_t why_size);

/* ---- keeping a live stamp across a journal replay -----------------------------------------
 * The patched kernel keeps the maps current under a live stamp, which names
 * the mount by what it wrote into the superblock. A tool that replays the
 * journal after a crash (e2fsck) writes the superblock afterwards, so the
 * maps would read as stale although the replay changed nothing the journal
 * did not. Such a tool takes the replayed state before its own writes and,
 * when it changed nothing the maps describe (no orphan inode released),
 * carries the stamp after its last superblock write, as `jbtree-e2fs
 * replay` does (docs/e2fsprogs.md, "After a crash"). */

/* A filesystem's state as the maps' stamp names it (opaque). */
struct jbt_e2fs_state {
	unsigned char opaque[64];
};

/* The state of `fs` as libext2fs holds it now (superblock, group descriptors). */
void jbt_e2fs_state_of(ext2_filsys fs, struct jbt_e2fs_state *out);

/* 1: the maps stored in `fs` were current in `state` (a full stamp equal to
 * it, or a live stamp naming its mount); 0: they were not, or none are
 * stored (or their volume superblock is damaged); -EIO, -ENOMEM. */
int jbt_e2fs_current_in(ext2_filsys fs, const struct jbt_e2fs_state *state);

/*
 * If the maps carry a live stamp current in `before`, and the group
 * descriptors are as they were then (no block or inode freed or allocated
 * since), move the stamp to the state `fs` is in now. `fs`: opened
 * read-write after the tool's last superblock write, with nothing changed
 * since (-EINVAL if it has unwritten changes). Returns 1 when carried:
 * `fs` is then left read-only and ext2fs_close_free() writes nothing (a
 * superblock write would make the maps stale again). 0: left alone, `fs`
 * as it was (no maps, a full stamp, a stamp not current in `before`,
 * group descriptors changed). -EIO, -ENOMEM, -EINVAL.
 */
int jbt_e2fs_carry_live_stamp(ext2_filsys fs, const struct jbt_e2fs_state *before);

#ifdef __cplusplus
}
#endif

#endif /* JBTREE_C_E2FS_H */
