/*
 * agent/client/fleet_cmds.c: agentctl's commands of the replicated fleet state
 * (fleet/fleet.h "Control operations"): deploy, rollback, votes, services, events, history,
 * and the services part of status.
 *
 * Kept apart from agentctl.c so that the fleet's commands and the ops they call change
 * together; agentctl.c hands these commands over with fleet_cmds_main(). Requests go through
 * ctl/ctl_client.h, one per connection; `--wait` and `events --follow` poll the agent (the
 * agent never pushes, so a slow client can never hold it up).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "agent/base/sign.h"
#include "agent/client/fleet_cmds.h"
#include "agent/ctl/ctl_client.h"
#include "agent/ctl/ctl_proto.h"

/*
 * One request: each call (also each poll of --wait and --follow) bounded by 10 s, or by
 * --timeout when that is shorter. An answer "busy" means "not now, try again" (a node that has
 * not yet completed its first exchange with the cluster refuses changes, and a full control
 * socket refuses clients): the same request is sent again every 250 ms until --timeout, so a
 * deploy typed right after `systemctl start agentd` waits for the node instead of failing.
 */
static int bc_call(struct ctl_client *c, struct ctl_enc *e)
{
	uint64_t deadline = ctl_client_now_ms() + c->timeout_ms;
	bool told = false;

	for (;;) {
		uint64_t now = ctl_client_now_ms(), left = deadline > now ? deadline - now : 1;
		int x = ctl_client_call(c, e, left < 10000 ? left : 10000);
		if (x != EXIT_DONE || c->resp.ok || strcmp(c->resp.error, "busy") != 0 ||
		    ctl_client_now_ms() + 250 >= deadline)
			return x;
		if (!told && !c->json)
			fprintf(stderr, "agentctl: %s; trying again until --timeout\n",
				c->resp.message[0] ? c->resp.message : "the agent is busy");
		told = true;
		ctl_client_sleep_ms(250);
	}
}

/* After bc_call: EXIT_DONE if ok; prints the agent's error (JSON too) and EXIT_FAILED otherwise. */
static int bc_check(struct ctl_client *c, int x)
{
	if (x != EXIT_DONE)
		return x;
	if (c->resp.ok)
		return EXIT_DONE;
	if (c->json)
		printf("{\"ok\":false,\"error\":\"%s\"}\n", c->resp.error);
	ctl_client_errf("%s (%s)", c->resp.message[0] ? c->resp.message : "failed", c->resp.error);
	return EXIT_FAILED;
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
	return ctl_map_get(m, k);
}

static uint64_t u(const msgpack_object *m, const char *k)
{
	const msgpack_object *o = get(m, k);
	return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

static bool bo(const msgpack_object *m, const char *k)
{
	const msgpack_object *o = get(m, k);
	return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static const char *s(const msgpack_object *m, const char *k, char *buf, size_t cap)
{
	const msgpack_object *o = get(m, k);
	if (!o || o->type != MSGPACK_OBJECT_STR) {
		snprintf(buf, cap, "-");
		return buf;
	}
	size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)o->via.str.ptr[i];
		buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	buf[n] = 0;
	return buf;
}

static void print_json(struct ctl_client *c)
{
	ctl_json_write(stdout, c->resp.result, 2);
	fputc('\n', stdout);
}

static void fmt_wall(uint64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	size_t n = strftime(buf, cap, "%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03u", (unsigned)(ms % 1000));
}

static void fmt_date(uint64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

/* ---- Options --------------------------------------------------------------------------------- */

enum { O_SCOPE = 2000, O_REASON, O_WAIT, O_FORCE, O_TO, O_LOCAL, O_FOLLOW, O_SINCE, O_REV,
       O_JSON, O_TIMEOUT, O_SOCKET, O_OVERRIDE, O_KEY };

struct args {
	const char *scope, *reason, *key;
	bool wait, force, local, follow, override;
	uint64_t to, since, rev;
	char *pos[3];
	int npos;
};

static int parse(struct ctl_client *c, int argc, char **argv, const char *what, int maxpos,
		 struct args *a)
{
	static const struct option opts[] = {
		{"scope", required_argument, NULL, O_SCOPE},
		{"reason", required_argument, NULL, O_REASON},
		{"wait", no_argument, NULL, O_WAIT},
		{"force", no_argument, NULL, O_FORCE},
		{"to", required_argument, NULL, O_TO},
		{"local", no_argument, NULL, O_LOCAL},
		{"override", no_argument, NULL, O_OVERRIDE},
		{"follow", no_argument, NULL, O_FOLLOW},
		{"since", required_argument, NULL, O_SINCE},
		{"rev", required_argument, NULL, O_REV},
		{"json", no_argument, NULL, O_JSON},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"socket", required_argument, NULL, O_SOCKET},
		{"key", required_argument, NULL, O_KEY},
		{NULL, 0, NULL, 0},
	};
	int o;
	char *end;
	memset(a, 0, sizeof *a);
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":fs:", opts, NULL)) != -1) {
		switch (o) {
		case O_SCOPE: a->scope = optarg; break;
		case O_REASON: a->reason = optarg; break;
		case O_WAIT: a->wait = true; break;
		case 'f':
		case O_FOLLOW: a->follow = true; break;
		case O_FORCE: a->force = true; break;
		case O_LOCAL: a->local = true; break;
		case O_OVERRIDE: a->override = true; break;
		case O_KEY: a->key = optarg; break;
		case O_JSON: c->json = true; break;
		case 's':
		case O_SOCKET: c->socket = optarg; break;
		case O_TIMEOUT:
			if (ctl_parse_duration_ms(optarg, &c->timeout_ms) < 0 || !c->timeout_ms) {
				ctl_client_errf("%s: invalid --timeout '%s'", what, optarg);
				return -1;
			}
			break;
		case O_TO:
		case O_SINCE:
		case O_REV: {
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] < '0' || optarg[0] > '9') {
				ctl_client_errf("%s: '%s' is not a number", what, optarg);
				return -1;
			}
			*(o == O_TO ? &a->to : o == O_SINCE ? &a->since : &a->rev) = v;
			break;
		}
		case ':':
			ctl_client_errf("%s: option '%s' needs a value", what, argv[optind - 1]);
			return -1;
		default:
			ctl_client_errf("%s: unknown option '%s'", what, argv[optind - 1]);
			return -1;
		}
	}
	a->npos = argc - optind;
	if (a->npos > maxpos) {
		ctl_client_errf("%s: unexpected argument '%s'", what, argv[optind + maxpos]);
		return -1;
	}
	for (int i = 0; i < a->npos; i++)
		a->pos[i] = argv[optind + i];
	return 0;
}

