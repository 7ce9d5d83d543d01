/*
 * store/release.c: release.ini, the manifest an operator writes, into a struct store_manifest.
 *
 * inih does the tokenising; everything around it is here because inih alone is too forgiving
 * for a file that decides what runs in production:
 *
 *   - We feed inih one line at a time through our own reader over the caller's buffer. That
 *     gives us the line number of every handler call (the distro's inih is built without
 *     INI_HANDLER_LINENO), lets us refuse NUL bytes and over-long lines instead of letting
 *     inih split them silently, and lets us see section headers (inih only reports sections
 *     through their keys, so an empty "[helth]" would otherwise pass unnoticed).
 *   - The reader strips leading whitespace, which turns off inih's multi-line continuation
 *     (an indented line would otherwise be appended to the previous key) without touching
 *     inih's process-wide settings, which other modules share.
 *   - Unknown sections and keys, duplicate keys and empty values are errors: a typo in
 *     "intreval" must not silently mean "the default".
 *
 * The first error wins, whether it is ours or an inih syntax error, by line number; the message
 * names the file, the line and the key. Nothing here allocates more than the strings that end
 * up in the manifest, and the input is never trusted: this is the target of fuzz_store_release.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <ini.h>

#include "store/import.h"
#include "store/store_int.h"

enum rel_section {
	SEC_RELEASE,
	SEC_EXEC,
	SEC_SYSTEMD,
	SEC_CONTAINER,
	SEC_HEALTH,
	SEC_ENDPOINT,
	SEC_RECOVERY,
	SEC__COUNT,
};

static const char *const rel_section_names[SEC__COUNT] = {
	[SEC_RELEASE] = "release",	[SEC_EXEC] = "exec",	 [SEC_SYSTEMD] = "systemd",
	[SEC_CONTAINER] = "container", [SEC_HEALTH] = "health",
	[SEC_ENDPOINT] = "endpoint",	[SEC_RECOVERY] = "recovery",
};

enum rel_key {
	KEY_SERVICE,
	KEY_RUNTIME,
	KEY_VERSION,
	KEY_COMMAND,
	KEY_UNIT,
	KEY_IMAGE,
	KEY_ARCHIVE,
	KEY_HTTP,
	KEY_TCP,
	KEY_HEXEC,
	KEY_INTERVAL,
	KEY_TIMEOUT,
	KEY_FAILURES,
	KEY_DEADLINE,
	KEY_EP_PORT,
	KEY_EP_ADDRESS,
	KEY_EP_WEIGHT,
	KEY_EP_PROTOCOL,
	KEY_EP_DRAIN,
	KEY_RC_RESTARTS,
	KEY_RC_REMOVE,
	KEY__COUNT,
};

static const struct {
	enum rel_section section;
	const char *name;
} rel_keys[KEY__COUNT] = {
	[KEY_SERVICE] = { SEC_RELEASE, "service" },   [KEY_RUNTIME] = { SEC_RELEASE, "runtime" },
	[KEY_VERSION] = { SEC_RELEASE, "version" },   [KEY_COMMAND] = { SEC_EXEC, "command" },
	[KEY_UNIT] = { SEC_SYSTEMD, "unit" },	      [KEY_IMAGE] = { SEC_CONTAINER, "image" },
	[KEY_ARCHIVE] = { SEC_CONTAINER, "archive" }, [KEY_HTTP] = { SEC_HEALTH, "http" },
	[KEY_TCP] = { SEC_HEALTH, "tcp" },	      [KEY_HEXEC] = { SEC_HEALTH, "exec" },
	[KEY_INTERVAL] = { SEC_HEALTH, "interval" },  [KEY_TIMEOUT] = { SEC_HEALTH, "timeout" },
	[KEY_FAILURES] = { SEC_HEALTH, "failures" },  [KEY_DEADLINE] = { SEC_HEALTH, "deadline" },
	[KEY_EP_PORT] = { SEC_ENDPOINT, "port" },     [KEY_EP_ADDRESS] = { SEC_ENDPOINT, "address" },
	[KEY_EP_WEIGHT] = { SEC_ENDPOINT, "weight" }, [KEY_EP_PROTOCOL] = { SEC_ENDPOINT, "protocol" },
	[KEY_EP_DRAIN] = { SEC_ENDPOINT, "drain" },
	[KEY_RC_RESTARTS] = { SEC_RECOVERY, "restarts" },
	[KEY_RC_REMOVE] = { SEC_RECOVERY, "remove_unhealthy" },
};

#define REL_VERSION_MAX 128
#define REL_IMAGE_MAX	255
/* How much of an offending value a message quotes. */
#define REL_QUOTE_MAX	64

