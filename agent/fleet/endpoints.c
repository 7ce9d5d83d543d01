/*
 * agent/fleet/endpoints.c: endpoint records, the catalog, this node's endpoints and the drain
 * around swaps (see endpoints.h).
 */
#include "agent/fleet/endpoints.h"
#include "agent/fleet/fleet_int.h"

#include <arpa/inet.h>
#include <msgpack.h>
#include <sodium.h>

#define HDR 3
#define EP_FIELDS_V3 10		/* the unsigned form (version 3) */
#define EP_FIELDS 12		/* the signed form: ... sig, stamp */
#define DRAIN_POLL_MS 100

struct drain;

/* This node's endpoint of one service. */
struct ep_local {
	char service[65];
	bool have_art;			/* art/has_ep/ep/rec describe the running artifact */
	struct store_id art;
	bool has_ep;
	char addr[FLEET_EP_ADDR_MAX];	/* the manifest's address, "" = advertised */
	struct store_endpoint ep;	/* address NULL: see addr */
	struct store_recovery rec;
	bool draining;
	bool settling;			/* holds the pacing slot until the new instance is healthy */
	uint64_t restarts_rev;		/* local restarts ([recovery] restarts) of this rev ... */
	uint32_t restarts_done;		/* ... so far */
	bool published;
	struct fleet_endpoint last;	/* last published, with its stamp and signature (hlc,
					 * stamp and sig ignored in comparisons) */
	uint8_t signer[STORE_KEY_LEN];	/* the key last.sig is by (all zero: not ours, see
					 * fleet__ep_publish): a rotation signs the same content
					 * again */
	bool force;			/* publish even if unchanged: a record in our name we did
					 * not sign holds the gossip tables */
	uint64_t reassert_at;		/* uv_now of the last such republication (REASSERT_MS) */
	struct drain *drain;
};

struct drain {
	struct fleet *b;		/* NULL once cancelled (fleet closing) */
	char service[65];
	char addr[FLEET_EP_ADDR_MAX];
	uint16_t port;
	uint64_t rev;			/* of the instance drained */
	uv_timer_t timer;
	uint64_t start, deadline;
	uint32_t drain_ms;
	bool pending;			/* a sessions query is out */
	bool timer_open;
	bool no_lb;			/* no local LB: wait out the drain time */
	uint32_t scur;
	bool said_error;
};

struct fleet_eps {
	struct fleet_endpoint *cat;	/* one per (owner, service), withdrawn ones included */
	size_t ncat, capcat;
	struct ep_local *loc;
	size_t nloc, caploc;
	uint64_t index, hash;
	struct fleet_ep_hooks hooks;
};

const char *fleet_ep_state_name(int s)
{
	switch (s) {
	case FLEET_EP_STARTING: return "starting";
	case FLEET_EP_HEALTHY: return "healthy";
	case FLEET_EP_DRAINING: return "draining";
	case FLEET_EP_UNHEALTHY: return "unhealthy";
	default: return "?";
	}
}

/* ---- Codec ----------------------------------------------------------------------------------- */

static bool svc_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

static bool addr_ok(const char *a)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1;
}

int fleet_ep_key_format(const char *service, char *buf, size_t len)
{
	if (!service || !buf || !svc_name_ok(service, strlen(service)))
		return -EINVAL;
	int n = snprintf(buf, len, "ep/%s", service);
	return n < 0 || (size_t)n >= len ? -EINVAL : n;
}

int fleet_ep_key_parse(const void *key, size_t klen, char service[65])
{
	const char *k = key;
	if (!key || klen < 3 || memcmp(k, "ep/", 3) != 0)
		return -ENOENT;
	if (!svc_name_ok(k + 3, klen - 3))
		return -EBADMSG;
	memcpy(service, k + 3, klen - 3);
	service[klen - 3] = 0;
	return 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

int fleet_endpoint_encode(const struct fleet_endpoint *e, uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!e || !ret_buf || !ret_len || !terminated(e->node, sizeof e->node) ||
	    !terminated(e->site, sizeof e->site) || !terminated(e->service, sizeof e->service) ||
	    !terminated(e->addr, sizeof e->addr) || e->weight > STORE_ENDPOINT_WEIGHT_MAX ||
	    e->state > FLEET_EP_UNHEALTHY || e->protocol > STORE_ENDPOINT_HTTP ||
	    (e->port && !addr_ok(e->addr)) || (!e->port && e->addr[0]))
		return -EINVAL;
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_write(&sb, "S", 1);
	char hdr[2] = {FLEET_EP_VERSION, FLEET_REC_ENDPOINT};
	msgpack_sbuffer_write(&sb, hdr, 2);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, EP_FIELDS);
	pk_str(&pk, e->node);
	pk_str(&pk, e->site);
	pk_str(&pk, e->service);
	pk_str(&pk, e->addr);
	msgpack_pack_uint16(&pk, e->port);
	msgpack_pack_uint16(&pk, e->weight);
	msgpack_pack_uint8(&pk, e->protocol);
	msgpack_pack_uint8(&pk, e->state);
	msgpack_pack_uint64(&pk, e->rev);
	msgpack_pack_uint64(&pk, e->hlc);
	msgpack_pack_bin(&pk, STORE_SIG_LEN);
	msgpack_pack_bin_body(&pk, e->sig, STORE_SIG_LEN);
	msgpack_pack_uint64(&pk, e->stamp);
	if (!sb.data) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	if (sb.size > FLEET_REC_VALUE_MAX) {
		msgpack_sbuffer_destroy(&sb);
		return -EMSGSIZE;
	}
	*ret_len = sb.size;
	*ret_buf = (uint8_t *)msgpack_sbuffer_release(&sb);
	return 0;
}

