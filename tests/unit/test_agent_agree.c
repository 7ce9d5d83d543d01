/*
 * tests/unit/test_agent_agree.c: the agreement core (agent/agree.h), including the adversarial
 * cases: the electorate fixed in the record (joiners never count, certificates judged the same
 * whatever the receiver holds, the quorum rule taken from the record), votes without a known
 * meaning, the latest vote per voter, rounds and split targets, short or padded certificates,
 * rollbacks that do not match their bad record, condemnation named by the decision record,
 * concurrent writes at one rev under every arrival order, and two nodes with different vote
 * views writing the same decision.
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

#include <sodium.h>

/* ---- helpers ----------------------------------------------------------------------------- */

/* Every allocation a test makes through tmalloc is freed by the teardown, pass or fail. */
static void *arena[4096];
static size_t narena;

static void *tmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	assert_non_null(p);
	assert_true(narena < sizeof(arena) / sizeof(arena[0]));
	arena[narena++] = p;
	return p;
}

static int teardown(void **state)
{
	(void)state;
	while (narena)
		free(arena[--narena]);
	return 0;
}

static struct store_id art(uint8_t n)
{
	struct store_id id;

	memset(&id, 0, sizeof(id));
	id.b[0] = n;
	id.b[31] = 0xa5;
	return id;
}

/* Node ids sort by their number n (byte 15), so {1..k} is a sorted electorate. */
static void node_id(uint8_t out[STORE_NODE_ID_LEN], uint8_t n)
{
	memset(out, 0, STORE_NODE_ID_LEN);
	out[0] = 0x10;
	out[15] = n;
}

/* The electorate {ids...} (sorted by the caller), arena memory. */
static uint8_t (*elect_of(const uint8_t *ids, size_t n))[STORE_NODE_ID_LEN]
{
	uint8_t(*e)[STORE_NODE_ID_LEN] = tmalloc(n * STORE_NODE_ID_LEN);

	for (size_t i = 0; i < n; i++)
		node_id(e[i], ids[i]);
	return e;
}

static void set_elect_range(struct store_revision *r, uint8_t k) /* {1..k} */
{
	uint8_t ids[64];

	for (uint8_t i = 0; i < k; i++)
		ids[i] = (uint8_t)(i + 1);
	r->elect = elect_of(ids, k);
	r->nelect = k;
}

/* A deploy with electorate {1..5}, majority rule. */
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
	set_elect_range(&r, 5);
	return r;
}

/* A vote against the record with hlc @subject at @rev (base_log: rev r has hlc 100 r). */
static struct store_vote vote_full(uint64_t rev, uint64_t subject, uint8_t voter, uint64_t hlc,
				   uint32_t round, uint64_t target)
{
	struct store_vote v;

	memset(&v, 0, sizeof(v));
	snprintf(v.service, sizeof(v.service), "web");
	v.rev = rev;
	node_id(v.voter, voter);
	v.reason = STORE_VOTE_HEALTH;
	v.hlc = hlc;
	v.subject = subject;
	v.round = round;
	v.target = target;
	return v;
}

static struct store_vote vote_on(uint64_t rev, uint64_t subject, uint8_t voter, uint64_t hlc)
{
	return vote_full(rev, subject, voter, hlc, 0, 0);
}

static struct store_vote vote(uint64_t rev, uint8_t voter, uint64_t hlc)
{
	return vote_on(rev, 100 * rev, voter, hlc);
}

/* A round/target vote on base_log's rev 3. */
static struct store_vote vrt(uint8_t voter, uint64_t hlc, uint32_t round, uint64_t target)
{
	return vote_full(3, 300, voter, hlc, round, target);
}

/*
 * Tests write a vote's subject as the hlc of the record it judges (a small number); before a
 * call, bind() turns that into agree_subject(@bad) when it names @bad and into a value that
 * names nothing otherwise (arena copy). Real digests (test_subject_is_identity) pass as they
 * are.
 */
static const struct store_vote *bind(const struct store_revision *bad, const struct store_vote *v,
				     size_t n)
{
	struct store_vote *c;

	if (!bad || !v)
		return v;
	c = tmalloc(n * sizeof(*c));
	for (size_t i = 0; i < n; i++) {
		c[i] = v[i];
		if (c[i].subject && c[i].subject < (1ULL << 32))
			c[i].subject = c[i].subject == bad->hlc ? agree_subject(bad)
								: c[i].subject | (1ULL << 40);
	}
	return c;
}

/* A rollback of a bad record with electorate {1..5}, majority, condemning art @condemns and an
 * arbitrary certificate (not sorted by this helper). */
static struct store_revision rollback_with_cert(uint64_t rev, uint8_t artifact, const char *scope,
						uint64_t hlc, const uint8_t *voters, size_t n,
						uint8_t condemns)
{
	struct store_revision r;

	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "web");
	r.rev = rev;
	r.artifact = art(artifact);
	r.kind = STORE_REV_ROLLBACK;
	snprintf(r.scope, sizeof(r.scope), "%s", scope);
	r.hlc = hlc;
	r.operator_uid = UINT32_MAX;
	r.ncert = (uint32_t)n;
	r.cert = elect_of(voters, n);
	set_elect_range(&r, 5);
	r.condemns = art(condemns);
	return r;
}

/* A three-revision log: rev1 art 1, rev2 art 2, rev3 art 3 (the bad one); electorate {1..5}. */
static size_t base_log(struct store_revision *log)
{
	log[0] = deploy(1, 1, "", 1, 100);
	log[1] = deploy(2, 2, "", 2, 200);
	log[2] = deploy(3, 3, "", 3, 300);
	return 3;
}

/* agree_decide's output into arena memory (tests need not free it). */
static void own(struct store_revision *r)
{
	if (r->cert) {
		void *c = tmalloc((size_t)r->ncert * STORE_NODE_ID_LEN);

		memcpy(c, r->cert, (size_t)r->ncert * STORE_NODE_ID_LEN);
		free(r->cert);
		r->cert = c;
	}
	if (r->elect) {
		void *e = tmalloc((size_t)r->nelect * STORE_NODE_ID_LEN);

		memcpy(e, r->elect, (size_t)r->nelect * STORE_NODE_ID_LEN);
		free(r->elect);
		r->elect = e;
	}
	if (r->cert_sigs) {
		void *g = tmalloc((size_t)r->ncert * sizeof(*r->cert_sigs));

		memcpy(g, r->cert_sigs, (size_t)r->ncert * sizeof(*r->cert_sigs));
		free(r->cert_sigs);
		r->cert_sigs = g;
	}
	if (r->elect_keys) {
		void *k = tmalloc((size_t)r->nelect * STORE_KEY_LEN);

		memcpy(k, r->elect_keys, (size_t)r->nelect * STORE_KEY_LEN);
		free(r->elect_keys);
		r->elect_keys = k;
	}
}

static int decide(const struct store_revision *log, size_t nl, uint64_t rev,
		  const struct store_vote *v, size_t nv, struct store_revision *out)
{
	int r = agree_decide(log, nl, "web", rev, bind(agree_at(log, nl, rev), v, nv), nv, out);

	if (r == 0)
		own(out);
	return r;
}

static bool cert_is(const struct store_revision *r, const uint8_t *ids, size_t n)
{
	uint8_t id[STORE_NODE_ID_LEN];

	if (r->ncert != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		node_id(id, ids[i]);
		if (memcmp(r->cert[i], id, STORE_NODE_ID_LEN) != 0)
			return false;
	}
	return true;
}

#define assert_err(expr, want)                                                                \
	do {                                                                                  \
		int got_ = (expr);                                                            \
		if (got_ != (want))                                                           \
			fail_msg("%s = %d (%s), want %d (%s)", #expr, got_,                   \
				 agree_strerror(got_), (want), agree_strerror(want));         \
	} while (0)

/* xorshift64*: deterministic randomness for the property tests */
static uint64_t prng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* ---- quorum, scopes ---------------------------------------------------------------------- */

static void test_quorum_sizes(void **state)
{
	struct store_quorum q = {0};
	uint32_t e;

	(void)state;
	assert_int_equal(agree_quorum_check(&q), 0);
	for (e = 0; e < 10; e++)
		assert_int_equal(agree_quorum_size(&q, e), e / 2 + 1);
	assert_int_equal(agree_quorum_size(NULL, 4), 3);
	q.kind = AGREE_QUORUM_COUNT;
	q.count = 3;
	assert_int_equal(agree_quorum_check(&q), 0);
	assert_int_equal(agree_quorum_size(&q, 9), 3);
	assert_int_equal(agree_quorum_size(&q, 2), 2); /* clamped to the electorate */
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
	q.count = 1; /* a field the kind does not use */
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q.count = 0;
	q.num = 4;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q.num = 1;
	q.den = 0;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q = (struct store_quorum){.kind = AGREE_QUORUM_MAJORITY, .den = 2};
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	q.kind = 77;
	assert_int_equal(agree_quorum_check(&q), -EINVAL);
	assert_int_equal(agree_quorum_check(NULL), -EINVAL);
}

