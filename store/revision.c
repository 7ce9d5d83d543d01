/*
 * store/revision.c: the per-service revision log, votes, the service list and retention.
 *
 * Revisions are keyed service \0 be64(rev), so one service's log is a contiguous, ordered key
 * range: "latest" and "newest first" are a cursor positioned just past the range and walked
 * backwards, which is what keeps `agentctl history` fast however long the log is.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

int store__artmeta_get(struct store *s, MDB_txn *txn, const struct store_id *id,
		       uint8_t *ret_flags, uint64_t *ret_seq, char ret_service[65]);
int store__artmeta_flags(struct store *s, MDB_txn *txn, const struct store_id *id, uint8_t set,
			 uint8_t clear);

/* service \0 be64 rev */
static size_t rev_key(uint8_t *k, const char *service, uint64_t rev)
{
	size_t sl = strlen(service);
	memcpy(k, service, sl);
	k[sl] = 0;
	store__be64_put(k + sl + 1, rev);
	return sl + 9;
}

static bool rev_key_of(const MDB_val *k, const char *service, size_t sl)
{
	return k->mv_size == sl + 9 && !memcmp(k->mv_data, service, sl) &&
	       ((const uint8_t *)k->mv_data)[sl] == 0;
}

/*
 * Position @c on the newest revision of @service. Returns 0 (positioned, key/value in @k/@v),
 * -ENOENT (none), or an error.
 */
static int rev_last(MDB_cursor *c, const char *service, MDB_val *k, MDB_val *v)
{
	uint8_t kb[74];
	size_t sl = strlen(service);
	k->mv_size = rev_key(kb, service, UINT64_MAX);
	k->mv_data = kb;
	int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
	if (rc == 0 && rev_key_of(k, service, sl))
		return 0; /* rev UINT64_MAX itself */
	if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(c, k, v, MDB_LAST);
	else if (rc == 0)
		rc = mdb_cursor_get(c, k, v, MDB_PREV);
	if (rc)
		return store__mdb_err(rc);
	return rev_key_of(k, service, sl) ? 0 : -ENOENT;
}

/* ---- Retention -------------------------------------------------------------------------------- */

struct retain_art {
	struct store_id id;
	uint64_t seq;
	uint8_t flags;
};

static int seq_desc(const void *a, const void *b)
{
	const struct retain_art *x = a, *y = b;
	return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

/*
 * The artifacts the revisions above @cutoff point at, newest first (at most retain_revs of
 * them, so this is cheap however long the log grew before retention first ran).
 */
static int kept_artifacts(struct store *s, MDB_txn *txn, const char *service, uint64_t cutoff,
			  struct store_id **ret, size_t *ret_n)
{
	size_t sl = strlen(service), n = 0, cap = 0;
	struct store_id *kept = NULL;
	MDB_cursor *c;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c);
	if (rc)
		return store__mdb_err(rc);
	int r = rev_last(c, service, &k, &v);
	while (r == 0) {
		if (store__be64_get((const uint8_t *)k.mv_data + sl + 1) <= cutoff)
			break;
		struct store_revision rev;
		if (store_revision_decode(v.mv_data, v.mv_size, &rev) < 0) {
			r = -EIO;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct store_id *nk = store__realloc(kept, cap * sizeof(*nk));
			if (!nk) {
				store_revision_release(&rev);
				r = -ENOMEM;
				break;
			}
			kept = nk;
		}
		kept[n++] = rev.artifact;
		store_revision_release(&rev);
		rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
		if (rc == MDB_NOTFOUND || (rc == 0 && !rev_key_of(&k, service, sl)))
			break;
		if (rc)
			r = store__mdb_err(rc);
	}
	mdb_cursor_close(c);
	if (r < 0 && r != -ENOENT) {
		store__free(kept);
		return r;
	}
	*ret = kept;
	*ret_n = n;
	return 0;
}

/* Delete the entries of @dbi whose key starts with service \0 be64(rev) with rev <= @cutoff. */
static int drop_upto(MDB_txn *txn, MDB_dbi dbi, const char *service, uint64_t cutoff)
{
	size_t sl = strlen(service);
	uint8_t kb[74];
	MDB_val k = { rev_key(kb, service, 0), kb }, v;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		return store__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size < sl + 9 || memcmp(p, service, sl) || p[sl] ||
		    store__be64_get(p + sl + 1) > cutoff)
			break;
		if ((rc = mdb_cursor_del(c, 0)))
			break;
	}
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

