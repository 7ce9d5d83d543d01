/*
 * tests/unit/test_plugins_exec.c: the exec driver with real processes on a real libuv loop.
 *
 * Every test has its own loop and state directory; every wait is bounded by a deadline; every
 * callback is counted and the counts are asserted. Commands run through /bin/sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugins/plugin.h"

#define MAX_EV 256
#define MAX_LOG 64

struct ev {
	enum plugin_state state;
	uint64_t rev;
	int exit_status;
	uint32_t restarts;
	int64_t pid;
	uint64_t at;
	char detail[160];
};

struct ctx {
	uv_loop_t loop;
	struct plugin *p;
	char dir[PATH_MAX - 64];	/* state dir */
	char art[PATH_MAX];	/* an artifact dir */
	struct ev ev[MAX_EV];
	int nev;
	char log[MAX_LOG][PLUGIN_LOG_LINE_MAX + 1];
	int logfd[MAX_LOG];
	int nlog;
	size_t longest;
	int done_calls, done_status;
	char err[400];		/* plugin_last_error() as the done callback saw it */
	int status_calls, status_status;
	struct plugin_status st;
	int nev_at_status;	/* events seen when the status callback ran */
	int close_calls;
	int order;		/* sequence counter for ordering checks */
	int done_order, close_order;
};

/*
 * What a failed test leaves behind (cmocka jumps out of it, past its teardown): the temp
 * dirs, and the process groups its children lead. main() removes the dirs and SIGKILLs a
 * group only while its leader is still our own (unreaped) child, so the id cannot have been
 * recycled.
 */
static char leftover_dirs[32][PATH_MAX];
static int nleftover_dirs;
static pid_t leftover_pids[512];
static int nleftover_pids;
static char leftover_cgroup[2][PATH_MAX + 32];	/* test_adopt's scope cgroup, its parent */

static void leftovers_cleanup(void)
{
	char cmd[PATH_MAX + 16], path[64], buf[512], *q;
	int ppid;

	for (int i = 0; i < nleftover_pids; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)leftover_pids[i]);
		f = fopen(path, "r");
		if (!f)
			continue;
		q = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (q && sscanf(q + 1, " %*c %d", &ppid) == 1 && ppid == (int)getpid())
			kill(-leftover_pids[i], SIGKILL);
	}
	for (int i = 0; i < 2; i++)
		if (leftover_cgroup[i][0] && rmdir(leftover_cgroup[i]) < 0)
			fprintf(stderr, "could not remove cgroup %s\n", leftover_cgroup[i]);
	for (int i = 0; i < nleftover_dirs; i++) {
		if (!leftover_dirs[i][0])
			continue;
		if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", leftover_dirs[i]) >= (int)sizeof(cmd))
			continue;
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", leftover_dirs[i]);
	}
}

static void on_event(struct plugin *p, const char *service, const struct plugin_status *st,
		     void *ud)
{
	struct ctx *c = ud;

	if (st->state == PLUGIN_STARTING && st->pid > 0 && nleftover_pids < 512)
		leftover_pids[nleftover_pids++] = (pid_t)st->pid;

	assert_string_equal(service, "web");
	if (c->nev < MAX_EV) {
		struct ev *e = &c->ev[c->nev++];

		e->state = st->state;
		e->rev = st->rev;
		e->exit_status = st->exit_status;
		e->restarts = st->restarts;
		e->pid = st->pid;
		e->at = uv_now(&c->loop);
		snprintf(e->detail, sizeof(e->detail), "%s", st->detail);
	}
}

static void on_log(struct plugin *p, const char *service, int fd, const char *line, void *ud)
{
	struct ctx *c = ud;
	size_t n = strlen(line);

	assert_string_equal(service, "web");
	if (n > c->longest)
		c->longest = n;
	if (c->nlog < MAX_LOG) {
		snprintf(c->log[c->nlog], sizeof(c->log[0]), "%s", line);
		c->logfd[c->nlog++] = fd;
	}
}

static void done_cb(struct plugin *p, const char *service, int status, void *ud)
{
	struct ctx *c = ud;

	c->done_calls++;
	c->done_status = status;
	c->done_order = ++c->order;
	snprintf(c->err, sizeof(c->err), "%s", plugin_last_error(p, service));
}

static void status_cb(struct plugin *p, const char *service, int status,
		      const struct plugin_status *st, void *ud)
{
	struct ctx *c = ud;

	c->status_calls++;
	c->status_status = status;
	c->nev_at_status = c->nev;
	if (st)
		c->st = *st;
}

static void close_cb(struct plugin *p, void *ud)
{
	struct ctx *c = ud;

	c->close_calls++;
	c->close_order = ++c->order;
}

