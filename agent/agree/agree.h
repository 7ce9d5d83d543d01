/*
 * agent/agree.h: the agreement core: who wins a revision, who may vote, when a quorum has
 * decided a rollback, what the rollback record is, and whether a received one is valid.
 *
 * PURE: nothing here reads a clock, draws randomness, touches a socket, the store or a log.
 * The caller (agentd's reconciler, the simulator, the tests) passes every input as plain
 * arrays; the only allocations are the certificate and electorate of a record built by
 * agree_decide, the ids of agree_electorate, and temporary sorted views of votes inside a
 * call (freed before it returns; a failed one is -ENOMEM, never a different answer).
 *
 * ===========================================================================================
 * The rule (DESIGN.md "Agreement") and how this module makes it deterministic
 * ===========================================================================================
 *
 * Inputs, per service:
 *   log      the revisions this node holds (struct store_revision, any order). Rollbacks in
 *            it must have been accepted by agree_accept (their certificates checked).
 *   roster   (deploys only) every node that ever joined and has neither left gracefully nor
 *            been removed by an operator (struct agree_member; the agent keeps it replicated
 *            and persisted, see DESIGN.md). Failure detection and reaping never shrink it.
 *   votes    struct store_vote: voter, SUBJECT (agree_subject of the record at that rev the
 *            voter judged), TARGET (0 = "the previous good revision", T = operator `--to T`),
 *            ROUND and hlc. Votes of other services, revs or subjects are ignored, so the
 *            caller may pass everything it holds. A vote with subject 0 (an older store
 *            format) has no known meaning and never counts. The SUBJECT is
 *            agree_subject(record): a 64-bit digest of the judged record's identity
 *            (everything agree_revision_same compares), not its hlc alone (see rule 3).
 *
 * 0. The electorate is a fact of the revision. A deploy record carries the ELECTORATE (the
 *    roster members in its scope when it was written, sorted ids: agree_electorate) and its
 *    QUORUM RULE (struct store_quorum: majority by default, from the deployer's
 *    configuration). Only the electorate votes on the revision, the quorum is computed over
 *    it, and a rollback record copies both from its bad record. So every node computes the
 *    same decision from the same record and verifies a certificate the same way, whatever
 *    its current view: a fresh joiner, a node that forgot reaped members, a side of a
 *    partition that grew, a node configured with another quorum. Failed, unreachable and
 *    silent electors still count, so a partition's minority can never decide alone, however
 *    long it lasts; nodes that joined after the revision cannot vote on it. The caller must
 *    not deploy, vote or decide before its first full anti-entropy exchange (its roster and
 *    log would be partial).
 *
 * 1. One record per (service, rev): the winner.
 *    Two nodes may write the same rev concurrently (two operators deploying, or a deploy racing
 *    a cluster rollback). The store keeps one record per (service, rev), so every node must
 *    keep the same one whatever the arrival order: the winner is the MAXIMUM under the total
 *    order agree_revision_cmp:
 *       a. kind: rollback > deploy. A rollback at rev N+1 carries a quorum certificate; a
 *          deploy is one operator's wish. Letting the deploy win would let a minority
 *          partition (or one operator who had not seen the votes) silently undo a decision of
 *          the majority and re-run the condemned artifact without --force. The losing deploy
 *          is reported to its origin node (agree_accept tells the caller when a record it
 *          holds is displaced), whose operator redeploys at a new rev.
 *       b. hlc: the later write wins (last-writer-wins on a causally meaningful clock).
 *       c. origin id (memcmp), then artifact id, scope, operator uid/pid, reason, electorate,
 *          quorum rule, condemned artifact: so that even a buggy node writing two different
 *          records with one (hlc, origin) cannot split the cluster.
 *       d. certificate: more voters first, then memcmp of the sorted ids. Records equal in
 *          a..c are the SAME DECISION (agree_revision_same); the certificate only says how it
 *          was proven. Taking the larger one makes the stored bytes converge too.
 *    A max under a total order is commutative, associative and idempotent: any arrival order,
 *    any duplication, gives the same final record on every node (the unit test permutes).
 *
 * 2. Desired revision of a service on a node: the highest-rev winner whose scope includes the
 *    node ("" = the whole cluster; "site:NAME" = members whose site label is NAME).
 *
 * 3. What counts (agree_tally): for the record B held at rev N, the LATEST vote (by round,
 *    then hlc: store_vote_newer) of each elector of B whose subject is agree_subject(B). Votes from
 *    outside B's electorate never count, whoever holds the cluster key.
 *    Why the subject: two nodes may hold different records at rev N for a while (a deploy
 *    made in a minority partition racing the majority's rollback at the same rev). With the
 *    subject, votes against one record and against another are disjoint, so at most one of
 *    them reaches a majority. A restart does not change what a vote meant: the store keeps
 *    the subject, the target and the round with the vote.
 *    Why a digest and not the hlc: two different records at one rev can share an hlc. A
 *    cluster rollback's hlc is its bad record's + 1 by construction (rule 5), and a deploy
 *    written at that rev by a node whose wall clock is behind gets exactly that hlc from
 *    hlc_now; two rollbacks of one record written from logs that differ below it (rule 6)
 *    share their hlc but not their artifact. A vote naming the hlc would count against
 *    whichever of them the counting node holds, so health votes against one artifact could
 *    condemn another that nobody judged (tests/sim/sim_agree.c found this: a rollback whose
 *    certificate named electors who had voted against a different record at that rev).
 *
 * 4. Decision, rounds and split targets. Votes are grouped by round. The CURRENT round R is
 *    the highest round among the counted votes; only votes of round R count for the decision.
 *    Target T is decided when its round-R votes reach the quorum of the electorate. Round R
 *    is STUCK when even every elector not yet seen in round R voting for the leading target
 *    would leave it below the quorum (leading + (E - counted) < quorum): then no target can
 *    ever win round R. A voter re-casts (agree_next_vote) only
 *       - into round R + 1, when it voted in round R and sees R stuck (AGREE_VOTE_STUCK), or
 *       - into round R, when its latest vote is from an earlier round (AGREE_VOTE_BEHIND),
 *    and always for the leading target of the highest round it sees (more votes, then the
 *    smaller target). A voter casts at most one vote per round.
 *    Safety (majority rule, or any rule with quorum > E / 2): a round-(R+1) vote exists only
 *    if its voter saw round R stuck. Stuck is permanent: a vote seen later adds to one target
 *    and removes one unseen elector, so "leading + unseen" never grows. And stuck as seen by
 *    one node implies no node can ever see a quorum in round R: a quorum Q for T in round R
 *    consists of round-R votes for T, each of which any other node sees as T or not at all,
 *    so it sees T's votes + unseen >= |Q| >= quorum. Hence at most one round ever decides,
 *    the last one, and within it two targets cannot both reach a majority of one electorate
 *    (one vote per voter per round). Two nodes therefore never decide different targets for
 *    one record. (With an explicit count or fraction at or below half, two targets, or two
 *    sides of a partition, may decide; the record's rule was the operator's choice of
 *    liveness over safety, and rule 1 still makes the cluster converge.)
 *    Termination: each re-cast moves its voter to a higher round, and a round is only left
 *    when it is stuck. Once the network is stable, every elector's vote of round R reaches
 *    every node; a node waits until its view of a stuck round has been still for a settle
 *    time longer than a gossip round before it re-casts (the agent's job; a node BEHIND
 *    follows at once), so the electors that re-cast see the same round R and pick the same
 *    leading target: round R + 1 is unanimous among them and decides as soon as a quorum of
 *    electors is reachable. Without a stable network nothing can be guaranteed (FLP), and
 *    nothing unsafe happens either.
 *    Health votes and operator votes without --to are target 0; an agent that sees an
 *    operator vote with target T for its current revision echoes it with the same T (a new
 *    vote in the current round, or nothing if it already voted in it).
 *
 * 5. The rollback record for bad record B at rev N, written by every node that sees the
 *    quorum, is a function of B and the log only, never of the vote set:
 *       service, rev = N + 1, kind = rollback, scope = B's scope,
 *       artifact = target T's artifact, or for target 0 the PREVIOUS GOOD artifact: walking
 *                  down from N - 1, the first winner whose scope covers the bad scope ("" or
 *                  equal), whose artifact differs from the bad one and is not condemned as of
 *                  rev N (see 7). Every rev walked over must be present: a hole in the log
 *                  (a revision not yet received) returns AGREE_EGAP instead of guessing.
 *       electorate, quorum rule = B's; condemns = B's artifact;
 *       origin = all zeroes (the cluster, not one node), hlc = B.hlc + 1,
 *       operator_uid = UINT32_MAX, operator_pid = 0,
 *       reason = "cluster rollback of rev N" [" to rev T"] (quorum).
 *    So two nodes with different vote views write records that are agree_revision_same.
 *    The certificate is the sorted ids of the electors whose latest vote, in the deciding
 *    round, names the decided target (>= quorum). It differs between writers with different
 *    views, which is harmless: the certificate is not part of the decision's identity, any
 *    valid one proves it, and the order of 1.d makes every node keep the same one.
 *
 * 6. Verification on receipt (agree_verify, agree_accept): a received rollback is adopted
 *    only if it is well formed (rev >= 2, valid scope, zero origin, no operator, a non-zero
 *    condemned artifact other than its own, a sorted electorate and certificate, a valid
 *    rule) and its certificate holds >= quorum(rule, |electorate|) distinct members of the
 *    electorate IT CARRIES. Nothing else is consulted: not the receiver's membership view,
 *    and not the record the receiver holds at rev - 1 either, so the check gives the same
 *    answer on every node and never changes later. (Comparing with "the held bad record,
 *    named by hlc + 1" was tried and is wrong: an hlc does not name one record. Two deploys
 *    at one rev written on two sides of a partition can carry the same hlc, and a deploy
 *    can carry the synthetic hlc of a cluster rollback at its rev; nodes holding the other
 *    record then refused a valid rollback forever while the rest adopted it, and the logs
 *    never converged: tests/sim/sim_agree.c seed 933. It did not stop a forger either, who
 *    can pick any hlc.)
 *    Signatures (agent/base/sign.h): a deploy's electorate carries each elector's public
 *    key, every vote is signed by its voter, and a rollback's certificate carries each
 *    counted voter's signed vote (cert_sigs; the subject, target and round they share are
 *    the record's cert_subject, cert_target, cert_round). agree_verify_signatures checks each
 *    against the key the record's electorate gives, so a node holding only the cluster key
 *    can neither vote for another nor forge a certificate. The agent also requires, before
 *    it adopts a rollback, that its electorate (ids, keys, rule) be the one of the record it
 *    holds at rev - 1 (the judged record, or another record of that rev with the same
 *    electorate; none held yet: ask again later): with trust on first join a cluster key
 *    holder can make new identities, and a certificate of those for an electorate of its
 *    own would otherwise verify. This consults the held record, unlike the count above, but
 *    only its electorate, which two records of one rev share unless the roster changed in
 *    between, so the logs still converge in the case seed 933 found. Residual risk: a
 *    certificate
 *    proves that a quorum voted against the record with subject cert_subject toward
 *    cert_target; the rollback's artifact is not signed by the voters (rule 5 derives it
 *    from the log), so an elector's key holder replaying real votes could write a rollback
 *    record of that same decision naming another artifact that some revision ran.
 *    The previous good artifact depends on the log, and so does the artifact of an explicit
 *    target (the winner at rev T): two writers whose logs differ below N (concurrent deploys
 *    at some rev < N made on two sides of a partition and not yet merged when the votes on N
 *    complete) can write rollbacks of the same record with different artifacts; rule 1
 *    picks one and every node converges on it within an anti-entropy round. AGREE_EGAP
 *    removes the other common cause (a missing revision). Such twins share their hlc but not
 *    their subject, so votes on one never count on the other (rule 3). (The simulator counts
 *    about 0.2 of them per seed, with an explicit target or without, and checks that they
 *    settle.)
 *
 * 7. Condemned artifacts, derived from the decision records so that every node derives the
 *    same set: a winning rollback condemns the artifact it names (condemns = its bad
 *    record's, rule 5), whichever record later wins the bad rev; a later revision that names
 *    the artifact again (a deploy with --force, or an explicit --to) absolves it. The agent
 *    mirrors condemnation into the store (store_artifact_set_condemned) when it adopts a
 *    rollback, because the log is pruned; deploy checks consult both. Only the origin of a
 *    deploy checks (agree_check_deploy): --force is not carried in the record, so receivers
 *    accept any well-formed deploy.
 *
 * 8. Local rollback (`agentctl rollback --local`): a node-local marker, never a revision. It
 *    records the cluster revision it diverged from; while that revision is still the node's
 *    desired one, the node runs the marker's artifact; as soon as the cluster moves past it
 *    (a rollback or a new deploy) the marker is stale and the node follows the cluster again.
 *    The agent gossips the marker in its health record (it owns it).
 *
 * ===========================================================================================
 * How agentd drives it (what tests/sim/sim_agree.c does for every node)
 * ===========================================================================================
 *
 *   record R arrives (gossip on_record, anti-entropy, or our own deploy/decision):
 *       hlc_update(clock, wall, R.hlc)            (count -ERANGE; keep going)
 *       r = agree_accept(log, &R)
 *       r <  0: drop R
 *       AGREE_KEEP: nothing
 *       AGREE_STORE / AGREE_REPLACE: store_revision_put(R); if R is a rollback,
 *           agree_condemned_by() -> store_artifact_set_condemned(); if a deploy of ours was
 *           displaced, tell the operator; retry agree_decide for R.rev (a new subject) and for
 *           revs that failed with AGREE_EGAP/ENOTARGET/ENOREV; then reconcile.
 *   vote V arrives: store_vote_put (keeps the newest per voter); agree_next_vote for our own
 *       vote on that record (re-cast when behind at once, when stuck after a settle time; echo
 *       an operator's target as a NEW vote); agree_decide(log, V.service, V.rev, votes) == 0
 *       -> pass the record through agree_accept like any received one, gossip it.
 *   reconcile: agree_effective(log, site, local marker) -> the artifact to run.
 *   health: when what we run misses its policy, vote (subject = agree_subject of the record at that
 *       rev in our log, target 0, round from agree_next_vote) against agree_desired()->rev.
 *   deploy: agree_check_deploy (and the store's condemned flag) unless --force; rev =
 *       highest rev held + 1; hlc_now; electorate = agree_electorate(roster, scope); quorum
 *       rule = our configured one. rollback [--to T]: our vote with reason operator and
 *       target T against our desired rev. rollback --local: agree_local_rollback.
 *
 *   Gossip carries only owner-versioned records, so every node that writes the same rollback
 *   publishes it as its own record (owner = itself, key = service/rev); agree_accept merges
 *   them across owners into the one record per (service, rev) the store keeps.
 *
 * Errors: 0 or positive on success; negative errno or -AGREE_E* (reserved range below) on
 * failure; agree_strerror names them. Output parameters are untouched on failure.
 * Threads: no state; every function is reentrant. Pointers returned point into the caller's
 * arrays and live as long as those.
 */
