/*
 * agent/ctl/ctl_proto.c: control-socket framing, request/response codec and JSON printing.
 * See ctl_proto.h for the wire format and the rules every decoder here follows.
 */
#include "agent/ctl/ctl_proto.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ctl_err_names[CTL_E__COUNT] = {
	[CTL_E_NONE] = "none",
	[CTL_E_BAD_FRAME] = "bad_frame",
	[CTL_E_FRAME_TOO_LARGE] = "frame_too_large",
	[CTL_E_UNKNOWN_OP] = "unknown_op",
	[CTL_E_BAD_REQUEST] = "bad_request",
	[CTL_E_NOT_FOUND] = "not_found",
	[CTL_E_AMBIGUOUS] = "ambiguous",
	[CTL_E_INVALID_ARTIFACT] = "invalid_artifact",
	[CTL_E_NOT_A_REPO] = "not_a_repo",
	[CTL_E_NO_SUCH_REF] = "no_such_ref",
	[CTL_E_TOO_BIG] = "too_big",
	[CTL_E_ESCAPES_TREE] = "escapes_tree",
	[CTL_E_NO_SPACE] = "no_space",
	[CTL_E_INTERNAL] = "internal",
	[CTL_E_BUSY] = "busy",
	[CTL_E_TIMEOUT] = "timeout",
	[CTL_E_SHUTTING_DOWN] = "shutting_down",
	[CTL_E_PERMISSION_DENIED] = "permission_denied",
	[CTL_E_CONDEMNED] = "condemned",
	[CTL_E_NO_REVISION] = "no_revision",
};

const char *ctl_err_name(enum ctl_err e)
{
	if ((unsigned)e >= CTL_E__COUNT || !ctl_err_names[e])
		return "internal";
	return ctl_err_names[e];
}

int ctl_err_from_name(const char *name, size_t len)
{
	for (int i = 0; i < CTL_E__COUNT; i++)
		if (strlen(ctl_err_names[i]) == len && memcmp(ctl_err_names[i], name, len) == 0)
			return i;
	return -ENOENT;
}

/* ---- Framing -------------------------------------------------------------------------------- */

int ctl_frame_peek(const uint8_t *buf, size_t len, uint32_t max, uint32_t *ret_len)
{
	if (len < CTL_FRAME_HDR)
		return 0;
	uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
		     (uint32_t)buf[3];
	if (n == 0)
		return -EBADMSG;
	*ret_len = n;
	if (n > max)
		return -EMSGSIZE;
	return 1;
}

void ctl_frame_put_header(uint8_t hdr[CTL_FRAME_HDR], uint32_t len)
{
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
}

/* ---- Validation ----------------------------------------------------------------------------- */

static uint64_t be_read(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * Walk one object at *pp. Every length is checked against @end before it is used, and every
 * container's declared count against the bytes left (each element takes at least one byte), so
 * the walk is linear in the input and never reads past it.
 */
static int mp_check(const uint8_t **pp, const uint8_t *end, int depth)
{
	const uint8_t *p = *pp;
	if (p >= end)
		return -EBADMSG;
	uint8_t t = *p++;
	uint64_t skip = 0;	/* payload bytes after the header */
	uint64_t count = 0;	/* child objects */
	bool container = false;

	if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
		/* fixint, nil, bool: header only */
	} else if (t >= 0x80 && t <= 0x8f) {
		count = 2u * (t & 0x0f);
		container = true;
	} else if (t >= 0x90 && t <= 0x9f) {
		count = t & 0x0f;
		container = true;
	} else if (t >= 0xa0 && t <= 0xbf) {
		skip = t & 0x1f;
	} else {
		unsigned lenlen = 0;
		switch (t) {
		case 0xc1:
			return -EBADMSG; /* never used */
		case 0xc4: case 0xd9: lenlen = 1; break;	/* bin8, str8 */
		case 0xc5: case 0xda: lenlen = 2; break;	/* bin16, str16 */
		case 0xc6: case 0xdb: lenlen = 4; break;	/* bin32, str32 */
		case 0xc7: lenlen = 1; skip = 1; break;		/* ext8: len, type */
		case 0xc8: lenlen = 2; skip = 1; break;
		case 0xc9: lenlen = 4; skip = 1; break;
		case 0xca: skip = 4; break;
		case 0xcb: skip = 8; break;
		case 0xcc: case 0xd0: skip = 1; break;
		case 0xcd: case 0xd1: skip = 2; break;
		case 0xce: case 0xd2: skip = 4; break;
		case 0xcf: case 0xd3: skip = 8; break;
		case 0xd4: skip = 2; break;			/* fixext1: type + 1 */
		case 0xd5: skip = 3; break;
		case 0xd6: skip = 5; break;
		case 0xd7: skip = 9; break;
		case 0xd8: skip = 17; break;
		case 0xdc: lenlen = 2; container = true; break;
		case 0xdd: lenlen = 4; container = true; break;
		case 0xde: lenlen = 2; container = true; break;
		case 0xdf: lenlen = 4; container = true; break;
		default:
			return -EBADMSG;
		}
		if (lenlen) {
			if ((size_t)(end - p) < lenlen)
				return -EBADMSG;
			uint64_t n = be_read(p, lenlen);
			p += lenlen;
			if (container)
				count = (t == 0xde || t == 0xdf) ? 2 * n : n;
			else
				skip += n;
		}
	}
	if (skip > (uint64_t)(end - p))
		return -EBADMSG;
	p += skip;
	if (container) {
		if (depth >= CTL_MAX_DEPTH)
			return -EBADMSG;
		if (count > (uint64_t)(end - p))
			return -EBADMSG;
		for (uint64_t i = 0; i < count; i++) {
			int r = mp_check(&p, end, depth + 1);
			if (r < 0)
				return r;
		}
	}
	*pp = p;
	return 0;
}

