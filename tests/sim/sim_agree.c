/*
 * tests/sim/sim_agree.c: a deterministic cluster simulator for the agreement core
 * (agent/agree.h) and the hybrid logical clock (agent/hlc.h), with MEMBERSHIP CHURN: the
 * electorate of every revision is a fact of the record, and this simulator tries to break
 * that while nodes join, leave, are removed, crash, restart from their persisted state and
 * sit on both sides of partitions longer than the reap time.
 *
 * Every seed starts 4..7 nodes in two sites and plays three phases on a virtual clock (no real
 * time, no threads, everything drawn from the seed):
 *
 *   A. chaos, 2 h: operators deploy (some artifacts bad, redeploys of old ones with or without
 *      --force, some scoped to one site), ask for rollbacks (with and without --to), roll back
 *      locally; messages are lost (0..30 %) and delayed (5..800 ms); partitions into two random
 *      sides come and go; nodes crash and restart; fresh nodes JOIN (also on the minority side
 *      of a partition); a node may leave gracefully; an operator may remove a dead node; a node
 *      may be killed (-9) between persisting its own vote and gossiping it; a byzantine
 *      injector sends rollbacks whose certificates are short, padded with joiners or strangers,
 *      or carry an electorate, rule or condemned artifact of their own.
 *   B. 6 h: one node is down for all of it; a partition LONGER THAN THE REAP TIME (members not
 *      heard from for REAP are reaped from the liveness view, never from the roster) with
 *      operators on both sides asking for rollbacks of the same revision to DIFFERENT targets
 *      (split targets), joins on both sides, crashes; then the network heals.
 *   C. 1 h: healed, every node that was not removed and did not leave restarts, operators stop.
 *
 * The model of agentd (what it does, per agent/agree.h "How agentd drives it"):
 *   - a replicated ROSTER: every node that ever joined, until it leaves gracefully or an
 *     operator removes it (a grow-only map id -> {member, gone}, merged by max, pushed and
 *     exchanged by anti-entropy, persisted). Failure detection and reaping never touch it.
 *   - a deploy carries agree_electorate(roster, scope) and the DEPLOYER'S configured quorum
 *     rule; on some seeds nodes are configured differently (majority, 2/3, 3/4, and on a few
 *     seeds one node with "count 1", a rule that trades safety for liveness); the record's
 *     rule is the one every node must apply.
 *   - a node that has not completed its first full anti-entropy exchange with someone neither
 *     votes, nor decides, nor deploys. Half the seeds also require it again after every
 *     restart; the other half decide straight from the persisted state after a restart (the
 *     scenario of a restarted node deciding before the gossiped copies arrive).
 *   - persisted across crashes: log, votes (with subject, target and round), roster, clock,
 *     condemned flags, the --local marker. Lost: messages in flight, the liveness view.
 *   - its own vote: PERSISTED BEFORE IT IS PUBLISHED (store_vote_put, then the push). A kill
 *     -9 between the two leaves a vote in the voter's store that nobody else has yet; it
 *     spreads by anti-entropy after the restart. (The other order, sent but not persisted, is
 *     not what agentd does and is not modelled: the voter could then cast a second, different
 *     vote in the same round after its restart, which rule 4's safety argument excludes.)
 *   - votes: the store keeps the newest (round, hlc) per voter; a voter casts what
 *     agree_next_vote says: a first vote (health failure; operator request; echo of an
 *     operator's target), BEHIND at once, STUCK only after its view of the record's votes has
 *     been still for a SETTLE time longer than a gossip round. An operator's rollback on a
 *     node that already voted in the current round changes nothing (one vote per round).
 *   - dissemination: a node that learns something new pushes it to 3 random peers of its
 *     liveness view (each copy lost with the seed's loss rate, delayed, dropped across a
 *     partition or to a node that is down); every few seconds a random node runs a full
 *     anti-entropy exchange with a random live peer, or (reconnect, with back-off) with a
 *     member it has reaped, so two halves separated longer than any timer merge again.
 *
 * Asserted on every seed (the simulator knows the ground truth):
 *   1. no rollback is written without a quorum of its revision's electorate: its electorate,
 *      rule and condemned artifact are those of the real bad record (the one deployed with
 *      that hlc), and every elector in its certificate really cast a vote for that subject,
 *      that round and that target; at least quorum(rule, |electorate|) of them;
 *      forged records are never adopted;
 *   2. never two different decisions for one bad record, on any node at any time (for records
 *      whose rule is a strict majority or more; a permissive rule is counted, not failed):
 *      all rollbacks of one subject agree in everything but the certificate and, for the
 *      "previous good" target, the artifact when the writers' logs below differed (counted;
 *      settled by rule 1, which check 3 verifies);
 *   3. after healing every node holds the same record for every rev (byte for byte,
 *      certificates included), the same votes and roster, derives the same condemned set,
 *      reaches the same desired revision (per site) and runs it (or its --local marker);
 *   4. split targets resolve: for every record with votes whose electorate has a majority up
 *      at the end, either a target is decided or no up elector has a vote to cast (nothing
 *      stuck, nobody behind);
 *   5. nobody votes, decides or deploys before its first full exchange; the roster only ever
 *      loses a member by a leave or a removal; the node away for 6 h catches up; every joiner
 *      ends synced.
 *
 * Two builds: sim_agree_chaos (1,000 seeds, dissemination modelled as above) and
 * sim_agree_gossip (-DSIM_AGREE_GOSSIP, 6 seeds, phase A 1 h: what nodes originate travels on
 * real gossip cores on tests/sim/sim_gossip_harness.h; the full exchanges stay modelled).
 *
 * Usage: sim_agree_chaos|sim_agree_gossip [SEEDS]; SEED=n replays one seed verbosely;
 * SEED_BASE=n starts elsewhere; SIM_TABLE=1 prints the soak table (tests/bench/agree_soak.sh).
 * A failure prints the seed and how to replay it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agree/agree.h"
#include "agent/base/hlc.h"
#ifdef SIM_AGREE_GOSSIP
/*
 * Gossip mode (sim_agree_gossip): every record, vote and roster change a node originates is
 * published as its own record on a REAL gossip core (gossip/gossip.h) on the gossip simulator
 * harness, which relays it (piggybacked dissemination, pushes, its own anti-entropy); joins,
 * crashes, restarts, leaves and partitions are the cores'. The modelled full exchange stays:
 * it is the agent's first full exchange and its periodic one.
 */
#include "tests/sim/sim_gossip_harness.h"
static struct simg *G;
#endif

#define MAXN	  14	/* initial nodes + joiners */
#define NSVC	  2
#define MAXREV	  72
#define MAXART	  1024
#define SEC	  1000ULL
#define MIN	  (60 * SEC)
#define HOUR	  (60 * MIN)
#ifdef SIM_AGREE_GOSSIP
#define DEFAULT_SEEDS 6
#define PHASE_A	  HOUR
#else
#define DEFAULT_SEEDS 1000
#define PHASE_A	  (2 * HOUR)
#endif
#define PHASE_B	  (6 * HOUR)
#define PHASE_C	  HOUR
#define REAP	  (30 * MIN)	   /* --reap-after, scaled down: phase B's partition is longer */
#define WALL0	  1764000000000ULL /* virtual time 0 on the nodes' wall clocks */
#define DEADLINE  (60 * SEC)	   /* health deadline */
#define FANOUT	  3
#define MAXW	  32
/* What a vote names (agree.h rule 3): the judged record's identity. (Naming its hlc, as the
 * first version of the design did, failed invariant 1 on seed 22: a certificate of electors
 * who had judged another record with the same hlc at that rev.) */
#define SUBJECT(r) agree_subject(r)

static const char *const svc_name[NSVC] = {"web", "api"};

/* ---- deterministic randomness ------------------------------------------------------------ */

static uint64_t rng_s;

static uint64_t rnd(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd_range(uint64_t lo, uint64_t hi) /* [lo, hi] */
{
	return lo + rnd() % (hi - lo + 1);
}

static bool chance(double p)
{
	return (double)(rnd() >> 11) / (double)(1ULL << 53) < p;
}

/* ---- the world --------------------------------------------------------------------------- */

enum { R_UNKNOWN = 0, R_MEMBER = 1, R_GONE = 2 }; /* roster entry, merged by max */

struct svc_state {
	struct store_revision log[MAXREV]; /* winners sorted by rev; arrays borrowed from pool */
	int lp[MAXREV];			    /* pool index of each log entry */
	size_t nlog;
	int vp[MAXREV + 2][MAXN];	    /* latest vote per voter: pool index + 1, 0 = none */
	uint64_t vchange[MAXREV + 2];	    /* last change of this rev's votes (settle time) */
	bool settle_armed[MAXREV + 2];
	bool pending[MAXREV + 2];	    /* revs with votes and no decision yet */
	bool needs_log[MAXREV + 2];	    /* ...whose last attempt wanted more of the log */
	uint64_t digest;
	/* what runs */
	bool running;
	uint64_t run_rev;
	struct store_id run_art;
	uint64_t run_since;
	bool has_local;			    /* persisted until the next revision (issue 11, 8) */
	struct agree_local local;
};

struct node {
	bool exists, up, gone, synced;
	uint8_t id[STORE_NODE_ID_LEN];
	const char *site;
	int64_t skew;
	struct hlc hlc;
	struct store_quorum cfg;	/* its configured --quorum for its own deploys */
	uint8_t roster[MAXN];
	uint64_t heard[MAXN];		/* liveness view: last time heard from (volatile) */
	uint64_t down_since;
	uint8_t cond[MAXART / 8];	/* store_artifact_set_condemned mirror */
	struct svc_state s[NSVC];
};

struct prec {
	struct store_revision r;
	bool forged;
};

struct pvote {
	struct store_vote v;
	int voter, svc;
	int judged;	/* ground truth: pool index of the record the voter held and judged */
};

enum ev_type {
	EV_REC, EV_VOTE, EV_ROSTER, EV_HEALTH, EV_AE, EV_OP, EV_CHAOS, EV_PHASE, EV_SETTLE,
	EV_SYNC, EV_RESTART, EV_SPLIT
};

enum { OP_RANDOM = 0, OP_FORGE = 1 };
enum {
	CH_PARTITION = 0, CH_CRASH = 1, CH_RESTART = 2, CH_LEAVE = 3, CH_JOIN = 4, CH_REMOVE = 5,
	CH_LONG = 6, CH_STOP = 7, CH_KILLCORE = 8
};

struct event {
	uint64_t t, seq;
	enum ev_type type;
	int node, idx;
	uint64_t a, b;
};

struct written {
	int n;
	struct {
		int pidx, side;
		unsigned epoch;
		uint64_t subject;	/* agree_subject of the record it undoes */
	} w[MAXW];
};

struct stats {
	uint64_t seeds, failures, deploys, forced, decisions, rollbacks_written;
	uint64_t rollbacks_partition, op_votes, to_votes, op_refused_joiner, health_votes;
	uint64_t echo_votes, recast_behind, recast_stuck, max_round, stuck_seen, splits_resolved;
	uint64_t split_ops, forged_sent, forged_refused, cert_refused, displaced, local_rb;
	uint64_t joins, joins_minority, leaves, removals, crashes, kill_between, partitions;
	uint64_t long_partitions, reaped, reconnects, gaps, msgs, ae_runs, mismatched_seeds;
	uint64_t unsafe_rule_records, unsafe_divergent, target_disagree, contested;
	uint64_t both_sides_same, mirror_diverged, force_disagree, gated_restarts, unsynced_refusals;
	uint64_t departures_lost;
	uint64_t catchup_ms;
};

struct world {
	int n;			/* node slots used */
	struct node nodes[MAXN];
	int side[MAXN];
	bool partitioned;
	double loss;
	uint64_t now, seq, settle;
	int phase;
	int away;
	uint64_t away_back;
	bool away_caught_up, gate_restart;
	struct event *heap;
	size_t nheap, capheap;
	struct prec *recs;
	size_t nrecs, caprecs;
	struct pvote *votes;
	size_t nvotes, capvotes;
	struct written written[NSVC][MAXREV + 2];
	bool stuck_at[NSVC][MAXREV + 2];	/* some node saw this rev's round stuck */
	bool decided_at[NSVC][MAXREV + 2];
	unsigned epoch;
	bool truly_gone[MAXN];
	uint32_t nart;
	bool art_bad[MAXART];
	struct stats st;
	bool verbose;
	uint64_t seed;
	int failed;
};

static struct world W;

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL seed=%" PRIu64 " t=%" PRIu64 "ms: ", W.seed, W.now);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  replay: SEED=%" PRIu64 " sim_agree_chaos\n", W.seed);
	W.failed++;
}