#ifndef SHOAL_AGENT_AGREE_H
#define SHOAL_AGENT_AGREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Reserved error range: -(AGREE_EBASE + n). */
#define AGREE_EBASE	  13000
#define AGREE_ENOQUORUM	  (AGREE_EBASE + 1) /* votes do not (yet) reach the quorum */
#define AGREE_ECERT	  (AGREE_EBASE + 2) /* certificate too small in this view */
#define AGREE_EGAP	  (AGREE_EBASE + 3) /* a needed revision is missing from the log */
#define AGREE_ENOTARGET	  (AGREE_EBASE + 4) /* no earlier good revision to roll back to */
#define AGREE_EMISMATCH	  (AGREE_EBASE + 5) /* target not below, outside scope or same artifact */
#define AGREE_ENOREV	  (AGREE_EBASE + 6) /* no such revision / nothing desired */
#define AGREE_ESIG	  (AGREE_EBASE + 7) /* a certificate's signed vote does not verify */

/* Human-readable text for a negative code returned here (negative errno or -AGREE_E*). */
const char *agree_strerror(int err);

enum agree_member_state {
	AGREE_ALIVE = 0,
	AGREE_SUSPECT = 1,
	AGREE_DEAD = 2,		/* failed or unreachable: still on the roster */
	AGREE_LEFT = 3,		/* left gracefully or removed by an operator: off the roster */
};

