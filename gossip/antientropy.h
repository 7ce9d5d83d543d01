/*
 * gossip/antientropy.h: the TCP side of anti-entropy (internal to gossip/; the agent uses
 * gossip/transport.h).
 *
 * One exchange is one TCP connection carrying sealed frames (gossip/crypto.h, kind
 * GOSSIP_SEAL_STREAM). It starts with a summary, so that two nodes that already agree (a
 * converged cluster at rest: nearly every periodic exchange) pay two small frames and not two
 * digests, which grow with the cluster (~1 KiB each at 128 members):
 *
 *      initiator A                                    responder B
 *      connect ------------------------------------->  accept (refused beyond max_in)
 *      SUMMARY(A) ---------------------------------->  hash of digest(B) == hash in SUMMARY(A)?
 *                <-----------------------------------  yes: SAME (B's hash); both close
 *                <-----------------------------------  no: DIFFER; then the full exchange:
 *
 * SUMMARY and SAME are GOSSIP__AE_SUMMARY then BLAKE2b-128 of the sender's gossip_sync_digest
 * buffer (17 bytes); DIFFER is the single byte GOSSIP__AE_DIFFER (neither byte ever starts a
 * msgpack digest, nor is it GOSSIP__APP_MAGIC). The full exchange, whose plaintexts are the
 * core's gossip_sync_* buffers:
 *
 *      initiator A                                    responder B
 *      DIGEST(A) ----------------------------------->  diff(B, digest A)
 *                <-----------------------------------  DIFF(B->A)
 *                <-----------------------------------  DIGEST(B)
 *      apply(DIFF B->A), diff(A, digest B)
 *      DIFF(A->B) ---------------------------------->  apply(DIFF A->B)
 *      close after the write                           close
 *
 * Every frame of one connection must come from the same authenticated sender. A diff is capped
 * to fit one frame (the core sends a random subset when it does not fit; the next exchange
 * sends more). Each connection has a deadline (timeout_ms) for the whole exchange; any error
 * (open failure, bad frame length, core -EBADMSG, EOF early) closes it and counts a failure.
 *
 * Application streams share the port (see "Application streams" in transport.h): a connection
 * whose FIRST frame's plaintext is GOSSIP__APP_MAGIC (0xc1, a byte msgpack never uses, so
 * never the first byte of a DIGEST) followed by one protocol byte is an app stream. The accept
 * side converts the connection (it leaves the sync cap and enters the app cap, max_app) and
 * hands it to app_accept; from then on every frame is an opaque payload for the stream's ops.
 * An accepted connection is first UNPROVEN: it holds a pending slot (per source address,
 * members' addresses in a reserved pool) and must open its first frame within auth_ms; only
 * then does it take a sync slot (max_in, checked then) or an app slot (max_app).
 * App streams have an idle deadline (app_idle_ms, re-armed by every frame read and every write
 * completed) instead of the exchange deadline, and count in the app_* stats, not the sync_*.
 */
#ifndef SHOAL_GOSSIP_ANTIENTROPY_H
#define SHOAL_GOSSIP_ANTIENTROPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gossip/crypto.h"
#include "gossip/gossip.h"
#include "gossip/transport.h"

struct gossip__ae_conn;
struct gossip_stream;

#define GOSSIP__APP_MAGIC 0xc1
#define GOSSIP__AE_SUMMARY 0xc2	/* msgpack "false": never the first byte of a digest */
#define GOSSIP__AE_DIFFER  0xc3	/* msgpack "true" */

struct gossip__ae {
	uv_loop_t *loop;
	struct gossip *core;
	struct gossip_crypto *crypto;
	struct gossip_transport_stats *stats; /* borrowed, updated in place */
	void (*kick)(void *ud);		      /* the core's state may have changed */
	void (*drained)(void *ud);	      /* after close_all, when the last conn is freed */
	/* an exchange ended (@ok: completed; @differed: we initiated it and the summaries
	 * differed, so digests and diffs followed); may be NULL */
	void (*done)(void *ud, bool initiator, bool ok, bool differed);
	void *ud;
	uint32_t timeout_ms;
	unsigned max_in, max_out;
	/* app streams: @app_accept (NULL: refuse them) is given each converted accepted stream;
	 * it returns 0 after gossip_stream_set_ops(), or <0 to refuse (the stream is closed). */
	int (*app_accept)(void *ud, uint8_t proto, struct gossip_stream *s,
			  const uint8_t sender[GOSSIP_SENDER_LEN]);
	uint32_t app_idle_ms;
	unsigned max_app; /* concurrent app streams, each direction */
	/* Unproven inbound connections (no frame opened yet; see "Unproven connections" in
	 * transport.h): closed after auth_ms; at most pend_max from addresses of no known member,
	 * at most pend_per_addr of them from one address; addresses of known members (as
	 * @is_member_addr says) draw from their own pool of pend_member, at most half of it per
	 * address, so outsiders cannot take the slots members need. */
	uint32_t auth_ms;
	unsigned pend_max, pend_per_addr, pend_member;
	bool (*is_member_addr)(void *ud, const struct sockaddr *sa);
	/* Source address of outgoing connections (port 0), when has_src: the address the
	 * transport is bound to, so that peers see the address this node advertises (their
	 * "known member" check is by IP), not whatever the kernel's route picks on a multi-homed
	 * host. A failed bind falls back to the kernel's choice. */
	struct sockaddr_storage src;
	bool has_src;
	/* state */
	struct gossip__ae_conn *conns; /* doubly linked */
	unsigned n_in, n_out, n_conns;
	unsigned n_app_in, n_app_out;
	unsigned n_pend, n_pend_member;
	bool closing;
	uint8_t scratch[64 * 1024]; /* read buffer handed to libuv; copied out in read_cb */
};

/* Prepare @ae (fields above the "state" line filled by the caller). */
void gossip__ae_init(struct gossip__ae *ae);

/* Start an exchange with @sa. @return 0; -EBUSY (max_out reached); -ESHUTDOWN (closing);
 * -ENOMEM; -errno of uv_tcp_connect. */
int gossip__ae_connect(struct gossip__ae *ae, const struct sockaddr *sa);

/* Open an app stream to @sa for protocol @proto (ops and ud as gossip_transport_app_connect).
 * @return 0 and *ret; -EBUSY (max_app outbound); -ESHUTDOWN; -ENOMEM; -errno of connect. */
int gossip__ae_connect_app(struct gossip__ae *ae, const struct sockaddr *sa, uint8_t proto,
			   const void *ops, void *ud, struct gossip_stream **ret);

/* Accept one pending connection of @server (call from its connection callback). Beyond max_in
 * the connection is accepted and closed at once (counted sync_refused). @return 0 or -errno. */
int gossip__ae_accept(struct gossip__ae *ae, uv_stream_t *server);

/* Close every connection; ae->drained is called (from the loop, possibly at once) when none
 * is left. Further connects fail with -ESHUTDOWN, accepts are refused. */
void gossip__ae_close_all(struct gossip__ae *ae);

#endif /* SHOAL_GOSSIP_ANTIENTROPY_H */