static void vlog(const char *fmt, ...)
{
	va_list ap;

	if (!W.verbose)
		return;
	printf("%9.1fs ", (double)W.now / 1000.0);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* ---- event queue ------------------------------------------------------------------------- */

static bool ev_before(const struct event *a, const struct event *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void schedule(uint64_t t, enum ev_type type, int node, int idx, uint64_t a, uint64_t b)
{
	struct event e = {t, W.seq++, type, node, idx, a, b};
	size_t i;

	if (W.nheap == W.capheap) {
		W.capheap = W.capheap ? 2 * W.capheap : 1024;
		W.heap = xrealloc(W.heap, W.capheap * sizeof(*W.heap));
	}
	i = W.nheap++;
	while (i > 0 && ev_before(&e, &W.heap[(i - 1) / 2])) {
		W.heap[i] = W.heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	W.heap[i] = e;
}

static struct event pop(void)
{
	struct event top = W.heap[0], last = W.heap[--W.nheap];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < W.nheap) {
		if (c + 1 < W.nheap && ev_before(&W.heap[c + 1], &W.heap[c]))
			c++;
		if (!ev_before(&W.heap[c], &last))
			break;
		W.heap[i] = W.heap[c];
		i = c;
	}
	if (W.nheap)
		W.heap[i] = last;
	return top;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t wall(int n)
{
	return (uint64_t)((int64_t)(WALL0 + W.now) + W.nodes[n].skew);
}

static struct store_id make_art(uint32_t k)
{
	struct store_id id;

	memset(&id, 0, sizeof(id));
	memcpy(id.b, &k, sizeof(k));
	id.b[31] = 0x77;
	return id;
}

static uint32_t art_index(const struct store_id *id)
{
	uint32_t k;

	memcpy(&k, id->b, sizeof(k));
	return k < MAXART ? k : 0;
}

static int node_of(const uint8_t id[STORE_NODE_ID_LEN])
{
	for (int i = 0; i < W.n; i++)
		if (memcmp(W.nodes[i].id, id, STORE_NODE_ID_LEN) == 0)
			return i;
	return -1;
}

static bool alive(int a)
{
	return W.nodes[a].exists && W.nodes[a].up && !W.nodes[a].gone;
}

static bool connected(int a, int b)
{
	return alive(a) && alive(b) && (!W.partitioned || W.side[a] == W.side[b]);
}

static bool reaped(int n, int j)
{
	return W.now - W.nodes[n].heard[j] > REAP;
}

static uint64_t hash64(const void *p, size_t len, uint64_t h)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* By content: two writers of the same rollback with the same certificate make two pool
 * entries with the same bytes, which are the same record. */
static uint64_t rec_hash(int pidx)
{
	const struct store_revision *r = &W.recs[pidx].r;
	uint64_t h = 0xcbf29ce484222325ULL;

	h = hash64(&r->rev, sizeof(r->rev), h);
	h = hash64(&r->kind, sizeof(r->kind), h);
	h = hash64(&r->hlc, sizeof(r->hlc), h);
	h = hash64(r->origin, sizeof(r->origin), h);
	h = hash64(r->artifact.b, sizeof(r->artifact.b), h);
	h = hash64(r->scope, strlen(r->scope), h);
	h = hash64(r->reason, strlen(r->reason), h);
	h = hash64(&r->quorum, sizeof(r->quorum), h);
	h = hash64(r->condemns.b, sizeof(r->condemns.b), h);
	h = hash64(&r->ncert, sizeof(r->ncert), h);
	if (r->ncert)
		h = hash64(r->cert, r->ncert * (size_t)STORE_NODE_ID_LEN, h);
	h = hash64(&r->nelect, sizeof(r->nelect), h);
	if (r->nelect)
		h = hash64(r->elect, r->nelect * (size_t)STORE_NODE_ID_LEN, h);
	return h;
}

static uint64_t vote_hash(int vidx)
{
	return hash64(&vidx, sizeof(vidx), 0x5bd1e995ULL);
}

static const struct store_revision *log_at(struct svc_state *s, uint64_t rev)
{
	size_t lo = 0, hi = s->nlog;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->log[mid].rev < rev)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nlog && s->log[lo].rev == rev ? &s->log[lo] : NULL;
}

static uint64_t log_max_rev(struct svc_state *s)
{
	return s->nlog ? s->log[s->nlog - 1].rev : 0;
}

/* The votes node @n holds on (svc, rev), as the store would list them. */
static size_t gather(int n, int svc, uint64_t rev, struct store_vote *out)
{
	size_t k = 0;

	for (int j = 0; j < W.n; j++) {
		int p = W.nodes[n].s[svc].vp[rev][j];

		if (p)
			out[k++] = W.votes[p - 1].v;
	}
	return k;
}

/* Quorum rule that cannot decide two targets of one electorate (> E / 2). */
static bool safe_rule(const struct store_revision *r)
{
	return 2 * (uint64_t)agree_quorum_size(&r->quorum, r->nelect) > r->nelect;
}

/* ---- dissemination ----------------------------------------------------------------------- */

static void send_to(int from, int to, enum ev_type type, int idx, uint64_t b)
{
#ifdef SIM_AGREE_GOSSIP
	(void)from, (void)to, (void)type, (void)idx, (void)b;
	return; /* the gossip cores carry what nodes publish */
#endif
	W.st.msgs++;
	if (!connected(from, to) || chance(W.loss))
		return;
	schedule(W.now + rnd_range(5, 800), type, to, idx, (uint64_t)from, b);
}

/* A random member of @n's roster other than itself (live in its view unless @reaped_ok). */
static int pick_peer(int n, bool want_reaped)
{
	int cand[MAXN], k = 0;

	for (int j = 0; j < W.n; j++)
		if (j != n && W.nodes[n].roster[j] == R_MEMBER && reaped(n, j) == want_reaped)
			cand[k++] = j;
	return k ? cand[rnd() % (uint64_t)k] : -1;
}

/* Push to FANOUT random live peers (the agent's immediate push of what it learnt). */
static void push(int from, enum ev_type type, int idx, uint64_t b)
{
	int cand[MAXN], k = 0;

#ifdef SIM_AGREE_GOSSIP
	return;
#endif

	for (int j = 0; j < W.n; j++)
		if (j != from && W.nodes[from].roster[j] == R_MEMBER && !reaped(from, j))
			cand[k++] = j;
	for (int i = 0; i < FANOUT && k > 0; i++) {
		int c = (int)(rnd() % (uint64_t)k);

		send_to(from, cand[c], type, idx, b);
		cand[c] = cand[--k];
	}
}

/* A node originates a record, a vote or a roster change: in gossip mode it becomes a record
 * of its own gossip core (key = kind/index, value = what the simulator needs). */
static void publish(int n, enum ev_type type, int idx, uint64_t b)
{
#ifdef SIM_AGREE_GOSSIP
	char key[32];
	uint32_t v[2] = {(uint32_t)idx, (uint32_t)b};

	snprintf(key, sizeof(key), "%c/%d/%u", type == EV_REC ? 'r' : type == EV_VOTE ? 'v' : 'm',
		 idx, (unsigned)b);
	if (simg_put(G, (unsigned)n, key, 1, v, sizeof(v)) < 0)
		W.st.msgs++; /* a crashed core: the modelled exchanges carry it later */
#else
	(void)n, (void)type, (void)idx, (void)b;
#endif
}

/* ---- checks against the ground truth ----------------------------------------------------- */

/* Did @voter really cast (round, target) on (svc, rev), judging a record with the same
 * identity as @bad (not merely the same hlc)? */
static bool truly_voted(int svc, int voter, const struct store_revision *bad, uint32_t round,
			uint64_t target)
{
	for (size_t i = 0; i < W.nvotes; i++) {
		const struct pvote *p = &W.votes[i];

		if (p->voter == voter && p->svc == svc && p->v.rev == bad->rev &&
		    p->v.round == round && p->v.target == target &&
		    agree_revision_same(&W.recs[p->judged].r, bad))
			return true;
	}
	return false;
}

/* Invariant 1, at creation. */
static void check_cert_truth(int svc, const struct store_revision *bad,
			     const struct store_revision *r, uint32_t round, uint64_t target)
{
	uint32_t good = 0;
	bool real = false;

	for (size_t i = 0; i < W.nrecs && !real; i++)
		real = !W.recs[i].forged && agree_revision_same(&W.recs[i].r, bad);
	if (!real)
		fail("%s rev %" PRIu64 ": rollback of a record nobody wrote", svc_name[svc], r->rev);
	if (r->nelect != bad->nelect ||
	    memcmp(r->elect, bad->elect, (size_t)r->nelect * STORE_NODE_ID_LEN) != 0 ||
	    memcmp(&r->quorum, &bad->quorum, sizeof(r->quorum)) != 0 ||
	    memcmp(r->condemns.b, bad->artifact.b, STORE_ID_LEN) != 0)
		fail("%s rev %" PRIu64 ": rollback's electorate, rule or condemned artifact is not "
		     "its bad record's", svc_name[svc], r->rev);
	for (uint32_t i = 0; i < r->ncert; i++) {
		int v = node_of(r->cert[i]);

		if (v < 0 || !agree_in_electorate(bad, r->cert[i])) {
			fail("%s rev %" PRIu64 ": certificate names node %d, not an elector",
			     svc_name[svc], r->rev, v);
			continue;
		}
		if (!truly_voted(svc, v, bad, round, target)) {
			fail("%s rev %" PRIu64 ": certificate names node %d, which never voted on "
			     "that record (%s, artifact %u, hlc %" PRIu64 ") in round %u for target %"
			     PRIu64, svc_name[svc], r->rev, v,
			     bad->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy",
			     art_index(&bad->artifact), bad->hlc, round, target);
			continue;
		}
		good++;
	}
	if (good < agree_quorum_size(&bad->quorum, bad->nelect))
		fail("%s rev %" PRIu64 ": rollback with %u true voters of %u electors (quorum %u)",
		     svc_name[svc], r->rev, good, bad->nelect,
		     agree_quorum_size(&bad->quorum, bad->nelect));
}

/*
 * Invariant 2: every rollback of one bad record (one subject) is the same decision. The
 * artifact may differ when the writers' logs differed below the bad rev (the previous good
 * one, or the winner at an explicit --to rev, not yet merged): counted, and settled by rule 1,
 * which the final checks verify. Rollbacks of different records at one rev: counted.
 */
static void check_same_decision(int svc, const struct store_revision *bad, int pidx, int writer)
{
	const struct store_revision *r = &W.recs[pidx].r;
	struct written *wr = &W.written[svc][r->rev];
	unsigned epoch = W.partitioned ? W.epoch : 0;
	uint64_t subject = agree_subject(bad);
	int side = W.side[writer];

	for (int i = 0; i < wr->n; i++) {
		struct store_revision o = W.recs[wr->w[i].pidx].r;
		bool split = epoch && wr->w[i].epoch == epoch && wr->w[i].side != side;

		if (wr->w[i].subject != subject) {
			W.st.contested++;
			continue;
		}
		if (agree_revision_same(&o, r)) {
			if (split)
				W.st.both_sides_same++;
			continue;
		}
		o.artifact = r->artifact;
		if (agree_revision_same(&o, r)) {
			W.st.target_disagree++;
			continue;
		}
		if (!safe_rule(r)) {
			W.st.unsafe_divergent++;
			continue;
		}
		fail("%s rev %" PRIu64 ": two decisions on one record: '%s' and '%s'%s",
		     svc_name[svc], r->rev, o.reason, r->reason,
		     split ? " (on two sides of a partition)" : "");
	}
	if (wr->n < MAXW) {
		wr->w[wr->n].pidx = pidx;
		wr->w[wr->n].side = side;
		wr->w[wr->n].epoch = epoch;
		wr->w[wr->n].subject = subject;
		wr->n++;
	}
}

/* ---- node logic -------------------------------------------------------------------------- */

static void try_decide(int n, int svc, uint64_t rev);
static void check_recast(int n, int svc, uint64_t rev);
static bool merge_rec(int n, int pidx, bool relay);
static void crash(int n);

static void set_cond(struct node *nd, uint32_t art, bool on)
{
	if (on)
		nd->cond[art / 8] |= (uint8_t)(1u << (art % 8));
	else
		nd->cond[art / 8] &= (uint8_t)~(1u << (art % 8));
}

static bool get_cond(const struct node *nd, uint32_t art)
{
	return nd->cond[art / 8] & (1u << (art % 8));
}

static void reconcile(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	struct store_id art;
	const struct store_revision *d;
	uint64_t rev;
	int r;

	r = agree_effective(s->log, s->nlog, nd->site, s->has_local ? &s->local : NULL, &art);
	if (r == 0 && s->has_local) {
		vlog("node %d %s: local marker stale, following the cluster", n, svc_name[svc]);
		s->has_local = false;
	}
	if (r < 0)
		return;
	d = agree_desired(s->log, s->nlog, nd->site);
	rev = r == 1 ? s->local.base_rev : d->rev;
	if (s->running && s->run_rev == rev && memcmp(&s->run_art, &art, sizeof(art)) == 0)
		return;
	s->running = true;
	s->run_rev = rev;
	s->run_art = art;
	s->run_since = W.now;
	if (r == 0 && nd->up)
		schedule(W.now + DEADLINE, EV_HEALTH, n, svc, rev, W.now);
}

static int pool_add_rec(const struct store_revision *r, bool forged)
{
	if (W.nrecs == W.caprecs) {
		W.caprecs = W.caprecs ? 2 * W.caprecs : 256;
		W.recs = xrealloc(W.recs, W.caprecs * sizeof(*W.recs));
	}
	W.recs[W.nrecs].r = *r;
	W.recs[W.nrecs].forged = forged;
	return (int)W.nrecs++;
}

/* Store vote @vidx at node @n like store_vote_put: only if newer than the held one. */
static bool store_vote(int n, int vidx)
{
	const struct pvote *pv = &W.votes[vidx];
	struct svc_state *s = &W.nodes[n].s[pv->svc];
	int *slot = &s->vp[pv->v.rev][pv->voter];

	if (*slot && !store_vote_newer(&pv->v, &W.votes[*slot - 1].v))
		return false;
	if (*slot)
		s->digest ^= vote_hash(*slot - 1);
	*slot = vidx + 1;
	s->digest ^= vote_hash(vidx);
	s->vchange[pv->v.rev] = W.now;
	return true;
}

static void vote_changed(int n, int svc, uint64_t rev)
{
	W.nodes[n].s[svc].pending[rev] = true;
	try_decide(n, svc, rev);
	check_recast(n, svc, rev);
}

/* Node @n casts a vote: persisted first, then (unless killed in between) published. */
static void cast(int n, int svc, uint64_t rev, enum store_vote_reason reason, uint32_t round,
		 uint64_t target)
{
	struct node *nd = &W.nodes[n];
	const struct store_revision *bad = log_at(&nd->s[svc], rev);
	struct pvote pv;
	uint64_t t;
	int vidx;

	if (!nd->synced || !nd->up || !bad || !agree_in_electorate(bad, nd->id)) {
		fail("node %d casts a vote it may not cast (synced %d, elector %d)", n,
		     nd->synced, bad && agree_in_electorate(bad, nd->id));
		return;
	}
	if (W.nvotes == W.capvotes) {
		W.capvotes = W.capvotes ? 2 * W.capvotes : 256;
		W.votes = xrealloc(W.votes, W.capvotes * sizeof(*W.votes));
	}
	memset(&pv, 0, sizeof(pv));
	snprintf(pv.v.service, sizeof(pv.v.service), "%s", svc_name[svc]);
	pv.v.rev = rev;
	memcpy(pv.v.voter, nd->id, STORE_NODE_ID_LEN);
	pv.v.reason = reason;
	if (hlc_now(&nd->hlc, wall(n), &t) < 0)
		fail("hlc_now failed");
	pv.v.hlc = t;
	pv.v.subject = SUBJECT(bad);
	pv.v.target = target;
	pv.v.round = round;
	pv.voter = n;
	pv.svc = svc;
	pv.judged = nd->s[svc].lp[bad - nd->s[svc].log];
	vidx = (int)W.nvotes++;
	W.votes[vidx] = pv;
	if (round > W.st.max_round)
		W.st.max_round = round;
	vlog("node %d votes %s rev %" PRIu64 " (%s, round %u, to %" PRIu64 ")", n, svc_name[svc],
	     rev, reason == STORE_VOTE_HEALTH ? "health" : "operator", round, target);
	if (!store_vote(n, vidx))
		fail("node %d: its own new vote is not newer than the one it holds", n);
	/* kill -9 after store_vote_put, before the push: the vote waits in its store */
	if (W.phase < 2 && n != W.away && chance(0.04)) {
		W.st.kill_between++;
		vlog("node %d killed between persisting its vote and gossiping it", n);
		crash(n);
		schedule(W.now + rnd_range(5 * SEC, 5 * MIN), EV_RESTART, n, 0, 0, 0);
		return;
	}
	push(n, EV_VOTE, vidx, 0);
	publish(n, EV_VOTE, vidx, 0);
	vote_changed(n, svc, rev);
}

/* Merge record @pidx into node @n. Returns true when the log changed. */
static bool merge_rec(int n, int pidx, bool relay)
{
	struct node *nd = &W.nodes[n];
	const struct store_revision *in = &W.recs[pidx].r;
	int svc = strcmp(in->service, svc_name[0]) == 0 ? 0 : 1;
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *held;
	size_t pos;
	int r;
	uint64_t k, inrev;

	held = log_at(s, in->rev);
	if (held && s->lp[held - s->log] == pidx)
		return false;
	(void)hlc_update(&nd->hlc, wall(n), in->hlc, NULL);
	if (in->rev >= MAXREV) {
		fail("rev %" PRIu64 " beyond the simulator's table", in->rev);
		return false;
	}
	r = agree_accept(s->log, s->nlog, in);
	if (r < 0 && !W.recs[pidx].forged && W.verbose) {
		const struct store_revision *b = log_at(s, in->rev - 1);

		vlog("node %d refuses %s rev %" PRIu64 " (%s): holds at rev-1 %s art %u hlc %"
		     PRIu64 " elect %u, record hlc %" PRIu64 " elect %u condemns %u", n,
		     svc_name[svc], in->rev, agree_strerror(r), b ? (b->kind ? "rollback" : "deploy") : "-",
		     b ? art_index(&b->artifact) : 0, b ? b->hlc : 0, b ? b->nelect : 0, in->hlc,
		     in->nelect, art_index(&in->condemns));
	}
	if (r < 0) {
		if (W.recs[pidx].forged)
			W.st.forged_refused++;
		else if (r == -AGREE_ECERT)
			W.st.cert_refused++;
		else
			fail("node %d refused a correct record: %s", n, agree_strerror(r));
		return false;
	}
	if (r == AGREE_KEEP)
		return false;
	if (W.recs[pidx].forged) {
		fail("node %d adopted a forged rollback of %s rev %" PRIu64 " (cert %u of %u)", n,
		     svc_name[svc], in->rev, in->ncert, in->nelect);
		return false;
	}
	if (held) {
		pos = (size_t)(held - s->log);
		s->digest ^= rec_hash(s->lp[pos]);
		if (held->kind == STORE_REV_DEPLOY && in->kind == STORE_REV_ROLLBACK)
			W.st.displaced++;
	} else {
		for (pos = s->nlog; pos > 0 && s->log[pos - 1].rev > in->rev; pos--)
			;
		memmove(&s->log[pos + 1], &s->log[pos], (s->nlog - pos) * sizeof(s->log[0]));
		memmove(&s->lp[pos + 1], &s->lp[pos], (s->nlog - pos) * sizeof(s->lp[0]));
		s->nlog++;
	}
	s->log[pos] = *in;
	s->lp[pos] = pidx;
	s->digest ^= rec_hash(pidx);
	/* The store mirror of condemnation (the log is pruned in agentd), as agent/brain.c
	 * keeps it today: set when a rollback is adopted, cleared only by the origin of a forced
	 * deploy. Measured, not asserted (see final_checks). */
	if (in->kind == STORE_REV_ROLLBACK) {
		struct store_id c;

		if (agree_condemned_by(s->log, s->nlog, in, &c) == 0)
			set_cond(nd, art_index(&c), true);
	}
	if (relay)
		push(n, EV_REC, pidx, 0);
	inrev = in->rev;
	for (k = inrev > 0 ? inrev - 1 : 0; k <= log_max_rev(s) + 1 && k < MAXREV; k++)
		if (s->pending[k] && (k == inrev || k + 1 == inrev || s->needs_log[k])) {
			try_decide(n, svc, k);
			check_recast(n, svc, k);
		}
	reconcile(n, svc);
	return true;
}

/* An operator's vote for what this node runs: echo it with the same target. */
static void maybe_echo(int n, const struct pvote *pv)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[pv->svc];
	const struct store_revision *d = agree_desired(s->log, s->nlog, nd->site);
	struct store_vote vs[MAXN];
	uint32_t round;
	uint64_t target;
	size_t nv;

	if (pv->v.reason != STORE_VOTE_OPERATOR || pv->voter == n || !d || d->rev != pv->v.rev ||
	    SUBJECT(d) != pv->v.subject || s->has_local || !agree_in_electorate(d, nd->id))
		return;
	if (log_at(s, d->rev + 1) && log_at(s, d->rev + 1)->kind == STORE_REV_ROLLBACK)
		return;
	nv = gather(n, pv->svc, d->rev, vs);
	if (agree_next_vote(d, vs, nv, nd->id, pv->v.target, &round, &target) == AGREE_VOTE_NEW) {
		W.st.echo_votes++;
		cast(n, pv->svc, d->rev, STORE_VOTE_OPERATOR, round, target);
	}
}

static bool merge_vote(int n, int vidx, bool relay)
{
	const struct pvote pvc = W.votes[vidx], *pv = &pvc; /* cast may grow the pool */

	if (!store_vote(n, vidx))
		return false;
	(void)hlc_update(&W.nodes[n].hlc, wall(n), pv->v.hlc, NULL);
	if (relay)
		push(n, EV_VOTE, vidx, 0);
	if (!W.nodes[n].synced || !W.nodes[n].up)
		return true;
	maybe_echo(n, pv);
	if (W.nodes[n].up)
		vote_changed(n, pv->svc, pv->v.rev);
	return true;
}

static bool merge_roster(int n, int j, uint8_t state, bool relay)
{
	struct node *nd = &W.nodes[n];

	if (state <= nd->roster[j])
		return false;
	if (state == R_GONE && !W.truly_gone[j])
		fail("node %d drops node %d from the roster, which neither left nor was removed",
		     n, j);
	nd->roster[j] = state;
	if (relay)
		push(n, EV_ROSTER, j, state);
	return true;
}

static void try_decide(int n, int svc, uint64_t rev)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *next = log_at(s, rev + 1), *bad;
	struct store_vote vs[MAXN];
	struct store_revision out;
	struct agree_tally t;
	size_t nv;
	int r, pidx;

	if (!nd->up || !nd->synced)
		return;
	if (next && next->kind == STORE_REV_ROLLBACK) {
		s->pending[rev] = false;
		return;
	}
	if (rev + 1 >= MAXREV || !(bad = log_at(s, rev)))
		return;
	nv = gather(n, svc, rev, vs);
	if (!nv)
		return;
	if (agree_tally(bad, vs, nv, &t) < 0) {
		fail("agree_tally failed");
		return;
	}
	if (t.stuck)
		W.stuck_at[svc][rev] = true;
	r = agree_decide(s->log, s->nlog, svc_name[svc], rev, vs, nv, &out);
	if (r == -AGREE_EGAP)
		W.st.gaps++;
	s->needs_log[rev] = r < 0 && r != -AGREE_ENOQUORUM;
	if (r < 0)
		return;
	pidx = pool_add_rec(&out, false);
	W.st.rollbacks_written++;
	if (W.partitioned)
		W.st.rollbacks_partition++;
	if (!W.decided_at[svc][rev]) {
		W.decided_at[svc][rev] = true;
		W.st.decisions++;
		if (W.stuck_at[svc][rev])
			W.st.splits_resolved++;
	}
	vlog("node %d writes rollback %s rev %" PRIu64 " -> artifact %u (round %u, cert %u of "
	     "%u)%s", n, svc_name[svc], out.rev, art_index(&out.artifact), t.round, out.ncert,
	     out.nelect, W.partitioned ? " [partitioned]" : "");
	check_cert_truth(svc, bad, &out, t.round, t.target);
	check_same_decision(svc, bad, pidx, n);
	s->pending[rev] = false;
	merge_rec(n, pidx, true);
	publish(n, EV_REC, pidx, 0);
}

