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
 *   BINDING    Trust on first join: the first public key a node sees for a node id (in a
 *              roster record whose self-signature verifies) is bound to that id and kept in
 *              the store (STORE_KV_AGENT "nodekey/<id hex>"); a later roster record for that
 *              id with another key is refused and logged, and the member keeps its bound key.
 *              Risk, stated plainly: whoever holds the cluster key can join new identities
 *              (fresh ids, its own keys). They are on the roster from then on, so they vote on
 *              revisions deployed AFTER they joined, never on earlier ones (the electorate is
 *              in the revision, agree.h rule 0), and an operator can remove them
 *              (`agentctl members remove`). It cannot take over an id already bound.
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
 *
 * Deploys are signed by the node that writes them (store_revision.origin_sig), checked
 * against the key bound to that node; a rollback whose electorate keys differ from the bound
 * ones, or from the judged record the receiver holds (agree_rollback_matches), is refused.
 *
 * So a node holding only the cluster key cannot vote in another's name, forge a certificate
 * or deploy in another node's name. What a compromised node (its node key AND the cluster
 * key) can still do (README "Security" has the same table):
 *
 *   | it can                                              | it cannot                         |
 *   |-----------------------------------------------------|-----------------------------------|
 *   | vote in its own name (one elector of the quorum)    | vote for another node             |
 *   | deploy any artifact it holds (operator signatures   | forge a rollback certificate      |
 *   |   are not built yet)                                | take over an id whose key is bound|
 *   | add new identities to the roster (trust on first    | change an existing revision's     |
 *   |   join): they vote on revisions deployed afterwards |   electorate                      |
 *   | write a deploy whose electorate has keys of its     | make a vote count on a revision   |
 *   |   choosing                                          |   it joined after                 |
 *   | flood records, stall or drop gossip it relays       |                                   |
 *
 * Not built yet: operator keys and operator-signed deploy/rollback/remove, enrolment
 * (require-enrolment), key rotation. A node whose node.key is lost joins again as a new node
 * (empty state directory) and an operator removes the old id.
 *
 * Signatures cost: signed are what changes (votes, roster records, the certificates that
 * carry them), never pings; a vote record grows by 66 bytes.
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
/* Does @sig verify for @msg under @pk? false for an all-zero @pk (an unknown key). */
bool sign_verify(const uint8_t pk[SIGN_PUBLIC_LEN], const void *msg, size_t len,
		 const uint8_t sig[SIGN_SIG_LEN]);
/* A deterministic key pair from a 32-byte seed (tests, the simulator). */
void sign_key_from_seed(const uint8_t seed[32], struct sign_key *ret);
/* A fresh random key pair. */
void sign_key_random(struct sign_key *ret);

/* Text for errors of this module, else strerror. */
const char *sign_strerror(int err);

#endif
