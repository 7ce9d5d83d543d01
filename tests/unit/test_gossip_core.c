/*
 * tests/unit/test_gossip_core.c: the SWIM core (gossip/swim.c) driven by hand: a few cores,
 * a packet queue the test delivers (or drops), and a clock the test moves.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/gossip.h"
#include "gossip/proto.h"

#define MAXC 8
#define MAXQ 4096

struct qpkt {
	unsigned from, to;
	size_t len;
	uint8_t buf[GOSSIP_MTU_DEFAULT];
};

struct net;

struct node {
	struct net *net;
	unsigned idx;
	struct gossip *g;
	struct gossip_addr addr;
	uint8_t id[GOSSIP_ID_LEN];
	unsigned member_cb, record_cb;
	struct gossip_member last_member;
	uint64_t last_record_version;
	unsigned dead_seen;
	uint64_t clk;		/* this node's clock = net->now + clk (0 unless a test sets it) */
	uint64_t pinged_at;	/* when it was last sent a probe (test_probe_schedule) */
	uint64_t max_gap;	/* longest time between two probes of it since tracking began */
};

struct net {
	struct node n[MAXC];
	unsigned count;
	struct qpkt *q;
	size_t nq;
	uint64_t now;
	uint64_t rng;
	bool down[MAXC];	/* drops everything to and from */
	size_t max_plain;
	unsigned sent;
	bool track_pings;	/* record the probes each node is sent (pinged_at, max_gap) */
	bool urgent;		/* nodes added from now on call "vote/..." records urgent */
};

/* The probes in a packet: a PING to a member (not a join) as its first message. */
static void track_ping(struct net *net, const uint8_t *buf, size_t len)
{
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint32_t n;
	struct gossip_msg m;
	if (gossip__pkt_open(&pos, end, &sender, &n) < 0 || !n ||
	    gossip__msg_get(&pos, end, &m) < 0 || m.type != GOSSIP_MSG_PING || !m.id)
		return;
	struct node *t = &net->n[m.id[15] % MAXC];
	if (t->pinged_at && net->now - t->pinged_at > t->max_gap)
		t->max_gap = net->now - t->pinged_at;
	t->pinged_at = net->now;
}

static void env_send(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len)
{
	struct node *nd = ud;
	struct net *net = nd->net;
	net->sent++;
	if (net->track_pings)
		track_ping(net, buf, len);
	if (len > net->max_plain)
		fail_msg("packet of %zu bytes over the plaintext budget %zu", len, net->max_plain);
	if (net->nq >= MAXQ)
		return;
	struct qpkt *p = &net->q[net->nq++];
	p->from = nd->idx;
	p->to = to->ip[3];
	p->len = len;
	memcpy(p->buf, buf, len);
}

static uint32_t env_random(void *ud)
{
	struct node *nd = ud;
	uint64_t *x = &nd->net->rng;
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (uint32_t)(*x >> 16);
}

static bool env_urgent(void *ud, const uint8_t owner[GOSSIP_ID_LEN], const void *key,
		       size_t klen)
{
	(void)ud;
	(void)owner;
	return klen >= 5 && memcmp(key, "vote/", 5) == 0;
}

static void env_member(void *ud, const struct gossip_member *m)
{
	struct node *nd = ud;
	nd->member_cb++;
	nd->last_member = *m;
	if (m->state == GOSSIP_DEAD)
		nd->dead_seen++;
}

static void env_record(void *ud, const struct gossip_record *r)
{
	struct node *nd = ud;
	nd->record_cb++;
	nd->last_record_version = r->version;
}

static void cfg_fast(struct gossip_config *c)
{
	gossip_config_default(c);
	c->probe_interval_ms = 200;
	c->probe_timeout_ms = 100;
	c->gossip_interval_ms = 50;
}

static struct node *add_node(struct net *net, const struct gossip_config *base)
{
	unsigned i = net->count++;
	struct node *nd = &net->n[i];
	struct gossip_config c = *base;
	char name[16];
	snprintf(name, sizeof name, "node%u", i);
	nd->net = net;
	nd->idx = i;
	nd->addr = (struct gossip_addr){ .family = GOSSIP_AF_INET, .port = 7946,
					 .ip = { 10, 0, 0, (uint8_t)i } };
	memset(nd->id, 0, sizeof(nd->id));
	nd->id[0] = 0xa0;
	nd->id[15] = (uint8_t)i;
	memcpy(c.id, nd->id, GOSSIP_ID_LEN);
	c.name = name;
	c.addr = nd->addr;
	c.incarnation = 1;
	struct gossip_env env = { env_send, env_random, env_member, env_record, nd,
				  net->urgent ? env_urgent : NULL };
	assert_int_equal(gossip_new(&c, &env, &nd->g), 0);
	gossip_tick(nd->g, net->now);
	return nd;
}

static struct net *net_new(void)
{
	struct net *net = calloc(1, sizeof(*net));
	net->q = calloc(MAXQ, sizeof(*net->q));
	net->rng = 0x1234567;
	net->max_plain = GOSSIP_MTU_DEFAULT - GOSSIP_SEAL_OVERHEAD;
	return net;
}

