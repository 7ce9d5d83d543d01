/*
 * agent/brain.c: the cluster brain (see brain.h for the data flow and the contracts).
 *
 * State, per service (struct svc), all on the loop thread:
 *   log     the winner per rev, as agree_accept merged it (mirrors the store's revisions)
 *   votes   one per (rev, voter), with the subject and target the store does not carry
 *   local   the `rollback --local` marker
 *   what runs, what is desired, the health of our instance, our swapping flag
 * and, for the whole cluster, the latest health record of every (node, service) and a ring of
 * events for `agentctl events`.
 *
 * Why the brain re-examines everything on a membership change: gossip hands a record over
 * once (when it is newer), but a rollback refused now for want of known voters (AGREE_ECERT)
 * may be valid once this node learns of more members. Re-running the held records through
 * the same path is idempotent (agree_accept answers KEEP for what is held), cheap at the sizes
 * Shoal targets, and keeps one code path. A 5 s timer does the same as a safety net.
 */
#include "agent/brain.h"

#include <sodium.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/cluster.h"
#include "agent/health.h"
#include "agent/hlc.h"
#include "agent/log.h"
#include "agent/reconcile.h"

void (*brain_need_artifact)(void *ud, const char *service, uint64_t rev,
			    const struct store_id *artifact,
			    const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders);
void *brain_need_artifact_ud;

#define RESYNC_MS   5000
#define DEBOUNCE_MS 50
#define HSTATE_NONE 0xff
#define SETTLE_MS   1000	/* pacing: how long lower-ranked peers get to announce a new rev */

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
};

struct peer_health {
	uint8_t node[STORE_NODE_ID_LEN];
	struct brain_health h;
};

struct brain_ev {
	uint64_t seq;
	uint64_t wall_ms;
	char kind[16];
	char service[65];
	uint64_t rev;
	char node[65];
	char text[200];
};

struct brain {
	uv_loop_t *loop;
	struct store *s;
	struct brain_net net;
	uint8_t id[STORE_NODE_ID_LEN];
	char name[65];
	char site[65];
	bool has_site;
	char advertise[64];
	uint32_t reconnect_ms;
	uint64_t next_reconnect;	/* uv_now of the next reconnect attempt */
	char (*roster_addrs)[64];	/* parallel to roster */
	char *state_dir;
	char *unit_dir, *bus_address, *docker_host;	/* for pcfg; NULL = plugin default */
	struct brain_quorum_rule *quorums;
	size_t nquorums;
	unsigned max_par;
	bool no_runtime;
	struct reconcile_opts ropts;

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
	/* the roster (agree.h rule 0): owners of roster records not marked left, plus live
	 * members whose record has not arrived yet; rebuilt with the member view */
	struct agree_member *roster;
	size_t nroster;
	char (*roster_sites)[65];

	struct brain_ev *ring;
	uint64_t seq;

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
};

/* ---- Small helpers ------------------------------------------------------------------------- */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t stamp(struct brain *b)
{
	uint64_t t = 0;
	if (hlc_now(&b->clock, wall_ms(), &t) < 0)
		t = b->clock.last + 1;
	return t;
}

static void observe(struct brain *b, uint64_t remote)
{
	if (remote && hlc_update(&b->clock, wall_ms(), remote, NULL) == -ERANGE)
		b->hlc_refused++;
}

