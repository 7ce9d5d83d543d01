/*
 * Unit tests of gossip/crypto.c: keyring, sealing/opening, replay windows, key rotation,
 * keyring files, TCP frame prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gossip/crypto.h"

static const uint8_t id_a[GOSSIP_SENDER_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
						9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t id_b[GOSSIP_SENDER_LEN] = {0xb0, 2,  3,  4,  5,  6,  7,  8,
						9,    10, 11, 12, 13, 14, 15, 16};

struct pair {
	struct gossip_keyring *kra, *krb;
	struct gossip_crypto *a, *b;
	uint8_t key[GOSSIP_KEY_LEN];
	uint8_t kid;
};

static void pair_setup(struct pair *p, const char *cla, const char *clb)
{
	memset(p, 0, sizeof(*p));
	gossip_key_generate(p->key);
	assert_int_equal(gossip_keyring_new(&p->kra), 0);
	assert_int_equal(gossip_keyring_new(&p->krb), 0);
	assert_int_equal(gossip_keyring_install(p->kra, p->key, &p->kid), 0);
	assert_int_equal(gossip_keyring_install(p->krb, p->key, NULL), 0);
	assert_int_equal(gossip_crypto_new(p->kra, cla, id_a, 0, &p->a), 0);
	assert_int_equal(gossip_crypto_new(p->krb, clb, id_b, 0, &p->b), 0);
}

static void pair_teardown(struct pair *p)
{
	gossip_crypto_free(p->a);
	gossip_crypto_free(p->b);
	gossip_keyring_free(p->kra);
	gossip_keyring_free(p->krb);
}

static size_t seal(struct gossip_crypto *c, const char *msg, uint8_t *out, size_t cap)
{
	size_t n = 0;

	assert_int_equal(gossip_crypto_seal(c, GOSSIP_SEAL_DATAGRAM, (const uint8_t *)msg,
					    strlen(msg), out, cap, &n),
			 0);
	assert_int_equal(n, strlen(msg) + GOSSIP_SEAL_OVERHEAD_BYTES);
	return n;
}

static void test_roundtrip(void **state)
{
	struct pair p;
	uint8_t pkt[256], out[256], sender[GOSSIP_SENDER_LEN];
	size_t n, m = 0;

	pair_setup(&p, "prod", "prod");
	n = seal(p.a, "hello gossip", pkt, sizeof(pkt));
	assert_int_equal(pkt[0], GOSSIP_SEAL_VERSION);
	assert_int_equal(pkt[1], p.kid);
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, sizeof(out), &m, sender),
		0);
	assert_int_equal(m, 12);
	assert_memory_equal(out, "hello gossip", 12);
	assert_memory_equal(sender, id_a, GOSSIP_SENDER_LEN);
	assert_int_equal(gossip_crypto_stats(p.b)->opened, 1);
	assert_int_equal(gossip_crypto_stats(p.a)->sealed, 1);

	/* empty plaintext */
	assert_int_equal(gossip_crypto_seal(p.a, GOSSIP_SEAL_STREAM, NULL, 0, pkt, sizeof(pkt), &n),
			 0);
	assert_int_equal(n, GOSSIP_SEAL_OVERHEAD_BYTES);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_STREAM, pkt, n, out, 0, &m, NULL), 0);
	assert_int_equal(m, 0);

	/* output too small: caller error, not a drop */
	n = seal(p.a, "abc", pkt, sizeof(pkt));
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, 2, &m, NULL),
			 -EMSGSIZE);
	assert_int_equal(gossip_crypto_seal(p.a, GOSSIP_SEAL_DATAGRAM, (const uint8_t *)"abc", 3,
					    pkt, 3 + GOSSIP_SEAL_OVERHEAD_BYTES - 1, &n),
			 -EMSGSIZE);
	pair_teardown(&p);
}

static void test_kind_mismatch(void **state)
{
	struct pair p;
	uint8_t pkt[256], out[256];
	size_t n, m;

	pair_setup(&p, "c", "c");
	n = seal(p.a, "datagram", pkt, sizeof(pkt));
	/* a datagram replayed into a stream */
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_STREAM, pkt, n, out, sizeof(out), &m, NULL),
		-EBADMSG);
	assert_int_equal(gossip_crypto_stats(p.b)->drops[GOSSIP_DROP_BAD_VERSION], 1);
	/* and the kind byte is authenticated: flipping it fails the tag */
	pkt[2] = GOSSIP_SEAL_STREAM;
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_STREAM, pkt, n, out, sizeof(out), &m, NULL),
		-EKEYREJECTED);
	pair_teardown(&p);
}

