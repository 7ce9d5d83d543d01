/*
 * agent/fleet/fleet.c: the fleet state (see fleet.h for the data flow and the contracts): the
 * records, the roster, the local markers, and the loop wiring of the reconciler and health.
 *
 * State, per service (struct svc), all on the loop thread:
 *   log     the winner per rev, as agree_accept merged it (mirrors the store's revisions)
 *   votes   the newest per (rev, voter), with its subject, target and round
 *   local   the `rollback --local` marker
 *   what runs, what is desired, the health of our instance, our swapping flag
 * and, for the whole cluster, the latest health record of every (node, service) and a ring of
 * events for `agentctl events`.
 *
 * Why the fleet re-examines everything on a membership change: gossip hands a record over
 * once (when it is newer), but a rollback refused now for want of known voters (AGREE_ECERT)
 * may be valid once this node learns of more members. Re-running the held records through
 * the same path is idempotent (agree_accept answers KEEP for what is held), cheap at the sizes
 * Shoal targets, and keeps one code path. A 5 s timer does the same as a safety net.
 */
#include "agent/fleet/fleet_int.h"

#include <sodium.h>

/* ---- Small helpers ------------------------------------------------------------------------- */

uint64_t fleet__stamp(struct fleet *b)
{
	uint64_t t = 0;
	if (hlc_now(&b->clock, agent_now_ms(), &t) < 0)
		t = b->clock.last + 1;
	return t;
}

void fleet__observe(struct fleet *b, uint64_t remote)
{
	if (remote && hlc_update(&b->clock, agent_now_ms(), remote, NULL) == -ERANGE)
		b->hlc_refused++;
}

void fleet__hex_id(const uint8_t *id, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

const char *fleet__member_name(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN], char *buf)
{
	for (size_t i = 0; i < b->nmembers; i++)
		if (memcmp(b->members[i].id, id, STORE_NODE_ID_LEN) == 0 && b->member_names[i][0])
			return b->member_names[i];
	fleet__hex_id(id, 4, buf);
	return buf;
}

/* ---- Services ------------------------------------------------------------------------------ */

const char *fleet__quorum_name(const struct store_quorum *q)
{
	static char buf[2][32];
	static int k;
	char *o = buf[k++ & 1];
	if (q->kind == AGREE_QUORUM_COUNT)
		snprintf(o, 32, "%" PRIu32, q->count);
	else if (q->kind == AGREE_QUORUM_FRACTION)
		snprintf(o, 32, "%" PRIu32 "/%" PRIu32, q->num, q->den);
	else
		snprintf(o, 32, "majority");
	return o;
}

/* Has this node completed its first full anti-entropy exchange (agree.h rule 0)? */
bool fleet__synced(struct fleet *b)
{
	return !b->net.synced || b->net.synced(b->net.ud);
}

struct svc *fleet__svc_find(struct fleet *b, const char *name)
{
	for (size_t i = 0; i < b->nsvcs; i++)
		if (strcmp(b->svcs[i]->name, name) == 0)
			return b->svcs[i];
	return NULL;
}

struct svc *fleet__svc_get(struct fleet *b, const char *name)
{
	struct svc *v = fleet__svc_find(b, name);
	if (v)
		return v;
	if (strlen(name) > 64)
		return NULL;
	struct svc **n = realloc(b->svcs, (b->nsvcs + 1) * sizeof *n);
	if (!n)
		return NULL;
	b->svcs = n;
	v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	snprintf(v->name, sizeof v->name, "%s", name);
	v->hstate = HSTATE_NONE;
	b->svcs[b->nsvcs++] = v;
	return v;
}

static void svc_free(struct svc *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nlog; i++)
		store_revision_release(&v->log[i]);
	free(v->log);
	free(v->votes);
	free(v);
}

uint64_t fleet__svc_max_rev(const struct svc *v)
{
	uint64_t m = 0;
	for (size_t i = 0; i < v->nlog; i++)
		if (v->log[i].rev > m)
			m = v->log[i].rev;
	return m;
}

/* Copy @r (deep) into the log, replacing the record at its rev. */
int fleet__log_set(struct svc *v, const struct store_revision *r)
{
	struct store_revision c;
	if (store_revision_copy(&c, r) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < v->nlog; i++) {
		if (v->log[i].rev == r->rev) {
			store_revision_release(&v->log[i]);
			v->log[i] = c;
			return 0;
		}
	}
	if (v->nlog == v->caplog) {
		size_t cap = v->caplog ? 2 * v->caplog : 16;
		struct store_revision *n = realloc(v->log, cap * sizeof *n);
		if (!n) {
			store_revision_release(&c);
			return -ENOMEM;
		}
		v->log = n;
		v->caplog = cap;
	}
	v->log[v->nlog++] = c;
	return 0;
}

/* Add a vote; one per (rev, voter): a re-cast (store_vote_newer) replaces the held one.
 * Returns 1 if new or changed, 0 if known or older, -ENOMEM. */
int fleet__vote_add(struct svc *v, const struct store_vote *nv)
{
	for (size_t i = 0; i < v->nvotes; i++) {
		struct store_vote *o = &v->votes[i];
		if (o->rev == nv->rev && memcmp(o->voter, nv->voter, STORE_NODE_ID_LEN) == 0) {
			if (!store_vote_newer(nv, o))
				return 0;
			*o = *nv;
			return 1;
		}
	}
	if (v->nvotes == v->capvotes) {
		size_t cap = v->capvotes ? 2 * v->capvotes : 16;
		struct store_vote *n = realloc(v->votes, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		v->votes = n;
		v->capvotes = cap;
	}
	v->votes[v->nvotes++] = *nv;
	return 1;
}


/* ---- Members ------------------------------------------------------------------------------- */

struct mcollect {
	struct fleet *b;
	struct agree_member *m;
	char (*sites)[65];
	char (*names)[65];
	size_t n, cap;
	int err;
};

static int member_cb(void *ud, const struct gossip_member *gm)
{
	struct mcollect *c = ud;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct agree_member *m = realloc(c->m, cap * sizeof *m);
		if (!m)
			goto nomem;
		c->m = m;
		char (*s)[65] = realloc(c->sites, cap * sizeof *s);
		if (!s)
			goto nomem;
		c->sites = s;
		char (*nm)[65] = realloc(c->names, cap * sizeof *nm);
		if (!nm)
			goto nomem;
		c->names = nm;
		c->cap = cap;
	}
	struct agree_member *am = &c->m[c->n];
	memset(am, 0, sizeof *am);
	memcpy(am->id, gm->id, STORE_NODE_ID_LEN);
	switch (gm->state) {
	case GOSSIP_ALIVE: am->state = AGREE_ALIVE; break;
	case GOSSIP_SUSPECT: am->state = AGREE_SUSPECT; break;
	case GOSSIP_DEAD: am->state = AGREE_DEAD; break;
	default: am->state = AGREE_LEFT; break;
	}
	c->sites[c->n][0] = 0;
	if (gm->labels && gm->labels_len &&
	    cluster_label_get(gm->labels, gm->labels_len, "site", c->sites[c->n], 65) <= 0)
		c->sites[c->n][0] = 0;
	snprintf(c->names[c->n], 65, "%s", gm->name);
	c->n++;
	return 0;
nomem:
	c->err = -ENOMEM;
	return -ENOMEM;
}

/* Roster entries: one per id; a roster record decides over the member view. */
struct rcollect {
	struct fleet *b;
	struct agree_member *m;
	char (*sites)[65];
	char (*addrs)[64];
	uint64_t *rhlc;			/* the entry's roster record stamp (0: none seen) */
	uint64_t *xhlc;			/* the newest removal of the entry (0: none) */
	size_t n, cap;
	int err;
};

static struct agree_member *rc_slot(struct rcollect *c, const uint8_t *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (memcmp(c->m[i].id, id, STORE_NODE_ID_LEN) == 0)
			return &c->m[i];
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct agree_member *m = realloc(c->m, cap * sizeof *m);
		if (!m)
			return NULL;
		c->m = m;
		char (*s)[65] = realloc(c->sites, cap * sizeof *s);
		if (!s)
			return NULL;
		c->sites = s;
		char (*ad)[64] = realloc(c->addrs, cap * sizeof *ad);
		if (!ad)
			return NULL;
		c->addrs = ad;
		uint64_t *rh = realloc(c->rhlc, cap * sizeof *rh);
		if (!rh)
			return NULL;
		c->rhlc = rh;
		uint64_t *xh = realloc(c->xhlc, cap * sizeof *xh);
		if (!xh)
			return NULL;
		c->xhlc = xh;
		c->cap = cap;
	}
	c->addrs[c->n][0] = 0;
	c->rhlc[c->n] = c->xhlc[c->n] = 0;
	memset(&c->m[c->n], 0, sizeof c->m[c->n]);
	memcpy(c->m[c->n].id, id, STORE_NODE_ID_LEN);
	c->m[c->n].state = AGREE_DEAD;	/* not seen alive: still on the roster */
	c->sites[c->n][0] = 0;
	return &c->m[c->n++];
}

/* ---- Node keys (trust on first join, sign.h) ------------------------------------------------ */

const uint8_t *fleet__bound_key(const struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN])
{
	size_t lo = 0, hi = b->nbinds;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = memcmp(b->binds[mid].id, id, STORE_NODE_ID_LEN);
		if (c == 0)
			return b->binds[mid].key;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct nodekey *fleet__bind_slot(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN])
{
	const uint8_t *k = fleet__bound_key(b, id);
	return k ? (struct nodekey *)(k - offsetof(struct nodekey, key)) : NULL;
}
#define bind_slot fleet__bind_slot

bool fleet__key_of_id(const struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
		      const uint8_t key[STORE_KEY_LEN])
{
	const uint8_t *k = fleet__bound_key(b, id);
	if (!k)
		return false;
	const struct nodekey *nk = (const struct nodekey *)(k - offsetof(struct nodekey, key));
	if (sodium_memcmp(k, key, STORE_KEY_LEN) == 0)
		return true;
	for (unsigned i = 0; i < nk->nprev; i++)
		if (sodium_memcmp(nk->prev[i], key, STORE_KEY_LEN) == 0)
			return true;
	return false;
}

/* Store value of "nodekey/<id hex>": the bound key, then its former keys newest first (a
 * value of one key is the format before rotations; both are read). */
