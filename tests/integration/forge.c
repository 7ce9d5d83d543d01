/*
 * tests/integration/forge.c: an insider holding ONLY the cluster key (no node key of the
 * cluster), for brain_forge.sh. It seals gossip packets with the cluster key and sends them
 * to one agent's UDP port, each carrying records owned by whatever node id it likes: what
 * any cluster key holder can do (agent/base/sign.h, "Trust model"). It never talks to the
 * agents in any other way.
 *
 *   forge KEYRING CLUSTER ADDR:PORT vote OWNER_HEX SERVICE REV SUBJECT TARGET
 *       a vote record in OWNER's name against (SERVICE, REV, SUBJECT), signed with a key of
 *       the forger's own (the owner's key is not known to it)
 *   forge KEYRING CLUSTER ADDR:PORT rollback MODE SERVICE BAD_REV SUBJECT GOOD_HEX BAD_HEX
 *         ID_HEX,ID_HEX,...
 *       a cluster rollback of BAD_REV to artifact GOOD (condemning BAD) whose electorate and
 *       certificate are the given node ids. MODE nosig: the certificate carries no signed
 *       votes; forged: each voter's vote is signed with a key of the forger's choosing and the
 *       electorate carries those keys (so the record is consistent in itself); sybil: the
 *       electorate is two fresh identities the forger first joins with roster records of its
 *       own keys (trust on first join binds them), and the subject is random.
 *
 *   forge KEYRING CLUSTER ADDR:PORT roster OWNER_HEX
 *       a roster record in OWNER's name saying it left, self-signed with a key of the
 *       forger's own (an impersonation of a node whose key is already bound)
 *   forge KEYRING CLUSTER ADDR:PORT rotate OWNER_HEX BOUND_KEY_HEX
 *       a roster record in OWNER's name with a key of the forger's own and a rotation
 *       statement naming OWNER's bound key as the former one, but not signed by it (a
 *       rotation only the holder of the bound key can make)
 *
 *   forge KEYRING CLUSTER ADDR:PORT leave OWNER_HEX
 *       the gossip layer's "OWNER left the cluster" (unsigned: any key holder can send it)
 *
 *   forge KEYRING CLUSTER ADDR:PORT health OWNER_HEX SERVICE REV
 *       a health record in OWNER's name saying it runs REV and failed, signed with a key of
 *       the forger's own and stamped an hour ahead
 *
 *   forge KEYRING CLUSTER ADDR:PORT ep MODE OWNER_HEX SERVICE ADDR PORT
 *       an endpoint record (ep/SERVICE, agent/fleet/endpoints.h) in OWNER's name saying its
 *       endpoint is ADDR:PORT and draining, stamped an hour ahead: what every load balancer
 *       would route to. MODE rogue: signed with a key of the forger's own; nosig: the older,
 *       unsigned form (version 3)
 *
 *   forge KEYRING CLUSTER ADDR:PORT remove MODE NODE_HEX REASON
 *       a remove record of NODE under a fresh writer id: MODE nosig (no operator statement),
 *       rogue (signed by an operator key of the forger's own) or an operator key FILE
 *
 * Each packet is sent 3 times, 100 ms apart, with a fresh random sender id and record versions
 * above anything a real node writes (an hour ahead; FORGE_VERSION=max: 2^64 - 1). Exit 0
 * when sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/agree/agree.h"
#include "agent/base/sign.h"
#include "agent/fleet/endpoints.h"
#include "agent/fleet/records.h"
#include "gossip/crypto.h"
#include "gossip/proto.h"

static struct gossip_crypto *crypto;
static uint8_t sender[GOSSIP_SENDER_LEN];
static int sock = -1;
static struct sockaddr_in to;

static int hex_id(const char *s, uint8_t *out, size_t n)
{
	return sodium_hex2bin(out, n, s, strlen(s), NULL, NULL, NULL) == 0 &&
			       strlen(s) == 2 * n
		       ? 0
		       : -1;
}

static int send_msg(const struct gossip_msg *mp);

/* One packet with one RECORD message, sealed and sent. */
static int send_record(const uint8_t owner[16], const char *key, const uint8_t *val, size_t vlen)
{
	static uint64_t version;
	/* an hour ahead of every real node's (wall-clock ms) versions, under the 30-day ceiling
	 * (gossip_set_version_ceiling); FORGE_VERSION=max: 2^64 - 1, which would stick for good
	 * without it */
	const char *fv = getenv("FORGE_VERSION");
	if (fv && strcmp(fv, "max") == 0)
		version = UINT64_MAX - 1;
	else if (!version)
		version = ((uint64_t)time(NULL) + 3600) * 1000;
	struct gossip_msg m = {
		.type = GOSSIP_MSG_RECORD,
		.id = owner,
		.num = ++version,
		.blob = (const uint8_t *)key,
		.blob_len = strlen(key),
		.value = val,
		.value_len = vlen,
	};
	return send_msg(&m);
}