static void hex_id(const uint8_t *id, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static const char *member_name(struct brain *b, const uint8_t id[STORE_NODE_ID_LEN], char *buf)
{
	for (size_t i = 0; i < b->nmembers; i++)
		if (memcmp(b->members[i].id, id, STORE_NODE_ID_LEN) == 0 && b->member_names[i][0])
			return b->member_names[i];
	hex_id(id, 4, buf);
	return buf;
}

static void event(struct brain *b, const char *kind, const char *service, uint64_t rev,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void event(struct brain *b, const char *kind, const char *service, uint64_t rev,
		  const char *fmt, ...)
{
	struct brain_ev *e = &b->ring[b->seq % BRAIN_EVENTS_MAX];
	va_list ap;
	memset(e, 0, sizeof *e);
	e->seq = ++b->seq;
	e->wall_ms = wall_ms();
	snprintf(e->kind, sizeof e->kind, "%s", kind);
	snprintf(e->service, sizeof e->service, "%s", service ? service : "");
	e->rev = rev;
	snprintf(e->node, sizeof e->node, "%s", b->name);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	log_info("event %s %s rev %" PRIu64 ": %s", e->kind, e->service, rev, e->text);
}

uint64_t brain_event_seq(const struct brain *b)
{
	return b->seq;
}

int brain_quorum_parse(const char *s, struct brain_quorum_rule *ret)
{
	struct brain_quorum_rule q;
	const char *eq;
	unsigned long a, d;
	char *end;

	if (!s || !ret || !(eq = strchr(s, '=')) || eq == s || (size_t)(eq - s) > 64)
		return -EINVAL;
	memset(&q, 0, sizeof q);
	memcpy(q.service, s, (size_t)(eq - s));
	for (const char *p = q.service; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return -EINVAL;
	eq++;
	if (strcmp(eq, "majority") == 0) {
		q.q.kind = AGREE_QUORUM_MAJORITY;
	} else {
		if (*eq < '0' || *eq > '9')
			return -EINVAL;
		errno = 0;
		a = strtoul(eq, &end, 10);
		if (errno || a == 0 || a > 100000)
			return -EINVAL;
		if (*end == 0) {
			q.q.kind = AGREE_QUORUM_COUNT;
			q.q.count = (uint32_t)a;
		} else if (*end == '/') {
			const char *p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			d = strtoul(p, &end, 10);
			if (errno || *end || d == 0 || d > 100000 || a > d)
				return -EINVAL;
			q.q.kind = AGREE_QUORUM_FRACTION;
			q.q.num = (uint32_t)a;
			q.q.den = (uint32_t)d;
		} else {
			return -EINVAL;
		}
	}
	if (agree_quorum_check(&q.q) < 0)
		return -EINVAL;
	*ret = q;
	return 0;
}

static const struct store_quorum *quorum_of(struct brain *b, const char *service)
{
	static const struct store_quorum majority = {.kind = AGREE_QUORUM_MAJORITY};
	for (size_t i = 0; i < b->nquorums; i++)
		if (strcmp(b->quorums[i].service, service) == 0)
			return &b->quorums[i].q;
	return &majority;
}

static const char *quorum_name(const struct store_quorum *q)
{
	static char buf[2][32];
	static int k;
	char *o = buf[k++ & 1];
	if (q->kind == AGREE_QUORUM_COUNT)
		snprintf(o, 32, "%" PRIu32, q->count);
	else if (q->kind == AGREE_QUORUM_FRACTION)
		snprintf(o, 32, "%" PRIu32 "/%" PRIu32, q->num, q->den);
	else
		snprintf(o, 32, "majority");
	return o;
}

/* Has this node completed its first full anti-entropy exchange (agree.h rule 0)? */
static bool synced(struct brain *b)
{
	return !b->net.synced || b->net.synced(b->net.ud);
}

/* ---- Services ------------------------------------------------------------------------------ */

static struct svc *svc_find(struct brain *b, const char *name)
{
	for (size_t i = 0; i < b->nsvcs; i++)
		if (strcmp(b->svcs[i]->name, name) == 0)
			return b->svcs[i];
	return NULL;
}

static struct svc *svc_get(struct brain *b, const char *name)
{
	struct svc *v = svc_find(b, name);
	if (v)
		return v;
	if (strlen(name) > 64)
		return NULL;
	struct svc **n = realloc(b->svcs, (b->nsvcs + 1) * sizeof *n);
	if (!n)
		return NULL;
	b->svcs = n;
	v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	snprintf(v->name, sizeof v->name, "%s", name);
	v->hstate = HSTATE_NONE;
	b->svcs[b->nsvcs++] = v;
	return v;
}

static void svc_free(struct svc *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nlog; i++)
		store_revision_release(&v->log[i]);
	free(v->log);
	free(v->votes);
	free(v);
}

static uint64_t svc_max_rev(const struct svc *v)
{
	uint64_t m = 0;
	for (size_t i = 0; i < v->nlog; i++)
		if (v->log[i].rev > m)
			m = v->log[i].rev;
	return m;
}

/* Copy @r (deep) into the log, replacing the record at its rev. */
static int log_set(struct svc *v, const struct store_revision *r)
{
	struct store_revision c;
	if (store_revision_copy(&c, r) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < v->nlog; i++) {
		if (v->log[i].rev == r->rev) {
			store_revision_release(&v->log[i]);
			v->log[i] = c;
			return 0;
		}
	}
	if (v->nlog == v->caplog) {
		size_t cap = v->caplog ? 2 * v->caplog : 16;
		struct store_revision *n = realloc(v->log, cap * sizeof *n);
		if (!n) {
			store_revision_release(&c);
			return -ENOMEM;
		}
		v->log = n;
		v->caplog = cap;
	}
	v->log[v->nlog++] = c;
	return 0;
}

/* Add a vote; one per (rev, voter): a re-cast (store_vote_newer) replaces the held one.
 * Returns 1 if new or changed, 0 if known or older, -ENOMEM. */
static int vote_add(struct svc *v, const struct store_vote *nv)
{
	for (size_t i = 0; i < v->nvotes; i++) {
		struct store_vote *o = &v->votes[i];
		if (o->rev == nv->rev && memcmp(o->voter, nv->voter, STORE_NODE_ID_LEN) == 0) {
			if (!store_vote_newer(nv, o))
				return 0;
			*o = *nv;
			return 1;
		}
	}
	if (v->nvotes == v->capvotes) {
		size_t cap = v->capvotes ? 2 * v->capvotes : 16;
		struct store_vote *n = realloc(v->votes, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		v->votes = n;
		v->capvotes = cap;
	}
	v->votes[v->nvotes++] = *nv;
	return 1;
}


static bool has_vote(const struct svc *v, const uint8_t *voter, uint64_t rev)
{
	for (size_t i = 0; i < v->nvotes; i++)
		if (v->votes[i].rev == rev &&
		    memcmp(v->votes[i].voter, voter, STORE_NODE_ID_LEN) == 0)
			return true;
	return false;
}

/* ---- Members ------------------------------------------------------------------------------- */

struct mcollect {
	struct brain *b;
	struct agree_member *m;
	char (*sites)[65];
	char (*names)[65];
	size_t n, cap;
	int err;
};

static int member_cb(void *ud, const struct gossip_member *gm)
{
	struct mcollect *c = ud;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct agree_member *m = realloc(c->m, cap * sizeof *m);
		if (!m)
			goto nomem;
		c->m = m;
		char (*s)[65] = realloc(c->sites, cap * sizeof *s);
		if (!s)
			goto nomem;
		c->sites = s;
		char (*nm)[65] = realloc(c->names, cap * sizeof *nm);
		if (!nm)
			goto nomem;
		c->names = nm;
		c->cap = cap;
	}
	struct agree_member *am = &c->m[c->n];
	memset(am, 0, sizeof *am);
	memcpy(am->id, gm->id, STORE_NODE_ID_LEN);
	switch (gm->state) {
	case GOSSIP_ALIVE: am->state = AGREE_ALIVE; break;
	case GOSSIP_SUSPECT: am->state = AGREE_SUSPECT; break;
	case GOSSIP_DEAD: am->state = AGREE_DEAD; break;
	default: am->state = AGREE_LEFT; break;
	}
	c->sites[c->n][0] = 0;
	if (gm->labels && gm->labels_len &&
	    cluster_label_get(gm->labels, gm->labels_len, "site", c->sites[c->n], 65) <= 0)
		c->sites[c->n][0] = 0;
	snprintf(c->names[c->n], 65, "%s", gm->name);
	c->n++;
	return 0;
nomem:
	c->err = -ENOMEM;
	return -ENOMEM;
}

/* Roster entries: one per id; a roster record decides over the member view. */
struct rcollect {
	struct agree_member *m;
	char (*sites)[65];
	char (*addrs)[64];
	uint64_t *rhlc;			/* the entry's roster record stamp (0: none seen) */
	uint64_t *xhlc;			/* the newest removal of the entry (0: none) */
	size_t n, cap;
	int err;
};

static struct agree_member *rc_slot(struct rcollect *c, const uint8_t *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (memcmp(c->m[i].id, id, STORE_NODE_ID_LEN) == 0)
			return &c->m[i];
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct agree_member *m = realloc(c->m, cap * sizeof *m);
		if (!m)
			return NULL;
		c->m = m;
		char (*s)[65] = realloc(c->sites, cap * sizeof *s);
		if (!s)
			return NULL;
		c->sites = s;
		char (*ad)[64] = realloc(c->addrs, cap * sizeof *ad);
		if (!ad)
			return NULL;
		c->addrs = ad;
		uint64_t *rh = realloc(c->rhlc, cap * sizeof *rh);
		if (!rh)
			return NULL;
		c->rhlc = rh;
		uint64_t *xh = realloc(c->xhlc, cap * sizeof *xh);
		if (!xh)
			return NULL;
		c->xhlc = xh;
		c->cap = cap;
	}
	c->addrs[c->n][0] = 0;
	c->rhlc[c->n] = c->xhlc[c->n] = 0;
	memset(&c->m[c->n], 0, sizeof c->m[c->n]);
	memcpy(c->m[c->n].id, id, STORE_NODE_ID_LEN);
	c->m[c->n].state = AGREE_DEAD;	/* not seen alive: still on the roster */
	c->sites[c->n][0] = 0;
	return &c->m[c->n++];
}

static int roster_rec_cb(void *ud, const struct gossip_record *g)
{
	struct rcollect *c = ud;
	struct brain_key k;
	struct brain_roster ro;
	struct brain_remove x;
	struct agree_member *m;
	if (brain_key_parse(g->key, g->key_len, &k) < 0)
		return 0;
	if (k.type == BRAIN_REC_REMOVE && brain_remove_decode(g->value, g->value_len, &x) == 0) {
		if (!(m = rc_slot(c, k.node)))
			goto nomem;
		if (x.hlc > c->xhlc[m - c->m])
			c->xhlc[m - c->m] = x.hlc;
		return 0;
	}
	if (k.type != BRAIN_REC_ROSTER || brain_roster_decode(g->value, g->value_len, &ro) < 0)
		return 0;
	if (!(m = rc_slot(c, g->owner)))
		goto nomem;
	m->state = ro.left ? AGREE_LEFT : AGREE_DEAD;	/* alive once seen as a member */
	snprintf(c->sites[m - c->m], 65, "%s", ro.site);
	snprintf(c->addrs[m - c->m], 64, "%s", ro.addr);
	c->rhlc[m - c->m] = ro.hlc ? ro.hlc : 1;
	return 0;
nomem:
	c->err = -ENOMEM;
	return -ENOMEM;
}

static int roster_refresh(struct brain *b)
{
	struct rcollect c = {0};
	int r = b->net.record_foreach ? b->net.record_foreach(b->net.ud, roster_rec_cb, &c) : 0;
	/* an operator's removal stands until the node publishes a newer roster record */
	for (size_t i = 0; r >= 0 && !c.err && i < c.n; i++)
		if (c.xhlc[i] && c.xhlc[i] >= c.rhlc[i])
			c.m[i].state = AGREE_LEFT;
	/* members whose roster record has not arrived yet (or a transport without records):
	 * on the roster unless they left the gossip cluster */
	for (size_t i = 0; r >= 0 && !c.err && i < b->nmembers; i++) {
		struct agree_member *known = NULL;
		for (size_t j = 0; j < c.n && !known; j++)
			if (memcmp(c.m[j].id, b->members[i].id, STORE_NODE_ID_LEN) == 0)
				known = &c.m[j];
		if (known) {
			/* the gossip view says how reachable a roster member is */
			if (known->state != AGREE_LEFT && c.rhlc[known - c.m])
				known->state = b->members[i].state == AGREE_LEFT
						       ? AGREE_DEAD : b->members[i].state;
			continue;
		}
		if (b->members[i].state == AGREE_LEFT)
			continue;
		struct agree_member *m = rc_slot(&c, b->members[i].id);
		if (!m) {
			c.err = -ENOMEM;
			break;
		}
		c.rhlc[m - c.m] = 1;	/* seen alive: on the roster until removed */
		m->state = b->members[i].state;
		snprintf(c.sites[m - c.m], 65, "%s", b->members[i].site ? b->members[i].site : "");
	}
	free(c.rhlc);
	free(c.xhlc);
	if (r < 0 || c.err < 0) {
		free(c.m);
		free(c.sites);
		free(c.addrs);
		return r < 0 ? r : c.err;
	}
	for (size_t i = 0; i < c.n; i++)
		c.m[i].site = c.sites[i][0] ? c.sites[i] : NULL;
	free(b->roster);
	free(b->roster_sites);
	free(b->roster_addrs);
	b->roster = c.m;
	b->roster_sites = c.sites;
	b->roster_addrs = c.addrs;
	b->nroster = c.n;
	return 0;
}

/*
 * Reconnect (DESIGN.md: two halves separated longer than any timer find each other again):
 * gossip forgets a dead member after the reap time, and its address with it, but the roster
 * keeps both. Every reconnect_ms (+-25%) this node tries to reach ONE roster member it cannot
 * see (dead, or unknown to gossip), picked at random, through its advertised address, like
 * Serf's reconnect_interval: a cluster of N nodes, k of them unreachable, sends about N/30
 * joins a second in all, and a member coming back is found within about k intervals.
 */
static void reconnect(struct brain *b)
{
	uint64_t now = uv_now(b->loop);
	size_t cand = 0, pick;
	if (!b->net.reach || now < b->next_reconnect)
		return;
	b->next_reconnect = now + b->reconnect_ms * 3 / 4 +
			    randombytes_uniform(b->reconnect_ms / 2 + 1);
	for (size_t i = 0; i < b->nroster; i++)
		if (b->roster[i].state == AGREE_DEAD && b->roster_addrs[i][0] &&
		    memcmp(b->roster[i].id, b->id, STORE_NODE_ID_LEN) != 0)
			cand++;
	if (!cand)
		return;
	pick = randombytes_uniform((uint32_t)cand);
	for (size_t i = 0; i < b->nroster; i++) {
		if (b->roster[i].state != AGREE_DEAD || !b->roster_addrs[i][0] ||
		    memcmp(b->roster[i].id, b->id, STORE_NODE_ID_LEN) == 0 || pick--)
			continue;
		int r = b->net.reach(b->net.ud, b->roster_addrs[i]);
		log_debug("reconnect: trying roster member at %s: %s", b->roster_addrs[i],
			  r < 0 ? strerror(-r) : "sent");
		return;
	}
}

static int members_refresh(struct brain *b)
{
	struct mcollect c = {.b = b};
	int r = b->net.member_foreach ? b->net.member_foreach(b->net.ud, member_cb, &c) : 0;
	if (r < 0 || c.err < 0) {
		free(c.m);
		free(c.sites);
		free(c.names);
		return r < 0 ? r : c.err;
	}
	/* a transport that does not list self: add it (we always vote on our own revisions) */
	bool self = false;
	for (size_t i = 0; i < c.n; i++)
		if (memcmp(c.m[i].id, b->id, STORE_NODE_ID_LEN) == 0)
			self = true;
	if (!self) {
		struct gossip_member me;
		memset(&me, 0, sizeof me);
		memcpy(me.id, b->id, STORE_NODE_ID_LEN);
		snprintf(me.name, sizeof me.name, "%s", b->name);
		member_cb(&c, &me);
		if (c.err < 0) {
			free(c.m);
			free(c.sites);
			free(c.names);
			return c.err;
		}
		if (b->has_site)
			snprintf(c.sites[c.n - 1], 65, "%s", b->site);
	}
	for (size_t i = 0; i < c.n; i++)
		c.m[i].site = c.sites[i][0] ? c.sites[i] : NULL;
	free(b->members);
	free(b->member_sites);
	free(b->member_names);
	b->members = c.m;
	b->member_sites = c.sites;
	b->member_names = c.names;
	b->nmembers = c.n;
	return roster_refresh(b);
}

/* ---- Local markers (`rollback --local`) ------------------------------------------------------ */

/*
 * A marker is written to the store (STORE_KV_AGENT, key "local/<service>") before the
 * rollback is acknowledged and deleted when it goes stale, so a node that diverged stays
 * diverged across a restart until the cluster moves past the revision (agentctl(1)).
 * Value: version 1, base_rev be64, base_artifact, target_rev be64, artifact, hlc be64.
 */
#define LOCAL_VAL_LEN (1 + 8 + STORE_ID_LEN + 8 + STORE_ID_LEN + 8)

static void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int local_persist(struct brain *b, struct svc *v)
{
	char key[80];
	int n = snprintf(key, sizeof key, "local/%s", v->name);
	if (!v->have_local) {
		int r = store_kv_del(b->s, STORE_KV_AGENT, key, (size_t)n);
		return r == -ENOENT ? 0 : r;
	}
	uint8_t val[LOCAL_VAL_LEN], *p = val;
	*p++ = 1;
	be64_put(p, v->local.base_rev);
	p += 8;
	memcpy(p, v->local.base_artifact.b, STORE_ID_LEN);
	p += STORE_ID_LEN;
	be64_put(p, v->local.target_rev);
	p += 8;
	memcpy(p, v->local.artifact.b, STORE_ID_LEN);
	p += STORE_ID_LEN;
	be64_put(p, v->local.hlc);
	return store_kv_put(b->s, STORE_KV_AGENT, key, (size_t)n, val, sizeof val);
}

static struct svc *svc_get(struct brain *b, const char *name);

static int local_load_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	struct brain *b = ud;
	char name[65];
	const uint8_t *p = val;
	if (klen <= 6 || klen - 6 >= sizeof name || memcmp(key, "local/", 6) != 0)
		return 0;
	memcpy(name, (const char *)key + 6, klen - 6);
	name[klen - 6] = 0;
	if (vlen != LOCAL_VAL_LEN || p[0] != 1) {
		log_warning("%s: ignoring a local rollback marker in an unknown format", name);
		return 0;
	}
	struct svc *v = svc_get(b, name);
	if (!v)
		return -ENOMEM;
	memset(&v->local, 0, sizeof v->local);
	snprintf(v->local.service, sizeof v->local.service, "%s", name);
	p++;
	v->local.base_rev = be64_get(p);
	p += 8;
	memcpy(v->local.base_artifact.b, p, STORE_ID_LEN);
	p += STORE_ID_LEN;
	v->local.target_rev = be64_get(p);
	p += 8;
	memcpy(v->local.artifact.b, p, STORE_ID_LEN);
	p += STORE_ID_LEN;
	v->local.hlc = be64_get(p);
	v->have_local = true;
	log_notice("%s: still diverged by a local rollback: runs rev %" PRIu64 " instead of rev "
		   "%" PRIu64 " until the cluster moves past it", name, v->local.target_rev,
		   v->local.base_rev);
	return 0;
}

/* ---- Publishing ---------------------------------------------------------------------------- */

static int put_value(struct brain *b, const struct brain_key *k, uint8_t *val, size_t vlen)
{
	char key[BRAIN_REC_KEY_MAX + 1];
	int n = brain_key_format(k, key, sizeof key);
	int r = n;
	if (n >= 0)
		r = b->net.put ? b->net.put(b->net.ud, key, (size_t)n, val, vlen) : 0;
	if (r < 0)
		log_warning("cannot publish record %s: %s", n >= 0 ? key : "?", strerror(-r));
	free(val);
	return r < 0 ? r : 0;
}

