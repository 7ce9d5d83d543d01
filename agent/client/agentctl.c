/*
 * agent/client/agentctl.c: the operator's command-line client of the local agent.
 *
 * Plain blocking code around one unix socket with poll() deadlines: one request, one response.
 * Tables for people, --json for scripts. Exit status (DESIGN.md): 0 done, 1 failed, 2 usage,
 * 3 timed out, 4 agent unreachable.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/base/sign.h"
#include "agent/client/fleet_cmds.h"
#include "agent/config/config.h"
#include "agent/ctl/ctl_client.h"
#include "agent/ctl/ctl_proto.h"

#define DEFAULT_TIMEOUT_MS 60000

static const char usage_text[] =
	"usage: agentctl [-s|--socket PATH] [--json] [--timeout DURATION] COMMAND [ARGS]\n"
	"Talk to the local Shoal agent (agentd).\n"
	"\n"
	"Commands:\n"
	"  status                         this node: id, name, version, uptime, store, gossip\n"
	"  artifact import DIR            import a directory (with release.ini); prints the id\n"
	"  artifact import --git REPO --ref REF [--path SUBDIR]\n"
	"                                 import the tree of a git ref; prints the id\n"
	"  artifact list [SERVICE]        artifacts held by this node, oldest first\n"
	"  artifact show ID               one artifact (full id or a unique prefix of 4+ digits)\n"
	"  artifact fetch ID [--from IP:PORT]...  fetch an artifact from peers (default: every\n"
	"                                 live member) and wait for it (up to --timeout)\n"
	"  history SERVICE                revisions of a service, newest first\n"
	"  ping                           check that the agent answers\n"
	"  members                        the cluster: name, address, state, incarnation,\n"
	"                                 round-trip time, trust of its key (enrolled, first\n"
	"                                 join, not enrolled: refused), labels\n"
	"  join ADDR:PORT...              contact these members (numeric; port default 7946)\n"
	"  members remove NODE --reason TEXT [--key FILE]  take a node off the roster for good\n"
	"                                 (recorded), signed with the operator key (--key, else\n"
	"                                 $SHOAL_OPERATOR_KEY)\n"
	"  leave                          leave the cluster and the roster (a decommission);\n"
	"                                 the agent then exits\n"
	"  keyring list                   installed cluster keys (ids), primary first\n"
	"  keyring install KEYFILE        add the key in KEYFILE (base64 of 32 bytes)\n"
	"  keyring use KEYID              seal with this key from now on\n"
	"  keyring remove KEYID           remove a key (not the primary)\n"
	"\n"
	"  keygen [FILE]                  make an operator key pair: FILE (default operator.key,\n"
	"                                 secret) and FILE.pub (copy it to the operators\n"
	"                                 directory of every node, /etc/shoal/operators/)\n"
	"  deploy SERVICE ARTIFACT [--scope site:NAME] [--reason TEXT] [--wait] [--force]\n"
	"         [--key FILE]            create the next revision (cluster-wide), signed with\n"
	"                                 the operator key (--key, else $SHOAL_OPERATOR_KEY);\n"
	"                                 --force deploys a condemned artifact; a full id this\n"
	"                                 node lacks is fetched from peers first\n"
	"  rollback SERVICE [--to REV] [--scope site:NAME] [--reason TEXT] [--wait] [--local]\n"
	"         [--override] [--key FILE]  vote to roll back, signed with the operator key\n"
	"                                 (not --local); --override: deploy the target without\n"
	"                                 a quorum (audited); --wait: until this node swapped\n"
	"                                 (exit 3 after --timeout with the votes so far)\n"
	"  identity                       this node's id, key, enrolment and former keys\n"
	"  enrol [--key FILE]             on a node: enrol its key with the operator key (nodes\n"
	"                                 with require-enrolment accept only enrolled nodes)\n"
	"  rotate-key [--key FILE]        on a node: a new node key, announced signed by the old\n"
	"                                 one; an enrolled node's new key is enrolled with FILE\n"
	"  votes SERVICE [--rev REV]      votes, eligible voters and quorum of a revision\n"
	"  services                       desired and running revision and health per service\n"
	"  events [--follow] [--since N]  what the agent saw and did (a bounded ring)\n"
	"  endpoints [SERVICE]            the cluster's endpoints (node, site, address, port,\n"
	"                                 weight, state, revision), as load balancers see them\n"
	"\n"
	"Options:\n"
	"  -s, --socket PATH     agent socket (default $SHOAL_SOCKET, else " AGENT_DEFAULT_SOCKET ")\n"
	"      --json            print the result as JSON (errors the agent reports too, as\n"
	"                        {\"ok\":false,\"error\":NAME,\"message\":TEXT})\n"
	"      --timeout DURATION  give up after this long (default 60s; 500ms, 10s, 5m, 1h)\n"
	"  -h, --help            show this help\n"
	"      --version         show the version\n"
	"\n"
	"Exit status: 0 done, 1 failed (the agent reported an error, or the command is not\n"
	"available), 2 usage error, 3 timed out, 4 agent unreachable.\n";


static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
	va_list ap;
	fputs("agentctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'agentctl --help'.\n", stderr);
	exit(EXIT_USAGE);
}

/* ---- Printing ------------------------------------------------------------------------------- */

