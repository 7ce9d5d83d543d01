/*
 * Peer-to-peer artifact fetch: real transports on 127.0.0.1 in one process, real LMDB stores in
 * mkdtemp directories, one libuv loop. A "test server" (a raw app-stream handler speaking the
 * fetch protocol from a real store) injects the faults: a corrupted chunk, a connection cut in
 * the middle of a transfer.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <signal.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "agent/cluster/fetch.h"
#include "gossip/transport.h"
#include "store/store.h"

#define NNODES 4
#define BIG_LEN (5 * 1024 * 1024 + 12345) /* 21 chunks, the last one short */

enum { A = 0, B = 1, C = 2, M = 3 }; /* A holds; B fetches; C serves an empty store; M: faults */

struct node {
	struct gossip_transport *t;
	struct gossip_keyring *kr;
	struct store *store;
	struct fetch *fetch;
	char dir[64];
	struct gossip_addr addr;
	bool closed;
};

enum fault { FAULT_NONE, FAULT_CORRUPT, FAULT_CUT };

/* The test server: answers from @src's store, with a fault. */
struct evil {
	enum fault fault;
	struct store *src;
	unsigned chunks_served;
	unsigned cut_after;
	bool cut_done;
	unsigned streams;
};

static uv_loop_t loop;
static struct node nodes[NNODES];
static uint8_t key[GOSSIP_KEY_LEN];
static struct evil evil;
static struct store_id art;
static uint8_t *big;

/* ---- plumbing ---------------------------------------------------------------------------- */

