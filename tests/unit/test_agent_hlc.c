/*
 * tests/unit/test_agent_hlc.c: the hybrid logical clock (agent/base/hlc.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/base/hlc.h"

#define T0 1764000000000ULL /* a wall clock in ms, 2025 */

static void test_now_follows_wall(void **state)
{
	struct hlc h;
	uint64_t t1, t2, t3;

	hlc_init(&h, 0);
	assert_int_equal(h.max_ahead_ms, HLC_DEFAULT_MAX_AHEAD_MS);
	assert_int_equal(hlc_now(&h, T0, &t1), 0);
	assert_int_equal(hlc_phys(t1), T0);
	assert_int_equal(hlc_logical(t1), 0);
	/* Same millisecond: the logical part counts. */
	assert_int_equal(hlc_now(&h, T0, &t2), 0);
	assert_int_equal(t2, hlc_make(T0, 1));
	/* Wall clock moves on: back to logical 0. */
	assert_int_equal(hlc_now(&h, T0 + 5, &t3), 0);
	assert_int_equal(t3, hlc_make(T0 + 5, 0));
	assert_int_equal(hlc_last(&h), t3);
}

static void test_wall_backwards_stays_monotonic(void **state)
{
	struct hlc h;
	uint64_t prev, t;
	int i;

	hlc_init(&h, 0);
	assert_int_equal(hlc_now(&h, T0, &prev), 0);
	/* NTP steps the clock back ten seconds: timestamps keep growing, physical part stays. */
	for (i = 0; i < 1000; i++) {
		assert_int_equal(hlc_now(&h, T0 - 10000 + (uint64_t)i, &t), 0);
		assert_true(t > prev);
		assert_int_equal(hlc_phys(t), T0);
		prev = t;
	}
	assert_int_equal(hlc_logical(prev), 1000);
}

static void test_logical_overflow_carries(void **state)
{
	struct hlc h;
	uint64_t t;

	hlc_init(&h, 0);
	hlc_restore(&h, hlc_make(T0, 0xffff));
	assert_int_equal(hlc_now(&h, T0, &t), 0);
	assert_int_equal(t, hlc_make(T0 + 1, 0));
	assert_int_equal(hlc_now(&h, T0, &t), 0);
	assert_int_equal(t, hlc_make(T0 + 1, 1));
}

static void test_update_orders_after_remote(void **state)
{
	struct hlc a, b;
	uint64_t ta, tb, tb2;

	hlc_init(&a, 0);
	hlc_init(&b, 0);
	/* a's clock is 20 minutes ahead of b's. */
	assert_int_equal(hlc_now(&a, T0 + 20 * 60000, &ta), 0);
	assert_int_equal(hlc_update(&b, T0, ta, &tb), 0);
	assert_true(tb > ta);
	assert_int_equal(hlc_phys(tb), hlc_phys(ta));
	/* Everything b does next is still after a's event although b's wall clock is behind. */
	assert_int_equal(hlc_now(&b, T0 + 1, &tb2), 0);
	assert_true(tb2 > ta);
	/* A remote timestamp in the past does not move us back. */
	assert_int_equal(hlc_update(&b, T0 + 2, hlc_make(T0 - 50000, 7), &tb), 0);
	assert_true(tb > tb2);
	/* NULL ret_t allowed. */
	assert_int_equal(hlc_update(&b, T0 + 2, 1, NULL), 0);
}

static void test_update_equal_physical_takes_max_logical(void **state)
{
	struct hlc h;
	uint64_t t;

	hlc_init(&h, 0);
	hlc_restore(&h, hlc_make(T0, 3));
	assert_int_equal(hlc_update(&h, T0 - 1, hlc_make(T0, 9), &t), 0);
	assert_int_equal(t, hlc_make(T0, 10));
	assert_int_equal(hlc_update(&h, T0 - 1, hlc_make(T0, 2), &t), 0);
	assert_int_equal(t, hlc_make(T0, 11));
}

static void test_drift_refused(void **state)
{
	struct hlc h;
	uint64_t t = 12345, before;

	hlc_init(&h, 60000); /* one minute */
	assert_int_equal(hlc_now(&h, T0, &before), 0);
	before = hlc_last(&h);
	/* 61 s ahead: refused, clock and output untouched. */
	assert_int_equal(hlc_update(&h, T0, hlc_make(T0 + 61000, 0), &t), -ERANGE);
	assert_int_equal(t, 12345);
	assert_int_equal(hlc_last(&h), before);
	/* Exactly at the bound: accepted. */
	assert_int_equal(hlc_update(&h, T0, hlc_make(T0 + 60000, 0), &t), 0);
	assert_int_equal(t, hlc_make(T0 + 60000, 1));
	/* The default bound is one hour. */
	hlc_init(&h, 0);
	assert_int_equal(hlc_update(&h, T0, hlc_make(T0 + 3600000 + 1, 0), NULL), -ERANGE);
	assert_int_equal(hlc_update(&h, T0, hlc_make(T0 + 3600000, 0), NULL), 0);
	/* A garbage timestamp (all ones) is far ahead, refused rather than wrapping. */
	assert_int_equal(hlc_update(&h, T0, UINT64_MAX, NULL), -ERANGE);
}

