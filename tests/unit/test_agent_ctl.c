/*
 * Unit tests of the control-socket codec (agent/ctl/ctl_proto.c): framing, request and response
 * round trips, every malformed shape a client or a server can send, JSON printing, and the
 * duration/size parsers.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/ctl/ctl_proto.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Build a raw msgpack payload with a packer (no frame header). */
struct raw {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void raw_init(struct raw *r)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void raw_str(struct raw *r, const char *s)
{
	msgpack_pack_str(&r->pk, strlen(s));
	msgpack_pack_str_body(&r->pk, s, strlen(s));
}

static int decode_req(const void *buf, size_t len, struct ctl_request *req)
{
	/* Copy into an exact-size heap buffer so ASan catches any over-read. */
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	char err[128];
	int r = ctl_request_decode(copy, len, req, err, sizeof err);
	if (r == 0) {
		/* The request borrows from the buffer: check then release before freeing it. */
		ctl_request_release(req);
	}
	free(copy);
	return r;
}

static char *json_of(const msgpack_object *o, int indent)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(ctl_json_write(f, o, indent), 0);
	fclose(f);
	return buf;
}

/* ---- framing -------------------------------------------------------------------------------- */

static void test_frame_peek(void **state)
{
	uint8_t b[8] = {0, 0, 0, 5, 1, 2, 3, 4};
	uint32_t len = 0;
	for (size_t n = 0; n < CTL_FRAME_HDR; n++)
		assert_int_equal(ctl_frame_peek(b, n, 100, &len), 0);
	assert_int_equal(ctl_frame_peek(b, 4, 100, &len), 1);
	assert_int_equal(len, 5);
	assert_int_equal(ctl_frame_peek(b, 4, 5, &len), 1);
	assert_int_equal(ctl_frame_peek(b, 4, 4, &len), -EMSGSIZE);
	assert_int_equal(len, 5);

	uint8_t zero[4] = {0, 0, 0, 0};
	assert_int_equal(ctl_frame_peek(zero, 4, 100, &len), -EBADMSG);

	uint8_t big[4] = {0xff, 0xff, 0xff, 0xff};
	assert_int_equal(ctl_frame_peek(big, 4, CTL_FRAME_MAX_DEFAULT, &len), -EMSGSIZE);
	assert_int_equal(len, 0xffffffffu);

	uint8_t hdr[4];
	ctl_frame_put_header(hdr, 0x01020304);
	assert_memory_equal(hdr, ((uint8_t[]){1, 2, 3, 4}), 4);
	assert_int_equal(ctl_frame_peek(hdr, 4, UINT32_MAX, &len), 1);
	assert_int_equal(len, 0x01020304);
}

/* ---- request round trip --------------------------------------------------------------------- */

static void test_request_roundtrip(void **state)
{
	struct ctl_enc e;
	const uint8_t *buf;
	size_t len;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "artifact.import_git", true);
	ctl_enc_map(&e, 3);
	ctl_enc_str(&e, "repo");
	ctl_enc_str(&e, "/srv/git/web");
	ctl_enc_str(&e, "ref");
	ctl_enc_str(&e, "v1.2");
	ctl_enc_str(&e, "path");
	ctl_enc_nil(&e);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);

	uint32_t plen;
	assert_int_equal(ctl_frame_peek(buf, len, CTL_FRAME_MAX_DEFAULT, &plen), 1);
	assert_int_equal((size_t)plen + CTL_FRAME_HDR, len);

	struct ctl_request req;
	char err[128];
	assert_int_equal(ctl_request_decode(buf + CTL_FRAME_HDR, plen, &req, err, sizeof err), 0);
	assert_string_equal(req.op, "artifact.import_git");
	assert_non_null(req.args);
	char *s = NULL;
	assert_int_equal(ctl_arg_str(&req, "repo", &s), 0);
	assert_string_equal(s, "/srv/git/web");
	free(s);
	s = NULL;
	assert_int_equal(ctl_arg_str(&req, "ref", &s), 0);
	assert_string_equal(s, "v1.2");
	free(s);
	s = NULL;
	assert_int_equal(ctl_arg_str(&req, "path", &s), -ENOENT); /* nil counts as absent */
	assert_null(s);
	assert_int_equal(ctl_arg_str(&req, "nope", &s), -ENOENT);
	ctl_request_release(&req);
	ctl_request_release(&req); /* idempotent */

	/* Without args. */
	ctl_enc_reset(&e);
	ctl_enc_request(&e, "ping", false);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	assert_int_equal(ctl_request_decode(buf + 4, len - 4, &req, NULL, 0), 0);
	assert_string_equal(req.op, "ping");
	assert_null(req.args);
	assert_int_equal(ctl_arg_str(&req, "x", &s), -ENOENT);
	ctl_request_release(&req);
	ctl_enc_release(&e);
}

