/*
 * store/artifact.c: importing artifacts, reading them back, blobs and chunks, materializing,
 * and garbage collection of blobs and chunks.
 *
 * How an import stays all-or-nothing without holding one write transaction for its whole
 * duration (which would block every other writer while a big artifact streams in, and could
 * not be retried after MDB_MAP_FULL because the streamed bytes are gone): complete chunks are
 * collected in memory and written in batches of IMPORT_BATCH chunks, each batch in its own
 * transaction that can be retried after growing the map. Chunks are content-addressed and
 * invisible until a blob references them, so a batch that lands without its artifact changes
 * nothing anyone can see. The blob records, the manifest and the artifact's local metadata
 * then go in in one final transaction: that commit is the moment the artifact exists.
 *
 * Chunks of an import that never commits are garbage: an abort collects them at once; a crash
 * leaves the meta key "orphans" set (written with the first batch), and the next store_open
 * collects them. While an import is open, its chunk hashes are protected from the collector
 * (s->imports), including chunks it did not write because they already existed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "store/store_int.h"

#define IMPORT_BATCH 32 /* chunks per batch transaction: 8 MiB */

struct imp_file {
	char *path;
	uint32_t mode;
	uint64_t size;
	char *target;			/* a symlink's bytes so far (NUL-terminated), for validation */
	struct store_id blob;
	struct store_id *chunks;
	uint32_t nchunks, cap;
};

struct store_import {
	struct store *s;
	struct store_import *next;	/* s->imports */
	struct imp_file *files;
	size_t nfiles, cap;
	bool in_file;
	bool flushed;			/* some batch committed: orphans possible until commit */
	int err;			/* sticky: once an import failed, it stays failed */
	struct store_import_limits lim;	/* what commit enforces (zero fields: defaults) */
	crypto_generichash_state blob_state;
	uint8_t *batch;			/* IMPORT_BATCH slots of STORE_CHUNK_SIZE */
	size_t batch_n;			/* complete chunks in the batch */
	size_t cur_len;			/* bytes in slot batch_n (the chunk being filled) */
	struct store_id batch_hash[IMPORT_BATCH];
	size_t batch_len[IMPORT_BATCH];
};

/* ---- artmeta records ------------------------------------------------------------------------- */

struct artmeta {
	uint8_t flags;
	uint64_t imported_at, seq, total_size;
	char service[65];
};

static int artmeta_decode(const MDB_val *v, struct artmeta *am)
{
	const uint8_t *p = v->mv_data;
	if (v->mv_size < ARTMETA_FIXED || p[0] != 1)
		return -EIO;
	size_t sl = p[ARTMETA_FIXED - 1];
	if (sl > 64 || v->mv_size != ARTMETA_FIXED + sl)
		return -EIO;
	am->flags = p[1];
	am->imported_at = store__be64_get(p + 2);
	am->seq = store__be64_get(p + 10);
	am->total_size = store__be64_get(p + 18);
	memcpy(am->service, p + ARTMETA_FIXED, sl);
	am->service[sl] = '\0';
	return 0;
}

static size_t artmeta_encode(const struct artmeta *am, uint8_t *p)
{
	size_t sl = strlen(am->service);
	p[0] = 1;
	p[1] = am->flags;
	store__be64_put(p + 2, am->imported_at);
	store__be64_put(p + 10, am->seq);
	store__be64_put(p + 18, am->total_size);
	p[ARTMETA_FIXED - 1] = (uint8_t)sl;
	memcpy(p + ARTMETA_FIXED, am->service, sl);
	return ARTMETA_FIXED + sl;
}

int store__artmeta_get(struct store *s, MDB_txn *txn, const struct store_id *id,
		       uint8_t *ret_flags, uint64_t *ret_seq, char ret_service[65]);
int store__artmeta_get(struct store *s, MDB_txn *txn, const struct store_id *id,
		       uint8_t *ret_flags, uint64_t *ret_seq, char ret_service[65])
{
	MDB_val k = { STORE_ID_LEN, (void *)id->b }, v;
	int rc = mdb_get(txn, s->dbi[DB_ARTMETA], &k, &v);
	if (rc)
		return store__mdb_err(rc);
	struct artmeta am;
	int r = artmeta_decode(&v, &am);
	if (r < 0)
		return r;
	if (ret_flags)
		*ret_flags = am.flags;
	if (ret_seq)
		*ret_seq = am.seq;
	if (ret_service)
		memcpy(ret_service, am.service, sizeof(am.service));
	return 0;
}

/* Set or clear flag bits of an artifact's metadata. -ENOENT if absent. */
int store__artmeta_flags(struct store *s, MDB_txn *txn, const struct store_id *id, uint8_t set,
			 uint8_t clear);
int store__artmeta_flags(struct store *s, MDB_txn *txn, const struct store_id *id, uint8_t set,
			 uint8_t clear)
{
	MDB_val k = { STORE_ID_LEN, (void *)id->b }, v;
	int rc = mdb_get(txn, s->dbi[DB_ARTMETA], &k, &v);
	if (rc)
		return store__mdb_err(rc);
	struct artmeta am;
	int r = artmeta_decode(&v, &am);
	if (r < 0)
		return r;
	uint8_t nf = (uint8_t)((am.flags | set) & ~clear);
	if (nf == am.flags)
		return 0;
	am.flags = nf;
	uint8_t buf[ARTMETA_FIXED + 64];
	v.mv_size = artmeta_encode(&am, buf);
	v.mv_data = buf;
	return store__mdb_err(mdb_put(txn, s->dbi[DB_ARTMETA], &k, &v, 0));
}

/* ---- Import ------------------------------------------------------------------------------------ */

