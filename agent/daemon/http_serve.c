/*
 * agent/daemon/http_serve.c: the small HTTP/1.x server of agentd's endpoints (see
 * http_serve.h). A connection is freed when both its handles are closed and nobody holds it.
 */
#include "agent/daemon/http_serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_conn {
	struct http_serve *s;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	char *head;		/* s->cfg.head_max + 1 bytes */
	size_t len;
	char *resp;
	unsigned open;		/* handles not yet closed */
	bool closing, answered, waiting, held;
	struct http_conn *next;
	max_align_t data[];	/* the caller's cfg.conn_size bytes */
};

struct http_serve {
	uv_loop_t *loop;
	struct http_serve_config cfg;
	uv_tcp_t listener;
	bool listener_open, closing;
	struct http_conn *conns;
	unsigned nconns;
	void (*cb)(void *ud);
	void *ud;
};

static void maybe_finish(struct http_serve *s)
{
	if (!s->closing || s->listener_open || s->conns)
		return;
	void (*cb)(void *) = s->cb;
	void *ud = s->ud;
	free(s);
	if (cb)
		cb(ud);
}

static void conn_free(struct http_conn *c)
{
	struct http_serve *s = c->s;
	for (struct http_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	s->nconns--;
	if (s->cfg.on_free)
		s->cfg.on_free(c, s->cfg.ud);
	free(c->resp);
	free(c->head);
	free(c);
	maybe_finish(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	if (--c->open == 0 && !c->held)
		conn_free(c);
}

void http_conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->waiting = false;
	if (c->s->cfg.on_close)
		c->s->cfg.on_close(c, c->s->cfg.ud);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void written(uv_write_t *w, int status)
{
	(void)status;
	http_conn_close(w->data);
}

static void conn_timeout(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	if (c->waiting && !c->answered) {
		c->waiting = false;
		c->s->cfg.on_wait_over(c, c->s->cfg.ud);
		return;
	}
	http_conn_close(c);	/* the head, or the answer's write, took too long */
}

void http_conn_respond(struct http_conn *c, int code, const char *reason, const char *ctype,
		       const char *extra, const char *body, size_t blen)
{
	char hdr[512];
	if (c->closing || c->answered)
		return;
	c->answered = true;
	c->waiting = false;
	uv_read_stop((uv_stream_t *)&c->tcp);
	int n = snprintf(hdr, sizeof hdr,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n", code, reason, ctype, blen, extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof hdr || !(c->resp = malloc((size_t)n + blen))) {
		http_conn_close(c);
		return;
	}
	memcpy(c->resp, hdr, (size_t)n);
	if (blen)
		memcpy(c->resp + n, body, blen);
	uv_buf_t buf = uv_buf_init(c->resp, (unsigned)((size_t)n + blen));
	c->wr.data = c;
	/* the write is bounded too: a client that never reads its answer is not kept */
	uv_timer_start(&c->timer, conn_timeout, c->s->cfg.timeout_ms, 0);
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, written) < 0)
		http_conn_close(c);
}

void http_conn_wait(struct http_conn *c, uint64_t ms)
{
	if (c->closing || c->answered)
		return;
	c->waiting = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_start(&c->timer, conn_timeout, ms ? ms : 1, 0);
}

void http_conn_hold(struct http_conn *c)
{
	c->held = true;
}

bool http_conn_release(struct http_conn *c)
{
	c->held = false;
	if (!c->closing)
		return true;
	if (c->open == 0)
		conn_free(c);
	return false;
}

void *http_conn_data(struct http_conn *c)
{
	return c->data;
}

