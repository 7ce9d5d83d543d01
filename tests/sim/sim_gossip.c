/*
 * tests/sim/sim_gossip.c: cluster scenarios for the gossip core, on the simulator.
 *
 * usage: sim_gossip SCENARIO [N]      (SEED=n replays a run; the seed is printed first)
 *
 * Each scenario asserts what must hold and prints what it measured (virtual milliseconds).
 * Registered in ctest by tests/sim/gossip.cmake as sim_gossip_<scenario>[_N].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/sim/sim_gossip_harness.h"

static int failures;

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
			printf(__VA_ARGS__);                                               \
			printf("\n");                                                      \
			failures++;                                                        \
		}                                                                          \
	} while (0)

/* Short timers: what a test cluster or a fast LAN would use. */
static void fast_cfg(struct simg_opts *o, unsigned max_nodes)
{
	memset(o, 0, sizeof(*o));
	gossip_config_default(&o->cfg);
	o->cfg.probe_interval_ms = 200;
	o->cfg.probe_timeout_ms = 100;
	o->cfg.gossip_interval_ms = 50;
	o->max_nodes = max_nodes;
	o->sync_interval_ms = 5000;
}

/* The agent's own timings (gossip_config_default) and anti-entropy period (the transport's). */
static void agent_cfg(struct simg_opts *o, unsigned max_nodes)
{
	memset(o, 0, sizeof(*o));
	gossip_config_default(&o->cfg);
	o->max_nodes = max_nodes;
	o->sync_interval_ms = 30000;
}

/* ---- what scenarios track through the hooks ---- */

#define MAXN 2048

struct track {
	/* dead declarations about nodes that were up and reachable from the observer */
	unsigned false_dead;
	int watch_owner;		/* record arrival times for (owner, key, version) */
	const char *watch_key;
	uint64_t watch_version;
	uint64_t arrival[MAXN];
	bool check_false_dead;
	int group[MAXN];
};

static void hook_member(void *ud, struct simg *s, unsigned obs, const struct gossip_member *m)
{
	struct track *t = ud;
	if (!t->check_false_dead || m->state != GOSSIP_DEAD)
		return;
	int who = simg_index(s, m->id);
	if (who >= 0 && simg_up(s, (unsigned)who) && t->group[who] == t->group[obs]) {
		printf("  t=%llu: n%u declared n%d dead while it is up\n",
		       (unsigned long long)simg_now(s), obs, who);
		t->false_dead++;
	}
}

static void hook_record(void *ud, struct simg *s, unsigned obs, const struct gossip_record *r)
{
	struct track *t = ud;
	if (t->watch_owner < 0 || !t->watch_key || obs >= MAXN)
		return;
	if (simg_index(s, r->owner) != t->watch_owner || r->version != t->watch_version ||
	    r->key_len != strlen(t->watch_key) || memcmp(r->key, t->watch_key, r->key_len))
		return;
	if (!t->arrival[obs])
		t->arrival[obs] = simg_now(s);
}

static struct simg *setup(struct simg_opts *o, struct track *t)
{
	struct simg *s = simg_new(o);
	memset(t, 0, sizeof(*t));
	t->watch_owner = -1;
	struct simg_hooks h = { .on_member = hook_member, .on_record = hook_record, .ud = t };
	simg_set_hooks(s, &h);
	return s;
}

