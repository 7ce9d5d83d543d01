/* agent/config/config.c: see config.h. */
#include "agent/config/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agree/agree.h"
#include "agent/ctl/ctl_proto.h"

/* Keys; each is also a long option. has_arg is always required_argument. */
enum cfg_key {
	K_NODE_NAME, K_STATE_DIR, K_SOCKET, K_LOG_LEVEL, K_BIND, K_ADVERTISE, K_JOIN, K_KEYRING,
	K_CLUSTER, K_LABEL, K_METRICS, K_MAX_FILE_SIZE, K_MAX_SIZE, K_MAX_FILES, K_RETAIN,
	K_MAP_MAX, K_SOCKET_GROUP, K_SOCKET_MODE, K_MAX_FRAME, K_MAX_CLIENTS, K_CLIENT_TIMEOUT,
	K_QUORUM, K_MAX_PAR_SWAPS, /* cluster brain (agent/fleet/fleet.h) */
	K_REAP_AFTER, K_RECONNECT, /* membership (agent/cluster, agent/fleet) */
	K_DOCKER_HOST, K_UNIT_DIR, K_SYSTEMD_BUS, /* runtime plugins */
	K_EVENT_HOOK, K_EVENT_HOOK_TIMEOUT, K_EVENT_HOOK_MAX_RUNNING, K_EVENT_HOOK_QUEUE,
	K_HTTP_API, K_HAPROXY_SOCKET, K_HAPROXY_BACKEND, K_FAILOVER_SHARE, /* traffic (issue 14) */
	K_HAPROXY_SITE,
	K_OPERATORS_DIR, K_REQUIRE_ENROLMENT, /* trust (agent/base/sign.h) */
	K__COUNT
};

static const char *const cfg_keys[K__COUNT] = {
	[K_NODE_NAME] = "node-name",
	[K_STATE_DIR] = "state-dir",
	[K_SOCKET] = "socket",
	[K_LOG_LEVEL] = "log-level",
	[K_BIND] = "bind",
	[K_ADVERTISE] = "advertise",
	[K_JOIN] = "join",
	[K_KEYRING] = "keyring",
	[K_CLUSTER] = "cluster",
	[K_LABEL] = "label",
	[K_METRICS] = "metrics",
	[K_MAX_FILE_SIZE] = "max-artifact-file-size",
	[K_MAX_SIZE] = "max-artifact-size",
	[K_MAX_FILES] = "max-artifact-files",
	[K_RETAIN] = "retain-revisions",
	[K_MAP_MAX] = "store-map-max",
	[K_SOCKET_GROUP] = "socket-group",
	[K_SOCKET_MODE] = "socket-mode",
	[K_MAX_FRAME] = "max-frame-size",
	[K_MAX_CLIENTS] = "max-clients",
	[K_CLIENT_TIMEOUT] = "client-timeout",
	[K_QUORUM] = "quorum",
	[K_MAX_PAR_SWAPS] = "max-parallel-swaps-per-site",
	[K_REAP_AFTER] = "reap-after",
	[K_RECONNECT] = "reconnect-interval",
	[K_DOCKER_HOST] = "docker-host",
	[K_UNIT_DIR] = "unit-dir",
	[K_SYSTEMD_BUS] = "systemd-bus",
	[K_EVENT_HOOK] = "event-hook",
	[K_EVENT_HOOK_TIMEOUT] = "event-hook-timeout",
	[K_EVENT_HOOK_MAX_RUNNING] = "event-hook-max-running",
	[K_EVENT_HOOK_QUEUE] = "event-hook-queue",
	[K_HTTP_API] = "http-api",
	[K_HAPROXY_SOCKET] = "haproxy-socket",
	[K_HAPROXY_BACKEND] = "haproxy-backend",
	[K_FAILOVER_SHARE] = "failover-share",
	[K_HAPROXY_SITE] = "haproxy-site",
	[K_OPERATORS_DIR] = "operators-dir",
	[K_REQUIRE_ENROLMENT] = "require-enrolment",
};

enum { OPT_CONFIG = 1000, OPT_HELP, OPT_VERSION, OPT_CONFIG_DIR, OPT_CHECK };

