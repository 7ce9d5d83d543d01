/*
 * agent/agree.h: the agreement core: who wins a revision, who may vote, when a quorum has
 * decided a rollback, what the rollback record is, and whether a received one is valid.
 *
 * PURE: nothing here reads a clock, draws randomness, touches a socket, the store or a log.
 * The caller (agentd's reconciler, the simulator, the tests) passes every input as plain
 * arrays; the only allocations are the certificate of a record built by agree_decide and
 * temporary sorted views of members and votes inside a call (freed before it returns; when
 * one fails the call computes the same answer with plain loops).
 *
 * ===========================================================================================
 * The rule (DESIGN.md "Agreement") and how this module makes it deterministic
 * ===========================================================================================
 *
 * Inputs, per service:
 *   log      the revisions this node holds (struct store_revision, any order). Rollbacks in
 *            it must have been accepted by agree_accept (their certificates checked).
 *   members  this node's membership view (struct agree_member: id, state, site label).
 *   votes    struct agree_vote: the struct store_vote, plus the SUBJECT (the hlc of the
 *            record at that rev the voter ran) and the operator's TARGET (`--to REV`; 0 = "the
 *            previous good revision"). Votes of other services, revs or subjects are ignored,
 *            so the caller may pass everything it holds.
 *   quorum   struct agree_quorum, per service; MUST be configured identically on all nodes.
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
 *       c. origin id (memcmp), then artifact id, scope, operator uid/pid, reason: so that even
 *          a buggy node writing two different records with one (hlc, origin) cannot split
 *          the cluster.
 *       d. certificate: more voters first, then memcmp of the sorted ids. Records equal in
 *          a..c are the SAME DECISION (agree_revision_same); the certificate only says how it
 *          was proven. Taking the larger one makes the stored bytes converge too.
 *    A max under a total order is commutative, associative and idempotent: any arrival order,
 *    any duplication, gives the same final record on every node (the unit test permutes).
 *
 * 2. Desired revision of a service on a node: the highest-rev winner whose scope includes the
 *    node ("" = the whole cluster; "site:NAME" = members whose site label is NAME).
 *
 * 3. Eligible voters for (service, rev): the members of the caller's view in the winner's
 *    scope whose state is not LEFT (and that had joined by the revision's hlc, when the
 *    caller knows join stamps). Alive, suspect and dead members all count: a partition's
 *    minority cannot reach a majority of a set that includes the members it cannot see.
 *    Counted votes: at most one per voter (the earliest by (hlc, target, subject) if a voter
 *    somehow has several), only from eligible voters, and only those whose SUBJECT is the
 *    record this node holds at that rev; votes from unknown ids or LEFT members are not
 *    counted.
 *    Why the subject: a vote says "rev N is bad here", but two nodes may hold different
 *    records at rev N for a while (a deploy made in a minority partition racing the
 *    majority's rollback at the same rev, merged only after the heal). Without the subject,
 *    votes cast against one record would be counted against the other, and nodes holding
 *    different winners would each write a DIFFERENT rollback for rev N + 1 (the simulator
 *    found exactly this). With it, the votes against one record and those against another
 *    are disjoint sets (one vote per voter per rev), so at most one of them reaches a
 *    majority. The subject is the record's hlc: unique per record in practice (two records
 *    at one rev with one hlc need two origins stamping the same millisecond and logical
 *    count); AGREE_SUBJECT_ANY keeps votes from a store without the field usable.
 *
 * 4. Decision. Votes are grouped by target (0 = previous good; T = operator `--to T`). A
 *    target is decided when its votes reach the quorum of the eligible voters: with the
 *    default strict majority at most one (subject, target) can ever reach it, in any view
 *    and any partition, because each voter has one vote per (service, rev). (With an explicit
 *    count/fraction below a majority two targets, or two partition sides, may decide: if so,
 *    the target with more votes wins, then the smaller target; the merge rule of 1. still
 *    makes the cluster converge, but the operator chose to trade safety for liveness.)
 *    Health votes and operator votes without --to are target 0; an agent that sees an
 *    operator vote with target T for its current revision echoes it with the same T.
 *
 * 5. The rollback record for bad rev N, written by every node that sees the quorum, is a
 *    function of the bad record and the log only, never of the vote set:
 *       service, rev = N + 1, kind = rollback, scope = the bad record's scope,
 *       artifact = target T's artifact, or for target 0 the PREVIOUS GOOD artifact: walking
 *                  down from N - 1, the first winner whose scope covers the bad scope ("" or
 *                  equal), whose artifact differs from the bad one and is not condemned as of
 *                  rev N (see 7). Every rev walked over must be present: a hole in the log
 *                  (a revision not yet received) returns AGREE_EGAP instead of guessing.
 *       origin = all zeroes (the cluster, not one node), hlc = bad.hlc + 1,
 *       operator_uid = UINT32_MAX, operator_pid = 0,
 *       reason = "cluster rollback of rev N" [" to rev T"] (quorum).
 *    So two nodes with different vote views write records that are agree_revision_same.
 *    The certificate is the sorted, de-duplicated ids of ALL the counted votes for the decided
 *    target that the writer saw (>= quorum). It differs between writers with different views,
 *    which is harmless: the certificate is not part of the decision's identity, any valid one
 *    proves it, and the order of 1.d makes every node keep the same (largest) one in the end.
 *
 * 6. Verification on receipt (agree_accept): a received rollback is adopted only if
 *      - it is well formed: rev >= 2, valid scope, zero origin, no operator uid;
 *      - its certificate holds >= quorum distinct voters that are ELIGIBLE IN THE RECEIVER'S
 *        VIEW for the bad revision (known members, in the record's scope, joined by
 *        hlc - 1), the quorum computed over the receiver's own eligible set. Unknown ids do
 *        not count. A member the receiver knows has LEFT counts only if the certificate
 *        names it, and then on both sides (voter and eligible): it could vote only while a
 *        member, and verification must stay true when views learn of departures, or nodes
 *        that adopted a rollback before a voter left and nodes that see it after would
 *        never converge. (Deciding is stricter: agree_decide never counts a LEFT voter.)
 *        The price: a forger padding a certificate with k departed ids needs k >= E + 2 - 2g
 *        (E eligible, g genuine voters), bounded by how many departed members views keep.
 *    The check depends only on the record and the membership view, NOT on the receiver's log:
 *    a receiver holding a different winner at rev N (a concurrent deploy not yet merged) would
 *    otherwise refuse a rollback its writer keeps, and the two would never converge. Rule 1
 *    settles competing rollbacks for one rev exactly as it settles deploys.
 *    A record refused now (AGREE_ECERT) may be valid later (the receiver learns of members);
 *    the caller drops it and anti-entropy offers it again.
 *    Residual risks, stated plainly:
 *      - a certificate lists voter ids, it does not carry the voters' signatures: a node
 *        holding the cluster key could forge one naming real members. Authenticity of voters
 *        is the cluster key's job (AEAD), not this module's.
 *      - views differ: a receiver that knows only part of the cluster (a fresh joiner)
 *        computes a smaller quorum and may accept a certificate a fuller view would refuse,
 *        and a LEFT marker not yet seen keeps a member eligible (conservative). Once views
 *        converge, every node judges the same way.
 *      - joins: without joined_hlc (0), a member that joins after a decision enlarges the
 *        quorum a late receiver computes, which may then refuse a decision others hold. The
 *        agent should stamp its first join with its HLC, persist it and gossip it with its
 *        labels, so every view agrees on who was a member when.
 *      - the previous good artifact depends on the log: two writers whose logs differ below
 *        N (concurrent deploys at some rev < N made on two sides of a partition and not yet
 *        merged when the votes on N complete, different retention windows) can write
 *        rollbacks of the same record with different artifacts; rule 1 (artifact bytes,
 *        the same hlc and origin) picks one and all nodes converge on it within an
 *        anti-entropy round. The simulator counts these: about 6 in 100 seeds, always right
 *        after a heal, never during a partition. AGREE_EGAP removes the other common cause
 *        (a missing revision).
 *
 * 7. Condemned artifacts, derived from the log so that every node derives the same set: a
 *    rollback at rev r condemns the artifact of the winner at r - 1 if that winner is the
 *    record it was decided about (rollback hlc == its hlc + 1; a record that won the rev
 *    later was never voted against, so it is not condemned); a later revision that
 *    names the artifact again (a deploy with --force, or an explicit --to) absolves it. The
 *    agent mirrors condemnation into the store (store_artifact_set_condemned) when it adopts a
 *    rollback, because the log is pruned; deploy checks should consult both. Only the origin
 *    of a deploy checks (agree_check_deploy): --force is not carried in the record, so
 *    receivers accept any well-formed deploy.
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
 *       r = agree_accept(log, members, q, &R)
 *       r <  0: drop R (AGREE_ECERT may pass later: anti-entropy offers it again)
 *       AGREE_KEEP: nothing
 *       AGREE_STORE / AGREE_REPLACE: store_revision_put(R); if R is a rollback,
 *           agree_condemned_by() -> store_artifact_set_condemned(); if a deploy of ours was
 *           displaced, tell the operator; retry agree_decide for R.rev (a new subject) and for
 *           revs that failed with AGREE_EGAP/ENOTARGET/ENOREV; then reconcile.
 *   vote V arrives: store_vote_put; if V is an operator vote for the rev we run and we have
 *       not voted, vote the same target; agree_decide(log, members, q, V.service, V.rev,
 *       votes) == 0 -> pass the record through agree_accept like any received one, gossip it.
 *   membership changes (a LEFT member): retry agree_decide for undecided revs.
 *   reconcile: agree_effective(log, site, local marker) -> the artifact to run.
 *   health: when what we run misses its policy, vote (subject = hlc of the record at that
 *       rev in our log, target 0) against agree_desired()->rev.
 *   deploy: agree_check_deploy (and the store's condemned flag) unless --force; rev =
 *       highest rev held + 1; hlc_now. rollback [--to T]: our vote with reason operator and
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

/* Human-readable text for a negative code returned here (negative errno or -AGREE_E*). */
const char *agree_strerror(int err);