static void wake_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until @pred holds or @ms pass; returns whether @pred holds. */
static bool run_until(struct ctx *c, bool (*pred)(struct ctx *c), uint64_t ms)
{
	uv_timer_t wake;
	uint64_t end;
	bool ok;

	uv_update_time(&c->loop);
	end = uv_now(&c->loop) + ms;
	uv_timer_init(&c->loop, &wake);
	uv_timer_start(&wake, wake_cb, 10, 10);
	while (!(ok = pred(c)) && uv_now(&c->loop) < end)
		uv_run(&c->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wake, NULL);
	uv_run(&c->loop, UV_RUN_NOWAIT);
	return ok;
}

static bool p_done(struct ctx *c)
{
	return c->done_calls > 0;
}

static bool p_status(struct ctx *c)
{
	return c->status_calls > 0;
}

static bool p_closed(struct ctx *c)
{
	return c->close_calls > 0;
}

static int count_state(struct ctx *c, enum plugin_state s)
{
	int n = 0;

	for (int i = 0; i < c->nev; i++)
		n += c->ev[i].state == s;
	return n;
}

static const struct ev *last_ev(struct ctx *c)
{
	return c->nev ? &c->ev[c->nev - 1] : NULL;
}

static bool p_running(struct ctx *c)
{
	return c->nev && last_ev(c)->state == PLUGIN_RUNNING;
}

static bool has_log(struct ctx *c, int fd, const char *line)
{
	for (int i = 0; i < c->nlog; i++)
		if (c->logfd[i] == fd && strcmp(c->log[i], line) == 0)
			return true;
	return false;
}

/* The test's own view of a group: does any non-zombie process still have pgid @g? */
static bool group_alive(pid_t g)
{
	struct dirent *de;
	bool alive = false;
	DIR *d;

	if (kill(-g, 0) < 0 && errno == ESRCH)
		return false;
	d = opendir("/proc");
	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[300], buf[512], *q, st;
		long pgid;
		FILE *f;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(buf, sizeof(buf), f)) {
			fclose(f);
			continue;
		}
		fclose(f);
		q = strrchr(buf, ')');
		if (q && sscanf(q + 1, " %c %*d %ld", &st, &pgid) == 2 && pgid == g && st != 'Z')
			alive = true;
	}
	closedir(d);
	return alive;
}

