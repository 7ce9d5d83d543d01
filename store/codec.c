/*
 * store/codec.c: canonical msgpack encodings of manifests and revisions, and the
 * bounds-checked reader that decodes them.
 *
 * Encoding uses msgpack-c's packer with our own write callback (so every byte buffer comes
 * from the store allocator). Decoding uses a small reader over (pos, end) that checks the
 * bounds before every read and the type of every field: these bytes come from peers and from
 * disk, so a bad input is -EBADMSG, never a crash. Integers are accepted in any width msgpack
 * allows; the encoder always writes the shortest, which is what makes the encoding canonical.
 *
 * Manifest, format 2 (one array of 16 elements, in this order; "s?" is a str or nil, "b" a
 * bool):
 *
 *    0  2 (the format version: always first, so a reader can refuse what it does not know)
 *    1  service s            2  runtime s            3  version s?
 *    4  exec_command s?      5  systemd_unit s?      6  container_image s?
 *    7  container_archive s?
 *    8  health    [ http s?, tcp s?, exec s?, interval_ms u, timeout_ms u, failures u,
 *                   deadline_ms u ]
 *    9  endpoint  nil (no [endpoint]) | [ port u, address s?, weight u, protocol s ("tcp" |
 *                   "http"), drain_ms u ]
 *   10  recovery  [ restarts u, remove_unhealthy b ]
 *   11  git_commit s?        12  git_tag s?          13  git_author s?
 *   14  git_message s?
 *   15  files     [ [ path s, mode u, size u, blob bin32 ], ... sorted by path, unique ]
 *
 * MANIFEST_FIELDS below is that count; a unit test reads the encoding with msgpack-c's own
 * unpacker to keep the header and the body in step (format 1 declared 15 elements and wrote
 * 14, which only this file's reader accepted).
 *
 * A new field means a new format version (the decoder refuses versions it does not know with
 * -STORE_EFORMAT) and new artifact ids: the id is the hash of these bytes, and a decoder that
 * skipped unknown fields would make two different artifacts share one id.
 *
 * Revision:
 *
 *   [ 3 (format), service s, rev u, artifact bin32, kind u, scope s, origin bin16, hlc u,
 *     operator_uid u, operator_pid i, reason s, [ voter bin16, ... ] (certificate),
 *     [ member bin16, ... ] (electorate, sorted, unique), [ kind u, count u, num u, den u ]
 *     (quorum rule), condemns bin32,
 *     [ key bin32, ... ] (the electors' public keys, parallel to the electorate, or empty),
 *     [ [ hlc u, reason u, sig bin64 ], ... ] (the certificate's signed votes, parallel to
 *     it, or empty), cert_subject u, cert_target u, cert_round u, origin_sig bin64,
 *     nil | [ kind u, scope s, target u, ts u, nonce bin16, key bin32, sig bin64 ] (the
 *     operator's signed statement) ]
 *
 * Formats 1 and 2 (without the electors' keys and the signed votes) are refused: a
 * certificate whose signatures cannot be checked proves nothing (agent/base/sign.h).
 */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

#define MANIFEST_FORMAT 2
#define MANIFEST_FIELDS 16
#define HEALTH_FIELDS	7
#define ENDPOINT_FIELDS 5
#define RECOVERY_FIELDS 2
#define REVISION_FORMAT 3
#define REVISION_FIELDS 22
#define MAX_STR		4096
#define MAX_MESSAGE	(1u << 20)
#define MAX_FILES	(1u << 20) /* a decoding bound; store_manifest_validate's limits are lower */
#define MAX_CERT	STORE_ELECT_MAX

/* ---- Reader -------------------------------------------------------------------------------- */

static int rd_need(struct store__rd *r, size_t n)
{
	return (size_t)(r->end - r->p) >= n ? 0 : -EBADMSG;
}

static uint64_t rd_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Read a length-prefixed header: @fix_lo..@fix_hi are fix forms (len in low bits), @b8.. the
 * 8/16/32-bit forms (0 if absent). */