/* Rule 4 for our own vote on the record held at @rev: behind at once, stuck after SETTLE. */
static void check_recast(int n, int svc, uint64_t rev)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *bad = log_at(s, rev), *next = log_at(s, rev + 1);
	struct store_vote vs[MAXN];
	uint32_t round;
	uint64_t target;
	size_t nv;
	int r;

	if (!nd->up || !nd->synced || !bad || (next && next->kind == STORE_REV_ROLLBACK) ||
	    rev + 1 >= MAXREV)
		return;
	nv = gather(n, svc, rev, vs);
	r = agree_next_vote(bad, vs, nv, nd->id, 0, &round, &target);
	if (r == AGREE_VOTE_BEHIND) {
		W.st.recast_behind++;
		cast(n, svc, rev, STORE_VOTE_HEALTH, round, target);
	} else if (r == AGREE_VOTE_STUCK) {
		W.stuck_at[svc][rev] = true;
		if (W.now >= s->vchange[rev] + W.settle) {
			W.st.recast_stuck++;
			cast(n, svc, rev, STORE_VOTE_HEALTH, round, target);
		} else if (!s->settle_armed[rev]) {
			s->settle_armed[rev] = true;
			schedule(s->vchange[rev] + W.settle, EV_SETTLE, n, svc, rev, 0);
		}
	}
}