/* A roster entry, as the agent passes it to agree_electorate. */
struct agree_member {
	uint8_t id[STORE_NODE_ID_LEN];
	enum agree_member_state state;
	const char *site;	/* value of its site= label, NULL if none; borrowed */
	uint8_t key[STORE_KEY_LEN]; /* its bound public key (agent/base/sign.h); zero: unknown */
};

/* The quorum rule kinds (struct store_quorum, carried by every revision). */
#define AGREE_QUORUM_MAJORITY STORE_QUORUM_MAJORITY
#define AGREE_QUORUM_COUNT    STORE_QUORUM_COUNT
#define AGREE_QUORUM_FRACTION STORE_QUORUM_FRACTION

/* 0, or -EINVAL if the rule is malformed (unknown kind, count 0, den 0, num 0 or num > den,
 * or a field the kind does not use set). */
int agree_quorum_check(const struct store_quorum *q);

/*
 * Votes needed out of @eligible for @q (NULL = majority). Always >= 1, so an empty electorate
 * can never decide. A malformed @q is treated as majority.
 */
uint32_t agree_quorum_size(const struct store_quorum *q, uint32_t eligible);

/* ---- Scopes ------------------------------------------------------------------------------ */

/* "" or "site:NAME" with NAME 1..59 bytes of [A-Za-z0-9._-]. */
bool agree_scope_valid(const char *scope);
/* Does @scope include a member whose site label is @site (NULL = no site label)? */
bool agree_scope_includes(const char *scope, const char *site);
/* Does every member in @inner also fall in @outer? ("" covers all; else equal.) */
bool agree_scope_covers(const char *outer, const char *inner);

