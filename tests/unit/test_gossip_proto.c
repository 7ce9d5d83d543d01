/*
 * tests/unit/test_gossip_proto.c: the gossip wire codec (gossip/proto.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/proto.h"

static const uint8_t ID_A[GOSSIP_ID_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8,
					     9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t ID_B[GOSSIP_ID_LEN] = { 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
					     0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00 };

/* One message of every type, with fields at interesting widths. */
static size_t sample_msgs(struct gossip_msg *m, uint8_t *value, size_t vlen)
{
	static const char name[] = "node-with-a-name-longer-than-31-bytes.example";
	static const uint8_t labels[] = "site=par\0zone=b";
	static const uint8_t key[] = "health/web";
	size_t n = 0;
	memset(value, 'x', vlen);
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_PING, .seq = 7, .id = ID_A,
				      .num = 1ull << 33 };
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_PING, .seq = 0xfffffffe };
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_ACK, .seq = 300 };
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_NACK, .seq = 70000 };
	m[n] = (struct gossip_msg){ .type = GOSSIP_MSG_PINGREQ, .seq = 1, .id = ID_B };
	m[n].addr.family = GOSSIP_AF_INET6;
	m[n].addr.port = 7946;
	m[n++].addr.ip[15] = 1;
	m[n] = (struct gossip_msg){ .type = GOSSIP_MSG_ALIVE, .id = ID_A, .num = 1ull << 40,
				    .name = (const uint8_t *)name, .name_len = strlen(name),
				    .blob = labels, .blob_len = sizeof(labels) };
	m[n].addr.family = GOSSIP_AF_INET;
	m[n].addr.port = 65535;
	memcpy(m[n++].addr.ip, "\x7f\x00\x00\x01", 4);
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_SUSPECT, .id = ID_A, .num = 5,
				      .accuser = ID_B };
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_DEAD, .id = ID_B, .num = 0,
				      .accuser = ID_B };
	m[n++] = (struct gossip_msg){ .type = GOSSIP_MSG_RECORD, .id = ID_B, .num = 99,
				      .blob = key, .blob_len = sizeof(key) - 1, .value = value,
				      .value_len = vlen };
	return n;
}

static size_t build_packet(uint8_t *buf, size_t cap, const struct gossip_msg *m, size_t n)
{
	struct gossip__w w;
	gossip__w_init(&w, buf, cap);
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, ID_A, GOSSIP_ID_LEN);
	size_t at = gossip__w_array32(&w);
	for (size_t i = 0; i < n; i++) {
		size_t before = w.len;
		assert_int_equal(gossip__msg_put(&w, &m[i]), 0);
		/* the size estimate the packer relies on is exact */
		assert_int_equal(w.len - before, gossip__msg_size(&m[i]));
	}
	gossip__w_array_patch(&w, at, (uint32_t)n);
	assert_int_equal(w.err, 0);
	return w.len;
}

static void same_msg(const struct gossip_msg *a, const struct gossip_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->num, b->num);
	assert_int_equal(!!a->id, !!b->id);
	if (a->id)
		assert_memory_equal(a->id, b->id, GOSSIP_ID_LEN);
	if (a->accuser)
		assert_memory_equal(a->accuser, b->accuser, GOSSIP_ID_LEN);
	if (a->type == GOSSIP_MSG_PINGREQ || a->type == GOSSIP_MSG_ALIVE)
		assert_memory_equal(&a->addr, &b->addr, sizeof(a->addr));
	assert_int_equal(a->name_len, b->name_len);
	if (a->name_len)
		assert_memory_equal(a->name, b->name, a->name_len);
	assert_int_equal(a->blob_len, b->blob_len);
	if (a->blob_len)
		assert_memory_equal(a->blob, b->blob, a->blob_len);
	assert_int_equal(a->value_len, b->value_len);
	if (a->value_len)
		assert_memory_equal(a->value, b->value, a->value_len);
}

static void test_roundtrip(void **state)
{
	struct gossip_msg m[16], d;
	uint8_t value[GOSSIP_VALUE_MAX], buf[4096];
	size_t n = sample_msgs(m, value, sizeof(value));
	size_t len = build_packet(buf, sizeof(buf), m, n);
	assert_int_equal(gossip__pkt_check(buf, len), (int)n);
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint32_t cnt;
	assert_int_equal(gossip__pkt_open(&pos, end, &sender, &cnt), 0);
	assert_int_equal(cnt, n);
	assert_memory_equal(sender, ID_A, GOSSIP_ID_LEN);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(gossip__msg_get(&pos, end, &d), 0);
		same_msg(&m[i], &d);
	}
	assert_ptr_equal(pos, end);
}

