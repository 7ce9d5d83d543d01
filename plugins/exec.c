/*
 * plugins/exec.c: the exec runtime driver, a small process supervisor on the libuv loop.
 *
 * One service runs at most one instance: `/bin/sh -c COMMAND` started with uv_spawn in the
 * materialized artifact directory, in a session and process group of its own
 * (UV_PROCESS_DETACHED = setsid), so that stopping it reaches everything it forked. Its
 * stdin is /dev/null; stdout and stderr are pipes read line by line and handed to
 * cfg.on_log (lines cut at PLUGIN_LOG_LINE_MAX). The environment is the agent's plus
 * SHOAL_SERVICE, SHOAL_REV, SHOAL_ARTIFACT (64 hex digits) and SHOAL_DIR.
 *
 * Lifecycle and events (cfg.on_event is called on every state change, from the loop):
 *
 *   activate -> [stat dir] -> stop old group -> STOPPED (if something ran) -> spawn: STARTING
 *   STARTING --stays up settle_ms--> RUNNING
 *   exit while it should run --> RESTARTING (exit_status, restarts+1), respawn after back-off
 *        back-off: restart_min_ms doubling to restart_max_ms, back to restart_min_ms when the
 *        instance that exited had stayed up restart_reset_ms
 *   restart_burst restarts within restart_window_ms --> FAILED (left stopped until the next
 *        activate: a restart loop does not heal by itself, the reconciler must decide)
 *   deactivate --> STOPPED
 *
 * The activate callback's status is 0 once spawned; if uv_spawn itself fails (no /bin/sh,
 * fork failure) it is that error and the instance is FAILED. Argument errors (-EINVAL, no
 * command) are returned; a missing or non-directory dir is the callback's -ENOENT/-ENOTDIR,
 * with the running instance untouched.
 *
 * RUNNING only after settle_ms (not at spawn): `sh -c` of a missing binary or a config error
 * exits within milliseconds, and calling that "running" first would only produce noise.
 * Restart counters (restarts, the burst window, the back-off) start afresh at each activate.
 * status reports what the supervisor knows (no runtime to ask); pid is the group leader's.
 *
 * Stopping a group: SIGTERM to -pgid, then poll (every STOP_POLL_MS) until the leader was
 * reaped and no live member is left in the group; at stop_timeout_ms SIGKILL to -pgid; if
 * even that does not empty the group within KILL_GRACE_MS the stop fails with -ETIMEDOUT.
 * The group check first asks kill(-pgid, 0) and, when that still finds someone, scans /proc
 * for non-zombie members: orphaned members are reparented to PID 1, which on some hosts
 * (and containers) never reaps them, and a zombie must not keep a stop waiting forever.
 * While stopping, a poll re-reads only the live member the last scan found, and scans again
 * once that one is gone (so "gone" is always the answer of a full scan).
 *
 * Orphans of a killed agent: every spawn writes state_dir/run/<service>.pid ("pid
 * starttime rev", more with scopes, see pidfile_write). Without scopes the next agent run does
 * not adopt (the orphan lives in the agent's cgroup and, under systemd, is killed with it;
 * without systemd nothing guarantees it was left running on purpose): the first activate or
 * deactivate of that service terminates the old group (same SIGTERM/SIGKILL sequence) before
 * starting fresh, and status reports it in its detail. The start time (field 22 of
 * /proc/PID/stat) guards against a recycled pid; a group whose leader is gone is still
 * recognised by its pgid (Linux never reuses an id that is still some group's id).
 *
 * Scopes (ep->scope: under systemd, see plugin.h and exec_init). Restarting agentd.service
 * must not take its workloads down, so each spawn goes into a transient scope of its own,
 * shoal-exec-<service>.scope, outside agentd's cgroup:
 *
 *   spawn `sh -c 'read gate; exec sh -c COMMAND'` (stdin a pipe, stdout/stderr journal
 *   streams) -> [pool] StartTransientUnit(PIDs=[pid]), wait until /proc/PID/cgroup shows
 *   it -> write "\n" into the gate -> STARTING (the activate's 0)
 *
 * The gate keeps the command from forking before the move (its children would stay in
 * agentd's cgroup and die with it). Output goes to the journal because a pipe to the agent
 * would break when the agent goes. plugin_close() leaves these processes running, and the next
 * run adopts them at the first status of their service (svc_adopt: pid, start time, process
 * group and cgroup must all match, the pid file gives revision, directory and command), so the
 * reconciler finds "running, this revision" and does not swap. An adopted process is not our
 * child: a pidfd tells when it exits (no exit status), and it is then restarted like any
 * other. Stopping is the same group SIGTERM/SIGKILL as without scopes; the emptied scope is
 * collected by systemd (CollectMode=inactive-or-failed), and a leftover of that name is
 * stopped before the next StartTransientUnit (scope.c). A scope that cannot be made fails the
 * spawn (FAILED, the reason in words): running the service in agentd's cgroup instead would
 * silently bring back the outage at the next agent restart.
 *
 * Blocking: everything runs on the loop. The directory check is an async uv_fs_stat; the
 * pid file write and the /proc reads are small local-file operations done inline (no fsync:
 * after a host crash there is no orphan to find anyway).
 *
 * plugin_close() stops every child without scopes (the children's output pipes end with the
 * agent, and an unsupervised exec service is worse than a stopped one); with scopes it leaves
 * them to systemd and the next agent run. Then it cancels pending operations.
 *
 * Errors in words: s->err holds why the last operation failed (a missing directory, a spawn
 * error, the scope's D-Bus error, a stop that timed out), for plugin_last_error().
 */
#include "plugins/plugin.h"
#include "plugins/proc.h"
#include "plugins/scope.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define STOP_POLL_MS	 25
#define KILL_GRACE_MS	 5000
#define BURST_MAX	 64
#define SCOPE_MS	 10000	/* bound on creating a scope and seeing the process in it */
#define PIDFILE_MAX	 (64 * 1024)

enum exec_opkind { OP_NONE = 0, OP_PREPARE, OP_ACTIVATE, OP_DEACTIVATE, OP_STATUS };

struct exec_svc;

struct exec_child {
	struct exec_child *next, *prev;	/* all children with open handles (exec_plugin.children) */
	uv_process_t proc;
	uv_pipe_t pipes[2];		/* stdout, stderr (without scopes) */
	uv_pipe_t gate;			/* stdin until the gate opens (with scopes) */
	bool piped, gated;		/* pipes / gate initialised (and to be closed) */
	struct exec_svc *svc;
	unsigned open;			/* handles not yet closed */
	bool exited;
	uint64_t started_ms;
	char rbuf[2][4096];
	char line[2][PLUGIN_LOG_LINE_MAX + 1];
	size_t len[2];
	bool skip[2];			/* dropping the rest of an over-long line */
};

struct exec_svc {
	struct exec_svc *next;
	struct exec_plugin *ep;
	char name[65];

	/* the current instance */
	bool have_inst;
	uint64_t rev;
	char artifact[STORE_ID_HEXLEN + 1];
	char *dir, *command;
	bool want_run;			/* supervised: respawn when it exits */
	struct exec_child *child;	/* leader not yet reaped */
	pid_t pgid;			/* group that may still have members; 0 none */
	struct plugin_status st;

