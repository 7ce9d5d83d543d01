/*
 * store/import.c: a directory or a git tree into the store, as one artifact.
 *
 * Both importers work in the same three phases, so that every check runs before the first
 * byte reaches the store and both produce the same artifact for the same content:
 *
 *   1. walk: list every entry of the tree (path, mode, size, symlink target) into an
 *      imp_tree, enforcing the file-type rules and the limits as it goes (sizes are known up
 *      front: fstatat for a directory, the object header for git), never reading contents;
 *   2. check: sort by path, read and parse release.ini (which may then ask whether the files
 *      it names exist), then store_manifest_validate on the manifest to be committed, with
 *      every symlink's target (store/validate.c resolves them against the tree);
 *   3. stream: store_import_begin, then each file in path order through store_import_write
 *      in 64 KiB pieces, then store_import_commit.
 *
 * Why symlinks are resolved against the tree rather than only lexically: the artifact will be
 * materialized as real files and symlinks, and the kernel resolves ".." after a symlink from
 * the symlink's target, not from the link. With "s -> ." and "x -> s/..", "x" is lexically the
 * root but really the root's parent. The validator follows symlinks found in the tree (as the
 * kernel would) and treats every other component lexically (a component that does not exist
 * yet might be created later by the service), so a target is accepted only if no way of
 * resolving it can leave the tree.
 *
 * Directory walks never follow symlinks: directories are opened with O_NOFOLLOW relative to
 * their parent's descriptor, and files are reopened for streaming with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (plain O_NOFOLLOW where openat2 is missing), then
 * checked to be the same kind and size the walk saw. A directory being changed under an
 * import gives -EAGAIN, not a mix of two versions.
 */
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <git2.h>
#include <linux/openat2.h>

#include "store/import.h"
#include "store/store_int.h"

#define IMP_IOBUF	 (64 * 1024)
#define IMP_MAX_DEPTH	 STORE_IMPORT_MAX_DEPTH /* directories nested deeper are refused */
#define IMP_MAX_MESSAGE	 (64 * 1024) /* a commit message is cut (at a UTF-8 boundary) here */
#define IMP_MAX_AUTHOR	 1024
#define IMP_MODE_SYMLINK 0120000

struct imp_entry {
	char *path;   /* relative, '/'-separated */
	uint32_t mode; /* 0644, 0755 or IMP_MODE_SYMLINK */
	uint64_t size;
	char *target; /* symlink target (NUL-terminated), else NULL */
	git_oid oid;  /* git: the blob */
};

struct imp_tree {
	struct imp_entry *v;
	size_t n, cap;
	uint64_t total;
	struct store_import_limits lim;
	char *err;
	size_t errlen;
};

