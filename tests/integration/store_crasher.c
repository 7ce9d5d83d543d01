/*
 * tests/integration/store_crasher.c: imports artifacts into a store (fsync on) in a loop and
 * prints "ACK <id> <seed>" only after store_import_commit returned, until it is killed.
 * usage: store_crasher DIR FIRST_SEED
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store_crash_gen.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: store_crasher DIR FIRST_SEED\n");
		return 2;
	}
	struct store_opts opts = { .path = argv[1], .map_size = 4 << 20, .retain_revs = 1000 };
	struct store *s;
	int r = store_open(&opts, &s);
	if (r < 0) {
		fprintf(stderr, "store_crasher: open: %s\n", store_strerror(r));
		return 1;
	}
	uint8_t *buf = malloc(17 * STORE_CHUNK_SIZE + 8 * 1024 * 1024);
	if (!buf)
		return 1;
	for (uint64_t seed = strtoull(argv[2], NULL, 10);; seed++) {
		struct store_import *imp;
		if ((r = store_import_begin(s, &imp)) < 0)
			goto fail;
		unsigned n = cg_nfiles(seed);
		for (unsigned j = 0; j < n; j++) {
			char path[64];
			size_t len = cg_size(seed, j);
			cg_path(j, path, sizeof(path));
			cg_fill(seed, j, buf, len);
			if ((r = store_import_file(imp, path, j ? 0644 : 0755)) < 0)
				goto abort;
			/* in pieces, as a directory walk would */
			for (size_t off = 0; off < len;) {
				size_t k = len - off < 65536 ? len - off : 65536;
				if ((r = store_import_write(imp, buf + off, k)) < 0)
					goto abort;
				off += k;
			}
			if ((r = store_import_file_end(imp)) < 0)
				goto abort;
		}
		struct store_manifest m = { 0 };
		char version[32];
		snprintf(version, sizeof(version), "s%llu", (unsigned long long)seed);
		m.service = strdup("crash");
		m.runtime = strdup("exec");
		m.exec_command = strdup("true"); /* runtime exec requires one */
		m.version = strdup(version);
		struct store_id id;
		r = store_import_commit(imp, &m, seed, &id);
		store_manifest_release(&m);
		if (r < 0)
			goto fail;
		char hex[STORE_ID_HEXLEN + 1];
		printf("ACK %s %llu\n", store_id_hex(&id, hex), (unsigned long long)seed);
		fflush(stdout);
		continue;
abort:
		store_import_abort(imp);
		goto fail;
	}
fail:
	fprintf(stderr, "store_crasher: %s\n", store_strerror(r));
	free(buf);
	store_close(s);
	return 1;
}