static const char usage_text[] =
	"usage: agentd [OPTION]...\n"
	"The Shoal node agent: keeps service artifacts in LMDB and serves agentctl over a unix\n"
	"socket. Every option below (except --config, --config-dir, --check-config, --help,\n"
	"--version) is also a key of the config file; flags override the file.\n"
	"\n"
	"  --config FILE               config file (default " AGENT_DEFAULT_CONFIG ";\n"
	"                              a missing default file is fine, a missing FILE is an error)\n"
	"  --config-dir DIR            drop-in directory: every DIR/*.conf is read after FILE, in\n"
	"                              lexical order, each overriding what came before (default\n"
	"                              FILE.d, e.g. " AGENT_DEFAULT_CONFIG ".d; a missing default\n"
	"                              directory is fine, a missing DIR is an error)\n"
	"  --check-config              read and check the whole configuration (file, drop-ins,\n"
	"                              flags, keyring, paths, event hook) without starting: print\n"
	"                              \"configuration OK\" and exit 0, or the reason on stderr\n"
	"                              and exit 2\n"
	"  --node-name NAME            this node's name (default: the hostname)\n"
	"  --state-dir DIR             persistent state (default " AGENT_DEFAULT_STATE_DIR ")\n"
	"  --socket PATH               control socket (default " AGENT_DEFAULT_SOCKET ")\n"
	"  --log-level LEVEL           error, warning, notice, info (default) or debug\n"
	"  --socket-group GROUP        group of the socket (default " AGENT_DEFAULT_GROUP
	" if it exists)\n"
	"  --socket-mode MODE          octal mode of the socket (default 0660)\n"
	"  --max-clients N             concurrent control connections (default 64)\n"
	"  --max-frame-size SIZE       largest request accepted (default 1M)\n"
	"  --client-timeout DURATION   a client slower than this to send a request or read a\n"
	"                              response, or idle that long, is disconnected (default 30s)\n"
	"  --max-artifact-file-size SIZE  largest file in an imported artifact (default 256M)\n"
	"  --max-artifact-size SIZE    largest imported artifact in total (default 1G)\n"
	"  --max-artifact-files N      most files in an imported artifact (default 10000)\n"
	"  --retain-revisions N        revisions kept per service (default 10)\n"
	"  --store-map-max SIZE        largest the store may grow (default 64G)\n"
	"\n"
	"Runtime plugins:\n"
	"  --docker-host PATH          container runtime: unix socket of the Docker Engine API,\n"
	"                              Docker or Podman (default " AGENT_DEFAULT_DOCKER_HOST ")\n"
	"  --unit-dir DIR              systemd runtime: unit file directory (default\n"
	"                              " AGENT_DEFAULT_UNIT_DIR ")\n"
	"  --systemd-bus ADDRESS       systemd runtime: D-Bus address of systemd itself, e.g.\n"
	"                              unix:path=/run/systemd/private (default: the system bus)\n"
	"\n"
	"Trust:\n"
	"  --operators-dir DIR         the operator public keys (*.pub) whose signed deploys and\n"
	"                              rollbacks this node accepts (default\n"
	"                              " AGENT_DEFAULT_OPERATORS_DIR "; reloaded on SIGHUP)\n"
	"  --require-enrolment[=BOOL]  bind a node's key only if an operator enrolled it\n"
	"                              (agentctl enrol); unenrolled nodes are kept off the roster\n"
	"                              and their votes do not count (default false: trust on\n"
	"                              first join; in the file: require-enrolment = true)\n"
	"\n"
	"Cluster options:\n"
	"  --bind ADDR:PORT            gossip address, UDP and TCP (default " AGENT_DEFAULT_BIND ")\n"
	"  --advertise ADDR:PORT       address announced to peers (default: --bind; for a\n"
	"                              wildcard bind, the first non-loopback address)\n"
	"  --join ADDR:PORT            a peer to join at start (repeatable); a restarted agent\n"
	"                              also rejoins the members it knew\n"
	"  --keyring FILE              cluster keyring (default STATE_DIR/keyring, created with a\n"
	"                              new key if missing: copy it to every node)\n"
	"  --cluster NAME              cluster name (default " AGENT_DEFAULT_CLUSTER ")\n"
	"  --label KEY=VALUE           node label, e.g. site=par1 (repeatable)\n"
	"  --metrics ADDR:PORT         Prometheus endpoint http://ADDR:PORT/metrics (default:\n"
	"                              off; use a loopback address, e.g. 127.0.0.1:9464)\n"
	"  --quorum SERVICE=SPEC       votes that decide a rollback of SERVICE: majority\n"
	"                              (default), a count N, or a fraction N/D; repeatable;\n"
	"                              written into each deploy made here: every node follows\n"
	"                              the rule of the revision, whatever it is configured with\n"
	"  --reap-after DURATION       forget a dead member after this long (default 72h, like\n"
	"                              Serf's reconnect_timeout); it stays on the roster and keeps\n"
	"                              its vote: only agentctl leave or members remove end that\n"
	"  --reconnect-interval DURATION  try to reach one unreachable roster member this often\n"
	"                              (default 30s, +-25%), so split halves meet again\n"
	"  --max-parallel-swaps-per-site N  nodes of one site swapping a service at once\n"
	"                              (best effort; default 0 = unlimited)\n"
	"\n"
	"Event hook:\n"
	"  --event-hook FILE           executable run for every event (agentctl events), with\n"
	"                              the event as one JSON object on stdin (default: none)\n"
	"  --event-hook-timeout DURATION  a hook still running after this is killed (default 10s)\n"
	"  --event-hook-max-running N  hooks running at once (default 4); further events wait\n"
	"  --event-hook-queue N        events waiting at most (default 256); more are dropped,\n"
	"                              counted and logged\n"
	"Traffic (load balancers):\n"
	"  --http-api ADDR:PORT        read API for load balancers: GET /v1/catalog,\n"
	"                              /v1/catalog/SERVICE, /v1/http_sd (long-poll with\n"
	"                              ?index=N&wait=30s); default off; no authentication: use\n"
	"                              a loopback address, e.g. 127.0.0.1:9465\n"
	"  --haproxy-socket ADDR       HAProxy's stats socket (level admin): /path, unix:/path or\n"
	"                              tcp:IP:PORT; needed by --haproxy-backend\n"
	"  --haproxy-backend SERVICE=BACKEND[:SLOTPREFIX]  keep the server-template slots of\n"
	"                              BACKEND in step with SERVICE's endpoints (repeatable)\n"
	"  --failover-share SHARE      send traffic to other sites when fewer than SHARE of\n"
	"                              this site's endpoints are healthy (0..1 or N%; default 0.5)\n"
	"  --haproxy-site SITE         the site whose endpoints the HAProxy driver prefers\n"
	"                              (default: this node's site= label)\n"
	"\n"
	"  --help                      show this help and exit\n"
	"  --version                   show the version and exit\n"
	"\n"
	"SIZE: bytes, or with K, M, G, T (powers of 1024). DURATION: 500ms, 30s, 5m, 1h.\n"
	"Signals: SIGTERM/SIGINT stop cleanly; SIGHUP re-reads the config file (the log level\n"
	"takes effect at once; other changes need a restart).\n"
	"Exit status: 0 clean stop (or configuration OK), 1 startup failure, 2 usage or\n"
	"configuration error.\n";

