/*
 * plugins/json.c: the JSON writer and reader (see json.h).
 *
 * The reader validates everything while tokenizing, so the decoders that run later
 * (json_get_str, json_str_eq) may rely on well-formed escapes and surrogate pairs and only
 * check the output capacity. Recursion is bounded by JSON_MAX_DEPTH.
 */
#include "plugins/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at @s (at most @n bytes available), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, or a surrogate */
	return len;
}

/* ---- Writer ------------------------------------------------------------------------------ */

void json_w_init(struct json_w *w, size_t max)
{
	memset(w, 0, sizeof *w);
	w->max = max ? max : JSON_DEFAULT_MAX_OUT;
}

void json_w_release(struct json_w *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

static void w_fail(struct json_w *w, int err)
{
	if (!w->err)
		w->err = err;
}

static void w_put(struct json_w *w, const char *s, size_t n)
{
	if (w->err)
		return;
	if (n > w->max - w->len) {
		w_fail(w, -EMSGSIZE);
		return;
	}
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n + 1)
			cap *= 2;
		char *nb = realloc(w->buf, cap);
		if (!nb) {
			w_fail(w, -ENOMEM);
			return;
		}
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

/* Before any value: check the position is legal, write the separator. */
static void w_value(struct json_w *w)
{
	if (w->err)
		return;
	if (w->done) {
		w_fail(w, -EINVAL);
		return;
	}
	if (w->depth == 0)
		return;
	unsigned l = w->depth - 1;
	if (w->in_obj[l]) {
		if (!w->want_value)
			w_fail(w, -EINVAL);
		w->want_value = false;
		return;
	}
	if (w->has_item[l])
		w_put(w, ",", 1);
	w->has_item[l] = true;
}

static void w_after_value(struct json_w *w)
{
	if (w->depth == 0)
		w->done = true;
}

static void w_string(struct json_w *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	w_put(w, "\"", 1);
	for (size_t i = 0; i < n && !w->err;) {
		unsigned char c = p[i];
		const char *esc = NULL;
		char u[7];
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			if (c < 0x20) {
				memcpy(u, "\\u00", 4);
				u[4] = hex[c >> 4];
				u[5] = hex[c & 15];
				u[6] = '\0';
				esc = u;
			}
		}
		if (esc) {
			w_put(w, esc, strlen(esc));
			i++;
			continue;
		}
		size_t l = utf8_len(p + i, n - i);
		if (!l) {
			w_fail(w, -EILSEQ);
			return;
		}
		/* Copy the run of plain bytes in one go. */
		size_t j = i + l;
		while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
			j++;
		w_put(w, s + i, j - i);
		i = j;
	}
	w_put(w, "\"", 1);
}

static void w_open(struct json_w *w, bool obj)
{
	w_value(w);
	if (w->err)
		return;
	if (w->depth >= JSON_MAX_DEPTH) {
		w_fail(w, -E2BIG);
		return;
	}
	w_put(w, obj ? "{" : "[", 1);
	w->in_obj[w->depth] = obj;
	w->has_item[w->depth] = false;
	w->depth++;
}

static void w_close(struct json_w *w, bool obj)
{
	if (w->err)
		return;
	if (w->depth == 0 || w->in_obj[w->depth - 1] != obj || w->want_value) {
		w_fail(w, -EINVAL);
		return;
	}
	w->depth--;
	w_put(w, obj ? "}" : "]", 1);
	w_after_value(w);
}

void json_w_obj_begin(struct json_w *w)
{
	w_open(w, true);
}

void json_w_obj_end(struct json_w *w)
{
	w_close(w, true);
}

void json_w_arr_begin(struct json_w *w)
{
	w_open(w, false);
}

void json_w_arr_end(struct json_w *w)
{
	w_close(w, false);
}

