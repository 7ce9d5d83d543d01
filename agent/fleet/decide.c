/*
 * agent/fleet/decide.c: the decisions of the fleet: what each service should run here, which
 * revisions are accepted and decided, the votes this node casts and those it stores for others.
 */
#include "agent/fleet/fleet_int.h"

#include <sodium.h>

const struct store_quorum *fleet__quorum_of(struct fleet *b, const char *service)
{
	static const struct store_quorum majority = {.kind = AGREE_QUORUM_MAJORITY};
	for (size_t i = 0; i < b->nquorums; i++)
		if (strcmp(b->quorums[i].service, service) == 0)
			return &b->quorums[i].q;
	return &majority;
}

/* ---- Desired ------------------------------------------------------------------------------- */

void fleet__need_artifact(struct fleet *b, struct svc *v)
{
	struct store_artifact_info info;
	if (store_artifact_get(b->s, &v->desired, &info) == 0) {
		store_artifact_info_release(&info);
		v->need_announced = false;
		return;
	}
	if (v->need_announced)
		return;
	v->need_announced = true;
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&v->desired, hex);
	if (!b->need_artifact) {
		fleet__event(b, "missing", v->name, v->desired_rev,
		      "artifact %.12s is not in the local store", hex);
		return;
	}
	uint8_t(*holders)[STORE_NODE_ID_LEN] = calloc(b->npeers + 1, STORE_NODE_ID_LEN);
	size_t n = 0;
	if (!holders)
		return;
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer_health *p = &b->peers[i];
		if (strcmp(p->h.service, v->name) != 0)
			continue;
		for (uint32_t j = 0; j < p->h.nheld; j++)
			if (memcmp(&p->h.held[j], &v->desired, sizeof v->desired) == 0) {
				memcpy(holders[n++], p->node, STORE_NODE_ID_LEN);
				break;
			}
	}
	/* not a failure: the swap waits (its materialize step retries) until the fetch lands */
	fleet__event(b, "fetching", v->name, v->desired_rev,
	      "fetching artifact %.12s from peers (%zu known to hold it)", hex, n);
	v->fetch_announced = true;
	b->need_artifact(b->need_artifact_ud, v->name, v->desired_rev, &v->desired,
			    (const uint8_t(*)[STORE_NODE_ID_LEN])holders, n);
	free(holders);
}

void fleet__recompute(struct fleet *b, struct svc *v)
{
	struct store_id art;
	uint64_t rev = 0;
	const char *site = b->has_site ? b->site : NULL;
	int r = agree_effective(v->log, v->nlog, site, v->have_local ? &v->local : NULL, &art);
	bool changed_marker = false;

	if (r < 0)
		return;
	if (r == 1) {
		rev = v->local.target_rev;
	} else {
		const struct store_revision *d = agree_desired(v->log, v->nlog, site);
		if (!d)
			return;
		rev = d->rev;
		if (v->have_local) {
			fleet__event(b, "local-cleared", v->name, rev,
			      "the cluster moved past rev %" PRIu64 ": following it again",
			      v->local.base_rev);
			v->have_local = false;
			fleet__local_persist(b, v);
			changed_marker = true;
		}
	}
	bool div = r == 1;
	if (v->have_desired && v->desired_rev == rev &&
	    memcmp(&v->desired, &art, sizeof art) == 0 && v->diverged == div) {
		if (changed_marker)
			fleet__publish_health(b, v);
		return;
	}
	v->have_desired = true;
	v->desired_since = uv_now(b->loop);
	v->desired_rev = rev;
	v->desired = art;
	v->diverged = div;
	v->need_announced = false;
	v->fetch_announced = false;
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&art, hex);
	fleet__event(b, "desired", v->name, rev, "desired: rev %" PRIu64 " artifact %.12s%s", rev, hex,
	      div ? " (diverged: local rollback)" : "");
	fleet__need_artifact(b, v);
	if (b->rec) {
		int e = reconcile_set_desired(b->rec, v->name, rev, &art);
		if (e < 0)
			log_warning("%s: cannot set the desired revision: %s", v->name,
				    fleet__strerror(e));
	}
	/* Without pacing nobody waits for a peer's desired revision, and what follows it within
	 * a second (the artifact arrived, the swap started) publishes anyway: one signed version
	 * of the health record instead of two, which every node of the cluster verifies */
	fleet__publish_health_in(b, v, b->max_par || changed_marker ? PUBLISH_MS
								   : DESIRED_PUBLISH_MS);
}

/* ---- Accepting revisions and deciding ------------------------------------------------------- */

static void recast(struct fleet *b, struct svc *v, const struct store_revision *bad);


