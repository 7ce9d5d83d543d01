/* agent/daemon/hook.c: see hook.h. */
#include "agent/daemon/hook.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/base/log.h"
#include "agent/fleet/fleet.h"

struct job {
	struct hook *h;
	uv_process_t proc;
	uv_pipe_t in;
	uv_timer_t timer;
	uv_write_t wr;
	char *json;		/* the line written to stdin */
	size_t len;
	uint64_t seq;
	char kind[32];
	unsigned open;		/* handles not yet closed */
	bool timed_out, ended;
	struct job *next;
};

struct hook {
	uv_loop_t *loop;
	char *path;
	uint64_t timeout_ms;
	unsigned max_running, max_queue;
	struct job *jobs;	/* running (or closing) */
	unsigned running;
	/* FIFO of waiting events (JSON lines with their seq and kind) */
	struct qent {
		char *json;
		size_t len;
		uint64_t seq;
		char kind[32];
	} *q;
	unsigned qhead, qlen;
	struct hook_stats st;
	uint64_t drop_logged_ms, drops_unlogged;
	bool closing, close_timer;
	void (*cb)(void *ud);
	void *ud;
};

/* ---- JSON ---------------------------------------------------------------------------------- */

static void json_str(char **p, char *end, const char *s)
{
	char *o = *p;
	if (o < end)
		*o++ = '"';
	for (; *s && o + 7 < end; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += snprintf(o, (size_t)(end - o), "\\u%04x", c);
		} else {
			*o++ = (char)c;
		}
	}
	if (o < end)
		*o++ = '"';
	*p = o;
}

char *hook_event_json(const struct fleet_event *e)
{
	/* every string field is bounded (kind 16, service and node 65, text 200 bytes): 6x for
	 * the worst escaping, plus the rest */
	size_t cap = 6 * (strlen(e->kind) + strlen(e->service) + strlen(e->node) +
			  strlen(e->text)) + 256;
	char *buf = malloc(cap), *p = buf, *end;
	if (!buf)
		return NULL;
	end = buf + cap - 2;
	char when[40];
	time_t t = (time_t)(e->wall_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof when - n, ".%03uZ", (unsigned)(e->wall_ms % 1000));
	p += snprintf(p, (size_t)(end - p), "{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"time_ms\":%"
		      PRIu64 ",\"kind\":", e->seq, when, e->wall_ms);
	json_str(&p, end, e->kind);
	p += snprintf(p, (size_t)(end - p), ",\"service\":");
	json_str(&p, end, e->service);
	p += snprintf(p, (size_t)(end - p), ",\"rev\":%" PRIu64 ",\"node\":", e->rev);
	json_str(&p, end, e->node);
	p += snprintf(p, (size_t)(end - p), ",\"text\":");
	json_str(&p, end, e->text);
	*p++ = '}';
	*p = 0;
	return buf;
}

/* ---- Jobs ---------------------------------------------------------------------------------- */

static void start_next(struct hook *h);
static void maybe_finish(struct hook *h);

