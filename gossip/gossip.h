/*
 * gossip/gossip.h: SWIM + Lifeguard membership and dissemination, as a pure state machine.
 *
 * What this module is for
 * -----------------------
 * Every agent runs one struct gossip. It keeps the member table of the cluster (who is
 * alive, suspect, dead or left, at which incarnation, where, with which labels, and how far
 * away in round-trip time), detects failures with SWIM probing (ping, ack, ping-req through k
 * members, nack from indirect probers) hardened by Lifeguard (local health multiplier, dynamic
 * suspicion timeouts with independent confirmations), and disseminates two kinds of updates by
 * piggybacking them on the protocol's own packets:
 *
 *   - membership updates (alive / suspect / dead / left), and
 *   - application records: opaque values named (owner, key), versioned per (owner, key). Only
 *     the owner originates a record; everyone stores and relays the newest version they have
 *     seen. The agent builds health, revisions and votes on top of these.
 *
 * Anti-entropy (the periodic TCP exchange of a digest and then only what differs) is carried
 * by the transport (gossip/antientropy.c); this core produces and consumes its byte buffers
 * (gossip_sync_*), so the simulator can drive it the same way.
 *
 * Invariants
 * ----------
 *  - PURE: the core never reads a clock, draws randomness, allocates a socket or logs. Time is
 *    the caller's `now` (milliseconds, monotonic for the life of one core, never decreasing
 *    across calls), randomness comes from env.random, packets leave through env.send.
 *  - Every packet handed to env.send is PLAINTEXT msgpack of at most
 *    cfg.mtu - GOSSIP_SEAL_OVERHEAD bytes; the transport seals it (AEAD) into at most cfg.mtu
 *    bytes. gossip_recv takes the opened plaintext.
 *  - Any input from the network (gossip_recv, gossip_sync_diff, gossip_sync_apply) is fully
 *    decoded and validated before any state changes: malformed input returns -EBADMSG and
 *    leaves the core exactly as it was (no callback, no send).
 *  - A member is never forgotten before it has been dead (or left) for cfg.reap_ms (default
 *    72 h); until then it stays in the table and in the anti-entropy digest, so a node that
 *    comes back after hours converges on the same view.
 *  - The local node is always a member of its own table (state alive, or left after
 *    gossip_leave).
 *
 * Driving it (the transport, the simulator)
 * -----------------------------------------
 *   gossip_config_default(&cfg); fill id, name, addr, labels, incarnation (persisted + 1);
 *   gossip_new(&cfg, &env, &g);
 *   gossip_member_restore() / gossip_record_restore() for everything persisted;
 *   gossip_tick(g, now); gossip_join(g, now, seeds, n); one anti-entropy exchange with a seed;
 *   then: a timer at gossip_next_deadline(g) -> gossip_tick(g, now); every datagram ->
 *   gossip_recv(g, now, from, plain, len); every ~30 s an exchange with gossip_sync_pick();
 *   re-arm the timer after every call (a recv or a put can move the deadline earlier).
 *   The agent persists what on_member/on_record report (self included: its incarnation) and
 *   publishes with gossip_record_put(). On shutdown: gossip_leave, tick for
 *   gossip_leave_drain_ms(), gossip_free.
 *
 * Time: `now` is the caller's milliseconds. state_change values are in that clock, and
 * restored ones are taken as they are (clamped to `now` if in the future): a driver that wants
 * dead members reaped reap_ms after they died, across restarts, uses a clock comparable across
 * runs (wall-clock ms); with a per-process monotonic clock, reaping counts from the restart.
 *
 * Threads and loops
 * -----------------
 * Not thread-safe: one struct gossip is used from one thread (the agent's libuv loop, or the
 * simulator). Callbacks (env.send, env.on_member, env.on_record) are called synchronously from
 * inside gossip_* calls; they must not call back into the same struct gossip except through
 * the read-only accessors (gossip_member_get, gossip_record_get, gossip_self, gossip_stats).
 *
 * Errors
 * ------
 * Functions return 0 (or a documented non-negative value) on success and a negative errno on
 * failure: -EINVAL (bad argument), -ENOMEM, -EBADMSG (malformed bytes), -EPROTONOSUPPORT
 * (a well-formed packet of another protocol version), -EMSGSIZE (a record or field over the
 * documented limit), -ESTALE (a record version not newer than the one held), -ENOENT,
 * -ESHUTDOWN (the node has left). ret_* output parameters are untouched on failure.
 *
 * Wire format (details in gossip/proto.h): every packet is one msgpack array whose first
 * element is the protocol version (GOSSIP_PROTO_VERSION):
 *
 *     +---------+-------------+----------------------------------------------+
 *     | version | sender id   | messages: [ [type, fields...], ... ]          |
 *     | uint    | bin(16)     | array: first the primary message (ping, ack,   |
 *     |         |             | ...), then piggybacked member/record updates   |
 *     +---------+-------------+----------------------------------------------+
 *
 * The transport seals it (gossip/crypto.h: a 35-byte authenticated header, the ciphertext and a
 * 16-byte tag); GOSSIP_SEAL_OVERHEAD is the agreed total.
 */
