/*
 * agent/fleet/records.c: keys and values of the fleet's gossip records (layout in records.h).
 *
 * Decoding: the value's msgpack payload is first walked by ctl_msgpack_check (bounds, depth,
 * container counts against the bytes left), then unpacked and type-checked field by field.
 */
#include "agent/fleet/records.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "agent/base/sign.h"
#include "agent/ctl/ctl_proto.h"
#include "agent/node/health.h"

#define HDR 3

static bool service_ok(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int fleet_key_format(const struct fleet_key *k, char *buf, size_t len)
{
	int n;
	if (k && buf && k->type == FLEET_REC_ROSTER) {
		n = snprintf(buf, len, "roster");
		return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : n;
	}
	if (k && buf && k->type == FLEET_REC_REMOVE) {
		static const char hx[] = "0123456789abcdef";
		if (len < 7 + 2 * STORE_NODE_ID_LEN + 1)
			return -ENAMETOOLONG;
		memcpy(buf, "remove/", 7);
		for (int i = 0; i < STORE_NODE_ID_LEN; i++) {
			buf[7 + 2 * i] = hx[k->node[i] >> 4];
			buf[8 + 2 * i] = hx[k->node[i] & 15];
		}
		buf[7 + 2 * STORE_NODE_ID_LEN] = 0;
		return 7 + 2 * STORE_NODE_ID_LEN;
	}
	if (!k || !buf || !service_ok(k->service, strnlen(k->service, sizeof k->service)))
		return -EINVAL;
	switch (k->type) {
	case FLEET_REC_REV:
		n = snprintf(buf, len, "rev/%s/%" PRIu64, k->service, k->rev);
		break;
	case FLEET_REC_CERT:
	case FLEET_REC_ELECT:
		n = snprintf(buf, len, "%s/%s/%" PRIu64 "/%" PRIu32,
			     k->type == FLEET_REC_CERT ? "cert" : "elect", k->service, k->rev,
			     k->chunk);
		break;
	case FLEET_REC_VOTE:
		n = snprintf(buf, len, "vote/%s/%" PRIu64, k->service, k->rev);
		break;
	case FLEET_REC_HEALTH:
		n = snprintf(buf, len, "health/%s", k->service);
		break;
	default:
		return -EINVAL;
	}
	if (k->type != FLEET_REC_HEALTH && k->rev == 0)
		return -EINVAL;
	if (n < 0 || (size_t)n >= len || n > FLEET_REC_KEY_MAX)
		return -ENAMETOOLONG;
	return n;
}

/* Parse a decimal u64 of @n bytes (no sign, no leading zero unless "0", at most 20 digits). */
static int parse_u64(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

bool fleet_key_urgent(const void *key, size_t klen)
{
	struct fleet_key k;

	if (fleet_key_parse(key, klen, &k) < 0)
		return false;
	return k.type == FLEET_REC_REV || k.type == FLEET_REC_CERT || k.type == FLEET_REC_VOTE;
}

int fleet_key_parse(const void *key, size_t klen, struct fleet_key *ret)
{
	const char *k = key;
	struct fleet_key out;
	const char *p, *end;
	size_t pre;

	if (!key || !ret)
		return -EINVAL;
	memset(&out, 0, sizeof out);
	if (klen > FLEET_REC_KEY_MAX)
		return -ENOENT;
	if (klen == 6 && memcmp(k, "roster", 6) == 0) {
		out.type = FLEET_REC_ROSTER;
		*ret = out;
		return 0;
	}
	if (klen > 7 && memcmp(k, "remove/", 7) == 0) {
		if (klen != 7 + 2 * STORE_NODE_ID_LEN)
			return -EBADMSG;
		for (int i = 0; i < 2 * STORE_NODE_ID_LEN; i++) {
			char ch = k[7 + i];
			int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
			if (d < 0)
				return -EBADMSG;
			out.node[i / 2] = (uint8_t)(i % 2 ? out.node[i / 2] | d : d << 4);
		}
		out.type = FLEET_REC_REMOVE;
		*ret = out;
		return 0;
	}
	if (klen > 4 && memcmp(k, "rev/", 4) == 0) {
		out.type = FLEET_REC_REV;
		pre = 4;
	} else if (klen > 5 && memcmp(k, "cert/", 5) == 0) {
		out.type = FLEET_REC_CERT;
		pre = 5;
	} else if (klen > 6 && memcmp(k, "elect/", 6) == 0) {
		out.type = FLEET_REC_ELECT;
		pre = 6;
	} else if (klen > 5 && memcmp(k, "vote/", 5) == 0) {
		out.type = FLEET_REC_VOTE;
		pre = 5;
	} else if (klen > 7 && memcmp(k, "health/", 7) == 0) {
		out.type = FLEET_REC_HEALTH;
		pre = 7;
	} else {
		return -ENOENT;
	}
	p = k + pre;
	end = k + klen;
	const char *slash = memchr(p, '/', (size_t)(end - p));
	size_t sn = slash ? (size_t)(slash - p) : (size_t)(end - p);
	if (!service_ok(p, sn))
		return -EBADMSG;
	memcpy(out.service, p, sn);
	out.service[sn] = 0;
	if (out.type == FLEET_REC_HEALTH) {
		if (slash)
			return -EBADMSG;
		*ret = out;
		return 0;
	}
	if (!slash)
		return -EBADMSG;
	p = slash + 1;
	slash = memchr(p, '/', (size_t)(end - p));
	size_t rn = slash ? (size_t)(slash - p) : (size_t)(end - p);
	if (parse_u64(p, rn, &out.rev) < 0 || out.rev == 0)
		return -EBADMSG;
	if (out.type != FLEET_REC_CERT && out.type != FLEET_REC_ELECT) {
		if (slash)
			return -EBADMSG;
		*ret = out;
		return 0;
	}
	if (!slash)
		return -EBADMSG;
	p = slash + 1;
	uint64_t c;
	if (parse_u64(p, (size_t)(end - p), &c) < 0 || c > FLEET_CERT_MAX / FLEET_CERT_PER_CHUNK)
		return -EBADMSG;
	out.chunk = (uint32_t)c;
	*ret = out;
	return 0;
}

int fleet_value_type(const uint8_t *buf, size_t len, enum fleet_rec_type *ret)
{
	if (!buf || len < HDR || buf[0] != FLEET_REC_MAGIC)
		return -EBADMSG;
	if (buf[1] != FLEET_REC_VERSION)
		return buf[1] > FLEET_REC_VERSION ? -EPROTONOSUPPORT : -EBADMSG;
	switch (buf[2]) {
	case FLEET_REC_REV:
	case FLEET_REC_CERT:
	case FLEET_REC_ELECT:
	case FLEET_REC_VOTE:
	case FLEET_REC_HEALTH:
	case FLEET_REC_ROSTER:
	case FLEET_REC_REMOVE:
		*ret = (enum fleet_rec_type)buf[2];
		return 0;
	default:
		return -EBADMSG;
	}
}

/* ---- Encoding ------------------------------------------------------------------------------ */

static int pk_write(void *data, const char *buf, size_t len)
{
	return msgpack_sbuffer_write(data, buf, len);
}

static int finish(msgpack_sbuffer *sb, enum fleet_rec_type t, uint8_t **ret_buf, size_t *ret_len)
{
	/* sb starts with 3 reserved bytes */
	if (!sb->data || sb->size < HDR) {
		msgpack_sbuffer_destroy(sb);
		return -ENOMEM;
	}
	if (sb->size > FLEET_REC_VALUE_MAX) {
		msgpack_sbuffer_destroy(sb);
		return -EMSGSIZE;
	}
	sb->data[0] = FLEET_REC_MAGIC;
	sb->data[1] = FLEET_REC_VERSION;
	sb->data[2] = (char)t;
	*ret_len = sb->size;
	*ret_buf = (uint8_t *)msgpack_sbuffer_release(sb);
	msgpack_sbuffer_destroy(sb);
	return 0;
}

static int begin(msgpack_sbuffer *sb, msgpack_packer *pk)
{
	static const char hdr[HDR] = {0, 0, 0};
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(pk, sb, pk_write);
	return msgpack_sbuffer_write(sb, hdr, HDR) < 0 ? -ENOMEM : 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void pk_id(msgpack_packer *pk, const struct store_id *id)
{
	msgpack_pack_bin(pk, STORE_ID_LEN);
	msgpack_pack_bin_body(pk, id->b, STORE_ID_LEN);
}

int fleet_rev_encode(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len)
{
	struct store_revision bare;
	uint8_t *enc = NULL, *out = NULL;
	size_t enclen = 0;
	int err;

	if (!r || !ret_buf || !ret_len || r->ncert > FLEET_CERT_MAX || r->nelect > FLEET_CERT_MAX)
		return -EINVAL;
	bare = *r;
	bare.ncert = 0;
	bare.cert = NULL;
	bare.nelect = 0;
	bare.elect = NULL;
	bare.cert_sigs = NULL;
	bare.elect_keys = NULL;
	err = store_revision_encode(&bare, &enc, &enclen);
	if (err < 0)
		return err;
	if (HDR + 8 + enclen > FLEET_REC_VALUE_MAX) {
		err = -EMSGSIZE;
		goto out;
	}
	out = malloc(HDR + 8 + enclen);
	if (!out) {
		err = -ENOMEM;
		goto out;
	}
	out[0] = FLEET_REC_MAGIC;
	out[1] = FLEET_REC_VERSION;
	out[2] = FLEET_REC_REV;
	out[3] = (uint8_t)(r->ncert >> 24);
	out[4] = (uint8_t)(r->ncert >> 16);
	out[5] = (uint8_t)(r->ncert >> 8);
	out[6] = (uint8_t)r->ncert;
	out[7] = (uint8_t)(r->nelect >> 24);
	out[8] = (uint8_t)(r->nelect >> 16);
	out[9] = (uint8_t)(r->nelect >> 8);
	out[10] = (uint8_t)r->nelect;
	memcpy(out + HDR + 8, enc, enclen);
	*ret_buf = out;
	*ret_len = HDR + 8 + enclen;
	err = 0;
out:
	free(enc);
	return err;
}

uint32_t fleet_cert_chunks(uint32_t ncert)
{
	return (ncert + FLEET_CERT_PER_CHUNK - 1) / FLEET_CERT_PER_CHUNK;
}

uint32_t fleet_elect_chunks(uint32_t nelect)
{
	return (nelect + FLEET_ELECT_PER_CHUNK - 1) / FLEET_ELECT_PER_CHUNK;
}

static uint32_t per_chunk(enum fleet_rec_type t)
{
	return t == FLEET_REC_CERT ? FLEET_CERT_PER_CHUNK : FLEET_ELECT_PER_CHUNK;
}

static uint32_t chunks_of(enum fleet_rec_type t, uint32_t total)
{
	return t == FLEET_REC_CERT ? fleet_cert_chunks(total) : fleet_elect_chunks(total);
}

/* [total, index, [id ...], [extra ...]]: extra = signed votes (CERT) or keys (ELECT). */
static int ids_encode(enum fleet_rec_type t, const struct store_revision *r, uint32_t index,
		      uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint32_t total = t == FLEET_REC_CERT ? r->ncert : r->nelect;
	const uint8_t(*ids)[STORE_NODE_ID_LEN] = t == FLEET_REC_CERT ? r->cert : r->elect;
	bool extra = t == FLEET_REC_CERT ? r->cert_sigs != NULL : r->elect_keys != NULL;

	if (!ret_buf || !ret_len || total > FLEET_CERT_MAX || !ids ||
	    index >= chunks_of(t, total))
		return -EINVAL;
	if (begin(&sb, &pk) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	uint32_t first = index * per_chunk(t);
	uint32_t n = total - first;
	if (n > per_chunk(t))
		n = per_chunk(t);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, total);
	msgpack_pack_uint32(&pk, index);
	msgpack_pack_array(&pk, n);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_bin(&pk, STORE_NODE_ID_LEN);
		msgpack_pack_bin_body(&pk, ids[first + i], STORE_NODE_ID_LEN);
	}
	msgpack_pack_array(&pk, extra ? n : 0);
	for (uint32_t i = 0; extra && i < n; i++) {
		if (t == FLEET_REC_CERT) {
			const struct store_cert_sig *cs = &r->cert_sigs[first + i];
			msgpack_pack_array(&pk, 3);
			msgpack_pack_uint64(&pk, cs->hlc);
			msgpack_pack_uint32(&pk, cs->reason);
			msgpack_pack_bin(&pk, STORE_SIG_LEN);
			msgpack_pack_bin_body(&pk, cs->sig, STORE_SIG_LEN);
		} else {
			msgpack_pack_bin(&pk, STORE_KEY_LEN);
			msgpack_pack_bin_body(&pk, r->elect_keys[first + i], STORE_KEY_LEN);
		}
	}
	return finish(&sb, t, ret_buf, ret_len);
}

int fleet_cert_encode(const struct store_revision *r, uint32_t index, uint8_t **ret_buf,
		      size_t *ret_len)
{
	if (!r)
		return -EINVAL;
	return ids_encode(FLEET_REC_CERT, r, index, ret_buf, ret_len);
}

int fleet_elect_encode(const struct store_revision *r, uint32_t index, uint8_t **ret_buf,
		       size_t *ret_len)
{
	if (!r)
		return -EINVAL;
	return ids_encode(FLEET_REC_ELECT, r, index, ret_buf, ret_len);
}

static void pk_op(msgpack_packer *pk, const struct store_opsig *op)
{
	if (!op || !op->kind) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_array(pk, 7);
	msgpack_pack_uint8(pk, op->kind);
	pk_str(pk, op->scope);
	msgpack_pack_uint64(pk, op->target);
	msgpack_pack_uint64(pk, op->ts_ms);
	msgpack_pack_bin(pk, sizeof op->nonce);
	msgpack_pack_bin_body(pk, op->nonce, sizeof op->nonce);
	msgpack_pack_bin(pk, STORE_KEY_LEN);
	msgpack_pack_bin_body(pk, op->key, STORE_KEY_LEN);
	msgpack_pack_bin(pk, STORE_SIG_LEN);
	msgpack_pack_bin_body(pk, op->sig, STORE_SIG_LEN);
}

int fleet_vote_encode(const struct store_vote *v, uint8_t **ret_buf, size_t *ret_len)
{
	return fleet_vote_encode_op(v, NULL, ret_buf, ret_len);
}

int fleet_vote_encode_op(const struct store_vote *v, const struct store_opsig *op,
			 uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!v || !ret_buf || !ret_len || v->rev == 0 || v->subject == 0 ||
	    !service_ok(v->service, strnlen(v->service, sizeof v->service)) ||
	    (v->reason != STORE_VOTE_HEALTH && v->reason != STORE_VOTE_OPERATOR))
		return -EINVAL;
	if (begin(&sb, &pk) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	if (op && op->kind && (op->kind > SIGN_OP_KIND_MAX || !memchr(op->scope, 0, sizeof op->scope))) {
		msgpack_sbuffer_destroy(&sb);
		return -EINVAL;
	}
	msgpack_pack_array(&pk, 9);
	pk_str(&pk, v->service);
	msgpack_pack_uint64(&pk, v->rev);
	msgpack_pack_uint8(&pk, (uint8_t)v->reason);
	msgpack_pack_uint64(&pk, v->hlc);
	msgpack_pack_uint64(&pk, v->subject);
	msgpack_pack_uint64(&pk, v->target);
	msgpack_pack_uint32(&pk, v->round);
	msgpack_pack_bin(&pk, STORE_SIG_LEN);
	msgpack_pack_bin_body(&pk, v->sig, STORE_SIG_LEN);
	pk_op(&pk, op);
	return finish(&sb, FLEET_REC_VOTE, ret_buf, ret_len);
}

int fleet_health_encode(const struct fleet_health *h, uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!h || !ret_buf || !ret_len || h->nheld > FLEET_HELD_MAX ||
	    !service_ok(h->service, strnlen(h->service, sizeof h->service)))
		return -EINVAL;
	if (begin(&sb, &pk) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	msgpack_pack_array(&pk, 12);
	pk_str(&pk, h->service);
	msgpack_pack_uint64(&pk, h->running_rev);
	pk_id(&pk, &h->running);
	msgpack_pack_uint8(&pk, h->state);
	msgpack_pack_uint64(&pk, h->since_hlc);
	msgpack_pack_uint8(&pk, (uint8_t)((h->missed ? 1 : 0) | (h->swapping ? 2 : 0) |
					  (h->diverged ? 4 : 0)));
	msgpack_pack_uint64(&pk, h->desired_rev);
	msgpack_pack_array(&pk, h->nheld);
	for (uint32_t i = 0; i < h->nheld; i++)
		pk_id(&pk, &h->held[i]);
	msgpack_pack_uint64(&pk, h->local_base_rev);
	msgpack_pack_uint64(&pk, h->local_target_rev);
	msgpack_pack_bin(&pk, STORE_SIG_LEN);	/* the two fields reserved (nil) until 2026-12 */
	msgpack_pack_bin_body(&pk, h->sig, STORE_SIG_LEN);
	msgpack_pack_uint64(&pk, h->stamp);
	return finish(&sb, FLEET_REC_HEALTH, ret_buf, ret_len);
}

uint8_t *fleet_msg_begin(uint8_t *p, const char *tag, const uint8_t owner[STORE_NODE_ID_LEN])
{
	size_t n = strlen(tag) + 1;	/* with its NUL */
	memcpy(p, tag, n);
	memcpy(p + n, owner, STORE_NODE_ID_LEN);
	return p + n + STORE_NODE_ID_LEN;
}

uint8_t *fleet_msg_str(uint8_t *p, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap - 1);
	*p++ = (uint8_t)n;
	memcpy(p, s, n);
	return p + n;
}

uint8_t *fleet_msg_be(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

static uint8_t *put_bytes(uint8_t *p, const void *b, size_t n)
{
	memcpy(p, b, n);
	return p + n;
}

size_t fleet_health_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_health *h,
			uint8_t out[FLEET_HEALTH_MSG_MAX])
{
	uint32_t nheld = h->nheld > FLEET_HELD_MAX ? FLEET_HELD_MAX : h->nheld;
	uint8_t *p = fleet_msg_begin(out, "shoal-health-v1", owner);
	p = fleet_msg_str(p, h->service, sizeof h->service);
	p = fleet_msg_be(p, h->running_rev, 8);
	p = put_bytes(p, h->running.b, STORE_ID_LEN);
	*p++ = h->state;
	p = fleet_msg_be(p, h->since_hlc, 8);
	*p++ = (uint8_t)((h->missed ? 1 : 0) | (h->swapping ? 2 : 0) | (h->diverged ? 4 : 0));
	p = fleet_msg_be(p, h->desired_rev, 8);
	*p++ = (uint8_t)nheld;
	for (uint32_t i = 0; i < nheld; i++)
		p = put_bytes(p, h->held[i].b, STORE_ID_LEN);
	p = fleet_msg_be(p, h->local_base_rev, 8);
	p = fleet_msg_be(p, h->local_target_rev, 8);
	p = fleet_msg_be(p, h->stamp, 8);
	return (size_t)(p - out);
}

int fleet_roster_encode(const struct fleet_roster *m, uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!m || !ret_buf || !ret_len || !memchr(m->site, 0, sizeof m->site) ||
	    !memchr(m->addr, 0, sizeof m->addr))
		return -EINVAL;
	if (begin(&sb, &pk) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	msgpack_pack_array(&pk, m->has_enrol || m->has_rot ? 8 : 6);
	pk_str(&pk, m->site);
	if (m->left)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	pk_str(&pk, m->addr);
	msgpack_pack_uint64(&pk, m->hlc);
	msgpack_pack_bin(&pk, STORE_KEY_LEN);
	msgpack_pack_bin_body(&pk, m->key, STORE_KEY_LEN);
	msgpack_pack_bin(&pk, STORE_SIG_LEN);
	msgpack_pack_bin_body(&pk, m->sig, STORE_SIG_LEN);
	if (m->has_enrol || m->has_rot) {
		if (m->has_enrol) {
			msgpack_pack_array(&pk, 4);
			msgpack_pack_uint64(&pk, m->enrol.ts_ms);
			msgpack_pack_bin(&pk, sizeof m->enrol.nonce);
			msgpack_pack_bin_body(&pk, m->enrol.nonce, sizeof m->enrol.nonce);
			msgpack_pack_bin(&pk, STORE_KEY_LEN);
			msgpack_pack_bin_body(&pk, m->enrol.key, STORE_KEY_LEN);
			msgpack_pack_bin(&pk, STORE_SIG_LEN);
			msgpack_pack_bin_body(&pk, m->enrol.sig, STORE_SIG_LEN);
		} else {
			msgpack_pack_nil(&pk);
		}
		if (m->has_rot) {
			msgpack_pack_array(&pk, 2);
			msgpack_pack_bin(&pk, STORE_KEY_LEN);
			msgpack_pack_bin_body(&pk, m->rot_prev, STORE_KEY_LEN);
			msgpack_pack_bin(&pk, STORE_SIG_LEN);
			msgpack_pack_bin_body(&pk, m->rot_sig, STORE_SIG_LEN);
		} else {
			msgpack_pack_nil(&pk);
		}
	}
	return finish(&sb, FLEET_REC_ROSTER, ret_buf, ret_len);
}

size_t fleet_roster_msg(const uint8_t owner[STORE_NODE_ID_LEN], const struct fleet_roster *m,
			uint8_t out[FLEET_ROSTER_MSG_MAX])
{
	uint8_t *p = fleet_msg_begin(out, "shoal-roster-v1", owner);
	p = fleet_msg_str(p, m->site, sizeof m->site);
	*p++ = m->left ? 1 : 0;
	p = fleet_msg_str(p, m->addr, sizeof m->addr);
	p = fleet_msg_be(p, m->hlc, 8);
	p = put_bytes(p, m->key, STORE_KEY_LEN);
	return (size_t)(p - out);
}

int fleet_remove_encode(const struct fleet_remove *x, uint8_t **ret_buf, size_t *ret_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (!x || !ret_buf || !ret_len || !memchr(x->reason, 0, sizeof x->reason))
		return -EINVAL;
	if (begin(&sb, &pk) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	if (x->op.kind && (x->op.kind > SIGN_OP_KIND_MAX ||
			   !memchr(x->op.scope, 0, sizeof x->op.scope))) {
		msgpack_sbuffer_destroy(&sb);
		return -EINVAL;
	}
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint64(&pk, x->hlc);
	msgpack_pack_uint32(&pk, x->uid);
	msgpack_pack_int32(&pk, x->pid);
	pk_str(&pk, x->reason);
	pk_op(&pk, &x->op);
	return finish(&sb, FLEET_REC_REMOVE, ret_buf, ret_len);
}

/* ---- Decoding ------------------------------------------------------------------------------ */

struct dec {
	msgpack_unpacked up;
	const msgpack_object *root;
};

static int dec_open(const uint8_t *buf, size_t len, enum fleet_rec_type t, uint32_t nfields,
		    struct dec *d)
{
	enum fleet_rec_type got;
	size_t used = 0, off = 0;
	int r = fleet_value_type(buf, len, &got);
	if (r < 0)
		return r;
	if (got != t)
		return -EBADMSG;
	if (ctl_msgpack_check(buf + HDR, len - HDR, &used) < 0 || used != len - HDR)
		return -EBADMSG;
	msgpack_unpacked_init(&d->up);
	msgpack_unpack_return ur =
		msgpack_unpack_next(&d->up, (const char *)buf + HDR, len - HDR, &off);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
		msgpack_unpacked_destroy(&d->up);
		return -ENOMEM;
	}
	if (ur != MSGPACK_UNPACK_SUCCESS || off != len - HDR ||
	    d->up.data.type != MSGPACK_OBJECT_ARRAY || d->up.data.via.array.size < nfields) {
		msgpack_unpacked_destroy(&d->up);
		return -EBADMSG;
	}
	d->root = &d->up.data;
	return 0;
}

static const msgpack_object *field(const struct dec *d, uint32_t i)
{
	return &d->root->via.array.ptr[i];
}

static bool get_u64(const msgpack_object *o, uint64_t *v)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*v = o->via.u64;
	return true;
}