struct rel_ctx {
	const char *buf;
	size_t len, pos;
	unsigned lineno;
	const char *filename;
	store_release_has_file_cb has_file;
	void *ud;

	struct store_manifest m;
	unsigned key_line[KEY__COUNT];	   /* 0: not set */
	unsigned section_line[SEC__COUNT]; /* first header of the section, 0: none */

	int err;	   /* first error (negative), 0 none */
	unsigned err_line; /* its line, 0 for whole-file errors */
	char *errbuf;
	size_t errlen;
};

static void rel_seterr(struct rel_ctx *c, int err, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void rel_seterr(struct rel_ctx *c, int err, unsigned line, const char *fmt, ...)
{
	if (c->err)
		return; /* the first error is the one the operator should fix first */
	c->err = err;
	c->err_line = line;
	if (!c->errbuf || c->errlen == 0)
		return;
	int n = line ? snprintf(c->errbuf, c->errlen, "%s:%u: ", c->filename, line)
		     : snprintf(c->errbuf, c->errlen, "%s: ", c->filename);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errbuf + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/*
 * Escape an untrusted string for a message: printable ASCII kept, anything else as \xNN, '"'
 * and '\\' escaped, cut at REL_QUOTE_MAX bytes with "..." appended; in double quotes when
 * @quotes (values), bare otherwise (section and key names). @out holds REL_QUOTE_BUF bytes.
 */
#define REL_QUOTE_BUF (4 * REL_QUOTE_MAX + 8)
static const char *rel_esc(const char *v, char out[REL_QUOTE_BUF], bool quotes)
{
	size_t o = 0;
	if (quotes)
		out[o++] = '"';
	size_t i;
	for (i = 0; v[i] && i < REL_QUOTE_MAX; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch >= 0x20 && ch < 0x7f) {
			out[o++] = (char)ch;
		} else {
			o += (size_t)snprintf(out + o, 5, "\\x%02x", ch);
		}
	}
	if (v[i]) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	if (quotes)
		out[o++] = '"';
	out[o] = '\0';
	return out;
}

static const char *rel_quote(const char *v, char out[REL_QUOTE_BUF])
{
	return rel_esc(v, out, true);
}

static const char *rel_name(const char *v, char out[REL_QUOTE_BUF])
{
	return rel_esc(v, out, false);
}

static void rel_keyerr(struct rel_ctx *c, enum rel_key k, const char *what, const char *value,
		       const char *hint)
{
	char q[REL_QUOTE_BUF];
	rel_seterr(c, -STORE_EINVALID, c->key_line[k], "[%s] %s: %s%s%s%s%s",
		   rel_section_names[rel_keys[k].section], rel_keys[k].name, what,
		   value ? " " : "", value ? rel_quote(value, q) : "", hint ? " " : "",
		   hint ? hint : "");
}

int store_duration_parse(const char *s, uint64_t *ret_ms)
{
	if (!s || !*s)
		return -EINVAL;
	uint64_t total = 0;
	bool range = false;
	const char *p = s;
	while (*p) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		uint64_t n = 0;
		for (; *p >= '0' && *p <= '9'; p++) {
			unsigned d = (unsigned)(*p - '0');
			if (n > (UINT64_MAX - d) / 10)
				range = true;
			else
				n = n * 10 + d;
		}
		uint64_t mul;
		if (p[0] == 'm' && p[1] == 's') {
			mul = 1;
			p += 2;
		} else if (*p == 's') {
			mul = 1000;
			p++;
		} else if (*p == 'm') {
			mul = 60 * 1000;
			p++;
		} else if (*p == 'h') {
			mul = 60 * 60 * 1000;
			p++;
		} else {
			return -EINVAL;
		}
		/* Keep scanning after an overflow: a malformed string is -EINVAL whatever its size. */
		if (range || n > UINT64_MAX / mul || total > UINT64_MAX - n * mul)
			range = true;
		else
			total += n * mul;
	}
	if (range)
		return -ERANGE;
	*ret_ms = total;
	return 0;
}

