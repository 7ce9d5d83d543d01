/*
 * agent/fleet/records.h: the replicated fleet state as gossip records, and their codec.
 *
 * A header of its own (fleet.h is the fleet's manual) because the codec is pure and stands
 * alone: no loop, clock, store or log; the fuzzer (tests/fuzz/fuzz_agent_records.c) links it
 * without the rest.
 *
 * Every record is owned by the node that wrote it (gossip versions it per (owner, key)); its
 * key names what it is about and its value is versioned bytes:
 *
 *     key                         owner     value
 *     rev/<service>/<rev>         writer    'S' 2 | 'R' | ncert u32be | nelect u32be |
 *                                                store_revision_encode(r) (no cert, no elect)
 *     cert/<service>/<rev>/<i>    writer    'S' 3 | 'C' | msgpack [ncert, i, [bin16 ...],
 *                                                [[hlc u, reason u, sig bin64] ...] or []]
 *     elect/<service>/<rev>/<i>   writer    'S' 3 | 'E' | msgpack [nelect, i, [bin16 ...],
 *                                                [key bin32 ...] or []]
 *     vote/<service>/<rev>        voter     'S' 3 | 'V' | msgpack [service, rev, reason, hlc,
 *                                                subject, target, round, sig bin64, op]
 *                                   op: nil, or the operator's signed statement of an operator
 *                                   vote: [kind u, scope s, target u, ts u, nonce bin16,
 *                                   key bin32, sig bin64] (sign.h)
 *     health/<service>            node      'S' 3 | 'H' | msgpack [service s, running_rev u,
 *                                                running bin32, state u, since_hlc u, flags u,
 *                                                desired_rev u, [held bin32 ...],
 *                                                local_base_rev u, local_target_rev u,
 *                                                sig bin64, stamp u]
 *     roster                      node      'S' 3 | 'M' | msgpack [site s, left bool, addr s,
 *                                                hlc u, key bin32, sig bin64, enrol, rot]
 *                                   enrol: nil, or the operator's enrolment of (owner, key):
 *                                   [ts u, nonce bin16, opkey bin32, sig bin64] (sign.h)
 *                                   rot: nil, or the rotation from the owner's previous key:
 *                                   [prev bin32, sig bin64] (by prev, sign_rotate_sign)
 *                                   (both optional: a record of 6 fields has neither; a
 *                                   decoder of the 6-field form ignores them)
 *     remove/<node id hex>        remover   'S' 3 | 'X' | msgpack [hlc u, uid u, pid i,
 *                                                             reason s, op]
 *                                   op: the operator's signed statement of the removal, in
 *                                   the form of a vote's (kind 3, sign.h); nil: unsigned
 *
 * Signatures (agent/base/sign.h): a vote's sig is its voter's over agree_vote_msg (the voter
 * is the record's owner); a roster record's sig is its owner's key (the record's own key
 * field) over fleet_roster_msg, and the first key seen for an id is bound to it. A health
 * record's sig is its owner's (the key bound to the owner) over fleet_health_msg, which
 * includes its stamp: a receiver keeps the newest stamp per (owner, service), so an old
 * signed record replayed by another node does not replace a newer one. A remove record
 * carries an operator's statement (kind SIGN_OP_REMOVE) naming the removed id and the
 * reason's digest (sign_op_remove_subject). The certificate chunks carry each voter's
 * signed vote, the electorate chunks each elector's key. Decoders only check the form; the
 * fleet checks the signatures (it knows the owner and the trusted operator keys).
 *
 * The roster (agree.h rule 0) is the set of owners of roster records that do not say "left":
 * every node publishes its own when it starts and marks it left only on `agentctl leave`.
 * Gossip never drops a record when it reaps a member, and the cluster layer persists them,
 * so neither failure detection, reaping nor a restart shrinks the roster. The advertised
 * address lets any node try to reach a member long after gossip forgot it (reconnect).
 * An operator removes a node for good (`agentctl members remove`) with a remove/ record
 * written by the node it was asked on: the node is off the roster while its own roster record
 * is older (hlc) than the removal; a removed node that starts again republishes its record
 * with a newer stamp and is back on (and says so in the events).
 *
 *     byte 0: 'S' (magic)  byte 1: FLEET_REC_VERSION  byte 2: type  byte 3..: payload
 *
 * Why the certificate travels in separate chunks: a gossip value holds at most
 * GOSSIP_VALUE_MAX (768) bytes, and a rollback decided by 65 of 128 voters carries 1040 bytes
 * of voter ids. The revision record says how many ids its certificate has; a receiver
 * assembles the chunks of that owner and only then hands the revision to agree_accept. Every
 * chunk holds at most FLEET_CERT_PER_CHUNK voters (each with its 64-byte signature). The
 * electorate (agree.h rule 0: every id of the roster in scope with its key, 6 KiB at 128
 * nodes) travels the same way, in elect/ chunks of FLEET_ELECT_PER_CHUNK. A receiver does not
 * wait for those when it holds what they say (fleet.c, elect_from_held): a deploy's electorate
 * is the roster in its scope, kept only if the origin's signature (which covers every elector
 * and key) verifies over the one this node computes; a rollback's is, by rule, the judged
 * record's, held at rev - 1. At 128 agents a deploy then reaches every node in ~0.2-0.3 s
 * instead of 3-5 s (the last nodes waited for the 11th chunk). The chunks are still written,
 * for nodes whose roster differs (a joiner, a removal not yet seen).
 * The agreement's records that nodes wait for (rev/, cert/, vote/: fleet_key_urgent) are
 * piggybacked before the routine ones (elect/, health/, roster, remove/): see
 * gossip_env.record_urgent.
 * Version 2 (2026-12): electorates, vote rounds. Version 3 (2026-12): signed votes, roster
 * keys, signed certificates, electorate keys. Older records are refused. Within version 3
 * (2026-12, no installed base, so no version bump that would cut every record type off):
 * the health record's two reserved fields (nil) became its signature and stamp, and the
 * remove record gained its fifth field, the operator's statement. A decoder still reads the
 * older forms (nil, or 4 fields) as unsigned, and the fleet refuses them as unsigned; a
 * node of the older code ignores the new fields.
 *
 * A deterministic rollback decided by several nodes may be published by several of them, each
 * as its own records (owner = itself): receivers merge them with agree_accept (same decision,
 * largest certificate wins), so it does not matter whose copy arrives first. Three electors
 * chosen by the decision's subject publish at once, any other decider only if no valid copy
 * reached it within 10-25 s (decide.c, decision_publisher: one copy is 22 records at 128 nodes).
 *
 * Decoders read outside bytes: they check every length and type, never assert, and return
 * -EBADMSG for anything malformed (a newer version: -EPROTONOSUPPORT). Pure: no clock, no
 * store, no log. Thread-safe on distinct objects.
 */
