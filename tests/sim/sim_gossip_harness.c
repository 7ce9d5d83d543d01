/*
 * tests/sim/sim_gossip_harness.c: see sim_gossip_harness.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/proto.h"
#include "gossip/transport.h" /* GOSSIP_TRANSPORT_FOLLOWUP*: its follow-ups, mirrored */
#include "tests/sim/sim_gossip_harness.h"

enum { EV_PKT, EV_TICK, EV_SYNC, EV_FOLLOWUP };

struct ev {
	uint64_t at, seq;
	int type;
	unsigned node;
	uint64_t gen;
	struct gossip_addr from;
	size_t len;
	uint8_t *buf;
};

struct pmember {
	struct gossip_member m;
	uint8_t labels[GOSSIP_LABELS_MAX];
};

struct precord {
	uint8_t owner[GOSSIP_ID_LEN];
	uint8_t key[GOSSIP_KEY_MAX];
	size_t key_len;
	uint64_t version;
	uint8_t *value;
	size_t value_len;
};

struct node {
	struct simg *s;
	unsigned idx;
	struct gossip *g;
	uint8_t id[GOSSIP_ID_LEN];
	struct gossip_addr addr;
	bool up, stopped;
	uint64_t gen;
	/* the transport's follow-up exchanges after a join (transport.h): how many are still
	 * allowed, and when the one armed is due (its single timer: a re-arm replaces it) */
	unsigned followups;
	uint64_t followup_at;
	uint64_t tick_at;	/* time of the live tick event, UINT64_MAX if none */
	/* The node's own clock, as its core sees it: simulator time + clk. Random per node,
	 * like the monotonic clocks of different hosts (the probe schedule must sync them). */
	uint64_t clk;
	int group;
	double loss;
	uint32_t slow_ms;
	/* what the agent would have persisted */
	uint64_t inc;
	struct pmember *pm;
	size_t npm;
	struct precord *pr;
	size_t npr;
};

struct link {
	unsigned a, b;		/* directed: a -> b */
	double loss;
	uint32_t delay_ms;
};

#define MAX_LINKS 256

struct simg {
	struct simg_opts o;
	struct link links[MAX_LINKS];
	unsigned nlinks;
	uint64_t seed, rng, now, evseq;
	struct ev **heap;
	size_t nheap, cheap;
	struct node *nodes;
	unsigned n;
	struct simg_hooks hooks;
	struct simg_traffic tr;
	uint8_t *scratch;
};

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint32_t simg_rand(struct simg *s)
{
	return (uint32_t)(splitmix(&s->rng) >> 32);
}

