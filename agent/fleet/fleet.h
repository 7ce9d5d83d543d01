/*
 * agent/fleet/fleet.h: the replicated fleet state of agentd: revisions, health and votes over
 * gossip records, the agreement rule (agree/agree.h) applied to them, and the reconciler and
 * health checker (node/) driven by the result. This is where "the cluster agrees that a
 * revision is bad, and every node swaps back" happens. (It was called "the brain" until
 * issue 10; the names the protocol and the logs show, brain.status and brain.history, the
 * "cluster brain is not running" message, stay as they were.)
 *
 * ==========================================================================================
 * Where it sits, and its files
 * ==========================================================================================
 *
 * Room agent/fleet/ (shoal_fleet). Below it: cluster/ (the site label of members,
 * cluster_label_get), node/ (reconcile.h, health.h), agree/, ctl/ (it encodes its own
 * responses), base/. Above it only daemon/, which creates it (daemon/fleet_wiring.c), hands
 * it the gossip layer (struct fleet_net) and the peer-to-peer fetch (opts.need_artifact),
 * and serves its control operations (fleet_ctl_ops, below). It knows no struct agent.
 *
 *   fleet.h      this contract            records.h/.c  gossip records and their codec
 *   fleet.c      state, records in/out,   decide.c      desired revision, accept, decide,
 *                store writes, node-local               votes cast and stored
 *                callbacks, life cycle    pacing.c      may a swap start now
 *   events.c     the event ring           ops.c         the control operations
 *   fleet_int.h  what those files share (fleet__<name>)
 *
 * ==========================================================================================
 * Data flow
 * ==========================================================================================
 *
 *   gossip record (other node) ──► decode (records.h) ──► rev/cert: assemble the revision
 *        and its certificate chunks from the same owner ──► hlc_update ──► agree_accept
 *        ──► store_revision_put (+ store_artifact_set_condemned for a rollback) ──► decide
 *        (agree_decide for every voted rev of the service) ──► desired (agree_effective for
 *        this node's site, with the `--local` marker) ──► reconcile_set_desired
 *   vote record ──► kept in memory per (service, rev, voter) and queued for the store (one
 *        store_vote_put_many per ~200 ms on the thread pool: a rollback brings N votes) ──►
 *        echo an operator vote against what we run ──► decide
 *   health record ──► kept per (node, service): status, pacing, artifacts held
 *   member change ──► eligible voters recomputed; every held record re-examined (a record
 *        refused with AGREE_ECERT may pass now) and every voted rev decided again
 *
 *   reconcile on_swapped(0) ──► health_start with the artifact's [health] policy in its
 *        materialized directory; the plugin's events feed health_runtime
 *   health on_change ──► publish health; healthy: reconcile_mark_good; `missed` latched for
 *        the revision we run: vote against it (reason health, target previous good)
 *
 * Every record this node writes is stamped with its HLC. The clock's high-water mark is not
 * written separately: every timestamp this node issues ends up in one of its own records
 * (revision, vote or health), which the cluster layer persists, and fleet_start restores the
 * clock above the largest stamp found in the records and revisions held (a crash inside the
 * cluster's 200 ms persistence window can lose a stamp; the wall clock covers that case
 * unless it also went back across the restart).
 *
 * Quorum: per service, from the agent configuration (`quorum = SERVICE=SPEC`, SPEC one of
 * `majority`, a count `N`, or a fraction `N/D`); default majority. It is written into each
 * deploy this node makes, with the electorate (the roster in scope); every node decides and
 * verifies by the record's rule, and a node configured otherwise says so in its events.
 *
 * Roster: every node publishes a `roster` record (records.h) at start, marked left only by
 * fleet_roster_leave (`agentctl leave`); an operator removes a node with fleet_roster_remove
 * (`agentctl members remove`). The roster is the owners of roster records neither left nor
 * removed, plus live members whose record has not arrived yet: SIGTERM, restarts and reaping
 * never shrink it. From the roster's advertised addresses the fleet tries to reach one
 * unreachable member every reconnect_ms, so halves separated longer than the reap time find
 * each other again.
 *
 * Operators (agent/base/sign.h): a deploy, an override and an operator's rollback vote carry
 * the operator's signed statement (the `opsig` argument of the control operations); this
 * node accepts them only under a key of its operators directory, and so does every receiver
 * of the records: a deploy without a valid trusted signature is refused everywhere, and an
 * operator's vote is echoed only if its statement verifies.
 *
 * Identity (agent/base/sign.h has the trust model): the roster record carries this node's
 * public key and is signed by it; the first key seen for a node id is bound to it (kept in
 * the store, STORE_KV_AGENT "nodekey/<id hex>"), and a roster record with another key is
 * refused and logged, unless it carries a rotation signed by the bound key (re-bound, the
 * former key kept for what it signed). With require_enrolment a key is bound (and its record
 * used) only if the record carries an operator's enrolment of it; a carried enrolment is
 * checked in any case. This node's own enrolment, former keys and rotation live in its state
 * directory (trust.c); it votes on a revision with the key the revision names for it. Deploys carry the electors' keys; this node signs its votes, drops
 * received votes whose signature does not verify against the key of the voter in the
 * revision's electorate (or its bound key for a non-elector), and accepts a rollback only if
 * agree_verify_signatures passes. Refusals are counted (fleet_sig_refused) and logged.
 *
 * Until the node has completed a full anti-entropy exchange (fleet_net.synced) it neither
 * votes, decides nor deploys: its roster and log may be partial (agree.h rule 0).
 *
 * Pacing (max_parallel_per_site = M > 0): before a new swap starts the reconciler asks
 * may_start; the brain counts the members of its site (same `site` label, not dead or left)
 * whose health record for the service says `swapping`, plus those with a LOWER node id whose
 * health record says they desire the same revision and do not run it yet (a slot reserved in
 * a common order, so that the nodes that learn of a revision at the same instant do not all
 * start together; during the first second after it learned of the revision a node also
 * counts the lower-id peers that have not announced it yet), and refuses while M or more;
 * otherwise it sets its own `swapping` flag,
 * publishes it, and clears it when the swap ends. A refused swap is asked again every
 * pace_retry_ms.
 * The wave: a node that does not run (nor swaps to) its desired revision follows a
 * first-round health vote against it from a node of its own site (decide.c wave_follow), so
 * that a revision stopped at each site's first node by a held slot can still be decided.
 * BEST EFFORT: two nodes deciding within one gossip round both see M - 1 and both start, and
 * during a partition a node cannot see the other side's flags. It bounds the blast radius of
 * a rollout in the common case; it is not a lock.
 *
 * Artifacts: the reconciler materializes from the local store. A node whose desired artifact
 * is missing calls opts.need_artifact (the peer-to-peer fetch module's offer, NULL without
 * one) with the peers whose health records say they hold it, and the reconciler
 * retries its MATERIALIZE step with back-off until the artifact arrives. The timeline says
 * "fetching" (once per desired revision), not "swap-failed", while that happens.
 *
 * Loop and threads: everything runs on the loop given to fleet_new; the fleet_op_* control
 * operations are INLINE ops (they run on the loop thread and never block on anything but one
 * small LMDB transaction).
 */
