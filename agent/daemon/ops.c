/*
 * agent/daemon/ops.c: the operations the control socket serves in this version.
 *
 *   op                  args                                  result
 *   ping                -                                     "pong"
 *   status              -                                     map (node, store, counts)
 *   artifact.import     {dir: absolute path}                  artifact summary + new, by
 *   artifact.import_git {repo: absolute path, ref, path?}     same
 *   artifact.list       {service?}                            [artifact summary], oldest first
 *   artifact.show       {id: hex id or unique prefix >= 4}    artifact details with files
 *   history             {service, limit?}                     [revision], newest first
 *
 * Every op except ping runs on the threadpool (store access may wait on disk or on LMDB's
 * writer lock). Each writes a complete response into @out; errors use the stable names of
 * agent_ctl_err_from_errno().
 */
#include "agent/daemon/agent.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/fleet/fleet.h"
#include "agent/cluster/cluster.h"
#include "agent/base/clock.h"
#include "agent/ctl/ctl_args.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/cluster/fetch.h"
#include "agent/base/log.h"
#include "store/import.h"

static void reply_errno(struct ctl_enc *out, int err, const char *detail)
{
	ctl_enc_reset(out);
	ctl_enc_error(out, agent_ctl_err_from_errno(err),
		      detail && *detail ? detail : store_strerror(err));
}

/* ---- Arguments (ctl/ctl_args.h: decoded and checked before the op body runs) ---------------- */

static int absolute(const char *s)
{
	return s[0] == '/' ? 0 : -EINVAL;
}

struct import_args {
	char *dir;
};
static const struct ctl_arg import_rows[] = {
	{"dir", CTL_ARG_STR, .required = true, .offset = offsetof(struct import_args, dir),
	 .check = absolute,
	 .invalid = "\"dir\" must be an absolute path (the agent's working directory is not "
		    "yours)"},
};
static const struct ctl_args_spec import_spec = CTL_ARGS_SPEC(struct import_args, import_rows);

struct import_git_args {
	char *repo, *ref, *path;
};
static const struct ctl_arg import_git_rows[] = {
	{"repo", CTL_ARG_STR, .required = true, .offset = offsetof(struct import_git_args, repo),
	 .check = absolute, .invalid = "\"repo\" must be an absolute path"},
	{"ref", CTL_ARG_STR, .required = true, .offset = offsetof(struct import_git_args, ref)},
	{"path", CTL_ARG_STR, .offset = offsetof(struct import_git_args, path)},
};
static const struct ctl_args_spec import_git_spec =
	CTL_ARGS_SPEC(struct import_git_args, import_git_rows);

struct service_args {
	char *service;
	uint64_t limit;
};
static const struct ctl_arg list_rows[] = {
	{"service", CTL_ARG_STR, .offset = offsetof(struct service_args, service),
	 .check = agent_config_check_name, .invalid = "invalid service name"},
};
static const struct ctl_args_spec list_spec = CTL_ARGS_SPEC(struct service_args, list_rows);
static const struct ctl_arg history_rows[] = {
	{"service", CTL_ARG_STR, .required = true, .offset = offsetof(struct service_args, service),
	 .check = agent_config_check_name, .invalid = "invalid service name"},
	{"limit", CTL_ARG_UINT, .offset = offsetof(struct service_args, limit), .max = 100000,
	 .bad = "\"limit\" must be an integer in 0..100000"},
};
static const struct ctl_args_spec history_spec = CTL_ARGS_SPEC(struct service_args, history_rows);

struct show_args {
	char *id;
};
static const struct ctl_arg show_rows[] = {
	{"id", CTL_ARG_STR, .required = true, .offset = offsetof(struct show_args, id)},
};
static const struct ctl_args_spec show_spec = CTL_ARGS_SPEC(struct show_args, show_rows);

/* ---- Encoders ----------------------------------------------------------------------------- */

static void enc_id(struct ctl_enc *e, const struct store_id *id)
{
	char hex[STORE_ID_HEXLEN + 1];
	ctl_enc_str(e, store_id_hex(id, hex));
}

