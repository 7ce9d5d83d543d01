/*
 * agent/fleet/trust.c: this node's side of node keys (agent/base/sign.h): its enrolment, its
 * former keys and key rotation, in the state directory; the ids whose roster record is
 * refused for its enrolment; the control operations node.identity, node.enrol and
 * node.rotate-key.
 *
 * Files of the state directory (all written to a temporary file, fsync'd and renamed):
 *
 *   node.key            the current key (sign.h; mode 0600)
 *   node.key.next       the key a rotation prepares (`agentctl rotate-key` asks for its public
 *                       key first, to enrol it); becomes node.key when the rotation is made
 *   node.key.old.<ms>   a former key (a hard link of node.key made at the rotation, so mode
 *                       0600 as node.key): it still signs this node's votes on revisions whose
 *                       electorate names it. Kept: a revision stays in the log until retention
 *                       drops it; an operator may delete files older than the oldest
 *                       revision of `agentctl history`.
 *   node.rotation       "shoal-rotation-v1\n" former public key (64 hex) "\n" signature
 *                       (128 hex) "\n": the rotation statement carried in the roster record
 *   node.enrol          "shoal-enrolment-v1\n" + 258 hex (sign_op_hex) + "\n": the operator's
 *                       enrolment of (id, current key); node.enrol.next: the enrolment of
 *                       node.key.next while a rotation is made (renamed once node.key is)
 */
#include "agent/fleet/fleet_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/ctl/ctl_server.h"

#define ROT_MAGIC "shoal-rotation-v1\n"
#define ENROL_MAGIC "shoal-enrolment-v1\n"
#define ROT_FILE_LEN (sizeof ROT_MAGIC - 1 + 64 + 1 + 128 + 1)
#define ENROL_FILE_LEN (sizeof ENROL_MAGIC - 1 + SIGN_OP_HEX_LEN + 1)
#define OLD_KEYS_MAX 16

static int path_of(const struct fleet *b, const char *name, char *out, size_t len)
{
	if (!b->state_dir)
		return -ENOENT;
	return snprintf(out, len, "%s/%s", b->state_dir, name) >= (int)len ? -ENAMETOOLONG : 0;
}

/* Exactly @want bytes of @path into @buf. 0; -ENOENT; -EBADMSG (another size); -errno. */
static int read_exact(const char *path, char *buf, size_t want)
{
	char extra;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, want);
	int err = n < 0 ? -errno : (size_t)n != want || read(fd, &extra, 1) != 0 ? -EBADMSG : 0;
	close(fd);
	return err;
}

