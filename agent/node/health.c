/*
 * agent/node/health.c: the health policy state machine and the checker on libuv.
 *
 * The contract (states, rules R1-R6, the checks and their details) is in agent/node/health.h; this
 * file only explains how.
 *
 * Ownership of the asynchronous parts, in the libuv style:
 *
 *   struct health   owns one handle (t_close) that is closed last; the user's close callback
 *                   runs from that handle's close callback, once `live` (instances not yet
 *                   freed) is 0.
 *   struct hinst    one watched instance: three timers (next check, start deadline, deferred
 *                   notification) and at most one check in flight. health_stop unlinks it at
 *                   once (so a new instance of the service can start at the same moment) and
 *                   closes its timers; it is freed when its timers are closed and its check
 *                   has ended.
 *   struct hcheck   one check: a timeout timer plus a TCP handle (http, tcp) or a process and
 *                   two pipes (exec), and the requests in flight (getaddrinfo, connect,
 *                   write). `open` counts every handle not yet closed and every request whose
 *                   callback has not run yet; the check ends when it drops to 0, which is
 *                   also what keeps checks of one instance from overlapping: the next one is
 *                   scheduled only then.
 *
 * An exec check runs in its own session (UV_PROCESS_DETACHED), so its process group id is its
 * pid: the timeout kills the whole group, and when the shell exits the group is killed too, so
 * that a background child cannot keep the pipes open or outlive the check. The pipes are then
 * read to their end within a grace period (HC_GRACE_MS); a process that escaped the group and
 * holds them cannot stall the check longer than that.
 */
#include "agent/node/health.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>

#include "plugins/http.h"
#include "plugins/proc.h"

#define HC_GRACE_MS	    1000	/* after a kill / an exit: time for the pipes to end */
#define HC_DEFAULT_INTERVAL 2000
#define HC_DEFAULT_TIMEOUT  1000

