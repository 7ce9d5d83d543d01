/*
 * gossip/antientropy.c: one TCP push-pull exchange per connection (protocol in antientropy.h).
 *
 * A connection owns two handles (the TCP stream and its deadline timer) and is freed when both
 * close callbacks have run. Writes own their buffer (prefix + sealed frame) in the write
 * request; uv_close cancels pending writes and their callbacks free them. The receive side
 * keeps at most one frame plus one read in memory: the frame length is checked against
 * GOSSIP_FRAME_MAX as soon as its 4-byte prefix arrives, before anything is buffered, so a
 * peer without the key can make us hold at most ~1 MiB per connection for timeout_ms, and at
 * most max_in connections at once.
 */
#include "gossip/antientropy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "gossip/proto.h"

enum ae_state {
	AE_CONNECTING,	 /* A: waiting for connect */
	AE_WAIT_SUMMARY, /* A: SUMMARY sent, waiting for SAME or DIFFER */
	AE_WAIT_DIFF,	 /* A: waiting for DIFF(B->A); B: waiting for DIFF(A->B) */
	AE_WAIT_DIGEST,	 /* A: waiting for DIGEST(B); B: waiting for DIGEST(A) */
	AE_FLUSHING,	 /* A: last frame written, close after the write completes */
	AE_DONE,	 /* closing */
	AE_APP,		 /* an app stream: frames go to the stream's ops */
};

/* The public face of an app connection (embedded in its conn). */
struct gossip_stream {
	struct gossip__ae_conn *conn;
	const struct gossip_stream_ops *ops;
	void *ud;
	uint8_t proto;
};

struct gossip__ae_conn {
	struct gossip__ae *ae;
	struct gossip__ae_conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	bool initiator, counted_done, refused;
	bool differed;		/* A: the responder answered DIFFER: our views were not equal */
	bool summary_seen;	/* B: a SUMMARY came (a second one is a protocol error) */
	int state;
	int handles_open;
	uint8_t peer[GOSSIP_SENDER_LEN];
	bool have_peer;
	uint8_t *rbuf;
	size_t rlen, rcap;
	bool is_app;		/* counted in n_app_in / n_app_out instead of n_in / n_out */
	/* accepted and not yet proven (no frame opened): holds a pending slot, not n_in */
	bool pending, pend_member;
	uint8_t src[17];	/* accepted: the source address (family byte, then 4 or 16) */
	struct gossip_stream app;
};

struct ae_write {
	uv_write_t req;
	struct gossip__ae_conn *conn;
	size_t len;
	uint8_t data[]; /* prefix + sealed frame */
};

#define AE_SUMMARY_HASH 16 /* BLAKE2b-128 of a whole digest */

/* Room in one frame for a core buffer. */
#define AE_PLAIN_MAX (GOSSIP_FRAME_MAX - GOSSIP_SEAL_OVERHEAD_BYTES)

void gossip__ae_init(struct gossip__ae *ae)
{
	ae->conns = NULL;
	ae->n_in = ae->n_out = ae->n_conns = 0;
	ae->n_pend = ae->n_pend_member = 0;
	ae->closing = false;
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct gossip__ae_conn *c = h->data;
	struct gossip__ae *ae = c->ae;

	if (--c->handles_open > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		ae->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->pending) {
		if (c->pend_member)
			ae->n_pend_member--;
		else
			ae->n_pend--;
	} else if (c->is_app) {
		if (c->initiator)
			ae->n_app_out--;
		else
			ae->n_app_in--;
	} else if (c->initiator) {
		ae->n_out--;
	} else if (!c->refused) {
		ae->n_in--;
	}
	ae->n_conns--;
	free(c->rbuf);
	free(c);
	if (ae->closing && ae->n_conns == 0 && ae->drained)
		ae->drained(ae->ud);
}

/* End the connection; @ok says whether the exchange completed. Idempotent. */
static void conn_close_handles(struct gossip__ae_conn *c)
{
	if (c->state != AE_DONE) {
		c->state = AE_DONE;
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
		uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	}
}

