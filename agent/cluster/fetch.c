/*
 * agent/cluster/fetch.c: peer-to-peer artifact transfer (protocol and contracts in fetch.h).
 *
 * One struct job per artifact being fetched (deduplicated by id). A job owns at most one
 * stream at a time, a uv_timer that drives (re)connections, and the transfer state that
 * survives a broken stream: the open store import, the current file, the blob's chunk hashes,
 * the next chunk to write and the running BLAKE2b state of the blob. Requests are answered in
 * order on a stream, so a CHUNK answer must be exactly the next chunk to write.
 */
#include "agent/cluster/fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <sodium.h>

#include "agent/cluster/cluster.h"
#include "agent/ctl/ctl_args.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/base/log.h"

#define FETCH_RECENT 16

/* ---- codec ------------------------------------------------------------------------------- */

/* An sbuffer that remembers an allocation failure (the packer ignores the return value). */
struct enc {
	msgpack_sbuffer sb;
	bool failed;
};

static int pk_write(void *data, const char *buf, size_t len)
{
	struct enc *e = data;

	if (e->failed || msgpack_sbuffer_write(&e->sb, buf, len) != 0) {
		e->failed = true;
		return -1;
	}
	return 0;
}

static void pk_bin(msgpack_packer *pk, const void *p, size_t n)
{
	msgpack_pack_bin(pk, n);
	msgpack_pack_bin_body(pk, p, n);
}

int fetch_msg_encode(const struct fetch_msg *m, uint8_t **ret_buf, size_t *ret_len)
{
	struct enc e = { .failed = false };
	msgpack_packer pk;
	size_t n;

	switch (m->type) {
	case FETCH_GET_MANIFEST:
	case FETCH_GET_BLOB:
		n = 3;
		break;
	case FETCH_GET_CHUNK:
	case FETCH_ERROR:
	case FETCH_MANIFEST:
		n = 4;
		break;
	case FETCH_BLOB:
		if (m->len % STORE_ID_LEN || m->len / STORE_ID_LEN > FETCH_HASHES_MAX)
			return -EINVAL;
		n = 5;
		break;
	case FETCH_CHUNK:
		n = 5;
		break;
	default:
		return -EINVAL;
	}
	if (m->len > GOSSIP_STREAM_PAYLOAD_MAX - 128)
		return -EMSGSIZE;
	msgpack_sbuffer_init(&e.sb);
	msgpack_packer_init(&pk, &e, pk_write);
	msgpack_pack_array(&pk, n);
	msgpack_pack_uint8(&pk, FETCH_VERSION);
	msgpack_pack_uint8(&pk, m->type);
	pk_bin(&pk, m->id.b, STORE_ID_LEN);
	switch (m->type) {
	case FETCH_GET_CHUNK:
		msgpack_pack_uint32(&pk, m->index);
		break;
	case FETCH_ERROR:
		msgpack_pack_uint32(&pk, m->code);
		break;
	case FETCH_MANIFEST:
		pk_bin(&pk, m->data, m->len);
		break;
	case FETCH_BLOB:
		msgpack_pack_uint64(&pk, m->size);
		pk_bin(&pk, m->data, m->len);
		break;
	case FETCH_CHUNK:
		msgpack_pack_uint32(&pk, m->index);
		pk_bin(&pk, m->data, m->len);
		break;
	default:
		break;
	}
	if (e.failed || !e.sb.data) {
		msgpack_sbuffer_destroy(&e.sb);
		return -ENOMEM;
	}
	*ret_len = e.sb.size;
	*ret_buf = (uint8_t *)msgpack_sbuffer_release(&e.sb);
	return 0;
}

/*
 * A strict reader for the few msgpack forms of this protocol (positive ints, bins, one array).
 * Not msgpack-c's unpacker: that one allocates for the element count an array or map header
 * DECLARES before checking the bytes exist (a 6-byte frame could ask for gigabytes).
 */
struct rd {
	const uint8_t *p, *end;
};

static bool rd_be(struct rd *r, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if ((size_t)(r->end - r->p) < n)
		return false;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	*ret = v;
	return true;
}

static bool rd_uint(struct rd *r, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;
	bool ok;
	uint8_t b;

	if (r->p >= r->end)
		return false;
	b = *r->p++;
	switch (b) {
	case 0xcc:
		ok = rd_be(r, 1, &v);
		break;
	case 0xcd:
		ok = rd_be(r, 2, &v);
		break;
	case 0xce:
		ok = rd_be(r, 4, &v);
		break;
	case 0xcf:
		ok = rd_be(r, 8, &v);
		break;
	default: /* positive fixint */
		ok = b <= 0x7f;
		v = b;
		break;
	}
	if (!ok || v > max)
		return false;
	*ret = v;
	return true;
}

static bool rd_bin(struct rd *r, const uint8_t **ret, size_t *ret_len)
{
	uint64_t n;
	uint8_t b;

	if (r->p >= r->end)
		return false;
	b = *r->p++;
	if (!((b == 0xc4 && rd_be(r, 1, &n)) || (b == 0xc5 && rd_be(r, 2, &n)) ||
	      (b == 0xc6 && rd_be(r, 4, &n))))
		return false;
	if ((uint64_t)(r->end - r->p) < n)
		return false;
	*ret = r->p;
	*ret_len = (size_t)n;
	r->p += n;
	return true;
}

static bool rd_id(struct rd *r, struct store_id *ret)
{
	const uint8_t *p;
	size_t n;

	if (!rd_bin(r, &p, &n) || n != STORE_ID_LEN)
		return false;
	memcpy(ret->b, p, STORE_ID_LEN);
	return true;
}