/*
 * Normalise a relative path of the artifact: leading "./" removed (repeatedly); then it must be
 * non-empty, not start with '/', and have no empty, "." or ".." component (so no trailing '/').
 * Returns a pointer into @p (the normalised suffix) or NULL if invalid.
 */
static const char *rel_path_norm(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		for (p += 2; *p == '/';)
			p++;
	if (!*p || *p == '/')
		return NULL;
	for (const char *c = p;;) {
		const char *e = strchr(c, '/');
		size_t n = e ? (size_t)(e - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return NULL;
		if (!e)
			break;
		c = e + 1;
	}
	return p;
}

static bool rel_valid_service(const char *v)
{
	size_t n = strlen(v);
	if (n < 1 || n > 64)
		return false;
	/* "." and ".." match the pattern but the name becomes a directory under the state dir. */
	if (strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* A port: 1..65535 in decimal, no sign, no leading junk. */
static bool rel_valid_port(const char *p, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

/* HOST:PORT or [V6]:PORT, HOST without whitespace, '/' or further ':' (outside brackets). */
static bool rel_valid_hostport(const char *v, size_t n)
{
	const char *colon;
	if (n && v[0] == '[') {
		const char *rb = memchr(v, ']', n);
		if (!rb || rb == v + 1 || (size_t)(rb - v) + 1 >= n || rb[1] != ':')
			return false;
		for (const char *h = v + 1; h < rb; h++)
			if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f') ||
			      (*h >= 'A' && *h <= 'F') || *h == ':' || *h == '.'))
				return false;
		colon = rb + 1;
	} else {
		colon = NULL;
		for (size_t i = 0; i < n; i++) {
			if (v[i] == ':') {
				if (colon)
					return false;
				colon = v + i;
			} else if (v[i] == ' ' || v[i] == '\t' || v[i] == '/' || v[i] == '[' ||
				   v[i] == ']' || v[i] == '@') {
				return false;
			}
		}
		if (!colon || colon == v)
			return false;
	}
	return rel_valid_port(colon + 1, (size_t)(v + n - colon - 1));
}

static bool rel_valid_http(const char *v)
{
	static const char pfx[] = "http://";
	if (strncmp(v, pfx, sizeof pfx - 1) != 0)
		return false;
	const char *h = v + sizeof pfx - 1;
	size_t n = strcspn(h, "/?#");
	if (n == 0)
		return false;
	for (const char *p = v; *p; p++)
		if (*p == ' ' || *p == '\t')
			return false;
	/* The authority: HOST, HOST:PORT, [V6] or [V6]:PORT; no user info. */
	if (h[0] == '[' && h[n - 1] == ']')
		return n > 2 && strspn(h + 1, "0123456789abcdefABCDEF:.") == n - 2;
	if (h[0] == '[' || memchr(h, ':', n))
		return rel_valid_hostport(h, n);
	return !memchr(h, '@', n) && !memchr(h, ']', n);
}

static bool rel_valid_image(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > REL_IMAGE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch <= 0x20 || ch >= 0x7f)
			return false;
	}
	return true;
}

static bool rel_valid_unit(const char *v)
{
	const char *p = rel_path_norm(v);
	if (!p)
		return false;
	const char *base = strrchr(p, '/');
	base = base ? base + 1 : p;
	size_t n = strlen(base);
	static const char sfx[] = ".service";
	if (n <= sizeof sfx - 1 || n > 255 || strcmp(base + n - (sizeof sfx - 1), sfx) != 0)
		return false;
	/* systemd's unit name alphabet, so the plugin can install it under its own name. */
	for (size_t i = 0; i < n; i++) {
		char ch = base[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == ':' || ch == '-' || ch == '_' ||
		      ch == '.' || ch == '@' || ch == '\\'))
			return false;
	}
	return true;
}

/*
 * The program of a command, when it names a file of the artifact: the first word, if it
 * contains a '/' and does not start with one. Copies the normalised path into @out (cap
 * bytes). Returns 1 (artifact file, in @out), 0 (taken from the host), -1 (relative but
 * invalid: escapes with "..", or too long).
 */
