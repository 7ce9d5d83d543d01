/*
 * agent/cluster/fetch.h: peer-to-peer artifact transfer over the gossip port.
 *
 * An artifact a node lacks is fetched from peers that hold it, over an application stream of
 * the gossip transport (gossip/transport.h, protocol FETCH_PROTO): every frame is sealed with
 * the cluster keyring, so only cluster members can ask or answer, and no registry or git
 * server needs to be reachable.
 *
 * Wire protocol (one msgpack array per frame; requests are answered in order on one stream):
 *
 *     [1, GET_MANIFEST(1), id bin32]            -> [1, MANIFEST(0x81), id, manifest bin]
 *     [1, GET_BLOB(2), blob bin32]              -> [1, BLOB(0x82), blob, size, hashes bin(32*n)]
 *     [1, GET_CHUNK(3), blob bin32, index]      -> [1, CHUNK(0x83), blob, index, bytes bin]
 *     any failure                               -> [1, ERROR(0x80), id, code]
 *
 *   codes: FETCH_E_NOT_FOUND (the peer lacks it), FETCH_E_CORRUPT (its copy fails its hash:
 *   the peer refuses to serve bytes it cannot verify), FETCH_E_BAD_REQUEST, FETCH_E_INTERNAL,
 *   FETCH_E_BUSY (its upload slots are taken: ask another holder, or again later).
 *   The first element is the protocol version (FETCH_VERSION); another version is refused.
 *
 * Receiving side, per artifact: GET_MANIFEST, decode it (store_manifest_decode) and check
 * store_manifest_id == the requested id; open a store import; for each file in manifest
 * order: if its blob is already in the local store, copy it locally (verified); otherwise
 * GET_BLOB (size and chunk hashes; the size must equal the manifest's and the count must be
 * ceil(size / STORE_CHUNK_SIZE)), then GET_CHUNK for each index with up to `window` requests in
 * flight; each chunk must have the expected length and hash to the listed hash, and the whole
 * blob must hash to its id at the end. Finally store_import_commit: the committed id must equal
 * the requested one, otherwise the import is discarded (-EBADMSG). Nothing a peer sends is
 * written before it is verified, and nothing becomes visible in the store before the commit.
 *
 * Resume: when a stream breaks (socket error, idle deadline, a peer sending bad bytes), the
 * open import, the current file, the next chunk index and the running blob hash stay in
 * memory; the fetch reconnects to the next candidate peer (round robin, the same one if it is
 * the only one) and continues from the first chunk not yet written. A peer answering
 * not_found is skipped. The fetch fails after every candidate answered not_found (-ENOENT), or
 * after `max_attempts` broken connections (the last error).
 *
 * Upload slots (the swarm): a holder serves the chunks of large blobs (over
 * FETCH_SLOT_MIN_CHUNKS chunks) to at most `serve_slots` streams at once; a stream takes a slot
 * at its first chunk of a large blob and keeps it until it closes. Any other stream asking a
 * chunk of a large blob is answered FETCH_E_BUSY, and its fetch moves on to another current
 * holder (or waits 150-450 ms when every one is busy), not counting it as a failed attempt. So
 * a deploy from a single holder fans out as a tree: the first nodes to finish serve the next
 * ones, instead of the holder's uplink being split N ways. Small blobs are always served (a
 * slot would cost a crowd a round trip for a few bytes).
 *
 * Serving side: always on once fetch_new succeeded. Each request is answered on the loop from
 * the store in one bounded slice (one manifest, one chunk list, or one 256 KiB chunk, read
 * with verification: store_blob_chunk); a stream whose unsent answers exceed
 * FETCH_SERVE_QUEUE_MAX is closed (a client must read what it asks for).
 *
 * Loop and threads: everything runs on the loop of the transport; nothing here is thread-safe.
 * The receive side writes to the store on the loop (store_import_write buffers 8 MiB and then
 * writes a batch: a few milliseconds of blocking per batch).
 * Errors: negative errno. Nothing but the agentd glue at the end logs (outcomes of operator
 * and brain-driven fetches).
 */
#ifndef SHOAL_AGENT_FETCH_H
#define SHOAL_AGENT_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gossip/transport.h"
#include "store/store.h"

#define FETCH_PROTO	      'F'	/* app protocol byte on the gossip port */
#define FETCH_VERSION	      1
#define FETCH_WINDOW_DEFAULT  16	/* chunk requests in flight */
#define FETCH_WINDOW_MAX      64
#define FETCH_HASHES_MAX      30000	/* chunks of one blob in a BLOB answer (~7 GiB) */
#define FETCH_SERVE_QUEUE_MAX ((FETCH_WINDOW_MAX + 4) * STORE_CHUNK_SIZE) /* ~17 MiB */
#define FETCH_PEERS_MAX	      64	/* candidates of one transfer */
#define FETCH_HOLDERS_MAX     1024	/* holders considered when picking candidates */
#define FETCH_RETRY_QUICK_MS  100	/* see fetch_brain_need */
#define FETCH_SERVE_SLOTS_DEFAULT 2	/* upload slots for large blobs (see "Upload slots") */
#define FETCH_SLOT_MIN_CHUNKS 4		/* a blob of more chunks than this is large (> 1 MiB) */