#ifndef SHOAL_GOSSIP_H
#define SHOAL_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOSSIP_PROTO_VERSION 2

#define GOSSIP_ID_LEN	  16	/* node id: 16 random bytes, kept by the agent in LMDB */
#define GOSSIP_NAME_MAX	  64	/* member name (hostname), bytes, without the NUL */
#define GOSSIP_LABELS_MAX 256	/* opaque label blob (the agent encodes key=value pairs) */
#define GOSSIP_KEY_MAX	  128	/* record key, bytes (any bytes; the agent uses text) */
#define GOSSIP_VALUE_MAX  768	/* record value, bytes: any record fits one packet */

/*
 * Bytes the transport adds when it seals a plaintext packet (gossip/crypto.h has the layout):
 * version (1) + key id (1) + kind (1) + sender id (16) + replay counter (8) + the random part
 * of the XChaCha20 nonce (8) + Poly1305 tag (16). The core keeps every plaintext at or below
 * cfg.mtu - GOSSIP_SEAL_OVERHEAD, so a sealed datagram never exceeds cfg.mtu.
 */
#define GOSSIP_SEAL_OVERHEAD (1 + 1 + 1 + 16 + 8 + 8 + 16)
#define GOSSIP_MTU_DEFAULT   1400
#define GOSSIP_MTU_MIN	     1200	/* smallest mtu accepted: a full record must fit */

/* Largest anti-entropy buffer gossip_sync_diff produces (when its max_len is 0). */
#define GOSSIP_SYNC_MAX (16u * 1024 * 1024)

/*
 * An address, opaque to the core: the transport fills it from/into a sockaddr, the simulator
 * uses it as a node number. Always zero-initialise before filling so two equal addresses are
 * equal bytewise (gossip_addr_cmp compares all fields).
 */
enum gossip_af {
	GOSSIP_AF_NONE = 0,
	GOSSIP_AF_INET = 4,	/* ip[0..3] used, ip[4..15] zero */
	GOSSIP_AF_INET6 = 6,	/* ip[0..15] */
};
struct gossip_addr {
	uint8_t family;		/* enum gossip_af */
	uint8_t pad;		/* zero */
	uint16_t port;		/* host byte order */
	uint8_t ip[16];		/* network byte order */
};

/* <0, 0, >0 like memcmp, over family, port and ip. */
int gossip_addr_cmp(const struct gossip_addr *a, const struct gossip_addr *b);
/* "1.2.3.4:7946" or "[::1]:7946" into @buf (always NUL-terminated if @cap > 0). Returns @buf. */
char *gossip_addr_format(const struct gossip_addr *a, char *buf, size_t cap);

enum gossip_state {
	GOSSIP_ALIVE = 0,
	GOSSIP_SUSPECT = 1,
	GOSSIP_DEAD = 2,	/* declared failed by the cluster */
	GOSSIP_LEFT = 3,	/* left on purpose (gossip_leave) */
};
/* "alive", "suspect", "dead", "left"; "?" for anything else. */
const char *gossip_state_name(int state);