static void setup_ctx(struct ctx *c, struct plugin_config *cfg)
{
	const char *tmp = getenv("TMPDIR");

	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	snprintf(c->dir, sizeof(c->dir), "%s/shoal-exec-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	if (nleftover_dirs < 32)
		snprintf(leftover_dirs[nleftover_dirs++], PATH_MAX, "%s", c->dir);
	snprintf(c->art, sizeof(c->art), "%s/art", c->dir);
	assert_int_equal(mkdir(c->art, 0755), 0);
	cfg->state_dir = c->dir;
	cfg->on_event = on_event;
	cfg->on_log = on_log;
	cfg->ud = c;
	if (!cfg->settle_ms)
		cfg->settle_ms = 100;
	if (!cfg->stop_timeout_ms)
		cfg->stop_timeout_ms = 2000;
	assert_int_equal(plugin_new(&c->loop, &plugin_exec_ops, cfg, &c->p), 0);
}

static void teardown_ctx(struct ctx *c)
{
	char cmd[PATH_MAX + 16];

	if (c->p) {
		int before = c->close_calls;

		plugin_close(c->p, close_cb, c);
		assert_int_equal(c->close_calls, before); /* never from inside plugin_close */
		assert_true(run_until(c, p_closed, 15000));
		assert_int_equal(c->close_calls, before + 1);
		c->p = NULL;
	}
	/* nothing may be left on the loop */
	assert_int_equal(uv_run(&c->loop, UV_RUN_NOWAIT), 0);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	for (int i = 0; i < nleftover_dirs; i++)
		if (strcmp(leftover_dirs[i], c->dir) == 0)
			leftover_dirs[i][0] = '\0';
}

static struct store_manifest mf(const char *command)
{
	struct store_manifest m;

	memset(&m, 0, sizeof(m));
	m.service = "web";
	m.runtime = "exec";
	m.exec_command = (char *)command;
	return m;
}

static struct plugin_instance inst(struct ctx *c, uint64_t rev, const struct store_manifest *m)
{
	struct plugin_instance in;

	memset(&in, 0, sizeof(in));
	in.service = "web";
	in.rev = rev;
	for (int i = 0; i < STORE_ID_LEN; i++)
		in.artifact.b[i] = (uint8_t)(i * 7 + rev);
	in.manifest = m;
	in.dir = c->art;
	return in;
}

static void activate_ok(struct ctx *c, uint64_t rev, const char *command)
{
	struct store_manifest m = mf(command);
	struct plugin_instance in = inst(c, rev, &m);

	c->done_calls = 0;
	assert_int_equal(plugin_activate(c->p, &in, done_cb, c), 0);
	assert_int_equal(c->done_calls, 0);
	assert_true(run_until(c, p_done, 10000));
	assert_int_equal(c->done_calls, 1);
	assert_int_equal(c->done_status, 0);
}

static void deactivate_ok(struct ctx *c)
{
	c->done_calls = 0;
	assert_int_equal(plugin_deactivate(c->p, "web", done_cb, c), 0);
	assert_int_equal(c->done_calls, 0);
	assert_true(run_until(c, p_done, 15000));
	assert_int_equal(c->done_calls, 1);
	assert_int_equal(c->done_status, 0);
}

static struct plugin_status status_ok(struct ctx *c)
{
	c->status_calls = 0;
	assert_int_equal(plugin_status(c->p, "web", status_cb, c), 0);
	assert_int_equal(c->status_calls, 0);
	assert_true(run_until(c, p_status, 5000));
	assert_int_equal(c->status_calls, 1);
	assert_int_equal(c->status_status, 0);
	return c->st;
}

static bool pidfile_exists(struct ctx *c)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/run/web.pid", c->dir);
	return access(path, F_OK) == 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_names(void **state)
{
	assert_ptr_equal(plugin_ops_by_name("exec"), &plugin_exec_ops);
	assert_ptr_equal(plugin_ops_by_name("systemd"), &plugin_systemd_ops);
	assert_ptr_equal(plugin_ops_by_name("container"), &plugin_container_ops);
	assert_null(plugin_ops_by_name("nope"));
	assert_null(plugin_ops_by_name(NULL));
	assert_string_equal(plugin_state_name(PLUGIN_STOPPED), "stopped");
	assert_string_equal(plugin_state_name(PLUGIN_STARTING), "starting");
	assert_string_equal(plugin_state_name(PLUGIN_RUNNING), "running");
	assert_string_equal(plugin_state_name(PLUGIN_FAILED), "failed");
	assert_string_equal(plugin_state_name(PLUGIN_RESTARTING), "restarting");
	assert_string_equal(plugin_state_name((enum plugin_state)42), "unknown");
	assert_true(plugin__valid_service("web-1.a_b"));
	assert_false(plugin__valid_service(".."));
	assert_false(plugin__valid_service("a/b"));
	assert_false(plugin__valid_service(""));
}

static void test_new_errors(void **state)
{
	struct plugin_config cfg = { .state_dir = "relative" };
	struct plugin *p = (struct plugin *)0x1;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(plugin_new(&loop, &plugin_exec_ops, &cfg, &p), -EINVAL);
	assert_ptr_equal(p, (struct plugin *)0x1);
	cfg.state_dir = NULL;
	assert_int_equal(plugin_new(&loop, &plugin_exec_ops, &cfg, &p), -EINVAL);
	assert_int_equal(plugin_new(NULL, &plugin_exec_ops, &cfg, &p), -EINVAL);
	plugin_close(NULL, NULL, NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_start_log_env_stop(void **state)
{
	struct plugin_config cfg = { 0 };
	struct plugin_status st;
	struct ctx c;
	char want[PATH_MAX + 200], hex[STORE_ID_HEXLEN + 1];
	struct store_manifest m = mf("x");
	struct plugin_instance in;
	pid_t pid;

	setup_ctx(&c, &cfg);
	in = inst(&c, 3, &m);
	activate_ok(&c, 3, "echo hello; echo oops >&2; echo \"$SHOAL_SERVICE $SHOAL_REV "
			   "$SHOAL_ARTIFACT $SHOAL_DIR\"; pwd; printf 'no newline'; exec sleep 60");
	assert_true(run_until(&c, p_running, 5000));
	/* STARTING at spawn, RUNNING after settle */
	assert_int_equal(c.nev, 2);
	assert_int_equal(c.ev[0].state, PLUGIN_STARTING);
	assert_int_equal(c.ev[1].state, PLUGIN_RUNNING);
	assert_int_equal(c.ev[1].rev, 3);
	assert_true(c.ev[1].at - c.ev[0].at >= 90);
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_RUNNING);
	assert_int_equal(st.rev, 3);
	assert_true(st.pid > 0);
	pid = (pid_t)st.pid;
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(getpgid(pid), pid); /* own process group */
	assert_int_equal(getsid(pid), pid);  /* own session */
	assert_true(pidfile_exists(&c));
	assert_true(has_log(&c, 1, "hello"));
	assert_true(has_log(&c, 2, "oops"));
	snprintf(want, sizeof(want), "web 3 %s %s", plugin__id_hex(&in.artifact, hex), c.art);
	assert_true(has_log(&c, 1, want));
	assert_true(has_log(&c, 1, c.art)); /* cwd is the artifact dir */
	assert_false(has_log(&c, 1, "no newline")); /* partial line kept until EOF */

	deactivate_ok(&c);
	assert_int_equal(last_ev(&c)->state, PLUGIN_STOPPED);
	assert_false(group_alive(pid));
	assert_false(pidfile_exists(&c));
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	assert_int_equal(st.exit_status, 128 + SIGTERM);
	/* deactivate again: nothing to do, still exactly one callback, no event */
	{
		int nev = c.nev;

		deactivate_ok(&c);
		assert_int_equal(c.nev, nev);
	}
	teardown_ctx(&c);
}

static bool p_tail(struct ctx *c)
{
	return has_log(c, 1, "tail");
}

static void test_long_lines(void **state)
{
	struct plugin_config cfg = { 0 };
	struct ctx c;

	setup_ctx(&c, &cfg);
	/* 10000 'a' then "tail": the first line is cut at PLUGIN_LOG_LINE_MAX, its rest dropped */
	activate_ok(&c, 1, "head -c 10000 /dev/zero | tr '\\0' a; echo; echo tail; exec sleep 60");
	assert_true(run_until(&c, p_running, 5000));
	/* (this waited with p_running, which holds at once: under load "tail" was not read yet) */
	assert_true(run_until(&c, p_tail, 5000));
	assert_int_equal(c.longest, PLUGIN_LOG_LINE_MAX);
	assert_int_equal(c.nlog, 2);
	teardown_ctx(&c);
}

static bool p_4restarts(struct ctx *c)
{
	return count_state(c, PLUGIN_STARTING) >= 5;
}

static void test_crash_restart_backoff(void **state)
{
	/* settle 2 s: a child that exits at once must never be called running, even on a
	 * loaded machine */
	struct plugin_config cfg = { .restart_min_ms = 50, .restart_max_ms = 400,
				     .restart_burst = 50, .settle_ms = 2000 };
	uint64_t starts[8];
	int n = 0;
	struct plugin_status st;
	struct ctx c;

	setup_ctx(&c, &cfg);
	activate_ok(&c, 1, "echo run; exit 3");
	assert_true(run_until(&c, p_4restarts, 10000));
	for (int i = 0; i < c.nev && n < 8; i++)
		if (c.ev[i].state == PLUGIN_STARTING)
			starts[n++] = c.ev[i].at;
	/* back-off doubles: 50, 100, 200, 400 between consecutive starts */
	for (int i = 1; i < 5; i++) {
		uint64_t gap = starts[i] - starts[i - 1];
		uint64_t want = 50u << (i - 1);

		print_message("restart %d: gap %" PRIu64 " ms (back-off %" PRIu64 ")\n", i, gap,
			      want);
		assert_in_range(gap, want, want + 1000);
	}
	for (int i = 0; i < c.nev; i++)
		if (c.ev[i].state == PLUGIN_RESTARTING) {
			assert_int_equal(c.ev[i].exit_status, 3);
			assert_non_null(strstr(c.ev[i].detail, "exited 3"));
		}
	assert_int_equal(count_state(&c, PLUGIN_RUNNING), 0); /* never stayed up 100 ms */
	st = status_ok(&c);
	assert_true(st.restarts >= 4);
	{
		int seen = 0;

		for (int i = 0; i < c.nev_at_status; i++)
			seen += c.ev[i].state == PLUGIN_RESTARTING;
		assert_int_equal(st.restarts, seen);
	}
	assert_true(has_log(&c, 1, "run"));
	deactivate_ok(&c);
	assert_int_equal(last_ev(&c)->state, PLUGIN_STOPPED);
	/* no restart after deactivate */
	{
		int nev = c.nev;

		run_until(&c, p_closed, 600);
		assert_int_equal(c.nev, nev);
	}
	teardown_ctx(&c);
}

static bool p_failed(struct ctx *c)
{
	return c->nev && last_ev(c)->state == PLUGIN_FAILED;
}

static void test_restart_loop_failed(void **state)
{
	struct plugin_config cfg = { .restart_min_ms = 20, .restart_burst = 3,
				     .restart_window_ms = 10000 };
	struct plugin_status st;
	struct ctx c;
	int nev;

	setup_ctx(&c, &cfg);
	activate_ok(&c, 1, "exit 7");
	assert_true(run_until(&c, p_failed, 5000));
	assert_int_equal(count_state(&c, PLUGIN_RESTARTING), 3);
	assert_int_equal(count_state(&c, PLUGIN_STARTING), 4);
	assert_int_equal(count_state(&c, PLUGIN_FAILED), 1);
	assert_non_null(strstr(last_ev(&c)->detail, "restart loop"));
	assert_int_equal(last_ev(&c)->exit_status, 7);
	nev = c.nev;
	run_until(&c, p_closed, 500);
	assert_int_equal(c.nev, nev); /* given up: nothing more happens */
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_FAILED);
	assert_int_equal(st.restarts, 3);
	/* a new activate starts afresh */
	activate_ok(&c, 2, "exec sleep 60");
	assert_true(run_until(&c, p_running, 5000));
	st = status_ok(&c);
	assert_int_equal(st.restarts, 0);
	assert_int_equal(st.rev, 2);
	teardown_ctx(&c);
}

static void test_swap_kills_group(void **state)
{
	struct plugin_config cfg = { 0 };
	struct plugin_status st;
	struct ctx c;
	pid_t g1;
	int nev;

	setup_ctx(&c, &cfg);
	/* v1 forks two more processes into its group */
	activate_ok(&c, 1, "sleep 300 & sleep 301 & echo v1; wait");
	assert_true(run_until(&c, p_running, 5000));
	st = status_ok(&c);
	g1 = (pid_t)st.pid;
	assert_true(group_alive(g1));
	nev = c.nev;
	activate_ok(&c, 2, "echo v2; exec sleep 60");
	assert_false(group_alive(g1)); /* every member of v1's group is gone */
	/* STOPPED (rev 1) then STARTING (rev 2) */
	assert_true(c.nev >= nev + 2);
	assert_int_equal(c.ev[nev].state, PLUGIN_STOPPED);
	assert_int_equal(c.ev[nev].rev, 1);
	assert_int_equal(c.ev[nev + 1].state, PLUGIN_STARTING);
	assert_int_equal(c.ev[nev + 1].rev, 2);
	assert_true(run_until(&c, p_running, 5000));
	st = status_ok(&c);
	assert_int_equal(st.rev, 2);
	assert_true(st.pid != g1);
	assert_true(group_alive((pid_t)st.pid));
	/* and back to v1 */
	g1 = (pid_t)st.pid;
	activate_ok(&c, 1, "sleep 300 & echo v1; wait");
	assert_false(group_alive(g1));
	assert_true(run_until(&c, p_running, 5000));
	st = status_ok(&c);
	assert_int_equal(st.rev, 1);
	teardown_ctx(&c);
	assert_false(group_alive((pid_t)st.pid)); /* close stopped it */
}

static bool p_ready(struct ctx *c)
{
	return has_log(c, 1, "ready");
}

static void test_stop_timeout_sigkill(void **state)
{
	struct plugin_config cfg = { .stop_timeout_ms = 300 };
	struct plugin_status st;
	struct ctx c;
	uint64_t t0, el;

	setup_ctx(&c, &cfg);
	activate_ok(&c, 1, "trap '' TERM; echo ready; while :; do sleep 0.05; done");
	assert_true(run_until(&c, p_ready, 5000));
	st = status_ok(&c);
	uv_update_time(&c.loop);
	t0 = uv_now(&c.loop);
	deactivate_ok(&c);
	el = uv_now(&c.loop) - t0;
	print_message("stop of a TERM-ignoring group took %" PRIu64 " ms (timeout 300)\n", el);
	assert_in_range(el, 300, 3000);
	assert_false(group_alive((pid_t)st.pid));
	st = status_ok(&c);
	assert_int_equal(st.exit_status, 128 + SIGKILL);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	teardown_ctx(&c);
}

static bool p_restarting(struct ctx *c)
{
	return count_state(c, PLUGIN_RESTARTING) > 0;
}

static void test_errors(void **state)
{
	struct plugin_config cfg = { .restart_min_ms = 5000 };
	struct store_manifest m = mf("exec sleep 60");
	struct store_manifest none = mf(NULL);
	struct plugin_instance in;
	struct ctx c;
	char file[PATH_MAX + 16];
	int fd;

	setup_ctx(&c, &cfg);
	in = inst(&c, 1, &m);
	/* argument errors: returned, callback never called */
	in.manifest = &none;
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), -EINVAL);
	assert_int_equal(plugin_prepare(c.p, &in, done_cb, &c), -EINVAL);
	in.manifest = &m;
	in.service = "../x";
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), -EINVAL);
	assert_int_equal(plugin_deactivate(c.p, "a/b", done_cb, &c), -EINVAL);
	assert_int_equal(plugin_status(c.p, "", status_cb, &c), -EINVAL);
	in.service = "web";
	in.dir = "relative/dir";
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), -EINVAL);
	assert_int_equal(c.p->ops->forget(c.p, "web", 1), 0);

	/* missing directory: the callback says -ENOENT, nothing is started */
	in.dir = "/nonexistent/shoal-test-dir";
	c.done_calls = 0;
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), 0);
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), -EBUSY);
	assert_int_equal(plugin_status(c.p, "web", status_cb, &c), -EBUSY);
	assert_true(run_until(&c, p_done, 5000));
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.done_status, -ENOENT);
	assert_int_equal(c.nev, 0);
	/* ... and says so in words, from the callback on until the next operation */
	assert_string_equal(c.err,
			    "artifact directory /nonexistent/shoal-test-dir: no such file or directory");
	assert_string_equal(plugin_last_error(c.p, "web"), c.err);
	assert_string_equal(plugin_last_error(c.p, "other"), "");
	assert_string_equal(plugin_last_error(NULL, "web"), "");
	c.done_calls = 0;
	assert_int_equal(plugin_prepare(c.p, &in, done_cb, &c), 0);
	assert_true(run_until(&c, p_done, 5000));
	assert_int_equal(c.done_status, -ENOENT);
	/* a file, not a directory */
	snprintf(file, sizeof(file), "%s/file", c.dir);
	fd = open(file, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	in.dir = file;
	c.done_calls = 0;
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), 0);
	assert_true(run_until(&c, p_done, 5000));
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.done_status, -ENOTDIR);
	/* prepare of a good instance */
	in.dir = c.art;
	c.done_calls = 0;
	assert_int_equal(plugin_prepare(c.p, &in, done_cb, &c), 0);
	assert_true(run_until(&c, p_done, 5000));
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.done_status, 0);
	assert_int_equal(c.nev, 0);

	/* a command that does not exist: sh says 127, the supervisor restarts it */
	activate_ok(&c, 1, "/nonexistent/shoal-binary --flag");
	assert_true(run_until(&c, p_restarting, 5000));
	assert_int_equal(last_ev(&c)->exit_status, 127);
	assert_non_null(strstr(last_ev(&c)->detail, "exited 127"));
	/* deactivate while a restart is pending */
	deactivate_ok(&c);
	assert_int_equal(last_ev(&c)->state, PLUGIN_STOPPED);
	teardown_ctx(&c);
}

