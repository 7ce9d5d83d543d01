/*
 * traffic/parse.c: HAProxy's runtime-API answers into structs (`show servers state`,
 * `show stat` CSV, and the success-or-not of one `set` command). Pure, bounds-checked: every
 * read is against (pos, end); nothing assumes a NUL terminator in the input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traffic/traffic.h"
#include "traffic/traffic_int.h"

#define STATE_COLS_MAX 64	/* columns of `show servers state` we accept (2.6 has 25) */
#define STAT_COLS_MAX  256	/* columns of `show stat` we accept (2.6 has 119) */
#define FIELD_MAX      1024	/* longest single field we look at */

void traffic__err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int traffic__ip_parse(const char *s, struct traffic__ip *ret)
{
	struct traffic__ip ip;
	memset(&ip, 0, sizeof ip);
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, ip.b) == 1)
		ip.family = 4;
	else if (inet_pton(AF_INET6, s, ip.b) == 1)
		ip.family = 6;
	else
		return -EINVAL;
	*ret = ip;
	return 0;
}

static bool name_byte_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == ':' || c == '-';
}

bool traffic__name_ok(const char *s, bool allow_empty)
{
	if (!s)
		return allow_empty;
	size_t n = strlen(s);
	if (n == 0)
		return allow_empty;
	if (n > TRAFFIC_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_byte_ok((unsigned char)s[i]))
			return false;
	return true;
}

/* A view into the input. */
struct span {
	const char *p;
	size_t n;
};

static bool span_eq(struct span s, const char *lit)
{
	size_t l = strlen(lit);
	return s.n == l && memcmp(s.p, lit, l) == 0;
}

/* Next line of [*pos, end) without its '\n' (and a '\r' before it). False at the end. */
static bool next_line(const char **pos, const char *end, struct span *ret)
{
	if (*pos >= end)
		return false;
	const char *nl = memchr(*pos, '\n', (size_t)(end - *pos));
	const char *stop = nl ? nl : end;
	ret->p = *pos;
	ret->n = (size_t)(stop - *pos);
	if (ret->n > 0 && ret->p[ret->n - 1] == '\r')
		ret->n--;
	*pos = nl ? nl + 1 : end;
	return true;
}

static bool span_blank(struct span s)
{
	for (size_t i = 0; i < s.n; i++)
		if (s.p[i] != ' ' && s.p[i] != '\t')
			return false;
	return true;
}

/* Unsigned decimal, digits only, at most @max. */
static bool span_uint(struct span s, uint64_t max, uint64_t *ret)
{
	if (s.n == 0 || s.n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < '0' || c > '9')
			return false;
		if (v > (UINT64_MAX - (c - '0')) / 10)
			return false;
		v = v * 10 + (c - '0');
	}
	if (v > max)
		return false;
	*ret = v;
	return true;
}

static bool span_copy_name(struct span s, char *out, size_t cap)
{
	if (s.n == 0 || s.n >= cap || s.n > TRAFFIC_NAME_MAX)
		return false;
	for (size_t i = 0; i < s.n; i++)
		if (!name_byte_ok((unsigned char)s.p[i]))
			return false;
	memcpy(out, s.p, s.n);
	out[s.n] = '\0';
	return true;
}