int store_import_begin(struct store *s, struct store_import **ret)
{
	if (!s || !ret)
		return -EINVAL;
	struct store_import *imp = store__calloc(1, sizeof(*imp));
	if (!imp)
		return -ENOMEM;
	imp->batch = store__malloc((size_t)IMPORT_BATCH * STORE_CHUNK_SIZE);
	if (!imp->batch) {
		store__free(imp);
		return -ENOMEM;
	}
	imp->s = s;
	pthread_mutex_lock(&s->implock);
	imp->next = s->imports;
	s->imports = imp;
	pthread_mutex_unlock(&s->implock);
	*ret = imp;
	return 0;
}

static uint32_t norm_mode(uint32_t mode)
{
	if ((mode & 0170000) == 0120000)
		return 0120000;
	return (mode & 0111) ? 0755 : 0644;
}

int store_import_file(struct store_import *imp, const char *path, uint32_t mode)
{
	if (!imp)
		return -EINVAL;
	if (imp->err)
		return imp->err;
	if (imp->in_file || !path)
		return -EINVAL;
	uint32_t type = mode & 0170000;
	if (type != 0 && type != 0100000 && type != 0120000)
		return -EINVAL;
	if (imp->nfiles == imp->cap) {
		size_t cap = imp->cap ? imp->cap * 2 : 16;
		struct imp_file *f = store__realloc(imp->files, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		imp->files = f;
		imp->cap = cap;
	}
	struct imp_file *f = &imp->files[imp->nfiles];
	memset(f, 0, sizeof(*f));
	f->path = store__strdup(path);
	if (!f->path)
		return -ENOMEM;
	f->mode = norm_mode(mode);
	/* The file is registered before its chunks exist so the collector sees them. */
	pthread_mutex_lock(&imp->s->implock);
	imp->nfiles++;
	pthread_mutex_unlock(&imp->s->implock);
	crypto_generichash_init(&imp->blob_state, NULL, 0, STORE_ID_LEN);
	imp->in_file = true;
	return 0;
}

static int flush_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct store_import *imp = ud;
	for (size_t i = 0; i < imp->batch_n; i++) {
		MDB_val k = { STORE_ID_LEN, imp->batch_hash[i].b };
		MDB_val v = { imp->batch_len[i], imp->batch + i * STORE_CHUNK_SIZE };
		int rc = mdb_put(txn, s->dbi[DB_CHUNKS], &k, &v, MDB_NOOVERWRITE);
		if (rc && rc != MDB_KEYEXIST)
			return store__mdb_err(rc);
	}
	return 0;
}

static int flush_orphans_fn(struct store *s, MDB_txn *txn, void *ud)
{
	int r = flush_fn(s, txn, ud);
	if (r < 0)
		return r;
	MDB_val k = { strlen(STORE_META_ORPHANS), STORE_META_ORPHANS }, v = { 0, "" };
	return store__mdb_err(mdb_put(txn, s->dbi[DB_META], &k, &v, 0));
}

/* Write the batch's complete chunks in their own transaction. */
static int import_flush(struct store_import *imp)
{
	if (imp->batch_n == 0)
		return 0;
	/* Marked before the batch lands, so no other import's commit can believe the store free
	 * of orphans between our commit and this flag (the flag only ever errs on the safe side). */
	pthread_mutex_lock(&imp->s->implock);
	imp->flushed = true;
	pthread_mutex_unlock(&imp->s->implock);
	int r = store__write(imp->s, flush_orphans_fn, imp);
	if (r < 0)
		return r;
	/* The chunk being filled (if any) moves to slot 0. */
	if (imp->cur_len)
		memmove(imp->batch, imp->batch + imp->batch_n * STORE_CHUNK_SIZE, imp->cur_len);
	imp->batch_n = 0;
	return 0;
}