/* A malloc'd formatted string; NULL on failure. *ret_len (may be NULL) gets its length. */
static char *str_printf(size_t *ret_len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *str_printf(size_t *ret_len, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (ret_len)
		*ret_len = (size_t)n;
	return s;
}

/* ---- Names -------------------------------------------------------------------------------- */

const char *health_state_name(enum health_state s)
{
	switch (s) {
	case HEALTH_STARTING:
		return "starting";
	case HEALTH_HEALTHY:
		return "healthy";
	case HEALTH_UNHEALTHY:
		return "unhealthy";
	case HEALTH_FAILED:
		return "failed";
	}
	return "unknown";
}

const char *health_miss_name(enum health_miss m)
{
	switch (m) {
	case HEALTH_MISS_NONE:
		return "none";
	case HEALTH_MISS_DEADLINE:
		return "deadline";
	case HEALTH_MISS_FAILURES:
		return "failures";
	case HEALTH_MISS_RUNTIME:
		return "runtime";
	}
	return "unknown";
}

/* Copy @src into @dst (HEALTH_DETAIL_MAX), cut to fit, non-printable bytes as '?'. */
static void detail_copy(char *dst, const char *src)
{
	size_t i = 0;

	if (src)
		for (; src[i] && i < HEALTH_DETAIL_MAX - 1; i++) {
			unsigned char ch = (unsigned char)src[i];

			dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
		}
	dst[i] = '\0';
}

static void detail_fmt(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail_fmt(char *dst, const char *fmt, ...)
{
	char buf[HEALTH_DETAIL_MAX * 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	detail_copy(dst, buf);
}

/* ---- Pure state machine ------------------------------------------------------------------- */

void health_sm_init(struct health_sm *sm, const struct store_health_policy *pol, uint64_t now_ms)
{
	memset(sm, 0, sizeof(*sm));
	sm->failures = (pol && pol->failures) ? pol->failures : 1;
	sm->deadline_ms = pol ? pol->deadline_ms : 0;
	sm->has_check = pol && (pol->http || pol->tcp || pol->exec);
	sm->last_ms = now_ms;
	sm->st.state = HEALTH_STARTING;
	sm->st.since_ms = now_ms;
	sm->st.started_ms = now_ms;
	sm->st.runtime = PLUGIN_STARTING;
}

/* The time of an input: never before the latest one seen. */
static uint64_t sm_clock(struct health_sm *sm, uint64_t now_ms)
{
	if (now_ms < sm->last_ms)
		now_ms = sm->last_ms;
	sm->last_ms = now_ms;
	return now_ms;
}

static void sm_set(struct health_sm *sm, enum health_state s, uint64_t at, const char *detail)
{
	sm->st.state = s;
	sm->st.since_ms = at;
	detail_copy(sm->st.detail, detail);
}

static void sm_miss(struct health_sm *sm, enum health_miss why, uint64_t at)
{
	if (sm->st.missed)
		return;
	sm->st.missed = true;
	sm->st.miss_reason = why;
	sm->st.missed_ms = at;
}

uint64_t health_sm_deadline(const struct health_sm *sm)
{
	if (sm->st.state != HEALTH_STARTING || sm->deadline_ms == 0)
		return UINT64_MAX;
	return sm->st.started_ms + sm->deadline_ms;
}

/* R1 at @now (already through sm_clock). */
static bool sm_deadline(struct health_sm *sm, uint64_t now)
{
	uint64_t at = health_sm_deadline(sm);
	char buf[HEALTH_DETAIL_MAX * 2];

	if (at == UINT64_MAX || now < at)
		return false;
	/* The state changed when the deadline passed, not when someone noticed; but never before
	 * the current state began (R5 can re-enter `starting` after the deadline). */
	if (at < sm->st.since_ms)
		at = now;
	if (sm->st.last_check[0])
		snprintf(buf, sizeof(buf), "not healthy within %" PRIu32 " ms (last check: %s)",
			 sm->deadline_ms, sm->st.last_check);
	else
		snprintf(buf, sizeof(buf), "not healthy within %" PRIu32 " ms", sm->deadline_ms);
	sm_set(sm, HEALTH_UNHEALTHY, at, buf);
	sm_miss(sm, HEALTH_MISS_DEADLINE, at);
	return true;
}

bool health_sm_tick(struct health_sm *sm, uint64_t now_ms)
{
	return sm_deadline(sm, sm_clock(sm, now_ms));
}

/* R2/R3 at @now (already through sm_clock). */
static bool sm_result(struct health_sm *sm, uint64_t now, bool ok, const char *detail)
{
	char buf[HEALTH_DETAIL_MAX * 2];

	detail_copy(sm->st.last_check, detail);
	sm->st.checks++;
	if (ok) {
		sm->st.streak = 0;
		if (sm->st.state != HEALTH_STARTING && sm->st.state != HEALTH_UNHEALTHY)
			return false;
		snprintf(buf, sizeof(buf), "check passed: %s", sm->st.last_check);
		sm_set(sm, HEALTH_HEALTHY, now, buf);
		return true;
	}
	sm->st.checks_failed++;
	if (sm->st.streak < UINT32_MAX)
		sm->st.streak++;
	if (sm->st.streak < sm->failures)
		return false;
	if (sm->st.state != HEALTH_HEALTHY &&
	    !(sm->st.state == HEALTH_STARTING && sm->deadline_ms == 0))
		return false;
	snprintf(buf, sizeof(buf), "%" PRIu32 " failed checks in a row: %s", sm->st.streak,
		 sm->st.last_check);
	sm_set(sm, HEALTH_UNHEALTHY, now, buf);
	sm_miss(sm, HEALTH_MISS_FAILURES, now);
	return true;
}

bool health_sm_check(struct health_sm *sm, uint64_t now_ms, bool ok, const char *detail)
{
	uint64_t now = sm_clock(sm, now_ms);
	bool changed = sm_deadline(sm, now);

	return sm_result(sm, now, ok, detail ? detail : "") || changed;
}

bool health_sm_runtime(struct health_sm *sm, uint64_t now_ms, enum plugin_state state,
		       uint32_t restarts, const char *detail)
{
	uint64_t now = sm_clock(sm, now_ms);
	bool changed = sm_deadline(sm, now);
	char buf[HEALTH_DETAIL_MAX * 2];

	if (!detail)
		detail = "";
	sm->st.runtime = state;
	sm->st.restarts = restarts;
	switch (state) {
	case PLUGIN_FAILED:	/* R4 */
		if (sm->st.state == HEALTH_FAILED)
			break;
		snprintf(buf, sizeof(buf), "runtime failed (%" PRIu32 " restarts): %s", restarts,
			 detail);
		sm_set(sm, HEALTH_FAILED, now, buf);
		sm_miss(sm, HEALTH_MISS_RUNTIME, now);
		changed = true;
		break;
	case PLUGIN_RUNNING:
	case PLUGIN_STARTING:
		if (sm->st.state == HEALTH_FAILED) {	/* R5 */
			snprintf(buf, sizeof(buf), "runtime %s again: %s", plugin_state_name(state),
				 detail);
			sm_set(sm, HEALTH_STARTING, now, buf);
			sm->st.streak = 0;
			sm_deadline(sm, now);
			changed = true;
		}
		if (!sm->has_check && state == PLUGIN_RUNNING) {	/* R6 */
			snprintf(buf, sizeof(buf), "runtime running: %s", detail);
			changed |= sm_result(sm, now, true, buf);
		}
		break;
	case PLUGIN_RESTARTING:
	case PLUGIN_STOPPED:
		if (!sm->has_check) {	/* R6 */
			snprintf(buf, sizeof(buf), "runtime %s: %s", plugin_state_name(state), detail);
			changed |= sm_result(sm, now, false, buf);
		}
		break;
	}
	return changed;
}

/* ---- Address parsing ------------------------------------------------------------------------ */

/* A port: 1..65535 in decimal, no sign. */
static int parse_port(const char *p, size_t n, uint16_t *ret)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*ret = (uint16_t)v;
	return 0;
}

/*
 * HOST[:PORT] or [V6][:PORT] in @s[0..n). @defport 0: the port is required. A host name may
 * hold anything but whitespace, control bytes and URL delimiters; getaddrinfo judges it.
 */
static int parse_authority(const char *s, size_t n, uint16_t defport, struct health__addr *a)
{
	const char *host, *port = NULL;
	size_t hlen, plen = 0;

	if (n == 0 || n >= sizeof(a->authority))
		return -EINVAL;
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (!rb || rb == s + 1)
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(rb - host);
		if (strspn(host, "0123456789abcdefABCDEF:.") < hlen)
			return -EINVAL;
		if (rb + 1 < s + n) {
			if (rb[1] != ':')
				return -EINVAL;
			port = rb + 2;
			plen = (size_t)(s + n - port);
		}
	} else {
		const char *colon = memchr(s, ':', n);

		host = s;
		hlen = colon ? (size_t)(colon - s) : n;
		if (colon) {
			port = colon + 1;
			plen = (size_t)(s + n - port);
		}
		if (hlen == 0)
			return -EINVAL;
		for (size_t i = 0; i < hlen; i++) {
			unsigned char ch = (unsigned char)host[i];

			if (ch <= 0x20 || ch >= 0x7f || strchr("@[]/?#\\:%", ch))
				return -EINVAL;
		}
	}
	if (hlen >= sizeof(a->host))
		return -EINVAL;
	if (port) {
		if (parse_port(port, plen, &a->port) < 0)
			return -EINVAL;
	} else if (defport) {
		a->port = defport;
	} else {
		return -EINVAL;
	}
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	memcpy(a->authority, s, n);
	a->authority[n] = '\0';
	return 0;
}

int health__parse_url(const char *url, struct health__addr *ret)
{
	static const char pfx[] = "http://";
	struct health__addr a;
	const char *auth, *rest;
	size_t alen, rlen;

	if (!url || !ret || strncmp(url, pfx, sizeof(pfx) - 1) != 0)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	auth = url + sizeof(pfx) - 1;
	alen = strcspn(auth, "/?#");
	if (parse_authority(auth, alen, 80, &a) < 0)
		return -EINVAL;
	rest = auth + alen;
	rlen = strcspn(rest, "#");	/* a fragment is never sent */
	for (size_t i = 0; i < rlen; i++) {
		unsigned char ch = (unsigned char)rest[i];

		if (ch <= 0x20 || ch >= 0x7f)
			return -EINVAL;
	}
	if (rlen == 0 || rest[0] == '?') {
		if (rlen + 2 > sizeof(a.target))
			return -EINVAL;
		a.target[0] = '/';
		memcpy(a.target + 1, rest, rlen);
		a.target[rlen + 1] = '\0';
	} else {
		if (rlen + 1 > sizeof(a.target))
			return -EINVAL;
		memcpy(a.target, rest, rlen);
		a.target[rlen] = '\0';
	}
	/* Anything after the fragment is the fragment's; but a second '#' or a space there would
	 * be a typo worth refusing rather than silently ignoring. */
	if (rest[rlen] == '#')
		for (const char *p = rest + rlen + 1; *p; p++)
			if ((unsigned char)*p <= 0x20 || *p == '#' || (unsigned char)*p >= 0x7f)
				return -EINVAL;
	*ret = a;
	return 0;
}

int health__parse_hostport(const char *s, struct health__addr *ret)
{
	struct health__addr a;

	if (!s || !ret)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	if (parse_authority(s, strlen(s), 0, &a) < 0)
		return -EINVAL;
	*ret = a;
	return 0;
}

/* ---- Checker: structures ------------------------------------------------------------------ */

enum hk_kind { HK_NONE, HK_HTTP, HK_TCP, HK_EXEC };

struct hinst;

struct hcheck {
	struct hinst *in;
	enum hk_kind kind;
	int open;		/* handles not closed + requests whose callback is pending */
	bool decided;		/* http/tcp: result known (then everything is being closed) */
	bool ok;
	bool aborted;		/* the instance was stopped: the result is dropped */
	char detail[HEALTH_DETAIL_MAX];
	uv_timer_t t;		/* the timeout (exec: then the grace period) */

	/* http, tcp */
	bool has_tcp, gai_pending;
	uv_getaddrinfo_t gai;
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	char peer[INET6_ADDRSTRLEN + 8];
	char *req;
	struct http_parser hp;
	bool hp_init;
	char rbuf[4096];

	/* exec */
	bool spawned, exited, killed, timed_out;
	int spawn_err;
	int64_t exit_status;
	int term_signal;
	int pid;
	uv_process_t proc;
	uv_pipe_t pipes[2];	/* stdout, stderr */
	bool pipe_closed[2];
	char line[2][HEALTH_DETAIL_MAX];
	size_t line_len[2];
	bool line_done[2];
	char pbuf[2][1024];
};

struct hinst {
	struct health *h;
	struct hinst *next;	/* in h->insts while watched */
	char *service;
	uint64_t rev;
	char *dir;
	char *command;
	char artifact[STORE_ID_HEXLEN + 1];
	enum hk_kind kind;
	struct health__addr addr;
	uint32_t interval_ms, timeout_ms;
	struct health_sm sm;
	uv_timer_t t_next, t_deadline, t_notify;
	int open;		/* instance timers not yet closed */
	bool stopped;
	bool notify_pending;
	struct hcheck *chk;
	uint64_t chk_started;
};

struct health {
	uv_loop_t *loop;
	struct health_config cfg;
	struct hinst *insts;
	size_t live;		/* instances not freed yet (watched or being released) */
	uv_timer_t t_close;
	bool closing, close_started;
	health_close_cb close_cb;
	void *close_ud;
};

static void check_start(struct hinst *in);
static void check_abort(struct hcheck *c);
static void inst_schedule(struct hinst *in);

/* ---- Instances ---------------------------------------------------------------------------- */

static void health_maybe_closed(struct health *h);

static void inst_free(struct hinst *in)
{
	struct health *h = in->h;

	free(in->service);
	free(in->dir);
	free(in->command);
	free(in);
	h->live--;
	health_maybe_closed(h);
}

static void inst_maybe_free(struct hinst *in)
{
	if (in->stopped && in->open == 0 && !in->chk)
		inst_free(in);
}

static void inst_timer_closed(uv_handle_t *t)
{
	struct hinst *in = t->data;

	in->open--;
	inst_maybe_free(in);
}

static struct hinst *inst_find(struct health *h, const char *service)
{
	for (struct hinst *in = h->insts; in; in = in->next)
		if (strcmp(in->service, service) == 0)
			return in;
	return NULL;
}

static void inst_stop(struct hinst *in)
{
	struct health *h = in->h;

	for (struct hinst **pp = &h->insts; *pp; pp = &(*pp)->next)
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	in->next = NULL;
	in->stopped = true;
	uv_close((uv_handle_t *)&in->t_next, inst_timer_closed);
	uv_close((uv_handle_t *)&in->t_deadline, inst_timer_closed);
	uv_close((uv_handle_t *)&in->t_notify, inst_timer_closed);
	if (in->chk)
		check_abort(in->chk);
}

/* Report the current status now (we are in a loop callback). */
static void inst_notify(struct hinst *in)
{
	struct health_status st = in->sm.st;	/* the callback may feed the machine */

	if (in->stopped)
		return;
	in->notify_pending = false;
	uv_timer_stop(&in->t_notify);
	in->h->cfg.on_change(in->h->cfg.ud, in->service, in->rev, &st);
}

/* Report from the loop, later (the change came from inside a health_* call). */
static void inst_notify_later_cb(uv_timer_t *t)
{
	struct hinst *in = t->data;

	if (in->notify_pending)
		inst_notify(in);
}

static void inst_notify_later(struct hinst *in)
{
	in->notify_pending = true;
	uv_timer_start(&in->t_notify, inst_notify_later_cb, 0, 0);
}

static void inst_deadline_cb(uv_timer_t *t)
{
	struct hinst *in = t->data;

	if (health_sm_tick(&in->sm, uv_now(in->h->loop)))
		inst_notify(in);
}

static void inst_next_cb(uv_timer_t *t)
{
	struct hinst *in = t->data;

	if (!in->chk && in->kind != HK_NONE)
		check_start(in);
}

/* Arm the next check: interval after the previous one started, or now if that is past. */
static void inst_schedule(struct hinst *in)
{
	uint64_t now = uv_now(in->h->loop), at = in->chk_started + in->interval_ms;

	if (in->stopped || in->kind == HK_NONE)
		return;
	uv_timer_start(&in->t_next, inst_next_cb, at > now ? at - now : 0, 0);
}

/* The check ended: every handle closed, every request called back. */
static void check_finished(struct hcheck *c)
{
	struct hinst *in = c->in;
	bool ok = c->ok;
	char detail[HEALTH_DETAIL_MAX];

	if (c->kind == HK_EXEC) {
		/* The first line: of stderr for a failure, of stdout for a pass, else the other. */
		int first;
		const char *line;

		ok = !c->spawn_err && !c->timed_out && !c->term_signal && c->exit_status == 0;
		first = ok ? 0 : 1;
		line = c->line_len[first] ? c->line[first] : c->line[!first];
		if (c->spawn_err)
			detail_fmt(detail, "spawn /bin/sh: %s", uv_strerror(c->spawn_err));
		else if (c->timed_out)
			detail_fmt(detail, "timed out after %" PRIu32 " ms (killed)%s%s",
				   in->timeout_ms, *line ? ": " : "", line);
		else if (c->term_signal)
			detail_fmt(detail, "killed by signal %d%s%s", c->term_signal,
				   *line ? ": " : "", line);
		else
			detail_fmt(detail, "exit %" PRId64 "%s%s", c->exit_status, *line ? ": " : "",
				   line);
	} else {
		detail_copy(detail, c->detail);
	}
	if (c->hp_init)
		http_parser_release(&c->hp);
	free(c->req);
	free(c);
	in->chk = NULL;
	if (in->stopped) {
		inst_maybe_free(in);
		return;
	}
	if (health_sm_check(&in->sm, uv_now(in->h->loop), ok, detail))
		inst_notify(in);
	inst_schedule(in);	/* no-op if the callback stopped the instance */
}

static void check_maybe_finished(struct hcheck *c)
{
	if (c->open == 0)
		check_finished(c);
}

static void check_handle_closed(uv_handle_t *hd)
{
	struct hcheck *c = hd->data;

	c->open--;
	check_maybe_finished(c);
}

static void check_close(struct hcheck *c, uv_handle_t *hd)
{
	if (!uv_is_closing(hd))
		uv_close(hd, check_handle_closed);
}

/* ---- http and tcp checks ------------------------------------------------------------------ */

/* The result of a network check is known: record it and release everything. */
static void net_decide(struct hcheck *c, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void net_decide(struct hcheck *c, bool ok, const char *fmt, ...)
{
	char buf[HEALTH_DETAIL_MAX * 2];
	va_list ap;

	if (c->decided)
		return;
	c->decided = true;
	c->ok = ok;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	detail_copy(c->detail, buf);
	check_close(c, (uv_handle_t *)&c->t);
	if (c->has_tcp)
		check_close(c, (uv_handle_t *)&c->tcp);
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);	/* if already running, its callback ends it */
}

/* The first line of an HTTP body, for the detail. */
static void body_line(const struct http_parser *hp, char *out, size_t cap)
{
	size_t n = 0;

	if (hp->body)
		while (n < hp->body_len && n + 1 < cap && hp->body[n] != '\n' &&
		       hp->body[n] != '\r') {
			out[n] = (char)hp->body[n];
			n++;
		}
	out[n] = '\0';
}

static void http_done(struct hcheck *c)
{
	char line[HEALTH_DETAIL_MAX];
	int st = c->hp.status;

	body_line(&c->hp, line, sizeof(line));
	net_decide(c, st >= 200 && st <= 399, "HTTP %d%s%s", st, *line ? ": " : "", line);
}

static void http_alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	struct hcheck *c = hd->data;

	*buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void http_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct hcheck *c = s->data;
	int r;

	if (c->decided)
		return;
	if (nread > 0) {
		r = http_parser_feed(&c->hp, buf->base, (size_t)nread, NULL);
		if (r == 1)
			http_done(c);
		else if (r == -EFBIG)
			net_decide(c, false, "bad response: body over %d bytes",
				   HEALTH_HTTP_MAX_BODY);
		else if (r < 0)
			net_decide(c, false, "bad response: %s", strerror(-r));
	} else if (nread == UV_EOF) {
		r = http_parser_eof(&c->hp);
		if (r == 1)
			http_done(c);
		else if (r == -ECONNRESET)
			net_decide(c, false, "connection closed before a complete response");
		else
			net_decide(c, false, "bad response: %s", strerror(-r));
	} else if (nread < 0) {
		net_decide(c, false, "recv from %s: %s", c->peer, uv_strerror((int)nread));
	}
}