	uint32_t backoff_ms;
	uint64_t restart_at[BURST_MAX];	/* times of restarts inside the window, oldest first */
	unsigned nrestart_at;

	uv_timer_t t_restart, t_up, t_stop, t_op;

	/* scopes (ep->scope): the spawn in progress, waiting for its scope on the thread pool */
	uv_work_t swork;
	bool swork_busy;
	bool swork_stop;		/* the work stops the scope (deactivate), not creates it */
	struct exec_child *gating;	/* the child behind the gate; NULL once it exited */
	pid_t swork_pid;
	int swork_res;
	char swork_err[256], swork_desc[128];
	bool spawn_for_op;		/* the activate in flight completes with this spawn */
	bool nolog;			/* no journal stream: the instance's output is discarded */
	/* an adopted process (a previous agent run's, found in its scope): exit via pidfd */
	struct exec_apoll *apoll;
	uint64_t adopt_ms;

	char err[320];			/* why the last operation failed (plugin_last_error) */

	/* stopping */
	bool stopping, killed;
	pid_t stop_watch;		/* a live member seen by the last /proc scan */
	uint64_t stop_start;
	void (*stop_done)(struct exec_svc *s, int err);

	/* the operation in flight */
	enum exec_opkind op;
	plugin_done_cb done_cb;
	plugin_status_cb status_cb;
	void *op_ud;
	uv_fs_t fs;
	bool fs_busy;
	uint64_t nrev;
	char nartifact[STORE_ID_HEXLEN + 1];
	char *ndir, *ncommand;
};

struct exec_plugin {
	struct plugin *p;
	struct exec_svc *svcs;
	struct exec_child *children;
	uv_timer_t t_close;		/* makes the close callback run from the loop */
	unsigned handles;		/* open handles and requests in flight */
	bool closing;			/* plugin_close called */
	bool close_ready;		/* every service was asked to stop */
	bool closing_handles;
	plugin_close_cb close_cb;
	void *close_ud;
	char *rundir;
	uint32_t stop_timeout, rmin, rmax, rreset, burst, window, settle;
	bool scope;			/* run each service in a transient systemd scope */
};

