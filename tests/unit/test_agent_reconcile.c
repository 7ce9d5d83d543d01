/*
 * tests/unit/test_agent_reconcile.c: the reconciler over a real store (LMDB in a mkdtemp
 * directory), the real exec plugin and a real libuv loop. Services are exec artifacts
 * imported with store_import_dir whose process writes a marker "<SHOAL_REV> <pid>"
 * (tests/integration/reconcile_harness.h), so every check is about processes that really
 * run: which revision, which pid, how many instances.
 *
 * Every wait is bounded; every callback is counted; processes left by a failed test are
 * killed by PID (found through their RC_TAG environment variable) and the temp dir removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/node/reconcile.h"
#include "../integration/reconcile_harness.h"

#define WAIT_MS 15000

static char g_root[1024];
static char g_tag[64];

struct swapped_rec {
	uint64_t rev;
	int status;
};

struct ctx {
	uv_loop_t loop;
	struct store *s;
	struct reconcile *r;
	char state[2048];
	char svc[65];
	struct reconcile_opts opts;
	struct plugin_config pcfg;
	struct reconcile_callbacks cbs;

	struct swapped_rec sw[128];
	int nsw;
	int nev[RECONCILE_EV_JOURNAL_BAD + 1];
	int steps[RECONCILE_STEP_DEACTIVATE + 1][8];	/* [step][target rev] */
	int retry_status;
	enum reconcile_step retry_step;
	int plugin_events;
	int closed;

	/* test hooks */
	int refuse;				/* may_start answers no this many times */
	int asked;
	uint64_t asked_rev;
	uint64_t first_allowed_ms, start_ms;
	int sabotage_activate;			/* remove the dir at this many ACTIVATEs */
	struct store_id ids[8];			/* artifacts by rev (coalesce test) */
	int coalesce;				/* re-desire at MATERIALIZE of rev 1 and 2 */
	bool hold;				/* before_stop holds the swap */
	int stops_asked;			/* before_stop calls */
	uint64_t stop_rev;			/* ... and the revision it named */
	int steps_at_hold;			/* STEP events seen when before_stop was called */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool cb_may_start(void *ud, const char *service, uint64_t rev)
{
	struct ctx *c = ud;

	c->asked++;
	c->asked_rev = rev;
	if (c->refuse > 0) {
		c->refuse--;
		return false;
	}
	if (!c->first_allowed_ms)
		c->first_allowed_ms = now_ms();
	return true;
}

static bool cb_before_stop(void *ud, const char *service, uint64_t rev,
			   const struct store_id *art)
{
	struct ctx *c = ud;

	assert_string_equal(service, c->svc);
	assert_non_null(art);
	c->stops_asked++;
	c->stop_rev = rev;
	c->steps_at_hold = c->nev[RECONCILE_EV_STEP];
	return c->hold;
}

static void cb_swapped(void *ud, const char *service, uint64_t rev, const struct store_id *art,
		       int status)
{
	struct ctx *c = ud;

	assert_string_equal(service, c->svc);
	assert_true((rev == 0) == (art == NULL));
	if (c->nsw < 128) {
		c->sw[c->nsw].rev = rev;
		c->sw[c->nsw].status = status;
	}
	c->nsw++;
}

static void cb_state(void *ud, const struct reconcile_event *ev)
{
	struct ctx *c = ud;
	char path[PATH_MAX];

	assert_true(ev->kind <= RECONCILE_EV_JOURNAL_BAD);
	c->nev[ev->kind]++;
	if (ev->kind == RECONCILE_EV_PLUGIN) {
		assert_non_null(ev->st);
		c->plugin_events++;
		return;
	}
	if (ev->kind == RECONCILE_EV_RETRY) {
		c->retry_status = ev->status;
		c->retry_step = ev->step;
		return;
	}
	if (ev->kind != RECONCILE_EV_STEP)
		return;
	assert_true(ev->step >= RECONCILE_STEP_MATERIALIZE &&
		    ev->step <= RECONCILE_STEP_DEACTIVATE);
	if (ev->rev < 8)
		c->steps[ev->step][ev->rev]++;
	/* a newer desired while a swap is under way (callbacks may call reconcile_*) */
	if (c->coalesce && ev->step == RECONCILE_STEP_MATERIALIZE && ev->rev < 3)
		assert_int_equal(reconcile_set_desired(c->r, c->svc, ev->rev + 1,
						       &c->ids[ev->rev + 1]), 0);
	/* make the activation fail for real: the exec driver finds no directory (-ENOENT) */
	if (c->sabotage_activate > 0 && ev->step == RECONCILE_STEP_ACTIVATE) {
		char hex[STORE_ID_HEXLEN + 1];

		c->sabotage_activate--;
		store_id_hex(ev->artifact, hex);
		snprintf(path, sizeof(path), "%s/artifacts/%s/%" PRIu64 "-%.12s", c->state, c->svc,
			 ev->rev, hex);
		assert_int_equal(access(path, F_OK), 0);
		rh_rm_rf(path);
	}
}