int fetch_msg_decode(const uint8_t *buf, size_t len, struct fetch_msg *ret)
{
	struct rd r = { buf, buf + len };
	struct fetch_msg m;
	size_t count, want;
	uint64_t v;

	if (!buf || len == 0)
		return -EBADMSG;
	memset(&m, 0, sizeof(m));
	/* a fixarray of 3..5 */
	if ((buf[0] & 0xf0) != 0x90)
		return -EBADMSG;
	count = buf[0] & 0x0f;
	r.p++;
	if (count < 3 || !rd_uint(&r, UINT8_MAX, &v))
		return -EBADMSG;
	if (v != FETCH_VERSION)
		return -EPROTONOSUPPORT;
	if (!rd_uint(&r, UINT8_MAX, &v))
		return -EBADMSG;
	m.type = (uint8_t)v;
	switch (m.type) {
	case FETCH_GET_MANIFEST:
	case FETCH_GET_BLOB:
		want = 3;
		break;
	case FETCH_GET_CHUNK:
	case FETCH_ERROR:
	case FETCH_MANIFEST:
		want = 4;
		break;
	case FETCH_BLOB:
	case FETCH_CHUNK:
		want = 5;
		break;
	default:
		return -EBADMSG;
	}
	if (count != want || !rd_id(&r, &m.id))
		return -EBADMSG;
	switch (m.type) {
	case FETCH_GET_CHUNK:
		if (!rd_uint(&r, UINT32_MAX, &v))
			return -EBADMSG;
		m.index = (uint32_t)v;
		break;
	case FETCH_ERROR:
		if (!rd_uint(&r, UINT32_MAX, &v))
			return -EBADMSG;
		m.code = (uint32_t)v;
		break;
	case FETCH_MANIFEST:
		if (!rd_bin(&r, &m.data, &m.len))
			return -EBADMSG;
		break;
	case FETCH_BLOB:
		if (!rd_uint(&r, UINT64_MAX, &m.size) || !rd_bin(&r, &m.data, &m.len) ||
		    m.len % STORE_ID_LEN || m.len / STORE_ID_LEN > FETCH_HASHES_MAX)
			return -EBADMSG;
		break;
	case FETCH_CHUNK:
		if (!rd_uint(&r, UINT32_MAX, &v) || !rd_bin(&r, &m.data, &m.len) ||
		    m.len > STORE_CHUNK_SIZE)
			return -EBADMSG;
		m.index = (uint32_t)v;
		break;
	default:
		break;
	}
	if (r.p != r.end) /* trailing bytes */
		return -EBADMSG;
	*ret = m;
	return 0;
}

/* ---- state ------------------------------------------------------------------------------- */

struct waiter {
	fetch_cb cb;
	void *ud;
	struct waiter *next;
};

struct job {
	struct fetch *f;
	struct job *prev, *next;
	struct store_id id;
	struct gossip_addr peers[FETCH_PEERS_MAX];
	bool peer_absent[FETCH_PEERS_MAX]; /* answered not_found */
	size_t npeers, cur;
	unsigned attempts;
	unsigned busy_run;	/* candidates in a row that answered busy */
	int last_err;
	struct waiter *waiters;
	uint64_t serial;	/* attempt number for artifact.fetch (never 0) */
	bool op_waiter;		/* an artifact.fetch request waits on it */
	bool dynamic;		/* candidates from the holders: refreshed at each reconnect */
	uv_timer_t timer;
	struct gossip_stream *stream;
	bool awaiting;	/* a GET_MANIFEST or GET_BLOB is outstanding on the stream */
	bool finished;
	/* transfer state: survives reconnections */
	bool have_manifest;
	struct store_manifest m;
	struct store_import *imp;
	size_t file;
	bool file_open;
	bool have_info;
	uint32_t nchunks;
	uint8_t *hashes;
	uint32_t next_write, next_req;
	crypto_generichash_state hs;
};

struct serve {
	struct fetch *f;
	struct serve *prev, *next;
	struct gossip_stream *s;
	bool slot;		/* holds an upload slot (fetch.h "Upload slots") */
};

struct retry {
	struct fetch *f;
	struct retry *prev, *next;
	uv_timer_t timer;
	struct store_id id;
	char service[65];
	uint8_t (*nodes)[STORE_NODE_ID_LEN]; /* holders named by the need (without a hook) */
	size_t n;
	unsigned tries;		/* failed attempts so far (the back-off exponent) */
	bool running;		/* an attempt is in flight */
	bool had_holders;	/* the last attempt knew a live holder (else: a random draw) */
	uint64_t last_start;	/* uv_now of the last attempt */
	uint64_t last_check;	/* uv_now of fetch_member_alive's last look */
};

struct fetch {
	uv_loop_t *loop;
	struct store *store;
	struct gossip_transport *t;
	struct fetch_config cfg;
	struct job *jobs;
	struct serve *serves;
	unsigned slots_used;
	struct retry *retries;
	size_t njobs;
	bool closing;
	struct fetch_stats stats;
	void (*arrived)(void *ud, const struct store_id *id);
	void *arrived_ud;
	uint8_t *chunk_buf; /* STORE_CHUNK_SIZE: serving and local copies */
	struct {
		struct store_id id;
		uint64_t serial;
		int err;
		bool valid;
	} recent[FETCH_RECENT]; /* failed operator fetches, for the poll naming their attempt */
	size_t recent_next;
	uint64_t next_serial;
	struct fetch_hooks hooks;
};

static const struct gossip_stream_ops job_ops;
static const struct gossip_stream_ops serve_ops;

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- serving ----------------------------------------------------------------------------- */

static int serve_send(struct serve *sv, const struct fetch_msg *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = fetch_msg_encode(m, &buf, &len);

	if (r < 0)
		return r;
	r = gossip_stream_send(sv->s, buf, len);
	free(buf);
	return r;
}

static uint32_t err_code(int err)
{
	if (err == -ENOENT)
		return FETCH_E_NOT_FOUND;
	if (err == -STORE_ECORRUPT)
		return FETCH_E_CORRUPT;
	if (err == -EBUSY)
		return FETCH_E_BUSY;
	return FETCH_E_INTERNAL;
}

/* Answer one request. @return 0 or -errno of sending (the caller closes the stream). */
static int serve_request(struct serve *sv, const struct fetch_msg *q)
{
	struct fetch *f = sv->f;
	struct fetch_msg a = { .id = q->id };
	uint8_t *mbuf = NULL, *hashes = NULL;
	int r = 0;

	switch (q->type) {
	case FETCH_GET_MANIFEST: {
		struct store_artifact_info info;
		size_t mlen = 0;

		r = store_artifact_get(f->store, &q->id, &info);
		if (r < 0)
			break;
		r = store_manifest_encode(&info.manifest, &mbuf, &mlen);
		store_artifact_info_release(&info);
		if (r < 0)
			break;
		a.type = FETCH_MANIFEST;
		a.data = mbuf;
		a.len = mlen;
		break;
	}
	case FETCH_GET_BLOB: {
		uint32_t n = 0;

		r = store_blob_size(f->store, &q->id, &a.size);
		if (r >= 0)
			r = store_blob_chunks(f->store, &q->id, &n);
		if (r < 0)
			break;
		if (n > FETCH_HASHES_MAX) {
			r = -EFBIG;
			break;
		}
		hashes = malloc((size_t)n * STORE_ID_LEN + 1);
		if (!hashes) {
			r = -ENOMEM;
			break;
		}
		for (uint32_t i = 0; i < n && r >= 0; i++)
			r = store_blob_chunk(f->store, &q->id, i,
					     (struct store_id *)(hashes + (size_t)i * STORE_ID_LEN),
					     NULL, 0, NULL);
		if (r < 0)
			break;
		a.type = FETCH_BLOB;
		a.data = hashes;
		a.len = (size_t)n * STORE_ID_LEN;
		break;
	}
	case FETCH_GET_CHUNK: {
		size_t clen = 0;
		uint32_t n = 0;

		if (!sv->slot && store_blob_chunks(f->store, &q->id, &n) == 0 &&
		    n > FETCH_SLOT_MIN_CHUNKS) {
			if (f->slots_used >= f->cfg.serve_slots) {
				f->stats.served_busy++;
				r = -EBUSY;
				break;
			}
			sv->slot = true;
			f->slots_used++;
		}
		/* verified read: a peer only ever gets bytes matching their hash */
		r = store_blob_chunk(f->store, &q->id, q->index, NULL, f->chunk_buf,
				     STORE_CHUNK_SIZE, &clen);
		if (r < 0)
			break;
		a.type = FETCH_CHUNK;
		a.index = q->index;
		a.data = f->chunk_buf;
		a.len = clen;
		f->stats.served_chunks++;
		f->stats.served_bytes += clen;
		break;
	}
	default:
		r = -EPROTO;
		break;
	}
	if (r < 0) {
		f->stats.served_errors += r != -EBUSY;
		a.type = FETCH_ERROR;
		a.code = r == -EPROTO ? FETCH_E_BAD_REQUEST : err_code(r);
		a.data = NULL;
		a.len = 0;
	}
	r = serve_send(sv, &a);
	free(mbuf);
	free(hashes);
	return r;
}

