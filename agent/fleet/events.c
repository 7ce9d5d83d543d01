/*
 * agent/fleet/events.c: the ring of events behind `agentctl events` (fleet.h: FLEET_EVENTS_MAX),
 * the member-* events, the event callback (the agent's event hook), and what the fleet counts
 * for metrics (fleet_service_stats_foreach) and for `history` (the time this node learned of a
 * rollback decision).
 */
#include "agent/fleet/fleet_int.h"

void fleet__event(struct fleet *b, const char *kind, const char *service, uint64_t rev,
		  const char *fmt, ...)
{
	struct fleet_ev *e = &b->ring[b->seq % FLEET_EVENTS_MAX];
	va_list ap;
	memset(e, 0, sizeof *e);
	e->seq = ++b->seq;
	e->wall_ms = agent_now_ms();
	snprintf(e->kind, sizeof e->kind, "%s", kind);
	snprintf(e->service, sizeof e->service, "%s", service ? service : "");
	e->rev = rev;
	snprintf(e->node, sizeof e->node, "%s", b->name);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	/* membership changes are what an operator reads the journal for (Serf logs them too) */
	if (strncmp(kind, "member-", 7) == 0)
		log_notice("event %s: %s", e->kind, e->text);
	else
		log_info("event %s %s rev %" PRIu64 ": %s", e->kind, e->service, rev, e->text);
	if (b->on_event) {
		struct fleet_event fe = {
			.seq = e->seq, .wall_ms = e->wall_ms, .kind = e->kind,
			.service = e->service, .rev = e->rev, .node = e->node, .text = e->text,
		};
		b->on_event(b->on_event_ud, &fe);
	}
}

/*
 * Words for an error code that may be a system errno or one of the private ranges of the store
 * (STORE_E*) or the agreement core (AGREE_E*): strerror shows the latter as "Unknown error
 * 11008". A plain errno keeps strerror's text (store_strerror would call ENOSPC "map_max
 * reached", which is wrong for a full disk under the state directory).
 */
const char *fleet__strerror(int err)
{
	int e = err < 0 ? -err : err;
	if (e > STORE_EBASE && e < STORE_EBASE + 100)
		return store_strerror(err);
	if (e > AGREE_EBASE && e < AGREE_EBASE + 100)
		return agree_strerror(-e);
	return strerror(e);
}

uint64_t fleet_event_seq(const struct fleet *b)
{
	return b->seq;
}

/* ---- Members ------------------------------------------------------------------------------ */

/*
 * One event per change of a member's state as this node sees it:
 *   (first seen) alive        member-join     a member joined (or was known at start)
 *   alive -> suspect          member-suspect  it missed its probes; it may refute
 *   suspect -> alive          member-alive    it refuted the suspicion: recovered
 *   alive/suspect -> dead     member-failed   declared failed
 *   any -> left               member-left     left on purpose
 *   dead/left -> alive        member-back     came back (restarted, or the partition healed)
 * A member first seen dead or left says nothing (a restart reloads such members). Incarnation
 * changes without a state change say nothing. This node is not reported.
 */
void fleet__member_event(struct fleet *b, const struct gossip_member *m)
{
	struct fleet_member_seen *s = NULL;
	if (!m || m->self || memcmp(m->id, b->id, STORE_NODE_ID_LEN) == 0)
		return;
	for (size_t i = 0; i < b->nmseen; i++)
		if (memcmp(b->mseen[i].id, m->id, STORE_NODE_ID_LEN) == 0) {
			s = &b->mseen[i];
			break;
		}
	int old = s ? s->state : -1;
	int now = (int)m->state;
	if (!s) {
		if (b->nmseen == b->capmseen) {
			size_t ncap = b->capmseen ? 2 * b->capmseen : 16;
			struct fleet_member_seen *n = realloc(b->mseen, ncap * sizeof *n);
			if (!n) {
				log_warning("out of memory: a membership change was not reported");
				return;
			}
			b->mseen = n;
			b->capmseen = ncap;
		}
		s = &b->mseen[b->nmseen++];
		memcpy(s->id, m->id, STORE_NODE_ID_LEN);
	}
	s->state = (uint8_t)now;
	if (old == now)
		return;
	char addr[64] = "";
	gossip_addr_format(&m->addr, addr, sizeof addr);
	const char *kind = NULL, *what = NULL;
	switch (now) {
	case GOSSIP_ALIVE:
		if (old < 0) {
			kind = "member-join", what = "joined";
		} else if (old == GOSSIP_SUSPECT) {
			kind = "member-alive", what = "refuted the suspicion: alive again";
		} else {
			kind = "member-back", what = old == GOSSIP_LEFT ? "came back after leaving"
								 : "came back after failing";
		}
		break;
	case GOSSIP_SUSPECT:
		if (old >= 0)
			kind = "member-suspect", what = "is suspected of failing (missed its probes)";
		break;
	case GOSSIP_DEAD:
		if (old >= 0)
			kind = "member-failed", what = "failed (declared dead)";
		break;
	case GOSSIP_LEFT:
		if (old >= 0)
			kind = "member-left", what = "left the cluster";
		break;
	}
	if (kind)
		fleet__event(b, kind, NULL, 0, "%s (%s) %s", m->name, addr, what);
}

/* ---- Counting ----------------------------------------------------------------------------- */

const double fleet_swap_buckets[FLEET_SWAP_BUCKETS] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
						       300};

const char *fleet_rollback_reason_name(int reason)
{
	switch (reason) {
	case FLEET_ROLLBACK_HEALTH: return "health";
	case FLEET_ROLLBACK_OPERATOR: return "operator";
	case FLEET_ROLLBACK_LOCAL: return "local";
	}
	return "unknown";
}

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