static void test_tamper_every_byte(void **state)
{
	struct pair p;
	uint8_t pkt[256], bad[256], out[256];
	size_t n, m;
	uint64_t drops = 0;

	pair_setup(&p, "prod", "prod");
	n = seal(p.a, "tamper with any byte of me", pkt, sizeof(pkt));
	for (size_t i = 0; i < n; i++) {
		int r;

		memcpy(bad, pkt, n);
		bad[i] ^= 0x40;
		r = gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, bad, n, out, sizeof(out), &m,
				       NULL);
		if (r == 0)
			fail_msg("tampered byte %zu of %zu accepted", i, n);
		drops++;
	}
	/* truncated */
	for (size_t l = 0; l < GOSSIP_SEAL_OVERHEAD_BYTES; l++)
		assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, l, out,
						    sizeof(out), &m, NULL),
				 -EBADMSG);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n - 1, out, sizeof(out),
					    &m, NULL),
			 -EKEYREJECTED);
	{
		const struct gossip_crypto_stats *st = gossip_crypto_stats(p.b);
		uint64_t total = 0;

		for (int i = 0; i < GOSSIP_DROP_MAX; i++)
			total += st->drops[i];
		assert_int_equal(total, drops + GOSSIP_SEAL_OVERHEAD_BYTES + 1);
		assert_int_equal(st->drops[GOSSIP_DROP_TOO_SHORT], GOSSIP_SEAL_OVERHEAD_BYTES);
		assert_int_equal(st->opened, 0);
	}
	/* the original still opens: nothing above moved the window */
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, sizeof(out), &m, NULL),
		0);
	pair_teardown(&p);
}

static void test_wrong_cluster(void **state)
{
	struct pair p;
	uint8_t pkt[256], out[256];
	size_t n, m;

	pair_setup(&p, "prod", "staging");
	n = seal(p.a, "hi", pkt, sizeof(pkt));
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, sizeof(out), &m, NULL),
		-EKEYREJECTED);
	assert_int_equal(gossip_crypto_stats(p.b)->drops[GOSSIP_DROP_AUTH], 1);
	pair_teardown(&p);
}

static void test_wrong_key(void **state)
{
	struct pair p;
	uint8_t pkt[256], out[256], other[GOSSIP_KEY_LEN], oid;
	size_t n, m;

	pair_setup(&p, "prod", "prod");
	/* B holds only another key: unknown key id */
	do
		gossip_key_generate(other);
	while (gossip_key_id(other) == p.kid);
	assert_int_equal(gossip_keyring_install(p.krb, other, &oid), 0);
	assert_int_equal(gossip_keyring_use(p.krb, oid), 0);
	assert_int_equal(gossip_keyring_remove(p.krb, p.kid), 0);
	n = seal(p.a, "hi", pkt, sizeof(pkt));
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, sizeof(out), &m, NULL),
		-ENOKEY);
	assert_int_equal(gossip_crypto_stats(p.b)->drops[GOSSIP_DROP_UNKNOWN_KEY], 1);
	/* a forged key id pointing at B's key fails authentication */
	pkt[1] = oid;
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkt, n, out, sizeof(out), &m, NULL),
		-EKEYREJECTED);
	pair_teardown(&p);
}