/* Spawn n nodes over @spread_ms, each joining one of the first three. */
static void spawn_all(struct simg *s, unsigned n, uint64_t spread_ms)
{
	uint64_t t0 = simg_now(s);
	for (unsigned i = 0; i < n; i++) {
		uint64_t at = t0 + (n > 1 ? spread_ms * i / (n - 1) : 0);
		simg_run_until(s, at);
		int seed = i == 0 ? -1 : (int)(simg_rand(s) % (i < 3 ? i : 3));
		if (simg_spawn(s, seed) < 0) {
			printf("FAIL spawn %u\n", i);
			exit(1);
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct allrec {
	struct track *t;
};

static bool watch_done(struct simg *s, void *ud)
{
	struct track *t = ud;
	for (unsigned i = 0; i < simg_count(s); i++)
		if (simg_up(s, i) && !t->arrival[i] && (int)i != t->watch_owner)
			return false;
	return true;
}

/* Put a record on @owner and measure how long it takes to reach every up node. */
static uint64_t measure_record(struct simg *s, struct track *t, unsigned owner, const char *key,
			       uint64_t version, uint64_t limit, uint64_t *ret_p50)
{
	char val[600];
	memset(val, 'v', sizeof val);
	memset(t->arrival, 0, sizeof(t->arrival));
	t->watch_owner = (int)owner;
	t->watch_key = key;
	t->watch_version = version;
	uint64_t t0 = simg_now(s);
	int r = simg_put(s, owner, key, version, val, sizeof val);
	CHECK(r == 0, "put returned %d", r);
	uint64_t done = simg_run_until_pred(s, watch_done, t, 5, limit);
	CHECK(done, "record %s v%llu did not reach every node in %llu ms", key,
	      (unsigned long long)version, (unsigned long long)limit);
	uint64_t lat[MAXN];
	size_t n = 0;
	for (unsigned i = 0; i < simg_count(s); i++)
		if (simg_up(s, i) && (int)i != t->watch_owner && t->arrival[i])
			lat[n++] = t->arrival[i] - t0;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	t->watch_owner = -1;
	if (ret_p50)
		*ret_p50 = n ? lat[n / 2] : 0;
	return n ? lat[n - 1] : 0;
}

/* ---- scenarios ---- */

static void sc_converge(unsigned n)
{
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, n);
	if (n >= 500) {
		/* big clusters: lighter timers keep the test fast under ASan */
		o.cfg.probe_interval_ms = 500;
		o.cfg.probe_timeout_ms = 200;
		o.cfg.gossip_interval_ms = 100;
		o.cfg.retransmit_mult = 2;
		o.sync_interval_ms = 500;
	}
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, n >= 500 ? 1000 : 100);
	uint64_t start = 0, spawned = simg_now(s);
	uint64_t at = simg_run_until_pred(s, simg_converged, NULL, n >= 500 ? 100 : 10,
					  n >= 500 ? 60000 : 10000);
	CHECK(at, "no convergence of %u nodes within the limit", n);
	struct simg_traffic tr;
	simg_traffic(s, &tr);
	struct gossip_stats st, sum = { 0 };
	for (unsigned i = 0; i < n; i++) {
		gossip_stats(simg_core(s, i), &st);
		sum.suspicions += st.suspicions;
		sum.deaths_declared += st.deaths_declared;
		sum.refutes += st.refutes;
	}
	printf("converge N=%u: %llu suspicions, %llu deaths declared, %llu refutes on the way\n",
	       n, (unsigned long long)sum.suspicions, (unsigned long long)sum.deaths_declared,
	       (unsigned long long)sum.refutes);
	printf("converge N=%u: all alive at all nodes %llu ms after the first start (%llu ms "
	       "after the last); %llu packets, %.1f KB/node, %llu syncs\n",
	       n, (unsigned long long)(at - start), (unsigned long long)(at - spawned),
	       (unsigned long long)tr.packets, tr.bytes / 1024.0 / n,
	       (unsigned long long)tr.syncs);
	if (at && n <= 200) {
		uint64_t p50, p100 = measure_record(s, &t, n / 2, "health/web", 1, 10000, &p50);
		printf("record to all %u nodes: p50 %llu ms, p100 %llu ms\n", n,
		       (unsigned long long)p50, (unsigned long long)p100);
		CHECK(p100 < 2000, "record dissemination p100 %llu ms", (unsigned long long)p100);
	}
	simg_free(s);
}

/*
 * A mass join (an autoscaling event): @n nodes start within 100 ms, each joining one of the
 * first three with one push-pull, on the agent's own timings (gossip_config_default,
 * anti-entropy every 30 s). A joiner's push-pull copies its seed's view while the "alive" of
 * the nodes that started a few ms earlier is still on its way to that seed, and by the time
 * the joiner is known widely enough to be sent those rumours they have mostly run out: without
 * the transport's follow-up exchanges (gossip/transport.h) the last (node, member) pairs
 * wait for a periodic exchange, up to ~30 s. With them, every node sees every other alive a
 * few seconds after the last start.
 */
static void sc_mass_join(unsigned n)
{
	const uint64_t limit = 8000;
	struct simg_opts o;
	struct track t;
	agent_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 100);
	uint64_t last = simg_now(s);
	/* how many pairs the rumours alone left missing after a second */
	simg_run_until(s, last + 1000);
	uint64_t missing = 0;
	for (unsigned i = 0; i < n; i++)
		missing += n - gossip_member_count(simg_core(s, i), GOSSIP_ALIVE);
	uint64_t at = simg_run_until_pred(s, simg_converged, NULL, 10, limit - 1000);
	struct simg_traffic tr;
	simg_traffic(s, &tr);
	printf("mass_join N=%u: %llu (node, member) pairs missing 1 s after the last start; all "
	       "alive at all nodes %sby %llu ms after it; %llu exchanges\n",
	       n, (unsigned long long)missing, at ? "" : "not ",
	       (unsigned long long)(at ? at - last : limit), (unsigned long long)tr.syncs);
	if (!at) {
		unsigned shown = 0;
		for (unsigned i = 0; i < n && shown < 10; i++)
			for (unsigned j = 0; j < n && shown < 10; j++) {
				const struct gossip_member *m =
					gossip_member_get(simg_core(s, i), simg_id(s, j));
				if (!m || m->state != GOSSIP_ALIVE) {
					printf("  n%u does not see n%u alive (%s)\n", i, j,
					       m ? gossip_state_name(m->state) : "unknown");
					shown++;
				}
			}
	}
	CHECK(at, "%u nodes not all alive everywhere %llu ms after the last start", n,
	      (unsigned long long)limit);
	simg_free(s);
}

