/*
 * tests/unit/test_agent_agree.c: the agreement core (agent/agree.h), including the adversarial
 * cases: short or padded certificates, votes of strangers and of members that left, dead
 * members counting, concurrent writes at one rev under every arrival order, and two nodes with
 * different vote views writing the same decision.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/agree/agree.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static struct store_id art(uint8_t n)
{
	struct store_id id;

	memset(&id, 0, sizeof(id));
	id.b[0] = n;
	id.b[31] = 0xa5;
	return id;
}

static void node_id(uint8_t out[STORE_NODE_ID_LEN], uint8_t n)
{
	memset(out, 0, STORE_NODE_ID_LEN);
	out[0] = 0x10;
	out[15] = n;
}

static struct store_revision deploy(uint64_t rev, uint8_t artifact, const char *scope,
				    uint8_t origin, uint64_t hlc)
{
	struct store_revision r;

	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "web");
	r.rev = rev;
	r.artifact = art(artifact);
	r.kind = STORE_REV_DEPLOY;
	snprintf(r.scope, sizeof(r.scope), "%s", scope);
	node_id(r.origin, origin);
	r.hlc = hlc;
	r.operator_uid = 1000;
	r.operator_pid = 42;
	snprintf(r.reason, sizeof(r.reason), "deploy %llu", (unsigned long long)rev);
	return r;
}

/* Members 1..n, all alive, joined forever; sites alternate a/b when @sites. */
static size_t members(struct agree_member *m, size_t n, bool sites)
{
	size_t i;

	memset(m, 0, n * sizeof(*m));
	for (i = 0; i < n; i++) {
		node_id(m[i].id, (uint8_t)(i + 1));
		m[i].state = AGREE_ALIVE;
		m[i].site = sites ? (i % 2 ? "b" : "a") : NULL;
	}
	return n;
}

/* A health vote against the record with hlc @subject at @rev (base_log: rev r has hlc 100 r). */
static struct agree_vote vote_on(uint64_t rev, uint64_t subject, uint8_t voter, uint64_t hlc)
{
	struct agree_vote v;

	memset(&v, 0, sizeof(v));
	snprintf(v.v.service, sizeof(v.v.service), "web");
	v.v.rev = rev;
	node_id(v.v.voter, voter);
	v.v.reason = STORE_VOTE_HEALTH;
	v.v.hlc = hlc;
	v.subject = subject;
	return v;
}

static struct agree_vote vote(uint64_t rev, uint8_t voter, uint64_t hlc)
{
	return vote_on(rev, 100 * rev, voter, hlc);
}

/* A rollback record with an arbitrary certificate (heap, freed by the caller). */
static struct store_revision rollback_with_cert(uint64_t rev, uint8_t artifact, const char *scope,
						uint64_t hlc, const uint8_t *voters, size_t n)
{
	struct store_revision r;
	size_t i;

	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "web");
	r.rev = rev;
	r.artifact = art(artifact);
	r.kind = STORE_REV_ROLLBACK;
	snprintf(r.scope, sizeof(r.scope), "%s", scope);
	r.hlc = hlc;
	r.operator_uid = UINT32_MAX;
	r.ncert = (uint32_t)n;
	r.cert = calloc(n ? n : 1, STORE_NODE_ID_LEN);
	assert_non_null(r.cert);
	for (i = 0; i < n; i++)
		node_id(r.cert[i], voters[i]);
	return r;
}

/* A three-revision log: rev1 art 1, rev2 art 2, rev3 art 3 (the bad one). */
static size_t base_log(struct store_revision *log)
{
	log[0] = deploy(1, 1, "", 1, 100);
	log[1] = deploy(2, 2, "", 2, 200);
	log[2] = deploy(3, 3, "", 3, 300);
	return 3;
}

#define assert_err(expr, want)                                                                \
	do {                                                                                  \
		int got_ = (expr);                                                            \
		if (got_ != (want))                                                           \
			fail_msg("%s = %d (%s), want %d (%s)", #expr, got_,                   \
				 agree_strerror(got_), (want), agree_strerror(want));         \
	} while (0)

/* ---- quorum, scopes ---------------------------------------------------------------------- */

static void test_quorum_sizes(void **state)
{
	struct agree_quorum q = {0};
	uint32_t e;

	for (e = 0; e < 10; e++)
		assert_int_equal(agree_quorum_size(&q, e), e / 2 + 1);
	assert_int_equal(agree_quorum_size(NULL, 4), 3);
	q.kind = AGREE_QUORUM_COUNT;
	q.count = 3;
	assert_int_equal(agree_quorum_check(&q), 0);
	assert_int_equal(agree_quorum_size(&q, 9), 3);
	assert_int_equal(agree_quorum_size(&q, 2), 2); /* clamped to the eligible set */
	assert_int_equal(agree_quorum_size(&q, 0), 1); /* never 0 */
	q.count = 0;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	assert_int_equal(agree_quorum_size(&q, 9), 5); /* malformed: majority */
	q.kind = AGREE_QUORUM_FRACTION;
	q.num = 2;
	q.den = 3;
	assert_int_equal(agree_quorum_check(&q), 0);
	assert_int_equal(agree_quorum_size(&q, 9), 6);
	assert_int_equal(agree_quorum_size(&q, 10), 7);
	assert_int_equal(agree_quorum_size(&q, 1), 1);
	q.num = 4;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q.num = 1;
	q.den = 0;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q.kind = 77;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	assert_int_equal(agree_quorum_check(NULL), -EINVAL);
}