static bool get_str(const msgpack_object *o, char *out, size_t cap)
{
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
	    (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size) != NULL))
		return false;	/* no embedded NUL; "" may come with a NULL pointer */
	if (o->via.str.size)
		memcpy(out, o->via.str.ptr, o->via.str.size);
	out[o->via.str.size] = 0;
	return true;
}

static bool get_bin(const msgpack_object *o, void *out, size_t n)
{
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n)
		return false;
	memcpy(out, o->via.bin.ptr, n);
	return true;
}

int fleet_rev_decode(const uint8_t *buf, size_t len, struct store_revision *ret)
{
	enum fleet_rec_type t;
	struct store_revision r;
	int err;

	if (!buf || !ret)
		return -EINVAL;
	err = fleet_value_type(buf, len, &t);
	if (err < 0)
		return err;
	if (t != FLEET_REC_REV || len < HDR + 8)
		return -EBADMSG;
	uint32_t ncert = (uint32_t)buf[3] << 24 | (uint32_t)buf[4] << 16 | (uint32_t)buf[5] << 8 |
			 buf[6];
	uint32_t nelect = (uint32_t)buf[7] << 24 | (uint32_t)buf[8] << 16 | (uint32_t)buf[9] << 8 |
			  buf[10];
	if (ncert > FLEET_CERT_MAX || nelect > FLEET_CERT_MAX)
		return -EBADMSG;
	err = store_revision_decode(buf + HDR + 8, len - HDR - 8, &r);
	if (err < 0)
		return err == -ENOMEM ? -ENOMEM : -EBADMSG;
	if (r.ncert != 0 || r.nelect != 0) {
		store_revision_release(&r);
		return -EBADMSG;
	}
	r.ncert = ncert;
	r.cert = NULL;
	r.nelect = nelect;
	r.elect = NULL;
	*ret = r;
	return 0;
}

