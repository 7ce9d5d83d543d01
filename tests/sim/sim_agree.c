/*
 * tests/sim/sim_agree.c: a deterministic cluster simulator for the agreement core
 * (agent/agree.h) and the hybrid logical clock (agent/hlc.h).
 *
 * Every seed builds a cluster of 5..9 nodes in two sites and plays three phases on a virtual
 * clock (no real time, no threads, everything drawn from the seed):
 *
 *   A. chaos, 2 h: operators deploy (some artifacts are bad, some redeploys of old ones with
 *      or without --force, some scoped to one site), ask for rollbacks (with and without
 *      --to), roll back locally; the network loses messages (0..30 %), delays them
 *      (5..800 ms), partitions into two random sides and heals; nodes crash and restart; one
 *      node may leave for good; a "byzantine" injector sends rollbacks with certificates that
 *      are too small or padded with strangers, duplicates and departed members. Some seeds
 *      give one node a clock 90 minutes fast.
 *   B. one simulated day: one node is down for all of it while the others keep deploying,
 *      partitioning and crashing, more slowly.
 *   C. the network heals, every node restarts, operators stop: 1 h.
 *
 * Two builds of this file (tests/sim/agree.cmake):
 *
 *   sim_agree_chaos (1000 seeds): dissemination modelled simply. A node that learns something
 *     new pushes it to 3 random peers (each copy lost with the seed's loss rate, delayed at
 *     random, dropped when the two are partitioned or the receiver is down) and relays what
 *     it learns the same way; every few seconds a random connected pair runs anti-entropy (a
 *     full exchange of records, votes and departures, skipped when their digests agree).
 *     Membership views follow crashes at once (DEAD, still eligible) and departures by gossip.
 *   sim_agree_gossip (-DSIM_AGREE_GOSSIP, 6 seeds by default): every revision, vote and
 *     departure travels through REAL gossip cores (gossip/gossip.h) on the gossip simulator
 *     harness (tests/sim/sim_gossip_harness.h): SWIM probing, piggybacked dissemination,
 *     pushes, anti-entropy, crash/restart with persisted records; each node's membership view
 *     is what its own core reports. Coarse SWIM timers, and 6 hours away instead of a day,
 *     keep a seed near a second under ASan.
 *
 * Nodes keep their log, votes and clock across crashes (they live in LMDB in agentd).
 *
 * Each node runs what agentd's reconciler runs: agree_accept on every record, agree_tally /
 * agree_decide when votes change, agree_effective to choose what to run, a health vote
 * against its revision when the artifact is (ground truth) bad and has run for the health
 * deadline, an echo of operator votes for its current revision.
 *
 * Asserted on every seed (the simulator knows the ground truth):
 *   1. no rollback takes effect without a quorum certificate: every rollback any node writes
 *      names only voters that really voted on that revision, at least a strict majority of
 *      the members of its scope that had not left; forged records are never adopted;
 *   2. the two sides of a partition never commit different decisions for the same
 *      revision: every rollback ever written for (service, rev), on any node, on any side, is
 *      the same decision (agree_revision_same);
 *   3. after the network heals every node holds the same log (byte for byte, certificates
 *      included) and reaches the same desired revision for every service (per site for site
 *      scoped revisions), and runs it unless it diverged with --local;
 *   4. the node back after a simulated day catches up (within phase C, without help).
 *
 * Usage: sim_agree_chaos|sim_agree_gossip [SEEDS] (default 1000 / 6); SEED=n replays one seed
 * verbosely;
 * SEED_BASE=n starts elsewhere. A failure prints the seed and how to replay it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agree/agree.h"
#include "agent/base/hlc.h"

#define MAXN	  9
#define NSVC	  2
#ifdef SIM_AGREE_GOSSIP
/*
 * Gossip mode: the same nodes, but every revision, vote and departure travels through real
 * gossip cores (gossip/gossip.h) on the gossip simulator harness (packets, SWIM probing,
 * piggybacked dissemination, anti-entropy), and each node's membership view is what its own
 * core reports (alive, suspect, dead, left). Coarse timers keep a simulated day affordable.
 */
#include "tests/sim/sim_gossip_harness.h"
static struct simg *G;
#endif
#define MAXREV	  160
#define SEC	  1000ULL
#define MIN	  (60 * SEC)
#define HOUR	  (60 * MIN)
#define DAY	  (24 * HOUR)
#ifdef SIM_AGREE_GOSSIP
#define DEFAULT_SEEDS 6
#define PHASE_A	  HOUR		   /* chaos */
#define AWAY	  (6 * HOUR)	   /* a real day of SWIM timers costs too much per seed */
#define PHASE_C	  HOUR		   /* healed */
#else
#define DEFAULT_SEEDS 1000
#define PHASE_A	  (2 * HOUR)
#define AWAY	  DAY
#define PHASE_C	  HOUR
#endif
#define WALL0	  1764000000000ULL /* virtual time 0 on the nodes' wall clocks */
#define DEADLINE  (60 * SEC)	   /* health deadline */
#define FANOUT	  3

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

struct vbucket {		/* the votes a node holds on one (service, rev) */
	struct agree_vote v[MAXN];
	int pidx[MAXN];		/* pool index of each vote */
	uint8_t n;
	bool voted[MAXN];	/* by voter index */
};

struct svc_state {
	struct store_revision log[MAXREV]; /* winners, sorted by rev; cert borrowed from pool */
	int pool[MAXREV];		    /* pool index of each log entry */
	size_t nlog;
	struct vbucket vb[MAXREV + 2];
	uint32_t nvotes;
	uint64_t max_vote_rev;		    /* highest rev with a vote held */
	uint64_t digest;		    /* xor of hashes of (record, cert) and votes */
	bool pending[MAXREV + 2];	    /* revs with votes and no decision yet */
	bool needs_log[MAXREV + 2];	    /* ...whose last attempt wanted more of the log */
	/* what runs */
	bool running;
	uint64_t run_rev;
	struct store_id run_art;
	uint64_t run_since;
	bool has_local;
	struct agree_local local;
};

struct node {
	uint8_t id[STORE_NODE_ID_LEN];
	const char *site;
	bool up, left, away;
	int64_t skew;
	struct hlc hlc;
	struct agree_member view[MAXN];
	struct svc_state s[NSVC];
	uint32_t member_digest;
};

/* Every record ever created, immutable, referenced by index (messages, logs). */
struct prec {
	struct store_revision r;
	bool forged;
};

struct pvote {
	struct agree_vote v;
	int voter;
	int svc;
};

enum ev_type { EV_REC, EV_VOTE, EV_LEFT, EV_HEALTH, EV_AE, EV_OP, EV_CHAOS, EV_PHASE };

struct event {
	uint64_t t, seq;
	enum ev_type type;
	int node;	/* receiver / subject */
	int idx;	/* pool index / svc / left node */
	uint64_t a, b;	/* health: rev, since */
};

