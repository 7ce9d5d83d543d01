/*
 * tests/unit/test_store_import.c: store_import_dir and store_import_git against a real LMDB
 * store, real directories (mkdtemp) and real git repositories written with libgit2 inside the
 * test (blobs, trees, commits, annotated and lightweight tags, a bare repository).
 *
 * Success paths read every file back (store_blob_read and store_artifact_materialize) and
 * compare bytes, modes and symlink targets with what was written; failure paths check the
 * error code, the message, and that nothing was stored.
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH | FTW_PHYS */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <git2.h>

#include "store/import.h"
#include "store/store_int.h"

/* store/alloc.c: fail the @n-th allocation from now (once, or every one after if @persistent). */
void store__alloc_fail_after(long n, bool persistent);

#define assert_str(a, b)                                                                    \
	do {                                                                                \
		const char *a_ = (a), *b_ = (b);                                            \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                                      \
			fail_msg("%s:%d: got \"%s\", want \"%s\"", __FILE__, __LINE__,      \
				 a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
	} while (0)

#define assert_contains(hay, needle)                                                        \
	do {                                                                                \
		const char *h_ = (hay), *n_ = (needle);                                     \
		if (!h_ || !strstr(h_, n_))                                                 \
			fail_msg("%s:%d: \"%s\" does not contain \"%s\"", __FILE__, __LINE__,   \
				 h_ ? h_ : "(null)", n_);                                   \
	} while (0)

#define assert_rc(got, want, err)                                                           \
	do {                                                                                \
		int g_ = (got), w_ = (want);                                                \
		if (g_ != w_)                                                               \
			fail_msg("%s:%d: got %d (%s) \"%s\", want %d (%s)", __FILE__, __LINE__, \
				 g_, store_strerror(g_), (err), w_, store_strerror(w_));    \
	} while (0)

#define git_ok(call)                                                                        \
	do {                                                                                \
		int gr_ = (call);                                                           \
		if (gr_ < 0)                                                                \
			fail_msg("%s:%d: %s: %d %s", __FILE__, __LINE__, #call, gr_,        \
				 git_error_last() ? git_error_last()->message : "");        \
	} while (0)

#define WEB_RELEASE                                                                         \
	"[release]\nservice = web\nruntime = exec\n[exec]\ncommand = ./bin/web --port 8080\n"  \
	"[health]\nexec = ./check.sh\ninterval = 500ms\n"

struct fx {
	char root[64];	/* mkdtemp */
	char src[128];	/* a directory to import */
	struct store *s;
	uint8_t *big;	/* BIG_LEN pseudo-random bytes: more than one chunk */
};
#define BIG_LEN (STORE_CHUNK_SIZE + 12345)

/* ---- helpers -------------------------------------------------------------------------------- */

static void xpath(char *out, size_t cap, const char *a, const char *b)
{
	if ((size_t)snprintf(out, cap, "%s/%s", a, b) >= cap)
		fail_msg("path too long: %s/%s", a, b);
}

static void mkdirs(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				fail_msg("mkdir %s: %s", tmp, strerror(errno));
			*p = '/';
		}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", tmp, strerror(errno));
}

static void put_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
	char p[4096];
	xpath(p, sizeof p, dir, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	mkdirs(p);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		fail_msg("open %s: %s", p, strerror(errno));
	if (len && write(fd, data, len) != (ssize_t)len)
		fail_msg("write %s: %s", p, strerror(errno));
	fchmod(fd, mode);
	close(fd);
}

static void put_str(const char *dir, const char *rel, const char *text, mode_t mode)
{
	put_file(dir, rel, text, strlen(text), mode);
}

