/*
 * tests/bench/gossip_sim.c: gossip figures on the simulator (not a test; prints a table).
 *
 * usage: bench_gossip_sim [N...]          default: 128 500 1000
 *        SEED=n replays; build without sanitizers for meaningful run times:
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSHOAL_TESTS=ON
 *   cmake --build build-bench --target bench_gossip_sim && build-bench/tests/bench/bench_gossip_sim
 *
 * For each cluster size N (every node a real core, full membership at every node, so memory
 * grows as N^2: ~350 bytes per member entry, 2000 nodes ~ 1.4 GB):
 *   converge   virtual ms from the last join until every node sees all N alive (joins
 *              spread over 1 s, each to one of 3 seeds, with one push-pull; anti-entropy
 *              every 1 s while converging; 0 = not within 120 s)
 *   record     a 600-byte record put on one node: virtual ms until p50 / p90 / p100 of the
 *              other nodes hold it (3 records, worst of each percentile), piggyback + push only
 *              (anti-entropy switched off for the measurement)
 *   detect     a node crashes: virtual ms until every other node has it dead
 *   KB/s/node  sealed bytes sent per node per second in the steady state
 * Timers: probe 200 ms (timeout 100), gossip 50 ms to 3 nodes, push fanout 3, retransmit 4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tests/sim/sim_gossip_harness.h"

static unsigned g_owner;
static uint64_t g_version, g_t0;
static uint64_t *g_arrival;

static void on_rec(void *ud, struct simg *s, unsigned obs, const struct gossip_record *r)
{
	if (r->version == g_version && simg_index(s, r->owner) == (int)g_owner && !g_arrival[obs])
		g_arrival[obs] = simg_now(s) - g_t0 + 1;
}

static bool all_have(struct simg *s, void *ud)
{
	for (unsigned i = 0; i < simg_count(s); i++)
		if (i != g_owner && simg_up(s, i) && !g_arrival[i])
			return false;
	return true;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static unsigned g_dead;

static bool all_dead(struct simg *s, void *ud)
{
	for (unsigned i = 0; i < simg_count(s); i++) {
		if (!simg_up(s, i))
			continue;
		const struct gossip_member *m =
			gossip_member_get(simg_core(s, i), simg_id(s, g_dead));
		if (!m || m->state != GOSSIP_DEAD)
			return false;
	}
	return true;
}

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t g_seed;

static void run(unsigned n)
{
	struct simg_opts o;
	memset(&o, 0, sizeof(o));
	gossip_config_default(&o.cfg);
	o.cfg.probe_interval_ms = 200;
	o.cfg.probe_timeout_ms = 100;
	o.cfg.gossip_interval_ms = 50;
	o.max_nodes = n;
	o.sync_interval_ms = 1000;
	o.quiet = true;
	o.seed = g_seed;
	double w0 = wall();
	struct simg *s = simg_new(&o);
	g_arrival = calloc(n, sizeof(*g_arrival));
	struct simg_hooks h = { .on_record = on_rec };
	simg_set_hooks(s, &h);
	for (unsigned i = 0; i < n; i++) {
		simg_run_until(s, (uint64_t)i * 1000 / n);
		simg_spawn(s, i ? (int)(simg_rand(s) % (i < 3 ? i : 3)) : -1);
	}
	uint64_t last = simg_now(s);
	uint64_t conv = simg_run_until_pred(s, simg_converged, NULL, 10, 120000);
	conv = conv ? conv - last : 0;
	simg_set_sync_interval(s, 0);
	simg_run_until(s, simg_now(s) + 5000);

	uint64_t p[3] = { 0 };
	char val[600];
	memset(val, 'r', sizeof val);
	for (int k = 0; k < 3; k++) {
		memset(g_arrival, 0, n * sizeof(*g_arrival));
		g_owner = simg_rand(s) % n;
		g_version = 1 + (uint64_t)k;
		g_t0 = simg_now(s);
		simg_put(s, g_owner, "bench/record", g_version, val, sizeof val);
		if (!simg_run_until_pred(s, all_have, NULL, 5, 60000))
			printf("N=%u: record %d did not reach every node in 60 s\n", n, k);
		uint64_t *lat = calloc(n, sizeof(*lat));
		size_t m = 0;
		for (unsigned i = 0; i < n; i++)
			if (i != g_owner && g_arrival[i])
				lat[m++] = g_arrival[i] - 1;
		qsort(lat, m, sizeof(*lat), cmp);
		if (m) {
			uint64_t q[3] = { lat[m / 2], lat[m * 9 / 10], lat[m - 1] };
			for (int j = 0; j < 3; j++)
				if (q[j] > p[j])
					p[j] = q[j];
		}
		free(lat);
		simg_run_until(s, simg_now(s) + 2000);
	}

	struct simg_traffic t0, t1;
	simg_traffic(s, &t0);
	uint64_t ts = simg_now(s);
	simg_run_until(s, ts + 10000);
	simg_traffic(s, &t1);
	double kbps = (t1.bytes - t0.bytes) / 1024.0 / n / 10.0;

	g_dead = 1 + simg_rand(s) % (n - 1);
	uint64_t c0 = simg_now(s);
	simg_crash(s, g_dead);
	uint64_t det = simg_run_until_pred(s, all_dead, NULL, 10, 60000);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%6u | %9llu | %6llu %6llu %6llu | %7llu | %9.2f | %7.0f | %6.1f\n", n,
	       (unsigned long long)conv, (unsigned long long)p[0], (unsigned long long)p[1],
	       (unsigned long long)p[2], (unsigned long long)(det ? det - c0 : 0), kbps,
	       ru.ru_maxrss / 1024.0, wall() - w0);
	free(g_arrival);
	simg_free(s);
}

int main(int argc, char **argv)
{
	static const unsigned def[] = { 128, 500, 1000 };
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *env = getenv("SEED");
	g_seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
	if (!g_seed)
		g_seed = 1;
	printf("seed=%llu (every size runs with it; SEED=n replays)\n",
	       (unsigned long long)g_seed);
	printf("     N | converge  | record p50    p90   p100 | detect  | KB/s/node | RSS MB  "
	       "| wall s\n");
	printf("-------+-----------+----------------------+---------+-----------+---------"
	       "+-------\n");
	if (argc > 1) {
		for (int i = 1; i < argc; i++) {
			unsigned n = (unsigned)atoi(argv[i]);
			if (n >= 2)
				run(n);
		}
	} else {
		for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
			run(def[i]);
	}
	return 0;
}