/* The fields list and show share. */
#define SUMMARY_FIELDS 10
static void enc_summary_fields(struct ctl_enc *e, const struct store_artifact_info *a)
{
	const struct store_manifest *m = &a->manifest;
	ctl_enc_str(e, "id");
	enc_id(e, &a->id);
	ctl_kv_str(e, "service", m->service);
	ctl_kv_str(e, "version", m->version);
	ctl_kv_str(e, "runtime", m->runtime);
	ctl_kv_uint(e, "files", m->nfiles);
	ctl_kv_uint(e, "size", a->total_size);
	ctl_kv_uint(e, "imported_at", a->imported_at_ms);
	ctl_enc_str(e, "condemned");
	ctl_enc_bool(e, a->condemned);
	ctl_kv_str(e, "git_commit", m->git_commit);
	ctl_kv_str(e, "git_tag", m->git_tag);
}

static void enc_summary(struct ctl_enc *e, const struct store_artifact_info *a)
{
	ctl_enc_map(e, SUMMARY_FIELDS);
	enc_summary_fields(e, a);
}

static void enc_details(struct ctl_enc *e, const struct store_artifact_info *a)
{
	const struct store_manifest *m = &a->manifest;
	ctl_enc_map(e, SUMMARY_FIELDS + 6);
	enc_summary_fields(e, a);

	ctl_enc_str(e, "exec");
	ctl_enc_map(e, 1);
	ctl_kv_str(e, "command", m->exec_command);
	ctl_enc_str(e, "systemd");
	ctl_enc_map(e, 1);
	ctl_kv_str(e, "unit", m->systemd_unit);
	ctl_enc_str(e, "container");
	ctl_enc_map(e, 2);
	ctl_kv_str(e, "image", m->container_image);
	ctl_kv_str(e, "archive", m->container_archive);

	ctl_enc_str(e, "health");
	ctl_enc_map(e, 7);
	ctl_kv_str(e, "http", m->health.http);
	ctl_kv_str(e, "tcp", m->health.tcp);
	ctl_kv_str(e, "exec", m->health.exec);
	ctl_kv_uint(e, "interval_ms", m->health.interval_ms);
	ctl_kv_uint(e, "timeout_ms", m->health.timeout_ms);
	ctl_kv_uint(e, "failures", m->health.failures);
	ctl_kv_uint(e, "deadline_ms", m->health.deadline_ms);

	ctl_enc_str(e, "git");
	if (m->git_commit) {
		ctl_enc_map(e, 4);
		ctl_kv_str(e, "commit", m->git_commit);
		ctl_kv_str(e, "tag", m->git_tag);
		ctl_kv_str(e, "author", m->git_author);
		ctl_kv_str(e, "message", m->git_message);
	} else {
		ctl_enc_nil(e);
	}

	ctl_enc_str(e, "file_list");
	ctl_enc_array(e, m->nfiles > UINT32_MAX ? UINT32_MAX : (uint32_t)m->nfiles);
	for (size_t i = 0; i < m->nfiles && i < UINT32_MAX; i++) {
		const struct store_file *f = &m->files[i];
		ctl_enc_map(e, 5);
		ctl_kv_str(e, "path", f->path);
		ctl_kv_uint(e, "mode", f->mode);
		ctl_kv_uint(e, "size", f->size);
		ctl_enc_str(e, "blob");
		enc_id(e, &f->blob);
		ctl_enc_str(e, "type");
		ctl_enc_str(e, f->mode == 0120000 ? "symlink" : "file");
	}
}

/* ---- Ops ------------------------------------------------------------------------------------ */

static void op_ping(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		    struct ctl_enc *out)
{
	ctl_enc_ok(out);
	ctl_enc_str(out, "pong");
}

struct status_counts {
	struct store *store;
	uint64_t services, revisions;
};

static int count_rev_cb(const struct store_revision *r, void *ud)
{
	(*(uint64_t *)ud)++;
	return 0;
}

/* The store runs foreach callbacks outside its read transaction: nesting is allowed. */
static int count_service_cb(const char *service, void *ud)
{
	struct status_counts *c = ud;
	c->services++;
	int r = store_revision_foreach(c->store, service, 0, count_rev_cb, &c->revisions);
	return r == -ENOENT ? 0 : r;
}