static void http_write_cb(uv_write_t *wr, int status)
{
	struct hcheck *c = wr->data;

	c->open--;
	if (status < 0 && status != UV_ECANCELED)
		net_decide(c, false, "send to %s: %s", c->peer, uv_strerror(status));
	check_maybe_finished(c);
}

static void net_connect_cb(uv_connect_t *req, int status)
{
	struct hcheck *c = req->data;
	struct hinst *in = c->in;
	uv_buf_t b;
	size_t len = 0;
	int r;

	c->open--;
	if (c->decided || status == UV_ECANCELED)
		goto out;
	if (status < 0) {
		net_decide(c, false, "connect %s: %s", c->peer, uv_strerror(status));
		goto out;
	}
	if (c->kind == HK_TCP) {
		net_decide(c, true, "connected to %s", c->peer);
		goto out;
	}
	http_parser_init(&c->hp, HEALTH_HTTP_MAX_BODY, false);
	c->hp_init = true;
	c->req = str_printf(&len,
			    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal-health/" SHOAL_VERSION
			    "\r\nAccept: */*\r\nConnection: close\r\n\r\n",
			    in->addr.target, in->addr.authority);
	if (!c->req) {
		net_decide(c, false, "out of memory");
		goto out;
	}
	b = uv_buf_init(c->req, (unsigned)len);
	c->wr.data = c;
	r = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, http_write_cb);
	if (r < 0) {
		net_decide(c, false, "send to %s: %s", c->peer, uv_strerror(r));
		goto out;
	}
	c->open++;
	r = uv_read_start((uv_stream_t *)&c->tcp, http_alloc_cb, http_read_cb);
	if (r < 0)
		net_decide(c, false, "recv from %s: %s", c->peer, uv_strerror(r));