/*
 * A member as shown to the agent (callbacks, iteration, restore). In callbacks and from
 * gossip_member_get/foreach, the struct and @labels are borrowed: valid until the next call
 * into this struct gossip (copy what you keep).
 */
struct gossip_member {
	uint8_t id[GOSSIP_ID_LEN];
	char name[GOSSIP_NAME_MAX + 1];		/* NUL-terminated */
	struct gossip_addr addr;
	const uint8_t *labels;			/* opaque blob, @labels_len bytes */
	size_t labels_len;			/* <= GOSSIP_LABELS_MAX */
	uint64_t incarnation;
	enum gossip_state state;
	uint64_t state_change;	/* `now` (caller's ms clock) of the last state change */
	uint32_t rtt_ms;	/* smoothed ping/ack round-trip estimate; 0 = not measured */
	bool self;		/* this is the local node */
};

/*
 * An application record. @value is borrowed in callbacks and from gossip_record_get/foreach:
 * valid until the next call into this struct gossip.
 */
struct gossip_record {
	uint8_t owner[GOSSIP_ID_LEN];	/* the node that originated it */
	const uint8_t *key;		/* 1..GOSSIP_KEY_MAX bytes */
	size_t key_len;
	uint64_t version;		/* per (owner, key); newer = larger */
	const uint8_t *value;		/* 0..GOSSIP_VALUE_MAX bytes */
	size_t value_len;
};

/*
 * What the core asks of its driver (the libuv transport, the simulator, a test).
 * All function pointers are required except on_member and on_record.
 */
struct gossip_env {
	/* Send one plaintext datagram to @to. @buf is borrowed for the call. Fire and forget:
	 * the core copes with loss, so the driver may drop it (full queue, unreachable). */
	void (*send)(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len);
	/* 32 uniformly random bits. */
	uint32_t (*random)(void *ud);
	/* A member was added, or its state, incarnation, address, name or labels changed
	 * (including the local node, e.g. when it refutes a suspicion: persist its incarnation).
	 * Not called for RTT updates. Not called by gossip_member_restore. */
	void (*on_member)(void *ud, const struct gossip_member *m);
	/* A record newer than the one held (or a new one) arrived from the network or an
	 * anti-entropy batch. Not called for gossip_record_put/restore. */
	void (*on_record)(void *ud, const struct gossip_record *r);
	void *ud;
	/* Optional (NULL: every record is routine). Is the record (@owner, @key) urgent? Asked
	 * once, when the core first holds that (owner, key); urgent records are piggybacked
	 * before routine ones (see Dissemination in swim.c). Must be a pure function of its
	 * arguments. */
	bool (*record_urgent)(void *ud, const uint8_t owner[GOSSIP_ID_LEN], const void *key,
			      size_t klen);
};

/*
 * Configuration. Fill with gossip_config_default() and override. Times in milliseconds of the
 * caller's clock. The defaults are for a LAN (probing a little faster than memberlist's LAN
 * profile: 800 ms interval, 400 ms timeout, paid for by smaller packets so the bytes at rest stay
 * below Serf's); a simulator or a small test cluster may shorten probe_interval_ms to 200.
 */
struct gossip_config {
	/* identity of the local node */
	uint8_t id[GOSSIP_ID_LEN];
	const char *name;		/* copied; <= GOSSIP_NAME_MAX bytes */
	struct gossip_addr addr;	/* advertised address (where peers send to us) */
	const uint8_t *labels;		/* copied; <= GOSSIP_LABELS_MAX bytes */
	size_t labels_len;
	/* Incarnation to start at. The agent persists the local incarnation (on_member with
	 * self=true) and starts a restarted node at persisted + 1, so its fresh "alive" beats any
	 * "suspect"/"dead" the cluster still holds about its previous life. */
	uint64_t incarnation;