static int cancel_calls, cancel_status, cancel_order, status_cancel_calls;

static void cancel_done_cb(struct plugin *p, const char *service, int status, void *ud)
{
	struct ctx *c = ud;

	cancel_calls++;
	cancel_status = status;
	cancel_order = ++c->order;
}

static void cancel_status_cb(struct plugin *p, const char *service, int status,
			     const struct plugin_status *st, void *ud)
{
	status_cancel_calls++;
	assert_int_equal(status, -ECANCELED);
}

static void test_close_pending(void **state)
{
	struct plugin_config cfg = { .stop_timeout_ms = 300 };
	struct store_manifest m2 = mf("exec sleep 60");
	struct plugin_instance in;
	struct plugin_status st;
	struct plugin_config cfg2 = { 0 };
	struct ctx c;
	pid_t g;

	setup_ctx(&c, &cfg);
	activate_ok(&c, 1, "trap '' TERM; echo ready; while :; do sleep 0.05; done");
	assert_true(run_until(&c, p_ready, 5000));
	st = status_ok(&c);
	g = (pid_t)st.pid;
	/* the swap must wait for the TERM-ignoring v1: close while it does */
	in = inst(&c, 2, &m2);
	cancel_calls = 0;
	assert_int_equal(plugin_activate(c.p, &in, cancel_done_cb, &c), 0);
	run_until(&c, p_closed, 50);
	assert_int_equal(cancel_calls, 0);
	plugin_close(c.p, close_cb, &c);
	assert_int_equal(cancel_calls, 0);
	assert_true(run_until(&c, p_closed, 10000));
	assert_int_equal(cancel_calls, 1);
	assert_int_equal(cancel_status, -ECANCELED);
	assert_int_equal(c.close_calls, 1);
	assert_true(cancel_order < c.close_order);
	assert_false(group_alive(g));
	c.p = NULL;
	teardown_ctx(&c);

	/* a deferred status and a deactivate of another plugin, closed before the loop ran */
	setup_ctx(&c, &cfg2);
	status_cancel_calls = 0;
	assert_int_equal(plugin_status(c.p, "web", cancel_status_cb, &c), 0);
	plugin_close(c.p, close_cb, &c);
	assert_int_equal(status_cancel_calls, 0);
	assert_true(run_until(&c, p_closed, 5000));
	assert_int_equal(status_cancel_calls, 1);
	assert_int_equal(c.close_calls, 1);
	c.p = NULL;
	teardown_ctx(&c);
}

