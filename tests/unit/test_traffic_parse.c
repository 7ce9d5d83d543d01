/*
 * tests/unit/test_traffic_parse.c: the parsers of HAProxy's answers (traffic/parse.c), on
 * answers captured from Debian's HAProxy 2.6.12 (the fuzz seed corpus, read from the source
 * tree) and on malformed variants, each refused with its reason.
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

#include "traffic/traffic.h"

static char *slurp(const char *rel, size_t *len)
{
	const char *src = getenv("SHOAL_SOURCE_DIR");
	char path[1024];
	snprintf(path, sizeof path, "%s/tests/fuzz/corpus/%s", src ? src : ".", rel);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	static char buf[65536];
	*len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	return buf;
}

static void test_state_real(void **state)
{
	(void)state;
	size_t len;
	char *b = slurp("traffic_state/haproxy26_ready_drain_down", &len);
	struct traffic_server *s = NULL;
	size_t n = 0;
	char err[256];
	assert_int_equal(traffic_parse_servers_state(b, len, "web", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(s[0].name, "s1");
	assert_string_equal(s[0].addr, "127.0.61.1");
	assert_int_equal(s[0].port, 18181);
	assert_int_equal(s[0].op_state, 2);
	assert_int_equal(s[0].admin, 12);	/* CMAINT | FDRAIN */
	assert_int_equal(traffic_server_mode(&s[0]), TRAFFIC_DRAIN);
	assert_int_equal(s[1].port, 18199);
	assert_int_equal(s[1].op_state, 0);	/* check failing: nothing listens there */
	assert_int_equal(traffic_server_mode(&s[1]), TRAFFIC_READY);
	assert_int_equal(s[3].id, 4);
	free(s);

	b = slurp("traffic_state/haproxy26_initial_maint", &len);
	assert_int_equal(traffic_parse_servers_state(b, len, "web", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(s[2].addr, "127.0.0.1");
	assert_int_equal(s[2].port, 1);
	assert_int_equal(s[2].uweight, 1);
	assert_int_equal(traffic_server_mode(&s[2]), TRAFFIC_MAINT);
	free(s);
	/* Another backend's name: no servers, not an error. */
	b = slurp("traffic_state/haproxy26_all_backends", &len);
	assert_int_equal(traffic_parse_servers_state(b, len, "api", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 0);
	free(s);
	b = slurp("traffic_state/haproxy26_no_backend", &len);
	assert_int_equal(traffic_parse_servers_state(b, len, "nob", &s, &n, err, sizeof err),
			 -ENOENT);
	assert_string_equal(err, "haproxy has no backend 'nob'");
}

#define HDR "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state " \
	    "srv_uweight srv_iweight srv_port\n"

static void expect_state_bad(const char *text, const char *why)
{
	struct traffic_server *s = (struct traffic_server *)0x1;
	size_t n = 77;
	char err[256];
	int r = traffic_parse_servers_state(text, strlen(text), "web", &s, &n, err, sizeof err);
	if (r != -EBADMSG)
		fail_msg("accepted (%d): %s", r, text);
	assert_ptr_equal(s, (void *)0x1);
	assert_int_equal(n, 77);
	if (!strstr(err, why))
		fail_msg("reason '%s' lacks '%s'", err, why);
}

static void test_state_malformed(void **state)
{
	(void)state;
	/* A minimal header with only the columns we need parses. */
	const char *ok = HDR "3 web 1 s1 10.0.0.1 2 0 7 1 80\n3 web 2 s2 ::1 2 8 256 1 443\n"
			 "3 web 3 s3 - 0 1 1 1 0\n\n";
	struct traffic_server *s;
	size_t n;
	char err[256];
	assert_int_equal(traffic_parse_servers_state(ok, strlen(ok), "web", &s, &n, err,
						     sizeof err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(s[1].addr, "::1");
	assert_int_equal(s[1].uweight, 256);
	assert_string_equal(s[2].addr, "");
	free(s);

	expect_state_bad("2\n# be_name\n", "format version 1");
	expect_state_bad("", "format version 1");
	expect_state_bad("1\n", "header");
	expect_state_bad("1\nbe_id be_name\n", "header");
	expect_state_bad("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
			 "srv_admin_state srv_uweight srv_iweight\n", "no column 'srv_port'");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1\n", "line 3");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1 80 9\n", "line 3");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 4 0 7 1 80\n", "srv_op_state '4'");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 257 1 80\n", "srv_uweight '257'");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1 65536\n", "srv_port '65536'");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1 -1\n", "srv_port '-1'");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1 99999999999999999999999\n",
			 "srv_port");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 256 7 1 80\n", "srv_admin_state");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 x7 1 80\n", "srv_uweight 'x7'");
	expect_state_bad(HDR "3 web 1 s1 host.name 2 0 7 1 80\n", "bad address");
	expect_state_bad(HDR "3 web 1 s;1 10.0.0.1 2 0 7 1 80\n", "bad server name");
	expect_state_bad(HDR "3 web 1 "
			 "s1234567890123456789012345678901234567890123456789012345678901234 "
			 "10.0.0.1 2 0 7 1 80\n", "bad server name");
	expect_state_bad(HDR "3 web 1 s1 10.0.0.1 2 0 7 1 80\n\n3 web 2 s2 10.0.0.1 2 0 7 1 80\n",
			 "after the end");
	/* NUL bytes inside: a line is its bytes, the NUL is not a name byte. */
	const char nul[] = HDR "3 web 1 s\0 10.0.0.1 2 0 7 1 80\n";
	struct traffic_server *t = NULL;
	assert_int_equal(traffic_parse_servers_state(nul, sizeof nul - 1, "web", &t, &n, err,
						     sizeof err), -EBADMSG);
	/* More servers than TRAFFIC_SLOTS_MAX. */
	size_t cap = (TRAFFIC_SLOTS_MAX + 2) * 40 + 200, o = 0;
	char *big = malloc(cap);
	o += (size_t)snprintf(big + o, cap - o, "%s", HDR);
	for (int i = 0; i <= TRAFFIC_SLOTS_MAX; i++)
		o += (size_t)snprintf(big + o, cap - o, "3 web %d s%d 10.0.0.1 2 0 1 1 80\n", i, i);
	assert_int_equal(traffic_parse_servers_state(big, o, "web", &t, &n, err, sizeof err),
			 -EBADMSG);
	assert_non_null(strstr(err, "more than 4096 servers"));
	free(big);
}

