/*
 * tests/unit/test_traffic_plan.c: the pure planner (traffic/plan.c).
 *
 * Each test keeps a small model of an HAProxy backend (struct hap: what `show servers state`
 * would say), plans against it, checks the exact commands, and applies them to the model the
 * way HAProxy 2.6 does (verified by hand against the real one: `state maint` clears a forced
 * drain, `state drain` clears a forced maint, `state ready` clears both; a server that leaves
 * maint is UP at once, srv_op_state 2, and one put into maint is stopped, 0; any other
 * srv_op_state change is a health check's, which a test sets by hand). Planning again
 * against the applied model must give no command: that is the driver's verify step.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "traffic/traffic.h"

#define NSLOTS_MAX 8

struct hap {
	struct traffic_server srv[NSLOTS_MAX];
	const char *names[NSLOTS_MAX];
	size_t n;
};

/* A backend as HAProxy starts it from `server-template s 1-N 127.0.0.1:1 disabled`. */
static void hap_init(struct hap *h, size_t n)
{
	memset(h, 0, sizeof *h);
	h->n = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(h->srv[i].name, sizeof h->srv[i].name, "s%zu", i + 1);
		snprintf(h->srv[i].addr, sizeof h->srv[i].addr, "127.0.0.1");
		h->srv[i].port = 1;
		h->srv[i].uweight = 1;
		h->srv[i].admin = TRAFFIC_ADMF_FMAINT | TRAFFIC_ADMF_CMAINT;
		h->srv[i].id = (uint32_t)i + 1;
		h->names[i] = h->srv[i].name;
	}
}

static struct traffic_server *hap_find(struct hap *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->srv[i].name, name) == 0)
			return &h->srv[i];
	return NULL;
}

static void hap_apply(struct hap *h, const struct traffic_plan *p)
{
	for (size_t i = 0; i < p->ncmds; i++) {
		const char *l = p->cmds[i].line;
		char name[64], a[46], st[16];
		unsigned port, w;
		struct traffic_server *s;
		if (sscanf(l, "set server web/%63s addr %45s port %u", name, a, &port) == 3) {
			assert_non_null(s = hap_find(h, name));
			snprintf(s->addr, sizeof s->addr, "%s", a);
			s->port = (uint16_t)port;
		} else if (sscanf(l, "set weight web/%63s %u", name, &w) == 2) {
			assert_non_null(s = hap_find(h, name));
			assert_true(w <= 256);
			s->uweight = (uint16_t)w;
		} else if (sscanf(l, "set server web/%63s state %15s", name, st) == 2) {
			assert_non_null(s = hap_find(h, name));
			bool was_maint = s->admin & TRAFFIC_ADMF_FMAINT;
			if (strcmp(st, "ready") == 0)
				s->admin &= (uint8_t)~(TRAFFIC_ADMF_FMAINT | TRAFFIC_ADMF_FDRAIN);
			else if (strcmp(st, "drain") == 0)
				s->admin = (uint8_t)((s->admin & ~TRAFFIC_ADMF_FMAINT) |
						     TRAFFIC_ADMF_FDRAIN);
			else if (strcmp(st, "maint") == 0)
				s->admin = (uint8_t)((s->admin & ~TRAFFIC_ADMF_FDRAIN) |
						     TRAFFIC_ADMF_FMAINT);
			else
				fail_msg("bad state in '%s'", l);
			bool maint = s->admin & TRAFFIC_ADMF_FMAINT;
			if (was_maint && !maint)
				s->op_state = 2;	/* "start OK but check immediately" */
			else if (maint)
				s->op_state = 0;
		} else {
			fail_msg("unexpected command '%s'", l);
		}
	}
}

static struct traffic_endpoint ep(const char *node, const char *site, const char *addr,
				  uint16_t port, int weight, enum traffic_state st)
{
	struct traffic_endpoint e = {
		.node = node, .site = site, .addr = addr, .port = port, .weight = weight,
		.state = st, .revision = "r1",
	};
	return e;
}

static unsigned permille = 500;
static const char *site = "a";

