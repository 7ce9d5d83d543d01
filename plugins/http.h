/*
 * plugins/http.h: a small asynchronous HTTP/1.1 client over a unix socket, on libuv.
 *
 * Why our own client and not libcurl's multi interface:
 *   The container plugin talks to one peer only, the Docker Engine API that Docker and Podman
 *   serve on a local unix socket. That needs a tiny subset of HTTP/1.1: one request per
 *   connection (Connection: close), a JSON or file body with Content-Length, and a response
 *   delimited by Content-Length, chunked transfer coding or the end of the connection. No TLS,
 *   proxies, redirects, cookies, authentication, compression or pipelining. libcurl would be
 *   a new runtime dependency (with its own TLS stack and dozens of transitive libraries) for
 *   those ~600 lines, and its multi interface has to be glued to libuv through socket and
 *   timer callbacks, which is more code than the client itself. Our own client runs on the
 *   agent's loop like every other socket, has a strict parser with hard limits on every size,
 *   and has a fuzz target (tests/fuzz/fuzz_plugins_http.c).
 *
 * Two layers:
 *  - http_parser: a pure, incremental response parser (no I/O, no allocation beyond the body
 *    buffer, whose growth is capped). Bytes in, status/headers/body out. Strict: CRLF line
 *    ends, token header names, no obsolete line folding, one consistent Content-Length, only
 *    the "chunked" transfer coding, hex chunk sizes checked for overflow; any deviation is
 *    -EBADMSG, never a crash.
 *  - http_request_start: one request over a fresh connection to a unix socket path, with a
 *    deadline for the whole exchange. The body is a buffer (copied) or a file streamed from
 *    disk in 64 KiB pieces (POST /images/load of a multi-hundred-MiB archive never sits in
 *    memory).
 *
 * Loop and threads: everything runs on the loop passed to http_request_start; nothing blocks
 * it (file reads go through uv_fs_* on libuv's threadpool). Not thread-safe.
 * Process-wide effect: the first http_request_start sets SIGPIPE to SIG_IGN if it is still at
 * SIG_DFL (a server closing early must give -EPIPE, not kill the agent); a handler the program
 * installed itself is left alone.
 * This module never logs.
 */
#ifndef SHOAL_PLUGINS_HTTP_H
#define SHOAL_PLUGINS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_LINE	      8192		/* status line, one header, chunk-size line */
#define HTTP_MAX_HEAD	      (64 * 1024)	/* status line + all headers (+ trailers) */
#define HTTP_MAX_HEADERS      128		/* header fields per response */
#define HTTP_DEFAULT_MAX_BODY (8u * 1024 * 1024)
#define HTTP_DEFAULT_TIMEOUT_MS 30000

/* ---- Response parser (pure) -------------------------------------------------------------- */

struct http_parser {
	/* Results, valid once http_parser_feed/http_parser_eof returned 1. */
	int status;			/* 100..599 (never 1xx: interim responses are skipped) */
	bool chunked;			/* Transfer-Encoding: chunked */
	bool has_length;		/* Content-Length given */
	uint64_t content_length;
	char content_type[128];		/* "" if absent; truncated if longer (never used for framing) */
	uint8_t *body;			/* malloc'd, NUL-terminated (the NUL is not counted); NULL
					 * when empty. Owned by the parser: http_parser_release. */
	size_t body_len;

	/* Internal. */
	size_t max_body;
	bool no_body;			/* response to HEAD: never a body */
	int state;
	int err;			/* sticky: once an error, every call returns it */
	size_t body_cap;
	uint64_t left;			/* bytes left in a Content-Length body or a chunk */
	size_t head_len;		/* bytes of head/trailers seen so far */
	unsigned nheaders;
	size_t line_len;
	char line[HTTP_MAX_LINE];
};

/* Prepare @p for one response whose body may hold at most @max_body bytes (0: the default).
 * @no_body: the request was HEAD (the response has headers only). */
void http_parser_init(struct http_parser *p, size_t max_body, bool no_body);
/* Free the body; @p may be re-initialised afterwards. Accepts a zeroed parser. */
void http_parser_release(struct http_parser *p);