static int rd_len(struct store__rd *r, uint8_t fix_lo, uint8_t fix_hi, uint8_t mask, uint8_t b8,
		  uint8_t b16, uint8_t b32, uint32_t *ret)
{
	if (rd_need(r, 1) < 0)
		return -EBADMSG;
	uint8_t t = *r->p;
	int w;
	if (t >= fix_lo && t <= fix_hi) {
		r->p++;
		*ret = t & mask;
		return 0;
	}
	if (b8 && t == b8)
		w = 1;
	else if (t == b16)
		w = 2;
	else if (t == b32)
		w = 4;
	else
		return -EBADMSG;
	if (rd_need(r, 1 + (size_t)w) < 0)
		return -EBADMSG;
	*ret = (uint32_t)rd_be(r->p + 1, w);
	r->p += 1 + w;
	return 0;
}

int store__rd_array(struct store__rd *r, uint32_t *ret_n)
{
	return rd_len(r, 0x90, 0x9f, 0x0f, 0, 0xdc, 0xdd, ret_n);
}

int store__rd_uint(struct store__rd *r, uint64_t *ret)
{
	if (rd_need(r, 1) < 0)
		return -EBADMSG;
	uint8_t t = *r->p;
	int w;
	if (t <= 0x7f) {
		r->p++;
		*ret = t;
		return 0;
	}
	switch (t) {
	case 0xcc: w = 1; break;
	case 0xcd: w = 2; break;
	case 0xce: w = 4; break;
	case 0xcf: w = 8; break;
	default: return -EBADMSG;
	}
	if (rd_need(r, 1 + (size_t)w) < 0)
		return -EBADMSG;
	*ret = rd_be(r->p + 1, w);
	r->p += 1 + w;
	return 0;
}

int store__rd_int(struct store__rd *r, int64_t *ret)
{
	if (rd_need(r, 1) < 0)
		return -EBADMSG;
	uint8_t t = *r->p;
	if (t >= 0xe0) {
		r->p++;
		*ret = (int8_t)t;
		return 0;
	}
	int w = 0;
	switch (t) {
	case 0xd0: w = 1; break;
	case 0xd1: w = 2; break;
	case 0xd2: w = 4; break;
	case 0xd3: w = 8; break;
	}
	if (w) {
		if (rd_need(r, 1 + (size_t)w) < 0)
			return -EBADMSG;
		uint64_t u = rd_be(r->p + 1, w);
		/* sign-extend from w bytes */
		if (w < 8 && (u >> (8 * w - 1)) & 1)
			u |= ~(uint64_t)0 << (8 * w);
		*ret = (int64_t)u;
		r->p += 1 + w;
		return 0;
	}
	uint64_t u;
	if (store__rd_uint(r, &u) < 0 || u > INT64_MAX)
		return -EBADMSG;
	*ret = (int64_t)u;
	return 0;
}

int store__rd_str(struct store__rd *r, const char **ret, size_t *ret_len)
{
	uint32_t n;
	if (rd_len(r, 0xa0, 0xbf, 0x1f, 0xd9, 0xda, 0xdb, &n) < 0 || rd_need(r, n) < 0)
		return -EBADMSG;
	if (memchr(r->p, 0, n))
		return -EBADMSG;
	*ret = (const char *)r->p;
	*ret_len = n;
	r->p += n;
	return 0;
}

int store__rd_nil(struct store__rd *r)
{
	if (rd_need(r, 1) < 0)
		return -EBADMSG;
	if (*r->p != 0xc0)
		return 0;
	r->p++;
	return 1;
}

int store__rd_bin_exact(struct store__rd *r, void *out, size_t len)
{
	if (rd_need(r, 1) < 0)
		return -EBADMSG;
	uint8_t t = *r->p;
	int w = t == 0xc4 ? 1 : t == 0xc5 ? 2 : t == 0xc6 ? 4 : 0;
	if (!w || rd_need(r, 1 + (size_t)w) < 0)
		return -EBADMSG;
	uint64_t n = rd_be(r->p + 1, w);
	if (n != len)
		return -EBADMSG;
	r->p += 1 + w;
	if (rd_need(r, len) < 0)
		return -EBADMSG;
	memcpy(out, r->p, len);
	r->p += len;
	return 0;
}

/* ---- Reader additions ------------------------------------------------------------------------ */