static int write_atomic(const char *path, const void *data, size_t len, int mode)
{
	char tmp[4200];
	int fd, err = 0;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

static void sync_dir(const struct fleet *b)
{
	int fd = open(b->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The enrolment in file @name, if it enrols this node's current key. */
static bool load_enrol(struct fleet *b, const char *name, struct sign_op *ret)
{
	char p[4200], buf[ENROL_FILE_LEN + 1];
	if (path_of(b, name, p, sizeof p) < 0 || read_exact(p, buf, ENROL_FILE_LEN) < 0 ||
	    memcmp(buf, ENROL_MAGIC, sizeof ENROL_MAGIC - 1) != 0 || buf[ENROL_FILE_LEN - 1] != '\n')
		return false;
	buf[ENROL_FILE_LEN - 1] = 0;
	return sign_op_parse_hex(buf + sizeof ENROL_MAGIC - 1, ret) == 0 &&
	       sign_enrol_verify(ret, b->id, STORE_NODE_ID_LEN, b->key.pk, NULL);
}

static int save_enrol(struct fleet *b, const char *name, const struct sign_op *op)
{
	char p[4200], buf[ENROL_FILE_LEN + 1];
	int r = path_of(b, name, p, sizeof p);
	if (r < 0)
		return r;
	memcpy(buf, ENROL_MAGIC, sizeof ENROL_MAGIC - 1);
	sign_op_hex(op, buf + sizeof ENROL_MAGIC - 1);
	buf[ENROL_FILE_LEN - 1] = '\n';
	return write_atomic(p, buf, ENROL_FILE_LEN, 0644);
}

static int old_key_add(struct fleet *b, const struct sign_key *k)
{
	for (size_t i = 0; i < b->nold; i++)
		if (sodium_memcmp(b->old_keys[i].pk, k->pk, SIGN_PUBLIC_LEN) == 0)
			return 0;
	if (b->nold >= OLD_KEYS_MAX)
		return -E2BIG;
	struct sign_key *n = realloc(b->old_keys, (b->nold + 1) * sizeof *n);
	if (!n)
		return -ENOMEM;
	b->old_keys = n;
	b->old_keys[b->nold++] = *k;
	return 0;
}

void fleet__trust_load(struct fleet *b)
{
	char p[4200], buf[ROT_FILE_LEN + 1];
	DIR *d;
	struct dirent *de;

	if (!b->state_dir)
		return;
	/* former keys */
	if ((d = opendir(b->state_dir))) {
		while ((de = readdir(d))) {
			struct sign_key k;
			if (strncmp(de->d_name, "node.key.old.", 13) != 0 ||
			    strchr(de->d_name, '/') || path_of(b, de->d_name, p, sizeof p) < 0)
				continue;
			int r = sign_node_key_load(p, &k, NULL);
			if (r < 0) {
				log_warning("former node key %s not loaded: %s (this node cannot "
					    "vote on revisions whose electorate names it)", p,
					    sign_strerror(r));
				continue;
			}
			if (sodium_memcmp(k.pk, b->key.pk, SIGN_PUBLIC_LEN) != 0 &&
			    old_key_add(b, &k) == -E2BIG)
				log_warning("more than %d former node keys: %s not loaded",
					    OLD_KEYS_MAX, p);
			sodium_memzero(&k, sizeof k);
		}
		closedir(d);
	}
	/* the last rotation, if it names the current key */
	if (path_of(b, "node.rotation", p, sizeof p) == 0 &&
	    read_exact(p, buf, ROT_FILE_LEN) == 0 &&
	    memcmp(buf, ROT_MAGIC, sizeof ROT_MAGIC - 1) == 0) {
		const char *h = buf + sizeof ROT_MAGIC - 1;
		if (h[64] == '\n' && h[64 + 1 + 128] == '\n' &&
		    sodium_hex2bin(b->rot_prev, STORE_KEY_LEN, h, 64, NULL, NULL, NULL) == 0 &&
		    sodium_hex2bin(b->rot_sig, STORE_SIG_LEN, h + 65, 128, NULL, NULL, NULL) == 0 &&
		    sign_rotate_verify(b->rot_prev, b->id, b->key.pk, b->rot_sig))
			b->has_rot = true;
		else
			log_notice("%s does not name this node's current key: not published", p);
	}
	/* the enrolment of the current key (node.enrol.next: a rotation stopped between its
	 * two renames) */
	if (load_enrol(b, "node.enrol", &b->enrol) || load_enrol(b, "node.enrol.next", &b->enrol)) {
		b->has_enrol = true;
		if (!sign_trust_has(&b->ops, b->enrol.key))
			log_warning("this node's enrolment is signed by operator key "
				    "%02x%02x%02x%02x..., which this node does not trust: nodes "
				    "that do not trust it refuse this node's roster record",
				    b->enrol.key[0], b->enrol.key[1], b->enrol.key[2],
				    b->enrol.key[3]);
	} else if (path_of(b, "node.enrol", p, sizeof p) == 0 && access(p, F_OK) == 0) {
		log_warning("%s does not enrol this node's current key: not published (enrol "
			    "again: agentctl enrol --key OPKEY)", p);
	}
	if (b->require_enrolment && !b->has_enrol)
		log_warning("this node requires enrolment and is not enrolled itself: the nodes "
			    "that require enrolment (itself included) refuse its roster record "
			    "until an operator runs agentctl enrol --key OPKEY here");
}

void fleet__trust_free(struct fleet *b)
{
	if (b->old_keys)
		sodium_memzero(b->old_keys, b->nold * sizeof *b->old_keys);
	free(b->old_keys);
	b->old_keys = NULL;
	b->nold = 0;
}

const struct sign_key *fleet__sign_key_for(const struct fleet *b, const uint8_t *named)
{
	if (named && sodium_memcmp(named, b->key.pk, SIGN_PUBLIC_LEN) != 0)
		for (size_t i = 0; i < b->nold; i++)
			if (sodium_memcmp(named, b->old_keys[i].pk, SIGN_PUBLIC_LEN) == 0)
				return &b->old_keys[i];
	return &b->key;
}

static void op_from_store(const struct store_opsig *s, struct sign_op *op)
{
	memset(op, 0, sizeof *op);
	op->kind = s->kind;
	op->ts_ms = s->ts_ms;
	memcpy(op->nonce, s->nonce, sizeof op->nonce);
	memcpy(op->key, s->key, sizeof op->key);
	memcpy(op->sig, s->sig, sizeof op->sig);
}

int fleet__enrol_check(struct fleet *b, const uint8_t owner[STORE_NODE_ID_LEN],
		       const struct fleet_roster *ro)
{
	struct sign_op op;
	if (!ro->has_enrol)
		return 0;
	op_from_store(&ro->enrol, &op);
	return sign_enrol_verify(&op, owner, STORE_NODE_ID_LEN, ro->key, &b->ops) ? 1 : -1;
}

const struct fleet_untrusted *fleet__untrusted_find(const struct fleet *b,
						     const uint8_t id[STORE_NODE_ID_LEN])
{
	for (size_t i = 0; i < b->nuntrusted; i++)
		if (memcmp(b->untrusted[i].id, id, STORE_NODE_ID_LEN) == 0)
			return &b->untrusted[i];
	return NULL;
}

bool fleet__untrusted_note(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN],
			   const uint8_t key[STORE_KEY_LEN], int why)
{
	struct fleet_untrusted *u = (struct fleet_untrusted *)fleet__untrusted_find(b, id);
	if (!why) {
		if (!u)
			return false;
		*u = b->untrusted[--b->nuntrusted];
		return true;
	}
	if (u) {
		bool news = u->why != why || memcmp(u->key, key, STORE_KEY_LEN) != 0;
		u->why = (uint8_t)why;
		memcpy(u->key, key, STORE_KEY_LEN);
		return news;
	}
	/* bounded: a flood of fresh ids keeps the oldest 64 (each refused all the same) */
	if (b->nuntrusted == FLEET_UNTRUSTED_MAX)
		return false;
	u = &b->untrusted[b->nuntrusted++];
	memcpy(u->id, id, STORE_NODE_ID_LEN);
	memcpy(u->key, key, STORE_KEY_LEN);
	u->why = (uint8_t)why;
	return true;
}

const char *fleet_member_trust(struct fleet *b, const uint8_t id[STORE_NODE_ID_LEN])
{
	if (!b)
		return "unknown";
	const struct fleet_untrusted *u = fleet__untrusted_find(b, id);
	if (u)
		return u->why == FLEET_ENROL_REFUSED ? "enrolment refused" : "not enrolled";
	const struct nodekey *nk = fleet__bind_slot(b, id);
	if (!nk)
		return "unknown";
	return nk->enrolled ? "enrolled" : "first join";
}

/* ---- Control operations --------------------------------------------------------------------- */

struct enrol_args {
	char *enrolment;
};
struct rotate_args {
	char *enrolment;
	bool prepare;
};
static const struct ctl_arg enrol_rows[] = {
	{"enrolment", CTL_ARG_STR, .required = true, .offset = offsetof(struct enrol_args, enrolment),
	 .bad = "\"enrolment\" must be an operator's signed enrolment (agentctl enrol signs it)"},
};
static const struct ctl_arg rotate_rows[] = {
	{"enrolment", CTL_ARG_STR, .offset = offsetof(struct rotate_args, enrolment),
	 .bad = "\"enrolment\" must be an operator's signed enrolment of the new key"},
	{"prepare", CTL_ARG_FLAG, .offset = offsetof(struct rotate_args, prepare)},
};
const struct ctl_args_spec fleet_enrol_spec = CTL_ARGS_SPEC(struct enrol_args, enrol_rows);
const struct ctl_args_spec fleet_rotate_spec = CTL_ARGS_SPEC(struct rotate_args, rotate_rows);

static bool serving(struct fleet *b, struct ctl_enc *out)
{
	if (!b || !b->started) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "the cluster brain is not running");
		return false;
	}
	if (!b->state_dir) {
		ctl_enc_fail(out, CTL_E_INTERNAL, "this agent has no state directory");
		return false;
	}
	return true;
}

