/*
 * agent/daemon/catalog.c: the read API for load balancers (see catalog.h).
 *
 * Each connection (agent/daemon/http_serve.h does the socket side: accept, limits, timers,
 * reading the head, writing, closing): parse -> answer now, or PARK (a long-poll:
 * http_conn_wait for the request's wait) -> answer at the next catalog change or at the end of
 * the wait.
 */
#include "agent/daemon/catalog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/base/log.h"
#include "agent/daemon/agent.h"
#include "agent/daemon/http_serve.h"
#include "agent/fleet/endpoints.h"
#include "agent/fleet/fleet.h"

/* ---- Request parsing (pure) ------------------------------------------------------------------ */

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return status;
}

size_t catalog_head_len(const char *buf, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
			return i + 4;
	return 0;
}

static bool tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A decimal u64 of @n bytes, no sign, no leading zero (but "0"). */
static bool parse_u64(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*ret = v;
	return true;
}

/* "500ms", "30s", "5m": milliseconds. */
static bool parse_wait(const char *s, size_t n, uint64_t *ret)
{
	size_t d = 0;
	uint64_t v, mul;
	while (d < n && s[d] >= '0' && s[d] <= '9')
		d++;
	if (d == 0 || d > 9 || !parse_u64(s, d, &v))
		return false;
	if (n - d == 2 && memcmp(s + d, "ms", 2) == 0)
		mul = 1;
	else if (n - d == 1 && s[d] == 's')
		mul = 1000;
	else if (n - d == 1 && s[d] == 'm')
		mul = 60000;
	else
		return false;
	*ret = v * mul;
	return true;
}

static int parse_query(const char *q, size_t n, struct catalog_req *r, char *err, size_t errlen)
{
	bool seen_wait = false;
	const char *p = q, *end = q + n;
	if (n == 0)
		return fail(err, errlen, 400, "empty query string");
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		if (!eq || eq == p || eq + 1 == pe)
			return fail(err, errlen, 400, "query parameters must be KEY=VALUE");
		size_t kl = (size_t)(eq - p), vl = (size_t)(pe - eq - 1);
		if (kl == 5 && memcmp(p, "index", 5) == 0) {
			if (r->has_index)
				return fail(err, errlen, 400, "index given twice");
			if (!parse_u64(eq + 1, vl, &r->index))
				return fail(err, errlen, 400, "index must be a decimal number");
			r->has_index = true;
		} else if (kl == 4 && memcmp(p, "wait", 4) == 0) {
			if (seen_wait)
				return fail(err, errlen, 400, "wait given twice");
			if (!parse_wait(eq + 1, vl, &r->wait_ms))
				return fail(err, errlen, 400, "wait must be a duration: 500ms, 30s, 5m");
			if (r->wait_ms > CATALOG_WAIT_MAX)
				return fail(err, errlen, 400, "wait is at most 5m");
			seen_wait = true;
		} else {
			return fail(err, errlen, 400, "unknown query parameter (index, wait)");
		}
		if (!amp)
			break;
		p = amp + 1;
		if (p == end)
			return fail(err, errlen, 400, "empty query parameter");
	}
	return 0;
}

