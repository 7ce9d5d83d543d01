/*
 * plugins/container.c: the container driver. A service instance is a container managed through
 * the Docker Engine API (v1.41) that Docker and Podman both serve on a unix socket
 * (cfg.docker_host, default /run/podman/podman.sock).
 *
 * Names and labels
 *   The instance of (service, rev) is the container "shoal-<service>-<rev>", labelled
 *     io.shoal.managed=true  io.shoal.service=<service>  io.shoal.rev=<rev>
 *     io.shoal.artifact=<artifact id, hex>
 *   Every container the driver stops, removes or reports is found through a label filter AND
 *   its labels are checked again in the answer: a container without io.shoal.managed=true is
 *   never touched, even when its name is the one we want (activate then fails with -EEXIST
 *   and leaves the running instance alone).
 *
 * Images and rollbacks without a registry
 *   prepare gives every revision its own tag, localhost/shoal/<service>:r<rev>, pointing at the
 *   revision's image; containers are created from that tag. The image comes from
 *     - [container] archive: a `podman save` / `docker save` tar inside the materialized
 *       artifact directory, streamed to POST /images/load (never held in memory); the name the
 *       engine reports ("Loaded image: ...") is tagged, and then untagged again if it did not
 *       exist before the load (so the only names left are ours and the operator's);
 *     - [container] image: an image that must already exist (GET /images/{name}/json); no
 *       pull: the node may be cut off from any registry. Its own name is never removed.
 *   (archive wins when both are given.) forget(service, rev) removes the revision's containers
 *   and untags r<rev>; the engine deletes the image only with its last tag and never while a
 *   container uses it. So an image stays exactly as long as one retained revision refers to
 *   it, and a rollback to a retained revision always finds its image locally. The tags live in
 *   the engine, so this survives agent restarts without any state of ours.
 *   Repository names must be lowercase: a service name that is not [a-z0-9]+([._-][a-z0-9]+)*
 *   is written "s-<hex of the name>" in the tag.
 *
 * Container settings
 *   HostConfig.Init=true (a busybox or shell PID 1 ignores SIGTERM), NetworkMode=host (the
 *   service listens on host ports, like exec and systemd services, so health checks on
 *   127.0.0.1 reach it), StopTimeout = stop_timeout_ms, Env SHOAL_SERVICE/SHOAL_REV/
 *   SHOAL_ARTIFACT.
 *   RestartPolicy = on-failure, at most CT_RESTART_MAX (3) restarts: a transient crash is
 *   recovered by the engine, a crash loop ends FAILED within seconds and is left to the
 *   health checks and the rollback vote. "always"/"unless-stopped" would hide a crash loop
 *   from the agent (and Docker restarts "always" containers when its daemon starts, fighting
 *   the reconciler); "no" would turn every transient crash into a rollback vote.
 *
 * Operations (each a chain of HTTP requests on the loop, one at a time)
 *   prepare    ensure r<rev> exists (GET tag; else load the archive or find the named image,
 *              then tag).
 *   activate   prepare if needed; refuse if an unmanaged container holds our name; remove a
 *              managed container with our name (a re-activation); create the new container;
 *              stop (t = stop_timeout) and remove every other managed container of the service;
 *              start the new one. Creating before stopping means a create error (bad image,
 *              bad config) leaves the old instance running.
 *   deactivate stop and remove every managed container of the service.
 *   status     inspect the newest managed container of the service (highest io.shoal.rev):
 *              running -> RUNNING (RESTARTING if the engine says so), created -> STARTING,
 *              exited/stopped with code 0 -> STOPPED, with another code -> FAILED (as systemd
 *              does for a main process), none -> STOPPED.
 *   forget     background: remove the containers of (service, rev), untag r<rev>. Best effort;
 *              failures are not reported (a later forget or deploy tries again).
 *   events     every CT_POLL_MS the status of each service this plugin has touched is read
 *              again. Every change of the observed (state, rev, pid, restarts, exit status),
 *              whether the poller or a status call saw it, goes to on_event once, before the
 *              status callback. Polling rather than /events streaming: it needs no long-lived
 *              connection or event parser, survives engine restarts, and costs two small
 *              requests per service per period. Podman's transient "stopped" state (exited,
 *              cleanup pending) with a non-zero code and on-failure retries left is reported
 *              RESTARTING; "exited" is final.
 *
 * Errors of operations: the engine's 404 -> -ENOENT, 409 and name conflicts -> -EEXIST,
 * 400 -> -EINVAL, other non-2xx -> -EIO; transport errors from http.h (-ECONNREFUSED,
 * -ENOENT for a missing socket, -ETIMEDOUT, ...); -EBADMSG for answers we cannot read. The
 * engine's message is kept and shown in the service's status detail ("error: ...") and by
 * plugin_last_error() until the next successful operation.
 */
#include "plugins/plugin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/http.h"
#include "plugins/json.h"

#define CT_API		      "/v1.41"
#define CT_DEFAULT_SOCK	      "/run/podman/podman.sock"
#define CT_POLL_MS	      2000
#define CT_RESTART_MAX	      3
#define CT_REQ_TIMEOUT_MS     30000
#define CT_LOAD_TIMEOUT_MS    (10 * 60 * 1000)
#define CT_MAX_CONTAINERS     64	/* managed containers of one service we act on at once */
#define CT_ID_LEN	      80
#define CT_NAME_LEN	      192
#define CT_TARGET_LEN	      2048

struct ct_svc {
	struct ct_svc *next;
	char name[65];
	bool busy;		/* an operation of the reconciler is in flight */
	bool polling;		/* a poll of this service is in flight */
	bool watch;		/* report changes through on_event */
	bool known;		/* last holds an observation */
	struct plugin_status last;
	char error[120];	/* the engine's words for the last failed operation */
};

struct ct {
	struct plugin *p;
	const char *sock;
	uv_timer_t poll;
	bool poll_open;
	bool closing;
	plugin_close_cb close_cb;
	void *close_ud;
	struct ct_svc *svcs;
	struct ct_op *ops;
};

enum ct_kind { OP_PREPARE, OP_ACTIVATE, OP_DEACTIVATE, OP_STATUS, OP_FORGET, OP_POLL };

