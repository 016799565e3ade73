/* SPDX-License-Identifier: MIT */
/*
 * The C interface to the maps stored in an ext4 image (jbtree/c/e2fs.h),
 * from C, linked by the C compiler driver without a C++ runtime. Images
 * come from mkfs.ext4 -d; every answer is checked against libext2fs's own
 * view of the image (ext2fs_namei, ext2fs_bmap2, the block bitmap).
 *
 *   test-e2fs_c_api            (needs mkfs.ext4 on PATH; SKIP, exit 77, if absent)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#include "jbtree/c/e2fs.h"

static int checks, failures;
#define CHECK(cond)                                                                                     \
	do {                                                                                            \
		++checks;                                                                               \
		if (!(cond)) {                                                                          \
			++failures;                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
		}                                                                                       \
	} while (0)
#define CHECK_EQ(a, b)                                                                                  \
	do {                                                                                            \
		long long a_ = (long long)(a), b_ = (long long)(b);                                     \
		++checks;                                                                               \
		if (a_ != b_) {                                                                         \
			++failures;                                                                     \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", __FILE__,     \
				__LINE__, #a, a_, #b, b_);                                              \
		}                                                                                       \
	} while (0)

static char dir[256];

static int run(const char *cmd)
{
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "command failed (%d): %s\n", r, cmd);
	return r;
}

/* A tree: dirs, a file with a hard link in another dir, a sparse file. */
static void make_tree(const char *root)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "set -e; mkdir -p %s/d1 %s/d2 %s/d1/sub; head -c 40960 /dev/urandom > %s/d1/a; ln %s/d1/a %s/d2/b; "
		 "head -c 5000 /dev/urandom > %s/d1/sub/c; truncate -s 1M %s/sparse; "
		 "printf 'x' | dd of=%s/sparse bs=1 seek=600000 conv=notrunc status=none; "
		 "for i in $(seq 1 40); do echo $i > %s/d2/f$i; done",
		 root, root, root, root, root, root, root, root, root, root);
	if (run(cmd))
		exit(1);
}

static void make_image(const char *img, const char *extra_opts)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "mkfs.ext4 -q -F -b 4096 %s -d %s/tree %s 32M", extra_opts, dir, img);
	if (run(cmd))
		exit(1);
}

static ext2_filsys open_fs(const char *img, int rw)
{
	ext2_filsys fs = NULL;
	errcode_t e = ext2fs_open2(img, NULL, EXT2_FLAG_64BITS | (rw ? EXT2_FLAG_RW : 0), 0, 0, unix_io_manager, &fs);
	if (e) {
		fprintf(stderr, "ext2fs_open2 %s: %s\n", img, error_message(e));
		exit(1);
	}
	return fs;
}

/* ---- owners / paths / refcount collectors ---------------------------------------------- */

struct owners {
	int n;
	struct jbt_e2fs_owner o[16];
};
static int take_owner(void *ctx, const struct jbt_e2fs_owner *o)
{
	struct owners *w = ctx;
	if (w->n < 16)
		w->o[w->n] = *o;
	w->n++;
	return 0;
}
static int stop_at_first(void *ctx, const struct jbt_e2fs_owner *o)
{
	(void)o;
	++*(int *)ctx;
	return 1;
}

struct paths {
	int n;
	char p[8][256];
};
static int take_path(void *ctx, const char *path, size_t len)
{
	struct paths *w = ctx;
	if (w->n < 8 && len < 256) {
		memcpy(w->p[w->n], path, len);
		w->p[w->n][len] = 0;
	}
	w->n++;
	return 0;
}
static int has_path(const struct paths *w, const char *p)
{
	for (int i = 0; i < w->n && i < 8; i++)
		if (strcmp(w->p[i], p) == 0)
			return 1;
	return 0;
}

struct stretches {
	int n;
	uint64_t start[8], len[8];
	uint32_t count[8];
};
static int take_stretch(void *ctx, uint64_t start, uint64_t len, uint32_t count)
{
	struct stretches *w = ctx;
	if (w->n < 8) {
		w->start[w->n] = start;
		w->len[w->n] = len;
		w->count[w->n] = count;
	}
	w->n++;
	return 0;
}