static void test_scopes(void **state)
{
	assert_true(agree_scope_valid(""));
	assert_true(agree_scope_valid("site:par-1.a_b"));
	assert_false(agree_scope_valid("site:"));
	assert_false(agree_scope_valid("site:a b"));
	assert_false(agree_scope_valid("zone:a"));
	assert_false(agree_scope_valid(NULL));
	assert_true(agree_scope_includes("", NULL));
	assert_true(agree_scope_includes("", "x"));
	assert_true(agree_scope_includes("site:x", "x"));
	assert_false(agree_scope_includes("site:x", "xy"));
	assert_false(agree_scope_includes("site:x", NULL));
	assert_false(agree_scope_includes("bogus", "x"));
	assert_true(agree_scope_covers("", "site:x"));
	assert_true(agree_scope_covers("site:x", "site:x"));
	assert_false(agree_scope_covers("site:x", ""));
	assert_false(agree_scope_covers("site:x", "site:y"));
}

/* ---- rule 1: one winner per rev ---------------------------------------------------------- */

static void test_order(void **state)
{
	struct store_revision a = deploy(4, 4, "", 1, 500), b = deploy(4, 5, "", 2, 500);
	uint8_t v[3] = {1, 2, 3};
	struct store_revision rb = rollback_with_cert(4, 2, "", 301, v, 3);
	struct store_revision rb2 = rollback_with_cert(4, 2, "", 301, v, 2);

	/* same hlc: origin decides */
	assert_true(agree_revision_cmp(&b, &a) > 0);
	assert_true(agree_revision_cmp(&a, &b) < 0);
	/* later hlc wins */
	a.hlc = 501;
	assert_true(agree_revision_cmp(&a, &b) > 0);
	/* a rollback beats any deploy, even a later one */
	assert_true(agree_revision_cmp(&rb, &a) > 0);
	assert_true(agree_revision_cmp(&a, &rb) < 0);
	/* same decision, different certificate: larger cert is kept, identity equal */
	assert_true(agree_revision_same(&rb, &rb2));
	assert_true(agree_revision_cmp(&rb, &rb2) > 0);
	assert_int_equal(agree_revision_cmp(&rb, &rb), 0);
	assert_false(agree_revision_same(&a, &b));
	free(rb.cert);
	free(rb2.cert);
}

/* Fold records one by one into a one-slot log, as an agent would with its store. */
static void fold(const struct store_revision *in, const int *order, size_t n,
		 const struct agree_member *m, size_t nm, struct store_revision *ret)
{
	struct store_revision held;
	size_t nheld = 0, i;

	for (i = 0; i < n; i++) {
		int r = agree_accept(&held, nheld, m, nm, NULL, &in[order[i]]);

		assert_true(r >= 0);
		if (r == AGREE_STORE) {
			assert_int_equal(nheld, 0);
			held = in[order[i]];
			nheld = 1;
		} else if (r == AGREE_REPLACE) {
			assert_int_equal(nheld, 1);
			held = in[order[i]];
		}
	}
	assert_int_equal(nheld, 1);
	*ret = held;
}

