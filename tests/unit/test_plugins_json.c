/*
 * Unit tests of plugins/json.c: the writer (structure checks, escaping, UTF-8, caps, sticky
 * errors) and the reader (grammar, strings and escapes, numbers, depth and token limits, path
 * lookups on a real Podman inspect answer).
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

#include "plugins/json.h"

/* ---- writer ------------------------------------------------------------------------------ */

static void test_writer_basic(void **state)
{
	struct json_w w;
	char *out = NULL;
	size_t len = 0;
	json_w_init(&w, 0);
	json_w_obj_begin(&w);
	json_w_key(&w, "Image");
	json_w_str(&w, "localhost/shoal/web:r7");
	json_w_key(&w, "Labels");
	json_w_obj_begin(&w);
	json_w_key(&w, "io.shoal.rev");
	json_w_str(&w, "7");
	json_w_obj_end(&w);
	json_w_key(&w, "Env");
	json_w_arr_begin(&w);
	json_w_str(&w, "A=1");
	json_w_int(&w, -42);
	json_w_int(&w, INT64_MIN);
	json_w_bool(&w, true);
	json_w_bool(&w, false);
	json_w_null(&w);
	json_w_str(&w, NULL);
	json_w_arr_begin(&w);
	json_w_arr_end(&w);
	json_w_obj_begin(&w);
	json_w_obj_end(&w);
	json_w_arr_end(&w);
	json_w_obj_end(&w);
	assert_int_equal(json_w_finish(&w, &out, &len), 0);
	assert_string_equal(out, "{\"Image\":\"localhost/shoal/web:r7\",\"Labels\":{\"io.shoal.rev\":"
				 "\"7\"},\"Env\":[\"A=1\",-42,-9223372036854775808,true,false,null,"
				 "null,[],{}]}");
	assert_int_equal(len, strlen(out));
	json_w_release(&w);
	free(out);
}

static void test_writer_escapes(void **state)
{
	struct json_w w;
	char *out = NULL;
	json_w_init(&w, 0);
	json_w_str(&w, "q\"b\\n\nr\rt\tb\bf\f\x01\x1f caf\xc3\xa9 \xf0\x9f\x98\x80 /");
	assert_int_equal(json_w_finish(&w, &out, NULL), 0);
	assert_string_equal(out, "\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\\u0001\\u001f caf\xc3\xa9 "
				 "\xf0\x9f\x98\x80 /\"");
	/* and it reads back to the same bytes */
	struct json_doc d;
	char back[128];
	assert_int_equal(json_parse(out, strlen(out), 0, &d), 0);
	assert_int_equal(json_get_str(&d, 0, back, sizeof back), 29);
	assert_string_equal(back, "q\"b\\n\nr\rt\tb\bf\f\x01\x1f caf\xc3\xa9 \xf0\x9f\x98\x80 /");
	json_doc_release(&d);
	json_w_release(&w);
	free(out);
}

static void expect_writer_error(void (*build)(struct json_w *), size_t max, int want,
				const char *what)
{
	struct json_w w;
	char *out = NULL;
	json_w_init(&w, max);
	build(&w);
	int r = json_w_finish(&w, &out, NULL);
	if (r != want)
		fail_msg("%s: got %d want %d", what, r, want);
	assert_null(out);
	json_w_release(&w);
}

static void b_value_without_key(struct json_w *w)
{
	json_w_obj_begin(w);
	json_w_str(w, "x");
	json_w_obj_end(w);
}
static void b_key_in_array(struct json_w *w)
{
	json_w_arr_begin(w);
	json_w_key(w, "x");
	json_w_arr_end(w);
}
static void b_unbalanced(struct json_w *w)
{
	json_w_obj_begin(w);
}
static void b_wrong_end(struct json_w *w)
{
	json_w_obj_begin(w);
	json_w_arr_end(w);
}
static void b_dangling_key(struct json_w *w)
{
	json_w_obj_begin(w);
	json_w_key(w, "k");
	json_w_obj_end(w);
}
static void b_two_values(struct json_w *w)
{
	json_w_int(w, 1);
	json_w_int(w, 2);
}
static void b_nothing(struct json_w *w)
{
}
static void b_bad_utf8(struct json_w *w)
{
	json_w_str(w, "bad \xc3\x28 utf8");
}
static void b_overlong(struct json_w *w)
{
	json_w_str(w, "\xc0\xaf"); /* overlong '/' */
}
static void b_surrogate(struct json_w *w)
{
	json_w_str(w, "\xed\xa0\x80"); /* UTF-8-encoded surrogate */
}
static void b_deep(struct json_w *w)
{
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		json_w_arr_begin(w);
}
static void b_big(struct json_w *w)
{
	json_w_arr_begin(w);
	for (int i = 0; i < 100; i++)
		json_w_str(w, "0123456789");
	json_w_arr_end(w);
}
static void b_null_key(struct json_w *w)
{
	json_w_obj_begin(w);
	json_w_key(w, NULL);
}

