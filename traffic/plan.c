/*
 * traffic/plan.c: the pure planner. Endpoints + slots + HAProxy's last state -> commands.
 * The rules (slot stability, states, the failover formula, command order) are documented in
 * traffic/traffic.h; this file implements them in the order the header tells them:
 *
 *   1. validate and key every endpoint by its binary address and port; drop duplicates
 *   2. find which slot holds which endpoint (HAProxy's address and port of the slot)
 *   3. place endpoints that need a slot and hold none; give up unhealthy-held slots if short
 *   4. the failover decision (L, H, need)
 *   5. per slot: the target mode and weight, and the commands from here to there
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traffic/traffic.h"
#include "traffic/traffic_int.h"

const char *traffic_state_name(int state)
{
	switch (state) {
	case TRAFFIC_STARTING: return "starting";
	case TRAFFIC_HEALTHY: return "healthy";
	case TRAFFIC_DRAINING: return "draining";
	case TRAFFIC_UNHEALTHY: return "unhealthy";
	}
	return "?";
}

int traffic_state_parse(const char *s)
{
	for (int st = TRAFFIC_STARTING; st <= TRAFFIC_UNHEALTHY; st++)
		if (s && strcmp(s, traffic_state_name(st)) == 0)
			return st;
	return -EINVAL;
}

const char *traffic_mode_name(int mode)
{
	switch (mode) {
	case TRAFFIC_READY: return "ready";
	case TRAFFIC_DRAIN: return "drain";
	case TRAFFIC_MAINT: return "maint";
	}
	return "?";
}

enum traffic_mode traffic_server_mode(const struct traffic_server *s)
{
	if (s->admin & TRAFFIC_ADMF_MAINT)
		return TRAFFIC_MAINT;
	if (s->admin & TRAFFIC_ADMF_DRAIN)
		return TRAFFIC_DRAIN;
	return TRAFFIC_READY;
}

int traffic_share_parse(const char *s, unsigned *ret_permille)
{
	if (!s || !*s)
		return -EINVAL;
	size_t n = strlen(s);
	if (n > 16)
		return -EINVAL;
	if (s[n - 1] == '%') {
		/* "50%", "12.5%": percent with at most one decimal. */
		unsigned whole = 0, tenth = 0;
		size_t i = 0;
		if (i >= n - 1 || s[i] < '0' || s[i] > '9')
			return -EINVAL;
		while (i < n - 1 && s[i] >= '0' && s[i] <= '9' && whole <= 100)
			whole = whole * 10 + (unsigned)(s[i++] - '0');
		if (i < n - 1) {
			if (s[i] != '.' || i + 2 != n - 1 || s[i + 1] < '0' || s[i + 1] > '9')
				return -EINVAL;
			tenth = (unsigned)(s[i + 1] - '0');
		}
		unsigned pm = whole * 10 + tenth;
		if (whole > 100 || pm > 1000)
			return -EINVAL;
		*ret_permille = pm;
		return 0;
	}
	/* "0", "1", "0.5", ".25", "1.000". */
	size_t i = 0;
	unsigned whole = 0;
	bool digits = false;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		whole = whole * 10 + (unsigned)(s[i++] - '0');
		digits = true;
		if (whole > 1)
			return -EINVAL;
	}
	unsigned frac = 0, scale = 100;
	if (i < n) {
		if (s[i++] != '.')
			return -EINVAL;
		if (i >= n && !digits)
			return -EINVAL;
		while (i < n) {
			if (s[i] < '0' || s[i] > '9')
				return -EINVAL;
			frac += scale * (unsigned)(s[i] - '0');
			scale /= 10;
			digits = true;
			i++;
		}
	}
	if (!digits)
		return -EINVAL;
	unsigned pm = whole * 1000 + frac;
	if (pm > 1000)
		return -EINVAL;
	*ret_permille = pm;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

