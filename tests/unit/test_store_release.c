/*
 * tests/unit/test_store_release.c: the release.ini parser (store/release.c) and durations.
 *
 * Every error is checked by its exact message, because the message is the interface an
 * operator sees: file, line, [section] key, what is wrong.
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

#include "store/import.h"
#include "store/store_int.h"

/* store/alloc.c: fail the @n-th allocation from now (once, or every one after if @persistent). */
void store__alloc_fail_after(long n, bool persistent);

#define assert_str(a, b)                                                                    \
	do {                                                                                \
		const char *a_ = (a), *b_ = (b);                                            \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                                      \
			fail_msg("%s:%d: got \"%s\", want \"%s\"", __FILE__, __LINE__,      \
				 a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
	} while (0)

static int parse(const char *text, struct store_manifest *m, char *err, size_t errlen)
{
	return store_release_parse(text, strlen(text), "release.ini", m, err, errlen);
}

/* ---- durations ---------------------------------------------------------------------------- */

static void test_duration_ok(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} t[] = {
		{ "500ms", 500 },	  { "2s", 2000 },	   { "1m", 60000 },
		{ "1h", 3600000 },	  { "1m30s", 90000 },	   { "0s", 0 },
		{ "1h1m1s1ms", 3661001 }, { "007s", 7000 },	   { "1ms2ms", 3 },
		{ "4294967295ms", 4294967295ULL },
		{ "5124095576030h", 5124095576030ULL * 3600000ULL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint64_t ms = 12345;
		int r = store_duration_parse(t[i].s, &ms);
		if (r != 0 || ms != t[i].ms)
			fail_msg("\"%s\": got %d / %llu, want 0 / %llu", t[i].s, r,
				 (unsigned long long)ms, (unsigned long long)t[i].ms);
	}
}

static void test_duration_bad(void **state)
{
	static const struct {
		const char *s;
		int err;
	} t[] = {
		{ "", -EINVAL },	 { "2x", -EINVAL },	 { "s", -EINVAL },
		{ "-1s", -EINVAL },	 { "1.5s", -EINVAL },	 { " 1s", -EINVAL },
		{ "1s ", -EINVAL },	 { "1", -EINVAL },	 { "ms", -EINVAL },
		{ "1sm", -EINVAL },	 { "1S", -EINVAL },	 { "1d", -EINVAL },
		{ "+1s", -EINVAL },	 { "1 s", -EINVAL },	 { "1m30", -EINVAL },
		{ "5124095576031h", -ERANGE },
		{ "99999999999999999999999ms", -ERANGE },
		{ "18446744073709551615ms1ms", -ERANGE },
		/* malformed beats too large */
		{ "99999999999999999999999x", -EINVAL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint64_t ms = 12345;
		int r = store_duration_parse(t[i].s, &ms);
		if (r != t[i].err || ms != 12345)
			fail_msg("\"%s\": got %d (ms %llu), want %d and ms untouched", t[i].s, r,
				 (unsigned long long)ms, t[i].err);
	}
	uint64_t ms = 1;
	assert_int_equal(store_duration_parse(NULL, &ms), -EINVAL);
}

/* ---- success paths -------------------------------------------------------------------------- */

static void test_full_exec(void **state)
{
	const char *text = "; a release\n"
			   "# another comment style\n"
			   "[release]\n"
			   "service = web            ; required\n"
			   "runtime = exec           # inline hash comment\n"
			   "version = 1.4.2\n"
			   "\n"
			   "[exec]\n"
			   "command = ./bin/web --port 8080\n"
			   "[health]\n"
			   "http = http://127.0.0.1:8080/healthz\n"
			   "interval = 500ms\n"
			   "timeout = 1m30s\n"
			   "failures = 7\n"
			   "deadline = 1h\n";
	struct store_manifest m = { 0 };
	char err[256] = "junk";
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_str(err, "");
	assert_str(m.service, "web");
	assert_str(m.runtime, "exec");
	assert_str(m.version, "1.4.2");
	assert_str(m.exec_command, "./bin/web --port 8080");
	assert_str(m.health.http, "http://127.0.0.1:8080/healthz");
	assert_null(m.health.tcp);
	assert_null(m.health.exec);
	assert_int_equal(m.health.interval_ms, 500);
	assert_int_equal(m.health.timeout_ms, 90000);
	assert_int_equal(m.health.failures, 7);
	assert_int_equal(m.health.deadline_ms, 3600000);
	assert_null(m.systemd_unit);
	assert_null(m.container_image);
	assert_null(m.container_archive);
	assert_null(m.git_commit);
	assert_null(m.git_tag);
	assert_int_equal(m.nfiles, 0);
	/* What the parser produced is a manifest the store accepts. */
	struct store_id id;
	assert_int_equal(store_manifest_id(&m, &id), 0);
	store_manifest_release(&m);
}

static void test_defaults(void **state)
{
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(parse("[release]\nservice=a\nruntime=exec\n[exec]\ncommand=true\n", &m, err,
			       sizeof err),
			 0);
	assert_null(m.version);
	assert_null(m.health.http);
	assert_int_equal(m.health.interval_ms, STORE_HEALTH_INTERVAL_MS);
	assert_int_equal(m.health.timeout_ms, STORE_HEALTH_TIMEOUT_MS);
	assert_int_equal(m.health.failures, STORE_HEALTH_FAILURES);
	assert_int_equal(m.health.deadline_ms, STORE_HEALTH_DEADLINE_MS);
	assert_int_equal(STORE_HEALTH_INTERVAL_MS, 2000);
	assert_int_equal(STORE_HEALTH_TIMEOUT_MS, 1000);
	assert_int_equal(STORE_HEALTH_FAILURES, 3);
	assert_int_equal(STORE_HEALTH_DEADLINE_MS, 60000);
	store_manifest_release(&m);
}

static void test_endpoint_recovery(void **state)
{
	struct store_manifest m = { 0 };
	char err[256];
	const char *base = "[release]\nservice=a\nruntime=exec\n[exec]\ncommand=true\n";
	char text[512];

	/* Neither section: no endpoint (all zero), recovery defaults. */
	assert_int_equal(parse(base, &m, err, sizeof err), 0);
	assert_int_equal(m.endpoint.port, 0);
	assert_null(m.endpoint.address);
	assert_int_equal(m.endpoint.weight, 0);
	assert_int_equal(m.endpoint.drain_ms, 0);
	assert_int_equal(m.recovery.restarts, STORE_RECOVERY_RESTARTS);
	assert_true(m.recovery.remove_unhealthy);
	struct store_id none_id, id;
	assert_int_equal(store_manifest_id(&m, &none_id), 0);
	store_manifest_release(&m);

	/* Port alone: the other keys take their defaults. */
	snprintf(text, sizeof text, "%s[endpoint]\nport = 8080\n", base);
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_int_equal(m.endpoint.port, 8080);
	assert_null(m.endpoint.address);
	assert_int_equal(m.endpoint.weight, STORE_ENDPOINT_WEIGHT);
	assert_int_equal(m.endpoint.protocol, STORE_ENDPOINT_TCP);
	assert_int_equal(m.endpoint.drain_ms, STORE_ENDPOINT_DRAIN_MS);
	assert_int_equal(STORE_ENDPOINT_WEIGHT, 100);
	assert_int_equal(STORE_ENDPOINT_DRAIN_MS, 10000);
	assert_int_equal(store_manifest_id(&m, &id), 0);
	assert_memory_not_equal(&id, &none_id, sizeof id); /* part of the artifact's identity */
	store_manifest_release(&m);

	/* Everything, at the edges of each range; an empty address is the advertise address. */
	snprintf(text, sizeof text,
		 "%s[endpoint]\nport = 65535\naddress =\nweight = 256\nprotocol = http\n"
		 "drain = 10m\n[recovery]\nrestarts = 100\nremove_unhealthy = false\n",
		 base);
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_str(err, "");
	assert_int_equal(m.endpoint.port, 65535);
	assert_null(m.endpoint.address);
	assert_int_equal(m.endpoint.weight, 256);
	assert_int_equal(m.endpoint.protocol, STORE_ENDPOINT_HTTP);
	assert_int_equal(m.endpoint.drain_ms, 600000);
	assert_int_equal(m.recovery.restarts, 100);
	assert_false(m.recovery.remove_unhealthy);
	store_manifest_release(&m);

	snprintf(text, sizeof text,
		 "%s[endpoint]\nport = 1\naddress = fd00::5\nweight = 0\ndrain = 0s\n"
		 "[recovery]\nremove_unhealthy = yes\n",
		 base);
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_str(m.endpoint.address, "fd00::5");
	assert_int_equal(m.endpoint.weight, 0);
	assert_int_equal(m.endpoint.drain_ms, 0);
	assert_true(m.recovery.remove_unhealthy);
	store_manifest_release(&m);

	snprintf(text, sizeof text, "%s[endpoint]\nport = 80\naddress = 10.0.0.5\n", base);
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_str(m.endpoint.address, "10.0.0.5");
	/* ... and it round-trips through the store's encoding. */
	uint8_t *buf;
	size_t len;
	struct store_manifest d;
	assert_int_equal(store_manifest_encode(&m, &buf, &len), 0);
	assert_int_equal(store_manifest_decode(buf, len, &d), 0);
	assert_str(d.endpoint.address, "10.0.0.5");
	assert_int_equal(d.endpoint.port, 80);
	assert_true(d.recovery.remove_unhealthy);
	free(buf);
	store_manifest_release(&d);
	store_manifest_release(&m);
}

static void test_systemd_container(void **state)
{
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(parse("[release]\nservice=web.v2_x-y\nruntime=systemd\n[systemd]\n"
			       "unit=./units/web@1.service\n[health]\ntcp=[::1]:8080\n",
			       &m, err, sizeof err),
			 0);
	assert_str(m.service, "web.v2_x-y");
	assert_str(m.systemd_unit, "units/web@1.service"); /* normalised */
	assert_str(m.health.tcp, "[::1]:8080");
	store_manifest_release(&m);

	assert_int_equal(parse("[release]\nservice=c\nruntime=container\n[container]\n"
			       "image=localhost/web:1.4.2\n[health]\nexec=./check.sh --quick\n",
			       &m, err, sizeof err),
			 0);
	assert_str(m.container_image, "localhost/web:1.4.2");
	assert_null(m.container_archive);
	assert_str(m.health.exec, "./check.sh --quick");
	store_manifest_release(&m);

	assert_int_equal(parse("[release]\nservice=c\nruntime=container\n[container]\n"
			       "archive=./img/web.tar\nimage=web:1\n",
			       &m, err, sizeof err),
			 0);
	assert_str(m.container_archive, "img/web.tar");
	assert_str(m.container_image, "web:1");
	store_manifest_release(&m);
}

/* CRLF, a byte order mark, indentation (not a continuation), no final newline, colons. */
static void test_syntax_variants(void **state)
{
	const char *text = "\xef\xbb\xbf[release]\r\n"
			   "   service = web\r\n"
			   "\truntime: exec\r\n"
			   "[exec]\r\n"
			   "  command = sh -c 'echo a;b #c'\r\n"
			   "[health]\n"
			   "http = http://h/x#frag\n"
			   "interval=2s";
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(parse(text, &m, err, sizeof err), 0);
	assert_str(err, "");
	assert_str(m.service, "web");
	assert_str(m.runtime, "exec");
	/* ';' and '#' not preceded by whitespace are part of the value. */
	assert_str(m.exec_command, "sh -c 'echo a;b");
	assert_str(m.health.http, "http://h/x#frag");
	assert_int_equal(m.health.interval_ms, 2000);
	store_manifest_release(&m);

	/* The same section may appear twice, as long as no key repeats. */
	assert_int_equal(parse("[release]\nservice=a\n[exec]\ncommand=x\n[release]\nruntime=exec\n",
			       &m, err, sizeof err),
			 0);
	store_manifest_release(&m);
}

/* ---- errors: exact messages ----------------------------------------------------------------- */

#define HDR "[release]\nservice = web\nruntime = exec\n[exec]\ncommand = ./bin/web\n"

static const struct bad_case {
	const char *text;
	int err;
	const char *msg;
} bad_cases[] = {
	/* the brief's own example */
	{ HDR "[health]\ninterval = 2x\n", -STORE_EINVALID,
	  "release.ini:7: [health] interval: invalid duration \"2x\"" },
	{ HDR "[health]\ntimeout = 0ms\n", -STORE_EINVALID,
	  "release.ini:7: [health] timeout: invalid duration \"0ms\" (must be more than 0)" },
	{ HDR "[health]\ndeadline = 50d\n", -STORE_EINVALID,
	  "release.ini:7: [health] deadline: invalid duration \"50d\"" },
	{ HDR "[health]\ndeadline = 1200h\n", -STORE_EINVALID,
	  "release.ini:7: [health] deadline: duration out of range \"1200h\" (max 4294967295ms)" },
	{ HDR "[health]\nfailures = 0\n", -STORE_EINVALID,
	  "release.ini:7: [health] failures: invalid count \"0\" (want 1..1000)" },
	{ HDR "[health]\nfailures = 1001\n", -STORE_EINVALID,
	  "release.ini:7: [health] failures: invalid count \"1001\" (want 1..1000)" },
	{ HDR "[health]\nfailures = -1\n", -STORE_EINVALID,
	  "release.ini:7: [health] failures: invalid count \"-1\" (want 1..1000)" },
	{ HDR "[health]\nhttp = https://x/\n", -STORE_EINVALID,
	  "release.ini:7: [health] http: invalid URL \"https://x/\" (want "
	  "http://HOST[:PORT][/PATH])" },
	{ HDR "[health]\nhttp = http://x:0/\n", -STORE_EINVALID,
	  "release.ini:7: [health] http: invalid URL \"http://x:0/\" (want "
	  "http://HOST[:PORT][/PATH])" },
	{ HDR "[health]\ntcp = 127.0.0.1\n", -STORE_EINVALID,
	  "release.ini:7: [health] tcp: invalid address \"127.0.0.1\" (want HOST:PORT or "
	  "[IPV6]:PORT)" },
	{ HDR "[health]\ntcp = 127.0.0.1:65536\n", -STORE_EINVALID,
	  "release.ini:7: [health] tcp: invalid address \"127.0.0.1:65536\" (want HOST:PORT or "
	  "[IPV6]:PORT)" },
	{ HDR "[health]\ntcp = h:1\nhttp = http://h:1/\n", -STORE_EINVALID,
	  "release.ini:8: [health] http: only one of http, tcp, exec may be set (tcp on line 7)" },
	{ HDR "[health]\nexec = ./c\n\ninterval=1s\ntcp = h:1\n", -STORE_EINVALID,
	  "release.ini:10: [health] tcp: only one of http, tcp, exec may be set (exec on line 7)" },
	{ HDR "[health]\nintreval = 2s\n", -STORE_EINVALID,
	  "release.ini:7: [health] intreval: unknown key" },
	{ HDR "[helth]\ninterval = 2s\n", -STORE_EINVALID, "release.ini:6: [helth]: unknown section" },
	{ HDR "[Health]\n", -STORE_EINVALID, "release.ini:6: [Health]: unknown section" },
	{ HDR "[health] junk\n", -STORE_EINVALID,
	  "release.ini:6: [health]: text after section header" },
	{ HDR "[health\n", -STORE_EINVALID,
	  "release.ini:6: syntax error (want \"[section]\" or \"key = value\")" },
	{ HDR "interval\n", -STORE_EINVALID,
	  "release.ini:6: syntax error (want \"[section]\" or \"key = value\")" },
	{ "service = web\n[release]\n", -STORE_EINVALID,
	  "release.ini:1: service: key outside a section" },
	{ "[release]\nservice = web\nservice = web2\n", -STORE_EINVALID,
	  "release.ini:3: [release] service: duplicate key (first on line 2)" },
	{ "[release]\nservice =\n", -STORE_EINVALID,
	  "release.ini:2: [release] service: empty value" },
	{ "[release]\nservice = ; only a comment\n", -STORE_EINVALID,
	  "release.ini:2: [release] service: empty value" },
	{ "[release]\nservice = web # only a comment\nversion = # c\n", -STORE_EINVALID,
	  "release.ini:3: [release] version: empty value" },
	{ "[release]\nservice = we b\n", -STORE_EINVALID,
	  "release.ini:2: [release] service: invalid service name \"we b\" (want "
	  "[a-zA-Z0-9._-]{1,64}, not \".\" or \"..\")" },
	{ "[release]\nservice = ..\n", -STORE_EINVALID,
	  "release.ini:2: [release] service: invalid service name \"..\" (want "
	  "[a-zA-Z0-9._-]{1,64}, not \".\" or \"..\")" },
	{ "[release]\nservice = "
	  "a12345678901234567890123456789012345678901234567890123456789012345\n",
	  -STORE_EINVALID,
	  "release.ini:2: [release] service: invalid service name "
	  "\"a123456789012345678901234567890123456789012345678901234567890123...\" (want "
	  "[a-zA-Z0-9._-]{1,64}, not \".\" or \"..\")" },
	{ "[release]\nservice = web\nruntime = docker\n", -STORE_EINVALID,
	  "release.ini:3: [release] runtime: invalid runtime \"docker\" (want exec, systemd or "
	  "container)" },
	{ "[release]\nservice = web\nversion = \x01x\n", -STORE_EINVALID,
	  "release.ini:3: [release] version: control character in value \"\\x01x\"" },
	{ "[release]\nservice = web\nversion = "
	  "1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901"
	  "234567890123456789012345678901234567890\n",
	  -STORE_EINVALID,
	  "release.ini:3: [release] version: version too long: "
	  "\"1234567890123456789012345678901234567890123456789012345678901234...\" (max 128 "
	  "bytes)" },
	{ "[release]\nruntime = exec\n[exec]\ncommand=x\n", -STORE_EINVALID,
	  "release.ini: [release] service: missing (required)" },
	{ "[release]\nservice = web\n", -STORE_EINVALID,
	  "release.ini: [release] runtime: missing (required: exec, systemd or container)" },
	{ "", -STORE_EINVALID, "release.ini: [release] service: missing (required)" },
	{ "[release]\nservice = web\nruntime = exec\n", -STORE_EINVALID,
	  "release.ini: [exec] command: missing (required with runtime exec)" },
	{ "[release]\nservice = web\nruntime = systemd\n", -STORE_EINVALID,
	  "release.ini: [systemd] unit: missing (required with runtime systemd)" },
	{ "[release]\nservice = web\nruntime = container\n[container]\n", -STORE_EINVALID,
	  "release.ini: [container] image: missing (runtime container needs image or archive)" },
	{ HDR "[systemd]\nunit = web.service\n", -STORE_EINVALID,
	  "release.ini:6: [systemd]: not allowed with runtime exec" },
	{ HDR "[container]\n", -STORE_EINVALID,
	  "release.ini:6: [container]: not allowed with runtime exec" },
	{ "[release]\nservice = web\nruntime = systemd\n[systemd]\nunit = web.socket\n",
	  -STORE_EINVALID,
	  "release.ini:5: [systemd] unit: invalid unit \"web.socket\" (want a relative path to a "
	  ".service file in the artifact)" },
	{ "[release]\nservice = web\nruntime = systemd\n[systemd]\nunit = /etc/web.service\n",
	  -STORE_EINVALID,
	  "release.ini:5: [systemd] unit: invalid unit \"/etc/web.service\" (want a relative path "
	  "to a .service file in the artifact)" },
	{ "[release]\nservice = web\nruntime = systemd\n[systemd]\nunit = a/../web.service\n",
	  -STORE_EINVALID,
	  "release.ini:5: [systemd] unit: invalid unit \"a/../web.service\" (want a relative path "
	  "to a .service file in the artifact)" },
	{ "[release]\nservice = web\nruntime = container\n[container]\narchive = ../i.tar\n",
	  -STORE_EINVALID,
	  "release.ini:5: [container] archive: invalid path \"../i.tar\" (want a relative path "
	  "inside the artifact)" },
	{ "[release]\nservice = web\nruntime = container\n[container]\nimage = a b\n",
	  -STORE_EINVALID, "release.ini:5: [container] image: invalid image reference \"a b\"" },
	{ "[release]\nservice = web\nruntime = exec\n[exec]\ncommand = ../bin/web -x\n",
	  -STORE_EINVALID,
	  "release.ini:5: [exec] command: invalid program path in \"../bin/web -x\" (want a "
	  "relative path inside the artifact)" },
	{ HDR "[health]\nexec = bin//check\n", -STORE_EINVALID,
	  "release.ini:7: [health] exec: invalid program path in \"bin//check\" (want a relative "
	  "path inside the artifact)" },
	{ "[release]\nservice = web\x00\n", -STORE_EINVALID, "release.ini:2: NUL byte in line" },
	/* Text rules shared with store_manifest_validate: C1 controls and invalid UTF-8. */
	{ "[release]\nservice = web\nversion = 1\xc2\x9b" "2\n", -STORE_EINVALID,
	  "release.ini:3: [release] version: control character in value \"1\\xc2\\x9b2\"" },
	{ "[release]\nservice = web\nversion = caf\xe9\n", -STORE_EINVALID,
	  "release.ini:3: [release] version: invalid UTF-8 in value \"caf\\xe9\"" },
	/* [endpoint]: each key's range, by key and value. */
	{ HDR "[endpoint]\naddress = 10.0.0.5\n", -STORE_EINVALID,
	  "release.ini: [endpoint] port: missing (required in [endpoint])" },
	{ HDR "[endpoint]\nport = 0\n", -STORE_EINVALID,
	  "release.ini:7: [endpoint] port: invalid port \"0\" (want 1..65535)" },
	{ HDR "[endpoint]\nport = 65536\n", -STORE_EINVALID,
	  "release.ini:7: [endpoint] port: invalid port \"65536\" (want 1..65535)" },
	{ HDR "[endpoint]\nport = -80\n", -STORE_EINVALID,
	  "release.ini:7: [endpoint] port: invalid port \"-80\" (want 1..65535)" },
	{ HDR "[endpoint]\nport = 80x\n", -STORE_EINVALID,
	  "release.ini:7: [endpoint] port: invalid port \"80x\" (want 1..65535)" },
	{ HDR "[endpoint]\nport = 80\nweight = 257\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] weight: invalid weight \"257\" (want 0..256, as HAProxy)" },
	{ HDR "[endpoint]\nport = 80\nweight = 1.5\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] weight: invalid weight \"1.5\" (want 0..256, as HAProxy)" },
	{ HDR "[endpoint]\nport = 80\nprotocol = udp\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] protocol: invalid protocol \"udp\" (want tcp or http)" },
	{ HDR "[endpoint]\nport = 80\nprotocol = HTTP\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] protocol: invalid protocol \"HTTP\" (want tcp or http)" },
	{ HDR "[endpoint]\nport = 80\ndrain = 11m\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] drain: duration out of range \"11m\" (max 10m)" },
	{ HDR "[endpoint]\nport = 80\ndrain = 10\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] drain: invalid duration \"10\"" },
	{ HDR "[endpoint]\nport = 80\naddress = example.org\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] address: invalid address \"example.org\" (want an IPv4 or "
	  "IPv6 address such as 10.0.0.5 or fd00::5, or nothing for the node's advertise "
	  "address)" },
	{ HDR "[endpoint]\nport = 80\naddress = [::1]\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] address: invalid address \"[::1]\" (want an IPv4 or IPv6 "
	  "address such as 10.0.0.5 or fd00::5, or nothing for the node's advertise address)" },
	{ HDR "[endpoint]\nport = 80\nport = 81\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] port: duplicate key (first on line 7)" },
	{ HDR "[endpoint]\nport = 80\nhost = x\n", -STORE_EINVALID,
	  "release.ini:8: [endpoint] host: unknown key" },
	/* [recovery] */
	{ HDR "[recovery]\nrestarts = 101\n", -STORE_EINVALID,
	  "release.ini:7: [recovery] restarts: invalid count \"101\" (want 0..100)" },
	{ HDR "[recovery]\nremove_unhealthy = maybe\n", -STORE_EINVALID,
	  "release.ini:7: [recovery] remove_unhealthy: invalid boolean \"maybe\" (want true or "
	  "false)" },
	{ HDR "[recovery]\nremove_unhealthy =\n", -STORE_EINVALID,
	  "release.ini:7: [recovery] remove_unhealthy: empty value" },
	{ HDR "[recovery]\nrestart = 1\n", -STORE_EINVALID,
	  "release.ini:7: [recovery] restart: unknown key" },
};

static void test_errors(void **state)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *t = &bad_cases[i];
		/* A sentinel manifest: it must come back untouched. */
		struct store_manifest m;
		memset(&m, 0xa5, sizeof m);
		char err[512] = "";
		size_t len = strlen(t->text);
		if (strstr(t->msg, "NUL byte"))
			len += 2; /* the test text embeds one NUL, then "\n" */
		int r = store_release_parse(t->text, len, "release.ini", &m, err, sizeof err);
		if (r != t->err || strcmp(err, t->msg) != 0)
			fail_msg("case %zu:\n  got  %d \"%s\"\n  want %d \"%s\"", i, r, err, t->err,
				 t->msg);
		for (size_t b = 0; b < sizeof m; b++)
			if (((unsigned char *)&m)[b] != 0xa5)
				fail_msg("case %zu: ret touched on failure (byte %zu)", i, b);
	}
}