static void imp_seterr(struct imp_tree *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void imp_seterr(struct imp_tree *t, const char *fmt, ...)
{
	if (!t->err || !t->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->err, t->errlen, fmt, ap);
	va_end(ap);
}

static void imp_tree_init(struct imp_tree *t, const struct store_import_limits *lim, char *err,
			  size_t errlen)
{
	memset(t, 0, sizeof *t);
	if (lim)
		t->lim = *lim;
	if (!t->lim.max_file_size)
		t->lim.max_file_size = STORE_IMPORT_MAX_FILE_SIZE;
	if (!t->lim.max_total_size)
		t->lim.max_total_size = STORE_IMPORT_MAX_TOTAL_SIZE;
	if (!t->lim.max_files)
		t->lim.max_files = STORE_IMPORT_MAX_FILES;
	t->err = errlen ? err : NULL;
	t->errlen = err ? errlen : 0;
	if (t->err)
		t->err[0] = '\0';
}

static void imp_tree_release(struct imp_tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		store__free(t->v[i].path);
		store__free(t->v[i].target);
	}
	store__free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

/* Join @dir ("" for the root) and @name into a new path; -ENAMETOOLONG past the limit. */
static int imp_join(struct imp_tree *t, const char *dir, const char *name, char **ret)
{
	size_t dl = strlen(dir), nl = strlen(name);
	if (dl + 1 + nl > STORE_IMPORT_MAX_PATH) {
		imp_seterr(t, "%s/%s: path longer than %u bytes", dir, name,
			   STORE_IMPORT_MAX_PATH);
		return -ENAMETOOLONG;
	}
	char *p = store__malloc(dl + 1 + nl + 1);
	if (!p)
		return -ENOMEM;
	if (dl) {
		memcpy(p, dir, dl);
		p[dl++] = '/';
	}
	memcpy(p + dl, name, nl + 1);
	*ret = p;
	return 0;
}

/*
 * Add an entry, taking ownership of @path and @target (freed on failure too). Enforces the
 * limits, so the first file over any of them is the one named in the message.
 */
static int imp_tree_add(struct imp_tree *t, char *path, uint32_t mode, uint64_t size,
			char *target, const git_oid *oid)
{
	int r;
	if (t->n >= t->lim.max_files) {
		imp_seterr(t, "%s: over the limit of %u files", path, t->lim.max_files);
		r = -STORE_ETOOBIG;
		goto fail;
	}
	if (size > t->lim.max_file_size) {
		imp_seterr(t, "%s: %llu bytes, over the file size limit of %llu bytes", path,
			   (unsigned long long)size, (unsigned long long)t->lim.max_file_size);
		r = -STORE_ETOOBIG;
		goto fail;
	}
	if (size > t->lim.max_total_size - t->total) {
		imp_seterr(t, "%s: total size over the limit of %llu bytes", path,
			   (unsigned long long)t->lim.max_total_size);
		r = -STORE_ETOOBIG;
		goto fail;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		struct imp_entry *v = store__realloc(t->v, cap * sizeof *v);
		if (!v) {
			r = -ENOMEM;
			goto fail;
		}
		t->v = v;
		t->cap = cap;
	}
	struct imp_entry *e = &t->v[t->n++];
	memset(e, 0, sizeof *e);
	e->path = path;
	e->mode = mode;
	e->size = size;
	e->target = target;
	if (oid)
		e->oid = *oid;
	t->total += size;
	return 0;
fail:
	store__free(path);
	store__free(target);
	return r;
}

static int imp_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct imp_entry *)a)->path, ((const struct imp_entry *)b)->path);
}

static void imp_tree_sort(struct imp_tree *t)
{
	if (t->n)
		qsort(t->v, t->n, sizeof *t->v, imp_entry_cmp);
}

/* The entry at exactly @path (the tree is sorted), or NULL. @len bytes of @path count. */
static const struct imp_entry *imp_tree_find(const struct imp_tree *t, const char *path,
					     size_t len)
{
	ssize_t i = store__path_find(t->v, t->n, sizeof *t->v, offsetof(struct imp_entry, path),
				     path, len);
	return i < 0 ? NULL : &t->v[i];
}

static bool imp_has_file(const char *path, void *ud)
{
	return imp_tree_find(ud, path, strlen(path)) != NULL;
}

/* store_manifest_validate on @m with the (sorted) tree as its files. */
static int imp_validate(struct imp_tree *t, const struct store_manifest *m)
{
	size_t n = t->n ? t->n : 1;
	struct store_file *files = store__calloc(n, sizeof *files);
	const char **targets = store__calloc(n, sizeof *targets);
	int r = -ENOMEM;
	if (!files || !targets)
		goto out;
	for (size_t i = 0; i < t->n; i++) {
		files[i].path = t->v[i].path;
		files[i].mode = t->v[i].mode;
		files[i].size = t->v[i].size;
		targets[i] = t->v[i].target;
	}
	struct store_manifest tmp = *m;
	tmp.files = files;
	tmp.nfiles = t->n;
	r = store_manifest_validate(&tmp, targets, &t->lim, t->err, t->errlen);
out:
	store__free(files);
	store__free(targets);
	return r;
}

/*
 * Phase 2 for both importers: release.ini (bytes in @ini), then store_manifest_validate on the
 * manifest as it will be committed (the tree's paths, modes, sizes and symlink targets, the
 * limits), so everything commit would refuse is refused before a byte is streamed, with words.
 */
static int imp_check(struct imp_tree *t, const char *ini, size_t inilen,
		     struct store_manifest *ret)
{
	int r = store_release_parse_files(ini, inilen, STORE_RELEASE_FILE, imp_has_file, t, ret,
					  t->err, t->errlen);
	if (r < 0)
		return r;
	return imp_validate(t, ret);
}

