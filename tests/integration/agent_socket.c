/*
 * Integration test of agentd's control socket with raw clients: a real agentd process (state and
 * socket in a fresh temporary directory), driven over real unix sockets with hand-built frames.
 *
 * What it proves: every malformed-frame class is answered with its stable error name (and the
 * connection closed for framing errors) while the agent keeps serving; a stuck client (half a
 * frame) neither blocks another client nor stays connected past client-timeout; the client
 * limit answers "busy"; pipelined requests are answered in order; a long import on the
 * threadpool does not delay a ping; SIGHUP reloads (and survives a broken config); a second
 * agentd on the same socket or state directory refuses to start; SIGTERM exits 0 and removes
 * the socket.
 *
 * Needs AGENTD (set by ctest). Every wait is bounded; agents are stopped by PID.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/ctl/ctl_proto.h"

#define CLIENT_TIMEOUT_MS 3000
#define MAX_CLIENTS	  6

static char tmpdir[256];
static char sock_path[300];
static char state_dir[300];
static char conf_path[300];
static char log_path[300];
static const char *agentd;
static pid_t agent_pid = -1;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* ---- processes ------------------------------------------------------------------------------ */

/* Environment for the next spawned agent ("NAME=value" strings), then cleared. */
static const char *spawn_env[4];

