/*
 * tests/unit/test_agent_health.c: the pure health policy state machine (rules R1-R6 of
 * agent/node/health.h) and the check address parsers. No clock, no I/O: times are given.
 * The checker on a real loop is tested in test_agent_health_check.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/node/health.h"

static struct store_health_policy pol_exec(uint32_t failures, uint32_t deadline_ms)
{
	struct store_health_policy p = { .exec = "./check.sh", .interval_ms = 100,
					 .timeout_ms = 50, .failures = failures,
					 .deadline_ms = deadline_ms };
	return p;
}

static void assert_state(const struct health_sm *sm, enum health_state want)
{
	if (sm->st.state != want)
		fail_msg("state %s, want %s (detail \"%s\")", health_state_name(sm->st.state),
			 health_state_name(want), sm->st.detail);
}

static void test_names(void **unused)
{
	assert_string_equal(health_state_name(HEALTH_STARTING), "starting");
	assert_string_equal(health_state_name(HEALTH_HEALTHY), "healthy");
	assert_string_equal(health_state_name(HEALTH_UNHEALTHY), "unhealthy");
	assert_string_equal(health_state_name(HEALTH_FAILED), "failed");
	assert_string_equal(health_state_name((enum health_state)42), "unknown");
	assert_string_equal(health_miss_name(HEALTH_MISS_NONE), "none");
	assert_string_equal(health_miss_name(HEALTH_MISS_DEADLINE), "deadline");
	assert_string_equal(health_miss_name(HEALTH_MISS_FAILURES), "failures");
	assert_string_equal(health_miss_name(HEALTH_MISS_RUNTIME), "runtime");
	assert_string_equal(health_miss_name((enum health_miss)42), "unknown");
}

static void test_init(void **unused)
{
	struct store_health_policy p = pol_exec(0, 5000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 1000);
	assert_state(&sm, HEALTH_STARTING);
	assert_int_equal(sm.st.since_ms, 1000);
	assert_int_equal(sm.st.started_ms, 1000);
	assert_int_equal(sm.failures, 1); /* 0 is taken as 1 */
	assert_true(sm.has_check);
	assert_false(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_NONE);
	assert_string_equal(sm.st.detail, "");
	assert_int_equal(health_sm_deadline(&sm), 6000);

	health_sm_init(&sm, NULL, 7);
	assert_false(sm.has_check);
	assert_int_equal(sm.failures, 1);
	assert_int_equal(health_sm_deadline(&sm), UINT64_MAX);
}