static void on_settle(int n, int svc, uint64_t rev)
{
	W.nodes[n].s[svc].settle_armed[rev] = false;
	check_recast(n, svc, rev);
}

/* Everything a node (re)considers when it becomes able to act: after its first exchange, or
 * a restart that does not wait for one. */
static void process_all(int n)
{
	for (int svc = 0; svc < NSVC; svc++) {
		struct svc_state *s = &W.nodes[n].s[svc];

		for (uint64_t k = 1; k < MAXREV && W.nodes[n].up; k++) {
			bool any = false;

			for (int j = 0; j < W.n && !any; j++)
				any = s->vp[k][j] != 0;
			if (!any)
				continue;
			s->pending[k] = true;
			try_decide(n, svc, k);
			check_recast(n, svc, k);
		}
	}
}

/* ---- anti-entropy ------------------------------------------------------------------------ */

static void sync_into(int from, int to)
{
	struct node *f = &W.nodes[from];

	for (int j = 0; j < W.n; j++)
		if (f->roster[j])
			merge_roster(to, j, f->roster[j], false);
	for (int svc = 0; svc < NSVC; svc++) {
		struct svc_state *s = &f->s[svc];

		for (size_t k = 0; k < s->nlog && W.nodes[to].up; k++)
			merge_rec(to, s->lp[k], false);
		for (uint64_t k = 1; k < MAXREV; k++)
			for (int j = 0; j < W.n && W.nodes[to].up; j++)
				if (s->vp[k][j])
					merge_vote(to, s->vp[k][j] - 1, false);
	}
}

static bool same_state(int a, int b)
{
	if (memcmp(W.nodes[a].roster, W.nodes[b].roster, sizeof(W.nodes[a].roster)) != 0)
		return false;
	for (int svc = 0; svc < NSVC; svc++) {
		struct svc_state *x = &W.nodes[a].s[svc], *y = &W.nodes[b].s[svc];

		if (x->nlog != y->nlog || x->digest != y->digest)
			return false;
	}
	return true;
}

static void became_synced(int n)
{
	if (W.nodes[n].synced)
		return;
	W.nodes[n].synced = true;
	vlog("node %d: first full exchange done", n);
	process_all(n);
}

/* A full exchange between @a and @b; false if it could not run. */
static bool exchange(int a, int b)
{
	if (!connected(a, b) || chance(W.loss))
		return false;
	W.st.ae_runs++;
	W.nodes[a].heard[b] = W.nodes[b].heard[a] = W.now;
	if (!same_state(a, b)) {
		sync_into(a, b);
		if (W.nodes[a].up && W.nodes[b].up)
			sync_into(b, a);
	}
	if (W.nodes[a].up)
		became_synced(a);
	if (W.nodes[b].up)
		became_synced(b);
	return true;
}

static int random_alive(void)
{
	int cand[MAXN], k = 0;

	for (int i = 0; i < W.n; i++)
		if (alive(i))
			cand[k++] = i;
	return k ? cand[rnd() % (uint64_t)k] : -1;
}

static void on_ae(void)
{
	int a = random_alive(), b;
	bool reconnect = chance(0.25);

	if (W.phase < 3)
		schedule(W.now + (W.phase == 1 ? 15 * SEC : 5 * SEC), EV_AE, -1, 0, 0, 0);
	if (a < 0)
		return;
	/* mostly a live member; sometimes (back-off) a reaped one: members considered dead are
	 * still tried, so halves separated longer than any timer find each other again */
	b = pick_peer(a, reconnect);
	if (b < 0)
		b = pick_peer(a, !reconnect);
	if (b < 0)
		return;
	if (reaped(a, b)) {
		W.st.reconnects++;
		if (connected(a, b))
			vlog("node %d reconnects to reaped node %d", a, b);
	}
	if (exchange(a, b))
		vlog("exchange %d <-> %d", a, b);
	if (W.phase == 2 && !W.away_caught_up && alive(W.away)) {
		bool all = true;

		for (int i = 0; i < W.n && all; i++)
			if (i != W.away && alive(i))
				all = same_state(W.away, i);
		if (all) {
			W.away_caught_up = true;
			if (W.now - W.away_back > W.st.catchup_ms)
				W.st.catchup_ms = W.now - W.away_back;
		}
	}
}

/* A node not yet synced asks a peer for its first full exchange, until one succeeds. */
static void on_sync(int n, int contact)
{
	if (!alive(n) || W.nodes[n].synced)
		return;
	if (contact < 0 || !exchange(n, contact) || !W.nodes[n].synced) {
		int c = pick_peer(n, false);

		if (c < 0)
			c = pick_peer(n, true);
		schedule(W.now + rnd_range(2 * SEC, 8 * SEC), EV_SYNC, n, c, 0, 0);
	}
}

/* ---- chaos and membership ---------------------------------------------------------------- */

static void crash(int n)
{
	struct node *nd = &W.nodes[n];

	if (!nd->up)
		return;
	nd->up = false;
	nd->down_since = W.now;
	W.st.crashes++;
#ifdef SIM_AGREE_GOSSIP
	/* not from inside the core's own callback: at once, but as an event */
	schedule(W.now, EV_CHAOS, n, CH_KILLCORE, 0, 0);
#endif
	vlog("node %d crashes", n);
}

static void restart(int n)
{
	struct node *nd = &W.nodes[n];

	if (!nd->exists || nd->gone || nd->up)
		return;
	nd->up = true;
#ifdef SIM_AGREE_GOSSIP
	if (simg_restart(G, (unsigned)n) < 0)
		fail("node %d: its gossip core does not restart", n);
#endif
	/* the liveness view is volatile: start by probing every roster member again */
	for (int j = 0; j < W.n; j++)
		nd->heard[j] = W.now;
	for (int svc = 0; svc < NSVC; svc++) {
		nd->s[svc].running = false; /* the reconciler re-checks what runs */
		memset(nd->s[svc].settle_armed, 0, sizeof(nd->s[svc].settle_armed));
		reconcile(n, svc);
	}
	vlog("node %d restarts%s", n, W.gate_restart ? " (waits for a full exchange)" : "");
	if (W.gate_restart) {
		nd->synced = false;
		W.st.gated_restarts++;
		schedule(W.now + rnd_range(100, 3 * SEC), EV_SYNC, n, pick_peer(n, false), 0, 0);
	} else if (nd->synced) {
		process_all(n); /* from the persisted votes alone */
	} else {
		schedule(W.now + rnd_range(100, 3 * SEC), EV_SYNC, n, pick_peer(n, false), 0, 0);
	}
}

static const struct store_quorum Q_MAJ = {AGREE_QUORUM_MAJORITY, 0, 0, 0};
static const struct store_quorum Q_23 = {AGREE_QUORUM_FRACTION, 0, 2, 3};
static const struct store_quorum Q_34 = {AGREE_QUORUM_FRACTION, 0, 3, 4};
static const struct store_quorum Q_ONE = {AGREE_QUORUM_COUNT, 1, 0, 0};
static int cfg_kind; /* 0 uniform majority, 1 mixed safe rules, 2 mixed with a permissive one */