/* Printable text, cut to fit @cap (status, addr of show stat). */
static bool span_copy_text(struct span s, char *out, size_t cap)
{
	size_t n = s.n < cap - 1 ? s.n : cap - 1;
	for (size_t i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	memcpy(out, s.p, n);
	out[n] = '\0';
	return true;
}

/* Quote a span for an error message: printable bytes only, cut at 40. */
static const char *span_show(struct span s, char *buf, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < s.n && o + 4 < cap && i < 40; i++) {
		unsigned char c = (unsigned char)s.p[i];
		buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (s.n > 40 && o + 4 < cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* The answer is one of HAProxy's one-line refusals of a show command. */
static bool answer_is(const char *buf, size_t len, const char *lit)
{
	const char *pos = buf, *end = buf + len;
	struct span l;
	while (next_line(&pos, end, &l))
		if (!span_blank(l))
			return span_eq(l, lit);
	return false;
}

/* ---------------------------------------------------------------------------------------- */

/* Space-separated fields of one line into @f; false when more than @cap. */
static bool split_spaces(struct span line, struct span *f, size_t cap, size_t *ret_n)
{
	size_t n = 0, i = 0;
	while (i < line.n) {
		while (i < line.n && (line.p[i] == ' ' || line.p[i] == '\t'))
			i++;
		if (i >= line.n)
			break;
		size_t start = i;
		while (i < line.n && line.p[i] != ' ' && line.p[i] != '\t')
			i++;
		if (n >= cap)
			return false;
		f[n].p = line.p + start;
		f[n].n = i - start;
		n++;
	}
	*ret_n = n;
	return true;
}

enum { SC_BE, SC_ID, SC_NAME, SC_ADDR, SC_OP, SC_ADMIN, SC_UW, SC_PORT, SC_N };
static const char *const state_cols[SC_N] = {
	"be_name", "srv_id", "srv_name", "srv_addr",
	"srv_op_state", "srv_admin_state", "srv_uweight", "srv_port",
};

int traffic_parse_servers_state(const char *buf, size_t len, const char *backend,
				struct traffic_server **ret, size_t *ret_n, char *err,
				size_t errlen)
{
	struct span f[STATE_COLS_MAX];
	size_t col[SC_N];
	struct traffic_server *out = NULL;
	size_t n = 0, cap = 0, ncols = 0, lineno = 0;
	char show[64];
	int r = -EBADMSG;

	traffic__err(err, errlen, "%s", "");
	if (!buf || !backend || !ret || !ret_n) {
		traffic__err(err, errlen, "invalid arguments");
		return -EINVAL;
	}
	if (answer_is(buf, len, "Can't find backend.")) {
		traffic__err(err, errlen, "haproxy has no backend '%s'", backend);
		return -ENOENT;
	}

	const char *pos = buf, *end = buf + len;
	struct span l = {0};
	/* Line 1: the format version. */
	if (!next_line(&pos, end, &l) || !span_eq(l, "1")) {
		traffic__err(err, errlen, "servers state: first line is not the format version 1 "
			     "but '%s'", span_show(l, show, sizeof show));
		goto out;
	}
	lineno = 1;
	/* Line 2: "# col col ...". */
	if (!next_line(&pos, end, &l) || l.n < 2 || l.p[0] != '#' || l.p[1] != ' ') {
		traffic__err(err, errlen, "servers state: line 2 is not the '# be_id ...' header");
		goto out;
	}
	lineno = 2;
	struct span hdr = { l.p + 2, l.n - 2 };
	if (!split_spaces(hdr, f, STATE_COLS_MAX, &ncols)) {
		traffic__err(err, errlen, "servers state: more than %d columns", STATE_COLS_MAX);
		goto out;
	}
	for (size_t c = 0; c < SC_N; c++) {
		col[c] = SIZE_MAX;
		for (size_t i = 0; i < ncols; i++)
			if (span_eq(f[i], state_cols[c])) {
				col[c] = i;
				break;
			}
		if (col[c] == SIZE_MAX) {
			traffic__err(err, errlen, "servers state: no column '%s' in the header",
				     state_cols[c]);
			goto out;
		}
	}

	bool ended = false;
	while (next_line(&pos, end, &l)) {
		lineno++;
		if (span_blank(l)) {
			ended = true;
			continue;
		}
		if (ended) {
			traffic__err(err, errlen, "servers state: line %zu: text after the end",
				     lineno);
			goto out;
		}
		size_t nf = 0;
		if (!split_spaces(l, f, STATE_COLS_MAX, &nf) || nf != ncols) {
			traffic__err(err, errlen, "servers state: line %zu has %s fields, the "
				     "header %zu", lineno, nf == ncols ? "too many" : "a different "
				     "number of", ncols);
			goto out;
		}
		struct traffic_server s;
		memset(&s, 0, sizeof s);
		char be[TRAFFIC_NAME_MAX + 1];
		if (!span_copy_name(f[col[SC_BE]], be, sizeof be)) {
			traffic__err(err, errlen, "servers state: line %zu: bad backend name '%s'",
				     lineno, span_show(f[col[SC_BE]], show, sizeof show));
			goto out;
		}
		if (strcmp(be, backend) != 0)
			continue;
		if (!span_copy_name(f[col[SC_NAME]], s.name, sizeof s.name)) {
			traffic__err(err, errlen, "servers state: line %zu: bad server name '%s'",
				     lineno, span_show(f[col[SC_NAME]], show, sizeof show));
			goto out;
		}
		struct span a = f[col[SC_ADDR]];
		if (!span_eq(a, "-")) {
			bool ok = a.n > 0 && a.n <= TRAFFIC_ADDR_MAX;
			for (size_t i = 0; ok && i < a.n; i++) {
				unsigned char c = (unsigned char)a.p[i];
				ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
				     (c >= 'A' && c <= 'F') || c == '.' || c == ':';
			}
			if (!ok) {
				traffic__err(err, errlen, "servers state: line %zu: server %s: bad "
					     "address '%s'", lineno, s.name,
					     span_show(a, show, sizeof show));
				goto out;
			}
			memcpy(s.addr, a.p, a.n);
			s.addr[a.n] = '\0';
		}
		uint64_t v;
		struct {
			int c;
			uint64_t max;
			const char *what;
		} nums[] = {
			{ SC_ID, UINT32_MAX, "srv_id" },
			{ SC_OP, 3, "srv_op_state" },
			{ SC_ADMIN, 255, "srv_admin_state" },
			{ SC_UW, TRAFFIC_WEIGHT_MAX, "srv_uweight" },
			{ SC_PORT, 65535, "srv_port" },
		};
		for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
			if (!span_uint(f[col[nums[k].c]], nums[k].max, &v)) {
				traffic__err(err, errlen, "servers state: line %zu: server %s: %s "
					     "'%s' is not a number in 0..%llu", lineno, s.name,
					     nums[k].what, span_show(f[col[nums[k].c]], show,
								     sizeof show),
					     (unsigned long long)nums[k].max);
				goto out;
			}
			switch (nums[k].c) {
			case SC_ID: s.id = (uint32_t)v; break;
			case SC_OP: s.op_state = (uint8_t)v; break;
			case SC_ADMIN: s.admin = (uint8_t)v; break;
			case SC_UW: s.uweight = (uint16_t)v; break;
			case SC_PORT: s.port = (uint16_t)v; break;
			}
		}
		if (n == TRAFFIC_SLOTS_MAX) {
			traffic__err(err, errlen, "servers state: more than %d servers in backend %s",
				     TRAFFIC_SLOTS_MAX, backend);
			goto out;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct traffic_server *t = realloc(out, nc * sizeof *t);
			if (!t) {
				r = -ENOMEM;
				traffic__err(err, errlen, "out of memory");
				goto out;
			}
			out = t;
			cap = nc;
		}
		out[n++] = s;
	}
	*ret = out;
	*ret_n = n;
	out = NULL;
	r = 0;
out:
	free(out);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

/*
 * One CSV line into fields. HAProxy quotes a field holding a comma or a quote ("a ""b"",c");
 * unquoted fields run to the next comma. A trailing comma ends the line with an empty field,
 * which is how every line of `show stat` ends. Quoted fields are returned without their
 * quotes and with doubled quotes left doubled (we only compare names and read numbers, and
 * names cannot hold quotes).
 */
static int split_csv(struct span line, struct span *f, size_t cap, size_t *ret_n)
{
	size_t n = 0, i = 0;
	for (;;) {
		if (n >= cap)
			return -1;
		if (i < line.n && line.p[i] == '"') {
			size_t start = ++i;
			for (;;) {
				if (i >= line.n)
					return -2;	/* unterminated quote */
				if (line.p[i] == '"') {
					if (i + 1 < line.n && line.p[i + 1] == '"') {
						i += 2;
						continue;
					}
					break;
				}
				i++;
			}
			f[n].p = line.p + start;
			f[n].n = i - start;
			n++;
			i++;	/* the closing quote */
			if (i == line.n)
				break;
			if (line.p[i] != ',')
				return -2;
			i++;
			continue;
		}
		size_t start = i;
		while (i < line.n && line.p[i] != ',')
			i++;
		f[n].p = line.p + start;
		f[n].n = i - start;
		n++;
		if (i == line.n)
			break;
		i++;	/* the comma; a field (maybe empty) follows */
	}
	*ret_n = n;
	return 0;
}

enum { ST_PX, ST_SV, ST_SCUR, ST_STATUS, ST_WEIGHT, ST_ADDR, ST_N };
static const char *const stat_cols[ST_N] = {
	"pxname", "svname", "scur", "status", "weight", "addr",
};

int traffic_parse_stat(const char *buf, size_t len, const char *backend,
		       struct traffic_stat **ret, size_t *ret_n, char *err, size_t errlen)
{
	struct span *f = NULL;
	size_t col[ST_N];
	struct traffic_stat *out = NULL;
	size_t n = 0, cap = 0, ncols = 0, lineno = 0;
	char show[64];
	int r = -EBADMSG;

	traffic__err(err, errlen, "%s", "");
	if (!buf || !backend || !ret || !ret_n) {
		traffic__err(err, errlen, "invalid arguments");
		return -EINVAL;
	}
	if (answer_is(buf, len, "No such proxy.") || answer_is(buf, len, "No such backend.")) {
		traffic__err(err, errlen, "haproxy has no backend '%s'", backend);
		return -ENOENT;
	}
	f = malloc(STAT_COLS_MAX * sizeof *f);
	if (!f) {
		traffic__err(err, errlen, "out of memory");
		return -ENOMEM;
	}

	const char *pos = buf, *end = buf + len;
	struct span l;
	if (!next_line(&pos, end, &l) || l.n < 2 || l.p[0] != '#' || l.p[1] != ' ') {
		traffic__err(err, errlen, "show stat: first line is not the '# pxname,...' "
			     "header but '%s'", span_show(l, show, sizeof show));
		goto out;
	}
	lineno = 1;
	struct span hdr = { l.p + 2, l.n - 2 };
	if (split_csv(hdr, f, STAT_COLS_MAX, &ncols) != 0) {
		traffic__err(err, errlen, "show stat: header has more than %d columns or a "
			     "broken quote", STAT_COLS_MAX);
		goto out;
	}
	for (size_t c = 0; c < ST_N; c++) {
		col[c] = SIZE_MAX;
		for (size_t i = 0; i < ncols; i++)
			if (span_eq(f[i], stat_cols[c])) {
				col[c] = i;
				break;
			}
		if (col[c] == SIZE_MAX) {
			traffic__err(err, errlen, "show stat: no column '%s' in the header",
				     stat_cols[c]);
			goto out;
		}
	}
	bool ended = false;
	while (next_line(&pos, end, &l)) {
		lineno++;
		if (span_blank(l)) {
			ended = true;
			continue;
		}
		if (ended) {
			traffic__err(err, errlen, "show stat: line %zu: text after the end", lineno);
			goto out;
		}
		size_t nf = 0;
		int sr = split_csv(l, f, STAT_COLS_MAX, &nf);
		if (sr == -2) {
			traffic__err(err, errlen, "show stat: line %zu: broken quoting", lineno);
			goto out;
		}
		if (sr != 0 || nf != ncols) {
			traffic__err(err, errlen, "show stat: line %zu has %s fields than the header's "
				     "%zu", lineno, (sr != 0 || nf > ncols) ? "more" : "fewer", ncols);
			goto out;
		}
		if (!span_eq(f[col[ST_PX]], backend))
			continue;
		struct span sv = f[col[ST_SV]];
		if (span_eq(sv, "FRONTEND") || span_eq(sv, "BACKEND"))
			continue;
		struct traffic_stat s;
		memset(&s, 0, sizeof s);
		if (!span_copy_name(sv, s.name, sizeof s.name)) {
			traffic__err(err, errlen, "show stat: line %zu: bad server name '%s'", lineno,
				     span_show(sv, show, sizeof show));
			goto out;
		}
		uint64_t v;
		if (!span_uint(f[col[ST_SCUR]], UINT32_MAX, &v)) {
			traffic__err(err, errlen, "show stat: line %zu: server %s: scur '%s' is not a "
				     "number", lineno, s.name,
				     span_show(f[col[ST_SCUR]], show, sizeof show));
			goto out;
		}
		s.scur = (uint32_t)v;
		if (!span_uint(f[col[ST_WEIGHT]], UINT32_MAX, &v)) {
			traffic__err(err, errlen, "show stat: line %zu: server %s: weight '%s' is not "
				     "a number", lineno, s.name,
				     span_show(f[col[ST_WEIGHT]], show, sizeof show));
			goto out;
		}
		s.weight = (uint32_t)v;
		if (!span_copy_text(f[col[ST_STATUS]], s.status, sizeof s.status) ||
		    !span_copy_text(f[col[ST_ADDR]], s.addr, sizeof s.addr)) {
			traffic__err(err, errlen, "show stat: line %zu: server %s: control bytes in "
				     "status or addr", lineno, s.name);
			goto out;
		}
		if (n == TRAFFIC_SLOTS_MAX) {
			traffic__err(err, errlen, "show stat: more than %d servers in backend %s",
				     TRAFFIC_SLOTS_MAX, backend);
			goto out;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct traffic_stat *t = realloc(out, nc * sizeof *t);
			if (!t) {
				r = -ENOMEM;
				traffic__err(err, errlen, "out of memory");
				goto out;
			}
			out = t;
			cap = nc;
		}
		out[n++] = s;
	}
	*ret = out;
	*ret_n = n;
	out = NULL;
	r = 0;
out:
	free(out);
	free(f);
	return r;
}

/* ---------------------------------------------------------------------------------------- */

static bool has_prefix(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n >= l && memcmp(s, lit, l) == 0;
}

int traffic_answer_check(const char *cmd, const char *answer, size_t len)
{
	/* Skip leading blanks, and a "[N]: " severity prefix should the session have one. */
	size_t i = 0;
	while (i < len && (answer[i] == ' ' || answer[i] == '\t' || answer[i] == '\r' ||
			   answer[i] == '\n'))
		i++;
	const char *a = answer + i;
	size_t n = len - i;
	if (n >= 5 && a[0] == '[' && a[2] == ']' && a[3] == ':' && a[4] == ' ') {
		a += 5;
		n -= 5;
	}
	if (strncmp(cmd, "set server ", 11) == 0 && strstr(cmd, " addr ")) {
		if (!has_prefix(a, n, "IP changed from") &&
		    !has_prefix(a, n, "no need to change the addr"))
			return -EPROTO;
		/* An accepted address with a refused port reads "..., Invalid port ..." or
		 * "no need to change the addr, can't change <port> to port map ...". */
		for (size_t k = 0; k + 7 <= n; k++)
			if (memcmp(a + k, "nvalid", 6) == 0 || memcmp(a + k, "an't ", 5) == 0)
				return -EPROTO;
		return 0;
	}
	if (strncmp(cmd, "set ", 4) == 0)
		return n == 0 ? 0 : -EPROTO;
	return 0;
}