static int rel_command_file(const char *cmd, char *out, size_t cap)
{
	size_t n = strcspn(cmd, " \t");
	if (n == 0 || cmd[0] == '/' || !memchr(cmd, '/', n))
		return 0;
	if (n >= cap)
		return -1;
	memcpy(out, cmd, n);
	out[n] = '\0';
	const char *p = rel_path_norm(out);
	if (!p)
		return -1;
	memmove(out, p, strlen(p) + 1);
	return 1;
}

bool store__release_valid_http(const char *v)
{
	return rel_valid_http(v);
}

bool store__release_valid_hostport(const char *v)
{
	return rel_valid_hostport(v, strlen(v));
}

bool store__release_valid_image(const char *v)
{
	return rel_valid_image(v);
}

bool store__release_valid_unit(const char *v)
{
	/* The manifest holds the normalised form: "./" prefixes are release.ini-only. */
	return rel_valid_unit(v) && rel_path_norm(v) == v;
}

int store__release_command_file(const char *cmd, char *out, size_t cap)
{
	return rel_command_file(cmd, out, cap);
}

/* A decimal number in @lo..@hi: no sign, no leading '+', no spaces, at most 9 digits. */
static bool rel_uint(const char *v, unsigned lo, unsigned hi, unsigned *ret)
{
	unsigned n = 0;
	size_t len = strlen(v);
	if (len == 0 || len > 9)
		return false;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		n = n * 10 + (unsigned)(*p - '0');
	}
	if (n < lo || n > hi)
		return false;
	*ret = n;
	return true;
}

static int rel_set_str(struct rel_ctx *c, char **field, const char *v)
{
	char *dup = store__strdup(v);
	if (!dup) {
		rel_seterr(c, -ENOMEM, 0, "out of memory");
		return -ENOMEM;
	}
	store__free(*field);
	*field = dup;
	return 0;
}

static void rel_set_duration(struct rel_ctx *c, enum rel_key k, const char *v, uint32_t *field)
{
	uint64_t ms;
	int r = store_duration_parse(v, &ms);
	if (r == -EINVAL)
		rel_keyerr(c, k, "invalid duration", v, NULL);
	else if (r < 0 || ms > UINT32_MAX)
		rel_keyerr(c, k, "duration out of range", v, "(max 4294967295ms)");
	else if (ms == 0)
		rel_keyerr(c, k, "invalid duration", v, "(must be more than 0)");
	else
		*field = (uint32_t)ms;
}