static void kv_key(struct ctl_enc *out, const char *k, const uint8_t *key)
{
	char hex[2 * SIGN_PUBLIC_LEN + 1];
	if (!key) {
		ctl_kv_str(out, k, NULL);
		return;
	}
	sodium_bin2hex(hex, sizeof hex, key, SIGN_PUBLIC_LEN);
	ctl_kv_str(out, k, hex);
}

void fleet_op_node_identity(void *fleet, const void *args, const struct ctl_peer *peer,
			    struct ctl_enc *out)
{
	struct fleet *b = fleet;
	char hex[2 * STORE_NODE_ID_LEN + 1];
	(void)args;
	(void)peer;
	if (!serving(b, out))
		return;
	fleet__hex_id(b->id, STORE_NODE_ID_LEN, hex);
	ctl_enc_ok(out);
	ctl_enc_map(out, 9);
	ctl_kv_str(out, "id", hex);
	ctl_kv_str(out, "name", b->name);
	kv_key(out, "key", b->key.pk);
	ctl_kv_str(out, "trust", fleet_member_trust(b, b->id));
	ctl_kv_bool(out, "enrolled", b->has_enrol);
	kv_key(out, "enrolled_by", b->has_enrol ? b->enrol.key : NULL);
	ctl_kv_bool(out, "require_enrolment", b->require_enrolment);
	kv_key(out, "rotated_from", b->has_rot ? b->rot_prev : NULL);
	ctl_kv_uint(out, "former_keys", b->nold);
}

