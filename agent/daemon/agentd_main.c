/*
 * agent/daemon/agentd_main.c: agentd's main(). Components start in order and stop in reverse
 * from the single cleanup label; a startup error is fatal with one clear line, an error at run time is
 * logged and the daemon keeps serving.
 *
 *   config -> log level -> loop -> state dir + lock -> store -> node id -> control socket
 *   -> signals -> watchdog -> READY=1 ... loop ... STOPPING=1 -> (reverse)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "agent/daemon/agent.h"
#include "agent/fleet/fleet.h"
#include "agent/fleet/records.h"
#include "agent/cluster/cluster.h"
#include "agent/cluster/fetch.h"
#include "agent/daemon/hook.h"
#include "agent/daemon/metrics.h"
#include "agent/config/config.h"
#include "agent/ctl/ctl_server.h"
#include "agent/base/log.h"
#include "store/store.h"

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path);
	int r = 0;
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == 0) {
			char c = *s;
			*s = 0;
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				r = -errno;
				break;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return r;
}

/* Was --check-config among the arguments? (when the parse itself failed) */
static bool check_requested(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--check-config") == 0)
			return true;
	return false;
}

static void handle_closed(uv_handle_t *h)
{
	struct agent *a = h->data;
	a->handles_open--;
}

static void ctl_closed(void *ud)
{
	struct agent *a = ud;
	a->ctl = NULL;
	log_info("control socket closed");
}

static void cluster_closed(void *ud)
{
	struct agent *a = ud;
	a->cluster = NULL;
}

static void hook_closed(void *ud)
{
	struct agent *a = ud;
	a->hook = NULL;
}

static void metrics_closed(void *ud)
{
	struct agent *a = ud;
	a->metrics = NULL;
}

/* After the drain of a clean leave (SIGTERM, agentctl leave): close the gossip layer. */
static void cluster_left(void *ud)
{
	struct agent *a = ud;
	cluster_close(a->cluster, cluster_closed, a);
}

static void agent_stop(struct agent *a, const char *why)
{
	if (a->stopping)
		return;
	a->stopping = true;
	log_notice("stopping (%s)", why);
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	if (ctl_server_busy(a->ctl))
		log_notice("waiting for %u control operation(s) to finish", ctl_server_busy(a->ctl));
	ctl_server_close(a->ctl, ctl_closed, a);
	/* Closing the signal handles restores the default action: a second SIGTERM while a long
	 * operation finishes kills the process, as an impatient operator expects. */
	uv_close((uv_handle_t *)&a->sig_term, handle_closed);
	uv_close((uv_handle_t *)&a->sig_int, handle_closed);
	uv_close((uv_handle_t *)&a->sig_hup, handle_closed);
	if (a->watchdog_usec) {
		uv_timer_stop(&a->watchdog);
		uv_close((uv_handle_t *)&a->watchdog, handle_closed);
	}
	metrics_close(a->metrics, metrics_closed, a);
	traffic_agent_stop(a);	/* before the fleet: it holds the fleet's hooks */
	fetch_agent_stop(a);	/* before the cluster: its streams are the transport's */
	fleet_agent_stop(a);	/* before the cluster: it publishes through it */
	hook_close(a->hook, hook_closed, a);
	/* Clean leave: gossip "left" for the drain time, then close (agent/cluster/cluster.h). After
	 * `agentctl leave` the leave is already done (or draining): close now. */
	if (a->cluster && (cluster_has_left(a->cluster) ||
			   cluster_leave(a->cluster, cluster_left, a) < 0))
		cluster_close(a->cluster, cluster_closed, a);
}