/* Validate and store one value. Errors are recorded in @c. */
static void rel_set(struct rel_ctx *c, enum rel_key k, const char *v)
{
	struct store_manifest *m = &c->m;

	/* Tabs only make sense inside commands; nothing else may hold a control character. The
	 * rule is store_manifest_validate's (C1 and invalid UTF-8 included), so what parses is
	 * what the store accepts. */
	int t = store__text_check(v, strlen(v),
				  k == KEY_COMMAND || k == KEY_HEXEC ? STORE__TEXT_TAB : 0);
	if (t) {
		rel_keyerr(c, k, t == STORE__TEXT_CTL ? "control character in value"
						      : "invalid UTF-8 in value",
			   v, NULL);
		return;
	}
	switch (k) {
	case KEY_SERVICE:
		if (!rel_valid_service(v))
			rel_keyerr(c, k, "invalid service name", v,
				   "(want [a-zA-Z0-9._-]{1,64}, not \".\" or \"..\")");
		else
			rel_set_str(c, &m->service, v);
		break;
	case KEY_RUNTIME:
		if (strcmp(v, "exec") && strcmp(v, "systemd") && strcmp(v, "container"))
			rel_keyerr(c, k, "invalid runtime", v, "(want exec, systemd or container)");
		else
			rel_set_str(c, &m->runtime, v);
		break;
	case KEY_VERSION:
		if (strlen(v) > REL_VERSION_MAX)
			rel_keyerr(c, k, "version too long:", v, "(max 128 bytes)");
		else
			rel_set_str(c, &m->version, v);
		break;
	case KEY_COMMAND:
	case KEY_HEXEC: {
		char path[STORE_IMPORT_MAX_PATH + 1];
		if (rel_command_file(v, path, sizeof path) < 0)
			rel_keyerr(c, k, "invalid program path in", v,
				   "(want a relative path inside the artifact)");
		else
			rel_set_str(c, k == KEY_COMMAND ? &m->exec_command : &m->health.exec, v);
		break;
	}
	case KEY_UNIT:
		if (!rel_valid_unit(v))
			rel_keyerr(c, k, "invalid unit", v,
				   "(want a relative path to a .service file in the artifact)");
		else
			rel_set_str(c, &m->systemd_unit, rel_path_norm(v));
		break;
	case KEY_IMAGE:
		if (!rel_valid_image(v))
			rel_keyerr(c, k, "invalid image reference", v, NULL);
		else
			rel_set_str(c, &m->container_image, v);
		break;
	case KEY_ARCHIVE:
		if (!rel_path_norm(v))
			rel_keyerr(c, k, "invalid path", v,
				   "(want a relative path inside the artifact)");
		else
			rel_set_str(c, &m->container_archive, rel_path_norm(v));
		break;
	case KEY_HTTP:
		if (!rel_valid_http(v))
			rel_keyerr(c, k, "invalid URL", v, "(want http://HOST[:PORT][/PATH])");
		else
			rel_set_str(c, &m->health.http, v);
		break;
	case KEY_TCP:
		if (!rel_valid_hostport(v, strlen(v)))
			rel_keyerr(c, k, "invalid address", v, "(want HOST:PORT or [IPV6]:PORT)");
		else
			rel_set_str(c, &m->health.tcp, v);
		break;
	case KEY_INTERVAL:
		rel_set_duration(c, k, v, &m->health.interval_ms);
		break;
	case KEY_TIMEOUT:
		rel_set_duration(c, k, v, &m->health.timeout_ms);
		break;
	case KEY_DEADLINE:
		rel_set_duration(c, k, v, &m->health.deadline_ms);
		break;
	case KEY_FAILURES: {
		unsigned n = 0;
		bool ok = *v != '\0' && strlen(v) <= 4;
		for (const char *p = v; ok && *p; p++) {
			if (*p < '0' || *p > '9')
				ok = false;
			else
				n = n * 10 + (unsigned)(*p - '0');
		}
		if (!ok || n < 1 || n > STORE_HEALTH_FAILURES_MAX)
			rel_keyerr(c, k, "invalid count", v, "(want 1..1000)");
		else
			m->health.failures = n;
		break;
	}
	case KEY_EP_PORT: {
		unsigned n;
		if (!rel_uint(v, 1, 65535, &n))
			rel_keyerr(c, k, "invalid port", v, "(want 1..65535)");
		else
			m->endpoint.port = (uint16_t)n;
		break;
	}
	case KEY_EP_ADDRESS: {
		uint8_t a[16];
		if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1)
			rel_keyerr(c, k, "invalid address", v,
				   "(want an IPv4 or IPv6 address such as 10.0.0.5 or fd00::5, or "
				   "nothing for the node's advertise address)");
		else
			rel_set_str(c, &m->endpoint.address, v);
		break;
	}
	case KEY_EP_WEIGHT: {
		unsigned n;
		if (!rel_uint(v, 0, STORE_ENDPOINT_WEIGHT_MAX, &n))
			rel_keyerr(c, k, "invalid weight", v, "(want 0..256, as HAProxy)");
		else
			m->endpoint.weight = (uint16_t)n;
		break;
	}
	case KEY_EP_PROTOCOL:
		if (!strcmp(v, "tcp"))
			m->endpoint.protocol = STORE_ENDPOINT_TCP;
		else if (!strcmp(v, "http"))
			m->endpoint.protocol = STORE_ENDPOINT_HTTP;
		else
			rel_keyerr(c, k, "invalid protocol", v, "(want tcp or http)");
		break;
	case KEY_EP_DRAIN: {
		uint64_t ms;
		int r = store_duration_parse(v, &ms);
		if (r == -EINVAL)
			rel_keyerr(c, k, "invalid duration", v, NULL);
		else if (r < 0 || ms > STORE_ENDPOINT_DRAIN_MAX_MS)
			rel_keyerr(c, k, "duration out of range", v, "(max 10m)");
		else
			m->endpoint.drain_ms = (uint32_t)ms;
		break;
	}
	case KEY_RC_RESTARTS: {
		unsigned n;
		if (!rel_uint(v, 0, STORE_RECOVERY_RESTARTS_MAX, &n))
			rel_keyerr(c, k, "invalid count", v, "(want 0..100)");
		else
			m->recovery.restarts = n;
		break;
	}
	case KEY_RC_REMOVE:
		if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
			m->recovery.remove_unhealthy = true;
		else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") ||
			 !strcmp(v, "0"))
			m->recovery.remove_unhealthy = false;
		else
			rel_keyerr(c, k, "invalid boolean", v, "(want true or false)");
		break;
	case KEY__COUNT:
		break;
	}
}