/* The chunk in slot batch_n is complete (full, or the end of a file). */
static int import_seal_chunk(struct store_import *imp)
{
	struct imp_file *f = &imp->files[imp->nfiles - 1];
	if (f->nchunks == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : 4;
		struct store_id *c = store__realloc(f->chunks, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		pthread_mutex_lock(&imp->s->implock);
		f->chunks = c;
		f->cap = cap;
		pthread_mutex_unlock(&imp->s->implock);
	}
	struct store_id h;
	store__hash(imp->batch + imp->batch_n * STORE_CHUNK_SIZE, imp->cur_len, &h);
	imp->batch_hash[imp->batch_n] = h;
	imp->batch_len[imp->batch_n] = imp->cur_len;
	pthread_mutex_lock(&imp->s->implock);
	f->chunks[f->nchunks++] = h;
	pthread_mutex_unlock(&imp->s->implock);
	imp->batch_n++;
	imp->cur_len = 0;
	if (imp->batch_n == IMPORT_BATCH)
		return import_flush(imp);
	return 0;
}

int store_import_write(struct store_import *imp, const void *buf, size_t len)
{
	if (!imp)
		return -EINVAL;
	if (imp->err)
		return imp->err;
	if (!imp->in_file || (!buf && len))
		return -EINVAL;
	struct imp_file *f = &imp->files[imp->nfiles - 1];
	if (f->mode == 0120000 && f->size + len > STORE_IMPORT_MAX_TARGET)
		return imp->err = -ENAMETOOLONG;
	if (f->mode == 0120000 && len) {
		/* Kept aside: commit resolves every target against the artifact's files. */
		char *t = store__realloc(f->target, f->size + len + 1);
		if (!t)
			return imp->err = -ENOMEM;
		memcpy(t + f->size, buf, len);
		t[f->size + len] = '\0';
		f->target = t;
	}
	const uint8_t *p = buf;
	crypto_generichash_update(&imp->blob_state, p, len);
	f->size += len;
	while (len) {
		size_t room = STORE_CHUNK_SIZE - imp->cur_len;
		size_t n = len < room ? len : room;
		memcpy(imp->batch + imp->batch_n * STORE_CHUNK_SIZE + imp->cur_len, p, n);
		imp->cur_len += n;
		p += n;
		len -= n;
		if (imp->cur_len == STORE_CHUNK_SIZE) {
			int r = import_seal_chunk(imp);
			if (r < 0)
				return imp->err = r;
		}
	}
	return 0;
}

int store_import_file_end(struct store_import *imp)
{
	if (!imp)
		return -EINVAL;
	if (imp->err)
		return imp->err;
	if (!imp->in_file)
		return -EINVAL;
	struct imp_file *f = &imp->files[imp->nfiles - 1];
	if (f->mode == 0120000 && f->size == 0)
		return imp->err = -EINVAL;
	if (imp->cur_len) {
		int r = import_seal_chunk(imp);
		if (r < 0)
			return imp->err = r;
	}
	crypto_generichash_final(&imp->blob_state, f->blob.b, STORE_ID_LEN);
	imp->in_file = false;
	return 0;
}

static void import_free(struct store_import *imp)
{
	struct store *s = imp->s;
	pthread_mutex_lock(&s->implock);
	for (struct store_import **pp = &s->imports; *pp; pp = &(*pp)->next)
		if (*pp == imp) {
			*pp = imp->next;
			break;
		}
	pthread_mutex_unlock(&s->implock);
	for (size_t i = 0; i < imp->nfiles; i++) {
		store__free(imp->files[i].path);
		store__free(imp->files[i].target);
		store__free(imp->files[i].chunks);
	}
	store__free(imp->files);
	store__free(imp->batch);
	store__free(imp);
}

/* true when no other open import has committed batches (so "orphans" may be cleared). */
static bool orphans_only_mine(struct store *s, const struct store_import *mine)
{
	bool only = true;
	pthread_mutex_lock(&s->implock);
	for (struct store_import *i = s->imports; i; i = i->next)
		if (i != mine && i->flushed)
			only = false;
	pthread_mutex_unlock(&s->implock);
	return only;
}

static int clear_orphans(struct store *s, MDB_txn *txn, const struct store_import *mine)
{
	if (!orphans_only_mine(s, mine))
		return 0;
	MDB_val k = { strlen(STORE_META_ORPHANS), STORE_META_ORPHANS };
	int rc = mdb_del(txn, s->dbi[DB_META], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

struct gc_abort_ctx {
	struct store_import *imp;
};

static int abort_gc_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct store_import *imp = ud;
	/* Our chunks are still protected (we are in s->imports): unregister them first. */
	pthread_mutex_lock(&s->implock);
	size_t n = imp->nfiles;
	imp->nfiles = 0;
	pthread_mutex_unlock(&s->implock);
	int r = store__gc_txn(s, txn);
	pthread_mutex_lock(&s->implock);
	imp->nfiles = n;
	pthread_mutex_unlock(&s->implock);
	if (r < 0)
		return r;
	return clear_orphans(s, txn, imp);
}

void store_import_abort(struct store_import *imp)
{
	if (!imp)
		return;
	/* Batches already committed are unreferenced: collect them now (best effort; if this
	 * fails the "orphans" mark makes the next store_open do it). */
	if (imp->flushed)
		(void)store__write(imp->s, abort_gc_fn, imp);
	import_free(imp);
}

struct commit_ctx {
	struct store_import *imp;
	const uint8_t *mbuf;
	size_t mlen;
	struct store_id id;
	const char *service;
	uint64_t now_ms, total;
	struct store_file *files;
	size_t nfiles;
};

/* Does any revision of @service point at @id? (Then the artifact counts as deployed.) */
static int referenced_by_revision(struct store *s, MDB_txn *txn, const char *service,
				  const struct store_id *id)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c);
	if (rc)
		return store__mdb_err(rc);
	size_t sl = strlen(service);
	uint8_t kb[66];
	memcpy(kb, service, sl);
	kb[sl] = 0;
	MDB_val k = { sl + 1, kb }, v;
	int found = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != sl + 9 || memcmp(k.mv_data, kb, sl + 1))
			break;
		struct store_revision r;
		if (store_revision_decode(v.mv_data, v.mv_size, &r) < 0)
			continue;
		bool hit = !memcmp(r.artifact.b, id->b, STORE_ID_LEN);
		store_revision_release(&r);
		if (hit) {
			found = 1;
			break;
		}
	}
	mdb_cursor_close(c);
	return found;
}

static int commit_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct commit_ctx *cc = ud;
	struct store_import *imp = cc->imp;
	int r = flush_fn(s, txn, imp);
	if (r < 0)
		return r;
	int rc;
	MDB_val k = { STORE_ID_LEN, cc->id.b }, v;
	rc = mdb_get(txn, s->dbi[DB_ARTIFACTS], &k, &v);
	if (rc == 0) {
		r = clear_orphans(s, txn, imp);
		return r < 0 ? r : 1;
	}
	if (rc != MDB_NOTFOUND)
		return store__mdb_err(rc);
	/* Blob records (shared between artifacts, so they may exist already). */
	struct store__buf b = { 0 };
	for (size_t i = 0; i < imp->nfiles; i++) {
		struct imp_file *f = &imp->files[i];
		uint8_t sz[8];
		b.len = 0;
		store__be64_put(sz, f->size);
		if ((r = store__buf_append(&b, sz, 8)) < 0 ||
		    (r = store__buf_append(&b, f->chunks, (size_t)f->nchunks * STORE_ID_LEN)) < 0)
			goto out;
		MDB_val bk = { STORE_ID_LEN, f->blob.b }, bv = { b.len, b.data };
		rc = mdb_put(txn, s->dbi[DB_BLOBS], &bk, &bv, MDB_NOOVERWRITE);
		if (rc && rc != MDB_KEYEXIST) {
			r = store__mdb_err(rc);
			goto out;
		}
	}
	v.mv_size = cc->mlen;
	v.mv_data = (void *)cc->mbuf;
	if ((rc = mdb_put(txn, s->dbi[DB_ARTIFACTS], &k, &v, 0))) {
		r = store__mdb_err(rc);
		goto out;
	}
	/* Import sequence number: orders artifacts by import even within one millisecond. */
	MDB_val sk = { 3, "seq" };
	uint64_t seq = 1;
	rc = mdb_get(txn, s->dbi[DB_META], &sk, &v);
	if (rc == 0 && v.mv_size == 8)
		seq = store__be64_get(v.mv_data) + 1;
	else if (rc && rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	uint8_t sb[8];
	store__be64_put(sb, seq);
	v.mv_size = 8;
	v.mv_data = sb;
	if ((rc = mdb_put(txn, s->dbi[DB_META], &sk, &v, 0))) {
		r = store__mdb_err(rc);
		goto out;
	}
	struct artmeta am = { .imported_at = cc->now_ms, .seq = seq, .total_size = cc->total };
	snprintf(am.service, sizeof(am.service), "%s", cc->service);
	r = referenced_by_revision(s, txn, cc->service, &cc->id);
	if (r < 0)
		goto out;
	if (r)
		am.flags |= AM_DEPLOYED;
	uint8_t ab[ARTMETA_FIXED + 64];
	v.mv_size = artmeta_encode(&am, ab);
	v.mv_data = ab;
	if ((rc = mdb_put(txn, s->dbi[DB_ARTMETA], &k, &v, 0))) {
		r = store__mdb_err(rc);
		goto out;
	}
	r = clear_orphans(s, txn, imp);
out:
	store__free(b.data);
	return r < 0 ? r : 0;
}