static bool next_perm(int *a, size_t n)
{
	size_t i, j;
	int t;

	if (n < 2)
		return false;
	i = n - 1;
	while (i > 0 && a[i - 1] >= a[i])
		i--;
	if (i == 0)
		return false;
	j = n - 1;
	while (a[j] <= a[i - 1])
		j--;
	t = a[i - 1];
	a[i - 1] = a[j];
	a[j] = t;
	for (j = n - 1; i < j; i++, j--) {
		t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
	return true;
}

/*
 * Property: concurrent records at one rev (deploys from different origins and hlcs, equal
 * hlcs, a duplicate, and two certificates of the same rollback) resolve to the same bytes under
 * all 7! = 5040 arrival orders.
 */
static void test_concurrent_same_rev_any_order(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	uint8_t v3[3] = {1, 2, 3}, v4[4] = {2, 3, 4, 5};
	struct store_revision in[7], first, got;
	int order[7] = {0, 1, 2, 3, 4, 5, 6};
	unsigned perms = 0;

	in[0] = deploy(4, 10, "", 1, 1000);
	in[1] = deploy(4, 11, "", 2, 1000);	     /* same hlc, higher origin */
	in[2] = deploy(4, 12, "site:a", 5, 999);    /* earlier */
	in[3] = deploy(4, 10, "", 1, 1000);	     /* duplicate of in[0] */
	in[4] = deploy(4, 13, "", 3, 1000);
	in[5] = rollback_with_cert(4, 2, "", 301, v3, 3);
	in[6] = rollback_with_cert(4, 2, "", 301, v4, 4);
	fold(in, order, 7, m, nm, &first);
	/* the rollback with the larger certificate */
	assert_ptr_equal(first.cert, in[6].cert);
	while (next_perm(order, 7)) {
		fold(in, order, 7, m, nm, &got);
		if (agree_revision_cmp(&got, &first) != 0)
			fail_msg("permutation %u resolved to artifact %u, want %u", perms,
				 got.artifact.b[0], first.artifact.b[0]);
		perms++;
	}
	assert_int_equal(perms, 5039);

	/* Without the rollbacks the deploys resolve by (hlc, origin): art 13 (origin 3). */
	{
		int o5[5] = {0, 1, 2, 3, 4};
		struct store_revision d0;

		fold(in, o5, 5, m, nm, &d0);
		assert_int_equal(d0.artifact.b[0], 13);
		while (next_perm(o5, 5)) {
			fold(in, o5, 5, m, nm, &got);
			assert_int_equal(agree_revision_cmp(&got, &d0), 0);
		}
	}
	free(in[5].cert);
	free(in[6].cert);
}

/* xorshift64*: deterministic randomness for the property test */
static uint64_t prng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/*
 * Property, randomised: 300 trials of 2..8 records at one rev drawn from a small space (so
 * hlcs, origins, artifacts and certificates collide, duplicates occur, rollbacks have valid
 * certificates of different sizes), each folded in 40 random arrival orders: the result is
 * always the same bytes, and it is the maximum of agree_revision_cmp.
 */
static void test_concurrent_same_rev_random(void **state)
{
	struct agree_member m[6];
	size_t nm = members(m, 6, false);
	uint64_t seed = 0xa9ee;
	int trial;

	for (trial = 0; trial < 300; trial++) {
		struct store_revision in[8], first, got;
		int order[8], n = 2 + (int)(prng(&seed) % 7), i, k;
		const struct store_revision *max = NULL;

		for (i = 0; i < n; i++) {
			if (prng(&seed) % 4 == 0) {
				uint8_t v[6] = {1, 2, 3, 4, 5, 6};
				size_t nc = 4 + prng(&seed) % 3; /* quorum of 6 is 4 */

				in[i] = rollback_with_cert(4, (uint8_t)(prng(&seed) % 3), "",
							   301 + prng(&seed) % 2, v + (6 - nc), nc);
			} else {
				const char *scope = prng(&seed) % 2 ? "" : "site:a";

				in[i] = deploy(4, (uint8_t)(prng(&seed) % 4), scope,
					       (uint8_t)(prng(&seed) % 3), 1000 + prng(&seed) % 3);
				in[i].ncert = 0;
				in[i].cert = NULL;
			}
			if (i && prng(&seed) % 5 == 0) { /* an exact duplicate */
				free(in[i].cert);
				in[i] = in[i - 1];
				in[i].cert = NULL;
				if (in[i - 1].ncert) {
					size_t len = in[i].ncert * (size_t)STORE_NODE_ID_LEN;

					in[i].cert = malloc(len);
					assert_non_null(in[i].cert);
					memcpy(in[i].cert, in[i - 1].cert, len);
				}
			}
			if (!max || agree_revision_cmp(&in[i], max) > 0)
				max = &in[i];
		}
		for (k = 0; k < 40; k++) {
			for (i = 0; i < n; i++)
				order[i] = i;
			for (i = n - 1; i > 0; i--) {
				int j = (int)(prng(&seed) % (uint64_t)(i + 1)), t = order[i];

				order[i] = order[j];
				order[j] = t;
			}
			fold(in, order, (size_t)n, m, nm, k ? &got : &first);
			if (k && agree_revision_cmp(&got, &first) != 0)
				fail_msg("trial %d order %d: resolved differently", trial, k);
		}
		assert_int_equal(agree_revision_cmp(&first, max), 0);
		for (i = 0; i < n; i++)
			free(in[i].cert);
	}
}

/* ---- rule 2: desired revision ------------------------------------------------------------ */

static void test_desired_with_sites(void **state)
{
	struct store_revision log[6];
	size_t n = 0;

	log[n++] = deploy(1, 1, "", 1, 100);
	log[n++] = deploy(2, 2, "site:a", 1, 200);
	log[n++] = deploy(3, 3, "site:b", 1, 300);
	assert_int_equal(agree_desired(log, n, "a")->rev, 2);
	assert_int_equal(agree_desired(log, n, "b")->rev, 3);
	assert_int_equal(agree_desired(log, n, "c")->rev, 1);
	assert_int_equal(agree_desired(log, n, NULL)->rev, 1);
	assert_null(agree_desired(log, 0, "a"));
	/* A loser at rev 4 scoped to site c does not make rev 4 desired there: the winner is
	 * scoped to site a. */
	log[n++] = deploy(4, 4, "site:c", 1, 400);
	log[n++] = deploy(4, 5, "site:a", 2, 400);
	assert_int_equal(agree_desired(log, n, "c")->rev, 1);
	assert_int_equal(agree_desired(log, n, "a")->artifact.b[0], 5);
	assert_ptr_equal(agree_at(log, n, 4), &log[4]);
	assert_null(agree_at(log, n, 9));
}

/* ---- rule 3/4: eligibility and tally ----------------------------------------------------- */

static void test_eligibility(void **state)
{
	struct agree_member m[6];
	size_t nm = members(m, 6, true);
	uint8_t stranger[STORE_NODE_ID_LEN];

	m[0].state = AGREE_DEAD;
	m[1].state = AGREE_SUSPECT;
	m[2].state = AGREE_LEFT;
	assert_int_equal(agree_eligible_count(m, nm, "", UINT64_MAX), 5);
	/* site a: 1 dead, 3 left, 5 alive */
	assert_int_equal(agree_eligible_count(m, nm, "site:a", UINT64_MAX), 2);
	assert_int_equal(agree_eligible_count(m, nm, "site:b", UINT64_MAX), 3);
	assert_int_equal(agree_eligible_count(m, nm, "site:zz", UINT64_MAX), 0);
	assert_true(agree_is_eligible(m, nm, "", UINT64_MAX, m[0].id));  /* dead counts */
	assert_true(agree_is_eligible(m, nm, "", UINT64_MAX, m[1].id));  /* suspect counts */
	assert_false(agree_is_eligible(m, nm, "", UINT64_MAX, m[2].id)); /* left does not */
	assert_false(agree_is_eligible(m, nm, "site:b", UINT64_MAX, m[0].id));
	node_id(stranger, 99);
	assert_false(agree_is_eligible(m, nm, "", UINT64_MAX, stranger));
	/* a view listing one id twice counts it once */
	m[5] = m[4];
	assert_int_equal(agree_eligible_count(m, nm, "", UINT64_MAX), 4);
}

/*
 * Reference model of rule 3/4 counting, written as the plain pairwise loops the core used
 * before it sorted its inputs: a member's eligibility is its FIRST listing's, an id listed
 * twice counts once, a voter's earliest vote on (service, rev) is the one that may count.
 */
static bool ref_member_eligible(const struct agree_member *m, const char *scope, uint64_t at)
{
	return m->state != AGREE_LEFT && agree_scope_includes(scope, m->site) &&
	       (m->joined_hlc == 0 || m->joined_hlc <= at);
}

static const struct agree_member *ref_find(const struct agree_member *m, size_t nm,
					   const uint8_t *id)
{
	for (size_t i = 0; i < nm; i++)
		if (memcmp(m[i].id, id, STORE_NODE_ID_LEN) == 0)
			return &m[i];
	return NULL;
}

static bool ref_earlier(const struct agree_vote *a, size_t ia, const struct agree_vote *b,
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

static bool ref_counts(const struct agree_member *m, size_t nm, const char *scope, uint64_t rev,
		       uint64_t subject, const struct agree_vote *v, size_t nv, size_t i)
{
	const struct agree_member *mb;

	if (v[i].v.rev != rev || strcmp(v[i].v.service, "web") != 0 ||
	    (v[i].subject != AGREE_SUBJECT_ANY && v[i].subject != subject))
		return false;
	mb = ref_find(m, nm, v[i].v.voter);
	if (!mb || !ref_member_eligible(mb, scope, subject))
		return false;
	for (size_t j = 0; j < nv; j++)
		if (j != i && v[j].v.rev == rev && strcmp(v[j].v.service, "web") == 0 &&
		    memcmp(v[j].v.voter, v[i].v.voter, STORE_NODE_ID_LEN) == 0 &&
		    ref_earlier(&v[j], j, &v[i], i))
			return false;
	return true;
}

static void test_tally_matches_reference_model(void **state)
{
	enum { NM = 90, NV = 160 };
	static struct agree_member m[NM];
	static struct agree_vote v[NV];
	uint64_t seed = 0x5eed;

	(void)state;
	for (int round = 0; round < 300; round++) {
		size_t nm = 1 + prng(&seed) % NM, nv = prng(&seed) % NV;
		const char *scope = prng(&seed) % 3 ? "" : "site:a";
		uint64_t rev = 3, subject = 300;
		uint32_t elig = 0;
		struct agree_tally t;

		memset(m, 0, sizeof(m));
		for (size_t i = 0; i < nm; i++) {
			/* few distinct ids, so that duplicates are common in big views */
			node_id(m[i].id, (uint8_t)(1 + prng(&seed) % (nm < 40 ? 60 : 200)));
			m[i].state = (enum agree_member_state)(prng(&seed) % 4);
			m[i].site = prng(&seed) % 2 ? "a" : "b";
			m[i].joined_hlc = prng(&seed) % 5 == 0 ? 250 + prng(&seed) % 100 : 0;
		}
		for (size_t i = 0; i < nv; i++) {
			v[i] = vote_on(prng(&seed) % 4 ? rev : 2, prng(&seed) % 3 ? subject : 1,
				       (uint8_t)(1 + prng(&seed) % 220), 1 + prng(&seed) % 40);
			if (prng(&seed) % 5 == 0)
				v[i].subject = AGREE_SUBJECT_ANY;
			v[i].target = prng(&seed) % 3 == 0 ? 1 + prng(&seed) % 2 : 0;
		}
		/* eligible count */
		for (size_t i = 0; i < nm; i++) {
			size_t j;

			for (j = 0; j < i; j++)
				if (memcmp(m[j].id, m[i].id, STORE_NODE_ID_LEN) == 0)
					break;
			if (j == i && ref_member_eligible(&m[i], scope, subject))
				elig++;
		}
		assert_int_equal(agree_eligible_count(m, nm, scope, subject), elig);
		assert_int_equal(agree_tally(m, nm, NULL, "web", rev, scope, subject, v, nv, &t),
				 0);
		assert_int_equal(t.eligible, elig);
		/* counted votes and the leading target */
		uint32_t counted = 0, best = 0;
		uint64_t best_tg = 0;
		for (size_t i = 0; i < nv; i++) {
			uint32_t cnt = 0;

			if (!ref_counts(m, nm, scope, rev, subject, v, nv, i))
				continue;
			counted++;
			for (size_t j = 0; j < nv; j++)
				if (v[j].target == v[i].target &&
				    ref_counts(m, nm, scope, rev, subject, v, nv, j))
					cnt++;
			if (cnt > best || (cnt == best && v[i].target < best_tg)) {
				best = cnt;
				best_tg = v[i].target;
			}
		}
		assert_int_equal(t.counted, counted);
		assert_int_equal(t.target_votes, best);
		if (best)
			assert_int_equal(t.target, best_tg);
		assert_int_equal(t.quorum, agree_quorum_size(NULL, elig));
		assert_int_equal(t.decided, best > 0 && best >= t.quorum);
	}
}

static void test_tally_ignores_strangers_left_duplicates(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct agree_vote v[9];
	struct store_revision other = deploy(1, 1, "", 1, 1);
	struct agree_tally t;
	size_t n = 0;

	(void)other;
	m[4].state = AGREE_LEFT; /* eligible: 1..4, quorum 3 */
	v[n++] = vote(3, 1, 10);
	v[n++] = vote(3, 1, 11);  /* duplicate voter */
	v[n++] = vote(3, 77, 12); /* stranger */
	v[n++] = vote(3, 5, 13);  /* left member */
	v[n++] = vote(2, 2, 14);  /* another rev */
	v[n] = vote(3, 3, 15);
	snprintf(v[n].v.service, sizeof(v[n].v.service), "db"); /* another service */
	n++;
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 300, v, n, &t), 0);
	assert_int_equal(t.eligible, 4);
	assert_int_equal(t.quorum, 3);
	assert_int_equal(t.counted, 1);
	assert_false(t.decided);
	v[n++] = vote(3, 2, 16);
	v[n++] = vote(3, 4, 17);
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 300, v, n, &t), 0);
	assert_int_equal(t.counted, 3);
	assert_int_equal(t.target_votes, 3);
	assert_true(t.decided);
	assert_int_equal(agree_tally(NULL, 1, NULL, "web", 3, "", 300, v, n, &t), -EINVAL);
}

