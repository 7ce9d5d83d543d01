/*
 * tests/unit/test_store.c: the store against a real LMDB environment per test (mkdtemp).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

#include "store/store.h"
#include "test_store_util.h"

struct fx {
	char *dir;	/* the store */
	char *work;	/* scratch (materialize targets) */
	struct store *s;
	struct store_opts opts;
	char path[4096];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->work = tu_tmpdir();
	assert_non_null(f->work);
	snprintf(f->path, sizeof(f->path), "%s/db", f->work);
	f->opts.path = f->path;
	f->opts.nosync = true;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	tu_rm_rf(f->work);
	free(f->work);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
}

/* An artifact built from a list of files. */
struct tfile {
	const char *path;
	uint32_t mode;
	const void *data;
	size_t len;
};

static void manifest_init(struct store_manifest *m, const char *service, const char *version)
{
	memset(m, 0, sizeof(*m));
	m->service = strdup(service);
	m->runtime = strdup("exec");
	m->version = version ? strdup(version) : NULL;
	m->exec_command = strdup("./bin/web --port 8080");
	m->health.http = strdup("http://127.0.0.1:8080/healthz");
	m->health.interval_ms = 2000;
	m->health.timeout_ms = 1000;
	m->health.failures = 3;
	m->health.deadline_ms = 60000;
}

static int import_files(struct store *s, const char *service, const char *version,
			const struct tfile *files, size_t n, uint64_t now, struct store_id *ret)
{
	struct store_import *imp;
	int r = store_import_begin(s, &imp);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if ((r = store_import_file(imp, files[i].path, files[i].mode)) < 0)
			goto fail;
		/* Feed in odd-sized pieces to cross chunk boundaries mid-write. */
		size_t off = 0;
		while (off < files[i].len) {
			size_t k = files[i].len - off < 100003 ? files[i].len - off : 100003;
			if ((r = store_import_write(imp, (const uint8_t *)files[i].data + off, k)) < 0)
				goto fail;
			off += k;
		}
		if ((r = store_import_file_end(imp)) < 0)
			goto fail;
	}
	struct store_manifest m;
	manifest_init(&m, service, version);
	r = store_import_commit(imp, &m, now, ret);
	store_manifest_release(&m);
	return r;
fail:
	store_import_abort(imp);
	return r;
}

static int import_simple(struct store *s, const char *service, const char *version, size_t size,
			 uint64_t seed, struct store_id *ret)
{
	uint8_t *b = malloc(size ? size : 1);
	tu_fill(b, size, seed);
	struct tfile tf[] = { { "bin/app", 0755, b, size } };
	int r = import_files(s, service, version, tf, 1, 1000 + seed, ret);
	free(b);
	return r;
}

static void read_all(struct store *s, const struct store_id *blob, uint8_t **ret, size_t *ret_len)
{
	uint64_t size;
	assert_int_equal(store_blob_size(s, blob, &size), 0);
	uint8_t *b = malloc(size + 1);
	int64_t n = store_blob_read(s, blob, 0, b, size + 1, true);
	assert_int_equal(n, (int64_t)size);
	*ret = b;
	*ret_len = size;
}

/* ---- open, ids, errors ------------------------------------------------------------------ */