static void op_status(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	struct agent *a = ud;
	struct store_stats st;
	struct status_counts counts = {.store = a->store};
	int r = store_stats(a->store, &st);
	if (r < 0) {
		reply_errno(out, r, NULL);
		return;
	}
	r = store_service_foreach(a->store, count_service_cb, &counts);
	if (r < 0) {
		reply_errno(out, r, NULL);
		return;
	}
	ctl_enc_ok(out);
	ctl_enc_map(out, 14);
	ctl_kv_str(out, "node_id", a->node_id_hex);
	ctl_kv_str(out, "name", a->cfg.node_name);
	ctl_kv_str(out, "version", SHOAL_VERSION);
	ctl_kv_uint(out, "uptime_ms", (uv_hrtime() - a->start_ns) / 1000000);
	ctl_kv_uint(out, "started_at", a->start_wall_ms);
	ctl_kv_uint(out, "pid", (uint64_t)getpid());
	ctl_kv_str(out, "state_dir", a->cfg.state_dir);
	ctl_kv_str(out, "socket", a->cfg.socket_path);
	ctl_kv_str(out, "cluster", a->cfg.cluster);
	ctl_kv_str(out, "log_level", agent_log_level_name(agent_log_get_level()));
	ctl_enc_str(out, "store");
	ctl_enc_map(out, 6);
	ctl_kv_uint(out, "map_size", st.map_size);
	ctl_kv_uint(out, "map_used", st.map_used);
	ctl_kv_uint(out, "artifacts", st.nartifacts);
	ctl_kv_uint(out, "blobs", st.nblobs);
	ctl_kv_uint(out, "chunks", st.nchunks);
	ctl_kv_uint(out, "chunk_bytes", st.chunk_bytes);
	ctl_enc_str(out, "counts");
	ctl_enc_map(out, 4);
	ctl_kv_uint(out, "artifacts", st.nartifacts);
	ctl_kv_uint(out, "services", counts.services);
	ctl_kv_uint(out, "revisions", counts.revisions);
	ctl_kv_uint(out, "clients", ctl_server_clients(a->ctl));
	ctl_enc_str(out, "labels");
	ctl_enc_array(out, (uint32_t)a->cfg.nlabels);
	for (size_t i = 0; i < a->cfg.nlabels; i++)
		ctl_enc_str(out, a->cfg.labels[i]);
	ctl_enc_str(out, "gossip");
	cluster_status_encode(a->cluster, out);
}

static void import_reply(struct agent *a, const struct ctl_peer *peer, int rc,
			 const struct store_id *id, const char *what, const char *err,
			 struct ctl_enc *out)
{
	if (rc < 0) {
		log_info("ctl: import of %s for uid %u (pid %d) failed: %s", what, peer->uid,
			 peer->pid, err && *err ? err : store_strerror(rc));
		reply_errno(out, rc, err);
		return;
	}
	struct store_artifact_info info;
	memset(&info, 0, sizeof info);
	int r = store_artifact_get(a->store, id, &info);
	if (r < 0) {
		reply_errno(out, r, "artifact vanished right after its import");
		return;
	}
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(id, hex);
	/* The store keeps no importer in the artifact's meta yet: the log is the record. */
	log_notice("ctl: %s artifact %s (service %s, version %s) from %s by uid %u pid %d",
		   rc == 0 ? "imported" : "re-imported existing", hex, info.manifest.service,
		   info.manifest.version ? info.manifest.version : "-", what, peer->uid, peer->pid);
	ctl_enc_ok(out);
	ctl_enc_map(out, SUMMARY_FIELDS + 2);
	enc_summary_fields(out, &info);
	ctl_enc_str(out, "new");
	ctl_enc_bool(out, rc == 0);
	ctl_enc_str(out, "imported_by");
	ctl_enc_map(out, 2);
	ctl_enc_str(out, "uid");
	if (peer->known)
		ctl_enc_uint(out, peer->uid);
	else
		ctl_enc_nil(out);
	ctl_enc_str(out, "pid");
	if (peer->known)
		ctl_enc_int(out, peer->pid);
	else
		ctl_enc_nil(out);
	store_artifact_info_release(&info);
}

static void limits_of(const struct agent *a, struct store_import_limits *lim)
{
	lim->max_file_size = a->cfg.max_artifact_file_size;
	lim->max_total_size = a->cfg.max_artifact_size;
	lim->max_files = a->cfg.max_artifact_files;
}

static void op_import(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	struct agent *a = ud;
	struct import_args args;
	char err[512] = "";
	struct store_import_limits lim;
	struct store_id id;

	if (ctl_args_decode(&import_spec, req, &args, out) < 0)
		return;
	limits_of(a, &lim);
	int rc = store_import_dir(a->store, args.dir, &lim, agent_now_ms(), &id, err, sizeof err);
	import_reply(a, peer, rc, &id, args.dir, err, out);
	ctl_args_release(&import_spec, &args);
}