enum agree_member_state {
	AGREE_ALIVE = 0,
	AGREE_SUSPECT = 1,
	AGREE_DEAD = 2,		/* failed or unreachable: still an eligible voter */
	AGREE_LEFT = 3,		/* left the cluster cleanly: not eligible */
};

struct agree_member {
	uint8_t id[STORE_NODE_ID_LEN];
	enum agree_member_state state;
	const char *site;	/* value of its site= label, NULL if none; borrowed */
	uint64_t joined_hlc;	/* the member's own HLC stamp of its first join, as it gossips
				 * it (e.g. a label); 0 = unknown, treated as "always a member".
				 * Members that joined after a revision do not vote on it. */
};

enum agree_quorum_kind {
	AGREE_QUORUM_MAJORITY = 0,	/* floor(eligible / 2) + 1: the default, partition-safe */
	AGREE_QUORUM_COUNT = 1,		/* min(count, eligible) */
	AGREE_QUORUM_FRACTION = 2,	/* ceil(eligible * num / den) */
};

struct agree_quorum {
	enum agree_quorum_kind kind;	/* zero-initialised struct = majority */
	uint32_t count;			/* COUNT: >= 1 */
	uint32_t num, den;		/* FRACTION: 0 < num <= den */
};

/* 0, or -EINVAL if the configuration is malformed (count 0, den 0, num 0 or num > den). */
int agree_quorum_check(const struct agree_quorum *q);

