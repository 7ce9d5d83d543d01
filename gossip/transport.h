/*
 * gossip/transport.h: the libuv driver of the gossip core (gossip/gossip.h).
 *
 * One struct gossip_transport owns, on one libuv loop:
 *   - the protocol core (struct gossip), driven by a uv_timer armed at the core's next deadline
 *     (gossip_tick(uv_now)) and by received datagrams (gossip_recv);
 *   - one UDP socket and one TCP listener bound to the SAME address and port (IPv4 or IPv6);
 *   - the sealing layer (gossip/crypto.h): every datagram and every TCP frame is sealed under
 *     the keyring's primary key and opened with any installed key; what fails to open is
 *     dropped and counted by reason, never parsed;
 *   - anti-entropy over TCP (gossip/antientropy.c): one push-pull exchange of digests and then
 *     only what differs, every sync_interval_ms (jittered +-25%) with a random live member
 *     (gossip_sync_pick), right after a join with a seed, and with a member we held suspect or
 *     dead that comes back alive (by ~3 of the members that see it, chosen at random; at most 3
 *     such exchanges per second per node), so a healed partition converges in about a second
 *     instead of one sync interval; connections have
 *     a deadline and a size cap, the accept side a cap on concurrent streams. The digest and
 *     each diff travel in one frame: at most GOSSIP_FRAME_MAX (1 MiB) sealed, i.e. digests of
 *     up to some 20-30 thousand members; a diff over that is truncated by the core and the
 *     rest follows in later exchanges.
 *
 * The transport is the only place with clocks (uv_now, CLOCK_REALTIME for the replay counter
 * base), sockets and randomness (libsodium randombytes) of the gossip layer.
 *
 * MTU: cfg.core.mtu is the limit of a SEALED datagram (default 1400). The seal overhead of this
 * transport (GOSSIP_SEAL_OVERHEAD_BYTES, 51: version, key id, kind, 16-byte sender id, counter,
 * nonce, tag) equals the core's GOSSIP_SEAL_OVERHEAD; were it ever larger, the transport would
 * give the core mtu minus the difference: no sealed datagram ever exceeds cfg.core.mtu.
 *
 * Addresses: numeric only, "IPv4:PORT" or "[IPv6]:PORT" (no name resolution: the agent
 * resolves names before). A v4-mapped IPv6 source is reported as IPv4.
 *
 * Lifetime (libuv's contract): after gossip_transport_new() succeeded you must call
 * gossip_transport_close(); memory is released in its close callback. The keyring is borrowed
 * and must outlive the transport; it may be changed at any time (install/use/remove/load, e.g.
 * a SIGHUP reload) and the next packet sees the change.
 *
 * Threads: everything runs on the loop thread; no function may be called from another thread.
 * Errors: negative errno; nothing here logs.
 */
#ifndef SHOAL_GOSSIP_TRANSPORT_H
#define SHOAL_GOSSIP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gossip/crypto.h"
#include "gossip/gossip.h"

#define GOSSIP_TRANSPORT_SEEDS_MAX 64

struct gossip_transport;

struct gossip_transport_config {
	/* The core's configuration (gossip_config_default() then override): id, name, labels,
	 * incarnation, timings; mtu is the sealed-datagram limit (see above); core.addr is
	 * ignored (set from @advertise). Pointers are copied by gossip_new. */
	struct gossip_config core;
	const char *cluster;	/* cluster name, authenticated in every packet; "" ok */
	struct gossip_keyring *keyring; /* borrowed, must outlive the transport; >= 1 key */
	const char *bind;	/* "IP:PORT" (port 0: an ephemeral port, same for both) */
	const char *advertise;	/* "IP:PORT" peers use, or NULL: the bound address (then
				 * @bind must not be a wildcard); port 0: the bound one */
	uint32_t sync_interval_ms; /* periodic anti-entropy; default 30000; UINT32_MAX: off */
	uint32_t sync_timeout_ms;  /* deadline of one whole exchange; default 10000 */
	unsigned sync_max_streams; /* concurrent accepted streams; default 8 (more: refused) */
	unsigned sync_max_out;	   /* concurrent initiated exchanges; default 2 */
	uint32_t join_retry_ms;	   /* while alone, re-contact the seeds this often; 1000 */
	uint64_t counter_base;	   /* replay counter base, see gossip_crypto_new(); 0 = now */
	unsigned app_max_streams;  /* concurrent app streams, per direction; default 32 */
	/* Records whose version is more than this ahead of the wall clock are refused
	 * (gossip_set_version_ceiling; set at every tick); default 30 days; 0: no ceiling. */
	uint64_t record_ahead_ms;
	uint32_t app_idle_ms;	   /* app stream idle deadline; default 30000 */
	/* Unproven inbound connections (below): deadline to open a first frame (default 1000),
	 * slots for addresses of no known member (default 8) and per such address (default 2),
	 * and the pool reserved to addresses of known members (default 32; half per address). */
	uint32_t stream_auth_ms;
	unsigned stream_pending_max, stream_pending_per_addr, stream_pending_members;
	/* Called from inside the core when it reports a member or record change (see
	 * gossip_env); borrowed arguments valid for the call only. May be NULL. Like the core's
	 * callbacks they must not mutate: only read-only accessors (gossip_member_get, ...) and
	 * gossip_transport_stats; defer anything else (e.g. a uv_idle or a zero timer). */
	void (*on_member)(void *ud, const struct gossip_member *m);
	void (*on_record)(void *ud, const struct gossip_record *r);
	/* Passed to the core as env.record_urgent (gossip_env); may be NULL. */
	bool (*record_urgent)(void *ud, const uint8_t owner[GOSSIP_ID_LEN], const void *key,
			      size_t klen);
	void *ud;
};

