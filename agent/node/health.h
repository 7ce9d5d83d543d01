/*
 * agent/node/health.h: health of the local instance of each service.
 *
 * Two layers, as everywhere in Shoal:
 *
 *  - health_sm: a PURE per-instance policy state machine. It never reads a clock, touches a
 *    socket or spawns anything: the caller passes the time (milliseconds, monotonic) and the
 *    inputs (results of checks, states reported by the runtime plugin). The simulator and the
 *    unit tests drive it directly.
 *  - struct health: the checker on a libuv loop. Per service it runs the release's check
 *    ([health] http | tcp | exec) every interval_ms with a timeout_ms bound, feeds the results
 *    and the runtime's reports into a health_sm, and calls on_change when the state changes.
 *
 * ---- The policy (struct store_health_policy) and the states -----------------------------------
 *
 *   starting   the instance was started (health_sm_init / health_start) and has not been
 *              healthy yet.
 *   healthy    the last check passed (with no check configured: the runtime reports RUNNING).
 *   unhealthy  the start deadline passed without the instance becoming healthy, or, once it
 *              had been healthy, `failures` checks in a row failed.
 *   failed     the runtime itself gave up on the instance: the plugin reported PLUGIN_FAILED
 *              (exec: restart loop; systemd: unit failed; container: exited for good).
 *
 * Rules, applied in this order to every input at time `now` (times before the last input's
 * are taken as equal to it: the machine's clock never runs backwards):
 *
 *  R1 Deadline. First, whatever the input: if the state is `starting`, deadline_ms is not 0
 *     and now >= start + deadline_ms, the state becomes `unhealthy` (miss reason DEADLINE).
 *     So a first successful check that arrives after the deadline still finds the deadline
 *     missed (and then, by R2, makes the instance healthy).
 *  R2 Check passed: the failure streak resets to 0; `starting` and `unhealthy` become
 *     `healthy`. `failed` stays `failed` (the runtime must bring the instance back first).
 *  R3 Check failed: the streak grows by one. When it reaches `failures` (0 is taken as 1):
 *     `healthy` becomes `unhealthy` (miss reason FAILURES). In `starting`, failed checks are
 *     counted but do not end the start: a slow service has until the deadline to come up (as
 *     Nomad's healthy_deadline, Kubernetes' startup probes). Exception: with deadline_ms 0
 *     (no deadline) the streak also ends a start (`starting` -> `unhealthy`, FAILURES), or a
 *     never-healthy instance would stay `starting` forever.
 *  R4 Runtime PLUGIN_FAILED: any state becomes `failed` (miss reason RUNTIME).
 *  R5 Runtime PLUGIN_RUNNING or PLUGIN_STARTING while `failed`: the runtime brought it back
 *     (an operator restarted the unit, ...): the state becomes `starting` (the streak resets),
 *     which R1 at once turns into `unhealthy` if the start deadline has passed.
 *  R6 Without a configured check (no http, tcp or exec), the runtime is the check: RUNNING
 *     counts as a passed check (R2), RESTARTING and STOPPED as a failed one (R3), STARTING as
 *     nothing. With a check, RUNNING/RESTARTING/STARTING/STOPPED are recorded only (the checks
 *     tell whether the service answers).
 *
 * "Missed policy" (what makes this node vote against the revision, DESIGN.md "Agreement"):
 * the flag `missed` latches, with the first reason and time, the first time R1, R3 or R4 fires;
 * it never clears for the instance, even when a later check passes. Every latch coincides with
 * a change of state (to `unhealthy` or `failed`). What a transient unhealthy means is the
 * agreement layer's decision; this module only states the facts.
 *
 * `since_ms` is the time of the last change of state (the start for `starting`).
 *
 * ---- The checks ---------------------------------------------------------------------------
 *
 *  http  "http://HOST[:PORT][/PATH][?QUERY]" (default port 80, default path "/"; a #fragment
 *        is not sent; no user info, no https). HOST is an IPv4 address, [IPv6] or a name
 *        resolved with getaddrinfo (first address). One GET per check over a new connection
 *        (HTTP/1.1, Connection: close); the response is parsed by plugins/http.h's strict
 *        parser with a body cap of HEALTH_HTTP_MAX_BODY. Status 200-399 passes; anything else,
 *        a malformed response, a refused connection or the timeout fails.
 *  tcp   "HOST:PORT" or "[IPv6]:PORT": the connection is established within the timeout.
 *  exec  `/bin/sh -c COMMAND` in the artifact directory, in its own session (process group),
 *        stdin /dev/null, environment = the agent's plus SHOAL_SERVICE, SHOAL_REV,
 *        SHOAL_ARTIFACT (hex id; "" if unknown) and SHOAL_DIR. Exit status 0 passes. At the
 *        timeout the whole process group gets SIGKILL; when the shell exits, whatever it left
 *        running in its group is killed too (a check never leaves processes behind).
 *
 * Scheduling: the first check starts interval_ms after health_start, each next one interval_ms
 * after the previous one started, or as soon as the previous one ended if that is later:
 * checks of one instance never overlap. A check ends when its result is known and all its
 * handles are closed (for exec: the process was reaped).
 *
 * Details (bounded to HEALTH_DETAIL_MAX - 1 bytes, non-printable bytes shown as '?'):
 *   http: "HTTP 200[: <first line of the body>]", "connect 127.0.0.1:8080: connection
 *         refused", "resolve HOST: ...", "timed out after 1000 ms", "bad response: <parser
 *         error>", "bad response: body over 65536 bytes", "connection closed before a
 *         complete response", "send to ...: ...", "recv from ...: ..."
 *   tcp:  "connected to 127.0.0.1:8080", "connect [::1]:8080: connection refused", ...
 *   exec: "exit 0[: <first line>]", "exit 1[: <first line>]", "killed by signal 9[: ...]",
 *         "timed out after 2000 ms (killed)[: ...]", "spawn /bin/sh: <error>" (e.g. the
 *         directory is missing). <first line> is the first non-empty line of
 *         stderr when the check failed (of stdout if stderr had none), of stdout when it
 *         passed (of stderr if stdout had none). Output beyond the first line is drained and
 *         dropped.
 *
 * Loop and threads: a struct health and its callbacks run on the loop given to health_new;
 * not thread-safe. The health_sm functions are plain functions of their arguments.
 * Process-wide effect: health_new sets SIGPIPE to SIG_IGN if it is still SIG_DFL (as
 * plugins/http.h does), so a server closing early cannot kill the agent.
 * This module never logs: it reports through on_change and health_get.
 *
 * Errors: 0 or negative errno.
 */
