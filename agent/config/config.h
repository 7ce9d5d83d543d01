/*
 * agent/config/config.h: agentd's configuration, from /etc/shoal/agentd.conf and the command line.
 *
 * Every key of the config file is also a long option with the same name (DESIGN.md
 * "Command-line contract"): `node-name = x` in the file is `--node-name x` on the command line.
 * Keys go at the top of the file or under an [agent] section. Precedence: built-in defaults,
 * then the file, then the drop-ins, then the flags. A repeatable key (join, label, quorum)
 * accumulates across the file and its drop-ins, and within the flags; any flag occurrence
 * replaces the files' list.
 *
 * Drop-ins: every `*.conf` of the config directory (--config-dir DIR, default the config file's
 * path with ".d" appended, e.g. /etc/shoal/agentd.conf.d), in byte order of their names, not
 * starting with a dot, regular files only; each may set a scalar key the main file or an earlier
 * drop-in set (the later one wins: that is what config management tools expect), but not twice
 * within itself. A missing default directory is fine, a missing --config-dir is an error.
 *
 * The file is optional at its default path and required when given with --config. Unknown
 * sections and keys, bad values and duplicate scalar keys in the file are errors with the line
 * number: a typo never silently falls back to a default.
 *
 * Pure: no logging, no side effects beyond reading the file. Not thread-safe (call from main or
 * the loop thread).
 *
 * A room of its own (agent/config/, shoal_config), below cluster/ and client/: cluster_new
 * takes this configuration, and agentctl reads it for the socket path, so it cannot live in
 * daemon/. It needs only base/ (log levels), ctl/ (sizes and durations) and agree/ (the
 * quorum syntax, agree_quorum_parse).
 */
#ifndef SHOAL_AGENT_CONFIG_H
#define SHOAL_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/base/log.h"

#define AGENT_DEFAULT_CONFIG	"/etc/shoal/agentd.conf"
#define AGENT_DEFAULT_STATE_DIR "/var/lib/shoal"
#define AGENT_DEFAULT_SOCKET	"/run/shoal/agentd.sock"
#define AGENT_DEFAULT_GROUP	"shoal"
#define AGENT_DEFAULT_CLUSTER	"default"
#define AGENT_DEFAULT_BIND	"0.0.0.0:7946"
#define AGENT_DEFAULT_DOCKER_HOST "/run/podman/podman.sock"
#define AGENT_DEFAULT_UNIT_DIR	"/etc/systemd/system"
#define AGENT_DEFAULT_OPERATORS_DIR "/etc/shoal/operators"

struct agent_config {
	char *config_path;		/* the file read (or the default that was absent) */
	bool config_loaded;		/* false: no file at all, defaults + flags only */
	char *config_dir;		/* the drop-in directory (absolute; may not exist) */
	char **config_files;		/* every file read, in order (main file, drop-ins) */
	size_t nconfig_files;

	/* Local node: used now. */
	char *node_name;		/* default: the hostname */
	char *state_dir;		/* absolute */
	char *socket_path;		/* absolute; shorter than sun_path */
	enum agent_log_level log_level;

	/* Cluster: validated and kept for gossip and metrics (not used by this version). */
	char *bind;			/* ADDR:PORT */
	char *advertise;		/* ADDR:PORT or NULL (= bind) */
	char **join;			/* ADDR:PORT each */
	size_t njoin;
	char *keyring;			/* path or NULL */
	char *cluster;
	char **labels;			/* KEY=VALUE each */
	size_t nlabels;
	char *metrics;			/* ADDR:PORT or NULL (off) */

	/* Cluster brain (agent/fleet/fleet.h). */
	char **quorums;			/* "SERVICE=SPEC" each (validated) */
	size_t nquorums;
	unsigned max_parallel_swaps_per_site; /* 0 = unlimited */

	/* Membership. */
	uint64_t reap_after_ms;		/* forget dead members after this; default 72 h */
	uint64_t reconnect_ms;		/* reach an unreachable roster member; default 30 s */