static int plan(struct hap *h, const struct traffic_endpoint *eps, size_t n,
		struct traffic_plan *p)
{
	struct traffic_plan_input in = {
		.backend = "web", .site = site, .failover_permille = permille,
		.slots = h->names, .nslots = h->n, .servers = h->srv, .nservers = h->n,
		.endpoints = eps, .nendpoints = n,
	};
	return traffic_plan_build(&in, p);
}

/* Plan, check the commands equal the NULL-terminated list, apply, re-plan: nothing left. */
static void step(struct hap *h, const struct traffic_endpoint *eps, size_t n,
		 struct traffic_plan *ret, ...)
{
	struct traffic_plan p;
	assert_int_equal(plan(h, eps, n, &p), 0);
	va_list ap;
	va_start(ap, ret);
	size_t i = 0;
	for (const char *want; (want = va_arg(ap, const char *)); i++) {
		if (i >= p.ncmds)
			fail_msg("command %zu missing: want '%s'", i, want);
		assert_string_equal(p.cmds[i].line, want);
	}
	va_end(ap);
	if (i != p.ncmds)
		fail_msg("extra command %zu: '%s'", i, p.cmds[i].line);
	hap_apply(h, &p);
	struct traffic_plan again;
	assert_int_equal(plan(h, eps, n, &again), 0);
	if (again.ncmds)
		fail_msg("not in step after applying: '%s'", again.cmds[0].line);
	traffic_plan_release(&again);
	if (ret)
		*ret = p;
	else
		traffic_plan_release(&p);
}

static void reset(void)
{
	permille = 500;
	site = "a";
}

/* ---------------------------------------------------------------------------------------- */