#define MAXW 24
struct written {
	int n;
	struct {
		int pidx, side;
		unsigned epoch;	/* 0 = not partitioned */
	} w[MAXW];
};

struct stats {
	unsigned deploys, forced, rollbacks_written, rollbacks_partition, op_votes, to_votes;
	unsigned health_votes, forged_sent, forged_refused, cert_refused, displaced, local_rb;
	unsigned drift_refused, leaves, crashes, partitions, gaps, msgs, ae_runs;
	unsigned target_disagree, contested, both_sides_same;
	uint64_t catchup_ms;
};

struct world {
	int n;
	struct node nodes[MAXN];
	int side[MAXN];		/* partition side */
	bool partitioned;
	double loss;
	uint64_t now, seq;
	int phase;
	int away;		/* the node down for a day */
	uint64_t away_back;	/* when it came back */
	bool away_caught_up;
	/* event heap */
	struct event *heap;
	size_t nheap, capheap;
	/* pools */
	struct prec *recs;
	size_t nrecs, caprecs;
	struct pvote *votes;
	size_t nvotes, capvotes;
	/* ground truth */
	bool truth_voted[NSVC][MAXREV + 2][MAXN];
	uint64_t truth_target[NSVC][MAXREV + 2][MAXN];
	uint64_t truth_subject[NSVC][MAXREV + 2][MAXN];	/* hlc of the record voted against */
	struct written written[NSVC][MAXREV + 2]; /* rollbacks written per (service, rev) */
	unsigned epoch;		/* partition epoch, bumped at every partition */
	bool truly_left[MAXN];
	uint32_t nart;
	bool art_bad[4096];
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
	fprintf(stderr, "\n  replay: SEED=%" PRIu64 " %s\n", W.seed, "sim_agree");
	W.failed++;
}

static void vlog(const char *fmt, ...)
{
	va_list ap;

	if (!W.verbose)
		return;
	printf("%8.1fs ", (double)W.now / 1000.0);
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
	return k;
}

static int node_of(const uint8_t id[STORE_NODE_ID_LEN])
{
	int i;

	for (i = 0; i < W.n; i++)
		if (memcmp(W.nodes[i].id, id, STORE_NODE_ID_LEN) == 0)
			return i;
	return -1;
}

static bool connected(int a, int b)
{
	return W.nodes[a].up && W.nodes[b].up && (!W.partitioned || W.side[a] == W.side[b]);
}

static uint64_t hash64(const void *p, size_t len, uint64_t h)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t rec_hash(const struct store_revision *r)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	h = hash64(&r->rev, sizeof(r->rev), h);
	h = hash64(&r->kind, sizeof(r->kind), h);
	h = hash64(&r->hlc, sizeof(r->hlc), h);
	h = hash64(r->origin, sizeof(r->origin), h);
	h = hash64(r->artifact.b, sizeof(r->artifact.b), h);
	h = hash64(&r->ncert, sizeof(r->ncert), h);
	if (r->ncert)
		h = hash64(r->cert, r->ncert * (size_t)STORE_NODE_ID_LEN, h);
	return h;
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

/* ---- dissemination ----------------------------------------------------------------------- */

static void send_to(int from, int to, enum ev_type type, int idx)
{
	W.st.msgs++;
	if (!connected(from, to) || chance(W.loss))
		return;
	schedule(W.now + rnd_range(5, 800), type, to, idx, (uint64_t)from, 0);
}

/* Push to FANOUT random peers (the agent's immediate push of new records). */
static void push(int from, enum ev_type type, int idx)
{
#ifdef SIM_AGREE_GOSSIP
	/* gossip relays by itself; only originators publish (see publish) */
	(void)from, (void)type, (void)idx;
	return;
#endif
	int k, tries = 0, sent = 0;
	bool used[MAXN] = {false};

	used[from] = true;
	while (sent < FANOUT && tries++ < 4 * W.n) {
		k = (int)(rnd() % (uint64_t)W.n);
		if (used[k] || W.nodes[k].left)
			continue;
		used[k] = true;
		send_to(from, k, type, idx);
		sent++;
	}
}

/* A node originates a record or a vote: in gossip mode it becomes its own gossip record. */
static void publish(int n, enum ev_type type, int idx)
{
#ifdef SIM_AGREE_GOSSIP
	char key[32];
	uint32_t v = (uint32_t)idx;

	snprintf(key, sizeof(key), "%c/%d", type == EV_REC ? 'r' : 'v', idx);
	if (simg_put(G, (unsigned)n, key, 1, &v, sizeof(v)) < 0)
		fail("node %d could not publish %s", n, key);
#else
	(void)n, (void)type, (void)idx;
#endif
}

/* ---- checks against the ground truth ----------------------------------------------------- */

/*
 * Invariant 1 at creation: the certificate names real voters, who voted against the record
 * this rollback undoes, a strict majority of the scope's members that had not left (or left
 * after voting).
 */
static void check_cert_truth(int svc, const struct store_revision *r)
{
	uint64_t bad = r->rev - 1;
	uint32_t i, good = 0, elig = 0;
	bool in_cert[MAXN] = {false};
	int v;

	for (i = 0; i < r->ncert; i++) {
		v = node_of(r->cert[i]);
		if (v < 0 || !W.truth_voted[svc][bad][v]) {
			fail("%s rev %" PRIu64 ": cert names node %d that never voted on it",
			     svc_name[svc], r->rev, v);
			continue;
		}
		/* ...against this very record, not another one that held the rev somewhere */
		if (W.truth_subject[svc][bad][v] + 1 != r->hlc) {
			fail("%s rev %" PRIu64 ": cert counts node %d, which voted against another "
			     "record at rev %" PRIu64, svc_name[svc], r->rev, v, bad);
			continue;
		}
		if (!in_cert[v])
			good++;
		in_cert[v] = true;
	}
	for (v = 0; v < W.n; v++)
		if (agree_scope_includes(r->scope, W.nodes[v].site) &&
		    (!W.truly_left[v] || in_cert[v]))
			elig++;
	if (good < elig / 2 + 1)
		fail("%s rev %" PRIu64 ": rollback with %u true voters of %u eligible",
		     svc_name[svc], r->rev, good, elig);
}

/*
 * Invariant 2. Every rollback written about one record (the same subject: hlc = its hlc + 1)
 * must carry the same decision (scope, operator target). Its artifact, the previous good one,
 * comes from the writer's log below the bad rev and may differ while two writers' logs differ
 * (concurrent deploys below it not merged yet): counted, then settled by rule 1 (checked at
 * the end). What must never happen: two sides of one partition both writing a rollback of the
 * same rev and scope but different records (only a side with a majority of the scope can
 * decide), or different decisions (artifacts) written while partitioned. Both sides writing
 * the SAME decision is fine: votes cast before the split reach both sides, and the two
 * quorums intersect in them.
 */