int ctl_msgpack_check(const uint8_t *buf, size_t len, size_t *ret_used)
{
	const uint8_t *p = buf;
	if (!buf || len == 0)
		return -EBADMSG;
	int r = mp_check(&p, buf + len, 0);
	if (r < 0)
		return r;
	*ret_used = (size_t)(p - buf);
	return 0;
}

/* ---- Decoding ------------------------------------------------------------------------------- */

int ctl_msg_decode(const uint8_t *buf, size_t len, struct ctl_msg *ret)
{
	size_t used = 0, off = 0;
	memset(ret, 0, sizeof *ret);
	if (ctl_msgpack_check(buf, len, &used) < 0 || used != len)
		return -EBADMSG;
	msgpack_unpacked_init(&ret->up);
	ret->inited = true;
	msgpack_unpack_return ur = msgpack_unpack_next(&ret->up, (const char *)buf, len, &off);
	if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
		ctl_msg_release(ret);
		return ur == MSGPACK_UNPACK_NOMEM_ERROR ? -ENOMEM : -EBADMSG;
	}
	ret->root = &ret->up.data;
	return 0;
}

void ctl_msg_release(struct ctl_msg *m)
{
	if (!m)
		return;
	if (m->inited)
		msgpack_unpacked_destroy(&m->up);
	m->inited = false;
	m->root = NULL;
}

const msgpack_object *ctl_map_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (ctl_obj_streq(&kv->key, key))
			return &kv->val;
	}
	return NULL;
}

bool ctl_obj_streq(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
	       memcmp(o->via.str.ptr, s, n) == 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

int ctl_request_decode(const uint8_t *buf, size_t len, struct ctl_request *ret, char *err,
		       size_t errlen)
{
	struct ctl_request r;
	memset(&r, 0, sizeof r);
	int rc = ctl_msg_decode(buf, len, &r.msg);
	if (rc < 0) {
		set_err(err, errlen, rc == -ENOMEM ? "out of memory"
						   : "payload is not one well-formed msgpack object");
		memset(ret, 0, sizeof *ret);
		return rc;
	}
	rc = -EPROTO;
	if (r.msg.root->type != MSGPACK_OBJECT_MAP) {
		set_err(err, errlen, "request is not a map");
		goto out;
	}
	const msgpack_object *op = ctl_map_get(r.msg.root, "op");
	if (!op) {
		set_err(err, errlen, "request has no \"op\"");
		goto out;
	}
	if (op->type != MSGPACK_OBJECT_STR || op->via.str.size == 0 ||
	    op->via.str.size > CTL_OP_MAX || memchr(op->via.str.ptr, 0, op->via.str.size)) {
		set_err(err, errlen, "\"op\" is not a non-empty string of at most 64 bytes");
		goto out;
	}
	memcpy(r.op, op->via.str.ptr, op->via.str.size);
	r.op[op->via.str.size] = 0;
	const msgpack_object *args = ctl_map_get(r.msg.root, "args");
	if (args && args->type != MSGPACK_OBJECT_NIL && args->type != MSGPACK_OBJECT_MAP) {
		set_err(err, errlen, "\"args\" is not a map");
		goto out;
	}
	r.args = args && args->type == MSGPACK_OBJECT_MAP ? args : NULL;
	rc = 0;
out:
	if (rc < 0) {
		ctl_msg_release(&r.msg);
		memset(ret, 0, sizeof *ret);
	} else {
		*ret = r;
		/* root points into r.msg.up, which moved: re-point it and everything under it. */
		ret->msg.root = &ret->msg.up.data;
		ret->args = r.args ? ctl_map_get(ret->msg.root, "args") : NULL;
	}
	return rc;
}

void ctl_request_release(struct ctl_request *r)
{
	if (!r)
		return;
	ctl_msg_release(&r->msg);
	r->args = NULL;
}

int ctl_arg_str(const struct ctl_request *r, const char *key, char **ret)
{
	const msgpack_object *o = ctl_map_get(r->args, key);
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return -ENOENT;
	if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size > 4096 ||
	    memchr(o->via.str.ptr, 0, o->via.str.size))
		return -EINVAL;
	char *s = malloc(o->via.str.size + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, o->via.str.ptr, o->via.str.size);
	s[o->via.str.size] = 0;
	*ret = s;
	return 0;
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
	size_t n = 0;
	if (o && o->type == MSGPACK_OBJECT_STR) {
		n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
		memcpy(dst, o->via.str.ptr, n);
	}
	dst[n] = 0;
	/* A NUL inside would silently truncate: make it visible instead. */
	for (size_t i = 0; i < n; i++)
		if (dst[i] == 0)
			dst[i] = '?';
}