/* ---- Commands -------------------------------------------------------------------------------- */

static int services_of(struct ctl_client *c, const char *service, const msgpack_object **ret)
{
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "services", false);
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	if (x)
		return x;
	const msgpack_object *r = c->resp.result;
	*ret = NULL;
	if (r->type == MSGPACK_OBJECT_ARRAY)
		for (uint32_t i = 0; i < r->via.array.size; i++) {
			const msgpack_object *o = get(&r->via.array.ptr[i], "service");
			if (o && ctl_obj_streq(o, service))
				*ret = &r->via.array.ptr[i];
		}
	return EXIT_DONE;
}

/*
 * Start the request of deploy or rollback (@op) in @e (initialised here): a map of "service"
 * (a->pos[0]), "artifact" when @artifact is not NULL, "scope" and "reason" when given, then
 * room for @more entries the caller appends.
 */
static void enc_change(struct ctl_enc *e, const char *op, const struct args *a,
		       const char *artifact, uint32_t more)
{
	ctl_enc_init(e);
	ctl_enc_request(e, op, true);
	ctl_enc_map(e, 1 + (artifact != NULL) + (a->scope != NULL) + (a->reason != NULL) + more);
	ctl_kv_str(e, "service", a->pos[0]);
	if (artifact)
		ctl_kv_str(e, "artifact", artifact);
	if (a->scope)
		ctl_kv_str(e, "scope", a->scope);
	if (a->reason)
		ctl_kv_str(e, "reason", a->reason);
}

/* How to get a usable operator key, in every error about one. */
#define HOW_TO_KEY                                                                           \
	"make one with `agentctl keygen FILE`, copy FILE.pub to /etc/shoal/operators/ on "    \
	"every node and run `systemctl reload agentd` there"

int fleet_cmds_op_key(const char *flag, const char *what, struct sign_key *ret)
{
	const char *path = flag ? flag : getenv("SHOAL_OPERATOR_KEY");
	if (!path || !*path) {
		ctl_client_errf("%s is signed with an operator key: give it with --key FILE or "
				"SHOAL_OPERATOR_KEY=FILE; to " HOW_TO_KEY, what);
		return -1;
	}
	int r = sign_operator_key_load(path, ret);
	if (r < 0) {
		ctl_client_errf("operator key %s: %s%s", path, sign_strerror(r),
				r == -ENOENT || r == -SIGN_EFORMAT ? "; to " HOW_TO_KEY : "");
		return -1;
	}
	return 0;
}

/* The operator key of a change (fleet_cmds.h). */
static int op_key(const struct args *a, const char *what, struct sign_key *ret)
{
	return fleet_cmds_op_key(a->key, what, ret);
}

/* "cluster" and no scope are the same: "" (as the agent reads it) */
static const char *scope_norm(const char *s)
{
	return s && strcmp(s, "cluster") != 0 ? s : "";
}

static bool full_id(const char *id)
{
	return strlen(id) == 64 && strspn(id, "0123456789abcdef") == 64;
}