struct problems {
	int n;
	int kinds[16];
	uint64_t counts[16];
};
static void take_problem(void *ctx, const struct jbt_e2fs_problem *p)
{
	struct problems *w = ctx;
	if (w->n < 16) {
		w->kinds[w->n] = p->kind;
		w->counts[w->n] = p->count;
	}
	w->n++;
	fprintf(stderr, "  (problem reported: %s)\n", p->text);
}
static int has_problem(const struct problems *w, int kind)
{
	for (int i = 0; i < w->n && i < 16; i++)
		if (w->kinds[i] == kind)
			return 1;
	return 0;
}

static ext2_ino_t lookup(ext2_filsys fs, const char *path)
{
	ext2_ino_t ino = 0;
	errcode_t e = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino);
	if (e) {
		fprintf(stderr, "namei %s: %s\n", path, error_message(e));
		exit(1);
	}
	return ino;
}

static blk64_t block_of(ext2_filsys fs, ext2_ino_t ino, blk64_t lblk)
{
	blk64_t p = 0;
	if (ext2fs_bmap2(fs, ino, NULL, NULL, 0, lblk, NULL, &p))
		exit(1);
	return p;
}

/* ---- a scan as e2fsck makes it: every inode, its extents, every entry ------------------- */

struct entry_ctx {
	jbt_e2fs_scan *s;
	ext2_ino_t dir;
	int skip_name; /* drop entries with this name length + first char (a "missed" link) */
	const char *skip;
};
static int feed_entry(ext2_ino_t d, int entry, struct ext2_dir_entry *de, int off, int bs, char *buf, void *priv)
{
	struct entry_ctx *c = priv;
	(void)d, (void)off, (void)bs, (void)buf;
	int len = ext2fs_dirent_name_len(de);
	if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE || de->inode == 0 || len == 0)
		return 0;
	if (c->skip && (size_t)len == strlen(c->skip) && memcmp(de->name, c->skip, (size_t)len) == 0)
		return 0;
	CHECK_EQ(jbt_e2fs_scan_link(c->s, c->dir, de->inode, de->name, (size_t)len), 0);
	return 0;
}

struct block_ctx {
	jbt_e2fs_scan *s;
	ext2_ino_t ino;
};
static int feed_block(ext2_filsys fs, blk64_t *blocknr, e2_blkcnt_t cnt, blk64_t ref, int off, void *priv)
{
	struct block_ctx *c = priv;
	(void)fs, (void)ref, (void)off;
	if (cnt < 0)
		CHECK_EQ(jbt_e2fs_scan_blocks(c->s, c->ino, 0, *blocknr, 1, JBT_E2FS_TREE), 0);
	else
		CHECK_EQ(jbt_e2fs_scan_blocks(c->s, c->ino, (uint64_t)cnt, *blocknr, 1, 0), 0);
	return 0;
}

static jbt_e2fs_scan *collect(ext2_filsys fs, const char *skip_name)
{
	jbt_e2fs_scan *s = NULL;
	CHECK_EQ(jbt_e2fs_scan_new(fs, &s), 0);
	ext2_inode_scan is;
	if (ext2fs_open_inode_scan(fs, 0, &is))
		exit(1);
	ext2_ino_t ino;
	struct ext2_inode inode;
	ext2_ino_t dirs[256];
	int ndirs = 0;
	while (ext2fs_get_next_inode(is, &ino, &inode) == 0 && ino) {
		if (!ext2fs_test_inode_bitmap2(fs->inode_map, ino))
			continue;
		if (jbt_e2fs_scan_inode(s, ino, &inode) != 1)
			continue;
		if (LINUX_S_ISDIR(inode.i_mode) && ndirs < 256)
			dirs[ndirs++] = ino;
		if (!ext2fs_inode_has_valid_blocks2(fs, &inode))
			continue;
		if (inode.i_flags & EXT4_EXTENTS_FL) {
			ext2_extent_handle_t h;
			struct ext2fs_extent x;
			if (ext2fs_extent_open2(fs, ino, &inode, &h))
				exit(1);
			errcode_t e = ext2fs_extent_get(h, EXT2_EXTENT_ROOT, &x);
			for (; e == 0; e = ext2fs_extent_get(h, EXT2_EXTENT_NEXT, &x)) {
				if (x.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT)
					continue;
				if (!(x.e_flags & EXT2_EXTENT_FLAGS_LEAF))
					CHECK_EQ(jbt_e2fs_scan_blocks(s, ino, 0, x.e_pblk, 1, JBT_E2FS_TREE), 0);
				else if (x.e_len)
					CHECK_EQ(jbt_e2fs_scan_blocks(s, ino, x.e_lblk, x.e_pblk, x.e_len,
								      (x.e_flags & EXT2_EXTENT_FLAGS_UNINIT) ? JBT_E2FS_UNWRITTEN : 0),
						 0);
			}
			ext2fs_extent_free(h);
		} else {
			struct block_ctx c = {s, ino};
			if (ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY, NULL, feed_block, &c))
				exit(1);
		}
		blk64_t acl = ext2fs_file_acl_block(fs, &inode);
		if (acl)
			CHECK_EQ(jbt_e2fs_scan_blocks(s, ino, 0, acl, 1, JBT_E2FS_XATTR), 0);
	}
	ext2fs_close_inode_scan(is);
	for (int i = 0; i < ndirs; i++) {
		struct entry_ctx c = {s, dirs[i], 0, skip_name};
		if (ext2fs_dir_iterate2(fs, dirs[i], 0, NULL, feed_entry, &c))
			exit(1);
	}
	return s;
}

