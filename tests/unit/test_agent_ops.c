/*
 * In-process tests of the control operations (agent/daemon/ops.c) over a real store: every op is
 * called through the table agentd serves, with requests and responses going through the real
 * codec. Covers what the integration tests cannot reach yet: history over revisions written
 * directly into the store (no deploys exist in this version), and the error mapping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/daemon/agent.h"
#include "agent/daemon/hook.h"
#include "agent/fleet/fleet.h"
#include "agent/ctl/ctl_proto.h"
#include "store/import.h"

static char dir[64];
static struct agent ag;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static int setup(void **state)
{
	char path[256];
	snprintf(dir, sizeof dir, "/tmp/shoal-agent-ops-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	char *argv[] = {"agentd", "--config", "/dev/null", "--state-dir", dir, "--node-name",
			"ops-test", "--label", "site=x", NULL};
	char err[256];
	memset(&ag, 0, sizeof ag);
	if (agent_config_load(9, argv, &ag.cfg, err, sizeof err) != AGENT_CONFIG_RUN) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	snprintf(path, sizeof path, "%s/store", dir);
	struct store_opts so = {.path = path, .nosync = true};
	if (store_open(&so, &ag.store) < 0)
		return -1;
	if (store_node_id(ag.store, ag.node_id) < 0)
		return -1;
	snprintf(ag.node_id_hex, sizeof ag.node_id_hex, "00");
	ag.start_ns = uv_hrtime();

	snprintf(path, sizeof path, "%s/web", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/web/release.ini", dir);
	write_file(path, "[release]\nservice = web\nruntime = exec\nversion = 7\n[exec]\ncommand = "
			 "./run\n", 0644);
	snprintf(path, sizeof path, "%s/web/run", dir);
	write_file(path, "#!/bin/sh\nsleep 100\n", 0755);
	snprintf(path, sizeof path, "%s/bad", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/bad/release.ini", dir);
	write_file(path, "[release]\nruntime = exec\n", 0644);
	return 0;
}

static int teardown(void **state)
{
	store_close(ag.store);
	agent_config_release(&ag.cfg);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* One call: request {op, args: {k: v, ...}} (string args), response decoded into @resp. */
struct call {
	struct ctl_enc req_enc, out;
	struct ctl_request req;
	struct ctl_response resp;
};

static void call_op(struct call *c, const char *op, int nargs, ...)
{
	const uint8_t *buf;
	size_t len;
	memset(c, 0, sizeof *c);
	ctl_enc_init(&c->req_enc);
	ctl_enc_request(&c->req_enc, op, nargs > 0);
	if (nargs > 0) {
		va_list ap;
		va_start(ap, nargs);
		ctl_enc_map(&c->req_enc, (uint32_t)nargs);
		for (int i = 0; i < nargs; i++) {
			ctl_enc_str(&c->req_enc, va_arg(ap, const char *));
			ctl_enc_str(&c->req_enc, va_arg(ap, const char *));
		}
		va_end(ap);
	}
	assert_int_equal(ctl_enc_finish(&c->req_enc, &buf, &len), 0);
	assert_int_equal(ctl_request_decode(buf + 4, len - 4, &c->req, NULL, 0), 0);

	size_t nops;
	const struct ctl_op *ops = agent_ctl_ops(&nops), *found = NULL;
	for (size_t i = 0; i < nops; i++)
		if (strcmp(ops[i].name, op) == 0)
			found = &ops[i];
	if (!found)
		fail_msg("op %s not served", op);
	struct ctl_peer peer = {.known = true, .uid = 4242, .gid = 7, .pid = 99, .conn_id = 1};
	ctl_enc_init(&c->out);
	found->fn(&ag, &c->req, &peer, &c->out);
	assert_int_equal(ctl_enc_finish(&c->out, &buf, &len), 0);
	assert_int_equal(ctl_response_decode(buf + 4, len - 4, &c->resp), 0);
}