/* Our own roster entry (agree.h rule 0): published at every start, "left" only on a
 * graceful leave. */
static int publish_roster(struct brain *b, bool left)
{
	struct brain_roster ro;
	uint8_t *val;
	size_t len;
	memset(&ro, 0, sizeof ro);
	if (b->has_site)
		snprintf(ro.site, sizeof ro.site, "%s", b->site);
	snprintf(ro.addr, sizeof ro.addr, "%s", b->advertise);
	ro.left = left;
	ro.hlc = stamp(b);
	int r = brain_roster_encode(&ro, &val, &len);
	if (r < 0)
		return r;
	struct brain_key k = {.type = BRAIN_REC_ROSTER};
	return put_value(b, &k, val, len);
}

int brain_roster_remove(struct brain *b, const uint8_t id[STORE_NODE_ID_LEN],
			const struct ctl_peer *peer, const char *reason)
{
	struct brain_remove x;
	struct brain_key k = {.type = BRAIN_REC_REMOVE};
	uint8_t *val;
	size_t len;
	char hex[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];
	if (!b || !id)
		return -EINVAL;
	if (memcmp(id, b->id, STORE_NODE_ID_LEN) == 0)
		return -EPERM;	/* a node leaves by itself: agentctl leave */
	memset(&x, 0, sizeof x);
	x.hlc = stamp(b);
	x.uid = peer && peer->known ? peer->uid : UINT32_MAX;
	x.pid = peer && peer->known ? peer->pid : 0;
	snprintf(x.reason, sizeof x.reason, "%s", reason ? reason : "");
	memcpy(k.node, id, STORE_NODE_ID_LEN);
	int r = brain_remove_encode(&x, &val, &len);
	if (r < 0)
		return r;
	r = put_value(b, &k, val, len);
	if (r < 0)
		return r;
	hex_id(id, STORE_NODE_ID_LEN, hex);
	log_notice("roster: node %s (%s) removed by uid %" PRIu32 " pid %" PRId32 "%s%s: later "
		   "revisions no longer count it", member_name(b, id, who), hex, x.uid, x.pid,
		   x.reason[0] ? ": " : "", x.reason);
	event(b, "roster", "", 0, "%s removed from the roster by uid %" PRIu32 "%s%s",
	      member_name(b, id, who), x.uid, x.reason[0] ? ": " : "", x.reason);
	members_refresh(b);
	return 0;
}

int brain_roster_leave(struct brain *b)
{
	if (!b)
		return -EINVAL;
	int r = publish_roster(b, true);
	if (r == 0)
		log_notice("roster: this node leaves the roster (graceful leave): it will not vote "
			   "on later revisions");
	return r;
}

static int publish_rev(struct brain *b, const struct store_revision *r)
{
	uint8_t *val;
	size_t len;
	int err;
	/* chunks first: a receiver that sees the revision can then usually assemble it at once */
	for (uint32_t i = 0; i < brain_cert_chunks(r->ncert); i++) {
		err = brain_cert_encode(r, i, &val, &len);
		if (err < 0)
			return err;
		struct brain_key k = {.type = BRAIN_REC_CERT, .rev = r->rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r->service);
		err = put_value(b, &k, val, len);
		if (err < 0)
			return err;
	}
	for (uint32_t i = 0; i < brain_cert_chunks(r->nelect); i++) {
		err = brain_elect_encode(r, i, &val, &len);
		if (err < 0)
			return err;
		struct brain_key k = {.type = BRAIN_REC_ELECT, .rev = r->rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r->service);
		err = put_value(b, &k, val, len);
		if (err < 0)
			return err;
	}
	err = brain_rev_encode(r, &val, &len);
	if (err < 0)
		return err;
	struct brain_key k = {.type = BRAIN_REC_REV, .rev = r->rev};
	snprintf(k.service, sizeof k.service, "%s", r->service);
	return put_value(b, &k, val, len);
}

static int held_cb(const struct store_artifact_info *a, void *ud)
{
	struct brain_health *h = ud;
	if (h->nheld < BRAIN_HELD_MAX) {
		h->held[h->nheld++] = a->id;
	} else {
		/* keep the newest imports */
		memmove(&h->held[0], &h->held[1], (BRAIN_HELD_MAX - 1) * sizeof h->held[0]);
		h->held[BRAIN_HELD_MAX - 1] = a->id;
	}
	return 0;
}

#define PUBLISH_MS 30
#define VOTE_FLUSH_MS 200	/* received votes gathered per store transaction */

static void publish_health_now(struct brain *b, struct svc *v);

static void on_publish(uv_timer_t *t)
{
	struct brain *b = t->data;
	if (b->closing)
		return;
	for (size_t i = 0; i < b->nsvcs; i++)
		if (b->svcs[i]->health_dirty)
			publish_health_now(b, b->svcs[i]);
}

/*
 * Health records are coalesced: one swap changes the record several times within a few
 * milliseconds (swapping, swapped, starting, desired), and in a large cluster every copy is
 * relayed to every node, competing for piggyback room with the votes and decisions that
 * matter more. So a change marks the service and a PUBLISH_MS timer sends the latest state.
 */
static void publish_health(struct brain *b, struct svc *v)
{
	v->health_dirty = true;
	if (!b->closing && !uv_is_active((uv_handle_t *)&b->pub))
		uv_timer_start(&b->pub, on_publish, PUBLISH_MS, 0);
}

static void publish_health_now(struct brain *b, struct svc *v)
{
	struct brain_health h;

	v->health_dirty = false;
	uint8_t *val;
	size_t len;

	memset(&h, 0, sizeof h);
	snprintf(h.service, sizeof h.service, "%s", v->name);
	h.running_rev = v->running_rev;
	h.running = v->running;
	h.state = v->hstate;
	h.since_hlc = v->hsince;
	h.missed = v->missed;
	h.swapping = v->swapping;
	h.desired_rev = v->have_desired ? v->desired_rev : 0;
	h.diverged = v->diverged;
	if (v->have_local) {
		h.local_base_rev = v->local.base_rev;
		h.local_target_rev = v->local.target_rev;
	}
	store_artifact_foreach(b->s, v->name, held_cb, &h);
	if (brain_health_encode(&h, &val, &len) < 0)
		return;
	struct brain_key k = {.type = BRAIN_REC_HEALTH};
	snprintf(k.service, sizeof k.service, "%s", v->name);
	put_value(b, &k, val, len);
}

/* ---- Desired ------------------------------------------------------------------------------- */

static void need_artifact(struct brain *b, struct svc *v)
{
	struct store_artifact_info info;
	if (store_artifact_get(b->s, &v->desired, &info) == 0) {
		store_artifact_info_release(&info);
		v->need_announced = false;
		return;
	}
	if (v->need_announced)
		return;
	v->need_announced = true;
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&v->desired, hex);
	if (!brain_need_artifact) {
		event(b, "missing", v->name, v->desired_rev,
		      "artifact %.12s is not in the local store", hex);
		return;
	}
	uint8_t(*holders)[STORE_NODE_ID_LEN] = calloc(b->npeers + 1, STORE_NODE_ID_LEN);
	size_t n = 0;
	if (!holders)
		return;
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer_health *p = &b->peers[i];
		if (strcmp(p->h.service, v->name) != 0)
			continue;
		for (uint32_t j = 0; j < p->h.nheld; j++)
			if (memcmp(&p->h.held[j], &v->desired, sizeof v->desired) == 0) {
				memcpy(holders[n++], p->node, STORE_NODE_ID_LEN);
				break;
			}
	}
	/* not a failure: the swap waits (its materialize step retries) until the fetch lands */
	event(b, "fetching", v->name, v->desired_rev,
	      "fetching artifact %.12s from peers (%zu known to hold it)", hex, n);
	v->fetch_announced = true;
	brain_need_artifact(brain_need_artifact_ud, v->name, v->desired_rev, &v->desired,
			    (const uint8_t(*)[STORE_NODE_ID_LEN])holders, n);
	free(holders);
}

static void recompute(struct brain *b, struct svc *v)
{
	struct store_id art;
	uint64_t rev = 0;
	const char *site = b->has_site ? b->site : NULL;
	int r = agree_effective(v->log, v->nlog, site, v->have_local ? &v->local : NULL, &art);
	bool changed_marker = false;

	if (r < 0)
		return;
	if (r == 1) {
		rev = v->local.target_rev;
	} else {
		const struct store_revision *d = agree_desired(v->log, v->nlog, site);
		if (!d)
			return;
		rev = d->rev;
		if (v->have_local) {
			event(b, "local-cleared", v->name, rev,
			      "the cluster moved past rev %" PRIu64 ": following it again",
			      v->local.base_rev);
			v->have_local = false;
			local_persist(b, v);
			changed_marker = true;
		}
	}
	bool div = r == 1;
	if (v->have_desired && v->desired_rev == rev &&
	    memcmp(&v->desired, &art, sizeof art) == 0 && v->diverged == div) {
		if (changed_marker)
			publish_health(b, v);
		return;
	}
	v->have_desired = true;
	v->desired_since = uv_now(b->loop);
	v->desired_rev = rev;
	v->desired = art;
	v->diverged = div;
	v->need_announced = false;
	v->fetch_announced = false;
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&art, hex);
	event(b, "desired", v->name, rev, "desired: rev %" PRIu64 " artifact %.12s%s", rev, hex,
	      div ? " (diverged: local rollback)" : "");
	need_artifact(b, v);
	if (b->rec) {
		int e = reconcile_set_desired(b->rec, v->name, rev, &art);
		if (e < 0)
			log_warning("%s: cannot set the desired revision: %s", v->name, strerror(-e));
	}
	publish_health(b, v);
}

/* ---- Accepting revisions and deciding ------------------------------------------------------- */

static void decide(struct brain *b, struct svc *v);

/* Merge @r (decoded, cert filled) into the log. @mine: we wrote it. Returns the agree result. */
static int accept_rev(struct brain *b, struct svc *v, const struct store_revision *r, bool mine)
{
	const struct store_quorum *q = quorum_of(b, v->name);
	int a;

	observe(b, r->hlc);
	a = agree_accept(v->log, v->nlog, r);
	if (a < 0) {
		if (mine)
			log_warning("%s: own revision %" PRIu64 " refused: %s", v->name, r->rev,
				    agree_strerror(a));
		return a;
	}
	if (a == AGREE_KEEP)
		return a;
	const struct store_revision *old = agree_at(v->log, v->nlog, r->rev);
	bool displaced_ours = old && a == AGREE_REPLACE && old->kind == STORE_REV_DEPLOY &&
			      memcmp(old->origin, b->id, STORE_NODE_ID_LEN) == 0 &&
			      !agree_revision_same(old, r);
	bool same_decision = old && agree_revision_same(old, r);
	int e = store_revision_put(b->s, r);
	if (e < 0) {
		log_error("%s: cannot store revision %" PRIu64 ": %s", v->name, r->rev,
			  store_strerror(e));
		return e;
	}
	if (log_set(v, r) < 0)
		return -ENOMEM;
	if (displaced_ours)
		event(b, "displaced", v->name, r->rev,
		      "our deploy at rev %" PRIu64 " lost to a concurrent %s: deploy again",
		      r->rev, r->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy");
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&r->artifact, hex);
	if (r->kind == STORE_REV_ROLLBACK) {
		struct store_id bad;
		/* the same decision with another certificate (in a large cluster, every node
		 * that saw the quorum wrote its own copy) condemns what the first one did: no
		 * second synchronous store write for it */
		if (!same_decision && agree_condemned_by(v->log, v->nlog, r, &bad) == 0) {
			int c = store_artifact_set_condemned(b->s, &bad, true);
			if (c < 0 && c != -ENOENT)
				log_warning("%s: cannot mark the artifact condemned: %s", v->name,
					    store_strerror(c));
		}
		if (!same_decision)
			event(b, "decision", v->name, r->rev,
			      "rollback to %.12s decided (certificate of %" PRIu32 " voters%s)", hex,
			      r->ncert, mine ? ", written here" : "");
	} else {
		char who[2 * STORE_NODE_ID_LEN + 1];
		event(b, "revision", v->name, r->rev, "deploy of %.12s from %s%s%s", hex,
		      member_name(b, r->origin, who), r->reason[0] ? ": " : "", r->reason);
		/* The record's rule decides (agree.h rule 0); a node configured otherwise says so
		 * loudly instead of diverging silently. */
		if (memcmp(&r->quorum, q, sizeof *q) != 0)
			event(b, "config", v->name, r->rev,
			      "rev %" PRIu64 " is decided by its own quorum rule (%s), not by the "
			      "one configured here (%s): following the revision",
			      r->rev, quorum_name(&r->quorum), quorum_name(q));
	}
	decide(b, v);
	recompute(b, v);
	return a;
}