static void net_free(struct net *net)
{
	for (unsigned i = 0; i < net->count; i++)
		gossip_free(net->n[i].g);
	free(net->q);
	free(net);
}

/* Deliver what is queued (and what that causes), then tick everyone. */
static void net_flush(struct net *net)
{
	for (int rounds = 0; rounds < 50 && net->nq; rounds++) {
		size_t n = net->nq;
		struct qpkt *batch = malloc(n * sizeof(*batch));
		memcpy(batch, net->q, n * sizeof(*batch));
		net->nq = 0;
		for (size_t i = 0; i < n; i++) {
			struct qpkt *p = &batch[i];
			if (p->to >= net->count || net->down[p->to] || net->down[p->from])
				continue;
			int r = gossip_recv(net->n[p->to].g, net->now + net->n[p->to].clk,
					    &net->n[p->from].addr, p->buf, p->len);
			if (r != 0)
				fail_msg("recv on node %u: %d", p->to, r);
		}
		free(batch);
	}
}

/* Advance time in 10 ms steps to @ms later, ticking and delivering. */
static void net_run(struct net *net, uint64_t ms)
{
	uint64_t end = net->now + ms;
	while (net->now < end) {
		net->now += 10;
		for (unsigned i = 0; i < net->count; i++) {
			uint64_t now = net->now + net->n[i].clk;
			if (!net->down[i] && gossip_next_deadline(net->n[i].g) <= now)
				gossip_tick(net->n[i].g, now);
		}
		net_flush(net);
	}
}

static const struct gossip_member *view(struct net *net, unsigned obs, unsigned who)
{
	return gossip_member_get(net->n[obs].g, net->n[who].id);
}

static void assert_state(struct net *net, unsigned obs, unsigned who, int state)
{
	const struct gossip_member *m = view(net, obs, who);
	if (!m)
		fail_msg("node %u does not know node %u (want %s)", obs, who,
			 gossip_state_name(state));
	if ((int)m->state != state)
		fail_msg("node %u sees node %u as %s, want %s", obs, who,
			 gossip_state_name(m->state), gossip_state_name(state));
}

static void join_all(struct net *net)
{
	for (unsigned i = 1; i < net->count; i++)
		assert_int_equal(gossip_join(net->n[i].g, net->now, &net->n[0].addr, 1), 1);
	net_flush(net);
	net_run(net, 3000);
	for (unsigned i = 0; i < net->count; i++)
		for (unsigned j = 0; j < net->count; j++)
			assert_state(net, i, j, GOSSIP_ALIVE);
}

/* ---- tests ---- */

static void test_config_errors(void **state)
{
	struct gossip_config c;
	struct gossip *g = (struct gossip *)0x1;
	struct gossip_env env = { env_send, env_random, NULL, NULL, NULL };
	struct gossip_env noenv = { NULL, env_random, NULL, NULL, NULL };
	gossip_config_default(&c);
	assert_int_equal(gossip_new(&c, &noenv, &g), -EINVAL);
	c.mtu = GOSSIP_MTU_MIN - 1;
	assert_int_equal(gossip_new(&c, &env, &g), -EINVAL);
	gossip_config_default(&c);
	c.labels_len = GOSSIP_LABELS_MAX + 1;
	c.labels = (const uint8_t *)"x";
	assert_int_equal(gossip_new(&c, &env, &g), -EINVAL);
	gossip_config_default(&c);
	c.probe_interval_ms = 0;
	assert_int_equal(gossip_new(&c, &env, &g), -EINVAL);
	assert_ptr_equal(g, (struct gossip *)0x1);	/* untouched on failure */
	gossip_free(NULL);
}

static void test_join_and_rtt(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 4; i++)
		add_node(net, &c);
	/* a join is answered with the seed's own "alive" and the members it knows */
	for (unsigned i = 1; i < 4; i++)
		assert_int_equal(gossip_join(net->n[i].g, net->now, &net->n[0].addr, 1), 1);
	net_flush(net);
	assert_non_null(view(net, 3, 0));
	assert_non_null(view(net, 3, 1));	/* node 1 joined before: in node 0's answer */
	join_all(net);
	/* probes measured round trips (instant delivery here: the 10 ms step is the RTT) */
	net_run(net, 2000);
	const struct gossip_member *m = view(net, 1, 0);
	if (!(m->rtt_ms > 0 && m->rtt_ms <= 20))
		fail_msg("rtt estimate %u ms, want 1..20", m->rtt_ms);
	assert_string_equal(m->name, "node0");
	assert_int_equal(gossip_member_count(net->n[2].g, GOSSIP_ALIVE), 4);
	assert_true(net->n[3].member_cb >= 3);
	assert_true(gossip_self(net->n[0].g)->self);
	/* a join to ourselves is skipped */
	assert_int_equal(gossip_join(net->n[0].g, net->now, &net->n[0].addr, 1), 0);
	net_free(net);
}