enum fetch_msg_type {
	FETCH_GET_MANIFEST = 1,
	FETCH_GET_BLOB = 2,
	FETCH_GET_CHUNK = 3,
	FETCH_ERROR = 0x80,
	FETCH_MANIFEST = 0x81,
	FETCH_BLOB = 0x82,
	FETCH_CHUNK = 0x83,
};

enum fetch_error_code {
	FETCH_E_NOT_FOUND = 1,
	FETCH_E_CORRUPT = 2,
	FETCH_E_BAD_REQUEST = 3,
	FETCH_E_INTERNAL = 4,
	FETCH_E_BUSY = 5,
};

/* One decoded frame. Byte fields are BORROWED from the decoded buffer. */
struct fetch_msg {
	uint8_t type;		/* enum fetch_msg_type */
	struct store_id id;	/* artifact (manifest messages) or blob id; ERROR: what failed */
	uint32_t index;		/* GET_CHUNK, CHUNK */
	uint64_t size;		/* BLOB: blob size */
	uint32_t code;		/* ERROR: enum fetch_error_code (any value accepted) */
	const uint8_t *data;	/* MANIFEST: manifest bytes; CHUNK: chunk bytes; BLOB: hashes */
	size_t len;		/* bytes at @data (BLOB: 32 * number of chunks) */
};

/*
 * Encode @m (fields used by its type as in the table above) into a malloc'd buffer.
 * @return 0 and *ret_buf, *ret_len (free with free(3)); -EINVAL (unknown type, BLOB hashes not a
 *         multiple of 32 or over FETCH_HASHES_MAX); -EMSGSIZE (over GOSSIP_STREAM_PAYLOAD_MAX);
 *         -ENOMEM. Outputs untouched on failure.
 */
int fetch_msg_encode(const struct fetch_msg *m, uint8_t **ret_buf, size_t *ret_len);

/*
 * Decode one frame (bytes from a peer: every type and length checked, trailing bytes refused).
 * @return 0 and *ret (borrowing from @buf); -EBADMSG (malformed, unknown type, a bin of the
 *         wrong length, CHUNK over STORE_CHUNK_SIZE, BLOB hashes not 32*n or over
 *         FETCH_HASHES_MAX); -EPROTONOSUPPORT (another version). @ret untouched on failure.
 */
int fetch_msg_decode(const uint8_t *buf, size_t len, struct fetch_msg *ret);

/* ---- the service ------------------------------------------------------------------------- */

struct fetch;

struct fetch_config {
	unsigned window;	/* chunk requests in flight; 0 = FETCH_WINDOW_DEFAULT */
	unsigned max_attempts;	/* broken connections of one transfer before it fails;
				 * 0 = 4 per peer, >= 8 */
	uint32_t retry_ms;	/* brain hook: first back-off after a failed attempt; 0 = 1000 */
	uint32_t retry_max_ms;	/* brain hook: back-off cap; 0 = 60000 */
	unsigned serve_slots;	/* upload slots for large blobs; 0 = FETCH_SERVE_SLOTS_DEFAULT */
	struct store_import_limits limits; /* what a fetched artifact may hold, as a local
					 * import (agentd's max-artifact-*); zeros: the store's */
};

/*
 * What the agent tells the fetch about the cluster (fetch_set_hooks); any may be NULL.
 *   holders: fill @ret with up to @max ids of nodes that announce holding @id (their health
 *            records), return the count. Asked at every attempt, so candidates are current.
 *   wanted:  does @service still need @id here (its desired artifact)? false ends the
 *            brain hook's retries for it.
 */
struct fetch_hooks {
	size_t (*holders)(void *ud, const struct store_id *id,
			  uint8_t (*ret)[STORE_NODE_ID_LEN], size_t max);
	bool (*wanted)(void *ud, const char *service, const struct store_id *id);
	void *ud;
};

struct fetch_stats {
	uint64_t started, ok, failed;	    /* artifact fetches (deduplicated) */
	uint64_t chunks_in, bytes_in;	    /* verified chunks written to imports */
	uint64_t chunks_local, bytes_local; /* chunks copied from blobs already held */
	uint64_t reconnects;		    /* streams re-opened to continue a fetch */
	uint64_t not_found;		    /* peers that answered not_found */
	uint64_t bad_frames;		    /* frames refused (undecodable, wrong hash or size) */
	uint64_t served_streams, served_chunks, served_bytes, served_errors;
	uint64_t served_busy;		    /* chunk requests answered busy (slots taken) */
	uint64_t busy;			    /* our requests a holder answered busy */
};

/*
 * Completion of fetch_artifact: @err 0 (the artifact is now in the store, committed under
 * @id), -ENOENT (no candidate holds it), -EBADMSG (what the peers sent did not verify, on every
 * attempt), -ECANCELED (fetch_free), or the last -errno of the streams / the store.
 */
typedef void (*fetch_cb)(void *ud, const struct store_id *id, int err);