/* Is the rollback for bad record @bad already in the log? */
static bool decided(const struct svc *v, const struct store_revision *bad)
{
	const struct store_revision *n = agree_at(v->log, v->nlog, bad->rev + 1);
	return n && n->kind == STORE_REV_ROLLBACK && n->hlc == bad->hlc + 1;
}

static void recast(struct brain *b, struct svc *v, const struct store_revision *bad);

static void decide(struct brain *b, struct svc *v)
{
	/* A node that has not completed its first full anti-entropy exchange holds a partial
	 * log: it does not decide (agree.h rule 0). */
	if (!synced(b))
		return;
	/* distinct revs with votes, ascending, each tried once */
	uint64_t last = 0;
	for (;;) {
		uint64_t next = UINT64_MAX;
		for (size_t i = 0; i < v->nvotes; i++)
			if (v->votes[i].rev > last && v->votes[i].rev < next)
				next = v->votes[i].rev;
		if (next == UINT64_MAX)
			return;
		last = next;
		const struct store_revision *bad = agree_at(v->log, v->nlog, next);
		if (!bad || decided(v, bad))
			continue;
		recast(b, v, bad);
		bad = agree_at(v->log, v->nlog, next);
		if (!bad || decided(v, bad))
			continue;
		struct store_revision rb;
		int r = agree_decide(v->log, v->nlog, v->name, next, v->votes, v->nvotes, &rb);
		if (r < 0) {
			if (r != -AGREE_ENOQUORUM)
				log_debug("%s: rev %" PRIu64 " not decided: %s", v->name, next,
					  agree_strerror(r));
			continue;
		}
		/* publish only a decision new to this node: if the same one (or a better
		 * certificate) already arrived from another node, its writer spreads it, and N
		 * copies of one decision would only load the gossip of a large cluster */
		int a = accept_rev(b, v, &rb, true);
		if (a == AGREE_STORE || a == AGREE_REPLACE)
			publish_rev(b, &rb);
		store_revision_release(&rb);
		/* accept_rev recursed into decide and may have changed the log: restart the scan
		 * after this rev (the arrays may have moved) */
	}
}

/* ---- Votes --------------------------------------------------------------------------------- */

/*
 * Cast (or re-cast) this node's vote on @subject: what agree_next_vote says, if anything.
 * @target is our own judgement for a first vote. Our vote is in the store before it is
 * published, so a kill -9 in between leaves it to be re-published at restart, never a vote
 * the others saw and we forgot.
 */
static int cast_vote(struct brain *b, struct svc *v, const struct store_revision *subject,
		     enum store_vote_reason reason, uint64_t target)
{
	struct store_vote av;
	uint8_t *val;
	size_t len;
	uint32_t round;
	uint64_t tg;
	int r;

	if (!synced(b))
		return -EAGAIN;
	r = agree_next_vote(subject, v->votes, v->nvotes, b->id, target, &round, &tg);
	if (r == AGREE_VOTE_NONE && reason == STORE_VOTE_OPERATOR &&
	    !agree_in_electorate(subject, b->id) && !has_vote(v, b->id, subject->rev)) {
		/* An operator on a node outside the electorate (a rollback scoped to another
		 * site, or asked on a node that joined later): the vote is never counted
		 * (rule 3), but it carries the request to the electors, who echo it. */
		struct agree_tally t;
		if (agree_tally(subject, v->votes, v->nvotes, &t) < 0 || t.decided)
			return 0;
		round = t.round;
		tg = target;
		r = AGREE_VOTE_NEW;
	}
	if (r <= 0)
		return r;
	if (r == AGREE_VOTE_STUCK)
		event(b, "vote", v->name, subject->rev,
		      "votes on rev %" PRIu64 " are split in round %" PRIu32 " (no target can "
		      "reach the quorum): re-casting into round %" PRIu32 " for the leading target",
		      subject->rev, round - 1, round);
	memset(&av, 0, sizeof av);
	snprintf(av.service, sizeof av.service, "%s", v->name);
	av.rev = subject->rev;
	memcpy(av.voter, b->id, STORE_NODE_ID_LEN);
	av.reason = reason;
	av.hlc = stamp(b);
	av.subject = agree_subject(subject);
	av.target = tg;
	av.round = round;
	target = tg;
	r = vote_add(v, &av);
	if (r < 0)
		return r;
	r = store_vote_put(b->s, &av);
	if (r < 0)
		log_warning("%s: cannot store our vote on rev %" PRIu64 ": %s", v->name, av.rev,
			    store_strerror(r));
	if (subject->rev > v->voted_rev)
		v->voted_rev = subject->rev;
	r = brain_vote_encode(&av, &val, &len);
	if (r < 0)
		return r;
	struct brain_key k = {.type = BRAIN_REC_VOTE, .rev = subject->rev};
	snprintf(k.service, sizeof k.service, "%s", v->name);
	r = put_value(b, &k, val, len);
	event(b, "vote", v->name, subject->rev, "%s votes against rev %" PRIu64 " (%s%s)",
	      b->name, subject->rev, reason == STORE_VOTE_HEALTH ? "health" : "operator",
	      target ? ", to an explicit rev" : "");
	decide(b, v);
	return r;
}

#define RECAST_SETTLE_MS 2000	/* > a gossip round: rule 4's settle time before leaving a
				 * stuck round */

/* Rule 4: follow a later round at once; leave a stuck round of ours once the view of it has
 * been still for RECAST_SETTLE_MS (the periodic resync comes back to it). */
static void recast(struct brain *b, struct svc *v, const struct store_revision *bad)
{
	const struct store_vote *mine = NULL;
	uint32_t round;
	uint64_t tg;

	for (size_t i = 0; i < v->nvotes; i++)
		if (v->votes[i].rev == bad->rev &&
		    memcmp(v->votes[i].voter, b->id, STORE_NODE_ID_LEN) == 0)
			mine = &v->votes[i];
	if (!mine || mine->subject != agree_subject(bad))
		return;
	int r = agree_next_vote(bad, v->votes, v->nvotes, b->id, mine->target, &round, &tg);
	if (r == AGREE_VOTE_BEHIND) {
		cast_vote(b, v, bad, mine->reason, tg);
	} else if (r == AGREE_VOTE_STUCK) {
		uint64_t now = uv_now(b->loop);
		if (v->stuck_rev != bad->rev || v->stuck_round != mine->round) {
			v->stuck_rev = bad->rev;
			v->stuck_round = mine->round;
			v->stuck_since = now;
		} else if (now - v->stuck_since >= RECAST_SETTLE_MS) {
			cast_vote(b, v, bad, mine->reason, tg);
		}
	}
}

/* The node can carry out a rollback of @bad toward @target if it holds the target artifact
 * (or a fetch hook exists). */
static bool can_carry_out(struct brain *b, struct svc *v, const struct store_revision *bad,
			  uint64_t target)
{
	const struct store_revision *t = NULL;
	struct store_artifact_info info;
	if (target) {
		t = agree_at(v->log, v->nlog, target);
	} else if (agree_previous_good(v->log, v->nlog, bad->rev, &t) < 0) {
		t = NULL;
	}
	if (!t)
		return false;
	if (brain_need_artifact)
		return true;
	if (store_artifact_get(b->s, &t->artifact, &info) < 0)
		return false;
	store_artifact_info_release(&info);
	return true;
}

/*
 * Other nodes' votes reach the store in batches (gathered for VOTE_FLUSH_MS), on the thread
 * pool, one job at a time (what arrives meanwhile waits for the next job): in a cluster of N
 * nodes a rollback brings every node N votes, and one synchronous transaction (one fsync)
 * per vote on the loop stalled it for seconds on a busy disk. Losing the tail of a batch in
 * a crash is harmless: the vote records are persisted by the cluster layer too, and every
 * voter keeps gossiping its own vote. A node's OWN vote is still written before it is
 * published (cast_vote).
 */
static void vjob_start(struct brain *b);
static void on_vflush(uv_timer_t *t);
static void part_closed(struct brain *b);

static void vjob_work(uv_work_t *w)
{
	struct brain *b = w->data;
	b->vjob_err = store_vote_put_many(b->s, b->vjob, b->nvjob);
}

static void vjob_done(uv_work_t *w, int status)
{
	struct brain *b = w->data;
	(void)status;
	if (b->vjob_err < 0)
		log_warning("cannot store %zu vote(s): %s", b->nvjob, store_strerror(b->vjob_err));
	free(b->vjob);
	b->vjob = NULL;
	b->nvjob = 0;
	b->vjob_running = false;
	if (b->closing) {
		part_closed(b);
		return;
	}
	if (b->nvq && !uv_is_active((uv_handle_t *)&b->vflush))
		uv_timer_start(&b->vflush, on_vflush, VOTE_FLUSH_MS, 0);
}

static void on_vflush(uv_timer_t *t)
{
	vjob_start(t->data);
}

static void vjob_start(struct brain *b)
{
	if (b->vjob_running || b->nvq == 0 || b->closing)
		return;
	b->vjob = b->vq;
	b->nvjob = b->nvq;
	b->vq = NULL;
	b->nvq = b->capvq = 0;
	b->vwork.data = b;
	b->vjob_running = true;
	if (uv_queue_work(b->loop, &b->vwork, vjob_work, vjob_done) < 0) {
		/* no thread pool: write here rather than lose them */
		b->vjob_running = false;
		vjob_work(&b->vwork);
		free(b->vjob);
		b->vjob = NULL;
		b->nvjob = 0;
	}
}

static void vote_queue(struct brain *b, const struct store_vote *sv)
{
	if (b->nvq == b->capvq) {
		size_t cap = b->capvq ? 2 * b->capvq : 32;
		struct store_vote *n = realloc(b->vq, cap * sizeof *n);
		if (!n) {
			store_vote_put(b->s, sv);
			return;
		}
		b->vq = n;
		b->capvq = cap;
	}
	b->vq[b->nvq++] = *sv;
	/* a window of VOTE_FLUSH_MS gathers the burst of a rollback into one transaction */
	if (!b->vjob_running && !uv_is_active((uv_handle_t *)&b->vflush))
		uv_timer_start(&b->vflush, on_vflush, VOTE_FLUSH_MS, 0);
}

static void on_vote(struct brain *b, struct svc *v, const struct store_vote *av)
{
	int r = vote_add(v, av);
	if (r <= 0)
		return;
	observe(b, av->hlc);
	vote_queue(b, av);
	char who[2 * STORE_NODE_ID_LEN + 1];
	event(b, "vote", v->name, av->rev, "%s votes against rev %" PRIu64 " (%s%s)",
	      member_name(b, av->voter, who), av->rev,
	      av->reason == STORE_VOTE_HEALTH ? "health" : "operator",
	      av->round ? ", re-cast" : "");
	/* echo an operator's vote against the revision we are meant to run (cast_vote casts
	 * only a first vote of ours, or nothing) */
	const struct store_revision *d =
		agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
	if (av->reason == STORE_VOTE_OPERATOR && d && d->rev == av->rev &&
	    av->subject == agree_subject(d) && can_carry_out(b, v, d, av->target))
		cast_vote(b, v, d, STORE_VOTE_OPERATOR, av->target);
	decide(b, v);
}

