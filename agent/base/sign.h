/*
 * agent/base/sign.h: node identity keys (Ed25519, libsodium crypto_sign), and the trust model
 * they give the fleet.
 *
 * ===========================================================================================
 * Trust model (README "Security" says the same for operators)
 * ===========================================================================================
 *
 * The cluster key (gossip/crypto.h) keeps outsiders out: without it nothing a node sends is
 * read. It does not say WHO inside wrote a record: a gossip record's owner is a field any key
 * holder can set. So every statement that decides something for others is signed by the node
 * that makes it, with its own key:
 *
 *   NODE KEY   Each node has an Ed25519 key pair, made at its first start in
 *              STATE_DIR/node.key (mode 0600; a file readable by group or others is refused,
 *              with the command that fixes it). Its public key is published in the node's
 *              roster record, which is signed by that key (records.h).
 *   BINDING    A node id's public key is bound to it and kept in the store
 *              (STORE_KV_AGENT "nodekey/<id hex>": the key, then up to 4 former keys); a
 *              later roster record for that id with another key is refused and logged
 *              (unless it is a rotation, below), and the member keeps its bound key. How the
 *              first key is trusted:
 *              - trust on first join (default): the first key seen (in a roster record whose
 *                self-signature verifies) is bound. Risk, stated plainly: whoever holds the
 *                cluster key can join new identities (fresh ids, its own keys). They are on
 *                the roster from then on, so they vote on revisions deployed AFTER they
 *                joined, never on earlier ones (the electorate is in the revision, agree.h
 *                rule 0), and an operator can remove them (`agentctl members remove`).
 *              - require-enrolment: a key is bound (and its record accepted) only with an
 *                operator's ENROLMENT of (id, key) under a trusted operator key (below);
 *                an unenrolled node is not on the roster, so in no electorate.
 *              Without require-enrolment an enrolment a record carries is still checked.
 *              Nobody can take over an id already bound.
 *   ROTATION   A node changes its key with a statement signed by its bound key (below):
 *              receivers re-bind, keeping the former key for what it signed before. Its
 *              votes on a revision are signed with the key that revision's electorate names
 *              for it (a former key, kept in STATE_DIR/node.key.old.*).
 *   ELECTORATE A deploy record carries, for every elector, its id AND its public key
 *              (store_revision.elect_keys), so a vote is verified against the key the
 *              revision names, never against the receiver's current view.
 *   VOTES      A vote record carries its voter's signature over a canonical encoding of
 *              (service, rev, voter, reason, hlc, subject, target, round) (agree_vote_msg).
 *              A receiver drops a vote that does not verify against the voter's key in the
 *              revision's electorate (a non-elector's vote, which is never counted but carries
 *              an operator's request, against its bound roster key).
 *   CERTIFICATES  A rollback certificate carries each counted voter's signed vote (its hlc,
 *              reason and signature; subject, target and round are the record's), and every
 *              receiver checks each signature against the key the record's electorate gives
 *              for that voter (agree_verify_signatures) before it accepts the rollback.
 *              A certificate with a forged or missing signature is refused.
 *   HEALTH     A health record carries its node's signature over all its fields and a stamp
 *              (fleet_health_msg), made once per content; a receiver drops one that does not
 *              verify against the key bound to its owner, or is older than the one it holds.
 *   ENDPOINTS  An endpoint record (ep/<service>: the address, port, weight and state load
 *              balancers route to, agent/fleet/endpoints.h) carries its node's signature over
 *              the owner's id, all its fields and a stamp (fleet_endpoint_msg), made once per
 *              content; a receiver keeps it out of the catalog (so out of every load
 *              balancer's backend) unless it verifies against the key bound to its owner and
 *              is not older than the one it holds.
 *   LEAVES     A node leaves the roster only by its own roster record marked left (signed
 *              like every roster record); the gossip layer's "left" is not signed and does
 *              not take off a member whose key is bound. A node that sees a health, endpoint
 *              or roster record in its name that it did not sign publishes its own again.
 *
 * Deploys are signed by the node that writes them (store_revision.origin_sig), checked
 * against the key bound to that node; a rollback whose electorate keys differ from the bound
 * ones, or from the judged record the receiver holds (agree_rollback_matches), is refused.
 *
 * So a node holding only the cluster key cannot vote in another's name, forge a certificate,
 * deploy, report health or endpoints or leave in another node's name, or remove a member.
 * What a compromised node (its node key AND the cluster key) can still do (README
 * "Security" has the same table):
 *
 *   | it can                                              | it cannot                         |
 *   |-----------------------------------------------------|-----------------------------------|
 *   | vote in its own name (one elector of the quorum)    | vote for another node             |
 *   | choose the electorate keys of the deploys an        | forge a rollback certificate      |
 *   |   operator makes through it                         | deploy or roll back without an    |
 *   | replay an old signed deploy once its revision has   |   operator's signature            |
 *   |   left the retained log                             | take over an id whose key is bound|
 *   | add new identities to the roster (trust on first    | change an existing revision's     |
 *   |   join; not under require-enrolment): they vote on  |   electorate                      |
 *   |   revisions deployed afterwards                     | rotate another node's key         |
 *   | rotate its own key (under require-enrolment only to |                                   |
 *   |   a key an operator enrols)                         |                                   |
 *   | report its own health falsely                       | make a vote count on a revision   |
 *   | flood records, stall or drop gossip it relays       |   it joined after                 |
 *   |                                                     | remove a member without an        |
 *   |                                                     |   operator's signature            |
 *   |                                                     | report another's health or leave  |
 *   |                                                     | route load balancers to an address|
 *   |                                                     |   or state in another's name      |
 *
 * A node whose node.key is lost joins again as a new node (empty state directory) and an
 * operator removes the old id. Gossip's record versions are not signed: a forged copy with a
 * higher version displaces a node's record until the node publishes again above it, and a
 * version more than 30 days ahead of the receiver's clock is refused (gossip.h,
 * gossip_set_version_ceiling) so that one is always possible (README
 * "Security").
 *
 * Signatures cost: signed are what changes (votes, roster, health and endpoint records, the
 * certificates that carry votes), never pings; a vote record grows by 66 bytes, a health
 * record by 73 (signature and stamp), an endpoint record by 75.
 *
 * Errors: 0 or negative errno. No logging (base): the caller says what went wrong, with
 * sign_strerror for the codes below.
 */