/*
 * Create the service and start serving FETCH_PROTO on @t. @loop, @store, @t borrowed: they
 * must outlive the service (call fetch_free before closing the transport). @cfg may be NULL.
 * @return 0 and *ret; -ENOMEM; -ENOSPC (the transport serves too many protocols).
 */
int fetch_new(uv_loop_t *loop, struct store *store, struct gossip_transport *t,
	      const struct fetch_config *cfg, struct fetch **ret);

/*
 * Stop serving, close every stream, abort every import (nothing partial is left in the store)
 * and call every pending callback with -ECANCELED (from inside this call). NULL is fine.
 */
void fetch_free(struct fetch *f);

/*
 * Fetch artifact @id from @peers (@n gossip addresses, tried in order, then round robin).
 * Concurrent requests for the same id share one transfer: the new peers are added to its
 * candidates and @cb joins its waiters.
 * @return 0: started, @cb will be called exactly once, never from inside this call;
 *         1: the artifact is already in the local store (no callback);
 *         -EINVAL (@n == 0 or over FETCH_PEERS_MAX, or @cb NULL); -ESHUTDOWN (fetch_free
 *         running); -ENOMEM; -errno of the store.
 */
int fetch_artifact(struct fetch *f, const struct store_id *id, const struct gossip_addr *peers,
		   size_t n, fetch_cb cb, void *ud);

/*
 * The same with node ids (e.g. from health records), to which the holders hook adds the
 * current holders: the live ones among them, in random order, are the candidates; when none
 * is live (or there are none), up to FETCH_PEERS_MAX live members drawn at random (not in
 * table order; those lacking it answer not_found). Random, so a crowd asking at once spreads
 * over the holders and a retry asks others.
 * @return as fetch_artifact; -ENOENT if there is no candidate at all.
 */
int fetch_artifact_from_nodes(struct fetch *f, const struct store_id *id,
			      const uint8_t (*nodes)[STORE_NODE_ID_LEN], size_t n, fetch_cb cb,
			      void *ud);

/*
 * A callback of the type fleet_need_artifact_fn (fleet/fleet.h), @ud = the struct fetch:
 * fetches @artifact and never gives up while it is wanted (hooks.wanted; without that hook,
 * until it lands). Every attempt picks its candidates afresh (fetch_artifact_from_nodes with
 * the CURRENT holders from hooks.holders; without that hook, @holders), so a node that
 * fetched it since, or a holder back from the dead, is asked. After a failed attempt it waits
 * cfg.retry_ms doubled per failure up to cfg.retry_max_ms, +-25 % (1 s .. 60 s by default);
 * sooner in two cases: an attempt that knew no holder, drew at random and missed, while the
 * holders hook now names a live one (FETCH_RETRY_QUICK_MS, for the first 3 failures: a
 * deploy's revision travels ahead of the holder's health record), and fetch_member_alive.
 * A second need for the same artifact while one waits makes it try at once. Outcomes are
 * logged (warning per failed attempt, notice on arrival).
 */
void fetch_brain_need(void *ud, const char *service, uint64_t rev, const struct store_id *artifact,
		      const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders);

/* Set (copy) the hooks; NULL clears them. */
void fetch_set_hooks(struct fetch *f, const struct fetch_hooks *hooks);

/*
 * Member @id became reachable (alive after suspect/dead, or new): every brain-hook retry
 * waiting in back-off for which @id is a current holder (or that knows no holder) tries at
 * once (at most once per FETCH_RETRY_QUICK_MS). NULL @f is fine.
 */
void fetch_member_alive(struct fetch *f, const uint8_t id[STORE_NODE_ID_LEN]);

/* Artifacts the brain hook is fetching or waiting to retry. */
size_t fetch_retrying(const struct fetch *f);

/*
 * Call @cb(@ud, id) on the loop each time a transfer lands an artifact in the store (after its
 * waiters), whoever asked for it. One callback; @cb NULL removes it.
 */
void fetch_set_arrived(struct fetch *f, void (*cb)(void *ud, const struct store_id *id),
		       void *ud);

/* Counters since creation. */
void fetch_get_stats(const struct fetch *f, struct fetch_stats *ret);

/* Number of artifact fetches in progress. */
size_t fetch_active(const struct fetch *f);

/* ---- the control operation ------------------------------------------------------------ */

struct ctl_request;
struct ctl_enc;

/*
 * Control operation "artifact.fetch" (INLINE: runs on the loop) on @f (NULL: gossip is off).
 *   args   {id: 64 hex, from?: ["IP:PORT", ...], attempt?: uint}
 *          (no from: candidates as fetch_artifact_from_nodes)
 *   result {id, state: "present" | "fetching", attempt?: uint (while fetching)}
 * Starts the transfer (or joins the one running) and names it by its attempt number; poll
 * with that attempt. A poll naming an attempt that failed gets that failure (not_found: no
 * peer holds it; internal: with the reason); a call without an attempt, or naming one that
 * did not fail, never gets an old failure: it starts a new transfer or joins the running one.
 * Errors: bad_request, not_found, shutting_down (gossip off), internal.
 */
void fetch_op_fetch(struct fetch *f, const struct ctl_request *req, struct ctl_enc *out);

#endif /* SHOAL_AGENT_FETCH_H */