static void test_uint_widths(void **state)
{
	static const uint64_t v[] = { 0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffull,
				      0x100000000ull, UINT64_MAX };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t buf[16];
		struct gossip__w w;
		uint64_t out = 12345;
		gossip__w_init(&w, buf, sizeof(buf));
		gossip__w_uint(&w, v[i]);
		const uint8_t *pos = buf;
		assert_int_equal(gossip__r_uint(&pos, buf + w.len, &out), 0);
		assert_int_equal(out, v[i]);
		assert_ptr_equal(pos, buf + w.len);
		/* every strict prefix is rejected */
		for (size_t cut = 0; cut < w.len; cut++) {
			pos = buf;
			assert_int_equal(gossip__r_uint(&pos, buf + cut, &out), -EBADMSG);
		}
	}
}

/* Every truncation of a valid packet is -EBADMSG (never a crash, never accepted). */
static void test_truncations(void **state)
{
	struct gossip_msg m[16];
	uint8_t value[300], buf[4096];
	size_t n = sample_msgs(m, value, sizeof(value));
	size_t len = build_packet(buf, sizeof(buf), m, n);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, buf, cut);
		int r = gossip__pkt_check(copy, cut);
		if (r != -EBADMSG)
			fail_msg("prefix of %zu/%zu bytes: got %d, want %d", cut, len, r, -EBADMSG);
		free(copy);
	}
	/* trailing garbage */
	buf[len] = 0xc0;
	assert_int_equal(gossip__pkt_check(buf, len + 1), -EBADMSG);
}