/* every node holds (owner k, key, version) for all k in [0, n) */
struct recs_want {
	unsigned n;
	const char *key;
	uint64_t version[MAXN];
};

static bool recs_converged(struct simg *s, void *ud)
{
	struct recs_want *w = ud;
	for (unsigned i = 0; i < simg_count(s); i++) {
		struct gossip *g = simg_core(s, i);
		if (!g)
			continue;
		for (unsigned k = 0; k < w->n; k++) {
			if (!w->version[k])
				continue;
			const struct gossip_record *r = gossip_record_get(
				g, simg_id(s, k), (const uint8_t *)w->key, strlen(w->key));
			if (!r || r->version != w->version[k])
				return false;
		}
	}
	return true;
}

static bool all_conv(struct simg *s, void *ud)
{
	return simg_converged(s, NULL) && recs_converged(s, ud);
}

struct sides {
	unsigned n, split;
	int want;	/* GOSSIP_DEAD: each side sees the other dead */
};

static bool sides_apart(struct simg *s, void *ud)
{
	struct sides *d = ud;
	for (unsigned i = 0; i < d->n; i++)
		for (unsigned j = 0; j < d->n; j++) {
			if ((i < d->split) == (j < d->split))
				continue;
			const struct gossip_member *m = gossip_member_get(simg_core(s, i),
									  simg_id(s, j));
			if (!m)
				return false;
			if (d->want == GOSSIP_DEAD ? m->state != GOSSIP_DEAD
						   : m->state == GOSSIP_ALIVE)
				return false;
		}
	return true;
}