/* A string field, made safe for a terminal (control characters as '?'), or @dflt. */
static const char *field(const msgpack_object *map, const char *key, const char *dflt, char *buf,
			 size_t cap)
{
	const msgpack_object *o = ctl_map_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_STR)
		return dflt;
	size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)o->via.str.ptr[i];
		buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	buf[n] = 0;
	return buf;
}

static uint64_t ufield(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = ctl_map_get(map, key);
	return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

static bool bfield(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = ctl_map_get(map, key);
	return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static void fmt_size(uint64_t n, char *buf, size_t cap)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

static void fmt_time(uint64_t ms, char *buf, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms == 0 || !localtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, cap, "-");
}

static void fmt_duration(uint64_t ms, char *buf, size_t cap)
{
	uint64_t s = ms / 1000;
	if (s >= 86400)
		snprintf(buf, cap, "%llud %lluh %llum", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600), (unsigned long long)(s % 3600 / 60));
	else if (s >= 3600)
		snprintf(buf, cap, "%lluh %llum %llus", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60), (unsigned long long)(s % 60));
	else if (s >= 60)
		snprintf(buf, cap, "%llum %llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, cap, "%llu.%llus", (unsigned long long)s,
			 (unsigned long long)(ms % 1000 / 100));
}

/* A table: rows of cells, printed with aligned columns (two spaces apart). */
#define TABLE_COLS 10
struct table {
	size_t ncols, nrows, cap;
	char **cells;	/* nrows * ncols, heap strings */
	size_t width[TABLE_COLS];
};

static void table_row(struct table *t, const char *const *cols)
{
	if (t->nrows == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		char **n = realloc(t->cells, ncap * t->ncols * sizeof *n);
		if (!n) {
			ctl_client_errf("out of memory");
			exit(EXIT_FAILED);
		}
		t->cells = n;
		t->cap = ncap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		char *s = strdup(cols[i] ? cols[i] : "-");
		if (!s) {
			ctl_client_errf("out of memory");
			exit(EXIT_FAILED);
		}
		t->cells[t->nrows * t->ncols + i] = s;
		/* Width in characters: count UTF-8 lead bytes only. */
		size_t w = 0;
		for (const char *p = s; *p; p++)
			w += ((unsigned char)*p & 0xc0) != 0x80;
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
}

static void table_print(struct table *t)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			if (i + 1 == t->ncols) {
				fputs(s, stdout);
				break;
			}
			size_t w = 0;
			for (const char *p = s; *p; p++)
				w += ((unsigned char)*p & 0xc0) != 0x80;
			fputs(s, stdout);
			for (size_t k = w; k < t->width[i] + 2; k++)
				fputc(' ', stdout);
		}
		fputc('\n', stdout);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* Print the outcome of a round trip; @human prints a successful result for people. */
