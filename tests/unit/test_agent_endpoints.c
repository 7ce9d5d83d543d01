/*
 * Unit tests of the endpoint records (agent/fleet/endpoints.c, issue 14): the key, the value
 * codec both ways, and every refusal of the decoder (bytes from other nodes); the signed form
 * (version 4: sig and stamp) and the message its signature covers. The fleet's refusal of
 * forged, unsigned and replayed records is tested in unit_agent_brain (test_cluster_ep_forged)
 * and integration_agent_brain_forge.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/base/sign.h"
#include "agent/fleet/endpoints.h"
#include "agent/fleet/records.h"

static struct fleet_endpoint sample(void)
{
	struct fleet_endpoint e;
	memset(&e, 0, sizeof e);
	strcpy(e.node, "n1");
	strcpy(e.site, "par1");
	strcpy(e.service, "web");
	strcpy(e.addr, "10.0.0.5");
	e.port = 8080;
	e.weight = 256;
	e.protocol = STORE_ENDPOINT_HTTP;
	e.state = FLEET_EP_DRAINING;
	e.rev = 7;
	e.hlc = 123456789;
	e.stamp = 123456789;
	for (size_t i = 0; i < sizeof e.sig; i++)
		e.sig[i] = (uint8_t)(i + 1);
	return e;
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct fleet_endpoint e = sample(), d;
	uint8_t *buf;
	size_t len;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), 0);
	assert_true(len <= FLEET_REC_VALUE_MAX);
	memset(&d, 0xaa, sizeof d);
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), 0);
	assert_string_equal(d.node, "n1");
	assert_string_equal(d.site, "par1");
	assert_string_equal(d.service, "web");
	assert_string_equal(d.addr, "10.0.0.5");
	assert_int_equal(d.port, 8080);
	assert_int_equal(d.weight, 256);
	assert_int_equal(d.protocol, STORE_ENDPOINT_HTTP);
	assert_int_equal(d.state, FLEET_EP_DRAINING);
	assert_int_equal(d.rev, 7);
	assert_int_equal(d.hlc, 123456789);
	assert_int_equal(d.stamp, 123456789);
	assert_memory_equal(d.sig, e.sig, sizeof e.sig);
	assert_false(d.down);
	assert_int_equal(buf[1], FLEET_EP_VERSION);
	/* every strict prefix is refused */
	for (size_t n = 0; n < len; n++)
		assert_int_not_equal(fleet_endpoint_decode(buf, n, &d), 0);
	/* another record type, another version */
	buf[2] = FLEET_REC_HEALTH;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), -EBADMSG);
	buf[2] = FLEET_REC_ENDPOINT;
	buf[1] = FLEET_EP_VERSION + 1;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), -EPROTONOSUPPORT);
	buf[1] = FLEET_REC_VERSION - 1;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), -EPROTONOSUPPORT);
	/* the signed form's twelve fields under the old version byte: read as the old form
	 * (the appended fields ignored), so unsigned */
	buf[1] = FLEET_REC_VERSION;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), 0);
	assert_int_equal(d.stamp, 0);
	uint8_t zero[STORE_SIG_LEN] = {0};
	assert_memory_equal(d.sig, zero, sizeof zero);
	free(buf);

	/* IPv6 and a withdrawal (port 0, no address) */
	e = sample();
	strcpy(e.addr, "fd00::5");
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), 0);
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), 0);
	assert_string_equal(d.addr, "fd00::5");
	free(buf);
	e.port = 0;
	e.addr[0] = 0;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), 0);
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), 0);
	assert_int_equal(d.port, 0);
	free(buf);
}

static void test_encode_refuses(void **state)
{
	(void)state;
	struct fleet_endpoint e;
	uint8_t *buf;
	size_t len;
	e = sample();
	e.weight = 257;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), -EINVAL);
	e = sample();
	e.state = 4;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), -EINVAL);
	e = sample();
	strcpy(e.addr, "web.example");	/* names are never sent: HAProxy would not resolve them */
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), -EINVAL);
	e = sample();
	e.port = 0;			/* a withdrawal carries no address */
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), -EINVAL);
	e = sample();
	e.protocol = 2;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), -EINVAL);
}

/* Hand-made values: the decoder's checks, one by one. */
static size_t value(uint8_t *out, const char *addr, unsigned port, unsigned weight,
		    unsigned state, const char *service)
{
	/* 'S' 2 'P' fixarray(10) */
	size_t n = 0;
	out[n++] = 'S';
	out[n++] = FLEET_REC_VERSION;
	out[n++] = FLEET_REC_ENDPOINT;
	out[n++] = 0x9a;
	const char *strs[4] = {"n1", "a", service, addr};
	for (int i = 0; i < 4; i++) {
		size_t l = strlen(strs[i]);
		out[n++] = (uint8_t)(0xa0 | l);
		memcpy(out + n, strs[i], l);
		n += l;
	}
	out[n++] = 0xcd;	/* uint16 port */
	out[n++] = (uint8_t)(port >> 8);
	out[n++] = (uint8_t)port;
	out[n++] = 0xcd;	/* uint16 weight */
	out[n++] = (uint8_t)(weight >> 8);
	out[n++] = (uint8_t)weight;
	out[n++] = 1;		/* protocol */
	out[n++] = (uint8_t)state;
	out[n++] = 7;		/* rev */
	out[n++] = 9;		/* hlc */
	return n;
}