static void node_up(int i, bool with_fetch)
{
	struct node *n = &nodes[i];
	struct gossip_transport_config cfg;
	struct store_opts so = { .nosync = true };

	memset(n, 0, sizeof(*n));
	snprintf(n->dir, sizeof(n->dir), "/tmp/shoal-fetch-XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	so.path = n->dir;
	assert_int_equal(store_open(&so, &n->store), 0);
	assert_int_equal(gossip_keyring_new(&n->kr), 0);
	assert_int_equal(gossip_keyring_install(n->kr, key, NULL), 0);
	gossip_transport_config_default(&cfg);
	cfg.core.id[0] = (uint8_t)(0x20 + i);
	cfg.core.id[15] = 0x55;
	cfg.core.name = "n";
	cfg.cluster = "fetch-unit";
	cfg.bind = "127.0.0.1:0";
	cfg.sync_interval_ms = UINT32_MAX;
	cfg.keyring = n->kr;
	cfg.app_idle_ms = 5000;
	assert_int_equal(gossip_transport_new(&loop, &cfg, &n->t), 0);
	gossip_transport_addrs(n->t, NULL, &n->addr);
	if (with_fetch)
		assert_int_equal(fetch_new(&loop, n->store, n->t, NULL, &n->fetch), 0);
}

static void node_closed(struct gossip_transport *t, void *ud)
{
	struct node *n = ud;

	(void)t;
	n->closed = true;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void nodes_down(void)
{
	for (int i = 0; i < NNODES; i++) {
		struct node *n = &nodes[i];

		if (!n->t)
			continue;
		fetch_free(n->fetch);
		n->fetch = NULL;
		gossip_transport_close(n->t, node_closed, n);
	}
	for (int k = 0; k < 400; k++)
		if (uv_run(&loop, UV_RUN_NOWAIT) == 0)
			break;
	for (int i = 0; i < NNODES; i++) {
		struct node *n = &nodes[i];

		if (!n->t)
			continue;
		assert_true(n->closed);
		gossip_keyring_free(n->kr);
		store_close(n->store);
		nftw(n->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		n->t = NULL;
	}
	assert_int_equal(uv_loop_alive(&loop), 0);
}

struct waiter {
	bool (*pred)(void *);
	void *arg;
	uint64_t deadline;
	bool ok;
};

static void wait_tick(uv_timer_t *timer)
{
	struct waiter *w = timer->data;

	if (w->pred(w->arg)) {
		w->ok = true;
		uv_stop(&loop);
	} else if (uv_now(&loop) >= w->deadline) {
		uv_stop(&loop);
	}
}

/* Run the loop until @pred holds (checked every 10 ms) or @ms pass. */
static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms)
{
	uv_timer_t timer;
	struct waiter w = { pred, arg, 0, false };

	uv_update_time(&loop);
	w.deadline = uv_now(&loop) + ms;
	uv_timer_init(&loop, &timer);
	timer.data = &w;
	uv_timer_start(&timer, wait_tick, 10, 10);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return w.ok;
}

/* Import the test artifact into @s: a multi-chunk file, a small one, an empty one, a link. */
static void import_artifact(struct store *s, struct store_id *ret)
{
	struct store_import *imp;
	struct store_manifest m;

	assert_int_equal(store_import_begin(s, &imp), 0);
	assert_int_equal(store_import_file(imp, "bin/big", 0755), 0);
	assert_int_equal(store_import_write(imp, big, BIG_LEN), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	assert_int_equal(store_import_file(imp, "empty", 0644), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	assert_int_equal(store_import_file(imp, "link", 0120000), 0);
	assert_int_equal(store_import_write(imp, "bin/big", 7), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	assert_int_equal(store_import_file(imp, "small.txt", 0644), 0);
	assert_int_equal(store_import_write(imp, "hello peer\n", 11), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	memset(&m, 0, sizeof(m));
	m.service = strdup("web");
	m.runtime = strdup("exec");
	m.version = strdup("1.0");
	m.exec_command = strdup("bin/big");
	assert_int_equal(store_import_commit(imp, &m, 1000, ret), 0);
	store_manifest_release(&m);
}

/* The artifact in @s is byte-identical to the one in A's store. */
static void assert_same_artifact(struct store *s)
{
	struct store_artifact_info a, b;
	uint8_t *x = malloc(BIG_LEN), *y = malloc(BIG_LEN);

	assert_non_null(x);
	assert_non_null(y);
	assert_int_equal(store_artifact_get(nodes[A].store, &art, &a), 0);
	assert_int_equal(store_artifact_get(s, &art, &b), 0);
	assert_int_equal(a.manifest.nfiles, b.manifest.nfiles);
	for (size_t i = 0; i < a.manifest.nfiles; i++) {
		const struct store_file *fa = &a.manifest.files[i], *fb = &b.manifest.files[i];

		assert_string_equal(fa->path, fb->path);
		assert_int_equal(fa->mode, fb->mode);
		assert_int_equal(fa->size, fb->size);
		assert_memory_equal(fa->blob.b, fb->blob.b, STORE_ID_LEN);
		assert_int_equal(store_blob_read(nodes[A].store, &fa->blob, 0, x, BIG_LEN, true),
				 (int64_t)fa->size);
		assert_int_equal(store_blob_read(s, &fb->blob, 0, y, BIG_LEN, true),
				 (int64_t)fb->size);
		assert_memory_equal(x, y, fa->size);
	}
	assert_memory_equal(y, big, 0); /* keep y used when every file is small */
	store_artifact_info_release(&a);
	store_artifact_info_release(&b);
	free(x);
	free(y);
}

struct result {
	int done;
	int err;
};

static void on_fetched(void *ud, const struct store_id *id, int err)
{
	struct result *r = ud;

	assert_memory_equal(id->b, art.b, STORE_ID_LEN);
	r->done++;
	r->err = err;
}

static bool result_done(void *arg)
{
	return ((struct result *)arg)->done > 0;
}

/* ---- the faulty test server ------------------------------------------------------------- */

static void evil_send(struct gossip_stream *s, const struct fetch_msg *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(fetch_msg_encode(m, &buf, &len), 0);
	assert_int_equal(gossip_stream_send(s, buf, len), 0);
	free(buf);
}

static void evil_frame(struct gossip_stream *s, void *ud, const uint8_t *buf, size_t len)
{
	struct evil *e = ud;
	struct fetch_msg q, a;
	static uint8_t chunk[STORE_CHUNK_SIZE];
	uint8_t *mbuf = NULL, *hashes = NULL;

	assert_int_equal(fetch_msg_decode(buf, len, &q), 0);
	memset(&a, 0, sizeof(a));
	a.id = q.id;
	if (q.type == FETCH_GET_MANIFEST) {
		struct store_artifact_info info;

		assert_int_equal(store_artifact_get(e->src, &q.id, &info), 0);
		assert_int_equal(store_manifest_encode(&info.manifest, &mbuf, &a.len), 0);
		store_artifact_info_release(&info);
		a.type = FETCH_MANIFEST;
		a.data = mbuf;
	} else if (q.type == FETCH_GET_BLOB) {
		uint32_t n = 0;

		assert_int_equal(store_blob_size(e->src, &q.id, &a.size), 0);
		assert_int_equal(store_blob_chunks(e->src, &q.id, &n), 0);
		hashes = calloc(n + 1, STORE_ID_LEN);
		for (uint32_t i = 0; i < n; i++)
			assert_int_equal(store_blob_chunk(e->src, &q.id, i,
							  (struct store_id *)(hashes + i * 32),
							  NULL, 0, NULL), 0);
		a.type = FETCH_BLOB;
		a.data = hashes;
		a.len = (size_t)n * STORE_ID_LEN;
	} else {
		assert_int_equal(q.type, FETCH_GET_CHUNK);
		assert_int_equal(store_blob_chunk(e->src, &q.id, q.index, NULL, chunk,
						  sizeof(chunk), &a.len), 0);
		if (e->fault == FAULT_CORRUPT && q.index == 3)
			chunk[100] ^= 0x01; /* one flipped bit */
		a.type = FETCH_CHUNK;
		a.index = q.index;
		a.data = chunk;
		e->chunks_served++;
	}
	evil_send(s, &a);
	free(mbuf);
	free(hashes);
	if (e->fault == FAULT_CUT && !e->cut_done && e->chunks_served >= e->cut_after) {
		e->cut_done = true;
		gossip_stream_close(s); /* the client sees the connection end mid-transfer */
	}
}

static void evil_closed(struct gossip_stream *s, void *ud, int err)
{
	(void)s;
	(void)ud;
	(void)err;
}

static const struct gossip_stream_ops evil_ops = { evil_frame, evil_closed };

static int evil_accept(void *ud, struct gossip_stream *s, const uint8_t sender[GOSSIP_SENDER_LEN])
{
	struct evil *e = ud;

	(void)sender;
	e->streams++;
	gossip_stream_set_ops(s, &evil_ops, e);
	return 0;
}

/* ---- setup ------------------------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	gossip_key_generate(key);
	big = malloc(BIG_LEN);
	assert_non_null(big);
	/* incompressible, deterministic: a xorshift stream */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < BIG_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		big[i] = (uint8_t)x;
	}
	node_up(A, true);
	node_up(B, true);
	node_up(C, true);
	node_up(M, false);
	import_artifact(nodes[A].store, &art);
	memset(&evil, 0, sizeof(evil));
	evil.src = nodes[A].store;
	assert_int_equal(gossip_transport_app_listen(nodes[M].t, FETCH_PROTO, evil_accept, &evil),
			 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nodes_down();
	assert_int_equal(uv_loop_close(&loop), 0);
	free(big);
	return 0;
}

static size_t big_chunks(void)
{
	return (BIG_LEN + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_codec(void **state)
{
	struct fetch_msg m = { .type = FETCH_CHUNK, .index = 7 }, d;
	uint8_t data[100], *buf = NULL;
	size_t len = 0;

	(void)state;
	memset(data, 0xab, sizeof(data));
	memset(m.id.b, 0x11, STORE_ID_LEN);
	m.data = data;
	m.len = sizeof(data);
	assert_int_equal(fetch_msg_encode(&m, &buf, &len), 0);
	assert_int_equal(fetch_msg_decode(buf, len, &d), 0);
	assert_int_equal(d.type, FETCH_CHUNK);
	assert_int_equal(d.index, 7);
	assert_int_equal(d.len, sizeof(data));
	assert_memory_equal(d.data, data, sizeof(data));
	assert_memory_equal(d.id.b, m.id.b, STORE_ID_LEN);
	/* every truncation is refused, and so is a trailing byte */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(fetch_msg_decode(buf, cut, &d), -EBADMSG);
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, buf, len);
	longer[len] = 0xc0;
	assert_int_equal(fetch_msg_decode(longer, len + 1, &d), -EBADMSG);
	/* another version */
	longer[1] = 2;
	assert_int_equal(fetch_msg_decode(longer, len, &d), -EPROTONOSUPPORT);
	free(longer);
	free(buf);
	/* BLOB hashes must be 32*n */
	m.type = FETCH_BLOB;
	m.len = 33;
	assert_int_equal(fetch_msg_encode(&m, &buf, &len), -EINVAL);
}

static void test_fetch_whole(void **state)
{
	struct result r1 = { 0 }, r2 = { 0 };
	struct fetch_stats st;

	(void)state;
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[A].addr, 1, on_fetched, &r1),
			 0);
	/* the same id again: joins the transfer in progress */
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[A].addr, 1, on_fetched, &r2),
			 0);
	assert_int_equal(fetch_active(nodes[B].fetch), 1);
	assert_true(run_until(result_done, &r1, 30000));
	assert_int_equal(r1.err, 0);
	assert_int_equal(r2.done, 1);
	assert_int_equal(r2.err, 0);
	assert_same_artifact(nodes[B].store);
	fetch_get_stats(nodes[B].fetch, &st);
	assert_int_equal(st.started, 1);
	assert_int_equal(st.ok, 1);
	/* big (21 chunks) + link + small: each remote chunk exactly once */
	assert_int_equal(st.chunks_in, big_chunks() + 2);
	assert_int_equal(st.bad_frames, 0);
	fetch_get_stats(nodes[A].fetch, &st);
	assert_int_equal(st.served_chunks, big_chunks() + 2);
	/* now held: nothing to do */
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[A].addr, 1, on_fetched, &r1),
			 1);
}