struct ct_op;
typedef void (*ct_step_fn)(struct ct_op *op, const struct http_response *resp);

struct ct_op {
	struct ct_op *next;
	struct ct *ct;
	struct ct_svc *svc;
	enum ct_kind kind;
	plugin_done_cb done_cb;
	plugin_status_cb status_cb;
	void *ud;
	struct http_req *http;
	ct_step_fn step;	/* what to do with the answer of the request in flight */
	int err;

	/* the instance (prepare/activate/forget) */
	uint64_t rev;
	char artifact[STORE_ID_HEXLEN + 1];
	char tag[CT_NAME_LEN + 32];	/* localhost/shoal/<svc>:r<rev> */
	char cname[CT_NAME_LEN];	/* shoal-<svc>-<rev> */
	char *archive;			/* absolute path of the archive, or NULL */
	char *image;			/* the manifest's image name, or NULL */
	char *images_before;		/* body of GET /images/json before a load */
	char loaded[CT_NAME_LEN];	/* name reported by the load */

	/* containers to act on */
	char ids[CT_MAX_CONTAINERS][CT_ID_LEN];
	uint64_t revs[CT_MAX_CONTAINERS];
	size_t nids, idx;
	char new_id[CT_ID_LEN];
	bool activating;		/* prepare is a sub-step of activate */
	bool changed;			/* observe(): differs from the last observation */
	int rm_mode;			/* which of ids[] remove_* acts on (RM_*) */
	ct_step_fn after_remove;
	char repo[CT_NAME_LEN];		/* localhost/shoal/<svc> */
	char tagname[32];		/* r<rev> */

	struct plugin_status st;
};

/* ---- Small helpers ------------------------------------------------------------------------ */

static void hex_id(const struct store_id *id, char out[STORE_ID_HEXLEN + 1])
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < STORE_ID_LEN; i++) {
		out[2 * i] = hx[id->b[i] >> 4];
		out[2 * i + 1] = hx[id->b[i] & 15];
	}
	out[STORE_ID_HEXLEN] = '\0';
}

/* A repository path component: [a-z0-9]+([._-][a-z0-9]+)* (and no "__" issues: we allow
 * single separators only). */
static bool repo_component_ok(const char *s)
{
	bool prev_sep = true;
	for (; *s; s++) {
		bool alnum = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9');
		if (alnum) {
			prev_sep = false;
			continue;
		}
		if (prev_sep || !strchr("._-", *s))
			return false;
		prev_sep = true;
	}
	return !prev_sep;
}

static void make_names(struct ct_op *op, const char *service, uint64_t rev)
{
	char comp[140];
	if (repo_component_ok(service)) {
		snprintf(comp, sizeof comp, "%s", service);
	} else {
		static const char hx[] = "0123456789abcdef";
		size_t o = 0;
		comp[o++] = 's';
		comp[o++] = '-';
		for (const unsigned char *c = (const unsigned char *)service; *c; c++) {
			comp[o++] = hx[*c >> 4];
			comp[o++] = hx[*c & 15];
		}
		comp[o] = '\0';
	}
	snprintf(op->repo, sizeof op->repo, "localhost/shoal/%s", comp);
	snprintf(op->tagname, sizeof op->tagname, "r%" PRIu64, rev);
	snprintf(op->tag, sizeof op->tag, "%s:%s", op->repo, op->tagname);
	snprintf(op->cname, sizeof op->cname, "shoal-%s-%" PRIu64, service, rev);
}

/*
 * What the engine hands back goes into request targets: container ids must be plain
 * [A-Za-z0-9_.-] (no '/', so no path games), image references must not hold "." or ".."
 * components or anything outside the reference alphabet.
 */
static bool id_ok(const char *s)
{
	if (!*s || *s == '.')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-' || *s == '.'))
			return false;
	return true;
}

static bool ref_ok(const char *s)
{
	if (!*s || *s == '/')
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      strchr("_-.:/@", *c)))
			return false;
	for (const char *c = s; *c;) {
		size_t l = strcspn(c, "/");
		if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += l;
		if (*c == '/' && !*++c)
			return false;
	}
	return true;
}

static int http_errno(int status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 304:
		return 0; /* "already started/stopped" */
	case 400:
		return -EINVAL;
	case 404:
		return -ENOENT;
	case 409:
		return -EEXIST;
	default:
		return -EIO;
	}
}

static struct ct_svc *svc_get(struct ct *ct, const char *name, bool create)
{
	for (struct ct_svc *s = ct->svcs; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	if (!create)
		return NULL;
	struct ct_svc *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	snprintf(s->name, sizeof s->name, "%s", name);
	plugin__status_init(&s->last);
	s->next = ct->svcs;
	ct->svcs = s;
	return s;
}

/* Set the service's error text (cut to fit: it is for people). */
static void set_error(struct ct_svc *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct ct_svc *s, const char *fmt, ...)
{
	va_list ap;
	if (!s)
		return;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof s->error, fmt, ap);
	va_end(ap);
}

/* Keep the engine's message of a failed answer for the status detail. */
static void note_error(struct ct_op *op, const char *what, const struct http_response *resp)
{
	char msg[100] = "";
	if (resp && resp->body_len) {
		struct json_doc d;
		if (json_parse(resp->body, resp->body_len, 0, &d) == 0) {
			int t = json_obj_get(&d, 0, "message");
			if (t < 0)
				t = json_obj_get(&d, 0, "cause");
			json_get_str(&d, t, msg, sizeof msg);
			json_doc_release(&d);
		}
	}
	set_error(op->svc, "%s: HTTP %d%s%s", what, resp ? resp->status : 0, msg[0] ? ": " : "",
		  msg);
}

/* ---- Operation engine --------------------------------------------------------------------- */

static void ct_maybe_closed(struct ct *ct);

static void op_free(struct ct_op *op)
{
	free(op->archive);
	free(op->image);
	free(op->images_before);
	free(op);
}

