/*
 * agent/fleet/fleet_int.h: what the files of the fleet share; not part of its contract (that is
 * fleet.h). Internal functions are named fleet__<name> and live in the file of their job:
 *
 *   fleet.c    the state: services, members, peers' health; records in and out, the store
 *              writes, the node-local lifecycle (reconciler and health callbacks), life cycle
 *   decide.c   the decisions: desired revision, accepting revisions, deciding, casting and
 *              batching votes, asking for missing artifacts
 *   pacing.c   may a swap start now (max_parallel_per_site)
 *   events.c   the event ring behind `agentctl events`
 *   ops.c      the control operations, on arguments already decoded (ctl/ctl_args.h)
 *   records.c  the gossip records and their codec (records.h)
 *   trust.c    this node's enrolment, former keys and key rotation (sign.h), and the ids
 *              refused for want of an enrolment
 *
 * Everything here runs on the fleet's loop thread.
 */
#ifndef SHOAL_FLEET_INT_H
#define SHOAL_FLEET_INT_H

#include "agent/fleet/fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/base/clock.h"
#include "agent/base/hlc.h"
#include "agent/base/log.h"
#include "agent/base/sign.h"
#include "agent/cluster/cluster.h"
#include "agent/ctl/ctl_args.h"
#include "agent/node/health.h"
#include "agent/node/reconcile.h"

#define RESYNC_MS   5000
#define DEBOUNCE_MS 50
#define HSTATE_NONE 0xff
#define SETTLE_MS   1000	/* pacing: how long lower-ranked peers get to announce a new rev */
#define PUBLISH_MS  30
#define DESIRED_PUBLISH_MS 1000	/* a desired revision, a swap's start or its end alone,
				 * without pacing (decide.c, pacing.c, fleet.c) */
#define VOTE_FLUSH_MS 200	/* received votes gathered per store transaction */
#define REASSERT_MS 1000	/* our own record published again over one we did not sign at
				 * most this often: two agents sharing an id (a cloned state
				 * directory) would otherwise outbid each other at gossip speed */
/* A decision this node made but is not one of its first publishers of (decide.c,
 * decision_publisher) is published only if no other node's copy arrived within this (plus up to
 * DECISION_LATE_JITTER_MS, checked at each resync: every 5 s at most, so 10-25 s). */
#define DECISION_LATE_MS 10000
#define DECISION_LATE_JITTER_MS 10000
#define DECISION_PUBLISHERS 3

struct svc {
	char name[65];
	struct store_revision *log;	/* winners, any order; certs owned */
	size_t nlog, caplog;
	struct store_vote *votes;	/* the newest per (rev, voter) */
	size_t nvotes, capvotes;
	uint64_t stuck_rev;		/* a round of this rev we voted in is stuck ... */
	uint32_t stuck_round;
	uint64_t stuck_since;		/* ... since this uv_now (rule 4's settle time) */
	bool have_local;
	struct agree_local local;
	uint64_t voted_rev;		/* highest rev this node voted against */

	bool have_desired;
	uint64_t desired_rev;
	struct store_id desired;
	bool diverged;

	uint64_t running_rev;
	struct store_id running;
	uint8_t hstate;			/* enum health_state or HSTATE_NONE */
	uint64_t hsince;
	bool missed;
	bool swapping;
	uint64_t swap_target;		/* for the swap-start event */
	bool need_announced;
	bool fetch_announced;		/* "fetching" was said for the desired rev */
	uint64_t desired_since;		/* uv_now when the desired revision last changed */
	bool health_dirty;		/* a health record is due (coalesced, see publish_health) */
	bool hsigned;			/* hlast holds the last health record signed */
	struct fleet_health hlast;	/* signed once per content: a re-publication of the same
					 * content keeps its stamp and signature (sign.h) */
	uint64_t hreassert_at;		/* uv_now of the last republication over a record in
					 * our name we did not sign (one per REASSERT_MS) */
	struct fleet_svc_counts cnt;	/* for metrics (events.c, fleet_service_stats) */
	uint64_t swap_began;		/* uv_now of the swap-start event, 0 if none seen */
	/* our decision at late_rev (cert_subject late_subject) waiting to be published at
	 * late_at unless another node's copy arrives first (fleet__late_publish); 0: none */
	uint64_t late_rev, late_subject, late_at;
};

struct peer_health {
	uint8_t node[STORE_NODE_ID_LEN];
	struct fleet_health h;
};

struct fleet_ev {
	uint64_t seq;
	uint64_t wall_ms;
	char kind[16];
	char service[65];
	uint64_t rev;
	char node[65];
	char text[200];
};

