/*
 * traffic/lb.c: the libuv driver of one HAProxy backend (see traffic/traffic.h for the
 * contract). One operation at a time, each on its own connection to the stats socket:
 *
 *   pass:   connect, "prompt", "show servers state B", plan, each command in turn,
 *           "show servers state B" again and re-plan: anything still to do is an error
 *   query:  connect, "prompt", "show stat B 4 -1" (the servers of B), find the address
 *
 * Every step arms the one operation timer (cfg.timeout_ms). A failure closes the connection
 * and reports once; a pass that failed is retried with a backoff; a pass that succeeded is
 * repeated every cfg.resync_ms to catch a restarted HAProxy.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "traffic/traffic.h"
#include "traffic/traffic_int.h"

#define RBUF_MAX	(8u << 20)	/* largest answer we accept (show stat of 4096 servers) */
#define MSG_MAX		512

enum op_kind { OP_NONE, OP_PASS, OP_QUERY };
enum step {
	ST_CONNECT,
	ST_PROMPT,
	ST_STATE1,	/* pass: the state to plan against */
	ST_CMD,		/* pass: command lb->cmd_i */
	ST_STATE2,	/* pass: the state to verify */
	ST_STAT,	/* query: show stat */
};

struct ep_copy {
	char node[TRAFFIC_NAME_MAX + 1];
	char site[TRAFFIC_NAME_MAX + 1];
	char addr[TRAFFIC_ADDR_MAX + 1];
	char rev[TRAFFIC_REV_MAX + 1];
};

struct eps {
	struct traffic_endpoint *v;
	struct ep_copy *c;
	size_t n;
};

struct query {
	struct query *next;
	struct traffic__ip ip;
	uint16_t port;
	traffic_sessions_cb cb;
	void *ud;
};

struct conn {
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
		uv_handle_t h;
		uv_stream_t s;
	} h;
	uv_connect_t creq;
	struct traffic_lb *lb;
	bool dead;		/* closed: ignore every late callback */
};

struct wr {
	uv_write_t req;
	struct conn *c;
	size_t len;
	char buf[];
};

struct traffic_lb {
	uv_loop_t *loop;
	traffic_event_cb cb;
	void *ud;
	/* configuration (copied) */
	bool is_unix;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sockaddr_storage sa;
	char sock_text[160];
	char backend[TRAFFIC_NAME_MAX + 1];
	char prefix[TRAFFIC_NAME_MAX + 1];
	char site[TRAFFIC_NAME_MAX + 1];
	unsigned permille;
	uint32_t timeout_ms, resync_ms, retry_ms, backoff_ms;
	/* input */
	struct eps cur, next;
	bool have_input, have_next, dirty;
	bool retry_wait;	/* a pass failed: the next one waits backoff_ms */
	bool check_wait;	/* the last pass left a local endpoint waiting for HAProxy's
				 * check (plan.local_waiting): the next pass comes in retry_ms */
	struct query *qhead, *qtail;
	/* the operation in flight */
	enum op_kind op;
	enum step step;
	struct conn *conn;
	char last_cmd[TRAFFIC_CMD_MAX];
	char *rbuf;
	size_t rlen, rcap;
	struct traffic_server *servers;
	size_t nservers;
	const char **slots;
	size_t nslots;
	struct traffic_plan plan;
	size_t cmd_i, nrefused;
	/* reporting: identical reports are not repeated until something changes */
	char last_err[MSG_MAX];
	char last_unplaced[MSG_MAX];
	int last_failover;	/* -1 unknown */
	uint64_t refused_seen[64];	/* hashes of refusals reported since the last good pass */
	size_t nrefused_seen;
	bool reported_ok;
	struct traffic_lb_stats stats;
	/* lifetime */
	uv_timer_t t_op, t_resync;
	int nhandles;
	bool closing;
	void (*close_cb)(void *ud);
	void *close_ud;
};