static void serve_unlink(struct serve *sv)
{
	struct fetch *f = sv->f;

	if (sv->slot)
		f->slots_used--;
	if (sv->prev)
		sv->prev->next = sv->next;
	else
		f->serves = sv->next;
	if (sv->next)
		sv->next->prev = sv->prev;
	free(sv);
}

static void serve_frame(struct gossip_stream *s, void *ud, const uint8_t *buf, size_t len)
{
	struct serve *sv = ud;
	struct fetch_msg q;
	int r = fetch_msg_decode(buf, len, &q);

	if (r == 0 && (q.type == FETCH_GET_MANIFEST || q.type == FETCH_GET_BLOB ||
		       q.type == FETCH_GET_CHUNK))
		r = serve_request(sv, &q);
	else if (r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT)
		r = -EPROTO; /* not a request: a confused or hostile client */
	/* a client that does not read its answers is not allowed to pile them up here */
	if (r == 0 && gossip_stream_queued(s) > FETCH_SERVE_QUEUE_MAX)
		r = -ENOBUFS;
	if (r < 0) {
		sv->f->stats.bad_frames += r == -EPROTO;
		gossip_stream_close(s);
		serve_unlink(sv);
	}
}

static void serve_closed(struct gossip_stream *s, void *ud, int err)
{
	(void)s;
	(void)err;
	serve_unlink(ud);
}

static const struct gossip_stream_ops serve_ops = {
	.on_frame = serve_frame,
	.on_close = serve_closed,
};

static int serve_accept(void *ud, struct gossip_stream *s, const uint8_t sender[GOSSIP_SENDER_LEN])
{
	struct fetch *f = ud;
	struct serve *sv;

	(void)sender; /* authenticated as a cluster member by the seal: that is the policy */
	if (f->closing)
		return -ESHUTDOWN;
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	sv->f = f;
	sv->s = s;
	sv->next = f->serves;
	if (f->serves)
		f->serves->prev = sv;
	f->serves = sv;
	f->stats.served_streams++;
	gossip_stream_set_ops(s, &serve_ops, sv);
	return 0;
}

/* ---- fetching ---------------------------------------------------------------------------- */

static void job_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void job_reset_blob(struct job *j)
{
	free(j->hashes);
	j->hashes = NULL;
	j->have_info = false;
	j->nchunks = j->next_write = j->next_req = 0;
}

/* End the job: close its stream, abort or keep the import, tell every waiter. */
static void job_finish(struct job *j, int err)
{
	struct fetch *f = j->f;
	struct waiter *w = j->waiters;

	if (j->finished)
		return;
	j->finished = true;
	if (j->stream) {
		gossip_stream_close(j->stream);
		j->stream = NULL;
	}
	store_import_abort(j->imp); /* NULL after a commit */
	j->imp = NULL;
	job_reset_blob(j);
	store_manifest_release(&j->m);
	if (j->prev)
		j->prev->next = j->next;
	else
		f->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	f->njobs--;
	if (err == 0)
		f->stats.ok++;
	else
		f->stats.failed++;
	uv_close((uv_handle_t *)&j->timer, job_timer_closed);
	if (j->op_waiter && err != 0) {
		/* for the artifact.fetch polls of this attempt, and only those (fetch_op_fetch) */
		f->recent[f->recent_next].id = j->id;
		f->recent[f->recent_next].serial = j->serial;
		f->recent[f->recent_next].err = err;
		f->recent[f->recent_next].valid = true;
		f->recent_next = (f->recent_next + 1) % FETCH_RECENT;
	}
	j->waiters = NULL;
	while (w) {
		struct waiter *next = w->next;

		w->cb(w->ud, &j->id, err);
		free(w);
		w = next;
	}
	if (err == 0 && f->arrived && !f->closing)
		f->arrived(f->arrived_ud, &j->id); /* j is freed only when its timer has closed */
}

void fetch_set_arrived(struct fetch *f, void (*cb)(void *ud, const struct store_id *id),
		       void *ud)
{
	f->arrived = cb;
	f->arrived_ud = ud;
}

static int job_send(struct job *j, uint8_t type, const struct store_id *id, uint32_t index)
{
	struct fetch_msg m = { .type = type, .id = *id, .index = index };
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = fetch_msg_encode(&m, &buf, &len);

	if (r < 0)
		return r;
	r = gossip_stream_send(j->stream, buf, len);
	free(buf);
	/* any failure to queue means this stream is unusable: the caller reconnects */
	return r < 0 ? -EPIPE : 0;
}

/* Copy a blob the local store already holds into the import (verified chunk by chunk).
 * @return 1 copied; 0 not held locally (or not matching); <0 import error. */
static int job_copy_local(struct job *j, const struct store_file *sf)
{
	struct fetch *f = j->f;
	uint64_t size = 0;
	uint32_t n = 0;
	int r;

	if (store_blob_size(f->store, &sf->blob, &size) < 0 || size != sf->size ||
	    store_blob_chunks(f->store, &sf->blob, &n) < 0)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		size_t len = 0;

		r = store_blob_chunk(f->store, &sf->blob, i, NULL, f->chunk_buf, STORE_CHUNK_SIZE,
				     &len);
		if (r < 0)
			/* damaged local copy: the import may already hold part of it, so fail
			 * this file loudly rather than mix sources */
			return r == -STORE_ECORRUPT ? -EIO : r;
		r = store_import_write(j->imp, f->chunk_buf, len);
		if (r < 0)
			return r;
		f->stats.chunks_local++;
		f->stats.bytes_local += len;
	}
	return 1;
}

