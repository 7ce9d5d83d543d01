/*
 * agent/base/sign.c: node identity keys (see sign.h for the trust model).
 */
#include "agent/base/sign.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define MAGIC "shoal-node-key-v1\n"	/* all magics have this length */
#define OP_MAGIC "shoal-operator-key-v1\n"
#define PUB_MAGIC "shoal-operator-pub-v1\n"
#define FILE_LEN (sizeof MAGIC - 1 + 64 + 1)
#define OP_LEN (sizeof OP_MAGIC - 1 + 64 + 1)

void sign_key_from_seed(const uint8_t seed[32], struct sign_key *ret)
{
	crypto_sign_seed_keypair(ret->pk, ret->sk, seed);
}

void sign_key_random(struct sign_key *ret)
{
	uint8_t seed[32];
	randombytes_buf(seed, sizeof seed);
	sign_key_from_seed(seed, ret);
	sodium_memzero(seed, sizeof seed);
}

void sign_detached(const struct sign_key *k, const void *msg, size_t len,
		   uint8_t sig[SIGN_SIG_LEN])
{
	crypto_sign_detached(sig, NULL, msg, len, k->sk);
}

/*
 * The verdicts of recent checks (sign.h): one slot per digest of (key, signature, message),
 * chosen by the digest's first bytes; a newer triple that lands on a taken slot replaces it.
 * The digest is BLAKE2b-256 keyed with a random per-process key, so nobody outside can aim
 * a triple at a slot or at another triple's digest. A mutex: the control socket's thread
 * pool may verify too.
 */
#define VCACHE_SLOTS 4096	/* a power of two; 37 bytes each */
struct vslot {
	uint8_t digest[32];
	uint8_t state;		/* 0 empty, 1 verified, 2 did not verify */
};
static struct vslot vcache[VCACHE_SLOTS];
static uint8_t vcache_key[crypto_generichash_KEYBYTES];
static bool vcache_keyed;
static uint64_t vcache_checked, vcache_remembered;
static pthread_mutex_t vcache_lock = PTHREAD_MUTEX_INITIALIZER;

bool sign_verify(const uint8_t pk[SIGN_PUBLIC_LEN], const void *msg, size_t len,
		 const uint8_t sig[SIGN_SIG_LEN])
{
	static const uint8_t zero[SIGN_PUBLIC_LEN];
	crypto_generichash_state st;
	uint8_t d[32];
	struct vslot *slot;
	bool ok;

	if (!pk || !sig || (!msg && len) || sodium_memcmp(pk, zero, SIGN_PUBLIC_LEN) == 0)
		return false;
	pthread_mutex_lock(&vcache_lock);
	if (!vcache_keyed) {
		randombytes_buf(vcache_key, sizeof vcache_key);
		vcache_keyed = true;
	}
	/* key and signature have fixed lengths: the concatenation is unambiguous */
	crypto_generichash_init(&st, vcache_key, sizeof vcache_key, sizeof d);
	crypto_generichash_update(&st, pk, SIGN_PUBLIC_LEN);
	crypto_generichash_update(&st, sig, SIGN_SIG_LEN);
	crypto_generichash_update(&st, msg, len);
	crypto_generichash_final(&st, d, sizeof d);
	slot = &vcache[(((size_t)d[0] << 8 | d[1]) << 8 | d[2]) & (VCACHE_SLOTS - 1)];
	if (slot->state && sodium_memcmp(slot->digest, d, sizeof d) == 0) {
		ok = slot->state == 1;
		vcache_remembered++;
		pthread_mutex_unlock(&vcache_lock);
		return ok;
	}
	pthread_mutex_unlock(&vcache_lock);
	ok = crypto_sign_verify_detached(sig, msg, len, pk) == 0;
	pthread_mutex_lock(&vcache_lock);
	vcache_checked++;
	memcpy(slot->digest, d, sizeof d);
	slot->state = ok ? 1 : 2;
	pthread_mutex_unlock(&vcache_lock);
	return ok;
}

void sign_verify_stats(uint64_t *ret_checked, uint64_t *ret_remembered)
{
	pthread_mutex_lock(&vcache_lock);
	if (ret_checked)
		*ret_checked = vcache_checked;
	if (ret_remembered)
		*ret_remembered = vcache_remembered;
	pthread_mutex_unlock(&vcache_lock);
}

