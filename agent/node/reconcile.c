/*
 * agent/node/reconcile.c: the swap state machine (agent/node/reconcile.h documents the behaviour).
 *
 * Per service, one struct rc_svc holds the desired revision, the swap in progress (a copy of
 * its journal record) and at most one asynchronous operation (a materialize on the thread
 * pool, or one plugin operation: the plugins allow one per service). Everything is driven
 * by kick(): from the service's timer (deferred work, back-off, pacing) and from operation
 * callbacks. The public functions only record facts and arm the timer, so no user callback
 * ever runs inside a reconcile_* call.
 *
 *   kick -+- swapping? -----------------------------> swap_continue
 *         +- desired == running -- verified? done : plugin_status -- up? verified
 *         |                                                       `- else: swap (restart)
 *         `- desired != running -- may_start? -- swap : retry in pace_retry_ms
 *
 *   swap_continue: re-aim at the newest desired if allowed (see the header's "Coalescing"),
 *   then step_start: write the journal record, then run the step. Its completion advances
 *   j.step (step_done) and loops back to swap_continue; the last step ends in swap_finish:
 *   service state, journal delete, on_swapped(0).
 *
 * Journal record (RECONCILE_JOURNAL_LEN = 96 bytes, little-endian):
 *
 *    0       3   4      5       6        8         12        16
 *   +-------+---+------+-------+--------+---------+---------+
 *   | "SRJ" | v | step | flags | 0 (16) | attempt | 0 (32)  |
 *   +-------+---+------+-------+--------+---------+---------+
 *   16            24                  56          64                 96
 *   +-------------+-------------------+-----------+------------------+
 *   | target_rev  | target id (32)    | prev_rev  | prev id (32)     |
 *   +-------------+-------------------+-----------+------------------+
 *
 * v = RECONCILE_JOURNAL_VERSION; flags and the zero fields must be 0 in version 1 (room to
 * grow without a new version when a new reader ignores them). A rev of 0 goes with an all-zero
 * id and means "nothing" (a stop target; no previous instance).
 */
#include "agent/node/reconcile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_MIN_MS  1000
#define RETRY_MAX_MS  60000
#define PACE_RETRY_MS 2000
#define RM_DEPTH_MAX  64

struct rc_plugin {
	struct rc_plugin *next;
	struct reconcile *r;
	char name[32];
	struct plugin *p;
};

struct rc_svc {
	struct rc_svc *next;
	struct reconcile *r;
	char name[65];

	bool have_desired;
	uint64_t want_rev;		/* 0 = stop */
	struct store_id want;

	bool swapping;
	struct reconcile_journal j;
	bool resumed_step;		/* j.step came from a previous run's journal: finish it */
	bool touched;			/* this swap started a step that changes the runtime */
	bool prev_live;			/* the previous instance was verified running at start */
	bool drained;			/* before_stop was asked in this swap */
	bool holding;			/* waiting for reconcile_drained */

	bool busy;			/* one operation in flight */
	bool verified;			/* what the store says runs was activated/confirmed */
	bool swept;			/* a previous run's orphans ended (exec; step_start) */
	bool paced;
	bool restart;			/* reconcile_restart asked: re-activate what runs */
	uint64_t forgot_below;		/* revisions below this were forgotten by the plugins */
	bool timer_on;
	bool closing_timer;
	int last_error;
	char why[320];			/* the last failure in words (the runtime's reason) */
	int bad_journal;		/* an undecodable entry to report at the next kick */
	uv_timer_t timer;

	bool have_tinfo;		/* the target artifact, loaded for the swap */
	struct store_artifact_info tinfo;
	uint64_t verify_rev;

	uv_work_t work;			/* MATERIALIZE */
	int work_err;
	char dir[PATH_MAX];		/* the target's materialized directory */
	char keep[48];			/* directory names the prune leaves alone */
	char tname[48];
};

struct reconcile {
	uv_loop_t *loop;
	struct store *s;
	struct plugin_config pcfg;	/* what plugins get: our event/log wrappers, ud = r */
	plugin_event_cb user_on_event;
	plugin_log_cb user_on_log;
	void *user_pud;
	struct reconcile_callbacks cbs;
	struct reconcile_opts o;

	struct rc_svc *svcs;
	struct rc_plugin *plugins;
	bool resumed;
	bool closing, plugins_closing;
	unsigned nwork;			/* materializations on the thread pool */
	unsigned nclose;		/* handles and plugins still closing */
	void (*close_cb)(void *ud);
	void *close_ud;
	uv_timer_t close_handle;	/* closed first, so that closing always completes later */
};

static void kick(struct rc_svc *s);
static void swap_continue(struct rc_svc *s);
static void maybe_finish_close(struct reconcile *r);

/* ---- small helpers ------------------------------------------------------------------------ */

const char *reconcile_step_name(enum reconcile_step s)
{
	switch (s) {
	case RECONCILE_STEP_NONE:
		return "none";
	case RECONCILE_STEP_MATERIALIZE:
		return "materialize";
	case RECONCILE_STEP_PREPARE:
		return "prepare";
	case RECONCILE_STEP_STOP_PREV:
		return "stop-prev";
	case RECONCILE_STEP_ACTIVATE:
		return "activate";
	case RECONCILE_STEP_DEACTIVATE:
		return "deactivate";
	}
	return "unknown";
}

const char *reconcile_event_name(enum reconcile_event_kind k)
{
	switch (k) {
	case RECONCILE_EV_STEP:
		return "step";
	case RECONCILE_EV_RETRY:
		return "retry";
	case RECONCILE_EV_PACED:
		return "paced";
	case RECONCILE_EV_ABANDONED:
		return "abandoned";
	case RECONCILE_EV_PLUGIN:
		return "plugin";
	case RECONCILE_EV_JOURNAL_BAD:
		return "journal-bad";
	}
	return "unknown";
}