/* ---- the tests ------------------------------------------------------------------------- */

static void test_build_and_query(const char *img)
{
	char why[256];
	jbt_e2fs_maps *m = NULL;

	/* No maps yet: ABSENT, with a reason. */
	ext2_filsys fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, 0, &m, why, sizeof why), JBT_E2FS_ABSENT);
	CHECK(m == NULL);
	CHECK(why[0] != 0);
	/* Build on a read-only filesystem: refused, nothing written. */
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), -EINVAL);
	ext2fs_close_free(&fs);

	/* Build as e2fsck would at its end: read-write, its own scan, then close. */
	fs = open_fs(img, 1);
	if (ext2fs_read_bitmaps(fs))
		exit(1);
	jbt_e2fs_scan *s = collect(fs, NULL);
	struct jbt_e2fs_build_result br;
	int r = jbt_e2fs_build(fs, s, &br, why, sizeof why);
	if (r)
		fprintf(stderr, "build: %d %s\n", r, why);
	CHECK_EQ(r, 0);
	CHECK(br.rmap_records > 10);
	CHECK(br.parent_records >= 45);
	CHECK(br.blocks > 0);
	CHECK_EQ(br.replaced, 0);
	CHECK(!(fs->flags & EXT2_FLAG_RW)); /* left read-only: close writes nothing */
	jbt_e2fs_scan_free(s);
	CHECK_EQ(ext2fs_close_free(&fs), 0);

	/* Open: fresh, and every answer agrees with libext2fs. */
	fs = open_fs(img, 0);
	r = jbt_e2fs_open(fs, 0, &m, why, sizeof why);
	if (r)
		fprintf(stderr, "open: %d %s\n", r, why);
	CHECK_EQ(r, 0);
	if (r) {
		ext2fs_close_free(&fs);
		return;
	}
	struct jbt_e2fs_info info;
	jbt_e2fs_info(m, &info);
	CHECK_EQ(info.stale, 0);
	CHECK_EQ(info.rmap_records, br.rmap_records);
	CHECK_EQ(info.parent_records, br.parent_records);
	CHECK_EQ(info.first_block, br.first_block);
	CHECK(info.built_at > 0);

	ext2_ino_t a = lookup(fs, "d1/a"), b = lookup(fs, "d2/b"), sparse = lookup(fs, "sparse");
	CHECK_EQ(a, b);
	blk64_t blk = block_of(fs, a, 3);
	struct owners ow = {0};
	CHECK_EQ(jbt_e2fs_owners(m, blk, 1, take_owner, &ow), 0);
	CHECK_EQ(ow.n, 1);
	CHECK_EQ(ow.o[0].owner, a);
	CHECK_EQ(ow.o[0].flags, 0);
	CHECK_EQ(ow.o[0].offset + (blk - ow.o[0].start), 3); /* logical block 3 of the file */
	CHECK(jbt_e2fs_owner_name(ow.o[0].owner) == NULL);

	/* A sparse file's only block sits at its logical offset. */
	blk64_t sb = block_of(fs, sparse, 600000 / 4096);
	ow.n = 0;
	CHECK_EQ(jbt_e2fs_owners(m, sb, 1, take_owner, &ow), 0);
	CHECK_EQ(ow.n, 1);
	CHECK_EQ(ow.o[0].owner, sparse);
	CHECK_EQ(ow.o[0].offset, 600000 / 4096);

	/* Block 0 of a 4 KiB filesystem: the superblock. */
	ow.n = 0;
	CHECK_EQ(jbt_e2fs_owners(m, 0, 1, take_owner, &ow), 0);
	CHECK_EQ(ow.n, 1);
	CHECK(ow.o[0].owner == JBT_E2FS_OWNER_FS);
	CHECK(jbt_e2fs_owner_name(JBT_E2FS_OWNER_FS) != NULL);
	/* The map file owns its own blocks. */
	ow.n = 0;
	CHECK_EQ(jbt_e2fs_owners(m, info.first_block, 1, take_owner, &ow), 0);
	CHECK_EQ(ow.n, 1);
	CHECK(ow.o[0].owner == JBT_E2FS_OWNER_JBTREE);
	/* A range: the callback may stop early. */
	int seen = 0;
	CHECK_EQ(jbt_e2fs_owners(m, 0, 1000, stop_at_first, &seen), 0);
	CHECK_EQ(seen, 1);
	/* A free block: no owner. */
	blk64_t free_blk = 0;
	if (ext2fs_read_bitmaps(fs) || ext2fs_find_first_zero_block_bitmap2(fs->block_map, 1000, ext2fs_blocks_count(fs->super) - 1, &free_blk))
		exit(1);
	ow.n = 0;
	CHECK_EQ(jbt_e2fs_owners(m, free_blk, 1, take_owner, &ow), 0);
	CHECK_EQ(ow.n, 0);

	struct paths ps = {0};
	CHECK_EQ(jbt_e2fs_paths(m, a, take_path, &ps), 0);
	CHECK_EQ(ps.n, 2);
	CHECK(has_path(&ps, "/d1/a"));
	CHECK(has_path(&ps, "/d2/b"));
	ps.n = 0;
	CHECK_EQ(jbt_e2fs_paths(m, lookup(fs, "d1/sub/c"), take_path, &ps), 0);
	CHECK_EQ(ps.n, 1);
	CHECK(has_path(&ps, "/d1/sub/c"));

	struct stretches st = {0};
	CHECK_EQ(jbt_e2fs_refcount(m, blk, 1, take_stretch, &st), 0);
	CHECK_EQ(st.n, 1);
	CHECK_EQ(st.count[0], 1);
	st.n = 0;
	CHECK_EQ(jbt_e2fs_refcount(m, free_blk, 3, take_stretch, &st), 0);
	CHECK(st.n >= 1);
	CHECK_EQ(st.start[0], free_blk);
	CHECK_EQ(st.count[0], 0);

	/* Bad arguments. */
	CHECK_EQ(jbt_e2fs_owners(m, 0, 0, take_owner, &ow), -EINVAL);
	CHECK_EQ(jbt_e2fs_owners(m, ~0ull, 2, take_owner, &ow), -EINVAL);
	CHECK_EQ(jbt_e2fs_paths(m, 0, take_path, &ps), -EINVAL);
	jbt_e2fs_maps *none = m;
	CHECK_EQ(jbt_e2fs_open(NULL, 0, &none, why, sizeof why), -EINVAL);
	CHECK(none == NULL); /* *out is cleared on every failure */

	/* Check: against a fresh scan, and against a collected one. */
	struct problems pr = {0};
	struct jbt_e2fs_check_result cr;
	CHECK_EQ(jbt_e2fs_check(m, NULL, take_problem, &pr, &cr), 0);
	CHECK_EQ(cr.problems, 0);
	CHECK_EQ(pr.n, 0);
	s = collect(fs, NULL);
	CHECK_EQ(jbt_e2fs_check(m, s, take_problem, &pr, &cr), 0);
	CHECK_EQ(cr.problems, 0);
	jbt_e2fs_scan_free(s);
	/* A scan that lacks one entry ("c"): the extra parent pointer is found. */
	s = collect(fs, "c");
	CHECK_EQ(jbt_e2fs_check(m, s, take_problem, &pr, &cr), 0);
	CHECK_EQ(cr.problems, 1);
	CHECK_EQ(cr.parent_mismatches, 1);
	CHECK(has_problem(&pr, JBT_E2FS_PROBLEM_PARENT));
	jbt_e2fs_scan_free(s);
	/* A scan with a block the maps do not have. */
	pr.n = 0;
	s = collect(fs, NULL);
	CHECK_EQ(jbt_e2fs_scan_blocks(s, a, 1000, free_blk, 1, 0), 0);
	CHECK_EQ(jbt_e2fs_scan_blocks(s, a, 0, ext2fs_blocks_count(fs->super), 1, 0), -ERANGE);
	CHECK_EQ(jbt_e2fs_scan_blocks(s, a, 0, free_blk, 0, 0), -EINVAL);
	CHECK_EQ(jbt_e2fs_check(m, s, take_problem, &pr, &cr), 0);
	CHECK_EQ(cr.rmap_missing, 1);
	CHECK(has_problem(&pr, JBT_E2FS_PROBLEM_RMAP_MISSING));
	CHECK(has_problem(&pr, JBT_E2FS_PROBLEM_FREE_BUT_OWNED));
	jbt_e2fs_scan_free(s);
	jbt_e2fs_close(m);
	ext2fs_close_free(&fs);

	/* Rebuild from the library's own scan: replaces the map file, still fresh after close. */
	fs = open_fs(img, 1);
	CHECK_EQ(jbt_e2fs_build(fs, NULL, &br, why, sizeof why), 0);
	CHECK_EQ(br.replaced, 1);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, 0, &m, why, sizeof why), 0);
	jbt_e2fs_close(m);
	ext2fs_close_free(&fs);
}