struct ep {
	size_t idx;		/* into input.endpoints */
	struct traffic__ip ip;
	uint16_t port;
	bool local;
	bool dup;		/* dropped as a duplicate */
	long slot;		/* held or placed slot; -1 none */
	uint16_t weight;	/* clamped */
};

struct sl {
	const struct traffic_server *srv;	/* HAProxy's line; NULL: unknown */
	long ep;		/* index into the ep array; -1 free */
	bool freed;		/* held a vanished endpoint, or gave one up, in this pass */
};

struct planner {
	const struct traffic_plan_input *in;
	struct ep *eps;
	struct sl *sls;
	struct traffic_plan p;
	size_t ccap, ucap;
};

static int key_cmp(const struct ep *a, const struct ep *b)
{
	if (a->ip.family != b->ip.family)
		return a->ip.family < b->ip.family ? -1 : 1;
	int c = memcmp(a->ip.b, b->ip.b, sizeof a->ip.b);
	if (c)
		return c;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	return 0;
}

static int state_rank(enum traffic_state s)
{
	switch (s) {
	case TRAFFIC_HEALTHY: return 0;
	case TRAFFIC_STARTING: return 1;
	case TRAFFIC_DRAINING: return 2;
	default: return 3;
	}
}

/* The order of preference: local, healthy before starting, node, address, port. */
static int pref_cmp(const struct traffic_plan_input *in, const struct ep *a, const struct ep *b)
{
	if (a->local != b->local)
		return a->local ? -1 : 1;
	const struct traffic_endpoint *x = &in->endpoints[a->idx], *y = &in->endpoints[b->idx];
	int ra = state_rank(x->state), rb = state_rank(y->state);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	int c = strcmp(x->node, y->node);
	if (c)
		return c;
	c = key_cmp(a, b);
	if (c)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* qsort has no user pointer in C11; the planner is reentrant, so sort with a local merge. */
static void sort_idx(size_t *v, size_t n, size_t *tmp,
		     int (*cmp)(const struct planner *, size_t, size_t), const struct planner *pl)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	sort_idx(v, h, tmp, cmp, pl);
	sort_idx(v + h, n - h, tmp, cmp, pl);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = cmp(pl, v[j], v[i]) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof *v);
}

static int by_key(const struct planner *pl, size_t a, size_t b)
{
	int c = key_cmp(&pl->eps[a], &pl->eps[b]);
	if (c)
		return c;
	return pref_cmp(pl->in, &pl->eps[a], &pl->eps[b]);
}

static int by_pref(const struct planner *pl, size_t a, size_t b)
{
	return pref_cmp(pl->in, &pl->eps[a], &pl->eps[b]);
}

static int add_unplaced(struct planner *pl, size_t idx, enum traffic_unplaced_why why)
{
	if (pl->p.nunplaced == pl->ucap) {
		size_t nc = pl->ucap ? pl->ucap * 2 : 8;
		struct traffic_unplaced *t = realloc(pl->p.unplaced, nc * sizeof *t);
		if (!t)
			return -ENOMEM;
		pl->p.unplaced = t;
		pl->ucap = nc;
	}
	pl->p.unplaced[pl->p.nunplaced].endpoint = idx;
	pl->p.unplaced[pl->p.nunplaced].why = why;
	pl->p.nunplaced++;
	return 0;
}

