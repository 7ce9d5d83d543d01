/*
 * agent/cluster/cluster.c: the gossip transport inside agentd (see agent/cluster/cluster.h).
 *
 * Why the indirections:
 *  - The core calls on_member/on_record from inside itself, where nothing may mutate it. Those
 *    callbacks here only COPY: the change is encoded for the store (pending writes, coalesced
 *    per key) and queued for the subscribers, who are called from a zero timer once the core
 *    has returned, so the brain may publish records from its callbacks.
 *  - Every store transaction ends with an fsync. A converging cluster reports dozens of
 *    member changes per second, and a rollback in a cluster of N nodes brings each node N
 *    health and vote records; they are coalesced per key for CLUSTER_FLUSH_MS and written by
 *    ONE threadpool job at a time, in ONE transaction per flush (store_kv_write_many), so
 *    the loop never waits on the disk and a burst costs one fsync, not one per record.
 *  - `agentctl status` runs on the threadpool: it reads a summary refreshed on the loop under
 *    a mutex, never the core.
 */
#include "agent/cluster/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

#include "agent/base/clock.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/base/log.h"
#include "gossip/transport.h"

#define PERSIST_VERSION 1
#define REC_KEY_MAX	(GOSSIP_ID_LEN + GOSSIP_KEY_MAX)

/* One coalesced store write. */
struct pend {
	enum store_table table;
	uint8_t key[REC_KEY_MAX];
	size_t klen;
	uint8_t *val;		/* malloc()ed encoded value */
	size_t vlen;
};

struct pend_list {
	struct pend *v;
	size_t n, cap;
};

/* A change queued for the subscribers (copies of the borrowed core structs). */
struct event {
	bool is_member;
	struct gossip_member m;
	uint8_t labels[GOSSIP_LABELS_MAX];
	uint8_t owner[GOSSIP_ID_LEN];
	uint8_t key[GOSSIP_KEY_MAX];
	size_t klen;
	uint64_t version;
	uint8_t value[GOSSIP_VALUE_MAX];
	size_t vlen;
};

struct sub {
	void (*on_member)(void *ud, const struct gossip_member *m);
	void (*on_record)(void *ud, const struct gossip_record *r);
	void *ud;
};

struct cluster {
	uv_loop_t *loop;
	struct store *store;
	uint8_t id[GOSSIP_ID_LEN];
	struct gossip_keyring *kr;
	char *keyring_path;
	struct gossip_transport *t;
	bool (*record_urgent)(const void *key, size_t klen);	/* cluster_tuning's */

	uv_timer_t flush_timer, event_timer, leave_timer;
	unsigned handles_open;

	struct pend_list pending;	/* loop only */
	struct pend_list job;		/* owned by the worker while job_running */
	uv_work_t job_req;
	bool job_running;
	int job_errors;			/* written by the worker, read in after_work */

	struct event *events;
	size_t nevents, events_cap;
	struct sub subs[CLUSTER_SUBSCRIBERS];
	size_t nsubs;

	bool left, leaving, closing;
	void (*leave_done)(void *ud);
	void *leave_ud;
	void (*close_cb)(void *ud);
	void *close_ud;

	uv_mutex_t mu;			/* protects summary */
	struct cluster_summary summary;
	uint64_t persist_errors;

	/* Operator hints (diagnose()): joining in vain, packets of another keyring or cluster. */
	uint64_t started_ms;		/* uv_now when the cluster started */
	bool has_seeds;			/* --join seeds or persisted members to rejoin */
	bool alone_warned;
	uint64_t foreign_logged;	/* unknown-key + auth drops already reported */
	uint64_t foreign_next_ms;	/* no new report before this uv_now */
	uint64_t future_logged, future_next_ms;	/* the same for records_future */
};

/* ---- labels ------------------------------------------------------------------------------- */

int cluster_labels_encode(char *const *pairs, size_t n, uint8_t *ret_blob, size_t cap,
			  size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int r = 0;

	if (n > UINT32_MAX)
		return -EINVAL;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(pairs[i], '=');
		if (!eq || eq == pairs[i]) {
			r = -EINVAL;
			goto out;
		}
		size_t kl = (size_t)(eq - pairs[i]), vl = strlen(eq + 1);
		msgpack_pack_str(&pk, kl);
		msgpack_pack_str_body(&pk, pairs[i], kl);
		msgpack_pack_str(&pk, vl);
		msgpack_pack_str_body(&pk, eq + 1, vl);
	}
	if (sb.size > cap || sb.size > GOSSIP_LABELS_MAX) {
		r = -EMSGSIZE;
		goto out;
	}
	memcpy(ret_blob, sb.data, sb.size);
	*ret_len = sb.size;
out:
	msgpack_sbuffer_destroy(&sb);
	return r;
}

/* Decode a label blob: 0 and a map object in @msg, or -EBADMSG. An empty blob is no labels. */
static int labels_decode(const uint8_t *blob, size_t len, struct ctl_msg *msg)
{
	memset(msg, 0, sizeof *msg);
	if (ctl_msg_decode(blob, len, msg) < 0)
		return -EBADMSG;
	if (msg->root->type != MSGPACK_OBJECT_MAP) {
		ctl_msg_release(msg);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < msg->root->via.map.size; i++) {
		const msgpack_object_kv *kv = &msg->root->via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_STR) {
			ctl_msg_release(msg);
			return -EBADMSG;
		}
	}
	return 0;
}

int cluster_label_get(const uint8_t *blob, size_t len, const char *key, char *ret, size_t cap)
{
	struct ctl_msg msg;
	int r = -ENOENT;
	if (len == 0)
		return -ENOENT;
	if (labels_decode(blob, len, &msg) < 0)
		return -EBADMSG;
	size_t kl = strlen(key);
	for (uint32_t i = 0; i < msg.root->via.map.size; i++) {
		const msgpack_object_kv *kv = &msg.root->via.map.ptr[i];
		if (kv->key.via.str.size != kl || memcmp(kv->key.via.str.ptr, key, kl) != 0)
			continue;
		size_t vl = kv->val.via.str.size;
		if (cap) {
			size_t n = vl < cap - 1 ? vl : cap - 1;
			memcpy(ret, kv->val.via.str.ptr, n);
			ret[n] = 0;
		}
		r = vl > INT32_MAX ? INT32_MAX : (int)vl;
		break;
	}
	ctl_msg_release(&msg);
	return r;
}

