/*
 * traffic/traffic.h: keep an HAProxy backend in step with the cluster's endpoints of one
 * service, through HAProxy's runtime API, with no reload.
 *
 * What this module is for
 * -----------------------
 * Every agent knows, through gossip, which node runs which revision of a service, on which
 * address and port, in which site, and whether it is starting, healthy, draining or
 * unhealthy. This module turns that list into the servers of one HAProxy backend whose
 * servers are the slots of a `server-template`:
 *
 *     backend web
 *         option httpchk GET /
 *         server-template s 1-8 127.0.0.1:1 disabled check inter 1s
 *
 * and keeps them in step by sending runtime-API commands over HAProxy's stats socket:
 *
 *     set server web/s3 addr 10.0.1.7 port 8080
 *     set weight web/s3 100
 *     set server web/s3 state ready | drain | maint
 *
 * A reload would re-read the configuration and start new processes; the runtime API changes
 * the running process, so no connection is dropped and nothing is re-resolved.
 *
 * It has two layers, as gossip/ has a pure core and a transport:
 *
 *   - a PURE PLANNER (traffic_plan_build) and two PARSERS of HAProxy's answers
 *     (traffic_parse_servers_state, traffic_parse_stat): no clock, no socket, no randomness,
 *     no allocation beyond what they return. Given the endpoints, the slots and what HAProxy
 *     reported last, the planner returns the exact commands to send. Unit tests and fuzzers
 *     drive these directly.
 *   - a LIBUV DRIVER (struct traffic_lb): one per backend. It connects to the stats socket,
 *     reads the backend's state, plans, sends the commands one at a time, reads back the
 *     state, and reports what happened through a callback. It never blocks the loop, and every
 *     connect and read has a timeout.
 *
 * Nothing here includes agent/: the agent hands in plain structs (endpoints, a site, a share)
 * and gets back events with words in them, which it logs and shows in `events`.
 *
 * Slots, and why an endpoint keeps its slot
 * -----------------------------------------
 * An endpoint is identified by its address and port (what HAProxy holds; two endpoints with
 * the same address and port are one server to HAProxy). A slot "holds" an endpoint when
 * HAProxy's last reported address and port of that slot are the endpoint's. Such a slot is
 * kept for the endpoint as long as the endpoint is in the input, whatever its state: moving an
 * endpoint to another slot would mean `set server addr` on two slots, and HAProxy counts
 * sessions, checks and stick-table entries per server, so a move loses the drain count and
 * the check history for nothing. Because the holding is read from HAProxy itself (not kept in
 * the agent), it survives an agent restart; a restarted HAProxy starts from its configuration
 * (every slot in maint at 127.0.0.1:1), nobody holds anything, and the next pass fills the
 * slots again (see "Resync" below).
 *
 * Endpoints that need a slot and hold none (healthy or starting ones; a draining or unhealthy
 * endpoint takes no traffic and so needs no new slot) are placed in order of preference:
 * local site first, healthy before starting, then by node, address and port (so the choice
 * is the same on every node and in every run). Free slots are taken lowest index first,
 * those already in maint before those freed in this very pass (a freed slot may still carry
 * the sessions of the endpoint that just left). When there are more such endpoints than free
 * slots, slots held by UNHEALTHY endpoints are given up first (they carry no traffic, they
 * are in maint); what still does not fit is NOT SERVED and listed in plan.unplaced with
 * TRAFFIC_UNPLACED_NO_SLOT, so the agent can say "service web: 3 endpoints beyond the 8
 * slots of backend web are not served". Slots beyond the endpoints go to maint; their old
 * address is left as it is (harmless in maint, and it lets the endpoint have its slot back if
 * it returns).
 *
 * States
 * ------
 *     endpoint state   HAProxy slot                 why
 *     --------------   --------------------------   -----------------------------------------
 *     healthy          ready, its weight (or 0,     takes traffic (see failover)
 *                      see failover)
 *     starting         drain                        HAProxy's own health checks run against it
 *                                                   already, so the moment it turns healthy and
 *                                                   goes ready it is known UP; no new sessions
 *     draining         drain                        existing sessions finish, no new ones are
 *                                                   sent (except persistent ones: cookies,
 *                                                   stick tables); the agent waits for scur 0
 *                                                   (traffic_lb_sessions) before it stops it
 *     unhealthy        maint                        out at once: no traffic, no checks. An agent
 *                                                   whose recovery strategy keeps an unhealthy
 *                                                   instance serving while the cluster decides
 *                                                   passes it as healthy until it decides.
 *     (no endpoint)    maint                        a free slot
 *
 * Weights are clamped to 0..256 (HAProxy's range for `set weight`); each clamp is counted in
 * plan.nclamped. A weight is only sent for a slot that is to be ready (it matters nowhere
 * else); it is sent again when the slot goes back to ready.
 *
 * Failover by failure domain: the rule and its formula
 * ----------------------------------------------------
 * Each endpoint carries its site; the driver runs on one node and knows that node's site.
 * With F the failover share (0..1, given in thousandths: failover_permille = F * 1000):
 *
 *     L    = local endpoints (site == this node's site), except the draining ones
 *     H    = local endpoints that are healthy, have weight > 0, hold a slot, and whose
 *            slot HAProxy's own check has UP (see below)
 *     need = ceil(F * L)         computed exactly: (failover_permille * L + 999) / 1000
 *
 *     local_ok = H >= 1  and  H >= need
 *
 *   - local_ok:  local healthy endpoints are ready with their weight; REMOTE healthy ones are
 *     ready with WEIGHT 0: HAProxy keeps checking them and keeps their sessions, sends them
 *     no new ones, and they are one `set weight` away from serving.
 *   - not local_ok (plan.failover): every healthy endpoint, local or remote, is ready with its
 *     own weight: the local ones that are left keep serving, the remote ones take the rest.
 *
 * Draining endpoints are left out of L on purpose: a rolling deploy drains one local instance
 * at a time, and taking it out of the count means a planned drain does not fail the site over
 * (unless it leaves no local healthy endpoint at all, since H >= 1 is always required).
 * Starting and unhealthy ones count in L and not in H: an instance that crashed and is
 * starting again is missing capacity. Examples: F = 0 fails over only when no local endpoint
 * is healthy; F = 0.5 with 4 local endpoints needs 2 healthy; F = 1 needs every local one.
 * A node in a site with no endpoints of the service (L = 0) always sends traffic to the
 * other sites. When no endpoint has a site and this node has none, all are local.
 *
 * "UP" is HAProxy's word, read from `show servers state` (input.servers): a slot counts when
 * it leaves maint in this very pass (it is in maint now, or it takes a new address, which
 * goes through maint: HAProxy 2.6 puts a server that leaves maint UP at once and checks it
 * at once), or when its srv_op_state is 2 (running) or 1 (starting, slowstart). A slot that
 * stays out of maint with srv_op_state 0 (stopped: its check failed) or 3 (stopping) does not
 * count, nor a slot HAProxy did not report. Such local endpoints, healthy for the cluster
 * but not for HAProxy, are counted in plan.local_waiting. Why: HAProxy sends nothing to a
 * server its check has DOWN, whatever the runtime API says; after a failed check it needs
 * `rise` passed checks, `inter` apart, before it is UP again. The case that showed it: a
 * site with one node left, which swaps to a bad revision and back (the rollback); its slot
 * is in drain while the bad instance answers the checks with 404, so HAProxy has it DOWN;
 * the agent's own check passes on the good instance up to one `inter` before HAProxy's does,
 * and failing back then set the remote servers to weight 0 with no local server UP: every
 * request got 503 until HAProxy's next check (2 to 56 failed requests per rollback in
 * system_agentd_traffic, 0 since). The same rule fails over when HAProxy's check takes
 * every serving local server out before gossip says anything (a site cut off), at the next
 * pass. The driver makes the next pass come in retry_ms, not resync_ms, while
 * plan.local_waiting > 0, so the fail-back follows HAProxy's check within retry_ms.
 *
 * Why weights rather than HAProxy `backup` servers: backup is a configuration-time property
 * of a server (a template is all backup or none); with weights one template serves both
 * roles and the rule above is the only place the policy lives. The cost: the switch to a
 * remote site happens when the agent learns that local endpoints are unhealthy (gossip) and
 * not at HAProxy's own check; HAProxy's checks still take a dead local server out at once,
 * and with `option redispatch` and `retries` a request in flight is re-sent elsewhere. When
 * HAProxy takes EVERY local server out before the agent learns of it (a whole site cut off),
 * the remote ones are still at weight 0 and requests get 503 until the agent fails over (at
 * its next pass, which reads HAProxy's check, or when gossip tells it). With
 * `check inter 500ms fall 2` and `timeout connect 1s` the checks of a cut-off server time out
 * and take it out about when gossip declares its node dead (2-3 failed requests measured);
 * `on-error mark-down` takes it out at its first failed request (22-58 failed). README: the
 * recommended backend.
 *
 * Order of the commands
 * ---------------------
 * Per slot: first the state change if it lowers the slot (ready -> drain -> maint), then the
 * address, then the weight, then the state change if it raises it. A serving slot that
 * changes endpoint (its endpoint left and another takes the slot) goes to maint first, so
 * neither address gets traffic at the other's weight. Across slots: first every slot whose
 * commands only add capacity (fills of slots in maint, raises, weight ups on serving slots),
 * then the others; so in a fail-back the local slots are serving before the remote ones go to
 * weight 0. Example (unit test test_failover_both_ways):
 *
 *     set server web/s1 state ready        local a1 back
 *     set server web/s2 state ready        local a2 back
 *     set weight web/s3 0                  remote b1 to standby
 *     set weight web/s4 0                  remote b2 to standby
 *
 * The runtime API, and how the driver talks to it
 * -----------------------------------------------
 * HAProxy's CLI accepts one command per connection, several commands separated by ';' on one
 * line, or an interactive "prompt" mode in which each answer ends with "\n> ". The driver
 * opens ONE connection per pass, enters prompt mode, and sends one command, waits for its
 * answer (up to the prompt), then sends the next. Why: with ';' the answers of a batch come
 * back concatenated and a success prints nothing, so an error cannot be told apart from its
 * neighbour reliably; one connection per command costs a connect per command. Prompt mode
 * gives each command its own answer at the cost of a local round trip (microseconds), and a
 * connection per pass means a restarted HAProxy, or a socket that moved, is simply found on
 * the next pass. The end of an answer is recognised as the bytes "\n> " at the end of what was
 * received; none of the answers the driver asks for (state, stat CSV, error texts) has a line
 * starting with "> ".
 *
 * An answer is an error when it is not what the command prints on success: `set weight` and
 * `set server state` print nothing; `set server addr` prints "IP changed from ..." or "no need
 * to change the addr ..." without an "Invalid ..." or "can't ..." after it (HAProxy 2.6 sends
 * its refusals, "Invalid addr", with the same severity as its successes, and answers "no need
 * to change the addr, can't change <port> ..." to a port it refuses, so the text is what
 * counts). A refused command is reported (TRAFFIC_EV_COMMAND) and the pass goes on. After the
 * commands the driver reads `show servers state` again and plans against it: any command still
 * to do fails the pass ("backend web not in step ...", retried), so a command HAProxy refused,
 * or accepted and did not apply, does not go unnoticed. Refusals seen on real HAProxy 2.6:
 * "Permission denied" (a socket below level admin: the event says so), "Backend is using a
 * static LB algorithm and only accepts weights '0%' and '100%'." (balance source/uri/...
 * without hash-type consistent: use roundrobin, leastconn or a consistent hash).
 *
 * Reports are not repeated: the same error, the same unplaced list, the same failover state
 * are reported once, until they change or a pass succeeds.
 *
 * Resync: every pass starts with `show servers state BACKEND`; the plan is made against what
 * HAProxy says NOW, not against what the driver sent last time. A pass runs when the endpoints
 * change (traffic_lb_update), every cfg.resync_ms (default 5 s: a restarted HAProxy is back in
 * step within that; a pass with nothing to change is one connection and one read), every
 * cfg.retry_ms while a local endpoint waits for HAProxy's check (plan.local_waiting, as read
 * after the pass's commands), and after a failed pass with a backoff (cfg.retry_ms, doubling
 * up to cfg.resync_ms).
 *
 * Threads and loops: the planner and parsers are reentrant. A struct traffic_lb lives on one
 * libuv loop and is used from that loop's thread only; its callbacks run on that loop. Cost
 * on the loop: a plan is O(n log n); at the limits (4096 slots and endpoints) one takes about
 * 10 ms (gcc -O2, measured on a loaded 2-core machine), and a pass plans twice.
 *
 * Errors: functions return 0 (or a documented non-negative value) on success and a negative
 * errno on failure. The parsers also write a one-line English reason into the caller's
 * buffer. The driver reports errors in words through its event callback; the errno there is
 * the nearest one (-ECONNREFUSED: HAProxy not listening; -ENOENT: no such socket; -EACCES:
 * socket permission; -ETIMEDOUT; -EPROTO: HAProxy refused a command; -EBADMSG: an answer that
 * does not parse). This module never logs. ret_* output parameters are untouched on failure.
 */