/* End an app stream with @err, telling its owner (once). */
static void app_end(struct gossip__ae_conn *c, int err)
{
	const struct gossip_stream_ops *ops = c->app.ops;

	if (c->state == AE_DONE)
		return;
	conn_close_handles(c);
	c->app.ops = NULL;
	if (ops && ops->on_close)
		ops->on_close(&c->app, c->app.ud, err);
}

static void conn_end(struct gossip__ae_conn *c, bool ok)
{
	bool report = false;

	if (c->is_app) {
		app_end(c, ok ? 0 : -ECONNRESET);
		return;
	}

	if (!c->counted_done) {
		c->counted_done = true;
		if (!c->refused) {
			if (ok)
				c->ae->stats->sync_ok++;
			else
				c->ae->stats->sync_failed++;
			report = true;
		}
	}
	if (c->state != AE_DONE) {
		c->state = AE_DONE;
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
		uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	}
	/* Last: the callback may start another exchange (the handles above are already closing,
	 * and @c stays allocated until their close callbacks). */
	if (report && c->ae->done && !c->ae->closing)
		c->ae->done(c->ae->ud, c->initiator, ok, c->differed);
}

static void conn_timeout(uv_timer_t *timer)
{
	struct gossip__ae_conn *c = timer->data;

	if (c->pending) {
		/* an unproven connection that did not show the key in time: no exchange, no
		 * stream, nothing to report but the count */
		c->ae->stats->stream_unproven_closed++;
		conn_close_handles(c);
		return;
	}
	if (c->is_app)
		app_end(c, -ETIMEDOUT);
	else
		conn_end(c, false);
}

/* App streams: any progress pushes the idle deadline. */
static void app_touch(struct gossip__ae_conn *c)
{
	if (c->is_app && c->state != AE_DONE)
		uv_timer_start(&c->timer, conn_timeout, c->ae->app_idle_ms, 0);
}

static void write_done(uv_write_t *req, int status)
{
	struct ae_write *w = (struct ae_write *)req;
	struct gossip__ae_conn *c = w->conn;

	free(w);
	if (c->state == AE_DONE)
		return;
	if (c->is_app) {
		if (status < 0)
			app_end(c, status);
		else
			app_touch(c);
		return;
	}
	if (status < 0) {
		conn_end(c, false);
		return;
	}
	if (c->state == AE_FLUSHING)
		conn_end(c, true);
}

/* Seal @plain into one frame and queue it. @return 0 or -errno (the caller ends the conn). */
static int conn_send(struct gossip__ae_conn *c, const uint8_t *plain, size_t len)
{
	struct ae_write *w;
	size_t sealed = 0;
	uv_buf_t buf;
	int r;

	if (len > AE_PLAIN_MAX)
		return -EMSGSIZE;
	if (c->state == AE_DONE)
		return -EPIPE;
	w = malloc(sizeof(*w) + GOSSIP_FRAME_PREFIX + len + GOSSIP_SEAL_OVERHEAD_BYTES);
	if (!w)
		return -ENOMEM;
	r = gossip_crypto_seal(c->ae->crypto, GOSSIP_SEAL_STREAM, plain, len,
			       w->data + GOSSIP_FRAME_PREFIX, len + GOSSIP_SEAL_OVERHEAD_BYTES,
			       &sealed);
	if (r < 0) {
		free(w);
		return r;
	}
	gossip_frame_put_len(w->data, (uint32_t)sealed);
	w->conn = c;
	w->len = GOSSIP_FRAME_PREFIX + sealed;
	buf = uv_buf_init((char *)w->data, (unsigned)w->len);
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_done);
	if (r < 0) {
		free(w);
		return r;
	}
	c->ae->stats->stream_bytes_out += w->len;
	return 0;
}

static int send_digest(struct gossip__ae_conn *c)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = gossip_sync_digest(c->ae->core, &buf, &len);

	if (r < 0)
		return r;
	r = conn_send(c, buf, len);
	free(buf);
	return r;
}

