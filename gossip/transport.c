/*
 * gossip/transport.c: the libuv driver of the gossip core (API in transport.h).
 *
 * Why the sockets are created by hand and then given to libuv (uv_udp_open, uv_tcp_open):
 * UDP and TCP must share one port, and with port 0 the kernel picks the UDP port first; the
 * TCP bind to that port may fail (taken by someone else's TCP socket). With raw fds we can
 * retry with a new ephemeral port before any libuv handle exists, so a failure never leaves
 * handles to close asynchronously.
 *
 * Timekeeping: the core's clock is uv_now(loop) (milliseconds, monotonic). After every call
 * into the core (tick, recv, put, join, anti-entropy) the tick timer is re-armed at the core's
 * next deadline, so the loop sleeps exactly until the core has work.
 *
 * Sending: env.send seals into a per-transport buffer and tries uv_udp_try_send; when the
 * socket buffer is full (EAGAIN) it falls back to uv_udp_send with a copy, so nothing is
 * dropped silently; a hard error is counted in send_errors (the core copes with loss).
 */
#include "gossip/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "gossip/antientropy.h"

#define DEAD_TRACK_MAX 1024
/* at most HEAL_SYNC_BURST heal-triggered exchanges per HEAL_SYNC_GAP_MS */
#define HEAL_SYNC_GAP_MS 1000
#define HEAL_SYNC_BURST	 3
#define RECV_BUF (64 * 1024)

struct gossip_transport {
	uv_loop_t *loop;
	struct gossip *core;
	struct gossip_crypto *crypto;
	struct gossip_keyring *kr;
	struct gossip_transport_config cfg;
	uv_udp_t udp;
	uv_tcp_t tcp;
	uv_timer_t tick;
	uv_timer_t sync_timer;
	uv_timer_t join_timer;
	uv_timer_t followup_timer;
	struct gossip__ae ae;
	struct {
		uint8_t proto;
		int (*on_accept)(void *ud, struct gossip_stream *s,
				 const uint8_t sender[GOSSIP_SENDER_LEN]);
		void *ud;
	} apps[8];
	size_t n_apps;
	int sock_family; /* AF_INET or AF_INET6 of both sockets */
	struct gossip_addr bound, advertised;
	struct gossip_addr seeds[GOSSIP_TRANSPORT_SEEDS_MAX];
	size_t n_seeds;
	/* members we saw suspect or dead: when one comes back alive, sync with it at once */
	uint8_t (*dead)[GOSSIP_ID_LEN];
	size_t n_dead;
	uint64_t heal_sync_at;	/* uv_now when the current rate-limit window began */
	unsigned heal_syncs;	/* exchanges started in that window */
	struct gossip_transport_stats stats;
	bool closing;
	bool need_full_sync; /* joined, and no initiated exchange has completed yet */
	unsigned followups;  /* follow-up exchanges still allowed after a join (transport.h) */
	int handles_open;
	bool ae_drained;
	void (*close_cb)(struct gossip_transport *t, void *ud);
	void *close_ud;
	size_t sbuf_cap;
	uint8_t *sbuf; /* sealed datagram being sent */
	uint8_t rbuf[RECV_BUF];
	uint8_t pbuf[RECV_BUF]; /* opened plaintext */
};

struct udp_send_req {
	uv_udp_send_t req;
	struct gossip_transport *t;
	size_t len;
	uint8_t data[];
};

/* ---- addresses -------------------------------------------------------------------------- */

static void addr_from_sockaddr(const struct sockaddr *sa, struct gossip_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		ret->family = GOSSIP_AF_INET;
		ret->port = ntohs(in->sin_port);
		memcpy(ret->ip, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		ret->port = ntohs(in6->sin6_port);
		if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
			ret->family = GOSSIP_AF_INET;
			memcpy(ret->ip, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			ret->family = GOSSIP_AF_INET6;
			memcpy(ret->ip, in6->sin6_addr.s6_addr, 16);
		}
	}
}

/* Into a sockaddr of @family (the sockets' family). @return 0 or -EAFNOSUPPORT. */
static int addr_to_sockaddr(const struct gossip_addr *a, int family, struct sockaddr_storage *ss,
			    socklen_t *ret_len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		if (a->family != GOSSIP_AF_INET)
			return -EAFNOSUPPORT;
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->ip, 4);
		*ret_len = sizeof(*in);
		return 0;
	}
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		if (a->family == GOSSIP_AF_INET) {
			in6->sin6_addr.s6_addr[10] = 0xff;
			in6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(in6->sin6_addr.s6_addr + 12, a->ip, 4);
		} else if (a->family == GOSSIP_AF_INET6) {
			memcpy(in6->sin6_addr.s6_addr, a->ip, 16);
		} else {
			return -EAFNOSUPPORT;
		}
		*ret_len = sizeof(*in6);
		return 0;
	}
}