static void test_line_too_long(void **state)
{
	char text[400];
	int n = snprintf(text, sizeof text, "[release]\nservice = web\nversion = ");
	memset(text + n, 'v', 250);
	strcpy(text + n + 250, "\n");
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(parse(text, &m, err, sizeof err), -STORE_EINVALID);
	assert_str(err, "release.ini:3: line too long (max 198 bytes)");

	/* 198 bytes after the indentation is the longest line that passes. */
	char ok[512];
	n = snprintf(ok, sizeof ok, "[release]\nservice = web\nruntime = exec\n[exec]\n    ");
	const char *k = "command = ";
	memcpy(ok + n, k, strlen(k));
	memset(ok + n + strlen(k), 'c', 198 - strlen(k));
	strcpy(ok + n + 198, "\r\n");
	assert_int_equal(parse(ok, &m, err, sizeof err), 0);
	assert_int_equal(strlen(m.exec_command), 198 - strlen(k));
	store_manifest_release(&m);
}

static void test_too_large(void **state)
{
	size_t len = STORE_RELEASE_MAX_SIZE + 1;
	char *big = malloc(len);
	assert_non_null(big);
	memset(big, '\n', len);
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(store_release_parse(big, len, "x/release.ini", &m, err, sizeof err),
			 -STORE_EINVALID);
	assert_str(err, "x/release.ini: too large (65537 bytes, max 65536)");
	free(big);
}