/* ---- Records ------------------------------------------------------------------------------- */

/* Assemble owner's revision (svc, rev) with its certificate; 0 and *ret, -EAGAIN if a chunk
 * is missing, or a decode error. */
static int assemble(struct brain *b, const uint8_t *owner, const char *service, uint64_t rev,
		    struct store_revision *ret)
{
	char key[BRAIN_REC_KEY_MAX + 1];
	struct brain_key k = {.type = BRAIN_REC_REV, .rev = rev};
	struct store_revision r;
	int n, err;

	snprintf(k.service, sizeof k.service, "%s", service);
	n = brain_key_format(&k, key, sizeof key);
	if (n < 0 || !b->net.get)
		return -EINVAL;
	const struct gossip_record *g = b->net.get(b->net.ud, owner, key, (size_t)n);
	if (!g)
		return -EAGAIN;
	err = brain_rev_decode(g->value, g->value_len, &r);
	if (err < 0)
		return err;
	if (strcmp(r.service, service) != 0 || r.rev != rev) {
		store_revision_release(&r);
		return -EBADMSG;
	}
	if (r.ncert) {
		uint32_t ncert = r.ncert;
		r.cert = malloc((size_t)ncert * STORE_NODE_ID_LEN);
		if (!r.cert) {
			r.ncert = 0;
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < brain_cert_chunks(ncert); i++) {
			struct brain_cert_chunk c;
			k.type = BRAIN_REC_CERT;
			k.chunk = i;
			n = brain_key_format(&k, key, sizeof key);
			g = n < 0 ? NULL : b->net.get(b->net.ud, owner, key, (size_t)n);
			if (!g) {
				store_revision_release(&r);
				return -EAGAIN;
			}
			err = brain_cert_decode(g->value, g->value_len, &c);
			if (err < 0 || c.ncert != ncert || c.index != i) {
				store_revision_release(&r);
				return err < 0 ? err : -EAGAIN;
			}
			memcpy(r.cert[i * BRAIN_CERT_PER_CHUNK], c.ids, (size_t)c.n * STORE_NODE_ID_LEN);
		}
	}
	if (r.nelect) {
		uint32_t nelect = r.nelect;
		r.elect = malloc((size_t)nelect * STORE_NODE_ID_LEN);
		if (!r.elect) {
			r.nelect = 0;
			store_revision_release(&r);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < brain_cert_chunks(nelect); i++) {
			struct brain_cert_chunk c;
			k.type = BRAIN_REC_ELECT;
			k.chunk = i;
			n = brain_key_format(&k, key, sizeof key);
			g = n < 0 ? NULL : b->net.get(b->net.ud, owner, key, (size_t)n);
			if (!g) {
				store_revision_release(&r);
				return -EAGAIN;
			}
			err = brain_ids_decode(g->value, g->value_len, BRAIN_REC_ELECT, &c);
			if (err < 0 || c.ncert != nelect || c.index != i) {
				store_revision_release(&r);
				return err < 0 ? err : -EAGAIN;
			}
			memcpy(r.elect[i * BRAIN_CERT_PER_CHUNK], c.ids,
			       (size_t)c.n * STORE_NODE_ID_LEN);
		}
	}
	*ret = r;
	return 0;
}

static void on_member_resync(uv_timer_t *t);

static void handle_record(struct brain *b, const struct gossip_record *g, bool replay)
{
	struct brain_key k;
	int r = brain_key_parse(g->key, g->key_len, &k);
	if (r < 0) {
		if (r != -ENOENT)
			log_debug("record with a malformed key ignored");
		return;
	}
	bool own = memcmp(g->owner, b->id, STORE_NODE_ID_LEN) == 0;
	if (k.type == BRAIN_REC_ROSTER || k.type == BRAIN_REC_REMOVE) {
		/* coalesced like member changes */
		if (!replay && !b->closing)
			uv_timer_start(&b->resync, on_member_resync, DEBOUNCE_MS, 0);
		return;
	}
	struct svc *v = svc_get(b, k.service);
	if (!v)
		return;
	switch (k.type) {
	case BRAIN_REC_REV:
	case BRAIN_REC_CERT:
	case BRAIN_REC_ELECT: {
		struct store_revision rv;
		const struct store_revision *held = agree_at(v->log, v->nlog, k.rev);
		r = assemble(b, g->owner, k.service, k.rev, &rv);
		if (r < 0) {
			if (r != -EAGAIN)
				log_debug("%s: revision record %" PRIu64 " refused: %s", k.service,
					  k.rev, strerror(-r));
			return;
		}
		/* fast path for the replays: the same bytes held */
		if (!(held && agree_revision_cmp(held, &rv) == 0) &&
		    accept_rev(b, v, &rv, own) == -AGREE_ECERT)
			b->need_replay = true;
		store_revision_release(&rv);
		break;
	}
	case BRAIN_REC_VOTE: {
		struct store_vote av;
		if (brain_vote_decode(g->value, g->value_len, &av) < 0 ||
		    strcmp(av.service, k.service) != 0 || av.rev != k.rev) {
			log_debug("%s: malformed vote record ignored", k.service);
			return;
		}
		memcpy(av.voter, g->owner, STORE_NODE_ID_LEN);
		if (own) {
			if (vote_add(v, &av) > 0 && av.rev > v->voted_rev)
				v->voted_rev = av.rev;
			observe(b, av.hlc);
		} else {
			on_vote(b, v, &av);
		}
		break;
	}
	case BRAIN_REC_ROSTER:
	case BRAIN_REC_REMOVE:
		break;
	case BRAIN_REC_HEALTH: {
		struct brain_health h;
		if (brain_health_decode(g->value, g->value_len, &h) < 0 ||
		    strcmp(h.service, k.service) != 0)
			return;
		observe(b, h.since_hlc);
		if (own)
			return;
		struct peer_health *p = NULL;
		for (size_t i = 0; i < b->npeers; i++)
			if (memcmp(b->peers[i].node, g->owner, STORE_NODE_ID_LEN) == 0 &&
			    strcmp(b->peers[i].h.service, h.service) == 0)
				p = &b->peers[i];
		if (!p) {
			if (b->npeers == b->cappeers) {
				size_t cap = b->cappeers ? 2 * b->cappeers : 16;
				struct peer_health *n = realloc(b->peers, cap * sizeof *n);
				if (!n)
					return;
				b->peers = n;
				b->cappeers = cap;
			}
			p = &b->peers[b->npeers++];
			memset(p, 0, sizeof *p);
			memcpy(p->node, g->owner, STORE_NODE_ID_LEN);
			p->h.state = HSTATE_NONE;
		}
		bool changed = p->h.state != h.state || p->h.running_rev != h.running_rev;
		p->h = h;
		if (changed && !replay && h.state != HSTATE_NONE) {
			char who[2 * STORE_NODE_ID_LEN + 1];
			event(b, "peer-health", k.service, h.running_rev, "%s runs rev %" PRIu64 ": %s",
			      member_name(b, g->owner, who), h.running_rev,
			      health_state_name((enum health_state)h.state));
		}
		break;
	}
	}
}

void brain_on_record(struct brain *b, const struct gossip_record *r)
{
	if (!b || !r || b->closing || !b->started)
		return;
	handle_record(b, r, false);
}

static int replay_cb(void *ud, const struct gossip_record *r)
{
	handle_record(ud, r, true);
	return 0;
}

static void resync(struct brain *b, bool replay)
{
	if (members_refresh(b) < 0)
		return;
	if (replay && b->net.record_foreach) {
		b->need_replay = false;
		/* The transport's iteration must not see our puts mid-way: collect keys first?
		 * handle_record may publish (a decision); the cluster layer queues, so the walk
		 * is safe; a put replaces a value we have already passed. */
		b->net.record_foreach(b->net.ud, replay_cb, b);
	}
	for (size_t i = 0; i < b->nsvcs; i++) {
		decide(b, b->svcs[i]);
		recompute(b, b->svcs[i]);
	}
}

/* The periodic safety net: replay everything. */
static void on_resync(uv_timer_t *t)
{
	struct brain *b = t->data;
	if (b->closing)
		return;
	resync(b, true);
	reconnect(b);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
}

/* After membership changes: new eligible voters; replay the held records only if one was
 * refused for want of known voters (a full replay per flap would load a large cluster). */
static void on_member_resync(uv_timer_t *t)
{
	struct brain *b = t->data;
	if (b->closing)
		return;
	resync(b, b->need_replay);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
}

void brain_on_member(struct brain *b, const struct gossip_member *m)
{
	if (!b || b->closing || !b->started)
		return;
	(void)m;
	/* coalesce bursts of member updates (a join brings many) */
	uv_timer_start(&b->resync, on_member_resync, DEBOUNCE_MS, 0);
}

/* ---- Reconciler and health callbacks -------------------------------------------------------- */

static bool may_start(void *ud, const char *service, uint64_t rev)
{
	struct brain *b = ud;
	struct svc *v = svc_find(b, service);
	if (!v)
		return true;
	if (b->max_par) {
		unsigned busy = 0;
		const char *mysite = b->has_site ? b->site : "";
		bool settling = uv_now(b->loop) - v->desired_since < SETTLE_MS;
		for (size_t i = 0; i < b->nmembers; i++) {
			const struct agree_member *m = &b->members[i];
			if (memcmp(m->id, b->id, STORE_NODE_ID_LEN) == 0 ||
			    m->state == AGREE_DEAD || m->state == AGREE_LEFT ||
			    strcmp(m->site ? m->site : "", mysite) != 0)
				continue;
			const struct peer_health *p = NULL;
			for (size_t j = 0; j < b->npeers; j++)
				if (memcmp(b->peers[j].node, m->id, STORE_NODE_ID_LEN) == 0 &&
				    strcmp(b->peers[j].h.service, service) == 0)
					p = &b->peers[j];
			/* a slot is taken by a peer that says it is swapping, or RESERVED by a
			 * peer with a lower id that must swap to this rev too (its record says
			 * so, or, while the news settles, it has not said anything yet): the
			 * nodes of a site thus follow a common order instead of all starting
			 * at the instant they learn of a new revision */
			if (p && p->h.swapping) {
				busy++;
				continue;
			}
			if (memcmp(m->id, b->id, STORE_NODE_ID_LEN) > 0 || (p && p->h.running_rev == rev))
				continue;
			if ((p && p->h.desired_rev == rev) || settling)
				busy++;
		}
		if (busy >= b->max_par) {
			event(b, "paced", service, rev, "%u node(s) of this site are swapping", busy);
			return false;
		}
	}
	v->swapping = true;
	publish_health(b, v);
	return true;
}

static void start_health(struct brain *b, struct svc *v, uint64_t rev,
			 const struct store_id *art)
{
	struct store_artifact_info info;
	char hex[STORE_ID_HEXLEN + 1];
	char dir[4096];

	if (!b->health)
		return;
	if (store_artifact_get(b->s, art, &info) < 0)
		return;
	store_id_hex(art, hex);
	snprintf(dir, sizeof dir, "%s/artifacts/%s/%" PRIu64 "-%.12s", b->state_dir, v->name, rev,
		 hex);
	struct health_target t = {
		.service = v->name,
		.rev = rev,
		.artifact = art,
		.dir = dir,
		.policy = &info.manifest.health,
	};
	int r = health_start(b->health, &t);
	if (r < 0)
		log_warning("%s: cannot start health checks: %s", v->name, strerror(-r));
	v->hstate = r < 0 ? HSTATE_NONE : HEALTH_STARTING;
	v->hsince = stamp(b);
	v->missed = false;
	store_artifact_info_release(&info);
}