static void job_handle_closed(uv_handle_t *hd)
{
	struct job *j = hd->data;
	if (--j->open)
		return;
	struct hook *h = j->h;
	for (struct job **pp = &h->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	h->running--;
	free(j->json);
	free(j);
	if (h->closing)
		maybe_finish(h);
	else
		start_next(h);
}

static void close_if_open(struct job *j, uv_handle_t *hd)
{
	if (!uv_is_closing(hd))
		uv_close(hd, job_handle_closed);
}

static void job_end(struct job *j)
{
	j->ended = true;
	uv_timer_stop(&j->timer);
	close_if_open(j, (uv_handle_t *)&j->in);
	close_if_open(j, (uv_handle_t *)&j->timer);
	close_if_open(j, (uv_handle_t *)&j->proc);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct job *j = p->data;
	struct hook *h = j->h;
	if (j->timed_out) {
		h->st.timeout++;	/* logged when the timer fired */
	} else if (h->closing) {
		log_info("event hook %s: ended%s: the agent stops (event %" PRIu64 " %s)", h->path,
			 sig == SIGKILL ? " by SIGKILL" : "", j->seq, j->kind);
	} else if (sig) {
		h->st.failed++;
		log_warning("event hook %s: killed by signal %d (%s) (event %" PRIu64 " %s)",
			    h->path, sig, strsignal(sig), j->seq, j->kind);
	} else if (status != 0) {
		h->st.failed++;
		log_warning("event hook %s: exited with status %" PRId64 " (event %" PRIu64 " %s)",
			    h->path, status, j->seq, j->kind);
	} else {
		h->st.ok++;
		log_debug("event hook %s: done (event %" PRIu64 " %s)", h->path, j->seq, j->kind);
	}
	job_end(j);
}

static void on_timeout(uv_timer_t *t)
{
	struct job *j = t->data;
	struct hook *h = j->h;
	j->timed_out = true;
	log_warning("event hook %s: still running after %" PRIu64 " ms, killed with its process "
		    "group (event %" PRIu64 " %s)", h->path, h->timeout_ms, j->seq, j->kind);
	/* its own session (UV_PROCESS_DETACHED): the group id is its pid */
	if (kill(-j->proc.pid, SIGKILL) < 0)
		(void)uv_process_kill(&j->proc, SIGKILL);
}

static void on_written(uv_write_t *w, int status)
{
	struct job *j = w->data;
	/* a hook that exits without reading its stdin: EPIPE, or ECANCELED when the pipe was
	 * closed at its exit; neither is the hook's failure */
	if (status < 0 && status != UV_EPIPE && status != UV_ECANCELED)
		log_info("event hook %s: writing the event to its stdin: %s", j->h->path,
			 uv_strerror(status));
	close_if_open(j, (uv_handle_t *)&j->in);
}

static void run(struct hook *h, char *json, size_t len, uint64_t seq, const char *kind)
{
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		h->st.spawn_errors++;
		log_warning("event hook %s: out of memory (event %" PRIu64 " %s not run)", h->path,
			    seq, kind);
		free(json);
		return;
	}
	j->h = h;
	j->json = json;
	j->len = len;
	j->seq = seq;
	snprintf(j->kind, sizeof j->kind, "%s", kind);
	uv_pipe_init(h->loop, &j->in, 0);
	uv_timer_init(h->loop, &j->timer);
	j->in.data = j->timer.data = j->proc.data = j->wr.data = j;
	j->open = 2;
	j->next = h->jobs;
	h->jobs = j;
	h->running++;

	char *args[] = {h->path, NULL};
	uv_stdio_container_t io[3] = {
		{.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&j->in},
		{.flags = UV_INHERIT_FD, .data.fd = 2},
		{.flags = UV_INHERIT_FD, .data.fd = 2},
	};
	uv_process_options_t o = {
		.exit_cb = on_exit_cb,
		.file = h->path,
		.args = args,
		.stdio = io,
		.stdio_count = 3,
		.flags = UV_PROCESS_DETACHED,
	};
	int r = uv_spawn(h->loop, &j->proc, &o);
	j->open++;	/* the process handle is initialised even when uv_spawn fails */
	if (r < 0) {
		h->st.spawn_errors++;
		log_warning("event hook %s: cannot run it: %s (event %" PRIu64 " %s)", h->path,
			    uv_strerror(r), seq, kind);
		job_end(j);
		return;
	}
	uv_timer_start(&j->timer, on_timeout, h->timeout_ms, 0);
	uv_buf_t b = uv_buf_init(j->json, (unsigned)j->len);
	if (uv_write(&j->wr, (uv_stream_t *)&j->in, &b, 1, on_written) < 0)
		close_if_open(j, (uv_handle_t *)&j->in);
}

static void start_next(struct hook *h)
{
	while (!h->closing && h->qlen && h->running < h->max_running) {
		struct qent *e = &h->q[h->qhead];
		h->qhead = (h->qhead + 1) % h->max_queue;
		h->qlen--;
		run(h, e->json, e->len, e->seq, e->kind);
	}
}

