/*
 * agent/agree.c: the agreement core. The rules and why they are safe are in agree.h; this file
 * only implements them. Logs are a few retained revisions and are walked with plain loops;
 * members and votes grow with the cluster, so a tally sorts temporary views of them
 * (O(N log N) instead of the O(N^2) of pairwise loops, see members_sorted) and falls back to
 * the plain loops, with the same result, if that allocation fails.
 */
#include "agent/agree/agree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	case AGREE_ENOREV:
		return "no such revision";
	case STORE_ECONDEMNED:
		return "artifact is condemned; needs force";
	default:
		return strerror(-err);
	}
}

/* ---- Quorum ------------------------------------------------------------------------------ */

int agree_quorum_check(const struct agree_quorum *q)
{
	if (!q)
		return -EINVAL;
	switch (q->kind) {
	case AGREE_QUORUM_MAJORITY:
		return 0;
	case AGREE_QUORUM_COUNT:
		return q->count >= 1 ? 0 : -EINVAL;
	case AGREE_QUORUM_FRACTION:
		return (q->den > 0 && q->num > 0 && q->num <= q->den) ? 0 : -EINVAL;
	}
	return -EINVAL;
}

uint32_t agree_quorum_size(const struct agree_quorum *q, uint32_t eligible)
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
	return sign(strncmp(a->reason, b->reason, sizeof(a->reason)));
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

/* ---- Voters and votes -------------------------------------------------------------------- */

static const struct agree_member *member_find(const struct agree_member *members,
					      size_t nmembers, const uint8_t id[STORE_NODE_ID_LEN])
{
	size_t i;

	for (i = 0; i < nmembers; i++)
		if (memcmp(members[i].id, id, STORE_NODE_ID_LEN) == 0)
			return &members[i];
	return NULL;
}

static bool member_eligible(const struct agree_member *m, const char *scope, uint64_t at_hlc)
{
	return m->state != AGREE_LEFT && agree_scope_includes(scope, m->site) &&
	       (m->joined_hlc == 0 || m->joined_hlc <= at_hlc);
}

static bool id_seen_before(const uint8_t (*ids)[STORE_NODE_ID_LEN], size_t i)
{
	size_t j;

	for (j = 0; j < i; j++)
		if (memcmp(ids[j], ids[i], STORE_NODE_ID_LEN) == 0)
			return true;
	return false;
}

/*
 * Sorted views for the large-cluster paths. A member view or a vote set of N entries made
 * the plain loops O(N^2) per tally, and a node re-tallies at every vote it receives: with 128
 * nodes on one host that was a visible part of a rollback's latency. These helpers give the
 * SAME answers in O(N log N); each needs one allocation and, when that fails, the caller
 * falls back to the plain loops (so the core still never fails for want of memory where it
 * did not before).
 */
struct mref {
	const uint8_t *id;
	size_t i;
};