static void test_failure_detection(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 5; i++)
		add_node(net, &c);
	join_all(net);
	net->down[4] = true;
	net_run(net, 1500);
	/* suspected first, by someone */
	bool suspect = false;
	for (unsigned i = 0; i < 4; i++) {
		const struct gossip_member *m = view(net, i, 4);
		suspect |= m->state == GOSSIP_SUSPECT || m->state == GOSSIP_DEAD;
	}
	assert_true(suspect);
	net_run(net, 10000);
	for (unsigned i = 0; i < 4; i++) {
		assert_state(net, i, 4, GOSSIP_DEAD);
		assert_true(net->n[i].dead_seen >= 1);
	}
	/* nobody else was hurt */
	for (unsigned i = 0; i < 4; i++)
		for (unsigned j = 0; j < 4; j++)
			assert_state(net, i, j, GOSSIP_ALIVE);
	/* the dead stay in the table (not reaped before reap_ms) */
	assert_int_equal(gossip_member_count(net->n[0].g, GOSSIP_DEAD), 1);
	/* the probers asked relays, and the relays answered nacks for the silent target:
	 * Lifeguard then blames the target, not the prober's own health */
	uint64_t pingreqs = 0, nacks = 0;
	for (unsigned i = 0; i < 4; i++) {
		struct gossip_stats st;
		gossip_stats(net->n[i].g, &st);
		pingreqs += st.pingreqs_sent;
		nacks += st.nacks_recv;
		if (st.awareness != 0)
			fail_msg("node %u health score %u after probing a dead node", i,
				 st.awareness);
	}
	assert_true(pingreqs > 0);
	assert_true(nacks > 0);
	net_free(net);
}

static size_t packet(uint8_t *buf, const uint8_t *sender, const struct gossip_msg *m, size_t n)
{
	struct gossip__w w;
	gossip__w_init(&w, buf, 1400);
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, sender, GOSSIP_ID_LEN);
	gossip__w_array(&w, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(gossip__msg_put(&w, &m[i]), 0);
	return w.len;
}

static void test_refute(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 3; i++)
		add_node(net, &c);
	join_all(net);
	uint64_t inc = gossip_self(net->n[0].g)->incarnation;
	unsigned cb = net->n[0].member_cb;
	/* node 1 claims node 0 is suspect */
	uint8_t buf[1400];
	struct gossip_msg m = { .type = GOSSIP_MSG_SUSPECT, .id = net->n[0].id, .num = inc,
				.accuser = net->n[1].id };
	size_t len = packet(buf, net->n[1].id, &m, 1);
	assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr, buf, len), 0);
	assert_int_equal(gossip_self(net->n[0].g)->incarnation, inc + 1);
	assert_true(net->n[0].member_cb > cb);	/* the agent hears of the new incarnation */
	assert_true(net->n[0].last_member.self);
	struct gossip_stats st;
	gossip_stats(net->n[0].g, &st);
	assert_int_equal(st.refutes, 1);
	assert_int_equal(st.awareness, 1);	/* Lifeguard: refuting is a sign of trouble */
	/* the refutation spreads: everyone sees node 0 alive at the new incarnation */
	net_run(net, 1000);
	for (unsigned i = 1; i < 3; i++) {
		assert_state(net, i, 0, GOSSIP_ALIVE);
		assert_int_equal(view(net, i, 0)->incarnation, inc + 1);
	}
	/* an old suspicion (lower incarnation) is ignored */
	m.num = inc;
	len = packet(buf, net->n[1].id, &m, 1);
	assert_int_equal(gossip_recv(net->n[2].g, net->now, &net->n[1].addr, buf, len), 0);
	assert_state(net, 2, 0, GOSSIP_ALIVE);
	net_free(net);
}

/* Lifeguard: a suspicion confirmed by independent members times out sooner. */
static void test_suspicion_confirmations(void **state)
{
	struct gossip_config c;
	cfg_fast(&c);
	c.suspicion_mult = 4;	/* k = 2 confirmations expected */
	uint64_t expiry[2];
	for (int confirm = 0; confirm < 2; confirm++) {
		struct net *net = net_new();
		for (int i = 0; i < 6; i++)
			add_node(net, &c);
		join_all(net);
		/* node 5 goes silent; only node 0 listens from now on, and we tell it */
		for (unsigned i = 1; i < 6; i++)
			net->down[i] = true;
		uint64_t t0 = net->now;
		uint8_t buf[1400];
		struct gossip_msg m = { .type = GOSSIP_MSG_SUSPECT, .id = net->n[5].id,
					.num = view(net, 0, 5)->incarnation,
					.accuser = net->n[1].id };
		size_t len = packet(buf, net->n[1].id, &m, 1);
		assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr, buf, len), 0);
		assert_state(net, 0, 5, GOSSIP_SUSPECT);
		if (confirm) {
			for (unsigned a = 2; a <= 3; a++) {
				m.accuser = net->n[a].id;
				len = packet(buf, net->n[a].id, &m, 1);
				assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[a].addr,
							     buf, len), 0);
			}
		}
		while (view(net, 0, 5)->state != GOSSIP_DEAD && net->now < t0 + 60000)
			net_run(net, 10);
		expiry[confirm] = net->now - t0;
		net_free(net);
	}
	/* min = 4 * 1 * 200 = 800 ms, max = 6 * min = 4800 ms, k = 2. Node 0's own failing
	 * probe of node 5 is one independent confirmation (as in memberlist), so the
	 * "unconfirmed" case ends at max - (max - min) * log 2 / log 3 = 2276 ms. */
	if (!(expiry[0] >= 2250 && expiry[0] <= 2350))
		fail_msg("once confirmed suspicion expired after %llu ms, want ~2276",
			 (unsigned long long)expiry[0]);
	if (!(expiry[1] >= 700 && expiry[1] <= 1000))
		fail_msg("twice confirmed suspicion expired after %llu ms, want ~800",
			 (unsigned long long)expiry[1]);
}