#ifndef SHOAL_FLEET_RECORDS_H
#define SHOAL_FLEET_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agree/agree.h"
#include "store/store.h"

#define FLEET_REC_MAGIC	     'S'
#define FLEET_REC_VERSION    3
#define FLEET_REC_VALUE_MAX  768	/* = GOSSIP_VALUE_MAX */
#define FLEET_REC_KEY_MAX    128	/* = GOSSIP_KEY_MAX */
#define FLEET_CERT_PER_CHUNK 7		/* 7 * (16 + 81) bytes + framing < 768 */
#define FLEET_ELECT_PER_CHUNK 12	/* 12 * (18 + 34) bytes + framing < 768 */
#define FLEET_CHUNK_MAX	     12		/* the larger of the two */
#define FLEET_CERT_MAX	     4096	/* as store_revision_encode */
#define FLEET_HELD_MAX	     8		/* artifacts listed in a health record */

enum fleet_rec_type {
	FLEET_REC_REV = 'R',
	FLEET_REC_CERT = 'C',
	FLEET_REC_ELECT = 'E',
	FLEET_REC_VOTE = 'V',
	FLEET_REC_HEALTH = 'H',
	FLEET_REC_ROSTER = 'M',
	FLEET_REC_REMOVE = 'X',
};

/* What a key names. */
struct fleet_key {
	enum fleet_rec_type type;
	char service[65];
	uint64_t rev;		/* REV, CERT, VOTE */
	uint32_t chunk;		/* CERT, ELECT */
	uint8_t node[STORE_NODE_ID_LEN]; /* REMOVE */
};

/* Health of one (node, service), as the node publishes it. */
struct fleet_health {
	char service[65];
	uint64_t running_rev;		/* 0 = nothing runs */
	struct store_id running;	/* zero when nothing runs */
	uint8_t state;			/* enum health_state; 0xff = not watched */
	uint64_t since_hlc;		/* when the state last changed */
	bool missed;			/* the running instance missed its policy */
	bool swapping;			/* a swap of this service is in progress (pacing) */
	uint64_t desired_rev;		/* what this node wants to run */
	uint32_t nheld;			/* artifacts of the service this node holds */
	struct store_id held[FLEET_HELD_MAX];
	bool diverged;			/* `rollback --local` marker active */
	uint64_t local_base_rev;	/* the cluster rev this node diverged from */
	uint64_t local_target_rev;	/* the rev whose artifact it runs instead */
	uint64_t stamp;			/* the owner's hlc when it signed this content */
	uint8_t sig[STORE_SIG_LEN];	/* by the owner's node key over fleet_health_msg;
					 * all zero: unsigned (an older record) */
};

