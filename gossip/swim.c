/*
 * gossip/swim.c: the SWIM + Lifeguard protocol core. Pure: no clock, no randomness, no socket.
 *
 * Design essay
 * ============
 *
 * Failure detection (SWIM). Once per probe interval (a round) the node pings one member,
 * chosen by the probe schedule below. If no ack arrives within the probe timeout, k other
 * members are asked to ping the target on our behalf (ping-req); each relay answers with the
 * target's ack, or with a nack when the target stayed silent through its own timeout. No ack
 * by the end of the interval makes the target "suspect", not dead: suspicion is disseminated,
 * and the suspect has a window to refute it by raising its incarnation number, which only the
 * member itself ever does. For one incarnation the states order alive < suspect < dead <
 * left, and any higher incarnation beats them all, so updates commute and every node
 * converges whatever the order they arrive in.
 *
 * Probe schedule. In SWIM each node walks its own shuffled copy of the member list. Every
 * member is then probed about once per round, but by independent choices, so the wait until a
 * failed member is first probed is exponential: one round on average, and one time in twenty
 * over three rounds (at 800 ms, a 5 s detection instead of 3 s). Here the nodes share one
 * schedule. The ring is the live members sorted by id: ids are random, so it is a shuffled
 * list that every node holds in the same order. In round r, the node at ring position i
 * probes position i + d(r) mod n, with d(r) = n - 1 - (r mod (n - 1)). For each round that is
 * a rotation without a fixed point, so every member is probed exactly once per round, and each
 * node still walks all the others round-robin, one pass every n - 1 rounds. Node i probes at
 * phase i/n of the round, so the probes are spread evenly, and a member probed by node i in
 * one round is probed by node i + 1 in the next, 1 + 1/n rounds later: a failed member is
 * first probed within 1 + 2/n rounds, half a round on average. Rounds are counted on a probe
 * clock, the local clock plus an offset. Every ping carries the sender's probe clock and a
 * node adopts one ahead of its own, so the cluster runs on its fastest clock after about
 * log2 N rounds, with no NTP. Where views differ (a join or a death not yet heard everywhere,
 * clocks not yet met), a member may be probed twice in a round and another not at all, which
 * is what independent choices give all the time; correctness never depends on the schedule.
 * A node whose own health stretches its interval (LHM, below) skips slots; a slot that comes
 * while a probe is still running (an urgent one, below) is served as soon as that one ends.
 *
 * Lifeguard. A node that is itself slow (CPU starved, GC, a saturated NIC) misses acks and
 * would accuse healthy peers. Three remedies, after Lifeguard (Dadgar et al., 2018):
 *  - Local Health Multiplier: a score in [0, awareness_max) raised when a probe fails, when
 *    fewer nacks come back than relays were asked (our own messages are not getting through),
 *    and when we had to refute a suspicion about ourselves; lowered by each successful probe.
 *    Probe interval and probe timeout are multiplied by (score + 1), so a sick node slows
 *    down and gives its peers more time instead of accusing them.
 *  - Nacks from relays, so that the prober can tell "target silent" from "my path is bad".
 *  - Dynamic suspicion: a suspicion starts at its maximum timeout and shrinks as independent
 *    members confirm it, timeout(n) = max(min, max - (max - min) * log(n+1) / log(k+1)), with
 *    min = suspicion_mult * probe_interval, max = suspicion_max_mult * min and
 *    k = suspicion_mult - 2 expected confirmations. A lone accuser (perhaps the sick one) waits
 *    long; a target many see failing is declared dead quickly. Unlike memberlist, min is not
 *    scaled by log10 N: that factor paid for the O(log N) gossip rounds (of 200 ms) that the
 *    suspicion and the refutation take to spread, and here news is relayed within
 *    milliseconds of arriving (below), so the suspect's time to hear and refute is bounded by
 *    its own pause, not by the cluster's size (log_3 10000 hops of ~15 ms is ~150 ms).
 *    To make confirmations arrive quickly for a member that is really gone, a member hearing
 *    of a new suspicion probes the suspect itself, out of turn, with probability
 *    URGENT_PROBERS / N: a few independent probes instead of waiting for the schedule.
 *    The accuser's own timer runs from the start of the probe that failed, not from its end:
 *    a member that did not answer that ping was already silent when it was sent, so one
 *    paused for P ms wakes at most P ms after it; min = 2.4 s by default covers a 2 s pause
 *    plus the refutation's trip. The refutation is sent at once to the accuser (whose timer
 *    ends first) and to push_fanout peers, and every ping to a suspect carries the suspicion
 *    (as Lifeguard does), so a paused member learns of it from the first packet it reads.
 *  - Our own pauses blame no one: a tick that comes more than a probe timeout after the
 *    deadline we asked for (we were stopped or starved) does not fail the probe in flight nor
 *    expire suspicions until one gossip interval later, so the acks and refutations queued
 *    in the socket meanwhile are read first (once; a coarse driver still gets its timers).
 *
 * Dissemination. Membership updates and application records ride on every packet we send
 * anyway (ping, ack, ping-req, nack) and on a pure-gossip packet sent every gossip interval to
 * gossip_nodes random members. Each update is sent at most retransmit_mult * ceil(log2(N+1))
 * times, which in an epidemic reaches every node with high probability. Queues are bucketed by
 * transmit count and served least-sent first, newest first within a bucket, so fresh news
 * travels first and picking is O(items taken), not O(queue). There is one queue entry per
 * member and per (owner, key): a newer update replaces the older one and resets its count.
 * Members and records have separate queues; while both have something pending, whichever class
 * goes first in a packet may take at most (100 - reserve_pct)% of the room, so neither class
 * starves the other (the class that goes first alternates between packets). Within the
 * records, those the driver calls urgent (env.record_urgent, asked once per (owner, key)) have
 * a queue of their own that is served first, in up to 3/4 of the records' room: least-sent
 * first means that a wave of fresh but routine records (every node reporting its health during
 * a deploy) would otherwise hold back an update already sent a few times that the rest of the
 * cluster still waits for (the deploy itself, a vote, a decision). A record put by
 * its owner is also pushed at once to push_fanout random peers. News (an update never sent
 * yet) does not wait for the next round: its first FRESH_ROUNDS rounds at each node run
 * gossip_interval / FRESH_DIV apart, so each hop of the epidemic costs milliseconds and a record
 * reaches a LAN cluster in a few tens of ms. None of this costs anything at rest: a round
 * with nothing queued sends nothing.
 *
 * Anti-entropy. Piggybacking gives up after its retransmit limit; a node that was away, or a
 * partition that healed, needs the full picture. The transport periodically exchanges a digest
 * with one peer. Listing every member and record would make the digest grow with the cluster
 * (memberlist's push-pull sends the whole state each time); instead members and records are
 * hashed into B buckets and the digest carries, per bucket, the XOR of the hashes of what it
 * holds: XOR lets the core keep 4096 fine buckets (records: updated in O(1) per change;
 * members: recomputed in O(N) when a digest follows a change) and fold them to any power of
 * two on demand, so a digest costs O(4096) to build and compare, at most
 * 64 KiB on the wire, whatever N. Each side then sends the members and records of the buckets
 * that differ and the other keeps what is newer. A remote "dead" about a member we see alive
 * is taken as a suspicion (as memberlist does) so a live member refutes instead of being
 * buried by stale news; a member that learns this way that it is suspected or dead refutes at
 * once. Members learned this way are not rebroadcast (everyone who syncs learns them anyway),
 * but changes to members we already knew are, and so are records of a small diff: a small
 * diff is news, a large one is a catch-up after an absence and rebroadcasting it would only
 * flood the piggyback space. Sync peers are mostly live members, sometimes dead ones: that is
 * how two halves of a healed partition, each having buried the other, find each other again.
 * In the same spirit, a ping from a member we hold as suspect or dead is answered with that
 * accusation so it can refute.
 * A newcomer's first exchange copies its seed's view while the "alive" of those who started a
 * few ms before it may still be on its way to that seed, and those rumours mostly run out
 * before the newcomer is widely known: the transport follows that first exchange with another
 * a few seconds later (gossip/transport.h), so a mass join does not leave its last pairs to
 * the periodic round, 30 s away.
 *
 * Memory and time. Members live in a slab (chunks of fixed-size entries, named by a 32-bit
 * slot), found through a chained hash table by id, and the live ones kept in the probe ring,
 * an array of slots sorted by id; add is O(1) plus a memmove of the ring (4 bytes a member),
 * remove (a reap) O(N). An entry is 88 bytes, ~96 with its share of the hash table and ring;
 * what only some members need (a queue entry while disseminated, an accuser, labels, a long
 * name) is allocated apart and freed when unused (see struct member). Timers are few: the
 * probe, the gossip tick, a bounded table of ping-req relays, the list of suspects and a
 * coarse reap scan, so a tick costs O(suspects + relays), not O(N) (the reap scan is O(N)
 * once every REAP_SCAN_MS). Dead members stay reap_ms after death (72 h by default): the agent persists
 * them and the agreement rule counts them as eligible voters. Anti-entropy carries a dead
 * member's age, so every node reaps it at about the same time and a sync never brings back
 * one that was already reaped.
 *
 * Known limits. A member's address is whatever its latest "alive" says; two nodes claiming
 * the same id fight with incarnations (the agent makes ids random and persistent). A table of
 * 10,000 members is ~1 MB per node; the simulator holding 10,000 such nodes needs ~10 GB
 * (tests/bench/gossip_sim.c).
 *
 * Input validation. gossip_recv and gossip_sync_* first decode the whole input without side
 * effects (proto.c), then decode it again to apply it, so malformed bytes never leave a
 * half-applied packet behind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/proto.h"

#define BQ_BUCKETS	    64
#define RELAY_MAX	    64
#define SUSP_MAX_K	    16
#define REAP_SCAN_MS	    10000
/* News (an update never sent yet) goes out this fraction of gossip_interval_ms after it was
 * learned instead of at the next regular round: each hop of an epidemic then costs a few ms
 * instead of half an interval, and a burst of news still shares packets. */
#define FRESH_DIV	    4
/* ... for its first FRESH_ROUNDS rounds at this node: the epidemic's fanout per hop is then
 * FRESH_ROUNDS * gossip_nodes, and the share of nodes it misses (~e^-fanout) is ~0.25%, not
 * the ~5% that would wait for the regular rounds. The total number of transmissions of an
 * update is the same (retransmit_mult * log2 N); they only come sooner. */
#define FRESH_ROUNDS	    2
/* A member that learns of a new suspicion probes the suspect itself at once with probability
 * URGENT_PROBERS / (live members): a few independent confirmations arrive within one probe
 * interval, so Lifeguard's timeout shrinks to its minimum for a member that is really gone. */
#define URGENT_PROBERS	    4
#define SYNC_REBROADCAST_MAX 32	 /* records of a diff at most this big are rebroadcast */
#define JOIN_PUSH_MAX	    32	 /* members pushed in the answer to a join */
#define DIG_BUCKETS	    4096 /* finest digest granularity (a power of two) */
#define DIG_MIN		    16

struct bcast {
	struct bcast *prev, *next;
	unsigned transmits;
	unsigned bucket;
	uint64_t mark;		/* packet serial that picked it */
	bool queued;
	bool is_rec;
	bool urgent;		/* a record of the urgent class (env.record_urgent) */
	void *obj;		/* struct member * or struct rec * */
};

struct bq {
	struct bcast *head[BQ_BUCKETS];
	unsigned count;
};

struct suspicion {
	uint64_t start, min, max;
	unsigned k, n;
	size_t sidx;		/* position in g->suspects */
	uint8_t from[SUSP_MAX_K + 1][GOSSIP_ID_LEN];
};

/*
 * Member memory. A node holds every member of the cluster, so a simulator of N nodes holds N^2
 * of these: they are kept small. What every member needs is in struct member (88 bytes on
 * LP64, in a slab of fixed chunks: no malloc per member, addresses stable); what only some
 * need (a queue entry while its update is disseminated, the accuser of a suspect or dead
 * member, labels, a name over NAME_INLINE bytes) is in struct member_aux, allocated on demand
 * and freed once unused (aux_trim). The struct gossip_member handed to the agent is a view
 * filled on demand (member_view).
 */
#define NAME_INLINE  8		/* names up to this many bytes live in struct member */
#define MSTATE_FREE  0xff	/* member_core.state of a free slab slot */
#define MCHUNK_SHIFT 6
#define MCHUNK	     (1u << MCHUNK_SHIFT)	/* members per slab chunk */

/* A member's own fields (the hot ones: every lookup, probe and digest update reads them).
 * Called `pub` in struct member after the public struct it replaced; same field names. */
struct member_core {
	uint8_t id[GOSSIP_ID_LEN];
	uint64_t incarnation;
	uint64_t state_change;	/* `now` of the last state change */
	struct gossip_addr addr;
	uint32_t rtt_ms;
	uint8_t state;		/* enum gossip_state, or MSTATE_FREE */
	uint8_t name_len;	/* <= NAME_INLINE: in member.name; longer: aux->name */
	uint8_t heard;		/* a packet came from it (its id, its IP): see probe_start */
	uint32_t hnext;		/* hash chain: next slot + 1 (0 = end); free slots: next free */
};

struct member_aux {
	struct bcast bc;	/* queue entry (bc.queued while the update is disseminated) */
	uint8_t accuser[GOSSIP_ID_LEN];	/* who declared it suspect or dead */
	uint8_t *labels;	/* malloc()ed, labels_len bytes; NULL when none */
	size_t labels_len;
	char *name;		/* malloc()ed, NUL-terminated, when over NAME_INLINE bytes */
};

struct member {
	struct member_core pub;
	struct suspicion *susp;	/* while suspect (then also in g->suspects) */
	struct member_aux *aux;	/* NULL when none of it is needed */
	char name[NAME_INLINE];	/* the name, when short (not NUL-terminated) */
};

