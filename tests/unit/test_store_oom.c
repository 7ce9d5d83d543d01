/*
 * tests/unit/test_store_oom.c: allocation-failure loops over the store's operations, in the
 * manner of libuv's and SQLite's OOM tests. For each operation, for N = 1, 2, ...: make the
 * N-th allocation fail (once, then in a second pass persistently), run the operation, and
 * require a clean error (-ENOMEM), no leak (LeakSanitizer at exit), and a consistent store:
 * the same handle still reads the baseline back, and so does a fresh handle after reopening.
 * The loop ends when N exceeds the allocations the operation makes (it then succeeds) and the
 * result is checked. Covers the allocations the store makes itself (see store__alloc_fail_after
 * in store/store.h); LMDB's own are not injected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "test_store_util.h"

#define BIG_LEN (33 * STORE_CHUNK_SIZE + 4321) /* more than one import batch (32 chunks) */

struct ctx {
	char *work;
	char path[4096];
	char mat[4200];
	struct store_opts opts;
	struct store *s;
	struct store_id base;	/* baseline artifact */
	struct store_id base_blob;
	uint8_t *big;		/* BIG_LEN bytes */
	uint8_t *big2;		/* BIG_LEN other bytes */
	uint8_t small[3000];
	uint64_t base_chunks;
	/* scratch for ops */
	struct store_id out_id;
	int pass;
};

static struct ctx C;

static void manifest_init(struct store_manifest *m, const char *service, const char *version)
{
	memset(m, 0, sizeof(*m));
	m->service = strdup(service);
	m->runtime = strdup("exec");
	m->version = strdup(version);
	m->exec_command = strdup("./run");
}

/* Import a two-file artifact; @big_too adds the multi-batch file. */
static int do_import_data(struct store *s, const char *version, bool big_too, const uint8_t *big,
			  struct store_id *ret)
{
	struct store_import *imp;
	int r = store_import_begin(s, &imp);
	if (r < 0)
		return r;
	if ((r = store_import_file(imp, "small", 0644)) < 0 ||
	    (r = store_import_write(imp, C.small, sizeof(C.small))) < 0 ||
	    (r = store_import_file_end(imp)) < 0)
		goto fail;
	if (big_too) {
		if ((r = store_import_file(imp, "bin/big", 0755)) < 0 ||
		    (r = store_import_write(imp, big, BIG_LEN)) < 0 ||
		    (r = store_import_file_end(imp)) < 0)
			goto fail;
	}
	if ((r = store_import_file(imp, "link", 0120000)) < 0 ||
	    (r = store_import_write(imp, "small", 5)) < 0 || (r = store_import_file_end(imp)) < 0)
		goto fail;
	struct store_manifest m;
	manifest_init(&m, "web", version);
	r = store_import_commit(imp, &m, 42, ret);
	store_manifest_release(&m);
	return r;
fail:
	store_import_abort(imp);
	return r;
}

static int do_import(struct store *s, const char *version, bool big_too, struct store_id *ret)
{
	return do_import_data(s, version, big_too, C.big, ret);
}

static void rev_init(struct store_revision *r, uint64_t rev, const struct store_id *art)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->service, "web");
	r->rev = rev;
	r->artifact = *art;
	snprintf(r->reason, sizeof(r->reason), "r%llu", (unsigned long long)rev);
}

/* The baseline every check relies on. */
static void check_baseline(struct store *s, bool reopened)
{
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(s, &C.base, &a), 0);
	assert_int_equal(a.manifest.nfiles, 3);
	store_artifact_info_release(&a);
	uint8_t *b = malloc(BIG_LEN);
	assert_int_equal(store_blob_read(s, &C.base_blob, 0, b, BIG_LEN, true), BIG_LEN);
	assert_memory_equal(b, C.big, BIG_LEN);
	free(b);
	/* (retention may have moved the log on; the baseline artifact runs, so it stays) */
	struct store_revision r;
	uint64_t latest = 0;
	assert_int_equal(store_revision_latest(s, "web", &latest), 0);
	assert_true(latest >= 1);
	assert_int_equal(store_revision_get(s, "web", latest, &r), 0);
	store_revision_release(&r);
	struct store_stats st;
	assert_int_equal(store_stats(s, &st), 0);
	/* Every artifact the ops import shares its content with the baseline, so the chunk count
	 * never changes; before a reopen, chunks of a failed import whose abort could not collect
	 * them (persistent failure) may still be there. */
	if (reopened)
		assert_int_equal(st.nchunks, C.base_chunks);
	else
		assert_true(st.nchunks >= C.base_chunks);
}