static int rd_bool(struct store__rd *r, bool *ret)
{
	if (rd_need(r, 1) < 0 || (*r->p != 0xc2 && *r->p != 0xc3))
		return -EBADMSG;
	*ret = *r->p == 0xc3;
	r->p++;
	return 0;
}

static bool manifest_valid(const struct store_manifest *m)
{
	return m->nfiles <= MAX_FILES && store__manifest_check(m, NULL, NULL, NULL, 0) == 0;
}

/* ---- Manifest -------------------------------------------------------------------------------- */

static int pk_str(msgpack_packer *pk, const char *s)
{
	if (!s)
		return msgpack_pack_nil(pk);
	size_t n = strlen(s);
	if (msgpack_pack_str(pk, n) < 0)
		return -1;
	return msgpack_pack_str_body(pk, s, n);
}

static int pk_bin(msgpack_packer *pk, const void *b, size_t n)
{
	if (msgpack_pack_bin(pk, n) < 0)
		return -1;
	return msgpack_pack_bin_body(pk, b, n);
}

int store_manifest_encode(const struct store_manifest *m, uint8_t **ret_buf, size_t *ret_len)
{
	if (!m || !manifest_valid(m))
		return -EINVAL;
	struct store__buf b = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, store__buf_write_cb);
	const struct store_health_policy *h = &m->health;
	const struct store_endpoint *ep = &m->endpoint;
	/* One call per statement: the operands of '|' may be evaluated in any order, and the
	 * order of the calls is the order of the bytes, so of the artifact id. */
	int e = msgpack_pack_array(&pk, MANIFEST_FIELDS);
	e |= msgpack_pack_uint32(&pk, MANIFEST_FORMAT);
	e |= pk_str(&pk, m->service);
	e |= pk_str(&pk, m->runtime);
	e |= pk_str(&pk, m->version);
	e |= pk_str(&pk, m->exec_command);
	e |= pk_str(&pk, m->systemd_unit);
	e |= pk_str(&pk, m->container_image);
	e |= pk_str(&pk, m->container_archive);
	e |= msgpack_pack_array(&pk, HEALTH_FIELDS);
	e |= pk_str(&pk, h->http);
	e |= pk_str(&pk, h->tcp);
	e |= pk_str(&pk, h->exec);
	e |= msgpack_pack_uint32(&pk, h->interval_ms);
	e |= msgpack_pack_uint32(&pk, h->timeout_ms);
	e |= msgpack_pack_uint32(&pk, h->failures);
	e |= msgpack_pack_uint32(&pk, h->deadline_ms);
	if (ep->port == 0) {
		e |= msgpack_pack_nil(&pk); /* validation made every other field zero */
	} else {
		e |= msgpack_pack_array(&pk, ENDPOINT_FIELDS);
		e |= msgpack_pack_uint32(&pk, ep->port);
		e |= pk_str(&pk, ep->address);
		e |= msgpack_pack_uint32(&pk, ep->weight);
		e |= pk_str(&pk, ep->protocol == STORE_ENDPOINT_HTTP ? "http" : "tcp");
		e |= msgpack_pack_uint32(&pk, ep->drain_ms);
	}
	e |= msgpack_pack_array(&pk, RECOVERY_FIELDS);
	e |= msgpack_pack_uint32(&pk, m->recovery.restarts);
	e |= m->recovery.remove_unhealthy ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
	e |= pk_str(&pk, m->git_commit);
	e |= pk_str(&pk, m->git_tag);
	e |= pk_str(&pk, m->git_author);
	e |= pk_str(&pk, m->git_message);
	e |= msgpack_pack_array(&pk, m->nfiles);
	for (size_t i = 0; i < m->nfiles && !e; i++) {
		const struct store_file *f = &m->files[i];
		e |= msgpack_pack_array(&pk, 4);
		e |= pk_str(&pk, f->path);
		e |= msgpack_pack_uint32(&pk, f->mode);
		e |= msgpack_pack_uint64(&pk, f->size);
		e |= pk_bin(&pk, f->blob.b, STORE_ID_LEN);
	}
	if (e) {
		store__free(b.data);
		return -ENOMEM;
	}
	*ret_buf = b.data;
	*ret_len = b.len;
	return 0;
}

