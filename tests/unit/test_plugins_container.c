/*
 * Unit tests of plugins/container.c for what a healthy Podman never does (the happy paths run
 * against a real Podman in tests/system/test_container_plugin.sh): garbage and error answers,
 * an engine that ignores label filters, names held by foreign containers, broken image loads,
 * and closing with work in flight. The engine here is a scripted HTTP server on a real unix
 * socket in the same loop; every request it gets is recorded and checked.
 * Also the pure inspect -> plugin_status mapping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "plugins/http.h"
#include "plugins/plugin.h"

int plugin__container_map_inspect(const char *body, size_t len, struct plugin_status *st);

/* ---- inspect mapping ----------------------------------------------------------------------- */

static int map(const char *json, struct plugin_status *st)
{
	return plugin__container_map_inspect(json, strlen(json), st);
}

static void test_map_inspect(void **state)
{
	struct plugin_status st;
	assert_int_equal(map("{\"State\":{\"Status\":\"running\",\"Running\":true,\"Pid\":42,"
			     "\"ExitCode\":0,\"StartedAt\":\"2026-01-01T00:00:00Z\"},\"RestartCount\":1,"
			     "\"Config\":{\"Labels\":{\"io.shoal.rev\":\"7\"}}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_RUNNING);
	assert_int_equal(st.rev, 7);
	assert_int_equal(st.pid, 42);
	assert_int_equal(st.restarts, 1);
	assert_int_equal(st.exit_status, -1);
	assert_non_null(strstr(st.detail, "2026-01-01T00:00:00Z"));

	assert_int_equal(map("{\"State\":{\"Status\":\"exited\",\"ExitCode\":0}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	assert_int_equal(st.exit_status, 0);
	assert_int_equal(st.rev, 0);

	assert_int_equal(map("{\"State\":{\"Status\":\"exited\",\"ExitCode\":3},\"RestartCount\":3,"
			     "\"HostConfig\":{\"RestartPolicy\":{\"Name\":\"on-failure\","
			     "\"MaximumRetryCount\":3}}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_FAILED);
	assert_int_equal(st.exit_status, 3);
	assert_int_equal(st.restarts, 3);

	/* podman's transient "stopped" with retries left: a restart is coming */
	assert_int_equal(map("{\"State\":{\"Status\":\"stopped\",\"ExitCode\":3},\"RestartCount\":1,"
			     "\"HostConfig\":{\"RestartPolicy\":{\"Name\":\"on-failure\","
			     "\"MaximumRetryCount\":3}}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_RESTARTING);
	assert_int_equal(st.exit_status, 3);
	/* ... and without retries left it is final */
	assert_int_equal(map("{\"State\":{\"Status\":\"stopped\",\"ExitCode\":3},\"RestartCount\":3,"
			     "\"HostConfig\":{\"RestartPolicy\":{\"Name\":\"on-failure\","
			     "\"MaximumRetryCount\":3}}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_FAILED);

	assert_int_equal(map("{\"State\":{\"Status\":\"restarting\",\"Restarting\":true}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_RESTARTING);
	assert_int_equal(map("{\"State\":{\"Status\":\"created\"}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_STARTING);
	assert_int_equal(map("{\"State\":{\"Status\":\"created\",\"Error\":\"exec: no such file\"}}",
			     &st), 0);
	assert_int_equal(st.state, PLUGIN_FAILED);
	assert_non_null(strstr(st.detail, "no such file"));
	assert_int_equal(map("{\"State\":{\"Status\":\"paused\"}}", &st), 0);
	assert_int_equal(st.state, PLUGIN_RUNNING);

	/* garbage: an error, never a guess */
	assert_int_equal(map("", &st), -EBADMSG);
	assert_int_equal(map("{\"State\":{}}", &st), -EBADMSG);
	assert_int_equal(map("{\"State\":{\"Status\":5}}", &st), -EBADMSG);
	assert_int_equal(map("[]", &st), -EBADMSG);
	assert_int_equal(map("{\"State\":{\"Status\":\"running\"", &st), -EBADMSG);
}

/* ---- scripted engine ---------------------------------------------------------------------- */

struct route {
	const char *method;
	const char *prefix;	/* of the target */
	int status;		/* 0: never answer */
	const char *body;
};

struct engine;

struct conn {
	uv_pipe_t pipe;
	struct engine *e;
	char req[65536];
	size_t len;
	bool answered;
	uv_write_t w;
	char *resp;
};

#define MAX_LOG 128

struct engine {
	uv_loop_t *loop;
	uv_pipe_t server;
	char dir[64], path[108];
	const struct route *routes;
	char *log[MAX_LOG];	/* "METHOD target" of every request */
	int nlog;
};

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	free(c->resp);
	free(c);
}

static void conn_wrote(uv_write_t *w, int status)
{
	struct conn *c = w->data;
	uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct conn *c = h->data;
	*b = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - 1 - c->len));
}

static void conn_answer(struct conn *c)
{
	struct engine *e = c->e;
	char method[16] = "", tgt[2048] = "";
	sscanf(c->req, "%15s %2047s", method, tgt);
	if (e->nlog < MAX_LOG) {
		e->log[e->nlog] = malloc(strlen(method) + strlen(tgt) + 2);
		sprintf(e->log[e->nlog++], "%s %s", method, tgt);
	}
	c->answered = true;
	for (const struct route *r = e->routes; r->method; r++) {
		if (strcmp(r->method, method) || strncmp(tgt, r->prefix, strlen(r->prefix)))
			continue;
		if (r->status == 0)
			return; /* silent */
		size_t n = strlen(r->body) + 256;
		c->resp = malloc(n);
		int len = snprintf(c->resp, n, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
					       "Content-Length: %zu\r\n\r\n%s", r->status,
				   strlen(r->body), r->body);
		uv_buf_t b = uv_buf_init(c->resp, (unsigned)len);
		c->w.data = c;
		uv_write(&c->w, (uv_stream_t *)&c->pipe, &b, 1, conn_wrote);
		return;
	}
	fail_msg("engine: no route for %s %s", method, tgt);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (n < 0) {
		if (!uv_is_closing((uv_handle_t *)&c->pipe))
			uv_close((uv_handle_t *)&c->pipe, conn_closed);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	char *e = strstr(c->req, "\r\n\r\n");
	if (c->answered || !e)
		return;
	char *cl = strstr(c->req, "Content-Length: ");
	size_t body = cl && cl < e ? strtoul(cl + 16, NULL, 10) : 0;
	if (c->len >= (size_t)(e + 4 - c->req) + body || c->len >= sizeof c->req - 1)
		conn_answer(c);
}

static void engine_conn(uv_stream_t *server, int status)
{
	struct engine *e = server->data;
	struct conn *c = calloc(1, sizeof *c);
	assert_non_null(c);
	c->e = e;
	uv_pipe_init(e->loop, &c->pipe, 0);
	c->pipe.data = c;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&c->pipe), 0);
	uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_read);
}

static void engine_start(struct engine *e, uv_loop_t *loop, const struct route *routes)
{
	memset(e, 0, sizeof *e);
	e->loop = loop;
	e->routes = routes;
	snprintf(e->dir, sizeof e->dir, "/tmp/shoal-ctu-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof e->path, "%s/engine.sock", e->dir);
	uv_pipe_init(loop, &e->server, 0);
	e->server.data = e;
	assert_int_equal(uv_pipe_bind(&e->server, e->path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&e->server, 16, engine_conn), 0);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, h->type == UV_NAMED_PIPE && h->data != arg ? conn_closed : NULL);
}

static void engine_stop(struct engine *e)
{
	uv_walk(e->loop, close_walk, e); /* the server and any connection left open */
	uv_run(e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(e->loop), 0);
	for (int i = 0; i < e->nlog; i++)
		free(e->log[i]);
	unlink(e->path);
	rmdir(e->dir);
}

/* Did the engine get a request whose "METHOD target" contains @s? */
static bool logged(const struct engine *e, const char *s)
{
	for (int i = 0; i < e->nlog; i++)
		if (strstr(e->log[i], s))
			return true;
	return false;
}

static void dump_log(const struct engine *e)
{
	for (int i = 0; i < e->nlog; i++)
		fprintf(stderr, "  engine got: %s\n", e->log[i]);
}

/* ---- plugin helpers ------------------------------------------------------------------------ */

struct done {
	int calls, status;
	struct plugin_status st;
};

static void done_cb(struct plugin *p, const char *service, int status, void *ud)
{
	struct done *d = ud;
	d->calls++;
	d->status = status;
}

static void status_cb(struct plugin *p, const char *service, int status,
		      const struct plugin_status *st, void *ud)
{
	struct done *d = ud;
	d->calls++;
	d->status = status;
	if (st)
		d->st = *st;
}

static int closed;
static void close_cb(struct plugin *p, void *ud)
{
	closed++;
}

static void tick(uv_timer_t *t)
{
}

static void run_until(uv_loop_t *loop, const int *flag)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, tick, 20, 20);
	uint64_t end = uv_hrtime() + 10ull * 1000000000;
	while (!*flag && uv_hrtime() < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_true(*flag);
}

static struct plugin *open_plugin(uv_loop_t *loop, struct engine *e)
{
	struct plugin *p = NULL;
	struct plugin_config cfg = { .state_dir = "/tmp", .docker_host = e->path,
				     .stop_timeout_ms = 1000 };
	assert_int_equal(plugin_new(loop, &plugin_container_ops, &cfg, &p), 0);
	return p;
}

static void close_plugin(uv_loop_t *loop, struct plugin *p)
{
	closed = 0;
	plugin_close(p, close_cb, NULL);
	run_until(loop, &closed);
	assert_int_equal(closed, 1);
}

static int status_of(uv_loop_t *loop, struct plugin *p, const char *svc, struct plugin_status *st)
{
	struct done d = { 0 };
	assert_int_equal(plugin_status(p, svc, status_cb, &d), 0);
	run_until(loop, &d.calls);
	assert_int_equal(d.calls, 1);
	*st = d.st;
	return d.status;
}

static const char LIST_PREFIX[] = "/v1.41/containers/json?all=1&filters=";

/* ---- tests -------------------------------------------------------------------------------- */

static void test_bad_answers(void **state)
{
	uv_loop_t loop;
	struct engine e;
	struct plugin_status st;
	static const struct route garbage[] = {
		{ "GET", LIST_PREFIX, 200, "this is not json" },
		{ NULL },
	};
	static const struct route err500[] = {
		{ "GET", LIST_PREFIX, 500, "{\"message\":\"database is locked\"}" },
		{ NULL },
	};
	static const struct route notarray[] = {
		{ "GET", LIST_PREFIX, 200, "{\"Id\":\"x\"}" },
		{ NULL },
	};
	const struct route *cases[] = { garbage, err500, notarray };
	const int want[] = { -EBADMSG, -EIO, -EBADMSG };
	for (int i = 0; i < 3; i++) {
		uv_loop_init(&loop);
		engine_start(&e, &loop, cases[i]);
		struct plugin *p = open_plugin(&loop, &e);
		int r = status_of(&loop, p, "web", &st);
		if (r != want[i])
			fail_msg("case %d: status %d want %d", i, r, want[i]);
		close_plugin(&loop, p);
		engine_stop(&e);
	}
}

static void test_error_in_detail(void **state)
{
	/* a failed create is explained in the next status' detail; the running instance (none
	 * here) is never stopped before the new one exists */
	static const struct route routes[] = {
		{ "GET", "/v1.41/images/localhost/shoal/web:r1/json", 200, "{}" },
		{ "GET", "/v1.41/containers/shoal-web-1/json", 404, "{\"message\":\"no such\"}" },
		{ "GET", LIST_PREFIX, 200,
		  "[{\"Id\":\"old0\",\"Labels\":{\"io.shoal.managed\":\"true\","
		  "\"io.shoal.service\":\"web\",\"io.shoal.rev\":\"0\"}}]" },
		{ "POST", "/v1.41/containers/create", 500, "{\"message\":\"image not known\"}" },
		{ "GET", "/v1.41/containers/old0/json", 200,
		  "{\"State\":{\"Status\":\"exited\",\"ExitCode\":0}}" },
		{ NULL },
	};
	uv_loop_t loop;
	struct engine e;
	struct plugin_status st;
	struct store_manifest m = { .service = "web", .runtime = "container",
				    .container_image = "localhost/web:1" };
	struct plugin_instance in = { .service = "web", .rev = 1, .manifest = &m, .dir = "/tmp" };
	struct done d = { 0 };
	uv_loop_init(&loop);
	engine_start(&e, &loop, routes);
	struct plugin *p = open_plugin(&loop, &e);
	assert_int_equal(plugin_activate(p, &in, done_cb, &d), 0);
	run_until(&loop, &d.calls);
	assert_int_equal(d.status, -EIO);
	/* the reason behind -EIO, for the operator */
	assert_string_equal(plugin_last_error(p, "web"), "create: HTTP 500: image not known");
	if (logged(&e, "/stop") || logged(&e, "DELETE") || logged(&e, "/start")) {
		dump_log(&e);
		fail_msg("the old container was touched although create failed");
	}
	assert_int_equal(status_of(&loop, p, "web", &st), 0);
	assert_int_equal(st.state, PLUGIN_STOPPED);
	if (!strstr(st.detail, "create: HTTP 500: image not known"))
		fail_msg("detail '%s' lacks the engine's message", st.detail);
	close_plugin(&loop, p);
	engine_stop(&e);
}

static void test_never_touches_unmanaged(void **state)
{
	/* an engine that ignores our label filter and returns everything */
	static const struct route routes[] = {
		{ "GET", LIST_PREFIX, 200,
		  "[{\"Id\":\"aaa1\",\"Labels\":{\"io.shoal.service\":\"web\"}},"
		  "{\"Id\":\"bbb2\",\"Labels\":{\"io.shoal.managed\":\"true\",\"io.shoal.service\":"
		  "\"web\",\"io.shoal.rev\":\"1\"}},"
		  "{\"Id\":\"ccc3\",\"Labels\":{\"io.shoal.managed\":\"true\",\"io.shoal.service\":"
		  "\"other\",\"io.shoal.rev\":\"1\"}},"
		  "{\"Id\":\"ddd4\",\"Labels\":{\"io.shoal.managed\":\"false\",\"io.shoal.service\":"
		  "\"web\"}},"
		  "{\"Id\":\"../images/x\",\"Labels\":{\"io.shoal.managed\":\"true\","
		  "\"io.shoal.service\":\"web\"}},"
		  "{\"Labels\":{\"io.shoal.managed\":\"true\",\"io.shoal.service\":\"web\"}},"
		  "{\"Id\":\"eee5\"}, 7, \"x\"]" },
		{ "POST", "/v1.41/containers/bbb2/stop", 204, "" },
		{ "DELETE", "/v1.41/containers/bbb2", 204, "" },
		{ NULL },
	};
	uv_loop_t loop;
	struct engine e;
	struct done d = { 0 };
	uv_loop_init(&loop);
	engine_start(&e, &loop, routes);
	struct plugin *p = open_plugin(&loop, &e);
	assert_int_equal(plugin_deactivate(p, "web", done_cb, &d), 0);
	run_until(&loop, &d.calls);
	assert_int_equal(d.status, 0);
	assert_true(logged(&e, "POST /v1.41/containers/bbb2/stop?t=1"));
	assert_true(logged(&e, "DELETE /v1.41/containers/bbb2?force=1"));
	if (logged(&e, "aaa1") || logged(&e, "ccc3") || logged(&e, "ddd4") ||
	    logged(&e, "images") || logged(&e, "eee5")) {
		dump_log(&e);
		fail_msg("touched a container that is not a managed one of the service");
	}
	/* the filter asked for our labels */
	assert_true(logged(&e, "io.shoal.managed%3Dtrue"));
	assert_true(logged(&e, "io.shoal.service%3Dweb"));
	close_plugin(&loop, p);
	engine_stop(&e);
}

static void test_name_held_by_foreign_container(void **state)
{
	static const struct route routes[] = {
		{ "GET", "/v1.41/images/localhost/shoal/web:r4/json", 200, "{}" },
		{ "GET", "/v1.41/containers/shoal-web-4/json", 200,
		  "{\"Id\":\"f00\",\"Config\":{\"Labels\":{\"io.shoal.service\":\"web\"}}}" },
		{ NULL },
	};
	uv_loop_t loop;
	struct engine e;
	struct store_manifest m = { .service = "web", .runtime = "container",
				    .container_image = "localhost/web:1" };
	struct plugin_instance in = { .service = "web", .rev = 4, .manifest = &m, .dir = "/tmp" };
	struct done d = { 0 };
	uv_loop_init(&loop);
	engine_start(&e, &loop, routes);
	struct plugin *p = open_plugin(&loop, &e);
	assert_int_equal(plugin_activate(p, &in, done_cb, &d), 0);
	run_until(&loop, &d.calls);
	assert_int_equal(d.status, -EEXIST);
	assert_int_equal(e.nlog, 2); /* nothing after the name check */
	close_plugin(&loop, p);
	engine_stop(&e);
}

static void run_load(const char *answer, int want)
{
	struct route routes[] = {
		{ "GET", "/v1.41/images/localhost/shoal/web:r2/json", 404, "{\"message\":\"none\"}" },
		{ "GET", "/v1.41/images/json", 200, "[]" },
		{ "POST", "/v1.41/images/load", 200, answer },
		{ "POST", "/v1.41/images/localhost/app:1/tag?repo=localhost%2Fshoal%2Fweb&tag=r2", 201,
		  "" },
		{ "DELETE", "/v1.41/images/localhost/app:1", 200, "[{\"Untagged\":\"x\"}]" },
		{ NULL },
	};
	uv_loop_t loop;
	struct engine e;
	char path[128];
	uv_loop_init(&loop);
	engine_start(&e, &loop, routes);
	snprintf(path, sizeof path, "%s/image.tar", e.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("pretend archive", f);
	fclose(f);
	struct store_manifest m = { .service = "web", .runtime = "container",
				    .container_archive = "image.tar" };
	struct plugin_instance in = { .service = "web", .rev = 2, .manifest = &m, .dir = e.dir };
	struct done d = { 0 };
	struct plugin *p = open_plugin(&loop, &e);
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), 0);
	run_until(&loop, &d.calls);
	if (d.status != want) {
		dump_log(&e);
		fail_msg("load answer '%s': %d want %d", answer, d.status, want);
	}
	if (want == 0) {
		/* tagged, then the name the load created was removed again */
		assert_true(logged(&e, "POST /v1.41/images/localhost/app:1/tag?"));
		assert_true(logged(&e, "DELETE /v1.41/images/localhost/app:1"));
	} else {
		assert_false(logged(&e, "/tag?"));
	}
	close_plugin(&loop, p);
	unlink(path);
	engine_stop(&e);
}

static void test_load_answers(void **state)
{
	run_load("{\"stream\":\"Loaded image: localhost/app:1\"}", 0);
	run_load("{\"stream\":\"Loaded image: localhost/app:1,localhost/app:latest\"}", 0);
	/* Docker: progress lines first, then the name */
	run_load("{\"status\":\"Loading\"}\r\n{\"stream\":\"Loaded image: localhost/app:1\\n\"}\r\n", 0);
	run_load("{\"errorDetail\":{\"message\":\"x\"},\"error\":\"archive/tar: invalid header\"}",
		 -EIO);
	run_load("{\"stream\":\"nothing useful\"}", -EBADMSG);
	run_load("{\"stream\":\"Loaded image: ../../containers/x\"}", -EBADMSG);
	run_load("garbage", -EBADMSG);
}

static void test_close_cancels(void **state)
{
	static const struct route routes[] = {
		{ "GET", LIST_PREFIX, 0, "" }, /* never answers */
		{ NULL },
	};
	uv_loop_t loop;
	struct engine e;
	struct done d = { 0 };
	uv_loop_init(&loop);
	engine_start(&e, &loop, routes);
	struct plugin *p = open_plugin(&loop, &e);
	assert_int_equal(plugin_status(p, "web", status_cb, &d), 0);
	struct done d2 = { 0 };
	assert_int_equal(plugin_deactivate(p, "db", done_cb, &d2), 0);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(d.calls, 0);
	close_plugin(&loop, p);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.status, -ECANCELED);
	assert_int_equal(d2.calls, 1);
	assert_int_equal(d2.status, -ECANCELED);
	engine_stop(&e);
}

static void test_arguments(void **state)
{
	uv_loop_t loop;
	struct engine e;
	static const struct route none[] = { { NULL } };
	struct done d = { 0 };
	uv_loop_init(&loop);
	engine_start(&e, &loop, none);
	struct plugin *p = open_plugin(&loop, &e);
	struct store_manifest m = { .service = "web", .runtime = "container" };
	struct plugin_instance in = { .service = "web", .rev = 1, .manifest = &m, .dir = "/tmp" };
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL); /* neither image nor archive */
	m.container_image = "../x";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	m.container_image = "localhost/x:1 y";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	m.container_image = NULL;
	m.container_archive = "/etc/passwd";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	m.container_archive = "a/../../b.tar";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	m.container_archive = "image.tar";
	in.dir = "relative";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	in.dir = "/tmp";
	in.service = "";
	assert_int_equal(plugin_prepare(p, &in, done_cb, &d), -EINVAL);
	in.service = "a b";
	assert_int_equal(plugin_activate(p, &in, done_cb, &d), -EINVAL);
	assert_int_equal(plugin_deactivate(p, "..", done_cb, &d), -EINVAL);
	assert_int_equal(plugin_status(p, "x/y", status_cb, &d), -EINVAL);
	assert_int_equal(plugin_deactivate(p, "web", NULL, &d), -EINVAL);
	assert_int_equal(p->ops->forget(p, "web", 0), -EINVAL);
	assert_int_equal(e.nlog, 0);
	assert_int_equal(d.calls, 0);
	close_plugin(&loop, p);
	engine_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_inspect),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_error_in_detail),
		cmocka_unit_test(test_never_touches_unmanaged),
		cmocka_unit_test(test_name_held_by_foreign_container),
		cmocka_unit_test(test_load_answers),
		cmocka_unit_test(test_close_cancels),
		cmocka_unit_test(test_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