int fleet_ids_decode(const uint8_t *buf, size_t len, enum fleet_rec_type t,
		     struct fleet_cert_chunk *ret)
{
	struct dec d;
	uint64_t ncert, idx;
	int err = -EBADMSG;

	if (!buf || !ret || (t != FLEET_REC_CERT && t != FLEET_REC_ELECT))
		return -EINVAL;
	err = dec_open(buf, len, t, 4, &d);
	if (err < 0)
		return err;
	err = -EBADMSG;
	if (!get_u64(field(&d, 0), &ncert) || !get_u64(field(&d, 1), &idx) || ncert == 0 ||
	    ncert > FLEET_CERT_MAX || idx >= chunks_of(t, (uint32_t)ncert))
		goto out;
	const msgpack_object *ids = field(&d, 2), *ex = field(&d, 3);
	uint32_t want = (uint32_t)ncert - (uint32_t)idx * per_chunk(t);
	if (want > per_chunk(t))
		want = per_chunk(t);
	if (ids->type != MSGPACK_OBJECT_ARRAY || ids->via.array.size != want ||
	    ex->type != MSGPACK_OBJECT_ARRAY ||
	    (ex->via.array.size != 0 && ex->via.array.size != want))
		goto out;
	struct fleet_cert_chunk *c = calloc(1, sizeof *c);
	if (!c) {
		err = -ENOMEM;
		goto out;
	}
	c->ncert = (uint32_t)ncert;
	c->index = (uint32_t)idx;
	c->n = want;
	c->extra = ex->via.array.size != 0;
	for (uint32_t i = 0; i < want; i++)
		if (!get_bin(&ids->via.array.ptr[i], c->ids[i], STORE_NODE_ID_LEN))
			goto bad;
	for (uint32_t i = 0; c->extra && i < want; i++) {
		const msgpack_object *o = &ex->via.array.ptr[i];
		if (t == FLEET_REC_ELECT) {
			if (!get_bin(o, c->keys[i], STORE_KEY_LEN))
				goto bad;
			continue;
		}
		uint64_t reason;
		if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3 ||
		    !get_u64(&o->via.array.ptr[0], &c->sigs[i].hlc) ||
		    !get_u64(&o->via.array.ptr[1], &reason) || reason > STORE_VOTE_OPERATOR ||
		    !get_bin(&o->via.array.ptr[2], c->sigs[i].sig, STORE_SIG_LEN))
			goto bad;
		c->sigs[i].reason = (uint32_t)reason;
	}
	*ret = *c;
	err = 0;