static void test_scopes(void **state)
{
	(void)state;
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

/* ---- rule 0: the electorate -------------------------------------------------------------- */

static void test_electorate(void **state)
{
	struct agree_member m[8];
	uint8_t(*ids)[STORE_NODE_ID_LEN];
	uint8_t id[STORE_NODE_ID_LEN];
	uint32_t n = 0;
	struct store_revision r;

	(void)state;
	memset(m, 0, sizeof(m));
	/* out of order, sites alternate, one of each state */
	const uint8_t num[8] = {7, 3, 5, 1, 8, 2, 6, 4};
	for (int i = 0; i < 8; i++) {
		node_id(m[i].id, num[i]);
		m[i].state = (enum agree_member_state)(i % 4);
		m[i].site = i % 2 ? "b" : "a";
	}
	/* LEFT (i = 3: node 1, i = 7: node 4) is off the roster; DEAD and SUSPECT stay */
	assert_err(agree_electorate(m, 8, "", &ids, &n), 0);
	assert_int_equal(n, 6);
	const uint8_t want[6] = {2, 3, 5, 6, 7, 8};
	for (int i = 0; i < 6; i++) {
		node_id(id, want[i]);
		assert_memory_equal(ids[i], id, STORE_NODE_ID_LEN);
	}
	free(ids);
	/* site a: i = 0 (7, alive), 2 (5, dead), 4 (8, alive), 6 (6, dead) */
	assert_err(agree_electorate(m, 8, "site:a", &ids, &n), 0);
	assert_int_equal(n, 4);
	node_id(id, 5);
	assert_memory_equal(ids[0], id, STORE_NODE_ID_LEN);
	free(ids);
	/* a roster listing one id twice does not double its weight */
	m[1] = m[0];
	assert_err(agree_electorate(m, 8, "", &ids, &n), 0);
	assert_int_equal(n, 5);
	free(ids);
	/* nobody in scope: an empty electorate (such a revision can never be rolled back by
	 * votes: quorum 1 of 0 electors) */
	ids = NULL;
	assert_err(agree_electorate(m, 8, "site:zz", &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	assert_err(agree_electorate(m, 0, "", &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	assert_err(agree_electorate(m, 8, "bogus", &ids, &n), -EINVAL);
	assert_err(agree_electorate(NULL, 2, "", &ids, &n), -EINVAL);
	/* more than STORE_ELECT_MAX distinct members */
	{
		struct agree_member *big = tmalloc((STORE_ELECT_MAX + 1) * sizeof(*big));

		for (uint32_t i = 0; i <= STORE_ELECT_MAX; i++) {
			big[i].id[0] = (uint8_t)(i >> 8);
			big[i].id[1] = (uint8_t)i;
			big[i].state = AGREE_ALIVE;
		}
		assert_err(agree_electorate(big, STORE_ELECT_MAX + 1, "", &ids, &n), -E2BIG);
		assert_err(agree_electorate(big, STORE_ELECT_MAX, "", &ids, &n), 0);
		assert_int_equal(n, STORE_ELECT_MAX);
		free(ids);
	}
	/* membership test */
	memset(&r, 0, sizeof(r));
	set_elect_range(&r, 5);
	node_id(id, 5);
	assert_true(agree_in_electorate(&r, id));
	node_id(id, 6);
	assert_false(agree_in_electorate(&r, id));
	assert_false(agree_in_electorate(NULL, id));
	r.nelect = 0;
	node_id(id, 1);
	assert_false(agree_in_electorate(&r, id));
}

/* ---- rule 1: one winner per rev ---------------------------------------------------------- */

static void test_order(void **state)
{
	struct store_revision a = deploy(4, 4, "", 1, 500), b = deploy(4, 5, "", 2, 500);
	uint8_t v[3] = {1, 2, 3};
	struct store_revision rb = rollback_with_cert(4, 2, "", 301, v, 3, 3);
	struct store_revision rb2 = rollback_with_cert(4, 2, "", 301, v, 2, 3);
	struct store_revision x;

	(void)state;
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
	/* electorate, rule and condemned artifact are part of the decision */
	x = rb2;
	set_elect_range(&x, 6);
	assert_false(agree_revision_same(&x, &rb2));
	assert_true(agree_revision_cmp(&x, &rb2) > 0 && agree_revision_cmp(&rb2, &x) < 0);
	x = rb2;
	x.elect = elect_of((const uint8_t[]){1, 2, 3, 4, 6}, 5);
	assert_false(agree_revision_same(&x, &rb2));
	assert_true(agree_revision_cmp(&x, &rb2) > 0 && agree_revision_cmp(&rb2, &x) < 0);
	x = rb2;
	x.quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT, .count = 2};
	assert_false(agree_revision_same(&x, &rb2));
	assert_true(agree_revision_cmp(&x, &rb2) > 0 && agree_revision_cmp(&rb2, &x) < 0);
	x = rb2;
	x.condemns = art(4);
	assert_false(agree_revision_same(&x, &rb2));
	assert_true(agree_revision_cmp(&x, &rb2) > 0 && agree_revision_cmp(&rb2, &x) < 0);
	/* same bytes in fresh memory: equal */
	x = rb2;
	x.elect = elect_of((const uint8_t[]){1, 2, 3, 4, 5}, 5);
	x.cert = elect_of(v, 2);
	assert_int_equal(agree_revision_cmp(&x, &rb2), 0);
}

/* Fold records one by one into a one-slot log, as an agent would with its store. */
static void fold(const struct store_revision *in, const int *order, size_t n,
		 struct store_revision *ret)
{
	struct store_revision held;
	size_t nheld = 0, i;

	for (i = 0; i < n; i++) {
		int r = agree_accept(&held, nheld, &in[order[i]]);

		if (r < 0)
			fail_msg("record %d refused: %s", order[i], agree_strerror(r));
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
 * hlcs, a duplicate, two deploys that differ only in their electorate or rule, and two
 * certificates of the same rollback) resolve to the same bytes under all 8! = 40320 orders.
 */
static void test_concurrent_same_rev_any_order(void **state)
{
	uint8_t v3[3] = {1, 2, 3}, v4[4] = {2, 3, 4, 5};
	struct store_revision in[8], first, got;
	int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
	unsigned perms = 0;

	(void)state;
	in[0] = deploy(4, 10, "", 1, 1000);
	in[1] = deploy(4, 10, "", 1, 1000);	     /* same as in[0] but another electorate */
	set_elect_range(&in[1], 7);
	in[2] = deploy(4, 12, "site:a", 5, 999);    /* earlier */
	in[3] = deploy(4, 10, "", 1, 1000);	     /* duplicate of in[0] */
	in[4] = deploy(4, 10, "", 1, 1000);	     /* same as in[0] but another rule */
	in[4].quorum = (struct store_quorum){.kind = AGREE_QUORUM_FRACTION, .num = 2, .den = 3};
	in[5] = rollback_with_cert(4, 2, "", 301, v3, 3, 3);
	in[6] = rollback_with_cert(4, 2, "", 301, v4, 4, 3);
	in[7] = deploy(4, 13, "", 3, 1000);
	fold(in, order, 8, &first);
	/* the rollback with the larger certificate */
	assert_ptr_equal(first.cert, in[6].cert);
	while (next_perm(order, 8)) {
		fold(in, order, 8, &got);
		if (agree_revision_cmp(&got, &first) != 0)
			fail_msg("permutation %u resolved to artifact %u, want %u", perms,
				 got.artifact.b[0], first.artifact.b[0]);
		perms++;
	}
	assert_int_equal(perms, 40319);

	/* Without the rollbacks and the origin-3 deploy: the three deploys of (hlc 1000,
	 * origin 1, art 10) that differ in electorate or rule resolve the same way in every
	 * order, to the maximum of rule 1. */
	{
		int o5[5] = {0, 1, 2, 3, 4};
		struct store_revision d0;
		const struct store_revision *max = &in[0];

		for (int i = 1; i < 5; i++)
			if (agree_revision_cmp(&in[i], max) > 0)
				max = &in[i];
		fold(in, o5, 5, &d0);
		assert_int_equal(agree_revision_cmp(&d0, max), 0);
		while (next_perm(o5, 5)) {
			fold(in, o5, 5, &got);
			assert_int_equal(agree_revision_cmp(&got, &d0), 0);
		}
	}
}

/*
 * Property, randomised: 300 trials of 2..8 records at one rev drawn from a small space (so
 * hlcs, origins, artifacts, electorates, rules and certificates collide, duplicates occur,
 * rollbacks have valid certificates of different sizes), each folded in 40 random arrival
 * orders: the result is always the same bytes, and it is the maximum of agree_revision_cmp.
 */
static void test_concurrent_same_rev_random(void **state)
{
	uint64_t seed = 0xa9ee;
	int trial;

	(void)state;
	for (trial = 0; trial < 300; trial++) {
		struct store_revision in[8], first, got;
		int order[8], n = 2 + (int)(prng(&seed) % 7), i, k;
		const struct store_revision *max = NULL;

		for (i = 0; i < n; i++) {
			if (prng(&seed) % 4 == 0) {
				uint8_t v[6] = {1, 2, 3, 4, 5, 6};
				size_t nc = 3 + prng(&seed) % 3; /* quorum of 5 is 3 */

				in[i] = rollback_with_cert(4, (uint8_t)(prng(&seed) % 3), "",
							   301 + prng(&seed) % 2, v + (6 - nc) - 1,
							   nc, 3);
			} else {
				const char *scope = prng(&seed) % 2 ? "" : "site:a";

				in[i] = deploy(4, (uint8_t)(prng(&seed) % 4), scope,
					       (uint8_t)(prng(&seed) % 3), 1000 + prng(&seed) % 3);
				if (prng(&seed) % 3 == 0)
					set_elect_range(&in[i], (uint8_t)(3 + prng(&seed) % 4));
				if (prng(&seed) % 4 == 0)
					in[i].quorum = (struct store_quorum){
						.kind = AGREE_QUORUM_COUNT,
						.count = 1 + (uint32_t)(prng(&seed) % 3)};
			}
			if (i && prng(&seed) % 5 == 0) { /* an exact duplicate, own memory */
				in[i] = in[i - 1];
				if (in[i - 1].ncert) {
					in[i].cert = tmalloc(in[i].ncert * (size_t)STORE_NODE_ID_LEN);
					memcpy(in[i].cert, in[i - 1].cert,
					       in[i].ncert * (size_t)STORE_NODE_ID_LEN);
				}
				in[i].elect = tmalloc(in[i].nelect * (size_t)STORE_NODE_ID_LEN);
				memcpy(in[i].elect, in[i - 1].elect,
				       in[i].nelect * (size_t)STORE_NODE_ID_LEN);
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
			fold(in, order, (size_t)n, k ? &got : &first);
			if (k && agree_revision_cmp(&got, &first) != 0)
				fail_msg("trial %d order %d: resolved differently", trial, k);
		}
		assert_int_equal(agree_revision_cmp(&first, max), 0);
		teardown(NULL);
	}
}

/* ---- rule 2: desired revision ------------------------------------------------------------ */

static void test_desired_with_sites(void **state)
{
	struct store_revision log[6];
	size_t n = 0;

	(void)state;
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

/* ---- rule 3: what counts ----------------------------------------------------------------- */

/*
 * Reference model of rules 3 and 4, written as plain pairwise loops: a vote is about @bad if
 * service, rev and a non-zero subject match and its voter is in the electorate; each voter's
 * latest vote is its greatest (round, hlc), ties to the smaller target, then the earlier
 * index; the round is the highest among latest votes; counted, leading target (more votes,
 * then smaller), decided and stuck follow agree.h.
 */
static bool ref_about(const struct store_revision *bad, const struct store_vote *v)
{
	bool in = false;

	for (uint32_t i = 0; i < bad->nelect; i++)
		in |= memcmp(bad->elect[i], v->voter, STORE_NODE_ID_LEN) == 0;
	return in && v->rev == bad->rev && v->subject != 0 && v->subject == bad->hlc &&
	       strcmp(v->service, bad->service) == 0;
}

static bool ref_before(const struct store_vote *a, size_t ia, const struct store_vote *b,
		       size_t ib) /* is b preferred to a as the voter's latest? */
{
	if (a->round != b->round)
		return b->round > a->round;
	if (a->hlc != b->hlc)
		return b->hlc > a->hlc;
	if (a->target != b->target)
		return b->target < a->target;
	return ib < ia;
}

static bool ref_latest(const struct store_revision *bad, const struct store_vote *v, size_t nv,
		       size_t i)
{
	if (!ref_about(bad, &v[i]))
		return false;
	for (size_t j = 0; j < nv; j++)
		if (j != i && ref_about(bad, &v[j]) &&
		    memcmp(v[j].voter, v[i].voter, STORE_NODE_ID_LEN) == 0 &&
		    ref_before(&v[i], i, &v[j], j))
			return false;
	return true;
}

static void ref_tally(const struct store_revision *bad, const struct store_vote *v, size_t nv,
		      struct agree_tally *t)
{
	memset(t, 0, sizeof(*t));
	t->eligible = bad->nelect;
	t->quorum = agree_quorum_size(&bad->quorum, bad->nelect);
	for (size_t i = 0; i < nv; i++)
		if (ref_latest(bad, v, nv, i) && v[i].round > t->round)
			t->round = v[i].round;
	for (size_t i = 0; i < nv; i++) {
		uint32_t cnt = 0;

		if (!ref_latest(bad, v, nv, i) || v[i].round != t->round)
			continue;
		t->counted++;
		for (size_t j = 0; j < nv; j++)
			if (ref_latest(bad, v, nv, j) && v[j].round == t->round &&
			    v[j].target == v[i].target)
				cnt++;
		if (cnt > t->target_votes || (cnt == t->target_votes && v[i].target < t->target)) {
			t->target_votes = cnt;
			t->target = v[i].target;
		}
	}
	t->decided = t->target_votes > 0 && t->target_votes >= t->quorum;
	t->stuck = t->counted > 0 && !t->decided &&
		   t->target_votes + (t->eligible - t->counted) < t->quorum;
}

static void test_tally_matches_reference_model(void **state)
{
	enum { NV = 160 };
	static struct store_vote v[NV];
	uint64_t seed = 0x5eed;

	(void)state;
	for (int trial = 0; trial < 400; trial++) {
		struct store_revision bad = deploy(3, 3, "", 3, 300);
		size_t nv = prng(&seed) % NV;
		uint8_t ids[64];
		size_t ne = 0;
		struct agree_tally t, want;
		int k;

		/* a random electorate out of ids 1..80 (sorted), random rule */
		for (uint8_t id = 1; id <= 80 && ne < 64; id++)
			if (prng(&seed) % 3 == 0)
				ids[ne++] = id;
		if (!ne)
			ids[ne++] = 9;
		bad.elect = elect_of(ids, ne);
		bad.nelect = (uint32_t)ne;
		k = (int)(prng(&seed) % 3);
		if (k == 1)
			bad.quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT,
							   .count = 1 + (uint32_t)(prng(&seed) % 9)};
		else if (k == 2)
			bad.quorum = (struct store_quorum){.kind = AGREE_QUORUM_FRACTION,
							   .num = 1 + (uint32_t)(prng(&seed) % 4),
							   .den = 4};
		for (size_t i = 0; i < nv; i++) {
			uint64_t subj = prng(&seed) % 6 ? 300 : (prng(&seed) % 2 ? 0 : 299);

			v[i] = vote_full(prng(&seed) % 5 ? 3 : 2, subj, (uint8_t)(1 + prng(&seed) % 90),
					 1 + prng(&seed) % 30, (uint32_t)(prng(&seed) % 3),
					 prng(&seed) % 3 == 0 ? 1 + prng(&seed) % 2 : 0);
			if (prng(&seed) % 20 == 0)
				snprintf(v[i].service, sizeof(v[i].service), "api");
		}
		assert_int_equal(agree_tally(&bad, bind(&bad, v, nv), nv, &t), 0);
		ref_tally(&bad, v, nv, &want);
		assert_int_equal(t.eligible, want.eligible);
		assert_int_equal(t.quorum, want.quorum);
		assert_int_equal(t.round, want.round);
		assert_int_equal(t.counted, want.counted);
		assert_int_equal(t.target_votes, want.target_votes);
		if (want.target_votes)
			assert_int_equal(t.target, want.target);
		assert_int_equal(t.decided, want.decided);
		assert_int_equal(t.stuck, want.stuck);
		/* and the certificate of a decision: the latest votes of the deciding round that
		 * name the target */
		if (want.decided) {
			struct store_revision log[3], out;
			uint8_t cids[64];
			size_t nc = 0;

			base_log(log);
			log[2] = bad;
			log[1].artifact = art(2);
			assert_err(decide(log, 3, 3, v, nv, &out), 0);
			for (size_t e = 0; e < ne; e++)
				for (size_t i = 0; i < nv; i++) {
					uint8_t id[STORE_NODE_ID_LEN];

					node_id(id, ids[e]);
					if (!memcmp(v[i].voter, id, STORE_NODE_ID_LEN) &&
					    ref_latest(&bad, v, nv, i) && v[i].round == want.round &&
					    v[i].target == want.target) {
						cids[nc++] = ids[e];
						break;
					}
				}
			/* explicit targets 1 and 2 are both usable (arts 1, 2 vs bad 3) */
			assert_true(cert_is(&out, cids, nc));
			assert_int_equal(out.nelect, bad.nelect);
			assert_memory_equal(&out.quorum, &bad.quorum, sizeof(out.quorum));
			assert_err(agree_verify(log, 3, &out), 0);
		}
		teardown(NULL);
	}
}

/* Strangers, other revs, services and subjects, and votes of unknown meaning never count. */
static void test_tally_ignores_strangers_subject0(void **state)
{
	struct store_revision bad = deploy(3, 3, "", 3, 300);
	struct store_vote v[16];
	struct agree_tally t;
	size_t n = 0;

	(void)state;
	v[n++] = vote(3, 1, 10);
	v[n++] = vote(3, 1, 9);	  /* the same voter, older: superseded */
	v[n++] = vote(3, 77, 12); /* stranger (not in the electorate) */
	v[n++] = vote(2, 2, 14);  /* another rev */
	v[n++] = vote_on(3, 0, 3, 15); /* subject 0: an older store's vote */
	v[n++] = vote_on(3, 299, 4, 16); /* another record at rev 3 */
	v[n] = vote(3, 5, 17);
	snprintf(v[n].service, sizeof(v[n].service), "db"); /* another service */
	n++;
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_int_equal(t.eligible, 5);
	assert_int_equal(t.quorum, 3);
	assert_int_equal(t.counted, 1);
	assert_false(t.decided);
	/* subject 0 from everyone: still nothing more */
	for (uint8_t i = 2; i <= 5; i++)
		v[n++] = vote_on(3, 0, i, 20 + i);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_int_equal(t.counted, 1);
	/* a record whose hlc is 0 is never decided by subject-0 votes either */
	{
		struct store_revision z = bad;
		struct store_revision log[3];

		z.hlc = 0;
		assert_int_equal(agree_tally(&z, bind(&z, v, n), n, &t), 0);
		assert_int_equal(t.counted, 0);
		base_log(log);
		log[2] = z;
		struct store_revision out;
		assert_err(decide(log, 3, 3, v, n, &out), -AGREE_ENOQUORUM);
	}
	v[n++] = vote(3, 2, 30);
	v[n++] = vote(3, 4, 31);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_int_equal(t.counted, 3);
	assert_int_equal(t.target_votes, 3);
	assert_true(t.decided);
	assert_int_equal(agree_tally(NULL, bind(NULL, v, n), n, &t), -EINVAL);
	assert_int_equal(agree_tally(&bad, bind(&bad, NULL, 1), 1, &t), -EINVAL);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, NULL), -EINVAL);
	/* an electorate of 0 can never decide */
	bad.nelect = 0;
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_int_equal(t.counted, 0);
	assert_false(t.decided);
}

/*
 * Joiners: nodes that joined after the revision was written are not in its electorate, so
 * however many of them there are, however they vote, they never count, never re-cast, and a
 * certificate naming them is refused.
 */
static void test_joiner_never_counts(void **state)
{
	struct store_revision log[3], out, r;
	struct store_vote v[8];
	struct agree_tally t;
	uint32_t round;
	uint64_t target;
	uint8_t id[STORE_NODE_ID_LEN];
	size_t nl = base_log(log), n = 0;

	(void)state;
	/* 2 of the 5 electors, and 6 joiners (6..11) unanimous */
	v[n++] = vote(3, 1, 10);
	v[n++] = vote(3, 2, 11);
	for (uint8_t j = 6; j <= 11; j++)
		v[n++] = vote(3, j, 20 + j);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_int_equal(t.counted, 2);
	assert_int_equal(t.eligible, 5);
	assert_err(decide(log, nl, 3, v, n, &out), -AGREE_ENOQUORUM);
	/* a joiner is told to cast nothing */
	node_id(id, 6);
	assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 0, &round, &target), AGREE_VOTE_NONE);
	/* an elector that has not voted yet casts its first vote */
	node_id(id, 3);
	assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 0, &round, &target), AGREE_VOTE_NEW);
	assert_int_equal(round, 0);
	assert_int_equal(target, 0);
	/* certificates naming joiners: {1, 2, 6} is 2 electors of 5 */
	r = rollback_with_cert(4, 2, "", 301, (const uint8_t[]){1, 2, 6}, 3, 3);
	assert_err(agree_verify(log, nl, &r), -AGREE_ECERT);
	assert_err(agree_accept(log, nl, &r), -AGREE_ECERT);
	/* (A rollback whose electorate was widened to include the joiners is valid on its own
	 * terms: only a node holding the cluster key could write one, the residual risk of
	 * agree.h rule 6; honest writers copy the bad record's, test_decide_record.) */
}