/* An optional string: nil -> NULL; else a heap copy. */
static int rd_optstr(struct store__rd *r, size_t max, char **ret)
{
	int n = store__rd_nil(r);
	if (n < 0)
		return n;
	if (n == 1) {
		*ret = NULL;
		return 0;
	}
	const char *s;
	size_t l;
	if (store__rd_str(r, &s, &l) < 0 || l > max)
		return -EBADMSG;
	*ret = store__strndup(s, l);
	return *ret ? 0 : -ENOMEM;
}

static int rd_u32(struct store__rd *r, uint32_t *ret)
{
	uint64_t v;
	if (store__rd_uint(r, &v) < 0 || v > UINT32_MAX)
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

void store_manifest_release(struct store_manifest *m)
{
	if (!m)
		return;
	store__free(m->service);
	store__free(m->runtime);
	store__free(m->version);
	store__free(m->exec_command);
	store__free(m->systemd_unit);
	store__free(m->container_image);
	store__free(m->container_archive);
	store__free(m->health.http);
	store__free(m->health.tcp);
	store__free(m->health.exec);
	store__free(m->endpoint.address);
	store__free(m->git_commit);
	store__free(m->git_tag);
	store__free(m->git_author);
	store__free(m->git_message);
	for (size_t i = 0; m->files && i < m->nfiles; i++)
		store__free(m->files[i].path);
	store__free(m->files);
	memset(m, 0, sizeof(*m));
}

/* The endpoint element: nil (no endpoint) or its array. Port 0 inside the array is refused by
 * validation (it would encode as nil: two encodings for one manifest). */
static int rd_endpoint(struct store__rd *r, struct store_endpoint *ep)
{
	int e = store__rd_nil(r);
	if (e != 0)
		return e < 0 ? e : 0;
	uint32_t n, port, weight;
	const char *p;
	size_t pl;
	if (store__rd_array(r, &n) < 0 || n != ENDPOINT_FIELDS || rd_u32(r, &port) < 0 ||
	    port == 0 || port > 65535)
		return -EBADMSG;
	if ((e = rd_optstr(r, 64, &ep->address)) < 0)
		return e;
	if (rd_u32(r, &weight) < 0 || weight > UINT16_MAX || store__rd_str(r, &p, &pl) < 0)
		return -EBADMSG;
	if (pl == 3 && !memcmp(p, "tcp", 3))
		ep->protocol = STORE_ENDPOINT_TCP;
	else if (pl == 4 && !memcmp(p, "http", 4))
		ep->protocol = STORE_ENDPOINT_HTTP;
	else
		return -EBADMSG;
	if (rd_u32(r, &ep->drain_ms) < 0)
		return -EBADMSG;
	ep->port = (uint16_t)port;
	ep->weight = (uint16_t)weight;
	return 0;
}

int store_manifest_decode(const uint8_t *buf, size_t len, struct store_manifest *ret)
{
	if (!ret || (!buf && len))
		return -EINVAL;
	struct store__rd r = { buf, buf + len };
	struct store_manifest m = { 0 };
	struct store_health_policy *h = &m.health;
	uint32_t n, fmt;
	int e = -EBADMSG;
	/* The version first: a manifest of another format is named as such, whatever its size. */
	if (store__rd_array(&r, &n) < 0 || n == 0 || rd_u32(&r, &fmt) < 0)
		goto fail;
	if (fmt != MANIFEST_FORMAT) {
		e = -STORE_EFORMAT;
		goto fail;
	}
	if (n != MANIFEST_FIELDS)
		goto fail;
	if ((e = rd_optstr(&r, 64, &m.service)) < 0 || (e = rd_optstr(&r, 16, &m.runtime)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.version)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.exec_command)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.systemd_unit)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.container_image)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.container_archive)) < 0)
		goto fail;
	e = -EBADMSG;
	if (store__rd_array(&r, &n) < 0 || n != HEALTH_FIELDS)
		goto fail;
	if ((e = rd_optstr(&r, MAX_STR, &h->http)) < 0 || (e = rd_optstr(&r, MAX_STR, &h->tcp)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &h->exec)) < 0)
		goto fail;
	e = -EBADMSG;
	if (rd_u32(&r, &h->interval_ms) < 0 || rd_u32(&r, &h->timeout_ms) < 0 ||
	    rd_u32(&r, &h->failures) < 0 || rd_u32(&r, &h->deadline_ms) < 0)
		goto fail;
	if ((e = rd_endpoint(&r, &m.endpoint)) < 0)
		goto fail;
	e = -EBADMSG;
	if (store__rd_array(&r, &n) < 0 || n != RECOVERY_FIELDS ||
	    rd_u32(&r, &m.recovery.restarts) < 0 || rd_bool(&r, &m.recovery.remove_unhealthy) < 0)
		goto fail;
	if ((e = rd_optstr(&r, MAX_STR, &m.git_commit)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.git_tag)) < 0 ||
	    (e = rd_optstr(&r, MAX_STR, &m.git_author)) < 0 ||
	    (e = rd_optstr(&r, MAX_MESSAGE, &m.git_message)) < 0)
		goto fail;
	e = -EBADMSG;
	/* Each file takes at least 1+1+1+1+2+32 bytes: refuse counts the input cannot hold before
	 * allocating for them. */
	if (store__rd_array(&r, &n) < 0 || n > MAX_FILES || (size_t)(r.end - r.p) / 38 < n)
		goto fail;
	if (n) {
		m.files = store__calloc(n, sizeof(*m.files));
		if (!m.files) {
			e = -ENOMEM;
			goto fail;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct store_file *f = &m.files[i];
		uint32_t fields;
		const char *p;
		size_t pl;
		e = -EBADMSG;
		if (store__rd_array(&r, &fields) < 0 || fields != 4 || store__rd_str(&r, &p, &pl) < 0 ||
		    pl > MAX_STR)
			goto fail;
		f->path = store__strndup(p, pl);
		if (!f->path) {
			e = -ENOMEM;
			goto fail;
		}
		m.nfiles = i + 1;
		if (rd_u32(&r, &f->mode) < 0 || store__rd_uint(&r, &f->size) < 0 ||
		    store__rd_bin_exact(&r, f->blob.b, STORE_ID_LEN) < 0)
			goto fail;
	}
	m.nfiles = n;
	e = -EBADMSG;
	if (r.p != r.end)
		goto fail;
	/* Decodes cleanly: now the rules every artifact passes (their code, not -EBADMSG, so
	 * a refused peer manifest reaches the operator as words). */
	if ((e = store__manifest_check(&m, NULL, NULL, NULL, 0)) < 0)
		goto fail;
	*ret = m;
	return 0;
fail:
	store_manifest_release(&m);
	return e;
}