void sign_verify_forget(void)
{
	pthread_mutex_lock(&vcache_lock);
	sodium_memzero(vcache, sizeof vcache);
	pthread_mutex_unlock(&vcache_lock);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int write_new(const char *path, struct sign_key *ret)
{
	char tmp[4096], buf[FILE_LEN];
	uint8_t seed[32];
	int fd, err = 0;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	randombytes_buf(seed, sizeof seed);
	memcpy(buf, MAGIC, sizeof MAGIC - 1);
	for (int i = 0; i < 32; i++)
		snprintf(buf + sizeof MAGIC - 1 + 2 * i, 3, "%02x", seed[i]);
	buf[FILE_LEN - 1] = '\n';
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) < 0) {
		err = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		err = -errno;
		unlink(tmp);
		goto out;
	}
	sign_key_from_seed(seed, ret);
out:
	sodium_memzero(seed, sizeof seed);
	sodium_memzero(buf, sizeof buf);
	return err;
}

int sign_node_key_load(const char *path, struct sign_key *ret, bool *ret_created)
{
	char buf[FILE_LEN + 1];
	uint8_t seed[32];
	struct stat st;
	int fd, err = 0;
	ssize_t n;

	if (!path || !ret)
		return -EINVAL;
	if (ret_created)
		*ret_created = false;
	if (sodium_init() < 0)
		return -EIO;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		err = write_new(path, ret);
		if (err == 0 && ret_created)
			*ret_created = true;
		return err;
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -SIGN_EFORMAT;
		goto out;
	}
	if (st.st_mode & 077) {
		err = -SIGN_EMODE;
		goto out;
	}
	n = read(fd, buf, sizeof buf);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	if ((size_t)n != FILE_LEN || memcmp(buf, MAGIC, sizeof MAGIC - 1) != 0 ||
	    buf[FILE_LEN - 1] != '\n') {
		err = -SIGN_EFORMAT;
		goto out;
	}
	for (int i = 0; i < 32; i++) {
		int hi = hexval(buf[sizeof MAGIC - 1 + 2 * i]);
		int lo = hexval(buf[sizeof MAGIC - 1 + 2 * i + 1]);
		if (hi < 0 || lo < 0) {
			err = -SIGN_EFORMAT;
			goto out;
		}
		seed[i] = (uint8_t)(hi << 4 | lo);
	}
	sign_key_from_seed(seed, ret);
out:
	sodium_memzero(seed, sizeof seed);
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return err;
}

const char *sign_strerror(int err)
{
	switch (-err) {
	case SIGN_EMODE:
		return "key file is readable by group or others (chmod 600 it)";
	case SIGN_EFORMAT:
		return "not a Shoal key file";
	default:
		return strerror(-err);
	}
}

/* ---- Operators --------------------------------------------------------------------------- */

/* Read a "MAGIC + 64 hex + \n" file into @out (32 bytes); @secret: refuse group/other bits. */
static int read_hex_file(const char *path, const char *magic, bool secret, uint8_t out[32])
{
	size_t ml = strlen(magic), want = ml + 64 + 1;
	char buf[128];
	struct stat st;
	int fd, err = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -SIGN_EFORMAT;
		goto out;
	}
	if (secret && (st.st_mode & 077)) {
		err = -SIGN_EMODE;
		goto out;
	}
	n = read(fd, buf, sizeof buf);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	if ((size_t)n != want || memcmp(buf, magic, ml) != 0 || buf[want - 1] != '\n' ||
	    sodium_hex2bin(out, 32, buf + ml, 64, NULL, NULL, NULL) != 0)
		err = -SIGN_EFORMAT;
out:
	sodium_memzero(buf, sizeof buf);
	close(fd);
	return err;
}

static int write_hex_file(const char *path, const char *magic, const uint8_t v[32], int mode)
{
	char buf[128];
	size_t ml = strlen(magic);
	int fd, err = 0;
	memcpy(buf, magic, ml);
	sodium_bin2hex(buf + ml, 65, v, 32);
	buf[ml + 64] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, ml + 65) != (ssize_t)(ml + 65) || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	sodium_memzero(buf, sizeof buf);
	if (err)
		unlink(path);
	return err;
}

int sign_operator_keygen(const char *path, struct sign_key *ret)
{
	char pub[4096];
	uint8_t seed[32];
	struct sign_key k;
	int err;
	if (!path || snprintf(pub, sizeof pub, "%s.pub", path) >= (int)sizeof pub)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (access(path, F_OK) == 0 || access(pub, F_OK) == 0)
		return -EEXIST;
	randombytes_buf(seed, sizeof seed);
	sign_key_from_seed(seed, &k);
	err = write_hex_file(path, OP_MAGIC, seed, 0600);
	if (!err) {
		err = write_hex_file(pub, PUB_MAGIC, k.pk, 0644);
		if (err)
			unlink(path);
	}
	sodium_memzero(seed, sizeof seed);
	if (!err && ret)
		*ret = k;
	sodium_memzero(&k, sizeof k);
	return err;
}