/* The state a stamp names, and carrying a live stamp (its live case is
 * exercised by the patched e2fsck, tests/check_e2fsprogs.sh). */
static void test_current_in(const char *img)
{
	char why[256];
	struct jbt_e2fs_state then, now;
	ext2_filsys fs = open_fs(img, 0);

	jbt_e2fs_state_of(fs, &then);
	CHECK_EQ(jbt_e2fs_current_in(fs, &then), 1); /* maps just built: current */
	CHECK_EQ(jbt_e2fs_current_in(NULL, &then), -EINVAL);
	CHECK_EQ(jbt_e2fs_current_in(fs, NULL), -EINVAL);
	CHECK_EQ(jbt_e2fs_carry_live_stamp(fs, &then), -EINVAL); /* opened read-only */
	ext2fs_close_free(&fs);

	/* A superblock write: current in the state before it, not after. */
	fs = open_fs(img, 1);
	fs->super->s_mnt_count++;
	ext2fs_mark_super_dirty(fs);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 1);
	jbt_e2fs_state_of(fs, &now);
	CHECK(memcmp(&now, &then, sizeof now) != 0);
	CHECK_EQ(jbt_e2fs_current_in(fs, &then), 1);
	CHECK_EQ(jbt_e2fs_current_in(fs, &now), 0);
	/* A build stamp is not carried: left alone, and so is `fs`. */
	CHECK_EQ(jbt_e2fs_carry_live_stamp(fs, &then), 0);
	CHECK(fs->flags & EXT2_FLAG_RW);
	CHECK_EQ(jbt_e2fs_current_in(fs, &now), 0);
	/* Rebuilt: current again. */
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), 0);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	jbt_e2fs_state_of(fs, &now);
	CHECK_EQ(jbt_e2fs_current_in(fs, &now), 1);
	ext2fs_close_free(&fs);
}

