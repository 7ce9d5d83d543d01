/*
 * store/store_int.h: internals shared between the files of the store module (store__ prefix).
 * Nothing outside store/ and its tests includes this header.
 */
#ifndef SHOAL_STORE_INT_H
#define SHOAL_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#include "store/store.h"

/* ---- Allocation (every allocation the store itself makes goes through these) ------------- */

void *store__malloc(size_t n);
void *store__calloc(size_t nmemb, size_t n);
void *store__realloc(void *p, size_t n);
char *store__strdup(const char *s);
char *store__strndup(const char *s, size_t n);
void store__free(void *p);

/*
 * Binary search of an array of @n elements of @size bytes, sorted by strcmp of the `char *`
 * path at @path_off in each, for the element whose path is exactly the first @len bytes of
 * @path (so a prefix of a longer path can be looked up without a copy). Its index, or -1.
 * (validate.c: manifests' files; import.c: the tree being imported.)
 */
ssize_t store__path_find(const void *base, size_t n, size_t size, size_t path_off,
			 const char *path, size_t len);

/* ---- Databases ----------------------------------------------------------------------------- */

enum store_dbi {
	DB_META,
	DB_CHUNKS,
	DB_BLOBS,
	DB_ARTIFACTS,
	DB_ARTMETA,
	DB_REVISIONS,
	DB_VOTES,
	DB_JOURNAL,
	DB_SERVICES,
	DB_KV_MEMBERS,
	DB_KV_RECORDS,
	DB_KV_AGENT,
	DB__COUNT
};

struct store__import_list;

struct store {
	MDB_env *env;
	MDB_dbi dbi[DB__COUNT];
	size_t map_size;	/* current map size */
	int panic_errno;	/* the system error of the commit after which LMDB refuses every
				 * transaction (MDB_PANIC), e.g. ENOSPC; 0 if none (atomic) */
	size_t map_max;
	unsigned retain_revs;
	/*
	 * mdb_env_set_mapsize may only be called while this process has no transaction open, so
	 * every transaction holds this lock shared and growing the map takes it exclusive.
	 */
	pthread_rwlock_t maplock;
	/* Imports in progress: their chunk hashes are protected from garbage collection. */
	pthread_mutex_t implock;
	struct store_import *imports;
};

/*
 * Run @fn inside one write transaction, committing if it returns >= 0 and aborting otherwise.
 * On MDB_MAP_FULL (from @fn or from the commit) the map is doubled (up to map_max) and @fn is
 * run again from the start in a fresh transaction, so @fn must be restartable: it may not keep
 * state from an earlier attempt. Returns what @fn returned, or a translated error.
 */
int store__write(struct store *s, int (*fn)(struct store *s, MDB_txn *txn, void *ud), void *ud);
/* Same, read-only: @fn runs in a read transaction that is always aborted afterwards. */
int store__read(struct store *s, int (*fn)(struct store *s, MDB_txn *txn, void *ud), void *ud);

/* LMDB return code -> negative errno (0 stays 0). */
int store__mdb_err(int rc);

/* Big-endian helpers for keys. */
void store__be64_put(uint8_t *p, uint64_t v);
uint64_t store__be64_get(const uint8_t *p);
void store__be32_put(uint8_t *p, uint32_t v);
uint32_t store__be32_get(const uint8_t *p);

/* [a-zA-Z0-9._-]{1,64} */
bool store__service_valid(const char *service);

/* BLAKE2b-256 of @len bytes. */
void store__hash(const void *buf, size_t len, struct store_id *ret);

/* Garbage collection of unreferenced blobs and chunks, inside @txn. Returns count or error. */
int store__gc_txn(struct store *s, MDB_txn *txn);

/*
 * artmeta record: u8 version (1), u8 flags, be64 imported_at, be64 seq, be64 total_size,
 * u8 service length, service bytes.
 */
#define ARTMETA_FIXED 27
#define AM_CONDEMNED  1
#define AM_DEPLOYED   2

/* Meta key set while chunks of an uncommitted import may be in the store. */
#define STORE_META_ORPHANS "orphans"

/* A growable byte buffer using the store's allocator (also the msgpack-c write callback). */
struct store__buf {
	uint8_t *data;
	size_t len, cap;
};
int store__buf_append(struct store__buf *b, const void *p, size_t n);
int store__buf_write_cb(void *data, const char *buf, size_t len); /* msgpack_packer_write */

/*
 * A bounds-checked msgpack reader over borrowed bytes. Every function returns 0 or -EBADMSG,
 * and on failure leaves the reader at an unspecified position (callers give up).
 */
struct store__rd {
	const uint8_t *p, *end;
};
int store__rd_array(struct store__rd *r, uint32_t *ret_n);
int store__rd_uint(struct store__rd *r, uint64_t *ret);
int store__rd_int(struct store__rd *r, int64_t *ret);
/* A str (not nil): borrowed pointer into the input, length; NUL bytes inside are refused. */
int store__rd_str(struct store__rd *r, const char **ret, size_t *ret_len);
/* Returns 1 (and consumes it) when the next object is nil, 0 when not, -EBADMSG at end. */
int store__rd_nil(struct store__rd *r);
/* A bin of exactly @len bytes. */
int store__rd_bin_exact(struct store__rd *r, void *out, size_t len);

/* ---- Validation (store/validate.c; the field syntax of release.ini in store/release.c) ---- */

/*
 * store_manifest_validate with @lim taken as given: NULL means no configured limits (the codec
 * checks only what the format itself bounds).
 */
int store__manifest_check(const struct store_manifest *m, const char *const *targets,
			  const struct store_import_limits *lim, char *err, size_t errlen);

/* Text rules: @n bytes of @s are valid UTF-8 without C0, DEL or C1 controls, except those
 * @allow lets through. Returns 0, STORE__TEXT_CTL or STORE__TEXT_UTF8. */
#define STORE__TEXT_TAB 1u /* '\t' allowed */
#define STORE__TEXT_NL	2u /* '\n' and '\r' allowed */
#define STORE__TEXT_CTL	 1
#define STORE__TEXT_UTF8 2
int store__text_check(const char *s, size_t n, unsigned allow);
/* Replace, in place, every byte of a character store__text_check refuses with '?'. */
void store__text_sanitize(char *s, unsigned allow);
/* @v for a message: printable ASCII kept, '"' and '\\' escaped, other bytes as \xNN, cut at 64
 * bytes with "..."; @cap >= 264. Returns @out. */
const char *store__esc(const char *v, char *out, size_t cap);

/* release.ini's value syntax, shared with the validator (store/release.c). */
bool store__release_valid_http(const char *v);
bool store__release_valid_hostport(const char *v);
bool store__release_valid_image(const char *v);
bool store__release_valid_unit(const char *v);
/* The artifact file a command runs, if any: 1 (path in @out), 0 (from the host), -1 (invalid). */
int store__release_command_file(const char *cmd, char *out, size_t cap);

#endif