int gossip_transport_parse_addr(const char *text, int default_port, struct gossip_addr *ret)
{
	char host[64];
	const char *port_s = NULL;
	size_t hlen;
	long port = default_port;
	struct sockaddr_storage ss;
	struct gossip_addr a;

	if (!text)
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close)
			return -EINVAL;
		hlen = (size_t)(close - text - 1);
		if (close[1] == ':')
			port_s = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
		if (hlen == 0 || hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		if (uv_ip6_addr(host, 0, (struct sockaddr_in6 *)&ss) < 0)
			return -EINVAL;
	} else {
		const char *colon = strchr(text, ':');

		if (colon && strchr(colon + 1, ':'))
			return -EINVAL; /* bare IPv6 needs brackets */
		hlen = colon ? (size_t)(colon - text) : strlen(text);
		if (hlen == 0 || hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, text, hlen);
		host[hlen] = '\0';
		if (colon)
			port_s = colon + 1;
		if (uv_ip4_addr(host, 0, (struct sockaddr_in *)&ss) < 0)
			return -EINVAL;
	}
	if (port_s) {
		char *end;

		if (*port_s < '0' || *port_s > '9')
			return -EINVAL;
		errno = 0;
		port = strtol(port_s, &end, 10);
		if (errno || *end != '\0')
			return -EINVAL;
	}
	if (port < 0 || port > 65535)
		return -EINVAL;
	addr_from_sockaddr((struct sockaddr *)&ss, &a);
	a.port = (uint16_t)port;
	*ret = a;
	return 0;
}

static bool addr_is_wildcard(const struct gossip_addr *a)
{
	static const uint8_t zero[16];

	return memcmp(a->ip, zero, a->family == GOSSIP_AF_INET ? 4 : 16) == 0;
}

/* ---- core plumbing ---------------------------------------------------------------------- */

static void tick_cb(uv_timer_t *timer);

void gossip_transport_kick(struct gossip_transport *t)
{
	uint64_t now, deadline;

	if (t->closing)
		return;
	now = uv_now(t->loop);
	deadline = gossip_next_deadline(t->core);
	uv_timer_start(&t->tick, tick_cb, deadline > now ? deadline - now : 0, 0);
}

