/*
 * tests/unit/test_store_validate.c: the manifest encoding (format 2) as a plain msgpack reader
 * sees it, and store_manifest_validate, the rules every artifact passes whether imported or
 * fetched: each refused case by its code and message, through the function itself, through the
 * decoder (bytes a peer could send, packed here with msgpack-c, independently of store/codec.c)
 * and through store_import_commit (the gate a fetch goes through), against a real store.
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
#include <msgpack.h>

#include "store/import.h"
#include "store/store.h"
#include "test_store_util.h"

#define assert_rc_msg(got, want, err, sub)                                                  \
	do {                                                                                \
		int g_ = (got);                                                             \
		if (g_ != (want) || !strstr((err), (sub)))                                  \
			fail_msg("%s:%d: got %d \"%s\", want %d \"...%s...\"", __FILE__,    \
				 __LINE__, g_, (err), (want), (sub));                       \
	} while (0)

/* A valid manifest with the files given (sorted by the caller). Heap strings throughout. */
static void mk(struct store_manifest *m, const struct store_file *files, size_t n)
{
	memset(m, 0, sizeof *m);
	m->service = strdup("web");
	m->runtime = strdup("exec");
	m->version = strdup("1.0");
	m->exec_command = strdup("bin/web --port 8080");
	m->health.interval_ms = 2000;
	m->health.timeout_ms = 1000;
	m->health.failures = 3;
	m->health.deadline_ms = 60000;
	m->recovery.remove_unhealthy = true;
	m->nfiles = n;
	m->files = calloc(n ? n : 1, sizeof *m->files);
	for (size_t i = 0; i < n; i++) {
		m->files[i] = files[i];
		m->files[i].path = strdup(files[i].path);
		m->files[i].blob.b[0] = (uint8_t)(i + 1);
	}
}

static const struct store_file base_files[] = {
	{ "bin/web", 0755, 100, { { 0 } } },
	{ "release.ini", 0644, 60, { { 0 } } },
};

/* ---- the encoding, read by msgpack-c's own unpacker ------------------------------------------ */