/* R2: the first passed check makes a starting instance healthy. */
static void test_first_pass_healthy(void **unused)
{
	struct store_health_policy p = pol_exec(3, 5000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 1000);
	assert_false(health_sm_check(&sm, 1100, false, "exit 1: not yet"));
	assert_state(&sm, HEALTH_STARTING);
	assert_int_equal(sm.st.streak, 1);
	assert_true(health_sm_check(&sm, 1200, true, "exit 0: ok"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_int_equal(sm.st.since_ms, 1200);
	assert_int_equal(sm.st.streak, 0);
	assert_int_equal(sm.st.checks, 2);
	assert_int_equal(sm.st.checks_failed, 1);
	assert_string_equal(sm.st.last_check, "exit 0: ok");
	assert_string_equal(sm.st.detail, "check passed: exit 0: ok");
	assert_false(sm.st.missed);
	assert_int_equal(health_sm_deadline(&sm), UINT64_MAX);
	/* Another pass: no change, since unchanged. */
	assert_false(health_sm_check(&sm, 1300, true, "exit 0: ok"));
	assert_int_equal(sm.st.since_ms, 1200);
	/* Past the deadline, healthy stays healthy: R1 is about starting only. */
	assert_false(health_sm_tick(&sm, 100000));
	assert_state(&sm, HEALTH_HEALTHY);
}

/* R3 in starting: failures are counted but the deadline governs the start. */
static void test_start_failures_wait_for_deadline(void **unused)
{
	struct store_health_policy p = pol_exec(2, 1000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 0);
	for (uint64_t t = 100; t < 1000; t += 100)
		assert_false(health_sm_check(&sm, t, false, "exit 1: down"));
	assert_state(&sm, HEALTH_STARTING);
	assert_int_equal(sm.st.streak, 9);
	assert_false(sm.st.missed);
	/* R1: the deadline, seen by a tick later than it: since is the deadline itself. */
	assert_false(health_sm_tick(&sm, 999));
	assert_true(health_sm_tick(&sm, 1234));
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_int_equal(sm.st.since_ms, 1000);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(sm.st.missed_ms, 1000);
	assert_string_equal(sm.st.detail, "not healthy within 1000 ms (last check: exit 1: down)");
	assert_false(health_sm_tick(&sm, 2000));
	/* Recovery: a pass makes it healthy, the latch stays. */
	assert_true(health_sm_check(&sm, 2100, true, "HTTP 200"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(sm.st.missed_ms, 1000);
}

/* R1 before R2: a first pass arriving after the deadline finds the deadline missed. */
static void test_pass_after_deadline(void **unused)
{
	struct store_health_policy p = pol_exec(3, 500);
	struct health_sm sm;

	health_sm_init(&sm, &p, 100);
	assert_true(health_sm_check(&sm, 700, true, "HTTP 204"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_int_equal(sm.st.since_ms, 700);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(sm.st.missed_ms, 600);
	/* Exactly at the deadline counts as missed (now >= start + deadline). */
	health_sm_init(&sm, &p, 100);
	assert_true(health_sm_tick(&sm, 600));
	assert_state(&sm, HEALTH_UNHEALTHY);
}

/* No deadline: the failure streak also ends a start (else it would stay starting forever). */
static void test_no_deadline_failures_end_start(void **unused)
{
	struct store_health_policy p = pol_exec(3, 0);
	struct health_sm sm;

	health_sm_init(&sm, &p, 0);
	assert_int_equal(health_sm_deadline(&sm), UINT64_MAX);
	assert_false(health_sm_tick(&sm, UINT64_MAX - 1));
	assert_false(health_sm_check(&sm, 10, false, "a"));
	assert_false(health_sm_check(&sm, 20, false, "b"));
	assert_true(health_sm_check(&sm, 30, false, "c"));
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_FAILURES);
	assert_string_equal(sm.st.detail, "3 failed checks in a row: c");
}

/* R3 after healthy: exactly `failures` consecutive failures make it unhealthy; R2 recovers. */
static void test_healthy_then_failures(void **unused)
{
	struct store_health_policy p = pol_exec(3, 10000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_check(&sm, 100, true, "ok"));
	assert_false(health_sm_check(&sm, 200, false, "f1"));
	assert_false(health_sm_check(&sm, 300, false, "f2"));
	assert_state(&sm, HEALTH_HEALTHY);
	/* A pass in between resets the streak. */
	assert_false(health_sm_check(&sm, 400, true, "ok"));
	assert_int_equal(sm.st.streak, 0);
	assert_false(health_sm_check(&sm, 500, false, "f1"));
	assert_false(health_sm_check(&sm, 600, false, "f2"));
	assert_false(sm.st.missed);
	assert_true(health_sm_check(&sm, 700, false, "exit 1: 500"));
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_int_equal(sm.st.since_ms, 700);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_FAILURES);
	assert_int_equal(sm.st.missed_ms, 700);
	assert_string_equal(sm.st.detail, "3 failed checks in a row: exit 1: 500");
	/* More failures: still unhealthy, no change reported, since unchanged. */
	assert_false(health_sm_check(&sm, 800, false, "f"));
	assert_int_equal(sm.st.streak, 4);
	assert_int_equal(sm.st.since_ms, 700);
	assert_true(health_sm_check(&sm, 900, true, "ok again"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.missed_ms, 700);
	assert_int_equal(sm.st.checks, 9);
	assert_int_equal(sm.st.checks_failed, 6);
}

/* A flapping instance: with failures 2 it never goes unhealthy; with 1 it flaps, and the latch
 * keeps the first miss. */
static void test_flapping(void **unused)
{
	struct store_health_policy p2 = pol_exec(2, 10000), p1 = pol_exec(1, 10000);
	struct health_sm sm;
	int changes = 0;

	health_sm_init(&sm, &p2, 0);
	for (int i = 1; i <= 40; i++)
		changes += health_sm_check(&sm, (uint64_t)i * 100, i % 2 == 1, "x");
	assert_int_equal(changes, 1); /* starting -> healthy only */
	assert_state(&sm, HEALTH_HEALTHY);
	assert_false(sm.st.missed);
	assert_int_equal(sm.st.checks_failed, 20);

	health_sm_init(&sm, &p1, 0);
	changes = 0;
	for (int i = 1; i <= 40; i++)
		changes += health_sm_check(&sm, (uint64_t)i * 100, i % 2 == 1, "x");
	assert_int_equal(changes, 40);
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.missed_ms, 200);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_FAILURES);
}

/* R4: the runtime's FAILED from any state; checks do not revive it; R5 does. */
static void test_runtime_failed(void **unused)
{
	struct store_health_policy p = pol_exec(3, 1000);
	struct health_sm sm;

	/* From starting. */
	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_runtime(&sm, 50, PLUGIN_FAILED, 5, "exited 3"));
	assert_state(&sm, HEALTH_FAILED);
	assert_int_equal(sm.st.since_ms, 50);
	assert_true(sm.st.missed);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_RUNTIME);
	assert_int_equal(sm.st.runtime, PLUGIN_FAILED);
	assert_int_equal(sm.st.restarts, 5);
	assert_string_equal(sm.st.detail, "runtime failed (5 restarts): exited 3");
	/* Checks and the deadline leave failed alone. */
	assert_false(health_sm_check(&sm, 60, true, "ok"));
	assert_false(health_sm_tick(&sm, 5000));
	assert_state(&sm, HEALTH_FAILED);
	assert_false(health_sm_runtime(&sm, 5001, PLUGIN_FAILED, 5, "again"));
	assert_int_equal(sm.st.since_ms, 50);

	/* From healthy; R5 before the deadline: back to starting, then a pass. */
	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_check(&sm, 10, true, "ok"));
	assert_true(health_sm_runtime(&sm, 20, PLUGIN_FAILED, 1, "SubState=failed"));
	assert_state(&sm, HEALTH_FAILED);
	assert_true(health_sm_runtime(&sm, 30, PLUGIN_RUNNING, 1, "SubState=running"));
	assert_state(&sm, HEALTH_STARTING);
	assert_int_equal(sm.st.since_ms, 30);
	assert_int_equal(health_sm_deadline(&sm), 1000);
	assert_true(health_sm_check(&sm, 40, true, "ok"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_RUNTIME);

	/* R5 after the deadline: R1 turns it unhealthy at once, since = now. */
	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_runtime(&sm, 20, PLUGIN_FAILED, 5, "gave up"));
	assert_true(health_sm_runtime(&sm, 3000, PLUGIN_STARTING, 0, "restarted"));
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_int_equal(sm.st.since_ms, 3000);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_RUNTIME); /* the first reason stays */
}

