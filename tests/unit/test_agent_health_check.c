/*
 * tests/unit/test_agent_health_check.c: the health checker on a real libuv loop, with real
 * sockets (a tiny HTTP server this test runs on 127.0.0.1), real processes (exec checks and
 * the examples' check.sh) and the real exec runtime plugin (examples/web-crash). Every wait is
 * bounded by a guard timer; every callback is counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/node/health.h"
#include "store/import.h"

#ifndef SHOAL_SOURCE_DIR_FALLBACK	/* set by test_agent_health_check.cmake */
#define SHOAL_SOURCE_DIR_FALLBACK "."
#endif

/* ---- Harness -------------------------------------------------------------------------------- */

#define MAX_CHANGES 512

struct change {
	char service[64];
	uint64_t rev;
	uint64_t at;		/* uv_now when reported */
	struct health_status st;
};

enum srv_mode { SRV_200, SRV_500, SRV_HANG, SRV_GARBAGE };

struct srv;
struct sconn {
	struct srv *s;
	struct sconn *next, *prev;
	uv_tcp_t tcp;
	uv_write_t wr;
	char req[4096];
	size_t len;
	char rbuf[1024];
	bool answered, closing;
};

struct srv {
	uv_tcp_t tcp;
	bool open;
	int port;
	enum srv_mode mode;
	int conns, requests;
	char last_req[1024];
	struct sconn *list;
};

struct ctx {
	uv_loop_t loop;
	uv_timer_t guard, poll;
	bool expired;
	struct health *h;
	int closed;
	bool in_call;		/* inside a health_* call: on_change must not run */
	char dir[PATH_MAX];
	struct change ch[MAX_CHANGES];
	int nch;
	/* what on_change does besides recording */
	bool stop_on_unhealthy;
	bool close_on_change;
	struct srv srv;
	/* exec plugin (runtime FAILED test) */
	struct plugin *p;
	int p_closed, p_events, p_done;
};

static struct ctx *C;

static void on_change(void *ud, const char *service, uint64_t rev, const struct health_status *st)
{
	struct ctx *c = ud;
	struct change *ch;

	if (c->in_call)
		fail_msg("on_change for %s called from inside a health_* call", service);
	assert_true(c->nch < MAX_CHANGES);
	ch = &c->ch[c->nch++];
	snprintf(ch->service, sizeof(ch->service), "%s", service);
	ch->rev = rev;
	ch->at = uv_now(&c->loop);
	ch->st = *st;
	/* Let run_until look at once: UV_RUN_ONCE would otherwise go on to block for the next
	 * timer within the same iteration. */
	uv_stop(&c->loop);
	if (c->stop_on_unhealthy && st->state == HEALTH_UNHEALTHY) {
		assert_int_equal(health_stop(c->h, service), 0);
		assert_int_equal(health_stop(c->h, service), -ENOENT);
	}
	if (c->close_on_change && c->h) {
		health_close(c->h, NULL, NULL);
		c->h = NULL;
		c->closed++;
	}
}

static void closed_cb(struct health *h, void *ud)
{
	((struct ctx *)ud)->closed++;
}

static void guard_cb(uv_timer_t *t)
{
	((struct ctx *)t->data)->expired = true;
}

typedef bool (*pred_fn)(struct ctx *c, const void *arg);

/* Wakes the loop up so that predicates on the outside world (files) are looked at often. */
static void poll_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Run the loop until @pred holds or @ms pass. Returns whether @pred holds. */
static bool run_until(struct ctx *c, pred_fn pred, const void *arg, uint64_t ms)
{
	c->expired = false;
	uv_timer_start(&c->guard, guard_cb, ms, 0);
	uv_timer_start(&c->poll, poll_cb, 10, 10);
	while (!(pred && pred(c, arg)) && !c->expired)
		uv_run(&c->loop, UV_RUN_ONCE);
	uv_timer_stop(&c->guard);
	uv_timer_stop(&c->poll);
	return pred && pred(c, arg);
}

static void run_for(struct ctx *c, uint64_t ms)
{
	run_until(c, NULL, NULL, ms);
}

/* The last change reported for @service, or NULL. */
static const struct change *last_change(struct ctx *c, const char *service)
{
	for (int i = c->nch - 1; i >= 0; i--)
		if (strcmp(c->ch[i].service, service) == 0)
			return &c->ch[i];
	return NULL;
}

static int nchanges(struct ctx *c, const char *service)
{
	int n = 0;

	for (int i = 0; i < c->nch; i++)
		n += strcmp(c->ch[i].service, service) == 0;
	return n;
}

struct want {
	const char *service;
	enum health_state state;
};

static bool pred_state(struct ctx *c, const void *arg)
{
	const struct want *w = arg;
	const struct change *ch = last_change(c, w->service);

	return ch && ch->st.state == w->state;
}

static void wait_state(struct ctx *c, const char *service, enum health_state state, uint64_t ms)
{
	struct want w = { service, state };
	const struct change *ch;

	if (run_until(c, pred_state, &w, ms))
		return;
	ch = last_change(c, service);
	fail_msg("%s: not %s within %llu ms; last change: %s (%s)", service,
		 health_state_name(state), (unsigned long long)ms,
		 ch ? health_state_name(ch->st.state) : "none", ch ? ch->st.detail : "");
}

static bool pred_closed(struct ctx *c, const void *arg)
{
	return c->closed >= *(const int *)arg;
}