/* The version ceiling follows the wall clock (gossip_set_version_ceiling). */
static void set_ceiling(struct gossip_transport *t)
{
	struct timespec ts;

	if (!t->cfg.record_ahead_ms || clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return;
	gossip_set_version_ceiling(t->core, (uint64_t)ts.tv_sec * 1000 +
						     (uint64_t)ts.tv_nsec / 1000000 +
						     t->cfg.record_ahead_ms);
}

static void tick_cb(uv_timer_t *timer)
{
	struct gossip_transport *t = timer->data;

	set_ceiling(t);
	(void)gossip_tick(t->core, uv_now(t->loop)); /* -ENOMEM: retried at the next tick */
	gossip_transport_kick(t);
}

static void udp_send_done(uv_udp_send_t *req, int status)
{
	struct udp_send_req *s = (struct udp_send_req *)req;

	if (status < 0) {
		s->t->stats.send_errors++;
	} else {
		s->t->stats.packets_out++;
		s->t->stats.bytes_out += s->len;
	}
	free(s);
}

static void env_send(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len)
{
	struct gossip_transport *t = ud;
	struct sockaddr_storage ss;
	socklen_t sl;
	size_t sealed = 0;
	uv_buf_t b;
	int r;

	if (t->closing)
		return;
	if (addr_to_sockaddr(to, t->sock_family, &ss, &sl) < 0 ||
	    gossip_crypto_seal(t->crypto, GOSSIP_SEAL_DATAGRAM, buf, len, t->sbuf, t->sbuf_cap,
			       &sealed) < 0) {
		t->stats.send_errors++;
		return;
	}
	b = uv_buf_init((char *)t->sbuf, (unsigned)sealed);
	r = uv_udp_try_send(&t->udp, &b, 1, (const struct sockaddr *)&ss);
	if (r >= 0) {
		t->stats.packets_out++;
		t->stats.bytes_out += sealed;
		return;
	}
	if (r == UV_EAGAIN || r == UV_ENOBUFS) {
		struct udp_send_req *s = malloc(sizeof(*s) + sealed);

		if (s) {
			memcpy(s->data, t->sbuf, sealed);
			s->t = t;
			s->len = sealed;
			b = uv_buf_init((char *)s->data, (unsigned)sealed);
			if (uv_udp_send(&s->req, &t->udp, &b, 1, (const struct sockaddr *)&ss,
					udp_send_done) == 0)
				return;
			free(s);
		}
	}
	t->stats.send_errors++;
}

static uint32_t env_random(void *ud)
{
	return randombytes_random();
}

static bool dead_find(struct gossip_transport *t, const uint8_t *id, size_t *ret_idx)
{
	for (size_t i = 0; i < t->n_dead; i++) {
		if (memcmp(t->dead[i], id, GOSSIP_ID_LEN) == 0) {
			*ret_idx = i;
			return true;
		}
	}
	return false;
}

static void env_on_member(void *ud, const struct gossip_member *m)
{
	struct gossip_transport *t = ud;
	size_t idx;

	if (!m->self) {
		if (m->state == GOSSIP_DEAD || m->state == GOSSIP_SUSPECT) {
			if (!dead_find(t, m->id, &idx) && t->n_dead < DEAD_TRACK_MAX)
				memcpy(t->dead[t->n_dead++], m->id, GOSSIP_ID_LEN);
		} else if (dead_find(t, m->id, &idx)) {
			memmove(t->dead[idx], t->dead[idx + 1],
				(t->n_dead - idx - 1) * sizeof(t->dead[0]));
			t->n_dead--;
			/* Back from suspect or dead (a restart, a healed partition, a pause):
			 * while it was unreachable, updates meant for it, or from it, may have
			 * run out of retransmissions; reconcile with it at once instead of
			 * waiting up to a periodic interval. Every member sees the return, so
			 * only ~3 of them act on it (each with probability 3/alive): no herd of
			 * N connections to one node; and each node starts at most
			 * HEAL_SYNC_BURST such exchanges per HEAL_SYNC_GAP_MS, so a storm of
			 * refuted suspicions (an overloaded host) costs little. */
			size_t alive = gossip_member_count(t->core, GOSSIP_ALIVE);
			uint64_t now = uv_now(t->loop);

			if (now - t->heal_sync_at >= HEAL_SYNC_GAP_MS) {
				t->heal_sync_at = now;
				t->heal_syncs = 0;
			}
			if (m->state == GOSSIP_ALIVE && !t->closing &&
			    t->heal_syncs < HEAL_SYNC_BURST &&
			    (alive <= 4 || randombytes_uniform((uint32_t)alive) < 3)) {
				t->heal_syncs++;
				(void)gossip_transport_sync(t, &m->addr);
			}
		}
	}
	if (t->cfg.on_member)
		t->cfg.on_member(t->cfg.ud, m);
}

static void env_on_record(void *ud, const struct gossip_record *r)
{
	struct gossip_transport *t = ud;

	if (t->cfg.on_record)
		t->cfg.on_record(t->cfg.ud, r);
}

static bool env_record_urgent(void *ud, const uint8_t owner[GOSSIP_ID_LEN], const void *key,
			      size_t klen)
{
	struct gossip_transport *t = ud;

	return t->cfg.record_urgent(t->cfg.ud, owner, key, klen);
}

/* ---- receiving -------------------------------------------------------------------------- */

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gossip_transport *t = h->data;

	*buf = uv_buf_init((char *)t->rbuf, sizeof(t->rbuf));
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *sa,
		     unsigned flags)
{
	struct gossip_transport *t = h->data;
	struct gossip_addr from;
	size_t plen = 0;
	int r;

	if (nread <= 0 || !sa || t->closing)
		return;
	if (flags & UV_UDP_PARTIAL) {
		t->stats.drops[GOSSIP_DROP_TOO_SHORT]++; /* over 64 KiB: never ours */
		return;
	}
	t->stats.packets_in++;
	t->stats.bytes_in += (uint64_t)nread;
	r = gossip_crypto_open(t->crypto, GOSSIP_SEAL_DATAGRAM, (const uint8_t *)buf->base,
			       (size_t)nread, t->pbuf, sizeof(t->pbuf), &plen, NULL);
	if (r < 0)
		return; /* counted by reason in the crypto stats */
	addr_from_sockaddr(sa, &from);
	r = gossip_recv(t->core, uv_now(t->loop), &from, t->pbuf, plen);
	if (r == -EBADMSG || r == -EPROTONOSUPPORT)
		t->stats.malformed++;
	gossip_transport_kick(t);
}