static void test_decode_refuses(void **state)
{
	(void)state;
	uint8_t v[128];
	struct fleet_endpoint d;
	size_t n = value(v, "10.0.0.1", 80, 100, 1, "web");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), 0);
	n = value(v, "10.0.0.1", 80, 300, 1, "web");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);	/* weight over 256 */
	n = value(v, "10.0.0.1", 80, 100, 4, "web");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);	/* unknown state */
	n = value(v, "10.0.0.x", 80, 100, 1, "web");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);	/* not numeric */
	n = value(v, "10.0.0.1", 0, 100, 1, "web");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);	/* port 0 with an address */
	n = value(v, "10.0.0.1", 80, 100, 1, "w/b");
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);	/* bad service name */
	n = value(v, "10.0.0.1", 80, 100, 1, "web");
	v[n++] = 0;	/* trailing byte */
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
}

/* The signed form by hand: 'S' 4 'P' array(n) ... then @sig (a whole msgpack object) and
 * a stamp when @stamp. */
static size_t value_signed(uint8_t *out, unsigned nfields, const uint8_t *sig, size_t siglen,
			   bool stamp)
{
	size_t n = value(out, "10.0.0.1", 80, 100, 1, "web");
	out[1] = FLEET_EP_VERSION;
	out[3] = (uint8_t)(0x90 | nfields);
	memcpy(out + n, sig, siglen);
	n += siglen;
	if (stamp)
		out[n++] = 0x2a;	/* 42 */
	return n;
}

static void test_signed_form(void **state)
{
	(void)state;
	uint8_t v[256], sig[2 + 65];
	struct fleet_endpoint d;
	size_t n;
	uint8_t zero[STORE_SIG_LEN] = {0};

	/* the old (version 3) form decodes as unsigned */
	n = value(v, "10.0.0.1", 80, 100, 1, "web");
	assert_int_equal(v[1], 3);
	memset(&d, 0xaa, sizeof d);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), 0);
	assert_int_equal(d.stamp, 0);
	assert_memory_equal(d.sig, zero, sizeof zero);
	assert_int_equal(d.hlc, 9);

	/* a bin8 of 64 bytes and a stamp */
	sig[0] = 0xc4;
	sig[1] = 64;
	for (int i = 0; i < 65; i++)
		sig[2 + i] = (uint8_t)(0x40 + i);
	n = value_signed(v, 12, sig, 2 + 64, true);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), 0);
	assert_int_equal(d.stamp, 42);
	assert_memory_equal(d.sig, sig + 2, STORE_SIG_LEN);
	/* a field appended later is ignored */
	v[3] = 0x9d;
	v[n++] = 0xc0;
	assert_int_equal(fleet_endpoint_decode(v, n, &d), 0);

	/* malformed signatures: 63 or 65 bytes, a str, nil; no stamp; the old field count */
	sig[1] = 63;
	n = value_signed(v, 12, sig, 2 + 63, true);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	sig[1] = 65;
	n = value_signed(v, 12, sig, 2 + 65, true);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	sig[0] = 0xd9;	/* str8 of 64 */
	sig[1] = 64;
	n = value_signed(v, 12, sig, 2 + 64, true);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	sig[0] = 0xc0;	/* nil */
	n = value_signed(v, 12, sig, 1, true);
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	sig[0] = 0xc4;
	n = value_signed(v, 11, sig, 2 + 64, false);	/* no stamp */
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	n = value_signed(v, 12, sig, 2 + 64, false);	/* announced, missing */
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	n = value_signed(v, 10, sig, 0, false);	/* version 4 with the old ten fields */
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
	n = value_signed(v, 12, sig, 2 + 64, true);
	v[n - 1] = 0xff;	/* a negative stamp */
	assert_int_equal(fleet_endpoint_decode(v, n, &d), -EBADMSG);
}

