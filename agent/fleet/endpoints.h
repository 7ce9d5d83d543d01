/*
 * agent/fleet/endpoints.h: the cluster's catalog of service endpoints (issue 14), over gossip.
 *
 * What it is
 * ----------
 * A service whose running artifact has an [endpoint] section (store/store.h struct
 * store_endpoint) is reachable on this node at an address and port. Every node publishes, per
 * such service, ONE gossip record of its own:
 *
 *     key            owner   value
 *     ep/<service>   node    'S' 4 | 'P' | msgpack [node s, site s, service s, addr s,
 *                                                   port u, weight u, protocol u, state u,
 *                                                   rev u, hlc u, sig bin64, stamp u]
 *
 * Signed (agent/base/sign.h): sig is the owner's node key over fleet_endpoint_msg, which
 * covers the owner's id, every field of the record and the stamp, the owner's hlc when it
 * signed this content. A record is signed once per content: published again unchanged (over
 * a forged copy, say) it keeps its stamp and signature. The fleet takes another node's record
 * only if it verifies against the key bound to its owner and its stamp is not older than the
 * one held for (owner, service): a cluster key holder cannot put an address of its choice, or
 * a false state, into every load balancer's backend for another node, nor replay that node's
 * older record. A record whose owner's key is not bound yet is held back and examined again
 * at the next roster change or resync. A node that sees a record in its own name that it did
 * not sign publishes its own again, above it (at most once per second).
 *
 * Versions: the unsigned form, 'S' 3 | 'P' with the first ten fields (until 2026-12-06), still
 * decodes (sig all zero, stamp 0) and the fleet refuses it as unsigned; an agent of that form
 * refuses the signed one as another version (-EPROTONOSUPPORT): upgrade a cluster all at once.
 * Version 4 is the endpoint record's own: the other fleet records stay version 3 (records.h).
 *
 * and keeps, from everybody's records, the catalog: one endpoint per (node, service). A record
 * with port 0 withdraws the node's endpoint (the service stopped, or its new artifact has no
 * [endpoint]). The record is its own key, not a field of health/<service>, so that a load
 * balancer's view changes only when an endpoint does, and older agents ignore it (-ENOENT key).
 *
 * The address is the manifest's `address`, else the host part of this node's advertised gossip
 * address (--advertise; "127.0.0.1" without gossip).
 *
 * States (the same numbers as traffic/traffic.h enum traffic_state):
 *
 *   starting   the instance runs and has not passed its first health check yet
 *   healthy    its last check passed (also: unhealthy with [recovery] remove_unhealthy = false,
 *              which keeps serving while the cluster decides)
 *   draining   a swap (or a stop, or a rollback) is about to stop it: load balancers send no
 *              new requests; see "Drain" below
 *   unhealthy  failed its checks or its runtime gave up, with remove_unhealthy (the default)
 *
 * In the catalog a node that gossip says is dead or has left shows its endpoint as unhealthy
 * (`down` true): traffic leaves a killed node within the failure-detection time even though its
 * own record can no longer change.
 *
 * The index: a counter that grows by one each time the catalog as served (effective states
 * included) changes; the HTTP read API's long-poll waits on it (X-Shoal-Index). It starts at 1
 * and is per agent run: a consumer that sees it go down (agent restart) re-reads.
 *
 * Drain
 * -----
 * The reconciler calls before_stop before the first step of a swap that stops the running
 * instance (reconcile.h). If the running artifact has an endpoint, the fleet marks it draining
 * (published at once), and waits, bounded by the manifest's drain time, until the local load
 * balancer reports no sessions on it (hooks.sessions, polled every 100 ms after a first
 * DRAIN_SETTLE_MS that lets gossip carry the state to every load balancer); without a local
 * load balancer for the service (sessions answers -ENOENT) it waits the whole drain time. Then
 * the swap goes on; the endpoint stays draining until the swap ends, becomes `starting` with
 * the new instance and `healthy` at its first passed check. Events: "drain web: 3 sessions on
 * 10.0.0.5:8080, waiting up to 10 s", "drain web: drained in 1.2 s", "drain web: timed out
 * after 10 s with 2 sessions".
 *
 * Loop and threads: everything on the fleet's loop. Codec functions are pure.
 */
#ifndef SHOAL_FLEET_ENDPOINTS_H
#define SHOAL_FLEET_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/ctl/ctl_args.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/ctl/ctl_server.h"
#include "store/store.h"

struct fleet;

#define FLEET_REC_ENDPOINT 'P'
#define FLEET_EP_VERSION   4		/* signed; 3 (FLEET_REC_VERSION) = the unsigned form */
#define FLEET_EP_ADDR_MAX  46		/* INET6_ADDRSTRLEN */
#define FLEET_EP_DRAIN_SETTLE_MS 500	/* a drain's first wait: gossip reaches the LBs */

enum fleet_ep_state {
	FLEET_EP_STARTING = 0,
	FLEET_EP_HEALTHY = 1,
	FLEET_EP_DRAINING = 2,
	FLEET_EP_UNHEALTHY = 3,
};
/* "starting", "healthy", "draining", "unhealthy"; "?" otherwise. */
const char *fleet_ep_state_name(int s);