static void write_file(struct ctx *c, const char *name, const char *content, mode_t mode)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(content, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static bool file_exists(struct ctx *c, const char *name)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	return access(path, F_OK) == 0;
}

static bool pred_file(struct ctx *c, const void *arg)
{
	return file_exists(c, arg);
}

static long read_pid(struct ctx *c, const char *name)
{
	char path[PATH_MAX + 64];
	long pid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", c->dir, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = -1;
	fclose(f);
	return pid;
}

/* Whether @pid is gone (no such process, or a zombie waiting for its reaper). */
static bool pid_gone(long pid)
{
	char path[64], buf[512];
	FILE *f;
	char *rp;
	bool gone;

	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	gone = !fgets(buf, sizeof(buf), f);
	fclose(f);
	if (gone)
		return true;
	rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static void wait_pid_gone(long pid, int ms)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	assert_true(pid > 1);
	for (int i = 0; i < ms / 20 && !pid_gone(pid); i++)
		nanosleep(&ts, NULL);
	if (!pid_gone(pid)) {
		kill((pid_t)pid, SIGKILL); /* do not leave it behind, then fail */
		fail_msg("pid %ld still alive after %d ms", pid, ms);
	}
}

static int setup(void **state)
{
	struct health_config cfg = { .on_change = on_change };
	const char *tmp = getenv("TMPDIR");
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	assert_int_equal(uv_loop_init(&c->loop), 0);
	uv_timer_init(&c->loop, &c->guard);
	uv_timer_init(&c->loop, &c->poll);
	c->guard.data = c;
	snprintf(c->dir, sizeof(c->dir), "%s/shoal-health-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(c->dir));
	cfg.ud = c;
	assert_int_equal(health_new(&c->loop, &cfg, &c->h), 0);
	C = c;
	*state = c;
	return 0;
}

static void srv_close(struct srv *s);

static int teardown(void **state)
{
	struct ctx *c = *state;
	char cmd[PATH_MAX + 16];
	int want;

	if (c->h) {
		want = c->closed + 1;
		c->in_call = true;
		health_close(c->h, closed_cb, c);
		c->in_call = false;
		assert_int_equal(c->closed, want - 1); /* never from inside health_close */
		c->h = NULL;
		if (!run_until(c, pred_closed, &want, 5000))
			fail_msg("health_close: no callback within 5000 ms");
	}
	srv_close(&c->srv);
	uv_close((uv_handle_t *)&c->guard, NULL);
	uv_close((uv_handle_t *)&c->poll, NULL);
	/* Nothing may be left on the loop: every handle of the checker was closed. */
	assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&c->loop), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	assert_int_equal(system(cmd), 0);
	free(c);
	C = NULL;
	return 0;
}

static int start(struct ctx *c, const char *service, uint64_t rev,
		 const struct store_health_policy *pol, const char *dir)
{
	struct store_id id;
	struct health_target t = { .service = service, .rev = rev, .artifact = &id,
				   .dir = dir ? dir : c->dir, .policy = pol };
	int r;

	for (int i = 0; i < STORE_ID_LEN; i++)
		id.b[i] = (uint8_t)(0xa0 + i);
	c->in_call = true;
	r = health_start(c->h, &t);
	c->in_call = false;
	return r;
}

static const struct health_status *get(struct ctx *c, const char *service)
{
	static struct health_status st;
	uint64_t rev = 0;

	c->in_call = true;
	assert_int_equal(health_get(c->h, service, &rev, &st), 0);
	c->in_call = false;
	return &st;
}

/* ---- A tiny HTTP server on 127.0.0.1 --------------------------------------------------------- */

static void sconn_closed(uv_handle_t *hd)
{
	struct sconn *k = hd->data;

	if (k->prev)
		k->prev->next = k->next;
	else
		k->s->list = k->next;
	if (k->next)
		k->next->prev = k->prev;
	free(k);
}

static void sconn_close(struct sconn *k)
{
	if (!k->closing) {
		k->closing = true;
		uv_close((uv_handle_t *)&k->tcp, sconn_closed);
	}
}

static void sconn_written(uv_write_t *wr, int status)
{
	sconn_close(wr->data);
}

static void sconn_alloc(uv_handle_t *hd, size_t sz, uv_buf_t *buf)
{
	struct sconn *k = hd->data;

	*buf = uv_buf_init(k->rbuf, sizeof(k->rbuf));
}

static void sconn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	static const char *const answers[] = {
		[SRV_200] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
		[SRV_500] = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
			    "Transfer-Encoding: chunked\r\n\r\n"
			    "e\r\nboom: db down\n\r\n5\r\nmore\n\r\n0\r\n\r\n",
		[SRV_GARBAGE] = "HTX/1.1 200 OK\r\n\r\n",
	};
	struct sconn *k = st->data;
	uv_buf_t b;

	if (n < 0) {
		sconn_close(k);
		return;
	}
	if (k->answered || n == 0)
		return;
	if (k->len + (size_t)n >= sizeof(k->req)) {
		sconn_close(k);
		return;
	}
	memcpy(k->req + k->len, buf->base, (size_t)n);
	k->len += (size_t)n;
	k->req[k->len] = '\0';
	if (!strstr(k->req, "\r\n\r\n"))
		return;
	k->answered = true;
	k->s->requests++;
	memcpy(k->s->last_req, k->req, sizeof(k->s->last_req) - 1);
	if (k->s->mode == SRV_HANG)
		return; /* never answer; the client's timeout closes, we see EOF */
	b = uv_buf_init((char *)answers[k->s->mode], (unsigned)strlen(answers[k->s->mode]));
	k->wr.data = k;
	if (uv_write(&k->wr, (uv_stream_t *)&k->tcp, &b, 1, sconn_written) < 0)
		sconn_close(k);
}