/* Dead members count: a partition's minority never decides, even unanimously. */
static void test_minority_cannot_decide(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct store_revision log[3], out;
	struct agree_vote v[2];
	size_t nl = base_log(log);

	/* The minority side {4, 5} sees 1..3 as dead. */
	m[0].state = m[1].state = m[2].state = AGREE_DEAD;
	v[0] = vote(3, 4, 400);
	v[1] = vote(3, 5, 401);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 2, &out),
		   -AGREE_ENOQUORUM);
	/* with one of the majority's votes it does */
	{
		struct agree_vote v3[3] = {v[0], v[1], vote(3, 1, 402)};

		assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v3, 3, &out), 0);
		free(out.cert);
	}
}

/*
 * Votes are bound to the record they condemn. Node X holds deploy D (hlc 300) at rev 3, node Y
 * holds a concurrent deploy E (hlc 310) that will win. Votes against D never count against E:
 * whichever record a node holds, at most one of the two can reach a majority, so no two
 * different rollbacks of rev 3 can be written.
 */
static void test_subject_binds_votes(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct store_revision lx[3], ly[3], out;
	struct agree_vote v[5] = {vote_on(3, 300, 1, 1), vote_on(3, 300, 2, 2),
				  vote_on(3, 310, 3, 3), vote_on(3, 310, 4, 4),
				  vote_on(3, 310, 5, 5)};
	struct agree_tally t;
	int decided = 0;

	base_log(lx);
	base_log(ly);
	ly[2] = deploy(3, 9, "", 4, 310);
	/* X counts 2 of 5 against D: no decision; Y counts 3 against E: decides */
	if (agree_decide(lx, 3, m, nm, NULL, "web", 3, v, 5, &out) == 0) {
		decided++;
		free(out.cert);
	}
	assert_err(agree_decide(lx, 3, m, nm, NULL, "web", 3, v, 5, &out), -AGREE_ENOQUORUM);
	assert_err(agree_decide(ly, 3, m, nm, NULL, "web", 3, v, 5, &out), 0);
	decided++;
	assert_int_equal(out.ncert, 3);
	free(out.cert);
	assert_int_equal(decided, 1);
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 300, v, 5, &t), 0);
	assert_int_equal(t.counted, 2);
	/* votes of a store without the subject count against whatever is held */
	v[0].subject = v[1].subject = AGREE_SUBJECT_ANY;
	v[2].subject = 1234;
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 310, v, 5, &t), 0);
	assert_int_equal(t.counted, 4);
	/* a voter's second vote (another subject) does not count twice: the first one counts */
	v[0] = vote_on(3, 310, 4, 1); /* voter 4 again, earlier */
	v[1] = vote_on(3, 300, 5, 9); /* voter 5 again, later, other subject */
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 310, v, 5, &t), 0);
	assert_int_equal(t.counted, 2); /* voter 4 (first vote) and voter 5 (its first vote) */
}