static void put_link(const char *dir, const char *rel, const char *target)
{
	char p[4096];
	xpath(p, sizeof p, dir, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	mkdirs(p);
	*slash = '/';
	if (symlink(target, p) < 0)
		fail_msg("symlink %s: %s", p, strerror(errno));
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t nartifacts(struct store *s)
{
	struct store_stats st;
	assert_int_equal(store_stats(s, &st), 0);
	return st.nartifacts;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	snprintf(f->root, sizeof f->root, "/tmp/shoal-import-XXXXXX");
	if (!mkdtemp(f->root))
		fail_msg("mkdtemp: %s", strerror(errno));
	xpath(f->src, sizeof f->src, f->root, "src");
	mkdirs(f->src);
	char sp[128];
	xpath(sp, sizeof sp, f->root, "store");
	struct store_opts o = { .path = sp, .nosync = true };
	int r = store_open(&o, &f->s);
	if (r < 0)
		fail_msg("store_open: %d %s", r, store_strerror(r));
	f->big = malloc(BIG_LEN);
	assert_non_null(f->big);
	uint32_t x = 2463534242u; /* xorshift: deterministic, incompressible enough */
	for (size_t i = 0; i < BIG_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		f->big[i] = (uint8_t)x;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	rm_rf(f->root);
	free(f->big);
	free(f);
	return 0;
}

/* The artifact's file at @path, or fail. */
static const struct store_file *art_file(const struct store_artifact_info *a, const char *path)
{
	for (size_t i = 0; i < a->manifest.nfiles; i++)
		if (strcmp(a->manifest.files[i].path, path) == 0)
			return &a->manifest.files[i];
	fail_msg("artifact has no file \"%s\"", path);
	return NULL;
}

/* Its bytes in the store equal @data. */
static void check_blob(struct store *s, const struct store_artifact_info *a, const char *path,
		       uint32_t mode, const void *data, size_t len)
{
	const struct store_file *sf = art_file(a, path);
	if (sf->mode != mode)
		fail_msg("%s: mode %o, want %o", path, sf->mode, mode);
	if (sf->size != len)
		fail_msg("%s: size %llu, want %zu", path, (unsigned long long)sf->size, len);
	uint8_t *buf = malloc(len + 1);
	assert_non_null(buf);
	int64_t n = store_blob_read(s, &sf->blob, 0, buf, len + 1, true);
	if (n != (int64_t)len)
		fail_msg("%s: read %lld bytes, want %zu", path, (long long)n, len);
	if (len && memcmp(buf, data, len) != 0)
		fail_msg("%s: stored bytes differ from the source", path);
	free(buf);
}

/* The materialized file at @dir/@rel equals @data with @mode (or is a symlink to @target). */
static void check_disk(const char *dir, const char *rel, mode_t mode, const void *data, size_t len,
		       const char *target)
{
	char p[4096];
	xpath(p, sizeof p, dir, rel);
	struct stat st;
	if (lstat(p, &st) < 0)
		fail_msg("%s: %s", p, strerror(errno));
	if (target) {
		char t[4096];
		ssize_t n = readlink(p, t, sizeof t - 1);
		if (!S_ISLNK(st.st_mode) || n < 0)
			fail_msg("%s: not a symlink", p);
		t[n] = '\0';
		assert_str(t, target);
		return;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 0777) != mode)
		fail_msg("%s: mode %o, want regular %o", p, st.st_mode, mode);
	if ((size_t)st.st_size != len)
		fail_msg("%s: size %lld, want %zu", p, (long long)st.st_size, len);
	uint8_t *buf = malloc(len + 1);
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, len + 1);
	close(fd);
	if (n != (ssize_t)len || (len && memcmp(buf, data, len) != 0))
		fail_msg("%s: materialized bytes differ", p);
	free(buf);
}

/* A directory holding the "web" release used by most tests. */
static void make_web(struct fx *f, const char *dir)
{
	put_str(dir, "release.ini", WEB_RELEASE, 0644);
	put_file(dir, "bin/web", f->big, BIG_LEN, 0700); /* any x bit -> 0755 */
	put_str(dir, "check.sh", "#!/bin/sh\nexit 0\n", 0744);
	put_str(dir, "conf/web.conf", "port=8080\n", 0600); /* no x bit -> 0644 */
	put_file(dir, "conf/empty", "", 0, 0644);
	put_link(dir, "current", "bin/web");
	put_link(dir, "conf/bin", "../bin");
	put_link(dir, "dangling", "not/there/yet"); /* inside, even if it does not exist */
}

/* ---- directories: success ------------------------------------------------------------------ */

static void test_dir_roundtrip(void **state)
{
	struct fx *f = *state;
	make_web(f, f->src);
	struct store_id id, id2;
	char err[512] = "junk";
	int r = store_import_dir(f->s, f->src, NULL, 1000, &id, err, sizeof err);
	assert_rc(r, 0, err);
	assert_str(err, "");

	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	assert_str(a.manifest.service, "web");
	assert_str(a.manifest.health.exec, "./check.sh");
	assert_int_equal(a.manifest.health.interval_ms, 500);
	assert_null(a.manifest.git_commit);
	assert_int_equal(a.imported_at_ms, 1000);
	/* release.ini, bin/web, check.sh, conf/bin, conf/empty, conf/web.conf, current, dangling */
	assert_int_equal(a.manifest.nfiles, 8);
	for (size_t i = 1; i < a.manifest.nfiles; i++)
		assert_true(strcmp(a.manifest.files[i - 1].path, a.manifest.files[i].path) < 0);
	check_blob(f->s, &a, "release.ini", 0644, WEB_RELEASE, strlen(WEB_RELEASE));
	check_blob(f->s, &a, "bin/web", 0755, f->big, BIG_LEN);
	check_blob(f->s, &a, "check.sh", 0755, "#!/bin/sh\nexit 0\n", 17);
	check_blob(f->s, &a, "conf/web.conf", 0644, "port=8080\n", 10);
	check_blob(f->s, &a, "conf/empty", 0644, "", 0);
	check_blob(f->s, &a, "current", 0120000, "bin/web", 7);
	check_blob(f->s, &a, "conf/bin", 0120000, "../bin", 6);
	check_blob(f->s, &a, "dangling", 0120000, "not/there/yet", 13);
	uint32_t chunks = 0;
	assert_int_equal(store_blob_chunks(f->s, &art_file(&a, "bin/web")->blob, &chunks), 0);
	assert_int_equal(chunks, 2);
	store_artifact_info_release(&a);

	/* Materialized: byte-identical, same modes, same symlinks. */
	char mat[128];
	xpath(mat, sizeof mat, f->root, "mat");
	assert_int_equal(store_artifact_materialize(f->s, &id, mat), 0);
	check_disk(mat, "release.ini", 0644, WEB_RELEASE, strlen(WEB_RELEASE), NULL);
	check_disk(mat, "bin/web", 0755, f->big, BIG_LEN, NULL);
	check_disk(mat, "check.sh", 0755, "#!/bin/sh\nexit 0\n", 17, NULL);
	check_disk(mat, "conf/empty", 0644, "", 0, NULL);
	check_disk(mat, "current", 0, NULL, 0, "bin/web");
	check_disk(mat, "conf/bin", 0, NULL, 0, "../bin");

	/* Same content again: same id, reported as already there. */
	r = store_import_dir(f->s, f->src, NULL, 2000, &id2, err, sizeof err);
	assert_rc(r, 1, err);
	assert_memory_equal(id.b, id2.b, STORE_ID_LEN);
	assert_int_equal(nartifacts(f->s), 1);
}

/* Same content built in another order, with a .git directory and an empty directory: same id. */
static void test_dir_deterministic(void **state)
{
	struct fx *f = *state;
	make_web(f, f->src);
	char other[128];
	xpath(other, sizeof other, f->root, "other");
	put_link(other, "dangling", "not/there/yet");
	put_link(other, "conf/bin", "../bin");
	put_str(other, "conf/web.conf", "port=8080\n", 0640);
	put_file(other, "conf/empty", "", 0, 0600);
	put_file(other, "bin/web", f->big, BIG_LEN, 0755);
	put_str(other, "check.sh", "#!/bin/sh\nexit 0\n", 0755);
	put_link(other, "current", "bin/web");
	put_str(other, "release.ini", WEB_RELEASE, 0444);
	put_str(other, ".git/config", "[core]\n", 0644);
	put_str(other, "sub/.git", "gitdir: elsewhere\n", 0644);
	char empty[160];
	xpath(empty, sizeof empty, other, "empty/dir");
	mkdirs(empty);

	struct store_id a, b;
	char err[512];
	assert_rc(store_import_dir(f->s, f->src, NULL, 1, &a, err, sizeof err), 0, err);
	assert_rc(store_import_dir(f->s, other, NULL, 2, &b, err, sizeof err), 1, err);
	assert_memory_equal(a.b, b.b, STORE_ID_LEN);

	/* One byte different: another artifact. */
	put_str(other, "conf/web.conf", "port=8081\n", 0644);
	assert_rc(store_import_dir(f->s, other, NULL, 3, &b, err, sizeof err), 0, err);
	assert_memory_not_equal(a.b, b.b, STORE_ID_LEN);
	assert_int_equal(nartifacts(f->s), 2);
}

/* A symlink to a directory is stored as a symlink; the walk never goes through it. */
static void test_dir_symlinked_dir(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "check.sh", "y", 0755);
	put_link(f->src, "bin2", "bin");
	put_link(f->src, "s", ".");
	put_link(f->src, "t", "s/s/s/bin/web"); /* through symlinks, still inside */
	struct store_id id;
	char err[512];
	assert_rc(store_import_dir(f->s, f->src, NULL, 1, &id, err, sizeof err), 0, err);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	assert_int_equal(a.manifest.nfiles, 6);
	check_blob(f->s, &a, "bin2", 0120000, "bin", 3);
	check_blob(f->s, &a, "s", 0120000, ".", 1);
	store_artifact_info_release(&a);
}

/* ---- directories: failures ------------------------------------------------------------------- */

struct fail_case {
	const char *name;
	int err;
	const char *msg; /* substring of the message */
};

