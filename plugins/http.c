/*
 * plugins/http.c: the HTTP/1.1 response parser and the unix-socket client (see http.h).
 *
 * The parser is a byte-driven state machine. Lines (status line, header fields, chunk-size
 * lines, trailers) are collected into a fixed buffer, so no input can make it allocate more
 * than HTTP_MAX_LINE for framing; only the body grows, and only up to max_body.
 *
 * The client is one object per request that owns a pipe, a timer and, for file bodies, one
 * uv_fs_t at a time. It finishes in one place (req_finish): record the result, close the
 * handles; the user's callback runs when the last handle is closed and no file read is in
 * flight, so the callback never races a libuv request that still points into the object.
 */
#include "plugins/http.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ---- Parser ------------------------------------------------------------------------------ */

enum {
	ST_STATUS = 0,
	ST_HEADER,
	ST_BODY_LEN,
	ST_BODY_EOF,
	ST_CHUNK_SIZE,
	ST_CHUNK_DATA,
	ST_CHUNK_CR,
	ST_CHUNK_LF,
	ST_TRAILER,
	ST_DONE,
};

/* Content-Length beyond this is refused outright (also keeps additions overflow-free). */
#define HTTP_MAX_LENGTH ((uint64_t)1 << 53)

void http_parser_init(struct http_parser *p, size_t max_body, bool no_body)
{
	memset(p, 0, offsetof(struct http_parser, line));
	p->line[0] = '\0';
	p->max_body = max_body ? max_body : HTTP_DEFAULT_MAX_BODY;
	p->no_body = no_body;
	p->state = ST_STATUS;
}

void http_parser_release(struct http_parser *p)
{
	free(p->body);
	p->body = NULL;
	p->body_len = 0;
	p->body_cap = 0;
}

static int fail(struct http_parser *p, int err)
{
	p->err = err;
	return err;
}

static bool is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value / reason-phrase characters: HTAB, SP, VCHAR, obs-text. */
static bool is_text(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool all_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_text((unsigned char)s[i]))
			return false;
	return true;
}

