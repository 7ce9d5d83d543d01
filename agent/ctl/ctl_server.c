/*
 * agent/ctl/ctl_server.c: see ctl_server.h for the state machine.
 *
 * Memory: a connection owns two handles (the pipe and its timer) and is freed when both close
 * callbacks have run and no threadpool work of it is pending. A connection whose operation is
 * running when it must close (client gone, server stopping) is marked and closed from the
 * work's after-callback: the work still reads the connection's buffer, which therefore lives
 * until then.
 */
#define _GNU_SOURCE /* struct ucred */
#include "agent/ctl/ctl_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/base/log.h"
#include "agent/ctl/ctl_args.h"

#define CTL_READ_CHUNK	(64 * 1024)
#define CTL_BACKLOG	128

enum conn_state { C_READ, C_WORK, C_WRITE, C_CLOSING };

struct ctl_conn {
	uv_pipe_t pipe;
	uv_timer_t timer;
	struct ctl_server *srv;
	struct ctl_conn *prev, *next;
	enum conn_state state;
	bool close_after_write;	/* framing error: the stream has no usable boundary anymore */
	bool close_after_work;	/* asked to close while an op ran on the threadpool */
	bool waiting_heavy;	/* in the server's heavy queue, not yet on the threadpool */
	struct ctl_conn *heavy_next;
	bool reading;
	int open_handles;
	struct ctl_peer peer;

	uint8_t *buf;		/* received bytes: the current frame, maybe more behind it */
	size_t len, cap;
	size_t frame_len;	/* bytes of the frame being served (header included) */

	const struct ctl_op *op;
	struct ctl_request req;
	uv_work_t work;
	struct ctl_enc out;
	uv_write_t wreq;
};

struct ctl_server {
	uv_loop_t *loop;
	uv_pipe_t listener;
	bool listener_open;
	bool closing;
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	struct ctl_server_opts opts;
	struct ctl_conn *conns;
	_Atomic unsigned nclients;	/* linked connections */
	unsigned nalive;		/* allocated connections (handles maybe closing) */
	unsigned nwork;
	unsigned nheavy;		/* heavy ops on the threadpool */
	struct ctl_conn *heavy_head, *heavy_tail; /* waiting heavy ops, FIFO */
	uint64_t next_conn_id;
	void (*close_cb)(void *ud);
	void *close_ud;
};

static void conn_close(struct ctl_conn *c);
static void conn_process(struct ctl_conn *c);
static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void server_maybe_done(struct ctl_server *s);

unsigned ctl_server_clients(const struct ctl_server *s)
{
	return s ? atomic_load(&s->nclients) : 0;
}

unsigned ctl_server_busy(const struct ctl_server *s)
{
	return s ? s->nwork : 0;
}

/* ---- Connection --------------------------------------------------------------------------- */

static void conn_free(struct ctl_conn *c)
{
	ctl_request_release(&c->req);
	ctl_enc_release(&c->out);
	free(c->buf);
	free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;
	struct ctl_server *s = c->srv;
	if (--c->open_handles > 0)
		return;
	conn_free(c);
	s->nalive--;
	server_maybe_done(s);
}

static void conn_unlink(struct ctl_conn *c)
{
	struct ctl_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else if (s->conns == c)
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	atomic_fetch_sub(&s->nclients, 1);
}

static void conn_close(struct ctl_conn *c)
{
	if (c->state == C_CLOSING)
		return;
	if (c->waiting_heavy) {
		/* Not on the threadpool yet: leave the queue and close now. */
		struct ctl_server *s = c->srv;
		struct ctl_conn **pp = &s->heavy_head, *prev = NULL;
		while (*pp && *pp != c) {
			prev = *pp;
			pp = &(*pp)->heavy_next;
		}
		if (*pp)
			*pp = c->heavy_next;
		if (s->heavy_tail == c)
			s->heavy_tail = prev;
		c->heavy_next = NULL;
		c->waiting_heavy = false;
		c->state = C_READ;
	}
	if (c->state == C_WORK) {
		/* The op still uses c->buf and c->out: close from after_work. */
		c->close_after_work = true;
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->pipe);
			c->reading = false;
		}
		return;
	}
	c->state = C_CLOSING;
	conn_unlink(c);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close((uv_handle_t *)&c->pipe, conn_handle_closed);
}

