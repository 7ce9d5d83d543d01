/*
 * Unit tests of plugins/http.c: the response parser on good, malformed, truncated and
 * oversize input (fed whole and byte by byte), and the client on a real libuv loop against a
 * real unix-socket server in the same process (request bytes, JSON and streamed file bodies,
 * chunked answers, timeouts, cut connections, cancellation, early answers). Every callback is
 * counted: each request's callback must run exactly once, and every loop must close clean
 * (no handle left behind).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugins/http.h"

/* ---- parser ------------------------------------------------------------------------------ */

/* Parse @s whole (and byte by byte, which must agree); returns the result, fills @p. */
static int parse(const char *s, size_t len, size_t max_body, struct http_parser *p)
{
	struct http_parser q;
	size_t used = 0;
	int r, r2 = 0;

	http_parser_init(p, max_body, false);
	r = http_parser_feed(p, s, len, &used);
	if (r == 0)
		r = http_parser_eof(p);

	http_parser_init(&q, max_body, false);
	for (size_t i = 0; i < len; i++) {
		r2 = http_parser_feed(&q, s + i, 1, NULL);
		if (r2 != 0)
			break;
	}
	if (r2 == 0)
		r2 = http_parser_eof(&q);
	if (r2 != r)
		fail_msg("byte-by-byte result %d != whole result %d for:\n%.*s", r2, r, (int)len, s);
	if (r == 1 && (q.body_len != p->body_len ||
		       (p->body_len && memcmp(q.body, p->body, p->body_len) != 0)))
		fail_msg("byte-by-byte body differs");
	http_parser_release(&q);
	return r;
}

#define PARSE(lit, maxb, p) parse(lit, sizeof(lit) - 1, maxb, p)

static void test_parse_content_length(void **state)
{
	struct http_parser p;
	int r = PARSE("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
		      "Content-Length: 12\r\n\r\n{\"Id\":\"ab\"}\n", 0, &p);
	assert_int_equal(r, 1);
	assert_int_equal(p.status, 201);
	assert_true(p.has_length);
	assert_false(p.chunked);
	assert_string_equal(p.content_type, "application/json");
	assert_int_equal(p.body_len, 12);
	assert_string_equal((char *)p.body, "{\"Id\":\"ab\"}\n");
	http_parser_release(&p);

	/* bytes after a complete response are not consumed */
	const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
	size_t used = 0;
	http_parser_init(&p, 0, false);
	assert_int_equal(http_parser_feed(&p, two, sizeof two - 1, &used), 1);
	assert_int_equal(used, sizeof two - 1 - 5);
	assert_int_equal(http_parser_eof(&p), 1);
	http_parser_release(&p);
}

static void test_parse_chunked(void **state)
{
	struct http_parser p;
	int r = PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
		      "4;name=val\r\n{\"a\"\r\n5 ; x\r\n:\"b\"}\r\nA\r\n0123456789\r\n"
		      "0\r\nX-Trailer: 1\r\n\r\n", 0, &p);
	assert_int_equal(r, 1);
	assert_true(p.chunked);
	assert_int_equal(p.body_len, 19);
	assert_string_equal((char *)p.body, "{\"a\":\"b\"}0123456789");
	http_parser_release(&p);

	/* empty chunked body */
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			       0, &p), 1);
	assert_int_equal(p.body_len, 0);
	assert_null(p.body);
	http_parser_release(&p);
}

