/*
 * gossip/crypto.h: the cluster keyring, packet sealing and opening, replay protection and the
 * TCP frame format of the gossip transport.
 *
 * Every byte the gossip layer puts on the wire is sealed here with XChaCha20-Poly1305-IETF
 * (libsodium) under one of the cluster keys. A receiver never parses an unauthenticated byte:
 * the header is checked for length, version and key id, the counter against the sender's
 * replay window, then the AEAD tag; only then is the plaintext handed to the protocol core.
 *
 * Keyring
 * -------
 * Up to GOSSIP_KEYRING_MAX keys of GOSSIP_KEY_LEN (32) random bytes. Each key has a one-byte
 * id DERIVED from the key (the first byte of BLAKE2b-256("shoal-gossip-key-id" || key)), so
 * every node agrees on the id of a key without coordination and an operator can name a key by
 * its id (`agentctl keyring use 3f`). Installing a key whose id collides with a different
 * installed key fails with -EEXIST: generate another key (1 chance in 256 per pair).
 *
 * One key is the primary: it seals everything this node sends. Every installed key opens.
 * Rotation without downtime, across a running cluster:
 *   1. install the new key everywhere (nodes still seal with the old one, open both);
 *   2. make the new key primary everywhere (mixed senders are fine: everyone opens both);
 *   3. remove the old key everywhere.
 * The primary can never be removed (-EBUSY); the first key installed becomes the primary.
 *
 * Keyring file: text, one base64 (standard alphabet, with padding) key per line, the primary
 * first; blank lines and lines starting with '#' are ignored. gossip_keyring_save() writes it
 * atomically (temporary file in the same directory, fsync, rename, fsync of the directory)
 * with mode 0600. A key file for `keyring install` is the same format with one key.
 *
 * Sealed packet (datagram, or the payload of one TCP frame)
 * ---------------------------------------------------------
 *
 *   0     1     2     3                  19                 27                 35
 *   +-----+-----+-----+------------------+------------------+------------------+---
 *   | ver | kid |kind | sender id (16)   | counter (u64 BE) | nonce (8, random)| ...
 *   +-----+-----+-----+------------------+------------------+------------------+---
 *   |<--------------------- header: GOSSIP_SEAL_HEADER (35) bytes ------------->|
 *
 *       ---+---------------------------------+---------------------+
 *      ... | ciphertext (same length as the  | Poly1305 tag (16)   |
 *          | plaintext)                      |                     |
 *       ---+---------------------------------+---------------------+
 *
 *   ver      GOSSIP_SEAL_VERSION (2)
 *   kid      id of the key that sealed it (no trial decryption)
 *   kind     GOSSIP_SEAL_DATAGRAM (0) or GOSSIP_SEAL_STREAM (1): a datagram cannot be replayed
 *            into a stream or the other way round, and each kind has its own replay window
 *   sender   the sender's 16-byte node id (authenticated, see below)
 *   counter  per-sender, strictly increasing across both kinds and across restarts
 *   nonce    8 random bytes (randombytes_buf); XChaCha20's 24-byte nonce is
 *            counter (8) || these 8 bytes || the first 8 bytes of the sender id: unique per
 *            key by the counter (per sender, never repeated) and, should a counter ever repeat
 *            (a clock set back across a restart, two nodes claiming one id), by the random part
 *
 *   associated data = the 35 header bytes || BLAKE2b-256(cluster name)
 *
 * Since the whole header is associated data, nobody without a cluster key can forge a sender id
 * or a counter. Total overhead: GOSSIP_SEAL_OVERHEAD = 35 + 16 = 51 bytes per packet (version
 * 1 of this format carried a 24-byte random nonce; its packets are refused as bad_version).
 *
 * Replay protection
 * -----------------
 * The receiver keeps, per (sender id, kind), the highest counter it accepted and a 64-bit
 * bitmap of the 64 counters below it (as IPsec and WireGuard do): a packet is a replay if its
 * counter is at or below (highest - 64) or its bit is already set. The window only moves after
 * the tag checks, so garbage cannot poison it. To accept a restarted sender, the counter starts
 * at (counter_base << 20) where counter_base defaults to the wall clock in milliseconds at
 * startup: a restart always starts above anything the previous run sent, unless the previous
 * run sent more than 2^20 packets per millisecond of its lifetime, or the wall clock went
 * backwards across the restart (the caller may persist and pass a larger base: see
 * gossip_crypto_new()). The window table holds at most GOSSIP_REPLAY_SENDERS senders; beyond
 * that the least recently heard one is forgotten (a replay of its old packets would then be
 * accepted once: the cost of a bounded table, and only a key holder can fill it).
 * A packet that claims this node's own sender id is dropped (a reflection).
 *
 * TCP frames
 * ----------
 *
 *   +--------------------+------------------------------------------+
 *   | length (u32 BE)    | sealed packet of `length` bytes, kind=1  |
 *   +--------------------+------------------------------------------+
 *
 * Each frame is sealed on its own like a datagram, with its own nonce and counter. A frame
 * length outside [GOSSIP_SEAL_OVERHEAD, GOSSIP_FRAME_MAX] ends the stream.
 *
 * Threads: none of these objects is thread-safe; use each from one thread (the loop thread).
 * Errors: negative errno. The module never logs. Key material is wiped (sodium_memzero) when
 * a key is removed and when a keyring is freed.
 */
