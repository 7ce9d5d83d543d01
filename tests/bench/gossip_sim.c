/*
 * tests/bench/gossip_sim.c: gossip figures on the simulator (not a test; prints a table).
 *
 * usage: bench_gossip_sim [--join-max N] [--detect-trials K] [N...]
 *        sizes default to 128 1000 2000 5000 10000
 *        SEED=n replays; build without sanitizers for meaningful run times:
 *   cmake -S . -B build-sim -DCMAKE_BUILD_TYPE=Release -DSHOAL_TESTS=ON
 *   cmake --build build-sim --target bench_gossip_sim && build-sim/tests/bench/bench_gossip_sim
 *
 * Every node is a real gossip core (gossip/swim.c) on the simulator's virtual clock
 * (tests/sim/sim_gossip_harness.h: 1 ms + 0..2 ms one-way delay, no loss), with the agent's
 * own timings: gossip_config_default() (printed in the header) and anti-entropy every 30 s
 * (the transport's default, jittered). Every node holds the full member table, so memory
 * grows as N^2: the header prints the heap cost of one member entry.
 *
 * For each cluster size N:
 *   start      how the cluster was formed. "join": N nodes started over 1 s, each joining one
 *              of the first 3 with one push-pull, as agents do (N <= --join-max, default
 *              2000). "restore": all N started at once, each with every other restored alive
 *              from a persisted table (gossip_member_restore, what a restarted agent does),
 *              then 5 s of settling: joining 5,000+ nodes one by one costs too much time here.
 *   converge   ("join" only) virtual ms from the last start until 99% of the (node, member)
 *              pairs are known alive / until every node sees all N alive; "-" for "restore"
 *   drain      virtual s from the last start until no node has a member update left to
 *              piggyback: a join of N nodes queues N updates at every node, each sent
 *              retransmit_mult * log2 N times, which takes longer than converging. The
 *              measurements below start after it (and at least 5 s of settling), so that
 *              KB/s/node is the cost at rest and records do not compete with the join
 *   record     a 600-byte record put on a random node: virtual ms until p50 / p90 / p100 of
 *              the other nodes hold it; median of 5 records (2 s apart)
 *   detect     a random node crashes (no leave): virtual ms until p50 / p100 of the others
 *              mark it dead; median over --detect-trials crashes (default 3), and the worst
 *              p100 of them. After each, the node restarts and the cluster reconverges, so
 *              N stays the same and small clusters can be measured over many crashes.
 *   KB/s/node  sealed bytes sent per node per second at rest (10 s, after the records)
 *   RSS MB     the process's peak RSS so far; wall s: wall-clock seconds for this size
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tests/sim/sim_gossip_harness.h"

#define RECORD_TRIALS 5
#define SYNC_MS	      30000	/* the transport's default anti-entropy period */

/* What the hooks watch: the arrival of one record version, or the death of one node. */
struct watch {
	uint64_t t0;
	uint64_t *at;		/* per observer: virtual ms after t0, + 1 (0 = not yet) */
	unsigned seen;		/* observers that have it */
	unsigned target;	/* the record's owner / the crashed node */
	uint64_t version;	/* record version watched; 0 = watching a death */
	bool on;
};

static struct watch g_w;

static void on_rec(void *ud, struct simg *s, unsigned obs, const struct gossip_record *r)
{
	if (g_w.on && g_w.version && r->version == g_w.version && !g_w.at[obs] &&
	    simg_index(s, r->owner) == (int)g_w.target) {
		g_w.at[obs] = simg_now(s) - g_w.t0 + 1;
		g_w.seen++;
	}
}

static void on_mem(void *ud, struct simg *s, unsigned obs, const struct gossip_member *m)
{
	if (g_w.on && !g_w.version && m->state == GOSSIP_DEAD && !g_w.at[obs] &&
	    simg_index(s, m->id) == (int)g_w.target) {
		g_w.at[obs] = simg_now(s) - g_w.t0 + 1;
		g_w.seen++;
	}
}

static unsigned g_up;	/* nodes up */