static void test_parse_eof_body_and_no_body(void **state)
{
	struct http_parser p;
	assert_int_equal(PARSE("HTTP/1.0 200 OK\r\n\r\nuntil close", 0, &p), 1);
	assert_string_equal((char *)p.body, "until close");
	http_parser_release(&p);

	/* 204 and 304 have no body even with a length; HEAD neither */
	assert_int_equal(PARSE("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, &p), 1);
	assert_int_equal(p.status, 204);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 304 Not Modified\r\n\r\n", 0, &p), 1);
	http_parser_release(&p);

	const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
	http_parser_init(&p, 0, true);
	assert_int_equal(http_parser_feed(&p, head, sizeof head - 1, NULL), 1);
	assert_int_equal(p.body_len, 0);
	http_parser_release(&p);

	/* status line without a reason phrase */
	assert_int_equal(PARSE("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0, &p), 1);
	http_parser_release(&p);
}

static void test_parse_interim(void **state)
{
	struct http_parser p;
	assert_int_equal(PARSE("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
			       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, &p), 1);
	assert_int_equal(p.status, 200);
	assert_string_equal((char *)p.body, "ok");
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 101 Switching\r\n\r\n", 0, &p), -EPROTONOSUPPORT);
	http_parser_release(&p);
}

static void test_parse_malformed(void **state)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{ "HTTP/1.1 200 OK\nContent-Length: 0\n\n", -EBADMSG },	  /* bare LF */
		{ "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", -EBADMSG },	  /* bare CR */
		{ "HTTP/1.1 200 OK\r\n folded\r\n\r\n", -EBADMSG },	  /* obs-fold */
		{ "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nName : v\r\n\r\n", -EBADMSG },	  /* space before colon */
		{ "HTTP/1.1 200 OK\r\n: v\r\n\r\n", -EBADMSG },	  /* empty name */
		{ "HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n", -EBADMSG },	  /* control char */
		{ "HTTP/1.1 2000 OK\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 20 OK\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 099 X\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 600 X\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1  200 OK\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200OK\r\n\r\n", -EBADMSG },
		{ "HTTX/1.1 200 OK\r\n\r\n", -EBADMSG },
		{ "SSH-2.0-OpenSSH_9.2\r\n", -EBADMSG },
		{ "HTTP/2.0 200 OK\r\n\r\n", -EPROTONOSUPPORT },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -EPROTONOSUPPORT },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		  -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		  -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n", -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
		  -EBADMSG },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct http_parser p;
		int r = parse(cases[i].in, strlen(cases[i].in), 0, &p);
		if (r != cases[i].want)
			fail_msg("case %zu: got %d want %d for %s", i, r, cases[i].want, cases[i].in);
		/* sticky */
		assert_int_equal(http_parser_feed(&p, "x", 1, NULL), r);
		assert_int_equal(http_parser_eof(&p), r);
		http_parser_release(&p);
	}
	/* NUL inside a header */
	const char nul[] = "HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n";
	struct http_parser p;
	assert_int_equal(parse(nul, sizeof nul - 1, 0, &p), -EBADMSG);
	http_parser_release(&p);
}

static void test_parse_truncated(void **state)
{
	static const char *cases[] = {
		"",
		"HTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct http_parser p;
		int r = parse(cases[i], strlen(cases[i]), 0, &p);
		if (r != -ECONNRESET)
			fail_msg("case %zu: got %d want %d", i, r, -ECONNRESET);
		http_parser_release(&p);
	}
}