static void srv_conn(uv_stream_t *ls, int status)
{
	struct srv *s = ls->data;
	struct sconn *k;

	if (status < 0)
		return;
	k = calloc(1, sizeof(*k));
	assert_non_null(k);
	k->s = s;
	uv_tcp_init(ls->loop, &k->tcp);
	k->tcp.data = k;
	k->next = s->list;
	if (s->list)
		s->list->prev = k;
	s->list = k;
	if (uv_accept(ls, (uv_stream_t *)&k->tcp) < 0) {
		sconn_close(k);
		return;
	}
	s->conns++;
	uv_read_start((uv_stream_t *)&k->tcp, sconn_alloc, sconn_read);
}

static int bound_port(uv_tcp_t *t)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Listen on @ip (127.0.0.1 or ::1), port chosen by the kernel. Returns 0 or the bind error. */
static int srv_open_at(struct ctx *c, enum srv_mode mode, const char *ip)
{
	struct srv *s = &c->srv;
	struct sockaddr_storage a;
	int r;

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	if (strchr(ip, ':'))
		assert_int_equal(uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&a), 0);
	else
		assert_int_equal(uv_ip4_addr(ip, 0, (struct sockaddr_in *)&a), 0);
	assert_int_equal(uv_tcp_init(&c->loop, &s->tcp), 0);
	s->tcp.data = s;
	s->open = true;
	r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&a, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->tcp, 16, srv_conn);
	if (r == 0)
		s->port = bound_port(&s->tcp);
	return r;
}

static void srv_open(struct ctx *c, enum srv_mode mode)
{
	assert_int_equal(srv_open_at(c, mode, "127.0.0.1"), 0);
}

static void srv_close(struct srv *s)
{
	if (!s->open)
		return;
	s->open = false;
	for (struct sconn *k = s->list; k; k = k->next)
		sconn_close(k);
	uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* A port on 127.0.0.1 where nothing listens (bound, then closed). */
static int closed_port(struct ctx *c)
{
	struct sockaddr_in a;
	uv_tcp_t t;
	int port;

	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
	assert_int_equal(uv_tcp_init(&c->loop, &t), 0);
	assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
	port = bound_port(&t);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&c->loop, UV_RUN_NOWAIT);
	return port;
}

/* ---- Tests: http ------------------------------------------------------------------------------ */

static void test_http_ok_then_500_then_ok(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 1000, .failures = 2,
					   .deadline_ms = 5000 };
	char url[128], want[256];
	const struct change *ch;

	srv_open(c, SRV_200);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz?x=1#frag", c->srv.port);
	pol.http = url;
	assert_int_equal(start(c, "web", 7, &pol, NULL), 0);
	assert_int_equal(get(c, "web")->state, HEALTH_STARTING);
	wait_state(c, "web", HEALTH_HEALTHY, 3000);
	ch = last_change(c, "web");
	assert_int_equal(c->nch, 1);
	assert_int_equal(ch->rev, 7);
	assert_string_equal(ch->st.detail, "check passed: HTTP 200: ok");
	assert_false(ch->st.missed);
	/* The first check comes one interval after the start. */
	assert_true(ch->st.since_ms - ch->st.started_ms >= 50);
	snprintf(want, sizeof(want), "GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
		 c->srv.port);
	if (strncmp(c->srv.last_req, want, strlen(want)) != 0)
		fail_msg("request \"%s\", want it to start with \"%s\"", c->srv.last_req, want);
	assert_non_null(strstr(c->srv.last_req, "\r\nConnection: close\r\n"));

	c->srv.mode = SRV_500;
	wait_state(c, "web", HEALTH_UNHEALTHY, 3000);
	ch = last_change(c, "web");
	assert_string_equal(ch->st.detail, "2 failed checks in a row: HTTP 500: boom: db down");
	assert_true(ch->st.missed);
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_FAILURES);
	assert_int_equal(c->nch, 2);

	c->srv.mode = SRV_200;
	wait_state(c, "web", HEALTH_HEALTHY, 3000);
	ch = last_change(c, "web");
	assert_true(ch->st.missed); /* latched */
	assert_int_equal(c->nch, 3);
	assert_int_equal(c->srv.requests, c->srv.conns);
	assert_true(ch->st.checks >= 4);
}

static void test_http_500_deadline(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 1000, .failures = 2,
					   .deadline_ms = 400 };
	char url[128];
	const struct change *ch;

	srv_open(c, SRV_500);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", c->srv.port);
	pol.http = url;
	assert_int_equal(start(c, "api", 3, &pol, NULL), 0);
	wait_state(c, "api", HEALTH_UNHEALTHY, 3000);
	ch = last_change(c, "api");
	/* Failures in `starting` did not end the start: only the deadline did. */
	assert_int_equal(c->nch, 1);
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(ch->st.since_ms - ch->st.started_ms, 400);
	assert_int_equal(ch->st.missed_ms, ch->st.since_ms);
	assert_string_equal(ch->st.detail,
			    "not healthy within 400 ms (last check: HTTP 500: boom: db down)");
	assert_true(ch->st.checks >= 3);
	assert_int_equal(ch->st.checks, ch->st.checks_failed);
	assert_non_null(strstr(c->srv.last_req, "GET / HTTP/1.1\r\n"));
}