static void expect_dir_fail(struct fx *f, const struct store_import_limits *lim, int want,
			    const char *msg)
{
	struct store_id id;
	memset(&id, 0x77, sizeof id);
	char err[512] = "";
	int r = store_import_dir(f->s, f->src, lim, 1, &id, err, sizeof err);
	assert_rc(r, want, err);
	assert_contains(err, msg);
	assert_int_equal(id.b[0], 0x77); /* untouched */
	assert_int_equal(nartifacts(f->s), 0);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nblobs, 0);
	assert_int_equal(st.nchunks, 0);
}

static void test_dir_no_release(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "sub/release.ini", WEB_RELEASE, 0644);
	char want[256];
	snprintf(want, sizeof want, "%s: no release.ini at the root", f->src);
	expect_dir_fail(f, NULL, -STORE_EINVALID, want);
}

static void test_dir_release_symlink(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "real.ini", WEB_RELEASE, 0644);
	put_link(f->src, "release.ini", "real.ini");
	expect_dir_fail(f, NULL, -STORE_EINVALID, "release.ini: must be a regular file, not a symlink");
}

static void test_dir_release_too_large(void **state)
{
	struct fx *f = *state;
	char *big = malloc(STORE_RELEASE_MAX_SIZE + 1);
	assert_non_null(big);
	memset(big, ';', STORE_RELEASE_MAX_SIZE + 1);
	put_file(f->src, "release.ini", big, STORE_RELEASE_MAX_SIZE + 1, 0644);
	free(big);
	expect_dir_fail(f, NULL, -STORE_EINVALID, "release.ini: too large (65537 bytes, max 65536)");
}

static void test_dir_release_invalid(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini",
		"[release]\nservice = web\nruntime = exec\n[exec]\ncommand = true\n[health]\n"
		"interval = 2x\n",
		0644);
	expect_dir_fail(f, NULL, -STORE_EINVALID,
			"release.ini:7: [health] interval: invalid duration \"2x\"");
}

/* Files release.ini names must be in the artifact. */
static void test_dir_release_missing_files(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	expect_dir_fail(f, NULL, -STORE_EINVALID,
			"release.ini:7: [health] exec: \"check.sh\" not found in the artifact");
	put_str(f->src, "release.ini",
		"[release]\nservice = web\nruntime = systemd\n[systemd]\nunit = web.service\n",
		0644);
	put_str(f->src, "units/web.service", "[Service]\n", 0644);
	expect_dir_fail(f, NULL, -STORE_EINVALID,
			"release.ini:5: [systemd] unit: \"web.service\" not found in the artifact");
	put_str(f->src, "release.ini",
		"[release]\nservice = web\nruntime = container\n[container]\narchive = img.tar\n",
		0644);
	put_link(f->src, "img.tar", "units"); /* a symlink counts as present */
	struct store_id id;
	char err[512];
	assert_rc(store_import_dir(f->s, f->src, NULL, 1, &id, err, sizeof err), 0, err);
}

static void test_dir_symlink_escape(void **state)
{
	static const struct {
		const char *link, *target, *msg;
	} t[] = {
		{ "abs", "/etc/passwd", "abs -> /etc/passwd: absolute symlink target" },
		{ "up", "..", "up -> ..: symlink points outside the tree" },
		{ "a/b/c", "../../../x", "a/b/c -> ../../../x: symlink points outside the tree" },
		{ "a/deep", "b/../../..", "a/deep -> b/../../..: symlink points outside" },
		/* lexically "." but the kernel goes through s (-> .) then up: outside */
		{ "x", "s/..", "x -> s/..: symlink points outside the tree" },
		/* through a link to an absolute target */
		{ "a0", "abs2/z", "a0 -> abs2/z: leads to abs2 -> /tmp, an absolute target" },
		{ "loop1", "loop2", "too many levels of symlinks" },
		{ "n", "new/dir/../../../x", "n -> new/dir/../../../x: symlink points outside" },
	};
	struct fx *f = *state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		rm_rf(f->src);
		mkdirs(f->src);
		put_str(f->src, "release.ini", WEB_RELEASE, 0644);
		put_str(f->src, "bin/web", "x", 0755);
		put_str(f->src, "check.sh", "y", 0755);
		put_str(f->src, "a/b/file", "z", 0644);
		put_link(f->src, "s", ".");
		put_link(f->src, t[i].link, t[i].target);
		if (strcmp(t[i].link, "a0") == 0)
			put_link(f->src, "abs2", "/tmp");
		if (strcmp(t[i].link, "loop1") == 0)
			put_link(f->src, "loop2", "loop1");
		struct store_id id;
		char err[512] = "";
		int r = store_import_dir(f->s, f->src, NULL, 1, &id, err, sizeof err);
		if (r != -STORE_EESCAPE || !strstr(err, t[i].msg))
			fail_msg("case %zu (%s -> %s): got %d \"%s\", want %d \"%s\"", i,
				 t[i].link, t[i].target, r, err, -STORE_EESCAPE, t[i].msg);
	}
	assert_int_equal(nartifacts(f->s), 0);
}

/* Names an operator's terminal or a log line would interpret: refused, the name escaped. */
static void test_dir_bad_names(void **state)
{
	static const struct {
		const char *name, *msg;
	} t[] = {
		{ "a\nb", "\"a\\x0ab\": control character in path" },
		{ "\x1b[2Jclear", "\"\\x1b[2Jclear\": control character in path" },
		{ "d/del\x7f", "\"d/del\\x7f\": control character in path" },
		{ "c1\xc2\x9b", "\"c1\\xc2\\x9b\": control character in path" },
		{ "latin1-caf\xe9", "\"latin1-caf\\xe9\": invalid UTF-8 in path" },
	};
	struct fx *f = *state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		rm_rf(f->src);
		mkdirs(f->src);
		put_str(f->src, "release.ini", WEB_RELEASE, 0644);
		put_str(f->src, "bin/web", "x", 0755);
		put_str(f->src, "check.sh", "y", 0755);
		put_str(f->src, t[i].name, "z", 0644);
		expect_dir_fail(f, NULL, -STORE_EBADPATH, t[i].msg);
	}
	/* A symlink target with a control character, too. */
	rm_rf(f->src);
	mkdirs(f->src);
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "check.sh", "y", 0755);
	put_link(f->src, "l", "bin/w\neb");
	expect_dir_fail(f, NULL, -STORE_EBADPATH,
			"l -> \"bin/w\\x0aeb\": control character in symlink target");
	/* UTF-8 names are fine. */
	rm_rf(f->src);
	mkdirs(f->src);
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "check.sh", "y", 0755);
	put_str(f->src, "caf\xc3\xa9.txt", "z", 0644);
	struct store_id id;
	char err[512];
	assert_rc(store_import_dir(f->s, f->src, NULL, 1, &id, err, sizeof err), 0, err);
}

