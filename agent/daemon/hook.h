/*
 * agent/daemon/hook.h: the event hook of agentd (`event-hook = /path/to/executable`).
 *
 * For every event of `agentctl events` (fleet/fleet.h: struct fleet_event) the agent runs the
 * configured executable once, with no arguments, and writes the event to its stdin as one JSON
 * object on one line, then closes stdin:
 *
 *   {"seq":12,"time":"2026-12-06T11:30:00.123Z","time_ms":1796556600123,"kind":"decision",
 *    "service":"web","rev":3,"node":"n1","text":"rollback to 5d41402abc4b decided (...)"}
 *
 * (service "" and rev 0 when the event has none). Its stdout and stderr go to agentd's stderr
 * (the journal under systemd). It runs in a session of its own (setsid), with agentd's
 * environment, user and working directory.
 *
 * Bounds, so that a slow or broken hook never holds the agent up:
 *   - time: a hook still running after `event-hook-timeout` (default 10 s) is killed with
 *     SIGKILL, with its whole process group;
 *   - concurrency: at most `event-hook-max-running` (default 4) run at once; further events
 *     wait in a FIFO queue of at most `event-hook-queue` (default 256) events; an event that
 *     finds the queue full is dropped, counted (hook_stats) and logged (at most once per
 *     second, with the count);
 *   - the loop never blocks: uv_spawn and a pipe; a hook that does not read its stdin is not
 *     waited for (the write is abandoned when it exits).
 * Failures are logged in words with the event's seq and kind: cannot run (spawn error, e.g.
 * "permission denied"), exited with status N, killed by signal S, killed after the timeout.
 * A successful run is logged at debug.
 *
 * Threads: the loop thread only. Errors: negative errno.
 */
#ifndef SHOAL_AGENT_HOOK_H
#define SHOAL_AGENT_HOOK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct fleet_event;
struct hook;

struct hook_opts {
	const char *path;		/* absolute path of the executable (copied) */
	uint64_t timeout_ms;		/* > 0 */
	unsigned max_running;		/* >= 1 */
	unsigned max_queue;		/* events waiting at most; 0: none wait */
};

struct hook_stats {
	uint64_t ok;			/* exited with status 0 */
	uint64_t failed;		/* exited non-zero or killed by a signal (not ours) */
	uint64_t timeout;		/* killed after the timeout */
	uint64_t spawn_errors;		/* could not be started */
	uint64_t dropped;		/* events that found the queue full */
	unsigned running, queued;
};

/* @return 0 and *ret; -EINVAL; -ENOMEM. */
int hook_new(uv_loop_t *loop, const struct hook_opts *opts, struct hook **ret);

/* Run the hook for @e now, or queue it, or drop it (see above). Never blocks. NULL @h or a
 * closing hook: nothing. */
void hook_submit(struct hook *h, const struct fleet_event *e);

void hook_stats(const struct hook *h, struct hook_stats *ret);

/*
 * Drop the queue, kill the running hooks (SIGKILL to their process groups: the agent is
 * stopping and waits for nobody), and call @cb(@ud) from the loop once every handle is closed;
 * @h is freed right before. NULL: nothing (cb not called).
 */
void hook_close(struct hook *h, void (*cb)(void *ud), void *ud);

/* The event as the hook receives it (without the newline): malloc'd, NULL on out of memory.
 * Exposed for tests. */
char *hook_event_json(const struct fleet_event *e);

#endif