/* ---- Records ----------------------------------------------------------------------------- */

/* The all-zero origin of cluster-decided rollbacks. */
extern const uint8_t agree_cluster_origin[STORE_NODE_ID_LEN];

/*
 * Total order of rule 1 (service and rev compared first, so it is total over all records).
 * @return <0, 0, >0 like memcmp; 0 only for byte-identical records (certificate included).
 */
int agree_revision_cmp(const struct store_revision *a, const struct store_revision *b);
/* Same decision: equal in everything but the certificate. */
bool agree_revision_same(const struct store_revision *a, const struct store_revision *b);

/* The winner at @rev among the log's records for that rev (NULL if none). */
const struct store_revision *agree_at(const struct store_revision *log, size_t nlog,
				      uint64_t rev);

/*
 * The desired revision for a node whose site label is @site (NULL = none): the highest rev
 * whose winner's scope includes it. NULL if none.
 */
const struct store_revision *agree_desired(const struct store_revision *log, size_t nlog,
					   const char *site);

/* ---- Electorate and votes ------------------------------------------------------------- */

/*
 * The electorate of a new revision of @scope (rule 0): the ids of @roster in scope and not
 * LEFT, sorted, each once. *ret_ids is malloc'd (free(3)); *ret_n may be 0 (a scope nobody on
 * the roster is in: such a revision can never be rolled back by votes, only by a new deploy).
 * @return 0; -E2BIG more than STORE_ELECT_MAX; -ENOMEM; -EINVAL.
 */
