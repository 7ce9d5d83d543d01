/*
 * tests/integration/traffic_haproxy.c: the traffic driver against a REAL HAProxy (Debian's
 * 2.6), on 127.0.0.0/8 only.
 *
 * It starts HAProxy in the foreground from its own configuration (a server-template backend
 * `web` with HTTP checks, a static-LB backend `st`, a unix and a TCP stats socket) and three
 * busybox httpd backends (two in site "a", one in site "b"; each answers its own name, and
 * /cgi-bin/slow answers after 2 s), all started and stopped by PID. Then, on a libuv loop:
 *
 *   1. fill:      a1, a2 (site a), b1 (site b) healthy, F = 0.5: slots hold them, b1 at
 *                 weight 0; 30 HTTP requests through HAProxy reach a1 and a2, none b1
 *   2. drain:     slow requests in flight; a1 draining: its slot shows DRAIN, new requests
 *                 go to a2 only, traffic_lb_sessions(a1) reports the sessions in flight, then
 *                 0 once they end; the slow requests all succeed (a drain cuts nothing)
 *   3. failover:  a1 healthy again; then site a cut off (its httpds killed, a1 a2 unhealthy):
 *                 a FAILOVER event, b1 gets its weight, every request reaches b1, none fails
 *   4. fail-back: site a back: FAILOVER event back to local, requests reach a1/a2 only
 *   5. resync:    HAProxy killed and restarted (slots back to maint): the driver refills them
 *                 with no update, through its resync pass
 *   6. errors:    a socket path with nothing behind it, a socket that never answers, a
 *                 stale socket file and a closed TCP port (refused), a backend that
 *                 refuses weights (balance source), a socket at level user,
 *                 a socket the driver's user may not open (as nobody): each in words
 *   7. TCP:       a sessions query over the TCP stats socket
 *   8. load:      wrk through the frontend while the driver drains, fails over and back
 *                 (backends up): no failed response, no socket error
 *
 * Prints "SKIP: <reason>" and exits 77 when haproxy or busybox is missing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "traffic/traffic.h"

#define SKIP 77

static char dir[64];
static char net[16];	/* "127.X.Y" unique to this run */
static char sock_unix[100], sock_tcp[64], fe_addr[32];
static uint16_t fe_port = 18080;
static pid_t hap_pid = -1;

struct backend {
	const char *name;
	const char *site;
	char addr[32];
	uint16_t port;
	pid_t pid;
};
static struct backend be[3] = {
	{ "a1", "a", "", 18081, -1 },
	{ "a2", "a", "", 18082, -1 },
	{ "b1", "b", "", 18083, -1 },
};

static void cleanup(void)
{
	for (int i = 0; i < 3; i++)
		if (be[i].pid > 0) {
			kill(be[i].pid, SIGKILL);
			waitpid(be[i].pid, NULL, 0);
			be[i].pid = -1;
		}
	if (hap_pid > 0) {
		kill(hap_pid, SIGKILL);
		waitpid(hap_pid, NULL, 0);
		hap_pid = -1;
	}
	if (dir[0] && !getenv("KEEP")) {
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

#define FAIL(...)                                                                    \
	do {                                                                         \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
		fprintf(stderr, __VA_ARGS__);                                         \
		fprintf(stderr, "\n");                                                \
		exit(1);                                                              \
	} while (0)
#define CHECK(c, ...)                                                                \
	do {                                                                         \
		if (!(c)) {                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);  \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			exit(1);                                                      \
		}                                                                    \
	} while (0)
#define CHECK_INT(a, op, b)                                                          \
	do {                                                                         \
		long long a_ = (long long)(a), b_ = (long long)(b);                  \
		if (!(a_ op b_))                                                     \
			FAIL("%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);         \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	if (!f)
		FAIL("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t p = fork();
	if (p < 0)
		FAIL("fork: %s", strerror(errno));
	if (p == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setpgid(0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	return p;
}

static bool which(const char *prog)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Blocking helpers: the admin socket (non-prompt mode) and HTTP through the frontend        */

static char *admin(const char *cmd)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_unix);
	struct timeval tv = { 2, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		FAIL("admin connect %s: %s", sock_unix, strerror(errno));
	char line[256];
	snprintf(line, sizeof line, "%s\n", cmd);
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
		FAIL("admin write");
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static struct traffic_stat *stat_rows(size_t *n)
{
	char *a = admin("show stat web 4 -1");
	struct traffic_stat *s = NULL;
	char err[256];
	int r = traffic_parse_stat(a, strlen(a), "web", &s, n, err, sizeof err);
	if (r)
		FAIL("show stat: %s", err);
	free(a);
	return s;
}

static const struct traffic_stat *stat_of(struct traffic_stat *s, size_t n,
					  const struct backend *b)
{
	char want[64];
	snprintf(want, sizeof want, "%s:%u", b->addr, b->port);
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].addr, want) == 0)
			return &s[i];
	return NULL;
}

/* GET @path through the frontend; the body (first line) into @out. 0, or -1 on failure. */
static int http_get(const char *path, char *out, size_t cap, int timeout_s)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(fe_port) };
	inet_pton(AF_INET, fe_addr, &sa.sin_addr);
	struct timeval tv = { timeout_s, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	char req[256];
	snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	char buf[4096];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 9, "200", 3) != 0)
		return -1;
	char *body = strstr(buf, "\r\n\r\n");
	if (!body)
		return -1;
	body += 4;
	body[strcspn(body, "\r\n")] = '\0';
	snprintf(out, cap, "%s", body);
	return 0;
}