static void ctx_reconcile_new(struct ctx *c)
{
	memset(&c->pcfg, 0, sizeof(c->pcfg));
	c->pcfg.state_dir = c->state;
	c->pcfg.stop_timeout_ms = 3000;
	c->pcfg.settle_ms = 200;
	c->cbs.may_start = cb_may_start;
	c->cbs.on_swapped = cb_swapped;
	c->cbs.on_state = cb_state;
	c->cbs.before_stop = cb_before_stop;
	c->cbs.ud = c;
	assert_int_equal(reconcile_new(&c->loop, c->s, &c->pcfg, &c->cbs, &c->opts, &c->r), 0);
}

static struct ctx *ctx_new(const char *svc)
{
	struct ctx *c = calloc(1, sizeof(*c));
	struct store_opts so = { 0 };
	char path[PATH_MAX];

	assert_non_null(c);
	assert_int_equal(uv_loop_init(&c->loop), 0);
	snprintf(c->svc, sizeof(c->svc), "%s", svc);
	snprintf(c->state, sizeof(c->state), "%s/state-%s", g_root, svc);
	assert_int_equal(mkdir(c->state, 0700), 0);
	snprintf(path, sizeof(path), "%s/store-%s", g_root, svc);
	so.path = path;
	so.nosync = true;
	assert_int_equal(store_open(&so, &c->s), 0);
	c->opts.retry_min_ms = 50;
	c->opts.retry_max_ms = 400;
	c->opts.pace_retry_ms = 100;
	ctx_reconcile_new(c);
	return c;
}

static void on_closed(void *ud)
{
	((struct ctx *)ud)->closed++;
}