static bool get_u(const msgpack_object *o, uint64_t max, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
		return false;
	*v = o->via.u64;
	return true;
}

static bool get_s(const msgpack_object *o, char *out, size_t cap)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
	    (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size)))
		return false;
	if (o->via.str.size)
		memcpy(out, o->via.str.ptr, o->via.str.size);
	out[o->via.str.size] = 0;
	return true;
}

int fleet_endpoint_decode(const uint8_t *buf, size_t len, struct fleet_endpoint *ret)
{
	msgpack_unpacked up;
	struct fleet_endpoint e;
	size_t used = 0, off = 0;
	uint64_t port, weight, proto, state;
	int err = -EBADMSG;

	if (!buf || !ret)
		return -EINVAL;
	if (len < HDR || buf[0] != FLEET_REC_MAGIC)
		return -EBADMSG;
	if (buf[1] != FLEET_EP_VERSION && buf[1] != FLEET_REC_VERSION)
		return -EPROTONOSUPPORT;
	bool sign = buf[1] == FLEET_EP_VERSION;
	if (buf[2] != FLEET_REC_ENDPOINT)
		return -EBADMSG;
	if (ctl_msgpack_check(buf + HDR, len - HDR, &used) < 0 || used != len - HDR)
		return -EBADMSG;
	msgpack_unpacked_init(&up);
	msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)buf + HDR, len - HDR, &off);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
		err = -ENOMEM;
		goto out;
	}
	if (ur != MSGPACK_UNPACK_SUCCESS || off != len - HDR ||
	    up.data.type != MSGPACK_OBJECT_ARRAY ||
	    up.data.via.array.size < (sign ? EP_FIELDS : EP_FIELDS_V3))
		goto out;
	const msgpack_object *f = up.data.via.array.ptr;
	memset(&e, 0, sizeof e);
	if (!get_s(&f[0], e.node, sizeof e.node) || !get_s(&f[1], e.site, sizeof e.site) ||
	    !get_s(&f[2], e.service, sizeof e.service) || !get_s(&f[3], e.addr, sizeof e.addr) ||
	    !get_u(&f[4], 65535, &port) || !get_u(&f[5], STORE_ENDPOINT_WEIGHT_MAX, &weight) ||
	    !get_u(&f[6], STORE_ENDPOINT_HTTP, &proto) || !get_u(&f[7], FLEET_EP_UNHEALTHY, &state) ||
	    !get_u(&f[8], UINT64_MAX, &e.rev) || !get_u(&f[9], UINT64_MAX, &e.hlc))
		goto out;
	/* the unsigned form (version 3) leaves sig all zero: the fleet refuses it */
	if (sign && (f[10].type != MSGPACK_OBJECT_BIN || f[10].via.bin.size != STORE_SIG_LEN ||
		     !get_u(&f[11], UINT64_MAX, &e.stamp)))
		goto out;
	if (sign)
		memcpy(e.sig, f[10].via.bin.ptr, STORE_SIG_LEN);
	if (!svc_name_ok(e.service, strlen(e.service)) || (port && !addr_ok(e.addr)) ||
	    (!port && e.addr[0]))
		goto out;
	e.port = (uint16_t)port;
	e.weight = (uint16_t)weight;
	e.protocol = (uint8_t)proto;
	e.state = (uint8_t)state;
	*ret = e;
	err = 0;
out:
	msgpack_unpacked_destroy(&up);
	return err;
}

size_t fleet_endpoint_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_endpoint *e,
			  uint8_t out[FLEET_EP_MSG_MAX])
{
	/* the owner: the same fields in another node's name are another message */
	uint8_t *p = fleet_msg_begin(out, "shoal-endpnt-v1", owner);
	p = fleet_msg_str(p, e->node, sizeof e->node);
	p = fleet_msg_str(p, e->site, sizeof e->site);
	p = fleet_msg_str(p, e->service, sizeof e->service);
	p = fleet_msg_str(p, e->addr, sizeof e->addr);
	p = fleet_msg_be(p, e->port, 2);
	p = fleet_msg_be(p, e->weight, 2);
	*p++ = e->protocol;
	*p++ = e->state;
	p = fleet_msg_be(p, e->rev, 8);
	p = fleet_msg_be(p, e->hlc, 8);
	p = fleet_msg_be(p, e->stamp, 8);
	return (size_t)(p - out);
}

