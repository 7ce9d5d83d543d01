/*
 * tests/unit/test_gossip_members.c: the member table of the gossip core (gossip/swim.c) as
 * storage: every field of struct gossip_member comes back as it went in (names short, at the
 * inline limit and long, labels or none, every state), through restore, the network and
 * anti-entropy; reaped slots are reused without losing anyone; the views handed out by
 * callbacks and accessors do not overwrite each other.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/gossip.h"
#include "gossip/proto.h"

struct core {
	struct gossip *g;
	uint64_t rng;
	unsigned member_cb;
	/* view checks from inside on_member */
	bool check_views;
	const uint8_t *other_id;
	unsigned view_errors;
};

static void env_send(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len)
{
	/* nobody listens: these tests look at one table at a time */
}

static uint32_t env_random(void *ud)
{
	struct core *c = ud;
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return (uint32_t)(c->rng >> 16);
}

static void env_member(void *ud, const struct gossip_member *m)
{
	struct core *c = ud;
	c->member_cb++;
	if (!c->check_views)
		return;
	/* Read-only accessors from inside the callback must leave @m as it was. */
	uint8_t id[GOSSIP_ID_LEN];
	char name[GOSSIP_NAME_MAX + 1];
	uint64_t inc = m->incarnation;
	size_t labels_len = m->labels_len;
	memcpy(id, m->id, sizeof(id));
	memcpy(name, m->name, sizeof(name));
	const struct gossip_member *o = gossip_member_get(c->g, c->other_id);
	const struct gossip_member *self = gossip_self(c->g);
	if (!o || !self || !self->self || m->self || memcmp(id, m->id, sizeof(id)) != 0 ||
	    strcmp(name, m->name) != 0 || inc != m->incarnation || labels_len != m->labels_len)
		c->view_errors++;
}

static void core_new(struct core *c, uint8_t tag, uint64_t reap_ms)
{
	memset(c, 0, sizeof(*c));
	c->rng = 0x9e3779b9u + tag;
	struct gossip_config cfg;
	gossip_config_default(&cfg);
	cfg.id[0] = 0xc0;
	cfg.id[1] = tag;
	cfg.name = "self";
	cfg.addr.family = GOSSIP_AF_INET;
	cfg.addr.port = 7946;
	cfg.addr.ip[0] = 10;
	cfg.addr.ip[3] = tag;
	cfg.incarnation = 1;
	if (reap_ms)
		cfg.reap_ms = reap_ms;
	struct gossip_env env = { env_send, env_random, env_member, NULL, c };
	assert_int_equal(gossip_new(&cfg, &env, &c->g), 0);
	gossip_tick(c->g, 1000);
}

/* Member number @i, deterministic: name length cycles through 0..GOSSIP_NAME_MAX (so across
 * the core's inline limit), labels on one member in three, states cycle alive/dead/left. */
struct spec {
	struct gossip_member m;
	uint8_t labels[GOSSIP_LABELS_MAX];
};

static void make_member(struct spec *s, unsigned i, uint8_t tag, uint64_t now)
{
	memset(s, 0, sizeof(*s));
	s->m.id[0] = 0x5a;
	s->m.id[1] = tag;
	s->m.id[2] = (uint8_t)(i >> 8);
	s->m.id[3] = (uint8_t)i;
	size_t nl = i % (GOSSIP_NAME_MAX + 1);
	for (size_t k = 0; k < nl; k++)
		s->m.name[k] = (char)('a' + (i + k) % 26);
	s->m.addr.family = GOSSIP_AF_INET;
	s->m.addr.port = (uint16_t)(1000 + i);
	s->m.addr.ip[0] = 10;
	s->m.addr.ip[1] = 1;
	s->m.addr.ip[2] = (uint8_t)(i >> 8);
	s->m.addr.ip[3] = (uint8_t)i;
	if (i % 3 == 0) {
		s->m.labels_len = 1 + i % GOSSIP_LABELS_MAX;
		for (size_t k = 0; k < s->m.labels_len; k++)
			s->labels[k] = (uint8_t)(i * 7 + k);
		s->m.labels = s->labels;
	}
	s->m.incarnation = 1 + i % 5;
	s->m.state = i % 7 == 3 ? GOSSIP_DEAD : i % 7 == 5 ? GOSSIP_LEFT : GOSSIP_ALIVE;
	s->m.state_change = now;
}