static void check_same_decision(int svc, int pidx, int writer)
{
	const struct store_revision *r = &W.recs[pidx].r;
	struct written *wr = &W.written[svc][r->rev];
	unsigned epoch = W.partitioned ? W.epoch : 0;
	int side = W.side[writer], i;

	for (i = 0; i < wr->n; i++) {
		const struct store_revision *o = &W.recs[wr->w[i].pidx].r;
		bool split = epoch && wr->w[i].epoch == epoch && wr->w[i].side != side;

		if (o->hlc == r->hlc) {
			if (strcmp(o->scope, r->scope) || strcmp(o->reason, r->reason))
				fail("%s rev %" PRIu64 ": two decisions on one record: '%s', '%s'",
				     svc_name[svc], r->rev, o->reason, r->reason);
			else if (!agree_revision_same(o, r)) {
				W.st.target_disagree++;
				vlog("%s rev %" PRIu64 ": target disagreement, artifact %u vs %u",
				     svc_name[svc], r->rev, art_index(&o->artifact),
				     art_index(&r->artifact));
				if (split || (epoch && wr->w[i].epoch == epoch))
					fail("%s rev %" PRIu64 ": rollback targets %u and %u "
					     "written during one partition", svc_name[svc], r->rev,
					     art_index(&o->artifact), art_index(&r->artifact));
			} else if (split) {
				/* the same decision on both sides: votes cast before the split
				 * reached both; the quorums intersect in them. Fine. */
				W.st.both_sides_same++;
			}
		} else {
			W.st.contested++;
			if (split && strcmp(o->scope, r->scope) == 0)
				fail("%s rev %" PRIu64 ": both sides of a partition rolled back "
				     "(different records, one scope '%s')", svc_name[svc], r->rev,
				     r->scope);
		}
	}
	if (wr->n < MAXW) {
		wr->w[wr->n].pidx = pidx;
		wr->w[wr->n].side = side;
		wr->w[wr->n].epoch = epoch;
		wr->n++;
	}
}

/* ---- node logic -------------------------------------------------------------------------- */

static void try_decide(int n, int svc, uint64_t rev);

static void reconcile(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	struct store_id art;
	int r;

	r = agree_effective(s->log, s->nlog, nd->site, s->has_local ? &s->local : NULL, &art);
	if (r == 0 && s->has_local) {
		vlog("node %d %s: local marker stale, following the cluster", n, svc_name[svc]);
		s->has_local = false;
	}
	if (r < 0)
		return;
	{
		const struct store_revision *d = agree_desired(s->log, s->nlog, nd->site);
		uint64_t rev = r == 1 ? s->local.base_rev : d->rev;

		if (s->running && s->run_rev == rev && memcmp(&s->run_art, &art, sizeof(art)) == 0)
			return;
		s->running = true;
		s->run_rev = rev;
		s->run_art = art;
		s->run_since = W.now;
		/* watch health only when running the cluster's revision itself */
		if (r == 0)
			schedule(W.now + DEADLINE, EV_HEALTH, n, svc, rev, W.now);
	}
}

static void cast_vote(int n, int svc, uint64_t rev, enum store_vote_reason reason,
		      uint64_t target)
{
	struct node *nd = &W.nodes[n];
	struct pvote pv;
	uint64_t t;

	if (W.truth_voted[svc][rev][n])
		return; /* one vote per (service, rev) per node, even before it reaches itself */
	if (W.nvotes == W.capvotes) {
		W.capvotes = W.capvotes ? 2 * W.capvotes : 256;
		W.votes = xrealloc(W.votes, W.capvotes * sizeof(*W.votes));
	}
	memset(&pv, 0, sizeof(pv));
	snprintf(pv.v.v.service, sizeof(pv.v.v.service), "%s", svc_name[svc]);
	pv.v.v.rev = rev;
	memcpy(pv.v.v.voter, nd->id, STORE_NODE_ID_LEN);
	pv.v.v.reason = reason;
	if (hlc_now(&nd->hlc, wall(n), &t) < 0)
		fail("hlc_now failed");
	pv.v.v.hlc = t;
	/* the vote condemns the record this node holds (and runs) at that rev */
	pv.v.subject = log_at(&nd->s[svc], rev)->hlc;
	pv.v.target = target;
	pv.voter = n;
	pv.svc = svc;
	W.votes[W.nvotes] = pv;
	W.truth_voted[svc][rev][n] = true;
	W.truth_target[svc][rev][n] = target;
	W.truth_subject[svc][rev][n] = pv.v.subject;
	vlog("node %d votes %s rev %" PRIu64 " (%s, to %" PRIu64 ")", n, svc_name[svc], rev,
	     reason == STORE_VOTE_HEALTH ? "health" : "operator", target);
	W.nvotes++;
	/* deliver to itself first: same path as a received vote */
	schedule(W.now, EV_VOTE, n, (int)(W.nvotes - 1), (uint64_t)n, 0);
	publish(n, EV_VOTE, (int)(W.nvotes - 1));
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

/* Merge record @pidx into node @n. Returns true when the log changed. */
static bool merge_rec(int n, int pidx, bool relay)
{
	struct node *nd = &W.nodes[n];
	const struct store_revision *in = &W.recs[pidx].r;
	int svc = strcmp(in->service, svc_name[0]) == 0 ? 0 : 1;
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *held;
	size_t pos;
	int r, rr;
	uint64_t k, inrev;

	held = log_at(s, in->rev);
	if (held && s->pool[held - s->log] == pidx)
		return false; /* the very record held: nothing to do (anti-entropy repeats) */
	rr = hlc_update(&nd->hlc, wall(n), in->hlc, NULL);
	if (rr == -ERANGE)
		W.st.drift_refused++;
	if (in->rev >= MAXREV) {
		fail("rev %" PRIu64 " beyond the simulator's table", in->rev);
		return false;
	}
	r = agree_accept(s->log, s->nlog, nd->view, (size_t)W.n, NULL, in);
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
		fail("node %d adopted a forged rollback of %s rev %" PRIu64 " (cert %u)", n,
		     svc_name[svc], in->rev, in->ncert);
		return false;
	}
	held = log_at(s, in->rev);
	if (held) {
		pos = (size_t)(held - s->log);
		s->digest ^= rec_hash(held);
		if (held->kind == STORE_REV_DEPLOY && in->kind == STORE_REV_ROLLBACK)
			W.st.displaced++;
	} else {
		for (pos = s->nlog; pos > 0 && s->log[pos - 1].rev > in->rev; pos--)
			;
		memmove(&s->log[pos + 1], &s->log[pos], (s->nlog - pos) * sizeof(s->log[0]));
		memmove(&s->pool[pos + 1], &s->pool[pos], (s->nlog - pos) * sizeof(s->pool[0]));
		s->nlog++;
	}
	s->log[pos] = *in;
	s->pool[pos] = pidx;
	s->digest ^= rec_hash(in);
	if (relay)
		push(n, EV_REC, pidx);
	/* A record may complete a pending decision: a new record at that rev (a new subject), or
	 * one below a decision that was waiting for the log (a hole, a target). */
	inrev = in->rev; /* try_decide may grow the pool under @in */
	for (k = inrev; k <= log_max_rev(s) + 1 && k < MAXREV; k++)
		if (s->pending[k] && (k == inrev || s->needs_log[k]))
			try_decide(n, svc, k);
	reconcile(n, svc);
	return true;
}