struct fleet_endpoint {
	uint8_t node_id[STORE_NODE_ID_LEN];	/* the record's owner (not in the value) */
	char node[65];
	char site[65];				/* "" = none */
	char service[65];
	char addr[FLEET_EP_ADDR_MAX];		/* numeric IPv4/IPv6 */
	uint16_t port;				/* 1..65535; 0 in a record = withdrawn */
	uint16_t weight;			/* 0..256 */
	uint8_t protocol;			/* enum store_endpoint_protocol */
	uint8_t state;				/* enum fleet_ep_state, effective in the catalog */
	uint64_t rev;				/* the revision the instance runs */
	uint64_t hlc;				/* when the owner wrote it */
	bool down;				/* catalog only: the owner is dead or left */
	uint64_t stamp;				/* the owner's hlc when it signed this content
						 * (a receiver keeps the newest per owner and
						 * service; today equal to hlc: a record is
						 * written only when its content changes) */
	uint8_t sig[STORE_SIG_LEN];		/* by the owner's node key over
						 * fleet_endpoint_msg; all zero: unsigned */
};

/*
 * Codec. encode: 0 and a malloc'd value of the signed form (version 4; sig and stamp as they
 * are in @e); -EINVAL (strings not terminated, a bad state or protocol, weight > 256).
 * decode: 0 and *ret (node_id zeroed, down false; sig all zero and stamp 0 for the unsigned
 * version 3 form); -EBADMSG for anything malformed (wrong magic/type, field count, types, a
 * string too long or with a NUL, an address that is not numeric, weight > 256, state > 3,
 * port 0 with a non-empty address, a sig that is not 64 bytes of bin); -EPROTONOSUPPORT
 * (another record version). Fields appended after the known ones are ignored. key_parse: 0
 * and the service for "ep/<service>"; -ENOENT for a key of another namespace; -EBADMSG for a
 * malformed ep/ key.
 */
int fleet_endpoint_encode(const struct fleet_endpoint *e, uint8_t **ret_buf, size_t *ret_len);
int fleet_endpoint_decode(const uint8_t *buf, size_t len, struct fleet_endpoint *ret);
/*
 * The bytes an endpoint record's owner signs: "shoal-endpnt-v1\0", the owner's id, len u8 +
 * node, len u8 + site, len u8 + service, len u8 + addr, port be16, weight be16, protocol u8,
 * state u8, rev be64, hlc be64, stamp be64. Returns their length (<= FLEET_EP_MSG_MAX).
 * Pure; strings are read up to their capacity.
 */
#define FLEET_EP_MSG_MAX (16 + STORE_NODE_ID_LEN + 3 * (1 + 64) + 1 + FLEET_EP_ADDR_MAX - 1 + \
			  2 + 2 + 1 + 1 + 8 + 8 + 8)
size_t fleet_endpoint_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_endpoint *e,
			  uint8_t out[FLEET_EP_MSG_MAX]);
int fleet_ep_key_parse(const void *key, size_t klen, char service[65]);
/* "ep/<service>" into @buf (>= 68 bytes); its length or -EINVAL. */
int fleet_ep_key_format(const char *service, char *buf, size_t len);

/*
 * What the agent gives the fleet (daemon/lb_wiring.c and catalog.c). All may be NULL.
 *  changed(ud, index)   the catalog changed (called at once, on the loop; debounce yourself)
 *  sessions(ud, service, addr, port, done, cbud)   ask the local load balancer for the
 *      sessions of @service's endpoint at @addr:@port: return 0 and call done(cbud, err, scur)
 *      exactly once later on the loop, or return -ENOENT when no local load balancer serves
 *      @service (the drain then waits its whole time) or another negative errno.
 *  event(ud, ...)      not used by the fleet (reserved)
 */
typedef void fleet_ep_sessions_done(void *cbud, int err, uint32_t scur);
struct fleet_ep_hooks {
	void (*changed)(void *ud, uint64_t index);
	int (*sessions)(void *ud, const char *service, const char *addr, uint16_t port,
			fleet_ep_sessions_done *done, void *cbud);
	void *ud;
};
/* Install the hooks (copied); call after fleet_new. NULL @h clears them. */
void fleet_endpoints_hooks(struct fleet *b, const struct fleet_ep_hooks *h);

/*
 * The catalog: a malloc'd array (free()) of the endpoints of @service (NULL: all services),
 * sorted by service then node name, withdrawn ones left out, states effective (see above);
 * *ret NULL and *ret_n 0 when empty. *ret_index (may be NULL) the index it reflects.
 * 0; -EINVAL; -ENOMEM. Loop thread.
 */
int fleet_endpoints_get(struct fleet *b, const char *service, struct fleet_endpoint **ret,
			size_t *ret_n, uint64_t *ret_index);
uint64_t fleet_endpoints_index(struct fleet *b);

/* Add a line to the fleet's event ring (`agentctl events`), for the agent's own modules (the
 * HAProxy driver's reports): kind at most 15 bytes, e.g. "lb". Loop thread; NULL @b is fine. */
void fleet_event_note(struct fleet *b, const char *kind, const char *service, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));

/*
 * Control operation `endpoints` {service?} -> [{service, node, site, address, port, weight,
 * protocol, state, rev, down}] (the catalog, as fleet_endpoints_get). A row of fleet_ctl_ops.
 */
struct fleet_endpoints_args {
	char *service;
};
void fleet_op_endpoints(void *fleet, const void *args, const struct ctl_peer *peer,
			struct ctl_enc *out);
extern const struct ctl_args_spec fleet_endpoints_spec;

#endif