bool fleet__op_ok(struct fleet *b, const struct store_opsig *op, int kind, const char *service,
		  const uint8_t *artifact)
{
	struct sign_op so;
	if (!op || op->kind != kind)
		return false;
	memset(&so, 0, sizeof so);
	so.kind = op->kind;
	memcpy(so.scope, op->scope, sizeof so.scope);
	so.scope[sizeof so.scope - 1] = 0;
	so.target = op->target;
	so.ts_ms = op->ts_ms;
	memcpy(so.nonce, op->nonce, sizeof so.nonce);
	memcpy(so.key, op->key, sizeof so.key);
	memcpy(so.sig, op->sig, sizeof so.sig);
	return sign_op_verify(&so, service, artifact, &b->ops);
}

/*
 * The operator behind a deploy (sign.h): a deploy statement about this very artifact and
 * scope, or (an override) a rollback statement about its scope, under a trusted key, and a
 * nonce no other revision held here carries (a captured statement is not replayed at a new
 * rev while the first one is retained). 0 or -EPERM.
 */
static int deploy_op_check(struct fleet *b, struct svc *v, const struct store_revision *r)
{
	const struct store_opsig *op = &r->op;
	bool ok = op->kind == SIGN_OP_DEPLOY
			  ? fleet__op_ok(b, op, SIGN_OP_DEPLOY, r->service, r->artifact.b) &&
				    strcmp(op->scope, r->scope) == 0
			  : fleet__op_ok(b, op, SIGN_OP_ROLLBACK, r->service, NULL) &&
				    (!op->scope[0] || strcmp(op->scope, r->scope) == 0);
	if (!ok)
		return -EPERM;
	for (size_t i = 0; i < v->nlog; i++)
		if (v->log[i].rev != r->rev && v->log[i].op.kind &&
		    memcmp(v->log[i].op.nonce, op->nonce, sizeof op->nonce) == 0 &&
		    memcmp(v->log[i].op.key, op->key, sizeof op->key) == 0)
			return -EPERM;
	return 0;
}

/* The key bound to @id, reading the roster records again once if none is bound yet (a
 * record can arrive before the debounced roster refresh has bound its writer's key). */
static const uint8_t *key_of(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN])
{
	const uint8_t *k = fleet__bound_key(b, id);
	if (!k && fleet__members_refresh(b) == 0)
		k = fleet__bound_key(b, id);
	return k;
}

/*
 * The signatures of @r (sign.h). A deploy: its origin's signature under the key bound to the
 * origin (-EAGAIN while none is bound: the record is examined again at the next roster
 * change). A rollback: each certificate vote under the key the record's electorate names
 * (agree_verify_signatures), those keys equal to the ones bound here for the same ids, and
 * its electorate that of the record held at rev - 1 (below): otherwise keys or identities of
 * a forger's choosing would make a certificate verify. 0; -EAGAIN; -AGREE_ESIG.
 */
int fleet__origin_signed(struct fleet *b, const struct store_revision *r)
{
	const uint8_t *k = key_of(b, r->origin);
	uint8_t *msg;
	size_t len;
	if (!k)
		return -EAGAIN;
	if (agree_deploy_msg(r, &msg, &len) < 0)
		return -AGREE_ESIG;
	bool ok = sign_verify(k, msg, len, r->origin_sig);
	/* a deploy written before its origin rotated its key: signed by a former key */
	const struct nodekey *nk = fleet__bind_slot(b, r->origin);
	for (unsigned i = 0; !ok && nk && i < nk->nprev; i++)
		ok = sign_verify(nk->prev[i], msg, len, r->origin_sig);
	free(msg);
	return ok ? 0 : -AGREE_ESIG;
}

