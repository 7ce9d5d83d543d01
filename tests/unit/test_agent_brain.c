/*
 * tests/unit/test_agent_brain.c: the cluster brain's record codec, and several brains (each
 * over its own real LMDB store) connected by an in-process fake transport that carries the
 * brains' OWN records only (the real gossip is tested in its module; the integration tests
 * run real agentd processes). The brains run with no_runtime: what they decide is read with
 * fleet_desired, not executed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/fleet/endpoints.h"
#include "agent/fleet/fleet.h"
#include "agent/fleet/fleet_int.h"	/* fleet__strerror */
#include "agent/fleet/records.h"
#include "agent/base/sign.h"
#include "agent/ctl/ctl_proto.h"
#include "store/import.h"

#define EQ(a, b) assert_int_equal((a), (b))

/* ---- Codec ----------------------------------------------------------------------------------- */

/* The canonical messages nodes sign are a wire contract: a change of one byte makes every
 * signature of another version fail. Their digests for fixed fields, pinned. */
static void msg_digest(const uint8_t *msg, size_t n, char hex[33])
{
	uint8_t d[16];
	crypto_generichash(d, sizeof d, msg, n, NULL, 0);
	sodium_bin2hex(hex, 33, d, sizeof d);
}

static void test_signed_msgs(void **state)
{
	(void)state;
	uint8_t owner[STORE_NODE_ID_LEN], msg[FLEET_EP_MSG_MAX + FLEET_HEALTH_MSG_MAX];
	char hex[33];
	for (int i = 0; i < STORE_NODE_ID_LEN; i++)
		owner[i] = (uint8_t)(0xa0 + i);

	struct fleet_health h = {.running_rev = 7, .state = 1, .since_hlc = 0x1122334455667788ull,
				 .missed = true, .diverged = true, .desired_rev = 9, .nheld = 2,
				 .local_base_rev = 3, .local_target_rev = 2, .stamp = 99};
	strcpy(h.service, "web");
	memset(h.running.b, 0x11, STORE_ID_LEN);
	memset(h.held[0].b, 0x22, STORE_ID_LEN);
	memset(h.held[1].b, 0x33, STORE_ID_LEN);
	msg_digest(msg, fleet_health_msg(owner, &h, msg), hex);
	assert_string_equal(hex, "afd1ec3ffe2c3d2ee0c0ea37ee3fc233");

	struct fleet_roster ro = {.left = true, .hlc = 0x0102030405060708ull};
	strcpy(ro.site, "site-a");
	strcpy(ro.addr, "10.0.0.5:7946");
	memset(ro.key, 0x44, STORE_KEY_LEN);
	msg_digest(msg, fleet_roster_msg(owner, &ro, msg), hex);
	assert_string_equal(hex, "37ce0d2a799201e7d0674525c30804ff");

	struct fleet_endpoint e = {.port = 8080, .weight = 100, .protocol = 1, .state = 2,
				   .rev = 5, .hlc = 77, .stamp = 78};
	strcpy(e.node, "n1");
	strcpy(e.site, "site-a");
	strcpy(e.service, "web");
	strcpy(e.addr, "10.0.0.5");
	msg_digest(msg, fleet_endpoint_msg(owner, &e, msg), hex);
	assert_string_equal(hex, "a71d385ad084a6b089d18cd47c040a50");
}

static void test_keys(void **state)
{
	(void)state;
	struct fleet_key k = {.type = FLEET_REC_CERT, .rev = 12, .chunk = 3}, k2;
	char buf[FLEET_REC_KEY_MAX + 1];
	strcpy(k.service, "web");
	int n = fleet_key_format(&k, buf, sizeof buf);
	assert_true(n > 0);
	assert_string_equal(buf, "cert/web/12/3");
	EQ(fleet_key_parse(buf, (size_t)n, &k2), 0);
	EQ(k2.type, FLEET_REC_CERT);
	EQ(k2.rev, 12);
	EQ(k2.chunk, 3);
	assert_string_equal(k2.service, "web");
	EQ(fleet_key_parse("health/web", 10, &k2), 0);
	EQ(k2.type, FLEET_REC_HEALTH);
	static const char *const bad[] = {"rev/web/0", "rev/web/01", "rev/web/", "rev//1",
					  "rev/w b/1", "vote/web/1/2", "health/web/1",
					  "rev/web/99999999999999999999999", "cert/web/1",
					  "cert/web/1/x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = fleet_key_parse(bad[i], strlen(bad[i]), &k2);
		if (r != -EBADMSG)
			fail_msg("key %s: %d, want -EBADMSG", bad[i], r);
	}
	EQ(fleet_key_parse("members/abc", 11, &k2), -ENOENT);
	k.rev = 0;
	EQ(fleet_key_format(&k, buf, sizeof buf), -EINVAL);
}

static void fill_rev(struct store_revision *r, uint32_t ncert)
{
	memset(r, 0, sizeof *r);
	strcpy(r->service, "web");
	r->rev = 7;
	r->kind = ncert ? STORE_REV_ROLLBACK : STORE_REV_DEPLOY;
	memset(r->artifact.b, 0xab, sizeof r->artifact.b);
	r->hlc = (UINT64_C(1764182400000) << 16) | 9;
	r->operator_uid = ncert ? UINT32_MAX : 1000;
	r->operator_pid = ncert ? 0 : 4242;
	snprintf(r->reason, sizeof r->reason, "%s", ncert ? "cluster rollback" : "a reason");
	r->ncert = ncert;
	if (ncert) {
		r->cert = calloc(ncert, STORE_NODE_ID_LEN);
		r->cert_sigs = calloc(ncert, sizeof *r->cert_sigs);
		for (uint32_t i = 0; i < ncert; i++) {
			for (int j = 0; j < STORE_NODE_ID_LEN; j++)
				r->cert[i][j] = (uint8_t)(i * 7 + j);
			r->cert_sigs[i].hlc = UINT64_MAX - i;
			r->cert_sigs[i].reason = i & 1;
			memset(r->cert_sigs[i].sig, (int)i, STORE_SIG_LEN);
		}
		r->cert_subject = 0x1234;
	}
}

static void test_rev_and_cert(void **state)
{
	(void)state;
	struct store_revision r, d;
	uint8_t *buf;
	size_t len;
	fill_rev(&r, 95);
	EQ(fleet_rev_encode(&r, &buf, &len), 0);
	assert_true(len <= FLEET_REC_VALUE_MAX);
	EQ(fleet_rev_decode(buf, len, &d), 0);
	EQ(d.ncert, 95);
	assert_null(d.cert);
	EQ(d.rev, 7);
	EQ(d.kind, STORE_REV_ROLLBACK);
	EQ(d.hlc, r.hlc);
	/* every strict prefix is refused */
	for (size_t i = 0; i < len; i++) {
		struct store_revision x;
		int e = fleet_rev_decode(buf, i, &x);
		if (e == 0)
			fail_msg("prefix of %zu bytes decoded", i);
	}
	free(buf);
	uint8_t ids[95][STORE_NODE_ID_LEN];
	struct store_cert_sig sigs[95];
	EQ(fleet_cert_chunks(95), 14);
	for (uint32_t i = 0; i < 14; i++) {
		struct fleet_cert_chunk c;
		EQ(fleet_cert_encode(&r, i, &buf, &len), 0);
		assert_true(len <= FLEET_REC_VALUE_MAX);
		EQ(fleet_cert_decode(buf, len, &c), 0);
		EQ(c.ncert, 95);
		EQ(c.index, i);
		EQ(c.n, i < 13 ? FLEET_CERT_PER_CHUNK : 95 - 13 * FLEET_CERT_PER_CHUNK);
		assert_true(c.extra);
		memcpy(ids[i * FLEET_CERT_PER_CHUNK], c.ids, (size_t)c.n * STORE_NODE_ID_LEN);
		memcpy(&sigs[i * FLEET_CERT_PER_CHUNK], c.sigs, (size_t)c.n * sizeof c.sigs[0]);
		/* a chunk is not a vote nor a revision, nor an electorate chunk */
		struct store_vote v;
		EQ(fleet_vote_decode(buf, len, &v), -EBADMSG);
		EQ(fleet_rev_decode(buf, len, &d), -EBADMSG);
		EQ(fleet_ids_decode(buf, len, FLEET_REC_ELECT, &c), -EBADMSG);
		for (size_t k = 0; k < len; k++)
			if (fleet_cert_decode(buf, k, &c) == 0)
				fail_msg("cert chunk prefix of %zu bytes decoded", k);
		free(buf);
	}
	assert_memory_equal(ids, r.cert, sizeof ids);
	assert_memory_equal(sigs, r.cert_sigs, sizeof sigs);
	EQ(fleet_cert_encode(&r, 14, &buf, &len), -EINVAL);
	/* the electorate with its keys: FLEET_ELECT_PER_CHUNK per chunk, each under the limit */
	r.nelect = 128;
	r.elect = calloc(128, STORE_NODE_ID_LEN);
	r.elect_keys = calloc(128, STORE_KEY_LEN);
	for (uint32_t i = 0; i < 128; i++) {
		r.elect[i][0] = (uint8_t)i;
		memset(r.elect_keys[i], (int)(255 - i), STORE_KEY_LEN);
	}
	EQ(fleet_elect_chunks(128), 11);
	for (uint32_t i = 0; i < 11; i++) {
		struct fleet_cert_chunk c;
		EQ(fleet_elect_encode(&r, i, &buf, &len), 0);
		assert_true(len <= FLEET_REC_VALUE_MAX);
		EQ(fleet_ids_decode(buf, len, FLEET_REC_ELECT, &c), 0);
		EQ(c.ncert, 128);
		EQ(c.n, i < 10 ? FLEET_ELECT_PER_CHUNK : 128 - 10 * FLEET_ELECT_PER_CHUNK);
		assert_true(c.extra);
		assert_memory_equal(c.keys, r.elect_keys[i * FLEET_ELECT_PER_CHUNK],
				    (size_t)c.n * STORE_KEY_LEN);
		free(buf);
	}
	store_revision_release(&r);
	store_revision_release(&d);
}