static void run_ms(struct ctx *c, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end) {
		uv_run(&c->loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
}

#define RUN_UNTIL(c, cond)                                                                     \
	do {                                                                                   \
		uint64_t end_ = now_ms() + WAIT_MS;                                            \
		while (!(cond) && now_ms() < end_) {                                           \
			uv_run(&(c)->loop, UV_RUN_NOWAIT);                                     \
			usleep(2000);                                                          \
		}                                                                              \
		if (!(cond))                                                                   \
			fail_msg("timed out after %d ms waiting for %s", WAIT_MS, #cond);      \
	} while (0)

static void ctx_close_reconciler(struct ctx *c)
{
	int before = c->closed;

	reconcile_close(c->r, on_closed, c);
	assert_int_equal(c->closed, before);	/* never from inside the call */
	RUN_UNTIL(c, c->closed == before + 1);
	c->r = NULL;
}

static void ctx_free(struct ctx *c)
{
	if (c->r)
		ctx_close_reconciler(c);
	uv_run(&c->loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	store_close(c->s);
	free(c);
}

static int last_ok_rev(struct ctx *c, uint64_t rev)
{
	for (int i = c->nsw - 1; i >= 0 && i < 128; i--)
		if (c->sw[i].status == 0 && c->sw[i].rev == rev)
			return 1;
	return 0;
}

/* Wait until the marker says @rev with a live pid; returns that pid. */
static long wait_marker(struct ctx *c, uint64_t rev)
{
	uint64_t mrev = 0;
	long pid = 0;

	RUN_UNTIL(c, rh_read_marker(g_root, c->svc, &mrev, &pid) == 0 && mrev == rev &&
			     rh_alive(pid));
	return pid;
}

static void check_state(struct ctx *c, uint64_t rev, const struct store_id *id)
{
	struct store_service_state st;

	assert_int_equal(store_service_state_get(c->s, c->svc, &st), 0);
	assert_int_equal(st.running_rev, rev);
	assert_memory_equal(&st.running, id, sizeof(*id));
	assert_int_equal(rh_journal_count(c->s), 0);
}

/* Exactly one instance of the service alive, at @rev. */
static void check_one_instance(struct ctx *c, uint64_t rev, long pid)
{
	struct rh_proc p[16];
	long pgid = getpgid((pid_t)pid);
	int n;

	/* the old group is gone before the new one is spawned; transient children of run.sh
	 * (mv) and the `sh -c` around run.sh share its group, so count groups */
	assert_true(pgid > 0);
	n = rh_scan(g_tag, p, 16);
	assert_in_range(n, 1, 16);
	for (int i = 0; i < n; i++) {
		if (p[i].pgid != pgid)
			fail_msg("instance pid %ld pgid %ld rev %" PRIu64 " besides the expected "
				 "group %ld", p[i].pid, p[i].pgid, p[i].rev, pgid);
		assert_int_equal(p[i].rev, rev);
	}
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_journal_codec(void **state)
{
	struct reconcile_journal j = { 0 }, k;
	uint8_t buf[RECONCILE_JOURNAL_LEN], bad[RECONCILE_JOURNAL_LEN + 1];

	(void)state;
	j.target_rev = 7;
	memset(j.target.b, 0xab, STORE_ID_LEN);
	j.prev_rev = 6;
	memset(j.prev.b, 0x01, STORE_ID_LEN);
	j.step = RECONCILE_STEP_ACTIVATE;
	j.attempt = 3;
	assert_int_equal(reconcile__journal_encode(&j, buf), 0);
	memset(&k, 0, sizeof(k));
	assert_int_equal(reconcile__journal_decode(buf, sizeof(buf), &k), 0);
	assert_memory_equal(&j, &k, sizeof(j));

	/* every truncation and an extra byte are refused; @ret untouched */
	for (size_t n = 0; n < sizeof(buf); n++) {
		memset(&k, 0x5a, sizeof(k));
		assert_int_equal(reconcile__journal_decode(buf, n, &k), -EBADMSG);
		assert_int_equal(k.attempt, 0x5a5a5a5a);
	}
	memcpy(bad, buf, sizeof(buf));
	bad[sizeof(buf)] = 0;
	assert_int_equal(reconcile__journal_decode(bad, sizeof(bad), &k), -EBADMSG);
	/* a newer version is told apart from garbage */
	memcpy(bad, buf, sizeof(buf));
	bad[3] = RECONCILE_JOURNAL_VERSION + 1;
	assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), -EPROTONOSUPPORT);
	/* bad magic, step, reserved bytes, rev/id mismatches */
	memcpy(bad, buf, sizeof(buf));
	bad[0] = 'X';
	assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), -EBADMSG);
	for (int step = 0; step < 256; step += 1) {
		memcpy(bad, buf, sizeof(buf));
		bad[4] = (uint8_t)step;
		int want = step >= RECONCILE_STEP_MATERIALIZE && step <= RECONCILE_STEP_ACTIVATE ?
				   0 :
				   -EBADMSG;
		assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), want);
	}
	memcpy(bad, buf, sizeof(buf));
	bad[5] = 1;
	assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), -EBADMSG);
	memcpy(bad, buf, sizeof(buf));
	memset(bad + 16, 0, 8);	/* target rev 0 with an id */
	assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), -EBADMSG);
	memcpy(bad, buf, sizeof(buf));
	memset(bad + 64, 0, 32);	/* prev rev with a zero id */
	assert_int_equal(reconcile__journal_decode(bad, sizeof(buf), &k), -EBADMSG);
	/* a stop: rev 0, zero id, DEACTIVATE */
	memset(&j.target, 0, sizeof(j.target));
	j.target_rev = 0;
	j.step = RECONCILE_STEP_DEACTIVATE;
	assert_int_equal(reconcile__journal_encode(&j, buf), 0);
	assert_int_equal(reconcile__journal_decode(buf, sizeof(buf), &k), 0);
	assert_int_equal(k.step, RECONCILE_STEP_DEACTIVATE);
	j.step = RECONCILE_STEP_NONE;
	assert_int_equal(reconcile__journal_encode(&j, buf), -EINVAL);
	assert_string_equal(reconcile_step_name(RECONCILE_STEP_STOP_PREV), "stop-prev");
	assert_string_equal(reconcile_event_name(RECONCILE_EV_PACED), "paced");
}

