/*
 * tests/fuzz/fuzz_store_validate.c: what a hostile peer controls on a fetch, through the checks
 * it meets: the manifest bytes (store_manifest_decode, which validates without targets) and the
 * symlink targets it streams as blob bytes (store_manifest_validate with targets, as
 * store_import_commit runs it).
 *
 * Input: u32 little-endian length N, N bytes of manifest, then the symlink targets separated by
 * NUL bytes (the i-th string is the target of the i-th symlink in path order; missing ones are
 * taken as empty, which validation must refuse).
 *
 * Properties: every refusal is one of the documented codes with a message; an accepted
 * artifact has only relative, clean, control-free paths and targets, no absolute target, and,
 * when it holds one symlink only (so no other link can be followed on the way, and following
 * itself is a loop), no target that climbs out of the tree lexically: an independent check of
 * the validator's resolver for the cases a simple model can judge.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Does the target climb above the root lexically, counting from @depth directories? */
static int climbs_out(const char *t, int depth)
{
	for (const char *c = t; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return 1;
		} else if (n && !(n == 1 && c[0] == '.')) {
			depth++;
		}
		c += n;
		while (*c == '/')
			c++;
	}
	return 0;
}

static int has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
		   (size_t)data[3] << 24;
	if (n > size - 4)
		return 0;
	struct store_manifest m;
	int r = store_manifest_decode(data + 4, n, &m);
	if (r < 0) {
		if (r != -EBADMSG && r != -ENOMEM && r != -STORE_EFORMAT && r != -STORE_EBADPATH &&
		    r != -STORE_EINVALID)
			abort();
		return 0;
	}
	/* The targets: NUL-separated strings after the manifest, copied so each is terminated. */
	const uint8_t *t = data + 4 + n, *end = data + size;
	size_t tl = (size_t)(end - t);
	char *tbuf = malloc(tl + 1);
	const char **targets = calloc(m.nfiles ? m.nfiles : 1, sizeof(*targets));
	if (!tbuf || !targets)
		abort();
	memcpy(tbuf, t, tl);
	tbuf[tl] = '\0';
	char *next = tbuf, *tend = tbuf + tl;
	for (size_t i = 0; i < m.nfiles; i++) {
		if (m.files[i].mode != 0120000)
			continue;
		targets[i] = next <= tend ? next : "";
		if (next <= tend)
			next += strlen(next) + 1;
	}
	char err[256];
	memset(err, 'x', sizeof err);
	r = store_manifest_validate(&m, targets, NULL, err, sizeof err);
	if (!memchr(err, '\0', sizeof err))
		abort();
	if (r < 0) {
		if (r != -STORE_EINVALID && r != -STORE_EBADPATH && r != -STORE_EESCAPE &&
		    r != -STORE_ETOOBIG && r != -ENOMEM)
			abort();
		if (err[0] == '\0')
			abort(); /* every refusal explains itself */
	} else {
		if (err[0] != '\0')
			abort();
		size_t nlinks = 0;
		for (size_t i = 0; i < m.nfiles; i++)
			nlinks += m.files[i].mode == 0120000;
		for (size_t i = 0; i < m.nfiles; i++) {
			const char *p = m.files[i].path;
			if (p[0] == '/' || has_ctl(p) || strstr(p, "//"))
				abort();
			if (m.files[i].mode != 0120000)
				continue;
			int depth = 0;
			for (const char *c = p; (c = strchr(c, '/')); c++)
				depth++;
			if (targets[i][0] == '/' || has_ctl(targets[i]) ||
			    strlen(targets[i]) != m.files[i].size ||
			    (nlinks == 1 && climbs_out(targets[i], depth)))
				abort();
		}
	}
	free(tbuf);
	free(targets);
	store_manifest_release(&m);
	return 0;
}