void hook_submit(struct hook *h, const struct fleet_event *e)
{
	if (!h || h->closing)
		return;
	char *json = hook_event_json(e);
	if (!json) {
		h->st.dropped++;
		log_warning("event hook: out of memory, event %" PRIu64 " %s dropped", e->seq,
			    e->kind);
		return;
	}
	size_t len = strlen(json);
	json[len++] = '\n';	/* hook_event_json keeps room for it */
	if (h->running < h->max_running && h->qlen == 0) {
		run(h, json, len, e->seq, e->kind);
		return;
	}
	if (h->qlen < h->max_queue) {
		struct qent *q = &h->q[(h->qhead + h->qlen) % h->max_queue];
		q->json = json;
		q->len = len;
		q->seq = e->seq;
		snprintf(q->kind, sizeof q->kind, "%s", e->kind);
		h->qlen++;
		return;
	}
	free(json);
	h->st.dropped++;
	h->drops_unlogged++;
	uint64_t now = uv_now(h->loop);
	if (!h->drop_logged_ms || now - h->drop_logged_ms >= 1000) {
		log_warning("event hook %s: %u running and %u waiting (the limits): %" PRIu64
			    " event(s) dropped (last: %" PRIu64 " %s; %" PRIu64 " in all)",
			    h->path, h->running, h->qlen, h->drops_unlogged, e->seq, e->kind,
			    h->st.dropped);
		h->drop_logged_ms = now ? now : 1;
		h->drops_unlogged = 0;
	}
}

void hook_stats(const struct hook *h, struct hook_stats *ret)
{
	*ret = h->st;
	ret->running = h->running;
	ret->queued = h->qlen;
}

int hook_new(uv_loop_t *loop, const struct hook_opts *opts, struct hook **ret)
{
	if (!opts->path || opts->path[0] != '/' || !opts->timeout_ms || !opts->max_running)
		return -EINVAL;
	struct hook *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->timeout_ms = opts->timeout_ms;
	h->max_running = opts->max_running;
	h->max_queue = opts->max_queue;
	h->path = strdup(opts->path);
	h->q = calloc(opts->max_queue ? opts->max_queue : 1, sizeof *h->q);
	if (!h->path || !h->q) {
		free(h->path);
		free(h->q);
		free(h);
		return -ENOMEM;
	}
	*ret = h;
	return 0;
}

static void maybe_finish(struct hook *h)
{
	if (!h->closing || h->jobs || h->close_timer)
		return;
	void (*cb)(void *) = h->cb;
	void *ud = h->ud;
	free(h->q);
	free(h->path);
	free(h);
	if (cb)
		cb(ud);
}

static void finish_soon(uv_timer_t *t)
{
	struct hook *h = t->data;
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
	h->close_timer = false;
	maybe_finish(h);
}

void hook_close(struct hook *h, void (*cb)(void *ud), void *ud)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	h->cb = cb;
	h->ud = ud;
	for (unsigned i = 0; i < h->qlen; i++)
		free(h->q[(h->qhead + i) % h->max_queue].json);
	if (h->qlen)
		log_info("event hook %s: %u waiting event(s) not run: the agent stops", h->path,
			 h->qlen);
	h->qlen = 0;
	for (struct job *j = h->jobs; j; j = j->next)
		if (!j->ended && j->proc.pid > 0 && kill(-j->proc.pid, SIGKILL) < 0)
			(void)uv_process_kill(&j->proc, SIGKILL);
	/* the callback always comes from the loop, never from inside this call */
	uv_timer_t *t = malloc(sizeof *t);
	if (t && uv_timer_init(h->loop, t) == 0) {
		t->data = h;
		h->close_timer = true;
		uv_timer_start(t, finish_soon, 0, 0);
	} else {
		free(t);
		maybe_finish(h);
	}
}