static int mref_cmp(const void *a, const void *b)
{
	const struct mref *x = a, *y = b;
	int c = memcmp(x->id, y->id, STORE_NODE_ID_LEN);

	if (c)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* Members sorted by (id, index): the first of a run of equal ids is the id's first occurrence,
 * the one member_find() returns. NULL when @nmembers is 0 or on allocation failure. */
static struct mref *members_sorted(const struct agree_member *members, size_t nmembers)
{
	struct mref *m;
	size_t i;

	if (!nmembers)
		return NULL;
	m = malloc(nmembers * sizeof(*m));
	if (!m)
		return NULL;
	for (i = 0; i < nmembers; i++)
		m[i] = (struct mref){members[i].id, i};
	qsort(m, nmembers, sizeof(*m), mref_cmp);
	return m;
}

/* member_find() on the sorted view (lower bound of @id). */
static const struct agree_member *member_find_sorted(const struct agree_member *members,
						     const struct mref *m, size_t nmembers,
						     const uint8_t id[STORE_NODE_ID_LEN])
{
	size_t lo = 0, hi = nmembers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (memcmp(m[mid].id, id, STORE_NODE_ID_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < nmembers && memcmp(m[lo].id, id, STORE_NODE_ID_LEN) == 0)
		return &members[m[lo].i];
	return NULL;
}

static uint32_t eligible_count_sorted(const struct agree_member *members, const struct mref *m,
				      size_t nmembers, const char *scope, uint64_t at_hlc)
{
	uint32_t n = 0;
	size_t i;

	for (i = 0; i < nmembers; i++)
		if ((i == 0 || memcmp(m[i - 1].id, m[i].id, STORE_NODE_ID_LEN) != 0) &&
		    member_eligible(&members[m[i].i], scope, at_hlc))
			n++;
	return n;
}

uint32_t agree_eligible_count(const struct agree_member *members, size_t nmembers,
			      const char *scope, uint64_t at_hlc)
{
	uint32_t n = 0;
	size_t i, j;
	struct mref *m = nmembers > 16 ? members_sorted(members, nmembers) : NULL;

	if (m) {
		n = eligible_count_sorted(members, m, nmembers, scope, at_hlc);
		free(m);
		return n;
	}

	for (i = 0; i < nmembers; i++) {
		if (!member_eligible(&members[i], scope, at_hlc))
			continue;
		/* A view listing one id twice must not double its weight. */
		for (j = 0; j < i; j++)
			if (memcmp(members[j].id, members[i].id, STORE_NODE_ID_LEN) == 0)
				break;
		if (j == i)
			n++;
	}
	return n;
}

bool agree_is_eligible(const struct agree_member *members, size_t nmembers, const char *scope,
		       uint64_t at_hlc, const uint8_t id[STORE_NODE_ID_LEN])
{
	const struct agree_member *m = member_find(members, nmembers, id);

	return m && member_eligible(m, scope, at_hlc);
}

/* What a tally counts: votes on (service, rev) against @subject, by voters eligible in scope. */
struct tally_ctx {
	const struct agree_member *members;
	size_t nmembers;
	const char *service, *scope;
	uint64_t rev, subject;
	const struct agree_vote *votes;
	size_t nvotes;
};

static bool vote_matches(const struct agree_vote *v, const char *service, uint64_t rev)
{
	return v->v.rev == rev && strncmp(v->v.service, service, sizeof(v->v.service)) == 0;
}

/* Order among one voter's votes on one (service, rev): the earliest counts. */
static bool vote_earlier(const struct agree_vote *a, size_t ia, const struct agree_vote *b,
			 size_t ib)
{
	if (a->v.hlc != b->v.hlc)
		return a->v.hlc < b->v.hlc;
	if (a->target != b->target)
		return a->target < b->target;
	if (a->subject != b->subject)
		return a->subject < b->subject;
	return ia < ib;
}

/*
 * Does vote @i count (rule 3)? It must be about (service, rev) and the subject, come from an
 * eligible voter, and be that voter's first vote on (service, rev): the store keeps one per
 * voter; this is defence against a caller passing several.
 */
static bool vote_counts(const struct tally_ctx *c, size_t i)
{
	const struct agree_vote *v = &c->votes[i];
	size_t j;

	if (!vote_matches(v, c->service, c->rev) ||
	    (v->subject != AGREE_SUBJECT_ANY && v->subject != c->subject) ||
	    !agree_is_eligible(c->members, c->nmembers, c->scope, c->subject, v->v.voter))
		return false;
	for (j = 0; j < c->nvotes; j++)
		if (j != i && vote_matches(&c->votes[j], c->service, c->rev) &&
		    memcmp(c->votes[j].v.voter, v->v.voter, STORE_NODE_ID_LEN) == 0 &&
		    vote_earlier(&c->votes[j], j, v, i))
			return false;
	return true;
}

struct vref {
	const struct agree_vote *v;
	size_t i;
};

/* By voter, then vote_earlier(): the first of a voter's run is the vote that may count. */
static int vref_cmp(const void *a, const void *b)
{
	const struct vref *x = a, *y = b;
	int c = memcmp(x->v->v.voter, y->v->v.voter, STORE_NODE_ID_LEN);

	if (c)
		return c;
	if (x->i == y->i)
		return 0;
	return vote_earlier(x->v, x->i, y->v, y->i) ? -1 : 1;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * vote_counts() for every vote at once, into @counts (nvotes entries), and the tally, in
 * O((V + M) log(V + M)). Returns 0, or -ENOMEM (nothing computed: use the plain loops).
 */
static int tally_fast(const struct tally_ctx *c, const struct agree_quorum *q,
		      struct agree_tally *ret, bool *counts)
{
	struct agree_tally t = {0};
	struct mref *m = NULL;
	struct vref *vr = NULL;
	uint64_t *tg = NULL;
	size_t i, nm = 0, nt = 0;
	int r = -ENOMEM;

	if (c->nmembers && !(m = members_sorted(c->members, c->nmembers)))
		goto out;
	if (c->nvotes && (!(vr = malloc(c->nvotes * sizeof(*vr))) ||
			  !(tg = malloc(c->nvotes * sizeof(*tg)))))
		goto out;
	t.eligible = eligible_count_sorted(c->members, m, c->nmembers, c->scope, c->subject);
	t.quorum = agree_quorum_size(q, t.eligible);
	for (i = 0; i < c->nvotes; i++) {
		counts[i] = false;
		if (vote_matches(&c->votes[i], c->service, c->rev))
			vr[nm++] = (struct vref){&c->votes[i], i};
	}
	if (nm > 1)
		qsort(vr, nm, sizeof(*vr), vref_cmp);
	for (i = 0; i < nm; i++) {
		const struct agree_vote *v = vr[i].v;
		const struct agree_member *mb;

		if (i > 0 && memcmp(vr[i - 1].v->v.voter, v->v.voter, STORE_NODE_ID_LEN) == 0)
			continue;	/* a later vote of the same voter */
		if (v->subject != AGREE_SUBJECT_ANY && v->subject != c->subject)
			continue;
		mb = member_find_sorted(c->members, m, c->nmembers, v->v.voter);
		if (!mb || !member_eligible(mb, c->scope, c->subject))
			continue;
		counts[vr[i].i] = true;
		tg[nt++] = v->target;
	}
	t.counted = (uint32_t)nt;
	if (nt > 1)
		qsort(tg, nt, sizeof(*tg), u64_cmp);
	/* Leading target: more votes, then the smaller target (rule 4); ascending runs, so a
	 * tie keeps the smaller one seen first. */
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
	t.decided = t.target_votes >= t.quorum && t.target_votes > 0;
	*ret = t;
	r = 0;
out:
	free(m);
	free(vr);
	free(tg);
	return r;
}

static int tally(const struct tally_ctx *c, const struct agree_quorum *q, struct agree_tally *ret)
{
	struct agree_tally t = {0};
	size_t i, j;
	bool *counts = c->nvotes ? malloc(c->nvotes * sizeof(*counts)) : NULL;

	if (counts || !c->nvotes) {
		int r = tally_fast(c, q, ret, counts);

		free(counts);
		if (r == 0)
			return 0;
	}
	t.eligible = agree_eligible_count(c->members, c->nmembers, c->scope, c->subject);
	t.quorum = agree_quorum_size(q, t.eligible);
	for (i = 0; i < c->nvotes; i++) {
		uint64_t tg = c->votes[i].target;
		uint32_t cnt = 0;

		if (!vote_counts(c, i))
			continue;
		t.counted++;
		/* Count this target once, at its first counted vote. */
		for (j = 0; j < i; j++)
			if (c->votes[j].target == tg && vote_counts(c, j))
				break;
		if (j < i)
			continue;
		for (j = i; j < c->nvotes; j++)
			if (c->votes[j].target == tg && vote_counts(c, j))
				cnt++;
		/* Leading target: more votes, then the smaller target (rule 4). */
		if (cnt > t.target_votes || (cnt == t.target_votes && tg < t.target)) {
			t.target = tg;
			t.target_votes = cnt;
		}
	}
	t.decided = t.target_votes >= t.quorum && t.target_votes > 0;
	*ret = t;
	return 0;
}

int agree_tally(const struct agree_member *members, size_t nmembers,
		const struct agree_quorum *q, const char *service, uint64_t rev, const char *scope,
		uint64_t subject, const struct agree_vote *votes, size_t nvotes,
		struct agree_tally *ret)
{
	struct tally_ctx c = {members, nmembers, service, scope, rev, subject, votes, nvotes};

	if ((!members && nmembers) || (!votes && nvotes) || !service || !scope || !ret)
		return -EINVAL;
	return tally(&c, q, ret);
}

/* ---- Condemned artifacts ----------------------------------------------------------------- */

bool agree_is_condemned(const struct store_revision *log, size_t nlog,
			const struct store_id *artifact, uint64_t at_rev)
{
	uint64_t condemned_at = 0, named_at = 0;
	size_t i;

	/* Find the latest condemnation (a rollback at r condemns the winner at r - 1) and the
	 * latest later revision naming the artifact, both at or below @at_rev. */
	for (i = 0; i < nlog; i++) {
		const struct store_revision *w = &log[i], *bad;

		bool names = memcmp(w->artifact.b, artifact->b, STORE_ID_LEN) == 0;

		/* cheap tests first: most records neither name it nor are rollbacks */
		if (w->rev > at_rev || (!names && w->kind != STORE_REV_ROLLBACK) ||
		    agree_at(log, nlog, w->rev) != w)
			continue;
		if (names && w->rev > named_at)
			named_at = w->rev;
		if (w->kind != STORE_REV_ROLLBACK || w->rev < 2)
			continue;
		bad = agree_at(log, nlog, w->rev - 1);
		if (bad && bad->hlc + 1 == w->hlc &&
		    memcmp(bad->artifact.b, artifact->b, STORE_ID_LEN) == 0 &&
		    w->rev > condemned_at)
			condemned_at = w->rev;
	}
	/* The rollback itself names a different artifact; a revision after it naming this one
	 * (forced deploy, explicit --to) absolves it. */
	return condemned_at && named_at < condemned_at;
}

int agree_condemned_by(const struct store_revision *log, size_t nlog,
		       const struct store_revision *rollback, struct store_id *ret)
{
	const struct store_revision *bad;

	if (!rollback || rollback->kind != STORE_REV_ROLLBACK || rollback->rev < 2 || !ret)
		return -EINVAL;
	bad = agree_at(log, nlog, rollback->rev - 1);
	/* Only the record the quorum voted against (hlc + 1 names it) is condemned: if another
	 * record has since won that rev, nobody voted against its artifact. */
	if (!bad || bad->hlc + 1 != rollback->hlc)
		return -AGREE_ENOREV;
	*ret = bad->artifact;
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

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, STORE_NODE_ID_LEN);
}

int agree_decide(const struct store_revision *log, size_t nlog,
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const char *service, uint64_t bad_rev,
		 const struct agree_vote *votes, size_t nvotes, struct store_revision *ret)
{
	const struct store_revision *bad, *tw = NULL;
	struct tally_ctx c;
	struct agree_tally t;
	uint8_t(*cert)[STORE_NODE_ID_LEN] = NULL;
	uint32_t ncert = 0;
	bool *counts = NULL;
	size_t i;
	int r;

	if (!service || !ret || (!log && nlog) || (!votes && nvotes) || (!members && nmembers))
		return -EINVAL;
	bad = agree_at(log, nlog, bad_rev);
	if (!bad || bad_rev == 0 || bad_rev == UINT64_MAX ||
	    strncmp(bad->service, service, sizeof(bad->service)) != 0)
		return -AGREE_ENOREV;
	c = (struct tally_ctx){members, nmembers, service, bad->scope, bad_rev, bad->hlc,
			       votes, nvotes};
	/* which votes count, computed once (NULL: the plain loops below) */
	counts = nvotes ? malloc(nvotes * sizeof(*counts)) : NULL;
	if (counts && tally_fast(&c, q, &t, counts) < 0) {
		free(counts);
		counts = NULL;
	}
	if (!counts) {
		r = tally(&c, q, &t);
		if (r < 0)
			return r;
	}
	if (!t.decided) {
		free(counts);
		return -AGREE_ENOQUORUM;
	}
	if (t.target)
		r = explicit_target(log, nlog, bad, t.target, &tw);
	else
		r = agree_previous_good(log, nlog, bad_rev, &tw);
	if (r < 0) {
		free(counts);
		return r;
	}

	cert = malloc((size_t)t.target_votes * sizeof(*cert));
	if (!cert) {
		free(counts);
		return -ENOMEM;
	}
	for (i = 0; i < nvotes; i++)
		if (votes[i].target == t.target && (counts ? counts[i] : vote_counts(&c, i)))
			memcpy(cert[ncert++], votes[i].v.voter, STORE_NODE_ID_LEN);
	free(counts);
	/* One counted vote per voter, so no duplicates; sort for a canonical encoding. */
	qsort(cert, ncert, sizeof(*cert), id_cmp);

	memset(ret, 0, sizeof(*ret));
	memcpy(ret->service, bad->service, sizeof(ret->service));
	ret->service[sizeof(ret->service) - 1] = '\0';
	ret->rev = bad_rev + 1;
	ret->artifact = tw->artifact;
	ret->kind = STORE_REV_ROLLBACK;
	memcpy(ret->scope, bad->scope, sizeof(ret->scope));
	ret->scope[sizeof(ret->scope) - 1] = '\0';
	memcpy(ret->origin, agree_cluster_origin, STORE_NODE_ID_LEN);
	ret->hlc = bad->hlc + 1;
	ret->operator_uid = UINT32_MAX;
	ret->operator_pid = 0;
	if (t.target)
		snprintf(ret->reason, sizeof(ret->reason),
			 "cluster rollback of rev %llu to rev %llu (quorum)",
			 (unsigned long long)bad_rev, (unsigned long long)t.target);
	else
		snprintf(ret->reason, sizeof(ret->reason), "cluster rollback of rev %llu (quorum)",
			 (unsigned long long)bad_rev);
	ret->ncert = ncert;
	ret->cert = cert;
	return 0;
}

/* ---- Verification ------------------------------------------------------------------------ */

int agree_verify(const struct store_revision *log, size_t nlog,
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const struct store_revision *r)
{
	uint32_t i, good = 0, quorum, eligible;
	uint64_t at;

	if (!r || (!log && nlog) || (!members && nmembers))
		return -EINVAL;
	if (r->rev == 0 || !memchr(r->service, '\0', sizeof(r->service)) || !r->service[0] ||
	    !memchr(r->scope, '\0', sizeof(r->scope)) || !agree_scope_valid(r->scope) ||
	    !memchr(r->reason, '\0', sizeof(r->reason)) || (r->ncert && !r->cert))
		return -EBADMSG;
	if (r->kind == STORE_REV_DEPLOY)
		return r->ncert ? -EBADMSG : 0;
	if (r->kind != STORE_REV_ROLLBACK || r->rev < 2 || r->hlc == 0 ||
	    memcmp(r->origin, agree_cluster_origin, STORE_NODE_ID_LEN) != 0 ||
	    r->operator_uid != UINT32_MAX)
		return -EBADMSG;

	/* Deliberately no check against the bad revision held here: see agree.h rule 6. */
	/*
	 * Eligible as of the bad revision (hlc r->hlc - 1). A member that has LEFT since counts,
	 * on both sides of the fraction, when the certificate names it: it could only vote while
	 * it was a member, and without this a valid decision would turn invalid on every node
	 * that learns of the departure, and nodes holding it would never converge with nodes
	 * that refuse it (the simulator found this).
	 */
	at = r->hlc - 1;
	eligible = agree_eligible_count(members, nmembers, r->scope, at);
	for (i = 0; i < r->ncert; i++) {
		const struct agree_member *m = member_find(members, nmembers, r->cert[i]);
		bool left_voter;

		if (!m || id_seen_before((const uint8_t(*)[STORE_NODE_ID_LEN])r->cert, i))
			continue;
		left_voter = m->state == AGREE_LEFT && agree_scope_includes(r->scope, m->site) &&
			     (m->joined_hlc == 0 || m->joined_hlc <= at);
		if (left_voter)
			eligible++;
		if (left_voter || member_eligible(m, r->scope, at))
			good++;
	}
	quorum = agree_quorum_size(q, eligible);
	return good >= quorum ? 0 : -AGREE_ECERT;
}

int agree_accept(const struct store_revision *log, size_t nlog,
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const struct store_revision *incoming)
{
	const struct store_revision *held;
	int r;

	r = agree_verify(log, nlog, members, nmembers, q, incoming);
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
