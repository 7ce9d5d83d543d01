/*
 * plugins/systemd.c: the systemd runtime driver: unit files on disk, jobs over sd-bus.
 *
 * Files. The unit name is the manifest's systemd_unit (e.g. "web.service"); the unit file is
 * that file at the root of the materialized artifact and its drop-ins are the *.conf files in
 * the artifact's "<unit>.d/" folder. activate writes them into cfg.unit_dir, each atomically
 * (temp file, fsync, rename, fsync of the directory), each beginning with the marker line
 *
 *     # managed-by: shoal service=web rev=7 artifact=<64 hex>
 *
 * The marker is the ownership record: a unit file or drop-in of that name without it belongs
 * to someone else (the package manager, an operator) and is never overwritten or removed
 * (-EEXIST). Our own drop-ins that the new revision no longer ships are removed; drop-ins
 * without the marker in the same folder (an operator's override) are left alone. Sources are
 * opened with O_NOFOLLOW: an artifact's symlink cannot make us copy an arbitrary host file
 * into the unit directory. File work runs on the libuv thread pool (uv_queue_work).
 *
 * Revisions. The unit name is per service, so only the active revision has files in
 * unit_dir; nothing is kept per revision here. A rollback is an activate of the older
 * artifact's materialized directory, which rewrites the unit file. forget(service, rev)
 * removes the unit file and our drop-ins only when their marker names @rev (a revision that
 * was deactivated and dropped); it refuses with -EBUSY while this plugin knows @rev as active.
 *
 * D-Bus. One sd-bus connection integrated into the loop: uv_poll on sd_bus_get_fd() with the
 * events of sd_bus_get_events(), a uv_timer for sd_bus_get_timeout(), sd_bus_process() until
 * it returns 0. Only asynchronous calls (sd_bus_call_async, each with op_timeout_ms). With
 * cfg.bus_address (e.g. "unix:path=/run/systemd/private") the connection is direct to
 * systemd, without a bus daemon: signals carry no sender, so matches use sender NULL; with
 * NULL it is the system bus and matches name org.freedesktop.systemd1. The connection is
 * opened at the first operation and reopened after it broke (pending operations fail with
 * the connection's error).
 *
 *   activate:   [pool] write files -> Subscribe (once per connection) -> Reload -> LoadUnit
 *               -> RestartUnit(mode "replace") -> JobRemoved of that job -> GetAll
 *   deactivate: [pool] find our unit -> LoadUnit -> StopUnit("replace") -> JobRemoved -> GetAll
 *   status:     [pool] find our unit -> LoadUnit -> GetAll
 *   prepare:    [pool] the artifact has the unit file; unit_dir has none we do not own
 *
 * LoadUnit, not GetUnit: GetUnit fails for an inactive, unreferenced unit. A Type=notify
 * unit's start job ends only after READY=1, so waiting for JobRemoved waits for readiness;
 * the D-Bus phase of every operation (calls and job wait together) is bounded by
 * op_timeout_ms (-ETIMEDOUT; the job itself keeps going). The job
 * result maps to the callback status as plugin.h lists ("done" -> 0, "failed" -> -EIO, ...).
 * A JobRemoved that overtakes the RestartUnit reply is remembered for a while (ring).
 *
 * Events. PropertiesChanged on the object path of a unit this plugin manages triggers a
 * GetAll; a change of ActiveState/SubState/Result, MainPID or revision is reported through
 * cfg.on_event (the first observation of a unit counts as a change):
 *   active, reloading -> RUNNING; activating -> STARTING (RESTARTING in SubState
 *   auto-restart); failed -> FAILED; inactive, deactivating, maintenance -> STOPPED.
 *   restarts = NRestarts, pid = MainPID, exit_status = ExecMainStatus once a main process
 *   exited, detail = "ActiveState=.. SubState=.. Result=..". During a swap the events
 *   already carry the new revision (from the moment its files are written), also those of
 *   the old process going down.
 *
 * plugin_close() leaves units as they are (systemd supervises them without us) and cancels
 * pending operations with -ECANCELED.
 */
#include "plugins/plugin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define SD_DEST	 "org.freedesktop.systemd1"
#define SD_PATH	 "/org/freedesktop/systemd1"
#define SD_MGR	 "org.freedesktop.systemd1.Manager"
#define SD_PROPS "org.freedesktop.DBus.Properties"
#define MARKER	 "# managed-by: shoal "
#define FILE_MAX (1024 * 1024)	/* a unit file or drop-in larger than this is refused */
#define DROPINS_MAX 64
#define RECENT_JOBS 32

enum sd_opkind { OP_NONE = 0, OP_PREPARE, OP_ACTIVATE, OP_DEACTIVATE, OP_STATUS };

struct sd_props {
	char active[32], sub[32], result[32], load[32];
	uint32_t nrestarts, mainpid;
	int32_t exec_code, exec_status;
};

struct sd_svc {
	struct sd_svc *next;
	struct sd_plugin *sp;
	char name[65];
	char unit[256];			/* "" until known */
	char upath[256];		/* unit object path, "" until LoadUnit */
	uint64_t rev;
	bool active_rev;		/* rev is what we activated and did not deactivate */
	struct plugin_status st;
	bool have_st;

	/* refresh on PropertiesChanged */
	sd_bus_slot *refresh_slot;
	bool refresh_again;

	/* the operation in flight */
	enum sd_opkind op;
	plugin_done_cb done_cb;
	plugin_status_cb status_cb;
	void *op_ud;
	sd_bus_slot *call_slot;
	char job[256];
	char job_result[32];
	char old_unit[256];		/* activate: our unit of another name, to stop first */
	bool stopping_old;
	uv_timer_t t_op;		/* deadline of the D-Bus phase of the op */
	uv_work_t work;
	bool work_busy;
	/* inputs of the work (stable while it runs) */
	char *ndir;
	char nunit[256];
	uint64_t nrev;
	char nartifact[STORE_ID_HEXLEN + 1];
	/* outputs of the work */
	int wres;
	char wunit[256];
	uint64_t wrev;
	char detail[160];
	char err[160];			/* the detail of the last failed operation (last_error) */
};