static void tcp_connection(uv_stream_t *server, int status)
{
	struct gossip_transport *t = server->data;

	if (status < 0 || t->closing)
		return;
	(void)gossip__ae_accept(&t->ae, server);
}

/* An inbound app stream: find the protocol's handler. */
static int app_accept(void *ud, uint8_t proto, struct gossip_stream *s,
		      const uint8_t sender[GOSSIP_SENDER_LEN])
{
	struct gossip_transport *t = ud;

	for (size_t i = 0; i < t->n_apps; i++)
		if (t->apps[i].proto == proto && t->apps[i].on_accept)
			return t->apps[i].on_accept(t->apps[i].ud, s, sender);
	return -EPROTONOSUPPORT;
}

struct member_ip {
	struct gossip_addr a;
	bool found;
};

static int member_ip_cb(void *ud, const struct gossip_member *m)
{
	struct member_ip *mi = ud;

	if (m->self || (m->state != GOSSIP_ALIVE && m->state != GOSSIP_SUSPECT) ||
	    m->addr.family != mi->a.family || memcmp(m->addr.ip, mi->a.ip, 16) != 0)
		return 0;
	mi->found = true;
	return 1;
}

/* Is @sa (an accepted connection's source) the IP of a known live member? A linear scan:
 * connections are accepted at a bounded rate and the table is bounded (gossip.h). */
static bool is_member_addr(void *ud, const struct sockaddr *sa)
{
	struct gossip_transport *t = ud;
	struct member_ip mi = { .found = false };

	addr_from_sockaddr(sa, &mi.a);
	gossip_member_foreach(t->core, member_ip_cb, &mi);
	return mi.found;
}

/* ---- periodic work ---------------------------------------------------------------------- */

static void ae_kick(void *ud)
{
	gossip_transport_kick(ud);
}

static void sync_timer_cb(uv_timer_t *timer);

/* @base ms +-25% at random, so that the cluster's exchanges do not line up. */
static uint64_t jittered(uint32_t base)
{
	return base - base / 4 + randombytes_uniform(base / 2 + 1);
}

static void sync_arm(struct gossip_transport *t)
{
	if (t->cfg.sync_interval_ms == UINT32_MAX || t->closing)
		return;
	uv_timer_start(&t->sync_timer, sync_timer_cb, jittered(t->cfg.sync_interval_ms), 0);
}

static void sync_timer_cb(uv_timer_t *timer)
{
	struct gossip_transport *t = timer->data;

	(void)gossip_transport_sync(t, NULL);
	sync_arm(t);
}

/* A short random delay before another try at the initial full sync (spreads a crowd of
 * joiners refused by a busy seed). */
static uint64_t join_sync_backoff(const struct gossip_transport *t)
{
	uint32_t base = t->cfg.join_retry_ms / 4 + 1;

	return base + randombytes_uniform(base * 2);
}

static void join_timer_cb(uv_timer_t *timer)
{
	struct gossip_transport *t = timer->data;
	size_t others;

	if (t->n_seeds == 0 || t->closing)
		return;
	others = gossip_member_count(t->core, GOSSIP_ALIVE) +
		 gossip_member_count(t->core, GOSSIP_SUSPECT) - 1;
	if (others == 0) {
		/* Alone (seeds not up yet, or all our peers died): knock again. */
		size_t pick = randombytes_uniform((uint32_t)t->n_seeds);

		if (gossip_join(t->core, uv_now(t->loop), t->seeds, t->n_seeds) > 0) {
			gossip_transport_kick(t);
			if (gossip_addr_cmp(&t->seeds[pick], &t->advertised) != 0)
				(void)gossip_transport_sync(t, &t->seeds[pick]);
		}
	} else if (t->need_full_sync) {
		/* Joined, but the initial full exchange failed (a seed at its stream cap, ...):
		 * retry with any live member, which also takes the load off the seeds. */
		(void)gossip_transport_sync(t, NULL);
	}
	uv_timer_start(&t->join_timer, join_timer_cb,
		       t->need_full_sync ? join_sync_backoff(t) : t->cfg.join_retry_ms, 0);
}

