/*
 * tests/unit/test_traffic_lb.c: failure paths of the libuv driver (traffic/lb.c) that a real
 * HAProxy does not produce on demand: a peer that answers garbage, closes mid-answer, sends
 * more than the driver takes; the driver closed from inside its own callbacks; updates that
 * coalesce; configuration refused. The happy path and HAProxy's real refusals are in
 * tests/integration/traffic_haproxy.c against HAProxy itself.
 *
 * The peer is a unix socket served on the same loop: for each line received it sends what
 * the test's script says (HAProxy's prompt-mode framing "...\n> " unless the script says
 * otherwise). Callbacks are counted, as libuv's own tests do.
 */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "traffic/traffic.h"

static uv_loop_t loop;
static uv_pipe_t server;
static char sock[108];

/* What the peer answers to one command line; NULL = close the connection. */
typedef const char *(*script_fn)(const char *line);
static script_fn script;
static int lines_seen;

struct peer {
	uv_pipe_t h;
	char buf[65536];
	size_t len;
};

static void peer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void peer_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void peer_send(struct peer *p, const char *text, size_t n)
{
	struct {
		uv_write_t w;
		char b[];
	} *wr = malloc(sizeof *wr + n);
	memcpy(wr->b, text, n);
	uv_buf_t b = uv_buf_init(wr->b, (unsigned)n);
	if (uv_write(&wr->w, (uv_stream_t *)&p->h, &b, 1, peer_written))
		free(wr);
}

static void peer_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	struct peer *p = h->data;
	(void)s;
	*b = uv_buf_init(p->buf + p->len, (unsigned)(sizeof p->buf - p->len));
}

static void peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct peer *p = st->data;
	(void)b;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)st))
			uv_close((uv_handle_t *)st, peer_closed);
		return;
	}
	p->len += (size_t)n;
	char *nl;
	while ((nl = memchr(p->buf, '\n', p->len))) {
		*nl = '\0';
		lines_seen++;
		const char *ans = script(p->buf);
		size_t used = (size_t)(nl - p->buf) + 1;
		memmove(p->buf, nl + 1, p->len - used);
		p->len -= used;
		if (!ans) {
			uv_close((uv_handle_t *)st, peer_closed);
			return;
		}
		if (strcmp(ans, "<silence>") == 0)
			continue;
		if (strcmp(ans, "<flood>") == 0) {
			/* 9 MiB with no prompt: over the driver's 8 MiB bound. */
			static char chunk[1 << 20];
			memset(chunk, 'x', sizeof chunk);
			for (int i = 0; i < 9; i++)
				peer_send(p, chunk, sizeof chunk);
			continue;
		}
		peer_send(p, ans, strlen(ans));
	}
}

static void on_peer(uv_stream_t *s, int status)
{
	assert_int_equal(status, 0);
	struct peer *p = calloc(1, sizeof *p);
	uv_pipe_init(&loop, &p->h, 0);
	p->h.data = p;
	assert_int_equal(uv_accept(s, (uv_stream_t *)&p->h), 0);
	uv_read_start((uv_stream_t *)&p->h, peer_alloc, peer_read);
}

#define STATE_OK "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state " \
		 "srv_uweight srv_iweight srv_port\n3 web 1 s1 127.0.0.1 0 5 1 1 1\n\n> "

static const char *haproxy_like(const char *l)
{
	if (strcmp(l, "prompt") == 0)
		return "\n> ";
	if (strncmp(l, "show servers state", 18) == 0)
		return STATE_OK;
	return "\n> ";	/* every set command "succeeds" and changes nothing */
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	snprintf(sock, sizeof sock, "/tmp/shoal-traffic-lb-%d.sock", (int)getpid());
	unlink(sock);
	assert_int_equal(uv_pipe_init(&loop, &server, 0), 0);
	assert_int_equal(uv_pipe_bind(&server, sock), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&server, 8, on_peer), 0);
	lines_seen = 0;
	script = haproxy_like;
	return 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	/* Peers are the pipes whose data is their struct peer (p->h.data == p); anything else
	 * left (a driver a failed test did not close) is closed without a callback. */
	if (uv_is_closing(h))
		return;
	bool peer = h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&server && h->data &&
		    (void *)&((struct peer *)h->data)->h == (void *)h;
	uv_close(h, peer ? peer_closed : NULL);
}