/* The latest vote of each voter counts; a later round supersedes any hlc of an earlier one. */
static void test_latest_vote_counts(void **state)
{
	struct store_revision log[3], out;
	struct store_vote v[8];
	struct agree_tally t;
	size_t nl = base_log(log), n = 0;

	(void)state;
	/* voters 1, 2 vote target 1 at hlc 10; voter 1 then (hlc 20) target 0 */
	v[n++] = vrt(1, 10, 0, 1);
	v[n++] = vrt(2, 11, 0, 1);
	v[n++] = vrt(3, 12, 0, 1);
	v[n++] = vrt(1, 20, 0, 0);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_int_equal(t.counted, 3);
	assert_int_equal(t.target, 1);
	assert_int_equal(t.target_votes, 2); /* voter 1's old vote no longer counts */
	assert_err(decide(log, nl, 3, v, n, &out), -AGREE_ENOQUORUM);
	/* in whatever order they are passed */
	{
		struct store_vote rv[4] = {v[3], v[2], v[1], v[0]};

		assert_int_equal(agree_tally(&log[2], bind(&log[2], rv, 4), 4, &t), 0);
		assert_int_equal(t.target_votes, 2);
	}
	/* a round-1 vote of voter 4 with a small hlc makes round 1 current: round-0 votes no
	 * longer count for the decision */
	v[n++] = vrt(4, 1, 1, 1);
	v[n++] = vrt(5, 30, 0, 1);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_int_equal(t.round, 1);
	assert_int_equal(t.counted, 1);
	assert_int_equal(t.target_votes, 1);
	assert_false(t.decided);
	assert_err(decide(log, nl, 3, v, n, &out), -AGREE_ENOQUORUM);
	/* two of the round-0 voters follow into round 1: decided, certificate = round 1's */
	v[n++] = vrt(2, 40, 1, 1);
	v[n++] = vrt(5, 41, 1, 1);
	assert_err(decide(log, nl, 3, v, n, &out), 0);
	assert_true(cert_is(&out, (const uint8_t[]){2, 4, 5}, 3));
	assert_string_equal(out.reason, "cluster rollback of rev 3 to rev 1 (quorum)");
}