static void test_args(void **state)
{
	struct ctx *c = ctx_new("args");
	struct store_id id = { { 1 } };
	struct reconcile *r = (struct reconcile *)0x1;
	struct plugin_config bad = c->pcfg;

	(void)state;
	bad.state_dir = "relative";
	assert_int_equal(reconcile_new(&c->loop, c->s, &bad, &c->cbs, NULL, &r), -EINVAL);
	assert_ptr_equal(r, (struct reconcile *)0x1);
	assert_int_equal(reconcile_set_desired(c->r, "bad/name", 1, &id), -EINVAL);
	assert_int_equal(reconcile_set_desired(c->r, "", 1, &id), -EINVAL);
	assert_int_equal(reconcile_mark_good(c->r, "x", 0, &id), -EINVAL);
	assert_int_equal(reconcile_mark_good(c->r, "x", 1, &id), -ESTALE);
	assert_int_equal(reconcile_resume(c->r), 0);
	assert_int_equal(reconcile_resume(c->r), -EALREADY);
	assert_true(reconcile_idle(c->r));
	ctx_free(c);
}

/* v1 -> v2 -> v1 (as rev 3), the processes really replaced; then a stop. */
static void test_swap_back_and_forth(void **state)
{
	struct ctx *c = ctx_new("web");
	struct store_id a1, a2, zero = { 0 };
	struct reconcile_service_status ss;
	struct store_service_state st;
	char adir[PATH_MAX];
	long p1, p2, p3;

	(void)state;
	assert_int_equal(rh_make_artifact(c->s, g_root, "web", "1", NULL, &a1), 0);
	assert_int_equal(rh_make_artifact(c->s, g_root, "web", "2", NULL, &a2), 0);
	assert_int_equal(reconcile_resume(c->r), 0);

	assert_int_equal(reconcile_set_desired(c->r, "web", 1, &a1), 0);
	assert_int_equal(c->nsw, 0);	/* nothing from inside the call */
	RUN_UNTIL(c, last_ok_rev(c, 1));
	p1 = wait_marker(c, 1);
	check_state(c, 1, &a1);
	check_one_instance(c, 1, p1);
	assert_int_equal(c->asked, 1);
	assert_int_equal(c->asked_rev, 1);
	assert_int_equal(c->steps[RECONCILE_STEP_MATERIALIZE][1], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_PREPARE][1], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][1], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_STOP_PREV][1], 0);
	assert_int_equal(reconcile_service_status(c->r, "web", &ss), 0);
	assert_false(ss.swapping);
	assert_true(ss.verified);

	/* re-asserting the same desired revision does nothing */
	assert_int_equal(reconcile_set_desired(c->r, "web", 1, &a1), 0);
	run_ms(c, 100);
	assert_int_equal(c->nsw, 1);
	assert_int_equal(c->asked, 1);

	assert_int_equal(reconcile_mark_good(c->r, "web", 1, &a1), 0);
	assert_int_equal(reconcile_mark_good(c->r, "web", 2, &a2), -ESTALE);

	assert_int_equal(reconcile_set_desired(c->r, "web", 2, &a2), 0);
	RUN_UNTIL(c, last_ok_rev(c, 2));
	p2 = wait_marker(c, 2);
	assert_int_not_equal(p1, p2);
	RUN_UNTIL(c, !rh_alive(p1));
	check_state(c, 2, &a2);
	check_one_instance(c, 2, p2);
	assert_int_equal(store_service_state_get(c->s, "web", &st), 0);
	assert_memory_equal(&st.last_good, &a1, sizeof(a1));	/* kept across the swap */

	/* back to a1 (a rollback): rev 1's directory is renamed for rev 3, not copied again */
	char hex1[STORE_ID_HEXLEN + 1], d1[PATH_MAX], d3[PATH_MAX];
	struct stat sb1, sb3;
	store_id_hex(&a1, hex1);
	snprintf(d1, sizeof(d1), "%s/artifacts/web/1-%.12s", c->state, hex1);
	snprintf(d3, sizeof(d3), "%s/artifacts/web/3-%.12s", c->state, hex1);
	assert_int_equal(stat(d1, &sb1), 0);
	assert_int_equal(reconcile_set_desired(c->r, "web", 3, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 3));
	p3 = wait_marker(c, 3);
	RUN_UNTIL(c, !rh_alive(p2));
	check_state(c, 3, &a1);
	check_one_instance(c, 3, p3);
	assert_int_equal(stat(d3, &sb3), 0);
	assert_int_equal(sb3.st_ino, sb1.st_ino);
	assert_int_equal(access(d1, F_OK), -1);
	assert_int_equal(c->nsw, 3);
	assert_int_equal(c->nev[RECONCILE_EV_RETRY], 0);
	/* only what runs (and nothing else) stays materialized */
	snprintf(adir, sizeof(adir), "%s/artifacts/web", c->state);
	assert_in_range(rh_count_entries(adir), 1, 2);

	/* stop */
	assert_int_equal(reconcile_set_desired(c->r, "web", 0, NULL), 0);
	RUN_UNTIL(c, c->nsw == 4);
	assert_int_equal(c->sw[3].status, 0);
	assert_int_equal(c->sw[3].rev, 0);
	RUN_UNTIL(c, !rh_alive(p3));
	check_state(c, 0, &zero);
	assert_int_equal(c->steps[RECONCILE_STEP_DEACTIVATE][0], 1);
	assert_int_equal(rh_scan(g_tag, NULL, 0), 0);
	assert_true(reconcile_idle(c->r));
	ctx_free(c);
}