int agree_electorate(const struct agree_member *roster, size_t n, const char *scope,
		     uint8_t (**ret_ids)[STORE_NODE_ID_LEN], uint32_t *ret_n);

/*
 * The subject of a vote on @r (rule 3): a 64-bit FNV-1a digest of @r's identity (every field
 * agree_revision_same compares, in a fixed byte order), never 0; 0 for NULL. Two records that
 * are the same decision have the same subject whatever their certificates.
 */
uint64_t agree_subject(const struct store_revision *r);

/*
 * agree_electorate, with each elector's key (agree_member.key) in *ret_keys, parallel to
 * *ret_ids (malloc'd, NULL for an empty electorate; NULL @ret_keys: not wanted). A roster
 * listing one id twice with two
 * keys keeps the larger key (the same choice on every node).
 */
int agree_electorate_keys(const struct agree_member *roster, size_t n, const char *scope,
			  uint8_t (**ret_ids)[STORE_NODE_ID_LEN],
			  uint8_t (**ret_keys)[STORE_KEY_LEN], uint32_t *ret_n);

/* The key @r's electorate gives for elector @id, or NULL (not an elector, or no keys). */
const uint8_t *agree_elector_key(const struct store_revision *r,
				 const uint8_t id[STORE_NODE_ID_LEN]);