/* ---- The catalog ----------------------------------------------------------------------------- */

static struct fleet_eps *eps_of(struct fleet *b)
{
	if (b->closing)
		return b->eps;	/* freed by fleet__ep_close: never made again */
	if (!b->eps) {
		b->eps = calloc(1, sizeof *b->eps);
		if (b->eps)
			b->eps->index = 1;
	}
	return b->eps;
}

void fleet_endpoints_hooks(struct fleet *b, const struct fleet_ep_hooks *h)
{
	struct fleet_eps *x = b ? eps_of(b) : NULL;
	if (!x)
		return;
	if (h)
		x->hooks = *h;
	else
		memset(&x->hooks, 0, sizeof x->hooks);
}

/* Is the owner of @e dead or gone for gossip? (Self never is.) */
static bool owner_down(struct fleet *b, const struct fleet_endpoint *e)
{
	if (memcmp(e->node_id, b->id, STORE_NODE_ID_LEN) == 0)
		return false;
	for (size_t i = 0; i < b->nmembers; i++)
		if (memcmp(b->members[i].id, e->node_id, STORE_NODE_ID_LEN) == 0)
			return b->members[i].state == AGREE_DEAD || b->members[i].state == AGREE_LEFT;
	return true;	/* reaped, or not known yet */
}

