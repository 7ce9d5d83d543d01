/*
 * tests/unit/test_agent_sign.c: sign_verify remembers its verdicts (agent/base/sign.h), and a
 * remembered verdict is only ever given for the very same (key, message, signature) bytes:
 * anything that differs in one byte is verified again, and the answers are those of Ed25519.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "agent/agree/agree.h"
#include "agent/base/sign.h"

static uint64_t checked(void)
{
	uint64_t c;
	sign_verify_stats(&c, NULL);
	return c;
}

static uint64_t remembered(void)
{
	uint64_t r;
	sign_verify_stats(NULL, &r);
	return r;
}

static void keys(struct sign_key *k1, struct sign_key *k2)
{
	uint8_t seed[32] = {7};
	sign_key_from_seed(seed, k1);
	seed[0] = 8;
	sign_key_from_seed(seed, k2);
}

static void test_remembered_only_for_the_same_bytes(void **state)
{
	(void)state;
	struct sign_key k1, k2;
	uint8_t msg[100], sig[SIGN_SIG_LEN];
	keys(&k1, &k2);
	sign_verify_forget();
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)i;
	sign_detached(&k1, msg, sizeof msg, sig);

	uint64_t c = checked(), r = remembered();
	assert_true(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 1);	/* the first time: Ed25519 */
	assert_true(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 1);	/* the same bytes: remembered */
	assert_int_equal(remembered(), r + 1);

	/* a changed record is verified again, and refused */
	msg[50] ^= 1;
	assert_false(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 2);
	assert_false(sign_verify(k1.pk, msg, sizeof msg, sig));	/* still refused */
	assert_int_equal(checked(), c + 2);
	msg[50] ^= 1;
	/* one byte less of the same message */
	assert_false(sign_verify(k1.pk, msg, sizeof msg - 1, sig));
	assert_int_equal(checked(), c + 3);
	/* another signature */
	sig[10] ^= 0x40;
	assert_false(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 4);
	sig[10] ^= 0x40;
	/* another key: the verdict for k1 is not reused */
	assert_false(sign_verify(k2.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 5);
	/* and the original is still good */
	assert_true(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 5);

	/* forgetting means checking again */
	sign_verify_forget();
	assert_true(sign_verify(k1.pk, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 6);

	/* an unknown (all-zero) key never verifies and costs nothing */
	static const uint8_t zero[SIGN_PUBLIC_LEN];
	assert_false(sign_verify(zero, msg, sizeof msg, sig));
	assert_int_equal(checked(), c + 6);
	/* an empty message is a message too */
	sign_detached(&k1, msg, 0, sig);
	assert_true(sign_verify(k1.pk, msg, 0, sig));
	assert_false(sign_verify(k1.pk, msg, 1, sig));
}

/* More distinct triples than slots: evicted ones are verified again, never answered wrong. */
static void test_eviction(void **state)
{
	(void)state;
	struct sign_key k1, k2;
	enum { N = 4500 };
	static uint8_t sigs[N][SIGN_SIG_LEN];
	uint32_t msg;
	keys(&k1, &k2);
	sign_verify_forget();
	for (uint32_t i = 0; i < N; i++) {
		msg = i;
		sign_detached(&k1, &msg, sizeof msg, sigs[i]);
		assert_true(sign_verify(k1.pk, &msg, sizeof msg, sigs[i]));
	}
	uint64_t c = checked(), r = remembered();
	for (uint32_t i = 0; i < N; i++) {
		msg = i;
		assert_true(sign_verify(k1.pk, &msg, sizeof msg, sigs[i]));
	}
	/* each call either verified or remembered; much of the first pass is still held */
	assert_int_equal((checked() - c) + (remembered() - r), N);
	assert_true(remembered() - r > N / 8);
	assert_true(checked() - c > 0);
	/* the signature of message i does not verify message i + 1, however full the memory */
	for (uint32_t i = 0; i < N; i++) {
		msg = i + 1;
		assert_false(sign_verify(k1.pk, &msg, sizeof msg, sigs[i]));
	}
}

/* Signed votes (agree_vote_verify) go through the same memory: a vote seen again in another
 * certificate costs no Ed25519 check, a vote changed in any field is checked and refused. */
static void test_votes(void **state)
{
	(void)state;
	struct sign_key k1, k2;
	struct store_vote v, o;
	uint8_t msg[AGREE_VOTE_MSG_MAX];
	keys(&k1, &k2);
	sign_verify_forget();
	memset(&v, 0, sizeof v);
	strcpy(v.service, "web");
	v.rev = 4;
	v.reason = STORE_VOTE_OPERATOR;
	v.hlc = 99;
	v.subject = 1234;
	v.target = 3;
	memset(v.voter, 0x22, STORE_NODE_ID_LEN);
	sign_detached(&k1, msg, agree_vote_msg(&v, msg), v.sig);

	uint64_t c = checked();
	assert_true(agree_vote_verify(&v, k1.pk));
	assert_true(agree_vote_verify(&v, k1.pk));
	assert_true(agree_vote_verify(&v, k1.pk));
	assert_int_equal(checked(), c + 1);
	o = v;
	o.round++;
	assert_false(agree_vote_verify(&o, k1.pk));
	o = v;
	o.voter[3] ^= 1;	/* in another node's name */
	assert_false(agree_vote_verify(&o, k1.pk));
	assert_false(agree_vote_verify(&v, k2.pk));
	assert_int_equal(checked(), c + 4);
	assert_true(agree_vote_verify(&v, k1.pk));
	assert_int_equal(checked(), c + 4);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remembered_only_for_the_same_bytes),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_votes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