static int finish(struct ctl_client *c, int x, void (*human)(struct ctl_client *c, const msgpack_object *r))
{
	if (x != EXIT_DONE)
		return x;
	if (!c->resp.ok) {
		if (c->json) {
			printf("{\"ok\":false,\"error\":");
			msgpack_object e = {.type = MSGPACK_OBJECT_STR};
			e.via.str.ptr = c->resp.error;
			e.via.str.size = (uint32_t)strlen(c->resp.error);
			ctl_json_write(stdout, &e, 0);
			printf(",\"message\":");
			e.via.str.ptr = c->resp.message;
			e.via.str.size = (uint32_t)strlen(c->resp.message);
			ctl_json_write(stdout, &e, 0);
			printf("}\n");
		}
		char msg[sizeof c->resp.message];
		for (size_t i = 0; i <= strlen(c->resp.message); i++) {
			unsigned char ch = (unsigned char)c->resp.message[i];
			msg[i] = ch && (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
		}
		ctl_client_errf("%s (%s)", msg[0] ? msg : "failed", c->resp.error);
		return EXIT_FAILED;
	}
	if (c->json) {
		ctl_json_write(stdout, c->resp.result, 2);
		fputc('\n', stdout);
	} else if (human) {
		human(c, c->resp.result);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		ctl_client_errf("writing the output failed");
		return EXIT_FAILED;
	}
	return EXIT_DONE;
}

/* ---- Commands ------------------------------------------------------------------------------- */

static void print_ping(struct ctl_client *c, const msgpack_object *r)
{
	puts("pong");
}

static void print_gossip_status(const msgpack_object *g)
{
	char b1[128], b2[128], b3[32];
	if (!g || g->type != MSGPACK_OBJECT_MAP) {
		if (g)
			printf("Gossip:     off (see the agent's log)\n");
		return;
	}
	const msgpack_object *m = ctl_map_get(g, "members"), *p = ctl_map_get(g, "packets"),
			     *d = ctl_map_get(g, "dropped"), *sy = ctl_map_get(g, "sync");
	printf("Gossip:     %s, advertised as %s%s\n", field(g, "bind", "-", b1, sizeof b1),
	       field(g, "advertise", "-", b2, sizeof b2), bfield(g, "left") ? " (left)" : "");
	printf("Members:    %llu alive, %llu suspect, %llu dead, %llu left\n",
	       (unsigned long long)ufield(m, "alive"), (unsigned long long)ufield(m, "suspect"),
	       (unsigned long long)ufield(m, "dead"), (unsigned long long)ufield(m, "left"));
	printf("Incarnation: %llu; %llu record(s)\n", (unsigned long long)ufield(g, "incarnation"),
	       (unsigned long long)ufield(g, "records"));
	printf("Keyring:    %llu key(s), primary %s\n", (unsigned long long)ufield(g, "keys"),
	       field(g, "primary_key", "-", b3, sizeof b3));
	printf("Packets:    %llu in, %llu out; anti-entropy %llu ok, %llu failed\n",
	       (unsigned long long)ufield(p, "in"), (unsigned long long)ufield(p, "out"),
	       (unsigned long long)ufield(sy, "ok"), (unsigned long long)ufield(sy, "failed"));
	printf("Dropped:   ");
	if (d && d->type == MSGPACK_OBJECT_MAP)
		for (uint32_t i = 0; i < d->via.map.size; i++) {
			const msgpack_object_kv *kv = &d->via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR &&
			    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				printf(" %.*s=%llu", (int)kv->key.via.str.size, kv->key.via.str.ptr,
				       (unsigned long long)kv->val.via.u64);
		}
	printf("\n");
}

static void print_status(struct ctl_client *c, const msgpack_object *r)
{
	char b1[256], b2[256], b3[64], b4[64], b5[64];
	const msgpack_object *st = ctl_map_get(r, "store");
	const msgpack_object *cn = ctl_map_get(r, "counts");
	printf("Node:       %s\n", field(r, "name", "-", b1, sizeof b1));
	printf("Node id:    %s\n", field(r, "node_id", "-", b1, sizeof b1));
	printf("Version:    %s\n", field(r, "version", "-", b1, sizeof b1));
	fmt_duration(ufield(r, "uptime_ms"), b3, sizeof b3);
	fmt_time(ufield(r, "started_at"), b4, sizeof b4);
	printf("Uptime:     %s (since %s, pid %llu)\n", b3, b4,
	       (unsigned long long)ufield(r, "pid"));
	printf("Cluster:    %s\n", field(r, "cluster", "-", b1, sizeof b1));
	printf("State dir:  %s\n", field(r, "state_dir", "-", b1, sizeof b1));
	printf("Socket:     %s\n", field(r, "socket", "-", b2, sizeof b2));
	printf("Artifacts:  %llu in %llu service(s); %llu revision(s)\n",
	       (unsigned long long)ufield(cn, "artifacts"), (unsigned long long)ufield(cn, "services"),
	       (unsigned long long)ufield(cn, "revisions"));
	fmt_size(ufield(st, "map_used"), b3, sizeof b3);
	fmt_size(ufield(st, "map_size"), b4, sizeof b4);
	fmt_size(ufield(st, "chunk_bytes"), b5, sizeof b5);
	printf("Store:      %s used of a %s map; %llu blobs in %llu chunks (%s)\n", b3, b4,
	       (unsigned long long)ufield(st, "blobs"), (unsigned long long)ufield(st, "chunks"),
	       b5);
	printf("Clients:    %llu\n", (unsigned long long)ufield(cn, "clients"));
	printf("Log level:  %s\n", field(r, "log_level", "-", b1, sizeof b1));
	print_gossip_status(ctl_map_get(r, "gossip"));
}

static void print_import(struct ctl_client *c, const msgpack_object *r)
{
	char id[80], svc[80], ver[160], sz[32];
	fmt_size(ufield(r, "size"), sz, sizeof sz);
	puts(field(r, "id", "-", id, sizeof id));
	fprintf(stderr, "%s service %s version %s (%llu files, %s)\n",
		bfield(r, "new") ? "imported" : "already present:", field(r, "service", "-", svc,
		sizeof svc), field(r, "version", "-", ver, sizeof ver),
		(unsigned long long)ufield(r, "files"), sz);
}

static void print_list(struct ctl_client *c, const msgpack_object *r)
{
	struct table t = {.ncols = 9};
	if (r->type != MSGPACK_OBJECT_ARRAY)
		return;
	if (r->via.array.size == 0) {
		fprintf(stderr, "no artifacts\n");
		return;
	}
	table_row(&t, (const char *const[]){"ID", "SERVICE", "VERSION", "RUNTIME", "FILES", "SIZE",
					    "IMPORTED", "SOURCE", "CONDEMNED"});
	for (uint32_t i = 0; i < r->via.array.size; i++) {
		const msgpack_object *a = &r->via.array.ptr[i];
		char id[80], svc[80], ver[160], rt[32], files[24], sz[32], at[32], src[96];
		char tag[80], commit[80];
		field(a, "id", "-", id, sizeof id);
		id[12 < strlen(id) ? 12 : strlen(id)] = 0;
		snprintf(files, sizeof files, "%llu", (unsigned long long)ufield(a, "files"));
		fmt_size(ufield(a, "size"), sz, sizeof sz);
		fmt_time(ufield(a, "imported_at"), at, sizeof at);
		const char *tg = field(a, "git_tag", NULL, tag, sizeof tag);
		const char *cm = field(a, "git_commit", NULL, commit, sizeof commit);
		if (tg)
			snprintf(src, sizeof src, "git %s", tg);
		else if (cm)
			snprintf(src, sizeof src, "git %.12s", cm);
		else
			snprintf(src, sizeof src, "dir");
		table_row(&t, (const char *const[]){id, field(a, "service", "-", svc, sizeof svc),
						    field(a, "version", "-", ver, sizeof ver),
						    field(a, "runtime", "-", rt, sizeof rt), files, sz,
						    at, src, bfield(a, "condemned") ? "yes" : "no"});
	}
	table_print(&t);
}

static void print_show(struct ctl_client *c, const msgpack_object *r)
{
	char b[1024], sz[32], at[32];
	const msgpack_object *ex = ctl_map_get(r, "exec"), *sd = ctl_map_get(r, "systemd"),
			     *co = ctl_map_get(r, "container"), *h = ctl_map_get(r, "health"),
			     *g = ctl_map_get(r, "git");
	printf("ID:         %s\n", field(r, "id", "-", b, sizeof b));
	printf("Service:    %s\n", field(r, "service", "-", b, sizeof b));
	printf("Version:    %s\n", field(r, "version", "-", b, sizeof b));
	printf("Runtime:    %s\n", field(r, "runtime", "-", b, sizeof b));
	if (field(ex, "command", NULL, b, sizeof b))
		printf("Command:    %s\n", b);
	if (field(sd, "unit", NULL, b, sizeof b))
		printf("Unit:       %s\n", b);
	if (field(co, "image", NULL, b, sizeof b))
		printf("Image:      %s\n", b);
	if (field(co, "archive", NULL, b, sizeof b))
		printf("Archive:    %s\n", b);
	if (h) {
		const char *kind = field(h, "http", NULL, b, sizeof b) ? "http"
				   : field(h, "tcp", NULL, b, sizeof b)	 ? "tcp"
				   : field(h, "exec", NULL, b, sizeof b) ? "exec"
									 : NULL;
		char i1[32], i2[32], i3[32];
		fmt_duration(ufield(h, "interval_ms"), i1, sizeof i1);
		fmt_duration(ufield(h, "timeout_ms"), i2, sizeof i2);
		fmt_duration(ufield(h, "deadline_ms"), i3, sizeof i3);
		printf("Health:     %s%s%s; every %s, timeout %s, unhealthy after %llu failures, "
		       "deadline %s\n",
		       kind ? kind : "process only", kind ? " " : "", kind ? b : "", i1, i2,
		       (unsigned long long)ufield(h, "failures"), i3);
	}
	fmt_size(ufield(r, "size"), sz, sizeof sz);
	printf("Size:       %s in %llu file(s)\n", sz, (unsigned long long)ufield(r, "files"));
	fmt_time(ufield(r, "imported_at"), at, sizeof at);
	printf("Imported:   %s\n", at);
	printf("Condemned:  %s\n", bfield(r, "condemned") ? "yes" : "no");
	if (g && g->type == MSGPACK_OBJECT_MAP) {
		char tag[128];
		printf("Git commit: %s", field(g, "commit", "-", b, sizeof b));
		if (field(g, "tag", NULL, tag, sizeof tag))
			printf(" (tag %s)", tag);
		printf("\n");
		printf("Git author: %s\n", field(g, "author", "-", b, sizeof b));
		if (field(g, "message", NULL, b, sizeof b))
			printf("Message:    %s\n", b);
	}
	const msgpack_object *fl = ctl_map_get(r, "file_list");
	if (fl && fl->type == MSGPACK_OBJECT_ARRAY && fl->via.array.size) {
		struct table t = {.ncols = 4};
		printf("\n");
		table_row(&t, (const char *const[]){"MODE", "SIZE", "BLOB", "PATH"});
		for (uint32_t i = 0; i < fl->via.array.size; i++) {
			const msgpack_object *f = &fl->via.array.ptr[i];
			char mode[16], fsz[32], blob[80], path[1024];
			uint64_t m = ufield(f, "mode");
			if (m == 0120000)
				snprintf(mode, sizeof mode, "link");
			else
				snprintf(mode, sizeof mode, "%04llo", (unsigned long long)m);
			snprintf(fsz, sizeof fsz, "%llu", (unsigned long long)ufield(f, "size"));
			field(f, "blob", "-", blob, sizeof blob);
			blob[12 < strlen(blob) ? 12 : strlen(blob)] = 0;
			table_row(&t, (const char *const[]){mode, fsz, blob,
							    field(f, "path", "-", path, sizeof path)});
		}
		table_print(&t);
	}
}

/* A path the agent can use: absolute, symlinks resolved when it exists. */
static char *absolute(const char *p)
{
	char *r = realpath(p, NULL);
	if (r)
		return r;
	if (p[0] == '/')
		return strdup(p);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return NULL;
	size_t n = strlen(cwd) + strlen(p) + 2;
	r = malloc(n);
	if (r)
		snprintf(r, n, "%s/%s", cwd, p);
	return r;
}

enum { OPT_JSON = 1000, OPT_TIMEOUT, OPT_VERSION, OPT_GIT, OPT_REF, OPT_PATH, OPT_FROM, OPT_REASON,
       OPT_KEY };

static const struct option global_opts[] = {
	{"socket", required_argument, NULL, 's'},
	{"json", no_argument, NULL, OPT_JSON},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{NULL, 0, NULL, 0},
};

static void global_opt(struct ctl_client *c, int o)
{
	switch (o) {
	case 's':
		c->socket = optarg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_TIMEOUT:
		if (ctl_parse_duration_ms(optarg, &c->timeout_ms) < 0 || c->timeout_ms == 0)
			die_usage("invalid --timeout '%s' (e.g. 500ms, 10s, 5m)", optarg);
		break;
	case 'h':
		fputs(usage_text, stdout);
		exit(EXIT_DONE);
	case OPT_VERSION:
		printf("agentctl (shoal) %s\n", SHOAL_VERSION);
		exit(EXIT_DONE);
	default:
		die_usage("unknown option");
	}
}

/*
 * Parse a command's own options (plus the global ones, allowed after the command too) and
 * its positional arguments into @pos (at most @maxpos; their count is returned).
 */
static int sub_args(struct ctl_client *c, int argc, char **argv, const struct option *extra,
		    void (*on_opt)(int o, const char *arg, void *ud), void *ud, char **pos,
		    int maxpos, const char *what)
{
	struct option opts[16];
	int n = 0;
	for (const struct option *o = global_opts; o->name; o++)
		opts[n++] = *o;
	for (const struct option *o = extra; o && o->name; o++)
		opts[n++] = *o;
	opts[n] = (struct option){NULL, 0, NULL, 0};
	optind = 0;
	opterr = 0;
	int o;
	while ((o = getopt_long(argc, argv, ":s:h", opts, NULL)) != -1) {
		if (o == '?')
			die_usage("%s: unknown option '%s'", what, argv[optind - 1]);
		if (o == ':')
			die_usage("%s: option '%s' needs a value", what, argv[optind - 1]);
		if (o >= OPT_GIT && on_opt)
			on_opt(o, optarg, ud);
		else
			global_opt(c, o);
	}
	int np = argc - optind;
	if (np > maxpos)
		die_usage("%s: unexpected argument '%s'", what, argv[optind + maxpos]);
	for (int i = 0; i < np; i++)
		pos[i] = argv[optind + i];
	return np;
}

struct import_opts {
	const char *git, *ref, *path;
};

static void import_opt(int o, const char *arg, void *ud)
{
	struct import_opts *io = ud;
	if (o == OPT_GIT)
		io->git = arg;
	else if (o == OPT_REF)
		io->ref = arg;
	else if (o == OPT_PATH)
		io->path = arg;
}

static int cmd_import(struct ctl_client *c, int argc, char **argv)
{
	static const struct option extra[] = {
		{"git", required_argument, NULL, OPT_GIT},
		{"ref", required_argument, NULL, OPT_REF},
		{"path", required_argument, NULL, OPT_PATH},
		{NULL, 0, NULL, 0},
	};
	struct import_opts io = {NULL, NULL, NULL};
	char *pos[1];
	int np = sub_args(c, argc, argv, extra, import_opt, &io, pos, 1, "artifact import");
	struct ctl_enc e;
	char *abs = NULL;
	int x;
	if (io.git) {
		if (np)
			die_usage("artifact import: give either DIR or --git REPO, not both");
		if (!io.ref)
			die_usage("artifact import --git: --ref REF is required");
		if (!*io.git || !*io.ref || (io.path && !*io.path))
			die_usage("artifact import --git: empty argument");
	} else {
		if (io.ref || io.path)
			die_usage("artifact import: --ref and --path go with --git");
		if (np != 1)
			die_usage("artifact import: DIR or --git REPO --ref REF is required");
		if (!*pos[0])
			die_usage("artifact import: empty DIR");
	}
	ctl_enc_init(&e);
	if (io.git) {
		abs = absolute(io.git);
		if (!abs) {
			ctl_client_errf("%s: %s", io.git, strerror(errno));
			ctl_enc_release(&e);
			return EXIT_FAILED;
		}
		ctl_enc_request(&e, "artifact.import_git", true);
		ctl_enc_map(&e, io.path ? 3 : 2);
		ctl_enc_str(&e, "repo");
		ctl_enc_str(&e, abs);
		ctl_enc_str(&e, "ref");
		ctl_enc_str(&e, io.ref);
		if (io.path) {
			ctl_enc_str(&e, "path");
			ctl_enc_str(&e, io.path);
		}
	} else {
		abs = absolute(pos[0]);
		if (!abs) {
			ctl_client_errf("%s: %s", pos[0], strerror(errno));
			ctl_enc_release(&e);
			return EXIT_FAILED;
		}
		ctl_enc_request(&e, "artifact.import", true);
		ctl_enc_map(&e, 1);
		ctl_enc_str(&e, "dir");
		ctl_enc_str(&e, abs);
	}
	x = finish(c, ctl_client_call(c, &e, c->timeout_ms), print_import);
	free(abs);
	ctl_enc_release(&e);
	return x;
}

struct fetch_opts {
	const char *from[16];
	int n;
};

static void fetch_opt(int o, const char *arg, void *ud)
{
	struct fetch_opts *fo = ud;
	if (o != OPT_FROM)
		return;
	if (fo->n >= 16)
		die_usage("artifact fetch: at most 16 --from");
	fo->from[fo->n++] = arg;
}

static void print_fetch(struct ctl_client *c, const msgpack_object *r)
{
	char id[80];
	(void)c;
	printf("%s\n", field(r, "id", "-", id, sizeof id));
}

/* artifact.fetch starts (or joins) the transfer and reports its state: poll until done. */
static int cmd_fetch(struct ctl_client *c, int argc, char **argv)
{
	static const struct option extra[] = {
		{"from", required_argument, NULL, OPT_FROM},
		{NULL, 0, NULL, 0},
	};
	struct fetch_opts fo = {.n = 0};
	char *pos[1];
	if (sub_args(c, argc, argv, extra, fetch_opt, &fo, pos, 1, "artifact fetch") != 1)
		die_usage("artifact fetch: ID is required");
	int x = ctl_client_fetch(c, pos[0], fo.from, (size_t)fo.n);
	if (x == EXIT_DONE && ctl_client_fetching(c)) {
		ctl_client_errf("artifact fetch: still in progress after the timeout");
		return EXIT_FAILED;
	}
	return finish(c, x, print_fetch);
}

static int simple(struct ctl_client *c, const char *op, const char *key, const char *val,
		  void (*human)(struct ctl_client *c, const msgpack_object *r))
{
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, op, key != NULL);
	if (key) {
		ctl_enc_map(&e, 1);
		ctl_enc_str(&e, key);
		ctl_enc_str(&e, val);
	}
	int x = finish(c, ctl_client_call(c, &e, c->timeout_ms), human);
	ctl_enc_release(&e);
	return x;
}