/* Desired changes twice while the first swap is under way: only the newest is activated. */
static void test_coalesce(void **state)
{
	struct ctx *c = ctx_new("coal");
	long pid;

	(void)state;
	for (int v = 1; v <= 3; v++) {
		char ver[8];

		snprintf(ver, sizeof(ver), "%d", v);
		assert_int_equal(rh_make_artifact(c->s, g_root, "coal", ver, NULL, &c->ids[v]), 0);
	}
	c->coalesce = 1;
	assert_int_equal(reconcile_set_desired(c->r, "coal", 1, &c->ids[1]), 0);
	RUN_UNTIL(c, last_ok_rev(c, 3));
	pid = wait_marker(c, 3);
	check_state(c, 3, &c->ids[3]);
	check_one_instance(c, 3, pid);
	/* revs 1 and 2 were materialized (the step in flight finishes) but never activated */
	assert_int_equal(c->steps[RECONCILE_STEP_MATERIALIZE][1], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_MATERIALIZE][2], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][1], 0);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][2], 0);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][3], 1);
	assert_int_equal(c->nev[RECONCILE_EV_ABANDONED], 2);
	/* one swap, one pacing question, one result */
	assert_int_equal(c->asked, 1);
	assert_int_equal(c->nsw, 1);
	ctx_free(c);
}

/* An activation that fails for real is reported, retried with back-off and then succeeds. */
static void test_activate_retry(void **state)
{
	struct ctx *c = ctx_new("retry");
	struct store_id a1;
	uint64_t t0;
	long pid;

	(void)state;
	assert_int_equal(rh_make_artifact(c->s, g_root, "retry", "1", NULL, &a1), 0);
	c->sabotage_activate = 2;
	t0 = now_ms();
	assert_int_equal(reconcile_set_desired(c->r, "retry", 1, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 1));
	pid = wait_marker(c, 1);
	check_state(c, 1, &a1);
	check_one_instance(c, 1, pid);
	/* two failures reported as such, then success */
	assert_int_equal(c->nsw, 3);
	assert_int_equal(c->sw[0].status, -ENOENT);
	assert_int_equal(c->sw[1].status, -ENOENT);
	assert_int_equal(c->sw[2].status, 0);
	assert_int_equal(c->nev[RECONCILE_EV_RETRY], 2);
	assert_int_equal(c->retry_status, -ENOENT);
	assert_int_equal(c->retry_step, RECONCILE_STEP_ACTIVATE);
	/* the missing directory was made again before each retry */
	assert_int_equal(c->steps[RECONCILE_STEP_MATERIALIZE][1], 3);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][1], 3);
	/* back-off 50 ms then 100 ms */
	assert_true(now_ms() - t0 >= 150);
	assert_int_equal(c->asked, 1);	/* retries keep their pacing slot */
	ctx_free(c);
}

/*
 * v2's activation keeps failing (retry back-off 2 s); the agent rolls back to v1 meanwhile:
 * the swap is re-aimed at once (no waiting for the back-off), and since the failed
 * activation touched the runtime, v1 is activated again rather than assumed.
 */