static pid_t spawn_agent(const char *sock, const char *state, const char *log, const char *extra)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
		for (int i = 0; i < 4 && spawn_env[i]; i++)
			putenv((char *)spawn_env[i]);
		char mf[32], to[32];
		snprintf(mf, sizeof mf, "%d", MAX_CLIENTS);
		snprintf(to, sizeof to, "%dms", CLIENT_TIMEOUT_MS);
		if (extra)
			execl(agentd, agentd, "--config", conf_path, "--socket", sock, "--state-dir",
			      state, "--max-clients", mf, "--client-timeout", to, "--max-frame-size",
			      "64K", extra, (char *)NULL);
		else
			execl(agentd, agentd, "--config", conf_path, "--socket", sock, "--state-dir",
			      state, "--max-clients", mf, "--client-timeout", to, "--max-frame-size",
			      "64K", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait up to @ms for @pid to exit; returns its wait status, or -1 on timeout. */
static int wait_exit(pid_t pid, unsigned ms)
{
	uint64_t end = now_ms() + ms;
	int st;
	while (now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		sleep_ms(20);
	}
	return -1;
}

static int connect_sock(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(path) < sizeof sa.sun_path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

static void wait_socket(const char *path, pid_t pid)
{
	uint64_t end = now_ms() + 15000;
	while (now_ms() < end) {
		int fd = connect_sock(path);
		if (fd >= 0) {
			close(fd);
			return;
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("agentd exited (status %d) before serving; see %s", st, log_path);
		sleep_ms(20);
	}
	fail_msg("agentd did not open %s within 15 s", path);
}

/* ---- frames --------------------------------------------------------------------------------- */

static void send_bytes(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail_msg("send: %s", strerror(errno));
		p += w;
		len -= (size_t)w;
	}
}

/* Read exactly @len bytes within @ms. Returns 0, -ETIMEDOUT, or -ECONNRESET on EOF. */
static int recv_exact(int fd, void *buf, size_t len, unsigned ms)
{
	uint8_t *p = buf;
	uint64_t end = now_ms() + ms;
	while (len) {
		uint64_t now = now_ms();
		if (now >= end)
			return -ETIMEDOUT;
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int r = poll(&pf, 1, (int)(end - now));
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t n = recv(fd, p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? -ECONNRESET : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct resp {
	uint8_t *buf;
	struct ctl_response r;
};

static int read_resp(int fd, struct resp *out, unsigned ms)
{
	uint8_t hdr[4];
	uint32_t len;
	memset(out, 0, sizeof *out);
	int rc = recv_exact(fd, hdr, 4, ms);
	if (rc < 0)
		return rc;
	assert_int_equal(ctl_frame_peek(hdr, 4, CTL_FRAME_MAX_LIMIT, &len), 1);
	out->buf = malloc(len);
	assert_non_null(out->buf);
	rc = recv_exact(fd, out->buf, len, ms);
	assert_int_equal(rc, 0);
	assert_int_equal(ctl_response_decode(out->buf, len, &out->r), 0);
	return 0;
}

static void resp_free(struct resp *r)
{
	ctl_response_release(&r->r);
	free(r->buf);
	r->buf = NULL;
}

static void send_enc(int fd, struct ctl_enc *e)
{
	const uint8_t *buf;
	size_t len;
	assert_int_equal(ctl_enc_finish(e, &buf, &len), 0);
	send_bytes(fd, buf, len);
}

static void send_op(int fd, const char *op, const char *key, const char *val)
{
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, op, key != NULL);
	if (key) {
		ctl_enc_map(&e, 1);
		ctl_enc_str(&e, key);
		ctl_enc_str(&e, val);
	}
	send_enc(fd, &e);
	ctl_enc_release(&e);
}

static void send_payload(int fd, const void *p, size_t n)
{
	uint8_t hdr[4];
	ctl_frame_put_header(hdr, (uint32_t)n);
	send_bytes(fd, hdr, 4);
	if (n)
		send_bytes(fd, p, n);
}

static void expect_error(int fd, const char *name)
{
	struct resp r;
	int rc = read_resp(fd, &r, 5000);
	if (rc < 0)
		fail_msg("waiting for error %s: %s", name, strerror(-rc));
	if (r.r.ok)
		fail_msg("expected error %s, got ok", name);
	if (strcmp(r.r.error, name) != 0)
		fail_msg("expected error %s, got %s (%s)", name, r.r.error, r.r.message);
	resp_free(&r);
}

static void expect_ok(int fd)
{
	struct resp r;
	int rc = read_resp(fd, &r, 5000);
	if (rc < 0)
		fail_msg("waiting for a response: %s", strerror(-rc));
	if (!r.r.ok)
		fail_msg("expected ok, got %s (%s)", r.r.error, r.r.message);
	resp_free(&r);
}

static void expect_closed(int fd, unsigned ms)
{
	uint8_t b;
	int rc = recv_exact(fd, &b, 1, ms);
	if (rc != -ECONNRESET)
		fail_msg("expected the agent to close the connection, got %s",
			 rc == 0 ? "a byte" : strerror(-rc));
}

/*
 * A fresh connection answers ping: the agent still serves. Clients that just hung up may still
 * hold their slots for a moment (the agent sees their EOF on its next loop turn), so "busy" is
 * retried for a bounded time.
 */
static void expect_serving(void)
{
	uint64_t end = now_ms() + 3000;
	for (;;) {
		int fd = connect_sock(sock_path);
		if (fd < 0)
			fail_msg("agent stopped accepting: %s", strerror(-fd));
		send_op(fd, "ping", NULL, NULL);
		struct resp r;
		int rc = read_resp(fd, &r, 5000);
		close(fd);
		if (rc < 0)
			fail_msg("no answer to ping: %s", strerror(-rc));
		bool ok = r.r.ok, busy = !r.r.ok && strcmp(r.r.error, "busy") == 0;
		char err[64];
		snprintf(err, sizeof err, "%s", r.r.error);
		resp_free(&r);
		if (ok)
			return;
		if (!busy || now_ms() > end)
			fail_msg("ping answered with error %s", err);
		sleep_ms(50);
	}
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int setup(void **state)
{
	agentd = getenv("AGENTD");
	if (!agentd || access(agentd, X_OK) < 0) {
		fprintf(stderr, "AGENTD not set or not executable\n");
		return -1;
	}
	snprintf(tmpdir, sizeof tmpdir, "/tmp/shoal-agent-sock-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(sock_path, sizeof sock_path, "%s/agentd.sock", tmpdir);
	snprintf(state_dir, sizeof state_dir, "%s/state", tmpdir);
	snprintf(conf_path, sizeof conf_path, "%s/agentd.conf", tmpdir);
	snprintf(log_path, sizeof log_path, "%s/agentd.log", tmpdir);
	FILE *f = fopen(conf_path, "w");
	if (!f)
		return -1;
	fprintf(f, "[agent]\nlog-level = info\nnode-name = sock-test\n");
	fclose(f);
	signal(SIGPIPE, SIG_IGN);
	agent_pid = spawn_agent(sock_path, state_dir, log_path, NULL);
	wait_socket(sock_path, agent_pid);
	return 0;
}

static int teardown(void **state)
{
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	if (getenv("SHOAL_KEEP_TMP") == NULL && tmpdir[0]) {
		char cmd[512];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_ping_and_status(void **state)
{
	int fd = connect_sock(sock_path);
	assert_true(fd >= 0);
	send_op(fd, "ping", NULL, NULL);
	struct resp r;
	assert_int_equal(read_resp(fd, &r, 5000), 0);
	assert_true(r.r.ok);
	assert_true(ctl_obj_streq(r.r.result, "pong"));
	resp_free(&r);

	send_op(fd, "status", NULL, NULL);
	assert_int_equal(read_resp(fd, &r, 5000), 0);
	assert_true(r.r.ok);
	assert_true(ctl_obj_streq(ctl_map_get(r.r.result, "name"), "sock-test"));
	assert_true(ctl_obj_streq(ctl_map_get(r.r.result, "state_dir"), state_dir));
	const msgpack_object *id = ctl_map_get(r.r.result, "node_id");
	assert_non_null(id);
	assert_int_equal(id->type, MSGPACK_OBJECT_STR);
	assert_int_equal(id->via.str.size, 32);
	resp_free(&r);
	close(fd);

	/* The socket has the configured mode. */
	struct stat st;
	assert_int_equal(stat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
}

static void test_request_errors_keep_connection(void **state)
{
	int fd = connect_sock(sock_path);
	assert_true(fd >= 0);

	send_op(fd, "no.such.op", NULL, NULL);
	expect_error(fd, "unknown_op");

	static const uint8_t array[] = {0x92, 0xa2, 'o', 'p', 0x01}; /* ["op", 1] */
	send_payload(fd, array, sizeof array);
	expect_error(fd, "bad_request");

	static const uint8_t op_int[] = {0x81, 0xa2, 'o', 'p', 0x07}; /* {"op": 7} */
	send_payload(fd, op_int, sizeof op_int);
	expect_error(fd, "bad_request");

	send_op(fd, "artifact.show", NULL, NULL); /* missing args */
	expect_error(fd, "bad_request");

	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "artifact.show", true);
	ctl_enc_map(&e, 1);
	ctl_enc_str(&e, "id");
	ctl_enc_uint(&e, 1234); /* wrong type */
	send_enc(fd, &e);
	ctl_enc_release(&e);
	expect_error(fd, "bad_request");

	send_op(fd, "artifact.show", "id", "zz"); /* not hex */
	expect_error(fd, "bad_request");
	send_op(fd, "artifact.show", "id", "ffffffff");
	expect_error(fd, "not_found");
	send_op(fd, "artifact.import", "dir", "relative/dir");
	expect_error(fd, "bad_request");
	send_op(fd, "artifact.import", "dir", "/nonexistent/shoal/dir");
	expect_error(fd, "not_found");
	send_op(fd, "history", "service", "bad name!");
	expect_error(fd, "bad_request");

	/* The same connection still works. */
	send_op(fd, "ping", NULL, NULL);
	expect_ok(fd);
	close(fd);
}

static void test_framing_errors_close(void **state)
{
	/* Not msgpack. */
	int fd = connect_sock(sock_path);
	static const uint8_t c1[] = {0xc1, 0xc1};
	send_payload(fd, c1, sizeof c1);
	expect_error(fd, "bad_frame");
	expect_closed(fd, 3000);
	close(fd);

	/* A container count larger than the frame. */
	fd = connect_sock(sock_path);
	static const uint8_t bomb[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
	send_payload(fd, bomb, sizeof bomb);
	expect_error(fd, "bad_frame");
	expect_closed(fd, 3000);
	close(fd);

	/* Trailing bytes after the map. */
	fd = connect_sock(sock_path);
	static const uint8_t trail[] = {0x81, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0x00};
	send_payload(fd, trail, sizeof trail);
	expect_error(fd, "bad_frame");
	expect_closed(fd, 3000);
	close(fd);

	/* Zero-length frame. */
	fd = connect_sock(sock_path);
	send_payload(fd, NULL, 0);
	expect_error(fd, "bad_frame");
	expect_closed(fd, 3000);
	close(fd);

	/* Oversize: the header alone is enough to refuse (64K limit in this test). */
	fd = connect_sock(sock_path);
	uint8_t hdr[4];
	ctl_frame_put_header(hdr, 64 * 1024 + 1);
	send_bytes(fd, hdr, 4);
	expect_error(fd, "frame_too_large");
	expect_closed(fd, 3000);
	close(fd);

	/* Exactly at the limit is accepted (and is not a valid request). */
	fd = connect_sock(sock_path);
	size_t n = 64 * 1024;
	uint8_t *big = malloc(n);
	memset(big, 0xc0, n); /* 65536 nils: "two objects" */
	send_payload(fd, big, n);
	expect_error(fd, "bad_frame");
	free(big);
	close(fd);

	/* Truncated frame then hang-up. */
	fd = connect_sock(sock_path);
	ctl_frame_put_header(hdr, 100);
	send_bytes(fd, hdr, 4);
	send_bytes(fd, "\x81\xa2op", 4);
	close(fd);

	/* Random garbage, many times. */
	srand(12345);
	for (int i = 0; i < 100; i++) {
		uint8_t junk[256];
		size_t len = (size_t)(rand() % (int)sizeof junk) + 1;
		for (size_t j = 0; j < len; j++)
			junk[j] = (uint8_t)rand();
		if (i % 2) /* half of them with a plausible header */
			ctl_frame_put_header(junk, (uint32_t)(len > 4 ? len - 4 : 1));
		fd = connect_sock(sock_path);
		assert_true(fd >= 0);
		/* The agent may already have refused the frame and hung up: EPIPE is fine. */
		if (send(fd, junk, len, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
			fail_msg("send: %s", strerror(errno));
		close(fd);
	}
	expect_serving();
}

static void test_pipelined(void **state)
{
	int fd = connect_sock(sock_path);
	struct ctl_enc e;
	const uint8_t *buf;
	size_t len;
	uint8_t all[256];
	size_t off = 0;
	const char *ops[] = {"ping", "no.such", "status"};
	for (int i = 0; i < 3; i++) {
		ctl_enc_init(&e);
		ctl_enc_request(&e, ops[i], false);
		assert_int_equal(ctl_enc_finish(&e, &buf, &len), 0);
		memcpy(all + off, buf, len);
		off += len;
		ctl_enc_release(&e);
	}
	send_bytes(fd, all, off); /* one write, three frames */
	struct resp r;
	assert_int_equal(read_resp(fd, &r, 5000), 0);
	assert_true(r.r.ok && ctl_obj_streq(r.r.result, "pong"));
	resp_free(&r);
	expect_error(fd, "unknown_op");
	assert_int_equal(read_resp(fd, &r, 5000), 0);
	assert_true(r.r.ok && ctl_map_get(r.r.result, "node_id"));
	resp_free(&r);
	close(fd);
}

static void test_stuck_client(void **state)
{
	/* A sends half a frame and stops. */
	int a = connect_sock(sock_path);
	assert_true(a >= 0);
	uint8_t hdr[4];
	ctl_frame_put_header(hdr, 40);
	send_bytes(a, hdr, 4);
	send_bytes(a, "\x82\xa2op", 4);
	uint64_t t0 = now_ms();

	/* B is served at once. */
	int b = connect_sock(sock_path);
	send_op(b, "ping", NULL, NULL);
	expect_ok(b);
	uint64_t t_ping = now_ms() - t0;
	/* Well under the stuck client's timeout: the agent did not wait for it. */
	if (t_ping > CLIENT_TIMEOUT_MS / 2)
		fail_msg("ping took %llu ms while another client was stuck",
			 (unsigned long long)t_ping);
	close(b);

	/* A is dropped after client-timeout, not much later. */
	expect_closed(a, CLIENT_TIMEOUT_MS + 5000);
	uint64_t t_drop = now_ms() - t0;
	if (t_drop < CLIENT_TIMEOUT_MS - 100)
		fail_msg("stuck client dropped after %llu ms, before the %d ms timeout",
			 (unsigned long long)t_drop, CLIENT_TIMEOUT_MS);
	close(a);

	/* A slowloris (one byte every 300 ms) is cut at the same deadline. */
	a = connect_sock(sock_path);
	t0 = now_ms();
	ctl_frame_put_header(hdr, 200);
	send_bytes(a, hdr, 4);
	bool closed = false;
	for (int i = 0; i < 60 && !closed; i++) {
		if (send(a, "\xc0", 1, MSG_NOSIGNAL) < 0) {
			closed = true;
			break;
		}
		uint8_t x;
		int rc = recv_exact(a, &x, 1, 300);
		if (rc == -ECONNRESET)
			closed = true;
	}
	uint64_t t_slow = now_ms() - t0;
	assert_true(closed);
	if (t_slow > CLIENT_TIMEOUT_MS + 3000)
		fail_msg("slowloris kept its connection %llu ms (timeout %d ms)",
			 (unsigned long long)t_slow, CLIENT_TIMEOUT_MS);
	close(a);
	expect_serving();
}

static void test_max_clients(void **state)
{
	int fds[MAX_CLIENTS];
	for (int i = 0; i < MAX_CLIENTS; i++) {
		fds[i] = connect_sock(sock_path);
		assert_true(fds[i] >= 0);
	}
	/* Make sure all are accepted before the extra one. */
	for (int i = 0; i < MAX_CLIENTS; i++) {
		send_op(fds[i], "ping", NULL, NULL);
		expect_ok(fds[i]);
	}
	int extra = connect_sock(sock_path);
	assert_true(extra >= 0);
	expect_error(extra, "busy");
	expect_closed(extra, 3000);
	close(extra);
	for (int i = 0; i < MAX_CLIENTS; i++)
		close(fds[i]);
	/* Slots are freed: wait until a new client is served (bounded). */
	uint64_t end = now_ms() + 3000;
	for (;;) {
		int fd = connect_sock(sock_path);
		send_op(fd, "ping", NULL, NULL);
		struct resp r;
		int rc = read_resp(fd, &r, 3000);
		close(fd);
		if (rc == 0 && r.r.ok) {
			resp_free(&r);
			break;
		}
		if (rc == 0)
			resp_free(&r);
		if (now_ms() > end)
			fail_msg("closed clients' slots not freed after 3 s");
		sleep_ms(50);
	}
}

static void test_import_does_not_block(void **state)
{
	/* A 96 MiB artifact: its import runs on the threadpool while a ping is served. */
	char dir[400], path[450];
	snprintf(dir, sizeof dir, "%s/big", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof path, "%s/release.ini", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "[release]\nservice = big\nruntime = exec\nversion = 1\n[exec]\ncommand = "
		   "./blob\n");
	fclose(f);
	snprintf(path, sizeof path, "%s/blob", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	static uint8_t chunk[1 << 20];
	for (int i = 0; i < 96; i++) {
		for (size_t j = 0; j < sizeof chunk; j += 64)
			chunk[j] = (uint8_t)(i + j);
		assert_int_equal(fwrite(chunk, 1, sizeof chunk, f), sizeof chunk);
	}
	fclose(f);
	chmod(path, 0755);

	int a = connect_sock(sock_path);
	uint64_t t0 = now_ms();
	send_op(a, "artifact.import", "dir", dir);
	sleep_ms(20);
	int b = connect_sock(sock_path);
	uint64_t t1 = now_ms();
	send_op(b, "ping", NULL, NULL);
	expect_ok(b);
	uint64_t ping_ms = now_ms() - t1;
	struct pollfd pf = {.fd = a, .events = POLLIN};
	bool import_done_before_ping = poll(&pf, 1, 0) > 0;
	close(b);

	struct resp r;
	int rc = read_resp(a, &r, 120000);
	assert_int_equal(rc, 0);
	if (!r.r.ok)
		fail_msg("import failed: %s (%s)", r.r.error, r.r.message);
	uint64_t import_ms = now_ms() - t0;
	resp_free(&r);
	close(a);
	printf("import of 96 MiB: %llu ms; ping during it: %llu ms\n",
	       (unsigned long long)import_ms, (unsigned long long)ping_ms);
	if (ping_ms > 1500)
		fail_msg("ping took %llu ms during an import", (unsigned long long)ping_ms);
	/* Only conclusive when the import is slower than a ping by far. */
	if (import_ms > 300 && import_done_before_ping)
		fail_msg("import (%llu ms) answered before a ping sent 20 ms after it",
			 (unsigned long long)import_ms);
}

static void test_many_imports_leave_room(void **state)
{
	/* MAX_CLIENTS - 1 imports at once (of the 96 MiB dir of the previous test): at most two
	 * run on the threadpool, so a status request still finds a free thread. */
	char dir[400];
	snprintf(dir, sizeof dir, "%s/big", tmpdir);
	int fds[MAX_CLIENTS - 1];
	uint64_t t0 = now_ms();
	for (int i = 0; i < MAX_CLIENTS - 1; i++) {
		fds[i] = connect_sock(sock_path);
		assert_true(fds[i] >= 0);
		send_op(fds[i], "artifact.import", "dir", dir);
	}
	sleep_ms(50);
	int b = connect_sock(sock_path);
	uint64_t t1 = now_ms();
	send_op(b, "status", NULL, NULL);
	expect_ok(b);
	uint64_t status_ms = now_ms() - t1;
	close(b);
	for (int i = 0; i < MAX_CLIENTS - 1; i++) {
		struct resp r;
		assert_int_equal(read_resp(fds[i], &r, 120000), 0);
		if (!r.r.ok)
			fail_msg("import %d failed: %s (%s)", i, r.r.error, r.r.message);
		resp_free(&r);
		close(fds[i]);
	}
	uint64_t total_ms = now_ms() - t0;
	printf("%d concurrent imports of 96 MiB: %llu ms; status during them: %llu ms\n",
	       MAX_CLIENTS - 1, (unsigned long long)total_ms, (unsigned long long)status_ms);
	if (status_ms > 1000 && status_ms * 4 > total_ms)
		fail_msg("status took %llu ms of the imports' %llu ms",
			 (unsigned long long)status_ms, (unsigned long long)total_ms);
}

static void test_sighup(void **state)
{
	/* A valid change: the log level becomes debug. */
	FILE *f = fopen(conf_path, "w");
	fprintf(f, "[agent]\nlog-level = debug\nnode-name = sock-test\n");
	fclose(f);
	assert_int_equal(kill(agent_pid, SIGHUP), 0);
	uint64_t end = now_ms() + 5000;
	bool seen = false;
	while (!seen && now_ms() < end) {
		int fd = connect_sock(sock_path);
		send_op(fd, "status", NULL, NULL);
		struct resp r;
		assert_int_equal(read_resp(fd, &r, 5000), 0);
		seen = ctl_obj_streq(ctl_map_get(r.r.result, "log_level"), "debug");
		resp_free(&r);
		close(fd);
		if (!seen)
			sleep_ms(50);
	}
	if (!seen)
		fail_msg("log level not reloaded within 5 s");

	/* A broken file: reported, the agent keeps running with the old level. */
	f = fopen(conf_path, "w");
	fprintf(f, "[agent]\nlog-level = loud\n");
	fclose(f);
	assert_int_equal(kill(agent_pid, SIGHUP), 0);
	sleep_ms(300);
	assert_int_equal(waitpid(agent_pid, NULL, WNOHANG), 0);
	int fd = connect_sock(sock_path);
	send_op(fd, "status", NULL, NULL);
	struct resp r;
	assert_int_equal(read_resp(fd, &r, 5000), 0);
	assert_true(ctl_obj_streq(ctl_map_get(r.r.result, "log_level"), "debug"));
	resp_free(&r);
	close(fd);

	f = fopen(conf_path, "w");
	fprintf(f, "[agent]\nlog-level = info\nnode-name = sock-test\n");
	fclose(f);
}

static void test_second_agent_refused(void **state)
{
	char state2[400], log2[400];
	snprintf(state2, sizeof state2, "%s/state2", tmpdir);
	snprintf(log2, sizeof log2, "%s/agentd2.log", tmpdir);

	/* Same socket, other state dir. */
	pid_t p = spawn_agent(sock_path, state2, log2, NULL);
	int st = wait_exit(p, 15000);
	if (st == -1) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		fail_msg("second agentd on the same socket did not exit");
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);

	/* Same state dir, other socket. */
	char sock2[400];
	snprintf(sock2, sizeof sock2, "%s/other.sock", tmpdir);
	p = spawn_agent(sock2, state_dir, log2, NULL);
	st = wait_exit(p, 15000);
	if (st == -1) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		fail_msg("second agentd on the same state dir did not exit");
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_int_equal(access(sock2, F_OK), -1); /* it left no socket behind */

	/* The first one was not disturbed. */
	expect_serving();

	/* The refusals say why. */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "grep -q 'another agent is listening' '%s' && "
				  "grep -q 'in use by another agentd' '%s'", log2, log2);
	if (system(cmd) != 0)
		fail_msg("refusal messages missing from %s", log2);
}

static void test_stale_socket_replaced(void **state)
{
	/* A dead socket file at the path is removed and replaced by a new agent. */
	char sock3[400], state3[400], log3[400];
	snprintf(sock3, sizeof sock3, "%s/stale.sock", tmpdir);
	snprintf(state3, sizeof state3, "%s/state3", tmpdir);
	snprintf(log3, sizeof log3, "%s/agentd3.log", tmpdir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", sock3);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd); /* bound, never listened: a stale file */
	pid_t p = spawn_agent(sock3, state3, log3, NULL);
	wait_socket(sock3, p);
	kill(p, SIGTERM);
	int st = wait_exit(p, 15000);
	assert_true(st != -1 && WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);

	/* A regular file at the path is never deleted. */
	FILE *f = fopen(sock3, "w");
	fputs("not a socket", f);
	fclose(f);
	p = spawn_agent(sock3, state3, log3, NULL);
	st = wait_exit(p, 15000);
	if (st == -1) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		fail_msg("agentd did not refuse a regular file at its socket path");
	}
	assert_int_equal(WEXITSTATUS(st), 1);
	struct stat sb;
	assert_int_equal(stat(sock3, &sb), 0);
	assert_true(S_ISREG(sb.st_mode));
}

/* Read one datagram from @fd within @ms into @buf (NUL-terminated). 0 or -ETIMEDOUT. */
static int recv_dgram(int fd, char *buf, size_t cap, unsigned ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	if (poll(&pf, 1, (int)ms) <= 0)
		return -ETIMEDOUT;
	ssize_t n = recv(fd, buf, cap - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

/* Wait for a notification containing @want; the others are skipped. */
static void expect_notify(int fd, const char *want, unsigned ms)
{
	char buf[512];
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		if (recv_dgram(fd, buf, sizeof buf, (unsigned)(end - now_ms())) < 0)
			break;
		if (strstr(buf, want))
			return;
	}
	fail_msg("no sd_notify message with %s within %u ms", want, ms);
}

static void test_sd_notify_and_journal(void **state)
{
	/* A fake systemd: the notify socket, a watchdog of 400 ms, stderr "connected to the
	 * journal" (JOURNAL_STREAM naming the log file). */
	char nsock[400], sock4[400], state4[400], log4[400];
	static char env_notify[512], env_wd[64], env_js[128];
	snprintf(nsock, sizeof nsock, "%s/notify.sock", tmpdir);
	snprintf(sock4, sizeof sock4, "%s/n.sock", tmpdir);
	snprintf(state4, sizeof state4, "%s/state4", tmpdir);
	snprintf(log4, sizeof log4, "%s/agentd4.log", tmpdir);
	int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", nsock);
	assert_int_equal(bind(nfd, (struct sockaddr *)&sa, sizeof sa), 0);
	int lfd = open(log4, O_WRONLY | O_CREAT, 0644);
	struct stat st;
	assert_int_equal(fstat(lfd, &st), 0);
	close(lfd);
	snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", nsock);
	snprintf(env_wd, sizeof env_wd, "WATCHDOG_USEC=400000");
	snprintf(env_js, sizeof env_js, "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	spawn_env[0] = env_notify;
	spawn_env[1] = env_wd;
	spawn_env[2] = env_js;
	pid_t p = spawn_agent(sock4, state4, log4, NULL);
	spawn_env[0] = spawn_env[1] = spawn_env[2] = NULL;

	expect_notify(nfd, "READY=1", 15000);
	/* Served by then. */
	int fd = connect_sock(sock4);
	assert_true(fd >= 0);
	close(fd);
	/* The watchdog is fed at half the interval: at least two pings in a second. */
	expect_notify(nfd, "WATCHDOG=1", 1000);
	expect_notify(nfd, "WATCHDOG=1", 1000);
	kill(p, SIGHUP);
	expect_notify(nfd, "RELOADING=1", 5000);
	expect_notify(nfd, "READY=1", 5000);
	kill(p, SIGTERM);
	expect_notify(nfd, "STOPPING=1", 5000);
	int ws = wait_exit(p, 15000);
	if (ws == -1) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		fail_msg("agentd did not stop");
	}
	assert_int_equal(WEXITSTATUS(ws), 0);
	close(nfd);

	/* journald format: "<N>" priority prefixes, no timestamps. */
	FILE *f = fopen(log4, "r");
	char line[1024];
	int lines = 0;
	while (fgets(line, sizeof line, f)) {
		lines++;
		if (line[0] != '<' || line[1] < '3' || line[1] > '7' || line[2] != '>')
			fail_msg("log line without a <N> prefix: %s", line);
	}
	fclose(f);
	assert_true(lines >= 2);
}

static void test_sigterm(void **state)
{
	/* A client in the middle of a frame must not hold up the stop. */
	int a = connect_sock(sock_path);
	send_bytes(a, "\x00\x00\x00\x10\x81", 5);
	assert_int_equal(kill(agent_pid, SIGTERM), 0);
	int st = wait_exit(agent_pid, 15000);
	if (st == -1)
		fail_msg("agentd did not exit within 15 s of SIGTERM");
	agent_pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(access(sock_path, F_OK), -1);
	close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_and_status),
		cmocka_unit_test(test_request_errors_keep_connection),
		cmocka_unit_test(test_framing_errors_close),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_stuck_client),
		cmocka_unit_test(test_max_clients),
		cmocka_unit_test(test_import_does_not_block),
		cmocka_unit_test(test_many_imports_leave_room),
		cmocka_unit_test(test_sighup),
		cmocka_unit_test(test_second_agent_refused),
		cmocka_unit_test(test_stale_socket_replaced),
		cmocka_unit_test(test_sd_notify_and_journal),
		cmocka_unit_test(test_sigterm),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