static void check_plain(const uint8_t *buf, size_t len, bool endpoint)
{
	msgpack_unpacked u;
	size_t off = 0;
	msgpack_unpacked_init(&u);
	/* A header that declares more elements than follow makes this CONTINUE (format 1's
	 * bug), one that declares fewer leaves bytes behind: both fail below. */
	assert_int_equal(msgpack_unpack_next(&u, (const char *)buf, len, &off),
			 MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, len);
	msgpack_object o = u.data;
	assert_int_equal(o.type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(o.via.array.size, 16);
	msgpack_object *e = o.via.array.ptr;
	assert_int_equal(e[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	assert_int_equal(e[0].via.u64, 2); /* the format version, first */
	assert_int_equal(e[1].type, MSGPACK_OBJECT_STR);
	assert_memory_equal(e[1].via.str.ptr, "web", 3);
	assert_int_equal(e[8].type, MSGPACK_OBJECT_ARRAY); /* health */
	assert_int_equal(e[8].via.array.size, 7);
	if (endpoint) {
		assert_int_equal(e[9].type, MSGPACK_OBJECT_ARRAY);
		assert_int_equal(e[9].via.array.size, 5);
		assert_int_equal(e[9].via.array.ptr[0].via.u64, 8080);
		assert_int_equal(e[9].via.array.ptr[3].type, MSGPACK_OBJECT_STR);
		assert_memory_equal(e[9].via.array.ptr[3].via.str.ptr, "http", 4);
	} else {
		assert_int_equal(e[9].type, MSGPACK_OBJECT_NIL);
	}
	assert_int_equal(e[10].type, MSGPACK_OBJECT_ARRAY); /* recovery */
	assert_int_equal(e[10].via.array.size, 2);
	assert_int_equal(e[10].via.array.ptr[1].type, MSGPACK_OBJECT_BOOLEAN);
	assert_int_equal(e[15].type, MSGPACK_OBJECT_ARRAY); /* files */
	assert_int_equal(e[15].via.array.size, 2);
	assert_int_equal(e[15].via.array.ptr[0].via.array.size, 4);
	msgpack_unpacked_destroy(&u);
}

static void test_plain_msgpack(void **state)
{
	struct store_manifest m;
	uint8_t *buf;
	size_t len;
	(void)state;
	mk(&m, base_files, 2);
	assert_int_equal(store_manifest_encode(&m, &buf, &len), 0);
	check_plain(buf, len, false);
	free(buf);

	m.endpoint = (struct store_endpoint){ .port = 8080, .address = strdup("fd00::5"),
					      .weight = 256, .protocol = STORE_ENDPOINT_HTTP,
					      .drain_ms = 600000 };
	m.recovery = (struct store_recovery){ .restarts = 100, .remove_unhealthy = false };
	assert_int_equal(store_manifest_encode(&m, &buf, &len), 0);
	check_plain(buf, len, true);

	/* And back: every new field survives, and the id follows the content. */
	struct store_manifest d;
	assert_int_equal(store_manifest_decode(buf, len, &d), 0);
	assert_int_equal(d.endpoint.port, 8080);
	assert_string_equal(d.endpoint.address, "fd00::5");
	assert_int_equal(d.endpoint.weight, 256);
	assert_int_equal(d.endpoint.protocol, STORE_ENDPOINT_HTTP);
	assert_int_equal(d.endpoint.drain_ms, 600000);
	assert_int_equal(d.recovery.restarts, 100);
	assert_false(d.recovery.remove_unhealthy);
	struct store_id a, b;
	assert_int_equal(store_manifest_id(&m, &a), 0);
	assert_int_equal(store_manifest_id(&d, &b), 0);
	assert_memory_equal(&a, &b, sizeof a);
	d.endpoint.weight = 255;
	assert_int_equal(store_manifest_id(&d, &b), 0);
	assert_memory_not_equal(&a, &b, sizeof a);
	d.endpoint.weight = 256;
	d.recovery.remove_unhealthy = true;
	assert_int_equal(store_manifest_id(&d, &b), 0);
	assert_memory_not_equal(&a, &b, sizeof a);
	store_manifest_release(&d);
	free(buf);
	store_manifest_release(&m);
}

/* ---- bytes as a peer could send them, packed with msgpack-c ---------------------------------- */

struct raw {
	unsigned fmt, fields;
	const char *service, *runtime, *version;
	const char *path0, *path1;	/* two regular files */
	bool endpoint;
	unsigned port, weight;
	const char *proto;
};

static void pstr(msgpack_packer *pk, const char *s)
{
	if (!s) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_raw(const struct raw *r, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	static const uint8_t blob[32] = { 1 };
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	unsigned n = r->fields ? r->fields : 16;
	msgpack_pack_array(&pk, n);
	msgpack_pack_uint32(&pk, r->fmt ? r->fmt : 2);
	if (n == 1)
		return;
	pstr(&pk, r->service ? r->service : "web");
	pstr(&pk, r->runtime ? r->runtime : "exec");
	pstr(&pk, r->version);
	pstr(&pk, "bin/web");
	for (int i = 0; i < 3; i++)
		msgpack_pack_nil(&pk);
	msgpack_pack_array(&pk, 7);
	for (int i = 0; i < 3; i++)
		msgpack_pack_nil(&pk);
	msgpack_pack_uint32(&pk, 2000);
	msgpack_pack_uint32(&pk, 1000);
	msgpack_pack_uint32(&pk, 3);
	msgpack_pack_uint32(&pk, 60000);
	if (r->endpoint) {
		msgpack_pack_array(&pk, 5);
		msgpack_pack_uint32(&pk, r->port);
		msgpack_pack_nil(&pk);
		msgpack_pack_uint32(&pk, r->weight);
		pstr(&pk, r->proto ? r->proto : "tcp");
		msgpack_pack_uint32(&pk, 10000);
	} else {
		msgpack_pack_nil(&pk);
	}
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_true(&pk);
	for (int i = 0; i < 4; i++)
		msgpack_pack_nil(&pk);
	const char *paths[2] = { r->path0 ? r->path0 : "bin/web", r->path1 ? r->path1 : "release.ini" };
	msgpack_pack_array(&pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_array(&pk, 4);
		pstr(&pk, paths[i]);
		msgpack_pack_uint32(&pk, 0644);
		msgpack_pack_uint64(&pk, 10);
		msgpack_pack_bin(&pk, 32);
		msgpack_pack_bin_body(&pk, blob, 32);
	}
}

static int decode_raw(const struct raw *r)
{
	msgpack_sbuffer sb;
	struct store_manifest m;
	pack_raw(r, &sb);
	int rc = store_manifest_decode((const uint8_t *)sb.data, sb.size, &m);
	if (rc == 0)
		store_manifest_release(&m);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static void test_decode_peer_bytes(void **state)
{
	(void)state;
	/* What msgpack-c packs by the documented layout, the store reads. */
	assert_int_equal(decode_raw(&(struct raw){ 0 }), 0);
	assert_int_equal(decode_raw(&(struct raw){ .endpoint = true, .port = 80, .weight = 100,
						   .proto = "http" }),
			 0);
	/* Format versions this build does not know: named as such, whatever follows. */
	assert_int_equal(decode_raw(&(struct raw){ .fmt = 1 }), -STORE_EFORMAT);
	assert_int_equal(decode_raw(&(struct raw){ .fmt = 3 }), -STORE_EFORMAT);
	assert_int_equal(decode_raw(&(struct raw){ .fmt = 3, .fields = 1 }), -STORE_EFORMAT);
	assert_string_not_equal(store_strerror(-STORE_EFORMAT), "unknown store error");
	/* Format 1's mismatch: a header of 17 over 16 elements is not a manifest. */
	assert_int_equal(decode_raw(&(struct raw){ .fields = 17 }), -EBADMSG);
	/* Unsafe paths and bad fields, as a hostile peer would send them. */
	static const char *const bad_paths[] = {
		"/etc/shadow", "../../../etc/cron.d/x", "a/../../b", "a//b", "a/", "./a",
		"a\nb", "\x1b[2Jx", "x\x7f", "x\xc2\x9by", "caf\xe9",
	};
	for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
		int rc = decode_raw(&(struct raw){ .path0 = bad_paths[i], .path1 = "~" });
		if (rc != -STORE_EBADPATH)
			fail_msg("path %zu: got %d, want %d", i, rc, -STORE_EBADPATH);
	}
	assert_int_equal(decode_raw(&(struct raw){ .path0 = "a", .path1 = "a" }), -STORE_EBADPATH);
	assert_int_equal(decode_raw(&(struct raw){ .path0 = "a", .path1 = "a/b" }),
			 -STORE_EBADPATH);
	assert_int_equal(decode_raw(&(struct raw){ .service = ".." }), -STORE_EINVALID);
	assert_int_equal(decode_raw(&(struct raw){ .runtime = "vm" }), -STORE_EINVALID);
	assert_int_equal(decode_raw(&(struct raw){ .version = "1\x1b]0;x\x07" }), -STORE_EINVALID);
	assert_int_equal(decode_raw(&(struct raw){ .endpoint = true, .port = 0 }), -EBADMSG);
	assert_int_equal(decode_raw(&(struct raw){ .endpoint = true, .port = 65536 }), -EBADMSG);
	assert_int_equal(decode_raw(&(struct raw){ .endpoint = true, .port = 80, .weight = 257 }),
			 -STORE_EINVALID);
	assert_int_equal(decode_raw(&(struct raw){ .endpoint = true, .port = 80, .proto = "udp" }),
			 -EBADMSG);
}

/* ---- store_manifest_validate, case by case ---------------------------------------------------- */

static void test_refused_paths(void **state)
{
	static const struct {
		const char *path, *msg;
	} t[] = {
		{ "/etc/shadow", "\"/etc/shadow\": absolute path" },
		{ "../../..", "\"../../..\": \"..\" in path" },
		{ "a/../../b", "\"a/../../b\": \"..\" in path" },
		{ "a//b", "\"a//b\": empty path component" },
		{ "a/", "\"a/\": empty path component" },
		{ "./a", "\"./a\": \".\" in path" },
		{ "a\nb", "\"a\\x0ab\": control character in path" },
		{ "\x1b[2Jx", "\"\\x1b[2Jx\": control character in path" },
		{ "del\x7f", "\"del\\x7f\": control character in path" },
		{ "c1\xc2\x9b", "\"c1\\xc2\\x9b\": control character in path" },
		{ "latin1-caf\xe9", "\"latin1-caf\\xe9\": invalid UTF-8 in path" },
		{ "overlong\xc0\xaf", "invalid UTF-8 in path" },
		{ "surrogate\xed\xa0\x80", "invalid UTF-8 in path" },
	};
	char err[512];
	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct store_file f[] = { { (char *)t[i].path, 0644, 1, { { 0 } } } };
		struct store_manifest m;
		mk(&m, f, 1);
		int rc = store_manifest_validate(&m, NULL, NULL, err, sizeof err);
		if (rc != -STORE_EBADPATH || !strstr(err, t[i].msg))
			fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, rc, err,
				 -STORE_EBADPATH, t[i].msg);
		uint8_t *buf;
		size_t len;
		assert_int_equal(store_manifest_encode(&m, &buf, &len), -EINVAL);
		store_manifest_release(&m);
	}
	/* UTF-8 itself is fine in names. */
	struct store_file ok[] = { { "caf\xc3\xa9/\xe2\x82\xac.txt", 0644, 1, { { 0 } } } };
	struct store_manifest m;
	mk(&m, ok, 1);
	assert_int_equal(store_manifest_validate(&m, NULL, NULL, err, sizeof err), 0);
	assert_string_equal(err, "");
	store_manifest_release(&m);

	/* Duplicates, order, a file where a directory must be, depth. */
	struct store_file dup[] = { { "a", 0644, 1, { { 0 } } }, { "a", 0644, 1, { { 0 } } } };
	mk(&m, dup, 2);
	assert_rc_msg(store_manifest_validate(&m, NULL, NULL, err, sizeof err), -STORE_EBADPATH,
		      err, "\"a\": duplicate path");
	store_manifest_release(&m);
	struct store_file unsorted[] = { { "b", 0644, 1, { { 0 } } }, { "a", 0644, 1, { { 0 } } } };
	mk(&m, unsorted, 2);
	assert_rc_msg(store_manifest_validate(&m, NULL, NULL, err, sizeof err), -STORE_EBADPATH,
		      err, "\"a\": files not sorted by path");
	store_manifest_release(&m);
	struct store_file fad[] = { { "etc", 0120000, 4, { { 0 } } },
				    { "etc-x", 0644, 1, { { 0 } } },
				    { "etc/passwd", 0644, 1, { { 0 } } } };
	mk(&m, fad, 3);
	assert_rc_msg(store_manifest_validate(&m, NULL, NULL, err, sizeof err), -STORE_EBADPATH,
		      err, "\"etc/passwd\": \"etc\" is a file, not a directory");
	store_manifest_release(&m);
	char deep[256] = "";
	for (int i = 0; i < 65; i++)
		strcat(deep, "d/");
	strcat(deep, "f");
	struct store_file dp[] = { { deep, 0644, 1, { { 0 } } } };
	mk(&m, dp, 1);
	assert_rc_msg(store_manifest_validate(&m, NULL, NULL, err, sizeof err), -STORE_EBADPATH,
		      err, "directories nested deeper than 64");
	deep[0] = '\0'; /* exactly 64 directories deep passes */
	for (int i = 0; i < 64; i++)
		strcat(deep, "d/");
	strcat(deep, "f");
	free(m.files[0].path);
	m.files[0].path = strdup(deep);
	assert_int_equal(store_manifest_validate(&m, NULL, NULL, err, sizeof err), 0);
	store_manifest_release(&m);
	assert_string_not_equal(store_strerror(-STORE_EBADPATH), "unknown store error");
}

struct lk {
	const char *path, *target;
};

static void test_refused_links(void **state)
{
	static const struct {
		const char *link, *target, *msg;
	} t[] = {
		{ "shadow", "/etc/shadow", "shadow -> /etc/shadow: absolute symlink target" },
		{ "up", "../../..", "up -> ../../..: symlink points outside the tree" },
		{ "a/b/c", "../../../x", "a/b/c -> ../../../x: symlink points outside the tree" },
		/* lexically "." but the kernel goes through s (-> .) then up: outside */
		{ "x", "s/..", "x -> s/..: symlink points outside the tree" },
		{ "a0", "abs2/z", "a0 -> abs2/z: leads to abs2 -> /tmp, an absolute target" },
		{ "loop1", "loop2", "too many levels of symlinks" },
	};
	char err[512];
	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		/* The link under test, "s -> .", and the partners two cases need; sorted. */
		struct lk e[4] = { { t[i].link, t[i].target }, { "s", "." } };
		size_t n = 2;
		if (!strcmp(t[i].link, "a0"))
			e[n++] = (struct lk){ "abs2", "/tmp" };
		if (!strcmp(t[i].link, "loop1"))
			e[n++] = (struct lk){ "loop2", "loop1" };
		for (size_t a = 0; a < n; a++)
			for (size_t b = a + 1; b < n; b++)
				if (strcmp(e[a].path, e[b].path) > 0) {
					struct lk tmp = e[a];
					e[a] = e[b];
					e[b] = tmp;
				}
		struct store_file f[4];
		const char *targets[4];
		for (size_t k = 0; k < n; k++) {
			f[k] = (struct store_file){ (char *)e[k].path, 0120000, strlen(e[k].target),
						    { { 0 } } };
			targets[k] = e[k].target;
		}
		struct store_manifest m;
		mk(&m, f, n);
		/* Without targets the manifest alone is fine: the targets are blob bytes. */
		assert_int_equal(store_manifest_validate(&m, NULL, NULL, err, sizeof err), 0);
		int rc = store_manifest_validate(&m, targets, NULL, err, sizeof err);
		if (rc != -STORE_EESCAPE || !strstr(err, t[i].msg))
			fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, rc, err,
				 -STORE_EESCAPE, t[i].msg);
		store_manifest_release(&m);
	}
	/* Targets with control characters, or not matching the size the manifest claims. */
	struct store_file f[] = { { "l", 0120000, 5, { { 0 } } } };
	struct store_manifest m;
	mk(&m, f, 1);
	const char *nl[] = { "a\nb\x1b[" };
	m.files[0].size = strlen(nl[0]);
	assert_rc_msg(store_manifest_validate(&m, nl, NULL, err, sizeof err), -STORE_EBADPATH, err,
		      "l -> \"a\\x0ab\\x1b[\": control character in symlink target");
	const char *lies[] = { "bin/web" };
	m.files[0].size = 3;
	assert_rc_msg(store_manifest_validate(&m, lies, NULL, err, sizeof err), -STORE_EBADPATH, err,
		      "l: symlink target of 7 bytes, the manifest says 3");
	const char *none[] = { NULL };
	assert_rc_msg(store_manifest_validate(&m, none, NULL, err, sizeof err), -STORE_EBADPATH, err,
		      "l: symlink target missing");
	/* Inside, through a link that leads back in: fine. */
	store_manifest_release(&m);
	struct store_file in[] = { { "bin/up", 0120000, 14, { { 0 } } },
				   { "bin/web", 0755, 1, { { 0 } } },
				   { "cur", 0120000, 7, { { 0 } } },
				   { "d", 0120000, 8, { { 0 } } },
				   { "l", 0120000, 7, { { 0 } } } };
	const char *tg[] = { "../release.ini", NULL, "bin/web", "bin/../", "d/../.." };
	mk(&m, in, 5);
	m.files[3].size = strlen(tg[3]);
	/* l -> d/../..: d -> bin/.. (the root), then ".." from the root: outside. */
	assert_rc_msg(store_manifest_validate(&m, tg, NULL, err, sizeof err), -STORE_EESCAPE, err,
		      "l -> d/../..: symlink points outside the tree");
	tg[4] = "d/bin/";
	m.files[4].size = strlen(tg[4]);
	assert_int_equal(store_manifest_validate(&m, tg, NULL, err, sizeof err), 0);
	store_manifest_release(&m);
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = v ? strdup(v) : NULL;
}