static void op_import_git(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
			  struct ctl_enc *out)
{
	struct agent *a = ud;
	struct import_git_args args;
	char err[512] = "";
	char what[1024];
	struct store_import_limits lim;
	struct store_id id;

	if (ctl_args_decode(&import_git_spec, req, &args, out) < 0)
		return;
	const char *repo = args.repo, *ref = args.ref, *path = args.path;
	limits_of(a, &lim);
	snprintf(what, sizeof what, "git %s ref %s%s%s", repo, ref, path ? " path " : "",
		 path ? path : "");
	int rc = store_import_git(a->store, repo, ref, path, &lim, agent_now_ms(), &id, err,
				  sizeof err);
	import_reply(a, peer, rc, &id, what, err, out);
	ctl_args_release(&import_git_spec, &args);
}

/* Items are encoded into a side encoder first: the array header needs their count. */
struct list_ctx {
	struct ctl_enc items;
	uint32_t n;
};

static int list_cb(const struct store_artifact_info *a, void *ud)
{
	struct list_ctx *l = ud;
	if (l->n == UINT32_MAX)
		return -E2BIG;
	enc_summary(&l->items, a);
	l->n++;
	return l->items.err;
}

static void op_list(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		    struct ctl_enc *out)
{
	struct agent *a = ud;
	struct service_args args;
	struct list_ctx l = {.n = 0};

	if (ctl_args_decode(&list_spec, req, &args, out) < 0)
		return;
	ctl_enc_init(&l.items);
	int r = store_artifact_foreach(a->store, args.service, list_cb, &l);
	if (r < 0) {
		reply_errno(out, r, NULL);
		goto out;
	}
	ctl_enc_ok_array(out, &l.items, l.n);
out:
	ctl_enc_release(&l.items);
	ctl_args_release(&list_spec, &args);
}

static void op_show(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		    struct ctl_enc *out)
{
	struct agent *a = ud;
	struct show_args args;
	struct store_id id;
	struct store_artifact_info info;
	memset(&info, 0, sizeof info);

	if (ctl_args_decode(&show_spec, req, &args, out) < 0)
		return;
	const char *prefix = args.id;
	int r = store_artifact_find(a->store, prefix, &id);
	if (r == -ENOENT) {
		ctl_enc_fail(out, CTL_E_NOT_FOUND, "no artifact with id %.64s", prefix);
		goto out;
	} else if (r == -EEXIST) {
		ctl_enc_fail(out, CTL_E_AMBIGUOUS, "id prefix %.64s matches several artifacts",
			     prefix);
		goto out;
	} else if (r == -EINVAL) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "\"id\" must be 4 to 64 hex digits (an artifact id or its prefix)");
		goto out;
	} else if (r < 0) {
		reply_errno(out, r, NULL);
		goto out;
	}
	r = store_artifact_get(a->store, &id, &info);
	if (r < 0) {
		reply_errno(out, r, r == -ENOENT ? "artifact removed meanwhile" : NULL);
		goto out;
	}
	ctl_enc_ok(out);
	enc_details(out, &info);
	store_artifact_info_release(&info);
out:
	ctl_args_release(&show_spec, &args);
}