/* The root's release.ini entry, which must be a regular file of sane size. */
static int imp_find_release(struct imp_tree *t, const char *where,
			    const struct imp_entry **ret)
{
	const struct imp_entry *e = imp_tree_find(t, STORE_RELEASE_FILE, strlen(STORE_RELEASE_FILE));
	if (!e) {
		imp_seterr(t, "%s: no %s at the root", where, STORE_RELEASE_FILE);
		return -STORE_EINVALID;
	}
	if (e->target) {
		imp_seterr(t, "%s: must be a regular file, not a symlink", STORE_RELEASE_FILE);
		return -STORE_EINVALID;
	}
	if (e->size > STORE_RELEASE_MAX_SIZE) {
		imp_seterr(t, "%s: too large (%llu bytes, max %d)", STORE_RELEASE_FILE,
			   (unsigned long long)e->size, STORE_RELEASE_MAX_SIZE);
		return -STORE_EINVALID;
	}
	*ret = e;
	return 0;
}

/* ---- Directories --------------------------------------------------------------------------- */

static int imp_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *imp_type_name(mode_t m)
{
	if (S_ISFIFO(m))
		return "a fifo";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	return "an unsupported file type";
}

/* Read a symlink's target at @dirfd/@name: 1..STORE_IMPORT_MAX_PATH bytes. */
static int imp_readlink(struct imp_tree *t, int dirfd, const char *name, const char *path,
			char **ret)
{
	char *buf = store__malloc(STORE_IMPORT_MAX_PATH + 2);
	if (!buf)
		return -ENOMEM;
	ssize_t n = readlinkat(dirfd, name, buf, STORE_IMPORT_MAX_PATH + 1);
	if (n < 0) {
		int r = -errno;
		imp_seterr(t, "%s: %s", path, strerror(errno));
		store__free(buf);
		return r;
	}
	if (n == 0 || n > (ssize_t)STORE_IMPORT_MAX_PATH) {
		imp_seterr(t, "%s: symlink target %s", path, n ? "too long" : "empty");
		store__free(buf);
		return -STORE_EINVALID;
	}
	buf[n] = '\0';
	*ret = buf;
	return 0;
}

/* Walk the directory open at @fd (consumed), whose relative path is @rel ("" = root). */
static int imp_walk_dir(struct imp_tree *t, int fd, const char *rel, unsigned depth)
{
	char **names = NULL;
	size_t nn = 0, cap = 0;
	int r = 0;
	DIR *d = NULL;

	if (depth > IMP_MAX_DEPTH) {
		imp_seterr(t, "%s: directories nested deeper than %u", rel, IMP_MAX_DEPTH);
		r = -STORE_ETOOBIG;
		goto out;
	}
	int dfd = dup(fd);
	if (dfd < 0 || !(d = fdopendir(dfd))) {
		r = -errno;
		if (dfd >= 0)
			close(dfd);
		imp_seterr(t, "%s: %s", *rel ? rel : ".", strerror(-r));
		goto out;
	}
	/* Names first, sorted, so that the walk (and which file trips a limit) is deterministic. */
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno) {
				r = -errno;
				imp_seterr(t, "%s: %s", *rel ? rel : ".", strerror(errno));
				goto out;
			}
			break;
		}
		const char *n = de->d_name;
		if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, ".git"))
			continue;
		/* Bound the name list before the file limit can see it (dirs do not count). */
		if (nn > (size_t)t->lim.max_files + 1024) {
			imp_seterr(t, "%s: more than %zu entries in one directory",
				   *rel ? rel : ".", nn);
			r = -STORE_ETOOBIG;
			goto out;
		}
		if (nn == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nv = store__realloc(names, nc * sizeof *nv);
			if (!nv) {
				r = -ENOMEM;
				goto out;
			}
			names = nv;
			cap = nc;
		}
		if (!(names[nn] = store__strdup(n))) {
			r = -ENOMEM;
			goto out;
		}
		nn++;
	}
	closedir(d);
	d = NULL;
	if (nn)
		qsort(names, nn, sizeof *names, imp_name_cmp);

	for (size_t i = 0; i < nn && r == 0; i++) {
		char *path = NULL;
		struct stat st;
		if ((r = imp_join(t, rel, names[i], &path)) < 0)
			break;
		if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			imp_seterr(t, "%s: %s", path, strerror(errno));
			store__free(path);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(fd, names[i],
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				r = -errno;
				imp_seterr(t, "%s: %s", path, strerror(errno));
			} else {
				r = imp_walk_dir(t, sub, path, depth + 1);
			}
			store__free(path);
		} else if (S_ISREG(st.st_mode)) {
			uint32_t mode = (st.st_mode & 0111) ? 0755 : 0644;
			r = imp_tree_add(t, path, mode, (uint64_t)st.st_size, NULL, NULL);
		} else if (S_ISLNK(st.st_mode)) {
			char *target = NULL;
			r = imp_readlink(t, fd, names[i], path, &target);
			if (r < 0)
				store__free(path);
			else
				r = imp_tree_add(t, path, IMP_MODE_SYMLINK, strlen(target), target,
						 NULL);
		} else {
			imp_seterr(t, "%s: %s (only regular files, directories and symlinks)",
				   path, imp_type_name(st.st_mode));
			store__free(path);
			r = -STORE_EINVALID;
		}
	}