/*
 * @hex, an enrolment of @pk for this node, checked against the keys this node trusts.
 * 0 and *ret; <0 after writing the refusal into @out.
 */
static int enrol_of(struct fleet *b, const char *hex, const uint8_t pk[SIGN_PUBLIC_LEN],
		    struct sign_op *ret, struct ctl_enc *out)
{
	if (sign_op_parse_hex(hex, ret) < 0 || ret->kind != SIGN_OP_ENROL) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "\"enrolment\" is not a signed enrolment");
		return -EINVAL;
	}
	if (!sign_enrol_verify(ret, b->id, STORE_NODE_ID_LEN, pk, NULL)) {
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "the enrolment is not of this node's %s key "
			     "(it changed? run agentctl enrol again)", pk == b->key.pk ? "current"
										: "new");
		return -EINVAL;
	}
	if (!sign_trust_has(&b->ops, ret->key)) {
		log_warning("ctl: an enrolment signed by operator key %02x%02x%02x%02x... refused: "
			    "this node does not trust that key", ret->key[0], ret->key[1],
			    ret->key[2], ret->key[3]);
		ctl_enc_fail(out, CTL_E_PERMISSION_DENIED,
			     "this node does not trust operator key %02x%02x%02x%02x... (copy its "
			     ".pub file to the operators directory of every node and reload "
			     "agentd there)", ret->key[0], ret->key[1], ret->key[2], ret->key[3]);
		return -EPERM;
	}
	return 0;
}

void fleet_op_node_enrol(void *fleet, const void *args, const struct ctl_peer *peer,
			 struct ctl_enc *out)
{
	const struct enrol_args *a = args;
	struct fleet *b = fleet;
	struct sign_op op;
	char hex[2 * STORE_NODE_ID_LEN + 1];
	if (!serving(b, out) || enrol_of(b, a->enrolment, b->key.pk, &op, out) < 0)
		return;
	int r = save_enrol(b, "node.enrol", &op);
	if (r < 0) {
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "cannot write %s/node.enrol: %s",
			     b->state_dir, strerror(-r));
		return;
	}
	b->enrol = op;
	b->has_enrol = true;
	fleet__hex_id(b->id, STORE_NODE_ID_LEN, hex);
	log_notice("this node (%s) is enrolled by operator key %02x%02x%02x%02x... (uid %" PRIu32
		   " pid %" PRId32 "): its roster record carries the enrolment from now on", hex,
		   op.key[0], op.key[1], op.key[2], op.key[3],
		   peer && peer->known ? peer->uid : UINT32_MAX, peer && peer->known ? peer->pid : 0);
	fleet__event(b, "security", "", 0, "this node was enrolled by operator key "
		     "%02x%02x%02x%02x...", op.key[0], op.key[1], op.key[2], op.key[3]);
	r = fleet__publish_roster(b, false);
	if (r < 0)
		log_warning("cannot publish this node's roster entry: %s", strerror(-r));
	fleet__members_refresh(b);
	ctl_enc_ok(out);
	ctl_enc_map(out, 3);
	ctl_kv_str(out, "id", hex);
	kv_key(out, "key", b->key.pk);
	kv_key(out, "operator", op.key);
}