static void bind_persist(struct fleet *b, const struct nodekey *nk)
{
	char kk[8 + 2 * STORE_NODE_ID_LEN + 1];
	uint8_t val[(1 + FLEET_PREV_KEYS) * STORE_KEY_LEN];
	memcpy(kk, "nodekey/", 8);
	fleet__hex_id(nk->id, STORE_NODE_ID_LEN, kk + 8);
	memcpy(val, nk->key, STORE_KEY_LEN);
	memcpy(val + STORE_KEY_LEN, nk->prev, (size_t)nk->nprev * STORE_KEY_LEN);
	int r = store_kv_put(b->s, STORE_KV_AGENT, kk, sizeof kk - 1, val,
			     (size_t)(1 + nk->nprev) * STORE_KEY_LEN);
	if (r < 0)
		log_warning("cannot record the key of node %s: %s", kk + 8, store_strerror(r));
}

void fleet__bind_rotate(struct fleet *b, struct nodekey *nk, const uint8_t key[STORE_KEY_LEN])
{
	if (sodium_memcmp(nk->key, key, STORE_KEY_LEN) == 0)
		return;
	memmove(nk->prev[1], nk->prev[0], (FLEET_PREV_KEYS - 1) * STORE_KEY_LEN);
	memcpy(nk->prev[0], nk->key, STORE_KEY_LEN);
	if (nk->nprev < FLEET_PREV_KEYS)
		nk->nprev++;
	memcpy(nk->key, key, STORE_KEY_LEN);
	memset(nk->verified, 0, sizeof nk->verified);
	memset(nk->refused, 0, sizeof nk->refused);
	memset(b->roster_nope, 0, sizeof b->roster_nope);
	bind_persist(b, nk);
}

/* Bind @key to @id in memory (sorted insert); @persist: and in the store. 0 or -errno. */
static int bind_key(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
		    const uint8_t key[STORE_KEY_LEN], bool persist)
{
	size_t at = 0;
	if (b->nbinds == b->capbinds) {
		size_t cap = b->capbinds ? 2 * b->capbinds : 16;
		struct nodekey *n = realloc(b->binds, cap * sizeof *n);
		if (!n)
			return -ENOMEM;
		b->binds = n;
		b->capbinds = cap;
	}
	while (at < b->nbinds && memcmp(b->binds[at].id, id, STORE_NODE_ID_LEN) < 0)
		at++;
	memmove(&b->binds[at + 1], &b->binds[at], (b->nbinds - at) * sizeof *b->binds);
	memset(&b->binds[at], 0, sizeof *b->binds);
	memcpy(b->binds[at].id, id, STORE_NODE_ID_LEN);
	memcpy(b->binds[at].key, key, STORE_KEY_LEN);
	b->nbinds++;
	if (persist)
		bind_persist(b, &b->binds[at]);
	return 0;
}

static int bind_load_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	struct fleet *b = ud;
	uint8_t id[STORE_NODE_ID_LEN];
	const char *k = key;
	if (klen != 8 + 2 * STORE_NODE_ID_LEN || memcmp(k, "nodekey/", 8) != 0)
		return 0;
	if (vlen < STORE_KEY_LEN || vlen % STORE_KEY_LEN ||
	    vlen > (1 + FLEET_PREV_KEYS) * STORE_KEY_LEN ||
	    sodium_hex2bin(id, sizeof id, k + 8, 2 * STORE_NODE_ID_LEN, NULL, NULL, NULL) != 0)
		return 0;
	if (fleet__bound_key(b, id))
		return 0;
	int r = bind_key(b, id, val, false);
	struct nodekey *nk = r == 0 ? bind_slot(b, id) : NULL;
	if (nk) {
		nk->nprev = (uint8_t)(vlen / STORE_KEY_LEN - 1);
		memcpy(nk->prev, (const uint8_t *)val + STORE_KEY_LEN, vlen - STORE_KEY_LEN);
	}
	return r;
}

/* The slot of the refused-record cache for (@owner, @sig): FNV-1a, never 0. */
static uint64_t refused_digest(const uint8_t owner[STORE_NODE_ID_LEN],
			       const uint8_t sig[STORE_SIG_LEN])
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < STORE_NODE_ID_LEN; i++)
		h = (h ^ owner[i]) * 1099511628211ULL;
	for (size_t i = 0; i < STORE_SIG_LEN; i++)
		h = (h ^ sig[i]) * 1099511628211ULL;
	return h + !h;
}

static bool roster_check(struct fleet *b, const uint8_t owner[STORE_NODE_ID_LEN],
			 const struct fleet_roster *ro);

/*
 * Check a roster record of @owner (sign.h): its key's signature over it; the binding (the
 * first key seen for an id wins, or a rotation signed by the bound key moves it; another key
 * is refused and logged once per key); then its enrolment (a bad one is refused; none is
 * refused under require-enrolment). true: use it.
 * Every record is examined again at every roster refresh (one per member change): a record
 * refused once is remembered (b->roster_nope, cleared when the trusted operator keys or a
 * binding change), so that a flood of refused records costs no signature check per refresh.
 */
static bool roster_trusted(struct fleet *b, const uint8_t owner[STORE_NODE_ID_LEN],
			   const struct fleet_roster *ro)
{
	uint64_t h = refused_digest(owner, ro->sig);
	uint64_t *slot = &b->roster_nope[h % FLEET_ROSTER_NOPE];
	if (*slot == h) {
		b->sig_refused++;
		return false;
	}
	if (roster_check(b, owner, ro))
		return true;
	*slot = h;
	return false;
}

static bool roster_check(struct fleet *b, const uint8_t owner[STORE_NODE_ID_LEN],
			 const struct fleet_roster *ro)
{
	uint8_t msg[FLEET_ROSTER_MSG_MAX];
	char hex[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];
	size_t n;
	struct nodekey *nk = bind_slot(b, owner);
	if (nk && sodium_memcmp(nk->key, ro->key, STORE_KEY_LEN) == 0 &&
	    sodium_memcmp(nk->verified, ro->sig, STORE_SIG_LEN) == 0)
		return true;	/* this very record verified before */
	n = fleet_roster_msg(owner, ro, msg);
	fleet__hex_id(owner, STORE_NODE_ID_LEN, hex);
	/* under require-enrolment, an unbound id's record without an enrolment is refused
	 * whatever its signature; it is verified only to be shown (members, the log), while
	 * the table of such ids has room */
	if (b->require_enrolment && !ro->has_enrol && !fleet__untrusted_find(b, owner) &&
	    b->nuntrusted == FLEET_UNTRUSTED_MAX) {
		b->sig_refused++;
		return false;
	}
	if (!sign_verify(ro->key, msg, n, ro->sig)) {
		b->sig_refused++;
		log_debug("roster record of %s refused: its signature does not verify", hex);
		return false;
	}
	bool rotated = nk && sodium_memcmp(nk->key, ro->key, STORE_KEY_LEN) != 0 && ro->has_rot &&
		       sodium_memcmp(ro->rot_prev, nk->key, STORE_KEY_LEN) == 0 &&
		       sign_rotate_verify(nk->key, owner, ro->key, ro->rot_sig);
	if (nk && sodium_memcmp(nk->key, ro->key, STORE_KEY_LEN) != 0 && !rotated) {
		b->sig_refused++;
		if (memcmp(nk->refused, ro->key, STORE_KEY_LEN) != 0) {
			memcpy(nk->refused, ro->key, STORE_KEY_LEN);
			log_warning("roster: a roster record for node %s with another key "
				    "(%02x%02x%02x%02x..., bound: %02x%02x%02x%02x...) refused: a "
				    "node's key is bound at its first join and changes only by a "
				    "rotation signed with the bound key (someone holding the cluster "
				    "key may be impersonating it; if the node was rebuilt, remove the "
				    "old id with agentctl members remove and join it with a new state "
				    "directory)",
				    hex, ro->key[0], ro->key[1], ro->key[2], ro->key[3], nk->key[0],
				    nk->key[1], nk->key[2], nk->key[3]);
			fleet__event(b, "security", "", 0,
				     "roster record of %s with an unbound key refused", hex);
		}
		return false;
	}
	int en = fleet__enrol_check(b, owner, ro);
	if (en < 0 || (en == 0 && b->require_enrolment)) {
		int why = en < 0 ? FLEET_ENROL_REFUSED : FLEET_NOT_ENROLLED;
		b->sig_refused++;
		bool news = fleet__untrusted_note(b, owner, ro->key, why);
		const char *text =
			en < 0 ? (sign_trust_has(&b->ops, ro->enrol.key)
					  ? "its enrolment does not verify"
					  : "its enrolment is signed by an operator key this node "
					    "does not trust")
			       : "it is not enrolled and this node requires enrolment (enrol it: "
				 "agentctl enrol --key OPKEY, run on that node)";
		if (fleet__refusal_loud(b, &b->roster_refused, "", 0, ro->hlc, owner))
			log_warning("roster: the roster record of node %s (%s, key "
				    "%02x%02x%02x%02x...) refused: %s; it is not on the roster and "
				    "its votes do not count (%" PRIu64 " record(s) refused so far)",
				    fleet__member_name(b, owner, who), hex, ro->key[0], ro->key[1],
				    ro->key[2], ro->key[3], text, b->sig_refused);
		if (news)
			fleet__event(b, "security", "", 0, "%s (%s) %s: roster record refused (%s)",
				     fleet__member_name(b, owner, who), hex,
				     en < 0 ? "enrolment refused" : "not enrolled", text);
		return false;
	}
	if (!nk) {
		if (bind_key(b, owner, ro->key, true) < 0)
			return false;
		log_info("roster: node %s joins with key %02x%02x%02x%02x... (%s)", hex,
			 ro->key[0], ro->key[1], ro->key[2], ro->key[3],
			 en > 0 ? "enrolled by an operator" : "bound on first join");
		if (!(nk = bind_slot(b, owner)))
			return false;
		/* a rotation the first record carries names a former key of the id: what that
		 * key signed before (deploys, certificate votes) verifies here too */
		if (ro->has_rot && sign_rotate_verify(ro->rot_prev, owner, ro->key, ro->rot_sig)) {
			memcpy(nk->prev[0], ro->rot_prev, STORE_KEY_LEN);
			nk->nprev = 1;
			bind_persist(b, nk);
		}
	} else if (rotated) {
		fleet__bind_rotate(b, nk, ro->key);
		log_notice("roster: node %s (%s) rotated its key: %02x%02x%02x%02x... now, signed "
			   "by its former key %02x%02x%02x%02x...%s",
			   fleet__member_name(b, owner, who), hex, ro->key[0], ro->key[1],
			   ro->key[2], ro->key[3], nk->prev[0][0], nk->prev[0][1], nk->prev[0][2],
			   nk->prev[0][3], en > 0 ? " (the new key is enrolled)" : "");
		fleet__event(b, "security", "", 0, "%s rotated its key to %02x%02x%02x%02x...",
			     fleet__member_name(b, owner, who), ro->key[0], ro->key[1], ro->key[2],
			     ro->key[3]);
	}
	nk->enrolled = en > 0;
	memcpy(nk->verified, ro->sig, STORE_SIG_LEN);
	if (fleet__untrusted_note(b, owner, ro->key, 0))
		fleet__event(b, "security", "", 0, "%s (%s) is trusted now%s",
			     fleet__member_name(b, owner, who), hex, en > 0 ? " (enrolled)" : "");
	return true;
}