static int setup(void **state)
{
	memset(&C, 0, sizeof(C));
	C.work = tu_tmpdir();
	assert_non_null(C.work);
	snprintf(C.path, sizeof(C.path), "%s/db", C.work);
	snprintf(C.mat, sizeof(C.mat), "%s/mat", C.work);
	C.opts.path = C.path;
	C.opts.nosync = true;
	C.opts.retain_revs = 2;
	C.big = malloc(BIG_LEN);
	tu_fill(C.big, BIG_LEN, 1);
	C.big2 = malloc(BIG_LEN);
	tu_fill(C.small, sizeof(C.small), 2);
	assert_int_equal(store_open(&C.opts, &C.s), 0);
	assert_int_equal(do_import(C.s, "base", true, &C.base), 0);
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(C.s, &C.base, &a), 0);
	assert_string_equal(a.manifest.files[0].path, "bin/big");
	C.base_blob = a.manifest.files[0].blob;
	store_artifact_info_release(&a);
	struct store_revision r;
	rev_init(&r, 1, &C.base);
	assert_int_equal(store_revision_put(C.s, &r), 0);
	struct store_service_state st = { .running = C.base, .running_rev = 1, .last_good = C.base };
	assert_int_equal(store_service_state_put(C.s, "web", &st), 0);
	struct store_vote v = { .service = "web", .rev = 1, .voter = { 1 } };
	assert_int_equal(store_vote_put(C.s, &v), 0);
	assert_int_equal(store_journal_put(C.s, "web", "j", 1), 0);
	assert_int_equal(store_kv_put(C.s, STORE_KV_MEMBERS, "m", 1, "v", 1), 0);
	struct store_stats s;
	assert_int_equal(store_stats(C.s, &s), 0);
	C.base_chunks = s.nchunks;
	*state = &C;
	return 0;
}

static int teardown(void **state)
{
	store__alloc_fail_after(-1, false);
	store_close(C.s);
	tu_rm_rf(C.work);
	free(C.work);
	free(C.big);
	free(C.big2);
	return 0;
}

/* ---- the operations ---------------------------------------------------------------------- */

static int op_open(void)
{
	struct store *s;
	int r = store_open(&C.opts, &s);
	if (r == 0)
		store_close(s);
	return r;
}

static int op_import_new(void)
{
	/* A new artifact with new content in each pass: a failure after the first batch of
	 * chunks landed leaves orphans for abort (or, if abort's collection fails too, the next
	 * open) to collect. */
	return do_import_data(C.s, C.pass ? "new-persistent" : "new-once", true, C.big2, &C.out_id);
}

static int op_import_existing(void)
{
	int r = do_import(C.s, "base", true, &C.out_id);
	return r == 1 ? 0 : r < 0 ? r : -EPROTO;
}

static int op_get(void)
{
	struct store_artifact_info a;
	int r = store_artifact_get(C.s, &C.base, &a);
	if (r == 0)
		store_artifact_info_release(&a);
	return r;
}

static int op_find(void)
{
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&C.base, hex);
	hex[10] = '\0';
	return store_artifact_find(C.s, hex, &C.out_id);
}