#ifndef SHOAL_GOSSIP_CRYPTO_H
#define SHOAL_GOSSIP_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOSSIP_KEY_LEN	     32
#define GOSSIP_KEY_B64LEN    44 /* base64 with padding, without the NUL */
#define GOSSIP_KEYRING_MAX   16
#define GOSSIP_SENDER_LEN    16
#define GOSSIP_SEAL_VERSION  2
#define GOSSIP_SEAL_HEADER   35
#define GOSSIP_SEAL_TAG	     16
#define GOSSIP_SEAL_NONCE    8 /* on the wire (see make_nonce in crypto.c) */
#define GOSSIP_SEAL_OVERHEAD_BYTES (GOSSIP_SEAL_HEADER + GOSSIP_SEAL_TAG) /* 51 */
#define GOSSIP_FRAME_PREFIX  4
#define GOSSIP_FRAME_MAX     (1024 * 1024) /* bound on one sealed frame (prefix excluded) */
#define GOSSIP_REPLAY_SENDERS 8192
#define GOSSIP_REPLAY_WINDOW 64

enum gossip_seal_kind {
	GOSSIP_SEAL_DATAGRAM = 0,
	GOSSIP_SEAL_STREAM = 1,
};

/* Why a packet was dropped by gossip_crypto_open(): index of gossip_crypto_stats.drops. */
enum gossip_drop {
	GOSSIP_DROP_TOO_SHORT = 0, /* shorter than the overhead, or a bad frame length */
	GOSSIP_DROP_BAD_VERSION,   /* unknown version byte, or wrong kind for the channel */
	GOSSIP_DROP_UNKNOWN_KEY,   /* key id not in the keyring */
	GOSSIP_DROP_AUTH,	   /* tag does not verify (tampered, other cluster name, ...) */
	GOSSIP_DROP_REPLAY,	   /* counter already seen or too old */
	GOSSIP_DROP_SELF,	   /* claims to come from this node */
	GOSSIP_DROP_MAX
};

/* Lowercase name of a drop reason ("too_short", "bad_version", "unknown_key", "auth",
 * "replay", "self"), for metrics labels; "unknown" for anything else. Static string. */
const char *gossip_drop_name(enum gossip_drop reason);

/* ---- keys ------------------------------------------------------------------------------- */

/* Fill @ret_key with GOSSIP_KEY_LEN random bytes (randombytes_buf). */
void gossip_key_generate(uint8_t ret_key[GOSSIP_KEY_LEN]);

/* The derived one-byte id of @key (see the top of this file). */
uint8_t gossip_key_id(const uint8_t key[GOSSIP_KEY_LEN]);

/* Base64 of @key into @out, which must hold GOSSIP_KEY_B64LEN + 1 bytes; NUL-terminated. */
void gossip_key_encode(const uint8_t key[GOSSIP_KEY_LEN], char out[GOSSIP_KEY_B64LEN + 1]);