static void test_replay(void **state)
{
	struct pair p;
	uint8_t pkts[100][128], out[128];
	size_t lens[100], m;

	pair_setup(&p, "c", "c");
	for (int i = 0; i < 100; i++)
		lens[i] = seal(p.a, "x", pkts[i], sizeof(pkts[i]));
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[0], lens[0], out,
					    sizeof(out), &m, NULL),
			 0);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[0], lens[0], out,
					    sizeof(out), &m, NULL),
			 -EALREADY);
	/* out of order within the window is fine, once */
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[70], lens[70], out,
					    sizeof(out), &m, NULL),
			 0);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[10], lens[10], out,
					    sizeof(out), &m, NULL),
			 0);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[10], lens[10], out,
					    sizeof(out), &m, NULL),
			 -EALREADY);
	/* 70 - 5 >= 64: too old */
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[5], lens[5], out,
					    sizeof(out), &m, NULL),
			 -EALREADY);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[7], lens[7], out,
					    sizeof(out), &m, NULL),
			 0);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[99], lens[99], out,
					    sizeof(out), &m, NULL),
			 0);
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, pkts[70], lens[70], out,
					    sizeof(out), &m, NULL),
			 -EALREADY);
	assert_int_equal(gossip_crypto_stats(p.b)->drops[GOSSIP_DROP_REPLAY], 4);
	assert_int_equal(gossip_crypto_stats(p.b)->opened, 5);

	/* a packet reflected back to its sender */
	assert_int_equal(gossip_crypto_open(p.a, GOSSIP_SEAL_DATAGRAM, pkts[98], lens[98], out,
					    sizeof(out), &m, NULL),
			 -ELOOP);
	assert_int_equal(gossip_crypto_stats(p.a)->drops[GOSSIP_DROP_SELF], 1);
	pair_teardown(&p);
}

static void test_restart_accepted(void **state)
{
	struct pair p;
	struct gossip_crypto *a2;
	uint8_t old[128], fresh[128], out[128];
	size_t on, fn, m;
	uint64_t base = 1700000000000ull;

	pair_setup(&p, "c", "c");
	gossip_crypto_free(p.a);
	assert_int_equal(gossip_crypto_new(p.kra, "c", id_a, base, &p.a), 0);
	assert_int_equal(gossip_crypto_next_counter(p.a), base << 20);
	for (int i = 0; i < 1000; i++)
		on = seal(p.a, "old life", old, sizeof(old));
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, old, on, out, sizeof(out), &m, NULL),
		0);
	/* restart 5 ms later: the new life's counters start above anything the old one sent */
	assert_int_equal(gossip_crypto_new(p.kra, "c", id_a, base + 5, &a2), 0);
	fn = seal(a2, "new life", fresh, sizeof(fresh));
	assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, fresh, fn, out, sizeof(out),
					    &m, NULL),
			 0);
	assert_memory_equal(out, "new life", 8);
	/* and the previous life's packets are now stale */
	assert_int_equal(
		gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, old, on, out, sizeof(out), &m, NULL),
		-EALREADY);
	/* default base: the wall clock */
	{
		struct gossip_crypto *a3;

		assert_int_equal(gossip_crypto_new(p.kra, "c", id_a, 0, &a3), 0);
		assert_true(gossip_crypto_next_counter(a3) > (base + 5) << 20);
		fn = seal(a3, "third", fresh, sizeof(fresh));
		assert_int_equal(gossip_crypto_open(p.b, GOSSIP_SEAL_DATAGRAM, fresh, fn, out,
						    sizeof(out), &m, NULL),
				 0);
		gossip_crypto_free(a3);
	}
	{
		struct gossip_crypto *bad = NULL;

		assert_int_equal(gossip_crypto_new(p.kra, "c", id_a, UINT64_C(1) << 43, &bad),
				 -EINVAL);
		assert_null(bad);
	}
	gossip_crypto_free(a2);
	pair_teardown(&p);
}