int cluster_labels_format(const uint8_t *blob, size_t len, char *buf, size_t cap)
{
	struct ctl_msg msg;
	size_t off = 0;
	if (cap)
		buf[0] = 0;
	if (len == 0)
		return 0;
	if (labels_decode(blob, len, &msg) < 0)
		return -EBADMSG;
	uint32_t n = msg.root->via.map.size;
	for (uint32_t i = 0; i < n && off < cap; i++) {
		const msgpack_object_kv *kv = &msg.root->via.map.ptr[i];
		int w = snprintf(buf + off, cap - off, "%s%.*s=%.*s", i ? "," : "",
				 (int)kv->key.via.str.size, kv->key.via.str.ptr,
				 (int)kv->val.via.str.size, kv->val.via.str.ptr);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	ctl_msg_release(&msg);
	return (int)n;
}

/* ---- persistence codec -------------------------------------------------------------------- */

/* Member value: [1, name, family, port, ip(bin 16), labels(bin), incarnation, state, wall_ms] */
/*
 * The encoded bytes in an allocation of their own size: an sbuffer starts at 8 KiB, and these
 * wait in the pending list (one per member and record changed) until the worker writes them:
 * thousands at once in a flood or a catch-up, 8 KiB each would be tens of MiB for nothing.
 */
static int sb_take(msgpack_sbuffer *sb, uint8_t **ret, size_t *ret_len)
{
	uint8_t *p = sb->data ? malloc(sb->size ? sb->size : 1) : NULL;

	if (p)
		memcpy(p, sb->data, sb->size);
	*ret_len = sb->size;
	msgpack_sbuffer_destroy(sb);
	if (!p)
		return -ENOMEM;
	*ret = p;
	return 0;
}

static int member_encode(const struct gossip_member *m, uint64_t wall_ms, uint8_t **ret,
			 size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	size_t nl = strlen(m->name);
	msgpack_pack_array(&pk, 9);
	msgpack_pack_uint8(&pk, PERSIST_VERSION);
	msgpack_pack_str(&pk, nl);
	msgpack_pack_str_body(&pk, m->name, nl);
	msgpack_pack_uint8(&pk, m->addr.family);
	msgpack_pack_uint16(&pk, m->addr.port);
	msgpack_pack_bin(&pk, sizeof m->addr.ip);
	msgpack_pack_bin_body(&pk, m->addr.ip, sizeof m->addr.ip);
	msgpack_pack_bin(&pk, m->labels_len);
	msgpack_pack_bin_body(&pk, m->labels, m->labels_len);
	msgpack_pack_uint64(&pk, m->incarnation);
	msgpack_pack_uint8(&pk, (uint8_t)m->state);
	msgpack_pack_uint64(&pk, wall_ms);
	return sb_take(&sb, ret, ret_len);
}

struct restored_member {
	struct gossip_member m;
	uint8_t labels[GOSSIP_LABELS_MAX];
	uint64_t wall_ms;
};

static bool is_uint(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

/* Decode a persisted member (bounds-checked: the store is ours, but a bad row must not crash). */
static int member_decode(const void *key, size_t klen, const void *val, size_t vlen,
			 struct restored_member *ret)
{
	struct ctl_msg msg;
	int r = -EBADMSG;
	if (klen != GOSSIP_ID_LEN || ctl_msg_decode(val, vlen, &msg) < 0)
		return -EBADMSG;
	const msgpack_object *o = msg.root;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 9)
		goto out;
	const msgpack_object *a = o->via.array.ptr;
	if (!is_uint(&a[0]) || a[0].via.u64 != PERSIST_VERSION || a[1].type != MSGPACK_OBJECT_STR ||
	    a[1].via.str.size == 0 || a[1].via.str.size > GOSSIP_NAME_MAX || !is_uint(&a[2]) ||
	    (a[2].via.u64 != GOSSIP_AF_INET && a[2].via.u64 != GOSSIP_AF_INET6) ||
	    !is_uint(&a[3]) || a[3].via.u64 > 65535 || a[4].type != MSGPACK_OBJECT_BIN ||
	    a[4].via.bin.size != 16 || a[5].type != MSGPACK_OBJECT_BIN ||
	    a[5].via.bin.size > GOSSIP_LABELS_MAX || !is_uint(&a[6]) || !is_uint(&a[7]) ||
	    a[7].via.u64 > GOSSIP_LEFT || !is_uint(&a[8]))
		goto out;
	memset(ret, 0, sizeof *ret);
	memcpy(ret->m.id, key, GOSSIP_ID_LEN);
	memcpy(ret->m.name, a[1].via.str.ptr, a[1].via.str.size);
	ret->m.addr.family = (uint8_t)a[2].via.u64;
	ret->m.addr.port = (uint16_t)a[3].via.u64;
	memcpy(ret->m.addr.ip, a[4].via.bin.ptr, 16);
	memcpy(ret->labels, a[5].via.bin.ptr, a[5].via.bin.size);
	ret->m.labels_len = a[5].via.bin.size;
	ret->m.incarnation = a[6].via.u64;
	ret->m.state = (enum gossip_state)a[7].via.u64;
	ret->wall_ms = a[8].via.u64;
	r = 0;
out:
	ctl_msg_release(&msg);
	return r;
}

/* Record value: [1, version, value(bin)]; key: owner(16) || record key. */
static int record_encode(uint64_t version, const uint8_t *value, size_t vlen, uint8_t **ret,
			 size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_uint8(&pk, PERSIST_VERSION);
	msgpack_pack_uint64(&pk, version);
	msgpack_pack_bin(&pk, vlen);
	msgpack_pack_bin_body(&pk, value, vlen);
	return sb_take(&sb, ret, ret_len);
}

/* ---- pending writes ----------------------------------------------------------------------- */

static void pend_list_clear(struct pend_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].val);
	l->n = 0;
}