static int job_commit(struct job *j)
{
	struct store_id got;
	int r = store_import_commit(j->imp, &j->m, wall_ms(), &got);

	j->imp = NULL; /* freed by commit on success and failure */
	if (r < 0)
		return r;
	if (memcmp(got.b, j->id.b, STORE_ID_LEN) != 0) {
		/* cannot happen when every blob and the manifest verified, unless the store's
		 * canonical encoding differs from the peer's: then the committed artifact is
		 * not the one asked for, so take it out again (best effort: condemn) */
		(void)store_artifact_set_condemned(j->f->store, &got, true);
		return -EBADMSG;
	}
	return 0;
}

/*
 * Move the transfer forward as far as possible: local copies, requests up to the window.
 * @return 0 (waiting for answers), 1 (done: committed), <0 fatal for the job (store) or
 * -EPIPE-like errors of sending (the stream is broken: the caller reconnects).
 */
static int job_pump(struct job *j)
{
	struct fetch *f = j->f;
	unsigned window = f->cfg.window;
	int r;

	if (!j->have_manifest) {
		if (j->awaiting)
			return 0;
		r = job_send(j, FETCH_GET_MANIFEST, &j->id, 0);
		if (r < 0)
			return r;
		j->awaiting = true;
		return 0;
	}
	while (j->file < j->m.nfiles) {
		const struct store_file *sf = &j->m.files[j->file];

		if (!j->file_open) {
			r = store_import_file(j->imp, sf->path, sf->mode);
			if (r < 0)
				return r == -EINVAL ? -EBADMSG : r;
			j->file_open = true;
			r = sf->size == 0 ? 1 : job_copy_local(j, sf);
			if (r < 0)
				return r;
			if (r == 1) {
				r = store_import_file_end(j->imp);
				if (r < 0)
					return r == -EINVAL ? -EBADMSG : r;
				j->file_open = false;
				j->file++;
				continue;
			}
		}
		if (!j->have_info) {
			if (j->awaiting)
				return 0;
			r = job_send(j, FETCH_GET_BLOB, &sf->blob, 0);
			if (r < 0)
				return r;
			j->awaiting = true;
			return 0;
		}
		while (j->next_req < j->nchunks && j->next_req - j->next_write < window) {
			r = job_send(j, FETCH_GET_CHUNK, &sf->blob, j->next_req);
			if (r < 0)
				return r;
			j->next_req++;
		}
		return 0;
	}
	r = job_commit(j);
	return r < 0 ? r : 1;
}

/* A fatal or final pump result. */
static void job_pumped(struct job *j, int r);

static void job_step(uv_timer_t *t);

static void job_schedule(struct job *j, uint64_t delay_ms)
{
	uv_timer_start(&j->timer, job_step, delay_ms, 0);
}

static void job_refresh(struct job *j);

/* The stream broke (or we broke it): keep the transfer state, try the next peer. */
static void job_broken(struct job *j, int err)
{
	struct fetch *f = j->f;
	unsigned max = f->cfg.max_attempts;

	if (j->stream) {
		gossip_stream_close(j->stream);
		j->stream = NULL;
	}
	j->awaiting = false;
	j->next_req = j->next_write; /* requests in flight are lost: ask again */
	j->last_err = err;
	j->attempts++;
	if (max == 0) {
		max = 4 * (unsigned)j->npeers;
		if (max < 8)
			max = 8;
	}
	if (j->attempts >= max) {
		job_finish(j, err);
		return;
	}
	j->cur = (j->cur + 1) % j->npeers;
	f->stats.reconnects++;
	/* busy holders: the next candidate at once; after a whole round of busy ones, the
	 * current holders again (those that finished meanwhile serve too) after a pause */
	if (err == -EBUSY && ++j->busy_run < j->npeers) {
		job_schedule(j, 0);
		return;
	}
	j->busy_run = 0;
	/* a crowd refused by a busy holder: the nodes that fetched meanwhile hold it too */
	if (err != -ENOENT)
		job_refresh(j);
	/* a short back-off (a peer that just cut us is likely restarting), jittered so a crowd
	 * cut at once does not come back at once */
	if (err == -EBUSY)
		job_schedule(j, 150 + randombytes_uniform(300));
	else
		job_schedule(j, 25u * j->attempts + randombytes_uniform(50u * j->attempts + 1));
}

static void job_pumped(struct job *j, int r)
{
	if (r == 1)
		job_finish(j, 0);
	else if (r == -EPIPE)
		job_broken(j, r);
	else if (r < 0)
		job_finish(j, r);
}

/* A peer sent something that does not verify: drop that stream and go elsewhere. */
static void job_bad(struct job *j)
{
	j->f->stats.bad_frames++;
	job_broken(j, -EBADMSG);
}

static void job_on_manifest(struct job *j, const struct fetch_msg *m)
{
	struct store_manifest man;
	struct store_id id;
	int r;

	if (!j->awaiting || memcmp(m->id.b, j->id.b, STORE_ID_LEN) != 0 ||
	    store_manifest_decode(m->data, m->len, &man) < 0) {
		job_bad(j);
		return;
	}
	if (store_manifest_id(&man, &id) < 0 || memcmp(id.b, j->id.b, STORE_ID_LEN) != 0) {
		store_manifest_release(&man);
		job_bad(j);
		return;
	}
	r = store_import_begin(j->f->store, &j->imp);
	if (r >= 0)	/* the same limits as a local import (store_manifest_validate) */
		r = store_import_set_limits(j->imp, &j->f->cfg.limits);
	if (r < 0) {
		store_manifest_release(&man);
		job_finish(j, r);
		return;
	}
	j->m = man;
	j->have_manifest = true;
	j->awaiting = false;
	job_pumped(j, job_pump(j));
}