/* Dead members count: a partition's minority never decides, even unanimously. */
static void test_minority_cannot_decide(void **state)
{
	struct store_revision log[3], out;
	struct store_vote v[3];
	size_t nl = base_log(log);

	(void)state;
	v[0] = vote(3, 4, 400);
	v[1] = vote(3, 5, 401);
	assert_err(decide(log, nl, 3, v, 2, &out), -AGREE_ENOQUORUM);
	/* however many rounds the minority plays alone */
	for (uint32_t round = 1; round < 50; round++) {
		v[0] = vrt(4, 400 + round, round, 0);
		v[1] = vrt(5, 400 + round, round, 0);
		assert_err(decide(log, nl, 3, v, 2, &out), -AGREE_ENOQUORUM);
	}
	/* with one of the majority's votes in that round it does */
	v[2] = vrt(1, 500, 49, 0);
	assert_err(decide(log, nl, 3, v, 3, &out), 0);
}

/*
 * Votes are bound to the record they condemn. Node X holds deploy D (hlc 300) at rev 3, node Y
 * holds a concurrent deploy E (hlc 310) that will win. Votes against D never count against E:
 * whichever record a node holds, at most one of the two can reach a majority.
 */
static void test_subject_binds_votes(void **state)
{
	struct store_revision lx[3], ly[3], out;
	struct store_vote v[5] = {vote_on(3, 300, 1, 1), vote_on(3, 300, 2, 2),
				  vote_on(3, 310, 3, 3), vote_on(3, 310, 4, 4),
				  vote_on(3, 310, 5, 5)};
	struct agree_tally t;

	(void)state;
	base_log(lx);
	base_log(ly);
	ly[2] = deploy(3, 9, "", 4, 310);
	assert_err(decide(lx, 3, 3, v, 5, &out), -AGREE_ENOQUORUM);
	assert_err(decide(ly, 3, 3, v, 5, &out), 0);
	assert_int_equal(out.ncert, 3);
	assert_int_equal(agree_tally(&lx[2], bind(&lx[2], v, 5), 5, &t), 0);
	assert_int_equal(t.counted, 2);
	/* a voter's later vote on another subject does not make its earlier one count twice:
	 * each subject's tally takes that voter's latest vote on that subject */
	v[0] = vote_on(3, 310, 1, 9);
	assert_int_equal(agree_tally(&ly[2], bind(&ly[2], v, 5), 5, &t), 0);
	assert_int_equal(t.counted, 4);
	assert_int_equal(agree_tally(&lx[2], bind(&lx[2], v, 5), 5, &t), 0);
	assert_int_equal(t.counted, 1);
}

/* ---- rule 4: rounds and split targets ----------------------------------------------------- */

/*
 * E = 4, quorum 3: two for "previous" and two for --to 1. Round 0 is stuck; every voter re-casts
 * into round 1 for the leading target (a tie: the smaller, 0); voters behind follow at once;
 * round 1 decides with the round-1 voters as its certificate; after that nobody casts.
 */
static void test_split_resolves_by_rounds(void **state)
{
	struct store_revision log[3], out;
	struct store_vote v[16];
	struct agree_tally t;
	uint8_t id[STORE_NODE_ID_LEN];
	uint32_t round;
	uint64_t target;
	size_t nl = base_log(log), n = 0;

	(void)state;
	set_elect_range(&log[2], 4);
	v[n++] = vrt(1, 10, 0, 0);
	v[n++] = vrt(2, 11, 0, 0);
	v[n++] = vrt(3, 12, 0, 1);
	/* 3 seen, 1 unseen: 2 + 1 >= 3, not stuck yet: nobody re-casts */
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_false(t.stuck);
	for (uint8_t i = 1; i <= 3; i++) {
		node_id(id, i);
		assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 0, &round, &target),
			   AGREE_VOTE_NONE);
	}
	/* the last elector casts its own judgement in round 0 (not yet stuck) */
	node_id(id, 4);
	assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 1, &round, &target), AGREE_VOTE_NEW);
	assert_int_equal(round, 0);
	assert_int_equal(target, 1);
	v[n++] = vrt(4, 13, 0, 1);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_int_equal(t.counted, 4);
	assert_int_equal(t.target_votes, 2);
	assert_int_equal(t.target, 0); /* tie: the smaller target leads */
	assert_true(t.stuck);
	assert_false(t.decided);
	assert_err(decide(log, nl, 3, v, n, &out), -AGREE_ENOQUORUM);
	/* every voter of the stuck round is told to re-cast into round 1 for target 0 */
	for (uint8_t i = 1; i <= 4; i++) {
		node_id(id, i);
		assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 7, &round, &target),
			   AGREE_VOTE_STUCK);
		assert_int_equal(round, 1);
		assert_int_equal(target, 0);
	}
	/* voter 3 (who wanted --to 1) re-casts first */
	v[n++] = vrt(3, 20, 1, 0);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, n), n, &t), 0);
	assert_int_equal(t.round, 1);
	assert_int_equal(t.counted, 1);
	assert_false(t.stuck);
	/* the others are BEHIND now: they follow at once, for round 1's leading target */
	for (uint8_t i = 1; i <= 4; i++) {
		int want = i == 3 ? AGREE_VOTE_NONE : AGREE_VOTE_BEHIND;

		node_id(id, i);
		assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 1, &round, &target), want);
		if (want) {
			assert_int_equal(round, 1);
			assert_int_equal(target, 0);
		}
	}
	v[n++] = vrt(4, 21, 1, 0);
	assert_err(decide(log, nl, 3, v, n, &out), -AGREE_ENOQUORUM);
	v[n++] = vrt(1, 22, 1, 0);
	assert_err(decide(log, nl, 3, v, n, &out), 0);
	/* the certificate is the deciding round's voters, not round 0's */
	assert_true(cert_is(&out, (const uint8_t[]){1, 3, 4}, 3));
	assert_string_equal(out.reason, "cluster rollback of rev 3 (quorum)");
	assert_memory_equal(out.artifact.b, art(2).b, STORE_ID_LEN);
	assert_err(agree_verify(log, nl, &out), 0);
	/* decided: nobody casts anything any more, not even voter 2 still in round 0 */
	for (uint8_t i = 1; i <= 5; i++) {
		node_id(id, i);
		assert_err(agree_next_vote(&log[2], bind(&log[2], v, n), n, id, 1, &round, &target),
			   AGREE_VOTE_NONE);
	}
}