int store_manifest_id(const struct store_manifest *m, struct store_id *ret)
{
	uint8_t *buf;
	size_t len;
	int r = store_manifest_encode(m, &buf, &len);
	if (r < 0)
		return r;
	store__hash(buf, len, ret);
	store__free(buf);
	return 0;
}

/* ---- Revision -------------------------------------------------------------------------------- */

static bool scope_valid(const char *scope)
{
	if (scope[0] == '\0')
		return true;
	return strncmp(scope, "site:", 5) == 0 && scope[5] != '\0' && strlen(scope) <= 64;
}

static bool revision_valid(const struct store_revision *r)
{
	if (memchr(r->service, 0, sizeof(r->service)) == NULL ||
	    memchr(r->scope, 0, sizeof(r->scope)) == NULL ||
	    memchr(r->reason, 0, sizeof(r->reason)) == NULL)
		return false;
	if (!store__service_valid(r->service) || !scope_valid(r->scope) || r->rev == 0)
		return false;
	if (r->kind != STORE_REV_DEPLOY && r->kind != STORE_REV_ROLLBACK)
		return false;
	if (r->ncert > MAX_CERT || (r->ncert && !r->cert))
		return false;
	if (r->nelect > MAX_CERT || (r->nelect && !r->elect))
		return false;
	if ((r->elect_keys && !r->nelect) || (r->cert_sigs && !r->ncert))
		return false;
	for (uint32_t i = 0; r->cert_sigs && i < r->ncert; i++)
		if (r->cert_sigs[i].reason > STORE_VOTE_OPERATOR)
			return false;
	for (uint32_t i = 1; i < r->nelect; i++)
		if (memcmp(r->elect[i - 1], r->elect[i], STORE_NODE_ID_LEN) >= 0)
			return false;	/* sorted and unique: one canonical encoding */
	switch (r->quorum.kind) {
	case STORE_QUORUM_MAJORITY:
		return r->quorum.count == 0 && r->quorum.num == 0 && r->quorum.den == 0;
	case STORE_QUORUM_COUNT:
		return r->quorum.count >= 1 && r->quorum.num == 0 && r->quorum.den == 0;
	case STORE_QUORUM_FRACTION:
		return r->quorum.count == 0 && r->quorum.num >= 1 && r->quorum.num <= r->quorum.den;
	default:
		return false;
	}
}