static void test_stat_real(void **state)
{
	(void)state;
	size_t len;
	char *b = slurp("traffic_stat/haproxy26_show_stat_mixed", &len);
	struct traffic_stat *s = NULL;
	size_t n = 0;
	char err[256];
	assert_int_equal(traffic_parse_stat(b, len, "web", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 4);	/* FRONTEND and BACKEND rows left out */
	assert_string_equal(s[0].name, "s1");
	assert_string_equal(s[0].status, "DRAIN");
	assert_string_equal(s[0].addr, "127.0.61.1:18181");
	assert_int_equal(s[0].scur, 0);
	assert_string_equal(s[1].status, "DOWN");
	free(s);
	b = slurp("traffic_stat/haproxy26_show_stat_initial", &len);
	assert_int_equal(traffic_parse_stat(b, len, "web", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(s[3].status, "MAINT");
	assert_string_equal(s[3].addr, "127.0.0.1:1");
	free(s);
	assert_int_equal(traffic_parse_stat(b, len, "fe", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 0);
	free(s);
	b = slurp("traffic_stat/haproxy26_no_proxy", &len);
	assert_int_equal(traffic_parse_stat(b, len, "nob", &s, &n, err, sizeof err), -ENOENT);
}

static void expect_stat(const char *text, int want, const char *why)
{
	struct traffic_stat *s = NULL;
	size_t n = 0;
	char err[256];
	int r = traffic_parse_stat(text, strlen(text), "web", &s, &n, err, sizeof err);
	if (r != want)
		fail_msg("%d, want %d (%s): %s", r, want, err, text);
	if (r == 0)
		free(s);
	else if (!strstr(err, why))
		fail_msg("reason '%s' lacks '%s'", err, why);
}

static void test_stat_malformed(void **state)
{
	(void)state;
	/* Quoted fields with commas and doubled quotes (HAProxy's csv_enc). */
	const char *q = "# pxname,svname,scur,status,weight,addr,check_desc,\n"
			"web,s1,3,UP,10,10.0.0.1:80,\"a, \"\"b\"\"\",\n";
	struct traffic_stat *s;
	size_t n;
	char err[256];
	assert_int_equal(traffic_parse_stat(q, strlen(q), "web", &s, &n, err, sizeof err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(s[0].scur, 3);
	assert_int_equal(s[0].weight, 10);
	free(s);
	expect_stat("pxname,svname\n", -EBADMSG, "header");
	expect_stat("# pxname,svname,status,weight,addr,\n", -EBADMSG, "no column 'scur'");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,3,UP,10,a\n", -EBADMSG,
		    "fewer fields");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,3,UP,10,a,,\n", -EBADMSG,
		    "more fields");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,x,UP,10,a,\n", -EBADMSG,
		    "scur 'x'");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,4294967296,UP,10,a,\n",
		    -EBADMSG, "scur");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,,UP,10,a,\n", -EBADMSG,
		    "scur ''");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,\"s1,3,UP,10,a,\n", -EBADMSG,
		    "broken quoting");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s 1,3,UP,10,a,\n", -EBADMSG,
		    "bad server name");
	expect_stat("# pxname,svname,scur,status,weight,addr,\nweb,s1,3,U\tP,10,a,\n", -EBADMSG,
		    "control bytes");
	/* Other proxies' rows are skipped without being read further. */
	expect_stat("# pxname,svname,scur,status,weight,addr,\napi,s1,x,UP,10,a,\n", 0, "");
}