static void print_members(struct ctl_client *c, const msgpack_object *r)
{
	struct table t = {.ncols = 7};
	if (r->type != MSGPACK_OBJECT_ARRAY)
		return;
	table_row(&t, (const char *const[]){"NAME", "ADDRESS", "STATE", "INCARNATION", "RTT",
					    "TRUST", "LABELS"});
	for (uint32_t i = 0; i < r->via.array.size; i++) {
		const msgpack_object *m = &r->via.array.ptr[i];
		char name[80], addr[80], state[16], inc[24], rtt[24], trust[24], labels[512];
		size_t off = 0;
		labels[0] = 0;
		const msgpack_object *l = ctl_map_get(m, "labels");
		if (l && l->type == MSGPACK_OBJECT_MAP)
			for (uint32_t k = 0; k < l->via.map.size && off < sizeof labels; k++) {
				const msgpack_object_kv *kv = &l->via.map.ptr[k];
				if (kv->key.type != MSGPACK_OBJECT_STR ||
				    kv->val.type != MSGPACK_OBJECT_STR)
					continue;
				int w = snprintf(labels + off, sizeof labels - off, "%s%.*s=%.*s",
						 off ? "," : "", (int)kv->key.via.str.size,
						 kv->key.via.str.ptr, (int)kv->val.via.str.size,
						 kv->val.via.str.ptr);
				if (w < 0)
					break;
				off += (size_t)w;
			}
		for (char *q = labels; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				*q = '?';
		snprintf(inc, sizeof inc, "%llu", (unsigned long long)ufield(m, "incarnation"));
		if (bfield(m, "self"))
			snprintf(rtt, sizeof rtt, "(self)");
		else if (ufield(m, "rtt_ms"))
			snprintf(rtt, sizeof rtt, "%llums", (unsigned long long)ufield(m, "rtt_ms"));
		else
			snprintf(rtt, sizeof rtt, "-");
		table_row(&t, (const char *const[]){field(m, "name", "-", name, sizeof name),
						    field(m, "address", "-", addr, sizeof addr),
						    field(m, "state", "-", state, sizeof state), inc,
						    rtt, field(m, "trust", "-", trust, sizeof trust),
						    labels[0] ? labels : "-"});
	}
	table_print(&t);
}

static void print_keyring(struct ctl_client *c, const msgpack_object *r)
{
	char b[64], path[1024];
	const msgpack_object *k = ctl_map_get(r, "keys");
	printf("Keyring %s: %u key(s)\n", field(r, "path", "-", path, sizeof path),
	       k && k->type == MSGPACK_OBJECT_ARRAY ? k->via.array.size : 0);
	if (!k || k->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < k->via.array.size; i++)
		printf("  %s%s\n", field(&k->via.array.ptr[i], "id", "-", b, sizeof b),
		       bfield(&k->via.array.ptr[i], "primary") ? "  (primary)" : "");
}

static void print_leave(struct ctl_client *c, const msgpack_object *r)
{
	fprintf(stderr, "leaving the cluster; the agent exits in about %llu ms\n",
		(unsigned long long)ufield(r, "drain_ms"));
}

static void print_join(struct ctl_client *c, const msgpack_object *r)
{
	fprintf(stderr, "contacted %llu address(es); see agentctl members\n",
		(unsigned long long)ufield(r, "contacted"));
}

static int cmd_join(struct ctl_client *c, int argc, char **argv)
{
	char *pos[16];
	int np = sub_args(c, argc, argv, NULL, NULL, NULL, pos, 16, "join");
	if (np < 1)
		die_usage("join: ADDR:PORT is required");
	struct ctl_enc e;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "join", true);
	ctl_enc_map(&e, 1);
	ctl_enc_str(&e, "addrs");
	ctl_enc_array(&e, (uint32_t)np);
	for (int i = 0; i < np; i++)
		ctl_enc_str(&e, pos[i]);
	int x = finish(c, ctl_client_call(c, &e, c->timeout_ms), print_join);
	ctl_enc_release(&e);
	return x;
}