static void on_swapped(void *ud, const char *service, uint64_t rev,
		       const struct store_id *artifact, int status)
{
	struct brain *b = ud;
	struct svc *v = svc_get(b, service);
	if (!v)
		return;
	if (status < 0) {
		/* a missing artifact that the fetch hook is bringing: the swap waits, it has not
		 * failed; said once (the "fetching" event), not at every retry */
		if (status == -ENOENT && brain_need_artifact && artifact && v->have_desired &&
		    v->desired_rev == rev && memcmp(&v->desired, artifact, sizeof *artifact) == 0) {
			char hex[STORE_ID_HEXLEN + 1];
			store_id_hex(artifact, hex);
			if (!v->fetch_announced)
				event(b, "fetching", service, rev,
				      "swap to rev %" PRIu64 " waits for artifact %.12s, being "
				      "fetched from peers", rev, hex);
			v->fetch_announced = true;
			return;
		}
		event(b, "swap-failed", service, rev, "swap failed: %s (retrying)",
		      status == -ENOENT ? "artifact not in the local store" : strerror(-status));
		return;
	}
	v->swapping = false;
	v->swap_target = 0;
	v->running_rev = rev;
	if (artifact)
		v->running = *artifact;
	else
		memset(&v->running, 0, sizeof v->running);
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&v->running, hex);
	event(b, "swap-done", service, rev, "%s now runs rev %" PRIu64 " (%.12s)", b->name, rev,
	      hex);
	if (rev && artifact) {
		start_health(b, v, rev, artifact);
	} else if (b->health) {
		health_stop(b->health, service);
		v->hstate = HSTATE_NONE;
	}
	publish_health(b, v);
}

static void on_rstate(void *ud, const struct reconcile_event *ev)
{
	struct brain *b = ud;
	struct svc *v = svc_find(b, ev->service);
	if (!v)
		return;
	if (ev->kind == RECONCILE_EV_STEP && v->swap_target != ev->rev) {
		v->swap_target = ev->rev;
		event(b, "swap-start", ev->service, ev->rev, "%s starts swapping to rev %" PRIu64,
		      b->name, ev->rev);
	}
}

static void on_plugin_event(struct plugin *p, const char *service, const struct plugin_status *st,
			    void *ud)
{
	struct brain *b = ud;
	(void)p;
	if (b->health)
		health_runtime(b->health, service, st);
}

static void on_plugin_log(struct plugin *p, const char *service, int fd, const char *line,
			  void *ud)
{
	(void)p;
	(void)ud;
	log_info("[%s] %s%s", service, fd == 2 ? "stderr: " : "", line);
}

static void on_health(void *ud, const char *service, uint64_t rev, const struct health_status *st)
{
	struct brain *b = ud;
	struct svc *v = svc_find(b, service);
	if (!v || rev != v->running_rev)
		return;
	bool was_missed = v->missed;
	v->hstate = (uint8_t)st->state;
	v->hsince = stamp(b);
	v->missed = st->missed;
	event(b, "health", service, rev, "%s: rev %" PRIu64 " %s%s%s", b->name, rev,
	      health_state_name(st->state), st->detail[0] ? ": " : "", st->detail);
	publish_health(b, v);
	if (st->state == HEALTH_HEALTHY && !st->missed && b->rec)
		reconcile_mark_good(b->rec, service, rev, &v->running);
	if (st->missed && !was_missed && !v->diverged) {
		const struct store_revision *d =
			agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
		if (d && d->rev == rev && memcmp(&d->artifact, &v->running, sizeof v->running) == 0)
			cast_vote(b, v, d, STORE_VOTE_HEALTH, 0);
	}
}

/* ---- Life cycle ---------------------------------------------------------------------------- */

int brain_new(uv_loop_t *loop, struct store *store, const struct brain_opts *opts,
	      const struct brain_net *net, struct brain **ret)
{
	struct brain *b;

	if (!loop || !store || !opts || !opts->node_id || !net || !ret ||
	    (!opts->no_runtime && (!opts->state_dir || opts->state_dir[0] != '/')))
		return -EINVAL;
	b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->loop = loop;
	b->s = store;
	b->net = *net;
	memcpy(b->id, opts->node_id, STORE_NODE_ID_LEN);
	snprintf(b->name, sizeof b->name, "%s", opts->node_name ? opts->node_name : "?");
	if (opts->site && *opts->site) {
		b->has_site = true;
		snprintf(b->site, sizeof b->site, "%s", opts->site);
	}
	if (opts->advertise)
		snprintf(b->advertise, sizeof b->advertise, "%s", opts->advertise);
	b->reconnect_ms = opts->reconnect_ms ? opts->reconnect_ms : 30000;
	b->max_par = opts->max_parallel_per_site;
	b->no_runtime = opts->no_runtime;
	b->ropts.retry_min_ms = opts->retry_min_ms;
	b->ropts.retry_max_ms = opts->retry_max_ms;
	b->ropts.pace_retry_ms = opts->pace_retry_ms ? opts->pace_retry_ms : 500;
	if (opts->state_dir && !(b->state_dir = strdup(opts->state_dir)))
		goto nomem;
	if ((opts->unit_dir && !(b->unit_dir = strdup(opts->unit_dir))) ||
	    (opts->bus_address && !(b->bus_address = strdup(opts->bus_address))) ||
	    (opts->docker_host && !(b->docker_host = strdup(opts->docker_host))))
		goto nomem;
	if (opts->nquorums) {
		b->quorums = calloc(opts->nquorums, sizeof *b->quorums);
		if (!b->quorums)
			goto nomem;
		memcpy(b->quorums, opts->quorums, opts->nquorums * sizeof *b->quorums);
		b->nquorums = opts->nquorums;
	}
	b->ring = calloc(BRAIN_EVENTS_MAX, sizeof *b->ring);
	if (!b->ring)
		goto nomem;
	hlc_init(&b->clock, 0);
	uv_timer_init(loop, &b->resync);
	b->resync.data = b;
	b->resync_open = true;
	uv_timer_init(loop, &b->pub);
	b->pub.data = b;
	uv_timer_init(loop, &b->vflush);
	b->vflush.data = b;
	*ret = b;
	return 0;
nomem:
	free(b->state_dir);
	free(b->unit_dir);
	free(b->bus_address);
	free(b->docker_host);
	free(b->quorums);
	free(b->ring);
	free(b);
	return -ENOMEM;
}

static int load_rev_cb(const struct store_revision *r, void *ud)
{
	struct svc *v = ud;
	return log_set(v, r);
}

static int load_vote_cb(const struct store_vote *sv, void *ud)
{
	struct svc *v = ud;
	/* a vote of an older store format (no subject) has no known meaning: not counted */
	if (sv->subject == 0)
		return 0;
	return vote_add(v, sv) < 0 ? -ENOMEM : 0;
}

static int load_service_cb(const char *service, void *ud)
{
	struct brain *b = ud;
	struct svc *v = svc_get(b, service);
	struct store_service_state st;
	if (!v)
		return -ENOMEM;
	int r = store_revision_foreach(b->s, service, 0, load_rev_cb, v);
	if (r < 0)
		return r;
	for (size_t i = 0; i < v->nlog; i++) {
		observe(b, v->log[i].hlc);
		store_vote_foreach(b->s, service, v->log[i].rev, load_vote_cb, v);
	}
	if (store_service_state_get(b->s, service, &st) == 0) {
		v->running_rev = st.running_rev;
		v->running = st.running;
	}
	return 0;
}

int brain_start(struct brain *b)
{
	int r;
	if (!b || b->started)
		return -EINVAL;
	/* the clock: never below what this node (or anyone it heard) stamped before */
	hlc_restore(&b->clock, 0);
	r = store_service_foreach(b->s, load_service_cb, b);
	if (r < 0)
		return r;
	r = store_kv_foreach(b->s, STORE_KV_AGENT, local_load_cb, b);
	if (r < 0)
		return r;
	r = publish_roster(b, false);
	if (r < 0)
		log_warning("cannot publish this node's roster entry: %s", strerror(-r));
	r = members_refresh(b);
	if (r < 0)
		return r;
	if (!b->no_runtime) {
		struct health_config hc = {.on_change = on_health, .ud = b};
		r = health_new(b->loop, &hc, &b->health);
		if (r < 0)
			return r;
		b->pcfg.state_dir = b->state_dir;
		b->pcfg.unit_dir = b->unit_dir;
		b->pcfg.bus_address = b->bus_address;
		b->pcfg.docker_host = b->docker_host;
		b->pcfg.on_event = on_plugin_event;
		b->pcfg.on_log = on_plugin_log;
		b->pcfg.ud = b;
		struct reconcile_callbacks cbs = {
			.may_start = may_start,
			.on_swapped = on_swapped,
			.on_state = on_rstate,
			.ud = b,
		};
		r = reconcile_new(b->loop, b->s, &b->pcfg, &cbs, &b->ropts, &b->rec);
		if (r < 0)
			return r;
		r = reconcile_resume(b->rec);
		if (r < 0)
			return r;
		if (r > 0)
			log_notice("resuming %d interrupted swap(s) from the journal", r);
	}
	b->started = true;
	event(b, "start", NULL, 0, "%s started (%zu service(s) known)", b->name, b->nsvcs);
	resync(b, true);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
	return 0;
}

static void part_closed(struct brain *b)
{
	if (--b->closing_parts)
		return;
	void (*cb)(void *) = b->close_cb;
	void *ud = b->close_ud;
	for (size_t i = 0; i < b->nsvcs; i++)
		svc_free(b->svcs[i]);
	free(b->svcs);
	free(b->peers);
	free(b->members);
	free(b->member_sites);
	free(b->member_names);
	free(b->roster);
	free(b->roster_sites);
	free(b->roster_addrs);
	free(b->ring);
	free(b->quorums);
	free(b->state_dir);
	free(b->unit_dir);
	free(b->bus_address);
	free(b->docker_host);
	free(b->vq);
	free(b);
	if (cb)
		cb(ud);
}

static void timer_closed(uv_handle_t *h)
{
	part_closed(h->data);
}

static void rec_closed(void *ud)
{
	part_closed(ud);
}

static void health_closed(struct health *h, void *ud)
{
	(void)h;
	part_closed(ud);
}

void brain_close(struct brain *b, void (*cb)(void *ud), void *ud)
{
	if (!b || b->closing)
		return;
	b->closing = true;
	b->close_cb = cb;
	b->close_ud = ud;
	b->closing_parts = 3; /* the timers */
	/* the votes still queued are written now; a job in flight ends the close when done */
	if (b->nvq) {
		int e = store_vote_put_many(b->s, b->vq, b->nvq);
		if (e < 0)
			log_warning("cannot store %zu vote(s): %s", b->nvq, store_strerror(e));
		b->nvq = 0;
	}
	if (b->vjob_running)
		b->closing_parts++;
	if (b->rec)
		b->closing_parts++;
	if (b->health)
		b->closing_parts++;
	if (b->rec)
		reconcile_close(b->rec, rec_closed, b);
	if (b->health)
		health_close(b->health, health_closed, b);
	uv_timer_stop(&b->resync);
	uv_close((uv_handle_t *)&b->resync, timer_closed);
	uv_timer_stop(&b->pub);
	uv_close((uv_handle_t *)&b->pub, timer_closed);
	uv_timer_stop(&b->vflush);
	uv_close((uv_handle_t *)&b->vflush, timer_closed);
}

void brain_artifact_arrived(struct brain *b, const struct store_id *artifact)
{
	if (b)
		reconcile_artifact_arrived(b->rec, artifact);
}

int brain_desired(struct brain *b, const char *service, uint64_t *ret_rev,
		  struct store_id *ret_artifact)
{
	struct svc *v = b ? svc_find(b, service) : NULL;
	if (!v || !v->have_desired)
		return -ENOENT;
	if (ret_rev)
		*ret_rev = v->desired_rev;
	if (ret_artifact)
		*ret_artifact = v->desired;
	return v->diverged ? 1 : 0;
}