#ifndef SHOAL_TRAFFIC_H
#define SHOAL_TRAFFIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TRAFFIC_NAME_MAX      63	/* backend, slot, node, site names: bytes without the NUL */
#define TRAFFIC_ADDR_MAX      45	/* a numeric IPv6 address in text (INET6_ADDRSTRLEN - 1) */
#define TRAFFIC_REV_MAX	      64	/* revision text, reported only */
#define TRAFFIC_WEIGHT_MAX    256	/* HAProxy's largest `set weight` */
#define TRAFFIC_SLOTS_MAX     4096	/* servers of one backend the parsers and planner take */
#define TRAFFIC_ENDPOINTS_MAX 4096	/* endpoints of one service the planner takes */
#define TRAFFIC_CMD_MAX	      192	/* one runtime-API command line, with its NUL */

/* ---------------------------------------------------------------------------------------- */
/* Endpoints (input) and HAProxy servers (what HAProxy says)                                 */

enum traffic_state {
	TRAFFIC_STARTING = 0,
	TRAFFIC_HEALTHY = 1,
	TRAFFIC_DRAINING = 2,
	TRAFFIC_UNHEALTHY = 3,
};
/* "starting", "healthy", "draining", "unhealthy"; "?" otherwise. */
const char *traffic_state_name(int state);
/* The inverse; returns the state or -EINVAL. */
int traffic_state_parse(const char *s);