/*
 * The deploy request, signed: the statement names the artifact's full id (so its content),
 * resolved from a prefix through the agent's store first.
 */
static int deploy_call(struct ctl_client *c, const struct args *a, const struct sign_key *k)
{
	struct ctl_enc e;
	char full[65], hex[SIGN_OP_HEX_LEN + 1];
	uint8_t art[32];
	struct sign_op op;

	const char *id = a->pos[1];
	if (!full_id(id)) {
		ctl_enc_init(&e);
		ctl_enc_request(&e, "artifact.show", false);
		ctl_enc_map(&e, 1);
		ctl_kv_str(&e, "id", a->pos[1]);
		int x = bc_call(c, &e);
		ctl_enc_release(&e);
		if (x != EXIT_DONE || !c->resp.ok)
			goto send;	/* the deploy itself says what is wrong with the id */
		char got[80];
		if (full_id(s(c->resp.result, "id", got, sizeof got))) {
			memcpy(full, got, sizeof full);
			id = full;
		}
	}
send:
	memset(&op, 0, sizeof op);
	op.kind = SIGN_OP_DEPLOY;
	snprintf(op.scope, sizeof op.scope, "%s", scope_norm(a->scope));
	if (full_id(id) && sodium_hex2bin(art, sizeof art, id, 64, NULL, NULL, NULL) == 0)
		sign_op_sign(k, a->pos[0], art, &op);
	sign_op_hex(&op, hex);
	enc_change(&e, "deploy", a, id, a->force + 1);
	if (a->force)
		ctl_kv_bool(&e, "force", true);
	ctl_kv_str(&e, "opsig", hex);
	int x = bc_call(c, &e);
	ctl_enc_release(&e);
	return x;
}

static int cmd_deploy(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	if (parse(c, argc, argv, "deploy", 2, &a) < 0)
		return EXIT_USAGE;
	if (a.npos != 2) {
		ctl_client_errf("deploy: SERVICE and ARTIFACT are required");
		return EXIT_USAGE;
	}
	struct sign_key k;
	if (op_key(&a, "a deploy", &k) < 0)
		return EXIT_FAILED;
	int x = deploy_call(c, &a, &k);
	if (x == EXIT_DONE && !c->resp.ok && strcmp(c->resp.error, "not_found") == 0 &&
	    full_id(a.pos[1])) {
		/* The node lacks the artifact; a full id names it without doubt: fetch it from the
		 * peers that hold it, then deploy (a prefix could match another artifact). */
		if (!c->json)
			fprintf(stderr, "%s: artifact %.12s is not on this node; fetching it from "
				"peers\n", a.pos[0], a.pos[1]);
		x = ctl_client_fetch(c, a.pos[1], NULL, 0);
		if (x == EXIT_DONE && ctl_client_fetching(c)) {
			ctl_client_errf("artifact %.12s: still fetching after %" PRIu64 " ms", a.pos[1],
				 c->timeout_ms);
			return EXIT_TIMEOUT;
		}
		if (x == EXIT_DONE && c->resp.ok)
			x = deploy_call(c, &a, &k);
	}
	x = bc_check(c, x);
	if (x)
		return x;
	uint64_t rev = u(c->resp.result, "rev");
	if (c->json) {
		print_json(c);
	} else {
		char ver[80];
		printf("%s: rev %" PRIu64 " deploys %s (version %s)\n", a.pos[0], rev, a.pos[1],
		       s(c->resp.result, "version", ver, sizeof ver));
	}
	if (!a.wait)
		return EXIT_DONE;
	uint64_t deadline = ctl_client_now_ms() + c->timeout_ms;
	while (ctl_client_now_ms() < deadline) {
		const msgpack_object *sv;
		x = services_of(c, a.pos[0], &sv);
		if (x)
			return x;
		if (sv && u(sv, "running_rev") == rev && !bo(sv, "swapping")) {
			if (!c->json)
				printf("%s: this node runs rev %" PRIu64 "\n", a.pos[0], rev);
			return EXIT_DONE;
		}
		if (sv && u(sv, "desired_rev") > rev) {
			ctl_client_errf("%s: rev %" PRIu64 " was superseded by rev %" PRIu64, a.pos[0],
			         rev, u(sv, "desired_rev"));
			return EXIT_FAILED;
		}
		ctl_client_sleep_ms(100);
	}
	ctl_client_errf("%s: rev %" PRIu64 " not running here after %" PRIu64 " ms", a.pos[0], rev,
	         c->timeout_ms);
	return EXIT_TIMEOUT;
}

static int votes_call(struct ctl_client *c, const char *service, uint64_t rev)
{
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "votes", true);
	ctl_enc_map(&e, rev ? 2 : 1);
	ctl_enc_str(&e, "service");
	ctl_enc_str(&e, service);
	if (rev) {
		ctl_enc_str(&e, "rev");
		ctl_enc_uint(&e, rev);
	}
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	return x;
}