static void test_open_node_id(void **state)
{
	struct fx *f = *state;
	uint8_t a[STORE_NODE_ID_LEN], b[STORE_NODE_ID_LEN], zero[STORE_NODE_ID_LEN] = { 0 };
	assert_int_equal(store_node_id(f->s, a), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	reopen(f);
	assert_int_equal(store_node_id(f->s, b), 0);
	assert_memory_equal(a, b, sizeof(a));

	struct store *s2 = (struct store *)0x1;
	assert_int_equal(store_open(NULL, &s2), -EINVAL);
	struct store_opts bad = { .path = "/proc/self/no/such/dir" };
	int r = store_open(&bad, &s2);
	assert_true(r < 0);
	assert_ptr_equal(s2, (struct store *)0x1); /* ret untouched */
	store_close(NULL);
}

static int put_schema(MDB_txn *txn, MDB_dbi dbi, void *ud)
{
	uint8_t v[4] = { 0, 0, 0, (uint8_t)(uintptr_t)ud };
	MDB_val k = { 6, "schema" }, d = { 4, v };
	return mdb_put(txn, dbi, &k, &d, 0);
}

static void test_schema_newer_refused(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(tu_raw(f->path, "meta", put_schema,
				(void *)(uintptr_t)(STORE_SCHEMA_VERSION + 1)), 0);
	assert_int_equal(store_open(&f->opts, &f->s), -STORE_ESCHEMA);
	assert_null(f->s);
	assert_string_equal(store_strerror(-STORE_ESCHEMA),
			    "store was written by another version of shoal (its schema differs; "
			    "there is no migration: move the state directory aside)");
	/* Older (1: manifests in format 1, unreadable now) is refused too, not half-read. */
	assert_int_equal(tu_raw(f->path, "meta", put_schema, (void *)(uintptr_t)1), 0);
	assert_int_equal(store_open(&f->opts, &f->s), -STORE_ESCHEMA);
	assert_null(f->s);
	/* Back to the current version: opens again. */
	assert_int_equal(tu_raw(f->path, "meta", put_schema, (void *)(uintptr_t)STORE_SCHEMA_VERSION),
			 0);
	assert_int_equal(store_open(&f->opts, &f->s), 0);
}

static void test_ids_strerror(void **state)
{
	struct store_id id, back;
	for (int i = 0; i < STORE_ID_LEN; i++)
		id.b[i] = (uint8_t)(i * 37 + 5);
	char hex[STORE_ID_HEXLEN + 1];
	assert_ptr_equal(store_id_hex(&id, hex), hex);
	assert_int_equal(strlen(hex), STORE_ID_HEXLEN);
	assert_int_equal(store_id_parse(hex, &back), 0);
	assert_memory_equal(&id, &back, sizeof(id));
	memset(&back, 0xaa, sizeof(back));
	struct store_id keep = back;
	assert_int_equal(store_id_parse("abc", &back), -EINVAL);
	hex[10] = 'g';
	assert_int_equal(store_id_parse(hex, &back), -EINVAL);
	assert_memory_equal(&keep, &back, sizeof(back));
	for (int e = STORE_ESCHEMA; e <= STORE_EFORMAT; e++) {
		assert_non_null(store_strerror(-e));
		assert_string_not_equal(store_strerror(-e), "unknown store error");
	}
	assert_string_equal(store_strerror(-ENOENT), strerror(ENOENT));
	(void)state;
}

/* ---- manifests ------------------------------------------------------------------------------ */

static void test_manifest_codec(void **state)
{
	struct store_manifest m;
	manifest_init(&m, "web", "1.4.2");
	m.git_message = strdup("fix: everything\n\nlong body");
	m.nfiles = 2;
	m.files = calloc(2, sizeof(*m.files));
	m.files[0] = (struct store_file){ strdup("a/b"), 0644, 12, { { 1 } } };
	m.files[1] = (struct store_file){ strdup("link"), 0120000, 3, { { 2 } } };
	uint8_t *buf;
	size_t len;
	assert_int_equal(store_manifest_encode(&m, &buf, &len), 0);
	struct store_manifest d;
	assert_int_equal(store_manifest_decode(buf, len, &d), 0);
	assert_string_equal(d.service, "web");
	assert_string_equal(d.version, "1.4.2");
	assert_null(d.systemd_unit);
	assert_string_equal(d.git_message, m.git_message);
	assert_int_equal(d.health.deadline_ms, 60000);
	assert_int_equal(d.nfiles, 2);
	assert_string_equal(d.files[1].path, "link");
	assert_int_equal(d.files[1].mode, 0120000);
	uint8_t *buf2;
	size_t len2;
	assert_int_equal(store_manifest_encode(&d, &buf2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	struct store_id i1, i2;
	assert_int_equal(store_manifest_id(&m, &i1), 0);
	assert_int_equal(store_manifest_id(&d, &i2), 0);
	assert_memory_equal(&i1, &i2, sizeof(i1));
	store_manifest_release(&d);

	/* Every truncation is refused, @ret untouched. */
	for (size_t n = 0; n < len; n++) {
		memset(&d, 0x5a, sizeof(d));
		assert_int_equal(store_manifest_decode(buf, n, &d), -EBADMSG);
		assert_int_equal(((uint8_t *)&d)[0], 0x5a);
	}
	/* Trailing garbage too. */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, buf, len);
	longer[len] = 0xc0;
	assert_int_equal(store_manifest_decode(longer, len + 1, &d), -EBADMSG);
	free(longer);
	free(buf);
	free(buf2);

	/* Invalid manifests are refused by the encoder. */
	char *svc = m.service;
	m.service = "bad name";
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.service = svc;
	char *p0 = m.files[0].path;
	m.files[0].path = "z"; /* unsorted */
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.files[0].path = "../etc/passwd";
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.files[0].path = "a//b";
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.files[0].path = p0;
	m.files[0].mode = 0777;
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.files[0].mode = 0644;
	char *rt = m.runtime;
	m.runtime = "docker";
	assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
	m.runtime = rt;
	store_manifest_release(&m);
	store_manifest_release(&m); /* twice is fine */
	(void)state;
}

/* ---- import and read back ---------------------------------------------------------------------- */

static void test_import_read(void **state)
{
	struct fx *f = *state;
	size_t big = 3 * STORE_CHUNK_SIZE + 12345;
	uint8_t *b = malloc(big);
	tu_fill(b, big, 7);
	const char *cfg = "port = 8080\n";
	struct tfile tf[] = {
		{ "bin/web", 0100755, b, big },
		{ "etc/web.conf", 0640, cfg, strlen(cfg) },
		{ "current", 0120777, "bin/web", 7 },
		{ "empty", 0644, "", 0 },
	};
	struct store_id id, id2;
	assert_int_equal(import_files(f->s, "web", "1.0", tf, 4, 5000, &id), 0);

	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	assert_memory_equal(&a.id, &id, sizeof(id));
	assert_int_equal(a.imported_at_ms, 5000);
	assert_int_equal(a.total_size, big + strlen(cfg) + 7);
	assert_false(a.condemned);
	assert_int_equal(a.manifest.nfiles, 4);
	/* sorted by path, modes normalised */
	assert_string_equal(a.manifest.files[0].path, "bin/web");
	assert_int_equal(a.manifest.files[0].mode, 0755);
	assert_string_equal(a.manifest.files[1].path, "current");
	assert_int_equal(a.manifest.files[1].mode, 0120000);
	assert_string_equal(a.manifest.files[2].path, "empty");
	assert_string_equal(a.manifest.files[3].path, "etc/web.conf");
	assert_int_equal(a.manifest.files[3].mode, 0644);
	/* the id is the hash of the canonical manifest */
	struct store_id mid;
	assert_int_equal(store_manifest_id(&a.manifest, &mid), 0);
	assert_memory_equal(&mid, &id, sizeof(id));

	/* whole blob back, byte-identical */
	uint8_t *got;
	size_t glen;
	read_all(f->s, &a.manifest.files[0].blob, &got, &glen);
	assert_int_equal(glen, big);
	assert_memory_equal(got, b, big);
	free(got);
	/* reads at offsets that straddle chunks */
	uint8_t piece[5000];
	uint64_t offs[] = { 0, STORE_CHUNK_SIZE - 100, 2 * STORE_CHUNK_SIZE - 1, big - 10, big, big + 5 };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		int64_t n = store_blob_read(f->s, &a.manifest.files[0].blob, offs[i], piece,
					    sizeof(piece), i & 1);
		int64_t want = offs[i] >= big ? 0 :
			       (int64_t)(big - offs[i] < sizeof(piece) ? big - offs[i] : sizeof(piece));
		assert_int_equal(n, want);
		if (n > 0)
			assert_memory_equal(piece, b + offs[i], (size_t)n);
	}
	/* empty file: blob of size 0, no chunks */
	uint64_t sz = 99;
	uint32_t nc = 99;
	assert_int_equal(store_blob_size(f->s, &a.manifest.files[2].blob, &sz), 0);
	assert_int_equal(sz, 0);
	assert_int_equal(store_blob_chunks(f->s, &a.manifest.files[2].blob, &nc), 0);
	assert_int_equal(nc, 0);
	/* chunk by chunk */
	assert_int_equal(store_blob_chunks(f->s, &a.manifest.files[0].blob, &nc), 0);
	assert_int_equal(nc, 4);
	uint8_t *cb = malloc(STORE_CHUNK_SIZE);
	size_t off = 0;
	for (uint32_t i = 0; i < nc; i++) {
		struct store_id h;
		size_t cl;
		assert_int_equal(store_blob_chunk(f->s, &a.manifest.files[0].blob, i, &h, cb,
						  STORE_CHUNK_SIZE, &cl), 0);
		assert_memory_equal(cb, b + off, cl);
		off += cl;
	}
	assert_int_equal(off, big);
	size_t cl = 0;
	assert_int_equal(store_blob_chunk(f->s, &a.manifest.files[0].blob, 3, NULL, NULL, 0, &cl), 0);
	assert_int_equal(cl, 12345);
	assert_int_equal(store_blob_chunk(f->s, &a.manifest.files[0].blob, 0, NULL, cb, 10, &cl),
			 -ENOBUFS);
	assert_int_equal(store_blob_chunk(f->s, &a.manifest.files[0].blob, 4, NULL, cb,
					  STORE_CHUNK_SIZE, &cl), -ENOENT);
	free(cb);
	struct store_id nope = { { 9, 9, 9 } };
	assert_int_equal(store_blob_size(f->s, &nope, &sz), -ENOENT);
	assert_int_equal(store_blob_read(f->s, &nope, 0, piece, 10, true), -ENOENT);
	assert_int_equal(store_artifact_get(f->s, &nope, &a), -ENOENT);
	store_artifact_info_release(&a);

	/* same artifact again: 1, same id, chunks stored once */
	struct store_stats st1, st2;
	assert_int_equal(store_stats(f->s, &st1), 0);
	assert_int_equal(st1.nchunks, 4 + 1 + 1); /* big file, conf, symlink target */
	assert_int_equal(import_files(f->s, "web", "1.0", tf, 4, 6000, &id2), 1);
	assert_memory_equal(&id, &id2, sizeof(id));
	/* another version sharing the content: a new artifact, no new chunks or blobs */
	assert_int_equal(import_files(f->s, "web", "1.1", tf, 4, 7000, &id2), 0);
	assert_memory_not_equal(&id, &id2, sizeof(id));
	assert_int_equal(store_stats(f->s, &st2), 0);
	assert_int_equal(st2.nchunks, st1.nchunks);
	assert_int_equal(st2.nblobs, st1.nblobs);
	assert_int_equal(st2.nartifacts, 2);
	assert_true(st2.chunk_bytes >= big);
	assert_true(st2.map_used > 0 && st2.map_used <= st2.map_size);

	/* survives a reopen */
	reopen(f);
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	store_artifact_info_release(&a);
	free(b);
}

static void test_import_misuse(void **state)
{
	struct fx *f = *state;
	struct store_import *imp;
	struct store_manifest m;
	struct store_id id, keep = { { 0x77 } };
	/* write without a file; file inside a file; bad type */
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_write(imp, "x", 1), -EINVAL);
	assert_int_equal(store_import_file_end(imp), -EINVAL);
	assert_int_equal(store_import_file(imp, "a", 040755), -EINVAL);
	assert_int_equal(store_import_file(imp, "a", 0644), 0);
	assert_int_equal(store_import_file(imp, "b", 0644), -EINVAL);
	/* commit with a file open: -EINVAL, consumed */
	manifest_init(&m, "web", "1");
	id = keep;
	assert_int_equal(store_import_commit(imp, &m, 1, &id), -EINVAL);
	assert_memory_equal(&id, &keep, sizeof(id));
	assert_null(m.files);
	/* duplicate paths */
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_import_file(imp, "same", 0644), 0);
		assert_int_equal(store_import_write(imp, "x", 1), 0);
		assert_int_equal(store_import_file_end(imp), 0);
	}
	assert_int_equal(store_import_commit(imp, &m, 1, &id), -STORE_EBADPATH);
	/* invalid path, caught at commit */
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_file(imp, "../escape", 0644), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	assert_int_equal(store_import_commit(imp, &m, 1, &id), -STORE_EBADPATH);
	/* empty symlink; symlink too long (sticky) */
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_file(imp, "l", 0120000), 0);
	assert_int_equal(store_import_file_end(imp), -EINVAL);
	assert_int_equal(store_import_write(imp, "x", 1), -EINVAL); /* sticky */
	store_import_abort(imp);
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_file(imp, "l", 0120000), 0);
	char longt[5000];
	memset(longt, 'a', sizeof(longt));
	assert_int_equal(store_import_write(imp, longt, sizeof(longt)), -ENAMETOOLONG);
	assert_int_equal(store_import_commit(imp, &m, 1, &id), -ENAMETOOLONG);
	/* bad manifest */
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	free(m.runtime);
	m.runtime = strdup("vm");
	assert_int_equal(store_import_commit(imp, &m, 1, &id), -STORE_EINVALID);
	store_import_abort(NULL);
	store_manifest_release(&m);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nartifacts, 0);
	assert_int_equal(st.nblobs, 0);
	/* no artifacts, so no chunk survives (nothing flushed: nothing written at all) */
	assert_int_equal(st.nchunks, 0);
}

