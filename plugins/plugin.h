/*
 * plugins/plugin.h: runtime drivers behind one interface.
 *
 * A runtime plugin runs one instance per service on this host: the instance of the revision
 * the reconciler decided on. Three drivers implement this interface:
 *
 *   exec       the service's command as a supervised child process (plugins/exec.c)
 *   systemd    a unit file in the unit directory, driven over sd-bus (plugins/systemd.c)
 *   container  a container through the Docker Engine API over a unix socket (plugins/container.c)
 *
 * Contract (libuv's): every operation is asynchronous on the loop given to plugin_new() and
 * never blocks it. When an operation returns 0 its callback is called exactly once, later,
 * from the loop; when it returns an error the callback is never called. At most one
 * operation per service is in flight (the reconciler serialises them); a second one for the
 * same service returns -EBUSY. A plugin is freed only through plugin_close(), whose callback
 * runs after every pending operation callback has run (with -ECANCELED if not finished).
 *
 * Instances are identified by (service, rev). The plugin never interprets revisions beyond
 * naming (e.g. container "shoal-web-7", unit drop-in comment); ordering is the reconciler's.
 *
 * Errors: 0 or negative errno; plugin-specific details in the status' detail string.
 * This module never logs; it reports through callbacks and plugin_status.
 *
 * Changes to this contract (additive only; announced here for the other plugin authors):
 *  - [runtime plugins, exec/systemd] struct plugin_config gained, at its end, the exec
 *    supervision policy (restart_*, settle_ms) and op_timeout_ms; 0 in any of them means
 *    "the documented default", so zero-initialised configs keep working.
 *  - PLUGIN_LOG_LINE_MAX: output lines handed to on_log are cut at this length.
 *  - plugin_ops_by_name() knows "exec", "systemd" and "container" (the table is in plugin.c).
 *  - plugin_close(): pending operations get their callback with -ECANCELED before the close
 *    callback; @p is freed right after the close callback returns.
 *  - Errors of the systemd driver's activate/deactivate callbacks: a job that ends "failed"
 *    -> -EIO, "timeout" -> -ETIMEDOUT, "canceled" -> -ECANCELED, "dependency" -> -ENOLINK,
 *    any other non-"done" result -> -EPROTO; its D-Bus phase (calls + job wait) not over
 *    within op_timeout_ms -> -ETIMEDOUT. The job result and the unit's Result are in the
 *    status detail. A non-NULL bus_address is a direct connection to systemd (no bus daemon).
 *  - plugin_status_cb: @st is never NULL; when status < 0 it holds what is known (or
 *    "nothing": STOPPED, exit_status -1).
 *  - The driver's ops->close must call its callback with @p still valid; plugin.c frees @p
 *    after that and then calls the user's callback.
 *  - plugin_last_error(p, service): why the last operation on @service failed, in words (a
 *    D-Bus error name and message, the engine's message, "spawn failed: ..."), beside the
 *    errno the callback gets; backed by the optional ops->last_error (NULL: "").
 *  - [exec] struct plugin_config gained exec_scope (0 = auto): under systemd every exec
 *    service runs in a transient scope of its own and survives restarts of the agent, which
 *    adopts it again (see the exec notes below).
 *
 * Driver notes (the details live at the top of each driver's .c file):
 *  exec     activate = stop the old process group (SIGTERM, SIGKILL after stop_timeout_ms),
 *           then `/bin/sh -c COMMAND` in its own session/process group, cwd = the
 *           materialized dir, environment = the agent's plus SHOAL_SERVICE, SHOAL_REV,
 *           SHOAL_ARTIFACT (hex id), SHOAL_DIR. The callback's 0 means "spawned". Events:
 *           STARTING at spawn, RUNNING once it stayed up settle_ms, RESTARTING (exit_status,
 *           restarts) when it exits unexpectedly and a restart is scheduled with exponential
 *           back-off, FAILED after restart_burst restarts within restart_window_ms, STOPPED
 *           after deactivate. A pid file state_dir/run/<service>.pid lets the next agent
 *           run find an orphaned process group of a killed agent.
 *           Without systemd (exec_scope OFF, or auto and not under systemd): no adoption:
 *           activate/deactivate of that service first terminate the orphan;
 *           plugin_close() stops every child. Output lines go to on_log.
 *           Under systemd (exec_scope ON, or auto with bus_address set or the agent running
 *           as a systemd unit): each spawn is moved into the transient scope
 *           shoal-exec-<service>.scope (StartTransientUnit, before the command runs) so it
 *           lives outside the agent's cgroup; its stdout/stderr go to the journal
 *           (SYSLOG_IDENTIFIER=shoal-exec-<service>; on_log is not called: a pipe to the
 *           agent would break when the agent restarts); plugin_close() leaves the services
 *           running; the next run ADOPTS a still-running instance at the first status of its
 *           service (state RUNNING, rev from the pid file, detail "adopted pid ...") when its
 *           pid, start time, process group and cgroup (that scope) all match the pid file, and
 *           supervises it from then on. The activate callback's 0 then means "spawned and in
 *           its scope"; a scope that cannot be created fails the spawn (FAILED, the
 *           D-Bus error in the detail and in plugin_last_error()). deactivate stops the
 *           process group, then the scope (StopUnit: ends what left the group); a scope
 *           that cannot be stopped leaves deactivate's 0 (the group is gone) and says so in
 *           the STOPPED detail. The next start of the service stops a leftover scope first.
 *  systemd  the unit name is the manifest's systemd_unit; the unit file and its drop-ins
 *           (<unit>.d/ *.conf in the artifact) are written atomically into unit_dir with a
 *           first line "# managed-by: shoal ..."; an existing unit file without that
 *           marker is never touched (-EEXIST). Activate = write files, Reload,
 *           RestartUnit, wait for its JobRemoved, GetAll (a new unit name stops and removes
 *           the service's old unit first). Nothing is kept per revision: a rollback is an
 *           activate of the older artifact; forget(service, rev) removes the files only if
 *           their marker names @rev and @rev is not active. plugin_close() leaves units
 *           running.
 */
