/*
 * tests/system/test_systemd_plugin.c: the systemd driver against a real systemd.
 *
 * Runs INSIDE the sandbox started by sbx.sh (test_systemd_plugin.sh does that), talking to
 * its systemd over the private socket /run/systemd/private, writing units into its
 * /etc/systemd/system and cross-checking every step with `systemctl`.
 *
 * usage: test_systemd_plugin WORKDIR     (WORKDIR: a scratch directory of this run)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugins/plugin.h"

#define UNIT_DIR "/etc/systemd/system"

static int failures;

#define CHECK(cond, ...)                                                                    \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                       \
			fprintf(stderr, "\n");                                              \
			failures++;                                                         \
		}                                                                           \
	} while (0)
#define CHECK_INT(a, b)                                                                     \
	CHECK((long long)(a) == (long long)(b), "%s = %lld, want %s = %lld", #a, (long long)(a), \
	      #b, (long long)(b))
#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0, "%s = \"%s\", want \"%s\"", #a, (a), (b))
#define CHECK_HAS(a, b) CHECK(strstr((a), (b)) != NULL, "\"%s\" does not contain \"%s\"", (a), (b))

struct ctx {
	uv_loop_t loop;
	struct plugin *p;
	char work[PATH_MAX - 200];
	int done_calls, done_status;
	int status_calls, status_status;
	struct plugin_status st;
	int close_calls;
	int nev;
	struct plugin_status ev[256];
	char evsvc[256][65];
};

static struct ctx C;

static void on_event(struct plugin *p, const char *service, const struct plugin_status *st,
		     void *ud)
{
	struct ctx *c = ud;

	if (c->nev < 256) {
		c->ev[c->nev] = *st;
		snprintf(c->evsvc[c->nev], sizeof(c->evsvc[0]), "%s", service);
		c->nev++;
	}
	printf("  event %s: %s rev=%" PRIu64 " pid=%" PRId64 " restarts=%u exit=%d (%s)\n", service,
	       plugin_state_name(st->state), st->rev, st->pid, st->restarts, st->exit_status,
	       st->detail);
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
	struct ctx *c = ud;

	c->close_calls++;
}

static void wake_cb(uv_timer_t *t)
{
	(void)t;
}

static bool run_until(bool (*pred)(void), uint64_t ms)
{
	uv_timer_t wake;
	uint64_t end;
	bool ok;

	uv_update_time(&C.loop);
	end = uv_now(&C.loop) + ms;
	uv_timer_init(&C.loop, &wake);
	uv_timer_start(&wake, wake_cb, 20, 20);
	while (!(ok = pred()) && uv_now(&C.loop) < end)
		uv_run(&C.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&wake, NULL);
	uv_run(&C.loop, UV_RUN_NOWAIT);
	return ok;
}

static bool p_done(void)
{
	return C.done_calls > 0;
}

static bool p_status(void)
{
	return C.status_calls > 0;
}

static bool p_closed(void)
{
	return C.close_calls > 0;
}

static bool p_never(void)
{
	return false;
}

/* Run a shell command, return its first output line (trimmed) in a static buffer. */
static const char *sh(const char *fmt, ...)
{
	static char out[1024];
	char cmd[2048];
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out[0] = '\0';
	f = popen(cmd, "r");
	if (!f)
		return out;
	if (!fgets(out, sizeof(out), f))
		out[0] = '\0';
	pclose(f);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

static void write_file(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "FATAL: cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* An artifact dir work/NAME holding UNIT (body) and optional drop-in. */
static void artifact(const char *name, const char *unit, const char *body, const char *dropin,
		     const char *dropin_body, char *ret_dir, size_t n)
{
	char path[PATH_MAX];

	snprintf(ret_dir, n, "%s/%s", C.work, name);
	mkdir(ret_dir, 0755);
	snprintf(path, sizeof(path), "%s/%s", ret_dir, unit);
	write_file(path, "%s", body);
	if (dropin) {
		snprintf(path, sizeof(path), "%s/%s.d", ret_dir, unit);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/%s.d/%s", ret_dir, unit, dropin);
		write_file(path, "%s", dropin_body);
	}
}

static int activate(const char *service, uint64_t rev, const char *unit, const char *dir)
{
	struct store_manifest m;
	struct plugin_instance in;
	int r;

	memset(&m, 0, sizeof(m));
	m.service = (char *)service;
	m.runtime = "systemd";
	m.systemd_unit = (char *)unit;
	memset(&in, 0, sizeof(in));
	in.service = service;
	in.rev = rev;
	in.artifact.b[0] = (uint8_t)rev;
	in.manifest = &m;
	in.dir = dir;
	C.done_calls = 0;
	r = plugin_activate(C.p, &in, done_cb, &C);
	if (r < 0)
		return r;
	CHECK_INT(C.done_calls, 0);
	if (!run_until(p_done, 60000))
		return -9999;
	CHECK_INT(C.done_calls, 1);
	return C.done_status;
}

static int deactivate(const char *service)
{
	int r;

	C.done_calls = 0;
	r = plugin_deactivate(C.p, service, done_cb, &C);
	if (r < 0)
		return r;
	if (!run_until(p_done, 60000))
		return -9999;
	CHECK_INT(C.done_calls, 1);
	return C.done_status;
}

static struct plugin_status status(const char *service)
{
	C.status_calls = 0;
	CHECK_INT(plugin_status(C.p, service, status_cb, &C), 0);
	CHECK(run_until(p_status, 30000), "no status callback");
	CHECK_INT(C.status_calls, 1);
	CHECK_INT(C.status_status, 0);
	printf("  status %s: %s rev=%" PRIu64 " pid=%" PRId64 " restarts=%u exit=%d (%s)\n",
	       service, plugin_state_name(C.st.state), C.st.rev, C.st.pid, C.st.restarts,
	       C.st.exit_status, C.st.detail);
	return C.st;
}

static void open_plugin_bus(uint32_t op_timeout_ms, const char *bus_address)
{
	struct plugin_config cfg = { 0 };
	static char state[PATH_MAX];

	snprintf(state, sizeof(state), "%s/state", C.work);
	mkdir(state, 0755);
	cfg.state_dir = state;
	cfg.unit_dir = UNIT_DIR;
	cfg.bus_address = bus_address;
	cfg.op_timeout_ms = op_timeout_ms;
	cfg.on_event = on_event;
	cfg.ud = &C;
	CHECK_INT(plugin_new(&C.loop, &plugin_systemd_ops, &cfg, &C.p), 0);
}

static void open_plugin(uint32_t op_timeout_ms)
{
	open_plugin_bus(op_timeout_ms, "unix:path=/run/systemd/private");
}

static void close_plugin(void)
{
	C.close_calls = 0;
	plugin_close(C.p, close_cb, &C);
	CHECK_INT(C.close_calls, 0);
	CHECK(run_until(p_closed, 10000), "close callback missing");
	CHECK_INT(C.close_calls, 1);
	C.p = NULL;
}

static int count_events(const char *svc, enum plugin_state s, int from)
{
	int n = 0;

	for (int i = from; i < C.nev; i++)
		n += C.ev[i].state == s && strcmp(C.evsvc[i], svc) == 0;
	return n;
}

static bool p_crash_failed(void)
{
	return count_events("crash", PLUGIN_FAILED, 0) > 0;
}

static bool p_restarted(void)
{
	return count_events("flap", PLUGIN_RESTARTING, 0) > 0 &&
	       count_events("flap", PLUGIN_RUNNING, 0) > 1;
}

int main(int argc, char **argv)
{
	char a1[PATH_MAX], a2[PATH_MAX], an[PATH_MAX], af[PATH_MAX], ac[PATH_MAX], ao[PATH_MAX];
	char path[PATH_MAX], pid1[64];
	struct plugin_status st;
	uint64_t t0;
	int r;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc != 2) {
		fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
		return 2;
	}
	snprintf(C.work, sizeof(C.work), "%s", argv[1]);
	if (uv_loop_init(&C.loop) != 0)
		return 1;
	open_plugin(20000);

	artifact("a1", "web.service",
		 "[Unit]\nDescription=web v1\n[Service]\n"
		 "ExecStart=/bin/sh -c 'echo v1; exec sleep 1000'\n",
		 "10-env.conf", "[Service]\nEnvironment=SHOAL_TEST_V=1\n", a1, sizeof(a1));
	artifact("a2", "web.service",
		 "[Unit]\nDescription=web v2\n[Service]\n"
		 "ExecStart=/bin/sh -c 'echo v2; exec sleep 2000'\n",
		 "20-other.conf", "[Service]\nEnvironment=SHOAL_TEST_W=2\n", a2, sizeof(a2));

	printf("== activate v1\n");
	r = activate("web", 1, "web.service", a1);
	CHECK_INT(r, 0);
	CHECK_STR(sh("systemctl is-active web.service"), "active");
	CHECK_HAS(sh("systemctl show -p Environment --value web.service"), "SHOAL_TEST_V=1");
	CHECK_HAS(sh("head -n1 " UNIT_DIR "/web.service"),
		  "# managed-by: shoal service=web rev=1 ");
	CHECK_HAS(sh("head -n1 " UNIT_DIR "/web.service.d/10-env.conf"), "service=web rev=1");
	st = status("web");
	CHECK_INT(st.state, PLUGIN_RUNNING);
	CHECK_INT(st.rev, 1);
	CHECK(st.pid > 0, "pid %" PRId64, st.pid);
	snprintf(pid1, sizeof(pid1), "%s", sh("systemctl show -p MainPID --value web.service"));
	CHECK_INT(st.pid, atoll(pid1));
	CHECK_HAS(st.detail, "SubState=running");

	printf("== swap to v2\n");
	r = activate("web", 2, "web.service", a2);
	CHECK_INT(r, 0);
	CHECK_STR(sh("systemctl is-active web.service"), "active");
	CHECK_STR(sh("systemctl show -p Description --value web.service"), "web v2");
	CHECK_HAS(sh("systemctl show -p Environment --value web.service"), "SHOAL_TEST_W=2");
	CHECK(strstr(sh("systemctl show -p Environment --value web.service"), "SHOAL_TEST_V") ==
		      NULL,
	      "v1's drop-in still applies");
	snprintf(path, sizeof(path), UNIT_DIR "/web.service.d/10-env.conf");
	CHECK(access(path, F_OK) != 0, "%s not removed", path);
	st = status("web");
	CHECK_INT(st.rev, 2);
	CHECK(st.pid != atoll(pid1), "same MainPID %" PRId64 " after swap", st.pid);
	CHECK_HAS(sh("ps -o args= -p %" PRId64, st.pid), "sleep 2000");

	printf("== back to v1\n");
	r = activate("web", 3, "web.service", a1);
	CHECK_INT(r, 0);
	CHECK_STR(sh("systemctl show -p Description --value web.service"), "web v1");
	CHECK_HAS(sh("systemctl show -p Environment --value web.service"), "SHOAL_TEST_V=1");
	st = status("web");
	CHECK_INT(st.rev, 3);
	CHECK_INT(st.state, PLUGIN_RUNNING);
	CHECK_HAS(sh("ps -o args= -p %" PRId64, st.pid), "sleep 1000");

	printf("== a revision that renames the unit: the old unit is stopped and removed\n");
	{
		char b1[PATH_MAX], b2[PATH_MAX];

		artifact("b1", "api.service", "[Service]\nExecStart=/bin/sleep 1001\n", NULL, NULL,
			 b1, sizeof(b1));
		artifact("b2", "api-v2.service", "[Service]\nExecStart=/bin/sleep 1002\n", NULL,
			 NULL, b2, sizeof(b2));
		CHECK_INT(activate("api", 1, "api.service", b1), 0);
		CHECK_STR(sh("systemctl is-active api.service"), "active");
		CHECK_INT(activate("api", 2, "api-v2.service", b2), 0);
		CHECK_STR(sh("systemctl is-active api-v2.service"), "active");
		CHECK_STR(sh("systemctl is-active api.service"), "inactive");
		CHECK(access(UNIT_DIR "/api.service", F_OK) != 0, "api.service left behind");
		st = status("api");
		CHECK_INT(st.rev, 2);
		CHECK_INT(st.state, PLUGIN_RUNNING);
		CHECK_INT(deactivate("api"), 0);
		CHECK_STR(sh("systemctl is-active api-v2.service"), "inactive");
	}

	printf("== Type=notify: the activate waits for READY=1\n");
	artifact("an", "note.service",
		 "[Service]\nType=notify\nNotifyAccess=all\nExecStart=/bin/sh -c 'sleep 1.5; "
		 "systemd-notify --ready --status=ready; exec sleep 1000'\n",
		 NULL, NULL, an, sizeof(an));
	uv_update_time(&C.loop);
	t0 = uv_now(&C.loop);
	r = activate("note", 1, "note.service", an);
	CHECK_INT(r, 0);
	printf("  notify activate took %" PRIu64 " ms\n", uv_now(&C.loop) - t0);
	CHECK(uv_now(&C.loop) - t0 >= 1400, "returned after %" PRIu64 " ms, before READY",
	      uv_now(&C.loop) - t0);
	CHECK_STR(sh("systemctl show -p ActiveState --value note.service"), "active");
	CHECK_STR(sh("systemctl show -p StatusText --value note.service"), "ready");

	printf("== a failing unit\n");
	artifact("af", "fail.service", "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 3'\n",
		 NULL, NULL, af, sizeof(af));
	r = activate("fail", 1, "fail.service", af);
	CHECK_INT(r, -EIO);
	/* -EIO alone says little: the job result and the unit's Result, in words */
	CHECK_HAS(plugin_last_error(C.p, "fail"), "job failed");
	CHECK_HAS(plugin_last_error(C.p, "fail"), "Result=exit-code");
	st = status("fail");
	CHECK_INT(st.state, PLUGIN_FAILED);
	CHECK_HAS(st.detail, "Result=exit-code");
	CHECK_INT(st.exit_status, 3);
	CHECK_STR(sh("systemctl is-failed fail.service"), "failed");

	printf("== a unit that dies after it started: reported through on_event\n");
	artifact("ac", "crash.service", "[Service]\nExecStart=/bin/sh -c 'sleep 0.5; exit 4'\n",
		 NULL, NULL, ac, sizeof(ac));
	r = activate("crash", 1, "crash.service", ac);
	CHECK_INT(r, 0);
	CHECK(run_until(p_crash_failed, 10000), "no FAILED event for crash");
	st = status("crash");
	CHECK_INT(st.state, PLUGIN_FAILED);
	CHECK_INT(st.exit_status, 4);

	printf("== Restart=always: RESTARTING events and NRestarts\n");
	{
		char afl[PATH_MAX];

		artifact("afl", "flap.service",
			 "[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=always\n"
			 "RestartSec=300ms\nExecStart=/bin/sh -c 'sleep 0.5; exit 1'\n",
			 NULL, NULL, afl, sizeof(afl));
		r = activate("flap", 1, "flap.service", afl);
		CHECK_INT(r, 0);
		CHECK(run_until(p_restarted, 10000), "no restart seen for flap");
		st = status("flap");
		CHECK(st.restarts >= 1, "restarts = %u", st.restarts);
		{
			/* NRestarts only grows: systemctl, asked later, sees at least as many */
			long long n = atoll(sh("systemctl show -p NRestarts --value flap.service"));

			CHECK(n >= st.restarts && n <= st.restarts + 3,
			      "NRestarts %lld vs plugin's %u", n, st.restarts);
		}
		CHECK_INT(deactivate("flap"), 0);
		CHECK_STR(sh("systemctl is-active flap.service"), "inactive");
	}

	printf("== a unit file we do not own is refused\n");
	write_file(UNIT_DIR "/foreign.service",
		   "[Service]\nExecStart=/bin/sleep 1000\n# operator's own unit\n");
	artifact("ao", "foreign.service", "[Service]\nExecStart=/bin/true\n", NULL, NULL, ao,
		 sizeof(ao));
	r = activate("foreign", 1, "foreign.service", ao);
	CHECK_INT(r, -EEXIST);
	CHECK_STR(sh("tail -n1 " UNIT_DIR "/foreign.service"), "# operator's own unit");
	{
		struct store_manifest m = { .systemd_unit = "foreign.service" };
		struct plugin_instance in = { .service = "foreign", .rev = 1, .manifest = &m,
					      .dir = ao };

		C.done_calls = 0;
		CHECK_INT(plugin_prepare(C.p, &in, done_cb, &C), 0);
		CHECK(run_until(p_done, 10000), "no prepare callback");
		CHECK_INT(C.done_status, -EEXIST);
		/* another service cannot take over web.service either */
		m.systemd_unit = "web.service";
		in.service = "intruder";
		C.done_calls = 0;
		CHECK_INT(plugin_prepare(C.p, &in, done_cb, &C), 0);
		CHECK(run_until(p_done, 10000), "no prepare callback");
		CHECK_INT(C.done_status, -EEXIST);
		/* and bad input is refused up front */
		m.systemd_unit = "../etc/passwd";
		CHECK_INT(plugin_prepare(C.p, &in, done_cb, &C), -EINVAL);
		m.systemd_unit = "web.service";
		in.dir = "relative";
		CHECK_INT(plugin_activate(C.p, &in, done_cb, &C), -EINVAL);
	}

	printf("== an artifact's symlink is not followed\n");
	{
		char al[PATH_MAX], link[PATH_MAX + 32];

		snprintf(al, sizeof(al), "%s/al", C.work);
		mkdir(al, 0755);
		snprintf(link, sizeof(link), "%s/link.service", al);
		CHECK_INT(symlink("/etc/passwd", link), 0);
		r = activate("link", 1, "link.service", al);
		CHECK_INT(r, -ELOOP);
		CHECK(access(UNIT_DIR "/link.service", F_OK) != 0, "link.service was written");
	}

	printf("== deactivate\n");
	CHECK_INT(deactivate("web"), 0);
	CHECK_STR(sh("systemctl is-active web.service"), "inactive");
	st = status("web");
	CHECK_INT(st.state, PLUGIN_STOPPED);
	CHECK_INT(plugin_status(C.p, "web", status_cb, &C), 0);
	CHECK_INT(plugin_status(C.p, "web", status_cb, &C), -EBUSY);
	run_until(p_status, 10000);
	close_plugin();

	printf("== a new plugin (agent restart) finds its units by their marker\n");
	open_plugin(1500);
	st = status("web");
	CHECK_INT(st.rev, 3);
	CHECK_INT(st.state, PLUGIN_STOPPED);
	st = status("note");
	CHECK_INT(st.state, PLUGIN_RUNNING);
	CHECK_INT(deactivate("note"), 0);
	CHECK_STR(sh("systemctl is-active note.service"), "inactive");
	CHECK_INT(C.p->ops->forget(C.p, "web", 2), 0); /* not the rev on disk: nothing */
	CHECK(access(UNIT_DIR "/web.service", F_OK) == 0, "web.service removed for rev 2");
	CHECK_INT(C.p->ops->forget(C.p, "web", 3), 0);
	CHECK(access(UNIT_DIR "/web.service", F_OK) != 0, "web.service kept");
	CHECK(access(UNIT_DIR "/web.service.d", F_OK) != 0, "web.service.d kept");
	CHECK_INT(C.p->ops->forget(C.p, "foreign", 1), 0);
	CHECK(access(UNIT_DIR "/foreign.service", F_OK) == 0, "foreign unit removed");

	printf("== every wait is bounded: a notify unit that never gets ready\n");
	{
		char as[PATH_MAX];

		artifact("as", "slow.service",
			 "[Service]\nType=notify\nTimeoutStartSec=60\nExecStart=/bin/sleep 1000\n",
			 NULL, NULL, as, sizeof(as));
		uv_update_time(&C.loop);
		t0 = uv_now(&C.loop);
		r = activate("slow", 1, "slow.service", as);
		CHECK_INT(r, -ETIMEDOUT);
		printf("  gave up after %" PRIu64 " ms (op_timeout 1500)\n", uv_now(&C.loop) - t0);
		CHECK(uv_now(&C.loop) - t0 < 5000, "took %" PRIu64 " ms", uv_now(&C.loop) - t0);
		CHECK_STR(sh("systemctl show -p ActiveState --value slow.service"), "activating");
		CHECK_INT(deactivate("slow"), 0);
		CHECK_STR(sh("systemctl is-active slow.service"), "inactive");
	}

	printf("== over the system bus (dbus-daemon) instead of the private socket\n");
	close_plugin();
	open_plugin_bus(20000, NULL);
	{
		char ab[PATH_MAX];
		int from = C.nev;

		artifact("ab", "viabus.service", "[Service]\nExecStart=/bin/sleep 1003\n", NULL,
			 NULL, ab, sizeof(ab));
		CHECK_INT(activate("viabus", 1, "viabus.service", ab), 0);
		CHECK_STR(sh("systemctl is-active viabus.service"), "active");
		st = status("viabus");
		CHECK_INT(st.state, PLUGIN_RUNNING);
		CHECK_INT(st.pid, atoll(sh("systemctl show -p MainPID --value viabus.service")));
		/* signals arrive through the bus daemon too: stop it behind our back */
		sh("systemctl stop viabus.service");
		run_until(p_never, 1000);
		CHECK(count_events("viabus", PLUGIN_STOPPED, from) > 0, "no STOPPED event via bus");
		CHECK_INT(deactivate("viabus"), 0);
	}
	close_plugin();
	open_plugin(1500);

	printf("== close with an operation in flight\n");
	{
		struct store_manifest m = { .systemd_unit = "note.service" };
		struct plugin_instance in = { .service = "note", .rev = 2, .manifest = &m,
					      .dir = an };

		C.done_calls = 0;
		CHECK_INT(plugin_activate(C.p, &in, done_cb, &C), 0);
		run_until(p_never, 300);
		CHECK_INT(C.done_calls, 0);
		C.close_calls = 0;
		plugin_close(C.p, close_cb, &C);
		CHECK(run_until(p_closed, 10000), "close callback missing");
		CHECK_INT(C.done_calls, 1);
		CHECK_INT(C.done_status, -ECANCELED);
		CHECK_INT(C.close_calls, 1);
		C.p = NULL;
	}

	CHECK_INT(uv_run(&C.loop, UV_RUN_NOWAIT), 0);
	CHECK_INT(uv_loop_close(&C.loop), 0);
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("all systemd plugin checks passed\n");
	return 0;
}