static struct store_quorum pick_cfg(int i)
{
	if (cfg_kind == 0)
		return Q_MAJ;
	if (cfg_kind == 2 && i == 1)
		return Q_ONE;
	switch (rnd() % 3) {
	case 0:
		return Q_MAJ;
	case 1:
		return Q_23;
	default:
		return Q_34;
	}
}

static void init_node(int i)
{
	struct node *nd = &W.nodes[i];

	memset(nd, 0, sizeof(*nd));
	nd->exists = true;
	nd->up = true;
	nd->id[0] = (uint8_t)rnd();
	nd->id[1] = (uint8_t)i; /* unique */
	nd->id[15] = (uint8_t)rnd();
	nd->site = chance(0.5) ? "a" : "b";
	nd->skew = (int64_t)rnd_range(0, 4 * MIN) - (int64_t)(2 * MIN);
	nd->cfg = pick_cfg(i);
	hlc_init(&nd->hlc, 0);
	nd->roster[i] = R_MEMBER;
	for (int j = 0; j < MAXN; j++)
		nd->heard[j] = W.now;
}

/* A fresh node joins through a contact on one side (during a partition, often the smaller). */
static void join(void)
{
	int j = W.n, c, ones = 0, ups[2] = {0, 0}, want;

	if (W.n >= MAXN)
		return;
	for (int i = 0; i < W.n; i++)
		if (alive(i))
			ups[W.side[i]]++;
	want = W.partitioned ? (chance(0.6) ? (ups[0] <= ups[1] ? 0 : 1) : (int)(rnd() % 2)) : 0;
	c = -1;
	for (int tries = 0; tries < 32 && c < 0; tries++) {
		int k = random_alive();

		if (k >= 0 && (!W.partitioned || W.side[k] == want))
			c = k;
	}
	if (c < 0)
		return;
	(void)ones;
	W.n++;
	init_node(j);
	W.side[j] = W.side[c];
#ifdef SIM_AGREE_GOSSIP
	if (simg_spawn(G, c) != j) {
		fail("gossip harness: spawn of node %d failed", j);
		return;
	}
	memcpy(W.nodes[j].id, simg_id(G, (unsigned)j), STORE_NODE_ID_LEN);
	simg_set_group(G, (unsigned)j, W.partitioned ? W.side[j] : 0);
#endif
	W.st.joins++;
	if (W.partitioned && ups[W.side[c]] < ups[!W.side[c]])
		W.st.joins_minority++;
	vlog("node %d (site %s) joins via node %d%s", j, W.nodes[j].site, c,
	     W.partitioned ? " during a partition" : "");
	/* the contact adds it to the roster and spreads that; the joiner learns the contact's
	 * members from the join (SWIM's member list), to reach them if the contact dies, but
	 * none of its state (that is the first full exchange) */
	merge_roster(c, j, R_MEMBER, true);
	publish(c, EV_ROSTER, j, R_MEMBER);
	W.nodes[c].heard[j] = W.now;
	for (int k = 0; k < W.n; k++)
		if (W.nodes[c].roster[k] == R_MEMBER)
			W.nodes[j].roster[k] = R_MEMBER;
	schedule(W.now + rnd_range(200, 3 * SEC), EV_SYNC, j, c, 0, 0);
}

/* `agentctl leave` on @n: it returns once a peer has the departure (one full exchange), so
 * an isolated node cannot leave yet (false: the operator tries again later). */
static bool leave(int n)
{
	struct node *nd = &W.nodes[n];
	int p = -1;

	for (int j = 0; j < W.n && p < 0; j++)
		if (j != n && nd->roster[j] == R_MEMBER && connected(n, j))
			p = j;
	if (p < 0)
		return false;
	W.truly_gone[n] = true;
	W.st.leaves++;
	vlog("node %d leaves (agentctl leave) via node %d", n, p);
	merge_roster(n, n, R_GONE, false);
	publish(n, EV_ROSTER, n, R_GONE);
	for (int j = 0; j < W.n; j++)
		if (j != n && nd->roster[j] == R_MEMBER)
			send_to(n, j, EV_ROSTER, n, R_GONE);
	for (int tries = 0; tries < 100 && !exchange(n, p); tries++)
		;
	if (W.nodes[p].roster[n] != R_GONE)
		fail("node %d left but node %d does not know", n, p);
	nd->gone = true;
	nd->up = false;
#ifdef SIM_AGREE_GOSSIP
	simg_leave(G, (unsigned)n); /* the core announces it, then stops */
	schedule(W.now + 10 * SEC, EV_CHAOS, n, CH_STOP, 0, 0);
#endif
	return true;
}

/* An operator removes a node that has been dead for a while (agentctl members remove). */
static void op_remove(void)
{
	int r = random_alive(), x = -1, p = -1;

	if (r < 0 || !W.nodes[r].synced)
		return;
	for (int i = 0; i < W.n; i++)
		if (W.nodes[i].exists && !W.nodes[i].up && !W.nodes[i].gone && i != W.away &&
		    W.now - W.nodes[i].down_since > 10 * MIN && W.nodes[r].roster[i] == R_MEMBER)
			x = i;
	if (x < 0)
		return;
	/* like a leave, `agentctl members remove` returns once a peer has it */
	for (int j = 0; j < W.n && p < 0; j++)
		if (j != r && j != x && W.nodes[r].roster[j] == R_MEMBER && connected(r, j))
			p = j;
	if (p < 0)
		return;
	W.truly_gone[x] = true;
	W.nodes[x].gone = true; /* decommissioned: never comes back under this id */
	W.st.removals++;
	vlog("operator on node %d removes dead node %d", r, x);
	merge_roster(r, x, R_GONE, true);
	publish(r, EV_ROSTER, x, R_GONE);
	for (int tries = 0; tries < 100 && !exchange(r, p); tries++)
		;
}

static void partition(bool long_one)
{
	int ones = 0;

	for (int i = 0; i < W.n; i++) {
		W.side[i] = (int)(rnd() % 2);
		ones += W.side[i];
	}
	if (ones == 0 || ones == W.n)
		W.side[0] ^= 1;
	W.partitioned = true;
#ifdef SIM_AGREE_GOSSIP
	for (int i = 0; i < W.n; i++)
		simg_set_group(G, (unsigned)i, W.side[i]);
#endif
	W.epoch++;
	W.st.partitions++;
	if (long_one)
		W.st.long_partitions++;
	vlog("partition%s", long_one ? " (longer than the reap time)" : "");
}

static void heal(void)
{
	W.partitioned = false;
#ifdef SIM_AGREE_GOSSIP
	for (int i = 0; i < W.n; i++)
		simg_set_group(G, (unsigned)i, 0);
#endif
	vlog("heal");
}

/* ---- operator actions -------------------------------------------------------------------- */

static void op_deploy(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	struct agree_member roster[MAXN];
	struct store_revision r;
	uint8_t(*ids)[STORE_NODE_ID_LEN] = NULL;
	uint32_t k, ne;
	size_t nr = 0;
	bool force = false;
	uint64_t t;
	int pidx;

	if (!nd->synced) {
		W.st.unsynced_refusals++;
		return;
	}
	if (log_max_rev(s) + 2 >= MAXREV - 4 || W.nart + 2 >= MAXART)
		return;
	if (chance(0.15) && W.nart > 2) {
		struct store_id old;

		k = (uint32_t)rnd_range(1, W.nart - 1);
		old = make_art(k);
		if (agree_check_deploy(s->log, s->nlog, &old, false) == -STORE_ECONDEMNED ||
		    get_cond(nd, k)) {
			if (!chance(0.5))
				return;
			force = true;
			W.st.forced++;
		}
	} else {
		k = W.nart++;
		W.art_bad[k] = chance(0.35);
	}
	if (force)
		set_cond(nd, k, false);
	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "%s", svc_name[svc]);
	r.rev = log_max_rev(s) + 1;
	r.artifact = make_art(k);
	r.kind = STORE_REV_DEPLOY;
	if (svc == 1 && chance(0.4))
		snprintf(r.scope, sizeof(r.scope), "site:%s", chance(0.5) ? "a" : "b");
	/* the electorate: this node's roster, in scope (rule 0) */
	for (int j = 0; j < W.n; j++)
		if (nd->roster[j]) {
			memcpy(roster[nr].id, W.nodes[j].id, STORE_NODE_ID_LEN);
			roster[nr].state = nd->roster[j] == R_GONE ? AGREE_LEFT : AGREE_ALIVE;
			roster[nr].site = W.nodes[j].site;
			nr++;
		}
	if (agree_electorate(roster, nr, r.scope, &ids, &ne) < 0)
		return; /* nobody in scope: agentctl refuses */
	r.elect = ids;
	r.nelect = ne;
	r.quorum = nd->cfg;
	if (!safe_rule(&r))
		W.st.unsafe_rule_records++;
	memcpy(r.origin, nd->id, STORE_NODE_ID_LEN);
	if (hlc_now(&nd->hlc, wall(n), &t) < 0)
		fail("hlc_now");
	r.hlc = t;
	r.operator_uid = 1000;
	r.operator_pid = (int32_t)rnd_range(100, 99999);
	snprintf(r.reason, sizeof(r.reason), "deploy%s", force ? " --force" : "");
	W.st.deploys++;
	vlog("node %d deploys %s rev %" PRIu64 " artifact %u%s scope '%s' electorate %u%s", n,
	     svc_name[svc], r.rev, k, W.art_bad[k] ? " (bad)" : "", r.scope, ne,
	     force ? " --force" : "");
	pidx = pool_add_rec(&r, false);
	merge_rec(n, pidx, true);
	publish(n, EV_REC, pidx, 0);
}

/* `agentctl rollback [--to T]` on node @n: its vote, if it may cast one. */
static void op_rollback(int n, int svc, int64_t want_target)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *d = agree_desired(s->log, s->nlog, nd->site), *t;
	struct store_vote vs[MAXN];
	uint64_t target = 0, tg;
	uint32_t round;
	size_t nv;

	if (!nd->synced) {
		W.st.unsynced_refusals++;
		return;
	}
	if (!d || d->rev + 1 >= MAXREV)
		return;
	if (!agree_in_electorate(d, nd->id)) {
		W.st.op_refused_joiner++; /* joined after the revision: not its voter */
		return;
	}
	if (want_target < 0 && chance(0.3) && d->rev > 1)
		want_target = (int64_t)rnd_range(1, d->rev - 1);
	if (want_target > 0) {
		t = log_at(s, (uint64_t)want_target);
		if (t && (uint64_t)want_target < d->rev && agree_scope_covers(t->scope, d->scope) &&
		    memcmp(&t->artifact, &d->artifact, sizeof(t->artifact)) != 0) {
			target = (uint64_t)want_target;
			W.st.to_votes++;
		}
	}
	nv = gather(n, svc, d->rev, vs);
	if (agree_next_vote(d, vs, nv, nd->id, target, &round, &tg) != AGREE_VOTE_NEW)
		return; /* already voted in this round: one vote per round */
	W.st.op_votes++;
	cast(n, svc, d->rev, STORE_VOTE_OPERATOR, round, tg);
}