/* Lifeguard: failed probes with missing nacks raise the local health multiplier. */
static void test_lhm(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 4; i++)
		add_node(net, &c);
	join_all(net);
	/* node 0 is cut off: its probes fail and nobody nacks */
	net->down[0] = true;
	struct gossip_stats st;
	for (int i = 0; i < 20; i++) {
		net->now += 100;
		gossip_tick(net->n[0].g, net->now);
		net->nq = 0;
	}
	gossip_stats(net->n[0].g, &st);
	assert_true(st.probes_failed >= 1);
	assert_true(st.awareness >= 2);
	/* a stretched probe interval: fewer pings per second now */
	uint64_t pings = st.pings_sent;
	for (int i = 0; i < 20; i++) {
		net->now += 100;
		gossip_tick(net->n[0].g, net->now);
		net->nq = 0;
	}
	gossip_stats(net->n[0].g, &st);
	assert_true(st.pings_sent - pings < 10);
	/* healthy again: the score comes back down */
	net->down[0] = false;
	net_run(net, 20000);
	gossip_stats(net->n[0].g, &st);
	assert_int_equal(st.awareness, 0);
	net_free(net);
}

static void test_indirect_probe(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 4; i++)
		add_node(net, &c);
	join_all(net);
	/* node 0 cannot reach node 3 directly, the others can: ping-req keeps 3 alive */
	uint64_t end = net->now + 5000;
	while (net->now < end) {
		net->now += 10;
		for (unsigned i = 0; i < net->count; i++)
			if (gossip_next_deadline(net->n[i].g) <= net->now)
				gossip_tick(net->n[i].g, net->now);
		for (int r = 0; r < 20 && net->nq; r++) {
			size_t n = net->nq;
			struct qpkt *b = malloc(n * sizeof(*b));
			memcpy(b, net->q, n * sizeof(*b));
			net->nq = 0;
			for (size_t k = 0; k < n; k++) {
				bool cut = (b[k].from == 0 && b[k].to == 3) ||
					   (b[k].from == 3 && b[k].to == 0);
				if (cut)
					continue;
				gossip_recv(net->n[b[k].to].g, net->now, &net->n[b[k].from].addr,
					    b[k].buf, b[k].len);
			}
			free(b);
		}
	}
	struct gossip_stats st;
	gossip_stats(net->n[0].g, &st);
	assert_true(st.pingreqs_sent > 0);
	for (unsigned i = 0; i < 4; i++)
		assert_state(net, i, 3, GOSSIP_ALIVE);
	net_free(net);
}

static void test_leave(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 4; i++)
		add_node(net, &c);
	join_all(net);
	uint64_t inc = gossip_self(net->n[2].g)->incarnation;
	assert_int_equal(gossip_leave(net->n[2].g, net->now), 0);
	assert_int_equal(gossip_leave(net->n[2].g, net->now), 0);	/* idempotent */
	assert_int_equal(gossip_self(net->n[2].g)->state, GOSSIP_LEFT);
	assert_int_equal(gossip_self(net->n[2].g)->incarnation, inc + 1);
	net_run(net, gossip_leave_drain_ms(net->n[2].g));
	net->down[2] = true;
	net_run(net, 10000);
	for (unsigned i = 0; i < 4; i++)
		if (i != 2)
			assert_state(net, i, 2, GOSSIP_LEFT);
	assert_int_equal(gossip_record_put(net->n[2].g, net->now, (const uint8_t *)"k", 1, 1,
					   NULL, 0), -ESHUTDOWN);
	assert_int_equal(gossip_join(net->n[2].g, net->now, &net->n[0].addr, 1), -ESHUTDOWN);
	net_free(net);
}