bad:
	free(c);
out:
	msgpack_unpacked_destroy(&d.up);
	return err;
}

int fleet_cert_decode(const uint8_t *buf, size_t len, struct fleet_cert_chunk *ret)
{
	return fleet_ids_decode(buf, len, FLEET_REC_CERT, ret);
}

int fleet_vote_decode(const uint8_t *buf, size_t len, struct store_vote *ret)
{
	return fleet_vote_decode_op(buf, len, ret, NULL);
}

static bool get_op(const msgpack_object *o, struct store_opsig *op)
{
	uint64_t kind;
	memset(op, 0, sizeof *op);
	if (o->type == MSGPACK_OBJECT_NIL)
		return true;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 7)
		return false;
	const msgpack_object *f = o->via.array.ptr;
	if (!get_u64(&f[0], &kind) || kind < 1 || kind > SIGN_OP_KIND_MAX ||
	    !get_str(&f[1], op->scope, sizeof op->scope) || !get_u64(&f[2], &op->target) ||
	    !get_u64(&f[3], &op->ts_ms) || !get_bin(&f[4], op->nonce, sizeof op->nonce) ||
	    !get_bin(&f[5], op->key, STORE_KEY_LEN) || !get_bin(&f[6], op->sig, STORE_SIG_LEN))
		return false;
	op->kind = (uint8_t)kind;
	return true;
}