static void test_fill_and_idempotent(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 4);
	struct traffic_endpoint e[] = {
		ep("n1", "a", "10.0.0.1", 8080, 100, TRAFFIC_HEALTHY),
		ep("n2", "a", "10.0.0.2", 8080, 50, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	step(&h, e, 2, &p,
	     "set server web/s1 addr 10.0.0.1 port 8080", "set weight web/s1 100",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.0.0.2 port 8080", "set weight web/s2 50",
	     "set server web/s2 state ready", NULL);
	assert_int_equal(p.slots[0].endpoint, 0);
	assert_int_equal(p.slots[1].endpoint, 1);
	assert_int_equal(p.slots[2].endpoint, -1);
	assert_int_equal(p.slots[2].mode, TRAFFIC_MAINT);
	assert_int_equal(p.nunplaced, 0);
	assert_false(p.failover);
	traffic_plan_release(&p);
	/* Same input, reordered: same slots, nothing to do. */
	struct traffic_endpoint r[] = { e[1], e[0] };
	step(&h, r, 2, NULL, NULL);
}

static void test_slot_stability(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 4);
	struct traffic_endpoint e[] = {
		ep("n5", "a", "10.0.0.5", 80, 10, TRAFFIC_HEALTHY),
		ep("n6", "a", "10.0.0.6", 80, 10, TRAFFIC_HEALTHY),
	};
	step(&h, e, 2, NULL,
	     "set server web/s1 addr 10.0.0.5 port 80", "set weight web/s1 10",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.0.0.6 port 80", "set weight web/s2 10",
	     "set server web/s2 state ready", NULL);
	/* n1 sorts first by name but comes late: it takes the next free slot, nobody moves. */
	struct traffic_endpoint e2[] = {
		e[0], e[1], ep("n1", "a", "10.0.0.1", 80, 10, TRAFFIC_HEALTHY),
	};
	step(&h, e2, 3, NULL,
	     "set server web/s3 addr 10.0.0.1 port 80", "set weight web/s3 10",
	     "set server web/s3 state ready", NULL);
	/* n5 leaves and n7 comes in the same update: s1 (just freed, may still carry n5's
	 * sessions) goes to maint; n7 takes s4, already in maint. n6 and n1 stay put. */
	struct traffic_endpoint e3[] = {
		e2[2], e2[1], ep("n7", "a", "10.0.0.7", 80, 10, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	step(&h, e3, 3, &p,
	     "set server web/s4 addr 10.0.0.7 port 80", "set weight web/s4 10",
	     "set server web/s4 state ready",
	     "set server web/s1 state maint", NULL);
	assert_int_equal(p.slots[1].endpoint, 1);	/* n6 */
	assert_int_equal(p.slots[2].endpoint, 0);	/* n1 */
	assert_int_equal(p.slots[3].endpoint, 2);	/* n7 */
	traffic_plan_release(&p);
	/* n5 returns: s1 still has its address in maint, so it gets s1 back. */
	struct traffic_endpoint e4[] = { e3[0], e3[1], e3[2], e[0] };
	step(&h, e4, 4, NULL, "set server web/s1 state ready", NULL);
	/* A weight change is one command on the same slot. */
	e4[1].weight = 20;
	step(&h, e4, 4, NULL, "set weight web/s2 20", NULL);
}

static void test_failover_both_ways(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 4);
	struct traffic_endpoint e[] = {
		ep("a1", "a", "10.1.0.1", 80, 100, TRAFFIC_HEALTHY),
		ep("a2", "a", "10.1.0.2", 80, 100, TRAFFIC_HEALTHY),
		ep("b1", "b", "10.2.0.1", 80, 100, TRAFFIC_HEALTHY),
		ep("b2", "b", "10.2.0.2", 80, 100, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	/* F = 0.5, L = 2, need = 1: local serves, remote ready at weight 0 (standby). */
	step(&h, e, 4, &p,
	     "set server web/s1 addr 10.1.0.1 port 80", "set weight web/s1 100",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.1.0.2 port 80", "set weight web/s2 100",
	     "set server web/s2 state ready",
	     "set server web/s3 addr 10.2.0.1 port 80", "set weight web/s3 0",
	     "set server web/s3 state ready",
	     "set server web/s4 addr 10.2.0.2 port 80", "set weight web/s4 0",
	     "set server web/s4 state ready", NULL);
	assert_int_equal(p.local_total, 2);
	assert_int_equal(p.local_healthy, 2);
	assert_int_equal(p.local_need, 1);
	assert_false(p.failover);
	traffic_plan_release(&p);
	/* One local down: H = 1 >= need 1, still local. */
	e[0].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 4, &p, "set server web/s1 state maint", NULL);
	assert_false(p.failover);
	traffic_plan_release(&p);
	/* Site a cut off: H = 0: remote endpoints get their weight. */
	e[1].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 4, &p, "set weight web/s3 100", "set weight web/s4 100",
	     "set server web/s2 state maint", NULL);
	assert_true(p.failover);
	assert_int_equal(p.local_healthy, 0);
	traffic_plan_release(&p);
	/* Site a back: local first (capacity added before it is removed), then remote to 0. */
	e[0].state = TRAFFIC_HEALTHY;
	e[1].state = TRAFFIC_HEALTHY;
	step(&h, e, 4, &p, "set server web/s1 state ready", "set server web/s2 state ready",
	     "set weight web/s3 0", "set weight web/s4 0", NULL);
	assert_false(p.failover);
	traffic_plan_release(&p);

	/* F = 1: every local endpoint must be healthy; one down fails over. */
	permille = 1000;
	e[1].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 4, &p, "set weight web/s3 100", "set weight web/s4 100",
	     "set server web/s2 state maint", NULL);
	assert_true(p.failover);
	assert_int_equal(p.local_need, 2);
	traffic_plan_release(&p);
	/* A planned drain is not missing capacity: L drops to 1, H = 1, need 1: local. */
	e[1].state = TRAFFIC_DRAINING;
	step(&h, e, 4, &p, "set server web/s2 state drain", "set weight web/s3 0",
	     "set weight web/s4 0", NULL);
	assert_false(p.failover);
	assert_int_equal(p.local_total, 1);
	traffic_plan_release(&p);
	/* F = 0: fails over only when no local endpoint is healthy. */
	permille = 0;
	e[1].state = TRAFFIC_UNHEALTHY;
	e[0].state = TRAFFIC_STARTING;
	step(&h, e, 4, &p, "set weight web/s3 100", "set weight web/s4 100",
	     "set server web/s1 state drain", "set server web/s2 state maint", NULL);
	assert_true(p.failover);
	assert_int_equal(p.local_need, 0);
	traffic_plan_release(&p);
}

