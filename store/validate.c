/*
 * store/validate.c: store_manifest_validate, the one set of rules every artifact passes.
 *
 * Why one function: an artifact reaches a node in two ways, an operator's import (a directory
 * or a git tree, store/import.c) and a fetch from a peer (agent/, which decodes the manifest a
 * peer sends and streams the files through the same store_import_* calls). Before this file,
 * the importer's walk enforced its rules on the tree while the codec only checked the shape of
 * a manifest, so a peer could serve symlinks to /etc/shadow, "../../..", names with newlines
 * and escape bytes, or a file "a" next to "a/x" (a symlink "a" -> "/etc" and a file "a/x"
 * would make the materializer write /etc/x), and every node materialized them. Now the rules
 * live here and run at every entrance: the codec (no targets, no limits), the importers before
 * they stream a byte (with the tree's symlink targets and the configured limits) and
 * store_import_commit (with the targets it was sent and the import's limits), which is the
 * gate both paths pass.
 *
 * Symlinks are resolved against the artifact's own file list exactly as the kernel will once
 * the artifact is materialized: a link met on the way is followed (its target continues from
 * the link's directory), every other component is taken lexically (a directory that does not
 * exist yet may be created by the service later), so a target is accepted only if no way of
 * resolving it leaves the artifact. Example: with "s -> ." and "x -> s/..", "x" is lexically
 * the root but really its parent.
 *
 * Text rules: every string is valid UTF-8 (no overlong forms, no surrogates), without C0
 * controls, DEL or C1 controls (U+0080..U+009F, which terminals read as escape sequences as
 * readily as ESC itself). Raw bytes that are not UTF-8 are refused rather than guessed at.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "store/import.h"
#include "store/store_int.h"

#define VAL_MAX_STR	4096
#define VAL_MAX_MESSAGE (1u << 20)
#define VAL_QUOTE_MAX	64
#define VAL_QUOTE_BUF	(4 * VAL_QUOTE_MAX + 8)

int store__text_check(const char *s, size_t n, unsigned allow)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		if (c < 0x80) {
			if (c == 0x7f)
				return STORE__TEXT_CTL;
			if (c < 0x20 && !((c == '\t' && (allow & STORE__TEXT_TAB)) ||
					  ((c == '\n' || c == '\r') && (allow & STORE__TEXT_NL))))
				return STORE__TEXT_CTL;
			p++;
			continue;
		}
		size_t len;
		unsigned cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return STORE__TEXT_UTF8;
		}
		if ((size_t)(end - p) < len)
			return STORE__TEXT_UTF8;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return STORE__TEXT_UTF8;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return STORE__TEXT_UTF8;
		if (cp >= 0x80 && cp <= 0x9f)
			return STORE__TEXT_CTL;
		p += len;
	}
	return 0;
}

void store__text_sanitize(char *s, unsigned allow)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		/* Check one character at a time: the first byte decides its length. */
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		if (len > n - i)
			len = n - i;
		if (store__text_check(s + i, len, allow) != 0) {
			s[i++] = '?';
			continue;
		}
		i += len;
	}
}