static void conn_timeout_cb(uv_timer_t *t)
{
	struct ctl_conn *c = t->data;
	if (c->state == C_READ && c->len > 0)
		log_info("ctl: client #%llu (uid %u pid %d): incomplete request after %llu ms, "
			 "disconnecting",
			 (unsigned long long)c->peer.conn_id, c->peer.uid, c->peer.pid,
			 (unsigned long long)c->srv->opts.timeout_ms);
	else if (c->state == C_WRITE)
		log_info("ctl: client #%llu (uid %u pid %d): response not read after %llu ms, "
			 "disconnecting",
			 (unsigned long long)c->peer.conn_id, c->peer.uid, c->peer.pid,
			 (unsigned long long)c->srv->opts.timeout_ms);
	else
		log_debug("ctl: client #%llu idle, disconnecting", (unsigned long long)c->peer.conn_id);
	/* No error frame: a client that does not send or read in time would not read it either,
	 * and writing to it could block on a full socket buffer. */
	conn_close(c);
}

static void conn_timer_restart(struct ctl_conn *c)
{
	uv_timer_start(&c->timer, conn_timeout_cb, c->srv->opts.timeout_ms, 0);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_conn *c = h->data;
	if (c->cap - c->len < CTL_READ_CHUNK) {
		size_t ncap = c->cap ? c->cap * 2 : CTL_READ_CHUNK * 2;
		while (ncap - c->len < CTL_READ_CHUNK)
			ncap *= 2;
		uint8_t *n = realloc(c->buf, ncap);
		if (!n) {
			*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
			return;
		}
		c->buf = n;
		c->cap = ncap;
	}
	*buf = uv_buf_init((char *)c->buf + c->len, CTL_READ_CHUNK);
}

static void conn_write_cb(uv_write_t *w, int status)
{
	struct ctl_conn *c = w->data;
	if (c->state == C_CLOSING)
		return; /* cancelled by the close */
	uv_timer_stop(&c->timer);
	ctl_enc_reset(&c->out);
	c->state = C_READ;
	if (status < 0) {
		log_debug("ctl: client #%llu: write failed: %s", (unsigned long long)c->peer.conn_id,
			  uv_strerror(status));
		conn_close(c);
		return;
	}
	if (c->close_after_write || c->srv->closing) {
		conn_close(c);
		return;
	}
	conn_timer_restart(c);
	conn_process(c);
}

/* Send what c->out holds; consumes the current frame. */
static void conn_send(struct ctl_conn *c)
{
	const uint8_t *buf;
	size_t len;
	int r = ctl_enc_finish(&c->out, &buf, &len);
	if (r < 0) {
		ctl_enc_reset(&c->out);
		ctl_enc_error(&c->out, CTL_E_INTERNAL, "response could not be encoded");
		if (ctl_enc_finish(&c->out, &buf, &len) < 0) {
			conn_close(c);
			return;
		}
	}
	/* The frame is served: drop it from the input. */
	ctl_request_release(&c->req);
	if (c->frame_len) {
		if (c->frame_len > c->len)
			c->frame_len = c->len;
		memmove(c->buf, c->buf + c->frame_len, c->len - c->frame_len);
		c->len -= c->frame_len;
		c->frame_len = 0;
	}
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
	c->state = C_WRITE;
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	c->wreq.data = c;
	r = uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, conn_write_cb);
	if (r < 0) {
		c->state = C_READ;
		conn_close(c);
		return;
	}
	conn_timer_restart(c);
}

static void conn_send_error(struct ctl_conn *c, enum ctl_err e, const char *msg, bool then_close)
{
	ctl_enc_reset(&c->out);
	ctl_enc_error(&c->out, e, msg);
	c->close_after_write = c->close_after_write || then_close;
	conn_send(c);
}

void ctl_op_call(const struct ctl_op *op, void *ud, const struct ctl_request *req,
		 const struct ctl_peer *peer, struct ctl_enc *out)
{
	if (!op->args) {
		op->fn(ud, req, peer, out);
		return;
	}
	void *args = malloc(op->args->size ? op->args->size : 1);
	if (!args) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "out of memory");
		return;
	}
	if (ctl_args_decode(op->args, req, args, out) == 0) {
		op->run(op->of ? op->of(ud) : ud, args, peer, out);
		ctl_args_release(op->args, args);
	}
	free(args);
}

static void work_cb(uv_work_t *w)
{
	struct ctl_conn *c = w->data;
	ctl_op_call(c->op, c->srv->opts.ud, &c->req, &c->peer, &c->out);
}