	size_t mtu;			/* sealed datagram limit; default 1400, >= GOSSIP_MTU_MIN */
	uint32_t probe_interval_ms;	/* one probe per interval (x LHM); default 800 */
	uint32_t probe_timeout_ms;	/* wait for a direct ack (x LHM); default 400 */
	unsigned indirect_checks;	/* k members asked to ping-req; default 3 */
	/* Pure-gossip rounds of pending updates, to gossip_nodes peers; default 50. A round with
	 * nothing queued sends nothing, so a short interval costs nothing at rest. News (an update
	 * sent fewer than 2 * gossip_nodes times by this node) goes out a quarter of an interval
	 * after the previous round instead of a full interval: a few ms per epidemic hop. */
	uint32_t gossip_interval_ms;
	unsigned gossip_nodes;		/* peers per gossip interval; default 3 */
	unsigned push_fanout;		/* peers a new own record is pushed to at once; default 4 */
	unsigned retransmit_mult;	/* each update sent mult*ceil(log2(N+1)) times; 4 */
	/* Suspicion timeout: min = mult * probe interval (not scaled by log N: suspicions and
	 * refutations spread within milliseconds), max = suspicion_max_mult * min, and mult - 2
	 * independent confirmations shrink it from max to min; defaults 3 and 6 (2.4 s .. 14.4 s,
	 * 1 confirmation). The accuser counts from the start of its failed probe (the target was
	 * silent since; at most one probe interval back), the others from when they hear of it.
	 * A member paused for up to min less the refutation's trip (~2 s by default) is not
	 * declared dead: pings to a suspect carry the suspicion, and the refutation goes straight
	 * to the accuser and to push_fanout peers. */
	unsigned suspicion_mult;
	unsigned suspicion_max_mult;
	unsigned awareness_max;		/* Lifeguard LHM ceiling (score 0..max-1); default 8 */
	uint32_t gossip_dead_ms;	/* keep gossiping to a dead member this long; 30000 */
	uint64_t reap_ms;		/* forget dead/left members after this; default 72 h */
	/* Share of the piggyback space (in percent) reserved to each class of update (members,
	 * records) while the other class also has something to send; default 40, so neither
	 * starves the other; unused space goes to whichever has more. */
	unsigned reserve_pct;
	/* Bounds (below): members held (any state, self included), records held in all, per
	 * owner, and their key + value bytes in all. 0 is taken as the default. */
	size_t members_max;
	size_t records_max;
	size_t records_owner_max;
	size_t records_bytes_max;
};

/*
 * Bounds. Any holder of the cluster key can invent members and records (an "alive" or a
 * record names any id), so the tables are capped and what does not fit is dropped and counted
 * (gossip_stats members_dropped, records_dropped), never grown: a flood of 20,000 invented
 * members and 100,000 records costs at most these tables. What is already held is never
 * evicted (a flood cannot push real members or records out) and is updated as usual; the local
 * node's own records are never refused. Dropped: a new member (from a packet, a sync or a
 * restore) while members_max are held; a new (owner, key) while records_max records are held,
 * or records_owner_max of that owner, or when its bytes would take the total over
 * records_bytes_max. Defaults: 4096 members (~2 MiB at most with names and labels), 16,384
 * records, 2,048 per owner, 6 MiB of keys and values (~9 MiB with their entries; a 128-node
 * cluster with ten services and a few hundred deploys holds ~2 MiB); measured: a flood of
 * 20,000 members and 100,000 600-byte records raises an agent's RSS by ~26 MiB, its persisted
 * copy included (tests/integration/flood.sh). Raise them for larger clusters (the simulators
 * do). Known limit: invented members that fit are
 * probed like real ones until declared dead (a few seconds each, a few at a time), and while
 * many are alive they would dilute the shared probe schedule; binding members to node keys
 * (a signed "alive") is the cure, not a cap. Meanwhile, a member that never sent this node a
 * packet from its own IP is "unheard"; while the unheard live
 * members outnumber the heard ones (and are more than 16), three of four probes the schedule
 * gives to unheard ones go to a random heard member instead (flood_cover_probes), and the
 * out-of-turn probes of a suspect are drawn among the heard, so real failures are still seen
 * about as fast while the invented members are probed to death.
 */