static void pend_list_free(struct pend_list *l)
{
	pend_list_clear(l);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

/* Queue a write of @val (taken over) under (@table, @key): replaces a pending one. */
static void pend_add(struct cluster *c, enum store_table table, const uint8_t *key, size_t klen,
		     uint8_t *val, size_t vlen)
{
	struct pend_list *l = &c->pending;
	for (size_t i = 0; i < l->n; i++) {
		struct pend *p = &l->v[i];
		if (p->table == table && p->klen == klen && memcmp(p->key, key, klen) == 0) {
			free(p->val);
			p->val = val;
			p->vlen = vlen;
			return;
		}
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? 2 * l->cap : 32;
		struct pend *nv = realloc(l->v, ncap * sizeof *nv);
		if (!nv) {
			free(val);
			c->persist_errors++;
			log_warning("cluster: out of memory queueing a store write");
			return;
		}
		l->v = nv;
		l->cap = ncap;
	}
	struct pend *p = &l->v[l->n++];
	p->table = table;
	memcpy(p->key, key, klen);
	p->klen = klen;
	p->val = val;
	p->vlen = vlen;
}

/*
 * Write the list in ONE transaction: a large cluster delivers hundreds of records per flush
 * window (every node's health and vote during a rollback), and one fsync per record made
 * the disk, shared by every writer of the store (the loop's journal and revision writes
 * wait for LMDB's writer lock), the bottleneck of a cluster-wide swap. Returns the number
 * of writes lost.
 */
static int write_list(struct store *s, struct pend_list *l)
{
	int errors = 0;
	if (l->n == 0)
		return 0;
	struct store_kv_write *w = malloc(l->n * sizeof *w);
	if (w) {
		for (size_t i = 0; i < l->n; i++) {
			struct pend *p = &l->v[i];
			w[i] = (struct store_kv_write){.table = p->table, .key = p->key,
						       .klen = p->klen, .val = p->val,
						       .vlen = p->vlen};
		}
		int r = store_kv_write_many(s, w, l->n);
		free(w);
		if (r == 0)
			return 0;
		if (r != -EINVAL && r != -ENOMEM)
			return (int)l->n;
	}
	/* out of memory or one bad row: write one by one, so that only that row is lost */
	for (size_t i = 0; i < l->n; i++) {
		struct pend *p = &l->v[i];
		int r = store_kv_put(s, p->table, p->key, p->klen, p->val, p->vlen);
		if (r < 0)
			errors++;
	}
	return errors;
}

static void job_work(uv_work_t *req)
{
	struct cluster *c = req->data;
	c->job_errors = write_list(c->store, &c->job);
}

static void close_step(struct cluster *c);

static void job_done(uv_work_t *req, int status)
{
	struct cluster *c = req->data;
	if (c->job_errors) {
		c->persist_errors += (uint64_t)c->job_errors;
		log_warning("cluster: %d member/record write(s) to the store failed",
			    c->job_errors);
	}
	pend_list_clear(&c->job);
	c->job_running = false;
	if (c->closing)
		close_step(c);
}

static void flush_start(struct cluster *c)
{
	if (c->job_running || c->pending.n == 0)
		return;
	/* Swap: the worker owns the job list while the loop fills a fresh pending list. */
	struct pend_list tmp = c->job;
	c->job = c->pending;
	c->pending = tmp;
	c->job_req.data = c;
	c->job_running = true;
	int r = uv_queue_work(c->loop, &c->job_req, job_work, job_done);
	if (r < 0) {
		/* No threadpool: write here rather than lose the state. */
		c->job_running = false;
		int e = write_list(c->store, &c->job);
		c->persist_errors += (uint64_t)e;
		pend_list_clear(&c->job);
	}
}

/* ---- summary ------------------------------------------------------------------------------ */

static void summary_refresh(struct cluster *c)
{
	if (!c->t)
		return;
	struct gossip *g = gossip_transport_core(c->t);
	struct gossip_transport_stats ts;
	struct gossip_addr b, a;
	gossip_transport_stats(c->t, &ts);
	memset(&b, 0, sizeof b);
	memset(&a, 0, sizeof a);
	gossip_transport_addrs(c->t, &b, &a);
	uv_mutex_lock(&c->mu);
	struct cluster_summary *s = &c->summary;
	for (int i = 0; i < 4; i++)
		s->members[i] = gossip_member_count(g, i);
	s->incarnation = gossip_self(g)->incarnation;
	s->left = c->left;
	gossip_addr_format(&b, s->bind, sizeof s->bind);
	gossip_addr_format(&a, s->advertise, sizeof s->advertise);
	s->keys = (unsigned)gossip_keyring_count(c->kr);
	s->primary_key = gossip_keyring_primary(c->kr);
	if (s->primary_key < 0)
		s->primary_key = -1;
	s->packets_in = ts.packets_in;
	s->packets_out = ts.packets_out;
	s->bytes_in = ts.bytes_in;
	s->bytes_out = ts.bytes_out;
	s->send_errors = ts.send_errors;
	s->malformed = ts.malformed;
	memcpy(s->drops, ts.drops, sizeof s->drops);
	s->sync_ok = ts.sync_ok;
	s->sync_failed = ts.sync_failed;
	s->records = gossip_record_count(g);
	s->persist_errors = c->persist_errors;
	uv_mutex_unlock(&c->mu);
}

void cluster_summary(struct cluster *c, struct cluster_summary *ret)
{
	uv_mutex_lock(&c->mu);
	*ret = c->summary;
	uv_mutex_unlock(&c->mu);
}

/* ---- core callbacks (inside the core: copy only) ------------------------------------------ */

static void event_timer_cb(uv_timer_t *h);

static struct event *event_push(struct cluster *c)
{
	if (c->nevents == c->events_cap) {
		size_t ncap = c->events_cap ? 2 * c->events_cap : 16;
		struct event *n = realloc(c->events, ncap * sizeof *n);
		if (!n)
			return NULL;
		c->events = n;
		c->events_cap = ncap;
	}
	if (c->nevents == 0 && !c->closing && c->handles_open)
		uv_timer_start(&c->event_timer, event_timer_cb, 0, 0);
	return &c->events[c->nevents++];
}

static void on_member(void *ud, const struct gossip_member *m)
{
	struct cluster *c = ud;
	uint8_t *val;
	size_t vlen;
	if (member_encode(m, agent_now_ms(), &val, &vlen) == 0)
		pend_add(c, STORE_KV_MEMBERS, m->id, GOSSIP_ID_LEN, val, vlen);
	else
		c->persist_errors++;
	if (c->nsubs == 0)
		return;
	struct event *e = event_push(c);
	if (!e) {
		log_warning("cluster: out of memory: a member change was not delivered");
		return;
	}
	memset(e, 0, offsetof(struct event, labels));
	e->is_member = true;
	e->m = *m;
	if (m->labels_len) /* a member may have none: labels NULL (memcpy wants non-NULL) */
		memcpy(e->labels, m->labels, m->labels_len);
	e->m.labels = NULL;
}

static void persist_record(struct cluster *c, const uint8_t owner[GOSSIP_ID_LEN],
			   const uint8_t *key, size_t klen, uint64_t version, const uint8_t *value,
			   size_t vlen)
{
	uint8_t k[REC_KEY_MAX];
	uint8_t *val;
	size_t len;
	memcpy(k, owner, GOSSIP_ID_LEN);
	memcpy(k + GOSSIP_ID_LEN, key, klen);
	if (record_encode(version, value, vlen, &val, &len) == 0)
		pend_add(c, STORE_KV_RECORDS, k, GOSSIP_ID_LEN + klen, val, len);
	else
		c->persist_errors++;
}

static void on_record(void *ud, const struct gossip_record *r)
{
	struct cluster *c = ud;
	if (r->key_len == 0 || r->key_len > GOSSIP_KEY_MAX || r->value_len > GOSSIP_VALUE_MAX)
		return;
	persist_record(c, r->owner, r->key, r->key_len, r->version, r->value, r->value_len);
	if (c->nsubs == 0)
		return;
	struct event *e = event_push(c);
	if (!e) {
		log_warning("cluster: out of memory: a record was not delivered");
		return;
	}
	e->is_member = false;
	memcpy(e->owner, r->owner, GOSSIP_ID_LEN);
	memcpy(e->key, r->key, r->key_len);
	e->klen = r->key_len;
	e->version = r->version;
	memcpy(e->value, r->value, r->value_len);
	e->vlen = r->value_len;
}

/* Deliver queued events from the loop, outside the core. */
static void event_timer_cb(uv_timer_t *h)
{
	struct cluster *c = h->data;
	/* Subscribers may cause more events: take the batch, deliver, repeat on the next turn. */
	size_t n = c->nevents;
	struct event *ev = c->events;
	c->events = NULL;
	c->nevents = c->events_cap = 0;
	for (size_t i = 0; i < n && !c->closing; i++) {
		struct event *e = &ev[i];
		if (e->is_member) {
			e->m.labels = e->labels;
			for (size_t s = 0; s < c->nsubs; s++)
				if (c->subs[s].on_member)
					c->subs[s].on_member(c->subs[s].ud, &e->m);
		} else {
			struct gossip_record r = {.key = e->key, .key_len = e->klen,
						  .version = e->version, .value = e->value,
						  .value_len = e->vlen};
			memcpy(r.owner, e->owner, GOSSIP_ID_LEN);
			for (size_t s = 0; s < c->nsubs; s++)
				if (c->subs[s].on_record)
					c->subs[s].on_record(c->subs[s].ud, &r);
		}
	}
	free(ev);
	summary_refresh(c);
}

/*
 * The two mistakes a new cluster most often makes are silent at the protocol level: a node
 * whose seeds never answer (down, firewalled, or using another keyring or --cluster name, whose
 * packets the seeds drop unread), and the seed's side of it, packets sealed with a key it does
 * not hold or for another cluster name. Say so in the log, at most once a minute.
 */
#define CLUSTER_ALONE_WARN_MS	10000
#define CLUSTER_FOREIGN_LOG_MS	60000
static void diagnose(struct cluster *c)
{
	uint64_t now = uv_now(c->loop);
	struct cluster_summary *s = &c->summary; /* written on this thread only */
	size_t alive = s->members[GOSSIP_ALIVE] + s->members[GOSSIP_SUSPECT];

	if (c->has_seeds && !c->left && alive <= 1 && !c->alone_warned &&
	    now - c->started_ms >= CLUSTER_ALONE_WARN_MS) {
		log_warning("cluster: still alone %" PRIu64 " s after start: no seed or known member "
			    "answered (check that they run, that this node has their keyring and "
			    "--cluster name, and that UDP and TCP reach the gossip port); retrying",
			    (now - c->started_ms) / 1000);
		c->alone_warned = true;
	} else if (c->alone_warned && alive > 1) {
		log_notice("cluster: joined: %zu member(s) alive", alive);
		c->alone_warned = false;
	}

	uint64_t foreign = s->drops[GOSSIP_DROP_UNKNOWN_KEY] + s->drops[GOSSIP_DROP_AUTH];
	if (foreign > c->foreign_logged && now >= c->foreign_next_ms) {
		log_warning("cluster: dropped %" PRIu64 " packet(s) sealed with a key id this node "
			    "does not hold and %" PRIu64 " that failed authentication (so far): a "
			    "node with another keyring or --cluster name, or forged traffic",
			    s->drops[GOSSIP_DROP_UNKNOWN_KEY], s->drops[GOSSIP_DROP_AUTH]);
		c->foreign_logged = foreign;
		c->foreign_next_ms = now + CLUSTER_FOREIGN_LOG_MS;
	}

	struct gossip_stats gs = {0};
	if (c->t)
		gossip_stats(gossip_transport_core(c->t), &gs);
	if (gs.records_future > c->future_logged && now >= c->future_next_ms) {
		log_warning("cluster: refused %" PRIu64 " gossip record(s) (so far) whose version is "
			    "more than 30 days ahead of this node's clock: forged by a cluster key "
			    "holder, or written by a node whose clock is that far ahead (check the "
			    "clocks)", gs.records_future);
		c->future_logged = gs.records_future;
		c->future_next_ms = now + CLUSTER_FOREIGN_LOG_MS;
	}
}

static void flush_timer_cb(uv_timer_t *h)
{
	struct cluster *c = h->data;
	flush_start(c);
	summary_refresh(c);
	diagnose(c);
}

/* ---- addresses ---------------------------------------------------------------------------- */

/* "HOST:PORT" (a name, resolved now) or numeric into @ret. */
static int resolve_addr(const char *text, struct gossip_addr *ret)
{
	if (gossip_transport_parse_addr(text, CLUSTER_DEFAULT_PORT, ret) == 0)
		return 0;
	const char *colon = strrchr(text, ':');
	char host[256], port[16];
	if (!colon || colon == text || (size_t)(colon - text) >= sizeof host || strlen(colon + 1) >=
	    sizeof port)
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	snprintf(port, sizeof port, "%s", colon + 1);
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return -EINVAL;
	char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 32];
	int r = -EINVAL;
	if (res->ai_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
		snprintf(buf, sizeof buf, "%s:%s", ip, port);
		r = gossip_transport_parse_addr(buf, -1, ret);
	} else if (res->ai_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
			  sizeof ip);
		snprintf(buf, sizeof buf, "[%s]:%s", ip, port);
		r = gossip_transport_parse_addr(buf, -1, ret);
	}
	freeaddrinfo(res);
	return r;
}