static void test_dir_special_files(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "check.sh", "y", 0755);
	char p[256];
	xpath(p, sizeof p, f->src, "run/fifo");
	mkdirs(p);
	rmdir(p);
	assert_int_equal(mkfifo(p, 0644), 0);
	expect_dir_fail(f, NULL, -STORE_EINVALID,
			"run/fifo: a fifo (only regular files, directories and symlinks)");
}

static void test_dir_limits(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_file(f->src, "bin/web", f->big, 1000, 0755);
	put_str(f->src, "check.sh", "y", 0755);
	put_file(f->src, "data/big.bin", f->big, 1001, 0644);

	struct store_import_limits lim = { .max_file_size = 1000 };
	expect_dir_fail(f, &lim, -STORE_ETOOBIG,
			"data/big.bin: 1001 bytes, over the file size limit of 1000 bytes");

	lim = (struct store_import_limits){ .max_total_size = 2000 };
	expect_dir_fail(f, &lim, -STORE_ETOOBIG,
			"data/big.bin: total size over the limit of 2000 bytes");

	lim = (struct store_import_limits){ .max_files = 3 };
	expect_dir_fail(f, &lim, -STORE_ETOOBIG, "release.ini: over the limit of 3 files");

	/* A symlink counts its target's length. */
	put_link(f->src, "l", "data/big.bin");
	lim = (struct store_import_limits){ .max_file_size = 11, .max_total_size = 1 << 20 };
	expect_dir_fail(f, &lim, -STORE_ETOOBIG, "over the file size limit of 11 bytes");

	/* Nesting. */
	char deep[512] = "";
	for (int i = 0; i < 66; i++)
		strcat(deep, "d/");
	strcat(deep, "f");
	put_str(f->src, deep, "x", 0644);
	expect_dir_fail(f, NULL, -STORE_ETOOBIG, ": directories nested deeper than 64");
	char top[256];
	xpath(top, sizeof top, f->src, "d");
	rm_rf(top);

	/* Exactly at every limit passes. */
	lim = (struct store_import_limits){ .max_file_size = 1001,
					    .max_total_size = strlen(WEB_RELEASE) + 1000 + 1 +
							      1001 + 12,
					    .max_files = 5 };
	struct store_id id;
	char err[512];
	assert_rc(store_import_dir(f->s, f->src, &lim, 1, &id, err, sizeof err), 0, err);
}

static void test_dir_not_found(void **state)
{
	struct fx *f = *state;
	char p[256], err[512];
	struct store_id id;
	xpath(p, sizeof p, f->root, "nope");
	assert_rc(store_import_dir(f->s, p, NULL, 1, &id, err, sizeof err), -ENOENT, err);
	assert_contains(err, "nope: No such file or directory");
	xpath(p, sizeof p, f->src, "file");
	put_str(f->src, "file", "x", 0644);
	assert_rc(store_import_dir(f->s, p, NULL, 1, &id, err, sizeof err), -ENOTDIR, err);
	assert_rc(store_import_dir(f->s, NULL, NULL, 1, &id, NULL, 0), -EINVAL, "");
}

/* Every allocation failure gives -ENOMEM, stores nothing, leaks nothing; then it succeeds. */
static void test_dir_oom_loop(void **state)
{
	struct fx *f = *state;
	put_str(f->src, "release.ini", WEB_RELEASE, 0644);
	put_str(f->src, "bin/web", "x", 0755);
	put_str(f->src, "check.sh", "y", 0755);
	put_link(f->src, "l", "bin/web");
	long n;
	for (n = 1; n < 1000; n++) {
		struct store_id id;
		char err[512] = "";
		store__alloc_fail_after(n, false);
		int r = store_import_dir(f->s, f->src, NULL, 1, &id, err, sizeof err);
		store__alloc_fail_after(-1, false);
		if (r >= 0)
			break;
		if (r != -ENOMEM)
			fail_msg("allocation %ld failing: got %d \"%s\", want -ENOMEM", n, r, err);
		assert_str(err, "out of memory");
		if (nartifacts(f->s) != 0)
			fail_msg("allocation %ld failing: an artifact was stored", n);
	}
	assert_true(n > 10 && n < 1000);
	assert_int_equal(nartifacts(f->s), 1);
}

/* ---- git ----------------------------------------------------------------------------------- */

struct gfile {
	const char *path;
	unsigned mode;	  /* GIT_FILEMODE_* */
	const void *data; /* NULL for a submodule (the repo's first commit is used) */
	size_t len;	  /* 0: strlen(data) */
};

/* Write the tree of the @n files under @prefix ("" = root) into @repo. */
static void build_tree(git_repository *repo, const struct gfile *fl, size_t n, const char *prefix,
		       const git_oid *gitlink, git_oid *out)
{
	git_treebuilder *b = NULL;
	git_ok(git_treebuilder_new(&b, repo, NULL));
	size_t pl = strlen(prefix);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(fl[i].path, prefix, pl) != 0)
			continue;
		const char *rest = fl[i].path + pl;
		const char *slash = strchr(rest, '/');
		git_oid oid;
		if (!slash) {
			if (fl[i].mode == GIT_FILEMODE_COMMIT) {
				oid = *gitlink;
			} else {
				size_t len = fl[i].len ? fl[i].len : strlen(fl[i].data);
				git_ok(git_blob_create_from_buffer(&oid, repo, fl[i].data, len));
			}
			git_ok(git_treebuilder_insert(NULL, b, rest, &oid, fl[i].mode));
			continue;
		}
		char name[256], sub[512];
		snprintf(name, sizeof name, "%.*s", (int)(slash - rest), rest);
		if (git_treebuilder_get(b, name))
			continue;
		snprintf(sub, sizeof sub, "%s%s/", prefix, name);
		build_tree(repo, fl, n, sub, gitlink, &oid);
		git_ok(git_treebuilder_insert(NULL, b, name, &oid, GIT_FILEMODE_TREE));
	}
	git_ok(git_treebuilder_write(out, b));
	git_treebuilder_free(b);
}

/* Commit @fl on @branch (parent: its current tip, if any). */
static void commit_files(git_repository *repo, const char *branch, const struct gfile *fl,
			 size_t n, const char *msg, git_oid *ret)
{
	git_oid tree_id, gitlink;
	memset(&gitlink, 0, sizeof gitlink);
	git_reference *head = NULL;
	git_commit *parent = NULL;
	char refname[128];
	snprintf(refname, sizeof refname, "refs/heads/%s", branch);
	if (git_reference_lookup(&head, repo, refname) == 0)
		git_ok(git_commit_lookup(&parent, repo, git_reference_target(head)));
	/* A submodule entry points at main's tip (any commit id would do). */
	git_reference *m = NULL;
	if (git_reference_lookup(&m, repo, "refs/heads/main") == 0)
		gitlink = *git_reference_target(m);
	git_reference_free(m);
	build_tree(repo, fl, n, "", &gitlink, &tree_id);
	git_tree *tree = NULL;
	git_ok(git_tree_lookup(&tree, repo, &tree_id));
	git_signature *sig = NULL;
	git_ok(git_signature_new(&sig, "Alice Example", "alice@example.com", 1700000000, 60));
	const git_commit *parents[1] = { parent };
	git_ok(git_commit_create(ret, repo, refname, sig, sig, NULL, msg, tree, parent ? 1 : 0,
				 parents));
	git_signature_free(sig);
	git_tree_free(tree);
	git_commit_free(parent);
	git_reference_free(head);
}