static void test_http_hang_timeout(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 200, .failures = 2,
					   .deadline_ms = 0 };
	char url[128];
	const struct change *ch;
	uint64_t t0 = uv_now(&c->loop);

	srv_open(c, SRV_HANG);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/slow", c->srv.port);
	pol.http = url;
	assert_int_equal(start(c, "slow", 1, &pol, NULL), 0);
	wait_state(c, "slow", HEALTH_UNHEALTHY, 3000);
	ch = last_change(c, "slow");
	assert_string_equal(ch->st.detail, "2 failed checks in a row: timed out after 200 ms");
	/* Two checks of 200 ms each, never overlapping, the first one interval in. */
	if (ch->at - t0 < 450)
		fail_msg("unhealthy after %llu ms, want >= 450", (unsigned long long)(ch->at - t0));
	assert_int_equal(c->srv.conns, 2);
}

static void test_http_bad_and_refused(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 30, .timeout_ms = 1000, .failures = 1,
					   .deadline_ms = 0 };
	char url[128], url2[128], want[128];
	const struct change *ch;
	int port = closed_port(c);

	srv_open(c, SRV_GARBAGE);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", c->srv.port);
	pol.http = url;
	assert_int_equal(start(c, "bad", 1, &pol, NULL), 0);
	snprintf(url2, sizeof(url2), "http://localhost:%d/", port);
	{
		struct store_health_policy p2 = pol;

		p2.http = url2;	/* a name: resolved through getaddrinfo */
		assert_int_equal(start(c, "refused", 1, &p2, NULL), 0);
	}
	wait_state(c, "bad", HEALTH_UNHEALTHY, 3000);
	wait_state(c, "refused", HEALTH_UNHEALTHY, 3000);
	ch = last_change(c, "bad");
	assert_string_equal(ch->st.detail, "1 failed checks in a row: bad response: Bad message");
	ch = last_change(c, "refused");
	snprintf(want, sizeof(want), ":%d: connection refused", port);
	if (!strstr(ch->st.detail, want) || !strstr(ch->st.detail, "connect "))
		fail_msg("detail \"%s\", want \"connect ...%s\"", ch->st.detail, want);
}

static void test_http_tcp_ipv6(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 30, .timeout_ms = 1000, .failures = 1,
					   .deadline_ms = 0 };
	char url[128], hp[64], want[256];
	int r = srv_open_at(c, SRV_200, "::1");

	if (r == UV_EADDRNOTAVAIL || r == UV_EAFNOSUPPORT) {
		print_message("no IPv6 loopback here (%s): IPv6 part skipped\n", uv_strerror(r));
		return;
	}
	assert_int_equal(r, 0);
	snprintf(url, sizeof(url), "http://[::1]:%d/v6", c->srv.port);
	snprintf(hp, sizeof(hp), "[::1]:%d", c->srv.port);
	pol.http = url;
	assert_int_equal(start(c, "v6http", 1, &pol, NULL), 0);
	pol.http = NULL;
	pol.tcp = hp;
	assert_int_equal(start(c, "v6tcp", 1, &pol, NULL), 0);
	wait_state(c, "v6http", HEALTH_HEALTHY, 3000);
	wait_state(c, "v6tcp", HEALTH_HEALTHY, 3000);
	snprintf(want, sizeof(want), "check passed: connected to [::1]:%d", c->srv.port);
	assert_string_equal(last_change(c, "v6tcp")->st.detail, want);
	assert_string_equal(last_change(c, "v6http")->st.detail, "check passed: HTTP 200: ok");
	snprintf(want, sizeof(want), "GET /v6 HTTP/1.1\r\nHost: [::1]:%d\r\n", c->srv.port);
	assert_non_null(strstr(c->srv.last_req, want));
}

/* ---- Tests: tcp ------------------------------------------------------------------------------- */

static void test_tcp(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 30, .timeout_ms = 1000, .failures = 3,
					   .deadline_ms = 0 };
	char up[64], down[64], want[128];
	const struct change *ch;
	int port = closed_port(c);

	srv_open(c, SRV_HANG);
	snprintf(up, sizeof(up), "127.0.0.1:%d", c->srv.port);
	snprintf(down, sizeof(down), "127.0.0.1:%d", port);
	pol.tcp = up;
	assert_int_equal(start(c, "db", 1, &pol, NULL), 0);
	pol.tcp = down;
	assert_int_equal(start(c, "cache", 1, &pol, NULL), 0);
	wait_state(c, "db", HEALTH_HEALTHY, 3000);
	wait_state(c, "cache", HEALTH_UNHEALTHY, 3000);
	snprintf(want, sizeof(want), "check passed: connected to 127.0.0.1:%d", c->srv.port);
	assert_string_equal(last_change(c, "db")->st.detail, want);
	ch = last_change(c, "cache");
	snprintf(want, sizeof(want), "3 failed checks in a row: connect 127.0.0.1:%d: "
		 "connection refused", port);
	assert_string_equal(ch->st.detail, want);
	assert_int_equal(ch->st.streak, 3);
	assert_int_equal(c->srv.requests, 0); /* a tcp check sends nothing */
	assert_true(c->srv.conns >= 1);
	/* The server goes away: db goes unhealthy after 3 refusals. */
	srv_close(&c->srv);
	wait_state(c, "db", HEALTH_UNHEALTHY, 3000);
	assert_int_equal(last_change(c, "db")->st.miss_reason, HEALTH_MISS_FAILURES);
}