static int rel_handler(void *user, const char *section, const char *name, const char *value)
{
	struct rel_ctx *c = user;
	if (c->err)
		return 1; /* only the first error is reported; let inih run to the end */

	if (!section[0]) {
		char q[REL_QUOTE_BUF];
		rel_seterr(c, -STORE_EINVALID, c->lineno, "%s: key outside a section",
			   rel_name(name, q));
		return 0;
	}
	int sec = -1;
	for (int i = 0; i < SEC__COUNT; i++)
		if (strcmp(section, rel_section_names[i]) == 0)
			sec = i;
	if (sec < 0) { /* normally caught by the reader already */
		char q[REL_QUOTE_BUF];
		rel_seterr(c, -STORE_EINVALID, c->lineno, "[%s]: unknown section",
			   rel_name(section, q));
		return 0;
	}
	int k = -1;
	for (int i = 0; i < KEY__COUNT; i++)
		if ((int)rel_keys[i].section == sec && strcmp(name, rel_keys[i].name) == 0)
			k = i;
	if (k < 0) {
		char q[REL_QUOTE_BUF];
		rel_seterr(c, -STORE_EINVALID, c->lineno, "[%s] %s: unknown key", section,
			   rel_name(name, q));
		return 0;
	}
	if (c->key_line[k]) {
		rel_seterr(c, -STORE_EINVALID, c->lineno, "[%s] %s: duplicate key (first on line %u)",
			   section, name, c->key_line[k]);
		return 0;
	}
	c->key_line[k] = c->lineno;

	/* inih strips inline ';' comments after whitespace; '#' gets the same rule here. */
	char v[256];
	size_t n = strlen(value);
	if (n >= sizeof v)
		n = sizeof v - 1; /* cannot happen: a line is at most 198 bytes */
	memcpy(v, value, n);
	v[n] = '\0';
	for (size_t i = 1; i < n; i++)
		if (v[i] == '#' && (v[i - 1] == ' ' || v[i - 1] == '\t')) {
			v[i] = '\0';
			n = i;
			break;
		}
	if (v[0] == '#') /* inih dropped the whitespace before it */
		v[n = 0] = '\0';
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
	if (n == 0 && k == KEY_EP_ADDRESS)
		return 1; /* documented: empty = the node's advertise address, as when absent */
	if (n == 0) {
		rel_keyerr(c, (enum rel_key)k, "empty value", NULL, NULL);
		return 0;
	}
	rel_set(c, (enum rel_key)k, v);
	return c->err ? 0 : 1;
}

/* A section header seen by the reader: known names only, nothing but a comment after it. */
static void rel_section_line(struct rel_ctx *c, const char *p, size_t n)
{
	const char *rb = memchr(p, ']', n);
	if (!rb)
		return; /* inih reports the syntax error */
	char q[REL_QUOTE_BUF], name[64];
	size_t nl = (size_t)(rb - p - 1);
	if (nl >= sizeof name)
		nl = sizeof name - 1;
	memcpy(name, p + 1, nl);
	name[nl] = '\0';
	int sec = -1;
	for (int i = 0; i < SEC__COUNT; i++)
		if (strcmp(name, rel_section_names[i]) == 0 && (size_t)(rb - p - 1) == nl)
			sec = i;
	if (sec < 0) {
		rel_seterr(c, -STORE_EINVALID, c->lineno, "[%s]: unknown section",
			   rel_name(name, q));
		return;
	}
	for (const char *t = rb + 1; t < p + n; t++) {
		if (*t == ';' || *t == '#')
			break;
		if (*t != ' ' && *t != '\t') {
			rel_seterr(c, -STORE_EINVALID, c->lineno, "[%s]: text after section header",
				   name);
			return;
		}
	}
	if (!c->section_line[sec]) {
		c->section_line[sec] = c->lineno;
		/* An endpoint's defaults exist only with the section: without it, all zero. */
		if (sec == SEC_ENDPOINT) {
			c->m.endpoint.weight = STORE_ENDPOINT_WEIGHT;
			c->m.endpoint.drain_ms = STORE_ENDPOINT_DRAIN_MS;
		}
	}
}