/* @got holds what @want says (the fields a member carries from node to node). */
static void assert_same(const struct gossip_member *got, const struct gossip_member *want,
			unsigned i)
{
	if (!got)
		fail_msg("member %u: not found", i);
	if (strcmp(got->name, want->name) != 0)
		fail_msg("member %u: name '%s', want '%s'", i, got->name, want->name);
	if (gossip_addr_cmp(&got->addr, &want->addr) != 0)
		fail_msg("member %u: another address", i);
	if (got->labels_len != want->labels_len ||
	    (want->labels_len && memcmp(got->labels, want->labels, want->labels_len) != 0))
		fail_msg("member %u: labels of %zu bytes, want %zu", i, got->labels_len,
			 want->labels_len);
	if (got->incarnation != want->incarnation || got->state != want->state)
		fail_msg("member %u: %s at %llu, want %s at %llu", i,
			 gossip_state_name(got->state), (unsigned long long)got->incarnation,
			 gossip_state_name(want->state), (unsigned long long)want->incarnation);
	if (got->self)
		fail_msg("member %u: claims to be self", i);
}

#define NMEM 600

struct seen {
	unsigned n, self;
	uint8_t hit[NMEM];
	bool dup;
};

static int seen_cb(void *ud, const struct gossip_member *m)
{
	struct seen *s = ud;
	s->n++;
	if (m->self) {
		s->self++;
		return 0;
	}
	unsigned i = (unsigned)m->id[2] << 8 | m->id[3];
	if (m->id[0] == 0x5a && i < NMEM) {
		if (s->hit[i])
			s->dup = true;
		s->hit[i] = 1;
	}
	return 0;
}

static void test_restore_roundtrip(void **state)
{
	struct core a;
	core_new(&a, 1, 0);
	static struct spec sp[NMEM];
	size_t per_state[4] = { 1, 0, 0, 0 };	/* self is alive */
	for (unsigned i = 0; i < NMEM; i++) {
		make_member(&sp[i], i, 1, 1000);
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
		per_state[sp[i].m.state]++;
	}
	for (unsigned i = 0; i < NMEM; i++)
		assert_same(gossip_member_get(a.g, sp[i].m.id), &sp[i].m, i);
	assert_int_equal(gossip_member_count(a.g, -1), NMEM + 1);
	for (int s = 0; s < 4; s++)
		assert_int_equal(gossip_member_count(a.g, s), per_state[s]);
	struct seen seen;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(gossip_member_foreach(a.g, seen_cb, &seen), 0);
	assert_int_equal(seen.n, NMEM + 1);
	assert_int_equal(seen.self, 1);
	assert_false(seen.dup);
	assert_string_equal(gossip_self(a.g)->name, "self");
	/* a later restore with a newer alive replaces name and labels (long to short, and back) */
	struct spec x = sp[70];		/* 70 % 65 = 5 bytes of name, labels? 70 % 3 = 1: none */
	x.m.incarnation += 10;
	x.m.state = GOSSIP_ALIVE;
	snprintf(x.m.name, sizeof x.m.name, "%s", "a-much-longer-name-than-inline");
	x.m.labels = (const uint8_t *)"k=v";
	x.m.labels_len = 3;
	assert_int_equal(gossip_member_restore(a.g, &x.m), 0);
	assert_same(gossip_member_get(a.g, x.m.id), &x.m, 70);
	x.m.incarnation++;
	snprintf(x.m.name, sizeof x.m.name, "%s", "short");
	x.m.labels = NULL;
	x.m.labels_len = 0;
	assert_int_equal(gossip_member_restore(a.g, &x.m), 0);
	assert_same(gossip_member_get(a.g, x.m.id), &x.m, 70);
	gossip_free(a.g);
}

