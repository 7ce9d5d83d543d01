/*
 * agent/daemon/metrics.h: the Prometheus text endpoint of agentd (--metrics ADDR:PORT).
 *
 * A tiny HTTP/1.x server on the agent's loop (agent/daemon/http_serve.h): `GET /metrics` (query
 * string ignored) answers the text exposition format 0.0.4 with gossip counters (packets and
 * bytes in/out, drops by reason, members by state, probes, suspicions), store statistics and
 * control-socket figures; any other path is 404, any other method 405. One request per
 * connection (Connection: close). Requests are bounded (METRICS_REQUEST_MAX - 1 bytes of head,
 * METRICS_TIMEOUT_MS to deliver it, and again to write the answer) and at most METRICS_CLIENTS
 * connections are served at once (more are closed at accept). The store figures are read on
 * the threadpool (store_stats walks the chunk table), everything else on the loop.
 *
 * The endpoint is off unless --metrics is given; it has no authentication, so bind it to a
 * loopback address (the documented default is 127.0.0.1:9464) or a management network.
 *
 * Threads: loop thread only. Errors: negative errno.
 */
#ifndef SHOAL_AGENT_METRICS_H
#define SHOAL_AGENT_METRICS_H

#include <stddef.h>
#include <uv.h>

#define METRICS_REQUEST_MAX 4096
#define METRICS_TIMEOUT_MS  5000
#define METRICS_CLIENTS	    16

struct agent;
struct metrics;

/*
 * Listen on @addr ("IP:PORT" or "[IPv6]:PORT", numeric) and serve @a's figures (borrowed: @a
 * must outlive the endpoint). @return 0 and *ret; -EINVAL (bad address); -EADDRINUSE,
 * -EACCES, ... (bind/listen); -ENOMEM. @err gets one line. Nothing to close on failure.
 */
int metrics_new(uv_loop_t *loop, struct agent *a, const char *addr, struct metrics **ret,
		char *err, size_t errlen);

/*
 * Stop listening, close every connection, wait for a store read in flight, then call @cb(@ud)
 * from the loop; @m is freed right before. Accepts NULL (then @cb is not called); a second
 * call is a no-op.
 */
void metrics_close(struct metrics *m, void (*cb)(void *ud), void *ud);

/* Render the loop-side part of the exposition text (everything but the store figures) into a
 * malloc()ed NUL-terminated string. Loop thread. @return NULL on ENOMEM. */
char *metrics_render(struct agent *a);

#endif