static void start_work(struct ctl_conn *c);

/* A heavy slot is free: start the oldest waiting heavy op, if any. */
static void heavy_next(struct ctl_server *s)
{
	while (s->heavy_head && s->nheavy < s->opts.max_heavy) {
		struct ctl_conn *c = s->heavy_head;
		s->heavy_head = c->heavy_next;
		if (!s->heavy_head)
			s->heavy_tail = NULL;
		c->heavy_next = NULL;
		c->waiting_heavy = false;
		start_work(c);
	}
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct ctl_conn *c = w->data;
	struct ctl_server *s = c->srv;
	s->nwork--;
	if (c->op->heavy) {
		s->nheavy--;
		heavy_next(s);
	}
	c->state = C_READ;
	if (c->close_after_work) {
		conn_close(c);
		return;
	}
	if (status == UV_ECANCELED) {
		conn_send_error(c, CTL_E_SHUTTING_DOWN, "the agent is stopping", true);
		return;
	}
	conn_send(c);
}

static const struct ctl_op *find_op(const struct ctl_server *s, const char *name)
{
	for (size_t i = 0; i < s->opts.nops; i++)
		if (strcmp(s->opts.ops[i].name, name) == 0)
			return &s->opts.ops[i];
	return NULL;
}

/* Serve the frame at the head of the buffer if it is complete; else wait for more bytes. */
static void conn_process(struct ctl_conn *c)
{
	struct ctl_server *s = c->srv;
	char msg[256];
	uint32_t plen = 0;

	if (c->state != C_READ)
		return;
	int r = ctl_frame_peek(c->buf, c->len, s->opts.max_frame, &plen);
	if (r == -EBADMSG) {
		conn_send_error(c, CTL_E_BAD_FRAME, "frame with a zero length", true);
		return;
	}
	if (r == -EMSGSIZE) {
		snprintf(msg, sizeof msg, "frame of %u bytes over the limit of %u bytes", plen,
			 s->opts.max_frame);
		log_info("ctl: client #%llu (uid %u pid %d): %s", (unsigned long long)c->peer.conn_id,
			 c->peer.uid, c->peer.pid, msg);
		conn_send_error(c, CTL_E_FRAME_TOO_LARGE, msg, true);
		return;
	}
	if (r == 0 || c->len - CTL_FRAME_HDR < plen) {
		if (!c->reading && !s->closing) {
			if (uv_read_start((uv_stream_t *)&c->pipe, conn_alloc_cb,
					  conn_read_cb) == 0)
				c->reading = true;
			else
				conn_close(c);
		}
		return;
	}
	c->frame_len = CTL_FRAME_HDR + (size_t)plen;
	r = ctl_request_decode(c->buf + CTL_FRAME_HDR, plen, &c->req, msg, sizeof msg);
	if (r == -EBADMSG || r == -ENOMEM) {
		log_info("ctl: client #%llu (uid %u pid %d): bad frame: %s",
			 (unsigned long long)c->peer.conn_id, c->peer.uid, c->peer.pid, msg);
		conn_send_error(c, r == -ENOMEM ? CTL_E_INTERNAL : CTL_E_BAD_FRAME, msg, true);
		return;
	}
	if (r < 0) {
		conn_send_error(c, CTL_E_BAD_REQUEST, msg, false);
		return;
	}
	const struct ctl_op *op = find_op(s, c->req.op);
	if (!op) {
		char name[CTL_OP_MAX * 4 + 1];
		size_t j = 0;
		/* The name came from the client: keep the message printable. */
		for (const char *p = c->req.op; *p && j < sizeof name - 1; p++)
			name[j++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
		name[j] = 0;
		snprintf(msg, sizeof msg, "unknown operation \"%.64s\"", name);
		conn_send_error(c, CTL_E_UNKNOWN_OP, msg, false);
		return;
	}
	log_debug("ctl: client #%llu (uid %u pid %d): %s", (unsigned long long)c->peer.conn_id,
		  c->peer.uid, c->peer.pid, op->name);
	ctl_enc_reset(&c->out);
	if (!op->blocking) {
		ctl_op_call(op, s->opts.ud, &c->req, &c->peer, &c->out);
		conn_send(c);
		return;
	}
	c->op = op;
	c->state = C_WORK;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
	uv_timer_stop(&c->timer);
	if (op->heavy && (s->nheavy >= s->opts.max_heavy || s->heavy_head)) {
		log_debug("ctl: client #%llu: %s waits for a free slot (%u running)",
			  (unsigned long long)c->peer.conn_id, op->name, s->nheavy);
		c->waiting_heavy = true;
		if (s->heavy_tail)
			s->heavy_tail->heavy_next = c;
		else
			s->heavy_head = c;
		s->heavy_tail = c;
		return;
	}
	start_work(c);
}

/* Hand c->op to the threadpool (c is in C_WORK). */
static void start_work(struct ctl_conn *c)
{
	struct ctl_server *s = c->srv;
	c->work.data = c;
	int r = uv_queue_work(s->loop, &c->work, work_cb, after_work_cb);
	if (r < 0) {
		c->state = C_READ;
		conn_send_error(c, CTL_E_INTERNAL, uv_strerror(r), false);
		return;
	}
	s->nwork++;
	if (c->op->heavy)
		s->nheavy++;
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = st->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("ctl: client #%llu: read: %s", (unsigned long long)c->peer.conn_id,
				  uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	conn_process(c);
}

static void peer_creds(struct ctl_conn *c)
{
	uv_os_fd_t fd;
	struct ucred cred;
	socklen_t len = sizeof cred;
	c->peer.known = false;
	c->peer.uid = c->peer.gid = UINT32_MAX;
	c->peer.pid = -1;
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof cred) {
		c->peer.known = true;
		c->peer.uid = cred.uid;
		c->peer.gid = cred.gid;
		c->peer.pid = cred.pid;
	}
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct ctl_server *s = listener->data;
	if (status < 0) {
		log_warning("ctl: accept: %s", uv_strerror(status));
		return;
	}
	struct ctl_conn *c = calloc(1, sizeof *c);
	if (!c) {
		log_error("ctl: out of memory accepting a client");
		return;
	}
	c->srv = s;
	ctl_enc_init(&c->out);
	if (uv_pipe_init(s->loop, &c->pipe, 0) < 0) {
		conn_free(c);
		return;
	}
	s->nalive++;
	c->pipe.data = c;
	c->open_handles = 1;
	uv_timer_init(s->loop, &c->timer); /* cannot fail */
	c->timer.data = c;
	c->open_handles = 2;
	c->state = C_READ;
	/* Link first so conn_close can unlink whatever happens next. */
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	atomic_fetch_add(&s->nclients, 1);
	c->peer.conn_id = ++s->next_conn_id;

	int r = uv_accept(listener, (uv_stream_t *)&c->pipe);
	if (r < 0) {
		log_warning("ctl: accept: %s", uv_strerror(r));
		conn_close(c);
		return;
	}
	peer_creds(c);
	if (atomic_load(&s->nclients) > s->opts.max_clients || s->closing) {
		char msg[128];
		snprintf(msg, sizeof msg, "too many clients (%u at most), try again",
			 s->opts.max_clients);
		log_info("ctl: client #%llu (uid %u pid %d) refused: %s",
			    (unsigned long long)c->peer.conn_id, c->peer.uid, c->peer.pid, msg);
		conn_send_error(c, s->closing ? CTL_E_SHUTTING_DOWN : CTL_E_BUSY,
				s->closing ? "the agent is stopping" : msg, true);
		return;
	}
	log_debug("ctl: client #%llu connected (uid %u gid %u pid %d)",
		  (unsigned long long)c->peer.conn_id, c->peer.uid, c->peer.gid, c->peer.pid);
	conn_timer_restart(c);
	if (uv_read_start((uv_stream_t *)&c->pipe, conn_alloc_cb, conn_read_cb) == 0)
		c->reading = true;
	else
		conn_close(c);
}

/* ---- Server ----------------------------------------------------------------------------------- */

static int mkdir_parents(const char *path, char *err, size_t errlen)
{
	char *dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	int r = 0;
	if (!slash || slash == dir)
		goto out;
	*slash = 0;
	for (char *p = dir + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char saved = *p;
			*p = 0;
			if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
				r = -errno;
				snprintf(err, errlen, "cannot create directory %s: %s", dir,
					 strerror(errno));
				goto out;
			}
			*p = saved;
			if (saved == 0)
				break;
		}
	}