static void op_finish(struct ct_op *op, int err)
{
	struct ct *ct = op->ct;
	struct plugin *p = ct->p;
	if (ct->closing && err == 0 && op->kind != OP_POLL && op->kind != OP_FORGET)
		err = -ECANCELED;
	for (struct ct_op **pp = &ct->ops; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	if (op->svc) {
		if (op->kind == OP_POLL)
			op->svc->polling = false;
		else if (op->kind != OP_FORGET)
			op->svc->busy = false;
		if (err == 0 && op->kind != OP_POLL && op->kind != OP_STATUS && op->kind != OP_FORGET)
			op->svc->error[0] = '\0';
	}
	const char *service = op->svc ? op->svc->name : "";
	switch (op->kind) {
	case OP_PREPARE:
	case OP_ACTIVATE:
	case OP_DEACTIVATE:
		if (op->done_cb)
			op->done_cb(p, service, err, op->ud);
		break;
	case OP_STATUS:
		if (err == 0 && !ct->closing && op->changed && op->svc->watch && p->cfg.on_event)
			p->cfg.on_event(p, service, &op->st, p->cfg.ud);
		if (op->status_cb)
			op->status_cb(p, service, err, err == 0 ? &op->st : NULL, op->ud);
		break;
	case OP_POLL:
		if (err == 0 && !ct->closing && op->changed && op->svc->watch && p->cfg.on_event)
			p->cfg.on_event(p, service, &op->st, p->cfg.ud);
		break;
	case OP_FORGET:
		break;
	}
	op_free(op);
	ct_maybe_closed(ct);
}

static void op_http_cb(struct http_req *req, int err, const struct http_response *resp, void *ud)
{
	struct ct_op *op = ud;
	op->http = NULL;
	if (err < 0) {
		if (err != -ECANCELED)
			set_error(op->svc, "engine: %s", strerror(-err));
		op_finish(op, err);
		return;
	}
	op->step(op, resp);
}

/* Issue one request; @next handles its answer. On failure the operation finishes. */
static void op_http(struct ct_op *op, const char *method, const char *target, const char *json,
		    const char *file, uint32_t timeout_ms, ct_step_fn next)
{
	struct http_request rq = {
		.method = method,
		.target = target,
		.content_type = json ? "application/json" : file ? "application/x-tar" : NULL,
		.body = json,
		.body_len = json ? strlen(json) : 0,
		.body_file = file,
		.timeout_ms = timeout_ms ? timeout_ms : CT_REQ_TIMEOUT_MS,
	};
	if (op->ct->closing) {
		op_finish(op, -ECANCELED);
		return;
	}
	op->step = next;
	int r = http_request_start(op->ct->p->loop, op->ct->sock, &rq, op_http_cb, op, &op->http);
	if (r < 0)
		op_finish(op, r);
}

static struct ct_op *op_new(struct ct *ct, enum ct_kind kind, struct ct_svc *svc)
{
	struct ct_op *op = calloc(1, sizeof *op);
	if (!op)
		return NULL;
	op->ct = ct;
	op->kind = kind;
	op->svc = svc;
	plugin__status_init(&op->st);
	op->next = ct->ops;
	ct->ops = op;
	return op;
}

/* Build "<API><fmt...>" into @out; false if it does not fit. */
static bool target(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool target(char *out, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(out, CT_TARGET_LEN, "%s", CT_API);
	va_start(ap, fmt);
	int m = vsnprintf(out + n, CT_TARGET_LEN - (size_t)n, fmt, ap);
	va_end(ap);
	return m >= 0 && (size_t)m < CT_TARGET_LEN - (size_t)n;
}

/* Escape for a path segment that may hold '/' and ':' (image references). */
static bool esc_ref(const char *in, char *out, size_t cap)
{
	return http_escape(in, "/:@", out, cap) >= 0;
}

/* ---- Container lists ---------------------------------------------------------------------- */

/*
 * GET /containers/json?all=1 filtered by our labels for the op's service (and @rev if non-0).
 * The answer fills op->ids/op->revs with the managed containers, sorted by rev, newest last.
 */
static void list_managed(struct ct_op *op, uint64_t rev, ct_step_fn next)
{
	char filt[512], esc[1024], t[CT_TARGET_LEN];
	char revf[64] = "";
	if (rev)
		snprintf(revf, sizeof revf, ",\"io.shoal.rev=%" PRIu64 "\"", rev);
	snprintf(filt, sizeof filt,
		 "{\"label\":[\"io.shoal.managed=true\",\"io.shoal.service=%s\"%s]}",
		 op->svc->name, revf);
	if (http_escape(filt, "", esc, sizeof esc) < 0 ||
	    !target(t, "/containers/json?all=1&filters=%s", esc)) {
		op_finish(op, -ENAMETOOLONG);
		return;
	}
	op_http(op, "GET", t, NULL, NULL, 0, next);
}

static bool label_is(const struct json_doc *d, int labels, const char *key, const char *val)
{
	return json_str_eq(d, json_obj_get(d, labels, key), val);
}

static uint64_t label_rev(const struct json_doc *d, int labels)
{
	char b[24];
	if (json_get_str(d, json_obj_get(d, labels, "io.shoal.rev"), b, sizeof b) <= 0)
		return 0;
	char *end;
	unsigned long long v = strtoull(b, &end, 10);
	return *end ? 0 : (uint64_t)v;
}

/* Parse a list answer into op->ids. Returns 0 or an error. */
static int parse_list(struct ct_op *op, const struct http_response *resp, uint64_t only_rev)
{
	struct json_doc d;
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "list", resp);
		return r;
	}
	r = json_parse(resp->body, resp->body_len, 0, &d);
	if (r < 0)
		return -EBADMSG;
	op->nids = op->idx = 0;
	if (json_type(&d, 0) != JSON_ARRAY) {
		r = -EBADMSG;
		goto out;
	}
	for (int e = json_first(&d, 0); e >= 0; e = json_next(&d, 0, e)) {
		int labels = json_obj_get(&d, e, "Labels");
		char id[CT_ID_LEN];
		/* The filter already asked for this; checking again means an engine that ignores
		 * filters can still never make us touch a container that is not ours. */
		if (!label_is(&d, labels, "io.shoal.managed", "true") ||
		    !label_is(&d, labels, "io.shoal.service", op->svc->name))
			continue;
		uint64_t rev = label_rev(&d, labels);
		if (only_rev && rev != only_rev)
			continue;
		if (json_get_str(&d, json_obj_get(&d, e, "Id"), id, sizeof id) <= 0 || !id_ok(id))
			continue;
		if (op->nids == CT_MAX_CONTAINERS) {
			r = -E2BIG;
			goto out;
		}
		/* insertion by rev, newest last */
		size_t k = op->nids++;
		while (k > 0 && op->revs[k - 1] > rev) {
			memcpy(op->ids[k], op->ids[k - 1], CT_ID_LEN);
			op->revs[k] = op->revs[k - 1];
			k--;
		}
		memcpy(op->ids[k], id, CT_ID_LEN);
		op->revs[k] = rev;
	}
	r = 0;
out:
	json_doc_release(&d);
	return r;
}


