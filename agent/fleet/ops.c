/*
 * agent/fleet/ops.c: the fleet's control operations (fleet.h "Control operations").
 */
#include "agent/fleet/fleet_int.h"
#include "agent/fleet/endpoints.h"

#include <stddef.h>
#include <strings.h>

#include "agent/config/config.h"
#include "agent/ctl/ctl_server.h"

static void kv_id(struct ctl_enc *e, const char *k, const struct store_id *id)
{
	char hex[STORE_ID_HEXLEN + 1];
	static const struct store_id zero;
	ctl_enc_str(e, k);
	if (memcmp(id, &zero, sizeof zero) == 0)
		ctl_enc_nil(e);
	else
		ctl_enc_str(e, store_id_hex(id, hex));
}

/* ---- Arguments: decoded and checked by ctl_op_call before an op runs ------------------------ */

static int scope_check(const char *s)
{
	return strcmp(s, "cluster") == 0 || agree_scope_valid(s) ? 0 : -EINVAL;
}

/* "cluster" and no scope are the same: "" */
static const char *scope_of(const char *s)
{
	return s && strcmp(s, "cluster") != 0 ? s : "";
}

#define SERVICE_ARG(type)                                                                   \
	{"service", CTL_ARG_STR, .required = true, .offset = offsetof(type, service),       \
	 .check = agent_config_check_name, .bad = "\"service\" must be a service name"}
#define REASON_ARG(type, max)                                                               \
	{"reason", CTL_ARG_STR, .offset = offsetof(type, reason), .max_len = (max),         \
	 .bad = "\"reason\" must be a non-empty string",                                    \
	 .invalid = "\"reason\" is limited to 200 bytes"}
#define SCOPE_ARG(type)                                                                     \
	{"scope", CTL_ARG_STR, .offset = offsetof(type, scope), .check = scope_check,       \
	 .bad = "\"scope\" must be a non-empty string", .invalid = "scope must be site:NAME"}

/* Row order is the order of the checks, as before the table: it picks the message of a
 * request with several faults. */
static const struct ctl_arg deploy_args[] = {
	SERVICE_ARG(struct fleet_deploy_args),
	{"artifact", CTL_ARG_STR, .required = true,
	 .offset = offsetof(struct fleet_deploy_args, artifact),
	 .bad = "\"artifact\" (an id or unique prefix) is required"},
	REASON_ARG(struct fleet_deploy_args, 200),
	SCOPE_ARG(struct fleet_deploy_args),
	{"force", CTL_ARG_FLAG, .offset = offsetof(struct fleet_deploy_args, force)},
	{"opsig", CTL_ARG_STR, .offset = offsetof(struct fleet_deploy_args, opsig),
	 .bad = "\"opsig\" must be a signed statement (agentctl signs it with --key)"},
};
static const struct ctl_arg rollback_args[] = {
	SERVICE_ARG(struct fleet_rollback_args),
	REASON_ARG(struct fleet_rollback_args, 0),
	SCOPE_ARG(struct fleet_rollback_args),
	{"to", CTL_ARG_UINT, .offset = offsetof(struct fleet_rollback_args, to)},
	{"local", CTL_ARG_FLAG, .offset = offsetof(struct fleet_rollback_args, local)},
	{"override", CTL_ARG_FLAG, .offset = offsetof(struct fleet_rollback_args, override)},
	{"opsig", CTL_ARG_STR, .offset = offsetof(struct fleet_rollback_args, opsig),
	 .bad = "\"opsig\" must be a signed statement (agentctl signs it with --key)"},
};
static const struct ctl_arg remove_args[] = {
	{"node", CTL_ARG_STR, .required = true, .offset = offsetof(struct fleet_remove_args, node),
	 .bad = "\"node\" (a member's name or id) is required"},
	{"reason", CTL_ARG_STR, .required = true,
	 .offset = offsetof(struct fleet_remove_args, reason), .max_len = 200,
	 .bad = "a removal needs a reason (--reason TEXT): it is recorded with who asked",
	 .invalid = "\"reason\" is limited to 200 bytes"},
	{"opsig", CTL_ARG_STR, .offset = offsetof(struct fleet_remove_args, opsig),
	 .bad = "\"opsig\" must be a signed statement (agentctl signs it with --key)"},
	{"resolve", CTL_ARG_FLAG, .offset = offsetof(struct fleet_remove_args, resolve)},
};
static const struct ctl_arg votes_args[] = {
	SERVICE_ARG(struct fleet_votes_args),
	{"rev", CTL_ARG_UINT, .offset = offsetof(struct fleet_votes_args, rev)},
};
static const struct ctl_arg events_args[] = {
	{"since", CTL_ARG_UINT, .offset = offsetof(struct fleet_events_args, since)},
	{"max", CTL_ARG_UINT, .offset = offsetof(struct fleet_events_args, max)},
};
static const struct ctl_arg history_args[] = {
	SERVICE_ARG(struct fleet_history_args),
	{"limit", CTL_ARG_UINT, .offset = offsetof(struct fleet_history_args, limit)},
};
static const struct ctl_args_spec deploy_spec =
	CTL_ARGS_SPEC(struct fleet_deploy_args, deploy_args);