int store_import_set_limits(struct store_import *imp, const struct store_import_limits *lim)
{
	if (!imp)
		return -EINVAL;
	memset(&imp->lim, 0, sizeof imp->lim);
	if (lim)
		imp->lim = *lim;
	return 0;
}

/* Sorting the import's files by path, keeping each symlink's target beside its entry. */
struct file_ref {
	struct store_file f;
	const char *target;
};

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct file_ref *)a)->f.path, ((const struct file_ref *)b)->f.path);
}

int store_import_commit(struct store_import *imp, struct store_manifest *m, uint64_t now_ms,
			struct store_id *ret_id)
{
	if (!imp)
		return -EINVAL;
	int r = imp->err;
	struct store_file *files = NULL;
	struct file_ref *refs = NULL;
	const char **targets = NULL;
	uint8_t *mbuf = NULL;
	size_t mlen = 0;
	if (r < 0)
		goto out;
	r = -EINVAL;
	if (!m || imp->in_file)
		goto out;
	r = -ENOMEM;
	size_t nf = imp->nfiles;
	files = store__calloc(nf ? nf : 1, sizeof(*files));
	refs = store__calloc(nf ? nf : 1, sizeof(*refs));
	targets = store__calloc(nf ? nf : 1, sizeof(*targets));
	if (!files || !refs || !targets)
		goto out;
	uint64_t total = 0;
	for (size_t i = 0; i < nf; i++) {
		refs[i].f.path = imp->files[i].path; /* borrowed until success */
		refs[i].f.mode = imp->files[i].mode;
		refs[i].f.size = imp->files[i].size;
		refs[i].f.blob = imp->files[i].blob;
		refs[i].target = imp->files[i].target;
		total += imp->files[i].size;
	}
	if (nf)
		qsort(refs, nf, sizeof(*refs), file_cmp);
	for (size_t i = 0; i < nf; i++) {
		files[i] = refs[i].f;
		targets[i] = refs[i].target;
	}
	/* The gate: every artifact, imported or fetched, passes this with its real targets. */
	struct store_manifest tmp = *m;
	tmp.files = files;
	tmp.nfiles = nf;
	r = store_manifest_validate(&tmp, targets, &imp->lim, NULL, 0);
	if (r < 0)
		goto out;
	/* Encode with the new file list, leaving *m as it was if anything fails. */
	r = store_manifest_encode(&tmp, &mbuf, &mlen);
	if (r < 0)
		goto out;
	struct commit_ctx cc = { .imp = imp, .mbuf = mbuf, .mlen = mlen, .service = m->service,
				 .now_ms = now_ms, .total = total };
	store__hash(mbuf, mlen, &cc.id);
	r = store__write(imp->s, commit_fn, &cc);
	if (r < 0)
		goto out;
	/* Success: the manifest takes the file list; the paths move from the import to it. */
	for (size_t i = 0; m->files && i < m->nfiles; i++)
		store__free(m->files[i].path);
	store__free(m->files);
	m->files = files;
	m->nfiles = imp->nfiles;
	for (size_t i = 0; i < imp->nfiles; i++)
		imp->files[i].path = NULL;
	files = NULL;
	if (ret_id)
		*ret_id = cc.id;
out:
	store__free(mbuf);
	store__free(files);
	store__free(refs);
	store__free(targets);
	if (r < 0)
		store_import_abort(imp);
	else
		import_free(imp);
	return r;
}

/* ---- Reading artifacts ---------------------------------------------------------------------------- */

void store_artifact_info_release(struct store_artifact_info *a)
{
	if (!a)
		return;
	store_manifest_release(&a->manifest);
}

/* Fill @ret from the records of @id inside @txn. */
static int info_load(struct store *s, MDB_txn *txn, const struct store_id *id,
		     struct store_artifact_info *ret)
{
	MDB_val k = { STORE_ID_LEN, (void *)id->b }, v, mv;
	int rc = mdb_get(txn, s->dbi[DB_ARTIFACTS], &k, &v);
	if (rc)
		return store__mdb_err(rc);
	rc = mdb_get(txn, s->dbi[DB_ARTMETA], &k, &mv);
	if (rc)
		return rc == MDB_NOTFOUND ? -EIO : store__mdb_err(rc);
	struct artmeta am;
	if (artmeta_decode(&mv, &am) < 0)
		return -EIO;
	struct store_artifact_info a = { .id = *id };
	int r = store_manifest_decode(v.mv_data, v.mv_size, &a.manifest);
	if (r < 0)
		return r == -EBADMSG ? -EIO : r;
	a.imported_at_ms = am.imported_at;
	a.total_size = am.total_size;
	a.condemned = am.flags & AM_CONDEMNED;
	*ret = a;
	return 0;
}

struct get_ctx {
	const struct store_id *id;
	struct store_artifact_info *ret;
};