out:
	if (d)
		closedir(d);
	for (size_t i = 0; i < nn; i++)
		store__free(names[i]);
	store__free(names);
	close(fd);
	return r;
}

/* Open a regular file of the tree for reading without following any symlink on the way. */
static int imp_open_beneath(int rootfd, const char *path)
{
#ifdef SYS_openat2
	struct open_how how = {
		.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return fd < 0 ? -errno : (int)fd;
#endif
	int f = openat(rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	return f < 0 ? -errno : f;
}

/*
 * Stream one regular file into the import, or (when @buf_out) read it whole into a buffer
 * (release.ini). Checks that it is still the file the walk saw.
 */
static int imp_dir_file(struct imp_tree *t, int rootfd, const struct imp_entry *e,
			struct store_import *imp, uint8_t *iobuf, char **buf_out)
{
	char *whole = NULL;
	int r;
	int fd = imp_open_beneath(rootfd, e->path);
	if (fd < 0) {
		r = fd == -ELOOP || fd == -EXDEV || fd == -ENOENT || fd == -ENOTDIR ? -EAGAIN : fd;
		imp_seterr(t, "%s: %s", e->path,
			   r == -EAGAIN ? "changed during the import" : strerror(-fd));
		return r;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = -EAGAIN;
		imp_seterr(t, "%s: changed during the import", e->path);
		goto out;
	}
	if (buf_out && !(whole = store__malloc(e->size + 1))) {
		r = -ENOMEM;
		goto out;
	}
	uint64_t got = 0;
	for (;;) {
		ssize_t n = read(fd, iobuf, IMP_IOBUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			imp_seterr(t, "%s: %s", e->path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if ((uint64_t)n > e->size - got) {
			r = -EAGAIN;
			imp_seterr(t, "%s: changed during the import (grew)", e->path);
			goto out;
		}
		if (whole) {
			memcpy(whole + got, iobuf, (size_t)n);
		} else if ((r = store_import_write(imp, iobuf, (size_t)n)) < 0) {
			imp_seterr(t, "%s: %s", e->path, store_strerror(r));
			goto out;
		}
		got += (uint64_t)n;
	}
	if (got != e->size) {
		r = -EAGAIN;
		imp_seterr(t, "%s: changed during the import (shrank)", e->path);
		goto out;
	}
	if (whole) {
		whole[got] = '\0';
		*buf_out = whole;
		whole = NULL;
	}
	r = 0;
out:
	store__free(whole);
	close(fd);
	return r;
}

/* Phase 3: every entry of @t into the store. @read_file streams entry @e into @imp. */
static int imp_stream(struct store *s, struct imp_tree *t, struct store_manifest *m,
		      uint64_t now_ms, struct store_id *ret_id,
		      int (*read_file)(struct imp_tree *t, const struct imp_entry *e,
				       struct store_import *imp, void *ud),
		      void *ud)
{
	struct store_import *imp = NULL;
	int r = store_import_begin(s, &imp);
	if (r < 0) {
		imp_seterr(t, "import: %s", store_strerror(r));
		return r;
	}
	(void)store_import_set_limits(imp, &t->lim); /* commit checks them again */
	for (size_t i = 0; i < t->n; i++) {
		const struct imp_entry *e = &t->v[i];
		if ((r = store_import_file(imp, e->path, e->mode)) < 0) {
			imp_seterr(t, "%s: %s", e->path, store_strerror(r));
			goto fail;
		}
		if (e->target) {
			r = store_import_write(imp, e->target, strlen(e->target));
			if (r < 0)
				imp_seterr(t, "%s: %s", e->path, store_strerror(r));
		} else {
			r = read_file(t, e, imp, ud);
		}
		if (r < 0)
			goto fail;
		if ((r = store_import_file_end(imp)) < 0) {
			imp_seterr(t, "%s: %s", e->path, store_strerror(r));
			goto fail;
		}
	}
	struct store_id id;
	r = store_import_commit(imp, m, now_ms, &id); /* consumes @imp */
	if (r < 0) {
		imp_seterr(t, "import: %s", store_strerror(r));
		return r;
	}
	*ret_id = id;
	return r;
fail:
	store_import_abort(imp);
	return r;
}

struct imp_dir_ud {
	int rootfd;
	uint8_t *iobuf;
};

static int imp_dir_read(struct imp_tree *t, const struct imp_entry *e, struct store_import *imp,
			void *ud)
{
	struct imp_dir_ud *d = ud;
	return imp_dir_file(t, d->rootfd, e, imp, d->iobuf, NULL);
}

int store_import_dir(struct store *s, const char *dir, const struct store_import_limits *lim,
		     uint64_t now_ms, struct store_id *ret_id, char *err, size_t errlen)
{
	struct imp_tree t;
	struct store_manifest m = { 0 };
	char *ini = NULL;
	uint8_t *iobuf = NULL;
	int rootfd = -1, r;

	imp_tree_init(&t, lim, err, errlen);
	if (!s || !dir || !ret_id) {
		imp_seterr(&t, "invalid arguments");
		return -EINVAL;
	}
	rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		r = -errno;
		imp_seterr(&t, "%s: %s", dir, strerror(errno));
		goto out;
	}
	int walkfd = dup(rootfd);
	if (walkfd < 0) {
		r = -errno;
		imp_seterr(&t, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if ((r = imp_walk_dir(&t, walkfd, "", 0)) < 0)
		goto out;
	imp_tree_sort(&t);

	const struct imp_entry *rel;
	if ((r = imp_find_release(&t, dir, &rel)) < 0)
		goto out;
	r = -ENOMEM;
	if (!(iobuf = store__malloc(IMP_IOBUF)))
		goto out;
	if ((r = imp_dir_file(&t, rootfd, rel, NULL, iobuf, &ini)) < 0)
		goto out;
	if ((r = imp_check(&t, ini, rel->size, &m)) < 0)
		goto out;
	struct imp_dir_ud ud = { .rootfd = rootfd, .iobuf = iobuf };
	r = imp_stream(s, &t, &m, now_ms, ret_id, imp_dir_read, &ud);
out:
	if (r == -ENOMEM)
		imp_seterr(&t, "out of memory");
	if (r >= 0 && t.err)
		t.err[0] = '\0';
	store_manifest_release(&m);
	store__free(ini);
	store__free(iobuf);
	imp_tree_release(&t);
	if (rootfd >= 0)
		close(rootfd);
	return r;
}

/* ---- Git ------------------------------------------------------------------------------------ */

struct imp_git {
	git_repository *repo;
	git_odb *odb;
};

/* libgit2's last error message, or @fallback. */
static const char *imp_git_msg(const char *fallback)
{
	const git_error *e = git_error_last();
	return e && e->message ? e->message : fallback;
}

/* Walk @tree (borrowed), whose relative path is @rel ("" = the artifact root). */
static int imp_walk_git(struct imp_tree *t, struct imp_git *g, const git_tree *tree,
			const char *rel, unsigned depth)
{
	if (depth > IMP_MAX_DEPTH) {
		imp_seterr(t, "%s: directories nested deeper than %u", rel, IMP_MAX_DEPTH);
		return -STORE_ETOOBIG;
	}
	size_t n = git_tree_entrycount(tree);
	for (size_t i = 0; i < n; i++) {
		const git_tree_entry *te = git_tree_entry_byindex(tree, i);
		const char *name = git_tree_entry_name(te);
		const git_oid *oid = git_tree_entry_id(te);
		char *path = NULL;
		int r = 0;
		if (!strcmp(name, ".git"))
			continue;
		/* A crafted tree can hold names git itself would never write. */
		if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/')) {
			imp_seterr(t, "%s%s\"%s\": invalid entry name in the git tree", rel,
				   *rel ? "/" : "", name);
			return -STORE_EINVALID;
		}
		if ((r = imp_join(t, rel, name, &path)) < 0)
			return r;
		git_filemode_t fm = git_tree_entry_filemode(te);
		if (fm == GIT_FILEMODE_TREE) {
			git_tree *sub = NULL;
			if (git_tree_lookup(&sub, g->repo, oid) < 0) {
				imp_seterr(t, "%s: %s", path, imp_git_msg("cannot read tree"));
				store__free(path);
				return -EIO;
			}
			r = imp_walk_git(t, g, sub, path, depth + 1);
			git_tree_free(sub);
			store__free(path);
		} else if (fm == GIT_FILEMODE_BLOB || fm == GIT_FILEMODE_BLOB_EXECUTABLE) {
			size_t size;
			git_object_t type;
			if (git_odb_read_header(&size, &type, g->odb, oid) < 0) {
				imp_seterr(t, "%s: %s", path, imp_git_msg("cannot read blob"));
				store__free(path);
				return -EIO;
			}
			if (type != GIT_OBJECT_BLOB) {
				imp_seterr(t, "%s: tree entry is not a blob", path);
				store__free(path);
				return -EIO;
			}
			r = imp_tree_add(t, path, fm == GIT_FILEMODE_BLOB ? 0644 : 0755, size, NULL,
					 oid);
		} else if (fm == GIT_FILEMODE_LINK) {
			git_blob *b = NULL;
			if (git_blob_lookup(&b, g->repo, oid) < 0) {
				imp_seterr(t, "%s: %s", path, imp_git_msg("cannot read symlink"));
				store__free(path);
				return -EIO;
			}
			size_t tl = (size_t)git_blob_rawsize(b);
			const char *tb = git_blob_rawcontent(b);
			char *target = NULL;
			if (tl == 0 || tl > STORE_IMPORT_MAX_PATH || memchr(tb, '\0', tl)) {
				imp_seterr(t, "%s: invalid symlink target (%s)", path,
					   tl == 0			   ? "empty"
					   : tl > STORE_IMPORT_MAX_PATH ? "too long"
									: "NUL byte");
				r = -STORE_EINVALID;
			} else if (!(target = store__strndup(tb, tl))) {
				r = -ENOMEM;
			}
			git_blob_free(b);
			if (r < 0)
				store__free(path);
			else
				r = imp_tree_add(t, path, IMP_MODE_SYMLINK, tl, target, oid);
		} else if (fm == GIT_FILEMODE_COMMIT) {
			imp_seterr(t, "%s: git submodule (an artifact must be self-contained: vendor "
				      "the files or import the submodule's repository separately)",
				   path);
			store__free(path);
			r = -STORE_EINVALID;
		} else {
			imp_seterr(t, "%s: unsupported git file mode %06o", path, (unsigned)fm);
			store__free(path);
			r = -STORE_EINVALID;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

struct imp_git_ud {
	struct imp_git *g;
};

static int imp_git_read(struct imp_tree *t, const struct imp_entry *e, struct store_import *imp,
			void *ud)
{
	struct imp_git *g = ((struct imp_git_ud *)ud)->g;
	git_blob *b = NULL;
	if (git_blob_lookup(&b, g->repo, &e->oid) < 0) {
		imp_seterr(t, "%s: %s", e->path, imp_git_msg("cannot read blob"));
		return -EIO;
	}
	const uint8_t *p = git_blob_rawcontent(b);
	uint64_t size = (uint64_t)git_blob_rawsize(b);
	int r = 0;
	if (size != e->size) {
		imp_seterr(t, "%s: blob size %llu, header said %llu", e->path,
			   (unsigned long long)size, (unsigned long long)e->size);
		r = -EIO;
	}
	/* Pieces: the store chunks as it goes; one call per piece keeps it incremental. */
	for (uint64_t off = 0; r == 0 && off < size; off += IMP_IOBUF) {
		size_t n = size - off < IMP_IOBUF ? (size_t)(size - off) : IMP_IOBUF;
		if ((r = store_import_write(imp, p + off, n)) < 0)
			imp_seterr(t, "%s: %s", e->path, store_strerror(r));
	}
	git_blob_free(b);
	return r;
}

/* "./a/b/" -> "a/b"; "" and "." -> "" (the root). -EINVAL for absolute or "..". */
static int imp_subdir_norm(const char *in, char **ret)
{
	while (in[0] == '.' && in[1] == '/')
		for (in += 2; *in == '/';)
			in++;
	if (!strcmp(in, "."))
		in = "";
	if (in[0] == '/')
		return -EINVAL;
	size_t n = strlen(in);
	while (n && in[n - 1] == '/')
		n--;
	char *p = store__strndup(in, n);
	if (!p)
		return -ENOMEM;
	for (const char *c = p; *c;) {
		size_t l = strcspn(c, "/");
		if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.')) {
			store__free(p);
			return -EINVAL;
		}
		c += l;
		if (*c)
			c++;
	}
	*ret = p;
	return 0;
}

/* Trim ASCII whitespace at both ends; cut at @max bytes on a UTF-8 character boundary. */
static char *imp_trimdup(const char *s, size_t max)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	if (n > max) {
		n = max;
		while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	return store__strndup(s, n);
}

/* The manifest's git fields, and version from the tag when release.ini has none. */
static int imp_git_fields(struct imp_tree *t, const git_commit *c, const char *tag,
			  struct store_manifest *m)
{
	char hex[GIT_OID_HEXSZ + 1];
	git_oid_tostr(hex, sizeof hex, git_commit_id(c));
	const git_signature *a = git_commit_author(c);
	const char *name = a && a->name ? a->name : "", *email = a && a->email ? a->email : "";
	if (strlen(name) + strlen(email) + 3 > IMP_MAX_AUTHOR) {
		imp_seterr(t, "commit %s: author longer than %d bytes", hex, IMP_MAX_AUTHOR);
		return -STORE_EINVALID;
	}
	char author[IMP_MAX_AUTHOR + 1];
	snprintf(author, sizeof author, "%s <%s>", name, email);
	const char *msg = git_commit_message(c);

	if (!(m->git_commit = store__strdup(hex)) || !(m->git_author = store__strdup(author)) ||
	    !(m->git_message = imp_trimdup(msg ? msg : "", IMP_MAX_MESSAGE)))
		return -ENOMEM;
	/* Commit metadata is text for humans, not something an operator can fix in release.ini:
	 * what the manifest rules refuse (an escape byte, Latin-1) becomes '?' instead of an
	 * import failure. */
	store__text_sanitize(m->git_author, 0);
	store__text_sanitize(m->git_message, STORE__TEXT_TAB | STORE__TEXT_NL);
	if (tag && !(m->git_tag = store__strdup(tag)))
		return -ENOMEM;
	if (tag && !m->version && !(m->version = store__strdup(tag)))
		return -ENOMEM;
	return 0;
}

/* Tag name when @ref names a tag: a refs/tags/ reference, or an annotated tag object. */
static int imp_git_tag(git_repository *repo, const char *ref, const git_object *obj, char **ret)
{
	git_reference *r = NULL;
	const char *name = NULL;
	if (git_reference_dwim(&r, repo, ref) == 0 && git_reference_is_tag(r))
		name = git_reference_shorthand(r);
	else if (git_object_type(obj) == GIT_OBJECT_TAG)
		name = git_tag_name((const git_tag *)obj);
	*ret = NULL;
	if (name && !(*ret = store__strdup(name))) {
		git_reference_free(r);
		return -ENOMEM;
	}
	git_reference_free(r);
	return 0;
}

int store_import_git(struct store *s, const char *repo_path, const char *ref, const char *subdir,
		     const struct store_import_limits *lim, uint64_t now_ms,
		     struct store_id *ret_id, char *err, size_t errlen)
{
	struct imp_tree t;
	struct imp_git g = { 0 };
	struct store_manifest m = { 0 };
	git_object *obj = NULL, *cobj = NULL;
	git_tree *root = NULL, *tree = NULL;
	git_tree_entry *te = NULL;
	git_blob *ini = NULL;
	char *sub = NULL, *tag = NULL;
	bool inited = false;
	int r;

	imp_tree_init(&t, lim, err, errlen);
	if (!s || !repo_path || !ref || !*ref || !ret_id) {
		imp_seterr(&t, "invalid arguments (repository, ref and id are required)");
		return -EINVAL;
	}
	if ((r = imp_subdir_norm(subdir ? subdir : "", &sub)) < 0) {
		if (r == -ENOMEM)
			imp_seterr(&t, "out of memory");
		else
			imp_seterr(&t, "invalid subdirectory \"%s\" (want a relative path "
				       "without \".\" or \"..\")",
				   subdir);
		return r;
	}
	if (git_libgit2_init() < 0) {
		imp_seterr(&t, "libgit2: %s", imp_git_msg("cannot initialise"));
		r = -EIO;
		goto out;
	}
	inited = true;

	r = git_repository_open_ext(&g.repo, repo_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (r < 0) {
		if (r == GIT_ENOTFOUND) {
			r = -STORE_ENOTREPO;
			imp_seterr(&t, "%s: not a git repository", repo_path);
		} else {
			r = r == GIT_EOWNER ? -EACCES : -EIO;
			imp_seterr(&t, "%s: %s", repo_path, imp_git_msg("cannot open repository"));
		}
		goto out;
	}
	if (git_repository_odb(&g.odb, g.repo) < 0) {
		r = -EIO;
		imp_seterr(&t, "%s: %s", repo_path, imp_git_msg("cannot open object database"));
		goto out;
	}
	r = git_revparse_single(&obj, g.repo, ref);
	if (r < 0) {
		imp_seterr(&t, "%s: ref \"%s\" %s", repo_path, ref,
			   r == GIT_EAMBIGUOUS	 ? "is ambiguous"
			   : r == GIT_ENOTFOUND ? "not found"
						: imp_git_msg("is not a valid revision"));
		r = -STORE_ENOREF;
		goto out;
	}
	if (git_object_peel(&cobj, obj, GIT_OBJECT_COMMIT) < 0) {
		imp_seterr(&t, "%s: ref \"%s\" does not name a commit", repo_path, ref);
		r = -STORE_ENOREF;
		goto out;
	}
	if ((r = imp_git_tag(g.repo, ref, obj, &tag)) < 0)
		goto out;
	if (git_commit_tree(&root, (git_commit *)cobj) < 0) {
		imp_seterr(&t, "%s: %s", repo_path, imp_git_msg("cannot read the commit's tree"));
		r = -EIO;
		goto out;
	}
	if (*sub) {
		r = git_tree_entry_bypath(&te, root, sub);
		if (r == GIT_ENOTFOUND) {
			imp_seterr(&t, "%s: \"%s\" not found at %s", repo_path, sub, ref);
			r = -ENOENT;
			goto out;
		}
		if (r < 0) {
			imp_seterr(&t, "%s: %s", repo_path, imp_git_msg("cannot read tree"));
			r = -EIO;
			goto out;
		}
		if (git_tree_entry_type(te) != GIT_OBJECT_TREE) {
			imp_seterr(&t, "%s: \"%s\" at %s is not a directory", repo_path, sub, ref);
			r = -ENOTDIR;
			goto out;
		}
		if (git_tree_lookup(&tree, g.repo, git_tree_entry_id(te)) < 0) {
			imp_seterr(&t, "%s: %s", repo_path, imp_git_msg("cannot read tree"));
			r = -EIO;
			goto out;
		}
	}
	if ((r = imp_walk_git(&t, &g, tree ? tree : root, "", 0)) < 0)
		goto out;
	imp_tree_sort(&t);

	char where[512];
	snprintf(where, sizeof where, "%s at %s%s%s", repo_path, ref, *sub ? ":" : "", sub);
	const struct imp_entry *rel;
	if ((r = imp_find_release(&t, where, &rel)) < 0)
		goto out;
	if (git_blob_lookup(&ini, g.repo, &rel->oid) < 0) {
		imp_seterr(&t, "%s: %s", STORE_RELEASE_FILE, imp_git_msg("cannot read blob"));
		r = -EIO;
		goto out;
	}
	r = imp_check(&t, git_blob_rawcontent(ini), (size_t)git_blob_rawsize(ini), &m);
	if (r < 0)
		goto out;
	if ((r = imp_git_fields(&t, (const git_commit *)cobj, tag, &m)) < 0)
		goto out;
	struct imp_git_ud ud = { .g = &g };
	r = imp_stream(s, &t, &m, now_ms, ret_id, imp_git_read, &ud);
out:
	if (r == -ENOMEM)
		imp_seterr(&t, "out of memory");
	if (r >= 0 && t.err)
		t.err[0] = '\0';
	store_manifest_release(&m);
	git_blob_free(ini);
	git_tree_entry_free(te);
	git_tree_free(tree);
	git_tree_free(root);
	git_object_free(cobj);
	git_object_free(obj);
	git_odb_free(g.odb);
	git_repository_free(g.repo);
	if (inited)
		git_libgit2_shutdown();
	imp_tree_release(&t);
	store__free(sub);
	store__free(tag);
	return r;
}