/* ---- Tests: exec ------------------------------------------------------------------------------ */

static void test_exec_pass_fail_env(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 30, .timeout_ms = 2000, .failures = 2,
					   .deadline_ms = 0 };
	char want[3 * PATH_MAX], hex[STORE_ID_HEXLEN + 1];
	struct store_id id;
	const struct change *ch;

	write_file(c, "ok.sh",
		   "#!/bin/sh\n\n"
		   "echo \"$SHOAL_SERVICE $SHOAL_REV $SHOAL_ARTIFACT $SHOAL_DIR $(pwd)\"\n"
		   "echo second line\necho to stderr >&2\nexit 0\n", 0755);
	write_file(c, "bad.sh", "#!/bin/sh\necho out\necho 'broken: \tno db' >&2\nexit 3\n", 0755);
	pol.exec = "./ok.sh --flag";
	assert_int_equal(start(c, "web", 42, &pol, NULL), 0);
	pol.exec = "./bad.sh";
	assert_int_equal(start(c, "worker", 5, &pol, NULL), 0);
	wait_state(c, "web", HEALTH_HEALTHY, 3000);
	wait_state(c, "worker", HEALTH_UNHEALTHY, 3000);
	for (int i = 0; i < STORE_ID_LEN; i++)
		id.b[i] = (uint8_t)(0xa0 + i);
	store_id_hex(&id, hex);
	snprintf(want, sizeof(want), "check passed: exit 0: web 42 %s %s %s", hex, c->dir, c->dir);
	want[HEALTH_DETAIL_MAX - 1] = '\0';
	assert_string_equal(last_change(c, "web")->st.detail, want);
	ch = last_change(c, "worker");
	assert_string_equal(ch->st.detail, "2 failed checks in a row: exit 3: broken: ?no db");
	assert_int_equal(ch->rev, 5);
	/* A command that is not there: sh says so, exit 127. */
	pol.exec = "./missing.sh";
	pol.failures = 1;
	assert_int_equal(start(c, "gone", 1, &pol, NULL), 0);
	wait_state(c, "gone", HEALTH_UNHEALTHY, 3000);
	ch = last_change(c, "gone");
	assert_non_null(strstr(ch->st.detail, "exit 127: "));
	assert_non_null(strstr(ch->st.detail, "missing.sh"));
	/* A directory that is not there: the spawn fails. */
	{
		char nodir[PATH_MAX + 16];

		snprintf(nodir, sizeof(nodir), "%s/nope", c->dir);
		assert_int_equal(start(c, "nodir", 1, &pol, nodir), 0);
		wait_state(c, "nodir", HEALTH_UNHEALTHY, 3000);
		assert_string_equal(last_change(c, "nodir")->st.detail,
				    "1 failed checks in a row: spawn /bin/sh: no such file or directory");
	}
}

static void test_exec_hang_killed(void **state)
{
	struct ctx *c = *state;
	/* 1.5 s: the shell must have written its pids and line before the kill even on a machine
	 * loaded far past its cores (a 300 ms timeout failed there: the kill came first) */
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 1500, .failures = 1,
					   .deadline_ms = 0 };
	const struct change *ch;
	long shpid, sleeppid;
	uint64_t t0;

	/* The shell starts a grandchild and waits: both must die at the timeout. */
	write_file(c, "hang.sh",
		   "#!/bin/sh\necho $$ > sh.pid\nsleep 30 &\necho $! > sleep.pid\n"
		   "echo 'still working'\nwait\n", 0755);
	pol.exec = "./hang.sh";
	t0 = uv_now(&c->loop);
	assert_int_equal(start(c, "hang", 1, &pol, NULL), 0);
	wait_state(c, "hang", HEALTH_UNHEALTHY, 10000);
	ch = last_change(c, "hang");
	assert_string_equal(ch->st.detail,
			    "1 failed checks in a row: timed out after 1500 ms (killed): still working");
	if (ch->at - t0 < 1500 || ch->at - t0 > 1550 + 3000)
		fail_msg("result after %llu ms, want 1500..4550", (unsigned long long)(ch->at - t0));
	shpid = read_pid(c, "sh.pid");
	sleeppid = read_pid(c, "sleep.pid");
	wait_pid_gone(shpid, 2000);
	wait_pid_gone(sleeppid, 2000);
}

/* A background child of a passing check is killed when the shell exits. */
static void test_exec_leftover_killed(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 5000, .failures = 1,
					   .deadline_ms = 0 };
	const struct change *ch;

	write_file(c, "bg.sh", "#!/bin/sh\nsleep 30 &\necho $! > bg.pid\necho fine\nexit 0\n",
		   0755);
	pol.exec = "./bg.sh";
	assert_int_equal(start(c, "bg", 1, &pol, NULL), 0);
	wait_state(c, "bg", HEALTH_HEALTHY, 3000);
	ch = last_change(c, "bg");
	assert_string_equal(ch->st.detail, "check passed: exit 0: fine");
	/* Well before the 5 s timeout: the pipes ended because the group was killed. */
	if (ch->at - ch->st.started_ms > 1500)
		fail_msg("took %llu ms", (unsigned long long)(ch->at - ch->st.started_ms));
	wait_pid_gone(read_pid(c, "bg.pid"), 2000);
}