struct sd_plugin {
	struct plugin *p;
	sd_bus *bus;
	uv_poll_t *poll;		/* per connection; freed in its close callback */
	uv_timer_t t_bus;
	sd_bus_slot *slot_jobs, *slot_props, *slot_sub;
	bool subscribed;
	bool in_process;		/* inside sd_bus_process(): the bus must not go away */
	int drop_err;			/* a bus_drop() deferred until sd_bus_process() returns */
	struct sd_svc *svcs;
	struct {
		char path[128];
		char result[32];
	} recent[RECENT_JOBS];
	unsigned recent_next;
	const char *unit_dir;
	uint32_t op_timeout;
	unsigned handles;
	bool closing, close_ready, closing_handles;
	plugin_close_cb close_cb;
	void *close_ud;
};

static void bus_update(struct sd_plugin *sp);
static void bus_drop(struct sd_plugin *sp, int err);
static void check_close(struct sd_plugin *sp);
static void op_getall(struct sd_svc *s);

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool valid_unit(const char *u)
{
	static const char *const suffixes[] = { ".service", ".socket", ".timer", ".target",
						".path" };
	size_t n = u ? strlen(u) : 0;
	const char *dot;
	bool ok = false;

	if (n < 3 || n > 200 || u[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = u[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == ':' || c == '_' || c == '.' || c == '@' || c == '-' || c == '\\'))
			return false;
	}
	dot = strrchr(u, '.');
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		ok |= strcmp(dot, suffixes[i]) == 0;
	return ok;
}

static void set_detail(struct sd_svc *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
	va_end(ap);
}

/* ---- files (thread pool: no loop or bus access in here) ------------------------------------ */