static int cmd_rollback(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct ctl_enc e;
	if (parse(c, argc, argv, "rollback", 1, &a) < 0)
		return EXIT_USAGE;
	if (a.npos != 1) {
		ctl_client_errf("rollback: SERVICE is required");
		return EXIT_USAGE;
	}
	/* a cluster rollback (a vote the others echo, or an override) is the operator's signed
	 * statement; --local is the node-local emergency exit and needs none */
	struct sign_op op;
	char hex[SIGN_OP_HEX_LEN + 1];
	if (!a.local) {
		struct sign_key k;
		if (op_key(&a, "a rollback", &k) < 0)
			return EXIT_FAILED;
		memset(&op, 0, sizeof op);
		op.kind = SIGN_OP_ROLLBACK;
		snprintf(op.scope, sizeof op.scope, "%s", scope_norm(a.scope));
		op.target = a.to;
		sign_op_sign(&k, a.pos[0], NULL, &op);
		sign_op_hex(&op, hex);
	}
	enc_change(&e, "rollback", &a, NULL, (a.to != 0) + a.local + a.override + !a.local);
	if (!a.local)
		ctl_kv_str(&e, "opsig", hex);
	if (a.to)
		ctl_kv_uint(&e, "to", a.to);
	if (a.local)
		ctl_kv_bool(&e, "local", true);
	if (a.override)
		ctl_kv_bool(&e, "override", true);
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	if (x)
		return x;
	uint64_t bad = u(c->resp.result, "rev");
	if (c->json)
		print_json(c);
	else if (a.local)
		printf("%s: this node diverges from rev %" PRIu64 " (local rollback)\n", a.pos[0],
		       bad);
	else if (a.override)
		printf("%s: override: rev %" PRIu64 " deploys rev %" PRIu64 "'s artifact instead of "
		       "rev %" PRIu64 " (no quorum; recorded with your uid)\n", a.pos[0],
		       u(c->resp.result, "override_rev"), u(c->resp.result, "to"), bad);
	if (a.override)
		return EXIT_DONE;
	else
		printf("%s: voted to roll back rev %" PRIu64 "\n", a.pos[0], bad);
	if (!a.wait)
		return EXIT_DONE;
	uint64_t deadline = ctl_client_now_ms() + c->timeout_ms;
	for (;;) {
		if (a.local) {
			const msgpack_object *sv;
			x = services_of(c, a.pos[0], &sv);
			if (x)
				return x;
			if (sv && u(sv, "running_rev") == u(sv, "desired_rev") &&
			    !bo(sv, "swapping")) {
				if (!c->json)
					printf("%s: this node runs rev %" PRIu64 "\n", a.pos[0],
					       u(sv, "running_rev"));
				return EXIT_DONE;
			}
		} else {
			x = votes_call(c, a.pos[0], bad);
			if (x)
				return x;
			const msgpack_object *r = c->resp.result;
			if (bo(r, "swapped")) {
				if (!c->json)
					printf("%s: rolled back: this node runs rev %" PRIu64 "\n",
					       a.pos[0], u(r, "running_rev"));
				return EXIT_DONE;
			}
			if (ctl_client_now_ms() >= deadline) {
				printf("%s: no rollback yet: %" PRIu64 " of %" PRIu64
				       ", quorum %" PRIu64 "\n",
				       a.pos[0], u(r, "counted"), u(r, "eligible"), u(r, "quorum"));
				return EXIT_TIMEOUT;
			}
		}
		if (ctl_client_now_ms() >= deadline) {
			ctl_client_errf("%s: not swapped after %" PRIu64 " ms", a.pos[0], c->timeout_ms);
			return EXIT_TIMEOUT;
		}
		ctl_client_sleep_ms(100);
	}
}

static int cmd_votes(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	if (parse(c, argc, argv, "votes", 1, &a) < 0)
		return EXIT_USAGE;
	if (a.npos != 1) {
		ctl_client_errf("votes: SERVICE is required");
		return EXIT_USAGE;
	}
	int x = votes_call(c, a.pos[0], a.rev);
	if (x)
		return x;
	const msgpack_object *r = c->resp.result;
	if (c->json) {
		print_json(c);
		return EXIT_DONE;
	}
	printf("%s rev %" PRIu64 ": %" PRIu64 " of %" PRIu64 ", quorum %" PRIu64 "%s\n", a.pos[0],
	       u(r, "rev"), u(r, "counted"), u(r, "eligible"), u(r, "quorum"),
	       bo(r, "decided") ? " (decided: rolled back)" : "");
	const msgpack_object *vs = get(r, "votes");
	if (vs && vs->type == MSGPACK_OBJECT_ARRAY && vs->via.array.size) {
		printf("%-20s %-9s %-8s %-7s %s\n", "VOTER", "REASON", "TARGET", "COUNTED", "WHEN");
		for (uint32_t i = 0; i < vs->via.array.size; i++) {
			const msgpack_object *v = &vs->via.array.ptr[i];
			char name[80], reason[16], when[32], tgt[24];
			uint64_t t = u(v, "target");
			snprintf(tgt, sizeof tgt, t ? "%" PRIu64 : "previous", t);
			fmt_date(u(v, "hlc") >> 16, when, sizeof when);
			printf("%-20s %-9s %-8s %-7s %s\n", s(v, "name", name, sizeof name),
			       s(v, "reason", reason, sizeof reason), tgt,
			       bo(v, "counted") ? "yes" : "no", when);
		}
	}
	return EXIT_DONE;
}

