/*
 * agent/node/reconcile.h: converging what runs on this host to what is desired, one service at a
 * time, through the service's runtime plugin (DESIGN.md "Swapping a service").
 *
 * The agent tells the reconciler the desired revision of each service
 * (reconcile_set_desired); the reconciler compares it with what runs (store_service_state)
 * and swaps. A swap toward (rev, artifact) is a short sequence of steps:
 *
 *   MATERIALIZE  the artifact's files into <state_dir>/artifacts/<service>/<rev>-<id12>
 *                (store_artifact_materialize, on the libuv thread pool; atomic, so the
 *                directory is either complete or absent; other directories of the service
 *                but the one that runs are removed first, with the leftovers of an
 *                interrupted materialize; a directory of the same artifact left by an
 *                earlier revision, which is what a rollback finds, is renamed instead of
 *                copied out of the store again)
 *   PREPARE      plugin_prepare (loads an image, checks the directory: nothing live changes)
 *   STOP_PREV    plugin_deactivate through the PREVIOUS artifact's plugin, only when the
 *                runtime changes between the two (exec -> systemd, ...): a plugin's activate
 *                replaces its own instance, never another plugin's
 *   ACTIVATE     plugin_activate (the runtime stops the old instance and starts the new one;
 *                its callback's 0 means "accepted", not "healthy": health is the agent's)
 *   done         store_service_state: running = artifact, running_rev = rev (last_good kept),
 *                then the journal entry is deleted and on_swapped(0) is called
 *
 * and, when the desired is "nothing" (rev 0), a single step DEACTIVATE through the plugin of
 * the running artifact, then running = none.
 *
 * The journal. Before each step starts, the swap's record is written to the store's journal
 * (store_journal_put, key = service): {target rev and artifact, previous rev and artifact,
 * step, attempt}, a fixed 96-byte versioned record (layout in reconcile.c). After a crash
 * at any instant, reconcile_resume() reads every entry and resumes that swap at the step it
 * records: every step is idempotent (materialize replaces the directory atomically; prepare
 * has no live effect; deactivate of a stopped service and activate of the revision already
 * active both end in the same state: exec restarts the instance and first terminates the
 * orphaned process group a killed agent left behind, systemd restarts the unit, container
 * replaces the container), so re-running the recorded step and the ones after it finishes the
 * swap. A service is never left half-swapped: store_service_state names a new artifact only
 * once its activation was accepted, and the journal entry outlives that write.
 *
 * Coalescing. One swap per service at a time, and no queue: a desired revision that changes
 * mid-swap replaces the target. The step in flight finishes (plugin operations are not
 * interrupted); at the next step boundary the swap is re-aimed at the newest desired
 * revision (a new journal record, same "previous"). After a crash, a swap resumed at a step
 * that touches the runtime (STOP_PREV, ACTIVATE, DEACTIVATE) finishes that step before it may
 * be re-aimed. If the newest desired is what already runs and the runtime was not touched,
 * the swap is simply dropped.
 *
 * After a restart nothing is "known to run": the first time a service's desired equals its
 * recorded running revision, the reconciler asks the plugin (plugin_status); when the
 * runtime reports it STARTING/RUNNING/RESTARTING with that revision (or RUNNING with an
 * unknown revision 0), nothing happens; otherwise (e.g. an exec service after an agent
 * restart: its process group was orphaned) it is re-activated, as a swap of its own.
 *
 * Orphans of exec services. The exec driver finds the process group a killed agent left
 * through its pid file, but that file is written once uv_spawn has returned: an agent
 * killed while spawning leaves an instance nobody recorded (the crash test hits this).
 * So, before the first step of this run that touches an exec service (ACTIVATE, STOP_PREV,
 * DEACTIVATE through the exec plugin), the reconciler ends, on the thread pool, every
 * process group whose environment says SHOAL_SERVICE=<service> and SHOAL_DIR under
 * <state_dir>/artifacts/<service>/ (reconcile__sweep_orphans: SIGTERM, SIGKILL after
 * stop_timeout_ms). Until then this run has started no instance of it, so whatever
 * matches is a previous run's.
 *
 * Failures. A failed step is retried after a back-off (retry_min_ms doubling per attempt up
 * to retry_max_ms, the attempt count journaled), forever, reported each time through
 * on_swapped(status < 0) and an on_state RECONCILE_EV_RETRY event. Giving up is the agent's
 * decision: it changes the desired revision (a rollback), which re-aims the swap at once
 * (a desired change cuts the back-off short).
 *
 * Pacing per failure domain. Before a NEW swap starts (never for a swap resumed from the
 * journal, re-aimed mid-way, or re-activating the revision that is recorded as running) the
 * reconciler calls may_start(ud, service, rev). A false return postpones the swap:
 * may_start is asked again every pace_retry_ms (and at each desired change) until it says
 * yes. The agent implements "at most M nodes of a site swapping at once" with it; a swap
 * holds its slot from the true return until on_swapped(status 0) for that service (or
 * reconcile_close).
 *
 * Loop and threads: everything runs on the loop given to reconcile_new, and every function
 * must be called from that loop's thread. Callbacks are called from the loop, never from
 * inside a reconcile_* call (they are deferred), so they may call reconcile_* functions.
 * The store is used from the loop thread (a journal write per step, one small LMDB
 * transaction) and, for materialize, from the libuv thread pool; the orphan sweep also runs
 * on the thread pool.
 *
 * Limits (known, documented): plugin_forget is not called (old systemd unit files and
 * container images stay until the agent forgets them); when a swap whose activation failed
 * is re-aimed at "stop" and nothing was recorded running before it, what the failed target
 * left in its runtime is not chased; a runtime change (exec -> systemd) stops the previous
 * instance before the new one is activated, so such a swap has a gap.
 *
 * This module never logs: it reports through the callbacks.
 */