#ifndef SHOAL_AGENT_SIGN_H
#define SHOAL_AGENT_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGN_PUBLIC_LEN 32
#define SIGN_SECRET_LEN 64	/* libsodium's seed || public key form */
#define SIGN_SIG_LEN	64

/* Reserved error range. */
#define SIGN_EBASE	14000
#define SIGN_EMODE	(SIGN_EBASE + 1)	/* key file readable by group or others */
#define SIGN_EFORMAT	(SIGN_EBASE + 2)	/* key file is not a key of ours */

struct sign_key {
	uint8_t pk[SIGN_PUBLIC_LEN];
	uint8_t sk[SIGN_SECRET_LEN];
};

/*
 * Load the node key at @path, or create it (mode 0600, written to a temporary file, fsync'd
 * and renamed) if it does not exist. File: "shoal-node-key-v1\n" then 64 hex digits of the
 * Ed25519 seed and a newline. A file with any permission bit for group or others is refused
 * (-SIGN_EMODE): `chmod 600 PATH` fixes it.
 * @return 0 and *ret (1 in *ret_created if it was made now); -SIGN_EMODE; -SIGN_EFORMAT;
 *         -errno of open/read/write/rename.
 */
int sign_node_key_load(const char *path, struct sign_key *ret, bool *ret_created);

/* Detached signature of @msg with @k. */
void sign_detached(const struct sign_key *k, const void *msg, size_t len,
		   uint8_t sig[SIGN_SIG_LEN]);
/*
 * Does @sig verify for @msg under @pk? false for an all-zero @pk (an unknown key).
 * Verdicts are remembered: the same (key, signature, message) bytes checked again answer
 * from memory (the last 4096 distinct triples, by a keyed BLAKE2b-256 digest of all three),
 * because the fleet meets the same signed statements over and over: every record is
 * replayed every 5 s, and a rollback decided by K nodes arrives as K certificates that carry
 * the same signed votes (at 128 nodes that was 65 Ed25519 checks per copy per replay, and
 * the whole cluster's CPU). Anything that differs in one byte is a new triple and is verified.
 * Thread-safe.
 */
bool sign_verify(const uint8_t pk[SIGN_PUBLIC_LEN], const void *msg, size_t len,
		 const uint8_t sig[SIGN_SIG_LEN]);