/* R6 with a check: non-FAILED runtime states are recorded only. */
static void test_runtime_with_check_recorded(void **unused)
{
	struct store_health_policy p = pol_exec(1, 1000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 0);
	assert_false(health_sm_runtime(&sm, 10, PLUGIN_RUNNING, 0, "up"));
	assert_state(&sm, HEALTH_STARTING);
	assert_true(health_sm_check(&sm, 20, true, "ok"));
	assert_false(health_sm_runtime(&sm, 30, PLUGIN_RESTARTING, 1, "exited 1"));
	assert_false(health_sm_runtime(&sm, 40, PLUGIN_STOPPED, 1, "stopped"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_int_equal(sm.st.runtime, PLUGIN_STOPPED);
	assert_int_equal(sm.st.restarts, 1);
	assert_int_equal(sm.st.checks, 1);
}

/* R6 without a check: the runtime is the check. */
static void test_runtime_is_the_check(void **unused)
{
	struct store_health_policy p = { .interval_ms = 100, .timeout_ms = 50, .failures = 2,
					 .deadline_ms = 1000 };
	struct health_sm sm;

	health_sm_init(&sm, &p, 0);
	assert_false(sm.has_check);
	assert_false(health_sm_runtime(&sm, 10, PLUGIN_STARTING, 0, "pid 42"));
	assert_state(&sm, HEALTH_STARTING);
	assert_true(health_sm_runtime(&sm, 500, PLUGIN_RUNNING, 0, "up"));
	assert_state(&sm, HEALTH_HEALTHY);
	assert_string_equal(sm.st.detail, "check passed: runtime running: up");
	assert_false(health_sm_runtime(&sm, 600, PLUGIN_RESTARTING, 1, "exited 1"));
	assert_int_equal(sm.st.streak, 1);
	assert_true(health_sm_runtime(&sm, 700, PLUGIN_RESTARTING, 2, "exited 1"));
	assert_state(&sm, HEALTH_UNHEALTHY);
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_FAILURES);
	assert_true(health_sm_runtime(&sm, 800, PLUGIN_RUNNING, 2, "up"));
	assert_state(&sm, HEALTH_HEALTHY);

	/* Never RUNNING: the deadline. */
	health_sm_init(&sm, &p, 0);
	assert_false(health_sm_runtime(&sm, 10, PLUGIN_STARTING, 0, "pid 42"));
	assert_true(health_sm_tick(&sm, 1000));
	assert_int_equal(sm.st.miss_reason, HEALTH_MISS_DEADLINE);

	/* FAILED then RUNNING again without a check: straight back to healthy (R5 then R6). */
	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_runtime(&sm, 10, PLUGIN_FAILED, 5, "loop"));
	assert_true(health_sm_runtime(&sm, 20, PLUGIN_RUNNING, 0, "up"));
	assert_state(&sm, HEALTH_HEALTHY);
}