static void test_writer_errors(void **state)
{
	expect_writer_error(b_value_without_key, 0, -EINVAL, "value without key");
	expect_writer_error(b_key_in_array, 0, -EINVAL, "key in array");
	expect_writer_error(b_unbalanced, 0, -EINVAL, "unbalanced");
	expect_writer_error(b_wrong_end, 0, -EINVAL, "wrong end");
	expect_writer_error(b_dangling_key, 0, -EINVAL, "dangling key");
	expect_writer_error(b_two_values, 0, -EINVAL, "two top-level values");
	expect_writer_error(b_nothing, 0, -EINVAL, "nothing");
	expect_writer_error(b_bad_utf8, 0, -EILSEQ, "bad utf8");
	expect_writer_error(b_overlong, 0, -EILSEQ, "overlong");
	expect_writer_error(b_surrogate, 0, -EILSEQ, "surrogate");
	expect_writer_error(b_deep, 0, -E2BIG, "deep");
	expect_writer_error(b_big, 500, -EMSGSIZE, "over max");
	expect_writer_error(b_null_key, 0, -EINVAL, "null key");
}

/* ---- reader ------------------------------------------------------------------------------ */

/* A real Podman 4.3 inspect answer (trimmed). */
static const char INSPECT[] =
	"{\"Id\":\"3cd88db3395d4beadcdbcb6d42a3fb09a78b6ba42ab50c67f2a4d2a75e264624\","
	"\"Created\":\"2026-11-26T17:44:05.082942041Z\",\"Path\":\"/run/podman-init\","
	"\"Args\":[\"--\",\"httpd\",\"-f\"],\"State\":{\"Status\":\"exited\",\"Running\":false,"
	"\"Paused\":false,\"Restarting\":false,\"OOMKilled\":false,\"Dead\":false,\"Pid\":0,"
	"\"ExitCode\":143,\"Error\":\"\",\"StartedAt\":\"2026-11-26T17:44:05.2Z\"},"
	"\"RestartCount\":3,\"Config\":{\"Labels\":{\"io.shoal.managed\":\"true\","
	"\"io.shoal.rev\":\"7\",\"io.shoal.service\":\"web\"}},\"Mounts\":[]}";

static void test_reader_paths(void **state)
{
	struct json_doc d;
	char buf[80];
	int64_t v = 0;
	bool b = true;
	assert_int_equal(json_parse(INSPECT, strlen(INSPECT), 0, &d), 0);
	assert_int_equal(json_type(&d, 0), JSON_OBJECT);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "State.Status"), buf, sizeof buf), 6);
	assert_string_equal(buf, "exited");
	assert_int_equal(json_get_bool(&d, json_path(&d, 0, "State.Running"), &b), 0);
	assert_false(b);
	assert_int_equal(json_get_i64(&d, json_path(&d, 0, "State.ExitCode"), &v), 0);
	assert_int_equal(v, 143);
	assert_int_equal(json_get_i64(&d, json_path(&d, 0, "RestartCount"), &v), 0);
	assert_int_equal(v, 3);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "Id"), buf, sizeof buf), 64);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "Args.1"), buf, sizeof buf), 5);
	assert_string_equal(buf, "httpd");
	int labels = json_path(&d, 0, "Config.Labels");
	assert_int_equal(json_type(&d, labels), JSON_OBJECT);
	assert_int_equal(json_size(&d, labels), 3);
	assert_true(json_str_eq(&d, json_obj_get(&d, labels, "io.shoal.service"), "web"));
	assert_false(json_str_eq(&d, json_obj_get(&d, labels, "io.shoal.service"), "we"));
	assert_false(json_str_eq(&d, json_obj_get(&d, labels, "io.shoal.service"), "webx"));
	assert_int_equal(json_size(&d, json_path(&d, 0, "Mounts")), 0);
	assert_int_equal(json_first(&d, json_path(&d, 0, "Mounts")), -ENOENT);

	/* missing and mistyped */
	assert_int_equal(json_path(&d, 0, "State.Nope"), -ENOENT);
	assert_int_equal(json_path(&d, 0, "Args.9"), -ENOENT);
	assert_int_equal(json_path(&d, 0, "Args.x"), -ENOENT);
	assert_int_equal(json_path(&d, 0, "Id.x"), -EINVAL);
	assert_int_equal(json_path(&d, 0, "State..Status"), -EINVAL);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "Nope"), buf, sizeof buf), -ENOENT);
	assert_int_equal(json_get_i64(&d, json_path(&d, 0, "State.Status"), &v), -EINVAL);
	assert_int_equal(json_get_bool(&d, json_path(&d, 0, "State.Pid"), &b), -EINVAL);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "State.Pid"), buf, sizeof buf),
			 -EINVAL);
	assert_int_equal(json_get_str(&d, json_path(&d, 0, "Id"), buf, 10), -ENOSPC);
	assert_string_equal(buf, "");
	assert_int_equal(json_obj_get(&d, json_path(&d, 0, "Args"), "x"), -EINVAL);
	assert_int_equal(json_type(&d, 100000), 0);
	assert_int_equal(json_type(&d, -1), 0);

	/* iteration over an object alternates key, value */
	int n = 0;
	for (int t = json_first(&d, labels); t >= 0; t = json_next(&d, labels, t))
		n++;
	assert_int_equal(n, 6);
	json_doc_release(&d);
}