const char *store__esc(const char *v, char *out, size_t cap)
{
	/* cap >= VAL_QUOTE_BUF is what callers pass; smaller still terminates. */
	size_t o = 0, i;
	for (i = 0; v[i] && i < VAL_QUOTE_MAX && o + 8 < cap; i++) {
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
	if (v[i] && o + 4 <= cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

struct val {
	const struct store_manifest *m;
	char *err;
	size_t errlen;
};

static int val_err(struct val *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int val_err(struct val *v, int code, const char *fmt, ...)
{
	if (v->err && v->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->err, v->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* An optional string field: length and text rules. */
static int val_str(struct val *v, const char *name, const char *s, size_t max, unsigned allow)
{
	if (!s)
		return 0;
	char q[VAL_QUOTE_BUF];
	size_t n = strlen(s);
	if (n > max)
		return val_err(v, -STORE_EINVALID, "%s: %zu bytes, over %zu", name, n, max);
	int t = store__text_check(s, n, allow);
	if (t)
		return val_err(v, -STORE_EINVALID, "%s: %s in \"%s\"", name,
			       t == STORE__TEXT_CTL ? "control character" : "invalid UTF-8",
			       store__esc(s, q, sizeof q));
	return 0;
}

/* A relative path: the problem, or NULL. Also used for [systemd] unit / [container] archive. */
static const char *val_path_problem(const char *p)
{
	size_t n = strlen(p);
	if (n == 0)
		return "empty path";
	if (n > STORE_IMPORT_MAX_PATH)
		return "path too long";
	if (p[0] == '/')
		return "absolute path";
	int t = store__text_check(p, n, 0);
	if (t == STORE__TEXT_CTL)
		return "control character in path";
	if (t)
		return "invalid UTF-8 in path";
	unsigned depth = 0;
	for (const char *c = p;;) {
		const char *e = strchr(c, '/');
		size_t l = e ? (size_t)(e - c) : strlen(c);
		if (l == 0)
			return "empty path component";
		if (l == 2 && c[0] == '.' && c[1] == '.')
			return "\"..\" in path";
		if (l == 1 && c[0] == '.')
			return "\".\" in path";
		if (!e)
			return NULL;
		if (++depth > STORE_IMPORT_MAX_DEPTH)
			return "directories nested deeper than 64";
		c = e + 1;
	}
}

static bool val_runtime_known(const char *r)
{
	return !strcmp(r, "exec") || !strcmp(r, "systemd") || !strcmp(r, "container");
}

static int val_fields(struct val *v)
{
	const struct store_manifest *m = v->m;
	char q[VAL_QUOTE_BUF];
	int r;

	if (!m->service || !store__service_valid(m->service) || !strcmp(m->service, ".") ||
	    !strcmp(m->service, ".."))
		return val_err(v, -STORE_EINVALID,
			       "service: invalid name \"%s\" (want [a-zA-Z0-9._-]{1,64}, not \".\" "
			       "or \"..\")",
			       m->service ? store__esc(m->service, q, sizeof q) : "");
	if (!m->runtime || !val_runtime_known(m->runtime))
		return val_err(v, -STORE_EINVALID,
			       "runtime: unknown runtime \"%s\" (want exec, systemd or container)",
			       m->runtime ? store__esc(m->runtime, q, sizeof q) : "");
	static const struct {
		const char *name;
		size_t off;
		size_t max;
		unsigned allow;
	} strs[] = {
		{ "version", offsetof(struct store_manifest, version), VAL_MAX_STR, 0 },
		{ "exec command", offsetof(struct store_manifest, exec_command), VAL_MAX_STR,
		  STORE__TEXT_TAB },
		{ "systemd unit", offsetof(struct store_manifest, systemd_unit), VAL_MAX_STR, 0 },
		{ "container image", offsetof(struct store_manifest, container_image), VAL_MAX_STR, 0 },
		{ "container archive", offsetof(struct store_manifest, container_archive), VAL_MAX_STR,
		  0 },
		{ "health http", offsetof(struct store_manifest, health.http), VAL_MAX_STR, 0 },
		{ "health tcp", offsetof(struct store_manifest, health.tcp), VAL_MAX_STR, 0 },
		{ "health exec", offsetof(struct store_manifest, health.exec), VAL_MAX_STR,
		  STORE__TEXT_TAB },
		{ "endpoint address", offsetof(struct store_manifest, endpoint.address), VAL_MAX_STR,
		  0 },
		{ "git commit", offsetof(struct store_manifest, git_commit), VAL_MAX_STR, 0 },
		{ "git tag", offsetof(struct store_manifest, git_tag), VAL_MAX_STR, 0 },
		{ "git author", offsetof(struct store_manifest, git_author), VAL_MAX_STR, 0 },
		{ "git message", offsetof(struct store_manifest, git_message), VAL_MAX_MESSAGE,
		  STORE__TEXT_TAB | STORE__TEXT_NL },
	};
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		const char *s = *(char *const *)((const char *)m + strs[i].off);
		if ((r = val_str(v, strs[i].name, s, strs[i].max, strs[i].allow)) < 0)
			return r;
	}

	/* Each runtime has its own section; the others' fields are typos or leftovers. */
	bool exec = !strcmp(m->runtime, "exec"), sd = !strcmp(m->runtime, "systemd");
	bool ct = !strcmp(m->runtime, "container");
	if ((m->exec_command && !exec) || (m->systemd_unit && !sd) ||
	    ((m->container_image || m->container_archive) && !ct))
		return val_err(v, -STORE_EINVALID, "runtime %s: fields of another runtime set",
			       m->runtime);
	if (exec && !m->exec_command)
		return val_err(v, -STORE_EINVALID, "exec command: missing (required with runtime exec)");
	if (sd && !m->systemd_unit)
		return val_err(v, -STORE_EINVALID,
			       "systemd unit: missing (required with runtime systemd)");
	if (ct && !m->container_image && !m->container_archive)
		return val_err(v, -STORE_EINVALID,
			       "container image: missing (runtime container needs image or archive)");
	if (m->systemd_unit && !store__release_valid_unit(m->systemd_unit))
		return val_err(v, -STORE_EINVALID, "systemd unit: invalid \"%s\"",
			       store__esc(m->systemd_unit, q, sizeof q));
	if (m->container_archive && val_path_problem(m->container_archive))
		return val_err(v, -STORE_EINVALID, "container archive: %s: \"%s\"",
			       val_path_problem(m->container_archive),
			       store__esc(m->container_archive, q, sizeof q));
	if (m->container_image && !store__release_valid_image(m->container_image))
		return val_err(v, -STORE_EINVALID, "container image: invalid \"%s\"",
			       store__esc(m->container_image, q, sizeof q));
	char prog[STORE_IMPORT_MAX_PATH + 1];
	if (m->exec_command && store__release_command_file(m->exec_command, prog, sizeof prog) < 0)
		return val_err(v, -STORE_EINVALID, "exec command: invalid program path in \"%s\"",
			       store__esc(m->exec_command, q, sizeof q));

	const struct store_health_policy *h = &m->health;
	if (!!h->http + !!h->tcp + !!h->exec > 1)
		return val_err(v, -STORE_EINVALID, "health: only one of http, tcp, exec may be set");
	if (h->http && !store__release_valid_http(h->http))
		return val_err(v, -STORE_EINVALID, "health http: invalid URL \"%s\"",
			       store__esc(h->http, q, sizeof q));
	if (h->tcp && !store__release_valid_hostport(h->tcp))
		return val_err(v, -STORE_EINVALID, "health tcp: invalid address \"%s\"",
			       store__esc(h->tcp, q, sizeof q));
	if (h->exec && store__release_command_file(h->exec, prog, sizeof prog) < 0)
		return val_err(v, -STORE_EINVALID, "health exec: invalid program path in \"%s\"",
			       store__esc(h->exec, q, sizeof q));
	if (h->failures > STORE_HEALTH_FAILURES_MAX)
		return val_err(v, -STORE_EINVALID, "health failures: %u, over %d", h->failures,
			       STORE_HEALTH_FAILURES_MAX);

	const struct store_endpoint *ep = &m->endpoint;
	if (ep->port == 0) {
		if (ep->address || ep->weight || ep->protocol || ep->drain_ms)
			return val_err(v, -STORE_EINVALID,
				       "endpoint: fields set without a port (port 0 means no "
				       "endpoint)");
	} else {
		uint8_t a[16];
		if (ep->address && inet_pton(AF_INET, ep->address, a) != 1 &&
		    inet_pton(AF_INET6, ep->address, a) != 1)
			return val_err(v, -STORE_EINVALID,
				       "endpoint address: \"%s\" is not an IPv4 or IPv6 address",
				       store__esc(ep->address, q, sizeof q));
		if (ep->weight > STORE_ENDPOINT_WEIGHT_MAX)
			return val_err(v, -STORE_EINVALID, "endpoint weight: %u, over %d", ep->weight,
				       STORE_ENDPOINT_WEIGHT_MAX);
		if (ep->protocol != STORE_ENDPOINT_TCP && ep->protocol != STORE_ENDPOINT_HTTP)
			return val_err(v, -STORE_EINVALID, "endpoint protocol: unknown (%d)",
				       (int)ep->protocol);
		if (ep->drain_ms > STORE_ENDPOINT_DRAIN_MAX_MS)
			return val_err(v, -STORE_EINVALID, "endpoint drain: %ums, over %ums",
				       ep->drain_ms, STORE_ENDPOINT_DRAIN_MAX_MS);
	}
	if (m->recovery.restarts > STORE_RECOVERY_RESTARTS_MAX)
		return val_err(v, -STORE_EINVALID, "recovery restarts: %u, over %d",
			       m->recovery.restarts, STORE_RECOVERY_RESTARTS_MAX);
	return 0;
}

ssize_t store__path_find(const void *base, size_t n, size_t size, size_t path_off,
			 const char *path, size_t len)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *p;
		memcpy(&p, (const char *)base + mid * size + path_off, sizeof p);
		int c = strncmp(p, path, len);
		if (c == 0 && p[len] != '\0')
			c = 1;
		if (c < 0)
			lo = mid + 1;
		else if (c > 0)
			hi = mid;
		else
			return (ssize_t)mid;
	}
	return -1;
}

/* Index of the file at exactly the first @len bytes of @path (files sorted), or -1. */
static ssize_t val_find(const struct store_manifest *m, const char *path, size_t len)
{
	return store__path_find(m->files, m->nfiles, sizeof m->files[0],
				offsetof(struct store_file, path), path, len);
}

static int val_files(struct val *v, const struct store_import_limits *lim)
{
	const struct store_manifest *m = v->m;
	char q[VAL_QUOTE_BUF];
	if (m->nfiles && !m->files)
		return val_err(v, -STORE_EINVALID, "files: missing list");
	uint64_t total = 0;
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct store_file *f = &m->files[i];
		const char *why = f->path ? val_path_problem(f->path) : "missing path";
		if (why)
			return val_err(v, -STORE_EBADPATH, "\"%s\": %s",
				       f->path ? store__esc(f->path, q, sizeof q) : "", why);
		if (i > 0) {
			int c = strcmp(m->files[i - 1].path, f->path);
			if (c == 0)
				return val_err(v, -STORE_EBADPATH, "\"%s\": duplicate path",
					       store__esc(f->path, q, sizeof q));
			if (c > 0)
				return val_err(v, -STORE_EBADPATH, "\"%s\": files not sorted by path",
					       store__esc(f->path, q, sizeof q));
		}
		/* A file where another needs a directory: "a" then "a/b". Materializing that
		 * would write "b" through whatever "a" is (a symlink to /etc, say). */
		for (const char *s = strchr(f->path, '/'); s; s = strchr(s + 1, '/'))
			if (val_find(m, f->path, (size_t)(s - f->path)) >= 0)
				return val_err(v, -STORE_EBADPATH,
					       "\"%s\": \"%.*s\" is a file, not a directory",
					       store__esc(f->path, q, sizeof q), (int)(s - f->path),
					       f->path);
		if (f->mode != 0644 && f->mode != 0755 && f->mode != 0120000)
			return val_err(v, -STORE_EINVALID, "\"%s\": invalid mode %o",
				       store__esc(f->path, q, sizeof q), f->mode);
		if (f->mode == 0120000 && (f->size == 0 || f->size > STORE_IMPORT_MAX_TARGET))
			return val_err(v, -STORE_EINVALID, "\"%s\": symlink target of %llu bytes",
				       store__esc(f->path, q, sizeof q), (unsigned long long)f->size);
		if (!lim)
			continue;
		if (i >= lim->max_files)
			return val_err(v, -STORE_ETOOBIG, "%s: over the limit of %u files", f->path,
				       lim->max_files);
		if (f->size > lim->max_file_size)
			return val_err(v, -STORE_ETOOBIG,
				       "%s: %llu bytes, over the file size limit of %llu bytes",
				       f->path, (unsigned long long)f->size,
				       (unsigned long long)lim->max_file_size);
		if (f->size > lim->max_total_size - total)
			return val_err(v, -STORE_ETOOBIG, "%s: total size over the limit of %llu bytes",
				       f->path, (unsigned long long)lim->max_total_size);
		total += f->size;
	}
	return 0;
}

/*
 * Can the symlink files[i] (target @target) escape the artifact? See the essay at the top.
 * Paths and targets passed the text rules already, so messages print them as they are.
 */
static int val_resolve(struct val *v, const char *const *targets, size_t i)
{
	const struct store_manifest *m = v->m;
	const char *lpath = m->files[i].path, *ltarget = targets[i];
	/* cur: the directory reached so far ("" = root); rest: what is left to walk. */
	size_t curcap = STORE_IMPORT_MAX_PATH + 1, restcap = strlen(ltarget) + 1;
	char *cur = store__malloc(curcap), *rest = store__malloc(restcap);
	int r = -ENOMEM;
	if (!cur || !rest)
		goto out;
	const char *slash = strrchr(lpath, '/');
	size_t curlen = slash ? (size_t)(slash - lpath) : 0;
	memcpy(cur, lpath, curlen);
	cur[curlen] = '\0';
	memcpy(rest, ltarget, restcap);
	size_t pos = 0;
	unsigned follows = 1;

	if (rest[0] == '/') {
		r = val_err(v, -STORE_EESCAPE,
			    "%s -> %s: absolute symlink target (must stay inside the tree)", lpath,
			    ltarget);
		goto out;
	}
	for (;;) {
		while (rest[pos] == '/')
			pos++;
		if (!rest[pos])
			break;
		size_t n = strcspn(rest + pos, "/");
		const char *name = rest + pos;
		pos += n;
		if (n == 1 && name[0] == '.')
			continue;
		if (n == 2 && name[0] == '.' && name[1] == '.') {
			if (curlen == 0) {
				r = val_err(v, -STORE_EESCAPE,
					    "%s -> %s: symlink points outside the tree", lpath,
					    ltarget);
				goto out;
			}
			while (curlen && cur[curlen - 1] != '/')
				curlen--;
			if (curlen)
				curlen--; /* the '/' before the last component */
			cur[curlen] = '\0';
			continue;
		}
		size_t need = curlen + (curlen ? 1 : 0) + n;
		if (need >= curcap) {
			/* Past any real path (nonexistent components after followed links): not
			 * in the artifact, but ".." may still come back, so keep it. */
			size_t nc = need * 2 + 1;
			char *nb = store__realloc(cur, nc);
			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			cur = nb;
			curcap = nc;
		}
		size_t save = curlen;
		if (curlen)
			cur[curlen++] = '/';
		memcpy(cur + curlen, name, n);
		curlen += n;
		cur[curlen] = '\0';
		ssize_t e = val_find(m, cur, curlen);
		if (e < 0 || m->files[e].mode != 0120000)
			continue; /* a directory, a file or nothing: lexical from here */
		const char *et = targets[e];
		/* A symlink in the artifact: the kernel continues from its target, in its
		 * directory. */
		if (++follows > STORE_IMPORT_MAX_SYMLINKS) {
			r = val_err(v, -STORE_EESCAPE, "%s -> %s: too many levels of symlinks", lpath,
				    ltarget);
			goto out;
		}
		if (et[0] == '/') {
			r = val_err(v, -STORE_EESCAPE, "%s -> %s: leads to %s -> %s, an absolute target",
				    lpath, ltarget, m->files[e].path, et);
			goto out;
		}
		size_t tl = strlen(et), rl = strlen(rest + pos);
		char *nr = store__malloc(tl + 1 + rl + 1);
		if (!nr) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(nr, et, tl);
		nr[tl] = '/';
		memcpy(nr + tl + 1, rest + pos, rl + 1);
		store__free(rest);
		rest = nr;
		pos = 0;
		curlen = save;
		cur[curlen] = '\0';
	}
	r = 0;
out:
	store__free(cur);
	store__free(rest);
	return r;
}

static int val_links(struct val *v, const char *const *targets)
{
	const struct store_manifest *m = v->m;
	char q[VAL_QUOTE_BUF];
	/* Every target first, so resolving may follow any of them without checking again. */
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct store_file *f = &m->files[i];
		if (f->mode != 0120000)
			continue;
		const char *t = targets[i];
		if (!t)
			return val_err(v, -STORE_EBADPATH, "%s: symlink target missing", f->path);
		size_t n = strlen(t);
		if (n != f->size)
			return val_err(v, -STORE_EBADPATH,
				       "%s: symlink target of %zu bytes, the manifest says %llu",
				       f->path, n, (unsigned long long)f->size);
		int c = store__text_check(t, n, 0);
		if (c)
			return val_err(v, -STORE_EBADPATH, "%s -> \"%s\": %s in symlink target",
				       f->path, store__esc(t, q, sizeof q),
				       c == STORE__TEXT_CTL ? "control character" : "invalid UTF-8");
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		if (m->files[i].mode != 0120000)
			continue;
		int r = val_resolve(v, targets, i);
		if (r < 0)
			return r;
	}
	return 0;
}

int store__manifest_check(const struct store_manifest *m, const char *const *targets,
			  const struct store_import_limits *lim, char *err, size_t errlen)
{
	struct val v = { .m = m, .err = errlen ? err : NULL, .errlen = err ? errlen : 0 };
	if (v.err)
		v.err[0] = '\0';
	if (!m)
		return val_err(&v, -EINVAL, "no manifest");
	int r = val_fields(&v);
	if (r == 0)
		r = val_files(&v, lim);
	if (r == 0 && targets)
		r = val_links(&v, targets);
	if (r == -ENOMEM)
		val_err(&v, r, "out of memory");
	return r;
}

int store_manifest_validate(const struct store_manifest *m, const char *const *targets,
			    const struct store_import_limits *lim, char *err, size_t errlen)
{
	struct store_import_limits l = { 0 };
	if (lim)
		l = *lim;
	if (!l.max_file_size)
		l.max_file_size = STORE_IMPORT_MAX_FILE_SIZE;
	if (!l.max_total_size)
		l.max_total_size = STORE_IMPORT_MAX_TOTAL_SIZE;
	if (!l.max_files)
		l.max_files = STORE_IMPORT_MAX_FILES;
	return store__manifest_check(m, targets, &l, err, errlen);
}