static void effective(struct fleet *b, const struct fleet_endpoint *in, struct fleet_endpoint *out)
{
	*out = *in;
	out->down = owner_down(b, in);
	if (out->down)
		out->state = FLEET_EP_UNHEALTHY;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *c = p;
	for (size_t i = 0; i < n; i++) {
		h ^= c[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Recompute the served catalog's digest; a change bumps the index and tells the agent. */
static void recheck(struct fleet *b)
{
	struct fleet_eps *x = b->eps;
	uint64_t h = 14695981039346656037ULL;
	if (!x)
		return;
	for (size_t i = 0; i < x->ncat; i++) {
		struct fleet_endpoint e;
		if (!x->cat[i].port)
			continue;
		effective(b, &x->cat[i], &e);
		h = fnv(h, e.node_id, sizeof e.node_id);
		h = fnv(h, e.node, strlen(e.node));
		h = fnv(h, e.site, strlen(e.site) + 1);
		h = fnv(h, e.service, strlen(e.service) + 1);
		h = fnv(h, e.addr, strlen(e.addr) + 1);
		h = fnv(h, &e.port, sizeof e.port);
		h = fnv(h, &e.weight, sizeof e.weight);
		h = fnv(h, &e.protocol, 1);
		h = fnv(h, &e.state, 1);
		h = fnv(h, &e.rev, sizeof e.rev);
	}
	if (h == x->hash)
		return;
	x->hash = h;
	x->index++;
	if (x->hooks.changed && !b->closing)
		x->hooks.changed(x->hooks.ud, x->index);
}

static int cat_put(struct fleet_eps *x, const struct fleet_endpoint *e)
{
	for (size_t i = 0; i < x->ncat; i++)
		if (memcmp(x->cat[i].node_id, e->node_id, STORE_NODE_ID_LEN) == 0 &&
		    strcmp(x->cat[i].service, e->service) == 0) {
			x->cat[i] = *e;
			return 0;
		}
	if (x->ncat == x->capcat) {
		size_t cap = x->capcat ? 2 * x->capcat : 16;
		struct fleet_endpoint *n = realloc(x->cat, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		x->cat = n;
		x->capcat = cap;
	}
	x->cat[x->ncat++] = *e;
	return 0;
}

static struct ep_local *loc_find(struct fleet *b, const char *service);

/*
 * A record in our own name: what this run publishes is the truth. One we did not sign last
 * (forged by a cluster key holder, with a gossip version above ours, or our own older one
 * replayed) displaces ours in every gossip table: refused everywhere, but a node that joins
 * later would then never learn our endpoint. So publish ours again, above it, at most once
 * per REASSERT_MS (two agents sharing an id would otherwise outbid each other at gossip
 * speed); a sighting within that window is left to the next one (the resync's replay, 5 s).
 * Before this run's first publication there is nothing to compare with: fleet__ep_publish
 * reads the table then.
 */
static void ep_own_seen(struct fleet *b, const char *service, const struct gossip_record *g)
{
	struct ep_local *l = loc_find(b, service);
	struct fleet_endpoint e;
	struct svc *v;
	if (!l || !l->published || b->closing)
		return;
	if (fleet_endpoint_decode(g->value, g->value_len, &e) == 0 && e.stamp == l->last.stamp &&
	    sodium_memcmp(e.sig, l->last.sig, STORE_SIG_LEN) == 0) {
		/* ours; signed by a key this node has rotated away from since (sign.h): a node
		 * that joins now has only the new key bound, so sign it again (the resync's
		 * replay brings us here every 5 s) */
		if (sodium_memcmp(l->signer, b->key.pk, STORE_KEY_LEN) != 0 &&
		    (v = fleet__svc_find(b, service)))
			fleet__ep_publish(b, v);
		return;
	}
	uint64_t now = uv_now(b->loop);
	if ((l->reassert_at && now < l->reassert_at + REASSERT_MS) ||
	    !(v = fleet__svc_find(b, service)))
		return;
	l->reassert_at = now;
	l->force = true;
	log_notice("%s: an endpoint record in this node's name that it did not write (forged by "
		   "a cluster key holder?): publishing its own again", service);
	fleet__ep_publish(b, v);
}

/* Is @e, an endpoint record in the name of @owner, signed and not older than @old, the one
 * held (NULL: none)? See fleet__owner_signed. */
static bool ep_signed_ok(struct fleet *b, const uint8_t *owner, const struct fleet_endpoint *e,
			 const struct fleet_endpoint *old)
{
	uint8_t msg[FLEET_EP_MSG_MAX], held[FLEET_EP_MSG_MAX];
	size_t n = fleet_endpoint_msg(owner, e, msg);

	/* the very record verified before (every resync replays it): not verified again */
	if (old && sodium_memcmp(old->sig, e->sig, STORE_SIG_LEN) == 0 &&
	    fleet_endpoint_msg(owner, old, held) == n && memcmp(held, msg, n) == 0)
		return true;
	return fleet__owner_signed(b, "endpoint", e->service, e->rev, owner, msg, n, e->sig,
				   e->stamp, old ? &old->stamp : NULL, &b->ep_refused);
}

void fleet__ep_record(struct fleet *b, const struct gossip_record *g)
{
	char service[65];
	struct fleet_endpoint e;
	struct fleet_eps *x;
	if (fleet_ep_key_parse(g->key, g->key_len, service) < 0)
		return;
	if (memcmp(g->owner, b->id, STORE_NODE_ID_LEN) == 0) {
		ep_own_seen(b, service, g);
		return;
	}
	if (fleet_endpoint_decode(g->value, g->value_len, &e) < 0 || strcmp(e.service, service)) {
		log_debug("%s: malformed endpoint record ignored", service);
		return;
	}
	if (!(x = eps_of(b)))
		return;
	memcpy(e.node_id, g->owner, STORE_NODE_ID_LEN);
	/* an endpoint that appears, changes state, address, weight or revision is an event
	 * (agentctl events, and the event hook as JSON: a load balancer of another kind follows
	 * them); a record republished unchanged is not, which is the debouncing */
	const struct fleet_endpoint *old = NULL;
	for (size_t i = 0; i < x->ncat && !old; i++)
		if (memcmp(x->cat[i].node_id, e.node_id, STORE_NODE_ID_LEN) == 0 &&
		    strcmp(x->cat[i].service, e.service) == 0)
			old = &x->cat[i];
	/* the owner field is what any cluster key holder writes: the owner's signature says
	 * who wrote the endpoint (sign.h) */
	if (!ep_signed_ok(b, g->owner, &e, old))
		return;
	fleet__observe(b, e.hlc);
	bool changed = !old || old->state != e.state || old->port != e.port ||
		       old->weight != e.weight || old->rev != e.rev || strcmp(old->addr, e.addr);
	if (cat_put(x, &e) == 0) {
		if (changed && !b->closing)
			fleet__event(b, "endpoint", e.service, e.rev,
				     "%s %s:%u %s (weight %u, site %s)", e.node, e.addr, e.port,
				     e.port ? fleet_ep_state_name(e.state) : "withdrawn", e.weight,
				     e.site[0] ? e.site : "-");
		recheck(b);
	}
}

void fleet__ep_members(struct fleet *b)
{
	recheck(b);
}

static int ep_cmp(const void *pa, const void *pb)
{
	const struct fleet_endpoint *a = pa, *c = pb;
	int r = strcmp(a->service, c->service);
	if (r)
		return r;
	r = strcmp(a->node, c->node);
	return r ? r : memcmp(a->node_id, c->node_id, STORE_NODE_ID_LEN);
}

int fleet_endpoints_get(struct fleet *b, const char *service, struct fleet_endpoint **ret,
			size_t *ret_n, uint64_t *ret_index)
{
	struct fleet_eps *x;
	struct fleet_endpoint *out = NULL;
	size_t n = 0;
	if (!b || !ret || !ret_n)
		return -EINVAL;
	x = eps_of(b);
	if (!x)
		return -ENOMEM;
	if (x->ncat) {
		out = malloc(x->ncat * sizeof *out);
		if (!out)
			return -ENOMEM;
	}
	for (size_t i = 0; i < x->ncat; i++) {
		if (!x->cat[i].port || (service && strcmp(x->cat[i].service, service)))
			continue;
		effective(b, &x->cat[i], &out[n++]);
	}
	if (n)
		qsort(out, n, sizeof *out, ep_cmp);
	else {
		free(out);
		out = NULL;
	}
	*ret = out;
	*ret_n = n;
	if (ret_index)
		*ret_index = x->index;
	return 0;
}

uint64_t fleet_endpoints_index(struct fleet *b)
{
	struct fleet_eps *x = b ? eps_of(b) : NULL;
	return x ? x->index : 0;
}

void fleet_event_note(struct fleet *b, const char *kind, const char *service, const char *fmt,
		      ...)
{
	char text[200];
	va_list ap;
	if (!b || b->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	fleet__event(b, kind, service, 0, "%s", text);
}

/* ---- This node's endpoints ------------------------------------------------------------------- */

static struct ep_local *loc_find(struct fleet *b, const char *service)
{
	struct fleet_eps *x = b->eps;
	for (size_t i = 0; x && i < x->nloc; i++)
		if (strcmp(x->loc[i].service, service) == 0)
			return &x->loc[i];
	return NULL;
}

static struct ep_local *loc_get(struct fleet *b, const char *service)
{
	struct fleet_eps *x = eps_of(b);
	if (!x)
		return NULL;
	for (size_t i = 0; i < x->nloc; i++)
		if (strcmp(x->loc[i].service, service) == 0)
			return &x->loc[i];
	if (x->nloc == x->caploc) {
		size_t cap = x->caploc ? 2 * x->caploc : 8;
		struct ep_local *n = realloc(x->loc, cap * sizeof *n);
		if (!n)
			return NULL;
		/* drains point back by service name, never by address: moving is fine */
		x->loc = n;
		x->caploc = cap;
	}
	struct ep_local *l = &x->loc[x->nloc++];
	memset(l, 0, sizeof *l);
	snprintf(l->service, sizeof l->service, "%s", service);
	return l;
}

/* The endpoint of artifact @art: 0 and fills l's cache; -errno. */
static int load_art(struct fleet *b, struct ep_local *l, const struct store_id *art)
{
	struct store_artifact_info info;
	if (l->have_art && memcmp(&l->art, art, sizeof *art) == 0)
		return 0;
	int r = store_artifact_get(b->s, art, &info);
	if (r < 0)
		return r;
	l->have_art = true;
	l->art = *art;
	l->ep = info.manifest.endpoint;
	l->ep.address = NULL;
	l->has_ep = info.manifest.endpoint.port != 0;
	snprintf(l->addr, sizeof l->addr, "%s",
		 info.manifest.endpoint.address ? info.manifest.endpoint.address : "");
	l->rec = info.manifest.recovery;
	store_artifact_info_release(&info);
	return 0;
}

/* The host part of our advertised ADDR:PORT ("[v6]:port" too); 127.0.0.1 without one. */
static void advertised_host(struct fleet *b, char *out, size_t cap)
{
	const char *a = b->advertise;
	const char *colon = strrchr(a, ':');
	size_t n;
	if (!a[0] || !colon) {
		snprintf(out, cap, "127.0.0.1");
		return;
	}
	if (a[0] == '[') {
		const char *close = strchr(a, ']');
		n = close ? (size_t)(close - a - 1) : 0;
		a++;
	} else {
		n = (size_t)(colon - a);
	}
	if (n == 0 || n >= cap) {
		snprintf(out, cap, "127.0.0.1");
		return;
	}
	memcpy(out, a, n);
	out[n] = 0;
	if (!addr_ok(out))
		snprintf(out, cap, "127.0.0.1");
}

static bool same_ep(const struct fleet_endpoint *a, const struct fleet_endpoint *c)
{
	return a->port == c->port && a->weight == c->weight && a->protocol == c->protocol &&
	       a->state == c->state && a->rev == c->rev && strcmp(a->addr, c->addr) == 0 &&
	       strcmp(a->site, c->site) == 0 && strcmp(a->node, c->node) == 0;
}

static bool id_zero(const struct store_id *id)
{
	for (size_t i = 0; i < sizeof id->b; i++)
		if (id->b[i])
			return false;
	return true;
}

void fleet__ep_publish(struct fleet *b, struct svc *v)
{
	struct fleet_endpoint e;
	struct ep_local *l;
	char key[80];
	uint8_t *val;
	size_t len;
	int n, r;

	if (b->closing || !(l = loc_get(b, v->name)))
		return;
	memset(&e, 0, sizeof e);
	memcpy(e.node_id, b->id, STORE_NODE_ID_LEN);
	snprintf(e.node, sizeof e.node, "%s", b->name);
	snprintf(e.service, sizeof e.service, "%s", v->name);
	if (b->has_site)
		snprintf(e.site, sizeof e.site, "%s", b->site);
	if (v->running_rev && !id_zero(&v->running) && load_art(b, l, &v->running) == 0 &&
	    l->has_ep) {
		if (l->addr[0])
			snprintf(e.addr, sizeof e.addr, "%s", l->addr);
		else
			advertised_host(b, e.addr, sizeof e.addr);
		e.port = l->ep.port;
		e.weight = l->ep.weight;
		e.protocol = (uint8_t)l->ep.protocol;
		e.rev = v->running_rev;
		if (l->draining)
			e.state = FLEET_EP_DRAINING;
		else if (v->hstate == HEALTH_HEALTHY)
			e.state = FLEET_EP_HEALTHY;
		else if (v->hstate == HEALTH_UNHEALTHY || v->hstate == HEALTH_FAILED)
			e.state = l->rec.remove_unhealthy ? FLEET_EP_UNHEALTHY : FLEET_EP_HEALTHY;
		else
			e.state = FLEET_EP_STARTING;
	}
	n = fleet_ep_key_format(v->name, key, sizeof key);
	if (!l->published && n > 0 && b->net.get) {
		/* what we published before a restart (the transport keeps our records): others
		 * still see it, so it must be replaced or withdrawn. Kept as ours only if our
		 * key signed it; anything else in our name (an older agent's unsigned record, one
		 * by a key we rotated away from, a forged copy) is published over at once. */
		const struct gossip_record *g = b->net.get(b->net.ud, b->id, key, (size_t)n);
		struct fleet_endpoint old;
		uint8_t msg[FLEET_EP_MSG_MAX];
		if (g && fleet_endpoint_decode(g->value, g->value_len, &old) == 0) {
			memcpy(old.node_id, b->id, STORE_NODE_ID_LEN);
			l->last = old;
			l->published = true;
			if (sign_verify(b->key.pk, msg, fleet_endpoint_msg(b->id, &old, msg), old.sig)) {
				memcpy(l->signer, b->key.pk, STORE_KEY_LEN);
				if (old.port && b->eps)
					cat_put(b->eps, &old);
			} else {
				l->force = true;
			}
		} else if (g) {
			memset(&l->last, 0, sizeof l->last);	/* malformed: withdrawn at least */
			l->published = true;
			l->force = true;
		}
	}
	if (!e.port) {
		e.site[0] = 0;	/* a withdrawal carries no site */
		if (!l->force && (!l->published || !l->last.port))
			return;	/* nothing to withdraw */
	}
	/* signed once per content (sign.h): the same content published again (over a record
	 * in our name we did not sign) keeps its stamp and signature; a rotated key signs it
	 * again */
	bool same = l->published && same_ep(&l->last, &e) &&
		    sodium_memcmp(l->signer, b->key.pk, STORE_KEY_LEN) == 0;
	if (same && !l->force)
		return;
	bool news = !l->published || l->last.state != e.state || l->last.port != e.port;
	l->force = false;
	if (same) {
		e = l->last;
	} else {
		uint8_t msg[FLEET_EP_MSG_MAX];
		e.hlc = e.stamp = fleet__stamp(b);
		sign_detached(&b->key, msg, fleet_endpoint_msg(b->id, &e, msg), e.sig);
		memcpy(l->signer, b->key.pk, STORE_KEY_LEN);
	}
	r = fleet_endpoint_encode(&e, &val, &len);
	if (r < 0) {
		log_warning("%s: cannot encode the endpoint record: %s", v->name, strerror(-r));
		return;
	}
	/* before the put: a transport that hands our own record back finds it is ours */
	l->last = e;
	l->published = true;
	r = n < 0 ? n : b->net.put ? b->net.put(b->net.ud, key, (size_t)n, val, len) : 0;
	free(val);
	if (r < 0)
		log_warning("%s: cannot publish the endpoint record: %s", v->name, strerror(-r));
	if (news)
		log_info("%s: endpoint %s:%u rev %" PRIu64 " %s", v->name, e.port ? e.addr : "-",
			 e.port, e.rev, e.port ? fleet_ep_state_name(e.state) : "withdrawn");
	if (cat_put(b->eps, &e) == 0)
		recheck(b);
}

/* ---- Drain ----------------------------------------------------------------------------------- */

static void drain_timer_closed(uv_handle_t *h)
{
	struct drain *d = h->data;
	d->timer_open = false;
	if (!d->pending)
		free(d);
}

/* Unlink and free @d (its timer closes; a query out keeps it until its answer). */
static void drain_drop(struct drain *d)
{
	if (d->b) {
		struct ep_local *l = loc_get(d->b, d->service);
		if (l && l->drain == d)
			l->drain = NULL;
	}
	d->b = NULL;
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, drain_timer_closed);
}

static void drain_finish(struct drain *d, bool timed_out)
{
	struct fleet *b = d->b;
	char service[65];
	double secs = (double)(uv_now(b->loop) - d->start) / 1000.0;
	snprintf(service, sizeof service, "%s", d->service);
	if (timed_out && d->no_lb)
		fleet__event(b, "drain", service, d->rev, "drain %s: %.1f s drain time over (no local "
			     "load balancer to ask for sessions)", service, secs);
	else if (timed_out)
		fleet__event(b, "drain", service, d->rev, "drain %s: timed out after %.1f s with %" PRIu32
			     " session(s) left", service, secs, d->scur);
	else
		fleet__event(b, "drain", service, d->rev, "drain %s: drained in %.1f s", service, secs);
	drain_drop(d);
	if (b->rec)
		reconcile_drained(b->rec, service);
}

static void drain_tick(uv_timer_t *t);

static void drain_arm(struct drain *d, uint64_t ms)
{
	uint64_t now = uv_now(d->b->loop);
	if (now + ms > d->deadline)
		ms = d->deadline > now ? d->deadline - now : 0;
	uv_timer_start(&d->timer, drain_tick, ms, 0);
}

static void sessions_done(void *cbud, int err, uint32_t scur)
{
	struct drain *d = cbud;
	d->pending = false;
	if (!d->b) {		/* cancelled meanwhile */
		if (!d->timer_open)
			free(d);
		return;
	}
	if (err == -ENOENT || (err == 0 && scur == 0)) {
		/* no slot of the local load balancer holds it, or nothing left on it */
		drain_finish(d, false);
		return;
	}
	if (err < 0) {
		if (!d->said_error)
			fleet__event(d->b, "drain", d->service, d->rev, "drain %s: cannot ask the load "
				     "balancer for sessions (%s): waiting the drain time",
				     d->service, strerror(-err));
		d->said_error = true;
		d->no_lb = true;
		drain_arm(d, d->deadline);
		return;
	}
	if (d->scur != scur)
		log_info("drain %s: %" PRIu32 " session(s) on %s:%u", d->service, scur, d->addr,
			 d->port);
	d->scur = scur;
	drain_arm(d, DRAIN_POLL_MS);
}

static void drain_tick(uv_timer_t *t)
{
	struct drain *d = t->data;
	struct fleet *b = d->b;
	struct fleet_eps *x = b ? b->eps : NULL;
	if (!b || b->closing)
		return;
	if (uv_now(b->loop) >= d->deadline) {
		drain_finish(d, true);
		return;
	}
	if (d->no_lb || !x || !x->hooks.sessions) {
		d->no_lb = true;
		drain_arm(d, d->deadline);
		return;
	}
	int r = x->hooks.sessions(x->hooks.ud, d->service, d->addr, d->port, sessions_done, d);
	if (r == 0) {
		d->pending = true;
		return;
	}
	if (r != -ENOENT && !d->said_error) {
		fleet__event(b, "drain", d->service, d->rev, "drain %s: cannot ask the load balancer "
			     "for sessions (%s): waiting the drain time", d->service, strerror(-r));
		d->said_error = true;
	}
	d->no_lb = true;
	drain_arm(d, d->deadline);
}

bool fleet__ep_before_stop(void *ud, const char *service, uint64_t rev,
			   const struct store_id *artifact)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_find(b, service);
	struct ep_local *l;
	if (b->closing || !v || !artifact || !(l = loc_get(b, service)))
		return false;
	if (load_art(b, l, artifact) < 0 || !l->has_ep)
		return false;	/* no endpoint: nothing routes to it, no wait */
	if (l->drain)
		drain_drop(l->drain);
	l->draining = true;
	fleet__ep_publish(b, v);	/* at once: not coalesced like health */
	if (l->ep.drain_ms == 0) {
		fleet__event(b, "drain", service, rev, "drain %s: drain time 0, not waiting", service);
		return false;
	}
	struct drain *d = calloc(1, sizeof *d);
	if (!d)
		return false;
	d->b = b;
	snprintf(d->service, sizeof d->service, "%s", service);
	snprintf(d->addr, sizeof d->addr, "%s", l->last.addr);
	d->port = l->last.port;
	d->rev = rev;
	d->start = uv_now(b->loop);
	d->drain_ms = l->ep.drain_ms;
	d->deadline = d->start + l->ep.drain_ms;
	uv_timer_init(b->loop, &d->timer);
	d->timer.data = d;
	d->timer_open = true;
	l->drain = d;
	fleet__event(b, "drain", service, rev, "drain %s: %s:%u draining before the swap, up to "
		     "%.1f s", service, d->addr, d->port, (double)d->drain_ms / 1000.0);
	drain_arm(d, l->ep.drain_ms < FLEET_EP_DRAIN_SETTLE_MS ? l->ep.drain_ms
							      : FLEET_EP_DRAIN_SETTLE_MS);
	return true;
}

void fleet__ep_swapped(struct fleet *b, struct svc *v)
{
	struct ep_local *l = b->eps ? loc_get(b, v->name) : NULL;
	if (!l)
		return;
	if (l->drain)
		drain_drop(l->drain);
	l->draining = false;
}

bool fleet__ep_settle(struct fleet *b, struct svc *v)
{
	struct ep_local *l = loc_get(b, v->name);
	if (!l || !v->running_rev || v->hstate != HEALTH_STARTING ||
	    load_art(b, l, &v->running) < 0 || !l->has_ep)
		return false;
	l->settling = true;
	return true;
}

void fleet__ep_health(struct fleet *b, struct svc *v)
{
	struct ep_local *l = b->eps ? loc_get(b, v->name) : NULL;
	if (!l || !l->settling || v->hstate != HEALTH_HEALTHY)
		return;
	l->settling = false;
	if (v->swapping && v->swap_target == 0) {	/* no new swap started meanwhile */
		v->swapping = false;
		fleet__event(b, "ready", v->name, v->running_rev, "%s: rev %" PRIu64 " healthy and "
			     "ready: the next node of the site may swap", v->name, v->running_rev);
	}
}

bool fleet__ep_restart(struct fleet *b, struct svc *v, const char *why)
{
	struct ep_local *l = loc_get(b, v->name);
	if (!l || !b->rec || !v->running_rev || load_art(b, l, &v->running) < 0)
		return false;
	if (l->restarts_rev != v->running_rev) {
		l->restarts_rev = v->running_rev;
		l->restarts_done = 0;
	}
	if (l->restarts_done >= l->rec.restarts)
		return false;
	int r = reconcile_restart(b->rec, v->name, v->running_rev);
	if (r < 0) {
		log_info("%s: cannot restart rev %" PRIu64 " locally: %s", v->name, v->running_rev,
			 strerror(-r));
		return false;
	}
	l->restarts_done++;
	fleet__event(b, "restart", v->name, v->running_rev, "%s: rev %" PRIu64 " missed its "
		     "health policy (%s): local restart %" PRIu32 " of %" PRIu32 " before it counts "
		     "as failed", v->name, v->running_rev, why, l->restarts_done, l->rec.restarts);
	return true;
}

void fleet__ep_close(struct fleet *b)
{
	struct fleet_eps *x = b->eps;
	if (!x)
		return;
	for (size_t i = 0; i < x->nloc; i++)
		if (x->loc[i].drain)
			drain_drop(x->loc[i].drain);
	free(x->cat);
	free(x->loc);
	free(x);
	b->eps = NULL;
}

/* ---- The control operation ------------------------------------------------------------------- */

static const struct ctl_arg endpoints_args[] = {
	{"service", CTL_ARG_STR, .offset = offsetof(struct fleet_endpoints_args, service),
	 .check = agent_config_check_name, .bad = "\"service\" must be a service name"},
};
const struct ctl_args_spec fleet_endpoints_spec =
	CTL_ARGS_SPEC(struct fleet_endpoints_args, endpoints_args);

void fleet_op_endpoints(void *fleet, const void *args, const struct ctl_peer *peer,
			struct ctl_enc *out)
{
	const struct fleet_endpoints_args *a = args;
	struct fleet *b = fleet;
	struct fleet_endpoint *eps = NULL;
	size_t n = 0;
	struct ctl_enc items;
	(void)peer;
	if (!b || !b->started) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "the cluster brain is not running");
		return;
	}
	int r = fleet_endpoints_get(b, a->service, &eps, &n, NULL);
	if (r < 0) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s", strerror(-r));
		return;
	}
	ctl_enc_init(&items);
	for (size_t i = 0; i < n; i++) {
		const struct fleet_endpoint *e = &eps[i];
		ctl_enc_map(&items, 10);
		ctl_kv_str(&items, "service", e->service);
		ctl_kv_str(&items, "node", e->node);
		ctl_kv_str(&items, "site", e->site);
		ctl_kv_str(&items, "address", e->addr);
		ctl_kv_uint(&items, "port", e->port);
		ctl_kv_uint(&items, "weight", e->weight);
		ctl_kv_str(&items, "protocol", e->protocol == STORE_ENDPOINT_HTTP ? "http" : "tcp");
		ctl_kv_str(&items, "state", fleet_ep_state_name(e->state));
		ctl_kv_uint(&items, "rev", e->rev);
		ctl_kv_bool(&items, "down", e->down);
	}
	ctl_enc_ok_array(out, &items, (uint32_t)n);
	ctl_enc_release(&items);
	free(eps);
}