/* ---- rule 5: the rollback record -------------------------------------------------------- */

static void test_decide_record(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct store_revision log[3], out;
	struct agree_vote v[3] = {vote(3, 5, 900), vote(3, 2, 901), vote(3, 4, 950)};
	uint8_t id[STORE_NODE_ID_LEN];
	size_t nl = base_log(log);
	struct store_id a2 = art(2);

	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 2, &out),
		   -AGREE_ENOQUORUM);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 3, &out), 0);
	assert_string_equal(out.service, "web");
	assert_int_equal(out.rev, 4);
	assert_int_equal(out.kind, STORE_REV_ROLLBACK);
	assert_memory_equal(out.artifact.b, a2.b, STORE_ID_LEN);
	assert_string_equal(out.scope, "");
	assert_memory_equal(out.origin, agree_cluster_origin, STORE_NODE_ID_LEN);
	assert_int_equal(out.hlc, 301);
	assert_int_equal(out.operator_uid, UINT32_MAX);
	assert_string_equal(out.reason, "cluster rollback of rev 3 (quorum)");
	assert_int_equal(out.ncert, 3);
	/* sorted */
	node_id(id, 2);
	assert_memory_equal(out.cert[0], id, STORE_NODE_ID_LEN);
	node_id(id, 4);
	assert_memory_equal(out.cert[1], id, STORE_NODE_ID_LEN);
	node_id(id, 5);
	assert_memory_equal(out.cert[2], id, STORE_NODE_ID_LEN);
	/* its own record verifies */
	assert_err(agree_verify(log, nl, m, nm, NULL, &out), 0);
	assert_err(agree_accept(log, nl, m, nm, NULL, &out), AGREE_STORE);
	free(out.cert);
	/* unknown service / rev */
	assert_err(agree_decide(log, nl, m, nm, NULL, "db", 3, v, 3, &out), -AGREE_ENOREV);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 8, v, 3, &out), -AGREE_ENOREV);
	assert_err(agree_decide(log, nl, m, nm, NULL, NULL, 3, v, 3, &out), -EINVAL);
}

/*
 * Two nodes see different supersets of a quorum (and the second sees the votes in another
 * order): they write the same decision; merged in either order both keep the same bytes.
 */