static double frand(struct simg *s)
{
	return (splitmix(&s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p) {
		fprintf(stderr, "sim: out of memory\n");
		abort();
	}
	return p;
}

/* ---- event heap ---- */

static bool ev_less(const struct ev *a, const struct ev *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_push(struct simg *s, struct ev *e)
{
	e->seq = s->evseq++;
	if (s->nheap == s->cheap) {
		s->cheap = s->cheap ? s->cheap * 2 : 1024;
		s->heap = realloc(s->heap, s->cheap * sizeof(*s->heap));
		if (!s->heap)
			abort();
	}
	size_t i = s->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_less(e, s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
}

static struct ev *heap_pop(struct simg *s)
{
	struct ev *top = s->heap[0], *last = s->heap[--s->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && ev_less(s->heap[c + 1], s->heap[c]))
			c++;
		if (!ev_less(s->heap[c], last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->nheap)
		s->heap[i] = last;
	return top;
}

static void schedule(struct simg *s, uint64_t at, int type, unsigned node, uint64_t gen)
{
	struct ev *e = xcalloc(1, sizeof(*e));
	e->at = at;
	e->type = type;
	e->node = node;
	e->gen = gen;
	heap_push(s, e);
}

/* The node's clock now. */
static uint64_t nnow(const struct node *nd)
{
	return nd->s->now + nd->clk;
}

uint64_t simg_node_now(const struct simg *s, unsigned i)
{
	return nnow(&s->nodes[i]);
}

/* Make sure a tick event exists at the core's next deadline (slow nodes: later). */
static void resched(struct node *nd)
{
	if (!nd->up)
		return;
	struct simg *s = nd->s;
	uint64_t d = gossip_next_deadline(nd->g);
	d = d > nd->clk ? d - nd->clk : 0;
	if (d < s->now)
		d = s->now;
	if (d < nd->tick_at) {
		nd->tick_at = d;
		schedule(s, d, EV_TICK, nd->idx, nd->gen);
	}
}

/* ---- env for the cores ---- */

static int addr_index(const struct simg *s, const struct gossip_addr *a)
{
	if (a->family != GOSSIP_AF_INET || a->ip[0] != 10)
		return -1;
	unsigned i = (unsigned)a->ip[1] << 16 | (unsigned)a->ip[2] << 8 | a->ip[3];
	return i < s->n ? (int)i : -1;
}

static void env_send(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len)
{
	struct node *src = ud;
	struct simg *s = src->s;
	if (len > src->s->o.cfg.mtu - GOSSIP_SEAL_OVERHEAD) {
		fprintf(stderr, "sim: node %u sent %zu bytes, over the plaintext limit %zu\n",
			src->idx, len, (size_t)(src->s->o.cfg.mtu - GOSSIP_SEAL_OVERHEAD));
		abort();
	}
	s->tr.packets++;
	s->tr.bytes += len + GOSSIP_SEAL_OVERHEAD;
	int di = addr_index(s, to);
	if (di < 0) {
		s->tr.dropped++;
		return;
	}
	struct node *dst = &s->nodes[di];
	double loss = s->o.loss + src->loss + dst->loss;
	uint32_t extra = 0;
	for (unsigned k = 0; k < s->nlinks; k++)
		if (s->links[k].a == src->idx && s->links[k].b == (unsigned)di) {
			loss += s->links[k].loss;
			extra += s->links[k].delay_ms;
		}
	if (!dst->up || dst->group != src->group || (loss > 0 && frand(s) < loss)) {
		s->tr.dropped++;
		return;
	}
	/* One allocation per packet: the event and its bytes (e->buf points behind it). */
	struct ev *e = xcalloc(1, sizeof(*e) + len);
	e->type = EV_PKT;
	e->node = (unsigned)di;
	e->gen = dst->gen;
	e->from = src->addr;
	e->at = s->now + s->o.delay_ms + (s->o.jitter_ms ? simg_rand(s) % (s->o.jitter_ms + 1) : 0);
	/* A slow node handles every packet slow_ms late (CPU starved, not a serial queue). */
	e->at += dst->slow_ms + extra;
	e->buf = (uint8_t *)(e + 1);
	memcpy(e->buf, buf, len);
	e->len = len;
	heap_push(s, e);
}

static uint32_t env_random(void *ud)
{
	struct node *nd = ud;
	return simg_rand(nd->s);
}

static void env_member(void *ud, const struct gossip_member *m)
{
	struct node *nd = ud;
	if (m->self)
		nd->inc = m->incarnation;
	if (nd->s->hooks.on_member)
		nd->s->hooks.on_member(nd->s->hooks.ud, nd->s, nd->idx, m);
}

static void env_record(void *ud, const struct gossip_record *r)
{
	struct node *nd = ud;
	if (nd->s->hooks.on_record)
		nd->s->hooks.on_record(nd->s->hooks.ud, nd->s, nd->idx, r);
}

/* ---- lifecycle ---- */

struct simg *simg_new(const struct simg_opts *o)
{
	struct simg *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	if (!s->o.delay_ms && !s->o.jitter_ms) {
		s->o.delay_ms = 1;
		s->o.jitter_ms = 2;
	}
	s->seed = o->seed;
	const char *env = getenv("SEED");
	if (env && *env)
		s->seed = strtoull(env, NULL, 10);
	if (!s->seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s->seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
	}
	if (!o->quiet) {
		printf("seed=%llu\n", (unsigned long long)s->seed);
		fflush(stdout);
	}
	s->rng = s->seed;
	s->nodes = xcalloc(o->max_nodes, sizeof(*s->nodes));
	return s;
}

static void persist_clear(struct node *nd)
{
	for (size_t i = 0; i < nd->npr; i++)
		free(nd->pr[i].value);
	free(nd->pr);
	free(nd->pm);
	nd->pr = NULL;
	nd->pm = NULL;
	nd->npr = nd->npm = 0;
}

void simg_free(struct simg *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->n; i++) {
		gossip_free(s->nodes[i].g);
		persist_clear(&s->nodes[i]);
	}
	for (size_t i = 0; i < s->nheap; i++) {
		free(s->heap[i]);
	}
	free(s->heap);
	free(s->nodes);
	free(s);
}

void simg_set_hooks(struct simg *s, const struct simg_hooks *h)
{
	s->hooks = *h;
}

uint64_t simg_seed(const struct simg *s)
{
	return s->seed;
}

uint64_t simg_now(const struct simg *s)
{
	return s->now;
}

unsigned simg_count(const struct simg *s)
{
	return s->n;
}

struct gossip *simg_core(struct simg *s, unsigned i)
{
	return i < s->n && s->nodes[i].up ? s->nodes[i].g : NULL;
}

bool simg_up(const struct simg *s, unsigned i)
{
	return i < s->n && s->nodes[i].up;
}

const uint8_t *simg_id(const struct simg *s, unsigned i)
{
	return s->nodes[i].id;
}

int simg_index(const struct simg *s, const uint8_t *id)
{
	unsigned i = (unsigned)id[0] << 24 | (unsigned)id[1] << 16 | (unsigned)id[2] << 8 | id[3];
	return i < s->n && memcmp(s->nodes[i].id, id, GOSSIP_ID_LEN) == 0 ? (int)i : -1;
}

static int start_core(struct simg *s, struct node *nd, uint64_t inc)
{
	struct gossip_config cfg = s->o.cfg;
	char name[32];
	snprintf(name, sizeof name, "n%u", nd->idx);
	memcpy(cfg.id, nd->id, GOSSIP_ID_LEN);
	cfg.name = name;
	cfg.addr = nd->addr;
	cfg.incarnation = inc;
	/* simulated clusters go past the default table bound (gossip.h "Bounds") */
	if (cfg.members_max < (size_t)s->o.max_nodes + 16)
		cfg.members_max = (size_t)s->o.max_nodes + 16;
	struct gossip_env env = { .send = env_send, .random = env_random, .on_member = env_member,
				  .on_record = env_record, .ud = nd };
	int r = gossip_new(&cfg, &env, &nd->g);
	if (r < 0)
		return r;
	nd->up = true;
	nd->gen++;
	nd->followups = 0;
	nd->followup_at = UINT64_MAX;
	nd->tick_at = UINT64_MAX;
	nd->inc = inc;
	if (s->o.sync_interval_ms)
		schedule(s, s->now + 1 + simg_rand(s) % s->o.sync_interval_ms, EV_SYNC, nd->idx,
			 nd->gen);
	return 0;
}

static bool sync_pair(struct simg *s, struct node *a, struct node *b, bool *ret_same);
static void sync_done(struct simg *s, struct node *a, int r, bool same, bool join);

int simg_spawn(struct simg *s, int seed)
{
	if (s->n >= s->o.max_nodes)
		return -ENOSPC;
	unsigned i = s->n++;
	struct node *nd = &s->nodes[i];
	memset(nd, 0, sizeof(*nd));
	nd->s = s;
	nd->idx = i;
	nd->id[0] = (uint8_t)(i >> 24);
	nd->id[1] = (uint8_t)(i >> 16);
	nd->id[2] = (uint8_t)(i >> 8);
	nd->id[3] = (uint8_t)i;
	for (int k = 4; k < GOSSIP_ID_LEN; k++)
		nd->id[k] = (uint8_t)simg_rand(s);
	nd->addr.family = GOSSIP_AF_INET;
	nd->addr.port = 7946;
	nd->addr.ip[0] = 10;
	nd->addr.ip[1] = (uint8_t)(i >> 16);
	nd->addr.ip[2] = (uint8_t)(i >> 8);
	nd->addr.ip[3] = (uint8_t)i;
	nd->clk = simg_rand(s);
	int r = start_core(s, nd, 1);
	if (r < 0)
		return r;
	gossip_tick(nd->g, nnow(nd));
	if (seed >= 0 && (unsigned)seed < s->n && seed != (int)i) {
		gossip_join(nd->g, nnow(nd), &s->nodes[seed].addr, 1);
		/* the transport's push-pull with the seed on join */
		if (s->nodes[seed].up && s->nodes[seed].group == nd->group) {
			bool same = false;
			sync_done(s, nd, sync_pair(s, nd, &s->nodes[seed], &same), same, true);
		}
	}
	resched(nd);
	return (int)i;
}

int simg_spawn_converged(struct simg *s, unsigned n)
{
	if (n > s->o.max_nodes - s->n)
		return -ENOSPC;
	for (unsigned k = 0; k < n; k++) {
		int r = simg_spawn(s, -1);
		if (r < 0)
			return r;
	}
	/* What a converged cluster persists of each member, built once (N^2 restores follow). */
	struct gossip_member *pm = xcalloc(s->n, sizeof(*pm));
	for (unsigned j = 0; j < s->n; j++) {
		const struct node *o = &s->nodes[j];
		if (!o->up)
			continue;
		memcpy(pm[j].id, o->id, GOSSIP_ID_LEN);
		snprintf(pm[j].name, sizeof pm[j].name, "n%u", j);
		pm[j].addr = o->addr;
		pm[j].incarnation = gossip_self(o->g)->incarnation;
		pm[j].state = GOSSIP_ALIVE;
	}
	int r = 0;
	for (unsigned i = 0; i < s->n && r >= 0; i++) {
		struct node *nd = &s->nodes[i];
		if (!nd->up)
			continue;
		for (unsigned j = 0; j < s->n && r >= 0; j++)
			if (j != i && s->nodes[j].up) {
				pm[j].state_change = nnow(nd);
				r = gossip_member_restore(nd->g, &pm[j]);
			}
		resched(nd);
	}
	free(pm);
	return r < 0 ? r : 0;
}

static int persist_member(void *ud, const struct gossip_member *m)
{
	struct node *nd = ud;
	struct pmember *p = &nd->pm[nd->npm++];
	p->m = *m;
	if (m->labels_len)
		memcpy(p->labels, m->labels, m->labels_len);
	p->m.labels = p->labels;
	return 0;
}

static int persist_record(void *ud, const struct gossip_record *r)
{
	struct node *nd = ud;
	struct precord *p = &nd->pr[nd->npr++];
	memcpy(p->owner, r->owner, GOSSIP_ID_LEN);
	memcpy(p->key, r->key, r->key_len);
	p->key_len = r->key_len;
	p->version = r->version;
	p->value = xcalloc(1, r->value_len);
	if (r->value_len)
		memcpy(p->value, r->value, r->value_len);
	p->value_len = r->value_len;
	return 0;
}

void simg_crash(struct simg *s, unsigned i)
{
	struct node *nd = &s->nodes[i];
	if (!nd->up)
		return;
	persist_clear(nd);
	nd->pm = xcalloc(gossip_member_count(nd->g, -1), sizeof(*nd->pm));
	gossip_member_foreach(nd->g, persist_member, nd);
	nd->pr = xcalloc(gossip_record_count(nd->g), sizeof(*nd->pr));
	gossip_record_foreach(nd->g, persist_record, nd);
	gossip_free(nd->g);
	nd->g = NULL;
	nd->up = false;
	nd->gen++;
}

int simg_restart(struct simg *s, unsigned i)
{
	struct node *nd = &s->nodes[i];
	if (nd->up || nd->stopped)
		return -EALREADY;
	int r = start_core(s, nd, nd->inc + 1);
	if (r < 0)
		return r;
	for (size_t k = 0; k < nd->npm; k++)
		if ((r = gossip_member_restore(nd->g, &nd->pm[k].m)) < 0)
			return r;
	for (size_t k = 0; k < nd->npr; k++) {
		struct gossip_record rec = { .key = nd->pr[k].key, .key_len = nd->pr[k].key_len,
					     .version = nd->pr[k].version,
					     .value = nd->pr[k].value,
					     .value_len = nd->pr[k].value_len };
		memcpy(rec.owner, nd->pr[k].owner, GOSSIP_ID_LEN);
		if ((r = gossip_record_restore(nd->g, &rec)) < 0)
			return r;
	}
	gossip_tick(nd->g, nnow(nd));
	/* Rejoin whoever we knew: a few random remembered members, and one push-pull. */
	struct gossip_addr seeds[3];
	size_t ns = 0;
	int first = -1;
	for (int tries = 0; tries < 32 && ns < 3 && nd->npm > 1; tries++) {
		const struct gossip_member *m = &nd->pm[simg_rand(s) % nd->npm].m;
		if (m->self || m->state == GOSSIP_LEFT)
			continue;
		seeds[ns++] = m->addr;
		if (first < 0)
			first = addr_index(s, &m->addr);
	}
	gossip_join(nd->g, nnow(nd), seeds, ns);
	if (first >= 0 && s->nodes[first].up && s->nodes[first].group == nd->group) {
		bool same = false;
		sync_done(s, nd, sync_pair(s, nd, &s->nodes[first], &same), same, true);
	}
	resched(nd);
	return 0;
}

void simg_leave(struct simg *s, unsigned i)
{
	struct node *nd = &s->nodes[i];
	if (!nd->up)
		return;
	gossip_leave(nd->g, nnow(nd));
	resched(nd);
}

void simg_stop(struct simg *s, unsigned i)
{
	simg_crash(s, i);
	s->nodes[i].stopped = true;
}

void simg_set_group(struct simg *s, unsigned i, int group)
{
	s->nodes[i].group = group;
}

void simg_set_loss(struct simg *s, double loss)
{
	s->o.loss = loss;
}

void simg_set_node_loss(struct simg *s, unsigned i, double loss)
{
	s->nodes[i].loss = loss;
}

void simg_set_link(struct simg *s, unsigned a, unsigned b, double loss, uint32_t delay_ms)
{
	for (unsigned k = 0; k < s->nlinks; k++)
		if (s->links[k].a == a && s->links[k].b == b) {
			s->links[k].loss = loss;
			s->links[k].delay_ms = delay_ms;
			return;
		}
	if (s->nlinks < MAX_LINKS)
		s->links[s->nlinks++] = (struct link){ a, b, loss, delay_ms };
}

void simg_set_sync_interval(struct simg *s, uint32_t ms)
{
	s->o.sync_interval_ms = ms;
}

void simg_set_slow(struct simg *s, unsigned i, uint32_t ms)
{
	s->nodes[i].slow_ms = ms;
}

int simg_put(struct simg *s, unsigned i, const char *key, uint64_t version, const void *val,
	     size_t len)
{
	struct node *nd = &s->nodes[i];
	if (!nd->up)
		return -ESHUTDOWN;
	int r = gossip_record_put(nd->g, nnow(nd), (const uint8_t *)key, strlen(key), version, val,
				  len);
	resched(nd);
	return r;
}

/* ---- anti-entropy, as the transport runs it (A initiates with B) ---- */

static void followup_arm(struct simg *s, struct node *a)
{
	uint32_t base = GOSSIP_TRANSPORT_FOLLOWUP_MS;
	a->followup_at = s->now + base - base / 4 + simg_rand(s) % (base / 2 + 1);
	schedule(s, a->followup_at, EV_FOLLOWUP, a->idx, a->gen);
}

/* An exchange @a initiated ended (@r: 1 done, 0 failed; @same: the views were equal), as the
 * transport's ae_done sees it: a join's first exchange starts the follow-ups; during them,
 * equal views end the series and anything else arms the next one. (A failed join exchange,
 * which the transport retries with another member, is not modelled.) */
static void sync_done(struct simg *s, struct node *a, int r, bool same, bool join)
{
	if (join) {
		if (r == 1) {
			a->followups = GOSSIP_TRANSPORT_FOLLOWUPS;
			followup_arm(s, a);
		}
	} else if (a->followups) {
		if (r == 1 && same)
			a->followups = 0;
		else
			followup_arm(s, a);
	}
}

/* Are two digests equal but for their sender (what the transport's SUMMARY compares)? */
static bool digests_same(const uint8_t *a, size_t la, const uint8_t *b, size_t lb)
{
	const uint8_t *pa = a, *pb = b, *id;
	if (gossip__sync_open(&pa, a + la, GOSSIP_SYNC_DIGEST, 6, &id) < 0 ||
	    gossip__sync_open(&pb, b + lb, GOSSIP_SYNC_DIGEST, 6, &id) < 0)
		return false;
	return a + la - pa == b + lb - pb && memcmp(pa, pb, (size_t)(a + la - pa)) == 0;
}

/* One exchange initiated by @a; *@ret_same: the two digests were equal (the transport's
 * SAME). Returns whether it completed. */
static bool sync_pair(struct simg *s, struct node *a, struct node *b, bool *ret_same)
{
	uint8_t *da = NULL, *db = NULL, *xa = NULL, *xb = NULL;
	size_t lda, ldb, lxa, lxb;
	bool ok = false;
	if (gossip_sync_digest(a->g, &da, &lda) < 0)
		goto out;
	if (gossip_sync_diff(b->g, nnow(b), da, lda, 0, &xb, &lxb) < 0)
		goto out;
	if (gossip_sync_digest(b->g, &db, &ldb) < 0)
		goto out;
	if (gossip_sync_apply(a->g, nnow(a), xb, lxb) < 0)
		goto out;
	if (gossip_sync_diff(a->g, nnow(a), db, ldb, 0, &xa, &lxa) < 0)
		goto out;
	if (gossip_sync_apply(b->g, nnow(b), xa, lxa) < 0)
		goto out;
	s->tr.syncs++;
	s->tr.sync_bytes += lda + ldb + lxa + lxb;
	ok = true;
	*ret_same = digests_same(da, lda, db, ldb);
out:
	free(da);
	free(db);
	free(xa);
	free(xb);
	resched(a);
	resched(b);
	return ok;
}

/* An exchange with a peer of gossip_sync_pick. @return -1: nobody to pick; 0: failed (the
 * peer is down or cut off); 1: done (*@ret_same as sync_pair). */
static int do_sync(struct simg *s, struct node *nd, bool *ret_same)
{
	struct gossip_addr to;
	if (gossip_sync_pick(nd->g, &to) < 0)
		return -1;
	int j = addr_index(s, &to);
	if (j < 0 || !s->nodes[j].up || s->nodes[j].group != nd->group)
		return 0;
	double loss = s->o.loss + nd->loss + s->nodes[j].loss;
	for (unsigned k = 0; k < s->nlinks; k++)
		if ((s->links[k].a == nd->idx && s->links[k].b == (unsigned)j) ||
		    (s->links[k].b == nd->idx && s->links[k].a == (unsigned)j))
			loss += s->links[k].loss;
	if (loss >= 1.0)
		return 0;
	return sync_pair(s, nd, &s->nodes[j], ret_same) ? 1 : 0;
}

/* ---- the loop ---- */

static void run_event(struct simg *s, struct ev *e)
{
	struct node *nd = &s->nodes[e->node];
	if (!nd->up || e->gen != nd->gen)
		return;
	switch (e->type) {
	case EV_PKT:
		gossip_recv(nd->g, nnow(nd), &e->from, e->buf, e->len);
		resched(nd);
		break;
	case EV_TICK:
		if (e->at != nd->tick_at)
			return;
		nd->tick_at = UINT64_MAX;
		gossip_tick(nd->g, nnow(nd));
		resched(nd);
		break;
	case EV_FOLLOWUP: {
		if (e->at != nd->followup_at || !nd->followups)
			return;
		nd->followup_at = UINT64_MAX;
		bool same = false;
		int r = do_sync(s, nd, &same);
		if (r >= 0) {	/* started (as the transport counts them); -1: nobody to ask */
			nd->followups--;
			sync_done(s, nd, r, same, false);
		}
		break;
	}
	case EV_SYNC: {
		if (!s->o.sync_interval_ms)
			break;	/* anti-entropy switched off */
		bool same = false;
		int r = do_sync(s, nd, &same);
		if (r >= 0)
			sync_done(s, nd, r, same, false);
		schedule(s, s->now + s->o.sync_interval_ms / 2 +
				    simg_rand(s) % (s->o.sync_interval_ms + 1), EV_SYNC, nd->idx,
			 nd->gen);
		break;
	}
	}
}

void simg_run_until(struct simg *s, uint64_t t)
{
	while (s->nheap && s->heap[0]->at <= t) {
		struct ev *e = heap_pop(s);
		if (e->at > s->now)
			s->now = e->at;
		run_event(s, e);
		free(e);
	}
	if (t > s->now)
		s->now = t;
}

uint64_t simg_run_until_pred(struct simg *s, bool (*pred)(struct simg *s, void *ud), void *ud,
			     uint64_t step_ms, uint64_t limit_ms)
{
	uint64_t end = s->now + limit_ms;
	while (s->now <= end) {
		if (pred(s, ud))
			return s->now ? s->now : 1;
		simg_run_until(s, s->now + step_ms);
	}
	return 0;
}

static bool participating(const struct simg *s, unsigned i)
{
	return s->nodes[i].up && gossip_self(s->nodes[i].g)->state == GOSSIP_ALIVE;
}

bool simg_converged(struct simg *s, void *ud)
{
	size_t up = 0;
	for (unsigned i = 0; i < s->n; i++)
		up += participating(s, i);
	for (unsigned i = 0; i < s->n; i++)
		if (participating(s, i) && gossip_member_count(s->nodes[i].g, GOSSIP_ALIVE) != up)
			return false;
	/* counts agree; now the identities */
	for (unsigned i = 0; i < s->n; i++) {
		if (!participating(s, i))
			continue;
		for (unsigned j = 0; j < s->n; j++) {
			if (!participating(s, j))
				continue;
			const struct gossip_member *m = gossip_member_get(s->nodes[i].g,
									  s->nodes[j].id);
			if (!m || m->state != GOSSIP_ALIVE)
				return false;
		}
	}
	return true;
}

void simg_traffic(const struct simg *s, struct simg_traffic *ret)
{
	*ret = s->tr;
}