out:
	check_maybe_finished(c);
}

static void net_connect(struct hcheck *c, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN] = "";
	int r;

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, c->in->addr.port);
	} else {
		uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, c->in->addr.port);
	}
	r = uv_tcp_init(c->in->h->loop, &c->tcp);
	if (r < 0) {
		net_decide(c, false, "socket: %s", uv_strerror(r));
		return;
	}
	c->tcp.data = c;
	c->has_tcp = true;
	c->open++;
	c->conn.data = c;
	r = uv_tcp_connect(&c->conn, &c->tcp, sa, net_connect_cb);
	if (r < 0) {
		net_decide(c, false, "connect %s: %s", c->peer, uv_strerror(r));
		return;
	}
	c->open++;
}

static void net_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct hcheck *c = req->data;
	struct sockaddr_storage ss;

	c->open--;
	c->gai_pending = false;
	if (!c->decided) {
		if (status < 0 || !res) {
			net_decide(c, false, "resolve %s: %s", c->in->addr.host,
				   uv_strerror(status < 0 ? status : UV_EAI_NONAME));
		} else {
			memset(&ss, 0, sizeof(ss));
			memcpy(&ss, res->ai_addr, res->ai_addrlen <= sizeof(ss) ? res->ai_addrlen
										  : sizeof(ss));
			if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->in->addr.port);
			else
				((struct sockaddr_in *)&ss)->sin_port = htons(c->in->addr.port);
			net_connect(c, (struct sockaddr *)&ss);
		}
	}
	uv_freeaddrinfo(res);
	check_maybe_finished(c);
}