static int retain_txn(struct store *s, MDB_txn *txn, const char *service)
{
	size_t sl = strlen(service);
	MDB_cursor *c = NULL;
	MDB_val k, v;
	struct store_id *kept = NULL;
	struct retain_art *arts = NULL;
	size_t nkept = 0, narts = 0, cap = 0;
	uint64_t latest = 0, cutoff = 0;
	int r, rc, dropped = 0;

	/*
	 * 1. The log keeps the revision numbers (latest - retain_revs, latest]: revisions are
	 * numbered densely per service, so that is the newest retain_revs of them, and the cut is
	 * found with one seek instead of a count. Older revisions and their votes go.
	 */
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c)))
		return store__mdb_err(rc);
	r = rev_last(c, service, &k, &v);
	if (r == 0)
		latest = store__be64_get((const uint8_t *)k.mv_data + sl + 1);
	mdb_cursor_close(c);
	c = NULL;
	if (r < 0 && r != -ENOENT)
		return r;
	cutoff = latest > s->retain_revs ? latest - s->retain_revs : 0;
	if (cutoff) {
		if ((r = drop_upto(txn, s->dbi[DB_REVISIONS], service, cutoff)) < 0 ||
		    (r = drop_upto(txn, s->dbi[DB_VOTES], service, cutoff)) < 0)
			return r;
	}

	/* 2. The service's artifacts, newest import first. */
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_ARTMETA], &c))) {
		r = store__mdb_err(rc);
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *p = v.mv_data;
		size_t al = v.mv_size >= ARTMETA_FIXED ? p[ARTMETA_FIXED - 1] : 0;
		if (k.mv_size != STORE_ID_LEN || v.mv_size < ARTMETA_FIXED || p[0] != 1 || al > 64 ||
		    v.mv_size != ARTMETA_FIXED + al) {
			r = -EIO;
			goto out;
		}
		if (al != sl || memcmp(p + ARTMETA_FIXED, service, sl))
			continue;
		if (narts == cap) {
			cap = cap ? cap * 2 : 16;
			struct retain_art *na = store__realloc(arts, cap * sizeof(*arts));
			if (!na) {
				r = -ENOMEM;
				goto out;
			}
			arts = na;
		}
		memcpy(arts[narts].id.b, k.mv_data, STORE_ID_LEN);
		arts[narts].seq = store__be64_get(p + 10);
		arts[narts].flags = p[1];
		narts++;
	}
	if (rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	mdb_cursor_close(c);
	c = NULL;
	if (narts > 1)
		qsort(arts, narts, sizeof(*arts), seq_desc);

	/* 3. What runs and what last ran healthy are never dropped. */
	struct store_id running = { { 0 } }, last_good = { { 0 } };
	k.mv_size = sl;
	k.mv_data = (void *)service;
	rc = mdb_get(txn, s->dbi[DB_SERVICES], &k, &v);
	if (rc == 0 && v.mv_size == 2 * STORE_ID_LEN + 8) {
		memcpy(running.b, v.mv_data, STORE_ID_LEN);
		memcpy(last_good.b, (const uint8_t *)v.mv_data + STORE_ID_LEN + 8, STORE_ID_LEN);
	} else if (rc && rc != MDB_NOTFOUND) {
		r = store__mdb_err(rc);
		goto out;
	}
	bool have_kept = false;
	for (size_t i = 0; i < narts; i++) {
		const struct store_id *id = &arts[i].id;
		if (!memcmp(id, &running, sizeof(*id)) || !memcmp(id, &last_good, sizeof(*id)))
			continue;
		/* Imported but never deployed: kept while among the newest imports. */
		if (!(arts[i].flags & AM_DEPLOYED) && i < s->retain_revs)
			continue;
		/* A candidate: is it still referenced by a kept revision? (Read them only now, and
		 * only once: most calls never get here.) */
		if (!have_kept) {
			if ((r = kept_artifacts(s, txn, service, cutoff, &kept, &nkept)) < 0)
				goto out;
			have_kept = true;
		}
		bool keep = false;
		for (size_t j = 0; j < nkept && !keep; j++)
			keep = !memcmp(id, &kept[j], sizeof(*id));
		if (keep)
			continue;
		MDB_val ak = { STORE_ID_LEN, arts[i].id.b };
		if ((rc = mdb_del(txn, s->dbi[DB_ARTIFACTS], &ak, NULL)) && rc != MDB_NOTFOUND) {
			r = store__mdb_err(rc);
			goto out;
		}
		if ((rc = mdb_del(txn, s->dbi[DB_ARTMETA], &ak, NULL)) && rc != MDB_NOTFOUND) {
			r = store__mdb_err(rc);
			goto out;
		}
		dropped++;
	}
	/* 4. Then the blobs and chunks nothing references any more. */
	if (dropped) {
		r = store__gc_txn(s, txn);
		if (r < 0)
			goto out;
	}
	r = dropped;
out:
	if (c)
		mdb_cursor_close(c);
	store__free(kept);
	store__free(arts);
	return r;
}