/* Upload slots (fetch.h): A with one slot, B and C fetch the big blob from A alone at once;
 * one of them is answered busy, waits, and both end with the whole artifact. */
static bool both_done(void *arg)
{
	struct result *r = arg;
	return r[0].done > 0 && r[1].done > 0;
}

static void test_upload_slots(void **state)
{
	struct result r[2] = { { 0 }, { 0 } };
	struct fetch_config cfg = { .serve_slots = 1 };
	struct fetch_stats sa, sb, sc;

	(void)state;
	fetch_free(nodes[A].fetch);
	assert_int_equal(fetch_new(&loop, nodes[A].store, nodes[A].t, &cfg, &nodes[A].fetch), 0);
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[A].addr, 1, on_fetched, &r[0]),
			 0);
	assert_int_equal(fetch_artifact(nodes[C].fetch, &art, &nodes[A].addr, 1, on_fetched, &r[1]),
			 0);
	assert_true(run_until(both_done, r, 30000));
	assert_int_equal(r[0].err, 0);
	assert_int_equal(r[1].err, 0);
	assert_same_artifact(nodes[B].store);
	assert_same_artifact(nodes[C].store);
	fetch_get_stats(nodes[A].fetch, &sa);
	fetch_get_stats(nodes[B].fetch, &sb);
	fetch_get_stats(nodes[C].fetch, &sc);
	/* every pipelined chunk request of a refused stream is answered busy; its client acts on
	 * the first and moves on */
	assert_true(sb.busy + sc.busy >= 1);
	assert_true(sa.served_busy >= sb.busy + sc.busy);
	assert_int_equal(sa.served_errors, 0);
	/* each whole once: a busy answer sends no chunk */
	assert_int_equal(sa.served_chunks, 2 * (big_chunks() + 2));
}