/* How many sign_verify calls ran Ed25519 (checked) and were answered from memory
 * (remembered) since the start; either may be NULL. */
void sign_verify_stats(uint64_t *ret_checked, uint64_t *ret_remembered);
/* Forget every remembered verdict (tests). */
void sign_verify_forget(void);
/* A deterministic key pair from a 32-byte seed (tests, the simulator). */
void sign_key_from_seed(const uint8_t seed[32], struct sign_key *ret);
/* A fresh random key pair. */
void sign_key_random(struct sign_key *ret);

/* ---- Operator keys and operator-signed changes ---------------------------------------------
 *
 * An operator key pair: `agentctl keygen FILE` writes FILE ("shoal-operator-key-v1\n" + 64 hex
 * digits of the seed, mode 0600) and FILE.pub ("shoal-operator-pub-v1\n" + 64 hex digits of
 * the public key). Every node trusts the public keys in its operators directory
 * (`operators-dir`, default /etc/shoal/operators, every *.pub file; reloaded on SIGHUP).
 *
 * A change asked by an operator carries a statement signed by the operator key
 * (struct sign_op): what (deploy, rollback or removal: sign_op_remove_subject), the service, the artifact (a deploy: its full
 * id, so the content is covered; a rollback: zero), the scope, the --to target, the time and
 * a random nonce. The deploy record carries it, so every receiver checks it against its own
 * trusted keys; an operator's rollback vote carries it, and other nodes echo that vote only
 * if it verifies; a remove record carries it, and every node applies the removal only if it
 * verifies. Replays: a rollback statement applies only to revisions written before it
 * was signed (its time is after the judged record's), a deploy statement's nonce may appear
 * at one revision only among those a node holds.
 */
/* SIGN_OP_ENROL is 16, apart from the kinds of changes (1, 2, 3): it is a statement about a
 * node, not a change. */
enum sign_op_kind {
	SIGN_OP_NONE = 0,
	SIGN_OP_DEPLOY = 1,
	SIGN_OP_ROLLBACK = 2,
	SIGN_OP_REMOVE = 3,
	SIGN_OP_ENROL = 16,
};
#define SIGN_OP_KIND_MAX SIGN_OP_REMOVE /* the kinds of changes, which records carry: 1..3 */

/*
 * A removal (`agentctl members remove`) is a statement of kind SIGN_OP_REMOVE whose "service"
 * is the removed node's id in hex (32 digits) and whose "artifact" is the BLAKE2b-256 digest
 * of the reason as recorded (the text, without its NUL); scope "" and target 0. So it names
 * the node and the reason; its time (ts_ms) bounds what it removes: a roster record its node
 * publishes after the statement was signed puts it back on, whoever replays the statement.
 */
void sign_op_remove_subject(const uint8_t id[16], const char *reason, char idhex[33],
			    uint8_t digest[32]);

struct sign_op {
	uint8_t kind;			/* enum sign_op_kind; NONE = unsigned */
	char scope[65];			/* "" = cluster, else "site:NAME" */
	uint64_t target;		/* rollback --to; 0 */
	uint64_t ts_ms;			/* wall clock of the signing, ms */
	uint8_t nonce[16];
	uint8_t key[SIGN_PUBLIC_LEN];	/* the operator's public key */
	uint8_t sig[SIGN_SIG_LEN];
};

/* The bytes an operator signs: "shoal-op-v1\0", kind, len u8 + service, artifact (32 bytes,
 * zero for a rollback), len u8 + scope, target be64, ts be64, nonce, key. */
#define SIGN_OP_MSG_MAX (12 + 1 + 1 + 64 + 32 + 1 + 64 + 8 + 8 + 16 + SIGN_PUBLIC_LEN)
size_t sign_op_msg(const struct sign_op *op, const char *service, const uint8_t artifact[32],
		   uint8_t out[SIGN_OP_MSG_MAX]);
/* Fill op->ts_ms (now), nonce and key, and sign. */
void sign_op_sign(const struct sign_key *k, const char *service, const uint8_t artifact[32],
		  struct sign_op *op);
struct sign_trust;
/* Does @op verify, under a key that @trust holds? */
bool sign_op_verify(const struct sign_op *op, const char *service, const uint8_t artifact[32],
		    const struct sign_trust *trust);