int catalog_parse_request(const char *buf, size_t len, struct catalog_req *ret, char *err,
			  size_t errlen)
{
	struct catalog_req r;
	const char *p, *end, *eol, *sp;
	size_t hl;
	int st;

	if (err && errlen)
		err[0] = 0;
	if (!buf || !ret)
		return fail(err, errlen, 400, "no request");
	if (len > CATALOG_HEAD_MAX)
		return fail(err, errlen, 431, "request head over %d bytes", CATALOG_HEAD_MAX);
	hl = catalog_head_len(buf, len);
	if (!hl)
		return fail(err, errlen, 400, "incomplete request head");
	if (hl != len)
		return fail(err, errlen, 400, "a request body is not accepted");
	memset(&r, 0, sizeof r);
	r.wait_ms = CATALOG_WAIT_DEFAULT;
	end = buf + hl - 2;	/* the final CRLF */

	/* request line: METHOD SP TARGET SP VERSION CRLF */
	eol = memchr(buf, '\r', (size_t)(end - buf));
	if (!eol || eol[1] != '\n')
		return fail(err, errlen, 400, "malformed request line");
	sp = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp || sp == buf)
		return fail(err, errlen, 400, "malformed request line");
	for (p = buf; p < sp; p++)
		if (!tchar((unsigned char)*p))
			return fail(err, errlen, 400, "malformed method");
	bool get = sp - buf == 3 && memcmp(buf, "GET", 3) == 0;
	const char *target = sp + 1;
	sp = memchr(target, ' ', (size_t)(eol - target));
	if (!sp || sp == target)
		return fail(err, errlen, 400, "malformed request line");
	size_t tl = (size_t)(sp - target);
	const char *ver = sp + 1;
	size_t vl = (size_t)(eol - ver);
	if (vl != 8 || (memcmp(ver, "HTTP/1.1", 8) != 0 && memcmp(ver, "HTTP/1.0", 8) != 0)) {
		if (vl >= 5 && memcmp(ver, "HTTP/", 5) == 0)
			return fail(err, errlen, 505, "HTTP/1.0 and HTTP/1.1 only");
		return fail(err, errlen, 400, "malformed request line");
	}
	if (tl > 1024)
		return fail(err, errlen, 414, "request target over 1024 bytes");
	for (size_t i = 0; i < tl; i++) {
		unsigned char c = (unsigned char)target[i];
		if (c <= 0x20 || c >= 0x7f)
			return fail(err, errlen, 400, "bad byte in the request target");
	}

	/* header lines */
	for (p = eol + 2; p < end; p = eol + 2) {
		eol = memchr(p, '\r', (size_t)(end - p));
		if (!eol || eol[1] != '\n')
			return fail(err, errlen, 400, "malformed header line");
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return fail(err, errlen, 400, "malformed header line");
		for (const char *q = p; q < colon; q++)
			if (!tchar((unsigned char)*q))
				return fail(err, errlen, 400, "malformed header name");
		for (const char *q = colon + 1; q < eol; q++) {
			unsigned char c = (unsigned char)*q;
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return fail(err, errlen, 400, "bad byte in a header value");
		}
		size_t nl = (size_t)(colon - p);
		const char *v = colon + 1, *ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0)
			return fail(err, errlen, 400, "a request body is not accepted");
		if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0 &&
		    !(ve - v == 1 && *v == '0'))
			return fail(err, errlen, 400, "a request body is not accepted");
	}
	if (!get)
		return fail(err, errlen, 405, "GET only");

	/* target: PATH[?QUERY] */
	if (target[0] != '/')
		return fail(err, errlen, 400, "the request target must be a path");
	if (memchr(target, '#', tl) || memchr(target, '%', tl))
		return fail(err, errlen, 400, "no fragment or percent-encoding in the target");
	const char *q = memchr(target, '?', tl);
	size_t pl = q ? (size_t)(q - target) : tl;
	if (pl == 11 && memcmp(target, "/v1/catalog", 11) == 0) {
		r.path = CATALOG_ALL;
	} else if (pl > 12 && memcmp(target, "/v1/catalog/", 12) == 0) {
		if (!name_ok(target + 12, pl - 12))
			return fail(err, errlen, 404, "not a service name");
		r.path = CATALOG_SERVICE;
		memcpy(r.service, target + 12, pl - 12);
		r.service[pl - 12] = 0;
	} else if (pl == 11 && memcmp(target, "/v1/http_sd", 11) == 0) {
		r.path = CATALOG_HTTP_SD;
	} else {
		return fail(err, errlen, 404, "not found: /v1/catalog, /v1/catalog/SERVICE, "
			    "/v1/http_sd");
	}
	if (q) {
		st = parse_query(q + 1, tl - pl - 1, &r, err, errlen);
		if (st)
			return st;
	}
	*ret = r;
	return 0;
}