static void job_on_blob(struct job *j, const struct fetch_msg *m)
{
	const struct store_file *sf;
	uint64_t n;

	if (!j->awaiting || !j->file_open || j->have_info || j->file >= j->m.nfiles) {
		job_bad(j);
		return;
	}
	sf = &j->m.files[j->file];
	n = (sf->size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE;
	if (memcmp(m->id.b, sf->blob.b, STORE_ID_LEN) != 0 || m->size != sf->size ||
	    m->len / STORE_ID_LEN != n) {
		job_bad(j);
		return;
	}
	j->hashes = malloc(m->len);
	if (!j->hashes) {
		job_finish(j, -ENOMEM);
		return;
	}
	memcpy(j->hashes, m->data, m->len);
	j->nchunks = (uint32_t)n;
	j->next_write = j->next_req = 0;
	crypto_generichash_init(&j->hs, NULL, 0, STORE_ID_LEN);
	j->have_info = true;
	j->awaiting = false;
	job_pumped(j, job_pump(j));
}

static void job_on_chunk(struct job *j, const struct fetch_msg *m)
{
	struct fetch *f = j->f;
	const struct store_file *sf;
	uint8_t h[STORE_ID_LEN];
	uint64_t expect;
	int r;

	if (!j->have_info || j->next_write >= j->next_req || m->index != j->next_write) {
		job_bad(j);
		return;
	}
	sf = &j->m.files[j->file];
	expect = sf->size - (uint64_t)m->index * STORE_CHUNK_SIZE;
	if (expect > STORE_CHUNK_SIZE)
		expect = STORE_CHUNK_SIZE;
	crypto_generichash(h, sizeof(h), m->data, m->len, NULL, 0);
	if (memcmp(m->id.b, sf->blob.b, STORE_ID_LEN) != 0 || m->len != expect ||
	    memcmp(h, j->hashes + (size_t)m->index * STORE_ID_LEN, STORE_ID_LEN) != 0) {
		job_bad(j);
		return;
	}
	r = store_import_write(j->imp, m->data, m->len);
	if (r < 0) {
		job_finish(j, r);
		return;
	}
	crypto_generichash_update(&j->hs, m->data, m->len);
	j->next_write++;
	f->stats.chunks_in++;
	f->stats.bytes_in += m->len;
	if (j->next_write == j->nchunks) {
		crypto_generichash_final(&j->hs, h, sizeof(h));
		if (memcmp(h, sf->blob.b, STORE_ID_LEN) != 0) {
			/* every chunk matched a hash the peer listed, but the list itself lied:
			 * this file's bytes are in the import already, so start over */
			f->stats.bad_frames++;
			job_finish(j, -EBADMSG);
			return;
		}
		r = store_import_file_end(j->imp);
		if (r < 0) {
			job_finish(j, r);
			return;
		}
		j->file_open = false;
		j->file++;
		job_reset_blob(j);
	}
	job_pumped(j, job_pump(j));
}

static void job_frame(struct gossip_stream *s, void *ud, const uint8_t *buf, size_t len)
{
	struct job *j = ud;
	struct fetch_msg m;

	(void)s;
	if (fetch_msg_decode(buf, len, &m) < 0) {
		job_bad(j);
		return;
	}
	switch (m.type) {
	case FETCH_ERROR:
		if (m.code == FETCH_E_NOT_FOUND) {
			j->f->stats.not_found++;
			j->peer_absent[j->cur] = true;
			j->attempts--; /* not a broken connection */
			job_broken(j, -ENOENT);
		} else if (m.code == FETCH_E_BUSY) {
			j->f->stats.busy++;
			j->attempts--; /* nor is a holder busy serving others */
			job_broken(j, -EBUSY);
		} else {
			job_broken(j, m.code == FETCH_E_CORRUPT ? -EBADMSG : -EIO);
		}
		return;
	case FETCH_MANIFEST:
		job_on_manifest(j, &m);
		return;
	case FETCH_BLOB:
		job_on_blob(j, &m);
		return;
	case FETCH_CHUNK:
		job_on_chunk(j, &m);
		return;
	default:
		job_bad(j);
		return;
	}
}

static void job_closed(struct gossip_stream *s, void *ud, int err)
{
	struct job *j = ud;

	(void)s;
	j->stream = NULL;
	job_broken(j, err < 0 ? err : -ECONNRESET);
}

static const struct gossip_stream_ops job_ops = {
	.on_frame = job_frame,
	.on_close = job_closed,
};

/* Timer: (re)connect to the current candidate and resume. */
static void job_step(uv_timer_t *t)
{
	struct job *j = t->data;
	size_t tries;
	int r;

	if (j->finished || j->stream)
		return;
	for (tries = 0; tries < j->npeers && j->peer_absent[j->cur]; tries++)
		j->cur = (j->cur + 1) % j->npeers;
	if (tries == j->npeers) {
		job_finish(j, -ENOENT);
		return;
	}
	r = gossip_transport_app_connect(j->f->t, &j->peers[j->cur], FETCH_PROTO, &job_ops, j,
					 &j->stream);
	if (r < 0) {
		j->stream = NULL;
		job_broken(j, r);
		return;
	}
	job_pumped(j, job_pump(j));
}

static struct job *job_find(struct fetch *f, const struct store_id *id)
{
	for (struct job *j = f->jobs; j; j = j->next)
		if (memcmp(j->id.b, id->b, STORE_ID_LEN) == 0)
			return j;
	return NULL;
}

static void job_add_peers(struct job *j, const struct gossip_addr *peers, size_t n)
{
	for (size_t i = 0; i < n && j->npeers < FETCH_PEERS_MAX; i++) {
		bool dup = false;

		for (size_t k = 0; k < j->npeers && !dup; k++)
			dup = gossip_addr_cmp(&j->peers[k], &peers[i]) == 0;
		if (!dup)
			j->peers[j->npeers++] = peers[i];
	}
}

int fetch_artifact(struct fetch *f, const struct store_id *id, const struct gossip_addr *peers,
		   size_t n, fetch_cb cb, void *ud)
{
	struct store_artifact_info info;
	struct waiter *w;
	struct job *j;
	int r;

	if (n == 0 || n > FETCH_PEERS_MAX || !cb)
		return -EINVAL;
	if (f->closing)
		return -ESHUTDOWN;
	r = store_artifact_get(f->store, id, &info);
	if (r == 0) {
		store_artifact_info_release(&info);
		return 1;
	}
	if (r != -ENOENT)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->ud = ud;
	j = job_find(f, id);
	if (j) {
		job_add_peers(j, peers, n);
		/* a new candidate may hold what the others lacked */
		memset(j->peer_absent, 0, sizeof(j->peer_absent));
		w->next = j->waiters;
		j->waiters = w;
		return 0;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		free(w);
		return -ENOMEM;
	}
	j->f = f;
	j->id = *id;
	j->serial = ++f->next_serial;
	j->waiters = w;
	job_add_peers(j, peers, n);
	uv_timer_init(f->loop, &j->timer);
	j->timer.data = j;
	j->next = f->jobs;
	if (f->jobs)
		f->jobs->prev = j;
	f->jobs = j;
	f->njobs++;
	f->stats.started++;
	job_schedule(j, 0);
	return 0;
}

/* ---- candidates ---------------------------------------------------------------------------- */

struct pick {
	const uint8_t (*holders)[STORE_NODE_ID_LEN];
	size_t nholders;
	struct gossip_addr *out;
	size_t nout;
	size_t seen;	/* live members seen (the reservoir's count) */
	bool all;
};

static bool id_in(const uint8_t (*ids)[STORE_NODE_ID_LEN], size_t n, const uint8_t *id)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(ids[i], id, STORE_NODE_ID_LEN) == 0)
			return true;
	return false;
}