static void svc_spawn(struct exec_svc *s);
static void check_close(struct exec_plugin *ep);

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t now_ms(struct exec_plugin *ep)
{
	return uv_now(ep->p->loop);
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

static void emit(struct exec_svc *s)
{
	struct plugin *p = s->ep->p;

	if (p->cfg.on_event)
		p->cfg.on_event(p, s->name, &s->st, p->cfg.ud);
}

static void set_state(struct exec_svc *s, enum plugin_state state, const char *detail)
{
	s->st.state = state;
	s->st.rev = s->have_inst ? s->rev : 0;
	s->st.since_ms = now_ms(s->ep);
	snprintf(s->st.detail, sizeof(s->st.detail), "%s", detail);
	emit(s);
}

static void describe_exit(char *buf, size_t n, int64_t status, int sig)
{
	if (sig)
		snprintf(buf, n, "killed by signal %d", sig);
	else
		snprintf(buf, n, "exited %" PRId64, status);
}

/*
 * Fields of /proc/PID/stat: state (field 3), pgid (5), starttime (22). The command name
 * (field 2) may hold spaces and parentheses, so parse from the last ')'.
 */
static int proc_stat(pid_t pid, char *ret_state, pid_t *ret_pgid, uint64_t *ret_start)
{
	char path[64], buf[1024], *q;
	unsigned long long start = 0;
	long pgid = 0;
	char state = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	q = strrchr(buf, ')');
	if (!q)
		return -EIO;
	/* after ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
	 * utime stime cutime cstime priority nice num_threads itrealvalue starttime */
	if (sscanf(q + 1, " %c %*d %ld %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d"
		   " %*d %llu", &state, &pgid, &start) != 3)
		return -EIO;
	if (ret_state)
		*ret_state = state;
	if (ret_pgid)
		*ret_pgid = (pid_t)pgid;
	if (ret_start)
		*ret_start = start;
	return 0;
}

/* Signal a whole group; never with a pgid that would mean "our own group" or "everyone". */
static void group_kill(pid_t pgid, int sig)
{
	if (pgid > 1)
		kill(-pgid, sig);
}

/*
 * True when no live (non-zombie) process is left in group @pgid. @watch (may be NULL): a live
 * member found by an earlier call, or 0; while it is still alive in the group the answer is
 * "no" without the /proc scan; the scan (which reads every process's stat file) runs only
 * when it is gone, and records the next live member it finds there.
 */
static bool group_gone_watch(pid_t pgid, pid_t *watch)
{
	struct dirent *de;
	bool gone = true;
	DIR *d;

	if (pgid <= 0)
		return true;
	if (kill(-pgid, 0) < 0 && errno == ESRCH)
		return true;
	if (watch && *watch > 0) {
		char state;
		pid_t g;

		if (proc_stat(*watch, &state, &g, NULL) == 0 && g == pgid && state != 'Z' &&
		    state != 'X')
			return false;
		*watch = 0;
	}
	d = opendir("/proc");
	if (!d)
		return false;
	while ((de = readdir(d))) {
		char *end, state;
		long pid = strtol(de->d_name, &end, 10);
		pid_t g;

		if (*end || pid <= 0)
			continue;
		/* getpgid() first: one cheap system call per process instead of reading its stat
		 * file (a scan meets every process of the host; with a few hundred the file
		 * reads kept a loaded agent's loop busy for hundreds of milliseconds) */
		if (getpgid((pid_t)pid) != pgid)
			continue;
		if (proc_stat((pid_t)pid, &state, &g, NULL) < 0 || g != pgid)
			continue;
		if (state != 'Z' && state != 'X') {
			gone = false;
			if (watch)
				*watch = (pid_t)pid;
			break;
		}
	}
	closedir(d);
	return gone;
}

static bool group_gone(pid_t pgid)
{
	return group_gone_watch(pgid, NULL);
}

static int pidfile_path(struct exec_svc *s, char *buf, size_t n)
{
	int r = snprintf(buf, n, "%s/%s.pid", s->ep->rundir, s->name);

	return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

/*
 * The pid file: "pid starttime rev\n" (what every version reads); with scopes the first line
 * goes on with " artifact unit" and is followed by the instance's directory on the second
 * line and its command (the rest of the file): what the next agent run needs to adopt the
 * process and to restart it later. A directory with a newline in it gets the short form
 * (no adoption, as without scopes).
 */
static void pidfile_write(struct exec_svc *s, pid_t pid)
{
	char path[4096], tmp[4200], head[256], unit[SCOPE_UNIT_MAX];
	size_t clen = strlen(s->command), dlen = strlen(s->dir);
	/* the reader takes at most PIDFILE_MAX bytes: a longer file would restart a cut command */
	bool full = s->ep->scope && !strchr(s->dir, '\n') && clen + dlen + 512 < PIDFILE_MAX;
	uint64_t start = 0;
	int fd, n;
	bool ok;

	if (pidfile_path(s, path, sizeof(path)) < 0)
		return;
	(void)proc_stat(pid, NULL, NULL, &start);
	scope__unit_name(s->name, unit);
	if (full)
		n = snprintf(head, sizeof(head), "%ld %" PRIu64 " %" PRIu64 " %s %s\n", (long)pid,
			     start, s->rev, s->artifact, unit);
	else
		n = snprintf(head, sizeof(head), "%ld %" PRIu64 " %" PRIu64 "\n", (long)pid, start,
			     s->rev);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;	/* best effort: orphan cleanup and adoption depend on it, not the service */
	ok = write(fd, head, (size_t)n) == n;
	if (ok && full)
		ok = write(fd, s->dir, dlen) == (ssize_t)dlen && write(fd, "\n", 1) == 1 &&
		     write(fd, s->command, clen) == (ssize_t)clen;
	close(fd);
	if (!ok || rename(tmp, path) < 0)
		unlink(tmp);
}

static void pidfile_remove(struct exec_svc *s)
{
	char path[4096];

	if (pidfile_path(s, path, sizeof(path)) == 0)
		unlink(path);
}

/* The process group a previous agent run left behind for @s, or 0. */
static pid_t orphan_find(struct exec_svc *s, uint64_t *ret_rev)
{
	char path[4096], buf[128];
	unsigned long long start = 0, rev = 0;
	long pid = 0;
	uint64_t cur_start;
	pid_t pgid;
	ssize_t n;
	int fd;

	if (pidfile_path(s, path, sizeof(path)) < 0)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%ld %llu %llu", &pid, &start, &rev) < 2 || pid <= 1)
		return 0;
	if (proc_stat((pid_t)pid, NULL, &pgid, &cur_start) == 0) {
		/* the pid is alive: ours only if it is the very process we started */
		if (cur_start != start || pgid != (pid_t)pid)
			return 0;
	} else if (group_gone((pid_t)pid)) {
		pidfile_remove(s);
		return 0;
	}
	if (ret_rev)
		*ret_rev = rev;
	return (pid_t)pid;
}

/* ---- adoption (scopes only) ------------------------------------------------------------------ */

/*
 * With scopes, the agent may stop (restart, upgrade) while its services run on in their
 * scopes. The next run adopts such a process at the first status of its service, so that the
 * reconciler sees "running, this revision" and leaves it alone. Adopted means: the pid file
 * names it with the full (scope) form; the pid is alive, not a zombie, has the recorded start
 * time (field 22 of /proc/PID/stat) and leads its own process group; and /proc/PID/cgroup
 * puts it in shoal-exec-<service>.scope. The checks run after a pidfd was opened, so the pid
 * cannot be recycled between them and the watch. The process is not our child: its exit is
 * seen through the pidfd (readable at exit), without an exit status; its output goes on
 * into the journal. From then on it is supervised like a child of ours (restart with
 * back-off after an exit, stop on activate/deactivate). Without pidfd_open (Linux < 5.3) there
 * is no adoption: the reconciler then starts the service afresh, as without scopes.
 */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct exec_apoll {
	uv_poll_t h;
	int fd;
	struct exec_svc *svc;
};

static void on_unexpected_exit(struct exec_svc *s, uint64_t uptime);

static void apoll_closed(uv_handle_t *h)
{
	struct exec_apoll *ap = h->data;
	struct exec_plugin *ep = ap->svc->ep;

	close(ap->fd);
	free(ap);
	ep->handles--;
	if (ep->closing)
		check_close(ep);
}

static void apoll_release(struct exec_svc *s)
{
	if (!s->apoll)
		return;
	uv_close((uv_handle_t *)&s->apoll->h, apoll_closed);
	s->apoll = NULL;
}

static void adopted_exit_cb(uv_poll_t *h, int status, int events)
{
	struct exec_apoll *ap = h->data;
	struct exec_svc *s = ap->svc;

	(void)status;
	(void)events;
	apoll_release(s);
	if (s->stopping || s->ep->closing || !s->want_run)
		return;
	s->st.exit_status = -1;
	on_unexpected_exit(s, now_ms(s->ep) - s->adopt_ms);
}

struct adoptee {
	long pid;
	unsigned long long start, rev;
	char artifact[STORE_ID_HEXLEN + 1];
	char unit[SCOPE_UNIT_MAX];
	char *dir, *command;
};

/* The full form of the pid file (see pidfile_write). 0, or -ENOENT, -EBADMSG, -ENOMEM. */
static int pidfile_read_full(struct exec_svc *s, struct adoptee *a)
{
	char path[4096], *buf, *nl, *nl2, fmt[64];
	ssize_t n, got = 0;
	int fd, r = -EBADMSG;

	memset(a, 0, sizeof(*a));
	if (pidfile_path(s, path, sizeof(path)) < 0)
		return -ENOENT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	buf = malloc(PIDFILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < PIDFILE_MAX && (n = read(fd, buf + got, (size_t)(PIDFILE_MAX - got))) > 0)
		got += n;
	close(fd);
	buf[got] = '\0';
	if (got == PIDFILE_MAX)
		goto out;	/* not one we wrote (see pidfile_write) */
	nl = strchr(buf, '\n');
	nl2 = nl ? strchr(nl + 1, '\n') : NULL;
	if (!nl2 || nl2[1] == '\0' || nl[1] != '/')
		goto out;
	*nl = *nl2 = '\0';
	snprintf(fmt, sizeof(fmt), "%%ld %%llu %%llu %%%ds %%%ds", STORE_ID_HEXLEN,
		 SCOPE_UNIT_MAX - 1);
	if (sscanf(buf, fmt, &a->pid, &a->start, &a->rev, a->artifact, a->unit) != 5 ||
	    a->pid <= 1 || strlen(a->artifact) != STORE_ID_HEXLEN)
		goto out;
	a->dir = strdup(nl + 1);
	a->command = strdup(nl2 + 1);
	r = a->dir && a->command ? 0 : -ENOMEM;
out:
	if (r < 0) {
		free(a->dir);
		free(a->command);
		a->dir = a->command = NULL;
	}
	free(buf);
	return r;
}

/* Adopt what a previous agent run left running in the service's scope, if anything. */
static void svc_adopt(struct exec_svc *s)
{
	struct exec_plugin *ep = s->ep;
	char unit[SCOPE_UNIT_MAX], detail[160], state = 0;
	struct exec_apoll *ap = NULL;
	struct adoptee a;
	uint64_t start = 0;
	pid_t pgid = 0;
	int fd;

	if (!ep->scope || s->have_inst || s->child || s->pgid || s->stopping || s->swork_busy)
		return;
	if (pidfile_read_full(s, &a) < 0)
		return;
	scope__unit_name(s->name, unit);
	if (strcmp(a.unit, unit) != 0)
		goto out;
	fd = (int)syscall(SYS_pidfd_open, (pid_t)a.pid, 0);
	if (fd < 0)
		goto out;
	if (proc_stat((pid_t)a.pid, &state, &pgid, &start) < 0 || start != a.start ||
	    pgid != (pid_t)a.pid || state == 'Z' || state == 'X' ||
	    !scope__pid_in((pid_t)a.pid, unit) || !(ap = calloc(1, sizeof(*ap))) ||
	    uv_poll_init(ep->p->loop, &ap->h, fd) < 0) {
		free(ap);
		close(fd);
		goto out;
	}
	ap->fd = fd;
	ap->svc = s;
	ap->h.data = ap;
	ep->handles++;
	s->apoll = ap;
	if (uv_poll_start(&ap->h, UV_READABLE, adopted_exit_cb) < 0) {
		apoll_release(s);
		goto out;
	}
	free(s->dir);
	free(s->command);
	s->dir = a.dir;
	s->command = a.command;
	a.dir = a.command = NULL;
	s->rev = a.rev;
	memcpy(s->artifact, a.artifact, sizeof(s->artifact));
	s->have_inst = true;
	s->want_run = true;
	s->pgid = (pid_t)a.pid;
	s->st.pid = (pid_t)a.pid;
	s->st.restarts = 0;
	s->st.exit_status = -1;
	s->nrestart_at = 0;
	s->backoff_ms = ep->rmin;
	s->adopt_ms = now_ms(ep);
	snprintf(detail, sizeof(detail), "adopted pid %ld in %s (started by an earlier agent run)",
		 a.pid, unit);
	set_state(s, PLUGIN_RUNNING, detail);
out:
	free(a.dir);
	free(a.command);
}

/* ---- operations: completion --------------------------------------------------------------- */

static void op_clear(struct exec_svc *s)
{
	s->op = OP_NONE;
	s->done_cb = NULL;
	s->status_cb = NULL;
	s->op_ud = NULL;
	free(s->ndir);
	free(s->ncommand);
	s->ndir = s->ncommand = NULL;
}

/* Finish the pending done-style operation with @status; clears it before calling out so the
 * callback may start the next operation on the same service. */
static void op_finish(struct exec_svc *s, int status)
{
	plugin_done_cb cb = s->done_cb;
	void *ud = s->op_ud;

	op_clear(s);
	if (cb)
		cb(s->ep->p, s->name, status, ud);
}

static void status_fill(struct exec_svc *s, struct plugin_status *st)
{
	uint64_t orev = 0;
	pid_t o;

	*st = s->st;
	if (!s->have_inst && s->st.state == PLUGIN_STOPPED && !s->pgid) {
		o = orphan_find(s, &orev);
		if (o)
			snprintf(st->detail, sizeof(st->detail),
				 "orphan pid %ld (rev %" PRIu64 ") of a previous agent run",
				 (long)o, orev);
	}
}

/* ---- stopping a group ---------------------------------------------------------------------- */

static void stop_finish(struct exec_svc *s, int err)
{
	void (*done)(struct exec_svc *, int) = s->stop_done;

	uv_timer_stop(&s->t_stop);
	s->stopping = false;
	s->stop_done = NULL;
	if (err == 0) {
		s->pgid = 0;
		pidfile_remove(s);
	}
	if (done)
		done(s, err);
	if (s->ep->closing)
		check_close(s->ep);
}

static void stop_poll_cb(uv_timer_t *t)
{
	struct exec_svc *s = t->data;
	uint64_t el = now_ms(s->ep) - s->stop_start;
	/*
	 * A poll costs a /proc scan only when the member seen alive last time has gone: the
	 * scan visits every process of the host, and with many agents on one host stopping
	 * their services at the same instant (a cluster-wide rollback) a scan every poll, for
	 * as long as the init process leaves the exited members as zombies, made the stops
	 * themselves the bottleneck.
	 */
	if (!s->child && !s->swork_busy && group_gone_watch(s->pgid, &s->stop_watch)) {
		stop_finish(s, 0);
		return;
	}
	if (!s->killed && el >= s->ep->stop_timeout) {
		s->killed = true;
		group_kill(s->pgid, SIGKILL);
	} else if (s->killed && el >= (uint64_t)s->ep->stop_timeout + KILL_GRACE_MS) {
		snprintf(s->err, sizeof(s->err),
			 "process group %ld still has live members %u ms after SIGKILL",
			 (long)s->pgid, (unsigned)KILL_GRACE_MS);
		stop_finish(s, -ETIMEDOUT);
	}
}

/*
 * Stop whatever runs for @s (its child's group, leftovers of a dead child, or an orphan of a
 * previous agent run); @done runs from the loop with 0 or -ETIMEDOUT. The caller must be in
 * a loop callback (@done may run before this returns when nothing is left to stop).
 */
static void svc_stop(struct exec_svc *s, void (*done)(struct exec_svc *, int))
{
	s->want_run = false;
	uv_timer_stop(&s->t_restart);
	uv_timer_stop(&s->t_up);
	apoll_release(s);	/* the stop polls the group itself */
	if (!s->child && !s->pgid)
		s->pgid = orphan_find(s, NULL);
	s->stop_done = done;
	if (!s->child && !s->swork_busy && group_gone(s->pgid)) {
		stop_finish(s, 0);
		return;
	}
	s->stopping = true;
	s->killed = false;
	s->stop_watch = 0;
	s->stop_start = now_ms(s->ep);
	group_kill(s->pgid, SIGTERM);
	/* a stopped (SIGSTOP) group would sit on SIGTERM until SIGKILL: wake it */
	group_kill(s->pgid, SIGCONT);
	uv_timer_start(&s->t_stop, stop_poll_cb, STOP_POLL_MS, STOP_POLL_MS);
}

/* ---- children: output, exit ----------------------------------------------------------------- */

static void child_handle_closed(uv_handle_t *h)
{
	struct exec_child *c = h->data;
	struct exec_plugin *ep = c->svc->ep;

	if (--c->open == 0) {
		if (c->prev)
			c->prev->next = c->next;
		else
			ep->children = c->next;
		if (c->next)
			c->next->prev = c->prev;
		free(c);
		ep->handles--;
		if (ep->closing)
			check_close(ep);
	}
}

static void child_close_pipe(struct exec_child *c, int i)
{
	if (c->piped && !uv_is_closing((uv_handle_t *)&c->pipes[i]))
		uv_close((uv_handle_t *)&c->pipes[i], child_handle_closed);
}

static void child_close_gate(struct exec_child *c)
{
	if (c->gated && !uv_is_closing((uv_handle_t *)&c->gate))
		uv_close((uv_handle_t *)&c->gate, child_handle_closed);
}

static void child_close_handles(struct exec_child *c)
{
	child_close_pipe(c, 0);
	child_close_pipe(c, 1);
	child_close_gate(c);
}

/* Let a gated child run its command (proc_spawn_sh_stdio): one newline, then EOF. One byte
 * into an empty pipe never blocks; if the child is gone the write fails (EPIPE: SIGPIPE is
 * ignored, see exec_init) and its exit is reported anyway. */
static void gate_open(struct exec_child *c)
{
	char nl[] = "\n";
	uv_buf_t b = uv_buf_init(nl, 1);

	if (c->gated && !uv_is_closing((uv_handle_t *)&c->gate))
		(void)uv_try_write((uv_stream_t *)&c->gate, &b, 1);
	child_close_gate(c);
}

static void log_line(struct exec_child *c, int i)
{
	struct plugin *p = c->svc->ep->p;

	c->line[i][c->len[i]] = '\0';
	if (p->cfg.on_log)
		p->cfg.on_log(p, c->svc->name, i + 1, c->line[i], p->cfg.ud);
	c->len[i] = 0;
}

static void pipe_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct exec_child *c = h->data;
	int i = (uv_pipe_t *)h == &c->pipes[0] ? 0 : 1;

	(void)suggested;
	*buf = uv_buf_init(c->rbuf[i], sizeof(c->rbuf[i]));
}

static void pipe_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct exec_child *c = st->data;
	int i = (uv_pipe_t *)st == &c->pipes[0] ? 0 : 1;

	if (nread < 0) {
		if (c->len[i] > 0)
			log_line(c, i);
		child_close_pipe(c, i);
		return;
	}
	for (ssize_t k = 0; k < nread; k++) {
		char ch = buf->base[k];

		if (ch == '\n') {
			if (c->skip[i])
				c->skip[i] = false;
			else
				log_line(c, i);
			continue;
		}
		if (c->skip[i])
			continue;
		c->line[i][c->len[i]++] = ch;
		if (c->len[i] == PLUGIN_LOG_LINE_MAX) {
			log_line(c, i);
			c->skip[i] = true;
		}
	}
}