static void kick(struct traffic_lb *lb);
static void op_fail(struct traffic_lb *lb, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------------------------------- */
/* Endpoint copies                                                                           */

static void eps_free(struct eps *e)
{
	free(e->v);
	free(e->c);
	memset(e, 0, sizeof *e);
}

static bool copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= cap)
		return false;
	memcpy(dst, src ? src : "", n + 1);
	return true;
}

static int eps_copy(struct eps *ret, const struct traffic_endpoint *in, size_t n)
{
	struct eps e = { 0 };
	struct traffic__ip ip;
	if (n > TRAFFIC_ENDPOINTS_MAX || (n && !in))
		return -EINVAL;
	e.v = calloc(n ? n : 1, sizeof *e.v);
	e.c = calloc(n ? n : 1, sizeof *e.c);
	if (!e.v || !e.c) {
		eps_free(&e);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct ep_copy *c = &e.c[i];
		if (!traffic__name_ok(in[i].node, false) || !traffic__name_ok(in[i].site, true) ||
		    !copy_str(c->node, sizeof c->node, in[i].node) ||
		    !copy_str(c->site, sizeof c->site, in[i].site) ||
		    !copy_str(c->addr, sizeof c->addr, in[i].addr) ||
		    !copy_str(c->rev, sizeof c->rev, in[i].revision) ||
		    traffic__ip_parse(c->addr, &ip) != 0 || in[i].port == 0 ||
		    (unsigned)in[i].state > TRAFFIC_UNHEALTHY) {
			eps_free(&e);
			return -EINVAL;
		}
		e.v[i] = in[i];
		e.v[i].node = c->node;
		e.v[i].site = c->site;
		e.v[i].addr = c->addr;
		e.v[i].revision = c->rev;
	}
	e.n = n;
	*ret = e;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Reporting                                                                                  */

static void emit(struct traffic_lb *lb, enum traffic_event_kind kind, int err, size_t ncmds,
		 const struct traffic_plan *plan, const char *msg)
{
	if (lb->closing || !lb->cb)
		return;
	struct traffic_event ev = {
		.kind = kind, .err = err, .message = msg, .ncmds = ncmds, .plan = plan,
	};
	lb->cb(&ev, lb->ud);
}

static const char *errtext(int err)
{
	/* uv_strerror's words ("connection refused") read well after "connect to X: ". */
	return uv_strerror(err);
}

/* ---------------------------------------------------------------------------------------- */
/* Connection                                                                                */

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct traffic_lb *lb = c->lb;
	free(c);
	lb->nhandles--;
	if (lb->closing)
		kick(lb);	/* kick frees the lb once the last handle is closed */
}

static void conn_drop(struct traffic_lb *lb)
{
	struct conn *c = lb->conn;
	if (!c)
		return;
	lb->conn = NULL;
	c->dead = true;
	uv_timer_stop(&lb->t_op);
	uv_close(&c->h.h, conn_closed);
}

static void op_end(struct traffic_lb *lb)
{
	conn_drop(lb);
	traffic_plan_release(&lb->plan);
	free(lb->servers);
	lb->servers = NULL;
	lb->nservers = 0;
	free(lb->slots);
	lb->slots = NULL;
	lb->nslots = 0;
	lb->rlen = 0;
	lb->op = OP_NONE;
}

static void query_done(struct traffic_lb *lb, int err, uint32_t scur, const char *slot)
{
	struct query *q = lb->qhead;
	lb->qhead = q->next;
	if (!lb->qhead)
		lb->qtail = NULL;
	q->cb(err, scur, slot, q->ud);
	free(q);
}

static void op_fail(struct traffic_lb *lb, int err, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	enum op_kind op = lb->op;
	op_end(lb);
	if (op == OP_PASS) {
		lb->stats.passes++;
		lb->stats.failed++;
		lb->reported_ok = false;
		/* Redo the pass after a backoff (an update cuts it short). */
		lb->dirty = true;
		lb->retry_wait = true;
		lb->backoff_ms = lb->backoff_ms ? lb->backoff_ms * 2 : lb->retry_ms;
		if (lb->backoff_ms > lb->resync_ms)
			lb->backoff_ms = lb->resync_ms;
		/* Report last: the callback may call back into the driver. */
		if (strcmp(msg, lb->last_err) != 0) {
			snprintf(lb->last_err, sizeof lb->last_err, "%s", msg);
			emit(lb, TRAFFIC_EV_ERROR, err, 0, NULL, msg);
		}
	} else if (op == OP_QUERY) {
		query_done(lb, err, 0, NULL);
	}
	kick(lb);
}