bool fleet__vote_signed_ok(struct fleet *b, struct svc *v, const struct store_vote *av)
{
	const struct store_revision *held = agree_at(v->log, v->nlog, av->rev);
	const uint8_t *key = held ? agree_elector_key(held, av->voter) : NULL;
	char hex[2 * STORE_NODE_ID_LEN + 1];
	/* a non-elector's vote is never counted, but it may carry an operator's request: its
	 * bound key; an elector's, the key the revision names (never the current view) */
	if (!key && !(held && agree_in_electorate(held, av->voter)))
		key = fleet__bound_key(b, av->voter);
	if (key && agree_vote_verify(av, key))
		return true;
	b->sig_refused++;
	fleet__hex_id(av->voter, STORE_NODE_ID_LEN, hex);
	if (fleet__refusal_loud(b, &b->vote_refused, v->name, av->rev, av->hlc, av->voter))
		log_warning("%s: vote on rev %" PRIu64 " in the name of node %s refused: %s "
			    "(%" PRIu64 " record(s) refused so far)", v->name, av->rev, hex,
			    key ? "its signature does not verify against the node's key"
				: "no key is known for that node",
			    b->sig_refused);
	return false;
}

struct peer_health *fleet__peer_find(struct fleet *b, const uint8_t *node, const char *service)
{
	for (size_t i = 0; i < b->npeers; i++)
		if (memcmp(b->peers[i].node, node, STORE_NODE_ID_LEN) == 0 &&
		    strcmp(b->peers[i].h.service, service) == 0)
			return &b->peers[i];
	return NULL;
}

bool fleet__refusal_loud(struct fleet *b, uint64_t *count, const char *service, uint64_t rev,
			 uint64_t hlc, const uint8_t *who)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a over what names the record */
	for (const char *p = service; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	for (size_t i = 0; i < STORE_NODE_ID_LEN; i++)
		h = (h ^ who[i]) * 1099511628211ULL;
	h ^= rev * 0x9e3779b97f4a7c15ULL ^ hlc;
	h += !h;	/* 0 marks an empty slot */

	(*count)++;
	for (size_t i = 0; i < sizeof b->refused_seen / sizeof b->refused_seen[0]; i++)
		if (b->refused_seen[i] == h)
			return (*count & (*count - 1)) == 0;
	b->refused_seen[b->refused_next++ % (sizeof b->refused_seen / sizeof b->refused_seen[0])] = h;
	return true;
}

static void on_member_resync(uv_timer_t *t);

int fleet_operators_reload(struct fleet *b)
{
	struct sign_trust t = {0};
	char bad[4200];
	if (!b)
		return -EINVAL;
	if (!b->operators_dir) {
		sign_trust_free(&b->ops);
		return 0;
	}
	int r = sign_trust_load(b->operators_dir, &t, bad, sizeof bad);
	if (r < 0) {
		log_error("operators: cannot read %s: %s (keeping the %zu key(s) trusted so far)",
			  b->operators_dir, strerror(-r), b->ops.n);
		return r;
	}
	if (bad[0])
		log_warning("operators: %s is not an operator public key (made by agentctl keygen): "
			    "ignored", bad);
	sign_trust_free(&b->ops);
	b->ops = t;
	/* enrolments are checked again under the new set */
	for (size_t i = 0; i < b->nbinds; i++)
		memset(b->binds[i].verified, 0, sizeof b->binds[i].verified);
	memset(b->roster_nope, 0, sizeof b->roster_nope);
	log_notice("operators: %zu operator key(s) trusted from %s%s", t.n, b->operators_dir,
		   t.n ? "" : " (none: deploys and operator rollbacks are refused; make a key "
			      "with agentctl keygen and copy its .pub file there)");
	/* records refused for want of a trusted key may pass now, and the others' not */
	b->need_replay = true;
	if (b->started && !b->closing)
		uv_timer_start(&b->resync, on_member_resync, 0, 0);
	return (int)t.n;
}

uint64_t fleet_sig_refused(const struct fleet *b)
{
	return b ? b->sig_refused : 0;
}

/*
 * A remove record of @node written by @writer: applied only with an operator's statement
 * (sign.h SIGN_OP_REMOVE) about this node and this reason under a trusted key. Returns the
 * time it stands against (hlc): the earlier of the record's stamp and the statement's
 * signing, so a statement replayed later by anyone does not remove a node that published a
 * roster record since; 0: refused (counted, logged as fleet__refusal_loud says).
 */
static uint64_t remove_trusted(struct fleet *b, const uint8_t *writer,
			       const uint8_t node[STORE_NODE_ID_LEN], const struct fleet_remove *x)
{
	char idhex[33], who[2 * STORE_NODE_ID_LEN + 1], by[2 * STORE_NODE_ID_LEN + 1];
	uint8_t digest[32];
	sign_op_remove_subject(node, x->reason, idhex, digest);
	if (fleet__op_ok(b, &x->op, SIGN_OP_REMOVE, idhex, digest) && x->op.scope[0] == 0 &&
	    x->op.target == 0) {
		uint64_t signed_at = x->op.ts_ms > HLC_PHYS_MAX ? UINT64_MAX
					     : (x->op.ts_ms << HLC_LOGICAL_BITS) | HLC_LOGICAL_MASK;
		return x->hlc < signed_at ? (x->hlc ? x->hlc : 1) : signed_at;
	}
	b->sig_refused++;
	if (fleet__refusal_loud(b, &b->remove_refused, "", 0, x->hlc, writer))
		log_warning("roster: a removal of node %s (%s) written by %s refused: %s "
			    "(%" PRIu64 " record(s) refused so far)",
			    fleet__member_name(b, node, who), idhex,
			    fleet__member_name(b, writer, by),
			    x->op.kind != SIGN_OP_REMOVE ? "it carries no operator signature"
			    : !sign_trust_has(&b->ops, x->op.key)
				    ? "its operator key is not trusted here"
				    : "its operator signature does not cover it",
			    b->sig_refused);
	return 0;
}

static int roster_rec_cb(void *ud, const struct gossip_record *g)
{
	struct rcollect *c = ud;
	struct fleet_key k;
	struct fleet_roster ro;
	struct fleet_remove x;
	struct agree_member *m;
	if (fleet_key_parse(g->key, g->key_len, &k) < 0)
		return 0;
	if (k.type == FLEET_REC_REMOVE && fleet_remove_decode(g->value, g->value_len, &x) == 0) {
		uint64_t at = remove_trusted(c->b, g->owner, k.node, &x);
		if (!at)
			return 0;
		if (!(m = rc_slot(c, k.node)))
			goto nomem;
		if (at > c->xhlc[m - c->m])
			c->xhlc[m - c->m] = at;
		return 0;
	}
	if (k.type != FLEET_REC_ROSTER || fleet_roster_decode(g->value, g->value_len, &ro) < 0)
		return 0;
	if (!roster_trusted(c->b, g->owner, &ro))
		return 0;
	if (!(m = rc_slot(c, g->owner)))
		goto nomem;
	memcpy(m->key, ro.key, STORE_KEY_LEN);
	m->state = ro.left ? AGREE_LEFT : AGREE_DEAD;	/* alive once seen as a member */
	snprintf(c->sites[m - c->m], 65, "%s", ro.site);
	snprintf(c->addrs[m - c->m], 64, "%s", ro.addr);
	c->rhlc[m - c->m] = ro.hlc ? ro.hlc : 1;
	return 0;
nomem:
	c->err = -ENOMEM;
	return -ENOMEM;
}

static int roster_refresh(struct fleet *b)
{
	struct rcollect c = {.b = b};
	int r = b->net.record_foreach ? b->net.record_foreach(b->net.ud, roster_rec_cb, &c) : 0;
	/* an operator's removal stands until the node publishes a newer roster record */
	for (size_t i = 0; r >= 0 && !c.err && i < c.n; i++)
		if (c.xhlc[i] && c.xhlc[i] >= c.rhlc[i])
			c.m[i].state = AGREE_LEFT;
	/* members whose roster record has not arrived yet (or a transport without records):
	 * on the roster unless they left the gossip cluster */
	for (size_t i = 0; r >= 0 && !c.err && i < b->nmembers; i++) {
		struct agree_member *known = NULL;
		for (size_t j = 0; j < c.n && !known; j++)
			if (memcmp(c.m[j].id, b->members[i].id, STORE_NODE_ID_LEN) == 0)
				known = &c.m[j];
		if (known) {
			/* the gossip view says how reachable a roster member is */
			if (known->state != AGREE_LEFT && c.rhlc[known - c.m])
				known->state = b->members[i].state == AGREE_LEFT
						       ? AGREE_DEAD : b->members[i].state;
			continue;
		}
		/* the gossip layer's "left" is not signed: any cluster key holder can send it in
		 * another's name. It takes off only a member never bound to a key (one that never
		 * published a roster record that verified); a member whose key is bound leaves
		 * by its own signed roster record (left), whatever gossip says */
		const uint8_t *bk = fleet__bound_key(b, b->members[i].id);
		if (b->members[i].state == AGREE_LEFT && !bk)
			continue;
		/* not a member whose record was refused for its enrolment; under
		 * require-enrolment, only a member whose enrolment was seen */
		const struct nodekey *enk = bind_slot(b, b->members[i].id);
		if (fleet__untrusted_find(b, b->members[i].id) ||
		    (b->require_enrolment && (!enk || !enk->enrolled)))
			continue;
		struct agree_member *m = rc_slot(&c, b->members[i].id);
		if (!m) {
			c.err = -ENOMEM;
			break;
		}
		c.rhlc[m - c.m] = 1;	/* seen alive: on the roster until removed */
		m->state = b->members[i].state == AGREE_LEFT ? AGREE_DEAD : b->members[i].state;
		/* its roster record has not arrived (or was refused): the key bound to it */
		if (bk)
			memcpy(m->key, bk, STORE_KEY_LEN);
		snprintf(c.sites[m - c.m], 65, "%s", b->members[i].site ? b->members[i].site : "");
	}
	free(c.rhlc);
	free(c.xhlc);
	if (r < 0 || c.err < 0) {
		free(c.m);
		free(c.sites);
		free(c.addrs);
		return r < 0 ? r : c.err;
	}
	for (size_t i = 0; i < c.n; i++)
		c.m[i].site = c.sites[i][0] ? c.sites[i] : NULL;
	free(b->roster);
	free(b->roster_sites);
	free(b->roster_addrs);
	b->roster = c.m;
	b->roster_sites = c.sites;
	b->roster_addrs = c.addrs;
	b->nroster = c.n;
	return 0;
}