static int get_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct get_ctx *g = ud;
	return info_load(s, txn, g->id, g->ret);
}

int store_artifact_get(struct store *s, const struct store_id *id, struct store_artifact_info *ret)
{
	if (!s || !id || !ret)
		return -EINVAL;
	struct store_artifact_info a;
	struct get_ctx g = { id, &a };
	int r = store__read(s, get_fn, &g);
	if (r < 0)
		return r;
	*ret = a;
	return 0;
}

struct find_ctx {
	uint8_t pfx[STORE_ID_LEN];
	size_t nibbles;
	struct store_id found;
	int count;
};

static int find_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct find_ctx *f = ud;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &c);
	if (rc)
		return store__mdb_err(rc);
	size_t whole = f->nibbles / 2;
	bool half = f->nibbles & 1;
	MDB_val k = { whole + half, f->pfx }, v;
	f->count = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && f->count < 2;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *kb = k.mv_data;
		if (k.mv_size != STORE_ID_LEN || memcmp(kb, f->pfx, whole) ||
		    (half && (kb[whole] >> 4) != (f->pfx[whole] >> 4)))
			break;
		memcpy(f->found.b, kb, STORE_ID_LEN);
		f->count++;
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return store__mdb_err(rc);
	return 0;
}

int store_artifact_find(struct store *s, const char *hex_prefix, struct store_id *ret)
{
	if (!s || !hex_prefix || !ret)
		return -EINVAL;
	size_t n = strlen(hex_prefix);
	if (n < 4 || n > STORE_ID_HEXLEN)
		return -EINVAL;
	struct find_ctx f = { .nibbles = n };
	for (size_t i = 0; i < n; i++) {
		char ch = hex_prefix[i];
		int d = (ch >= '0' && ch <= '9') ? ch - '0' :
			(ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 :
			(ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
		if (d < 0)
			return -EINVAL;
		f.pfx[i / 2] |= (uint8_t)(i & 1 ? d : d << 4);
	}
	int r = store__read(s, find_fn, &f);
	if (r < 0)
		return r;
	if (f.count == 0)
		return -ENOENT;
	if (f.count > 1)
		return -EEXIST;
	*ret = f.found;
	return 0;
}

struct foreach_ctx {
	const char *service;
	struct store_artifact_info *infos;
	uint64_t *seqs;
	size_t n, cap;
};

static void foreach_reset(struct foreach_ctx *f)
{
	for (size_t i = 0; i < f->n; i++)
		store_artifact_info_release(&f->infos[i]);
	f->n = 0;
}

static int foreach_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct foreach_ctx *f = ud;
	foreach_reset(f);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_ARTMETA], &c);
	if (rc)
		return store__mdb_err(rc);
	MDB_val k, v;
	int r = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct artmeta am;
		if (k.mv_size != STORE_ID_LEN || artmeta_decode(&v, &am) < 0) {
			r = -EIO;
			goto out;
		}
		if (f->service && strcmp(f->service, am.service))
			continue;
		if (f->n == f->cap) {
			size_t cap = f->cap ? f->cap * 2 : 16;
			void *ni = store__realloc(f->infos, cap * sizeof(*f->infos));
			if (!ni) {
				r = -ENOMEM;
				goto out;
			}
			f->infos = ni;
			void *ns = store__realloc(f->seqs, cap * sizeof(*f->seqs));
			if (!ns) {
				r = -ENOMEM;
				goto out;
			}
			f->seqs = ns;
			f->cap = cap;
		}
		struct store_id id;
		memcpy(id.b, k.mv_data, STORE_ID_LEN);
		r = info_load(s, txn, &id, &f->infos[f->n]);
		if (r < 0)
			goto out;
		f->seqs[f->n++] = am.seq;
	}
	if (rc != MDB_NOTFOUND)
		r = store__mdb_err(rc);
out:
	mdb_cursor_close(c);
	return r;
}

int store_artifact_foreach(struct store *s, const char *service,
			   int (*cb)(const struct store_artifact_info *a, void *ud), void *ud)
{
	if (!s || !cb)
		return -EINVAL;
	struct foreach_ctx f = { .service = service };
	int r = store__read(s, foreach_fn, &f);
	if (r < 0)
		goto out;
	/* Oldest import first: insertion sort by seq (the lists are short). */
	for (size_t i = 1; i < f.n; i++)
		for (size_t j = i; j > 0 && f.seqs[j - 1] > f.seqs[j]; j--) {
			struct store_artifact_info t = f.infos[j];
			uint64_t q = f.seqs[j];
			f.infos[j] = f.infos[j - 1];
			f.seqs[j] = f.seqs[j - 1];
			f.infos[j - 1] = t;
			f.seqs[j - 1] = q;
		}
	for (size_t i = 0; i < f.n; i++) {
		r = cb(&f.infos[i], ud);
		if (r)
			goto out;
	}
	r = 0;
out:
	foreach_reset(&f);
	store__free(f.infos);
	store__free(f.seqs);
	return r;
}

struct condemn_ctx {
	const struct store_id *id;
	bool condemned;
};

static int condemn_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct condemn_ctx *c = ud;
	return store__artmeta_flags(s, txn, c->id, c->condemned ? AM_CONDEMNED : 0,
				    c->condemned ? 0 : AM_CONDEMNED);
}

int store_artifact_set_condemned(struct store *s, const struct store_id *id, bool condemned)
{
	if (!s || !id)
		return -EINVAL;
	struct condemn_ctx c = { id, condemned };
	return store__write(s, condemn_fn, &c);
}

/* ---- Blobs ------------------------------------------------------------------------------------------ */

