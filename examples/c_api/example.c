/* SPDX-License-Identifier: MIT */
/*
 * jbtree from C: a volume in a file, the three maps, a commit, a crash, and
 * what the journal gives back. Build (see examples/meson.build):
 *
 *   cc -std=c11 -Wall -Wextra -pedantic -Iinclude -c example.c
 *   c++ -std=c++20 -fno-exceptions -fno-rtti -Iinclude -c impl.cpp
 *   cc example.o impl.o -o jbtree-c-example
 *
 * Run: jbtree-c-example [FILE]   (default: a temporary file, removed at the end)
 */
#define _POSIX_C_SOURCE 200809L
#include <jbtree/c/jbtree.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The block device: a file, through pread/pwrite/fsync. */
struct file_dev {
	int fd;
	uint32_t bs;
};

static int dev_read(void *ctx, uint64_t blk, uint32_t n, void *buf)
{
	struct file_dev *d = ctx;
	size_t want = (size_t)n * d->bs;
	ssize_t got = pread(d->fd, buf, want, (off_t)(blk * d->bs));
	if (got < 0)
		return -errno;
	if ((size_t)got < want)
		memset((char *)buf + got, 0, want - (size_t)got); /* past the end of a sparse file */
	return 0;
}

static int dev_write(void *ctx, uint64_t blk, uint32_t n, const void *buf)
{
	struct file_dev *d = ctx;
	size_t want = (size_t)n * d->bs;
	return pwrite(d->fd, buf, want, (off_t)(blk * d->bs)) == (ssize_t)want ? 0 : -EIO;
}

static int dev_flush(void *ctx)
{
	struct file_dev *d = ctx;
	return fsync(d->fd) == 0 ? 0 : -errno;
}

/* Memory: C11 aligned_alloc. */
static void *mem_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (align < sizeof(void *))
		align = sizeof(void *);
	return aligned_alloc(align, (size + align - 1) / align * align);
}

static void mem_free(void *ctx, void *p, size_t size, size_t align)
{
	(void)ctx;
	(void)size;
	(void)align;
	free(p);
}

static int print_owner(void *ctx, const struct jbt_rmap_record *r)
{
	(void)ctx;
	printf("    blocks %llu+%llu owned by %llu at offset %llu\n", (unsigned long long)r->start,
	       (unsigned long long)r->length, (unsigned long long)r->owner, (unsigned long long)r->offset);
	return 0;
}

static int print_path(void *ctx, const char *path, size_t len)
{
	(void)ctx;
	printf("    %.*s\n", (int)len, path);
	return 0;
}

#define TRY(call)                                                                       \
	do {                                                                            \
		int rc_ = (call);                                                       \
		if (rc_ != 0) {                                                         \
			fprintf(stderr, "%s: %s\n", #call, jbt_strerror(rc_));           \
			return 1;                                                       \
		}                                                                       \
	} while (0)

int main(int argc, char **argv)
{
	char tmp[] = "/tmp/jbtree-c-XXXXXX";
	const char *path = argc > 1 ? argv[1] : NULL;
	struct file_dev d = { -1, 4096 };
	struct jbt_block_io io = { &d, 4096, 16384, dev_read, dev_write, dev_flush };
	struct jbt_allocator mem = { NULL, mem_alloc, mem_free };
	struct jbt_verify_result vr;
	jbt_volume *v;
	uint32_t count, gen;

	d.fd = path ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0600) : mkstemp(tmp);
	if (d.fd < 0 || ftruncate(d.fd, (off_t)io.block_count * io.block_size) != 0) {
		perror("device file");
		return 1;
	}
	printf("1. a 64 MiB volume in %s (journal 2048 blocks)\n", path ? path : tmp);
	TRY(jbt_volume_create(&io, &mem, 2048, NULL));
	TRY(jbt_volume_open(&io, &mem, NULL, NULL, &v));

	printf("2. inode 12 owns blocks 1000-1015, inode 13 shares 1000-1003 (a reflink)\n");
	TRY(jbt_rmap_map(v, 1000, 16, 12, 0, 0));
	TRY(jbt_rmap_map(v, 1000, 4, 13, 0, 0));
	TRY(jbt_refcount_adjust(v, 1000, 4, +1));
	printf("3. /docs (inode 12) and a hard link /b/notes to inode 20\n");
	TRY(jbt_parent_add(v, 12, 2, 1, "docs", 4));
	TRY(jbt_parent_add(v, 14, 2, 1, "b", 1));
	TRY(jbt_parent_add(v, 20, 12, 5, "notes", 5));
	TRY(jbt_parent_add(v, 20, 14, 6, "notes", 5));
	TRY(jbt_volume_commit(v));
	printf("   committed\n");

	printf("4. uncommitted: inode 20 gets a third name, then a crash\n");
	TRY(jbt_parent_add(v, 20, 2, 1, "notes-too", 9));
	jbt_volume_abandon(v);

	printf("5. reopen (the journal replays the commit)\n");
	TRY(jbt_volume_open(&io, &mem, NULL, NULL, &v));
	printf("   owners of block 1002:\n");
	TRY(jbt_rmap_owners(v, 1002, print_owner, NULL));
	TRY(jbt_refcount_get(v, 1002, &count));
	printf("   refcount of block 1002: %u\n", (unsigned)count);
	printf("   paths of inode 20:\n");
	TRY(jbt_parent_paths(v, 20, 2, print_path, NULL, NULL));
	printf("   the uncommitted name: %s\n",
	       jbt_parent_find(v, 20, 2, "notes-too", 9, &gen) == -ENOENT ? "gone, as it should be" : "PRESENT?");
	TRY(jbt_verify(v, &vr));
	printf("6. verify: %llu rmap, %llu refcount, %llu parent records; %s\n", (unsigned long long)vr.rmap_records,
	       (unsigned long long)vr.refcount_records, (unsigned long long)vr.parent_records,
	       vr.problems || vr.block_problems || vr.refcount_mismatches ? "PROBLEMS" : "clean");
	TRY(jbt_volume_close(v));
	close(d.fd);
	if (!path)
		unlink(tmp);
	return vr.problems || vr.block_problems || vr.refcount_mismatches;
}
