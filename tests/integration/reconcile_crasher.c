/*
 * tests/integration/reconcile_crasher.c: the process the reconciler crash test kills.
 *
 *   reconcile_crasher ROOT setup           import artifacts v1, v2, v3 of service "crash"
 *                                          into ROOT/store; write their ids to ROOT/ids
 *   reconcile_crasher ROOT loop SEED       run a reconciler (real store, real exec plugin,
 *                                          state dir ROOT/state) and keep changing the
 *                                          desired revision at random moments (rev n runs
 *                                          artifact v((n-1)%3+1); every 7th is a stop
 *                                          instead), forever: the test
 *                                          kill -9s it
 *   reconcile_crasher ROOT resume [close]  "resume only": resume the journal, assert the
 *                                          last desired revision again (as the agent does
 *                                          on start), wait until the reconciler is idle,
 *                                          then check and exit 0 (all good) or 1. With
 *                                          "close" the reconciler is closed at the end
 *                                          (which stops the service); without, the process
 *                                          exits leaving the service running, orphaned like
 *                                          after a crash, for the next "loop" run to meet.
 *
 * The desired revision is written to ROOT/desired (tmp + rename) before the reconciler is
 * told, like the agent's store holds the revisions it acts on. The service's run.sh writes
 * RC_MARK_DIR/crash.marker ("rev pid"); RC_TAG marks its processes (reconcile_harness.h).
 *
 * Checks of "resume": the marker names the desired revision and a live process;
 * store_service_state says running = that revision and its artifact; the journal is empty;
 * every live process tagged RC_TAG belongs to one process group, the marker process's,
 * and runs the desired revision.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/node/reconcile.h"
#include "reconcile_harness.h"

#define SERVICE "crash"

struct drv {
	uv_loop_t loop;
	struct store *s;
	struct reconcile *r;
	const char *root;
	char state[1024];
	struct store_id ids[3];
	uint64_t desired;
	uint64_t swapped_ok;
	uint32_t rnd;
	uv_timer_t t;
	int closed;
};

static uint32_t rnd(struct drv *d)
{
	/* xorshift32: reproducible from the seed */
	d->rnd ^= d->rnd << 13;
	d->rnd ^= d->rnd >> 17;
	d->rnd ^= d->rnd << 5;
	return d->rnd;
}

static int read_ids(struct drv *d)
{
	char path[1100], hex[3][STORE_ID_HEXLEN + 1];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "%s/ids", d->root);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	n = fscanf(f, "%64s %64s %64s", hex[0], hex[1], hex[2]);
	fclose(f);
	if (n != 3)
		return -EBADMSG;
	for (int i = 0; i < 3; i++)
		if (store_id_parse(hex[i], &d->ids[i]) < 0)
			return -EBADMSG;
	return 0;
}