static void sc_partition(void)
{
	const unsigned n = 16, split = 8;
	struct simg_opts o;
	struct track t;
	struct recs_want w = { .n = n, .key = "health/web" };
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	for (unsigned i = 0; i < n; i++) {
		w.version[i] = 1;
		simg_put(s, i, w.key, 1, "ok", 2);
	}
	CHECK(simg_run_until_pred(s, recs_converged, &w, 10, 10000), "records not spread");

	uint64_t t0 = simg_now(s);
	for (unsigned i = split; i < n; i++)
		simg_set_group(s, i, 1);
	/* both sides keep writing while apart */
	for (unsigned i = 0; i < n; i += 3) {
		w.version[i] = 2;
		simg_put(s, i, w.key, 2, "partitioned", 11);
	}
	struct sides d = { n, split, GOSSIP_SUSPECT };
	uint64_t sus = simg_run_until_pred(s, sides_apart, &d, 10, 30000);
	CHECK(sus, "sides did not suspect each other within 30 s");
	d.want = GOSSIP_DEAD;
	uint64_t dead = simg_run_until_pred(s, sides_apart, &d, 10, 60000);
	CHECK(dead, "sides did not declare each other dead within 60 s");
	printf("partition: other side suspect after %llu ms, dead after %llu ms\n",
	       (unsigned long long)(sus - t0), (unsigned long long)(dead - t0));
	simg_run_until(s, simg_now(s) + 20000);

	uint64_t t1 = simg_now(s);
	for (unsigned i = 0; i < n; i++)
		simg_set_group(s, i, 0);
	uint64_t healed = simg_run_until_pred(s, all_conv, &w, 10, 120000);
	CHECK(healed, "no convergence after heal within 120 s");
	printf("partition heal: all alive and records converged %llu ms after the heal\n",
	       (unsigned long long)(healed - t1));
	simg_free(s);
}

/* A node away for a simulated day: crashed and restarted (@restart), or cut off by the
 * network while its core keeps running (it buries everyone, everyone buries it). */
static void sc_away_day(bool restart)
{
	const unsigned n = 8;
	struct simg_opts o;
	struct track t;
	struct recs_want w = { .n = n + 1, .key = "health/web" };
	memset(&o, 0, sizeof(o));
	gossip_config_default(&o.cfg);
	/* a day of virtual time: coarse timers keep it cheap */
	o.cfg.probe_interval_ms = 5000;
	o.cfg.probe_timeout_ms = 1000;
	o.cfg.gossip_interval_ms = 500;
	o.max_nodes = n + 1;
	o.sync_interval_ms = 60000;
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 100);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 100, 60000), "no initial convergence");
	for (unsigned i = 0; i < n; i++) {
		w.version[i] = 1;
		simg_put(s, i, w.key, 1, "v1", 2);
	}
	CHECK(simg_run_until_pred(s, recs_converged, &w, 100, 60000), "records not spread");
	const unsigned away = n - 1;
	if (restart)
		simg_crash(s, away);
	else
		simg_set_group(s, away, 1);
	uint64_t t0 = simg_now(s), day = 24ull * 3600 * 1000;
	/* a day passes: every hour the others publish a new version; a newcomer joins */
	for (unsigned h = 1; h <= 24; h++) {
		simg_run_until(s, t0 + h * day / 24);
		for (unsigned i = 0; i < away; i++) {
			w.version[i] = 1 + h;
			char v[16];
			int l = snprintf(v, sizeof v, "v%u", 1 + h);
			simg_put(s, i, w.key, 1 + h, v, (size_t)l);
		}
		if (h == 12) {
			int k = simg_spawn(s, 0);
			CHECK(k == (int)n, "spawn %d", k);
			w.version[n] = 7;
			simg_run_until(s, simg_now(s) + 1000);
			simg_put(s, n, w.key, 7, "new", 3);
		}
	}
	if (!restart) {
		/* the cut-off node saw all the others die */
		struct gossip *lone = simg_core(s, away);
		CHECK(gossip_member_count(lone, GOSSIP_ALIVE) == 1, "cut-off node sees %zu alive",
		      gossip_member_count(lone, GOSSIP_ALIVE));
	}
	for (unsigned i = 0; i < n + 1; i++) {
		if (i == away)
			continue;
		const struct gossip_member *m =
			gossip_member_get(simg_core(s, i), simg_id(s, away));
		CHECK(m && m->state == GOSSIP_DEAD, "n%u sees the absent node as %s", i,
		      m ? gossip_state_name(m->state) : "unknown");
	}
	uint64_t t1 = simg_now(s);
	if (restart)
		CHECK(simg_restart(s, away) == 0, "restart");
	else
		simg_set_group(s, away, 0);
	/* anti-entropy runs every 60 s here (LAN default 30 s): allow a few rounds */
	uint64_t back = simg_run_until_pred(s, all_conv, &w, 100, 300000);
	CHECK(back, "the node back after a day did not catch up within 300 s");
	const struct gossip_member *self = gossip_self(simg_core(s, away));
	printf("%s after a day: alive everywhere and all %u records caught up %llu ms later "
	       "(its incarnation %llu)\n", restart ? "restart" : "network back", n + 1,
	       (unsigned long long)(back - t1), (unsigned long long)self->incarnation);
	simg_free(s);
}