int fleet_vote_decode_op(const uint8_t *buf, size_t len, struct store_vote *ret,
			 struct store_opsig *ret_op)
{
	struct dec d;
	struct store_opsig op;
	struct store_vote v;
	uint64_t reason, round;
	int err;

	if (!buf || !ret)
		return -EINVAL;
	err = dec_open(buf, len, FLEET_REC_VOTE, 8, &d);
	if (err < 0)
		return err;
	err = -EBADMSG;
	memset(&v, 0, sizeof v);
	if (!get_str(field(&d, 0), v.service, sizeof v.service) ||
	    !service_ok(v.service, strlen(v.service)) || !get_u64(field(&d, 1), &v.rev) ||
	    v.rev == 0 || !get_u64(field(&d, 2), &reason) || reason > STORE_VOTE_OPERATOR ||
	    !get_u64(field(&d, 3), &v.hlc) || !get_u64(field(&d, 4), &v.subject) ||
	    v.subject == 0 || !get_u64(field(&d, 5), &v.target) ||
	    !get_u64(field(&d, 6), &round) || round > UINT32_MAX ||
	    !get_bin(field(&d, 7), v.sig, STORE_SIG_LEN))
		goto out;
	memset(&op, 0, sizeof op);
	if (d.root->via.array.size > 8 && !get_op(field(&d, 8), &op))
		goto out;
	if (ret_op)
		*ret_op = op;
	v.reason = (enum store_vote_reason)reason;
	v.round = (uint32_t)round;
	*ret = v;
	err = 0;
out:
	msgpack_unpacked_destroy(&d.up);
	return err;
}

