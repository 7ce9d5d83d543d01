/*
 * store/db.c: the LMDB environment, transactions (with map growth), errors, and the small
 * tables (meta, journal, services, kv_*).
 *
 * Key layouts (all integers big-endian so keys sort numerically):
 *
 *   meta       "schema" -> be32 version; "node_id" -> 16 bytes; "seq" -> be64 import counter;
 *              "orphans" -> "" while chunks of an uncommitted import may exist
 *   chunks     hash(32) -> bytes (<= STORE_CHUNK_SIZE)
 *   blobs      id(32) -> be64 size, then ceil(size / STORE_CHUNK_SIZE) chunk hashes of 32 bytes
 *   artifacts  id(32) -> canonical manifest (store_manifest_encode)
 *   artmeta    id(32) -> u8 version(1), u8 flags (1 condemned, 2 deployed), be64 imported_at,
 *              be64 seq, be64 total_size, u8 len, service bytes
 *   revisions  service \0 be64 rev -> store_revision_encode
 *   votes      service \0 be64 rev, voter(16) -> u8 reason, be64 hlc
 *   journal    service -> opaque bytes
 *   services   service -> running(32) be64 running_rev last_good(32)
 *   kv_*       opaque
 *
 * Map growth: LMDB reports MDB_MAP_FULL when a write transaction needs more pages than the
 * map holds; the transaction is then dead. store__write aborts it, doubles the map with
 * mdb_env_set_mapsize (legal only while this process has no transaction open, hence the
 * rwlock every transaction holds shared) and runs the whole transaction function again.
 */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store/store_int.h"

static const char *const db_names[DB__COUNT] = {
	[DB_META] = "meta",	      [DB_CHUNKS] = "chunks",	    [DB_BLOBS] = "blobs",
	[DB_ARTIFACTS] = "artifacts", [DB_ARTMETA] = "artmeta",	    [DB_REVISIONS] = "revisions",
	[DB_VOTES] = "votes",	      [DB_JOURNAL] = "journal",	    [DB_SERVICES] = "services",
	[DB_KV_MEMBERS] = "kv_members", [DB_KV_RECORDS] = "kv_records",
	[DB_KV_AGENT] = "kv_agent",
};

#define DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define DEFAULT_MAP_MAX	 ((size_t)64 << 30)

/* ---- Small helpers -------------------------------------------------------------------------- */