static void on_timeout(uv_timer_t *t)
{
	struct traffic_lb *lb = t->data;
	if (lb->step == ST_CONNECT)
		op_fail(lb, -ETIMEDOUT, "connect to %s: no answer within %u ms", lb->sock_text,
			(unsigned)lb->timeout_ms);
	else
		op_fail(lb, -ETIMEDOUT, "haproxy at %s did not answer '%s' within %u ms",
			lb->sock_text, lb->last_cmd, (unsigned)lb->timeout_ms);
}

static void on_write(uv_write_t *req, int status)
{
	struct wr *w = (struct wr *)req;
	struct conn *c = w->c;
	free(w);
	if (c->dead || status == 0)
		return;
	op_fail(c->lb, status, "write to %s: %s", c->lb->sock_text, errtext(status));
}

static void send_line(struct traffic_lb *lb, enum step step, const char *line)
{
	size_t n = strlen(line);
	struct wr *w = malloc(sizeof *w + n + 1);
	if (!w) {
		op_fail(lb, -ENOMEM, "out of memory");
		return;
	}
	snprintf(lb->last_cmd, sizeof lb->last_cmd, "%s", line);
	memcpy(w->buf, line, n);
	w->buf[n] = '\n';
	w->len = n + 1;
	w->c = lb->conn;
	lb->step = step;
	lb->rlen = 0;
	uv_buf_t b = uv_buf_init(w->buf, (unsigned)w->len);
	int r = uv_write(&w->req, &lb->conn->h.s, &b, 1, on_write);
	if (r) {
		free(w);
		op_fail(lb, r, "write to %s: %s", lb->sock_text, errtext(r));
		return;
	}
	uv_timer_start(&lb->t_op, on_timeout, lb->timeout_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	struct traffic_lb *lb = c->lb;
	if (lb->rcap - lb->rlen < 16384 && lb->rcap < RBUF_MAX + 16384) {
		size_t nc = lb->rcap ? lb->rcap * 2 : 65536;
		if (nc > RBUF_MAX + 65536)
			nc = RBUF_MAX + 65536;	/* room to see that an answer is too big */
		char *t = realloc(lb->rbuf, nc);
		if (t) {
			lb->rbuf = t;
			lb->rcap = nc;
		}
	}
	*buf = uv_buf_init(lb->rbuf + lb->rlen, (unsigned)(lb->rcap - lb->rlen));
	if (lb->rcap == lb->rlen)
		*buf = uv_buf_init(NULL, 0);	/* read_cb gets UV_ENOBUFS */
}

static void on_answer(struct traffic_lb *lb, const char *a, size_t len);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct traffic_lb *lb = c->lb;
	if (c->dead || nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_EOF)
			op_fail(lb, -ECONNRESET, "haproxy at %s closed the connection after '%s'",
				lb->sock_text, lb->last_cmd);
		else
			op_fail(lb, (int)nread, "read from %s: %s", lb->sock_text,
				errtext((int)nread));
		return;
	}
	lb->rlen += (size_t)nread;
	if (lb->rlen > RBUF_MAX) {
		op_fail(lb, -EMSGSIZE, "haproxy's answer to '%s' is over %u bytes", lb->last_cmd,
			RBUF_MAX);
		return;
	}
	/* Prompt mode: an answer is complete when what came ends with "\n> ". */
	if (lb->rlen >= 3 && memcmp(lb->rbuf + lb->rlen - 3, "\n> ", 3) == 0) {
		uv_timer_stop(&lb->t_op);
		size_t n = lb->rlen - 2;	/* keep the '\n', drop "> " */
		lb->rlen = 0;
		on_answer(lb, lb->rbuf, n);
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	struct traffic_lb *lb = c->lb;
	if (c->dead)
		return;
	if (status) {
		op_fail(lb, status, "connect to %s: %s", lb->sock_text, errtext(status));
		return;
	}
	int r = uv_read_start(&c->h.s, on_alloc, on_read);
	if (r) {
		op_fail(lb, r, "read from %s: %s", lb->sock_text, errtext(r));
		return;
	}
	send_line(lb, ST_PROMPT, "prompt");
}