/* A big import that is aborted after batches were written leaves no chunk behind. */
static void test_import_abort_collects(void **state)
{
	struct fx *f = *state;
	struct store_id keep;
	assert_int_equal(import_simple(f->s, "web", "1", 100, 1, &keep), 0);
	struct store_stats st0, st1;
	assert_int_equal(store_stats(f->s, &st0), 0);
	struct store_import *imp;
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_file(imp, "big", 0644), 0);
	size_t n = 40 * STORE_CHUNK_SIZE;
	uint8_t *b = malloc(n);
	tu_fill(b, n, 3);
	assert_int_equal(store_import_write(imp, b, n), 0);
	assert_int_equal(store_stats(f->s, &st1), 0);
	assert_true(st1.nchunks >= st0.nchunks + 32); /* a batch landed */
	/* the collector leaves an open import's chunks alone */
	assert_int_equal(store_gc(f->s), 0);
	assert_int_equal(store_stats(f->s, &st1), 0);
	assert_true(st1.nchunks >= st0.nchunks + 32);
	store_import_abort(imp);
	assert_int_equal(store_stats(f->s, &st1), 0);
	assert_int_equal(st1.nchunks, st0.nchunks);
	free(b);
}

/* A process that dies mid-import leaves orphan chunks that the next open collects. */
static void test_import_crash_orphans(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	f->s = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s;
		struct store_import *imp;
		if (store_open(&f->opts, &s) < 0 || store_import_begin(s, &imp) < 0 ||
		    store_import_file(imp, "big", 0644) < 0)
			_exit(1);
		size_t n = 33 * STORE_CHUNK_SIZE;
		uint8_t *b = malloc(n);
		tu_fill(b, n, 4);
		if (store_import_write(imp, b, n) < 0)
			_exit(2);
		_exit(0); /* "crash": no commit, no abort, no close */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Look before the store collects them: the chunks are there. */
	struct store_stats st;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat ms;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 32);
	assert_int_equal(mdb_env_open(env, f->path, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &dbi), 0);
	assert_int_equal(mdb_stat(txn, dbi, &ms), 0);
	assert_int_equal(ms.ms_entries, 32);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nchunks, 0);
}

/* Collects ids in call order. (It used to mark the end with an id byte of 0xee, which a real
 * id ends with once in 256: the format 2 ids of this test hit it.) */
struct seen_ids {
	struct store_id *ids;
	size_t n, cap;
};

static int count_cb(const struct store_artifact_info *a, void *ud)
{
	struct seen_ids *s = ud;
	assert_true(s->n < s->cap);
	s->ids[s->n++] = a->id;
	return 0;
}

static int stop_cb(const struct store_artifact_info *a, void *ud)
{
	(*(int *)ud)++;
	return 42;
}

static void test_find_foreach_condemn(void **state)
{
	struct fx *f = *state;
	/* Enough artifacts that some share a 4-digit prefix (ids are deterministic hashes). */
	enum { N = 1000 };
	struct store_id *ids = calloc(N, sizeof(*ids));
	for (int i = 0; i < N; i++) {
		char v[16];
		snprintf(v, sizeof(v), "v%d", i);
		/* no files: NULL with n = 0 */
		assert_int_equal(import_files(f->s, i % 2 ? "api" : "web", v, NULL, 0, 100, &ids[i]),
				 0);
	}
	int amb = -1;
	char hx[STORE_ID_HEXLEN + 1], hy[STORE_ID_HEXLEN + 1];
	for (int i = 0; i < N && amb < 0; i++)
		for (int j = i + 1; j < N && amb < 0; j++)
			if (!memcmp(store_id_hex(&ids[i], hx), store_id_hex(&ids[j], hy), 4))
				amb = i;
	assert_true(amb >= 0);
	struct store_id got = { { 0 } };
	store_id_hex(&ids[amb], hx);
	hx[4] = '\0';
	assert_int_equal(store_artifact_find(f->s, hx, &got), -EEXIST);
	store_id_hex(&ids[amb], hx);
	assert_int_equal(store_artifact_find(f->s, hx, &got), 0);
	assert_memory_equal(&got, &ids[amb], sizeof(got));
	/* odd-length and upper-case prefixes */
	store_id_hex(&ids[5], hx);
	hx[13] = '\0';
	for (char *c = hx; *c; c++)
		if (*c >= 'a')
			*c = (char)(*c - 32);
	assert_int_equal(store_artifact_find(f->s, hx, &got), 0);
	assert_memory_equal(&got, &ids[5], sizeof(got));
	assert_int_equal(store_artifact_find(f->s, "abc", &got), -EINVAL);
	assert_int_equal(store_artifact_find(f->s, "abcz", &got), -EINVAL);
	/* a prefix nobody has */
	for (unsigned p = 0;; p++) {
		char pf[8];
		snprintf(pf, sizeof(pf), "%06x", p);
		bool used = false;
		for (int i = 0; i < N && !used; i++)
			used = !memcmp(store_id_hex(&ids[i], hx), pf, 6);
		if (!used) {
			assert_int_equal(store_artifact_find(f->s, pf, &got), -ENOENT);
			break;
		}
	}

	/* foreach: per service, oldest import first */
	struct store_id *seen = calloc(N + 1, sizeof(*seen));
	struct seen_ids sv = { .ids = seen, .cap = N + 1 };
	assert_int_equal(store_artifact_foreach(f->s, "api", count_cb, &sv), 0);
	for (int i = 0; i < N / 2; i++)
		assert_memory_equal(&seen[i], &ids[2 * i + 1], sizeof(got));
	assert_int_equal(sv.n, N / 2);
	int calls = 0;
	assert_int_equal(store_artifact_foreach(f->s, NULL, stop_cb, &calls), 42);
	assert_int_equal(calls, 1);
	calls = 0;
	assert_int_equal(store_artifact_foreach(f->s, "nothing", stop_cb, &calls), 0);
	assert_int_equal(calls, 0);

	/* condemned flag */
	struct store_artifact_info a;
	assert_int_equal(store_artifact_set_condemned(f->s, &ids[3], true), 0);
	assert_int_equal(store_artifact_get(f->s, &ids[3], &a), 0);
	assert_true(a.condemned);
	store_artifact_info_release(&a);
	assert_int_equal(store_artifact_set_condemned(f->s, &ids[3], false), 0);
	assert_int_equal(store_artifact_get(f->s, &ids[3], &a), 0);
	assert_false(a.condemned);
	store_artifact_info_release(&a);
	struct store_id nope = { { 1, 2, 3 } };
	assert_int_equal(store_artifact_set_condemned(f->s, &nope, true), -ENOENT);
	free(ids);
	free(seen);
}

/* ---- materialize, corruption -------------------------------------------------------------------- */

static void check_file(const char *path, const void *data, size_t len, mode_t mode)
{
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
	assert_int_equal(st.st_size, len);
	uint8_t *b = malloc(len + 1);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, b, len + 1), (ssize_t)len);
	close(fd);
	assert_memory_equal(b, data, len);
	free(b);
}

struct corrupt_ctx {
	struct store_id chunk;
};

static int corrupt_chunk(MDB_txn *txn, MDB_dbi dbi, void *ud)
{
	struct corrupt_ctx *c = ud;
	MDB_val k = { STORE_ID_LEN, c->chunk.b }, v;
	int rc = mdb_get(txn, dbi, &k, &v);
	if (rc)
		return rc;
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[v.mv_size / 2] ^= 0x40; /* one bit flipped */
	MDB_val nv = { v.mv_size, copy };
	rc = mdb_put(txn, dbi, &k, &nv, 0);
	free(copy);
	return rc;
}