#define GOSSIP_MEMBERS_MAX_DEFAULT	 4096
#define GOSSIP_RECORDS_MAX_DEFAULT	 16384
#define GOSSIP_RECORDS_OWNER_MAX_DEFAULT 2048
#define GOSSIP_RECORDS_BYTES_MAX_DEFAULT (6u * 1024 * 1024)

void gossip_config_default(struct gossip_config *cfg);

struct gossip;

/*
 * Create a core for the local node described by @cfg, talking through @env (copied).
 * The local node starts alive at cfg->incarnation, alone in its table (restore the persisted
 * members with gossip_member_restore, then gossip_join). The first tick should come at @now
 * of the driver's clock; nothing is sent before it.
 * @return 0 and *ret; -EINVAL (missing send/random, name or labels too long, mtu too small,
 *         zero timing knob); -ENOMEM.
 */
int gossip_new(const struct gossip_config *cfg, const struct gossip_env *env,
	       struct gossip **ret);
/* Free the core and everything it holds. Accepts NULL. Sends nothing (call gossip_leave and
 * let a few gossip intervals pass first for a clean exit). */
void gossip_free(struct gossip *g);

/*
 * Run timers due at @now: probes and their timeouts, ping-req, nacks, suspicion expiry,
 * periodic gossip, reaping. Call it at gossip_next_deadline() (calling earlier or later is
 * harmless). @return 0; -ENOMEM (the core stays consistent; retry at the next tick).
 */
int gossip_tick(struct gossip *g, uint64_t now);
/* The `now` at which gossip_tick next has work. Changes after any call into the core (a recv,
 * a put, a join), so re-read it after each. Never earlier than the last `now` seen. */
uint64_t gossip_next_deadline(const struct gossip *g);

/*
 * Handle one plaintext datagram received at @now from @from (the transport has opened and
 * authenticated it). @return 0; -EBADMSG (malformed: nothing changed); -EPROTONOSUPPORT
 * (other protocol version: nothing changed); -ENOMEM.
 */
int gossip_recv(struct gossip *g, uint64_t now, const struct gossip_addr *from,
		const uint8_t *buf, size_t len);

/*
 * Contact seeds: send each a join (a ping carrying our own "alive"); a seed answers with an
 * ack, its own "alive" and as many members as fit, and the membership spreads from there. The
 * transport should also run one anti-entropy exchange with a seed (gossip_sync_*) for a full
 * state transfer, as memberlist's push-pull on join. Seeds equal to our own address are
 * skipped. May be called at any time (e.g. agentctl join).
 * @return number of seeds contacted (>= 0); -EINVAL; -ESHUTDOWN after gossip_leave.
 */
int gossip_join(struct gossip *g, uint64_t now, const struct gossip_addr *seeds, size_t n);

/*
 * Leave the cluster on purpose: bump the local incarnation, mark self "left", and broadcast
 * it (pushed at once to gossip_nodes peers, then piggybacked). The core stops probing but
 * keeps answering and gossiping until freed; the agent should keep ticking for about
 * gossip_leave_drain_ms() before gossip_free. Idempotent. @return 0; -ENOMEM.
 */
int gossip_leave(struct gossip *g, uint64_t now);
/* How long to keep ticking after gossip_leave so "left" reaches the cluster (ms). */
uint64_t gossip_leave_drain_ms(const struct gossip *g);

/*
 * Replace the local node's labels (e.g. after a SIGHUP): bumps the incarnation and broadcasts
 * the new "alive". @return 0; -EMSGSIZE; -ENOMEM; -ESHUTDOWN.
 */
int gossip_set_labels(struct gossip *g, uint64_t now, const uint8_t *labels, size_t len);

/* The local node's current view of itself (borrowed, see struct gossip_member). */
const struct gossip_member *gossip_self(struct gossip *g);