static void op_local(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	uint64_t t;

	if (s->has_local || hlc_now(&nd->hlc, wall(n), &t) < 0)
		return;
	if (agree_local_rollback(s->log, s->nlog, svc_name[svc], nd->site, 0, t, &s->local) < 0)
		return;
	s->has_local = true;
	W.st.local_rb++;
	vlog("node %d rollback --local %s (rev %" PRIu64 " -> artifact %u)", n, svc_name[svc],
	     s->local.base_rev, art_index(&s->local.artifact));
	reconcile(n, svc);
}

/*
 * A byzantine injector: rollbacks of a node's current revision that no quorum decided, sent to
 * every node, which must all refuse them: 0. real electorate and rule, certificate one short of
 * the quorum, padded with joiners and a stranger; 1. the quorum of real electors but an
 * electorate that does not contain them; 2. a stricter rule than its certificate meets;
 * 3. the quorum with one elector listed twice. (A forgery consistent with itself, naming an
 * electorate of its own choosing, needs the cluster key and is accepted: the residual risk of
 * agree.h rule 6, closed by signed votes.)
 */
static void op_forge(void)
{
	int n = random_alive(), svc = (int)(rnd() % NSVC), kind = (int)(rnd() % 4), pidx;
	const struct store_revision *d;
	struct store_revision r;
	uint32_t q, nc = 0;

	if (n < 0)
		return;
	d = agree_desired(W.nodes[n].s[svc].log, W.nodes[n].s[svc].nlog, W.nodes[n].site);
	if (!d || d->rev + 1 >= MAXREV || d->nelect < 2)
		return;
	q = agree_quorum_size(&d->quorum, d->nelect);
	if (q < 2 || q >= d->nelect)
		return; /* the shapes below need 2 <= quorum < electorate */
	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "%s", svc_name[svc]);
	r.rev = d->rev + 1;
	r.kind = STORE_REV_ROLLBACK;
	r.artifact = make_art(MAXART - 1);
	memcpy(r.scope, d->scope, sizeof(r.scope));
	r.hlc = d->hlc + 1;
	r.operator_uid = UINT32_MAX;
	r.quorum = d->quorum;
	r.condemns = d->artifact;
	r.nelect = d->nelect;
	r.elect = malloc((size_t)d->nelect * STORE_NODE_ID_LEN);
	r.cert = malloc((size_t)(d->nelect + 4) * STORE_NODE_ID_LEN);
	if (!r.elect || !r.cert)
		exit(2);
	memcpy(r.elect, d->elect, (size_t)d->nelect * STORE_NODE_ID_LEN);
	if (kind == 0) {
		uint8_t pad[4][STORE_NODE_ID_LEN];
		int np = 0;

		for (uint32_t i = 0; i + 1 < q; i++)
			memcpy(r.cert[nc++], d->elect[i], STORE_NODE_ID_LEN);
		for (int j = 0; j < W.n && np < 3; j++) /* joiners: not electors */
			if (!agree_in_electorate(d, W.nodes[j].id))
				memcpy(pad[np++], W.nodes[j].id, STORE_NODE_ID_LEN);
		memset(pad[np], 0xee, STORE_NODE_ID_LEN);
		np++;
		for (int i = 0; i < np; i++) { /* keep the certificate sorted: insert */
			uint32_t at = nc;

			while (at > 0 && memcmp(r.cert[at - 1], pad[i], STORE_NODE_ID_LEN) > 0)
				at--;
			if (at > 0 && memcmp(r.cert[at - 1], pad[i], STORE_NODE_ID_LEN) == 0)
				continue;
			memmove(r.cert[at + 1], r.cert[at], (size_t)(nc - at) * STORE_NODE_ID_LEN);
			memcpy(r.cert[at], pad[i], STORE_NODE_ID_LEN);
			nc++;
		}
	} else if (kind == 1) {
		/* the quorum of real electors, but an electorate that does not contain them */
		for (uint32_t i = 0; i < q; i++)
			memcpy(r.cert[nc++], d->elect[i], STORE_NODE_ID_LEN);
		r.nelect = d->nelect - q;
		memmove(r.elect, d->elect[q], (size_t)r.nelect * STORE_NODE_ID_LEN);
		if (!r.nelect) {
			memset(r.elect[0], 0xee, STORE_NODE_ID_LEN);
			r.nelect = 1;
		}
	} else if (kind == 2) {
		/* one short of a stricter rule it claims itself */
		for (uint32_t i = 0; i < q; i++)
			memcpy(r.cert[nc++], d->elect[i], STORE_NODE_ID_LEN);
		r.quorum = (struct store_quorum){AGREE_QUORUM_COUNT, q + 1, 0, 0};
	} else {
		/* the quorum, with one elector listed twice instead of a real one */
		for (uint32_t i = 0; i + 1 < q; i++)
			memcpy(r.cert[nc++], d->elect[i], STORE_NODE_ID_LEN);
		memcpy(r.cert[nc], r.cert[nc - 1], STORE_NODE_ID_LEN);
		nc++;
	}
	r.ncert = nc;
	pidx = pool_add_rec(&r, true);
	W.st.forged_sent++;
	for (int i = 0; i < W.n; i++) {
		if (!alive(i))
			continue;
		schedule(W.now + rnd_range(1, 50), EV_REC, i, pidx, (uint64_t)i, 0);
	}
}

/* Operators on the two sides of a partition ask for rollbacks of one revision to different
 * targets (one "previous", the other an explicit --to). */
static void op_split(void)
{
	int a = -1, b = -1, svc = (int)(rnd() % NSVC);
	const struct store_revision *da, *db;

	if (W.phase >= 2)
		return;
	for (int tries = 0; tries < 32 && (a < 0 || b < 0); tries++) {
		int k = random_alive();

		if (k < 0 || !W.nodes[k].synced)
			continue;
		if (W.side[k] == 0 && a < 0)
			a = k;
		else if (W.side[k] == 1 && b < 0)
			b = k;
	}
	if (a < 0 || b < 0)
		return;
	da = agree_desired(W.nodes[a].s[svc].log, W.nodes[a].s[svc].nlog, W.nodes[a].site);
	db = agree_desired(W.nodes[b].s[svc].log, W.nodes[b].s[svc].nlog, W.nodes[b].site);
	if (!da || !db || da->rev != db->rev || da->hlc != db->hlc || da->rev < 2)
		return;
	W.st.split_ops++;
	vlog("split: node %d asks %s rev %" PRIu64 " -> previous, node %d -> --to 1", a,
	     svc_name[svc], da->rev, b);
	op_rollback(a, svc, 0);
	op_rollback(b, svc, 1);
}


static uint64_t op_interval(void)
{
	return W.phase == 0 ? rnd_range(30 * SEC, 5 * MIN) : rnd_range(5 * MIN, 40 * MIN);
}

static void on_op(int kind)
{
	int n, svc;
	uint64_t p;

	if (W.phase >= 2)
		return;
	if (kind == OP_FORGE) {
		op_forge();
		return;
	}
	schedule(W.now + op_interval(), EV_OP, -1, OP_RANDOM, 0, 0);
	n = random_alive();
	if (n < 0)
		return;
	svc = (int)(rnd() % NSVC);
	p = rnd() % 100;
	if (p < 55)
		op_deploy(n, svc);
	else if (p < 92)
		op_rollback(n, svc, -1);
	else
		op_local(n, svc);
}

static void on_chaos(int kind, int n)
{
	switch (kind) {
	case CH_PARTITION:
		if (W.phase != 0)
			return;
		if (W.partitioned)
			heal();
		else
			partition(false);
		schedule(W.now + rnd_range(2 * MIN, 15 * MIN), EV_CHAOS, -1, CH_PARTITION, 0, 0);
		break;
	case CH_LONG: /* phase B: a partition longer than the reap time, then a heal */
		if (W.phase != 1)
			return;
		if (W.partitioned) {
			heal();
			return;
		}
		partition(true);
		schedule(W.now + rnd_range(REAP + 30 * MIN, 5 * HOUR), EV_CHAOS, -1, CH_LONG, 0, 0);
		for (int i = 0; i < 3; i++)
			schedule(W.now + rnd_range(5 * MIN, REAP + 20 * MIN), EV_SPLIT, -1, 0, 0, 0);
		break;
	case CH_CRASH:
		if (W.phase >= 2)
			return;
		n = random_alive();
		if (n >= 0 && n != W.away) {
			crash(n);
			/* some stay down for good (until phase C, or until removed) */
			if (chance(0.85))
				schedule(W.now + (W.phase == 0 ? rnd_range(10 * SEC, 10 * MIN)
							       : rnd_range(10 * MIN, 2 * HOUR)),
					 EV_RESTART, n, 0, 0, 0);
		}
		schedule(W.now + (W.phase == 0 ? rnd_range(3 * MIN, 20 * MIN)
					       : rnd_range(30 * MIN, 2 * HOUR)),
			 EV_CHAOS, -1, CH_CRASH, 0, 0);
		break;
	case CH_LEAVE:
		if (n < 0)
			n = random_alive();
		if (n >= 0 && n != W.away && alive(n) && !leave(n) && W.phase < 2)
			schedule(W.now + MIN, EV_CHAOS, n, CH_LEAVE, 0, 0);
		break;
	case CH_JOIN:
		if (W.phase >= 2)
			return;
		join();
		schedule(W.now + (W.phase == 0 ? rnd_range(5 * MIN, 40 * MIN)
					       : rnd_range(20 * MIN, 2 * HOUR)),
			 EV_CHAOS, -1, CH_JOIN, 0, 0);
		break;
	case CH_STOP:
#ifdef SIM_AGREE_GOSSIP
		simg_stop(G, (unsigned)n);
#endif
		break;
	case CH_KILLCORE:
#ifdef SIM_AGREE_GOSSIP
		if (!W.nodes[n].up)
			simg_crash(G, (unsigned)n);
#endif
		break;
	case CH_REMOVE:
		if (W.phase >= 2)
			return;
		op_remove();
		schedule(W.now + rnd_range(40 * MIN, 4 * HOUR), EV_CHAOS, -1, CH_REMOVE, 0, 0);
		break;
	}
}

static void on_health(int n, int svc, uint64_t rev, uint64_t since)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *bad;
	struct store_vote vs[MAXN];
	uint32_t round;
	uint64_t target;
	size_t nv;

	if (!alive(n) || !s->running || s->has_local || s->run_rev != rev ||
	    s->run_since != since || !W.art_bad[art_index(&s->run_art)])
		return;
	if (!nd->synced) { /* it will judge once it may */
		schedule(W.now + DEADLINE, EV_HEALTH, n, svc, rev, since);
		return;
	}
	bad = log_at(s, rev);
	if (!bad || (log_at(s, rev + 1) && log_at(s, rev + 1)->kind == STORE_REV_ROLLBACK))
		return;
	nv = gather(n, svc, rev, vs);
	if (agree_next_vote(bad, vs, nv, nd->id, 0, &round, &target) == AGREE_VOTE_NEW) {
		W.st.health_votes++;
		cast(n, svc, rev, STORE_VOTE_HEALTH, round, target);
	}
}

static void on_phase(int phase)
{
	W.phase = phase;
	if (phase == 1) {
		if (W.nodes[W.away].up)
			crash(W.away);
		vlog("phase B: node %d away for %.0f h; a long partition comes", W.away,
		     (double)PHASE_B / HOUR);
		if (W.partitioned)
			heal();
		schedule(W.now + rnd_range(5 * MIN, 30 * MIN), EV_CHAOS, -1, CH_LONG, 0, 0);
		schedule(W.now + PHASE_B, EV_PHASE, -1, 2, 0, 0);
	} else if (phase == 2) {
		heal();
		for (int i = 0; i < W.n; i++)
			restart(i);
		W.away_back = W.now;
		vlog("phase C: healed, everyone back");
		schedule(W.now + PHASE_C, EV_PHASE, -1, 3, 0, 0);
	}
}