static void test_bad_wall_and_overflow(void **state)
{
	struct hlc h;
	uint64_t t = 99;

	hlc_init(&h, UINT64_MAX);
	assert_int_equal(hlc_now(&h, HLC_PHYS_MAX + 1, &t), -EINVAL);
	assert_int_equal(hlc_update(&h, HLC_PHYS_MAX + 1, 5, &t), -EINVAL);
	assert_int_equal(t, 99);
	assert_int_equal(hlc_now(&h, HLC_PHYS_MAX, &t), 0);
	hlc_restore(&h, UINT64_MAX);
	assert_int_equal(hlc_now(&h, T0, &t), -EOVERFLOW);
	assert_int_equal(hlc_update(&h, T0, 5, &t), -EOVERFLOW);
	assert_int_equal(hlc_last(&h), UINT64_MAX);
	/* restore never moves back */
	hlc_restore(&h, 3);
	assert_int_equal(hlc_last(&h), UINT64_MAX);
}

/* xorshift64*: deterministic randomness for the skew test. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/*
 * Five nodes with clocks skewed by up to +-40 minutes (and one whose clock runs backwards for
 * a while) exchange messages at random. Causality must survive: a receive is after its send,
 * every node's stamps strictly increase, and a causal chain through all nodes keeps
 * increasing. And the clock stays close to physical time: never ahead of the fastest wall
 * clock by more than the logical carry allows.
 */
static void test_skewed_cluster_keeps_causality(void **state)
{
	enum { N = 5, STEPS = 20000 };
	const int64_t skew[N] = {0, -40 * 60000, 40 * 60000, 1500, -7};
	struct hlc h[N];
	uint64_t last[N] = {0}, seed = 0x5eed, now = T0, chain = 0;
	uint64_t inflight_t[64];
	int inflight_to[64], ninflight = 0;
	int i, step, refused = 0;

	/* Skews up to 80 minutes apart: within a 2 h drift bound, so nothing is refused. */
	for (i = 0; i < N; i++)
		hlc_init(&h[i], 2 * 3600000ULL);
	for (step = 0; step < STEPS; step++) {
		int n = (int)(rnd(&seed) % N);
		uint64_t wall, t;

		now += rnd(&seed) % 3; /* several events per ms: logical counters get exercised */
		wall = (uint64_t)((int64_t)now + skew[n]);
		if (n == 4 && step > STEPS / 2 && step < STEPS / 2 + 2000)
			wall -= (uint64_t)(step - STEPS / 2) * 10; /* clock stepping backwards */
		if (ninflight && rnd(&seed) % 2) {
			/* deliver a random in-flight message to its destination */
			int k = (int)(rnd(&seed) % (uint64_t)ninflight);
			int to = inflight_to[k];
			uint64_t sent = inflight_t[k];

			wall = (uint64_t)((int64_t)now + skew[to]);
			assert_int_equal(hlc_update(&h[to], wall, sent, &t), 0);
			if (t <= sent || t <= last[to])
				fail_msg("receive %llu not after send %llu / last %llu",
					 (unsigned long long)t, (unsigned long long)sent,
					 (unsigned long long)last[to]);
			last[to] = t;
			inflight_t[k] = inflight_t[--ninflight];
			inflight_to[k] = inflight_to[ninflight];
			continue;
		}
		assert_int_equal(hlc_now(&h[n], wall, &t), 0);
		if (t <= last[n])
			fail_msg("node %d: %llu not after %llu", n, (unsigned long long)t,
				 (unsigned long long)last[n]);
		last[n] = t;
		if (ninflight < 64) {
			inflight_t[ninflight] = t;
			unsigned to = (unsigned)(n + 1 + rnd(&seed) % (N - 1)) % N;

			inflight_to[ninflight++] = (int)to;
		}
	}
	/* A causal chain 0 -> 1 -> 2 -> 3 -> 4 -> 0 with the slowest clocks receiving. */
	for (i = 0; i < 2 * N; i++) {
		int n = i % N;
		uint64_t wall = (uint64_t)((int64_t)now + skew[n]), t;

		if (hlc_update(&h[n], wall, chain, &t) == -ERANGE) {
			refused++;
			continue;
		}
		assert_true(t > chain);
		chain = t;
	}
	assert_int_equal(refused, 0);
	/* Physical part never ahead of the fastest wall clock plus the logical carries. */
	for (i = 0; i < N; i++) {
		uint64_t fastest = now + 40 * 60000;
		if (hlc_phys(hlc_last(&h[i])) > fastest + STEPS / 65536 + 1)
			fail_msg("node %d clock %llu ran ahead of fastest wall %llu", i,
				 (unsigned long long)hlc_phys(hlc_last(&h[i])),
				 (unsigned long long)fastest);
	}
}

/* A node whose clock is 2 h ahead cannot drag a 1 h-bounded peer along. */
static void test_skew_beyond_bound_counted(void **state)
{
	struct hlc fast, slow;
	uint64_t t, before;
	unsigned refused = 0;
	int i;

	hlc_init(&fast, 0);
	hlc_init(&slow, 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(hlc_now(&fast, T0 + 2 * 3600000 + (uint64_t)i, &t), 0);
		before = hlc_last(&slow);
		if (hlc_update(&slow, T0 + (uint64_t)i, t, NULL) == -ERANGE)
			refused++;
		assert_int_equal(hlc_last(&slow), before);
	}
	assert_int_equal(refused, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_now_follows_wall),
		cmocka_unit_test(test_wall_backwards_stays_monotonic),
		cmocka_unit_test(test_logical_overflow_carries),
		cmocka_unit_test(test_update_orders_after_remote),
		cmocka_unit_test(test_update_equal_physical_takes_max_logical),
		cmocka_unit_test(test_drift_refused),
		cmocka_unit_test(test_bad_wall_and_overflow),
		cmocka_unit_test(test_skewed_cluster_keeps_causality),
		cmocka_unit_test(test_skew_beyond_bound_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