/*
 * One instance of the service, as the cluster sees it. Strings are borrowed for the call that
 * takes them (the driver copies what it keeps).
 *  node      node name or id: reports and the placement order; 1..TRAFFIC_NAME_MAX bytes
 *  site      failure domain; "" or NULL = no site (local only to a node with no site)
 *  addr      numeric IPv4 or IPv6 address (no names: HAProxy would not resolve them here)
 *  port      1..65535
 *  weight    clamped to 0..TRAFFIC_WEIGHT_MAX
 *  revision  reported only; may be NULL
 */
struct traffic_endpoint {
	const char *node;
	const char *site;
	const char *addr;
	uint16_t port;
	int weight;
	enum traffic_state state;
	const char *revision;
};

/* A slot's mode in HAProxy terms. */
enum traffic_mode {
	TRAFFIC_READY = 0,
	TRAFFIC_DRAIN = 1,
	TRAFFIC_MAINT = 2,
};
/* "ready", "drain", "maint"; "?" otherwise. */
const char *traffic_mode_name(int mode);

/* srv_admin_state bits (HAProxy's enum srv_admin) the planner reads. */
#define TRAFFIC_ADMF_FMAINT 0x01	/* forced into maint (CLI or "disabled") */
#define TRAFFIC_ADMF_IMAINT 0x02	/* inherited maint (tracked server) */
#define TRAFFIC_ADMF_CMAINT 0x04	/* "disabled" in the configuration: informative only */
#define TRAFFIC_ADMF_FDRAIN 0x08	/* forced drain */
#define TRAFFIC_ADMF_IDRAIN 0x10	/* inherited drain */
#define TRAFFIC_ADMF_RMAINT 0x20	/* maint after a failed address resolution */
#define TRAFFIC_ADMF_MAINT  (TRAFFIC_ADMF_FMAINT | TRAFFIC_ADMF_IMAINT | TRAFFIC_ADMF_RMAINT)
#define TRAFFIC_ADMF_DRAIN  (TRAFFIC_ADMF_FDRAIN | TRAFFIC_ADMF_IDRAIN)