/* The last state a member was seen in, for the member-* events (events.c). */
struct fleet_member_seen {
	uint8_t id[STORE_NODE_ID_LEN];
	uint8_t state;			/* enum gossip_state */
};

/* A node id and the public key bound to it (trust on first join or enrolment, sign.h). */
#define FLEET_PREV_KEYS 4	/* former keys of an id kept (rotations), newest first */
struct nodekey {
	uint8_t id[STORE_NODE_ID_LEN];
	uint8_t key[STORE_KEY_LEN];
	uint8_t prev[FLEET_PREV_KEYS][STORE_KEY_LEN]; /* keys it rotated away from: what they
					 * signed before (deploys, certificate votes) still verifies */
	uint8_t nprev;
	bool enrolled;			/* its accepted roster record carries a valid enrolment */
	uint8_t refused[STORE_KEY_LEN];	/* the last other key refused for it (logged once) */
	uint8_t verified[STORE_SIG_LEN]; /* the signature of its last roster record that
					 * verified: the same record is not verified again at
					 * every roster refresh (a refresh per member change, on
					 * every node: 128 x 128 Ed25519 checks a burst) */
};

/* An id whose roster record is refused for its enrolment (agentctl members: "trust"). */
#define FLEET_UNTRUSTED_MAX 64
enum fleet_untrust { FLEET_NOT_ENROLLED = 1, FLEET_ENROL_REFUSED = 2 };
struct fleet_untrusted {
	uint8_t id[STORE_NODE_ID_LEN];
	uint8_t key[STORE_KEY_LEN];
	uint8_t why;			/* enum fleet_untrust */
};

struct fleet {
	uv_loop_t *loop;
	struct sign_key key;		/* this node's identity */
	struct sign_key *old_keys;	/* keys it rotated away from (STATE_DIR/node.key.old.*):
					 * votes on revisions whose electorate names one */
	size_t nold;
	bool require_enrolment;		/* bind a key only with an operator's enrolment */
	bool has_enrol;			/* this node's enrolment (STATE_DIR/node.enrol) */
	struct sign_op enrol;
	bool has_rot;			/* its last rotation (STATE_DIR/node.rotation) */
	uint8_t rot_prev[STORE_KEY_LEN];
	uint8_t rot_sig[STORE_SIG_LEN];
	struct fleet_untrusted untrusted[FLEET_UNTRUSTED_MAX];
	size_t nuntrusted;
	uint64_t roster_refused;	/* roster records refused (the log's rate) */
#define FLEET_ROSTER_NOPE 1024
	uint64_t roster_nope[FLEET_ROSTER_NOPE]; /* digests of roster records refused (fleet.c
					 * roster_trusted), direct-mapped; 0 = empty */
	struct nodekey *binds;		/* sorted by id */
	size_t nbinds, capbinds;
	uint64_t sig_refused;		/* records refused: signature or key */
	uint64_t rev_refused, vote_refused; /* of which revisions, votes (the log's rate) */
	uint64_t health_refused, remove_refused; /* health records, remove records */
	bool roster_published, roster_left;	/* our roster record, as last published */
	uint64_t roster_reassert_at;	/* as svc.hreassert_at, for the roster record */
	bool roster_reassert;		/* a republication of it is due (roster_reassert) */
	uint64_t refused_seen[16];	/* digests of the last refused records logged */
	unsigned refused_next;
	struct sign_trust ops;		/* trusted operator keys */
	char *operators_dir;
	struct store *s;
	struct fleet_net net;
	uint8_t id[STORE_NODE_ID_LEN];
	char name[65];
	char site[65];
	bool has_site;
	char advertise[64];
	uint32_t reconnect_ms;
	uint64_t next_reconnect;	/* uv_now of the next reconnect attempt */
	char *state_dir;
	char *unit_dir, *bus_address, *docker_host;	/* for pcfg; NULL = plugin default */
	struct agree_quorum_rule *quorums;
	size_t nquorums;
	unsigned max_par;
	bool no_runtime;
	struct reconcile_opts ropts;
	fleet_need_artifact_fn *need_artifact;	/* opts: the peer-to-peer fetch, or NULL */
	void *need_artifact_ud;

	struct hlc clock;
	struct plugin_config pcfg;
	struct reconcile *rec;
	struct health *health;

	struct svc **svcs;
	size_t nsvcs;
	struct peer_health *peers;
	size_t npeers, cappeers;

	struct agree_member *members;
	size_t nmembers;
	char (*member_sites)[65];
	char (*member_names)[65];
	/* the roster (agree.h rule 0): owners of roster records neither left nor removed, plus
	 * live members whose record has not arrived yet; rebuilt with the member view */
	struct agree_member *roster;
	size_t nroster;
	char (*roster_sites)[65];
	char (*roster_addrs)[64];	/* parallel to roster */