/*
 * Reconnect (DESIGN.md: two halves separated longer than any timer find each other again):
 * gossip forgets a dead member after the reap time, and its address with it, but the roster
 * keeps both. Every reconnect_ms (+-25%) this node tries to reach ONE roster member it cannot
 * see (dead, or unknown to gossip), picked at random, through its advertised address, like
 * Serf's reconnect_interval: a cluster of N nodes, k of them unreachable, sends about N/30
 * joins a second in all, and a member coming back is found within about k intervals.
 */
static void reconnect(struct fleet *b)
{
	uint64_t now = uv_now(b->loop);
	size_t cand = 0, pick;
	if (!b->net.reach || now < b->next_reconnect)
		return;
	b->next_reconnect = now + b->reconnect_ms * 3 / 4 +
			    randombytes_uniform(b->reconnect_ms / 2 + 1);
	for (size_t i = 0; i < b->nroster; i++)
		if (b->roster[i].state == AGREE_DEAD && b->roster_addrs[i][0] &&
		    memcmp(b->roster[i].id, b->id, STORE_NODE_ID_LEN) != 0)
			cand++;
	if (!cand)
		return;
	pick = randombytes_uniform((uint32_t)cand);
	for (size_t i = 0; i < b->nroster; i++) {
		if (b->roster[i].state != AGREE_DEAD || !b->roster_addrs[i][0] ||
		    memcmp(b->roster[i].id, b->id, STORE_NODE_ID_LEN) == 0 || pick--)
			continue;
		int r = b->net.reach(b->net.ud, b->roster_addrs[i]);
		log_debug("reconnect: trying roster member at %s: %s", b->roster_addrs[i],
			  r < 0 ? strerror(-r) : "sent");
		return;
	}
}

int fleet__members_refresh(struct fleet *b)
{
	struct mcollect c = {.b = b};
	int r = b->net.member_foreach ? b->net.member_foreach(b->net.ud, member_cb, &c) : 0;
	if (r < 0 || c.err < 0) {
		free(c.m);
		free(c.sites);
		free(c.names);
		return r < 0 ? r : c.err;
	}
	/* a transport that does not list self: add it (we always vote on our own revisions) */
	bool self = false;
	for (size_t i = 0; i < c.n; i++)
		if (memcmp(c.m[i].id, b->id, STORE_NODE_ID_LEN) == 0)
			self = true;
	if (!self) {
		struct gossip_member me;
		memset(&me, 0, sizeof me);
		memcpy(me.id, b->id, STORE_NODE_ID_LEN);
		snprintf(me.name, sizeof me.name, "%s", b->name);
		member_cb(&c, &me);
		if (c.err < 0) {
			free(c.m);
			free(c.sites);
			free(c.names);
			return c.err;
		}
		if (b->has_site)
			snprintf(c.sites[c.n - 1], 65, "%s", b->site);
	}
	for (size_t i = 0; i < c.n; i++)
		c.m[i].site = c.sites[i][0] ? c.sites[i] : NULL;
	free(b->members);
	free(b->member_sites);
	free(b->member_names);
	b->members = c.m;
	b->member_sites = c.sites;
	b->member_names = c.names;
	b->nmembers = c.n;
	fleet__ep_members(b);	/* a dead member's endpoints leave the catalog's healthy set */
	return roster_refresh(b);
}

/* ---- Publishing ---------------------------------------------------------------------------- */

int fleet__put_value(struct fleet *b, const struct fleet_key *k, uint8_t *val, size_t vlen)
{
	char key[FLEET_REC_KEY_MAX + 1];
	int n = fleet_key_format(k, key, sizeof key);
	int r = n;
	if (n >= 0)
		r = b->net.put ? b->net.put(b->net.ud, key, (size_t)n, val, vlen) : 0;
	if (r < 0)
		log_warning("cannot publish record %s: %s", n >= 0 ? key : "?", strerror(-r));
	free(val);
	return r < 0 ? r : 0;
}

/* ---- Local markers (`rollback --local`) ------------------------------------------------------ */

/*
 * A marker is written to the store (STORE_KV_AGENT, key "local/<service>") before the
 * rollback is acknowledged and deleted when it goes stale, so a node that diverged stays
 * diverged across a restart until the cluster moves past the revision (agentctl(1)).
 * Value: version 1, base_rev be64, base_artifact, target_rev be64, artifact, hlc be64.
 */
#define LOCAL_VAL_LEN (1 + 8 + STORE_ID_LEN + 8 + STORE_ID_LEN + 8)

static void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int fleet__local_persist(struct fleet *b, struct svc *v)
{
	char key[80];
	int n = snprintf(key, sizeof key, "local/%s", v->name);
	if (!v->have_local) {
		int r = store_kv_del(b->s, STORE_KV_AGENT, key, (size_t)n);
		return r == -ENOENT ? 0 : r;
	}
	uint8_t val[LOCAL_VAL_LEN], *p = val;
	*p++ = 1;
	be64_put(p, v->local.base_rev);
	p += 8;
	memcpy(p, v->local.base_artifact.b, STORE_ID_LEN);
	p += STORE_ID_LEN;
	be64_put(p, v->local.target_rev);
	p += 8;
	memcpy(p, v->local.artifact.b, STORE_ID_LEN);
	p += STORE_ID_LEN;
	be64_put(p, v->local.hlc);
	return store_kv_put(b->s, STORE_KV_AGENT, key, (size_t)n, val, sizeof val);
}


static int local_load_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ud)
{
	struct fleet *b = ud;
	char name[65];
	const uint8_t *p = val;
	if (klen <= 6 || klen - 6 >= sizeof name || memcmp(key, "local/", 6) != 0)
		return 0;
	memcpy(name, (const char *)key + 6, klen - 6);
	name[klen - 6] = 0;
	if (vlen != LOCAL_VAL_LEN || p[0] != 1) {
		log_warning("%s: ignoring a local rollback marker in an unknown format", name);
		return 0;
	}
	struct svc *v = fleet__svc_get(b, name);
	if (!v)
		return -ENOMEM;
	memset(&v->local, 0, sizeof v->local);
	snprintf(v->local.service, sizeof v->local.service, "%s", name);
	p++;
	v->local.base_rev = be64_get(p);
	p += 8;
	memcpy(v->local.base_artifact.b, p, STORE_ID_LEN);
	p += STORE_ID_LEN;
	v->local.target_rev = be64_get(p);
	p += 8;
	memcpy(v->local.artifact.b, p, STORE_ID_LEN);
	p += STORE_ID_LEN;
	v->local.hlc = be64_get(p);
	v->have_local = true;
	log_notice("%s: still diverged by a local rollback: runs rev %" PRIu64 " instead of rev "
		   "%" PRIu64 " until the cluster moves past it", name, v->local.target_rev,
		   v->local.base_rev);
	return 0;
}

/* Our own roster entry (agree.h rule 0): published at every start, "left" only on a
 * graceful leave. */
int fleet__publish_roster(struct fleet *b, bool left)
{
	struct fleet_roster ro;
	uint8_t *val;
	size_t len;
	memset(&ro, 0, sizeof ro);
	if (b->has_site)
		snprintf(ro.site, sizeof ro.site, "%s", b->site);
	snprintf(ro.addr, sizeof ro.addr, "%s", b->advertise);
	ro.left = left;
	ro.hlc = fleet__stamp(b);
	memcpy(ro.key, b->key.pk, STORE_KEY_LEN);
	/* this node's enrolment and last rotation (trust.c), statements of their own */
	if (b->has_enrol) {
		ro.has_enrol = true;
		ro.enrol.kind = b->enrol.kind;
		ro.enrol.ts_ms = b->enrol.ts_ms;
		memcpy(ro.enrol.nonce, b->enrol.nonce, sizeof ro.enrol.nonce);
		memcpy(ro.enrol.key, b->enrol.key, STORE_KEY_LEN);
		memcpy(ro.enrol.sig, b->enrol.sig, STORE_SIG_LEN);
	}
	if (b->has_rot) {
		ro.has_rot = true;
		memcpy(ro.rot_prev, b->rot_prev, STORE_KEY_LEN);
		memcpy(ro.rot_sig, b->rot_sig, STORE_SIG_LEN);
	}
	uint8_t msg[FLEET_ROSTER_MSG_MAX];
	sign_detached(&b->key, msg, fleet_roster_msg(b->id, &ro, msg), ro.sig);
	int r = fleet_roster_encode(&ro, &val, &len);
	if (r < 0)
		return r;
	struct fleet_key k = {.type = FLEET_REC_ROSTER};
	b->roster_published = true;
	b->roster_left = left;
	return fleet__put_value(b, &k, val, len);
}

int fleet_roster_remove(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
			const struct ctl_peer *peer, const char *reason,
			const struct store_opsig *op)
{
	struct fleet_remove x;
	struct fleet_key k = {.type = FLEET_REC_REMOVE};
	uint8_t *val;
	size_t len;
	char hex[2 * STORE_NODE_ID_LEN + 1], who[2 * STORE_NODE_ID_LEN + 1];
	if (!b || !id)
		return -EINVAL;
	if (memcmp(id, b->id, STORE_NODE_ID_LEN) == 0)
		return -EPERM;	/* a node leaves by itself: agentctl leave */
	memset(&x, 0, sizeof x);
	x.hlc = fleet__stamp(b);
	x.uid = peer && peer->known ? peer->uid : UINT32_MAX;
	x.pid = peer && peer->known ? peer->pid : 0;
	snprintf(x.reason, sizeof x.reason, "%s", reason ? reason : "");
	if (op)
		x.op = *op;
	memcpy(k.node, id, STORE_NODE_ID_LEN);
	int r = fleet_remove_encode(&x, &val, &len);
	if (r < 0)
		return r;
	r = fleet__put_value(b, &k, val, len);
	if (r < 0)
		return r;
	fleet__hex_id(id, STORE_NODE_ID_LEN, hex);
	log_notice("roster: node %s (%s) removed by uid %" PRIu32 " pid %" PRId32 "%s%s: later "
		   "revisions no longer count it", fleet__member_name(b, id, who), hex, x.uid, x.pid,
		   x.reason[0] ? ": " : "", x.reason);
	fleet__event(b, "roster", "", 0, "%s removed from the roster by uid %" PRIu32 "%s%s",
	      fleet__member_name(b, id, who), x.uid, x.reason[0] ? ": " : "", x.reason);
	fleet__members_refresh(b);
	return 0;
}