/* Anti-entropy from a full table to an empty one carries every field. */
static void test_sync_roundtrip(void **state)
{
	struct core a, b;
	core_new(&a, 1, 0);
	core_new(&b, 2, 0);
	static struct spec sp[NMEM];
	for (unsigned i = 0; i < NMEM; i++) {
		make_member(&sp[i], i, 1, 1000);
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
	}
	uint8_t *db, *xa;
	size_t lb, lxa;
	assert_int_equal(gossip_sync_digest(b.g, &db, &lb), 0);
	assert_int_equal(gossip_sync_diff(a.g, 2000, db, lb, 0, &xa, &lxa), 0);
	assert_true(gossip_sync_apply(b.g, 2000, xa, lxa) >= NMEM);
	free(db);
	free(xa);
	for (unsigned i = 0; i < NMEM; i++)
		assert_same(gossip_member_get(b.g, sp[i].m.id), &sp[i].m, i);
	/* and the two digests now agree: nothing left to send either way */
	uint8_t *da;
	size_t la;
	assert_int_equal(gossip_sync_digest(a.g, &da, &la), 0);
	assert_int_equal(gossip_sync_diff(b.g, 2000, da, la, 0, &xa, &lxa), 0);
	int changed = gossip_sync_apply(a.g, 2000, xa, lxa);
	/* b's diff may list b itself (unknown to a); a's own members must all be equal */
	assert_true(changed >= 0 && changed <= 1);
	free(da);
	free(xa);
	gossip_free(a.g);
	gossip_free(b.g);
}

/* A name from the wire keeps what a NUL-terminated name kept: the bytes before the first NUL. */
static void test_wire_name(void **state)
{
	struct core a;
	core_new(&a, 1, 0);
	uint8_t sender[GOSSIP_ID_LEN] = { 0x77, 1 };
	uint8_t newid[GOSSIP_ID_LEN] = { 0x77, 2 };
	static const char name[] = "abcdefghij\0klm";
	struct gossip_msg m = { .type = GOSSIP_MSG_ALIVE, .id = newid, .num = 3,
				.name = (const uint8_t *)name, .name_len = sizeof(name) - 1 };
	m.addr.family = GOSSIP_AF_INET;
	m.addr.ip[3] = 9;
	uint8_t buf[1400];
	struct gossip__w w;
	gossip__w_init(&w, buf, sizeof(buf));
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, sender, GOSSIP_ID_LEN);
	gossip__w_array(&w, 1);
	assert_int_equal(gossip__msg_put(&w, &m), 0);
	assert_int_equal(gossip_recv(a.g, 2000, &m.addr, buf, w.len), 0);
	const struct gossip_member *x = gossip_member_get(a.g, newid);
	assert_non_null(x);
	assert_string_equal(x->name, "abcdefghij");
	assert_int_equal(x->incarnation, 3);
	gossip_free(a.g);
}

/* Reaped members free their slots; new members take them; nobody is lost or seen twice. */
static void test_reap_and_reuse(void **state)
{
	struct core a;
	core_new(&a, 1, 60000);
	static struct spec sp[NMEM];
	/* 0..399: dead since t=1000 (reaped at 61 s); 400..599 come later */
	for (unsigned i = 0; i < 400; i++) {
		make_member(&sp[i], i, 1, 1000);
		sp[i].m.state = GOSSIP_DEAD;
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
	}
	for (uint64_t t = 2000; t <= 75000; t += 1000)
		gossip_tick(a.g, t);
	assert_int_equal(gossip_member_count(a.g, -1), 1);
	for (unsigned i = 0; i < 400; i++)
		assert_null(gossip_member_get(a.g, sp[i].m.id));
	for (unsigned i = 400; i < NMEM; i++) {
		make_member(&sp[i], i, 1, 75000);
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
	}
	/* and some of the reaped ones come back (a reaped member is a new member) */
	for (unsigned i = 0; i < 100; i++) {
		sp[i].m.state = GOSSIP_ALIVE;
		sp[i].m.incarnation += 1;
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
	}
	assert_int_equal(gossip_member_count(a.g, -1), 1 + 200 + 100);
	for (unsigned i = 400; i < NMEM; i++)
		assert_same(gossip_member_get(a.g, sp[i].m.id), &sp[i].m, i);
	for (unsigned i = 0; i < 100; i++)
		assert_same(gossip_member_get(a.g, sp[i].m.id), &sp[i].m, i);
	struct seen seen;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(gossip_member_foreach(a.g, seen_cb, &seen), 0);
	assert_int_equal(seen.n, 301);
	assert_false(seen.dup);
	gossip_free(a.g);
}