static bool all_seen(struct simg *s, void *ud)
{
	return g_w.seen >= g_up - 1;	/* every up node but the target (or the owner) */
}

/* No node has a member update queued: the rumours of the start have run out. */
static bool queues_empty(struct simg *s, void *ud)
{
	struct gossip_stats st;
	for (unsigned i = 0; i < simg_count(s); i++) {
		gossip_stats(simg_core(s, i), &st);
		if (st.pending_member_updates)
			return false;
	}
	return true;
}

/* 99% of the (node, member) pairs are (alive, alive): the bulk of a join, without its tail. */
static bool mostly_converged(struct simg *s, void *ud)
{
	uint64_t n = simg_count(s), alive = 0;
	for (unsigned i = 0; i < n; i++)
		alive += gossip_member_count(simg_core(s, i), GOSSIP_ALIVE);
	return alive * 100 >= n * n * 99;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Percentile @pct (0..100) of the observers' times; UINT64_MAX if some never saw it. */
static uint64_t watch_pct(struct simg *s, unsigned pct)
{
	unsigned n = simg_count(s), m = 0;
	uint64_t *v = calloc(n, sizeof(*v));
	if (!v)
		abort();
	for (unsigned i = 0; i < n; i++) {
		if (i == g_w.target || !simg_up(s, i))
			continue;
		v[m++] = g_w.at[i] ? g_w.at[i] - 1 : UINT64_MAX;
	}
	qsort(v, m, sizeof(*v), cmp_u64);
	uint64_t r = m ? v[pct >= 100 ? m - 1 : (size_t)m * pct / 100] : 0;
	free(v);
	return r;
}

static uint64_t median(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void fmt_ms(char *buf, size_t cap, uint64_t v)
{
	if (v == UINT64_MAX)
		snprintf(buf, cap, "never");
	else
		snprintf(buf, cap, "%llu", (unsigned long long)v);
}

static uint64_t g_seed;
static unsigned g_join_max = 2000;
static unsigned g_detect_trials = 3;

static struct simg_opts base_opts(unsigned n)
{
	struct simg_opts o;
	memset(&o, 0, sizeof(o));
	gossip_config_default(&o.cfg);
	o.max_nodes = n;
	o.sync_interval_ms = SYNC_MS;
	o.quiet = true;
	o.seed = g_seed;
	return o;
}

static void run(unsigned n)
{
	double w0 = wall();
	struct simg_opts o = base_opts(n);
	struct simg *s = simg_new(&o);
	g_w.at = calloc(n, sizeof(*g_w.at));
	if (!g_w.at)
		abort();
	g_w.on = false;
	struct simg_hooks h = { .on_record = on_rec, .on_member = on_mem };
	simg_set_hooks(s, &h);

	bool join = n <= g_join_max;
	char conv[24] = "-", drain[24];
	uint64_t last = 0;
	if (join) {
		for (unsigned i = 0; i < n; i++) {
			simg_run_until(s, (uint64_t)i * 1000 / n);
			simg_spawn(s, i ? (int)(simg_rand(s) % (i < 3 ? i : 3)) : -1);
		}
		last = simg_now(s);
		uint64_t c99 = simg_run_until_pred(s, mostly_converged, NULL, 10, 120000);
		uint64_t c = c99 ? simg_run_until_pred(s, simg_converged, NULL, 10, 120000) : 0;
		if (c)
			snprintf(conv, sizeof conv, "%llu/%llu", (unsigned long long)(c99 - last),
				 (unsigned long long)(c - last));
		else
			snprintf(conv, sizeof conv, ">120000");
	} else {
		int r = simg_spawn_converged(s, n);
		if (r < 0) {
			fprintf(stderr, "N=%u: simg_spawn_converged: %s\n", n, strerror(-r));
			exit(1);
		}
		last = simg_now(s);
	}
	simg_run_until(s, simg_now(s) + 5000);
	uint64_t dr = simg_run_until_pred(s, queues_empty, NULL, 100, 120000);
	if (dr)
		snprintf(drain, sizeof drain, "%.1f", (double)(dr - last) / 1000.0);
	else
		snprintf(drain, sizeof drain, ">%.0f", (double)(simg_now(s) - last) / 1000.0);
	g_up = n;
	for (unsigned i = 0; i < n; i++)
		if (gossip_member_count(simg_core(s, i), GOSSIP_ALIVE) != n) {
			printf("N=%u: node %u sees %zu alive, not %u, after settling\n", n, i,
			       gossip_member_count(simg_core(s, i), GOSSIP_ALIVE), n);
			break;
		}

	/* dissemination of a record */
	uint64_t rp[3][RECORD_TRIALS];
	char val[600];
	memset(val, 'r', sizeof val);
	for (int k = 0; k < RECORD_TRIALS; k++) {
		memset(g_w.at, 0, n * sizeof(*g_w.at));
		g_w.seen = 0;
		g_w.target = simg_rand(s) % n;
		g_w.version = 1 + (uint64_t)k;
		g_w.t0 = simg_now(s);
		g_w.on = true;
		simg_put(s, g_w.target, "bench/record", g_w.version, val, sizeof val);
		simg_run_until_pred(s, all_seen, NULL, 5, 60000);
		rp[0][k] = watch_pct(s, 50);
		rp[1][k] = watch_pct(s, 90);
		rp[2][k] = watch_pct(s, 100);
		g_w.on = false;
		simg_run_until(s, simg_now(s) + 2000);
	}

	/* traffic at rest */
	struct simg_traffic t0, t1;
	simg_traffic(s, &t0);
	simg_run_until(s, simg_now(s) + 10000);
	simg_traffic(s, &t1);
	double kbps = (double)(t1.bytes - t0.bytes) / 1024.0 / n / 10.0;

	/* failure detection: crash, wait until all see it dead, restart, reconverge */
	unsigned dt = g_detect_trials;
	uint64_t *dp0 = calloc(dt, sizeof(*dp0)), *dp1 = calloc(dt, sizeof(*dp1));
	if (!dp0 || !dp1)
		abort();
	for (unsigned k = 0; k < dt; k++) {
		memset(g_w.at, 0, n * sizeof(*g_w.at));
		g_w.seen = 0;
		g_w.target = simg_rand(s) % n;
		g_w.version = 0;
		g_w.t0 = simg_now(s);
		g_w.on = true;
		simg_crash(s, g_w.target);
		simg_run_until_pred(s, all_seen, NULL, 10, 120000);
		dp0[k] = watch_pct(s, 50);
		dp1[k] = watch_pct(s, 100);
		g_w.on = false;
		simg_run_until(s, simg_now(s) + 1000);
		if (simg_restart(s, g_w.target) < 0)
			abort();
		simg_run_until_pred(s, simg_converged, NULL, 10, 120000);
		/* a random phase for the next crash */
		simg_run_until(s, simg_now(s) + 1000 + simg_rand(s) % 2000);
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	char a[6][24];
	fmt_ms(a[0], sizeof a[0], median(rp[0], RECORD_TRIALS));
	fmt_ms(a[1], sizeof a[1], median(rp[1], RECORD_TRIALS));
	fmt_ms(a[2], sizeof a[2], median(rp[2], RECORD_TRIALS));
	fmt_ms(a[3], sizeof a[3], median(dp0, dt));
	fmt_ms(a[4], sizeof a[4], median(dp1, dt));
	fmt_ms(a[5], sizeof a[5], dp1[dt - 1]);	/* median() sorted it */
	printf("%6u | %-7s | %11s | %7s | %6s %6s %6s | %6s %6s %6s | %9.2f | %7.0f | %7.1f\n",
	       n, join ? "join" : "restore", conv, drain, a[0], a[1], a[2], a[3], a[4], a[5], kbps,
	       ru.ru_maxrss / 1024.0, wall() - w0);
	free(dp0);
	free(dp1);
	free(g_w.at);
	simg_free(s);
}

/* Heap cost of one member entry: one core, before and after restoring @n members. */
static void entry_cost(unsigned n)
{
	struct simg_opts o = base_opts(n);
	o.sync_interval_ms = 0;
	struct simg *s = simg_new(&o);
	size_t h0 = heap_used();
	simg_spawn(s, -1);
	size_t h1 = heap_used();
	struct gossip *g = simg_core(s, 0);
	for (unsigned i = 1; i < n; i++) {
		struct gossip_member m;
		memset(&m, 0, sizeof(m));
		m.id[0] = 0xee;
		memcpy(m.id + 1, &i, sizeof(i));
		snprintf(m.name, sizeof m.name, "n%u", i);
		m.addr.family = GOSSIP_AF_INET;
		m.addr.port = 7946;
		memcpy(m.addr.ip, &i, sizeof(i));
		m.incarnation = 1;
		m.state = GOSSIP_ALIVE;
		if (gossip_member_restore(g, &m) < 0)
			abort();
	}
	size_t h2 = heap_used();
	printf("memory: one core with 1 member: %.1f KiB of heap; "
	       "each further member: %.1f bytes (measured over %u)\n",
	       (double)(h1 - h0) / 1024.0, (double)(h2 - h1) / (n - 1), n - 1);
	simg_free(s);
}

int main(int argc, char **argv)
{
	static const unsigned def[] = { 128, 1000, 2000, 5000, 10000 };
	unsigned sizes[64];
	size_t ns = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--join-max") == 0 && i + 1 < argc) {
			g_join_max = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--detect-trials") == 0 && i + 1 < argc) {
			g_detect_trials = (unsigned)strtoul(argv[++i], NULL, 10);
			if (!g_detect_trials)
				g_detect_trials = 1;
		} else if (argv[i][0] >= '0' && argv[i][0] <= '9' && ns < 64) {
			unsigned n = (unsigned)strtoul(argv[i], NULL, 10);
			if (n >= 3)
				sizes[ns++] = n;
		} else {
			fprintf(stderr, "usage: %s [--join-max N] [--detect-trials K] [N...]\n", argv[0]);
			return 2;
		}
	}
	if (!ns)
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			sizes[ns++] = def[i];
	const char *env = getenv("SEED");
	g_seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	if (!g_seed)
		g_seed = 1;
	struct gossip_config c;
	gossip_config_default(&c);
	printf("seed=%llu (every size runs with it; SEED=n replays)\n",
	       (unsigned long long)g_seed);
	printf("timings (gossip_config_default, as the agent): probe every %u ms, timeout %u ms, "
	       "%u indirect; gossip every %u ms to %u nodes; push fanout %u; retransmit x%u; "
	       "suspicion %u..%u probe intervals; anti-entropy every %u s\n",
	       c.probe_interval_ms, c.probe_timeout_ms, c.indirect_checks, c.gossip_interval_ms,
	       c.gossip_nodes, c.push_fanout, c.retransmit_mult, c.suspicion_mult,
	       c.suspicion_mult * c.suspicion_max_mult, SYNC_MS / 1000);
	printf("network: 1 ms + 0..2 ms one-way, no loss; times are virtual ms\n");
	printf("start: join = N nodes started over 1 s, each joining 1 of 3 seeds (converge: ms "
	       "until 99%% of (node, member) pairs / all are alive); restore = N nodes started "
	       "pre-converged, each restoring all N alive, then 5 s of settling (used above "
	       "--join-max %u: joining 5,000+ nodes one by one takes too long here); drain: s "
	       "from the last start until no node has a member update queued (what follows is "
	       "measured after it, and after 5 s at least)\n",
	       g_join_max);
	printf("record: median of %d records (p50/p90/p100 over nodes); detect: median of %u "
	       "kill -9 (p50/p100 over nodes), each followed by a restart, and the worst p100\n",
	       RECORD_TRIALS, g_detect_trials);
	entry_cost(10000);
	printf("     N | start   | converge    | drain s | record p50    p90   p100 | "
	       "detect p50   p100    max | KB/s/node | RSS MB  | wall s\n");
	printf("-------+---------+-------------+---------+-------------------------+"
	       "-------------------------+-----------+---------+--------\n");
	for (size_t i = 0; i < ns; i++)
		run(sizes[i]);
	return 0;
}