static bool merge_vote(int n, int vidx, bool relay)
{
	struct node *nd = &W.nodes[n];
	const struct pvote pvc = W.votes[vidx], *pv = &pvc; /* cast_vote may move the pool */
	struct svc_state *s = &nd->s[pv->svc];
	struct vbucket *b = &s->vb[pv->v.v.rev];
	const struct store_revision *d;

	if (b->voted[pv->voter])
		return false;
	if (hlc_update(&nd->hlc, wall(n), pv->v.v.hlc, NULL) == -ERANGE)
		W.st.drift_refused++;
	b->voted[pv->voter] = true;
	b->v[b->n] = pv->v;
	b->pidx[b->n] = vidx;
	b->n++;
	if (pv->v.v.rev > s->max_vote_rev)
		s->max_vote_rev = pv->v.v.rev;
	s->nvotes++;
	s->digest ^= hash64(&vidx, sizeof(vidx), 0x5bd1e995);
	if (relay)
		push(n, EV_VOTE, vidx);
	/* echo an operator's request for the revision this node runs */
	d = agree_desired(s->log, s->nlog, nd->site);
	if (pv->v.v.reason == STORE_VOTE_OPERATOR && n != pv->voter && d &&
	    d->rev == pv->v.v.rev && !b->voted[n] && !s->has_local)
		cast_vote(n, pv->svc, pv->v.v.rev, STORE_VOTE_OPERATOR, pv->v.target);
	s->pending[pv->v.v.rev] = true;
	try_decide(n, pv->svc, pv->v.v.rev);
	return true;
}

static void merge_left(int n, int who)
{
	struct node *nd = &W.nodes[n];
	int svc;
	uint64_t k;

	if (nd->view[who].state == AGREE_LEFT)
		return;
	nd->view[who].state = AGREE_LEFT;
	nd->member_digest |= 1u << who;
	push(n, EV_LEFT, who);
	for (svc = 0; svc < NSVC; svc++)
		for (k = 1; k < MAXREV; k++)
			if (nd->s[svc].pending[k])
				try_decide(n, svc, k);
}

static void try_decide(int n, int svc, uint64_t rev)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	struct vbucket *b = &s->vb[rev];
	const struct store_revision *next = log_at(s, rev + 1);
	struct store_revision out;
	int r, pidx;
	bool part = W.partitioned;

	if (next && next->kind == STORE_REV_ROLLBACK) {
		s->pending[rev] = false; /* decided (by us or anyone) */
		return;
	}
	if (b->n == 0)
		return;
	if (rev + 1 >= MAXREV)
		return;
	r = agree_decide(s->log, s->nlog, nd->view, (size_t)W.n, NULL, svc_name[svc], rev, b->v,
			 b->n, &out);
	if (r == -AGREE_EGAP)
		W.st.gaps++;
	s->needs_log[rev] = r < 0 && r != -AGREE_ENOQUORUM;
	if (r < 0)
		return;
	pidx = pool_add_rec(&out, false);
	W.st.rollbacks_written++;
	if (part)
		W.st.rollbacks_partition++;
	vlog("node %d writes rollback %s rev %" PRIu64 " -> artifact %u (cert %u)%s", n,
	     svc_name[svc], out.rev, art_index(&out.artifact), out.ncert,
	     part ? " [partitioned]" : "");
	check_cert_truth(svc, &out);
	check_same_decision(svc, pidx, n);
	s->pending[rev] = false;
	merge_rec(n, pidx, true);
	publish(n, EV_REC, pidx);
}

/* ---- operator actions -------------------------------------------------------------------- */

static int random_up_node(void)
{
	int k, tries;

	for (tries = 0; tries < 32; tries++) {
		k = (int)(rnd() % (uint64_t)W.n);
		if (W.nodes[k].up && !W.nodes[k].left)
			return k;
	}
	return -1;
}

static void op_deploy(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	struct store_revision r;
	uint32_t k;
	bool force = false;
	uint64_t t;
	int pidx;

	if (log_max_rev(s) + 2 >= MAXREV - 4)
		return;
	if (chance(0.15) && W.nart > 2) {
		/* redeploy an older artifact; condemned ones need --force */
		struct store_id old;

		k = (uint32_t)rnd_range(1, W.nart - 1);
		old = make_art(k);
		if (agree_check_deploy(s->log, s->nlog, &old, false) == -STORE_ECONDEMNED) {
			if (!chance(0.5))
				return; /* the operator gives up: refused without --force */
			force = true;
			W.st.forced++;
		}
	} else {
		k = W.nart++;
		W.art_bad[k] = chance(0.35);
	}
	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "%s", svc_name[svc]);
	r.rev = log_max_rev(s) + 1;
	r.artifact = make_art(k);
	r.kind = STORE_REV_DEPLOY;
	if (svc == 1 && chance(0.4))
		snprintf(r.scope, sizeof(r.scope), "site:%s", chance(0.5) ? "a" : "b");
	memcpy(r.origin, nd->id, STORE_NODE_ID_LEN);
	if (hlc_now(&nd->hlc, wall(n), &t) < 0)
		fail("hlc_now");
	r.hlc = t;
	r.operator_uid = 1000;
	r.operator_pid = (int32_t)rnd_range(100, 99999);
	snprintf(r.reason, sizeof(r.reason), "deploy%s", force ? " --force" : "");
	W.st.deploys++;
	vlog("node %d deploys %s rev %" PRIu64 " artifact %u%s scope '%s'%s", n, svc_name[svc],
	     r.rev, k, W.art_bad[k] ? " (bad)" : "", r.scope, force ? " --force" : "");
	pidx = pool_add_rec(&r, false);
	merge_rec(n, pidx, true);
	publish(n, EV_REC, pidx);
}