static void test_records(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 5; i++)
		add_node(net, &c);
	join_all(net);
	uint8_t value[600];
	memset(value, 0x5a, sizeof(value));
	const uint8_t *key = (const uint8_t *)"health/web";
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 10, 3, value, 600), 0);
	/* pushed at once to up to push_fanout peers */
	net_flush(net);
	unsigned got = 0;
	for (unsigned i = 0; i < 5; i++)
		got += net->n[i].record_cb;
	assert_true(got >= 3);
	net_run(net, 1000);
	for (unsigned i = 0; i < 5; i++) {
		const struct gossip_record *r =
			gossip_record_get(net->n[i].g, net->n[1].id, key, 10);
		assert_non_null(r);
		assert_int_equal(r->version, 3);
		assert_int_equal(r->value_len, 600);
		assert_memory_equal(r->value, value, 600);
		if (i != 1)
			assert_int_equal(net->n[i].record_cb, 1);	/* exactly once */
	}
	assert_int_equal(net->n[1].record_cb, 0);	/* not for our own puts */
	/* versions only go up */
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 10, 3, value, 1), -ESTALE);
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 10, 2, value, 1), -ESTALE);
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 10, 4, value, 1), 0);
	uint8_t big[GOSSIP_VALUE_MAX + 1] = { 0 };
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 10, 5, big, sizeof(big)),
			 -EMSGSIZE);
	assert_int_equal(gossip_record_put(net->n[1].g, net->now, key, 0, 5, NULL, 0), -EINVAL);
	net_run(net, 1000);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(gossip_record_get(net->n[i].g, net->n[1].id, key, 10)->version, 4);
	/* many records at once: all arrive, no packet over the budget (checked in send) */
	char k[32];
	for (int j = 0; j < 40; j++) {
		snprintf(k, sizeof k, "vote/web/%d", j);
		assert_int_equal(gossip_record_put(net->n[j % 5].g, net->now, (const uint8_t *)k,
						   strlen(k), 1, value, 500), 0);
	}
	net_run(net, 3000);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(gossip_record_count(net->n[i].g), 41);
	net_free(net);
}

/*
 * Urgent records go before routine ones: a vote already sent a few times must not wait behind
 * a wave of fresh routine records (every node publishing its health at once). The time until
 * every node holds the vote, with and without the urgent class, same seed and traffic.
 */
static uint64_t spread_ms(bool urgent, const char *first, const char *wave)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	c.push_fanout = 1;
	c.gossip_nodes = 1;
	net->urgent = urgent;
	for (int i = 0; i < MAXC; i++)
		add_node(net, &c);
	join_all(net);
	net_run(net, 2000);	/* the join's news is out */
	uint8_t value[600];
	memset(value, 0x5a, sizeof(value));
	const uint8_t *vote = (const uint8_t *)first;
	size_t vlen = strlen(first);
	assert_int_equal(gossip_record_put(net->n[0].g, net->now, vote, vlen, 1, value, 600), 0);
	net_run(net, 60);	/* it has gone out a few times */
	char k[32];
	for (int i = 0; i < MAXC; i++)
		for (int j = 0; j < 30; j++) {
			snprintf(k, sizeof k, "%s%d", wave, j);
			assert_int_equal(gossip_record_put(net->n[i].g, net->now, (const uint8_t *)k,
							   strlen(k), 1, value, 600), 0);
		}
	uint64_t start = net->now, took = UINT64_MAX;
	while (net->now - start < 20000) {
		unsigned have = 0;
		for (int i = 0; i < MAXC; i++)
			have += gossip_record_get(net->n[i].g, net->n[0].id, vote, vlen) != NULL;
		if (have == MAXC) {
			took = net->now - start;
			break;
		}
		net_run(net, 10);
	}
	net_free(net);
	return took;
}

static void test_urgent_records(void **state)
{
	(void)state;
	uint64_t urgent = spread_ms(true, "vote/web/2", "health/s");
	uint64_t routine = spread_ms(false, "vote/web/2", "health/s");
	print_message("vote to every node behind a wave of 240 routine records: urgent %" PRIu64
		      " ms, routine %" PRIu64 " ms\n", urgent, routine);
	assert_true(urgent <= 300);
	assert_true(routine > 2 * urgent);	/* the wave does hold a routine record back */
	/* and a flood of urgent records does not silence routine ones: they keep a share */
	uint64_t under = spread_ms(true, "health/web", "vote/s");
	print_message("routine record behind a wave of 240 urgent records: %" PRIu64 " ms\n",
		      under);
	assert_true(under < routine / 2);
}

/* Versions over the ceiling are refused (a forged 2^64 - 1 would stick for good). */
static void test_version_ceiling(void **state)
{
	(void)state;
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 3; i++)
		add_node(net, &c);
	join_all(net);
	for (int i = 1; i < 3; i++)
		gossip_set_version_ceiling(net->n[i].g, 1000);
	const uint8_t *k = (const uint8_t *)"health/web";
	assert_int_equal(gossip_record_put(net->n[0].g, net->now, k, 10, UINT64_MAX, k, 3), 0);
	assert_int_equal(gossip_record_put(net->n[0].g, net->now, (const uint8_t *)"ok", 2, 1000,
					   k, 3), 0);
	net_run(net, 1000);
	for (int i = 1; i < 3; i++) {
		struct gossip_stats st;
		assert_null(gossip_record_get(net->n[i].g, net->n[0].id, k, 10));
		assert_non_null(gossip_record_get(net->n[i].g, net->n[0].id, (const uint8_t *)"ok", 2));
		gossip_stats(net->n[i].g, &st);
		assert_true(st.records_future >= 1);
	}
	/* 0: no ceiling */
	gossip_set_version_ceiling(net->n[1].g, 0);
	assert_int_equal(gossip_record_put(net->n[0].g, net->now, (const uint8_t *)"x", 1,
					   UINT64_MAX, k, 3), 0);
	net_run(net, 1000);
	assert_non_null(gossip_record_get(net->n[1].g, net->n[0].id, (const uint8_t *)"x", 1));
	assert_null(gossip_record_get(net->n[2].g, net->n[0].id, (const uint8_t *)"x", 1));
	net_free(net);
}