/* ---- Stop and remove a list of containers -------------------------------------------------- */

enum { RM_ALL, RM_SAME_REV, RM_OTHER_REVS };

static void remove_next(struct ct_op *op);
static void remove_stopped(struct ct_op *op, const struct http_response *resp);
static void remove_deleted(struct ct_op *op, const struct http_response *resp);

static uint32_t stop_secs(struct ct *ct)
{
	uint32_t ms = plugin__ms(ct->p->cfg.stop_timeout_ms, 10000);
	return (ms + 999) / 1000;
}

/* Stop then remove op->ids selected by @mode, one after the other; then run @then. */
static void remove_start(struct ct_op *op, int mode, ct_step_fn then)
{
	op->rm_mode = mode;
	op->after_remove = then;
	op->idx = 0;
	remove_next(op);
}

static bool remove_selected(const struct ct_op *op, size_t i)
{
	switch (op->rm_mode) {
	case RM_SAME_REV:
		return op->revs[i] == op->rev;
	case RM_OTHER_REVS:
		return op->revs[i] != op->rev;
	default:
		return true;
	}
}

static void remove_next(struct ct_op *op)
{
	char t[CT_TARGET_LEN];
	while (op->idx < op->nids && !remove_selected(op, op->idx))
		op->idx++;
	if (op->idx >= op->nids) {
		op->after_remove(op, NULL);
		return;
	}
	uint32_t secs = stop_secs(op->ct);
	target(t, "/containers/%s/stop?t=%" PRIu32, op->ids[op->idx], secs);
	op_http(op, "POST", t, NULL, NULL, secs * 1000 + CT_REQ_TIMEOUT_MS, remove_stopped);
}

static void remove_stopped(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	/* Whatever the stop said (stopped, already stopped, gone, failed), a forced removal
	 * follows: it kills what still runs, and its answer decides. */
	target(t, "/containers/%s?force=1", op->ids[op->idx]);
	op_http(op, "DELETE", t, NULL, NULL, 0, remove_deleted);
}

static void remove_deleted(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r < 0 && r != -ENOENT) {
		note_error(op, "remove", resp);
		op_finish(op, r);
		return;
	}
	op->idx++;
	remove_next(op);
}

/* ---- prepare -------------------------------------------------------------------------------- */

static void activate_continue(struct ct_op *op);
static void prep_have_tag(struct ct_op *op, const struct http_response *resp);
static void prep_images_before(struct ct_op *op, const struct http_response *resp);
static void prep_loaded(struct ct_op *op, const struct http_response *resp);
static void prep_named(struct ct_op *op, const struct http_response *resp);
static void prep_tagged(struct ct_op *op, const struct http_response *resp);
static void prep_untagged(struct ct_op *op, const struct http_response *resp);

static void prepare_done(struct ct_op *op)
{
	if (op->activating)
		activate_continue(op);
	else
		op_finish(op, 0);
}

static void image_get(struct ct_op *op, const char *ref, ct_step_fn next)
{
	char esc[CT_NAME_LEN * 3], t[CT_TARGET_LEN];
	if (!esc_ref(ref, esc, sizeof esc) || !target(t, "/images/%s/json", esc)) {
		op_finish(op, -ENAMETOOLONG);
		return;
	}
	op_http(op, "GET", t, NULL, NULL, 0, next);
}

static void prepare_begin(struct ct_op *op)
{
	image_get(op, op->tag, prep_have_tag);
}

static void prep_have_tag(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	int r = http_errno(resp->status);
	if (r == 0) {
		prepare_done(op); /* prepared before (or by an earlier agent run) */
		return;
	}
	if (r != -ENOENT) {
		note_error(op, "image inspect", resp);
		op_finish(op, r);
		return;
	}
	if (op->archive) {
		target(t, "/images/json");
		op_http(op, "GET", t, NULL, NULL, 0, prep_images_before);
		return;
	}
	image_get(op, op->image, prep_named);
}

static void prep_images_before(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	if (http_errno(resp->status) == 0) {
		op->images_before = strdup(resp->body);
		if (!op->images_before) {
			op_finish(op, -ENOMEM);
			return;
		}
	}
	target(t, "/images/load?quiet=1");
	op_http(op, "POST", t, NULL, op->archive, CT_LOAD_TIMEOUT_MS, prep_loaded);
}

/* Trim @s (length @n) and copy it to @out up to the first ',' (a list of names). */
static void first_name(const char *s, size_t n, char *out, size_t cap)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	size_t e = 0;
	while (e < n && s[e] != ',' && s[e] != '\n' && s[e] != '\r' && s[e] != ' ')
		e++;
	if (e >= cap)
		e = 0; /* too long to be a reference: treat as absent */
	memcpy(out, s, e);
	out[e] = '\0';
}

/*
 * The load answer is a stream of JSON objects, one per line (Docker: progress and
 * {"stream":"Loaded image: NAME\n"}, or "Loaded image ID: sha256:..."; Podman:
 * {"stream":"Loaded image: NAME[,NAME...]"}), or {"error": ...} / {"errorDetail": ...}.
 */