#ifndef SHOAL_AGENT_HEALTH_H
#define SHOAL_AGENT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "plugins/plugin.h"
#include "store/store.h"

#define HEALTH_DETAIL_MAX    160
#define HEALTH_HTTP_MAX_BODY (64 * 1024)

enum health_state {
	HEALTH_STARTING = 0,
	HEALTH_HEALTHY,
	HEALTH_UNHEALTHY,
	HEALTH_FAILED,
};
/* "starting", "healthy", "unhealthy", "failed"; "unknown" for other values. Static string. */
const char *health_state_name(enum health_state s);

/* Why the instance missed its policy (the first reason only). */
enum health_miss {
	HEALTH_MISS_NONE = 0,
	HEALTH_MISS_DEADLINE,	/* R1: not healthy within deadline_ms */
	HEALTH_MISS_FAILURES,	/* R3: `failures` failed checks in a row */
	HEALTH_MISS_RUNTIME,	/* R4: the runtime reported FAILED */
};
/* "none", "deadline", "failures", "runtime"; "unknown" for other values. Static string. */
const char *health_miss_name(enum health_miss m);

/* Everything known about one instance. Plain data: copy it freely. */
struct health_status {
	enum health_state state;
	uint64_t since_ms;		/* time of the last change of state */
	uint64_t started_ms;		/* time of health_sm_init (the instance's start) */
	bool missed;			/* latched: see "Missed policy" above */
	enum health_miss miss_reason;	/* first reason; NONE while !missed */
	uint64_t missed_ms;		/* when it latched; 0 while !missed */
	uint32_t streak;		/* consecutive failed checks (reset by a passed one) */
	uint64_t checks;		/* checks (or R6 runtime inputs) seen */
	uint64_t checks_failed;
	enum plugin_state runtime;	/* last state the runtime reported (STARTING at start) */
	uint32_t restarts;		/* last restart count the runtime reported */
	char detail[HEALTH_DETAIL_MAX];	/* why the state is what it is (the input that made the
					 * last change, e.g. "3 failed checks in a row: exit 1:
					 * ..."); "" at start */
	char last_check[HEALTH_DETAIL_MAX]; /* detail of the last check result; "" before any */
};

/* ---- Pure state machine --------------------------------------------------------------------- */

struct health_sm {
	struct health_status st;
	/* Policy, copied at init. */
	uint32_t failures;		/* >= 1 */
	uint32_t deadline_ms;		/* 0: no start deadline */
	bool has_check;			/* http, tcp or exec configured */
	uint64_t last_ms;		/* latest time seen (the clock never runs backwards) */
};

/*
 * Start the machine for an instance started at @now_ms, in state `starting`. @pol is read
 * during the call only (failures 0 is taken as 1). @pol NULL: no check, failures 1, no
 * deadline.
 */
void health_sm_init(struct health_sm *sm, const struct store_health_policy *pol, uint64_t now_ms);

/*
 * Apply R1 (the deadline) at @now_ms. Call it at health_sm_deadline() at the latest so that a
 * missed deadline shows without any other input.
 * @return true if the state changed.
 */
bool health_sm_tick(struct health_sm *sm, uint64_t now_ms);

/*
 * A check ended at @now_ms: @ok passed or not; @detail (may be NULL) is copied (truncated) into
 * st.last_check and, when the state changes, into st.detail.
 * @return true if the state changed (R1 included).
 */
bool health_sm_check(struct health_sm *sm, uint64_t now_ms, bool ok, const char *detail);

/*
 * The runtime reported @state with @restarts at @now_ms (R4, R5, R6); @detail (may be NULL)
 * is the runtime's own words, used for st.detail when the state changes.
 * @return true if the state changed (R1 included).
 */