static int pick_cb(void *ud, const struct gossip_member *m)
{
	struct pick *pk = ud;

	if (m->self || m->state != GOSSIP_ALIVE ||
	    (!pk->all && !id_in(pk->holders, pk->nholders, m->id)))
		return 0;
	/* reservoir sampling: every live member (holder) equally likely, whatever the table
	 * order */
	pk->seen++;
	if (pk->nout < FETCH_PEERS_MAX) {
		pk->out[pk->nout++] = m->addr;
	} else {
		uint32_t k = randombytes_uniform((uint32_t)(pk->seen > UINT32_MAX ? UINT32_MAX
										    : pk->seen));

		if (k < FETCH_PEERS_MAX)
			pk->out[k] = m->addr;
	}
	return 0;
}

static void shuffle(struct gossip_addr *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t k = randombytes_uniform((uint32_t)i);
		struct gossip_addr t = a[i - 1];

		a[i - 1] = a[k];
		a[k] = t;
	}
}

/*
 * Candidates for @id, in random order: the live members among @holders; when none is alive
 * (or @nholders is 0), a random draw of up to FETCH_PEERS_MAX live members. Random, so that
 * many nodes asking at once spread over the holders, and retries rotate.
 * @return the count; *ret_had_holders says whether they are known holders.
 */
static size_t pick_candidates(struct fetch *f, const uint8_t (*holders)[STORE_NODE_ID_LEN],
			      size_t nholders, struct gossip_addr *out, bool *ret_had_holders)
{
	struct pick pk = { .holders = holders, .nholders = nholders, .out = out };
	struct gossip *core = gossip_transport_core(f->t);

	if (nholders > 0)
		gossip_member_foreach(core, pick_cb, &pk);
	*ret_had_holders = pk.nout > 0;
	if (pk.nout == 0) {
		pk.all = true;
		gossip_member_foreach(core, pick_cb, &pk);
	}
	shuffle(out, pk.nout);
	return pk.nout;
}

/* The current holders of @id by the hook (health records), else @given. malloc'd or NULL. */
static size_t current_holders(struct fetch *f, const struct store_id *id,
			      const uint8_t (*given)[STORE_NODE_ID_LEN], size_t ngiven,
			      uint8_t (**ret)[STORE_NODE_ID_LEN])
{
	uint8_t(*buf)[STORE_NODE_ID_LEN] = NULL;
	size_t n = 0;

	if (f->hooks.holders) {
		buf = calloc(FETCH_HOLDERS_MAX, STORE_NODE_ID_LEN);
		if (buf)
			n = f->hooks.holders(f->hooks.ud, id, buf, FETCH_HOLDERS_MAX);
		if (n > FETCH_HOLDERS_MAX)
			n = FETCH_HOLDERS_MAX;
		/* the need's own list is as good as the records it was made from */
		for (size_t i = 0; buf && i < ngiven && n < FETCH_HOLDERS_MAX; i++)
			if (!id_in((const uint8_t(*)[STORE_NODE_ID_LEN])buf, n, given[i]))
				memcpy(buf[n++], given[i], STORE_NODE_ID_LEN);
	} else if (ngiven > 0) {
		buf = malloc(ngiven * STORE_NODE_ID_LEN);
		if (buf) {
			memcpy(buf, given, ngiven * STORE_NODE_ID_LEN);
			n = ngiven;
		}
	}
	*ret = buf;
	return buf ? n : 0;
}

static int from_nodes(struct fetch *f, const struct store_id *id,
		      const uint8_t (*nodes)[STORE_NODE_ID_LEN], size_t n, fetch_cb cb, void *ud,
		      bool *ret_had_holders)
{
	struct gossip_addr peers[FETCH_PEERS_MAX];
	uint8_t(*holders)[STORE_NODE_ID_LEN] = NULL;
	size_t nh = current_holders(f, id, nodes, n, &holders), np;
	bool had = false;

	np = pick_candidates(f, (const uint8_t(*)[STORE_NODE_ID_LEN])holders, nh, peers, &had);
	free(holders);
	if (ret_had_holders)
		*ret_had_holders = had;
	if (np == 0)
		return -ENOENT;
	int r = fetch_artifact(f, id, peers, np, cb, ud);
	if (r == 0) {
		struct job *j = job_find(f, id);

		/* candidates follow the holders from now on, even when none was known yet: a
		 * deploy's revision often outruns its writer's health record listing the
		 * artifact, and a job stuck on its first random draw would never ask the nodes
		 * that fetched it meanwhile (job_refresh keeps the draw while no holder is known) */
		if (j && f->hooks.holders)
			j->dynamic = true;
	}
	return r;
}

/* A dynamic job's candidates become the current live holders, in a new random order (the
 * transfer state is kept: any holder serves the same verified bytes). */
static void job_refresh(struct job *j)
{
	struct fetch *f = j->f;
	struct gossip_addr peers[FETCH_PEERS_MAX];
	uint8_t(*h)[STORE_NODE_ID_LEN] = NULL;
	size_t nh, np;
	bool had = false;

	if (!j->dynamic || !f->hooks.holders)
		return;
	nh = current_holders(f, &j->id, NULL, 0, &h);
	np = pick_candidates(f, (const uint8_t(*)[STORE_NODE_ID_LEN])h, nh, peers, &had);
	free(h);
	if (!had || np == 0)
		return;
	memcpy(j->peers, peers, np * sizeof(peers[0]));
	memset(j->peer_absent, 0, sizeof(j->peer_absent));
	j->npeers = np;
	j->cur = 0;
}

int fetch_artifact_from_nodes(struct fetch *f, const struct store_id *id,
			      const uint8_t (*nodes)[STORE_NODE_ID_LEN], size_t n, fetch_cb cb,
			      void *ud)
{
	return from_nodes(f, id, nodes, n, cb, ud, NULL);
}

void fetch_set_hooks(struct fetch *f, const struct fetch_hooks *hooks)
{
	if (hooks)
		f->hooks = *hooks;
	else
		memset(&f->hooks, 0, sizeof(f->hooks));
}

/* ---- the brain's hook -------------------------------------------------------------------- */

static void retry_closed(uv_handle_t *h)
{
	struct retry *rt = h->data;

	free(rt->nodes);
	free(rt);
}

static void retry_end(struct retry *rt)
{
	struct fetch *f = rt->f;

	if (rt->prev)
		rt->prev->next = rt->next;
	else
		f->retries = rt->next;
	if (rt->next)
		rt->next->prev = rt->prev;
	uv_close((uv_handle_t *)&rt->timer, retry_closed);
}

static void retry_start(struct retry *rt);
static void retry_fire(uv_timer_t *t);

