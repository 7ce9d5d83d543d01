/*
 * Unit tests of gossip/transport.c and gossip/antientropy.c: several transports in one process
 * on 127.0.0.1 ephemeral ports with a real libuv loop; every wait bounded by a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "gossip/crypto.h"
#include "gossip/gossip.h"
#include "gossip/transport.h"

#define MAXN 6

struct node {
	struct gossip_transport *t;
	struct gossip_keyring *kr;
	uint8_t id[GOSSIP_ID_LEN];
	char name[16];
	struct gossip_addr addr;
	unsigned records_cb, members_cb;
	bool closed;
};

static uv_loop_t loop;
static struct node nodes[MAXN];
static uint8_t cluster_key[GOSSIP_KEY_LEN];

static void on_member(void *ud, const struct gossip_member *m)
{
	struct node *n = ud;

	n->members_cb++;
}

static void on_record(void *ud, const struct gossip_record *r)
{
	struct node *n = ud;

	n->records_cb++;
}

static void fast_config(struct gossip_transport_config *cfg)
{
	gossip_transport_config_default(cfg);
	cfg->core.probe_interval_ms = 200;
	cfg->core.probe_timeout_ms = 100;
	cfg->core.gossip_interval_ms = 50;
	cfg->cluster = "unit";
	cfg->bind = "127.0.0.1:0";
	cfg->sync_interval_ms = 60000; /* only the explicit ones, unless a test says otherwise */
	cfg->join_retry_ms = 200;
}

static int node_start_cfg(int i, const uint8_t *key, struct gossip_transport_config *cfg)
{
	struct node *n = &nodes[i];
	int r;

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "node%d", i);
	memset(n->id, 0, sizeof(n->id));
	n->id[0] = (uint8_t)(0x10 + i);
	n->id[15] = 0x77;
	assert_int_equal(gossip_keyring_new(&n->kr), 0);
	assert_int_equal(gossip_keyring_install(n->kr, key, NULL), 0);
	memcpy(cfg->core.id, n->id, GOSSIP_ID_LEN);
	cfg->core.name = n->name;
	cfg->keyring = n->kr;
	cfg->on_member = on_member;
	cfg->on_record = on_record;
	cfg->ud = n;
	r = gossip_transport_new(&loop, cfg, &n->t);
	if (r < 0) {
		gossip_keyring_free(n->kr);
		n->kr = NULL;
		return r;
	}
	gossip_transport_addrs(n->t, NULL, &n->addr);
	return 0;
}

static void node_start(int i, const uint8_t *key)
{
	struct gossip_transport_config cfg;

	fast_config(&cfg);
	assert_int_equal(node_start_cfg(i, key, &cfg), 0);
}

static void node_closed(struct gossip_transport *t, void *ud)
{
	struct node *n = ud;

	n->closed = true;
	gossip_keyring_free(n->kr);
	n->kr = NULL;
	n->t = NULL;
}

/* ---- bounded waiting -------------------------------------------------------------------- */

struct waiter {
	bool (*pred)(void *);
	void *arg;
	uint64_t deadline;
	bool ok;
};

static void wait_tick(uv_timer_t *timer)
{
	struct waiter *w = timer->data;

	if (w->pred && w->pred(w->arg)) {
		w->ok = true;
		uv_stop(&loop);
	} else if (uv_now(&loop) >= w->deadline) {
		uv_stop(&loop);
	}
}

/* Run the loop until @pred holds (checked every 20 ms) or @ms pass. Returns whether it held. */
static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms)
{
	uv_timer_t timer;
	struct waiter w = {pred, arg, 0, false};

	uv_update_time(&loop);
	w.deadline = uv_now(&loop) + ms;
	uv_timer_init(&loop, &timer);
	timer.data = &w;
	uv_timer_start(&timer, wait_tick, 20, 20);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return w.ok;
}

static void close_all(void)
{
	for (int i = 0; i < MAXN; i++)
		if (nodes[i].t)
			gossip_transport_close(nodes[i].t, node_closed, &nodes[i]);
	/* every close callback must come, then the loop has nothing left */
	for (int i = 0; i < 200; i++)
		if (uv_run(&loop, UV_RUN_NOWAIT) == 0)
			break;
	for (int i = 0; i < MAXN; i++)
		assert_null(nodes[i].t);
	assert_int_equal(uv_loop_alive(&loop), 0);
}

static int setup(void **state)
{
	assert_int_equal(uv_loop_init(&loop), 0);
	memset(nodes, 0, sizeof(nodes));
	gossip_key_generate(cluster_key);
	return 0;
}

static int teardown(void **state)
{
	close_all();
	assert_int_equal(uv_loop_close(&loop), 0);
	return 0;
}

