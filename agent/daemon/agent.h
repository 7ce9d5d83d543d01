/*
 * agent/daemon/agent.h: the agent daemon's state, shared by its components.
 *
 * daemon/ is the top room of agent/ (README "Layout"): it may include every room below it and
 * nothing includes it (tests/unit/test_agent_layers.sh). What lives here: main, the struct
 * agent, the table of control operations (ops.c: each row names its arguments, decoded by
 * ctl/ctl_args.h, and one call into the module that owns the op), the metrics endpoint, and
 * the wiring that hands the fleet (fleet/), the gossip layer (cluster/) and the peer-to-peer
 * fetch (cluster/fetch.h) to each other through their options: no module below knows the
 * struct agent.
 *
 * agentd_main.c initialises the components in order (config, log, loop, state directory lock,
 * store, control socket, signals, watchdog) and tears them down in reverse from one cleanup
 * label, knot-resolver style; later parts (gossip, reconciler, plugins, metrics) plug in as
 * more members and more steps in that sequence.
 *
 * Threads: everything here belongs to the loop thread, except what the control operations read
 * from threadpool workers: the store (thread-safe, see store/store.h), and the fields marked
 * "immutable" which are set before the control socket opens and never change afterwards.
 */
#ifndef SHOAL_AGENT_H
#define SHOAL_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent/base/clock.h"
#include "agent/config/config.h"
#include "agent/ctl/ctl_args.h"
#include "agent/ctl/ctl_server.h"
#include "store/store.h"

struct cluster;
struct fleet;
struct metrics;
struct fetch;
struct hook;
struct catalog_http;
struct lb_set;

struct agent {
	uv_loop_t loop;
	struct agent_config cfg;	/* immutable once serving (SIGHUP applies the log level
					 * only, which log.c keeps) */
	int argc;			/* for SIGHUP: the flags still override the file */
	char **argv;

	int lock_fd;			/* flock on STATE_DIR/agentd.lock, -1 if none */
	struct store *store;		/* immutable once serving */
	uint8_t node_id[STORE_NODE_ID_LEN]; /* immutable */
	char node_id_hex[2 * STORE_NODE_ID_LEN + 1]; /* immutable */
	uint64_t start_ns;		/* uv_hrtime() at start; immutable */
	uint64_t start_wall_ms;		/* immutable */

	struct ctl_server *ctl;
	struct cluster *cluster;	/* gossip (agent/cluster/cluster.h); NULL once closed */
	struct metrics *metrics;	/* --metrics endpoint (agent/daemon/metrics.h) or NULL */
	struct fleet *fleet;		/* replicated fleet state (fleet/fleet.h) or NULL; loop */
	struct fetch *fetch;		/* peer-to-peer artifacts (agent/cluster/fetch.h) or NULL; loop */
	struct hook *hook;		/* event-hook runner (agent/daemon/hook.h) or NULL; loop */
	void (*stop)(struct agent *a, const char *why); /* set by main: begin a clean exit */
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t watchdog;
	uint64_t watchdog_usec;		/* 0: no watchdog */
	bool stopping;
	unsigned handles_open;		/* signal/timer handles not yet closed */
	struct catalog_http *http;	/* --http-api read API (catalog.h) or NULL; loop */
	struct lb_set *lbs;		/* HAProxy drivers (lb_wiring.c) or NULL; loop */
};

/* The control operations of this version, for struct ctl_server_opts (ud = struct agent *). */
const struct ctl_op *agent_ctl_ops(size_t *ret_count);

/*
 * The cluster's control operations (cluster_ops.c over cluster/cluster.h; rows of the table in
 * ops.c, all inline on the loop: ud = struct agent *). Arguments and results are listed at the
 * top of cluster_ops.c. They read their own arguments: they answer shutting_down before any
 * bad_request when gossip is off, and keyring.install wipes the key it was given.
 */
#define GOSSIP_TRANSPORT_SEEDS_MAX_OPS 16
void cluster_op_members(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
			struct ctl_enc *out);
void cluster_op_join(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out);
void cluster_op_leave(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out);
void cluster_op_keyring_list(void *ud, const struct ctl_request *req,
			     const struct ctl_peer *peer, struct ctl_enc *out);
void cluster_op_keyring_install(void *ud, const struct ctl_request *req,
				const struct ctl_peer *peer, struct ctl_enc *out);
void cluster_op_keyring_use(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
			    struct ctl_enc *out);
void cluster_op_keyring_remove(void *ud, const struct ctl_request *req,
			       const struct ctl_peer *peer, struct ctl_enc *out);
/* Encode one value (a map, or nil when @c is NULL) with the summary: for `status`, from any
 * thread. */
void cluster_status_encode(struct cluster *c, struct ctl_enc *out);

/*
 * `agentd --check-config` after a complete parse (check_config.c): what would make startup fail
 * beyond the values' syntax (state directory and socket directory writable or creatable, the
 * keyring readable and valid, an explicit socket group existing, a numeric metrics address, the
 * event hook an executable file). Creates and changes nothing.
 * @return 0; negative errno with one line in @err.
 */
int agent_check_config(const struct agent_config *cfg, char *err, size_t errlen);

/* ---- Wiring of the rooms into the agent (fleet_wiring.c, fetch_wiring.c) ------------------ */

/*
 * Create and start a->fleet over a->cluster with the agent's configuration: site = the
 * `site=` label, quorum rules = `quorum` keys, pacing = `max-parallel-swaps-per-site`, missing
 * artifacts asked of a->fetch (agent_need_artifact) when the fetch service runs. The
 * environment variable SHOAL_RETRY_MS (tests) shortens the reconciler's back-off.
 * @return 0; negative errno with one line in @err.
 */
int fleet_agent_start(struct agent *a, char *err, size_t errlen);
/* Begin closing a->fleet (set to NULL once closed; the loop must keep running). */
void fleet_agent_stop(struct agent *a);

/*
 * Start serving and fetching artifacts on the agent's gossip transport (a->cluster; nothing
 * when gossip is off) and tell the brain of every artifact that lands
 * (fleet_artifact_arrived). Sets a->fetch. Logs its failure. @return 0 or as fetch_new.
 */
int fetch_agent_start(struct agent *a);
/* fetch_free(a->fetch); before the cluster closes. NULL-safe, idempotent. */
void fetch_agent_stop(struct agent *a);
/* The brain's need_artifact (fleet_need_artifact_fn, @ud = the agent): asks a->fetch while
 * it runs, nothing after fetch_agent_stop. */
void agent_need_artifact(void *ud, const char *service, uint64_t rev,
			 const struct store_id *artifact,
			 const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders);

/*
 * Traffic (lb_wiring.c, issue 14): the read API (--http-api, catalog.h) and one HAProxy driver
 * (traffic/traffic.h) per `haproxy-backend`, fed by the fleet's endpoint catalog; the drain of
 * a swap asks the driver of its service for sessions. After fleet_agent_start. @return 0;
 * negative errno with one line in @err (bad combination, bind error).
 */
int traffic_agent_start(struct agent *a, char *err, size_t errlen);
/* Close the read API (a->http NULL once closed) and the drivers. NULL-safe, idempotent. */
void traffic_agent_stop(struct agent *a);

#endif