static void test_arg_types(void **state)
{
	struct raw r;
	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_str(&r, "op");
	raw_str(&r, "x");
	raw_str(&r, "args");
	msgpack_pack_map(&r.pk, 4);
	raw_str(&r, "int");
	msgpack_pack_int(&r.pk, 7);
	raw_str(&r, "empty");
	raw_str(&r, "");
	raw_str(&r, "nul");
	msgpack_pack_str(&r.pk, 3);
	msgpack_pack_str_body(&r.pk, "a\0b", 3);
	raw_str(&r, "bin");
	msgpack_pack_bin(&r.pk, 2);
	msgpack_pack_bin_body(&r.pk, "ab", 2);

	struct ctl_request req;
	assert_int_equal(ctl_request_decode((uint8_t *)r.sb.data, r.sb.size, &req, NULL, 0), 0);
	char *s = NULL;
	assert_int_equal(ctl_arg_str(&req, "int", &s), -EINVAL);
	assert_int_equal(ctl_arg_str(&req, "empty", &s), -EINVAL);
	assert_int_equal(ctl_arg_str(&req, "nul", &s), -EINVAL);
	assert_int_equal(ctl_arg_str(&req, "bin", &s), -EINVAL);
	assert_null(s);
	ctl_request_release(&req);
	msgpack_sbuffer_destroy(&r.sb);
}

/* ---- malformed requests --------------------------------------------------------------------- */