static void test_malformed_changes_nothing(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (int i = 0; i < 2; i++)
		add_node(net, &c);
	join_all(net);
	net_run(net, 500);
	net->nq = 0;
	/* a valid ALIVE of a new member followed by garbage: nothing of it may apply */
	uint8_t newid[GOSSIP_ID_LEN] = { 0x77 };
	struct gossip_msg m = { .type = GOSSIP_MSG_ALIVE, .id = newid, .num = 1,
				.name = (const uint8_t *)"x", .name_len = 1 };
	m.addr.family = GOSSIP_AF_INET;
	uint8_t buf[1400];
	size_t len = packet(buf, net->n[1].id, &m, 1);
	buf[len++] = 0xc1;	/* never-used msgpack byte */
	unsigned cb = net->n[0].member_cb, sent = net->sent;
	struct gossip_stats before, after;
	gossip_stats(net->n[0].g, &before);
	assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr, buf, len), -EBADMSG);
	assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr, buf, 0), -EBADMSG);
	buf[3] = 9;
	assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr,
				     (const uint8_t *)"\x93\x09", 2), -EPROTONOSUPPORT);
	gossip_stats(net->n[0].g, &after);
	assert_null(gossip_member_get(net->n[0].g, newid));
	assert_int_equal(net->n[0].member_cb, cb);
	assert_int_equal(net->sent, sent);
	assert_int_equal(after.bad_packets, before.bad_packets + 3);
	assert_int_equal(after.packets_recv, before.packets_recv);
	/* the same packet without the garbage is accepted */
	len = packet(buf, net->n[1].id, &m, 1);
	assert_int_equal(gossip_recv(net->n[0].g, net->now, &net->n[1].addr, buf, len), 0);
	assert_non_null(gossip_member_get(net->n[0].g, newid));
	net_free(net);
}

static int count_cb(void *ud, const struct gossip_member *m)
{
	(*(unsigned *)ud)++;
	return 0;
}

static void test_restore_and_reap(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	c.reap_ms = 60000;
	struct node *a = add_node(net, &c);
	struct gossip_member m = { .id = { 0xbb, 1 }, .name = "gone", .incarnation = 9,
				   .state = GOSSIP_DEAD, .state_change = net->now };
	m.addr.family = GOSSIP_AF_INET;
	m.addr.ip[3] = 99;
	unsigned cb = a->member_cb;
	assert_int_equal(gossip_member_restore(a->g, &m), 0);
	m.id[1] = 2;
	m.state = GOSSIP_ALIVE;
	static const uint8_t labels[] = "site=a";
	m.labels = labels;
	m.labels_len = sizeof(labels);
	assert_int_equal(gossip_member_restore(a->g, &m), 0);
	assert_int_equal(a->member_cb, cb);	/* no callbacks for restores */
	m.state = 7;
	assert_int_equal(gossip_member_restore(a->g, &m), -EINVAL);
	/* our own previous life: incarnation goes above it */
	struct gossip_member me = { .incarnation = 41, .state = GOSSIP_DEAD };
	memcpy(me.id, a->id, GOSSIP_ID_LEN);
	assert_int_equal(gossip_member_restore(a->g, &me), 0);
	assert_int_equal(gossip_self(a->g)->incarnation, 42);
	assert_int_equal(gossip_self(a->g)->state, GOSSIP_ALIVE);
	unsigned n = 0;
	assert_int_equal(gossip_member_foreach(a->g, count_cb, &n), 0);
	assert_int_equal(n, 3);
	const struct gossip_member *x = gossip_member_get(a->g, m.id);
	assert_int_equal(x->labels_len, sizeof(labels));
	assert_memory_equal(x->labels, labels, sizeof(labels));
	/* 65 s later the dead one is gone, the alive one (dead since ~5 s: unreachable) stays */
	for (int i = 0; i < 65; i++) {
		net->now += 1000;
		gossip_tick(a->g, net->now);
		net->nq = 0;
	}
	m.id[1] = 1;
	assert_null(gossip_member_get(a->g, m.id));
	m.id[1] = 2;
	assert_non_null(gossip_member_get(a->g, m.id));
	net_free(net);
}