/* The prepared next key: loaded, or made now. */
static int next_key(struct fleet *b, struct sign_key *ret, char *path, size_t plen)
{
	int r = path_of(b, "node.key.next", path, plen);
	if (r < 0)
		return r;
	r = sign_node_key_create(path, ret);
	if (r == -EEXIST)
		r = sign_node_key_load(path, ret, NULL);
	return r;
}

/*
 * Make the rotation to @next (files first, then memory; see the file's header): the rotation
 * statement, the new key's enrolment, the old key kept as node.key.old.<ms>, node.key
 * replaced. A crash anywhere leaves either the old key with a prepared next one, or the new
 * key with its statement (fleet_start finishes the store's binding).
 */
static int rotate_commit(struct fleet *b, const struct sign_key *next, const struct sign_op *en,
			 const char *next_path, char *err, size_t errlen)
{
	char p[4200], old[4200], enext[4200], buf[ROT_FILE_LEN + 1];
	uint8_t sig[SIGN_SIG_LEN];
	struct timespec ts;
	int r;

	sign_rotate_sign(&b->key, b->id, next->pk, sig);
	memcpy(buf, ROT_MAGIC, sizeof ROT_MAGIC - 1);
	sodium_bin2hex(buf + sizeof ROT_MAGIC - 1, 65, b->key.pk, SIGN_PUBLIC_LEN);
	buf[sizeof ROT_MAGIC - 1 + 64] = '\n';
	sodium_bin2hex(buf + sizeof ROT_MAGIC - 1 + 65, 129, sig, SIGN_SIG_LEN);
	buf[ROT_FILE_LEN - 1] = '\n';
	if ((r = path_of(b, "node.rotation", p, sizeof p)) < 0 ||
	    (r = write_atomic(p, buf, ROT_FILE_LEN, 0644)) < 0) {
		snprintf(err, errlen, "cannot write %s/node.rotation: %s", b->state_dir, strerror(-r));
		return r;
	}
	if ((r = path_of(b, "node.enrol.next", enext, sizeof enext)) < 0)
		return r;
	unlink(enext);
	if (en && (r = save_enrol(b, "node.enrol.next", en)) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", enext, strerror(-r));
		return r;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	char name[64];
	snprintf(name, sizeof name, "node.key.old.%" PRIu64,
		 (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	if ((r = path_of(b, name, old, sizeof old)) < 0 ||
	    (r = path_of(b, "node.key", p, sizeof p)) < 0)
		return r;
	if (link(p, old) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot keep the former key as %s: %s", old, strerror(-r));
		return r;
	}
	if (rename(next_path, p) < 0) {
		r = -errno;
		unlink(old);
		snprintf(err, errlen, "cannot replace %s: %s", p, strerror(-r));
		return r;
	}
	/* the new key's enrolment replaces the old one's, which no longer applies */
	char ep[4200];
	if (path_of(b, "node.enrol", ep, sizeof ep) == 0) {
		if (en)
			rename(enext, ep);
		else
			unlink(ep);
	}
	sync_dir(b);

	if (old_key_add(b, &b->key) < 0)
		log_warning("former key %s not kept in memory: this node's votes on revisions "
			    "that name it are signed with the new key until a restart", old);
	memcpy(b->rot_prev, b->key.pk, STORE_KEY_LEN);
	memcpy(b->rot_sig, sig, STORE_SIG_LEN);
	b->has_rot = true;
	b->key = *next;
	b->has_enrol = en != NULL;
	if (en)
		b->enrol = *en;
	struct nodekey *own = fleet__bind_slot(b, b->id);
	if (own)
		fleet__bind_rotate(b, own, b->key.pk);
	/* health records are signed once per content: sign them again with the new key, or a
	 * node that joins later (only the new key bound) would refuse them until they change */
	for (size_t i = 0; i < b->nsvcs; i++) {
		b->svcs[i]->hsigned = false;
		fleet__publish_health(b, b->svcs[i]);
	}
	return 0;
}

void fleet_op_node_rotate(void *fleet, const void *args, const struct ctl_peer *peer,
			  struct ctl_enc *out)
{
	const struct rotate_args *a = args;
	struct fleet *b = fleet;
	struct sign_key next;
	struct sign_op en;
	char path[4200], err[4600], hex[2 * STORE_NODE_ID_LEN + 1];
	uint8_t prev[SIGN_PUBLIC_LEN];
	int r;

	if (!serving(b, out))
		return;
	r = next_key(b, &next, path, sizeof path);
	if (r < 0) {
		ctl_enc_fail(out, r == -SIGN_EMODE || r == -SIGN_EFORMAT ? CTL_E_INTERNAL
				 : agent_ctl_err_from_errno(r),
			     "%s: %s", path, sign_strerror(r));
		return;
	}
	if (a->prepare) {
		fleet__hex_id(b->id, STORE_NODE_ID_LEN, hex);
		ctl_enc_ok(out);
		ctl_enc_map(out, 3);
		ctl_kv_str(out, "id", hex);
		kv_key(out, "next_key", next.pk);
		ctl_kv_bool(out, "needs_enrolment", b->require_enrolment || b->has_enrol);
		goto out;
	}
	if (!a->enrolment && (b->require_enrolment || b->has_enrol)) {
		ctl_enc_fail(out, CTL_E_PERMISSION_DENIED,
			     "this node %s: its new key needs an enrolment too, or the nodes that "
			     "require enrolment refuse it (give an operator key: agentctl "
			     "rotate-key --key OPKEY)",
			     b->require_enrolment ? "requires enrolment" : "is enrolled");
		goto out;
	}
	if (a->enrolment && enrol_of(b, a->enrolment, next.pk, &en, out) < 0)
		goto out;
	memcpy(prev, b->key.pk, sizeof prev);
	r = rotate_commit(b, &next, a->enrolment ? &en : NULL, path, err, sizeof err);
	if (r < 0) {
		log_error("key rotation failed: %s (the current key stays)", err);
		ctl_enc_fail(out, agent_ctl_err_from_errno(r), "%s (the current key stays)", err);
		goto out;
	}
	fleet__hex_id(b->id, STORE_NODE_ID_LEN, hex);
	log_notice("this node (%s) rotated its key to %02x%02x%02x%02x... (former "
		   "%02x%02x%02x%02x..., kept to vote on revisions that name it; uid %" PRIu32
		   " pid %" PRId32 ")%s", hex, b->key.pk[0], b->key.pk[1], b->key.pk[2],
		   b->key.pk[3], prev[0], prev[1], prev[2], prev[3],
		   peer && peer->known ? peer->uid : UINT32_MAX, peer && peer->known ? peer->pid : 0,
		   b->has_enrol ? "; the new key is enrolled" : "");
	fleet__event(b, "security", "", 0, "this node rotated its key to %02x%02x%02x%02x...",
		     b->key.pk[0], b->key.pk[1], b->key.pk[2], b->key.pk[3]);
	r = fleet__publish_roster(b, false);
	if (r < 0)
		log_warning("cannot publish this node's roster entry: %s", strerror(-r));
	fleet__members_refresh(b);
	ctl_enc_ok(out);
	ctl_enc_map(out, 4);
	ctl_kv_str(out, "id", hex);
	kv_key(out, "key", b->key.pk);
	kv_key(out, "previous", prev);
	ctl_kv_bool(out, "enrolled", b->has_enrol);
out:
	sodium_memzero(&next, sizeof next);
}
