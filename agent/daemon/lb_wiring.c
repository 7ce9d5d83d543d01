/*
 * agent/daemon/lb_wiring.c: the traffic side of agentd (issue 14): the read API
 * (catalog.h, --http-api) and the HAProxy driver (traffic/traffic.h), both fed by the fleet's
 * endpoint catalog (fleet/endpoints.h). See agent.h: traffic_agent_start.
 *
 * One struct traffic_lb per `haproxy-backend SERVICE=BACKEND[:SLOTPREFIX]`, all on the one
 * `haproxy-socket`, with this node's site and `failover-share`. The fleet calls changed() at
 * every catalog change; the read API's waiting requests are answered at once, the drivers are
 * fed after a DEBOUNCE_MS quiet period (a swap changes the catalog a few times within
 * milliseconds: draining, withdrawn, starting, healthy). A driver pass then sends only what
 * differs (traffic.h).
 *
 * Why nothing is sent before the first anti-entropy exchange: a node that just started knows
 * no one's endpoints yet, and feeding its empty catalog to HAProxy would put every slot into
 * maint (an outage on every agent restart). The drivers get their first update once the node
 * has synced (or is alone by configuration); HAProxy keeps serving what it had until then.
 *
 * The drivers' reports go to the log and to `agentctl events` (kind "lb") in words:
 * "haproxy web: connect to /run/haproxy/admin.sock: connection refused (retrying)", ...
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/base/log.h"
#include "agent/cluster/cluster.h"
#include "agent/daemon/agent.h"
#include "agent/daemon/catalog.h"
#include "agent/fleet/endpoints.h"
#include "agent/fleet/fleet.h"
#include "traffic/traffic.h"

#define DEBOUNCE_MS 50
#define SYNC_POLL_MS 250

struct lb_entry {
	char service[65];
	char backend[64];
	char prefix[64];
	struct traffic_lb *lb;
	struct lb_set *set;
	bool in_error;		/* the last pass failed */
	bool synced_once;	/* a pass succeeded since start */
	uint64_t updates;
};

struct lb_set {
	struct agent *a;
	uv_timer_t debounce;
	struct lb_entry *v;
	size_t n;
	bool pushed_once;
	unsigned open;		/* handles and drivers still closing */
	bool closing;
};

struct sess_ctx {
	fleet_ep_sessions_done *done;
	void *cbud;
	struct lb_entry *e;
};

/* ---- Feeding the drivers --------------------------------------------------------------------- */

static int count_other(void *ud, const struct gossip_member *m)
{
	struct agent *a = ((void **)ud)[0];
	size_t *n = ((void **)ud)[1];
	if (memcmp(m->id, a->node_id, STORE_NODE_ID_LEN) != 0)
		(*n)++;
	return 0;
}

/* As fleet_wiring.c's net_synced: a full exchange done, or a founder alone by configuration. */
static bool synced(struct agent *a)
{
	struct cluster_summary s;
	size_t others = 0;
	void *pair[2] = {a, &others};
	if (!a->cluster)
		return true;
	cluster_summary(a->cluster, &s);
	if (s.sync_ok > 0)
		return true;
	cluster_member_foreach(a->cluster, count_other, pair);
	return a->cfg.njoin == 0 && others == 0;
}

static void push_one(struct lb_set *set, struct lb_entry *e)
{
	struct fleet_endpoint *eps = NULL;
	struct traffic_endpoint *te = NULL;
	size_t n = 0;
	int r = fleet_endpoints_get(set->a->fleet, e->service, &eps, &n, NULL);
	if (r < 0)
		return;
	if (n && !(te = calloc(n, sizeof *te))) {
		free(eps);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		te[i].node = eps[i].node;
		te[i].site = eps[i].site;
		te[i].addr = eps[i].addr;
		te[i].port = eps[i].port;
		te[i].weight = eps[i].weight;
		/* the same numbering (endpoints.h); a dead node's endpoint is unhealthy already */
		te[i].state = (enum traffic_state)eps[i].state;
		te[i].revision = NULL;
	}
	r = traffic_lb_update(e->lb, te, n);
	if (r < 0 && set->a->fleet)
		fleet_event_note(set->a->fleet, "lb", e->service, "haproxy %s: endpoints refused "
				 "by the planner: %s", e->backend, strerror(-r));
	e->updates++;
	free(te);
	free(eps);
}