/* @n requests; per-backend counts into hits[3]; returns failed requests. */
static int spray(int n, int hits[3])
{
	int failed = 0;
	memset(hits, 0, 3 * sizeof *hits);
	for (int i = 0; i < n; i++) {
		char body[64];
		if (http_get("/", body, sizeof body, 3) != 0) {
			failed++;
			continue;
		}
		for (int k = 0; k < 3; k++)
			if (strcmp(body, be[k].name) == 0)
				hits[k]++;
	}
	fprintf(stderr, "  %d requests: a1 %d, a2 %d, b1 %d, failed %d\n", n, hits[0], hits[1],
		hits[2], failed);
	return failed;
}

/* ---------------------------------------------------------------------------------------- */

static void start_backend(struct backend *b)
{
	char root[300], log[300], listen[64];
	snprintf(root, sizeof root, "%s/www-%s", dir, b->name);
	snprintf(log, sizeof log, "%s/httpd-%s.log", dir, b->name);
	snprintf(listen, sizeof listen, "%s:%u", b->addr, b->port);
	char *argv[] = { "busybox", "httpd", "-f", "-p", listen, "-h", root, NULL };
	b->pid = spawn(argv, log);
}

static void stop_backend(struct backend *b)
{
	if (b->pid > 0) {
		kill(b->pid, SIGKILL);
		waitpid(b->pid, NULL, 0);
		b->pid = -1;
	}
}

static void start_haproxy(void)
{
	char cfg[300], log[300];
	snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", dir);
	snprintf(log, sizeof log, "%s/haproxy.log", dir);
	unlink(sock_unix);
	char *argv[] = { "haproxy", "-db", "-f", cfg, NULL };
	hap_pid = spawn(argv, log);
	uint64_t end = now_ms() + 5000;
	struct stat st;
	while (stat(sock_unix, &st) != 0) {
		if (now_ms() > end)
			FAIL("haproxy did not create %s within 5 s (see %s)", sock_unix, log);
		usleep(20000);
	}
}

static void stop_haproxy(void)
{
	if (hap_pid > 0) {
		kill(hap_pid, SIGKILL);
		waitpid(hap_pid, NULL, 0);
		hap_pid = -1;
	}
}

/* ---------------------------------------------------------------------------------------- */
/* The loop                                                                                   */

static uv_loop_t loop;
static int n_synced, n_error, n_command, n_failover, n_unplaced;
static char last_error[512], last_command[512], last_failover[512];
static bool last_failover_on;