/* One server line of `show servers state BACKEND`. */
struct traffic_server {
	char name[TRAFFIC_NAME_MAX + 1];
	char addr[TRAFFIC_ADDR_MAX + 1];	/* "" when HAProxy shows "-" */
	uint16_t port;		/* srv_port; 0 when none */
	uint16_t uweight;	/* srv_uweight: the weight `set weight` sets */
	uint8_t op_state;	/* srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping */
	uint8_t admin;		/* srv_admin_state: TRAFFIC_ADMF_* bits */
	uint32_t id;		/* srv_id */
};
/* MAINT if any maint bit is set, else DRAIN if any drain bit, else READY. */
enum traffic_mode traffic_server_mode(const struct traffic_server *s);

/* One server line of `show stat` CSV. */
struct traffic_stat {
	char name[TRAFFIC_NAME_MAX + 1];	/* svname */
	char status[24];	/* "UP", "DOWN", "DRAIN", "MAINT", "no check", ... (cut to fit) */
	char addr[TRAFFIC_ADDR_MAX + 8];	/* "ip:port" or "[ip6]:port" as HAProxy prints */
	uint32_t scur;		/* current sessions */
	uint32_t weight;	/* effective weight */
};

/* ---------------------------------------------------------------------------------------- */
/* Parsers of HAProxy's answers (pure)                                                       */