static void test_parse_oversize(void **state)
{
	struct http_parser p;
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a", 10, &p),
			 -EFBIG);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 10, &p),
			 1);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n", 10, &p), -EFBIG);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\n\r\n0123456789a", 10, &p), -EFBIG);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", 0,
			       &p), -EFBIG);
	http_parser_release(&p);
	assert_int_equal(PARSE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "fffffffffffffffffff\r\n", 0, &p), -EFBIG);
	http_parser_release(&p);

	/* a line longer than HTTP_MAX_LINE */
	size_t n = HTTP_MAX_LINE + 64;
	char *big = malloc(n + 64);
	assert_non_null(big);
	int o = sprintf(big, "HTTP/1.1 200 OK\r\nX: ");
	memset(big + o, 'a', n);
	strcpy(big + o + n, "\r\n\r\n");
	assert_int_equal(parse(big, strlen(big), 0, &p), -EMSGSIZE);
	http_parser_release(&p);
	free(big);

	/* too many header fields */
	char *many = malloc(64 * (HTTP_MAX_HEADERS + 2));
	assert_non_null(many);
	o = sprintf(many, "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		o += sprintf(many + o, "X-%d: y\r\n", i);
	strcpy(many + o, "\r\n");
	assert_int_equal(parse(many, strlen(many), 0, &p), -EMSGSIZE);
	http_parser_release(&p);
	free(many);

	/* a head over HTTP_MAX_HEAD (long lines, few fields) */
	size_t hn = HTTP_MAX_HEAD + 4 * HTTP_MAX_LINE;
	char *head = malloc(hn + 2 * HTTP_MAX_LINE);
	assert_non_null(head);
	o = sprintf(head, "HTTP/1.1 200 OK\r\n");
	while ((size_t)o < hn) {
		o += sprintf(head + o, "X: ");
		memset(head + o, 'b', HTTP_MAX_LINE - 16);
		o += HTTP_MAX_LINE - 16;
		o += sprintf(head + o, "\r\n");
	}
	strcpy(head + o, "\r\n");
	assert_int_equal(parse(head, strlen(head), 0, &p), -EMSGSIZE);
	http_parser_release(&p);
	free(head);

	/* endless interim responses count against the head limit */
	size_t in = HTTP_MAX_HEAD + 100;
	char *interim = malloc(in + 32);
	assert_non_null(interim);
	o = 0;
	while ((size_t)o < in)
		o += sprintf(interim + o, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(parse(interim, (size_t)o, 0, &p), -EMSGSIZE);
	http_parser_release(&p);
	free(interim);
}

static void test_escape(void **state)
{
	char out[64];
	assert_int_equal(http_escape("localhost/web:1.4", "/:", out, sizeof out), 17);
	assert_string_equal(out, "localhost/web:1.4");
	assert_int_equal(http_escape("{\"a\":[\"b=c d\"]}", "", out, sizeof out), 37);
	assert_string_equal(out, "%7B%22a%22%3A%5B%22b%3Dc%20d%22%5D%7D");
	assert_int_equal(http_escape("abc", "", out, 3), -ENOSPC);
	assert_string_equal(out, "");
	assert_int_equal(http_escape("abc", "", out, 4), 3);
}

/* ---- client against a real unix-socket server --------------------------------------------- */

enum srv_mode {
	SRV_RESPOND,	/* read the whole request, send the response, close */
	SRV_SILENT,	/* read, never answer */
	SRV_EARLY,	/* answer as soon as the head arrived, close without reading the body */
};

struct srv {
	uv_loop_t *loop;
	uv_pipe_t server;
	uv_pipe_t conn;
	bool conn_open;
	char dir[64], path[108];
	enum srv_mode mode;
	const char *resp;
	size_t resp_len, piece;	/* send the response in writes of @piece bytes (0: one) */
	uint8_t *req;
	size_t req_len, req_cap;
	size_t head_end, body_len;
	bool answered;
	int nconn;
	uv_write_t w[64];
	unsigned nw, nw_done;
};

struct res {
	int calls;
	int err;
	int status;
	char *body;
	size_t body_len;
	char ctype[128];
};

static void srv_conn_closed(uv_handle_t *h)
{
	struct srv *s = h->data;
	s->conn_open = false;
}

static void srv_wrote(uv_write_t *w, int status)
{
	struct srv *s = w->data;
	if (++s->nw_done == s->nw && s->conn_open && !uv_is_closing((uv_handle_t *)&s->conn))
		uv_close((uv_handle_t *)&s->conn, srv_conn_closed);
}

static void srv_answer(struct srv *s)
{
	size_t piece = s->piece ? s->piece : s->resp_len;
	s->answered = true;
	if (s->resp_len == 0) {
		uv_close((uv_handle_t *)&s->conn, srv_conn_closed);
		return;
	}
	for (size_t off = 0; off < s->resp_len && s->nw < 64; off += piece) {
		size_t n = s->resp_len - off < piece ? s->resp_len - off : piece;
		uv_buf_t b = uv_buf_init((char *)s->resp + off, (unsigned)n);
		s->w[s->nw].data = s;
		assert_int_equal(uv_write(&s->w[s->nw], (uv_stream_t *)&s->conn, &b, 1, srv_wrote),
				 0);
		s->nw++;
	}
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char buf[65536];
	*b = uv_buf_init(buf, sizeof buf);
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct srv *s = st->data;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)&s->conn))
			uv_close((uv_handle_t *)&s->conn, srv_conn_closed);
		return;
	}
	if (s->answered)
		return;
	if (s->req_len + (size_t)n > s->req_cap) {
		s->req_cap = (s->req_len + (size_t)n) * 2;
		s->req = realloc(s->req, s->req_cap + 1);
		assert_non_null(s->req);
	}
	memcpy(s->req + s->req_len, b->base, (size_t)n);
	s->req_len += (size_t)n;
	s->req[s->req_len] = '\0';
	if (!s->head_end) {
		char *e = strstr((char *)s->req, "\r\n\r\n");
		if (!e)
			return;
		s->head_end = (size_t)(e - (char *)s->req) + 4;
		char *cl = strstr((char *)s->req, "Content-Length: ");
		s->body_len = cl && cl < e ? strtoul(cl + 16, NULL, 10) : 0;
		if (s->mode == SRV_EARLY) {
			uv_read_stop(st);
			srv_answer(s);
			return;
		}
	}
	if (s->mode == SRV_RESPOND && s->req_len >= s->head_end + s->body_len)
		srv_answer(s);
}