static void followup_cb(uv_timer_t *timer)
{
	struct gossip_transport *t = timer->data;
	int r;

	if (t->closing || !t->followups)
		return;
	r = gossip_transport_sync(t, NULL);
	if (r == -EBUSY) /* our outbound exchanges are all under way: shortly */
		uv_timer_start(&t->followup_timer, followup_cb, GOSSIP_TRANSPORT_FOLLOWUP_MS / 4, 0);
	else if (r == 0)
		t->followups--;
	else
		t->followups = 0; /* nobody to ask: the series ends here */
}

static void followup_arm(struct gossip_transport *t)
{
	uv_timer_start(&t->followup_timer, followup_cb, jittered(GOSSIP_TRANSPORT_FOLLOWUP_MS), 0);
}

static void ae_done(void *ud, bool initiator, bool ok, bool differed)
{
	struct gossip_transport *t = ud;

	if (!initiator || t->closing)
		return;
	if (t->need_full_sync) {
		if (!ok) {
			uv_timer_start(&t->join_timer, join_timer_cb, join_sync_backoff(t), 0);
			return;
		}
		t->need_full_sync = false;
		t->followups = GOSSIP_TRANSPORT_FOLLOWUPS;
		followup_arm(t);
	} else if (t->followups) {
		/* any exchange we initiated during the series counts: equal views end it */
		if (ok && !differed)
			t->followups = 0;
		else
			followup_arm(t);
	}
}

/* ---- public API ------------------------------------------------------------------------- */

void gossip_transport_config_default(struct gossip_transport_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	gossip_config_default(&cfg->core);
	cfg->cluster = "";
	cfg->sync_interval_ms = 30000;
	cfg->sync_timeout_ms = 10000;
	cfg->sync_max_streams = 8;
	cfg->sync_max_out = 2;
	cfg->join_retry_ms = 1000;
	cfg->app_max_streams = 32;
	cfg->record_ahead_ms = 30ull * 24 * 3600 * 1000;
	cfg->app_idle_ms = 30000;
	cfg->stream_auth_ms = 1000;
	cfg->stream_pending_max = 8;
	cfg->stream_pending_per_addr = 2;
	cfg->stream_pending_members = 32;
}

/* Open UDP and TCP sockets on the same address and port; retry ephemeral picks. */
static int bind_pair(const struct gossip_addr *want, int *ret_udp, int *ret_tcp,
		     struct gossip_addr *ret_bound, int *ret_family)
{
	int family = want->family == GOSSIP_AF_INET ? AF_INET : AF_INET6;
	int r = -EADDRINUSE;

	for (int attempt = 0; attempt < 16; attempt++) {
		struct sockaddr_storage ss;
		socklen_t sl;
		int u = -1, s = -1, one = 1;

		addr_to_sockaddr(want, family, &ss, &sl);
		u = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (u < 0 || s < 0) {
			r = -errno;
			goto fail;
		}
		/* A restarted agent must rebind while old connections sit in TIME_WAIT. */
		if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
			r = -errno;
			goto fail;
		}
		if (bind(u, (struct sockaddr *)&ss, sl) < 0) {
			r = -errno;
			goto fail;
		}
		sl = sizeof(ss);
		if (getsockname(u, (struct sockaddr *)&ss, &sl) < 0) {
			r = -errno;
			goto fail;
		}
		if (bind(s, (struct sockaddr *)&ss, sl) < 0) {
			r = -errno;
			if (r == -EADDRINUSE && want->port == 0) {
				close(u);
				close(s);
				continue; /* the kernel's UDP pick is taken in TCP: try another */
			}
			goto fail;
		}
		addr_from_sockaddr((struct sockaddr *)&ss, ret_bound);
		*ret_udp = u;
		*ret_tcp = s;
		*ret_family = family;
		return 0;
fail:
		if (u >= 0)
			close(u);
		if (s >= 0)
			close(s);
		return r;
	}
	return r;
}

int gossip_transport_new(uv_loop_t *loop, const struct gossip_transport_config *cfg,
			 struct gossip_transport **ret)
{
	struct gossip_transport *t = NULL;
	struct gossip_config core;
	struct gossip_env env;
	struct gossip_addr want;
	int ufd = -1, tfd = -1, r;