static void test_two_views_same_decision(void **state)
{
	struct agree_member m[7];
	size_t nm = members(m, 7, false);
	struct store_revision log[4], r1, r2, k1, k2;
	struct agree_vote va[4] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12), vote(3, 4, 13)};
	struct agree_vote vb[5] = {vote(3, 7, 20), vote(3, 6, 19), vote(3, 4, 13), vote(3, 3, 12),
				   vote(3, 5, 18)};
	size_t nl = base_log(log);
	int r;

	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, va, 4, &r1), 0);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, vb, 5, &r2), 0);
	assert_true(agree_revision_same(&r1, &r2));
	assert_int_equal(r1.ncert, 4);
	assert_int_equal(r2.ncert, 5);
	/* node 1 holds r1 and receives r2; node 2 holds r2 and receives r1 */
	log[nl] = r1;
	r = agree_accept(log, nl + 1, m, nm, NULL, &r2);
	assert_err(r, AGREE_REPLACE);
	k1 = r2;
	log[nl] = r2;
	r = agree_accept(log, nl + 1, m, nm, NULL, &r1);
	assert_err(r, AGREE_KEEP);
	k2 = r2;
	assert_int_equal(agree_revision_cmp(&k1, &k2), 0);
	free(r1.cert);
	free(r2.cert);
}

static void test_previous_good_walk(void **state)
{
	struct store_revision log[8];
	const struct store_revision *w;
	uint8_t v[3] = {1, 2, 3};
	size_t n = 0;

	log[n++] = deploy(1, 1, "", 1, 100);
	log[n++] = deploy(2, 2, "", 1, 200);
	log[n++] = deploy(3, 3, "", 1, 300);
	/* rev 3 rolled back: art 3 condemned */
	log[n++] = rollback_with_cert(4, 2, "", 301, v, 3);
	log[n++] = deploy(5, 3, "site:a", 1, 500);  /* forced redeploy of art 3, site a only */
	log[n++] = deploy(6, 9, "site:b", 1, 600);  /* other site: does not cover site a */
	log[n++] = deploy(7, 2, "site:a", 1, 700);  /* the bad one: art 2 */
	/* previous good of rev 7 (site a): rev 6 wrong scope, rev 5 art 3 (absolved by the
	 * forced redeploy at 5), so rev 5 */
	assert_err(agree_previous_good(log, n, 7, &w), 0);
	assert_int_equal(w->rev, 5);
	/* of rev 5: rev 4 art 2 ok */
	assert_err(agree_previous_good(log, n, 5, &w), 0);
	assert_int_equal(w->rev, 4);
	/* of rev 3: rev 2 */
	assert_err(agree_previous_good(log, n, 3, &w), 0);
	assert_int_equal(w->rev, 2);
	/* of rev 1: nothing */
	assert_err(agree_previous_good(log, n, 1, &w), -AGREE_ENOTARGET);
	assert_err(agree_previous_good(log, n, 42, &w), -AGREE_ENOREV);
	/* a hole (rev 5 missing) on the way: wait instead of guessing rev 4 */
	log[4] = log[--n];
	assert_err(agree_previous_good(log, n, 7, &w), -AGREE_EGAP);
	free(log[3].cert);
}

/* The bad artifact also at earlier revs, and condemned ones, are skipped; oldest held bound. */
static void test_previous_good_skips_condemned(void **state)
{
	struct store_revision log[6];
	const struct store_revision *w;
	uint8_t v[3] = {1, 2, 3};
	size_t n = 0;

	log[n++] = deploy(2, 1, "", 1, 100); /* the oldest held (rev 1 pruned) */
	log[n++] = deploy(3, 2, "", 1, 200);
	log[n++] = rollback_with_cert(4, 1, "", 201, v, 3); /* condemns art 2 */
	log[n++] = deploy(5, 5, "", 1, 400);
	log[n++] = deploy(6, 1, "", 1, 500); /* bad: art 1 */
	/* 5: art 5 fine */
	assert_err(agree_previous_good(log, n, 6, &w), 0);
	assert_int_equal(w->rev, 5);
	/* make 5 the same artifact as the bad one: then 4 (art 1 = bad), 3 (art 2 condemned),
	 * 2 (art 1 = bad): nothing, and the walk stops at the oldest rev held */
	log[3].artifact = art(1);
	assert_err(agree_previous_good(log, n, 6, &w), -AGREE_ENOTARGET);
	free(log[2].cert);
}

/* ---- operator targets (--to) ------------------------------------------------------------- */

static void test_explicit_target(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct store_revision log[3], out;
	struct agree_vote v[5] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12), vote(3, 4, 13),
				  vote(3, 5, 14)};
	const uint64_t tg[5] = {1, 1, 0, 0, 1};
	size_t nl = base_log(log);
	struct store_id a1 = art(1);
	struct agree_tally t;
	int i;

	for (i = 0; i < 5; i++)
		v[i].target = tg[i];

	/* 2 votes for "to 1", 2 for default: no target has 3 */
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 4, &out), -AGREE_ENOQUORUM);
	assert_int_equal(agree_tally(m, nm, NULL, "web", 3, "", 300, v, 4, &t), 0);
	assert_int_equal(t.counted, 4);
	assert_int_equal(t.target_votes, 2);
	assert_int_equal(t.target, 0); /* tie: smaller target leads */
	assert_false(t.decided);
	/* the fifth votes "to 1" */
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 5, &out), 0);
	assert_memory_equal(out.artifact.b, a1.b, STORE_ID_LEN);
	assert_string_equal(out.reason, "cluster rollback of rev 3 to rev 1 (quorum)");
	assert_int_equal(out.ncert, 3);
	free(out.cert);
	/* a target that is not usable */
	v[0].target = v[1].target = v[4].target = 3;
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 5, &out), -AGREE_EMISMATCH);
	v[0].target = v[1].target = v[4].target = 7;
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 5, &out), -AGREE_EMISMATCH);
	log[0].rev = 0; /* "rev 1 missing" */
	v[0].target = v[1].target = v[4].target = 1;
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 5, &out), -AGREE_ENOREV);
}

/* ---- rule 6: verification ---------------------------------------------------------------- */