static const struct ctl_args_spec rollback_spec =
	CTL_ARGS_SPEC(struct fleet_rollback_args, rollback_args);
static const struct ctl_args_spec votes_spec = CTL_ARGS_SPEC(struct fleet_votes_args, votes_args);
static const struct ctl_args_spec events_spec =
	CTL_ARGS_SPEC(struct fleet_events_args, events_args);
static const struct ctl_args_spec history_spec =
	CTL_ARGS_SPEC(struct fleet_history_args, history_args);
static const struct ctl_args_spec remove_spec =
	CTL_ARGS_SPEC(struct fleet_remove_args, remove_args);
static const struct ctl_args_spec no_args = {NULL, 0, 0};

/* How an operator gets a usable key: in every refusal of an unsigned change. */
#define HOW_TO_SIGN                                                                          \
	"make an operator key with `agentctl keygen FILE`, copy FILE.pub to the operators "   \
	"directory of every node (/etc/shoal/operators/ by default) and run `systemctl "      \
	"reload agentd` there, then give the key with --key FILE or SHOAL_OPERATOR_KEY=FILE"

/*
 * The operator's statement of a change (sign.h) from the request's @hex, of @kind, about
 * @service, @artifact (NULL: none) and @scope, checked against the keys this node trusts.
 * 0 and *ret; -EPERM after writing the refusal (with how to sign) into @out.
 */
static int op_of(struct fleet *b, const char *hex, int kind, const char *service,
		 const uint8_t *artifact, const char *scope, uint64_t target,
		 struct store_opsig *ret, struct ctl_enc *out)
{
	struct sign_op so;
	const char *what = kind == SIGN_OP_DEPLOY	 ? "a deploy"
			   : kind == SIGN_OP_ROLLBACK ? "a rollback"
						      : "a removal";
	if (!hex) {
		log_warning("ctl: %s of %s refused: the request carries no operator signature",
			    what, service);
		ctl_enc_fail(out, CTL_E_PERMISSION_DENIED,
			     "%s needs an operator's signature and this request carries none: "
			     HOW_TO_SIGN, what);
		return -EPERM;
	}
	if (sign_op_parse_hex(hex, &so) < 0 || so.kind != kind) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"opsig\" is not a signed statement of %s",
			     what);
		return -EPERM;
	}
	memset(ret, 0, sizeof *ret);
	ret->kind = so.kind;
	snprintf(ret->scope, sizeof ret->scope, "%s", scope);
	ret->target = so.target;
	ret->ts_ms = so.ts_ms;
	memcpy(ret->nonce, so.nonce, sizeof ret->nonce);
	memcpy(ret->key, so.key, sizeof ret->key);
	memcpy(ret->sig, so.sig, sizeof ret->sig);
	if (ret->target != target || !fleet__op_ok(b, ret, kind, service, artifact)) {
		log_warning("ctl: %s of %s signed by operator key %02x%02x%02x%02x... refused: %s",
			    what, service, so.key[0], so.key[1], so.key[2], so.key[3],
			    !sign_trust_has(&b->ops, so.key) ? "the key is not trusted here"
							      : "the signature does not cover it");
		ctl_enc_fail(out, CTL_E_PERMISSION_DENIED,
			     "%s signed by operator key %02x%02x%02x%02x... is refused: %s", what,
			     so.key[0], so.key[1], so.key[2], so.key[3],
			     !sign_trust_has(&b->ops, so.key)
				     ? "this node does not trust that key (" HOW_TO_SIGN ")"
				     : "the signature does not cover this request");
		return -EPERM;
	}
	return 0;
}

/* The fleet that serves, or NULL after answering that none does. */
static struct fleet *serving(void *fleet, struct ctl_enc *out)
{
	struct fleet *b = fleet;
	if (!b || !b->started) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "the cluster brain is not running");
		return NULL;
	}
	return b;
}

/*
 * Write and publish a new deploy of @id at the next rev, with the roster in @scope as its
 * electorate and our configured rule (agree.h rule 0): deploy and rollback --override.
 * 0 and *ret_rev; <0 after writing the error into @out.
 */