/* The first error by line wins, whether inih's syntax error or ours. */
static void test_first_error_wins(void **state)
{
	struct store_manifest m = { 0 };
	char err[256];
	assert_int_equal(parse("[release]\nbogus line\nservice = ..\n", &m, err, sizeof err),
			 -STORE_EINVALID);
	assert_str(err, "release.ini:2: syntax error (want \"[section]\" or \"key = value\")");
	assert_int_equal(parse("[release]\nservice = ..\nbogus line\n", &m, err, sizeof err),
			 -STORE_EINVALID);
	assert_str(err, "release.ini:2: [release] service: invalid service name \"..\" (want "
			"[a-zA-Z0-9._-]{1,64}, not \".\" or \"..\")");
	/* Unknown names are escaped in messages. */
	assert_int_equal(parse("[release]\nser\"v\x7fice = a\n", &m, err, sizeof err),
			 -STORE_EINVALID);
	assert_str(err, "release.ini:2: [release] ser\\\"v\\x7fice: unknown key");
}

static void test_err_buffer(void **state)
{
	struct store_manifest m = { 0 };
	/* NULL err is fine; a short one is truncated and terminated. */
	assert_int_equal(parse("[x]\n", &m, NULL, 0), -STORE_EINVALID);
	char err[12];
	memset(err, 'z', sizeof err);
	assert_int_equal(parse("[x]\n", &m, err, sizeof err), -STORE_EINVALID);
	assert_str(err, "release.ini");
	char one[1] = { 'z' };
	assert_int_equal(parse("[x]\n", &m, one, sizeof one), -STORE_EINVALID);
	assert_int_equal(one[0], '\0');
	/* A NULL buffer is an empty file. */
	char e2[128];
	assert_int_equal(store_release_parse(NULL, 5, NULL, &m, e2, sizeof e2), -STORE_EINVALID);
	assert_str(e2, "release.ini: [release] service: missing (required)");
}