#ifndef SHOAL_FLEET_H
#define SHOAL_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/agree/agree.h"
#include "agent/fleet/records.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/ctl/ctl_server.h"
#include "gossip/gossip.h"
#include "store/store.h"

struct fleet;

/*
 * What the fleet needs of the gossip layer. daemon/fleet_wiring.c implements it over
 * cluster/cluster.h; the unit tests use an in-process fake. Every function runs on the loop
 * thread.
 */
struct fleet_net {
	/* Publish this node's record @key (versioning is the transport's job). 0 or -errno. */
	int (*put)(void *ud, const void *key, size_t klen, const void *val, size_t vlen);
	/* The newest record (@owner, @key) held, or NULL (borrowed until the next call). */
	const struct gossip_record *(*get)(void *ud, const uint8_t owner[STORE_NODE_ID_LEN],
					   const void *key, size_t klen);
	/* Every record held, own included. */
	int (*record_foreach)(void *ud, int (*cb)(void *cbud, const struct gossip_record *r),
			      void *cbud);
	/* Every member, self included. */
	int (*member_foreach)(void *ud, int (*cb)(void *cbud, const struct gossip_member *m),
			      void *cbud);
	/* Has this node completed a full anti-entropy exchange since it started (or is it a
	 * founder with nobody to exchange with)? NULL: always. */
	bool (*synced)(void *ud);
	/* Try to reach a member at @addr (ADDR:PORT) again: a join. NULL: never. */
	int (*reach)(void *ud, const char *addr);
	void *ud;
};