/* SUMMARY/SAME frame: the tag byte and a hash of this node's whole digest. */
static int summary(struct gossip__ae_conn *c, uint8_t tag, uint8_t out[1 + AE_SUMMARY_HASH])
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = gossip_sync_digest(c->ae->core, &buf, &len);

	if (r < 0)
		return r;
	/* Hash what follows the sender id: two nodes with the same view have the same digest
	 * but for who sent it. */
	const uint8_t *pos = buf, *end = buf + len, *id;

	if (gossip__sync_open(&pos, end, GOSSIP_SYNC_DIGEST, 6, &id) < 0) {
		free(buf);
		return -EBADMSG; /* cannot happen: our own digest */
	}
	out[0] = tag;
	crypto_generichash(out + 1, AE_SUMMARY_HASH, pos, (size_t)(end - pos), NULL, 0);
	free(buf);
	return 0;
}

static int send_summary(struct gossip__ae_conn *c)
{
	uint8_t f[1 + AE_SUMMARY_HASH];
	int r = summary(c, GOSSIP__AE_SUMMARY, f);

	return r < 0 ? r : conn_send(c, f, sizeof(f));
}

/* B: A's SUMMARY. The same digest: say SAME and end (nothing differs: the digests would be
 * equal and both diffs empty); otherwise ask for the digest. @return 0 or -errno. */
static int on_summary(struct gossip__ae_conn *c, const uint8_t *plain, size_t len)
{
	uint8_t f[1 + AE_SUMMARY_HASH];
	int r;

	if (len != sizeof(f) || c->summary_seen)
		return -EPROTO;
	c->summary_seen = true;
	r = summary(c, GOSSIP__AE_SUMMARY, f);
	if (r < 0)
		return r;
	if (sodium_memcmp(f + 1, plain + 1, AE_SUMMARY_HASH) == 0) {
		r = conn_send(c, f, sizeof(f));
		if (r == 0)
			c->state = AE_FLUSHING;
		return r;
	}
	f[0] = GOSSIP__AE_DIFFER;
	return conn_send(c, f, 1);
}

static int send_diff(struct gossip__ae_conn *c, const uint8_t *digest, size_t dlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = gossip_sync_diff(c->ae->core, uv_now(c->ae->loop), digest, dlen, AE_PLAIN_MAX,
				 &buf, &len);

	c->ae->kick(c->ae->ud); /* a refutation may have been queued */
	if (r < 0)
		return r;
	r = conn_send(c, buf, len);
	free(buf);
	return r;
}

static int apply_diff(struct gossip__ae_conn *c, const uint8_t *buf, size_t len)
{
	int r = gossip_sync_apply(c->ae->core, uv_now(c->ae->loop), buf, len);

	c->ae->kick(c->ae->ud);
	if (r < 0)
		return r;
	c->ae->stats->sync_applied += (uint64_t)r;
	return 0;
}

/* The first frame of an accepted connection asks for an app stream: convert the connection
 * and hand it to the handler. @return 0 to go on, 2 when refused (ended quietly), <0. */
static int conn_to_app(struct gossip__ae_conn *c, const uint8_t *plain, size_t len)
{
	struct gossip__ae *ae = c->ae;
	int r;

	if (len != 2)
		return -EPROTO;
	c->counted_done = true;
	c->is_app = true;
	c->state = AE_APP;
	c->app.conn = c;
	c->app.proto = plain[1];
	if (ae->closing || !ae->app_accept || ae->n_app_in >= ae->max_app) {
		/* refused: no owner yet, so no callback */
		ae->n_app_in++; /* balanced in conn_handle_closed */
		ae->stats->app_refused++;
		conn_close_handles(c);
		return 2;
	}
	ae->n_app_in++;
	app_touch(c);
	r = ae->app_accept(ae->ud, c->app.proto, &c->app, c->peer);
	if (r < 0 || !c->app.ops) {
		ae->stats->app_refused++;
		c->app.ops = NULL;
		conn_close_handles(c);
		return 2;
	}
	ae->stats->app_accepted++;
	return 0;
}

