/*
 * gossip/proto.h: the gossip wire codec (internal to gossip/: gossip__ symbols; the others use
 * gossip.h). A tiny, strict msgpack reader/writer plus the message and sync-buffer layouts.
 *
 * Packet (one UDP datagram's plaintext):
 *
 *     [ version:uint, sender:bin16, [ msg, msg, ... ] ]        (at most GOSSIP_PROTO_MAX_MSGS)
 *
 * Messages, each a msgpack array whose first element is its type:
 *
 *     PING     [1, seq:uint32, target:bin16|nil, clock:uint64]
 *              nil target = a join; clock = the sender's probe clock (swim.c, "Probe
 *              schedule"), 0 if it has none
 *     ACK      [2, seq:uint32]
 *     NACK     [3, seq:uint32]
 *     PINGREQ  [4, seq:uint32, target:bin16, addr]
 *     ALIVE    [5, id:bin16, inc:uint64, name:str, addr, labels:bin]
 *     SUSPECT  [6, id:bin16, inc:uint64, accuser:bin16]
 *     DEAD     [7, id:bin16, inc:uint64, accuser:bin16]   accuser == id: the member left
 *     RECORD   [8, owner:bin16, key:bin, version:uint64, value:bin]
 *
 *     addr = bin: [family:1][port:2, big endian][ip: 0, 4 or 16 bytes by family]
 *
 * Compatibility: a message may carry more elements than listed here; the extras, each a
 * uint, nil, bool, bin or str, are skipped. Later revisions of version 2 add fields only
 * that way, so older nodes keep reading newer packets (a change they could not skip takes a
 * new GOSSIP_PROTO_VERSION). Version 2 added the ping's clock.
 *
 * Anti-entropy buffers (TCP, up to GOSSIP_SYNC_MAX):
 *
 *     DIGEST   [version, 16, sender:bin16, B:uint, members:bin(8*B), records:bin(8*B)]
 *              B a power of two <= 4096; bucket i of members is the little-endian XOR of
 *              H(id, incarnation, state) over the members whose id hash is i mod B; records
 *              likewise with H(owner, key, version), bucketed by the hash of (owner, key).
 *     DIFF     [version, 17, sender:bin16, [[id, inc, state, name, addr, labels, age], ...],
 *                                          [[owner, key, version, value], ...]]
 *              age: ms since a dead/left member's state change (0 for live ones), so that
 *              everyone reaps it at about the same time and nobody resurrects a reaped one.
 *
 * Decoders take (const uint8_t **pos, const uint8_t *end), check bounds before every read,
 * reject any type other than the one expected (a uint where a uint is due, in any width;
 * no negative integers, no floats, no maps), every length over its GOSSIP_*_MAX, ids that are
 * not exactly 16 bytes, fewer elements than listed and unknown message types: -EBADMSG, *pos
 * unspecified. Decoded strings
 * and blobs point into the input buffer.
 */
#ifndef SHOAL_GOSSIP_PROTO_H
#define SHOAL_GOSSIP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

#define GOSSIP_PROTO_MAX_MSGS 256

enum gossip_msg_type {
	GOSSIP_MSG_PING = 1,
	GOSSIP_MSG_ACK = 2,
	GOSSIP_MSG_NACK = 3,
	GOSSIP_MSG_PINGREQ = 4,
	GOSSIP_MSG_ALIVE = 5,
	GOSSIP_MSG_SUSPECT = 6,
	GOSSIP_MSG_DEAD = 7,
	GOSSIP_MSG_RECORD = 8,
	GOSSIP_SYNC_DIGEST = 16,
	GOSSIP_SYNC_DIFF = 17,
};

/* One decoded (or to-be-encoded) message. Which fields matter depends on @type (see above):
 * @id is the target (ping, ping-req; NULL for a join ping), the member (alive, suspect, dead)
 * or the owner (record); @num is the incarnation or the record version. */
struct gossip_msg {
	uint8_t type;
	uint32_t seq;
	const uint8_t *id;
	const uint8_t *accuser;
	uint64_t num;
	struct gossip_addr addr;
	const uint8_t *name;
	size_t name_len;
	const uint8_t *blob;	/* labels (alive) or key (record) */
	size_t blob_len;
	const uint8_t *value;
	size_t value_len;
};

/* Writer over a caller buffer; once a write does not fit, @err sticks at -EMSGSIZE. */
struct gossip__w {
	uint8_t *buf;
	size_t cap, len;
	int err;
};

void gossip__w_init(struct gossip__w *w, uint8_t *buf, size_t cap);
void gossip__w_uint(struct gossip__w *w, uint64_t v);
void gossip__w_nil(struct gossip__w *w);
void gossip__w_bin(struct gossip__w *w, const void *p, size_t len);
void gossip__w_str(struct gossip__w *w, const void *p, size_t len);
void gossip__w_array(struct gossip__w *w, uint32_t n);
/* An array header of fixed width (5 bytes) whose count is filled later with
 * gossip__w_array_patch(w, at, n); returns the offset to patch. */
size_t gossip__w_array32(struct gossip__w *w);
void gossip__w_array_patch(struct gossip__w *w, size_t at, uint32_t n);
void gossip__w_addr(struct gossip__w *w, const struct gossip_addr *a);

/* Encoded size of @m in bytes (exact). */
size_t gossip__msg_size(const struct gossip_msg *m);
/* Append @m. Returns 0 or -EMSGSIZE (w->len unchanged then). */
int gossip__msg_put(struct gossip__w *w, const struct gossip_msg *m);

/* Reader primitives. Each returns 0 or -EBADMSG. */
int gossip__r_uint(const uint8_t **pos, const uint8_t *end, uint64_t *ret);
int gossip__r_array(const uint8_t **pos, const uint8_t *end, uint32_t *ret);
/* A bin (or, with @str, a str) of at most @max bytes. */
int gossip__r_bytes(const uint8_t **pos, const uint8_t *end, bool str, size_t max,
		   const uint8_t **ret, size_t *ret_len);
int gossip__r_id(const uint8_t **pos, const uint8_t *end, const uint8_t **ret);
int gossip__r_addr(const uint8_t **pos, const uint8_t *end, struct gossip_addr *ret);
bool gossip__r_nil(const uint8_t **pos, const uint8_t *end);	/* consumes it if present */

/*
 * Packet header: [version, sender, [ ... reads up to the message count.
 * @return 0; -EPROTONOSUPPORT (other version; the rest is not read); -EBADMSG.
 */
int gossip__pkt_open(const uint8_t **pos, const uint8_t *end, const uint8_t **ret_sender,
		    uint32_t *ret_nmsgs);
/* Decode one message. @return 0; -EBADMSG. */
int gossip__msg_get(const uint8_t **pos, const uint8_t *end, struct gossip_msg *ret);
/* Fully validate a packet without side effects. @return number of messages; -EBADMSG;
 * -EPROTONOSUPPORT. */
int gossip__pkt_check(const uint8_t *buf, size_t len);

/*
 * Anti-entropy buffer header: [version, @type, sender, ... of @n elements in all, reads up to
 * the sender. What follows it is the same in two nodes' DIGESTs when their views are equal.
 * @return 0; -EPROTONOSUPPORT (other version); -EBADMSG.
 */
int gossip__sync_open(const uint8_t **pos, const uint8_t *end, int type, uint32_t n,
		      const uint8_t **ret_sender);

/* 64-bit hash helpers shared by the core and the digest. */
uint64_t gossip__hash64(const void *p, size_t len, uint64_t seed);

#endif /* SHOAL_GOSSIP_PROTO_H */