int fleet_roster_leave(struct fleet *b)
{
	if (!b)
		return -EINVAL;
	int r = fleet__publish_roster(b, true);
	if (r == 0)
		log_notice("roster: this node leaves the roster (graceful leave): it will not vote "
			   "on later revisions");
	return r;
}

int fleet__publish_rev(struct fleet *b, const struct store_revision *r)
{
	uint8_t *val;
	size_t len;
	int err;
	/* chunks first: a receiver that sees the revision can then usually assemble it at once */
	for (uint32_t i = 0; i < fleet_cert_chunks(r->ncert); i++) {
		err = fleet_cert_encode(r, i, &val, &len);
		if (err < 0)
			return err;
		struct fleet_key k = {.type = FLEET_REC_CERT, .rev = r->rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r->service);
		err = fleet__put_value(b, &k, val, len);
		if (err < 0)
			return err;
	}
	for (uint32_t i = 0; i < fleet_elect_chunks(r->nelect); i++) {
		err = fleet_elect_encode(r, i, &val, &len);
		if (err < 0)
			return err;
		struct fleet_key k = {.type = FLEET_REC_ELECT, .rev = r->rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r->service);
		err = fleet__put_value(b, &k, val, len);
		if (err < 0)
			return err;
	}
	err = fleet_rev_encode(r, &val, &len);
	if (err < 0)
		return err;
	struct fleet_key k = {.type = FLEET_REC_REV, .rev = r->rev};
	snprintf(k.service, sizeof k.service, "%s", r->service);
	return fleet__put_value(b, &k, val, len);
}

static int held_cb(const struct store_artifact_info *a, void *ud)
{
	struct fleet_health *h = ud;
	if (h->nheld < FLEET_HELD_MAX) {
		h->held[h->nheld++] = a->id;
	} else {
		/* keep the newest imports */
		memmove(&h->held[0], &h->held[1], (FLEET_HELD_MAX - 1) * sizeof h->held[0]);
		h->held[FLEET_HELD_MAX - 1] = a->id;
	}
	return 0;
}


static void publish_health_now(struct fleet *b, struct svc *v);

static void on_publish(uv_timer_t *t)
{
	struct fleet *b = t->data;
	if (b->closing)
		return;
	for (size_t i = 0; i < b->nsvcs; i++)
		if (b->svcs[i]->health_dirty)
			publish_health_now(b, b->svcs[i]);
}

/*
 * Health records are coalesced: one swap changes the record several times within a few
 * milliseconds (swapping, swapped, starting, desired), and in a large cluster every copy is
 * relayed to every node, competing for piggyback room with the votes and decisions that
 * matter more. So a change marks the service and a PUBLISH_MS timer sends the latest state.
 */
void fleet__publish_health_in(struct fleet *b, struct svc *v, uint64_t ms)
{
	v->health_dirty = true;
	if (!b->closing && (!uv_is_active((uv_handle_t *)&b->pub) ||
			    uv_timer_get_due_in(&b->pub) > ms))
		uv_timer_start(&b->pub, on_publish, ms, 0);
}

void fleet__publish_health(struct fleet *b, struct svc *v)
{
	fleet__publish_health_in(b, v, PUBLISH_MS);
}

static void publish_health_now(struct fleet *b, struct svc *v)
{
	struct fleet_health h;

	v->health_dirty = false;
	uint8_t *val;
	size_t len;

	memset(&h, 0, sizeof h);
	snprintf(h.service, sizeof h.service, "%s", v->name);
	h.running_rev = v->running_rev;
	h.running = v->running;
	h.state = v->hstate;
	h.since_hlc = v->hsince;
	h.missed = v->missed;
	h.swapping = v->swapping;
	h.desired_rev = v->have_desired ? v->desired_rev : 0;
	h.diverged = v->diverged;
	if (v->have_local) {
		h.local_base_rev = v->local.base_rev;
		h.local_target_rev = v->local.target_rev;
	}
	store_artifact_foreach(b->s, v->name, held_cb, &h);
	/* signed with the node key (sign.h), once per content: the same content published again
	 * (a swap's several changes that come back to where they were, a republication over a
	 * forged copy) keeps the stamp and signature it had */
	uint8_t msg[FLEET_HEALTH_MSG_MAX], last[FLEET_HEALTH_MSG_MAX];
	size_t n = fleet_health_msg(b->id, &h, msg);
	bool same = false;
	if (v->hsigned) {
		struct fleet_health o = v->hlast;
		o.stamp = 0;
		same = fleet_health_msg(b->id, &o, last) == n && memcmp(last, msg, n) == 0;
	}
	if (same) {
		h.stamp = v->hlast.stamp;
		memcpy(h.sig, v->hlast.sig, sizeof h.sig);
	} else {
		h.stamp = fleet__stamp(b);
		sign_detached(&b->key, msg, fleet_health_msg(b->id, &h, msg), h.sig);
		v->hlast = h;
		v->hsigned = true;
	}
	if (fleet_health_encode(&h, &val, &len) < 0)
		return;
	struct fleet_key k = {.type = FLEET_REC_HEALTH};
	snprintf(k.service, sizeof k.service, "%s", v->name);
	fleet__put_value(b, &k, val, len);
	fleet__ep_publish(b, v);	/* its endpoint follows the same changes */
}

/* ---- Records ------------------------------------------------------------------------------- */

/* Forget what was put in @r's electorate (an attempt that failed). */
static void elect_drop(struct store_revision *r)
{
	free(r->elect);
	free(r->elect_keys);
	r->elect = NULL;
	r->elect_keys = NULL;
}

/* Fill @r's electorate from @owner's elect/ chunks (@k: its rev/ key); -EAGAIN if one is
 * missing or of another electorate, a decode error, -ENOMEM. */
static int elect_from_chunks(struct fleet *b, const uint8_t *owner, struct fleet_key *k,
			     struct store_revision *r)
{
	char key[FLEET_REC_KEY_MAX + 1];
	uint32_t nelect = r->nelect;
	bool keys = true;
	int err = 0;

	r->elect = malloc((size_t)nelect * STORE_NODE_ID_LEN);
	r->elect_keys = calloc(nelect, STORE_KEY_LEN);
	if (!r->elect || !r->elect_keys) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < fleet_elect_chunks(nelect); i++) {
		struct fleet_cert_chunk c;
		k->type = FLEET_REC_ELECT;
		k->chunk = i;
		int n = fleet_key_format(k, key, sizeof key);
		const struct gossip_record *g = n < 0 ? NULL : b->net.get(b->net.ud, owner, key,
									   (size_t)n);
		if (!g) {
			err = -EAGAIN;
			goto out;
		}
		err = fleet_ids_decode(g->value, g->value_len, FLEET_REC_ELECT, &c);
		if (err < 0 || c.ncert != nelect || c.index != i) {
			err = err < 0 ? err : -EAGAIN;
			goto out;
		}
		memcpy(r->elect[i * FLEET_ELECT_PER_CHUNK], c.ids, (size_t)c.n * STORE_NODE_ID_LEN);
		memcpy(r->elect_keys[i * FLEET_ELECT_PER_CHUNK], c.keys, (size_t)c.n * STORE_KEY_LEN);
		keys = keys && c.extra;
	}
	if (!keys) {
		free(r->elect_keys);
		r->elect_keys = NULL;
	}
out:
	if (err < 0)
		elect_drop(r);
	return err;
}

/*
 * Fill @r's electorate from what this node already holds, so that a revision does not wait
 * for its elect/ chunks (11 records at 128 nodes, which reach the last nodes seconds after
 * the one rev/ record). Nothing is taken on trust: a deploy's electorate is the roster in
 * its scope as this node sees it, kept only if the origin's signature (which covers every
 * elector and key) verifies over it; a rollback's is the one of the judged record held at
 * rev - 1 when the rollback names that record (its subject), which is exactly what
 * fleet__check_signed demands of it. 0; -EAGAIN when it cannot be (the chunks decide);
 * -ENOMEM.
 */
static int elect_from_held(struct fleet *b, struct svc *v, struct store_revision *r)
{
	uint32_t n = 0;
	int err;

	if (r->kind == STORE_REV_ROLLBACK) {
		const struct store_revision *bad = agree_at(v->log, v->nlog, r->rev - 1);
		if (!bad || agree_subject(bad) != r->cert_subject || bad->nelect != r->nelect ||
		    !bad->elect || !bad->elect_keys)
			return -EAGAIN;
		r->elect = malloc((size_t)r->nelect * STORE_NODE_ID_LEN);
		r->elect_keys = malloc((size_t)r->nelect * STORE_KEY_LEN);
		if (r->elect && r->elect_keys) {
			memcpy(r->elect, bad->elect, (size_t)r->nelect * STORE_NODE_ID_LEN);
			memcpy(r->elect_keys, bad->elect_keys, (size_t)r->nelect * STORE_KEY_LEN);
			return 0;
		}
		err = -ENOMEM;
	} else {
		/* the roster as last refreshed (debounced after roster records arrive), then, if
		 * that does not match, as the records held say now */
		for (int pass = 0; pass < 2; pass++) {
			if (pass && fleet__members_refresh(b) < 0)
				break;
			err = agree_electorate_keys(b->roster, b->nroster, r->scope, &r->elect,
						    &r->elect_keys, &n);
			if (err == 0 && n == r->nelect && fleet__origin_signed(b, r) == 0)
				return 0;
			elect_drop(r);
			if (err == -ENOMEM)
				return err;
		}
		return -EAGAIN;
	}
	elect_drop(r);
	return err;
}

/* Assemble owner's revision (svc, rev) with its certificate; 0 and *ret, -EAGAIN if a chunk
 * is missing, or a decode error. */
static int assemble(struct fleet *b, struct svc *v, const uint8_t *owner, uint64_t rev,
		    struct store_revision *ret)
{
	const char *service = v->name;
	char key[FLEET_REC_KEY_MAX + 1];
	struct fleet_key k = {.type = FLEET_REC_REV, .rev = rev};
	struct store_revision r;
	int n, err;