/* A node's roster entry, as it publishes it. */
struct fleet_roster {
	char site[65];			/* its site label, "" if none */
	bool left;			/* it left gracefully (agentctl leave) */
	char addr[64];			/* its advertised gossip ADDR:PORT, "" if unknown */
	uint64_t hlc;			/* when it published this */
	uint8_t key[STORE_KEY_LEN];	/* its node public key */
	uint8_t sig[STORE_SIG_LEN];	/* by that key, over fleet_roster_msg */
	/* Not covered by sig: each is a statement signed on its own about (owner, key). */
	bool has_enrol;			/* an operator's enrolment of (owner, key) */
	struct store_opsig enrol;	/* kind SIGN_OP_ENROL (16), scope "", target 0 */
	bool has_rot;			/* a rotation from the owner's previous key */
	uint8_t rot_prev[STORE_KEY_LEN];
	uint8_t rot_sig[STORE_SIG_LEN];	/* by rot_prev (sign.h sign_rotate_sign) */
};
#define FLEET_ENROL_KIND 16		/* = SIGN_OP_ENROL (agent/base/sign.h) */

/* An operator's removal of a node from the roster (audited: who and why). */
struct fleet_remove {
	uint64_t hlc;
	uint32_t uid;			/* the operator (SO_PEERCRED), UINT32_MAX if unknown */
	int32_t pid;
	char reason[201];
	struct store_opsig op;		/* the operator's statement (kind SIGN_OP_REMOVE, sign.h);
					 * kind 0: unsigned */
};

/* Certificate or electorate chunk. */
struct fleet_cert_chunk {
	uint32_t ncert;			/* ids in the whole certificate (electorate) */
	uint32_t index;			/* chunk number: ids [index*PER, ...) */
	uint32_t n;			/* ids in this chunk */
	bool extra;			/* sigs (certificate) or keys (electorate) present */
	uint8_t ids[FLEET_CHUNK_MAX][STORE_NODE_ID_LEN];
	struct store_cert_sig sigs[FLEET_CERT_PER_CHUNK];	/* certificate */
	uint8_t keys[FLEET_ELECT_PER_CHUNK][STORE_KEY_LEN];	/* electorate */
};

/*
 * The bytes a roster record's key signs: "shoal-roster-v1\0", the owner's id, len u8 + site,
 * left u8, len u8 + addr, hlc be64, key. Returns their length (<= FLEET_ROSTER_MSG_MAX).
 */
#define FLEET_ROSTER_MSG_MAX (16 + STORE_NODE_ID_LEN + 1 + 64 + 1 + 1 + 63 + 8 + STORE_KEY_LEN)
size_t fleet_roster_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_roster *m,
			uint8_t out[FLEET_ROSTER_MSG_MAX]);

/*
 * The bytes a health record's owner signs: "shoal-health-v1\0", the owner's id, len u8 +
 * service, running_rev be64, running (32), state u8, since_hlc be64, flags u8 (missed 1,
 * swapping 2, diverged 4), desired_rev be64, nheld u8 + held ids (32 each), local_base_rev
 * be64, local_target_rev be64, stamp be64. Returns their length (<= FLEET_HEALTH_MSG_MAX);
 * nheld above FLEET_HELD_MAX counts as FLEET_HELD_MAX.
 */
#define FLEET_HEALTH_MSG_MAX                                                                  \
	(16 + STORE_NODE_ID_LEN + 1 + 64 + 8 + STORE_ID_LEN + 1 + 8 + 1 + 8 + 1 +              \
	 FLEET_HELD_MAX * STORE_ID_LEN + 8 + 8 + 8)
size_t fleet_health_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_health *h,
			uint8_t out[FLEET_HEALTH_MSG_MAX]);

/* What the canonical signed messages (fleet_health_msg, fleet_roster_msg, fleet_endpoint_msg)
 * are made of; each writes at @p and returns the position after it. begin: @tag with its NUL,
 * then the owner's id (the same fields in another node's name are another message); str: a
 * length byte and at most @cap - 1 bytes of @s; be: @v big-endian in @bytes bytes. */