static void test_materialize_and_corruption(void **state)
{
	struct fx *f = *state;
	size_t big = STORE_CHUNK_SIZE + 777;
	uint8_t *b = malloc(big);
	tu_fill(b, big, 11);
	struct tfile tf[] = {
		{ "bin/web", 0755, b, big },
		{ "etc/deep/web.conf", 0644, "x=1\n", 4 },
		{ "web", 0120000, "bin/web", 7 },
	};
	struct store_id id, id2;
	assert_int_equal(import_files(f->s, "web", "1", tf, 3, 1, &id), 0);
	char dir[4200], p[4300], lt[64];
	snprintf(dir, sizeof(dir), "%s/run", f->work);
	assert_int_equal(store_artifact_materialize(f->s, &id, dir), 0);
	snprintf(p, sizeof(p), "%s/bin/web", dir);
	check_file(p, b, big, 0755);
	snprintf(p, sizeof(p), "%s/etc/deep/web.conf", dir);
	check_file(p, "x=1\n", 4, 0644);
	snprintf(p, sizeof(p), "%s/web", dir);
	ssize_t n = readlink(p, lt, sizeof(lt));
	assert_int_equal(n, 7);
	assert_memory_equal(lt, "bin/web", 7);

	/* again over the existing tree, with a different artifact: replaced entirely */
	struct tfile tf2[] = { { "only", 0644, "2", 1 } };
	assert_int_equal(import_files(f->s, "web", "2", tf2, 1, 2, &id2), 0);
	snprintf(p, sizeof(p), "%s/stray", dir);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(store_artifact_materialize(f->s, &id2, dir), 0);
	snprintf(p, sizeof(p), "%s/only", dir);
	check_file(p, "2", 1, 0644);
	snprintf(p, sizeof(p), "%s/bin", dir);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/stray", dir);
	assert_int_equal(access(p, F_OK), -1);
	struct store_id nope = { { 4 } };
	assert_int_equal(store_artifact_materialize(f->s, &nope, dir), -ENOENT);

	/* flip a bit in the big file's first chunk */
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	struct store_id blob = a.manifest.files[0].blob;
	store_artifact_info_release(&a);
	struct corrupt_ctx cc;
	assert_int_equal(store_blob_chunk(f->s, &blob, 0, &cc.chunk, NULL, 0, NULL), 0);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(tu_raw(f->path, "chunks", corrupt_chunk, &cc), 0);
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	uint8_t *got = malloc(big);
	assert_int_equal(store_blob_read(f->s, &blob, 0, got, big, true), -STORE_ECORRUPT);
	/* unverified reads do not notice, and the second chunk is fine either way */
	assert_int_equal(store_blob_read(f->s, &blob, 0, got, big, false), (int64_t)big);
	assert_memory_not_equal(got, b, big);
	assert_int_equal(store_blob_read(f->s, &blob, STORE_CHUNK_SIZE, got, 777, true), 777);
	size_t cl;
	assert_int_equal(store_blob_chunk(f->s, &blob, 0, NULL, got, big, &cl), -STORE_ECORRUPT);
	/* materialize refuses and leaves the target as it was */
	assert_int_equal(store_artifact_materialize(f->s, &id, dir), -STORE_ECORRUPT);
	snprintf(p, sizeof(p), "%s/only", dir);
	check_file(p, "2", 1, 0644);
	free(got);
	free(b);
}

/* ---- revisions, votes, state, journal, kv ---------------------------------------------------- */

static void rev_init(struct store_revision *r, const char *service, uint64_t rev,
		     const struct store_id *art)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->service, sizeof(r->service), "%s", service);
	r->rev = rev;
	if (art)
		r->artifact = *art;
	r->kind = STORE_REV_DEPLOY;
	r->hlc = rev << 16;
	r->operator_uid = 1000;
	r->operator_pid = -1;
	snprintf(r->reason, sizeof(r->reason), "deploy %llu", (unsigned long long)rev);
}