static void call_free(struct call *c)
{
	ctl_response_release(&c->resp);
	ctl_request_release(&c->req);
	ctl_enc_release(&c->out);
	ctl_enc_release(&c->req_enc);
}

static void expect_ok(struct call *c)
{
	if (!c->resp.ok)
		fail_msg("%s failed: %s (%s)", c->req.op, c->resp.error, c->resp.message);
}

static void expect_err(struct call *c, const char *name)
{
	if (c->resp.ok)
		fail_msg("%s: ok, want error %s", c->req.op, name);
	if (strcmp(c->resp.error, name) != 0)
		fail_msg("%s: error %s (%s), want %s", c->req.op, c->resp.error, c->resp.message,
			 name);
}

static uint64_t u(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = ctl_map_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		fail_msg("field %s missing or not an unsigned integer", key);
	return o->via.u64;
}

static char web_id[STORE_ID_HEXLEN + 1];

static void test_import_list_show(void **state)
{
	struct call c;
	char path[256];
	snprintf(path, sizeof path, "%s/web", dir);
	call_op(&c, "artifact.import", 1, "dir", path);
	expect_ok(&c);
	const msgpack_object *r = c.resp.result;
	assert_true(ctl_obj_streq(ctl_map_get(r, "service"), "web"));
	assert_true(ctl_obj_streq(ctl_map_get(r, "version"), "7"));
	const msgpack_object *isnew = ctl_map_get(r, "new");
	assert_true(isnew && isnew->type == MSGPACK_OBJECT_BOOLEAN && isnew->via.boolean);
	assert_int_equal(u(ctl_map_get(r, "imported_by"), "uid"), 4242);
	assert_int_equal(u(r, "files"), 2);
	const msgpack_object *id = ctl_map_get(r, "id");
	assert_true(id && id->type == MSGPACK_OBJECT_STR && id->via.str.size == STORE_ID_HEXLEN);
	memcpy(web_id, id->via.str.ptr, STORE_ID_HEXLEN);
	call_free(&c);

	call_op(&c, "artifact.import", 1, "dir", path);
	expect_ok(&c);
	isnew = ctl_map_get(c.resp.result, "new");
	assert_false(isnew->via.boolean);
	assert_true(ctl_obj_streq(ctl_map_get(c.resp.result, "id"), web_id));
	call_free(&c);

	call_op(&c, "artifact.list", 0);
	expect_ok(&c);
	assert_int_equal(c.resp.result->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(c.resp.result->via.array.size, 1);
	assert_true(ctl_obj_streq(ctl_map_get(&c.resp.result->via.array.ptr[0], "id"), web_id));
	call_free(&c);
	call_op(&c, "artifact.list", 1, "service", "other");
	expect_ok(&c);
	assert_int_equal(c.resp.result->via.array.size, 0);
	call_free(&c);
	call_op(&c, "artifact.list", 1, "service", "no/such");
	expect_err(&c, "bad_request");
	call_free(&c);

	char prefix[9];
	memcpy(prefix, web_id, 8);
	prefix[8] = 0;
	call_op(&c, "artifact.show", 1, "id", prefix);
	expect_ok(&c);
	r = c.resp.result;
	assert_true(ctl_obj_streq(ctl_map_get(r, "id"), web_id));
	assert_true(ctl_obj_streq(ctl_map_get(ctl_map_get(r, "exec"), "command"), "./run"));
	const msgpack_object *files = ctl_map_get(r, "file_list");
	assert_true(files && files->type == MSGPACK_OBJECT_ARRAY && files->via.array.size == 2);
	assert_true(ctl_obj_streq(ctl_map_get(&files->via.array.ptr[0], "path"), "release.ini"));
	assert_int_equal(u(&files->via.array.ptr[1], "mode"), 0755);
	assert_int_equal(ctl_map_get(r, "git")->type, MSGPACK_OBJECT_NIL);
	call_free(&c);

	/* A prefix that is not the artifact's: not found. */
	char other[9];
	snprintf(other, sizeof other, "%s", web_id[0] == '0' ? "11111111" : "00000000");
	call_op(&c, "artifact.show", 1, "id", other);
	expect_err(&c, "not_found");
	call_free(&c);
	call_op(&c, "artifact.show", 1, "id", "abc");
	expect_err(&c, "bad_request");
	call_free(&c);
}

static void test_import_errors(void **state)
{
	struct call c;
	char path[256];
	snprintf(path, sizeof path, "%s/bad", dir);
	call_op(&c, "artifact.import", 1, "dir", path);
	expect_err(&c, "invalid_artifact");
	assert_true(strlen(c.resp.message) > 0);
	call_free(&c);
	call_op(&c, "artifact.import", 1, "dir", "web");
	expect_err(&c, "bad_request");
	call_free(&c);
	call_op(&c, "artifact.import", 0);
	expect_err(&c, "bad_request");
	call_free(&c);
	call_op(&c, "artifact.import_git", 2, "repo", dir, "ref", "v1");
	expect_err(&c, "not_a_repo");
	call_free(&c);
	call_op(&c, "artifact.import_git", 1, "repo", dir);
	expect_err(&c, "bad_request");
	call_free(&c);
}

static void test_history(void **state)
{
	struct call c;
	call_op(&c, "history", 1, "service", "web");
	expect_ok(&c);
	assert_int_equal(c.resp.result->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(c.resp.result->via.array.size, 0);
	call_free(&c);

	/* Revisions as the reconciler will write them. */
	for (uint64_t rev = 1; rev <= 3; rev++) {
		struct store_revision r;
		memset(&r, 0, sizeof r);
		snprintf(r.service, sizeof r.service, "web");
		r.rev = rev;
		assert_int_equal(store_id_parse(web_id, &r.artifact), 0);
		r.kind = rev == 3 ? STORE_REV_ROLLBACK : STORE_REV_DEPLOY;
		memcpy(r.origin, ag.node_id, sizeof r.origin);
		r.hlc = (1000 + rev) << 16;
		r.operator_uid = rev == 3 ? UINT32_MAX : 1000 + (uint32_t)rev;
		r.operator_pid = 55;
		snprintf(r.reason, sizeof r.reason, "reason %llu", (unsigned long long)rev);
		int e = store_revision_put(ag.store, &r);
		if (e < 0)
			fail_msg("store_revision_put rev %llu: %s", (unsigned long long)rev,
				 store_strerror(e));
	}
	call_op(&c, "history", 1, "service", "web");
	expect_ok(&c);
	const msgpack_object *a = c.resp.result;
	assert_int_equal(a->via.array.size, 3);
	assert_int_equal(u(&a->via.array.ptr[0], "rev"), 3); /* newest first */
	assert_true(ctl_obj_streq(ctl_map_get(&a->via.array.ptr[0], "kind"), "rollback"));
	assert_int_equal(ctl_map_get(&a->via.array.ptr[0], "operator")->type, MSGPACK_OBJECT_NIL);
	assert_int_equal(u(&a->via.array.ptr[2], "rev"), 1);
	assert_true(ctl_obj_streq(ctl_map_get(&a->via.array.ptr[2], "kind"), "deploy"));
	assert_int_equal(u(ctl_map_get(&a->via.array.ptr[2], "operator"), "uid"), 1001);
	assert_true(ctl_obj_streq(ctl_map_get(&a->via.array.ptr[1], "reason"), "reason 2"));
	assert_true(ctl_obj_streq(ctl_map_get(&a->via.array.ptr[1], "artifact"), web_id));
	assert_true(ctl_obj_streq(ctl_map_get(&a->via.array.ptr[1], "scope"), "cluster"));
	call_free(&c);

	/* limit, given as an integer. */
	struct ctl_enc e;
	const uint8_t *buf;
	size_t len;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "history", true);
	ctl_enc_map(&e, 2);
	ctl_enc_str(&e, "service");
	ctl_enc_str(&e, "web");
	ctl_enc_str(&e, "limit");
	ctl_enc_uint(&e, 2);
	assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
	memset(&c, 0, sizeof c);
	assert_int_equal(ctl_request_decode(buf + 4, len - 4, &c.req, NULL, 0), 0);
	size_t nops;
	const struct ctl_op *ops = agent_ctl_ops(&nops);
	struct ctl_peer peer = {0};
	for (size_t i = 0; i < nops; i++)
		if (strcmp(ops[i].name, "history") == 0) {
			ctl_enc_init(&c.out);
			ops[i].fn(&ag, &c.req, &peer, &c.out);
		}
	const uint8_t *ob;
	size_t ol;
	assert_int_equal(ctl_enc_finish(&c.out, &ob, &ol), 0);
	assert_int_equal(ctl_response_decode(ob + 4, ol - 4, &c.resp), 0);
	expect_ok(&c);
	assert_int_equal(c.resp.result->via.array.size, 2);
	call_free(&c);
	ctl_enc_release(&e);

	call_op(&c, "status", 0);
	expect_ok(&c);
	const msgpack_object *counts = ctl_map_get(c.resp.result, "counts");
	assert_int_equal(u(counts, "revisions"), 3);
	assert_int_equal(u(counts, "services"), 1);
	assert_int_equal(u(counts, "artifacts"), 1);
	assert_true(ctl_obj_streq(ctl_map_get(c.resp.result, "name"), "ops-test"));
	const msgpack_object *labels = ctl_map_get(c.resp.result, "labels");
	assert_true(labels && labels->type == MSGPACK_OBJECT_ARRAY && labels->via.array.size == 1);
	call_free(&c);

	call_op(&c, "history", 0);
	expect_err(&c, "bad_request");
	call_free(&c);
}

static void test_error_mapping(void **state)
{
	static const struct {
		int err;
		const char *name;
	} map[] = {
		{-STORE_EINVALID, "invalid_artifact"}, {-STORE_ENOTREPO, "not_a_repo"},
		{-STORE_ENOREF, "no_such_ref"},	       {-STORE_ETOOBIG, "too_big"},
		{-STORE_EESCAPE, "escapes_tree"},      {-ENOSPC, "no_space"},
		{-ENOENT, "not_found"},		       {-ENOTDIR, "not_found"},
		{-EEXIST, "ambiguous"},		       {-EACCES, "permission_denied"},
		{-EIO, "internal"},		       {-STORE_ECORRUPT, "internal"},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		const char *got = ctl_err_name(agent_ctl_err_from_errno(map[i].err));
		if (strcmp(got, map[i].name) != 0)
			fail_msg("error %d (%s): %s, want %s", map[i].err,
				 store_strerror(map[i].err), got, map[i].name);
	}
}

/* The event hook's stdin: one JSON object, every field, strings escaped. */
static void test_hook_json(void **state)
{
	(void)state;
	struct fleet_event e = {
		.seq = 7, .wall_ms = 1796556600123ull, .kind = "decision", .service = "web",
		.rev = 3, .node = "n1", .text = "a \"quoted\" \\ text\nwith a tab\t",
	};
	char *j = hook_event_json(&e);
	assert_non_null(j);
	assert_string_equal(j, "{\"seq\":7,\"time\":\"2026-12-06T11:30:00.123Z\","
			       "\"time_ms\":1796556600123,\"kind\":\"decision\",\"service\":"
			       "\"web\",\"rev\":3,\"node\":\"n1\",\"text\":\"a \\\"quoted\\\" "
			       "\\\\ text\\u000awith a tab\\u0009\"}");
	free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_list_show),
		cmocka_unit_test(test_import_errors),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_error_mapping),
		cmocka_unit_test(test_hook_json),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