/* ---- Control operations ---------------------------------------------------------------------- */

static void kv_id(struct ctl_enc *e, const char *k, const struct store_id *id)
{
	char hex[STORE_ID_HEXLEN + 1];
	static const struct store_id zero;
	ctl_enc_str(e, k);
	if (memcmp(id, &zero, sizeof zero) == 0)
		ctl_enc_nil(e);
	else
		ctl_enc_str(e, store_id_hex(id, hex));
}

/* Optional string argument: 0 and *ret (NULL if absent), or replies bad_request and <0. */
static int opt_str(const struct ctl_request *req, const char *key, char **ret,
		   struct ctl_enc *out)
{
	int r = ctl_arg_str(req, key, ret);
	if (r == -ENOENT) {
		*ret = NULL;
		return 0;
	}
	if (r < 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"%s\" must be a non-empty string", key);
		return r;
	}
	return 0;
}

static int opt_uint(const struct ctl_request *req, const char *key, uint64_t *ret,
		    struct ctl_enc *out)
{
	const msgpack_object *o = ctl_map_get(req->args, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL) {
		*ret = 0;
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"%s\" must be a non-negative integer", key);
		return -EINVAL;
	}
	*ret = o->via.u64;
	return 0;
}

static bool opt_bool(const struct ctl_request *req, const char *key)
{
	const msgpack_object *o = ctl_map_get(req->args, key);
	return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static int scope_arg(const struct ctl_request *req, char *scope, struct ctl_enc *out)
{
	char *s = NULL;
	if (opt_str(req, "scope", &s, out) < 0)
		return -EINVAL;
	scope[0] = 0;
	if (s && strcmp(s, "cluster") != 0) {
		if (!agree_scope_valid(s)) {
			ctl_enc_fail(out, CTL_E_BAD_REQUEST, "scope must be site:NAME");
			free(s);
			return -EINVAL;
		}
		snprintf(scope, 65, "%s", s);
	}
	free(s);
	return 0;
}

static void do_deploy(struct brain *b, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	char *service = NULL, *art = NULL, *reason = NULL;
	char scope[65];
	struct store_id id;
	struct store_artifact_info info;
	bool have_info = false;
	int r;

	if (ctl_arg_str(req, "service", &service) < 0 || !name_ok(service)) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"service\" must be a service name");
		goto out;
	}
	if (ctl_arg_str(req, "artifact", &art) < 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "\"artifact\" (an id or unique prefix) is required");
		goto out;
	}
	if (opt_str(req, "reason", &reason, out) < 0 || scope_arg(req, scope, out) < 0)
		goto out;
	if (reason && strlen(reason) > 200) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"reason\" is limited to 200 bytes");
		goto out;
	}
	bool force = opt_bool(req, "force");
	r = store_artifact_find(b->s, art, &id);
	if (r < 0) {
		ctl_enc_fail(out, r == -EEXIST ? CTL_E_AMBIGUOUS : r == -EINVAL ? CTL_E_BAD_REQUEST
									  : CTL_E_NOT_FOUND,
			     r == -EEXIST ? "id prefix %.64s matches several artifacts"
				   : "no artifact with id %.64s in the local store (import it here, "
				     "or give its full id: agentctl then fetches it from a peer)",
			     art);
		goto out;
	}
	r = store_artifact_get(b->s, &id, &info);
	if (r < 0) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s", store_strerror(r));
		goto out;
	}
	have_info = true;
	if (strcmp(info.manifest.service, service) != 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "artifact %.12s is of service %s, not %s", art,
			     info.manifest.service, service);
		goto out;
	}
	struct svc *v = svc_get(b, service);
	if (!v) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "out of memory");
		goto out;
	}
	if (!force && (info.condemned || agree_check_deploy(v->log, v->nlog, &id, false) < 0)) {
		ctl_enc_fail(out, CTL_E_CONDEMNED,
			     "artifact %.12s of %s was condemned by a cluster rollback; "
			     "deploy it again with --force",
			     art, service);
		goto out;
	}
	struct store_revision rv;
	memset(&rv, 0, sizeof rv);
	snprintf(rv.service, sizeof rv.service, "%s", service);
	uint64_t latest = 0;
	store_revision_latest(b->s, service, &latest);
	rv.rev = (svc_max_rev(v) > latest ? svc_max_rev(v) : latest) + 1;
	rv.artifact = id;
	rv.kind = STORE_REV_DEPLOY;
	snprintf(rv.scope, sizeof rv.scope, "%s", scope);
	memcpy(rv.origin, b->id, STORE_NODE_ID_LEN);
	rv.hlc = stamp(b);
	rv.operator_uid = peer && peer->known ? peer->uid : UINT32_MAX;
	rv.operator_pid = peer && peer->known ? peer->pid : 0;
	snprintf(rv.reason, sizeof rv.reason, "%s", reason ? reason : "");
	if (!synced(b)) {
		ctl_enc_fail(out, CTL_E_BUSY,
			     "this node has not completed its first anti-entropy exchange with the "
			     "cluster yet, so its roster and log may be partial; retry in a few "
			     "seconds (or check that it can reach a peer: agentctl members)");
		goto out;
	}
	/* The electorate and rule are written into the revision (agree.h rule 0). */
	rv.quorum = *quorum_of(b, service);
	r = agree_electorate(b->roster, b->nroster, scope, &rv.elect, &rv.nelect);
	if (r < 0) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "cannot compute the electorate: %s",
			     agree_strerror(r));
		goto out;
	}
	if (!rv.nelect)
		event(b, "config", service, rv.rev,
		      "no node on the roster is in scope %s: nobody can vote on rev %" PRIu64
		      " (only a new deploy replaces it)", scope, rv.rev);
	if (force && info.condemned)
		store_artifact_set_condemned(b->s, &id, false);
	r = accept_rev(b, v, &rv, true);
	if (r < 0) {
		store_revision_release(&rv);
		ctl_enc_fail(out, r == -EBADMSG ? CTL_E_BAD_REQUEST : agent_ctl_err_from_errno(r),
			     "cannot create revision %" PRIu64 ": %s", rv.rev, agree_strerror(r));
		goto out;
	}
	publish_rev(b, &rv);
	store_revision_release(&rv);
	ctl_enc_ok(out);
	ctl_enc_map(out, 4);
	ctl_kv_str(out, "service", service);
	ctl_kv_uint(out, "rev", rv.rev);
	kv_id(out, "artifact", &id);
	ctl_kv_str(out, "version", info.manifest.version ? info.manifest.version : "");
out:
	if (have_info)
		store_artifact_info_release(&info);
	free(service);
	free(art);
	free(reason);
}

static void do_rollback(struct brain *b, const struct ctl_request *req, struct ctl_enc *out)
{
	char *service = NULL, *reason = NULL;
	char scope[65];
	uint64_t to = 0;
	int r;

	if (ctl_arg_str(req, "service", &service) < 0 || !name_ok(service)) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"service\" must be a service name");
		goto out;
	}
	if (opt_str(req, "reason", &reason, out) < 0 || scope_arg(req, scope, out) < 0 ||
	    opt_uint(req, "to", &to, out) < 0)
		goto out;
	bool local = opt_bool(req, "local");
	struct svc *v = svc_find(b, service);
	const char *site = scope[0] ? scope + 5 : (b->has_site ? b->site : NULL);
	const struct store_revision *d = v ? agree_desired(v->log, v->nlog, site) : NULL;
	if (!d) {
		ctl_enc_fail(out, CTL_E_NO_REVISION, "%s has no revision to roll back%s%s", service,
			     scope[0] ? " in " : "", scope);
		goto out;
	}
	if (scope[0] && strcmp(d->scope, scope) != 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "the revision %" PRIu64 " desired in %s has scope %s: "
			     "roll back with that scope",
			     d->rev, scope, d->scope[0] ? d->scope : "cluster");
		goto out;
	}
	if (to) {
		const struct store_revision *t = agree_at(v->log, v->nlog, to);
		if (!t || to >= d->rev) {
			ctl_enc_fail(out, CTL_E_NO_REVISION, "--to %" PRIu64 ": %s", to,
				     !t ? "no such revision"
					: "must be below the desired revision");
			goto out;
		}
		if (memcmp(&t->artifact, &d->artifact, sizeof t->artifact) == 0) {
			ctl_enc_fail(out, CTL_E_BAD_REQUEST,
				     "rev %" PRIu64 " runs the same artifact", to);
			goto out;
		}
	}
	uint64_t bad = d->rev;
	if (local) {
		struct agree_local l;
		r = agree_local_rollback(v->log, v->nlog, service, b->has_site ? b->site : NULL,
					 to, stamp(b), &l);
		if (r < 0) {
			ctl_enc_fail(out, CTL_E_NO_REVISION, "cannot roll back locally: %s",
				     agree_strerror(r));
			goto out;
		}
		v->local = l;
		v->have_local = true;
		r = local_persist(b, v);
		if (r < 0) {
			v->have_local = false;
			ctl_enc_fail(out, agent_ctl_err_from_errno(r),
				     "cannot record the local rollback: %s", store_strerror(r));
			goto out;
		}
		event(b, "local-rollback", service, l.target_rev,
		      "%s diverges: runs rev %" PRIu64 " instead of rev %" PRIu64 "%s%s", b->name,
		      l.target_rev, l.base_rev, reason ? ": " : "", reason ? reason : "");
		recompute(b, v);
		publish_health(b, v);
	} else {
		if (!can_carry_out(b, v, d, to)) {
			ctl_enc_fail(out, CTL_E_NOT_FOUND,
				     "this node cannot carry out the rollback of rev %" PRIu64
				     ": the target artifact is not held",
				     bad);
			goto out;
		}
		r = cast_vote(b, v, d, STORE_VOTE_OPERATOR, to);
		if (r < 0) {
			ctl_enc_fail(out, agent_ctl_err_from_errno(r),
				     "cannot publish the vote: %s",
				     strerror(-r));
			goto out;
		}
		if (reason)
			event(b, "reason", service, bad, "operator: %s", reason);
	}
	ctl_enc_ok(out);
	ctl_enc_map(out, 4);
	ctl_kv_str(out, "service", service);
	ctl_kv_uint(out, "rev", bad);
	ctl_kv_uint(out, "to", to);
	ctl_kv_bool(out, "local", local);
out:
	free(service);
	free(reason);
}

/* Encode the tally of (service, rev) plus whether this node has moved past it. */
static void enc_votes(struct brain *b, struct svc *v, uint64_t rev, struct ctl_enc *out)
{
	const struct store_revision *rv = agree_at(v->log, v->nlog, rev);
	struct agree_tally t;
	memset(&t, 0, sizeof t);
	if (rv)
		agree_tally(rv, v->votes, v->nvotes, &t);
	uint32_t n = 0;
	for (size_t i = 0; i < v->nvotes; i++)
		n += v->votes[i].rev == rev;
	ctl_enc_map(out, 12);
	ctl_kv_uint(out, "round", t.round);
	ctl_kv_bool(out, "stuck", t.stuck);
	ctl_kv_str(out, "service", v->name);
	ctl_kv_uint(out, "rev", rev);
	ctl_kv_uint(out, "eligible", t.eligible);
	ctl_kv_uint(out, "quorum", t.quorum);
	ctl_kv_uint(out, "counted", t.target_votes);
	ctl_kv_bool(out, "decided", rv && decided(v, rv));
	ctl_kv_uint(out, "running_rev", v->running_rev);
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	/* swapped: this node runs what it desires and that is past the bad rev */
	ctl_kv_bool(out, "swapped", v->running_rev > rev && v->have_desired &&
				       v->running_rev == v->desired_rev && !v->swapping);
	ctl_enc_str(out, "votes");
	ctl_enc_array(out, n);
	for (size_t i = 0; i < v->nvotes; i++) {
		const struct store_vote *av = &v->votes[i];
		if (av->rev != rev)
			continue;
		char who[2 * STORE_NODE_ID_LEN + 1], hexv[2 * STORE_NODE_ID_LEN + 1];
		hex_id(av->voter, STORE_NODE_ID_LEN, hexv);
		ctl_enc_map(out, 7);
		ctl_kv_str(out, "voter", hexv);
		ctl_kv_str(out, "name", member_name(b, av->voter, who));
		ctl_kv_str(out, "reason", av->reason == STORE_VOTE_HEALTH ? "health" : "operator");
		ctl_kv_uint(out, "hlc", av->hlc);
		ctl_kv_uint(out, "target", av->target);
		ctl_kv_uint(out, "round", av->round);
		ctl_kv_bool(out, "counted", rv && av->subject == agree_subject(rv) &&
						    av->round == t.round &&
						    agree_in_electorate(rv, av->voter));
	}
}