static int parse_load(struct ct_op *op, const char *body, size_t len)
{
	size_t i = 0;
	op->loaded[0] = '\0';
	while (i < len) {
		size_t e = i;
		while (e < len && body[e] != '\n')
			e++;
		struct json_doc d;
		size_t a = i, b = e;
		while (a < b && (body[a] == ' ' || body[a] == '\r' || body[a] == '\t'))
			a++;
		if (a < b && json_parse(body + a, b - a, 0, &d) == 0) {
			char msg[512];
			int t = json_obj_get(&d, 0, "error");
			if (t >= 0) {
				json_get_str(&d, t, msg, sizeof msg);
				set_error(op->svc, "load: %s", msg);
				json_doc_release(&d);
				return -EIO;
			}
			if (json_get_str(&d, json_obj_get(&d, 0, "stream"), msg, sizeof msg) > 0 &&
			    !op->loaded[0]) {
				static const char p1[] = "Loaded image: ", p2[] = "Loaded image ID: ";
				if (!strncmp(msg, p1, sizeof p1 - 1))
					first_name(msg + sizeof p1 - 1, strlen(msg) - (sizeof p1 - 1),
						   op->loaded, sizeof op->loaded);
				else if (!strncmp(msg, p2, sizeof p2 - 1))
					first_name(msg + sizeof p2 - 1, strlen(msg) - (sizeof p2 - 1),
						   op->loaded, sizeof op->loaded);
			}
			json_doc_release(&d);
		}
		i = e + 1;
	}
	if (!op->loaded[0] || !ref_ok(op->loaded)) {
		set_error(op->svc, "load: no usable image name in the answer");
		return -EBADMSG;
	}
	return 0;
}

static void tag_loaded(struct ct_op *op)
{
	char esc[CT_NAME_LEN * 3], erepo[CT_NAME_LEN * 3], t[CT_TARGET_LEN];
	if (!esc_ref(op->loaded, esc, sizeof esc) ||
	    http_escape(op->repo, "", erepo, sizeof erepo) < 0 ||
	    !target(t, "/images/%s/tag?repo=%s&tag=%s", esc, erepo, op->tagname)) {
		op_finish(op, -ENAMETOOLONG);
		return;
	}
	op_http(op, "POST", t, NULL, NULL, 0, prep_tagged);
}

static void prep_loaded(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "load", resp);
		op_finish(op, r);
		return;
	}
	r = parse_load(op, resp->body, resp->body_len);
	if (r < 0) {
		op_finish(op, r);
		return;
	}
	tag_loaded(op);
}

static void prep_named(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "image", resp);
		op_finish(op, r);
		return;
	}
	snprintf(op->loaded, sizeof op->loaded, "%s", op->image);
	tag_loaded(op);
}

/* Did GET /images/json (before the load) list @name among the RepoTags? */
static bool existed_before(const char *images, const char *name)
{
	struct json_doc d;
	bool found = false;
	if (!images || json_parse(images, strlen(images), 0, &d) < 0)
		return true; /* unknown: assume it did, never remove it */
	if (json_type(&d, 0) != JSON_ARRAY) {
		found = true;
		goto out;
	}
	for (int e = json_first(&d, 0); e >= 0 && !found; e = json_next(&d, 0, e)) {
		int tags = json_obj_get(&d, e, "RepoTags");
		if (json_type(&d, tags) != JSON_ARRAY)
			continue;
		for (int t = json_first(&d, tags); t >= 0; t = json_next(&d, tags, t))
			if (json_str_eq(&d, t, name))
				found = true;
	}
out:
	json_doc_release(&d);
	return found;
}

static void prep_tagged(struct ct_op *op, const struct http_response *resp)
{
	char esc[CT_NAME_LEN * 3], t[CT_TARGET_LEN];
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "tag", resp);
		op_finish(op, r);
		return;
	}
	/* A name the load created is removed again: the revision's tag holds the image. */
	if (op->archive && strncmp(op->loaded, "sha256:", 7) != 0 && strcmp(op->loaded, op->tag) &&
	    !existed_before(op->images_before, op->loaded) &&
	    esc_ref(op->loaded, esc, sizeof esc) && target(t, "/images/%s?noprune=1", esc)) {
		op_http(op, "DELETE", t, NULL, NULL, 0, prep_untagged);
		return;
	}
	prepare_done(op);
}

static void prep_untagged(struct ct_op *op, const struct http_response *resp)
{
	prepare_done(op); /* best effort: a leftover name costs nothing but a line in `images` */
}

/* ---- activate -------------------------------------------------------------------------------- */

static void act_name_checked(struct ct_op *op, const struct http_response *resp);
static void act_listed(struct ct_op *op, const struct http_response *resp);
static void act_create(struct ct_op *op, const struct http_response *resp);
static void act_created(struct ct_op *op, const struct http_response *resp);
static void act_start(struct ct_op *op, const struct http_response *resp);
static void act_started(struct ct_op *op, const struct http_response *resp);

static void activate_continue(struct ct_op *op)
{
	char t[CT_TARGET_LEN];
	target(t, "/containers/%s/json", op->cname);
	op_http(op, "GET", t, NULL, NULL, 0, act_name_checked);
}

static void act_name_checked(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r == 0) {
		struct json_doc d;
		bool ours = false;
		if (json_parse(resp->body, resp->body_len, 0, &d) == 0) {
			int labels = json_path(&d, 0, "Config.Labels");
			ours = label_is(&d, labels, "io.shoal.managed", "true") &&
			       label_is(&d, labels, "io.shoal.service", op->svc->name);
			json_doc_release(&d);
		}
		if (!ours) {
			set_error(op->svc, "activate: container name %s is held by a container "
				  "not managed by shoal", op->cname);
			op_finish(op, -EEXIST);
			return;
		}
	} else if (r != -ENOENT) {
		note_error(op, "inspect", resp);
		op_finish(op, r);
		return;
	}
	list_managed(op, 0, act_listed);
}

static void act_listed(struct ct_op *op, const struct http_response *resp)
{
	int r = parse_list(op, resp, 0);
	if (r < 0) {
		op_finish(op, r);
		return;
	}
	/* a managed container already named like the new one goes first (re-activation) */
	remove_start(op, RM_SAME_REV, act_create);
}

