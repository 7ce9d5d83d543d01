/*
 * agent/agree.c: the agreement core. The rules and why they are safe are in agree.h; this file
 * only implements them. Logs are a few retained revisions and are walked with plain loops;
 * members and votes grow with the cluster, so a tally sorts temporary views of them
 * (O(N log N) instead of the O(N^2) of pairwise loops, see members_sorted) and falls back to
 * the plain loops, with the same result, if that allocation fails.
 */
#include "agent/agree/agree.h"
#include "agent/base/sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

const uint8_t agree_cluster_origin[STORE_NODE_ID_LEN];

const char *agree_strerror(int err)
{
	switch (-err) {
	case 0:
		return "success";
	case AGREE_ENOQUORUM:
		return "votes do not reach the quorum";
	case AGREE_ECERT:
		return "rollback certificate below the quorum";
	case AGREE_EGAP:
		return "a revision needed for the decision is missing";
	case AGREE_ENOTARGET:
		return "no earlier good revision to roll back to";
	case AGREE_EMISMATCH:
		return "rollback target not usable for this revision";
	case AGREE_ESIG:
		return "a certificate vote's signature does not verify against the electorate's key";
	case AGREE_ENOREV:
		return "no such revision";
	case STORE_ECONDEMNED:
		return "artifact is condemned; needs force";
	default:
		return strerror(-err);
	}
}

/* ---- Quorum ------------------------------------------------------------------------------ */

int agree_quorum_check(const struct store_quorum *q)
{
	if (!q)
		return -EINVAL;
	switch (q->kind) {
	case AGREE_QUORUM_MAJORITY:
		return q->count == 0 && q->num == 0 && q->den == 0 ? 0 : -EINVAL;
	case AGREE_QUORUM_COUNT:
		return q->count >= 1 && q->num == 0 && q->den == 0 ? 0 : -EINVAL;
	case AGREE_QUORUM_FRACTION:
		return q->count == 0 && q->den > 0 && q->num > 0 && q->num <= q->den ? 0 : -EINVAL;
	}
	return -EINVAL;
}

uint32_t agree_quorum_size(const struct store_quorum *q, uint32_t eligible)
{
	uint64_t n;

	if (!q || agree_quorum_check(q) < 0 || q->kind == AGREE_QUORUM_MAJORITY)
		n = (uint64_t)eligible / 2 + 1;
	else if (q->kind == AGREE_QUORUM_COUNT)
		n = q->count < eligible ? q->count : eligible;
	else
		n = ((uint64_t)eligible * q->num + q->den - 1) / q->den;
	/* Never 0: an empty eligible set (a site whose members all left) cannot decide. */
	return n ? (uint32_t)n : 1;
}

/* ---- Scopes ------------------------------------------------------------------------------ */

#define SITE_PREFIX "site:"
#define SITE_PREFIX_LEN 5