static void test_request_not_msgpack(void **state)
{
	struct ctl_request req;
	/* Empty payload. */
	assert_int_equal(ctl_request_decode((const uint8_t *)"", 0, &req, NULL, 0), -EBADMSG);
	assert_int_equal(ctl_request_decode(NULL, 0, &req, NULL, 0), -EBADMSG);

	const struct {
		const char *name;
		const uint8_t *b;
		size_t n;
	} cases[] = {
#define C(name, ...) {name, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})}
		C("reserved byte c1", 0xc1),
		C("array32 of 4G elements", 0xdd, 0xff, 0xff, 0xff, 0xff),
		C("map32 of 4G pairs", 0xdf, 0xff, 0xff, 0xff, 0xff),
		C("array16 count over bytes left", 0xdc, 0x00, 0x05, 0x01, 0x02),
		C("map16 count over bytes left", 0xde, 0x00, 0x02, 0xa1, 'a', 0x01),
		C("str32 length over the frame", 0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'),
		C("bin32 length over the frame", 0xc6, 0xff, 0xff, 0xff, 0xff),
		C("ext32 length over the frame", 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01),
		C("truncated str8 header", 0xd9),
		C("truncated uint64", 0xcf, 0, 0, 0),
		C("truncated float64", 0xcb, 0, 0),
		C("truncated fixext16", 0xd8, 1, 2, 3),
		C("trailing byte after map", 0x80, 0x00),
		C("two objects", 0xc0, 0xc0),
		C("fixmap missing value", 0x81, 0xa2, 'o', 'p'),
		C("fixarray missing elements", 0x93, 0x01),
#undef C
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int r = decode_req(cases[i].b, cases[i].n, &req);
		if (r != -EBADMSG)
			fail_msg("%s: got %d, want %d (-EBADMSG)", cases[i].name, r, -EBADMSG);
	}
}

static void test_request_depth(void **state)
{
	/* CTL_MAX_DEPTH nested arrays are fine (inside a request map they make it too deep, so
	 * test ctl_msgpack_check directly); one more is refused. */
	uint8_t b[64];
	size_t used;
	for (int depth = 1; depth <= CTL_MAX_DEPTH + 1; depth++) {
		memset(b, 0x91, (size_t)depth);
		b[depth] = 0xc0;
		int r = ctl_msgpack_check(b, (size_t)depth + 1, &used);
		if (depth <= CTL_MAX_DEPTH) {
			assert_int_equal(r, 0);
			assert_int_equal(used, depth + 1);
		} else {
			assert_int_equal(r, -EBADMSG);
		}
	}
	/* A deep bomb of 10000 levels must not recurse 10000 times. */
	size_t n = 10000;
	uint8_t *bomb = malloc(n + 1);
	memset(bomb, 0x91, n);
	bomb[n] = 0xc0;
	assert_int_equal(ctl_msgpack_check(bomb, n + 1, &used), -EBADMSG);
	struct ctl_request req;
	assert_int_equal(decode_req(bomb, n + 1, &req), -EBADMSG);
	free(bomb);
}

static void test_request_truncations(void **state)
{
	/* Every proper prefix of a valid request is malformed, never a crash. */
	struct ctl_enc e;
	const uint8_t *buf;
	size_t len;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "artifact.show", true);
	ctl_enc_map(&e, 2);
	ctl_enc_str(&e, "id");
	ctl_enc_str(&e, "0123456789abcdef");
	ctl_enc_str(&e, "n");
	ctl_enc_uint(&e, 1ull << 40);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	struct ctl_request req;
	for (size_t n = 0; n < len - CTL_FRAME_HDR; n++) {
		int r = decode_req(buf + CTL_FRAME_HDR, n, &req);
		if (r != -EBADMSG)
			fail_msg("prefix of %zu bytes: got %d, want -EBADMSG", n, r);
	}
	assert_int_equal(decode_req(buf + CTL_FRAME_HDR, len - CTL_FRAME_HDR, &req), 0);

	/* Every single-byte change decodes or fails cleanly (ASan watches). */
	uint8_t *m = malloc(len);
	for (size_t i = CTL_FRAME_HDR; i < len; i++) {
		for (int v = 0; v < 256; v += 7) {
			memcpy(m, buf, len);
			m[i] = (uint8_t)v;
			int r = decode_req(m + CTL_FRAME_HDR, len - CTL_FRAME_HDR, &req);
			assert_true(r == 0 || r == -EBADMSG || r == -EPROTO);
		}
	}
	free(m);
	ctl_enc_release(&e);
}