/* Checks never overlap: a check longer than the interval delays the next one. */
static void test_exec_no_overlap(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 20, .timeout_ms = 3000, .failures = 1,
					   .deadline_ms = 0 };
	const struct health_status *st;
	uint64_t t0 = uv_now(&c->loop), elapsed;

	write_file(c, "slow.sh",
		   "#!/bin/sh\nif [ -e lock ]; then echo overlap >&2; exit 1; fi\n"
		   "touch lock\necho x >> count\nsleep 0.2\nrm lock\n", 0755);
	pol.exec = "./slow.sh";
	assert_int_equal(start(c, "slow", 1, &pol, NULL), 0);
	run_for(c, 1500);
	st = get(c, "slow");
	elapsed = uv_now(&c->loop) - t0;
	assert_int_equal(st->state, HEALTH_HEALTHY);
	assert_int_equal(st->checks_failed, 0);
	/* At most one check per 200 ms (plus the one running now); and they ran back to back. */
	if (st->checks > elapsed / 200 + 1 || st->checks < 3)
		fail_msg("%llu checks in %llu ms", (unsigned long long)st->checks,
			 (unsigned long long)elapsed);
}

/* The examples: web-v1's check.sh passes, web-v2's fails; policies from their release.ini. */
static void load_example(const char *name, struct store_manifest *m, char *dir, size_t dirlen)
{
	const char *src = getenv("SHOAL_SOURCE_DIR");
	char path[PATH_MAX], err[256], buf[8192];
	size_t n;
	FILE *f;

	snprintf(dir, dirlen, "%s/examples/%s", src ? src : SHOAL_SOURCE_DIR_FALLBACK, name);
	snprintf(path, sizeof(path), "%s/release.ini", dir);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (store_release_parse(buf, n, path, m, err, sizeof(err)) != 0)
		fail_msg("%s: %s", path, err);
}

static void test_examples_v1_v2(void **state)
{
	struct ctx *c = *state;
	struct store_manifest m1, m2;
	char d1[PATH_MAX], d2[PATH_MAX];
	const struct change *ch;

	memset(&m1, 0, sizeof(m1));
	memset(&m2, 0, sizeof(m2));
	load_example("web-v1", &m1, d1, sizeof(d1));
	load_example("web-v2", &m2, d2, sizeof(d2));
	assert_string_equal(m1.health.exec, "./check.sh");
	assert_int_equal(m2.health.interval_ms, 500);
	assert_int_equal(m2.health.failures, 3);
	assert_int_equal(m2.health.deadline_ms, 10000);
	/* v2's deadline shortened from 10 s to keep the test short; the rest as released. */
	m2.health.deadline_ms = 1700;
	assert_int_equal(start(c, "web-v1", 1, &m1.health, d1), 0);
	assert_int_equal(start(c, "web-v2", 2, &m2.health, d2), 0);
	wait_state(c, "web-v1", HEALTH_HEALTHY, 3000);
	assert_string_equal(last_change(c, "web-v1")->st.detail,
			    "check passed: exit 0: web 1.0.0: ok");
	wait_state(c, "web-v2", HEALTH_UNHEALTHY, 4000);
	ch = last_change(c, "web-v2");
	assert_int_equal(nchanges(c, "web-v2"), 1);
	assert_true(ch->st.missed);
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(ch->st.since_ms - ch->st.started_ms, 1700);
	assert_string_equal(ch->st.last_check, "exit 1: web 2.0.0: /healthz returned 500");
	assert_true(ch->st.checks_failed >= 3); /* 3 failures did not end the start */
	/* v1 stays healthy, without further changes. */
	assert_int_equal(nchanges(c, "web-v1"), 1);
	assert_int_equal(get(c, "web-v1")->state, HEALTH_HEALTHY);
	assert_false(get(c, "web-v1")->missed);
	store_manifest_release(&m1);
	store_manifest_release(&m2);
}

/* ---- Tests: runtime input ------------------------------------------------------------------- */

static void plugin_event(struct plugin *p, const char *service, const struct plugin_status *st,
			 void *ud)
{
	struct ctx *c = ud;
	int r;

	c->p_events++;
	if (!c->h)
		return;
	c->in_call = true;
	r = health_runtime(c->h, service, st);
	c->in_call = false;
	assert_true(r == 0 || r == 1);
}

static void plugin_done(struct plugin *p, const char *service, int status, void *ud)
{
	struct ctx *c = ud;

	assert_int_equal(status, 0);
	c->p_done++;
}

static void plugin_closed(struct plugin *p, void *ud)
{
	((struct ctx *)ud)->closed++;
}