static void test_rollback_during_backoff(void **state)
{
	struct ctx *c = ctx_new("rb");
	struct store_id a1, a2;
	uint64_t t0;
	long p1, p2;

	(void)state;
	c->opts.retry_min_ms = 2000;
	c->opts.retry_max_ms = 2000;
	ctx_close_reconciler(c);
	ctx_reconcile_new(c);
	assert_int_equal(rh_make_artifact(c->s, g_root, "rb", "1", NULL, &a1), 0);
	assert_int_equal(rh_make_artifact(c->s, g_root, "rb", "2", NULL, &a2), 0);
	assert_int_equal(reconcile_set_desired(c->r, "rb", 1, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 1));
	p1 = wait_marker(c, 1);

	c->sabotage_activate = 100;
	assert_int_equal(reconcile_set_desired(c->r, "rb", 2, &a2), 0);
	RUN_UNTIL(c, c->nsw == 2);
	assert_int_equal(c->sw[1].status, -ENOENT);
	assert_int_equal(c->sw[1].rev, 2);
	/* the exec driver left v1 running when v2's directory was missing */
	assert_true(rh_alive(p1));
	c->sabotage_activate = 0;
	t0 = now_ms();
	assert_int_equal(reconcile_set_desired(c->r, "rb", 1, &a1), 0);
	RUN_UNTIL(c, c->nsw == 3);
	assert_true(now_ms() - t0 < 1500);
	assert_int_equal(c->sw[2].status, 0);
	assert_int_equal(c->sw[2].rev, 1);
	assert_int_equal(c->nev[RECONCILE_EV_ABANDONED], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][1], 2);	/* re-activated */
	p2 = wait_marker(c, 1);
	assert_int_not_equal(p1, p2);
	check_state(c, 1, &a1);
	check_one_instance(c, 1, p2);
	assert_int_equal(c->asked, 2);
	ctx_free(c);
}

/* may_start says no three times: nothing starts until it says yes. */
static void test_pacing(void **state)
{
	struct ctx *c = ctx_new("paced");
	struct store_id a1;
	uint64_t mrev;
	long pid;

	(void)state;
	assert_int_equal(rh_make_artifact(c->s, g_root, "paced", "1", NULL, &a1), 0);
	c->refuse = 3;
	c->start_ms = now_ms();
	assert_int_equal(reconcile_set_desired(c->r, "paced", 1, &a1), 0);
	run_ms(c, 150);
	/* refused so far: no journal, no process, no state */
	assert_true(c->asked >= 1 && c->asked <= 3);
	assert_int_equal(rh_journal_count(c->s), 0);
	assert_int_equal(rh_read_marker(g_root, "paced", &mrev, &pid), -ENOENT);
	assert_false(reconcile_idle(c->r));
	RUN_UNTIL(c, last_ok_rev(c, 1));
	pid = wait_marker(c, 1);
	check_state(c, 1, &a1);
	check_one_instance(c, 1, pid);
	assert_int_equal(c->asked, 4);
	assert_int_equal(c->nev[RECONCILE_EV_PACED], 3);
	/* three refusals, pace_retry_ms = 100 apart */
	assert_true(c->first_allowed_ms - c->start_ms >= 300);
	ctx_free(c);
}

/*
 * Drain (issue 14): before_stop is asked once per swap that stops a running instance (not for
 * the first activation, where nothing runs); while it holds, the old instance keeps running
 * and no step that touches the runtime starts; reconcile_drained lets the swap go on. A
 * desire that changes during the hold is applied after it without asking again.
 */