/*
 * What the peer-to-peer artifact fetch offers the fleet (cluster/fetch.h: fetch_brain_need):
 * @service at @rev wants @artifact, which the local store lacks; @holders are the nodes whose
 * health records list it (may be 0). Called from the loop each time the desired revision of a
 * service changes to a missing artifact.
 */
typedef void fleet_need_artifact_fn(void *ud, const char *service, uint64_t rev,
				    const struct store_id *artifact,
				    const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders);

/* ---- Events and figures for operators (events.c) ----------------------------------------- */

/* One event of `agentctl events`, as it happens (strings borrowed for the call). */
struct fleet_event {
	uint64_t seq;			/* 1, 2, ... since the agent started */
	uint64_t wall_ms;		/* Unix ms */
	const char *kind;		/* e.g. decision, swap-done, member-join (fleet.h list) */
	const char *service;		/* "" when none */
	uint64_t rev;			/* 0 when none */
	const char *node;		/* this node's name */
	const char *text;		/* one line for people */
};
typedef void fleet_event_fn(void *ud, const struct fleet_event *e);

/* Reasons a rollback was decided (metrics label values, fleet_rollback_reason_name). */
enum fleet_rollback_reason {
	FLEET_ROLLBACK_HEALTH = 0,	/* a quorum of health votes */
	FLEET_ROLLBACK_OPERATOR = 1,	/* at least one operator vote (agentctl rollback) */
	FLEET_ROLLBACK_LOCAL = 2,	/* agentctl rollback --local on this node */
	FLEET_ROLLBACK__COUNT
};
const char *fleet_rollback_reason_name(int reason);

/* Upper bounds (seconds) of the swap duration histogram; +Inf is implied after the last. */
#define FLEET_SWAP_BUCKETS 10
extern const double fleet_swap_buckets[FLEET_SWAP_BUCKETS];

/* What this node counted for one service since the agent started. */
struct fleet_svc_counts {
	uint64_t rollbacks[FLEET_ROLLBACK__COUNT]; /* decisions learned (each once) */
	uint64_t votes[2];		/* cast by this node: [STORE_VOTE_HEALTH], [_OPERATOR] */
	uint64_t swaps_ok, swaps_failed; /* attempts ended (a failed one is retried) */
	uint64_t swap_hist[FLEET_SWAP_BUCKETS + 1]; /* ok swaps by duration, not cumulative */
	uint64_t swap_ms_sum;		/* their total duration */
};

/* One service as this node sees it. */
struct fleet_service_stats {
	const char *service;
	uint64_t desired_rev, running_rev; /* 0: none */
	const char *health;		/* health_state_name, or "none" */
	bool healthy;
	uint32_t nodes_healthy, nodes_reporting; /* self included (as `agentctl services`) */
	const struct fleet_svc_counts *counts;
};
/* Every service known, in no particular order. Loop thread. @cb non-zero stops. */
int fleet_service_stats_foreach(struct fleet *b,
				int (*cb)(void *ud, const struct fleet_service_stats *s), void *ud);
struct sign_key;

