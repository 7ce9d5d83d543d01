/*
 * tests/unit/test_store_util.h: helpers shared by the store's unit tests (header-only, static).
 * Real LMDB environments in unique mkdtemp directories, removed at teardown.
 */
#ifndef TEST_STORE_UTIL_H
#define TEST_STORE_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

static inline void tu_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (d) {
			struct dirent *e;
			while ((e = readdir(d))) {
				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
					continue;
				char sub[8192];
				if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub))
					continue;
				tu_rm_rf(sub);
			}
			closedir(d);
		}
		rmdir(path);
	} else {
		unlink(path);
	}
}

/* A fresh unique directory; *ret_dir malloc'd. */
static inline char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char t[4096];
	snprintf(t, sizeof(t), "%s/shoal-store-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(t))
		return NULL;
	return strdup(t);
}

/* Deterministic pseudo-random bytes from a seed (xorshift64*). */
static inline void tu_fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 2685821657736338717ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = (uint8_t)((x * 2685821657736338717ull) >> 56);
	}
}

/* Raw LMDB access to a store's environment (the store must be closed): run @fn on db @name. */
static inline int tu_raw(const char *path, const char *name,
			 int (*fn)(MDB_txn *txn, MDB_dbi dbi, void *ud), void *ud)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc = mdb_env_create(&env);
	if (rc)
		return rc;
	mdb_env_set_maxdbs(env, 32);
	rc = mdb_env_open(env, path, 0, 0600);
	if (rc)
		goto out;
	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc)
		goto out;
	rc = mdb_dbi_open(txn, name, 0, &dbi);
	if (!rc)
		rc = fn(txn, dbi, ud);
	if (rc)
		mdb_txn_abort(txn);
	else
		rc = mdb_txn_commit(txn);
out:
	mdb_env_close(env);
	return rc;
}

#endif