static int new_deploy(struct fleet *b, struct svc *v, const struct store_id *id,
		      const char *scope, const char *reason, const struct ctl_peer *peer,
		      const struct store_opsig *op, uint64_t *ret_rev, struct ctl_enc *out)
{
	const char *service = v->name;
	struct store_revision rv;
	int r;

	if (!fleet__synced(b)) {
		ctl_enc_fail(out, CTL_E_BUSY,
			     "this node has not completed its first anti-entropy exchange with the "
			     "cluster yet, so its roster and log may be partial; retry in a few "
			     "seconds (or check that it can reach a peer: agentctl members)");
		return -EAGAIN;
	}
	memset(&rv, 0, sizeof rv);
	snprintf(rv.service, sizeof rv.service, "%s", service);
	uint64_t latest = 0;
	store_revision_latest(b->s, service, &latest);
	rv.rev = (fleet__svc_max_rev(v) > latest ? fleet__svc_max_rev(v) : latest) + 1;
	rv.artifact = *id;
	rv.kind = STORE_REV_DEPLOY;
	snprintf(rv.scope, sizeof rv.scope, "%s", scope);
	memcpy(rv.origin, b->id, STORE_NODE_ID_LEN);
	rv.hlc = fleet__stamp(b);
	rv.operator_uid = peer && peer->known ? peer->uid : UINT32_MAX;
	rv.operator_pid = peer && peer->known ? peer->pid : 0;
	snprintf(rv.reason, sizeof rv.reason, "%s", reason ? reason : "");
	rv.quorum = *fleet__quorum_of(b, service);
	rv.op = *op;	/* every receiver checks it against its own trusted keys */
	/* the electors with their keys: votes on this revision are verified with these, so the
	 * roster is read now (its refresh after a record arrives is debounced) */
	fleet__members_refresh(b);
	r = agree_electorate_keys(b->roster, b->nroster, scope, &rv.elect, &rv.elect_keys,
				  &rv.nelect);
	if (r < 0) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "cannot compute the electorate: %s",
			     agree_strerror(r));
		return r;
	}
	if (!rv.nelect)
		fleet__event(b, "config", service, rv.rev,
			     "no node on the roster is in scope %s: nobody can vote on rev %" PRIu64
			     " (only a new deploy replaces it)", scope, rv.rev);
	/* signed by this node: receivers check it against the key bound to our id (sign.h) */
	uint8_t *msg;
	size_t mlen;
	r = agree_deploy_msg(&rv, &msg, &mlen);
	if (r == 0) {
		sign_detached(&b->key, msg, mlen, rv.origin_sig);
		free(msg);
		r = fleet__accept_rev(b, v, &rv, true);
	}
	if (r < 0) {
		store_revision_release(&rv);
		ctl_enc_fail(out, r == -EBADMSG ? CTL_E_BAD_REQUEST : agent_ctl_err_from_errno(r),
			     "cannot create revision %" PRIu64 ": %s", rv.rev, fleet__strerror(r));
		return r;
	}
	fleet__publish_rev(b, &rv);
	*ret_rev = rv.rev;
	store_revision_release(&rv);
	return 0;
}

/* ---- The operations ------------------------------------------------------------------------ */

void fleet_op_deploy(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	const struct fleet_deploy_args *a = args;
	struct fleet *b = serving(fleet, out);
	const char *service = a->service, *art = a->artifact, *reason = a->reason;
	const char *scope = scope_of(a->scope);
	bool force = a->force;
	struct store_id id;
	struct store_artifact_info info;
	bool have_info = false;
	int r;

	if (!b)
		return;
	r = store_artifact_find(b->s, art, &id);
	if (r < 0) {
		ctl_enc_fail(out, r == -EEXIST ? CTL_E_AMBIGUOUS : r == -EINVAL ? CTL_E_BAD_REQUEST
									  : CTL_E_NOT_FOUND,
			     r == -EEXIST ? "id prefix %.64s matches several artifacts"
				   : "no artifact with id %.64s in the local store (import it here, "
				     "or give its full id: agentctl then fetches it from a peer)",
			     art);
		goto out;
	}
	r = store_artifact_get(b->s, &id, &info);
	if (r < 0) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s", store_strerror(r));
		goto out;
	}
	have_info = true;
	if (strcmp(info.manifest.service, service) != 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "artifact %.12s is of service %s, not %s", art,
			     info.manifest.service, service);
		goto out;
	}
	struct svc *v = fleet__svc_get(b, service);
	if (!v) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "out of memory");
		goto out;
	}
	if (!force && (info.condemned || agree_check_deploy(v->log, v->nlog, &id, false) < 0)) {
		ctl_enc_fail(out, CTL_E_CONDEMNED,
			     "artifact %.12s of %s was condemned by a cluster rollback; "
			     "deploy it again with --force",
			     art, service);
		goto out;
	}
	struct store_opsig op;
	if (op_of(b, a->opsig, SIGN_OP_DEPLOY, service, id.b, scope, 0, &op, out) < 0)
		goto out;
	uint64_t rev;
	/* a forced deploy absolves the artifact: accepting the record clears its flag (decide.c) */
	if (new_deploy(b, v, &id, scope, reason, peer, &op, &rev, out) < 0)
		goto out;
	/* audit: once, here, where the change is made (agentd(8) "every change is logged") */
	log_notice("ctl: deploy of %s artifact %.12s (version %s) as rev %" PRIu64 " scope %s%s by "
		   "uid %" PRIu32 " pid %" PRId32 "%s%s", service, art,
		   info.manifest.version ? info.manifest.version : "-", rev,
		   scope[0] ? scope : "cluster", force ? " (--force)" : "", peer ? peer->uid : 0,
		   peer ? peer->pid : -1, reason ? ": " : "", reason ? reason : "");
	ctl_enc_ok(out);
	ctl_enc_map(out, 4);
	ctl_kv_str(out, "service", service);
	ctl_kv_uint(out, "rev", rev);
	kv_id(out, "artifact", &id);
	ctl_kv_str(out, "version", info.manifest.version ? info.manifest.version : "");