/*
 * The system test's bad deploy with one node left in site a (issue 14): a1 swaps to a bad
 * revision and back. When the cluster says a1 is healthy again, HAProxy's own check of its
 * slot may still be DOWN (it failed on the bad instance, and `rise` checks one `inter` apart
 * are needed before it is UP): the remote endpoints must keep their weight until the check
 * agrees, or the backend has no usable server and HAProxy answers 503 (measured: 2-56 per
 * rollback before this rule).
 */
static void test_failback_waits_for_haproxy_check(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 4);
	struct traffic_endpoint e[] = {
		ep("a1", "a", "10.1.0.1", 80, 100, TRAFFIC_HEALTHY),
		ep("b1", "b", "10.2.0.1", 80, 100, TRAFFIC_HEALTHY),
		ep("b2", "b", "10.2.0.2", 80, 100, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	step(&h, e, 3, &p,
	     "set server web/s1 addr 10.1.0.1 port 80", "set weight web/s1 100",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.2.0.1 port 80", "set weight web/s2 0",
	     "set server web/s2 state ready",
	     "set server web/s3 addr 10.2.0.2 port 80", "set weight web/s3 0",
	     "set server web/s3 state ready", NULL);
	assert_false(p.failover);
	assert_int_equal(p.local_healthy, 1);
	assert_int_equal(p.local_waiting, 0);
	traffic_plan_release(&p);
	/* The swap to the bad revision: a1 drains (L = 0: remote serves), starts, its check
	 * fails (HAProxy marks the server DOWN), it turns unhealthy (maint). */
	e[0].state = TRAFFIC_DRAINING;
	step(&h, e, 3, &p, "set weight web/s2 100", "set weight web/s3 100",
	     "set server web/s1 state drain", NULL);
	assert_true(p.failover);
	traffic_plan_release(&p);
	e[0].state = TRAFFIC_STARTING;
	step(&h, e, 3, NULL, NULL);
	h.srv[0].op_state = 0;
	e[0].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 3, NULL, "set server web/s1 state maint", NULL);
	/* The rollback: a1 drains the bad instance (out of maint: UP at once, then DOWN at the
	 * check that gets the bad instance's 404), starts the good one. */
	e[0].state = TRAFFIC_DRAINING;
	step(&h, e, 3, NULL, "set server web/s1 state drain", NULL);
	assert_int_equal(h.srv[0].op_state, 2);
	h.srv[0].op_state = 0;
	e[0].state = TRAFFIC_STARTING;
	step(&h, e, 3, NULL, NULL);
	/* Healthy for the cluster, DOWN for HAProxy: a1 is made ready, the remote endpoints
	 * keep their weight (before: they went to 0 in this pass and HAProxy had no server). */
	e[0].state = TRAFFIC_HEALTHY;
	step(&h, e, 3, &p, "set server web/s1 state ready", NULL);
	assert_true(p.failover);
	assert_int_equal(p.local_total, 1);
	assert_int_equal(p.local_healthy, 0);
	assert_int_equal(p.local_waiting, 1);
	traffic_plan_release(&p);
	/* srv_op_state 3 (stopping: soft-stopped by a 404 with disable-on-404) takes no new
	 * requests either. */
	h.srv[0].op_state = 3;
	step(&h, e, 3, NULL, NULL);
	/* HAProxy's check passes: now the fail-back. */
	h.srv[0].op_state = 2;
	step(&h, e, 3, &p, "set weight web/s2 0", "set weight web/s3 0", NULL);
	assert_false(p.failover);
	assert_int_equal(p.local_healthy, 1);
	assert_int_equal(p.local_waiting, 0);
	traffic_plan_release(&p);
	/* Slowstart's "starting" (1) takes traffic: no change. */
	h.srv[0].op_state = 1;
	step(&h, e, 3, NULL, NULL);
	/* HAProxy's check takes the serving local server out before the cluster knows (a site
	 * cut off): the next pass fails over. */
	h.srv[0].op_state = 0;
	step(&h, e, 3, &p, "set weight web/s2 100", "set weight web/s3 100", NULL);
	assert_true(p.failover);
	assert_int_equal(p.local_waiting, 1);
	traffic_plan_release(&p);
	h.srv[0].op_state = 2;
	step(&h, e, 3, NULL, "set weight web/s2 0", "set weight web/s3 0", NULL);
	/* A slot filled in this pass leaves maint and is UP at once: counted in the same pass
	 * (the fail-back after a site cut is not delayed). */
	e[0].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 3, NULL, "set weight web/s2 100", "set weight web/s3 100",
	     "set server web/s1 state maint", NULL);
	e[0].state = TRAFFIC_HEALTHY;
	step(&h, e, 3, &p, "set server web/s1 state ready", "set weight web/s2 0",
	     "set weight web/s3 0", NULL);
	assert_false(p.failover);
	traffic_plan_release(&p);
}