static void test_request_bad_shape(void **state)
{
	struct ctl_request req;
	char err[128];
	struct raw r;

#define SHAPE(desc, body)                                                                    \
	do {                                                                                 \
		raw_init(&r);                                                                \
		body;                                                                        \
		int rc = ctl_request_decode((uint8_t *)r.sb.data, r.sb.size, &req, err,      \
					    sizeof err);                                     \
		if (rc != -EPROTO)                                                           \
			fail_msg("%s: got %d, want %d (-EPROTO)", desc, rc, -EPROTO);        \
		assert_true(strlen(err) > 0);                                                \
		msgpack_sbuffer_destroy(&r.sb);                                              \
	} while (0)

	SHAPE("root is an array", msgpack_pack_array(&r.pk, 0));
	SHAPE("root is an int", msgpack_pack_int(&r.pk, 1));
	SHAPE("root is a string", raw_str(&r, "op"));
	SHAPE("root is nil", msgpack_pack_nil(&r.pk));
	SHAPE("no op", { msgpack_pack_map(&r.pk, 1); raw_str(&r, "args"); msgpack_pack_map(&r.pk, 0); });
	SHAPE("empty map", msgpack_pack_map(&r.pk, 0));
	SHAPE("op is an int", { msgpack_pack_map(&r.pk, 1); raw_str(&r, "op"); msgpack_pack_int(&r.pk, 3); });
	SHAPE("op is bin", {
		msgpack_pack_map(&r.pk, 1);
		raw_str(&r, "op");
		msgpack_pack_bin(&r.pk, 4);
		msgpack_pack_bin_body(&r.pk, "ping", 4);
	});
	SHAPE("op is empty", { msgpack_pack_map(&r.pk, 1); raw_str(&r, "op"); raw_str(&r, ""); });
	SHAPE("op too long", {
		char longop[CTL_OP_MAX + 2];
		memset(longop, 'a', sizeof longop - 1);
		longop[sizeof longop - 1] = 0;
		msgpack_pack_map(&r.pk, 1);
		raw_str(&r, "op");
		raw_str(&r, longop);
	});
	SHAPE("op with NUL", {
		msgpack_pack_map(&r.pk, 1);
		raw_str(&r, "op");
		msgpack_pack_str(&r.pk, 5);
		msgpack_pack_str_body(&r.pk, "pi\0ng", 5);
	});
	SHAPE("args is an array", {
		msgpack_pack_map(&r.pk, 2);
		raw_str(&r, "op");
		raw_str(&r, "ping");
		raw_str(&r, "args");
		msgpack_pack_array(&r.pk, 0);
	});
	SHAPE("args is a string", {
		msgpack_pack_map(&r.pk, 2);
		raw_str(&r, "op");
		raw_str(&r, "ping");
		raw_str(&r, "args");
		raw_str(&r, "dir=/tmp");
	});
#undef SHAPE

	/* The longest allowed op, integer keys around it, and nil args are fine. */
	char op[CTL_OP_MAX + 1];
	memset(op, 'b', CTL_OP_MAX);
	op[CTL_OP_MAX] = 0;
	raw_init(&r);
	msgpack_pack_map(&r.pk, 3);
	msgpack_pack_int(&r.pk, 1);
	msgpack_pack_int(&r.pk, 2);
	raw_str(&r, "op");
	raw_str(&r, op);
	raw_str(&r, "args");
	msgpack_pack_nil(&r.pk);
	assert_int_equal(ctl_request_decode((uint8_t *)r.sb.data, r.sb.size, &req, err, sizeof err),
			 0);
	assert_string_equal(req.op, op);
	assert_null(req.args);
	ctl_request_release(&req);
	msgpack_sbuffer_destroy(&r.sb);
}

/* ---- responses ------------------------------------------------------------------------------ */

static void test_response_roundtrip(void **state)
{
	struct ctl_enc e;
	const uint8_t *buf;
	size_t len;
	struct ctl_response resp;

	ctl_enc_init(&e);
	ctl_enc_ok(&e);
	ctl_enc_map(&e, 2);
	ctl_enc_str(&e, "id");
	ctl_enc_str(&e, "ab");
	ctl_enc_str(&e, "n");
	ctl_enc_int(&e, -5);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	assert_int_equal(ctl_response_decode(buf + 4, len - 4, &resp), 0);
	assert_true(resp.ok);
	assert_non_null(resp.result);
	assert_int_equal(resp.result->type, MSGPACK_OBJECT_MAP);
	assert_true(ctl_obj_streq(ctl_map_get(resp.result, "id"), "ab"));
	const msgpack_object *n = ctl_map_get(resp.result, "n");
	assert_non_null(n);
	assert_int_equal(n->via.i64, -5);
	ctl_response_release(&resp);

	/* Every error name survives the trip and maps back to its code. */
	for (int i = 1; i < CTL_E__COUNT; i++) {
		ctl_enc_reset(&e);
		ctl_enc_error(&e, (enum ctl_err)i, "some \"message\"");
		assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
		assert_int_equal(ctl_response_decode(buf + 4, len - 4, &resp), 0);
		assert_false(resp.ok);
		assert_string_equal(resp.error, ctl_err_name((enum ctl_err)i));
		assert_int_equal(ctl_err_from_name(resp.error, strlen(resp.error)), i);
		assert_string_equal(resp.message, "some \"message\"");
		ctl_response_release(&resp);
	}
	ctl_enc_release(&e);
}