static void test_drain_hook(void **state)
{
	struct ctx *c = ctx_new("drained");
	struct store_id a1, a2, a3;
	long p1, p2;

	(void)state;
	assert_int_equal(rh_make_artifact(c->s, g_root, "drained", "1", NULL, &a1), 0);
	assert_int_equal(rh_make_artifact(c->s, g_root, "drained", "2", NULL, &a2), 0);
	assert_int_equal(rh_make_artifact(c->s, g_root, "drained", "3", NULL, &a3), 0);
	assert_int_equal(reconcile_resume(c->r), 0);
	assert_int_equal(reconcile_drained(c->r, "drained"), -ENOENT);	/* nothing held */
	assert_int_equal(reconcile_set_desired(c->r, "drained", 1, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 1));
	p1 = wait_marker(c, 1);
	assert_int_equal(c->stops_asked, 0);	/* nothing ran: nothing to drain */

	c->hold = true;
	assert_int_equal(reconcile_set_desired(c->r, "drained", 2, &a2), 0);
	RUN_UNTIL(c, c->stops_asked == 1);
	assert_int_equal(c->stop_rev, 1);
	run_ms(c, 200);
	/* held: rev 1 still runs, no ACTIVATE of rev 2 started, not idle */
	assert_true(rh_alive(p1));
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][2], 0);
	assert_int_equal(c->nev[RECONCILE_EV_STEP], c->steps_at_hold);
	assert_false(reconcile_idle(c->r));
	/* the desire moves on while held: applied once the hold ends, no second drain */
	assert_int_equal(reconcile_set_desired(c->r, "drained", 3, &a3), 0);
	run_ms(c, 100);
	assert_int_equal(c->stops_asked, 1);
	assert_true(rh_alive(p1));
	assert_int_equal(reconcile_drained(c->r, "drained"), 0);
	assert_int_equal(reconcile_drained(c->r, "drained"), -ENOENT);
	RUN_UNTIL(c, last_ok_rev(c, 3));
	p2 = wait_marker(c, 3);
	RUN_UNTIL(c, !rh_alive(p1));
	check_state(c, 3, &a3);
	check_one_instance(c, 3, p2);
	assert_int_equal(c->stops_asked, 1);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][2], 0);

	/* a local restart ([recovery] restarts) of what runs: drained, a new process, same rev */
	c->hold = false;
	int asked = c->asked;
	assert_int_equal(reconcile_restart(c->r, "drained", 2), -ESTALE);
	assert_int_equal(reconcile_restart(c->r, "nosuch", 3), -ENOENT);
	assert_int_equal(reconcile_restart(c->r, "drained", 3), 0);
	assert_int_equal(reconcile_restart(c->r, "drained", 3), -EBUSY);
	RUN_UNTIL(c, c->stops_asked == 2);
	assert_int_equal(c->stop_rev, 3);
	RUN_UNTIL(c, !rh_alive(p2));
	long p3 = wait_marker(c, 3);
	assert_int_not_equal(p3, p2);
	RUN_UNTIL(c, !reconcile_idle(c->r) || last_ok_rev(c, 3));
	RUN_UNTIL(c, reconcile_idle(c->r));
	check_state(c, 3, &a3);
	check_one_instance(c, 3, p3);
	assert_int_equal(c->asked, asked);	/* a restart is not paced */

	/* a stop drains too; a hook that does not hold lets it go on at once */
	assert_int_equal(reconcile_set_desired(c->r, "drained", 0, NULL), 0);
	RUN_UNTIL(c, c->nsw > 0 && c->sw[(c->nsw - 1) % 128].rev == 0);
	assert_int_equal(c->stops_asked, 3);
	assert_int_equal(c->stop_rev, 3);
	RUN_UNTIL(c, !rh_alive(p3));
	ctx_free(c);
}

/*
 * Restart: a new reconciler over the same store resumes journaled swaps, re-activates what
 * the store says runs when the runtime does not run it, and reports bad journal entries.
 */
static void test_resume(void **state)
{
	struct ctx *c = ctx_new("res");
	struct store_id a1, a2;
	struct reconcile_journal j = { 0 };
	uint8_t buf[RECONCILE_JOURNAL_LEN];
	long p1, p2, p3;

	(void)state;
	assert_int_equal(rh_make_artifact(c->s, g_root, "res", "1", NULL, &a1), 0);
	assert_int_equal(rh_make_artifact(c->s, g_root, "res", "2", NULL, &a2), 0);
	assert_int_equal(reconcile_set_desired(c->r, "res", 1, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 1));
	p1 = wait_marker(c, 1);

	/* (1) closing the reconciler stops the exec child; a new one, told the same desired
	 * revision, finds it not running and activates it again (no pacing: nothing changes) */
	ctx_close_reconciler(c);
	RUN_UNTIL(c, !rh_alive(p1));
	check_state(c, 1, &a1);
	c->nsw = 0;
	c->asked = 0;
	ctx_reconcile_new(c);
	assert_int_equal(reconcile_resume(c->r), 0);
	assert_int_equal(reconcile_set_desired(c->r, "res", 1, &a1), 0);
	RUN_UNTIL(c, last_ok_rev(c, 1));
	p2 = wait_marker(c, 1);
	assert_int_not_equal(p1, p2);
	check_state(c, 1, &a1);
	check_one_instance(c, 1, p2);
	assert_int_equal(c->asked, 0);

	/* (2) a journal left at PREPARE of rev 2 whose directory is missing: resume alone
	 * (no desired given) finishes the swap, materializing again */
	ctx_close_reconciler(c);
	j.target_rev = 2;
	j.target = a2;
	j.prev_rev = 1;
	j.prev = a1;
	j.step = RECONCILE_STEP_PREPARE;
	j.attempt = 1;
	assert_int_equal(reconcile__journal_encode(&j, buf), 0);
	assert_int_equal(store_journal_put(c->s, "res", buf, sizeof(buf)), 0);
	/* and a damaged entry of another service */
	assert_int_equal(store_journal_put(c->s, "junk", "garbage", 7), 0);
	memset(c->steps, 0, sizeof(c->steps));
	c->nsw = 0;
	ctx_reconcile_new(c);
	assert_int_equal(reconcile_resume(c->r), 1);
	RUN_UNTIL(c, last_ok_rev(c, 2));
	p3 = wait_marker(c, 2);
	assert_int_equal(c->steps[RECONCILE_STEP_MATERIALIZE][2], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_PREPARE][2], 1);
	assert_int_equal(c->steps[RECONCILE_STEP_ACTIVATE][2], 1);
	assert_int_equal(c->nev[RECONCILE_EV_JOURNAL_BAD], 1);
	assert_int_equal(c->asked, 0);
	assert_int_equal(store_journal_del(c->s, "junk"), 0);
	check_state(c, 2, &a2);
	check_one_instance(c, 2, p3);
	ctx_free(c);
}