static const msgpack_object ctl_nil_object = {.type = MSGPACK_OBJECT_NIL};

int ctl_response_decode(const uint8_t *buf, size_t len, struct ctl_response *ret)
{
	struct ctl_response r;
	memset(&r, 0, sizeof r);
	int rc = ctl_msg_decode(buf, len, &r.msg);
	if (rc < 0) {
		memset(ret, 0, sizeof *ret);
		return rc;
	}
	rc = -EBADMSG;
	const msgpack_object *root = &r.msg.up.data;
	if (root->type != MSGPACK_OBJECT_MAP)
		goto out;
	const msgpack_object *ok = ctl_map_get(root, "ok");
	if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN)
		goto out;
	r.ok = ok->via.boolean;
	if (!r.ok) {
		const msgpack_object *e = ctl_map_get(root, "error");
		if (!e || e->type != MSGPACK_OBJECT_STR || e->via.str.size == 0)
			goto out;
		if (ctl_err_from_name(e->via.str.ptr, e->via.str.size) < 0 &&
		    e->via.str.size >= sizeof r.error)
			snprintf(r.error, sizeof r.error, "internal");
		else
			copy_str(r.error, sizeof r.error, e);
		copy_str(r.message, sizeof r.message, ctl_map_get(root, "message"));
	}
	rc = 0;
out:
	if (rc < 0) {
		ctl_msg_release(&r.msg);
		memset(ret, 0, sizeof *ret);
		return rc;
	}
	*ret = r;
	ret->msg.root = &ret->msg.up.data;
	if (ret->ok) {
		ret->result = ctl_map_get(ret->msg.root, "result");
		if (!ret->result)
			ret->result = &ctl_nil_object;
	}
	return 0;
}

void ctl_response_release(struct ctl_response *r)
{
	if (!r)
		return;
	ctl_msg_release(&r->msg);
	r->result = NULL;
}

/* ---- Encoding ------------------------------------------------------------------------------- */

void ctl_enc_init(struct ctl_enc *e)
{
	msgpack_sbuffer_init(&e->sb);
	msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
	e->err = 0;
	static const char zero[CTL_FRAME_HDR];
	if (msgpack_sbuffer_write(&e->sb, zero, sizeof zero) < 0)
		e->err = -ENOMEM;
}

void ctl_enc_release(struct ctl_enc *e)
{
	if (!e)
		return;
	msgpack_sbuffer_destroy(&e->sb);
	memset(&e->sb, 0, sizeof e->sb);
	e->err = 0;
}

void ctl_enc_reset(struct ctl_enc *e)
{
	if (e->sb.size >= CTL_FRAME_HDR) {
		e->sb.size = CTL_FRAME_HDR;
		e->err = 0;
	} else {
		ctl_enc_release(e);
		ctl_enc_init(e);
	}
}

#define ENC(e, call)                          \
	do {                                  \
		if ((e)->err == 0 && (call) < 0) \
			(e)->err = -ENOMEM;   \
	} while (0)

void ctl_enc_map(struct ctl_enc *e, uint32_t n)
{
	ENC(e, msgpack_pack_map(&e->pk, n));
}

void ctl_enc_array(struct ctl_enc *e, uint32_t n)
{
	ENC(e, msgpack_pack_array(&e->pk, n));
}