/* Anti-entropy between two cores that never exchanged a packet. */
static void sync_exchange(struct gossip *a, struct gossip *b, uint64_t now)
{
	uint8_t *da, *db, *xa, *xb;
	size_t la, lb, lxa, lxb;
	assert_int_equal(gossip_sync_digest(a, &da, &la), 0);
	assert_true(gossip_sync_diff(b, now, da, la, 0, &xb, &lxb) >= 0);
	assert_int_equal(gossip_sync_digest(b, &db, &lb), 0);
	assert_true(gossip_sync_apply(a, now, xb, lxb) >= 0);
	assert_true(gossip_sync_diff(a, now, db, lb, 0, &xa, &lxa) >= 0);
	assert_true(gossip_sync_apply(b, now, xa, lxa) >= 0);
	free(da);
	free(db);
	free(xa);
	free(xb);
}

static void test_sync(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	struct node *a = add_node(net, &c), *b = add_node(net, &c);
	/* a knows a dead member and holds records; b holds a newer version of one of them */
	struct gossip_member d = { .id = { 0xdd }, .name = "old", .incarnation = 3,
				   .state = GOSSIP_DEAD };
	assert_int_equal(gossip_member_restore(a->g, &d), 0);
	const uint8_t *k1 = (const uint8_t *)"k1", *k2 = (const uint8_t *)"k2";
	assert_int_equal(gossip_record_put(a->g, net->now, k1, 2, 5, (const uint8_t *)"a5", 2), 0);
	assert_int_equal(gossip_record_put(a->g, net->now, k2, 2, 1, (const uint8_t *)"a1", 2), 0);
	struct gossip_record r = { .key = k1, .key_len = 2, .version = 7,
				   .value = (const uint8_t *)"x7", .value_len = 2 };
	memcpy(r.owner, a->id, GOSSIP_ID_LEN);
	assert_int_equal(gossip_record_restore(b->g, &r), 0);
	net->nq = 0;
	sync_exchange(a->g, b->g, net->now);
	/* members: each knows the other (alive) and the dead one, as dead */
	assert_state(net, 0, 1, GOSSIP_ALIVE);
	assert_state(net, 1, 0, GOSSIP_ALIVE);
	const struct gossip_member *x = gossip_member_get(b->g, d.id);
	assert_non_null(x);
	assert_int_equal(x->state, GOSSIP_DEAD);
	assert_int_equal(x->incarnation, 3);
	/* records: newest of each side wins on both */
	assert_int_equal(gossip_record_get(a->g, a->id, k1, 2)->version, 7);
	assert_int_equal(gossip_record_get(b->g, a->id, k1, 2)->version, 7);
	assert_int_equal(gossip_record_get(b->g, a->id, k2, 2)->version, 1);
	assert_int_equal(a->last_record_version, 7);	/* a heard of its own newer record */
	/* a second exchange has nothing to do */
	uint8_t *dg, *df;
	size_t ldg, ldf;
	assert_int_equal(gossip_sync_digest(a->g, &dg, &ldg), 0);
	int changed = gossip_sync_diff(b->g, net->now, dg, ldg, 0, &df, &ldf);
	assert_int_equal(changed, 0);
	assert_int_equal(gossip_sync_apply(a->g, net->now, df, ldf), 0);
	/* truncated diffs say so */
	free(df);
	assert_int_equal(gossip_sync_digest(b->g, &df, &ldf), 0);
	free(dg);
	struct gossip_config c2;
	cfg_fast(&c2);
	struct node *e = add_node(net, &c2);
	assert_int_equal(gossip_sync_digest(e->g, &dg, &ldg), 0);
	uint8_t *small;
	size_t lsmall;
	assert_int_equal(gossip_sync_diff(a->g, net->now, dg, ldg, 80, &small, &lsmall), 1);
	assert_true(lsmall <= 80);
	assert_true(gossip_sync_apply(e->g, net->now, small, lsmall) >= 0);
	free(small);
	/* malformed buffers change nothing */
	assert_int_equal(gossip_sync_apply(a->g, net->now, dg, ldg), -EBADMSG);	/* a digest */
	assert_int_equal(gossip_sync_diff(a->g, net->now, df, ldf - 1, 0, &small, &lsmall),
			 -EBADMSG);
	free(dg);
	free(df);
	net_free(net);
}

/* A node that learns through anti-entropy that it was declared dead refutes. */
static void test_sync_refute(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	struct node *a = add_node(net, &c), *b = add_node(net, &c);
	struct gossip_member m = { .incarnation = 1, .state = GOSSIP_DEAD };
	memcpy(m.id, a->id, GOSSIP_ID_LEN);
	assert_int_equal(gossip_member_restore(b->g, &m), 0);
	net->nq = 0;
	sync_exchange(b->g, a->g, net->now);
	/* a learned from b's diff that it is dead and refuted at once */
	assert_int_equal(gossip_self(a->g)->incarnation, 2);
	assert_state(net, 0, 1, GOSSIP_ALIVE);
	/* its new "alive" reaches b by gossip */
	net_run(net, 500);
	assert_state(net, 1, 0, GOSSIP_ALIVE);
	assert_int_equal(view(net, 1, 0)->incarnation, 2);
	net_free(net);
}

