/*
 * tests/integration/store_crash_test.c: crash safety of imports. Runs store_crasher (imports
 * with fsync on, "ACK <id> <seed>" after each commit) and kill -9s it at a random moment, 50
 * times on the same store; then opens the store and proves that every acknowledged artifact
 * is there and reads back byte-identical (regenerated from its seed), that the store opens
 * cleanly after every kill, and that no garbage is left (the collector finds nothing).
 *
 * SHOAL_SEED=<n> replays the kill timings of a run (the seed is printed).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store_crash_gen.h"
#include "../unit/test_store_util.h"

#define ROUNDS 50
#define MAX_ACKS 100000

struct ack {
	struct store_id id;
	uint64_t seed;
};

static struct ack acks[MAX_ACKS];
static size_t nacks;
static char *work;
static pid_t child = -1;

static void cleanup(void)
{
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (work)
		tu_rm_rf(work);
}

#define FAIL(...)                                                                                \
	do {                                                                                      \
		fprintf(stderr, "FAIL: " __VA_ARGS__);                                             \
		fprintf(stderr, "\n");                                                             \
		cleanup();                                                                         \
		exit(1);                                                                           \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void parse_line(const char *line)
{
	char hex[STORE_ID_HEXLEN + 8];
	unsigned long long seed;
	if (sscanf(line, "ACK %70s %llu", hex, &seed) != 2)
		FAIL("crasher said '%s'", line);
	if (nacks == MAX_ACKS)
		FAIL("too many acks");
	if (store_id_parse(hex, &acks[nacks].id) < 0)
		FAIL("bad id in '%s'", line);
	acks[nacks++].seed = seed;
}

/* One run: start the crasher, let it work for @ms, kill -9 it; collect complete ACK lines. */
static void run_once(const char *crasher, const char *db, uint64_t first_seed, unsigned ms)
{
	int p[2];
	if (pipe(p) < 0)
		FAIL("pipe: %s", strerror(errno));
	char seedarg[32];
	snprintf(seedarg, sizeof(seedarg), "%llu", (unsigned long long)first_seed);
	child = fork();
	if (child < 0)
		FAIL("fork: %s", strerror(errno));
	if (child == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execl(crasher, crasher, db, seedarg, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char buf[65536];
	size_t have = 0;
	uint64_t deadline = now_ms() + ms;
	bool eof = false;
	for (;;) {
		uint64_t t = now_ms();
		if (t >= deadline || eof)
			break;
		struct pollfd pfd = { p[0], POLLIN, 0 };
		int n = poll(&pfd, 1, (int)(deadline - t));
		if (n <= 0)
			continue;
		ssize_t r = read(p[0], buf + have, sizeof(buf) - 1 - have);
		if (r <= 0) {
			eof = true;
			break;
		}
		have += (size_t)r;
		buf[have] = '\0';
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			*nl = '\0';
			parse_line(buf);
			size_t used = (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have - used);
			have -= used;
		}
	}
	kill(child, SIGKILL);
	int status;
	waitpid(child, &status, 0);
	child = -1;
	/* Lines written before the kill are still in the pipe: a commit that returned counts. */
	for (;;) {
		ssize_t r = read(p[0], buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		buf[have] = '\0';
		char *nl;
		while ((nl = memchr(buf, '\n', have))) {
			*nl = '\0';
			parse_line(buf);
			size_t used = (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have - used);
			have -= used;
		}
	}
	close(p[0]);
	if (eof && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		FAIL("crasher exited by itself (status %d)", status);
}

static void verify_all(struct store *s)
{
	uint8_t *want = malloc(17 * STORE_CHUNK_SIZE + 8 * 1024 * 1024);
	uint8_t *got = malloc(17 * STORE_CHUNK_SIZE + 8 * 1024 * 1024);
	for (size_t i = 0; i < nacks; i++) {
		struct store_artifact_info a;
		char hex[STORE_ID_HEXLEN + 1];
		int r = store_artifact_get(s, &acks[i].id, &a);
		if (r < 0)
			FAIL("acked artifact %s (seed %llu) missing: %s", store_id_hex(&acks[i].id, hex),
			     (unsigned long long)acks[i].seed, store_strerror(r));
		unsigned n = cg_nfiles(acks[i].seed);
		if (a.manifest.nfiles != n)
			FAIL("seed %llu: %zu files, want %u", (unsigned long long)acks[i].seed,
			     a.manifest.nfiles, n);
		for (unsigned j = 0; j < n; j++) {
			char path[64];
			cg_path(j, path, sizeof(path));
			const struct store_file *f = NULL;
			for (size_t k = 0; k < n; k++)
				if (!strcmp(a.manifest.files[k].path, path))
					f = &a.manifest.files[k];
			if (!f)
				FAIL("seed %llu: no file %s", (unsigned long long)acks[i].seed, path);
			size_t len = cg_size(acks[i].seed, j);
			cg_fill(acks[i].seed, j, want, len);
			int64_t got_len = store_blob_read(s, &f->blob, 0, got, len + 1, true);
			if (got_len != (int64_t)len || memcmp(got, want, len))
				FAIL("seed %llu file %s: read %lld bytes, want %zu identical",
				     (unsigned long long)acks[i].seed, path, (long long)got_len, len);
		}
		store_artifact_info_release(&a);
	}
	free(want);
	free(got);
}

int main(void)
{
	const char *crasher = STORE_CRASHER;
	uint64_t seed = getenv("SHOAL_SEED") ? strtoull(getenv("SHOAL_SEED"), NULL, 10) :
					       (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	printf("store_crash_test: SHOAL_SEED=%llu\n", (unsigned long long)seed);
	srandom((unsigned)seed);
	work = tu_tmpdir();
	if (!work)
		FAIL("mkdtemp: %s", strerror(errno));
	char db[4200];
	snprintf(db, sizeof(db), "%s/db", work);
	uint64_t t0 = now_ms();
	uint64_t next_seed = 1;
	for (int round = 0; round < ROUNDS; round++) {
		size_t before = nacks;
		/* kill moments from "during open" to "several imports in" */
		unsigned ms = 5 + (unsigned)(random() % 400);
		run_once(crasher, db, next_seed, ms);
		next_seed += 1000; /* seeds of different runs never collide */
		/* the store opens cleanly after every kill */
		struct store_opts opts = { .path = db };
		struct store *s;
		int r = store_open(&opts, &s);
		if (r < 0)
			FAIL("round %d: open after kill: %s", round, store_strerror(r));
		store_close(s);
		printf("round %2d: killed after %3u ms, %zu acks (%zu total)\n", round, ms,
		       nacks - before, nacks);
	}
	struct store_opts opts = { .path = db };
	struct store *s;
	int r = store_open(&opts, &s);
	if (r < 0)
		FAIL("final open: %s", store_strerror(r));
	verify_all(s);
	/* Opening collected the chunks of the import the last kill interrupted: nothing is left. */
	r = store_gc(s);
	if (r != 0)
		FAIL("garbage left after crashes: store_gc removed %d records", r);
	struct store_stats st;
	if (store_stats(s, &st) < 0)
		FAIL("stats");
	/* An import may have committed without its ACK reaching us: >= is what must hold. */
	if (st.nartifacts < nacks)
		FAIL("%llu artifacts < %zu acks", (unsigned long long)st.nartifacts, nacks);
	store_close(s);
	printf("store_crash_test: %d kills, %zu acked artifacts verified (%llu in store), %llu "
	       "chunks, %.1f s\n",
	       ROUNDS, nacks, (unsigned long long)st.nartifacts, (unsigned long long)st.nchunks,
	       (double)(now_ms() - t0) / 1000.0);
	if (nacks < ROUNDS / 2)
		FAIL("only %zu acks: the crasher made too little progress to prove anything", nacks);
	cleanup();
	return 0;
}
