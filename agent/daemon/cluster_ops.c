/*
 * agent/daemon/cluster_ops.c: the control operations of the cluster layer (rows in ops.c).
 *
 *   op               args                    result                             runs on
 *   members          -                       [member], table order              loop
 *   join             {addrs: [ADDR:PORT]}    {contacted: n}                     loop
 *   leave            -                       {drain_ms}; the agent then exits   loop
 *   keyring.list     -                       {path, primary, keys: [{id, primary}]}  loop
 *   keyring.install  {key: base64}           {id}                               loop
 *   keyring.use      {id: hex byte}          {id}                               loop
 *   keyring.remove   {id: hex byte}          {id}                               loop
 *
 * They touch the gossip core, which belongs to the loop: all are inline (none waits on the
 * disk except the keyring file rewrite, a few hundred bytes). `status` (threadpool) reads the
 * cluster summary through cluster_status_encode().
 */
#include "agent/cluster/cluster.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "agent/daemon/agent.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/fleet/fleet.h"
#include "agent/base/log.h"
#include "gossip/transport.h"

/* The ops that also serve after a leave (members, keyring) need only this; false: replied. */
static bool have_gossip(struct agent *a, struct ctl_enc *out)
{
	if (!a->cluster) {
		ctl_enc_fail(out, CTL_E_SHUTTING_DOWN,
			     "gossip is not running on this agent (see its log)");
		return false;
	}
	return true;
}

static bool ready(struct agent *a, struct ctl_enc *out)
{
	if (!have_gossip(a, out))
		return false;
	if (cluster_has_left(a->cluster)) {
		ctl_enc_fail(out, CTL_E_SHUTTING_DOWN, "this agent has left the cluster");
		return false;
	}
	return true;
}

/* ---- members ------------------------------------------------------------------------------ */

struct members_ctx {
	struct ctl_enc items;
	uint32_t n;
	struct fleet *fleet;		/* for each member's "trust", or NULL */
};

static void enc_labels(struct ctl_enc *e, const uint8_t *blob, size_t len)
{
	struct ctl_msg msg;
	memset(&msg, 0, sizeof msg);
	if (len && ctl_msg_decode(blob, len, &msg) == 0 && msg.root->type == MSGPACK_OBJECT_MAP) {
		const msgpack_object *o = msg.root;
		uint32_t n = 0;
		for (uint32_t i = 0; i < o->via.map.size; i++)
			n += o->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR &&
			     o->via.map.ptr[i].val.type == MSGPACK_OBJECT_STR;
		ctl_enc_map(e, n);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR ||
			    kv->val.type != MSGPACK_OBJECT_STR)
				continue;
			ctl_enc_strn(e, kv->key.via.str.ptr, kv->key.via.str.size);
			ctl_enc_strn(e, kv->val.via.str.ptr, kv->val.via.str.size);
		}
	} else {
		ctl_enc_map(e, 0);
	}
	ctl_msg_release(&msg);
}

static int member_cb(void *ud, const struct gossip_member *m)
{
	struct members_ctx *x = ud;
	struct ctl_enc *e = &x->items;
	char id[2 * GOSSIP_ID_LEN + 1], addr[64];
	for (int i = 0; i < GOSSIP_ID_LEN; i++)
		snprintf(id + 2 * i, 3, "%02x", m->id[i]);
	ctl_enc_map(e, 9);
	ctl_kv_str(e, "id", id);
	ctl_kv_str(e, "name", m->name);
	ctl_kv_str(e, "address", gossip_addr_format(&m->addr, addr, sizeof addr));
	ctl_kv_str(e, "state", gossip_state_name(m->state));
	ctl_kv_uint(e, "incarnation", m->incarnation);
	ctl_enc_str(e, "labels");
	enc_labels(e, m->labels, m->labels_len);
	ctl_kv_uint(e, "rtt_ms", m->rtt_ms);
	ctl_enc_str(e, "self");
	ctl_enc_bool(e, m->self);
	/* how this node trusts the member's key (sign.h): "not enrolled" is refused */
	ctl_kv_str(e, "trust", x->fleet ? fleet_member_trust(x->fleet, m->id) : "unknown");
	x->n++;
	return e->err;
}

void cluster_op_members(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
			struct ctl_enc *out)
{
	struct agent *a = ud;
	struct members_ctx x = {.n = 0, .fleet = a->fleet};
	if (!have_gossip(a, out))
		return;
	ctl_enc_init(&x.items);
	int r = cluster_member_foreach(a->cluster, member_cb, &x);
	if (r < 0) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "listing members: %s", strerror(-r));
		goto out;
	}
	ctl_enc_ok_array(out, &x.items, x.n);
out:
	ctl_enc_release(&x.items);
}

/* ---- join / leave ------------------------------------------------------------------------- */