static void test_states(const char *img)
{
	char why[256];
	jbt_e2fs_maps *m = NULL;

	/* Stale: the superblock written since (as a mount would). */
	ext2_filsys fs = open_fs(img, 1);
	fs->super->s_mnt_count++;
	ext2fs_mark_super_dirty(fs);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, 0, &m, why, sizeof why), JBT_E2FS_STALE);
	CHECK(strstr(why, "stale") != NULL);
	CHECK_EQ(jbt_e2fs_open(fs, JBT_E2FS_OPEN_STALE, &m, why, sizeof why), 0);
	if (m) {
		struct jbt_e2fs_info info;
		jbt_e2fs_info(m, &info);
		CHECK_EQ(info.stale, 1);
		struct problems pr = {0};
		struct jbt_e2fs_check_result cr;
		CHECK_EQ(jbt_e2fs_check(m, NULL, take_problem, &pr, &cr), 0);
		CHECK_EQ(cr.stale, 1);
		CHECK_EQ(cr.problems, 1); /* stale, and nothing else changed */
		CHECK(has_problem(&pr, JBT_E2FS_PROBLEM_STALE));
		jbt_e2fs_close(m);
	}
	ext2fs_close_free(&fs);

	/* Needs replay: the journal flag set. */
	fs = open_fs(img, 1);
	ext2fs_set_feature_journal_needs_recovery(fs->super);
	ext2fs_mark_super_dirty(fs);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, JBT_E2FS_OPEN_STALE, &m, why, sizeof why), JBT_E2FS_NEEDS_REPLAY);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 1);
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), JBT_E2FS_NEEDS_REPLAY);
	ext2fs_clear_feature_journal_needs_recovery(fs->super);
	ext2fs_mark_super_dirty(fs);
	ext2fs_close_free(&fs);

	/* Corrupt: the maps' volume superblock overwritten. */
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, JBT_E2FS_OPEN_STALE, &m, why, sizeof why), 0);
	struct jbt_e2fs_info info;
	jbt_e2fs_info(m, &info);
	jbt_e2fs_close(m);
	ext2fs_close_free(&fs);
	{
		FILE *f = fopen(img, "r+b");
		CHECK(f != NULL);
		if (f) {
			char junk[64];
			memset(junk, 0x5a, sizeof junk);
			fseeko(f, (off_t)(info.first_block * 4096 + 8), SEEK_SET);
			fwrite(junk, 1, sizeof junk, f);
			fclose(f);
		}
	}
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, JBT_E2FS_OPEN_STALE, &m, why, sizeof why), JBT_E2FS_CORRUPT);
	CHECK(strstr(why, "block") != NULL);
	ext2fs_close_free(&fs);
	/* ... and a rebuild replaces the damaged maps. */
	fs = open_fs(img, 1);
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), 0);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, 0, &m, why, sizeof why), 0);
	jbt_e2fs_close(m);
	ext2fs_close_free(&fs);

	/* Foreign: inode 5 used by something else. */
	fs = open_fs(img, 1);
	struct ext2_inode ino5;
	CHECK_EQ(ext2fs_read_inode(fs, 5, &ino5), 0);
	ino5.i_generation = 12345;
	CHECK_EQ(ext2fs_write_inode(fs, 5, &ino5), 0);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 0);
	CHECK_EQ(jbt_e2fs_open(fs, JBT_E2FS_OPEN_STALE, &m, why, sizeof why), JBT_E2FS_FOREIGN);
	ext2fs_close_free(&fs);
	fs = open_fs(img, 1);
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), JBT_E2FS_UNSUPPORTED);
	ext2fs_close_free(&fs);
}