static void do_votes(struct brain *b, const struct ctl_request *req, struct ctl_enc *out)
{
	char *service = NULL;
	uint64_t rev = 0;
	if (ctl_arg_str(req, "service", &service) < 0 || !name_ok(service)) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"service\" must be a service name");
		goto out;
	}
	if (opt_uint(req, "rev", &rev, out) < 0)
		goto out;
	struct svc *v = svc_find(b, service);
	if (!v) {
		ctl_enc_fail(out, CTL_E_NOT_FOUND, "no service %s", service);
		goto out;
	}
	if (!rev) {
		/* the latest rev that has votes, else the desired one */
		for (size_t i = 0; i < v->nvotes; i++)
			if (v->votes[i].rev > rev)
				rev = v->votes[i].rev;
		if (!rev && v->have_desired)
			rev = v->desired_rev;
	}
	ctl_enc_ok(out);
	enc_votes(b, v, rev, out);
out:
	free(service);
}

static const char *hstate_name(uint8_t s)
{
	return s == HSTATE_NONE ? "-" : health_state_name((enum health_state)s);
}

static void enc_service(struct brain *b, struct svc *v, struct ctl_enc *out, bool nodes)
{
	uint32_t npeer = 0;
	for (size_t i = 0; i < b->npeers; i++)
		npeer += strcmp(b->peers[i].h.service, v->name) == 0;
	ctl_enc_map(out, nodes ? 11 : 10);
	ctl_kv_str(out, "service", v->name);
	ctl_kv_uint(out, "latest_rev", svc_max_rev(v));
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	kv_id(out, "desired", &v->desired);
	ctl_kv_uint(out, "running_rev", v->running_rev);
	kv_id(out, "running", &v->running);
	ctl_kv_str(out, "health", hstate_name(v->hstate));
	ctl_kv_bool(out, "swapping", v->swapping);
	ctl_kv_bool(out, "diverged", v->diverged);
	/* healthy nodes / reporting nodes, self included */
	uint32_t healthy = v->hstate == HEALTH_HEALTHY, reporting = 1;
	for (size_t i = 0; i < b->npeers; i++) {
		if (strcmp(b->peers[i].h.service, v->name) != 0)
			continue;
		reporting++;
		healthy += b->peers[i].h.state == HEALTH_HEALTHY;
	}
	ctl_enc_str(out, "nodes_healthy");
	ctl_enc_array(out, 2);
	ctl_enc_uint(out, healthy);
	ctl_enc_uint(out, reporting);
	if (!nodes)
		return;
	ctl_enc_str(out, "nodes");
	ctl_enc_array(out, npeer + 1);
	ctl_enc_map(out, 6);
	ctl_kv_str(out, "node", b->name);
	ctl_kv_uint(out, "running_rev", v->running_rev);
	ctl_kv_str(out, "health", hstate_name(v->hstate));
	ctl_kv_uint(out, "desired_rev", v->have_desired ? v->desired_rev : 0);
	ctl_kv_bool(out, "swapping", v->swapping);
	ctl_kv_bool(out, "diverged", v->diverged);
	for (size_t i = 0; i < b->npeers; i++) {
		struct peer_health *p = &b->peers[i];
		char who[2 * STORE_NODE_ID_LEN + 1];
		if (strcmp(p->h.service, v->name) != 0)
			continue;
		ctl_enc_map(out, 6);
		ctl_kv_str(out, "node", member_name(b, p->node, who));
		ctl_kv_uint(out, "running_rev", p->h.running_rev);
		ctl_kv_str(out, "health", hstate_name(p->h.state));
		ctl_kv_uint(out, "desired_rev", p->h.desired_rev);
		ctl_kv_bool(out, "swapping", p->h.swapping);
		ctl_kv_bool(out, "diverged", p->h.diverged);
	}
}

static void do_services(struct brain *b, struct ctl_enc *out)
{
	ctl_enc_ok(out);
	ctl_enc_array(out, (uint32_t)b->nsvcs);
	for (size_t i = 0; i < b->nsvcs; i++)
		enc_service(b, b->svcs[i], out, false);
}

static void do_status(struct brain *b, struct ctl_enc *out)
{
	uint32_t by[4] = {0};
	for (size_t i = 0; i < b->nmembers; i++)
		by[b->members[i].state & 3]++;
	ctl_enc_ok(out);
	ctl_enc_map(out, 3);
	ctl_enc_str(out, "node");
	ctl_enc_map(out, 3);
	ctl_kv_str(out, "name", b->name);
	ctl_kv_str(out, "site", b->has_site ? b->site : "");
	ctl_kv_uint(out, "hlc", b->clock.last);
	ctl_enc_str(out, "cluster");
	ctl_enc_map(out, 5);
	ctl_kv_uint(out, "members", b->nmembers);
	ctl_kv_uint(out, "alive", by[AGREE_ALIVE]);
	ctl_kv_uint(out, "suspect", by[AGREE_SUSPECT]);
	ctl_kv_uint(out, "failed", by[AGREE_DEAD]);
	ctl_kv_uint(out, "left", by[AGREE_LEFT]);
	ctl_enc_str(out, "services");
	ctl_enc_array(out, (uint32_t)b->nsvcs);
	for (size_t i = 0; i < b->nsvcs; i++)
		enc_service(b, b->svcs[i], out, true);
}

static void do_events(struct brain *b, const struct ctl_request *req, struct ctl_enc *out)
{
	uint64_t since = 0, max = 0;
	if (opt_uint(req, "since", &since, out) < 0 || opt_uint(req, "max", &max, out) < 0)
		return;
	if (max == 0 || max > 512)
		max = 512;
	uint64_t oldest = b->seq > BRAIN_EVENTS_MAX ? b->seq - BRAIN_EVENTS_MAX + 1 : 1;
	uint64_t first = since + 1;
	uint64_t dropped = 0;
	if (first < oldest) {
		dropped = oldest - first;
		first = oldest;
	}
	uint64_t n = b->seq >= first ? b->seq - first + 1 : 0;
	if (n > max)
		n = max;
	ctl_enc_ok(out);
	ctl_enc_map(out, 3);
	ctl_kv_uint(out, "next", first + n - 1 >= since ? first + n - 1 : since);
	ctl_kv_uint(out, "dropped", dropped);
	ctl_enc_str(out, "events");
	ctl_enc_array(out, (uint32_t)n);
	for (uint64_t s = first; s < first + n; s++) {
		const struct brain_ev *e = &b->ring[(s - 1) % BRAIN_EVENTS_MAX];
		ctl_enc_map(out, 7);
		ctl_kv_uint(out, "seq", e->seq);
		ctl_kv_uint(out, "time_ms", e->wall_ms);
		ctl_kv_str(out, "kind", e->kind);
		ctl_kv_str(out, "service", e->service);
		ctl_kv_uint(out, "rev", e->rev);
		ctl_kv_str(out, "node", e->node);
		ctl_kv_str(out, "text", e->text);
	}
}

struct hist_ctx {
	struct brain *b;
	struct svc *v;
	struct ctl_enc items;
	uint32_t n;
};

static int hist_cb(const struct store_revision *rv, void *ud)
{
	struct hist_ctx *h = ud;
	struct ctl_enc *e = &h->items;
	struct store_artifact_info info;
	bool have = store_artifact_get(h->b->s, &rv->artifact, &info) == 0;
	struct store_service_state st;
	bool good = false;
	if (store_service_state_get(h->b->s, rv->service, &st) == 0)
		good = memcmp(&st.last_good, &rv->artifact, sizeof st.last_good) == 0;
	bool condemned = (have && info.condemned) ||
			 (h->v && agree_is_condemned(h->v->log, h->v->nlog, &rv->artifact,
						     UINT64_MAX));
	char origin[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];
	hex_id(rv->origin, STORE_NODE_ID_LEN, origin);
	ctl_enc_map(e, 14);
	ctl_kv_str(e, "service", rv->service);
	ctl_kv_uint(e, "rev", rv->rev);
	kv_id(e, "artifact", &rv->artifact);
	ctl_kv_str(e, "version", have && info.manifest.version ? info.manifest.version : "");
	ctl_kv_str(e, "kind", rv->kind == STORE_REV_ROLLBACK ? "rollback" : "deploy");
	ctl_kv_str(e, "scope", rv->scope[0] ? rv->scope : "cluster");
	ctl_kv_str(e, "origin", origin);
	static const uint8_t zero[STORE_NODE_ID_LEN];
	ctl_kv_str(e, "origin_name", memcmp(rv->origin, zero, sizeof zero) == 0
					 ? "cluster"
					 : member_name(h->b, rv->origin, who));
	ctl_kv_uint(e, "hlc", rv->hlc);
	ctl_enc_str(e, "operator");
	if (rv->operator_uid == UINT32_MAX) {
		ctl_enc_nil(e);
	} else {
		ctl_enc_map(e, 2);
		ctl_kv_uint(e, "uid", rv->operator_uid);
		ctl_enc_str(e, "pid");
		ctl_enc_int(e, rv->operator_pid);
	}
	ctl_kv_str(e, "reason", rv->reason);
	ctl_kv_uint(e, "certificate", rv->ncert);
	ctl_kv_bool(e, "good", good);
	ctl_kv_bool(e, "condemned", condemned);
	if (have)
		store_artifact_info_release(&info);
	h->n++;
	return e->err;
}

static void do_history(struct brain *b, const struct ctl_request *req, struct ctl_enc *out)
{
	char *service = NULL;
	uint64_t limit = 0;
	struct hist_ctx h = {.b = b};
	if (ctl_arg_str(req, "service", &service) < 0 || !name_ok(service)) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"service\" must be a service name");
		goto out;
	}
	if (opt_uint(req, "limit", &limit, out) < 0)
		goto out;
	h.v = svc_find(b, service);
	ctl_enc_init(&h.items);
	int r = store_revision_foreach(b->s, service, limit > 100000 ? 100000 : (unsigned)limit,
				       hist_cb, &h);
	if (r < 0 && r != -ENOENT) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s", store_strerror(r));
		goto out;
	}
	ctl_enc_ok_array(out, &h.items, h.n);
out:
	ctl_enc_release(&h.items);
	free(service);
}

int brain_ctl(struct brain *b, const char *op, const struct ctl_request *req,
	      const struct ctl_peer *peer, struct ctl_enc *out)
{
	if (!b || !b->started) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "the cluster brain is not running");
		return 0;
	}
	if (strcmp(op, "deploy") == 0)
		do_deploy(b, req, peer, out);
	else if (strcmp(op, "rollback") == 0)
		do_rollback(b, req, out);
	else if (strcmp(op, "votes") == 0)
		do_votes(b, req, out);
	else if (strcmp(op, "services") == 0)
		do_services(b, out);
	else if (strcmp(op, "brain.status") == 0)
		do_status(b, out);
	else if (strcmp(op, "events") == 0)
		do_events(b, req, out);
	else if (strcmp(op, "history") == 0)
		do_history(b, req, out);
	else
		return -ENOENT;
	return 0;
}