int fleet__check_signed(struct fleet *b, struct svc *v, const struct store_revision *r)
{
	if (r->kind == STORE_REV_DEPLOY) {
		int e = fleet__origin_signed(b, r);
		return e < 0 ? e : deploy_op_check(b, v, r);
	}
	int e = agree_verify_signatures(r);
	if (e < 0)
		return e;
	for (uint32_t i = 0; i < r->ncert; i++) {
		const uint8_t *k = fleet__bound_key(b, r->cert[i]);
		const uint8_t *ek = agree_elector_key(r, r->cert[i]);
		/* the key bound now, or one it rotated from (an older revision names it) */
		if (k && ek && !fleet__key_of_id(b, r->cert[i], ek))
			return -AGREE_ESIG;
	}
	/* The electorate must be the one of the record held at rev - 1: the judged record
	 * itself (everything it says must match), or, when this node holds another record at
	 * that rev (two deploys of one rev made on two sides of a partition; rule 1 will make
	 * every node hold the same one), one with the same electors, keys and rule, so that
	 * the logs still converge. Otherwise identities joined by a cluster key holder (trust
	 * on first join) could sign a certificate for an electorate of their own. Without a
	 * record at rev - 1 yet: examined again at the next resync. */
	const struct store_revision *bad = agree_at(v->log, v->nlog, r->rev - 1);
	if (!bad)
		return -EAGAIN;
	if (agree_subject(bad) == r->cert_subject)
		return agree_rollback_matches(bad, r) ? 0 : -AGREE_ESIG;
	bool same = bad->nelect == r->nelect && bad->elect_keys && r->elect_keys &&
		    memcmp(&bad->quorum, &r->quorum, sizeof bad->quorum) == 0 &&
		    (!r->nelect ||
		     (memcmp(bad->elect, r->elect, (size_t)r->nelect * STORE_NODE_ID_LEN) == 0 &&
		      memcmp(bad->elect_keys, r->elect_keys, (size_t)r->nelect * STORE_KEY_LEN) == 0));
	return same ? 0 : -AGREE_ESIG;
}

/* Merge @r (decoded, cert filled) into the log. @mine: we wrote it. Returns the agree result. */
int fleet__accept_rev(struct fleet *b, struct svc *v, const struct store_revision *r, bool mine)
{
	const struct store_quorum *q = fleet__quorum_of(b, v->name);
	int a;

	fleet__observe(b, r->hlc);
	/* who wrote it (sign.h): a deploy is signed by its origin node, a rollback's certificate
	 * by each counted elector */
	a = fleet__check_signed(b, v, r);
	if (a < 0) {
		if (a == -EAGAIN)
			return a;
		b->sig_refused++;
		if (fleet__refusal_loud(b, &b->rev_refused, v->name, r->rev, r->hlc, r->origin) ||
		    mine)
			log_warning("%s: %s %s at rev %" PRIu64 " refused: %s (%" PRIu64
				    " record(s) refused so far)", v->name, mine ? "own" : "a",
				    r->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy", r->rev,
				    r->kind == STORE_REV_ROLLBACK ? agree_strerror(a)
				    : a == -EPERM ? "it carries no valid signature of a trusted operator "
						    "key (operators-dir; agentctl keygen)"
				    : "its origin's signature does not verify against the key bound "
				      "to that node", b->sig_refused);
		return a;
	}
	a = agree_accept(v->log, v->nlog, r);
	if (a < 0) {
		if (mine)
			log_warning("%s: own revision %" PRIu64 " refused: %s", v->name, r->rev,
				    agree_strerror(a));
		return a;
	}
	if (a == AGREE_KEEP)
		return a;
	const struct store_revision *old = agree_at(v->log, v->nlog, r->rev);
	bool displaced_ours = old && a == AGREE_REPLACE && old->kind == STORE_REV_DEPLOY &&
			      memcmp(old->origin, b->id, STORE_NODE_ID_LEN) == 0 &&
			      !agree_revision_same(old, r);
	bool same_decision = old && agree_revision_same(old, r);
	struct store_revision old_copy;	/* the displaced record's ids (log_set frees it) */
	memset(&old_copy, 0, sizeof old_copy);
	if (old) {
		old_copy.artifact = old->artifact;
		old_copy.condemns = old->condemns;
	}
	int e = store_revision_put(b->s, r);
	if (e < 0) {
		log_error("%s: cannot store revision %" PRIu64 ": %s", v->name, r->rev,
			  store_strerror(e));
		return e;
	}
	if (fleet__log_set(v, r) < 0)
		return -ENOMEM;
	if (displaced_ours)
		fleet__event(b, "displaced", v->name, r->rev,
		      "our deploy at rev %" PRIu64 " lost to a concurrent %s: deploy again",
		      r->rev, r->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy");
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&r->artifact, hex);
	/* Condemnation follows the decision records (agree.h rule 7), identically on every
	 * node: the store's flag (which outlives pruned revisions) is recomputed from the log for
	 * every artifact the new record and a record it displaced name, so a displaced rollback
	 * and a forced deploy change it on every node, not only where they were made. The same
	 * decision with another certificate changes nothing: no store write for it. */
	if (!same_decision) {
		const struct store_id *named[4] = {&r->artifact, &r->condemns,
						   old && a == AGREE_REPLACE ? &old_copy.artifact : NULL,
						   old && a == AGREE_REPLACE ? &old_copy.condemns : NULL};
		static const struct store_id zero;
		for (int i = 0; i < 4; i++) {
			if (!named[i] || memcmp(named[i], &zero, sizeof zero) == 0)
				continue;
			bool want = agree_is_condemned(v->log, v->nlog, named[i], UINT64_MAX);
			struct store_artifact_info ai;
			if (store_artifact_get(b->s, named[i], &ai) < 0)
				continue;	/* not held here: nothing to mark */
			bool is = ai.condemned;
			store_artifact_info_release(&ai);
			if (is == want)
				continue;
			int c = store_artifact_set_condemned(b->s, named[i], want);
			if (c < 0 && c != -ENOENT)
				log_warning("%s: cannot mark the artifact %scondemned: %s", v->name,
					    want ? "" : "not ", store_strerror(c));
		}
	}
	if (r->kind == STORE_REV_ROLLBACK) {
		if (!same_decision) {
			fleet__decision_learned(b, v, r);	/* events.c: metrics, learn time */
			fleet__event(b, "decision", v->name, r->rev,
			      "rollback to %.12s decided (certificate of %" PRIu32 " voters%s)", hex,
			      r->ncert, mine ? ", written here" : "");
		}
	} else {
		char who[2 * STORE_NODE_ID_LEN + 1];
		fleet__event(b, "revision", v->name, r->rev, "deploy of %.12s from %s%s%s", hex,
		      fleet__member_name(b, r->origin, who), r->reason[0] ? ": " : "", r->reason);
		/* The record's rule decides (agree.h rule 0); a node configured otherwise says so
		 * loudly instead of diverging silently. */
		if (memcmp(&r->quorum, q, sizeof *q) != 0)
			fleet__event(b, "config", v->name, r->rev,
			      "rev %" PRIu64 " is decided by its own quorum rule (%s), not by the "
			      "one configured here (%s): following the revision",
			      r->rev, fleet__quorum_name(&r->quorum), fleet__quorum_name(q));
	}
	fleet__decide(b, v);
	fleet__recompute(b, v);
	return a;
}