out:
	free(dir);
	return r;
}

/* An existing socket file: is someone accepting on it? */
static int probe_existing(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket; refusing to replace it", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	int e = errno;
	close(fd);
	/* EAGAIN: a live listener with a full backlog. */
	if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
		snprintf(err, errlen, "another agent is listening on %s", path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe existing socket %s: %s", path, strerror(e));
		return -e;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		r = -errno;
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
		return r;
	}
	log_notice("ctl: removed stale socket %s", path);
	return 0;
}

static void listener_closed(uv_handle_t *h)
{
	struct ctl_server *s = h->data;
	s->listener_open = false;
	server_maybe_done(s);
}

static void server_free(struct ctl_server *s)
{
	free(s->path);
	free(s);
}

int ctl_server_new(uv_loop_t *loop, const struct ctl_server_opts *opts, struct ctl_server **ret,
		   char *err, size_t errlen)
{
	struct ctl_server *s = calloc(1, sizeof *s);
	struct sockaddr_un sa;
	int r;
	char dummy[1];
	if (!err) {
		err = dummy;
		errlen = sizeof dummy;
	}
	err[0] = 0;
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->opts = *opts;
	if (strlen(opts->path) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "socket path too long: %s", opts->path);
		r = -ENAMETOOLONG;
		goto fail;
	}
	if (!(s->path = strdup(opts->path))) {
		r = -ENOMEM;
		goto fail;
	}
	s->opts.path = s->path;
	s->opts.group = NULL; /* not kept: used only here */
	if (s->opts.max_heavy == 0)
		s->opts.max_heavy = 2;

	gid_t gid = (gid_t)-1;
	if (opts->group) {
		struct group gr, *res = NULL;
		char gbuf[4096];
		int e = getgrnam_r(opts->group, &gr, gbuf, sizeof gbuf, &res);
		if (e == 0 && res) {
			gid = res->gr_gid;
		} else if (opts->group_required) {
			snprintf(err, errlen, "socket group \"%s\" does not exist", opts->group);
			r = -ENOENT;
			goto fail;
		} else {
			log_debug("ctl: group %s does not exist; socket keeps the agent's group",
				  opts->group);
		}
	}
	r = mkdir_parents(s->path, err, errlen);
	if (r < 0)
		goto fail;
	r = probe_existing(s->path, err, errlen);
	if (r < 0)
		goto fail;
	r = uv_pipe_init(loop, &s->listener, 0);
	if (r < 0)
		goto fail;
	s->listener.data = s;
	s->listener_open = true;
	r = uv_pipe_bind(&s->listener, s->path);
	if (r < 0) {
		snprintf(err, errlen, "cannot bind %s: %s", s->path, uv_strerror(r));
		goto fail_handle;
	}
	/* Nobody can connect before listen(): setting mode and group here leaves no window. */
	struct stat st;
	if (chmod(s->path, opts->mode) < 0 || (gid != (gid_t)-1 && chown(s->path, (uid_t)-1, gid) < 0) ||
	    stat(s->path, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot set mode/group of %s: %s", s->path, strerror(errno));
		unlink(s->path);
		goto fail_handle;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	r = uv_listen((uv_stream_t *)&s->listener, CTL_BACKLOG, on_connection);
	if (r < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", s->path, uv_strerror(r));
		unlink(s->path);
		goto fail_handle;
	}
	*ret = s;
	return 0;

fail_handle:
	/* The handle was initialised: it must be closed, and freed only in its callback. Run the
	 * loop once for it so the caller sees no leftover handle. */
	s->closing = true;
	uv_close((uv_handle_t *)&s->listener, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
fail:
	if (!err[0])
		snprintf(err, errlen, "control socket %s: %s", opts->path, strerror(-r));
	server_free(s);
	return r;
}

static void server_maybe_done(struct ctl_server *s)
{
	/* Done when the listener, every connection's handles and every op have finished. */
	if (!s->closing || s->listener_open || s->conns || s->nwork || s->nalive)
		return;
	void (*cb)(void *) = s->close_cb;
	void *ud = s->close_ud;
	s->close_cb = NULL;
	server_free(s);
	if (cb)
		cb(ud);
}

void ctl_server_close(struct ctl_server *s, void (*cb)(void *ud), void *ud)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_ud = ud;
	/* Remove the socket file only if it is still ours (not replaced by another agent). */
	struct stat st;
	if (lstat(s->path, &st) == 0 && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
		unlink(s->path);
	uv_close((uv_handle_t *)&s->listener, listener_closed);
	for (struct ctl_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		conn_close(c);
	}
	/* Connections still running an op stay linked until their work ends. */
}