static void test_vote_health(void **state)
{
	(void)state;
	struct store_vote v = {.subject = 77, .target = 3, .round = 2}, d;
	uint8_t *buf;
	size_t len;
	strcpy(v.service, "api");
	v.rev = 5;
	v.reason = STORE_VOTE_OPERATOR;
	v.hlc = 123456789;
	EQ(fleet_vote_encode(&v, &buf, &len), 0);
	EQ(fleet_vote_decode(buf, len, &d), 0);
	EQ(d.rev, 5);
	EQ(d.subject, 77);
	EQ(d.target, 3);
	EQ(d.round, 2);
	EQ(d.reason, STORE_VOTE_OPERATOR);
	assert_string_equal(d.service, "api");
	assert_memory_equal(d.sig, v.sig, STORE_SIG_LEN);
	/* a signed vote verifies under its voter's key only, and only unchanged */
	{
		struct sign_key k1, k2;
		uint8_t seed[32] = {1}, msg[AGREE_VOTE_MSG_MAX];
		sign_key_from_seed(seed, &k1);
		seed[0] = 2;
		sign_key_from_seed(seed, &k2);
		struct store_vote sv = v;
		memset(sv.voter, 0x11, STORE_NODE_ID_LEN);
		sign_detached(&k1, msg, agree_vote_msg(&sv, msg), sv.sig);
		assert_true(agree_vote_verify(&sv, k1.pk));
		assert_false(agree_vote_verify(&sv, k2.pk));
		struct store_vote o = sv;
		o.voter[0] ^= 1;	/* in another node's name */
		assert_false(agree_vote_verify(&o, k1.pk));
		o = sv;
		o.target = 0;
		assert_false(agree_vote_verify(&o, k1.pk));
		o = sv;
		o.round++;
		assert_false(agree_vote_verify(&o, k1.pk));
		static const uint8_t zero[32];
		assert_false(agree_vote_verify(&sv, zero));
	}
	buf[1] = FLEET_REC_VERSION + 1;
	EQ(fleet_vote_decode(buf, len, &d), -EPROTONOSUPPORT);
	buf[1] = FLEET_REC_VERSION;
	buf[0] = 'X';
	EQ(fleet_vote_decode(buf, len, &d), -EBADMSG);
	free(buf);

	struct fleet_health h, hd;
	memset(&h, 0, sizeof h);
	strcpy(h.service, "api");
	h.running_rev = 4;
	h.state = 1;
	h.swapping = true;
	h.diverged = true;
	h.local_base_rev = 4;
	h.local_target_rev = 2;
	h.nheld = FLEET_HELD_MAX;
	for (int i = 0; i < FLEET_HELD_MAX; i++)
		memset(h.held[i].b, i + 1, STORE_ID_LEN);
	/* signed by its owner over fleet_health_msg: verifies under that key only, for that
	 * owner only, and only unchanged (every field, the stamp included) */
	uint8_t howner[STORE_NODE_ID_LEN] = {0x22}, hm[FLEET_HEALTH_MSG_MAX];
	struct sign_key hk, hk2;
	{
		uint8_t seed[32] = {3};
		sign_key_from_seed(seed, &hk);
		seed[0] = 4;
		sign_key_from_seed(seed, &hk2);
	}
	h.stamp = (uint64_t)1765000000000 << 16;
	size_t hn = fleet_health_msg(howner, &h, hm);
	assert_true(hn <= FLEET_HEALTH_MSG_MAX);
	EQ(hn, FLEET_HEALTH_MSG_MAX - 64 + 3);	/* service "api": 61 bytes under the max */
	sign_detached(&hk, hm, hn, h.sig);
	assert_true(sign_verify(hk.pk, hm, hn, h.sig));
	assert_false(sign_verify(hk2.pk, hm, hn, h.sig));
	{
		uint8_t om[FLEET_HEALTH_MSG_MAX], other[STORE_NODE_ID_LEN] = {0x23};
		struct fleet_health o = h;
		assert_false(sign_verify(hk.pk, om, fleet_health_msg(other, &o, om), h.sig));
		o.state = 3;
		assert_false(sign_verify(hk.pk, om, fleet_health_msg(howner, &o, om), h.sig));
		o = h;
		o.stamp++;
		assert_false(sign_verify(hk.pk, om, fleet_health_msg(howner, &o, om), h.sig));
		o = h;
		o.held[7].b[31] ^= 1;
		assert_false(sign_verify(hk.pk, om, fleet_health_msg(howner, &o, om), h.sig));
		o = h;
		o.missed = true;
		assert_false(sign_verify(hk.pk, om, fleet_health_msg(howner, &o, om), h.sig));
	}
	EQ(fleet_health_encode(&h, &buf, &len), 0);
	assert_true(len <= FLEET_REC_VALUE_MAX);
	EQ(fleet_health_decode(buf, len, &hd), 0);
	assert_memory_equal(&h, &hd, sizeof h);
	for (size_t i = 0; i < len; i++)
		if (fleet_health_decode(buf, i, &hd) == 0)
			fail_msg("health prefix of %zu bytes decoded", i);
	{
		/* the size of a record (README "Security"): 8 held artifacts, and none */
		struct fleet_health e = {0};
		uint8_t *eb;
		size_t el, ul;
		strcpy(e.service, "web");
		e.stamp = h.stamp;
		e.state = 1;
		EQ(fleet_health_encode(&e, &eb, &el), 0);
		/* the older unsigned form: nil, nil where sig and stamp are */
		ul = el - (2 + STORE_SIG_LEN) - 9 + 2;
		print_message("health record: %zu bytes with 8 held, %zu with none (unsigned form: "
			      "%zu, %zu)\n", len, el, len - (el - ul), ul);
		/* decodes as unsigned: zero signature, stamp 0 */
		uint8_t old[FLEET_REC_VALUE_MAX];
		memcpy(old, eb, el - (2 + STORE_SIG_LEN) - 9);
		old[el - (2 + STORE_SIG_LEN) - 9] = 0xc0;
		old[el - (2 + STORE_SIG_LEN) - 8] = 0xc0;
		EQ(fleet_health_decode(old, ul, &hd), 0);
		assert_true(sodium_is_zero(hd.sig, STORE_SIG_LEN));
		EQ(hd.stamp, 0);
		/* anything else there is malformed */
		old[el - (2 + STORE_SIG_LEN) - 9] = 0x01;
		EQ(fleet_health_decode(old, ul, &hd), -EBADMSG);
		free(eb);
	}

	/* a removal: the operator's statement round-trips; the older form (4 fields) decodes
	 * as unsigned; the statement names the node and the reason */
	{
		struct fleet_remove x = {.hlc = 99, .uid = 0, .pid = 42}, xd;
		uint8_t id[STORE_NODE_ID_LEN] = {0x5a, 1, 2}, dg[32];
		char idhex[33];
		uint8_t *xb;
		size_t xl;
		snprintf(x.reason, sizeof x.reason, "stolen from the shop");
		struct sign_op op = {.kind = SIGN_OP_REMOVE};
		sign_op_remove_subject(id, x.reason, idhex, dg);
		assert_string_equal(idhex, "5a010200000000000000000000000000");
		sign_op_sign(&hk, idhex, dg, &op);
		x.op.kind = op.kind;
		x.op.ts_ms = op.ts_ms;
		memcpy(x.op.nonce, op.nonce, sizeof op.nonce);
		memcpy(x.op.key, op.key, sizeof op.key);
		memcpy(x.op.sig, op.sig, sizeof op.sig);
		EQ(fleet_remove_encode(&x, &xb, &xl), 0);
		EQ(fleet_remove_decode(xb, xl, &xd), 0);
		assert_memory_equal(&xd.op, &x.op, sizeof x.op);
		assert_string_equal(xd.reason, x.reason);
		for (size_t i = 0; i < xl; i++)
			if (fleet_remove_decode(xb, i, &xd) == 0)
				fail_msg("remove prefix of %zu bytes decoded", i);
		struct sign_trust tr = {.n = 1, .keys = &hk.pk};
		assert_true(sign_op_verify(&op, idhex, dg, &tr));
		/* another node, another reason, another kind: not covered */
		uint8_t id2[STORE_NODE_ID_LEN] = {0x5b}, dg2[32];
		char idhex2[33];
		sign_op_remove_subject(id2, x.reason, idhex2, dg2);
		assert_false(sign_op_verify(&op, idhex2, dg2, &tr));
		sign_op_remove_subject(id, "another reason", idhex2, dg2);
		assert_false(sign_op_verify(&op, idhex2, dg2, &tr));
		struct sign_op o2 = op;
		o2.kind = SIGN_OP_DEPLOY;
		assert_false(sign_op_verify(&o2, idhex, dg, &tr));
		/* the hex form carries kind 3 */
		char ohex[SIGN_OP_HEX_LEN + 1];
		struct sign_op back;
		sign_op_hex(&op, ohex);
		EQ(sign_op_parse_hex(ohex, &back), 0);
		EQ(back.kind, SIGN_OP_REMOVE);
		/* unsigned (4 fields): decodes with op.kind 0 */
		struct fleet_remove u = x;
		memset(&u.op, 0, sizeof u.op);
		uint8_t *ub;
		size_t ulen;
		EQ(fleet_remove_encode(&u, &ub, &ulen), 0);
		EQ(ub[3], 0x95);	/* fixarray 5 */
		ub[3] = 0x94;
		EQ(fleet_remove_decode(ub, ulen - 1, &xd), 0);	/* without the trailing nil */
		EQ(xd.op.kind, 0);
		free(ub);
		const char *wdir = getenv("SHOAL_WRITE_CORPUS");
		if (wdir) {
			char p[4096];
			snprintf(p, sizeof p, "%s/remove_signed", wdir);
			FILE *f = fopen(p, "wb");
			fwrite("remove/5a010200000000000000000000000000", 1, 40, f);
			fwrite(xb, 1, xl, f);
			fclose(f);
			snprintf(p, sizeof p, "%s/health_signed", wdir);
			f = fopen(p, "wb");
			fwrite("health/api", 1, 11, f);
			fwrite(buf, 1, len, f);
			fclose(f);
		}
		free(xb);
	}
	/* write the seed corpus of the fuzzer when asked */
	const char *dir = getenv("SHOAL_WRITE_CORPUS");
	if (dir) {
		char p[4096];
		struct store_revision r;
		uint8_t *rb;
		size_t rl;
		fill_rev(&r, 3);
		EQ(fleet_rev_encode(&r, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/rev_rollback", dir);
		FILE *f = fopen(p, "wb");
		fwrite("rev/web/7", 1, 10, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		store_revision_release(&r);
		fill_rev(&r, 0);
		EQ(fleet_rev_encode(&r, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/rev_deploy", dir);
		f = fopen(p, "wb");
		fwrite("rev/web/7", 1, 10, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		/* version 3: a signed vote, a signed roster record, chunks with signed votes and
		 * with keys */
		struct sign_key sk;
		uint8_t seed[32] = {7}, m[FLEET_ROSTER_MSG_MAX], owner[STORE_NODE_ID_LEN] = {9};
		sign_key_from_seed(seed, &sk);
		struct store_vote sv = v;
		memcpy(sv.voter, owner, sizeof owner);
		sign_detached(&sk, m, agree_vote_msg(&sv, m), sv.sig);
		EQ(fleet_vote_encode(&sv, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/vote_signed", dir);
		f = fopen(p, "wb");
		fwrite("vote/api/5", 1, 11, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		struct fleet_roster ro = {.hlc = 77};
		snprintf(ro.site, sizeof ro.site, "paris");
		snprintf(ro.addr, sizeof ro.addr, "127.0.0.1:7946");
		memcpy(ro.key, sk.pk, sizeof ro.key);
		sign_detached(&sk, m, fleet_roster_msg(owner, &ro, m), ro.sig);
		EQ(fleet_roster_encode(&ro, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/roster_signed", dir);
		f = fopen(p, "wb");
		fwrite("roster", 1, 7, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		store_revision_release(&r);
		fill_rev(&r, 9);
		r.nelect = 14;
		r.elect = calloc(14, STORE_NODE_ID_LEN);
		r.elect_keys = calloc(14, STORE_KEY_LEN);
		for (int i = 0; i < 14; i++) {
			r.elect[i][0] = (uint8_t)i;
			memset(r.elect_keys[i], i + 1, STORE_KEY_LEN);
		}
		EQ(fleet_cert_encode(&r, 0, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/cert_signed", dir);
		f = fopen(p, "wb");
		fwrite("cert/web/8/0", 1, 13, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		EQ(fleet_elect_encode(&r, 1, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/elect_keys", dir);
		f = fopen(p, "wb");
		fwrite("elect/web/8/1", 1, 14, f);
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
		/* the whole revision in the store format (fuzz_store_revision's corpus) */
		r.rev = 8;
		EQ(store_revision_encode(&r, &rb, &rl), 0);
		snprintf(p, sizeof p, "%s/store_revision_v3", dir);
		f = fopen(p, "wb");
		fwrite(rb, 1, rl, f);
		fclose(f);
		free(rb);
	}
	free(buf);
}

/* Roster records with an enrolment and a rotation (sign.h): the codec keeps them, a record
 * without them still decodes, and each statement verifies for its (id, key) only. */
static void test_roster_enrol_rotate(void **state)
{
	(void)state;
	struct sign_key node, next, op, other;
	uint8_t seed[32] = {3}, id[STORE_NODE_ID_LEN] = {5}, id2[STORE_NODE_ID_LEN] = {6};
	sign_key_from_seed(seed, &node);
	seed[0] = 4;
	sign_key_from_seed(seed, &next);
	seed[0] = 5;
	sign_key_from_seed(seed, &op);
	seed[0] = 6;
	sign_key_from_seed(seed, &other);
	struct sign_trust trust = {.n = 1, .keys = &op.pk};
	struct sign_trust untrusted = {.n = 1, .keys = &other.pk};

	/* enrolment: of (id, key) under a trusted operator key, nothing else */
	struct sign_op en;
	sign_enrol_sign(&op, id, sizeof id, next.pk, &en);
	EQ(en.kind, SIGN_OP_ENROL);
	assert_true(sign_enrol_verify(&en, id, sizeof id, next.pk, &trust));
	assert_true(sign_enrol_verify(&en, id, sizeof id, next.pk, NULL));
	assert_false(sign_enrol_verify(&en, id, sizeof id, next.pk, &untrusted));
	assert_false(sign_enrol_verify(&en, id2, sizeof id2, next.pk, &trust));
	assert_false(sign_enrol_verify(&en, id, sizeof id, node.pk, &trust));
	struct sign_op bad = en;
	bad.kind = SIGN_OP_DEPLOY;	/* a deploy statement is no enrolment */
	assert_false(sign_enrol_verify(&bad, id, sizeof id, next.pk, &trust));
	/* its control-protocol form */
	char hex[SIGN_OP_HEX_LEN + 1];
	struct sign_op back;
	sign_op_hex(&en, hex);
	EQ(sign_op_parse_hex(hex, &back), 0);
	assert_true(sign_enrol_verify(&back, id, sizeof id, next.pk, &trust));

	/* rotation: signed by the former key, for this id and this new key */
	uint8_t rs[SIGN_SIG_LEN];
	sign_rotate_sign(&node, id, next.pk, rs);
	assert_true(sign_rotate_verify(node.pk, id, next.pk, rs));
	assert_false(sign_rotate_verify(next.pk, id, next.pk, rs));
	assert_false(sign_rotate_verify(node.pk, id2, next.pk, rs));
	assert_false(sign_rotate_verify(node.pk, id, other.pk, rs));
	sign_rotate_sign(&other, id, next.pk, rs);	/* not by the former key */
	assert_false(sign_rotate_verify(node.pk, id, next.pk, rs));

	/* the roster record carries both, round trip */
	struct fleet_roster ro = {.hlc = 9}, d;
	uint8_t *buf, m[FLEET_ROSTER_MSG_MAX];
	size_t len;
	snprintf(ro.site, sizeof ro.site, "%s", "lyon");
	memcpy(ro.key, next.pk, STORE_KEY_LEN);
	sign_detached(&next, m, fleet_roster_msg(id, &ro, m), ro.sig);
	EQ(fleet_roster_encode(&ro, &buf, &len), 0);
	EQ(fleet_roster_decode(buf, len, &d), 0);	/* the 6-field form */
	assert_false(d.has_enrol);
	assert_false(d.has_rot);
	free(buf);
	ro.has_enrol = true;
	ro.enrol.kind = SIGN_OP_ENROL;
	ro.enrol.ts_ms = en.ts_ms;
	memcpy(ro.enrol.nonce, en.nonce, sizeof en.nonce);
	memcpy(ro.enrol.key, en.key, STORE_KEY_LEN);
	memcpy(ro.enrol.sig, en.sig, STORE_SIG_LEN);
	ro.has_rot = true;
	memcpy(ro.rot_prev, node.pk, STORE_KEY_LEN);
	sign_rotate_sign(&node, id, next.pk, ro.rot_sig);
	EQ(fleet_roster_encode(&ro, &buf, &len), 0);
	assert_true(len <= FLEET_REC_VALUE_MAX);
	memset(&d, 0, sizeof d);
	EQ(fleet_roster_decode(buf, len, &d), 0);
	assert_true(d.has_enrol && d.has_rot);
	EQ(d.enrol.kind, SIGN_OP_ENROL);
	EQ(d.enrol.ts_ms, en.ts_ms);
	assert_memory_equal(d.enrol.sig, en.sig, STORE_SIG_LEN);
	assert_memory_equal(d.rot_prev, node.pk, STORE_KEY_LEN);
	assert_true(sign_rotate_verify(d.rot_prev, id, d.key, d.rot_sig));
	struct sign_op de = {.kind = d.enrol.kind, .ts_ms = d.enrol.ts_ms};
	memcpy(de.nonce, d.enrol.nonce, sizeof de.nonce);
	memcpy(de.key, d.enrol.key, sizeof de.key);
	memcpy(de.sig, d.enrol.sig, sizeof de.sig);
	assert_true(sign_enrol_verify(&de, id, sizeof id, d.key, &trust));
	/* the record's own signature does not depend on them */
	assert_true(sign_verify(d.key, m, fleet_roster_msg(id, &d, m), d.sig));
	for (size_t i = 0; i < len; i++)
		if (fleet_roster_decode(buf, i, &d) == 0)
			fail_msg("roster prefix of %zu bytes decoded", i);
	const char *dir = getenv("SHOAL_WRITE_CORPUS");
	if (dir) {
		char p[4096];
		snprintf(p, sizeof p, "%s/roster_enrol_rotate", dir);
		FILE *f = fopen(p, "wb");
		fwrite("roster", 1, 7, f);
		fwrite(buf, 1, len, f);
		fclose(f);
	}
	free(buf);
}

static void test_quorum_parse(void **state)
{
	(void)state;
	struct agree_quorum_rule q;
	EQ(agree_quorum_parse("web=3", &q), 0);
	EQ(q.q.kind, AGREE_QUORUM_COUNT);
	EQ(q.q.count, 3);
	assert_string_equal(q.service, "web");
	EQ(agree_quorum_parse("api=2/3", &q), 0);
	EQ(q.q.kind, AGREE_QUORUM_FRACTION);
	EQ(q.q.num, 2);
	EQ(q.q.den, 3);
	EQ(agree_quorum_parse("x=majority", &q), 0);
	EQ(q.q.kind, AGREE_QUORUM_MAJORITY);
	static const char *const bad[] = {"web", "=3", "web=0", "web=3/2", "web=1/0", "web=-1",
					  "web=x", "w b=3", "web=2/", "web=2/3x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (agree_quorum_parse(bad[i], &q) != -EINVAL)
			fail_msg("quorum '%s' accepted", bad[i]);
}

/* ---- Several brains over a fake transport ------------------------------------------------ */

#define NB 5

struct rec {
	uint8_t owner[STORE_NODE_ID_LEN];
	char key[FLEET_REC_KEY_MAX + 1];
	size_t klen;
	uint8_t val[FLEET_REC_VALUE_MAX];
	size_t vlen;
	uint64_t version;
	struct gossip_record g;
};

struct net {
	struct rec recs[4096];
	size_t nrecs;
	size_t queue[8192];	/* indexes of records to deliver to everyone but the owner */
	size_t qhead, qtail;
	bool blocked[NB];	/* a node cut off: receives nothing, its puts reach nobody */
	bool down[NB];		/* reported "dead" by the membership */
	const char *hide[NB][2]; /* records whose key starts with one never reach the node */
	struct node *nodes[NB];
};

struct node {
	struct net *net;
	int idx;
	uint8_t id[STORE_NODE_ID_LEN];
	char dir[64];
	struct store *s;
	struct fleet *b;
	struct store_id v1, v2;
};

static uv_loop_t loop;
static struct net NET;
static struct node N[NB];
static struct sign_key NK[NB];	/* the nodes' identity keys (a test signs in their names) */

static int fput(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct node *n = ud;
	struct net *net = n->net;
	struct rec *r = NULL;
	for (size_t i = 0; i < net->nrecs; i++)
		if (memcmp(net->recs[i].owner, n->id, STORE_NODE_ID_LEN) == 0 &&
		    net->recs[i].klen == klen && memcmp(net->recs[i].key, key, klen) == 0)
			r = &net->recs[i];
	if (!r) {
		assert_true(net->nrecs < 4096);
		r = &net->recs[net->nrecs++];
		memset(r, 0, sizeof *r);
		memcpy(r->owner, n->id, STORE_NODE_ID_LEN);
		memcpy(r->key, key, klen);
		r->klen = klen;
	}
	assert_true(vlen <= FLEET_REC_VALUE_MAX);
	memcpy(r->val, val, vlen);
	r->vlen = vlen;
	r->version++;
	if (!net->blocked[n->idx])
		net->queue[net->qtail++ % 8192] = (size_t)(r - net->recs);
	return 0;
}

static const struct gossip_record *as_gossip(struct rec *r)
{
	memcpy(r->g.owner, r->owner, STORE_NODE_ID_LEN);
	r->g.key = (const uint8_t *)r->key;
	r->g.key_len = r->klen;
	r->g.value = r->val;
	r->g.value_len = r->vlen;
	r->g.version = r->version;
	return &r->g;
}

/* What a node "holds": its own records, and others' unless it is cut off. */
static bool holds(struct net *net, int idx, const struct rec *r)
{
	int owner = -1;
	for (int i = 0; i < NB; i++)
		if (memcmp(net->nodes[i]->id, r->owner, STORE_NODE_ID_LEN) == 0)
			owner = i;
	for (int h = 0; h < 2 && owner != idx; h++)
		if (net->hide[idx][h] &&
		    strncmp(r->key, net->hide[idx][h], strlen(net->hide[idx][h])) == 0)
			return false;
	return owner == idx || (!net->blocked[idx] && !net->blocked[owner]);
}

static const struct gossip_record *fget(void *ud, const uint8_t owner[STORE_NODE_ID_LEN],
					const void *key, size_t klen)
{
	struct node *n = ud;
	for (size_t i = 0; i < n->net->nrecs; i++) {
		struct rec *r = &n->net->recs[i];
		if (memcmp(r->owner, owner, STORE_NODE_ID_LEN) == 0 && r->klen == klen &&
		    memcmp(r->key, key, klen) == 0 && holds(n->net, n->idx, r))
			return as_gossip(r);
	}
	return NULL;
}

static int frecords(void *ud, int (*cb)(void *, const struct gossip_record *), void *cbud)
{
	struct node *n = ud;
	for (size_t i = 0; i < n->net->nrecs; i++)
		if (holds(n->net, n->idx, &n->net->recs[i]))
			cb(cbud, as_gossip(&n->net->recs[i]));
	return 0;
}

static int fmembers(void *ud, int (*cb)(void *, const struct gossip_member *), void *cbud)
{
	struct node *n = ud;
	for (int i = 0; i < NB; i++) {
		struct gossip_member m;
		memset(&m, 0, sizeof m);
		memcpy(m.id, n->net->nodes[i]->id, STORE_NODE_ID_LEN);
		snprintf(m.name, sizeof m.name, "b%d", i);
		m.state = n->net->down[i] ? GOSSIP_DEAD : GOSSIP_ALIVE;
		m.self = i == n->idx;
		cb(cbud, &m);
	}
	return 0;
}

/* Deliver queued records until the network is quiet. */
static void pump(void)
{
	while (NET.qhead != NET.qtail) {
		struct rec *r = &NET.recs[NET.queue[NET.qhead++ % 8192]];
		for (int i = 0; i < NB; i++) {
			if (memcmp(N[i].id, r->owner, STORE_NODE_ID_LEN) == 0 || NET.blocked[i] ||
			    !holds(&NET, i, r))
				continue;
			fleet_on_record(N[i].b, as_gossip(r));
		}
	}
}

/* Call a brain op like a client would; returns the response (release it) in @resp. */
static void call(struct node *n, const char *op, struct ctl_response *resp, uint8_t **keep,
		 const char *fmt, ...)
{
	/* fmt: sequence of "k=s:VALUE" / "k=u:N" / "k=b" separated by ';' */
	struct ctl_enc e, out;
	struct ctl_request req;
	char args[1024], err[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	ctl_enc_init(&e);
	ctl_enc_request(&e, op, true);
	uint32_t cnt = 0;
	for (char *p = args; *p; p++)
		cnt += *p == ';';
	ctl_enc_map(&e, args[0] ? cnt + 1 : 0);
	for (char *tok = strtok(args, ";"); tok; tok = strtok(NULL, ";")) {
		char *eq = strchr(tok, '=');
		assert_non_null(eq);
		*eq = 0;
		ctl_enc_str(&e, tok);
		if (eq[1] == 's')
			ctl_enc_str(&e, eq + 3);
		else if (eq[1] == 'u')
			ctl_enc_uint(&e, strtoull(eq + 3, NULL, 10));
		else
			ctl_enc_bool(&e, true);
	}
	size_t len;
	const uint8_t *p = ctl_enc_payload(&e, &len);
	EQ(ctl_request_decode(p, len, &req, err, sizeof err), 0);
	struct ctl_peer peer = {.known = true, .uid = 1000, .gid = 1000, .pid = 77};
	ctl_enc_init(&out);
	EQ(fleet_ctl(n->b, op, &req, &peer, &out), 0);
	const uint8_t *op_buf;
	EQ(ctl_enc_finish(&out, &op_buf, &len), 0);
	*keep = malloc(len);
	memcpy(*keep, op_buf + CTL_FRAME_HDR, len - CTL_FRAME_HDR);
	EQ(ctl_response_decode(*keep, len - CTL_FRAME_HDR, resp), 0);
	ctl_enc_release(&out);
	ctl_request_release(&req);
	ctl_enc_release(&e);
}

static uint64_t resp_u(const struct ctl_response *r, const char *k)
{
	const msgpack_object *o = ctl_map_get(r->result, k);
	return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

/* The test operator (agent/base/sign.h): its key signs every change, its .pub is trusted. */
static struct sign_key OPK;
static char OPSIG[SIGN_OP_HEX_LEN + 1];

/* OPSIG := a statement of @kind about web, @art (NULL: none), the cluster scope, @to */
static const char *opsig(int kind, const struct store_id *art, uint64_t to)
{
	struct sign_op op = {.kind = (uint8_t)kind, .target = to};
	sign_op_sign(&OPK, "web", art ? art->b : NULL, &op);
	sign_op_hex(&op, OPSIG);
	return OPSIG;
}

static void make_artifact(const char *dir, const char *version, bool good)
{
	char p[512];
	mkdir(dir, 0755);
	snprintf(p, sizeof p, "%s/release.ini", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "[release]\nservice = web\nruntime = exec\nversion = %s\n[exec]\ncommand = "
		   "sleep 1000\n[health]\nexec = %s\n",
		version, good ? "true" : "false");
	fclose(f);
}

static int setup_cluster(void **state)
{
	(void)state;
	char base[] = "/tmp/shoal-brain-test-XXXXXX";
	assert_non_null(mkdtemp(base));
	char d1[128], d2[128];
	snprintf(d1, sizeof d1, "%s/v1", base);
	snprintf(d2, sizeof d2, "%s/v2", base);
	make_artifact(d1, "1.0.0", true);
	make_artifact(d2, "2.0.0", false);
	EQ(uv_loop_init(&loop), 0);
	memset(&NET, 0, sizeof NET);
	char opdir[128], opkey[160];
	snprintf(opdir, sizeof opdir, "%s/operators", base);
	mkdir(opdir, 0755);
	snprintf(opkey, sizeof opkey, "%s/test", opdir);	/* test.pub is what is trusted */
	EQ(sign_operator_keygen(opkey, &OPK), 0);
	for (int i = 0; i < NB; i++) {
		struct node *n = &N[i];
		memset(n, 0, sizeof *n);
		n->net = &NET;
		n->idx = i;
		NET.nodes[i] = n;
		snprintf(n->dir, sizeof n->dir, "%s/n%d", base, i);
		mkdir(n->dir, 0755);
		struct store_opts so = {.path = n->dir, .map_max = 64 << 20};
		EQ(store_open(&so, &n->s), 0);
		EQ(store_node_id(n->s, n->id), 0);
		char err[256];
		EQ(store_import_dir(n->s, d1, NULL, 1000, &n->v1, err, sizeof err), 0);
		EQ(store_import_dir(n->s, d2, NULL, 2000, &n->v2, err, sizeof err), 0);
	}
	for (int i = 0; i < NB; i++) {
		struct node *n = &N[i];
		char name[8];
		snprintf(name, sizeof name, "b%d", i);
		sign_key_random(&NK[i]);
		struct fleet_opts o = {.node_id = n->id, .node_name = name, .no_runtime = true,
				       .operators_dir = opdir, .node_key = &NK[i]};
		struct fleet_net bn = {.put = fput, .get = fget, .record_foreach = frecords,
				       .member_foreach = fmembers, .ud = n};
		EQ(fleet_new(&loop, n->s, &o, &bn, &n->b), 0);
		EQ(fleet_start(n->b), 0);
	}
	/* keep the base dir name for teardown in N[0].dir's parent */
	return 0;
}

static void closed(void *ud)
{
	(*(int *)ud)++;
}

static int teardown_cluster(void **state)
{
	(void)state;
	int n = 0;
	for (int i = 0; i < NB; i++)
		fleet_close(N[i].b, closed, &n);
	while (n < NB)
		uv_run(&loop, UV_RUN_ONCE);
	EQ(uv_loop_close(&loop), 0);
	char base[128];
	snprintf(base, sizeof base, "%s", N[0].dir);
	*strrchr(base, '/') = 0;
	for (int i = 0; i < NB; i++)
		store_close(N[i].s);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	EQ(system(cmd), 0);
	return 0;
}

static void expect_desired(int i, uint64_t rev, const struct store_id *art)
{
	uint64_t r = 0;
	struct store_id a;
	int e = fleet_desired(N[i].b, "web", &r, &a);
	if (e < 0 || r != rev || memcmp(&a, art, sizeof a) != 0)
		fail_msg("b%d: desired rev %" PRIu64 " (err %d), want %" PRIu64, i, r, e, rev);
}

struct stats_seen {
	size_t n;
	uint64_t rollbacks[FLEET_ROLLBACK__COUNT], desired;
};

static int stats_cb(void *ud, const struct fleet_service_stats *s)
{
	struct stats_seen *st = ud;
	st->n++;
	memcpy(st->rollbacks, s->counts->rollbacks, sizeof st->rollbacks);
	st->desired = s->desired_rev;
	return 0;
}

static unsigned count_events(struct node *n, const char *kind)
{
	struct ctl_response resp;
	uint8_t *keep;
	unsigned c = 0;
	call(n, "events", &resp, &keep, "since=u:0;max=u:512");
	const msgpack_object *evs = ctl_map_get(resp.result, "events");
	for (uint32_t i = 0; evs && i < evs->via.array.size; i++) {
		const msgpack_object *k = ctl_map_get(&evs->via.array.ptr[i], "kind");
		c += k && k->via.str.size == strlen(kind) &&
		     memcmp(k->via.str.ptr, kind, strlen(kind)) == 0;
	}
	ctl_response_release(&resp);
	free(keep);
	return c;
}

/* Errors reach events and the journal as words, whichever range their code is in. */
static void test_error_words(void **state)
{
	(void)state;
	assert_string_equal(fleet__strerror(-STORE_ECORRUPT), store_strerror(-STORE_ECORRUPT));
	assert_null(strstr(fleet__strerror(-STORE_ECORRUPT), "Unknown error"));
	assert_null(strstr(fleet__strerror(-(AGREE_EBASE + 4)), "Unknown error"));
	assert_string_equal(fleet__strerror(-(AGREE_EBASE + 4)), agree_strerror(-(AGREE_EBASE + 4)));
	/* a full disk is not the store's map_max */
	assert_string_equal(fleet__strerror(-ENOSPC), strerror(ENOSPC));
	assert_string_equal(fleet__strerror(-EIO), strerror(EIO));
}

static void test_cluster_rollback(void **state)
{
	(void)state;
	struct ctl_response resp;
	uint8_t *keep;
	char hex[STORE_ID_HEXLEN + 1];

	/* deploy v1 on b0, v2 on b3: every brain desires what was deployed last */
	/* unsigned, or signed by an untrusted key, or for another artifact: refused */
	call(&N[0], "deploy", &resp, &keep, "service=s:web;artifact=s:%s",
	     store_id_hex(&N[0].v1, hex));
	assert_false(resp.ok);
	assert_string_equal(resp.error, "permission_denied");
	ctl_response_release(&resp);
	free(keep);
	{
		struct sign_key other;
		sign_key_random(&other);
		struct sign_op op = {.kind = SIGN_OP_DEPLOY};
		sign_op_sign(&other, "web", N[0].v1.b, &op);
		sign_op_hex(&op, OPSIG);
	}
	call(&N[0], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;opsig=s:%s",
	     store_id_hex(&N[0].v1, hex), OPSIG);
	assert_false(resp.ok);
	assert_string_equal(resp.error, "permission_denied");
	ctl_response_release(&resp);
	free(keep);
	call(&N[0], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;opsig=s:%s",
	     store_id_hex(&N[0].v1, hex), opsig(SIGN_OP_DEPLOY, &N[0].v2, 0));
	assert_false(resp.ok);
	ctl_response_release(&resp);
	free(keep);
	call(&N[0], "deploy", &resp, &keep,
	     "service=s:web;artifact=s:%s;reason=s:first;opsig=s:%s",
	     store_id_hex(&N[0].v1, hex), opsig(SIGN_OP_DEPLOY, &N[0].v1, 0));
	assert_true(resp.ok);
	EQ(resp_u(&resp, "rev"), 1);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 1, &N[0].v1);
	call(&N[3], "deploy", &resp, &keep, "service=s:web;artifact=s:%.16s;opsig=s:%s",
	     store_id_hex(&N[0].v2, hex), opsig(SIGN_OP_DEPLOY, &N[0].v2, 0));
	assert_true(resp.ok);
	EQ(resp_u(&resp, "rev"), 2);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 2, &N[0].v2);

	/* an operator rollback on b4 alone: one vote, no quorum yet when nobody echoes */
	NET.blocked[4] = true;
	call(&N[4], "rollback", &resp, &keep, "service=s:web;reason=s:bad;opsig=s:%s",
	     opsig(SIGN_OP_ROLLBACK, NULL, 0));
	assert_true(resp.ok);
	EQ(resp_u(&resp, "rev"), 2);
	ctl_response_release(&resp);
	free(keep);
	pump();
	expect_desired(4, 2, &N[0].v2);
	call(&N[4], "votes", &resp, &keep, "service=s:web");
	EQ(resp_u(&resp, "counted"), 1);
	EQ(resp_u(&resp, "quorum"), 3);
	EQ(resp_u(&resp, "eligible"), 5);
	ctl_response_release(&resp);
	free(keep);

	/* heal: the others see the operator vote, echo it, and the cluster decides */
	NET.blocked[4] = false;
	for (size_t i = 0; i < NET.nrecs; i++)
		NET.queue[NET.qtail++ % 8192] = i;
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 3, &N[0].v1);
	for (int i = 0; i < NB; i++) {
		struct store_revision r;
		EQ(store_revision_get(N[i].s, "web", 3, &r), 0);
		EQ(r.kind, STORE_REV_ROLLBACK);
		assert_true(r.ncert >= 3);
		store_revision_release(&r);
		struct store_artifact_info info;
		EQ(store_artifact_get(N[i].s, &N[0].v2, &info), 0);
		assert_true(info.condemned);
		store_artifact_info_release(&info);
	}

	/* every node counted the decision once, as an operator's (b4's vote), and recorded when
	 * it learned of it (history's learned_ms); deploys have none */
	for (int i = 0; i < NB; i++) {
		struct stats_seen st = {0};
		EQ(fleet_service_stats_foreach(N[i].b, stats_cb, &st), 0);
		EQ(st.n, 1);
		EQ(st.rollbacks[FLEET_ROLLBACK_OPERATOR], 1);
		EQ(st.rollbacks[FLEET_ROLLBACK_HEALTH], 0);
		EQ(st.desired, 3);
		call(&N[i], "history", &resp, &keep, "service=s:web");
		assert_true(resp.ok);
		for (uint32_t k = 0; k < resp.result->via.array.size; k++) {
			const msgpack_object *h = &resp.result->via.array.ptr[k];
			const msgpack_object *l = ctl_map_get(h, "learned_ms");
			const msgpack_object *rv = ctl_map_get(h, "rev");
			assert_non_null(l);
			if (rv->via.u64 == 3)
				assert_true(l->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
					    l->via.u64 > 1700000000000ull);
			else
				EQ(l->type, MSGPACK_OBJECT_NIL);
		}
		ctl_response_release(&resp);
		free(keep);
	}
	EQ(count_events(&N[0], "decision"), 1);
	/* every node decided by itself, but only the decision's first publishers (3 of the 5
	 * electors, chosen by the subject: decide.c) wrote it at once; the others hold theirs
	 * back while another node's copy is expected */
	{
		unsigned owners = 0;
		for (size_t i = 0; i < NET.nrecs; i++)
			owners += NET.recs[i].klen == strlen("rev/web/3") &&
				  memcmp(NET.recs[i].key, "rev/web/3", NET.recs[i].klen) == 0;
		assert_true(owners >= 1 && owners <= DECISION_PUBLISHERS);
	}
	/* a decider that holds its copy back publishes it once its wait is over (the chosen
	 * publishers may be down), unless a valid copy of another node arrives first */
	{
		int quiet[NB], nquiet = 0;
		for (int i = 0; i < NB; i++) {
			bool owns = false;
			for (size_t k = 0; k < NET.nrecs; k++)
				owns |= memcmp(NET.recs[k].owner, N[i].id, STORE_NODE_ID_LEN) == 0 &&
					NET.recs[k].klen == strlen("rev/web/3") &&
					memcmp(NET.recs[k].key, "rev/web/3", NET.recs[k].klen) == 0;
			if (!owns)
				quiet[nquiet++] = i;
		}
		assert_true(nquiet >= 2);
		struct svc *v = fleet__svc_find(N[quiet[0]].b, "web");
		const struct store_revision *d = agree_at(v->log, v->nlog, 3);
		assert_non_null(d);
		v->late_rev = 3;
		v->late_subject = d->cert_subject;
		v->late_at = UINT64_MAX;	/* not yet */
		size_t before = NET.nrecs;
		fleet__late_publish(N[quiet[0]].b, v);
		EQ(NET.nrecs, before);
		EQ(v->late_rev, 3);
		v->late_at = 0;			/* the wait is over */
		fleet__late_publish(N[quiet[0]].b, v);
		EQ(v->late_rev, 0);
		assert_true(NET.nrecs > before);	/* rev/, cert/ and elect/ of its own */
		/* another waiting node: the copy just written reaches it and it stands down */
		struct svc *w = fleet__svc_find(N[quiet[1]].b, "web");
		w->late_rev = 3;
		w->late_subject = d->cert_subject;
		w->late_at = 0;
		pump();
		EQ(w->late_rev, 0);
		before = NET.nrecs;
		fleet__late_publish(N[quiet[1]].b, w);
		EQ(NET.nrecs, before);
		for (int i = 0; i < NB; i++)
			expect_desired(i, 3, &N[0].v1);
	}

	/* condemned: refused without force, accepted with it */
	call(&N[1], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;opsig=s:%s",
	     store_id_hex(&N[0].v2, hex), opsig(SIGN_OP_DEPLOY, &N[0].v2, 0));
	assert_false(resp.ok);
	assert_string_equal(resp.error, "condemned");
	ctl_response_release(&resp);
	free(keep);
	call(&N[1], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;force=b;opsig=s:%s",
	     store_id_hex(&N[0].v2, hex), opsig(SIGN_OP_DEPLOY, &N[0].v2, 0));
	assert_true(resp.ok);
	EQ(resp_u(&resp, "rev"), 4);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 4, &N[0].v2);

	/* rollback --to 1 from b2 with two nodes down: 3 voters of 5 still decide */
	NET.down[0] = NET.down[1] = true;
	NET.blocked[0] = NET.blocked[1] = true;
	for (int i = 2; i < NB; i++)
		fleet_on_member(N[i].b, NULL);
	call(&N[2], "rollback", &resp, &keep, "service=s:web;to=u:1;opsig=s:%s",
	     opsig(SIGN_OP_ROLLBACK, NULL, 1));
	assert_true(resp.ok);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 2; i < NB; i++)
		expect_desired(i, 5, &N[0].v1);
	expect_desired(0, 4, &N[0].v2); /* cut off: not decided there */

	/* --to a missing rev, and to the running artifact, are refused */
	call(&N[2], "rollback", &resp, &keep, "service=s:web;to=u:99;opsig=s:%s",
	     opsig(SIGN_OP_ROLLBACK, NULL, 99));
	assert_false(resp.ok);
	ctl_response_release(&resp);
	free(keep);

	/* local rollback on b3: diverges to the previous good (rev 4 is v2 again... rev 5's
	 * previous good is v2 at rev 4, which is not condemned any more? it was absolved by the
	 * forced deploy and condemned again by rev 5) */
	call(&N[3], "rollback", &resp, &keep, "service=s:web;local=b");
	if (resp.ok)
		EQ(fleet_desired(N[3].b, "web", NULL, NULL), 1);
	ctl_response_release(&resp);
	free(keep);

	/* events: a cursor beyond the ring's start reports nothing dropped */
	call(&N[2], "events", &resp, &keep, "since=u:0;max=u:5");
	assert_true(resp.ok);
	EQ(resp_u(&resp, "next"), 5);
	ctl_response_release(&resp);
	free(keep);
	call(&N[2], "history", &resp, &keep, "service=s:web");
	assert_true(resp.ok);
	EQ(resp.result->via.array.size, 5);
	ctl_response_release(&resp);
	free(keep);

	/* members remove: refused without the operator's statement, or with one about another
	 * reason; resolve names the member; a signed removal is applied by every node */
	for (int i = 0; i < NB; i++) {
		NET.down[i] = NET.blocked[i] = false;
		fleet_on_member(N[i].b, NULL);
	}
	call(&N[2], "members.remove", &resp, &keep, "node=s:b1;reason=s:gone");
	assert_false(resp.ok);
	assert_string_equal(resp.error, "permission_denied");
	ctl_response_release(&resp);
	free(keep);
	call(&N[2], "members.remove", &resp, &keep, "node=s:b1;reason=s:gone;resolve=b");
	assert_true(resp.ok);
	{
		char idhex[33], hexb1[33];
		uint8_t dg[32];
		const msgpack_object *o = ctl_map_get(resp.result, "id");
		assert_non_null(o);
		EQ(o->via.str.size, 32);
		memcpy(hexb1, o->via.str.ptr, 32);
		hexb1[32] = 0;
		ctl_response_release(&resp);
		free(keep);
		struct sign_op op = {.kind = SIGN_OP_REMOVE};
		sign_op_remove_subject(N[1].id, "other reason", idhex, dg);
		assert_string_equal(idhex, hexb1);
		sign_op_sign(&OPK, idhex, dg, &op);
		sign_op_hex(&op, OPSIG);
		call(&N[2], "members.remove", &resp, &keep, "node=s:b1;reason=s:gone;opsig=s:%s",
		     OPSIG);
		assert_false(resp.ok);
		assert_string_equal(resp.error, "permission_denied");
		ctl_response_release(&resp);
		free(keep);
		sign_op_remove_subject(N[1].id, "gone", idhex, dg);
		sign_op_sign(&OPK, idhex, dg, &op);
		sign_op_hex(&op, OPSIG);
		call(&N[2], "members.remove", &resp, &keep, "node=s:%s;reason=s:gone;opsig=s:%s",
		     idhex, OPSIG);
		assert_true(resp.ok);
		ctl_response_release(&resp);
		free(keep);
	}
	pump();
	for (int i = 0; i < NB; i++) {
		struct fleet *b = N[i].b;
		bool off = false;
		EQ(fleet__members_refresh(b), 0);
		for (size_t j = 0; j < b->nroster; j++)
			if (memcmp(b->roster[j].id, N[1].id, STORE_NODE_ID_LEN) == 0)
				off = b->roster[j].state == AGREE_LEFT;
		assert_true(off);
	}
}

/* Deliver again every record held (a resync after the filters changed). */
static void pump_all(void)
{
	for (size_t i = 0; i < NET.nrecs; i++)
		NET.queue[NET.qtail++ % 8192] = i;
	pump();
}

/*
 * A revision does not wait for its elect/ chunks when the receiver holds what they say: a
 * deploy's electorate from its own roster (kept because the origin's signature verifies over
 * it), a rollback's from the judged record. A receiver whose roster differs waits for them.
 */
static void test_cluster_elect_held(void **state)
{
	(void)state;
	struct ctl_response resp;
	uint8_t *keep;
	char hex[STORE_ID_HEXLEN + 1];

	for (int i = 0; i < NB; i++)
		NET.hide[i][0] = "elect/";
	/* b4 alone holds an operator's removal of b3: its roster, so its electorate, differs */
	for (int i = 0; i < 4; i++)
		NET.hide[i][1] = "remove/";
	{
		char idhex[33];
		uint8_t dg[32];
		struct sign_op op = {.kind = SIGN_OP_REMOVE};
		sign_op_remove_subject(N[3].id, "gone", idhex, dg);
		sign_op_sign(&OPK, idhex, dg, &op);
		sign_op_hex(&op, OPSIG);
		call(&N[4], "members.remove", &resp, &keep, "node=s:%s;reason=s:gone;opsig=s:%s",
		     idhex, OPSIG);
		assert_true(resp.ok);
		ctl_response_release(&resp);
		free(keep);
	}
	pump();
	call(&N[0], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;opsig=s:%s",
	     store_id_hex(&N[0].v1, hex), opsig(SIGN_OP_DEPLOY, &N[0].v1, 0));
	assert_true(resp.ok);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < 4; i++)
		expect_desired(i, 1, &N[0].v1);
	EQ(fleet_desired(N[4].b, "web", NULL, NULL), -ENOENT);
	/* the chunks arrive: b4 takes the electorate the deploy names */
	NET.hide[4][0] = NULL;
	pump_all();
	expect_desired(4, 1, &N[0].v1);
	struct store_revision r;
	EQ(store_revision_get(N[4].s, "web", 1, &r), 0);
	EQ(r.nelect, NB);
	store_revision_release(&r);

	/* a rollback of rev 2 decided without b4, which holds neither the votes nor the
	 * decision's elect/ chunks: it assembles the electorate from the rev 2 it holds */
	call(&N[1], "deploy", &resp, &keep, "service=s:web;artifact=s:%s;opsig=s:%s",
	     store_id_hex(&N[0].v2, hex), opsig(SIGN_OP_DEPLOY, &N[0].v2, 0));
	assert_true(resp.ok);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 2, &N[0].v2);
	NET.hide[4][0] = "elect/";
	NET.hide[4][1] = "vote/";
	call(&N[2], "rollback", &resp, &keep, "service=s:web;reason=s:bad;opsig=s:%s",
	     opsig(SIGN_OP_ROLLBACK, NULL, 0));
	assert_true(resp.ok);
	ctl_response_release(&resp);
	free(keep);
	pump();
	for (int i = 0; i < NB; i++)
		expect_desired(i, 3, &N[0].v1);
	EQ(store_revision_get(N[4].s, "web", 3, &r), 0);
	EQ(r.kind, STORE_REV_ROLLBACK);
	EQ(r.nelect, NB);
	store_revision_release(&r);
	memset(NET.hide, 0, sizeof NET.hide);
}

/* Put @val under (@owner, @key) in the fake network, above what is there, as any cluster key
 * holder can (the owner field is just a field), and queue it for delivery. */
static void inject(const uint8_t owner[STORE_NODE_ID_LEN], const char *key, const uint8_t *val,
		   size_t vlen)
{
	struct rec *r = NULL;
	size_t klen = strlen(key);
	for (size_t i = 0; i < NET.nrecs; i++)
		if (memcmp(NET.recs[i].owner, owner, STORE_NODE_ID_LEN) == 0 &&
		    NET.recs[i].klen == klen && memcmp(NET.recs[i].key, key, klen) == 0)
			r = &NET.recs[i];
	if (!r) {
		assert_true(NET.nrecs < 4096);
		r = &NET.recs[NET.nrecs++];
		memset(r, 0, sizeof *r);
		memcpy(r->owner, owner, STORE_NODE_ID_LEN);
		memcpy(r->key, key, klen);
		r->klen = klen;
	}
	assert_true(vlen <= FLEET_REC_VALUE_MAX);
	memcpy(r->val, val, vlen);
	r->vlen = vlen;
	r->version += 1000;
	NET.queue[NET.qtail++ % 8192] = (size_t)(r - NET.recs);
}

/* web's endpoint record of b@idx at @addr in @state stamped @stamp, signed by @k (NULL: not
 * signed), in the name of b@owner; @v3: the older, unsigned form's version byte */
static void inject_ep(int owner, int idx, const char *addr, uint8_t state, uint64_t stamp,
		      const struct sign_key *k, bool v3)
{
	struct fleet_endpoint e;
	uint8_t msg[FLEET_EP_MSG_MAX], *val;
	size_t len;
	memset(&e, 0, sizeof e);
	snprintf(e.node, sizeof e.node, "b%d", idx);
	snprintf(e.service, sizeof e.service, "web");
	snprintf(e.addr, sizeof e.addr, "%s", addr);
	e.port = 8080;
	e.weight = 100;
	e.protocol = STORE_ENDPOINT_HTTP;
	e.state = state;
	e.rev = 1;
	e.hlc = e.stamp = stamp;
	if (k)
		sign_detached(k, msg, fleet_endpoint_msg(N[owner].id, &e, msg), e.sig);
	EQ(fleet_endpoint_encode(&e, &val, &len), 0);
	if (v3)
		val[1] = FLEET_REC_VERSION;	/* read as the ten fields of the old form */
	inject(N[owner].id, "ep/web", val, len);
	free(val);
}

static int deliver_cb(void *ud, const struct gossip_record *g)
{
	fleet_on_record(ud, g);
	return 0;
}

static void run_ms_done(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Run the loop for @ms (the brains' timers: roster refreshes, replays). */
static void run_ms(uint64_t ms)
{
	uv_timer_t t;
	bool done = false;
	uv_timer_init(&loop, &t);
	t.data = &done;
	uv_timer_start(&t, run_ms_done, ms, 0);
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);	/* the close */
}

/* b@owner's endpoint of web in b@viewer's catalog: true and *ret, or false */
static bool ep_seen(int viewer, int owner, struct fleet_endpoint *ret)
{
	struct fleet_endpoint *eps;
	size_t n;
	bool found = false;
	EQ(fleet_endpoints_get(N[viewer].b, "web", &eps, &n, NULL), 0);
	for (size_t i = 0; i < n; i++)
		if (memcmp(eps[i].node_id, N[owner].id, STORE_NODE_ID_LEN) == 0) {
			*ret = eps[i];
			found = true;
		}
	free(eps);
	return found;
}

#define EP_IS(viewer, owner, a, st)                                                           \
	do {                                                                                  \
		struct fleet_endpoint got_;                                                   \
		assert_true(ep_seen((viewer), (owner), &got_));                               \
		assert_string_equal(got_.addr, (a));                                          \
		EQ(got_.state, (st));                                                         \
	} while (0)

/*
 * Endpoint records (ep/<service>, endpoints.h) decide where every load balancer sends
 * traffic: one in another node's name, signed with a key of the forger's own, unsigned (in
 * either form), replayed older, or moved to another owner, does not change the catalog; the
 * genuine one does. One whose owner's key is not bound yet is held back until it is.
 */
static void test_cluster_ep_forged(void **state)
{
	(void)state;
	struct fleet_endpoint got;
	struct sign_key rogue;
	uint64_t S1 = (uint64_t)1765000000000 << 16, S2 = S1 + 65536;
	sign_key_random(&rogue);

	/* b0 gets no roster record: it binds no peer's key; the others bind every key at their
	 * roster refresh (debounced: the loop runs it) */
	NET.hide[0][0] = "roster";
	pump();
	run_ms(200);
	for (int i = 2; i < NB; i++)
		for (int j = 0; j < NB; j++)
			assert_non_null(fleet__bound_key(N[i].b, N[j].id));
	assert_null(fleet__bound_key(N[0].b, N[1].id));
	inject_ep(1, 1, "10.0.0.1", FLEET_EP_HEALTHY, S1, &NK[1], false);
	pump();
	for (int i = 2; i < NB; i++)
		EP_IS(i, 1, "10.0.0.1", FLEET_EP_HEALTHY);
	assert_false(ep_seen(0, 1, &got));	/* held back, not refused */
	EQ(fleet_sig_refused(N[0].b), 0);
	uint64_t idx = fleet_endpoints_index(N[2].b);

	/* a forger's own key, stamped later: another address, draining */
	uint64_t before = fleet_sig_refused(N[2].b);
	inject_ep(1, 1, "6.6.6.6", FLEET_EP_DRAINING, S2 + 3600000ULL * 65536, &rogue, false);
	pump();
	EP_IS(2, 1, "10.0.0.1", FLEET_EP_HEALTHY);
	EQ(fleet_sig_refused(N[2].b), before + 1);
	/* not signed at all, in the signed form and in the old one */
	inject_ep(1, 1, "6.6.6.6", FLEET_EP_UNHEALTHY, S2, NULL, false);
	pump();
	EP_IS(2, 1, "10.0.0.1", FLEET_EP_HEALTHY);
	inject_ep(1, 1, "6.6.6.6", FLEET_EP_UNHEALTHY, S2, NULL, true);
	pump();
	EP_IS(2, 1, "10.0.0.1", FLEET_EP_HEALTHY);
	/* b1's own signature, stripped to the old version byte: unsigned */
	inject_ep(1, 1, "6.6.6.6", FLEET_EP_UNHEALTHY, S2, &NK[1], true);
	pump();
	EP_IS(2, 1, "10.0.0.1", FLEET_EP_HEALTHY);
	/* b1's key signing a record in b3's name: the owner is in the signed message */
	inject_ep(3, 1, "6.6.6.6", FLEET_EP_HEALTHY, S2, &NK[1], false);
	pump();
	assert_false(ep_seen(2, 3, &got));
	EQ(fleet_sig_refused(N[2].b), before + 5);
	EQ(fleet_endpoints_index(N[2].b), idx);	/* no load balancer was told anything */

	/* the genuine next one (draining) is taken; b1's older one replayed is not */
	inject_ep(1, 1, "10.0.0.1", FLEET_EP_DRAINING, S2, &NK[1], false);
	pump();
	for (int i = 2; i < NB; i++)
		EP_IS(i, 1, "10.0.0.1", FLEET_EP_DRAINING);
	inject_ep(1, 1, "10.0.0.1", FLEET_EP_HEALTHY, S1, &NK[1], false);
	pump();
	for (int i = 2; i < NB; i++)
		EP_IS(i, 1, "10.0.0.1", FLEET_EP_DRAINING);
	EQ(fleet_sig_refused(N[2].b), before + 6);
	/* ... and the replay again (every resync): the same refusal, not the record */
	frecords(&N[2], deliver_cb, N[2].b);
	EP_IS(2, 1, "10.0.0.1", FLEET_EP_DRAINING);
	inject_ep(1, 1, "10.0.0.1", FLEET_EP_DRAINING, S2, &NK[1], false);	/* b1 again */
	pump();

	/* b0 learns the roster: the record held back is examined again (the roster change's
	 * replay) and taken, b1's newest; the forged ones stay out */
	NET.hide[0][0] = NULL;
	pump_all();
	for (int i = 0; i < 30 && !ep_seen(0, 1, &got); i++)
		run_ms(100);
	EP_IS(0, 1, "10.0.0.1", FLEET_EP_DRAINING);
	assert_false(ep_seen(0, 3, &got));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signed_msgs),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_rev_and_cert),
		cmocka_unit_test(test_vote_health),
		cmocka_unit_test(test_roster_enrol_rotate),
		cmocka_unit_test(test_quorum_parse),
		cmocka_unit_test(test_error_words),
		cmocka_unit_test_setup_teardown(test_cluster_elect_held, setup_cluster,
						teardown_cluster),
		cmocka_unit_test_setup_teardown(test_cluster_rollback, setup_cluster,
						teardown_cluster),
		cmocka_unit_test_setup_teardown(test_cluster_ep_forged, setup_cluster,
						teardown_cluster),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