/* The leading target of a stuck round need not be the smallest: more votes first. */
static void test_stuck_leading_target(void **state)
{
	struct store_revision bad = deploy(3, 3, "", 3, 300);
	struct store_vote v[8];
	struct agree_tally t;
	uint8_t id[STORE_NODE_ID_LEN];
	uint32_t round;
	uint64_t target;
	size_t n = 0;

	(void)state;
	/* E = 6, quorum 4: three for --to 2, two for --to 1, one for previous */
	set_elect_range(&bad, 6);
	v[n++] = vrt(1, 1, 0, 2);
	v[n++] = vrt(2, 2, 0, 2);
	v[n++] = vrt(3, 3, 0, 2);
	v[n++] = vrt(4, 4, 0, 1);
	v[n++] = vrt(5, 5, 0, 1);
	v[n++] = vrt(6, 6, 0, 0);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_true(t.stuck);
	assert_int_equal(t.target, 2);
	assert_int_equal(t.target_votes, 3);
	node_id(id, 6);
	assert_err(agree_next_vote(&bad, bind(&bad, v, n), n, id, 0, &round, &target), AGREE_VOTE_STUCK);
	assert_int_equal(round, 1);
	assert_int_equal(target, 2);

	/* E = 7, quorum 4: 2 | 2 | 2 with one elector unseen is stuck (2 + 1 < 4); the unseen
	 * elector's first vote goes straight into round 1, for the leading (smallest) target */
	n = 0;
	set_elect_range(&bad, 7);
	v[n++] = vrt(1, 1, 0, 2);
	v[n++] = vrt(2, 2, 0, 2);
	v[n++] = vrt(3, 3, 0, 1);
	v[n++] = vrt(4, 4, 0, 1);
	v[n++] = vrt(5, 5, 0, 0);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_false(t.stuck); /* 2 + 2 unseen = 4: the round can still decide */
	v[n++] = vrt(6, 6, 0, 0);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, n), n, &t), 0);
	assert_true(t.stuck);
	assert_int_equal(t.target, 0);
	node_id(id, 7);
	assert_err(agree_next_vote(&bad, bind(&bad, v, n), n, id, 2, &round, &target), AGREE_VOTE_NEW);
	assert_int_equal(round, 1);
	assert_int_equal(target, 0);
	/* a first vote in a later round follows that round's leader, not its own judgement */
	v[n++] = vrt(3, 9, 1, 1);
	assert_err(agree_next_vote(&bad, bind(&bad, v, n), n, id, 2, &round, &target), AGREE_VOTE_NEW);
	assert_int_equal(round, 1);
	assert_int_equal(target, 1);
	/* stuck is permanent: more votes of round 0 only shrink "leading + unseen" */
	v[0] = vrt(6, 7, 0, 1);
	assert_int_equal(agree_tally(&bad, bind(&bad, v, 6), 6, &t), 0);
	/* a non-elector never casts */
	node_id(id, 8);
	assert_err(agree_next_vote(&bad, bind(&bad, v, n), n, id, 0, &round, &target), AGREE_VOTE_NONE);
	assert_err(agree_next_vote(NULL, bind(NULL, v, n), n, id, 0, &round, &target), -EINVAL);
	assert_err(agree_next_vote(&bad, bind(&bad, v, n), n, id, 0, NULL, &target), -EINVAL);
}

/*
 * Safety of rounds, exhaustively on a small electorate: every node's view is some subset of
 * the votes cast; if one view sees a round stuck, no view (any subset of the same votes, or a
 * superset with more votes of that round) decides that round.
 */
static void test_stuck_excludes_decision(void **state)
{
	struct store_revision bad = deploy(3, 3, "", 3, 300);
	struct store_vote all[5], sub[5];
	uint64_t seed = 0x57c4;

	(void)state;
	for (int trial = 0; trial < 3000; trial++) {
		uint8_t e = (uint8_t)(3 + prng(&seed) % 3);
		struct agree_tally t;
		bool stuck_seen = false, decided_seen = false;
		uint64_t decided_target = UINT64_MAX;

		set_elect_range(&bad, e);
		for (uint8_t i = 0; i < e; i++)
			all[i] = vrt((uint8_t)(i + 1), 10 + i, 0, prng(&seed) % 3);
		/* every subset of the round-0 votes is a view some node may hold */
		for (unsigned mask = 0; mask < (1u << e); mask++) {
			size_t n = 0;

			for (uint8_t i = 0; i < e; i++)
				if (mask & (1u << i))
					sub[n++] = all[i];
			assert_int_equal(agree_tally(&bad, bind(&bad, sub, n), n, &t), 0);
			stuck_seen |= t.stuck;
			if (t.decided) {
				if (decided_seen && decided_target != t.target)
					fail_msg("two targets decided in one round");
				decided_seen = true;
				decided_target = t.target;
			}
		}
		assert_false(stuck_seen && decided_seen);
		teardown(NULL);
	}
}

/* ---- rule 5: the rollback record -------------------------------------------------------- */

static void test_decide_record(void **state)
{
	struct store_revision log[3], out;
	struct store_vote v[3] = {vote(3, 5, 900), vote(3, 2, 901), vote(3, 4, 950)};
	size_t nl = base_log(log);
	struct store_id a2 = art(2), a3 = art(3);

	(void)state;
	log[2].quorum = (struct store_quorum){.kind = AGREE_QUORUM_FRACTION, .num = 3, .den = 5};
	assert_err(decide(log, nl, 3, v, 2, &out), -AGREE_ENOQUORUM);
	assert_err(decide(log, nl, 3, v, 3, &out), 0);
	assert_string_equal(out.service, "web");
	assert_int_equal(out.rev, 4);
	assert_int_equal(out.kind, STORE_REV_ROLLBACK);
	assert_memory_equal(out.artifact.b, a2.b, STORE_ID_LEN);
	assert_string_equal(out.scope, "");
	assert_memory_equal(out.origin, agree_cluster_origin, STORE_NODE_ID_LEN);
	assert_int_equal(out.hlc, 301);
	assert_int_equal(out.operator_uid, UINT32_MAX);
	assert_int_equal(out.operator_pid, 0);
	assert_string_equal(out.reason, "cluster rollback of rev 3 (quorum)");
	/* sorted certificate; electorate, rule and condemned artifact copied from the bad one */
	assert_true(cert_is(&out, (const uint8_t[]){2, 4, 5}, 3));
	assert_int_equal(out.nelect, 5);
	assert_memory_equal(out.elect, log[2].elect, 5 * STORE_NODE_ID_LEN);
	assert_ptr_not_equal(out.elect, log[2].elect);
	assert_memory_equal(&out.quorum, &log[2].quorum, sizeof(out.quorum));
	assert_memory_equal(out.condemns.b, a3.b, STORE_ID_LEN);
	/* its own record verifies */
	assert_err(agree_verify(log, nl, &out), 0);
	assert_err(agree_accept(log, nl, &out), AGREE_STORE);
	/* unknown service / rev */
	assert_err(agree_decide(log, nl, "db", 3, v, 3, &out), -AGREE_ENOREV);
	assert_err(agree_decide(log, nl, "web", 8, v, 3, &out), -AGREE_ENOREV);
	assert_err(agree_decide(log, nl, NULL, 3, v, 3, &out), -EINVAL);
}

/* The quorum comes from the record: a COUNT 2 record decides with 2 votes of 5, a majority
 * record does not, and a receiver's own configuration plays no part (there is none to pass). */
static void test_quorum_from_record(void **state)
{
	struct store_revision log[3], out, r;
	struct store_vote v[2] = {vote(3, 1, 10), vote(3, 2, 11)};
	size_t nl = base_log(log);

	(void)state;
	assert_err(decide(log, nl, 3, v, 2, &out), -AGREE_ENOQUORUM);
	log[2].quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT, .count = 2};
	assert_err(decide(log, nl, 3, v, 2, &out), 0);
	assert_int_equal(out.quorum.kind, AGREE_QUORUM_COUNT);
	assert_int_equal(out.quorum.count, 2);
	assert_err(agree_verify(log, nl, &out), 0);
	/* the same 2-voter certificate under the majority rule: refused everywhere */
	r = out;
	r.quorum = (struct store_quorum){0};
	assert_err(agree_verify(NULL, 0, &r), -AGREE_ECERT);
	/* a stricter rule in the record: 4 of 5 */
	log[2].quorum = (struct store_quorum){.kind = AGREE_QUORUM_FRACTION, .num = 4, .den = 5};
	{
		struct store_vote v4[4] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12),
					   vote(3, 4, 13)};

		assert_err(decide(log, nl, 3, v4, 3, &out), -AGREE_ENOQUORUM);
		assert_err(decide(log, nl, 3, v4, 4, &out), 0);
		assert_int_equal(out.ncert, 4);
	}
}

/*
 * Two nodes see different supersets of a quorum (and the second sees the votes in another
 * order): they write the same decision; merged in either order both keep the same bytes.
 */
static void test_two_views_same_decision(void **state)
{
	struct store_revision log[4], r1, r2, k1, k2;
	struct store_vote va[4] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12), vote(3, 4, 13)};
	struct store_vote vb[5] = {vote(3, 7, 20), vote(3, 6, 19), vote(3, 4, 13), vote(3, 3, 12),
				   vote(3, 5, 18)};
	size_t nl = base_log(log);
	int r;

	(void)state;
	set_elect_range(&log[2], 7);
	assert_err(decide(log, nl, 3, va, 4, &r1), 0);
	assert_err(decide(log, nl, 3, vb, 5, &r2), 0);
	assert_true(agree_revision_same(&r1, &r2));
	assert_int_equal(r1.ncert, 4);
	assert_int_equal(r2.ncert, 5);
	log[nl] = r1;
	r = agree_accept(log, nl + 1, &r2);
	assert_err(r, AGREE_REPLACE);
	k1 = r2;
	log[nl] = r2;
	r = agree_accept(log, nl + 1, &r1);
	assert_err(r, AGREE_KEEP);
	k2 = r2;
	assert_int_equal(agree_revision_cmp(&k1, &k2), 0);
}