static void op_rollback(int n, int svc)
{
	struct node *nd = &W.nodes[n];
	struct svc_state *s = &nd->s[svc];
	const struct store_revision *d = agree_desired(s->log, s->nlog, nd->site), *t;
	uint64_t target = 0;

	if (!d || s->vb[d->rev].voted[n] || d->rev + 1 >= MAXREV)
		return;
	if (chance(0.3) && d->rev > 1) {
		/* --to REV: only a rev this node can check is usable (agentctl refuses others) */
		uint64_t cand = rnd_range(1, d->rev - 1);

		t = log_at(s, cand);
		if (t && agree_scope_covers(t->scope, d->scope) &&
		    memcmp(&t->artifact, &d->artifact, sizeof(t->artifact)) != 0) {
			target = cand;
			W.st.to_votes++;
		}
	}
	W.st.op_votes++;
	cast_vote(n, svc, d->rev, STORE_VOTE_OPERATOR, target);
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

/* A byzantine injector: a rollback of a node's current revision with a certificate that is
 * short of the quorum, padded with duplicates, strangers and departed members. */
static void op_forge(void)
{
	int n = random_up_node(), svc = (int)(rnd() % NSVC), i, k, pidx;
	const struct store_revision *d;
	struct store_revision r;
	uint32_t elig = 0, nleft = 0, real, ncert = 0;

	if (n < 0)
		return;
	d = agree_desired(W.nodes[n].s[svc].log, W.nodes[n].s[svc].nlog, W.nodes[n].site);
	if (!d || d->rev + 1 >= MAXREV)
		return;
	for (i = 0; i < W.n; i++)
		if (agree_scope_includes(d->scope, W.nodes[i].site)) {
			if (!W.truly_left[i])
				elig++;
			else
				nleft++;
		}
	/*
	 * Short of the quorum however it is read: the departed members it names count on both
	 * sides (agree.h rule 6), so real + nleft <= (elig + nleft) / 2; when even 0 real voters
	 * cannot satisfy that, name no departed member.
	 */
	if ((elig + nleft) / 2 < 2 * nleft)
		nleft = 0;
	real = (uint32_t)rnd_range(0, (elig + nleft) / 2 - nleft);
	memset(&r, 0, sizeof(r));
	snprintf(r.service, sizeof(r.service), "%s", svc_name[svc]);
	r.rev = d->rev + 1;
	r.kind = STORE_REV_ROLLBACK;
	r.artifact = make_art(0x7fff);
	memcpy(r.scope, d->scope, sizeof(r.scope));
	r.hlc = d->hlc + 1;
	r.operator_uid = UINT32_MAX;
	r.cert = calloc(real * 2 + 4 + (size_t)W.n, STORE_NODE_ID_LEN);
	if (!r.cert)
		exit(2);
	for (i = 0, k = 0; i < W.n && (uint32_t)k < real; i++)
		if (agree_scope_includes(d->scope, W.nodes[i].site) && !W.truly_left[i]) {
			memcpy(r.cert[ncert++], W.nodes[i].id, STORE_NODE_ID_LEN);
			k++;
		}
	for (i = 0; i < (int)real; i++) /* duplicates */
		memcpy(r.cert[ncert++], r.cert[i], STORE_NODE_ID_LEN);
	for (i = 0; i < 3; i++) { /* strangers */
		memset(r.cert[ncert], 0xee, STORE_NODE_ID_LEN);
		r.cert[ncert++][0] = (uint8_t)i;
	}
	for (i = 0; i < W.n && nleft; i++) /* departed members (of the scope, or not) */
		if (W.truly_left[i])
			memcpy(r.cert[ncert++], W.nodes[i].id, STORE_NODE_ID_LEN);
	r.ncert = ncert;
	pidx = pool_add_rec(&r, true);
	W.st.forged_sent++;
	for (i = 0; i < W.n; i++)
		if (W.nodes[i].up)
			schedule(W.now + rnd_range(1, 50), EV_REC, i, pidx, (uint64_t)i, 0);
}

/* ---- anti-entropy ------------------------------------------------------------------------ */

static bool same_state(int a, int b)
{
	int svc;

	if (W.nodes[a].member_digest != W.nodes[b].member_digest)
		return false;
	for (svc = 0; svc < NSVC; svc++) {
		struct svc_state *x = &W.nodes[a].s[svc], *y = &W.nodes[b].s[svc];

		if (x->nlog != y->nlog || x->nvotes != y->nvotes || x->digest != y->digest)
			return false;
	}
	return true;
}

static void sync_into(int from, int to)
{
	struct node *f = &W.nodes[from];
	int svc, i;
	size_t k, j;

	for (i = 0; i < W.n; i++)
		if (f->view[i].state == AGREE_LEFT)
			merge_left(to, i);
	for (svc = 0; svc < NSVC; svc++) {
		struct svc_state *s = &f->s[svc];

		for (k = 0; k < s->nlog; k++)
			merge_rec(to, s->pool[k], false);
		for (k = 1; k <= s->max_vote_rev; k++)
			for (j = 0; j < s->vb[k].n; j++) {
				int vidx = s->vb[k].pidx[j];

				if (!W.nodes[to].s[svc].vb[k].voted[W.votes[vidx].voter])
					merge_vote(to, vidx, false);
			}
	}
}

static void anti_entropy(void)
{
	int a = random_up_node(), b, tries;

#ifdef SIM_AGREE_GOSSIP
	return; /* the harness runs the gossip cores' own anti-entropy */
#endif
	if (a < 0)
		return;
	for (tries = 0; tries < 16; tries++) {
		b = (int)(rnd() % (uint64_t)W.n);
		if (b != a && !W.nodes[b].left && connected(a, b))
			break;
	}
	if (tries == 16)
		return;
	W.st.ae_runs++;
	if (same_state(a, b))
		return;
	sync_into(a, b);
	sync_into(b, a);
}

/* The network heals (gossip mode: every node back in one group). */
static void heal(void)
{
	W.partitioned = false;
#ifdef SIM_AGREE_GOSSIP
	for (int i = 0; i < W.n; i++)
		simg_set_group(G, (unsigned)i, 0);
#endif
}

/* ---- chaos ------------------------------------------------------------------------------- */

static void crash(int n)
{
	int i;

	W.nodes[n].up = false;
	W.st.crashes++;
#ifdef SIM_AGREE_GOSSIP
	simg_crash(G, (unsigned)n);
	(void)i;
	vlog("node %d crashes", n);
	return; /* views change when the cores notice */
#endif
	for (i = 0; i < W.n; i++)
		if (W.nodes[i].view[n].state != AGREE_LEFT)
			W.nodes[i].view[n].state = AGREE_DEAD; /* dead still counts as a voter */
	vlog("node %d crashes", n);
}

static void restart(int n)
{
	int i, svc;

	if (W.nodes[n].left || W.nodes[n].up)
		return;
	W.nodes[n].up = true;
#ifdef SIM_AGREE_GOSSIP
	(void)i;
	if (simg_restart(G, (unsigned)n) < 0)
		fail("node %d does not restart", n);
#else
	for (i = 0; i < W.n; i++)
		if (W.nodes[i].view[n].state != AGREE_LEFT)
			W.nodes[i].view[n].state = AGREE_ALIVE;
#endif
	for (svc = 0; svc < NSVC; svc++) {
		W.nodes[n].s[svc].running = false; /* the reconciler re-checks what runs */
		reconcile(n, svc);
	}
	vlog("node %d restarts", n);
}

static void leave(int n)
{
	int i;

	W.nodes[n].left = true;
	W.truly_left[n] = true;
	W.st.leaves++;
	vlog("node %d leaves", n);
#ifdef SIM_AGREE_GOSSIP
	simg_leave(G, (unsigned)n); /* the core announces it; stopped a little later */
	schedule(W.now + 10 * SEC, EV_CHAOS, n, 4, 0, 0);
	W.nodes[n].up = false;
	(void)i;
	return;
#endif
	merge_left(n, n);
	for (i = 0; i < W.n; i++)
		if (i != n)
			send_to(n, i, EV_LEFT, n);
	W.nodes[n].up = false;
}

static void partition(void)
{
	int i, ones = 0;

	for (i = 0; i < W.n; i++) {
		W.side[i] = (int)(rnd() % 2);
		ones += W.side[i];
	}
	if (ones == 0 || ones == W.n)
		W.side[0] ^= 1;
#ifdef SIM_AGREE_GOSSIP
	for (i = 0; i < W.n; i++)
		simg_set_group(G, (unsigned)i, W.side[i]);
#endif
	W.partitioned = true;
	W.epoch++;
	W.st.partitions++;
	vlog("partition");
}

enum { CHAOS_PARTITION = 0, CHAOS_CRASH = 1, CHAOS_RESTART = 2, CHAOS_LEAVE = 3, CHAOS_STOP = 4 };
enum { OP_RANDOM = 0, OP_FORGE = 1 };

static uint64_t op_interval(void)
{
	return W.phase == 0 ? rnd_range(30 * SEC, 5 * MIN) : rnd_range(20 * MIN, 3 * HOUR);
}

static void on_chaos(int kind, int n)
{
	switch (kind) {
	case CHAOS_PARTITION:
		if (W.phase >= 2)
			return;
		if (W.partitioned) {
			heal();
			vlog("heal");
		} else {
			partition();
		}
		schedule(W.now + (W.phase == 0 ? rnd_range(2 * MIN, 15 * MIN)
					       : rnd_range(1 * HOUR, 6 * HOUR)),
			 EV_CHAOS, -1, CHAOS_PARTITION, 0, 0);
		break;
	case CHAOS_CRASH:
		if (W.phase >= 2)
			return;
		n = random_up_node();
		if (n >= 0 && n != W.away) {
			crash(n);
			schedule(W.now + (W.phase == 0 ? rnd_range(10 * SEC, 10 * MIN)
						       : rnd_range(10 * MIN, 3 * HOUR)),
				 EV_CHAOS, n, CHAOS_RESTART, 0, 0);
		}
		schedule(W.now + (W.phase == 0 ? rnd_range(3 * MIN, 20 * MIN)
					       : rnd_range(1 * HOUR, 8 * HOUR)),
			 EV_CHAOS, -1, CHAOS_CRASH, 0, 0);
		break;
	case CHAOS_RESTART:
		if (n != W.away || W.phase >= 2)
			restart(n);
		break;
	case CHAOS_LEAVE:
		n = random_up_node();
		if (n >= 0 && n != W.away)
			leave(n);
		break;
	case CHAOS_STOP:
#ifdef SIM_AGREE_GOSSIP
		simg_stop(G, (unsigned)n);
#endif
		break;
	}
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
	n = random_up_node();
	if (n < 0)
		return;
	svc = (int)(rnd() % NSVC);
	p = rnd() % 100;
	if (p < 60)
		op_deploy(n, svc);
	else if (p < 93)
		op_rollback(n, svc);
	else
		op_local(n, svc);
}

static void on_health(int n, int svc, uint64_t rev, uint64_t since)
{
	struct svc_state *s = &W.nodes[n].s[svc];

	if (!W.nodes[n].up || !s->running || s->has_local || s->run_rev != rev ||
	    s->run_since != since || !W.art_bad[art_index(&s->run_art)] || s->vb[rev].voted[n])
		return;
	W.st.health_votes++;
	cast_vote(n, svc, rev, STORE_VOTE_HEALTH, 0);
}

static bool caught_up(int n)
{
	int i;

	for (i = 0; i < W.n; i++)
		if (i != n && !W.nodes[i].left && !same_state(n, i))
			return false;
	return true;
}

static void on_phase(int phase)
{
	int i;

	W.phase = phase;
	if (phase == 1) {
		/* the day away: this node misses everything for 24 h */
		if (W.nodes[W.away].up)
			crash(W.away);
		vlog("phase B: node %d away for a day", W.away);
		schedule(W.now + AWAY, EV_PHASE, -1, 2, 0, 0);
	} else if (phase == 2) {
		heal();
		for (i = 0; i < W.n; i++)
			restart(i);
		W.away_back = W.now;
		vlog("phase C: healed, everyone back");
		schedule(W.now + PHASE_C, EV_PHASE, -1, 3, 0, 0);
	}
}

static void on_ae(void)
{
	anti_entropy();
	if (W.phase == 2 && !W.away_caught_up && W.nodes[W.away].up && caught_up(W.away)) {
		W.away_caught_up = true;
		W.st.catchup_ms = W.now - W.away_back;
	}
	if (W.phase < 3)
		schedule(W.now + (W.phase == 1 ? 60 * SEC : 5 * SEC), EV_AE, -1, 0, 0, 0);
}

/* ---- final checks ------------------------------------------------------------------------ */

static void final_checks(void)
{
	int ref = -1, i, svc;
	size_t k;

	for (i = 0; i < W.n; i++)
		if (!W.nodes[i].left) {
			ref = i;
			break;
		}
	if (ref < 0)
		return;
	for (svc = 0; svc < NSVC; svc++) {
		const struct store_revision *dref = NULL;

		for (i = 0; i < W.n; i++) {
			struct svc_state *a = &W.nodes[ref].s[svc], *b = &W.nodes[i].s[svc];
			const struct store_revision *d;
			struct store_id eff;
			int r;

			if (W.nodes[i].left)
				continue;
			if (a->nlog != b->nlog) {
				fail("after healing node %d holds %zu %s revisions, node %d %zu", i,
				     b->nlog, svc_name[svc], ref, a->nlog);
				continue;
			}
			for (k = 0; k < a->nlog; k++)
				if (agree_revision_cmp(&a->log[k], &b->log[k]) != 0)
					fail("after healing nodes %d, %d differ at %s rev %" PRIu64
					     " / %" PRIu64, i, ref, svc_name[svc], b->log[k].rev,
					     a->log[k].rev);
			if (a->nvotes != b->nvotes)
				fail("after healing node %d holds %u votes on %s, node %d %u", i,
				     b->nvotes, svc_name[svc], ref, a->nvotes);
			/* same desired revision: everywhere for the cluster-wide service, per site
			 * for the one with site-scoped revisions */
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
			} else {
				int j;

				for (j = 0; j < i; j++) {
					struct node *nj = &W.nodes[j];
					const struct store_revision *dj;

					if (nj->left || strcmp(nj->site, W.nodes[i].site))
						continue;
					dj = agree_desired(nj->s[svc].log, nj->s[svc].nlog,
							   nj->site);
					if (dj->rev != d->rev)
						fail("site %s: node %d desires %s rev %" PRIu64
						     ", node %d %" PRIu64, W.nodes[i].site, i,
						     svc_name[svc], d->rev, j, dj->rev);
				}
			}
			/* and runs it (or its --local marker) */
			r = agree_effective(b->log, b->nlog, W.nodes[i].site,
					    b->has_local ? &b->local : NULL, &eff);
			if (r < 0 || !b->running || memcmp(&eff, &b->run_art, sizeof(eff)) != 0)
				fail("node %d does not run its effective %s artifact", i,
				     svc_name[svc]);
		}
	}
	if (!W.away_caught_up && !W.nodes[W.away].left)
		fail("node %d, away for a day, did not catch up within phase C", W.away);
}