#ifndef SHOAL_AGENT_RECONCILE_H
#define SHOAL_AGENT_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "plugins/plugin.h"
#include "store/store.h"

struct reconcile;

enum reconcile_step {
	RECONCILE_STEP_NONE = 0,
	RECONCILE_STEP_MATERIALIZE = 1,
	RECONCILE_STEP_PREPARE = 2,
	RECONCILE_STEP_STOP_PREV = 3,
	RECONCILE_STEP_ACTIVATE = 4,
	RECONCILE_STEP_DEACTIVATE = 5,
};
/* "none", "materialize", "prepare", "stop-prev", "activate", "deactivate"; "unknown". */
const char *reconcile_step_name(enum reconcile_step s);

enum reconcile_event_kind {
	RECONCILE_EV_STEP = 0,	 /* a step starts (its journal record is written) */
	RECONCILE_EV_RETRY,	 /* a step failed (status); retried after retry_ms */
	RECONCILE_EV_PACED,	 /* may_start said no; asked again after retry_ms */
	RECONCILE_EV_ABANDONED,	 /* the swap toward rev re-aimed or dropped (newer desire) */
	RECONCILE_EV_PLUGIN,	 /* an unsolicited plugin event: st is set */
	RECONCILE_EV_JOURNAL_BAD,/* a journal entry that does not decode (status) was ignored */
};
/*
 * The last failure of @service's swap in words: the runtime's reason when it gave one
 * (plugin_last_error: an engine's message, a D-Bus error, a job result) followed by the
 * errno's text, else the error's text (store_strerror). "" when the last step succeeded or
 * nothing is known. Borrowed until the next call into @r; loop thread.
 */
const char *reconcile_last_error(struct reconcile *r, const char *service);

/* "step", "retry", "paced", "abandoned", "plugin", "journal-bad"; "unknown". */
const char *reconcile_event_name(enum reconcile_event_kind k);

/* Everything borrowed for the duration of the callback. */
struct reconcile_event {
	enum reconcile_event_kind kind;
	const char *service;
	uint64_t rev;			  /* the swap's target (0 = stop); PLUGIN: st->rev */
	const struct store_id *artifact;  /* the target artifact; NULL for a stop / plugin event */
	enum reconcile_step step;
	uint32_t attempt;		  /* failed attempts of this swap so far */
	int status;			  /* RETRY/JOURNAL_BAD: the error */
	uint32_t retry_ms;		  /* RETRY/PACED: delay before the next try */
	const struct plugin_status *st;	  /* PLUGIN: the runtime's status */
};