static void test_previous_good_walk(void **state)
{
	struct store_revision log[8];
	const struct store_revision *w;
	uint8_t v[3] = {1, 2, 3};
	size_t n = 0;

	(void)state;
	log[n++] = deploy(1, 1, "", 1, 100);
	log[n++] = deploy(2, 2, "", 1, 200);
	log[n++] = deploy(3, 3, "", 1, 300);
	/* rev 3 rolled back: art 3 condemned */
	log[n++] = rollback_with_cert(4, 2, "", 301, v, 3, 3);
	log[n++] = deploy(5, 3, "site:a", 1, 500);  /* forced redeploy of art 3, site a only */
	log[n++] = deploy(6, 9, "site:b", 1, 600);  /* other site: does not cover site a */
	log[n++] = deploy(7, 2, "site:a", 1, 700);  /* the bad one: art 2 */
	assert_err(agree_previous_good(log, n, 7, &w), 0);
	assert_int_equal(w->rev, 5);
	assert_err(agree_previous_good(log, n, 5, &w), 0);
	assert_int_equal(w->rev, 4);
	assert_err(agree_previous_good(log, n, 3, &w), 0);
	assert_int_equal(w->rev, 2);
	assert_err(agree_previous_good(log, n, 1, &w), -AGREE_ENOTARGET);
	assert_err(agree_previous_good(log, n, 42, &w), -AGREE_ENOREV);
	/* a hole (rev 5 missing) on the way: wait instead of guessing rev 4 */
	log[4] = log[--n];
	assert_err(agree_previous_good(log, n, 7, &w), -AGREE_EGAP);
}

/* The bad artifact also at earlier revs, and condemned ones, are skipped; oldest held bound. */
static void test_previous_good_skips_condemned(void **state)
{
	struct store_revision log[6];
	const struct store_revision *w;
	uint8_t v[3] = {1, 2, 3};
	size_t n = 0;

	(void)state;
	log[n++] = deploy(2, 1, "", 1, 100); /* the oldest held (rev 1 pruned) */
	log[n++] = deploy(3, 2, "", 1, 200);
	log[n++] = rollback_with_cert(4, 1, "", 201, v, 3, 2); /* condemns art 2 */
	log[n++] = deploy(5, 5, "", 1, 400);
	log[n++] = deploy(6, 1, "", 1, 500); /* bad: art 1 */
	assert_err(agree_previous_good(log, n, 6, &w), 0);
	assert_int_equal(w->rev, 5);
	log[3].artifact = art(1);
	assert_err(agree_previous_good(log, n, 6, &w), -AGREE_ENOTARGET);
}

/* ---- operator targets (--to) ------------------------------------------------------------- */

static void test_explicit_target(void **state)
{
	struct store_revision log[3], out;
	struct store_vote v[5] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12), vote(3, 4, 13),
				  vote(3, 5, 14)};
	const uint64_t tg[5] = {1, 1, 0, 0, 1};
	size_t nl = base_log(log);
	struct store_id a1 = art(1);
	struct agree_tally t;
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		v[i].target = tg[i];
	assert_err(decide(log, nl, 3, v, 4, &out), -AGREE_ENOQUORUM);
	assert_int_equal(agree_tally(&log[2], bind(&log[2], v, 4), 4, &t), 0);
	assert_int_equal(t.counted, 4);
	assert_int_equal(t.target_votes, 2);
	assert_int_equal(t.target, 0); /* tie: smaller target leads */
	assert_false(t.decided);
	assert_false(t.stuck); /* one elector unseen: 2 + 1 >= 3 */
	assert_err(decide(log, nl, 3, v, 5, &out), 0);
	assert_memory_equal(out.artifact.b, a1.b, STORE_ID_LEN);
	assert_string_equal(out.reason, "cluster rollback of rev 3 to rev 1 (quorum)");
	assert_int_equal(out.ncert, 3);
	v[0].target = v[1].target = v[4].target = 3;
	assert_err(decide(log, nl, 3, v, 5, &out), -AGREE_EMISMATCH);
	v[0].target = v[1].target = v[4].target = 7;
	assert_err(decide(log, nl, 3, v, 5, &out), -AGREE_EMISMATCH);
	log[0].rev = 0; /* "rev 1 missing" */
	v[0].target = v[1].target = v[4].target = 1;
	assert_err(decide(log, nl, 3, v, 5, &out), -AGREE_ENOREV);
}

/* ---- rule 6: verification ---------------------------------------------------------------- */

static void test_verify_certificates(void **state)
{
	struct store_revision log[3], r;
	size_t nl = base_log(log);
	uint8_t ok[3] = {1, 2, 3}, few[2] = {1, 2}, dup[4] = {1, 1, 2, 2};
	uint8_t strangers[4] = {1, 2, 60, 61};

	(void)state;
	r = rollback_with_cert(4, 2, "", 301, ok, 3, 3);
	assert_err(agree_verify(log, nl, &r), 0);
	r = rollback_with_cert(4, 2, "", 301, few, 2, 3);
	assert_err(agree_verify(log, nl, &r), -AGREE_ECERT);
	assert_err(agree_accept(log, nl, &r), -AGREE_ECERT);
	/* padded with duplicates: not sorted-unique, malformed */
	r = rollback_with_cert(4, 2, "", 301, dup, 4, 3);
	assert_err(agree_verify(log, nl, &r), -EBADMSG);
	/* padded with non-electors */
	r = rollback_with_cert(4, 2, "", 301, strangers, 4, 3);
	assert_err(agree_verify(log, nl, &r), -AGREE_ECERT);
	/* unsorted certificate */
	r = rollback_with_cert(4, 2, "", 301, (const uint8_t[]){3, 2, 1}, 3, 3);
	assert_err(agree_verify(log, nl, &r), -EBADMSG);
	/* a stricter rule in the record */
	r = rollback_with_cert(4, 2, "", 301, ok, 3, 3);
	r.quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT, .count = 4};
	assert_err(agree_verify(NULL, 0, &r), -AGREE_ECERT);
}

/*
 * A certificate is judged by the record alone: the same rollback is accepted (or refused) by
 * receivers holding nothing, the bad record, other records, a different record at the bad rev,
 * later revisions, or other rollbacks, and the answer never changes as their logs grow.
 */
static void test_verify_independent_of_receiver(void **state)
{
	struct store_revision logs[6][8];
	size_t nlogs[6];
	uint8_t ok[3] = {2, 4, 5}, few[2] = {4, 5};
	struct store_revision good = rollback_with_cert(4, 2, "", 301, ok, 3, 3);
	struct store_revision bad = rollback_with_cert(4, 2, "", 301, few, 2, 3);
	struct store_revision joiners = rollback_with_cert(4, 2, "", 301, ok, 3, 3);

	(void)state;
	/* a certificate of 3 of an electorate {1, 2, 4, 5, 6, 7, 8} it claims: 3 < 4 */
	joiners.elect = elect_of((const uint8_t[]){1, 2, 4, 5, 6, 7, 8}, 7);
	joiners.nelect = 7;
	nlogs[0] = 0;
	nlogs[1] = base_log(logs[1]);
	nlogs[2] = base_log(logs[2]); /* a receiver that grew: its later deploys have a bigger
				       * electorate, which must not matter */
	logs[2][nlogs[2]] = deploy(5, 7, "", 6, 600);
	set_elect_range(&logs[2][nlogs[2]++], 9);
	nlogs[3] = base_log(logs[3]); /* a different record at rev 3 (another hlc) */
	logs[3][2] = deploy(3, 8, "", 9, 310);
	set_elect_range(&logs[3][2], 2);
	nlogs[4] = 2; /* the bad revision not yet received */
	base_log(logs[4]);
	nlogs[5] = base_log(logs[5]); /* other rollbacks held */
	logs[5][nlogs[5]++] = rollback_with_cert(2, 1, "", 101, ok, 3, 1);
	for (int i = 0; i < 6; i++) {
		assert_err(agree_verify(logs[i], nlogs[i], &good), 0);
		assert_err(agree_verify(logs[i], nlogs[i], &bad), -AGREE_ECERT);
		assert_err(agree_verify(logs[i], nlogs[i], &joiners), -AGREE_ECERT);
		assert_true(agree_accept(logs[i], nlogs[i], &good) >= AGREE_STORE);
		assert_err(agree_accept(logs[i], nlogs[i], &bad), -AGREE_ECERT);
	}
}

/*
 * Seed 933 of tests/sim/sim_agree.c, reduced: two deploys at rev 3 written on two sides of a
 * partition carry the same hlc (their clocks' milliseconds coincide). A quorum rolls back D
 * (art 3); E (art 8, higher origin) wins rev 3 by rule 1. The rollback of D is valid, and
 * every node must accept it the same way whichever record it holds at rev 3: a check against
 * "the held bad record, named by hlc + 1" refused it on the nodes holding E, forever, while
 * the others kept it. Neither may the subjects of D and E be confused (rule 3).
 */
static void test_verify_ignores_held_record(void **state)
{
	struct store_revision ld[3], le[3], out;
	struct store_vote v[3] = {vote(3, 1, 10), vote(3, 2, 11), vote(3, 3, 12)};
	struct agree_tally t;

	(void)state;
	base_log(ld);
	base_log(le);
	le[2] = deploy(3, 8, "", 9, 300); /* same rev, same hlc, another origin and artifact */
	assert_true(agree_revision_cmp(&le[2], &ld[2]) > 0);
	set_elect_range(&le[2], 4);
	assert_err(decide(ld, 3, 3, v, 3, &out), 0);
	assert_memory_equal(out.condemns.b, art(3).b, STORE_ID_LEN);
	assert_err(agree_verify(ld, 3, &out), 0);
	assert_err(agree_verify(le, 3, &out), 0);
	assert_err(agree_accept(le, 3, &out), AGREE_STORE);
	/* the votes judged D: they never count on E, same hlc or not */
	{
		struct store_vote vd[3];

		for (int i = 0; i < 3; i++) {
			vd[i] = v[i];
			vd[i].subject = agree_subject(&ld[2]);
		}
		assert_int_equal(agree_tally(&le[2], vd, 3, &t), 0);
		assert_int_equal(t.counted, 0);
		assert_int_equal(agree_tally(&ld[2], vd, 3, &t), 0);
		assert_int_equal(t.counted, 3);
	}
	/* a rollback with an electorate, rule or condemned artifact of its own is judged on its
	 * own terms, identically everywhere (forging one needs the cluster key: agree.h rule 6) */
	{
		struct store_revision r = out;

		r.quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT, .count = 3};
		r.condemns = art(1);
		assert_err(agree_verify(ld, 3, &r), 0);
		assert_err(agree_verify(le, 3, &r), 0);
		r.quorum.count = 4;
		assert_err(agree_verify(ld, 3, &r), -AGREE_ECERT);
		assert_err(agree_verify(le, 3, &r), -AGREE_ECERT);
	}
}