#ifndef SHOAL_PLUGIN_H
#define SHOAL_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "store/store.h"

struct plugin;

/* What the reconciler hands a plugin for one instance. Borrowed for the call only: plugins
 * copy what they keep. */
struct plugin_instance {
	const char *service;
	uint64_t rev;
	struct store_id artifact;
	const struct store_manifest *manifest;
	const char *dir;	/* the materialized artifact directory (absolute) */
};

enum plugin_state {
	PLUGIN_STOPPED = 0,	/* nothing runs for the service */
	PLUGIN_STARTING,	/* started, not yet known to be up */
	PLUGIN_RUNNING,		/* the runtime reports it up (process alive, unit active, ...) */
	PLUGIN_FAILED,		/* exited / failed and not being restarted */
	PLUGIN_RESTARTING,	/* exited and being restarted with back-off */
};
/* "stopped", "starting", "running", "failed", "restarting"; "unknown" for other values. */
const char *plugin_state_name(enum plugin_state s);

struct plugin_status {
	enum plugin_state state;
	uint64_t rev;		/* the revision this status is of (0 when none) */
	int64_t pid;		/* main pid if known, else 0 */
	uint32_t restarts;	/* restarts of this instance so far (NRestarts for systemd) */
	int exit_status;	/* last exit status / code, -1 if none */
	uint64_t since_ms;	/* loop time (uv_now) of the last state change */
	char detail[160];	/* runtime's own words: "SubState=running", "exited 3", ... */
};

typedef void (*plugin_done_cb)(struct plugin *p, const char *service, int status, void *ud);
typedef void (*plugin_status_cb)(struct plugin *p, const char *service, int status,
				 const struct plugin_status *st, void *ud);
/* Unsolicited change of an instance (process died, unit failed, ...). @st borrowed. */
typedef void (*plugin_event_cb)(struct plugin *p, const char *service,
				const struct plugin_status *st, void *ud);
typedef void (*plugin_close_cb)(struct plugin *p, void *ud);
/* A line of the instance's output (exec plugin: stdout/stderr), without the newline. */
typedef void (*plugin_log_cb)(struct plugin *p, const char *service, int fd, const char *line,
			      void *ud);

struct plugin_config {
	const char *state_dir;	  /* the agent's state directory (absolute) */
	const char *unit_dir;	  /* systemd: default /etc/systemd/system */
	const char *bus_address;  /* systemd: NULL = the system bus; else a direct connection to
				   * systemd itself, e.g. "unix:path=/run/systemd/private" */
	const char *docker_host;  /* container: unix socket path; default /run/podman/podman.sock */
	uint32_t stop_timeout_ms; /* how long a stop may take before SIGKILL; default 10000 */
	plugin_event_cb on_event;
	plugin_log_cb on_log;	  /* may be NULL */
	void *ud;

	/* exec supervision policy (0 = default). A child that exits while it should run is
	 * restarted after a back-off that starts at restart_min_ms (100) and doubles up to
	 * restart_max_ms (30000); it resets to restart_min_ms once a child stayed up
	 * restart_reset_ms (10000). restart_burst (5) restarts within restart_window_ms
	 * (60000) is a restart loop: the instance goes FAILED and is left stopped. */
	uint32_t restart_min_ms;
	uint32_t restart_max_ms;
	uint32_t restart_reset_ms;
	uint32_t restart_burst;
	uint32_t restart_window_ms;
	uint32_t settle_ms;	  /* exec: STARTING -> RUNNING once up this long; default 1000 */
	uint32_t op_timeout_ms;	  /* systemd: bound on the D-Bus part of each operation (calls and
				   * job wait together); default 90000 */
	/* exec: run each service in a transient systemd scope of its own (see the exec notes
	 * at the top): PLUGIN_EXEC_SCOPE_AUTO (0) = when bus_address is set or the agent runs
	 * as a unit of a booted systemd (sd_booted(), INVOCATION_ID set and systemd, PID 1, is
	 * its parent); OFF; ON. */
	int exec_scope;
};

enum { PLUGIN_EXEC_SCOPE_AUTO = 0, PLUGIN_EXEC_SCOPE_OFF = 1, PLUGIN_EXEC_SCOPE_ON = 2 };