static void restart_cb(uv_timer_t *t)
{
	struct exec_svc *s = t->data;

	/* leftovers of the dead instance (it forked and its leader died): they had their
	 * SIGTERM at exit and a back-off to go; they do not share the service with the new one */
	if (s->swork_busy) {
		/* the scope work of a child that died behind its gate is still out */
		uv_timer_start(&s->t_restart, restart_cb, STOP_POLL_MS, 0);
		return;
	}
	if (s->pgid && !group_gone(s->pgid))
		group_kill(s->pgid, SIGKILL);
	s->pgid = 0;
	svc_spawn(s);	/* a failure is reported as FAILED */
}

static void on_unexpected_exit(struct exec_svc *s, uint64_t uptime)
{
	struct exec_plugin *ep = s->ep;
	uint64_t now = now_ms(ep);
	char why[96], detail[160];
	unsigned k = 0;

	describe_exit(why, sizeof(why), s->st.exit_status, 0);
	if (s->st.exit_status >= 128 && s->st.exit_status < 128 + 65)
		describe_exit(why, sizeof(why), 0, s->st.exit_status - 128);
	if (s->st.exit_status < 0)	/* an adopted process: not our child, no status */
		snprintf(why, sizeof(why), "adopted pid %ld exited", (long)s->pgid);
	if (s->pgid && !group_gone(s->pgid))
		group_kill(s->pgid, SIGTERM);
	if (uptime >= ep->rreset)
		s->backoff_ms = ep->rmin;
	/* forget restarts that left the window */
	while (k < s->nrestart_at && now - s->restart_at[k] > ep->window)
		k++;
	memmove(s->restart_at, s->restart_at + k, (s->nrestart_at - k) * sizeof(uint64_t));
	s->nrestart_at -= k;
	if (s->nrestart_at >= ep->burst) {
		s->want_run = false;
		if (s->pgid && !group_gone(s->pgid))
			group_kill(s->pgid, SIGKILL);
		snprintf(detail, sizeof(detail), "restart loop: %u restarts within %u ms, last %s",
			 s->nrestart_at, ep->window, why);
		set_state(s, PLUGIN_FAILED, detail);
		return;
	}
	s->restart_at[s->nrestart_at++] = now;
	s->st.restarts++;
	s->st.pid = 0;
	snprintf(detail, sizeof(detail), "%s, restart in %u ms", why, s->backoff_ms);
	uv_timer_start(&s->t_restart, restart_cb, s->backoff_ms, 0);
	s->backoff_ms = s->backoff_ms > ep->rmax / 2 ? ep->rmax : s->backoff_ms * 2;
	set_state(s, PLUGIN_RESTARTING, detail);
}