static void srv_on_conn(uv_stream_t *server, int status)
{
	struct srv *s = server->data;
	assert_int_equal(status, 0);
	assert_false(s->conn_open); /* one connection at a time in these tests */
	uv_pipe_init(s->loop, &s->conn, 0);
	s->conn.data = s;
	s->conn_open = true;
	s->nconn++;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&s->conn), 0);
	assert_int_equal(uv_read_start((uv_stream_t *)&s->conn, srv_alloc, srv_read), 0);
}

static void srv_start(struct srv *s, uv_loop_t *loop, enum srv_mode mode, const char *resp,
		      size_t resp_len)
{
	memset(s, 0, sizeof *s);
	s->loop = loop;
	s->mode = mode;
	s->resp = resp;
	s->resp_len = resp_len;
	snprintf(s->dir, sizeof s->dir, "/tmp/shoal-http-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof s->path, "%s/api.sock", s->dir);
	uv_pipe_init(loop, &s->server, 0);
	s->server.data = s;
	assert_int_equal(uv_pipe_bind(&s->server, s->path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s->server, 8, srv_on_conn), 0);
}

static void srv_stop(struct srv *s)
{
	uv_close((uv_handle_t *)&s->server, NULL);
	if (s->conn_open && !uv_is_closing((uv_handle_t *)&s->conn))
		uv_close((uv_handle_t *)&s->conn, srv_conn_closed);
	uv_run(s->loop, UV_RUN_DEFAULT);
	unlink(s->path);
	rmdir(s->dir);
	free(s->req);
}

static void on_done(struct http_req *req, int err, const struct http_response *resp, void *ud)
{
	struct res *r = ud;
	r->calls++;
	r->err = err;
	if (resp) {
		assert_int_equal(err, 0);
		r->status = resp->status;
		r->body = malloc(resp->body_len + 1);
		assert_non_null(r->body);
		memcpy(r->body, resp->body, resp->body_len + 1);
		r->body_len = resp->body_len;
		snprintf(r->ctype, sizeof r->ctype, "%s", resp->content_type);
	} else {
		assert_int_not_equal(err, 0);
	}
}

/* Run @loop until @r got its callback, bounded by a few seconds of wall time. */
static void run_until_done(uv_loop_t *loop, struct res *r)
{
	uint64_t deadline = uv_hrtime() + 10ull * 1000 * 1000 * 1000;
	while (r->calls == 0 && uv_hrtime() < deadline)
		uv_run(loop, UV_RUN_ONCE);
	assert_int_equal(r->calls, 1);
}

static void loop_done(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0); /* no handle left open */
}

static const char PING[] = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\n\r\nOK";

static void test_client_get(void **state)
{
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_RESPOND, PING, sizeof PING - 1);
	s.piece = 7; /* the answer arrives in many small writes */
	struct http_request rq = { .method = "GET", .target = "/_ping" };
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "OK");
	assert_string_equal(r.ctype, "text/plain; charset=utf-8");
	assert_non_null(strstr((char *)s.req, "GET /_ping HTTP/1.1\r\n"));
	assert_non_null(strstr((char *)s.req, "\r\nHost: localhost\r\n"));
	assert_non_null(strstr((char *)s.req, "\r\nConnection: close\r\n"));
	assert_null(strstr((char *)s.req, "Content-Length")); /* GET without body */
	srv_stop(&s);
	free(r.body);
	loop_done(&loop);
}

static void test_client_json_body_chunked_answer(void **state)
{
	static const char resp[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"
				   "8\r\n{\"Id\":\"1\r\n5\r\n23\"}\n\r\n0\r\n\r\n";
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	const char body[] = "{\"Image\":\"localhost/x:1\"}";
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_RESPOND, resp, sizeof resp - 1);
	s.piece = 5;
	struct http_request rq = { .method = "POST", .target = "/v1.41/containers/create?name=a",
				   .content_type = "application/json", .body = body,
				   .body_len = strlen(body) };
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"Id\":\"123\"}\n");
	assert_non_null(strstr((char *)s.req, "POST /v1.41/containers/create?name=a HTTP/1.1\r\n"));
	assert_non_null(strstr((char *)s.req, "\r\nContent-Type: application/json\r\n"));
	char cl[64];
	snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(body));
	assert_non_null(strstr((char *)s.req, cl));
	assert_int_equal(s.req_len - s.head_end, strlen(body));
	assert_memory_equal(s.req + s.head_end, body, strlen(body));
	srv_stop(&s);
	free(r.body);
	loop_done(&loop);
}