out:
	if (have_info)
		store_artifact_info_release(&info);
}

void fleet_op_rollback(void *fleet, const void *args, const struct ctl_peer *peer,
		       struct ctl_enc *out)
{
	const struct fleet_rollback_args *a = args;
	struct fleet *b = serving(fleet, out);
	const char *service = a->service, *reason = a->reason, *scope = scope_of(a->scope);
	uint64_t to = a->to;
	bool local = a->local;
	int r;

	if (!b)
		return;
	struct svc *v = fleet__svc_find(b, service);
	const char *site = scope[0] ? scope + 5 : (b->has_site ? b->site : NULL);
	const struct store_revision *d = v ? agree_desired(v->log, v->nlog, site) : NULL;
	if (!d) {
		ctl_enc_fail(out, CTL_E_NO_REVISION, "%s has no revision to roll back%s%s", service,
			     scope[0] ? " in " : "", scope);
		return;
	}
	if (scope[0] && strcmp(d->scope, scope) != 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "the revision %" PRIu64 " desired in %s has scope %s: "
			     "roll back with that scope",
			     d->rev, scope, d->scope[0] ? d->scope : "cluster");
		return;
	}
	if (to) {
		const struct store_revision *t = agree_at(v->log, v->nlog, to);
		if (!t || to >= d->rev) {
			ctl_enc_fail(out, CTL_E_NO_REVISION, "--to %" PRIu64 ": %s", to,
				     !t ? "no such revision"
					: "must be below the desired revision");
			return;
		}
		if (memcmp(&t->artifact, &d->artifact, sizeof t->artifact) == 0) {
			ctl_enc_fail(out, CTL_E_BAD_REQUEST,
				     "rev %" PRIu64 " runs the same artifact", to);
			return;
		}
	}
	uint64_t bad = d->rev;
	if (a->override) {
		const struct store_revision *t = NULL;
		if (local || !reason) {
			ctl_enc_fail(out, CTL_E_BAD_REQUEST, "--override %s",
				     local ? "and --local do not go together"
					   : "needs --reason TEXT: it is recorded with who asked");
			return;
		}
		r = to ? ((t = agree_at(v->log, v->nlog, to)) ? 0 : -AGREE_ENOREV)
		       : agree_previous_good(v->log, v->nlog, bad, &t);
		if (r < 0) {
			ctl_enc_fail(out, CTL_E_NO_REVISION, "cannot override: %s",
				     agree_strerror(r));
			return;
		}
		char why[201], hex[STORE_ID_HEXLEN + 1];
		struct store_id target = t->artifact;
		uint64_t rev, from = t->rev;
		snprintf(why, sizeof why, "override: %s", reason);
		struct store_opsig op;
		if (op_of(b, a->opsig, SIGN_OP_ROLLBACK, service, NULL, scope, to, &op, out) < 0)
			return;
		if (new_deploy(b, v, &target, d->scope, why, peer, &op, &rev, out) < 0)
			return;
		store_id_hex(&target, hex);
		log_notice("ctl: rollback OVERRIDE of %s rev %" PRIu64 " by uid %" PRIu32
			   " pid %" PRId32 ": rev %" PRIu64 " deploys %.12s (from rev %" PRIu64
			   ") without a quorum: %s",
			   service, bad, peer ? peer->uid : UINT32_MAX, peer ? peer->pid : -1, rev,
			   hex, from, reason);
		fleet__event(b, "override", service, rev,
			     "operator override of rev %" PRIu64 ": deploys rev %" PRIu64
			     "'s artifact without a quorum: %s", bad, from, reason);
		ctl_enc_ok(out);
		ctl_enc_map(out, 5);
		ctl_kv_str(out, "service", service);
		ctl_kv_uint(out, "rev", bad);
		ctl_kv_uint(out, "to", from);
		ctl_kv_bool(out, "local", false);
		ctl_kv_uint(out, "override_rev", rev);
		return;
	}
	if (local) {
		struct agree_local l;
		r = agree_local_rollback(v->log, v->nlog, service, b->has_site ? b->site : NULL,
					 to, fleet__stamp(b), &l);
		if (r < 0) {
			ctl_enc_fail(out, CTL_E_NO_REVISION, "cannot roll back locally: %s",
				     fleet__strerror(r));
			return;
		}
		v->local = l;
		v->have_local = true;
		r = fleet__local_persist(b, v);
		if (r < 0) {
			v->have_local = false;
			ctl_enc_fail(out, agent_ctl_err_from_errno(r),
				     "cannot record the local rollback: %s", store_strerror(r));
			return;
		}
		fleet__local_rollback_done(v);
		fleet__event(b, "local-rollback", service, l.target_rev,
		      "%s diverges: runs rev %" PRIu64 " instead of rev %" PRIu64 "%s%s", b->name,
		      l.target_rev, l.base_rev, reason ? ": " : "", reason ? reason : "");
		fleet__recompute(b, v);
		fleet__publish_health(b, v);
	} else {
		if (!fleet__can_carry_out(b, v, d, to)) {
			ctl_enc_fail(out, CTL_E_NOT_FOUND,
				     "this node cannot carry out the rollback of rev %" PRIu64
				     ": the target artifact is not held",
				     bad);
			return;
		}
		/* the statement travels with the vote: the others echo it only if it verifies */
		struct store_opsig op;
		if (op_of(b, a->opsig, SIGN_OP_ROLLBACK, service, NULL, scope, to, &op, out) < 0)
			return;
		r = fleet__cast_vote(b, v, d, STORE_VOTE_OPERATOR, to, &op);
		if (r < 0) {
			/* agree_next_vote's -AGREE_E* codes come back here too */
			ctl_enc_fail(out, agent_ctl_err_from_errno(r),
				     "cannot publish the vote: %s",
				     fleet__strerror(r));
			return;
		}
		if (reason)
			fleet__event(b, "reason", service, bad, "operator: %s", reason);
	}
	if (local)
		log_notice("ctl: local rollback of %s rev %" PRIu64 " on this node only (runs rev %"
			   PRIu64 ") by uid %" PRIu32 " pid %" PRId32 "%s%s", service, bad,
			   v->local.target_rev, peer ? peer->uid : 0, peer ? peer->pid : -1,
			   reason ? ": " : "", reason ? reason : "");
	else {
		char tos[40] = "";
		if (to)
			snprintf(tos, sizeof tos, ", to rev %" PRIu64, to);
		log_notice("ctl: rollback of %s rev %" PRIu64 "%s%s voted (operator vote%s) by uid %"
			   PRIu32 " pid %" PRId32 "%s%s", service, bad, scope[0] ? " in " : "",
			   scope, tos, peer ? peer->uid : 0, peer ? peer->pid : -1,
			   reason ? ": " : "", reason ? reason : "");
	}
	ctl_enc_ok(out);
	ctl_enc_map(out, 4);
	ctl_kv_str(out, "service", service);
	ctl_kv_uint(out, "rev", bad);
	ctl_kv_uint(out, "to", to);
	ctl_kv_bool(out, "local", local);
}