void ctl_enc_strn(struct ctl_enc *e, const char *s, size_t n)
{
	if (n > UINT32_MAX) {
		e->err = e->err ? e->err : -EMSGSIZE;
		return;
	}
	ENC(e, msgpack_pack_str(&e->pk, n));
	if (n)
		ENC(e, msgpack_pack_str_body(&e->pk, s, n));
}

void ctl_enc_str(struct ctl_enc *e, const char *s)
{
	if (!s)
		ctl_enc_nil(e);
	else
		ctl_enc_strn(e, s, strlen(s));
}

void ctl_enc_uint(struct ctl_enc *e, uint64_t v)
{
	ENC(e, msgpack_pack_uint64(&e->pk, v));
}

void ctl_enc_int(struct ctl_enc *e, int64_t v)
{
	ENC(e, msgpack_pack_int64(&e->pk, v));
}

void ctl_enc_bool(struct ctl_enc *e, bool v)
{
	ENC(e, v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk));
}

void ctl_enc_nil(struct ctl_enc *e)
{
	ENC(e, msgpack_pack_nil(&e->pk));
}

void ctl_enc_bin(struct ctl_enc *e, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		e->err = e->err ? e->err : -EMSGSIZE;
		return;
	}
	ENC(e, msgpack_pack_bin(&e->pk, n));
	if (n)
		ENC(e, msgpack_pack_bin_body(&e->pk, p, n));
}

void ctl_enc_raw(struct ctl_enc *e, const void *p, size_t n)
{
	if (n)
		ENC(e, msgpack_sbuffer_write(&e->sb, p, n));
}

const uint8_t *ctl_enc_payload(const struct ctl_enc *e, size_t *ret_len)
{
	if (!e->sb.data || e->sb.size < CTL_FRAME_HDR) {
		*ret_len = 0;
		return NULL;
	}
	*ret_len = e->sb.size - CTL_FRAME_HDR;
	return (const uint8_t *)e->sb.data + CTL_FRAME_HDR;
}

void ctl_enc_object(struct ctl_enc *e, const msgpack_object *o)
{
	ENC(e, msgpack_pack_object(&e->pk, *o));
}

void ctl_enc_request(struct ctl_enc *e, const char *op, bool has_args)
{
	ctl_enc_map(e, has_args ? 2 : 1);
	ctl_enc_str(e, "op");
	ctl_enc_str(e, op);
	if (has_args)
		ctl_enc_str(e, "args");
}

void ctl_enc_ok(struct ctl_enc *e)
{
	ctl_enc_map(e, 2);
	ctl_enc_str(e, "ok");
	ctl_enc_bool(e, true);
	ctl_enc_str(e, "result");
}

void ctl_enc_error(struct ctl_enc *e, enum ctl_err err, const char *msg)
{
	ctl_enc_map(e, 3);
	ctl_enc_str(e, "ok");
	ctl_enc_bool(e, false);
	ctl_enc_str(e, "error");
	ctl_enc_str(e, ctl_err_name(err));
	ctl_enc_str(e, "message");
	ctl_enc_str(e, msg ? msg : ctl_err_name(err));
}

void ctl_enc_ok_array(struct ctl_enc *e, const struct ctl_enc *items, uint32_t n)
{
	size_t len;
	const uint8_t *p = ctl_enc_payload(items, &len);
	ctl_enc_ok(e);
	ctl_enc_array(e, n);
	ctl_enc_raw(e, p, len);
}

void ctl_enc_fail(struct ctl_enc *e, enum ctl_err err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	ctl_enc_reset(e);
	ctl_enc_error(e, err, msg);
}

void ctl_kv_str(struct ctl_enc *e, const char *k, const char *v)
{
	ctl_enc_str(e, k);
	ctl_enc_str(e, v);
}

void ctl_kv_uint(struct ctl_enc *e, const char *k, uint64_t v)
{
	ctl_enc_str(e, k);
	ctl_enc_uint(e, v);
}

void ctl_kv_bool(struct ctl_enc *e, const char *k, bool v)
{
	ctl_enc_str(e, k);
	ctl_enc_bool(e, v);
}