/*
 * Parse one base64 key from @text (leading and trailing whitespace ignored; @len bytes, not
 * necessarily NUL-terminated).
 * @return 0; -EINVAL if it is not base64 of exactly GOSSIP_KEY_LEN bytes. @ret_key untouched
 *         on failure.
 */
int gossip_key_decode(const char *text, size_t len, uint8_t ret_key[GOSSIP_KEY_LEN]);

/* ---- keyring ---------------------------------------------------------------------------- */

struct gossip_keyring;

/* Allocate an empty keyring. @return 0 or -ENOMEM (also if libsodium cannot initialise). */
int gossip_keyring_new(struct gossip_keyring **ret);

/* Wipe and free; NULL is fine. No gossip_crypto may still borrow it. */
void gossip_keyring_free(struct gossip_keyring *kr);

/*
 * Install @key. The first key of an empty keyring becomes the primary. Installing a key that is
 * already installed is a no-op (0), so a reload is idempotent.
 * @ret_id (may be NULL) receives the key's id.
 * @return 0; -EEXIST if a different installed key has the same id; -ENOSPC if the keyring
 *         already holds GOSSIP_KEYRING_MAX keys.
 */
int gossip_keyring_install(struct gossip_keyring *kr, const uint8_t key[GOSSIP_KEY_LEN],
			   uint8_t *ret_id);

/* Make key @id the primary. @return 0 or -ENOENT. */
int gossip_keyring_use(struct gossip_keyring *kr, uint8_t id);

/* Remove and wipe key @id. @return 0; -ENOENT; -EBUSY if it is the primary. */
int gossip_keyring_remove(struct gossip_keyring *kr, uint8_t id);

/* Number of installed keys. */
size_t gossip_keyring_count(const struct gossip_keyring *kr);

/* Id of the primary key, or -ENOENT if the keyring is empty. */
int gossip_keyring_primary(const struct gossip_keyring *kr);

/*
 * Copy up to @cap key ids into @ret_ids, primary first, the others in installation order.
 * @return the number of installed keys (may exceed @cap: then only @cap were written).
 */
size_t gossip_keyring_list(const struct gossip_keyring *kr, uint8_t *ret_ids, size_t cap);

/* Whether key @id is installed. */
bool gossip_keyring_has(const struct gossip_keyring *kr, uint8_t id);

/*
 * Copy the key material of @id into @ret_key (for `keyring list --show`, tests).
 * @return 0 or -ENOENT (@ret_key untouched).
 */
int gossip_keyring_get(const struct gossip_keyring *kr, uint8_t id,
		       uint8_t ret_key[GOSSIP_KEY_LEN]);

/*
 * Replace the whole content of @kr by the keyring file at @path (format at the top). The file
 * is fully parsed before @kr changes: on any failure @kr is untouched. Safe to call on a
 * keyring borrowed by a live gossip_crypto (a SIGHUP reload): the next seal uses the file's
 * primary, and keys absent from the file stop opening.
 * @return 0; -errno of open/read; -EINVAL if a line is not a key or the file has no key;
 *         -EEXIST on an id collision; -ENOSPC beyond GOSSIP_KEYRING_MAX keys; -EFBIG if the
 *         file exceeds 64 KiB; -ENOMEM.
 */
int gossip_keyring_load(struct gossip_keyring *kr, const char *path);

/*
 * Parse keyring text (the file format) from memory: as gossip_keyring_load(). Used by the load
 * path and the fuzzer.
 */
int gossip_keyring_parse(struct gossip_keyring *kr, const char *text, size_t len);

/*
 * Write @kr to @path atomically with mode 0600 (primary first).
 * @return 0; -ENOENT if the keyring is empty (an empty file could not be loaded back);
 *         -errno of open/write/fsync/rename (the old file, if any, is then untouched).
 */
int gossip_keyring_save(const struct gossip_keyring *kr, const char *path);

/* ---- sealing, opening ------------------------------------------------------------------- */

struct gossip_crypto;

struct gossip_crypto_stats {
	uint64_t sealed;		  /* packets and frames sealed */
	uint64_t opened;		  /* packets and frames accepted */
	uint64_t drops[GOSSIP_DROP_MAX]; /* rejected, by reason */
};