static int history_cb(const struct store_revision *rv, void *ud)
{
	struct list_ctx *l = ud;
	struct ctl_enc *e = &l->items;
	char origin[2 * STORE_NODE_ID_LEN + 1];
	for (int i = 0; i < STORE_NODE_ID_LEN; i++)
		snprintf(origin + 2 * i, 3, "%02x", rv->origin[i]);
	ctl_enc_map(e, 10);
	ctl_kv_str(e, "service", rv->service);
	ctl_kv_uint(e, "rev", rv->rev);
	ctl_enc_str(e, "artifact");
	enc_id(e, &rv->artifact);
	ctl_kv_str(e, "kind", rv->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy");
	ctl_kv_str(e, "scope", rv->scope[0] ? rv->scope : "cluster");
	ctl_kv_str(e, "origin", origin);
	ctl_kv_uint(e, "hlc", rv->hlc);
	ctl_enc_str(e, "operator");
	if (rv->operator_uid == UINT32_MAX) {
		ctl_enc_nil(e);
	} else {
		ctl_enc_map(e, 2);
		ctl_kv_uint(e, "uid", rv->operator_uid);
		ctl_enc_str(e, "pid");
		ctl_enc_int(e, rv->operator_pid);
	}
	ctl_kv_str(e, "reason", rv->reason);
	ctl_kv_uint(e, "certificate", rv->ncert);
	l->n++;
	return e->err;
}

static void op_history(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		       struct ctl_enc *out)
{
	struct agent *a = ud;
	struct service_args args;
	struct list_ctx l = {.n = 0};

	if (ctl_args_decode(&history_spec, req, &args, out) < 0)
		return;
	ctl_enc_init(&l.items);
	int r = store_revision_foreach(a->store, args.service, (unsigned)args.limit, history_cb,
				       &l);
	if (r < 0 && r != -ENOENT) {
		reply_errno(out, r, NULL);
		goto out;
	}
	ctl_enc_ok_array(out, &l.items, l.n);
out:
	ctl_enc_release(&l.items);
	ctl_args_release(&history_spec, &args);
}

/* Did the op answer ok? (ctl_enc_ok writes the map {ok: true, result: ...} first) */
static bool answered_ok(const struct ctl_enc *out)
{
	size_t len;
	const uint8_t *p = ctl_enc_payload(out, &len);
	static const uint8_t head[] = {0x82, 0xa2, 'o', 'k', 0xc3};
	return out->err == 0 && len >= sizeof head && memcmp(p, head, sizeof head) == 0;
}

static void op_fetch(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	struct agent *a = ud;
	fetch_op_fetch(a->fetch, req, out);
	/* audit: the fetch module answers ok (started, or already held) or an error; log the
	 * request that was accepted, once, with who asked (cluster/fetch.c knows no peer) */
	const msgpack_object *id = ctl_map_get(req->args, "id");
	const msgpack_object *from = ctl_map_get(req->args, "from");
	if (answered_ok(out) && id &&
	    id->type == MSGPACK_OBJECT_STR)
		log_notice("ctl: artifact fetch of %.*s (from %u address(es)) by uid %u pid %d",
			   (int)(id->via.str.size < 64 ? id->via.str.size : 64), id->via.str.ptr,
			   from && from->type == MSGPACK_OBJECT_ARRAY ? from->via.array.size : 0,
			   peer->uid, peer->pid);
}

static const struct ctl_op agent_ops[] = {
	/* name                 blocking heavy */
	{"ping",                false,  false, op_ping},
	{"status",              true,   false, op_status},
	{"artifact.import",     true,   true,  op_import},
	{"artifact.import_git", true,   true,  op_import_git},
	{"artifact.list",       true,   false, op_list},
	{"artifact.show",       true,   false, op_show},
	{"artifact.fetch",      false,  false, op_fetch},	/* cluster/fetch.h */
	{"history",             true,   false, op_history},
	/* cluster (agent/daemon/cluster_ops.c): the gossip core lives on the loop */
	{"members",             false,  false, cluster_op_members},
	{"join",                false,  false, cluster_op_join},
	{"leave",               false,  false, cluster_op_leave},
	{"keyring.list",        false,  false, cluster_op_keyring_list},
	{"keyring.install",     false,  false, cluster_op_keyring_install},
	{"keyring.use",         false,  false, cluster_op_keyring_use},
	{"keyring.remove",      false,  false, cluster_op_keyring_remove},
};

static void *fleet_of(void *ud)
{
	return ((struct agent *)ud)->fleet;
}

/* The table served: the rows above, then the fleet's (fleet/fleet.h), each run on a->fleet. */
static struct ctl_op all_ops[sizeof agent_ops / sizeof agent_ops[0] + 16];
static size_t nall_ops;

static void all_ops_build(void)
{
	size_t nfleet;
	const struct ctl_op *fleet = fleet_ctl_ops(&nfleet);

	memcpy(all_ops, agent_ops, sizeof agent_ops);
	nall_ops = sizeof agent_ops / sizeof agent_ops[0];
	for (size_t i = 0; i < nfleet && nall_ops < sizeof all_ops / sizeof all_ops[0]; i++) {
		all_ops[nall_ops] = fleet[i];
		all_ops[nall_ops++].of = fleet_of;
	}
}

const struct ctl_op *agent_ctl_ops(size_t *ret_count)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, all_ops_build);
	*ret_count = nall_ops;
	return all_ops;
}