static void test_refused_fields(void **state)
{
	char err[512];
	struct store_manifest m;
	(void)state;
#define FIELD_CASE(setup, code, msg)                                                        \
	do {                                                                                \
		mk(&m, base_files, 2);                                                      \
		setup;                                                                      \
		assert_rc_msg(store_manifest_validate(&m, NULL, NULL, err, sizeof err), code, \
			      err, msg);                                                    \
		store_manifest_release(&m);                                                 \
	} while (0)
#define SET(field, v) set_str(&m.field, v)
	FIELD_CASE(SET(service, ".."), -STORE_EINVALID, "service: invalid name \"..\"");
	FIELD_CASE(SET(service, "we b"), -STORE_EINVALID, "service: invalid name \"we b\"");
	FIELD_CASE(SET(service, NULL), -STORE_EINVALID, "service: invalid name");
	FIELD_CASE(SET(runtime, "docker"), -STORE_EINVALID, "runtime: unknown runtime \"docker\"");
	FIELD_CASE(SET(version, "1\x1b]0;pwned\x07"), -STORE_EINVALID,
		   "version: control character in \"1\\x1b]0;pwned\\x07\"");
	FIELD_CASE(SET(exec_command, "bin/web\targ"), 0, "");
	FIELD_CASE(SET(exec_command, "bin/web\narg"), -STORE_EINVALID,
		   "exec command: control character");
	FIELD_CASE(SET(exec_command, "../../bin/sh -c x"), -STORE_EINVALID,
		   "exec command: invalid program path");
	FIELD_CASE(SET(exec_command, NULL), -STORE_EINVALID, "exec command: missing");
	FIELD_CASE(SET(systemd_unit, "web.service"), -STORE_EINVALID,
		   "runtime exec: fields of another runtime set");
	FIELD_CASE((SET(runtime, "systemd"), SET(exec_command, NULL), SET(systemd_unit, "/etc/x.service")),
		   -STORE_EINVALID, "systemd unit: invalid \"/etc/x.service\"");
	FIELD_CASE((SET(runtime, "container"), SET(exec_command, NULL), SET(container_archive, "../i.tar")),
		   -STORE_EINVALID, "container archive: \"..\" in path: \"../i.tar\"");
	FIELD_CASE(SET(git_message, "line\n\ttab\r\n"), 0, "");
	FIELD_CASE(SET(git_message, "esc \x1b[31m"), -STORE_EINVALID,
		   "git message: control character");
	FIELD_CASE(SET(git_author, "A \xff <a@b>"), -STORE_EINVALID, "git author: invalid UTF-8");
	FIELD_CASE((SET(health.http, "http://h/"), SET(health.tcp, "h:1")), -STORE_EINVALID,
		   "health: only one of http, tcp, exec may be set");
	FIELD_CASE(SET(health.http, "ftp://x"), -STORE_EINVALID, "health http: invalid URL");
	FIELD_CASE(SET(health.tcp, "x"), -STORE_EINVALID, "health tcp: invalid address \"x\"");
	FIELD_CASE(m.health.failures = 1001, -STORE_EINVALID, "health failures: 1001, over 1000");
	FIELD_CASE(m.endpoint.weight = 100, -STORE_EINVALID, "endpoint: fields set without a port");
	FIELD_CASE((m.endpoint.port = 80, m.endpoint.weight = 257), -STORE_EINVALID,
		   "endpoint weight: 257, over 256");
	FIELD_CASE((m.endpoint.port = 80, m.endpoint.protocol = 7), -STORE_EINVALID,
		   "endpoint protocol: unknown (7)");
	FIELD_CASE((m.endpoint.port = 80, m.endpoint.drain_ms = 600001), -STORE_EINVALID,
		   "endpoint drain: 600001ms, over 600000ms");
	FIELD_CASE((m.endpoint.port = 80, SET(endpoint.address, "example.org")), -STORE_EINVALID,
		   "endpoint address: \"example.org\" is not an IPv4 or IPv6 address");
	FIELD_CASE((m.endpoint.port = 80, SET(endpoint.address, "[::1]")), -STORE_EINVALID,
		   "is not an IPv4 or IPv6 address");
	FIELD_CASE((m.endpoint.port = 80, SET(endpoint.address, "10.0.0.5")), 0, "");
	FIELD_CASE(m.recovery.restarts = 101, -STORE_EINVALID, "recovery restarts: 101, over 100");
	FIELD_CASE(m.files[0].mode = 0777, -STORE_EINVALID, "\"bin/web\": invalid mode 777");
	FIELD_CASE((m.files[0].mode = 0120000, m.files[0].size = 4097), -STORE_EINVALID,
		   "\"bin/web\": symlink target of 4097 bytes");
#undef FIELD_CASE
#undef SET
	/* NULL manifest; NULL err is fine. */
	assert_int_equal(store_manifest_validate(NULL, NULL, NULL, err, sizeof err), -EINVAL);
	mk(&m, base_files, 2);
	assert_int_equal(store_manifest_validate(&m, NULL, NULL, NULL, 0), 0);
	/* A short buffer still ends in NUL. */
	free(m.service);
	m.service = strdup("..");
	memset(err, 'x', sizeof err);
	assert_int_equal(store_manifest_validate(&m, NULL, NULL, err, 8), -STORE_EINVALID);
	assert_int_equal(strlen(err), 7);
	store_manifest_release(&m);
}