static void test_no_journal(const char *img)
{
	char why[256];
	ext2_filsys fs = open_fs(img, 1);
	CHECK_EQ(jbt_e2fs_build(fs, NULL, NULL, why, sizeof why), JBT_E2FS_UNSUPPORTED);
	CHECK(strstr(why, "journal") != NULL);
	CHECK(fs->flags & EXT2_FLAG_RW); /* refused before writing: the caller's handle is as it was */
	struct jbt_e2fs_state st;
	jbt_e2fs_state_of(fs, &st);
	CHECK_EQ(jbt_e2fs_current_in(fs, &st), 0); /* no maps stored */
	CHECK_EQ(jbt_e2fs_carry_live_stamp(fs, &st), 0);
	ext2fs_close_free(&fs);
}

int main(void)
{
	if (system("command -v mkfs.ext4 >/dev/null 2>&1") != 0) {
		printf("SKIP: mkfs.ext4 not found (apt-get install e2fsprogs)\n");
		return 77;
	}
	add_error_table(&et_ext2_error_table);
	snprintf(dir, sizeof dir, "/tmp/jbtree-e2fs-c-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	char tree[300], img[300], img2[300], cmd[700];
	snprintf(tree, sizeof tree, "%s/tree", dir);
	make_tree(tree);
	snprintf(img, sizeof img, "%s/maps.img", dir);
	snprintf(img2, sizeof img2, "%s/nojournal.img", dir);
	make_image(img, "");
	make_image(img2, "-O ^has_journal");

	test_build_and_query(img);
	test_current_in(img);
	test_states(img);
	test_no_journal(img2);

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)system(cmd);
	printf("e2fs C API: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
