/*
 * agent/daemon/fetch_wiring.c: the peer-to-peer artifact fetch (cluster/fetch.h) inside agentd:
 * it serves and fetches over the agent's gossip transport, the fleet asks it for artifacts it
 * lacks (fleet opts need_artifact = agent_need_artifact) and is told of every one that lands.
 */
#include <string.h>

#include "agent/base/log.h"
#include "agent/cluster/cluster.h"
#include "agent/cluster/fetch.h"
#include "agent/daemon/agent.h"
#include "agent/fleet/fleet.h"

static void agent_artifact_arrived(void *ud, const struct store_id *id)
{
	struct agent *a = ud;

	fleet_artifact_arrived(a->fleet, id); /* a->fleet is NULL until it starts */
}

int fetch_agent_start(struct agent *a)
{
	struct gossip_transport *t;
	int r;

	if (!a->cluster)
		return 0; /* gossip is off: nothing to serve or fetch over */
	t = cluster_transport(a->cluster);
	if (!t)
		return 0;
	r = fetch_new(&a->loop, a->store, t, NULL, &a->fetch);
	if (r < 0) {
		log_error("cannot start the artifact fetch service: %s", strerror(-r));
		return r;
	}
	fetch_set_arrived(a->fetch, agent_artifact_arrived, a);
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