/* The message the owner signs covers the owner and every field, and nothing else. */
static void test_signed_msg(void **state)
{
	(void)state;
	struct fleet_endpoint e = sample(), o;
	uint8_t owner[STORE_NODE_ID_LEN] = {0x11, 0x22}, m1[FLEET_EP_MSG_MAX],
		m2[FLEET_EP_MSG_MAX];
	size_t n1 = fleet_endpoint_msg(owner, &e, m1);
	assert_true(n1 <= FLEET_EP_MSG_MAX);
#define DIFFERS(change)                                                                       \
	do {                                                                                  \
		o = e;                                                                        \
		change;                                                                       \
		size_t n2 = fleet_endpoint_msg(owner, &o, m2);                                \
		assert_true(n1 != n2 || memcmp(m1, m2, n1) != 0);                             \
	} while (0)
	DIFFERS(strcpy(o.node, "n2"));
	DIFFERS(strcpy(o.site, "par2"));
	DIFFERS(strcpy(o.service, "api"));
	DIFFERS(strcpy(o.addr, "10.0.0.6"));
	DIFFERS(o.port++);
	DIFFERS(o.weight--);
	DIFFERS(o.protocol = STORE_ENDPOINT_TCP);
	DIFFERS(o.state = FLEET_EP_HEALTHY);
	DIFFERS(o.rev++);
	DIFFERS(o.hlc++);
	DIFFERS(o.stamp++);
	/* the same fields in another node's name are another message */
	{
		uint8_t other[STORE_NODE_ID_LEN] = {0x11, 0x23};
		size_t n2 = fleet_endpoint_msg(other, &e, m2);
		assert_true(n1 != n2 || memcmp(m1, m2, n1) != 0);
	}
	/* strings are length-prefixed: moving a byte from one to the next is another message */
	o = e;
	strcpy(o.node, "n");
	strcpy(o.site, "1par1");
	{
		size_t n2 = fleet_endpoint_msg(owner, &o, m2);
		assert_true(n1 != n2 || memcmp(m1, m2, n1) != 0);
	}
	/* not covered: the signature itself, the catalog's fields */
	o = e;
	o.sig[0] ^= 1;
	o.down = true;
	o.node_id[0] = 9;
	assert_int_equal(fleet_endpoint_msg(owner, &o, m2), n1);
	assert_memory_equal(m1, m2, n1);
	/* the longest record fits */
	memset(o.node, 'n', 64);
	o.node[64] = 0;
	memset(o.site, 's', 64);
	o.site[64] = 0;
	memset(o.service, 'v', 64);
	o.service[64] = 0;
	strcpy(o.addr, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	assert_int_equal(strlen(o.addr), FLEET_EP_ADDR_MAX - 1);
	assert_int_equal(fleet_endpoint_msg(owner, &o, m2), FLEET_EP_MSG_MAX);

	/* signed and verified like the fleet does; encode/decode keeps the signature valid */
	struct sign_key k, k2;
	uint8_t *buf;
	size_t len;
	struct fleet_endpoint d;
	sign_key_random(&k);
	sign_key_random(&k2);
	sign_detached(&k, m1, fleet_endpoint_msg(owner, &e, m1), e.sig);
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), 0);
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), 0);
	free(buf);
	n1 = fleet_endpoint_msg(owner, &d, m1);
	assert_true(sign_verify(k.pk, m1, n1, d.sig));
	assert_false(sign_verify(k2.pk, m1, n1, d.sig));
	d.state = FLEET_EP_UNHEALTHY;
	assert_false(sign_verify(k.pk, m1, fleet_endpoint_msg(owner, &d, m1), d.sig));
	/* the size: the old form plus a bin8 of 64 and a u64 stamp (9 bytes for an hlc of
	 * today) = 75 bytes */
	e.hlc = e.stamp = (uint64_t)1765000000000 << 16;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &len), 0);
	free(buf);
	e.port = 0;
	e.addr[0] = 0;
	e.site[0] = 0;
	size_t l0;
	assert_int_equal(fleet_endpoint_encode(&e, &buf, &l0), 0);
	free(buf);
	print_message("endpoint record: %zu bytes signed (unsigned form: %zu), a withdrawal %zu "
		      "(%zu)\n", len, len - 75, l0, l0 - 75);
}

static void test_keys(void **state)
{
	(void)state;
	char svc[65], buf[80];
	assert_int_equal(fleet_ep_key_parse("ep/web", 6, svc), 0);
	assert_string_equal(svc, "web");
	assert_int_equal(fleet_ep_key_parse("health/web", 10, svc), -ENOENT);
	assert_int_equal(fleet_ep_key_parse("ep/", 3, svc), -EBADMSG);
	assert_int_equal(fleet_ep_key_parse("ep/a/b", 6, svc), -EBADMSG);
	assert_int_equal(fleet_ep_key_parse("ep/..", 5, svc), -EBADMSG);
	assert_int_equal(fleet_ep_key_format("web", buf, sizeof buf), 6);
	assert_string_equal(buf, "ep/web");
	assert_int_equal(fleet_ep_key_format("a b", buf, sizeof buf), -EINVAL);
	/* the fleet's own key parser leaves ep/ to endpoints.c */
	struct fleet_key k;
	assert_int_equal(fleet_key_parse("ep/web", 6, &k), -ENOENT);
	assert_string_equal(fleet_ep_state_name(FLEET_EP_UNHEALTHY), "unhealthy");
	assert_string_equal(fleet_ep_state_name(9), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_decode_refuses),
		cmocka_unit_test(test_signed_form),
		cmocka_unit_test(test_signed_msg),
		cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