/* Defaults for everything, core included (gossip_config_default); cluster "", other strings
 * and the keyring NULL. */
void gossip_transport_config_default(struct gossip_transport_config *cfg);

/*
 * Parse "IP:PORT" / "[IPv6]:PORT" (numeric). @default_port is used when there is no ":PORT"
 * (pass -1 to require one). @return 0; -EINVAL. @ret untouched on failure.
 */
int gossip_transport_parse_addr(const char *text, int default_port, struct gossip_addr *ret);

/*
 * Create the core, bind UDP and TCP on cfg->bind, start receiving and ticking.
 * @return 0 and *ret; -EINVAL (bad address, wildcard bind without advertise, no keyring or an
 *         empty one, bad core config); -EADDRINUSE / -EADDRNOTAVAIL / -EACCES (bind);
 *         -ENOMEM; a libuv error registering the sockets. On failure nothing is left to
 *         close by the caller (if handles had been created, they are being closed and the
 *         memory is released on the next loop iteration).
 */
int gossip_transport_new(uv_loop_t *loop, const struct gossip_transport_config *cfg,
			 struct gossip_transport **ret);

/*
 * Close every handle and stream, then call @cb (may be NULL) from the loop and free the
 * transport right after @cb returns (@t must not be used after that). Sends nothing: call
 * gossip_transport_leave() and keep the loop running about gossip_leave_drain_ms() first for a
 * clean leave. Calling it twice is a no-op.
 */
void gossip_transport_close(struct gossip_transport *t,
			    void (*cb)(struct gossip_transport *t, void *ud), void *ud);

/*
 * Join through @seeds ("IP:PORT" strings, @n <= GOSSIP_TRANSPORT_SEEDS_MAX): remember them,
 * ping each (gossip_join) and start one anti-entropy exchange (a full state transfer) with one
 * of them. While this node knows no other live member, the seeds are contacted again every
 * join_retry_ms. Until one exchange this node initiated has completed, it retries one after a
 * random 1/4..3/4 join_retry_ms, with any live member (gossip_sync_pick): a crowd of joiners
 * refused by a seed at its sync_max_streams cap spreads over the cluster.
 * That first exchange copies the seed's view at one instant. In a mass join (a site powering
 * up, a big autoscaling step) it lacks the members whose "alive" was still on its way to the
 * seed, and their rumours mostly run out before the newcomer is known widely enough to be
 * sent them. So GOSSIP_TRANSPORT_FOLLOWUP_MS (+-25%) after it completed, the transport runs a
 * follow-up exchange with any live member, and another after each exchange it initiates that
 * fails or finds the views different, at most GOSSIP_TRANSPORT_FOLLOWUPS in all; one that
 * finds them equal (two 17-byte summary frames) ends the series.
 * @return number of seeds contacted (>= 0); -EINVAL (a seed does not parse, or @n too large:
 *         none is used); -ESHUTDOWN after a leave or while closing.
 */
int gossip_transport_join(struct gossip_transport *t, const char *const *seeds, size_t n);
#define GOSSIP_TRANSPORT_FOLLOWUP_MS 2000
#define GOSSIP_TRANSPORT_FOLLOWUPS   3
/* The same with parsed addresses. */
int gossip_transport_join_addrs(struct gossip_transport *t, const struct gossip_addr *seeds,
				size_t n);

/* gossip_leave() and re-arm. @return as gossip_leave. */
int gossip_transport_leave(struct gossip_transport *t);