	if (!cfg->keyring || gossip_keyring_count(cfg->keyring) == 0 || !cfg->bind)
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOMEM;
	r = gossip_transport_parse_addr(cfg->bind, -1, &want);
	if (r < 0)
		return r;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->cfg = *cfg;
	t->kr = cfg->keyring;
	if (!t->cfg.cluster)
		t->cfg.cluster = "";
	if (!t->cfg.sync_interval_ms)
		t->cfg.sync_interval_ms = 30000;
	if (!t->cfg.sync_timeout_ms)
		t->cfg.sync_timeout_ms = 10000;
	if (!t->cfg.sync_max_streams)
		t->cfg.sync_max_streams = 8;
	if (!t->cfg.sync_max_out)
		t->cfg.sync_max_out = 2;
	if (!t->cfg.join_retry_ms)
		t->cfg.join_retry_ms = 1000;
	/* Strings of cfg are borrowed only during this call. */
	t->cfg.cluster = NULL;
	t->cfg.bind = NULL;
	t->cfg.advertise = NULL;
	t->cfg.core.name = NULL;
	t->cfg.core.labels = NULL;
	t->dead = calloc(DEAD_TRACK_MAX, sizeof(*t->dead));
	if (!t->dead) {
		r = -ENOMEM;
		goto fail;
	}

	core = cfg->core;
	if (!core.mtu)
		core.mtu = GOSSIP_MTU_DEFAULT;
	t->sbuf_cap = core.mtu;
	t->sbuf = malloc(t->sbuf_cap);
	if (!t->sbuf) {
		r = -ENOMEM;
		goto fail;
	}
	/* Our seal is larger than the core assumes: shrink its budget by the difference. */
	if (GOSSIP_SEAL_OVERHEAD_BYTES > GOSSIP_SEAL_OVERHEAD)
		core.mtu -= GOSSIP_SEAL_OVERHEAD_BYTES - GOSSIP_SEAL_OVERHEAD;

	r = bind_pair(&want, &ufd, &tfd, &t->bound, &t->sock_family);
	if (r < 0)
		goto fail;
	if (cfg->advertise) {
		r = gossip_transport_parse_addr(cfg->advertise, 0, &t->advertised);
		if (r < 0)
			goto fail;
		if (t->advertised.port == 0)
			t->advertised.port = t->bound.port;
	} else {
		t->advertised = t->bound;
	}
	if (addr_is_wildcard(&t->advertised)) {
		r = -EINVAL;
		goto fail;
	}
	core.addr = t->advertised;

	r = gossip_crypto_new(t->kr, cfg->cluster ? cfg->cluster : "", cfg->core.id,
			      cfg->counter_base, &t->crypto);
	if (r < 0)
		goto fail;
	memset(&env, 0, sizeof(env));
	env.send = env_send;
	env.random = env_random;
	env.on_member = env_on_member;
	env.on_record = env_on_record;
	env.record_urgent = cfg->record_urgent ? env_record_urgent : NULL;
	env.ud = t;
	r = gossip_new(&core, &env, &t->core);
	if (r < 0)
		goto fail;
	set_ceiling(t);	/* before the cluster restores and receives anything */

	/* Handles: once initialised they can only go away through uv_close, so any failure from
	 * here on closes them and frees @t from the last close callback (asynchronously). */
	uv_udp_init(loop, &t->udp);	/* AF_UNSPEC: no socket yet, cannot fail */
	uv_tcp_init(loop, &t->tcp);	/* same */
	uv_timer_init(loop, &t->tick);
	uv_timer_init(loop, &t->sync_timer);
	uv_timer_init(loop, &t->join_timer);
	uv_timer_init(loop, &t->followup_timer);
	t->udp.data = t->tcp.data = t->tick.data = t->sync_timer.data = t->join_timer.data = t;
	t->followup_timer.data = t;
	t->handles_open = 6;
	t->ae.loop = loop;
	t->ae.core = t->core;
	t->ae.crypto = t->crypto;
	t->ae.stats = &t->stats;
	t->ae.kick = ae_kick;
	t->ae.drained = NULL;
	t->ae.done = ae_done;
	t->ae.ud = t;
	t->ae.timeout_ms = t->cfg.sync_timeout_ms;
	t->ae.max_in = t->cfg.sync_max_streams;
	t->ae.max_out = t->cfg.sync_max_out;
	t->ae.app_accept = app_accept;
	t->ae.app_idle_ms = t->cfg.app_idle_ms ? t->cfg.app_idle_ms : 30000;
	t->ae.max_app = t->cfg.app_max_streams ? t->cfg.app_max_streams : 32;
	t->ae.auth_ms = t->cfg.stream_auth_ms ? t->cfg.stream_auth_ms : 1000;
	t->ae.pend_max = t->cfg.stream_pending_max ? t->cfg.stream_pending_max : 8;
	t->ae.pend_per_addr = t->cfg.stream_pending_per_addr ? t->cfg.stream_pending_per_addr : 2;
	t->ae.pend_member = t->cfg.stream_pending_members ? t->cfg.stream_pending_members : 32;
	t->ae.is_member_addr = is_member_addr;
	if (!addr_is_wildcard(&t->bound)) {
		socklen_t sl;
		struct gossip_addr src = t->bound;
		src.port = 0;
		t->ae.has_src = addr_to_sockaddr(&src, t->sock_family, &t->ae.src, &sl) == 0;
	}
	gossip__ae_init(&t->ae);

