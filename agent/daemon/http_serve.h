/*
 * agent/daemon/http_serve.h: the small HTTP/1.x server under agentd's own endpoints
 * (--metrics: metrics.c, --http-api: catalog.c): listen, accept up to a limit, read one request
 * head within a time limit, hand it to the caller, write the answer, close.
 *
 * What it does, per connection:
 *
 *   accept --(more than cfg.clients open)--> close at once
 *     |
 *   READ the head into a buffer of cfg.head_max bytes (kept NUL-terminated), until
 *   cfg.head_len says it is complete; within cfg.timeout_ms of the accept, else close;
 *   a read error or EOF closes; a head that fills the buffer incomplete goes to
 *   cfg.on_overflow (or is closed when that is NULL)
 *     |
 *   reading stops, the timer stops, cfg.on_request(c, head, len) -- once per connection
 *     |  the caller then does exactly one of, now or later:
 *     |   - http_conn_respond: the answer is written, then the connection closes
 *     |   - http_conn_wait(ms): park it (a long-poll); at the end of the wait the timer calls
 *     |     cfg.on_wait_over, which answers; the caller may answer earlier
 *     |   - http_conn_hold / http_conn_release around work off the loop (the threadpool): the
 *     |     connection's memory stays until released, even if it is closed meanwhile
 *     |   - http_conn_close
 *   WRITE the answer (status line, Content-Type, Content-Length, the caller's extra header
 *   lines, "Connection: close", the body), bounded by cfg.timeout_ms again; then close.
 *
 * One request per connection (Connection: close): no keep-alive, no pipelining, no request
 * body (the caller's parser refuses one). The module neither parses the head nor logs: the
 * caller does both (metrics.c a loose request line, catalog.c a strict parser that is fuzzed).
 *
 * Per-connection state of the caller: cfg.conn_size bytes, zeroed, at http_conn_data(c), freed
 * with the connection; cfg.on_close(c) tells the caller the connection is closing (whatever
 * closed it) so it can drop it from its own counts; nothing may be answered after that.
 *
 * Threads: loop thread only (the caller's worker threads must not touch a connection; they
 * get their own data through http_conn_data before the work is queued). Errors: negative
 * errno. Every callback may call any function here on its connection, and on_request /
 * on_wait_over / foreach callbacks may answer or close other connections too.
 */
#ifndef SHOAL_AGENT_HTTP_SERVE_H
#define SHOAL_AGENT_HTTP_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_serve;
struct http_conn;

struct http_serve_config {
	const char *flag;	/* "--metrics": the prefix of error texts ("--metrics X: ...") */
	size_t head_max;	/* bytes of request head accepted (buffer: one more for the NUL) */
	uint32_t timeout_ms;	/* to deliver the head; then again to write the answer */
	unsigned clients;	/* connections open at once; the next ones are closed at accept */
	int backlog;		/* listen(2) backlog */
	size_t conn_size;	/* bytes of caller state per connection (http_conn_data) */
	/* Length of the complete head in @buf (NUL-terminated at @len), or 0: not yet. */
	size_t (*head_len)(const char *buf, size_t len);
	/* A complete head: @head is NUL-terminated, @len bytes (what was read, which may run
	 * past the head's end: the caller's parser decides). */
	void (*on_request)(struct http_conn *c, const char *head, size_t len, void *ud);
	/* head_max bytes and no complete head; NULL: close. */
	void (*on_overflow)(struct http_conn *c, void *ud);
	/* The end of an http_conn_wait; the caller answers (or closes). Required if waits are
	 * used. */
	void (*on_wait_over)(struct http_conn *c, void *ud);
	/* The connection is closing; NULL is fine. */
	void (*on_close)(struct http_conn *c, void *ud);
	/* The connection's memory is about to be freed (release what http_conn_data points
	 * to); NULL is fine. */
	void (*on_free)(struct http_conn *c, void *ud);
	void *ud;
};

/*
 * Listen on @addr, numeric "IP:PORT" or "[IPv6]:PORT" (port 1..65535), and serve with @cfg
 * (copied; cfg->flag and cfg->ud are borrowed until the server is closed).
 * @return 0 and *ret; -EINVAL (not a numeric IP:PORT: "--metrics X: expected IP:PORT" or
 *         "... not a numeric IP:PORT" in @err); a bind or listen error (-EADDRINUSE, -EACCES,
 *         ..., "--metrics X: address already in use"); -ENOMEM. Nothing to close on failure.
 */
int http_serve_new(uv_loop_t *loop, const char *addr, const struct http_serve_config *cfg,
		   struct http_serve **ret, char *err, size_t errlen);

/*
 * Stop listening and close every connection (on_close for each), then, once every handle is
 * closed and every held connection released, free @s and call @cb(@ud) from the loop.
 * NULL is fine (then @cb is not called); a second call is a no-op.
 */
void http_serve_close(struct http_serve *s, void (*cb)(void *ud), void *ud);

/* Call @fn for every open connection (not closing); @fn may answer or close any of them. */
void http_serve_foreach(struct http_serve *s, void (*fn)(struct http_conn *c, void *ud),
			void *ud);

/* The caller's cfg.conn_size bytes of this connection. */
void *http_conn_data(struct http_conn *c);

/* Has the connection been answered or closed (so nothing more can be sent)? */
bool http_conn_done(const struct http_conn *c);

/*
 * Answer: "HTTP/1.1 @code @reason", Content-Type @ctype, Content-Length, @extra (header lines
 * each ending in CRLF, or NULL), "Connection: close", then @body (@blen bytes, copied). The
 * connection closes once written, or after cfg.timeout_ms. Ignored when the connection is
 * closing or was answered already; closes the connection when out of memory.
 */
void http_conn_respond(struct http_conn *c, int code, const char *reason, const char *ctype,
		       const char *extra, const char *body, size_t blen);

/* Park the connection for @ms (> 0); cfg.on_wait_over is called then, unless it was answered
 * or closed before. */
void http_conn_wait(struct http_conn *c, uint64_t ms);

/* Close now (no answer). No-op if closing already. */
void http_conn_close(struct http_conn *c);

/*
 * Keep the connection's memory while work runs off the loop. http_conn_release ends it and
 * returns true when the connection is still open (answer it), false when it was closed
 * meanwhile (it may be freed by this very call: do not touch it again).
 */
void http_conn_hold(struct http_conn *c);
bool http_conn_release(struct http_conn *c);

#endif