void json_w_key(struct json_w *w, const char *key)
{
	if (w->err)
		return;
	if (!key || w->depth == 0 || !w->in_obj[w->depth - 1] || w->want_value) {
		w_fail(w, -EINVAL);
		return;
	}
	unsigned l = w->depth - 1;
	if (w->has_item[l])
		w_put(w, ",", 1);
	w->has_item[l] = true;
	w_string(w, key);
	w_put(w, ":", 1);
	w->want_value = true;
}

void json_w_str(struct json_w *w, const char *s)
{
	if (!s) {
		json_w_null(w);
		return;
	}
	w_value(w);
	w_string(w, s);
	w_after_value(w);
}

void json_w_int(struct json_w *w, int64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof b, "%" PRId64, v);
	w_value(w);
	w_put(w, b, (size_t)n);
	w_after_value(w);
}

void json_w_bool(struct json_w *w, bool v)
{
	w_value(w);
	w_put(w, v ? "true" : "false", v ? 4 : 5);
	w_after_value(w);
}

void json_w_null(struct json_w *w)
{
	w_value(w);
	w_put(w, "null", 4);
	w_after_value(w);
}

int json_w_finish(struct json_w *w, char **ret_buf, size_t *ret_len)
{
	if (!w->err && (!w->done || w->depth != 0))
		w->err = -EINVAL;
	if (w->err)
		return w->err;
	*ret_buf = w->buf;
	if (ret_len)
		*ret_len = w->len;
	w->buf = NULL;
	w->len = w->cap = 0;
	w->done = false;
	return 0;
}

/* ---- Reader: tokenizer ------------------------------------------------------------------- */

struct json_p {
	const unsigned char *s;
	size_t n, i;
	struct json_tok *toks;
	uint32_t ntoks, cap, max;
};