/* ---- files the manifest names ------------------------------------------------------------- */

static bool has_file(const char *path, void *ud)
{
	for (const char *const *p = ud; *p; p++)
		if (strcmp(*p, path) == 0)
			return true;
	return false;
}

static void test_files(void **state)
{
	static const char *const files[] = { "release.ini", "bin/web", "check.sh", "web.service",
					     "img.tar", NULL };
	static const struct {
		const char *text;
		const char *msg; /* NULL: passes */
	} t[] = {
		{ HDR, NULL },
		{ HDR "[health]\nexec = ./check.sh arg\n", NULL },
		{ HDR "[health]\nexec = sh -c ./nothere\n", NULL }, /* host programs unchecked */
		{ HDR "[health]\nexec = /bin/true\n", NULL },
		{ HDR "[health]\nexec = ./chek.sh\n",
		  "release.ini:7: [health] exec: \"chek.sh\" not found in the artifact" },
		{ "[release]\nservice=w\nruntime=exec\n[exec]\ncommand = ./bin/wbe --x\n",
		  "release.ini:5: [exec] command: \"bin/wbe\" not found in the artifact" },
		{ "[release]\nservice=w\nruntime=systemd\n[systemd]\nunit = ./web.service\n", NULL },
		{ "[release]\nservice=w\nruntime=systemd\n[systemd]\nunit = w.service\n",
		  "release.ini:5: [systemd] unit: \"w.service\" not found in the artifact" },
		{ "[release]\nservice=w\nruntime=container\n[container]\narchive = img.tar\n", NULL },
		{ "[release]\nservice=w\nruntime=container\n[container]\n\narchive = i.tar\n",
		  "release.ini:6: [container] archive: \"i.tar\" not found in the artifact" },
		{ "[release]\nservice=w\nruntime=container\n[container]\nimage = nginx\n", NULL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct store_manifest m = { 0 };
		char err[256] = "";
		int r = store_release_parse_files(t[i].text, strlen(t[i].text), "release.ini",
						  has_file, (void *)files, &m, err, sizeof err);
		if (t[i].msg == NULL) {
			if (r != 0)
				fail_msg("case %zu: got %d \"%s\", want success", i, r, err);
			store_manifest_release(&m);
		} else if (r != -STORE_EINVALID || strcmp(err, t[i].msg) != 0) {
			fail_msg("case %zu:\n  got  %d \"%s\"\n  want %d \"%s\"", i, r, err,
				 -STORE_EINVALID, t[i].msg);
		}
		/* Without the callback, existence is not checked. */
		r = store_release_parse(t[i].text, strlen(t[i].text), "release.ini", &m, err,
					sizeof err);
		if (r != 0)
			fail_msg("case %zu without files: got %d \"%s\"", i, r, err);
		store_manifest_release(&m);
	}
}

/* ---- allocation failures ------------------------------------------------------------------ */

static void test_oom_loop(void **state)
{
	const char *text = "[release]\nservice=web\nruntime=exec\nversion=1\n[exec]\n"
			   "command=./bin/web\n[health]\nexec=./x\n";
	/* Fail the n-th allocation for n = 1, 2, ... until the parse succeeds. */
	for (long n = 1;; n++) {
		struct store_manifest m;
		memset(&m, 0x5a, sizeof m);
		char err[256];
		store__alloc_fail_after(n, false);
		int r = parse(text, &m, err, sizeof err);
		store__alloc_fail_after(-1, false);
		if (r == 0) {
			assert_true(n > 3); /* service, runtime, command, version, exec were allocated */
			assert_str(m.health.exec, "./x");
			store_manifest_release(&m);
			break;
		}
		if (r != -ENOMEM)
			fail_msg("allocation %ld failing: got %d \"%s\", want -ENOMEM", n, r, err);
		assert_str(err, "release.ini: out of memory");
		assert_int_equal(((unsigned char *)&m)[0], 0x5a);
		assert_true(n < 100);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_ok),	  cmocka_unit_test(test_duration_bad),
		cmocka_unit_test(test_full_exec),	  cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_endpoint_recovery),
		cmocka_unit_test(test_systemd_container), cmocka_unit_test(test_syntax_variants),
		cmocka_unit_test(test_errors),		  cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_too_large),	  cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_err_buffer),	  cmocka_unit_test(test_files),
		cmocka_unit_test(test_oom_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