/* examples/web-crash under the real exec plugin: its restart loop ends FAILED -> failed. */
static void test_runtime_failed_web_crash(void **state)
{
	struct ctx *c = *state;
	struct plugin_config cfg = { .state_dir = c->dir, .on_event = plugin_event, .ud = c,
				     .restart_min_ms = 10, .restart_max_ms = 40,
				     .restart_burst = 3, .restart_window_ms = 10000,
				     .settle_ms = 2000, .stop_timeout_ms = 2000 };
	struct plugin_instance in;
	struct store_manifest m;
	char dir[PATH_MAX];
	const struct change *ch;
	int want;

	memset(&m, 0, sizeof(m));
	load_example("web-crash", &m, dir, sizeof(dir));
	assert_int_equal(plugin_new(&c->loop, &plugin_exec_ops, &cfg, &c->p), 0);
	memset(&in, 0, sizeof(in));
	in.service = "web";
	in.rev = 9;
	in.manifest = &m;
	in.dir = dir;
	assert_int_equal(start(c, "web", 9, &m.health, dir), 0);
	assert_int_equal(plugin_activate(c->p, &in, plugin_done, c), 0);
	wait_state(c, "web", HEALTH_FAILED, 5000);
	ch = last_change(c, "web");
	assert_true(ch->st.missed);
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_RUNTIME);
	assert_int_equal(ch->st.runtime, PLUGIN_FAILED);
	assert_int_equal(ch->rev, 9);
	if (strncmp(ch->st.detail, "runtime failed (", 16) != 0)
		fail_msg("detail \"%s\"", ch->st.detail);
	assert_true(ch->st.restarts >= 3);
	assert_int_equal(c->p_done, 1);
	/* check.sh passes, but a failed instance stays failed. */
	run_for(c, 700);
	assert_int_equal(get(c, "web")->state, HEALTH_FAILED);
	assert_true(get(c, "web")->checks >= 1);
	want = c->closed + 1;
	plugin_close(c->p, plugin_closed, c);
	c->p = NULL;
	assert_true(run_until(c, pred_closed, &want, 10000));
	store_manifest_release(&m);
}

/* health_runtime: deferred on_change, stale revs, no-check policy (R6). */
static void test_runtime_input(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy none = { .interval_ms = 50, .timeout_ms = 50, .failures = 1,
					    .deadline_ms = 300 };
	struct plugin_status st = { .state = PLUGIN_RUNNING, .rev = 4, .exit_status = -1 };
	const struct change *ch;

	assert_int_equal(start(c, "nocheck", 4, &none, NULL), 0);
	assert_int_equal(start(c, "never", 4, &none, NULL), 0);
	c->in_call = true;
	st.rev = 3;
	assert_int_equal(health_runtime(c->h, "nocheck", &st), -ESTALE);
	st.rev = 4;
	snprintf(st.detail, sizeof(st.detail), "up");
	assert_int_equal(health_runtime(c->h, "nocheck", &st), 1);
	assert_int_equal(health_runtime(c->h, "nocheck", &st), 0);
	assert_int_equal(health_runtime(c->h, "nobody", &st), -ENOENT);
	assert_int_equal(health_runtime(c->h, NULL, &st), -EINVAL);
	c->in_call = false;
	assert_int_equal(c->nch, 0); /* deferred */
	wait_state(c, "nocheck", HEALTH_HEALTHY, 1000);
	assert_int_equal(c->nch, 1);
	assert_string_equal(last_change(c, "nocheck")->st.detail,
			    "check passed: runtime running: up");
	/* rev 0 means "unknown": accepted. */
	st.rev = 0;
	st.state = PLUGIN_RESTARTING;
	st.restarts = 1;
	c->in_call = true;
	assert_int_equal(health_runtime(c->h, "nocheck", &st), 1);
	c->in_call = false;
	wait_state(c, "nocheck", HEALTH_UNHEALTHY, 1000);
	ch = last_change(c, "nocheck");
	assert_int_equal(ch->st.restarts, 1);
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_FAILURES);
	/* "never" never runs: the deadline, by its timer. */
	wait_state(c, "never", HEALTH_UNHEALTHY, 2000);
	ch = last_change(c, "never");
	assert_int_equal(ch->st.miss_reason, HEALTH_MISS_DEADLINE);
	assert_int_equal(ch->st.since_ms - ch->st.started_ms, 300);
	assert_int_equal(ch->st.checks, 0);
}

/* ---- Tests: lifecycle ------------------------------------------------------------------------- */

static void test_errors(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 50, .timeout_ms = 50, .failures = 1,
					   .deadline_ms = 1000 };
	struct health_target t = { .service = "x", .rev = 1, .dir = "/", .policy = &pol };
	struct health_config cfg = { .on_change = on_change, .ud = c };
	struct health_status st;
	struct health *h2;

	assert_int_equal(health_new(NULL, &cfg, &h2), -EINVAL);
	cfg.on_change = NULL;
	assert_int_equal(health_new(&c->loop, &cfg, &h2), -EINVAL);
	assert_int_equal(health_start(c->h, NULL), -EINVAL);
	t.service = "";
	assert_int_equal(health_start(c->h, &t), -EINVAL);
	t.service = "x";
	pol.http = "http://127.0.0.1:1/";
	pol.tcp = "127.0.0.1:1";
	assert_int_equal(health_start(c->h, &t), -EINVAL); /* two kinds */
	pol.tcp = NULL;
	pol.http = "https://127.0.0.1/";
	assert_int_equal(health_start(c->h, &t), -EINVAL);
	pol.http = NULL;
	pol.tcp = "nohost";
	assert_int_equal(health_start(c->h, &t), -EINVAL);
	pol.tcp = NULL;
	pol.exec = "./check.sh";
	t.dir = NULL;
	assert_int_equal(health_start(c->h, &t), -EINVAL);
	/* A failed start leaves the running instance alone. */
	t.dir = "/";
	assert_int_equal(health_start(c->h, &t), 0);
	pol.exec = NULL;
	pol.http = "http://bad url/";
	assert_int_equal(health_start(c->h, &t), -EINVAL);
	assert_int_equal(health_get(c->h, "x", NULL, &st), 0);
	assert_int_equal(health_get(c->h, "y", NULL, &st), -ENOENT);
	assert_int_equal(health_get(c->h, NULL, NULL, &st), -EINVAL);
	assert_int_equal(health_stop(c->h, "y"), -ENOENT);
	assert_int_equal(health_stop(c->h, "x"), 0);
	assert_int_equal(health_stop(c->h, "x"), -ENOENT);
	assert_int_equal(health_get(c->h, "x", NULL, &st), -ENOENT);
	health_close(NULL, NULL, NULL);
}

