/*
 * Unit tests of the read API's request parser (agent/daemon/catalog.c, issue 14) and of the
 * traffic config values (failover-share, haproxy-backend): what is accepted, and the status
 * every refusal answers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/config/config.h"
#include "agent/daemon/catalog.h"

static int parse(const char *head, struct catalog_req *r)
{
	char err[160];
	return catalog_parse_request(head, strlen(head), r, err, sizeof err);
}

static void test_accepts(void **state)
{
	(void)state;
	struct catalog_req r;
	assert_int_equal(parse("GET /v1/catalog HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
	assert_int_equal(r.path, CATALOG_ALL);
	assert_false(r.has_index);
	assert_int_equal(parse("GET /v1/catalog/web-2.x HTTP/1.0\r\n\r\n", &r), 0);
	assert_int_equal(r.path, CATALOG_SERVICE);
	assert_string_equal(r.service, "web-2.x");
	assert_int_equal(parse("GET /v1/http_sd?index=42&wait=10s HTTP/1.1\r\n"
			       "User-Agent: Prometheus/2.42\r\nContent-Length: 0\r\n\r\n", &r), 0);
	assert_int_equal(r.path, CATALOG_HTTP_SD);
	assert_true(r.has_index);
	assert_int_equal(r.index, 42);
	assert_int_equal(r.wait_ms, 10000);
	assert_int_equal(parse("GET /v1/catalog?index=0 HTTP/1.1\r\n\r\n", &r), 0);
	assert_int_equal(r.wait_ms, CATALOG_WAIT_DEFAULT);
	assert_int_equal(parse("GET /v1/catalog?wait=500ms&index=18446744073709551615 HTTP/1.1\r\n\r\n",
			       &r), 0);
	assert_int_equal(r.index, UINT64_MAX);
	assert_int_equal(r.wait_ms, 500);
	assert_int_equal(parse("GET /v1/catalog?wait=5m&index=1 HTTP/1.1\r\n\r\n", &r), 0);
	assert_int_equal(r.wait_ms, 300000);
}

static void test_refuses(void **state)
{
	(void)state;
	struct catalog_req r;
	static const struct {
		const char *head;
		int status;
	} bad[] = {
		{"POST /v1/catalog HTTP/1.1\r\n\r\n", 405},
		{"HEAD /v1/catalog HTTP/1.1\r\n\r\n", 405},
		{"GET /v1/other HTTP/1.1\r\n\r\n", 404},
		{"GET /v1/catalog/ HTTP/1.1\r\n\r\n", 404},
		{"GET /v1/catalog/a/b HTTP/1.1\r\n\r\n", 404},
		{"GET /v1/catalog/.. HTTP/1.1\r\n\r\n", 404},
		{"GET /v1/catalog HTTP/2.0\r\n\r\n", 505},
		{"GET /v1/catalog FTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\n", 400},			/* no blank line */
		{"GET /v1/catalog HTTP/1.1\n\n", 400},			/* bare LF */
		{"GET  /v1/catalog HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\n folded\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
		{"GET /v1/catalog HTTP/1.1\r\nX: a\x01\r\n\r\n", 400},
		{"GET /v1/catalog%2f HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog#x HTTP/1.1\r\n\r\n", 400},
		{"GET v1/catalog HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog? HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index= HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index=01 HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index=-1 HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index=18446744073709551616 HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index=1&index=2 HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?index=1& HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?wait=10 HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?wait=6m HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?wait=1h HTTP/1.1\r\n\r\n", 400},
		{"GET /v1/catalog?stale=1 HTTP/1.1\r\n\r\n", 400},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int st = parse(bad[i].head, &r);
		if (st != bad[i].status)
			fail_msg("case %zu (%s): status %d, want %d", i, bad[i].head, st,
				 bad[i].status);
	}
	/* bytes after the head are a body */
	const char *withbody = "GET /v1/catalog HTTP/1.1\r\n\r\nxyz";
	char err[160];
	assert_int_equal(catalog_parse_request(withbody, strlen(withbody), &r, err, sizeof err), 400);
	assert_non_null(strstr(err, "body"));
	/* a head over the limit: 431; a target over 1024 bytes: 414 */
	static char big[CATALOG_HEAD_MAX + 64];
	memset(big, 'a', sizeof big);
	memcpy(big, "GET /v1/catalog HTTP/1.1\r\nX: ", 29);
	memcpy(big + sizeof big - 5, "\r\n\r\n", 5);
	assert_int_equal(catalog_parse_request(big, sizeof big - 1, &r, err, sizeof err), 431);
	char longt[1200];
	int n = snprintf(longt, sizeof longt, "GET /v1/catalog?index=1&%0*d HTTP/1.1\r\n\r\n", 1050, 0);
	assert_int_equal(catalog_parse_request(longt, (size_t)n, &r, err, sizeof err), 414);
	assert_int_equal(catalog_head_len("GET / HTTP/1.1\r\n\r\n", 18), 18);
	assert_int_equal(catalog_head_len("GET / HTTP/1.1\r\n\r", 17), 0);
}

static void test_config_values(void **state)
{
	(void)state;
	unsigned pm = 1234;
	assert_int_equal(agent_config_parse_share("0.5", &pm), 0);
	assert_int_equal(pm, 500);
	assert_int_equal(agent_config_parse_share("1", &pm), 0);
	assert_int_equal(pm, 1000);
	assert_int_equal(agent_config_parse_share("0", &pm), 0);
	assert_int_equal(pm, 0);
	assert_int_equal(agent_config_parse_share("50%", &pm), 0);
	assert_int_equal(pm, 500);
	assert_int_equal(agent_config_parse_share("12.5%", &pm), 0);
	assert_int_equal(pm, 125);
	assert_int_equal(agent_config_parse_share("0.1259", &pm), 0);
	assert_int_equal(pm, 125);
	assert_int_equal(agent_config_parse_share("1.5", &pm), -EINVAL);
	assert_int_equal(agent_config_parse_share("101%", &pm), -EINVAL);
	assert_int_equal(agent_config_parse_share("", &pm), -EINVAL);
	assert_int_equal(agent_config_parse_share("-0.5", &pm), -EINVAL);
	assert_int_equal(agent_config_parse_share("0.5x", &pm), -EINVAL);
	assert_int_equal(agent_config_parse_share("%", &pm), -EINVAL);
	assert_int_equal(agent_config_check_backend("web=web"), 0);
	assert_int_equal(agent_config_check_backend("web=be_web:s"), 0);
	assert_int_equal(agent_config_check_backend("web="), -EINVAL);
	assert_int_equal(agent_config_check_backend("=web"), -EINVAL);
	assert_int_equal(agent_config_check_backend("web=be:"), -EINVAL);
	assert_int_equal(agent_config_check_backend("web=be:s:t"), -EINVAL);
	assert_int_equal(agent_config_check_backend("web=b e"), -EINVAL);
	assert_int_equal(agent_config_check_backend("web"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_config_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