/* Is the rollback for bad record @bad already in the log? */
bool fleet__decided(const struct svc *v, const struct store_revision *bad)
{
	const struct store_revision *n = agree_at(v->log, v->nlog, bad->rev + 1);
	return n && n->kind == STORE_REV_ROLLBACK && n->hlc == bad->hlc + 1;
}

static bool has_vote(const struct svc *v, const uint8_t *voter, uint64_t rev);
static bool echo_ok(struct fleet *b, struct svc *v, const struct store_vote *av,
		    const struct store_opsig *op, const struct store_revision *d);

/*
 * Echo an operator's vote against our desired revision that arrived while we could not vote
 * (before our first anti-entropy exchange, or before we held the revision): fleet__on_vote
 * echoes at receipt, this catches up at the next decide (every vote, every resync).
 */
static void echo_pending(struct fleet *b, struct svc *v)
{
	const struct store_revision *d =
		agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
	if (!d || has_vote(v, b->id, d->rev))
		return;
	uint64_t subject = agree_subject(d);
	for (size_t i = 0; i < v->nvotes; i++) {
		const struct store_vote *o = &v->votes[i];
		if (o->rev != d->rev || o->reason != STORE_VOTE_OPERATOR || o->subject != subject ||
		    !fleet__can_carry_out(b, v, d, o->target) || !b->net.get)
			continue;
		/* the operator's statement travels with its vote record only: read it again */
		char key[FLEET_REC_KEY_MAX + 1];
		struct fleet_key k = {.type = FLEET_REC_VOTE, .rev = d->rev};
		snprintf(k.service, sizeof k.service, "%s", v->name);
		int n = fleet_key_format(&k, key, sizeof key);
		const struct gossip_record *g =
			n < 0 ? NULL : b->net.get(b->net.ud, o->voter, key, (size_t)n);
		struct store_vote rv;
		struct store_opsig op;
		memset(&op, 0, sizeof op);
		if (!g || fleet_vote_decode_op(g->value, g->value_len, &rv, &op) < 0 ||
		    !echo_ok(b, v, o, &op, d))
			continue;
		fleet__cast_vote(b, v, d, STORE_VOTE_OPERATOR, o->target, NULL);
		return;
	}
}

/* The site of roster member @id ("" if it has none), NULL if it is not on the roster. */
static const char *roster_site(const struct fleet *b, const uint8_t *id)
{
	for (size_t i = 0; i < b->nroster; i++)
		if (memcmp(b->roster[i].id, id, STORE_NODE_ID_LEN) == 0)
			return b->roster[i].site ? b->roster[i].site : "";
	return NULL;
}