static void test_bad_fields(void **state)
{
	uint8_t buf[256];
	struct gossip__w w;
	/* another version */
	gossip__w_init(&w, buf, sizeof(buf));
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION + 1);
	gossip__w_bin(&w, ID_A, GOSSIP_ID_LEN);
	gossip__w_array(&w, 0);
	assert_int_equal(gossip__pkt_check(buf, w.len), -EPROTONOSUPPORT);
	/* id of 15 bytes */
	gossip__w_init(&w, buf, sizeof(buf));
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, ID_A, GOSSIP_ID_LEN - 1);
	gossip__w_array(&w, 0);
	assert_int_equal(gossip__pkt_check(buf, w.len), -EBADMSG);
	/* a str where a bin is due, unknown type, negative int, too many msgs */
	static const uint8_t hdr[] = { 0x93, GOSSIP_PROTO_VERSION, 0xc4, 16, 1, 2, 3, 4, 5, 6,
				       7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	struct {
		const char *what;
		uint8_t tail[8];
		size_t len;
	} bad[] = {
		{ "unknown type", { 0x91, 0x92, 0x09, 0x01 }, 4 },
		{ "negative seq", { 0x91, 0x92, 0x02, 0xff }, 4 },
		{ "float seq", { 0x91, 0x92, 0x02, 0xca }, 4 },
		{ "ack with an array appended", { 0x91, 0x93, 0x02, 0x01, 0x90 }, 5 },
		{ "ack with a map appended", { 0x91, 0x93, 0x02, 0x01, 0x80 }, 5 },
		{ "appended field cut short", { 0x91, 0x93, 0x02, 0x01, 0xc4, 0x02, 0x00 }, 7 },
		{ "ping without its clock", { 0x91, 0x93, 0x01, 0x01, 0xc0 }, 5 },
		{ "ping clock nil", { 0x91, 0x94, 0x01, 0x01, 0xc0, 0xc0 }, 6 },
		{ "ping target as str", { 0x91, 0x94, 0x01, 0x01, 0xa1, 'x', 0x00 }, 7 },
		{ "map", { 0x91, 0x81, 0x01, 0x01 }, 4 },
		{ "count too big", { 0xdd, 0x00, 0x00, 0x01, 0x01 }, 5 },
		{ "seq over 32 bits", { 0x91, 0x92, 0x02, 0xcf, 0, 0, 0, 1 }, 8 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(buf, hdr, sizeof(hdr));
		memcpy(buf + sizeof(hdr), bad[i].tail, bad[i].len);
		int r = gossip__pkt_check(buf, sizeof(hdr) + bad[i].len);
		if (r != -EBADMSG)
			fail_msg("%s: got %d, want %d", bad[i].what, r, -EBADMSG);
	}
	/* a key over GOSSIP_KEY_MAX */
	uint8_t big[1024] = { 0 };
	struct gossip_msg rec = { .type = GOSSIP_MSG_RECORD, .id = ID_A, .num = 1, .blob = big,
				  .blob_len = GOSSIP_KEY_MAX + 1 };
	uint8_t pkt[2048];
	size_t len = build_packet(pkt, sizeof(pkt), &rec, 1);
	assert_int_equal(gossip__pkt_check(pkt, len), -EBADMSG);
	/* an empty key */
	rec.blob_len = 0;
	len = build_packet(pkt, sizeof(pkt), &rec, 1);
	assert_int_equal(gossip__pkt_check(pkt, len), -EBADMSG);
	/* an address with a family the codec does not know */
	struct gossip_msg pr = { .type = GOSSIP_MSG_PINGREQ, .seq = 1, .id = ID_A };
	pr.addr.family = GOSSIP_AF_INET;
	len = build_packet(pkt, sizeof(pkt), &pr, 1);
	pkt[len - 7] = 5;	/* the family byte inside the 7-byte addr bin */
	assert_int_equal(gossip__pkt_check(pkt, len), -EBADMSG);
}

/* Fields a later revision appends to a message are skipped; the message itself is read. */
static void test_appended_fields(void **state)
{
	uint8_t buf[128];
	struct gossip__w w;
	gossip__w_init(&w, buf, sizeof(buf));
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, ID_A, GOSSIP_ID_LEN);
	gossip__w_array(&w, 2);
	gossip__w_array(&w, 8);	/* ACK [2, 300] and six more */
	gossip__w_uint(&w, GOSSIP_MSG_ACK);
	gossip__w_uint(&w, 300);
	gossip__w_uint(&w, UINT64_MAX);
	gossip__w_nil(&w);
	buf[w.len++] = 0xc3;	/* true */
	gossip__w_bin(&w, "ab", 2);
	gossip__w_str(&w, "cd", 2);
	gossip__w_uint(&w, 0);
	gossip__w_array(&w, 2);	/* then a NACK as usual */
	gossip__w_uint(&w, GOSSIP_MSG_NACK);
	gossip__w_uint(&w, 301);
	assert_int_equal(w.err, 0);
	assert_int_equal(gossip__pkt_check(buf, w.len), 2);
	const uint8_t *pos = buf, *end = buf + w.len, *sender;
	uint32_t cnt;
	struct gossip_msg d;
	assert_int_equal(gossip__pkt_open(&pos, end, &sender, &cnt), 0);
	assert_int_equal(gossip__msg_get(&pos, end, &d), 0);
	assert_int_equal(d.type, GOSSIP_MSG_ACK);
	assert_int_equal(d.seq, 300);
	assert_int_equal(gossip__msg_get(&pos, end, &d), 0);
	assert_int_equal(d.type, GOSSIP_MSG_NACK);
	assert_int_equal(d.seq, 301);
	assert_ptr_equal(pos, end);
}

static void test_writer_overflow(void **state)
{
	uint8_t buf[8];
	struct gossip__w w;
	gossip__w_init(&w, buf, sizeof(buf));
	struct gossip_msg m = { .type = GOSSIP_MSG_SUSPECT, .id = ID_A, .num = 1, .accuser = ID_B };
	assert_int_equal(gossip__msg_put(&w, &m), -EMSGSIZE);
	assert_int_equal(w.len, 0);
	gossip__w_bin(&w, ID_A, GOSSIP_ID_LEN);
	assert_int_equal(w.err, -EMSGSIZE);
}

static void test_addr_helpers(void **state)
{
	struct gossip_addr a = { .family = GOSSIP_AF_INET, .port = 7946, .ip = { 10, 0, 0, 1 } };
	struct gossip_addr b = a;
	char s[64];
	assert_int_equal(gossip_addr_cmp(&a, &b), 0);
	b.port++;
	assert_true(gossip_addr_cmp(&a, &b) < 0);
	assert_string_equal(gossip_addr_format(&a, s, sizeof(s)), "10.0.0.1:7946");
	struct gossip_addr c = { .family = GOSSIP_AF_INET6, .port = 1 };
	c.ip[15] = 1;
	assert_string_equal(gossip_addr_format(&c, s, sizeof(s)), "[0:0:0:0:0:0:0:1]:1");
	assert_string_equal(gossip_state_name(GOSSIP_LEFT), "left");
	assert_string_equal(gossip_state_name(42), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_uint_widths),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_appended_fields),
		cmocka_unit_test(test_writer_overflow),
		cmocka_unit_test(test_addr_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