static void test_error_names(void **state)
{
	static const char *const required[] = {
		"bad_frame",   "frame_too_large", "unknown_op",   "bad_request", "not_found",
		"ambiguous",   "invalid_artifact", "not_a_repo",  "no_such_ref", "too_big",
		"escapes_tree", "no_space",	  "internal",
	};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
		int code = ctl_err_from_name(required[i], strlen(required[i]));
		if (code <= 0)
			fail_msg("stable error name %s missing (got %d)", required[i], code);
		assert_string_equal(ctl_err_name((enum ctl_err)code), required[i]);
	}
	/* Names are unique. */
	for (int i = 0; i < CTL_E__COUNT; i++)
		for (int j = i + 1; j < CTL_E__COUNT; j++)
			assert_string_not_equal(ctl_err_name((enum ctl_err)i),
						ctl_err_name((enum ctl_err)j));
	assert_string_equal(ctl_err_name((enum ctl_err)999), "internal");
	assert_int_equal(ctl_err_from_name("nope", 4), -ENOENT);
	assert_int_equal(ctl_err_from_name("not_found_x", 9), CTL_E_NOT_FOUND); /* length-bounded */
}

static void test_response_malformed(void **state)
{
	struct ctl_response resp;
	struct raw r;
#define RESP(desc, want, body)                                                                 \
	do {                                                                                   \
		raw_init(&r);                                                                  \
		body;                                                                          \
		int rc = ctl_response_decode((uint8_t *)r.sb.data, r.sb.size, &resp);          \
		if (rc != (want))                                                              \
			fail_msg("%s: got %d, want %d", desc, rc, (want));                     \
		if (rc == 0)                                                                   \
			ctl_response_release(&resp);                                           \
		msgpack_sbuffer_destroy(&r.sb);                                                \
	} while (0)

	RESP("array", -EBADMSG, msgpack_pack_array(&r.pk, 0));
	RESP("no ok", -EBADMSG, msgpack_pack_map(&r.pk, 0));
	RESP("ok is int", -EBADMSG, { msgpack_pack_map(&r.pk, 1); raw_str(&r, "ok"); msgpack_pack_int(&r.pk, 1); });
	RESP("error without name", -EBADMSG, { msgpack_pack_map(&r.pk, 1); raw_str(&r, "ok"); msgpack_pack_false(&r.pk); });
	RESP("error name not a string", -EBADMSG, {
		msgpack_pack_map(&r.pk, 2);
		raw_str(&r, "ok");
		msgpack_pack_false(&r.pk);
		raw_str(&r, "error");
		msgpack_pack_int(&r.pk, 5);
	});
	RESP("ok without result", 0, { msgpack_pack_map(&r.pk, 1); raw_str(&r, "ok"); msgpack_pack_true(&r.pk); });
	/* An unknown, very long error name is reported as internal, not truncated silently. */
	RESP("long unknown error", 0, {
		msgpack_pack_map(&r.pk, 2);
		raw_str(&r, "ok");
		msgpack_pack_false(&r.pk);
		raw_str(&r, "error");
		raw_str(&r, "an_error_name_from_the_future_that_is_way_too_long");
	});
#undef RESP
	raw_init(&r);
	msgpack_pack_map(&r.pk, 1);
	raw_str(&r, "ok");
	msgpack_pack_true(&r.pk);
	assert_int_equal(ctl_response_decode((uint8_t *)r.sb.data, r.sb.size, &resp), 0);
	assert_int_equal(resp.result->type, MSGPACK_OBJECT_NIL);
	ctl_response_release(&resp);
	msgpack_sbuffer_destroy(&r.sb);

	raw_init(&r);
	msgpack_pack_map(&r.pk, 2);
	raw_str(&r, "ok");
	msgpack_pack_false(&r.pk);
	raw_str(&r, "error");
	raw_str(&r, "an_error_name_from_the_future_that_is_way_too_long");
	assert_int_equal(ctl_response_decode((uint8_t *)r.sb.data, r.sb.size, &resp), 0);
	assert_string_equal(resp.error, "internal");
	assert_string_equal(resp.message, "");
	ctl_response_release(&resp);
	msgpack_sbuffer_destroy(&r.sb);
}