static bool ieq(const char *a, size_t alen, const char *lit)
{
	size_t n = strlen(lit);
	if (alen != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char x = a[i], y = lit[i];
		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

/*
 * Collect one CRLF-terminated line into p->line. Returns 1 when complete (p->line is the line
 * without CRLF, NUL-terminated, p->line_len its length; the next call starts a new line), 0
 * when the input ran out first, or an error. @count_head: the bytes count against
 * HTTP_MAX_HEAD.
 */
static int take_line(struct http_parser *p, const uint8_t *buf, size_t len, size_t *i,
		     bool count_head)
{
	while (*i < len) {
		unsigned char c = buf[(*i)++];
		if (count_head && ++p->head_len > HTTP_MAX_HEAD)
			return fail(p, -EMSGSIZE);
		if (c == '\n') {
			if (p->line_len == 0 || p->line[p->line_len - 1] != '\r')
				return fail(p, -EBADMSG); /* bare LF */
			p->line[--p->line_len] = '\0';
			return 1;
		}
		if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
			return fail(p, -EBADMSG); /* bare CR */
		if (c == '\0')
			return fail(p, -EBADMSG);
		if (p->line_len >= HTTP_MAX_LINE - 1)
			return fail(p, -EMSGSIZE);
		p->line[p->line_len++] = (char)c;
	}
	return 0;
}

static int parse_status(struct http_parser *p)
{
	const char *l = p->line;
	size_t n = p->line_len;
	/* HTTP-version SP status-code [SP reason-phrase] */
	if (n < 12 || memcmp(l, "HTTP/", 5) != 0)
		return fail(p, -EBADMSG);
	if (l[5] < '0' || l[5] > '9' || l[6] != '.' || l[7] < '0' || l[7] > '9' || l[8] != ' ')
		return fail(p, -EBADMSG);
	if (l[5] != '1')
		return fail(p, -EPROTONOSUPPORT);
	int st = 0;
	for (int k = 9; k < 12; k++) {
		if (l[k] < '0' || l[k] > '9')
			return fail(p, -EBADMSG);
		st = st * 10 + (l[k] - '0');
	}
	if (st < 100 || st > 599)
		return fail(p, -EBADMSG);
	if (n > 12 && (l[12] != ' ' || !all_text(l + 13, n - 13)))
		return fail(p, -EBADMSG);
	p->status = st;
	return 0;
}

static int parse_length(struct http_parser *p, const char *v, size_t n)
{
	if (n == 0 || n > 16)
		return fail(p, n ? -EFBIG : -EBADMSG);
	uint64_t x = 0;
	for (size_t k = 0; k < n; k++) {
		if (v[k] < '0' || v[k] > '9')
			return fail(p, -EBADMSG);
		x = x * 10 + (uint64_t)(v[k] - '0');
	}
	if (x > HTTP_MAX_LENGTH)
		return fail(p, -EFBIG);
	if (p->has_length && p->content_length != x)
		return fail(p, -EBADMSG);
	p->has_length = true;
	p->content_length = x;
	return 0;
}

static int parse_te(struct http_parser *p, const char *v, size_t n)
{
	size_t k = 0;
	while (k <= n) {
		size_t e = k;
		while (e < n && v[e] != ',')
			e++;
		size_t a = k, b = e;
		while (a < b && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		if (a == b)
			return fail(p, -EBADMSG);
		if (!ieq(v + a, b - a, "chunked"))
			return fail(p, -EPROTONOSUPPORT);
		if (p->chunked)
			return fail(p, -EBADMSG); /* chunked applied twice */
		p->chunked = true;
		k = e + 1;
	}
	return 0;
}

/* One header (or trailer) field line. @use: act on it (false for trailers). */
static int parse_field(struct http_parser *p, bool use)
{
	const char *l = p->line;
	size_t n = p->line_len;
	if (++p->nheaders > HTTP_MAX_HEADERS)
		return fail(p, -EMSGSIZE);
	if (l[0] == ' ' || l[0] == '\t')
		return fail(p, -EBADMSG); /* obsolete line folding */
	size_t c = 0;
	while (c < n && is_tchar((unsigned char)l[c]))
		c++;
	if (c == 0 || c >= n || l[c] != ':')
		return fail(p, -EBADMSG);
	const char *v = l + c + 1;
	size_t vn = n - c - 1;
	while (vn && (*v == ' ' || *v == '\t'))
		v++, vn--;
	while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
		vn--;
	if (!all_text(v, vn))
		return fail(p, -EBADMSG);
	if (!use)
		return 0;
	if (ieq(l, c, "content-length"))
		return parse_length(p, v, vn);
	if (ieq(l, c, "transfer-encoding"))
		return parse_te(p, v, vn);
	if (ieq(l, c, "content-type")) {
		size_t m = vn < sizeof p->content_type - 1 ? vn : sizeof p->content_type - 1;
		memcpy(p->content_type, v, m);
		p->content_type[m] = '\0';
	}
	return 0;
}

/* The empty line after the headers: decide how the body is delimited. */
static int end_of_head(struct http_parser *p)
{
	if (p->status < 200) {
		if (p->status == 101)
			return fail(p, -EPROTONOSUPPORT);
		/* Interim response (100 Continue, 102, 103): skip it, read the next status line.
		 * Its bytes keep counting against HTTP_MAX_HEAD, so a server cannot stream them
		 * forever. */
		p->has_length = p->chunked = false;
		p->content_length = 0;
		p->content_type[0] = '\0';
		p->nheaders = 0;
		p->state = ST_STATUS;
		return 0;
	}
	if (p->chunked && p->has_length)
		return fail(p, -EBADMSG); /* request smuggling territory: refuse */
	if (p->no_body || p->status == 204 || p->status == 304) {
		p->state = ST_DONE;
		return 0;
	}
	if (p->chunked) {
		p->state = ST_CHUNK_SIZE;
		return 0;
	}
	if (p->has_length) {
		if (p->content_length > p->max_body)
			return fail(p, -EFBIG);
		p->left = p->content_length;
		if (p->left) {
			p->body = malloc((size_t)p->left + 1);
			if (!p->body)
				return fail(p, -ENOMEM);
			p->body_cap = (size_t)p->left;
		}
		p->state = p->left ? ST_BODY_LEN : ST_DONE;
		return 0;
	}
	p->state = ST_BODY_EOF;
	return 0;
}

static int body_append(struct http_parser *p, const uint8_t *b, size_t n)
{
	if (n > p->max_body - p->body_len)
		return fail(p, -EFBIG);
	if (p->body_len + n > p->body_cap) {
		size_t cap = p->body_cap ? p->body_cap : 4096;
		while (cap < p->body_len + n)
			cap = cap > p->max_body / 2 ? p->max_body : cap * 2;
		uint8_t *nb = realloc(p->body, cap + 1);
		if (!nb)
			return fail(p, -ENOMEM);
		p->body = nb;
		p->body_cap = cap;
	}
	memcpy(p->body + p->body_len, b, n);
	p->body_len += n;
	p->body[p->body_len] = '\0';
	return 0;
}

static int parse_chunk_size(struct http_parser *p)
{
	const char *l = p->line;
	size_t n = p->line_len, k = 0;
	uint64_t x = 0;
	while (k < n) {
		char c = l[k];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		if (x > (HTTP_MAX_LENGTH >> 4))
			return fail(p, -EFBIG);
		x = (x << 4) | (uint64_t)d;
		k++;
	}
	if (k == 0)
		return fail(p, -EBADMSG);
	/* chunk-ext: *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ); checked for characters
	 * only, ignored. */
	size_t e = k;
	while (e < n && (l[e] == ' ' || l[e] == '\t'))
		e++;
	if (e < n && (l[e] != ';' || !all_text(l + e, n - e)))
		return fail(p, -EBADMSG);
	if (e == n && e != k)
		return fail(p, -EBADMSG); /* trailing whitespace without an extension */
	if (x > p->max_body - p->body_len)
		return fail(p, -EFBIG);
	p->left = x;
	p->state = x ? ST_CHUNK_DATA : ST_TRAILER;
	return 0;
}

int http_parser_feed(struct http_parser *p, const void *buf, size_t len, size_t *ret_used)
{
	const uint8_t *b = buf;
	size_t i = 0;
	int r = 0;

	if (p->err)
		return p->err;
	while (p->state != ST_DONE && i < len) {
		switch (p->state) {
		case ST_STATUS:
		case ST_HEADER:
		case ST_TRAILER:
			r = take_line(p, b, len, &i, true);
			if (r <= 0)
				break;
			if (p->state == ST_STATUS) {
				r = parse_status(p);
				p->state = ST_HEADER;
			} else if (p->line[0] == '\0') {
				r = p->state == ST_HEADER ? end_of_head(p) : 0;
				if (p->state == ST_TRAILER)
					p->state = ST_DONE;
			} else {
				r = parse_field(p, p->state == ST_HEADER);
			}
			p->line_len = 0;
			break;
		case ST_CHUNK_SIZE:
			r = take_line(p, b, len, &i, false);
			if (r <= 0)
				break;
			r = parse_chunk_size(p);
			p->line_len = 0;
			break;
		case ST_BODY_LEN:
		case ST_CHUNK_DATA: {
			size_t n = len - i;
			if (n > p->left)
				n = (size_t)p->left;
			r = body_append(p, b + i, n);
			if (r < 0)
				break;
			i += n;
			p->left -= n;
			if (p->left == 0)
				p->state = p->state == ST_BODY_LEN ? ST_DONE : ST_CHUNK_CR;
			break;
		}
		case ST_BODY_EOF:
			r = body_append(p, b + i, len - i);
			if (r == 0)
				i = len;
			break;
		case ST_CHUNK_CR:
			r = b[i++] == '\r' ? 0 : fail(p, -EBADMSG);
			p->state = ST_CHUNK_LF;
			break;
		case ST_CHUNK_LF:
			r = b[i++] == '\n' ? 0 : fail(p, -EBADMSG);
			p->state = ST_CHUNK_SIZE;
			break;
		}
		if (r < 0)
			return p->err ? p->err : fail(p, r);
	}
	if (ret_used)
		*ret_used = i;
	return p->state == ST_DONE ? 1 : 0;
}

int http_parser_eof(struct http_parser *p)
{
	if (p->err)
		return p->err;
	if (p->state == ST_BODY_EOF)
		p->state = ST_DONE;
	if (p->state == ST_DONE)
		return 1;
	return fail(p, -ECONNRESET);
}

/* ---- Client ------------------------------------------------------------------------------ */

#define HTTP_IO_CHUNK (64 * 1024)

struct http_req {
	uv_loop_t *loop;
	http_done_cb cb;
	void *ud;
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t write;
	uv_fs_t fs;
	bool pipe_open, timer_open, fs_busy, finished, called;
	int err;
	struct http_parser parser;

	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *head;		/* request line + headers */
	size_t head_len;
	uint8_t *body;		/* in-memory body (copy) */
	size_t body_len;
	char *file_path;	/* streamed body */
	uv_file file;		/* -1 when not open */
	uint64_t file_size, file_sent;
	char *io;		/* HTTP_IO_CHUNK bytes: file read buffer */
	char rbuf[HTTP_IO_CHUNK]; /* socket read buffer */
};

static void req_free(struct http_req *r)
{
	if (r->file >= 0) {
		uv_fs_t fs;
		uv_fs_close(NULL, &fs, r->file, NULL); /* synchronous; a local close */
		uv_fs_req_cleanup(&fs);
	}
	http_parser_release(&r->parser);
	free(r->head);
	free(r->body);
	free(r->file_path);
	free(r->io);
	free(r);
}

/* Called when a handle closed or a file request returned: deliver and free once idle. */
static void req_maybe_done(struct http_req *r)
{
	if (r->pipe_open || r->timer_open || r->fs_busy || !r->finished)
		return;
	if (!r->called) {
		r->called = true;
		if (r->err == 0) {
			struct http_response resp = {
				.status = r->parser.status,
				.content_type = r->parser.content_type,
				.body = r->parser.body ? (const char *)r->parser.body : "",
				.body_len = r->parser.body_len,
			};
			r->cb(r, 0, &resp, r->ud);
		} else {
			r->cb(r, r->err, NULL, r->ud);
		}
	}
	req_free(r);
}

static void on_pipe_close(uv_handle_t *h)
{
	struct http_req *r = h->data;
	r->pipe_open = false;
	req_maybe_done(r);
}

static void on_timer_close(uv_handle_t *h)
{
	struct http_req *r = h->data;
	r->timer_open = false;
	req_maybe_done(r);
}

/* The one exit: keep the first result, close everything. */
static void req_finish(struct http_req *r, int err)
{
	if (r->finished)
		return;
	r->finished = true;
	r->err = err;
	if (r->timer_open && !uv_is_closing((uv_handle_t *)&r->timer))
		uv_close((uv_handle_t *)&r->timer, on_timer_close);
	if (r->pipe_open && !uv_is_closing((uv_handle_t *)&r->pipe))
		uv_close((uv_handle_t *)&r->pipe, on_pipe_close);
	req_maybe_done(r);
}

static void on_timeout(uv_timer_t *t)
{
	req_finish(t->data, -ETIMEDOUT);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct http_req *r = h->data;
	*buf = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct http_req *r = s->data;
	int rc;

	if (r->finished)
		return;
	if (n == UV_EOF) {
		rc = http_parser_eof(&r->parser);
		req_finish(r, rc == 1 ? 0 : rc);
		return;
	}
	if (n < 0) {
		req_finish(r, (int)n);
		return;
	}
	rc = http_parser_feed(&r->parser, buf->base, (size_t)n, NULL);
	if (rc != 0)
		req_finish(r, rc == 1 ? 0 : rc); /* bytes after a complete response are ignored */
}

static void send_file_piece(struct http_req *r);

static void on_write(uv_write_t *w, int status)
{
	struct http_req *r = w->data;
	if (r->finished)
		return;
	if (status < 0) {
		/* The server may answer and close before reading the whole body (e.g. 400 on a
		 * bad archive): keep reading; the response, or EOF, decides. */
		if (status == UV_EPIPE || status == UV_ECONNRESET)
			return;
		req_finish(r, status);
		return;
	}
	if (r->file_path && r->file_sent < r->file_size)
		send_file_piece(r);
}

static void on_file_read(uv_fs_t *fs)
{
	struct http_req *r = fs->data;
	ssize_t n = fs->result;
	uv_fs_req_cleanup(fs);
	r->fs_busy = false;
	if (r->finished) {
		req_maybe_done(r);
		return;
	}
	if (n < 0) {
		req_finish(r, (int)n);
		return;
	}
	if (n == 0) {
		req_finish(r, -EIO); /* the file shrank after we announced its length */
		return;
	}
	r->file_sent += (uint64_t)n;
	uv_buf_t b = uv_buf_init(r->io, (unsigned)n);
	r->write.data = r;
	int rc = uv_write(&r->write, (uv_stream_t *)&r->pipe, &b, 1, on_write);
	if (rc < 0)
		req_finish(r, rc);
}

static void send_file_piece(struct http_req *r)
{
	uint64_t want = r->file_size - r->file_sent;
	if (want > HTTP_IO_CHUNK)
		want = HTTP_IO_CHUNK;
	uv_buf_t b = uv_buf_init(r->io, (unsigned)want);
	r->fs.data = r;
	int rc = uv_fs_read(r->loop, &r->fs, r->file, &b, 1, (int64_t)r->file_sent, on_file_read);
	if (rc < 0) {
		uv_fs_req_cleanup(&r->fs);
		req_finish(r, rc);
		return;
	}
	r->fs_busy = true;
}

static void on_connect(uv_connect_t *c, int status)
{
	struct http_req *r = c->data;
	if (r->finished)
		return;
	if (status < 0) {
		req_finish(r, status);
		return;
	}
	int rc = uv_read_start((uv_stream_t *)&r->pipe, on_alloc, on_read);
	if (rc < 0) {
		req_finish(r, rc);
		return;
	}
	uv_buf_t b[2];
	unsigned nb = 0;
	b[nb++] = uv_buf_init(r->head, (unsigned)r->head_len);
	if (r->body_len)
		b[nb++] = uv_buf_init((char *)r->body, (unsigned)r->body_len);
	r->write.data = r;
	rc = uv_write(&r->write, (uv_stream_t *)&r->pipe, b, nb, on_write);
	if (rc < 0)
		req_finish(r, rc);
}

static int build_head(struct http_req *r, const struct http_request *rq, uint64_t body_len,
		      bool has_body)
{
	char extra[256] = "";
	if (has_body) {
		int n = snprintf(extra, sizeof extra, "%s%s%sContent-Length: %llu\r\n",
				 rq->content_type ? "Content-Type: " : "",
				 rq->content_type ? rq->content_type : "",
				 rq->content_type ? "\r\n" : "", (unsigned long long)body_len);
		if (n < 0 || (size_t)n >= sizeof extra)
			return -EINVAL;
	}
	const char *fmt = "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: shoal/" SHOAL_VERSION
			  "\r\nAccept: application/json\r\nConnection: close\r\n%s\r\n";
	int n = snprintf(NULL, 0, fmt, rq->method, rq->target, extra);
	if (n < 0)
		return -EINVAL;
	r->head = malloc((size_t)n + 1);
	if (!r->head)
		return -ENOMEM;
	snprintf(r->head, (size_t)n + 1, fmt, rq->method, rq->target, extra);
	r->head_len = (size_t)n;
	return 0;
}

static void start_connect(struct http_req *r)
{
	uv_pipe_init(r->loop, &r->pipe, 0);
	r->pipe.data = r;
	r->pipe_open = true;
	r->connect.data = r;
	uv_pipe_connect(&r->connect, &r->pipe, r->sock_path, on_connect);
}

static int http_head_for_file(struct http_req *r);

static void on_file_open(uv_fs_t *fs)
{
	struct http_req *r = fs->data;
	int rc = (int)fs->result;
	uv_fs_req_cleanup(fs);
	r->fs_busy = false;
	if (rc >= 0)
		r->file = rc;
	if (r->finished) {
		req_maybe_done(r);
		return;
	}
	if (rc < 0) {
		req_finish(r, rc);
		return;
	}
	rc = http_head_for_file(r);
	if (rc < 0)
		req_finish(r, rc);
}

static bool valid_token(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return false;
	return true;
}

static bool valid_target(const char *s)
{
	if (!s || *s != '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static bool valid_value(const char *s)
{
	for (; s && *s; s++)
		if (!is_text((unsigned char)*s) || *s == '\t')
			return false;
	return true;
}

/*
 * For a file body the head is built once the file's size is known. The method, target and
 * content type are kept in r->head meanwhile as three NUL-separated strings.
 */
static int http_head_for_file(struct http_req *r)
{
	uv_fs_t st;
	int rc = uv_fs_fstat(NULL, &st, r->file, NULL); /* fstat of an open fd: never blocks */
	if (rc < 0) {
		uv_fs_req_cleanup(&st);
		return rc;
	}
	bool reg = (st.statbuf.st_mode & S_IFMT) == S_IFREG;
	r->file_size = st.statbuf.st_size;
	uv_fs_req_cleanup(&st);
	if (!reg)
		return -EINVAL;
	char *saved = r->head;
	const char *method = saved;
	const char *target = method + strlen(method) + 1;
	const char *ctype = target + strlen(target) + 1;
	struct http_request rq = {
		.method = method,
		.target = target,
		.content_type = *ctype ? ctype : NULL,
	};
	r->head = NULL;
	rc = build_head(r, &rq, r->file_size, true);
	free(saved);
	if (rc < 0)
		return rc;
	r->io = malloc(HTTP_IO_CHUNK);
	if (!r->io)
		return -ENOMEM;
	start_connect(r);
	return 0;
}

/*
 * A server that answers early and closes (e.g. 400 on a broken archive) makes our next write
 * fail; libuv writes without MSG_NOSIGNAL, so under the default disposition that write would
 * kill the process with SIGPIPE instead of returning EPIPE. Ignore it unless the program
 * chose a handler of its own.
 */
static void ignore_sigpipe(void)
{
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
	    !(sa.sa_flags & SA_SIGINFO)) {
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

int http_request_start(uv_loop_t *loop, const char *socket_path, const struct http_request *rq,
		       http_done_cb cb, void *ud, struct http_req **ret_req)
{
	struct http_req *r = NULL;
	int rc;

	if (!loop || !socket_path || !rq || !cb || !valid_token(rq->method) ||
	    !valid_target(rq->target) || !valid_value(rq->content_type) ||
	    (rq->body_len && !rq->body) || (rq->body_len && rq->body_file))
		return -EINVAL;
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	ignore_sigpipe();
	r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->loop = loop;
	r->cb = cb;
	r->ud = ud;
	r->file = -1;
	snprintf(r->sock_path, sizeof r->sock_path, "%s", socket_path);
	http_parser_init(&r->parser, rq->max_body, strcmp(rq->method, "HEAD") == 0);

	bool has_body = rq->body_len || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT");
	if (rq->body_file) {
		/* method \0 target \0 content_type \0, turned into the real head after fstat */
		size_t a = strlen(rq->method), b = strlen(rq->target);
		size_t c = rq->content_type ? strlen(rq->content_type) : 0;
		r->head = malloc(a + b + c + 3);
		r->file_path = strdup(rq->body_file);
		if (!r->head || !r->file_path) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(r->head, rq->method, a + 1);
		memcpy(r->head + a + 1, rq->target, b + 1);
		memcpy(r->head + a + b + 2, c ? rq->content_type : "", c + 1);
	} else {
		if (rq->body_len) {
			r->body = malloc(rq->body_len);
			if (!r->body) {
				rc = -ENOMEM;
				goto out;
			}
			memcpy(r->body, rq->body, rq->body_len);
			r->body_len = rq->body_len;
		}
		rc = build_head(r, rq, rq->body_len, has_body);
		if (rc < 0)
			goto out;
	}

	if (r->file_path) {
		r->fs.data = r;
		rc = uv_fs_open(loop, &r->fs, r->file_path, O_RDONLY | O_CLOEXEC, 0, on_file_open);
		if (rc < 0) {
			uv_fs_req_cleanup(&r->fs);
			goto out;
		}
		r->fs_busy = true;
	}
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	r->timer_open = true;
	uv_timer_start(&r->timer, on_timeout, rq->timeout_ms ? rq->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS,
		       0);
	if (!r->file_path)
		start_connect(r);
	if (ret_req)
		*ret_req = r;
	return 0;
out:
	req_free(r);
	return rc;
}

void http_request_cancel(struct http_req *r)
{
	if (!r)
		return;
	r->err = -ECANCELED;
	if (!r->finished)
		req_finish(r, -ECANCELED);
}

int http_escape(const char *in, const char *keep, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *s = (const unsigned char *)in; *s; s++) {
		bool plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
			     (*s >= '0' && *s <= '9') || strchr("-._~", *s) ||
			     (keep && strchr(keep, *s));
		size_t need = plain ? 1 : 3;
		if (o + need >= cap) {
			if (cap)
				out[0] = '\0';
			return -ENOSPC;
		}
		if (plain) {
			out[o++] = (char)*s;
		} else {
			out[o++] = '%';
			out[o++] = hex[*s >> 4];
			out[o++] = hex[*s & 15];
		}
	}
	if (o >= cap)
		return -ENOSPC;
	out[o] = '\0';
	return (int)o;
}