/* Encode the tally of (service, rev) plus whether this node has moved past it. */
static void enc_votes(struct fleet *b, struct svc *v, uint64_t rev, struct ctl_enc *out)
{
	const struct store_revision *rv = agree_at(v->log, v->nlog, rev);
	struct agree_tally t;
	memset(&t, 0, sizeof t);
	if (rv)
		agree_tally(rv, v->votes, v->nvotes, &t);
	uint32_t n = 0;
	for (size_t i = 0; i < v->nvotes; i++)
		n += v->votes[i].rev == rev;
	ctl_enc_map(out, 13);
	/* the digest a vote on this record names (agree_subject): what a signed vote covers */
	ctl_kv_uint(out, "subject", rv ? agree_subject(rv) : 0);
	ctl_kv_uint(out, "round", t.round);
	ctl_kv_bool(out, "stuck", t.stuck);
	ctl_kv_str(out, "service", v->name);
	ctl_kv_uint(out, "rev", rev);
	ctl_kv_uint(out, "eligible", t.eligible);
	ctl_kv_uint(out, "quorum", t.quorum);
	ctl_kv_uint(out, "counted", t.target_votes);
	ctl_kv_bool(out, "decided", rv && fleet__decided(v, rv));
	ctl_kv_uint(out, "running_rev", v->running_rev);
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	/* swapped: this node runs what it desires and that is past the bad rev */
	ctl_kv_bool(out, "swapped", v->running_rev > rev && v->have_desired &&
				       v->running_rev == v->desired_rev && !v->swapping);
	ctl_enc_str(out, "votes");
	ctl_enc_array(out, n);
	for (size_t i = 0; i < v->nvotes; i++) {
		const struct store_vote *av = &v->votes[i];
		if (av->rev != rev)
			continue;
		char who[2 * STORE_NODE_ID_LEN + 1], hexv[2 * STORE_NODE_ID_LEN + 1];
		fleet__hex_id(av->voter, STORE_NODE_ID_LEN, hexv);
		ctl_enc_map(out, 7);
		ctl_kv_str(out, "voter", hexv);
		ctl_kv_str(out, "name", fleet__member_name(b, av->voter, who));
		ctl_kv_str(out, "reason", av->reason == STORE_VOTE_HEALTH ? "health" : "operator");
		ctl_kv_uint(out, "hlc", av->hlc);
		ctl_kv_uint(out, "target", av->target);
		ctl_kv_uint(out, "round", av->round);
		ctl_kv_bool(out, "counted", rv && av->subject == agree_subject(rv) &&
						    av->round == t.round &&
						    agree_in_electorate(rv, av->voter));
	}
}