int sign_operator_key_load(const char *path, struct sign_key *ret)
{
	uint8_t seed[32];
	if (!path || !ret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	int err = read_hex_file(path, OP_MAGIC, true, seed);
	if (!err)
		sign_key_from_seed(seed, ret);
	sodium_memzero(seed, sizeof seed);
	return err;
}

void sign_trust_free(struct sign_trust *t)
{
	if (!t)
		return;
	free(t->keys);
	t->keys = NULL;
	t->n = 0;
}

int sign_trust_load(const char *dir, struct sign_trust *ret, char *bad, size_t badlen)
{
	struct sign_trust t = {0};
	struct dirent *de;
	DIR *d;
	if (!dir || !ret)
		return -EINVAL;
	if (bad && badlen)
		bad[0] = 0;
	d = opendir(dir);
	if (!d && errno == ENOENT) {
		sign_trust_free(ret);
		return 0;
	}
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char p[4096];
		uint8_t k[32];
		if (l < 5 || strcmp(de->d_name + l - 4, ".pub") != 0 || de->d_name[0] == '.')
			continue;
		if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
			continue;
		if (read_hex_file(p, PUB_MAGIC, false, k) < 0) {
			if (bad && badlen && !bad[0])
				snprintf(bad, badlen, "%s", p);
			continue;
		}
		void *nk = realloc(t.keys, (t.n + 1) * sizeof *t.keys);
		if (!nk) {
			closedir(d);
			free(t.keys);
			return -ENOMEM;
		}
		t.keys = nk;
		memcpy(t.keys[t.n++], k, 32);
	}
	closedir(d);
	sign_trust_free(ret);
	*ret = t;
	return 0;
}

bool sign_trust_has(const struct sign_trust *t, const uint8_t key[SIGN_PUBLIC_LEN])
{
	for (size_t i = 0; t && i < t->n; i++)
		if (sodium_memcmp(t->keys[i], key, SIGN_PUBLIC_LEN) == 0)
			return true;
	return false;
}

static uint8_t *be_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

size_t sign_op_msg(const struct sign_op *op, const char *service, const uint8_t artifact[32],
		   uint8_t out[SIGN_OP_MSG_MAX])
{
	static const char tag[] = "shoal-op-v1";
	static const uint8_t zero[32];
	size_t sl = strnlen(service, 64), cl = strnlen(op->scope, 64);
	uint8_t *p = out;
	memcpy(p, tag, sizeof tag);	/* with its NUL */
	p += sizeof tag;
	*p++ = op->kind;
	*p++ = (uint8_t)sl;
	memcpy(p, service, sl);
	p += sl;
	memcpy(p, artifact ? artifact : zero, 32);
	p += 32;
	*p++ = (uint8_t)cl;
	memcpy(p, op->scope, cl);
	p += cl;
	p = be_put(p, op->target);
	p = be_put(p, op->ts_ms);
	memcpy(p, op->nonce, 16);
	p += 16;
	memcpy(p, op->key, SIGN_PUBLIC_LEN);
	p += SIGN_PUBLIC_LEN;
	return (size_t)(p - out);
}

void sign_op_sign(const struct sign_key *k, const char *service, const uint8_t artifact[32],
		  struct sign_op *op)
{
	uint8_t msg[SIGN_OP_MSG_MAX];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	op->ts_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	randombytes_buf(op->nonce, sizeof op->nonce);
	memcpy(op->key, k->pk, SIGN_PUBLIC_LEN);
	sign_detached(k, msg, sign_op_msg(op, service, artifact, msg), op->sig);
}

bool sign_op_verify(const struct sign_op *op, const char *service, const uint8_t artifact[32],
		    const struct sign_trust *trust)
{
	uint8_t msg[SIGN_OP_MSG_MAX];
	if (!op || op->kind == SIGN_OP_NONE || !sign_trust_has(trust, op->key))
		return false;
	return sign_verify(op->key, msg, sign_op_msg(op, service, artifact, msg), op->sig);
}

void sign_op_remove_subject(const uint8_t id[16], const char *reason, char idhex[33],
			    uint8_t digest[32])
{
	sodium_bin2hex(idhex, 33, id, 16);
	crypto_generichash(digest, 32, (const unsigned char *)reason, strlen(reason), NULL, 0);
}