void store__be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint64_t store__be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void store__be32_put(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint32_t store__be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool store__service_valid(const char *service)
{
	if (!service)
		return false;
	size_t n = strlen(service);
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = service[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void store__hash(const void *buf, size_t len, struct store_id *ret)
{
	crypto_generichash(ret->b, STORE_ID_LEN, buf, len, NULL, 0);
}

char *store_id_hex(const struct store_id *id, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < STORE_ID_LEN; i++) {
		out[2 * i] = hx[id->b[i] >> 4];
		out[2 * i + 1] = hx[id->b[i] & 15];
	}
	out[STORE_ID_HEXLEN] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int store_id_parse(const char *hex, struct store_id *ret)
{
	struct store_id id;
	if (!hex || strlen(hex) != STORE_ID_HEXLEN)
		return -EINVAL;
	for (int i = 0; i < STORE_ID_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		id.b[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = id;
	return 0;
}

int store__mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_BAD_TXN:
		return -EIO;
	case MDB_READERS_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
	case MDB_DBS_FULL:
	case MDB_TLS_FULL:
		return -ENOBUFS;
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_RSLOT:
		return -EINVAL;
	default:
		/* LMDB passes system errors through as positive errno values. */
		return rc > 0 ? -rc : -EIO;
	}
}

const char *store_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case STORE_ESCHEMA:
		return "store was written by another version of shoal (its schema differs; there is "
		       "no migration: move the state directory aside)";
	case STORE_EINVALID:
		return "artifact or release.ini invalid";
	case STORE_ENOTREPO:
		return "not a git repository";
	case STORE_ENOREF:
		return "git ref not found";
	case STORE_ETOOBIG:
		return "file too big";
	case STORE_EESCAPE:
		return "symlink points outside the artifact";
	case STORE_ECONDEMNED:
		return "artifact is condemned (use --force)";
	case STORE_ECORRUPT:
		return "stored data does not match its hash";
	case STORE_EBADPATH:
		return "unsafe path in the artifact (absolute, \"..\", empty component, control "
		       "character, duplicate, or a file where a directory must be)";
	case STORE_EFORMAT:
		return "artifact manifest in a format version this build does not know";
	case EFBIG:
		return "store is full (map_max reached)";
	case ENOSPC:
		return "no space left on the filesystem of the state directory";
	default:
		if (err > STORE_EBASE && err < STORE_EBASE + 100)
			return "unknown store error";
		return strerror(err);
	}
}

/* ---- Transactions ---------------------------------------------------------------------------- */

/* Grow the map: double it, capped at map_max. -EFBIG when already at the maximum (the disk
 * itself being full is -ENOSPC: two different fixes for an operator). */
static int grow_map(struct store *s, size_t seen)
{
	int r = 0;
	pthread_rwlock_wrlock(&s->maplock);
	/* Another thread may have grown it while we waited. */
	if (s->map_size > seen)
		goto out;
	if (s->map_size >= s->map_max) {
		r = -EFBIG;
		goto out;
	}
	size_t want = s->map_size > s->map_max / 2 ? s->map_max : s->map_size * 2;
	int rc = mdb_env_set_mapsize(s->env, want);
	if (rc) {
		r = store__mdb_err(rc);
		goto out;
	}
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;
out:
	pthread_rwlock_unlock(&s->maplock);
	return r;
}

/* Another process grew the map: adopt its size (no transaction may be open). */
static void adopt_map(struct store *s)
{
	pthread_rwlock_wrlock(&s->maplock);
	if (mdb_env_set_mapsize(s->env, 0) == 0) {
		MDB_envinfo info;
		mdb_env_info(s->env, &info);
		s->map_size = info.me_mapsize;
	}
	pthread_rwlock_unlock(&s->maplock);
}

/*
 * LMDB reports a short write as EIO ("which error code?" says its source): that is what a
 * full filesystem gives (tmpfs, ext4 near full). A commit that failed with EIO on a
 * filesystem with less than 1 MiB left is reported as ENOSPC, which an operator can act on.
 */
static bool disk_full(struct store *s)
{
	int fd;
	struct statvfs st;
	if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &st) != 0)
		return false;
	return (uint64_t)st.f_bavail * st.f_frsize < ((uint64_t)1 << 20);
}

/* store__mdb_err, except that MDB_PANIC says which system error caused it, if known. */
static int panic_err(struct store *s, int rc)
{
	int e = __atomic_load_n(&s->panic_errno, __ATOMIC_RELAXED);
	return rc == MDB_PANIC && e > 0 ? -e : store__mdb_err(rc);
}

int store__write(struct store *s, int (*fn)(struct store *s, MDB_txn *txn, void *ud), void *ud)
{
	for (;;) {
		MDB_txn *txn;
		pthread_rwlock_rdlock(&s->maplock);
		size_t seen = s->map_size;
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (rc) {
			pthread_rwlock_unlock(&s->maplock);
			if (rc == MDB_MAP_RESIZED) {
				adopt_map(s);
				continue;
			}
			return panic_err(s, rc);
		}
		int r = fn(s, txn, ud);
		bool full = false;
		if (r >= 0) {
			rc = mdb_txn_commit(txn);
			if (rc == MDB_MAP_FULL)
				full = true;
			else if (rc)
				r = rc == EIO && disk_full(s) ? -ENOSPC : store__mdb_err(rc);
			/* A write the disk refused (ENOSPC, EDQUOT, EIO) can leave the environment
			 * refusing everything after it (MDB_PANIC): remember why, so that what
			 * follows says "No space left on device", not "Input/output error". */
			if (rc > 0)
				__atomic_store_n(&s->panic_errno, -r, __ATOMIC_RELAXED);
		} else {
			mdb_txn_abort(txn);
			/* Only LMDB's MDB_MAP_FULL becomes -ENOSPC inside a transaction function. */
			full = r == -ENOSPC;
		}
		pthread_rwlock_unlock(&s->maplock);
		if (!full)
			return r;
		/* The map was full: grow it and run the transaction again from the start. */
		int g = grow_map(s, seen);
		if (g < 0)
			return g;
	}
}