static void test_limits(void **state)
{
	char err[512];
	struct store_manifest m;
	(void)state;
	mk(&m, base_files, 2);
	struct store_import_limits lim = { .max_files = 1 };
	assert_rc_msg(store_manifest_validate(&m, NULL, &lim, err, sizeof err), -STORE_ETOOBIG, err,
		      "release.ini: over the limit of 1 files");
	lim = (struct store_import_limits){ .max_file_size = 99 };
	assert_rc_msg(store_manifest_validate(&m, NULL, &lim, err, sizeof err), -STORE_ETOOBIG, err,
		      "bin/web: 100 bytes, over the file size limit of 99 bytes");
	lim = (struct store_import_limits){ .max_total_size = 159 };
	assert_rc_msg(store_manifest_validate(&m, NULL, &lim, err, sizeof err), -STORE_ETOOBIG, err,
		      "release.ini: total size over the limit of 159 bytes");
	lim = (struct store_import_limits){ .max_total_size = 160, .max_files = 2,
					    .max_file_size = 100 };
	assert_int_equal(store_manifest_validate(&m, NULL, &lim, err, sizeof err), 0);
	/* NULL: the defaults (a peer claiming a 2 GiB file is refused before any byte moves). */
	m.files[0].size = STORE_IMPORT_MAX_FILE_SIZE + 1;
	assert_int_equal(store_manifest_validate(&m, NULL, NULL, err, sizeof err), -STORE_ETOOBIG);
	store_manifest_release(&m);
}