/* A process in a session of its own with the environment an exec instance would have. */
static pid_t spawn_fake(const char *state, const char *service, bool ignore_term)
{
	char dir[PATH_MAX];
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/artifacts/%s/1-000000000000", state, service);
	pid = fork();
	if (pid == 0) {
		setsid();
		setenv("SHOAL_SERVICE", service, 1);
		setenv("SHOAL_DIR", dir, 1);
		setenv("SHOAL_REV", "1", 1);
		if (ignore_term)
			signal(SIGTERM, SIG_IGN);	/* stays ignored across exec */
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static bool env_has(pid_t pid, const char *var)
{
	char path[64], buf[8192];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/environ", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		if (strcmp(buf + i, var) == 0)
			return true;
	return false;
}

/* The orphan sweep ends exactly the groups of the service started from our artifacts dir. */
static void test_sweep_orphans(void **state)
{
	char st[PATH_MAX - 128], other[PATH_MAX - 128];
	pid_t a, b, c2, d;
	uint64_t t0, deadline;
	int status;

	(void)state;
	snprintf(st, sizeof(st), "%s/sweep-state", g_root);
	snprintf(other, sizeof(other), "%s/other-state", g_root);
	a = spawn_fake(st, "sw", false);
	b = spawn_fake(st, "sw", true);		/* needs SIGKILL */
	c2 = spawn_fake(st, "sw2", false);	/* another service: spared */
	d = spawn_fake(other, "sw", false);	/* another agent's state dir: spared */
	assert_true(a > 0 && b > 0 && c2 > 0 && d > 0);
	deadline = now_ms() + WAIT_MS;
	while (now_ms() < deadline && !(env_has(a, "SHOAL_SERVICE=sw") &&
					 env_has(b, "SHOAL_SERVICE=sw") &&
					 env_has(c2, "SHOAL_SERVICE=sw2") &&
					 env_has(d, "SHOAL_SERVICE=sw")))
		usleep(2000);
	t0 = now_ms();
	assert_int_equal(reconcile__sweep_orphans(st, "sw", 300), 2);
	assert_true(now_ms() - t0 >= 300);	/* b ignored SIGTERM */
	assert_false(rh_alive(a));
	assert_false(rh_alive(b));
	assert_true(rh_alive(c2));
	assert_true(rh_alive(d));
	assert_int_equal(waitpid(a, &status, 0), a);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	assert_int_equal(waitpid(b, &status, 0), b);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* nothing left: 0, at once */
	assert_int_equal(reconcile__sweep_orphans(st, "sw", 300), 0);
	assert_int_equal(reconcile__sweep_orphans(st, "../x", 300), -EINVAL);
	kill(c2, SIGKILL);
	kill(d, SIGKILL);
	waitpid(c2, &status, 0);
	waitpid(d, &status, 0);
}

static int setup_all(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	snprintf(g_root, sizeof(g_root), "%s/shoal-reconcile-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(g_root))
		return -1;
	snprintf(g_tag, sizeof(g_tag), "unit-%ld-%ld", (long)getpid(), (long)time(NULL));
	setenv("RC_TAG", g_tag, 1);
	setenv("RC_MARK_DIR", g_root, 1);
	return 0;
}

static int teardown_all(void **state)
{
	(void)state;
	rh_kill_tagged(g_tag);
	rh_rm_rf(g_root);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal_codec),
		cmocka_unit_test(test_args),
		cmocka_unit_test(test_swap_back_and_forth),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_activate_retry),
		cmocka_unit_test(test_pacing),
		cmocka_unit_test(test_drain_hook),
		cmocka_unit_test(test_rollback_during_backoff),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_sweep_orphans),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
