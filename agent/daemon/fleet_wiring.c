/*
 * agent/daemon/fleet_wiring.c: the fleet inside agentd: its transport is cluster/cluster.h, its
 * options come from the agent configuration, a missing artifact is asked of the fetch module
 * (see agent.h: fleet_agent_start).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/daemon/agent.h"
#include "agent/fleet/fleet.h"
#include "agent/cluster/cluster.h"
#include "agent/base/log.h"
#include "agent/daemon/hook.h"
#include "agent/base/sign.h"

#include <sodium.h>

static int net_put(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct agent *a = ud;
	if (!a->cluster)
		return -ESHUTDOWN;
	return cluster_record_put(a->cluster, key, klen, val, vlen, NULL);
}

static const struct gossip_record *net_get(void *ud, const uint8_t owner[STORE_NODE_ID_LEN],
					   const void *key, size_t klen)
{
	struct agent *a = ud;
	return a->cluster ? cluster_record_get(a->cluster, owner, key, klen) : NULL;
}

static int net_records(void *ud, int (*cb)(void *cbud, const struct gossip_record *r), void *cbud)
{
	struct agent *a = ud;
	return a->cluster ? cluster_record_foreach(a->cluster, cb, cbud) : 0;
}

static int net_members(void *ud, int (*cb)(void *cbud, const struct gossip_member *m), void *cbud)
{
	struct agent *a = ud;
	return a->cluster ? cluster_member_foreach(a->cluster, cb, cbud) : 0;
}

/* agree.h rule 0: a full anti-entropy exchange completed since start, or a founder that was
 * given no seed and knows no other member. */
static int count_other(void *ud, const struct gossip_member *m)
{
	struct agent *a = ((void **)ud)[0];
	size_t *n = ((void **)ud)[1];
	if (memcmp(m->id, a->node_id, STORE_NODE_ID_LEN) != 0)
		(*n)++;
	return 0;
}

static bool net_synced(void *ud)
{
	struct agent *a = ud;
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

static int net_reach(void *ud, const char *addr)
{
	struct agent *a = ud;
	return a->cluster ? cluster_join(a->cluster, &addr, 1) : -ENOTCONN;
}

static void on_member(void *ud, const struct gossip_member *m)
{
	struct agent *a = ud;
	if (a->fleet)
		fleet_on_member(a->fleet, m);
}

static void on_record(void *ud, const struct gossip_record *r)
{
	struct agent *a = ud;
	if (a->fleet)
		fleet_on_record(a->fleet, r);
}

/* Every event of the ring goes to the event hook, when one is configured (hook.h). */
static void on_event(void *ud, const struct fleet_event *e)
{
	struct agent *a = ud;
	hook_submit(a->hook, e);
}

int fleet_agent_start(struct agent *a, char *err, size_t errlen)
{
	struct agree_quorum_rule *q = NULL;
	const char *site = NULL;
	int r;

	for (size_t i = 0; i < a->cfg.nlabels; i++)
		if (strncmp(a->cfg.labels[i], "site=", 5) == 0)
			site = a->cfg.labels[i] + 5;
	if (a->cfg.nquorums) {
		q = calloc(a->cfg.nquorums, sizeof *q);
		if (!q) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < a->cfg.nquorums; i++) {
		r = agree_quorum_parse(a->cfg.quorums[i], &q[i]);
		if (r < 0) {
			snprintf(err, errlen, "quorum %s: must be SERVICE=majority|N|N/D",
				 a->cfg.quorums[i]);
			free(q);
			return r;
		}
	}
	/* the node's identity key (agent/base/sign.h): made at the first start, refused when
	 * readable by others */
	struct sign_key nk;
	char kpath[4096];
	bool created = false;
	snprintf(kpath, sizeof kpath, "%s/node.key", a->cfg.state_dir);
	r = sign_node_key_load(kpath, &nk, &created);
	if (r < 0) {
		snprintf(err, errlen, "node key %s: %s%s", kpath, sign_strerror(r),
			 r == -SIGN_EMODE ? "; it signs this node's votes, so agentd refuses it"
					  : "");
		free(q);
		return r;
	}
	if (created)
		log_notice("created this node's identity key %s (it signs its votes and roster "
			   "entry; keep it with the state directory)", kpath);
	struct fleet_opts o = {
		.node_id = a->node_id,
		.node_key = &nk,
		.operators_dir = a->cfg.operators_dir,
		.require_enrolment = a->cfg.require_enrolment,
		.node_name = a->cfg.node_name,
		.site = site,
		.state_dir = a->cfg.state_dir,
		.unit_dir = a->cfg.unit_dir,
		.bus_address = a->cfg.systemd_bus,
		.docker_host = a->cfg.docker_host,
		.quorums = q,
		.nquorums = a->cfg.nquorums,
		.max_parallel_per_site = a->cfg.max_parallel_swaps_per_site,
		.need_artifact = a->fetch ? agent_need_artifact : NULL,
		.need_artifact_ud = a,
		.on_event = a->hook ? on_event : NULL,
		.on_event_ud = a,
	};
	struct cluster_summary cs;
	if (a->cluster) {
		cluster_summary(a->cluster, &cs);
		o.advertise = cs.advertise;
	}
	o.reconnect_ms = (uint32_t)a->cfg.reconnect_ms;
	const char *env = getenv("SHOAL_RETRY_MS");	/* tests: shorter back-off */
	if (env && atoi(env) > 0) {
		o.retry_min_ms = (uint32_t)atoi(env);
		o.retry_max_ms = 8 * o.retry_min_ms;
		o.pace_retry_ms = o.retry_min_ms;
	}
	struct fleet_net net = {
		.put = net_put,
		.get = net_get,
		.record_foreach = net_records,
		.member_foreach = net_members,
		.synced = net_synced,
		.reach = net_reach,
		.ud = a,
	};
	r = fleet_new(&a->loop, a->store, &o, &net, &a->fleet);
	sodium_memzero(&nk, sizeof nk);
	free(q);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the cluster brain: %s", strerror(-r));
		return r;
	}
	if (a->cluster) {
		r = cluster_subscribe(a->cluster, on_member, on_record, a);
		if (r < 0) {
			snprintf(err, errlen, "cannot subscribe to the cluster: %s", strerror(-r));
			return r;
		}
	}
	r = fleet_start(a->fleet);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the cluster brain: %s", store_strerror(r));
		return r;
	}
	return 0;
}

static void fleet_closed(void *ud)
{
	struct agent *a = ud;
	a->fleet = NULL;
}

void fleet_agent_stop(struct agent *a)
{
	if (a->fleet)
		fleet_close(a->fleet, fleet_closed, a);
}