static void reload(struct agent *a)
{
	struct agent_config c;
	char err[512];
	sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
	int r = agent_config_load(a->argc, a->argv, &c, err, sizeof err);
	if (r < 0 || r != AGENT_CONFIG_RUN) {
		log_error("reload failed, keeping the running configuration: %s",
			  r < 0 ? err : "unexpected --help/--version");
		if (r >= 0)
			agent_config_release(&c);
		sd_notify(0, "READY=1\nSTATUS=serving (last reload failed)");
		return;
	}
	agent_log_set_level(c.log_level);
	a->cfg.log_level = c.log_level;
	if (a->cluster)
		(void)cluster_keyring_reload(a->cluster);
	/* the trusted operator keys are read again (a removed key stops working at once); the
	 * directory itself is the one agentd started with */
	if (a->fleet)
		(void)fleet_operators_reload(a->fleet);
	/* Only the log level can change while running; say so for the rest. */
#define CHANGED(f) ((a->cfg.f == NULL) != (c.f == NULL) || (c.f && strcmp(a->cfg.f, c.f) != 0))
	if (CHANGED(node_name) || CHANGED(state_dir) || CHANGED(socket_path) ||
	    CHANGED(socket_group) || c.socket_mode != a->cfg.socket_mode ||
	    c.max_clients != a->cfg.max_clients || c.max_frame_size != a->cfg.max_frame_size ||
	    c.client_timeout_ms != a->cfg.client_timeout_ms ||
	    c.max_artifact_file_size != a->cfg.max_artifact_file_size ||
	    c.max_artifact_size != a->cfg.max_artifact_size ||
	    c.max_artifact_files != a->cfg.max_artifact_files ||
	    c.retain_revisions != a->cfg.retain_revisions || CHANGED(event_hook) ||
	    c.event_hook_timeout_ms != a->cfg.event_hook_timeout_ms ||
	    c.event_hook_max_running != a->cfg.event_hook_max_running ||
	    c.event_hook_queue != a->cfg.event_hook_queue)
		log_warning("reload: settings other than log-level changed; they take effect after "
			    "a restart");
#undef CHANGED
	log_notice("configuration reloaded from %s%s (log level %s)",
		   c.config_loaded ? c.config_path : "defaults and flags",
		   c.nconfig_files > 1 ? " and its drop-ins" : "",
		   agent_log_level_name(c.log_level));
	agent_config_release(&c);
	sd_notify(0, "READY=1\nSTATUS=serving");
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agent *a = h->data;
	if (signum == SIGHUP)
		reload(a);
	else
		agent_stop(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_watchdog(uv_timer_t *t)
{
	sd_notify(0, "WATCHDOG=1");
}

static void close_walk_cb(uv_handle_t *h, void *ud)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	struct agent a;
	char err[512];
	int exit_code = 1;
	bool loop_inited = false;
	int r;

	memset(&a, 0, sizeof a);
	a.lock_fd = -1;
	a.stop = agent_stop;
	a.argc = argc;
	a.argv = argv;
	agent_log_init();

	/* 1. Configuration. */
	r = agent_config_load(argc, argv, &a.cfg, err, sizeof err);
	if (r < 0) {
		fprintf(stderr, "agentd: %s\n", err);
		if (r == -EINVAL)
			fprintf(stderr, "Try 'agentd --help'.\n");
		/* --check-config: any reason the configuration cannot start is a configuration
		 * error (systemd's ExecReload and RestartPreventExitStatus= rely on 2) */
		return r == -EINVAL || check_requested(argc, argv) ? 2 : 1;
	}
	if (r == AGENT_CONFIG_CHECK) {
		r = agent_check_config(&a.cfg, err, sizeof err);
		if (r < 0) {
			fprintf(stderr, "agentd: %s\n", err);
			exit_code = 2;
		} else {
			printf("configuration OK (");
			if (!a.cfg.nconfig_files)
				printf("no config file, defaults and flags");
			for (size_t i = 0; i < a.cfg.nconfig_files; i++)
				printf("%s%s", i ? ", " : "", a.cfg.config_files[i]);
			printf(")\n");
			exit_code = 0;
		}
		goto cleanup;
	}
	if (r == AGENT_CONFIG_HELP) {
		fputs(agent_config_usage(), stdout);
		exit_code = 0;
		goto cleanup;
	}
	if (r == AGENT_CONFIG_VERSION) {
		printf("agentd (shoal) %s\n", SHOAL_VERSION);
		exit_code = 0;
		goto cleanup;
	}
	agent_log_set_level(a.cfg.log_level);
	/* A client vanishing mid-response must be an error return, not a signal. */
	signal(SIGPIPE, SIG_IGN);

	/* 2. Loop. */
	r = uv_loop_init(&a.loop);
	if (r < 0) {
		log_error("cannot initialise the event loop: %s", uv_strerror(r));
		goto cleanup;
	}
	loop_inited = true;
	a.start_ns = uv_hrtime();
	a.start_wall_ms = agent_now_ms();

	/* 3. State directory, locked so that two agents never share one. */
	r = mkdir_p(a.cfg.state_dir, 0750);
	if (r < 0) {
		log_error("cannot create state directory %s: %s", a.cfg.state_dir, strerror(-r));
		goto cleanup;
	}
	{
		char lock[4096];
		snprintf(lock, sizeof lock, "%s/agentd.lock", a.cfg.state_dir);
		a.lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (a.lock_fd < 0) {
			log_error("cannot open %s: %s", lock, strerror(errno));
			goto cleanup;
		}
		/* A predecessor killed with -9 can hold the lock a moment longer through a child
		 * it forked and that has not exec'd yet (the descriptor is close-on-exec, not
		 * close-on-fork): wait up to 3 s before calling it another agentd. */
		int tries = 0;
		while (flock(a.lock_fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK || ++tries > 60) {
				log_error("state directory %s is in use by another agentd (%s is "
					  "locked)", a.cfg.state_dir, lock);
				goto cleanup;
			}
			usleep(50 * 1000);
		}
		if (tries)
			log_notice("state directory %s: waited %d ms for the lock of a previous "
				   "agentd", a.cfg.state_dir, tries * 50);
	}

	/* 4. Store. */
	{
		char path[4096];
		snprintf(path, sizeof path, "%s/store", a.cfg.state_dir);
		struct store_opts so = {
			.path = path,
			.map_max = a.cfg.store_map_max,
			.retain_revs = a.cfg.retain_revisions,
		};
		r = store_open(&so, &a.store);
		if (r < 0) {
			log_error("cannot open the store in %s: %s", path, store_strerror(r));
			goto cleanup;
		}
		r = store_node_id(a.store, a.node_id);
		if (r < 0) {
			log_error("cannot read or create the node id: %s", store_strerror(r));
			goto cleanup;
		}
		for (int i = 0; i < STORE_NODE_ID_LEN; i++)
			snprintf(a.node_id_hex + 2 * i, 3, "%02x", a.node_id[i]);
	}

	/* 4b. Gossip: keyring, transport, persisted members and records, join. */
	{
		const struct cluster_tuning tuning = {.record_urgent = fleet_key_urgent};
		r = cluster_new(&a.loop, &a.cfg, a.store, a.node_id, &tuning, &a.cluster, err,
				sizeof err);
		/* The built-in default port taken (another agentd, serf, consul...): serve locally
		 * rather than not at all; an explicitly chosen address must work. */
		if (r == -EADDRINUSE && a.cfg.bind && strcmp(a.cfg.bind, AGENT_DEFAULT_BIND) == 0) {
			log_error("%s; gossip is OFF, this agent serves locally only (set --bind to a "
				  "free address)", err);
			a.cluster = NULL;
		} else if (r < 0) {
			log_error("cannot start the cluster layer: %s", err);
			goto cleanup;
		}
	}

	/* 4b'. Peer-to-peer artifacts over the gossip port (agent/cluster/fetch.h). */
	r = fetch_agent_start(&a);
	if (r < 0)
		goto cleanup;

	/* 4b''. Event hook (agent/daemon/hook.h), before the fleet: its first event is "start". */
	if (a.cfg.event_hook) {
		struct hook_opts ho = {
			.path = a.cfg.event_hook,
			.timeout_ms = a.cfg.event_hook_timeout_ms,
			.max_running = a.cfg.event_hook_max_running,
			.max_queue = a.cfg.event_hook_queue,
		};
		r = hook_new(&a.loop, &ho, &a.hook);
		if (r < 0) {
			log_error("cannot set up the event hook: %s", strerror(-r));
			goto cleanup;
		}
		log_info("event hook %s (timeout %llu ms, %u at once, %u waiting at most)",
			 a.cfg.event_hook, (unsigned long long)a.cfg.event_hook_timeout_ms,
			 a.cfg.event_hook_max_running, a.cfg.event_hook_queue);
	}

	/* 4c. Cluster brain: replicated revisions, votes, health; reconciler (agent/fleet/fleet.h). */
	r = fleet_agent_start(&a, err, sizeof err);
	if (r < 0) {
		log_error("%s", err);
		goto cleanup;
	}

	/* 4d. Traffic: the read API and the HAProxy drivers (agent/daemon/lb_wiring.c). */
	r = traffic_agent_start(&a, err, sizeof err);
	if (r < 0) {
		log_error("%s", err);
		goto cleanup;
	}

	/* 5. Control socket. */
	{
		size_t nops;
		const struct ctl_op *ops = agent_ctl_ops(&nops);
		struct ctl_server_opts co = {
			.path = a.cfg.socket_path,
			.mode = a.cfg.socket_mode,
			.group = a.cfg.socket_group,
			.group_required = a.cfg.socket_group_explicit,
			.max_frame = a.cfg.max_frame_size,
			.max_clients = a.cfg.max_clients,
			.timeout_ms = a.cfg.client_timeout_ms,
			.ops = ops,
			.nops = nops,
			.ud = &a,
		};
		r = ctl_server_new(&a.loop, &co, &a.ctl, err, sizeof err);
		if (r < 0) {
			log_error("cannot open the control socket: %s", err);
			goto cleanup;
		}
	}

	/* 5b. Metrics endpoint (only with --metrics). */
	if (a.cfg.metrics) {
		r = metrics_new(&a.loop, &a, a.cfg.metrics, &a.metrics, err, sizeof err);
		if (r < 0) {
			log_error("cannot open the metrics endpoint: %s", err);
			goto cleanup;
		}
	}

	/* 6. Signals. */
	uv_signal_init(&a.loop, &a.sig_term);
	uv_signal_init(&a.loop, &a.sig_int);
	uv_signal_init(&a.loop, &a.sig_hup);
	a.sig_term.data = a.sig_int.data = a.sig_hup.data = &a;
	a.handles_open += 3;
	if (uv_signal_start(&a.sig_term, on_signal, SIGTERM) < 0 ||
	    uv_signal_start(&a.sig_int, on_signal, SIGINT) < 0 ||
	    uv_signal_start(&a.sig_hup, on_signal, SIGHUP) < 0) {
		log_error("cannot install signal handlers");
		goto cleanup;
	}

	/* 7. Watchdog: ping at half the interval systemd gave us. */
	{
		uint64_t usec = 0;
		if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
			a.watchdog_usec = usec;
			uv_timer_init(&a.loop, &a.watchdog);
			a.watchdog.data = &a;
			a.handles_open++;
			uint64_t ms = usec / 2000 ? usec / 2000 : 1;
			uv_timer_start(&a.watchdog, on_watchdog, ms, ms);
			log_info("systemd watchdog every %llu ms", (unsigned long long)ms);
		}
	}

	log_notice("agentd %s serving on %s (node %s, id %s, state %s)", SHOAL_VERSION,
		   a.cfg.socket_path, a.cfg.node_name, a.node_id_hex, a.cfg.state_dir);
	if (!a.cfg.config_loaded)
		log_info("no config file at %s; using defaults and flags", a.cfg.config_path);
	for (size_t i = 0; i < a.cfg.nconfig_files; i++)
		log_info("config read from %s", a.cfg.config_files[i]);
	sd_notifyf(0, "READY=1\nSTATUS=serving on %s\nMAINPID=%lu", a.cfg.socket_path,
		   (unsigned long)getpid());

	r = uv_run(&a.loop, UV_RUN_DEFAULT);
	exit_code = 0;
	log_notice("stopped");

cleanup:
	/* Reverse order. Handles first: they may reference the store through the server. */
	if (loop_inited) {
		if (a.ctl)
			ctl_server_close(a.ctl, ctl_closed, &a);
		/* Their handles must close through their own callbacks, before the walk below. */
		metrics_close(a.metrics, metrics_closed, &a);
		traffic_agent_stop(&a);
		fetch_agent_stop(&a);
		fleet_agent_stop(&a);
		while (a.fleet && uv_run(&a.loop, UV_RUN_ONCE) != 0)
			;
		hook_close(a.hook, hook_closed, &a);
		while (a.hook && uv_run(&a.loop, UV_RUN_ONCE) != 0)
			;
		cluster_close(a.cluster, cluster_closed, &a);
		while ((a.cluster || a.metrics || a.http) && uv_run(&a.loop, UV_RUN_ONCE) != 0)
			;
		uv_walk(&a.loop, close_walk_cb, NULL);
		while (uv_run(&a.loop, UV_RUN_DEFAULT) != 0)
			;
		if (uv_loop_close(&a.loop) != 0)
			log_warning("event loop closed with handles still open");
	}
	store_close(a.store);
	if (a.lock_fd >= 0)
		close(a.lock_fd);
	agent_config_release(&a.cfg);
	return exit_code;
}