/*
 * A rollback revision @r, new to this node, entered the log (decided here or learned from a
 * peer): count it once, by the reason of the votes on the revision it rolls back (one operator
 * vote makes it an operator's rollback), and record when this node learned of it. A rollback's
 * hlc is the bad revision's + 1 (agree.h), so its WHEN in `history` is the bad revision's
 * time; the learn time is the moment an operator asks about. Persisted in STORE_KV_AGENT, key
 * "learned/<service>/<rev, 16 hex>", value version 1 + wall ms (be64), so a restart keeps it;
 * a decision learned before this was recorded shows as unknown. The store write is one small
 * transaction on the loop, like the revision's own store_revision_put just before.
 */
void fleet__decision_learned(struct fleet *b, struct svc *v, const struct store_revision *r)
{
	int reason = FLEET_ROLLBACK_HEALTH;
	for (size_t i = 0; i < v->nvotes; i++)
		if (v->votes[i].rev + 1 == r->rev && v->votes[i].reason == STORE_VOTE_OPERATOR)
			reason = FLEET_ROLLBACK_OPERATOR;
	v->cnt.rollbacks[reason]++;

	char key[100];
	uint8_t val[9];
	int n = snprintf(key, sizeof key, "learned/%s/%016" PRIx64, v->name, r->rev);
	val[0] = 1;
	be64_put(val + 1, agent_now_ms());
	int e = store_kv_put(b->s, STORE_KV_AGENT, key, (size_t)n, val, sizeof val);
	if (e < 0)
		log_warning("%s: cannot record when rev %" PRIu64 " was learned: %s", v->name,
			    r->rev, store_strerror(e));
}

struct learned_ctx {
	char prefix[80];
	size_t plen;
	uint64_t (*pairs)[2];
	size_t n, cap;
};

static int learned_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	struct learned_ctx *l = ud;
	const uint8_t *p = val;
	char hex[17];
	if (klen != l->plen + 16 || memcmp(key, l->prefix, l->plen) != 0 || vlen != 9 || p[0] != 1)
		return 0;
	memcpy(hex, (const char *)key + l->plen, 16);
	hex[16] = 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 8;
		uint64_t (*np)[2] = realloc(l->pairs, ncap * sizeof *np);
		if (!np)
			return -ENOMEM;
		l->pairs = np;
		l->cap = ncap;
	}
	l->pairs[l->n][0] = strtoull(hex, NULL, 16);
	l->pairs[l->n][1] = be64_get(p + 1);
	l->n++;
	return 0;
}

int fleet__learned_get(struct fleet *b, const char *service, uint64_t (**ret)[2], size_t *n)
{
	struct learned_ctx l = {.n = 0};
	l.plen = (size_t)snprintf(l.prefix, sizeof l.prefix, "learned/%s/", service);
	int r = store_kv_foreach(b->s, STORE_KV_AGENT, learned_cb, &l);
	if (r < 0) {
		free(l.pairs);
		*ret = NULL;
		*n = 0;
		return r;
	}
	*ret = l.pairs;
	*n = l.n;
	return 0;
}

void fleet__vote_cast(struct svc *v, enum store_vote_reason reason)
{
	v->cnt.votes[reason == STORE_VOTE_OPERATOR ? 1 : 0]++;
}

void fleet__local_rollback_done(struct svc *v)
{
	v->cnt.rollbacks[FLEET_ROLLBACK_LOCAL]++;
}

void fleet__swap_began(struct fleet *b, struct svc *v)
{
	if (!v->swap_began)
		v->swap_began = uv_now(b->loop) ? uv_now(b->loop) : 1;
}

/* A swap attempt ended: @status 0 done (its duration, from the first swap-start event of this
 * swap through the retries, goes into the histogram), < 0 failed (it will be retried). */
void fleet__swap_ended(struct fleet *b, struct svc *v, int status)
{
	if (status < 0) {
		v->cnt.swaps_failed++;
		return;
	}
	v->cnt.swaps_ok++;
	if (!v->swap_began)
		return;	/* resumed or adopted at start: no start seen, no duration */
	uint64_t ms = uv_now(b->loop) - v->swap_began;
	v->swap_began = 0;
	size_t i = 0;
	while (i < FLEET_SWAP_BUCKETS && (double)ms / 1000.0 > fleet_swap_buckets[i])
		i++;
	v->cnt.swap_hist[i]++;
	v->cnt.swap_ms_sum += ms;
}

int fleet_service_stats_foreach(struct fleet *b,
				int (*cb)(void *ud, const struct fleet_service_stats *s), void *ud)
{
	if (!b)
		return 0;
	for (size_t i = 0; i < b->nsvcs; i++) {
		struct svc *v = b->svcs[i];
		struct fleet_service_stats st = {
			.service = v->name,
			.desired_rev = v->have_desired ? v->desired_rev : 0,
			.running_rev = v->running_rev,
			.health = v->hstate == HSTATE_NONE
					  ? "none"
					  : health_state_name((enum health_state)v->hstate),
			.healthy = v->hstate == HEALTH_HEALTHY,
			.nodes_healthy = v->hstate == HEALTH_HEALTHY,
			.nodes_reporting = 1,
			.counts = &v->cnt,
		};
		for (size_t k = 0; k < b->npeers; k++) {
			if (strcmp(b->peers[k].h.service, v->name) != 0)
				continue;
			st.nodes_reporting++;
			st.nodes_healthy += b->peers[k].h.state == HEALTH_HEALTHY;
		}
		int r = cb(ud, &st);
		if (r)
			return r;
	}
	return 0;
}