struct fleet_opts {
	const uint8_t *node_id;		/* 16 bytes, required */
	const struct sign_key *node_key; /* this node's identity key (agent/base/sign.h), copied;
					 * NULL: a fresh random one (tests) */
	const char *operators_dir;	/* trusted operator public keys (*.pub); NULL: none is
					 * trusted, so no deploy or operator rollback is accepted */
	bool require_enrolment;		/* bind a node's key only with an operator's enrolment
					 * (sign.h); false: trust on first join */
	const char *node_name;		/* for events */
	const char *site;		/* this node's site label, NULL if none */
	const char *advertise;		/* our gossip ADDR:PORT for the roster record, or NULL */
	uint32_t reconnect_ms;		/* try an unreachable roster member this often (+-25%);
					 * 0 = 30000 */
	const char *state_dir;		/* absolute, required unless no_runtime */
	const char *unit_dir;		/* runtime plugins (struct plugin_config), copied;
					 * NULL = the plugin's default */
	const char *bus_address;	/* systemd: NULL = the system bus */
	const char *docker_host;	/* container: API unix socket path */
	const struct agree_quorum_rule *quorums; /* copied */
	size_t nquorums;
	unsigned max_parallel_per_site;	/* 0 = unlimited */
	uint32_t retry_min_ms, retry_max_ms; /* reconciler back-off; 0 = its defaults */
	uint32_t pace_retry_ms;		/* 0 = 500 */
	bool no_runtime;		/* tests: no reconciler, no health checks; the desired
					 * revision is only recorded (fleet_desired) */
	fleet_need_artifact_fn *need_artifact; /* NULL: nothing is fetched, the reconciler
					 * waits for an import */
	void *need_artifact_ud;		/* borrowed: must outlive the brain */
	fleet_event_fn *on_event;	/* every event as it is added to the ring (the agent's
					 * event hook), or NULL; from the loop, must not call
					 * back into the fleet */
	void *on_event_ud;
};

/*
 * Create the brain. @loop, @store borrowed (must outlive it); @opts copied (strings too);
 * @net copied (its ud borrowed). Nothing happens until fleet_start.
 * @return 0 and *ret; -EINVAL; -ENOMEM. @ret untouched on failure.
 */
int fleet_new(uv_loop_t *loop, struct store *store, const struct fleet_opts *opts,
	      const struct fleet_net *net, struct fleet **ret);

/*
 * Load the revisions and votes of the store and the records the transport holds, restore the
 * HLC, resume the reconciler's journal and set every service's desired revision.
 * @return 0; -ENOMEM; -EIO; errors of reconcile_new/resume/health_new.
 */
int fleet_start(struct fleet *b);

/* Feed a record that arrived from the network (the transport's on_record). */
void fleet_on_record(struct fleet *b, const struct gossip_record *r);
/* A member changed (the transport's on_member). */
void fleet_on_member(struct fleet *b, const struct gossip_member *m);

/*
 * Close: health checker and reconciler closed (exec children stopped), timers closed.
 * @cb(@ud) from the loop when done; @b freed right after. Accepts NULL (cb not called).
 */
void fleet_close(struct fleet *b, void (*cb)(void *ud), void *ud);

/* @artifact just entered the store (the fetch module calls this): a swap waiting for it goes
 * on at once (reconcile_artifact_arrived). Loop thread; NULL @b is fine. */
void fleet_artifact_arrived(struct fleet *b, const struct store_id *artifact);

/* ---- Introspection (tests, status) -------------------------------------------------------- */

/* The desired revision last computed for @service: 0 and *ret_rev, *ret_artifact (either may be
 * NULL); 1 = diverged (local marker); -ENOENT (nothing desired). */
/* A graceful leave (`agentctl leave`): publish this node's roster record as left, so that later
 * revisions no longer count it in their electorates. 0 or -errno. */