static char *make_file(const char *dir, size_t size, uint8_t **ret_bytes)
{
	char *path = malloc(strlen(dir) + 16);
	assert_non_null(path);
	sprintf(path, "%s/body.tar", dir);
	uint8_t *b = malloc(size ? size : 1);
	assert_non_null(b);
	uint32_t x = 12345;
	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 16);
	}
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, size, f), size);
	fclose(f);
	*ret_bytes = b;
	return path;
}

static void test_client_file_body(void **state)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"
				   "{\"stream\":\"Loaded image: localhost/cx:v1\"}";
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	uint8_t *bytes;
	size_t size = 3 * 1024 * 1024 + 12345; /* many 64 KiB pieces and a short last one */
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_RESPOND, resp, sizeof resp - 1);
	char *path = make_file(s.dir, size, &bytes);
	struct http_request rq = { .method = "POST", .target = "/v1.41/images/load?quiet=1",
				   .content_type = "application/x-tar", .body_file = path };
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	if (r.err)
		fail_msg("file body: err %d, server got %zu bytes (head %zu, body %zu)", r.err,
			 s.req_len, s.head_end, s.body_len);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"stream\":\"Loaded image: localhost/cx:v1\"}");
	char cl[64];
	snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", size);
	assert_non_null(strstr((char *)s.req, cl));
	assert_non_null(strstr((char *)s.req, "\r\nContent-Type: application/x-tar\r\n"));
	assert_int_equal(s.req_len - s.head_end, size);
	assert_memory_equal(s.req + s.head_end, bytes, size);
	unlink(path);
	srv_stop(&s);
	free(path);
	free(bytes);
	free(r.body);
	loop_done(&loop);
}

static void test_client_early_answer(void **state)
{
	/* The server refuses after the head and closes without reading a large body: the client
	 * reports the answer, not the broken upload. */
	static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\n"
				   "bad archive";
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	uint8_t *bytes;
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_EARLY, resp, sizeof resp - 1);
	char *path = make_file(s.dir, 8 * 1024 * 1024, &bytes);
	struct http_request rq = { .method = "POST", .target = "/v1.41/images/load",
				   .body_file = path, .timeout_ms = 5000 };
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	if (r.err != 0)
		fail_msg("early answer: err %d (%s), want the 400 answer", r.err, strerror(-r.err));
	assert_int_equal(r.status, 400);
	assert_string_equal(r.body, "bad archive");
	unlink(path);
	srv_stop(&s);
	free(path);
	free(bytes);
	free(r.body);
	loop_done(&loop);
}

static void test_client_timeout(void **state)
{
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_SILENT, NULL, 0);
	struct http_request rq = { .method = "GET", .target = "/_ping", .timeout_ms = 200 };
	uint64_t t0 = uv_hrtime();
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	uint64_t ms = (uv_hrtime() - t0) / 1000000;
	assert_int_equal(r.err, -ETIMEDOUT);
	if (ms < 150 || ms > 3000)
		fail_msg("timeout took %llu ms, want about 200", (unsigned long long)ms);
	srv_stop(&s);
	loop_done(&loop);
}

static void test_client_cut_and_bad(void **state)
{
	static const struct {
		const char *resp;
		size_t max_body;
		int want;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, -ECONNRESET },
		{ "", 0, -ECONNRESET },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 5, -EFBIG },
		{ "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 0, -EBADMSG },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\n", 0, -EPROTONOSUPPORT },
		{ "HTTP/1.1 200 OK\r\n\r\nuntil eof", 0, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uv_loop_t loop;
		struct srv s;
		struct res r = { 0 };
		uv_loop_init(&loop);
		srv_start(&s, &loop, SRV_RESPOND, cases[i].resp, strlen(cases[i].resp));
		struct http_request rq = { .method = "GET", .target = "/x",
					   .max_body = cases[i].max_body };
		assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, NULL), 0);
		run_until_done(&loop, &r);
		if (r.err != cases[i].want)
			fail_msg("case %zu: err %d want %d", i, r.err, cases[i].want);
		srv_stop(&s);
		free(r.body);
		loop_done(&loop);
	}
}