static void sc_loss(void)
{
	const unsigned n = 24;
	struct simg_opts o;
	struct track t;
	struct recs_want w = { .n = n, .key = "health/web" };
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	simg_set_loss(s, 0.20);
	t.check_false_dead = true;
	uint64_t t0 = simg_now(s);
	for (unsigned k = 0; k < 24; k++) {
		simg_run_until(s, t0 + k * 5000);
		unsigned i = simg_rand(s) % n;
		w.version[i]++;
		simg_put(s, i, w.key, w.version[i], "x", 1);
	}
	simg_run_until(s, t0 + 120000);
	uint64_t recs = simg_run_until_pred(s, recs_converged, &w, 10, 30000);
	CHECK(recs, "records did not reach every node under 20%% loss");
	CHECK(t.false_dead == 0, "%u live nodes declared dead under 20%% loss", t.false_dead);
	struct gossip_stats st, sum = { 0 };
	for (unsigned i = 0; i < n; i++) {
		gossip_stats(simg_core(s, i), &st);
		sum.suspicions += st.suspicions;
		sum.refutes += st.refutes;
		sum.probes_failed += st.probes_failed;
		sum.pings_sent += st.pings_sent;
	}
	printf("20%% loss, %u nodes, 120 s: %u false deaths, %llu suspicions, %llu refutes, "
	       "%llu/%llu probes failed\n", n, t.false_dead, (unsigned long long)sum.suspicions,
	       (unsigned long long)sum.refutes, (unsigned long long)sum.probes_failed,
	       (unsigned long long)sum.pings_sent);
	simg_free(s);
}

static void sc_slow(void)
{
	const unsigned n = 10, slow = 3;
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	simg_set_slow(s, slow, 300);
	t.check_false_dead = true;
	uint64_t t0 = simg_now(s);
	unsigned lhm_max = 0;
	while (simg_now(s) < t0 + 60000) {
		simg_run_until(s, simg_now(s) + 100);
		struct gossip_stats st;
		gossip_stats(simg_core(s, slow), &st);
		if (st.awareness > lhm_max)
			lhm_max = st.awareness;
	}
	CHECK(t.false_dead == 0, "%u declarations of a live node as dead", t.false_dead);
	struct gossip_stats st;
	gossip_stats(simg_core(s, slow), &st);
	uint64_t others = 0;
	for (unsigned i = 0; i < n; i++) {
		struct gossip_stats x;
		if (i == slow)
			continue;
		gossip_stats(simg_core(s, i), &x);
		others += x.suspicions;
	}
	CHECK(lhm_max > 0, "the slow node's local health multiplier never rose");
	printf("slow node (300 ms): 0 deaths in 60 s; its LHM peaked at %u; it refuted %llu "
	       "times; it raised %llu suspicions, the others %llu\n", lhm_max,
	       (unsigned long long)st.refutes, (unsigned long long)st.suspicions,
	       (unsigned long long)others);
	/* once healthy again, everyone settles */
	simg_set_slow(s, slow, 0);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no convergence after");
	simg_free(s);
}