/* ---- final checks ------------------------------------------------------------------------ */

static void final_checks(void)
{
	int ref = -1;

	for (int i = 0; i < W.n; i++) {
		if (!alive(i))
			continue;
		if (!W.nodes[i].synced)
			fail("node %d never completed a full exchange", i);
		if (ref < 0)
			ref = i;
	}
	if (ref < 0)
		return;
	for (int i = 0; i < W.n; i++) {
		if (!alive(i) || i == ref)
			continue;
		if (memcmp(W.nodes[i].roster, W.nodes[ref].roster, sizeof(W.nodes[i].roster)))
			fail("after healing nodes %d and %d hold different rosters", i, ref);
	}
	/* Would a deploy of artifact k without --force be refused (the log condemns it, or the
	 * store flag is set)? The same answer everywhere is issue 11's item 6; with brain.c's
	 * mirror it is not always (counted: seeds, and artifacts on which nodes disagree). */
	{
		bool diverged = false;

		for (uint32_t k = 1; k < W.nart; k++) {
			struct store_id id = make_art(k);
			int yes = 0, no = 0;

			for (int i = 0; i < W.n; i++) {
				bool refused = get_cond(&W.nodes[i], k);

				if (!alive(i))
					continue;
				for (int svc = 0; svc < NSVC && !refused; svc++)
					refused = agree_check_deploy(W.nodes[i].s[svc].log,
								     W.nodes[i].s[svc].nlog, &id,
								     false) < 0;
				if (refused)
					yes++;
				else
					no++;
			}
			if (yes && no) {
				diverged = true;
				W.st.force_disagree++;
			}
		}
		if (diverged) {
			W.st.mirror_diverged++;
			vlog("nodes disagree on which artifacts need --force (store flags)");
		}
	}
	for (int j = 0; j < W.n; j++) {
		if (W.nodes[ref].roster[j] == (W.truly_gone[j] ? R_GONE : R_MEMBER))
			continue;
		/* a departure known only to nodes that then left or were removed themselves
		 * before passing it on: the others keep the member (liveness, not safety) */
		if (W.truly_gone[j] && W.nodes[ref].roster[j] == R_MEMBER)
			W.st.departures_lost++;
		else
			fail("roster of node %d has node %d as %d", ref, j, W.nodes[ref].roster[j]);
	}
	for (int svc = 0; svc < NSVC; svc++) {
		struct svc_state *a = &W.nodes[ref].s[svc];
		const struct store_revision *dref = NULL;

		for (int i = 0; i < W.n; i++) {
			struct svc_state *b = &W.nodes[i].s[svc];
			const struct store_revision *d;
			struct store_id eff;
			int r;

			if (!alive(i))
				continue;
			if (a->nlog != b->nlog) {
				fail("after healing node %d holds %zu %s revisions, node %d %zu", i,
				     b->nlog, svc_name[svc], ref, a->nlog);
				continue;
			}
			for (size_t k = 0; k < a->nlog; k++)
				if (agree_revision_cmp(&a->log[k], &b->log[k]) != 0 && W.verbose)
					vlog("rev %" PRIu64 ": node %d holds %s art %u hlc %" PRIu64
					     " cert %u, node %d holds %s art %u hlc %" PRIu64 " cert %u",
					     a->log[k].rev, ref, a->log[k].kind ? "rollback" : "deploy",
					     art_index(&a->log[k].artifact), a->log[k].hlc,
					     a->log[k].ncert, i, b->log[k].kind ? "rollback" : "deploy",
					     art_index(&b->log[k].artifact), b->log[k].hlc,
					     b->log[k].ncert);
			for (size_t k = 0; k < a->nlog; k++)
				if (agree_revision_cmp(&a->log[k], &b->log[k]) != 0)
					fail("after healing nodes %d, %d differ at %s rev %" PRIu64, i,
					     ref, svc_name[svc], b->log[k].rev);
			if (a->digest != b->digest && W.verbose)
				for (int k = 0; k < MAXREV + 2; k++)
					for (int j = 0; j < W.n; j++)
						if (a->vp[k][j] != b->vp[k][j])
							vlog("rev %d voter %d: %d vs %d", k, j,
							     a->vp[k][j], b->vp[k][j]);
			if (a->digest != b->digest)
				fail("after healing nodes %d and %d hold different %s votes", i, ref,
				     svc_name[svc]);
			for (uint32_t k = 1; k < W.nart; k++) {
				struct store_id id = make_art(k);

				if (agree_is_condemned(a->log, a->nlog, &id, UINT64_MAX) !=
				    agree_is_condemned(b->log, b->nlog, &id, UINT64_MAX))
					fail("artifact %u condemned on node %d, not on %d", k, ref, i);
			}
			d = agree_desired(b->log, b->nlog, W.nodes[i].site);
			if (!d) {
				fail("node %d has no desired %s revision", i, svc_name[svc]);
				continue;
			}
			if (svc == 0) {
				if (!dref)
					dref = d;
				else if (d->rev != dref->rev)
					fail("node %d desires %s rev %" PRIu64 ", others %" PRIu64,
					     i, svc_name[svc], d->rev, dref->rev);
			}
			r = agree_effective(b->log, b->nlog, W.nodes[i].site,
					    b->has_local ? &b->local : NULL, &eff);
			if (r < 0 || !b->running || memcmp(&eff, &b->run_art, sizeof(eff)) != 0)
				fail("node %d does not run its effective %s artifact", i,
				     svc_name[svc]);
		}
		/* invariant 4: votes that can still resolve have resolved */
		for (size_t k = 0; k < a->nlog; k++) {
			const struct store_revision *bad = &a->log[k], *next;
			struct store_vote vs[MAXN];
			struct agree_tally t;
			uint32_t up = 0, round;
			uint64_t target;
			size_t nv = gather(ref, svc, bad->rev, vs);

			next = log_at(a, bad->rev + 1);
			if (!nv || (next && next->kind == STORE_REV_ROLLBACK) ||
			    bad->rev + 1 >= MAXREV)
				continue;
			for (int i = 0; i < W.n; i++)
				if (alive(i) && agree_in_electorate(bad, W.nodes[i].id))
					up++;
			if (2 * up <= bad->nelect)
				continue;
			if (agree_tally(bad, vs, nv, &t) < 0)
				continue;
			if (t.decided)
				continue; /* decided, the record could not be built (gap, target) */
			if (t.stuck)
				fail("%s rev %" PRIu64 ": round %u still stuck after healing (%u of "
				     "%u up)", svc_name[svc], bad->rev, t.round, up, bad->nelect);
			for (int i = 0; i < W.n; i++) {
				int r;

				if (!alive(i))
					continue;
				r = agree_next_vote(bad, vs, nv, W.nodes[i].id, 0, &round, &target);
				if (r == AGREE_VOTE_BEHIND || r == AGREE_VOTE_STUCK)
					fail("%s rev %" PRIu64 ": node %d still has a vote to cast "
					     "(%d) after healing", svc_name[svc], bad->rev, i, r);
			}
		}
	}
	if (!W.away_caught_up && alive(W.away))
		fail("node %d, away for %.0f h, did not catch up within phase C", W.away,
		     (double)PHASE_B / HOUR);
}

/* ---- one seed ---------------------------------------------------------------------------- */

static bool deliverable(const struct event *e)
{
	return alive(e->node) && (e->a == (uint64_t)e->node || connected((int)e->a, e->node));
}

#ifdef SIM_AGREE_GOSSIP
static void follow_clock(struct simg *g)
{
	if (simg_now(g) > W.now)
		W.now = simg_now(g);
}

/* A gossip record arrived at @obs: a revision, a vote or a roster change by its index. */
static void hook_record(void *ud, struct simg *g, unsigned obs, const struct gossip_record *r)
{
	uint32_t v[2];

	(void)ud;
	follow_clock(g);
	if (obs >= (unsigned)W.n || !alive((int)obs) || r->value_len != sizeof(v) ||
	    r->key_len < 1)
		return;
	memcpy(v, r->value, sizeof(v));
	if (r->key[0] == 'r' && v[0] < W.nrecs)
		merge_rec((int)obs, (int)v[0], true);
	else if (r->key[0] == 'v' && v[0] < W.nvotes)
		merge_vote((int)obs, (int)v[0], true);
	else if (r->key[0] == 'm' && v[0] < (uint32_t)W.n && v[1] <= R_GONE)
		merge_roster((int)obs, (int)v[0], (uint8_t)v[1], true);
	else
		fail("node %u got a record it cannot read", obs);
}

/* The core of @obs sees a member alive: that is its liveness view (reaping, reconnects). */
static void hook_member(void *ud, struct simg *g, unsigned obs, const struct gossip_member *m)
{
	int who = simg_index(g, m->id);

	(void)ud;
	follow_clock(g);
	if (who < 0 || who >= W.n || obs >= (unsigned)W.n || m->self)
		return;
	if (m->state == GOSSIP_ALIVE)
		W.nodes[obs].heard[who] = W.now;
}

/* Real gossip cores for the founding nodes; returns when their membership has converged. */
static uint64_t gossip_start(uint64_t seed, int n0)
{
	struct simg_opts o;
	struct simg_hooks h = {hook_member, hook_record, NULL};

	memset(&o, 0, sizeof(o));
	gossip_config_default(&o.cfg);
	o.cfg.probe_interval_ms = 5000; /* coarse timers: hours of virtual time stay cheap */
	o.cfg.probe_timeout_ms = 1000;
	o.cfg.gossip_interval_ms = 1000;
	o.max_nodes = MAXN;
	o.seed = seed + 1;
	o.delay_ms = 5;
	o.jitter_ms = 300;
	o.loss = W.loss;
	o.sync_interval_ms = 30000;
	o.quiet = true;
	G = simg_new(&o);
	if (!G) {
		fprintf(stderr, "simg_new failed\n");
		exit(2);
	}
	simg_set_hooks(G, &h);
	for (int i = 0; i < n0; i++) {
		if (simg_spawn(G, i ? 0 : -1) != i) {
			fprintf(stderr, "simg_spawn failed\n");
			exit(2);
		}
		memcpy(W.nodes[i].id, simg_id(G, (unsigned)i), STORE_NODE_ID_LEN);
	}
	if (!simg_run_until_pred(G, simg_converged, NULL, 100, 120000))
		fail("gossip cores did not converge at start");
	return simg_now(G);
}
#endif

static void world_free(void)
{
	for (size_t i = 0; i < W.nrecs; i++) {
		free(W.recs[i].r.cert);
		free(W.recs[i].r.elect);
		free(W.recs[i].r.cert_sigs);
		free(W.recs[i].r.elect_keys);
	}
	free(W.recs);
	free(W.votes);
	free(W.heap);
#ifdef SIM_AGREE_GOSSIP
	simg_free(G);
	G = NULL;
#endif
}

static void add_stats(struct stats *t, const struct stats *s)
{
	const uint64_t *a = (const uint64_t *)s;
	uint64_t *b = (uint64_t *)t;

	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		if (&b[i] == &t->max_round || &b[i] == &t->catchup_ms)
			b[i] = a[i] > b[i] ? a[i] : b[i];
		else
			b[i] += a[i];
}