static void print_removed(struct ctl_client *c, const msgpack_object *r)
{
	char n[80], id[40];
	printf("%s (%s) is off the roster: later revisions no longer count it\n",
	       field(r, "node", "?", n, sizeof n), field(r, "id", "?", id, sizeof id));
}

struct remove_opts {
	const char *reason, *key;
};

static void on_remove_opt(int o, const char *arg, void *ud)
{
	struct remove_opts *ro = ud;
	if (o == OPT_REASON)
		ro->reason = arg;
	else if (o == OPT_KEY)
		ro->key = arg;
}

/*
 * members remove NODE --reason TEXT [--key FILE]: signed with the operator key like a deploy
 * (sign.h SIGN_OP_REMOVE: the member's full id and the reason), so the agent is asked first
 * which member NODE names (resolve), then to remove that id with the statement.
 */
static int cmd_members_remove(struct ctl_client *c, int argc, char **argv)
{
	static const struct option extra[] = {{"reason", required_argument, NULL, OPT_REASON},
					       {"key", required_argument, NULL, OPT_KEY},
					       {NULL, 0, NULL, 0}};
	struct remove_opts ro = {NULL, NULL};
	char *pos[1], id[40], idhex[33], sighex[SIGN_OP_HEX_LEN + 1];
	uint8_t bin[16], digest[32];
	struct sign_key k;
	struct ctl_enc e;
	if (sub_args(c, argc, argv, extra, on_remove_opt, &ro, pos, 1, "members remove") != 1)
		die_usage("members remove: NODE (a name or id) is required");
	if (!ro.reason)
		die_usage("members remove: --reason TEXT is required (it is recorded)");
	if (fleet_cmds_op_key(ro.key, "a removal", &k) < 0)
		return EXIT_FAILED;
	ctl_enc_init(&e);
	ctl_enc_request(&e, "members.remove", true);
	ctl_enc_map(&e, 3);
	ctl_kv_str(&e, "node", pos[0]);
	ctl_kv_str(&e, "reason", ro.reason);
	ctl_kv_bool(&e, "resolve", true);
	int x = ctl_client_call(c, &e, c->timeout_ms);
	ctl_enc_release(&e);
	if (x != EXIT_DONE || !c->resp.ok)
		return finish(c, x, print_removed);
	field(c->resp.result, "id", "", id, sizeof id);
	if (strlen(id) != 32 || sodium_hex2bin(bin, sizeof bin, id, 32, NULL, NULL, NULL) != 0) {
		ctl_client_errf("members remove: the agent named no member id for %s", pos[0]);
		return EXIT_FAILED;
	}
	struct sign_op op = {.kind = SIGN_OP_REMOVE};
	sign_op_remove_subject(bin, ro.reason, idhex, digest);
	sign_op_sign(&k, idhex, digest, &op);
	sodium_memzero(&k, sizeof k);
	sign_op_hex(&op, sighex);
	ctl_enc_init(&e);
	ctl_enc_request(&e, "members.remove", true);
	ctl_enc_map(&e, 3);
	ctl_kv_str(&e, "node", idhex);
	ctl_kv_str(&e, "reason", ro.reason);
	ctl_kv_str(&e, "opsig", sighex);
	x = finish(c, ctl_client_call(c, &e, c->timeout_ms), print_removed);
	ctl_enc_release(&e);
	return x;
}