static char *create_body(struct ct_op *op)
{
	struct json_w w;
	char env[3][160], rev[24];
	char *out = NULL;
	snprintf(rev, sizeof rev, "%" PRIu64, op->rev);
	snprintf(env[0], sizeof env[0], "SHOAL_SERVICE=%s", op->svc->name);
	snprintf(env[1], sizeof env[1], "SHOAL_REV=%s", rev);
	snprintf(env[2], sizeof env[2], "SHOAL_ARTIFACT=%s", op->artifact);
	json_w_init(&w, 0);
	json_w_obj_begin(&w);
	json_w_key(&w, "Image");
	json_w_str(&w, op->tag);
	json_w_key(&w, "Labels");
	json_w_obj_begin(&w);
	json_w_key(&w, "io.shoal.managed");
	json_w_str(&w, "true");
	json_w_key(&w, "io.shoal.service");
	json_w_str(&w, op->svc->name);
	json_w_key(&w, "io.shoal.rev");
	json_w_str(&w, rev);
	json_w_key(&w, "io.shoal.artifact");
	json_w_str(&w, op->artifact);
	json_w_obj_end(&w);
	json_w_key(&w, "Env");
	json_w_arr_begin(&w);
	for (int i = 0; i < 3; i++)
		json_w_str(&w, env[i]);
	json_w_arr_end(&w);
	json_w_key(&w, "StopTimeout");
	json_w_int(&w, stop_secs(op->ct));
	json_w_key(&w, "HostConfig");
	json_w_obj_begin(&w);
	json_w_key(&w, "Init");
	json_w_bool(&w, true);
	json_w_key(&w, "NetworkMode");
	json_w_str(&w, "host");
	json_w_key(&w, "RestartPolicy");
	json_w_obj_begin(&w);
	json_w_key(&w, "Name");
	json_w_str(&w, "on-failure");
	json_w_key(&w, "MaximumRetryCount");
	json_w_int(&w, CT_RESTART_MAX);
	json_w_obj_end(&w);
	json_w_obj_end(&w);
	json_w_obj_end(&w);
	if (json_w_finish(&w, &out, NULL) < 0)
		out = NULL;
	json_w_release(&w);
	return out;
}

static void act_create(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	char *body = create_body(op);
	if (!body) {
		op_finish(op, -ENOMEM);
		return;
	}
	target(t, "/containers/create?name=%s", op->cname);
	op_http(op, "POST", t, body, NULL, 0, act_created);
	free(body);
}

static void act_created(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "create", resp);
		/* Podman answers a name conflict with 500 "... already in use" */
		if (strstr(resp->body, "already in use"))
			r = -EEXIST;
		op_finish(op, r);
		return;
	}
	struct json_doc d;
	r = json_parse(resp->body, resp->body_len, 0, &d);
	if (r == 0) {
		r = json_get_str(&d, json_obj_get(&d, 0, "Id"), op->new_id, sizeof op->new_id);
		json_doc_release(&d);
	}
	if (r <= 0 || !id_ok(op->new_id)) {
		op_finish(op, -EBADMSG);
		return;
	}
	/* the new container exists: now the old ones go */
	remove_start(op, RM_OTHER_REVS, act_start);
}

static void act_start(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	target(t, "/containers/%s/start", op->new_id);
	op_http(op, "POST", t, NULL, NULL, 0, act_started);
}

static void act_started(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r < 0) {
		note_error(op, "start", resp);
		op_finish(op, r);
		return;
	}
	op->svc->watch = true;
	op_finish(op, 0);
}

/* ---- deactivate ------------------------------------------------------------------------------ */

static void deact_removed(struct ct_op *op, const struct http_response *resp)
{
	op->svc->watch = true;
	op_finish(op, 0);
}

static void deact_listed(struct ct_op *op, const struct http_response *resp)
{
	int r = parse_list(op, resp, 0);
	if (r < 0) {
		op_finish(op, r);
		return;
	}
	remove_start(op, RM_ALL, deact_removed);
}

/* ---- status ---------------------------------------------------------------------------------- */

static bool status_differs(const struct plugin_status *a, const struct plugin_status *b)
{
	return a->state != b->state || a->rev != b->rev || a->pid != b->pid ||
	       a->restarts != b->restarts || a->exit_status != b->exit_status;
}

/* Record op->st as the service's latest observation; keep since_ms across equal ones. */
static void observe(struct ct_op *op)
{
	struct ct_svc *s = op->svc;
	uint64_t now = uv_now(op->ct->p->loop);
	if (s->error[0] && op->st.state != PLUGIN_RUNNING) {
		size_t n = strlen(op->st.detail);
		snprintf(op->st.detail + n, sizeof op->st.detail - n, "%s%s", n ? "; " : "",
			 s->error);
	}
	if (!s->known || status_differs(&op->st, &s->last)) {
		op->changed = true;
		op->st.since_ms = now;
	} else {
		op->st.since_ms = s->last.since_ms;
	}
	s->last = op->st;
	s->known = true;
}

/*
 * Map an inspect answer (GET /containers/{id}/json) to a plugin_status. Pure; exposed to the
 * unit tests through a declaration there.
 */