static void test_verify_certificates(void **state)
{
	struct agree_member m[5];
	size_t nm = members(m, 5, false);
	struct store_revision log[3], r;
	size_t nl = base_log(log);
	uint8_t ok[3] = {1, 2, 3}, few[2] = {1, 2}, padded[4] = {1, 1, 2, 2};
	uint8_t strangers[4] = {1, 2, 60, 61}, with_left[3] = {1, 2, 5};

	r = rollback_with_cert(4, 2, "", 301, ok, 3);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), 0);
	free(r.cert);
	/* too few */
	r = rollback_with_cert(4, 2, "", 301, few, 2);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
	assert_err(agree_accept(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
	free(r.cert);
	/* padded with duplicates */
	r = rollback_with_cert(4, 2, "", 301, padded, 4);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
	free(r.cert);
	/* padded with non-members */
	r = rollback_with_cert(4, 2, "", 301, strangers, 4);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
	free(r.cert);
	/* A member that left after voting: its vote stays valid (and it stays in the eligible
	 * set for this certificate), so a decision does not turn invalid when views learn of the
	 * departure: {1, 2, 5} of {1..4} + 5 = 3 of 5. */
	m[4].state = AGREE_LEFT;
	r = rollback_with_cert(4, 2, "", 301, with_left, 3);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), 0);
	m[4].state = AGREE_DEAD; /* dead still counts as a voter */
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), 0);
	free(r.cert);
	/* ...but a departed member never tips a short certificate: {1, 5} is 2 of 5 */
	m[4].state = AGREE_LEFT;
	r = rollback_with_cert(4, 2, "", 301, with_left + 1, 2);
	r.cert[0][15] = 1;
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
	free(r.cert);
	/* and a LEFT member never counts when deciding: 1, 2, 5 voting is 2 of 4 */
	{
		struct agree_vote lv[3] = {vote(3, 1, 1), vote(3, 2, 2), vote(3, 5, 3)};
		struct store_revision out;

		assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, lv, 3, &out),
			   -AGREE_ENOQUORUM);
	}
	m[4].state = AGREE_ALIVE;
	/* members that joined after the bad revision (hlc 300) do not count: 5 joined at 400,
	 * so {1, 2, 3} is 3 of 4; and a certificate naming only late joiners is refused */
	m[4].joined_hlc = 400;
	m[3].joined_hlc = 300; /* at the revision's own stamp: counts */
	r = rollback_with_cert(4, 2, "", 301, ok, 3);
	assert_err(agree_verify(log, nl, m, nm, NULL, &r), 0);
	free(r.cert);
	assert_int_equal(agree_eligible_count(m, nm, "", 300), 4);
	assert_int_equal(agree_eligible_count(m, nm, "", 299), 3);
	{
		uint8_t late[2] = {5, 5};

		r = rollback_with_cert(4, 2, "", 301, late, 2);
		assert_err(agree_verify(log, nl, m, nm, NULL, &r), -AGREE_ECERT);
		free(r.cert);
	}
	m[3].joined_hlc = m[4].joined_hlc = 0;
	/* a stricter quorum configured */
	{
		struct agree_quorum q = {.kind = AGREE_QUORUM_COUNT, .count = 4};

		r = rollback_with_cert(4, 2, "", 301, ok, 3);
		assert_err(agree_verify(log, nl, m, nm, &q, &r), -AGREE_ECERT);
		free(r.cert);
	}
}

static void test_verify_malformed(void **state)
{
	struct agree_member m[3];
	size_t nm = members(m, 3, false);
	uint8_t ok[3] = {1, 2, 3};
	struct store_revision r, d = deploy(2, 2, "", 1, 1);

	r = rollback_with_cert(4, 2, "", 301, ok, 3);
	r.origin[3] = 1;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.origin[3] = 0;
	r.operator_uid = 0;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.operator_uid = UINT32_MAX;
	snprintf(r.scope, sizeof(r.scope), "site:");
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.scope[0] = 0;
	r.rev = 1;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.rev = 4;
	r.hlc = 0;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.hlc = 301;
	r.kind = 9;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.kind = STORE_REV_ROLLBACK;
	memset(r.service, 'x', sizeof(r.service)); /* unterminated */
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.service[0] = 0;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	snprintf(r.service, sizeof(r.service), "web");
	free(r.cert);
	r.cert = NULL;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -EBADMSG);
	r.ncert = 0;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &r), -AGREE_ECERT);
	/* deploys: well-formed only, never with a certificate */
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &d), 0);
	d.ncert = 1;
	d.cert = (uint8_t(*)[STORE_NODE_ID_LEN])ok;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &d), -EBADMSG);
	d.ncert = 0;
	d.rev = 0;
	assert_err(agree_verify(NULL, 0, m, nm, NULL, &d), -EBADMSG);
	assert_err(agree_verify(NULL, 0, m, nm, NULL, NULL), -EINVAL);
}

/* ---- site scope -------------------------------------------------------------------------- */

static void test_site_quorum(void **state)
{
	struct agree_member m[7];
	size_t nm = members(m, 7, true); /* site a: 1,3,5,7; site b: 2,4,6 */
	struct store_revision log[3], out;
	struct agree_vote v[6] = {vote(3, 2, 1), vote(3, 4, 2), vote(3, 6, 3), vote(3, 1, 4),
				  vote(3, 3, 5), vote(3, 5, 6)};
	size_t nl = base_log(log);
	uint8_t site_b[3] = {2, 4, 6}, site_a[3] = {1, 3, 5};

	snprintf(log[2].scope, sizeof(log[2].scope), "site:a");
	/* all of site b voting means nothing for a site-a revision */
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 3, &out),
		   -AGREE_ENOQUORUM);
	/* site a has 4 members: quorum 3 */
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 5, &out),
		   -AGREE_ENOQUORUM);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 6, &out), 0);
	assert_string_equal(out.scope, "site:a");
	assert_int_equal(out.ncert, 3);
	free(out.cert);
	{
		struct store_revision rb = rollback_with_cert(4, 2, "site:a", 301, site_b, 3);
		struct store_revision ra = rollback_with_cert(4, 2, "site:a", 301, site_a, 3);

		assert_err(agree_verify(log, nl, m, nm, NULL, &rb), -AGREE_ECERT);
		assert_err(agree_verify(log, nl, m, nm, NULL, &ra), 0);
		free(rb.cert);
		free(ra.cert);
	}
}