/* One opened frame. @return 0 to go on, 1 when the exchange is complete, <0 on error. */
static int conn_frame(struct gossip__ae_conn *c, const uint8_t *plain, size_t len)
{
	int r;

	if (c->state == AE_APP) {
		const struct gossip_stream_ops *ops = c->app.ops;

		app_touch(c);
		if (ops && ops->on_frame)
			ops->on_frame(&c->app, c->app.ud, plain, len);
		return 0;
	}
	if (c->state == AE_WAIT_DIGEST && !c->initiator && !c->summary_seen && len >= 1 &&
	    plain[0] == GOSSIP__APP_MAGIC)
		return conn_to_app(c, plain, len);
	if (c->state == AE_WAIT_DIGEST && !c->initiator && len >= 1 &&
	    plain[0] == GOSSIP__AE_SUMMARY)
		return on_summary(c, plain, len);
	switch (c->state) {
	case AE_WAIT_SUMMARY: {
		/* A: SAME (with B's hash, which must be ours) ends the exchange; DIFFER asks
		 * for the full exchange, which goes on as if it had started with the digest */
		uint8_t f[1 + AE_SUMMARY_HASH];

		if (len == 1 && plain[0] == GOSSIP__AE_DIFFER) {
			c->differed = true;
			c->state = AE_WAIT_DIFF;
			return send_digest(c);
		}
		if (len != sizeof(f) || plain[0] != GOSSIP__AE_SUMMARY)
			return -EPROTO;
		return 1;	/* B found our digests equal: nothing to exchange */
	}
	case AE_WAIT_DIGEST:
		if (c->initiator) {
			/* A: B's digest; answer with what B lacks, then close after the write */
			r = send_diff(c, plain, len);
			if (r < 0)
				return r;
			c->state = AE_FLUSHING;
			return 0;
		}
		/* B: A's digest; answer with our diff and our digest */
		r = send_diff(c, plain, len);
		if (r < 0)
			return r;
		r = send_digest(c);
		if (r < 0)
			return r;
		c->state = AE_WAIT_DIFF;
		return 0;
	case AE_WAIT_DIFF:
		r = apply_diff(c, plain, len);
		if (r < 0)
			return r;
		if (c->initiator) {
			c->state = AE_WAIT_DIGEST;
			return 0;
		}
		return 1;
	default:
		return -EPROTO; /* a frame after the last one */
	}
}

/* The first frame of an accepted connection opened: it holds the key. Leave the pending pool
 * for a sync slot (refused beyond max_in) or, for an app stream, for conn_to_app's app slot.
 * @return 0 to go on with the frame, 2 when refused (ended quietly). */
static int conn_proven(struct gossip__ae_conn *c, const uint8_t *plain, size_t len)
{
	struct gossip__ae *ae = c->ae;

	if (c->pend_member)
		ae->n_pend_member--;
	else
		ae->n_pend--;
	c->pending = false;
	if (len >= 1 && plain[0] == GOSSIP__APP_MAGIC) {
		/* conn_to_app (from conn_frame) takes an app slot or refuses; until then the
		 * connection holds no slot ("refused" keeps it out of n_in on close) */
		c->refused = true;
		c->counted_done = true;
		return 0;
	}
	if (ae->n_in >= ae->max_in) {
		c->refused = true;
		c->counted_done = true;
		ae->stats->sync_refused++;
		conn_close_handles(c);
		return 2;
	}
	ae->n_in++;
	ae->stats->sync_accepted++;
	c->counted_done = false;
	uv_timer_start(&c->timer, conn_timeout, ae->timeout_ms, 0);
	return 0;
}

/* Open the whole frame at c->rbuf (@need bytes, prefix included) and act on it.
 * @return as conn_frame(). */