static int conn_open(struct traffic_lb *lb)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	int r = lb->is_unix ? uv_pipe_init(lb->loop, &c->h.pipe, 0) :
			      uv_tcp_init(lb->loop, &c->h.tcp);
	if (r) {
		free(c);
		return r;
	}
	c->lb = lb;
	c->h.h.data = c;
	c->creq.data = c;
	lb->conn = c;
	lb->nhandles++;
	lb->step = ST_CONNECT;
	snprintf(lb->last_cmd, sizeof lb->last_cmd, "%s", "connect");
	if (lb->is_unix) {
		uv_pipe_connect(&c->creq, &c->h.pipe, lb->path, on_connect);
	} else {
		r = uv_tcp_connect(&c->creq, &c->h.tcp, (const struct sockaddr *)&lb->sa, on_connect);
		if (r)
			return r;	/* the caller fails the op, which closes c */
	}
	uv_timer_start(&lb->t_op, on_timeout, lb->timeout_ms, 0);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The pass                                                                                   */

static bool is_slot(const struct traffic_lb *lb, const char *name)
{
	size_t p = strlen(lb->prefix);
	if (p == 0)
		return true;
	if (strncmp(name, lb->prefix, p) != 0 || !name[p])
		return false;
	for (const char *s = name + p; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static int take_state(struct traffic_lb *lb, const char *a, size_t len)
{
	char err[256];
	struct traffic_server *sv = NULL;
	size_t n = 0;
	int r = traffic_parse_servers_state(a, len, lb->backend, &sv, &n, err, sizeof err);
	if (r) {
		op_fail(lb, r, "haproxy at %s: %s", lb->sock_text, err);
		return r;
	}
	const char **slots = calloc(n ? n : 1, sizeof *slots);
	if (!slots) {
		free(sv);
		op_fail(lb, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	size_t ns = 0;
	for (size_t i = 0; i < n; i++)
		if (is_slot(lb, sv[i].name))
			slots[ns++] = sv[i].name;
	free(lb->servers);
	free(lb->slots);
	lb->servers = sv;
	lb->nservers = n;
	lb->slots = slots;
	lb->nslots = ns;
	return 0;
}

static int make_plan(struct traffic_lb *lb, struct traffic_plan *ret)
{
	struct traffic_plan_input in = {
		.backend = lb->backend,
		.site = lb->site,
		.failover_permille = lb->permille,
		.slots = lb->slots,
		.nslots = lb->nslots,
		.servers = lb->servers,
		.nservers = lb->nservers,
		.endpoints = lb->cur.v,
		.nendpoints = lb->cur.n,
	};
	return traffic_plan_build(&in, ret);
}

static void report_plan(struct traffic_lb *lb)
{
	const struct traffic_plan *p = &lb->plan;
	char msg[MSG_MAX];
	if ((int)p->failover != lb->last_failover) {
		char waiting[96] = "";
		if (p->local_waiting)
			snprintf(waiting, sizeof waiting, " (%zu more healthy, their haproxy check "
				 "not UP yet)", p->local_waiting);
		if (p->failover)
			snprintf(msg, sizeof msg, "failover: %zu of %zu local endpoints healthy in "
				 "site '%s'%s, %zu needed (F=%u.%03u): remote endpoints serve",
				 p->local_healthy, p->local_total, lb->site, waiting, p->local_need,
				 lb->permille / 1000, lb->permille % 1000);
		else
			snprintf(msg, sizeof msg, "local: %zu of %zu local endpoints healthy in site "
				 "'%s', %zu needed (F=%u.%03u): remote endpoints on standby",
				 p->local_healthy, p->local_total, lb->site, p->local_need,
				 lb->permille / 1000, lb->permille % 1000);
		if (lb->last_failover != -1 || p->failover)
			emit(lb, TRAFFIC_EV_FAILOVER, 0, 0, p, msg);
		lb->last_failover = p->failover;
	}
	size_t o = 0, noslot = 0, dup = 0;
	for (size_t i = 0; i < p->nunplaced; i++)
		if (p->unplaced[i].why == TRAFFIC_UNPLACED_NO_SLOT)
			noslot++;
		else
			dup++;
	msg[0] = '\0';
	if (p->nunplaced) {
		o = (size_t)snprintf(msg, sizeof msg, "%zu endpoints not served (backend %s has %zu "
				     "slots; %zu duplicate addresses):", noslot, lb->backend,
				     lb->nslots, dup);
		for (size_t i = 0; i < p->nunplaced && o < sizeof msg; i++) {
			const struct traffic_endpoint *e = &lb->cur.v[p->unplaced[i].endpoint];
			o += (size_t)snprintf(msg + o, sizeof msg - o, " %s %s:%u%s", e->node,
					      e->addr, (unsigned)e->port,
					      p->unplaced[i].why == TRAFFIC_UNPLACED_DUPLICATE ?
					      " (duplicate)" : "");
		}
	}
	if (strcmp(msg, lb->last_unplaced) != 0) {
		snprintf(lb->last_unplaced, sizeof lb->last_unplaced, "%s", msg);
		if (msg[0])
			emit(lb, TRAFFIC_EV_UNPLACED, 0, 0, p, msg);
	}
}

/* A refusal not reported since the last good pass? (A failed pass is retried every few
 * seconds: the same refusal each time is one report, not one per retry.) */
static bool refusal_new(struct traffic_lb *lb, const char *msg)
{
	uint64_t h = 1469598103934665603ull;	/* FNV-1a */
	for (const char *p = msg; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	for (size_t i = 0; i < lb->nrefused_seen; i++)
		if (lb->refused_seen[i] == h)
			return false;
	if (lb->nrefused_seen < sizeof lb->refused_seen / sizeof lb->refused_seen[0])
		lb->refused_seen[lb->nrefused_seen++] = h;
	return true;
}

static void next_cmd(struct traffic_lb *lb)
{
	if (lb->cmd_i < lb->plan.ncmds) {
		lb->stats.commands++;
		send_line(lb, ST_CMD, lb->plan.cmds[lb->cmd_i].line);
		return;
	}
	char line[TRAFFIC_CMD_MAX];
	snprintf(line, sizeof line, "show servers state %s", lb->backend);
	send_line(lb, ST_STATE2, line);
}

static void pass_done(struct traffic_lb *lb)
{
	size_t ncmds = lb->plan.ncmds;
	struct traffic_plan plan = lb->plan;
	memset(&lb->plan, 0, sizeof lb->plan);
	op_end(lb);
	lb->stats.passes++;
	lb->backoff_ms = 0;
	lb->retry_wait = false;
	lb->last_err[0] = '\0';
	lb->nrefused_seen = 0;
	if (ncmds > 0 || !lb->reported_ok) {
		char msg[MSG_MAX];
		snprintf(msg, sizeof msg, "backend %s in step: %zu commands, %zu slots, %zu "
			 "endpoints%s", lb->backend, ncmds, plan.nslots, lb->cur.n,
			 plan.failover ? ", remote serving (failover)" : "");
		emit(lb, TRAFFIC_EV_SYNCED, 0, ncmds, &plan, msg);
		lb->reported_ok = true;
	}
	traffic_plan_release(&plan);
	kick(lb);
}

static void on_answer(struct traffic_lb *lb, const char *a, size_t len)
{
	switch (lb->step) {
	case ST_PROMPT:
		if (lb->op == OP_PASS) {
			/* Swap in the newest endpoints at the start of a pass: the plan and the
			 * events of this pass refer to them. */
			if (lb->have_next) {
				eps_free(&lb->cur);
				lb->cur = lb->next;
				memset(&lb->next, 0, sizeof lb->next);
				lb->have_next = false;
			}
			lb->dirty = false;
			char line[TRAFFIC_CMD_MAX];
			snprintf(line, sizeof line, "show servers state %s", lb->backend);
			send_line(lb, ST_STATE1, line);
		} else {
			char line[TRAFFIC_CMD_MAX];
			snprintf(line, sizeof line, "show stat %s 4 -1", lb->backend);
			send_line(lb, ST_STAT, line);
		}
		return;
	case ST_STATE1: {
		if (take_state(lb, a, len))
			return;
		int r = make_plan(lb, &lb->plan);
		if (r) {
			op_fail(lb, r, "backend %s: cannot plan: %s", lb->backend, strerror(-r));
			return;
		}
		report_plan(lb);
		if (lb->closing)
			return;	/* closed from the event callback */
		lb->cmd_i = 0;
		lb->nrefused = 0;
		next_cmd(lb);
		return;
	}
	case ST_CMD: {
		const char *cmd = lb->plan.cmds[lb->cmd_i].line;
		if (traffic_answer_check(cmd, a, len) != 0) {
			char msg[MSG_MAX];
			size_t n = len;
			while (n > 0 && (a[n - 1] == '\n' || a[n - 1] == ' '))
				n--;
			if (n > 200)
				n = 200;
			/* HAProxy answers "Permission denied" to a set command on a socket below
			 * level admin: say what to change. */
			bool perm = n >= 17 && memcmp(a, "Permission denied", 17) == 0;
			snprintf(msg, sizeof msg, "haproxy refused '%s': %.*s%s", cmd, (int)n, a,
				 perm ? " (the stats socket needs 'level admin')" : "");
			for (char *p = msg; *p; p++)
				if (*p == '\n' || (unsigned char)*p < 0x20)
					*p = ' ';
			lb->stats.refused++;
			lb->nrefused++;
			if (refusal_new(lb, msg)) {
				emit(lb, TRAFFIC_EV_COMMAND, -EPROTO, 0, NULL, msg);
				if (lb->closing)
					return;
			}
		}
		lb->cmd_i++;
		next_cmd(lb);
		return;
	}
	case ST_STATE2: {
		if (take_state(lb, a, len))
			return;
		struct traffic_plan again;
		int r = make_plan(lb, &again);
		if (r) {
			op_fail(lb, r, "backend %s: cannot plan: %s", lb->backend, strerror(-r));
			return;
		}
		size_t left = again.ncmds;
		/* A local endpoint healthy for the cluster but DOWN for HAProxy's check (as read
		 * after the commands): the check turns UP within `rise` intervals and only a pass
		 * sees it (no endpoint changes then), so look again in retry_ms rather than at the
		 * resync period. */
		lb->check_wait = again.local_waiting > 0;
		char first[TRAFFIC_CMD_MAX];
		snprintf(first, sizeof first, "%s", left ? again.cmds[0].line : "");
		traffic_plan_release(&again);
		if (left) {
			op_fail(lb, -EPROTO, "backend %s not in step after %zu commands (%zu refused): "
				"%zu still to do, first '%s'", lb->backend, lb->plan.ncmds,
				lb->nrefused, left, first);
			return;
		}
		pass_done(lb);
		return;
	}
	case ST_STAT: {
		char err[256];
		struct traffic_stat *st = NULL;
		size_t n = 0;
		int r = traffic_parse_stat(a, len, lb->backend, &st, &n, err, sizeof err);
		if (r) {
			op_fail(lb, r, "haproxy at %s: %s", lb->sock_text, err);
			return;
		}
		const struct query *q = lb->qhead;
		const struct traffic_stat *hit = NULL;
		for (size_t i = 0; i < n && !hit; i++) {
			/* addr is "ip:port" or "[ip6]:port". */
			char host[TRAFFIC_ADDR_MAX + 8];
			snprintf(host, sizeof host, "%s", st[i].addr);
			char *colon = strrchr(host, ':');
			if (!colon)
				continue;
			*colon = '\0';
			char *h = host;
			size_t hl = strlen(h);
			if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
				h[hl - 1] = '\0';
				h++;
			}
			struct traffic__ip ip;
			if (traffic__ip_parse(h, &ip) != 0 || atoi(colon + 1) != q->port ||
			    memcmp(&ip, &q->ip, sizeof ip) != 0)
				continue;
			hit = &st[i];
		}
		op_end(lb);
		if (hit)
			query_done(lb, 0, hit->scur, hit->name);
		else
			query_done(lb, -ENOENT, 0, NULL);
		free(st);
		kick(lb);
		return;
	}
	default:
		return;
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Scheduling and lifetime                                                                    */

static void on_resync(uv_timer_t *t)
{
	struct traffic_lb *lb = t->data;
	lb->dirty = true;
	lb->retry_wait = false;
	kick(lb);
}

static void lb_free_closed(uv_handle_t *h)
{
	struct traffic_lb *lb = h->data;
	lb->nhandles--;
	kick(lb);
}

static void start_op(struct traffic_lb *lb, enum op_kind op)
{
	lb->op = op;
	int r = conn_open(lb);
	if (r)
		op_fail(lb, r, "connect to %s: %s", lb->sock_text, errtext(r));
}

/* Start what is due, or arm the timer for the next pass. Called whenever something ends. */
static void kick(struct traffic_lb *lb)
{
	if (lb->closing) {
		if (lb->nhandles == 0) {
			void (*cb)(void *) = lb->close_cb;
			void *ud = lb->close_ud;
			eps_free(&lb->cur);
			eps_free(&lb->next);
			free(lb->rbuf);
			free(lb);
			if (cb)
				cb(ud);
		}
		return;
	}
	if (lb->op != OP_NONE)
		return;
	if (lb->dirty && lb->have_input && !lb->retry_wait) {
		uv_timer_stop(&lb->t_resync);
		start_op(lb, OP_PASS);
		return;
	}
	if (lb->qhead) {
		start_op(lb, OP_QUERY);
		return;
	}
	if (lb->have_input)
		uv_timer_start(&lb->t_resync, on_resync,
			       lb->retry_wait ? lb->backoff_ms :
			       lb->check_wait ? lb->retry_ms : lb->resync_ms, 0);
}

static int parse_socket(struct traffic_lb *lb, const char *s)
{
	if (!s || !*s || strlen(s) >= sizeof lb->sock_text)
		return -EINVAL;
	snprintf(lb->sock_text, sizeof lb->sock_text, "%s", s);
	const char *path = NULL;
	if (strncmp(s, "unix:", 5) == 0)
		path = s + 5;
	else if (s[0] == '/' || s[0] == '.')
		path = s;
	if (path) {
		/* uv_pipe_connect would cut a long path silently and connect elsewhere. */
		if (!*path || strlen(path) >= sizeof lb->path)
			return -EINVAL;
		lb->is_unix = true;
		snprintf(lb->path, sizeof lb->path, "%s", path);
		return 0;
	}
	if (strncmp(s, "tcp:", 4) == 0)
		s += 4;
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || strlen(colon + 1) == 0 || strlen(colon + 1) > 5)
		return -EINVAL;
	size_t hl = (size_t)(colon - s);
	if (hl >= sizeof host)
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	unsigned port = 0;
	for (const char *p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		port = port * 10 + (unsigned)(*p - '0');
	}
	if (port == 0 || port > 65535)
		return -EINVAL;
	char *h = host;
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
		if (uv_ip6_addr(h, (int)port, (struct sockaddr_in6 *)&lb->sa) != 0)
			return -EINVAL;
	} else if (uv_ip4_addr(h, (int)port, (struct sockaddr_in *)&lb->sa) != 0) {
		return -EINVAL;
	}
	lb->is_unix = false;
	return 0;
}

int traffic_lb_new(uv_loop_t *loop, const struct traffic_lb_config *cfg, traffic_event_cb cb,
		   void *ud, struct traffic_lb **ret)
{
	if (!loop || !cfg || !ret || !traffic__name_ok(cfg->backend, false) ||
	    !traffic__name_ok(cfg->slot_prefix, true) || !traffic__name_ok(cfg->site, true) ||
	    cfg->failover_permille > 1000)
		return -EINVAL;
	struct traffic_lb *lb = calloc(1, sizeof *lb);
	if (!lb)
		return -ENOMEM;
	int r = parse_socket(lb, cfg->socket);
	if (r) {
		free(lb);
		return r;
	}
	lb->loop = loop;
	lb->cb = cb;
	lb->ud = ud;
	snprintf(lb->backend, sizeof lb->backend, "%s", cfg->backend);
	snprintf(lb->prefix, sizeof lb->prefix, "%s", cfg->slot_prefix ? cfg->slot_prefix : "");
	snprintf(lb->site, sizeof lb->site, "%s", cfg->site ? cfg->site : "");
	lb->permille = cfg->failover_permille;
	lb->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
	lb->resync_ms = cfg->resync_ms ? cfg->resync_ms : 5000;
	lb->retry_ms = cfg->retry_ms ? cfg->retry_ms : 500;
	if (lb->retry_ms > lb->resync_ms)
		lb->retry_ms = lb->resync_ms;
	lb->last_failover = -1;
	uv_timer_init(loop, &lb->t_op);
	uv_timer_init(loop, &lb->t_resync);
	lb->t_op.data = lb;
	lb->t_resync.data = lb;
	lb->nhandles = 2;
	*ret = lb;
	return 0;
}

int traffic_lb_update(struct traffic_lb *lb, const struct traffic_endpoint *eps, size_t n)
{
	if (!lb)
		return -EINVAL;
	if (lb->closing)
		return -ESHUTDOWN;
	struct eps e;
	int r = eps_copy(&e, eps, n);
	if (r)
		return r;
	if (!lb->have_input) {
		lb->cur = e;
		lb->have_input = true;
	} else {
		eps_free(&lb->next);
		lb->next = e;
		lb->have_next = true;
	}
	lb->dirty = true;
	/* An update does not wait out a retry backoff: the new input may be what fixes it,
	 * and the agent debounces its updates. */
	lb->retry_wait = false;
	kick(lb);
	return 0;
}

int traffic_lb_sessions(struct traffic_lb *lb, const char *addr, uint16_t port,
			traffic_sessions_cb cb, void *ud)
{
	if (!lb || !cb || port == 0)
		return -EINVAL;
	if (lb->closing)
		return -ESHUTDOWN;
	struct query *q = calloc(1, sizeof *q);
	if (!q)
		return -ENOMEM;
	if (traffic__ip_parse(addr, &q->ip) != 0) {
		free(q);
		return -EINVAL;
	}
	q->port = port;
	q->cb = cb;
	q->ud = ud;
	if (lb->qtail)
		lb->qtail->next = q;
	else
		lb->qhead = q;
	lb->qtail = q;
	kick(lb);
	return 0;
}

void traffic_lb_stats(const struct traffic_lb *lb, struct traffic_lb_stats *ret)
{
	if (lb && ret)
		*ret = lb->stats;
}

void traffic_lb_close(struct traffic_lb *lb, void (*close_cb)(void *ud), void *ud)
{
	if (!lb || lb->closing)
		return;
	struct query *q = lb->qhead;
	lb->qhead = lb->qtail = NULL;
	lb->closing = true;
	lb->close_cb = close_cb;
	lb->close_ud = ud;
	op_end(lb);
	uv_close((uv_handle_t *)&lb->t_op, lb_free_closed);
	uv_close((uv_handle_t *)&lb->t_resync, lb_free_closed);
	/* The handles close on a later loop turn, so @lb is still valid here; a callback that
	 * calls traffic_lb_close again finds it closing. */
	while (q) {
		struct query *next = q->next;
		q->cb(-ECANCELED, 0, NULL, q->ud);
		free(q);
		q = next;
	}
}