_Static_assert(sizeof(void *) != 8 || sizeof(struct member) == 88, "member entry size");

struct owner;

struct rec {
	struct gossip_record pub;
	uint8_t *data;		/* key then value */
	uint64_t kh;		/* hash of (owner, key): table bucket and digest bucket */
	uint64_t h;		/* digest hash of (owner, key, version), in g->rdig */
	struct rec *hnext;
	struct owner *own;
	size_t oidx;
	struct bcast bc;
};

struct owner {
	uint8_t id[GOSSIP_ID_LEN];
	struct owner *hnext;
	struct rec **recs;
	size_t n, cap;
	size_t idx;
};

struct probe {
	bool active;
	int phase;		/* 1 direct, 2 indirect */
	uint8_t id[GOSSIP_ID_LEN];
	struct gossip_addr addr;
	uint32_t seq;
	uint64_t start, deadline;
	unsigned expected_nacks, nacks;
};

struct relay {
	bool used, nacked;
	uint32_t seq, origin_seq;
	struct gossip_addr origin;
	uint64_t nack_at, expire;
};

struct gossip {
	struct gossip_config cfg;
	struct gossip_env env;
	struct member *self;

	/* Members: slab slots in chunks of MCHUNK (stable addresses), named by uint32 index;
	 * free slots are chained through pub.hnext. Table order is slot order. */
	struct member **chunks;
	size_t nchunks, chcap;
	size_t slab_len;	/* slots in use or freed (the high-water mark) */
	size_t nmembers;	/* members held */
	uint32_t free_slot;	/* first free slot + 1, 0 = none */
	/* The probe ring: the slots of the live (alive or suspect) members but self, sorted by
	 * id; capacity for every member, so a state change never allocates. */
	uint32_t *probe;
	size_t nprobe, pcap;
	uint32_t *mbuckets;	/* hash table by id: first slot + 1 of each chain, 0 = empty */
	size_t nmb;
	struct member **suspects;
	size_t nsusp, scap;
	size_t cnt[4];

	struct owner **owners;
	size_t nowners, ocap;
	struct owner **obuckets;
	size_t nob;
	struct rec **rbuckets;
	size_t nrb, nrecs;
	size_t rec_bytes;	/* key + value bytes of every record held (records_bytes_max) */

	struct bq mq, rq, uq;	/* members; records; urgent records (served first) */
	uint64_t version_ceiling;	/* gossip_set_version_ceiling; 0: none */
	uint64_t pkt_serial;
	bool flip;

	struct probe pr;
	struct relay relays[RELAY_MAX];
	uint32_t seq;
	unsigned awareness;

	bool started, left;
	uint64_t now, next_gossip, next_reap;
	/* Probe schedule (see "Probe schedule" above): probe clock = now + clk_off; the next
	 * probe is at this node's first slot at or after probe_floor. */
	uint64_t clk_off, probe_floor;
	uint64_t last_gossip;	/* when the last gossip round ran (fresh news waits FRESH_DIV) */
	/* The last tick came too late (we were paused, or starved of CPU): what it would have
	 * expired waits until grace_until, so the packets queued meanwhile (acks, refutations)
	 * are read first. Never twice in a row (see gossip_tick). */
	uint64_t grace_until;
	bool graced;
	bool urgent;		/* probe urgent_id next, out of turn */
	unsigned flood_turn;	/* flood_cover: one scheduled probe in four is kept */
	uint8_t urgent_id[GOSSIP_ID_LEN];

	/* anti-entropy summaries: XOR of digest hashes per bucket (see gossip_sync_digest);
	 * mdig is recomputed when a digest needs it after a member changed (mdig_dirty) */
	uint64_t mdig[DIG_BUCKETS], rdig[DIG_BUCKETS];
	bool mdig_dirty;

	uint8_t *pkt;
	size_t pkt_cap;
	struct bcast *picked[GOSSIP_PROTO_MAX_MSGS];
	unsigned npicked;
	struct gossip_stats st;
	/* Public views of members (struct gossip_member), filled on demand: one per way they
	 * are handed out, so that a callback's view survives its calls to the accessors. */
	struct gossip_member v_cb, v_self, v_get, v_each;
};

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

static uint32_t rnd(struct gossip *g)
{
	return g->env.random(g->env.ud);
}

static size_t rnd_below(struct gossip *g, size_t n)
{
	if (n <= 1)
		return 0;
	uint64_t r = ((uint64_t)rnd(g) << 32) | rnd(g);
	return (size_t)(r % n);
}

static uint64_t scaled(const struct gossip *g, uint64_t v)
{
	return v * (g->awareness + 1);
}

static void awareness_add(struct gossip *g, int delta)
{
	int a = (int)g->awareness + delta;
	if (a < 0)
		a = 0;
	if (a > (int)g->cfg.awareness_max - 1)
		a = (int)g->cfg.awareness_max - 1;
	g->awareness = (unsigned)a;
}

/* Natural log without libm (the core links nothing but libc): x = m * 2^e, m in [1, 2). */
static double ln(double x)
{
	if (x <= 0)
		return 0;
	int e = 0;
	while (x >= 2) {
		x /= 2;
		e++;
	}
	while (x < 1) {
		x *= 2;
		e--;
	}
	double y = (x - 1) / (x + 1), y2 = y * y, t = y, s = 0;
	for (int i = 1; i < 40; i += 2) {
		s += t / i;
		t *= y2;
	}
	return e * 0.69314718055994530942 + 2 * s;
}

static unsigned ceil_log2(size_t n)
{
	unsigned b = 0;
	while (((size_t)1 << b) < n && b < 63)
		b++;
	return b;
}

static bool id_eq(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, GOSSIP_ID_LEN) == 0;
}

static uint64_t id_hash(const uint8_t *id)
{
	return gossip__hash64(id, GOSSIP_ID_LEN, 0);
}

static int state_rank(int s)
{
	return s;	/* alive 0 < suspect 1 < dead 2 < left 3 */
}

/* (inc_a, state_a) strictly newer than (inc_b, state_b)? */
static bool newer(uint64_t inc_a, int sa, uint64_t inc_b, int sb)
{
	return inc_a > inc_b || (inc_a == inc_b && state_rank(sa) > state_rank(sb));
}

static bool is_live(int s)
{
	return s == GOSSIP_ALIVE || s == GOSSIP_SUSPECT;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	void *n = realloc(*arr, nc * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = nc;
	return 0;
}

int gossip_addr_cmp(const struct gossip_addr *a, const struct gossip_addr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return memcmp(a->ip, b->ip, sizeof(a->ip));
}

char *gossip_addr_format(const struct gossip_addr *a, char *buf, size_t cap)
{
	if (!cap)
		return buf;
	if (a->family == GOSSIP_AF_INET) {
		snprintf(buf, cap, "%u.%u.%u.%u:%u", a->ip[0], a->ip[1], a->ip[2], a->ip[3],
			 a->port);
	} else if (a->family == GOSSIP_AF_INET6) {
		/* Plain (uncompressed) hex groups: unambiguous, and no inet_ntop needed here. */
		char tmp[48];
		size_t o = 0;
		for (int i = 0; i < 16; i += 2)
			o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, "%s%x", i ? ":" : "",
					      (unsigned)(a->ip[i] << 8 | a->ip[i + 1]));
		snprintf(buf, cap, "[%s]:%u", tmp, a->port);
	} else {
		snprintf(buf, cap, "none:%u", a->port);
	}
	return buf;
}

const char *gossip_state_name(int state)
{
	switch (state) {
	case GOSSIP_ALIVE: return "alive";
	case GOSSIP_SUSPECT: return "suspect";
	case GOSSIP_DEAD: return "dead";
	case GOSSIP_LEFT: return "left";
	default: return "?";
	}
}

void gossip_config_default(struct gossip_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = "";
	cfg->mtu = GOSSIP_MTU_DEFAULT;
	cfg->probe_interval_ms = 800;
	cfg->probe_timeout_ms = 400;
	cfg->indirect_checks = 3;
	cfg->gossip_interval_ms = 50;
	cfg->gossip_nodes = 3;
	cfg->push_fanout = 4;
	cfg->retransmit_mult = 4;
	cfg->suspicion_mult = 3;
	cfg->suspicion_max_mult = 6;
	cfg->awareness_max = 8;
	cfg->gossip_dead_ms = 30000;
	cfg->reap_ms = 72ull * 3600 * 1000;
	cfg->reserve_pct = 40;
	cfg->members_max = GOSSIP_MEMBERS_MAX_DEFAULT;
	cfg->records_max = GOSSIP_RECORDS_MAX_DEFAULT;
	cfg->records_owner_max = GOSSIP_RECORDS_OWNER_MAX_DEFAULT;
	cfg->records_bytes_max = GOSSIP_RECORDS_BYTES_MAX_DEFAULT;
}

/* ------------------------------------------------------------------------------------------ */
/* broadcast queues */

static void bq_unlink(struct bq *q, struct bcast *b)
{
	if (!b->queued)
		return;
	if (b->prev)
		b->prev->next = b->next;
	else
		q->head[b->bucket] = b->next;
	if (b->next)
		b->next->prev = b->prev;
	b->prev = b->next = NULL;
	b->queued = false;
	q->count--;
}

static void bq_push(struct bq *q, struct bcast *b, unsigned transmits)
{
	bq_unlink(q, b);
	b->transmits = transmits;
	b->bucket = transmits < BQ_BUCKETS ? transmits : BQ_BUCKETS - 1;
	b->prev = NULL;
	b->next = q->head[b->bucket];
	if (b->next)
		b->next->prev = b;
	q->head[b->bucket] = b;
	b->queued = true;
	q->count++;
}

static unsigned retransmit_limit(const struct gossip *g)
{
	size_t n = g->cnt[GOSSIP_ALIVE] + g->cnt[GOSSIP_SUSPECT];
	unsigned l = g->cfg.retransmit_mult * ceil_log2(n + 1);
	return l ? l : 1;
}

static struct member_aux *member_aux(struct member *m);

/* Queue @m's update. Without memory for its aux, the update is not piggybacked (anti-entropy
 * still carries it). */
static void member_enqueue(struct gossip *g, struct member *m)
{
	if (member_aux(m))
		bq_push(&g->mq, &m->aux->bc, 0);
}

/* The queue @b belongs in. */
static struct bq *bq_of(struct gossip *g, const struct bcast *b)
{
	return !b->is_rec ? &g->mq : b->urgent ? &g->uq : &g->rq;
}