int plugin__container_map_inspect(const char *body, size_t len, struct plugin_status *st);
int plugin__container_map_inspect(const char *body, size_t len, struct plugin_status *st)
{
	struct json_doc d;
	char status[32], started[40] = "", error[64] = "";
	bool running = false, restarting = false;
	int64_t code = -1, pid = 0, restarts = 0, max_retry = 0;
	char policy[32] = "";
	int r = json_parse(body, len, 0, &d);
	if (r < 0)
		return -EBADMSG;
	int state = json_obj_get(&d, 0, "State");
	if (json_get_str(&d, json_obj_get(&d, state, "Status"), status, sizeof status) <= 0) {
		r = -EBADMSG;
		goto out;
	}
	json_get_bool(&d, json_obj_get(&d, state, "Running"), &running);
	json_get_bool(&d, json_obj_get(&d, state, "Restarting"), &restarting);
	json_get_i64(&d, json_obj_get(&d, state, "ExitCode"), &code);
	json_get_i64(&d, json_obj_get(&d, state, "Pid"), &pid);
	json_get_i64(&d, json_obj_get(&d, 0, "RestartCount"), &restarts);
	json_get_str(&d, json_obj_get(&d, state, "StartedAt"), started, sizeof started);
	json_get_str(&d, json_obj_get(&d, state, "Error"), error, sizeof error);
	json_get_str(&d, json_path(&d, 0, "HostConfig.RestartPolicy.Name"), policy, sizeof policy);
	json_get_i64(&d, json_path(&d, 0, "HostConfig.RestartPolicy.MaximumRetryCount"),
		     &max_retry);
	/* Podman shows "stopped" between the exit and its cleanup, which restarts the container
	 * when the on-failure policy has retries left; "exited" is final. */
	bool will_restart = !strcmp(status, "stopped") && code != 0 &&
			    !strcmp(policy, "on-failure") && (max_retry == 0 || restarts < max_retry);

	plugin__status_init(st);
	st->rev = label_rev(&d, json_path(&d, 0, "Config.Labels"));
	st->pid = pid > 0 ? pid : 0;
	st->restarts = restarts > 0 && restarts <= UINT32_MAX ? (uint32_t)restarts : 0;
	if (restarting || will_restart || !strcmp(status, "restarting")) {
		st->state = PLUGIN_RESTARTING;
		st->exit_status = code >= 0 && code <= 255 ? (int)code : -1;
	} else if (running || !strcmp(status, "running") || !strcmp(status, "paused")) {
		st->state = PLUGIN_RUNNING;
	} else if (!strcmp(status, "created") || !strcmp(status, "configured")) {
		st->state = error[0] ? PLUGIN_FAILED : PLUGIN_STARTING;
	} else if (!strcmp(status, "exited") || !strcmp(status, "stopped") ||
		   !strcmp(status, "dead")) {
		st->exit_status = code >= 0 && code <= 255 ? (int)code : -1;
		st->state = code == 0 ? PLUGIN_STOPPED : PLUGIN_FAILED;
	} else if (!strcmp(status, "removing")) {
		st->state = PLUGIN_STOPPED;
	} else {
		st->state = PLUGIN_STARTING; /* a state this driver does not know yet */
	}
	if (st->state == PLUGIN_RUNNING)
		snprintf(st->detail, sizeof st->detail, "%s pid %" PRId64 " since %s restarts %" PRId64,
			 status, pid, started, restarts);
	else
		snprintf(st->detail, sizeof st->detail, "%s code %" PRId64 " restarts %" PRId64 "%s%s",
			 status, code, restarts, error[0] ? " error: " : "", error);
	r = 0;
out:
	json_doc_release(&d);
	return r;
}

static void st_inspected(struct ct_op *op, const struct http_response *resp)
{
	int r = http_errno(resp->status);
	if (r == -ENOENT) {
		plugin__status_init(&op->st); /* removed between list and inspect */
		snprintf(op->st.detail, sizeof op->st.detail, "no container");
	} else if (r < 0) {
		note_error(op, "inspect", resp);
		op_finish(op, r);
		return;
	} else if (plugin__container_map_inspect(resp->body, resp->body_len, &op->st) < 0) {
		op_finish(op, -EBADMSG);
		return;
	}
	observe(op);
	op_finish(op, 0);
}

static void st_listed(struct ct_op *op, const struct http_response *resp)
{
	char t[CT_TARGET_LEN];
	int r = parse_list(op, resp, 0);
	if (r < 0) {
		op_finish(op, r);
		return;
	}
	if (op->nids == 0) {
		plugin__status_init(&op->st);
		snprintf(op->st.detail, sizeof op->st.detail, "no container");
		observe(op);
		op_finish(op, 0);
		return;
	}
	target(t, "/containers/%s/json", op->ids[op->nids - 1]);
	op_http(op, "GET", t, NULL, NULL, 0, st_inspected);
}

/* ---- forget ---------------------------------------------------------------------------------- */

static void fg_untagged(struct ct_op *op, const struct http_response *resp)
{
	op_finish(op, 0);
}

static void fg_removed(struct ct_op *op, const struct http_response *resp)
{
	char esc[CT_NAME_LEN * 3], t[CT_TARGET_LEN];
	/* Untag only: the engine deletes the image with its last tag, and refuses (409) while a
	 * container still uses it. */
	if (!esc_ref(op->tag, esc, sizeof esc) || !target(t, "/images/%s", esc)) {
		op_finish(op, -ENAMETOOLONG);
		return;
	}
	op_http(op, "DELETE", t, NULL, NULL, 0, fg_untagged);
}

static void fg_listed(struct ct_op *op, const struct http_response *resp)
{
	int r = parse_list(op, resp, op->rev);
	if (r < 0) {
		op_finish(op, r);
		return;
	}
	remove_start(op, RM_ALL, fg_removed);
}

/* ---- polling --------------------------------------------------------------------------------- */

static void on_poll(uv_timer_t *t)
{
	struct ct *ct = t->data;
	if (ct->closing)
		return;
	for (struct ct_svc *s = ct->svcs; s; s = s->next) {
		if (!s->watch || s->busy || s->polling)
			continue;
		struct ct_op *op = op_new(ct, OP_POLL, s);
		if (!op)
			return;
		s->polling = true;
		list_managed(op, 0, st_listed);
	}
}

/* ---- plugin_ops ------------------------------------------------------------------------------ */

static int ct_init(struct plugin *p)
{
	struct ct *ct = calloc(1, sizeof *ct);
	if (!ct)
		return -ENOMEM;
	ct->p = p;
	ct->sock = p->cfg.docker_host && p->cfg.docker_host[0] ? p->cfg.docker_host
								   : CT_DEFAULT_SOCK;
	uv_timer_init(p->loop, &ct->poll);
	ct->poll.data = ct;
	ct->poll_open = true;
	uv_timer_start(&ct->poll, on_poll, CT_POLL_MS, CT_POLL_MS);
	/* Polling alone does not keep a loop alive: the agent's own handles do. */
	uv_unref((uv_handle_t *)&ct->poll);
	p->priv = ct;
	return 0;
}