/* The blob record of @blob: size and borrowed chunk hash list (valid within @txn). */
static int blob_load(struct store *s, MDB_txn *txn, const struct store_id *blob,
		     uint64_t *ret_size, const uint8_t **ret_hashes, uint32_t *ret_n)
{
	MDB_val k = { STORE_ID_LEN, (void *)blob->b }, v;
	int rc = mdb_get(txn, s->dbi[DB_BLOBS], &k, &v);
	if (rc)
		return store__mdb_err(rc);
	if (v.mv_size < 8)
		return -EIO;
	uint64_t size = store__be64_get(v.mv_data);
	uint64_t n = (size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE;
	if ((v.mv_size - 8) % STORE_ID_LEN || (v.mv_size - 8) / STORE_ID_LEN != n)
		return -EIO;
	*ret_size = size;
	*ret_hashes = (const uint8_t *)v.mv_data + 8;
	*ret_n = (uint32_t)n;
	return 0;
}

/* Chunk @i of a blob: borrowed bytes inside @txn; checks the length and (if @verify) hash. */
static int chunk_load(struct store *s, MDB_txn *txn, uint64_t size, const uint8_t *hashes,
		      uint32_t n, uint32_t i, bool verify, const uint8_t **ret, size_t *ret_len)
{
	size_t want = i + 1 < n ? STORE_CHUNK_SIZE : (size_t)(size - (uint64_t)i * STORE_CHUNK_SIZE);
	MDB_val k = { STORE_ID_LEN, (void *)(hashes + (size_t)i * STORE_ID_LEN) }, v;
	int rc = mdb_get(txn, s->dbi[DB_CHUNKS], &k, &v);
	if (rc == MDB_NOTFOUND)
		return -STORE_ECORRUPT; /* a blob whose chunk is missing is damaged */
	if (rc)
		return store__mdb_err(rc);
	if (v.mv_size != want)
		return -STORE_ECORRUPT;
	if (verify) {
		struct store_id h;
		store__hash(v.mv_data, v.mv_size, &h);
		if (memcmp(h.b, k.mv_data, STORE_ID_LEN))
			return -STORE_ECORRUPT;
	}
	*ret = v.mv_data;
	*ret_len = v.mv_size;
	return 0;
}

struct blob_ctx {
	const struct store_id *blob;
	uint64_t size, offset;
	uint32_t n, i;
	uint8_t *buf;
	size_t len, cap, got;
	bool verify;
	struct store_id hash;
};

static int blob_size_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct blob_ctx *b = ud;
	const uint8_t *h;
	return blob_load(s, txn, b->blob, &b->size, &h, &b->n);
}

int store_blob_size(struct store *s, const struct store_id *blob, uint64_t *ret_size)
{
	if (!s || !blob || !ret_size)
		return -EINVAL;
	struct blob_ctx b = { .blob = blob };
	int r = store__read(s, blob_size_fn, &b);
	if (r < 0)
		return r;
	*ret_size = b.size;
	return 0;
}

int store_blob_chunks(struct store *s, const struct store_id *blob, uint32_t *ret_count)
{
	if (!s || !blob || !ret_count)
		return -EINVAL;
	struct blob_ctx b = { .blob = blob };
	int r = store__read(s, blob_size_fn, &b);
	if (r < 0)
		return r;
	*ret_count = b.n;
	return 0;
}

static int blob_read_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct blob_ctx *b = ud;
	const uint8_t *hashes = NULL;
	int r = blob_load(s, txn, b->blob, &b->size, &hashes, &b->n);
	if (r < 0)
		return r;
	b->got = 0;
	uint64_t off = b->offset;
	while (b->got < b->len && off < b->size) {
		uint32_t i = (uint32_t)(off / STORE_CHUNK_SIZE);
		size_t in = (size_t)(off % STORE_CHUNK_SIZE);
		const uint8_t *p = NULL;
		size_t cl = 0;
		r = chunk_load(s, txn, b->size, hashes, b->n, i, b->verify, &p, &cl);
		if (r < 0)
			return r;
		size_t n = cl - in;
		if (n > b->len - b->got)
			n = b->len - b->got;
		memcpy(b->buf + b->got, p + in, n);
		b->got += n;
		off += n;
	}
	return 0;
}

int64_t store_blob_read(struct store *s, const struct store_id *blob, uint64_t offset, void *buf,
			size_t len, bool verify)
{
	if (!s || !blob || (!buf && len))
		return -EINVAL;
	if (len > INT64_MAX)
		len = INT64_MAX;
	struct blob_ctx b = { .blob = blob, .offset = offset, .buf = buf, .len = len,
			      .verify = verify };
	int r = store__read(s, blob_read_fn, &b);
	if (r < 0)
		return r;
	return (int64_t)b.got;
}

static int blob_chunk_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct blob_ctx *b = ud;
	const uint8_t *hashes = NULL;
	int r = blob_load(s, txn, b->blob, &b->size, &hashes, &b->n);
	if (r < 0)
		return r;
	if (b->i >= b->n)
		return -ENOENT;
	memcpy(b->hash.b, hashes + (size_t)b->i * STORE_ID_LEN, STORE_ID_LEN);
	const uint8_t *p = NULL;
	size_t cl = 0;
	/* Bytes handed out (to a peer) are always verified; the hash alone needs no read. */
	if (!b->buf) {
		b->got = b->i + 1 < b->n ? STORE_CHUNK_SIZE :
					   (size_t)(b->size - (uint64_t)b->i * STORE_CHUNK_SIZE);
		return 0;
	}
	r = chunk_load(s, txn, b->size, hashes, b->n, b->i, true, &p, &cl);
	if (r < 0)
		return r;
	if (cl > b->cap)
		return -ENOBUFS;
	memcpy(b->buf, p, cl);
	b->got = cl;
	return 0;
}

int store_blob_chunk(struct store *s, const struct store_id *blob, uint32_t i,
		     struct store_id *ret_hash, void *buf, size_t cap, size_t *ret_len)
{
	if (!s || !blob)
		return -EINVAL;
	struct blob_ctx b = { .blob = blob, .i = i, .buf = buf, .cap = cap };
	int r = store__read(s, blob_chunk_fn, &b);
	if (r < 0)
		return r;
	if (ret_hash)
		*ret_hash = b.hash;
	if (ret_len)
		*ret_len = b.got;
	return 0;
}