static void skip_ws(struct json_p *p)
{
	while (p->i < p->n &&
	       (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

static int new_tok(struct json_p *p, uint8_t type, size_t start)
{
	if (p->ntoks >= p->max)
		return -E2BIG;
	if (p->ntoks == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 64;
		if (cap > p->max)
			cap = p->max;
		struct json_tok *nt = realloc(p->toks, (size_t)cap * sizeof *nt);
		if (!nt)
			return -ENOMEM;
		p->toks = nt;
		p->cap = cap;
	}
	struct json_tok *t = &p->toks[p->ntoks];
	t->type = type;
	t->start = (uint32_t)start;
	t->len = 0;
	t->size = 0;
	t->end = p->ntoks + 1;
	return (int)p->ntoks++;
}

static int hex4(const unsigned char *s, uint32_t *ret)
{
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		unsigned char c = s[k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -EBADMSG;
	}
	*ret = v;
	return 0;
}

static int scan_string(struct json_p *p)
{
	/* at the opening quote */
	size_t start = ++p->i;
	int t = new_tok(p, JSON_STRING, start);
	if (t < 0)
		return t;
	while (p->i < p->n) {
		unsigned char c = p->s[p->i];
		if (c == '"') {
			p->toks[t].len = (uint32_t)(p->i - start);
			p->i++;
			return t;
		}
		if (c < 0x20)
			return -EBADMSG;
		if (c == '\\') {
			if (p->i + 1 >= p->n)
				return -EBADMSG;
			unsigned char e = p->s[p->i + 1];
			if (strchr("\"\\/bfnrt", e) && e) {
				p->i += 2;
				continue;
			}
			if (e != 'u' || p->i + 6 > p->n)
				return -EBADMSG;
			uint32_t u;
			if (hex4(p->s + p->i + 2, &u) < 0)
				return -EBADMSG;
			p->i += 6;
			if (u >= 0xdc00 && u <= 0xdfff)
				return -EBADMSG; /* lone low surrogate */
			if (u >= 0xd800 && u <= 0xdbff) {
				uint32_t lo;
				if (p->i + 6 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
				    hex4(p->s + p->i + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return -EBADMSG;
				p->i += 6;
			}
			continue;
		}
		size_t l = utf8_len(p->s + p->i, p->n - p->i);
		if (!l)
			return -EBADMSG;
		p->i += l;
	}
	return -EBADMSG;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int scan_number(struct json_p *p)
{
	size_t start = p->i;
	const unsigned char *s = p->s;
	if (p->i < p->n && s[p->i] == '-')
		p->i++;
	if (p->i >= p->n || !is_digit(s[p->i]))
		return -EBADMSG;
	if (s[p->i] == '0')
		p->i++;
	else
		while (p->i < p->n && is_digit(s[p->i]))
			p->i++;
	if (p->i < p->n && s[p->i] == '.') {
		p->i++;
		if (p->i >= p->n || !is_digit(s[p->i]))
			return -EBADMSG;
		while (p->i < p->n && is_digit(s[p->i]))
			p->i++;
	}
	if (p->i < p->n && (s[p->i] == 'e' || s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (s[p->i] == '+' || s[p->i] == '-'))
			p->i++;
		if (p->i >= p->n || !is_digit(s[p->i]))
			return -EBADMSG;
		while (p->i < p->n && is_digit(s[p->i]))
			p->i++;
	}
	int t = new_tok(p, JSON_NUMBER, start);
	if (t >= 0)
		p->toks[t].len = (uint32_t)(p->i - start);
	return t;
}

static int scan_value(struct json_p *p, unsigned depth);

static int scan_container(struct json_p *p, unsigned depth, bool obj)
{
	if (depth >= JSON_MAX_DEPTH)
		return -E2BIG;
	size_t start = p->i++;
	int t = new_tok(p, obj ? JSON_OBJECT : JSON_ARRAY, start);
	if (t < 0)
		return t;
	uint32_t size = 0;
	char close = obj ? '}' : ']';
	skip_ws(p);
	if (p->i < p->n && p->s[p->i] == (unsigned char)close) {
		p->i++;
		goto done;
	}
	for (;;) {
		skip_ws(p);
		if (obj) {
			if (p->i >= p->n || p->s[p->i] != '"')
				return -EBADMSG;
			int k = scan_string(p);
			if (k < 0)
				return k;
			skip_ws(p);
			if (p->i >= p->n || p->s[p->i] != ':')
				return -EBADMSG;
			p->i++;
		}
		int v = scan_value(p, depth + 1);
		if (v < 0)
			return v;
		size++;
		skip_ws(p);
		if (p->i >= p->n)
			return -EBADMSG;
		if (p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->s[p->i] == (unsigned char)close) {
			p->i++;
			break;
		}
		return -EBADMSG;
	}
done:
	p->toks[t].size = size;
	p->toks[t].len = (uint32_t)(p->i - start);
	p->toks[t].end = p->ntoks;
	return t;
}

static int scan_literal(struct json_p *p, const char *lit, uint8_t type)
{
	size_t l = strlen(lit);
	if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0)
		return -EBADMSG;
	int t = new_tok(p, type, p->i);
	if (t >= 0)
		p->toks[t].len = (uint32_t)l;
	p->i += l;
	return t;
}

static int scan_value(struct json_p *p, unsigned depth)
{
	skip_ws(p);
	if (p->i >= p->n)
		return -EBADMSG;
	switch (p->s[p->i]) {
	case '{':
		return scan_container(p, depth, true);
	case '[':
		return scan_container(p, depth, false);
	case '"':
		return scan_string(p);
	case 't':
		return scan_literal(p, "true", JSON_TRUE);
	case 'f':
		return scan_literal(p, "false", JSON_FALSE);
	case 'n':
		return scan_literal(p, "null", JSON_NULL);
	default:
		return scan_number(p);
	}
}

int json_parse(const char *src, size_t len, size_t max_tokens, struct json_doc *ret)
{
	struct json_p p = {
		.s = (const unsigned char *)src,
		.n = len,
		.max = (uint32_t)(max_tokens && max_tokens < UINT32_MAX ? max_tokens
									 : JSON_DEFAULT_MAX_TOKENS),
	};
	int r;
	if (!src || len >= UINT32_MAX)
		return len >= UINT32_MAX ? -E2BIG : -EBADMSG;
	r = scan_value(&p, 0);
	if (r < 0)
		goto out;
	skip_ws(&p);
	if (p.i != p.n) {
		r = -EBADMSG;
		goto out;
	}
	ret->src = src;
	ret->len = len;
	ret->toks = p.toks;
	ret->ntoks = p.ntoks;
	ret->cap = p.cap;
	return 0;
out:
	free(p.toks);
	return r;
}

void json_doc_release(struct json_doc *d)
{
	free(d->toks);
	d->toks = NULL;
	d->ntoks = d->cap = 0;
}

/* ---- Reader: access ---------------------------------------------------------------------- */

static bool valid(const struct json_doc *d, int t)
{
	return d && t >= 0 && (uint32_t)t < d->ntoks;
}

int json_type(const struct json_doc *d, int t)
{
	return valid(d, t) ? d->toks[t].type : 0;
}

int json_size(const struct json_doc *d, int t)
{
	if (!valid(d, t) || (d->toks[t].type != JSON_ARRAY && d->toks[t].type != JSON_OBJECT))
		return -EINVAL;
	return (int)d->toks[t].size;
}

int json_first(const struct json_doc *d, int t)
{
	if (!valid(d, t) || (d->toks[t].type != JSON_ARRAY && d->toks[t].type != JSON_OBJECT))
		return -EINVAL;
	return d->toks[t].size ? t + 1 : -ENOENT;
}

int json_next(const struct json_doc *d, int parent, int t)
{
	if (!valid(d, parent) || !valid(d, t) || t <= parent)
		return -EINVAL;
	uint32_t n = d->toks[t].end;
	return n < d->toks[parent].end ? (int)n : -ENOENT;
}

/*
 * Decode the string token @t into @out (if non-NULL, capacity @cap) or compare it with @cmp.
 * Returns the decoded length, -ENOSPC, -EILSEQ (an escaped NUL), or for comparisons 1/0.
 * The tokenizer validated escapes and pairs already.
 */
static int decode_str(const struct json_doc *d, int t, char *out, size_t cap, const char *cmp)
{
	const unsigned char *s = (const unsigned char *)d->src + d->toks[t].start;
	size_t n = d->toks[t].len, o = 0, cl = cmp ? strlen(cmp) : 0;
	for (size_t i = 0; i < n;) {
		unsigned char b[4];
		size_t bl = 0;
		if (s[i] != '\\') {
			b[bl++] = s[i++];
		} else {
			unsigned char e = s[i + 1];
			i += 2;
			switch (e) {
			case 'b': b[bl++] = '\b'; break;
			case 'f': b[bl++] = '\f'; break;
			case 'n': b[bl++] = '\n'; break;
			case 'r': b[bl++] = '\r'; break;
			case 't': b[bl++] = '\t'; break;
			case 'u': {
				uint32_t u = 0, lo = 0;
				hex4(s + i, &u);
				i += 4;
				if (u >= 0xd800 && u <= 0xdbff) {
					hex4(s + i + 2, &lo);
					i += 6;
					u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
				}
				if (u == 0)
					return -EILSEQ;
				if (u < 0x80) {
					b[bl++] = (unsigned char)u;
				} else if (u < 0x800) {
					b[bl++] = (unsigned char)(0xc0 | (u >> 6));
					b[bl++] = (unsigned char)(0x80 | (u & 0x3f));
				} else if (u < 0x10000) {
					b[bl++] = (unsigned char)(0xe0 | (u >> 12));
					b[bl++] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
					b[bl++] = (unsigned char)(0x80 | (u & 0x3f));
				} else {
					b[bl++] = (unsigned char)(0xf0 | (u >> 18));
					b[bl++] = (unsigned char)(0x80 | ((u >> 12) & 0x3f));
					b[bl++] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
					b[bl++] = (unsigned char)(0x80 | (u & 0x3f));
				}
				break;
			}
			default: b[bl++] = e; break; /* " \ / */
			}
		}
		if (cmp) {
			if (o + bl > cl || memcmp(cmp + o, b, bl) != 0)
				return 0;
		} else {
			if (o + bl >= cap) {
				if (cap)
					out[0] = '\0';
				return -ENOSPC;
			}
			memcpy(out + o, b, bl);
		}
		o += bl;
	}
	if (cmp)
		return o == cl;
	if (o >= cap)
		return -ENOSPC;
	out[o] = '\0';
	return (int)o;
}

bool json_str_eq(const struct json_doc *d, int t, const char *s)
{
	if (!valid(d, t) || d->toks[t].type != JSON_STRING || !s)
		return false;
	return decode_str(d, t, NULL, 0, s) == 1;
}

int json_obj_get(const struct json_doc *d, int obj, const char *key)
{
	if (!valid(d, obj) || d->toks[obj].type != JSON_OBJECT || !key)
		return -EINVAL;
	int found = -ENOENT;
	uint32_t k = (uint32_t)obj + 1;
	while (k < d->toks[obj].end) {
		uint32_t v = k + 1;
		if (json_str_eq(d, (int)k, key))
			found = (int)v;
		k = d->toks[v].end;
	}
	return found;
}

int json_arr_at(const struct json_doc *d, int arr, uint32_t i)
{
	if (!valid(d, arr) || d->toks[arr].type != JSON_ARRAY)
		return -EINVAL;
	if (i >= d->toks[arr].size)
		return -ENOENT;
	uint32_t k = (uint32_t)arr + 1;
	while (i--)
		k = d->toks[k].end;
	return (int)k;
}

int json_path(const struct json_doc *d, int from, const char *path)
{
	if (!valid(d, from) || !path)
		return -EINVAL;
	int t = from;
	const char *seg = path;
	while (*seg) {
		const char *e = strchr(seg, '.');
		size_t l = e ? (size_t)(e - seg) : strlen(seg);
		char key[256];
		if (l == 0 || l >= sizeof key)
			return -EINVAL;
		memcpy(key, seg, l);
		key[l] = '\0';
		if (d->toks[t].type == JSON_OBJECT) {
			t = json_obj_get(d, t, key);
		} else if (d->toks[t].type == JSON_ARRAY) {
			char *end;
			unsigned long idx = strtoul(key, &end, 10);
			if (*end || !is_digit((unsigned char)key[0]) || idx > UINT32_MAX)
				return -ENOENT;
			t = json_arr_at(d, t, (uint32_t)idx);
		} else {
			return -EINVAL;
		}
		if (t < 0)
			return t;
		seg += l;
		if (*seg == '.')
			seg++;
	}
	return t;
}

int json_get_str(const struct json_doc *d, int t, char *out, size_t cap)
{
	if (t < 0)
		return t;
	if (!valid(d, t) || d->toks[t].type != JSON_STRING || !out || !cap)
		return -EINVAL;
	int r = decode_str(d, t, out, cap, NULL);
	if (r < 0)
		out[0] = '\0';
	return r;
}

int json_get_i64(const struct json_doc *d, int t, int64_t *ret)
{
	if (t < 0)
		return t;
	if (!valid(d, t) || d->toks[t].type != JSON_NUMBER)
		return -EINVAL;
	const char *s = d->src + d->toks[t].start;
	size_t n = d->toks[t].len, i = 0;
	bool neg = s[0] == '-';
	if (neg)
		i++;
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return -EINVAL; /* fraction or exponent */
		unsigned dgt = (unsigned)(s[i] - '0');
		if (v > (lim - dgt) / 10)
			return -ERANGE;
		v = v * 10 + dgt;
	}
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int json_get_bool(const struct json_doc *d, int t, bool *ret)
{
	if (t < 0)
		return t;
	if (!valid(d, t) || (d->toks[t].type != JSON_TRUE && d->toks[t].type != JSON_FALSE))
		return -EINVAL;
	*ret = d->toks[t].type == JSON_TRUE;
	return 0;
}