/* The delay after @tries failures: retry_ms doubled per failure up to retry_max_ms, +-25 %. */
static uint64_t retry_delay(const struct fetch *f, unsigned tries)
{
	uint64_t d = f->cfg.retry_ms;

	for (unsigned i = 1; i < tries && d < f->cfg.retry_max_ms; i++)
		d *= 2;
	if (d > f->cfg.retry_max_ms)
		d = f->cfg.retry_max_ms;
	return d - d / 4 + randombytes_uniform((uint32_t)(d / 2 + 1));
}

static void retry_done(void *ud, const struct store_id *id, int err)
{
	struct retry *rt = ud;
	struct fetch *f = rt->f;
	char hex[STORE_ID_HEXLEN + 1];
	uint64_t delay;

	rt->running = false;
	store_id_hex(id, hex);
	if (err == 0)
		log_notice("fetch: artifact %.12s received from a peer", hex);
	if (err == 0 || f->closing) {
		retry_end(rt);
		return;
	}
	if (f->hooks.wanted && !f->hooks.wanted(f->hooks.ud, rt->service, &rt->id)) {
		log_info("fetch: artifact %.12s is no longer wanted: not retrying", hex);
		retry_end(rt);
		return;
	}
	rt->tries++;
	delay = retry_delay(f, rt->tries);
	if (err == -ENOENT && !rt->had_holders && rt->tries <= 3) {
		/* nobody was known to hold it and the random draw missed: the holders' health
		 * records are usually on their way (a deploy's revision travels first), so look
		 * again soon rather than after a back-off meant for failing peers */
		uint8_t(*h)[STORE_NODE_ID_LEN] = NULL;
		struct gossip_addr peers[FETCH_PEERS_MAX];
		bool had = false;
		size_t nh = current_holders(f, &rt->id, NULL, 0, &h);

		pick_candidates(f, (const uint8_t(*)[STORE_NODE_ID_LEN])h, nh, peers, &had);
		free(h);
		if (had)
			delay = FETCH_RETRY_QUICK_MS;
	}
	log_warning("fetch: artifact %.12s: %s (attempt %u; next in %" PRIu64 " ms)", hex,
		    err == -ENOENT ? "no peer asked holds it" : store_strerror(err), rt->tries, delay);
	uv_timer_start(&rt->timer, retry_fire, delay, 0);
}

static void retry_fire(uv_timer_t *t)
{
	retry_start(t->data);
}

static void retry_start(struct retry *rt)
{
	struct fetch *f = rt->f;
	bool had = false;
	int r;

	if (f->hooks.wanted && !f->hooks.wanted(f->hooks.ud, rt->service, &rt->id)) {
		retry_end(rt);
		return;
	}
	rt->last_start = uv_now(f->loop);
	rt->running = true;
	/* the CURRENT holders at every attempt, never the list the need came with */
	r = from_nodes(f, &rt->id, f->hooks.holders ? NULL : (const uint8_t(*)[STORE_NODE_ID_LEN])
				rt->nodes, f->hooks.holders ? 0 : rt->n, retry_done, rt, &had);
	rt->had_holders = had;
	if (r == 1) {
		retry_end(rt);
		return;
	}
	if (r < 0)
		retry_done(rt, &rt->id, r);
}

void fetch_member_alive(struct fetch *f, const uint8_t id[STORE_NODE_ID_LEN])
{
	uint64_t now;

	if (!f || f->closing)
		return;
	now = uv_now(f->loop);
	for (struct retry *rt = f->retries; rt; rt = rt->next) {
		uint8_t(*h)[STORE_NODE_ID_LEN] = NULL;
		struct gossip_addr peers[FETCH_PEERS_MAX];
		bool holder, live = false;
		size_t nh;

		/* at most one look per retry every FETCH_RETRY_QUICK_MS (a flood of member
		 * events must not turn into a flood of record scans); an event skipped here is
		 * caught by the next look, which also asks whether any holder is live now */
		if (rt->running || now - rt->last_start < FETCH_RETRY_QUICK_MS ||
		    now - rt->last_check < FETCH_RETRY_QUICK_MS)
			continue;
		rt->last_check = now;
		nh = current_holders(f, &rt->id, (const uint8_t(*)[STORE_NODE_ID_LEN])rt->nodes,
				     rt->n, &h);
		holder = nh == 0 || id_in((const uint8_t(*)[STORE_NODE_ID_LEN])h, nh, id);
		if (!holder && !rt->had_holders)
			pick_candidates(f, (const uint8_t(*)[STORE_NODE_ID_LEN])h, nh, peers, &live);
		free(h);
		if (holder || live) /* a holder (or, with none known, anyone) is back: now */
			uv_timer_start(&rt->timer, retry_fire, 0, 0);
	}
}

void fetch_brain_need(void *ud, const char *service, uint64_t rev, const struct store_id *artifact,
		      const uint8_t (*holders)[STORE_NODE_ID_LEN], size_t nholders)
{
	struct fetch *f = ud;
	struct retry *rt;

	(void)rev;
	if (!f || f->closing)
		return;
	for (rt = f->retries; rt; rt = rt->next)
		if (memcmp(rt->id.b, artifact->b, STORE_ID_LEN) == 0) {
			/* already being fetched: a waiting one goes now (new holders, perhaps) */
			if (!rt->running)
				uv_timer_start(&rt->timer, retry_fire, 0, 0);
			return;
		}
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return;
	if (nholders > FETCH_HOLDERS_MAX)
		nholders = FETCH_HOLDERS_MAX;
	if (nholders) {
		rt->nodes = malloc(nholders * STORE_NODE_ID_LEN);
		if (!rt->nodes) {
			free(rt);
			return;
		}
		memcpy(rt->nodes, holders, nholders * STORE_NODE_ID_LEN);
	}
	rt->n = nholders;
	rt->f = f;
	rt->id = *artifact;
	snprintf(rt->service, sizeof(rt->service), "%s", service ? service : "");
	uv_timer_init(f->loop, &rt->timer);
	rt->timer.data = rt;
	rt->next = f->retries;
	if (f->retries)
		f->retries->prev = rt;
	f->retries = rt;
	retry_start(rt);
}