/* leave OWNER_HEX: the gossip layer's "OWNER left" (a DEAD message whose accuser is the
 * member itself, as gossip_leave sends it), at an incarnation above anything real */
static int forge_leave(char **a)
{
	uint8_t owner[16];
	if (hex_id(a[0], owner, 16) < 0)
		return 2;
	struct gossip_msg m = {.type = GOSSIP_MSG_DEAD, .id = owner, .accuser = owner,
			       .num = (uint64_t)time(NULL) << 20};
	return send_msg(&m) < 0 ? 1 : 0;
}

static int send_msg(const struct gossip_msg *mp)
{
	uint8_t plain[1400], sealed[1500];
	struct gossip__w w;
	size_t slen;
	struct gossip_msg m = *mp;
	gossip__w_init(&w, plain, sizeof plain);
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, sender, GOSSIP_SENDER_LEN);
	gossip__w_array(&w, 1);
	if (gossip__msg_put(&w, &m) < 0 || w.err)
		return -EMSGSIZE;
	int r = gossip_crypto_seal(crypto, GOSSIP_SEAL_DATAGRAM, plain, w.len, sealed,
				   sizeof sealed, &slen);
	if (r < 0)
		return r;
	if (sendto(sock, sealed, slen, 0, (struct sockaddr *)&to, sizeof to) < 0)
		return -errno;
	return 0;
}

static int put(const uint8_t owner[16], const struct fleet_key *k, uint8_t *val, size_t len)
{
	char key[FLEET_REC_KEY_MAX + 1];
	int n = fleet_key_format(k, key, sizeof key);
	int r = n < 0 ? n : send_record(owner, key, val, len);
	free(val);
	if (r < 0)
		fprintf(stderr, "forge: cannot send %s: %s\n", n < 0 ? "?" : key, strerror(-r));
	return r;
}

static int forge_vote(char **a)
{
	uint8_t owner[16], msg[AGREE_VOTE_MSG_MAX], *val;
	size_t len;
	struct store_vote v;
	struct sign_key mine;
	if (hex_id(a[0], owner, 16) < 0)
		return 2;
	memset(&v, 0, sizeof v);
	snprintf(v.service, sizeof v.service, "%s", a[1]);
	v.rev = strtoull(a[2], NULL, 10);
	v.subject = strtoull(a[3], NULL, 10);
	v.target = strtoull(a[4], NULL, 10);
	memcpy(v.voter, owner, 16);
	v.reason = STORE_VOTE_OPERATOR;
	v.hlc = ((uint64_t)time(NULL) * 1000 + 5000) << 16;
	sign_key_random(&mine);
	sign_detached(&mine, msg, agree_vote_msg(&v, msg), v.sig);
	if (fleet_vote_encode(&v, &val, &len) < 0)
		return 2;
	struct fleet_key k = {.type = FLEET_REC_VOTE, .rev = v.rev};
	snprintf(k.service, sizeof k.service, "%s", v.service);
	return put(owner, &k, val, len) < 0 ? 1 : 0;
}

static int forge_roster(char **a)
{
	uint8_t owner[16], msg[FLEET_ROSTER_MSG_MAX], *val;
	size_t len;
	struct fleet_roster ro;
	static struct sign_key mine;
	static bool have;
	if (hex_id(a[0], owner, 16) < 0)
		return 2;
	if (!have)
		sign_key_random(&mine);
	have = true;
	memset(&ro, 0, sizeof ro);
	ro.hlc = ((uint64_t)time(NULL) * 1000 + 60000) << 16;
	ro.left = true;	/* "n1 left": would take it off every later electorate */
	memcpy(ro.key, mine.pk, STORE_KEY_LEN);
	sign_detached(&mine, msg, fleet_roster_msg(owner, &ro, msg), ro.sig);
	if (fleet_roster_encode(&ro, &val, &len) < 0)
		return 2;
	struct fleet_key k = {.type = FLEET_REC_ROSTER};
	return put(owner, &k, val, len) < 0 ? 1 : 0;
}

/* health OWNER_HEX SERVICE REV: OWNER "runs REV and failed", signed with a key of the
 * forger's own, stamped an hour ahead (it would win over anything the owner signs) */