/* inih's fgets: one line of the buffer per call, so c->lineno is inih's line number. */
static char *rel_reader(char *str, int num, void *stream)
{
	struct rel_ctx *c = stream;
	if (c->err || c->pos >= c->len)
		return NULL; /* after our own error there is nothing more worth reading */
	const char *p = c->buf + c->pos, *end = c->buf + c->len;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	const char *le = nl ? nl : end;
	c->pos = nl ? (size_t)(nl + 1 - c->buf) : c->len;
	c->lineno++;

	if (memchr(p, '\0', (size_t)(le - p))) {
		rel_seterr(c, -STORE_EINVALID, c->lineno, "NUL byte in line");
		return NULL;
	}
	if (c->lineno == 1 && le - p >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3; /* UTF-8 byte order mark */
	while (p < le && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f'))
		p++;
	if (le > p && le[-1] == '\r')
		le--;
	size_t n = (size_t)(le - p);
	if (num < 3 || n > (size_t)num - 2) {
		rel_seterr(c, -STORE_EINVALID, c->lineno, "line too long (max %d bytes)",
			   num < 3 ? 0 : num - 2);
		return NULL;
	}
	memcpy(str, p, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	if (n && p[0] == '[')
		rel_section_line(c, p, n);
	return str;
}

static void rel_missing(struct rel_ctx *c, enum rel_key k, const char *why)
{
	rel_seterr(c, -STORE_EINVALID, 0, "[%s] %s: missing (%s)",
		   rel_section_names[rel_keys[k].section], rel_keys[k].name, why);
}

static void rel_not_found(struct rel_ctx *c, enum rel_key k, const char *path)
{
	char q[REL_QUOTE_BUF];
	rel_seterr(c, -STORE_EINVALID, c->key_line[k], "[%s] %s: %s not found in the artifact",
		   rel_section_names[rel_keys[k].section], rel_keys[k].name, rel_quote(path, q));
}

static void rel_check_command(struct rel_ctx *c, enum rel_key k, const char *cmd)
{
	char path[STORE_IMPORT_MAX_PATH + 1];
	/* rel_set() refused invalid program paths already. */
	if (rel_command_file(cmd, path, sizeof path) > 0 && c->has_file &&
	    !c->has_file(path, c->ud))
		rel_not_found(c, k, path);
}

/* Whole-file rules, once every line is in. Records the first violation in @c. */
static void rel_check(struct rel_ctx *c)
{
	struct store_manifest *m = &c->m;
	static const struct {
		const char *runtime;
		enum rel_section own;
	} rt[] = { { "exec", SEC_EXEC }, { "systemd", SEC_SYSTEMD }, { "container", SEC_CONTAINER } };

	if (!m->service) {
		rel_missing(c, KEY_SERVICE, "required");
		return;
	}
	if (!m->runtime) {
		rel_missing(c, KEY_RUNTIME, "required: exec, systemd or container");
		return;
	}
	for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) {
		if (strcmp(m->runtime, rt[i].runtime) == 0 || !c->section_line[rt[i].own])
			continue;
		rel_seterr(c, -STORE_EINVALID, c->section_line[rt[i].own],
			   "[%s]: not allowed with runtime %s", rel_section_names[rt[i].own],
			   m->runtime);
		return;
	}
	if (strcmp(m->runtime, "exec") == 0 && !m->exec_command)
		rel_missing(c, KEY_COMMAND, "required with runtime exec");
	else if (strcmp(m->runtime, "systemd") == 0 && !m->systemd_unit)
		rel_missing(c, KEY_UNIT, "required with runtime systemd");
	else if (strcmp(m->runtime, "container") == 0 && !m->container_image &&
		 !m->container_archive)
		rel_missing(c, KEY_IMAGE, "runtime container needs image or archive");
	if (c->err)
		return;

	/* One kind of health check: which one would win is not something to guess. */
	enum rel_key first = KEY__COUNT;
	for (enum rel_key k = KEY_HTTP; k <= KEY_HEXEC; k++) {
		if (!c->key_line[k])
			continue;
		if (first == KEY__COUNT) {
			first = k;
			continue;
		}
		unsigned l1 = c->key_line[first], l2 = c->key_line[k];
		enum rel_key later = l2 > l1 ? k : first, earlier = l2 > l1 ? first : k;
		rel_seterr(c, -STORE_EINVALID, c->key_line[later],
			   "[health] %s: only one of http, tcp, exec may be set (%s on line %u)",
			   rel_keys[later].name, rel_keys[earlier].name, c->key_line[earlier]);
		return;
	}

	/* [endpoint] without a port would mean nothing: no default port is sensible. */
	if (c->section_line[SEC_ENDPOINT] && !m->endpoint.port) {
		rel_missing(c, KEY_EP_PORT, "required in [endpoint]");
		return;
	}

	/* Files the manifest names (key order: deterministic, first error wins). */
	if (m->exec_command)
		rel_check_command(c, KEY_COMMAND, m->exec_command);
	if (m->health.exec)
		rel_check_command(c, KEY_HEXEC, m->health.exec);
	if (c->has_file && m->systemd_unit && !c->has_file(m->systemd_unit, c->ud))
		rel_not_found(c, KEY_UNIT, m->systemd_unit);
	if (c->has_file && m->container_archive && !c->has_file(m->container_archive, c->ud))
		rel_not_found(c, KEY_ARCHIVE, m->container_archive);
}

int store_release_parse_files(const char *buf, size_t len, const char *filename,
			      store_release_has_file_cb has_file, void *ud,
			      struct store_manifest *ret, char *err, size_t errlen)
{
	struct rel_ctx c = {
		.buf = buf,
		.len = buf ? len : 0,
		.filename = filename ? filename : STORE_RELEASE_FILE,
		.has_file = has_file,
		.ud = ud,
		.errbuf = err,
		.errlen = err ? errlen : 0,
	};
	if (err && errlen)
		err[0] = '\0';
	c.m.health.interval_ms = STORE_HEALTH_INTERVAL_MS;
	c.m.health.timeout_ms = STORE_HEALTH_TIMEOUT_MS;
	c.m.health.failures = STORE_HEALTH_FAILURES;
	c.m.health.deadline_ms = STORE_HEALTH_DEADLINE_MS;
	c.m.recovery.restarts = STORE_RECOVERY_RESTARTS;
	c.m.recovery.remove_unhealthy = STORE_RECOVERY_REMOVE_UNHEALTHY;

	if (c.len > STORE_RELEASE_MAX_SIZE) {
		rel_seterr(&c, -STORE_EINVALID, 0, "too large (%zu bytes, max %d)", c.len,
			   STORE_RELEASE_MAX_SIZE);
		goto out;
	}
	int line = ini_parse_stream(rel_reader, &c, rel_handler, &c);
	if (line == -2) {
		rel_seterr(&c, -ENOMEM, 0, "out of memory");
		goto out;
	}
	/* inih's own syntax error comes first when it is on an earlier line than ours. */
	if (line > 0 && (!c.err || (unsigned)line < c.err_line)) {
		c.err = 0;
		rel_seterr(&c, -STORE_EINVALID, (unsigned)line,
			   "syntax error (want \"[section]\" or \"key = value\")");
	}
	if (!c.err)
		rel_check(&c);
	if (!c.err) {
		/* The store's own rules, so that whatever parses can be imported (a refusal here
		 * is a gap between the parser and store_manifest_validate: named as such). */
		char why[256];
		int r = store__manifest_check(&c.m, NULL, NULL, why, sizeof why);
		if (r == -ENOMEM)
			rel_seterr(&c, r, 0, "out of memory");
		else if (r < 0)
			rel_seterr(&c, -STORE_EINVALID, 0, "manifest: %s", why);
	}
out:
	if (c.err) {
		store_manifest_release(&c.m);
		return c.err;
	}
	*ret = c.m;
	return 0;
}

int store_release_parse(const char *buf, size_t len, const char *filename,
			struct store_manifest *ret, char *err, size_t errlen)
{
	return store_release_parse_files(buf, len, filename, NULL, NULL, ret, err, errlen);
}