static int teardown(void **state)
{
	(void)state;
	uv_walk(&loop, walk_close, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	unlink(sock);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

static int n_ev[6], closed;
static char last_msg[6][512];
static struct traffic_lb *close_on;	/* close this lb from the next event */

static void on_event(const struct traffic_event *ev, void *ud)
{
	(void)ud;
	n_ev[ev->kind]++;
	snprintf(last_msg[ev->kind], sizeof last_msg[ev->kind], "%s", ev->message);
	if (close_on) {
		struct traffic_lb *lb = close_on;
		close_on = NULL;
		traffic_lb_close(lb, NULL, NULL);
	}
}

static void on_closed(void *ud)
{
	(void)ud;
	closed++;
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

static void run_until(const int *flag, int above, int ms)
{
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, tick, 5, 5);
	uint64_t end = uv_now(&loop) + (uint64_t)ms;
	while (*flag <= above && uv_now(&loop) < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static struct traffic_lb *mk(uint32_t timeout_ms)
{
	memset(n_ev, 0, sizeof n_ev);
	closed = 0;
	struct traffic_lb_config c = {
		.socket = sock, .backend = "web", .site = "a", .failover_permille = 500,
		.timeout_ms = timeout_ms, .resync_ms = 100000, .retry_ms = 50,
	};
	struct traffic_lb *lb = NULL;
	assert_int_equal(traffic_lb_new(&loop, &c, on_event, NULL, &lb), 0);
	return lb;
}

static void finish(struct traffic_lb *lb)
{
	traffic_lb_close(lb, on_closed, NULL);
	run_until(&closed, 0, 2000);
	assert_int_equal(closed, 1);
}

static const struct traffic_endpoint one = {
	"n1", "a", "127.0.0.1", 1, 1, TRAFFIC_HEALTHY, "r1",
};

static void test_in_step(void **state)
{
	(void)state;
	struct traffic_lb *lb = mk(1000);
	/* The peer keeps s1 at 127.0.0.1:1 in maint, so the plan always wants "state ready":
	 * the verify step sees it undone and says so. */
	assert_int_equal(traffic_lb_update(lb, &one, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_ERROR], 0, 2000);
	assert_int_equal(n_ev[TRAFFIC_EV_ERROR], 1);
	assert_string_equal(last_msg[TRAFFIC_EV_ERROR],
			    "backend web not in step after 1 commands (0 refused): 1 still to do, "
			    "first 'set server web/s1 state ready'");
	/* Retried with a backoff; the same error is not reported again. */
	run_until(&n_ev[TRAFFIC_EV_SYNCED], 0, 400);
	assert_int_equal(n_ev[TRAFFIC_EV_ERROR], 1);
	struct traffic_lb_stats st;
	traffic_lb_stats(lb, &st);
	assert_true(st.failed >= 2);
	/* An unhealthy endpoint: s1 stays in maint, nothing to send: in step. */
	struct traffic_endpoint down = one;
	down.state = TRAFFIC_UNHEALTHY;
	assert_int_equal(traffic_lb_update(lb, &down, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_SYNCED], 0, 2000);
	assert_int_equal(n_ev[TRAFFIC_EV_SYNCED], 1);
	assert_string_equal(last_msg[TRAFFIC_EV_SYNCED],
			    "backend web in step: 0 commands, 1 slots, 1 endpoints, remote serving "
			    "(failover)");	/* H = 0: failover, though nobody is remote */
	finish(lb);
}

static const char *garbage(const char *l)
{
	if (strcmp(l, "prompt") == 0)
		return "\n> ";
	return "2\nthis is not a servers state\n\n> ";
}

static void test_garbage_answer(void **state)
{
	(void)state;
	script = garbage;
	struct traffic_lb *lb = mk(1000);
	assert_int_equal(traffic_lb_update(lb, &one, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_ERROR], 0, 2000);
	assert_non_null(strstr(last_msg[TRAFFIC_EV_ERROR], "servers state: first line is not "
					 "the format version 1 but '2'"));
	finish(lb);
}

static const char *hangup(const char *l)
{
	if (strcmp(l, "prompt") == 0)
		return "\n> ";
	return NULL;
}

static void test_peer_closes(void **state)
{
	(void)state;
	script = hangup;
	struct traffic_lb *lb = mk(1000);
	assert_int_equal(traffic_lb_update(lb, &one, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_ERROR], 0, 2000);
	assert_non_null(strstr(last_msg[TRAFFIC_EV_ERROR], "closed the connection after "
					 "'show servers state web'"));
	finish(lb);
}

static const char *flood(const char *l)
{
	if (strcmp(l, "prompt") == 0)
		return "\n> ";
	return "<flood>";
}

static void test_answer_too_big(void **state)
{
	(void)state;
	script = flood;
	struct traffic_lb *lb = mk(5000);
	assert_int_equal(traffic_lb_update(lb, &one, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_ERROR], 0, 5000);
	assert_int_equal(n_ev[TRAFFIC_EV_ERROR], 1);
	assert_non_null(strstr(last_msg[TRAFFIC_EV_ERROR], "is over 8388608 bytes"));
	finish(lb);
}

static void test_close_from_callbacks(void **state)
{
	(void)state;
	/* Closed from the event reporting the plan's failover, mid-pass. */
	struct traffic_lb *lb = mk(1000);
	struct traffic_endpoint remote = one;
	remote.site = "b";
	close_on = lb;
	assert_int_equal(traffic_lb_update(lb, &remote, 1), 0);
	run_until(&n_ev[TRAFFIC_EV_FAILOVER], 0, 2000);
	assert_int_equal(n_ev[TRAFFIC_EV_FAILOVER], 1);
	assert_null(close_on);
	int seen = lines_seen;
	run_until(&closed, 0, 200);	/* let the handles close */
	assert_int_equal(lines_seen, seen);	/* no command after the close */
	assert_int_equal(n_ev[TRAFFIC_EV_SYNCED], 0);
	/* Calls after close. */
}

static int q_calls, q_err;
static void on_q(int err, uint32_t scur, const char *slot, void *ud)
{
	(void)scur;
	(void)slot;
	q_calls++;
	q_err = err;
	if (ud)
		traffic_lb_close(ud, on_closed, NULL);	/* closing twice is a no-op */
}

static void test_cancel_queries(void **state)
{
	(void)state;
	script = garbage;
	struct traffic_lb *lb = mk(1000);
	q_calls = 0;
	assert_int_equal(traffic_lb_sessions(lb, "127.0.0.1", 1, on_q, lb), 0);
	assert_int_equal(traffic_lb_sessions(lb, "127.0.0.1", 1, on_q, lb), 0);
	traffic_lb_close(lb, on_closed, NULL);
	assert_int_equal(q_calls, 2);
	assert_int_equal(q_err, -ECANCELED);
	run_until(&closed, 0, 2000);
	assert_int_equal(closed, 1);
}

static void test_bad_config(void **state)
{
	(void)state;
	struct traffic_lb *lb = (struct traffic_lb *)0x1;
	char longpath[200];
	memset(longpath, 'a', sizeof longpath);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	const char *bad[] = {
		"", longpath, "unix:", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
		"host.example:9999", "tcp:[::1]:x", "[::1:80",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct traffic_lb_config c = { .socket = bad[i], .backend = "web" };
		if (traffic_lb_new(&loop, &c, on_event, NULL, &lb) != -EINVAL)
			fail_msg("socket '%s' accepted", bad[i]);
	}
	struct traffic_lb_config c = { .socket = "/x.sock", .backend = "w b" };
	assert_int_equal(traffic_lb_new(&loop, &c, on_event, NULL, &lb), -EINVAL);
	c.backend = "web";
	c.failover_permille = 1001;
	assert_int_equal(traffic_lb_new(&loop, &c, on_event, NULL, &lb), -EINVAL);
	assert_ptr_equal(lb, (void *)0x1);
	const char *good[] = { "/run/x.sock", "unix:./rel.sock", "127.0.0.1:9999",
			       "tcp:127.0.0.1:1", "[::1]:9999" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		c.socket = good[i];
		c.failover_permille = 0;
		assert_int_equal(traffic_lb_new(&loop, &c, on_event, NULL, &lb), 0);
		/* Bad endpoints are refused at update, before any I/O. */
		struct traffic_endpoint e = one;
		e.addr = "not-an-ip";
		assert_int_equal(traffic_lb_update(lb, &e, 1), -EINVAL);
		e = one;
		e.port = 0;
		assert_int_equal(traffic_lb_update(lb, &e, 1), -EINVAL);
		assert_int_equal(traffic_lb_sessions(lb, "x", 1, on_q, NULL), -EINVAL);
		closed = 0;
		traffic_lb_close(lb, on_closed, NULL);
		assert_int_equal(traffic_lb_update(lb, &one, 1), -ESHUTDOWN);
		run_until(&closed, 0, 1000);
		assert_int_equal(closed, 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_in_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_answer_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_from_callbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
	};
	/* As agentd does (agentd_main.c): a peer that closes mid-answer makes the driver's
	 * next write fail; it must fail with EPIPE, not kill the process (seen once in 13 runs). */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