/* A process group left behind by a "killed agent": we fork it ourselves and write its pid
 * file the way the driver does. */
static pid_t fake_orphan(struct ctx *c, bool right_start, bool full)
{
	char path[PATH_MAX + 32], buf[1024], *q;
	unsigned long long start = 0;
	pid_t pid = fork();
	FILE *f;

	assert_true(pid >= 0);
	if (pid == 0) {
		setsid();
		execl("/bin/sh", "sh", "-c", "sleep 300 & exec sleep 300", (char *)NULL);
		_exit(127);
	}
	if (nleftover_pids < 512)
		leftover_pids[nleftover_pids++] = pid;
	usleep(100 * 1000);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	q = strrchr(buf, ')');
	assert_int_equal(sscanf(q + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d"
				" %*d %*d %*d %*d %*d %llu", &start), 1);
	snprintf(path, sizeof(path), "%s/run/web.pid", c->dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%d %llu 4", (int)pid, right_start ? start : start + 1);
	/* the form written with scopes: artifact, scope, directory, command */
	if (full)
		fprintf(f, " %064d shoal-exec-web.scope\n%s\nexec sleep 300", 7, c->art);
	fprintf(f, "\n");
	fclose(f);
	return pid;
}

static void reap(pid_t pid)
{
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		usleep(10 * 1000);
	}
	fail_msg("pid %d not reaped", (int)pid);
}

