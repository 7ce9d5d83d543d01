/*
 * tests/integration/gossipd.c: a tiny standalone gossip daemon (one transport + core) for the
 * multi-process integration tests and the benchmark, until agentd carries the transport.
 *
 *   gossipd --bind IP:PORT [--advertise IP:PORT] [--join IP:PORT]... --keyring FILE
 *           [--name NAME] [--cluster NAME] [--state FILE] [--ctl SOCKET]
 *           [--probe-ms N] [--gossip-ms N] [--sync-ms N] [--mtu N]
 *   gossipd --ctl SOCKET --send "COMMAND"      (client: prints the reply, exit 0/1)
 *
 * Events go to stdout, one line each, prefixed with the wall clock in milliseconds (so lines
 * of several processes on one host can be compared):
 *
 *   <ms> ready <bound address> <id hex>
 *   <ms> member <name> <state> <incarnation> alive=<alive count seen by this node>
 *   <ms> record <owner id hex> <key> <version> <value>
 *   <ms> keyring reloaded primary=<id> keys=<n>     | keyring error <errno>
 *   <ms> left
 *
 * Control socket commands (unix stream socket, one line in, reply then close):
 *   put KEY VERSION VALUE     publish a record              -> "ok" | "error <errno>"
 *   count                     "alive=A suspect=S dead=D left=L records=R"
 *   members                   "<name> <state> <incarnation> <addr>" per member, then "."
 *   stats                     transport counters as key=value words
 *   reload                    reload the keyring file (also SIGHUP)
 *   leave                     leave the cluster and exit after the drain time (also SIGTERM)
 *
 * --state FILE keeps the node id and the last incarnation ("<id hex> <incarnation>"), so a
 * restarted gossipd is the same member and comes back at a higher incarnation.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "gossip/crypto.h"
#include "gossip/gossip.h"
#include "gossip/transport.h"

struct gd {
	uv_loop_t *loop;
	struct gossip_transport *t;
	struct gossip_keyring *kr;
	const char *keyring_path;
	const char *state_path;
	uint8_t id[GOSSIP_ID_LEN];
	uint64_t saved_inc;
	bool saved;
	uv_signal_t sighup, sigterm, sigint;
	uv_pipe_t ctl;
	bool ctl_open;
	uv_timer_t exit_timer;
	bool leaving;
};

struct ctl_client {
	uv_pipe_t pipe;
	struct gd *gd;
	char line[2048];
	size_t len;
	bool replied;
};

struct ctl_write {
	uv_write_t req;
	char *buf;
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void state_save(struct gd *gd, uint64_t inc)
{
	char idh[2 * GOSSIP_ID_LEN + 1], tmp[4096];
	FILE *f;

	if (!gd->state_path || (gd->saved && inc <= gd->saved_inc))
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", gd->state_path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	hex(gd->id, GOSSIP_ID_LEN, idh);
	fprintf(f, "%s %" PRIu64 "\n", idh, inc);
	if (fclose(f) == 0 && rename(tmp, gd->state_path) == 0) {
		gd->saved_inc = inc;
		gd->saved = true;
	}
}

static void on_member(void *ud, const struct gossip_member *m)
{
	struct gd *gd = ud;
	struct gossip *core = gossip_transport_core(gd->t);

	printf("%" PRIu64 " member %s %s %" PRIu64 " alive=%zu\n", wall_ms(), m->name,
	       gossip_state_name(m->state), m->incarnation,
	       gossip_member_count(core, GOSSIP_ALIVE));
	if (m->self)
		state_save(gd, m->incarnation);
}

static void on_record(void *ud, const struct gossip_record *r)
{
	char owner[2 * GOSSIP_ID_LEN + 1];

	hex(r->owner, GOSSIP_ID_LEN, owner);
	printf("%" PRIu64 " record %s %.*s %" PRIu64 " %.*s\n", wall_ms(), owner, (int)r->key_len,
	       (const char *)r->key, r->version, (int)r->value_len, (const char *)r->value);
}

static int reload_keyring(struct gd *gd)
{
	int r = gossip_keyring_load(gd->kr, gd->keyring_path);

	if (r < 0)
		printf("%" PRIu64 " keyring error %d\n", wall_ms(), -r);
	else
		printf("%" PRIu64 " keyring reloaded primary=%02x keys=%zu\n", wall_ms(),
		       gossip_keyring_primary(gd->kr), gossip_keyring_count(gd->kr));
	return r;
}

static void closed_cb(uv_handle_t *h)
{
}

static void transport_closed(struct gossip_transport *t, void *ud)
{
	struct gd *gd = ud;

	gd->t = NULL;
	uv_close((uv_handle_t *)&gd->sighup, closed_cb);
	uv_close((uv_handle_t *)&gd->sigterm, closed_cb);
	uv_close((uv_handle_t *)&gd->sigint, closed_cb);
	uv_close((uv_handle_t *)&gd->exit_timer, closed_cb);
	if (gd->ctl_open)
		uv_close((uv_handle_t *)&gd->ctl, closed_cb);
}

static void exit_timer_cb(uv_timer_t *timer)
{
	struct gd *gd = timer->data;

	gossip_transport_close(gd->t, transport_closed, gd);
}

static void start_leave(struct gd *gd)
{
	if (gd->leaving || !gd->t)
		return;
	gd->leaving = true;
	gossip_transport_leave(gd->t);
	printf("%" PRIu64 " left\n", wall_ms());
	uv_timer_start(&gd->exit_timer, exit_timer_cb,
		       gossip_leave_drain_ms(gossip_transport_core(gd->t)), 0);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct gd *gd = s->data;

	if (signum == SIGHUP)
		(void)reload_keyring(gd);
	else
		start_leave(gd);
}

/* ---- control socket --------------------------------------------------------------------- */