	struct fleet_ev *ring;
	uint64_t seq;
	fleet_event_fn *on_event;	/* opts: every event as it happens, or NULL */
	void *on_event_ud;
	struct fleet_member_seen *mseen;	/* last state of every member seen (events.c) */
	size_t nmseen, capmseen;

	uv_timer_t resync;
	bool resync_open;
	uv_timer_t pub;			/* coalesces health publications */
	uv_timer_t vflush;		/* gathers received votes for one store write */
	bool started, closing;
	unsigned closing_parts;
	void (*close_cb)(void *ud);
	void *close_ud;
	uint64_t hlc_refused;
	/* votes of other nodes, written to the store in batches off the loop (vote_queue) */
	struct store_vote *vq, *vjob;
	size_t nvq, capvq, nvjob;
	uv_work_t vwork;
	bool vjob_running;
	int vjob_err;
	bool need_replay;		/* a revision was refused (AGREE_ECERT): re-examine the
					 * held records at the next membership change */
	struct fleet_eps *eps;		/* endpoints.c: catalog, own endpoints, drains */
	uint64_t ep_refused;		/* endpoint records refused (the log's rate) */
};

/* fleet.c */
void fleet__hex_id(const uint8_t *id, size_t n, char *out);
/* The health record node @node last published for @service, or NULL. */
struct peer_health *fleet__peer_find(struct fleet *b, const uint8_t *node, const char *service);
/* Is a refusal worth a log line: a record not among the last 16 logged, or the *count'th
 * refusal with *count a power of two (a forged record is replayed at every resync). */
/*
 * Is a record in the name of @owner (a health or endpoint record: @what) signed over @msg by
 * the key bound to @owner (sign.h), and its @stamp not older than @held, the one held (NULL:
 * none)? A forged, unsigned or stale record is refused, counted in b->sig_refused and
 * @refused, and logged (fleet__refusal_loud). One whose owner's key is not bound yet (its
 * roster record has not arrived) is held back without a word: need_replay has the held
 * records examined again at the next roster change, and the periodic resync replays them.
 */
bool fleet__owner_signed(struct fleet *b, const char *what, const char *service, uint64_t rev,
			 const uint8_t *owner, const uint8_t *msg, size_t n,
			 const uint8_t sig[STORE_SIG_LEN], uint64_t stamp, const uint64_t *held,
			 uint64_t *refused);
bool fleet__refusal_loud(struct fleet *b, uint64_t *count, const char *service, uint64_t rev,
			 uint64_t hlc, const uint8_t *who);
int fleet__log_set(struct svc *v, const struct store_revision *r);
const char *fleet__member_name(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN], char *buf);
void fleet__observe(struct fleet *b, uint64_t remote);
void fleet__part_closed(struct fleet *b);
void fleet__publish_health(struct fleet *b, struct svc *v);
/* The same, at most @ms from now (a publication due sooner takes it along). */
void fleet__publish_health_in(struct fleet *b, struct svc *v, uint64_t ms);
int fleet__publish_rev(struct fleet *b, const struct store_revision *r);
int fleet__put_value(struct fleet *b, const struct fleet_key *k, uint8_t *val, size_t vlen);
uint64_t fleet__stamp(struct fleet *b);
struct svc *fleet__svc_find(struct fleet *b, const char *name);
struct svc *fleet__svc_get(struct fleet *b, const char *name);
uint64_t fleet__svc_max_rev(const struct svc *v);
int fleet__vote_add(struct svc *v, const struct store_vote *nv);
bool fleet__voted(const struct svc *v, const uint8_t *voter, uint64_t rev);
bool fleet__synced(struct fleet *b);
const char *fleet__quorum_name(const struct store_quorum *q);
int fleet__local_persist(struct fleet *b, struct svc *v);
int fleet__members_refresh(struct fleet *b);
const uint8_t *fleet__bound_key(const struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN]);
struct nodekey *fleet__bind_slot(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN]);
/* @key bound to @id now, or before a rotation? */
bool fleet__key_of_id(const struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
		      const uint8_t key[STORE_KEY_LEN]);
/* Rebind @nk to @key, the bound one becoming its newest former key; persisted. */
void fleet__bind_rotate(struct fleet *b, struct nodekey *nk, const uint8_t key[STORE_KEY_LEN]);
int fleet__publish_roster(struct fleet *b, bool left);
bool fleet__vote_signed_ok(struct fleet *b, struct svc *v, const struct store_vote *av);