	snprintf(k.service, sizeof k.service, "%s", service);
	n = fleet_key_format(&k, key, sizeof key);
	if (n < 0 || !b->net.get)
		return -EINVAL;
	const struct gossip_record *g = b->net.get(b->net.ud, owner, key, (size_t)n);
	if (!g)
		return -EAGAIN;
	err = fleet_rev_decode(g->value, g->value_len, &r);
	if (err < 0)
		return err;
	if (strcmp(r.service, service) != 0 || r.rev != rev) {
		store_revision_release(&r);
		return -EBADMSG;
	}
	if (r.ncert) {
		uint32_t ncert = r.ncert;
		r.cert = malloc((size_t)ncert * STORE_NODE_ID_LEN);
		r.cert_sigs = calloc(ncert, sizeof *r.cert_sigs);
		if (!r.cert || !r.cert_sigs) {
			store_revision_release(&r);
			return -ENOMEM;
		}
		bool sigs = true;
		for (uint32_t i = 0; i < fleet_cert_chunks(ncert); i++) {
			struct fleet_cert_chunk c;
			k.type = FLEET_REC_CERT;
			k.chunk = i;
			n = fleet_key_format(&k, key, sizeof key);
			g = n < 0 ? NULL : b->net.get(b->net.ud, owner, key, (size_t)n);
			if (!g) {
				store_revision_release(&r);
				return -EAGAIN;
			}
			err = fleet_cert_decode(g->value, g->value_len, &c);
			if (err < 0 || c.ncert != ncert || c.index != i) {
				store_revision_release(&r);
				return err < 0 ? err : -EAGAIN;
			}
			memcpy(r.cert[i * FLEET_CERT_PER_CHUNK], c.ids, (size_t)c.n * STORE_NODE_ID_LEN);
			memcpy(&r.cert_sigs[i * FLEET_CERT_PER_CHUNK], c.sigs,
			       (size_t)c.n * sizeof c.sigs[0]);
			sigs = sigs && c.extra;
		}
		if (!sigs) {	/* unsigned (or partly): agree_verify_signatures refuses it */
			free(r.cert_sigs);
			r.cert_sigs = NULL;
		}
	}
	if (r.nelect) {
		err = elect_from_chunks(b, owner, &k, &r);
		if (err == -EAGAIN)
			err = elect_from_held(b, v, &r);
		if (err < 0) {
			store_revision_release(&r);
			return err;
		}
	}
	*ret = r;
	return 0;
}

static void on_member_resync(uv_timer_t *t);

/* Publish our roster record again over one in our name we did not sign, if one is due
 * and the last such publication is REASSERT_MS old; else a later resync does it. */
static void roster_reassert(struct fleet *b)
{
	uint64_t now = uv_now(b->loop);
	if (!b->roster_reassert || b->closing ||
	    (b->roster_reassert_at && now < b->roster_reassert_at + REASSERT_MS))
		return;
	b->roster_reassert = false;
	b->roster_reassert_at = now;
	fleet__publish_roster(b, b->roster_left);
}

/* Is @g (a roster record of ours) one this node signed? */
static bool roster_mine(struct fleet *b, const struct gossip_record *g)
{
	struct fleet_roster ro;
	uint8_t msg[FLEET_ROSTER_MSG_MAX];
	if (fleet_roster_decode(g->value, g->value_len, &ro) < 0)
		return false;
	return sodium_memcmp(ro.key, b->key.pk, STORE_KEY_LEN) == 0 &&
	       sign_verify(b->key.pk, msg, fleet_roster_msg(b->id, &ro, msg), ro.sig);
}

bool fleet__owner_signed(struct fleet *b, const char *what, const char *service, uint64_t rev,
			 const uint8_t *owner, const uint8_t *msg, size_t n,
			 const uint8_t sig[STORE_SIG_LEN], uint64_t stamp, const uint64_t *held,
			 uint64_t *refused)
{
	char hex[2 * STORE_NODE_ID_LEN + 1];
	const char *why;
	const uint8_t *key = fleet__bound_key(b, owner);

	if (!key) {
		/* examined again at the next roster change (the one that binds the key, usually
		 * within 50 ms: pacing reads a peer's swapping flag from a health record), else at
		 * the periodic resync */
		b->need_replay = true;
		log_debug("%s: %s record of %s held back: its key is not bound yet", service, what,
			  (fleet__hex_id(owner, STORE_NODE_ID_LEN, hex), hex));
		return false;
	}
	if (!sign_verify(key, msg, n, sig))
		why = sodium_is_zero(sig, STORE_SIG_LEN)
			      ? "it is not signed"
			      : "its signature does not verify against the node's key";
	else if (held && stamp < *held)
		why = "it is older than the one held (a replay)";
	else
		return true;
	b->sig_refused++;
	fleet__hex_id(owner, STORE_NODE_ID_LEN, hex);
	if (fleet__refusal_loud(b, refused, service, rev, stamp, owner))
		log_warning("%s: %s record in the name of node %s refused: %s (%" PRIu64
			    " record(s) refused so far)", service, what, hex, why, b->sig_refused);
	return false;
}

/* Is @h, a health record in the name of @owner, signed and not older than @p's (NULL: none
 * held)? See fleet__owner_signed. */
static bool health_signed_ok(struct fleet *b, struct svc *v, const uint8_t *owner,
			     const struct fleet_health *h, const struct peer_health *p)
{
	uint8_t msg[FLEET_HEALTH_MSG_MAX], held[FLEET_HEALTH_MSG_MAX];
	size_t n = fleet_health_msg(owner, h, msg);

	/* the very record verified before (every resync replays it): not verified again */
	if (p && sodium_memcmp(p->h.sig, h->sig, STORE_SIG_LEN) == 0 &&
	    fleet_health_msg(owner, &p->h, held) == n && memcmp(held, msg, n) == 0)
		return true;
	return fleet__owner_signed(b, "health", v->name, h->running_rev, owner, msg, n, h->sig,
				   h->stamp, p ? &p->h.stamp : NULL, &b->health_refused);
}

static void handle_record(struct fleet *b, const struct gossip_record *g, bool replay)
{
	struct fleet_key k;
	int r = fleet_key_parse(g->key, g->key_len, &k);
	if (r == -ENOENT) {
		fleet__ep_record(b, g);	/* ep/<service> (endpoints.h), or not ours */
		return;
	}
	if (r < 0) {
		if (r != -ENOENT)
			log_debug("record with a malformed key ignored");
		return;
	}
	bool own = memcmp(g->owner, b->id, STORE_NODE_ID_LEN) == 0;
	if (own && k.type == FLEET_REC_ROSTER && !replay && b->roster_published &&
	    !roster_mine(b, g)) {
		/* a roster record in our name that we did not sign (say, "left" under another
		 * key): refused everywhere, but with a higher version it displaces ours in every
		 * gossip table; publish ours again, above it (now, or at the next resync) */
		log_notice("roster: a roster record in this node's name that it did not write "
			   "(forged by a cluster key holder?): publishing its own again");
		b->roster_reassert = true;
		roster_reassert(b);
	}
	if (k.type == FLEET_REC_ROSTER || k.type == FLEET_REC_REMOVE) {
		/* coalesced like member changes */
		if (!replay && !b->closing)
			uv_timer_start(&b->resync, on_member_resync, DEBOUNCE_MS, 0);
		return;
	}
	struct svc *v = fleet__svc_get(b, k.service);
	if (!v)
		return;
	switch (k.type) {
	case FLEET_REC_REV:
	case FLEET_REC_CERT:
	case FLEET_REC_ELECT: {
		struct store_revision rv;
		/* A replay walks every record, and the rev/ record of each (owner, rev) assembles
		 * that owner's chunks itself: its cert/ and elect/ records would only assemble and
		 * judge the same revision again (22 times per copy at 128 nodes, one copy per node
		 * that wrote the decision). */
		if (replay && k.type != FLEET_REC_REV)
			return;
		const struct store_revision *held = agree_at(v->log, v->nlog, k.rev);
		r = assemble(b, v, g->owner, k.rev, &rv);
		if (r < 0) {
			if (r != -EAGAIN)
				log_debug("%s: revision record %" PRIu64 " refused: %s", k.service,
					  k.rev, fleet__strerror(r));
			return;
		}
		/* fast path for the replays: the same bytes held */
		r = 0;
		if (!(held && agree_revision_cmp(held, &rv) == 0)) {
			r = fleet__accept_rev(b, v, &rv, own);
			/* refused for want of known voters, or of its writer's key: again at the
			 * next membership or roster change */
			if (r == -AGREE_ECERT || r == -EAGAIN)
				b->need_replay = true;
		}
		/* another node's copy of a decision we hold back passed every check */
		if (r >= 0 && !own)
			fleet__late_cancel(v, &rv);
		store_revision_release(&rv);
		break;
	}
	case FLEET_REC_VOTE: {
		struct store_vote av;
		struct store_opsig aop;
		if (fleet_vote_decode_op(g->value, g->value_len, &av, &aop) < 0 ||
		    strcmp(av.service, k.service) != 0 || av.rev != k.rev) {
			log_debug("%s: malformed vote record ignored", k.service);
			return;
		}
		memcpy(av.voter, g->owner, STORE_NODE_ID_LEN);
		/* the owner field is what any cluster key holder writes: the voter's signature
		 * says who voted (sign.h) */
		if (!own && !fleet__vote_signed_ok(b, v, &av))
			return;
		if (own) {
			if (fleet__vote_add(v, &av) > 0 && av.rev > v->voted_rev)
				v->voted_rev = av.rev;
			fleet__observe(b, av.hlc);
		} else {
			fleet__on_vote(b, v, &av, &aop);
		}
		break;
	}
	case FLEET_REC_ROSTER:
	case FLEET_REC_REMOVE:
		break;
	case FLEET_REC_HEALTH: {
		struct fleet_health h;
		if (fleet_health_decode(g->value, g->value_len, &h) < 0 ||
		    strcmp(h.service, k.service) != 0)
			return;
		if (own) {
			/* a health record in our name that we did not sign last: someone holding
			 * the cluster key wrote it with a higher version, which displaces ours in
			 * every gossip table; publish ours again (above it) so peers, and nodes
			 * that join later, get the real one */
			uint64_t now = uv_now(b->loop);
			uint64_t due = v->hreassert_at ? v->hreassert_at + REASSERT_MS : 0;
			if (!replay &&
			    !(v->hsigned && sodium_memcmp(h.sig, v->hlast.sig, STORE_SIG_LEN) == 0)) {
				if (now >= due) {
					v->hreassert_at = now;
					log_notice("%s: a health record in this node's name that it "
						   "did not write (forged by a cluster key holder?): "
						   "publishing its own again", v->name);
					fleet__publish_health(b, v);
				} else if (!b->closing) {	/* at the end of the window */
					v->health_dirty = true;
					if (!uv_is_active((uv_handle_t *)&b->pub))
						uv_timer_start(&b->pub, on_publish, due - now, 0);
				}
			}
			return;
		}
		struct peer_health *p = fleet__peer_find(b, g->owner, h.service);
		if (!health_signed_ok(b, v, g->owner, &h, p))
			return;
		fleet__observe(b, h.since_hlc);
		if (!p) {
			if (b->npeers == b->cappeers) {
				size_t cap = b->cappeers ? 2 * b->cappeers : 16;
				struct peer_health *n = realloc(b->peers, cap * sizeof *n);
				if (!n)
					return;
				b->peers = n;
				b->cappeers = cap;
			}
			p = &b->peers[b->npeers++];
			memset(p, 0, sizeof *p);
			memcpy(p->node, g->owner, STORE_NODE_ID_LEN);
			p->h.state = HSTATE_NONE;
		}
		bool changed = p->h.state != h.state || p->h.running_rev != h.running_rev;
		p->h = h;
		if (changed && !replay && h.state != HSTATE_NONE) {
			char who[2 * STORE_NODE_ID_LEN + 1];
			fleet__event(b, "peer-health", k.service, h.running_rev, "%s runs rev %" PRIu64 ": %s",
			      fleet__member_name(b, g->owner, who), h.running_rev,
			      health_state_name((enum health_state)h.state));
		}
		break;
	}
	}
}