void fleet_op_votes(void *fleet, const void *args, const struct ctl_peer *peer,
		    struct ctl_enc *out)
{
	const struct fleet_votes_args *a = args;
	struct fleet *b = serving(fleet, out);
	const char *service = a->service;
	uint64_t rev = a->rev;

	if (!b)
		return;
	struct svc *v = fleet__svc_find(b, service);
	if (!v) {
		ctl_enc_fail(out, CTL_E_NOT_FOUND, "no service %s", service);
		return;
	}
	if (!rev) {
		/* the latest rev that has votes, else the desired one */
		for (size_t i = 0; i < v->nvotes; i++)
			if (v->votes[i].rev > rev)
				rev = v->votes[i].rev;
		if (!rev && v->have_desired)
			rev = v->desired_rev;
	}
	ctl_enc_ok(out);
	enc_votes(b, v, rev, out);
}

static const char *hstate_name(uint8_t s)
{
	return s == HSTATE_NONE ? "-" : health_state_name((enum health_state)s);
}

static void enc_service(struct fleet *b, struct svc *v, struct ctl_enc *out, bool nodes)
{
	uint32_t npeer = 0;
	for (size_t i = 0; i < b->npeers; i++)
		npeer += strcmp(b->peers[i].h.service, v->name) == 0;
	ctl_enc_map(out, nodes ? 12 : 11);
	ctl_kv_str(out, "service", v->name);
	/* why the last swap attempt failed, in words ("" once a swap succeeds) */
	ctl_kv_str(out, "error", b->rec && v->swapping ? reconcile_last_error(b->rec, v->name) : "");
	ctl_kv_uint(out, "latest_rev", fleet__svc_max_rev(v));
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	kv_id(out, "desired", &v->desired);
	ctl_kv_uint(out, "running_rev", v->running_rev);
	kv_id(out, "running", &v->running);
	ctl_kv_str(out, "health", hstate_name(v->hstate));
	ctl_kv_bool(out, "swapping", v->swapping);
	ctl_kv_bool(out, "diverged", v->diverged);
	/* healthy nodes / reporting nodes, self included */
	uint32_t healthy = v->hstate == HEALTH_HEALTHY, reporting = 1;
	for (size_t i = 0; i < b->npeers; i++) {
		if (strcmp(b->peers[i].h.service, v->name) != 0)
			continue;
		reporting++;
		healthy += b->peers[i].h.state == HEALTH_HEALTHY;
	}
	ctl_enc_str(out, "nodes_healthy");
	ctl_enc_array(out, 2);
	ctl_enc_uint(out, healthy);
	ctl_enc_uint(out, reporting);
	if (!nodes)
		return;
	ctl_enc_str(out, "nodes");
	ctl_enc_array(out, npeer + 1);
	ctl_enc_map(out, 6);
	ctl_kv_str(out, "node", b->name);
	ctl_kv_uint(out, "running_rev", v->running_rev);
	ctl_kv_str(out, "health", hstate_name(v->hstate));
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	ctl_kv_bool(out, "swapping", v->swapping);
	ctl_kv_bool(out, "diverged", v->diverged);
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer_health *p = &b->peers[i];
		char who[2 * STORE_NODE_ID_LEN + 1];
		if (strcmp(p->h.service, v->name) != 0)
			continue;
		ctl_enc_map(out, 6);
		ctl_kv_str(out, "node", fleet__member_name(b, p->node, who));
		ctl_kv_uint(out, "running_rev", p->h.running_rev);
		ctl_kv_str(out, "health", hstate_name(p->h.state));
		ctl_kv_uint(out, "desired_rev", p->h.desired_rev);
		ctl_kv_bool(out, "swapping", p->h.swapping);
		ctl_kv_bool(out, "diverged", p->h.diverged);
	}
}

void fleet_op_services(void *fleet, const void *args, const struct ctl_peer *peer,
		       struct ctl_enc *out)
{
	struct fleet *b = serving(fleet, out);
	if (!b)
		return;
	ctl_enc_ok(out);
	ctl_enc_array(out, (uint32_t)b->nsvcs);
	for (size_t i = 0; i < b->nsvcs; i++)
		enc_service(b, b->svcs[i], out, false);
}

void fleet_op_status(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	struct fleet *b = serving(fleet, out);
	if (!b)
		return;
	uint32_t by[4] = {0};
	for (size_t i = 0; i < b->nmembers; i++)
		by[b->members[i].state & 3]++;
	ctl_enc_ok(out);
	ctl_enc_map(out, 3);
	ctl_enc_str(out, "node");
	ctl_enc_map(out, 3);
	ctl_kv_str(out, "name", b->name);
	ctl_kv_str(out, "site", b->has_site ? b->site : "");
	ctl_kv_uint(out, "hlc", b->clock.last);
	ctl_enc_str(out, "cluster");
	ctl_enc_map(out, 5);
	ctl_kv_uint(out, "members", b->nmembers);
	ctl_kv_uint(out, "alive", by[AGREE_ALIVE]);
	ctl_kv_uint(out, "suspect", by[AGREE_SUSPECT]);
	ctl_kv_uint(out, "failed", by[AGREE_DEAD]);
	ctl_kv_uint(out, "left", by[AGREE_LEFT]);
	ctl_enc_str(out, "services");
	ctl_enc_array(out, (uint32_t)b->nsvcs);
	for (size_t i = 0; i < b->nsvcs; i++)
		enc_service(b, b->svcs[i], out, true);
}