static void on_debounce(uv_timer_t *t)
{
	struct lb_set *set = t->data;
	if (set->closing || !set->a->fleet)
		return;
	if (!synced(set->a)) {
		uv_timer_start(&set->debounce, on_debounce, SYNC_POLL_MS, 0);
		return;
	}
	set->pushed_once = true;
	for (size_t i = 0; i < set->n; i++)
		push_one(set, &set->v[i]);
}

static void on_changed(void *ud, uint64_t index)
{
	struct agent *a = ud;
	catalog_http_changed(a->http, index);
	if (a->lbs && !a->lbs->closing)
		uv_timer_start(&a->lbs->debounce, on_debounce, DEBOUNCE_MS, 0);
}

static void sessions_cb(int err, uint32_t scur, const char *slot, void *ud)
{
	struct sess_ctx *x = ud;
	(void)slot;
	/* -ENOENT is both "no slot holds that address" (nothing to wait for) and "no such
	 * socket": only a driver in step with HAProxy can mean the first */
	if (err == -ENOENT && (!x->e->synced_once || x->e->in_error))
		err = -ENOTCONN;
	x->done(x->cbud, err, scur);
	free(x);
}

static int on_sessions(void *ud, const char *service, const char *addr, uint16_t port,
		       fleet_ep_sessions_done *done, void *cbud)
{
	struct agent *a = ud;
	struct lb_set *set = a->lbs;
	for (size_t i = 0; set && !set->closing && i < set->n; i++) {
		if (strcmp(set->v[i].service, service) != 0)
			continue;
		struct sess_ctx *x = malloc(sizeof *x);
		if (!x)
			return -ENOMEM;
		x->done = done;
		x->cbud = cbud;
		x->e = &set->v[i];
		int r = traffic_lb_sessions(set->v[i].lb, addr, port, sessions_cb, x);
		if (r < 0)
			free(x);
		return r;
	}
	return -ENOENT;
}

/* ---- Driver reports -------------------------------------------------------------------------- */

static void on_lb_event(const struct traffic_event *ev, void *ud)
{
	struct lb_entry *e = ud;
	struct agent *a = e->set->a;
	switch (ev->kind) {
	case TRAFFIC_EV_SYNCED:
		if (e->in_error) {
			log_notice("haproxy %s: backend %s in step again", e->service, e->backend);
			fleet_event_note(a->fleet, "lb", e->service, "haproxy %s: in step again (%zu "
					 "command(s))", e->backend, ev->ncmds);
		} else if (ev->ncmds) {
			log_info("haproxy %s: backend %s: %zu command(s) applied", e->service,
				 e->backend, ev->ncmds);
		}
		e->in_error = false;
		e->synced_once = true;
		break;
	case TRAFFIC_EV_ERROR:
		e->in_error = true;
		log_warning("haproxy %s: %s (retrying)", e->service, ev->message);
		fleet_event_note(a->fleet, "lb", e->service, "haproxy %s: %s (retrying)", e->backend,
				 ev->message);
		break;
	case TRAFFIC_EV_COMMAND:
		log_warning("haproxy %s: %s", e->service, ev->message);
		fleet_event_note(a->fleet, "lb", e->service, "haproxy %s: %s", e->backend,
				 ev->message);
		break;
	case TRAFFIC_EV_UNPLACED:
	case TRAFFIC_EV_FAILOVER:
		log_notice("haproxy %s: %s", e->service, ev->message);
		fleet_event_note(a->fleet, "lb", e->service, "haproxy %s: %s", e->backend,
				 ev->message);
		break;
	}
}

/* ---- Life cycle ------------------------------------------------------------------------------ */

static void set_part_closed(struct lb_set *set)
{
	if (--set->open)
		return;
	free(set->v);
	free(set);
}

static void lb_closed(void *ud)
{
	set_part_closed(ud);
}

static void debounce_closed(uv_handle_t *h)
{
	set_part_closed(h->data);
}

