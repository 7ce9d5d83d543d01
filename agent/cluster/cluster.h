/*
 * agent/cluster/cluster.h: the gossip layer (gossip/transport.h) wired into agentd.
 *
 * One struct cluster per agent, on the agent's loop. It
 *   - builds the transport from the configuration: node id = the store's node id, name =
 *     --node-name, --bind (default 0.0.0.0:7946, UDP and TCP on the same port), --advertise
 *     (default: the bound address; for a wildcard bind, the first non-loopback IPv4 address of
 *     the host, else 127.0.0.1), --cluster (authenticated in every packet), --label KEY=VALUE
 *     (encoded as the member's label blob, see below);
 *   - owns the keyring: --keyring FILE, default STATE_DIR/keyring. When the DEFAULT file is
 *     missing at start, a new random key is generated and written there (0600) and a notice
 *     says to copy it to every other node; a keyring path given explicitly must exist (a typo
 *     must not silently create a node that can talk to nobody). keyring install/use/remove
 *     change the live keyring and rewrite the file atomically; SIGHUP reloads the file;
 *   - persists members (every state, failed and left ones included, self too: its
 *     incarnation) in STORE_KV_MEMBERS, key = the 16-byte node id, and records in
 *     STORE_KV_RECORDS, key = owner id (16) || record key. Writes are coalesced per key and
 *     written by one threadpool job at a time every CLUSTER_FLUSH_MS, in one store
 *     transaction per flush (one fsync however many records arrived), so the loop never waits
 *     for the disk; what is pending at close is written before the store closes;
 *   - restores both at start (self incarnation = persisted + 1, so the fresh "alive" beats any
 *     suspicion the cluster holds about the previous life), then joins through --join seeds
 *     AND the addresses of the persisted members that had not left: a restarted agent rejoins
 *     whoever it knew, with no --join;
 *   - versions the agent's own records (cluster_record_put): version = max(held + 1, wall
 *     clock ms), so versions only grow, across restarts and even after a lost state directory;
 *     the transport refuses records more than 30 days ahead of this clock (forged ones that
 *     no owner could go above; gossip_set_version_ceiling), and diagnose() says so in the log;
 *   - delivers member and record changes to subscribers OUTSIDE the gossip core (queued, then
 *     dispatched from a zero timer): a subscriber may call any cluster_* function;
 *   - keeps a summary (counts by state, incarnation, addresses, drop counters) under a mutex
 *     for readers on other threads (`agentctl status` runs on the threadpool).
 *
 * Labels blob: a msgpack map of str -> str (the --label pairs in order), at most
 * GOSSIP_LABELS_MAX (256) bytes encoded. cluster_label_get() reads one; `site` is the failure
 * domain the agreement layer scopes revisions with.
 *
 * Leaving: cluster_leave() gossips "left" and calls @done after the drain time
 * (gossip_leave_drain_ms). agentd uses it for SIGTERM (leave, then exit) and for `agentctl
 * leave` (leave, then the agent exits, as `serf leave` / `consul leave`). A restarted agent is
 * alive again at a higher incarnation and rejoins through its persisted members.
 *
 * Threads: every function runs on the loop thread, except cluster_summary() (any thread).
 * Errors: negative errno. The module logs (it is under agent/): once, where it handles.
 */
#ifndef SHOAL_AGENT_CLUSTER_H
#define SHOAL_AGENT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/config/config.h"
#include "gossip/crypto.h"
#include "gossip/gossip.h"
#include "store/store.h"

#define CLUSTER_DEFAULT_PORT 7946
#define CLUSTER_FLUSH_MS     200	/* persistence batching window */
#define CLUSTER_SUBSCRIBERS  8

struct cluster;

/* Optional overrides of gossip timings (0 = the gossip defaults, a LAN profile), and the
 * records to piggyback first. */
struct cluster_tuning {
	uint32_t probe_interval_ms;
	uint32_t probe_timeout_ms;
	uint32_t gossip_interval_ms;
	uint32_t sync_interval_ms;
	/* May be NULL. Is a record of this key urgent (gossip_env.record_urgent: sent before
	 * routine records)? A pure function of the key, the same on every node. */
	bool (*record_urgent)(const void *key, size_t klen);
};

/*
 * Create the cluster layer and start gossiping: keyring, transport, restore, join.
 * @cfg, @store, @node_id: borrowed; @store must outlive the cluster (closed after it).
 * @tuning: may be NULL. The environment variable SHOAL_GOSSIP_PROBE_MS (test clusters) sets
 *          probe interval = N, timeout = N/2, gossip interval = N/4 when @tuning is NULL or
 *          sets none of the four timings.
 * @err:    one line on failure.
 * @return 0 and *ret; -EINVAL (bad address, labels too long, bad keyring file); -ENOENT (an
 *         explicit keyring file is missing); -EADDRINUSE/-EADDRNOTAVAIL/-EACCES (bind);
 *         -errno of reading/writing the keyring or the store; -ENOMEM. Nothing to close on
 *         failure.
 */
int cluster_new(uv_loop_t *loop, const struct agent_config *cfg, struct store *store,
		const uint8_t node_id[STORE_NODE_ID_LEN], const struct cluster_tuning *tuning,
		struct cluster **ret, char *err, size_t errlen);

/*
 * Close without leaving (cluster_leave first for a clean exit): stop the timers, wait for the
 * persistence job in flight, write what is pending synchronously, close the transport. @cb
 * (may be NULL) runs from the loop once everything is released; @c is freed right after it.
 * A second call is a no-op. Accepts NULL (then @cb is not called).
 */
