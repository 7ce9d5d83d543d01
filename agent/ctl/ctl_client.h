/*
 * agent/ctl/ctl_client.h: agentctl's side of the control socket (ctl_proto.h has the frames).
 *
 * Blocking client code for the agentctl binary (client/agentctl.c and the fleet's commands in
 * client/fleet_cmds.c): one request per connection, every step bounded by poll() deadlines.
 * Errors are printed to stderr as "agentctl: ..." and mapped to agentctl's exit statuses.
 * In ctl/ with the server because both ends of the protocol change together; agentd never
 * calls it (the linker leaves it out of the daemon).
 */
#ifndef SHOAL_CTL_CLIENT_H
#define SHOAL_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/ctl/ctl_proto.h"

/* agentctl's exit statuses (agentctl.1). */
enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_UNREACHABLE = 4 };

struct ctl_client {
	const char *socket;	/* borrowed */
	bool json;		/* the caller prints JSON (not used by the client itself) */
	uint64_t timeout_ms;	/* the --timeout of the command */
	/* the last call: */
	uint64_t deadline_ms;	/* monotonic */
	int fd;			/* -1 when closed */
	uint8_t *resp_buf;
	struct ctl_response resp;	/* borrows resp_buf; valid when have_resp */
	bool have_resp;
};

/* Fill @c for @socket: no connection, no response. */
void ctl_client_init(struct ctl_client *c, const char *socket, bool json, uint64_t timeout_ms);

/*
 * Send the request in @e (finished here) on a new connection and read one response into
 * c->resp; the previous response and connection are released first. The whole exchange is
 * bounded by @timeout_ms. @return EXIT_DONE when a well-formed response arrived (ok or not:
 * see c->resp.ok); otherwise the error is printed and EXIT_USAGE (socket path too long),
 * EXIT_UNREACHABLE, EXIT_TIMEOUT or EXIT_FAILED.
 */
int ctl_client_call(struct ctl_client *c, struct ctl_enc *e, uint64_t timeout_ms);

/*
 * Ask the agent for artifact @id ("artifact.fetch", from @from[0..nfrom) or, with nfrom 0,
 * every live member) and poll it every 100 ms, each poll a new call, until the artifact is
 * present, the fetch failed, or c->timeout_ms has passed (each call bounded by the time left).
 * @return as ctl_client_call, with c->resp the last answer: ctl_client_fetching(c) when the time ran out.
 */
int ctl_client_fetch(struct ctl_client *c, const char *id, const char *const *from, size_t nfrom);

/* c->resp is an ok answer of artifact.fetch whose state is still "fetching". */
bool ctl_client_fetching(const struct ctl_client *c);

/* Release the response and close the connection. Idempotent. */
void ctl_client_release(struct ctl_client *c);

/* "agentctl: " + the message + newline on stderr. */
void ctl_client_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in ms; sleep @ms. */
uint64_t ctl_client_now_ms(void);
void ctl_client_sleep_ms(unsigned ms);

#endif