/*
 * The subject is the judged record's identity, not its hlc: a deploy and a cluster rollback
 * at one rev can share an hlc (the rollback's is its bad record's + 1, and hlc_now gives a
 * deploy exactly that when its node's wall clock is behind); two rollbacks of one record from
 * logs that differed below it share theirs. Votes on one never count on the other.
 */
static void test_subject_is_identity(void **state)
{
	uint8_t c3[3] = {1, 2, 3}, c4[4] = {1, 2, 3, 4};
	struct store_revision d = deploy(3, 9, "", 4, 301);
	struct store_revision r = rollback_with_cert(3, 2, "", 301, c3, 3, 7);
	struct store_revision r2 = rollback_with_cert(3, 2, "", 301, c4, 4, 7);
	struct store_revision r3 = rollback_with_cert(3, 1, "", 301, c3, 3, 7);
	struct store_vote v[3];
	struct agree_tally t;

	(void)state;
	assert_int_not_equal(agree_subject(&d), agree_subject(&r));
	assert_int_equal(agree_subject(&r), agree_subject(&r2)); /* certificate: not identity */
	assert_int_not_equal(agree_subject(&r), agree_subject(&r3)); /* another artifact */
	assert_int_equal(agree_subject(NULL), 0);
	for (int i = 0; i < 3; i++) {
		v[i] = vote_on(3, agree_subject(&d), (uint8_t)(i + 1), 10 + (uint64_t)i);
	}
	assert_int_equal(agree_tally(&d, v, 3, &t), 0);
	assert_true(t.decided);
	assert_int_equal(agree_tally(&r, v, 3, &t), 0);
	assert_int_equal(t.counted, 0);
	assert_int_equal(agree_tally(&r3, v, 3, &t), 0);
	assert_int_equal(t.counted, 0);
	/* every identity field changes it */
	{
		struct store_revision x;
		uint64_t base = agree_subject(&d);

#define CHANGES(stmt)                                                                         \
	do {                                                                                  \
		x = d;                                                                        \
		stmt;                                                                         \
		assert_int_not_equal(agree_subject(&x), base);                                \
	} while (0)
		CHANGES(x.service[0] = 'x');
		CHANGES(x.rev++);
		CHANGES(x.kind = STORE_REV_ROLLBACK);
		CHANGES(x.hlc++);
		CHANGES(x.origin[3] ^= 1);
		CHANGES(x.artifact.b[5] ^= 1);
		CHANGES(snprintf(x.scope, sizeof(x.scope), "site:a"));
		CHANGES(x.operator_uid++);
		CHANGES(x.operator_pid++);
		CHANGES(x.reason[0] ^= 1);
		CHANGES(set_elect_range(&x, 4));
		CHANGES(x.quorum.kind = AGREE_QUORUM_COUNT; x.quorum.count = 2);
		CHANGES(x.condemns.b[0] = 1);
#undef CHANGES
		/* and only identity: the certificate does not */
		x = d;
		x.ncert = 2;
		x.cert = elect_of(c3, 2);
		assert_int_equal(agree_subject(&x), base);
	}
	/* a fixed value: every node, every build, every version computes the same subject (the
	 * byte order of agree.c's digest, recomputed independently) */
	{
		struct store_revision d1 = deploy(1, 1, "", 1, 100);

		assert_int_equal(agree_subject(&d1), 0x8e7f8f204bfabbfdULL);
	}
}

static void test_verify_malformed(void **state)
{
	uint8_t ok[3] = {1, 2, 3};
	struct store_revision r, d = deploy(2, 2, "", 1, 1), x;

	(void)state;
	r = rollback_with_cert(4, 2, "", 301, ok, 3, 3);
	assert_err(agree_verify(NULL, 0, &r), 0);
	x = r;
	x.origin[3] = 1;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.operator_uid = 0;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	snprintf(x.scope, sizeof(x.scope), "site:");
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.rev = 1;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.hlc = 0;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.kind = 9;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	memset(x.service, 'x', sizeof(x.service)); /* unterminated */
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x.service[0] = 0;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.cert = NULL;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x.ncert = 0;
	assert_err(agree_verify(NULL, 0, &x), -AGREE_ECERT);
	/* the electorate: missing, empty, unsorted, duplicated, too big */
	x = r;
	x.elect = NULL;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.nelect = 0;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.elect = elect_of((const uint8_t[]){1, 3, 2, 4, 5}, 5);
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x.elect = elect_of((const uint8_t[]){1, 2, 2, 4, 5}, 5);
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = r;
	x.nelect = STORE_ELECT_MAX + 1;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	/* the rule */
	x = r;
	x.quorum = (struct store_quorum){.kind = AGREE_QUORUM_COUNT};
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x.quorum = (struct store_quorum){.kind = 5};
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	/* the condemned artifact: none, or the one the rollback runs */
	x = r;
	memset(&x.condemns, 0, sizeof(x.condemns));
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x.condemns = x.artifact;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	/* deploys: well-formed only, with an electorate, never a certificate or condemns */
	assert_err(agree_verify(NULL, 0, &d), 0);
	x = d;
	x.ncert = 1;
	x.cert = elect_of(ok, 1);
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = d;
	x.condemns = art(9);
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = d;
	x.nelect = 0; /* a deploy to a scope nobody on the roster is in */
	assert_err(agree_verify(NULL, 0, &x), 0);
	x.elect = NULL;
	assert_err(agree_verify(NULL, 0, &x), 0);
	x = d;
	x.elect = NULL;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = d;
	x.elect = elect_of((const uint8_t[]){5, 4, 3, 2, 1}, 5);
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = d;
	x.quorum.den = 3;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	x = d;
	x.rev = 0;
	assert_err(agree_verify(NULL, 0, &x), -EBADMSG);
	assert_err(agree_verify(NULL, 0, NULL), -EINVAL);
}

/* ---- site scope -------------------------------------------------------------------------- */

static void test_site_quorum(void **state)
{
	struct agree_member m[7];
	struct store_revision log[3], out;
	struct store_vote v[6] = {vote(3, 2, 1), vote(3, 4, 2), vote(3, 6, 3), vote(3, 1, 4),
				  vote(3, 3, 5), vote(3, 5, 6)};
	uint8_t(*ids)[STORE_NODE_ID_LEN];
	uint32_t ne;
	size_t nl = base_log(log);

	(void)state;
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 7; i++) { /* site a: 1,3,5,7; site b: 2,4,6 */
		node_id(m[i].id, (uint8_t)(i + 1));
		m[i].site = i % 2 ? "b" : "a";
	}
	snprintf(log[2].scope, sizeof(log[2].scope), "site:a");
	assert_err(agree_electorate(m, 7, log[2].scope, &ids, &ne), 0);
	log[2].elect = elect_of((const uint8_t[]){1, 3, 5, 7}, 4);
	log[2].nelect = 4;
	assert_int_equal(ne, 4);
	assert_memory_equal(ids, log[2].elect, 4 * STORE_NODE_ID_LEN);
	free(ids);
	/* all of site b voting means nothing for a site-a revision */
	assert_err(decide(log, nl, 3, v, 3, &out), -AGREE_ENOQUORUM);
	assert_err(decide(log, nl, 3, v, 5, &out), -AGREE_ENOQUORUM);
	assert_err(decide(log, nl, 3, v, 6, &out), 0);
	assert_string_equal(out.scope, "site:a");
	assert_true(cert_is(&out, (const uint8_t[]){1, 3, 5}, 3));
	{
		struct store_revision rb = rollback_with_cert(4, 2, "site:a", 301,
							      (const uint8_t[]){2, 4, 6}, 3, 3);
		struct store_revision ra = rollback_with_cert(4, 2, "site:a", 301,
							      (const uint8_t[]){1, 3, 5}, 3, 3);

		rb.elect = ra.elect = log[2].elect;
		rb.nelect = ra.nelect = 4;
		assert_err(agree_verify(log, nl, &rb), -AGREE_ECERT);
		assert_err(agree_verify(log, nl, &ra), 0);
	}
}

/* ---- rule 7: condemned ------------------------------------------------------------------- */

static void test_condemned(void **state)
{
	struct store_revision log[6], out;
	struct store_vote v[3] = {vote(3, 1, 1), vote(3, 2, 2), vote(3, 3, 3)};
	size_t nl = base_log(log);
	struct store_id a3 = art(3), a2 = art(2), got;

	(void)state;
	assert_false(agree_is_condemned(log, nl, &a3, UINT64_MAX));
	assert_err(agree_check_deploy(log, nl, &a3, false), 0);
	assert_err(decide(log, nl, 3, v, 3, &out), 0);
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
	/* a rollback naming no artifact to condemn */
	out.condemns = (struct store_id){{0}};
	assert_err(agree_condemned_by(log, nl, &out, &got), -AGREE_ENOREV);
}

/*
 * Condemnation follows the decision record's condemns field, whichever record later wins the
 * bad rev: two nodes that hold different records at rev 3 (one received the concurrent deploy
 * E that wins rev 3 by rule 1, the other not yet) condemn the same artifact.
 */