int fleet_health_decode(const uint8_t *buf, size_t len, struct fleet_health *ret)
{
	struct dec d;
	struct fleet_health h;
	uint64_t state, flags;
	int err;

	if (!buf || !ret)
		return -EINVAL;
	err = dec_open(buf, len, FLEET_REC_HEALTH, 12, &d);
	if (err < 0)
		return err;
	err = -EBADMSG;
	memset(&h, 0, sizeof h);
	if (!get_str(field(&d, 0), h.service, sizeof h.service) ||
	    !service_ok(h.service, strlen(h.service)) || !get_u64(field(&d, 1), &h.running_rev) ||
	    !get_bin(field(&d, 2), h.running.b, STORE_ID_LEN) || !get_u64(field(&d, 3), &state) ||
	    (state > HEALTH_FAILED && state != 0xff) || !get_u64(field(&d, 4), &h.since_hlc) ||
	    !get_u64(field(&d, 5), &flags) || flags > 7 || !get_u64(field(&d, 6), &h.desired_rev) ||
	    !get_u64(field(&d, 8), &h.local_base_rev) ||
	    !get_u64(field(&d, 9), &h.local_target_rev))
		goto out;
	h.state = (uint8_t)state;
	h.missed = flags & 1;
	h.swapping = flags & 2;
	h.diverged = flags & 4;
	const msgpack_object *held = field(&d, 7);
	if (held->type != MSGPACK_OBJECT_ARRAY || held->via.array.size > FLEET_HELD_MAX)
		goto out;
	h.nheld = held->via.array.size;
	for (uint32_t i = 0; i < h.nheld; i++)
		if (!get_bin(&held->via.array.ptr[i], h.held[i].b, STORE_ID_LEN))
			goto out;
	/* sig and stamp: nil in the older (unsigned) form, which the fleet refuses */
	const msgpack_object *sig = field(&d, 10), *stamp = field(&d, 11);
	if ((sig->type != MSGPACK_OBJECT_NIL && !get_bin(sig, h.sig, STORE_SIG_LEN)) ||
	    (stamp->type != MSGPACK_OBJECT_NIL && !get_u64(stamp, &h.stamp)))
		goto out;
	*ret = h;
	err = 0;
out:
	msgpack_unpacked_destroy(&d.up);
	return err;
}