/* The control-protocol form of a signed statement (the scope travels as the request's own
 * "scope"): 258 hex digits of kind, target, ts, nonce, key, sig. */
#define SIGN_OP_HEX_LEN 258
void sign_op_hex(const struct sign_op *op, char out[SIGN_OP_HEX_LEN + 1]);
/* 0 and *ret (scope ""); -EINVAL. */
int sign_op_parse_hex(const char *hex, struct sign_op *ret);

/* Make an operator key pair at @path and @path.pub (neither may exist). 0; -EEXIST; -errno. */
int sign_operator_keygen(const char *path, struct sign_key *ret);
/* Load an operator key (mode 0600 enforced, as the node key). 0; -SIGN_EMODE; -SIGN_EFORMAT;
 * -errno. */
int sign_operator_key_load(const char *path, struct sign_key *ret);

/* The operator public keys a node trusts. */
struct sign_trust {
	size_t n;
	uint8_t (*keys)[SIGN_PUBLIC_LEN];
};
/*
 * Load every *.pub of @dir into *ret (replaced; freed with sign_trust_free). A missing
 * directory is an empty set (0). A file that is not a public key is skipped and named in
 * @bad (its first one, for the log). 0; -errno of opendir; -ENOMEM.
 */
int sign_trust_load(const char *dir, struct sign_trust *ret, char *bad, size_t badlen);
void sign_trust_free(struct sign_trust *t);
bool sign_trust_has(const struct sign_trust *t, const uint8_t key[SIGN_PUBLIC_LEN]);

/* ---- Enrolment and key rotation -------------------------------------------------------------
 *
 * ENROLMENT  An operator's statement that a node id has a public key: a struct sign_op of
 *            kind SIGN_OP_ENROL signed by an operator key, over sign_op_msg with the node id
 *            in hex (32 digits) as the service and the node's public key as the artifact
 *            (scope "", target 0). `agentctl enrol` makes it on the node (it asks agentd for
 *            its id and key); agentd keeps it in STATE_DIR/node.enrol and carries it in its
 *            roster record. A node with `require-enrolment` binds a key to an id only with an
 *            enrolment that verifies under a key of its operators directory; without it
 *            (the default) trust on first join stands, but an enrolment a record carries is
 *            checked all the same (a bad one is refused).
 * ROTATION   A node's new key is announced by a statement signed with its OLD key over
 *            "shoal-rotate-v1\0", the node id, the old and the new public key
 *            (SIGN_ROTATE_MSG_LEN bytes). A receiver that has the old key bound to the id
 *            binds the new one (and keeps the old one as a former key of the id, to verify
 *            what it signed before). No operator is needed for a rotation: a node that holds
 *            its key may change it. With require-enrolment the new key also needs its own
 *            enrolment (`agentctl rotate-key --key OPKEY` makes it in the same step).
 */
void sign_enrol_sign(const struct sign_key *op_key, const uint8_t *id, size_t idlen,
		     const uint8_t node_pk[SIGN_PUBLIC_LEN], struct sign_op *ret);
/* Does @op enrol @node_pk for @id? @trust NULL: only the signature is checked (the
 * statement is well-formed and signed by the key it names), else that key must be trusted. */
bool sign_enrol_verify(const struct sign_op *op, const uint8_t *id, size_t idlen,
		       const uint8_t node_pk[SIGN_PUBLIC_LEN], const struct sign_trust *trust);

#define SIGN_ROTATE_MSG_LEN (16 + 16 + 2 * SIGN_PUBLIC_LEN)
/* @id is 16 bytes (a node id). */
void sign_rotate_sign(const struct sign_key *old, const uint8_t id[16],
		      const uint8_t new_pk[SIGN_PUBLIC_LEN], uint8_t sig[SIGN_SIG_LEN]);
bool sign_rotate_verify(const uint8_t old_pk[SIGN_PUBLIC_LEN], const uint8_t id[16],
			const uint8_t new_pk[SIGN_PUBLIC_LEN], const uint8_t sig[SIGN_SIG_LEN]);

/* Make a new node key at @path (O_EXCL: -EEXIST if it exists), as sign_node_key_load would.
 * 0 and *ret; -errno. */
int sign_node_key_create(const char *path, struct sign_key *ret);

/* Text for errors of this module, else strerror. */
const char *sign_strerror(int err);

#endif