static void print_services(const msgpack_object *r)
{
	printf("%-16s %-8s %-8s %-8s %-10s %s\n", "SERVICE", "DESIRED", "RUNNING", "LATEST",
	       "HEALTH", "HEALTHY NODES");
	for (uint32_t i = 0; r->type == MSGPACK_OBJECT_ARRAY && i < r->via.array.size; i++) {
		const msgpack_object *v = &r->via.array.ptr[i];
		char name[80], h[32], hn[32] = "-";
		const msgpack_object *nh = get(v, "nodes_healthy");
		if (nh && nh->type == MSGPACK_OBJECT_ARRAY && nh->via.array.size == 2)
			snprintf(hn, sizeof hn, "%" PRIu64 "/%" PRIu64, nh->via.array.ptr[0].via.u64,
				 nh->via.array.ptr[1].via.u64);
		printf("%-16s %-8" PRIu64 " %-8" PRIu64 " %-8" PRIu64 " %-10s %s%s%s\n",
		       s(v, "service", name, sizeof name), u(v, "desired_rev"), u(v, "running_rev"),
		       u(v, "latest_rev"), s(v, "health", h, sizeof h), hn,
		       bo(v, "swapping") ? " (swapping)" : "", bo(v, "diverged") ? " (diverged)" : "");
		char err[400];
		if (s(v, "error", err, sizeof err)[0])
			printf("%-16s last attempt failed: %s\n", "", err);
	}
}

static int cmd_services(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct ctl_enc e;
	if (parse(c, argc, argv, "services", 0, &a) < 0)
		return EXIT_USAGE;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "services", false);
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	if (x)
		return x;
	if (c->json)
		print_json(c);
	else
		print_services(c->resp.result);
	return EXIT_DONE;
}

static int cmd_endpoints(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct ctl_enc e;
	if (parse(c, argc, argv, "endpoints", 1, &a) < 0)
		return EXIT_USAGE;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "endpoints", true);
	if (a.npos) {
		ctl_enc_map(&e, 1);
		ctl_kv_str(&e, "service", a.pos[0]);
	} else {
		ctl_enc_map(&e, 0);
	}
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	if (x)
		return x;
	if (c->json) {
		print_json(c);
		return EXIT_DONE;
	}
	const msgpack_object *r = c->resp.result;
	printf("%-16s %-16s %-10s %-22s %-6s %-10s %s\n", "SERVICE", "NODE", "SITE", "ADDRESS",
	       "WEIGHT", "STATE", "REV");
	for (uint32_t i = 0; r && r->type == MSGPACK_OBJECT_ARRAY && i < r->via.array.size; i++) {
		const msgpack_object *v = &r->via.array.ptr[i];
		char sv[80], nd[80], st[80], ad[64], hp[80], state[32];
		s(v, "address", ad, sizeof ad);
		snprintf(hp, sizeof hp, strchr(ad, ':') ? "[%s]:%" PRIu64 : "%s:%" PRIu64, ad,
			 u(v, "port"));
		s(v, "site", st, sizeof st);
		printf("%-16s %-16s %-10s %-22s %-6" PRIu64 " %-10s %" PRIu64 "%s\n",
		       s(v, "service", sv, sizeof sv), s(v, "node", nd, sizeof nd),
		       st[0] ? st : "-", hp, u(v, "weight"), s(v, "state", state, sizeof state),
		       u(v, "rev"), bo(v, "down") ? " (node down)" : "");
	}
	return EXIT_DONE;
}