static bool addr_wildcard(const struct gossip_addr *a)
{
	for (size_t i = 0; i < sizeof a->ip; i++)
		if (a->ip[i])
			return false;
	return true;
}

/* For a wildcard bind without --advertise: the first non-internal address of the family. */
static void pick_advertise(const struct gossip_addr *bound, char *buf, size_t cap)
{
	uv_interface_address_t *ifs = NULL;
	int n = 0;
	char ip[INET6_ADDRSTRLEN] = "";
	if (uv_interface_addresses(&ifs, &n) == 0) {
		for (int i = 0; i < n && !ip[0]; i++) {
			if (ifs[i].is_internal)
				continue;
			if (bound->family == GOSSIP_AF_INET &&
			    ifs[i].address.address4.sin_family == AF_INET)
				uv_ip4_name(&ifs[i].address.address4, ip, sizeof ip);
			else if (bound->family == GOSSIP_AF_INET6 &&
				 ifs[i].address.address6.sin6_family == AF_INET6 &&
				 !IN6_IS_ADDR_LINKLOCAL(&ifs[i].address.address6.sin6_addr))
				uv_ip6_name(&ifs[i].address.address6, ip, sizeof ip);
		}
		uv_free_interface_addresses(ifs, n);
	}
	if (!ip[0])
		snprintf(ip, sizeof ip, "%s",
			 bound->family == GOSSIP_AF_INET6 ? "::1" : "127.0.0.1");
	if (bound->family == GOSSIP_AF_INET6)
		snprintf(buf, cap, "[%s]:%u", ip, bound->port);
	else
		snprintf(buf, cap, "%s:%u", ip, bound->port);
}