static void exit_cb(uv_process_t *proc, int64_t status, int sig)
{
	struct exec_child *c = proc->data;
	struct exec_svc *s = c->svc;
	uint64_t uptime = now_ms(s->ep) - c->started_ms;
	char why[96];

	c->exited = true;
	uv_close((uv_handle_t *)proc, child_handle_closed);
	child_close_gate(c);
	if (s->gating == c)
		s->gating = NULL;	/* died behind its gate: scope_after_cb must not touch it */
	if (s->child != c)
		return;
	s->child = NULL;
	uv_timer_stop(&s->t_up);
	/* shell convention, so one int carries both: 128 + signal for a signal death */
	s->st.exit_status = sig ? 128 + sig : (int)status;
	if (s->stopping || s->ep->closing) {
		describe_exit(why, sizeof(why), status, sig);
		snprintf(s->st.detail, sizeof(s->st.detail), "%s", why);
		return;	/* the stop poll reports */
	}
	if (s->want_run) {
		on_unexpected_exit(s, uptime);
		return;
	}
	describe_exit(why, sizeof(why), status, sig);
	set_state(s, PLUGIN_STOPPED, why);
}

static void up_cb(uv_timer_t *t)
{
	struct exec_svc *s = t->data;

	if (s->child && s->st.state == PLUGIN_STARTING)
		set_state(s, PLUGIN_RUNNING, "up");
}

static int child_start(struct exec_svc *s)
{
	struct exec_plugin *ep = s->ep;
	uv_loop_t *loop = ep->p->loop;
	uv_stdio_container_t stdio[3];
	int jfd[2] = { -1, -1 };
	struct exec_child *c;
	char ident[96];
	char **env;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	env = proc_env_new(s->name, s->rev, s->artifact, s->dir);
	if (!env) {
		free(c);
		return -ENOMEM;
	}
	memset(stdio, 0, sizeof(stdio));
	c->svc = s;
	c->proc.data = c;
	c->open = 1;
	s->nolog = false;
	if (ep->scope) {
		/* Output into the journal, not a pipe to us: the process outlives the agent,
		 * and a write to a pipe whose reader is gone fails (SIGPIPE kills most programs). */
		snprintf(ident, sizeof(ident), "shoal-exec-%s", s->name);
		jfd[0] = sd_journal_stream_fd(ident, LOG_INFO, 0);
		jfd[1] = sd_journal_stream_fd(ident, LOG_WARNING, 0);
		for (int i = 0; i < 2; i++) {
			if (jfd[i] >= 0) {
				stdio[i + 1].flags = UV_INHERIT_FD;
				stdio[i + 1].data.fd = jfd[i];
			} else {
				stdio[i + 1].flags = UV_IGNORE;
				s->nolog = true;
			}
		}
		uv_pipe_init(loop, &c->gate, 0);
		c->gate.data = c;
		c->gated = true;
		c->open++;
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&c->gate;
	} else {
		for (int i = 0; i < 2; i++) {
			uv_pipe_init(loop, &c->pipes[i], 0);
			c->pipes[i].data = c;
			stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
			stdio[i + 1].data.stream = (uv_stream_t *)&c->pipes[i];
		}
		c->piped = true;
		c->open += 2;
		stdio[0].flags = UV_IGNORE;
	}
	ep->handles++;
	c->next = ep->children;
	if (c->next)
		c->next->prev = c;
	ep->children = c;
	r = proc_spawn_sh_stdio(loop, &c->proc, exit_cb, s->command, s->dir, env, stdio,
				c->gated);
	proc_env_free(env);
	for (int i = 0; i < 2; i++)
		if (jfd[i] >= 0)
			close(jfd[i]);
	if (r < 0) {
		/* libuv: a failed spawn still needs its handles closed */
		c->exited = true;
		uv_close((uv_handle_t *)&c->proc, child_handle_closed);
		child_close_handles(c);
		return r;
	}
	c->started_ms = now_ms(ep);
	if (c->piped)
		for (int i = 0; i < 2; i++)
			uv_read_start((uv_stream_t *)&c->pipes[i], pipe_alloc_cb, pipe_read_cb);
	s->child = c;
	s->gating = c->gated ? c : NULL;
	s->pgid = c->proc.pid;
	s->st.pid = c->proc.pid;
	pidfile_write(s, c->proc.pid);
	return 0;
}