static void client_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ctl_written(uv_write_t *req, int status)
{
	struct ctl_write *w = (struct ctl_write *)req;
	struct ctl_client *c = req->handle->data;

	free(w->buf);
	free(w);
	uv_close((uv_handle_t *)&c->pipe, client_closed);
}

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
}

static int member_line(void *ud, const struct gossip_member *m)
{
	char a[64];

	sb_printf(ud, "%s %s %" PRIu64 " %s\n", m->name, gossip_state_name(m->state),
		  m->incarnation, gossip_addr_format(&m->addr, a, sizeof(a)));
	return 0;
}

static void ctl_handle(struct ctl_client *c)
{
	struct gd *gd = c->gd;
	struct sbuf out = {0};
	char *cmd = c->line, *arg;
	uv_buf_t buf;
	struct ctl_write *w;

	arg = strchr(cmd, ' ');
	if (arg)
		*arg++ = '\0';
	if (!gd->t) {
		sb_printf(&out, "error closing\n");
	} else if (strcmp(cmd, "put") == 0 && arg) {
		char *key = strtok(arg, " "), *ver = strtok(NULL, " "), *val = strtok(NULL, "");
		int r = -EINVAL;

		if (key && ver)
			r = gossip_transport_record_put(
				gd->t, (const uint8_t *)key, strlen(key), strtoull(ver, NULL, 10),
				(const uint8_t *)(val ? val : ""), val ? strlen(val) : 0);
		if (r < 0)
			sb_printf(&out, "error %d\n", -r);
		else
			sb_printf(&out, "ok %" PRIu64 "\n", wall_ms());
	} else if (strcmp(cmd, "count") == 0) {
		struct gossip *g = gossip_transport_core(gd->t);

		sb_printf(&out, "alive=%zu suspect=%zu dead=%zu left=%zu records=%zu\n",
			  gossip_member_count(g, GOSSIP_ALIVE),
			  gossip_member_count(g, GOSSIP_SUSPECT),
			  gossip_member_count(g, GOSSIP_DEAD), gossip_member_count(g, GOSSIP_LEFT),
			  gossip_record_count(g));
	} else if (strcmp(cmd, "members") == 0) {
		gossip_member_foreach(gossip_transport_core(gd->t), member_line, &out);
		sb_printf(&out, ".\n");
	} else if (strcmp(cmd, "stats") == 0) {
		struct gossip_transport_stats st;

		gossip_transport_stats(gd->t, &st);
		sb_printf(&out,
			  "packets_in=%" PRIu64 " packets_out=%" PRIu64 " bytes_in=%" PRIu64
			  " bytes_out=%" PRIu64 " send_errors=%" PRIu64 " malformed=%" PRIu64
			  " sync_started=%" PRIu64 " sync_accepted=%" PRIu64 " sync_ok=%" PRIu64
			  " sync_failed=%" PRIu64 " sync_refused=%" PRIu64 " sync_applied=%" PRIu64
			  " stream_bytes_in=%" PRIu64 " stream_bytes_out=%" PRIu64,
			  st.packets_in, st.packets_out, st.bytes_in, st.bytes_out, st.send_errors,
			  st.malformed, st.sync_started, st.sync_accepted, st.sync_ok,
			  st.sync_failed, st.sync_refused, st.sync_applied, st.stream_bytes_in,
			  st.stream_bytes_out);
		for (int i = 0; i < GOSSIP_DROP_MAX; i++)
			sb_printf(&out, " drop_%s=%" PRIu64, gossip_drop_name(i), st.drops[i]);
		sb_printf(&out, "\n");
	} else if (strcmp(cmd, "reload") == 0) {
		int r = reload_keyring(gd);

		sb_printf(&out, r < 0 ? "error %d\n" : "ok\n", -r);
	} else if (strcmp(cmd, "leave") == 0) {
		start_leave(gd);
		sb_printf(&out, "ok\n");
	} else {
		sb_printf(&out, "error unknown command\n");
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		abort();
	w->buf = out.p;
	buf = uv_buf_init(out.p, (unsigned)out.len);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, ctl_written) < 0) {
		free(w->buf);
		free(w);
		uv_close((uv_handle_t *)&c->pipe, client_closed);
	}
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *c = h->data;

	*buf = uv_buf_init(c->line + c->len, (unsigned)(sizeof(c->line) - 1 - c->len));
}