/* ---- the commit gate, against a real store ------------------------------------------------------ */

struct fx {
	char path[256];
	struct store *s;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->path, sizeof f->path, "/tmp/shoal-test-validate-XXXXXX");
	assert_non_null(mkdtemp(f->path));
	struct store_opts o = { .path = f->path, .nosync = true };
	assert_int_equal(store_open(&o, &f->s), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->s);
	tu_rm_rf(f->path);
	free(f);
	return 0;
}

struct entry {
	const char *path;
	uint32_t mode;
	const char *data;
};

/* Stream @n entries as a fetch does (the manifest's order), commit with a valid manifest. */
static int import(struct fx *f, const struct entry *e, size_t n, const struct store_import_limits *lim)
{
	struct store_import *imp;
	struct store_manifest m;
	int r = store_import_begin(f->s, &imp);
	if (r < 0)
		return r;
	if (lim)
		assert_int_equal(store_import_set_limits(imp, lim), 0);
	for (size_t i = 0; i < n; i++) {
		if ((r = store_import_file(imp, e[i].path, e[i].mode)) < 0 ||
		    (r = store_import_write(imp, e[i].data, strlen(e[i].data))) < 0 ||
		    (r = store_import_file_end(imp)) < 0) {
			store_import_abort(imp);
			return r;
		}
	}
	mk(&m, NULL, 0);
	r = store_import_commit(imp, &m, 1, NULL);
	store_manifest_release(&m);
	return r;
}