/* The first key line of a key file (base64; blank and '#' lines skipped). */
static int read_key_file(const char *path, char *ret, size_t cap)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int r = -ENOENT;
	if (!f)
		return -errno;
	while (fgets(line, sizeof line, f)) {
		char *s = line, *e;
		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			*--e = 0;
		if (!*s || *s == '#')
			continue;
		if (strlen(s) >= cap) {
			r = -EINVAL;
			break;
		}
		snprintf(ret, cap, "%s", s);
		r = 0;
		break;
	}
	memset(line, 0, sizeof line);
	fclose(f);
	return r;
}

static int cmd_keyring(struct ctl_client *c, int argc, char **argv)
{
	char *pos[2];
	if (argc < 2)
		die_usage("keyring: list, install, use or remove expected");
	const char *sub = argv[1];
	if (strcmp(sub, "list") == 0) {
		sub_args(c, argc - 1, argv + 1, NULL, NULL, NULL, pos, 0, "keyring list");
		return simple(c, "keyring.list", NULL, NULL, print_keyring);
	}
	if (strcmp(sub, "install") == 0) {
		char key[128];
		if (sub_args(c, argc - 1, argv + 1, NULL, NULL, NULL, pos, 1, "keyring install") != 1)
			die_usage("keyring install: KEYFILE is required");
		int r = read_key_file(pos[0], key, sizeof key);
		if (r < 0) {
			ctl_client_errf("%s: %s", pos[0], r == -ENOENT ? "no key in the file" :
			         r == -EINVAL ? "not a key file" : strerror(-r));
			return EXIT_FAILED;
		}
		int x = simple(c, "keyring.install", "key", key, print_keyring);
		memset(key, 0, sizeof key);
		return x;
	}
	if (strcmp(sub, "use") == 0 || strcmp(sub, "remove") == 0) {
		char what[32];
		snprintf(what, sizeof what, "keyring %s", sub);
		if (sub_args(c, argc - 1, argv + 1, NULL, NULL, NULL, pos, 1, what) != 1)
			die_usage("%s: KEYID is required (see agentctl keyring list)", what);
		return simple(c, strcmp(sub, "use") == 0 ? "keyring.use" : "keyring.remove", "id",
			      pos[0], print_keyring);
	}
	die_usage("keyring: unknown subcommand '%s' (list, install, use, remove)", sub);
}