int fleet_roster_leave(struct fleet *b);
/*
 * An operator removes node @id from the roster for good (`agentctl members remove`): a
 * remove/ record with who (@peer), @reason and the operator's signed statement @op (kind
 * SIGN_OP_REMOVE, about @id and @reason: sign_op_remove_subject; the caller checked it),
 * logged at notice. Every node applies a remove record only if its statement verifies under
 * an operator key it trusts, and only against roster records its node published before the
 * statement was signed (a replayed statement does not remove a node that came back); a
 * refused one is logged and counted (fleet_sig_refused). Later revisions no longer count
 * the node; revisions already written keep their electorate. 0; -EPERM (@id is this node:
 * use a leave); -EINVAL; -ENOMEM; errors of the transport's put.
 */
int fleet_roster_remove(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
			const struct ctl_peer *peer, const char *reason,
			const struct store_opsig *op);

int fleet_desired(struct fleet *b, const char *service, uint64_t *ret_rev,
		  struct store_id *ret_artifact);
/*
 * Read the trusted operator keys again (SIGHUP): a key removed from the directory stops
 * working at once; records refused for want of a trusted key are examined again.
 * @return the number of keys trusted, or -errno (the previous set is kept).
 */
int fleet_operators_reload(struct fleet *b);
/*
 * How this node trusts the key of node @id (`agentctl members`): "enrolled" (bound, with an
 * operator's enrolment), "first join" (bound on first join), "not enrolled" or "enrolment
 * refused" (its roster record is refused: not on the roster, its votes do not count), or
 * "unknown" (no roster record of it accepted yet). Loop thread.
 */
const char *fleet_member_trust(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN]);
/* Records refused for a bad signature or a key that is not the bound one, so far. */
uint64_t fleet_sig_refused(const struct fleet *b);
/* Number of events so far (the sequence number of the last one). */
uint64_t fleet_event_seq(const struct fleet *b);

/* ---- Control operations (INLINE: they run on the loop thread) ------------------------------ */
/*
 *   op              args                                            result
 *   deploy          {service, artifact, scope?, reason?, force?,    {service, rev, artifact}
 *                    opsig}
 *   rollback        {service, to?, scope?, reason?, local?, opsig?} {service, rev (the bad
 *                                                                    one), target, local}
 *   votes           {service, rev?}                                 {service, rev, eligible,
 *                                                                    quorum, votes[], decided,
 *                                                                    running_rev, swapped}
 *   services        -                                               [service summary]
 *   brain.status    -                                               {node, cluster, services}
 *   events          {since?, max?}                                  {events[], next, dropped}
 *   members.remove  {node, reason, opsig, resolve?}                 {node, id}
 *   node.identity   -                                               {id, name, key, trust,
 *                                                                    enrolled, enrolled_by,
 *                                                                    require_enrolment,
 *                                                                    rotated_from, former_keys}
 *   node.enrol      {enrolment}                                     {id, key, operator}
 *   node.rotate-key {prepare?, enrolment?}                          prepare: {id, next_key,
 *                                                                    needs_enrolment}; else
 *                                                                    {id, key, previous,
 *                                                                    enrolled}
 *
 * `rollback --override` (override: true, reason required) is the documented, audited exit for
 * a revision whose electorate has lost its majority for good (electors removed or gone): it
 * writes a new DEPLOY of the rollback's target (--to, or the previous good revision) with the
 * current roster as its electorate and "override: REASON" as its reason, logged at notice
 * with the operator's uid. It is never implied: a plain rollback only votes. The bad
 * artifact is not condemned by it (no quorum decided that). `members.remove` takes a node off
 * the roster (fleet_roster_remove); reason is required, and so is opsig, the operator's
 * statement about the member's full id and the reason (sign.h SIGN_OP_REMOVE); with
 * resolve: true it only answers which member @node names (agentctl signs over its id).
 *   brain.history   {service, limit?}                               [revision + good,
 *                                                                    condemned, version]
 *
 * One dispatch: fleet_ctl_ops() are the rows (ctl/ctl_server.h, declared ops). The server finds
 * the row by name, decodes the arguments into the op's struct below with the row's table
 * (ops.c: key, type, the check and the message of each; ctl/ctl_args.h) and calls the op's
 * function with @fleet = the struct fleet (the agent's table passes a->fleet) and @args = that
 * struct, already valid: a service is a name (config.h), a scope "cluster" or site:NAME, a
 * deploy's reason at most 200 bytes. Strings are NULL when absent, numbers 0, flags false.
 *
 * `events` is polled, never pushed: the agent keeps the last FLEET_EVENTS_MAX events in a
 * ring, a client asks for those after its cursor `since` and gets `next` for its next call;
 * `dropped` counts the events that fell out of the ring before it asked (a slow follower loses
 * events, and is told, but never holds the agent up). `agentctl events --follow` polls.
 * `opsig` is the operator's signed statement (agent/base/sign.h, sign_op_hex: agentctl makes
 * it with --key); deploy and rollback (but --local) without one that verifies under a key of
 * the operators directory answer permission_denied, with how to make and trust a key.
 * `enrolment` is an operator's enrolment (sign_op_hex of kind SIGN_OP_ENROL) of this node's
 * key (node.enrol) or of its next key (node.rotate-key); one under a key this node does not
 * trust answers permission_denied, and so does a rotation of an enrolled node, or of one that
 * requires enrolment, without one.
 * Errors (stable names, ctl_proto.h): bad_request, not_found (no such artifact or service;
 * rollback: the target artifact is not held here), ambiguous (artifact prefix), condemned
 * (deploy of a condemned artifact without force), no_revision (nothing to roll back, --to a
 * missing revision), internal (also: the fleet is not running yet).
 */