/* The machine's clock never runs backwards. */
static void test_time_backwards(void **unused)
{
	struct store_health_policy p = pol_exec(1, 1000);
	struct health_sm sm;

	health_sm_init(&sm, &p, 5000);
	assert_true(health_sm_check(&sm, 7000, false, "late")); /* R1 at 6000 */
	assert_int_equal(sm.st.since_ms, 6000);
	assert_true(health_sm_check(&sm, 10, true, "ok"));	  /* taken as 7000 */
	assert_int_equal(sm.st.since_ms, 7000);
	assert_int_equal(sm.last_ms, 7000);
}

/* Details are cut to HEALTH_DETAIL_MAX - 1 and control bytes shown as '?'. */
static void test_detail_bounded(void **unused)
{
	struct store_health_policy p = pol_exec(1, 1000);
	struct health_sm sm;
	char big[1000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[3] = '\n';
	big[4] = '\x1b';
	health_sm_init(&sm, &p, 0);
	assert_true(health_sm_check(&sm, 1, true, big));
	assert_int_equal(strlen(sm.st.last_check), HEALTH_DETAIL_MAX - 1);
	assert_int_equal(strlen(sm.st.detail), HEALTH_DETAIL_MAX - 1);
	assert_memory_equal(sm.st.last_check, "aaa??aa", 7);
	assert_false(health_sm_check(&sm, 2, true, NULL));
	assert_string_equal(sm.st.last_check, "");
}

static void test_parse_url(void **unused)
{
	struct health__addr a;

	assert_int_equal(health__parse_url("http://127.0.0.1:8080/healthz", &a), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 8080);
	assert_string_equal(a.authority, "127.0.0.1:8080");
	assert_string_equal(a.target, "/healthz");

	assert_int_equal(health__parse_url("http://localhost", &a), 0);
	assert_string_equal(a.host, "localhost");
	assert_int_equal(a.port, 80);
	assert_string_equal(a.target, "/");

	assert_int_equal(health__parse_url("http://[::1]:9/a/b?x=1&y=%20#frag", &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 9);
	assert_string_equal(a.authority, "[::1]:9");
	assert_string_equal(a.target, "/a/b?x=1&y=%20");

	assert_int_equal(health__parse_url("http://h:65535?q", &a), 0);
	assert_string_equal(a.target, "/?q");
	assert_int_equal(a.port, 65535);
	assert_int_equal(health__parse_url("http://[fe80::1]/", &a), 0);
	assert_int_equal(a.port, 80);

	static const char *const bad[] = {
		"https://127.0.0.1/", "HTTP://h/", "http://", "http:///x", "http://:80/",
		"http://h:0/", "http://h:65536/", "http://h:/", "http://h:8x/", "http://h:-1/",
		"http://u@h/", "http://h h/", "http://h/a b", "http://h/\x01", "http://[::1/",
		"http://[]/", "http://[::1]x/", "http://[zz]/", "http://h:1:2/", "http://h\\x/",
		"http://h/#a b", "http://h/#a#b", "ftp://h/", "", "http://h%41/", "http://h/\x80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&a, 0x5a, sizeof(a));
		if (health__parse_url(bad[i], &a) != -EINVAL)
			fail_msg("\"%s\" parsed", bad[i]);
		assert_int_equal((unsigned char)a.host[0], 0x5a); /* untouched on failure */
	}
	assert_int_equal(health__parse_url(NULL, &a), -EINVAL);

	/* Sizes: a 255-byte host passes, 256 does not; an over-long target is refused. */
	char url[4200];
	snprintf(url, sizeof(url), "http://%0255d/", 0);
	assert_int_equal(health__parse_url(url, &a), 0);
	snprintf(url, sizeof(url), "http://%0256d/", 0);
	assert_int_equal(health__parse_url(url, &a), -EINVAL);
	memcpy(url, "http://h/", 9);
	memset(url + 9, 'p', 4000);
	url[4009] = '\0';
	assert_int_equal(health__parse_url(url, &a), -EINVAL);
}

static void test_parse_hostport(void **unused)
{
	struct health__addr a;

	assert_int_equal(health__parse_hostport("127.0.0.1:8080", &a), 0);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 8080);
	assert_string_equal(a.target, "");
	assert_int_equal(health__parse_hostport("[::1]:22", &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 22);
	assert_int_equal(health__parse_hostport("db.local:5432", &a), 0);
	assert_string_equal(a.host, "db.local");

	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", ":80", "[::1]", "[::1]80",
					   "h:0", "h:99999", "h/x:80", "h:80/", "a b:1", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (health__parse_hostport(bad[i], &a) != -EINVAL)
			fail_msg("\"%s\" parsed", bad[i]);
	assert_int_equal(health__parse_hostport(NULL, &a), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_first_pass_healthy),
		cmocka_unit_test(test_start_failures_wait_for_deadline),
		cmocka_unit_test(test_pass_after_deadline),
		cmocka_unit_test(test_no_deadline_failures_end_start),
		cmocka_unit_test(test_healthy_then_failures),
		cmocka_unit_test(test_flapping),
		cmocka_unit_test(test_runtime_failed),
		cmocka_unit_test(test_runtime_with_check_recorded),
		cmocka_unit_test(test_runtime_is_the_check),
		cmocka_unit_test(test_time_backwards),
		cmocka_unit_test(test_detail_bounded),
		cmocka_unit_test(test_parse_url),
		cmocka_unit_test(test_parse_hostport),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