/*
 * Pacing's wave (fleet.h "Pacing"): a node that pacing holds back has not run the desired
 * revision, so its own health can never judge it; with a service whose endpoint keeps the
 * pacing slot until the new instance is healthy, a bad revision stops at the first node of
 * each site and, without this, could never gather a quorum of the electorate. So a node that
 * does not run (nor is swapping to) its desired revision follows the first-round health vote
 * against it of a node of its own site, which ran it: it casts a health vote of its own. The
 * vote it follows is signed by its voter and was verified on receipt (a cluster-key holder
 * cannot forge it); a compromised node of the first wave can thus stop a rollout in its site,
 * which it could also do by never turning healthy.
 */
static void wave_follow(struct fleet *b, struct svc *v)
{
	if (!b->max_par || v->diverged || v->swapping)
		return;
	const char *mysite = b->has_site ? b->site : "";
	const struct store_revision *d = agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
	if (!d || d->kind != STORE_REV_DEPLOY || fleet__decided(v, d) || has_vote(v, b->id, d->rev) ||
	    (v->running_rev == d->rev && memcmp(&v->running, &d->artifact, sizeof v->running) == 0))
		return;
	uint64_t subject = agree_subject(d);
	for (size_t i = 0; i < v->nvotes; i++) {
		const struct store_vote *o = &v->votes[i];
		const char *site;
		if (o->rev != d->rev || o->reason != STORE_VOTE_HEALTH || o->subject != subject ||
		    o->round != 0 || o->target != 0 ||
		    memcmp(o->voter, b->id, STORE_NODE_ID_LEN) == 0 ||
		    !(site = roster_site(b, o->voter)) || strcmp(site, mysite) != 0)
			continue;
		char who[2 * STORE_NODE_ID_LEN + 1];
		fleet__event(b, "wave", v->name, d->rev, "%s follows the health vote of %s against "
			     "rev %" PRIu64 ": it ran it first in this site, and pacing holds this "
			     "node back", b->name, fleet__member_name(b, o->voter, who), d->rev);
		fleet__cast_vote(b, v, d, STORE_VOTE_HEALTH, 0, NULL);
		return;
	}
}

/*
 * Does this node publish its decision @rb at once? Every node that holds the quorum of votes
 * decides by itself (agree_decide is deterministic), so the copies only serve nodes that miss
 * votes, and at 128 nodes each copy is 22 records (~14 KiB: the certificate's signed votes
 * and the electorate's keys): 128 copies at once were ~2 MiB per node of gossip within a
 * second or two, enough on a small machine to delay probes and make members suspect. So
 * DECISION_PUBLISHERS electors chosen by the subject (the same ones on every node) publish
 * at once; any other node publishes only if no other node's valid copy reached it within
 * DECISION_LATE_MS (the chosen ones may be down or cut off). Publishing never decides: a
 * copy is checked in full by its receivers, whoever wrote it.
 */
static bool decision_publisher(const struct fleet *b, const struct store_revision *rb)
{
	if (!rb->elect || rb->nelect <= DECISION_PUBLISHERS)
		return true;
	uint64_t first = rb->cert_subject % rb->nelect;
	for (uint32_t i = 0; i < DECISION_PUBLISHERS; i++)
		if (memcmp(rb->elect[(first + i) % rb->nelect], b->id, STORE_NODE_ID_LEN) == 0)
			return true;
	return false;
}

void fleet__late_cancel(struct svc *v, const struct store_revision *r)
{
	if (v->late_rev && r->kind == STORE_REV_ROLLBACK && r->rev == v->late_rev &&
	    r->cert_subject == v->late_subject)
		v->late_rev = 0;
}

void fleet__late_publish(struct fleet *b, struct svc *v)
{
	if (!v->late_rev || uv_now(b->loop) < v->late_at)
		return;
	const struct store_revision *d = agree_at(v->log, v->nlog, v->late_rev);
	/* the held record: ours, or a larger certificate of the same decision */
	if (d && d->kind == STORE_REV_ROLLBACK && d->cert_subject == v->late_subject)
		fleet__publish_rev(b, d);
	v->late_rev = 0;
}