const char *agent_config_usage(void)
{
	return usage_text;
}

/* ---- Validators ----------------------------------------------------------------------------- */

static bool name_char(int c);

int agent_config_check_backend(const char *s)
{
	const char *eq = strchr(s, '=');
	size_t n;
	if (!eq || eq == s || eq - s > 64)
		return -EINVAL;
	for (const char *p = s; p < eq; p++)
		if (!name_char((unsigned char)*p))
			return -EINVAL;
	n = 0;
	bool colon = false;
	for (const char *p = eq + 1; *p; p++) {
		if (*p == ':' && !colon && n > 0) {
			colon = true;
			n = 0;
			continue;
		}
		if (!name_char((unsigned char)*p) || n >= 63)
			return -EINVAL;
		n++;
	}
	return n > 0 ? 0 : -EINVAL;
}

int agent_config_parse_share(const char *s, unsigned *ret_permille)
{
	/* "0.5", "1", "0", "50%", "12.5%": thousandths, rounded down past three decimals */
	unsigned long ip = 0, frac = 0, scale = 1000;
	const char *p = s;
	bool pct, digits = false;
	size_t len = strlen(s);
	pct = len > 0 && s[len - 1] == '%';
	while (*p >= '0' && *p <= '9' && ip < 1000) {
		ip = ip * 10 + (unsigned long)(*p++ - '0');
		digits = true;
	}
	if (*p == '.') {
		p++;
		unsigned long f = 0, div = 1;
		while (*p >= '0' && *p <= '9') {
			if (div < 100000) {
				f = f * 10 + (unsigned long)(*p - '0');
				div *= 10;
			}
			p++;
			digits = true;
		}
		frac = f * scale / div;
	}
	if (!digits || (pct ? (*p != '%' || p[1]) : *p != 0))
		return -EINVAL;
	unsigned long pm = ip * 1000 + frac;	/* thousandths of the number written */
	if (pct)
		pm /= 100;
	if (pm > 1000)
		return -EINVAL;
	*ret_permille = (unsigned)pm;
	return 0;
}

static bool name_char(int c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '-';
}

int agent_config_check_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!name_char((unsigned char)s[i]))
			return -EINVAL;
	return 0;
}

int agent_config_check_addr(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1 || close[1] != ':')
			return -EINVAL;
		for (const char *p = s + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return -EINVAL;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		for (const char *p = s; p < colon; p++)
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
				return -EINVAL;
	}
	const char *port = colon + 1;
	if (!*port || strlen(port) > 5)
		return -EINVAL;
	for (const char *p = port; *p; p++)
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
	long v = strtol(port, NULL, 10);
	return v >= 1 && v <= 65535 ? 0 : -EINVAL;
}