static bool id_zero(const struct store_id *id)
{
	static const struct store_id z;

	return memcmp(id, &z, sizeof(z)) == 0;
}

static bool id_eq(const struct store_id *a, const struct store_id *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static bool valid_service(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool step_touches(enum reconcile_step st)
{
	return st == RECONCILE_STEP_STOP_PREV || st == RECONCILE_STEP_ACTIVATE ||
	       st == RECONCILE_STEP_DEACTIVATE;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- journal record ----------------------------------------------------------------------- */

int reconcile__journal_encode(const struct reconcile_journal *j,
			      uint8_t out[RECONCILE_JOURNAL_LEN])
{
	if (!j || !out || j->step < RECONCILE_STEP_MATERIALIZE ||
	    j->step > RECONCILE_STEP_DEACTIVATE)
		return -EINVAL;
	memset(out, 0, RECONCILE_JOURNAL_LEN);
	memcpy(out, "SRJ", 3);
	out[3] = RECONCILE_JOURNAL_VERSION;
	out[4] = (uint8_t)j->step;
	put_le32(out + 8, j->attempt);
	put_le64(out + 16, j->target_rev);
	memcpy(out + 24, j->target.b, STORE_ID_LEN);
	put_le64(out + 56, j->prev_rev);
	memcpy(out + 64, j->prev.b, STORE_ID_LEN);
	return 0;
}

int reconcile__journal_decode(const void *buf, size_t len, struct reconcile_journal *ret)
{
	const uint8_t *p = buf;
	struct reconcile_journal j;

	if (!buf || !ret || len < 4 || memcmp(p, "SRJ", 3) != 0)
		return -EBADMSG;
	if (p[3] > RECONCILE_JOURNAL_VERSION)
		return -EPROTONOSUPPORT;
	if (p[3] != RECONCILE_JOURNAL_VERSION || len != RECONCILE_JOURNAL_LEN)
		return -EBADMSG;
	if (p[5] || p[6] || p[7] || get_le32(p + 12))
		return -EBADMSG;
	memset(&j, 0, sizeof(j));
	j.step = (enum reconcile_step)p[4];
	j.attempt = get_le32(p + 8);
	j.target_rev = get_le64(p + 16);
	memcpy(j.target.b, p + 24, STORE_ID_LEN);
	j.prev_rev = get_le64(p + 56);
	memcpy(j.prev.b, p + 64, STORE_ID_LEN);
	if (p[4] < RECONCILE_STEP_MATERIALIZE || p[4] > RECONCILE_STEP_DEACTIVATE)
		return -EBADMSG;
	/* rev 0 <=> zero id, and a stop target <=> the DEACTIVATE step */
	if ((j.target_rev == 0) != id_zero(&j.target) || (j.prev_rev == 0) != id_zero(&j.prev))
		return -EBADMSG;
	if ((j.target_rev == 0) != (j.step == RECONCILE_STEP_DEACTIVATE))
		return -EBADMSG;
	*ret = j;
	return 0;
}

static int journal_write(struct rc_svc *s)
{
	uint8_t buf[RECONCILE_JOURNAL_LEN];
	int r = reconcile__journal_encode(&s->j, buf);

	if (r < 0)
		return r;
	return store_journal_put(s->r->s, s->name, buf, sizeof(buf));
}

/* ---- callbacks out ------------------------------------------------------------------------ */

static void emit(struct rc_svc *s, enum reconcile_event_kind kind, int status, uint32_t retry_ms)
{
	struct reconcile *r = s->r;
	struct reconcile_event ev = {
		.kind = kind,
		.service = s->name,
		.status = status,
		.retry_ms = retry_ms,
	};

	if (r->closing || !r->cbs.on_state)
		return;
	if (s->swapping) {
		ev.rev = s->j.target_rev;
		ev.artifact = s->j.target_rev ? &s->j.target : NULL;
		ev.step = s->j.step;
		ev.attempt = s->j.attempt;
	} else if (s->have_desired) {
		ev.rev = s->want_rev;
		ev.artifact = s->want_rev ? &s->want : NULL;
	}
	r->cbs.on_state(r->cbs.ud, &ev);
}

static void swapped(struct rc_svc *s, uint64_t rev, const struct store_id *art, int status)
{
	struct reconcile *r = s->r;

	if (!r->closing && r->cbs.on_swapped)
		r->cbs.on_swapped(r->cbs.ud, s->name, rev, rev ? art : NULL, status);
}

static void rc_plugin_event(struct plugin *p, const char *service, const struct plugin_status *st,
			    void *ud)
{
	struct reconcile *r = ud;
	struct reconcile_event ev = {
		.kind = RECONCILE_EV_PLUGIN,
		.service = service,
		.rev = st ? st->rev : 0,
		.st = st,
	};

	if (r->user_on_event)
		r->user_on_event(p, service, st, r->user_pud);
	if (!r->closing && r->cbs.on_state)
		r->cbs.on_state(r->cbs.ud, &ev);
}

static void rc_plugin_log(struct plugin *p, const char *service, int fd, const char *line, void *ud)
{
	struct reconcile *r = ud;

	if (r->user_on_log)
		r->user_on_log(p, service, fd, line, r->user_pud);
}

/* ---- plugins ------------------------------------------------------------------------------ */

static int get_plugin(struct reconcile *r, const char *runtime, struct plugin **ret)
{
	const struct plugin_ops *ops;
	struct rc_plugin *rp;
	int err;

	if (!runtime)
		return -EINVAL;
	for (rp = r->plugins; rp; rp = rp->next)
		if (strcmp(rp->name, runtime) == 0) {
			*ret = rp->p;
			return 0;
		}
	ops = plugin_ops_by_name(runtime);
	if (!ops || strlen(runtime) >= sizeof(rp->name))
		return -EPROTONOSUPPORT;
	rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	err = plugin_new(r->loop, ops, &r->pcfg, &rp->p);
	if (err < 0) {
		free(rp);
		return err;
	}
	rp->r = r;
	strcpy(rp->name, runtime);
	rp->next = r->plugins;
	r->plugins = rp;
	*ret = rp->p;
	return 0;
}

/* The plugin of artifact @id (by its manifest's runtime). -ENOENT if the artifact is gone. */
static int plugin_of(struct reconcile *r, const struct store_id *id, struct plugin **ret)
{
	struct store_artifact_info ai;
	int err = store_artifact_get(r->s, id, &ai);

	if (err < 0)
		return err;
	err = get_plugin(r, ai.manifest.runtime, ret);
	store_artifact_info_release(&ai);
	return err;
}

/* ---- services ----------------------------------------------------------------------------- */

static void svc_timer_cb(uv_timer_t *t)
{
	struct rc_svc *s = t->data;

	s->timer_on = false;
	kick(s);
}

static void schedule(struct rc_svc *s, uint64_t ms)
{
	if (s->r->closing)
		return;
	s->timer_on = true;
	uv_timer_start(&s->timer, svc_timer_cb, ms, 0);
}

static struct rc_svc *svc_find(struct reconcile *r, const char *name)
{
	for (struct rc_svc *s = r->svcs; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static struct rc_svc *svc_get(struct reconcile *r, const char *name)
{
	struct rc_svc *s = svc_find(r, name);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->r = r;
	snprintf(s->name, sizeof(s->name), "%s", name);
	uv_timer_init(r->loop, &s->timer);
	s->timer.data = s;
	s->next = r->svcs;
	r->svcs = s;
	return s;
}

static void tinfo_drop(struct rc_svc *s)
{
	if (s->have_tinfo)
		store_artifact_info_release(&s->tinfo);
	s->have_tinfo = false;
}

static uint32_t backoff_ms(struct reconcile *r, uint32_t attempt)
{
	uint64_t d = r->o.retry_min_ms;

	for (uint32_t i = 1; i < attempt && d < r->o.retry_max_ms; i++)
		d *= 2;
	return d > r->o.retry_max_ms ? r->o.retry_max_ms : (uint32_t)d;
}

/* "<rev>-<first 12 hex digits>", the directory name of a revision's artifact. */
static void dir_name(uint64_t rev, const struct store_id *id, char *out, size_t len)
{
	char hex[STORE_ID_HEXLEN + 1];

	store_id_hex(id, hex);
	snprintf(out, len, "%" PRIu64 "-%.12s", rev, hex);
}

/* @name is a directory of dir_name() for the same artifact as @target ("<rev>-<id12>"). */
static bool same_artifact_dir(const char *name, const char *target)
{
	size_t nd = strspn(name, "0123456789"), td = strspn(target, "0123456789");

	return nd > 0 && name[nd] == '-' && target[td] == '-' && strlen(name + nd) == 13 &&
	       strcmp(name + nd, target + td) == 0;
}

/* ---- orphans of a killed agent (exec) ----------------------------------------------------- */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Does /proc/@pid/environ hold both @a and a variable starting with @b_prefix? */
static bool environ_matches(long pid, const char *a, const char *b_prefix)
{
	char path[64], *buf;
	size_t n = 0, cap = 256 * 1024, blen = strlen(b_prefix);
	bool has_a = false, has_b = false;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return false;
	}
	for (;;) {
		ssize_t k = read(fd, buf + n, cap - n);

		if (k <= 0)
			break;
		n += (size_t)k;
		if (n == cap)
			break;
	}
	close(fd);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
		if (strcmp(buf + i, a) == 0)
			has_a = true;
		else if (strncmp(buf + i, b_prefix, blen) == 0)
			has_b = true;
	}
	free(buf);
	return has_a && has_b;
}

/* Process groups of live (non-zombie) processes of @service started from our artifacts. */
static int orphan_groups(const char *svc_var, const char *dir_var, pid_t *out, int cap)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t self = getpid();
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[64], buf[512], *q;
		long pid = strtol(de->d_name, NULL, 10);
		pid_t pgid;
		FILE *f;
		size_t k;
		bool dup = false;

		if (pid <= 1 || pid == (long)self)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		f = fopen(path, "re");
		if (!f)
			continue;
		k = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[k] = '\0';
		q = strrchr(buf, ')');
		if (!q || q[1] != ' ' || q[2] == 'Z' || q[2] == 'X')
			continue;
		if (!environ_matches(pid, svc_var, dir_var))
			continue;
		pgid = getpgid((pid_t)pid);
		if (pgid <= 1 || pgid == getpgid(0))
			continue;
		for (int i = 0; i < n; i++)
			dup |= out[i] == pgid;
		if (!dup && n < cap)
			out[n++] = pgid;
	}
	closedir(d);
	return n;
}

int reconcile__sweep_orphans(const char *state_dir, const char *service, uint32_t timeout_ms)
{
	char svc_var[96], dir_var[PATH_MAX];
	pid_t groups[64];
	uint64_t start = mono_ms();
	int n, total = 0;
	bool killed = false;

	if (!state_dir || !valid_service(service))
		return -EINVAL;
	snprintf(svc_var, sizeof(svc_var), "SHOAL_SERVICE=%s", service);
	if ((size_t)snprintf(dir_var, sizeof(dir_var), "SHOAL_DIR=%s/artifacts/%s/", state_dir,
			     service) >= sizeof(dir_var))
		return -ENAMETOOLONG;
	for (;;) {
		n = orphan_groups(svc_var, dir_var, groups, 64);
		if (n <= 0)
			return n < 0 ? n : total;
		if (total < n)
			total = n;
		if (!killed && mono_ms() - start >= timeout_ms)
			killed = true;
		else if (killed && mono_ms() - start >= (uint64_t)timeout_ms + 5000)
			return -ETIMEDOUT;
		for (int i = 0; i < n; i++)
			kill(-groups[i], killed ? SIGKILL : SIGTERM);
		usleep(25 * 1000);
	}
}

/* ---- steps -------------------------------------------------------------------------------- */

static void step_failed(struct rc_svc *s, int err)
{
	uint32_t delay;

	if (!s->why[0])
		snprintf(s->why, sizeof s->why, "%s", store_strerror(err));
	s->busy = false;
	s->last_error = err;
	/* a failed step is over: it no longer has to finish before the swap may be re-aimed */
	s->resumed_step = false;
	if (s->j.attempt < UINT32_MAX)
		s->j.attempt++;
	(void)journal_write(s);	/* best effort: the attempt count is informative */
	delay = backoff_ms(s->r, s->j.attempt);
	/* armed before the callbacks: a desired change they make re-arms it at 0 */
	schedule(s, delay);
	emit(s, RECONCILE_EV_RETRY, err, delay);
	swapped(s, s->j.target_rev, &s->j.target, err);
}

static int oldest_rev_cb(const struct store_revision *rv, void *ud)
{
	*(uint64_t *)ud = rv->rev;	/* newest first: the last call is the oldest */
	return 0;
}

/*
 * Retention (store_retain) drops a service's oldest revisions from the store; what the
 * runtimes keep for them (systemd unit files whose marker names the revision, container
 * images tagged r<rev> and their stopped containers) must go too. After each finished swap,
 * every revision below the oldest one the store still holds is forgotten by every plugin this
 * reconciler runs. Best effort and idempotent: a plugin that refuses (-EBUSY while it is busy
 * with the service or runs that revision) is asked again after the next swap.
 */
static void forget_dropped(struct rc_svc *s)
{
	struct reconcile *r = s->r;
	uint64_t oldest = 0;

	if (store_revision_foreach(r->s, s->name, 0, oldest_rev_cb, &oldest) < 0 || oldest == 0)
		return;
	if (s->forgot_below == 0)
		s->forgot_below = 1;
	for (; s->forgot_below < oldest; s->forgot_below++)
		for (struct rc_plugin *rp = r->plugins; rp; rp = rp->next)
			if (rp->p->ops->forget &&
			    rp->p->ops->forget(rp->p, s->name, s->forgot_below) < 0)
				return;
}

static void swap_finish(struct rc_svc *s)
{
	struct store_service_state st;
	struct store_id target = s->j.target;
	uint64_t rev = s->j.target_rev;
	int err = store_service_state_get(s->r->s, s->name, &st);

	if (err < 0) {
		step_failed(s, err);
		return;
	}
	st.running = target;
	st.running_rev = rev;
	err = store_service_state_put(s->r->s, s->name, &st);
	if (err < 0) {
		step_failed(s, err);
		return;
	}
	/* After this the swap is over even if the delete fails: a leftover entry only makes the
	 * next run re-activate what runs, which is harmless. */
	(void)store_journal_del(s->r->s, s->name);
	s->swapping = false;
	s->resumed_step = false;
	s->touched = false;
	s->verified = true;
	s->last_error = 0;
	tinfo_drop(s);
	swapped(s, rev, &target, 0);
	forget_dropped(s);
	schedule(s, 0);	/* the desired revision may have moved on meanwhile */
}

static void step_done(struct rc_svc *s, int status)
{
	struct plugin *pp, *pt;

	s->busy = false;
	if (s->r->closing)
		return;
	if (status < 0) {
		step_failed(s, status);
		return;
	}
	s->resumed_step = false;
	switch (s->j.step) {
	case RECONCILE_STEP_MATERIALIZE:
		s->j.step = RECONCILE_STEP_PREPARE;
		break;
	case RECONCILE_STEP_PREPARE:
		s->j.step = RECONCILE_STEP_ACTIVATE;
		/* a different runtime does not replace the previous instance by itself */
		if (s->j.prev_rev && plugin_of(s->r, &s->j.prev, &pp) == 0 &&
		    get_plugin(s->r, s->tinfo.manifest.runtime, &pt) == 0 && pp != pt)
			s->j.step = RECONCILE_STEP_STOP_PREV;
		break;
	case RECONCILE_STEP_STOP_PREV:
		s->j.step = RECONCILE_STEP_ACTIVATE;
		break;
	default:
		swap_finish(s);
		return;
	}
	swap_continue(s);
}

static void plugin_done(struct plugin *p, const char *service, int status, void *ud)
{
	struct rc_svc *s = ud;
	/* the runtime's own reason (the engine's message, the D-Bus error, the job result):
	 * errno alone says "Input/output error" */
	const char *why = status < 0 ? plugin_last_error(p, service) : "";
	if (status < 0 && why[0])
		snprintf(s->why, sizeof s->why, "%s: %s", why, store_strerror(status));
	else
		s->why[0] = 0;
	step_done(s, status);
}

/* Remove @fd's directory tree entry @name (recursively; no symlink is followed). */
static int rm_rf_at(int dfd, const char *name, int depth)
{
	struct stat sb;
	struct dirent *de;
	DIR *d;
	int fd, err = 0;

	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(sb.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > RM_DEPTH_MAX)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		err = rm_rf_at(fd, de->d_name, depth + 1);
		if (err < 0)
			break;
	}
	closedir(d);
	if (err == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		err = -errno;
	return err;
}

static int mkdir_one(const char *path)
{
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Thread pool: parent directories, prune, materialize. Touches only @s's swap fields, which
 * the loop thread leaves alone while the work is pending (s->busy). */
static void materialize_work(uv_work_t *w)
{
	struct rc_svc *s = w->data;
	struct reconcile *r = s->r;
	char parent[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int err;

	snprintf(parent, sizeof(parent), "%s/artifacts", r->pcfg.state_dir);
	err = mkdir_one(parent);
	if (err == 0) {
		snprintf(parent, sizeof(parent), "%s/artifacts/%s", r->pcfg.state_dir, s->name);
		err = mkdir_one(parent);
	}
	if (err < 0)
		goto out;
	/*
	 * Prune: everything but what runs (and the target) goes, including the .tmp-* trees
	 * of a materialize interrupted by a crash. Failures here cost disk space, not
	 * correctness: ignored.
	 * Except that a rollback goes back to an artifact that ran here before: when the
	 * directory of that earlier revision is still there, it is renamed to the target's
	 * name instead of being copied out of the store again, as deploy tools keep their
	 * release directories. It is complete (directories appear only by rename) and it holds
	 * what the artifact ran with. Never the directory that runs now.
	 */
	bool reused = false, have_target = faccessat(AT_FDCWD, s->dir, F_OK, 0) == 0;
	d = opendir(parent);
	if (d) {
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			    strcmp(de->d_name, s->tname) == 0 || strcmp(de->d_name, s->keep) == 0)
				continue;
			if (!reused && !have_target && same_artifact_dir(de->d_name, s->tname) &&
			    renameat(dirfd(d), de->d_name, dirfd(d), s->tname) == 0) {
				reused = fsync(dirfd(d)) == 0;
				if (!reused)
					(void)rm_rf_at(dirfd(d), s->tname, 0);
				continue;
			}
			(void)rm_rf_at(dirfd(d), de->d_name, 0);
		}
		closedir(d);
	}
	err = reused ? 0 : store_artifact_materialize(r->s, &s->j.target, s->dir);
out:
	s->work_err = err;
}

static void materialize_after(uv_work_t *w, int status)
{
	struct rc_svc *s = w->data;
	struct reconcile *r = s->r;

	r->nwork--;
	if (r->closing) {
		s->busy = false;
		maybe_finish_close(r);
		return;
	}
	step_done(s, status < 0 ? status : s->work_err);
}

/* The plugin a step uses: the target's for PREPARE/ACTIVATE, the previous artifact's for
 * STOP_PREV/DEACTIVATE (-ENOENT: nothing known ran). */
static int step_plugin(struct rc_svc *s, struct plugin **ret)
{
	switch (s->j.step) {
	case RECONCILE_STEP_PREPARE:
	case RECONCILE_STEP_ACTIVATE:
		return get_plugin(s->r, s->tinfo.manifest.runtime, ret);
	case RECONCILE_STEP_STOP_PREV:
	case RECONCILE_STEP_DEACTIVATE:
		return s->j.prev_rev ? plugin_of(s->r, &s->j.prev, ret) : -ENOENT;
	default:
		return -EINVAL;
	}
}

/* Run the (journaled) step's operation. */
static void step_op(struct rc_svc *s)
{
	struct reconcile *r = s->r;
	struct plugin_instance in;
	struct plugin *p = NULL;
	int err;

	memset(&in, 0, sizeof(in));
	in.service = s->name;
	in.rev = s->j.target_rev;
	in.artifact = s->j.target;
	in.manifest = s->have_tinfo ? &s->tinfo.manifest : NULL;
	in.dir = s->dir;
	s->busy = true;
	if (s->j.step == RECONCILE_STEP_MATERIALIZE) {
		s->work.data = s;
		err = uv_queue_work(r->loop, &s->work, materialize_work, materialize_after);
		if (err == 0)
			r->nwork++;
		goto out;
	}
	err = step_plugin(s, &p);
	if (err == -ENOENT &&
	    (s->j.step == RECONCILE_STEP_STOP_PREV || s->j.step == RECONCILE_STEP_DEACTIVATE)) {
		/* nothing known ran (or its artifact is gone: retention keeps the running one,
		 * so only a damaged store gets here): nothing to stop */
		s->busy = false;
		step_done(s, 0);
		return;
	}
	if (err < 0)
		goto out;
	switch (s->j.step) {
	case RECONCILE_STEP_PREPARE:
		err = plugin_prepare(p, &in, plugin_done, s);
		break;
	case RECONCILE_STEP_ACTIVATE:
		err = plugin_activate(p, &in, plugin_done, s);
		break;
	default:
		err = plugin_deactivate(p, s->name, plugin_done, s);
		break;
	}
out:
	if (err < 0)
		step_failed(s, err);
}

static void sweep_work(uv_work_t *w)
{
	struct rc_svc *s = w->data;
	uint32_t timeout = s->r->pcfg.stop_timeout_ms ? s->r->pcfg.stop_timeout_ms : 10000;

	s->work_err = reconcile__sweep_orphans(s->r->pcfg.state_dir, s->name, timeout);
}

static void sweep_after(uv_work_t *w, int status)
{
	struct rc_svc *s = w->data;
	struct reconcile *r = s->r;

	r->nwork--;
	s->busy = false;
	if (r->closing) {
		maybe_finish_close(r);
		return;
	}
	if (status == 0 && s->work_err < 0) {
		step_failed(s, s->work_err);
		return;
	}
	s->swept = true;
	step_op(s);
}

static void step_start(struct rc_svc *s)
{
	struct reconcile *r = s->r;
	struct plugin *p;
	struct stat sb;
	int err;

	if (s->j.step != RECONCILE_STEP_DEACTIVATE) {
		if (!s->have_tinfo) {
			err = store_artifact_get(r->s, &s->j.target, &s->tinfo);
			if (err < 0)
				goto fail;
			s->have_tinfo = true;
		}
		dir_name(s->j.target_rev, &s->j.target, s->tname, sizeof(s->tname));
		s->keep[0] = '\0';
		if (s->j.prev_rev)
			dir_name(s->j.prev_rev, &s->j.prev, s->keep, sizeof(s->keep));
		if ((size_t)snprintf(s->dir, sizeof(s->dir), "%s/artifacts/%s/%s",
				     r->pcfg.state_dir, s->name, s->tname) >= sizeof(s->dir)) {
			err = -ENAMETOOLONG;
			goto fail;
		}
		/* materialize is atomic: the directory exists whole or not at all; a missing one
		 * (crash before it, or someone removed it) is made again */
		if (s->j.step != RECONCILE_STEP_MATERIALIZE &&
		    s->j.step != RECONCILE_STEP_STOP_PREV && stat(s->dir, &sb) < 0)
			s->j.step = RECONCILE_STEP_MATERIALIZE;
	}
	/* drain (issue 14): the instance about to be stopped leaves its load balancers first */
	if (step_touches(s->j.step) && s->j.prev_rev && s->prev_live && !s->drained &&
	    !s->resumed_step && r->cbs.before_stop) {
		s->drained = true;
		if (r->cbs.before_stop(r->cbs.ud, s->name, s->j.prev_rev, &s->j.prev)) {
			s->holding = true;
			s->busy = true;
			return;
		}
	}
	err = journal_write(s);
	if (err < 0)
		goto fail;
	if (step_touches(s->j.step))
		s->touched = true;
	emit(s, RECONCILE_EV_STEP, 0, 0);
	if (r->closing)		/* the callback closed us */
		return;
	/*
	 * The first time this run touches an exec service, first end the process groups a
	 * killed agent left behind that the exec driver cannot know of: its pid file is
	 * written only once uv_spawn returned, so an agent killed while spawning (fork done,
	 * exec not yet confirmed) leaves an unrecorded instance. Those carry SHOAL_SERVICE and
	 * a SHOAL_DIR under our artifacts directory in their environment.
	 */
	if (!s->swept && step_touches(s->j.step) && step_plugin(s, &p) == 0 &&
	    p->ops == &plugin_exec_ops) {
		s->busy = true;
		s->work.data = s;
		err = uv_queue_work(r->loop, &s->work, sweep_work, sweep_after);
		if (err < 0) {
			s->busy = false;
			goto fail;
		}
		r->nwork++;
		return;
	}
	step_op(s);
	return;
fail:
	step_failed(s, err);
}

static bool desired_is_target(struct rc_svc *s)
{
	return s->want_rev == s->j.target_rev &&
	       (s->want_rev == 0 || id_eq(&s->want, &s->j.target));
}

static bool desired_is_prev(struct rc_svc *s)
{
	return s->want_rev == s->j.prev_rev && (s->want_rev == 0 || id_eq(&s->want, &s->j.prev));
}

static void swap_continue(struct rc_svc *s)
{
	if (s->have_desired && !desired_is_target(s) &&
	    !(s->resumed_step && step_touches(s->j.step))) {
		emit(s, RECONCILE_EV_ABANDONED, 0, 0);
		tinfo_drop(s);
		if (desired_is_prev(s) && !s->touched) {
			/* nothing changed in the runtime: what runs is what is wanted */
			(void)store_journal_del(s->r->s, s->name);
			s->swapping = false;
			s->resumed_step = false;
			swapped(s, s->want_rev, &s->want, 0);
			schedule(s, 0);	/* verifies it if this run has not yet */
			return;
		}
		/* re-aim (a swap back to "prev" after the runtime was touched re-activates it) */
		s->j.target_rev = s->want_rev;
		s->j.target = s->want;
		s->j.step = s->want_rev ? RECONCILE_STEP_MATERIALIZE : RECONCILE_STEP_DEACTIVATE;
		s->j.attempt = 0;
		s->resumed_step = false;
		s->last_error = 0;
		/* (a stop with no recorded previous instance is a no-op DEACTIVATE: what a failed
		 * activation of the abandoned target left in its runtime is not chased) */
	}
	step_start(s);
}

static void start_swap(struct rc_svc *s, const struct store_service_state *st)
{
	memset(&s->j, 0, sizeof(s->j));
	s->j.target_rev = s->want_rev;
	s->j.target = s->want_rev ? s->want : (struct store_id){ 0 };
	s->j.prev_rev = st->running_rev;
	s->j.prev = st->running;
	if (s->j.prev_rev == 0)
		memset(&s->j.prev, 0, sizeof(s->j.prev));
	s->j.step = s->want_rev ? RECONCILE_STEP_MATERIALIZE : RECONCILE_STEP_DEACTIVATE;
	s->swapping = true;
	s->resumed_step = false;
	s->touched = false;
	/* only an instance this run activated or confirmed has anything to drain */
	s->prev_live = s->verified && st->running_rev != 0;
	s->drained = false;
	s->holding = false;
	s->last_error = 0;
	tinfo_drop(s);
	step_start(s);
}

static bool instance_up(const struct plugin_status *st, uint64_t rev)
{
	bool alive = st->state == PLUGIN_STARTING || st->state == PLUGIN_RUNNING ||
		     st->state == PLUGIN_RESTARTING;

	return (alive && st->rev == rev) || (st->state == PLUGIN_RUNNING && st->rev == 0);
}

static void verify_done(struct plugin *p, const char *service, int status,
			const struct plugin_status *st, void *ud)
{
	struct rc_svc *s = ud;
	struct store_service_state ss;
	int err;

	s->busy = false;
	if (s->r->closing)
		return;
	if (status == 0 && instance_up(st, s->verify_rev)) {
		s->verified = true;
		/* Converged without a swap: after an agent restart the runtime (a systemd unit, a
		 * container) still runs what the store says runs. Report it as a finished swap so
		 * the agent resumes what follows one, such as health checks. */
		if (store_service_state_get(s->r->s, s->name, &ss) >= 0 &&
		    ss.running_rev == s->verify_rev)
			swapped(s, ss.running_rev, &ss.running, 0);
		schedule(s, 0);
		return;
	}
	/* Not running what the store says runs (after an agent restart, an exec service's
	 * group is orphaned and unsupervised): activate it again, as a swap without pacing. */
	err = store_service_state_get(s->r->s, s->name, &ss);
	if (err < 0 || ss.running_rev != s->verify_rev || !s->have_desired ||
	    s->want_rev != ss.running_rev || !id_eq(&s->want, &ss.running)) {
		schedule(s, err < 0 ? backoff_ms(s->r, 1) : 0);
		return;
	}
	start_swap(s, &ss);
}

static void kick(struct rc_svc *s)
{
	struct reconcile *r = s->r;
	struct store_service_state st;
	struct plugin *p;
	bool same;
	int err;

	if (r->closing || s->busy)
		return;
	if (s->bad_journal) {
		emit(s, RECONCILE_EV_JOURNAL_BAD, s->bad_journal, 0);
		s->bad_journal = 0;
	}
	s->paced = false;
	if (s->swapping) {
		swap_continue(s);
		return;
	}
	if (!s->have_desired)
		return;
	err = store_service_state_get(r->s, s->name, &st);
	if (err < 0) {
		s->last_error = err;
		schedule(s, backoff_ms(r, 1));
		emit(s, RECONCILE_EV_RETRY, err, backoff_ms(r, 1));
		return;
	}
	same = s->want_rev == st.running_rev &&
	       (s->want_rev == 0 || id_eq(&s->want, &st.running));
	if (same && s->restart) {
		/* a local restart ([recovery] restarts): the same swap as a re-activation, with
		 * the drain, and without pacing (it is not a new revision) */
		s->restart = false;
		if (s->want_rev) {
			start_swap(s, &st);
			return;
		}
	}
	s->restart = false;
	if (same) {
		if (s->verified || s->want_rev == 0) {
			s->verified = true;
			return;
		}
		err = plugin_of(r, &st.running, &p);
		if (err == 0) {
			s->verify_rev = st.running_rev;
			err = plugin_status(p, s->name, verify_done, s);
			if (err == 0) {
				s->busy = true;
				return;
			}
		}
		/* the runtime cannot tell: activate again */
		start_swap(s, &st);
		return;
	}
	if (r->cbs.may_start && !r->cbs.may_start(r->cbs.ud, s->name, s->want_rev)) {
		s->paced = true;
		schedule(s, r->o.pace_retry_ms);
		emit(s, RECONCILE_EV_PACED, 0, r->o.pace_retry_ms);
		return;
	}
	start_swap(s, &st);
}

/* ---- public ------------------------------------------------------------------------------- */

int reconcile_new(uv_loop_t *loop, struct store *s, const struct plugin_config *pcfg,
		  const struct reconcile_callbacks *cbs, const struct reconcile_opts *opts,
		  struct reconcile **ret)
{
	struct reconcile *r;

	if (!loop || !s || !pcfg || !cbs || !ret || !pcfg->state_dir ||
	    pcfg->state_dir[0] != '/')
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->loop = loop;
	r->s = s;
	uv_timer_init(loop, &r->close_handle);
	r->close_handle.data = r;
	r->pcfg = *pcfg;
	r->user_on_event = pcfg->on_event;
	r->user_on_log = pcfg->on_log;
	r->user_pud = pcfg->ud;
	r->pcfg.on_event = rc_plugin_event;
	r->pcfg.on_log = pcfg->on_log ? rc_plugin_log : NULL;
	r->pcfg.ud = r;
	r->cbs = *cbs;
	if (opts)
		r->o = *opts;
	if (!r->o.retry_min_ms)
		r->o.retry_min_ms = RETRY_MIN_MS;
	if (!r->o.retry_max_ms)
		r->o.retry_max_ms = RETRY_MAX_MS;
	if (r->o.retry_max_ms < r->o.retry_min_ms)
		r->o.retry_max_ms = r->o.retry_min_ms;
	if (!r->o.pace_retry_ms)
		r->o.pace_retry_ms = PACE_RETRY_MS;
	*ret = r;
	return 0;
}

struct resume_ctx {
	struct reconcile *r;
	int n;
	int err;
};

static int resume_one(const char *service, const void *buf, size_t len, void *ud)
{
	struct resume_ctx *c = ud;
	struct reconcile_journal j;
	struct rc_svc *s;
	int err;

	if (!valid_service(service))
		return 0;	/* not a key we wrote; nothing to resume */
	s = svc_get(c->r, service);
	if (!s) {
		c->err = -ENOMEM;
		return 1;
	}
	err = reconcile__journal_decode(buf, len, &j);
	if (err < 0) {
		s->bad_journal = err;
		schedule(s, 0);
		return 0;
	}
	if (s->swapping || s->busy)
		return 0;	/* a swap of this run already took over (and rewrote the entry) */
	s->j = j;
	s->swapping = true;
	s->resumed_step = true;
	s->touched = step_touches(j.step);
	if (!s->have_desired) {
		s->have_desired = true;
		s->want_rev = j.target_rev;
		s->want = j.target;
	}
	c->n++;
	schedule(s, 0);
	return 0;
}

int reconcile_resume(struct reconcile *r)
{
	struct resume_ctx c = { .r = r };
	int err;

	if (!r)
		return -EINVAL;
	if (r->closing)
		return -ECANCELED;
	if (r->resumed)
		return -EALREADY;
	r->resumed = true;
	err = store_journal_foreach(r->s, resume_one, &c);
	if (c.err < 0)
		return c.err;
	if (err < 0)
		return err;
	return c.n;
}

int reconcile_set_desired(struct reconcile *r, const char *service, uint64_t rev,
			  const struct store_id *artifact)
{
	struct rc_svc *s;
	struct store_id want = { 0 };
	bool changed;

	if (!r || !valid_service(service))
		return -EINVAL;
	if (r->closing)
		return -ECANCELED;
	if (rev && artifact && !id_zero(artifact))
		want = *artifact;
	else
		rev = 0;
	s = svc_get(r, service);
	if (!s)
		return -ENOMEM;
	changed = !s->have_desired || s->want_rev != rev || !id_eq(&s->want, &want);
	s->have_desired = true;
	s->want_rev = rev;
	s->want = want;
	/* a change cuts a back-off or a pacing wait short; a repeat leaves them be */
	if (!s->busy && (changed || !s->timer_on))
		schedule(s, 0);
	return 0;
}

void reconcile_artifact_arrived(struct reconcile *r, const struct store_id *artifact)
{
	if (!r || r->closing || !artifact)
		return;
	for (struct rc_svc *s = r->svcs; s; s = s->next)
		if (s->have_desired && !s->busy && id_eq(&s->want, artifact))
			schedule(s, 0);
}

int reconcile_drained(struct reconcile *r, const char *service)
{
	struct rc_svc *s;

	if (!r || !service)
		return -EINVAL;
	s = svc_find(r, service);
	if (!s || !s->holding)
		return -ENOENT;
	s->holding = false;
	s->busy = false;
	if (!r->closing)
		schedule(s, 0);	/* kick -> swap_continue: re-aimed if the desire moved */
	return 0;
}

int reconcile_restart(struct reconcile *r, const char *service, uint64_t rev)
{
	struct store_service_state st;
	struct rc_svc *s;

	if (!r || !service)
		return -EINVAL;
	if (r->closing)
		return -ECANCELED;
	s = svc_find(r, service);
	if (!s || !s->have_desired)
		return -ENOENT;
	if (s->swapping || s->busy || s->restart)
		return -EBUSY;
	if (store_service_state_get(r->s, service, &st) < 0 || st.running_rev == 0 ||
	    st.running_rev != rev || s->want_rev != rev)
		return -ESTALE;
	s->restart = true;
	schedule(s, 0);
	return 0;
}

int reconcile_mark_good(struct reconcile *r, const char *service, uint64_t rev,
			const struct store_id *artifact)
{
	struct store_service_state st;
	int err;

	if (!r || !valid_service(service) || rev == 0 || !artifact || id_zero(artifact))
		return -EINVAL;
	err = store_service_state_get(r->s, service, &st);
	if (err < 0)
		return err;
	if (err == 1 || st.running_rev != rev || !id_eq(&st.running, artifact))
		return -ESTALE;
	st.last_good = *artifact;
	return store_service_state_put(r->s, service, &st);
}

int reconcile_service_status(struct reconcile *r, const char *service,
			     struct reconcile_service_status *ret)
{
	struct rc_svc *s;

	if (!r || !service || !ret)
		return -EINVAL;
	s = svc_find(r, service);
	if (!s)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	ret->have_desired = s->have_desired;
	ret->desired_rev = s->want_rev;
	ret->desired = s->want;
	ret->swapping = s->swapping;
	if (s->swapping) {
		ret->target_rev = s->j.target_rev;
		ret->target = s->j.target;
		ret->step = s->j.step;
		ret->attempt = s->j.attempt;
	}
	ret->last_error = s->last_error;
	ret->paced = s->paced;
	ret->verified = s->verified;
	return 0;
}

bool reconcile_idle(struct reconcile *r)
{
	if (!r)
		return true;
	for (struct rc_svc *s = r->svcs; s; s = s->next)
		if (s->swapping || s->busy || s->timer_on || s->paced)
			return false;
	return true;
}

/* ---- closing ------------------------------------------------------------------------------ */

static void finish_close(struct reconcile *r)
{
	void (*cb)(void *) = r->close_cb;
	void *ud = r->close_ud;

	while (r->svcs) {
		struct rc_svc *s = r->svcs;

		r->svcs = s->next;
		tinfo_drop(s);
		free(s);
	}
	while (r->plugins) {
		struct rc_plugin *rp = r->plugins;

		r->plugins = rp->next;
		free(rp);
	}
	free(r);
	if (cb)
		cb(ud);
}

static void timer_closed(uv_handle_t *h)
{
	struct rc_svc *s = h->data;
	struct reconcile *r = s->r;

	r->nclose--;
	maybe_finish_close(r);
}

static void close_handle_closed(uv_handle_t *h)
{
	struct reconcile *r = h->data;

	r->nclose--;
	maybe_finish_close(r);
}

static void plugin_closed(struct plugin *p, void *ud)
{
	struct rc_plugin *rp = ud;
	struct reconcile *r = rp->r;

	rp->p = NULL;
	r->nclose--;
	maybe_finish_close(r);
}

static void maybe_finish_close(struct reconcile *r)
{
	if (r->nwork || r->nclose)
		return;
	if (!r->plugins_closing) {
		r->plugins_closing = true;
		for (struct rc_plugin *rp = r->plugins; rp; rp = rp->next)
			r->nclose++;
		for (struct rc_plugin *rp = r->plugins; rp; rp = rp->next)
			plugin_close(rp->p, plugin_closed, rp);
		if (r->nclose)
			return;
	}
	if (r->nclose == 0 && r->nwork == 0)
		finish_close(r);
}

void reconcile_close(struct reconcile *r, void (*cb)(void *ud), void *ud)
{
	if (!r || r->closing)
		return;
	r->closing = true;
	r->close_cb = cb;
	r->close_ud = ud;
	for (struct rc_svc *s = r->svcs; s; s = s->next) {
		s->timer_on = false;
		r->nclose++;
		uv_close((uv_handle_t *)&s->timer, timer_closed);
	}
	/* handles close asynchronously, so finishing (and @cb) always comes from the loop */
	r->nclose++;
	uv_close((uv_handle_t *)&r->close_handle, close_handle_closed);
}

const char *reconcile_last_error(struct reconcile *r, const char *service)
{
	for (struct rc_svc *s = r ? r->svcs : NULL; s; s = s->next)
		if (strcmp(s->name, service) == 0)
			return s->why;
	return "";
}