/* Common checks; returns the service record marked busy, or an error. */
static int begin_op(struct plugin *p, const char *service, struct ct_svc **ret)
{
	struct ct *ct = p->priv;
	if (!plugin__valid_service(service))
		return -EINVAL;
	if (ct->closing)
		return -ECANCELED;
	struct ct_svc *s = svc_get(ct, service, true);
	if (!s)
		return -ENOMEM;
	if (s->busy)
		return -EBUSY;
	*ret = s;
	return 0;
}

/* A relative path inside the artifact: no absolute path, no ".." component. */
static bool safe_relpath(const char *s)
{
	if (!s || !*s || *s == '/' || strlen(s) > 1024)
		return false;
	for (const char *c = s; *c;) {
		const char *e = strchr(c, '/');
		size_t l = e ? (size_t)(e - c) : strlen(c);
		if (l == 2 && c[0] == '.' && c[1] == '.')
			return false;
		c += l;
		if (*c == '/')
			c++;
	}
	return true;
}

static int instance_op(struct plugin *p, const struct plugin_instance *in, enum ct_kind kind,
		       plugin_done_cb cb, void *ud)
{
	struct ct *ct = p->priv;
	struct ct_svc *s;
	const struct store_manifest *m = in ? in->manifest : NULL;
	if (!in || !m || !cb || in->rev == 0)
		return -EINVAL;
	bool archive = m->container_archive && m->container_archive[0];
	if (archive && (!in->dir || in->dir[0] != '/' || !safe_relpath(m->container_archive)))
		return -EINVAL;
	if (!archive && (!m->container_image || !ref_ok(m->container_image) ||
			 strlen(m->container_image) >= CT_NAME_LEN))
		return -EINVAL;
	int r = begin_op(p, in->service, &s);
	if (r < 0)
		return r;
	struct ct_op *op = op_new(ct, kind, s);
	if (!op)
		return -ENOMEM;
	op->done_cb = cb;
	op->ud = ud;
	op->rev = in->rev;
	hex_id(&in->artifact, op->artifact);
	make_names(op, in->service, in->rev);
	if (archive) {
		size_t n = strlen(in->dir) + strlen(m->container_archive) + 2;
		op->archive = malloc(n);
		if (op->archive)
			snprintf(op->archive, n, "%s/%s", in->dir, m->container_archive);
	} else {
		op->image = strdup(m->container_image);
	}
	if (!op->archive && !op->image) {
		ct->ops = op->next; /* op_new put it first */
		op_free(op);
		return -ENOMEM;
	}
	s->busy = true;
	op->activating = kind == OP_ACTIVATE;
	prepare_begin(op);
	return 0;
}

static int ct_prepare(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
		      void *ud)
{
	return instance_op(p, in, OP_PREPARE, cb, ud);
}

static int ct_activate(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
		       void *ud)
{
	return instance_op(p, in, OP_ACTIVATE, cb, ud);
}

static int ct_deactivate(struct plugin *p, const char *service, plugin_done_cb cb, void *ud)
{
	struct ct_svc *s;
	if (!cb)
		return -EINVAL;
	int r = begin_op(p, service, &s);
	if (r < 0)
		return r;
	struct ct_op *op = op_new(p->priv, OP_DEACTIVATE, s);
	if (!op)
		return -ENOMEM;
	op->done_cb = cb;
	op->ud = ud;
	s->busy = true;
	list_managed(op, 0, deact_listed);
	return 0;
}

static int ct_status(struct plugin *p, const char *service, plugin_status_cb cb, void *ud)
{
	struct ct_svc *s;
	if (!cb)
		return -EINVAL;
	int r = begin_op(p, service, &s);
	if (r < 0)
		return r;
	struct ct_op *op = op_new(p->priv, OP_STATUS, s);
	if (!op)
		return -ENOMEM;
	op->status_cb = cb;
	op->ud = ud;
	s->busy = true;
	s->watch = true;
	list_managed(op, 0, st_listed);
	return 0;
}

static int ct_forget(struct plugin *p, const char *service, uint64_t rev)
{
	struct ct *ct = p->priv;
	if (!plugin__valid_service(service) || rev == 0)
		return -EINVAL;
	if (ct->closing)
		return -ECANCELED;
	struct ct_svc *s = svc_get(ct, service, true);
	if (!s)
		return -ENOMEM;
	struct ct_op *op = op_new(ct, OP_FORGET, s);
	if (!op)
		return -ENOMEM;
	op->rev = rev;
	make_names(op, service, rev);
	list_managed(op, rev, fg_listed);
	return 0;
}

static void ct_maybe_closed(struct ct *ct)
{
	if (!ct->closing || ct->poll_open || ct->ops)
		return;
	struct plugin *p = ct->p;
	plugin_close_cb cb = ct->close_cb;
	void *ud = ct->close_ud;
	while (ct->svcs) {
		struct ct_svc *s = ct->svcs;
		ct->svcs = s->next;
		free(s);
	}
	free(ct);
	p->priv = NULL;
	if (cb)
		cb(p, ud);
}

static void on_poll_close(uv_handle_t *h)
{
	struct ct *ct = h->data;
	ct->poll_open = false;
	ct_maybe_closed(ct);
}

static void ct_close(struct plugin *p, plugin_close_cb cb, void *ud)
{
	struct ct *ct = p->priv;
	if (!ct || ct->closing)
		return;
	ct->closing = true;
	ct->close_cb = cb;
	ct->close_ud = ud;
	/* Every live operation waits on exactly one request: cancelling it finishes the
	 * operation (its callback gets -ECANCELED) from the loop, never from here. */
	for (struct ct_op *op = ct->ops; op; op = op->next)
		if (op->http)
			http_request_cancel(op->http);
	uv_close((uv_handle_t *)&ct->poll, on_poll_close);
}

/* The engine's words for the service's last failed operation (kept until one succeeds). */
static const char *ct_last_error(struct plugin *p, const char *service)
{
	struct ct_svc *s = svc_get(p->priv, service, false);

	return s ? s->error : "";
}

const struct plugin_ops plugin_container_ops = {
	.name = "container",
	.init = ct_init,
	.prepare = ct_prepare,
	.activate = ct_activate,
	.deactivate = ct_deactivate,
	.status = ct_status,
	.forget = ct_forget,
	.close = ct_close,
	.last_error = ct_last_error,
};