/*
 * Votes needed out of @eligible for @q (NULL = majority). Always >= 1, so an empty eligible
 * set can never decide. A malformed @q is treated as majority.
 */
uint32_t agree_quorum_size(const struct agree_quorum *q, uint32_t eligible);

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

/* ---- Voters and votes -------------------------------------------------------------------- */

/*
 * Number of eligible voters (rule 3) for a revision of @scope stamped @at_hlc (UINT64_MAX:
 * "now"): in scope, not LEFT, joined (joined_hlc) no later than @at_hlc.
 */
uint32_t agree_eligible_count(const struct agree_member *members, size_t nmembers,
			      const char *scope, uint64_t at_hlc);
/* Is @id an eligible voter for such a revision? */
bool agree_is_eligible(const struct agree_member *members, size_t nmembers, const char *scope,
		       uint64_t at_hlc, const uint8_t id[STORE_NODE_ID_LEN]);

/*
 * A vote as the agreement core sees it: the stored vote plus what store_vote does not carry
 * yet (see the report: the store should persist both fields with the vote).
 */
#define AGREE_SUBJECT_ANY 0
struct agree_vote {
	struct store_vote v;	/* service, rev, voter, reason, hlc */
	uint64_t subject;	/* hlc of the record at v.rev the voter ran and condemns (rule 3);
				 * AGREE_SUBJECT_ANY: counts against whatever record wins */
	uint64_t target;	/* 0 = previous good; else the operator's --to REV */
};