	r = uv_udp_open(&t->udp, ufd);
	if (r < 0)
		goto fail_handles;
	ufd = -1;
	r = uv_tcp_open(&t->tcp, tfd);
	if (r < 0)
		goto fail_handles;
	tfd = -1;
	r = uv_listen((uv_stream_t *)&t->tcp, 64, tcp_connection);
	if (r < 0)
		goto fail_handles;
	r = uv_udp_recv_start(&t->udp, udp_alloc, udp_recv);
	if (r < 0)
		goto fail_handles;

	uv_timer_start(&t->tick, tick_cb, 0, 0); /* the first tick, at once */
	sync_arm(t);
	*ret = t;
	return 0;

fail_handles:
	if (ufd >= 0)
		close(ufd);
	if (tfd >= 0)
		close(tfd);
	gossip_transport_close(t, NULL, NULL);
	return r;
fail:
	if (ufd >= 0)
		close(ufd);
	if (tfd >= 0)
		close(tfd);
	if (t) {
		gossip_free(t->core);
		gossip_crypto_free(t->crypto);
		free(t->sbuf);
		free(t->dead);
		free(t);
	}
	return r;
}

static void maybe_finish_close(struct gossip_transport *t)
{
	if (t->handles_open > 0 || !t->ae_drained)
		return;
	/* Everything is closed: tell the owner (the last moment @t is valid), then free. */
	if (t->close_cb)
		t->close_cb(t, t->close_ud);
	gossip_free(t->core);
	gossip_crypto_free(t->crypto);
	free(t->sbuf);
	free(t->dead);
	free(t);
}

static void handle_closed(uv_handle_t *h)
{
	struct gossip_transport *t = h->data;

	t->handles_open--;
	maybe_finish_close(t);
}

static void ae_drained(void *ud)
{
	struct gossip_transport *t = ud;

	t->ae_drained = true;
	maybe_finish_close(t);
}

void gossip_transport_close(struct gossip_transport *t,
			    void (*cb)(struct gossip_transport *t, void *ud), void *ud)
{
	if (!t || t->closing)
		return;
	t->closing = true;
	t->close_cb = cb;
	t->close_ud = ud;
	/* Handles first (their close callbacks run on the next loop iteration, so the drained
	 * callback below cannot free @t while handles are still being closed). */
	uv_close((uv_handle_t *)&t->udp, handle_closed);
	uv_close((uv_handle_t *)&t->tcp, handle_closed);
	uv_close((uv_handle_t *)&t->tick, handle_closed);
	uv_close((uv_handle_t *)&t->sync_timer, handle_closed);
	uv_close((uv_handle_t *)&t->join_timer, handle_closed);
	uv_close((uv_handle_t *)&t->followup_timer, handle_closed);
	t->ae.drained = ae_drained;
	gossip__ae_close_all(&t->ae);
}

int gossip_transport_join_addrs(struct gossip_transport *t, const struct gossip_addr *seeds,
				size_t n)
{
	int r;

	if (n > GOSSIP_TRANSPORT_SEEDS_MAX)
		return -EINVAL;
	if (t->closing)
		return -ESHUTDOWN;
	r = gossip_join(t->core, uv_now(t->loop), seeds, n);
	gossip_transport_kick(t);
	if (r < 0)
		return r;
	memcpy(t->seeds, seeds, n * sizeof(seeds[0]));
	t->n_seeds = n;
	if (n > 0) {
		t->need_full_sync = true;
		/* Full state transfer with one seed, as memberlist's push-pull on join. */
		size_t first = randombytes_uniform((uint32_t)n);

		for (size_t i = 0; i < n; i++) {
			const struct gossip_addr *s = &seeds[(first + i) % n];

			if (gossip_addr_cmp(s, &t->advertised) != 0) {
				(void)gossip_transport_sync(t, s);
				break;
			}
		}
		uv_timer_start(&t->join_timer, join_timer_cb, t->cfg.join_retry_ms, 0);
	}
	return r;
}