int fleet_roster_decode(const uint8_t *buf, size_t len, struct fleet_roster *ret)
{
	struct dec d;
	struct fleet_roster m;
	int err;

	if (!buf || !ret)
		return -EINVAL;
	err = dec_open(buf, len, FLEET_REC_ROSTER, 6, &d);
	if (err < 0)
		return err;
	err = -EBADMSG;
	memset(&m, 0, sizeof m);
	if (!get_str(field(&d, 0), m.site, sizeof m.site) ||
	    field(&d, 1)->type != MSGPACK_OBJECT_BOOLEAN ||
	    !get_str(field(&d, 2), m.addr, sizeof m.addr) || !get_u64(field(&d, 3), &m.hlc) ||
	    !get_bin(field(&d, 4), m.key, STORE_KEY_LEN) ||
	    !get_bin(field(&d, 5), m.sig, STORE_SIG_LEN))
		goto out;
	if (d.root->via.array.size > 6) {
		const msgpack_object *e = field(&d, 6);
		if (e->type == MSGPACK_OBJECT_ARRAY) {
			const msgpack_object *f = e->via.array.ptr;
			if (e->via.array.size != 4 || !get_u64(&f[0], &m.enrol.ts_ms) ||
			    !get_bin(&f[1], m.enrol.nonce, sizeof m.enrol.nonce) ||
			    !get_bin(&f[2], m.enrol.key, STORE_KEY_LEN) ||
			    !get_bin(&f[3], m.enrol.sig, STORE_SIG_LEN))
				goto out;
			m.enrol.kind = FLEET_ENROL_KIND;
			m.has_enrol = true;
		} else if (e->type != MSGPACK_OBJECT_NIL) {
			goto out;
		}
	}
	if (d.root->via.array.size > 7) {
		const msgpack_object *e = field(&d, 7);
		if (e->type == MSGPACK_OBJECT_ARRAY) {
			const msgpack_object *f = e->via.array.ptr;
			if (e->via.array.size != 2 || !get_bin(&f[0], m.rot_prev, STORE_KEY_LEN) ||
			    !get_bin(&f[1], m.rot_sig, STORE_SIG_LEN))
				goto out;
			m.has_rot = true;
		} else if (e->type != MSGPACK_OBJECT_NIL) {
			goto out;
		}
	}
	m.left = field(&d, 1)->via.boolean;
	*ret = m;
	err = 0;
out:
	msgpack_unpacked_destroy(&d.up);
	return err;
}