/*
 * Parse the answer to `show servers state BACKEND` (format version 1: a line "1", a header
 * line "# be_id be_name srv_id srv_name ..." naming the columns, one line per server, an
 * empty line). Columns are found by their header names, so older and newer HAProxy versions
 * that add columns parse too; the columns be_name, srv_id, srv_name, srv_addr, srv_op_state,
 * srv_admin_state, srv_uweight and srv_port must be present. Only lines of @backend are kept
 * (the answer to `show servers state` without a backend lists them all).
 *
 * @buf/@len  the bytes, not NUL-terminated; the driver strips the prompt first
 * @ret/@ret_n  on success a malloc'ed array (free()) of *ret_n servers in HAProxy's order
 *              (NULL and 0 when the backend has no servers)
 * @err/@errlen  a one-line reason on failure (always NUL-terminated if errlen > 0)
 * @return 0; -ENOENT HAProxy answered "Can't find backend."; -EBADMSG anything malformed
 *         (wrong version, missing column, a field count not the header's, a number out of
 *         range, a name or address too long or with bytes that cannot be in one, more than
 *         TRAFFIC_SLOTS_MAX servers); -ENOMEM.
 */
int traffic_parse_servers_state(const char *buf, size_t len, const char *backend,
				struct traffic_server **ret, size_t *ret_n, char *err,
				size_t errlen);

/*
 * Parse `show stat` CSV (any filter) and keep the server rows of @backend (pxname ==
 * @backend, svname neither FRONTEND nor BACKEND). Columns are found by the "# pxname,..."
 * header; pxname, svname, scur, status, weight and addr must be present.
 * Same buffers, ownership and errors as traffic_parse_servers_state (-ENOENT when HAProxy
 * answered "No such proxy." or "No such backend.").
 */
int traffic_parse_stat(const char *buf, size_t len, const char *backend,
		       struct traffic_stat **ret, size_t *ret_n, char *err, size_t errlen);

/*
 * Classify HAProxy's answer (prompt stripped) to one command the planner produced: 0 when it
 * is the command's success answer, -EPROTO otherwise (the text is HAProxy's reason).
 */
int traffic_answer_check(const char *cmd, const char *answer, size_t len);

/* ---------------------------------------------------------------------------------------- */
/* The planner (pure)                                                                         */

/*
 * What the planner needs. Everything is borrowed for the call.
 *  backend            the HAProxy backend name
 *  site               this node's site ("" or NULL: none)
 *  failover_permille  F * 1000, 0..1000 (see "Failover" above)
 *  slots/nslots       the slot names, in order of preference (the driver passes the backend's
 *                     servers in HAProxy's srv_id order); at most TRAFFIC_SLOTS_MAX
 *  servers/nservers   HAProxy's last reported state of the backend; a slot with no line here
 *                     is "unknown": it gets every command (address, weight, state)
 *  endpoints/nendpoints  the cluster's endpoints of the service; at most TRAFFIC_ENDPOINTS_MAX
 */