void fleet__decide(struct fleet *b, struct svc *v)
{
	/* A node that has not completed its first full anti-entropy exchange holds a partial
	 * log: it does not decide (agree.h rule 0). */
	if (!fleet__synced(b))
		return;
	echo_pending(b, v);
	wave_follow(b, v);
	/* distinct revs with votes, ascending, each tried once */
	uint64_t last = 0;
	for (;;) {
		uint64_t next = UINT64_MAX;
		for (size_t i = 0; i < v->nvotes; i++)
			if (v->votes[i].rev > last && v->votes[i].rev < next)
				next = v->votes[i].rev;
		if (next == UINT64_MAX)
			return;
		last = next;
		const struct store_revision *bad = agree_at(v->log, v->nlog, next);
		if (!bad || fleet__decided(v, bad))
			continue;
		recast(b, v, bad);
		bad = agree_at(v->log, v->nlog, next);
		if (!bad || fleet__decided(v, bad))
			continue;
		struct store_revision rb;
		int r = agree_decide(v->log, v->nlog, v->name, next, v->votes, v->nvotes, &rb);
		if (r < 0) {
			if (r != -AGREE_ENOQUORUM)
				log_debug("%s: rev %" PRIu64 " not decided: %s", v->name, next,
					  agree_strerror(r));
			continue;
		}
		/* publish only a decision new to this node: if the same one (or a better
		 * certificate) already arrived from another node, its writer spreads it, and N
		 * copies of one decision would only load the gossip of a large cluster */
		int a = fleet__accept_rev(b, v, &rb, true);
		if ((a == AGREE_STORE || a == AGREE_REPLACE) && decision_publisher(b, &rb)) {
			fleet__publish_rev(b, &rb);
		} else if (a == AGREE_STORE || a == AGREE_REPLACE) {
			v->late_rev = rb.rev;
			v->late_subject = rb.cert_subject;
			v->late_at = uv_now(b->loop) + DECISION_LATE_MS +
				     randombytes_uniform(DECISION_LATE_JITTER_MS);
		}
		store_revision_release(&rb);
		/* accept_rev recursed into decide and may have changed the log: restart the scan
		 * after this rev (the arrays may have moved) */
	}
}

/* ---- Votes --------------------------------------------------------------------------------- */

static bool has_vote(const struct svc *v, const uint8_t *voter, uint64_t rev)
{
	for (size_t i = 0; i < v->nvotes; i++)
		if (v->votes[i].rev == rev &&
		    memcmp(v->votes[i].voter, voter, STORE_NODE_ID_LEN) == 0)
			return true;
	return false;
}


/*
 * Cast (or re-cast) this node's vote on @subject: what agree_next_vote says, if anything.
 * @target is our own judgement for a first vote. Our vote is in the store before it is
 * published, so a kill -9 in between leaves it to be re-published at restart, never a vote
 * the others saw and we forgot.
 */
int fleet__cast_vote(struct fleet *b, struct svc *v, const struct store_revision *subject,
		     enum store_vote_reason reason, uint64_t target, const struct store_opsig *op)
{
	struct store_vote av;
	uint8_t *val;
	size_t len;
	uint32_t round;
	uint64_t tg;
	int r;

	if (!fleet__synced(b))
		return -EAGAIN;
	r = agree_next_vote(subject, v->votes, v->nvotes, b->id, target, &round, &tg);
	if (r == AGREE_VOTE_NONE && reason == STORE_VOTE_OPERATOR &&
	    !agree_in_electorate(subject, b->id) && !has_vote(v, b->id, subject->rev)) {
		/* An operator on a node outside the electorate (a rollback scoped to another
		 * site, or asked on a node that joined later): the vote is never counted
		 * (rule 3), but it carries the request to the electors, who echo it. */
		struct agree_tally t;
		if (agree_tally(subject, v->votes, v->nvotes, &t) < 0 || t.decided)
			return 0;
		round = t.round;
		tg = target;
		r = AGREE_VOTE_NEW;
	}
	if (r <= 0)
		return r;
	if (r == AGREE_VOTE_STUCK)
		fleet__event(b, "vote", v->name, subject->rev,
		      "votes on rev %" PRIu64 " are split in round %" PRIu32 " (no target can "
		      "reach the quorum): re-casting into round %" PRIu32 " for the leading target",
		      subject->rev, round - 1, round);
	memset(&av, 0, sizeof av);
	snprintf(av.service, sizeof av.service, "%s", v->name);
	av.rev = subject->rev;
	memcpy(av.voter, b->id, STORE_NODE_ID_LEN);
	av.reason = reason;
	av.hlc = fleet__stamp(b);
	av.subject = agree_subject(subject);
	av.target = tg;
	av.round = round;
	uint8_t msg[AGREE_VOTE_MSG_MAX];
	/* with the key the revision's electorate names for this node: a former one if the
	 * revision was written before this node rotated its key (trust.c) */
	sign_detached(fleet__sign_key_for(b, agree_elector_key(subject, b->id)), msg,
		      agree_vote_msg(&av, msg), av.sig);
	target = tg;
	/* Stored before it counts or is published: a vote the others saw and this node forgot
	 * at a restart could be followed by a second, different vote in the same round, which
	 * agree.h rule 4 excludes. */
	r = store_vote_put(b->s, &av);
	if (r != 0) {
		log_error("%s: our vote on rev %" PRIu64 " was not stored (%s): not cast", v->name,
			  av.rev, r < 0 ? store_strerror(r) : "an as new vote is held");
		return r < 0 ? r : -EEXIST;
	}
	r = fleet__vote_add(v, &av);
	if (r < 0)
		return r;
	if (subject->rev > v->voted_rev)
		v->voted_rev = subject->rev;
	/* an operator vote carries the operator's statement, so that the others echo it */
	r = fleet_vote_encode_op(&av, reason == STORE_VOTE_OPERATOR ? op : NULL, &val, &len);
	if (r < 0)
		return r;
	struct fleet_key k = {.type = FLEET_REC_VOTE, .rev = subject->rev};
	snprintf(k.service, sizeof k.service, "%s", v->name);
	r = fleet__put_value(b, &k, val, len);
	fleet__vote_cast(v, reason);	/* events.c: metrics */
	fleet__event(b, "vote", v->name, subject->rev, "%s votes against rev %" PRIu64 " (%s%s)",
	      b->name, subject->rev, reason == STORE_VOTE_HEALTH ? "health" : "operator",
	      target ? ", to an explicit rev" : "");
	fleet__decide(b, v);
	return r;
}