size_t fetch_retrying(const struct fetch *f)
{
	size_t n = 0;

	for (const struct retry *rt = f->retries; rt; rt = rt->next)
		n++;
	return n;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int fetch_new(uv_loop_t *loop, struct store *store, struct gossip_transport *t,
	      const struct fetch_config *cfg, struct fetch **ret)
{
	struct fetch *f = calloc(1, sizeof(*f));
	int r;

	if (!f)
		return -ENOMEM;
	f->chunk_buf = malloc(STORE_CHUNK_SIZE);
	if (!f->chunk_buf) {
		free(f);
		return -ENOMEM;
	}
	f->loop = loop;
	f->store = store;
	f->t = t;
	if (cfg)
		f->cfg = *cfg;
	if (f->cfg.window == 0)
		f->cfg.window = FETCH_WINDOW_DEFAULT;
	if (f->cfg.window > FETCH_WINDOW_MAX)
		f->cfg.window = FETCH_WINDOW_MAX;
	if (f->cfg.retry_ms == 0)
		f->cfg.retry_ms = 1000;
	if (f->cfg.serve_slots == 0)
		f->cfg.serve_slots = FETCH_SERVE_SLOTS_DEFAULT;
	if (f->cfg.retry_max_ms == 0)
		f->cfg.retry_max_ms = 60000;
	if (f->cfg.retry_max_ms < f->cfg.retry_ms)
		f->cfg.retry_max_ms = f->cfg.retry_ms;
	r = gossip_transport_app_listen(t, FETCH_PROTO, serve_accept, f);
	if (r < 0) {
		free(f->chunk_buf);
		free(f);
		return r;
	}
	*ret = f;
	return 0;
}

void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	f->closing = true;
	(void)gossip_transport_app_listen(f->t, FETCH_PROTO, NULL, NULL);
	while (f->jobs)
		job_finish(f->jobs, -ECANCELED); /* retry_done ends the running retries */
	while (f->retries)
		retry_end(f->retries);
	while (f->serves) {
		struct serve *sv = f->serves;

		gossip_stream_close(sv->s);
		serve_unlink(sv);
	}
	free(f->chunk_buf);
	free(f);
}

void fetch_get_stats(const struct fetch *f, struct fetch_stats *ret)
{
	*ret = f->stats;
}

size_t fetch_active(const struct fetch *f)
{
	return f->njobs;
}

/* ---- the control operation ------------------------------------------------------------ */

/* An operator fetch ended (its outcome is kept by job_finish for the polls of its attempt). */
static void op_done(void *ud, const struct store_id *id, int err)
{
	char hex[STORE_ID_HEXLEN + 1];

	(void)ud;
	store_id_hex(id, hex);
	if (err == 0)
		log_notice("fetch: artifact %.12s received from a peer", hex);
	else if (err != -ECANCELED)
		log_warning("fetch: artifact %.12s: %s", hex, store_strerror(err));
}

void fetch_op_fetch(struct fetch *f, const struct ctl_request *req, struct ctl_enc *out)
{
	struct gossip_addr addrs[FETCH_PEERS_MAX];
	struct store_artifact_info info;
	struct store_id id;
	const msgpack_object *o, *from;
	char hex[STORE_ID_HEXLEN + 1];
	const char *state = "fetching";
	uint64_t attempt, serial = 0;
	struct job *j;
	size_t n = 0;
	int r;

	if (!f) {
		ctl_enc_error(out, CTL_E_SHUTTING_DOWN, "gossip is not running on this agent");
		return;
	}
	o = ctl_map_get(req->args, "id");
	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size != STORE_ID_HEXLEN) {
		ctl_enc_error(out, CTL_E_BAD_REQUEST, "\"id\" must be a full artifact id (64 hex)");
		return;
	}
	memcpy(hex, o->via.str.ptr, STORE_ID_HEXLEN);
	hex[STORE_ID_HEXLEN] = 0;
	if (store_id_parse(hex, &id) < 0) {
		ctl_enc_error(out, CTL_E_BAD_REQUEST, "\"id\" must be a full artifact id (64 hex)");
		return;
	}
	from = ctl_map_get(req->args, "from");
	if (from &&
	    (from->type != MSGPACK_OBJECT_ARRAY || from->via.array.size > FETCH_PEERS_MAX)) {
		ctl_enc_error(out, CTL_E_BAD_REQUEST, "\"from\" must be an array of \"IP:PORT\"");
		return;
	}
	for (uint32_t i = 0; from && i < from->via.array.size; i++) {
		const msgpack_object *s = &from->via.array.ptr[i];
		char buf[80];

		if (s->type != MSGPACK_OBJECT_STR || s->via.str.size == 0 ||
		    s->via.str.size >= sizeof(buf)) {
			ctl_enc_error(out, CTL_E_BAD_REQUEST,
				      "\"from\" must hold \"IP:PORT\" strings");
			return;
		}
		memcpy(buf, s->via.str.ptr, s->via.str.size);
		buf[s->via.str.size] = 0;
		if (gossip_transport_parse_addr(buf, 7946, &addrs[n]) < 0) {
			ctl_enc_error(out, CTL_E_BAD_REQUEST, "not a numeric address: IP:PORT");
			return;
		}
		n++;
	}
	o = ctl_map_get(req->args, "attempt");
	if (o && o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		ctl_enc_error(out, CTL_E_BAD_REQUEST, "\"attempt\" must be a positive integer");
		return;
	}
	attempt = o ? o->via.u64 : 0;
	r = store_artifact_get(f->store, &id, &info);
	if (r == 0) {
		store_artifact_info_release(&info);
		state = "present";
		goto reply;
	}
	/* A failure goes only to the polls of the attempt that failed (they name it): a new
	 * request never inherits an old error, it starts or joins a transfer. */
	for (size_t i = 0; attempt && i < FETCH_RECENT; i++)
		if (f->recent[i].valid && f->recent[i].serial == attempt &&
		    memcmp(f->recent[i].id.b, id.b, STORE_ID_LEN) == 0) {
			int err = f->recent[i].err;
			const char *why = store_strerror(err);

			if (err == -ENOENT)
				why = "no peer holds this artifact";
			else if (err == -EBADMSG)
				why = "the peers sent data that does not verify";
			ctl_enc_error(out, err == -ENOENT ? CTL_E_NOT_FOUND : CTL_E_INTERNAL, why);
			return;
		}
	j = job_find(f, &id);
	if (j && j->op_waiter && n == 0) {
		serial = j->serial; /* joined: its waiter is there already */
		goto reply;
	}
	if (n > 0)
		r = fetch_artifact(f, &id, addrs, n, op_done, f);
	else
		r = fetch_artifact_from_nodes(f, &id, NULL, 0, op_done, f);
	if (r == 1) {
		state = "present";
	} else if (r == -ENOENT) {
		ctl_enc_error(out, CTL_E_NOT_FOUND, "no live member to fetch from");
		return;
	} else if (r < 0) {
		ctl_enc_error(out, agent_ctl_err_from_errno(r), store_strerror(r));
		return;
	} else {
		j = job_find(f, &id);
		if (j) {
			j->op_waiter = true;
			serial = j->serial;
		}
	}
reply:
	ctl_enc_ok(out);
	ctl_enc_map(out, serial ? 3 : 2);
	ctl_enc_str(out, "id");
	ctl_enc_str(out, hex);
	ctl_enc_str(out, "state");
	ctl_enc_str(out, state);
	if (serial) {
		ctl_enc_str(out, "attempt");
		ctl_enc_uint(out, serial);
	}
}