int store__read(struct store *s, int (*fn)(struct store *s, MDB_txn *txn, void *ud), void *ud)
{
	for (;;) {
		MDB_txn *txn;
		pthread_rwlock_rdlock(&s->maplock);
		int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (rc) {
			pthread_rwlock_unlock(&s->maplock);
			if (rc == MDB_MAP_RESIZED) {
				adopt_map(s);
				continue;
			}
			return panic_err(s, rc);
		}
		int r = fn(s, txn, ud);
		mdb_txn_abort(txn);
		pthread_rwlock_unlock(&s->maplock);
		return r;
	}
}

/* ---- Open / close ------------------------------------------------------------------------------ */

static int open_fn(struct store *s, MDB_txn *txn, void *ud)
{
	for (int i = 0; i < DB__COUNT; i++) {
		int rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
		if (rc)
			return store__mdb_err(rc);
	}
	MDB_val k = { 6, "schema" }, v;
	int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
	if (rc == 0) {
		if (v.mv_size != 4)
			return -EIO;
		uint32_t ver = store__be32_get(v.mv_data);
		if (ver == 0)
			return -EIO;
		/* Older too: schema 1 holds manifests in format 1, which this build cannot read
		 * (and the ids of format 2 differ), so its artifacts would all look damaged. */
		if (ver != STORE_SCHEMA_VERSION)
			return -STORE_ESCHEMA;
	} else if (rc == MDB_NOTFOUND) {
		uint8_t b[4];
		store__be32_put(b, STORE_SCHEMA_VERSION);
		v.mv_size = 4;
		v.mv_data = b;
		rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
		if (rc)
			return store__mdb_err(rc);
	} else {
		return store__mdb_err(rc);
	}
	/* Chunks of an import that was interrupted by a crash: collect them now. */
	k.mv_size = strlen(STORE_META_ORPHANS);
	k.mv_data = STORE_META_ORPHANS;
	rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
	if (rc == 0) {
		int r = store__gc_txn(s, txn);
		if (r < 0)
			return r;
		rc = mdb_del(txn, s->dbi[DB_META], &k, NULL);
		if (rc)
			return store__mdb_err(rc);
	} else if (rc != MDB_NOTFOUND) {
		return store__mdb_err(rc);
	}
	return 0;
}