static void test_many_senders_eviction(void **state)
{
	struct gossip_keyring *kr;
	struct gossip_crypto *rx, *tx;
	uint8_t key[GOSSIP_KEY_LEN], pkt[128], out[128], sid[GOSSIP_SENDER_LEN] = {0}, first[128];
	uint8_t rxid[GOSSIP_SENDER_LEN];
	size_t n, m, fn = 0;

	memset(rxid, 0xff, sizeof(rxid)); /* never equal to a sender below */

	gossip_key_generate(key);
	assert_int_equal(gossip_keyring_new(&kr), 0);
	assert_int_equal(gossip_keyring_install(kr, key, NULL), 0);
	assert_int_equal(gossip_crypto_new(kr, "c", rxid, 0, &rx), 0);
	/* more senders than the table holds: it must keep working and stay bounded */
	for (uint32_t i = 0; i < GOSSIP_REPLAY_SENDERS + 100; i++) {
		memcpy(sid, &i, sizeof(i));
		assert_int_equal(gossip_crypto_new(kr, "c", sid, 1000 + i, &tx), 0);
		assert_int_equal(gossip_crypto_seal(tx, GOSSIP_SEAL_DATAGRAM, (const uint8_t *)"m",
						    1, pkt, sizeof(pkt), &n),
				 0);
		if (i == GOSSIP_REPLAY_SENDERS + 99) {
			memcpy(first, pkt, n);
			fn = n;
		}
		assert_int_equal(gossip_crypto_open(rx, GOSSIP_SEAL_DATAGRAM, pkt, n, out,
						    sizeof(out), &m, NULL),
				 0);
		gossip_crypto_free(tx);
	}
	/* the most recent sender is still remembered */
	assert_int_equal(
		gossip_crypto_open(rx, GOSSIP_SEAL_DATAGRAM, first, fn, out, sizeof(out), &m, NULL),
		-EALREADY);
	gossip_crypto_free(rx);
	gossip_keyring_free(kr);
}

static void test_keyring_ops(void **state)
{
	struct gossip_keyring *kr;
	uint8_t k[GOSSIP_KEYRING_MAX + 1][GOSSIP_KEY_LEN], ids[GOSSIP_KEYRING_MAX], id, got[32];
	int seen[256] = {0};
	size_t i;

	assert_int_equal(gossip_keyring_new(&kr), 0);
	assert_int_equal(gossip_keyring_primary(kr), -ENOENT);
	for (i = 0; i <= GOSSIP_KEYRING_MAX; i++) {
		do
			gossip_key_generate(k[i]);
		while (seen[gossip_key_id(k[i])]);
		seen[gossip_key_id(k[i])] = 1;
	}
	for (i = 0; i < GOSSIP_KEYRING_MAX; i++) {
		assert_int_equal(gossip_keyring_install(kr, k[i], &id), 0);
		assert_int_equal(id, gossip_key_id(k[i]));
	}
	assert_int_equal(gossip_keyring_install(kr, k[GOSSIP_KEYRING_MAX], NULL), -ENOSPC);
	/* idempotent */
	assert_int_equal(gossip_keyring_install(kr, k[3], NULL), 0);
	assert_int_equal(gossip_keyring_count(kr), GOSSIP_KEYRING_MAX);
	assert_int_equal(gossip_keyring_primary(kr), gossip_key_id(k[0]));
	assert_int_equal(gossip_keyring_remove(kr, gossip_key_id(k[0])), -EBUSY);
	assert_int_equal(gossip_keyring_use(kr, gossip_key_id(k[5])), 0);
	assert_int_equal(gossip_keyring_remove(kr, gossip_key_id(k[0])), 0);
	assert_int_equal(gossip_keyring_remove(kr, gossip_key_id(k[0])), -ENOENT);
	assert_int_equal(gossip_keyring_use(kr, gossip_key_id(k[0])), -ENOENT);
	assert_false(gossip_keyring_has(kr, gossip_key_id(k[0])));
	assert_int_equal(gossip_keyring_list(kr, ids, GOSSIP_KEYRING_MAX), GOSSIP_KEYRING_MAX - 1);
	assert_int_equal(ids[0], gossip_key_id(k[5]));
	assert_int_equal(ids[1], gossip_key_id(k[1]));
	assert_int_equal(gossip_keyring_primary(kr), gossip_key_id(k[5]));
	assert_int_equal(gossip_keyring_get(kr, gossip_key_id(k[7]), got), 0);
	assert_memory_equal(got, k[7], GOSSIP_KEY_LEN);
	/* id collision with a different key */
	{
		uint8_t c[GOSSIP_KEY_LEN];

		do
			gossip_key_generate(c);
		while (gossip_key_id(c) != gossip_key_id(k[7]));
		assert_int_equal(gossip_keyring_install(kr, c, NULL), -EEXIST);
	}
	gossip_keyring_free(kr);
	gossip_keyring_free(NULL);
}

