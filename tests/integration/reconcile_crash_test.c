/*
 * tests/integration/reconcile_crash_test.c: kill -9 the reconciler at random moments and
 * check that "resume only" always ends with the service running exactly its desired
 * revision (DESIGN.md "Swapping a service": never half-swapped).
 *
 * 20 rounds (RC_ROUNDS overrides), seed printed (RC_SEED overrides): each round starts
 * reconcile_crasher in "loop" mode (it keeps changing the desired revision of an exec
 * service, mid-swap or not), SIGKILLs it after a random 30..600 ms, records which step the
 * journal says it was in, then runs "reconcile_crasher resume" (bounded) whose own checks
 * (marker = desired rev, store state agrees, journal empty, one process group alive, of the
 * desired rev) must pass. This process checks the instances once more from outside. The
 * last resume closes the reconciler (which stops the service); whatever is left tagged with
 * this run's RC_TAG is killed by PID and the temp dir removed, also on failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/node/reconcile.h"
#include "reconcile_harness.h"

#ifndef RECONCILE_CRASHER
#define RECONCILE_CRASHER "./reconcile_crasher"
#endif

static char g_root[1024];
static char g_tag[64];

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void cleanup(void)
{
	if (g_tag[0])
		rh_kill_tagged(g_tag);
	if (g_root[0])
		rh_rm_rf(g_root);
}

static pid_t spawn(const char *mode, const char *arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		execl(RECONCILE_CRASHER, RECONCILE_CRASHER, g_root, mode, arg, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait for @pid at most @ms; SIGKILL it past that. Returns its exit code, or -1. */
static int wait_bounded(pid_t pid, unsigned ms)
{
	uint64_t end = mono_ms() + ms;
	int st;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (w < 0)
			return -1;
		if (mono_ms() > end) {
			fprintf(stderr, "pid %ld over %u ms: killed\n", (long)pid, ms);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(5000);
	}
}

struct jstep {
	int n;
	struct reconcile_journal j;
	int err;
};

static int jcb(const char *service, const void *buf, size_t len, void *ud)
{
	struct jstep *js = ud;

	js->n++;
	js->err = reconcile__journal_decode(buf, len, &js->j);
	return 0;
}

/* What the journal holds right after a kill (the step the swap was in), or "none". */
static const char *journal_step(void)
{
	struct store_opts so = { 0 };
	struct store *s;
	struct jstep js = { 0 };
	char path[1100];

	snprintf(path, sizeof(path), "%s/store", g_root);
	so.path = path;
	so.nosync = true;
	if (store_open(&so, &s) < 0)
		return "store-error";
	store_journal_foreach(s, jcb, &js);
	store_close(s);
	if (js.n == 0)
		return "none";
	if (js.err < 0)
		return "undecodable";
	return reconcile_step_name(js.j.step);
}

/* The crasher's last desired revision (multiples of 7 are stops, as in the crasher). */
static unsigned long long read_desired(void)
{
	char path[1100];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/desired", g_root);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

int main(void)
{
	const char *tmp = getenv("TMPDIR"), *e;
	unsigned seed, rounds = 20, counts[7] = { 0 };
	const char *names[7] = { "none", "materialize", "prepare", "stop-prev", "activate",
				 "deactivate", "other" };
	uint64_t t0 = mono_ms();
	int rc = 1;

	e = getenv("RC_SEED");
	seed = e ? (unsigned)strtoul(e, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
	e = getenv("RC_ROUNDS");
	if (e)
		rounds = (unsigned)strtoul(e, NULL, 10);
	printf("reconcile crash test: seed %u (RC_SEED=%u to replay), %u rounds\n", seed, seed,
	       rounds);
	srand(seed);
	if (access(RECONCILE_CRASHER, X_OK) < 0) {
		printf("SKIP: %s not built\n", RECONCILE_CRASHER);
		return 77;
	}
	snprintf(g_root, sizeof(g_root), "%s/shoal-rcrash-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(g_root)) {
		perror("mkdtemp");
		g_root[0] = '\0';
		return 1;
	}
	snprintf(g_tag, sizeof(g_tag), "crash-%ld-%u", (long)getpid(), seed);
	setenv("RC_TAG", g_tag, 1);
	setenv("RC_MARK_DIR", g_root, 1);
	/* the driver's exits under ASan without close are deliberate (_exit): no leak report */

	if (wait_bounded(spawn("setup", NULL), 30000) != 0) {
		fprintf(stderr, "FAIL: setup\n");
		goto out;
	}
	for (unsigned i = 0; i < rounds; i++) {
		char arg[32];
		unsigned delay = 30 + (unsigned)rand() % 571;
		const char *step;
		pid_t pid;
		int k, code;
		struct rh_proc p[32];
		uint64_t mrev = 0;
		long mpid = 0;

		snprintf(arg, sizeof(arg), "%u", (unsigned)rand());
		pid = spawn("loop", arg);
		if (pid < 0) {
			perror("fork");
			goto out;
		}
		usleep(delay * 1000);
		kill(pid, SIGKILL);
		code = wait_bounded(pid, 5000);
		if (code != -1) {	/* it must have been running until the kill */
			fprintf(stderr, "FAIL: round %u: loop driver exited by itself (%d)\n",
				i + 1, code);
			goto out;
		}
		step = journal_step();
		for (k = 0; k < 6 && strcmp(names[k], step) != 0; k++)
			;
		counts[k]++;
		code = wait_bounded(spawn("resume", i + 1 == rounds ? "close" : NULL), 20000);
		printf("round %2u: killed after %3u ms in step %-11s -> resume exit %d\n", i + 1,
		       delay, step, code);
		if (code != 0) {
			fprintf(stderr, "FAIL: round %u (seed %u): resume exit %d\n", i + 1, seed,
				code);
			goto out;
		}
		if (i + 1 == rounds) {
			/* closed: the service was stopped with the reconciler */
			k = rh_scan(g_tag, p, 32);
			if (k != 0) {
				fprintf(stderr, "FAIL: %d instances alive after close\n", k);
				goto out;
			}
			break;
		}
		/* from outside too: one group, the desired revision's (none for a stop) */
		if (read_desired() % 7 == 0) {
			k = rh_scan(g_tag, p, 32);
			if (k != 0) {
				fprintf(stderr, "FAIL: round %u: %d instances, desired stop\n",
					i + 1, k);
				goto out;
			}
			continue;
		}
		if (rh_read_marker(g_root, "crash", &mrev, &mpid) < 0 || !rh_alive(mpid)) {
			fprintf(stderr, "FAIL: round %u: no live marker process\n", i + 1);
			goto out;
		}
		k = rh_scan(g_tag, p, 32);
		for (int j = 0; j < k && j < 32; j++)
			if (p[j].pgid != getpgid((pid_t)mpid) || p[j].rev != mrev) {
				fprintf(stderr, "FAIL: round %u: pid %ld rev %" PRIu64
					" beside group of %ld rev %" PRIu64 "\n", i + 1, p[j].pid,
					p[j].rev, mpid, mrev);
				goto out;
			}
	}
	printf("interrupted steps:");
	for (int k = 0; k < 7; k++)
		if (counts[k])
			printf(" %s=%u", names[k], counts[k]);
	printf("\n%u rounds in %.1f s\n", rounds, (double)(mono_ms() - t0) / 1000.0);
	rc = 0;
out:
	cleanup();
	return rc;
}