static void test_orphan(void **state)
{
	struct plugin_config cfg = { 0 };
	struct plugin_status st;
	struct ctx c;
	pid_t o;

	setup_ctx(&c, &cfg);
	/* a recycled pid (start time differs) is never touched */
	o = fake_orphan(&c, false, false);
	st = status_ok(&c);
	assert_null(strstr(st.detail, "orphan"));
	deactivate_ok(&c);
	assert_true(group_alive(o));
	kill(-o, SIGKILL);
	reap(o);

	/* the real thing: reported by status, terminated by the next activate */
	o = fake_orphan(&c, true, false);
	st = status_ok(&c);
	assert_non_null(strstr(st.detail, "orphan"));
	assert_int_equal(st.state, PLUGIN_STOPPED);
	activate_ok(&c, 5, "exec sleep 60");
	assert_false(group_alive(o));
	reap(o);
	st = status_ok(&c);
	assert_int_equal(st.rev, 5);
	assert_true(st.pid != o);
	teardown_ctx(&c);
}

/* ---- scopes (exec_scope ON) without a systemd: what can be checked here ------------------ */

#define NO_BUS "unix:path=/nonexistent/shoal-test-bus"

static pid_t pidfile_pid(struct ctx *c)
{
	char path[PATH_MAX + 32];
	int pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/run/web.pid", c->dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	return (pid_t)pid;
}

