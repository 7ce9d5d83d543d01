/*
 * tests/fuzz/fuzz_store_release.c: release.ini (store_release_parse_files) and durations
 * (store_duration_parse) on arbitrary bytes. Both must return a clean error for anything they
 * refuse, never crash, never leak, and always leave a NUL-terminated message.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Some files exist, some do not: both branches of every existence check get exercised. */
static bool fz_has_file(const char *path, void *ud)
{
	(void)ud;
	return strlen(path) % 2 == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_manifest m;
	char err[256];

	memset(err, 'x', sizeof err);
	int r = store_release_parse_files((const char *)data, size, "release.ini", fz_has_file,
					  NULL, &m, err, sizeof err);
	if (!memchr(err, '\0', sizeof err))
		abort();
	if (r == 0) {
		/* A manifest the parser accepts is one the store can encode. */
		struct store_id id;
		if (store_manifest_id(&m, &id) != 0 || !m.service || !m.runtime)
			abort();
		store_manifest_release(&m);
	} else if (r != -STORE_EINVALID && r != -ENOMEM) {
		abort();
	} else if (err[0] == '\0') {
		abort(); /* every refusal explains itself */
	}

	if (size < 64) {
		char s[64];
		memcpy(s, data, size);
		s[size] = '\0';
		uint64_t ms = 7;
		int d = store_duration_parse(s, &ms);
		if (d != 0 && ms != 7)
			abort();
	}
	return 0;
}