void cluster_op_join(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	struct agent *a = ud;
	const char *addrs[GOSSIP_TRANSPORT_SEEDS_MAX_OPS];
	char bufs[GOSSIP_TRANSPORT_SEEDS_MAX_OPS][80];
	size_t n = 0;
	if (!ready(a, out))
		return;
	const msgpack_object *o = ctl_map_get(req->args, "addrs");
	if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
	    o->via.array.size > GOSSIP_TRANSPORT_SEEDS_MAX_OPS) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "\"addrs\" must be an array of 1..%d \"IP:PORT\"",
			     GOSSIP_TRANSPORT_SEEDS_MAX_OPS);
		return;
	}
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR || s->via.str.size == 0 ||
		    s->via.str.size >= sizeof bufs[0] ||
		    memchr(s->via.str.ptr, 0, s->via.str.size)) {
			ctl_enc_fail(out, CTL_E_BAD_REQUEST,
				     "\"addrs\" must hold \"IP:PORT\" strings");
			return;
		}
		memcpy(bufs[n], s->via.str.ptr, s->via.str.size);
		bufs[n][s->via.str.size] = 0;
		addrs[n] = bufs[n];
		n++;
	}
	int r = cluster_join(a->cluster, addrs, n);
	if (r == -EINVAL) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "not a numeric address: give IP:PORT or [IPv6]:PORT "
			     "(port default 7946)");
		return;
	}
	if (r < 0) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "join: %s", strerror(-r));
		return;
	}
	log_notice("ctl: join through %zu address(es) (first %s) by uid %u pid %d", n, addrs[0],
		   peer->uid, peer->pid);
	ctl_enc_ok(out);
	ctl_enc_map(out, 1);
	ctl_kv_uint(out, "contacted", (uint64_t)r);
}

static void left_then_stop(void *ud)
{
	struct agent *a = ud;
	if (a->stop)
		a->stop(a, "left the cluster (agentctl leave)");
}

void cluster_op_leave(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	struct agent *a = ud;
	if (!ready(a, out))
		return;
	/* a decommission: off the roster first, so later revisions no longer count this node
	 * (a stop, a restart or an upgrade is not a leave: only this is) */
	if (a->fleet) {
		int e = fleet_roster_leave(a->fleet);
		if (e < 0)
			log_warning("leave: cannot publish the roster record: %s", strerror(-e));
	}
	int r = cluster_leave(a->cluster, left_then_stop, a);
	if (r < 0) {
		ctl_enc_fail(out, r == -EALREADY ? CTL_E_SHUTTING_DOWN : CTL_E_INTERNAL,
			     "leave: %s",
			     strerror(-r));
		return;
	}
	log_notice("ctl: leave requested by uid %u (pid %d); the agent exits once it is gossiped",
		   peer->uid, peer->pid);
	ctl_enc_ok(out);
	ctl_enc_map(out, 1);
	ctl_kv_uint(out, "drain_ms", gossip_leave_drain_ms(gossip_transport_core(
					 cluster_transport(a->cluster))));
}

/* ---- keyring ------------------------------------------------------------------------------ */

static void enc_keyring(struct ctl_enc *out, struct cluster *c)
{
	struct gossip_keyring *kr = cluster_keyring(c);
	uint8_t ids[GOSSIP_KEYRING_MAX];
	size_t n = gossip_keyring_list(kr, ids, GOSSIP_KEYRING_MAX);
	int primary = gossip_keyring_primary(kr);
	char hex[16];
	if (n > GOSSIP_KEYRING_MAX)
		n = GOSSIP_KEYRING_MAX;
	ctl_enc_map(out, 3);
	ctl_kv_str(out, "path", cluster_keyring_path(c));
	ctl_enc_str(out, "primary");
	if (primary >= 0) {
		snprintf(hex, sizeof hex, "%02x", primary);
		ctl_enc_str(out, hex);
	} else {
		ctl_enc_nil(out);
	}
	ctl_enc_str(out, "keys");
	ctl_enc_array(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		snprintf(hex, sizeof hex, "%02x", ids[i]);
		ctl_enc_map(out, 2);
		ctl_kv_str(out, "id", hex);
		ctl_enc_str(out, "primary");
		ctl_enc_bool(out, (int)ids[i] == primary);
	}
}

void cluster_op_keyring_list(void *ud, const struct ctl_request *req,
			     const struct ctl_peer *peer, struct ctl_enc *out)
{
	struct agent *a = ud;
	if (!have_gossip(a, out))
		return;
	ctl_enc_ok(out);
	enc_keyring(out, a->cluster);
}

static int arg_key_id(const struct ctl_request *req, uint8_t *ret, struct ctl_enc *out)
{
	char *s = NULL;
	int r = ctl_arg_str(req, "id", &s);
	unsigned v;
	char extra;
	if (r < 0 || strlen(s) < 1 || strlen(s) > 2 || sscanf(s, "%x%c", &v, &extra) != 1) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "\"id\" must be a key id: 1 or 2 hex digits (see "
			     "agentctl keyring list)");
		free(s);
		return -EINVAL;
	}
	free(s);
	*ret = (uint8_t)v;
	return 0;
}