static void rec_enqueue(struct gossip *g, struct rec *r)
{
	bq_push(bq_of(g, &r->bc), &r->bc, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* member table */

static struct member *mat(const struct gossip *g, size_t slot)
{
	return &g->chunks[slot >> MCHUNK_SHIFT][slot & (MCHUNK - 1)];
}

/* The member in @slot, or NULL if the slot is free. */
static struct member *slot_member(const struct gossip *g, size_t slot)
{
	struct member *m = mat(g, slot);
	return m->pub.state == MSTATE_FREE ? NULL : m;
}

/* The slot of @m (a scan of the chunks: only member_remove needs it). */
static uint32_t member_slot(const struct gossip *g, const struct member *m)
{
	uintptr_t p = (uintptr_t)m;
	for (size_t c = 0; c < g->nchunks; c++) {
		uintptr_t base = (uintptr_t)g->chunks[c];
		if (p >= base && p < base + MCHUNK * sizeof(*m))
			return (uint32_t)(c << MCHUNK_SHIFT | (p - base) / sizeof(*m));
	}
	return UINT32_MAX;	/* not reached: every member lives in a chunk */
}

static struct member *member_find(const struct gossip *g, const uint8_t *id)
{
	if (!g->nmb)
		return NULL;
	for (uint32_t s = g->mbuckets[id_hash(id) & (g->nmb - 1)]; s;) {
		struct member *m = mat(g, s - 1);
		if (id_eq(m->pub.id, id))
			return m;
		s = m->pub.hnext;
	}
	return NULL;
}

/* Up to two members per bucket on average: 4 bytes per bucket is most of what an index costs,
 * and chains stay short (a lookup compares ~1.5 ids). */
static int mtable_grow(struct gossip *g)
{
	if (g->nmembers < 2 * g->nmb)
		return 0;
	size_t nb = g->nmb ? g->nmb * 2 : 64;
	uint32_t *b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < g->slab_len; i++) {
		struct member *m = slot_member(g, i);
		if (!m)
			continue;
		size_t h = id_hash(m->pub.id) & (nb - 1);
		m->pub.hnext = b[h];
		b[h] = (uint32_t)i + 1;
	}
	free(g->mbuckets);
	g->mbuckets = b;
	g->nmb = nb;
	return 0;
}

static void susp_remove(struct gossip *g, struct member *m)
{
	if (!m->susp)
		return;
	struct member *last = g->suspects[--g->nsusp];
	g->suspects[m->susp->sidx] = last;
	last->susp->sidx = m->susp->sidx;
	free(m->susp);
	m->susp = NULL;
}

/* Keep the anti-entropy digest current: call after any change of a member's incarnation or
 * state (set_state does). The members' summaries are recomputed on the next digest or diff
 * (mdig_refresh) rather than updated here: that would need each member's previous hash,
 * 8 bytes per member entry, for an O(N) pass that runs only when something changed between
 * two exchanges (at most every few seconds). */
static void member_touch(struct gossip *g, struct member *m)
{
	g->mdig_dirty = true;
}

static void mdig_refresh(struct gossip *g)
{
	if (!g->mdig_dirty)
		return;
	memset(g->mdig, 0, sizeof(g->mdig));
	for (size_t i = 0; i < g->slab_len; i++) {
		const struct member *m = slot_member(g, i);
		if (!m)
			continue;
		uint64_t idh = id_hash(m->pub.id);
		uint64_t x[2] = { m->pub.incarnation, m->pub.state };
		g->mdig[idh & (DIG_BUCKETS - 1)] ^= gossip__hash64(x, sizeof(x), idh);
	}
	g->mdig_dirty = false;
}

/* The probe ring (see "Probe schedule"): index of the first entry whose id is not below @id. */
static size_t ring_lower(const struct gossip *g, const uint8_t *id)
{
	size_t lo = 0, hi = g->nprobe;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(mat(g, g->probe[mid])->pub.id, id, GOSSIP_ID_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert/delete a live member (memmove: 4 bytes a member, and only on joins and deaths).
 * The capacity was reserved when the member was added (probe_grow). */
static void ring_insert(struct gossip *g, uint32_t slot)
{
	size_t i = ring_lower(g, mat(g, slot)->pub.id);
	memmove(g->probe + i + 1, g->probe + i, (g->nprobe - i) * sizeof(*g->probe));
	g->probe[i] = slot;
	g->nprobe++;
}

static void ring_delete(struct gossip *g, const struct member *m)
{
	size_t i = ring_lower(g, m->pub.id);
	if (i == g->nprobe || mat(g, g->probe[i]) != m)
		return;
	g->nprobe--;
	memmove(g->probe + i, g->probe + i + 1, (g->nprobe - i) * sizeof(*g->probe));
}

/* Change a member's state, keeping the counters, the suspect list and the digest right. */
static void set_state(struct gossip *g, struct member *m, int state, uint64_t now)
{
	if ((int)m->pub.state != state) {
		if (m != g->self && is_live(m->pub.state) != is_live(state)) {
			if (is_live(state))
				ring_insert(g, member_slot(g, m));
			else
				ring_delete(g, m);
		}
		g->cnt[m->pub.state]--;
		g->cnt[state]++;
		m->pub.state = (uint8_t)state;
		m->pub.state_change = now;
	}
	if (state != GOSSIP_SUSPECT)
		susp_remove(g, m);
	member_touch(g, m);
}

/* The member's aux, allocated if it has none; NULL on allocation failure. */
static struct member_aux *member_aux(struct member *m)
{
	if (!m->aux) {
		m->aux = calloc(1, sizeof(*m->aux));
		if (m->aux)
			m->aux->bc.obj = m;
	}
	return m->aux;
}

static void aux_free(struct member *m)
{
	if (!m->aux)
		return;
	free(m->aux->labels);
	free(m->aux->name);
	free(m->aux);
	m->aux = NULL;
}

/* Free the aux once nothing in it is needed: not queued, no labels, a short name, and no
 * accuser to tell (alive or left: member_msg sends an accuser only for suspect and dead). */
static void aux_trim(struct member *m)
{
	const struct member_aux *a = m->aux;
	if (a && !a->bc.queued && !a->labels_len && !a->name && m->pub.state != GOSSIP_SUSPECT &&
	    m->pub.state != GOSSIP_DEAD)
		aux_free(m);
}

/* Take @b out of its queue for good (its update was sent often enough). */
static void bq_retire(struct bq *q, struct bcast *b)
{
	bq_unlink(q, b);
	if (!b->is_rec)
		aux_trim(b->obj);
}

/* Remember who accused @m. The callers that can fail make sure the aux exists before they
 * change anything; if it cannot be had here, the accuser stays unknown (all zero). */
static void set_accuser(struct member *m, const uint8_t *accuser)
{
	if (member_aux(m))
		memcpy(m->aux->accuser, accuser, GOSSIP_ID_LEN);
}

static const char *member_name(const struct member *m)
{
	return m->pub.name_len > NAME_INLINE ? m->aux->name : m->name;
}

/* Fill the public view @v of @m (see struct gossip_member: borrowed until the next call). */
static const struct gossip_member *member_view(const struct gossip *g, const struct member *m,
					       struct gossip_member *v)
{
	memcpy(v->id, m->pub.id, GOSSIP_ID_LEN);
	memcpy(v->name, member_name(m), m->pub.name_len);
	v->name[m->pub.name_len] = 0;
	v->addr = m->pub.addr;
	v->labels = m->aux ? m->aux->labels : NULL;
	v->labels_len = m->aux ? m->aux->labels_len : 0;
	v->incarnation = m->pub.incarnation;
	v->state = (enum gossip_state)m->pub.state;
	v->state_change = m->pub.state_change;
	v->rtt_ms = m->pub.rtt_ms;
	v->self = m == g->self;
	return v;
}

static void notify_member(struct gossip *g, struct member *m)
{
	if (g->env.on_member)
		g->env.on_member(g->env.ud, member_view(g, m, &g->v_cb));
}

static int set_labels(struct member *m, const uint8_t *labels, size_t len)
{
	size_t cur = m->aux ? m->aux->labels_len : 0;
	if (len == cur && (!len || memcmp(labels, m->aux->labels, len) == 0))
		return 0;
	uint8_t *n = NULL;
	if (len) {
		n = malloc(len);
		if (!n || !member_aux(m)) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n, labels, len);
	}
	free(m->aux->labels);	/* len or cur is non-zero: the aux exists */
	m->aux->labels = n;
	m->aux->labels_len = len;
	return 0;
}

/* The name, up to its first NUL as the NUL-terminated name of struct gossip_member always
 * was. Under memory pressure a long name is cut to NAME_INLINE bytes rather than lost. */
static void set_name(struct member *m, const uint8_t *name, size_t len)
{
	if (len > GOSSIP_NAME_MAX)
		len = GOSSIP_NAME_MAX;
	const uint8_t *nul = len ? memchr(name, 0, len) : NULL;
	if (nul)
		len = (size_t)(nul - name);
	char *longn = NULL;
	if (len > NAME_INLINE) {
		if (m->pub.name_len == len && memcmp(m->aux->name, name, len) == 0)
			return;
		longn = malloc(len + 1);
		if (longn && member_aux(m)) {
			memcpy(longn, name, len);
			longn[len] = 0;
		} else {
			free(longn);
			longn = NULL;
			len = NAME_INLINE;
		}
	}
	if (m->aux) {
		free(m->aux->name);
		m->aux->name = longn;
	}
	if (!longn && len)
		memcpy(m->name, name, len);
	m->pub.name_len = (uint8_t)len;
}

/* A free slot for a new member (not taken yet: member_add takes it once nothing can fail). */
static int slot_reserve(struct gossip *g, uint32_t *ret)
{
	if (g->free_slot) {
		*ret = g->free_slot - 1;
		return 0;
	}
	if (g->slab_len >= UINT32_MAX - 1)
		return -ENOMEM;
	if (g->slab_len == g->nchunks << MCHUNK_SHIFT) {
		if (grow((void **)&g->chunks, &g->chcap, g->nchunks + 1, sizeof(*g->chunks)) < 0)
			return -ENOMEM;
		struct member *c = malloc(MCHUNK * sizeof(*c));
		if (!c)
			return -ENOMEM;
		for (unsigned i = 0; i < MCHUNK; i++)
			c[i].pub.state = MSTATE_FREE;
		g->chunks[g->nchunks++] = c;
	}
	*ret = (uint32_t)g->slab_len;
	return 0;
}

/* Room in the probe ring for every member, the one about to be added included (any of them
 * may come back alive later, and a state change must not allocate), growing by a quarter
 * (not doubling: it is 4 bytes per member, a tenth of an entry). */
static int probe_grow(struct gossip *g)
{
	if (g->nmembers < g->pcap)
		return 0;
	size_t nc = g->pcap + g->pcap / 4 + 16;
	uint32_t *n = realloc(g->probe, nc * sizeof(*n));
	if (!n)
		return -ENOMEM;
	g->probe = n;
	g->pcap = nc;
	return 0;
}

/* Add a member in @state; not enqueued, not notified. */
static struct member *member_add(struct gossip *g, const uint8_t *id, uint64_t inc, int state,
				 uint64_t now)
{
	uint32_t s;
	if (slot_reserve(g, &s) < 0 || probe_grow(g) < 0 || mtable_grow(g) < 0)
		return NULL;
	struct member *m = mat(g, s);
	if (g->free_slot)
		g->free_slot = m->pub.hnext;
	else
		g->slab_len++;
	memset(m, 0, sizeof(*m));
	memcpy(m->pub.id, id, GOSSIP_ID_LEN);
	m->pub.incarnation = inc;
	m->pub.state = (uint8_t)state;
	m->pub.state_change = now;
	member_touch(g, m);
	g->cnt[state]++;
	g->nmembers++;
	size_t h = id_hash(id) & (g->nmb - 1);
	m->pub.hnext = g->mbuckets[h];
	g->mbuckets[h] = s + 1;
	if (g->self && is_live(state))	/* (self, the first member added, stays out) */
		ring_insert(g, s);
	return m;
}

static void member_remove(struct gossip *g, struct member *m)
{
	uint32_t s = member_slot(g, m);
	uint64_t idh = id_hash(m->pub.id);
	susp_remove(g, m);
	if (m->aux)
		bq_unlink(&g->mq, &m->aux->bc);
	g->cnt[m->pub.state]--;
	g->mdig_dirty = true;
	uint32_t *pp = &g->mbuckets[idh & (g->nmb - 1)];
	while (*pp != s + 1)
		pp = &mat(g, *pp - 1)->pub.hnext;
	*pp = m->pub.hnext;
	if (m != g->self && is_live(m->pub.state))
		ring_delete(g, m);
	aux_free(m);
	m->pub.state = MSTATE_FREE;
	m->pub.hnext = g->free_slot;
	g->free_slot = s + 1;
	g->nmembers--;
}

static const uint8_t no_accuser[GOSSIP_ID_LEN];

static void member_msg(const struct member *m, struct gossip_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->id = m->pub.id;
	msg->num = m->pub.incarnation;
	switch (m->pub.state) {
	case GOSSIP_ALIVE:
		msg->type = GOSSIP_MSG_ALIVE;
		msg->name = (const uint8_t *)member_name(m);
		msg->name_len = m->pub.name_len;
		msg->addr = m->pub.addr;
		msg->blob = m->aux ? m->aux->labels : NULL;
		msg->blob_len = m->aux ? m->aux->labels_len : 0;
		break;
	case GOSSIP_SUSPECT:
		msg->type = GOSSIP_MSG_SUSPECT;
		msg->accuser = m->aux ? m->aux->accuser : no_accuser;
		break;
	case GOSSIP_DEAD:
		msg->type = GOSSIP_MSG_DEAD;
		msg->accuser = m->aux ? m->aux->accuser : no_accuser;
		break;
	default:
		msg->type = GOSSIP_MSG_DEAD;
		msg->accuser = m->pub.id;
		break;
	}
}

static void rec_msg(const struct rec *r, struct gossip_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->type = GOSSIP_MSG_RECORD;
	msg->id = r->pub.owner;
	msg->blob = r->pub.key;
	msg->blob_len = r->pub.key_len;
	msg->num = r->pub.version;
	msg->value = r->pub.value;
	msg->value_len = r->pub.value_len;
}

/* ------------------------------------------------------------------------------------------ */
/* records */

static uint64_t rec_key_hash(const uint8_t *owner, const uint8_t *key, size_t klen)
{
	return gossip__hash64(key, klen, id_hash(owner));
}

static uint64_t rec_digest_hash(uint64_t kh, uint64_t version)
{
	return gossip__hash64(&version, sizeof(version), kh);
}

static struct owner *owner_find(const struct gossip *g, const uint8_t *id)
{
	if (!g->nob)
		return NULL;
	for (struct owner *o = g->obuckets[id_hash(id) & (g->nob - 1)]; o; o = o->hnext)
		if (id_eq(o->id, id))
			return o;
	return NULL;
}

static struct owner *owner_get(struct gossip *g, const uint8_t *id)
{
	struct owner *o = owner_find(g, id);
	if (o)
		return o;
	if (grow((void **)&g->owners, &g->ocap, g->nowners + 1, sizeof(*g->owners)) < 0)
		return NULL;
	if (g->nowners >= g->nob) {
		size_t nb = g->nob ? g->nob * 2 : 64;
		struct owner **b = calloc(nb, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < g->nowners; i++) {
			struct owner *x = g->owners[i];
			size_t h = id_hash(x->id) & (nb - 1);
			x->hnext = b[h];
			b[h] = x;
		}
		free(g->obuckets);
		g->obuckets = b;
		g->nob = nb;
	}
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	memcpy(o->id, id, GOSSIP_ID_LEN);
	size_t h = id_hash(id) & (g->nob - 1);
	o->hnext = g->obuckets[h];
	g->obuckets[h] = o;
	o->idx = g->nowners;
	g->owners[g->nowners++] = o;
	return o;
}

static struct rec *rec_find(const struct gossip *g, const uint8_t *owner, const uint8_t *key,
			    size_t klen)
{
	if (!g->nrb)
		return NULL;
	uint64_t kh = rec_key_hash(owner, key, klen);
	struct rec *r = g->rbuckets[kh & (g->nrb - 1)];
	for (; r; r = r->hnext)
		if (r->kh == kh && r->pub.key_len == klen && id_eq(r->pub.owner, owner) &&
		    memcmp(r->pub.key, key, klen) == 0)
			return r;
	return NULL;
}

/* Store (owner, key) at @version with @value, creating or replacing. Returns the record. */
static struct rec *rec_set(struct gossip *g, const uint8_t *owner, const uint8_t *key,
			   size_t klen, uint64_t version, const uint8_t *value, size_t vlen)
{
	struct rec *r = rec_find(g, owner, key, klen);
	uint8_t *data = malloc(klen + vlen ? klen + vlen : 1);
	if (!data)
		return NULL;
	memcpy(data, key, klen);
	if (vlen)
		memcpy(data + klen, value, vlen);
	if (!r) {
		struct owner *o = owner_get(g, owner);
		if (!o || grow((void **)&o->recs, &o->cap, o->n + 1, sizeof(*o->recs)) < 0)
			goto fail;
		if (g->nrecs >= g->nrb) {
			size_t nb = g->nrb ? g->nrb * 2 : 64;
			struct rec **b = calloc(nb, sizeof(*b));
			if (!b)
				goto fail;
			for (size_t i = 0; i < g->nowners; i++)
				for (size_t j = 0; j < g->owners[i]->n; j++) {
					struct rec *x = g->owners[i]->recs[j];
					size_t h = x->kh & (nb - 1);
					x->hnext = b[h];
					b[h] = x;
				}
			free(g->rbuckets);
			g->rbuckets = b;
			g->nrb = nb;
		}
		r = calloc(1, sizeof(*r));
		if (!r)
			goto fail;
		memcpy(r->pub.owner, owner, GOSSIP_ID_LEN);
		r->kh = rec_key_hash(owner, key, klen);
		r->bc.obj = r;
		r->bc.is_rec = true;
		r->bc.urgent = g->env.record_urgent &&
			       g->env.record_urgent(g->env.ud, owner, key, klen);
		r->own = o;
		r->oidx = o->n;
		o->recs[o->n++] = r;
		size_t h = r->kh & (g->nrb - 1);
		r->hnext = g->rbuckets[h];
		g->rbuckets[h] = r;
		g->nrecs++;
	} else {
		g->rdig[r->kh & (DIG_BUCKETS - 1)] ^= r->h;
		g->rec_bytes -= r->pub.key_len + r->pub.value_len;
		free(r->data);
	}
	g->rec_bytes += klen + vlen;
	r->data = data;
	r->pub.key = data;
	r->pub.key_len = klen;
	r->pub.value = data + klen;
	r->pub.value_len = vlen;
	r->pub.version = version;
	r->h = rec_digest_hash(r->kh, version);
	g->rdig[r->kh & (DIG_BUCKETS - 1)] ^= r->h;
	return r;
fail:
	free(data);
	return NULL;
}

static void rec_notify(struct gossip *g, struct rec *r)
{
	if (g->env.on_record)
		g->env.on_record(g->env.ud, &r->pub);
}

/* ------------------------------------------------------------------------------------------ */
/* packets */

struct pkt {
	struct gossip__w w;
	size_t at;
	unsigned n;
};

static void pkt_begin(struct gossip *g, struct pkt *p)
{
	gossip__w_init(&p->w, g->pkt, g->pkt_cap);
	gossip__w_array(&p->w, 3);
	gossip__w_uint(&p->w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&p->w, g->self->pub.id, GOSSIP_ID_LEN);
	p->at = gossip__w_array32(&p->w);
	p->n = 0;
	g->pkt_serial++;
	g->npicked = 0;
}

static int pkt_add(struct pkt *p, const struct gossip_msg *m)
{
	if (p->n >= GOSSIP_PROTO_MAX_MSGS)
		return -EMSGSIZE;
	int r = gossip__msg_put(&p->w, m);
	if (r == 0)
		p->n++;
	return r;
}

/*
 * Take queued updates of @q while they fit below @limit bytes of the packet (true if it took
 * any). With @one, the first update taken may go past @limit (up to the packet's capacity): a
 * share is a floor for the other class, and must not starve an update bigger than the share
 * (a 900-byte record).
 */
static bool pkt_take(struct gossip *g, struct pkt *p, struct bq *q, size_t limit, bool one)
{
	unsigned lim = retransmit_limit(g);
	unsigned misses = 0;
	bool took = false;
	for (unsigned b = 0; b < BQ_BUCKETS && q->count; b++) {
		struct bcast *it = q->head[b], *next;
		for (; it; it = next) {
			next = it->next;
			if (it->transmits >= lim) {
				bq_retire(q, it);
				continue;
			}
			if (it->mark == g->pkt_serial)
				continue;
			bool full = limit <= p->w.len + 8 && (!one || took);
			if (full || p->n >= GOSSIP_PROTO_MAX_MSGS ||
			    g->npicked >= GOSSIP_PROTO_MAX_MSGS)
				return took;
			struct gossip_msg m;
			if (it->is_rec)
				rec_msg(it->obj, &m);
			else
				member_msg(it->obj, &m);
			size_t sz = gossip__msg_size(&m);
			if (p->w.len + sz > limit && !(one && !took && p->w.len + sz <= p->w.cap)) {
				/* Something smaller further down may fit; don't look forever. */
				if (++misses > 8)
					return took;
				continue;
			}
			if (pkt_add(p, &m) < 0)
				return took;
			it->mark = g->pkt_serial;
			g->picked[g->npicked++] = it;
			took = true;
		}
	}
	return took;
}

/* Records up to @limit as pkt_take: the urgent class first, in at most 3/4 of the room while
 * routine records wait too (a node flooding urgent records must not silence every other
 * node's routine ones), then the routine ones, then urgent ones in what is left. */
static void pkt_take_recs(struct gossip *g, struct pkt *p, size_t limit, bool one)
{
	size_t room = limit > p->w.len ? limit - p->w.len : 0;
	bool took = pkt_take(g, p, &g->uq, g->rq.count ? p->w.len + room * 3 / 4 : limit, one);
	took |= pkt_take(g, p, &g->rq, limit, one && !took);
	pkt_take(g, p, &g->uq, limit, one && !took);
}

/* Fill the rest of the packet with piggybacked updates. */
static void pkt_fill(struct gossip *g, struct pkt *p)
{
	size_t cap = p->w.cap;
	if (g->mq.count && (g->rq.count || g->uq.count)) {
		size_t first = p->w.len + (cap - p->w.len) * (100 - g->cfg.reserve_pct) / 100;
		bool recs_first = g->flip;
		g->flip = !g->flip;
		if (recs_first) {
			pkt_take_recs(g, p, first, true);
			pkt_take(g, p, &g->mq, cap, true);
			pkt_take_recs(g, p, cap, false);
		} else {
			pkt_take(g, p, &g->mq, first, true);
			pkt_take_recs(g, p, cap, true);
			pkt_take(g, p, &g->mq, cap, false);
		}
	} else {
		pkt_take(g, p, &g->mq, cap, false);
		pkt_take_recs(g, p, cap, false);
	}
}

/* Send the packet; count a transmission for every piggybacked update it carried. */
static void pkt_send(struct gossip *g, struct pkt *p, const struct gossip_addr *to)
{
	unsigned lim = retransmit_limit(g);
	gossip__w_array_patch(&p->w, p->at, p->n);
	if (p->n < 16 && !p->w.err && p->at + 5 <= p->w.len) {
		/* Most packets (every ping and ack at rest) carry a handful of messages: a
		 * one-byte fixarray header instead of the 5-byte array32 reserved for it. */
		p->w.buf[p->at] = (uint8_t)(0x90 | p->n);
		memmove(p->w.buf + p->at + 1, p->w.buf + p->at + 5, p->w.len - p->at - 5);
		p->w.len -= 4;
	}
	for (unsigned i = 0; i < g->npicked; i++) {
		struct bcast *b = g->picked[i];
		struct bq *q = bq_of(g, b);
		if (b->is_rec)
			g->st.record_updates_sent++;
		else
			g->st.member_updates_sent++;
		if (b->transmits + 1 >= lim)
			bq_retire(q, b);
		else
			bq_push(q, b, b->transmits + 1);
	}
	g->npicked = 0;
	g->st.packets_sent++;
	g->st.bytes_sent += p->w.len;
	g->env.send(g->env.ud, to, p->w.buf, p->w.len);
}

static void send_one(struct gossip *g, const struct gossip_addr *to, const struct gossip_msg *m)
{
	struct pkt p;
	pkt_begin(g, &p);
	pkt_add(&p, m);
	pkt_fill(g, &p);
	pkt_send(g, &p, to);
}

/*
 * Pick up to @k distinct random members matching @want, other than self and @excl. Random
 * probing first (cheap in big healthy tables), then a scan from a random offset so a table
 * that is mostly dead still yields its few live members.
 */
enum { PICK_ALIVE = 1, PICK_LIVE = 2, PICK_GOSSIP = 3, PICK_SYNC = 4 };

static bool pick_ok(const struct gossip *g, const struct member *m, int want)
{
	if (m == g->self)
		return false;
	switch (want) {
	case PICK_ALIVE:
		return m->pub.state == GOSSIP_ALIVE;
	case PICK_LIVE:
		return is_live(m->pub.state);
	case PICK_GOSSIP:
		return is_live(m->pub.state) ||
		       (m->pub.state == GOSSIP_DEAD &&
			g->now - m->pub.state_change < g->cfg.gossip_dead_ms);
	default:
		return m->pub.state != GOSSIP_LEFT;
	}
}

static size_t pick(struct gossip *g, int want, const uint8_t *excl, struct member **out,
		   size_t k)
{
	size_t n = 0;
	if (!k || g->nmembers < 2)
		return 0;
	for (unsigned tries = 0; n < k && tries < 4 * k + 8; tries++) {
		struct member *m = slot_member(g, rnd_below(g, g->slab_len));
		if (!m || !pick_ok(g, m, want) || (excl && id_eq(m->pub.id, excl)))
			continue;
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= out[i] == m;
		if (!dup)
			out[n++] = m;
	}
	if (n < k) {
		size_t start = rnd_below(g, g->slab_len);
		for (size_t i = 0; i < g->slab_len && n < k; i++) {
			struct member *m = slot_member(g, (start + i) % g->slab_len);
			if (!m || !pick_ok(g, m, want) || (excl && id_eq(m->pub.id, excl)))
				continue;
			bool dup = false;
			for (size_t j = 0; j < n; j++)
				dup |= out[j] == m;
			if (!dup)
				out[n++] = m;
		}
	}
	return n;
}

/* ------------------------------------------------------------------------------------------ */
/* state changes (SWIM's aliveNode / suspectNode / deadNode) */

static void push_now(struct gossip *g, const struct gossip_msg *first, unsigned k);
static void push_to(struct gossip *g, const struct gossip_addr *to);

/*
 * We are accused (suspect or dead at @accused_inc, by @accuser if known): go above it and say
 * so at once, not at the next gossip round. The refutation races the accusers' suspicion
 * timers (a node paused for a while wakes up with little time left), so it goes straight to
 * the accuser, whose timer expires first, and to push_fanout random peers, from where the
 * epidemic takes it to everyone else within milliseconds.
 */
static void refute(struct gossip *g, uint64_t accused_inc, const uint8_t *accuser)
{
	struct member *s = g->self;
	if (g->left)
		return;
	s->pub.incarnation = (accused_inc >= s->pub.incarnation ? accused_inc : s->pub.incarnation)
			     + 1;
	member_touch(g, s);
	g->st.refutes++;
	awareness_add(g, 1);
	member_enqueue(g, s);
	notify_member(g, s);
	struct member *a = accuser ? member_find(g, accuser) : NULL;
	if (a && a != s && is_live(a->pub.state))
		push_to(g, &a->pub.addr);
	push_now(g, NULL, g->cfg.push_fanout);
}

static uint64_t susp_timeout(const struct suspicion *s)
{
	if (s->k < 1 || s->n == 0)
		return s->max;
	double frac = ln((double)s->n + 1) / ln((double)s->k + 1);
	double raw = (double)s->max - frac * (double)(s->max - s->min);
	uint64_t t = raw < (double)s->min ? s->min : (uint64_t)raw;
	return t;
}

static int suspect_begin(struct gossip *g, struct member *m, const uint8_t *accuser,
			 uint64_t now)
{
	struct suspicion *s = calloc(1, sizeof(*s));
	if (!s || !member_aux(m)) {
		free(s);
		return -ENOMEM;
	}
	if (grow((void **)&g->suspects, &g->scap, g->nsusp + 1, sizeof(*g->suspects)) < 0) {
		free(s);
		return -ENOMEM;
	}
	size_t n = g->cnt[GOSSIP_ALIVE] + g->cnt[GOSSIP_SUSPECT];
	unsigned k = g->cfg.suspicion_mult > 2 ? g->cfg.suspicion_mult - 2 : 0;
	if (k > SUSP_MAX_K)
		k = SUSP_MAX_K;
	if (n < (size_t)k + 2)
		k = 0;
	s->min = (uint64_t)g->cfg.suspicion_mult * g->cfg.probe_interval_ms;
	s->max = g->cfg.suspicion_max_mult * s->min;
	s->k = k;
	s->start = now;
	memcpy(s->from[0], accuser, GOSSIP_ID_LEN);
	set_state(g, m, GOSSIP_SUSPECT, now);
	m->susp = s;
	s->sidx = g->nsusp;
	g->suspects[g->nsusp++] = m;
	set_accuser(m, accuser);
	g->st.suspicions++;
	return 0;
}

/* An independent confirmation of a suspicion: shrinks its timeout. */
static bool suspect_confirm(struct member *m, const uint8_t *from)
{
	struct suspicion *s = m->susp;
	if (!s || s->n >= s->k)
		return false;
	for (unsigned i = 0; i <= s->n; i++)
		if (id_eq(s->from[i], from))
			return false;
	memcpy(s->from[++s->n], from, GOSSIP_ID_LEN);
	return true;
}

/*
 * Bounds (gossip.h "Bounds"): room for one more member? A full table drops newcomers (counted)
 * and keeps every member it has: a key holder flooding invented members can fill it, not grow
 * it.
 */
static bool member_room(struct gossip *g)
{
	if (g->nmembers < g->cfg.members_max)
		return true;
	g->st.members_dropped++;
	return false;
}

/* Room for a NEW record (@owner, @klen + @vlen bytes)? Updates of held records are not asked. */
static bool rec_room(struct gossip *g, const uint8_t *owner, size_t klen, size_t vlen)
{
	const struct owner *o = owner_find(g, owner);

	if (g->nrecs < g->cfg.records_max && (!o || o->n < g->cfg.records_owner_max) &&
	    g->rec_bytes + klen + vlen <= g->cfg.records_bytes_max)
		return true;
	g->st.records_dropped++;
	return false;
}

#define FLOOD_MIN 16

/* Live members (the probe ring) heard from directly, the rest in *ret_unheard; with @ret_pick,
 * one of the heard drawn at random (NULL if none). O(ring). */
static size_t heard_scan(struct gossip *g, size_t *ret_unheard, struct member **ret_pick)
{
	size_t heard = 0, unheard = 0;
	struct member *pick = NULL;

	for (size_t i = 0; i < g->nprobe; i++) {
		struct member *m = mat(g, g->probe[i]);

		if (!m->pub.heard)
			unheard++;
		else if (++heard && ret_pick && rnd_below(g, heard) == 0)
			pick = m;
	}
	*ret_unheard = unheard;
	if (ret_pick)
		*ret_pick = pick;
	return heard;
}

/* Up to @k distinct alive members heard from, other than @excl, at random. O(ring). */
static size_t pick_heard(struct gossip *g, const uint8_t *excl, struct member **out, size_t k)
{
	size_t n = 0, seen = 0;

	for (size_t i = 0; i < g->nprobe; i++) {
		struct member *m = mat(g, g->probe[i]);

		if (!m->pub.heard || m->pub.state != GOSSIP_ALIVE || id_eq(m->pub.id, excl))
			continue;
		seen++;
		if (n < k) {
			out[n++] = m;
		} else {
			size_t j = rnd_below(g, seen); /* reservoir: each kept with odds k/seen */
			if (j < k)
				out[j] = m;
		}
	}
	return n;
}

/* ALIVE(id, inc, name, addr, labels). @bcast: enqueue what we learned. */
static int on_alive(struct gossip *g, const struct gossip_msg *msg, uint64_t now, bool bcast)
{
	struct member *m = member_find(g, msg->id);
	if (m == g->self) {
		/* Someone holds a newer "alive" of ours than we do: a previous life of this
		 * node. Go above it so our current address and labels win. */
		if (msg->num > m->pub.incarnation && !g->left)
			refute(g, msg->num, NULL);
		return 0;
	}
	if (!m) {
		if (!member_room(g))
			return 0;
		m = member_add(g, msg->id, msg->num, GOSSIP_ALIVE, now);
		if (!m)
			return -ENOMEM;
		if (set_labels(m, msg->blob, msg->blob_len) < 0) {
			member_remove(g, m);
			return -ENOMEM;
		}
		set_name(m, msg->name, msg->name_len);
		m->pub.addr = msg->addr;
	} else {
		if (msg->num <= m->pub.incarnation)
			return 0;
		if (set_labels(m, msg->blob, msg->blob_len) < 0)
			return -ENOMEM;
		set_name(m, msg->name, msg->name_len);
		m->pub.addr = msg->addr;
		m->pub.incarnation = msg->num;
		set_state(g, m, GOSSIP_ALIVE, now);
	}
	if (bcast)
		member_enqueue(g, m);
	notify_member(g, m);
	return 1;
}

static int on_suspect(struct gossip *g, const uint8_t *id, uint64_t inc, const uint8_t *accuser,
		      uint64_t now)
{
	struct member *m = member_find(g, id);
	if (!m || inc < m->pub.incarnation)
		return 0;
	if (m == g->self) {
		refute(g, inc, accuser);
		return 1;
	}
	if (m->pub.state == GOSSIP_SUSPECT) {
		/* Pass a new confirmation on so others' timers shrink too. */
		if (inc == m->pub.incarnation && suspect_confirm(m, accuser)) {
			set_accuser(m, accuser);
			member_enqueue(g, m);
		}
		if (inc == m->pub.incarnation)
			return 0;
	}
	if (m->pub.state == GOSSIP_DEAD || m->pub.state == GOSSIP_LEFT) {
		if (inc == m->pub.incarnation)
			return 0;
	}
	if (m->pub.state == GOSSIP_SUSPECT)
		susp_remove(g, m);
	m->pub.incarnation = inc;
	if (suspect_begin(g, m, accuser, now) < 0) {
		member_touch(g, m);
		return -ENOMEM;
	}
	member_enqueue(g, m);
	notify_member(g, m);
	/* Someone else's accusation: maybe check for ourselves, out of turn (see top). In a
	 * flood (flood_cover) the invented members would dilute the odds to nothing: count
	 * only the members heard from, who are the ones that could confirm. */
	size_t live = g->cnt[GOSSIP_ALIVE] + g->cnt[GOSSIP_SUSPECT], unheard = 0;
	size_t heard = heard_scan(g, &unheard, NULL);
	if (unheard > FLOOD_MIN && unheard > heard)
		live = heard + 1;
	if (!id_eq(accuser, g->self->pub.id) && !g->urgent &&
	    (live <= URGENT_PROBERS + 1 || rnd_below(g, live) < URGENT_PROBERS)) {
		g->urgent = true;
		memcpy(g->urgent_id, id, GOSSIP_ID_LEN);
	}
	return 1;
}

static int on_dead(struct gossip *g, const uint8_t *id, uint64_t inc, const uint8_t *accuser,
		   uint64_t now)
{
	struct member *m = member_find(g, id);
	bool left = id_eq(id, accuser);
	int state = left ? GOSSIP_LEFT : GOSSIP_DEAD;
	if (!m || inc < m->pub.incarnation)
		return 0;
	if (m == g->self) {
		if (!g->left)
			refute(g, inc, accuser);
		return 1;
	}
	if (!newer(inc, state, m->pub.incarnation, m->pub.state))
		return 0;
	if (!member_aux(m))
		return -ENOMEM;
	m->pub.incarnation = inc;
	set_accuser(m, accuser);
	set_state(g, m, state, now);
	member_enqueue(g, m);
	notify_member(g, m);
	return 1;
}

/* A record from the network or a sync. Returns 1 if it was news. */
static int on_record(struct gossip *g, const struct gossip_msg *msg, bool bcast)
{
	if (g->version_ceiling && msg->num > g->version_ceiling) {
		g->st.records_future++;
		return 0;
	}
	struct rec *r = rec_find(g, msg->id, msg->blob, msg->blob_len);
	if (r && r->pub.version >= msg->num)
		return 0;
	if (!r && !rec_room(g, msg->id, msg->blob_len, msg->value_len))
		return 0;
	r = rec_set(g, msg->id, msg->blob, msg->blob_len, msg->num, msg->value, msg->value_len);
	if (!r)
		return -ENOMEM;
	g->st.records_recv_new++;
	if (bcast)
		rec_enqueue(g, r);
	rec_notify(g, r);
	return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle */

int gossip_new(const struct gossip_config *cfg, const struct gossip_env *env,
	       struct gossip **ret)
{
	struct gossip *g = NULL;
	if (!cfg || !ret)
		return -EINVAL;
	const char *name = cfg->name ? cfg->name : "";
	if (!env || !env->send || !env->random || strlen(name) > GOSSIP_NAME_MAX ||
	    cfg->labels_len > GOSSIP_LABELS_MAX || (cfg->labels_len && !cfg->labels) ||
	    cfg->mtu < GOSSIP_MTU_MIN || cfg->mtu > 65535 || !cfg->probe_interval_ms ||
	    !cfg->probe_timeout_ms || !cfg->gossip_interval_ms || !cfg->retransmit_mult ||
	    !cfg->suspicion_mult || !cfg->suspicion_max_mult || !cfg->awareness_max ||
	    cfg->reserve_pct > 50)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->cfg = *cfg;
	g->cfg.name = NULL;
	g->cfg.labels = NULL;
	if (!g->cfg.members_max)
		g->cfg.members_max = GOSSIP_MEMBERS_MAX_DEFAULT;
	if (!g->cfg.records_max)
		g->cfg.records_max = GOSSIP_RECORDS_MAX_DEFAULT;
	if (!g->cfg.records_owner_max)
		g->cfg.records_owner_max = GOSSIP_RECORDS_OWNER_MAX_DEFAULT;
	if (!g->cfg.records_bytes_max)
		g->cfg.records_bytes_max = GOSSIP_RECORDS_BYTES_MAX_DEFAULT;
	g->env = *env;
	g->pkt_cap = cfg->mtu - GOSSIP_SEAL_OVERHEAD;
	g->pkt = malloc(g->pkt_cap);
	if (!g->pkt)
		goto fail;
	g->self = member_add(g, cfg->id, cfg->incarnation, GOSSIP_ALIVE, 0);
	if (!g->self)
		goto fail;
	set_name(g->self, (const uint8_t *)name, strlen(name));
	g->self->pub.addr = cfg->addr;
	if (set_labels(g->self, cfg->labels, cfg->labels_len) < 0)
		goto fail;
	member_enqueue(g, g->self);
	*ret = g;
	return 0;
fail:
	gossip_free(g);
	return -ENOMEM;
}

void gossip_free(struct gossip *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->slab_len; i++) {
		struct member *m = slot_member(g, i);
		if (m) {
			aux_free(m);
			free(m->susp);
		}
	}
	for (size_t i = 0; i < g->nchunks; i++)
		free(g->chunks[i]);
	free(g->chunks);
	for (size_t i = 0; i < g->nowners; i++) {
		struct owner *o = g->owners[i];
		for (size_t j = 0; j < o->n; j++) {
			free(o->recs[j]->data);
			free(o->recs[j]);
		}
		free(o->recs);
		free(o);
	}
	free(g->probe);
	free(g->mbuckets);
	free(g->suspects);
	free(g->owners);
	free(g->obuckets);
	free(g->rbuckets);
	free(g->pkt);
	free(g);
}

const struct gossip_member *gossip_self(struct gossip *g)
{
	return member_view(g, g->self, &g->v_self);
}

uint64_t gossip_leave_drain_ms(const struct gossip *g)
{
	return 3ull * g->cfg.gossip_interval_ms + g->cfg.probe_interval_ms;
}

static void advance(struct gossip *g, uint64_t now)
{
	if (now > g->now)
		g->now = now;
}

/* ------------------------------------------------------------------------------------------ */
/* probing */

static uint64_t probe_clock(const struct gossip *g)
{
	return g->now + g->clk_off;
}

/* A ping's clock ahead of ours: adopt it (the schedule moves with it at once). Clocks only
 * move forward, so the cluster settles on its fastest one. A member's clock is trusted like
 * everything else it says (its packets are authenticated); values past UINT64_MAX / 2 are
 * ignored, so that the offset arithmetic never wraps. */
static void clock_adopt(struct gossip *g, uint64_t clock)
{
	if (clock > probe_clock(g) && clock < UINT64_MAX / 2)
		g->clk_off = clock - g->now;
}

/* This node's place in the ring with itself inserted (@self among n = nprobe + 1) and its
 * phase: the offset of its slots into each round. */
static uint64_t ring_phase(const struct gossip *g, size_t *self)
{
	*self = ring_lower(g, g->self->pub.id);
	return (uint64_t)*self * g->cfg.probe_interval_ms / (g->nprobe + 1);
}

/* When the next scheduled probe is due: this node's first slot at or after probe_floor. */
static uint64_t probe_due(const struct gossip *g)
{
	uint64_t t = g->cfg.probe_interval_ms, c = g->probe_floor + g->clk_off;
	size_t self;
	uint64_t phase = ring_phase(g, &self);
	return g->probe_floor + (phase + t - c % t) % t;
}

/* The member this node probes in the round under way at @now (its slot just passed). */
static struct member *probe_scheduled(const struct gossip *g, uint64_t now)
{
	size_t n = g->nprobe + 1, self;
	if (n < 2)
		return NULL;
	uint64_t phase = ring_phase(g, &self), c = now + g->clk_off;
	uint64_t round = c >= phase ? (c - phase) / g->cfg.probe_interval_ms : 0;
	size_t d = (n - 1) - (size_t)(round % (n - 1));
	size_t at = (self + d) % n;
	return mat(g, g->probe[at < self ? at : at - 1]);
}

/*
 * Flood cover. A key holder can invent live members that never send anything: in the shared
 * schedule, the slots of those members probe no one, so the members they should have probed
 * go unprobed and a real failure is seen late. When this node has heard directly from fewer
 * live members than it holds unheard ones (and the unheard are over FLOOD_MIN), three of four
 * scheduled probes of an unheard member go instead to a member drawn at random among those
 * heard from: SWIM's random probing for the real members, and the schedule still gets through
 * the invented ones (each probe of one brings it closer to dead). In a normal cluster every
 * member is heard within a round or two of joining (its pings, acks and gossip), so this only
 * ever acts in a flood. @return the substitute, or NULL to keep @t.
 */
static struct member *flood_cover(struct gossip *g, const struct member *t)
{
	size_t heard, unheard = 0;
	struct member *pick = NULL;

	if (t->pub.heard)
		return NULL;
	if (++g->flood_turn % 4 == 0)
		return NULL;
	heard = heard_scan(g, &unheard, &pick);
	if (unheard <= FLOOD_MIN || unheard <= heard)
		return NULL;
	g->st.flood_cover_probes++;
	return pick;
}

/* Probe the member scheduled now, or (@urgent, out of turn) the suspect asked for. */
static void probe_start(struct gossip *g, uint64_t now, bool urgent)
{
	struct member *t = NULL;
	if (urgent) {
		g->urgent = false;
		t = member_find(g, g->urgent_id);
		if (t && (t == g->self || t->pub.state != GOSSIP_SUSPECT))
			t = NULL;
	} else {
		t = probe_scheduled(g, now);
		struct member *c = t ? flood_cover(g, t) : NULL;
		if (c)
			t = c;
	}
	if (!t)
		return;
	struct probe *pr = &g->pr;
	memset(pr, 0, sizeof(*pr));
	pr->active = true;
	pr->phase = 1;
	memcpy(pr->id, t->pub.id, GOSSIP_ID_LEN);
	pr->addr = t->pub.addr;
	pr->seq = ++g->seq;
	pr->start = now;
	pr->deadline = now + scaled(g, g->cfg.probe_timeout_ms);
	struct gossip_msg m = { .type = GOSSIP_MSG_PING, .seq = pr->seq, .id = t->pub.id,
				.num = probe_clock(g) };
	g->st.pings_sent++;
	if (t->pub.state != GOSSIP_SUSPECT) {
		send_one(g, &t->pub.addr, &m);
		return;
	}
	/* Lifeguard: a suspect learns of its suspicion from the very probes it gets, so one
	 * that was only paused refutes as soon as it runs again, whatever the gossip did. */
	struct pkt p;
	pkt_begin(g, &p);
	pkt_add(&p, &m);
	member_msg(t, &m);
	pkt_add(&p, &m);
	pkt_fill(g, &p);
	pkt_send(g, &p, &t->pub.addr);
}

static void probe_done(struct gossip *g, bool ok, uint64_t now)
{
	struct probe *pr = &g->pr;
	pr->active = false;
	if (ok) {
		awareness_add(g, -1);
		return;
	}
	g->st.probes_failed++;
	struct member *t = member_find(g, pr->id);
	/* Lifeguard: missing nacks mean our own path is bad, not (only) the target's. But a
	 * member we never heard from says nothing about our health when it stays silent (it
	 * may be invented: gossip.h "Bounds"), nor do relays asked about it. */
	int delta = 1;
	if (pr->expected_nacks)
		delta = pr->nacks < pr->expected_nacks ? (int)(pr->expected_nacks - pr->nacks) : 0;
	if (t && !t->pub.heard)
		delta = 0;
	awareness_add(g, delta);
	if (t && t->pub.state == GOSSIP_ALIVE &&
	    on_suspect(g, t->pub.id, t->pub.incarnation, g->self->pub.id, now) == 1 && t->susp) {
		/* Our suspicion runs from the probe's start, not from its end: a member that
		 * missed our ping was already silent when it arrived, so a pause of P ms ends
		 * at most P ms after the probe began, and the time spent waiting for acks and
		 * nacks need not be waited again. At most one (unscaled) probe interval is
		 * taken back: a probe stretched by our own poor health (LHM) stays slow to
		 * accuse. Everyone else starts when they hear of it, later. */
		uint64_t back = now - g->cfg.probe_interval_ms;
		if (now >= g->cfg.probe_interval_ms && pr->start < back)
			t->susp->start = back;
		else
			t->susp->start = pr->start;
	} else if (t && t->pub.state == GOSSIP_SUSPECT) {
		on_suspect(g, t->pub.id, t->pub.incarnation, g->self->pub.id, now);
	}
}

static void probe_timeout(struct gossip *g, uint64_t now)
{
	struct probe *pr = &g->pr;
	if (pr->phase == 2) {
		probe_done(g, false, now);
		return;
	}
	struct member *t = member_find(g, pr->id);
	if (!t || !is_live(t->pub.state)) {
		pr->active = false;
		return;
	}
	struct member *relays[16];
	unsigned k = g->cfg.indirect_checks < 16 ? g->cfg.indirect_checks : 16;
	size_t unheard = 0, heard = heard_scan(g, &unheard, NULL), n;
	/* In a flood (flood_cover), relays drawn among all members would mostly be invented
	 * ones: no nack would come back, and Lifeguard would take the silence for our own
	 * poor health and slow every probe down. Ask members heard from. */
	if (unheard > FLOOD_MIN && unheard > heard)
		n = pick_heard(g, pr->id, relays, k);
	else
		n = pick(g, PICK_ALIVE, pr->id, relays, k);
	struct gossip_msg m = { .type = GOSSIP_MSG_PINGREQ, .seq = pr->seq, .id = pr->id,
				.addr = t->pub.addr };
	for (size_t i = 0; i < n; i++) {
		g->st.pingreqs_sent++;
		send_one(g, &relays[i]->pub.addr, &m);
	}
	pr->expected_nacks = (unsigned)n;
	pr->phase = 2;
	uint64_t end = pr->start + scaled(g, g->cfg.probe_interval_ms);
	pr->deadline = end > now ? end : now + scaled(g, g->cfg.probe_timeout_ms);
}

static struct relay *relay_alloc(struct gossip *g)
{
	struct relay *best = &g->relays[0];
	for (unsigned i = 0; i < RELAY_MAX; i++) {
		if (!g->relays[i].used)
			return &g->relays[i];
		if (g->relays[i].expire < best->expire)
			best = &g->relays[i];
	}
	return best;	/* full: the oldest request loses its relay */
}

/* ------------------------------------------------------------------------------------------ */
/* tick */

/* Is news queued: an update this node has sent fewer than FRESH_ROUNDS rounds' worth of
 * times (a queue's bucket b holds the updates sent b times)? */
static bool has_fresh(const struct gossip *g)
{
	unsigned lim = FRESH_ROUNDS * g->cfg.gossip_nodes;
	if (g->cnt[GOSSIP_ALIVE] + g->cnt[GOSSIP_SUSPECT] < 2)
		return false; /* alone, nobody to send to: the regular rounds are enough */
	for (unsigned b = 0; b < lim && b < BQ_BUCKETS; b++)
		if (g->mq.head[b] || g->rq.head[b] || g->uq.head[b])
			return true;
	return false;
}

/* When fresh news may go out: a short batching delay after the previous round. */
static uint64_t fresh_at(const struct gossip *g)
{
	return g->last_gossip + g->cfg.gossip_interval_ms / FRESH_DIV;
}

int gossip_tick(struct gossip *g, uint64_t now)
{
	/*
	 * Our own stall is no evidence against anyone. If this tick comes more than a probe
	 * timeout after the deadline we asked for, we were not running: the acks and the
	 * refutations sent to us meanwhile are still queued in the socket, and the timers about
	 * to fire (a probe's timeout, a suspicion's expiry) would blame others for our pause.
	 * Give the driver a short grace to deliver them first. Not twice in a row, so a driver
	 * that ticks coarsely (or a node starved for good) still gets its timers run.
	 */
	if (g->started && now > g->now) {
		uint64_t due = gossip_next_deadline(g);
		if (now > due + g->cfg.probe_timeout_ms && !g->graced) {
			g->grace_until = now + g->cfg.gossip_interval_ms;
			g->graced = true;
		} else if (now >= g->grace_until) {
			g->graced = false;
		}
	}
	advance(g, now);
	now = g->now;
	bool grace = now < g->grace_until;
	if (!g->started) {
		g->started = true;
		g->probe_floor = now;
		g->next_gossip = now + g->cfg.gossip_interval_ms;
		g->next_reap = now + REAP_SCAN_MS;
		for (size_t i = 0; i < g->slab_len; i++) {
			struct member *m = slot_member(g, i);
			if (m && m->pub.state_change > now)
				m->pub.state_change = now;
		}
		g->self->pub.state_change = now;
	}

	/* ping-req relays: nack the origin when the target stayed silent */
	for (unsigned i = 0; i < RELAY_MAX; i++) {
		struct relay *r = &g->relays[i];
		if (!r->used)
			continue;
		if (!r->nacked && now >= r->nack_at) {
			struct gossip_msg m = { .type = GOSSIP_MSG_NACK, .seq = r->origin_seq };
			r->nacked = true;
			send_one(g, &r->origin, &m);
		}
		if (now >= r->expire)
			r->used = false;
	}

	if (g->pr.active && now >= g->pr.deadline && !grace)
		probe_timeout(g, now);

	/* suspicion timers (the list shrinks while we walk it: walk backwards) */
	for (size_t i = grace ? 0 : g->nsusp; i-- > 0;) {
		if (i >= g->nsusp)
			continue;
		struct member *m = g->suspects[i];
		if (now >= m->susp->start + susp_timeout(m->susp)) {
			g->st.deaths_declared++;
			on_dead(g, m->pub.id, m->pub.incarnation, g->self->pub.id, now);
		}
	}

	/* A slot that comes while a probe is still running (an urgent one, or the last one
	 * stretched by a ring change or a clock adoption) is served when that probe ends: in the
	 * shared schedule nobody else would probe its member this round. */
	uint64_t due = probe_due(g), half = g->cfg.probe_interval_ms / 2;
	if (!g->left && !g->pr.active && now >= due) {
		probe_start(g, now, false);
		/* The next slot at least half a round after this one (a round on with a ring that
		 * did not change), or later while our own health (LHM) stretches the interval;
		 * after a long stall, counted from now: missed rounds are not caught up. */
		uint64_t base = now - due > half ? now - half : due;
		g->probe_floor = base + scaled(g, g->cfg.probe_interval_ms) - half;
	} else if (!g->left && g->urgent && !g->pr.active) {
		probe_start(g, now, true); /* out of turn: the schedule is left as it was */
	}

	if (now >= g->next_gossip || (has_fresh(g) && now >= fresh_at(g))) {
		g->last_gossip = now;
		g->next_gossip = now + g->cfg.gossip_interval_ms;
		if (g->mq.count || g->rq.count || g->uq.count) {
			struct member *to[16];
			unsigned k = g->cfg.gossip_nodes < 16 ? g->cfg.gossip_nodes : 16;
			size_t n = pick(g, PICK_GOSSIP, NULL, to, k);
			for (size_t i = 0; i < n; i++) {
				struct pkt p;
				pkt_begin(g, &p);
				pkt_fill(g, &p);
				if (!p.n)
					break;
				pkt_send(g, &p, &to[i]->pub.addr);
			}
		}
	}

	if (now >= g->next_reap) {
		g->next_reap = now + REAP_SCAN_MS;
		for (size_t i = g->slab_len; i-- > 0;) {
			struct member *m = slot_member(g, i);
			if (m && m != g->self && !is_live(m->pub.state) &&
			    now - m->pub.state_change >= g->cfg.reap_ms)
				member_remove(g, m);
		}
	}
	return 0;
}

uint64_t gossip_next_deadline(const struct gossip *g)
{
	if (!g->started)
		return g->now;
	uint64_t d = g->next_reap;
	uint64_t due = probe_due(g);
	if (!g->left && !g->pr.active && due < d)	/* else when the probe ends (below) */
		d = due;
	if (g->pr.active && g->pr.deadline < d)
		d = g->pr.deadline;
	if ((g->mq.count || g->rq.count || g->uq.count) && g->next_gossip < d)
		d = g->next_gossip;
	if (has_fresh(g) && fresh_at(g) < d)
		d = fresh_at(g);
	if (!g->left && g->urgent && !g->pr.active)
		d = g->now;
	for (unsigned i = 0; i < RELAY_MAX; i++) {
		const struct relay *r = &g->relays[i];
		if (!r->used)
			continue;
		uint64_t t = r->nacked ? r->expire : r->nack_at;
		if (t < d)
			d = t;
	}
	for (size_t i = 0; i < g->nsusp; i++) {
		const struct member *m = g->suspects[i];
		uint64_t t = m->susp->start + susp_timeout(m->susp);
		if (t < d)
			d = t;
	}
	if (d < g->grace_until && g->now < g->grace_until)
		d = g->grace_until;	/* held back until the grace ends (gossip_tick) */
	return d < g->now ? g->now : d;
}

/* ------------------------------------------------------------------------------------------ */
/* receive */

static void handle_ping(struct gossip *g, const struct gossip_msg *msg,
			const struct gossip_addr *from, const uint8_t *sender)
{
	if (msg->id && !id_eq(msg->id, g->self->pub.id))
		return;		/* meant for a previous owner of this address */
	struct pkt p;
	struct gossip_msg m = { .type = GOSSIP_MSG_ACK, .seq = msg->seq };
	pkt_begin(g, &p);
	pkt_add(&p, &m);
	/* Tell a member we hold as suspect or dead what we think, so it can refute. */
	struct member *s = member_find(g, sender);
	if (s && s != g->self && s->pub.state != GOSSIP_ALIVE) {
		member_msg(s, &m);
		pkt_add(&p, &m);
	}
	if (!msg->id) {
		/* A join. Announce the newcomer even if we know it already (its push-pull with
		 * us may have come first, and members learned by anti-entropy are not
		 * rebroadcast): as its seed, we are where the rumour of it starts. */
		if (s && s != g->self && s->pub.state == GOSSIP_ALIVE)
			member_enqueue(g, s);
		/* Introduce ourselves and a random handful of members. */
		member_msg(g->self, &m);
		pkt_add(&p, &m);
		size_t half = p.w.len + (p.w.cap - p.w.len) / 2;
		size_t start = rnd_below(g, g->slab_len);
		for (size_t i = 0, sent = 0; i < g->slab_len && sent < JOIN_PUSH_MAX; i++) {
			struct member *x = slot_member(g, (start + i) % g->slab_len);
			if (!x || x == g->self || id_eq(x->pub.id, sender) || !is_live(x->pub.state))
				continue;
			member_msg(x, &m);
			if (p.w.len + gossip__msg_size(&m) > half)
				break;
			pkt_add(&p, &m);
			sent++;
		}
		/* No piggyback for a newcomer: it gets the full state by push-pull, and every
		 * update spent on it would be one transmission less for the rest of the cluster
		 * (with many joins in a row, a seed's rumours would die among newcomers). */
		pkt_send(g, &p, from);
		return;
	}
	pkt_fill(g, &p);
	pkt_send(g, &p, from);
}

static void handle_ack(struct gossip *g, const struct gossip_msg *msg,
		       const struct gossip_addr *from, uint64_t now)
{
	struct probe *pr = &g->pr;
	if (pr->active && msg->seq == pr->seq) {
		g->st.acks_recv++;
		if (gossip_addr_cmp(from, &pr->addr) == 0) {
			struct member *t = member_find(g, pr->id);
			uint64_t rtt = now - pr->start;
			if (rtt > UINT32_MAX)
				rtt = UINT32_MAX;
			/* smoothed like TCP's SRTT: 7/8 old + 1/8 new, rounded; 0 means "never
			 * measured", so a measured sub-millisecond RTT counts as 1 */
			if (t && t->pub.rtt_ms)
				rtt = (7ull * t->pub.rtt_ms + rtt + 4) / 8;
			if (t)
				t->pub.rtt_ms = (uint32_t)(rtt ? rtt : 1);
		}
		probe_done(g, true, now);
		return;
	}
	for (unsigned i = 0; i < RELAY_MAX; i++) {
		struct relay *r = &g->relays[i];
		if (r->used && r->seq == msg->seq) {
			struct gossip_msg m = { .type = GOSSIP_MSG_ACK, .seq = r->origin_seq };
			r->used = false;
			send_one(g, &r->origin, &m);
			return;
		}
	}
}

static void handle_pingreq(struct gossip *g, const struct gossip_msg *msg,
			   const struct gossip_addr *from, uint64_t now)
{
	if (id_eq(msg->id, g->self->pub.id)) {
		struct gossip_msg m = { .type = GOSSIP_MSG_ACK, .seq = msg->seq };
		send_one(g, from, &m);
		return;
	}
	struct relay *r = relay_alloc(g);
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->seq = ++g->seq;
	r->origin_seq = msg->seq;
	r->origin = *from;
	/* Nack at 80% of the timeout, so it reaches the prober before its probe interval ends
	 * (it sent the ping-req one probe timeout into an interval of about two). */
	r->nack_at = now + scaled(g, g->cfg.probe_timeout_ms) * 4 / 5;
	r->expire = now + 2 * scaled(g, g->cfg.probe_interval_ms);
	struct gossip_msg m = { .type = GOSSIP_MSG_PING, .seq = r->seq, .id = msg->id,
				.num = probe_clock(g) };
	send_one(g, &msg->addr, &m);
}

int gossip_recv(struct gossip *g, uint64_t now, const struct gossip_addr *from,
		const uint8_t *buf, size_t len)
{
	int r = gossip__pkt_check(buf, len);
	if (r < 0) {
		g->st.bad_packets++;
		return r;
	}
	advance(g, now);
	now = g->now;
	g->st.packets_recv++;
	g->st.bytes_recv += len;
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint32_t n;
	gossip__pkt_open(&pos, end, &sender, &n);
	if (id_eq(sender, g->self->pub.id))
		return 0;	/* our own packet (a seed list naming ourselves) */
	int ret = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct gossip_msg m;
		gossip__msg_get(&pos, end, &m);
		switch (m.type) {
		case GOSSIP_MSG_PING:
			clock_adopt(g, m.num);
			handle_ping(g, &m, from, sender);
			break;
		case GOSSIP_MSG_ACK:
			handle_ack(g, &m, from, now);
			break;
		case GOSSIP_MSG_NACK:
			if (g->pr.active && m.seq == g->pr.seq) {
				g->st.nacks_recv++;
				g->pr.nacks++;
			}
			break;
		case GOSSIP_MSG_PINGREQ:
			handle_pingreq(g, &m, from, now);
			break;
		case GOSSIP_MSG_ALIVE:
			r = on_alive(g, &m, now, true);
			break;
		case GOSSIP_MSG_SUSPECT:
			r = on_suspect(g, m.id, m.num, m.accuser, now);
			break;
		case GOSSIP_MSG_DEAD:
			r = on_dead(g, m.id, m.num, m.accuser, now);
			break;
		case GOSSIP_MSG_RECORD:
			r = on_record(g, &m, true);
			break;
		}
		if (r == -ENOMEM)
			ret = r;
		r = 0;
	}
	/* Heard from directly: the packet names it as sender and comes from its IP. Members only
	 * ever named by others (e.g. invented by a flood) are never "heard" (see probe_start). */
	struct member *sm = member_find(g, sender);
	if (sm && sm != g->self && from && sm->pub.addr.family == from->family &&
	    memcmp(sm->pub.addr.ip, from->ip, sizeof(from->ip)) == 0)
		sm->pub.heard = 1;
	return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* join, leave, labels, records */

int gossip_join(struct gossip *g, uint64_t now, const struct gossip_addr *seeds, size_t n)
{
	if (!seeds && n)
		return -EINVAL;
	if (g->left)
		return -ESHUTDOWN;
	advance(g, now);
	int sent = 0;
	for (size_t i = 0; i < n; i++) {
		if (gossip_addr_cmp(&seeds[i], &g->self->pub.addr) == 0)
			continue;
		struct pkt p;
		struct gossip_msg m = { .type = GOSSIP_MSG_PING, .seq = ++g->seq,
					.num = probe_clock(g) };
		pkt_begin(g, &p);
		pkt_add(&p, &m);
		member_msg(g->self, &m);
		pkt_add(&p, &m);
		pkt_fill(g, &p);
		pkt_send(g, &p, &seeds[i]);
		sent++;
	}
	return sent;
}

/* Send one packet of piggybacked updates (newest first) to @to at once. */
static void push_to(struct gossip *g, const struct gossip_addr *to)
{
	struct pkt p;
	pkt_begin(g, &p);
	pkt_fill(g, &p);
	if (p.n)
		pkt_send(g, &p, to);
}

/* Send a packet of piggybacked updates at once to @k random live peers. */
static void push_now(struct gossip *g, const struct gossip_msg *first, unsigned k)
{
	struct member *to[16];
	size_t n = pick(g, PICK_LIVE, NULL, to, k < 16 ? k : 16);
	for (size_t i = 0; i < n; i++) {
		struct pkt p;
		pkt_begin(g, &p);
		if (first)
			pkt_add(&p, first);
		pkt_fill(g, &p);
		if (p.n)
			pkt_send(g, &p, &to[i]->pub.addr);
	}
}

int gossip_leave(struct gossip *g, uint64_t now)
{
	advance(g, now);
	if (g->left)
		return 0;
	g->left = true;
	g->pr.active = false;
	struct member *s = g->self;
	s->pub.incarnation++;
	set_accuser(s, s->pub.id);
	set_state(g, s, GOSSIP_LEFT, g->now);
	member_enqueue(g, s);
	notify_member(g, s);
	struct gossip_msg m;
	member_msg(s, &m);
	push_now(g, &m, g->cfg.gossip_nodes);
	return 0;
}

int gossip_set_labels(struct gossip *g, uint64_t now, const uint8_t *labels, size_t len)
{
	if (len > GOSSIP_LABELS_MAX)
		return -EMSGSIZE;
	if (len && !labels)
		return -EINVAL;
	if (g->left)
		return -ESHUTDOWN;
	advance(g, now);
	if (set_labels(g->self, labels, len) < 0)
		return -ENOMEM;
	g->self->pub.incarnation++;
	member_touch(g, g->self);
	member_enqueue(g, g->self);
	notify_member(g, g->self);
	return 0;
}

void gossip_set_version_ceiling(struct gossip *g, uint64_t ceiling)
{
	if (g)
		g->version_ceiling = ceiling;
}

int gossip_record_put(struct gossip *g, uint64_t now, const uint8_t *key, size_t key_len,
		      uint64_t version, const uint8_t *value, size_t value_len)
{
	if (!key || !key_len || (value_len && !value))
		return -EINVAL;
	if (key_len > GOSSIP_KEY_MAX || value_len > GOSSIP_VALUE_MAX)
		return -EMSGSIZE;
	if (g->left)
		return -ESHUTDOWN;
	advance(g, now);
	struct rec *r = rec_find(g, g->self->pub.id, key, key_len);
	if (r && r->pub.version >= version)
		return -ESTALE;
	r = rec_set(g, g->self->pub.id, key, key_len, version, value, value_len);
	if (!r)
		return -ENOMEM;
	rec_enqueue(g, r);
	struct gossip_msg m;
	rec_msg(r, &m);
	/* The push packets carry the record as their primary message: it stays at zero
	 * transmits in the queue and is piggybacked a full retransmit limit afterwards. */
	push_now(g, &m, g->cfg.push_fanout);
	return 0;
}

static int check_member(const struct gossip_member *m)
{
	if (!m || m->state > GOSSIP_LEFT || m->labels_len > GOSSIP_LABELS_MAX ||
	    (m->labels_len && !m->labels) || strnlen(m->name, GOSSIP_NAME_MAX + 1) >
	    GOSSIP_NAME_MAX)
		return -EINVAL;
	return 0;
}

int gossip_member_restore(struct gossip *g, const struct gossip_member *in)
{
	if (check_member(in) < 0)
		return -EINVAL;
	struct member *m = member_find(g, in->id);
	if (m == g->self) {
		if (in->incarnation >= m->pub.incarnation)
			m->pub.incarnation = in->incarnation + 1;
		member_touch(g, m);
		return 0;
	}
	if (m && !newer(in->incarnation, in->state, m->pub.incarnation, m->pub.state))
		return 0;
	bool added = false;
	if (!m) {
		if (!member_room(g))
			return 0;
		m = member_add(g, in->id, in->incarnation, in->state, in->state_change);
		if (!m)
			return -ENOMEM;
		added = true;
	}
	if (set_labels(m, in->labels, in->labels_len) < 0) {
		if (added)
			member_remove(g, m);
		return -ENOMEM;
	}
	set_name(m, (const uint8_t *)in->name, strlen(in->name));
	m->pub.addr = in->addr;
	m->pub.incarnation = in->incarnation;
	m->pub.rtt_ms = in->rtt_ms;
	/* Only a dead member's accuser is ever sent (a left one's is itself; a restored
	 * suspect comes back alive): no aux for the others. */
	if (in->state == GOSSIP_DEAD) {
		if (!member_aux(m)) {
			if (added)
				member_remove(g, m);
			return -ENOMEM;
		}
		set_accuser(m, g->self->pub.id);
	}
	if (in->state == GOSSIP_SUSPECT) {
		/* A restored suspicion restarts its timer: treat it as alive, probing decides. */
		set_state(g, m, GOSSIP_ALIVE, in->state_change);
	} else {
		set_state(g, m, in->state, in->state_change);
	}
	m->pub.state_change = in->state_change;
	if (g->started && m->pub.state_change > g->now)
		m->pub.state_change = g->now;
	return 0;
}

const struct gossip_member *gossip_member_get(struct gossip *g, const uint8_t id[GOSSIP_ID_LEN])
{
	struct member *m = member_find(g, id);
	return m ? member_view(g, m, &g->v_get) : NULL;
}

int gossip_member_foreach(struct gossip *g,
			  int (*cb)(void *ud, const struct gossip_member *m), void *ud)
{
	for (size_t i = 0; i < g->slab_len; i++) {
		const struct member *m = slot_member(g, i);
		int r = m ? cb(ud, member_view(g, m, &g->v_each)) : 0;
		if (r)
			return r;
	}
	return 0;
}

size_t gossip_member_count(const struct gossip *g, int state)
{
	if (state < 0)
		return g->nmembers;
	return state <= GOSSIP_LEFT ? g->cnt[state] : 0;
}

int gossip_record_restore(struct gossip *g, const struct gossip_record *in)
{
	if (!in || !in->key || !in->key_len || (in->value_len && !in->value))
		return -EINVAL;
	if (in->key_len > GOSSIP_KEY_MAX || in->value_len > GOSSIP_VALUE_MAX)
		return -EMSGSIZE;
	struct rec *r = rec_find(g, in->owner, in->key, in->key_len);
	if (r && r->pub.version >= in->version)
		return 0;
	if (!r && !rec_room(g, in->owner, in->key_len, in->value_len))
		return 0;
	if (!rec_set(g, in->owner, in->key, in->key_len, in->version, in->value, in->value_len))
		return -ENOMEM;
	return 0;
}

const struct gossip_record *gossip_record_get(struct gossip *g, const uint8_t owner[GOSSIP_ID_LEN],
					      const uint8_t *key, size_t key_len)
{
	struct rec *r = rec_find(g, owner, key, key_len);
	return r ? &r->pub : NULL;
}

int gossip_record_foreach(struct gossip *g,
			  int (*cb)(void *ud, const struct gossip_record *r), void *ud)
{
	for (size_t i = 0; i < g->nowners; i++)
		for (size_t j = 0; j < g->owners[i]->n; j++) {
			int r = cb(ud, &g->owners[i]->recs[j]->pub);
			if (r)
				return r;
		}
	return 0;
}

size_t gossip_record_count(const struct gossip *g)
{
	return g->nrecs;
}

void gossip_stats(const struct gossip *g, struct gossip_stats *ret)
{
	*ret = g->st;
	ret->awareness = g->awareness;
	ret->pending_member_updates = g->mq.count;
	ret->pending_record_updates = g->rq.count + g->uq.count;
}

/* ------------------------------------------------------------------------------------------ */
/* anti-entropy */

int gossip_sync_pick(struct gossip *g, struct gossip_addr *ret_addr)
{
	struct member *m;
	size_t live = g->cnt[GOSSIP_ALIVE] + g->cnt[GOSSIP_SUSPECT] - (g->left ? 0 : 1);
	size_t dead = g->cnt[GOSSIP_DEAD];
	/* Mostly live peers; a dead one with probability dead/(live+dead), at most 1/2. */
	int want = PICK_LIVE;
	if (dead && (!live || rnd_below(g, 2 * (live + dead)) < dead))
		want = PICK_SYNC;
	if (!pick(g, want, NULL, &m, 1) && !pick(g, PICK_SYNC, NULL, &m, 1))
		return -ENOENT;
	*ret_addr = m->pub.addr;
	return 0;
}

/* Header of sync buffers: [version, type, sender, ...] with @n elements in all. */
/* Bucket count for a digest: about two entries per bucket, within [DIG_MIN, DIG_BUCKETS]. */
static uint32_t dig_buckets(const struct gossip *g)
{
	size_t want = (g->nmembers > g->nrecs ? g->nmembers : g->nrecs) / 2;
	uint32_t b = DIG_MIN;
	while (b < want && b < DIG_BUCKETS)
		b *= 2;
	return b;
}

/* Fold the finest summaries down to @b buckets (b divides DIG_BUCKETS: bucket = hash % b). */
static void dig_fold(const uint64_t *src, uint32_t b, uint64_t *dst)
{
	memset(dst, 0, b * sizeof(*dst));
	for (uint32_t i = 0; i < DIG_BUCKETS; i++)
		dst[i & (b - 1)] ^= src[i];
}

static void put_le64s(uint8_t *out, const uint64_t *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		for (int k = 0; k < 8; k++)
			out[8 * i + k] = (uint8_t)(v[i] >> (8 * k));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | p[k];
	return v;
}

int gossip_sync_digest(struct gossip *g, uint8_t **ret_buf, size_t *ret_len)
{
	uint32_t b = dig_buckets(g);
	size_t cap = 64 + 2 * 8 * (size_t)b;
	uint8_t *buf = malloc(cap);
	uint64_t *fold = malloc(b * sizeof(*fold));
	uint8_t *bin = malloc(8 * (size_t)b);
	int r = -ENOMEM;
	if (!buf || !fold || !bin)
		goto out;
	struct gossip__w w;
	gossip__w_init(&w, buf, cap);
	gossip__w_array(&w, 6);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_uint(&w, GOSSIP_SYNC_DIGEST);
	gossip__w_bin(&w, g->self->pub.id, GOSSIP_ID_LEN);
	gossip__w_uint(&w, b);
	mdig_refresh(g);
	dig_fold(g->mdig, b, fold);
	put_le64s(bin, fold, b);
	gossip__w_bin(&w, bin, 8 * (size_t)b);
	dig_fold(g->rdig, b, fold);
	put_le64s(bin, fold, b);
	gossip__w_bin(&w, bin, 8 * (size_t)b);
	if (w.err)
		goto out;
	*ret_buf = buf;
	*ret_len = w.len;
	buf = NULL;
	r = 0;
out:
	free(buf);
	free(fold);
	free(bin);
	return r;
}

/* Decode a digest: bucket count and the two summaries (borrowed from @buf). */
static int digest_read(const uint8_t *buf, size_t len, uint32_t *ret_b, const uint8_t **ret_m,
		       const uint8_t **ret_r)
{
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint64_t b;
	size_t lm, lr;
	int r = gossip__sync_open(&pos, end, GOSSIP_SYNC_DIGEST, 6, &sender);
	if (r < 0)
		return r;
	if (gossip__r_uint(&pos, end, &b) < 0 || b == 0 || b > DIG_BUCKETS || (b & (b - 1)))
		return -EBADMSG;
	if (gossip__r_bytes(&pos, end, false, 8 * DIG_BUCKETS, ret_m, &lm) < 0 || lm != 8 * b ||
	    gossip__r_bytes(&pos, end, false, 8 * DIG_BUCKETS, ret_r, &lr) < 0 || lr != 8 * b ||
	    pos != end)
		return -EBADMSG;
	*ret_b = (uint32_t)b;
	return 0;
}

static bool put_member_entry(struct gossip__w *w, const struct member *m, uint64_t now)
{
	size_t mark = w->len;
	gossip__w_array(w, 7);
	gossip__w_bin(w, m->pub.id, GOSSIP_ID_LEN);
	gossip__w_uint(w, m->pub.incarnation);
	gossip__w_uint(w, m->pub.state);
	gossip__w_str(w, member_name(m), m->pub.name_len);
	gossip__w_addr(w, &m->pub.addr);
	gossip__w_bin(w, m->aux ? m->aux->labels : NULL, m->aux ? m->aux->labels_len : 0);
	/* how long ago it died or left, so the receiver reaps it when we do */
	gossip__w_uint(w, is_live(m->pub.state) || now < m->pub.state_change ? 0 :
			 now - m->pub.state_change);
	if (!w->err)
		return true;
	w->err = 0;
	w->len = mark;
	return false;
}

static bool put_record_entry(struct gossip__w *w, const struct rec *rc)
{
	size_t mark = w->len;
	gossip__w_array(w, 4);
	gossip__w_bin(w, rc->pub.owner, GOSSIP_ID_LEN);
	gossip__w_bin(w, rc->pub.key, rc->pub.key_len);
	gossip__w_uint(w, rc->pub.version);
	gossip__w_bin(w, rc->pub.value, rc->pub.value_len);
	if (!w->err)
		return true;
	w->err = 0;
	w->len = mark;
	return false;
}

int gossip_sync_diff(struct gossip *g, uint64_t now, const uint8_t *digest, size_t len,
		     size_t max_len, uint8_t **ret_buf, size_t *ret_len)
{
	uint32_t b;
	const uint8_t *pm, *pr;
	int r = digest_read(digest, len, &b, &pm, &pr);
	if (r < 0)
		return r;
	advance(g, now);
	if (!max_len || max_len > GOSSIP_SYNC_MAX)
		max_len = GOSSIP_SYNC_MAX;

	/* Which buckets differ? Only their members and records travel. */
	uint64_t *fold = malloc(b * sizeof(*fold));
	uint8_t *mdiff = calloc(b, 1), *rdiff = calloc(b, 1);
	uint8_t *buf = NULL;
	r = -ENOMEM;
	if (!fold || !mdiff || !rdiff)
		goto out;
	bool anym = false, anyr = false;
	mdig_refresh(g);
	dig_fold(g->mdig, b, fold);
	for (uint32_t i = 0; i < b; i++)
		anym |= mdiff[i] = fold[i] != get_le64(pm + 8 * i);
	dig_fold(g->rdig, b, fold);
	for (uint32_t i = 0; i < b; i++)
		anyr |= rdiff[i] = fold[i] != get_le64(pr + 8 * i);

	size_t cap = 64;
	for (size_t i = 0; anym && i < g->slab_len; i++) {
		const struct member *m = slot_member(g, i);
		if (m && mdiff[id_hash(m->pub.id) & (b - 1)])
			cap += 48 + GOSSIP_NAME_MAX + (m->aux ? m->aux->labels_len : 0);
	}
	for (size_t i = 0; anyr && i < g->nowners; i++)
		for (size_t j = 0; j < g->owners[i]->n; j++) {
			const struct rec *rc = g->owners[i]->recs[j];
			if (rdiff[rc->kh & (b - 1)])
				cap += 48 + rc->pub.key_len + rc->pub.value_len;
		}
	if (cap > max_len)
		cap = max_len;
	buf = malloc(cap);
	if (!buf)
		goto out;
	struct gossip__w w;
	gossip__w_init(&w, buf, cap);
	gossip__w_array(&w, 5);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_uint(&w, GOSSIP_SYNC_DIFF);
	gossip__w_bin(&w, g->self->pub.id, GOSSIP_ID_LEN);
	size_t at = gossip__w_array32(&w);
	if (w.err || w.cap - w.len < 5) {
		r = -EINVAL;	/* max_len too small for even the headers */
		goto out;
	}
	/* Start at a random place so that a truncated diff sends a different part next time. */
	bool truncated = false;
	uint32_t n = 0;
	size_t start = rnd_below(g, g->slab_len);
	w.cap -= 5;	/* keep room for the records' array header */
	for (size_t i = 0; anym && i < g->slab_len && !truncated; i++) {
		const struct member *m = slot_member(g, (start + i) % g->slab_len);
		if (!m || !mdiff[id_hash(m->pub.id) & (b - 1)])
			continue;
		if (put_member_entry(&w, m, g->now))
			n++;
		else
			truncated = true;
	}
	gossip__w_array_patch(&w, at, n);
	w.cap += 5;
	n = 0;
	at = gossip__w_array32(&w);
	start = rnd_below(g, g->nowners);
	for (size_t i = 0; anyr && i < g->nowners && !truncated; i++) {
		const struct owner *o = g->owners[(start + i) % g->nowners];
		for (size_t j = 0; j < o->n && !truncated; j++) {
			if (!rdiff[o->recs[j]->kh & (b - 1)])
				continue;
			if (put_record_entry(&w, o->recs[j]))
				n++;
			else
				truncated = true;
		}
	}
	gossip__w_array_patch(&w, at, n);
	*ret_buf = buf;
	*ret_len = w.len;
	buf = NULL;
	r = truncated ? 1 : 0;
out:
	free(buf);
	free(fold);
	free(mdiff);
	free(rdiff);
	return r;
}

static int diff_member(const uint8_t **pos, const uint8_t *end, struct gossip_msg *m,
		       uint64_t *state, uint64_t *age)
{
	uint32_t n;
	memset(m, 0, sizeof(*m));
	if (gossip__r_array(pos, end, &n) < 0 || n != 7 || gossip__r_id(pos, end, &m->id) < 0 ||
	    gossip__r_uint(pos, end, &m->num) < 0 || gossip__r_uint(pos, end, state) < 0 ||
	    *state > GOSSIP_LEFT ||
	    gossip__r_bytes(pos, end, true, GOSSIP_NAME_MAX, &m->name, &m->name_len) < 0 ||
	    gossip__r_addr(pos, end, &m->addr) < 0 ||
	    gossip__r_bytes(pos, end, false, GOSSIP_LABELS_MAX, &m->blob, &m->blob_len) < 0 ||
	    gossip__r_uint(pos, end, age) < 0)
		return -EBADMSG;
	m->type = GOSSIP_MSG_ALIVE;
	return 0;
}

static int diff_record(const uint8_t **pos, const uint8_t *end, struct gossip_msg *m)
{
	uint32_t n;
	memset(m, 0, sizeof(*m));
	if (gossip__r_array(pos, end, &n) < 0 || n != 4 || gossip__r_id(pos, end, &m->id) < 0 ||
	    gossip__r_bytes(pos, end, false, GOSSIP_KEY_MAX, &m->blob, &m->blob_len) < 0 ||
	    !m->blob_len || gossip__r_uint(pos, end, &m->num) < 0 ||
	    gossip__r_bytes(pos, end, false, GOSSIP_VALUE_MAX, &m->value, &m->value_len) < 0)
		return -EBADMSG;
	m->type = GOSSIP_MSG_RECORD;
	return 0;
}

/* Merge one member of a diff (memberlist's mergeState). */
static int merge_member(struct gossip *g, const struct gossip_msg *msg, int state,
			uint64_t age, const uint8_t *sender, uint64_t now)
{
	struct member *m = member_find(g, msg->id);
	if (!m && !is_live(state) && age >= g->cfg.reap_ms)
		return 0;	/* we reaped it already (or would now): don't resurrect it */
	if (!m) {
		/* Someone we never heard of: take it as the peer sees it (dead ones included,
		 * that is how a newcomer learns the whole table); no rebroadcast. A suspicion
		 * we have no timer for is taken as alive: our own probes will decide. */
		int st = state == GOSSIP_SUSPECT ? GOSSIP_ALIVE : state;
		uint64_t since = is_live(st) || age > now ? now : now - age;
		if (!member_room(g))
			return 0;
		m = member_add(g, msg->id, msg->num, st, since);
		if (!m)
			return -ENOMEM;
		if (set_labels(m, msg->blob, msg->blob_len) < 0) {
			member_remove(g, m);
			return -ENOMEM;
		}
		set_name(m, msg->name, msg->name_len);
		m->pub.addr = msg->addr;
		if (st == GOSSIP_DEAD) {
			if (!member_aux(m)) {
				member_remove(g, m);
				return -ENOMEM;
			}
			set_accuser(m, sender);
		}
		notify_member(g, m);
		return 1;
	}
	switch (state) {
	case GOSSIP_ALIVE:
		return on_alive(g, msg, now, true);
	case GOSSIP_LEFT:
		return on_dead(g, msg->id, msg->num, msg->id, now);
	default:
		/* suspect, or a remote "dead" we may not have seen: a suspicion, refutable */
		if (m == g->self)
			return on_suspect(g, msg->id, msg->num, sender, now);
		if (m->pub.state == GOSSIP_DEAD || m->pub.state == GOSSIP_LEFT) {
			if (state == GOSSIP_DEAD)
				return on_dead(g, msg->id, msg->num, sender, now);
			return 0;
		}
		return on_suspect(g, msg->id, msg->num, sender, now);
	}
}

int gossip_sync_apply(struct gossip *g, uint64_t now, const uint8_t *buf, size_t len)
{
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint32_t nm, nr;
	struct gossip_msg m;
	uint64_t state, age;
	int r = gossip__sync_open(&pos, end, GOSSIP_SYNC_DIFF, 5, &sender);
	if (r < 0)
		return r;
	if (gossip__r_array(&pos, end, &nm) < 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < nm; i++)
		if (diff_member(&pos, end, &m, &state, &age) < 0)
			return -EBADMSG;
	if (gossip__r_array(&pos, end, &nr) < 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < nr; i++)
		if (diff_record(&pos, end, &m) < 0)
			return -EBADMSG;
	if (pos != end)
		return -EBADMSG;

	advance(g, now);
	now = g->now;
	g->st.syncs_applied++;
	pos = buf;
	gossip__sync_open(&pos, end, GOSSIP_SYNC_DIFF, 5, &sender);
	gossip__r_array(&pos, end, &nm);
	int changed = 0, ret = 0;
	for (uint32_t i = 0; i < nm; i++) {
		diff_member(&pos, end, &m, &state, &age);
		if (id_eq(m.id, sender) && state != GOSSIP_ALIVE)
			continue;	/* a peer does not bury itself while talking to us */
		r = merge_member(g, &m, (int)state, age, sender, now);
		if (r < 0)
			ret = r;
		else
			changed += r > 0;
	}
	gossip__r_array(&pos, end, &nr);
	bool bcast = nr <= SYNC_REBROADCAST_MAX;
	for (uint32_t i = 0; i < nr; i++) {
		diff_record(&pos, end, &m);
		r = on_record(g, &m, bcast);
		if (r < 0)
			ret = r;
		else
			changed += r > 0;
	}
	return ret < 0 ? ret : changed;
}