/* events.c */
void fleet__member_event(struct fleet *b, const struct gossip_member *m);
const char *fleet__strerror(int err);	/* errno, STORE_E* or AGREE_E*, either sign */
/* Counting for metrics and the learn time of decisions (events.c). */
void fleet__decision_learned(struct fleet *b, struct svc *v, const struct store_revision *r);
void fleet__vote_cast(struct svc *v, enum store_vote_reason reason);
void fleet__local_rollback_done(struct svc *v);
void fleet__swap_began(struct fleet *b, struct svc *v);
void fleet__swap_ended(struct fleet *b, struct svc *v, int status);
/* The learn times recorded for @service: rev and wall ms pairs, malloc'd (*ret NULL if none). */
int fleet__learned_get(struct fleet *b, const char *service, uint64_t (**ret)[2], size_t *n);
void fleet__event(struct fleet *b, const char *kind, const char *service, uint64_t rev,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* decide.c */
int fleet__check_signed(struct fleet *b, struct svc *v, const struct store_revision *r);
/* A deploy's origin signature under the key bound to its origin (or one it rotated from):
 * 0; -EAGAIN while none is bound; -AGREE_ESIG. */
int fleet__origin_signed(struct fleet *b, const struct store_revision *r);
int fleet__accept_rev(struct fleet *b, struct svc *v, const struct store_revision *r, bool mine);
bool fleet__can_carry_out(struct fleet *b, struct svc *v, const struct store_revision *bad,
			  uint64_t target);
int fleet__cast_vote(struct fleet *b, struct svc *v, const struct store_revision *subject,
		     enum store_vote_reason reason, uint64_t target, const struct store_opsig *op);
void fleet__decide(struct fleet *b, struct svc *v);
/* A valid copy of a decision @r written by another node arrived: ours need not be published. */
void fleet__late_cancel(struct svc *v, const struct store_revision *r);
/* Publish our decisions whose wait for another node's copy is over (every resync). */
void fleet__late_publish(struct fleet *b, struct svc *v);
bool fleet__decided(const struct svc *v, const struct store_revision *bad);
void fleet__need_artifact(struct fleet *b, struct svc *v);
void fleet__on_vote(struct fleet *b, struct svc *v, const struct store_vote *av,
		    const struct store_opsig *op);
/* Does @op, a statement of @kind about @service and @artifact (NULL: none), verify under a
 * trusted operator key? */
bool fleet__op_ok(struct fleet *b, const struct store_opsig *op, int kind, const char *service,
		  const uint8_t *artifact);
const struct store_quorum *fleet__quorum_of(struct fleet *b, const char *service);
void fleet__recompute(struct fleet *b, struct svc *v);

/* endpoints.c (endpoints.h) */
void fleet__ep_record(struct fleet *b, const struct gossip_record *g);
void fleet__ep_publish(struct fleet *b, struct svc *v);
void fleet__ep_members(struct fleet *b);
bool fleet__ep_before_stop(void *ud, const char *service, uint64_t rev,
			   const struct store_id *artifact);
void fleet__ep_swapped(struct fleet *b, struct svc *v);
bool fleet__ep_settle(struct fleet *b, struct svc *v);
void fleet__ep_health(struct fleet *b, struct svc *v);
bool fleet__ep_restart(struct fleet *b, struct svc *v, const char *why);
void fleet__ep_close(struct fleet *b);

/* trust.c */
/* Load this node's former keys, rotation and enrolment from the state directory. */
void fleet__trust_load(struct fleet *b);
void fleet__trust_free(struct fleet *b);
/* The key this node signs with when the revision's electorate names @named for it (a former
 * key after a rotation), else its current key. */
const struct sign_key *fleet__sign_key_for(const struct fleet *b, const uint8_t *named);
/* Is the enrolment @ro carries valid for @owner (1), absent (0) or refused (-1)? */
int fleet__enrol_check(struct fleet *b, const uint8_t owner[STORE_NODE_ID_LEN],
		       const struct fleet_roster *ro);
/* Note (@why != 0) or clear (0) an id refused for its enrolment; true when that is news. */
bool fleet__untrusted_note(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
			   const uint8_t key[STORE_KEY_LEN], int why);
const struct fleet_untrusted *fleet__untrusted_find(const struct fleet *b,
						     const uint8_t id[STORE_NODE_ID_LEN]);
void fleet_op_node_identity(void *fleet, const void *args, const struct ctl_peer *peer,
			    struct ctl_enc *out);
void fleet_op_node_enrol(void *fleet, const void *args, const struct ctl_peer *peer,
			 struct ctl_enc *out);
void fleet_op_node_rotate(void *fleet, const void *args, const struct ctl_peer *peer,
			  struct ctl_enc *out);
extern const struct ctl_args_spec fleet_enrol_spec, fleet_rotate_spec;

/* pacing.c */
bool fleet__may_start(void *ud, const char *service, uint64_t rev);

#endif