/* Rotation as an operator does it across a running cluster. */
static void test_rotation(void **state)
{
	struct pair p;
	uint8_t newk[GOSSIP_KEY_LEN], nid, pkt[128], out[128];
	size_t n, m;

	pair_setup(&p, "c", "c");
	do
		gossip_key_generate(newk);
	while (gossip_key_id(newk) == p.kid);
	/* 1. install everywhere: A still seals with the old key, B opens */
	assert_int_equal(gossip_keyring_install(p.kra, newk, &nid), 0);
	assert_int_equal(gossip_keyring_install(p.krb, newk, NULL), 0);
	n = seal(p.a, "1", pkt, sizeof(pkt));
	assert_int_equal(pkt[1], p.kid);
	assert_int_equal(gossip_crypto_open(p.b, 0, pkt, n, out, sizeof(out), &m, NULL), 0);
	/* 2. A switches first: B holds the new key only as a secondary and still opens */
	assert_int_equal(gossip_keyring_use(p.kra, nid), 0);
	n = seal(p.a, "2", pkt, sizeof(pkt));
	assert_int_equal(pkt[1], nid);
	assert_int_equal(gossip_keyring_primary(p.krb), p.kid);
	assert_int_equal(gossip_crypto_open(p.b, 0, pkt, n, out, sizeof(out), &m, NULL), 0);
	/* B still seals with old, A still opens old */
	n = seal(p.b, "3", pkt, sizeof(pkt));
	assert_int_equal(gossip_crypto_open(p.a, 0, pkt, n, out, sizeof(out), &m, NULL), 0);
	assert_int_equal(gossip_keyring_use(p.krb, nid), 0);
	/* 3. remove the old key: packets sealed with it no longer open */
	n = seal(p.b, "4", pkt, sizeof(pkt));
	{
		uint8_t oldpkt[128];
		size_t on;

		assert_int_equal(gossip_keyring_use(p.krb, p.kid), 0);
		on = seal(p.b, "old", oldpkt, sizeof(oldpkt));
		assert_int_equal(gossip_keyring_use(p.krb, nid), 0);
		assert_int_equal(gossip_keyring_remove(p.kra, p.kid), 0);
		assert_int_equal(gossip_crypto_open(p.a, 0, oldpkt, on, out, sizeof(out), &m, NULL),
				 -ENOKEY);
	}
	assert_int_equal(gossip_crypto_open(p.a, 0, pkt, n, out, sizeof(out), &m, NULL), 0);
	/* empty keyring cannot seal */
	{
		struct gossip_keyring *e;
		struct gossip_crypto *c;

		assert_int_equal(gossip_keyring_new(&e), 0);
		assert_int_equal(gossip_crypto_new(e, "c", id_a, 0, &c), 0);
		assert_int_equal(
			gossip_crypto_seal(c, 0, (const uint8_t *)"x", 1, pkt, sizeof(pkt), &n),
			-ENOKEY);
		gossip_crypto_free(c);
		gossip_keyring_free(e);
	}
	pair_teardown(&p);
}

static char tmpdir[64];