#define RECAST_SETTLE_MS 2000	/* > a gossip round: rule 4's settle time before leaving a
				 * stuck round */

/* Rule 4: follow a later round at once; leave a stuck round of ours once the view of it has
 * been still for RECAST_SETTLE_MS (the periodic resync comes back to it). */
static void recast(struct fleet *b, struct svc *v, const struct store_revision *bad)
{
	const struct store_vote *mine = NULL;
	uint32_t round;
	uint64_t tg;

	for (size_t i = 0; i < v->nvotes; i++)
		if (v->votes[i].rev == bad->rev &&
		    memcmp(v->votes[i].voter, b->id, STORE_NODE_ID_LEN) == 0)
			mine = &v->votes[i];
	if (!mine || mine->subject != agree_subject(bad))
		return;
	int r = agree_next_vote(bad, v->votes, v->nvotes, b->id, mine->target, &round, &tg);
	if (r == AGREE_VOTE_BEHIND) {
		fleet__cast_vote(b, v, bad, mine->reason, tg, NULL);
	} else if (r == AGREE_VOTE_STUCK) {
		uint64_t now = uv_now(b->loop);
		if (v->stuck_rev != bad->rev || v->stuck_round != mine->round) {
			v->stuck_rev = bad->rev;
			v->stuck_round = mine->round;
			v->stuck_since = now;
		} else if (now - v->stuck_since >= RECAST_SETTLE_MS) {
			fleet__cast_vote(b, v, bad, mine->reason, tg, NULL);
		}
	}
}

/* The node can carry out a rollback of @bad toward @target if it holds the target artifact
 * (or a fetch hook exists). */
bool fleet__can_carry_out(struct fleet *b, struct svc *v, const struct store_revision *bad,
			  uint64_t target)
{
	const struct store_revision *t = NULL;
	struct store_artifact_info info;
	if (target) {
		t = agree_at(v->log, v->nlog, target);
	} else if (agree_previous_good(v->log, v->nlog, bad->rev, &t) < 0) {
		t = NULL;
	}
	if (!t)
		return false;
	if (b->need_artifact)
		return true;
	if (store_artifact_get(b->s, &t->artifact, &info) < 0)
		return false;
	store_artifact_info_release(&info);
	return true;
}

/*
 * Other nodes' votes reach the store in batches (gathered for VOTE_FLUSH_MS), on the thread
 * pool, one job at a time (what arrives meanwhile waits for the next job): in a cluster of N
 * nodes a rollback brings every node N votes, and one synchronous transaction (one fsync)
 * per vote on the loop stalled it for seconds on a busy disk. Losing the tail of a batch in
 * a crash is harmless: the vote records are persisted by the cluster layer too, and every
 * voter keeps gossiping its own vote. A node's OWN vote is still written before it is
 * published (cast_vote).
 */
static void vjob_start(struct fleet *b);
static void on_vflush(uv_timer_t *t);

static void vjob_work(uv_work_t *w)
{
	struct fleet *b = w->data;
	b->vjob_err = store_vote_put_many(b->s, b->vjob, b->nvjob);
}