struct agree_tally {
	uint32_t eligible;	/* eligible voters in scope */
	uint32_t quorum;	/* votes needed */
	uint32_t counted;	/* counted votes, all targets */
	uint64_t target;	/* leading target (decided one when decided) */
	uint32_t target_votes;	/* its counted votes */
	bool decided;		/* target_votes >= quorum */
};

/*
 * Count the votes on (@service, @rev) against the record with hlc @subject, under @scope
 * (rules 3 and 4). Votes about other services, revs or records are ignored. @subject also
 * dates the revision for members' join stamps (agree_member.joined_hlc).
 * @return 0 and *ret filled; -EINVAL on NULL arguments.
 */
int agree_tally(const struct agree_member *members, size_t nmembers,
		const struct agree_quorum *q, const char *service, uint64_t rev, const char *scope,
		uint64_t subject, const struct agree_vote *votes, size_t nvotes,
		struct agree_tally *ret);

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
 * Decide on bad rev @bad_rev of @service (rule 4/5): count the votes against the record held
 * at @bad_rev (subject = its hlc). If one target reaches the quorum, build the rollback record
 * into *ret (caller memory, fully overwritten; ret->cert is malloc'd: release with
 * store_revision_release() or free(ret->cert)). The caller then passes it through
 * agree_accept like any received record (it may already hold the same decision). The caller
 * need not call it once rev @bad_rev + 1 holds a rollback (the decision is made).
 * @return 0 decided; -AGREE_ENOREV @bad_rev not in the log; -AGREE_ENOQUORUM no target has
 *         the quorum yet; -AGREE_EGAP / -AGREE_ENOTARGET from agree_previous_good;
 *         -AGREE_ENOREV an explicit target rev that is missing; -AGREE_EMISMATCH an explicit
 *         target >= @bad_rev, outside the bad scope or with the bad artifact; -ENOMEM;
 *         -EINVAL on NULL arguments.
 */
int agree_decide(const struct store_revision *log, size_t nlog,
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const char *service, uint64_t bad_rev,
		 const struct agree_vote *votes, size_t nvotes, struct store_revision *ret);

/*
 * Check a received (or locally decided) rollback record (rule 6). Deploys are checked for
 * well-formedness only.
 * @return 0 valid; -EBADMSG malformed (bad kind, rev 0, empty or unterminated service,
 *         invalid scope, a rollback with a non-zero origin, an operator, hlc 0 or rev 1, a
 *         deploy with a certificate, ncert > 0 with cert NULL); -AGREE_ECERT certificate
 *         below the quorum in this view; -EINVAL on NULL arguments.
 */
int agree_verify(const struct store_revision *log, size_t nlog,
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const struct store_revision *r);

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
		 const struct agree_member *members, size_t nmembers,
		 const struct agree_quorum *q, const struct store_revision *incoming);

/* ---- Condemned artifacts (rule 7) --------------------------------------------------------- */

/* Is @artifact condemned as of rev @at_rev (UINT64_MAX = now) according to the log? */
bool agree_is_condemned(const struct store_revision *log, size_t nlog,
			const struct store_id *artifact, uint64_t at_rev);

/*
 * The artifact a rollback record condemns (the winner at rollback->rev - 1, rule 7).
 * @return 0; -EINVAL if @rollback is not a rollback; -AGREE_ENOREV if that rev is not held, or
 *         its winner is not the record the rollback was decided about.
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
	struct agree_quorum q;
};

int agree_quorum_parse(const char *s, struct agree_quorum_rule *ret);

#endif