/* gossip_record_put() at uv_now and re-arm (the push goes out at once). Errors as the core's. */
int gossip_transport_record_put(struct gossip_transport *t, const uint8_t *key, size_t key_len,
				uint64_t version, const uint8_t *value, size_t value_len);

/* gossip_set_labels() and re-arm. Errors as the core's. */
int gossip_transport_set_labels(struct gossip_transport *t, const uint8_t *labels, size_t len);

/*
 * Start one anti-entropy exchange now with @peer, or with gossip_sync_pick()'s choice when
 * @peer is NULL. @return 0 (started; the outcome shows in the stats); -ENOENT (nobody to pick);
 * -EBUSY (sync_max_out exchanges already running); -ENOMEM; -errno of connect.
 */
int gossip_transport_sync(struct gossip_transport *t, const struct gossip_addr *peer);

/*
 * The core, for the read-only accessors (gossip_member_foreach, gossip_record_get, ...).
 * Borrowed for the transport's life. After calling a MUTATING core function directly (e.g.
 * gossip_member_restore, gossip_record_restore), call gossip_transport_kick().
 */
struct gossip *gossip_transport_core(struct gossip_transport *t);

/* Re-arm the tick timer at the core's next deadline (after a direct core call). */
void gossip_transport_kick(struct gossip_transport *t);

/* The keyring given at creation (borrowed). */
struct gossip_keyring *gossip_transport_keyring(struct gossip_transport *t);

/* The bound and the advertised address (either may be NULL). */
void gossip_transport_addrs(const struct gossip_transport *t, struct gossip_addr *ret_bound,
			    struct gossip_addr *ret_advertised);

/* Counters, monotonic since creation. Datagram figures are sealed sizes on the wire; stream
 * figures count frames with their prefix. */
struct gossip_transport_stats {
	uint64_t packets_in, packets_out; /* UDP datagrams received / sent */
	uint64_t bytes_in, bytes_out;	  /* their bytes */
	uint64_t send_errors;		  /* datagrams that could not be sent */
	uint64_t malformed;		  /* authentic but refused by the core (-EBADMSG...) */
	uint64_t drops[GOSSIP_DROP_MAX];  /* packets and frames that failed to open */
	uint64_t sync_started;		  /* exchanges this node initiated */
	uint64_t sync_accepted;		  /* exchanges accepted from peers */
	uint64_t sync_refused;		  /* accepted connections closed at once (cap) */
	uint64_t sync_ok, sync_failed;	  /* completed / failed exchanges, both sides */
	uint64_t sync_applied;		  /* entries that changed state via anti-entropy */
	uint64_t stream_bytes_in, stream_bytes_out;
	uint64_t app_accepted;		  /* inbound app streams handed to a handler */
	uint64_t app_refused;		  /* inbound app streams refused (cap, no handler) */
	uint64_t app_connected;		  /* outbound app streams started */
	uint64_t stream_unproven_closed;  /* inbound: no frame opened within stream_auth_ms */
	uint64_t stream_unproven_refused; /* inbound: closed at accept (pending pool/share full) */
};
void gossip_transport_stats(const struct gossip_transport *t, struct gossip_transport_stats *ret);

/*
 * ---- Unproven connections ---------------------------------------------------------------
 *
 * Anyone who reaches the TCP port can open connections; only cluster members can seal a
 * frame. So an accepted connection holds no exchange or stream slot until its first frame has
 * opened (authenticated with the keyring): until then it is UNPROVEN, holds a pending slot,
 * and is closed after stream_auth_ms (counted stream_unproven_closed). Pending slots are per
 * source address: at most stream_pending_max unproven connections from addresses that are no
 * known member's (alive or suspect, by IP, any port), and at most stream_pending_per_addr of
 * them from any one address; addresses of known members have a reserved pool of
 * stream_pending_members (at most half of it per address). A connection beyond its pool or
 * share is accepted and closed at once (stream_unproven_refused). Idle connections from one
 * or many outside addresses therefore never hold a slot that a member's exchange or artifact
 * fetch needs, and each costs at most one frame buffer for stream_auth_ms. Once proven, the
 * connection takes a sync slot (sync_max_streams; beyond: sync_refused) or an app slot
 * (app_max_streams; beyond: app_refused). A member behind the same address as an attacker
 * (NAT) shares the attacker's pool; a joiner not yet known uses the outsiders' pool (its UDP
 * join goes on, and the transport retries its first exchange).
 *
 * ---- Application streams ----------------------------------------------------------------
 *
 * Other protocols of the agent (e.g. artifact transfer) share the gossip TCP port. A TCP
 * connection is an app stream when its first frame's plaintext is the two bytes
 * {0xc1, proto}: 0xc1 is never the first byte of an anti-entropy frame (msgpack never uses
 * it). Every later frame in both directions carries one opaque payload of up to
 * GOSSIP_STREAM_PAYLOAD_MAX bytes, sealed exactly like sync frames (GOSSIP_SEAL_STREAM, the
 * same keyring, cluster name, replay windows); every frame of a stream must come from the
 * same authenticated sender, and whatever fails to open ends the stream. The gossip layer
 * knows nothing of the payloads.
 *
 * Bounds: at most app_max_streams streams in each direction (more inbound: accepted and
 * closed at once, counted app_refused; more outbound: -EBUSY); a stream with no frame read and
 * no write completed for app_idle_ms is closed with -ETIMEDOUT; a frame over GOSSIP_FRAME_MAX
 * ends the stream (-EMSGSIZE). Frames are delivered in order, one call per frame; the payload
 * is borrowed for the call only.
 *
 * Lifetime: a stream lives from its creation (accept handler, or app_connect) until either
 * on_close is called (the peer closed, an error, the deadline, the transport closing) or the
 * owner calls gossip_stream_close(); after either, the handle must not be used and no callback
 * comes. Frames queued by gossip_stream_send() before gossip_stream_close() may be dropped: a
 * request/response protocol closes from the side that got its last answer.
 */