/* ---- one seed ---------------------------------------------------------------------------- */

#ifdef SIM_AGREE_GOSSIP
static void follow_clock(struct simg *s)
{
	if (simg_now(s) > W.now)
		W.now = simg_now(s);
}

/* A gossip record arrived at @obs: its value is the pool index of a revision or a vote. */
static void hook_record(void *ud, struct simg *s, unsigned obs, const struct gossip_record *r)
{
	uint32_t idx;

	follow_clock(s);
	if (obs >= (unsigned)W.n || !W.nodes[obs].up || W.nodes[obs].left || r->value_len != 4 ||
	    r->key_len < 1)
		return;
	memcpy(&idx, r->value, sizeof(idx));
	if (r->key[0] == 'r' && idx < W.nrecs)
		merge_rec((int)obs, (int)idx, true);
	else if (r->key[0] == 'v' && idx < W.nvotes)
		merge_vote((int)obs, (int)idx, true);
	else
		fail("node %u got a record it cannot read", obs);
}

/* The core of @obs changed its mind about a member: that is @obs's view for agreement. */
static void hook_member(void *ud, struct simg *s, unsigned obs, const struct gossip_member *m)
{
	int who = simg_index(s, m->id);
	struct agree_member *v;

	follow_clock(s);
	if (who < 0 || who >= W.n || m->self || obs >= (unsigned)W.n || W.nodes[obs].left)
		return;
	v = &W.nodes[obs].view[who];
	if (m->state == GOSSIP_LEFT)
		merge_left((int)obs, who);
	else if (v->state != AGREE_LEFT)
		v->state = m->state == GOSSIP_ALIVE	 ? AGREE_ALIVE
			   : m->state == GOSSIP_SUSPECT ? AGREE_SUSPECT
							 : AGREE_DEAD;
}