static void test_commit_gate(void **state)
{
	struct fx *f = *state;
	static const struct {
		struct entry e[3];
		size_t n;
		int code;
	} t[] = {
		{ { { "bin/web", 0755, "x" }, { "shadow", 0120000, "/etc/shadow" } }, 2, -STORE_EESCAPE },
		{ { { "bin/web", 0755, "x" }, { "up", 0120000, "../../.." } }, 2, -STORE_EESCAPE },
		{ { { "bin/web", 0755, "x" }, { "/etc/cron.d/x", 0644, "x" } }, 2, -STORE_EBADPATH },
		{ { { "bin/web", 0755, "x" }, { "a\nb", 0644, "x" } }, 2, -STORE_EBADPATH },
		{ { { "bin/web", 0755, "x" }, { "\x1b[2J", 0644, "x" } }, 2, -STORE_EBADPATH },
		{ { { "bin/web", 0755, "x" }, { "l", 0120000, "bin/w\neb" } }, 2, -STORE_EBADPATH },
		/* a symlink "etc" (even one pointing inside) with a file "etc/passwd" under it:
		 * materializing would write through the link */
		{ { { "etc", 0120000, "sub" }, { "etc/passwd", 0644, "x" }, { "bin/web", 0755, "x" } },
		  3, -STORE_EBADPATH },
	};
	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		int r = import(f, t[i].e, t[i].n, NULL);
		if (r != t[i].code)
			fail_msg("case %zu: got %d (%s), want %d", i, r, store_strerror(r), t[i].code);
	}
	struct store_stats st;
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nartifacts, 0);
	assert_int_equal(st.nchunks, 0);

	/* The import's limits are the ones set; unset means the defaults. */
	struct entry ok[] = { { "bin/web", 0755, "0123456789" }, { "cur", 0120000, "bin/web" } };
	struct store_import_limits lim = { .max_file_size = 9 };
	assert_int_equal(import(f, ok, 2, &lim), -STORE_ETOOBIG);
	assert_int_equal(import(f, ok, 2, NULL), 0);
	assert_int_equal(store_stats(f->s, &st), 0);
	assert_int_equal(st.nartifacts, 1);
	assert_int_equal(store_import_set_limits(NULL, NULL), -EINVAL);
}