static int forge_health(char **a)
{
	uint8_t owner[16], msg[FLEET_HEALTH_MSG_MAX], *val;
	size_t len;
	struct fleet_health h;
	struct sign_key mine;
	if (hex_id(a[0], owner, 16) < 0)
		return 2;
	sign_key_random(&mine);
	memset(&h, 0, sizeof h);
	snprintf(h.service, sizeof h.service, "%s", a[1]);
	h.running_rev = h.desired_rev = strtoull(a[2], NULL, 10);
	h.state = 3;	/* HEALTH_FAILED */
	h.missed = true;
	h.since_hlc = h.stamp = ((uint64_t)time(NULL) * 1000 + 3600000) << 16;
	sign_detached(&mine, msg, fleet_health_msg(owner, &h, msg), h.sig);
	if (fleet_health_encode(&h, &val, &len) < 0)
		return 2;
	struct fleet_key k = {.type = FLEET_REC_HEALTH};
	snprintf(k.service, sizeof k.service, "%s", h.service);
	return put(owner, &k, val, len) < 0 ? 1 : 0;
}

/* ep MODE OWNER_HEX SERVICE ADDR PORT (above) */
static int forge_ep(char **a)
{
	uint8_t owner[16], msg[FLEET_EP_MSG_MAX], *val;
	size_t len;
	struct fleet_endpoint e;
	struct sign_key mine;
	char key[80];
	bool nosig = strcmp(a[0], "nosig") == 0;
	if ((!nosig && strcmp(a[0], "rogue") != 0) || hex_id(a[1], owner, 16) < 0 ||
	    fleet_ep_key_format(a[2], key, sizeof key) < 0)
		return 2;
	memset(&e, 0, sizeof e);
	snprintf(e.node, sizeof e.node, "forged");
	snprintf(e.service, sizeof e.service, "%s", a[2]);
	snprintf(e.addr, sizeof e.addr, "%s", a[3]);
	e.port = (uint16_t)atoi(a[4]);
	e.weight = 256;
	e.protocol = STORE_ENDPOINT_HTTP;
	e.state = FLEET_EP_DRAINING;
	e.rev = 1;
	e.hlc = e.stamp = ((uint64_t)time(NULL) * 1000 + 3600000) << 16;
	if (!nosig) {
		sign_key_random(&mine);
		sign_detached(&mine, msg, fleet_endpoint_msg(owner, &e, msg), e.sig);
	}
	if (fleet_endpoint_encode(&e, &val, &len) < 0)
		return 2;
	if (nosig) {	/* the older form: the ten fields, version 3 */
		val[1] = FLEET_REC_VERSION;
		val[3] = 0x9a;
		len -= 2 + STORE_SIG_LEN + 9;
	}
	int r = send_record(owner, key, val, len);
	free(val);
	if (r < 0)
		fprintf(stderr, "forge: cannot send %s: %s\n", key, strerror(-r));
	return r < 0 ? 1 : 0;
}

/*
 * remove MODE NODE_HEX REASON: a remove record of NODE, written under a fresh id of the
 * forger's. MODE nosig: no operator statement; rogue: a statement signed by an operator key
 * of the forger's own (trusted nowhere); FILE (an operator key file): signed with it.
 */
static int forge_remove(char **a)
{
	static uint8_t writer[16];
	static bool have;
	struct fleet_remove x;
	struct fleet_key k = {.type = FLEET_REC_REMOVE};
	uint8_t *val;
	size_t len;
	if (hex_id(a[1], k.node, 16) < 0)
		return 2;
	if (!have)
		randombytes_buf(writer, sizeof writer);
	have = true;
	memset(&x, 0, sizeof x);
	x.hlc = ((uint64_t)time(NULL) * 1000 + 60000) << 16;
	x.uid = 0;
	x.pid = 1;
	snprintf(x.reason, sizeof x.reason, "%s", a[2]);
	if (strcmp(a[0], "nosig") != 0) {
		struct sign_key op;
		struct sign_op so = {.kind = SIGN_OP_REMOVE};
		char idhex[33];
		uint8_t dg[32];
		if (strcmp(a[0], "rogue") == 0)
			sign_key_random(&op);
		else if (sign_operator_key_load(a[0], &op) < 0)
			return 2;
		sign_op_remove_subject(k.node, x.reason, idhex, dg);
		sign_op_sign(&op, idhex, dg, &so);
		x.op.kind = so.kind;
		x.op.ts_ms = so.ts_ms;
		memcpy(x.op.nonce, so.nonce, sizeof so.nonce);
		memcpy(x.op.key, so.key, sizeof so.key);
		memcpy(x.op.sig, so.sig, sizeof so.sig);
	}
	if (fleet_remove_encode(&x, &val, &len) < 0)
		return 2;
	return put(writer, &k, val, len) < 0 ? 1 : 0;
}