/*
 * Feed @len bytes. *ret_used (may be NULL) receives how many were consumed: everything
 * when the result is 0, up to the end of the response when it is 1.
 * @return 1 the response is complete; 0 more bytes needed; errors (sticky):
 *         -EBADMSG malformed status line, header, or chunk framing; conflicting lengths;
 *         -EPROTONOSUPPORT an HTTP version other than 1.x, a transfer coding other than
 *                  chunked, or a 101 Switching Protocols;
 *         -EMSGSIZE a line over HTTP_MAX_LINE, a head over HTTP_MAX_HEAD or more than
 *                  HTTP_MAX_HEADERS fields;
 *         -EFBIG   a body over max_body;
 *         -ENOMEM.
 */
int http_parser_feed(struct http_parser *p, const void *buf, size_t len, size_t *ret_used);
/*
 * The connection ended. @return 1 if that completes the response (a body delimited by the end
 * of the connection, or an already complete response); -ECONNRESET if the response was cut
 * short; or the sticky error.
 */
int http_parser_eof(struct http_parser *p);

/* ---- Client ------------------------------------------------------------------------------- */

struct http_request {
	const char *method;	  /* "GET", "POST", "DELETE", ... (a token) */
	const char *target;	  /* origin form, already escaped: "/v1.41/containers/json?all=1" */
	const char *content_type; /* sent when there is a body; NULL: no Content-Type */
	const void *body;	  /* in-memory body, copied by http_request_start; may be NULL */
	size_t body_len;
	const char *body_file;	  /* or: path of a file streamed as the body (NULL: none) */
	uint32_t timeout_ms;	  /* deadline for the whole exchange; 0 = HTTP_DEFAULT_TIMEOUT_MS */
	size_t max_body;	  /* response body cap; 0 = HTTP_DEFAULT_MAX_BODY */
};

struct http_response {
	int status;
	const char *content_type; /* "" if absent */
	const char *body;	  /* NUL-terminated; "" when empty */
	size_t body_len;
};

struct http_req;

/*
 * Called exactly once per started request, from the loop, after the connection is closed.
 * @err 0 and @resp set (borrowed for the call) when a complete response arrived, whatever its
 * status code; otherwise @resp is NULL and @err is one of: the parser's errors above;
 * -ETIMEDOUT (deadline passed); -ECANCELED (http_request_cancel); -ECONNRESET (connection
 * closed before the response was complete); connect/read/write errors as negative errno
 * (-ENOENT no socket, -ECONNREFUSED no server, -EPIPE, ...); for body_file, open/read errors
 * and -EIO if the file shrank while being sent. @req is invalid after the callback returns.
 */
typedef void (*http_done_cb)(struct http_req *req, int err, const struct http_response *resp,
			     void *ud);

/*
 * Start @rq on a new connection to the unix socket at @socket_path.
 * Strings of @rq and @socket_path are copied; nothing is borrowed past the call.
 * @ret_req (may be NULL) receives a handle for http_request_cancel, valid until @cb returns.
 * @return 0 (then @cb will be called exactly once); -EINVAL a missing or malformed method or
 *         target (CR, LF, SP, control characters), both body and body_file, no callback;
 *         -ENAMETOOLONG socket path longer than a sockaddr_un holds; -ENOMEM. On error @cb is
 *         never called.
 */
int http_request_start(uv_loop_t *loop, const char *socket_path, const struct http_request *rq,
		       http_done_cb cb, void *ud, struct http_req **ret_req);

/*
 * Abort a request: its callback runs later, from the loop, with -ECANCELED (unless the
 * request already completed and its callback is merely pending, in which case the callback
 * still gets -ECANCELED: a cancelled request never reports success). Calling it from the
 * request's own callback is not allowed.
 */
void http_request_cancel(struct http_req *req);

/*
 * Percent-encode @in into @out (size @cap) for use in a target: unreserved characters
 * (RFC 3986) and those in @keep (e.g. "/:@" for a path, "" for a query value) pass through.
 * @return the length written (without NUL); -ENOSPC if @out is too small (then @out is "").
 */
int http_escape(const char *in, const char *keep, char *out, size_t cap);

#endif
