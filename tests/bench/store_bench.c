/*
 * tests/bench/store_bench.c: store throughput and latency, printed as a table.
 *
 *   import MB/s (fsync on)    one 64 MiB file, and 256 files of 64 KiB (one artifact each)
 *   read MB/s                 a 100 MiB blob read back in 1 MiB pieces (one copy out of the
 *                             map), streamed zero-copy (store_blob_stream), each without and
 *                             with hash verification, and materialized to a directory
 *   history latency           store_revision_foreach over 10,000 revisions: newest 20, all
 *
 * usage: bench_store [DIR]   (default: a fresh directory under $TMPDIR or /tmp; removed after)
 * Build it without sanitizers for meaningful numbers:
 *   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel --target bench_store
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "../unit/test_store_util.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, store_strerror(r));
	exit(1);
}

static void import_one(struct store *s, const char *service, const char *version, size_t nfiles,
		       const uint8_t *data, size_t len, struct store_id *ret)
{
	struct store_import *imp;
	int r = store_import_begin(s, &imp);
	if (r < 0)
		die("import_begin", r);
	for (size_t i = 0; i < nfiles; i++) {
		char path[32];
		snprintf(path, sizeof(path), "f%zu", i);
		if ((r = store_import_file(imp, path, 0644)) < 0)
			die("import_file", r);
		for (size_t off = 0; off < len;) {
			size_t k = len - off < (1 << 20) ? len - off : (1 << 20);
			if ((r = store_import_write(imp, data + off, k)) < 0)
				die("import_write", r);
			off += k;
		}
		if ((r = store_import_file_end(imp)) < 0)
			die("import_file_end", r);
	}
	struct store_manifest m = { 0 };
	m.service = strdup(service);
	m.runtime = strdup("exec");
	m.exec_command = strdup("true"); /* runtime exec requires one */
	m.version = strdup(version);
	if ((r = store_import_commit(imp, &m, 1, ret)) < 0)
		die("import_commit", r);
	store_manifest_release(&m);
}

static volatile uint64_t sink;

/* Touches every byte (a cheap checksum), as a sender writing the bytes out would. */
static int sum_cb(const void *buf, size_t len, void *ud)
{
	const uint64_t *p = buf;
	uint64_t x = 0;
	for (size_t i = 0; i < len / 8; i++)
		x += p[i];
	sink += x;
	*(uint64_t *)ud += len;
	return 0;
}

static int count_cb(const struct store_revision *r, void *ud)
{
	(*(unsigned *)ud)++;
	return 0;
}