/* The member handed to on_member survives the callback's own accessor calls. */
static void test_views_independent(void **state)
{
	struct core a, b;
	core_new(&a, 1, 0);
	core_new(&b, 2, 0);
	static struct spec sp[64];
	for (unsigned i = 0; i < 64; i++) {
		make_member(&sp[i], i + 60, 1, 1000);	/* names of 60..64 bytes, then short */
		sp[i].m.state = GOSSIP_ALIVE;
		assert_int_equal(gossip_member_restore(a.g, &sp[i].m), 0);
	}
	/* b knows one of them already, and looks it up from every callback */
	assert_int_equal(gossip_member_restore(b.g, &sp[5].m), 0);
	b.check_views = true;
	b.other_id = sp[5].m.id;
	uint8_t *db, *xa;
	size_t lb, lxa;
	assert_int_equal(gossip_sync_digest(b.g, &db, &lb), 0);
	assert_int_equal(gossip_sync_diff(a.g, 2000, db, lb, 0, &xa, &lxa), 0);
	assert_true(gossip_sync_apply(b.g, 2000, xa, lxa) > 0);
	free(db);
	free(xa);
	assert_true(b.member_cb >= 63);
	assert_int_equal(b.view_errors, 0);
	/* two views from two accessors at once */
	const struct gossip_member *self = gossip_self(b.g);
	const struct gossip_member *m = gossip_member_get(b.g, sp[0].m.id);
	assert_true(self->self);
	assert_string_equal(self->name, "self");
	assert_same(m, &sp[0].m, 0);
	gossip_free(a.g);
	gossip_free(b.g);
}

/* One packet from @sender carrying @n messages. */
static void recv_msgs(struct core *c, uint64_t now, const uint8_t *sender, struct gossip_msg *m,
		      unsigned n)
{
	uint8_t buf[1400];
	struct gossip__w w;
	struct gossip_addr from = { .family = GOSSIP_AF_INET, .ip = { 10, 9, 9, 9 }, .port = 1 };
	gossip__w_init(&w, buf, sizeof(buf));
	gossip__w_array(&w, 3);
	gossip__w_uint(&w, GOSSIP_PROTO_VERSION);
	gossip__w_bin(&w, sender, GOSSIP_ID_LEN);
	gossip__w_array(&w, n);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(gossip__msg_put(&w, &m[i]), 0);
	assert_int_equal(gossip_recv(c->g, now, &from, buf, w.len), 0);
}

/* gossip.h "Bounds": a key holder inventing members and records fills the tables to their
 * bounds and no further; what does not fit is counted; what is held is still updated; the
 * node's own records are never refused. */