/* Read a regular file (no symlink) of at most FILE_MAX bytes. *ret malloc'd, NUL-terminated. */
static int read_file(int dirfd, const char *name, char **ret, size_t *ret_len)
{
	struct stat stt;
	char *buf = NULL;
	size_t len = 0;
	int fd, r = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? -ELOOP : -errno;
	if (fstat(fd, &stt) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(stt.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if (stt.st_size > FILE_MAX) {
		r = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)stt.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (len < (size_t)stt.st_size) {
		ssize_t k = read(fd, buf + len, (size_t)stt.st_size - len);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			goto out;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

/*
 * Is @path ours? 0: absent; 1: carries our marker for @service (*ret_rev set when non-NULL);
 * -EEXIST: present without our marker, or ours for another service; other -errno.
 */
static int owned(int dirfd, const char *name, const char *service, uint64_t *ret_rev)
{
	char line[512], want[128];
	unsigned long long rev = 0;
	const char *q;
	ssize_t n;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == ELOOP ? -EEXIST : -errno;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	line[n] = '\0';
	if (strncmp(line, MARKER, strlen(MARKER)) != 0)
		return -EEXIST;
	snprintf(want, sizeof(want), "service=%s ", service);
	if (strncmp(line + strlen(MARKER), want, strlen(want)) != 0)
		return -EEXIST;
	q = strstr(line, " rev=");
	if (q)
		rev = strtoull(q + 5, NULL, 10);
	if (ret_rev)
		*ret_rev = rev;
	return 1;
}

static int fsync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* Write @hdr + @data as @name in @dirfd atomically: temp file, fsync, rename, fsync dir. */
static int write_atomic(int dirfd, const char *name, const char *hdr, const char *data,
			size_t len)
{
	char tmp[300];
	const char *parts[2] = { hdr, data };
	size_t lens[2] = { strlen(hdr), len };
	int fd, r = 0;

	snprintf(tmp, sizeof(tmp), ".%s.shoal-tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < 2 && r == 0; i++) {
		size_t off = 0;

		while (off < lens[i]) {
			ssize_t k = write(fd, parts[i] + off, lens[i] - off);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				r = -errno;
				break;
			}
			off += (size_t)k;
		}
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	return fsync_dir(dirfd);
}

static bool is_conf(const char *n)
{
	size_t l = strlen(n);

	return l > 5 && n[0] != '.' && strcmp(n + l - 5, ".conf") == 0;
}

struct dropins {
	char *name[DROPINS_MAX];
	char *data[DROPINS_MAX];
	size_t len[DROPINS_MAX];
	unsigned n;
};

static void dropins_free(struct dropins *d)
{
	for (unsigned i = 0; i < d->n; i++) {
		free(d->name[i]);
		free(d->data[i]);
	}
	d->n = 0;
}

static int dropins_read(struct sd_svc *s, int adir, struct dropins *d)
{
	char dname[300];
	struct dirent *de;
	int dfd, r = 0;
	DIR *dir;

	snprintf(dname, sizeof(dname), "%s.d", s->nunit);
	dfd = openat(adir, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		if (!is_conf(de->d_name))
			continue;
		if (d->n == DROPINS_MAX) {
			set_detail(s, "more than %d drop-ins", DROPINS_MAX);
			r = -E2BIG;
			break;
		}
		d->name[d->n] = strdup(de->d_name);
		if (!d->name[d->n]) {
			r = -ENOMEM;
			break;
		}
		r = read_file(dirfd(dir), de->d_name, &d->data[d->n], &d->len[d->n]);
		if (r < 0) {
			free(d->name[d->n]);
			set_detail(s, "drop-in %s/%s: %s", dname, de->d_name, strerror(-r));
			break;
		}
		d->n++;
	}
	closedir(dir);
	return r;
}

/* prepare and activate: check (and for activate, write) the unit file and drop-ins. */
static int files_install(struct sd_svc *s, bool write)
{
	const char *udir = s->sp->unit_dir;
	struct dropins d = { .n = 0 };
	char hdr[256], dname[300];
	char *unit = NULL;
	size_t ulen = 0;
	int adir = -1, ufd = -1, dfd = -1, r;

	snprintf(dname, sizeof(dname), "%s.d", s->nunit);
	adir = open(s->ndir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (adir < 0) {
		r = -errno;
		set_detail(s, "artifact dir %s: %s", s->ndir, strerror(-r));
		goto out;
	}
	ufd = open(udir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0) {
		r = -errno;
		set_detail(s, "unit dir %s: %s", udir, strerror(-r));
		goto out;
	}
	/* ownership first: refusing to touch someone else's unit matters more than anything
	 * wrong with the artifact */
	r = owned(ufd, s->nunit, s->name, NULL);
	if (r < 0) {
		set_detail(s, "%s/%s exists and is not managed by shoal for %s", udir, s->nunit,
			   s->name);
		goto out;
	}
	r = read_file(adir, s->nunit, &unit, &ulen);
	if (r < 0) {
		set_detail(s, "artifact unit file %s: %s", s->nunit, strerror(-r));
		goto out;
	}
	r = dropins_read(s, adir, &d);
	if (r < 0)
		goto out;
	dfd = openat(ufd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0 && errno != ENOENT) {
		r = -errno;
		set_detail(s, "%s/%s: %s", udir, dname, strerror(-r));
		goto out;
	}
	for (unsigned i = 0; dfd >= 0 && i < d.n; i++) {
		r = owned(dfd, d.name[i], s->name, NULL);
		if (r < 0) {
			set_detail(s, "drop-in %s/%s exists and is not managed by shoal", dname,
				   d.name[i]);
			goto out;
		}
	}
	r = 0;
	if (!write)
		goto out;

	snprintf(hdr, sizeof(hdr), MARKER "service=%s rev=%" PRIu64 " artifact=%s\n", s->name,
		 s->nrev, s->nartifact);
	if (d.n > 0 && dfd < 0) {
		if (mkdirat(ufd, dname, 0755) < 0 && errno != EEXIST) {
			r = -errno;
			set_detail(s, "mkdir %s/%s: %s", udir, dname, strerror(-r));
			goto out;
		}
		dfd = openat(ufd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (dfd < 0) {
			r = -errno;
			goto out;
		}
		fsync_dir(ufd);
	}
	for (unsigned i = 0; i < d.n; i++) {
		r = write_atomic(dfd, d.name[i], hdr, d.data[i], d.len[i]);
		if (r < 0) {
			set_detail(s, "write %s/%s: %s", dname, d.name[i], strerror(-r));
			goto out;
		}
	}
	/* our drop-ins the new revision no longer ships */
	if (dfd >= 0) {
		int dup_fd = dup(dfd);
		DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
		struct dirent *de;

		if (!dir && dup_fd >= 0)
			close(dup_fd);
		while (dir && (de = readdir(dir))) {
			bool keep = false;

			if (!is_conf(de->d_name))
				continue;
			for (unsigned i = 0; i < d.n; i++)
				keep |= strcmp(d.name[i], de->d_name) == 0;
			if (!keep && owned(dfd, de->d_name, s->name, NULL) == 1)
				unlinkat(dfd, de->d_name, 0);
		}
		if (dir)
			closedir(dir);
		fsync_dir(dfd);
	}
	r = write_atomic(ufd, s->nunit, hdr, unit, ulen);
	if (r < 0)
		set_detail(s, "write %s/%s: %s", udir, s->nunit, strerror(-r));
out:
	dropins_free(&d);
	free(unit);
	if (dfd >= 0)
		close(dfd);
	if (ufd >= 0)
		close(ufd);
	if (adir >= 0)
		close(adir);
	return r;
}

/* Find the unit file in unit_dir that carries our marker for @s. 1 found, 0 none, -errno. */
static int files_lookup(struct sd_svc *s)
{
	struct dirent *de;
	int found = 0;
	DIR *dir;

	dir = opendir(s->sp->unit_dir);
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		uint64_t rev = 0;

		if (!valid_unit(de->d_name))
			continue;
		if (owned(dirfd(dir), de->d_name, s->name, &rev) == 1) {
			snprintf(s->wunit, sizeof(s->wunit), "%s", de->d_name);
			s->wrev = rev;
			found = 1;
			break;
		}
	}
	closedir(dir);
	return found;
}

/* Remove @unit and its drop-ins from unit_dir, each only if it carries our marker for
 * @service. 0, or -errno of the unit file's unlink. */
static int files_remove(struct sd_plugin *sp, const char *service, const char *unit)
{
	char dname[300];
	int ufd, dfd, r;

	ufd = open(sp->unit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0)
		return -errno;
	snprintf(dname, sizeof(dname), "%s.d", unit);
	dfd = openat(ufd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd >= 0) {
		int dup_fd = dup(dfd);
		DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
		struct dirent *de;

		if (!dir && dup_fd >= 0)
			close(dup_fd);
		while (dir && (de = readdir(dir)))
			if (is_conf(de->d_name) && owned(dfd, de->d_name, service, NULL) == 1)
				unlinkat(dfd, de->d_name, 0);
		if (dir)
			closedir(dir);
		close(dfd);
		unlinkat(ufd, dname, AT_REMOVEDIR); /* fails harmlessly when not empty */
	}
	r = 0;
	if (owned(ufd, unit, service, NULL) == 1 && unlinkat(ufd, unit, 0) < 0)
		r = -errno;
	fsync_dir(ufd);
	close(ufd);
	return r;
}

static void work_cb(uv_work_t *w)
{
	struct sd_svc *s = w->data;

	s->detail[0] = '\0';
	switch (s->op) {
	case OP_PREPARE:
		s->wres = files_install(s, false);
		break;
	case OP_ACTIVATE:
		/* the service's unit under another name (the artifact renamed it) is stopped
		 * and removed once the new files are in place */
		s->old_unit[0] = '\0';
		if (files_lookup(s) == 1 && strcmp(s->wunit, s->nunit) != 0)
			snprintf(s->old_unit, sizeof(s->old_unit), "%s", s->wunit);
		s->wres = files_install(s, true);
		break;
	default:
		s->wres = s->unit[0] ? 1 : files_lookup(s);
		break;
	}
}

/* ---- operations: completion --------------------------------------------------------------- */

static void op_clear(struct sd_svc *s)
{
	s->op = OP_NONE;
	s->done_cb = NULL;
	s->status_cb = NULL;
	s->op_ud = NULL;
	s->call_slot = sd_bus_slot_unref(s->call_slot);
	s->job[0] = '\0';
	s->job_result[0] = '\0';
	s->old_unit[0] = '\0';
	s->stopping_old = false;
	uv_timer_stop(&s->t_op);
	free(s->ndir);
	s->ndir = NULL;
}

/* Finish the pending operation; the callback may start the next one on the same service. */
static void op_finish(struct sd_svc *s, int status)
{
	plugin_done_cb dcb = s->done_cb;
	plugin_status_cb scb = s->status_cb;
	struct plugin_status st = s->st;
	void *ud = s->op_ud;

	if (!s->have_st) {
		plugin__status_init(&st);
		st.rev = s->rev;
	}
	if (s->detail[0])
		snprintf(st.detail, sizeof(st.detail), "%s", s->detail);
	/* the reason behind an errno such as -EIO (job "failed"): the job result, the
	 * unit's Result or the D-Bus error, for plugin_last_error() */
	if (status < 0)
		snprintf(s->err, sizeof(s->err), "%s", s->detail[0] ? s->detail : "");
	op_clear(s);
	if (dcb)
		dcb(s->sp->p, s->name, status, ud);
	else if (scb)
		scb(s->sp->p, s->name, status, &st, ud);
}

/* ---- unit properties ---------------------------------------------------------------------- */

static enum plugin_state map_state(const struct sd_props *pr)
{
	if (strcmp(pr->active, "active") == 0 || strcmp(pr->active, "reloading") == 0)
		return PLUGIN_RUNNING;
	if (strcmp(pr->active, "activating") == 0)
		return strcmp(pr->sub, "auto-restart") == 0 ? PLUGIN_RESTARTING : PLUGIN_STARTING;
	if (strcmp(pr->active, "failed") == 0)
		return PLUGIN_FAILED;
	return PLUGIN_STOPPED;
}

/* Parse a GetAll reply (a{sv}), keeping what we report. */
static int props_parse(sd_bus_message *m, struct sd_props *pr)
{
	int r;

	memset(pr, 0, sizeof(*pr));
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *name, *contents = NULL, *str;
		char type = 0;
		char *dst = NULL;
		size_t dlen = 0;

		r = sd_bus_message_read(m, "s", &name);
		if (r < 0)
			return r;
		if (strcmp(name, "ActiveState") == 0)
			dst = pr->active, dlen = sizeof(pr->active);
		else if (strcmp(name, "SubState") == 0)
			dst = pr->sub, dlen = sizeof(pr->sub);
		else if (strcmp(name, "Result") == 0)
			dst = pr->result, dlen = sizeof(pr->result);
		else if (strcmp(name, "LoadState") == 0)
			dst = pr->load, dlen = sizeof(pr->load);
		r = sd_bus_message_peek_type(m, &type, &contents);
		if (r < 0)
			return r;
		if (dst && contents && strcmp(contents, "s") == 0) {
			r = sd_bus_message_read(m, "v", "s", &str);
			if (r < 0)
				return r;
			snprintf(dst, dlen, "%s", str);
		} else if (contents && strcmp(contents, "u") == 0 &&
			   (strcmp(name, "NRestarts") == 0 || strcmp(name, "MainPID") == 0)) {
			uint32_t u;

			r = sd_bus_message_read(m, "v", "u", &u);
			if (r < 0)
				return r;
			if (name[0] == 'N')
				pr->nrestarts = u;
			else
				pr->mainpid = u;
		} else if (contents && strcmp(contents, "i") == 0 &&
			   (strcmp(name, "ExecMainStatus") == 0 ||
			    strcmp(name, "ExecMainCode") == 0)) {
			int32_t i;

			r = sd_bus_message_read(m, "v", "i", &i);
			if (r < 0)
				return r;
			if (strcmp(name, "ExecMainCode") == 0)
				pr->exec_code = i;
			else
				pr->exec_status = i;
		} else {
			r = sd_bus_message_skip(m, "v");
			if (r < 0)
				return r;
		}
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

/* Take new properties; report a change of ActiveState/SubState/Result, of the revision or
 * of MainPID through on_event. */
static void props_apply(struct sd_svc *s, const struct sd_props *pr)
{
	struct plugin *p = s->sp->p;
	char old[160];
	uint64_t old_rev = s->st.rev;
	int64_t old_pid = s->st.pid;
	bool changed;

	snprintf(old, sizeof(old), "%s", s->have_st ? s->st.detail : "");
	if (!s->have_st)
		plugin__status_init(&s->st);
	s->st.state = map_state(pr);
	s->st.rev = s->rev;
	s->st.pid = pr->mainpid;
	s->st.restarts = pr->nrestarts;
	s->st.exit_status = pr->exec_code ? pr->exec_status : -1;
	/* cut to fit: the states are short words, only odd LoadStates could get long */
	if (snprintf(s->st.detail, sizeof(s->st.detail), "ActiveState=%s SubState=%s Result=%s%s%s",
		     pr->active, pr->sub, pr->result,
		     strcmp(pr->load, "loaded") && pr->load[0] ? " LoadState=" : "",
		     strcmp(pr->load, "loaded") && pr->load[0] ? pr->load : "") >=
	    (int)sizeof(s->st.detail))
		s->st.detail[sizeof(s->st.detail) - 1] = '\0';
	/* a new revision or main process is a change even when the states read the same */
	changed = !s->have_st || strcmp(old, s->st.detail) != 0 || old_rev != s->st.rev ||
		  old_pid != s->st.pid;
	if (changed)
		s->st.since_ms = uv_now(p->loop);
	s->have_st = true;
	if (changed && p->cfg.on_event && s->unit[0])
		p->cfg.on_event(p, s->name, &s->st, p->cfg.ud);
}

/* ---- bus calls ---------------------------------------------------------------------------- */

/* An async method call with the op timeout; @slot receives the pending call. */
static int call(struct sd_plugin *sp, sd_bus_slot **slot, const char *path, const char *iface,
		const char *member, sd_bus_message_handler_t cb, void *ud, const char *types, ...)
{
	sd_bus_message *m = NULL;
	va_list ap;
	int r;

	r = sd_bus_message_new_method_call(sp->bus, &m, SD_DEST, path, iface, member);
	if (r < 0)
		return r;
	if (types) {
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
		if (r < 0)
			goto out;
	}
	r = sd_bus_call_async(sp->bus, slot, m, cb, ud, (uint64_t)sp->op_timeout * 1000u);
	bus_update(sp);
out:
	sd_bus_message_unref(m);
	return r;
}

/* The errno of a method error reply (never 0), with the error in the op's detail. */
static int reply_error(struct sd_svc *s, sd_bus_message *m, const char *what)
{
	const sd_bus_error *e = sd_bus_message_get_error(m);
	int r = sd_bus_message_get_errno(m);

	set_detail(s, "%s: %s: %s", what, e && e->name ? e->name : "?",
		   e && e->message ? e->message : "");
	return r > 0 ? -r : -EIO;
}

static int job_errno(const char *result)
{
	if (strcmp(result, "done") == 0)
		return 0;
	if (strcmp(result, "failed") == 0)
		return -EIO;
	if (strcmp(result, "timeout") == 0)
		return -ETIMEDOUT;
	if (strcmp(result, "canceled") == 0)
		return -ECANCELED;
	if (strcmp(result, "dependency") == 0)
		return -ENOLINK;
	return -EPROTO;
}

static int getall_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_svc *s = ud;
	struct sd_props pr;
	int r;

	s->call_slot = sd_bus_slot_unref(s->call_slot);
	if (sd_bus_message_is_method_error(m, NULL)) {
		op_finish(s, reply_error(s, m, "GetAll"));
		return 0;
	}
	r = props_parse(m, &pr);
	if (r < 0) {
		set_detail(s, "GetAll: bad reply: %s", strerror(-r));
		op_finish(s, r);
		return 0;
	}
	props_apply(s, &pr);
	if (s->op == OP_STATUS) {
		op_finish(s, 0);
		return 0;
	}
	r = job_errno(s->job_result);
	set_detail(s, "job %s; %s", s->job_result, s->st.detail);
	op_finish(s, r);
	return 0;
}

static void op_getall(struct sd_svc *s)
{
	int r = call(s->sp, &s->call_slot, s->upath, SD_PROPS, "GetAll", getall_reply, s, "s", "");

	if (r < 0) {
		set_detail(s, "GetAll: %s", strerror(-r));
		op_finish(s, r);
	}
}

static void op_loadunit(struct sd_svc *s);

static void job_finished(struct sd_svc *s, const char *result)
{
	s->job[0] = '\0';
	if (s->stopping_old) {
		/* the old unit is stopped (whatever its job's result: it is going away) */
		s->stopping_old = false;
		(void)files_remove(s->sp, s->name, s->old_unit);
		s->old_unit[0] = '\0';
		op_loadunit(s);
		return;
	}
	snprintf(s->job_result, sizeof(s->job_result), "%s", result);
	op_getall(s);
}

/*
 * The bound of an operation's whole D-Bus phase (calls and job wait): sd-bus's own call
 * timeouts do not run while the connection is still authenticating, so a peer that accepts
 * and never answers would otherwise hold the operation for sd-bus's auth timeout.
 */
static void op_timeout_cb(uv_timer_t *t)
{
	struct sd_svc *s = t->data;
	struct sd_plugin *sp = s->sp;

	if (s->job[0])
		set_detail(s, "job %s did not finish within %u ms", s->job, sp->op_timeout);
	else
		set_detail(s, "no answer from systemd within %u ms", sp->op_timeout);
	op_finish(s, -ETIMEDOUT);
	/* a connection that never got ready is useless: the next operation reconnects */
	if (sp->bus && sd_bus_is_ready(sp->bus) <= 0)
		bus_drop(sp, -ETIMEDOUT);
}

static int job_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_svc *s = ud;
	struct sd_plugin *sp = s->sp;
	const char *path;
	int r;

	s->call_slot = sd_bus_slot_unref(s->call_slot);
	if (sd_bus_message_is_method_error(m, NULL)) {
		const sd_bus_error *e = sd_bus_message_get_error(m);

		/* stopping a unit systemd does not know is stopping nothing */
		if ((s->op == OP_DEACTIVATE || s->stopping_old) && e && e->name &&
		    strcmp(e->name, "org.freedesktop.systemd1.NoSuchUnit") == 0) {
			job_finished(s, "done");
			return 0;
		}
		op_finish(s, reply_error(s, m, s->op == OP_ACTIVATE && !s->stopping_old
						       ? "RestartUnit" : "StopUnit"));
		return 0;
	}
	r = sd_bus_message_read(m, "o", &path);
	if (r < 0) {
		op_finish(s, r);
		return 0;
	}
	snprintf(s->job, sizeof(s->job), "%s", path);
	/* the JobRemoved signal may have overtaken this reply */
	for (unsigned i = 0; i < RECENT_JOBS; i++)
		if (strcmp(sp->recent[i].path, path) == 0) {
			job_finished(s, sp->recent[i].result);
			return 0;
		}
	return 0;	/* the op's deadline (started with its D-Bus phase) bounds the wait */
}

static int loadunit_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_svc *s = ud;
	const char *path;
	int r;

	s->call_slot = sd_bus_slot_unref(s->call_slot);
	if (sd_bus_message_is_method_error(m, NULL)) {
		op_finish(s, reply_error(s, m, "LoadUnit"));
		return 0;
	}
	r = sd_bus_message_read(m, "o", &path);
	if (r < 0) {
		op_finish(s, r);
		return 0;
	}
	snprintf(s->upath, sizeof(s->upath), "%s", path);
	if (s->op == OP_STATUS) {
		op_getall(s);
		return 0;
	}
	r = call(s->sp, &s->call_slot, SD_PATH, SD_MGR,
		 s->op == OP_ACTIVATE ? "RestartUnit" : "StopUnit", job_reply, s, "ss", s->unit,
		 "replace");
	if (r < 0) {
		set_detail(s, "job call: %s", strerror(-r));
		op_finish(s, r);
	}
	return 0;
}

static void op_loadunit(struct sd_svc *s)
{
	int r = call(s->sp, &s->call_slot, SD_PATH, SD_MGR, "LoadUnit", loadunit_reply, s, "s",
		     s->unit);

	if (r < 0) {
		set_detail(s, "LoadUnit: %s", strerror(-r));
		op_finish(s, r);
	}
}

static int reload_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_svc *s = ud;

	s->call_slot = sd_bus_slot_unref(s->call_slot);
	if (sd_bus_message_is_method_error(m, NULL)) {
		op_finish(s, reply_error(s, m, "Reload"));
		return 0;
	}
	if (s->old_unit[0]) {
		int r;

		s->stopping_old = true;
		r = call(s->sp, &s->call_slot, SD_PATH, SD_MGR, "StopUnit", job_reply, s, "ss",
			 s->old_unit, "replace");
		if (r < 0) {
			set_detail(s, "StopUnit %s: %s", s->old_unit, strerror(-r));
			op_finish(s, r);
		}
		return 0;
	}
	op_loadunit(s);
	return 0;
}

/* ---- signals ------------------------------------------------------------------------------ */

static int on_job_removed(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_plugin *sp = ud;
	const char *path, *unit, *result;
	uint32_t id;

	if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
		return 0;
	for (struct sd_svc *s = sp->svcs; s; s = s->next)
		if (s->job[0] && strcmp(s->job, path) == 0) {
			job_finished(s, result);
			return 0;
		}
	snprintf(sp->recent[sp->recent_next].path, sizeof(sp->recent[0].path), "%s", path);
	snprintf(sp->recent[sp->recent_next].result, sizeof(sp->recent[0].result), "%s", result);
	sp->recent_next = (sp->recent_next + 1) % RECENT_JOBS;
	return 0;
}

static void refresh(struct sd_svc *s);

static int refresh_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_svc *s = ud;
	struct sd_props pr;

	s->refresh_slot = sd_bus_slot_unref(s->refresh_slot);
	if (!sd_bus_message_is_method_error(m, NULL) && props_parse(m, &pr) >= 0)
		props_apply(s, &pr);
	if (s->refresh_again) {
		s->refresh_again = false;
		refresh(s);
	}
	return 0;
}

static void refresh(struct sd_svc *s)
{
	if (s->refresh_slot) {
		s->refresh_again = true;	/* coalesce: one GetAll in flight per unit */
		return;
	}
	(void)call(s->sp, &s->refresh_slot, s->upath, SD_PROPS, "GetAll", refresh_reply, s, "s",
		   "");
}

static int on_props_changed(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_plugin *sp = ud;
	const char *path = sd_bus_message_get_path(m), *iface;

	if (!path || sd_bus_message_read(m, "s", &iface) < 0)
		return 0;
	if (strcmp(iface, "org.freedesktop.systemd1.Unit") != 0)
		return 0;
	for (struct sd_svc *s = sp->svcs; s; s = s->next)
		if (s->upath[0] && strcmp(s->upath, path) == 0)
			refresh(s);
	return 0;
}

static int subscribe_reply(sd_bus_message *m, void *ud, sd_bus_error *err)
{
	struct sd_plugin *sp = ud;

	sp->slot_sub = sd_bus_slot_unref(sp->slot_sub);
	/* an error here (e.g. already subscribed) leaves JobRemoved waits to their timeout */
	sp->subscribed = !sd_bus_message_is_method_error(m, NULL);
	return 0;
}

/* ---- the connection on the loop ----------------------------------------------------------- */

static void bus_process(struct sd_plugin *sp)
{
	int r;

	if (!sp->bus || sp->in_process)
		return;
	sp->in_process = true;
	do {
		r = sd_bus_process(sp->bus, NULL);
	} while (r > 0 && !sp->drop_err);
	sp->in_process = false;
	if (sp->drop_err) {
		/* a callback asked for the drop (e.g. plugin_close from an op callback) */
		r = sp->drop_err;
		sp->drop_err = 0;
		bus_drop(sp, r);
		if (sp->closing)
			check_close(sp);
		return;
	}
	if (r < 0 || !sd_bus_is_open(sp->bus)) {
		bus_drop(sp, r < 0 ? r : -ECONNRESET);
		return;
	}
	bus_update(sp);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	bus_process(h->data);
}

static void bus_timer_cb(uv_timer_t *t)
{
	bus_process(t->data);
}

static void bus_update(struct sd_plugin *sp)
{
	uint64_t until, now;
	int ev, uvev = 0;

	if (!sp->bus)
		return;
	ev = sd_bus_get_events(sp->bus);
	if (ev < 0) {
		bus_drop(sp, ev);
		return;
	}
	if (ev & POLLIN)
		uvev |= UV_READABLE;
	if (ev & POLLOUT)
		uvev |= UV_WRITABLE;
	uv_poll_start(sp->poll, uvev, poll_cb);
	if (sd_bus_get_timeout(sp->bus, &until) < 0 || until == UINT64_MAX) {
		uv_timer_stop(&sp->t_bus);
		return;
	}
	now = mono_usec();
	uv_timer_start(&sp->t_bus, bus_timer_cb, until > now ? (until - now + 999) / 1000 : 0, 0);
}

static void poll_closed(uv_handle_t *h)
{
	struct sd_plugin *sp = h->data;

	free(h);
	sp->handles--;
	check_close(sp);
}

/* Forget the connection; every operation waiting on it fails with @err. */
static void bus_drop(struct sd_plugin *sp, int err)
{
	if (!sp->bus)
		return;
	if (sp->in_process) {
		sp->drop_err = err < 0 ? err : -ECANCELED;
		return;
	}
	for (struct sd_svc *s = sp->svcs; s; s = s->next) {
		s->refresh_slot = sd_bus_slot_unref(s->refresh_slot);
		s->refresh_again = false;
		s->call_slot = sd_bus_slot_unref(s->call_slot);
	}
	sp->slot_jobs = sd_bus_slot_unref(sp->slot_jobs);
	sp->slot_props = sd_bus_slot_unref(sp->slot_props);
	sp->slot_sub = sd_bus_slot_unref(sp->slot_sub);
	/* stop polling before the fd goes away with the bus */
	uv_poll_stop(sp->poll);
	uv_close((uv_handle_t *)sp->poll, poll_closed);
	sp->poll = NULL;
	uv_timer_stop(&sp->t_bus);
	sp->bus = sd_bus_close_unref(sp->bus);
	sp->subscribed = false;
	if (sp->closing)
		return;
	for (struct sd_svc *s = sp->svcs; s; s = s->next)
		if (s->op != OP_NONE && !s->work_busy) {
			set_detail(s, "bus connection lost: %s", strerror(-err));
			op_finish(s, err);
		}
}

static int bus_ensure(struct sd_plugin *sp)
{
	const char *addr = sp->p->cfg.bus_address;
	sd_bus *bus = NULL;
	int r;

	if (sp->bus)
		return 0;
	if (addr) {
		r = sd_bus_new(&bus);
		if (r < 0)
			return r;
		r = sd_bus_set_address(bus, addr);
		if (r >= 0)
			r = sd_bus_start(bus);
	} else {
		r = sd_bus_open_system(&bus);
	}
	if (r < 0)
		goto fail;
	sp->poll = malloc(sizeof(*sp->poll));
	if (!sp->poll) {
		r = -ENOMEM;
		goto fail;
	}
	r = uv_poll_init(sp->p->loop, sp->poll, sd_bus_get_fd(bus));
	if (r < 0) {
		free(sp->poll);
		sp->poll = NULL;
		goto fail;
	}
	sp->poll->data = sp;
	sp->handles++;
	sp->bus = bus;
	/* on a direct connection signals have no sender: match sender NULL */
	r = sd_bus_match_signal_async(bus, &sp->slot_jobs, addr ? NULL : SD_DEST, SD_PATH, SD_MGR,
				      "JobRemoved", on_job_removed, NULL, sp);
	if (r >= 0)
		r = sd_bus_match_signal_async(bus, &sp->slot_props, addr ? NULL : SD_DEST, NULL,
					      SD_PROPS, "PropertiesChanged", on_props_changed,
					      NULL, sp);
	if (r >= 0)
		r = call(sp, &sp->slot_sub, SD_PATH, SD_MGR, "Subscribe", subscribe_reply, sp,
			 NULL);
	if (r < 0) {
		bus_drop(sp, r);
		return r;
	}
	bus_update(sp);
	return 0;
fail:
	sd_bus_unref(bus);
	return r;
}

/* ---- operations --------------------------------------------------------------------------- */

static void after_work_cb(uv_work_t *w, int status)
{
	struct sd_svc *s = w->data;
	struct sd_plugin *sp = s->sp;
	int r;

	s->work_busy = false;
	sp->handles--;
	if (sp->closing) {
		check_close(sp);
		return;
	}
	if (status < 0) {
		op_finish(s, status);
		return;
	}
	if (s->wres < 0) {
		op_finish(s, s->wres);
		return;
	}
	switch (s->op) {
	case OP_PREPARE:
		op_finish(s, 0);
		return;
	case OP_ACTIVATE:
		snprintf(s->unit, sizeof(s->unit), "%s", s->nunit);
		s->rev = s->nrev;
		s->active_rev = true;
		break;
	default:
		if (s->wres == 0) {
			/* no unit of ours for this service: nothing runs */
			if (s->op == OP_DEACTIVATE)
				s->active_rev = false;
			set_detail(s, "no unit managed by shoal for %s", s->name);
			op_finish(s, 0);
			return;
		}
		if (!s->unit[0]) {
			snprintf(s->unit, sizeof(s->unit), "%s", s->wunit);
			s->rev = s->wrev;
		}
		if (s->op == OP_DEACTIVATE)
			s->active_rev = false;
		break;
	}
	r = bus_ensure(sp);
	if (r < 0) {
		set_detail(s, "connect to systemd: %s", strerror(-r));
		op_finish(s, r);
		return;
	}
	uv_timer_start(&s->t_op, op_timeout_cb, sp->op_timeout, 0);
	if (s->op == OP_ACTIVATE) {
		r = call(sp, &s->call_slot, SD_PATH, SD_MGR, "Reload", reload_reply, s, NULL);
		if (r < 0) {
			set_detail(s, "Reload: %s", strerror(-r));
			op_finish(s, r);
		}
		return;
	}
	op_loadunit(s);
}

static struct sd_svc *svc_get(struct sd_plugin *sp, const char *name)
{
	struct sd_svc *s;

	for (s = sp->svcs; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->sp = sp;
	snprintf(s->name, sizeof(s->name), "%s", name);
	plugin__status_init(&s->st);
	uv_timer_init(sp->p->loop, &s->t_op);
	s->t_op.data = s;
	sp->handles++;
	s->work.data = s;
	s->next = sp->svcs;
	sp->svcs = s;
	return s;
}

static int op_start(struct sd_plugin *sp, enum sd_opkind kind, const char *service,
		    const struct plugin_instance *in, plugin_done_cb dcb, plugin_status_cb scb,
		    void *ud)
{
	struct sd_svc *s;
	int r;

	if (sp->closing)
		return -ECANCELED;
	if (!plugin__valid_service(service) || (!dcb && !scb))
		return -EINVAL;
	if (in && (!in->manifest || !valid_unit(in->manifest->systemd_unit) || !in->dir ||
		   in->dir[0] != '/'))
		return -EINVAL;
	s = svc_get(sp, service);
	if (!s)
		return -ENOMEM;
	if (s->op != OP_NONE)
		return -EBUSY;
	if (in) {
		s->ndir = strdup(in->dir);
		if (!s->ndir)
			return -ENOMEM;
		snprintf(s->nunit, sizeof(s->nunit), "%s", in->manifest->systemd_unit);
		s->nrev = in->rev;
		plugin__id_hex(&in->artifact, s->nartifact);
		/* a different unit name than before: forget the old object path */
		if (strcmp(s->nunit, s->unit) != 0 && kind == OP_ACTIVATE)
			s->upath[0] = '\0';
	}
	s->op = kind;
	s->done_cb = dcb;
	s->status_cb = scb;
	s->op_ud = ud;
	s->detail[0] = '\0';
	s->err[0] = '\0';
	r = uv_queue_work(sp->p->loop, &s->work, work_cb, after_work_cb);
	if (r < 0) {
		op_clear(s);
		return r;
	}
	s->work_busy = true;
	sp->handles++;
	return 0;
}

static int sd_prepare(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
		      void *ud)
{
	if (!in)
		return -EINVAL;
	return op_start(p->priv, OP_PREPARE, in->service, in, cb, NULL, ud);
}

static int sd_activate(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
		       void *ud)
{
	if (!in)
		return -EINVAL;
	return op_start(p->priv, OP_ACTIVATE, in->service, in, cb, NULL, ud);
}

static int sd_deactivate(struct plugin *p, const char *service, plugin_done_cb cb, void *ud)
{
	return op_start(p->priv, OP_DEACTIVATE, service, NULL, cb, NULL, ud);
}

static int sd_status(struct plugin *p, const char *service, plugin_status_cb cb, void *ud)
{
	return op_start(p->priv, OP_STATUS, service, NULL, NULL, cb, ud);
}

/*
 * Remove the unit file and our drop-ins of @service when their marker names @rev. Runs
 * inline (a few unlinks). 0 (also when there is nothing of @rev), -EBUSY while @rev is
 * this plugin's active revision or an operation on the service is in flight, -EINVAL.
 */
static int sd_forget(struct plugin *p, const char *service, uint64_t rev)
{
	struct sd_plugin *sp = p->priv;
	struct sd_svc probe, *s;
	int ufd, r;
	uint64_t frev = 0;

	if (!plugin__valid_service(service))
		return -EINVAL;
	for (s = sp->svcs; s; s = s->next)
		if (strcmp(s->name, service) == 0)
			break;
	if (s && (s->op != OP_NONE || (s->active_rev && s->rev == rev)))
		return -EBUSY;
	memset(&probe, 0, sizeof(probe));
	probe.sp = sp;
	snprintf(probe.name, sizeof(probe.name), "%s", service);
	r = files_lookup(&probe);
	if (r <= 0)
		return r;
	ufd = open(sp->unit_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0)
		return -errno;
	if (owned(ufd, probe.wunit, service, &frev) != 1 || frev != rev) {
		close(ufd);
		return 0;
	}
	close(ufd);
	r = files_remove(sp, service, probe.wunit);
	if (r == 0 && s) {
		s->unit[0] = '\0';
		s->upath[0] = '\0';
	}
	return r;
}

static int sd_init(struct plugin *p)
{
	struct sd_plugin *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return -ENOMEM;
	sp->p = p;
	sp->unit_dir = p->cfg.unit_dir ? p->cfg.unit_dir : "/etc/systemd/system";
	sp->op_timeout = plugin__ms(p->cfg.op_timeout_ms, 90000);
	uv_timer_init(p->loop, &sp->t_bus);
	sp->t_bus.data = sp;
	sp->handles++;
	p->priv = sp;
	return 0;
}

/* ---- close -------------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
	struct sd_plugin *sp = h->data;

	sp->handles--;
	check_close(sp);
}

static void svc_timer_closed(uv_handle_t *h)
{
	struct sd_svc *s = h->data;

	s->sp->handles--;
	check_close(s->sp);
}

static void check_close(struct sd_plugin *sp)
{
	struct plugin *p = sp->p;

	if (!sp->close_ready)
		return;
	if (!sp->closing_handles) {
		for (struct sd_svc *s = sp->svcs; s; s = s->next)
			if (s->work_busy)
				return;	/* a pool job cannot be recalled: wait for it */
		sp->closing_handles = true;
		bus_drop(sp, -ECANCELED);
		for (struct sd_svc *s = sp->svcs; s; s = s->next)
			uv_close((uv_handle_t *)&s->t_op, svc_timer_closed);
		uv_close((uv_handle_t *)&sp->t_bus, handle_closed);
		return;
	}
	if (sp->handles > 0)
		return;
	while (sp->svcs) {
		struct sd_svc *s = sp->svcs;

		if (s->op != OP_NONE) {
			s->detail[0] = '\0';
			set_detail(s, "plugin closed");
			op_finish(s, -ECANCELED);
		}
		sp->svcs = s->next;
		free(s->ndir);
		free(s);
	}
	{
		plugin_close_cb cb = sp->close_cb;
		void *ud = sp->close_ud;

		free(sp);
		p->priv = NULL;
		cb(p, ud);
	}
}

static void sd_close(struct plugin *p, plugin_close_cb cb, void *ud)
{
	struct sd_plugin *sp = p->priv;

	sp->closing = true;
	sp->close_cb = cb;
	sp->close_ud = ud;
	for (struct sd_svc *s = sp->svcs; s; s = s->next) {
		uv_timer_stop(&s->t_op);
		s->call_slot = sd_bus_slot_unref(s->call_slot);
		s->refresh_slot = sd_bus_slot_unref(s->refresh_slot);
	}
	sp->close_ready = true;
	check_close(sp);
}

static const char *sd_last_error(struct plugin *p, const char *service)
{
	struct sd_plugin *sp = p->priv;

	for (struct sd_svc *s = sp->svcs; s; s = s->next)
		if (strcmp(s->name, service) == 0)
			return s->err;
	return "";
}

const struct plugin_ops plugin_systemd_ops = {
	.name = "systemd",
	.init = sd_init,
	.prepare = sd_prepare,
	.activate = sd_activate,
	.deactivate = sd_deactivate,
	.status = sd_status,
	.forget = sd_forget,
	.close = sd_close,
	.last_error = sd_last_error,
};