/* The end of a spawn (after its scope, with scopes): STARTING, or FAILED with @why (also the
 * operation's error text); completes the activate that asked for it. */
static void svc_spawned(struct exec_svc *s, int r, const char *why)
{
	char detail[160], unit[SCOPE_UNIT_MAX];
	bool fin = s->spawn_for_op;

	s->spawn_for_op = false;
	if (r < 0) {
		s->want_run = false;
		s->st.pid = 0;
		snprintf(s->err, sizeof(s->err), "%s", why);
		snprintf(detail, sizeof(detail), "%s", why);
		set_state(s, PLUGIN_FAILED, detail);
	} else {
		uv_timer_start(&s->t_up, up_cb, s->ep->settle, 0);
		scope__unit_name(s->name, unit);
		if (s->ep->scope)
			snprintf(detail, sizeof(detail), "pid %ld in %s%s", (long)s->st.pid, unit,
				 s->nolog ? " (no journal: output discarded)" : "");
		else
			snprintf(detail, sizeof(detail), "pid %ld", (long)s->st.pid);
		set_state(s, PLUGIN_STARTING, detail);
	}
	if (fin)
		op_finish(s, r);
}

/* Give up a child that is still behind its gate: at EOF it exits without running the
 * command; SIGKILL makes sure. Its exit no longer concerns the instance (s->child). */
static void spawn_abandon(struct exec_svc *s, struct exec_child *c)
{
	child_close_gate(c);
	if (s->child == c)
		s->child = NULL;
	if (!c->exited)
		group_kill(c->proc.pid, SIGKILL);
}

/* Thread pool: create the scope (s->swork_* are the work's own until after_cb). */
static void scope_work_cb(uv_work_t *w)
{
	struct exec_svc *s = w->data;
	struct exec_plugin *ep = s->ep;
	char unit[SCOPE_UNIT_MAX];

	scope__unit_name(s->name, unit);
	if (s->swork_stop)
		s->swork_res = scope__stop(ep->p->cfg.bus_address, unit, SCOPE_MS, s->swork_err,
					   sizeof(s->swork_err));
	else
		s->swork_res = scope__start(ep->p->cfg.bus_address, unit, s->swork_pid,
					    s->swork_desc, ep->stop_timeout, SCOPE_MS,
					    s->swork_err, sizeof(s->swork_err));
}

static void deactivate_done(struct exec_svc *s, int err, const char *scope_err);

static void scope_after_cb(uv_work_t *w, int status)
{
	struct exec_svc *s = w->data;
	struct exec_plugin *ep = s->ep;
	struct exec_child *c = s->gating;	/* NULL: it exited behind the gate */
	int r = status < 0 ? status : s->swork_res;
	char why[300];

	s->swork_busy = false;
	ep->handles--;
	if (status < 0)
		snprintf(s->swork_err, sizeof(s->swork_err), "scope work: %s", uv_strerror(status));
	if (s->swork_stop) {
		s->swork_stop = false;
		if (ep->closing)
			check_close(ep);
		else
			deactivate_done(s, 0, r < 0 ? s->swork_err : NULL);
		return;
	}
	s->gating = NULL;
	if (ep->closing) {
		/* the agent goes away: a process in its scope may run on (the next run adopts
		 * it); one without a scope would die with the agent's cgroup anyway */
		if (c && r == 0)
			gate_open(c);
		else if (c)
			spawn_abandon(s, c);
		check_close(ep);
		return;
	}
	if (!s->want_run || s->stopping) {
		/* stopped while waiting for the scope (svc_stop waits for this work) */
		if (c)
			spawn_abandon(s, c);
		return;
	}
	snprintf(why, sizeof(why), "systemd scope: %s", s->swork_err);
	if (!c) {
		/* exit_cb reported the exit already */
		if (r < 0)
			snprintf(s->err, sizeof(s->err), "%s", why);
		if (s->spawn_for_op) {
			s->spawn_for_op = false;
			op_finish(s, r);
		}
		return;
	}
	if (r < 0) {
		spawn_abandon(s, c);
		svc_spawned(s, r, why);
		return;
	}
	gate_open(c);
	svc_spawned(s, 0, NULL);
}

/* Spawn the current instance: STARTING, or FAILED when the spawn itself (or, with scopes, the
 * scope) fails; the result goes to svc_spawned, now or from the scope work. */
static void svc_spawn(struct exec_svc *s)
{
	struct exec_plugin *ep = s->ep;
	char why[160];
	int r;

	s->want_run = true;
	r = child_start(s);
	if (r < 0) {
		snprintf(why, sizeof(why), "spawn failed: %s", uv_strerror(r));
		svc_spawned(s, r, why);
		return;
	}
	if (!ep->scope) {
		svc_spawned(s, 0, NULL);
		return;
	}
	s->swork_pid = s->child->proc.pid;
	s->swork_err[0] = '\0';
	snprintf(s->swork_desc, sizeof(s->swork_desc), "Shoal exec service %s rev %" PRIu64,
		 s->name, s->rev);
	s->swork.data = s;
	r = uv_queue_work(ep->p->loop, &s->swork, scope_work_cb, scope_after_cb);
	if (r < 0) {
		spawn_abandon(s, s->child ? s->child : s->gating);
		s->gating = NULL;
		snprintf(why, sizeof(why), "systemd scope: cannot queue the work: %s",
			 uv_strerror(r));
		svc_spawned(s, r, why);
		return;
	}
	s->swork_busy = true;
	ep->handles++;
}

/* ---- services ------------------------------------------------------------------------------ */

