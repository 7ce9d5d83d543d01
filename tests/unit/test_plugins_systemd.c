/*
 * tests/unit/test_plugins_systemd.c: the systemd driver without systemd: unit files and
 * drop-ins on disk, ownership markers, refusals, and the D-Bus failure paths (no socket, a
 * peer that never answers) with their bounds. The real systemd is in tests/system/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "plugins/plugin.h"

struct ctx {
	uv_loop_t loop;
	struct plugin *p;
	char dir[PATH_MAX - 200];
	char units[PATH_MAX];
	char sock[PATH_MAX];
	int done_calls, done_status;
	int status_calls, status_status;
	struct plugin_status st;
	int close_calls;
	int nev;
};

static void on_event(struct plugin *p, const char *service, const struct plugin_status *st,
		     void *ud)
{
	((struct ctx *)ud)->nev++;
}

static void done_cb(struct plugin *p, const char *service, int status, void *ud)
{
	struct ctx *c = ud;

	c->done_calls++;
	c->done_status = status;
}

static void status_cb(struct plugin *p, const char *service, int status,
		      const struct plugin_status *st, void *ud)
{
	struct ctx *c = ud;

	c->status_calls++;
	c->status_status = status;
	c->st = *st;
}

static void close_cb(struct plugin *p, void *ud)
{
	((struct ctx *)ud)->close_calls++;
}

static void wake_cb(uv_timer_t *t)
{
	(void)t;
}

static bool run_until(struct ctx *c, bool (*pred)(struct ctx *), uint64_t ms)
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

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Whole file in a static buffer ("" when missing). */
static const char *get(const char *fmt, ...)
{
	static char buf[8192];
	char path[PATH_MAX];
	va_list ap;
	size_t n = 0;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	buf[0] = '\0';
	f = fopen(path, "r");
	if (!f)
		return buf;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static bool exists(const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return access(path, F_OK) == 0;
}

/* Temp dirs of tests that failed past their teardown; removed by main(). */
static char leftover_dirs[16][PATH_MAX];
static int nleftover_dirs;

static void setup(struct ctx *c, uint32_t op_timeout_ms)
{
	struct plugin_config cfg = { 0 };
	const char *tmp = getenv("TMPDIR");

	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	snprintf(c->dir, sizeof(c->dir), "%s/shoal-sd-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	if (nleftover_dirs < 16)
		snprintf(leftover_dirs[nleftover_dirs++], PATH_MAX, "%s", c->dir);
	snprintf(c->units, sizeof(c->units), "%s/units", c->dir);
	assert_int_equal(mkdir(c->units, 0755), 0);
	snprintf(c->sock, sizeof(c->sock), "unix:path=%s/bus", c->dir);
	assert_true(strlen(c->sock) - strlen("unix:path=") <
		    sizeof(((struct sockaddr_un *)0)->sun_path));
	cfg.state_dir = c->dir;
	cfg.unit_dir = c->units;
	cfg.bus_address = c->sock;
	cfg.op_timeout_ms = op_timeout_ms;
	cfg.on_event = on_event;
	cfg.ud = c;
	assert_int_equal(plugin_new(&c->loop, &plugin_systemd_ops, &cfg, &c->p), 0);
}

static void teardown(struct ctx *c)
{
	char cmd[PATH_MAX + 16];

	if (c->p) {
		plugin_close(c->p, close_cb, c);
		assert_int_equal(c->close_calls, 0);
		assert_true(run_until(c, p_closed, 10000));
		assert_int_equal(c->close_calls, 1);
	}
	assert_int_equal(uv_run(&c->loop, UV_RUN_NOWAIT), 0);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	for (int i = 0; i < nleftover_dirs; i++)
		if (strcmp(leftover_dirs[i], c->dir) == 0)
			leftover_dirs[i][0] = '\0';
}

/* An artifact dir NAME with web.service (@body) and drop-ins "name=text" pairs. */
static const char *artifact(struct ctx *c, const char *name, const char *unit, const char *body,
			    const char *dropin1, const char *text1)
{
	static char dir[PATH_MAX];
	char path[PATH_MAX + 300];

	snprintf(dir, sizeof(dir), "%s/%s", c->dir, name);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/%s", dir, unit);
	put(path, body);
	if (dropin1) {
		snprintf(path, sizeof(path), "%s/%s.d", dir, unit);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/%s.d/%s", dir, unit, dropin1);
		put(path, text1);
	}
	return dir;
}

static int op(struct ctx *c, bool prepare, const char *service, uint64_t rev, const char *unit,
	      const char *dir)
{
	struct store_manifest m = { .systemd_unit = (char *)unit };
	struct plugin_instance in = { .service = service, .rev = rev, .manifest = &m,
				      .dir = dir };
	int r;

	in.artifact.b[31] = 0xab;
	c->done_calls = 0;
	r = prepare ? plugin_prepare(c->p, &in, done_cb, c)
		    : plugin_activate(c->p, &in, done_cb, c);
	if (r < 0)
		return r;
	assert_int_equal(c->done_calls, 0);
	assert_true(run_until(c, p_done, 10000));
	assert_int_equal(c->done_calls, 1);
	return c->done_status;
}

static void test_files(void **state)
{
	struct ctx c;
	const char *a;
	char body[256];
	int r;

	setup(&c, 2000);
	a = artifact(&c, "a1", "web.service", "[Service]\nExecStart=/bin/true\n", "10-a.conf",
		     "[Service]\nEnvironment=A=1\n");
	/* prepare writes nothing */
	assert_int_equal(op(&c, true, "web", 1, "web.service", a), 0);
	assert_false(exists("%s/web.service", c.units));

	/* activate writes the files, then fails to reach the bus (no socket) */
	r = op(&c, false, "web", 1, "web.service", a);
	assert_true(r == -ENOENT || r == -ECONNREFUSED);
	snprintf(body, sizeof(body), "# managed-by: shoal service=web rev=1 artifact=");
	assert_memory_equal(get("%s/web.service", c.units), body, strlen(body));
	assert_non_null(strstr(get("%s/web.service", c.units),
			       "ab\n[Service]\nExecStart=/bin/true\n"));
	assert_non_null(strstr(get("%s/web.service.d/10-a.conf", c.units),
			       "service=web rev=1 "));
	assert_non_null(strstr(get("%s/web.service.d/10-a.conf", c.units), "Environment=A=1\n"));
	/* no temp files left behind */
	assert_false(exists("%s/.web.service.shoal-tmp", c.units));

	/* an operator's drop-in beside ours is kept; our dropped one is removed */
	{
		char p[PATH_MAX + 64];

		snprintf(p, sizeof(p), "%s/web.service.d/99-operator.conf", c.units);
		put(p, "[Service]\nNice=5\n");
	}
	a = artifact(&c, "a2", "web.service", "[Service]\nExecStart=/bin/false\n", "20-b.conf",
		     "[Service]\nEnvironment=B=2\n");
	r = op(&c, false, "web", 2, "web.service", a);
	assert_true(r == -ENOENT || r == -ECONNREFUSED);
	assert_false(exists("%s/web.service.d/10-a.conf", c.units));
	assert_true(exists("%s/web.service.d/20-b.conf", c.units));
	assert_string_equal(get("%s/web.service.d/99-operator.conf", c.units),
			    "[Service]\nNice=5\n");
	assert_non_null(strstr(get("%s/web.service", c.units), "rev=2 "));
	assert_non_null(strstr(get("%s/web.service", c.units), "/bin/false"));

	/* a drop-in of ours may not replace an operator's file of the same name */
	a = artifact(&c, "a3", "web.service", "[Service]\nExecStart=/bin/true\n",
		     "99-operator.conf", "[Service]\nNice=0\n");
	assert_int_equal(op(&c, false, "web", 3, "web.service", a), -EEXIST);
	assert_string_equal(get("%s/web.service.d/99-operator.conf", c.units),
			    "[Service]\nNice=5\n");
	assert_non_null(strstr(get("%s/web.service", c.units), "rev=2 ")); /* untouched */

	/* a unit file without our marker is never touched; nor one of another service */
	{
		char p[PATH_MAX + 64];

		snprintf(p, sizeof(p), "%s/db.service", c.units);
		put(p, "[Service]\nExecStart=/usr/bin/db\n");
	}
	a = artifact(&c, "a4", "db.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL);
	assert_int_equal(op(&c, true, "db", 1, "db.service", a), -EEXIST);
	assert_int_equal(op(&c, false, "db", 1, "db.service", a), -EEXIST);
	/* the errno's reason, in words */
	assert_non_null(strstr(plugin_last_error(c.p, "db"), "/db.service exists and is not "
				"managed by shoal for db"));
	assert_string_equal(plugin_last_error(c.p, "nope"), "");
	assert_string_equal(get("%s/db.service", c.units), "[Service]\nExecStart=/usr/bin/db\n");
	a = artifact(&c, "a5", "web.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL);
	assert_int_equal(op(&c, false, "other", 1, "web.service", a), -EEXIST);

	/* artifact problems */
	a = artifact(&c, "a6", "x.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL);
	assert_int_equal(op(&c, true, "x", 1, "missing.service", a), -ENOENT);
	{
		char p[PATH_MAX + 64];

		snprintf(p, sizeof(p), "%s/a6/evil.service", c.dir);
		assert_int_equal(symlink("/etc/passwd", p), 0);
	}
	assert_int_equal(op(&c, false, "evil", 1, "evil.service", a), -ELOOP);
	assert_false(exists("%s/evil.service", c.units));
	assert_int_equal(op(&c, true, "x", 1, "x.service", "/nonexistent/shoal-dir"), -ENOENT);

	/* argument errors: returned, no callback */
	assert_int_equal(op(&c, false, "x", 1, "../x.service", a), -EINVAL);
	assert_int_equal(op(&c, false, "x", 1, "x.exe", a), -EINVAL);
	assert_int_equal(op(&c, false, "x", 1, NULL, a), -EINVAL);
	assert_int_equal(op(&c, false, "x/y", 1, "x.service", a), -EINVAL);
	assert_int_equal(op(&c, false, "x", 1, "x.service", "rel"), -EINVAL);
	assert_int_equal(plugin_deactivate(c.p, "", done_cb, &c), -EINVAL);
	assert_int_equal(plugin_activate(c.p, NULL, done_cb, &c), -EINVAL);

	/* forget: only the revision on disk, never the active one */
	assert_int_equal(c.p->ops->forget(c.p, "web", 2), -EBUSY);
	assert_int_equal(c.p->ops->forget(c.p, "db", 1), 0); /* not ours: nothing */
	assert_true(exists("%s/db.service", c.units));
	assert_int_equal(c.nev, 0);
	teardown(&c);
}

static void test_lookup_and_forget(void **state)
{
	struct ctx c;
	char p[PATH_MAX + 64];

	setup(&c, 2000);
	/* files of a previous agent run, found through their marker */
	snprintf(p, sizeof(p), "%s/web.service", c.units);
	put(p, "# managed-by: shoal service=web rev=7 artifact=00\n"
	       "[Service]\nExecStart=/bin/true\n");
	snprintf(p, sizeof(p), "%s/web.service.d", c.units);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/web.service.d/10-a.conf", c.units);
	put(p, "# managed-by: shoal service=web rev=7 artifact=00\n[Service]\n");
	snprintf(p, sizeof(p), "%s/web.service.d/99-op.conf", c.units);
	put(p, "[Service]\n");

	/* a service with no unit of ours: status and deactivate need no bus */
	c.status_calls = 0;
	assert_int_equal(plugin_status(c.p, "nothing", status_cb, &c), 0);
	assert_true(run_until(&c, p_status, 5000));
	assert_int_equal(c.status_status, 0);
	assert_int_equal(c.st.state, PLUGIN_STOPPED);
	assert_non_null(strstr(c.st.detail, "no unit managed by shoal"));
	c.done_calls = 0;
	assert_int_equal(plugin_deactivate(c.p, "nothing", done_cb, &c), 0);
	assert_int_equal(plugin_deactivate(c.p, "nothing", done_cb, &c), -EBUSY);
	assert_true(run_until(&c, p_done, 5000));
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.done_status, 0);

	/* web's unit is found; the bus is not there */
	c.status_calls = 0;
	assert_int_equal(plugin_status(c.p, "web", status_cb, &c), 0);
	assert_true(run_until(&c, p_status, 5000));
	assert_true(c.status_status == -ENOENT || c.status_status == -ECONNREFUSED);
	assert_non_null(strstr(c.st.detail, "connect"));

	assert_int_equal(c.p->ops->forget(c.p, "web", 6), 0);
	assert_true(exists("%s/web.service", c.units));
	assert_int_equal(c.p->ops->forget(c.p, "web", 7), 0);
	assert_false(exists("%s/web.service", c.units));
	assert_false(exists("%s/web.service.d/10-a.conf", c.units));
	assert_true(exists("%s/web.service.d/99-op.conf", c.units)); /* not ours */
	assert_int_equal(c.p->ops->forget(c.p, "../x", 7), -EINVAL);
	teardown(&c);
}

/* A peer that accepts and never says a word: the operation must end at op_timeout_ms. */
static void test_silent_peer_timeout(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctx c;
	const char *a;
	uint64_t t0, el;
	int lfd, r;

	setup(&c, 700);
	assert_true(snprintf(sa.sun_path, sizeof(sa.sun_path), "%s",
			     c.sock + strlen("unix:path=")) < (int)sizeof(sa.sun_path));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 4), 0); /* the kernel completes connect(); nobody answers */
	a = artifact(&c, "a1", "web.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL);
	uv_update_time(&c.loop);
	t0 = uv_now(&c.loop);
	r = op(&c, false, "web", 1, "web.service", a);
	el = uv_now(&c.loop) - t0;
	print_message("silent peer: %d after %llu ms (op_timeout 700)\n", r,
		      (unsigned long long)el);
	assert_int_equal(r, -ETIMEDOUT);
	assert_in_range(el, 650, 5000);
	/* the next operation reconnects (and times out again, bounded) */
	r = op(&c, false, "web", 2, "web.service", a);
	assert_int_equal(r, -ETIMEDOUT);

	/* close while an operation waits on the silent peer: -ECANCELED, then close */
	{
		struct store_manifest m = { .systemd_unit = "web.service" };
		struct plugin_instance in = { .service = "web", .rev = 3, .manifest = &m,
					      .dir = a };
		int before;

		c.done_calls = 0;
		assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), 0);
		run_until(&c, p_closed, 200);
		before = c.done_calls;
		assert_int_equal(before, 0);
		plugin_close(c.p, close_cb, &c);
		assert_int_equal(c.done_calls, 0);
		assert_true(run_until(&c, p_closed, 5000));
		assert_int_equal(c.done_calls, 1);
		assert_int_equal(c.done_status, -ECANCELED);
		assert_int_equal(c.close_calls, 1);
		c.p = NULL;
	}
	close(lfd);
	teardown(&c);
}

/* close while the file work is on the thread pool: the op is cancelled, exactly once */
static void test_close_during_work(void **state)
{
	struct ctx c;
	const char *a;
	struct store_manifest m = { .systemd_unit = "web.service" };
	struct plugin_instance in = { .service = "web", .rev = 1, .manifest = &m };

	setup(&c, 2000);
	a = artifact(&c, "a1", "web.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL);
	in.dir = a;
	assert_int_equal(plugin_activate(c.p, &in, done_cb, &c), 0);
	plugin_close(c.p, close_cb, &c);
	assert_int_equal(c.done_calls, 0);
	assert_int_equal(c.close_calls, 0);
	assert_true(run_until(&c, p_closed, 5000));
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.done_status, -ECANCELED);
	c.p = NULL;
	teardown(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_lookup_and_forget),
		cmocka_unit_test(test_silent_peer_timeout),
		cmocka_unit_test(test_close_during_work),
	};

	char cmd[PATH_MAX + 16];
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	for (int i = 0; i < nleftover_dirs; i++) {
		if (!leftover_dirs[i][0])
			continue;
		if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", leftover_dirs[i]) >= (int)sizeof(cmd))
			continue;
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", leftover_dirs[i]);
	}
	return r;
}
