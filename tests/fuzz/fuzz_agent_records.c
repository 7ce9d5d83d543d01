/*
 * Fuzz target for the cluster brain's gossip records (agent/fleet/records.c): every byte of a
 * record comes from another node. The input is split at the first 0x00 byte into a record
 * KEY and a VALUE (no 0x00: key only); the key goes through fleet_key_parse, the value through
 * every decoder (each must reject the types that are not its own), and what decodes is
 * re-encoded and decoded again, which must give the same fields (signatures, keys and an
 * operator's statement included); the signed-message builders (vote, roster, health, the
 * subject of a removal) run on what decodes.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "agent/agree/agree.h"
#include "agent/base/sign.h"
#include "agent/fleet/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The node id a remove/ key names, or zero (any 16 bytes do for the subject builder). */
static const uint8_t *owner_of(const uint8_t *key, size_t klen)
{
	static uint8_t id[16];
	struct fleet_key k;
	memset(id, 0, sizeof id);
	if (klen && fleet_key_parse(key, klen, &k) == 0 && k.type == FLEET_REC_REMOVE)
		memcpy(id, k.node, sizeof id);
	return id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *zero = memchr(data, 0, size);
	size_t klen = zero ? (size_t)(zero - data) : size;
	const uint8_t *val = zero ? zero + 1 : data + size;
	size_t vlen = zero ? size - klen - 1 : 0;
	struct fleet_key k;
	char key[FLEET_REC_KEY_MAX + 1];
	uint8_t *buf;
	size_t len;

	if (klen && fleet_key_parse(data, klen, &k) == 0) {
		int n = fleet_key_format(&k, key, sizeof key);
		if (n >= 0) {
			struct fleet_key k2;
			if (fleet_key_parse(key, (size_t)n, &k2) != 0 || k2.type != k.type ||
			    k2.rev != k.rev || k2.chunk != k.chunk || strcmp(k2.service, k.service))
				abort();
		}
	}

	struct store_revision r;
	if (fleet_rev_decode(val, vlen, &r) == 0) {
		r.ncert = 0; /* the announced count has no ids behind it here */
		if (fleet_rev_encode(&r, &buf, &len) == 0) {
			struct store_revision r2;
			if (fleet_rev_decode(buf, len, &r2) != 0 || r2.rev != r.rev ||
			    strcmp(r2.service, r.service) != 0)
				abort();
			store_revision_release(&r2);
			free(buf);
		}
		store_revision_release(&r);
	}
	struct fleet_cert_chunk c;
	if (fleet_cert_decode(val, vlen, &c) == 0) {
		if (c.n == 0 || c.n > FLEET_CERT_PER_CHUNK)
			abort();
		for (uint32_t i = 0; c.extra && i < c.n; i++)
			if (c.sigs[i].reason > STORE_VOTE_OPERATOR)
				abort();
	}
	struct store_vote v;
	if (fleet_vote_decode(val, vlen, &v) == 0) {
		if (fleet_vote_encode(&v, &buf, &len) == 0) {
			struct store_vote v2;
			if (fleet_vote_decode(buf, len, &v2) != 0 || v2.rev != v.rev ||
			    v2.subject != v.subject || v2.target != v.target || v2.round != v.round ||
			    memcmp(v2.sig, v.sig, STORE_SIG_LEN) != 0)
				abort();
			free(buf);
		}
		/* the signature check on outside bytes: never more than the message buffer, a
		 * random signature under a key taken from the input never verifies */
		uint8_t msg[AGREE_VOTE_MSG_MAX], vk[STORE_KEY_LEN];
		if (agree_vote_msg(&v, msg) > sizeof msg)
			abort();
		memcpy(vk, v.sig, sizeof vk);
		(void)agree_vote_verify(&v, vk);
	}
	struct fleet_cert_chunk e;
	if (fleet_ids_decode(val, vlen, FLEET_REC_ELECT, &e) == 0 &&
	    (e.n == 0 || e.n > FLEET_ELECT_PER_CHUNK))
		abort();
	struct fleet_roster ro;
	if (fleet_roster_decode(val, vlen, &ro) == 0) {
		if (!memchr(ro.site, 0, sizeof ro.site) || !memchr(ro.addr, 0, sizeof ro.addr))
			abort();
		if (fleet_roster_encode(&ro, &buf, &len) == 0) {
			struct fleet_roster ro2;
			if (fleet_roster_decode(buf, len, &ro2) != 0 || ro2.left != ro.left ||
			    strcmp(ro2.site, ro.site) != 0 || strcmp(ro2.addr, ro.addr) != 0 ||
			    memcmp(ro2.key, ro.key, STORE_KEY_LEN) != 0 ||
			    memcmp(ro2.sig, ro.sig, STORE_SIG_LEN) != 0 ||
			    ro2.has_enrol != ro.has_enrol || ro2.has_rot != ro.has_rot ||
			    (ro.has_enrol && (ro2.enrol.kind != ro.enrol.kind ||
					      ro2.enrol.ts_ms != ro.enrol.ts_ms ||
					      memcmp(ro2.enrol.nonce, ro.enrol.nonce,
						     sizeof ro.enrol.nonce) != 0 ||
					      memcmp(ro2.enrol.key, ro.enrol.key, STORE_KEY_LEN) ||
					      memcmp(ro2.enrol.sig, ro.enrol.sig, STORE_SIG_LEN))) ||
			    (ro.has_rot && (memcmp(ro2.rot_prev, ro.rot_prev, STORE_KEY_LEN) ||
					    memcmp(ro2.rot_sig, ro.rot_sig, STORE_SIG_LEN))))
				abort();
			free(buf);
		}
	}
	if (fleet_roster_decode(val, vlen, &ro) == 0) {
		uint8_t msg[FLEET_ROSTER_MSG_MAX], owner[STORE_NODE_ID_LEN] = {0};
		if (fleet_roster_msg(owner, &ro, msg) > sizeof msg)
			abort();
		/* the statements a roster record carries (sign.h): only verified, never trusted
		 * without a key */
		if (ro.has_rot)
			(void)sign_rotate_verify(ro.rot_prev, owner, ro.key, ro.rot_sig);
		if (ro.has_enrol) {
			struct sign_op op = {.kind = ro.enrol.kind, .ts_ms = ro.enrol.ts_ms};
			memcpy(op.nonce, ro.enrol.nonce, sizeof op.nonce);
			memcpy(op.key, ro.enrol.key, sizeof op.key);
			memcpy(op.sig, ro.enrol.sig, sizeof op.sig);
			struct sign_trust t = {.n = 1, .keys = &op.key};
			(void)sign_enrol_verify(&op, owner, sizeof owner, ro.key, &t);
		}
	}
	struct fleet_health h;
	if (fleet_health_decode(val, vlen, &h) == 0) {
		if (h.nheld > FLEET_HELD_MAX)
			abort();
		if (fleet_health_encode(&h, &buf, &len) == 0) {
			struct fleet_health h2;
			if (fleet_health_decode(buf, len, &h2) != 0 ||
			    memcmp(&h2, &h, sizeof h) != 0)
				abort();
			free(buf);
		}
		/* the signed message of what decodes (its stamp included): never more than its
		 * buffer; the check of outside bytes under a key taken from the input */
		uint8_t msg[FLEET_HEALTH_MSG_MAX], owner[STORE_NODE_ID_LEN] = {0};
		size_t n = fleet_health_msg(owner, &h, msg);
		if (n > sizeof msg)
			abort();
		uint8_t hk[STORE_KEY_LEN];
		memcpy(hk, h.sig, sizeof hk);
		(void)sign_verify(hk, msg, n, h.sig);
	}
	struct fleet_remove x;
	if (fleet_remove_decode(val, vlen, &x) == 0) {
		if (!memchr(x.reason, 0, sizeof x.reason) || x.op.kind > SIGN_OP_KIND_MAX ||
		    !memchr(x.op.scope, 0, sizeof x.op.scope))
			abort();
		if (fleet_remove_encode(&x, &buf, &len) == 0) {
			struct fleet_remove x2;
			if (fleet_remove_decode(buf, len, &x2) != 0 || x2.hlc != x.hlc ||
			    x2.uid != x.uid || x2.pid != x.pid || strcmp(x2.reason, x.reason) != 0 ||
			    memcmp(&x2.op, &x.op, sizeof x.op) != 0)
				abort();
			free(buf);
		}
		/* the statement's subject (id hex, reason digest) from outside bytes */
		char idhex[33];
		uint8_t digest[32];
		sign_op_remove_subject(owner_of(data, klen), x.reason, idhex, digest);
		if (strlen(idhex) != 32)
			abort();
	}
	enum fleet_rec_type t;
	(void)fleet_value_type(val, vlen, &t);
	return 0;
}