/* A broken link between two nodes (both fine otherwise), plus a slow link elsewhere: the
 * indirect probes through the others keep both alive; nobody is declared dead. */
static void sc_link(void)
{
	const unsigned n = 12;
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	t.check_false_dead = true;
	simg_set_link(s, 0, 1, 1.0, 0);
	simg_set_link(s, 1, 0, 1.0, 0);
	simg_set_link(s, 2, 3, 0.5, 30);	/* lossy and slow, one way */
	uint64_t t0 = simg_now(s);
	simg_run_until(s, t0 + 60000);
	CHECK(t.false_dead == 0, "%u nodes declared dead behind a broken link", t.false_dead);
	CHECK(simg_converged(s, NULL), "not everyone alive at the end");
	struct gossip_stats st;
	gossip_stats(simg_core(s, 0), &st);
	CHECK(st.pingreqs_sent > 0, "node 0 never used ping-req (%llu)",
	      (unsigned long long)st.pingreqs_sent);
	printf("broken link 0<->1 for 60 s: no deaths; node 0 sent %llu ping-req, %llu probes "
	       "failed\n", (unsigned long long)st.pingreqs_sent,
	       (unsigned long long)st.probes_failed);
	simg_free(s);
}

struct dead_wait {
	unsigned n, who;
};

static bool seen_dead(struct simg *s, void *ud)
{
	struct dead_wait *d = ud;
	for (unsigned i = 0; i < d->n; i++) {
		if (!simg_up(s, i))
			continue;
		const struct gossip_member *m =
			gossip_member_get(simg_core(s, i), simg_id(s, d->who));
		if (!m || m->state != GOSSIP_DEAD)
			return false;
	}
	return true;
}

static void sc_detect(void)
{
	const unsigned n = 32;
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	uint64_t worst = 0;
	for (unsigned round = 0; round < 3; round++) {
		unsigned who = 1 + simg_rand(s) % (n - 1);
		while (!simg_up(s, who))
			who = 1 + simg_rand(s) % (n - 1);
		uint64_t t0 = simg_now(s);
		simg_crash(s, who);
		struct dead_wait d = { n, who };
		uint64_t at = simg_run_until_pred(s, seen_dead, &d, 10, 30000);
		CHECK(at, "crash of n%u not detected by all within 30 s", who);
		printf("failure detection, %u nodes: n%u dead at every node after %llu ms\n", n,
		       who, (unsigned long long)(at - t0));
		if (at - t0 > worst)
			worst = at - t0;
	}
	CHECK(worst < 10000, "detection took %llu ms", (unsigned long long)worst);
	simg_free(s);
}

/*
 * The shared probe schedule (swim.c, "Probe schedule"), with the agent's timings and every
 * node on its own clock: once the probe clocks have met, a crashed member is first probed
 * within (1 + 2/n) probe intervals, so every node marks it dead within that plus the minimum
 * suspicion, crash after crash. With each node probing on its own (SWIM's shuffled lists)
 * one crash in eight at 16 nodes takes longer than this bound.
 */