static void on_event(const struct traffic_event *ev, void *ud)
{
	const char *who = ud;
	fprintf(stderr, "  [%s] event %d: %s\n", who, ev->kind, ev->message);
	switch (ev->kind) {
	case TRAFFIC_EV_SYNCED: n_synced++; break;
	case TRAFFIC_EV_ERROR:
		n_error++;
		snprintf(last_error, sizeof last_error, "%s", ev->message);
		break;
	case TRAFFIC_EV_COMMAND:
		n_command++;
		snprintf(last_command, sizeof last_command, "%s", ev->message);
		break;
	case TRAFFIC_EV_FAILOVER:
		n_failover++;
		last_failover_on = ev->plan->failover;
		snprintf(last_failover, sizeof last_failover, "%s", ev->message);
		break;
	case TRAFFIC_EV_UNPLACED: n_unplaced++; break;
	}
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *@flag > @above or @ms pass; returns whether it happened. */
static bool run_until(const int *flag, int above, uint64_t ms)
{
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 10, 10);
	uint64_t end = now_ms() + ms;
	while (*flag <= above && now_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return *flag > above;
}

static void run_for(uint64_t ms)
{
	static int never;
	run_until(&never, 0, ms);
}

static struct traffic_endpoint eps[3];
static enum traffic_state states[3];

static void update(struct traffic_lb *lb)
{
	for (int i = 0; i < 3; i++) {
		eps[i] = (struct traffic_endpoint){
			.node = be[i].name, .site = be[i].site, .addr = be[i].addr,
			.port = be[i].port, .weight = 10, .state = states[i], .revision = "r1",
		};
	}
	int r = traffic_lb_update(lb, eps, 3);
	CHECK_INT(r, ==, 0);
}

/* Update and wait for the pass that applies it. */
static void update_synced(struct traffic_lb *lb)
{
	int before = n_synced;
	update(lb);
	if (!run_until(&n_synced, before, 5000))
		FAIL("no SYNCED event within 5 s (last error: %s)", last_error);
}

/* Wait until HAProxy's checks show @status for backend @b's slot. */
static void wait_status(const struct backend *b, const char *status, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	char seen[32] = "(no slot)";
	for (;;) {
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		const struct traffic_stat *x = stat_of(s, n, b);
		if (x)
			snprintf(seen, sizeof seen, "%s", x->status);
		free(s);
		if (strcmp(seen, status) == 0)
			return;
		if (now_ms() > end)
			FAIL("%s: status %s, want %s after %llu ms", b->name, seen, status,
			     (unsigned long long)ms);
		run_for(50);
	}
}

struct sess {
	int calls, err;
	uint32_t scur;
	char slot[64];
};

static void on_sessions(int err, uint32_t scur, const char *slot, void *ud)
{
	struct sess *s = ud;
	s->calls++;
	s->err = err;
	s->scur = scur;
	snprintf(s->slot, sizeof s->slot, "%s", slot ? slot : "");
}

static struct sess sessions(struct traffic_lb *lb, const struct backend *b)
{
	struct sess s = { 0 };
	CHECK_INT(traffic_lb_sessions(lb, b->addr, b->port, on_sessions, &s), ==, 0);
	if (!run_until(&s.calls, 0, 5000))
		FAIL("sessions query did not answer within 5 s");
	return s;
}

static void on_closed(void *ud)
{
	(*(int *)ud)++;
}

static void lb_close(struct traffic_lb *lb)
{
	int closed = 0;
	traffic_lb_close(lb, on_closed, &closed);
	if (!run_until(&closed, 0, 2000))
		FAIL("traffic_lb_close did not call back");
}

/* ---------------------------------------------------------------------------------------- */

int main(void)
{
	if (!which("haproxy")) {
		printf("SKIP: haproxy is not installed (scripts/deps.sh test)\n");
		return SKIP;
	}
	if (!which("busybox")) {
		printf("SKIP: busybox is not installed (scripts/deps.sh test)\n");
		return SKIP;
	}
	setvbuf(stderr, NULL, _IONBF, 0);
	snprintf(dir, sizeof dir, "/tmp/shoal-traffic-XXXXXX");
	if (!mkdtemp(dir))
		FAIL("mkdtemp: %s", strerror(errno));
	atexit(cleanup);
	/* Addresses unique to this run: 127.63.<pid % 250>.x. */
	snprintf(net, sizeof net, "127.63.%d", (int)(getpid() % 250) + 1);

	snprintf(fe_addr, sizeof fe_addr, "%s.1", net);
	snprintf(sock_unix, sizeof sock_unix, "%s/admin.sock", dir);
	snprintf(sock_tcp, sizeof sock_tcp, "%s.1:18099", net);
	for (int i = 0; i < 3; i++) {
		snprintf(be[i].addr, sizeof be[i].addr, "%s.%d", net, 11 + i);
		char path[400], text[256];
		snprintf(path, sizeof path, "%s/www-%s", dir, be[i].name);
		mkdir(path, 0755);
		snprintf(path, sizeof path, "%s/www-%s/cgi-bin", dir, be[i].name);
		mkdir(path, 0755);
		snprintf(path, sizeof path, "%s/www-%s/index.html", dir, be[i].name);
		snprintf(text, sizeof text, "%s\n", be[i].name);
		write_file(path, text, 0644);
		snprintf(path, sizeof path, "%s/www-%s/cgi-bin/slow", dir, be[i].name);
		snprintf(text, sizeof text, "#!/bin/sh\nsleep 2\nprintf 'Content-Type: text/plain"
			 "\\r\\n\\r\\nslow-%s\\n'\n", be[i].name);
		write_file(path, text, 0755);
	}
	char cfg[2048], path[300];
	snprintf(cfg, sizeof cfg,
		 "global\n"
		 "    stats socket %s mode 600 level admin\n"
		 "    stats socket %s level admin\n"
		 "    stats socket %s/user.sock mode 666 level user\n"
		 "defaults\n"
		 "    mode http\n"
		 "    timeout connect 1s\n"
		 "    timeout client 10s\n"
		 "    timeout server 10s\n"
		 "    retries 2\n"
		 "    option redispatch\n"
		 "frontend fe\n"
		 "    bind %s:%u\n"
		 "    default_backend web\n"
		 "backend web\n"
		 "    balance roundrobin\n"
		 "    option httpchk GET /\n"
		 "    server-template s 1-4 127.0.0.1:1 disabled check inter 200ms rise 1 fall 1\n"
		 "backend st\n"
		 "    balance source\n"
		 "    server-template t 1-2 127.0.0.1:1 disabled\n",
		 sock_unix, sock_tcp, dir, fe_addr, fe_port);
	snprintf(path, sizeof path, "%s/haproxy.cfg", dir);
	write_file(path, cfg, 0644);
	for (int i = 0; i < 3; i++)
		start_backend(&be[i]);
	start_haproxy();
	fprintf(stderr, "haproxy pid %d, frontend %s:%u, dir %s\n", (int)hap_pid, fe_addr,
		fe_port, dir);
	uv_loop_init(&loop);

	struct traffic_lb_config c = {
		.socket = sock_unix, .backend = "web", .slot_prefix = "s", .site = "a",
		.failover_permille = 500, .timeout_ms = 1000, .resync_ms = 300, .retry_ms = 100,
	};
	struct traffic_lb *lb;
	CHECK_INT(traffic_lb_new(&loop, &c, on_event, "web", &lb), ==, 0);
	int hits[3];

	/* 1. fill */
	fprintf(stderr, "1. fill: a1 a2 (site a) b1 (site b) healthy, F=0.5\n");
	states[0] = states[1] = states[2] = TRAFFIC_HEALTHY;
	update_synced(lb);
	for (int i = 0; i < 3; i++)
		wait_status(&be[i], "UP", 3000);
	{
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		CHECK_INT(n, ==, 4);
		CHECK_INT(stat_of(s, n, &be[0])->weight, ==, 10);
		CHECK_INT(stat_of(s, n, &be[1])->weight, ==, 10);
		CHECK_INT(stat_of(s, n, &be[2])->weight, ==, 0);	/* remote: standby */
		CHECK(strcmp(s[3].status, "MAINT") == 0, "s4 is %s", s[3].status);
		free(s);
	}
	CHECK_INT(spray(30, hits), ==, 0);
	CHECK_INT(hits[0], >, 0);
	CHECK_INT(hits[1], >, 0);
	CHECK_INT(hits[2], ==, 0);

	/* 2. drain a1 with slow requests in flight */
	fprintf(stderr, "2. drain a1 while slow requests run\n");
	char out[4][300];
	pid_t slow[4];
	for (int i = 0; i < 4; i++) {
		snprintf(out[i], sizeof out[i], "%s/slow-%d.out", dir, i);
		char url[128];
		snprintf(url, sizeof url, "http://%s:%u/cgi-bin/slow", fe_addr, fe_port);
		char *argv[] = { "curl", "-s", "-f", "-m", "10", "-o", out[i], url, NULL };
		char log[300];
		snprintf(log, sizeof log, "%s/curl.log", dir);
		slow[i] = spawn(argv, log);
	}
	/* Let them reach the backends (round robin: a1 a2 a1 a2): wait until a1 has sessions
	 * (each lasts 2 s), however slowly curl starts on a loaded machine. */
	for (uint64_t end = now_ms() + 5000;;) {
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		uint32_t scur = stat_of(s, n, &be[0])->scur;
		free(s);
		if (scur >= 1)
			break;
		if (now_ms() > end)
			FAIL("no slow request reached a1 within 5 s");
		run_for(20);
	}
	states[0] = TRAFFIC_DRAINING;
	update_synced(lb);
	{
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		const struct traffic_stat *a1 = stat_of(s, n, &be[0]);
		CHECK(a1 && strcmp(a1->status, "DRAIN") == 0, "a1 is %s", a1 ? a1->status : "-");
		free(s);
	}
	struct sess q = sessions(lb, &be[0]);
	fprintf(stderr, "  a1 (%s): %u sessions in flight while draining\n", q.slot, q.scur);
	CHECK_INT(q.err, ==, 0);
	CHECK_INT(q.scur, >=, 1);
	CHECK(strcmp(q.slot, "s1") == 0, "a1 in slot %s", q.slot);
	CHECK_INT(spray(20, hits), ==, 0);
	CHECK_INT(hits[0], ==, 0);
	CHECK_INT(hits[1], ==, 20);
	/* The drain wait: poll until a1 has no session left, bounded. */
	uint64_t t0 = now_ms();
	for (;;) {
		q = sessions(lb, &be[0]);
		CHECK_INT(q.err, ==, 0);
		if (q.scur == 0)
			break;
		if (now_ms() - t0 > 6000)
			FAIL("a1 still has %u sessions 6 s into the drain", q.scur);
		run_for(100);
	}
	fprintf(stderr, "  a1 drained (scur 0) %llu ms after the first query\n",
		(unsigned long long)(now_ms() - t0));
	for (int i = 0; i < 4; i++) {
		int st = 0;
		uint64_t end = now_ms() + 12000;
		while (waitpid(slow[i], &st, WNOHANG) == 0) {
			if (now_ms() > end)
				FAIL("slow request %d did not end", i);
			usleep(50000);
		}
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "slow request %d failed (curl %d)", i,
		      WEXITSTATUS(st));
	}
	/* An address no slot holds: -ENOENT. */
	struct backend nobody = { "x", "a", "", 9, -1 };
	snprintf(nobody.addr, sizeof nobody.addr, "%s.99", net);
	q = sessions(lb, &nobody);
	CHECK_INT(q.err, ==, -ENOENT);

	/* 3. failover */
	fprintf(stderr, "3. site a cut off\n");
	states[0] = TRAFFIC_HEALTHY;
	update_synced(lb);
	wait_status(&be[0], "UP", 3000);
	int fo = n_failover;
	stop_backend(&be[0]);
	stop_backend(&be[1]);
	states[0] = states[1] = TRAFFIC_UNHEALTHY;
	update_synced(lb);
	CHECK_INT(n_failover, ==, fo + 1);
	CHECK(last_failover_on, "failover event says local");
	CHECK(strstr(last_failover, "0 of 2 local endpoints healthy"), "message: %s",
	      last_failover);
	{
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		CHECK_INT(stat_of(s, n, &be[2])->weight, ==, 10);
		CHECK(strcmp(stat_of(s, n, &be[0])->status, "MAINT") == 0, "a1 not in maint");
		free(s);
	}
	CHECK_INT(spray(20, hits), ==, 0);
	CHECK_INT(hits[2], ==, 20);

	/* 4. fail-back */
	fprintf(stderr, "4. site a back\n");
	start_backend(&be[0]);
	start_backend(&be[1]);
	run_for(300);
	states[0] = states[1] = TRAFFIC_HEALTHY;
	update_synced(lb);
	CHECK_INT(n_failover, ==, fo + 2);
	CHECK(!last_failover_on, "fail-back event says failover");
	wait_status(&be[0], "UP", 3000);
	wait_status(&be[1], "UP", 3000);
	CHECK_INT(spray(30, hits), ==, 0);
	CHECK_INT(hits[0], >, 0);
	CHECK_INT(hits[1], >, 0);
	CHECK_INT(hits[2], ==, 0);

	/* 5. HAProxy restarted: the resync pass refills the slots with no update. */
	fprintf(stderr, "5. haproxy restarted\n");
	stop_haproxy();
	start_haproxy();
	t0 = now_ms();
	for (;;) {
		run_for(50);
		size_t n;
		struct traffic_stat *s = stat_rows(&n);
		const struct traffic_stat *a1 = stat_of(s, n, &be[0]), *a2 = stat_of(s, n, &be[1]),
					  *b1 = stat_of(s, n, &be[2]);
		bool ok = a1 && a2 && b1 && a1->weight == 10 && b1->weight == 0 &&
			  strcmp(a1->status, "UP") == 0 && strcmp(a2->status, "UP") == 0;
		free(s);
		if (ok)
			break;
		if (now_ms() - t0 > 5000)
			FAIL("backend not refilled 5 s after haproxy restarted");
	}
	fprintf(stderr, "  refilled and UP %llu ms after the restart (resync every 300 ms)\n",
		(unsigned long long)(now_ms() - t0));
	CHECK_INT(spray(20, hits), ==, 0);
	CHECK_INT(hits[2], ==, 0);

	/* 8. Under load: wrk through the frontend while the driver drains, fails over and
	 *    back (the backends stay up): the runtime API changes nothing a client sees. */
	if (which("wrk")) {
		fprintf(stderr, "8. wrk -t1 -c4 -d5s while the driver drains, fails over and back\n");
		char url[128], wlog[300];
		snprintf(url, sizeof url, "http://%s:%u/", fe_addr, fe_port);
		snprintf(wlog, sizeof wlog, "%s/wrk.out", dir);
		unlink(wlog);
		char *argv[] = { "wrk", "-t1", "-c4", "-d5s", url, NULL };
		pid_t w = spawn(argv, wlog);
		run_for(700);
		enum traffic_state seq[][3] = {
			{ TRAFFIC_DRAINING, TRAFFIC_HEALTHY, TRAFFIC_HEALTHY },
			{ TRAFFIC_HEALTHY, TRAFFIC_HEALTHY, TRAFFIC_HEALTHY },
			{ TRAFFIC_UNHEALTHY, TRAFFIC_UNHEALTHY, TRAFFIC_HEALTHY },
			{ TRAFFIC_HEALTHY, TRAFFIC_DRAINING, TRAFFIC_HEALTHY },
			{ TRAFFIC_HEALTHY, TRAFFIC_HEALTHY, TRAFFIC_HEALTHY },
		};
		for (size_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
			memcpy(states, seq[k], sizeof states);
			update_synced(lb);
			run_for(700);
		}
		int st = 0;
		uint64_t end = now_ms() + 10000;
		while (waitpid(w, &st, WNOHANG) == 0) {
			if (now_ms() > end)
				FAIL("wrk did not end");
			run_for(50);
		}
		char *wout = NULL;
		{
			FILE *f = fopen(wlog, "r");
			CHECK(f, "no wrk output");
			wout = calloc(1, 8192);
			size_t n = fread(wout, 1, 8191, f);
			wout[n] = 0;
			fclose(f);
		}
		fprintf(stderr, "%s", wout);
		long reqs = 0;
		char *p = strstr(wout, " requests in ");
		while (p && p > wout && p[-1] >= '0' && p[-1] <= '9')
			p--;
		if (p)
			reqs = strtol(p, NULL, 10);
		CHECK_INT(reqs, >, 100);
		CHECK(!strstr(wout, "Non-2xx"), "wrk saw failed responses");
		CHECK(!strstr(wout, "Socket errors"), "wrk saw socket errors");
		free(wout);
	} else {
		fprintf(stderr, "8. skipped: wrk is not installed\n");
	}

	/* 7. TCP stats socket */
	fprintf(stderr, "7. sessions over the TCP stats socket\n");
	struct traffic_lb_config ct = c;
	ct.socket = sock_tcp;
	struct traffic_lb *lbt;
	CHECK_INT(traffic_lb_new(&loop, &ct, on_event, "tcp", &lbt), ==, 0);
	q = sessions(lbt, &be[1]);
	CHECK_INT(q.err, ==, 0);
	CHECK(strcmp(q.slot, "s2") == 0, "a2 in slot %s", q.slot);
	lb_close(lbt);

	/* 6. errors in words */
	fprintf(stderr, "6. errors\n");
	struct traffic_lb_config ce = c;
	char missing[100];
	snprintf(missing, sizeof missing, "%s/nothing.sock", dir);
	ce.socket = missing;
	struct traffic_lb *lbe;
	CHECK_INT(traffic_lb_new(&loop, &ce, on_event, "missing", &lbe), ==, 0);
	int err0 = n_error;
	update(lbe);
	CHECK(run_until(&n_error, err0, 3000), "no error event for a missing socket");
	CHECK(strstr(last_error, "nothing.sock: no such file or directory"), "message: %s",
	      last_error);
	/* Retries do not repeat the same report. */
	run_for(600);
	CHECK_INT(n_error, ==, err0 + 1);
	lb_close(lbe);

	/* A socket file with no HAProxy behind it (what a stopped HAProxy leaves), and a TCP
	 * port nobody listens on: connection refused. */
	char stale[100];
	snprintf(stale, sizeof stale, "%s/stale.sock", dir);
	{
		int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un ss = { .sun_family = AF_UNIX };
		snprintf(ss.sun_path, sizeof ss.sun_path, "%s", stale);
		CHECK_INT(bind(sfd, (struct sockaddr *)&ss, sizeof ss), ==, 0);
		close(sfd);
	}
	char refused_tcp[64];
	snprintf(refused_tcp, sizeof refused_tcp, "tcp:%s.1:18098", net);
	const char *refusing[] = { stale, refused_tcp };
	for (int k = 0; k < 2; k++) {
		ce.socket = refusing[k];
		CHECK_INT(traffic_lb_new(&loop, &ce, on_event, "refused", &lbe), ==, 0);
		err0 = n_error;
		update(lbe);
		CHECK(run_until(&n_error, err0, 3000), "no error event for %s", refusing[k]);
		CHECK(strstr(last_error, ": connection refused"), "message: %s", last_error);
		lb_close(lbe);
	}

	/* A socket that accepts and never answers: a timeout, in words. */
	char mute[100];
	snprintf(mute, sizeof mute, "%s/mute.sock", dir);
	int mfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	snprintf(su.sun_path, sizeof su.sun_path, "%s", mute);
	CHECK_INT(bind(mfd, (struct sockaddr *)&su, sizeof su), ==, 0);
	CHECK_INT(listen(mfd, 8), ==, 0);
	ce.socket = mute;
	ce.timeout_ms = 300;
	CHECK_INT(traffic_lb_new(&loop, &ce, on_event, "mute", &lbe), ==, 0);
	err0 = n_error;
	uint64_t ts = now_ms();
	update(lbe);
	CHECK(run_until(&n_error, err0, 3000), "no error event for a mute socket");
	CHECK(strstr(last_error, "did not answer 'prompt' within 300 ms"), "message: %s",
	      last_error);
	fprintf(stderr, "  timeout reported after %llu ms\n", (unsigned long long)(now_ms() - ts));
	/* A pending query is cancelled by close. */
	struct sess qc = { 0 };
	CHECK_INT(traffic_lb_sessions(lbe, be[0].addr, be[0].port, on_sessions, &qc), ==, 0);
	lb_close(lbe);
	CHECK_INT(qc.calls, ==, 1);
	CHECK_INT(qc.err, ==, -ECANCELED);
	close(mfd);

	/* A backend whose algorithm refuses weights: HAProxy's refusal, in words. */
	struct traffic_lb_config cs = c;
	cs.backend = "st";
	cs.slot_prefix = "t";
	CHECK_INT(traffic_lb_new(&loop, &cs, on_event, "st", &lbe), ==, 0);
	int cmd0 = n_command;
	err0 = n_error;
	update(lbe);
	CHECK(run_until(&n_command, cmd0, 3000), "no command refusal reported");
	CHECK(strstr(last_command, "haproxy refused 'set weight st/t1 10': Backend is using a "
		     "static LB algorithm"), "message: %s", last_command);
	CHECK(run_until(&n_error, err0, 3000), "no 'not in step' error");
	CHECK(strstr(last_error, "backend st not in step"), "message: %s", last_error);
	/* Retried (100, 200, 400 ms ...), refused again each time, reported once. */
	struct traffic_lb_stats sst;
	run_for(1000);
	traffic_lb_stats(lbe, &sst);
	CHECK_INT(sst.failed, >=, 3);
	CHECK_INT(sst.refused, >=, 6);
	CHECK_INT(n_command, ==, cmd0 + 2);
	lb_close(lbe);

	/* A socket below level admin: HAProxy answers "Permission denied"; the event says what
	 * to change. */
	char usock[100];
	snprintf(usock, sizeof usock, "%s/user.sock", dir);
	struct traffic_lb_config cu = c;
	cu.socket = usock;
	CHECK_INT(traffic_lb_new(&loop, &cu, on_event, "user", &lbe), ==, 0);
	cmd0 = n_command;
	states[0] = TRAFFIC_DRAINING;	/* something to change */
	update(lbe);
	CHECK(run_until(&n_command, cmd0, 3000), "no refusal on a level user socket");
	CHECK(strstr(last_command, "haproxy refused 'set server web/s1 state drain': Permission "
		     "denied (the stats socket needs 'level admin')"), "message: %s", last_command);
	lb_close(lbe);
	states[0] = TRAFFIC_HEALTHY;

	/* A socket the agent's user may not open (mode 600, root's): a child as nobody. */
	if (geteuid() == 0) {
		pid_t child = fork();
		CHECK(child >= 0, "fork");
		if (child == 0) {
			if (setgid(65534) != 0 || setuid(65534) != 0)
				_exit(3);
			uv_loop_t l2;
			uv_loop_init(&l2);
			struct traffic_lb *lbn;
			if (traffic_lb_new(&l2, &c, on_event, "nobody", &lbn) != 0)
				_exit(4);
			int e0 = n_error;
			update(lbn);
			uv_timer_t t;
			uv_timer_init(&l2, &t);
			uv_timer_start(&t, tick_cb, 10, 10);
			uint64_t end = now_ms() + 3000;
			while (n_error == e0 && now_ms() < end)
				uv_run(&l2, UV_RUN_ONCE);
			_exit(n_error > e0 && strstr(last_error, ": permission denied") ? 0 : 5);
		}
		int cst = 0;
		waitpid(child, &cst, 0);
		CHECK(WIFEXITED(cst) && WEXITSTATUS(cst) == 0, "nobody's driver: exit %d",
		      WEXITSTATUS(cst));
	} else {
		fprintf(stderr, "  (not root: the permission-denied case is not run)\n");
	}

	struct traffic_lb_stats st;
	traffic_lb_stats(lb, &st);
	fprintf(stderr, "driver web: %llu passes, %llu failed, %llu commands, %llu refused\n",
		(unsigned long long)st.passes, (unsigned long long)st.failed,
		(unsigned long long)st.commands, (unsigned long long)st.refused);
	CHECK_INT(st.refused, ==, 0);
	lb_close(lb);
	CHECK_INT(uv_loop_close(&loop), ==, 0);
	printf("PASS\n");
	return 0;
}