/*
 * Seed the table at start with a member persisted by the agent (any state, dead included; a
 * suspect comes back as alive, since its suspicion timer is gone: probing decides again).
 * No callback, nothing sent. An entry for the local id only raises the local incarnation to
 * above the restored one (cf. cfg.incarnation). A state_change later than the first tick's
 * `now` is clamped. A restored member already known is merged like an anti-entropy entry.
 * @return 0; -EINVAL (bad state or lengths); -ENOMEM.
 */
int gossip_member_restore(struct gossip *g, const struct gossip_member *m);

/* Look up a member by id; NULL if unknown. Borrowed: valid until the next call into @g. */
const struct gossip_member *gossip_member_get(struct gossip *g, const uint8_t id[GOSSIP_ID_LEN]);

/*
 * Call @cb for every member, the local node included, in table order. @cb must not call into
 * @g except read-only accessors. Stops early and returns @cb's value if it returns non-zero;
 * otherwise returns 0.
 */
int gossip_member_foreach(struct gossip *g,
			  int (*cb)(void *ud, const struct gossip_member *m), void *ud);

/* Number of members in @state (any state if @state < 0), the local node included. */
size_t gossip_member_count(const struct gossip *g, int state);

/*
 * Refuse from now on every record from the network or a sync whose version is over @ceiling
 * (0: none; counted in records_future). Record versions are not signed: without a ceiling one
 * forged copy at version 2^64 - 1 would displace its owner's record in every table for good,
 * the owner never able to publish above it. The transport sets it from the wall clock (its
 * owners version records by wall-clock ms: agent/cluster/cluster.h), so a forger can only get
 * ahead of an owner by a bounded amount, which the owner's next publication overtakes.
 */
void gossip_set_version_ceiling(struct gossip *g, uint64_t ceiling);

/*
 * Publish a record owned by this node: (self id, @key) at @version with @value. It replaces the
 * one held, is pushed at once to push_fanout random peers in a dedicated packet, and then
 * piggybacked ~retransmit_mult*log2(N+1) times. on_record is NOT called for it.
 * @return 0; -EINVAL (empty key); -EMSGSIZE (key or value over the limits); -ESTALE (@version
 *         not larger than the one held: the cluster may know a newer version of our own record
 *         than we do, e.g. after a lost disk; read it with gossip_record_get and go above it);
 *         -ENOMEM; -ESHUTDOWN.
 */
int gossip_record_put(struct gossip *g, uint64_t now, const uint8_t *key, size_t key_len,
		      uint64_t version, const uint8_t *value, size_t value_len);

/*
 * Seed a record (any owner) persisted by the agent, at start. No callback, nothing sent; it is
 * served by anti-entropy. Ignored (returns 0) if an equal or newer version is held.
 * @return 0; -EINVAL; -EMSGSIZE; -ENOMEM.
 */
int gossip_record_restore(struct gossip *g, const struct gossip_record *r);

/* The newest record held for (@owner, @key), or NULL. Borrowed until the next call into @g. */
const struct gossip_record *gossip_record_get(struct gossip *g, const uint8_t owner[GOSSIP_ID_LEN],
					      const uint8_t *key, size_t key_len);

/* Call @cb for every record held (any owner). Same rules as gossip_member_foreach. */
int gossip_record_foreach(struct gossip *g,
			  int (*cb)(void *ud, const struct gossip_record *r), void *ud);
size_t gossip_record_count(const struct gossip *g);