static int conn_whole_frame(struct gossip__ae_conn *c, size_t need)
{
	size_t plen = 0, slen = need - GOSSIP_FRAME_PREFIX;
	uint8_t sender[GOSSIP_SENDER_LEN];
	uint8_t *plain = malloc(slen); /* the plaintext is shorter than the sealed packet */
	int r;

	if (!plain)
		return -ENOMEM;
	/* a failure is counted by reason in the crypto stats (mirrored by the transport) */
	r = gossip_crypto_open(c->ae->crypto, GOSSIP_SEAL_STREAM, c->rbuf + GOSSIP_FRAME_PREFIX,
			       slen, plain, slen, &plen, sender);
	if (r < 0)
		goto out;
	/* every frame of a connection comes from the same node */
	if (c->have_peer && memcmp(sender, c->peer, GOSSIP_SENDER_LEN) != 0) {
		r = -EPROTO;
		goto out;
	}
	memcpy(c->peer, sender, GOSSIP_SENDER_LEN);
	c->have_peer = true;
	c->rlen = 0;
	if (c->pending) {
		r = conn_proven(c, plain, plen);
		if (r != 0)
			goto out;
	}
	r = conn_frame(c, plain, plen);
out:
	free(plain);
	return r;
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct gossip__ae_conn *c = h->data;

	*buf = uv_buf_init((char *)c->ae->scratch, sizeof(c->ae->scratch));
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct gossip__ae_conn *c = s->data;
	struct gossip__ae *ae = c->ae;
	const uint8_t *in = (const uint8_t *)buf->base;
	size_t left = nread > 0 ? (size_t)nread : 0;
	int r = 0;

	if (c->state == AE_DONE)
		return;
	if (nread < 0) {
		if (c->is_app)	/* a clean end is an EOF between frames */
			app_end(c, nread == UV_EOF && c->rlen == 0 ? 0 : (int)nread);
		else
			conn_end(c, false); /* EOF before the exchange completed, or an error */
		return;
	}
	ae->stats->stream_bytes_in += left;
	while (left > 0) {
		size_t need = GOSSIP_FRAME_PREFIX, take;

		/* Learn the frame's size (and refuse a bad one) before buffering its body. */
		if (c->rlen >= GOSSIP_FRAME_PREFIX) {
			r = gossip_frame_parse(c->rbuf, c->rlen, &need);
			if (r < 0) {
				ae->stats->drops[GOSSIP_DROP_TOO_SHORT]++;
				goto fail;
			}
		}
		if (c->rcap < need) {
			size_t ncap = need < 4096 ? 4096 : need;
			uint8_t *n = realloc(c->rbuf, ncap);

			if (!n) {
				r = -ENOMEM;
				goto fail;
			}
			c->rbuf = n;
			c->rcap = ncap;
		}
		take = need - c->rlen < left ? need - c->rlen : left;
		memcpy(c->rbuf + c->rlen, in, take);
		c->rlen += take;
		in += take;
		left -= take;
		if (c->rlen < GOSSIP_FRAME_PREFIX)
			continue;
		/* The prefix is complete: check it now, even if no more bytes come. */
		r = gossip_frame_parse(c->rbuf, c->rlen, &need);
		if (r < 0) {
			ae->stats->drops[GOSSIP_DROP_TOO_SHORT]++;
			goto fail;
		}
		if (r == 0)
			continue;
		r = conn_whole_frame(c, need);
		if (r < 0)
			goto fail;
		if (r == 1) {
			conn_end(c, true);
			return;
		}
		if (c->state == AE_DONE) /* refused, or closed by the stream's owner */
			return;
	}
	return;
fail:
	if (c->is_app)
		app_end(c, r);
	else
		conn_end(c, false);
}