static void test_revision_codec(void **state)
{
	struct store_revision r, d;
	struct store_id art = { { 5, 6 } };
	rev_init(&r, "web", 7, &art);
	r.kind = STORE_REV_ROLLBACK;
	snprintf(r.scope, sizeof(r.scope), "site:paris");
	r.ncert = 3;
	r.cert = calloc(3, STORE_NODE_ID_LEN);
	r.cert[2][0] = 9;
	r.operator_uid = UINT32_MAX;
	r.operator_pid = INT32_MIN;
	uint8_t *buf, *buf2;
	size_t len, len2;
	assert_int_equal(store_revision_encode(&r, &buf, &len), 0);
	assert_int_equal(store_revision_decode(buf, len, &d), 0);
	assert_string_equal(d.service, "web");
	assert_int_equal(d.rev, 7);
	assert_int_equal(d.kind, STORE_REV_ROLLBACK);
	assert_string_equal(d.scope, "site:paris");
	assert_int_equal(d.ncert, 3);
	assert_int_equal(d.cert[2][0], 9);
	assert_int_equal(d.operator_uid, UINT32_MAX);
	assert_int_equal(d.operator_pid, INT32_MIN);
	assert_int_equal(store_revision_encode(&d, &buf2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	store_revision_release(&d);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(store_revision_decode(buf, n, &d), -EBADMSG);
	free(buf);
	free(buf2);
	r.rev = 0;
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	r.rev = 1;
	snprintf(r.scope, sizeof(r.scope), "paris");
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	snprintf(r.scope, sizeof(r.scope), "%s", "");
	r.kind = 7;
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	store_revision_release(&r);
	(void)state;
}

/* ---- revision format 2, vote re-casts ---------------------------------------------------- */

/* Find the @n-byte @needle in @buf (the tests patch encoded bytes in place). */
static uint8_t *find_bytes(uint8_t *buf, size_t len, const void *needle, size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(buf + i, needle, n))
			return buf + i;
	return NULL;
}

/* A format-2 rollback with an electorate of 3, a count rule and a condemned artifact. */
static void rev2_init(struct store_revision *r)
{
	struct store_id art = { { 5, 6 } };
	rev_init(r, "web", 7, &art);
	r->kind = STORE_REV_ROLLBACK;
	r->operator_uid = UINT32_MAX;
	r->ncert = 2;
	r->cert = calloc(2, STORE_NODE_ID_LEN);
	r->nelect = 3;
	r->elect = calloc(3, STORE_NODE_ID_LEN);
	assert_non_null(r->cert);
	assert_non_null(r->elect);
	for (int i = 0; i < 3; i++) {
		memset(r->elect[i], 0x40 + i, STORE_NODE_ID_LEN);
		if (i < 2)
			memcpy(r->cert[i], r->elect[i + 1], STORE_NODE_ID_LEN);
	}
	r->quorum.kind = STORE_QUORUM_COUNT;
	r->quorum.count = 2;
	memset(r->condemns.b, 0xc3, STORE_ID_LEN);
	/* format 3: the electors' keys and the certificate's signed votes */
	r->elect_keys = calloc(3, STORE_KEY_LEN);
	r->cert_sigs = calloc(2, sizeof(*r->cert_sigs));
	assert_non_null(r->elect_keys);
	assert_non_null(r->cert_sigs);
	for (int i = 0; i < 3; i++)
		memset(r->elect_keys[i], 0x70 + i, STORE_KEY_LEN);
	for (int i = 0; i < 2; i++) {
		r->cert_sigs[i].hlc = 0x1234 + (uint64_t)i;
		r->cert_sigs[i].reason = (uint32_t)i;
		memset(r->cert_sigs[i].sig, 0xa0 + i, STORE_SIG_LEN);
	}
	r->cert_subject = 0xfeedULL;
	r->cert_target = 3;
	r->cert_round = 2;
}

static void test_revision_codec_format2(void **state)
{
	struct store_revision r, d;
	uint8_t *buf, *buf2;
	size_t len, len2;
	rev2_init(&r);
	assert_int_equal(store_revision_encode(&r, &buf, &len), 0);
	/* [ 3 (format), ... ]: 22 fields, an array16 header (3 bytes) */
	assert_int_equal(buf[0], 0xdc);
	assert_int_equal(buf[3], 3);
	assert_int_equal(store_revision_decode(buf, len, &d), 0);
	assert_non_null(d.elect_keys);
	assert_memory_equal(d.elect_keys, r.elect_keys, 3 * STORE_KEY_LEN);
	assert_non_null(d.cert_sigs);
	assert_memory_equal(d.cert_sigs, r.cert_sigs, 2 * sizeof(*r.cert_sigs));
	assert_int_equal(d.cert_subject, 0xfeed);
	assert_int_equal(d.cert_target, 3);
	assert_int_equal(d.cert_round, 2);
	assert_int_equal(d.nelect, 3);
	assert_memory_equal(d.elect, r.elect, 3 * STORE_NODE_ID_LEN);
	assert_int_equal(d.ncert, 2);
	assert_memory_equal(d.cert, r.cert, 2 * STORE_NODE_ID_LEN);
	assert_memory_equal(&d.quorum, &r.quorum, sizeof(r.quorum));
	assert_memory_equal(d.condemns.b, r.condemns.b, STORE_ID_LEN);
	/* canonical: re-encoding gives the same bytes */
	assert_int_equal(store_revision_encode(&d, &buf2, &len2), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	free(buf2);
	/* a deep copy is independent of its source */
	struct store_revision c;
	assert_int_equal(store_revision_copy(&c, &d), 0);
	assert_ptr_not_equal(c.elect, d.elect);
	assert_ptr_not_equal(c.cert, d.cert);
	assert_ptr_not_equal(c.elect_keys, d.elect_keys);
	assert_memory_equal(c.cert_sigs, r.cert_sigs, 2 * sizeof(*r.cert_sigs));
	store_revision_release(&d);
	assert_int_equal(c.nelect, 3);
	assert_memory_equal(c.elect, r.elect, 3 * STORE_NODE_ID_LEN);
	store_revision_release(&c);
	assert_null(c.elect);
	assert_int_equal(c.nelect, 0);
	/* every truncation is refused */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(store_revision_decode(buf, n, &d), -EBADMSG);
	/* format 1 is refused: its electorate is unknown */
	buf[3] = 1;
	assert_int_equal(store_revision_decode(buf, len, &d), -EBADMSG);
	/* so is format 2: its certificate carries no signatures, its electorate no keys */
	buf[3] = 2;
	assert_int_equal(store_revision_decode(buf, len, &d), -EBADMSG);
	buf[3] = 3;
	/* an unsorted electorate on the wire (two members swapped) is refused */
	{
		uint8_t *e0 = find_bytes(buf, len, r.elect[0], STORE_NODE_ID_LEN);
		uint8_t *e2 = find_bytes(buf, len, r.elect[2], STORE_NODE_ID_LEN);
		assert_non_null(e0);
		assert_non_null(e2);
		/* elect[2] also appears in the certificate first: take the last occurrence */
		for (uint8_t *p; (p = find_bytes(e2 + 1, len - (size_t)(e2 + 1 - buf), r.elect[2],
						 STORE_NODE_ID_LEN));)
			e2 = p;
		for (uint8_t *p; (p = find_bytes(e0 + 1, len - (size_t)(e0 + 1 - buf), r.elect[0],
						 STORE_NODE_ID_LEN));)
			e0 = p;
		assert_true(e0 < e2);
		memset(e0, 0x42, STORE_NODE_ID_LEN); /* [42, 41, 42]: unsorted and duplicated */
		assert_int_equal(store_revision_decode(buf, len, &d), -EBADMSG);
		memset(e0, 0x40, STORE_NODE_ID_LEN);
		assert_int_equal(store_revision_decode(buf, len, &d), 0);
		store_revision_release(&d);
	}
	/* a bad rule on the wire: the count is the byte right after the kind */
	{
		uint8_t rule[3] = { 0x94, STORE_QUORUM_COUNT, 2 }; /* [ kind, count, num, den ] */
		uint8_t *p = find_bytes(buf, len, rule, sizeof(rule));
		assert_non_null(p);
		p[2] = 0; /* count 0 */
		assert_int_equal(store_revision_decode(buf, len, &d), -EBADMSG);
		p[2] = 2;
		p[1] = 9; /* unknown kind */
		assert_int_equal(store_revision_decode(buf, len, &d), -EBADMSG);
		p[1] = STORE_QUORUM_COUNT;
	}
	free(buf);

	/* the encoder refuses what the decoder would */
	uint8_t tmp[STORE_NODE_ID_LEN];
	memcpy(tmp, r.elect[0], STORE_NODE_ID_LEN);
	memcpy(r.elect[0], r.elect[1], STORE_NODE_ID_LEN);
	memcpy(r.elect[1], tmp, STORE_NODE_ID_LEN);
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL); /* unsorted */
	memcpy(r.elect[0], r.elect[1], STORE_NODE_ID_LEN);
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL); /* duplicate */
	memset(r.elect[0], 0x40, STORE_NODE_ID_LEN);
	memset(r.elect[1], 0x41, STORE_NODE_ID_LEN);
	assert_int_equal(store_revision_encode(&r, &buf, &len), 0);
	free(buf);
	const struct store_quorum bad[] = {
		{ .kind = STORE_QUORUM_COUNT, .count = 0 },
		{ .kind = STORE_QUORUM_COUNT, .count = 2, .num = 1 },
		{ .kind = STORE_QUORUM_MAJORITY, .count = 1 },
		{ .kind = STORE_QUORUM_MAJORITY, .den = 1 },
		{ .kind = STORE_QUORUM_FRACTION, .num = 0, .den = 3 },
		{ .kind = STORE_QUORUM_FRACTION, .num = 4, .den = 3 },
		{ .kind = STORE_QUORUM_FRACTION, .num = 1, .den = 0 },
		{ .kind = STORE_QUORUM_FRACTION, .num = 1, .den = 2, .count = 1 },
		{ .kind = 3 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r.quorum = bad[i];
		assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	}
	r.quorum = (struct store_quorum){ .kind = STORE_QUORUM_FRACTION, .num = 2, .den = 3 };
	assert_int_equal(store_revision_encode(&r, &buf, &len), 0);
	assert_int_equal(store_revision_decode(buf, len, &d), 0);
	assert_int_equal(d.quorum.num, 2);
	assert_int_equal(d.quorum.den, 3);
	store_revision_release(&d);
	free(buf);
	/* an electorate pointer missing for a non-zero count */
	uint8_t(*e)[STORE_NODE_ID_LEN] = r.elect;
	r.elect = NULL;
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	r.elect = e;
	/* one larger than the maximum */
	r.nelect = STORE_ELECT_MAX + 1;
	assert_int_equal(store_revision_encode(&r, &buf, &len), -EINVAL);
	r.nelect = 3;
	store_revision_release(&r);
	(void)state;
}

/* Through the store: put, get back with electorate, rule and condemned artifact; reopen. */
static void test_revision_format2_stored(void **state)
{
	struct fx *f = *state;
	struct store_revision r, d;
	rev2_init(&r);
	assert_int_equal(store_revision_put(f->s, &r), 0);
	reopen(f);
	assert_int_equal(store_revision_get(f->s, "web", 7, &d), 0);
	assert_int_equal(d.nelect, 3);
	assert_memory_equal(d.elect, r.elect, 3 * STORE_NODE_ID_LEN);
	assert_memory_equal(&d.quorum, &r.quorum, sizeof(r.quorum));
	assert_memory_equal(d.condemns.b, r.condemns.b, STORE_ID_LEN);
	assert_int_equal(d.ncert, 2);
	store_revision_release(&d);
	/* an unsorted electorate is not stored */
	memset(r.elect[2], 0x01, STORE_NODE_ID_LEN);
	r.rev = 8;
	assert_int_equal(store_revision_put(f->s, &r), -EINVAL);
	assert_int_equal(store_revision_get(f->s, "web", 8, &d), -ENOENT);
	store_revision_release(&r);
}

struct vote_got {
	struct store_vote v[8];
	int n;
};

static int vote_collect(const struct store_vote *v, void *ud)
{
	struct vote_got *g = ud;
	if (g->n < 8)
		g->v[g->n] = *v;
	g->n++;
	return 0;
}

/* A vote about subject 0x4000 (the record judged); tests set another subject explicitly. */
static struct store_vote vote_rt(uint8_t voter, uint32_t round, uint64_t hlc, uint64_t target)
{
	struct store_vote v;
	memset(&v, 0, sizeof(v));
	snprintf(v.service, sizeof(v.service), "web");
	v.rev = 4;
	v.voter[0] = voter;
	v.reason = STORE_VOTE_OPERATOR;
	v.hlc = hlc;
	v.subject = 0x4000;
	v.target = target;
	v.round = round;
	return v;
}

static struct store_vote vote_get1(struct store *s)
{
	struct vote_got g = { .n = 0 };
	assert_int_equal(store_vote_foreach(s, "web", 4, vote_collect, &g), 0);
	assert_int_equal(g.n, 1);
	return g.v[0];
}

/* Re-cast: the newest (round, hlc) of a voter is kept; an older one is a no-op returning 1. */
static void test_vote_recast(void **state)
{
	struct fx *f = *state;
	struct store_vote v = vote_rt(1, 0, 100, 3), got;

	assert_false(store_vote_newer(&v, &v));
	assert_int_equal(store_vote_put(f->s, &v), 0);
	got = vote_get1(f->s);
	assert_int_equal(got.subject, 0x4000);
	assert_int_equal(got.target, 3);
	assert_int_equal(got.round, 0);
	assert_int_equal(got.reason, STORE_VOTE_OPERATOR);
	/* the same vote again, and an older hlc in the same round: no-ops */
	assert_int_equal(store_vote_put(f->s, &v), 1);
	struct store_vote older = vote_rt(1, 0, 99, 0);
	assert_int_equal(store_vote_put(f->s, &older), 1);
	got = vote_get1(f->s);
	assert_int_equal(got.hlc, 100);
	assert_int_equal(got.target, 3);
	/* a newer hlc in the same round replaces it */
	struct store_vote newer = vote_rt(1, 0, 101, 0);
	assert_true(store_vote_newer(&newer, &v));
	assert_int_equal(store_vote_put(f->s, &newer), 0);
	got = vote_get1(f->s);
	assert_int_equal(got.hlc, 101);
	assert_int_equal(got.target, 0);
	/* a later round beats any hlc of an earlier one, both ways */
	struct store_vote r1 = vote_rt(1, 1, 50, 2);
	assert_true(store_vote_newer(&r1, &newer));
	assert_false(store_vote_newer(&newer, &r1));
	assert_int_equal(store_vote_put(f->s, &r1), 0);
	struct store_vote late_r0 = vote_rt(1, 0, 9999, 0);
	assert_int_equal(store_vote_put(f->s, &late_r0), 1);
	got = vote_get1(f->s);
	assert_int_equal(got.round, 1);
	assert_int_equal(got.hlc, 50);
	assert_int_equal(got.target, 2);
	assert_int_equal(got.subject, 0x4000);
	/* survives a reopen (a restart keeps what the vote meant) */
	reopen(f);
	got = vote_get1(f->s);
	assert_int_equal(got.round, 1);
	assert_int_equal(got.target, 2);
	assert_int_equal(got.subject, 0x4000);
	/* the batch writer follows the same rule, per vote: an older round of voter 1 is
	 * skipped, voter 2's two votes keep the newer whatever their order in the batch */
	struct store_vote b[3] = { vote_rt(1, 0, 10000, 0), vote_rt(2, 2, 7, 1),
				   vote_rt(2, 1, 8, 0) };
	assert_int_equal(store_vote_put_many(f->s, b, 3), 0);
	struct vote_got g = { .n = 0 };
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.v[0].voter[0], 1);
	assert_int_equal(g.v[0].round, 1);
	assert_int_equal(g.v[0].hlc, 50);
	assert_int_equal(g.v[1].voter[0], 2);
	assert_int_equal(g.v[1].round, 2);
	assert_int_equal(g.v[1].target, 1);
	/* Rounds are per subject. Voter 2 moved on to another record at this rev (the one that
	 * won it): its first vote there is round 0, later by its clock, and replaces its round-2
	 * vote about the old record (tests/sim/sim_agree.c seed 85567: otherwise the store kept
	 * refusing the voter's every vote on the new record). An older copy of the round-2 vote
	 * arriving afterwards does not come back. */
	struct store_vote moved = vote_rt(2, 0, 9, 0), stale = vote_rt(2, 2, 7, 1);
	moved.subject = 0x5000;
	assert_true(store_vote_newer(&moved, &stale));
	assert_false(store_vote_newer(&stale, &moved));
	assert_int_equal(store_vote_put(f->s, &moved), 0);
	assert_int_equal(store_vote_put(f->s, &stale), 1);
	g.n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_collect, &g), 0);
	assert_int_equal(g.v[1].subject, 0x5000);
	assert_int_equal(g.v[1].round, 0);
	/* ...but an earlier vote about another subject does not replace a later one */
	struct store_vote early = vote_rt(2, 5, 8, 0);
	early.subject = 0x6000;
	assert_int_equal(store_vote_put(f->s, &early), 1);
}