static bool group_gone_within(struct ctx *c, pid_t g, int ms)
{
	for (int i = 0; i < ms / 10 && group_alive(g); i++) {
		uv_run(&c->loop, UV_RUN_NOWAIT);
		usleep(10 * 1000);
	}
	return !group_alive(g);
}

/* No systemd to create the scope: the spawn fails with the reason in words, and the process
 * behind the gate never ran the command (it would have created "ran"). */
static void test_scope_unreachable(void **state)
{
	struct plugin_config cfg = { .exec_scope = PLUGIN_EXEC_SCOPE_ON, .bus_address = NO_BUS,
				     .restart_min_ms = 5000 };
	struct store_manifest m = mf("touch ran; exec sleep 60");
	char marker[PATH_MAX + 16];
	struct plugin_instance in;
	struct ctx c;
	pid_t g;

	setup_ctx(&c, &cfg);
	in = inst(&c, 1, &m);
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), 0);
	assert_true(run_until(&c, p_done, 15000));
	assert_int_equal(c.done_calls, 1);
	assert_true(c.done_status < 0);
	assert_non_null(strstr(c.err, "systemd scope: cannot connect to systemd (" NO_BUS "): "));
	assert_non_null(last_ev(&c));
	assert_int_equal(last_ev(&c)->state, PLUGIN_FAILED);
	assert_non_null(strstr(last_ev(&c)->detail, "systemd scope: cannot connect"));
	assert_int_equal(count_state(&c, PLUGIN_STARTING), 0);
	g = pidfile_pid(&c);
	assert_true(group_gone_within(&c, g, 5000));
	snprintf(marker, sizeof(marker), "%s/ran", c.art);
	assert_int_equal(access(marker, F_OK), -1);
	teardown_ctx(&c);
}

/*
 * A cgroup named like the service's scope, below our own cgroup2 group (root only): lets
 * the adoption checks see a process "in shoal-exec-web.scope" without a systemd. Returns
 * false (and the test says so) where it cannot be made.
 */