static void test_failover_formula(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 8);
	/* 5 local: 2 healthy, 1 starting, 1 unhealthy, 1 draining; 1 remote. */
	struct traffic_endpoint e[] = {
		ep("a1", "a", "10.1.0.1", 80, 10, TRAFFIC_HEALTHY),
		ep("a2", "a", "10.1.0.2", 80, 10, TRAFFIC_HEALTHY),
		ep("a3", "a", "10.1.0.3", 80, 10, TRAFFIC_STARTING),
		ep("a4", "a", "10.1.0.4", 80, 10, TRAFFIC_UNHEALTHY),
		ep("a5", "a", "10.1.0.5", 80, 10, TRAFFIC_DRAINING),
		ep("b1", "b", "10.2.0.1", 80, 10, TRAFFIC_HEALTHY),
	};
	struct {
		unsigned pm;
		size_t need;
		bool failover;
	} cases[] = {
		/* L = 4 (the draining one is out), H = 2. */
		{ 0, 0, false }, { 250, 1, false }, { 500, 2, false }, { 501, 3, true },
		{ 750, 3, true }, { 1000, 4, true },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		permille = cases[i].pm;
		struct traffic_plan p;
		assert_int_equal(plan(&h, e, 6, &p), 0);
		assert_int_equal(p.local_total, 4);
		assert_int_equal(p.local_healthy, 2);
		assert_int_equal(p.local_need, cases[i].need);
		assert_int_equal(p.failover, cases[i].failover);
		/* b1's slot: weight 0 on standby, 10 in failover. */
		long b1 = -1;
		for (size_t s = 0; s < p.nslots; s++)
			if (p.slots[s].endpoint == 5)
				b1 = (long)s;
		assert_true(b1 >= 0);
		assert_int_equal(p.slots[b1].weight, cases[i].failover ? 10 : 0);
		traffic_plan_release(&p);
	}
	/* No local endpoint at all (L = 0): remote serves. */
	permille = 0;
	site = "c";
	struct traffic_plan p;
	assert_int_equal(plan(&h, e, 6, &p), 0);
	assert_int_equal(p.local_total, 0);
	assert_true(p.failover);
	traffic_plan_release(&p);
	/* A healthy local endpoint at weight 0 takes no traffic: it is not in H. */
	site = "a";
	struct traffic_endpoint z[] = {
		ep("a1", "a", "10.1.0.1", 80, 0, TRAFFIC_HEALTHY),
		ep("b1", "b", "10.2.0.1", 80, 10, TRAFFIC_HEALTHY),
	};
	assert_int_equal(plan(&h, z, 2, &p), 0);
	assert_int_equal(p.local_healthy, 0);
	assert_true(p.failover);
	traffic_plan_release(&p);
	/* No sites anywhere: all local. */
	site = "";
	struct traffic_endpoint ns[] = {
		ep("x1", "", "10.3.0.1", 80, 10, TRAFFIC_HEALTHY),
		ep("x2", NULL, "10.3.0.2", 80, 10, TRAFFIC_HEALTHY),
	};
	assert_int_equal(plan(&h, ns, 2, &p), 0);
	assert_int_equal(p.local_total, 2);
	assert_false(p.failover);
	traffic_plan_release(&p);
}