int agent_config_check_label(const char *s)
{
	const char *eq = strchr(s, '=');
	if (!eq || eq == s || eq - s > 63)
		return -EINVAL;
	for (const char *p = s; p < eq; p++)
		if (!name_char((unsigned char)*p) && *p != '/')
			return -EINVAL;
	if (strlen(eq + 1) > 255)
		return -EINVAL;
	for (const char *p = eq + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
	return 0;
}

/* ---- Setting keys --------------------------------------------------------------------------- */

struct cfg_parse {
	struct agent_config *cfg;
	bool seen[K__COUNT];	/* in the current source (file or flags) */
	bool from_flags;
	char err[512];
};

static int set_string(char **dst, const char *v)
{
	char *s = strdup(v);
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int list_add(char ***list, size_t *n, const char *v)
{
	if (*n >= 256)
		return -E2BIG;
	char **l = realloc(*list, (*n + 1) * sizeof *l);
	if (!l)
		return -ENOMEM;
	*list = l;
	if (!(l[*n] = strdup(v)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void list_free(char ***list, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
	*n = 0;
}

/* Make @v absolute against the current directory, into *dst. */
static int set_path(char **dst, const char *v)
{
	if (!*v)
		return -EINVAL;
	if (v[0] == '/')
		return set_string(dst, v);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return -errno;
	size_t n = strlen(cwd) + strlen(v) + 2;
	char *s = malloc(n);
	if (!s)
		return -ENOMEM;
	snprintf(s, n, "%s/%s", cwd, v);
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_uint(const char *v, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	if (!isdigit((unsigned char)*v))
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		return -EINVAL;
	*ret = n;
	return 0;
}

static int cfg_set(struct cfg_parse *p, enum cfg_key k, const char *v)
{
	struct agent_config *c = p->cfg;
	uint64_t u = 0;
	int r = 0;
	const char *why = NULL;

	if (p->seen[k] && k != K_JOIN && k != K_LABEL && k != K_QUORUM && !p->from_flags) {
		snprintf(p->err, sizeof p->err, "%s: given twice", cfg_keys[k]);
		return -EINVAL;
	}
	/* The first flag of a repeatable key replaces what the file gave. */
	if (p->from_flags && !p->seen[k] && k == K_JOIN)
		list_free(&c->join, &c->njoin);
	if (p->from_flags && !p->seen[k] && k == K_LABEL)
		list_free(&c->labels, &c->nlabels);
	if (p->from_flags && !p->seen[k] && k == K_QUORUM)
		list_free(&c->quorums, &c->nquorums);
	if (p->from_flags && !p->seen[k] && k == K_HAPROXY_BACKEND)
		list_free(&c->haproxy_backends, &c->nhaproxy_backends);
	p->seen[k] = true;

	switch (k) {
	case K_NODE_NAME:
	case K_CLUSTER:
		if (agent_config_check_name(v) < 0) {
			why = "must be 1 to 64 of A-Z a-z 0-9 . _ -";
			break;
		}
		r = set_string(k == K_NODE_NAME ? &c->node_name : &c->cluster, v);
		break;
	case K_STATE_DIR:
		r = set_path(&c->state_dir, v);
		if (r == -EINVAL)
			why = "empty path";
		break;
	case K_SOCKET: {
		struct sockaddr_un sa;
		r = set_path(&c->socket_path, v);
		if (r == -EINVAL)
			why = "empty path";
		else if (r == 0 && strlen(c->socket_path) >= sizeof sa.sun_path)
			why = "path too long for a unix socket (107 bytes at most)";
		break;
	}
	case K_LOG_LEVEL:
		if (agent_log_parse_level(v, &c->log_level) < 0)
			why = "must be error, warning, notice, info or debug";
		break;
	case K_BIND:
	case K_ADVERTISE:
	case K_METRICS:
		if (agent_config_check_addr(v) < 0) {
			why = "must be HOST:PORT or [IPV6]:PORT with a port in 1..65535";
			break;
		}
		r = set_string(k == K_BIND ? &c->bind : k == K_ADVERTISE ? &c->advertise : &c->metrics,
			       v);
		break;
	case K_JOIN:
		if (agent_config_check_addr(v) < 0) {
			why = "must be HOST:PORT or [IPV6]:PORT with a port in 1..65535";
			break;
		}
		r = list_add(&c->join, &c->njoin, v);
		break;
	case K_LABEL:
		if (agent_config_check_label(v) < 0) {
			why = "must be KEY=VALUE (key: A-Z a-z 0-9 . _ - /, value printable)";
			break;
		}
		r = list_add(&c->labels, &c->nlabels, v);
		break;
	case K_KEYRING:
		r = set_path(&c->keyring, v);
		if (r == -EINVAL)
			why = "empty path";
		break;
	case K_MAX_FILE_SIZE:
	case K_MAX_SIZE:
	case K_MAP_MAX:
		if (ctl_parse_size(v, &u) < 0 || u == 0) {
			why = "must be a positive size (e.g. 4096, 512K, 256M, 2G)";
			break;
		}
		if (k == K_MAX_FILE_SIZE)
			c->max_artifact_file_size = u;
		else if (k == K_MAX_SIZE)
			c->max_artifact_size = u;
		else
			c->store_map_max = u;
		break;
	case K_MAX_FILES:
		if (parse_uint(v, 1, 10000000, &u) < 0)
			why = "must be a number in 1..10000000";
		else
			c->max_artifact_files = (uint32_t)u;
		break;
	case K_RETAIN:
		if (parse_uint(v, 1, 1000, &u) < 0)
			why = "must be a number in 1..1000";
		else
			c->retain_revisions = (unsigned)u;
		break;
	case K_SOCKET_GROUP:
		/* "" means: no chgrp at all. */
		if (*v && agent_config_check_name(v) < 0) {
			why = "not a valid group name";
			break;
		}
		if (*v) {
			r = set_string(&c->socket_group, v);
		} else {
			free(c->socket_group);
			c->socket_group = NULL;
		}
		c->socket_group_explicit = true;
		break;
	case K_SOCKET_MODE: {
		char *end;
		errno = 0;
		unsigned long m = strtoul(v, &end, 8);
		if (!*v || *end || errno || m > 0777 || (m & 0600) != 0600)
			why = "must be an octal mode up to 0777 that lets the owner read and write";
		else
			c->socket_mode = (unsigned)m;
		break;
	}
	case K_MAX_FRAME:
		if (ctl_parse_size(v, &u) < 0 || u < 1024 || u > CTL_FRAME_MAX_LIMIT)
			why = "must be a size in 1K..64M";
		else
			c->max_frame_size = (uint32_t)u;
		break;
	case K_MAX_CLIENTS:
		if (parse_uint(v, 1, 4096, &u) < 0)
			why = "must be a number in 1..4096";
		else
			c->max_clients = (unsigned)u;
		break;
	case K_CLIENT_TIMEOUT:
		if (ctl_parse_duration_ms(v, &u) < 0 || u < 10 || u > 86400000)
			why = "must be a duration in 10ms..24h (e.g. 500ms, 30s, 5m)";
		else
			c->client_timeout_ms = u;
		break;
	case K_QUORUM: {
		struct agree_quorum_rule q;
		if (agree_quorum_parse(v, &q) < 0)
			why = "must be SERVICE=majority, SERVICE=N or SERVICE=N/D (0 < N <= D)";
		else
			r = list_add(&c->quorums, &c->nquorums, v);
		break;
	}
	case K_DOCKER_HOST: {
		struct sockaddr_un sa;
		if (strncmp(v, "unix://", 7) == 0)	/* DOCKER_HOST's spelling */
			v += 7;
		r = set_path(&c->docker_host, v);
		if (r == -EINVAL)
			why = "empty path";
		else if (r == 0 && strlen(c->docker_host) >= sizeof sa.sun_path)
			why = "path too long for a unix socket (107 bytes at most)";
		break;
	}
	case K_UNIT_DIR:
		r = set_path(&c->unit_dir, v);
		if (r == -EINVAL)
			why = "empty path";
		break;
	case K_OPERATORS_DIR:
		r = set_path(&c->operators_dir, v);
		if (r == -EINVAL)
			why = "empty path";
		break;
	case K_REQUIRE_ENROLMENT:
		if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
			c->require_enrolment = true;
		else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
			c->require_enrolment = false;
		else
			why = "must be true or false";
		break;
	case K_SYSTEMD_BUS:
		/* "" means: the system bus. sd-bus validates the address when connecting. */
		if (!*v) {
			free(c->systemd_bus);
			c->systemd_bus = NULL;
		} else if (!strchr(v, ':') || strlen(v) > 4096) {
			why = "must be a D-Bus address, e.g. unix:path=/run/systemd/private";
		} else {
			r = set_string(&c->systemd_bus, v);
		}
		break;
	case K_EVENT_HOOK:
		/* "" means: no hook (a drop-in or flag can turn off the file's hook). */
		if (!*v) {
			free(c->event_hook);
			c->event_hook = NULL;
			break;
		}
		r = set_path(&c->event_hook, v);
		break;
	case K_EVENT_HOOK_TIMEOUT:
		if (ctl_parse_duration_ms(v, &u) < 0 || u < 10 || u > 3600000)
			why = "must be a duration in 10ms..1h (e.g. 500ms, 10s, 5m)";
		else
			c->event_hook_timeout_ms = u;
		break;
	case K_EVENT_HOOK_MAX_RUNNING:
		if (parse_uint(v, 1, 64, &u) < 0)
			why = "must be a number in 1..64";
		else
			c->event_hook_max_running = (unsigned)u;
		break;
	case K_EVENT_HOOK_QUEUE:
		if (parse_uint(v, 0, 100000, &u) < 0)
			why = "must be a number in 0..100000";
		else
			c->event_hook_queue = (unsigned)u;
		break;
	case K_MAX_PAR_SWAPS:
		if (parse_uint(v, 0, 100000, &u) < 0)
			why = "must be a number in 0..100000 (0 = unlimited)";
		else
			c->max_parallel_swaps_per_site = (unsigned)u;
		break;
	case K_REAP_AFTER:
		if (ctl_parse_duration_ms(v, &u) < 0 || u < 1000 || u > 365ull * 86400000)
			why = "must be a duration from 1s to 365 days, e.g. 72h";
		else
			c->reap_after_ms = u;
		break;
	case K_RECONNECT:
		if (ctl_parse_duration_ms(v, &u) < 0 || u < 100 || u > 86400000)
			why = "must be a duration from 100ms to 24h, e.g. 30s";
		else
			c->reconnect_ms = u;
		break;
	case K_HTTP_API:
		if (agent_config_check_addr(v) < 0)
			why = "must be HOST:PORT or [IPV6]:PORT with a port in 1..65535";
		else
			r = set_string(&c->http_api, v);
		break;
	case K_HAPROXY_SOCKET:
		if (!*v || strlen(v) > 112)
			why = "must be a path, unix:PATH or tcp:IP:PORT (at most 107 bytes of path)";
		else
			r = set_string(&c->haproxy_socket, v);
		break;
	case K_HAPROXY_BACKEND:
		if (agent_config_check_backend(v) < 0)
			why = "must be SERVICE=BACKEND or SERVICE=BACKEND:SLOTPREFIX (names of "
			      "A-Z a-z 0-9 . _ -)";
		else
			r = list_add(&c->haproxy_backends, &c->nhaproxy_backends, v);
		break;
	case K_FAILOVER_SHARE:
		if (agent_config_parse_share(v, &c->failover_permille) < 0)
			why = "must be a share in 0..1 (e.g. 0.5) or a percentage (e.g. 50%)";
		break;
	case K_HAPROXY_SITE:
		/* the planner takes site names of these bytes only (traffic/traffic.h) */
		if (agent_config_check_name(v) < 0 || strlen(v) > 63)
			why = "must be a site name (1 to 63 of A-Z a-z 0-9 . _ -)";
		else
			r = set_string(&c->haproxy_site, v);
		break;
	case K__COUNT:
		break;
	}
	if (why) {
		snprintf(p->err, sizeof p->err, "%s: invalid value \"%.60s\": %s", cfg_keys[k], v,
			 why);
		return -EINVAL;
	}
	if (r == -E2BIG)
		snprintf(p->err, sizeof p->err, "%s: too many (256 at most)", cfg_keys[k]);
	else if (r < 0)
		snprintf(p->err, sizeof p->err, "%s: %s", cfg_keys[k], strerror(-r));
	return r;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_parse *p = user;
	if (p->err[0])
		return 0;	/* keep the first error */
	if (*section && strcmp(section, "agent") != 0) {
		snprintf(p->err, sizeof p->err, "unknown section [%.60s]", section);
		return 0;
	}
	for (int k = 0; k < K__COUNT; k++)
		if (strcmp(name, cfg_keys[k]) == 0)
			return cfg_set(p, (enum cfg_key)k, value) == 0;
	snprintf(p->err, sizeof p->err, "unknown key \"%.60s\"", name);
	return 0;
}

/*
 * Read one config file into p->cfg. A scalar key given twice in one file is an error; a later
 * file (a drop-in) overrides an earlier one, and repeatable keys accumulate across files.
 * @required: a missing file is an error (else it is skipped and 0 returned).
 */
static int read_file(struct cfg_parse *p, const char *path, bool required)
{
	struct agent_config *c = p->cfg;
	FILE *f = fopen(path, "r");
	if (!f) {
		int r = -errno;
		if (r == -ENOENT && !required)
			return 0;
		snprintf(p->err, sizeof p->err, "cannot read config file %.200s: %s", path,
			 strerror(-r));
		return r;
	}
	memset(p->seen, 0, sizeof p->seen);
	int line = ini_parse_file(f, ini_cb, p);
	fclose(f);
	if (line != 0) {
		char why[256];
		snprintf(why, sizeof why, "%.200s", p->err[0] ? p->err : "syntax error");
		snprintf(p->err, sizeof p->err, "%.150s:%d: %.200s", path, line > 0 ? line : 0,
			 why);
		return strstr(why, "out of memory") ? -ENOMEM : -EINVAL;
	}
	c->config_loaded = true;
	int r = list_add(&c->config_files, &c->nconfig_files, path);
	if (r < 0) {
		snprintf(p->err, sizeof p->err, "%s", r == -E2BIG ? "more than 256 config files"
								  : "out of memory");
		return r == -E2BIG ? -EINVAL : r;
	}
	return 0;
}

static int dropin_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

/* Byte order, not the locale's: the order files are read in must not depend on LANG. */
static int dropin_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every DIR/NAME.conf (NAME not starting with a dot) in byte order. @required: DIR must
 * exist. */
static int read_dropins(struct cfg_parse *p, const char *dir, bool required)
{
	struct dirent **names = NULL;
	int n = scandir(dir, &names, dropin_filter, dropin_cmp);
	int r = 0;
	if (n < 0) {
		r = -errno;
		if ((r == -ENOENT || r == -ENOTDIR) && !required)
			return 0;
		snprintf(p->err, sizeof p->err, "cannot read config directory %.200s: %s", dir,
			 strerror(-r));
		return r == -ENOMEM ? r : -EINVAL;
	}
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct stat st;
		if (r == 0) {
			snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
			/* a directory or a socket named x.conf is not a drop-in: skip it, as
			 * systemd does; a dangling symlink is an error (fopen says why) */
			if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
				;
			else
				r = read_file(p, path, true);
		}
		free(names[i]);
	}
	free(names);
	return r;
}

static int defaults(struct agent_config *c)
{
	char host[256] = "localhost";
	memset(c, 0, sizeof *c);
	if (gethostname(host, sizeof host - 1) < 0 || agent_config_check_name(host) < 0) {
		/* A hostname that is not a valid node name (too long, odd characters): keep
		 * its first label if that is valid, else "localhost". */
		char *dot = strchr(host, '.');
		if (dot)
			*dot = 0;
		if (agent_config_check_name(host) < 0)
			snprintf(host, sizeof host, "localhost");
	}
	c->log_level = AGENT_LOG_INFO;
	c->retain_revisions = 10;
	c->socket_mode = 0660;
	c->max_frame_size = CTL_FRAME_MAX_DEFAULT;
	c->max_clients = 64;
	c->client_timeout_ms = 30000;
	c->reap_after_ms = 72ull * 3600 * 1000;
	c->reconnect_ms = 30000;
	c->event_hook_timeout_ms = 10000;
	c->event_hook_max_running = 4;
	c->event_hook_queue = 256;
	c->failover_permille = 500;
	if (!(c->node_name = strdup(host)) || !(c->state_dir = strdup(AGENT_DEFAULT_STATE_DIR)) ||
	    !(c->socket_path = strdup(AGENT_DEFAULT_SOCKET)) ||
	    !(c->cluster = strdup(AGENT_DEFAULT_CLUSTER)) ||
	    !(c->bind = strdup(AGENT_DEFAULT_BIND)) ||
	    !(c->socket_group = strdup(AGENT_DEFAULT_GROUP)) ||
	    !(c->docker_host = strdup(AGENT_DEFAULT_DOCKER_HOST)) ||
	    !(c->unit_dir = strdup(AGENT_DEFAULT_UNIT_DIR)) ||
	    !(c->operators_dir = strdup(AGENT_DEFAULT_OPERATORS_DIR)) ||
	    !(c->config_path = strdup(AGENT_DEFAULT_CONFIG)))
		return -ENOMEM;
	return 0;
}

void agent_config_release(struct agent_config *c)
{
	if (!c)
		return;
	free(c->config_path);
	free(c->node_name);
	free(c->state_dir);
	free(c->socket_path);
	free(c->bind);
	free(c->advertise);
	list_free(&c->join, &c->njoin);
	free(c->keyring);
	free(c->cluster);
	list_free(&c->labels, &c->nlabels);
	list_free(&c->quorums, &c->nquorums);
	free(c->metrics);
	free(c->socket_group);
	free(c->docker_host);
	free(c->unit_dir);
	free(c->operators_dir);
	free(c->systemd_bus);
	free(c->event_hook);
	list_free(&c->config_files, &c->nconfig_files);
	free(c->config_dir);
	list_free(&c->haproxy_backends, &c->nhaproxy_backends);
	free(c->http_api);
	free(c->haproxy_socket);
	free(c->haproxy_site);
	memset(c, 0, sizeof *c);
}

int agent_config_load(int argc, char *const *argv, struct agent_config *ret, char *err,
		      size_t errlen)
{
	struct option opts[K__COUNT + 6];
	struct cfg_parse p;
	struct agent_config c;
	char **args = NULL;
	const char *config = NULL, *config_dir = NULL;
	bool check = false;
	int action = AGENT_CONFIG_RUN;
	int r;

	memset(&p, 0, sizeof p);
	p.cfg = &c;
	r = defaults(&c);
	if (r < 0) {
		snprintf(p.err, sizeof p.err, "out of memory");
		goto out;
	}
	for (int k = 0; k < K__COUNT; k++)
		opts[k] = (struct option){cfg_keys[k], required_argument, NULL, k};
	/* a switch: --require-enrolment alone says true */
	opts[K_REQUIRE_ENROLMENT].has_arg = optional_argument;
	opts[K__COUNT] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
	opts[K__COUNT + 1] = (struct option){"help", no_argument, NULL, OPT_HELP};
	opts[K__COUNT + 2] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	opts[K__COUNT + 3] = (struct option){"config-dir", required_argument, NULL, OPT_CONFIG_DIR};
	opts[K__COUNT + 4] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
	opts[K__COUNT + 5] = (struct option){NULL, 0, NULL, 0};

	/* getopt_long permutes argv: work on a copy so that a reload can parse it again. */
	args = calloc((size_t)argc + 1, sizeof *args);
	if (!args) {
		r = -ENOMEM;
		snprintf(p.err, sizeof p.err, "out of memory");
		goto out;
	}
	for (int i = 0; i < argc; i++)
		args[i] = argv[i];

	/* Pass 1: --config, --help, --version, and catch unknown options early. */
	opterr = 0;
	optind = 0;
	int o;
	while ((o = getopt_long(argc, args, ":", opts, NULL)) != -1) {
		if (o == OPT_CONFIG) {
			config = optarg;
		} else if (o == OPT_CONFIG_DIR) {
			config_dir = optarg;
		} else if (o == OPT_CHECK) {
			check = true;
		} else if (o == OPT_HELP) {
			action = action ? action : AGENT_CONFIG_HELP;
		} else if (o == OPT_VERSION) {
			action = action ? action : AGENT_CONFIG_VERSION;
		} else if (o == '?' || o == ':') {
			r = -EINVAL;
			if (o == ':')
				snprintf(p.err, sizeof p.err, "option '%.60s' needs a value",
					 args[optind - 1]);
			else
				snprintf(p.err, sizeof p.err, "unknown option '%.60s'",
					 args[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		r = -EINVAL;
		snprintf(p.err, sizeof p.err, "unexpected argument '%.60s'", args[optind]);
		goto out;
	}
	if (action != AGENT_CONFIG_RUN) {
		r = action;
		goto out;
	}

	/* The file, then the drop-ins. */
	if (config) {
		r = set_path(&c.config_path, config);
		if (r < 0) {
			snprintf(p.err, sizeof p.err, "--config: invalid path");
			goto out;
		}
	}
	r = read_file(&p, c.config_path, config != NULL);
	if (r < 0)
		goto out;
	if (config_dir) {
		r = set_path(&c.config_dir, config_dir);
	} else {
		size_t n = strlen(c.config_path) + 3;
		c.config_dir = malloc(n);
		r = c.config_dir ? 0 : -ENOMEM;
		if (c.config_dir)
			snprintf(c.config_dir, n, "%s.d", c.config_path);
	}
	if (r < 0) {
		snprintf(p.err, sizeof p.err, r == -ENOMEM ? "out of memory"
							   : "--config-dir: invalid path");
		goto out;
	}
	r = read_dropins(&p, c.config_dir, config_dir != NULL);
	if (r < 0)
		goto out;

	/* Pass 2: the flags override the file. */
	memset(p.seen, 0, sizeof p.seen);
	p.from_flags = true;
	optind = 0;
	for (int i = 0; i < argc; i++)
		args[i] = argv[i];
	while ((o = getopt_long(argc, args, ":", opts, NULL)) != -1) {
		if (o >= 0 && o < K__COUNT) {
			r = cfg_set(&p, (enum cfg_key)o,
				    optarg ? optarg : o == K_REQUIRE_ENROLMENT ? "true" : "");
			if (r < 0) {
				char why[256];
				snprintf(why, sizeof why, "%.250s", p.err);
				snprintf(p.err, sizeof p.err, "--%.250s", why);
				goto out;
			}
		}
	}
	r = check ? AGENT_CONFIG_CHECK : AGENT_CONFIG_RUN;
out:
	free(args);
	if (r < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s", p.err[0] ? p.err : strerror(-r));
		agent_config_release(&c);
		return r;
	}
	*ret = c;
	return r;
}