struct traffic_plan_input {
	const char *backend;
	const char *site;
	unsigned failover_permille;
	const char *const *slots;
	size_t nslots;
	const struct traffic_server *servers;
	size_t nservers;
	const struct traffic_endpoint *endpoints;
	size_t nendpoints;
};

/* One runtime-API command; line has no newline. */
struct traffic_cmd {
	size_t slot;			/* index into input.slots */
	char line[TRAFFIC_CMD_MAX];
};

/* What a slot is to become. */
struct traffic_slot_plan {
	long endpoint;			/* index into input.endpoints; -1: free */
	enum traffic_mode mode;
	uint16_t weight;		/* meaningful when mode is READY */
};

enum traffic_unplaced_why {
	TRAFFIC_UNPLACED_NO_SLOT = 1,	/* wanted a slot, none was free: NOT SERVED */
	TRAFFIC_UNPLACED_DUPLICATE = 2,	/* same address and port as a preferred endpoint */
};
struct traffic_unplaced {
	size_t endpoint;		/* index into input.endpoints */
	enum traffic_unplaced_why why;
};

struct traffic_plan {
	struct traffic_cmd *cmds;	/* in the order to send them */
	size_t ncmds;
	struct traffic_slot_plan *slots;	/* nslots entries, one per input slot */
	size_t nslots;
	struct traffic_unplaced *unplaced;	/* in input order */
	size_t nunplaced;
	size_t local_total;		/* L of the failover formula */
	size_t local_healthy;		/* H */
	size_t local_waiting;		/* healthy local endpoints left out of H because HAProxy's
					 * check has their server DOWN (see "Failover") */
	size_t local_need;		/* ceil(F * L) */
	bool failover;			/* remote endpoints serve */
	size_t nclamped;		/* endpoints whose weight was clamped to 0..256 */
};

/*
 * Plan the commands that bring the backend in step with the endpoints. Deterministic: the
 * same input gives the same plan. No command is produced for a slot already as planned, so
 * planning against the state read back after a pass yields no commands.
 *
 * @return 0 and *ret filled (release it with traffic_plan_release); -EINVAL on invalid input
 *         (a name empty, too long or with a byte outside [A-Za-z0-9._:-]; an address that is
 *         not numeric IPv4/IPv6; port 0; an unknown state; failover_permille > 1000; too many
 *         slots or endpoints; a slot named twice); -ENOMEM. *ret untouched on failure.
 */
int traffic_plan_build(const struct traffic_plan_input *in, struct traffic_plan *ret);
/* Free what traffic_plan_build allocated; NULL and a zeroed plan are fine. */
void traffic_plan_release(struct traffic_plan *p);

/*
 * "0.5", "0", "1", "50%", "0.125" into thousandths (rounded down past three decimals).
 * @return 0 and *ret_permille; -EINVAL for anything else or a share outside 0..1.
 */
int traffic_share_parse(const char *s, unsigned *ret_permille);

/* ---------------------------------------------------------------------------------------- */
/* The libuv driver                                                                          */

/*
 * The process must ignore SIGPIPE (agentd does): HAProxy may close the stats socket in the
 * middle of an answer, and a write to it would otherwise kill the process.
 *
 * socket       "/run/haproxy/admin.sock" or "unix:/path" (at most 107 bytes of path), or
 *              "tcp:127.0.0.1:9999", "127.0.0.1:9999", "[::1]:9999" (numeric only). The
 *              socket needs "level admin" for the set commands.
 * backend      the backend whose servers are slots
 * slot_prefix  NULL or "": every server of the backend is a slot; else only servers named
 *              prefix + digits (e.g. "s" for `server-template s 1-8`)
 * site, failover_permille   as in traffic_plan_input
 * timeout_ms   bound of every connect and of every answer (default 2000)
 * resync_ms    period of the resync pass (default 5000; 0 takes the default)
 * retry_ms     first retry after a failed pass, doubling up to resync_ms (default 500); also
 *              the period of the passes while a local endpoint waits for HAProxy's check
 */
struct traffic_lb_config {
	const char *socket;
	const char *backend;
	const char *slot_prefix;
	const char *site;
	unsigned failover_permille;
	uint32_t timeout_ms;
	uint32_t resync_ms;
	uint32_t retry_ms;
};