/* ---- Rendering ------------------------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp) {
		b->oom = true;
		return;
	}
	sb_put(b, tmp, (size_t)n);
}

static void sb_json_str(struct sbuf *b, const char *s)
{
	sb_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb_put(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			sb_printf(b, "\\u%04x", c);
		} else {
			sb_put(b, (const char *)&c, 1);
		}
	}
	sb_put(b, "\"", 1);
}

static void render_ep(struct sbuf *b, const struct fleet_endpoint *e)
{
	sb_put(b, "{\"node\":", 8);
	sb_json_str(b, e->node);
	sb_put(b, ",\"site\":", 8);
	sb_json_str(b, e->site);
	sb_put(b, ",\"address\":", 11);
	sb_json_str(b, e->addr);
	sb_printf(b, ",\"port\":%u,\"weight\":%u,\"protocol\":\"%s\",\"state\":\"%s\","
		  "\"revision\":%" PRIu64 ",\"down\":%s}", e->port, e->weight,
		  e->protocol == STORE_ENDPOINT_HTTP ? "http" : "tcp", fleet_ep_state_name(e->state),
		  e->rev, e->down ? "true" : "false");
}

static void render_target(struct sbuf *b, const struct fleet_endpoint *e)
{
	char t[80];
	snprintf(t, sizeof t, strchr(e->addr, ':') ? "[%s]:%u" : "%s:%u", e->addr, e->port);
	sb_json_str(b, t);
}

char *catalog_render(struct fleet *f, const struct catalog_req *req, uint64_t *ret_index)
{
	struct fleet_endpoint *eps = NULL;
	size_t n = 0;
	uint64_t index = 0;
	struct sbuf b = {0};

	if (fleet_endpoints_get(f, req->path == CATALOG_SERVICE ? req->service : NULL, &eps, &n,
				&index) < 0)
		return NULL;
	if (req->path == CATALOG_SERVICE) {
		sb_printf(&b, "{\"index\":%" PRIu64 ",\"service\":", index);
		sb_json_str(&b, req->service);
		sb_put(&b, ",\"endpoints\":[", 14);
		for (size_t i = 0; i < n; i++) {
			if (i)
				sb_put(&b, ",", 1);
			render_ep(&b, &eps[i]);
		}
		sb_put(&b, "]}\n", 3);
	} else if (req->path == CATALOG_ALL) {
		sb_printf(&b, "{\"index\":%" PRIu64 ",\"services\":{", index);
		for (size_t i = 0; i < n; i++) {
			bool first = i == 0 || strcmp(eps[i - 1].service, eps[i].service) != 0;
			if (first) {
				if (i)
					sb_put(&b, "],", 2);
				sb_json_str(&b, eps[i].service);
				sb_put(&b, ":[", 2);
			} else {
				sb_put(&b, ",", 1);
			}
			render_ep(&b, &eps[i]);
		}
		sb_put(&b, n ? "]}}\n" : "}}\n", n ? 4 : 3);
	} else {
		/* http_sd: one group per (service, site, revision), healthy endpoints only; the
		 * array is sorted by service then node, so groups are gathered by a scan */
		bool *done = n ? calloc(n, sizeof *done) : NULL;
		bool firstg = true;
		if (n && !done) {
			free(eps);
			return NULL;
		}
		sb_put(&b, "[", 1);
		for (size_t i = 0; i < n; i++) {
			if (done[i] || eps[i].state != FLEET_EP_HEALTHY)
				continue;
			sb_put(&b, firstg ? "{\"targets\":[" : ",{\"targets\":[", firstg ? 12 : 13);
			firstg = false;
			bool firstt = true;
			for (size_t j = i; j < n; j++) {
				if (done[j] || eps[j].state != FLEET_EP_HEALTHY ||
				    strcmp(eps[j].service, eps[i].service) ||
				    strcmp(eps[j].site, eps[i].site) || eps[j].rev != eps[i].rev)
					continue;
				done[j] = true;
				if (!firstt)
					sb_put(&b, ",", 1);
				firstt = false;
				render_target(&b, &eps[j]);
			}
			sb_put(&b, "],\"labels\":{\"service\":", 22);
			sb_json_str(&b, eps[i].service);
			sb_put(&b, ",\"site\":", 8);
			sb_json_str(&b, eps[i].site);
			sb_printf(&b, ",\"revision\":\"%" PRIu64 "\"}}", eps[i].rev);
		}
		sb_put(&b, "]\n", 2);
		free(done);
	}
	free(eps);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	if (ret_index)
		*ret_index = index;
	return b.p;
}

/* ---- Connections (http_serve.h) ------------------------------------------------------------- */

struct catalog_http {
	struct agent *a;
	struct http_serve *srv;
	unsigned nparked;
	void (*cb)(void *ud);
	void *ud;
};

/* Each connection's state (http_conn_data). */
struct cconn {
	struct catalog_req req;
	bool parked;
};

static void unpark(struct catalog_http *h, struct cconn *cc)
{
	if (cc->parked) {
		cc->parked = false;
		h->nparked--;
	}
}

static void respond(struct catalog_http *h, struct http_conn *c, int code, const char *reason,
		    const char *extra, const char *ctype, const char *body, size_t blen)
{
	char hdr[160];
	if (http_conn_done(c))
		return;
	unpark(h, http_conn_data(c));
	snprintf(hdr, sizeof hdr, "%sCache-Control: no-store\r\n", extra ? extra : "");
	http_conn_respond(c, code, reason, ctype, hdr, body, blen);
}