struct reconcile_callbacks {
	/*
	 * Asked before a new swap of @service toward @rev (0 = stop) starts; see "Pacing" above.
	 * NULL = always allowed. Must not call reconcile_* functions.
	 */
	bool (*may_start)(void *ud, const char *service, uint64_t rev);
	/*
	 * A swap attempt ended. status 0: @service now runs @rev/@artifact (@rev 0 and @artifact
	 * NULL: the service is stopped), the journal entry is gone and the swap is over (also
	 * when a swap is dropped because the desired revision went back to what runs, and when,
	 * after an agent restart, the runtime is found still running what the store says runs).
	 * status < 0: the step of this attempt failed; the swap goes on (retried with back-off)
	 * until it succeeds or the desired revision changes. @artifact borrowed. May be NULL.
	 */
	void (*on_swapped)(void *ud, const char *service, uint64_t rev,
			   const struct store_id *artifact, int status);
	/* Progress and events (see enum reconcile_event_kind). May be NULL. */
	void (*on_state)(void *ud, const struct reconcile_event *ev);
	/*
	 * Drain (issue 14): called once per swap, before the first step that stops the running
	 * instance @rev/@artifact (STOP_PREV, ACTIVATE or DEACTIVATE of a swap that has a
	 * previous instance this run activated or confirmed running; not for an instance found
	 * dead after a restart, nor for a swap resumed from the journal). Return false to go on at
	 * once; true to hold the swap until reconcile_drained(@service) (the agent marks its
	 * endpoint draining and waits for its load balancer, bounded). While held, a desired
	 * change is noted and applied when the hold ends (the instance is drained already, so
	 * the re-aimed swap does not drain again). Must not call reconcile_* functions. NULL:
	 * never waits.
	 */
	bool (*before_stop)(void *ud, const char *service, uint64_t rev,
			    const struct store_id *artifact);
	void *ud;
};

struct reconcile_opts {
	uint32_t retry_min_ms;	/* first back-off after a failure; 0 = 1000 */
	uint32_t retry_max_ms;	/* back-off ceiling; 0 = 60000 */
	uint32_t pace_retry_ms;	/* how often a refused may_start is asked again; 0 = 2000 */
};

/*
 * Create a reconciler.
 * @loop: the agent's loop. @s: the store (borrowed; must outlive the reconciler).
 * @pcfg: the plugin configuration plugins are created with, lazily, one per runtime name
 *   (manifest->runtime) on first use. Copied, but its strings are borrowed and must outlive
 *   the reconciler; pcfg->state_dir (absolute) is also where artifacts are materialized.
 *   Its on_event is called (with its ud) for every plugin event and the same event is
 *   reported through on_state as RECONCILE_EV_PLUGIN; on_log is passed through.
 * @cbs: copied. @opts: may be NULL (defaults).
 * Nothing is started: call reconcile_resume() and then reconcile_set_desired().
 * @return 0 and *ret (end it with reconcile_close); -EINVAL (NULL loop/s/pcfg/cbs/ret, or a
 *         state_dir missing or not absolute); -ENOMEM. @ret untouched on failure.
 */
int reconcile_new(uv_loop_t *loop, struct store *s, const struct plugin_config *pcfg,
		  const struct reconcile_callbacks *cbs, const struct reconcile_opts *opts,
		  struct reconcile **ret);

/*
 * Resume every swap the journal records (call once, after reconcile_new, before or after the
 * first reconcile_set_desired). Each one continues at its recorded step, without asking
 * may_start; until the agent says otherwise the service's desired revision is that swap's
 * target. Undecodable entries are reported (RECONCILE_EV_JOURNAL_BAD) and left to be
 * overwritten by the service's next swap.
 * @return the number of swaps resumed (>= 0); -EINVAL; -EALREADY (called twice); -ECANCELED
 *         (closing); -ENOMEM; -EIO (the journal cannot be read).
 */
int reconcile_resume(struct reconcile *r);

/*
 * The desired revision of @service changed (or is asserted again: calling it with the same
 * value is cheap and harmless). @rev 0 or @artifact NULL: nothing should run (stop). The
 * artifact must be in the store by the time its MATERIALIZE step runs (a missing one fails
 * the step with -ENOENT and is retried). On start the agent calls it for every service it
 * has a desired revision for.
 * @return 0; -EINVAL (NULL r, invalid service name); -ENOMEM; -ECANCELED (closing).
 */
int reconcile_set_desired(struct reconcile *r, const char *service, uint64_t rev,
			  const struct store_id *artifact);

/*
 * @artifact has just entered the store (e.g. fetched from a peer): every service that desires
 * it and waits out a back-off (its MATERIALIZE failed with -ENOENT) tries again at once
 * instead of at the end of the back-off, which can be a minute. Loop thread. NULL @r is fine.
 */