bool agree_scope_valid(const char *scope)
{
	size_t i, len;

	if (!scope)
		return false;
	if (!scope[0])
		return true;
	if (strncmp(scope, SITE_PREFIX, SITE_PREFIX_LEN) != 0)
		return false;
	len = strnlen(scope, 65);
	if (len <= SITE_PREFIX_LEN || len > 64)
		return false;
	for (i = SITE_PREFIX_LEN; i < len; i++) {
		char c = scope[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool agree_scope_includes(const char *scope, const char *site)
{
	if (!agree_scope_valid(scope))
		return false;
	if (!scope[0])
		return true;
	return site && strcmp(scope + SITE_PREFIX_LEN, site) == 0;
}

bool agree_scope_covers(const char *outer, const char *inner)
{
	if (!agree_scope_valid(outer) || !agree_scope_valid(inner))
		return false;
	return !outer[0] || strcmp(outer, inner) == 0;
}

/* ---- Records ----------------------------------------------------------------------------- */

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int sign(int v)
{
	return v < 0 ? -1 : v > 0;
}

/* Everything but the certificate, in the order of rule 1 (after service and rev). */
static int revision_cmp_identity(const struct store_revision *a, const struct store_revision *b)
{
	int c;

	c = strncmp(a->service, b->service, sizeof(a->service));
	if (c)
		return sign(c);
	c = cmp_u64(a->rev, b->rev);
	if (c)
		return c;
	c = cmp_u64(a->kind == STORE_REV_ROLLBACK, b->kind == STORE_REV_ROLLBACK);
	if (c)
		return c;
	c = cmp_u64(a->kind, b->kind);
	if (c)
		return c;
	c = cmp_u64(a->hlc, b->hlc);
	if (c)
		return c;
	c = memcmp(a->origin, b->origin, STORE_NODE_ID_LEN);
	if (c)
		return sign(c);
	c = memcmp(a->artifact.b, b->artifact.b, STORE_ID_LEN);
	if (c)
		return sign(c);
	c = strncmp(a->scope, b->scope, sizeof(a->scope));
	if (c)
		return sign(c);
	c = cmp_u64(a->operator_uid, b->operator_uid);
	if (c)
		return c;
	c = cmp_u64((uint64_t)(int64_t)a->operator_pid + (1ULL << 63),
		    (uint64_t)(int64_t)b->operator_pid + (1ULL << 63));
	if (c)
		return c;
	c = sign(strncmp(a->reason, b->reason, sizeof(a->reason)));
	if (c)
		return c;
	/* The electorate and its rule are part of what was decided (a rollback copies its bad
	 * record's), so two records differing only there are different decisions. */
	c = cmp_u64(a->nelect, b->nelect);
	if (c)
		return c;
	if (a->nelect) {
		c = memcmp(a->elect, b->elect, (size_t)a->nelect * STORE_NODE_ID_LEN);
		if (c)
			return sign(c);
		/* the keys the electorate is verified with are part of it (a NULL set first) */
		c = cmp_u64(a->elect_keys != NULL, b->elect_keys != NULL);
		if (c)
			return c;
		if (a->elect_keys) {
			c = memcmp(a->elect_keys, b->elect_keys, (size_t)a->nelect * STORE_KEY_LEN);
			if (c)
				return sign(c);
		}
	}
	c = memcmp(&a->quorum, &b->quorum, sizeof(a->quorum));
	if (c)
		return sign(c);
	c = memcmp(a->condemns.b, b->condemns.b, STORE_ID_LEN);
	if (c)
		return sign(c);
	/* the operator's statement and the origin's signature (deterministic: one per record) */
	c = cmp_u64(a->op.kind, b->op.kind);
	if (!c)
		c = sign(strncmp(a->op.scope, b->op.scope, sizeof(a->op.scope)));
	if (!c)
		c = cmp_u64(a->op.target, b->op.target);
	if (!c)
		c = cmp_u64(a->op.ts_ms, b->op.ts_ms);
	if (!c)
		c = sign(memcmp(a->op.nonce, b->op.nonce, sizeof(a->op.nonce)));
	if (!c)
		c = sign(memcmp(a->op.key, b->op.key, sizeof(a->op.key)));
	if (!c)
		c = sign(memcmp(a->op.sig, b->op.sig, sizeof(a->op.sig)));
	if (c)
		return c;
	return sign(memcmp(a->origin_sig, b->origin_sig, STORE_SIG_LEN));
}

int agree_revision_cmp(const struct store_revision *a, const struct store_revision *b)
{
	uint32_t i;
	int c;

	c = revision_cmp_identity(a, b);
	if (c)
		return c;
	c = cmp_u64(a->ncert, b->ncert);
	if (c)
		return c;
	for (i = 0; i < a->ncert; i++) {
		c = memcmp(a->cert[i], b->cert[i], STORE_NODE_ID_LEN);
		if (c)
			return sign(c);
	}
	/* then how it is signed: a signed certificate beats an unsigned one, then the bytes */
	c = cmp_u64(a->cert_sigs != NULL, b->cert_sigs != NULL);
	if (c)
		return c;
	c = cmp_u64(a->cert_subject, b->cert_subject);
	if (c)
		return c;
	c = cmp_u64(a->cert_target, b->cert_target);
	if (c)
		return c;
	c = cmp_u64(a->cert_round, b->cert_round);
	if (c)
		return c;
	for (i = 0; a->cert_sigs && i < a->ncert; i++) {
		c = cmp_u64(a->cert_sigs[i].hlc, b->cert_sigs[i].hlc);
		if (c)
			return c;
		c = cmp_u64(a->cert_sigs[i].reason, b->cert_sigs[i].reason);
		if (c)
			return c;
		c = memcmp(a->cert_sigs[i].sig, b->cert_sigs[i].sig, STORE_SIG_LEN);
		if (c)
			return sign(c);
	}
	return 0;
}

bool agree_revision_same(const struct store_revision *a, const struct store_revision *b)
{
	return revision_cmp_identity(a, b) == 0;
}

const struct store_revision *agree_at(const struct store_revision *log, size_t nlog,
				      uint64_t rev)
{
	const struct store_revision *best = NULL;
	size_t i;

	for (i = 0; i < nlog; i++)
		if (log[i].rev == rev && (!best || agree_revision_cmp(&log[i], best) > 0))
			best = &log[i];
	return best;
}

const struct store_revision *agree_desired(const struct store_revision *log, size_t nlog,
					   const char *site)
{
	const struct store_revision *w;
	uint64_t below = UINT64_MAX, rev;
	size_t i;
	bool found;

	/* Revs from the top down; usually the first one answers. Only the winner of a rev
	 * counts: a losing record's scope is irrelevant. */
	for (;;) {
		found = false;
		rev = 0;
		for (i = 0; i < nlog; i++)
			if (log[i].rev < below && (!found || log[i].rev > rev)) {
				rev = log[i].rev;
				found = true;
			}
		if (!found)
			return NULL;
		w = agree_at(log, nlog, rev);
		if (agree_scope_includes(w->scope, site))
			return w;
		below = rev;
	}
}

/* ---- Roster and electorate ---------------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, STORE_NODE_ID_LEN);
}

/* An elector and its key, sorted together. */
struct idkey {
	uint8_t id[STORE_NODE_ID_LEN];
	uint8_t key[STORE_KEY_LEN];
};

static int idkey_cmp(const void *a, const void *b)
{
	const struct idkey *x = a, *y = b;
	int c = memcmp(x->id, y->id, STORE_NODE_ID_LEN);
	/* one id listed twice with two keys: the larger key first, so the choice is the same
	 * on every node whatever the roster's order */
	return c ? c : -memcmp(x->key, y->key, STORE_KEY_LEN);
}

int agree_electorate_keys(const struct agree_member *roster, size_t n, const char *scope,
			  uint8_t (**ret_ids)[STORE_NODE_ID_LEN],
			  uint8_t (**ret_keys)[STORE_KEY_LEN], uint32_t *ret_n)
{
	uint8_t(*ids)[STORE_NODE_ID_LEN] = NULL;
	uint8_t(*keys)[STORE_KEY_LEN] = NULL;
	struct idkey *ik;
	size_t i, k = 0, u;

	if ((!roster && n) || !scope || !ret_ids || !ret_n || !agree_scope_valid(scope))
		return -EINVAL;
	ik = malloc((n ? n : 1) * sizeof(*ik));
	if (!ik)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		if (roster[i].state != AGREE_LEFT && agree_scope_includes(scope, roster[i].site)) {
			memcpy(ik[k].id, roster[i].id, STORE_NODE_ID_LEN);
			memcpy(ik[k++].key, roster[i].key, STORE_KEY_LEN);
		}
	if (k > 1)
		qsort(ik, k, sizeof(*ik), idkey_cmp);
	/* A roster listing one id twice must not double its weight. */
	for (i = 0, u = 0; i < k; i++)
		if (u == 0 || memcmp(ik[u - 1].id, ik[i].id, STORE_NODE_ID_LEN) != 0)
			memmove(&ik[u++], &ik[i], sizeof(*ik));
	if (u > STORE_ELECT_MAX) {
		free(ik);
		return -E2BIG;
	}
	ids = malloc((u ? u : 1) * sizeof(*ids));
	if (ret_keys)
		keys = malloc((u ? u : 1) * sizeof(*keys));
	if (!ids || (ret_keys && !keys)) {
		free(ids);
		free(keys);
		free(ik);
		return -ENOMEM;
	}
	for (i = 0; i < u; i++) {
		memcpy(ids[i], ik[i].id, STORE_NODE_ID_LEN);
		if (keys)
			memcpy(keys[i], ik[i].key, STORE_KEY_LEN);
	}
	free(ik);
	if (!u) {	/* nobody in scope: no keys (a store revision has none without electors) */
		free(keys);
		keys = NULL;
	}
	*ret_ids = ids;
	if (ret_keys)
		*ret_keys = keys;
	*ret_n = (uint32_t)u;
	return 0;
}

int agree_electorate(const struct agree_member *roster, size_t n, const char *scope,
		     uint8_t (**ret_ids)[STORE_NODE_ID_LEN], uint32_t *ret_n)
{
	return agree_electorate_keys(roster, n, scope, ret_ids, NULL, ret_n);
}

const uint8_t *agree_elector_key(const struct store_revision *r,
				 const uint8_t id[STORE_NODE_ID_LEN])
{
	const uint8_t(*hit)[STORE_NODE_ID_LEN];

	if (!r || !r->nelect || !r->elect || !r->elect_keys)
		return NULL;
	hit = bsearch(id, r->elect, r->nelect, STORE_NODE_ID_LEN, id_cmp);
	return hit ? r->elect_keys[hit - r->elect] : NULL;
}

/* ---- Signed votes ------------------------------------------------------------------------ */

static uint8_t *put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

size_t agree_vote_msg(const struct store_vote *v, uint8_t out[AGREE_VOTE_MSG_MAX])
{
	static const char tag[] = "shoal-vote-v1";
	size_t sl = strnlen(v->service, sizeof(v->service));
	uint8_t *p = out;

	memcpy(p, tag, sizeof(tag));	/* with its NUL: a domain separator */
	p += sizeof(tag);
	*p++ = (uint8_t)sl;
	memcpy(p, v->service, sl);
	p += sl;
	p = put_be(p, v->rev, 8);
	memcpy(p, v->voter, STORE_NODE_ID_LEN);
	p += STORE_NODE_ID_LEN;
	*p++ = (uint8_t)v->reason;
	p = put_be(p, v->hlc, 8);
	p = put_be(p, v->subject, 8);
	p = put_be(p, v->target, 8);
	p = put_be(p, v->round, 4);
	return (size_t)(p - out);
}

bool agree_vote_verify(const struct store_vote *v, const uint8_t key[STORE_KEY_LEN])
{
	static const uint8_t zero[STORE_KEY_LEN];
	uint8_t msg[AGREE_VOTE_MSG_MAX];
	size_t n;

	if (!v || !key || memcmp(key, zero, STORE_KEY_LEN) == 0)
		return false;
	n = agree_vote_msg(v, msg);
	return sign_verify(key, msg, n, v->sig);	/* remembers verdicts (sign.h) */
}

int agree_deploy_msg(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len)
{
	struct store_revision c;

	if (!r || !ret_buf || !ret_len || r->kind != STORE_REV_DEPLOY)
		return -EINVAL;
	/* the record without what is not the origin's statement: the certificate fields (a
	 * deploy has none) and the signature itself */
	c = *r;
	c.ncert = 0;
	c.cert = NULL;
	c.cert_sigs = NULL;
	c.cert_subject = c.cert_target = 0;
	c.cert_round = 0;
	memset(c.origin_sig, 0, sizeof(c.origin_sig));
	return store_revision_encode(&c, ret_buf, ret_len);
}

bool agree_rollback_matches(const struct store_revision *bad, const struct store_revision *rb)
{
	if (!bad || !rb || rb->kind != STORE_REV_ROLLBACK || agree_subject(bad) != rb->cert_subject)
		return true;	/* not about this record: nothing to compare */
	if (rb->rev != bad->rev + 1 || rb->nelect != bad->nelect ||
	    memcmp(&rb->quorum, &bad->quorum, sizeof(rb->quorum)) != 0 ||
	    strncmp(rb->scope, bad->scope, sizeof(rb->scope)) != 0 ||
	    memcmp(rb->condemns.b, bad->artifact.b, STORE_ID_LEN) != 0 ||
	    (rb->elect_keys != NULL) != (bad->elect_keys != NULL))
		return false;
	if (rb->nelect && memcmp(rb->elect, bad->elect, (size_t)rb->nelect * STORE_NODE_ID_LEN))
		return false;
	return !rb->elect_keys ||
	       memcmp(rb->elect_keys, bad->elect_keys, (size_t)rb->nelect * STORE_KEY_LEN) == 0;
}

int agree_verify_signatures(const struct store_revision *r)
{
	struct store_vote v;

	if (!r)
		return -EINVAL;
	if (r->kind != STORE_REV_ROLLBACK)
		return 0;
	if (!r->ncert || !r->cert_sigs || !r->elect_keys || r->rev < 2 || !r->cert_subject)
		return -AGREE_ESIG;
	memset(&v, 0, sizeof(v));
	memcpy(v.service, r->service, sizeof(v.service));
	v.service[sizeof(v.service) - 1] = '\0';
	v.rev = r->rev - 1;
	v.subject = r->cert_subject;
	v.target = r->cert_target;
	v.round = r->cert_round;
	for (uint32_t i = 0; i < r->ncert; i++) {
		const uint8_t *key = agree_elector_key(r, r->cert[i]);
		if (r->cert_sigs[i].reason > STORE_VOTE_OPERATOR)
			return -AGREE_ESIG;
		memcpy(v.voter, r->cert[i], STORE_NODE_ID_LEN);
		v.reason = (enum store_vote_reason)r->cert_sigs[i].reason;
		v.hlc = r->cert_sigs[i].hlc;
		memcpy(v.sig, r->cert_sigs[i].sig, STORE_SIG_LEN);
		if (!key || !agree_vote_verify(&v, key))
			return -AGREE_ESIG;
	}
	return 0;
}

bool agree_in_electorate(const struct store_revision *r, const uint8_t id[STORE_NODE_ID_LEN])
{
	return r && r->nelect && r->elect &&
	       bsearch(id, r->elect, r->nelect, STORE_NODE_ID_LEN, id_cmp) != NULL;
}

/* ---- Votes and rounds ------------------------------------------------------------------- */

/* FNV-1a over an explicit little-endian serialisation: the same value on every node. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return fnv(h, b, sizeof(b));
}

static uint64_t fnv_str(uint64_t h, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	return fnv(fnv_u64(h, n), s, n);
}

uint64_t agree_subject(const struct store_revision *r)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (!r)
		return 0;
	h = fnv_str(h, r->service, sizeof(r->service));
	h = fnv_u64(h, r->rev);
	h = fnv_u64(h, (uint64_t)r->kind);
	h = fnv_u64(h, r->hlc);
	h = fnv(h, r->origin, STORE_NODE_ID_LEN);
	h = fnv(h, r->artifact.b, STORE_ID_LEN);
	h = fnv_str(h, r->scope, sizeof(r->scope));
	h = fnv_u64(h, r->operator_uid);
	h = fnv_u64(h, (uint64_t)(uint32_t)r->operator_pid);
	h = fnv_str(h, r->reason, sizeof(r->reason));
	h = fnv_u64(h, r->nelect);
	if (r->nelect && r->elect)
		h = fnv(h, r->elect, (size_t)r->nelect * STORE_NODE_ID_LEN);
	if (r->nelect && r->elect_keys)
		h = fnv(h, r->elect_keys, (size_t)r->nelect * STORE_KEY_LEN);
	h = fnv_u64(h, r->quorum.kind);
	h = fnv_u64(h, r->quorum.count);
	h = fnv_u64(h, r->quorum.num);
	h = fnv_u64(h, r->quorum.den);
	h = fnv(h, r->condemns.b, STORE_ID_LEN);
	return h ? h : 1; /* 0 is "meaning unknown" */
}

/* Does @v speak about @bad (rule 3): same service and rev, @bad's subject, an elector? */
static bool vote_about(const struct store_vote *v, const struct store_revision *bad,
		       uint64_t subject)
{
	return v->rev == bad->rev && v->subject != 0 && v->subject == subject &&
	       strncmp(v->service, bad->service, sizeof(v->service)) == 0 &&
	       agree_in_electorate(bad, v->voter);
}

/* By voter, newest vote first (store_vote_newer; then target, then index, so ties between
 * two different votes of one (round, hlc) still pick one deterministically). */
struct vref {
	const struct store_vote *v;
	size_t i;
};

static int vref_cmp(const void *a, const void *b)
{
	const struct vref *x = a, *y = b;
	int c = memcmp(x->v->voter, y->v->voter, STORE_NODE_ID_LEN);

	if (c)
		return c;
	if (store_vote_newer(x->v, y->v))
		return -1;
	if (store_vote_newer(y->v, x->v))
		return 1;
	if (x->v->target != y->v->target)
		return x->v->target < y->v->target ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The latest vote of every elector about @bad, into @latest (caller array of nvotes
 * entries); returns how many. O(V log V).
 */
static size_t latest_votes(const struct store_revision *bad, const struct store_vote *votes,
			   size_t nvotes, struct vref *vr, const struct store_vote **latest)
{
	size_t i, nm = 0, nl = 0;
	uint64_t subject = agree_subject(bad);

	for (i = 0; i < nvotes; i++)
		if (vote_about(&votes[i], bad, subject))
			vr[nm++] = (struct vref){&votes[i], i};
	if (nm > 1)
		qsort(vr, nm, sizeof(*vr), vref_cmp);
	for (i = 0; i < nm; i++)
		if (i == 0 || memcmp(vr[i - 1].v->voter, vr[i].v->voter, STORE_NODE_ID_LEN) != 0)
			latest[nl++] = vr[i].v;
	return nl;
}

static int tally_into(const struct store_revision *bad, const struct store_vote *votes,
		      size_t nvotes, struct agree_tally *ret, const struct store_vote ***ret_latest,
		      size_t *ret_nlatest)
{
	struct agree_tally t = {0};
	struct vref *vr = NULL;
	const struct store_vote **latest = NULL;
	uint64_t *tg = NULL;
	size_t i, nl, nt = 0;
	int r = -ENOMEM;

	t.eligible = bad->nelect;
	t.quorum = agree_quorum_size(&bad->quorum, bad->nelect);
	if (nvotes && (!(vr = malloc(nvotes * sizeof(*vr))) ||
		       !(latest = malloc(nvotes * sizeof(*latest))) ||
		       !(tg = malloc(nvotes * sizeof(*tg)))))
		goto out;
	nl = nvotes ? latest_votes(bad, votes, nvotes, vr, latest) : 0;
	for (i = 0; i < nl; i++)
		if (latest[i]->round > t.round)
			t.round = latest[i]->round;
	for (i = 0; i < nl; i++)
		if (latest[i]->round == t.round)
			tg[nt++] = latest[i]->target;
	t.counted = (uint32_t)nt;
	if (nt > 1)
		qsort(tg, nt, sizeof(*tg), u64_cmp);
	/* Leading target: more votes, then the smaller target; ascending runs, so a tie keeps
	 * the smaller one seen first. */
	for (i = 0; i < nt;) {
		size_t j = i;

		while (j < nt && tg[j] == tg[i])
			j++;
		if ((uint32_t)(j - i) > t.target_votes) {
			t.target = tg[i];
			t.target_votes = (uint32_t)(j - i);
		}
		i = j;
	}
	t.decided = t.target_votes > 0 && t.target_votes >= t.quorum;
	/* Stuck: even if every elector not yet seen in this round voted for the leading target,
	 * it would stay below the quorum; then no target can ever win this round. */
	t.stuck = t.counted > 0 && !t.decided &&
		  (uint64_t)t.target_votes + (t.eligible - t.counted) < t.quorum;
	*ret = t;
	if (ret_latest) {
		*ret_latest = latest;
		*ret_nlatest = nl;
		latest = NULL;
	}
	r = 0;
out:
	free(vr);
	free(latest);
	free(tg);
	return r;
}

int agree_tally(const struct store_revision *bad, const struct store_vote *votes, size_t nvotes,
		struct agree_tally *ret)
{
	if (!bad || (!votes && nvotes) || !ret)
		return -EINVAL;
	return tally_into(bad, votes, nvotes, ret, NULL, NULL);
}

int agree_next_vote(const struct store_revision *bad, const struct store_vote *votes,
		    size_t nvotes, const uint8_t self[STORE_NODE_ID_LEN], uint64_t own_target,
		    uint32_t *ret_round, uint64_t *ret_target)
{
	const struct store_vote **latest = NULL, *mine = NULL;
	struct agree_tally t;
	size_t i, nl = 0;
	int r;

	if (!bad || (!votes && nvotes) || !self || !ret_round || !ret_target)
		return -EINVAL;
	if (!agree_in_electorate(bad, self))
		return AGREE_VOTE_NONE;
	r = tally_into(bad, votes, nvotes, &t, &latest, &nl);
	if (r < 0)
		return r;
	for (i = 0; i < nl; i++)
		if (memcmp(latest[i]->voter, self, STORE_NODE_ID_LEN) == 0)
			mine = latest[i];
	free(latest);
	if (t.decided)
		return AGREE_VOTE_NONE;
	if (!mine && t.stuck) {
		*ret_round = t.round + 1;	/* a vote in a stuck round changes nothing */
		*ret_target = t.target;
		return AGREE_VOTE_NEW;
	}
	if (!mine) {
		/* A first vote: in round 0 the voter's own judgement; in a later round the
		 * round's leading target, so that the round can still converge. */
		*ret_round = t.round;
		*ret_target = t.round && t.counted ? t.target : own_target;
		return AGREE_VOTE_NEW;
	}
	if (mine->round < t.round) {
		*ret_round = t.round;
		*ret_target = t.target;
		return AGREE_VOTE_BEHIND;
	}
	if (t.stuck && t.round < UINT32_MAX) {
		*ret_round = t.round + 1;
		*ret_target = t.target;
		return AGREE_VOTE_STUCK;
	}
	return AGREE_VOTE_NONE;
}

/* ---- Condemned artifacts ----------------------------------------------------------------- */

bool agree_is_condemned(const struct store_revision *log, size_t nlog,
			const struct store_id *artifact, uint64_t at_rev)
{
	uint64_t condemned_at = 0, named_at = 0;
	size_t i;

	/* The latest winning rollback at or below @at_rev that names @artifact as the one it
	 * condemns, and the latest winner naming it to run. Only the records count, never
	 * which record won the bad rev: every node derives the same set from the same
	 * decisions. */
	for (i = 0; i < nlog; i++) {
		const struct store_revision *w = &log[i];
		bool names = memcmp(w->artifact.b, artifact->b, STORE_ID_LEN) == 0;
		bool condemns = w->kind == STORE_REV_ROLLBACK &&
				memcmp(w->condemns.b, artifact->b, STORE_ID_LEN) == 0;

		if (w->rev > at_rev || (!names && !condemns) || agree_at(log, nlog, w->rev) != w)
			continue;
		if (names && w->rev > named_at)
			named_at = w->rev;
		if (condemns && w->rev > condemned_at)
			condemned_at = w->rev;
	}
	/* A revision after the rollback naming it (forced deploy, explicit --to) absolves it. */
	return condemned_at && named_at < condemned_at;
}

int agree_condemned_by(const struct store_revision *log, size_t nlog,
		       const struct store_revision *rollback, struct store_id *ret)
{
	static const struct store_id zero;

	(void)log;
	(void)nlog;
	if (!rollback || rollback->kind != STORE_REV_ROLLBACK || rollback->rev < 2 || !ret)
		return -EINVAL;
	if (memcmp(rollback->condemns.b, zero.b, STORE_ID_LEN) == 0)
		return -AGREE_ENOREV;
	*ret = rollback->condemns;
	return 0;
}

int agree_check_deploy(const struct store_revision *log, size_t nlog,
		       const struct store_id *artifact, bool force)
{
	if (!artifact)
		return -EINVAL;
	if (!force && agree_is_condemned(log, nlog, artifact, UINT64_MAX))
		return -STORE_ECONDEMNED;
	return 0;
}

/* ---- Decision ---------------------------------------------------------------------------- */

static uint64_t log_min_rev(const struct store_revision *log, size_t nlog)
{
	uint64_t m = UINT64_MAX;
	size_t i;

	for (i = 0; i < nlog; i++)
		if (log[i].rev < m)
			m = log[i].rev;
	return m;
}

int agree_previous_good(const struct store_revision *log, size_t nlog, uint64_t bad_rev,
			const struct store_revision **ret)
{
	const struct store_revision *bad, *w;
	uint64_t r, lo;

	if (!ret || (!log && nlog))
		return -EINVAL;
	bad = agree_at(log, nlog, bad_rev);
	if (!bad || bad_rev == 0)
		return -AGREE_ENOREV;
	lo = log_min_rev(log, nlog);
	for (r = bad_rev - 1; r >= lo && r >= 1; r--) {
		w = agree_at(log, nlog, r);
		if (!w)
			return -AGREE_EGAP;
		if (!agree_scope_covers(w->scope, bad->scope))
			continue;
		if (memcmp(w->artifact.b, bad->artifact.b, STORE_ID_LEN) == 0)
			continue;
		if (agree_is_condemned(log, nlog, &w->artifact, bad_rev))
			continue;
		*ret = w;
		return 0;
	}
	return -AGREE_ENOTARGET;
}

/* Target @target (explicit --to) of bad record @bad: checks of rule 5. */
static int explicit_target(const struct store_revision *log, size_t nlog,
			   const struct store_revision *bad, uint64_t target,
			   const struct store_revision **ret)
{
	const struct store_revision *w;

	if (target >= bad->rev)
		return -AGREE_EMISMATCH;
	w = agree_at(log, nlog, target);
	if (!w)
		return -AGREE_ENOREV;
	if (!agree_scope_covers(w->scope, bad->scope) ||
	    memcmp(w->artifact.b, bad->artifact.b, STORE_ID_LEN) == 0)
		return -AGREE_EMISMATCH;
	*ret = w;
	return 0;
}

int agree_decide(const struct store_revision *log, size_t nlog, const char *service,
		 uint64_t bad_rev, const struct store_vote *votes, size_t nvotes,
		 struct store_revision *ret)
{
	const struct store_revision *bad, *tw = NULL;
	const struct store_vote **lv = NULL;
	struct agree_tally t;
	struct store_revision out;
	size_t i, nl = 0;
	int r;

	if (!service || !ret || (!log && nlog) || (!votes && nvotes))
		return -EINVAL;
	bad = agree_at(log, nlog, bad_rev);
	if (!bad || bad_rev == 0 || bad_rev == UINT64_MAX ||
	    strncmp(bad->service, service, sizeof(bad->service)) != 0)
		return -AGREE_ENOREV;
	r = tally_into(bad, votes, nvotes, &t, &lv, &nl);
	if (r < 0)
		return r;
	if (!t.decided) {
		free(lv);
		return -AGREE_ENOQUORUM;
	}
	if (t.target)
		r = explicit_target(log, nlog, bad, t.target, &tw);
	else
		r = agree_previous_good(log, nlog, bad_rev, &tw);
	if (r < 0) {
		free(lv);
		return r;
	}

	memset(&out, 0, sizeof(out));
	out.cert = malloc((size_t)t.target_votes * sizeof(*out.cert));
	out.cert_sigs = malloc((size_t)t.target_votes * sizeof(*out.cert_sigs));
	out.elect = malloc((size_t)bad->nelect * sizeof(*out.elect));
	if (bad->elect_keys)
		out.elect_keys = malloc((size_t)bad->nelect * sizeof(*out.elect_keys));
	if (!out.cert || !out.cert_sigs || !out.elect || (bad->elect_keys && !out.elect_keys)) {
		free(out.cert);
		free(out.cert_sigs);
		free(out.elect);
		free(out.elect_keys);
		free(lv);
		return -ENOMEM;
	}
	/* The certificate: the electors whose latest vote, in the deciding round, names the
	 * decided target, each with its signed vote (agree_verify_signatures). latest_votes()
	 * yields them in voter order, so it is sorted. */
	for (i = 0; i < nl; i++)
		if (lv[i]->round == t.round && lv[i]->target == t.target) {
			out.cert_sigs[out.ncert].hlc = lv[i]->hlc;
			out.cert_sigs[out.ncert].reason = (uint32_t)lv[i]->reason;
			memcpy(out.cert_sigs[out.ncert].sig, lv[i]->sig, STORE_SIG_LEN);
			memcpy(out.cert[out.ncert++], lv[i]->voter, STORE_NODE_ID_LEN);
		}
	free(lv);
	out.cert_subject = agree_subject(bad);
	out.cert_target = t.target;
	out.cert_round = t.round;
	out.nelect = bad->nelect;
	memcpy(out.elect, bad->elect, (size_t)bad->nelect * sizeof(*out.elect));
	if (out.elect_keys)
		memcpy(out.elect_keys, bad->elect_keys, (size_t)bad->nelect * STORE_KEY_LEN);
	out.quorum = bad->quorum;
	out.condemns = bad->artifact;

	memcpy(out.service, bad->service, sizeof(out.service));
	out.service[sizeof(out.service) - 1] = '\0';
	out.rev = bad_rev + 1;
	out.artifact = tw->artifact;
	out.kind = STORE_REV_ROLLBACK;
	memcpy(out.scope, bad->scope, sizeof(out.scope));
	out.scope[sizeof(out.scope) - 1] = '\0';
	memcpy(out.origin, agree_cluster_origin, STORE_NODE_ID_LEN);
	out.hlc = bad->hlc + 1;
	out.operator_uid = UINT32_MAX;
	out.operator_pid = 0;
	if (t.target)
		snprintf(out.reason, sizeof(out.reason),
			 "cluster rollback of rev %llu to rev %llu (quorum)",
			 (unsigned long long)bad_rev, (unsigned long long)t.target);
	else
		snprintf(out.reason, sizeof(out.reason), "cluster rollback of rev %llu (quorum)",
			 (unsigned long long)bad_rev);
	*ret = out;
	return 0;
}

/* ---- Verification ------------------------------------------------------------------------ */

static bool ids_sorted_unique(const uint8_t (*ids)[STORE_NODE_ID_LEN], uint32_t n)
{
	uint32_t i;

	for (i = 1; i < n; i++)
		if (memcmp(ids[i - 1], ids[i], STORE_NODE_ID_LEN) >= 0)
			return false;
	return true;
}

int agree_verify(const struct store_revision *log, size_t nlog, const struct store_revision *r)
{
	static const struct store_id zero;
	uint32_t i, good = 0;

	(void)log;
	(void)nlog;
	if (!r || (!log && nlog))
		return -EINVAL;
	if (r->rev == 0 || !memchr(r->service, '\0', sizeof(r->service)) || !r->service[0] ||
	    !memchr(r->scope, '\0', sizeof(r->scope)) || !agree_scope_valid(r->scope) ||
	    !memchr(r->reason, '\0', sizeof(r->reason)) || (r->ncert && !r->cert) ||
	    (r->nelect && !r->elect) || r->nelect > STORE_ELECT_MAX ||
	    !ids_sorted_unique((const uint8_t(*)[STORE_NODE_ID_LEN])r->elect, r->nelect) ||
	    agree_quorum_check(&r->quorum) < 0)
		return -EBADMSG;
	if (r->kind == STORE_REV_DEPLOY)
		return r->ncert || memcmp(r->condemns.b, zero.b, STORE_ID_LEN) ? -EBADMSG : 0;
	if (r->kind != STORE_REV_ROLLBACK || r->rev < 2 || r->hlc < 2 || !r->nelect ||
	    memcmp(r->origin, agree_cluster_origin, STORE_NODE_ID_LEN) != 0 ||
	    r->operator_uid != UINT32_MAX || memcmp(r->condemns.b, zero.b, STORE_ID_LEN) == 0 ||
	    memcmp(r->condemns.b, r->artifact.b, STORE_ID_LEN) == 0 ||
	    !ids_sorted_unique((const uint8_t(*)[STORE_NODE_ID_LEN])r->cert, r->ncert))
		return -EBADMSG;

	/* The certificate counts against the electorate the record carries, never against the
	 * receiver's view: the same answer on every node, at every time. */
	for (i = 0; i < r->ncert; i++)
		if (bsearch(r->cert[i], r->elect, r->nelect, STORE_NODE_ID_LEN, id_cmp))
			good++;
	if (good < agree_quorum_size(&r->quorum, r->nelect))
		return -AGREE_ECERT;
	/* Nothing here looks at the record the receiver holds at rev - 1: an hlc does not name
	 * one record (two deploys at one rev can share it, and a deploy can share the synthetic
	 * hlc of a cluster rollback), so comparing with "the held bad record" refused valid
	 * rollbacks of the other one on some nodes only, forever (agree.h rule 6). */
	return 0;
}

int agree_accept(const struct store_revision *log, size_t nlog,
		 const struct store_revision *incoming)
{
	const struct store_revision *held;
	int r;

	r = agree_verify(log, nlog, incoming);
	if (r < 0)
		return r;
	held = agree_at(log, nlog, incoming->rev);
	if (!held)
		return AGREE_STORE;
	return agree_revision_cmp(incoming, held) > 0 ? AGREE_REPLACE : AGREE_KEEP;
}

/* ---- Local rollback ---------------------------------------------------------------------- */

int agree_local_rollback(const struct store_revision *log, size_t nlog, const char *service,
			 const char *site, uint64_t to_rev, uint64_t hlc, struct agree_local *ret)
{
	const struct store_revision *d, *tw = NULL;
	int r;

	if (!service || !ret || (!log && nlog))
		return -EINVAL;
	d = agree_desired(log, nlog, site);
	if (!d)
		return -AGREE_ENOREV;
	if (to_rev) {
		if (to_rev >= d->rev)
			return -AGREE_EMISMATCH;
		tw = agree_at(log, nlog, to_rev);
		if (!tw)
			return -AGREE_ENOREV;
		if (!agree_scope_includes(tw->scope, site) ||
		    memcmp(tw->artifact.b, d->artifact.b, STORE_ID_LEN) == 0)
			return -AGREE_EMISMATCH;
	} else {
		r = agree_previous_good(log, nlog, d->rev, &tw);
		if (r < 0)
			return r;
	}
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->service, sizeof(ret->service), "%s", service);
	ret->base_rev = d->rev;
	ret->base_artifact = d->artifact;
	ret->target_rev = tw->rev;
	ret->artifact = tw->artifact;
	ret->hlc = hlc;
	return 0;
}

int agree_effective(const struct store_revision *log, size_t nlog, const char *site,
		    const struct agree_local *local, struct store_id *ret_artifact)
{
	const struct store_revision *d;

	if (!ret_artifact || (!log && nlog))
		return -EINVAL;
	d = agree_desired(log, nlog, site);
	if (local && d && d->rev == local->base_rev &&
	    memcmp(d->artifact.b, local->base_artifact.b, STORE_ID_LEN) == 0) {
		*ret_artifact = local->artifact;
		return 1;
	}
	if (!d)
		return -AGREE_ENOREV;
	*ret_artifact = d->artifact;
	return 0;
}

/* Configuration syntax of a quorum rule; here so that config/ need not reach up into fleet/. */
int agree_quorum_parse(const char *s, struct agree_quorum_rule *ret)
{
	struct agree_quorum_rule q;
	const char *eq;
	unsigned long a, d;
	char *end;

	if (!s || !ret || !(eq = strchr(s, '=')) || eq == s || (size_t)(eq - s) > 64)
		return -EINVAL;
	memset(&q, 0, sizeof q);
	memcpy(q.service, s, (size_t)(eq - s));
	for (const char *p = q.service; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return -EINVAL;
	eq++;
	if (strcmp(eq, "majority") == 0) {
		q.q.kind = AGREE_QUORUM_MAJORITY;
	} else {
		if (*eq < '0' || *eq > '9')
			return -EINVAL;
		errno = 0;
		a = strtoul(eq, &end, 10);
		if (errno || a == 0 || a > 100000)
			return -EINVAL;
		if (*end == 0) {
			q.q.kind = AGREE_QUORUM_COUNT;
			q.q.count = (uint32_t)a;
		} else if (*end == '/') {
			const char *p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			d = strtoul(p, &end, 10);
			if (errno || *end || d == 0 || d > 100000 || a > d)
				return -EINVAL;
			q.q.kind = AGREE_QUORUM_FRACTION;
			q.q.num = (uint32_t)a;
			q.q.den = (uint32_t)d;
		} else {
			return -EINVAL;
		}
	}
	if (agree_quorum_check(&q.q) < 0)
		return -EINVAL;
	*ret = q;
	return 0;
}