static void vjob_done(uv_work_t *w, int status)
{
	struct fleet *b = w->data;
	(void)status;
	if (b->vjob_err < 0)
		log_warning("cannot store %zu vote(s): %s", b->nvjob, store_strerror(b->vjob_err));
	free(b->vjob);
	b->vjob = NULL;
	b->nvjob = 0;
	b->vjob_running = false;
	if (b->closing) {
		fleet__part_closed(b);
		return;
	}
	if (b->nvq && !uv_is_active((uv_handle_t *)&b->vflush))
		uv_timer_start(&b->vflush, on_vflush, VOTE_FLUSH_MS, 0);
}

static void on_vflush(uv_timer_t *t)
{
	vjob_start(t->data);
}

static void vjob_start(struct fleet *b)
{
	if (b->vjob_running || b->nvq == 0 || b->closing)
		return;
	b->vjob = b->vq;
	b->nvjob = b->nvq;
	b->vq = NULL;
	b->nvq = b->capvq = 0;
	b->vwork.data = b;
	b->vjob_running = true;
	if (uv_queue_work(b->loop, &b->vwork, vjob_work, vjob_done) < 0) {
		/* no thread pool: write here rather than lose them */
		b->vjob_running = false;
		vjob_work(&b->vwork);
		free(b->vjob);
		b->vjob = NULL;
		b->nvjob = 0;
	}
}

static void vote_queue(struct fleet *b, const struct store_vote *sv)
{
	if (b->nvq == b->capvq) {
		size_t cap = b->capvq ? 2 * b->capvq : 32;
		struct store_vote *n = realloc(b->vq, cap * sizeof *n);
		if (!n) {
			store_vote_put(b->s, sv);
			return;
		}
		b->vq = n;
		b->capvq = cap;
	}
	b->vq[b->nvq++] = *sv;
	/* a window of VOTE_FLUSH_MS gathers the burst of a rollback into one transaction */
	if (!b->vjob_running && !uv_is_active((uv_handle_t *)&b->vflush))
		uv_timer_start(&b->vflush, on_vflush, VOTE_FLUSH_MS, 0);
}

/*
 * May this node echo operator vote @av with statement @op against @d (sign.h)? A rollback
 * statement of a trusted operator for this service, target and scope, signed after @d was
 * written (60 s of clock skew allowed): an unsigned operator vote would let one compromised
 * node roll the fleet back, and an old statement must not apply to a later revision. Only
 * the operator's own vote carries the statement; echoes are never echoed.
 */
static bool echo_ok(struct fleet *b, struct svc *v, const struct store_vote *av,
		    const struct store_opsig *op, const struct store_revision *d)
{
	char hex[2 * STORE_NODE_ID_LEN + 1];
	if (!op || !op->kind)
		return false;	/* an echo (or an unsigned operator vote): never echoed */
	if (fleet__op_ok(b, op, SIGN_OP_ROLLBACK, v->name, NULL) &&
	    op->target == av->target && (!op->scope[0] || strcmp(op->scope, d->scope) == 0) &&
	    op->ts_ms + 60000 >= (d->hlc >> 16))
		return true;
	fleet__hex_id(av->voter, STORE_NODE_ID_LEN, hex);
	log_warning("%s: operator vote of node %s against rev %" PRIu64 " not echoed: it carries "
		    "no valid statement of a trusted operator key for this revision", v->name, hex,
		    av->rev);
	return false;
}

void fleet__on_vote(struct fleet *b, struct svc *v, const struct store_vote *av,
		    const struct store_opsig *op)
{
	int r = fleet__vote_add(v, av);
	if (r <= 0)
		return;
	fleet__observe(b, av->hlc);
	vote_queue(b, av);
	char who[2 * STORE_NODE_ID_LEN + 1];
	fleet__event(b, "vote", v->name, av->rev, "%s votes against rev %" PRIu64 " (%s%s)",
	      fleet__member_name(b, av->voter, who), av->rev,
	      av->reason == STORE_VOTE_HEALTH ? "health" : "operator",
	      av->round ? ", re-cast" : "");
	/* echo an operator's vote against the revision we are meant to run (cast_vote casts
	 * only a first vote of ours, or nothing) */
	const struct store_revision *d =
		agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
	if (av->reason == STORE_VOTE_OPERATOR && d && d->rev == av->rev &&
	    av->subject == agree_subject(d) && fleet__can_carry_out(b, v, d, av->target) &&
	    echo_ok(b, v, av, op, d))
		/* the echo does not carry the statement again: 140 bytes less per vote in a
		 * burst of N echoes (the gossip of a rollback), and the operator's own vote,
		 * which carries it, reaches every node by gossip and anti-entropy */
		fleet__cast_vote(b, v, d, STORE_VOTE_OPERATOR, av->target, NULL);
	fleet__decide(b, v);
}