static void keyring_result(struct agent *a, const char *what, int r, uint8_t id,
			   const struct ctl_peer *peer, struct ctl_enc *out)
{
	switch (r) {
	case 0:
		log_notice("ctl: keyring %s %02x (%s) by uid %u pid %d", what, id,
			   cluster_keyring_path(a->cluster), peer->uid, peer->pid);
		ctl_enc_ok(out);
		enc_keyring(out, a->cluster);
		return;
	case -ENOENT:
		ctl_enc_fail(out, CTL_E_NOT_FOUND, "no key %02x in the keyring", id);
		return;
	case -EBUSY:
		ctl_enc_fail(out, CTL_E_BAD_REQUEST,
			     "key %02x is the primary: make another key primary "
			     "first (keyring use)", id);
		return;
	case -EEXIST:
		ctl_enc_fail(out, CTL_E_AMBIGUOUS,
			     "another installed key has id %02x: generate a new key",
			     id);
		return;
	case -ENOSPC:
		ctl_enc_fail(out, CTL_E_NO_SPACE, "the keyring is full (%d keys): remove one first",
			     GOSSIP_KEYRING_MAX);
		return;
	case -EINVAL:
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "not a key: expected the base64 of 32 bytes");
		return;
	default:
		ctl_enc_fail(out, CTL_E_INTERNAL,
			     "keyring %s: %s (the running keyring is unchanged)", what,
			     strerror(-r));
	}
}

void cluster_op_keyring_install(void *ud, const struct ctl_request *req,
				const struct ctl_peer *peer, struct ctl_enc *out)
{
	struct agent *a = ud;
	char *key = NULL;
	uint8_t id = 0;
	if (!have_gossip(a, out))
		return;
	if (ctl_arg_str(req, "key", &key) < 0) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "missing argument \"key\" (base64)");
		return;
	}
	int r = cluster_keyring_install(a->cluster, key, &id);
	sodium_memzero(key, strlen(key));
	free(key);
	keyring_result(a, "install", r, id, peer, out);
}

void cluster_op_keyring_use(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
			    struct ctl_enc *out)
{
	struct agent *a = ud;
	uint8_t id;
	if (!have_gossip(a, out))
		return;
	if (arg_key_id(req, &id, out) < 0)
		return;
	keyring_result(a, "use", cluster_keyring_use(a->cluster, id), id, peer, out);
}

void cluster_op_keyring_remove(void *ud, const struct ctl_request *req,
			       const struct ctl_peer *peer, struct ctl_enc *out)
{
	struct agent *a = ud;
	uint8_t id;
	if (!have_gossip(a, out))
		return;
	if (arg_key_id(req, &id, out) < 0)
		return;
	keyring_result(a, "remove", cluster_keyring_remove(a->cluster, id), id, peer, out);
}

/* ---- status ------------------------------------------------------------------------------- */

void cluster_status_encode(struct cluster *c, struct ctl_enc *out)
{
	struct cluster_summary s;
	char hex[16];
	if (!c) {
		ctl_enc_nil(out);
		return;
	}
	cluster_summary(c, &s);
	ctl_enc_map(out, 12);
	ctl_enc_str(out, "members");
	ctl_enc_map(out, 4);
	for (int i = 0; i < 4; i++)
		ctl_kv_uint(out, gossip_state_name(i), s.members[i]);
	ctl_kv_uint(out, "incarnation", s.incarnation);
	ctl_enc_str(out, "left");
	ctl_enc_bool(out, s.left);
	ctl_kv_str(out, "bind", s.bind);
	ctl_kv_str(out, "advertise", s.advertise);
	ctl_kv_uint(out, "keys", s.keys);
	ctl_enc_str(out, "primary_key");
	if (s.primary_key >= 0) {
		snprintf(hex, sizeof hex, "%02x", s.primary_key);
		ctl_enc_str(out, hex);
	} else {
		ctl_enc_nil(out);
	}
	ctl_kv_uint(out, "records", s.records);
	ctl_enc_str(out, "packets");
	ctl_enc_map(out, 4);
	ctl_kv_uint(out, "in", s.packets_in);
	ctl_kv_uint(out, "out", s.packets_out);
	ctl_kv_uint(out, "bytes_in", s.bytes_in);
	ctl_kv_uint(out, "bytes_out", s.bytes_out);
	ctl_enc_str(out, "dropped");
	ctl_enc_map(out, GOSSIP_DROP_MAX + 2);
	for (int i = 0; i < GOSSIP_DROP_MAX; i++)
		ctl_kv_uint(out, gossip_drop_name((enum gossip_drop)i), s.drops[i]);
	ctl_kv_uint(out, "malformed", s.malformed);
	ctl_kv_uint(out, "send_errors", s.send_errors);
	ctl_enc_str(out, "sync");
	ctl_enc_map(out, 2);
	ctl_kv_uint(out, "ok", s.sync_ok);
	ctl_kv_uint(out, "failed", s.sync_failed);
	ctl_kv_uint(out, "persist_errors", s.persist_errors);
}