static void test_condemnation_follows_record(void **state)
{
	struct store_revision l1[5], l2[6], out;
	struct store_vote v[3] = {vote(3, 1, 1), vote(3, 2, 2), vote(3, 3, 3)};
	size_t n1 = base_log(l1), n2;
	struct store_id a3 = art(3), a9 = art(9), got;

	(void)state;
	assert_err(decide(l1, n1, 3, v, 3, &out), 0);
	l1[n1++] = out;
	/* node 2: the same, plus E (art 9, hlc 310) that beats D at rev 3 */
	n2 = base_log(l2);
	l2[n2++] = out;
	l2[n2++] = deploy(3, 9, "", 4, 310);
	assert_ptr_equal(agree_at(l2, n2, 3), &l2[4]);
	for (int k = 0; k < 2; k++) {
		const struct store_revision *lg = k ? l2 : l1;
		size_t nl = k ? n2 : n1;

		assert_true(agree_is_condemned(lg, nl, &a3, UINT64_MAX));
		assert_false(agree_is_condemned(lg, nl, &a9, UINT64_MAX));
		assert_err(agree_check_deploy(lg, nl, &a3, false), -STORE_ECONDEMNED);
		assert_err(agree_check_deploy(lg, nl, &a9, false), 0);
		assert_err(agree_condemned_by(lg, nl, agree_at(lg, nl, 4), &got), 0);
		assert_memory_equal(got.b, a3.b, STORE_ID_LEN);
	}
}

/* ---- rule 8: local rollback -------------------------------------------------------------- */

static void test_local_rollback(void **state)
{
	struct store_revision log[5];
	struct agree_local loc;
	struct store_id got, a2 = art(2), a3 = art(3), a7 = art(7), a1 = art(1);
	size_t nl = base_log(log);

	(void)state;
	assert_err(agree_effective(log, nl, NULL, NULL, &got), 0);
	assert_memory_equal(got.b, a3.b, STORE_ID_LEN);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 0, 999, &loc), 0);
	assert_int_equal(loc.base_rev, 3);
	assert_int_equal(loc.target_rev, 2);
	assert_memory_equal(loc.artifact.b, a2.b, STORE_ID_LEN);
	assert_err(agree_effective(log, nl, NULL, &loc, &got), 1);
	assert_memory_equal(got.b, a2.b, STORE_ID_LEN);
	assert_int_equal(agree_desired(log, nl, NULL)->rev, 3);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 1, 999, &loc), 0);
	assert_memory_equal(loc.artifact.b, a1.b, STORE_ID_LEN);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 3, 999, &loc), -AGREE_EMISMATCH);
	assert_err(agree_local_rollback(log, nl, "web", NULL, 0, 999, NULL), -EINVAL);
	assert_err(agree_local_rollback(log, 0, "web", NULL, 0, 999, &loc), -AGREE_ENOREV);
	log[nl++] = deploy(4, 7, "", 1, 900);
	assert_err(agree_effective(log, nl, NULL, &loc, &got), 0);
	assert_memory_equal(got.b, a7.b, STORE_ID_LEN);
	assert_err(agree_effective(log, 0, NULL, NULL, &got), -AGREE_ENOREV);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(agree_strerror(-AGREE_ECERT), "rollback certificate below the quorum");
	assert_string_equal(agree_strerror(-AGREE_EGAP),
			    "a revision needed for the decision is missing");
	assert_non_null(agree_strerror(-ENOMEM));
	assert_string_equal(agree_strerror(0), "success");
}

/*
 * Signed votes and certificates (agent/base/sign.h): a decision built from signed votes
 * verifies against the electorate's keys; a forged, missing or re-keyed signature does not;
 * the rollback matches the record it judged and no other electorate.
 */
static void test_signed_certificate(void **state)
{
	uint8_t pk[5][32], sk[5][64], seed[32] = {0}, msg[AGREE_VOTE_MSG_MAX];
	struct store_revision log[2], rb;
	struct store_vote v[3];

	(void)state;
	assert_true(sodium_init() >= 0);
	log[0] = deploy(1, 1, "", 1, 100);
	log[1] = deploy(2, 2, "", 1, 200);
	for (int i = 0; i < 5; i++) {
		seed[0] = (uint8_t)(i + 1);
		crypto_sign_seed_keypair(pk[i], sk[i], seed);
	}
	for (int r = 0; r < 2; r++) {
		log[r].elect_keys = tmalloc(5 * STORE_KEY_LEN);
		memcpy(log[r].elect_keys, pk, sizeof(pk));
	}
	uint64_t subj = agree_subject(&log[1]);
	for (int i = 0; i < 3; i++) {
		v[i] = vote_on(2, subj, (uint8_t)(i + 1), 300 + (uint64_t)i);
		crypto_sign_detached(v[i].sig, NULL, msg, agree_vote_msg(&v[i], msg), sk[i]);
		assert_true(agree_vote_verify(&v[i], pk[i]));
		assert_false(agree_vote_verify(&v[i], pk[i + 1]));
	}
	assert_int_equal(agree_decide(log, 2, "web", 2, v, 3, &rb), 0);
	own(&rb);
	assert_int_equal(rb.ncert, 3);
	assert_non_null(rb.cert_sigs);
	assert_int_equal(rb.cert_subject, subj);
	assert_int_equal(agree_verify_signatures(&rb), 0);
	assert_int_equal(agree_verify(log, 2, &rb), 0);
	assert_true(agree_rollback_matches(&log[1], &rb));
	/* a forged signature, a vote moved to another voter, no signatures, other keys */
	rb.cert_sigs[1].sig[0] ^= 1;
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	rb.cert_sigs[1].sig[0] ^= 1;
	rb.cert_sigs[1].hlc++;
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	rb.cert_sigs[1].hlc--;
	rb.cert_target = 1;
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	rb.cert_target = 0;
	struct store_cert_sig *cs = rb.cert_sigs;
	rb.cert_sigs = NULL;
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	rb.cert_sigs = cs;
	assert_int_equal(agree_verify_signatures(&rb), 0);
	uint8_t(*keys)[STORE_KEY_LEN] = rb.elect_keys;
	rb.elect_keys = tmalloc(5 * STORE_KEY_LEN);
	memcpy(rb.elect_keys, keys, 5 * STORE_KEY_LEN);
	rb.elect_keys[0][0] ^= 1; /* a key of the forger's choosing for elector 1 */
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	/* ... and such a record is not the judged record's electorate */
	assert_false(agree_rollback_matches(&log[1], &rb));
	rb.elect_keys = keys;
	rb.condemns = art(9);
	assert_false(agree_rollback_matches(&log[1], &rb));
	/* unsigned votes decide nothing that verifies */
	for (int i = 0; i < 3; i++)
		memset(v[i].sig, 0, sizeof(v[i].sig));
	assert_int_equal(agree_decide(log, 2, "web", 2, v, 3, &rb), 0);
	own(&rb);
	assert_int_equal(agree_verify_signatures(&rb), -AGREE_ESIG);
	/* the electorate's keys follow the roster's; nobody in scope: no keys at all (a store
	 * revision without electors has none) */
	{
		struct agree_member ro[2] = {{.state = AGREE_ALIVE, .site = "a"},
					     {.state = AGREE_DEAD, .site = "b"}};
		uint8_t(*ids)[STORE_NODE_ID_LEN], (*ks)[STORE_KEY_LEN];
		uint32_t n;
		node_id(ro[0].id, 2);
		node_id(ro[1].id, 1);
		memcpy(ro[0].key, pk[1], 32);
		memcpy(ro[1].key, pk[0], 32);
		assert_int_equal(agree_electorate_keys(ro, 2, "", &ids, &ks, &n), 0);
		assert_int_equal(n, 2);
		assert_memory_equal(ks[0], pk[0], 32);	/* sorted with their ids */
		assert_memory_equal(ks[1], pk[1], 32);
		free(ids);
		free(ks);
		assert_int_equal(agree_electorate_keys(ro, 2, "site:c", &ids, &ks, &n), 0);
		assert_int_equal(n, 0);
		assert_null(ks);
		free(ids);
	}
	/* a deploy: nothing to check here (its origin signs it, the agent checks that) */
	assert_int_equal(agree_verify_signatures(&log[1]), 0);
	/* the origin's message covers the record but not its signature */
	uint8_t *m1, *m2;
	size_t l1, l2;
	assert_int_equal(agree_deploy_msg(&log[1], &m1, &l1), 0);
	log[1].origin_sig[0] = 7;
	assert_int_equal(agree_deploy_msg(&log[1], &m2, &l2), 0);
	assert_true(l1 == l2 && memcmp(m1, m2, l1) == 0);
	free(m2);
	log[1].artifact = art(3);
	assert_int_equal(agree_deploy_msg(&log[1], &m2, &l2), 0);
	assert_false(l1 == l2 && memcmp(m1, m2, l1) == 0);
	free(m1);
	free(m2);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_quorum_sizes),
		T(test_signed_certificate),
		T(test_scopes),
		T(test_electorate),
		T(test_order),
		T(test_concurrent_same_rev_any_order),
		T(test_concurrent_same_rev_random),
		T(test_desired_with_sites),
		T(test_tally_matches_reference_model),
		T(test_tally_ignores_strangers_subject0),
		T(test_joiner_never_counts),
		T(test_latest_vote_counts),
		T(test_minority_cannot_decide),
		T(test_subject_binds_votes),
		T(test_split_resolves_by_rounds),
		T(test_stuck_leading_target),
		T(test_stuck_excludes_decision),
		T(test_decide_record),
		T(test_quorum_from_record),
		T(test_two_views_same_decision),
		T(test_previous_good_walk),
		T(test_previous_good_skips_condemned),
		T(test_explicit_target),
		T(test_verify_certificates),
		T(test_verify_independent_of_receiver),
		T(test_verify_ignores_held_record),
		T(test_subject_is_identity),
		T(test_verify_malformed),
		T(test_site_quorum),
		T(test_condemned),
		T(test_condemnation_follows_record),
		T(test_local_rollback),
		T(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
