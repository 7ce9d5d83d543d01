/*
 * gossip/crypto.c: keyring, AEAD sealing/opening with replay windows, TCP frame prefix.
 *
 * The order of checks in gossip_crypto_open() matters: everything before the AEAD verification
 * is a constant-size look at the header (no allocation, no table insertion), so a flood of
 * garbage costs one hash lookup per packet and changes no state. The replay window is consulted
 * before the tag (cheap rejection of replays) and updated only after it (so only authentic
 * packets move it).
 *
 * The replay table is an open-addressing hash (linear probing, backward-shift deletion) keyed
 * by SipHash of the sender id under a random per-process key, so a key holder cannot aim
 * colliding ids at one bucket. It grows by doubling up to 2 * GOSSIP_REPLAY_SENDERS slots; when
 * it holds GOSSIP_REPLAY_SENDERS senders, the least recently heard one is evicted (a linear scan,
 * which only happens when a new sender shows up in a full table).
 */
#include "gossip/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define KEYRING_FILE_MAX (64 * 1024)

static const char key_id_context[] = "shoal-gossip-key-id";

const char *gossip_drop_name(enum gossip_drop reason)
{
	switch (reason) {
	case GOSSIP_DROP_TOO_SHORT:
		return "too_short";
	case GOSSIP_DROP_BAD_VERSION:
		return "bad_version";
	case GOSSIP_DROP_UNKNOWN_KEY:
		return "unknown_key";
	case GOSSIP_DROP_AUTH:
		return "auth";
	case GOSSIP_DROP_REPLAY:
		return "replay";
	case GOSSIP_DROP_SELF:
		return "self";
	default:
		return "unknown";
	}
}

/* ---- keys ------------------------------------------------------------------------------- */

void gossip_key_generate(uint8_t ret_key[GOSSIP_KEY_LEN])
{
	randombytes_buf(ret_key, GOSSIP_KEY_LEN);
}

uint8_t gossip_key_id(const uint8_t key[GOSSIP_KEY_LEN])
{
	crypto_generichash_state st;
	uint8_t h[32];

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const uint8_t *)key_id_context, sizeof(key_id_context) - 1);
	crypto_generichash_update(&st, key, GOSSIP_KEY_LEN);
	crypto_generichash_final(&st, h, sizeof(h));
	return h[0];
}