static int forge_rotate(char **a)
{
	uint8_t owner[16], msg[FLEET_ROSTER_MSG_MAX], *val;
	size_t len;
	struct fleet_roster ro;
	static struct sign_key mine;
	static bool have;
	memset(&ro, 0, sizeof ro);
	if (hex_id(a[0], owner, 16) < 0 || hex_id(a[1], ro.rot_prev, STORE_KEY_LEN) < 0)
		return 2;
	if (!have)
		sign_key_random(&mine);
	have = true;
	ro.hlc = ((uint64_t)time(NULL) * 1000 + 60000) << 16;
	ro.left = true;
	memcpy(ro.key, mine.pk, STORE_KEY_LEN);
	sign_detached(&mine, msg, fleet_roster_msg(owner, &ro, msg), ro.sig);
	ro.has_rot = true;
	/* the forger signs the rotation itself: it does not hold the bound key */
	sign_rotate_sign(&mine, owner, mine.pk, ro.rot_sig);
	if (fleet_roster_encode(&ro, &val, &len) < 0)
		return 2;
	struct fleet_key k = {.type = FLEET_REC_ROSTER};
	return put(owner, &k, val, len) < 0 ? 1 : 0;
}

static int forge_rollback(char **a)
{
	bool sybil = strcmp(a[0], "sybil") == 0;
	bool sigs = sybil || strcmp(a[0], "forged") == 0;
	struct store_revision r;
	static struct sign_key keys[16];
	static bool have_keys;
	uint8_t writer[16], *val;
	size_t len;
	uint32_t n = 0;
	memset(&r, 0, sizeof r);
	snprintf(r.service, sizeof r.service, "%s", a[1]);
	uint64_t bad = strtoull(a[2], NULL, 10);
	r.rev = bad + 1;
	r.kind = STORE_REV_ROLLBACK;
	r.cert_subject = strtoull(a[3], NULL, 10);
	if (store_id_parse(a[4], &r.artifact) < 0 || store_id_parse(a[5], &r.condemns) < 0)
		return 2;
	r.elect = calloc(16, STORE_NODE_ID_LEN);
	r.cert = calloc(16, STORE_NODE_ID_LEN);
	r.elect_keys = calloc(16, STORE_KEY_LEN);
	r.cert_sigs = sigs ? calloc(16, sizeof *r.cert_sigs) : NULL;
	char ids[16 * 33 + 1];
	static uint8_t fresh[2][16];
	snprintf(ids, sizeof ids, "%s", a[6]);	/* called once per send: keep a[6] intact */
	if (!have_keys) {
		for (int i = 0; i < 16; i++)
			sign_key_random(&keys[i]);
		randombytes_buf(fresh, sizeof fresh);
		have_keys = true;
	}
	struct sign_key kk[16];	/* sorted with the ids below; keys[] stays as made */
	memcpy(kk, keys, sizeof kk);
	if (sybil) {
		/* two identities of its own, joined by self-signed roster records (trust on
		 * first join binds them), as the whole electorate of the rollback */
		for (int i = 0; i < 2; i++) {
			struct fleet_roster ro;
			uint8_t m[FLEET_ROSTER_MSG_MAX], *rv;
			size_t rl;
			memset(&ro, 0, sizeof ro);
			ro.hlc = ((uint64_t)time(NULL) * 1000) << 16;
			memcpy(ro.key, keys[i].pk, STORE_KEY_LEN);
			sign_detached(&keys[i], m, fleet_roster_msg(fresh[i], &ro, m), ro.sig);
			struct fleet_key rk = {.type = FLEET_REC_ROSTER};
			if (fleet_roster_encode(&ro, &rv, &rl) < 0 || put(fresh[i], &rk, rv, rl) < 0)
				return 1;
			memcpy(r.elect[n++], fresh[i], 16);
		}
		usleep(300000);	/* the roster first */
		randombytes_buf(&r.cert_subject, sizeof r.cert_subject);
	}
	for (char *t = strtok(ids, ","); t && n < 16 && !sybil; t = strtok(NULL, ","), n++)
		if (hex_id(t, r.elect[n], 16) < 0)
			return 2;
	/* sorted, as every electorate (each id keeps its key) */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && memcmp(r.elect[j - 1], r.elect[j], 16) > 0; j--) {
			uint8_t t[16];
			struct sign_key tk;
			memcpy(t, r.elect[j], 16);
			memcpy(r.elect[j], r.elect[j - 1], 16);
			memcpy(r.elect[j - 1], t, 16);
			tk = kk[j];
			kk[j] = kk[j - 1];
			kk[j - 1] = tk;
		}
	r.nelect = r.ncert = n;
	memcpy(r.cert, r.elect, (size_t)n * 16);
	r.hlc = ((uint64_t)time(NULL) * 1000) << 16;
	r.operator_uid = UINT32_MAX;
	snprintf(r.reason, sizeof r.reason, "cluster rollback of rev %llu (quorum)",
		 (unsigned long long)bad);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(r.elect_keys[i], kk[i].pk, STORE_KEY_LEN);
		if (!sigs)
			continue;
		struct store_vote v;
		uint8_t msg[AGREE_VOTE_MSG_MAX];
		memset(&v, 0, sizeof v);
		snprintf(v.service, sizeof v.service, "%s", r.service);
		v.rev = bad;
		memcpy(v.voter, r.cert[i], 16);
		v.reason = STORE_VOTE_OPERATOR;
		v.hlc = r.hlc + i;
		v.subject = r.cert_subject;
		r.cert_sigs[i].hlc = v.hlc;
		r.cert_sigs[i].reason = STORE_VOTE_OPERATOR;
		sign_detached(&kk[i], msg, agree_vote_msg(&v, msg), r.cert_sigs[i].sig);
	}
	/* the forger writes it as its own record, like every node that decides a rollback */
	randombytes_buf(writer, sizeof writer);
	int e = 0;
	for (uint32_t i = 0; i < fleet_cert_chunks(r.ncert) && !e; i++) {
		struct fleet_key k = {.type = FLEET_REC_CERT, .rev = r.rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r.service);
		e = fleet_cert_encode(&r, i, &val, &len) < 0 || put(writer, &k, val, len) < 0;
	}
	for (uint32_t i = 0; i < fleet_elect_chunks(r.nelect) && !e; i++) {
		struct fleet_key k = {.type = FLEET_REC_ELECT, .rev = r.rev, .chunk = i};
		snprintf(k.service, sizeof k.service, "%s", r.service);
		e = fleet_elect_encode(&r, i, &val, &len) < 0 || put(writer, &k, val, len) < 0;
	}
	if (!e) {
		struct fleet_key k = {.type = FLEET_REC_REV, .rev = r.rev};
		snprintf(k.service, sizeof k.service, "%s", r.service);
		e = fleet_rev_encode(&r, &val, &len) < 0 || put(writer, &k, val, len) < 0;
	}
	store_revision_release(&r);
	return e ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct gossip_keyring *kr;
	if (argc < 5 || sodium_init() < 0) {
		fprintf(stderr, "usage: forge KEYRING CLUSTER ADDR:PORT vote|rollback ...\n");
		return 2;
	}
	char host[64];
	snprintf(host, sizeof host, "%s", argv[3]);
	char *colon = strrchr(host, ':');
	if (!colon)
		return 2;
	*colon = 0;
	memset(&to, 0, sizeof to);
	to.sin_family = AF_INET;
	to.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &to.sin_addr) != 1)
		return 2;
	sock = socket(AF_INET, SOCK_DGRAM, 0);
	randombytes_buf(sender, sizeof sender);
	if (sock < 0 || gossip_keyring_new(&kr) < 0 || gossip_keyring_load(kr, argv[1]) < 0 ||
	    gossip_crypto_new(kr, argv[2], sender, 0, &crypto) < 0) {
		fprintf(stderr, "forge: cannot load the keyring %s\n", argv[1]);
		return 2;
	}
	int rc = 2;
	for (int i = 0; i < 3; i++) {
		if (strcmp(argv[4], "vote") == 0 && argc == 10)
			rc = forge_vote(argv + 5);
		else if (strcmp(argv[4], "rollback") == 0 && argc == 12)
			rc = forge_rollback(argv + 5);
		else if (strcmp(argv[4], "roster") == 0 && argc == 6)
			rc = forge_roster(argv + 5);
		else if (strcmp(argv[4], "leave") == 0 && argc == 6)
			rc = forge_leave(argv + 5);
		else if (strcmp(argv[4], "health") == 0 && argc == 8)
			rc = forge_health(argv + 5);
		else if (strcmp(argv[4], "remove") == 0 && argc == 8)
			rc = forge_remove(argv + 5);
		else if (strcmp(argv[4], "rotate") == 0 && argc == 7)
			rc = forge_rotate(argv + 5);
		else if (strcmp(argv[4], "ep") == 0 && argc == 10)
			rc = forge_ep(argv + 5);
		if (rc)
			break;
		usleep(100000);
	}
	gossip_crypto_free(crypto);
	gossip_keyring_free(kr);
	close(sock);
	return rc;
}