static int cmd_events(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	if (parse(c, argc, argv, "events", 0, &a) < 0)
		return EXIT_USAGE;
	uint64_t since = a.since;
	for (;;) {
		struct ctl_enc e;
		ctl_enc_init(&e);
		ctl_enc_request(&e, "events", true);
		ctl_enc_map(&e, 1);
		ctl_enc_str(&e, "since");
		ctl_enc_uint(&e, since);
		int x = bc_check(c, bc_call(c, &e));
		ctl_enc_release(&e);
		if (x)
			return x;
		const msgpack_object *r = c->resp.result;
		const msgpack_object *evs = get(r, "events");
		uint64_t dropped = u(r, "dropped");
		if (dropped && !c->json)
			printf("-- %" PRIu64 " event(s) dropped: this client was too slow --\n",
			       dropped);
		uint32_t n = evs && evs->type == MSGPACK_OBJECT_ARRAY ? evs->via.array.size : 0;
		for (uint32_t i = 0; i < n; i++) {
			const msgpack_object *v = &evs->via.array.ptr[i];
			if (c->json) {
				ctl_json_write(stdout, v, 0);
				fputc('\n', stdout);
				continue;
			}
			char when[32], node[80], kind[32], svc[80], text[256];
			fmt_wall(u(v, "time_ms"), when, sizeof when);
			printf("%s %-8s %-14s %-8s %s\n", when, s(v, "node", node, sizeof node),
			       s(v, "kind", kind, sizeof kind), s(v, "service", svc, sizeof svc),
			       s(v, "text", text, sizeof text));
		}
		fflush(stdout);
		since = u(r, "next") > since ? u(r, "next") : since;
		if (!a.follow)
			return EXIT_DONE;
		if (n < 512)
			ctl_client_sleep_ms(200);
	}
}

static int cmd_history(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct ctl_enc e;
	if (parse(c, argc, argv, "history", 1, &a) < 0 || a.npos != 1) {
		if (a.npos != 1)
			ctl_client_errf("history: SERVICE is required");
		return EXIT_USAGE;
	}
	ctl_enc_init(&e);
	ctl_enc_request(&e, "brain.history", true);
	ctl_enc_map(&e, 1);
	ctl_enc_str(&e, "service");
	ctl_enc_str(&e, a.pos[0]);
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	if (x)
		return x;
	const msgpack_object *r = c->resp.result;
	if (c->json) {
		print_json(c);
		return EXIT_DONE;
	}
	if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size == 0) {
		fprintf(stderr, "no revisions of %s yet\n", a.pos[0]);
		return EXIT_DONE;
	}
	/* WHEN is the revision's own time: a rollback carries the bad revision's (its hlc is
	 * that + 1, by design of the record); LEARNED is when this node learned of a rollback
	 * decision ("unknown" if it learned before agents recorded it). */
	printf("%-4s %-13s %-9s %-8s %-19s %-19s %-14s %-10s %s\n", "REV", "ARTIFACT", "VERSION",
	       "KIND", "WHEN", "LEARNED", "WHO", "STATE", "WHY");
	for (uint32_t i = 0; i < r->via.array.size; i++) {
		const msgpack_object *v = &r->via.array.ptr[i];
		char art[80], ver[40], kind[16], when[32], who[128], why[300];
		s(v, "artifact", art, sizeof art);
		art[12 < strlen(art) ? 12 : strlen(art)] = 0;
		fmt_date(u(v, "hlc") >> 16, when, sizeof when);
		const msgpack_object *op = get(v, "operator");
		if (op && op->type == MSGPACK_OBJECT_MAP) {
			char nm[80];
			snprintf(who, sizeof who, "uid %" PRIu64 "@%s", u(op, "uid"),
				 s(v, "origin_name", nm, sizeof nm));
		} else {
			char nm[80];
			snprintf(who, sizeof who, "%s", s(v, "origin_name", nm, sizeof nm));
		}
		const char *state = bo(v, "condemned") ? "condemned" : bo(v, "good") ? "good" : "";
		char cert[32] = "";
		if (u(v, "certificate"))
			snprintf(cert, sizeof cert, " [%" PRIu64 " votes]", u(v, "certificate"));
		char learned[32] = "-";
		if (strcmp(s(v, "kind", kind, sizeof kind), "rollback") == 0) {
			if (u(v, "learned_ms"))
				fmt_date(u(v, "learned_ms"), learned, sizeof learned);
			else
				snprintf(learned, sizeof learned, "unknown");
		}
		printf("%-4" PRIu64 " %-13s %-9s %-8s %-19s %-19s %-14s %-10s %s%s\n", u(v, "rev"),
		       art, s(v, "version", ver, sizeof ver), kind, when, learned, who,
		       state, s(v, "reason", why, sizeof why), cert);
	}
	return EXIT_DONE;
}