/* A format-1 vote value (9 bytes: reason, hlc) as an older agentd stored it. */
static int put_v1_vote(MDB_txn *txn, MDB_dbi dbi, void *ud)
{
	uint8_t k[4 + 8 + STORE_NODE_ID_LEN] = { 'w', 'e', 'b', 0 }, v[9] = { STORE_VOTE_HEALTH };
	k[4 + 7] = 4; /* rev 4, big-endian */
	k[4 + 8] = *(uint8_t *)ud;
	v[8] = 77; /* hlc 77 */
	MDB_val kv = { sizeof(k), k }, dv = { sizeof(v), v };
	return mdb_put(txn, dbi, &kv, &dv, 0);
}

static void test_vote_format1_reads_subject0(void **state)
{
	struct fx *f = *state;
	uint8_t voter = 5;
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(tu_raw(f->path, "votes", put_v1_vote, &voter), 0);
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	struct store_vote got = vote_get1(f->s);
	assert_int_equal(got.voter[0], 5);
	assert_int_equal(got.hlc, 77);
	assert_int_equal(got.reason, STORE_VOTE_HEALTH);
	assert_int_equal(got.subject, 0); /* meaning unknown: never counted */
	assert_int_equal(got.target, 0);
	assert_int_equal(got.round, 0);
	/* an older format-2 vote does not replace it; a newer one does, with its meaning */
	struct store_vote old = vote_rt(5, 0, 76, 0), now = vote_rt(5, 0, 78, 1);
	assert_int_equal(store_vote_put(f->s, &old), 1);
	assert_int_equal(vote_get1(f->s).subject, 0);
	assert_int_equal(store_vote_put(f->s, &now), 0);
	got = vote_get1(f->s);
	assert_int_equal(got.subject, 0x4000);
	assert_int_equal(got.target, 1);
}

struct revlist {
	uint64_t revs[64];
	int n;
};

static int rev_cb(const struct store_revision *r, void *ud)
{
	struct revlist *l = ud;
	l->revs[l->n++] = r->rev;
	return 0;
}

static int svc_cb(const char *service, void *ud)
{
	char *out = ud;
	strcat(out, service);
	strcat(out, ",");
	return 0;
}

static void test_revisions(void **state)
{
	struct fx *f = *state;
	struct store_revision r;
	uint64_t latest = 99;
	assert_int_equal(store_revision_latest(f->s, "web", &latest), 0);
	assert_int_equal(latest, 0);
	assert_int_equal(store_revision_get(f->s, "web", 1, &r), -ENOENT);
	/* out of order: 3, 1, 2; and "web" must not see "web2" or "we" */
	uint64_t order[] = { 3, 1, 2 };
	for (int i = 0; i < 3; i++) {
		rev_init(&r, "web", order[i], NULL);
		assert_int_equal(store_revision_put(f->s, &r), 0);
	}
	rev_init(&r, "web2", 50, NULL);
	assert_int_equal(store_revision_put(f->s, &r), 0);
	rev_init(&r, "we", 60, NULL);
	assert_int_equal(store_revision_put(f->s, &r), 0);
	assert_int_equal(store_revision_latest(f->s, "web", &latest), 0);
	assert_int_equal(latest, 3);
	assert_int_equal(store_revision_latest(f->s, "web2", &latest), 0);
	assert_int_equal(latest, 50);
	assert_int_equal(store_revision_get(f->s, "web", 2, &r), 0);
	assert_string_equal(r.reason, "deploy 2");
	store_revision_release(&r);
	/* replace */
	rev_init(&r, "web", 2, NULL);
	snprintf(r.reason, sizeof(r.reason), "replaced");
	assert_int_equal(store_revision_put(f->s, &r), 0);
	assert_int_equal(store_revision_get(f->s, "web", 2, &r), 0);
	assert_string_equal(r.reason, "replaced");
	store_revision_release(&r);
	/* many: retention keeps the newest 10 */
	for (uint64_t i = 4; i <= 15; i++) {
		rev_init(&r, "web", i, NULL);
		assert_int_equal(store_revision_put(f->s, &r), 0);
	}
	struct revlist l = { .n = 0 };
	assert_int_equal(store_revision_foreach(f->s, "web", 0, rev_cb, &l), 0);
	assert_int_equal(l.n, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(l.revs[i], 15 - i);
	l.n = 0;
	assert_int_equal(store_revision_foreach(f->s, "web", 3, rev_cb, &l), 0);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.revs[2], 13);
	l.n = 0;
	assert_int_equal(store_revision_foreach(f->s, "nope", 0, rev_cb, &l), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(store_revision_get(f->s, "web", 5, &r), -ENOENT);
	assert_int_equal(store_revision_get(f->s, "bad name", 5, &r), -EINVAL);
	rev_init(&r, "web", 0, NULL);
	assert_int_equal(store_revision_put(f->s, &r), -EINVAL);
	char names[256] = "";
	assert_int_equal(store_service_foreach(f->s, svc_cb, names), 0);
	assert_string_equal(names, "we,web,web2,");
}

static int vote_cb(const struct store_vote *v, void *ud)
{
	int *n = ud;
	assert_string_equal(v->service, "web");
	assert_int_equal(v->voter[0], *n + 1);
	(*n)++;
	return 0;
}

static void test_votes_state_journal_kv(void **state)
{
	struct fx *f = *state;
	struct store_vote v = { .service = "web", .rev = 4, .reason = STORE_VOTE_HEALTH, .hlc = 9 };
	for (int i = 2; i >= 1; i--) {
		v.voter[0] = (uint8_t)i;
		assert_int_equal(store_vote_put(f->s, &v), 0);
	}
	v.reason = STORE_VOTE_OPERATOR;
	assert_int_equal(store_vote_put(f->s, &v), 1); /* not newer (same round, same hlc) */
	v.rev = 5;
	assert_int_equal(store_vote_put(f->s, &v), 0);
	v.reason = 9;
	assert_int_equal(store_vote_put(f->s, &v), -EINVAL);
	int n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_cb, &n), 0);
	assert_int_equal(n, 2);

	struct store_service_state st, got;
	memset(&got, 0x11, sizeof(got));
	assert_int_equal(store_service_state_get(f->s, "web", &got), 1);
	struct store_service_state zero = { { { 0 } } };
	assert_memory_equal(&got, &zero, sizeof(got));
	memset(&st, 0, sizeof(st));
	st.running.b[0] = 1;
	st.running_rev = 77;
	st.last_good.b[31] = 2;
	assert_int_equal(store_service_state_put(f->s, "web", &st), 0);
	assert_int_equal(store_service_state_get(f->s, "web", &got), 0);
	assert_memory_equal(&got, &st, sizeof(st));
	assert_int_equal(store_service_state_put(f->s, "", &st), -EINVAL);

	void *jb;
	size_t jl;
	assert_int_equal(store_journal_get(f->s, "web", &jb, &jl), -ENOENT);
	assert_int_equal(store_journal_put(f->s, "web", "step1", 5), 0);
	assert_int_equal(store_journal_put(f->s, "web", "step2!", 6), 0);
	assert_int_equal(store_journal_get(f->s, "web", &jb, &jl), 0);
	assert_int_equal(jl, 6);
	assert_memory_equal(jb, "step2!", 6);
	free(jb);
	assert_int_equal(store_journal_del(f->s, "web"), 0);
	assert_int_equal(store_journal_del(f->s, "web"), -ENOENT);

	assert_int_equal(store_kv_put(f->s, STORE_KV_MEMBERS, "b", 1, "2", 1), 0);
	assert_int_equal(store_kv_put(f->s, STORE_KV_MEMBERS, "a", 1, "1", 1), 0);
	assert_int_equal(store_kv_put(f->s, STORE_KV_RECORDS, "a", 1, "", 0), 0);
	assert_int_equal(store_kv_put(f->s, STORE_KV__COUNT, "a", 1, "", 0), -EINVAL);
	assert_int_equal(store_kv_put(f->s, STORE_KV_MEMBERS, "", 0, "", 0), -EINVAL);
	assert_int_equal(store_kv_del(f->s, STORE_KV_MEMBERS, "zz", 2), -ENOENT);
	assert_int_equal(store_kv_del(f->s, STORE_KV_MEMBERS, "b", 1), 0);
}