int store_open(const struct store_opts *opts, struct store **ret)
{
	if (!opts || !opts->path || !ret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	int r;
	struct store *s = store__calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	bool locks = false;
	s->map_size = opts->map_size ? opts->map_size : DEFAULT_MAP_SIZE;
	s->map_max = opts->map_max ? opts->map_max : DEFAULT_MAP_MAX;
	if (s->map_size > s->map_max)
		s->map_size = s->map_max;
	s->retain_revs = opts->retain_revs ? opts->retain_revs : 10;
	if (pthread_rwlock_init(&s->maplock, NULL)) {
		r = -ENOMEM;
		goto fail;
	}
	if (pthread_mutex_init(&s->implock, NULL)) {
		pthread_rwlock_destroy(&s->maplock);
		r = -ENOMEM;
		goto fail;
	}
	locks = true;
	if (mkdir(opts->path, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	int rc = mdb_env_create(&s->env);
	if (rc) {
		r = store__mdb_err(rc);
		goto fail;
	}
	mdb_env_set_maxdbs(s->env, DB__COUNT + 4);
	mdb_env_set_maxreaders(s->env, 126);
	mdb_env_set_mapsize(s->env, s->map_size);
	unsigned flags = MDB_NOTLS;
	if (opts->nosync)
		flags |= MDB_NOSYNC;
	rc = mdb_env_open(s->env, opts->path, flags, 0600);
	if (rc) {
		r = store__mdb_err(rc);
		goto fail;
	}
	/* An existing environment may already be bigger than asked for. */
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	s->map_size = info.me_mapsize;
	if (s->map_size > s->map_max)
		s->map_max = s->map_size;
	r = store__write(s, open_fn, NULL);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	if (s->env)
		mdb_env_close(s->env);
	if (locks) {
		pthread_rwlock_destroy(&s->maplock);
		pthread_mutex_destroy(&s->implock);
	}
	store__free(s);
	return r;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	mdb_env_close(s->env);
	pthread_rwlock_destroy(&s->maplock);
	pthread_mutex_destroy(&s->implock);
	store__free(s);
}

/* ---- Node id ------------------------------------------------------------------------------------ */

static int node_id_fn(struct store *s, MDB_txn *txn, void *ud)
{
	MDB_val k = { 7, "node_id" }, v;
	int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
	if (rc == 0) {
		if (v.mv_size != STORE_NODE_ID_LEN)
			return -EIO;
		memcpy(ud, v.mv_data, STORE_NODE_ID_LEN);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return store__mdb_err(rc);
	randombytes_buf(ud, STORE_NODE_ID_LEN);
	v.mv_size = STORE_NODE_ID_LEN;
	v.mv_data = ud;
	return store__mdb_err(mdb_put(txn, s->dbi[DB_META], &k, &v, 0));
}

int store_node_id(struct store *s, uint8_t ret_id[STORE_NODE_ID_LEN])
{
	uint8_t id[STORE_NODE_ID_LEN];
	int r = store__write(s, node_id_fn, id);
	if (r < 0)
		return r;
	memcpy(ret_id, id, sizeof(id));
	return 0;
}

/* ---- Generic key/value helpers ------------------------------------------------------------------- */

struct kv_op {
	MDB_dbi dbi;
	MDB_val k, v;
	void *copy;	/* get: malloc'd copy of the value */
	/* foreach: collected entries, one buffer of records {klen, vlen, key, val} */
	struct store__buf coll;
	size_t count;
};

static int kv_put_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct kv_op *op = ud;
	MDB_val v = op->v;
	return store__mdb_err(mdb_put(txn, op->dbi, &op->k, &v, 0));
}

static int kv_del_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct kv_op *op = ud;
	return store__mdb_err(mdb_del(txn, op->dbi, &op->k, NULL));
}

static int kv_get_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct kv_op *op = ud;
	MDB_val v;
	int rc = mdb_get(txn, op->dbi, &op->k, &v);
	if (rc)
		return store__mdb_err(rc);
	op->copy = store__malloc(v.mv_size);
	if (!op->copy)
		return -ENOMEM;
	memcpy(op->copy, v.mv_data, v.mv_size);
	op->v.mv_size = v.mv_size;
	return 0;
}

/*
 * Callbacks never run inside a transaction (they may call back into the store, even to
 * write), so a walk copies the table out first: { be32 klen, be32 vlen, key, value }*.
 */
static int kv_collect_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct kv_op *op = ud;
	MDB_cursor *c;
	op->coll.len = 0;
	op->count = 0;
	int rc = mdb_cursor_open(txn, op->dbi, &c);
	if (rc)
		return store__mdb_err(rc);
	MDB_val k, v;
	int r = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		uint8_t hdr[8];
		store__be32_put(hdr, (uint32_t)k.mv_size);
		store__be32_put(hdr + 4, (uint32_t)v.mv_size);
		if ((r = store__buf_append(&op->coll, hdr, 8)) < 0 ||
		    (r = store__buf_append(&op->coll, k.mv_data, k.mv_size)) < 0 ||
		    (r = store__buf_append(&op->coll, v.mv_data, v.mv_size)) < 0)
			goto out;
		op->count++;
	}
	if (rc != MDB_NOTFOUND)
		r = store__mdb_err(rc);
out:
	mdb_cursor_close(c);
	return r;
}

static int kv_walk(struct store *s, MDB_dbi dbi,
		   int (*cb)(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *ud),
		   void *ud)
{
	struct kv_op op = { .dbi = dbi };
	int r = store__read(s, kv_collect_fn, &op);
	if (r < 0)
		goto out;
	size_t pos = 0;
	for (size_t i = 0; i < op.count; i++) {
		size_t kl = store__be32_get(op.coll.data + pos);
		size_t vl = store__be32_get(op.coll.data + pos + 4);
		const uint8_t *k = op.coll.data + pos + 8;
		r = cb(k, kl, k + kl, vl, ud);
		if (r)
			goto out;
		pos += 8 + kl + vl;
	}
	r = 0;
out:
	store__free(op.coll.data);
	return r;
}