/*
 * Anti-entropy, the interface of the TCP push-pull (run by the transport every ~30 s with a
 * random peer, once with a seed on join, and with a random peer ~2 s after that first
 * exchange, for what was still in flight when the seed's view was copied, again while such
 * a follow-up finds the views different, at most 3 times: gossip/transport.h). One
 * exchange, A the initiator, B the responder:
 *
 *     A -> B   digest(A)                  gossip_sync_digest on A
 *     B -> A   diff(B, digest(A))         gossip_sync_diff on B
 *              digest(B)                  gossip_sync_digest on B
 *     A        apply(diff)                gossip_sync_apply on A
 *     A -> B   diff(A, digest(B))         gossip_sync_diff on A
 *     B        apply(diff)                gossip_sync_apply on B
 *
 * The digest is fixed-size whatever the cluster holds: members and records are hashed into B
 * buckets (B a power of two, 16..4096, about two entries per bucket; at most 64 KiB) and each
 * bucket carries the XOR of 64-bit hashes of its members' (id, incarnation, state) and of its
 * records' (owner, key, version). The diff carries the full members and records of the buckets
 * whose summaries differ (both sides' versions travel, each side keeps only what is newer), so
 * a converged pair exchanges two digests and two empty diffs, and a node back after a day
 * receives just what changed. (The transport first compares a hash of the two digests and
 * stops there when they are equal: gossip/antientropy.h.) All buffers are msgpack, versioned
 * like packets, malloc()ed for the caller to free().
 */

/* Choose a peer for the periodic exchange: a random non-left member other than self, alive or
 * suspect most of the time and a dead one now and then (that is how a healed partition finds
 * its other half). @return 0 and *ret_addr; -ENOENT if there is nobody. */
int gossip_sync_pick(struct gossip *g, struct gossip_addr *ret_addr);

/* Encode this node's digest (at most ~64 KiB). @return 0 and a malloc()ed *ret_buf of
 * *ret_len bytes; -ENOMEM. */
int gossip_sync_digest(struct gossip *g, uint8_t **ret_buf, size_t *ret_len);

/*
 * From a peer's digest, encode what may differ, at most @max_len bytes (0 = GOSSIP_SYNC_MAX).
 * When it does not all fit, a random part is sent (the next exchange sends more).
 * Does not change @g (a "suspect"/"dead" about ourselves comes to us in the peer's diff, and
 * gossip_sync_apply refutes it).
 * @return 0 if complete, 1 if truncated, and a malloc()ed *ret_buf of *ret_len bytes;
 *         -EBADMSG (malformed digest: nothing changed); -EPROTONOSUPPORT; -EINVAL (@max_len
 *         under ~64 bytes); -ENOMEM.
 */
int gossip_sync_diff(struct gossip *g, uint64_t now, const uint8_t *digest, size_t len,
		     size_t max_len, uint8_t **ret_buf, size_t *ret_len);

/*
 * Merge a diff received from a peer at @now: members as in memberlist's push-pull merge (a
 * remote "dead" about a member we think alive is taken as a suspicion, so that member has the
 * chance to refute; a "suspect"/"dead" about ourselves is refuted at once), records kept when
 * newer (on_record is called for each). Members we never heard of are added as the peer sees
 * them (dead ones included) without rebroadcast; changes to known members are rebroadcast, and
 * so are the records of a small diff (a large one is a catch-up, not news).
 * @return number of entries that changed our state (>= 0); -EBADMSG (malformed: nothing
 *         changed); -EPROTONOSUPPORT; -ENOMEM.
 */
int gossip_sync_apply(struct gossip *g, uint64_t now, const uint8_t *buf, size_t len);

/* Counters for metrics and tests (monotonic since gossip_new, except the gauges). */
struct gossip_stats {
	uint64_t packets_sent, packets_recv, bytes_sent, bytes_recv, bad_packets;
	uint64_t pings_sent, acks_recv, pingreqs_sent, nacks_recv, probes_failed;
	uint64_t suspicions, refutes, deaths_declared;
	uint64_t member_updates_sent, record_updates_sent, records_recv_new;
	uint64_t syncs_applied;
	uint64_t members_dropped;	/* new members refused: members_max held (Bounds) */
	uint64_t records_dropped;	/* new records refused: a records_* bound (Bounds) */
	uint64_t records_future;	/* records refused: version over the ceiling */
	uint64_t flood_cover_probes;	/* probes moved off invented members (Bounds) */
	unsigned awareness;		/* gauge: current LHM score, 0 = healthy */
	unsigned pending_member_updates, pending_record_updates;	/* gauges */
};
void gossip_stats(const struct gossip *g, struct gossip_stats *ret);

#endif /* SHOAL_GOSSIP_H */