struct stream_ctx {
	const struct store_id *blob;
	uint64_t offset, len;
	bool verify;
	int (*cb)(const void *buf, size_t len, void *ud);
	void *ud;
};

static int blob_stream_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct stream_ctx *sc = ud;
	uint64_t size = 0;
	const uint8_t *hashes = NULL;
	uint32_t n = 0;
	int r = blob_load(s, txn, sc->blob, &size, &hashes, &n);
	if (r < 0)
		return r;
	uint64_t off = sc->offset;
	if (off >= size)
		return 0;
	uint64_t end = sc->len == 0 || sc->len > size - off ? size : off + sc->len;
	while (off < end) {
		uint32_t i = (uint32_t)(off / STORE_CHUNK_SIZE);
		size_t in = (size_t)(off % STORE_CHUNK_SIZE);
		const uint8_t *p = NULL;
		size_t cl = 0;
		if ((r = chunk_load(s, txn, size, hashes, n, i, sc->verify, &p, &cl)) < 0)
			return r;
		size_t k = cl - in;
		if (k > end - off)
			k = (size_t)(end - off);
		if ((r = sc->cb(p + in, k, sc->ud)) != 0)
			return r;
		off += k;
	}
	return 0;
}

int store_blob_stream(struct store *s, const struct store_id *blob, uint64_t offset, uint64_t len,
		      bool verify, int (*cb)(const void *buf, size_t len, void *ud), void *ud)
{
	if (!s || !blob || !cb)
		return -EINVAL;
	struct stream_ctx sc = { blob, offset, len, verify, cb, ud };
	return store__read(s, blob_stream_fn, &sc);
}

/* ---- Materialize -------------------------------------------------------------------------------------- */

/* rm -rf @path (best effort; returns the first error). */
static int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	int r = 0;
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char sub[PATH_MAX];
			if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub)) {
				r = r ? r : -ENAMETOOLONG;
				continue;
			}
			int q = rm_rf(sub);
			if (q < 0 && !r)
				r = q;
		}
		closedir(d);
	}
	if (rmdir(path) < 0 && !r)
		r = -errno;
	return r;
}

/* Create the parent directories of @rel under @root. */
static int mkparents(const char *root, const char *rel)
{
	char p[PATH_MAX];
	size_t rl = strlen(root);
	if (snprintf(p, sizeof(p), "%s/%s", root, rel) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *c = p + rl + 1; (c = strchr(c, '/')); c++) {
		*c = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		struct stat st;
		/* A symlink in the artifact must never redirect where later files are written. */
		if (lstat(p, &st) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -STORE_ECORRUPT;
		*c = '/';
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

struct mat_ctx {
	const struct store_id *id;
	const char *tmp;
};

/* A symlink's target, read and verified from its blob into @target (f->size + 1 bytes). */
static int mat_link_target(struct store *s, MDB_txn *txn, const struct store_file *f,
			   char *target)
{
	uint64_t size = 0;
	const uint8_t *hashes = NULL;
	uint32_t n = 0;
	int r = blob_load(s, txn, &f->blob, &size, &hashes, &n);
	if (r == -ENOENT)
		return -STORE_ECORRUPT;
	if (r < 0)
		return r;
	if (size != f->size)
		return -STORE_ECORRUPT;
	size_t tl = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *c = NULL;
		size_t cl = 0;
		if ((r = chunk_load(s, txn, size, hashes, n, i, true, &c, &cl)) < 0)
			return r;
		if (tl + cl > f->size) /* @target holds f->size + 1 bytes */
			return -STORE_ECORRUPT;
		memcpy(target + tl, c, cl);
		tl += cl;
	}
	target[tl] = '\0';
	if (strlen(target) != tl)
		return -STORE_ECORRUPT;
	return 0;
}

static int mat_file(struct store *s, MDB_txn *txn, const char *root, const struct store_file *f,
		    const char *target)
{
	uint64_t size = 0;
	const uint8_t *hashes = NULL;
	uint32_t n = 0;
	int r;
	if ((r = mkparents(root, f->path)) < 0)
		return r;
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", root, f->path) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	if (f->mode == 0120000)
		return symlink(target, p) < 0 ? -errno : 0;
	r = blob_load(s, txn, &f->blob, &size, &hashes, &n);
	if (r == -ENOENT)
		return -STORE_ECORRUPT;
	if (r < 0)
		return r;
	if (size != f->size)
		return -STORE_ECORRUPT;
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (uint32_t i = 0; i < n && r >= 0; i++) {
		const uint8_t *c = NULL;
		size_t cl = 0;
		r = chunk_load(s, txn, size, hashes, n, i, true, &c, &cl);
		if (r >= 0)
			r = write_all(fd, c, cl);
	}
	if (r >= 0 && fchmod(fd, f->mode) < 0)
		r = -errno;
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r >= 0)
		r = -errno;
	return r;
}

static int mat_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct mat_ctx *mc = ud;
	struct store_artifact_info a;
	int r = info_load(s, txn, mc->id, &a);
	if (r < 0)
		return r;
	/* Every symlink target first, then the validation every artifact passed at commit, once
	 * more before anything is written: a store is a file, and what reaches the disk from it
	 * must stay inside @dir whatever happened to that file. */
	size_t n = a.manifest.nfiles;
	char **targets = store__calloc(n ? n : 1, sizeof(*targets));
	r = targets ? 0 : -ENOMEM;
	for (size_t i = 0; i < n && r >= 0; i++) {
		const struct store_file *f = &a.manifest.files[i];
		if (f->mode != 0120000)
			continue;
		/* decoding bounded a symlink's size to 1..4096 */
		if (!(targets[i] = store__malloc(f->size + 1)))
			r = -ENOMEM;
		else
			r = mat_link_target(s, txn, f, targets[i]);
	}
	if (r >= 0)
		r = store__manifest_check(&a.manifest, (const char *const *)targets, NULL, NULL, 0);
	for (size_t i = 0; i < n && r >= 0; i++)
		r = mat_file(s, txn, mc->tmp, &a.manifest.files[i], targets[i]);
	for (size_t i = 0; targets && i < n; i++)
		store__free(targets[i]);
	store__free(targets);
	store_artifact_info_release(&a);
	return r;
}