static void test_drain_mapping(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 3);
	struct traffic_endpoint e[] = {
		ep("a1", "a", "10.1.0.1", 80, 10, TRAFFIC_STARTING),
		ep("a2", "a", "10.1.0.2", 80, 10, TRAFFIC_HEALTHY),
	};
	/* Healthy is placed before starting. starting: address set, drain (HAProxy checks it,
	 * sends it no new sessions); no weight while not ready. */
	step(&h, e, 2, NULL,
	     "set server web/s1 addr 10.1.0.2 port 80", "set weight web/s1 10",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.1.0.1 port 80", "set server web/s2 state drain", NULL);
	/* starting -> healthy: weight then ready (the template's weight 1 is still there). */
	e[0].state = TRAFFIC_HEALTHY;
	step(&h, e, 2, NULL, "set weight web/s2 10", "set server web/s2 state ready", NULL);
	/* healthy -> draining: drain only; its slot and address stay. */
	e[1].state = TRAFFIC_DRAINING;
	step(&h, e, 2, NULL, "set server web/s1 state drain", NULL);
	/* draining -> gone: maint. */
	step(&h, e, 1, NULL, "set server web/s1 state maint", NULL);
	/* healthy -> unhealthy: maint at once. */
	e[0].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 1, NULL, "set server web/s2 state maint", NULL);
	/* A new draining or unhealthy endpoint takes no slot and is not "unplaced". */
	struct traffic_endpoint f[] = {
		e[0], ep("a9", "a", "10.1.0.9", 80, 10, TRAFFIC_DRAINING),
		ep("a8", "a", "10.1.0.8", 80, 10, TRAFFIC_UNHEALTHY),
	};
	struct traffic_plan p;
	step(&h, f, 3, &p, NULL);
	assert_int_equal(p.nunplaced, 0);
	traffic_plan_release(&p);
	/* Everything gone: all maint, and nothing to send (they are). */
	step(&h, NULL, 0, NULL, NULL);
}