void store_revision_release(struct store_revision *r)
{
	if (!r)
		return;
	store__free(r->cert);
	r->cert = NULL;
	r->ncert = 0;
	store__free(r->elect);
	r->elect = NULL;
	r->nelect = 0;
	store__free(r->cert_sigs);
	r->cert_sigs = NULL;
	store__free(r->elect_keys);
	r->elect_keys = NULL;
}

int store_revision_copy(struct store_revision *dst, const struct store_revision *src)
{
	struct store_revision c = *src;
	c.cert = NULL;
	c.elect = NULL;
	c.cert_sigs = NULL;
	c.elect_keys = NULL;
	if ((src->ncert && !(c.cert = store__calloc(src->ncert, STORE_NODE_ID_LEN))) ||
	    (src->nelect && !(c.elect = store__calloc(src->nelect, STORE_NODE_ID_LEN))) ||
	    (src->ncert && src->cert_sigs &&
	     !(c.cert_sigs = store__calloc(src->ncert, sizeof *c.cert_sigs))) ||
	    (src->nelect && src->elect_keys &&
	     !(c.elect_keys = store__calloc(src->nelect, STORE_KEY_LEN)))) {
		store_revision_release(&c);
		return -ENOMEM;
	}
	if (src->ncert)
		memcpy(c.cert, src->cert, (size_t)src->ncert * STORE_NODE_ID_LEN);
	if (src->nelect)
		memcpy(c.elect, src->elect, (size_t)src->nelect * STORE_NODE_ID_LEN);
	if (c.cert_sigs)
		memcpy(c.cert_sigs, src->cert_sigs, (size_t)src->ncert * sizeof *c.cert_sigs);
	if (c.elect_keys)
		memcpy(c.elect_keys, src->elect_keys, (size_t)src->nelect * STORE_KEY_LEN);
	*dst = c;
	return 0;
}