void fleet_on_record(struct fleet *b, const struct gossip_record *r)
{
	if (!b || !r || b->closing || !b->started)
		return;
	handle_record(b, r, false);
}

static int replay_cb(void *ud, const struct gossip_record *r)
{
	handle_record(ud, r, true);
	return 0;
}

static void resync(struct fleet *b, bool replay)
{
	roster_reassert(b);
	if (fleet__members_refresh(b) < 0)
		return;
	if (replay && b->net.record_foreach) {
		b->need_replay = false;
		/* The transport's iteration must not see our puts mid-way: collect keys first?
		 * handle_record may publish (a decision); the cluster layer queues, so the walk
		 * is safe; a put replaces a value we have already passed. */
		b->net.record_foreach(b->net.ud, replay_cb, b);
	}
	for (size_t i = 0; i < b->nsvcs; i++) {
		fleet__decide(b, b->svcs[i]);
		fleet__recompute(b, b->svcs[i]);
		fleet__late_publish(b, b->svcs[i]);
	}
}

/* The periodic safety net: replay everything. */
static void on_resync(uv_timer_t *t)
{
	struct fleet *b = t->data;
	if (b->closing)
		return;
	resync(b, true);
	reconnect(b);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
}

/* After membership changes: new eligible voters; replay the held records only if one was
 * refused for want of known voters (a full replay per flap would load a large cluster). */
static void on_member_resync(uv_timer_t *t)
{
	struct fleet *b = t->data;
	if (b->closing)
		return;
	resync(b, b->need_replay);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
}

void fleet_on_member(struct fleet *b, const struct gossip_member *m)
{
	if (!b || b->closing || !b->started)
		return;
	fleet__member_event(b, m);	/* events.c: joined, failed, left, back */
	/* coalesce bursts of member updates (a join brings many) */
	uv_timer_start(&b->resync, on_member_resync, DEBOUNCE_MS, 0);
}

/* ---- Reconciler and health callbacks -------------------------------------------------------- */

static void start_health(struct fleet *b, struct svc *v, uint64_t rev,
			 const struct store_id *art)
{
	struct store_artifact_info info;
	char hex[STORE_ID_HEXLEN + 1];
	char dir[4096];

	if (!b->health)
		return;
	if (store_artifact_get(b->s, art, &info) < 0)
		return;
	store_id_hex(art, hex);
	snprintf(dir, sizeof dir, "%s/artifacts/%s/%" PRIu64 "-%.12s", b->state_dir, v->name, rev,
		 hex);
	struct health_target t = {
		.service = v->name,
		.rev = rev,
		.artifact = art,
		.dir = dir,
		.policy = &info.manifest.health,
	};
	int r = health_start(b->health, &t);
	if (r < 0)
		log_warning("%s: cannot start health checks: %s", v->name, fleet__strerror(r));
	v->hstate = r < 0 ? HSTATE_NONE : HEALTH_STARTING;
	v->hsince = fleet__stamp(b);
	v->missed = false;
	store_artifact_info_release(&info);
}

static void on_swapped(void *ud, const char *service, uint64_t rev,
		       const struct store_id *artifact, int status)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_get(b, service);
	if (!v)
		return;
	if (status < 0) {
		/* a missing artifact that the fetch hook is bringing: the swap waits, it has not
		 * failed; said once (the "fetching" event), not at every retry */
		if (status == -ENOENT && b->need_artifact && artifact && v->have_desired &&
		    v->desired_rev == rev && memcmp(&v->desired, artifact, sizeof *artifact) == 0) {
			char hex[STORE_ID_HEXLEN + 1];
			store_id_hex(artifact, hex);
			if (!v->fetch_announced)
				fleet__event(b, "fetching", service, rev,
				      "swap to rev %" PRIu64 " waits for artifact %.12s, being "
				      "fetched from peers", rev, hex);
			v->fetch_announced = true;
			return;
		}
		fleet__swap_ended(b, v, status);
		/* the runtime's reason when it gave one (node/reconcile.h reconcile_last_error),
		 * else the error in words: fleet__strerror knows the store's private codes */
		const char *why = b->rec ? reconcile_last_error(b->rec, service) : "";
		fleet__event(b, "swap-failed", service, rev, "swap failed: %s (retrying)",
			     status == -ENOENT ? "artifact not in the local store"
			     : why[0]	       ? why
					       : fleet__strerror(status));
		return;
	}
	fleet__swap_ended(b, v, 0);
	v->swapping = false;
	v->swap_target = 0;
	fleet__ep_swapped(b, v);	/* the drained instance is gone */
	v->running_rev = rev;
	if (artifact)
		v->running = *artifact;
	else
		memset(&v->running, 0, sizeof v->running);
	char hex[STORE_ID_HEXLEN + 1];
	store_id_hex(&v->running, hex);
	fleet__event(b, "swap-done", service, rev, "%s now runs rev %" PRIu64 " (%.12s)", b->name, rev,
	      hex);
	if (rev && artifact) {
		start_health(b, v, rev, artifact);
		/* a service with an endpoint keeps its pacing slot until the new instance is
		 * healthy (endpoints.h): a rollout waits for each node to serve again, and a bad
		 * revision stops at the first node of each site */
		if (fleet__ep_settle(b, v))
			v->swapping = true;
	} else if (b->health) {
		health_stop(b->health, service);
		v->hstate = HSTATE_NONE;
	}
	/* without pacing, with the first health result if that comes within a second (one
	 * signed version fewer: see pacing.c) */
	fleet__publish_health_in(b, v, b->max_par ? PUBLISH_MS : DESIRED_PUBLISH_MS);
}

static void on_rstate(void *ud, const struct reconcile_event *ev)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_find(b, ev->service);
	if (!v)
		return;
	if (ev->kind == RECONCILE_EV_STEP && v->swap_target != ev->rev) {
		v->swap_target = ev->rev;
		fleet__swap_began(b, v);
		fleet__event(b, "swap-start", ev->service, ev->rev, "%s starts swapping to rev %" PRIu64,
		      b->name, ev->rev);
	}
}

static void on_plugin_event(struct plugin *p, const char *service, const struct plugin_status *st,
			    void *ud)
{
	struct fleet *b = ud;
	(void)p;
	if (b->health)
		health_runtime(b->health, service, st);
}

static void on_plugin_log(struct plugin *p, const char *service, int fd, const char *line,
			  void *ud)
{
	(void)p;
	(void)ud;
	log_info("[%s] %s%s", service, fd == 2 ? "stderr: " : "", line);
}

static void on_health(void *ud, const char *service, uint64_t rev, const struct health_status *st)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_find(b, service);
	if (!v || rev != v->running_rev)
		return;
	bool was_missed = v->missed;
	v->hstate = (uint8_t)st->state;
	v->hsince = fleet__stamp(b);
	v->missed = st->missed;
	fleet__event(b, "health", service, rev, "%s: rev %" PRIu64 " %s%s%s", b->name, rev,
	      health_state_name(st->state), st->detail[0] ? ": " : "", st->detail);
	fleet__ep_health(b, v);
	/* "starting" is what a swap's end says anyway: with its first verdict, if that comes
	 * within a second and nothing waits for it (pacing) */
	fleet__publish_health_in(b, v, st->state == HEALTH_STARTING && !b->max_par
				 ? DESIRED_PUBLISH_MS : PUBLISH_MS);
	if (st->state == HEALTH_HEALTHY && !st->missed && b->rec)
		reconcile_mark_good(b->rec, service, rev, &v->running);
	/* [recovery] restarts: restart locally that many times before the node counts the
	 * instance as failed (and votes) */
	if (st->missed && !was_missed && fleet__ep_restart(b, v, health_miss_name(st->miss_reason)))
		return;
	if (st->missed && !was_missed && !v->diverged) {
		const struct store_revision *d =
			agree_desired(v->log, v->nlog, b->has_site ? b->site : NULL);
		if (d && d->rev == rev && memcmp(&d->artifact, &v->running, sizeof v->running) == 0)
			fleet__cast_vote(b, v, d, STORE_VOTE_HEALTH, 0, NULL);
	}
}

/* ---- Life cycle ---------------------------------------------------------------------------- */