static void test_more_endpoints_than_slots(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 3);
	struct traffic_endpoint e[] = {
		ep("b1", "b", "10.2.0.1", 80, 10, TRAFFIC_HEALTHY),
		ep("a3", "a", "10.1.0.3", 80, 10, TRAFFIC_STARTING),
		ep("a2", "a", "10.1.0.2", 80, 10, TRAFFIC_HEALTHY),
		ep("a1", "a", "10.1.0.1", 80, 10, TRAFFIC_HEALTHY),
		ep("b2", "b", "10.2.0.2", 80, 10, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	/* Preference: local, healthy before starting, then node: a1, a2, a3. */
	assert_int_equal(plan(&h, e, 5, &p), 0);
	assert_int_equal(p.slots[0].endpoint, 3);
	assert_int_equal(p.slots[1].endpoint, 2);
	assert_int_equal(p.slots[2].endpoint, 1);
	assert_int_equal(p.nunplaced, 2);
	assert_int_equal(p.unplaced[0].endpoint, 0);
	assert_int_equal(p.unplaced[0].why, TRAFFIC_UNPLACED_NO_SLOT);
	assert_int_equal(p.unplaced[1].endpoint, 4);
	hap_apply(&h, &p);
	traffic_plan_release(&p);
	/* a2 unhealthy: short of slots, so its slot goes to the best waiting one (b1). */
	e[2].state = TRAFFIC_UNHEALTHY;
	step(&h, e, 5, &p, "set server web/s2 state maint",
	     "set server web/s2 addr 10.2.0.1 port 80", "set server web/s2 state ready", NULL);
	assert_int_equal(p.slots[1].endpoint, 0);
	assert_int_equal(p.nunplaced, 1);
	assert_int_equal(p.unplaced[0].endpoint, 4);
	/* H = 1 (a1) of L = 3 (a1, a2 unhealthy, a3 starting), need 2: failover, b1 serves. */
	assert_true(p.failover);
	traffic_plan_release(&p);
}

static void test_weights_clamped(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 3);
	struct traffic_endpoint e[] = {
		ep("a1", "a", "10.1.0.1", 80, 300, TRAFFIC_HEALTHY),
		ep("a2", "a", "10.1.0.2", 80, -5, TRAFFIC_HEALTHY),
		ep("a3", "a", "10.1.0.3", 80, 256, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	step(&h, e, 3, &p,
	     "set server web/s1 addr 10.1.0.1 port 80", "set weight web/s1 256",
	     "set server web/s1 state ready",
	     "set server web/s2 addr 10.1.0.2 port 80", "set weight web/s2 0",
	     "set server web/s2 state ready",
	     "set server web/s3 addr 10.1.0.3 port 80", "set weight web/s3 256",
	     "set server web/s3 state ready", NULL);
	assert_int_equal(p.nclamped, 2);
	traffic_plan_release(&p);
	/* A weight going down on a serving slot comes after the ones going up. */
	e[0].weight = 5;
	e[1].weight = 7;
	step(&h, e, 3, NULL, "set weight web/s2 7", "set weight web/s1 5", NULL);
}

static void test_duplicates_and_ipv6(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 3);
	/* HAProxy prints "::1"; the agent may write it longhand: the same server. */
	snprintf(h.srv[1].addr, sizeof h.srv[1].addr, "::1");
	h.srv[1].port = 9000;
	struct traffic_endpoint e[] = {
		ep("z", "a", "0:0:0:0:0:0:0:1", 9000, 10, TRAFFIC_HEALTHY),
		ep("y", "a", "10.1.0.1", 80, 10, TRAFFIC_HEALTHY),
		ep("x", "a", "10.1.0.1", 80, 10, TRAFFIC_HEALTHY),
	};
	struct traffic_plan p;
	step(&h, e, 3, &p, "set server web/s1 addr 10.1.0.1 port 80", "set weight web/s1 10",
	     "set server web/s1 state ready", "set weight web/s2 10",
	     "set server web/s2 state ready", NULL);
	assert_int_equal(p.slots[1].endpoint, 0);	/* kept s2, no addr command */
	assert_int_equal(p.slots[0].endpoint, 2);	/* x preferred over y by node */
	assert_int_equal(p.nunplaced, 1);
	assert_int_equal(p.unplaced[0].endpoint, 1);
	assert_int_equal(p.unplaced[0].why, TRAFFIC_UNPLACED_DUPLICATE);
	traffic_plan_release(&p);
}

static void test_unknown_slot(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 2);
	struct traffic_endpoint e[] = { ep("a1", "a", "10.1.0.1", 80, 10, TRAFFIC_HEALTHY) };
	/* No state at all (HAProxy not read yet): every slot gets every command. */
	struct traffic_plan_input in = {
		.backend = "web", .site = "a", .failover_permille = 500,
		.slots = h.names, .nslots = 2, .endpoints = e, .nendpoints = 1,
	};
	struct traffic_plan p;
	assert_int_equal(traffic_plan_build(&in, &p), 0);
	assert_int_equal(p.ncmds, 4);
	assert_string_equal(p.cmds[0].line, "set server web/s1 addr 10.1.0.1 port 80");
	assert_string_equal(p.cmds[1].line, "set weight web/s1 10");
	assert_string_equal(p.cmds[2].line, "set server web/s1 state ready");
	assert_string_equal(p.cmds[3].line, "set server web/s2 state maint");
	traffic_plan_release(&p);
}