/*
 * Signed votes (agent/base/sign.h). agree_vote_msg writes the canonical bytes a voter signs:
 * "shoal-vote-v1\0", len u8 + service, rev be64, voter (16), reason u8, hlc be64, subject
 * be64, target be64, round be32; returns their length. agree_vote_verify: does v->sig verify
 * over them under @key (false for an all-zero key)? Deterministic (Ed25519, libsodium).
 */
#define AGREE_VOTE_MSG_MAX (14 + 1 + 64 + 8 + STORE_NODE_ID_LEN + 1 + 8 + 8 + 8 + 4)
size_t agree_vote_msg(const struct store_vote *v, uint8_t out[AGREE_VOTE_MSG_MAX]);
bool agree_vote_verify(const struct store_vote *v, const uint8_t key[STORE_KEY_LEN]);

/*
 * The signatures of a rollback's certificate (rule 6): every voter's signed vote, rebuilt
 * from the record (service, rev - 1, cert_subject, cert_target, cert_round) and its
 * cert_sigs entry, must verify against the key the record's own electorate gives that voter.
 * A deploy has nothing to check (0). Like agree_verify it consults nothing but the record,
 * so every node gives the same answer. The agent calls it before agree_accept (kept apart
 * so that the simulator and the unit tests of the counting rules need no keys).
 * @return 0; -AGREE_ESIG (a missing, unknown or forged signature); -EINVAL.
 */
int agree_verify_signatures(const struct store_revision *r);

/*
 * The bytes the origin of a deploy signs (store_revision.origin_sig): the record's canonical
 * encoding without its certificate fields and with a zero origin_sig. *ret_buf malloc'd.
 * @return 0; -EINVAL (not a deploy, or invalid); -ENOMEM.
 */
int agree_deploy_msg(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len);

/*
 * Does rollback @rb carry what its bad record @bad says (electorate and keys, quorum rule,
 * scope, condemned artifact, rev)? Only compared when @bad is the record @rb's votes judged
 * (agree_subject(@bad) == rb->cert_subject); true otherwise (nothing to compare with). The
 * agent refuses a rollback for which it is false: a forged electorate with keys of the
 * forger's choosing would make any certificate verify.
 */
bool agree_rollback_matches(const struct store_revision *bad, const struct store_revision *rb);

/* Is @id in @r's electorate? O(log E). */
bool agree_in_electorate(const struct store_revision *r, const uint8_t id[STORE_NODE_ID_LEN]);

struct agree_tally {
	uint32_t eligible;	/* the electorate's size */
	uint32_t quorum;	/* votes needed, by the record's rule */
	uint32_t round;		/* the current round (highest among counted votes) */
	uint32_t counted;	/* electors whose latest vote is of that round */
	uint64_t target;	/* leading target of the round (the decided one when decided) */
	uint32_t target_votes;	/* its votes */
	bool decided;		/* target_votes >= quorum */
	bool stuck;		/* no target can reach the quorum in this round any more */
};

