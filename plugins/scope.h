/*
 * plugins/scope.h: transient systemd scopes for the exec driver (internal to plugins/).
 *
 * Why: a process forked by agentd lives in agentd.service's cgroup, so `systemctl restart`,
 * `stop`, a watchdog restart or an upgrade's try-restart of agentd kills it with the agent.
 * Moving it into a transient scope of its own (StartTransientUnit "shoal-exec-<service>.scope"
 * with PIDs=[pid]) puts it outside that cgroup: systemd accounts it separately and leaves it
 * alone when agentd's unit stops. A scope (not a transient service) because the agent keeps
 * forking the process itself: environment, directory, process group and exit status stay
 * exactly what the exec driver already gives a service.
 *
 * Every call here is SYNCHRONOUS and opens a D-Bus connection of its own (the system bus, or
 * @bus_address as a direct connection to systemd, as plugins/systemd.c does), so they are
 * meant for the libuv thread pool: the exec driver runs them from uv_queue_work, never on the
 * loop. No logging; errors are negative errno plus a sentence in @err (the D-Bus error name
 * and message when systemd refused).
 */
#ifndef SHOAL_PLUGINS_SCOPE_H
#define SHOAL_PLUGINS_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Room for "shoal-exec-" + a 64-byte service name + ".scope" + NUL. */
#define SCOPE_UNIT_MAX 96

/* "shoal-exec-@service.scope" into @buf (SCOPE_UNIT_MAX bytes). @service must be valid
 * (plugin__valid_service: its characters are all allowed in unit names). */
void scope__unit_name(const char *service, char *buf);

/*
 * Create the transient scope @unit holding @pid and wait (bounded by @timeout_ms in total)
 * until /proc/@pid/cgroup shows the process in it: StartTransientUnit only queues a job, and
 * the caller must not let the process fork before the move (its children would stay behind
 * in agentd's cgroup). A scope of that name that still exists (an earlier instance's, being
 * collected, or holding processes that left the earlier instance's process group) is stopped
 * first, and the start is retried once.
 * Properties: Description @desc, PIDs [@pid], CollectMode inactive-or-failed (an instance
 * that failed leaves nothing behind), TimeoutStopUSec @stop_timeout_ms; KillMode stays the
 * default control-group, so stopping the scope reaches every process in it.
 * Returns 0; -ETIMEDOUT (the move was not seen in time); a connection error; or the D-Bus
 * error's errno, with @err (size @errlen, always NUL-terminated) saying what failed.
 */
int scope__start(const char *bus_address, const char *unit, pid_t pid, const char *desc,
		 uint32_t stop_timeout_ms, uint32_t timeout_ms, char *err, size_t errlen);

/*
 * Stop the scope @unit (StopUnit "replace": systemd sends SIGTERM, then SIGKILL after the
 * scope's stop timeout, to whatever is left in it) without waiting for the job. A scope that
 * does not exist is success. Returns 0 or a negative errno with @err as above.
 */
int scope__stop(const char *bus_address, const char *unit, uint32_t timeout_ms, char *err,
		size_t errlen);

/* True when /proc/@pid/cgroup places @pid in a cgroup named @unit (any hierarchy's path
 * ends in "/@unit"). False when the process is gone or elsewhere. */
bool scope__pid_in(pid_t pid, const char *unit);

#endif