static int count_art(const struct store_artifact_info *a, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int op_foreach(void)
{
	int n = 0;
	int r = store_artifact_foreach(C.s, "web", count_art, &n);
	return r < 0 ? r : n >= 1 ? 0 : -EPROTO;
}

static int op_materialize(void)
{
	return store_artifact_materialize(C.s, &C.base, C.mat);
}

static int op_blob_read(void)
{
	uint8_t b[1000];
	int64_t n = store_blob_read(C.s, &C.base_blob, STORE_CHUNK_SIZE - 10, b, sizeof(b), true);
	return n < 0 ? (int)n : n == (int64_t)sizeof(b) ? 0 : -EPROTO;
}

/* A new revision pointing at a new artifact: retention drops older ones and runs the GC. */
static int op_revision_put(void)
{
	struct store_id other;
	int r = do_import(C.s, "other", false, &other);
	if (r < 0)
		return r;
	struct store_revision rv;
	for (uint64_t i = 2; i <= 3; i++) {
		rev_init(&rv, i, &other);
		if ((r = store_revision_put(C.s, &rv)) < 0)
			return r;
	}
	return 0;
}

static int rev_cb(const struct store_revision *r, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int op_revision_read(void)
{
	struct store_revision rv;
	int n = 0, r = store_revision_get(C.s, "web", 1, &rv);
	if (r < 0)
		return r;
	store_revision_release(&rv);
	uint64_t latest;
	if ((r = store_revision_latest(C.s, "web", &latest)) < 0)
		return r;
	r = store_revision_foreach(C.s, "web", 0, rev_cb, &n);
	return r < 0 ? r : n >= 1 ? 0 : -EPROTO;
}

static int vote_cb(const struct store_vote *v, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int svc_cb(const char *s, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int jr_cb(const char *s, const void *b, size_t l, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int kv_cb(const void *k, size_t kl, const void *v, size_t vl, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static int op_small_tables(void)
{
	int n = 0, r;
	struct store_vote v = { .service = "web", .rev = 1, .voter = { 2 } };
	if ((r = store_vote_put(C.s, &v)) < 0 || (r = store_vote_foreach(C.s, "web", 1, vote_cb, &n)) < 0 ||
	    (r = store_service_foreach(C.s, svc_cb, &n)) < 0 ||
	    (r = store_journal_put(C.s, "api", "x", 1)) < 0 ||
	    (r = store_journal_foreach(C.s, jr_cb, &n)) < 0 ||
	    (r = store_kv_put(C.s, STORE_KV_RECORDS, "k", 1, "v", 1)) < 0 ||
	    (r = store_kv_foreach(C.s, STORE_KV_RECORDS, kv_cb, &n)) < 0)
		return r;
	void *jb;
	size_t jl;
	if ((r = store_journal_get(C.s, "web", &jb, &jl)) < 0)
		return r;
	free(jb);
	struct store_service_state st;
	if ((r = store_service_state_get(C.s, "web", &st)) < 0)
		return r;
	uint8_t id[STORE_NODE_ID_LEN];
	if ((r = store_node_id(C.s, id)) < 0)
		return r;
	struct store_stats ss;
	if ((r = store_stats(C.s, &ss)) < 0)
		return r;
	return n >= 5 ? 0 : -EPROTO;
}

static int op_retain_gc(void)
{
	int r = store_retain(C.s, "web");
	if (r < 0)
		return r;
	r = store_gc(C.s);
	return r < 0 ? r : 0;
}

static int op_codecs(void)
{
	struct store_artifact_info a;
	int r = store_artifact_get(C.s, &C.base, &a);
	if (r < 0)
		return r;
	uint8_t *buf = NULL;
	size_t len;
	struct store_manifest m;
	struct store_id id;
	if ((r = store_manifest_encode(&a.manifest, &buf, &len)) < 0 ||
	    (r = store_manifest_decode(buf, len, &m)) < 0)
		goto out;
	store_manifest_release(&m);
	if ((r = store_manifest_id(&a.manifest, &id)) < 0)
		goto out;
	free(buf);
	buf = NULL;
	struct store_revision rv, d;
	uint8_t cert[2][STORE_NODE_ID_LEN] = { { 1 }, { 2 } };
	rev_init(&rv, 9, &C.base);
	rv.ncert = 2;
	rv.cert = cert;
	if ((r = store_revision_encode(&rv, &buf, &len)) < 0 ||
	    (r = store_revision_decode(buf, len, &d)) < 0)
		goto out;
	store_revision_release(&d);
out:
	free(buf);
	store_artifact_info_release(&a);
	return r;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void run_loop(const char *name, int (*op)(void), void (*after_success)(void))
{
	for (int pass = 0; pass < 2; pass++) {
		bool persistent = pass == 1;
		C.pass = pass;
		tu_fill(C.big2, BIG_LEN, 100 + (uint64_t)pass);
		int failures = 0;
		for (long n = 1;; n++) {
			store__alloc_fail_after(n, persistent);
			int r = op();
			store__alloc_fail_after(-1, false);
			if (r == 0) {
				if (after_success)
					after_success();
				break;
			}
			if (r != -ENOMEM)
				fail_msg("%s: allocation %ld failing (%s) gave %d (%s), want -ENOMEM", name,
					 n, persistent ? "persistent" : "once", r, store_strerror(r));
			failures++;
			/* the same handle still works, and so does a reopened one */
			check_baseline(C.s, false);
			store_close(C.s);
			C.s = NULL;
			assert_int_equal(store_open(&C.opts, &C.s), 0);
			check_baseline(C.s, true);
			assert_true(n < 100000);
		}
		printf("# %s (%s): %d failing runs before success\n", name,
		       persistent ? "persistent" : "once", failures);
	}
}

static void check_imported(void)
{
	struct store_artifact_info a;
	assert_int_equal(store_artifact_get(C.s, &C.out_id, &a), 0);
	uint8_t *b = malloc(BIG_LEN);
	assert_int_equal(store_blob_read(C.s, &a.manifest.files[0].blob, 0, b, BIG_LEN, true),
			 BIG_LEN);
	assert_memory_equal(b, C.big2, BIG_LEN);
	free(b);
	store_artifact_info_release(&a);
	/* exactly the new file's chunks were added */
	struct store_stats st;
	assert_int_equal(store_stats(C.s, &st), 0);
	assert_int_equal(st.nchunks, C.base_chunks + 34);
	C.base_chunks = st.nchunks;
}

static void check_materialized(void)
{
	char p[4300];
	snprintf(p, sizeof(p), "%s/bin/big", C.mat);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, BIG_LEN);
}

static void test_oom_open(void **state) { run_loop("open", op_open, NULL); }
static void test_oom_import(void **state)
{
	/* A failed import must leave no chunk behind once the store is reopened. */
	store_close(C.s);
	assert_int_equal(store_open(&C.opts, &C.s), 0);
	run_loop("import", op_import_new, check_imported);
	/* Now exactly one new artifact; its chunks and the baseline's, and nothing more. */
	store_close(C.s);
	assert_int_equal(store_open(&C.opts, &C.s), 0);
	struct store_stats st;
	assert_int_equal(store_stats(C.s, &st), 0);
	assert_int_equal(st.nartifacts, 3);
	assert_int_equal(store_gc(C.s), 0);
}
static void test_oom_import_existing(void **state)
{
	run_loop("import existing", op_import_existing, NULL);
}
static void test_oom_reads(void **state)
{
	run_loop("artifact_get", op_get, NULL);
	run_loop("artifact_find", op_find, NULL);
	run_loop("artifact_foreach", op_foreach, NULL);
	run_loop("blob_read", op_blob_read, NULL);
	run_loop("revision reads", op_revision_read, NULL);
}
static void test_oom_materialize(void **state)
{
	run_loop("materialize", op_materialize, check_materialized);
}
static void test_oom_revision_put(void **state)
{
	run_loop("revision_put+retention", op_revision_put, NULL);
}
static void test_oom_small_tables(void **state)
{
	run_loop("votes/journal/kv/state/stats", op_small_tables, NULL);
}
static void test_oom_retain_gc(void **state) { run_loop("retain+gc", op_retain_gc, NULL); }
static void test_oom_codecs(void **state) { run_loop("codecs", op_codecs, NULL); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_oom_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_import, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_import_existing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_materialize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_revision_put, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_small_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_retain_gc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oom_codecs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
