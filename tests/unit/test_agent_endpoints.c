/*
 * Unit tests of the endpoint records (agent/fleet/endpoints.c, issue 14): the key, the value
 * codec both ways, and every refusal of the decoder (bytes from other nodes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
	assert_false(d.down);
	/* every strict prefix is refused */
	for (size_t n = 0; n < len; n++)
		assert_int_not_equal(fleet_endpoint_decode(buf, n, &d), 0);
	/* another record type, another version */
	buf[2] = FLEET_REC_HEALTH;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), -EBADMSG);
	buf[2] = FLEET_REC_ENDPOINT;
	buf[1] = FLEET_REC_VERSION + 1;
	assert_int_equal(fleet_endpoint_decode(buf, len, &d), -EPROTONOSUPPORT);
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
		cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