static int retain_fn(struct store *s, MDB_txn *txn, void *ud)
{
	return retain_txn(s, txn, ud);
}

int store_retain(struct store *s, const char *service)
{
	if (!s || !store__service_valid(service))
		return -EINVAL;
	return store__write(s, retain_fn, (void *)service);
}

/* ---- Revisions -------------------------------------------------------------------------------- */

struct rev_put_ctx {
	const struct store_revision *r;
	const uint8_t *buf;
	size_t len;
};

static int rev_put_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct rev_put_ctx *p = ud;
	uint8_t kb[74];
	MDB_val k = { rev_key(kb, p->r->service, p->r->rev), kb }, v = { p->len, (void *)p->buf };
	int rc = mdb_put(txn, s->dbi[DB_REVISIONS], &k, &v, 0);
	if (rc)
		return store__mdb_err(rc);
	/* The artifact has been deployed: from now on retention follows the revisions. */
	int r = store__artmeta_flags(s, txn, &p->r->artifact, AM_DEPLOYED, 0);
	if (r < 0 && r != -ENOENT)
		return r;
	r = retain_txn(s, txn, p->r->service);
	return r < 0 ? r : 0;
}

int store_revision_put(struct store *s, const struct store_revision *r)
{
	if (!s || !r)
		return -EINVAL;
	struct rev_put_ctx p = { .r = r };
	uint8_t *buf;
	int e = store_revision_encode(r, &buf, &p.len);
	if (e < 0)
		return e;
	p.buf = buf;
	e = store__write(s, rev_put_fn, &p);
	store__free(buf);
	return e;
}

struct rev_get_ctx {
	const char *service;
	uint64_t rev;
	struct store_revision out;
	/* foreach */
	unsigned limit;
	struct store_revision *list;
	size_t n, cap;
};

static int rev_get_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct rev_get_ctx *g = ud;
	uint8_t kb[74];
	MDB_val k = { rev_key(kb, g->service, g->rev), kb }, v;
	int rc = mdb_get(txn, s->dbi[DB_REVISIONS], &k, &v);
	if (rc)
		return store__mdb_err(rc);
	int r = store_revision_decode(v.mv_data, v.mv_size, &g->out);
	return r == -EBADMSG ? -EIO : r;
}

int store_revision_get(struct store *s, const char *service, uint64_t rev,
		       struct store_revision *ret)
{
	if (!s || !store__service_valid(service) || !ret)
		return -EINVAL;
	struct rev_get_ctx g = { .service = service, .rev = rev };
	int r = store__read(s, rev_get_fn, &g);
	if (r < 0)
		return r;
	*ret = g.out;
	return 0;
}

static int rev_latest_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct rev_get_ctx *g = ud;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c);
	if (rc)
		return store__mdb_err(rc);
	MDB_val k, v;
	int r = rev_last(c, g->service, &k, &v);
	if (r == 0)
		g->rev = store__be64_get((const uint8_t *)k.mv_data + k.mv_size - 8);
	else if (r == -ENOENT)
		g->rev = 0, r = 0;
	mdb_cursor_close(c);
	return r;
}