void gossip_key_encode(const uint8_t key[GOSSIP_KEY_LEN], char out[GOSSIP_KEY_B64LEN + 1])
{
	sodium_bin2base64(out, GOSSIP_KEY_B64LEN + 1, key, GOSSIP_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int gossip_key_decode(const char *text, size_t len, uint8_t ret_key[GOSSIP_KEY_LEN])
{
	uint8_t bin[GOSSIP_KEY_LEN + 4];
	size_t bin_len = 0;
	const char *end_used = NULL;
	int r = -EINVAL;

	while (len > 0 && is_space(text[0])) {
		text++;
		len--;
	}
	while (len > 0 && is_space(text[len - 1]))
		len--;
	if (len != GOSSIP_KEY_B64LEN)
		goto out;
	if (sodium_base642bin(bin, sizeof(bin), text, len, NULL, &bin_len, &end_used,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		goto out;
	if (bin_len != GOSSIP_KEY_LEN || end_used != text + len)
		goto out;
	memcpy(ret_key, bin, GOSSIP_KEY_LEN);
	r = 0;
out:
	sodium_memzero(bin, sizeof(bin));
	return r;
}

/* ---- keyring ---------------------------------------------------------------------------- */

struct gossip_key_slot {
	uint8_t id;
	uint8_t key[GOSSIP_KEY_LEN];
};

struct gossip_keyring {
	struct gossip_key_slot keys[GOSSIP_KEYRING_MAX]; /* installation order */
	size_t n;
	size_t primary; /* index into keys, valid when n > 0 */
};

int gossip_keyring_new(struct gossip_keyring **ret)
{
	struct gossip_keyring *kr;

	if (sodium_init() < 0)
		return -ENOMEM;
	kr = calloc(1, sizeof(*kr));
	if (!kr)
		return -ENOMEM;
	*ret = kr;
	return 0;
}

void gossip_keyring_free(struct gossip_keyring *kr)
{
	if (!kr)
		return;
	sodium_memzero(kr, sizeof(*kr));
	free(kr);
}

static struct gossip_key_slot *keyring_find(const struct gossip_keyring *kr, uint8_t id,
					    size_t *ret_idx)
{
	for (size_t i = 0; i < kr->n; i++) {
		if (kr->keys[i].id == id) {
			if (ret_idx)
				*ret_idx = i;
			return (struct gossip_key_slot *)&kr->keys[i];
		}
	}
	return NULL;
}

int gossip_keyring_install(struct gossip_keyring *kr, const uint8_t key[GOSSIP_KEY_LEN],
			   uint8_t *ret_id)
{
	uint8_t id = gossip_key_id(key);
	struct gossip_key_slot *s = keyring_find(kr, id, NULL);

	if (s) {
		if (sodium_memcmp(s->key, key, GOSSIP_KEY_LEN) != 0)
			return -EEXIST;
		if (ret_id)
			*ret_id = id;
		return 0;
	}
	if (kr->n >= GOSSIP_KEYRING_MAX)
		return -ENOSPC;
	s = &kr->keys[kr->n];
	s->id = id;
	memcpy(s->key, key, GOSSIP_KEY_LEN);
	if (kr->n == 0)
		kr->primary = 0;
	kr->n++;
	if (ret_id)
		*ret_id = id;
	return 0;
}

int gossip_keyring_use(struct gossip_keyring *kr, uint8_t id)
{
	size_t idx;

	if (!keyring_find(kr, id, &idx))
		return -ENOENT;
	kr->primary = idx;
	return 0;
}

int gossip_keyring_remove(struct gossip_keyring *kr, uint8_t id)
{
	size_t idx;

	if (!keyring_find(kr, id, &idx))
		return -ENOENT;
	if (idx == kr->primary)
		return -EBUSY;
	memmove(&kr->keys[idx], &kr->keys[idx + 1], (kr->n - idx - 1) * sizeof(kr->keys[0]));
	kr->n--;
	sodium_memzero(&kr->keys[kr->n], sizeof(kr->keys[0]));
	if (kr->primary > idx)
		kr->primary--;
	return 0;
}

size_t gossip_keyring_count(const struct gossip_keyring *kr)
{
	return kr->n;
}

int gossip_keyring_primary(const struct gossip_keyring *kr)
{
	if (kr->n == 0)
		return -ENOENT;
	return kr->keys[kr->primary].id;
}

size_t gossip_keyring_list(const struct gossip_keyring *kr, uint8_t *ret_ids, size_t cap)
{
	size_t w = 0;

	if (kr->n == 0)
		return 0;
	if (w < cap)
		ret_ids[w] = kr->keys[kr->primary].id;
	w++;
	for (size_t i = 0; i < kr->n; i++) {
		if (i == kr->primary)
			continue;
		if (w < cap)
			ret_ids[w] = kr->keys[i].id;
		w++;
	}
	return kr->n;
}

bool gossip_keyring_has(const struct gossip_keyring *kr, uint8_t id)
{
	return keyring_find(kr, id, NULL) != NULL;
}

int gossip_keyring_get(const struct gossip_keyring *kr, uint8_t id,
		       uint8_t ret_key[GOSSIP_KEY_LEN])
{
	const struct gossip_key_slot *s = keyring_find(kr, id, NULL);

	if (!s)
		return -ENOENT;
	memcpy(ret_key, s->key, GOSSIP_KEY_LEN);
	return 0;
}

int gossip_keyring_parse(struct gossip_keyring *kr, const char *text, size_t len)
{
	struct gossip_keyring tmp;
	uint8_t key[GOSSIP_KEY_LEN];
	size_t pos = 0;
	int r = 0;

	memset(&tmp, 0, sizeof(tmp));
	if (len > KEYRING_FILE_MAX) {
		r = -EFBIG;
		goto out;
	}
	while (pos < len) {
		size_t start = pos, end;
		const char *nl = memchr(text + pos, '\n', len - pos);

		end = nl ? (size_t)(nl - text) : len;
		pos = nl ? end + 1 : len;
		while (start < end && is_space(text[start]))
			start++;
		if (start == end || text[start] == '#')
			continue;
		r = gossip_key_decode(text + start, end - start, key);
		if (r < 0)
			goto out;
		r = gossip_keyring_install(&tmp, key, NULL);
		if (r < 0)
			goto out;
	}
	if (tmp.n == 0) {
		r = -EINVAL;
		goto out;
	}
	/* The first line is the primary: install made it so (first key of an empty ring). */
	sodium_memzero(kr, sizeof(*kr));
	memcpy(kr, &tmp, sizeof(tmp));
	r = 0;
out:
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&tmp, sizeof(tmp));
	return r;
}

int gossip_keyring_load(struct gossip_keyring *kr, const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if (st.st_size > KEYRING_FILE_MAX) {
		r = -EFBIG;
		goto out;
	}
	/* Read up to one byte past the limit: the file may have grown since fstat. */
	buf = malloc(KEYRING_FILE_MAX + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, KEYRING_FILE_MAX + 1 - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > KEYRING_FILE_MAX) {
			r = -EFBIG;
			goto out;
		}
	}
	r = gossip_keyring_parse(kr, buf, len);
out:
	if (buf) {
		sodium_memzero(buf, KEYRING_FILE_MAX + 1);
		free(buf);
	}
	close(fd);
	return r;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int gossip_keyring_save(const struct gossip_keyring *kr, const char *path)
{
	static const char head[] =
		"# shoal gossip keyring: one base64 key per line, primary first\n";
	char *tmp = NULL, *dir = NULL, *slash;
	char line[GOSSIP_KEY_B64LEN + 2];
	uint8_t ids[GOSSIP_KEYRING_MAX];
	size_t n, plen = strlen(path);
	int fd = -1, dfd, r;

	if (kr->n == 0)
		return -ENOENT;
	tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
	dir = strdup(path);
	if (!tmp || !dir) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", sizeof(".tmp.XXXXXX"));
	fd = mkstemp(tmp);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (fchmod(fd, 0600) < 0) {
		r = -errno;
		goto out_unlink;
	}
	r = write_all(fd, head, sizeof(head) - 1);
	if (r < 0)
		goto out_unlink;
	n = gossip_keyring_list(kr, ids, GOSSIP_KEYRING_MAX);
	for (size_t i = 0; i < n; i++) {
		const struct gossip_key_slot *s = keyring_find(kr, ids[i], NULL);

		gossip_key_encode(s->key, line);
		line[GOSSIP_KEY_B64LEN] = '\n';
		r = write_all(fd, line, GOSSIP_KEY_B64LEN + 1);
		if (r < 0)
			goto out_unlink;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto out_unlink;
	}
	/* Make the rename itself durable. */
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	r = 0;
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	sodium_memzero(line, sizeof(line));
	free(tmp);
	free(dir);
	return r;
}

/* ---- replay windows --------------------------------------------------------------------- */

struct replay_win {
	uint64_t top;
	uint64_t bitmap; /* bit i set: counter top - i accepted */
	bool used;
};

struct replay_entry {
	uint8_t sender[GOSSIP_SENDER_LEN];
	uint64_t hash;
	uint64_t last_used; /* logical time of the last accepted packet */
	struct replay_win win[2]; /* by enum gossip_seal_kind */
	bool used;
};

struct gossip_crypto {
	struct gossip_keyring *kr;
	uint8_t cluster_hash[32];
	uint8_t sender[GOSSIP_SENDER_LEN];
	uint64_t counter;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct replay_entry *tab;
	size_t cap; /* power of two */
	size_t count;
	uint64_t clock;
	struct gossip_crypto_stats stats;
};

#define REPLAY_CAP_MIN 64
#define REPLAY_CAP_MAX (2 * GOSSIP_REPLAY_SENDERS)

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int gossip_crypto_new(struct gossip_keyring *kr, const char *cluster,
		      const uint8_t sender[GOSSIP_SENDER_LEN], uint64_t counter_base,
		      struct gossip_crypto **ret)
{
	struct gossip_crypto *c;

	if (sodium_init() < 0)
		return -ENOMEM;
	if (counter_base == 0)
		counter_base = wall_ms();
	if (counter_base >= (UINT64_C(1) << 43))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->tab = calloc(REPLAY_CAP_MIN, sizeof(*c->tab));
	if (!c->tab) {
		free(c);
		return -ENOMEM;
	}
	c->cap = REPLAY_CAP_MIN;
	c->kr = kr;
	crypto_generichash(c->cluster_hash, sizeof(c->cluster_hash), (const uint8_t *)cluster,
			   strlen(cluster), NULL, 0);
	memcpy(c->sender, sender, GOSSIP_SENDER_LEN);
	c->counter = counter_base << 20;
	randombytes_buf(c->hash_key, sizeof(c->hash_key));
	*ret = c;
	return 0;
}

void gossip_crypto_free(struct gossip_crypto *c)
{
	if (!c)
		return;
	free(c->tab);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

const struct gossip_crypto_stats *gossip_crypto_stats(const struct gossip_crypto *c)
{
	return &c->stats;
}

uint64_t gossip_crypto_next_counter(const struct gossip_crypto *c)
{
	return c->counter;
}

static uint64_t sender_hash(const struct gossip_crypto *c, const uint8_t *sender)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	crypto_shorthash(h, sender, GOSSIP_SENDER_LEN, c->hash_key);
	for (size_t i = 0; i < sizeof(h); i++)
		v = (v << 8) | h[i];
	return v;
}

static struct replay_entry *replay_lookup(const struct gossip_crypto *c, const uint8_t *sender,
					  uint64_t hash)
{
	size_t mask = c->cap - 1;

	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct replay_entry *e = &c->tab[i];

		if (!e->used)
			return NULL;
		if (e->hash == hash && memcmp(e->sender, sender, GOSSIP_SENDER_LEN) == 0)
			return e;
	}
}

/* Place @src (used) into the table without checks; the table has a free slot. */
static struct replay_entry *replay_place(struct replay_entry *tab, size_t cap,
					 const struct replay_entry *src)
{
	size_t mask = cap - 1, i;

	for (i = src->hash & mask; tab[i].used; i = (i + 1) & mask)
		;
	tab[i] = *src;
	return &tab[i];
}

static void replay_delete(struct gossip_crypto *c, size_t i)
{
	size_t mask = c->cap - 1, j = i;

	for (;;) {
		size_t k;

		j = (j + 1) & mask;
		if (!c->tab[j].used)
			break;
		k = c->tab[j].hash & mask;
		/* Entry j may stay if its home k lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		c->tab[i] = c->tab[j];
		i = j;
	}
	memset(&c->tab[i], 0, sizeof(c->tab[i]));
	c->count--;
}

static int replay_grow(struct gossip_crypto *c)
{
	size_t ncap = c->cap * 2;
	struct replay_entry *ntab = calloc(ncap, sizeof(*ntab));

	if (!ntab)
		return -ENOMEM;
	for (size_t i = 0; i < c->cap; i++)
		if (c->tab[i].used)
			replay_place(ntab, ncap, &c->tab[i]);
	free(c->tab);
	c->tab = ntab;
	c->cap = ncap;
	return 0;
}

/* Find or create the entry of @sender; NULL only on -ENOMEM with a full, ungrowable table
 * (cannot happen: eviction makes room), or when growth fails and the table is at its load
 * limit (then the oldest is evicted instead). */
static struct replay_entry *replay_get(struct gossip_crypto *c, const uint8_t *sender,
				       uint64_t hash)
{
	struct replay_entry *e = replay_lookup(c, sender, hash), n;

	if (e)
		return e;
	if (c->count >= GOSSIP_REPLAY_SENDERS ||
	    (c->count + 1 > c->cap / 2 && (c->cap >= REPLAY_CAP_MAX || replay_grow(c) < 0))) {
		size_t oldest = SIZE_MAX;

		for (size_t i = 0; i < c->cap; i++)
			if (c->tab[i].used &&
			    (oldest == SIZE_MAX || c->tab[i].last_used < c->tab[oldest].last_used))
				oldest = i;
		if (oldest == SIZE_MAX)
			return NULL;
		replay_delete(c, oldest);
	}
	memset(&n, 0, sizeof(n));
	memcpy(n.sender, sender, GOSSIP_SENDER_LEN);
	n.hash = hash;
	n.used = true;
	c->count++;
	return replay_place(c->tab, c->cap, &n);
}

static bool window_ok(const struct replay_win *w, uint64_t ctr)
{
	uint64_t diff;

	if (!w->used || ctr > w->top)
		return true;
	diff = w->top - ctr;
	if (diff >= GOSSIP_REPLAY_WINDOW)
		return false;
	return !(w->bitmap & (UINT64_C(1) << diff));
}

static void window_update(struct replay_win *w, uint64_t ctr)
{
	if (!w->used) {
		w->used = true;
		w->top = ctr;
		w->bitmap = 1;
	} else if (ctr > w->top) {
		uint64_t shift = ctr - w->top;

		w->bitmap = shift >= GOSSIP_REPLAY_WINDOW ? 1 : (w->bitmap << shift) | 1;
		w->top = ctr;
	} else {
		w->bitmap |= UINT64_C(1) << (w->top - ctr);
	}
}

/* ---- seal / open ------------------------------------------------------------------------ */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

#define OFF_VER	    0
#define OFF_KID	    1
#define OFF_KIND    2
#define OFF_SENDER  3
#define OFF_COUNTER (OFF_SENDER + GOSSIP_SENDER_LEN)
#define OFF_NONCE   (OFF_COUNTER + 8)
#define AD_LEN	    (GOSSIP_SEAL_HEADER + 32)

_Static_assert(OFF_NONCE + GOSSIP_SEAL_NONCE == GOSSIP_SEAL_HEADER, "header layout");
_Static_assert(8 + GOSSIP_SEAL_NONCE + 8 == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce");
_Static_assert(GOSSIP_SEAL_TAG == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag");
_Static_assert(GOSSIP_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key");

/*
 * The 24-byte XChaCha20 nonce of a packet: its counter, its 8 random bytes and the first 8
 * bytes of its sender id, all from the header. Only the random part travels on its own: the
 * counter already makes (sender, counter) unique per sender (crypto.h), and the random part
 * keeps nonces apart even when that fails (a wall clock set back across a restart, two nodes
 * claiming one id). 16 bytes less per packet than a random 24-byte nonce.
 */
static void make_nonce(const uint8_t *header, uint8_t nonce[24])
{
	memcpy(nonce, header + OFF_COUNTER, 8);
	memcpy(nonce + 8, header + OFF_NONCE, GOSSIP_SEAL_NONCE);
	memcpy(nonce + 8 + GOSSIP_SEAL_NONCE, header + OFF_SENDER, 8);
}

static void make_ad(const struct gossip_crypto *c, const uint8_t *header, uint8_t ad[AD_LEN])
{
	memcpy(ad, header, GOSSIP_SEAL_HEADER);
	memcpy(ad + GOSSIP_SEAL_HEADER, c->cluster_hash, sizeof(c->cluster_hash));
}

int gossip_crypto_seal(struct gossip_crypto *c, enum gossip_seal_kind kind, const uint8_t *plain,
		       size_t len, uint8_t *out, size_t cap, size_t *ret_len)
{
	const struct gossip_key_slot *k;
	uint8_t ad[AD_LEN], nonce[24];
	unsigned long long clen = 0;

	if (kind != GOSSIP_SEAL_DATAGRAM && kind != GOSSIP_SEAL_STREAM)
		return -EINVAL;
	if (c->kr->n == 0)
		return -ENOKEY;
	if (len > GOSSIP_FRAME_MAX - GOSSIP_SEAL_OVERHEAD_BYTES ||
	    cap < len + GOSSIP_SEAL_OVERHEAD_BYTES)
		return -EMSGSIZE;
	k = &c->kr->keys[c->kr->primary];
	out[OFF_VER] = GOSSIP_SEAL_VERSION;
	out[OFF_KID] = k->id;
	out[OFF_KIND] = (uint8_t)kind;
	memcpy(out + OFF_SENDER, c->sender, GOSSIP_SENDER_LEN);
	put_be64(out + OFF_COUNTER, c->counter++);
	randombytes_buf(out + OFF_NONCE, GOSSIP_SEAL_NONCE);
	make_nonce(out, nonce);
	make_ad(c, out, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + GOSSIP_SEAL_HEADER, &clen, plain, len, ad,
						   sizeof(ad), NULL, nonce, k->key);
	c->stats.sealed++;
	*ret_len = GOSSIP_SEAL_HEADER + (size_t)clen;
	return 0;
}

int gossip_crypto_open(struct gossip_crypto *c, enum gossip_seal_kind kind, const uint8_t *pkt,
		       size_t len, uint8_t *out, size_t cap, size_t *ret_len,
		       uint8_t ret_sender[GOSSIP_SENDER_LEN])
{
	const struct gossip_key_slot *k;
	struct replay_entry *e;
	uint8_t ad[AD_LEN], nonce[24];
	unsigned long long mlen = 0;
	uint64_t ctr, hash;

	if (len < GOSSIP_SEAL_OVERHEAD_BYTES || len > GOSSIP_FRAME_MAX) {
		c->stats.drops[GOSSIP_DROP_TOO_SHORT]++;
		return -EBADMSG;
	}
	if (pkt[OFF_VER] != GOSSIP_SEAL_VERSION || pkt[OFF_KIND] != (uint8_t)kind ||
	    (kind != GOSSIP_SEAL_DATAGRAM && kind != GOSSIP_SEAL_STREAM)) {
		c->stats.drops[GOSSIP_DROP_BAD_VERSION]++;
		return -EBADMSG;
	}
	if (cap < len - GOSSIP_SEAL_OVERHEAD_BYTES)
		return -EMSGSIZE;
	k = keyring_find(c->kr, pkt[OFF_KID], NULL);
	if (!k) {
		c->stats.drops[GOSSIP_DROP_UNKNOWN_KEY]++;
		return -ENOKEY;
	}
	if (memcmp(pkt + OFF_SENDER, c->sender, GOSSIP_SENDER_LEN) == 0) {
		c->stats.drops[GOSSIP_DROP_SELF]++;
		return -ELOOP;
	}
	ctr = get_be64(pkt + OFF_COUNTER);
	hash = sender_hash(c, pkt + OFF_SENDER);
	e = replay_lookup(c, pkt + OFF_SENDER, hash);
	if (e && !window_ok(&e->win[kind], ctr)) {
		c->stats.drops[GOSSIP_DROP_REPLAY]++;
		return -EALREADY;
	}
	make_nonce(pkt, nonce);
	make_ad(c, pkt, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, pkt + GOSSIP_SEAL_HEADER,
						       len - GOSSIP_SEAL_HEADER, ad, sizeof(ad),
						       nonce, k->key) != 0) {
		c->stats.drops[GOSSIP_DROP_AUTH]++;
		return -EKEYREJECTED;
	}
	e = replay_get(c, pkt + OFF_SENDER, hash);
	if (e) {
		window_update(&e->win[kind], ctr);
		e->last_used = ++c->clock;
	}
	c->stats.opened++;
	if (ret_len)
		*ret_len = (size_t)mlen;
	if (ret_sender)
		memcpy(ret_sender, pkt + OFF_SENDER, GOSSIP_SENDER_LEN);
	return 0;
}

/* ---- frames ----------------------------------------------------------------------------- */

void gossip_frame_put_len(uint8_t out[GOSSIP_FRAME_PREFIX], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

int gossip_frame_parse(const uint8_t *buf, size_t len, size_t *ret_need)
{
	uint32_t flen;

	if (len < GOSSIP_FRAME_PREFIX) {
		*ret_need = GOSSIP_FRAME_PREFIX;
		return 0;
	}
	flen = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (flen < GOSSIP_SEAL_OVERHEAD_BYTES || flen > GOSSIP_FRAME_MAX)
		return -EMSGSIZE;
	*ret_need = GOSSIP_FRAME_PREFIX + (size_t)flen;
	return len >= *ret_need ? 1 : 0;
}