static void tag(git_repository *repo, const char *name, const git_oid *commit, bool annotated)
{
	git_object *o = NULL;
	git_oid oid;
	git_ok(git_object_lookup(&o, repo, commit, GIT_OBJECT_COMMIT));
	if (annotated) {
		git_signature *sig = NULL;
		git_ok(git_signature_new(&sig, "Bob Tagger", "bob@example.com", 1700000100, 0));
		git_ok(git_tag_create(&oid, repo, name, o, sig, "a release", 0));
		git_signature_free(sig);
	} else {
		git_ok(git_tag_create_lightweight(&oid, repo, name, o, 0));
	}
	git_object_free(o);
}

static git_repository *new_repo(struct fx *f, const char *name, bool bare, char *path,
				size_t cap)
{
	xpath(path, cap, f->root, name);
	git_repository *repo = NULL;
	git_ok(git_repository_init(&repo, path, bare));
	return repo;
}

static const char check_sh[] = "#!/bin/sh\nexit 0\n";

static void web_files(struct fx *f, struct gfile *fl)
{
	fl[0] = (struct gfile){ "release.ini", GIT_FILEMODE_BLOB, WEB_RELEASE, 0 };
	fl[1] = (struct gfile){ "bin/web", GIT_FILEMODE_BLOB_EXECUTABLE, f->big, BIG_LEN };
	fl[2] = (struct gfile){ "check.sh", GIT_FILEMODE_BLOB_EXECUTABLE, check_sh, 0 };
	fl[3] = (struct gfile){ "conf/web.conf", GIT_FILEMODE_BLOB, "port=8080\r\n", 0 };
	fl[4] = (struct gfile){ "current", GIT_FILEMODE_LINK, "bin/web", 0 };
	fl[5] = (struct gfile){ "conf/bin", GIT_FILEMODE_LINK, "../bin", 0 };
}

static void test_git_tags_and_refs(void **state)
{
	struct fx *f = *state;
	char rp[128], err[512], hex[GIT_OID_HEXSZ + 1];
	git_repository *repo = new_repo(f, "repo", false, rp, sizeof rp);
	struct gfile fl[6];
	web_files(f, fl);
	git_oid c1;
	commit_files(repo, "main", fl, 6, "  Initial commit\n\nwith a body\n\n", &c1);
	git_oid_tostr(hex, sizeof hex, &c1);
	tag(repo, "v1.0", &c1, true);
	tag(repo, "v1-light", &c1, false);

	/* Annotated tag. */
	struct store_id id;
	int r = store_import_git(f->s, rp, "v1.0", NULL, NULL, 5, &id, err, sizeof err);
	assert_rc(r, 0, err);
	assert_str(err, "");
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	assert_str(a.manifest.git_commit, hex);
	assert_str(a.manifest.git_tag, "v1.0");
	assert_str(a.manifest.version, "v1.0"); /* release.ini has none */
	assert_str(a.manifest.git_author, "Alice Example <alice@example.com>");
	assert_str(a.manifest.git_message, "Initial commit\n\nwith a body");
	assert_int_equal(a.manifest.nfiles, 6);
	check_blob(f->s, &a, "release.ini", 0644, WEB_RELEASE, strlen(WEB_RELEASE));
	check_blob(f->s, &a, "bin/web", 0755, f->big, BIG_LEN);
	check_blob(f->s, &a, "check.sh", 0755, check_sh, strlen(check_sh));
	check_blob(f->s, &a, "conf/web.conf", 0644, "port=8080\r\n", 11); /* no CRLF filter */
	check_blob(f->s, &a, "current", 0120000, "bin/web", 7);
	check_blob(f->s, &a, "conf/bin", 0120000, "../bin", 6);
	store_artifact_info_release(&a);

	char mat[128];
	xpath(mat, sizeof mat, f->root, "mat");
	assert_int_equal(store_artifact_materialize(f->s, &id, mat), 0);
	check_disk(mat, "bin/web", 0755, f->big, BIG_LEN, NULL);
	check_disk(mat, "conf/web.conf", 0644, "port=8080\r\n", 11, NULL);
	check_disk(mat, "conf/bin", 0, NULL, 0, "../bin");

	/* Same ref again, and the full ref name: same artifact. */
	struct store_id id2;
	assert_rc(store_import_git(f->s, rp, "v1.0", "", NULL, 6, &id2, err, sizeof err), 1, err);
	assert_memory_equal(id.b, id2.b, STORE_ID_LEN);
	assert_rc(store_import_git(f->s, rp, "refs/tags/v1.0", NULL, NULL, 6, &id2, err,
				   sizeof err),
		  1, err);
	assert_memory_equal(id.b, id2.b, STORE_ID_LEN);

	/* Lightweight tag: another tag name, so another artifact. */
	assert_rc(store_import_git(f->s, rp, "v1-light", NULL, NULL, 7, &id2, err, sizeof err), 0,
		  err);
	assert_int_equal(store_artifact_get(f->s, &id2, &a), 0);
	assert_str(a.manifest.git_tag, "v1-light");
	assert_str(a.manifest.version, "v1-light");
	assert_str(a.manifest.git_commit, hex);
	store_artifact_info_release(&a);

	/* Branch, full and abbreviated commit id: no tag, no version. */
	const char *refs[] = { "main", hex, "HEAD~0", NULL };
	char abbrev[12];
	snprintf(abbrev, sizeof abbrev, "%.10s", hex);
	refs[2] = abbrev;
	struct store_id first;
	for (int i = 0; refs[i]; i++) {
		r = store_import_git(f->s, rp, refs[i], NULL, NULL, 8, &id2, err, sizeof err);
		assert_rc(r, i == 0 ? 0 : 1, err);
		if (i == 0)
			first = id2;
		assert_memory_equal(first.b, id2.b, STORE_ID_LEN);
	}
	assert_int_equal(store_artifact_get(f->s, &first, &a), 0);
	assert_null(a.manifest.git_tag);
	assert_null(a.manifest.version);
	assert_str(a.manifest.git_commit, hex);
	store_artifact_info_release(&a);
	assert_int_equal(nartifacts(f->s), 3);

	/* The files are the very blobs a directory import of the same content gives. */
	char dir[128];
	xpath(dir, sizeof dir, f->root, "same");
	put_str(dir, "release.ini", WEB_RELEASE, 0644);
	put_file(dir, "bin/web", f->big, BIG_LEN, 0755);
	put_str(dir, "check.sh", check_sh, 0755);
	put_str(dir, "conf/web.conf", "port=8080\r\n", 0644);
	put_link(dir, "current", "bin/web");
	put_link(dir, "conf/bin", "../bin");
	struct store_id did;
	assert_rc(store_import_dir(f->s, dir, NULL, 9, &did, err, sizeof err), 0, err);
	struct store_artifact_info d;
	assert_int_equal(store_artifact_get(f->s, &did, &d), 0);
	assert_int_equal(store_artifact_get(f->s, &first, &a), 0);
	assert_int_equal(d.manifest.nfiles, a.manifest.nfiles);
	for (size_t i = 0; i < d.manifest.nfiles; i++) {
		assert_str(d.manifest.files[i].path, a.manifest.files[i].path);
		assert_int_equal(d.manifest.files[i].mode, a.manifest.files[i].mode);
		assert_memory_equal(d.manifest.files[i].blob.b, a.manifest.files[i].blob.b,
				    STORE_ID_LEN);
	}
	store_artifact_info_release(&a);
	store_artifact_info_release(&d);
	git_repository_free(repo);
}