int fleet_remove_decode(const uint8_t *buf, size_t len, struct fleet_remove *ret)
{
	struct dec d;
	struct fleet_remove x;
	uint64_t uid;
	int err;

	if (!buf || !ret)
		return -EINVAL;
	err = dec_open(buf, len, FLEET_REC_REMOVE, 4, &d);
	if (err < 0)
		return err;
	err = -EBADMSG;
	memset(&x, 0, sizeof x);
	const msgpack_object *pid = field(&d, 2);
	if (!get_u64(field(&d, 0), &x.hlc) || !get_u64(field(&d, 1), &uid) || uid > UINT32_MAX ||
	    (pid->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
	     pid->type != MSGPACK_OBJECT_NEGATIVE_INTEGER) ||
	    (pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER && pid->via.u64 > INT32_MAX) ||
	    (pid->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && pid->via.i64 < INT32_MIN) ||
	    !get_str(field(&d, 3), x.reason, sizeof x.reason))
		goto out;
	/* the operator's statement: absent in the older (unsigned) form, refused by the fleet */
	if (d.root->via.array.size > 4 && !get_op(field(&d, 4), &x.op))
		goto out;
	x.uid = (uint32_t)uid;
	x.pid = pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int32_t)pid->via.u64
							     : (int32_t)pid->via.i64;
	*ret = x;
	err = 0;
out:
	msgpack_unpacked_destroy(&d.up);
	return err;
}