static void ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *c = s->data;
	char *nl;

	if (c->replied)
		return;
	if (nread < 0 || (nread == 0 && c->len == sizeof(c->line) - 1)) {
		c->replied = true;
		uv_close((uv_handle_t *)s, client_closed);
		return;
	}
	c->len += (size_t)nread;
	c->line[c->len] = '\0';
	nl = strchr(c->line, '\n');
	if (!nl && c->len < sizeof(c->line) - 1)
		return;
	if (nl)
		*nl = '\0';
	c->replied = true;
	uv_read_stop(s);
	ctl_handle(c);
}

static void ctl_connection(uv_stream_t *server, int status)
{
	struct gd *gd = server->data;
	struct ctl_client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->gd = gd;
	uv_pipe_init(gd->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read) < 0)
		uv_close((uv_handle_t *)&c->pipe, client_closed);
}

/* ---- client mode ------------------------------------------------------------------------ */

static int client(const char *path, const char *cmd)
{
	struct sockaddr_un sa;
	char buf[4096];
	int fd, ok = 1;
	ssize_t n;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return 2;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "gossipd: cannot connect to '%s': %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (write(fd, cmd, strlen(cmd)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (ok == 1 && strncmp(buf, "error", 5) != 0)
			ok = 0;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	close(fd);
	return ok;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: gossipd --bind IP:PORT --keyring FILE [--advertise IP:PORT] "
			"[--join IP:PORT]... [--name NAME] [--cluster NAME] [--state FILE] "
			"[--ctl SOCKET] [--probe-ms N] [--gossip-ms N] [--sync-ms N] [--mtu N]\n"
			"       gossipd --ctl SOCKET --send COMMAND\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bind", required_argument, NULL, 'b'},
		{"advertise", required_argument, NULL, 'a'},
		{"join", required_argument, NULL, 'j'},
		{"keyring", required_argument, NULL, 'k'},
		{"name", required_argument, NULL, 'n'},
		{"cluster", required_argument, NULL, 'c'},
		{"state", required_argument, NULL, 's'},
		{"ctl", required_argument, NULL, 'C'},
		{"send", required_argument, NULL, 'S'},
		{"probe-ms", required_argument, NULL, 'p'},
		{"gossip-ms", required_argument, NULL, 'g'},
		{"sync-ms", required_argument, NULL, 'y'},
		{"mtu", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct gossip_transport_config cfg;
	struct gd gd;
	const char *joins[GOSSIP_TRANSPORT_SEEDS_MAX];
	size_t n_joins = 0;
	const char *ctl = NULL, *send = NULL, *name = NULL;
	char hostname[GOSSIP_NAME_MAX + 1];
	int c, r, ret = 1;

	memset(&gd, 0, sizeof(gd));
	gossip_transport_config_default(&cfg);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			cfg.bind = optarg;
			break;
		case 'a':
			cfg.advertise = optarg;
			break;
		case 'j':
			if (n_joins < GOSSIP_TRANSPORT_SEEDS_MAX)
				joins[n_joins++] = optarg;
			break;
		case 'k':
			gd.keyring_path = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'c':
			cfg.cluster = optarg;
			break;
		case 's':
			gd.state_path = optarg;
			break;
		case 'C':
			ctl = optarg;
			break;
		case 'S':
			send = optarg;
			break;
		case 'p':
			cfg.core.probe_interval_ms = (uint32_t)atoi(optarg);
			cfg.core.probe_timeout_ms = cfg.core.probe_interval_ms / 2;
			break;
		case 'g':
			cfg.core.gossip_interval_ms = (uint32_t)atoi(optarg);
			break;
		case 'y':
			cfg.sync_interval_ms = (uint32_t)atoi(optarg);
			break;
		case 'm':
			cfg.core.mtu = (size_t)atoi(optarg);
			break;
		default:
			usage();
			return c == 'h' ? 0 : 2;
		}
	}
	if (send) {
		if (!ctl) {
			usage();
			return 2;
		}
		return client(ctl, send);
	}
	if (!cfg.bind || !gd.keyring_path || optind != argc) {
		usage();
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0)
		return 1;
	if (!name) {
		if (gethostname(hostname, sizeof(hostname)) < 0)
			strcpy(hostname, "gossipd");
		hostname[GOSSIP_NAME_MAX] = '\0';
		name = hostname;
	}
	cfg.core.name = name;
	randombytes_buf(gd.id, sizeof(gd.id));
	cfg.core.incarnation = 0;
	if (gd.state_path) {
		FILE *f = fopen(gd.state_path, "r");
		char idh[64];
		uint64_t inc;

		if (f) {
			if (fscanf(f, "%63s %" SCNu64, idh, &inc) == 2 && strlen(idh) == 32 &&
			    unhex(idh, gd.id, GOSSIP_ID_LEN) == 0) {
				cfg.core.incarnation = inc + 1;
				gd.saved_inc = inc;
			}
			fclose(f);
		}
	}
	memcpy(cfg.core.id, gd.id, GOSSIP_ID_LEN);

	r = gossip_keyring_new(&gd.kr);
	if (r == 0)
		r = gossip_keyring_load(gd.kr, gd.keyring_path);
	if (r < 0) {
		fprintf(stderr, "gossipd: keyring '%s': %s\n", gd.keyring_path, strerror(-r));
		goto out;
	}
	cfg.keyring = gd.kr;
	cfg.on_member = on_member;
	cfg.on_record = on_record;
	cfg.ud = &gd;
	gd.loop = uv_default_loop();
	r = gossip_transport_new(gd.loop, &cfg, &gd.t);
	if (r < 0) {
		fprintf(stderr, "gossipd: cannot start on '%s': %s\n", cfg.bind, strerror(-r));
		goto out;
	}
	state_save(&gd, cfg.core.incarnation);
	uv_signal_init(gd.loop, &gd.sighup);
	uv_signal_init(gd.loop, &gd.sigterm);
	uv_signal_init(gd.loop, &gd.sigint);
	gd.sighup.data = gd.sigterm.data = gd.sigint.data = &gd;
	uv_signal_start(&gd.sighup, signal_cb, SIGHUP);
	uv_signal_start(&gd.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&gd.sigint, signal_cb, SIGINT);
	uv_timer_init(gd.loop, &gd.exit_timer);
	gd.exit_timer.data = &gd;
	if (ctl) {
		unlink(ctl);
		uv_pipe_init(gd.loop, &gd.ctl, 0);
		gd.ctl.data = &gd;
		gd.ctl_open = true;
		if (uv_pipe_bind(&gd.ctl, ctl) < 0 ||
		    uv_listen((uv_stream_t *)&gd.ctl, 16, ctl_connection) < 0) {
			fprintf(stderr, "gossipd: cannot listen on '%s'\n", ctl);
			gossip_transport_close(gd.t, transport_closed, &gd);
			uv_run(gd.loop, UV_RUN_DEFAULT);
			goto out;
		}
	}
	{
		struct gossip_addr b;
		char a[64], idh[2 * GOSSIP_ID_LEN + 1];

		gossip_transport_addrs(gd.t, &b, NULL);
		hex(gd.id, GOSSIP_ID_LEN, idh);
		printf("%" PRIu64 " ready %s %s\n", wall_ms(), gossip_addr_format(&b, a, sizeof(a)),
		       idh);
	}
	if (n_joins > 0) {
		r = gossip_transport_join(gd.t, joins, n_joins);
		if (r < 0) {
			fprintf(stderr, "gossipd: bad --join address\n");
			gossip_transport_close(gd.t, transport_closed, &gd);
			uv_run(gd.loop, UV_RUN_DEFAULT);
			goto out;
		}
	}
	uv_run(gd.loop, UV_RUN_DEFAULT);
	ret = 0;
out:
	if (ctl)
		unlink(ctl);
	if (gd.loop)
		uv_loop_close(gd.loop);
	gossip_keyring_free(gd.kr);
	return ret;
}