static void sc_detect_schedule(void)
{
	const unsigned n = 16, crashes = 20;
	struct simg_opts o;
	struct track t;
	agent_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 1000);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 60000), "no initial convergence");
	simg_run_until(s, simg_now(s) + 20000);	/* clocks meet within log2 n rounds */
	uint64_t T = o.cfg.probe_interval_ms;
	uint64_t bound = T * (n + 2) / n + o.cfg.suspicion_mult * T + T / 4, worst = 0;
	for (unsigned k = 0; k < crashes; k++) {
		unsigned who = simg_rand(s) % n;
		uint64_t t0 = simg_now(s);
		simg_crash(s, who);
		struct dead_wait d = { n, who };
		uint64_t at = simg_run_until_pred(s, seen_dead, &d, 5, 30000);
		CHECK(at, "crash of n%u not detected by all within 30 s", who);
		if (!at)
			break;
		CHECK(at - t0 <= bound, "crash %u: n%u dead everywhere after %llu ms, over %llu", k,
		      who, (unsigned long long)(at - t0), (unsigned long long)bound);
		if (at - t0 > worst)
			worst = at - t0;
		simg_run_until(s, simg_now(s) + 1000);
		CHECK(simg_restart(s, who) == 0, "restart");
		CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 30000), "no reconvergence");
		simg_run_until(s, simg_now(s) + 1000 + simg_rand(s) % 2000);
	}
	printf("probe schedule, %u nodes, %u crashes: dead everywhere within %llu ms at worst "
	       "(bound %llu)\n", n, crashes, (unsigned long long)worst, (unsigned long long)bound);
	simg_free(s);
}

struct churn_chk {
	unsigned bad;
};

static void sc_churn(void)
{
	const unsigned n0 = 20, cap = 64;
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, cap);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n0, 50);
	CHECK(simg_run_until_pred(s, simg_converged, NULL, 10, 20000), "no initial convergence");
	bool left[64] = { 0 };
	unsigned joins = 0, leaves = 0, crashes = 0, restarts = 0;
	uint64_t t0 = simg_now(s);
	while (simg_now(s) < t0 + 60000) {
		simg_run_until(s, simg_now(s) + 500 + simg_rand(s) % 1000);
		unsigned up = 0;
		for (unsigned i = 0; i < simg_count(s); i++)
			up += simg_up(s, i) && !left[i];
		unsigned action = simg_rand(s) % 4;
		unsigned i = simg_rand(s) % simg_count(s);
		if (action == 0 && simg_count(s) < cap) {
			unsigned seed = simg_rand(s) % simg_count(s);
			while (!simg_up(s, seed) || left[seed])
				seed = simg_rand(s) % simg_count(s);
			simg_spawn(s, (int)seed);
			joins++;
		} else if (action == 1 && up > 10 && simg_up(s, i) && !left[i]) {
			simg_leave(s, i);
			left[i] = true;
			leaves++;
		} else if (action == 2 && up > 10 && simg_up(s, i) && !left[i]) {
			simg_crash(s, i);
			crashes++;
		} else if (action == 3) {
			/* restart one of the crashed nodes, if any */
			unsigned c = simg_count(s), start = simg_rand(s) % c;
			for (unsigned k = 0; k < c; k++) {
				unsigned j = (start + k) % c;
				if (!simg_up(s, j) && !left[j]) {
					CHECK(simg_restart(s, j) == 0, "restart of n%u", j);
					restarts++;
					break;
				}
			}
		}
		/* nodes that left are stopped once their leave had time to spread */
		for (unsigned k = 0; k < simg_count(s); k++)
			if (left[k] && simg_up(s, k) &&
			    simg_node_now(s, k) - gossip_self(simg_core(s, k))->state_change > 2000)
				simg_stop(s, k);
	}
	for (unsigned k = 0; k < simg_count(s); k++)
		if (left[k] && simg_up(s, k))
			simg_stop(s, k);
	uint64_t t1 = simg_now(s);
	uint64_t at = simg_run_until_pred(s, simg_converged, NULL, 10, 60000);
	CHECK(at, "no convergence within 60 s after churn");
	/* the dead and the departed are seen as such by everyone who knows them */
	unsigned bad = 0;
	for (unsigned i = 0; i < simg_count(s); i++) {
		if (!simg_up(s, i))
			continue;
		for (unsigned j = 0; j < simg_count(s); j++) {
			if (simg_up(s, j))
				continue;
			const struct gossip_member *m = gossip_member_get(simg_core(s, i),
									  simg_id(s, j));
			if (!m)
				continue;
			int want = left[j] ? GOSSIP_LEFT : GOSSIP_DEAD;
			if ((int)m->state != want) {
				if (bad++ < 5)
					printf("  n%u sees n%u as %s, expected %s\n", i, j,
					       gossip_state_name(m->state),
					       gossip_state_name(want));
			}
		}
	}
	/* allow the reaper's slack: give stragglers the rest of a suspicion timeout */
	if (bad) {
		simg_run_until(s, simg_now(s) + 20000);
		bad = 0;
		for (unsigned i = 0; i < simg_count(s); i++)
			for (unsigned j = 0; simg_up(s, i) && j < simg_count(s); j++) {
				if (simg_up(s, j))
					continue;
				const struct gossip_member *m =
					gossip_member_get(simg_core(s, i), simg_id(s, j));
				if (m && (int)m->state != (left[j] ? GOSSIP_LEFT : GOSSIP_DEAD))
					bad++;
			}
	}
	CHECK(bad == 0, "%u stale views of departed nodes", bad);
	printf("churn: %u joins, %u leaves, %u crashes, %u restarts in 60 s; consistent %llu ms "
	       "after it stopped\n", joins, leaves, crashes, restarts,
	       (unsigned long long)(at - t1));
	simg_free(s);
}