bool http_conn_done(const struct http_conn *c)
{
	return c->closing || c->answered;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;
	(void)suggested;
	*buf = uv_buf_init(c->head + c->len, (unsigned)(c->s->cfg.head_max - c->len));
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = st->data;
	struct http_serve *s = c->s;
	(void)buf;
	if (nread < 0) {
		http_conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->head[c->len] = 0;
	if (s->cfg.head_len(c->head, c->len)) {
		/* one request per connection: nothing more is read, the head's timer is done */
		uv_read_stop((uv_stream_t *)&c->tcp);
		uv_timer_stop(&c->timer);
		s->cfg.on_request(c, c->head, c->len, s->cfg.ud);
		return;
	}
	if (c->len >= s->cfg.head_max) {
		if (s->cfg.on_overflow)
			s->cfg.on_overflow(c, s->cfg.ud);
		else
			http_conn_close(c);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct http_serve *s = server->data;
	if (status < 0 || s->closing)
		return;
	struct http_conn *c = calloc(1, sizeof *c + s->cfg.conn_size);
	char *head = c ? malloc(s->cfg.head_max + 1) : NULL;
	if (!c || !head) {
		/* accept and drop, or the listener keeps firing */
		free(c);
		free(head);
		uv_tcp_t *tmp = malloc(sizeof *tmp);
		if (tmp && uv_tcp_init(s->loop, tmp) == 0) {
			(void)uv_accept(server, (uv_stream_t *)tmp);
			uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
		} else {
			free(tmp);
		}
		return;
	}
	c->s = s;
	c->head = head;
	c->head[0] = 0;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->open = 2;
	c->next = s->conns;
	s->conns = c;
	s->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || s->nconns > s->cfg.clients ||
	    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) < 0) {
		http_conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, conn_timeout, s->cfg.timeout_ms, 0);
}

void http_serve_foreach(struct http_serve *s, void (*fn)(struct http_conn *c, void *ud),
			void *ud)
{
	/* closing only marks a connection (it is freed from a later close callback), so the
	 * list stays walkable whatever fn does */
	for (struct http_conn *c = s ? s->conns : NULL; c; c = c->next)
		if (!c->closing)
			fn(c, ud);
}

/* ---- Life cycle ------------------------------------------------------------------------------ */

static void listener_closed(uv_handle_t *h)
{
	struct http_serve *s = h->data;
	s->listener_open = false;
	maybe_finish(s);
}

static void listener_closed_free(uv_handle_t *h)
{
	free(h->data);
}

int http_serve_new(uv_loop_t *loop, const char *addr, const struct http_serve_config *cfg,
		   struct http_serve **ret, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	char host[128];
	unsigned port = 0;
	int r;
	memset(&ss, 0, sizeof ss);
	const char *colon = strrchr(addr, ':');
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	if (!colon || hl == 0 || hl >= sizeof host || sscanf(colon + 1, "%u", &port) != 1 ||
	    port == 0 || port > 65535) {
		snprintf(err, errlen, "%s %s: expected IP:PORT", cfg->flag, addr);
		return -EINVAL;
	}
	memcpy(host, addr, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host[hl - 1] = 0;
		r = uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)&ss);
	} else {
		r = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss);
	}
	if (r < 0) {
		snprintf(err, errlen, "%s %s: not a numeric IP:PORT", cfg->flag, addr);
		return -EINVAL;
	}
	if (!cfg->head_max || !cfg->head_len || !cfg->on_request) {
		snprintf(err, errlen, "%s: incomplete server configuration", cfg->flag);
		return -EINVAL;
	}
	struct http_serve *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->loop = loop;
	s->cfg = *cfg;
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, cfg->backlog, on_connection);
	if (r < 0) {
		snprintf(err, errlen, "%s %s: %s", cfg->flag, addr, uv_strerror(r));
		uv_close((uv_handle_t *)&s->listener, listener_closed_free);
		return r;
	}
	s->listener_open = true;
	*ret = s;
	return 0;
}

void http_serve_close(struct http_serve *s, void (*cb)(void *ud), void *ud)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	s->cb = cb;
	s->ud = ud;
	for (struct http_conn *c = s->conns; c; c = c->next)
		http_conn_close(c);
	uv_close((uv_handle_t *)&s->listener, listener_closed);
}