/* Output lines longer than this are cut (the rest of the line up to its newline is dropped). */
#define PLUGIN_LOG_LINE_MAX 4096

struct plugin_ops {
	const char *name;
	int (*init)(struct plugin *p);
	/* Prepare an instance without disturbing the running one (load an image, write nothing
	 * live). */
	int (*prepare)(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
		       void *ud);
	/* Make @in the running instance of its service: stop the old one, start the new one. The
	 * callback's status is 0 once the runtime accepted the start (not once healthy). */
	int (*activate)(struct plugin *p, const struct plugin_instance *in, plugin_done_cb cb,
			void *ud);
	/* Stop whatever runs for @service. */
	int (*deactivate)(struct plugin *p, const char *service, plugin_done_cb cb, void *ud);
	/* Ask the runtime for the current status of @service. */
	int (*status)(struct plugin *p, const char *service, plugin_status_cb cb, void *ud);
	/* Remove what belongs to revisions no longer retained (unit files, images, ...). */
	int (*forget)(struct plugin *p, const char *service, uint64_t rev);
	void (*close)(struct plugin *p, plugin_close_cb cb, void *ud);
	/* Optional (NULL = never known): see plugin_last_error(). */
	const char *(*last_error)(struct plugin *p, const char *service);
};

struct plugin {
	const struct plugin_ops *ops;
	uv_loop_t *loop;
	struct plugin_config cfg;	/* strings borrowed: must outlive the plugin */
	void *priv;
};

extern const struct plugin_ops plugin_exec_ops;
extern const struct plugin_ops plugin_systemd_ops;
extern const struct plugin_ops plugin_container_ops;

/* The ops for a runtime name ("exec", "systemd", "container"), or NULL. */
const struct plugin_ops *plugin_ops_by_name(const char *name);

/* Allocate and init a plugin. Returns 0, -EINVAL (NULL loop/ops/cfg/ret, or cfg->state_dir
 * missing or not absolute), -ENOMEM, or the driver's init error. @ret untouched on failure. */
int plugin_new(uv_loop_t *loop, const struct plugin_ops *ops, const struct plugin_config *cfg,
	       struct plugin **ret);
/*
 * Close; @cb (may be NULL) runs from the loop once the driver has released everything; @p is
 * freed as soon as @cb returns (use it for identification only). Every operation still
 * pending gets its callback with -ECANCELED first. Drivers may need time (exec stops its children, bounded by
 * stop_timeout_ms plus a few seconds). Accepts NULL. Call at most once; no other call on @p
 * after it.
 */
void plugin_close(struct plugin *p, plugin_close_cb cb, void *ud);

/*
 * Why the last operation on @service failed, in the runtime's own words, for the operator:
 * e.g. "systemd scope: StartTransientUnit: org.freedesktop.DBus.Error.AccessDenied: ...",
 * "artifact directory /x: no such file or directory", the container engine's message. The
 * errno the callback got stays the machine-readable part; this is the reason that would
 * otherwise be lost behind it (-EIO, -EPROTO). Call it from the callback that reported
 * status < 0 (or later, until the next operation on @service starts, which clears it).
 * Never NULL: "" when the driver knows nothing beyond the errno (or the plugin is NULL, the
 * service unknown, or the driver does not say). exec and systemd clear it when an operation
 * starts; container keeps the engine's last message until an operation succeeds. The string
 * is the plugin's, valid until the next operation on @service starts or the plugin is
 * closed; copy it to keep it.
 */
const char *plugin_last_error(struct plugin *p, const char *service);

/* ---- Internal: shared between the drivers of this directory (not for other modules) ------ */

/* A service name the drivers accept: [a-zA-Z0-9._-]{1,64}, not "." or "..". */
bool plugin__valid_service(const char *service);
/* Milliseconds to wait for a driver setting: @v, or @def when @v is 0. */
static inline uint32_t plugin__ms(uint32_t v, uint32_t def)
{
	return v ? v : def;
}
/* Lowercase hex of @id into @out (STORE_ID_HEXLEN + 1 bytes); same text as store_id_hex(),
 * without making the drivers depend on the store library at link time. Returns @out. */
char *plugin__id_hex(const struct store_id *id, char *out);
/* Fill @st as "nothing known": state STOPPED, exit_status -1, other fields 0. */
void plugin__status_init(struct plugin_status *st);

static inline int plugin_prepare(struct plugin *p, const struct plugin_instance *in,
				 plugin_done_cb cb, void *ud)
{
	return p->ops->prepare(p, in, cb, ud);
}
static inline int plugin_activate(struct plugin *p, const struct plugin_instance *in,
				  plugin_done_cb cb, void *ud)
{
	return p->ops->activate(p, in, cb, ud);
}
static inline int plugin_deactivate(struct plugin *p, const char *service, plugin_done_cb cb,
				    void *ud)
{
	return p->ops->deactivate(p, service, cb, ud);
}
static inline int plugin_status(struct plugin *p, const char *service, plugin_status_cb cb,
				void *ud)
{
	return p->ops->status(p, service, cb, ud);
}

#endif