static bool scope_cgroup_make(char *base, size_t n, char *scope, size_t sn)
{
	const char *mnt = access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0 ?
				  "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
	char line[PATH_MAX], probe[PATH_MAX + 32];
	bool found = false;
	FILE *f;

	snprintf(probe, sizeof(probe), "%s/cgroup.procs", mnt);
	if (access(probe, W_OK) != 0)
		return false;
	f = fopen("/proc/self/cgroup", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			found = true;
			break;
		}
	fclose(f);
	if (!found)
		return false;
	if ((size_t)snprintf(base, n, "%s%s/shoal-test-%d", mnt,
			     strcmp(line + 3, "/") ? line + 3 : "", (int)getpid()) >= n ||
	    (size_t)snprintf(scope, sn, "%s/shoal-exec-web.scope", base) >= sn)
		return false;	/* a cgroup path longer than PATH_MAX: no test cgroup */
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return false;
	if (mkdir(scope, 0755) < 0 && errno != EEXIST) {
		rmdir(base);
		return false;
	}
	snprintf(leftover_cgroup[0], sizeof(leftover_cgroup[0]), "%s", scope);
	snprintf(leftover_cgroup[1], sizeof(leftover_cgroup[1]), "%s", base);
	return true;
}

static void cgroup_move(const char *cg, pid_t pid)
{
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fprintf(f, "%d\n", (int)pid) > 0);
	assert_int_equal(fclose(f), 0);
}

static void test_adopt(void **state)
{
	struct plugin_config cfg = { .exec_scope = PLUGIN_EXEC_SCOPE_ON, .bus_address = NO_BUS,
				     .restart_min_ms = 100 };
	char base[PATH_MAX], scope[PATH_MAX + 32];
	struct plugin_status st;
	struct ctx c;
	pid_t o;

	setup_ctx(&c, &cfg);
	/* a recycled pid (start time differs): not adopted, not reported, never touched */
	o = fake_orphan(&c, false, true);
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	assert_null(strstr(st.detail, "orphan"));
	assert_int_equal(c.nev, 0);
	deactivate_ok(&c);
	assert_true(group_alive(o));
	kill(-o, SIGKILL);
	reap(o);

	/* the very process, but outside its scope: not adopted (it would die with the agent's
	 * cgroup), reported as an orphan and ended by the next deactivate, as without scopes */
	o = fake_orphan(&c, true, true);
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	assert_non_null(strstr(st.detail, "orphan"));
	assert_int_equal(c.nev, 0);
	deactivate_ok(&c);
	assert_false(group_alive(o));
	reap(o);

	if (!scope_cgroup_make(base, sizeof(base), scope, sizeof(scope))) {
		print_message("adoption itself not checked: cannot create a cgroup here\n");
		teardown_ctx(&c);
		return;
	}
	/* in its scope: adopted as RUNNING of the pid file's revision, without a restart */
	o = fake_orphan(&c, true, true);
	cgroup_move(scope, o);
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_RUNNING);
	assert_int_equal(st.rev, 4);
	assert_int_equal(st.pid, o);
	assert_non_null(strstr(st.detail, "adopted pid"));
	assert_int_equal(c.nev, 1);
	/* a deactivate stops it (and then its scope, which here cannot be reached: the
	 * deactivate still succeeds, the group being gone, and the detail says why) */
	deactivate_ok(&c);
	assert_false(group_alive(o));
	assert_int_equal(last_ev(&c)->state, PLUGIN_STOPPED);
	assert_non_null(strstr(last_ev(&c)->detail, "deactivated; scope: cannot connect"));
	reap(o);

	/* the next agent run adopts another one; its exit is seen (pidfd) and it is
	 * restarted: here the restart's own scope cannot be made, which fails it with the
	 * reason */
	teardown_ctx(&c);
	setup_ctx(&c, &cfg);
	o = fake_orphan(&c, true, true);
	cgroup_move(scope, o);
	st = status_ok(&c);
	assert_int_equal(st.state, PLUGIN_RUNNING);
	kill(o, SIGKILL);
	reap(o);
	assert_true(run_until(&c, p_failed, 10000));
	assert_int_equal(c.ev[1].state, PLUGIN_RESTARTING);
	assert_non_null(strstr(c.ev[1].detail, "adopted pid"));
	assert_non_null(strstr(last_ev(&c)->detail, "systemd scope: cannot connect"));
	assert_true(group_gone_within(&c, o, 5000));	/* the rest of its group had SIGTERM */
	teardown_ctx(&c);
	assert_int_equal(rmdir(scope), 0);
	assert_int_equal(rmdir(base), 0);
	leftover_cgroup[0][0] = leftover_cgroup[1][0] = '\0';
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_new_errors),
		cmocka_unit_test(test_start_log_env_stop),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_crash_restart_backoff),
		cmocka_unit_test(test_restart_loop_failed),
		cmocka_unit_test(test_swap_kills_group),
		cmocka_unit_test(test_stop_timeout_sigkill),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_close_pending),
		cmocka_unit_test(test_orphan),
		cmocka_unit_test(test_scope_unreachable),
		cmocka_unit_test(test_adopt),
	};

	int r;

	signal(SIGPIPE, SIG_IGN);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	leftovers_cleanup();
	return r;
}