int ctl_enc_finish(struct ctl_enc *e, const uint8_t **ret_buf, size_t *ret_len)
{
	if (e->err)
		return e->err;
	if (!e->sb.data || e->sb.size < CTL_FRAME_HDR)
		return -ENOMEM;
	size_t payload = e->sb.size - CTL_FRAME_HDR;
	if (payload > UINT32_MAX)
		return -EMSGSIZE;
	ctl_frame_put_header((uint8_t *)e->sb.data, (uint32_t)payload);
	*ret_buf = (const uint8_t *)e->sb.data;
	*ret_len = e->sb.size;
	return 0;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at @p (1..4), or 0 if invalid (RFC 3629, no surrogates,
 * no overlongs). */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if ((c & 0xe0) == 0xc0) {
		len = 2, cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, cp = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void json_str(FILE *f, const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	fputc('"', f);
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		switch (c) {
		case '"': fputs("\\\"", f); i++; continue;
		case '\\': fputs("\\\\", f); i++; continue;
		case '\n': fputs("\\n", f); i++; continue;
		case '\r': fputs("\\r", f); i++; continue;
		case '\t': fputs("\\t", f); i++; continue;
		case '\b': fputs("\\b", f); i++; continue;
		case '\f': fputs("\\f", f); i++; continue;
		default: break;
		}
		if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
			continue;
		}
		size_t l = utf8_seq(p + i, n - i);
		if (l == 0) {
			fputs("\\ufffd", f);
			i++;
			continue;
		}
		fwrite(p + i, 1, l, f);
		i += l;
	}
	fputc('"', f);
}

static void json_hex(FILE *f, const char *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", (uint8_t)p[i]);
	fputc('"', f);
}

static void json_indent(FILE *f, int indent, int level)
{
	if (indent <= 0)
		return;
	fputc('\n', f);
	for (int i = 0; i < indent * level; i++)
		fputc(' ', f);
}

static void json_scalar_key(FILE *f, const msgpack_object *k);

static void json_value(FILE *f, const msgpack_object *o, int indent, int level)
{
	if (level > 64) {
		fputs("null", f);
		return;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		fputs("null", f);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		fputs(o->via.boolean ? "true" : "false", f);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		fprintf(f, "%llu", (unsigned long long)o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		fprintf(f, "%lld", (long long)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (isfinite(o->via.f64))
			fprintf(f, "%.17g", o->via.f64);
		else
			fputs("null", f);
		break;
	case MSGPACK_OBJECT_STR:
		json_str(f, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		json_hex(f, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		json_hex(f, o->via.ext.ptr, o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', f);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputc(',', f);
			json_indent(f, indent, level + 1);
			json_value(f, &o->via.array.ptr[i], indent, level + 1);
		}
		if (o->via.array.size)
			json_indent(f, indent, level);
		fputc(']', f);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', f);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (i)
				fputc(',', f);
			json_indent(f, indent, level + 1);
			if (kv->key.type == MSGPACK_OBJECT_STR)
				json_str(f, kv->key.via.str.ptr, kv->key.via.str.size);
			else
				json_scalar_key(f, &kv->key);
			fputs(indent > 0 ? ": " : ":", f);
			json_value(f, &kv->val, indent, level + 1);
		}
		if (o->via.map.size)
			json_indent(f, indent, level);
		fputc('}', f);
		break;
	default:
		fputs("null", f);
		break;
	}
}

/* A non-string key: its compact JSON text, as a string (JSON keys must be strings). */
static void json_scalar_key(FILE *f, const msgpack_object *k)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) {
		fputs("\"?\"", f);
		return;
	}
	json_value(m, k, 0, 1);
	if (fclose(m) != 0 || !buf) {
		free(buf);
		fputs("\"?\"", f);
		return;
	}
	json_str(f, buf, len);
	free(buf);
}

int ctl_json_write(FILE *f, const msgpack_object *o, int indent)
{
	json_value(f, o, indent, 0);
	return ferror(f) ? -EIO : 0;
}

/* ---- Parsing helpers ------------------------------------------------------------------------ */

int ctl_parse_duration_ms(const char *s, uint64_t *ret_ms)
{
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	/* Only plain decimal numbers: strtod also takes "0x10", "inf", "1e3". */
	for (const char *c = s; c < end; c++)
		if (!((*c >= '0' && *c <= '9') || *c == '.'))
			return -EINVAL;
	double mul;
	if (*end == 0 || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -EINVAL;
	double ms = v * mul;
	if (ms > 9007199254740992.0) /* 2^53: beyond that doubles lose integers */
		return -EINVAL;
	*ret_ms = (uint64_t)ms;
	return 0;
}

int ctl_parse_size(const char *s, uint64_t *ret)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || end == s)
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	case 'B': break;
	default: return -EINVAL;
	}
	if (*end && strcmp(end, "B") != 0 && strcmp(end, "iB") != 0)
		return -EINVAL;
	if (strcmp(end, "iB") == 0 && shift == 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}