static void net_timeout_cb(uv_timer_t *t)
{
	struct hcheck *c = t->data;

	net_decide(c, false, "timed out after %" PRIu32 " ms", c->in->timeout_ms);
}

static void net_start(struct hcheck *c)
{
	struct hinst *in = c->in;
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	struct addrinfo hints;
	int r;

	uv_timer_start(&c->t, net_timeout_cb, in->timeout_ms, 0);
	if (uv_ip4_addr(in->addr.host, in->addr.port, &s4) == 0) {
		net_connect(c, (struct sockaddr *)&s4);
		return;
	}
	if (uv_ip6_addr(in->addr.host, in->addr.port, &s6) == 0) {
		net_connect(c, (struct sockaddr *)&s6);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	c->gai.data = c;
	r = uv_getaddrinfo(in->h->loop, &c->gai, net_gai_cb, in->addr.host, NULL, &hints);
	if (r < 0) {
		net_decide(c, false, "resolve %s: %s", in->addr.host, uv_strerror(r));
		return;
	}
	c->open++;
	c->gai_pending = true;
}

/* ---- exec checks -------------------------------------------------------------------------- */

static void exec_timer_cb(uv_timer_t *t);

/* Kill the check's whole process group (its pgid is its pid: it runs in its own session). */
static void exec_kill(struct hcheck *c)
{
	c->killed = true;
	if (c->pid > 0)
		kill(-c->pid, SIGKILL);
	if (!c->exited)
		uv_process_kill(&c->proc, SIGKILL);
}

static void exec_close_pipe(struct hcheck *c, int i)
{
	if (c->pipe_closed[i])
		return;
	c->pipe_closed[i] = true;
	check_close(c, (uv_handle_t *)&c->pipes[i]);
}

/* Once the process is gone and both pipes ended, the check is over. */
static void exec_maybe_done(struct hcheck *c)
{
	if (c->exited && c->pipe_closed[0] && c->pipe_closed[1])
		check_close(c, (uv_handle_t *)&c->t);
}

static void exec_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct hcheck *c = p->data;

	c->exited = true;
	c->exit_status = exit_status;
	c->term_signal = term_signal;
	/* Whatever the shell left in its group (a background child) dies with the check. The
	 * group id cannot have been reused while a member of the group lives. */
	kill(-c->pid, SIGKILL);
	check_close(c, (uv_handle_t *)p);
	/* The pipes end as soon as the group is gone; bound the wait for a process that left
	 * the group but holds them. */
	uv_timer_start(&c->t, exec_timer_cb, HC_GRACE_MS, 0);
	exec_maybe_done(c);
}