static struct gossip__ae_conn *conn_new(struct gossip__ae *ae, bool initiator)
{
	struct gossip__ae_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ae = ae;
	c->initiator = initiator;
	if (uv_tcp_init(ae->loop, &c->tcp) < 0) {
		free(c);
		return NULL;
	}
	uv_timer_init(ae->loop, &c->timer); /* cannot fail */
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = ae->conns;
	if (ae->conns)
		ae->conns->prev = c;
	ae->conns = c;
	ae->n_conns++;
	if (initiator)
		ae->n_out++;
	else
		c->pending = true; /* gossip__ae_accept picks the pool */
	uv_timer_start(&c->timer, conn_timeout, ae->timeout_ms, 0);
	return c;
}

static void conn_connected(uv_connect_t *req, int status)
{
	struct gossip__ae_conn *c = req->data;
	int r;

	if (c->state == AE_DONE)
		return;
	if (status < 0) {
		conn_end(c, false);
		return;
	}
	c->state = AE_WAIT_SUMMARY;
	r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
	if (r >= 0)
		r = send_summary(c);
	if (r < 0)
		conn_end(c, false);
}

/* Bind an outgoing connection to the transport's address (gossip__ae.src), if it has one of
 * the destination's family. */
static void bind_src(struct gossip__ae *ae, struct gossip__ae_conn *c, const struct sockaddr *sa)
{
	if (ae->has_src && ae->src.ss_family == sa->sa_family)
		(void)uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ae->src, 0);
}

int gossip__ae_connect(struct gossip__ae *ae, const struct sockaddr *sa)
{
	struct gossip__ae_conn *c;
	int r;

	if (ae->closing)
		return -ESHUTDOWN;
	if (ae->n_out >= ae->max_out)
		return -EBUSY;
	c = conn_new(ae, true);
	if (!c)
		return -ENOMEM;
	c->state = AE_CONNECTING;
	c->connect.data = c;
	ae->stats->sync_started++;
	bind_src(ae, c, sa);
	r = uv_tcp_connect(&c->connect, &c->tcp, sa, conn_connected);
	if (r < 0) {
		/* the connect callback will not run; close the handles (counted as failed) */
		conn_end(c, false);
		return r;
	}
	return 0;
}