void cluster_close(struct cluster *c, void (*cb)(void *ud), void *ud);

/*
 * Leave the cluster: gossip "left" (persisted), then call @done(@ud) once the drain time has
 * passed (the loop must keep running). A second call only replaces nothing and returns
 * -EALREADY (@done is not called again). @return 0; -EALREADY; -ENOMEM.
 */
int cluster_leave(struct cluster *c, void (*done)(void *ud), void *ud);
bool cluster_has_left(const struct cluster *c);

/*
 * Contact more seeds ("IP:PORT" or "[IPv6]:PORT", numeric; the port defaults to 7946).
 * @return seeds contacted (>= 0); -EINVAL (one does not parse: none used); -ESHUTDOWN.
 */
int cluster_join(struct cluster *c, const char *const *addrs, size_t n);

/*
 * Publish (or replace) this node's record @key with @val. The version is chosen here (see
 * above) and persisted with the record before it is acknowledged to nobody in particular: a
 * restarted agent restores it and continues above it.
 * @key 1..GOSSIP_KEY_MAX bytes, @val 0..GOSSIP_VALUE_MAX bytes, both copied.
 * @ret_version (may be NULL) receives the version used.
 * @return 0; -EINVAL; -EMSGSIZE; -ENOMEM; -ESHUTDOWN (left).
 */
int cluster_record_put(struct cluster *c, const void *key, size_t klen, const void *val,
		       size_t vlen, uint64_t *ret_version);

/* The newest record (@owner, @key) held, or NULL. Borrowed until the next call into @c. */
const struct gossip_record *cluster_record_get(struct cluster *c,
					       const uint8_t owner[GOSSIP_ID_LEN],
					       const void *key, size_t klen);

/* Every record held (any owner, own included). Rules of gossip_record_foreach. */
int cluster_record_foreach(struct cluster *c, int (*cb)(void *ud, const struct gossip_record *r),
			   void *ud);

/*
 * Subscribe to changes, delivered from the loop after the core has returned (so @on_member /
 * @on_record may call any cluster_* function). @on_member: a member was added or changed
 * state, incarnation, address, name or labels (self included). @on_record: a record newer
 * than the one held arrived from another node (a record owned by this node arrives only when
 * the cluster held a newer one than we did, e.g. after a lost state directory). The structs
 * passed are borrowed for the call. Either callback may be NULL.
 * @return 0; -ENOSPC beyond CLUSTER_SUBSCRIBERS.
 */
int cluster_subscribe(struct cluster *c,
		      void (*on_member)(void *ud, const struct gossip_member *m),
		      void (*on_record)(void *ud, const struct gossip_record *r), void *ud);

/* Every member, self included (rules of gossip_member_foreach). */
int cluster_member_foreach(struct cluster *c, int (*cb)(void *ud, const struct gossip_member *m),
			   void *ud);
/* Member by id or NULL (borrowed until the next call into @c). */
const struct gossip_member *cluster_member_get(struct cluster *c, const uint8_t id[GOSSIP_ID_LEN]);
/* The local node as the core sees it (borrowed until the next call into @c). */
const struct gossip_member *cluster_self(struct cluster *c);

/*
 * Labels. cluster_labels_encode builds the blob from "KEY=VALUE" strings (pure; for tests).
 * cluster_label_get copies the value of @key from a member's blob into @ret (NUL-terminated,
 * truncated to @cap - 1). cluster_labels_format writes "k=v,k=v" into @buf (NUL-terminated).
 * Returns: encode 0/-EINVAL/-EMSGSIZE; get the value length, -ENOENT, -EBADMSG; format the
 * number of pairs or -EBADMSG. Decoders are bounds-checked (the blob comes from the network).
 */
int cluster_labels_encode(char *const *pairs, size_t n, uint8_t *ret_blob, size_t cap,
			  size_t *ret_len);
int cluster_label_get(const uint8_t *blob, size_t len, const char *key, char *ret, size_t cap);
int cluster_labels_format(const uint8_t *blob, size_t len, char *buf, size_t cap);

/* Keyring operations: applied to the live keyring, then the file is rewritten atomically
 * (on a failed save the live change is undone). @return 0; the gossip_keyring_* errors;
 * -errno of the save. install: @key_b64 one base64 key, *ret_id its id. */
int cluster_keyring_install(struct cluster *c, const char *key_b64, uint8_t *ret_id);
int cluster_keyring_use(struct cluster *c, uint8_t id);
int cluster_keyring_remove(struct cluster *c, uint8_t id);
/* Reload the keyring file (SIGHUP). On failure the running keyring is kept. */
int cluster_keyring_reload(struct cluster *c);
struct gossip_keyring *cluster_keyring(struct cluster *c);
const char *cluster_keyring_path(const struct cluster *c);

/* A consistent summary, readable from any thread. */
struct cluster_summary {
	size_t members[4];		/* by enum gossip_state, self included */
	uint64_t incarnation;
	bool left;
	char bind[64], advertise[64];
	unsigned keys;
	int primary_key;		/* id, or -1 */
	uint64_t packets_in, packets_out, bytes_in, bytes_out, send_errors, malformed;
	uint64_t drops[GOSSIP_DROP_MAX];
	uint64_t sync_ok, sync_failed;
	uint64_t records;
	uint64_t persist_errors;	/* failed store writes (logged) */
};
void cluster_summary(struct cluster *c, struct cluster_summary *ret);

/* The transport stats and core stats (loop thread), for the metrics endpoint. */
struct gossip_transport;
struct gossip_transport *cluster_transport(struct cluster *c);

#endif