	/* Runtime plugins (struct plugin_config). */
	char *docker_host;		/* container: Docker API unix socket path (absolute) */
	char *unit_dir;			/* systemd: where unit files are written (absolute) */
	char *operators_dir;		/* trusted operator public keys (agent/base/sign.h) */
	bool require_enrolment;		/* bind node keys only with an operator's enrolment */
	char *systemd_bus;		/* systemd: NULL = the system bus; else a D-Bus address of
					 * systemd itself, e.g. unix:path=/run/systemd/private */

	/* Event hook (agent/daemon/hook.h): run for every event of `agentctl events`. */
	char *event_hook;		/* absolute path of an executable, or NULL (none) */
	uint64_t event_hook_timeout_ms;	/* default 10 s: killed (SIGKILL) after it */
	unsigned event_hook_max_running; /* default 4 */
	unsigned event_hook_queue;	/* default 256 events waiting; more are dropped */

	/* Store and imports. */
	uint64_t max_artifact_file_size; /* 0 = store default (256 MiB) */
	uint64_t max_artifact_size;	 /* 0 = store default (1 GiB) */
	uint32_t max_artifact_files;	 /* 0 = store default (10000) */
	unsigned retain_revisions;	 /* 1..1000, default 10 */
	uint64_t store_map_max;		 /* 0 = store default (64 GiB) */

	/* Control socket. */
	char *socket_group;		/* NULL: none; default "shoal" if that group exists */
	bool socket_group_explicit;	/* set by file or flag: a missing group is then an error */
	unsigned socket_mode;		/* default 0660 */
	uint32_t max_frame_size;	/* default 1 MiB */
	unsigned max_clients;		/* default 64 */
	uint64_t client_timeout_ms;	/* default 30 s */

	/* Traffic (issue 14: agent/daemon/catalog.h, lb_wiring.c). */
	char *http_api;			/* ADDR:PORT of the read API, or NULL (off) */
	char *haproxy_socket;		/* HAProxy stats socket, or NULL */
	char **haproxy_backends;	/* "SERVICE=BACKEND[:SLOTPREFIX]" each (validated) */
	size_t nhaproxy_backends;
	unsigned failover_permille;	/* failover-share * 1000; default 500 */
	char *haproxy_site;		/* the site the drivers prefer; NULL: the site= label */
};

enum agent_config_action {
	AGENT_CONFIG_RUN = 0,	/* configuration complete: run the daemon */
	AGENT_CONFIG_HELP = 1,	/* --help: print agent_config_usage() and exit 0 */
	AGENT_CONFIG_VERSION = 2, /* --version: print the version and exit 0 */
	AGENT_CONFIG_CHECK = 3,	/* --check-config: configuration complete (as RUN); check what
				 * lies outside it (agentd's job) and exit, do not run */
};

/*
 * Build a configuration from defaults, the config file and @argv (getopt_long; @argv is not
 * modified, a copy is permuted).
 * @return AGENT_CONFIG_RUN/HELP/VERSION (>= 0) with *ret filled (release it in every case);
 *         -EINVAL: bad flag or value, or unknown key/section in the file (usage error: exit 2);
 *         -ENOENT/-EACCES/...: the config file given with --config cannot be read;
 *         -ENOMEM.
 * On error @err holds one line naming the flag or "file:line" and the problem, and *ret is
 * untouched.
 */
int agent_config_load(int argc, char *const *argv, struct agent_config *ret, char *err,
		      size_t errlen);

/* Free everything in @cfg; accepts a zeroed or released config. */
void agent_config_release(struct agent_config *cfg);

/* The --help text. */
const char *agent_config_usage(void);

/* Validators, shared with tests: 0 or -EINVAL. */
int agent_config_check_addr(const char *s);	/* HOST:PORT, [V6]:PORT, port 1..65535 */
int agent_config_check_label(const char *s);	/* KEY=VALUE */
int agent_config_check_name(const char *s);	/* [A-Za-z0-9._-]{1,64} */
int agent_config_check_backend(const char *s);	/* SERVICE=BACKEND[:SLOTPREFIX] */
/* "0.5", "50%": thousandths in 0..1000 (rounded down); 0 or -EINVAL. */
int agent_config_parse_share(const char *s, unsigned *ret_permille);

#endif