static void sc_records(unsigned n)
{
	struct simg_opts o;
	struct track t;
	fast_cfg(&o, n);
	struct simg *s = setup(&o, &t);
	spawn_all(s, n, 100);
	uint64_t at = simg_run_until_pred(s, simg_converged, NULL, 10, 20000);
	CHECK(at, "no convergence");
	printf("records N=%u: converged %llu ms after start\n", n, (unsigned long long)at);
	uint64_t worst = 0;
	for (unsigned k = 0; k < 5; k++) {
		simg_run_until(s, simg_now(s) + 1000);
		unsigned owner = simg_rand(s) % n;
		uint64_t p50, p100 = measure_record(s, &t, owner, "vote/web/7", 1 + k, 10000, &p50);
		printf("record %u from n%u: p50 %llu ms, p100 %llu ms\n", k, owner,
		       (unsigned long long)p50, (unsigned long long)p100);
		if (p100 > worst)
			worst = p100;
	}
	CHECK(worst < 1000, "record dissemination to %u nodes took %llu ms", n,
	      (unsigned long long)worst);
	simg_free(s);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: %s converge N|records N|partition|rejoin_day|isolated_day|"
				"loss|slow|link|detect|detect_schedule|churn|mass_join N\n",
			argv[0]);
		return 2;
	}
	unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
	if (n > MAXN)
		n = MAXN;
	const char *sc = argv[1];
	if (!strcmp(sc, "converge"))
		sc_converge(n ? n : 10);
	else if (!strcmp(sc, "partition"))
		sc_partition();
	else if (!strcmp(sc, "rejoin_day"))
		sc_away_day(true);
	else if (!strcmp(sc, "isolated_day"))
		sc_away_day(false);
	else if (!strcmp(sc, "loss"))
		sc_loss();
	else if (!strcmp(sc, "slow"))
		sc_slow();
	else if (!strcmp(sc, "link"))
		sc_link();
	else if (!strcmp(sc, "detect"))
		sc_detect();
	else if (!strcmp(sc, "detect_schedule"))
		sc_detect_schedule();
	else if (!strcmp(sc, "churn"))
		sc_churn();
	else if (!strcmp(sc, "records"))
		sc_records(n ? n : 128);
	else if (!strcmp(sc, "mass_join"))
		sc_mass_join(n ? n : 400);
	else {
		fprintf(stderr, "unknown scenario '%s'\n", sc);
		return 2;
	}
	if (failures)
		printf("%d check(s) failed (replay with SEED=...)\n", failures);
	return failures ? 1 : 0;
}