int store_revision_latest(struct store *s, const char *service, uint64_t *ret_rev)
{
	if (!s || !store__service_valid(service) || !ret_rev)
		return -EINVAL;
	struct rev_get_ctx g = { .service = service };
	int r = store__read(s, rev_latest_fn, &g);
	if (r < 0)
		return r;
	*ret_rev = g.rev;
	return 0;
}

static void rev_list_reset(struct rev_get_ctx *g)
{
	for (size_t i = 0; i < g->n; i++)
		store_revision_release(&g->list[i]);
	g->n = 0;
}

static int rev_foreach_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct rev_get_ctx *g = ud;
	rev_list_reset(g);
	size_t sl = strlen(g->service);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c);
	if (rc)
		return store__mdb_err(rc);
	MDB_val k, v;
	int r = rev_last(c, g->service, &k, &v);
	while (r == 0 && (g->limit == 0 || g->n < g->limit)) {
		if (g->n == g->cap) {
			size_t cap = g->cap ? g->cap * 2 : 32;
			if (g->limit && cap > g->limit)
				cap = g->limit;
			struct store_revision *nl = store__realloc(g->list, cap * sizeof(*nl));
			if (!nl) {
				r = -ENOMEM;
				break;
			}
			g->list = nl;
			g->cap = cap;
		}
		r = store_revision_decode(v.mv_data, v.mv_size, &g->list[g->n]);
		if (r < 0) {
			r = r == -EBADMSG ? -EIO : r;
			break;
		}
		g->n++;
		rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
		if (rc == MDB_NOTFOUND || (rc == 0 && !rev_key_of(&k, g->service, sl)))
			break;
		if (rc)
			r = store__mdb_err(rc);
	}
	mdb_cursor_close(c);
	return r == -ENOENT ? 0 : r;
}

int store_revision_foreach(struct store *s, const char *service, unsigned limit,
			   int (*cb)(const struct store_revision *r, void *ud), void *ud)
{
	if (!s || !store__service_valid(service) || !cb)
		return -EINVAL;
	struct rev_get_ctx g = { .service = service, .limit = limit };
	int r = store__read(s, rev_foreach_fn, &g);
	for (size_t i = 0; r >= 0 && i < g.n; i++) {
		r = cb(&g.list[i], ud);
		if (r)
			break;
	}
	rev_list_reset(&g);
	store__free(g.list);
	return r;
}

/* ---- Services --------------------------------------------------------------------------------- */

struct names {
	char (*v)[65];
	size_t n, cap;
};

static int names_add(struct names *ns, const void *name, size_t len)
{
	if (len == 0 || len > 64)
		return -EIO;
	if (ns->n && strlen(ns->v[ns->n - 1]) == len && !memcmp(ns->v[ns->n - 1], name, len))
		return 0; /* consecutive duplicate (sorted keys) */
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		char(*nv)[65] = store__realloc(ns->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		ns->v = nv;
		ns->cap = cap;
	}
	memcpy(ns->v[ns->n], name, len);
	ns->v[ns->n][len] = '\0';
	ns->n++;
	return 0;
}

static int names_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct names *ns = ud;
	ns->n = 0;
	MDB_cursor *c;
	MDB_val k, v;
	int r = 0, rc = mdb_cursor_open(txn, s->dbi[DB_REVISIONS], &c);
	if (rc)
		return store__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && r >= 0;) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size < 10 || p[k.mv_size - 9] != 0) {
			r = -EIO;
			break;
		}
		size_t sl = k.mv_size - 9;
		r = names_add(ns, p, sl);
		/* Skip the rest of this service's log in one seek. */
		uint8_t kb[74];
		memcpy(kb, p, sl);
		kb[sl] = 0;
		memset(kb + sl + 1, 0xff, 8);
		k.mv_size = sl + 9;
		k.mv_data = kb;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == sl + 9 && !memcmp(k.mv_data, kb, sl + 9))
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (r < 0)
		return r;
	if (rc != MDB_NOTFOUND)
		return store__mdb_err(rc);
	if ((rc = mdb_cursor_open(txn, s->dbi[DB_ARTMETA], &c)))
		return store__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && r >= 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		const uint8_t *p = v.mv_data;
		if (v.mv_size < ARTMETA_FIXED || v.mv_size != ARTMETA_FIXED + (size_t)p[ARTMETA_FIXED - 1])
			r = -EIO;
		else
			r = names_add(ns, p + ARTMETA_FIXED, p[ARTMETA_FIXED - 1]);
	}
	mdb_cursor_close(c);
	if (r < 0)
		return r;
	return rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