static void test_not_found_then_next(void **state)
{
	struct result r = { 0 };
	struct gossip_addr peers[2] = { nodes[C].addr, nodes[A].addr };
	struct fetch_stats st;

	(void)state;
	/* C alone: it answers not_found */
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[C].addr, 1, on_fetched, &r),
			 0);
	assert_true(run_until(result_done, &r, 10000));
	assert_int_equal(r.err, -ENOENT);
	struct store_artifact_info info;
	assert_int_equal(store_artifact_get(nodes[B].store, &art, &info), -ENOENT);
	/* C then A: C's not_found moves on to A */
	memset(&r, 0, sizeof(r));
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, peers, 2, on_fetched, &r), 0);
	assert_true(run_until(result_done, &r, 30000));
	assert_int_equal(r.err, 0);
	fetch_get_stats(nodes[B].fetch, &st);
	assert_int_equal(st.not_found, 2);
	assert_same_artifact(nodes[B].store);
}

static void test_corrupt_chunk(void **state)
{
	struct result r = { 0 };
	struct gossip_addr peers[2] = { nodes[M].addr, nodes[A].addr };
	struct store_artifact_info info;
	struct fetch_stats st;

	(void)state;
	evil.fault = FAULT_CORRUPT;
	/* only the corrupting peer: every attempt is refused, nothing lands in the store */
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[M].addr, 1, on_fetched, &r),
			 0);
	assert_true(run_until(result_done, &r, 30000));
	assert_int_equal(r.err, -EBADMSG);
	assert_int_equal(store_artifact_get(nodes[B].store, &art, &info), -ENOENT);
	fetch_get_stats(nodes[B].fetch, &st);
	assert_true(st.bad_frames >= 8);
	assert_int_equal(st.chunks_in, 3); /* chunks 0..2 verified, 3 never written */
	/* the corrupting peer then a good one: completes from the good one */
	memset(&r, 0, sizeof(r));
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, peers, 2, on_fetched, &r), 0);
	assert_true(run_until(result_done, &r, 30000));
	assert_int_equal(r.err, 0);
	assert_same_artifact(nodes[B].store);
}