int fleet_new(uv_loop_t *loop, struct store *store, const struct fleet_opts *opts,
	      const struct fleet_net *net, struct fleet **ret)
{
	struct fleet *b;

	if (!loop || !store || !opts || !opts->node_id || !net || !ret ||
	    (!opts->no_runtime && (!opts->state_dir || opts->state_dir[0] != '/')))
		return -EINVAL;
	b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->loop = loop;
	b->s = store;
	b->net = *net;
	memcpy(b->id, opts->node_id, STORE_NODE_ID_LEN);
	if (opts->operators_dir && !(b->operators_dir = strdup(opts->operators_dir)))
		goto nomem;
	if (opts->node_key)
		b->key = *opts->node_key;
	else
		sign_key_random(&b->key);
	snprintf(b->name, sizeof b->name, "%s", opts->node_name ? opts->node_name : "?");
	if (opts->site && *opts->site) {
		b->has_site = true;
		snprintf(b->site, sizeof b->site, "%s", opts->site);
	}
	if (opts->advertise)
		snprintf(b->advertise, sizeof b->advertise, "%s", opts->advertise);
	b->reconnect_ms = opts->reconnect_ms ? opts->reconnect_ms : 30000;
	b->max_par = opts->max_parallel_per_site;
	b->no_runtime = opts->no_runtime;
	b->require_enrolment = opts->require_enrolment;
	b->need_artifact = opts->need_artifact;
	b->need_artifact_ud = opts->need_artifact_ud;
	b->ropts.retry_min_ms = opts->retry_min_ms;
	b->ropts.retry_max_ms = opts->retry_max_ms;
	b->ropts.pace_retry_ms = opts->pace_retry_ms ? opts->pace_retry_ms : 500;
	if (opts->state_dir && !(b->state_dir = strdup(opts->state_dir)))
		goto nomem;
	if ((opts->unit_dir && !(b->unit_dir = strdup(opts->unit_dir))) ||
	    (opts->bus_address && !(b->bus_address = strdup(opts->bus_address))) ||
	    (opts->docker_host && !(b->docker_host = strdup(opts->docker_host))))
		goto nomem;
	b->on_event = opts->on_event;
	b->on_event_ud = opts->on_event_ud;
	if (opts->nquorums) {
		b->quorums = calloc(opts->nquorums, sizeof *b->quorums);
		if (!b->quorums)
			goto nomem;
		memcpy(b->quorums, opts->quorums, opts->nquorums * sizeof *b->quorums);
		b->nquorums = opts->nquorums;
	}
	b->ring = calloc(FLEET_EVENTS_MAX, sizeof *b->ring);
	if (!b->ring)
		goto nomem;
	hlc_init(&b->clock, 0);
	uv_timer_init(loop, &b->resync);
	b->resync.data = b;
	b->resync_open = true;
	uv_timer_init(loop, &b->pub);
	b->pub.data = b;
	uv_timer_init(loop, &b->vflush);
	b->vflush.data = b;
	*ret = b;
	return 0;
nomem:
	free(b->operators_dir);
	free(b->state_dir);
	free(b->unit_dir);
	free(b->bus_address);
	free(b->docker_host);
	free(b->quorums);
	free(b->ring);
	free(b);
	return -ENOMEM;
}

static int load_rev_cb(const struct store_revision *r, void *ud)
{
	struct svc *v = ud;
	return fleet__log_set(v, r);
}

static int load_vote_cb(const struct store_vote *sv, void *ud)
{
	struct svc *v = ud;
	/* a vote of an older store format (no subject) has no known meaning: not counted */
	if (sv->subject == 0)
		return 0;
	return fleet__vote_add(v, sv) < 0 ? -ENOMEM : 0;
}

static int load_service_cb(const char *service, void *ud)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_get(b, service);
	struct store_service_state st;
	if (!v)
		return -ENOMEM;
	int r = store_revision_foreach(b->s, service, 0, load_rev_cb, v);
	if (r < 0)
		return r;
	for (size_t i = 0; i < v->nlog; i++) {
		fleet__observe(b, v->log[i].hlc);
		store_vote_foreach(b->s, service, v->log[i].rev, load_vote_cb, v);
	}
	if (store_service_state_get(b->s, service, &st) == 0) {
		v->running_rev = st.running_rev;
		v->running = st.running;
	}
	return 0;
}

int fleet_start(struct fleet *b)
{
	int r;
	if (!b || b->started)
		return -EINVAL;
	/* the clock: never below what this node (or anyone it heard) stamped before */
	hlc_restore(&b->clock, 0);
	r = store_service_foreach(b->s, load_service_cb, b);
	if (r < 0)
		return r;
	r = store_kv_foreach(b->s, STORE_KV_AGENT, local_load_cb, b);
	if (r < 0)
		return r;
	r = store_kv_foreach(b->s, STORE_KV_AGENT, bind_load_cb, b);
	if (r < 0)
		return r;
	fleet_operators_reload(b);
	fleet__trust_load(b);
	/* our own id is bound to our key: a roster record in our name with another is refused */
	const uint8_t *own = fleet__bound_key(b, b->id);
	if (own && sodium_memcmp(own, b->key.pk, STORE_KEY_LEN) != 0 && b->has_rot &&
	    sodium_memcmp(own, b->rot_prev, STORE_KEY_LEN) == 0) {
		/* a rotation made before a crash that did not reach the store */
		fleet__bind_rotate(b, bind_slot(b, b->id), b->key.pk);
	} else if (own && sodium_memcmp(own, b->key.pk, STORE_KEY_LEN) != 0) {
		log_warning("this node's key differs from the one bound to its id in the store (the "
			    "node key was replaced): the other nodes refuse its roster record and "
			    "its votes until it is removed (agentctl members remove) and joins "
			    "again with a new state directory");
		memcpy(bind_slot(b, b->id)->key, b->key.pk, STORE_KEY_LEN);
	} else if (!own && bind_key(b, b->id, b->key.pk, true) < 0) {
		return -ENOMEM;
	}
	r = fleet__publish_roster(b, false);
	if (r < 0)
		log_warning("cannot publish this node's roster entry: %s", strerror(-r));
	r = fleet__members_refresh(b);
	if (r < 0)
		return r;
	if (!b->no_runtime) {
		struct health_config hc = {.on_change = on_health, .ud = b};
		r = health_new(b->loop, &hc, &b->health);
		if (r < 0)
			return r;
		b->pcfg.state_dir = b->state_dir;
		b->pcfg.unit_dir = b->unit_dir;
		b->pcfg.bus_address = b->bus_address;
		b->pcfg.docker_host = b->docker_host;
		b->pcfg.on_event = on_plugin_event;
		b->pcfg.on_log = on_plugin_log;
		b->pcfg.ud = b;
		struct reconcile_callbacks cbs = {
			.may_start = fleet__may_start,
			.on_swapped = on_swapped,
			.on_state = on_rstate,
			.before_stop = fleet__ep_before_stop,
			.ud = b,
		};
		r = reconcile_new(b->loop, b->s, &b->pcfg, &cbs, &b->ropts, &b->rec);
		if (r < 0)
			return r;
		r = reconcile_resume(b->rec);
		if (r < 0)
			return r;
		if (r > 0)
			log_notice("resuming %d interrupted swap(s) from the journal", r);
	}
	b->started = true;
	fleet__event(b, "start", NULL, 0, "%s started (%zu service(s) known)", b->name, b->nsvcs);
	resync(b, true);
	/* our endpoints as this run sees them (a copy from before a restart may be stale) */
	for (size_t i = 0; i < b->nsvcs; i++)
		fleet__ep_publish(b, b->svcs[i]);
	uv_timer_start(&b->resync, on_resync, RESYNC_MS, 0);
	return 0;
}

void fleet__part_closed(struct fleet *b)
{
	if (--b->closing_parts)
		return;
	void (*cb)(void *) = b->close_cb;
	void *ud = b->close_ud;
	for (size_t i = 0; i < b->nsvcs; i++)
		svc_free(b->svcs[i]);
	free(b->svcs);
	free(b->peers);
	free(b->members);
	free(b->member_sites);
	free(b->member_names);
	free(b->roster);
	free(b->roster_sites);
	free(b->roster_addrs);
	free(b->binds);
	fleet__trust_free(b);
	sign_trust_free(&b->ops);
	free(b->operators_dir);
	sodium_memzero(&b->key, sizeof b->key);
	free(b->ring);
	free(b->mseen);
	free(b->quorums);
	free(b->state_dir);
	free(b->unit_dir);
	free(b->bus_address);
	free(b->docker_host);
	free(b->vq);
	free(b);
	if (cb)
		cb(ud);
}

static void timer_closed(uv_handle_t *h)
{
	fleet__part_closed(h->data);
}

static void rec_closed(void *ud)
{
	fleet__part_closed(ud);
}

static void health_closed(struct health *h, void *ud)
{
	(void)h;
	fleet__part_closed(ud);
}

void fleet_close(struct fleet *b, void (*cb)(void *ud), void *ud)
{
	if (!b || b->closing)
		return;
	b->closing = true;
	b->close_cb = cb;
	b->close_ud = ud;
	fleet__ep_close(b);	/* drains cancelled: the reconciler closes too */
	b->closing_parts = 3; /* the timers */
	/* the votes still queued are written now; a job in flight ends the close when done */
	if (b->nvq) {
		int e = store_vote_put_many(b->s, b->vq, b->nvq);
		if (e < 0)
			log_warning("cannot store %zu vote(s): %s", b->nvq, store_strerror(e));
		b->nvq = 0;
	}
	if (b->vjob_running)
		b->closing_parts++;
	if (b->rec)
		b->closing_parts++;
	if (b->health)
		b->closing_parts++;
	if (b->rec)
		reconcile_close(b->rec, rec_closed, b);
	if (b->health)
		health_close(b->health, health_closed, b);
	uv_timer_stop(&b->resync);
	uv_close((uv_handle_t *)&b->resync, timer_closed);
	uv_timer_stop(&b->pub);
	uv_close((uv_handle_t *)&b->pub, timer_closed);
	uv_timer_stop(&b->vflush);
	uv_close((uv_handle_t *)&b->vflush, timer_closed);
}

void fleet_artifact_arrived(struct fleet *b, const struct store_id *artifact)
{
	struct store_artifact_info info;
	if (!b)
		return;
	reconcile_artifact_arrived(b->rec, artifact);
	/* announce it now (the health record lists what this node holds): peers still fetching
	 * it ask the current holders, so a deploy from one holder fans out */
	if (store_artifact_get(b->s, artifact, &info) == 0) {
		struct svc *v = fleet__svc_find(b, info.manifest.service);
		if (v)
			fleet__publish_health(b, v);
		store_artifact_info_release(&info);
	}
}

int fleet_desired(struct fleet *b, const char *service, uint64_t *ret_rev,
		  struct store_id *ret_artifact)
{
	struct svc *v = b ? fleet__svc_find(b, service) : NULL;
	if (!v || !v->have_desired)
		return -ENOENT;
	if (ret_rev)
		*ret_rev = v->desired_rev;
	if (ret_artifact)
		*ret_artifact = v->desired;
	return v->diverged ? 1 : 0;
}