static uint64_t read_desired(struct drv *d)
{
	char path[1100];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/desired", d->root);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static int write_desired(struct drv *d, uint64_t rev)
{
	char path[1100], tmp[1100];
	FILE *f;

	snprintf(path, sizeof(path), "%s/desired", d->root);
	snprintf(tmp, sizeof(tmp), "%s/desired.tmp", d->root);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%" PRIu64 "\n", rev);
	if (fclose(f) != 0)
		return -EIO;
	return rename(tmp, path) < 0 ? -errno : 0;
}

/* Every RC_STOP_EVERY-th desired revision is "stop" (reconcile_set_desired(rev 0)). */
#define RC_STOP_EVERY 7

static bool is_stop(uint64_t n)
{
	return n % RC_STOP_EVERY == 0;
}

static const struct store_id *art_of(struct drv *d, uint64_t rev)
{
	return &d->ids[(rev - 1) % 3];
}

static int desire(struct drv *d, uint64_t n)
{
	if (is_stop(n))
		return reconcile_set_desired(d->r, SERVICE, 0, NULL);
	return reconcile_set_desired(d->r, SERVICE, n, art_of(d, n));
}

static void on_swapped(void *ud, const char *service, uint64_t rev, const struct store_id *art,
		       int status)
{
	struct drv *d = ud;

	if (status == 0)
		d->swapped_ok = rev;
	else
		fprintf(stderr, "crasher: swap to rev %" PRIu64 " failed: %s\n", rev,
			store_strerror(status));
}

static void on_state(void *ud, const struct reconcile_event *ev)
{
	(void)ud;
	if (getenv("RC_DEBUG"))
		fprintf(stderr, "[%ld] %s %s rev %" PRIu64 " step %s st=%d pid=%ld\n",
			(long)getpid(), reconcile_event_name(ev->kind), ev->service, ev->rev,
			reconcile_step_name(ev->step), ev->st ? (int)ev->st->state : -1,
			ev->st ? (long)ev->st->pid : 0L);
	if (ev->kind == RECONCILE_EV_JOURNAL_BAD || ev->kind == RECONCILE_EV_RETRY)
		fprintf(stderr, "crasher: %s %s rev %" PRIu64 " step %s: %s\n",
			reconcile_event_name(ev->kind), ev->service, ev->rev,
			reconcile_step_name(ev->step), store_strerror(ev->status));
}

static void on_closed(void *ud)
{
	((struct drv *)ud)->closed = 1;
}

static void set_next(struct drv *d)
{
	d->desired++;
	if (write_desired(d, d->desired) < 0 || desire(d, d->desired) < 0) {
		fprintf(stderr, "crasher: cannot set desired\n");
		exit(2);
	}
}

/* loop mode: a new desired revision every 0..150 ms, mid-swap or not */
static void tick(uv_timer_t *t)
{
	struct drv *d = t->data;

	set_next(d);
	uv_timer_start(&d->t, tick, rnd(d) % 150, 0);
}

static int open_all(struct drv *d)
{
	struct store_opts so = { 0 };
	struct plugin_config pc = { 0 };
	struct reconcile_callbacks cbs = { 0 };
	struct reconcile_opts ro = { .retry_min_ms = 50, .retry_max_ms = 500 };
	char path[1100];
	int r;

	if (uv_loop_init(&d->loop) < 0)
		return -EIO;
	snprintf(path, sizeof(path), "%s/store", d->root);
	so.path = path;
	so.nosync = true;	/* a process crash loses nothing LMDB wrote; no host crash here */
	r = store_open(&so, &d->s);
	if (r < 0)
		return r;
	snprintf(d->state, sizeof(d->state), "%s/state", d->root);
	if (mkdir(d->state, 0700) < 0 && errno != EEXIST)
		return -errno;
	pc.state_dir = d->state;
	pc.stop_timeout_ms = 3000;
	pc.settle_ms = 100;
	cbs.on_swapped = on_swapped;
	cbs.on_state = on_state;
	cbs.ud = d;
	return reconcile_new(&d->loop, d->s, &pc, &cbs, &ro, &d->r);
}

static int do_setup(struct drv *d)
{
	struct store_opts so = { 0 };
	char path[1100], hex[3][STORE_ID_HEXLEN + 1];
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/store", d->root);
	so.path = path;
	r = store_open(&so, &d->s);
	if (r < 0)
		return r;
	for (int i = 0; i < 3 && r >= 0; i++) {
		char ver[8];

		snprintf(ver, sizeof(ver), "%d", i + 1);
		r = rh_make_artifact(d->s, d->root, SERVICE, ver, NULL, &d->ids[i]);
		store_id_hex(&d->ids[i], hex[i]);
	}
	store_close(d->s);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/ids", d->root);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "%s %s %s\n", hex[0], hex[1], hex[2]);
	return fclose(f) == 0 ? 0 : -EIO;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What "resume" waits for (besides an idle reconciler) before it checks. */
static bool converged(struct drv *d)
{
	uint64_t mrev = 0;
	long mpid = 0;

	if (is_stop(d->desired))
		return rh_scan(getenv("RC_TAG"), NULL, 0) == 0;
	return rh_read_marker(getenv("RC_MARK_DIR"), SERVICE, &mrev, &mpid) == 0 &&
	       mrev == d->desired && rh_alive(mpid);
}

/* desired = stop: nothing recorded running, no journal, no instance alive */
static int check_stopped(struct drv *d, const char *tag)
{
	struct store_service_state st;
	int r, n, bad = 0;

	r = store_service_state_get(d->s, SERVICE, &st);
	if (r < 0 || st.running_rev != 0) {
		fprintf(stderr, "FAIL state: r=%d running_rev %" PRIu64 ", desired stop\n", r,
			st.running_rev);
		bad++;
	}
	r = rh_journal_count(d->s);
	if (r != 0) {
		fprintf(stderr, "FAIL journal: %d entries left\n", r);
		bad++;
	}
	n = rh_scan(tag, NULL, 0);
	if (n != 0) {
		fprintf(stderr, "FAIL instances: %d alive, desired stop\n", n);
		bad++;
	}
	if (!bad)
		printf("OK stopped (desired %" PRIu64 ")\n", d->desired);
	return bad ? 1 : 0;
}

static int check(struct drv *d)
{
	const char *tag = getenv("RC_TAG"), *mark = getenv("RC_MARK_DIR");
	struct store_service_state st;
	struct rh_proc p[32];
	uint64_t mrev = 0;
	long mpid = 0, pgid;
	int n, bad = 0, r;

	if (is_stop(d->desired))
		return check_stopped(d, tag);
	r = rh_read_marker(mark, SERVICE, &mrev, &mpid);
	if (r < 0 || mrev != d->desired || !rh_alive(mpid)) {
		fprintf(stderr, "FAIL marker: r=%d rev %" PRIu64 " pid %ld alive %d, desired %"
			PRIu64 "\n", r, mrev, mpid, rh_alive(mpid), d->desired);
		bad++;
	}
	r = store_service_state_get(d->s, SERVICE, &st);
	if (r != 0 || st.running_rev != d->desired ||
	    memcmp(&st.running, art_of(d, d->desired), sizeof(st.running)) != 0) {
		fprintf(stderr, "FAIL state: r=%d running_rev %" PRIu64 ", desired %" PRIu64 "\n",
			r, st.running_rev, d->desired);
		bad++;
	}
	r = rh_journal_count(d->s);
	if (r != 0) {
		fprintf(stderr, "FAIL journal: %d entries left\n", r);
		bad++;
	}
	pgid = getpgid((pid_t)mpid);
	n = rh_scan(tag, p, 32);
	for (int i = 0; i < n && i < 32; i++)
		if (p[i].pgid != pgid || p[i].rev != d->desired) {
			fprintf(stderr, "FAIL instances: pid %ld pgid %ld rev %" PRIu64
				" besides group %ld of rev %" PRIu64 "\n", p[i].pid, p[i].pgid,
				p[i].rev, pgid, d->desired);
			bad++;
		}
	if (n < 1) {
		fprintf(stderr, "FAIL instances: none alive\n");
		bad++;
	}
	/* materialized trees do not pile up: what runs, the one before, and at most one
	 * leftover of an interrupted materialize (removed by the next one) */
	{
		char adir[1100];

		snprintf(adir, sizeof(adir), "%s/artifacts/" SERVICE, d->state);
		r = rh_count_entries(adir);
		if (r < 1 || r > 3) {
			fprintf(stderr, "FAIL artifacts dir: %d entries\n", r);
			bad++;
		}
	}
	if (!bad)
		printf("OK rev %" PRIu64 " pid %ld pgid %ld instances %d dirs %d\n", d->desired,
		       mpid, pgid, n, r);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct drv d = { 0 };
	int r;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ROOT setup|loop SEED|resume [close]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	d.root = argv[1];
	if (strcmp(argv[2], "setup") == 0) {
		r = do_setup(&d);
		if (r < 0)
			fprintf(stderr, "crasher: setup: %s\n", store_strerror(r));
		return r < 0 ? 1 : 0;
	}
	r = read_ids(&d);
	if (r == 0)
		r = open_all(&d);
	if (r < 0) {
		fprintf(stderr, "crasher: start: %s\n", store_strerror(r));
		return 2;
	}
	r = reconcile_resume(d.r);
	if (r < 0) {
		fprintf(stderr, "crasher: resume: %s\n", store_strerror(r));
		return 2;
	}
	d.desired = read_desired(&d);

	if (strcmp(argv[2], "loop") == 0 && argc >= 4) {
		d.rnd = (uint32_t)strtoul(argv[3], NULL, 10) | 1;
		if (d.desired)
			desire(&d, d.desired);
		uv_timer_init(&d.loop, &d.t);
		d.t.data = &d;
		uv_timer_start(&d.t, tick, rnd(&d) % 150, 0);
		uv_run(&d.loop, UV_RUN_DEFAULT);	/* until kill -9 */
		return 3;
	}
	if (strcmp(argv[2], "resume") == 0) {
		bool do_close = argc >= 4 && strcmp(argv[3], "close") == 0;
		uint64_t end = mono_ms() + 20000;

		if (!d.desired)
			set_next(&d);
		else
			desire(&d, d.desired);
		/* idle, and the new instance had time to write its marker */
		while (mono_ms() < end) {
			uv_run(&d.loop, UV_RUN_NOWAIT);
			if (reconcile_idle(d.r) && converged(&d))
				break;
			usleep(5000);
		}
		r = check(&d);
		if (!do_close) {
			/* leave the service orphaned, as a crash would; skip leak checks */
			store_close(d.s);
			fflush(NULL);
			_exit(r);
		}
		reconcile_close(d.r, on_closed, &d);
		end = mono_ms() + 20000;
		while (!d.closed && mono_ms() < end)
			uv_run(&d.loop, UV_RUN_ONCE);
		if (!d.closed) {
			fprintf(stderr, "FAIL close timed out\n");
			r = 1;
		} else {
			uv_run(&d.loop, UV_RUN_NOWAIT);
			uv_loop_close(&d.loop);
		}
		store_close(d.s);
		return r;
	}
	fprintf(stderr, "crasher: unknown mode %s\n", argv[2]);
	return 2;
}