static void test_resume_after_cut(void **state)
{
	struct result r = { 0 };
	struct fetch_stats st;
	unsigned window = FETCH_WINDOW_DEFAULT;

	(void)state;
	evil.fault = FAULT_CUT;
	evil.cut_after = 5;
	/* only one peer, which cuts the first stream after 5 chunks: the fetch reconnects to it
	 * and continues from the first chunk it had not written */
	assert_int_equal(fetch_artifact(nodes[B].fetch, &art, &nodes[M].addr, 1, on_fetched, &r),
			 0);
	assert_true(run_until(result_done, &r, 30000));
	assert_int_equal(r.err, 0);
	assert_true(evil.cut_done);
	assert_true(evil.streams >= 2);
	fetch_get_stats(nodes[B].fetch, &st);
	assert_true(st.reconnects >= 1);
	assert_int_equal(st.chunks_in, big_chunks() + 2);
	/* resumed, not restarted: at most the requests in flight at the cut were served twice */
	if (evil.chunks_served > big_chunks() + 2 + window)
		fail_msg("served %u chunks for %zu", evil.chunks_served, big_chunks() + 2);
	assert_same_artifact(nodes[B].store);
}

static void test_local_blobs_reused(void **state)
{
	struct result r = { 0 };
	struct fetch_stats st;

	(void)state;
	/* C already holds the big blob under another artifact: only the rest travels */
	struct store_import *imp;
	struct store_manifest m = { 0 };
	struct store_id other;

	assert_int_equal(store_import_begin(nodes[C].store, &imp), 0);
	assert_int_equal(store_import_file(imp, "x", 0644), 0);
	assert_int_equal(store_import_write(imp, big, BIG_LEN), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	m.service = strdup("other");
	m.runtime = strdup("exec");
	m.exec_command = strdup("x");
	assert_int_equal(store_import_commit(imp, &m, 1000, &other), 0);
	store_manifest_release(&m);
	assert_int_equal(fetch_artifact(nodes[C].fetch, &art, &nodes[A].addr, 1, on_fetched, &r),
			 0);
	assert_true(run_until(result_done, &r, 30000));
	assert_int_equal(r.err, 0);
	fetch_get_stats(nodes[C].fetch, &st);
	assert_int_equal(st.chunks_local, big_chunks());
	assert_int_equal(st.chunks_in, 2);
	assert_same_artifact(nodes[C].store);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as agentd: a peer closing mid-write is an error, not a kill */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec),
		cmocka_unit_test_setup_teardown(test_fetch_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upload_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found_then_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_blobs_reused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