/*
 * Count the votes on record @bad (rules 3 and 4): the latest vote of each elector whose
 * subject is agree_subject(@bad), in the current round. @votes may hold anything.
 * @return 0 and *ret; -EINVAL on NULL arguments; -ENOMEM.
 */
int agree_tally(const struct store_revision *bad, const struct store_vote *votes, size_t nvotes,
		struct agree_tally *ret);

enum agree_next {
	AGREE_VOTE_NONE = 0,	/* cast nothing: not an elector, decided, or vote stands */
	AGREE_VOTE_NEW = 1,	/* first vote: cast (*ret_round, *ret_target) */
	AGREE_VOTE_BEHIND = 2,	/* a later round exists: re-cast into it at once */
	AGREE_VOTE_STUCK = 3,	/* our round is stuck: re-cast into the next one after the
				 * view has been still for a settle time (rule 4) */
};

/*
 * The vote elector @self should cast on @bad now (rule 4). @own_target: the target of the
 * voter's own judgement for a first vote (0 for health, the operator's --to for an operator
 * vote or its echo). The new vote carries subject agree_subject(@bad) and a fresh hlc.
 * @return enum agree_next (>= 0) with *ret_round, *ret_target set unless AGREE_VOTE_NONE;
 *         -EINVAL; -ENOMEM.
 */
int agree_next_vote(const struct store_revision *bad, const struct store_vote *votes,
		    size_t nvotes, const uint8_t self[STORE_NODE_ID_LEN], uint64_t own_target,
		    uint32_t *ret_round, uint64_t *ret_target);

/* ---- Decision and verification ------------------------------------------------------------ */

/*
 * The previous good revision for bad rev @bad_rev (rule 5, target 0): sets *ret to the winner
 * whose artifact the rollback runs.
 * @return 0; -AGREE_ENOREV if @bad_rev is not in the log; -AGREE_EGAP if a rev between the
 *         target and @bad_rev is missing; -AGREE_ENOTARGET if no earlier revision qualifies
 *         (the walk reached the oldest rev held).
 */
int agree_previous_good(const struct store_revision *log, size_t nlog, uint64_t bad_rev,
			const struct store_revision **ret);

/*
 * Decide on bad rev @bad_rev of @service (rules 4 and 5): tally the votes on the record held
 * at @bad_rev. If a target is decided, build the rollback record into *ret (caller memory,
 * fully overwritten; it owns cert and elect: store_revision_release). The caller then passes
 * it through agree_accept like any received record.
 * @return 0 decided; -AGREE_ENOREV @bad_rev not in the log; -AGREE_ENOQUORUM no target has
 *         the quorum yet; -AGREE_EGAP / -AGREE_ENOTARGET from agree_previous_good;
 *         -AGREE_ENOREV an explicit target rev that is missing; -AGREE_EMISMATCH an explicit
 *         target >= @bad_rev, outside the bad scope or with the bad artifact; -ENOMEM;
 *         -EINVAL on NULL arguments.
 */
int agree_decide(const struct store_revision *log, size_t nlog, const char *service,
		 uint64_t bad_rev, const struct store_vote *votes, size_t nvotes,
		 struct store_revision *ret);

/*
 * Check a received (or locally decided) record (rule 6). A deploy must carry a sorted
 * electorate (possibly empty: a scope with nobody on the roster) and a valid rule, and no
 * certificate; a rollback a non-empty one.
 * @return 0 valid; -EBADMSG malformed; -AGREE_ECERT certificate below the quorum of the
 *         electorate it carries; -EINVAL on NULL arguments. @log is not consulted (rule 6:
 *         the answer is the same on every node); it is kept for callers.
 */
int agree_verify(const struct store_revision *log, size_t nlog, const struct store_revision *r);