void reconcile_artifact_arrived(struct reconcile *r, const struct store_id *artifact);

/*
 * End the hold before_stop asked for on @service: the swap goes on (from the loop, after this
 * call returns). @return 0; -ENOENT (no such service, or it is not held); -EINVAL. Loop thread;
 * NULL @r is fine (-EINVAL).
 */
int reconcile_drained(struct reconcile *r, const char *service);

/*
 * Restart @service's running instance of @rev (release.ini [recovery] restarts): a swap to what
 * runs, from the loop after this call, with the drain (before_stop) and without may_start.
 * @return 0; -ENOENT (unknown service); -EBUSY (a swap or a restart is under way); -ESTALE
 *         (@rev is not what runs and is desired); -ECANCELED (closing); -EINVAL.
 */
int reconcile_restart(struct reconcile *r, const char *service, uint64_t rev);

/*
 * Record that @service at @rev/@artifact was found healthy: store_service_state.last_good
 * = @artifact (in one store write).
 * @return 0; -EINVAL (bad arguments, rev 0); -ESTALE (that is not what runs any more: the
 *         store's running/running_rev differ; nothing written); -ENOSPC; -EIO.
 */
int reconcile_mark_good(struct reconcile *r, const char *service, uint64_t rev,
			const struct store_id *artifact);

/* What the reconciler knows of one service (for agentctl status). */
struct reconcile_service_status {
	bool have_desired;
	uint64_t desired_rev;		/* 0 = stop */
	struct store_id desired;
	bool swapping;			/* a swap is in progress (journaled) */
	uint64_t target_rev;
	struct store_id target;
	enum reconcile_step step;
	uint32_t attempt;
	int last_error;			/* of the last failed step; 0: none in this swap */
	bool paced;			/* waiting for may_start */
	bool verified;			/* the running revision was activated, or confirmed by
					 * its runtime, since this reconciler started */
};
/* 0 and *ret; -ENOENT (the reconciler knows nothing of @service); -EINVAL. */
int reconcile_service_status(struct reconcile *r, const char *service,
			     struct reconcile_service_status *ret);

/* True when no service has a swap in progress, a pending step or a pending pacing question. */
bool reconcile_idle(struct reconcile *r);

/*
 * Close: no callback of @cbs runs after this call; operations in flight are waited for
 * (materialize) or cancelled by closing the plugins (plugin_close: the exec driver stops its
 * children, systemd leaves units running). @cb (may be NULL) runs from the loop when all is
 * released; @r is freed right after it returns. Journal entries stay: the next run resumes
 * them. Accepts NULL. Call at most once.
 */
void reconcile_close(struct reconcile *r, void (*cb)(void *ud), void *ud);

/* ---- Internal (exposed for tests) ---------------------------------------------------------- */

#define RECONCILE_JOURNAL_LEN	  96
#define RECONCILE_JOURNAL_VERSION 1

struct reconcile_journal {
	uint64_t target_rev;		/* 0 = stop */
	struct store_id target;
	uint64_t prev_rev;		/* what ran when the swap began (0 = nothing) */
	struct store_id prev;
	enum reconcile_step step;
	uint32_t attempt;
};
/* Encode into exactly RECONCILE_JOURNAL_LEN bytes. 0; -EINVAL (bad step). */
int reconcile__journal_encode(const struct reconcile_journal *j,
			      uint8_t out[RECONCILE_JOURNAL_LEN]);
/* Decode; bounds-checked. 0 and *ret; -EBADMSG (wrong length, magic or fields);
 * -EPROTONOSUPPORT (a newer version). @ret untouched on failure. */
int reconcile__journal_decode(const void *buf, size_t len, struct reconcile_journal *ret);

/*
 * End what a killed agent's exec driver could not record: every live process whose
 * environment has SHOAL_SERVICE=@service and SHOAL_DIR under @state_dir/artifacts/@service/
 * gets its process group SIGTERMed (SIGKILLed after @timeout_ms), and the call waits until
 * none is left (25 ms polls; 5 s more after SIGKILL). Blocking: runs on the thread pool.
 * Returns the number of groups found (0: none), -EINVAL, -ENAMETOOLONG, -ETIMEDOUT, or the
 * error of opening /proc.
 */
int reconcile__sweep_orphans(const char *state_dir, const char *service, uint32_t timeout_ms);

#endif