/* A release.ini version wins over the tag; a bare repository works; a second commit. */
static void test_git_version_bare(void **state)
{
	struct fx *f = *state;
	char rp[128], err[512];
	git_repository *repo = new_repo(f, "bare.git", true, rp, sizeof rp);
	static const char rel[] = "[release]\nservice = api\nruntime = exec\nversion = 2.0.0-rc1\n"
				  "[exec]\ncommand = sleep 1000\n";
	struct gfile fl[] = { { "release.ini", GIT_FILEMODE_BLOB, rel, 0 } };
	git_oid c1, c2;
	commit_files(repo, "main", fl, 1, "first", &c1);
	tag(repo, "v2", &c1, true);
	struct gfile fl2[] = { { "release.ini", GIT_FILEMODE_BLOB, rel, 0 },
			       { "NOTES", GIT_FILEMODE_BLOB, "more", 0 } };
	commit_files(repo, "main", fl2, 2, "second\n", &c2);

	struct store_id id1, id2;
	assert_rc(store_import_git(f->s, rp, "v2", NULL, NULL, 1, &id1, err, sizeof err), 0, err);
	assert_rc(store_import_git(f->s, rp, "main", NULL, NULL, 1, &id2, err, sizeof err), 0, err);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id1, &a), 0);
	assert_str(a.manifest.version, "2.0.0-rc1");
	assert_str(a.manifest.git_tag, "v2");
	assert_int_equal(a.manifest.nfiles, 1);
	store_artifact_info_release(&a);
	assert_int_equal(store_artifact_get(f->s, &id2, &a), 0);
	assert_str(a.manifest.git_message, "second");
	assert_int_equal(a.manifest.nfiles, 2);
	char hex[GIT_OID_HEXSZ + 1];
	git_oid_tostr(hex, sizeof hex, &c2);
	assert_str(a.manifest.git_commit, hex);
	store_artifact_info_release(&a);
	/* A huge message is cut at 64 KiB, on a UTF-8 character boundary. */
	size_t ml = 1 + 2 * 40000;
	char *msg = malloc(ml + 1);
	assert_non_null(msg);
	msg[0] = 'x';
	for (size_t i = 1; i < ml; i += 2) {
		msg[i] = (char)0xc3; /* U+00E9 */
		msg[i + 1] = (char)0xa9;
	}
	msg[ml] = '\0';
	git_oid c3;
	commit_files(repo, "long", fl, 1, msg, &c3);
	free(msg);
	struct store_id id3;
	assert_rc(store_import_git(f->s, rp, "long", NULL, NULL, 1, &id3, err, sizeof err), 0, err);
	assert_int_equal(store_artifact_get(f->s, &id3, &a), 0);
	assert_int_equal(strlen(a.manifest.git_message), 65535);
	store_artifact_info_release(&a);

	/* Commit metadata with escape bytes and Latin-1: imported, those bytes as '?' (the
	 * manifest rules refuse them, and an operator cannot fix a commit already made). */
	git_oid c4;
	commit_files(repo, "esc", fl, 1, "fix \x1b[31mred\x1b[0m caf\xe9\n\n\tbody\r\n", &c4);
	struct store_id id4;
	assert_rc(store_import_git(f->s, rp, "esc", NULL, NULL, 1, &id4, err, sizeof err), 0, err);
	assert_int_equal(store_artifact_get(f->s, &id4, &a), 0);
	assert_str(a.manifest.git_message, "fix ?[31mred?[0m caf?\n\n\tbody");
	store_artifact_info_release(&a);

	/* "main~1" is the first commit, without the tag. */
	assert_rc(store_import_git(f->s, rp, "main~1", NULL, NULL, 1, &id2, err, sizeof err), 0,
		  err);
	assert_int_equal(store_artifact_get(f->s, &id2, &a), 0);
	git_oid_tostr(hex, sizeof hex, &c1);
	assert_str(a.manifest.git_commit, hex);
	assert_null(a.manifest.git_tag);
	store_artifact_info_release(&a);
	git_repository_free(repo);
}