static void test_client_cancel(void **state)
{
	uv_loop_t loop;
	struct srv s;
	struct res r = { 0 };
	struct http_req *req = NULL;
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_SILENT, NULL, 0);
	struct http_request rq = { .method = "GET", .target = "/_ping" };
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, &req), 0);
	assert_non_null(req);
	uv_run(&loop, UV_RUN_NOWAIT); /* let it connect */
	http_request_cancel(req);
	assert_int_equal(r.calls, 0); /* never from inside cancel */
	run_until_done(&loop, &r);
	assert_int_equal(r.err, -ECANCELED);
	srv_stop(&s);
	loop_done(&loop);

	/* cancel right after start, before anything ran */
	memset(&r, 0, sizeof r);
	uv_loop_init(&loop);
	srv_start(&s, &loop, SRV_RESPOND, PING, sizeof PING - 1);
	assert_int_equal(http_request_start(&loop, s.path, &rq, on_done, &r, &req), 0);
	http_request_cancel(req);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, -ECANCELED);
	srv_stop(&s);
	loop_done(&loop);
}

static void test_client_connect_errors(void **state)
{
	uv_loop_t loop;
	struct res r = { 0 };
	char dir[] = "/tmp/shoal-http-XXXXXX", path[96];
	struct http_request rq = { .method = "GET", .target = "/_ping" };
	assert_non_null(mkdtemp(dir));
	uv_loop_init(&loop);

	/* no socket at all */
	snprintf(path, sizeof path, "%s/none.sock", dir);
	assert_int_equal(http_request_start(&loop, path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, -ENOENT);

	/* a socket file nobody listens on */
	snprintf(path, sizeof path, "%s/dead.sock", dir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	memset(&r, 0, sizeof r);
	assert_int_equal(http_request_start(&loop, path, &rq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, -ECONNREFUSED);
	close(fd);
	unlink(path);

	/* a body file that does not exist: reported through the callback */
	struct http_request frq = { .method = "POST", .target = "/x", .body_file = "/nonexistent/a" };
	memset(&r, 0, sizeof r);
	assert_int_equal(http_request_start(&loop, path, &frq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_int_equal(r.err, -ENOENT);

	/* a directory as body file */
	frq.body_file = dir;
	memset(&r, 0, sizeof r);
	assert_int_equal(http_request_start(&loop, path, &frq, on_done, &r, NULL), 0);
	run_until_done(&loop, &r);
	assert_true(r.err == -EINVAL || r.err == -EISDIR);

	/* synchronous refusals: the callback never runs */
	memset(&r, 0, sizeof r);
	char longp[200];
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	assert_int_equal(http_request_start(&loop, longp, &rq, on_done, &r, NULL), -ENAMETOOLONG);
	struct http_request bad = { .method = "GET", .target = "/a b" };
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	bad.target = "/a\r\nX: y";
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	bad.target = "no-slash";
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	bad.target = "/ok";
	bad.method = "GE T";
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	bad.method = "POST";
	bad.content_type = "a\r\nb";
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	bad.content_type = NULL;
	bad.body = "x";
	bad.body_len = 1;
	bad.body_file = "/etc/hostname";
	assert_int_equal(http_request_start(&loop, path, &bad, on_done, &r, NULL), -EINVAL);
	assert_int_equal(http_request_start(&loop, path, &rq, NULL, &r, NULL), -EINVAL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 0);
	rmdir(dir);
	loop_done(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_content_length),
		cmocka_unit_test(test_parse_chunked),
		cmocka_unit_test(test_parse_eof_body_and_no_body),
		cmocka_unit_test(test_parse_interim),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_oversize),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_client_get),
		cmocka_unit_test(test_client_json_body_chunked_answer),
		cmocka_unit_test(test_client_file_body),
		cmocka_unit_test(test_client_early_answer),
		cmocka_unit_test(test_client_timeout),
		cmocka_unit_test(test_client_cut_and_bad),
		cmocka_unit_test(test_client_cancel),
		cmocka_unit_test(test_client_connect_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