static void test_invalid_input(void **state)
{
	(void)state;
	reset();
	struct hap h;
	hap_init(&h, 2);
	struct traffic_plan p;
	memset(&p, 0x5a, sizeof p);
	struct traffic_plan keep = p;
	const struct traffic_endpoint bad[] = {
		ep("a1", "a", "host.example", 80, 10, TRAFFIC_HEALTHY),	/* a name */
		ep("a1", "a", "10.0.0.1", 0, 10, TRAFFIC_HEALTHY),	/* port 0 */
		ep("a 1", "a", "10.0.0.1", 80, 10, TRAFFIC_HEALTHY),	/* space */
		ep("a1", "a\n", "10.0.0.1", 80, 10, TRAFFIC_HEALTHY),	/* newline */
		ep("a1", "a", "10.0.0.1;x", 80, 10, TRAFFIC_HEALTHY),	/* ';' */
		ep("", "a", "10.0.0.1", 80, 10, TRAFFIC_HEALTHY),	/* empty node */
		ep("a1", "a", "10.0.0.1", 80, 10, (enum traffic_state)7),
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(plan(&h, &bad[i], 1, &p), -EINVAL);
		assert_memory_equal(&p, &keep, sizeof p);
	}
	permille = 1001;
	struct traffic_endpoint ok = ep("a1", "a", "10.0.0.1", 80, 10, TRAFFIC_HEALTHY);
	assert_int_equal(plan(&h, &ok, 1, &p), -EINVAL);
	permille = 500;
	/* A slot named twice, a backend with a space. */
	h.names[1] = "s1";
	assert_int_equal(plan(&h, &ok, 1, &p), -EINVAL);
	hap_init(&h, 2);
	struct traffic_plan_input in = {
		.backend = "we b", .slots = h.names, .nslots = 2, .endpoints = &ok,
		.nendpoints = 1,
	};
	assert_int_equal(traffic_plan_build(&in, &p), -EINVAL);
	assert_int_equal(traffic_plan_build(NULL, &p), -EINVAL);
	traffic_plan_release(NULL);
}

static void test_share_parse(void **state)
{
	(void)state;
	struct {
		const char *s;
		int r;
		unsigned pm;
	} c[] = {
		{ "0", 0, 0 }, { "1", 0, 1000 }, { "0.5", 0, 500 }, { ".25", 0, 250 },
		{ "0.125", 0, 125 }, { "0.1239", 0, 123 }, { "1.000", 0, 1000 }, { "50%", 0, 500 },
		{ "12.5%", 0, 125 }, { "100%", 0, 1000 }, { "0%", 0, 0 },
		{ "1.5", -EINVAL, 0 }, { "2", -EINVAL, 0 }, { "-0.5", -EINVAL, 0 },
		{ "", -EINVAL, 0 }, { ".", -EINVAL, 0 }, { "%", -EINVAL, 0 }, { "101%", -EINVAL, 0 },
		{ "0.5x", -EINVAL, 0 }, { "abc", -EINVAL, 0 }, { "1.2.3", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		unsigned pm = 4242;
		int r = traffic_share_parse(c[i].s, &pm);
		if (r != c[i].r)
			fail_msg("'%s': %d, want %d", c[i].s, r, c[i].r);
		assert_int_equal(pm, c[i].r ? 4242 : c[i].pm);
	}
	assert_int_equal(traffic_state_parse("draining"), TRAFFIC_DRAINING);
	assert_int_equal(traffic_state_parse("up"), -EINVAL);
	assert_string_equal(traffic_mode_name(TRAFFIC_DRAIN), "drain");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_and_idempotent),
		cmocka_unit_test(test_slot_stability),
		cmocka_unit_test(test_failover_both_ways),
		cmocka_unit_test(test_failback_waits_for_haproxy_check),
		cmocka_unit_test(test_failover_formula),
		cmocka_unit_test(test_drain_mapping),
		cmocka_unit_test(test_more_endpoints_than_slots),
		cmocka_unit_test(test_weights_clamped),
		cmocka_unit_test(test_duplicates_and_ipv6),
		cmocka_unit_test(test_unknown_slot),
		cmocka_unit_test(test_invalid_input),
		cmocka_unit_test(test_share_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