/* ---- materialize checks again -------------------------------------------------------------------- */

struct forge {
	struct store_id id;
	uint8_t *buf;
	size_t len;
};

static int put_manifest(MDB_txn *txn, MDB_dbi dbi, void *ud)
{
	struct forge *fg = ud;
	MDB_val k = { STORE_ID_LEN, fg->id.b }, v = { fg->len, fg->buf };
	return mdb_put(txn, dbi, &k, &v, 0);
}

/*
 * A store whose manifest record was replaced (a forged or damaged file, or a bug that let one
 * through): its symlink now uses a blob holding "/etc/shadow". The manifest alone is valid, so
 * only the targets show it; materialize must refuse before writing anything.
 */
static void test_materialize_forged(void **state)
{
	struct fx *f = *state;
	struct entry a[] = { { "bin/web", 0755, "x" }, { "l", 0120000, "bin/web" } };
	struct entry b[] = { { "bin/web", 0755, "/etc/shadow" } };
	struct store_import *imp;
	struct store_manifest m;
	struct store_id ida, idb;

	assert_int_equal(store_import_begin(f->s, &imp), 0);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(store_import_file(imp, a[i].path, a[i].mode), 0);
		assert_int_equal(store_import_write(imp, a[i].data, strlen(a[i].data)), 0);
		assert_int_equal(store_import_file_end(imp), 0);
	}
	mk(&m, NULL, 0);
	assert_int_equal(store_import_commit(imp, &m, 1, &ida), 0);
	store_manifest_release(&m);
	assert_int_equal(store_import_begin(f->s, &imp), 0);
	assert_int_equal(store_import_file(imp, b[0].path, b[0].mode), 0);
	assert_int_equal(store_import_write(imp, b[0].data, strlen(b[0].data)), 0);
	assert_int_equal(store_import_file_end(imp), 0);
	mk(&m, NULL, 0);
	free(m.version);
	m.version = strdup("2");
	assert_int_equal(store_import_commit(imp, &m, 1, &idb), 0);
	store_manifest_release(&m);

	struct store_artifact_info ia, ib;
	assert_int_equal(store_artifact_get(f->s, &ida, &ia), 0);
	assert_int_equal(store_artifact_get(f->s, &idb, &ib), 0);
	ia.manifest.files[1].blob = ib.manifest.files[0].blob;
	ia.manifest.files[1].size = ib.manifest.files[0].size;
	struct forge fg = { .id = ida };
	assert_int_equal(store_manifest_encode(&ia.manifest, &fg.buf, &fg.len), 0);
	store_artifact_info_release(&ia);
	store_artifact_info_release(&ib);

	char dir[512];
	snprintf(dir, sizeof dir, "%s/out", f->path);
	assert_int_equal(store_artifact_materialize(f->s, &ida, dir), 0); /* before: fine */
	tu_rm_rf(dir);
	store_close(f->s);
	assert_int_equal(tu_raw(f->path, "artifacts", put_manifest, &fg), 0);
	free(fg.buf);
	struct store_opts o = { .path = f->path, .nosync = true };
	assert_int_equal(store_open(&o, &f->s), 0);
	assert_int_equal(store_artifact_materialize(f->s, &ida, dir), -STORE_EESCAPE);
	struct stat st;
	assert_int_equal(lstat(dir, &st), -1); /* nothing at all */
	assert_int_equal(store_artifact_materialize(f->s, &idb, dir), 0);
}