void fleet_op_events(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	const struct fleet_events_args *a = args;
	struct fleet *b = serving(fleet, out);
	uint64_t since = a->since, max = a->max;

	if (!b)
		return;
	if (max == 0 || max > 512)
		max = 512;
	uint64_t oldest = b->seq > FLEET_EVENTS_MAX ? b->seq - FLEET_EVENTS_MAX + 1 : 1;
	uint64_t first = since + 1;
	uint64_t dropped = 0;
	if (first < oldest) {
		dropped = oldest - first;
		first = oldest;
	}
	uint64_t n = b->seq >= first ? b->seq - first + 1 : 0;
	if (n > max)
		n = max;
	ctl_enc_ok(out);
	ctl_enc_map(out, 3);
	ctl_kv_uint(out, "next", first + n - 1 >= since ? first + n - 1 : since);
	ctl_kv_uint(out, "dropped", dropped);
	ctl_enc_str(out, "events");
	ctl_enc_array(out, (uint32_t)n);
	for (uint64_t s = first; s < first + n; s++) {
		const struct fleet_ev *e = &b->ring[(s - 1) % FLEET_EVENTS_MAX];
		ctl_enc_map(out, 7);
		ctl_kv_uint(out, "seq", e->seq);
		ctl_kv_uint(out, "time_ms", e->wall_ms);
		ctl_kv_str(out, "kind", e->kind);
		ctl_kv_str(out, "service", e->service);
		ctl_kv_uint(out, "rev", e->rev);
		ctl_kv_str(out, "node", e->node);
		ctl_kv_str(out, "text", e->text);
	}
}

struct hist_ctx {
	struct fleet *b;
	struct svc *v;
	struct ctl_enc items;
	uint32_t n;
	uint64_t (*learned)[2];		/* rev, wall ms (events.c: fleet__learned_get) */
	size_t nlearned;
};

static int hist_cb(const struct store_revision *rv, void *ud)
{
	struct hist_ctx *h = ud;
	struct ctl_enc *e = &h->items;
	struct store_artifact_info info;
	bool have = store_artifact_get(h->b->s, &rv->artifact, &info) == 0;
	struct store_service_state st;
	bool good = false;
	if (store_service_state_get(h->b->s, rv->service, &st) == 0)
		good = memcmp(&st.last_good, &rv->artifact, sizeof st.last_good) == 0;
	bool condemned = (have && info.condemned) ||
			 (h->v && agree_is_condemned(h->v->log, h->v->nlog, &rv->artifact,
						     UINT64_MAX));
	char origin[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];
	fleet__hex_id(rv->origin, STORE_NODE_ID_LEN, origin);
	ctl_enc_map(e, 15);
	ctl_kv_str(e, "service", rv->service);
	ctl_kv_uint(e, "rev", rv->rev);
	kv_id(e, "artifact", &rv->artifact);
	ctl_kv_str(e, "version", have && info.manifest.version ? info.manifest.version : "");
	ctl_kv_str(e, "kind", rv->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy");
	ctl_kv_str(e, "scope", rv->scope[0] ? rv->scope : "cluster");
	ctl_kv_str(e, "origin", origin);
	static const uint8_t zero[STORE_NODE_ID_LEN];
	ctl_kv_str(e, "origin_name", memcmp(rv->origin, zero, sizeof zero) == 0
					 ? "cluster"
					 : fleet__member_name(h->b, rv->origin, who));
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
	ctl_kv_bool(e, "good", good);
	ctl_kv_bool(e, "condemned", condemned);
	/* when this node learned of a rollback decision (events.c); nil: unknown (learned
	 * before this version recorded it) or a deploy */
	ctl_enc_str(e, "learned_ms");
	uint64_t learned = 0;
	for (size_t i = 0; rv->kind == STORE_REV_ROLLBACK && i < h->nlearned; i++)
		if (h->learned[i][0] == rv->rev)
			learned = h->learned[i][1];
	if (learned)
		ctl_enc_uint(e, learned);
	else
		ctl_enc_nil(e);
	if (have)
		store_artifact_info_release(&info);
	h->n++;
	return e->err;
}

void fleet_op_history(void *fleet, const void *args, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	const struct fleet_history_args *a = args;
	struct hist_ctx h = {.b = serving(fleet, out)};
	struct fleet *b = h.b;

	if (!b)
		return;
	h.v = fleet__svc_find(b, a->service);
	ctl_enc_init(&h.items);
	if (fleet__learned_get(b, a->service, &h.learned, &h.nlearned) < 0)
		log_warning("%s: cannot read when rollbacks were learned; history shows them as "
			    "unknown", a->service);
	unsigned limit = a->limit > 100000 ? 100000 : (unsigned)a->limit;
	int r = store_revision_foreach(b->s, a->service, limit, hist_cb, &h);
	if (r < 0 && r != -ENOENT) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s", store_strerror(r));
		goto out;
	}
	ctl_enc_ok_array(out, &h.items, h.n);
out:
	ctl_enc_release(&h.items);
	free(h.learned);
}