static const char *const later_commands[] = {
	"services", "votes", "events", "deploy", "rollback",
};

int main(int argc, char **argv)
{
	struct ctl_client c;
	ctl_client_init(&c, NULL, false, DEFAULT_TIMEOUT_MS);
	const char *env = getenv("SHOAL_SOCKET");
	c.socket = env && *env ? env : AGENT_DEFAULT_SOCKET;
	char *pos[2];
	int x = EXIT_USAGE, o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "+:s:h", global_opts, NULL)) != -1) {
		if (o == '?')
			die_usage("unknown option '%s'", argv[optind - 1]);
		if (o == ':')
			die_usage("option '%s' needs a value", argv[optind - 1]);
		global_opt(&c, o);
	}
	if (optind >= argc)
		die_usage("no command given");
	const char *cmd = argv[optind];
	int sargc = argc - optind;
	char **sargv = argv + optind;

	/* the cluster brain's commands (agent/client/fleet_cmds.c) */
	x = fleet_cmds_main(c.socket, c.json, c.timeout_ms, cmd, sargc, sargv);
	if (x >= 0)
		return x;
	x = EXIT_USAGE;
	for (size_t i = 0; i < sizeof later_commands / sizeof later_commands[0]; i++)
		if (strcmp(cmd, later_commands[i]) == 0) {
			ctl_client_errf("'%s' is not available in this version", cmd);
			return EXIT_FAILED;
		}
	if (strcmp(cmd, "status") == 0) {
		sub_args(&c, sargc, sargv, NULL, NULL, NULL, pos, 0, "status");
		x = simple(&c, "status", NULL, NULL, print_status);
		if (x == EXIT_DONE && !c.json)
			fleet_cmds_status(c.socket, false, c.timeout_ms);
	} else if (strcmp(cmd, "ping") == 0) {
		sub_args(&c, sargc, sargv, NULL, NULL, NULL, pos, 0, "ping");
		x = simple(&c, "ping", NULL, NULL, print_ping);
	} else if (strcmp(cmd, "members") == 0 && sargc > 1 && strcmp(sargv[1], "remove") == 0) {
		x = cmd_members_remove(&c, sargc - 1, sargv + 1);
	} else if (strcmp(cmd, "members") == 0) {
		sub_args(&c, sargc, sargv, NULL, NULL, NULL, pos, 0, "members");
		x = simple(&c, "members", NULL, NULL, print_members);
	} else if (strcmp(cmd, "join") == 0) {
		x = cmd_join(&c, sargc, sargv);
	} else if (strcmp(cmd, "leave") == 0) {
		sub_args(&c, sargc, sargv, NULL, NULL, NULL, pos, 0, "leave");
		x = simple(&c, "leave", NULL, NULL, print_leave);
	} else if (strcmp(cmd, "keyring") == 0) {
		x = cmd_keyring(&c, sargc, sargv);
	} else if (strcmp(cmd, "artifact") == 0) {
		if (sargc < 2)
			die_usage("artifact: import, list or show expected");
		const char *sub = sargv[1];
		if (strcmp(sub, "import") == 0) {
			x = cmd_import(&c, sargc - 1, sargv + 1);
		} else if (strcmp(sub, "list") == 0) {
			int np = sub_args(&c, sargc - 1, sargv + 1, NULL, NULL, NULL, pos, 1,
					  "artifact list");
			x = simple(&c, "artifact.list", np ? "service" : NULL, np ? pos[0] : NULL,
				   print_list);
		} else if (strcmp(sub, "show") == 0) {
			if (sub_args(&c, sargc - 1, sargv + 1, NULL, NULL, NULL, pos, 1,
				     "artifact show") != 1)
				die_usage("artifact show: ID is required");
			x = simple(&c, "artifact.show", "id", pos[0], print_show);
		} else if (strcmp(sub, "fetch") == 0) {
			x = cmd_fetch(&c, sargc - 1, sargv + 1);
		} else {
			die_usage("artifact: unknown subcommand '%s' (import, list, show, fetch)", sub);
		}
	} else {
		die_usage("unknown command '%s'", cmd);
	}
	ctl_client_release(&c);
	return x;
}
