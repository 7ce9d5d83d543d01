/*
 * agent/daemon/catalog.h: the read API for load balancers and tools (--http-api ADDR:PORT,
 * issue 14): the cluster's endpoints over HTTP, from any node.
 *
 *   GET /v1/catalog           {"index":N,"services":{"web":[ENDPOINT,...],...}}
 *   GET /v1/catalog/SERVICE   {"index":N,"service":"web","endpoints":[ENDPOINT,...]}
 *                             (a service nobody serves: an empty list, not 404, so a
 *                             consumer can wait for its first endpoint)
 *   GET /v1/http_sd           Prometheus HTTP service discovery: healthy endpoints only,
 *                             one target group per (service, site, revision):
 *                             [{"targets":["10.0.0.5:8080",...],"labels":{"service":"web",
 *                             "site":"par1","revision":"7"}},...]
 *
 *   ENDPOINT = {"node":..,"site":..,"address":..,"port":..,"weight":..,"protocol":"http",
 *               "state":"healthy|starting|draining|unhealthy","revision":N,"down":false}
 *
 * Every answer carries X-Shoal-Index: the catalog's index (agent/fleet/endpoints.h). Long-poll,
 * as Consul's blocking queries: `?index=N` answers at once when the index differs from N (a
 * smaller index after an agent restart included), else holds the request until the catalog
 * changes or `wait` passes (default 30s, at most 5m: `wait=10s`, `500ms`, `2m`), then answers
 * with the current state either way. At most CATALOG_PARKED_MAX requests wait at once; the next
 * one gets 429 with Retry-After: 1. Consumers should also add jitter to their own retries.
 *
 * Strict request parsing (catalog_parse_request, fuzzed by tests/fuzz/fuzz_catalog_request.c):
 * HTTP/1.0 or 1.1, method GET (HEAD and others: 405), one of the paths above (404 otherwise;
 * service names as in release.ini), query keys index and wait only, each at most once, no
 * percent-encoding, no fragment, no request body (Content-Length other than 0 or any
 * Transfer-Encoding: 400), header lines "Name: value" with token names, the whole head at most
 * CATALOG_HEAD_MAX bytes (431 beyond) delivered within CATALOG_TIMEOUT_MS, the answer written
 * within CATALOG_TIMEOUT_MS too. One request per connection (Connection: close). At most
 * CATALOG_CLIENTS connections. The socket side is agent/daemon/http_serve.h's.
 *
 * No authentication and no TLS: bind it to loopback (the documented choice) or a management
 * network. Loop thread only. Errors: negative errno.
 */
#ifndef SHOAL_AGENT_CATALOG_H
#define SHOAL_AGENT_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CATALOG_HEAD_MAX     4096
#define CATALOG_TIMEOUT_MS   5000
#define CATALOG_CLIENTS	     512
#define CATALOG_PARKED_MAX   256
#define CATALOG_WAIT_DEFAULT 30000
#define CATALOG_WAIT_MAX     300000

struct agent;
struct catalog_http;

enum catalog_path {
	CATALOG_ALL = 1,	/* /v1/catalog */
	CATALOG_SERVICE = 2,	/* /v1/catalog/SERVICE */
	CATALOG_HTTP_SD = 3,	/* /v1/http_sd */
};

struct catalog_req {
	enum catalog_path path;
	char service[65];	/* CATALOG_SERVICE */
	bool has_index;
	uint64_t index;
	uint64_t wait_ms;	/* CATALOG_WAIT_DEFAULT unless given; only with has_index */
};

/*
 * Parse one request head (@len bytes, up to and including the blank line; bytes after it are
 * refused as a body). @return 0 and *ret; else the HTTP status to answer (400, 404, 405, 414,
 * 431, 505) with a reason in @err. Pure.
 */
int catalog_parse_request(const char *buf, size_t len, struct catalog_req *ret, char *err,
			  size_t errlen);

/* Does @buf hold a complete head (a blank line)? Returns its length, or 0. */
size_t catalog_head_len(const char *buf, size_t len);

/*
 * Listen on @addr (numeric "IP:PORT" / "[IPv6]:PORT") and serve the catalog of @a->fleet.
 * @return 0 and *ret; -EINVAL; bind/listen errors; -ENOMEM; @err gets one line.
 */
int catalog_http_new(uv_loop_t *loop, struct agent *a, const char *addr,
		     struct catalog_http **ret, char *err, size_t errlen);
/* The catalog changed (its index is @index): answer the waiting requests. NULL is fine. */
void catalog_http_changed(struct catalog_http *h, uint64_t index);
/* Stop listening, close every connection, then @cb(@ud) from the loop. NULL is fine. */
void catalog_http_close(struct catalog_http *h, void (*cb)(void *ud), void *ud);

/* Render an answer body (malloc'd, NUL-terminated) for @req from the fleet; NULL on ENOMEM.
 * Exposed for tests. */
struct fleet;
char *catalog_render(struct fleet *f, const struct catalog_req *req, uint64_t *ret_index);

#endif