#define FLEET_EVENTS_MAX 4096

struct fleet_deploy_args {
	char *service, *artifact, *reason, *scope;
	bool force;
	char *opsig;		/* the operator's signed statement (sign_op_hex) */
};
struct fleet_rollback_args {
	char *service, *reason, *scope;
	char *opsig;		/* required unless local */
	uint64_t to;
	bool local;
	bool override;		/* the liveness exit: a new deploy of the target, see below */
};
struct fleet_remove_args {
	char *node;		/* a roster member's name or id (hex, unique prefix >= 4) */
	char *reason;
	char *opsig;		/* the operator's statement of the removal (sign_op_hex) */
	bool resolve;		/* only name the member @node picks: {node, id} */
};
struct fleet_votes_args {
	char *service;
	uint64_t rev;		/* 0: the latest rev with votes, else the desired one */
};
struct fleet_events_args {
	uint64_t since, max;	/* max 0 or over 512: 512 */
};
struct fleet_history_args {
	char *service;
	uint64_t limit;		/* 0 or over 100000: 100000 */
};

/* @fleet: struct fleet * (NULL: answers internal); @args: the op's struct above (none for
 * services and status). Each writes a complete response into @out. */
void fleet_op_deploy(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out);
void fleet_op_rollback(void *fleet, const void *args, const struct ctl_peer *peer,
		       struct ctl_enc *out);
void fleet_op_votes(void *fleet, const void *args, const struct ctl_peer *peer,
		    struct ctl_enc *out);
void fleet_op_services(void *fleet, const void *args, const struct ctl_peer *peer,
		       struct ctl_enc *out);
void fleet_op_status(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out);
void fleet_op_events(void *fleet, const void *args, const struct ctl_peer *peer,
		     struct ctl_enc *out);
void fleet_op_history(void *fleet, const void *args, const struct ctl_peer *peer,
		      struct ctl_enc *out);
void fleet_op_members_remove(void *fleet, const void *args, const struct ctl_peer *peer,
			     struct ctl_enc *out);

/* The rows above, in this order, with no @of: their target is the server's ud. */
const struct ctl_op *fleet_ctl_ops(size_t *ret_count);

/*
 * One request on a fleet directly (tests), through the same rows: a complete response in @out;
 * `history` is accepted for brain.history. -ENOENT (nothing written) for another op.
 */
int fleet_ctl(struct fleet *b, const char *op, const struct ctl_request *req,
	      const struct ctl_peer *peer, struct ctl_enc *out);

#endif