/* ---- encoder -------------------------------------------------------------------------------- */

static void test_enc_raw_and_reset(void **state)
{
	struct ctl_enc items, e;
	const uint8_t *buf;
	size_t len, plen;
	ctl_enc_init(&items);
	for (int i = 0; i < 3; i++)
		ctl_enc_uint(&items, (uint64_t)i * 1000);
	const uint8_t *p = ctl_enc_payload(&items, &plen);
	ctl_enc_init(&e);
	ctl_enc_ok(&e);
	ctl_enc_array(&e, 3);
	ctl_enc_raw(&e, p, plen);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	struct ctl_response resp;
	assert_int_equal(ctl_response_decode(buf + 4, len - 4, &resp), 0);
	assert_int_equal(resp.result->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(resp.result->via.array.size, 3);
	assert_int_equal(resp.result->via.array.ptr[2].via.u64, 2000);
	ctl_response_release(&resp);

	/* Reset replaces a half-built result by an error. */
	ctl_enc_reset(&e);
	ctl_enc_error(&e, CTL_E_NOT_FOUND, NULL);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	assert_int_equal(ctl_response_decode(buf + 4, len - 4, &resp), 0);
	assert_false(resp.ok);
	assert_string_equal(resp.error, "not_found");
	assert_string_equal(resp.message, "not_found"); /* NULL message: the name */
	ctl_response_release(&resp);

	/* Sticky error: finish reports it. */
	e.err = -ENOMEM;
	ctl_enc_uint(&e, 1);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), -ENOMEM);
	ctl_enc_release(&e);
	ctl_enc_release(&e);
	ctl_enc_release(&items);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void test_json(void **state)
{
	struct raw r;
	raw_init(&r);
	msgpack_pack_map(&r.pk, 9);
	raw_str(&r, "q\"b\\");
	raw_str(&r, "line\nnext\ttab\x01\x7f");
	raw_str(&r, "utf8");
	raw_str(&r, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9f");
	raw_str(&r, "bad");
	msgpack_pack_str(&r.pk, 6);
	msgpack_pack_str_body(&r.pk, "a\xff\xc0\x80\xed\xa0", 6); /* invalid, overlong, surrogate */
	raw_str(&r, "bin");
	msgpack_pack_bin(&r.pk, 3);
	msgpack_pack_bin_body(&r.pk, "\x00\xab\xff", 3);
	raw_str(&r, "arr");
	msgpack_pack_array(&r.pk, 4);
	msgpack_pack_int(&r.pk, -42);
	msgpack_pack_uint64(&r.pk, UINT64_MAX);
	msgpack_pack_nil(&r.pk);
	msgpack_pack_true(&r.pk);
	raw_str(&r, "nan");
	msgpack_pack_double(&r.pk, NAN);
	raw_str(&r, "half");
	msgpack_pack_double(&r.pk, 0.5);
	msgpack_pack_int(&r.pk, 7); /* a non-string key */
	msgpack_pack_map(&r.pk, 0);
	raw_str(&r, "empty");
	msgpack_pack_array(&r.pk, 0);

	struct ctl_msg m;
	assert_int_equal(ctl_msg_decode((uint8_t *)r.sb.data, r.sb.size, &m), 0);
	char *j = json_of(m.root, 0);
	const char *want =
		"{\"q\\\"b\\\\\":\"line\\nnext\\ttab\\u0001\\u007f\","
		"\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9f\","
		"\"bad\":\"a\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\","
		"\"bin\":\"00abff\","
		"\"arr\":[-42,18446744073709551615,null,true],"
		"\"nan\":null,\"half\":0.5,\"7\":{},\"empty\":[]}";
	assert_string_equal(j, want);
	free(j);

	/* Pretty output has the same tokens. */
	j = json_of(m.root, 2);
	assert_non_null(strstr(j, "\n  \"utf8\": \"caf"));
	assert_non_null(strstr(j, "\"arr\": [\n    -42,"));
	free(j);
	ctl_msg_release(&m);
	ctl_msg_release(&m);
	msgpack_sbuffer_destroy(&r.sb);
}

/* ---- parsers -------------------------------------------------------------------------------- */

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
		{"0", 0}, {"10", 10000}, {"1.5", 1500}, {"250ms", 250}, {"10s", 10000},
		{"5m", 300000}, {"2min", 120000}, {"1h", 3600000}, {"0.5s", 500},
	};
	static const char *const bad[] = {"", "-1", "+1", " 1", "1x", "s", "1 s", "inf", "nan",
					  "0x10", "1e3", "1sms", "1.2.3"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t v = 12345;
		int r = ctl_parse_duration_ms(ok[i].s, &v);
		if (r != 0 || v != ok[i].ms)
			fail_msg("\"%s\": got rc %d value %llu, want 0 and %llu", ok[i].s, r,
				 (unsigned long long)v, (unsigned long long)ok[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t v = 12345;
		int r = ctl_parse_duration_ms(bad[i], &v);
		if (r != -EINVAL || v != 12345)
			fail_msg("\"%s\": got rc %d value %llu, want -EINVAL and untouched", bad[i],
				 r, (unsigned long long)v);
	}
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{"0", 0}, {"4096", 4096}, {"512K", 512 << 10}, {"16M", 16 << 20},
		{"2G", 2ull << 30}, {"1T", 1ull << 40}, {"16MiB", 16 << 20}, {"3KB", 3 << 10},
		{"7B", 7},
	};
	static const char *const bad[] = {"", "-1", "K", "1X", "1.5M", "1MiBx", "5iB", " 1"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint64_t v = 1;
		int r = ctl_parse_size(ok[i].s, &v);
		if (r != 0 || v != ok[i].v)
			fail_msg("\"%s\": got rc %d value %llu, want 0 and %llu", ok[i].s, r,
				 (unsigned long long)v, (unsigned long long)ok[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t v = 1;
		int r = ctl_parse_size(bad[i], &v);
		if (r != -EINVAL || v != 1)
			fail_msg("\"%s\": got rc %d, want -EINVAL", bad[i], r);
	}
	uint64_t v = 1;
	assert_int_equal(ctl_parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(ctl_parse_size("17179869184G", &v), -ERANGE);
	assert_int_equal(v, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_peek),
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_arg_types),
		cmocka_unit_test(test_request_not_msgpack),
		cmocka_unit_test(test_request_depth),
		cmocka_unit_test(test_request_truncations),
		cmocka_unit_test(test_request_bad_shape),
		cmocka_unit_test(test_response_roundtrip),
		cmocka_unit_test(test_error_names),
		cmocka_unit_test(test_response_malformed),
		cmocka_unit_test(test_enc_raw_and_reset),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