static int kv_count_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	int *n = ud;
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*n)++;
	return 0;
}

/* The batch writers: one transaction, all or none, same results as the single calls. */
static void test_batches(void **state)
{
	struct fx *f = *state;
	struct store_vote v[3];
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 3; i++) {
		snprintf(v[i].service, sizeof(v[i].service), "web");
		v[i].rev = 4;
		v[i].voter[0] = (uint8_t)(i + 1);
		v[i].reason = STORE_VOTE_OPERATOR;
		v[i].hlc = 10 + (uint64_t)i;
	}
	assert_int_equal(store_vote_put_many(f->s, v, 0), 0);
	assert_int_equal(store_vote_put_many(f->s, NULL, 1), -EINVAL);
	/* a bad vote fails the whole batch before anything is written */
	v[2].reason = 9;
	assert_int_equal(store_vote_put_many(f->s, v, 3), -EINVAL);
	int n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_cb, &n), 0);
	assert_int_equal(n, 0);
	v[2].reason = STORE_VOTE_HEALTH;
	assert_int_equal(store_vote_put(f->s, &v[0]), 0);
	/* a vote not newer than the held one is skipped, the others are stored */
	assert_int_equal(store_vote_put_many(f->s, v, 3), 0);
	n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_cb, &n), 0);
	assert_int_equal(n, 3);

	struct store_kv_write w[] = {
		{ .table = STORE_KV_RECORDS, .key = "a", .klen = 1, .val = "1", .vlen = 1 },
		{ .table = STORE_KV_RECORDS, .key = "b", .klen = 1, .val = "2", .vlen = 1 },
		{ .table = STORE_KV_MEMBERS, .key = "m", .klen = 1, .val = NULL, .vlen = 0 },
		{ .table = STORE_KV_RECORDS, .key = "zz", .klen = 2, .del = true },
		{ .table = STORE_KV_RECORDS, .key = "", .klen = 0, .val = "x", .vlen = 1 },
	};
	/* the last row has an empty key: nothing of the batch is written */
	assert_int_equal(store_kv_write_many(f->s, w, 5), -EINVAL);
	n = 0;
	assert_int_equal(store_kv_foreach(f->s, STORE_KV_RECORDS, kv_count_cb, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_kv_write_many(f->s, w, 4), 0);
	n = 0;
	assert_int_equal(store_kv_foreach(f->s, STORE_KV_RECORDS, kv_count_cb, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(store_kv_foreach(f->s, STORE_KV_MEMBERS, kv_count_cb, &n), 0);
	assert_int_equal(n, 1);
	/* a put then a delete of the same key in one batch: applied in order */
	struct store_kv_write w2[] = {
		{ .table = STORE_KV_RECORDS, .key = "c", .klen = 1, .val = "3", .vlen = 1 },
		{ .table = STORE_KV_RECORDS, .key = "a", .klen = 1, .del = true },
		{ .table = STORE_KV_RECORDS, .key = "c", .klen = 1, .del = true },
	};
	assert_int_equal(store_kv_write_many(f->s, w2, 3), 0);
	n = 0;
	assert_int_equal(store_kv_foreach(f->s, STORE_KV_RECORDS, kv_count_cb, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_kv_del(f->s, STORE_KV_RECORDS, "b", 1), 0);
	assert_int_equal(store_kv_write_many(f->s, NULL, 0), 0);
}

/* ---- retention and GC ------------------------------------------------------------------------- */

static bool exists(struct store *s, const struct store_id *id)
{
	struct store_artifact_info a;
	int r = store_artifact_get(s, id, &a);
	if (r == 0)
		store_artifact_info_release(&a);
	assert_true(r == 0 || r == -ENOENT);
	return r == 0;
}

static void test_retention_gc(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	f->opts.retain_revs = 3;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	/* A shared file: in every web artifact and in the api artifact. */
	size_t shared_len = 2 * STORE_CHUNK_SIZE;
	uint8_t *shared = malloc(shared_len);
	tu_fill(shared, shared_len, 99);
	struct store_id a[8], api;
	struct store_service_state st = { .running_rev = 1 };
	struct store_revision r;
	/* Import and deploy a[0..5] as revs 1..6, then import a[6], a[7] (never deployed). */
	for (int i = 0; i < 8; i++) {
		uint8_t own[1000];
		tu_fill(own, sizeof(own), 1000 + i);
		struct tfile tf[] = { { "own", 0644, own, sizeof(own) },
				      { "shared", 0644, shared, shared_len } };
		char v[8];
		snprintf(v, sizeof(v), "%d", i);
		assert_int_equal(import_files(f->s, "web", v, tf, 2, 10 + i, &a[i]), 0);
		if (i == 1) {
			/* a[0] runs, a[1] was last good */
			st.running = a[0];
			st.last_good = a[1];
			assert_int_equal(store_service_state_put(f->s, "web", &st), 0);
		}
		if (i < 6) {
			rev_init(&r, "web", (uint64_t)i + 1, &a[i]);
			assert_int_equal(store_revision_put(f->s, &r), 0);
		}
	}
	struct tfile tfa[] = { { "shared", 0644, shared, shared_len } };
	assert_int_equal(import_files(f->s, "api", "1", tfa, 1, 5, &api), 0);
	struct store_vote v = { .service = "web", .rev = 4, .voter = { 1 } };
	assert_int_equal(store_vote_put(f->s, &v), 0);
	/* kept revs 4,5,6 -> a[3], a[4], a[5]; a[0] running, a[1] last good; a[2] deployed and no
	 * longer referenced: dropped. a[6], a[7] never deployed and among the newest 3 imports. */
	assert_true(exists(f->s, &a[0]));
	assert_true(exists(f->s, &a[1]));
	assert_false(exists(f->s, &a[2]));
	for (int i = 3; i < 8; i++)
		assert_true(exists(f->s, &a[i]));
	assert_true(exists(f->s, &api));
	/* the dropped artifact's own chunk is gone, the shared ones are not */
	{
		struct store_artifact_info ai;
		assert_int_equal(store_artifact_get(f->s, &api, &ai), 0);
		uint8_t *got;
		size_t gl;
		read_all(f->s, &ai.manifest.files[0].blob, &got, &gl);
		assert_int_equal(gl, shared_len);
		assert_memory_equal(got, shared, shared_len);
		free(got);
		store_artifact_info_release(&ai);
	}
	struct store_stats ss;
	assert_int_equal(store_stats(f->s, &ss), 0);
	/* 7 web artifacts with an own chunk each + 2 shared chunks */
	assert_int_equal(ss.nartifacts, 8);
	assert_int_equal(ss.nchunks, 7 + 2);
	assert_int_equal(ss.nblobs, 7 + 1);

	/* Rev 7 -> a[6]: rev 4 leaves (with its votes), and a[3] with it. */
	int n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_cb, &n), 0);
	assert_int_equal(n, 1);
	rev_init(&r, "web", 7, &a[6]);
	assert_int_equal(store_revision_put(f->s, &r), 0);
	n = 0;
	assert_int_equal(store_vote_foreach(f->s, "web", 4, vote_cb, &n), 0);
	assert_int_equal(n, 0);
	assert_false(exists(f->s, &a[3]));
	assert_true(exists(f->s, &a[0]));

	/* Move running and last good forward; a[0], a[1] go, shared stays for api. */
	st.running = a[6];
	st.last_good = a[5];
	assert_int_equal(store_service_state_put(f->s, "web", &st), 0);
	assert_int_equal(store_retain(f->s, "web"), 2);
	assert_false(exists(f->s, &a[0]));
	assert_false(exists(f->s, &a[1]));
	assert_true(exists(f->s, &a[4]));
	assert_true(exists(f->s, &a[7]));
	assert_int_equal(store_retain(f->s, "web"), 0);
	assert_int_equal(store_retain(f->s, "bad name"), -EINVAL);
	assert_int_equal(store_stats(f->s, &ss), 0);
	assert_int_equal(ss.nchunks, 4 + 2);
	assert_int_equal(ss.nblobs, 4 + 1);
	free(shared);
}

/* ---- map growth and ENOSPC ---------------------------------------------------------------------- */

static void test_map_growth(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	tu_rm_rf(f->path);
	f->opts.map_size = 1 << 20;
	f->opts.map_max = 64 << 20;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	struct store_id id;
	assert_int_equal(import_simple(f->s, "web", "1", 12 << 20, 5, &id), 0);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_true(st.map_size >= 12 << 20);
	assert_true(st.map_size <= 64 << 20);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	uint8_t *got;
	size_t gl;
	read_all(f->s, &a.manifest.files[0].blob, &got, &gl);
	uint8_t *want = malloc(gl);
	tu_fill(want, gl, 5);
	assert_memory_equal(got, want, gl);
	free(got);
	free(want);
	store_artifact_info_release(&a);
}

static void test_enospc_then_usable(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	tu_rm_rf(f->path);
	f->opts.map_size = 256 << 10;
	f->opts.map_max = 2 << 20;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	struct store_id small, id;
	assert_int_equal(import_simple(f->s, "web", "1", 1000, 1, &small), 0);
	/* too big for the map even at its maximum; both in one batch and across batches */
	assert_int_equal(import_simple(f->s, "web", "2", 3 << 20, 2, &id), -EFBIG);
	assert_int_equal(import_simple(f->s, "web", "3", 12 << 20, 3, &id), -EFBIG);
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.map_size, 2 << 20);
	assert_int_equal(st.nartifacts, 1);
	assert_int_equal(st.nchunks, 1); /* the failed imports left nothing behind */
	/* still usable: small writes work */
	assert_int_equal(import_simple(f->s, "web", "4", 5000, 4, &id), 0);
	struct store_revision r;
	rev_init(&r, "web", 1, &id);
	assert_int_equal(store_revision_put(f->s, &r), 0);
	assert_int_equal(store_kv_put(f->s, STORE_KV_RECORDS, "k", 1, "v", 1), 0);
	/* a single value bigger than the map */
	size_t huge = 3 << 20;
	void *hb = calloc(1, huge);
	assert_int_equal(store_journal_put(f->s, "web", hb, huge), -EFBIG);
	free(hb);
	assert_int_equal(store_journal_put(f->s, "web", "ok", 2), 0);
	reopen(f);
	assert_true(exists(f->s, &small));
	assert_true(exists(f->s, &id));
	uint8_t *got;
	size_t gl;
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	read_all(f->s, &a.manifest.files[0].blob, &got, &gl);
	assert_int_equal(gl, 5000);
	free(got);
	store_artifact_info_release(&a);
}