/* Real gossip cores for the seed's nodes; returns when their membership has converged. */
static uint64_t gossip_start(uint64_t seed)
{
	struct simg_opts o;
	struct simg_hooks h = {hook_member, hook_record, NULL};
	int i;

	memset(&o, 0, sizeof(o));
	gossip_config_default(&o.cfg);
	o.cfg.probe_interval_ms = 5000; /* coarse timers: hours of virtual time stay cheap */
	o.cfg.probe_timeout_ms = 1000;
	o.cfg.gossip_interval_ms = 1000;
	o.max_nodes = (unsigned)W.n;
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
	for (i = 0; i < W.n; i++) {
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

/* A message arrives if its receiver is up and, unless it is to itself, still connected. */
static bool deliverable(const struct event *e)
{
	return W.nodes[e->node].up &&
	       (e->a == (uint64_t)e->node || connected((int)e->a, e->node));
}

static void world_free(void)
{
	size_t i;

	for (i = 0; i < W.nrecs; i++)
		free(W.recs[i].r.cert);
	free(W.recs);
	free(W.votes);
	free(W.heap);
#ifdef SIM_AGREE_GOSSIP
	simg_free(G);
	G = NULL;
#endif
}

static int run_seed(uint64_t seed, bool verbose, struct stats *total)
{
	int i, svc, nb = 0;
	unsigned long long nevents = 0;
	uint64_t t0 = 0;
	bool fast_clock;

	memset(&W, 0, sizeof(W));
	W.seed = seed;
	W.verbose = verbose;
	rng_s = seed * 0x2545f4914f6cdd1dULL + 1;
	W.n = (int)rnd_range(5, MAXN);
	W.loss = (double)rnd_range(0, 30) / 100.0;
	fast_clock = chance(0.1);
	W.away = (int)(rnd() % (uint64_t)W.n);
	W.nart = 1;
	for (i = 0; i < W.n; i++) {
		struct node *nd = &W.nodes[i];

		memset(nd->id, 0, STORE_NODE_ID_LEN);
		nd->id[0] = (uint8_t)rnd();
		nd->id[1] = (uint8_t)i; /* unique */
		nd->id[15] = (uint8_t)rnd();
		nd->site = chance(0.5) ? "a" : "b";
		nb += nd->site[0] == 'b';
		nd->up = true;
		nd->skew = (int64_t)rnd_range(0, 4 * MIN) - (int64_t)(2 * MIN);
		if (fast_clock && i == 1)
			nd->skew = 90 * (int64_t)MIN; /* beyond the 1 h drift bound */
		hlc_init(&nd->hlc, 0);
	}
#ifdef SIM_AGREE_GOSSIP
	t0 = gossip_start(seed);
	W.now = t0;
#endif
	for (i = 0; i < W.n; i++) {
		int j;

		for (j = 0; j < W.n; j++) {
			memcpy(W.nodes[i].view[j].id, W.nodes[j].id, STORE_NODE_ID_LEN);
			W.nodes[i].view[j].state = AGREE_ALIVE;
			W.nodes[i].view[j].site = W.nodes[j].site;
		}
	}
	/* rev 1 of each service: a good artifact, known to all (the bootstrap) */
	for (svc = 0; svc < NSVC; svc++) {
		struct store_revision r;
		int pidx;

		memset(&r, 0, sizeof(r));
		snprintf(r.service, sizeof(r.service), "%s", svc_name[svc]);
		r.rev = 1;
		r.artifact = make_art(W.nart);
		W.art_bad[W.nart++] = false;
		r.kind = STORE_REV_DEPLOY;
		memcpy(r.origin, W.nodes[0].id, STORE_NODE_ID_LEN);
		r.hlc = hlc_make(WALL0, 0);
		r.operator_uid = 0;
		pidx = pool_add_rec(&r, false);
		for (i = 0; i < W.n; i++)
			merge_rec(i, pidx, false);
	}
	schedule(t0 + PHASE_A, EV_PHASE, -1, 1, 0, 0);
	schedule(t0 + rnd_range(10 * SEC, 3 * MIN), EV_OP, -1, OP_RANDOM, 0, 0);
	for (i = 0; i < 4; i++)
		schedule(t0 + rnd_range(1 * MIN, PHASE_A + AWAY), EV_OP, -1, OP_FORGE, 0, 0);
	schedule(t0 + rnd_range(2 * MIN, 20 * MIN), EV_CHAOS, -1, CHAOS_PARTITION, 0, 0);
	schedule(t0 + rnd_range(2 * MIN, 20 * MIN), EV_CHAOS, -1, CHAOS_CRASH, 0, 0);
	if (chance(0.25))
		schedule(t0 + rnd_range(1 * MIN, PHASE_A - MIN), EV_CHAOS, -1, CHAOS_LEAVE, 0, 0);
	schedule(t0 + 5 * SEC, EV_AE, -1, 0, 0, 0);

	while (W.nheap && W.phase < 3 && W.failed < 5) {
		struct event e;

#ifdef SIM_AGREE_GOSSIP
		/* the cores run up to our next event; their callbacks may schedule earlier ones */
		simg_run_until(G, W.heap[0].t);
#endif
		e = pop();

		/* a seed normally needs ~10^4 events: a storm means records never settle */
		if (++nevents > 5000000) {
			fail("event storm: %llu events, the cluster does not settle", nevents);
			break;
		}

		if (e.t > W.now)
			W.now = e.t;
		switch (e.type) {
		case EV_REC:
			if (deliverable(&e))
				merge_rec(e.node, e.idx, true);
			break;
		case EV_VOTE:
			if (deliverable(&e))
				merge_vote(e.node, e.idx, true);
			break;
		case EV_LEFT:
			if (W.nodes[e.node].up)
				merge_left(e.node, e.idx);
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
		}
	}
	if (!W.failed)
		final_checks();
#ifdef SIM_AGREE_GOSSIP
	{
		struct simg_traffic tr;

		simg_traffic(G, &tr);
		W.st.msgs += (unsigned)tr.packets; /* gossip packets and anti-entropy exchanges */
		W.st.ae_runs += (unsigned)tr.syncs;
	}
#endif
	if (verbose || W.failed)
		printf("seed %" PRIu64 ": n=%d loss=%.2f deploys=%u rollbacks=%u (%u partitioned) "
		       "forged=%u/%u refused certs=%u displaced=%u catch-up=%.0fs%s\n",
		       seed, W.n, W.loss, W.st.deploys, W.st.rollbacks_written,
		       W.st.rollbacks_partition, W.st.forged_refused, W.st.forged_sent,
		       W.st.cert_refused, W.st.displaced, (double)W.st.catchup_ms / 1000.0,
		       W.failed ? " FAILED" : "");
	(void)nb;
	total->deploys += W.st.deploys;
	total->forced += W.st.forced;
	total->rollbacks_written += W.st.rollbacks_written;
	total->rollbacks_partition += W.st.rollbacks_partition;
	total->op_votes += W.st.op_votes;
	total->to_votes += W.st.to_votes;
	total->health_votes += W.st.health_votes;
	total->forged_sent += W.st.forged_sent;
	total->forged_refused += W.st.forged_refused;
	total->cert_refused += W.st.cert_refused;
	total->displaced += W.st.displaced;
	total->local_rb += W.st.local_rb;
	total->drift_refused += W.st.drift_refused;
	total->leaves += W.st.leaves;
	total->crashes += W.st.crashes;
	total->partitions += W.st.partitions;
	total->gaps += W.st.gaps;
	total->msgs += W.st.msgs;
	total->ae_runs += W.st.ae_runs;
	total->target_disagree += W.st.target_disagree;
	total->contested += W.st.contested;
	total->both_sides_same += W.st.both_sides_same;
	if (W.st.catchup_ms > total->catchup_ms)
		total->catchup_ms = W.st.catchup_ms;
	i = W.failed;
	world_free();
	return i;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SEED"), *base_env = getenv("SEED_BASE");
	uint64_t base = base_env ? strtoull(base_env, NULL, 0) : 0, nseeds = DEFAULT_SEEDS, s;
	struct stats t = {0};
	unsigned failed = 0;

	if (argc > 1)
		nseeds = strtoull(argv[1], NULL, 0);
	if (env) {
		s = strtoull(env, NULL, 0);
		printf("sim_agree: replaying seed %" PRIu64 "\n", s);
		return run_seed(s, true, &t) ? 1 : 0;
	}
	printf("sim_agree: seeds %" PRIu64 "..%" PRIu64 " (SEED=n replays one)\n", base,
	       base + nseeds - 1);
	for (s = base; s < base + nseeds; s++)
		if (run_seed(s, false, &t)) {
			failed++;
			if (failed >= 3)
				break;
		}
	printf("deploys %u (forced %u), rollbacks written %u (%u during a partition), "
	       "operator votes %u (--to %u), health votes %u, local rollbacks %u\n",
	       t.deploys, t.forced, t.rollbacks_written, t.rollbacks_partition, t.op_votes,
	       t.to_votes, t.health_votes, t.local_rb);
	printf("forged rollbacks refused %u/%u, certificates refused in a view %u, deploys "
	       "displaced by rollbacks %u, decisions waiting on a gap %u, drift refusals %u\n",
	       t.forged_refused, t.forged_sent, t.cert_refused, t.displaced, t.gaps,
	       t.drift_refused);
	printf("rollbacks of one record with different targets (logs not yet merged below it; "
	       "settled by rule 1) %u, rollbacks of different records at one rev %u, identical "
	       "decisions on both sides of a partition %u\n",
	       t.target_disagree, t.contested, t.both_sides_same);
	printf("leaves %u, crashes %u, partitions %u, messages %u, anti-entropy runs %u, "
	       "slowest catch-up after %.0f h away %.0f s\n",
	       t.leaves, t.crashes, t.partitions, t.msgs, t.ae_runs, (double)AWAY / HOUR,
	       (double)t.catchup_ms / 1000.0);
	/* The run must have exercised what it claims to check. */
	if (!failed && nseeds >= 100 &&
	    (t.rollbacks_written == 0 || t.rollbacks_partition == 0 || t.forged_sent == 0 ||
	     t.forged_refused < t.forged_sent || t.to_votes == 0 || t.leaves == 0)) {
		printf("FAIL: the run did not exercise rollbacks, partitions, forgeries, --to, "
		       "leaves\n");
		return 1;
	}
	if (failed) {
		printf("FAIL: %u seed(s) failed\n", failed);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