static int run_seed(uint64_t seed, bool verbose, struct stats *total)
{
	unsigned long long nevents = 0;
	int n0, failed;

	memset(&W, 0, sizeof(W));
	W.seed = seed;
	W.verbose = verbose;
	rng_s = seed * 0x2545f4914f6cdd1dULL + 1;
	n0 = (int)rnd_range(4, 7);
	W.loss = (double)rnd_range(0, 30) / 100.0;
	W.settle = rnd_range(2 * SEC, 20 * SEC);
	W.gate_restart = chance(0.5);
	cfg_kind = chance(0.5) ? 0 : chance(0.8) ? 1 : 2;
	if (cfg_kind)
		W.st.mismatched_seeds++;
	W.away = (int)(rnd() % (uint64_t)n0);
	W.nart = 1;
	W.n = n0;
	for (int i = 0; i < n0; i++)
		init_node(i);
#ifdef SIM_AGREE_GOSSIP
	W.now = gossip_start(seed, n0);
	for (int i = 0; i < n0; i++)
		for (int j = 0; j < MAXN; j++)
			W.nodes[i].heard[j] = W.now;
#endif
	for (int i = 0; i < n0; i++) {
		W.nodes[i].synced = true; /* the founding members bootstrap together */
		for (int j = 0; j < n0; j++)
			W.nodes[i].roster[j] = R_MEMBER;
	}
	/* rev 1 of each service: a good artifact, known to all */
	for (int svc = 0; svc < NSVC; svc++)
		op_deploy(0, svc);
	for (uint32_t k = 1; k < W.nart; k++)
		W.art_bad[k] = false;
	for (int svc = 0; svc < NSVC; svc++)
		for (int i = 1; i < n0; i++)
			merge_rec(i, W.nodes[0].s[svc].lp[0], false);
	schedule(PHASE_A, EV_PHASE, -1, 1, 0, 0);
	schedule(rnd_range(10 * SEC, 3 * MIN), EV_OP, -1, OP_RANDOM, 0, 0);
	for (int i = 0; i < 5; i++)
		schedule(rnd_range(1 * MIN, PHASE_A + PHASE_B), EV_OP, -1, OP_FORGE, 0, 0);
	schedule(rnd_range(2 * MIN, 20 * MIN), EV_CHAOS, -1, CH_PARTITION, 0, 0);
	schedule(rnd_range(2 * MIN, 20 * MIN), EV_CHAOS, -1, CH_CRASH, 0, 0);
	schedule(rnd_range(2 * MIN, 30 * MIN), EV_CHAOS, -1, CH_JOIN, 0, 0);
	schedule(rnd_range(20 * MIN, 2 * HOUR), EV_CHAOS, -1, CH_REMOVE, 0, 0);
	if (chance(0.25))
		schedule(rnd_range(1 * MIN, PHASE_A - MIN), EV_CHAOS, -1, CH_LEAVE, 0, 0);
	schedule(5 * SEC, EV_AE, -1, 0, 0, 0);

	while (W.nheap && W.phase < 3 && W.failed < 5) {
		struct event e;

#ifdef SIM_AGREE_GOSSIP
		/* the cores run up to our next event; their callbacks may schedule earlier ones */
		simg_run_until(G, W.heap[0].t);
#endif
		e = pop();

		if (++nevents > 5000000) {
			fail("event storm: %llu events, the cluster does not settle", nevents);
			break;
		}
		if (e.t > W.now)
			W.now = e.t;
		switch (e.type) {
		case EV_REC:
			if (deliverable(&e)) {
				W.nodes[e.node].heard[e.a] = W.now;
				merge_rec(e.node, e.idx, true);
			}
			break;
		case EV_VOTE:
			if (deliverable(&e)) {
				W.nodes[e.node].heard[e.a] = W.now;
				merge_vote(e.node, e.idx, true);
			}
			break;
		case EV_ROSTER:
			if (deliverable(&e)) {
				W.nodes[e.node].heard[e.a] = W.now;
				merge_roster(e.node, e.idx, (uint8_t)e.b, true);
			}
			break;
		case EV_HEALTH:
			on_health(e.node, e.idx, e.a, e.b);
			break;
		case EV_AE:
			on_ae();
			break;
		case EV_OP:
			on_op(e.idx);
			break;
		case EV_CHAOS:
			on_chaos(e.idx, e.node);
			break;
		case EV_PHASE:
			on_phase(e.idx);
			break;
		case EV_SETTLE:
			on_settle(e.node, e.idx, e.a);
			break;
		case EV_SYNC:
			on_sync(e.node, e.idx);
			break;
		case EV_RESTART:
			if (W.phase < 2 && e.node != W.away)
				restart(e.node);
			break;
		case EV_SPLIT:
			if (W.partitioned)
				op_split();
			break;
		}
	}
	if (!W.failed)
		final_checks();
	for (int i = 0; i < W.n; i++)
		for (int j = 0; j < W.n; j++)
			if (alive(i) && j != i && W.nodes[i].roster[j] == R_MEMBER && reaped(i, j))
				W.st.reaped++;
	if (verbose || W.failed)
		printf("seed %" PRIu64 ": n=%d->%d loss=%.2f settle=%.0fs gate=%d cfg=%d deploys=%"
		       PRIu64 " decisions=%" PRIu64 " max round %" PRIu64 " joins=%" PRIu64
		       " removals=%" PRIu64 " kills=%" PRIu64 "%s\n",
		       seed, n0, W.n, W.loss, (double)W.settle / 1000.0, W.gate_restart, cfg_kind,
		       W.st.deploys, W.st.decisions, W.st.max_round, W.st.joins, W.st.removals,
		       W.st.kill_between, W.failed ? " FAILED" : "");
	failed = W.failed;
	W.st.seeds = 1;
	W.st.failures = failed ? 1 : 0;
	add_stats(total, &W.st);
	world_free();
	return failed;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SEED"), *base_env = getenv("SEED_BASE");
	uint64_t base = base_env ? strtoull(base_env, NULL, 0) : 0, nseeds = DEFAULT_SEEDS, s;
	bool table = getenv("SIM_TABLE") != NULL;
	struct stats t = {0};
	struct timespec t0, t1;
	double secs;

	if (argc > 1)
		nseeds = strtoull(argv[1], NULL, 0);
	if (env) {
		s = strtoull(env, NULL, 0);
		printf("sim_agree: replaying seed %" PRIu64 "\n", s);
		return run_seed(s, true, &t) ? 1 : 0;
	}
	printf("sim_agree: seeds %" PRIu64 "..%" PRIu64 " (SEED=n replays one)\n", base,
	       base + nseeds - 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (s = base; s < base + nseeds; s++)
		if (run_seed(s, false, &t) && t.failures >= 3 && !table)
			break;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("deploys %" PRIu64 " (forced %" PRIu64 ", %" PRIu64 " with a permissive rule), "
	       "decisions %" PRIu64 ", rollbacks written %" PRIu64 " (%" PRIu64
	       " during a partition)\n",
	       t.deploys, t.forced, t.unsafe_rule_records, t.decisions, t.rollbacks_written,
	       t.rollbacks_partition);
	printf("votes: operator %" PRIu64 " (--to %" PRIu64 ", split requests %" PRIu64
	       "), echoes %" PRIu64 ", health %" PRIu64 ", re-casts behind %" PRIu64
	       " / stuck %" PRIu64 ", max round %" PRIu64 ", stuck rounds later decided %" PRIu64
	       "\n",
	       t.op_votes, t.to_votes, t.split_ops, t.echo_votes, t.health_votes,
	       t.recast_behind, t.recast_stuck, t.max_round, t.splits_resolved);
	printf("membership: joins %" PRIu64 " (%" PRIu64 " on a minority side), leaves %" PRIu64
	       ", removals %" PRIu64 ", crashes %" PRIu64 " (%" PRIu64
	       " between persisting and gossiping a vote), gated restarts %" PRIu64
	       ", refused before the first exchange %" PRIu64 ", operator votes refused to "
	       "non-electors %" PRIu64 ", departures lost with the only nodes that knew them %"
	       PRIu64 "\n",
	       t.joins, t.joins_minority, t.leaves, t.removals, t.crashes, t.kill_between,
	       t.gated_restarts, t.unsynced_refusals, t.op_refused_joiner, t.departures_lost);
	printf("network: partitions %" PRIu64 " (%" PRIu64 " longer than the reap time), "
	       "reconnect attempts to reaped members %" PRIu64 ", messages %" PRIu64
	       ", anti-entropy exchanges %" PRIu64 "\n",
	       t.partitions, t.long_partitions, t.reconnects, t.msgs, t.ae_runs);
	printf("forged rollbacks refused %" PRIu64 "/%" PRIu64 ", certificates refused %" PRIu64
	       ", deploys displaced %" PRIu64 ", decisions waiting on the log %" PRIu64
	       ", seeds with mismatched --quorum %" PRIu64 "\n",
	       t.forged_refused, t.forged_sent, t.cert_refused, t.displaced, t.gaps,
	       t.mismatched_seeds);
	printf("rollbacks of one record with different previous-good artifacts (settled by rule "
	       "1) %" PRIu64 ", of different records at one rev %" PRIu64 ", the same decision on "
	       "both sides of a partition %" PRIu64 ", different decisions under a permissive "
	       "rule %" PRIu64 "\n",
	       t.target_disagree, t.contested, t.both_sides_same, t.unsafe_divergent);
	printf("with brain.c's store mirror of condemnation (set on adopting a rollback, cleared "
	       "only by the origin of a forced deploy): seeds ending with nodes that disagree on "
	       "whether a deploy needs --force %" PRIu64 ", artifacts concerned %" PRIu64 "\n",
	       t.mirror_diverged, t.force_disagree);
	if (table) {
		printf("\n| seeds | failures | decisions | re-cast votes (behind/stuck) | max round "
		       "| stuck rounds resolved | joins | removals | kills between vote and "
		       "gossip | time |\n|---|---|---|---|---|---|---|---|---|---|\n");
		printf("| %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " (%" PRIu64 "/%" PRIu64
		       ") | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
		       " | %.1f s |\n",
		       t.seeds, t.failures, t.decisions, t.recast_behind + t.recast_stuck,
		       t.recast_behind, t.recast_stuck, t.max_round, t.splits_resolved, t.joins,
		       t.removals, t.kill_between, secs);
	}
	printf("%" PRIu64 " seeds in %.1f s\n", t.seeds, secs);
	/* The run must have exercised what it claims to check. */
	if (!t.failures && t.seeds >= 100 &&
	    (t.decisions == 0 || t.rollbacks_partition == 0 || t.forged_sent == 0 ||
	     t.forged_refused < t.forged_sent || t.to_votes == 0 || t.leaves == 0 ||
	     t.joins_minority == 0 || t.removals == 0 || t.kill_between == 0 ||
	     t.recast_stuck == 0 || t.recast_behind == 0 || t.splits_resolved == 0 ||
	     t.long_partitions == 0 || t.unsafe_rule_records == 0 || t.op_refused_joiner == 0)) {
		printf("FAIL: the run did not exercise decisions, partitions, forgeries, --to, "
		       "leaves, minority joins, removals, kills, re-casts, split resolution, long "
		       "partitions, permissive rules, joiners refused\n");
		return 1;
	}
	if (t.failures) {
		printf("FAIL: %" PRIu64 " seed(s) failed\n", t.failures);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