int gossip_transport_join(struct gossip_transport *t, const char *const *seeds, size_t n)
{
	struct gossip_addr addrs[GOSSIP_TRANSPORT_SEEDS_MAX];

	if (n > GOSSIP_TRANSPORT_SEEDS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (gossip_transport_parse_addr(seeds[i], -1, &addrs[i]) < 0)
			return -EINVAL;
	return gossip_transport_join_addrs(t, addrs, n);
}

int gossip_transport_leave(struct gossip_transport *t)
{
	int r = gossip_leave(t->core, uv_now(t->loop));

	t->need_full_sync = false;
	t->followups = 0;
	t->n_seeds = 0; /* no more re-joins */
	uv_timer_stop(&t->join_timer);
	uv_timer_stop(&t->followup_timer);
	gossip_transport_kick(t);
	return r;
}

int gossip_transport_record_put(struct gossip_transport *t, const uint8_t *key, size_t key_len,
				uint64_t version, const uint8_t *value, size_t value_len)
{
	int r = gossip_record_put(t->core, uv_now(t->loop), key, key_len, version, value,
				  value_len);

	gossip_transport_kick(t);
	return r;
}

int gossip_transport_set_labels(struct gossip_transport *t, const uint8_t *labels, size_t len)
{
	int r = gossip_set_labels(t->core, uv_now(t->loop), labels, len);

	gossip_transport_kick(t);
	return r;
}

int gossip_transport_sync(struct gossip_transport *t, const struct gossip_addr *peer)
{
	struct gossip_addr a;
	struct sockaddr_storage ss;
	socklen_t sl;
	int r;

	if (t->closing)
		return -ESHUTDOWN;
	if (peer) {
		a = *peer;
	} else {
		r = gossip_sync_pick(t->core, &a);
		if (r < 0)
			return r;
	}
	r = addr_to_sockaddr(&a, t->sock_family, &ss, &sl);
	if (r < 0)
		return r;
	return gossip__ae_connect(&t->ae, (const struct sockaddr *)&ss);
}

struct gossip *gossip_transport_core(struct gossip_transport *t)
{
	return t->core;
}

struct gossip_keyring *gossip_transport_keyring(struct gossip_transport *t)
{
	return t->kr;
}

void gossip_transport_addrs(const struct gossip_transport *t, struct gossip_addr *ret_bound,
			    struct gossip_addr *ret_advertised)
{
	if (ret_bound)
		*ret_bound = t->bound;
	if (ret_advertised)
		*ret_advertised = t->advertised;
}

void gossip_transport_stats(const struct gossip_transport *t, struct gossip_transport_stats *ret)
{
	const struct gossip_crypto_stats *cs = gossip_crypto_stats(t->crypto);

	*ret = t->stats;
	for (int i = 0; i < GOSSIP_DROP_MAX; i++)
		ret->drops[i] += cs->drops[i];
}

int gossip_transport_app_listen(struct gossip_transport *t, uint8_t proto,
				int (*on_accept)(void *ud, struct gossip_stream *s,
						 const uint8_t sender[GOSSIP_SENDER_LEN]),
				void *ud)
{
	for (size_t i = 0; i < t->n_apps; i++)
		if (t->apps[i].proto == proto) {
			t->apps[i].on_accept = on_accept;
			t->apps[i].ud = ud;
			return 0;
		}
	if (t->n_apps >= sizeof(t->apps) / sizeof(t->apps[0]))
		return -ENOSPC;
	t->apps[t->n_apps].proto = proto;
	t->apps[t->n_apps].on_accept = on_accept;
	t->apps[t->n_apps].ud = ud;
	t->n_apps++;
	return 0;
}

int gossip_transport_app_connect(struct gossip_transport *t, const struct gossip_addr *peer,
				 uint8_t proto, const struct gossip_stream_ops *ops, void *ud,
				 struct gossip_stream **ret)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int r;

	if (t->closing)
		return -ESHUTDOWN;
	r = addr_to_sockaddr(peer, t->sock_family, &ss, &sl);
	if (r < 0)
		return r;
	return gossip__ae_connect_app(&t->ae, (const struct sockaddr *)&ss, proto, ops, ud, ret);
}