/* ---- the seed corpora say what they are ---------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *buf = malloc((1 << 20) + 1);
	*len = fread(buf, 1, 1 << 20, fp);
	buf[*len] = '\0'; /* the last symlink target of a validate seed ends here */
	fclose(fp);
	return buf;
}

/* Names starting with "bad_", "format" or "truncated" must be refused, the others accepted: the
 * corpora are generated (tests/fuzz/gen_store_corpus.py), so a seed that stopped testing what
 * its name says would go unnoticed otherwise. */
static void test_corpus_names(void **state)
{
	const char *src = getenv("SHOAL_SOURCE_DIR");
	char dir[512];
	(void)state;
	if (!src)
		skip();
	snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/store_manifest", src);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	int seen = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[1024];
		size_t len;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		char *buf = slurp(p, &len);
		struct store_manifest m;
		int r = store_manifest_decode((const uint8_t *)buf, len, &m);
		bool bad = !strncmp(de->d_name, "bad_", 4) || !strncmp(de->d_name, "format", 6) ||
			   !strncmp(de->d_name, "truncated", 9);
		if (bad == (r == 0))
			fail_msg("corpus store_manifest/%s: decode %d", de->d_name, r);
		if (r == 0)
			store_manifest_release(&m);
		free(buf);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 20);

	/* store_validate: hostile_* refused (by decode or by validation), good_* accepted. */
	snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/store_validate", src);
	d = opendir(dir);
	assert_non_null(d);
	seen = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[1024];
		size_t len;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		char *buf = slurp(p, &len);
		assert_true(len >= 4);
		size_t n = (uint8_t)buf[0] | (size_t)(uint8_t)buf[1] << 8;
		struct store_manifest m;
		int r = store_manifest_decode((const uint8_t *)buf + 4, n, &m);
		if (r == 0) {
			const char **targets = calloc(m.nfiles, sizeof *targets);
			char *t = buf + 4 + n, *end = buf + len;
			for (size_t i = 0; i < m.nfiles; i++) {
				if (m.files[i].mode != 0120000 || t >= end)
					continue;
				targets[i] = t;
				t += strnlen(t, (size_t)(end - t)) + 1;
			}
			r = store_manifest_validate(&m, targets, NULL, NULL, 0);
			free(targets);
			store_manifest_release(&m);
		}
		bool hostile = !strncmp(de->d_name, "hostile_", 8);
		if (hostile == (r == 0))
			fail_msg("corpus store_validate/%s: %d", de->d_name, r);
		free(buf);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 10);

	/* store_release: valid_*.ini parse, bad_*.ini are refused with a message. */
	snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/store_release", src);
	d = opendir(dir);
	assert_non_null(d);
	seen = 0;
	while ((de = readdir(d))) {
		bool valid = !strncmp(de->d_name, "valid_", 6), bad = !strncmp(de->d_name, "bad_", 4);
		if (!valid && !bad)
			continue;
		char p[1024], err[256];
		size_t len;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		char *buf = slurp(p, &len);
		struct store_manifest m;
		int r = store_release_parse(buf, len, "release.ini", &m, err, sizeof err);
		if (valid != (r == 0))
			fail_msg("corpus store_release/%s: %d \"%s\"", de->d_name, r, err);
		if (r == 0)
			store_manifest_release(&m);
		free(buf);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_msgpack),
		cmocka_unit_test(test_decode_peer_bytes),
		cmocka_unit_test(test_refused_paths),
		cmocka_unit_test(test_refused_links),
		cmocka_unit_test(test_refused_fields),
		cmocka_unit_test(test_limits),
		cmocka_unit_test_setup_teardown(test_commit_gate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_materialize_forged, setup, teardown),
		cmocka_unit_test(test_corpus_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
