// SPDX-License-Identifier: MIT
/*
 * The workload scripts/uml-test.sh runs inside User-Mode Linux, on the
 * ext4 image it boots with (part of jbtree's test harness, MIT; only the
 * patches in contrib/linux/ are GPL-2).
 *
 *   workload mount DEV DIR [TYPE] mount DEV on DIR (ext4 unless TYPE)
 *   workload run DIR SEED OPS     OPS random file operations under DIR
 *   workload umount DIR           unmount (syncs)
 *   workload poweroff             sync and power the UML machine off
 *
 * The operations are drawn from a xorshift generator seeded with SEED, so a
 * run is the same sequence every time on the same image: create, write,
 * append, overwrite, truncate, punch hole, fallocate (unwritten extents),
 * hard link, unlink, rename across directories, mkdir, rmdir, symlink,
 * xattrs large enough to need their own block, and one file fragmented
 * until its extent tree has depth 2. Every failing call other than the
 * expected ones (ENOENT, EEXIST, ENOTEMPTY, ENOSPC, EMLINK on a name picked
 * at random) stops the run with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}
static unsigned pick(unsigned n) { return (unsigned)(rnd() % n); }

enum { NDIRS = 8, NFILES = 64 };
static const char *root;
static unsigned long done, skipped;

static int tolerated(int e)
{
	return e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == ENOSPC || e == EMLINK || e == ENODATA ||
	       e == EISDIR || e == ENOTDIR || e == EINVAL;
}

static void check(int r, const char *what, const char *path)
{
	if (r >= 0) {
		++done;
		return;
	}
	if (tolerated(errno)) {
		++skipped;
		return;
	}
	fprintf(stderr, "workload: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void name_of(char *buf, size_t n, unsigned dir, unsigned file)
{
	snprintf(buf, n, "%s/d%u/f%u", root, dir, file);
}
static void rand_name(char *buf, size_t n) { name_of(buf, n, pick(NDIRS), pick(NFILES)); }

static char chunk[1 << 17];

/*
 * Value sizes of the xattr operation, [xattr_min, xattr_max): each too
 * large for the free space of a 256-byte inode (about 92 bytes), so the
 * value goes to an xattr block, and small enough that the four names
 * user.j0..j3 fit one block together: a block holds a 32-byte header, a
 * 4-byte end marker and per entry 20 bytes (entry and name) plus the value
 * rounded up to 4. On 4 KiB blocks that allows 300 to 899 bytes; on 1 KiB
 * blocks 100 to 223 (with 300 to 899 there most sets failed with ENOSPC,
 * each after ext4 forced up to three commits to retry).
 */
static unsigned xattr_min = 300, xattr_max = 900;
static void size_xattrs(const char *dir)
{
	struct statvfs s;
	if (statvfs(dir, &s) || s.f_bsize >= 4096)
		return;
	xattr_max = (((unsigned)s.f_bsize - 36) / 4 - 20) & ~3u;
	xattr_min = 100;
}

static void write_at(const char *p, off_t off, size_t len, int flags)
{
	int fd = open(p, O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0) {
		check(-1, "open", p);
		return;
	}
	for (size_t i = 0; i < len && i < sizeof chunk; i += 512)
		chunk[i] = (char)rnd();
	ssize_t w = flags & O_APPEND ? write(fd, chunk, len) : pwrite(fd, chunk, len, off);
	check(w < 0 ? -1 : 0, "write", p);
	close(fd);
}