enum traffic_event_kind {
	TRAFFIC_EV_SYNCED = 1,		/* a pass ended with the backend as planned */
	TRAFFIC_EV_ERROR = 2,		/* a pass failed (socket, timeout, answer); retried */
	TRAFFIC_EV_COMMAND = 3,		/* HAProxy refused one command (the pass goes on) */
	TRAFFIC_EV_UNPLACED = 4,	/* endpoints not served (more than slots, or duplicates) */
	TRAFFIC_EV_FAILOVER = 5,	/* plan.failover changed (either way) */
};

/*
 * What the driver reports. Borrowed for the callback.
 *  err       negative errno (ERROR, COMMAND), 0 otherwise
 *  message   one line in English, e.g. "connect to /run/haproxy/admin.sock: permission
 *            denied", "haproxy refused 'set weight web/s9 10': No such server.",
 *            "2 endpoints not served: backend web has 4 slots (node-5 10.0.0.5:80, ...)",
 *            "failover: 1 of 4 local endpoints healthy in site 'a' (1 more healthy, their
 *            haproxy check not UP yet), 2 needed (F=0.500): remote endpoints serve"
 *  ncmds     commands sent in the pass (SYNCED)
 *  plan      the plan of the pass (SYNCED, UNPLACED, FAILOVER), else NULL; endpoint indices
 *            refer to the driver's copy of the endpoints, in the order given to
 *            traffic_lb_update
 */
struct traffic_event {
	enum traffic_event_kind kind;
	int err;
	const char *message;
	size_t ncmds;
	const struct traffic_plan *plan;
};
typedef void (*traffic_event_cb)(const struct traffic_event *ev, void *ud);

struct traffic_lb;

/*
 * Create a driver on @loop. It does nothing until the first traffic_lb_update (an empty
 * endpoint list is a valid update: every slot goes to maint).
 * @return 0 and *ret; -EINVAL (bad config: socket syntax, path too long, names), -ENOMEM,
 *         or a libuv error translated to errno. Strings in @cfg are copied.
 */
int traffic_lb_new(uv_loop_t *loop, const struct traffic_lb_config *cfg, traffic_event_cb cb,
		   void *ud, struct traffic_lb **ret);

/*
 * Replace the endpoints and run a pass (now, or right after the pass in flight: updates
 * coalesce). The endpoints are copied. @return 0; -EINVAL (as traffic_plan_build validates
 * endpoints); -ENOMEM; -ESHUTDOWN after traffic_lb_close.
 */
int traffic_lb_update(struct traffic_lb *lb, const struct traffic_endpoint *eps, size_t n);

/*
 * Ask HAProxy how many sessions the slot holding @addr:@port has now (scur of `show stat`):
 * a drain is done when it is 0. The query waits for the pass in flight, if any.
 *  cb(err, scur, slot, ud): err 0 and the sessions; -ENOENT (no slot of the backend holds
 *  that address: no sessions through this HAProxy), or the connection errors above. slot is
 *  the slot name or NULL, borrowed for the callback.
 * @return 0 (cb will be called exactly once, on the loop); -EINVAL; -ENOMEM; -ESHUTDOWN.
 *         When it returns an error, cb is never called.
 */
typedef void (*traffic_sessions_cb)(int err, uint32_t scur, const char *slot, void *ud);
int traffic_lb_sessions(struct traffic_lb *lb, const char *addr, uint16_t port,
			traffic_sessions_cb cb, void *ud);

/* Counters since traffic_lb_new. */
struct traffic_lb_stats {
	uint64_t passes;	/* passes that ended (ok or not) */
	uint64_t failed;	/* passes that failed */
	uint64_t commands;	/* commands sent */
	uint64_t refused;	/* commands HAProxy refused */
};
void traffic_lb_stats(const struct traffic_lb *lb, struct traffic_lb_stats *ret);

/*
 * Stop: cancel the pass in flight, close the connection and timers, and free @lb once every
 * handle is closed (a later loop turn); then call @close_cb(@ud) (may be NULL). Pending
 * traffic_lb_sessions callbacks get -ECANCELED before this function returns. No event is
 * reported after this call. NULL is fine. May be called from inside any callback of @lb
 * (event or sessions); so may traffic_lb_update and traffic_lb_sessions.
 */
void traffic_lb_close(struct traffic_lb *lb, void (*close_cb)(void *ud), void *ud);

#endif