/* ---- keyring ------------------------------------------------------------------------------ */

static int keyring_open(struct cluster *c, const struct agent_config *cfg, char *err,
			size_t errlen)
{
	int r = gossip_keyring_new(&c->kr);
	if (r < 0) {
		snprintf(err, errlen, "cannot allocate the keyring: %s", strerror(-r));
		return r;
	}
	if (cfg->keyring) {
		c->keyring_path = strdup(cfg->keyring);
	} else {
		size_t n = strlen(cfg->state_dir) + sizeof "/keyring";
		c->keyring_path = malloc(n);
		if (c->keyring_path)
			snprintf(c->keyring_path, n, "%s/keyring", cfg->state_dir);
	}
	if (!c->keyring_path) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r = gossip_keyring_load(c->kr, c->keyring_path);
	if (r == -ENOENT && !cfg->keyring) {
		uint8_t key[GOSSIP_KEY_LEN], id;
		gossip_key_generate(key);
		r = gossip_keyring_install(c->kr, key, &id);
		sodium_memzero(key, sizeof key);
		if (r == 0)
			r = gossip_keyring_save(c->kr, c->keyring_path);
		if (r < 0) {
			snprintf(err, errlen, "cannot create the keyring %s: %s", c->keyring_path,
				 strerror(-r));
			return r;
		}
		log_notice("cluster: generated a new cluster key (id %02x) in %s; copy this file "
			   "to every other node of the cluster (same path, mode 0600) before they "
			   "start",
			   id, c->keyring_path);
		return 0;
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot load the keyring %s: %s%s", c->keyring_path,
			 strerror(-r), r == -ENOENT ? " (an explicit --keyring must exist)" : "");
		return r;
	}
	/* The cluster key opens every packet and signs nothing: a copy readable by any local
	 * user is a copy for any local user. Others: refused; the group: said loudly (a
	 * deliberate 0640 with a dedicated group is the operator's call). */
	struct stat st;
	if (stat(c->keyring_path, &st) == 0 && (st.st_mode & 0007)) {
		snprintf(err, errlen, "the keyring %s is accessible to every local user (mode %04o): "
			 "chmod 600 it (and its copies on the other nodes)", c->keyring_path,
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	if (stat(c->keyring_path, &st) == 0 && (st.st_mode & 0070))
		log_warning("cluster: the keyring %s is readable by its group (mode %04o): every "
			    "member of that group can read the cluster key", c->keyring_path,
			    (unsigned)(st.st_mode & 07777));
	return 0;
}

struct gossip_keyring *cluster_keyring(struct cluster *c)
{
	return c->kr;
}

const char *cluster_keyring_path(const struct cluster *c)
{
	return c->keyring_path;
}

int cluster_keyring_install(struct cluster *c, const char *key_b64, uint8_t *ret_id)
{
	uint8_t key[GOSSIP_KEY_LEN], id;
	int r = gossip_key_decode(key_b64, strlen(key_b64), key);
	if (r < 0)
		return r;
	bool had = gossip_keyring_has(c->kr, gossip_key_id(key));
	r = gossip_keyring_install(c->kr, key, &id);
	sodium_memzero(key, sizeof key);
	if (r < 0)
		return r;
	r = gossip_keyring_save(c->kr, c->keyring_path);
	if (r < 0) {
		if (!had)
			(void)gossip_keyring_remove(c->kr, id);
		return r;
	}
	log_notice("cluster: key %02x installed (%zu key(s); saved to %s)", id,
		   gossip_keyring_count(c->kr), c->keyring_path);
	summary_refresh(c);
	if (ret_id)
		*ret_id = id;
	return 0;
}

int cluster_keyring_use(struct cluster *c, uint8_t id)
{
	int old = gossip_keyring_primary(c->kr);
	int r = gossip_keyring_use(c->kr, id);
	if (r < 0)
		return r;
	r = gossip_keyring_save(c->kr, c->keyring_path);
	if (r < 0) {
		if (old >= 0)
			(void)gossip_keyring_use(c->kr, (uint8_t)old);
		return r;
	}
	log_notice("cluster: key %02x is now the primary (saved to %s)", id, c->keyring_path);
	summary_refresh(c);
	return 0;
}

int cluster_keyring_remove(struct cluster *c, uint8_t id)
{
	uint8_t key[GOSSIP_KEY_LEN];
	int r = gossip_keyring_get(c->kr, id, key);
	if (r < 0)
		return r;
	r = gossip_keyring_remove(c->kr, id);
	if (r < 0)
		goto out;
	r = gossip_keyring_save(c->kr, c->keyring_path);
	if (r < 0) {
		(void)gossip_keyring_install(c->kr, key, NULL);
		goto out;
	}
	log_notice("cluster: key %02x removed (saved to %s)", id, c->keyring_path);
	summary_refresh(c);
out:
	sodium_memzero(key, sizeof key);
	return r;
}

int cluster_keyring_reload(struct cluster *c)
{
	int r = gossip_keyring_load(c->kr, c->keyring_path);
	if (r < 0)
		log_error("cluster: keyring reload from %s failed, keeping the running keyring: %s",
			  c->keyring_path, strerror(-r));
	else
		log_notice("cluster: keyring reloaded from %s (%zu key(s), primary %02x)",
			   c->keyring_path, gossip_keyring_count(c->kr),
			   gossip_keyring_primary(c->kr));
	summary_refresh(c);
	return r;
}

/* ---- restore ------------------------------------------------------------------------------ */

struct restore_ctx {
	struct cluster *c;
	struct restored_member *v;
	size_t n, cap;
	uint64_t self_inc;
	bool have_self;
	size_t bad;
};

static int restore_member_cb(const void *key, size_t klen, const void *val, size_t vlen,
			     void *ud)
{
	struct restore_ctx *x = ud;
	struct restored_member rm;
	if (member_decode(key, klen, val, vlen, &rm) < 0) {
		x->bad++;
		return 0;
	}
	if (memcmp(rm.m.id, x->c->id, GOSSIP_ID_LEN) == 0) {
		x->have_self = true;
		x->self_inc = rm.m.incarnation;
		return 0;
	}
	if (x->n == x->cap) {
		size_t ncap = x->cap ? 2 * x->cap : 32;
		struct restored_member *nv = realloc(x->v, ncap * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		x->v = nv;
		x->cap = ncap;
	}
	x->v[x->n++] = rm;
	return 0;
}

static int restore_record_cb(const void *key, size_t klen, const void *val, size_t vlen,
			     void *ud)
{
	struct restore_ctx *x = ud;
	struct ctl_msg msg;
	if (klen <= GOSSIP_ID_LEN || klen > REC_KEY_MAX || ctl_msg_decode(val, vlen, &msg) < 0) {
		x->bad++;
		return 0;
	}
	const msgpack_object *o = msg.root;
	if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size >= 3 &&
	    is_uint(&o->via.array.ptr[0]) && o->via.array.ptr[0].via.u64 == PERSIST_VERSION &&
	    is_uint(&o->via.array.ptr[1]) && o->via.array.ptr[2].type == MSGPACK_OBJECT_BIN &&
	    o->via.array.ptr[2].via.bin.size <= GOSSIP_VALUE_MAX) {
		struct gossip_record r = {
			.key = (const uint8_t *)key + GOSSIP_ID_LEN,
			.key_len = klen - GOSSIP_ID_LEN,
			.version = o->via.array.ptr[1].via.u64,
			.value = (const uint8_t *)o->via.array.ptr[2].via.bin.ptr,
			.value_len = o->via.array.ptr[2].via.bin.size,
		};
		memcpy(r.owner, key, GOSSIP_ID_LEN);
		if (gossip_record_restore(gossip_transport_core(x->c->t), &r) < 0)
			x->bad++;
	} else {
		x->bad++;
	}
	ctl_msg_release(&msg);
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static bool record_urgent(void *ud, const uint8_t owner[GOSSIP_ID_LEN], const void *key,
			  size_t klen)
{
	struct cluster *c = ud;

	(void)owner;
	return c->record_urgent(key, klen);
}

static void tuning_from_env(struct cluster_tuning *t)
{
	memset(t, 0, sizeof *t);
	const char *e = getenv("SHOAL_GOSSIP_PROBE_MS");
	if (!e || !*e)
		return;
	char *end;
	unsigned long v = strtoul(e, &end, 10);
	if (*end || v < 20 || v > 60000) {
		log_warning("ignoring SHOAL_GOSSIP_PROBE_MS=%s (20..60000)", e);
		return;
	}
	t->probe_interval_ms = (uint32_t)v;
	t->probe_timeout_ms = (uint32_t)v / 2;
	t->gossip_interval_ms = (uint32_t)v / 4 ? (uint32_t)v / 4 : 1;
	log_notice("gossip timings from SHOAL_GOSSIP_PROBE_MS: probe %lu ms", v);
}

int cluster_new(uv_loop_t *loop, const struct agent_config *cfg, struct store *store,
		const uint8_t node_id[STORE_NODE_ID_LEN], const struct cluster_tuning *tuning,
		struct cluster **ret, char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof *c);
	struct gossip_transport_config tc;
	struct restore_ctx rx = {0};
	uint8_t labels[GOSSIP_LABELS_MAX];
	size_t labels_len = 0;
	char advertise[96];
	struct gossip_addr bound;
	struct cluster_tuning env_tuning;
	bool mutex = false;
	int r;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	_Static_assert(STORE_NODE_ID_LEN == GOSSIP_ID_LEN, "node id sizes differ");
	c->loop = loop;
	c->store = store;
	memcpy(c->id, node_id, GOSSIP_ID_LEN);
	rx.c = c;
	if (uv_mutex_init(&c->mu) != 0) {
		snprintf(err, errlen, "cannot create a mutex");
		r = -ENOMEM;
		goto fail;
	}
	mutex = true;

	r = cluster_labels_encode(cfg->labels, cfg->nlabels, labels, sizeof labels, &labels_len);
	if (r < 0) {
		snprintf(err, errlen, "labels: %s", r == -EMSGSIZE ?
			 "too long (at most 256 bytes once encoded)" : "each must be KEY=VALUE");
		goto fail;
	}
	r = keyring_open(c, cfg, err, errlen);
	if (r < 0)
		goto fail;

	/* Persisted members first: the self row gives the incarnation to start above. */
	r = store_kv_foreach(store, STORE_KV_MEMBERS, restore_member_cb, &rx);
	if (r < 0) {
		snprintf(err, errlen, "cannot read the persisted members: %s", store_strerror(r));
		goto fail;
	}

	gossip_transport_config_default(&tc);
	memcpy(tc.core.id, c->id, GOSSIP_ID_LEN);
	tc.core.name = cfg->node_name;
	tc.core.labels = labels;
	tc.core.labels_len = labels_len;
	tc.core.incarnation = rx.have_self ? rx.self_inc + 1 : 1;
	if (!tuning || !(tuning->probe_interval_ms || tuning->probe_timeout_ms ||
			 tuning->gossip_interval_ms || tuning->sync_interval_ms)) {
		tuning_from_env(&env_tuning);
		env_tuning.record_urgent = tuning ? tuning->record_urgent : NULL;
		tuning = &env_tuning;
	}
	c->record_urgent = tuning->record_urgent;
	if (tuning->probe_interval_ms)
		tc.core.probe_interval_ms = tuning->probe_interval_ms;
	if (tuning->probe_timeout_ms)
		tc.core.probe_timeout_ms = tuning->probe_timeout_ms;
	if (tuning->gossip_interval_ms)
		tc.core.gossip_interval_ms = tuning->gossip_interval_ms;
	if (tuning->sync_interval_ms)
		tc.sync_interval_ms = tuning->sync_interval_ms;
	if (cfg->reap_after_ms)
		tc.core.reap_ms = cfg->reap_after_ms;
	tc.cluster = cfg->cluster ? cfg->cluster : "";
	tc.keyring = c->kr;
	tc.on_member = on_member;
	tc.on_record = on_record;
	tc.record_urgent = c->record_urgent ? record_urgent : NULL;
	tc.ud = c;

	const char *bind = cfg->bind ? cfg->bind : AGENT_DEFAULT_BIND;
	char bind_num[96];
	memset(&bound, 0, sizeof bound);
	if (resolve_addr(bind, &bound) < 0) {
		snprintf(err, errlen, "--bind %s: not an address", bind);
		r = -EINVAL;
		goto fail;
	}
	gossip_addr_format(&bound, bind_num, sizeof bind_num);
	tc.bind = bind_num;
	if (cfg->advertise) {
		struct gossip_addr adv;
		memset(&adv, 0, sizeof adv);
		if (resolve_addr(cfg->advertise, &adv) < 0) {
			snprintf(err, errlen, "--advertise %s: not an address", cfg->advertise);
			r = -EINVAL;
			goto fail;
		}
		gossip_addr_format(&adv, advertise, sizeof advertise);
		tc.advertise = advertise;
	} else if (addr_wildcard(&bound)) {
		pick_advertise(&bound, advertise, sizeof advertise);
		tc.advertise = advertise;
		log_notice("cluster: advertising %s (bind %s is a wildcard; set --advertise to "
			   "choose)", advertise, bind);
	}

	r = gossip_transport_new(loop, &tc, &c->t);
	if (r < 0) {
		snprintf(err, errlen, "cannot start gossip on %s: %s", bind_num, strerror(-r));
		c->t = NULL;
		goto fail;
	}
	/* Nothing fails after this point (uv_timer_init cannot), so the failure path never has
	 * handles to close. */
	uv_timer_init(loop, &c->flush_timer);
	uv_timer_init(loop, &c->event_timer);
	uv_timer_init(loop, &c->leave_timer);
	c->handles_open = 3;
	c->flush_timer.data = c->event_timer.data = c->leave_timer.data = c;

	/* Restore: members (their addresses are the seeds of a restart), then records. */
	struct gossip *g = gossip_transport_core(c->t);
	uint64_t wall = agent_now_ms(), now = uv_now(loop);
	struct gossip_addr seeds[GOSSIP_TRANSPORT_SEEDS_MAX];
	size_t nseeds = 0;
	size_t pruned = 0;
	for (size_t i = 0; i < rx.n; i++) {
		struct restored_member *m = &rx.v[i];
		m->m.labels = m->labels;
		/* Persisted wall time of the change -> the core's clock, so reaping counts from
		 * when the member really failed. */
		uint64_t age = wall > m->wall_ms ? wall - m->wall_ms : 0;
		/* Failed or gone for longer than the reap time while we were down: forget it
		 * here, as the core would have (its row too). */
		if ((m->m.state == GOSSIP_DEAD || m->m.state == GOSSIP_LEFT) &&
		    age > tc.core.reap_ms) {
			if (store_kv_del(store, STORE_KV_MEMBERS, m->m.id, GOSSIP_ID_LEN) == 0)
				pruned++;
			continue;
		}
		m->m.state_change = now > age ? now - age : 0;
		if (gossip_member_restore(g, &m->m) < 0)
			rx.bad++;
		if (m->m.state != GOSSIP_LEFT && nseeds < GOSSIP_TRANSPORT_SEEDS_MAX)
			seeds[nseeds++] = m->m.addr;
		else if (m->m.state != GOSSIP_LEFT) /* reservoir: any 64 of them */
			seeds[randombytes_uniform((uint32_t)i + 1) % GOSSIP_TRANSPORT_SEEDS_MAX] =
				m->m.addr;
	}
	r = store_kv_foreach(store, STORE_KV_RECORDS, restore_record_cb, &rx);
	if (r < 0)
		log_warning("cluster: cannot read the persisted records: %s", store_strerror(r));
	gossip_transport_kick(c->t);
	if (rx.bad)
		log_warning("cluster: %zu persisted member/record row(s) could not be restored",
			    rx.bad);
	log_info("cluster: restored %zu member(s) and %zu record(s); incarnation %" PRIu64
		 "%s", rx.n - pruned, gossip_record_count(g), tc.core.incarnation,
		 pruned ? " (forgot members failed for longer than the reap time)" : "");

	/* Persist self at once (its new incarnation) so a crash right now still moves up. */
	on_member(c, gossip_self(g));

	if (cfg->njoin) {
		const char *js[GOSSIP_TRANSPORT_SEEDS_MAX];
		char jbuf[GOSSIP_TRANSPORT_SEEDS_MAX][96];
		size_t nj = 0;
		for (size_t i = 0; i < cfg->njoin && nj < GOSSIP_TRANSPORT_SEEDS_MAX; i++) {
			struct gossip_addr a;
			memset(&a, 0, sizeof a);
			if (resolve_addr(cfg->join[i], &a) < 0) {
				log_warning("cluster: --join %s: cannot resolve; skipped",
					    cfg->join[i]);
				continue;
			}
			gossip_addr_format(&a, jbuf[nj], sizeof jbuf[nj]);
			js[nj] = jbuf[nj];
			nj++;
		}
		if (nj && gossip_transport_join(c->t, js, nj) < 0)
			log_warning("cluster: join through --join seeds failed");
	}
	if (nseeds && gossip_transport_join_addrs(c->t, seeds, nseeds) < 0)
		log_warning("cluster: rejoining persisted members failed");
	c->has_seeds = cfg->njoin || nseeds;
	c->started_ms = uv_now(loop);
	if (!cfg->njoin && !nseeds)
		log_notice("cluster: no --join and no known members: waiting to be joined "
			   "(agentctl join ADDR:PORT on this or another node)");

	free(rx.v);
	uv_timer_start(&c->flush_timer, flush_timer_cb, CLUSTER_FLUSH_MS, CLUSTER_FLUSH_MS);
	summary_refresh(c);
	{
		char b[64], a[64];
		struct gossip_addr ba, aa;
		memset(&ba, 0, sizeof ba);
		memset(&aa, 0, sizeof aa);
		gossip_transport_addrs(c->t, &ba, &aa);
		log_notice("cluster \"%s\": gossip on %s, advertised as %s, %zu key(s) from %s",
			   tc.cluster, gossip_addr_format(&ba, b, sizeof b),
			   gossip_addr_format(&aa, a, sizeof a), gossip_keyring_count(c->kr),
			   c->keyring_path);
	}
	*ret = c;
	return 0;

fail:
	free(rx.v);
	pend_list_free(&c->pending);
	gossip_keyring_free(c->kr);
	free(c->keyring_path);
	if (mutex)
		uv_mutex_destroy(&c->mu);
	free(c);
	return r;
}

static void handle_closed(uv_handle_t *h)
{
	struct cluster *c = h->data;
	if (--c->handles_open)
		return;
	void (*cb)(void *) = c->close_cb;
	void *ud = c->close_ud;
	pend_list_free(&c->pending);
	pend_list_free(&c->job);
	free(c->events);
	gossip_keyring_free(c->kr);
	free(c->keyring_path);
	uv_mutex_destroy(&c->mu);
	free(c);
	if (cb)
		cb(ud);
}

static void transport_closed(struct gossip_transport *t, void *ud)
{
	struct cluster *c = ud;
	c->t = NULL;
	uv_close((uv_handle_t *)&c->flush_timer, handle_closed);
	uv_close((uv_handle_t *)&c->event_timer, handle_closed);
	uv_close((uv_handle_t *)&c->leave_timer, handle_closed);
}

/* Continue closing once no persistence job runs: write the rest here, close the transport. */
static void close_step(struct cluster *c)
{
	if (c->job_running || !c->t)
		return;
	/* The last changes (a "left", the final incarnation) must reach the disk: synchronous,
	 * the agent is exiting anyway. */
	if (c->pending.n) {
		int e = write_list(c->store, &c->pending);
		if (e)
			log_warning("cluster: %d write(s) to the store failed at close", e);
		pend_list_clear(&c->pending);
	}
	struct gossip_transport *t = c->t;
	gossip_transport_close(t, transport_closed, c);
}

void cluster_close(struct cluster *c, void (*cb)(void *ud), void *ud)
{
	if (!c || c->closing)
		return;
	c->closing = true;
	c->close_cb = cb;
	c->close_ud = ud;
	uv_timer_stop(&c->flush_timer);
	uv_timer_stop(&c->event_timer);
	uv_timer_stop(&c->leave_timer);
	close_step(c);
}

static void leave_timer_cb(uv_timer_t *h)
{
	struct cluster *c = h->data;
	c->left = true;
	summary_refresh(c);
	log_notice("cluster: left the cluster");
	if (c->leave_done)
		c->leave_done(c->leave_ud);
}

int cluster_leave(struct cluster *c, void (*done)(void *ud), void *ud)
{
	if (c->leaving || c->closing)
		return -EALREADY;
	int r = gossip_transport_leave(c->t);
	if (r < 0)
		return r;
	c->leaving = true;
	c->leave_done = done;
	c->leave_ud = ud;
	uint64_t drain = gossip_leave_drain_ms(gossip_transport_core(c->t));
	log_notice("cluster: leaving (gossiping it for %" PRIu64 " ms)", drain);
	flush_start(c);
	uv_timer_start(&c->leave_timer, leave_timer_cb, drain, 0);
	return 0;
}

bool cluster_has_left(const struct cluster *c)
{
	return c->leaving;
}

int cluster_join(struct cluster *c, const char *const *addrs, size_t n)
{
	struct gossip_addr a[GOSSIP_TRANSPORT_SEEDS_MAX];
	if (n == 0 || n > GOSSIP_TRANSPORT_SEEDS_MAX)
		return -EINVAL;
	if (c->leaving)
		return -ESHUTDOWN;
	for (size_t i = 0; i < n; i++) {
		memset(&a[i], 0, sizeof a[i]);
		if (gossip_transport_parse_addr(addrs[i], CLUSTER_DEFAULT_PORT, &a[i]) < 0)
			return -EINVAL;
	}
	int r = gossip_transport_join_addrs(c->t, a, n);
	if (r >= 0 && !c->has_seeds) { /* warn if this join stays unanswered too */
		c->has_seeds = true;
		c->started_ms = uv_now(c->loop);
	}
	return r;
}

int cluster_record_put(struct cluster *c, const void *key, size_t klen, const void *val,
		       size_t vlen, uint64_t *ret_version)
{
	if (!key || klen == 0 || (!val && vlen))
		return -EINVAL;
	if (klen > GOSSIP_KEY_MAX || vlen > GOSSIP_VALUE_MAX)
		return -EMSGSIZE;
	if (c->leaving || c->closing)
		return -ESHUTDOWN;
	struct gossip *g = gossip_transport_core(c->t);
	const struct gossip_record *held = gossip_record_get(g, c->id, key, klen);
	uint64_t version = agent_now_ms();
	if (held && held->version >= version)
		version = held->version + 1;
	int r = gossip_transport_record_put(c->t, key, klen, version, val, vlen);
	if (r < 0)
		return r;
	persist_record(c, c->id, key, klen, version, val, vlen);
	if (ret_version)
		*ret_version = version;
	return 0;
}

const struct gossip_record *cluster_record_get(struct cluster *c,
					       const uint8_t owner[GOSSIP_ID_LEN],
					       const void *key, size_t klen)
{
	return gossip_record_get(gossip_transport_core(c->t), owner, key, klen);
}

int cluster_record_foreach(struct cluster *c, int (*cb)(void *ud, const struct gossip_record *r),
			   void *ud)
{
	return gossip_record_foreach(gossip_transport_core(c->t), cb, ud);
}

int cluster_subscribe(struct cluster *c,
		      void (*on_member_cb)(void *ud, const struct gossip_member *m),
		      void (*on_record_cb)(void *ud, const struct gossip_record *r), void *ud)
{
	if (c->nsubs == CLUSTER_SUBSCRIBERS)
		return -ENOSPC;
	c->subs[c->nsubs++] = (struct sub){on_member_cb, on_record_cb, ud};
	return 0;
}

int cluster_member_foreach(struct cluster *c, int (*cb)(void *ud, const struct gossip_member *m),
			   void *ud)
{
	return gossip_member_foreach(gossip_transport_core(c->t), cb, ud);
}

const struct gossip_member *cluster_member_get(struct cluster *c, const uint8_t id[GOSSIP_ID_LEN])
{
	return gossip_member_get(gossip_transport_core(c->t), id);
}

const struct gossip_member *cluster_self(struct cluster *c)
{
	return gossip_self(gossip_transport_core(c->t));
}

struct gossip_transport *cluster_transport(struct cluster *c)
{
	return c->t;
}