static bool table_valid(enum store_table t)
{
	return (unsigned)t < STORE_KV__COUNT;
}

static MDB_dbi table_dbi(struct store *s, enum store_table t)
{
	static const enum store_dbi map[STORE_KV__COUNT] = {
		[STORE_KV_MEMBERS] = DB_KV_MEMBERS,
		[STORE_KV_RECORDS] = DB_KV_RECORDS,
		[STORE_KV_AGENT] = DB_KV_AGENT,
	};
	return s->dbi[map[t]];
}

int store_kv_put(struct store *s, enum store_table t, const void *key, size_t klen,
		 const void *val, size_t vlen)
{
	if (!table_valid(t) || !key || klen == 0 || klen > 511 || (!val && vlen))
		return -EINVAL;
	struct kv_op op = { .dbi = table_dbi(s, t), .k = { klen, (void *)key },
			    .v = { vlen, (void *)val } };
	return store__write(s, kv_put_fn, &op);
}

struct kv_many {
	const struct store_kv_write *w;
	size_t n;
};

static int kv_many_fn(struct store *s, MDB_txn *txn, void *ud)
{
	const struct kv_many *m = ud;
	for (size_t i = 0; i < m->n; i++) {
		const struct store_kv_write *w = &m->w[i];
		MDB_val k = { w->klen, (void *)w->key }, v = { w->vlen, (void *)w->val };
		int rc = w->del ? mdb_del(txn, table_dbi(s, w->table), &k, NULL)
				: mdb_put(txn, table_dbi(s, w->table), &k, &v, 0);
		if (rc && !(w->del && rc == MDB_NOTFOUND))
			return store__mdb_err(rc);
	}
	return 0;
}