static void exec_timer_cb(uv_timer_t *t)
{
	struct hcheck *c = t->data;

	if (!c->exited) {
		if (!c->killed) {
			c->timed_out = !c->aborted;
			exec_kill(c);
		}
		/* Wait for the exit (SIGKILL cannot be ignored); check again later. */
		uv_timer_start(&c->t, exec_timer_cb, HC_GRACE_MS, 0);
		return;
	}
	exec_close_pipe(c, 0);
	exec_close_pipe(c, 1);
	exec_maybe_done(c);
}

static void exec_alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	struct hcheck *c = hd->data;
	int i = hd == (uv_handle_t *)&c->pipes[0] ? 0 : 1;

	*buf = uv_buf_init(c->pbuf[i], sizeof(c->pbuf[i]));
}

/* Keep the first non-empty line of pipe @i; drop the rest. */
static void exec_capture(struct hcheck *c, int i, const char *p, size_t n)
{
	for (size_t k = 0; k < n && !c->line_done[i]; k++) {
		unsigned char ch = (unsigned char)p[k];

		if (ch == '\n') {
			c->line_done[i] = c->line_len[i] > 0;
			continue;
		}
		if (ch == '\r')
			continue;
		if (c->line_len[i] + 1 >= sizeof(c->line[i])) {
			c->line_done[i] = true;
			break;
		}
		c->line[i][c->line_len[i]++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
		c->line[i][c->line_len[i]] = '\0';
	}
}

static void exec_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct hcheck *c = s->data;
	int i = s == (uv_stream_t *)&c->pipes[0] ? 0 : 1;

	if (nread > 0) {
		exec_capture(c, i, buf->base, (size_t)nread);
	} else if (nread < 0) {	/* UV_EOF or an error: either way, this pipe is done */
		exec_close_pipe(c, i);
		exec_maybe_done(c);
	}
}