struct stream_acc {
	uint8_t *buf;
	size_t len;
	int calls;
	int stop_after;
};

static int stream_cb(const void *buf, size_t len, void *ud)
{
	struct stream_acc *a = ud;
	memcpy(a->buf + a->len, buf, len);
	a->len += len;
	a->calls++;
	return a->stop_after && a->calls == a->stop_after ? 7 : 0;
}

static void test_blob_stream(void **state)
{
	struct fx *f = *state;
	size_t big = 2 * STORE_CHUNK_SIZE + 99;
	uint8_t *b = malloc(big);
	tu_fill(b, big, 21);
	struct tfile tf[] = { { "x", 0644, b, big } };
	struct store_id id;
	assert_int_equal(import_files(f->s, "web", "1", tf, 1, 1, &id), 0);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(f->s, &id, &a), 0);
	struct store_id blob = a.manifest.files[0].blob;
	store_artifact_info_release(&a);
	struct stream_acc acc = { .buf = malloc(big) };
	assert_int_equal(store_blob_stream(f->s, &blob, 0, 0, true, stream_cb, &acc), 0);
	assert_int_equal(acc.len, big);
	assert_int_equal(acc.calls, 3);
	assert_memory_equal(acc.buf, b, big);
	/* a window straddling a chunk boundary */
	acc.len = 0;
	acc.calls = 0;
	assert_int_equal(store_blob_stream(f->s, &blob, STORE_CHUNK_SIZE - 5, 10, false, stream_cb,
					   &acc), 0);
	assert_int_equal(acc.len, 10);
	assert_int_equal(acc.calls, 2);
	assert_memory_equal(acc.buf, b + STORE_CHUNK_SIZE - 5, 10);
	/* past the end: nothing; stop value returned */
	acc.len = 0;
	assert_int_equal(store_blob_stream(f->s, &blob, big + 1, 0, true, stream_cb, &acc), 0);
	assert_int_equal(acc.len, 0);
	acc.calls = 0;
	acc.stop_after = 1;
	assert_int_equal(store_blob_stream(f->s, &blob, 0, 0, true, stream_cb, &acc), 7);
	struct store_id nope = { { 3 } };
	assert_int_equal(store_blob_stream(f->s, &nope, 0, 0, true, stream_cb, &acc), -ENOENT);
	assert_int_equal(store_blob_stream(f->s, &blob, 0, 0, true, NULL, &acc), -EINVAL);
	free(acc.buf);
	free(b);
}

/* Several threads import, write revisions and read while the map grows under them. */
struct thr {
	struct store *s;
	int idx;
	int err;
	struct store_id ids[6];
};

static void *thr_main(void *ud)
{
	struct thr *t = ud;
	for (int i = 0; i < 6 && !t->err; i++) {
		char v[32];
		snprintf(v, sizeof(v), "t%d-%d", t->idx, i);
		int r = import_simple(t->s, "web", v, 600 * 1024 + (size_t)i, (uint64_t)(t->idx * 100 + i),
				      &t->ids[i]);
		if (r < 0) {
			t->err = r;
			break;
		}
		struct store_revision rv;
		rev_init(&rv, "thr", (uint64_t)(t->idx * 100 + i + 1), NULL);
		if ((r = store_revision_put(t->s, &rv)) < 0)
			t->err = r;
		uint8_t buf[4096];
		struct store_artifact_info a;
		if ((r = store_artifact_get(t->s, &t->ids[i], &a)) < 0) {
			t->err = r;
			break;
		}
		int64_t n = store_blob_read(t->s, &a.manifest.files[0].blob, 0, buf, sizeof(buf), true);
		if (n != (int64_t)sizeof(buf))
			t->err = n < 0 ? (int)n : -EIO;
		store_artifact_info_release(&a);
	}
	return NULL;
}

static void test_threads_map_growth(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	tu_rm_rf(f->path);
	f->opts.map_size = 256 << 10;
	f->opts.map_max = 256 << 20;
	f->opts.retain_revs = 1000;
	assert_int_equal(store_open(&f->opts, &f->s), 0);
	struct thr t[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		t[i] = (struct thr){ .s = f->s, .idx = i };
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].err, 0);
	}
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nartifacts, 18);
	assert_true(st.map_size > (256 << 10));
	reopen(f);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 6; j++)
			assert_true(exists(f->s, &t[i].ids[j]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_node_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_newer_refused, setup, teardown),
		cmocka_unit_test(test_ids_strerror),
		cmocka_unit_test(test_manifest_codec),
		cmocka_unit_test_setup_teardown(test_import_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_abort_collects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_crash_orphans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_foreach_condemn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_materialize_and_corruption, setup, teardown),
		cmocka_unit_test(test_revision_codec),
		cmocka_unit_test(test_revision_codec_format2),
		cmocka_unit_test_setup_teardown(test_revision_format2_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vote_recast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vote_format1_reads_subject0, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revisions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_votes_state_journal_kv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_then_usable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_map_growth, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