#define GOSSIP_STREAM_PAYLOAD_MAX (GOSSIP_FRAME_MAX - GOSSIP_SEAL_OVERHEAD_BYTES)

struct gossip_stream;

struct gossip_stream_ops {
	/* One frame's payload (borrowed). May call gossip_stream_send/close on @s. */
	void (*on_frame)(struct gossip_stream *s, void *ud, const uint8_t *buf, size_t len);
	/* The stream ended: 0 (the peer closed after a complete frame), -ECONNREFUSED /
	 * -ECONNRESET / other -errno of the socket, -ETIMEDOUT (idle), -EMSGSIZE, -EKEYREJECTED
	 * or another gossip_crypto_open() error, -EPROTO (sender changed), -ESHUTDOWN (the
	 * transport is closing). @s is freed right after. */
	void (*on_close)(struct gossip_stream *s, void *ud, int err);
};

/*
 * Serve protocol @proto: @on_accept is called for each inbound app stream of that protocol
 * with the authenticated sender id of its first frame; it must call gossip_stream_set_ops()
 * and return 0 to keep the stream, or return <0 to refuse it (closed at once, no callback).
 * Passing a NULL @on_accept stops serving @proto (new streams refused). Up to 8 protocols.
 * @return 0; -ENOSPC (8 protocols already served).
 */
int gossip_transport_app_listen(struct gossip_transport *t, uint8_t proto,
				int (*on_accept)(void *ud, struct gossip_stream *s,
						 const uint8_t sender[GOSSIP_SENDER_LEN]),
				void *ud);

/*
 * Open an app stream of protocol @proto to @peer (its gossip address). Frames may be sent at
 * once (they are queued until connected). @ops is borrowed (static storage, typically).
 * @return 0 and *ret; -ESHUTDOWN (closing); -EBUSY (app_max_streams outbound open);
 *         -EAFNOSUPPORT (address family differs from the bound socket's); -ENOMEM; -errno.
 *         On failure no callback comes.
 */
int gossip_transport_app_connect(struct gossip_transport *t, const struct gossip_addr *peer,
				 uint8_t proto, const struct gossip_stream_ops *ops, void *ud,
				 struct gossip_stream **ret);

/* Set the callbacks of an accepted stream (from the accept handler). */
void gossip_stream_set_ops(struct gossip_stream *s, const struct gossip_stream_ops *ops, void *ud);

/* Seal @len bytes into one frame and queue it. @return 0; -EMSGSIZE (@len over
 * GOSSIP_STREAM_PAYLOAD_MAX); -ENOKEY; -ENOMEM; -EPIPE (the stream is ending); -errno of write
 * (the stream then ends with on_close soon). */
int gossip_stream_send(struct gossip_stream *s, const uint8_t *buf, size_t len);

/* Bytes queued for writing and not yet handed to the kernel (for back-pressure). */
size_t gossip_stream_queued(const struct gossip_stream *s);

/* The authenticated peer id (zero until the first frame from the peer arrived). */
void gossip_stream_peer(const struct gossip_stream *s, uint8_t ret_sender[GOSSIP_SENDER_LEN]);

/* Close now (pending writes dropped); no callback comes afterwards. */
void gossip_stream_close(struct gossip_stream *s);

#endif /* SHOAL_GOSSIP_TRANSPORT_H */