struct count_arg {
	int first, n;
	size_t alive;
};

static bool all_see_alive(void *p)
{
	struct count_arg *a = p;

	for (int i = a->first; i < a->first + a->n; i++)
		if (gossip_member_count(gossip_transport_core(nodes[i].t), GOSSIP_ALIVE) !=
		    a->alive)
			return false;
	return true;
}

static void join_to(int i, int seed)
{
	assert_int_equal(gossip_transport_join_addrs(nodes[i].t, &nodes[seed].addr, 1), 1);
}

static bool all_have_web(void *p)
{
	for (int i = 0; i < 4; i++)
		if (!gossip_record_get(gossip_transport_core(nodes[i].t), nodes[2].id,
				       (const uint8_t *)"svc/web", 7))
			return false;
	return true;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_converge_and_records(void **state)
{
	struct count_arg a = {0, 4, 4};
	struct gossip_transport_stats st;
	const struct gossip_record *rec;

	for (int i = 0; i < 4; i++)
		node_start(i, cluster_key);
	for (int i = 1; i < 4; i++)
		join_to(i, 0);
	if (!run_until(all_see_alive, &a, 10000))
		fail_msg("no convergence in 10 s: alive counts %zu %zu %zu %zu (want 4)",
			 gossip_member_count(gossip_transport_core(nodes[0].t), GOSSIP_ALIVE),
			 gossip_member_count(gossip_transport_core(nodes[1].t), GOSSIP_ALIVE),
			 gossip_member_count(gossip_transport_core(nodes[2].t), GOSSIP_ALIVE),
			 gossip_member_count(gossip_transport_core(nodes[3].t), GOSSIP_ALIVE));
	for (int i = 0; i < 4; i++) {
		assert_true(nodes[i].members_cb >= 3);
		gossip_transport_stats(nodes[i].t, &st);
		assert_true(st.packets_in > 0);
		assert_true(st.packets_out > 0);
		assert_true(st.bytes_in >= st.packets_in * GOSSIP_SEAL_OVERHEAD_BYTES);
		for (int d = 0; d < GOSSIP_DROP_MAX; d++)
			if (d != GOSSIP_DROP_REPLAY && st.drops[d] != 0)
				fail_msg("node%d: %" PRIu64 " drops '%s', want 0", i, st.drops[d],
					 gossip_drop_name(d));
		assert_int_equal(st.malformed, 0);
	}

	/* a record from node 2 reaches everyone */
	assert_int_equal(gossip_transport_record_put(nodes[2].t, (const uint8_t *)"svc/web", 7, 1,
						     (const uint8_t *)"healthy", 7),
			 0);
	if (!run_until(all_have_web, NULL, 5000))
		fail_msg("record svc/web did not reach every node within 5 s");
	rec = gossip_record_get(gossip_transport_core(nodes[3].t), nodes[2].id,
				(const uint8_t *)"svc/web", 7);
	assert_non_null(rec);
	assert_int_equal(rec->version, 1);
	assert_int_equal(rec->value_len, 7);
	assert_memory_equal(rec->value, "healthy", 7);
	for (int i = 0; i < 4; i++)
		if (i != 2 && nodes[i].records_cb != 1)
			fail_msg("node%d: on_record called %u times, want 1", i,
				 nodes[i].records_cb);
	assert_int_equal(nodes[2].records_cb, 0);
}

static void test_wrong_key_rejected(void **state)
{
	struct count_arg a = {0, 3, 3};
	struct gossip_transport_stats st0, st3;
	uint8_t other[GOSSIP_KEY_LEN];

	for (int i = 0; i < 3; i++)
		node_start(i, cluster_key);
	join_to(1, 0);
	join_to(2, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	do
		gossip_key_generate(other);
	while (gossip_key_id(other) == gossip_key_id(cluster_key));
	node_start(3, other);
	join_to(3, 0);
	/* it keeps knocking (join retry, sync) for 2 s and never gets in */
	run_until(NULL, NULL, 2000);
	assert_int_equal(gossip_member_count(gossip_transport_core(nodes[0].t), GOSSIP_ALIVE), 3);
	assert_int_equal(gossip_member_count(gossip_transport_core(nodes[3].t), -1), 1);
	gossip_transport_stats(nodes[0].t, &st0);
	gossip_transport_stats(nodes[3].t, &st3);
	if (st0.drops[GOSSIP_DROP_UNKNOWN_KEY] == 0)
		fail_msg("node0 counted no unknown_key drop");
	/* its TCP join sync was refused too: node 0 could not open the frame */
	assert_true(st3.sync_started >= 1);
	assert_int_equal(st3.sync_ok, 0);
	assert_int_equal(st3.sync_applied, 0);
	/* the same key under another cluster name fails authentication instead */
	{
		struct gossip_transport_config cfg;

		fast_config(&cfg);
		cfg.cluster = "other-cluster";
		assert_int_equal(node_start_cfg(4, cluster_key, &cfg), 0);
		join_to(4, 0);
		run_until(NULL, NULL, 1000);
		gossip_transport_stats(nodes[0].t, &st0);
		if (st0.drops[GOSSIP_DROP_AUTH] == 0)
			fail_msg("node0 counted no auth drop for a wrong cluster name");
		assert_int_equal(
			gossip_member_count(gossip_transport_core(nodes[0].t), GOSSIP_ALIVE), 3);
	}
}

struct rec_arg {
	int node;
	const uint8_t *owner;
};

static bool has_record(void *p)
{
	struct rec_arg *a = p;

	return gossip_record_get(gossip_transport_core(nodes[a->node].t), a->owner,
				 (const uint8_t *)"late", 4) != NULL;
}

static bool no_pending(void *p)
{
	struct count_arg *a = p;
	struct gossip_stats st;

	for (int i = a->first; i < a->first + a->n; i++) {
		gossip_stats(gossip_transport_core(nodes[i].t), &st);
		if (st.pending_record_updates != 0)
			return false;
	}
	return true;
}

static bool sync_done(void *p)
{
	struct rec_arg *a = p;
	struct gossip_transport_stats st;

	gossip_transport_stats(nodes[a->node].t, &st);
	return st.sync_ok >= 1;
}

/* A record that stopped being piggybacked before a node arrived reaches it over TCP. */
static void test_antientropy_heals(void **state)
{
	struct count_arg a = {0, 2, 2};
	struct rec_arg ra = {2, NULL};
	struct gossip_transport_stats st;

	node_start(0, cluster_key);
	node_start(1, cluster_key);
	join_to(1, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	assert_int_equal(gossip_transport_record_put(nodes[0].t, (const uint8_t *)"late", 4, 7,
						     (const uint8_t *)"v7", 2),
			 0);
	ra.node = 1;
	ra.owner = nodes[0].id;
	assert_true(run_until(has_record, &ra, 5000));
	/* wait until neither node piggybacks it any more */
	if (!run_until(no_pending, &a, 10000))
		fail_msg("record still pending retransmission after 10 s");
	/* node 2 joins through node 1: membership comes by UDP, the record only by TCP */
	node_start(2, cluster_key);
	join_to(2, 1);
	ra.node = 2;
	if (!run_until(has_record, &ra, 5000))
		fail_msg("record not healed by anti-entropy within 5 s");
	/* the record arrives with the first diff; the exchange ends a frame or two later */
	if (!run_until(sync_done, &ra, 5000))
		fail_msg("node 2's exchange did not complete within 5 s");
	gossip_transport_stats(nodes[2].t, &st);
	assert_true(st.sync_started >= 1);
	assert_true(st.sync_ok >= 1);
	assert_true(st.sync_applied >= 1);
	assert_true(st.stream_bytes_in > 0 && st.stream_bytes_out > 0);
	gossip_transport_stats(nodes[1].t, &st);
	assert_true(st.sync_accepted >= 1);

	/* and a periodic exchange runs on its own */
	{
		struct gossip_transport_stats before;

		gossip_transport_stats(nodes[0].t, &before);
		assert_int_equal(gossip_transport_sync(nodes[0].t, NULL), 0);
		run_until(NULL, NULL, 500);
		gossip_transport_stats(nodes[0].t, &st);
		assert_int_equal(st.sync_started, before.sync_started + 1);
		assert_int_equal(st.sync_ok, before.sync_ok + 1);
	}
}

/* Two nodes with the same view settle an exchange with two small summary frames, not digests:
 * what a converged cluster at rest pays for anti-entropy. */
static void test_antientropy_summary(void **state)
{
	struct count_arg a = {0, 2, 2};
	struct gossip_transport_stats b0, b1, s0, s1;

	node_start(0, cluster_key);
	node_start(1, cluster_key);
	join_to(1, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	/* the join's exchange and its follow-up (1.5..2.5 s later, transport.h) end */
	run_until(NULL, NULL, GOSSIP_TRANSPORT_FOLLOWUP_MS * 3 / 2);
	gossip_transport_stats(nodes[0].t, &b0);
	gossip_transport_stats(nodes[1].t, &b1);
	assert_int_equal(gossip_transport_sync(nodes[0].t, &nodes[1].addr), 0);
	run_until(NULL, NULL, 500);
	gossip_transport_stats(nodes[0].t, &s0);
	gossip_transport_stats(nodes[1].t, &s1);
	if (s0.sync_ok != b0.sync_ok + 1 || s1.sync_ok != b1.sync_ok + 1)
		fail_msg("sync_ok: initiator %llu -> %llu, responder %llu -> %llu",
			 (unsigned long long)b0.sync_ok, (unsigned long long)s0.sync_ok,
			 (unsigned long long)b1.sync_ok, (unsigned long long)s1.sync_ok);
	/* one frame each way: 4-byte prefix + seal + 17-byte summary */
	uint64_t frame = GOSSIP_FRAME_PREFIX + GOSSIP_SEAL_OVERHEAD_BYTES + 17;
	if (s0.stream_bytes_out - b0.stream_bytes_out != frame ||
	    s1.stream_bytes_out - b1.stream_bytes_out != frame)
		fail_msg("bytes out: initiator %llu, responder %llu, expected %llu each",
			 (unsigned long long)(s0.stream_bytes_out - b0.stream_bytes_out),
			 (unsigned long long)(s1.stream_bytes_out - b1.stream_bytes_out),
			 (unsigned long long)frame);
	assert_int_equal(s0.sync_applied, b0.sync_applied);
}

/* A join's exchange is followed by one more, GOSSIP_TRANSPORT_FOLLOWUP_MS (+-25%) later; as
 * the views are equal by then, that one ends the series. */
static void test_join_followup(void **state)
{
	struct count_arg a = {0, 2, 2};
	struct gossip_transport_stats s0, s1, s2;
	uint32_t f = GOSSIP_TRANSPORT_FOLLOWUP_MS;

	node_start(0, cluster_key);
	node_start(1, cluster_key);
	join_to(1, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	run_until(NULL, NULL, f / 2); /* the join's exchange ends, its follow-up is not due */
	gossip_transport_stats(nodes[1].t, &s0);
	run_until(NULL, NULL, f * 3 / 2);
	gossip_transport_stats(nodes[1].t, &s1);
	run_until(NULL, NULL, 2 * f);
	gossip_transport_stats(nodes[1].t, &s2);
	if (s0.sync_started != 1 || s1.sync_started != 2 || s1.sync_ok != 2 ||
	    s2.sync_started != 2)
		fail_msg("exchanges started by the joiner: %llu after the join, %llu after the "
			 "follow-up (%llu completed), %llu later; want 1, 2 (2), 2",
			 (unsigned long long)s0.sync_started, (unsigned long long)s1.sync_started,
			 (unsigned long long)s1.sync_ok, (unsigned long long)s2.sync_started);
	assert_int_equal(s1.sync_applied, s0.sync_applied); /* equal views: nothing applied */
}

static bool node2_suspected(void *p)
{
	(void)p;
	for (int i = 0; i < 2; i++) {
		const struct gossip_member *m =
			gossip_member_get(gossip_transport_core(nodes[i].t), nodes[2].id);

		if (!m || m->state != GOSSIP_SUSPECT)
			return false;
	}
	return true;
}

/*
 * A member cut off for less than its suspicion timeout misses a record whose piggybacking ends
 * meanwhile. When it is back (suspect -> alive), its peers run an exchange with it at once:
 * the record arrives within seconds, not at the next periodic exchange (60 s here).
 */
static void test_heal_sync_after_suspicion(void **state)
{
	struct gossip_transport_config cfg;
	struct count_arg a = {0, 3, 3};
	struct rec_arg ra = {1, NULL};
	struct gossip_keyring *kr;
	uint8_t other[GOSSIP_KEY_LEN], old_id, new_id;

	for (int i = 0; i < 3; i++) {
		fast_config(&cfg);
		/* a long suspicion (no confirmations among 3 nodes: max = 6 x 4 s): it stays
		 * suspect, never dead, through the cut */
		cfg.core.suspicion_mult = 20;
		assert_int_equal(node_start_cfg(i, cluster_key, &cfg), 0);
	}
	join_to(1, 0);
	join_to(2, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	run_until(NULL, NULL, 500); /* the joins' exchanges end */
	/* cut node 2 off both ways: it seals with a key nobody has and drops the cluster key */
	kr = nodes[2].kr;
	do
		gossip_key_generate(other);
	while (gossip_key_id(other) == gossip_key_id(cluster_key));
	old_id = gossip_key_id(cluster_key);
	assert_int_equal(gossip_keyring_install(kr, other, &new_id), 0);
	assert_int_equal(gossip_keyring_use(kr, new_id), 0);
	assert_int_equal(gossip_keyring_remove(kr, old_id), 0);
	if (!run_until(node2_suspected, NULL, 5000))
		fail_msg("node 2 not suspected within 5 s of the cut");
	/* a record nobody will piggyback again by the time node 2 is back */
	assert_int_equal(gossip_transport_record_put(nodes[0].t, (const uint8_t *)"late", 4, 3,
						     (const uint8_t *)"v3", 2),
			 0);
	ra.owner = nodes[0].id;
	assert_true(run_until(has_record, &ra, 5000));
	struct count_arg both = {0, 2, 0};
	if (!run_until(no_pending, &both, 10000))
		fail_msg("record still pending retransmission after 10 s");
	assert_true(node2_suspected(NULL));
	/* back: node 2 refutes, the others see it alive again and sync with it */
	assert_int_equal(gossip_keyring_install(kr, cluster_key, NULL), 0);
	assert_int_equal(gossip_keyring_use(kr, old_id), 0);
	ra.node = 2;
	if (!run_until(has_record, &ra, 3000))
		fail_msg("record not at node 2 within 3 s of the heal (state at node 0: %s)",
			 gossip_state_name(gossip_member_get(gossip_transport_core(nodes[0].t),
							     nodes[2].id)->state));
	struct gossip_transport_stats st;

	gossip_transport_stats(nodes[2].t, &st);
	assert_true(st.sync_applied >= 1);
}

static bool dead_seen(void *p)
{
	struct count_arg *a = p;

	for (int i = a->first; i < a->first + a->n; i++)
		if (gossip_member_count(gossip_transport_core(nodes[i].t), GOSSIP_DEAD) != 1)
			return false;
	return true;
}

/* A node that stops answering is declared dead by the others. */
static void test_failure_detected(void **state)
{
	struct count_arg a = {0, 4, 4}, d = {0, 3, 0};

	for (int i = 0; i < 4; i++)
		node_start(i, cluster_key);
	for (int i = 1; i < 4; i++)
		join_to(i, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	gossip_transport_close(nodes[3].t, node_closed, &nodes[3]); /* no leave: a crash */
	if (!run_until(dead_seen, &d, 15000))
		fail_msg("node3 not declared dead by all within 15 s: dead counts %zu %zu %zu",
			 gossip_member_count(gossip_transport_core(nodes[0].t), GOSSIP_DEAD),
			 gossip_member_count(gossip_transport_core(nodes[1].t), GOSSIP_DEAD),
			 gossip_member_count(gossip_transport_core(nodes[2].t), GOSSIP_DEAD));
	assert_true(nodes[3].closed);
}

static bool back_alive(void *p)
{
	struct count_arg *a = p;

	for (int i = a->first; i < a->first + a->n; i++) {
		const struct gossip_member *m =
			gossip_member_get(gossip_transport_core(nodes[i].t), nodes[3].id);

		if (!m || m->state != GOSSIP_ALIVE || m->incarnation < a->alive)
			return false;
	}
	return true;
}

/* A crashed node restarted with the same id (and a fresh replay counter from the wall clock)
 * is accepted again, at its higher incarnation. */
static void test_restart_accepted(void **state)
{
	struct gossip_transport_config cfg;
	struct count_arg a = {0, 4, 4}, d = {0, 3, 0}, back = {0, 3, 1};
	struct gossip_transport_stats st;

	for (int i = 0; i < 4; i++)
		node_start(i, cluster_key);
	for (int i = 1; i < 4; i++)
		join_to(i, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	gossip_transport_close(nodes[3].t, node_closed, &nodes[3]);
	assert_true(run_until(dead_seen, &d, 15000));
	fast_config(&cfg);
	cfg.core.incarnation = 1;
	assert_int_equal(node_start_cfg(3, cluster_key, &cfg), 0);
	join_to(3, 1);
	if (!run_until(back_alive, &back, 10000)) {
		for (int i = 0; i < 3; i++) {
			const struct gossip_member *m =
				gossip_member_get(gossip_transport_core(nodes[i].t), nodes[3].id);

			print_message("node%d sees node3: %s inc %" PRIu64 "\n", i,
				      m ? gossip_state_name(m->state) : "nothing",
				      m ? m->incarnation : 0);
		}
		fail_msg("restarted node3 not alive at incarnation >= 1 on all within 10 s");
	}
	assert_true(run_until(all_see_alive, &a, 5000));
	for (int i = 0; i < 3; i++) {
		gossip_transport_stats(nodes[i].t, &st);
		if (st.drops[GOSSIP_DROP_REPLAY] != 0 || st.drops[GOSSIP_DROP_AUTH] != 0)
			fail_msg("node%d: replay drops %" PRIu64 ", auth drops %" PRIu64 ", want 0",
				 i, st.drops[GOSSIP_DROP_REPLAY], st.drops[GOSSIP_DROP_AUTH]);
	}
}

/* Garbage on both sockets is dropped and counted, never crashes, and streams are capped. */
static void test_garbage_and_caps(void **state)
{
	struct gossip_transport_config cfg;
	struct gossip_transport_stats st;
	struct sockaddr_in sa;
	int fds[4], u;
	uint8_t junk[200];

	fast_config(&cfg);
	cfg.sync_max_streams = 1;
	cfg.sync_timeout_ms = 500;
	assert_int_equal(node_start_cfg(0, cluster_key, &cfg), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(nodes[0].addr.port);
	memcpy(&sa.sin_addr, nodes[0].addr.ip, 4);

	/* UDP: short, bad version, unknown key id */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(u >= 0);
	memset(junk, 0, sizeof(junk));
	assert_int_equal(sendto(u, junk, 10, 0, (struct sockaddr *)&sa, sizeof(sa)), 10);
	junk[0] = 9;
	assert_int_equal(sendto(u, junk, 100, 0, (struct sockaddr *)&sa, sizeof(sa)), 100);
	junk[0] = GOSSIP_SEAL_VERSION;
	junk[1] = (uint8_t)(gossip_key_id(cluster_key) + 1);
	assert_int_equal(sendto(u, junk, 100, 0, (struct sockaddr *)&sa, sizeof(sa)), 100);
	junk[1] = gossip_key_id(cluster_key);
	assert_int_equal(sendto(u, junk, 100, 0, (struct sockaddr *)&sa, sizeof(sa)), 100);
	close(u);

	/* TCP: a bad frame length, then a forged frame, then three idle connections at once
	 * from one outside address: two are allowed unproven (stream_pending_per_addr), the
	 * third is closed at once, and the two are closed after stream_auth_ms (1 s): none
	 * ever counts as an exchange */
	int extra = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(extra >= 0);
	for (int i = 0; i < 4; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fds[i] >= 0);
	}
	assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
	{
		uint8_t frame[4];

		gossip_frame_put_len(frame, 0x7fffffff);
		assert_int_equal(write(fds[0], frame, 4), 4);
	}
	run_until(NULL, NULL, 200);
	assert_int_equal(connect(fds[1], (struct sockaddr *)&sa, sizeof(sa)), 0);
	{
		uint8_t frame[4 + 100];

		memset(frame, 0, sizeof(frame));
		gossip_frame_put_len(frame, 100);
		frame[4] = GOSSIP_SEAL_VERSION;
		frame[5] = gossip_key_id(cluster_key);
		frame[6] = GOSSIP_SEAL_STREAM;
		assert_int_equal(write(fds[1], frame, sizeof(frame)), (ssize_t)sizeof(frame));
	}
	run_until(NULL, NULL, 200);
	assert_int_equal(connect(fds[2], (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(connect(fds[3], (struct sockaddr *)&sa, sizeof(sa)), 0);
	run_until(NULL, NULL, 100);
	assert_int_equal(connect(extra, (struct sockaddr *)&sa, sizeof(sa)), 0);
	run_until(NULL, NULL, 300);
	gossip_transport_stats(nodes[0].t, &st);
	assert_int_equal(st.stream_unproven_refused, 1);
	assert_int_equal(st.stream_unproven_closed, 0);
	run_until(NULL, NULL, 1000); /* > stream_auth_ms */
	gossip_transport_stats(nodes[0].t, &st);
	print_message("drops: too_short=%" PRIu64 " bad_version=%" PRIu64 " unknown_key=%" PRIu64
		      " auth=%" PRIu64 " accepted=%" PRIu64 " refused=%" PRIu64 " failed=%" PRIu64
		      "\n",
		      st.drops[0], st.drops[1], st.drops[2], st.drops[3], st.sync_accepted,
		      st.sync_refused, st.sync_failed);
	assert_int_equal(st.packets_in, 4);
	assert_int_equal(st.drops[GOSSIP_DROP_BAD_VERSION], 1);
	assert_int_equal(st.drops[GOSSIP_DROP_UNKNOWN_KEY], 1);
	assert_int_equal(st.drops[GOSSIP_DROP_AUTH], 2);      /* forged datagram + frame */
	assert_int_equal(st.drops[GOSSIP_DROP_TOO_SHORT], 2); /* short datagram + frame length */
	assert_int_equal(st.sync_accepted, 0); /* nothing proved the key */
	assert_int_equal(st.sync_refused, 0);
	assert_int_equal(st.sync_ok, 0);
	assert_int_equal(st.sync_failed, 0);
	assert_int_equal(st.stream_unproven_closed, 2);
	assert_int_equal(st.stream_unproven_refused, 1);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	close(extra);
	run_until(NULL, NULL, 100);
}

static bool joiners_synced(void *p)
{
	struct count_arg *a = p;
	struct gossip_transport_stats st;

	for (int i = a->first; i < a->first + a->n; i++) {
		gossip_transport_stats(nodes[i].t, &st);
		if (st.sync_ok == 0)
			return false;
	}
	return true;
}

/* A connection that proves the key (a sealed SUMMARY the responder answers with DIFFER) and
 * then idles: it holds one of the responder's sync slots until sync_timeout_ms. */
static int hold_sync_slot(const struct sockaddr_in *sa)
{
	struct gossip_keyring *kr;
	struct gossip_crypto *cr;
	uint8_t id[GOSSIP_ID_LEN] = {0x5a, 0x5a}, plain[17] = {0xc2}, frame[4 + 17 + 64];
	size_t sealed = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(gossip_keyring_new(&kr), 0);
	assert_int_equal(gossip_keyring_install(kr, cluster_key, NULL), 0);
	assert_int_equal(gossip_crypto_new(kr, "unit", id, 0, &cr), 0);
	assert_int_equal(gossip_crypto_seal(cr, GOSSIP_SEAL_STREAM, plain, sizeof(plain),
					    frame + 4, sizeof(frame) - 4, &sealed), 0);
	gossip_frame_put_len(frame, (uint32_t)sealed);
	assert_int_equal(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
	assert_int_equal(write(fd, frame, 4 + sealed), (ssize_t)(4 + sealed));
	gossip_crypto_free(cr);
	gossip_keyring_free(kr);
	return fd;
}

/* Joiners whose initial full exchange is refused by a busy seed retry with other members. */
static void test_join_sync_retry(void **state)
{
	struct gossip_transport_config cfg;
	struct gossip_transport_stats st;
	struct count_arg a = {0, 4, 4}, j = {1, 3, 0};
	struct sockaddr_in sa;
	int idle;

	fast_config(&cfg);
	cfg.sync_max_streams = 1;
	cfg.sync_timeout_ms = 20000;
	assert_int_equal(node_start_cfg(0, cluster_key, &cfg), 0);
	/* occupy the seed's only stream slot with an idle connection */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(nodes[0].addr.port);
	memcpy(&sa.sin_addr, nodes[0].addr.ip, 4);
	idle = hold_sync_slot(&sa);
	run_until(NULL, NULL, 100);
	for (int i = 1; i < 4; i++) {
		node_start(i, cluster_key);
		join_to(i, 0);
	}
	assert_true(run_until(all_see_alive, &a, 10000));
	if (!run_until(joiners_synced, &j, 10000))
		fail_msg("not every joiner completed a full exchange within 10 s");
	gossip_transport_stats(nodes[0].t, &st);
	if (st.sync_refused < 3)
		fail_msg("seed refused %" PRIu64 " exchanges, want >= 3", st.sync_refused);
	assert_int_equal(st.sync_ok, 0); /* the slot stayed taken: nobody synced with the seed */
	close(idle);
	run_until(NULL, NULL, 100);
}

static bool synced_once(void *p)
{
	struct gossip_transport_stats st;

	gossip_transport_stats(p, &st);
	return st.sync_ok >= 1;
}

/* Outsiders holding idle connections from several source addresses (127.0.0.2 .. .7, more
 * than sync_max_streams of them, re-opened as they are cut) cannot keep a member from an
 * exchange: their connections stay in the outsiders' pending pool, capped per address, and
 * are closed after stream_auth_ms; the member's address has a pool of its own. */
static void test_outsiders_cannot_starve(void **state)
{
	struct count_arg a = {0, 2, 2};
	struct gossip_transport_stats st;
	struct sockaddr_in sa, src;
	int fds[6][4];
	uint64_t ok_before;

	node_start(0, cluster_key);
	node_start(1, cluster_key);
	join_to(1, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
	assert_true(run_until(synced_once, nodes[1].t, 5000)); /* the join's exchange */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(nodes[0].addr.port);
	memcpy(&sa.sin_addr, nodes[0].addr.ip, 4);
	for (int round = 0; round < 2; round++) {
		bool done = false;

		for (int k = 0; k < 6; k++)
			for (int i = 0; i < 4; i++) {
				fds[k][i] = socket(AF_INET, SOCK_STREAM, 0);
				assert_true(fds[k][i] >= 0);
				memset(&src, 0, sizeof(src));
				src.sin_family = AF_INET;
				src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)k);
				assert_int_equal(bind(fds[k][i], (struct sockaddr *)&src,
						      sizeof(src)), 0);
				assert_int_equal(connect(fds[k][i], (struct sockaddr *)&sa,
							 sizeof(sa)), 0);
			}
		run_until(NULL, NULL, 100);
		gossip_transport_stats(nodes[1].t, &st);
		ok_before = st.sync_ok;
		assert_int_equal(gossip_transport_sync(nodes[1].t, &nodes[0].addr), 0);
		for (int k = 0; k < 100 && !done; k++) {
			run_until(NULL, NULL, 20);
			gossip_transport_stats(nodes[1].t, &st);
			done = st.sync_ok > ok_before;
		}
		if (!done)
			fail_msg("round %d: the member's exchange did not complete while outsiders "
				 "held idle connections", round);
		run_until(NULL, NULL, 1200); /* > stream_auth_ms: the outsiders are cut */
		for (int k = 0; k < 6; k++)
			for (int i = 0; i < 4; i++)
				close(fds[k][i]);
	}
	gossip_transport_stats(nodes[0].t, &st);
	print_message("outsiders: unproven closed %" PRIu64 ", refused %" PRIu64 "\n",
		      st.stream_unproven_closed, st.stream_unproven_refused);
	/* 24 a round: 8 pending (2 per address, 4 addresses fill the pool), 16 refused */
	assert_int_equal(st.stream_unproven_closed, 16);
	assert_int_equal(st.stream_unproven_refused, 32);
	assert_int_equal(st.sync_refused, 0);
}

static void test_bad_config(void **state)
{
	struct gossip_transport_config cfg;
	struct gossip_keyring *empty;
	struct gossip_addr a;

	fast_config(&cfg);
	cfg.bind = "127.0.0.1";
	assert_int_equal(node_start_cfg(0, cluster_key, &cfg), -EINVAL);
	cfg.bind = "0.0.0.0:0"; /* wildcard without advertise */
	assert_int_equal(node_start_cfg(0, cluster_key, &cfg), -EINVAL);
	cfg.advertise = "127.0.0.1:0";
	assert_int_equal(node_start_cfg(0, cluster_key, &cfg), 0);
	{
		struct gossip_addr b;

		gossip_transport_addrs(nodes[0].t, &b, &a);
		assert_int_equal(a.port, b.port);
		assert_int_equal(a.ip[0], 127);
	}
	/* the same port again: in use */
	{
		char bind[64];

		fast_config(&cfg);
		snprintf(bind, sizeof(bind), "127.0.0.1:%u", a.port);
		cfg.bind = bind;
		assert_int_equal(node_start_cfg(1, cluster_key, &cfg), -EADDRINUSE);
	}
	fast_config(&cfg);
	assert_int_equal(gossip_keyring_new(&empty), 0);
	cfg.keyring = empty;
	{
		struct gossip_transport *t = NULL;

		assert_int_equal(gossip_transport_new(&loop, &cfg, &t), -EINVAL);
		assert_null(t);
	}
	gossip_keyring_free(empty);

	/* address parsing */
	assert_int_equal(gossip_transport_parse_addr("10.1.2.3:7946", -1, &a), 0);
	assert_int_equal(a.family, GOSSIP_AF_INET);
	assert_int_equal(a.port, 7946);
	assert_int_equal(a.ip[0], 10);
	assert_int_equal(gossip_transport_parse_addr("[::1]:80", -1, &a), 0);
	assert_int_equal(a.family, GOSSIP_AF_INET6);
	assert_int_equal(a.ip[15], 1);
	assert_int_equal(gossip_transport_parse_addr("10.1.2.3", 7946, &a), 0);
	assert_int_equal(a.port, 7946);
	assert_int_equal(gossip_transport_parse_addr("10.1.2.3", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("::1:80", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("host.example:80", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("1.2.3.4:65536", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("1.2.3.4:-1", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("1.2.3.4:80x", -1, &a), -EINVAL);
	assert_int_equal(gossip_transport_parse_addr("[::1", -1, &a), -EINVAL);
	{
		const char *bad[] = {"nope:1"};

		assert_int_equal(gossip_transport_join(nodes[0].t, bad, 1), -EINVAL);
	}
}

/* IPv6 loopback, if the host has it. */
static void test_ipv6(void **state)
{
	struct gossip_transport_config cfg;
	struct count_arg a = {0, 2, 2};
	int s = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 sa6;

	memset(&sa6, 0, sizeof(sa6));
	sa6.sin6_family = AF_INET6;
	sa6.sin6_addr = in6addr_loopback;
	if (s < 0 || bind(s, (struct sockaddr *)&sa6, sizeof(sa6)) < 0) {
		if (s >= 0)
			close(s);
		skip(); /* no IPv6 loopback here */
	}
	close(s);
	for (int i = 0; i < 2; i++) {
		fast_config(&cfg);
		cfg.bind = "[::1]:0";
		assert_int_equal(node_start_cfg(i, cluster_key, &cfg), 0);
		assert_int_equal(nodes[i].addr.family, GOSSIP_AF_INET6);
	}
	join_to(1, 0);
	assert_true(run_until(all_see_alive, &a, 10000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_converge_and_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_antientropy_heals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_antientropy_summary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_join_followup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heal_sync_after_suspicion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_join_sync_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outsiders_cannot_starve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