static void test_bounds(void **state)
{
	struct core a;
	memset(&a, 0, sizeof(a));
	a.rng = 77;
	struct gossip_config cfg;
	gossip_config_default(&cfg);
	cfg.id[0] = 0xc0;
	cfg.name = "self";
	cfg.addr.family = GOSSIP_AF_INET;
	cfg.addr.ip[0] = 10;
	cfg.incarnation = 1;
	cfg.members_max = 50;
	cfg.records_max = 120;
	cfg.records_owner_max = 30;
	cfg.records_bytes_max = 120 * 200;
	struct gossip_env env = { env_send, env_random, env_member, NULL, &a };
	assert_int_equal(gossip_new(&cfg, &env, &a.g), 0);
	gossip_tick(a.g, 1000);
	uint8_t sender[GOSSIP_ID_LEN] = { 0x66, 1 };
	uint8_t ids[400][GOSSIP_ID_LEN];
	/* 400 invented members, 20 to a packet */
	for (unsigned i = 0; i < 400; i += 20) {
		struct gossip_msg m[20];
		for (unsigned k = 0; k < 20; k++) {
			memset(ids[i + k], 0, GOSSIP_ID_LEN);
			ids[i + k][0] = 0x99;
			ids[i + k][1] = (uint8_t)((i + k) >> 8);
			ids[i + k][2] = (uint8_t)(i + k);
			memset(&m[k], 0, sizeof(m[k]));
			m[k].type = GOSSIP_MSG_ALIVE;
			m[k].id = ids[i + k];
			m[k].num = 1;
			m[k].addr.family = GOSSIP_AF_INET;
			m[k].addr.ip[0] = 10;
			m[k].addr.ip[2] = (uint8_t)((i + k) >> 8);
			m[k].addr.ip[3] = (uint8_t)(i + k);
		}
		recv_msgs(&a, 2000, sender, m, 20);
	}
	struct gossip_stats st;
	gossip_stats(a.g, &st);
	assert_int_equal(gossip_member_count(a.g, -1), 50); /* self + 49 */
	assert_int_equal(st.members_dropped, 400 - 49);
	/* a held member is still updated (a dead about it) */
	struct gossip_msg d = { .type = GOSSIP_MSG_DEAD, .id = ids[0], .num = 1,
				.accuser = sender };
	recv_msgs(&a, 2100, sender, &d, 1);
	assert_int_equal(gossip_member_get(a.g, ids[0])->state, GOSSIP_DEAD);
	/* records: one owner over its bound, then many owners over the total */
	uint8_t val[100];
	memset(val, 0xab, sizeof(val));
	unsigned sent = 0;
	for (unsigned i = 0; i < 300; i++) {
		char key[32];
		uint8_t owner[GOSSIP_ID_LEN] = { 0x44, (uint8_t)(i < 50 ? 0 : i / 10) };
		int kl = snprintf(key, sizeof(key), "k/%u", i);
		struct gossip_msg r = { .type = GOSSIP_MSG_RECORD, .id = owner,
					.blob = (const uint8_t *)key, .blob_len = (size_t)kl,
					.num = 1, .value = val, .value_len = sizeof(val) };
		recv_msgs(&a, 2200, sender, &r, 1);
		sent++;
	}
	gossip_stats(a.g, &st);
	size_t held = gossip_record_count(a.g);
	print_message("records: %zu held, %llu dropped of %u\n", held,
		      (unsigned long long)st.records_dropped, sent);
	assert_true(held <= 120);
	/* the first owner stopped at 30; bytes (105 each: 24000 / 105 = 228) do not bind first */
	assert_int_equal(held, 120);
	assert_int_equal(st.records_dropped, sent - held);
	size_t first = 0;
	for (unsigned i = 0; i < 50; i++) {
		char key[32];
		uint8_t owner[GOSSIP_ID_LEN] = { 0x44, 0 };
		int kl = snprintf(key, sizeof(key), "k/%u", i);
		first += gossip_record_get(a.g, owner, (const uint8_t *)key, (size_t)kl) != NULL;
	}
	assert_int_equal(first, 30);
	/* a held record still takes a newer version */
	{
		uint8_t owner[GOSSIP_ID_LEN] = { 0x44, 0 };
		struct gossip_msg r = { .type = GOSSIP_MSG_RECORD, .id = owner,
					.blob = (const uint8_t *)"k/0", .blob_len = 3, .num = 2,
					.value = val, .value_len = 10 };
		recv_msgs(&a, 2300, sender, &r, 1);
		assert_int_equal(gossip_record_get(a.g, owner, (const uint8_t *)"k/0", 3)->version, 2);
	}
	/* our own records are never refused */
	assert_int_equal(gossip_record_put(a.g, 2400, (const uint8_t *)"mine", 4, 1, val, 10), 0);
	assert_non_null(gossip_record_get(a.g, cfg.id, (const uint8_t *)"mine", 4));
	gossip_free(a.g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore_roundtrip),
		cmocka_unit_test(test_sync_roundtrip),
		cmocka_unit_test(test_wire_name),
		cmocka_unit_test(test_reap_and_reuse),
		cmocka_unit_test(test_views_independent),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