int fleet_cmds_status(const char *socket, bool json, uint64_t timeout_ms)
{
	struct ctl_client c;
	ctl_client_init(&c, socket, json, timeout_ms);
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "brain.status", false);
	int x = bc_check(&c, bc_call(&c, &e));
	ctl_enc_release(&e);
	if (x)
		goto out;
	const msgpack_object *r = c.resp.result, *cl = get(r, "cluster"), *nd = get(r, "node");
	char site[80];
	printf("Site:       %s\n", nd ? s(nd, "site", site, sizeof site) : "-");
	if (cl)
		printf("Voters:     %" PRIu64 " members: %" PRIu64 " alive, %" PRIu64
		       " suspect, %" PRIu64 " failed, %" PRIu64 " left\n",
		       u(cl, "members"), u(cl, "alive"), u(cl, "suspect"), u(cl, "failed"),
		       u(cl, "left"));
	const msgpack_object *sv = get(r, "services");
	printf("\n");
	if (sv)
		print_services(sv);
	for (uint32_t i = 0; sv && sv->type == MSGPACK_OBJECT_ARRAY && i < sv->via.array.size;
	     i++) {
		const msgpack_object *v = &sv->via.array.ptr[i], *nodes = get(v, "nodes");
		char name[80];
		if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY)
			continue;
		printf("\n%s per node:\n  %-16s %-8s %-8s %s\n", s(v, "service", name, sizeof name),
		       "NODE", "DESIRED", "RUNNING", "HEALTH");
		for (uint32_t j = 0; j < nodes->via.array.size; j++) {
			const msgpack_object *n = &nodes->via.array.ptr[j];
			char nn[80], h[32];
			printf("  %-16s %-8" PRIu64 " %-8" PRIu64 " %s%s%s\n",
			       s(n, "node", nn, sizeof nn), u(n, "desired_rev"), u(n, "running_rev"),
			       s(n, "health", h, sizeof h), bo(n, "swapping") ? " (swapping)" : "",
			       bo(n, "diverged") ? " (diverged)" : "");
		}
	}
out:
	ctl_client_release(&c);
	return x;
}

/* ---- Node keys: enrol, rotate-key (agent/base/sign.h) ---------------------------------------- */

/* A string field of the response as bytes: 0; -1 after saying what is wrong. */
static int hex_field(const msgpack_object *m, const char *k, uint8_t *out, size_t n)
{
	char buf[130];
	s(m, k, buf, sizeof buf);
	if (strlen(buf) != 2 * n || sodium_hex2bin(out, n, buf, 2 * n, NULL, NULL, NULL) != 0) {
		ctl_client_errf("the agent's answer has no valid \"%s\"", k);
		return -1;
	}
	return 0;
}

/* Ask the agent @op with the enrolment @en (NULL: none) and @prepare; bc_check'd. */
static int node_call(struct ctl_client *c, const char *op, const struct sign_op *en, bool prepare)
{
	struct ctl_enc e;
	char hex[SIGN_OP_HEX_LEN + 1];
	ctl_enc_init(&e);
	ctl_enc_request(&e, op, en || prepare);
	if (en || prepare) {
		ctl_enc_map(&e, (en != NULL) + prepare);
		if (en) {
			sign_op_hex(en, hex);
			ctl_kv_str(&e, "enrolment", hex);
		}
		if (prepare)
			ctl_kv_bool(&e, "prepare", true);
	}
	int x = bc_check(c, bc_call(c, &e));
	ctl_enc_release(&e);
	return x;
}

/* enrol [--key FILE]: on the node itself, the operator signs the node's id and key (asked of
 * its agent) and hands the enrolment to the agent, which keeps and publishes it. */
static int cmd_enrol(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct sign_key k;
	struct sign_op en;
	uint8_t id[16], pk[SIGN_PUBLIC_LEN];
	char name[80], hex[80];
	if (parse(c, argc, argv, "enrol", 0, &a) < 0)
		return EXIT_USAGE;
	if (op_key(&a, "an enrolment", &k) < 0)
		return EXIT_FAILED;
	int x = node_call(c, "node.identity", NULL, false);
	if (x)
		goto out;
	s(c->resp.result, "name", name, sizeof name);
	if (hex_field(c->resp.result, "id", id, sizeof id) < 0 ||
	    hex_field(c->resp.result, "key", pk, sizeof pk) < 0) {
		x = EXIT_FAILED;
		goto out;
	}
	sign_enrol_sign(&k, id, sizeof id, pk, &en);
	x = node_call(c, "node.enrol", &en, false);
	if (x)
		goto out;
	if (c->json) {
		print_json(c);
	} else {
		sodium_bin2hex(hex, sizeof hex, pk, 8);
		printf("node %s (%s) enrolled: key %s... signed by operator key %02x%02x%02x%02x...\n",
		       name, s(c->resp.result, "id", name, sizeof name), hex, k.pk[0], k.pk[1],
		       k.pk[2], k.pk[3]);
	}
out:
	sodium_memzero(&k, sizeof k);
	return x;
}

/* rotate-key [--key FILE]: the agent prepares a new key; if the node is enrolled or requires
 * enrolment (or --key is given), the operator enrols the new key; then the agent switches to
 * it, announcing it signed by the old key. */