/* ---- rule 7: condemned ------------------------------------------------------------------- */

static void test_condemned(void **state)
{
	struct agree_member m[3];
	size_t nm = members(m, 3, false);
	struct store_revision log[6], out;
	struct agree_vote v[2] = {vote(3, 1, 1), vote(3, 2, 2)};
	size_t nl = base_log(log);
	struct store_id a3 = art(3), a2 = art(2), got;

	assert_false(agree_is_condemned(log, nl, &a3, UINT64_MAX));
	assert_err(agree_check_deploy(log, nl, &a3, false), 0);
	assert_err(agree_decide(log, nl, m, nm, NULL, "web", 3, v, 2, &out), 0);
	log[nl++] = out;
	assert_err(agree_condemned_by(log, nl, &out, &got), 0);
	assert_memory_equal(got.b, a3.b, STORE_ID_LEN);
	assert_err(agree_condemned_by(log, nl, &log[0], &got), -EINVAL);
	assert_true(agree_is_condemned(log, nl, &a3, UINT64_MAX));
	assert_false(agree_is_condemned(log, nl, &a3, 3)); /* not yet as of rev 3 */
	assert_false(agree_is_condemned(log, nl, &a2, UINT64_MAX));
	assert_err(agree_check_deploy(log, nl, &a3, false), -STORE_ECONDEMNED);
	assert_err(agree_check_deploy(log, nl, &a3, true), 0);
	assert_string_equal(agree_strerror(-STORE_ECONDEMNED),
			    "artifact is condemned; needs force");
	/* forced redeploy absolves it */
	log[nl++] = deploy(5, 3, "", 1, 600);
	assert_false(agree_is_condemned(log, nl, &a3, UINT64_MAX));
	assert_true(agree_is_condemned(log, nl, &a3, 4));
	free(out.cert);
}

/* ---- rule 8: local rollback -------------------------------------------------------------- */

static void test_local_rollback(void **state)
{
	struct store_revision log[5];
	struct agree_local loc;
	struct store_id got, a2 = art(2), a3 = art(3), a7 = art(7), a1 = art(1);
	size_t nl = base_log(log);

	assert_err(agree_effective(log, nl, NULL, NULL, &got), 0);
	assert_memory_equal(got.b, a3.b, STORE_ID_LEN);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 0, 999, &loc), 0);
	assert_int_equal(loc.base_rev, 3);
	assert_int_equal(loc.target_rev, 2);
	assert_memory_equal(loc.artifact.b, a2.b, STORE_ID_LEN);
	assert_err(agree_effective(log, nl, NULL, &loc, &got), 1);
	assert_memory_equal(got.b, a2.b, STORE_ID_LEN);
	/* no cluster revision was created */
	assert_int_equal(agree_desired(log, nl, NULL)->rev, 3);
	/* --to 1 */
	assert_err(agree_local_rollback(log, nl, "web", NULL, 1, 999, &loc), 0);
	assert_memory_equal(loc.artifact.b, a1.b, STORE_ID_LEN);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 3, 999, &loc), -AGREE_EMISMATCH);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 0, 999, NULL), -EINVAL);
	assert_err(agree_local_rollback(log, 0, "web", NULL, 0, 999, &loc), -AGREE_ENOREV);
	/* the cluster moves on: the marker is stale, follow the cluster */
	log[nl++] = deploy(4, 7, "", 1, 900);
	assert_err(agree_effective(log, nl, NULL, &loc, &got), 0);
	assert_memory_equal(got.b, a7.b, STORE_ID_LEN);
	/* nothing desired at all */
	assert_err(agree_effective(log, 0, NULL, NULL, &got), -AGREE_ENOREV);
}

static void test_strerror(void **state)
{
	assert_string_equal(agree_strerror(-AGREE_ECERT), "rollback certificate below the quorum");
	assert_string_equal(agree_strerror(-AGREE_EGAP),
			    "a revision needed for the decision is missing");
	assert_non_null(agree_strerror(-ENOMEM));
	assert_string_equal(agree_strerror(0), "success");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quorum_sizes),
		cmocka_unit_test(test_scopes),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_concurrent_same_rev_any_order),
		cmocka_unit_test(test_concurrent_same_rev_random),
		cmocka_unit_test(test_desired_with_sites),
		cmocka_unit_test(test_eligibility),
		cmocka_unit_test(test_tally_ignores_strangers_left_duplicates),
		cmocka_unit_test(test_tally_matches_reference_model),
		cmocka_unit_test(test_minority_cannot_decide),
		cmocka_unit_test(test_subject_binds_votes),
		cmocka_unit_test(test_decide_record),
		cmocka_unit_test(test_two_views_same_decision),
		cmocka_unit_test(test_previous_good_walk),
		cmocka_unit_test(test_previous_good_skips_condemned),
		cmocka_unit_test(test_explicit_target),
		cmocka_unit_test(test_verify_certificates),
		cmocka_unit_test(test_verify_malformed),
		cmocka_unit_test(test_site_quorum),
		cmocka_unit_test(test_condemned),
		cmocka_unit_test(test_local_rollback),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
