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
	const char *bus_address;  /* systemd: NULL = system bus; e.g. "unix:path=/run/systemd/private" */
	const char *docker_host;  /* container: unix socket path; default /run/podman/podman.sock */
	uint32_t stop_timeout_ms; /* how long a stop may take before SIGKILL; default 10000 */
	plugin_event_cb on_event;
	plugin_log_cb on_log;	  /* may be NULL */
	void *ud;
};

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

/* Allocate and init a plugin. Returns 0, -ENOMEM, or the driver's init error. */
int plugin_new(uv_loop_t *loop, const struct plugin_ops *ops, const struct plugin_config *cfg,
	       struct plugin **ret);
/* Close; @cb (may be NULL) runs from the loop once the plugin is freed. Accepts NULL. */
void plugin_close(struct plugin *p, plugin_close_cb cb, void *ud);

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