static struct exec_svc *svc_find(struct exec_plugin *ep, const char *name)
{
	for (struct exec_svc *s = ep->svcs; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static struct exec_svc *svc_get(struct exec_plugin *ep, const char *name)
{
	uv_loop_t *loop = ep->p->loop;
	struct exec_svc *s = svc_find(ep, name);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ep = ep;
	snprintf(s->name, sizeof(s->name), "%s", name);
	plugin__status_init(&s->st);
	s->backoff_ms = ep->rmin;
	uv_timer_t *ts[] = { &s->t_restart, &s->t_up, &s->t_stop, &s->t_op };
	for (size_t i = 0; i < 4; i++) {
		uv_timer_init(loop, ts[i]);
		ts[i]->data = s;
		ep->handles++;
	}
	s->next = ep->svcs;
	ep->svcs = s;
	return s;
}

/* Common argument checks of prepare and activate. */
static int check_instance(struct exec_plugin *ep, const struct plugin_instance *in)
{
	if (ep->closing)
		return -ECANCELED;
	if (!in || !plugin__valid_service(in->service) || !in->dir || in->dir[0] != '/')
		return -EINVAL;
	if (!in->manifest || !in->manifest->exec_command || !in->manifest->exec_command[0])
		return -EINVAL;
	return 0;
}

static int op_begin(struct exec_svc *s, enum exec_opkind kind, const struct plugin_instance *in,
		    void *ud)
{
	if (s->op != OP_NONE)
		return -EBUSY;
	s->op = kind;
	s->op_ud = ud;
	s->err[0] = '\0';
	if (in) {
		s->ndir = xstrdup(in->dir);
		s->ncommand = xstrdup(in->manifest->exec_command);
		if (!s->ndir || !s->ncommand) {
			op_clear(s);
			return -ENOMEM;
		}
		s->nrev = in->rev;
		plugin__id_hex(&in->artifact, s->nartifact);
	}
	return 0;
}

static void activate_stopped(struct exec_svc *s, int err)
{
	char *t;

	if (s->ep->closing)
		return;	/* cancelled by close */
	if (err < 0) {
		op_finish(s, err);
		return;
	}
	if (s->have_inst && s->st.state != PLUGIN_STOPPED)
		set_state(s, PLUGIN_STOPPED, "stopped for a new instance");
	/* install the new instance */
	t = s->dir;
	s->dir = s->ndir;
	s->ndir = t;
	t = s->command;
	s->command = s->ncommand;
	s->ncommand = t;
	s->rev = s->nrev;
	memcpy(s->artifact, s->nartifact, sizeof(s->artifact));
	s->have_inst = true;
	s->st.restarts = 0;
	s->st.exit_status = -1;
	s->nrestart_at = 0;
	s->backoff_ms = s->ep->rmin;
	s->spawn_for_op = true;
	svc_spawn(s);
}

static void fs_cb(uv_fs_t *req)
{
	struct exec_svc *s = req->data;
	struct exec_plugin *ep = s->ep;
	int r = (int)req->result;
	bool isdir = r >= 0 && S_ISDIR(req->statbuf.st_mode);

	uv_fs_req_cleanup(req);
	s->fs_busy = false;
	ep->handles--;
	if (ep->closing) {
		check_close(ep);
		return;
	}
	if (r >= 0 && !isdir)
		r = -ENOTDIR;
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "artifact directory %s: %s", s->ndir,
			 uv_strerror(r));
		op_finish(s, r);
		return;
	}
	if (s->op == OP_PREPARE) {
		op_finish(s, 0);
		return;
	}
	svc_stop(s, activate_stopped);
}

static int start_stat(struct exec_svc *s)
{
	int r;

	s->fs.data = s;
	r = uv_fs_stat(s->ep->p->loop, &s->fs, s->ndir, fs_cb);
	if (r < 0)
		return r;
	s->fs_busy = true;
	s->ep->handles++;
	return 0;
}

/*
 * prepare and activate: check @in, claim the service's op slot and stat the directory; what
 * follows (by @kind) runs from the stat's callback, never before we return.
 */
static int op_instance(struct plugin *p, const struct plugin_instance *in, enum exec_opkind kind,
		       plugin_done_cb cb, void *ud)
{
	struct exec_plugin *ep = p->priv;
	struct exec_svc *s;
	int r = check_instance(ep, in);

	if (r < 0)
		return r;
	if (!cb)
		return -EINVAL;
	s = svc_get(ep, in->service);
	if (!s)
		return -ENOMEM;
	r = op_begin(s, kind, in, ud);
	if (r < 0)
		return r;
	s->done_cb = cb;
	r = start_stat(s);
	if (r < 0)
		op_clear(s);
	return r;
}

static int exec_prepare(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
			void *ud)
{
	return op_instance(p, in, OP_PREPARE, cb, ud);
}

static int exec_activate(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
			 void *ud)
{
	return op_instance(p, in, OP_ACTIVATE, cb, ud);
}

static void deactivate_done(struct exec_svc *s, int err, const char *scope_err)
{
	char detail[160];

	if (err == 0 && (s->st.state != PLUGIN_STOPPED || scope_err)) {
		/* the process group is gone, which is what deactivate promises; a scope that
		 * could not be stopped only keeps what left the group, and the next start
		 * stops it first (scope__start) */
		snprintf(detail, sizeof(detail), "deactivated%s%.130s", scope_err ? "; scope: " : "",
			 scope_err ? scope_err : "");
		set_state(s, PLUGIN_STOPPED, detail);
	}
	op_finish(s, err);
}

static void deactivate_stopped(struct exec_svc *s, int err)
{
	struct exec_plugin *ep = s->ep;

	if (ep->closing)
		return;
	if (err == 0 && ep->scope && s->have_inst) {
		/* with scopes: also stop the scope, which ends whatever left the process group
		 * (a daemon that called setsid); serialised with spawns through swork, so a
		 * later start cannot be overtaken by this stop */
		s->swork_stop = true;
		s->swork_err[0] = '\0';
		s->swork.data = s;
		if (uv_queue_work(ep->p->loop, &s->swork, scope_work_cb, scope_after_cb) == 0) {
			s->swork_busy = true;
			ep->handles++;
			return;
		}
		s->swork_stop = false;
	}
	deactivate_done(s, err, NULL);
}

static void op_timer_cb(uv_timer_t *t)
{
	struct exec_svc *s = t->data;
	struct plugin_status st;
	plugin_status_cb cb;
	void *ud;

	switch (s->op) {
	case OP_DEACTIVATE:
		svc_stop(s, deactivate_stopped);
		break;
	case OP_STATUS:
		cb = s->status_cb;
		ud = s->op_ud;
		svc_adopt(s);
		status_fill(s, &st);
		op_clear(s);
		cb(s->ep->p, s->name, 0, &st, ud);
		break;
	default:
		break;
	}
}

/*
 * deactivate and status: claim the service's op slot and run the work from op_timer_cb, deferred
 * because the stop may have nothing to do and callbacks never run before we return. The caller
 * passes its callback in the slot of its kind and NULL in the other.
 */
static int op_defer(struct plugin *p, const char *service, enum exec_opkind kind,
		    plugin_done_cb done_cb, plugin_status_cb status_cb, void *ud)
{
	struct exec_plugin *ep = p->priv;
	struct exec_svc *s;
	int r;

	if (ep->closing)
		return -ECANCELED;
	if (!plugin__valid_service(service) || (!done_cb && !status_cb))
		return -EINVAL;
	s = svc_get(ep, service);
	if (!s)
		return -ENOMEM;
	r = op_begin(s, kind, NULL, ud);
	if (r < 0)
		return r;
	if (done_cb)
		s->done_cb = done_cb;
	else
		s->status_cb = status_cb;
	uv_timer_start(&s->t_op, op_timer_cb, 0, 0);
	return 0;
}