static void exec_start(struct hcheck *c)
{
	struct hinst *in = c->in;
	uv_loop_t *loop = in->h->loop;
	char **env;
	int r;

	uv_timer_start(&c->t, exec_timer_cb, in->timeout_ms, 0);
	for (int i = 0; i < 2; i++) {
		uv_pipe_init(loop, &c->pipes[i], 0);
		c->pipes[i].data = c;
		c->open++;
	}
	c->proc.data = c;
	env = proc_env_new(in->service, in->rev, in->artifact, in->dir);
	r = env ? proc_spawn_sh(loop, &c->proc, exec_exit_cb, in->command, in->dir, env, c->pipes)
		: UV_ENOMEM;
	if (env)
		proc_env_free(env);
	if (r < 0) {
		c->spawn_err = r;
		c->exited = true;
		if (env) {	/* libuv: a failed spawn still needs its handle closed */
			c->open++;
			check_close(c, (uv_handle_t *)&c->proc);
		}
		exec_close_pipe(c, 0);
		exec_close_pipe(c, 1);
		exec_maybe_done(c);
		return;
	}
	c->open++;
	c->spawned = true;
	c->pid = c->proc.pid;
	for (int i = 0; i < 2; i++)
		if (uv_read_start((uv_stream_t *)&c->pipes[i], exec_alloc_cb, exec_read_cb) < 0)
			exec_close_pipe(c, i);
}

/* ---- Checks: start and abort -------------------------------------------------------------- */

static void check_start(struct hinst *in)
{
	struct hcheck *c = calloc(1, sizeof(*c));

	in->chk_started = uv_now(in->h->loop);
	if (!c) {
		/* Out of memory is not the service's fault: no result, try again next interval. */
		inst_schedule(in);
		return;
	}
	c->in = in;
	c->kind = in->kind;
	uv_timer_init(in->h->loop, &c->t);
	c->t.data = c;
	c->open = 1;
	in->chk = c;
	if (c->kind == HK_EXEC)
		exec_start(c);
	else
		net_start(c);
	check_maybe_finished(c);	/* a check that failed at once may be over already */
}

static void check_abort(struct hcheck *c)
{
	c->aborted = true;
	if (c->kind != HK_EXEC) {
		net_decide(c, false, "aborted");
		return;
	}
	if (!c->exited) {
		if (!c->killed)
			exec_kill(c);
		uv_timer_start(&c->t, exec_timer_cb, HC_GRACE_MS, 0);
	} else {
		exec_close_pipe(c, 0);
		exec_close_pipe(c, 1);
		exec_maybe_done(c);
	}
}

/* ---- Public checker API ------------------------------------------------------------------- */

static void ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
	    !(sa.sa_flags & SA_SIGINFO)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