bool health_sm_runtime(struct health_sm *sm, uint64_t now_ms, enum plugin_state state,
		       uint32_t restarts, const char *detail);

/*
 * The time at which health_sm_tick would change the state with no other input (the start
 * deadline while `starting`), or UINT64_MAX if none.
 */
uint64_t health_sm_deadline(const struct health_sm *sm);

/* ---- Checker on libuv ------------------------------------------------------------------------ */

struct health;

/*
 * The state of @service's instance of @rev changed (also when only `missed` latched, which
 * always comes with a change). @st is borrowed for the call. Called from the loop only, never
 * from inside a health_* call; several changes within one loop iteration caused by
 * health_runtime may be reported once, with the latest status. The callback may call any
 * health_* function, health_stop/health_start of this service and health_close included.
 */
typedef void (*health_change_cb)(void *ud, const char *service, uint64_t rev,
				 const struct health_status *st);
typedef void (*health_close_cb)(struct health *h, void *ud);

struct health_config {
	health_change_cb on_change;	/* required */
	void *ud;
};

/*
 * Create a checker on @loop (borrowed: must outlive the checker). @cfg is copied.
 * @return 0; -EINVAL (NULL loop/cfg/on_change/ret); -ENOMEM. @ret untouched on failure.
 * A checker that was created must be closed with health_close, and the loop run until its
 * callback (it owns a handle on @loop).
 */
int health_new(uv_loop_t *loop, const struct health_config *cfg, struct health **ret);

/* One instance to watch. Borrowed for the call only: everything kept is copied. */
struct health_target {
	const char *service;			/* required, 1..255 bytes */
	uint64_t rev;
	const struct store_id *artifact;	/* for SHOAL_ARTIFACT; may be NULL */
	const char *dir;			/* the materialized artifact directory: cwd of exec
						 * checks; required when policy->exec is set */
	const struct store_health_policy *policy; /* required; at most one of http/tcp/exec
						 * (the release parser guarantees it); 0 for
						 * interval/timeout means 2000/1000 ms */
};

/*
 * Start watching @t->service's instance of @t->rev, started now (uv_now): state `starting`,
 * first check in interval_ms, deadline timer armed. An instance already watched for the same
 * service (any rev) is stopped first, as by health_stop (its on_change is never called again).
 * No on_change for the initial `starting`.
 * @return 0; -EINVAL (NULL or missing fields, more than one kind of check, an http URL or tcp
 *         address this module cannot parse (see "The checks"), exec without dir); -ENOMEM;
 *         -ESHUTDOWN after health_close. On failure the previous instance, if any, is left
 *         untouched.
 */
int health_start(struct health *h, const struct health_target *t);

/*
 * Stop watching @service. After it returns, on_change is never called for that instance
 * again; a check in flight is aborted (an exec check's process group is killed) and its
 * handles are released later, from the loop (health_close waits for them).
 * @return 0; -ENOENT (not watched); -EINVAL (NULL).
 */
int health_stop(struct health *h, const char *service);

/*
 * Feed what the runtime plugin reports for @service (a plugin_event_cb or plugin_status_cb's
 * status): R4/R5/R6 at uv_now. A change is reported through on_change from the loop
 * (deferred, never from inside this call).
 * @return 1 if the state changed, 0 if not; -ENOENT (not watched); -ESTALE (@st->rev is not 0
 *         and is not the watched rev: ignored); -EINVAL (NULL).
 */
int health_runtime(struct health *h, const char *service, const struct plugin_status *st);

/*
 * Copy the status of @service's watched instance into *@ret_st and its rev into *@ret_rev
 * (may be NULL). The deadline is applied (R1) first, so a missed deadline shows even before
 * its timer fired.
 * @return 0; -ENOENT (not watched; outputs untouched); -EINVAL (NULL).
 */
int health_get(struct health *h, const char *service, uint64_t *ret_rev,
	       struct health_status *ret_st);

/*
 * Stop every instance (as health_stop) and free the checker: @cb (may be NULL) runs from the
 * loop once every handle of the checker is closed and every exec check's shell reaped (its
 * process group was killed; a grandchild may still be finishing its exit); @h is freed right
 * after @cb returns. Accepts NULL. Call at most once; after it only health_get/health_stop/health_runtime
 * may be called (they find nothing) until @cb; health_start returns -ESHUTDOWN.
 */
void health_close(struct health *h, health_close_cb cb, void *ud);

/* ---- Internal: exposed for the unit tests ------------------------------------------------- */

/* A parsed check address. */
struct health__addr {
	char host[256];		/* without brackets for IPv6 */
	uint16_t port;
	char authority[272];	/* as written in the URL (for the Host header) */
	char target[2048];	/* http: origin-form path[?query]; "" for tcp */
};
/* Parse an http URL / a tcp HOST:PORT as documented in "The checks". 0 or -EINVAL. @ret
 * untouched on failure. */
int health__parse_url(const char *url, struct health__addr *ret);
int health__parse_hostport(const char *s, struct health__addr *ret);

#endif