static void http_closed(void *ud)
{
	struct agent *a = ud;
	a->http = NULL;
}

int traffic_agent_start(struct agent *a, char *err, size_t errlen)
{
	const char *site = NULL;
	int r;

	if (!a->fleet)
		return 0;
	for (size_t i = 0; i < a->cfg.nlabels; i++)
		if (strncmp(a->cfg.labels[i], "site=", 5) == 0)
			site = a->cfg.labels[i] + 5;
	/* A load-balancer host may serve the clients of another site than the one its own
	 * instances are in (or run none that matter): --haproxy-site names the preferred one. */
	if (a->cfg.haproxy_site)
		site = a->cfg.haproxy_site;
	if (a->cfg.nhaproxy_backends && !a->cfg.haproxy_socket) {
		snprintf(err, errlen, "haproxy-backend needs haproxy-socket (HAProxy's stats "
			 "socket, level admin)");
		return -EINVAL;
	}
	if (a->cfg.http_api) {
		r = catalog_http_new(&a->loop, a, a->cfg.http_api, &a->http, err, errlen);
		if (r < 0)
			return r;
	}
	if (a->cfg.nhaproxy_backends) {
		struct lb_set *set = calloc(1, sizeof *set);
		if (!set || !(set->v = calloc(a->cfg.nhaproxy_backends, sizeof *set->v))) {
			free(set);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		set->a = a;
		uv_timer_init(&a->loop, &set->debounce);
		set->debounce.data = set;
		set->open = 1;
		a->lbs = set;
		for (size_t i = 0; i < a->cfg.nhaproxy_backends; i++) {
			struct lb_entry *e = &set->v[set->n];
			const char *spec = a->cfg.haproxy_backends[i];
			const char *eq = strchr(spec, '='), *colon = strchr(eq + 1, ':');
			snprintf(e->service, sizeof e->service, "%.*s", (int)(eq - spec), spec);
			if (colon) {
				snprintf(e->backend, sizeof e->backend, "%.*s", (int)(colon - eq - 1),
					 eq + 1);
				snprintf(e->prefix, sizeof e->prefix, "%s", colon + 1);
			} else {
				snprintf(e->backend, sizeof e->backend, "%s", eq + 1);
			}
			e->set = set;
			struct traffic_lb_config lc = {
				.socket = a->cfg.haproxy_socket,
				.backend = e->backend,
				.slot_prefix = e->prefix[0] ? e->prefix : NULL,
				.site = site,
				.failover_permille = a->cfg.failover_permille,
			};
			r = traffic_lb_new(&a->loop, &lc, on_lb_event, e, &e->lb);
			if (r < 0) {
				snprintf(err, errlen, "haproxy-backend %s: %s", spec,
					 r == -EINVAL ? "invalid socket address or name"
						      : strerror(-r));
				return r;	/* traffic_agent_stop releases what was made */
			}
			set->n++;
			set->open++;
			log_notice("haproxy: service %s -> backend %s%s%s on %s (site %s, failover "
				   "share %.3f)", e->service, e->backend, e->prefix[0] ? ", slots " : "",
				   e->prefix, a->cfg.haproxy_socket, site ? site : "-",
				   a->cfg.failover_permille / 1000.0);
		}
		uv_timer_start(&set->debounce, on_debounce, DEBOUNCE_MS, 0);
	}
	struct fleet_ep_hooks hk = {.changed = on_changed, .sessions = on_sessions, .ud = a};
	fleet_endpoints_hooks(a->fleet, &hk);
	return 0;
}

void traffic_agent_stop(struct agent *a)
{
	struct lb_set *set = a->lbs;
	if (a->fleet)
		fleet_endpoints_hooks(a->fleet, NULL);
	catalog_http_close(a->http, http_closed, a);
	if (!set)
		return;
	a->lbs = NULL;
	set->closing = true;
	uv_timer_stop(&set->debounce);
	uv_close((uv_handle_t *)&set->debounce, debounce_closed);
	for (size_t i = 0; i < set->n; i++)
		traffic_lb_close(set->v[i].lb, lb_closed, set);
}