int health_new(uv_loop_t *loop, const struct health_config *cfg, struct health **ret)
{
	struct health *h;

	if (!loop || !cfg || !cfg->on_change || !ret)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->cfg = *cfg;
	uv_timer_init(loop, &h->t_close);
	h->t_close.data = h;
	ignore_sigpipe();
	*ret = h;
	return 0;
}

int health_start(struct health *h, const struct health_target *t)
{
	const struct store_health_policy *pol;
	struct hinst *in, *old;
	int nkinds;

	if (!h || !t || !t->service || !t->policy)
		return -EINVAL;
	if (h->closing)
		return -ESHUTDOWN;
	pol = t->policy;
	if (!*t->service || strlen(t->service) > 255)
		return -EINVAL;
	nkinds = !!pol->http + !!pol->tcp + !!pol->exec;
	if (nkinds > 1 || (pol->exec && (!t->dir || !*pol->exec)))
		return -EINVAL;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->h = h;
	in->rev = t->rev;
	in->interval_ms = pol->interval_ms ? pol->interval_ms : HC_DEFAULT_INTERVAL;
	in->timeout_ms = pol->timeout_ms ? pol->timeout_ms : HC_DEFAULT_TIMEOUT;
	if (t->artifact)
		store_id_hex(t->artifact, in->artifact);
	if (pol->http) {
		in->kind = HK_HTTP;
		if (health__parse_url(pol->http, &in->addr) < 0)
			goto einval;
	} else if (pol->tcp) {
		in->kind = HK_TCP;
		if (health__parse_hostport(pol->tcp, &in->addr) < 0)
			goto einval;
	} else if (pol->exec) {
		in->kind = HK_EXEC;
		in->command = strdup(pol->exec);
		if (!in->command)
			goto enomem;
	}
	in->service = strdup(t->service);
	in->dir = strdup(t->dir ? t->dir : "/");
	if (!in->service || !in->dir)
		goto enomem;

	old = inst_find(h, t->service);
	if (old)
		inst_stop(old);
	health_sm_init(&in->sm, pol, uv_now(h->loop));
	uv_timer_init(h->loop, &in->t_next);
	uv_timer_init(h->loop, &in->t_deadline);
	uv_timer_init(h->loop, &in->t_notify);
	in->t_next.data = in->t_deadline.data = in->t_notify.data = in;
	in->open = 3;
	in->next = h->insts;
	h->insts = in;
	h->live++;
	in->chk_started = uv_now(h->loop);
	inst_schedule(in);
	if (health_sm_deadline(&in->sm) != UINT64_MAX)
		uv_timer_start(&in->t_deadline, inst_deadline_cb, in->sm.deadline_ms, 0);
	return 0;
einval:
	free(in->command);
	free(in);
	return -EINVAL;
enomem:
	free(in->service);
	free(in->dir);
	free(in->command);
	free(in);
	return -ENOMEM;
}

int health_stop(struct health *h, const char *service)
{
	struct hinst *in;

	if (!h || !service)
		return -EINVAL;
	in = inst_find(h, service);
	if (!in)
		return -ENOENT;
	inst_stop(in);
	return 0;
}

int health_runtime(struct health *h, const char *service, const struct plugin_status *st)
{
	struct hinst *in;

	if (!h || !service || !st)
		return -EINVAL;
	in = inst_find(h, service);
	if (!in)
		return -ENOENT;
	if (st->rev && st->rev != in->rev)
		return -ESTALE;
	if (!health_sm_runtime(&in->sm, uv_now(h->loop), st->state, st->restarts, st->detail))
		return 0;
	inst_notify_later(in);
	return 1;
}

int health_get(struct health *h, const char *service, uint64_t *ret_rev,
	       struct health_status *ret_st)
{
	struct hinst *in;

	if (!h || !service || !ret_st)
		return -EINVAL;
	in = inst_find(h, service);
	if (!in)
		return -ENOENT;
	if (health_sm_tick(&in->sm, uv_now(h->loop)))
		inst_notify_later(in);	/* the deadline timer will find nothing left to do */
	*ret_st = in->sm.st;
	if (ret_rev)
		*ret_rev = in->rev;
	return 0;
}

static void health_closed_cb(uv_handle_t *hd)
{
	struct health *h = hd->data;

	if (h->close_cb)
		h->close_cb(h, h->close_ud);
	free(h);
}

static void health_maybe_closed(struct health *h)
{
	if (!h->closing || h->live || h->close_started)
		return;
	h->close_started = true;
	uv_close((uv_handle_t *)&h->t_close, health_closed_cb);
}

void health_close(struct health *h, health_close_cb cb, void *ud)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	h->close_cb = cb;
	h->close_ud = ud;
	while (h->insts)
		inst_stop(h->insts);
	health_maybe_closed(h);
}