/* Replacing and stopping instances while checks are in flight; close waits for processes. */
static void test_replace_stop_close_in_flight(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 20, .timeout_ms = 10000, .failures = 1,
					   .deadline_ms = 0 };
	long pid1, pid2;
	uint64_t rev = 0;
	struct health_status st;
	int want;

	write_file(c, "hang1.sh", "#!/bin/sh\necho $$ > h1.pid\nsleep 30\n", 0755);
	write_file(c, "hang2.sh", "#!/bin/sh\necho $$ > h2.pid\nsleep 30\n", 0755);
	write_file(c, "ok.sh", "#!/bin/sh\nexit 0\n", 0755);
	pol.exec = "./hang1.sh";
	assert_int_equal(start(c, "web", 1, &pol, NULL), 0);
	assert_true(run_until(c, pred_file, "h1.pid", 3000));
	pid1 = read_pid(c, "h1.pid");
	/* Replace rev 1 (its check hangs) with rev 2: rev 1's check is killed, never reported. */
	pol.exec = "./ok.sh";
	assert_int_equal(start(c, "web", 2, &pol, NULL), 0);
	assert_int_equal(health_get(c->h, "web", &rev, &st), 0);
	assert_int_equal(rev, 2);
	wait_state(c, "web", HEALTH_HEALTHY, 3000);
	assert_int_equal(last_change(c, "web")->rev, 2);
	assert_int_equal(c->nch, 1);
	wait_pid_gone(pid1, 2000);

	/* Stop while hanging: killed; no report. */
	pol.exec = "./hang2.sh";
	assert_int_equal(start(c, "api", 1, &pol, NULL), 0);
	assert_true(run_until(c, pred_file, "h2.pid", 3000));
	pid2 = read_pid(c, "h2.pid");
	assert_int_equal(health_stop(c->h, "api"), 0);
	run_for(c, 300);
	wait_pid_gone(pid2, 2000);
	assert_int_equal(nchanges(c, "api"), 0);

	/* Close with a hanging check in flight: the callback comes once the process is reaped. */
	pol.exec = "./hang1.sh";
	{
		char p[PATH_MAX + 16];

		snprintf(p, sizeof(p), "%s/h1.pid", c->dir);
		unlink(p);
	}
	assert_int_equal(start(c, "web", 3, &pol, NULL), 0);
	assert_true(run_until(c, pred_file, "h1.pid", 3000));
	pid1 = read_pid(c, "h1.pid");
	want = c->closed + 1;
	c->in_call = true;
	health_close(c->h, closed_cb, c);
	assert_int_equal(start(c, "late", 1, &pol, NULL), -ESHUTDOWN);
	assert_int_equal(health_stop(c->h, "web"), -ENOENT);
	c->in_call = false;
	c->h = NULL;
	assert_true(run_until(c, pred_closed, &want, 3000));
	/* The shell was reaped; the script's own process (a grandchild when sh -c forks) was
	 * killed with the group and may take a moment to finish dying. */
	wait_pid_gone(pid1, 2000);
	assert_int_equal(nchanges(c, "web"), 1);
}

/* on_change may stop its own instance, or close the whole checker. */
static void test_stop_and_close_from_callback(void **state)
{
	struct ctx *c = *state;
	struct store_health_policy pol = { .interval_ms = 20, .timeout_ms = 1000, .failures = 1,
					   .deadline_ms = 0 };

	write_file(c, "bad.sh", "#!/bin/sh\nexit 1\n", 0755);
	write_file(c, "ok.sh", "#!/bin/sh\nexit 0\n", 0755);
	c->stop_on_unhealthy = true;
	pol.exec = "./bad.sh";
	assert_int_equal(start(c, "a", 1, &pol, NULL), 0);
	wait_state(c, "a", HEALTH_UNHEALTHY, 3000);
	run_for(c, 200);
	assert_int_equal(nchanges(c, "a"), 1);
	c->stop_on_unhealthy = false;

	pol.exec = "./ok.sh";
	assert_int_equal(start(c, "b", 1, &pol, NULL), 0);
	assert_int_equal(start(c, "c", 1, &pol, NULL), 0);
	c->close_on_change = true; /* the first change closes everything (no close callback) */
	run_for(c, 500);
	assert_int_equal(c->nch, 2);
	assert_null(c->h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_http_ok_then_500_then_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_500_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_hang_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_bad_and_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http_tcp_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_pass_fail_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_hang_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_leftover_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_no_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_examples_v1_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_failed_web_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_stop_close_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_close_from_callback, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