static int add_cmd(struct planner *pl, size_t slot, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int add_cmd(struct planner *pl, size_t slot, const char *fmt, ...)
{
	if (pl->p.ncmds == pl->ccap) {
		size_t nc = pl->ccap ? pl->ccap * 2 : 16;
		struct traffic_cmd *t = realloc(pl->p.cmds, nc * sizeof *t);
		if (!t)
			return -ENOMEM;
		pl->p.cmds = t;
		pl->ccap = nc;
	}
	struct traffic_cmd *c = &pl->p.cmds[pl->p.ncmds];
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(c->line, sizeof c->line, fmt, ap);
	va_end(ap);
	/* Names and addresses are validated and bounded: a command always fits. */
	if (w < 0 || (size_t)w >= sizeof c->line)
		return -EINVAL;
	c->slot = slot;
	pl->p.ncmds++;
	return 0;
}

static int validate(const struct traffic_plan_input *in)
{
	if (!in || !traffic__name_ok(in->backend, false) || !traffic__name_ok(in->site, true) ||
	    in->failover_permille > 1000 || in->nslots > TRAFFIC_SLOTS_MAX ||
	    in->nendpoints > TRAFFIC_ENDPOINTS_MAX || in->nservers > TRAFFIC_SLOTS_MAX ||
	    (in->nslots && !in->slots) || (in->nservers && !in->servers) ||
	    (in->nendpoints && !in->endpoints))
		return -EINVAL;
	for (size_t i = 0; i < in->nslots; i++)
		if (!traffic__name_ok(in->slots[i], false))
			return -EINVAL;	/* a slot named twice is found after sorting */
	for (size_t i = 0; i < in->nendpoints; i++) {
		const struct traffic_endpoint *e = &in->endpoints[i];
		struct traffic__ip ip;
		if (!traffic__name_ok(e->node, false) || !traffic__name_ok(e->site, true) ||
		    !e->addr || strlen(e->addr) > TRAFFIC_ADDR_MAX ||
		    traffic__ip_parse(e->addr, &ip) != 0 || e->port == 0 ||
		    (unsigned)e->state > TRAFFIC_UNHEALTHY)
			return -EINVAL;
	}
	return 0;
}

static int by_slot_name(const struct planner *pl, size_t a, size_t b)
{
	return strcmp(pl->in->slots[a], pl->in->slots[b]);
}

static int by_server_name(const struct planner *pl, size_t a, size_t b)
{
	return strcmp(pl->in->servers[a].name, pl->in->servers[b].name);
}

/* The server line named @name, by binary search over @bys (server indices sorted by name):
 * n log n for the whole backend, where a scan per slot took 0.1 s at 4096 slots. */
static const struct traffic_server *find_server(const struct traffic_plan_input *in,
						const size_t *bys, const char *name)
{
	size_t lo = 0, hi = in->nservers;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(in->servers[bys[mid]].name, name);
		if (c == 0)
			return &in->servers[bys[mid]];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Endpoint (non-duplicate) with this key, by binary search over @byk (sorted by key). */
static long find_ep(const struct planner *pl, const size_t *byk, size_t n, const struct ep *k)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(&pl->eps[byk[mid]], k);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* The first of equal keys is the preferred one (by_key breaks ties by preference). */
	if (lo < n && key_cmp(&pl->eps[byk[lo]], k) == 0)
		return (long)byk[lo];
	return -1;
}

/*
 * Will HAProxy send new requests to the slot of @x (healthy, holding slot x->slot) once this
 * pass is applied, as far as HAProxy's own check says? A slot that leaves maint in this pass
 * (it is in maint now, or it changes address, which goes through maint) is UP at once:
 * HAProxy 2.6 sets its check to the lowest UP value when it leaves maint ("start OK but check
 * immediately"). Any other slot is as its last check left it: srv_op_state running (2) or
 * starting (1, slowstart) takes traffic; stopped (0) or stopping (3) does not, and setting it
 * ready does not change that before `rise` checks pass. A slot HAProxy did not report is
 * not counted: commands to it may well fail.
 */
static bool srv_up(const struct planner *pl, const struct ep *x)
{
	const struct traffic_server *cur = pl->sls[x->slot].srv;
	if (!cur)
		return false;
	if (traffic_server_mode(cur) == TRAFFIC_MAINT)
		return true;
	struct traffic__ip a;
	if (cur->port != x->port || traffic__ip_parse(cur->addr, &a) != 0 ||
	    memcmp(&a, &x->ip, sizeof a) != 0)
		return true;	/* placed in this pass: through maint */
	return cur->op_state == 1 || cur->op_state == 2;
}

static int slot_cmds(struct planner *pl, size_t s, int pass)
{
	const struct traffic_plan_input *in = pl->in;
	const struct traffic_slot_plan *want = &pl->p.slots[s];
	const struct traffic_server *cur = pl->sls[s].srv;
	const char *be = in->backend, *sn = in->slots[s];
	const struct traffic_endpoint *e = want->endpoint >= 0 ?
		&in->endpoints[want->endpoint] : NULL;

	bool addr_change = false;
	if (e) {
		struct traffic__ip a, b;
		traffic__ip_parse(e->addr, &b);	/* validated */
		addr_change = !cur || cur->port != e->port ||
			      traffic__ip_parse(cur->addr, &a) != 0 ||
			      memcmp(&a, &b, sizeof a) != 0;
	}
	int cur_mode = cur ? (int)traffic_server_mode(cur) : -1;
	bool lower = cur && (int)want->mode > cur_mode;
	bool raise = !cur || (int)want->mode < cur_mode;
	bool weight = want->mode == TRAFFIC_READY && (!cur || cur->uweight != want->weight);
	/* A lower weight takes capacity away only from a slot that serves now. */
	bool weight_down = weight && cur && cur_mode == TRAFFIC_READY &&
			   want->weight < cur->uweight;
	/* Pass 0 takes slots whose commands only add capacity; pass 1 every other slot. */
	bool adds_only = !lower && !weight_down && !(addr_change && cur && cur_mode != TRAFFIC_MAINT);
	if ((pass == 0) != adds_only)
		return 0;

	int r = 0;
	/* A serving slot that changes endpoint is taken out first, so the new address never
	 * gets traffic at the old weight, nor the old address at the new one. */
	if (addr_change && cur && cur_mode != TRAFFIC_MAINT && want->mode != TRAFFIC_MAINT) {
		r = add_cmd(pl, s, "set server %s/%s state maint", be, sn);
		cur_mode = TRAFFIC_MAINT;
		lower = false;
		raise = (int)want->mode < cur_mode;
	}
	if (!r && lower)
		r = add_cmd(pl, s, "set server %s/%s state %s", be, sn, traffic_mode_name(want->mode));
	if (!r && addr_change)
		r = add_cmd(pl, s, "set server %s/%s addr %s port %u", be, sn, e->addr,
			    (unsigned)e->port);
	if (!r && weight)
		r = add_cmd(pl, s, "set weight %s/%s %u", be, sn, (unsigned)want->weight);
	if (!r && raise)
		r = add_cmd(pl, s, "set server %s/%s state %s", be, sn, traffic_mode_name(want->mode));
	return r;
}

int traffic_plan_build(const struct traffic_plan_input *in, struct traffic_plan *ret)
{
	struct planner pl;
	size_t *byk = NULL, *cand = NULL, *tmp = NULL, *bys = NULL;
	size_t nk = 0, ncand = 0;
	int r;

	memset(&pl, 0, sizeof pl);
	if (!ret)
		return -EINVAL;
	r = validate(in);
	if (r)
		return r;
	pl.in = in;
	size_t ne = in->nendpoints, ns = in->nslots;
	r = -ENOMEM;
	pl.eps = calloc(ne ? ne : 1, sizeof *pl.eps);
	pl.sls = calloc(ns ? ns : 1, sizeof *pl.sls);
	pl.p.slots = calloc(ns ? ns : 1, sizeof *pl.p.slots);
	byk = calloc(ne ? ne : 1, sizeof *byk);
	cand = calloc(ne ? ne : 1, sizeof *cand);
	/* tmp serves every sort: endpoints, slots and servers (nservers <= SLOTS_MAX). */
	size_t nt = ne > ns ? ne : ns;
	if (in->nservers > nt)
		nt = in->nservers;
	tmp = calloc(nt ? nt : 1, sizeof *tmp);
	bys = calloc(nt ? nt : 1, sizeof *bys);
	if (!pl.eps || !pl.sls || !pl.p.slots || !byk || !cand || !tmp || !bys)
		goto out;
	pl.p.nslots = ns;
	/* A slot named twice is refused: sort the slot names, compare neighbours. */
	for (size_t i = 0; i < ns; i++)
		bys[i] = i;
	sort_idx(bys, ns, tmp, by_slot_name, &pl);
	for (size_t i = 1; i < ns; i++)
		if (strcmp(in->slots[bys[i - 1]], in->slots[bys[i]]) == 0) {
			r = -EINVAL;
			goto out;
		}
	for (size_t i = 0; i < in->nservers; i++)
		bys[i] = i;
	sort_idx(bys, in->nservers, tmp, by_server_name, &pl);
	const char *site = in->site ? in->site : "";

	/* 1. Key every endpoint; among equal keys the preferred one stays, the rest are
	 *    duplicates (reported, never served). */
	for (size_t i = 0; i < ne; i++) {
		const struct traffic_endpoint *e = &in->endpoints[i];
		struct ep *x = &pl.eps[i];
		x->idx = i;
		traffic__ip_parse(e->addr, &x->ip);	/* validated above */
		x->port = e->port;
		x->local = strcmp(e->site ? e->site : "", site) == 0;
		x->slot = -1;
		int w = e->weight;
		if (w < 0 || w > TRAFFIC_WEIGHT_MAX) {
			w = w < 0 ? 0 : TRAFFIC_WEIGHT_MAX;
			pl.p.nclamped++;
		}
		x->weight = (uint16_t)w;
		byk[i] = i;
	}
	sort_idx(byk, ne, tmp, by_key, &pl);
	for (size_t i = 0; i < ne; i++) {
		if (nk > 0 && key_cmp(&pl.eps[byk[nk - 1]], &pl.eps[byk[i]]) == 0) {
			pl.eps[byk[i]].dup = true;
			continue;
		}
		byk[nk++] = byk[i];
	}

	/* 2. Which slot holds which endpoint. */
	for (size_t s = 0; s < ns; s++) {
		struct sl *x = &pl.sls[s];
		x->ep = -1;
		x->srv = find_server(in, bys, in->slots[s]);
		if (!x->srv || !x->srv->addr[0])
			continue;
		struct ep k;
		memset(&k, 0, sizeof k);
		if (traffic__ip_parse(x->srv->addr, &k.ip) != 0)
			continue;
		k.port = x->srv->port;
		long e = find_ep(&pl, byk, nk, &k);
		if (e < 0) {
			/* Its endpoint left: the slot goes to maint; fill it only after the
			 * slots that are in maint already. */
			x->freed = traffic_server_mode(x->srv) != TRAFFIC_MAINT;
			continue;
		}
		if (pl.eps[e].slot >= 0)
			continue;	/* a second slot with the same address: free it */
		pl.eps[e].slot = (long)s;
		x->ep = e;
	}

	/* 3. Place those who need a slot and hold none, in order of preference. */
	for (size_t i = 0; i < nk; i++) {
		struct ep *x = &pl.eps[byk[i]];
		enum traffic_state st = in->endpoints[x->idx].state;
		if (x->slot < 0 && (st == TRAFFIC_HEALTHY || st == TRAFFIC_STARTING))
			cand[ncand++] = byk[i];
	}
	sort_idx(cand, ncand, tmp, by_pref, &pl);
	size_t nfree = 0;
	for (size_t s = 0; s < ns; s++)
		nfree += pl.sls[s].ep < 0;
	/* Short of slots: give up slots held by unhealthy endpoints (they are in maint and
	 * carry nothing), highest slot first so low slots stay put. */
	for (size_t s = ns; s-- > 0 && nfree < ncand;) {
		struct sl *x = &pl.sls[s];
		if (x->ep >= 0 && in->endpoints[pl.eps[x->ep].idx].state == TRAFFIC_UNHEALTHY) {
			pl.eps[x->ep].slot = -1;
			x->ep = -1;
			x->freed = true;
			nfree++;
		}
	}
	size_t next = 0;
	for (int round = 0; round < 2; round++)
		for (size_t s = 0; s < ns && next < ncand; s++) {
			struct sl *x = &pl.sls[s];
			if (x->ep >= 0 || x->freed != (round == 1))
				continue;
			x->ep = (long)cand[next];
			pl.eps[cand[next]].slot = (long)s;
			next++;
		}
	/* Unplaced, reported in input order. */
	for (size_t i = 0; i < ne; i++) {
		struct ep *x = &pl.eps[i];
		enum traffic_state st = in->endpoints[i].state;
		if (x->dup)
			r = add_unplaced(&pl, i, TRAFFIC_UNPLACED_DUPLICATE);
		else if (x->slot < 0 && (st == TRAFFIC_HEALTHY || st == TRAFFIC_STARTING))
			r = add_unplaced(&pl, i, TRAFFIC_UNPLACED_NO_SLOT);
		else
			r = 0;
		if (r)
			goto out;
	}

	/* 4. Failover: L, H, need = ceil(F * L). H counts only what HAProxy can send to once
	 *    this pass is applied: its own check must agree with the cluster (srv_up). */
	for (size_t i = 0; i < nk; i++) {
		const struct ep *x = &pl.eps[byk[i]];
		enum traffic_state st = in->endpoints[x->idx].state;
		if (!x->local || st == TRAFFIC_DRAINING)
			continue;
		pl.p.local_total++;
		if (st != TRAFFIC_HEALTHY || x->weight == 0 || x->slot < 0)
			continue;
		if (srv_up(&pl, x))
			pl.p.local_healthy++;
		else
			pl.p.local_waiting++;
	}
	pl.p.local_need = ((size_t)in->failover_permille * pl.p.local_total + 999) / 1000;
	pl.p.failover = !(pl.p.local_healthy >= 1 && pl.p.local_healthy >= pl.p.local_need);

	/* 5. Targets, then commands in two passes (capacity first). */
	for (size_t s = 0; s < ns; s++) {
		struct traffic_slot_plan *w = &pl.p.slots[s];
		long e = pl.sls[s].ep;
		w->endpoint = -1;
		w->mode = TRAFFIC_MAINT;
		w->weight = 0;
		if (e < 0)
			continue;
		const struct ep *x = &pl.eps[e];
		w->endpoint = (long)x->idx;
		switch (in->endpoints[x->idx].state) {
		case TRAFFIC_HEALTHY:
			w->mode = TRAFFIC_READY;
			w->weight = (x->local || pl.p.failover) ? x->weight : 0;
			break;
		case TRAFFIC_STARTING:
		case TRAFFIC_DRAINING:
			w->mode = TRAFFIC_DRAIN;
			w->weight = x->weight;
			break;
		default:
			w->mode = TRAFFIC_MAINT;
			break;
		}
	}
	r = 0;
	for (int pass = 0; pass < 2 && !r; pass++)
		for (size_t s = 0; s < ns && !r; s++)
			r = slot_cmds(&pl, s, pass);
	if (r)
		goto out;
	*ret = pl.p;
	memset(&pl.p, 0, sizeof pl.p);
out:
	traffic_plan_release(&pl.p);
	free(pl.eps);
	free(pl.sls);
	free(byk);
	free(cand);
	free(tmp);
	free(bys);
	return r;
}

void traffic_plan_release(struct traffic_plan *p)
{
	if (!p)
		return;
	free(p->cmds);
	free(p->slots);
	free(p->unplaced);
	memset(p, 0, sizeof *p);
}