void fleet_op_members_remove(void *fleet, const void *args, const struct ctl_peer *peer,
			     struct ctl_enc *out)
{
	const struct fleet_remove_args *a = args;
	struct fleet *b = serving(fleet, out);
	const uint8_t *found = NULL;
	uint8_t id[STORE_NODE_ID_LEN];	/* the roster array is rebuilt by the removal */
	size_t plen = strlen(a->node);
	char hex[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];

	if (!b)
		return;
	/* a name, or an id prefix of at least 4 hex digits; several matches are refused */
	for (size_t i = 0; i < b->nroster; i++) {
		fleet__hex_id(b->roster[i].id, STORE_NODE_ID_LEN, hex);
		const char *name = fleet__member_name(b, b->roster[i].id, who);
		bool match = strcmp(name, a->node) == 0 ||
			     (plen >= 4 && plen <= 32 && strncasecmp(hex, a->node, plen) == 0);
		if (!match)
			continue;
		if (found) {
			ctl_enc_fail(out, CTL_E_AMBIGUOUS, "%s names several roster members: give "
				     "more of the id", a->node);
			return;
		}
		found = b->roster[i].id;
	}
	if (!found) {
		ctl_enc_fail(out, CTL_E_NOT_FOUND, "no roster member named %s (agentctl members)",
			     a->node);
		return;
	}
	memcpy(id, found, sizeof id);
	found = id;
	fleet__hex_id(found, STORE_NODE_ID_LEN, hex);
	if (a->resolve) {	/* agentctl signs over the full id: which member is it? */
		ctl_enc_ok(out);
		ctl_enc_map(out, 2);
		ctl_kv_str(out, "node", fleet__member_name(b, found, who));
		ctl_kv_str(out, "id", hex);
		return;
	}
	/* the operator's statement names this id and this reason (sign.h) */
	struct store_opsig op;
	char idhex[33];
	uint8_t digest[32];
	sign_op_remove_subject(found, a->reason, idhex, digest);
	if (op_of(b, a->opsig, SIGN_OP_REMOVE, idhex, digest, "", 0, &op, out) < 0)
		return;
	int r = fleet_roster_remove(b, found, peer, a->reason, &op);
	if (r == -EPERM) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "a node does not remove itself: run agentctl leave on it");
		return;
	}
	if (r < 0) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "cannot remove %s: %s", a->node,
			     strerror(-r));
		return;
	}
	fleet__hex_id(found, STORE_NODE_ID_LEN, hex);
	ctl_enc_ok(out);
	ctl_enc_map(out, 2);
	ctl_kv_str(out, "node", fleet__member_name(b, found, who));
	ctl_kv_str(out, "id", hex);
}

/* The rows the agent serves (daemon/ops.c adds them to its table with the agent's fleet as
 * their target). */
static const struct ctl_op fleet_ops[] = {
	{"deploy", .args = &deploy_spec, .run = fleet_op_deploy},
	{"rollback", .args = &rollback_spec, .run = fleet_op_rollback},
	{"votes", .args = &votes_spec, .run = fleet_op_votes},
	{"services", .args = &no_args, .run = fleet_op_services},
	{"events", .args = &events_spec, .run = fleet_op_events},
	{"brain.status", .args = &no_args, .run = fleet_op_status},
	{"brain.history", .args = &history_spec, .run = fleet_op_history},
	{"members.remove", .args = &remove_spec, .run = fleet_op_members_remove},
	{"endpoints", .args = &fleet_endpoints_spec, .run = fleet_op_endpoints},
	/* node keys (trust.c) */
	{"node.identity", .args = &no_args, .run = fleet_op_node_identity},
	{"node.enrol", .args = &fleet_enrol_spec, .run = fleet_op_node_enrol},
	{"node.rotate-key", .args = &fleet_rotate_spec, .run = fleet_op_node_rotate},
};

const struct ctl_op *fleet_ctl_ops(size_t *ret_count)
{
	*ret_count = sizeof fleet_ops / sizeof fleet_ops[0];
	return fleet_ops;
}

int fleet_ctl(struct fleet *b, const char *op, const struct ctl_request *req,
	      const struct ctl_peer *peer, struct ctl_enc *out)
{
	if (!serving(b, out))
		return 0;
	/* "history" is the name the brain answered before the agent served it as brain.history */
	if (strcmp(op, "history") == 0)
		op = "brain.history";
	for (size_t i = 0; i < sizeof fleet_ops / sizeof fleet_ops[0]; i++)
		if (strcmp(fleet_ops[i].name, op) == 0) {
			ctl_op_call(&fleet_ops[i], b, req, peer, out);
			return 0;
		}
	return -ENOENT;
}