static void answer_error(struct catalog_http *h, struct http_conn *c, int status, const char *why)
{
	char body[300];
	const char *reason = status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
			   : status == 414 ? "URI Too Long" : status == 429 ? "Too Many Requests"
			   : status == 431 ? "Request Header Fields Too Large"
			   : status == 503 ? "Service Unavailable"
			   : status == 505 ? "HTTP Version Not Supported" : "Bad Request";
	int n = snprintf(body, sizeof body, "%s\n", why);
	respond(h, c, status, reason,
		status == 405 ? "Allow: GET\r\n" : status == 429 ? "Retry-After: 1\r\n" : NULL,
		"text/plain; charset=utf-8", body, (size_t)n);
}

static void answer_now(struct catalog_http *h, struct http_conn *c)
{
	struct fleet *f = h->a->fleet;
	struct cconn *cc = http_conn_data(c);
	uint64_t index = 0;
	char extra[64];
	if (!f) {
		answer_error(h, c, 503, "the cluster brain is not running");
		return;
	}
	char *body = catalog_render(f, &cc->req, &index);
	if (!body) {
		answer_error(h, c, 503, "out of memory");
		return;
	}
	snprintf(extra, sizeof extra, "X-Shoal-Index: %" PRIu64 "\r\n", index);
	respond(h, c, 200, "OK", extra, "application/json", body, strlen(body));
	free(body);
}

static void on_wait_over(struct http_conn *c, void *ud)
{
	answer_now(ud, c);	/* the wait is over: the state as it is */
}

static void on_request(struct http_conn *c, const char *head, size_t len, void *ud)
{
	struct catalog_http *h = ud;
	struct cconn *cc = http_conn_data(c);
	char err[160];
	int st = catalog_parse_request(head, len, &cc->req, err, sizeof err);
	if (st) {
		answer_error(h, c, st, err);
		return;
	}
	struct fleet *f = h->a->fleet;
	if (cc->req.has_index && f && fleet_endpoints_index(f) == cc->req.index &&
	    cc->req.wait_ms > 0) {
		if (h->nparked >= CATALOG_PARKED_MAX) {
			answer_error(h, c, 429, "too many waiting requests; retry");
			return;
		}
		cc->parked = true;
		h->nparked++;
		http_conn_wait(c, cc->req.wait_ms);
		return;
	}
	answer_now(h, c);
}

static void on_overflow(struct http_conn *c, void *ud)
{
	answer_error(ud, c, 431, "request head too large");
}

static void on_close(struct http_conn *c, void *ud)
{
	unpark(ud, http_conn_data(c));
}

struct changed_ctx {
	struct catalog_http *h;
	uint64_t index;
};

static void answer_if_changed(struct http_conn *c, void *ud)
{
	struct changed_ctx *x = ud;
	struct cconn *cc = http_conn_data(c);
	if (cc->parked && cc->req.index != x->index)
		answer_now(x->h, c);
}

void catalog_http_changed(struct catalog_http *h, uint64_t index)
{
	if (!h || !h->srv)
		return;
	struct changed_ctx x = {h, index};
	http_serve_foreach(h->srv, answer_if_changed, &x);
}

/* ---- Life cycle ------------------------------------------------------------------------------ */

int catalog_http_new(uv_loop_t *loop, struct agent *a, const char *addr,
		     struct catalog_http **ret, char *err, size_t errlen)
{
	struct catalog_http *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->a = a;
	struct http_serve_config cfg = {
		.flag = "--http-api",
		.head_max = CATALOG_HEAD_MAX,
		.timeout_ms = CATALOG_TIMEOUT_MS,
		.clients = CATALOG_CLIENTS,
		.backlog = 128,
		.conn_size = sizeof(struct cconn),
		.head_len = catalog_head_len,
		.on_request = on_request,
		.on_overflow = on_overflow,
		.on_wait_over = on_wait_over,
		.on_close = on_close,
		.ud = h,
	};
	int r = http_serve_new(loop, addr, &cfg, &h->srv, err, errlen);
	if (r < 0) {
		free(h);
		return r;
	}
	log_notice("http-api: serving http://%s/v1/catalog and /v1/http_sd", addr);
	*ret = h;
	return 0;
}

static void srv_closed(void *ud)
{
	struct catalog_http *h = ud;
	void (*cb)(void *) = h->cb;
	void *cud = h->ud;
	free(h);
	if (cb)
		cb(cud);
}

void catalog_http_close(struct catalog_http *h, void (*cb)(void *ud), void *ud)
{
	if (!h || !h->srv)
		return;
	struct http_serve *srv = h->srv;
	h->srv = NULL;	/* closing: a second call, or a late change, is a no-op */
	h->cb = cb;
	h->ud = ud;
	http_serve_close(srv, srv_closed, h);
}