int main(int argc, char **argv)
{
	char *dir = argc > 1 ? strdup(argv[1]) : tu_tmpdir();
	bool own = argc <= 1;
	char path[4200], mat[4200];
	snprintf(path, sizeof(path), "%s/db", dir);
	snprintf(mat, sizeof(mat), "%s/mat", dir);
	const size_t big = 100u << 20;
	uint8_t *data = malloc(big), *out = malloc(1 << 20);
	tu_fill(data, big, 1);
	printf("%-44s %12s %s\n", "benchmark", "result", "unit");
	printf("%-44s %12s %s\n", "---------", "------", "----");

	/* Imports with fsync on. */
	struct store_opts opts = { .path = path, .map_size = 1u << 30 };
	struct store *s;
	int r = store_open(&opts, &s);
	if (r < 0)
		die("open", r);
	struct store_id id;
	double t = now_s();
	import_one(s, "bench", "big64", 1, data, 64u << 20, &id);
	double dt = now_s() - t;
	printf("%-44s %12.1f %s\n", "import 1 x 64 MiB file, fsync", 64.0 / dt, "MiB/s");
	t = now_s();
	for (int i = 0; i < 256; i++) {
		char v[16];
		snprintf(v, sizeof(v), "small%d", i);
		import_one(s, "bench", v, 1, data + (size_t)i * 65536 + 12345, 65536, &id);
	}
	dt = now_s() - t;
	printf("%-44s %12.1f %s\n", "import 256 artifacts x 64 KiB, fsync", 16.0 / dt, "MiB/s");
	printf("%-44s %12.2f %s\n", "  per small artifact (commit latency)", dt / 256 * 1e3, "ms");
	store_close(s);
	tu_rm_rf(path);

	/* Reading a 100 MiB artifact. */
	opts.nosync = true;
	if ((r = store_open(&opts, &s)) < 0)
		die("open", r);
	import_one(s, "bench", "big100", 1, data, big, &id);
	struct store_artifact_info a;
	if ((r = store_artifact_get(s, &id, &a)) < 0)
		die("get", r);
	struct store_id blob = a.manifest.files[0].blob;
	store_artifact_info_release(&a);
	for (int verify = 0; verify < 2; verify++) {
		double best = 1e9;
		for (int rep = 0; rep < 3; rep++) {
			t = now_s();
			uint64_t off = 0;
			for (;;) {
				int64_t n = store_blob_read(s, &blob, off, out, 1 << 20, verify);
				if (n < 0)
					die("read", (int)n);
				if (n == 0)
					break;
				off += (uint64_t)n;
			}
			dt = now_s() - t;
			if (off != big)
				die("read length", -EIO);
			if (dt < best)
				best = dt;
		}
		printf("%-44s %12.1f %s\n",
		       verify ? "read 100 MiB blob, 1 MiB reads, verified" :
				"read 100 MiB blob, 1 MiB reads", 100.0 / best, "MiB/s");
	}
	for (int verify = 0; verify < 2; verify++) {
		double best = 1e9;
		for (int rep = 0; rep < 3; rep++) {
			uint64_t sum = 0;
			t = now_s();
			if ((r = store_blob_stream(s, &blob, 0, 0, verify, sum_cb, &sum)) < 0)
				die("stream", r);
			dt = now_s() - t;
			if (sum != big)
				die("stream length", -EIO);
			if (dt < best)
				best = dt;
		}
		printf("%-44s %12.1f %s\n",
		       verify ? "stream 100 MiB blob (zero-copy), verified" :
				"stream 100 MiB blob (zero-copy, touch all)", 100.0 / best, "MiB/s");
	}
	t = now_s();
	if ((r = store_artifact_materialize(s, &id, mat)) < 0)
		die("materialize", r);
	dt = now_s() - t;
	printf("%-44s %12.1f %s\n", "materialize 100 MiB (verified, fsync'd file)", 100.0 / dt,
	       "MiB/s");

	/* History over 10,000 revisions. */
	store_close(s);
	tu_rm_rf(path);
	opts.retain_revs = 20000;
	if ((r = store_open(&opts, &s)) < 0)
		die("open", r);
	t = now_s();
	for (uint64_t rev = 1; rev <= 10000; rev++) {
		struct store_revision rv = { .rev = rev, .hlc = rev << 16 };
		strcpy(rv.service, "web");
		rv.artifact = id;
		snprintf(rv.reason, sizeof(rv.reason), "deploy number %llu by the benchmark",
			 (unsigned long long)rev);
		if ((r = store_revision_put(s, &rv)) < 0)
			die("revision_put", r);
		/* a second service interleaved, so "web" is not the whole table */
		strcpy(rv.service, "api");
		if ((r = store_revision_put(s, &rv)) < 0)
			die("revision_put", r);
	}
	dt = now_s() - t;
	printf("%-44s %12.1f %s\n", "revision_put (nosync, with retention)", 20000 / dt, "ops/s");
	unsigned limits[2] = { 20, 0 };
	for (int i = 0; i < 2; i++) {
		int reps = limits[i] ? 1000 : 50;
		unsigned n = 0;
		t = now_s();
		for (int k = 0; k < reps; k++)
			if ((r = store_revision_foreach(s, "web", limits[i], count_cb, &n)) < 0)
				die("foreach", r);
		dt = (now_s() - t) / reps;
		if (n != (limits[i] ? 20u : 10000u) * (unsigned)reps)
			die("foreach count", -EIO);
		printf("%-44s %12.3f %s\n",
		       limits[i] ? "history web (newest 20 of 10,000 revisions)" :
				   "history web (all 10,000 revisions)", dt * 1e3, "ms");
	}
	uint64_t latest = 0;
	t = now_s();
	for (int k = 0; k < 10000; k++)
		store_revision_latest(s, "web", &latest);
	dt = (now_s() - t) / 10000;
	printf("%-44s %12.3f %s\n", "revision_latest", dt * 1e6, "us");
	store_close(s);
	if (own)
		tu_rm_rf(dir);
	free(dir);
	free(data);
	free(out);
	return 0;
}