static void test_git_subdir(void **state)
{
	struct fx *f = *state;
	char rp[128], err[512];
	git_repository *repo = new_repo(f, "mono", false, rp, sizeof rp);
	struct gfile fl[] = {
		{ "README", GIT_FILEMODE_BLOB, "top\n", 0 },
		{ "deploy/web/release.ini", GIT_FILEMODE_BLOB, WEB_RELEASE, 0 },
		{ "deploy/web/bin/web", GIT_FILEMODE_BLOB_EXECUTABLE, "ELF", 0 },
		{ "deploy/web/check.sh", GIT_FILEMODE_BLOB_EXECUTABLE, check_sh, 0 },
		{ "deploy/web/cur", GIT_FILEMODE_LINK, "bin/web", 0 },
		{ "deploy/bad/release.ini", GIT_FILEMODE_BLOB, WEB_RELEASE, 0 },
		{ "deploy/bad/bin/web", GIT_FILEMODE_BLOB_EXECUTABLE, "ELF", 0 },
		{ "deploy/bad/check.sh", GIT_FILEMODE_BLOB_EXECUTABLE, check_sh, 0 },
		{ "deploy/bad/readme", GIT_FILEMODE_LINK, "../../README", 0 },
	};
	git_oid c;
	commit_files(repo, "main", fl, sizeof fl / sizeof fl[0], "mono", &c);

	struct store_id id, id2;
	assert_rc(store_import_git(f->s, rp, "main", "deploy/web", NULL, 1, &id, err, sizeof err),
		  0, err);
	assert_rc(store_import_git(f->s, rp, "main", "./deploy/web/", NULL, 1, &id2, err,
				   sizeof err),
		  1, err);
	assert_memory_equal(id.b, id2.b, STORE_ID_LEN);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	assert_int_equal(a.manifest.nfiles, 4);
	check_blob(f->s, &a, "bin/web", 0755, "ELF", 3);
	check_blob(f->s, &a, "cur", 0120000, "bin/web", 7);
	store_artifact_info_release(&a);

	/* Inside the repository but outside the imported subdirectory: escapes. */
	assert_rc(store_import_git(f->s, rp, "main", "deploy/bad", NULL, 1, &id, err, sizeof err),
		  -STORE_EESCAPE, err);
	assert_str(err, "readme -> ../../README: symlink points outside the tree");
	/* The root has no release.ini. */
	assert_rc(store_import_git(f->s, rp, "main", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EINVALID, err);
	assert_contains(err, "at main: no release.ini at the root");
	/* Missing, a file, invalid. */
	assert_rc(store_import_git(f->s, rp, "main", "deploy/nope", NULL, 1, &id, err, sizeof err),
		  -ENOENT, err);
	assert_contains(err, "\"deploy/nope\" not found at main");
	assert_rc(store_import_git(f->s, rp, "main", "README", NULL, 1, &id, err, sizeof err),
		  -ENOTDIR, err);
	assert_contains(err, "\"README\" at main is not a directory");
	assert_rc(store_import_git(f->s, rp, "main", "deploy/../deploy/web", NULL, 1, &id, err,
				   sizeof err),
		  -EINVAL, err);
	assert_rc(store_import_git(f->s, rp, "main", "/deploy/web", NULL, 1, &id, err, sizeof err),
		  -EINVAL, err);
	assert_contains(err, "invalid subdirectory \"/deploy/web\"");
	assert_int_equal(nartifacts(f->s), 1);
	git_repository_free(repo);
}

static void test_git_errors(void **state)
{
	struct fx *f = *state;
	char rp[128], err[512], p[160];
	struct store_id id;
	git_repository *repo = new_repo(f, "repo", false, rp, sizeof rp);
	struct gfile fl[6];
	web_files(f, fl);
	git_oid c;
	commit_files(repo, "main", fl, 6, "one", &c);

	/* Not a repository: a plain directory, a missing path, a file. */
	assert_rc(store_import_git(f->s, f->src, "main", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOTREPO, err);
	assert_contains(err, "not a git repository");
	xpath(p, sizeof p, f->root, "missing");
	assert_rc(store_import_git(f->s, p, "main", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOTREPO, err);
	/* The repository's subdirectory is not searched upwards. */
	xpath(p, sizeof p, rp, "sub");
	mkdirs(p);
	assert_rc(store_import_git(f->s, p, "main", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOTREPO, err);

	/* Refs. */
	assert_rc(store_import_git(f->s, rp, "v9.9", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);
	assert_contains(err, "ref \"v9.9\" not found");
	assert_rc(store_import_git(f->s, rp, "main^{nope", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);
	assert_rc(store_import_git(f->s, rp, "main^{tree}", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);
	assert_contains(err, "ref \"main^{tree}\" does not name a commit");
	assert_rc(store_import_git(f->s, rp, "0000000000000000000000000000000000000001", NULL,
				   NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);
	assert_rc(store_import_git(f->s, rp, "", NULL, NULL, 1, &id, err, sizeof err), -EINVAL,
		  err);
	assert_rc(store_import_git(f->s, rp, NULL, NULL, NULL, 1, &id, err, sizeof err), -EINVAL,
		  err);
	/* A tag of a tree, not a commit. */
	git_object *tree = NULL;
	git_oid toid;
	git_ok(git_revparse_single(&tree, repo, "main^{tree}"));
	git_ok(git_tag_create_lightweight(&toid, repo, "treetag", tree, 0));
	git_object_free(tree);
	assert_rc(store_import_git(f->s, rp, "treetag", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);

	/* An empty repository has no HEAD commit. */
	char ep[128];
	git_repository *empty = new_repo(f, "empty", false, ep, sizeof ep);
	assert_rc(store_import_git(f->s, ep, "HEAD", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_ENOREF, err);
	git_repository_free(empty);

	/* Limits. */
	struct store_import_limits lim = { .max_file_size = BIG_LEN - 1 };
	assert_rc(store_import_git(f->s, rp, "main", NULL, &lim, 1, &id, err, sizeof err),
		  -STORE_ETOOBIG, err);
	char want[128];
	snprintf(want, sizeof want, "bin/web: %d bytes, over the file size limit of %d bytes",
		 BIG_LEN, BIG_LEN - 1);
	assert_str(err, want);
	lim = (struct store_import_limits){ .max_files = 5 };
	assert_rc(store_import_git(f->s, rp, "main", NULL, &lim, 1, &id, err, sizeof err),
		  -STORE_ETOOBIG, err);
	assert_contains(err, "over the limit of 5 files");
	lim = (struct store_import_limits){ .max_total_size = BIG_LEN };
	assert_rc(store_import_git(f->s, rp, "main", NULL, &lim, 1, &id, err, sizeof err),
		  -STORE_ETOOBIG, err);
	assert_contains(err, "total size over the limit");
	assert_int_equal(nartifacts(f->s), 0);
	git_repository_free(repo);
}

static void test_git_bad_trees(void **state)
{
	struct fx *f = *state;
	char rp[128], err[512];
	struct store_id id;
	git_repository *repo = new_repo(f, "repo", false, rp, sizeof rp);
	struct gfile fl[8];
	web_files(f, fl);
	git_oid c;
	commit_files(repo, "main", fl, 6, "one", &c);

	/* Escaping and absolute symlinks, each on its own branch. */
	fl[6] = (struct gfile){ "conf/up", GIT_FILEMODE_LINK, "../..", 0 };
	commit_files(repo, "esc", fl, 7, "escape", &c);
	assert_rc(store_import_git(f->s, rp, "esc", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EESCAPE, err);
	assert_str(err, "conf/up -> ../..: symlink points outside the tree");
	fl[6] = (struct gfile){ "abs", GIT_FILEMODE_LINK, "/etc/shadow", 0 };
	commit_files(repo, "abs", fl, 7, "absolute", &c);
	assert_rc(store_import_git(f->s, rp, "abs", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EESCAPE, err);
	assert_contains(err, "abs -> /etc/shadow: absolute symlink target");
	fl[6] = (struct gfile){ "nul", GIT_FILEMODE_LINK, "a\0b", 3 };
	commit_files(repo, "nul", fl, 7, "nul", &c);
	assert_rc(store_import_git(f->s, rp, "nul", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EINVALID, err);
	assert_str(err, "nul: invalid symlink target (NUL byte)");

	/* A submodule (gitlink) inside the imported tree. */
	fl[6] = (struct gfile){ "vendor/lib", GIT_FILEMODE_COMMIT, NULL, 0 };
	commit_files(repo, "sub", fl, 7, "submodule", &c);
	assert_rc(store_import_git(f->s, rp, "sub", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EINVALID, err);
	assert_contains(err, "vendor/lib: git submodule");

	/* A missing file release.ini names. */
	fl[2] = (struct gfile){ "check2.sh", GIT_FILEMODE_BLOB_EXECUTABLE, check_sh, 0 };
	commit_files(repo, "nocheck", fl, 6, "renamed", &c);
	assert_rc(store_import_git(f->s, rp, "nocheck", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EINVALID, err);
	assert_str(err, "release.ini:7: [health] exec: \"check.sh\" not found in the artifact");
	/* release.ini as a symlink. */
	struct gfile fl2[] = { { "real.ini", GIT_FILEMODE_BLOB, WEB_RELEASE, 0 },
			       { "release.ini", GIT_FILEMODE_LINK, "real.ini", 0 } };
	commit_files(repo, "relink", fl2, 2, "link", &c);
	assert_rc(store_import_git(f->s, rp, "relink", NULL, NULL, 1, &id, err, sizeof err),
		  -STORE_EINVALID, err);
	assert_str(err, "release.ini: must be a regular file, not a symlink");
	assert_int_equal(nartifacts(f->s), 0);
	git_repository_free(repo);
}

/* Allocation failures in a git import: -ENOMEM, nothing stored, no leak, libgit2 shut down. */
static void test_git_oom_loop(void **state)
{
	struct fx *f = *state;
	char rp[128];
	git_repository *repo = new_repo(f, "repo", false, rp, sizeof rp);
	struct gfile fl[6];
	web_files(f, fl);
	git_oid c;
	commit_files(repo, "main", fl, 6, "one", &c);
	tag(repo, "v1", &c, true);
	long n;
	for (n = 1; n < 1000; n++) {
		struct store_id id;
		char err[512] = "";
		store__alloc_fail_after(n, false);
		int r = store_import_git(f->s, rp, "v1", NULL, NULL, 1, &id, err, sizeof err);
		store__alloc_fail_after(-1, false);
		if (r >= 0)
			break;
		if (r != -ENOMEM)
			fail_msg("allocation %ld failing: got %d \"%s\", want -ENOMEM", n, r, err);
		assert_str(err, "out of memory");
		if (nartifacts(f->s) != 0)
			fail_msg("allocation %ld failing: an artifact was stored", n);
	}
	assert_true(n > 10 && n < 1000);
	assert_int_equal(nartifacts(f->s), 1);
	git_repository_free(repo);
}

/* ---- the example artifacts -------------------------------------------------------------- */

#ifndef SHOAL_SOURCE_DIR_DEFAULT
#define SHOAL_SOURCE_DIR_DEFAULT "."
#endif

/* Start `sh -c CMD` in @dir, in its own process group, output to /dev/null. */
static pid_t spawn_sh(const char *dir, const char *cmd)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || chdir(dir) < 0)
			_exit(126);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

/* Wait at most @ms for @pid; returns its wait status, or -1 if still running. */
static int wait_ms(pid_t pid, int ms)
{
	for (int waited = 0;; waited += 10) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 || waited >= ms)
			return -1;
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
}

/* End the process group of @pid (ours): SIGTERM, then SIGKILL after 5 s. Always reaps. */
static int stop_group(pid_t pid)
{
	kill(-pid, SIGTERM);
	int st = wait_ms(pid, 5000);
	if (st == -1) {
		kill(-pid, SIGKILL);
		st = wait_ms(pid, 5000);
	}
	return st;
}

/*
 * examples/web-v1 stays up and passes its check; web-v2 stays up and fails it; web-crash
 * exits with status 3. Imported, materialized and run for real, as the exec plugin would.
 */
static void test_examples(void **state)
{
	static const struct {
		const char *dir, *version;
		bool stays_up;
		int exit_code; /* of bin/web when it does not stay up */
		int check;     /* exit status of check.sh */
	} ex[] = {
		{ "web-v1", "1.0.0", true, 0, 0 },
		{ "web-v2", "2.0.0", true, 0, 1 },
		{ "web-crash", "3.0.0-crash", false, 3, 0 },
	};
	struct fx *f = *state;
	const char *src = getenv("SHOAL_SOURCE_DIR");
	if (!src)
		src = SHOAL_SOURCE_DIR_DEFAULT;
	struct store_id ids[3];
	for (size_t i = 0; i < 3; i++) {
		char dir[4096], mat[256], err[512];
		snprintf(dir, sizeof dir, "%s/examples/%s", src, ex[i].dir);
		assert_rc(store_import_dir(f->s, dir, NULL, 1, &ids[i], err, sizeof err), 0, err);
		struct store_artifact_info a;
		assert_int_equal(store_artifact_get(f->s, &ids[i], &a), 0);
		assert_str(a.manifest.service, "web");
		assert_str(a.manifest.runtime, "exec");
		assert_str(a.manifest.version, ex[i].version);
		assert_str(a.manifest.exec_command, "./bin/web");
		assert_str(a.manifest.health.exec, "./check.sh");
		assert_int_equal(art_file(&a, "bin/web")->mode, 0755);
		assert_int_equal(art_file(&a, "check.sh")->mode, 0755);
		xpath(mat, sizeof mat, f->root, ex[i].dir);
		assert_int_equal(store_artifact_materialize(f->s, &ids[i], mat), 0);

		pid_t chk = spawn_sh(mat, a.manifest.health.exec);
		int cst = wait_ms(chk, 5000);
		if (cst == -1)
			cst = stop_group(chk);
		pid_t web = spawn_sh(mat, a.manifest.exec_command);
		int wst = wait_ms(web, ex[i].stays_up ? 400 : 5000);
		int stopped = wst == -1 ? stop_group(web) : -1;
		store_artifact_info_release(&a);

		if (!WIFEXITED(cst) || WEXITSTATUS(cst) != ex[i].check)
			fail_msg("%s: check.sh wait status 0x%x, want exit %d", ex[i].dir, cst,
				 ex[i].check);
		if (ex[i].stays_up && wst != -1)
			fail_msg("%s: bin/web ended (wait status 0x%x), want it running", ex[i].dir,
				 wst);
		if (ex[i].stays_up && (stopped == -1 || !(WIFEXITED(stopped) ||
							   WIFSIGNALED(stopped))))
			fail_msg("%s: bin/web did not stop on SIGTERM (0x%x)", ex[i].dir, stopped);
		if (!ex[i].stays_up && (!WIFEXITED(wst) || WEXITSTATUS(wst) != ex[i].exit_code))
			fail_msg("%s: bin/web wait status 0x%x, want exit %d", ex[i].dir, wst,
				 ex[i].exit_code);
	}
	assert_memory_not_equal(ids[0].b, ids[1].b, STORE_ID_LEN);
}

int main(void)
{
	git_libgit2_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dir_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_deterministic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_symlinked_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_no_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_release_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_release_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_release_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_release_missing_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_symlink_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_special_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_oom_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_tags_and_refs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_version_bare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_subdir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_bad_trees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git_oom_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_examples, setup, teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	git_libgit2_shutdown();
	return r;
}