int store_artifact_materialize(struct store *s, const struct store_id *id, const char *dir)
{
	if (!s || !id || !dir || !*dir)
		return -EINVAL;
	char tmp[PATH_MAX], old[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if (!mkdtemp(tmp))
		return -errno;
	chmod(tmp, 0755);
	struct mat_ctx mc = { id, tmp };
	int r = store__read(s, mat_fn, &mc);
	if (r < 0)
		goto fail;
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (rename(tmp, dir) == 0)
		return 0;
	if (errno != EEXIST && errno != ENOTEMPTY) {
		r = -errno;
		goto fail;
	}
	/* @dir exists: swap the two atomically, then remove the old tree (now at @tmp). */
#ifdef SYS_renameat2
	if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, dir, 2 /* RENAME_EXCHANGE */) == 0) {
		rm_rf(tmp);
		return 0;
	}
#endif
	/* No RENAME_EXCHANGE (old kernel or filesystem): move the old tree aside first. */
	if (snprintf(old, sizeof(old), "%s.old-XXXXXX", dir) >= (int)sizeof(old)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	if (!mkdtemp(old) || rename(dir, old) < 0 || rename(tmp, dir) < 0) {
		r = -errno;
		rmdir(old);
		goto fail;
	}
	rm_rf(old);
	return 0;
fail:
	rm_rf(tmp);
	return r;
}

/* ---- Garbage collection ---------------------------------------------------------------------------- */

struct idset {
	struct store_id *v;
	size_t n, cap;
};

static int idset_add(struct idset *s, const void *id)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct store_id *v = store__realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	memcpy(s->v[s->n++].b, id, STORE_ID_LEN);
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, STORE_ID_LEN);
}

static void idset_sort(struct idset *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), id_cmp);
}

static bool idset_has(const struct idset *s, const void *id)
{
	return s->n && bsearch(id, s->v, s->n, sizeof(*s->v), id_cmp);
}

int store__gc_txn(struct store *s, MDB_txn *txn)
{
	struct idset blobs = { 0 }, chunks = { 0 };
	MDB_cursor *c = NULL;
	MDB_val k, v;
	int r = 0, rc, dropped = 0;
	/* 1. Blobs some artifact references. */
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_ARTIFACTS], &c))) {
		r = store__mdb_err(rc);
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		struct store_manifest m;
		r = store_manifest_decode(v.mv_data, v.mv_size, &m);
		if (r < 0) {
			/* Never collect on a misread: a damaged manifest stops the collector. */
			r = r == -EBADMSG ? -EIO : r;
			goto out;
		}
		for (size_t i = 0; i < m.nfiles && r >= 0; i++)
			r = idset_add(&blobs, m.files[i].blob.b);
		store_manifest_release(&m);
		if (r < 0)
			goto out;
	}
	if (rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	mdb_cursor_close(c);
	c = NULL;
	idset_sort(&blobs);
	/* 2. Drop the other blobs; the chunks of the kept ones are referenced. */
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_BLOBS], &c))) {
		r = store__mdb_err(rc);
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != STORE_ID_LEN || v.mv_size < 8 || (v.mv_size - 8) % STORE_ID_LEN) {
			r = -EIO;
			goto out;
		}
		if (!idset_has(&blobs, k.mv_data)) {
			if ((rc = mdb_cursor_del(c, 0))) {
				r = store__mdb_err(rc);
				goto out;
			}
			dropped++;
			continue;
		}
		const uint8_t *h = (const uint8_t *)v.mv_data + 8;
		for (size_t i = 0; i < (v.mv_size - 8) / STORE_ID_LEN; i++)
			if ((r = idset_add(&chunks, h + i * STORE_ID_LEN)) < 0)
				goto out;
	}
	if (rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	mdb_cursor_close(c);
	c = NULL;
	/* 3. Chunks of imports in progress are referenced too. */
	pthread_mutex_lock(&s->implock);
	for (struct store_import *imp = s->imports; imp && r >= 0; imp = imp->next)
		for (size_t i = 0; i < imp->nfiles && r >= 0; i++)
			for (uint32_t j = 0; j < imp->files[i].nchunks && r >= 0; j++)
				r = idset_add(&chunks, imp->files[i].chunks[j].b);
	pthread_mutex_unlock(&s->implock);
	if (r < 0)
		goto out;
	idset_sort(&chunks);
	/* 4. Drop unreferenced chunks. */
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_CHUNKS], &c))) {
		r = store__mdb_err(rc);
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == STORE_ID_LEN && idset_has(&chunks, k.mv_data))
			continue;
		if ((rc = mdb_cursor_del(c, 0))) {
			r = store__mdb_err(rc);
			goto out;
		}
		dropped++;
	}
	if (rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	r = dropped;
out:
	if (c)
		mdb_cursor_close(c);
	store__free(blobs.v);
	store__free(chunks.v);
	return r;
}

static int gc_fn(struct store *s, MDB_txn *txn, void *ud)
{
	int r = store__gc_txn(s, txn);
	if (r < 0)
		return r;
	/* Orphans of crashed imports are gone now, unless an import is running. */
	bool busy;
	pthread_mutex_lock(&s->implock);
	busy = s->imports != NULL;
	pthread_mutex_unlock(&s->implock);
	if (!busy) {
		MDB_val k = { strlen(STORE_META_ORPHANS), STORE_META_ORPHANS };
		int rc = mdb_del(txn, s->dbi[DB_META], &k, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return store__mdb_err(rc);
	}
	return r;
}

int store_gc(struct store *s)
{
	if (!s)
		return -EINVAL;
	return store__write(s, gc_fn, NULL);
}