/* The source address of an accepted connection as bytes (family, then 4 or 16): 0 or -errno. */
static int conn_source(struct gossip__ae_conn *c, struct sockaddr_storage *ss)
{
	int len = sizeof(*ss);
	int r = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len);

	if (r < 0)
		return r;
	memset(c->src, 0, sizeof(c->src));
	if (ss->ss_family == AF_INET) {
		c->src[0] = 4;
		memcpy(c->src + 1, &((struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const uint8_t *a = ((struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		if (memcmp(a, mapped, 12) == 0) {
			c->src[0] = 4;
			memcpy(c->src + 1, a + 12, 4);
		} else {
			c->src[0] = 6;
			memcpy(c->src + 1, a, 16);
		}
	}
	return 0;
}

int gossip__ae_accept(struct gossip__ae *ae, uv_stream_t *server)
{
	struct gossip__ae_conn *c;
	struct sockaddr_storage ss;
	unsigned same = 0, pool, share;
	bool member;
	int r;

	c = conn_new(ae, false);
	if (!c)
		return -ENOMEM;
	c->counted_done = true; /* not an exchange until proven (conn_proven) */
	r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r >= 0)
		r = conn_source(c, &ss);
	if (r < 0 || ae->closing) {
		c->pending = false;
		c->refused = true;
		conn_close_handles(c);
		return r < 0 ? r : 0;
	}
	member = ae->is_member_addr && ae->is_member_addr(ae->ud, (struct sockaddr *)&ss);
	for (struct gossip__ae_conn *o = ae->conns; o; o = o->next)
		if (o != c && o->pending && o->state != AE_DONE &&
		    memcmp(o->src, c->src, sizeof(c->src)) == 0)
			same++;
	pool = member ? ae->n_pend_member : ae->n_pend;
	share = member ? (ae->pend_member + 1) / 2 : ae->pend_per_addr;
	if (pool >= (member ? ae->pend_member : ae->pend_max) || same >= share) {
		/* the pool or this address's share is full: close at once (the backlog must
		 * drain, so accept first); an outsider only ever competes with itself */
		c->pending = false;
		c->refused = true;
		ae->stats->stream_unproven_refused++;
		conn_close_handles(c);
		return 0;
	}
	c->pend_member = member;
	if (member)
		ae->n_pend_member++;
	else
		ae->n_pend++;
	c->state = AE_WAIT_DIGEST;
	uv_timer_start(&c->timer, conn_timeout, ae->auth_ms < ae->timeout_ms ? ae->auth_ms
									   : ae->timeout_ms, 0);
	r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
	if (r < 0) {
		conn_close_handles(c);
		return r;
	}
	return 0;
}

void gossip__ae_close_all(struct gossip__ae *ae)
{
	ae->closing = true;
	for (struct gossip__ae_conn *c = ae->conns; c; c = c->next)
		if (c->state != AE_DONE) {
			if (c->is_app)
				app_end(c, -ESHUTDOWN);
			else
				conn_end(c, false);
		}
	if (ae->n_conns == 0 && ae->drained)
		ae->drained(ae->ud);
}

/* ---- app streams ------------------------------------------------------------------------ */

static void app_connected(uv_connect_t *req, int status)
{
	struct gossip__ae_conn *c = req->data;
	int r;

	if (c->state == AE_DONE)
		return;
	if (status < 0) {
		app_end(c, status);
		return;
	}
	r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
	if (r < 0) {
		app_end(c, r);
		return;
	}
	app_touch(c);
}

int gossip__ae_connect_app(struct gossip__ae *ae, const struct sockaddr *sa, uint8_t proto,
			   const void *ops, void *ud, struct gossip_stream **ret)
{
	struct gossip__ae_conn *c;
	uint8_t hello[2] = { GOSSIP__APP_MAGIC, proto };
	int r;

	if (ae->closing)
		return -ESHUTDOWN;
	if (ae->n_app_out >= ae->max_app)
		return -EBUSY;
	c = conn_new(ae, true);
	if (!c)
		return -ENOMEM;
	/* conn_new counted a sync exchange: move it to the app count */
	ae->n_out--;
	ae->n_app_out++;
	c->is_app = true;
	c->counted_done = true;
	c->state = AE_APP;
	c->app.conn = c;
	c->app.proto = proto;
	c->connect.data = c;
	uv_timer_start(&c->timer, conn_timeout, ae->app_idle_ms, 0);
	bind_src(ae, c, sa);
	r = uv_tcp_connect(&c->connect, &c->tcp, sa, app_connected);
	if (r >= 0)
		r = conn_send(c, hello, sizeof(hello)); /* libuv queues it until connected */
	if (r < 0) {
		conn_close_handles(c); /* no owner yet: no callback */
		return r;
	}
	c->app.ops = ops;
	c->app.ud = ud;
	ae->stats->app_connected++;
	*ret = &c->app;
	return 0;
}

void gossip_stream_set_ops(struct gossip_stream *s, const struct gossip_stream_ops *ops, void *ud)
{
	s->ops = ops;
	s->ud = ud;
}

int gossip_stream_send(struct gossip_stream *s, const uint8_t *buf, size_t len)
{
	struct gossip__ae_conn *c = s->conn;

	if (c->state == AE_DONE)
		return -EPIPE;
	return conn_send(c, buf, len);
}

size_t gossip_stream_queued(const struct gossip_stream *s)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&s->conn->tcp);
}

void gossip_stream_peer(const struct gossip_stream *s, uint8_t ret_sender[GOSSIP_SENDER_LEN])
{
	if (s->conn->have_peer)
		memcpy(ret_sender, s->conn->peer, GOSSIP_SENDER_LEN);
	else
		memset(ret_sender, 0, GOSSIP_SENDER_LEN);
}

void gossip_stream_close(struct gossip_stream *s)
{
	s->ops = NULL;
	conn_close_handles(s->conn);
}