static int exec_deactivate(struct plugin *p, const char *service, plugin_done_cb cb, void *ud)
{
	return op_defer(p, service, OP_DEACTIVATE, cb, NULL, ud);
}

static int exec_status(struct plugin *p, const char *service, plugin_status_cb cb, void *ud)
{
	return op_defer(p, service, OP_STATUS, NULL, cb, ud);
}

/* Nothing per revision is kept outside the store's materialized directories. */
static const char *exec_last_error(struct plugin *p, const char *service)
{
	struct exec_plugin *ep = p->priv;
	struct exec_svc *s = service ? svc_find(ep, service) : NULL;

	return s ? s->err : "";
}

static int exec_forget(struct plugin *p, const char *service, uint64_t rev)
{
	(void)p;
	(void)rev;
	return plugin__valid_service(service) ? 0 : -EINVAL;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = path[i];
	}
	return 0;
}

static int exec_init(struct plugin *p)
{
	const struct plugin_config *cfg = &p->cfg;
	struct exec_plugin *ep;
	size_t n;
	int r;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->p = p;
	n = strlen(cfg->state_dir) + sizeof("/run");
	ep->rundir = malloc(n);
	if (!ep->rundir) {
		free(ep);
		return -ENOMEM;
	}
	snprintf(ep->rundir, n, "%s/run", cfg->state_dir);
	r = mkdir_p(ep->rundir);
	if (r < 0) {
		free(ep->rundir);
		free(ep);
		return r;
	}
	ep->stop_timeout = plugin__ms(cfg->stop_timeout_ms, 10000);
	ep->rmin = plugin__ms(cfg->restart_min_ms, 100);
	ep->rmax = plugin__ms(cfg->restart_max_ms, 30000);
	if (ep->rmax < ep->rmin)
		ep->rmax = ep->rmin;
	ep->rreset = plugin__ms(cfg->restart_reset_ms, 10000);
	ep->burst = plugin__ms(cfg->restart_burst, 5);
	if (ep->burst > BURST_MAX)
		ep->burst = BURST_MAX;
	ep->window = plugin__ms(cfg->restart_window_ms, 60000);
	ep->settle = plugin__ms(cfg->settle_ms, 1000);
	switch (cfg->exec_scope) {
	case PLUGIN_EXEC_SCOPE_OFF:
		ep->scope = false;
		break;
	case PLUGIN_EXEC_SCOPE_ON:
		ep->scope = true;
		break;
	default:
		/* under systemd: a named bus, or the agent IS a unit's process: systemd sets
		 * INVOCATION_ID for what it starts and is its parent. The parent check keeps
		 * programs that merely descend from a unit (tests run by a CI runner service,
		 * which inherit its INVOCATION_ID) from leaving scopes behind on the host. */
		ep->scope = cfg->bus_address ||
			    (sd_booted() > 0 && getenv("INVOCATION_ID") && getppid() == 1);
		break;
	}
	if (ep->scope) {
		/* gate_open writes into a pipe whose reader may be gone: EPIPE, not death */
		struct sigaction sa;

		if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
			sa.sa_handler = SIG_IGN;
			sigaction(SIGPIPE, &sa, NULL);
		}
	}
	uv_timer_init(p->loop, &ep->t_close);
	ep->t_close.data = ep;
	ep->handles++;
	p->priv = ep;
	return 0;
}

/* ---- close ------------------------------------------------------------------------------- */

static void close_svc_stopped(struct exec_svc *s, int err)
{
	(void)s;
	(void)err;
}

static void timer_closed(uv_handle_t *h)
{
	struct exec_svc *s = h->data;
	struct exec_plugin *ep = s->ep;

	ep->handles--;
	check_close(ep);
}

static void close_handle_cb(uv_handle_t *h)
{
	struct exec_plugin *ep = h->data;

	ep->handles--;
	check_close(ep);
}

/*
 * Close in three steps: (1) wait until every stop started by exec_close and every fs request
 * has finished; (2) close every handle; (3) when the last one is closed, cancel the pending
 * operations, free everything and call the close callback (always from a close callback,
 * thanks to t_close, so never from inside plugin_close()).
 */
static void check_close(struct exec_plugin *ep)
{
	struct plugin *p = ep->p;

	if (!ep->close_ready)
		return;
	if (!ep->closing_handles) {
		for (struct exec_svc *s = ep->svcs; s; s = s->next)
			if (s->stopping || s->fs_busy || s->swork_busy)
				return;
		ep->closing_handles = true;
		for (struct exec_svc *s = ep->svcs; s; s = s->next) {
			uv_timer_t *ts[] = { &s->t_restart, &s->t_up, &s->t_stop, &s->t_op };

			for (size_t i = 0; i < 4; i++)
				uv_close((uv_handle_t *)ts[i], timer_closed);
			s->child = NULL;
		}
		/* children: a stop that gave up leaves a process handle; pipes may be held
		 * open by a grandchild that left the group. Let go of all of them. */
		for (struct exec_child *c = ep->children; c; c = c->next) {
			if (!uv_is_closing((uv_handle_t *)&c->proc))
				uv_close((uv_handle_t *)&c->proc, child_handle_closed);
			child_close_handles(c);
		}
		uv_close((uv_handle_t *)&ep->t_close, close_handle_cb);
		return;
	}
	if (ep->handles > 0)
		return;
	while (ep->svcs) {
		struct exec_svc *s = ep->svcs;

		if (s->op != OP_NONE) {
			plugin_done_cb dcb = s->done_cb;
			plugin_status_cb scb = s->status_cb;
			void *ud = s->op_ud;
			struct plugin_status st;

			plugin__status_init(&st);
			op_clear(s);
			if (dcb)
				dcb(p, s->name, -ECANCELED, ud);
			else if (scb)
				scb(p, s->name, -ECANCELED, &st, ud);
		}
		ep->svcs = s->next;
		free(s->dir);
		free(s->command);
		free(s);
	}
	{
		plugin_close_cb cb = ep->close_cb;
		void *ud = ep->close_ud;

		free(ep->rundir);
		free(ep);
		p->priv = NULL;
		cb(p, ud);
	}
}

static void exec_close(struct plugin *p, plugin_close_cb cb, void *ud)
{
	struct exec_plugin *ep = p->priv;

	ep->closing = true;
	ep->close_cb = cb;
	ep->close_ud = ud;
	for (struct exec_svc *s = ep->svcs; s; s = s->next) {
		s->want_run = false;
		uv_timer_stop(&s->t_restart);
		uv_timer_stop(&s->t_up);
		uv_timer_stop(&s->t_op);
		apoll_release(s);
		/* with scopes, systemd keeps the services running without us, outside our
		 * cgroup, and the next agent run adopts them (svc_adopt) */
		if (!ep->scope && !s->stopping && (s->child || s->pgid))
			svc_stop(s, close_svc_stopped);
	}
	ep->close_ready = true;
	check_close(ep);
}

const struct plugin_ops plugin_exec_ops = {
	.name = "exec",
	.init = exec_init,
	.prepare = exec_prepare,
	.activate = exec_activate,
	.deactivate = exec_deactivate,
	.status = exec_status,
	.forget = exec_forget,
	.close = exec_close,
	.last_error = exec_last_error,
};