int store_revision_encode(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len)
{
	if (!r || !revision_valid(r))
		return -EINVAL;
	struct store__buf b = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, store__buf_write_cb);
	/* In sequence, as store_manifest_encode: the call order is the byte order. */
	int e = msgpack_pack_array(&pk, REVISION_FIELDS);
	e |= msgpack_pack_uint32(&pk, REVISION_FORMAT);
	e |= pk_str(&pk, r->service);
	e |= msgpack_pack_uint64(&pk, r->rev);
	e |= pk_bin(&pk, r->artifact.b, STORE_ID_LEN);
	e |= msgpack_pack_uint32(&pk, (uint32_t)r->kind);
	e |= pk_str(&pk, r->scope);
	e |= pk_bin(&pk, r->origin, STORE_NODE_ID_LEN);
	e |= msgpack_pack_uint64(&pk, r->hlc);
	e |= msgpack_pack_uint32(&pk, r->operator_uid);
	e |= msgpack_pack_int32(&pk, r->operator_pid);
	e |= pk_str(&pk, r->reason);
	e |= msgpack_pack_array(&pk, r->ncert);
	for (uint32_t i = 0; i < r->ncert && !e; i++)
		e |= pk_bin(&pk, r->cert[i], STORE_NODE_ID_LEN);
	e |= msgpack_pack_array(&pk, r->nelect);
	for (uint32_t i = 0; i < r->nelect && !e; i++)
		e |= pk_bin(&pk, r->elect[i], STORE_NODE_ID_LEN);
	e |= msgpack_pack_array(&pk, 4);
	e |= msgpack_pack_uint32(&pk, r->quorum.kind);
	e |= msgpack_pack_uint32(&pk, r->quorum.count);
	e |= msgpack_pack_uint32(&pk, r->quorum.num);
	e |= msgpack_pack_uint32(&pk, r->quorum.den);
	e |= pk_bin(&pk, r->condemns.b, STORE_ID_LEN);
	/* format 3: the electors' keys, the certificate's signed votes (in sequence: the call
	 * order is the byte order) */
	e |= msgpack_pack_array(&pk, r->elect_keys ? r->nelect : 0);
	for (uint32_t i = 0; r->elect_keys && i < r->nelect && !e; i++)
		e |= pk_bin(&pk, r->elect_keys[i], STORE_KEY_LEN);
	e |= msgpack_pack_array(&pk, r->cert_sigs ? r->ncert : 0);
	for (uint32_t i = 0; r->cert_sigs && i < r->ncert && !e; i++) {
		e |= msgpack_pack_array(&pk, 3);
		e |= msgpack_pack_uint64(&pk, r->cert_sigs[i].hlc);
		e |= msgpack_pack_uint32(&pk, r->cert_sigs[i].reason);
		e |= pk_bin(&pk, r->cert_sigs[i].sig, STORE_SIG_LEN);
	}
	e |= msgpack_pack_uint64(&pk, r->cert_subject);
	e |= msgpack_pack_uint64(&pk, r->cert_target);
	e |= msgpack_pack_uint32(&pk, r->cert_round);
	e |= pk_bin(&pk, r->origin_sig, STORE_SIG_LEN);
	if (r->op.kind == 0) {
		e |= msgpack_pack_nil(&pk);
	} else {
		e |= msgpack_pack_array(&pk, 7);
		e |= msgpack_pack_uint32(&pk, r->op.kind);
		e |= pk_str(&pk, r->op.scope);
		e |= msgpack_pack_uint64(&pk, r->op.target);
		e |= msgpack_pack_uint64(&pk, r->op.ts_ms);
		e |= pk_bin(&pk, r->op.nonce, sizeof(r->op.nonce));
		e |= pk_bin(&pk, r->op.key, STORE_KEY_LEN);
		e |= pk_bin(&pk, r->op.sig, STORE_SIG_LEN);
	}
	if (e) {
		store__free(b.data);
		return -ENOMEM;
	}
	*ret_buf = b.data;
	*ret_len = b.len;
	return 0;
}

/* A str of at most cap-1 bytes into a fixed array. */
static int rd_fixstr(struct store__rd *r, char *out, size_t cap)
{
	const char *s;
	size_t l;
	if (store__rd_str(r, &s, &l) < 0 || l >= cap)
		return -EBADMSG;
	memcpy(out, s, l);
	out[l] = '\0';
	return 0;
}