int store_kv_write_many(struct store *s, const struct store_kv_write *w, size_t n)
{
	if (!s || (!w && n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!table_valid(w[i].table) || !w[i].key || w[i].klen == 0 || w[i].klen > 511 ||
		    (!w[i].del && !w[i].val && w[i].vlen))
			return -EINVAL;
	if (n == 0)
		return 0;
	struct kv_many m = { w, n };
	return store__write(s, kv_many_fn, &m);
}

int store_kv_del(struct store *s, enum store_table t, const void *key, size_t klen)
{
	if (!table_valid(t) || !key || klen == 0 || klen > 511)
		return -EINVAL;
	struct kv_op op = { .dbi = table_dbi(s, t), .k = { klen, (void *)key } };
	return store__write(s, kv_del_fn, &op);
}

struct kv_cb_ctx {
	int (*cb)(const void *key, size_t klen, const void *val, size_t vlen, void *ud);
	void *ud;
};

static int kv_cb_tramp(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *ud)
{
	struct kv_cb_ctx *c = ud;
	return c->cb(k, kl, v, vl, c->ud);
}

int store_kv_foreach(struct store *s, enum store_table t,
		     int (*cb)(const void *key, size_t klen, const void *val, size_t vlen, void *ud),
		     void *ud)
{
	if (!table_valid(t) || !cb)
		return -EINVAL;
	struct kv_cb_ctx c = { cb, ud };
	return kv_walk(s, table_dbi(s, t), kv_cb_tramp, &c);
}

/* ---- Journal ------------------------------------------------------------------------------------- */

int store_journal_put(struct store *s, const char *service, const void *buf, size_t len)
{
	if (!store__service_valid(service) || (!buf && len))
		return -EINVAL;
	struct kv_op op = { .dbi = s->dbi[DB_JOURNAL], .k = { strlen(service), (void *)service },
			    .v = { len, (void *)buf } };
	return store__write(s, kv_put_fn, &op);
}

int store_journal_get(struct store *s, const char *service, void **ret_buf, size_t *ret_len)
{
	if (!store__service_valid(service) || !ret_buf || !ret_len)
		return -EINVAL;
	struct kv_op op = { .dbi = s->dbi[DB_JOURNAL], .k = { strlen(service), (void *)service } };
	int r = store__read(s, kv_get_fn, &op);
	if (r < 0)
		return r;
	*ret_buf = op.copy;
	*ret_len = op.v.mv_size;
	return 0;
}

int store_journal_del(struct store *s, const char *service)
{
	if (!store__service_valid(service))
		return -EINVAL;
	struct kv_op op = { .dbi = s->dbi[DB_JOURNAL], .k = { strlen(service), (void *)service } };
	return store__write(s, kv_del_fn, &op);
}

struct journal_cb_ctx {
	int (*cb)(const char *service, const void *buf, size_t len, void *ud);
	void *ud;
};

static int journal_tramp(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *ud)
{
	struct journal_cb_ctx *c = ud;
	char name[65];
	if (kl == 0 || kl > 64)
		return -EIO;
	memcpy(name, k, kl);
	name[kl] = '\0';
	return c->cb(name, v, vl, c->ud);
}

int store_journal_foreach(struct store *s,
			  int (*cb)(const char *service, const void *buf, size_t len, void *ud),
			  void *ud)
{
	if (!cb)
		return -EINVAL;
	struct journal_cb_ctx c = { cb, ud };
	return kv_walk(s, s->dbi[DB_JOURNAL], journal_tramp, &c);
}

/* ---- Service state -------------------------------------------------------------------------------- */

#define SVC_STATE_LEN (STORE_ID_LEN + 8 + STORE_ID_LEN)

int store_service_state_get(struct store *s, const char *service, struct store_service_state *ret)
{
	if (!store__service_valid(service) || !ret)
		return -EINVAL;
	struct kv_op op = { .dbi = s->dbi[DB_SERVICES], .k = { strlen(service), (void *)service } };
	int r = store__read(s, kv_get_fn, &op);
	if (r == -ENOENT) {
		memset(ret, 0, sizeof(*ret));
		return 1;
	}
	if (r < 0)
		return r;
	if (op.v.mv_size != SVC_STATE_LEN) {
		store__free(op.copy);
		return -EIO;
	}
	const uint8_t *p = op.copy;
	memcpy(ret->running.b, p, STORE_ID_LEN);
	ret->running_rev = store__be64_get(p + STORE_ID_LEN);
	memcpy(ret->last_good.b, p + STORE_ID_LEN + 8, STORE_ID_LEN);
	store__free(op.copy);
	return 0;
}

int store_service_state_put(struct store *s, const char *service,
			    const struct store_service_state *st)
{
	if (!store__service_valid(service) || !st)
		return -EINVAL;
	uint8_t b[SVC_STATE_LEN];
	memcpy(b, st->running.b, STORE_ID_LEN);
	store__be64_put(b + STORE_ID_LEN, st->running_rev);
	memcpy(b + STORE_ID_LEN + 8, st->last_good.b, STORE_ID_LEN);
	struct kv_op op = { .dbi = s->dbi[DB_SERVICES], .k = { strlen(service), (void *)service },
			    .v = { sizeof(b), b } };
	return store__write(s, kv_put_fn, &op);
}

/* ---- Stats ---------------------------------------------------------------------------------------- */

static int stats_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct store_stats *st = ud;
	MDB_envinfo info;
	MDB_stat ms;
	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &ms);
	st->map_size = info.me_mapsize;
	st->map_used = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	int rc;
	if ((rc = mdb_stat(txn, s->dbi[DB_ARTIFACTS], &ms)))
		return store__mdb_err(rc);
	st->nartifacts = ms.ms_entries;
	if ((rc = mdb_stat(txn, s->dbi[DB_BLOBS], &ms)))
		return store__mdb_err(rc);
	st->nblobs = ms.ms_entries;
	if ((rc = mdb_stat(txn, s->dbi[DB_CHUNKS], &ms)))
		return store__mdb_err(rc);
	st->nchunks = ms.ms_entries;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_CHUNKS], &c)))
		return store__mdb_err(rc);
	MDB_val k, v;
	st->chunk_bytes = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		st->chunk_bytes += v.mv_size;
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

int store_stats(struct store *s, struct store_stats *ret)
{
	struct store_stats st = { 0 };
	int r = store__read(s, stats_fn, &st);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}