static void test_reader_values(void **state)
{
	const char *txt = " [ \"a\\u00e9\\ud83d\\ude00\\/\\\"\" , -0, 12.5e-3, 9223372036854775807,"
			  " -9223372036854775808, 9223372036854775808, 1e3, true, null,"
			  " {\"k\":1,\"k\":2} ] ";
	struct json_doc d;
	char buf[64];
	int64_t v = 0;
	assert_int_equal(json_parse(txt, strlen(txt), 0, &d), 0);
	assert_int_equal(json_size(&d, 0), 10);
	assert_int_equal(json_get_str(&d, json_arr_at(&d, 0, 0), buf, sizeof buf), 9);
	assert_string_equal(buf, "a\xc3\xa9\xf0\x9f\x98\x80/\"");
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 1), &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 2), &v), -EINVAL);
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 3), &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 4), &v), 0);
	assert_true(v == INT64_MIN);
	v = 5;
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 5), &v), -ERANGE);
	assert_int_equal(v, 5); /* untouched on failure */
	assert_int_equal(json_get_i64(&d, json_arr_at(&d, 0, 6), &v), -EINVAL);
	assert_int_equal(json_type(&d, json_arr_at(&d, 0, 7)), JSON_TRUE);
	assert_int_equal(json_type(&d, json_arr_at(&d, 0, 8)), JSON_NULL);
	/* duplicate keys: the last wins */
	assert_int_equal(json_get_i64(&d, json_path(&d, 0, "9.k"), &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(json_arr_at(&d, 0, 10), -ENOENT);
	json_doc_release(&d);

	/* an escaped NUL cannot be returned as a C string */
	assert_int_equal(json_parse("\"a\\u0000b\"", 10, 0, &d), 0);
	assert_int_equal(json_get_str(&d, 0, buf, sizeof buf), -EILSEQ);
	json_doc_release(&d);
}

static void test_reader_malformed(void **state)
{
	static const char *bad[] = {
		"", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}",
		"{\"a\" 1}", "[1 2]", "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN",
		"Infinity", "tru", "nul", "falsey", "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\u12G4\"",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"", "\"nl\n\"",
		"\"\xc3\x28\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
		"1 2", "[] []", "{\"a\":1}x", "'a'", "[1]\x01",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct json_doc d = { 0 };
		int r = json_parse(bad[i], strlen(bad[i]), 0, &d);
		if (r != -EBADMSG)
			fail_msg("case %zu '%s': got %d want %d", i, bad[i], r, -EBADMSG);
		assert_null(d.toks); /* untouched */
	}
	/* NUL byte inside the text */
	struct json_doc d;
	assert_int_equal(json_parse("[1,\0 2]", 7, 0, &d), -EBADMSG);
	assert_int_equal(json_parse(NULL, 0, 0, &d), -EBADMSG);
}

static void test_reader_limits(void **state)
{
	struct json_doc d;
	char deep[2 * JSON_MAX_DEPTH + 8];
	size_t n = 0;
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		deep[n++] = '[';
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		deep[n++] = ']';
	assert_int_equal(json_parse(deep, n, 0, &d), 0);
	json_doc_release(&d);
	n = 0;
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		deep[n++] = '[';
	for (int i = 0; i <= JSON_MAX_DEPTH; i++)
		deep[n++] = ']';
	assert_int_equal(json_parse(deep, n, 0, &d), -E2BIG);

	/* token cap */
	const char *arr = "[1,2,3,4,5,6,7,8,9]";
	assert_int_equal(json_parse(arr, strlen(arr), 10, &d), 0);
	json_doc_release(&d);
	assert_int_equal(json_parse(arr, strlen(arr), 9, &d), -E2BIG);

	/* a large flat array grows the token table */
	size_t cnt = 20000, cap = cnt * 2 + 8, o = 0;
	char *big = malloc(cap);
	assert_non_null(big);
	big[o++] = '[';
	for (size_t i = 0; i < cnt; i++) {
		big[o++] = '0';
		big[o++] = i + 1 < cnt ? ',' : ']';
	}
	assert_int_equal(json_parse(big, o, 0, &d), 0);
	assert_int_equal(json_size(&d, 0), (int)cnt);
	assert_int_equal(json_arr_at(&d, 0, (uint32_t)cnt - 1), (int)cnt);
	json_doc_release(&d);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_basic),
		cmocka_unit_test(test_writer_escapes),
		cmocka_unit_test(test_writer_errors),
		cmocka_unit_test(test_reader_paths),
		cmocka_unit_test(test_reader_values),
		cmocka_unit_test(test_reader_malformed),
		cmocka_unit_test(test_reader_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