static void test_answer_check(void **state)
{
	(void)state;
	const char *addr = "set server web/s1 addr 127.0.61.1 port 18181";
	struct {
		const char *cmd, *ans;
		int r;
	} c[] = {
		/* The answers of HAProxy 2.6.12, as captured. */
		{ addr, "IP changed from '127.0.0.1' to '127.0.61.1', port changed from '1' to "
			"'18181' by 'stats socket command'\n", 0 },
		{ addr, "no need to change the addr, port changed from '18182' to '18181' by "
			"'stats socket command'\n", 0 },
		{ addr, "[4]: no need to change the addr, no need to change the port by "
			"'stats socket command'\n", 0 },
		{ addr, "[4]: Invalid addr 'bogus' by 'stats socket command'\n", -EPROTO },
		{ addr, "No such server.\n", -EPROTO },
		{ addr, "IP changed from 'a' to 'b', Invalid port 'x'\n", -EPROTO },
		{ addr, "\n", -EPROTO },
		{ addr, "no need to change the addr, can't change <port> to port map because it is "
			"incompatible with current health check port configuration (use 'port' "
			"statement from the 'server' directive. by 'stats socket command'\n",
		  -EPROTO },
		{ "set weight st/t1 10", "Backend is using a static LB algorithm and only "
					 "accepts weights '0%' and '100%'.\n", -EPROTO },
		{ "set weight web/s1 10", "\n", 0 },
		{ "set weight web/s1 10", "", 0 },
		{ "set weight web/s9 10", "No such server.\n", -EPROTO },
		{ "set weight web/s1 300", "Absolute weight can only be between 0 and 256 "
					   "inclusive.\n", -EPROTO },
		{ "set server web/s1 state ready", "\n", 0 },
		{ "set server nob/s1 state ready", "No such backend.\n", -EPROTO },
		{ "set server web/s1 state foo", "'set server <srv> state' expects 'ready', "
						 "'drain' and 'maint'.\n", -EPROTO },
		{ "show servers state web", "1\n# be_id\n", 0 },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		int r = traffic_answer_check(c[i].cmd, c[i].ans, strlen(c[i].ans));
		if (r != c[i].r)
			fail_msg("'%s' -> '%s': %d, want %d", c[i].cmd, c[i].ans, r, c[i].r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_real),
		cmocka_unit_test(test_state_malformed),
		cmocka_unit_test(test_stat_real),
		cmocka_unit_test(test_stat_malformed),
		cmocka_unit_test(test_answer_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