uint8_t *fleet_msg_begin(uint8_t *p, const char *tag, const uint8_t owner[STORE_NODE_ID_LEN]);
uint8_t *fleet_msg_str(uint8_t *p, const char *s, size_t cap);
uint8_t *fleet_msg_be(uint8_t *p, uint64_t v, int bytes);

/*
 * Keys. fleet_key_format: writes a NUL-terminated key into @buf (@len >= FLEET_REC_KEY_MAX + 1)
 * and returns its length, or -EINVAL (bad service, rev 0) / -ENAMETOOLONG.
 * fleet_key_parse: 0 and *ret; -EBADMSG (not one of ours or malformed); -ENOENT (a key of
 * another namespace: not an error, just not ours). @ret untouched on failure.
 */
int fleet_key_format(const struct fleet_key *k, char *buf, size_t len);
int fleet_key_parse(const void *key, size_t klen, struct fleet_key *ret);
/* Is @key one of the agreement's records that nodes wait for (rev/, cert/, vote/)? Gossip
 * sends those before routine ones (cluster_tuning.record_urgent): during a deploy or a
 * rollback every node's health record changes at once, and that wave must not hold back the
 * revision, the votes and the decision everyone waits for. The elect/ chunks are routine:
 * most nodes assemble the electorate from what they hold (elect_from_held in fleet.c). */
bool fleet_key_urgent(const void *key, size_t klen);

/* Encoders: *ret_buf malloc'd (free(3)); 0, -EINVAL, -EMSGSIZE (over FLEET_REC_VALUE_MAX),
 * -ENOMEM. The revision is encoded WITHOUT its certificate (see the chunk records). */
int fleet_rev_encode(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len);
int fleet_cert_encode(const struct store_revision *r, uint32_t index, uint8_t **ret_buf,
		      size_t *ret_len);
int fleet_elect_encode(const struct store_revision *r, uint32_t index, uint8_t **ret_buf,
		       size_t *ret_len);
int fleet_vote_encode(const struct store_vote *v, uint8_t **ret_buf, size_t *ret_len);
/* A vote with the operator's statement @op (NULL or kind 0: none). */
int fleet_vote_encode_op(const struct store_vote *v, const struct store_opsig *op,
			 uint8_t **ret_buf, size_t *ret_len);
int fleet_health_encode(const struct fleet_health *h, uint8_t **ret_buf, size_t *ret_len);
int fleet_roster_encode(const struct fleet_roster *m, uint8_t **ret_buf, size_t *ret_len);
int fleet_remove_encode(const struct fleet_remove *x, uint8_t **ret_buf, size_t *ret_len);
/* Chunks needed for a certificate of @ncert ids (0 for none), an electorate of @nelect. */
uint32_t fleet_cert_chunks(uint32_t ncert);
uint32_t fleet_elect_chunks(uint32_t nelect);

/*
 * Decoders. The value's type byte must match the function. On success the outputs are filled
 * (fleet_rev_decode: ret->cert NULL, ret->ncert = the announced certificate size, which the
 * caller fills from the chunks). 0; -EBADMSG; -EPROTONOSUPPORT; -ENOMEM; outputs untouched on
 * failure. fleet_rev_decode likewise announces ret->nelect with ret->elect NULL.
 * fleet_vote_decode does not know the voter (the record's owner): ret->voter is zeroed; the
 * caller sets it, and checks ret->sig. A vote without a subject is malformed.
 */
int fleet_rev_decode(const uint8_t *buf, size_t len, struct store_revision *ret);
int fleet_cert_decode(const uint8_t *buf, size_t len, struct fleet_cert_chunk *ret);
/* A certificate or electorate chunk (@t FLEET_REC_CERT or FLEET_REC_ELECT). */
int fleet_ids_decode(const uint8_t *buf, size_t len, enum fleet_rec_type t,
		     struct fleet_cert_chunk *ret);
int fleet_vote_decode(const uint8_t *buf, size_t len, struct store_vote *ret);
/* fleet_vote_decode, and the operator's statement into *ret_op (kind 0 when none). */
int fleet_vote_decode_op(const uint8_t *buf, size_t len, struct store_vote *ret,
			 struct store_opsig *ret_op);
int fleet_health_decode(const uint8_t *buf, size_t len, struct fleet_health *ret);
int fleet_roster_decode(const uint8_t *buf, size_t len, struct fleet_roster *ret);
int fleet_remove_decode(const uint8_t *buf, size_t len, struct fleet_remove *ret);
/* The type byte of a value (0 and *ret), -EBADMSG, -EPROTONOSUPPORT. */
int fleet_value_type(const uint8_t *buf, size_t len, enum fleet_rec_type *ret);

#endif
