/*
 * agent/ctl/ctl_client.c: agentctl's side of the control socket (see ctl_client.h).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/ctl/ctl_client.h"

void ctl_client_errf(const char *fmt, ...)
{
	va_list ap;
	fputs("agentctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

uint64_t ctl_client_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ctl_client_sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

void ctl_client_init(struct ctl_client *c, const char *socket, bool json, uint64_t timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->socket = socket;
	c->json = json;
	c->timeout_ms = timeout_ms;
	c->fd = -1;
}

/* Wait for @events until the deadline. 0 ready, -ETIMEDOUT, -errno. */
static int wait_fd(struct ctl_client *c, short events)
{
	for (;;) {
		uint64_t now = ctl_client_now_ms();
		if (now >= c->deadline_ms)
			return -ETIMEDOUT;
		uint64_t left = c->deadline_ms - now;
		struct pollfd p = {.fd = c->fd, .events = events};
		int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

static int ctl_connect(struct ctl_client *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(c->socket) >= sizeof sa.sun_path) {
		ctl_client_errf("socket path too long: %s", c->socket);
		return EXIT_USAGE;
	}
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		ctl_client_errf("socket: %s", strerror(errno));
		return EXIT_FAILED;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		if (e == EAGAIN || e == EINPROGRESS) {
			/* Listener's backlog full: the agent lives but is swamped. */
			ctl_client_errf("agent at %s is not accepting connections (backlog full)",
			         c->socket);
			return EXIT_UNREACHABLE;
		}
		ctl_client_errf("cannot reach the agent at %s: %s%s", c->socket, strerror(e),
		         e == ENOENT || e == ECONNREFUSED ? " (is agentd running?)"
		         : e == EACCES ? " (are you in the socket's group?)" : "");
		return EXIT_UNREACHABLE;
	}
	return EXIT_DONE;
}

static int send_all(struct ctl_client *c, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_fd(c, POLLOUT);
			if (r < 0)
				return r;
			continue;
		}
		return w < 0 ? -errno : -EPIPE;
	}
	return 0;
}

static int recv_all(struct ctl_client *c, uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			int r = wait_fd(c, POLLIN);
			if (r < 0)
				return r;
			continue;
		}
		return -errno;
	}
	return 0;
}

static int transport_error(int r, uint64_t timeout_ms, const char *what)
{
	if (r == -ETIMEDOUT) {
		ctl_client_errf("timed out after %llu ms waiting for the agent "
		         "(use --timeout to wait longer)", (unsigned long long)timeout_ms);
		return EXIT_TIMEOUT;
	}
	ctl_client_errf("%s: %s", what,
	         r == -ECONNRESET ? "the agent closed the connection" : strerror(-r));
	return EXIT_FAILED;
}

int ctl_client_call(struct ctl_client *c, struct ctl_enc *e, uint64_t timeout_ms)
{
	const uint8_t *buf;
	size_t len;
	uint8_t hdr[CTL_FRAME_HDR];
	uint32_t plen = 0;
	int r = ctl_enc_finish(e, &buf, &len);
	if (r < 0) {
		ctl_client_errf("cannot encode the request: %s", strerror(-r));
		return EXIT_FAILED;
	}
	ctl_client_release(c);
	c->deadline_ms = ctl_client_now_ms() + timeout_ms;
	int x = ctl_connect(c);
	if (x != EXIT_DONE)
		return x;
	r = send_all(c, buf, len);
	if (r < 0)
		return transport_error(r, timeout_ms, "sending the request");
	r = recv_all(c, hdr, sizeof hdr);
	if (r < 0)
		return transport_error(r, timeout_ms, "reading the response");
	r = ctl_frame_peek(hdr, sizeof hdr, CTL_FRAME_MAX_LIMIT, &plen);
	if (r != 1) {
		ctl_client_errf("the agent sent a malformed response (frame length %u)", plen);
		return EXIT_FAILED;
	}
	c->resp_buf = malloc(plen);
	if (!c->resp_buf) {
		ctl_client_errf("out of memory");
		return EXIT_FAILED;
	}
	r = recv_all(c, c->resp_buf, plen);
	if (r < 0)
		return transport_error(r, timeout_ms, "reading the response");
	r = ctl_response_decode(c->resp_buf, plen, &c->resp);
	if (r < 0) {
		ctl_client_errf("the agent sent a malformed response");
		return EXIT_FAILED;
	}
	c->have_resp = true;
	return EXIT_DONE;
}

bool ctl_client_fetching(const struct ctl_client *c)
{
	const msgpack_object *st = c->have_resp && c->resp.ok ? ctl_map_get(c->resp.result, "state")
							      : NULL;
	return st && ctl_obj_streq(st, "fetching");
}

int ctl_client_fetch(struct ctl_client *c, const char *id, const char *const *from, size_t nfrom)
{
	uint64_t deadline = ctl_client_now_ms() + c->timeout_ms, attempt = 0;

	for (;;) {
		struct ctl_enc e;
		uint64_t now = ctl_client_now_ms();

		ctl_enc_init(&e);
		ctl_enc_request(&e, "artifact.fetch", true);
		ctl_enc_map(&e, (nfrom ? 2 : 1) + (attempt ? 1 : 0));
		ctl_kv_str(&e, "id", id);
		if (attempt) { /* our transfer: its failure, and no one else's, comes back */
			ctl_enc_str(&e, "attempt");
			ctl_enc_uint(&e, attempt);
		}
		if (nfrom) {
			ctl_enc_str(&e, "from");
			ctl_enc_array(&e, (uint32_t)nfrom);
			for (size_t i = 0; i < nfrom; i++)
				ctl_enc_str(&e, from[i]);
		}
		int x = ctl_client_call(c, &e, deadline > now ? deadline - now : 1);
		ctl_enc_release(&e);
		if (x != EXIT_DONE || !ctl_client_fetching(c) || ctl_client_now_ms() >= deadline)
			return x;
		const msgpack_object *a = ctl_map_get(c->resp.result, "attempt");
		if (a && a->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			attempt = a->via.u64;
		ctl_client_sleep_ms(100);
	}
}

void ctl_client_release(struct ctl_client *c)
{
	if (c->have_resp)
		ctl_response_release(&c->resp);
	c->have_resp = false;
	free(c->resp_buf);
	c->resp_buf = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