static void one_op(void)
{
	char a[256], b[256];
	unsigned op = pick(16);
	rand_name(a, sizeof a);
	switch (op) {
	case 0: /* create */
	case 1: { /* write somewhere */
		write_at(a, (off_t)pick(256) * 4096, 1 + pick(64 * 1024), 0);
		break;
	}
	case 2: /* append */
		write_at(a, 0, 1 + pick(16 * 1024), O_APPEND);
		break;
	case 3: /* overwrite from the start */
		write_at(a, 0, 1 + pick(8 * 1024), O_TRUNC);
		break;
	case 4: /* truncate */
		check(truncate(a, (off_t)pick(512 * 1024)), "truncate", a);
		break;
	case 5: { /* punch a hole */
		int fd = open(a, O_RDWR);
		if (fd < 0) {
			check(-1, "open", a);
			break;
		}
		check(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)pick(128) * 4096,
				(off_t)(1 + pick(32)) * 4096),
		      "punch", a);
		close(fd);
		break;
	}
	case 6: { /* preallocate: unwritten extents */
		int fd = open(a, O_RDWR | O_CREAT, 0644);
		if (fd < 0) {
			check(-1, "open", a);
			break;
		}
		check(fallocate(fd, pick(2) ? FALLOC_FL_KEEP_SIZE : 0, (off_t)pick(256) * 4096,
				(off_t)(1 + pick(64)) * 4096),
		      "fallocate", a);
		close(fd);
		break;
	}
	case 7: /* hard link */
		rand_name(b, sizeof b);
		check(link(a, b), "link", a);
		break;
	case 8: /* unlink */
	case 9:
		check(unlink(a), "unlink", a);
		break;
	case 10: /* rename, usually across directories */
		rand_name(b, sizeof b);
		check(rename(a, b), "rename", a);
		break;
	case 11: { /* mkdir or rmdir of a subdirectory */
		snprintf(b, sizeof b, "%s/d%u/s%u", root, pick(NDIRS), pick(8));
		if (pick(2))
			check(mkdir(b, 0755), "mkdir", b);
		else
			check(rmdir(b), "rmdir", b);
		break;
	}
	case 12: /* symlink (long targets need a block) */
		snprintf(b, sizeof b, "%s/d%u/l%u", root, pick(NDIRS), pick(16));
		memset(chunk, 'x', 200);
		chunk[pick(2) ? 20 : 200] = 0;
		check(symlink(chunk, b), "symlink", b);
		unlink(b);
		check(symlink(chunk, b), "symlink", b);
		break;
	case 13: { /* an xattr too large for the inode: its own block */
		char v[900];
		memset(v, 'a' + (int)pick(26), sizeof v);
		snprintf(b, sizeof b, "user.j%u", pick(4));
		check(setxattr(a, b, v, xattr_min + pick(xattr_max - xattr_min), 0), "setxattr", a);
		break;
	}
	case 14: /* remove an xattr */
		snprintf(b, sizeof b, "user.j%u", pick(4));
		check(removexattr(a, b), "removexattr", a);
		break;
	default: { /* fragment a file: one block every other block */
		snprintf(b, sizeof b, "%s/frag", root);
		static unsigned next;
		write_at(b, (off_t)next * 2 * 4096, 4096, 0);
		next = (next + 1) % 4096;
		break;
	}
	}
}

int main(int argc, char **argv)
{
	if ((argc >= 4 && argc <= 6) && !strcmp(argv[1], "mount")) {
		if (mount(argv[2], argv[3], argc >= 5 ? argv[4] : "ext4", 0, argc == 6 ? argv[5] : "")) {
			fprintf(stderr, "workload: mount %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "umount")) {
		sync();
		if (umount(argv[2])) {
			fprintf(stderr, "workload: umount %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "poweroff")) {
		sync();
		reboot(RB_POWER_OFF);
		return 1;
	}
	/* A remount, read-only or read-write (the options as at mount). */
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "remount") &&
	    (!strcmp(argv[3], "ro") || !strcmp(argv[3], "rw"))) {
		unsigned long fl = MS_REMOUNT | (!strcmp(argv[3], "ro") ? MS_RDONLY : 0);

		if (mount("", argv[2], "", fl, argc == 5 ? argv[4] : "")) {
			fprintf(stderr, "workload: remount %s %s: %s\n", argv[2], argv[3], strerror(errno));
			return 1;
		}
		return 0;
	}
	/* A freeze or a thaw (fsfreeze -f / -u: FIFREEZE, FITHAW). */
	if (argc == 3 && (!strcmp(argv[1], "freeze") || !strcmp(argv[1], "thaw"))) {
		int fd = open(argv[2], O_RDONLY | O_DIRECTORY);

		if (fd < 0 || ioctl(fd, !strcmp(argv[1], "freeze") ? FIFREEZE : FITHAW, 0)) {
			fprintf(stderr, "workload: %s %s: %s\n", argv[1], argv[2], strerror(errno));
			return 1;
		}
		close(fd);
		return 0;
	}
	/* A power cut: off without a sync, so what the journal committed is
	 * on the disk and nothing else (the running transaction, dirty pages
	 * and the checkpoint are lost, as in a crash). */
	if (argc == 2 && !strcmp(argv[1], "crash")) {
		reboot(RB_POWER_OFF);
		return 1;
	}
	if (argc == 5 && !strcmp(argv[1], "run")) {
		char p[256];
		root = argv[2];
		rng_state = strtoull(argv[3], 0, 0) * 0x9E3779B97F4A7C15ull + 1;
		unsigned long ops = strtoul(argv[4], 0, 0);
		for (unsigned d = 0; d < NDIRS; ++d) {
			snprintf(p, sizeof p, "%s/d%u", root, d);
			if (mkdir(p, 0755) && errno != EEXIST) {
				perror(p);
				return 1;
			}
		}
		size_xattrs(root);
		for (unsigned long i = 0; i < ops; ++i)
			one_op();
		printf("workload: %lu operations done, %lu refused as expected\n", done, skipped);
		return 0;
	}
	fprintf(stderr, "usage: workload mount DEV DIR [TYPE [OPTIONS]] | remount DIR ro|rw [OPTIONS] | freeze DIR | thaw DIR | run DIR SEED OPS | umount DIR | poweroff | crash\n");
	return 2;
}