int store_service_foreach(struct store *s, int (*cb)(const char *service, void *ud), void *ud)
{
	if (!s || !cb)
		return -EINVAL;
	struct names ns = { 0 };
	int r = store__read(s, names_fn, &ns);
	if (r < 0)
		goto out;
	if (ns.n > 1)
		qsort(ns.v, ns.n, sizeof(*ns.v), name_cmp);
	for (size_t i = 0; i < ns.n; i++) {
		if (i > 0 && !strcmp(ns.v[i - 1], ns.v[i]))
			continue;
		r = cb(ns.v[i], ud);
		if (r)
			goto out;
	}
	r = 0;
out:
	store__free(ns.v);
	return r;
}

/* ---- Votes ------------------------------------------------------------------------------------ */

/* Value: format byte 3, reason, hlc, subject, target (be64 each), round (be32), the voter's
 * signature (64 bytes; agent/base/sign.h). Format 2 (30 bytes, no signature) reads back with
 * a zero signature, which no certificate accepts. Format 1 values
 * (9 bytes: reason, hlc) predate subject and target: they read back with subject 0, which the
 * agreement core never counts. */
#define VOTE_VAL_LEN (30 + STORE_SIG_LEN)
#define VOTE_VAL_V2 30
#define VOTE_VAL_V1 9

bool store_vote_newer(const struct store_vote *a, const struct store_vote *b)
{
	/* Rounds belong to one subject (agent/agree.h rule 4): a voter that moved on to another
	 * record at this rev (another subject) votes there from round 0, and that vote, later by
	 * its clock, must replace a round-1 vote about the record it held before. */
	if (a->subject == b->subject && a->round != b->round)
		return a->round > b->round;
	return a->hlc > b->hlc;
}

static size_t vote_key(uint8_t *k, const char *service, uint64_t rev, const uint8_t *voter)
{
	size_t n = rev_key(k, service, rev);
	memcpy(k + n, voter, STORE_NODE_ID_LEN);
	return n + STORE_NODE_ID_LEN;
}

/* Decode a stored value into @out's reason, hlc, subject, target, round. 0 or -EIO. */
static int vote_val_get(const MDB_val *v, struct store_vote *out)
{
	const uint8_t *vb = v->mv_data;
	if (v->mv_size == VOTE_VAL_V1 && vb[0] <= STORE_VOTE_OPERATOR) {
		out->reason = (enum store_vote_reason)vb[0];
		out->hlc = store__be64_get(vb + 1);
		out->subject = out->target = 0;
		out->round = 0;
		return 0;
	}
	if (!((v->mv_size == VOTE_VAL_LEN && vb[0] == 3) ||
	      (v->mv_size == VOTE_VAL_V2 && vb[0] == 2)) || vb[1] > STORE_VOTE_OPERATOR)
		return -EIO;
	if (v->mv_size == VOTE_VAL_LEN)
		memcpy(out->sig, vb + 30, STORE_SIG_LEN);
	else
		memset(out->sig, 0, STORE_SIG_LEN);
	out->reason = (enum store_vote_reason)vb[1];
	out->hlc = store__be64_get(vb + 2);
	out->subject = store__be64_get(vb + 10);
	out->target = store__be64_get(vb + 18);
	out->round = store__be32_get(vb + 26);
	return 0;
}