/* Dead members travel with their age: reaped together, never resurrected by a sync. */
static void test_sync_reap_age(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	c.reap_ms = 60000;
	net->now = 1000000000;
	struct node *a = add_node(net, &c), *b = add_node(net, &c);
	struct gossip_member x = { .id = { 0xee }, .name = "x", .incarnation = 4,
				   .state = GOSSIP_DEAD, .state_change = net->now - 50000 };
	assert_int_equal(gossip_member_restore(a->g, &x), 0);
	net->nq = 0;
	sync_exchange(a->g, b->g, net->now);
	const struct gossip_member *m = gossip_member_get(b->g, x.id);
	assert_non_null(m);
	assert_int_equal(m->state, GOSSIP_DEAD);
	assert_int_equal(m->state_change, net->now - 50000);
	/* 25 s later both have forgotten it */
	for (int i = 0; i < 25; i++) {
		net->now += 1000;
		gossip_tick(a->g, net->now);
		gossip_tick(b->g, net->now);
		net_flush(net);
	}
	assert_null(gossip_member_get(a->g, x.id));
	assert_null(gossip_member_get(b->g, x.id));
	/* a stale copy (say, restored from an old disk) does not come back through a sync */
	x.state_change = net->now - 70000;
	assert_int_equal(gossip_member_restore(a->g, &x), 0);
	sync_exchange(a->g, b->g, net->now);
	assert_null(gossip_member_get(b->g, x.id));
	net_free(net);
}

static void test_labels_and_mtu(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	c.mtu = GOSSIP_MTU_MIN;
	net->max_plain = GOSSIP_MTU_MIN - GOSSIP_SEAL_OVERHEAD;
	uint8_t labels[GOSSIP_LABELS_MAX];
	memset(labels, 'l', sizeof(labels));
	c.labels = labels;
	c.labels_len = sizeof(labels);
	for (int i = 0; i < 6; i++)
		add_node(net, &c);
	join_all(net);
	/* records and fat members compete for room: both get through */
	uint8_t value[GOSSIP_VALUE_MAX];
	memset(value, 1, sizeof(value));
	for (int i = 0; i < 6; i++) {
		char k[8];
		snprintf(k, sizeof k, "r%d", i);
		assert_int_equal(gossip_record_put(net->n[i].g, net->now, (const uint8_t *)k,
						   strlen(k), 1, value, sizeof(value)), 0);
	}
	uint8_t nl[3] = "new";
	assert_int_equal(gossip_set_labels(net->n[0].g, net->now, nl, 3), 0);
	net_run(net, 3000);
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(gossip_record_count(net->n[i].g), 6);
		const struct gossip_member *m = view(net, i, 0);
		assert_int_equal(m->labels_len, 3);
		assert_memory_equal(m->labels, "new", 3);
	}
	assert_int_equal(gossip_set_labels(net->n[0].g, net->now, labels, GOSSIP_LABELS_MAX + 1),
			 -EMSGSIZE);
	net_free(net);
}

/*
 * The probe schedule (swim.c): with every node on a clock of its own, once the probe clocks
 * have met (pings carry them), each member is probed by someone once per round, the next
 * probe at most (1 + 2/n) rounds after the last. Independent shuffled lists (SWIM's) leave
 * gaps of several rounds.
 */
static void test_probe_schedule(void **state)
{
	struct net *net = net_new();
	struct gossip_config c;
	cfg_fast(&c);
	for (unsigned i = 0; i < MAXC; i++)
		add_node(net, &c);
	for (unsigned i = 0; i < MAXC; i++)
		net->n[i].clk = 1000003ull * (i * 5 % MAXC) + 17 * i; /* distinct, arbitrary */
	join_all(net);
	net_run(net, 5000);	/* the clocks meet within ~log2 n rounds */
	net->track_pings = true;
	net_run(net, 40 * c.probe_interval_ms);
	/* + 20 ms: this net ticks every 10 ms */
	uint64_t bound = c.probe_interval_ms * (MAXC + 2) / MAXC + 20;
	for (unsigned i = 0; i < MAXC; i++) {
		for (unsigned j = 0; j < MAXC; j++)
			assert_state(net, i, j, GOSSIP_ALIVE);
		if (!net->n[i].max_gap || net->n[i].max_gap > bound)
			fail_msg("node %u: longest time between two probes of it %llu ms, want "
				 "1..%llu", i, (unsigned long long)net->n[i].max_gap,
				 (unsigned long long)bound);
	}
	net_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_join_and_rtt),
		cmocka_unit_test(test_failure_detection),
		cmocka_unit_test(test_refute),
		cmocka_unit_test(test_suspicion_confirmations),
		cmocka_unit_test(test_lhm),
		cmocka_unit_test(test_indirect_probe),
		cmocka_unit_test(test_leave),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_urgent_records),
		cmocka_unit_test(test_version_ceiling),
		cmocka_unit_test(test_malformed_changes_nothing),
		cmocka_unit_test(test_restore_and_reap),
		cmocka_unit_test(test_sync),
		cmocka_unit_test(test_sync_refute),
		cmocka_unit_test(test_sync_reap_age),
		cmocka_unit_test(test_labels_and_mtu),
		cmocka_unit_test(test_probe_schedule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