enum agree_accept_result {
	AGREE_KEEP = 0,		/* the held record stays (incoming lost, or same bytes) */
	AGREE_STORE = 1,	/* no record held at that rev: store the incoming one */
	AGREE_REPLACE = 2,	/* the incoming record beats the held one: replace it */
};

/*
 * Merge an incoming record into the log: agree_verify, then rule 1 against the winner held at
 * incoming->rev. On AGREE_REPLACE the caller should tell the operator if the displaced record
 * was its own deploy; on AGREE_STORE/REPLACE of a rollback it should condemn
 * agree_condemned_by(log, incoming).
 * @return AGREE_KEEP / AGREE_STORE / AGREE_REPLACE, or the errors of agree_verify (the record
 *         must then be dropped).
 */
int agree_accept(const struct store_revision *log, size_t nlog,
		 const struct store_revision *incoming);

/* ---- Condemned artifacts (rule 7) --------------------------------------------------------- */

/* Is @artifact condemned as of rev @at_rev (UINT64_MAX = now) according to the log? */
bool agree_is_condemned(const struct store_revision *log, size_t nlog,
			const struct store_id *artifact, uint64_t at_rev);

/*
 * The artifact a rollback record condemns (the one it names, rule 7; @log unused, kept for
 * callers). @return 0; -EINVAL if @rollback is not a rollback; -AGREE_ENOREV if it names none.
 */
int agree_condemned_by(const struct store_revision *log, size_t nlog,
		       const struct store_revision *rollback, struct store_id *ret);

/*
 * May @artifact be deployed? 0 yes; -STORE_ECONDEMNED if the log condemns it and !@force.
 * (The agent also checks the store's condemned flag, which outlives pruned revisions.)
 */
int agree_check_deploy(const struct store_revision *log, size_t nlog,
		       const struct store_id *artifact, bool force);

/* ---- Local rollback (rule 8) -------------------------------------------------------------- */

struct agree_local {
	char service[65];
	uint64_t base_rev;		/* the desired rev this node diverged from */
	struct store_id base_artifact;	/* its artifact (the rev's winner may change) */
	uint64_t target_rev;		/* rev whose artifact runs instead */
	struct store_id artifact;	/* what this node runs while diverged */
	uint64_t hlc;			/* when (for `agentctl status` and gossip) */
};

/*
 * Build the marker for `rollback --local [--to @to_rev]` on a node with site label @site.
 * @to_rev: 0 = previous good of the desired revision.
 * @return 0; -AGREE_ENOREV nothing desired for this node, or @to_rev missing; -AGREE_EGAP /
 *         -AGREE_ENOTARGET as agree_previous_good; -AGREE_EMISMATCH @to_rev not below the
 *         desired rev, or not covering the node, or with the same artifact.
 */
int agree_local_rollback(const struct store_revision *log, size_t nlog, const char *service,
			 const char *site, uint64_t to_rev, uint64_t hlc,
			 struct agree_local *ret);

/*
 * What this node should run for the service: the desired revision's artifact, or the marker's
 * while the marker still applies.
 * @local: the node's marker for this service, or NULL.
 * @return 1 diverged (run *ret_artifact = local->artifact); 0 follow the cluster
 *         (*ret_artifact = desired artifact; if @local was given it is STALE: clear it);
 *         -AGREE_ENOREV nothing desired and no applicable marker.
 */
int agree_effective(const struct store_revision *log, size_t nlog, const char *site,
		    const struct agree_local *local, struct store_id *ret_artifact);

/*
 * A per-service quorum rule, as the agent configuration spells it (`quorum = SERVICE=SPEC`).
 * agree_quorum_parse reads "SERVICE=SPEC" (SPEC: majority | N | N/D with 0 < N <= D,
 * SERVICE a name of 1 to 64 of A-Z a-z 0-9 . _ -).
 * @return 0 and *ret; -EINVAL. @ret untouched on failure.
 */
struct agree_quorum_rule {
	char service[65];
	struct store_quorum q;
};

int agree_quorum_parse(const char *s, struct agree_quorum_rule *ret);

#endif