int store_revision_decode(const uint8_t *buf, size_t len, struct store_revision *ret)
{
	if (!ret || (!buf && len))
		return -EINVAL;
	struct store__rd r = { buf, buf + len };
	struct store_revision v;
	memset(&v, 0, sizeof(v));
	uint32_t n, fmt, kind;
	int64_t pid;
	int e = -EBADMSG;
	if (store__rd_array(&r, &n) < 0 || n != REVISION_FIELDS || rd_u32(&r, &fmt) < 0 ||
	    fmt != REVISION_FORMAT || rd_fixstr(&r, v.service, sizeof(v.service)) < 0 ||
	    store__rd_uint(&r, &v.rev) < 0 || store__rd_bin_exact(&r, v.artifact.b, STORE_ID_LEN) < 0 ||
	    rd_u32(&r, &kind) < 0 || rd_fixstr(&r, v.scope, sizeof(v.scope)) < 0 ||
	    store__rd_bin_exact(&r, v.origin, STORE_NODE_ID_LEN) < 0 || store__rd_uint(&r, &v.hlc) < 0 ||
	    rd_u32(&r, &v.operator_uid) < 0 || store__rd_int(&r, &pid) < 0 || pid < INT32_MIN ||
	    pid > INT32_MAX || rd_fixstr(&r, v.reason, sizeof(v.reason)) < 0 ||
	    store__rd_array(&r, &n) < 0 || n > MAX_CERT ||
	    (size_t)(r.end - r.p) / (2 + STORE_NODE_ID_LEN) < n)
		goto fail;
	if (kind > STORE_REV_ROLLBACK)
		goto fail;
	v.kind = (enum store_rev_kind)kind;
	v.operator_pid = (int32_t)pid;
	if (n) {
		v.cert = store__calloc(n, STORE_NODE_ID_LEN);
		if (!v.cert) {
			e = -ENOMEM;
			goto fail;
		}
	}
	v.ncert = n;
	for (uint32_t i = 0; i < n; i++)
		if (store__rd_bin_exact(&r, v.cert[i], STORE_NODE_ID_LEN) < 0)
			goto fail;
	if (store__rd_array(&r, &n) < 0 || n > MAX_CERT ||
	    (size_t)(r.end - r.p) / (2 + STORE_NODE_ID_LEN) < n)
		goto fail;
	if (n) {
		v.elect = store__calloc(n, STORE_NODE_ID_LEN);
		if (!v.elect) {
			e = -ENOMEM;
			goto fail;
		}
	}
	v.nelect = n;
	for (uint32_t i = 0; i < n; i++)
		if (store__rd_bin_exact(&r, v.elect[i], STORE_NODE_ID_LEN) < 0)
			goto fail;
	if (store__rd_array(&r, &n) < 0 || n != 4 || rd_u32(&r, &v.quorum.kind) < 0 ||
	    rd_u32(&r, &v.quorum.count) < 0 || rd_u32(&r, &v.quorum.num) < 0 ||
	    rd_u32(&r, &v.quorum.den) < 0 || store__rd_bin_exact(&r, v.condemns.b, STORE_ID_LEN) < 0)
		goto fail;
	/* the electors' keys: none, or one per elector */
	if (store__rd_array(&r, &n) < 0 || (n != 0 && n != v.nelect) ||
	    (size_t)(r.end - r.p) / (2 + STORE_KEY_LEN) < n)
		goto fail;
	if (n && !(v.elect_keys = store__calloc(n, STORE_KEY_LEN))) {
		e = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++)
		if (store__rd_bin_exact(&r, v.elect_keys[i], STORE_KEY_LEN) < 0)
			goto fail;
	/* the certificate's signed votes: none, or one per voter */
	if (store__rd_array(&r, &n) < 0 || (n != 0 && n != v.ncert) ||
	    (size_t)(r.end - r.p) / (4 + STORE_SIG_LEN) < n)
		goto fail;
	if (n && !(v.cert_sigs = store__calloc(n, sizeof *v.cert_sigs))) {
		e = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t f;
		if (store__rd_array(&r, &f) < 0 || f != 3 ||
		    store__rd_uint(&r, &v.cert_sigs[i].hlc) < 0 ||
		    rd_u32(&r, &v.cert_sigs[i].reason) < 0 ||
		    store__rd_bin_exact(&r, v.cert_sigs[i].sig, STORE_SIG_LEN) < 0)
			goto fail;
	}
	if (store__rd_uint(&r, &v.cert_subject) < 0 || store__rd_uint(&r, &v.cert_target) < 0 ||
	    rd_u32(&r, &v.cert_round) < 0 ||
	    store__rd_bin_exact(&r, v.origin_sig, STORE_SIG_LEN) < 0)
		goto fail;
	int isnil = store__rd_nil(&r);
	if (isnil < 0)
		goto fail;
	if (!isnil) {
		uint32_t ok;
		if (store__rd_array(&r, &n) < 0 || n != 7 || rd_u32(&r, &ok) < 0 || ok < 1 ||
		    ok > 2 || rd_fixstr(&r, v.op.scope, sizeof(v.op.scope)) < 0 ||
		    !scope_valid(v.op.scope) || store__rd_uint(&r, &v.op.target) < 0 ||
		    store__rd_uint(&r, &v.op.ts_ms) < 0 ||
		    store__rd_bin_exact(&r, v.op.nonce, sizeof(v.op.nonce)) < 0 ||
		    store__rd_bin_exact(&r, v.op.key, STORE_KEY_LEN) < 0 ||
		    store__rd_bin_exact(&r, v.op.sig, STORE_SIG_LEN) < 0)
			goto fail;
		v.op.kind = (uint8_t)ok;
	}
	if (r.p != r.end || !revision_valid(&v))
		goto fail;
	*ret = v;
	return 0;
fail:
	store_revision_release(&v);
	return e;
}