void sign_op_hex(const struct sign_op *op, char out[SIGN_OP_HEX_LEN + 1])
{
	uint8_t b[SIGN_OP_HEX_LEN / 2], *p = b;
	*p++ = op->kind;
	p = be_put(p, op->target);
	p = be_put(p, op->ts_ms);
	memcpy(p, op->nonce, 16);
	p += 16;
	memcpy(p, op->key, 32);
	p += 32;
	memcpy(p, op->sig, 64);
	sodium_bin2hex(out, SIGN_OP_HEX_LEN + 1, b, sizeof b);
}

int sign_op_parse_hex(const char *hex, struct sign_op *ret)
{
	uint8_t b[SIGN_OP_HEX_LEN / 2];
	const uint8_t *p = b;
	struct sign_op op;
	if (!hex || strlen(hex) != SIGN_OP_HEX_LEN ||
	    sodium_hex2bin(b, sizeof b, hex, SIGN_OP_HEX_LEN, NULL, NULL, NULL) != 0 ||
	    (b[0] != SIGN_OP_DEPLOY && b[0] != SIGN_OP_ROLLBACK && b[0] != SIGN_OP_REMOVE &&
	     b[0] != SIGN_OP_ENROL))
		return -EINVAL;
	memset(&op, 0, sizeof op);
	op.kind = *p++;
	for (int i = 0; i < 8; i++)
		op.target = op.target << 8 | *p++;
	for (int i = 0; i < 8; i++)
		op.ts_ms = op.ts_ms << 8 | *p++;
	memcpy(op.nonce, p, 16);
	p += 16;
	memcpy(op.key, p, 32);
	p += 32;
	memcpy(op.sig, p, 64);
	*ret = op;
	return 0;
}

/* ---- Enrolment and rotation ----------------------------------------------------------------- */

static void id_hex(const uint8_t *id, size_t idlen, char out[65])
{
	if (idlen > 32)
		idlen = 32;
	sodium_bin2hex(out, 65, id, idlen);
}

void sign_enrol_sign(const struct sign_key *op_key, const uint8_t *id, size_t idlen,
		     const uint8_t node_pk[SIGN_PUBLIC_LEN], struct sign_op *ret)
{
	char hex[65];
	memset(ret, 0, sizeof *ret);
	ret->kind = SIGN_OP_ENROL;
	id_hex(id, idlen, hex);
	sign_op_sign(op_key, hex, node_pk, ret);
}

bool sign_enrol_verify(const struct sign_op *op, const uint8_t *id, size_t idlen,
		       const uint8_t node_pk[SIGN_PUBLIC_LEN], const struct sign_trust *trust)
{
	uint8_t msg[SIGN_OP_MSG_MAX];
	char hex[65];
	if (!op || op->kind != SIGN_OP_ENROL || op->scope[0] || op->target)
		return false;
	if (trust && !sign_trust_has(trust, op->key))
		return false;
	id_hex(id, idlen, hex);
	return sign_verify(op->key, msg, sign_op_msg(op, hex, node_pk, msg), op->sig);
}

static void rotate_msg(const uint8_t old_pk[SIGN_PUBLIC_LEN], const uint8_t id[16],
		       const uint8_t new_pk[SIGN_PUBLIC_LEN], uint8_t out[SIGN_ROTATE_MSG_LEN])
{
	static const char tag[16] = "shoal-rotate-v1";	/* with its NUL */
	memcpy(out, tag, 16);
	memcpy(out + 16, id, 16);
	memcpy(out + 32, old_pk, SIGN_PUBLIC_LEN);
	memcpy(out + 32 + SIGN_PUBLIC_LEN, new_pk, SIGN_PUBLIC_LEN);
}

void sign_rotate_sign(const struct sign_key *old, const uint8_t id[16],
		      const uint8_t new_pk[SIGN_PUBLIC_LEN], uint8_t sig[SIGN_SIG_LEN])
{
	uint8_t msg[SIGN_ROTATE_MSG_LEN];
	rotate_msg(old->pk, id, new_pk, msg);
	sign_detached(old, msg, sizeof msg, sig);
}

bool sign_rotate_verify(const uint8_t old_pk[SIGN_PUBLIC_LEN], const uint8_t id[16],
			const uint8_t new_pk[SIGN_PUBLIC_LEN], const uint8_t sig[SIGN_SIG_LEN])
{
	uint8_t msg[SIGN_ROTATE_MSG_LEN];
	if (sodium_memcmp(old_pk, new_pk, SIGN_PUBLIC_LEN) == 0)
		return false;
	rotate_msg(old_pk, id, new_pk, msg);
	return sign_verify(old_pk, msg, sizeof msg, sig);
}

int sign_node_key_create(const char *path, struct sign_key *ret)
{
	if (!path || !ret)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (access(path, F_OK) == 0)
		return -EEXIST;
	return write_new(path, ret);
}