static int setup_dir(void **state)
{
	strcpy(tmpdir, "/tmp/shoal-crypto-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_keyring_file(void **state)
{
	struct gossip_keyring *kr, *kr2;
	uint8_t k1[GOSSIP_KEY_LEN], k2[GOSSIP_KEY_LEN], ids[4], got[GOSSIP_KEY_LEN];
	char path[128], b64[GOSSIP_KEY_B64LEN + 1], text[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/keyring", tmpdir);
	gossip_key_generate(k1);
	do
		gossip_key_generate(k2);
	while (gossip_key_id(k2) == gossip_key_id(k1));
	assert_int_equal(gossip_keyring_new(&kr), 0);
	assert_int_equal(gossip_keyring_save(kr, path), -ENOENT);
	assert_int_equal(gossip_keyring_install(kr, k1, NULL), 0);
	assert_int_equal(gossip_keyring_install(kr, k2, NULL), 0);
	assert_int_equal(gossip_keyring_use(kr, gossip_key_id(k2)), 0);
	assert_int_equal(gossip_keyring_save(kr, path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(gossip_keyring_new(&kr2), 0);
	assert_int_equal(gossip_keyring_load(kr2, path), 0);
	assert_int_equal(gossip_keyring_list(kr2, ids, 4), 2);
	assert_int_equal(ids[0], gossip_key_id(k2)); /* primary first */
	assert_int_equal(ids[1], gossip_key_id(k1));
	assert_int_equal(gossip_keyring_get(kr2, ids[1], got), 0);
	assert_memory_equal(got, k1, GOSSIP_KEY_LEN);

	/* comments, blank lines, CRLF, surrounding spaces */
	gossip_key_encode(k1, b64);
	snprintf(text, sizeof(text), "# comment\n\n   %s  \r\n", b64);
	write_file(path, text);
	assert_int_equal(gossip_keyring_load(kr2, path), 0);
	assert_int_equal(gossip_keyring_count(kr2), 1);
	assert_int_equal(gossip_keyring_primary(kr2), gossip_key_id(k1));

	/* bad files leave the keyring untouched */
	write_file(path, "# nothing\n\n");
	assert_int_equal(gossip_keyring_load(kr2, path), -EINVAL);
	write_file(path, "not base64 at all\n");
	assert_int_equal(gossip_keyring_load(kr2, path), -EINVAL);
	snprintf(text, sizeof(text), "%s\n%.20s\n", b64, b64); /* second line truncated */
	write_file(path, text);
	assert_int_equal(gossip_keyring_load(kr2, path), -EINVAL);
	write_file(path, "AAAA\n"); /* valid base64, wrong length */
	assert_int_equal(gossip_keyring_load(kr2, path), -EINVAL);
	snprintf(text, sizeof(text), "%s=\n", b64);
	write_file(path, text);
	assert_int_equal(gossip_keyring_load(kr2, path), -EINVAL);
	{
		char big[70 * 1024];

		memset(big, '#', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		write_file(path, big);
		assert_int_equal(gossip_keyring_load(kr2, path), -EFBIG);
	}
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	assert_int_equal(gossip_keyring_load(kr2, path), -ENOENT);
	assert_int_equal(gossip_keyring_load(kr2, tmpdir), -EINVAL);
	assert_int_equal(gossip_keyring_count(kr2), 1);
	assert_int_equal(gossip_keyring_primary(kr2), gossip_key_id(k1));

	/* save into a missing directory fails cleanly */
	snprintf(path, sizeof(path), "%s/nodir/keyring", tmpdir);
	assert_int_equal(gossip_keyring_save(kr, path), -ENOENT);

	/* decode edge cases */
	assert_int_equal(gossip_key_decode(b64, strlen(b64), got), 0);
	assert_memory_equal(got, k1, GOSSIP_KEY_LEN);
	assert_int_equal(gossip_key_decode(b64, strlen(b64) - 1, got), -EINVAL);
	assert_int_equal(gossip_key_decode("", 0, got), -EINVAL);
	gossip_keyring_free(kr);
	gossip_keyring_free(kr2);
}

static void test_frames(void **state)
{
	uint8_t buf[8] = {0};
	size_t need = 0;

	assert_int_equal(gossip_frame_parse(buf, 3, &need), 0);
	assert_int_equal(need, GOSSIP_FRAME_PREFIX);
	gossip_frame_put_len(buf, 100);
	assert_int_equal(gossip_frame_parse(buf, 4, &need), 0);
	assert_int_equal(need, 104);
	assert_int_equal(gossip_frame_parse(buf, 104, &need), 1);
	gossip_frame_put_len(buf, GOSSIP_SEAL_OVERHEAD_BYTES - 1);
	assert_int_equal(gossip_frame_parse(buf, 4, &need), -EMSGSIZE);
	gossip_frame_put_len(buf, GOSSIP_FRAME_MAX + 1);
	assert_int_equal(gossip_frame_parse(buf, 4, &need), -EMSGSIZE);
	gossip_frame_put_len(buf, 0xffffffffu);
	assert_int_equal(gossip_frame_parse(buf, 8, &need), -EMSGSIZE);
	assert_string_equal(gossip_drop_name(GOSSIP_DROP_REPLAY), "replay");
	assert_string_equal(gossip_drop_name(GOSSIP_DROP_MAX), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_kind_mismatch),
		cmocka_unit_test(test_tamper_every_byte),
		cmocka_unit_test(test_wrong_cluster),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_restart_accepted),
		cmocka_unit_test(test_many_senders_eviction),
		cmocka_unit_test(test_keyring_ops),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test_setup_teardown(test_keyring_file, setup_dir, teardown_dir),
		cmocka_unit_test(test_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
