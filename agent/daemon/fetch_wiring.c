/*
 * agent/daemon/fetch_wiring.c: the peer-to-peer artifact fetch (cluster/fetch.h) inside agentd:
 * it serves and fetches over the agent's gossip transport, the fleet asks it for artifacts it
 * lacks (fleet opts need_artifact = agent_need_artifact) and is told of every one that lands
 * (and then announces it in its health record, so others fetch from it too). The fetch asks
 * here, at every attempt, who holds an artifact now (the health records' held lists) and
 * whether it is still wanted (the fleet's desired artifact); member events make a waiting
 * retry go at once when a holder is back.
 */
#include <stdlib.h>
#include <string.h>

#include "agent/base/log.h"
#include "agent/cluster/cluster.h"
#include "agent/cluster/fetch.h"
#include "agent/daemon/agent.h"
#include "agent/fleet/fleet.h"
#include "agent/fleet/records.h"

static void agent_artifact_arrived(void *ud, const struct store_id *id)
{
	struct agent *a = ud;

	fleet_artifact_arrived(a->fleet, id); /* a->fleet is NULL until it starts */
}

struct holders_scan {
	const struct store_id *id;
	uint8_t (*out)[STORE_NODE_ID_LEN];
	size_t n, max;
};

static int holders_cb(void *ud, const struct gossip_record *r)
{
	struct holders_scan *hs = ud;
	struct fleet_key k;
	struct fleet_health h;

	if (hs->n >= hs->max)
		return 1;
	if (r->key_len < 7 || memcmp(r->key, "health/", 7) != 0 ||
	    fleet_key_parse(r->key, r->key_len, &k) < 0 || k.type != FLEET_REC_HEALTH ||
	    fleet_health_decode(r->value, r->value_len, &h) < 0)
		return 0;
	for (uint32_t i = 0; i < h.nheld; i++)
		if (memcmp(h.held[i].b, hs->id->b, STORE_ID_LEN) == 0) {
			memcpy(hs->out[hs->n++], r->owner, STORE_NODE_ID_LEN);
			break;
		}
	return 0;
}

/* fetch_hooks.holders: the owners of health records that list @id as held. */
static size_t agent_holders(void *ud, const struct store_id *id, uint8_t (*ret)[STORE_NODE_ID_LEN],
			    size_t max)
{
	struct agent *a = ud;
	struct holders_scan hs = { .id = id, .out = ret, .max = max };

	if (a->cluster)
		cluster_record_foreach(a->cluster, holders_cb, &hs);
	return hs.n;
}

/* fetch_hooks.wanted: the fleet still desires @id for @service (unknown while it starts). */
static bool agent_wanted(void *ud, const char *service, const struct store_id *id)
{
	struct agent *a = ud;
	struct store_id want;

	if (!a->fleet)
		return true;
	if (fleet_desired(a->fleet, service, NULL, &want) < 0)
		return false;
	return memcmp(want.b, id->b, STORE_ID_LEN) == 0;
}

static void agent_fetch_member(void *ud, const struct gossip_member *m)
{
	struct agent *a = ud;

	if (a->fetch && !m->self && m->state == GOSSIP_ALIVE)
		fetch_member_alive(a->fetch, m->id);
}

static uint32_t env_ms(const char *name)
{
	const char *v = getenv(name);

	return v && atoi(v) > 0 ? (uint32_t)atoi(v) : 0;
}

int fetch_agent_start(struct agent *a)
{
	struct gossip_transport *t;
	struct fetch_config cfg = {
		/* tests: a shorter back-off (0: the defaults, 1 s .. 60 s) */
		.retry_ms = env_ms("SHOAL_FETCH_RETRY_MS"),
		.retry_max_ms = env_ms("SHOAL_FETCH_RETRY_MAX_MS"),
		/* benchmarks: upload slots (tests/bench/swarm_netns.sh compares 4 with N) */
		.serve_slots = env_ms("SHOAL_FETCH_SERVE_SLOTS"),
		/* a fetched artifact meets the limits a local import would */
		.limits = {a->cfg.max_artifact_file_size, a->cfg.max_artifact_size,
			   a->cfg.max_artifact_files},
	};
	struct fetch_hooks hooks = {
		.holders = agent_holders,
		.wanted = agent_wanted,
		.ud = a,
	};
	int r;

	if (!a->cluster)
		return 0; /* gossip is off: nothing to serve or fetch over */
	t = cluster_transport(a->cluster);
	if (!t)
		return 0;
	r = fetch_new(&a->loop, a->store, t, &cfg, &a->fetch);
	if (r < 0) {
		log_error("cannot start the artifact fetch service: %s", strerror(-r));
		return r;
	}
	fetch_set_arrived(a->fetch, agent_artifact_arrived, a);
	fetch_set_hooks(a->fetch, &hooks);
	r = cluster_subscribe(a->cluster, agent_fetch_member, NULL, a);
	if (r < 0) /* not fatal: retries then only follow their back-off */
		log_warning("fetch: cannot follow member changes: %s", strerror(-r));
	return 0;
}

void fetch_agent_stop(struct agent *a)
{
	if (!a->fetch)
		return;
	fetch_free(a->fetch);
	a->fetch = NULL;
}

void agent_need_artifact(void *ud, const char *service, uint64_t rev,
			 const struct store_id *artifact,
			 const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders)
{
	struct agent *a = ud;

	if (a->fetch) /* NULL once fetch_agent_stop ran: the fleet is closing too */
		fetch_brain_need(a->fetch, service, rev, artifact, holders, nholders);
}