static int cmd_rotate(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	struct sign_key k;
	struct sign_op en;
	uint8_t id[16], pk[SIGN_PUBLIC_LEN];
	char hex[80], prev[80];
	bool enrol;
	memset(&k, 0, sizeof k);
	if (parse(c, argc, argv, "rotate-key", 0, &a) < 0)
		return EXIT_USAGE;
	int x = node_call(c, "node.rotate-key", NULL, true);
	if (x)
		return x;
	enrol = a.key || bo(c->resp.result, "needs_enrolment");
	if (enrol) {
		if (hex_field(c->resp.result, "id", id, sizeof id) < 0 ||
		    hex_field(c->resp.result, "next_key", pk, sizeof pk) < 0)
			return EXIT_FAILED;
		if (op_key(&a, "the enrolment of this node's new key (it is enrolled, or requires "
			   "enrolment)", &k) < 0)
			return EXIT_FAILED;
		sign_enrol_sign(&k, id, sizeof id, pk, &en);
	}
	x = node_call(c, "node.rotate-key", enrol ? &en : NULL, false);
	sodium_memzero(&k, sizeof k);
	if (x)
		return x;
	if (c->json) {
		print_json(c);
	} else {
		s(c->resp.result, "key", hex, sizeof hex);
		s(c->resp.result, "previous", prev, sizeof prev);
		printf("new node key %.16s... (former %.16s..., kept to vote on earlier revisions)%s\n",
		       hex, prev, bo(c->resp.result, "enrolled") ? "; enrolled" : "");
	}
	return EXIT_DONE;
}

/* identity: this node's id, key and how it is trusted */
static int cmd_identity(struct ctl_client *c, int argc, char **argv)
{
	struct args a;
	char b[6][130];
	if (parse(c, argc, argv, "identity", 0, &a) < 0)
		return EXIT_USAGE;
	int x = node_call(c, "node.identity", NULL, false);
	if (x)
		return x;
	if (c->json) {
		print_json(c);
		return EXIT_DONE;
	}
	const msgpack_object *r = c->resp.result;
	printf("Node:        %s (%s)\n", s(r, "name", b[0], sizeof b[0]), s(r, "id", b[1], sizeof b[1]));
	printf("Key:         %s\n", s(r, "key", b[2], sizeof b[2]));
	printf("Trust:       %s%s\n", s(r, "trust", b[3], sizeof b[3]),
	       bo(r, "require_enrolment") ? " (this node requires enrolment)" : "");
	printf("Enrolled by: %s\n", bo(r, "enrolled") ? s(r, "enrolled_by", b[4], sizeof b[4])
						       : "- (not enrolled)");
	printf("Rotated from: %s (%" PRIu64 " former key(s) kept)\n",
	       s(r, "rotated_from", b[5], sizeof b[5]), u(r, "former_keys"));
	return EXIT_DONE;
}

/* keygen [FILE]: an operator key pair (agent/base/sign.h); no agent needed. */
static int cmd_keygen(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "operator.key";
	if (argc > 2) {
		ctl_client_errf("keygen: unexpected argument '%s'", argv[2]);
		return EXIT_USAGE;
	}
	int r = sign_operator_keygen(path, NULL);
	if (r < 0) {
		ctl_client_errf("keygen %s: %s", path,
				r == -EEXIST ? "the file (or its .pub) exists already" : strerror(-r));
		return EXIT_FAILED;
	}
	printf("operator key written to %s (secret, mode 0600) and %s.pub (public)\n"
	       "trust it: copy %s.pub to /etc/shoal/operators/ on every node and run "
	       "`systemctl reload agentd` there\n"
	       "use it: agentctl deploy|rollback ... --key %s (or SHOAL_OPERATOR_KEY=%s)\n",
	       path, path, path, path, path);
	return EXIT_DONE;
}

int fleet_cmds_main(const char *socket, bool json, uint64_t timeout_ms, const char *cmd, int argc,
		   char **argv)
{
	struct ctl_client c;
	ctl_client_init(&c, socket, json, timeout_ms);
	int x;
	if (strcmp(cmd, "keygen") == 0)
		x = cmd_keygen(argc, argv);
	else if (strcmp(cmd, "deploy") == 0)
		x = cmd_deploy(&c, argc, argv);
	else if (strcmp(cmd, "rollback") == 0)
		x = cmd_rollback(&c, argc, argv);
	else if (strcmp(cmd, "votes") == 0)
		x = cmd_votes(&c, argc, argv);
	else if (strcmp(cmd, "services") == 0)
		x = cmd_services(&c, argc, argv);
	else if (strcmp(cmd, "events") == 0)
		x = cmd_events(&c, argc, argv);
	else if (strcmp(cmd, "history") == 0)
		x = cmd_history(&c, argc, argv);
	else if (strcmp(cmd, "endpoints") == 0)
		x = cmd_endpoints(&c, argc, argv);
	else if (strcmp(cmd, "identity") == 0)
		x = cmd_identity(&c, argc, argv);
	else if (strcmp(cmd, "enrol") == 0)
		x = cmd_enrol(&c, argc, argv);
	else if (strcmp(cmd, "rotate-key") == 0)
		x = cmd_rotate(&c, argc, argv);
	else
		return -1;
	fflush(stdout);
	ctl_client_release(&c);
	return x;
}