static int vote_put_fn(struct store *s, MDB_txn *txn, void *ud)
{
	const struct store_vote *vt = ud;
	uint8_t kb[90], vb[VOTE_VAL_LEN];
	vb[0] = 3;
	vb[1] = (uint8_t)vt->reason;
	memcpy(vb + 30, vt->sig, STORE_SIG_LEN);
	store__be64_put(vb + 2, vt->hlc);
	store__be64_put(vb + 10, vt->subject);
	store__be64_put(vb + 18, vt->target);
	store__be32_put(vb + 26, vt->round);
	MDB_val k = { vote_key(kb, vt->service, vt->rev, vt->voter), kb }, v = { sizeof(vb), vb };
	MDB_val old;
	int rc = mdb_get(txn, s->dbi[DB_VOTES], &k, &old);
	if (rc == 0) {
		struct store_vote held = { 0 };
		/* a damaged value is replaced by any valid vote */
		if (vote_val_get(&old, &held) == 0 && !store_vote_newer(vt, &held))
			return 1;
	} else if (rc != MDB_NOTFOUND) {
		return store__mdb_err(rc);
	}
	return store__mdb_err(mdb_put(txn, s->dbi[DB_VOTES], &k, &v, 0));
}

int store_vote_put(struct store *s, const struct store_vote *v)
{
	if (!s || !v || !memchr(v->service, 0, sizeof(v->service)) ||
	    !store__service_valid(v->service) || v->rev == 0 ||
	    (v->reason != STORE_VOTE_HEALTH && v->reason != STORE_VOTE_OPERATOR))
		return -EINVAL;
	return store__write(s, vote_put_fn, (void *)v);
}

struct vote_many {
	const struct store_vote *v;
	size_t n;
};

static int vote_many_fn(struct store *s, MDB_txn *txn, void *ud)
{
	const struct vote_many *m = ud;
	for (size_t i = 0; i < m->n; i++) {
		int r = vote_put_fn(s, txn, (void *)&m->v[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int store_vote_put_many(struct store *s, const struct store_vote *v, size_t n)
{
	if (!s || (!v && n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!memchr(v[i].service, 0, sizeof(v[i].service)) ||
		    !store__service_valid(v[i].service) || v[i].rev == 0 ||
		    (v[i].reason != STORE_VOTE_HEALTH && v[i].reason != STORE_VOTE_OPERATOR))
			return -EINVAL;
	if (n == 0)
		return 0;
	struct vote_many m = { v, n };
	return store__write(s, vote_many_fn, &m);
}

struct vote_ctx {
	const char *service;
	uint64_t rev;
	struct store_vote *list;
	size_t n, cap;
};

static int vote_foreach_fn(struct store *s, MDB_txn *txn, void *ud)
{
	struct vote_ctx *vc = ud;
	vc->n = 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dbi[DB_VOTES], &c);
	if (rc)
		return store__mdb_err(rc);
	uint8_t kb[74];
	size_t pl = rev_key(kb, vc->service, vc->rev);
	MDB_val k = { pl, kb }, v;
	int r = 0;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != pl + STORE_NODE_ID_LEN || memcmp(k.mv_data, kb, pl))
			break;
		struct store_vote tmp = { 0 };
		if (vote_val_get(&v, &tmp) < 0) {
			r = -EIO;
			break;
		}
		if (vc->n == vc->cap) {
			size_t cap = vc->cap ? vc->cap * 2 : 16;
			struct store_vote *nl = store__realloc(vc->list, cap * sizeof(*nl));
			if (!nl) {
				r = -ENOMEM;
				break;
			}
			vc->list = nl;
			vc->cap = cap;
		}
		struct store_vote *out = &vc->list[vc->n++];
		memset(out, 0, sizeof(*out));
		strcpy(out->service, vc->service);
		out->rev = vc->rev;
		memcpy(out->voter, (const uint8_t *)k.mv_data + pl, STORE_NODE_ID_LEN);
		out->reason = tmp.reason;
		out->hlc = tmp.hlc;
		out->subject = tmp.subject;
		out->target = tmp.target;
		out->round = tmp.round;
	}
	mdb_cursor_close(c);
	if (r < 0)
		return r;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

int store_vote_foreach(struct store *s, const char *service, uint64_t rev,
		       int (*cb)(const struct store_vote *v, void *ud), void *ud)
{
	if (!s || !store__service_valid(service) || !cb)
		return -EINVAL;
	struct vote_ctx vc = { .service = service, .rev = rev };
	int r = store__read(s, vote_foreach_fn, &vc);
	for (size_t i = 0; r >= 0 && i < vc.n; i++) {
		r = cb(&vc.list[i], ud);
		if (r)
			break;
	}
	store__free(vc.list);
	return r;
}
