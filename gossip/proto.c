/*
 * gossip/proto.c: the strict msgpack subset the gossip protocol speaks (see proto.h).
 *
 * Why hand-rolled rather than msgpack_unpack(): the decoder sits on the network path of every
 * node and must be bounded and allocation-free: it never allocates, reads each byte at most a
 * fixed number of times and validates a whole packet before the core applies any of it. The
 * bytes are ordinary msgpack; any msgpack library can read them.
 */
#include <errno.h>
#include <string.h>

#include "gossip/proto.h"

void gossip__w_init(struct gossip__w *w, uint8_t *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap;
	w->len = 0;
	w->err = 0;
}

static uint8_t *w_room(struct gossip__w *w, size_t n)
{
	if (w->err || n > w->cap - w->len) {
		w->err = -EMSGSIZE;
		return NULL;
	}
	uint8_t *p = w->buf + w->len;
	w->len += n;
	return p;
}

static void be_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t be_get(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void w_tagged(struct gossip__w *w, uint8_t tag, uint64_t v, int n)
{
	uint8_t *p = w_room(w, 1 + (size_t)n);
	if (!p)
		return;
	p[0] = tag;
	be_put(p + 1, v, n);
}

void gossip__w_uint(struct gossip__w *w, uint64_t v)
{
	if (v < 0x80)
		w_tagged(w, (uint8_t)v, 0, 0);
	else if (v <= 0xff)
		w_tagged(w, 0xcc, v, 1);
	else if (v <= 0xffff)
		w_tagged(w, 0xcd, v, 2);
	else if (v <= 0xffffffffu)
		w_tagged(w, 0xce, v, 4);
	else
		w_tagged(w, 0xcf, v, 8);
}

void gossip__w_nil(struct gossip__w *w)
{
	w_tagged(w, 0xc0, 0, 0);
}

static void w_raw(struct gossip__w *w, const void *p, size_t len)
{
	uint8_t *d = w_room(w, len);
	if (d && len)
		memcpy(d, p, len);
}

void gossip__w_bin(struct gossip__w *w, const void *p, size_t len)
{
	if (len <= 0xff)
		w_tagged(w, 0xc4, len, 1);
	else if (len <= 0xffff)
		w_tagged(w, 0xc5, len, 2);
	else
		w_tagged(w, 0xc6, len, 4);
	w_raw(w, p, len);
}

void gossip__w_str(struct gossip__w *w, const void *p, size_t len)
{
	if (len < 32)
		w_tagged(w, (uint8_t)(0xa0 | len), 0, 0);
	else if (len <= 0xff)
		w_tagged(w, 0xd9, len, 1);
	else if (len <= 0xffff)
		w_tagged(w, 0xda, len, 2);
	else
		w_tagged(w, 0xdb, len, 4);
	w_raw(w, p, len);
}

void gossip__w_array(struct gossip__w *w, uint32_t n)
{
	if (n < 16)
		w_tagged(w, (uint8_t)(0x90 | n), 0, 0);
	else if (n <= 0xffff)
		w_tagged(w, 0xdc, n, 2);
	else
		w_tagged(w, 0xdd, n, 4);
}

size_t gossip__w_array32(struct gossip__w *w)
{
	size_t at = w->len;
	w_tagged(w, 0xdd, 0, 4);
	return at;
}

void gossip__w_array_patch(struct gossip__w *w, size_t at, uint32_t n)
{
	if (w->err || at + 5 > w->len)
		return;
	be_put(w->buf + at + 1, n, 4);
}

static size_t addr_iplen(uint8_t family)
{
	return family == GOSSIP_AF_INET ? 4 : family == GOSSIP_AF_INET6 ? 16 : 0;
}

void gossip__w_addr(struct gossip__w *w, const struct gossip_addr *a)
{
	uint8_t b[19];
	size_t n = addr_iplen(a->family);
	b[0] = a->family;
	be_put(b + 1, a->port, 2);
	memcpy(b + 3, a->ip, n);
	gossip__w_bin(w, b, 3 + n);
}

/* Size of a uint / bin / str / array header as gossip_w_* writes it. */
static size_t sz_uint(uint64_t v)
{
	return v < 0x80 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static size_t sz_bin(size_t len)
{
	return len + (len <= 0xff ? 2 : len <= 0xffff ? 3 : 5);
}

static size_t sz_str(size_t len)
{
	return len + (len < 32 ? 1 : len <= 0xff ? 2 : len <= 0xffff ? 3 : 5);
}

size_t gossip__msg_size(const struct gossip_msg *m)
{
	switch (m->type) {
	case GOSSIP_MSG_PING:
		return 1 + 1 + sz_uint(m->seq) + (m->id ? sz_bin(GOSSIP_ID_LEN) : 1) +
		       sz_uint(m->num);
	case GOSSIP_MSG_ACK:
	case GOSSIP_MSG_NACK:
		return 1 + 1 + sz_uint(m->seq);
	case GOSSIP_MSG_PINGREQ:
		return 1 + 1 + sz_uint(m->seq) + sz_bin(GOSSIP_ID_LEN) +
		       sz_bin(3 + addr_iplen(m->addr.family));
	case GOSSIP_MSG_ALIVE:
		return 1 + 1 + sz_bin(GOSSIP_ID_LEN) + sz_uint(m->num) + sz_str(m->name_len) +
		       sz_bin(3 + addr_iplen(m->addr.family)) + sz_bin(m->blob_len);
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		return 1 + 1 + 2 * sz_bin(GOSSIP_ID_LEN) + sz_uint(m->num);
	case GOSSIP_MSG_RECORD:
		return 1 + 1 + sz_bin(GOSSIP_ID_LEN) + sz_bin(m->blob_len) + sz_uint(m->num) +
		       sz_bin(m->value_len);
	default:
		return SIZE_MAX;
	}
}

int gossip__msg_put(struct gossip__w *w, const struct gossip_msg *m)
{
	size_t need = gossip__msg_size(m);
	if (w->err || need > w->cap - w->len)
		return -EMSGSIZE;
	switch (m->type) {
	case GOSSIP_MSG_PING:
		gossip__w_array(w, 4);
		gossip__w_uint(w, m->type);
		gossip__w_uint(w, m->seq);
		if (m->id)
			gossip__w_bin(w, m->id, GOSSIP_ID_LEN);
		else
			gossip__w_nil(w);
		gossip__w_uint(w, m->num);
		break;
	case GOSSIP_MSG_ACK:
	case GOSSIP_MSG_NACK:
		gossip__w_array(w, 2);
		gossip__w_uint(w, m->type);
		gossip__w_uint(w, m->seq);
		break;
	case GOSSIP_MSG_PINGREQ:
		gossip__w_array(w, 4);
		gossip__w_uint(w, m->type);
		gossip__w_uint(w, m->seq);
		gossip__w_bin(w, m->id, GOSSIP_ID_LEN);
		gossip__w_addr(w, &m->addr);
		break;
	case GOSSIP_MSG_ALIVE:
		gossip__w_array(w, 6);
		gossip__w_uint(w, m->type);
		gossip__w_bin(w, m->id, GOSSIP_ID_LEN);
		gossip__w_uint(w, m->num);
		gossip__w_str(w, m->name, m->name_len);
		gossip__w_addr(w, &m->addr);
		gossip__w_bin(w, m->blob, m->blob_len);
		break;
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		gossip__w_array(w, 4);
		gossip__w_uint(w, m->type);
		gossip__w_bin(w, m->id, GOSSIP_ID_LEN);
		gossip__w_uint(w, m->num);
		gossip__w_bin(w, m->accuser, GOSSIP_ID_LEN);
		break;
	case GOSSIP_MSG_RECORD:
		gossip__w_array(w, 5);
		gossip__w_uint(w, m->type);
		gossip__w_bin(w, m->id, GOSSIP_ID_LEN);
		gossip__w_bin(w, m->blob, m->blob_len);
		gossip__w_uint(w, m->num);
		gossip__w_bin(w, m->value, m->value_len);
		break;
	default:
		return -EINVAL;
	}
	return w->err;
}

/* ---- reader ---- */

int gossip__r_uint(const uint8_t **pos, const uint8_t *end, uint64_t *ret)
{
	const uint8_t *p = *pos;
	if (p >= end)
		return -EBADMSG;
	uint8_t t = *p++;
	int n;
	if (t < 0x80) {
		*ret = t;
		*pos = p;
		return 0;
	}
	switch (t) {
	case 0xcc: n = 1; break;
	case 0xcd: n = 2; break;
	case 0xce: n = 4; break;
	case 0xcf: n = 8; break;
	default: return -EBADMSG;
	}
	if (end - p < n)
		return -EBADMSG;
	*ret = be_get(p, n);
	*pos = p + n;
	return 0;
}

int gossip__r_array(const uint8_t **pos, const uint8_t *end, uint32_t *ret)
{
	const uint8_t *p = *pos;
	if (p >= end)
		return -EBADMSG;
	uint8_t t = *p++;
	int n;
	if ((t & 0xf0) == 0x90) {
		*ret = t & 0x0f;
		*pos = p;
		return 0;
	}
	if (t == 0xdc)
		n = 2;
	else if (t == 0xdd)
		n = 4;
	else
		return -EBADMSG;
	if (end - p < n)
		return -EBADMSG;
	*ret = (uint32_t)be_get(p, n);
	*pos = p + n;
	return 0;
}

int gossip__r_bytes(const uint8_t **pos, const uint8_t *end, bool str, size_t max,
		   const uint8_t **ret, size_t *ret_len)
{
	const uint8_t *p = *pos;
	if (p >= end)
		return -EBADMSG;
	uint8_t t = *p++;
	int n;
	uint64_t len;
	if (str && (t & 0xe0) == 0xa0) {
		n = 0;
		len = t & 0x1f;
	} else if (t == (str ? 0xd9 : 0xc4)) {
		n = 1;
	} else if (t == (str ? 0xda : 0xc5)) {
		n = 2;
	} else if (t == (str ? 0xdb : 0xc6)) {
		n = 4;
	} else {
		return -EBADMSG;
	}
	if (n) {
		if (end - p < n)
			return -EBADMSG;
		len = be_get(p, n);
		p += n;
	}
	if (len > max || len > (uint64_t)(end - p))
		return -EBADMSG;
	*ret = p;
	*ret_len = (size_t)len;
	*pos = p + len;
	return 0;
}

int gossip__r_id(const uint8_t **pos, const uint8_t *end, const uint8_t **ret)
{
	size_t len;
	int r = gossip__r_bytes(pos, end, false, GOSSIP_ID_LEN, ret, &len);
	if (r < 0)
		return r;
	return len == GOSSIP_ID_LEN ? 0 : -EBADMSG;
}

int gossip__r_addr(const uint8_t **pos, const uint8_t *end, struct gossip_addr *ret)
{
	const uint8_t *b;
	size_t len;
	int r = gossip__r_bytes(pos, end, false, 19, &b, &len);
	if (r < 0)
		return r;
	if (len < 3)
		return -EBADMSG;
	uint8_t fam = b[0];
	if (fam != GOSSIP_AF_NONE && fam != GOSSIP_AF_INET && fam != GOSSIP_AF_INET6)
		return -EBADMSG;
	if (len != 3 + addr_iplen(fam))
		return -EBADMSG;
	memset(ret, 0, sizeof(*ret));
	ret->family = fam;
	ret->port = (uint16_t)be_get(b + 1, 2);
	memcpy(ret->ip, b + 3, len - 3);
	return 0;
}

bool gossip__r_nil(const uint8_t **pos, const uint8_t *end)
{
	if (*pos < end && **pos == 0xc0) {
		(*pos)++;
		return true;
	}
	return false;
}

static int r_seq(const uint8_t **pos, const uint8_t *end, uint32_t *ret)
{
	uint64_t v;
	if (gossip__r_uint(pos, end, &v) < 0 || v > UINT32_MAX)
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

int gossip__pkt_open(const uint8_t **pos, const uint8_t *end, const uint8_t **ret_sender,
		    uint32_t *ret_nmsgs)
{
	uint32_t n;
	uint64_t ver;
	if (gossip__r_array(pos, end, &n) < 0 || n != 3)
		return -EBADMSG;
	if (gossip__r_uint(pos, end, &ver) < 0)
		return -EBADMSG;
	if (ver != GOSSIP_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (gossip__r_id(pos, end, ret_sender) < 0)
		return -EBADMSG;
	if (gossip__r_array(pos, end, &n) < 0 || n > GOSSIP_PROTO_MAX_MSGS)
		return -EBADMSG;
	*ret_nmsgs = n;
	return 0;
}

/* Skip one element a later protocol revision appended to a message: a uint, nil, bool, bin or
 * str (arrays and maps are not allowed there, so skipping stays flat and bounded). */
static int r_skip(const uint8_t **pos, const uint8_t *end)
{
	const uint8_t *b;
	size_t len;
	uint64_t v;
	if (*pos >= end)
		return -EBADMSG;
	uint8_t t = **pos;
	if (t == 0xc0 || t == 0xc2 || t == 0xc3) {
		(*pos)++;
		return 0;
	}
	if (gossip__r_uint(pos, end, &v) == 0)
		return 0;
	if (gossip__r_bytes(pos, end, false, SIZE_MAX, &b, &len) == 0)
		return 0;
	return gossip__r_bytes(pos, end, true, SIZE_MAX, &b, &len);
}

/* The fields of message @type that this revision knows (after the type), from *pos. Returns
 * how many elements it read, or -EBADMSG. */
static int msg_fields(const uint8_t **pos, const uint8_t *end, uint32_t n, struct gossip_msg *m)
{
	switch (m->type) {
	case GOSSIP_MSG_PING:
		if (n < 4 || r_seq(pos, end, &m->seq) < 0)
			return -EBADMSG;
		if (!gossip__r_nil(pos, end) && gossip__r_id(pos, end, &m->id) < 0)
			return -EBADMSG;
		return gossip__r_uint(pos, end, &m->num) < 0 ? -EBADMSG : 4;
	case GOSSIP_MSG_ACK:
	case GOSSIP_MSG_NACK:
		return r_seq(pos, end, &m->seq) < 0 ? -EBADMSG : 2;
	case GOSSIP_MSG_PINGREQ:
		if (n < 4 || r_seq(pos, end, &m->seq) < 0 || gossip__r_id(pos, end, &m->id) < 0 ||
		    gossip__r_addr(pos, end, &m->addr) < 0)
			return -EBADMSG;
		return 4;
	case GOSSIP_MSG_ALIVE:
		if (n < 6 || gossip__r_id(pos, end, &m->id) < 0 ||
		    gossip__r_uint(pos, end, &m->num) < 0 ||
		    gossip__r_bytes(pos, end, true, GOSSIP_NAME_MAX, &m->name, &m->name_len) < 0 ||
		    gossip__r_addr(pos, end, &m->addr) < 0 ||
		    gossip__r_bytes(pos, end, false, GOSSIP_LABELS_MAX, &m->blob, &m->blob_len) < 0)
			return -EBADMSG;
		return 6;
	case GOSSIP_MSG_SUSPECT:
	case GOSSIP_MSG_DEAD:
		if (n < 4 || gossip__r_id(pos, end, &m->id) < 0 ||
		    gossip__r_uint(pos, end, &m->num) < 0 || gossip__r_id(pos, end, &m->accuser) < 0)
			return -EBADMSG;
		return 4;
	case GOSSIP_MSG_RECORD:
		if (n < 5 || gossip__r_id(pos, end, &m->id) < 0 ||
		    gossip__r_bytes(pos, end, false, GOSSIP_KEY_MAX, &m->blob, &m->blob_len) < 0 ||
		    m->blob_len == 0 || gossip__r_uint(pos, end, &m->num) < 0 ||
		    gossip__r_bytes(pos, end, false, GOSSIP_VALUE_MAX, &m->value, &m->value_len) < 0)
			return -EBADMSG;
		return 5;
	default:
		return -EBADMSG;
	}
}

int gossip__msg_get(const uint8_t **pos, const uint8_t *end, struct gossip_msg *m)
{
	uint32_t n;
	uint64_t type;
	memset(m, 0, sizeof(*m));
	if (gossip__r_array(pos, end, &n) < 0 || n < 2)
		return -EBADMSG;
	if (gossip__r_uint(pos, end, &type) < 0 || type > 0xff)
		return -EBADMSG;
	m->type = (uint8_t)type;
	int got = msg_fields(pos, end, n, m);
	if (got < 0)
		return -EBADMSG;
	/* Fields a later revision appended: each consumes at least one byte, so a count larger
	 * than the packet fails at its end. */
	for (uint32_t i = (uint32_t)got; i < n; i++)
		if (r_skip(pos, end) < 0)
			return -EBADMSG;
	return 0;
}

int gossip__pkt_check(const uint8_t *buf, size_t len)
{
	const uint8_t *pos = buf, *end = buf + len, *sender;
	uint32_t n;
	struct gossip_msg m;
	int r = gossip__pkt_open(&pos, end, &sender, &n);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < n; i++)
		if (gossip__msg_get(&pos, end, &m) < 0)
			return -EBADMSG;
	if (pos != end)
		return -EBADMSG;
	return (int)n;
}

int gossip__sync_open(const uint8_t **pos, const uint8_t *end, int type, uint32_t n,
		      const uint8_t **ret_sender)
{
	uint32_t cnt;
	uint64_t v;
	if (gossip__r_array(pos, end, &cnt) < 0 || cnt != n || gossip__r_uint(pos, end, &v) < 0)
		return -EBADMSG;
	if (v != GOSSIP_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (gossip__r_uint(pos, end, &v) < 0 || v != (uint64_t)type)
		return -EBADMSG;
	return gossip__r_id(pos, end, ret_sender);
}

/* FNV-1a with a splitmix64 finaliser: cheap, and good enough for table buckets and digests
 * (the packets are authenticated, so collision flooding needs the cluster key). */
uint64_t gossip__hash64(const void *p, size_t len, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}