/*
 * Create a sealer/opener for one node.
 * @kr       borrowed: must outlive the returned object; may change between calls (install,
 *           use, remove, load) and the next call sees the change.
 * @cluster  cluster name (NUL-terminated, may be empty); copied (only its hash is kept).
 * @sender   this node's 16-byte id, copied.
 * @counter_base  the first counter is (@counter_base << 20); pass 0 for the default, the wall
 *           clock in milliseconds (CLOCK_REALTIME). Must be below 2^43.
 * @return 0; -EINVAL (@counter_base too large); -ENOMEM.
 */
int gossip_crypto_new(struct gossip_keyring *kr, const char *cluster,
		      const uint8_t sender[GOSSIP_SENDER_LEN], uint64_t counter_base,
		      struct gossip_crypto **ret);

/* Free (NULL is fine). */
void gossip_crypto_free(struct gossip_crypto *c);

/*
 * Seal @len bytes of @plain as @kind into @out (capacity @cap), with the primary key.
 * @plain and @out must not overlap.
 * @ret_len receives len + GOSSIP_SEAL_OVERHEAD_BYTES.
 * @return 0; -ENOKEY if the keyring is empty; -EMSGSIZE if @cap is too small or the result would
 *         exceed GOSSIP_FRAME_MAX; -EINVAL for a bad @kind.
 */
int gossip_crypto_seal(struct gossip_crypto *c, enum gossip_seal_kind kind, const uint8_t *plain,
		       size_t len, uint8_t *out, size_t cap, size_t *ret_len);

/*
 * Check and decrypt one sealed packet of @kind. Checks in order, each failure counted in the
 * stats under its reason and nothing parsed: length (too_short), version and kind
 * (bad_version), key id (unknown_key), sender is self (self), counter against the window
 * (replay), tag (auth); then the window moves.
 * @out     receives the plaintext, len - GOSSIP_SEAL_OVERHEAD_BYTES bytes; capacity @cap.
 *          @pkt and @out must not overlap. On failure its content is unspecified (libsodium
 *          may have zeroed it); @ret_len and @ret_sender are then untouched.
 * @ret_len, @ret_sender (may be NULL): plaintext length and the authenticated sender id.
 * @return 0; -EBADMSG (too short, bad version or kind); -ENOKEY (unknown key id);
 *         -EKEYREJECTED (tag); -EALREADY (replay); -ELOOP (own sender id); -EMSGSIZE if @cap
 *         is too small (not counted as a drop: a caller bug).
 */
int gossip_crypto_open(struct gossip_crypto *c, enum gossip_seal_kind kind, const uint8_t *pkt,
		       size_t len, uint8_t *out, size_t cap, size_t *ret_len,
		       uint8_t ret_sender[GOSSIP_SENDER_LEN]);

/* Counters since creation. Borrowed; valid until gossip_crypto_free(). */
const struct gossip_crypto_stats *gossip_crypto_stats(const struct gossip_crypto *c);

/* The counter the next seal will use (tests). */
uint64_t gossip_crypto_next_counter(const struct gossip_crypto *c);

/* ---- TCP frames ------------------------------------------------------------------------- */

/* Write the u32 BE length prefix for a sealed packet of @len bytes into @out. */
void gossip_frame_put_len(uint8_t out[GOSSIP_FRAME_PREFIX], uint32_t len);

/*
 * Look at the start of a stream buffer @buf of @len bytes.
 * @ret_need receives the total number of bytes (prefix included) the first frame occupies when
 *         its prefix is complete, else GOSSIP_FRAME_PREFIX.
 * @return 1 if a whole frame is at @buf (its sealed packet is @buf + GOSSIP_FRAME_PREFIX,
 *         *@ret_need - GOSSIP_FRAME_PREFIX bytes); 0 if more bytes are needed; -EMSGSIZE if the
 *         announced length is outside [GOSSIP_SEAL_OVERHEAD_BYTES, GOSSIP_FRAME_MAX] (end the
 *         stream; @ret_need untouched).
 */
int gossip_frame_parse(const uint8_t *buf, size_t len, size_t *ret_need);

#endif /* SHOAL_GOSSIP_CRYPTO_H */
