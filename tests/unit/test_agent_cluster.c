/*
 * Tests of agent/cluster/cluster.c in-process, with real stores, real UDP/TCP sockets on 127.0.0.1 and
 * the real transport: label blobs (encode, decode, hostile blobs), keyring generation, records
 * and incarnation persisted across a restart, subscribers called outside the core (and allowed
 * to publish from the callback), versions that only grow.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>

#include "agent/daemon/agent.h"
#include "agent/cluster/cluster.h"
#include "gossip/transport.h"

/* ---- labels ------------------------------------------------------------------------------- */

static void test_labels_roundtrip(void **state)
{
	char *pairs[] = {"site=paris", "rack=r1", "empty="};
	uint8_t blob[GOSSIP_LABELS_MAX];
	size_t len = 0;
	char v[64], all[256];
	assert_int_equal(cluster_labels_encode(pairs, 3, blob, sizeof blob, &len), 0);
	assert_true(len > 0);
	assert_int_equal(cluster_label_get(blob, len, "site", v, sizeof v), 5);
	assert_string_equal(v, "paris");
	assert_int_equal(cluster_label_get(blob, len, "empty", v, sizeof v), 0);
	assert_string_equal(v, "");
	assert_int_equal(cluster_label_get(blob, len, "nope", v, sizeof v), -ENOENT);
	/* Truncation: the full length is returned, the copy is cut and terminated. */
	assert_int_equal(cluster_label_get(blob, len, "site", v, 3), 5);
	assert_string_equal(v, "pa");
	assert_int_equal(cluster_labels_format(blob, len, all, sizeof all), 3);
	assert_string_equal(all, "site=paris,rack=r1,empty=");
	assert_int_equal(cluster_labels_format(blob, 0, all, sizeof all), 0);
	assert_string_equal(all, "");
	assert_int_equal(cluster_label_get(blob, 0, "site", v, sizeof v), -ENOENT);
}

static void test_labels_errors(void **state)
{
	uint8_t blob[GOSSIP_LABELS_MAX];
	size_t len = 0;
	char *bad[] = {"noequals"};
	char *empty_key[] = {"=x"};
	assert_int_equal(cluster_labels_encode(bad, 1, blob, sizeof blob, &len), -EINVAL);
	assert_int_equal(cluster_labels_encode(empty_key, 1, blob, sizeof blob, &len), -EINVAL);
	char big[300];
	memset(big, 'v', sizeof big - 1);
	big[0] = 'k';
	big[1] = '=';
	big[sizeof big - 1] = 0;
	char *huge[] = {big};
	assert_int_equal(cluster_labels_encode(huge, 1, blob, sizeof blob, &len), -EMSGSIZE);

	/* Hostile blobs from the network: never a crash, -EBADMSG. */
	char v[16], all[64];
	static const uint8_t map_huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff};	/* map32 2^32-1 */
	static const uint8_t not_map[] = {0x93, 1, 2, 3};
	static const uint8_t int_key[] = {0x81, 0x01, 0xa1, 'x'};
	static const uint8_t truncated[] = {0x81, 0xa4, 's', 'i'};
	static const uint8_t reserved[] = {0xc1};
	static const uint8_t trailing[] = {0x80, 0x00};
	const struct { const uint8_t *p; size_t n; } cases[] = {
		{map_huge, sizeof map_huge}, {not_map, sizeof not_map}, {int_key, sizeof int_key},
		{truncated, sizeof truncated}, {reserved, sizeof reserved},
		{trailing, sizeof trailing},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int r = cluster_label_get(cases[i].p, cases[i].n, "site", v, sizeof v);
		if (r != -EBADMSG)
			fail_msg("case %zu: label_get returned %d, expected %d", i, r, -EBADMSG);
		r = cluster_labels_format(cases[i].p, cases[i].n, all, sizeof all);
		if (r != -EBADMSG)
			fail_msg("case %zu: labels_format returned %d, expected %d", i, r,
				 -EBADMSG);
	}
}

/* ---- in-process nodes --------------------------------------------------------------------- */

struct node {
	char dir[64];
	struct agent_config cfg;
	struct store *store;
	uint8_t id[STORE_NODE_ID_LEN];
	struct cluster *c;
	unsigned members_seen, records_seen;
	uint64_t last_version;
	char last_value[64];
	bool republish;		/* publish from inside the record callback */
	int republish_rc;
};

static uv_loop_t loop;

static void node_config(struct node *n, const char *name, const char *keyring, const char *join)
{
	char *argv[16];
	int argc = 0;
	char err[256];
	argv[argc++] = "agentd";
	argv[argc++] = "--config";
	argv[argc++] = "/dev/null";
	argv[argc++] = "--state-dir";
	argv[argc++] = n->dir;
	argv[argc++] = "--node-name";
	argv[argc++] = (char *)name;
	argv[argc++] = "--label";
	argv[argc++] = "site=unit";
	if (keyring) {
		argv[argc++] = "--keyring";
		argv[argc++] = (char *)keyring;
	}
	if (join) {
		argv[argc++] = "--join";
		argv[argc++] = (char *)join;
	}
	argv[argc] = NULL;
	memset(&n->cfg, 0, sizeof n->cfg);
	int r = agent_config_load(argc, argv, &n->cfg, err, sizeof err);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("config: %d %s", r, err);
	/* An ephemeral port (the flag wants 1..65535; the transport takes 0). */
	free(n->cfg.bind);
	n->cfg.bind = strdup("127.0.0.1:0");
	assert_non_null(n->cfg.bind);
}

static void node_open_store(struct node *n)
{
	char path[128];
	snprintf(path, sizeof path, "%s/store", n->dir);
	struct store_opts so = {.path = path, .nosync = true};
	assert_int_equal(store_open(&so, &n->store), 0);
	assert_int_equal(store_node_id(n->store, n->id), 0);
}

static void on_member_cb(void *ud, const struct gossip_member *m)
{
	struct node *n = ud;
	n->members_seen++;
}

static void on_record_cb(void *ud, const struct gossip_record *r)
{
	struct node *n = ud;
	n->records_seen++;
	n->last_version = r->version;
	snprintf(n->last_value, sizeof n->last_value, "%.*s", (int)r->value_len,
		 (const char *)r->value);
	if (n->republish) {
		n->republish = false;
		/* Outside the core: publishing from here is allowed. */
		n->republish_rc = cluster_record_put(n->c, "echo", 4, r->value, r->value_len, NULL);
	}
}

static void node_start(struct node *n)
{
	char err[256] = "";
	int r = cluster_new(&loop, &n->cfg, n->store, n->id, NULL, &n->c, err, sizeof err);
	if (r < 0)
		fail_msg("cluster_new: %d %s", r, err);
	assert_int_equal(cluster_subscribe(n->c, on_member_cb, on_record_cb, n), 0);
}

static bool closed_flag;
static void closed(void *ud)
{
	*(bool *)ud = true;
}

static void node_stop(struct node *n)
{
	bool done = false;
	cluster_close(n->c, closed, &done);
	while (!done)
		uv_run(&loop, UV_RUN_ONCE);
	n->c = NULL;
}

static void node_release(struct node *n)
{
	store_close(n->store);
	n->store = NULL;
	agent_config_release(&n->cfg);
}

static void timeout_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Run the loop until @pred(@ud) or @ms elapse. */
static bool run_until(bool (*pred)(void *ud), void *ud, uint64_t ms)
{
	uv_timer_t t;
	bool expired = false;
	uv_timer_init(&loop, &t);
	t.data = &expired;
	uv_timer_start(&t, timeout_cb, ms, 0);
	while (!pred(ud) && !expired)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return pred(ud);
}

static void mkdir_node(struct node *n, const char *tag)
{
	snprintf(n->dir, sizeof n->dir, "/tmp/shoal-cluster-%s-XXXXXX", tag);
	assert_non_null(mkdtemp(n->dir));
}

static void rm_rf(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void test_restart_persists(void **state)
{
	struct node n;
	memset(&n, 0, sizeof n);
	assert_int_equal(uv_loop_init(&loop), 0);
	mkdir_node(&n, "restart");
	node_config(&n, "solo", NULL, NULL);
	node_open_store(&n);
	node_start(&n);

	/* The default keyring was generated, 0600. */
	char path[128];
	struct stat st;
	snprintf(path, sizeof path, "%s/keyring", n.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(gossip_keyring_count(cluster_keyring(n.c)), 1);

	uint64_t v1 = 0, v2 = 0, v3 = 0;
	uint64_t inc1 = cluster_self(n.c)->incarnation;
	assert_int_equal(cluster_record_put(n.c, "health/web", 10, "ok", 2, &v1), 0);
	assert_int_equal(cluster_record_put(n.c, "health/web", 10, "bad", 3, &v2), 0);
	if (v2 <= v1)
		fail_msg("versions %llu then %llu: not growing", (unsigned long long)v1,
			 (unsigned long long)v2);
	assert_int_equal(cluster_record_put(n.c, "", 0, "x", 1, NULL), -EINVAL);
	char big[GOSSIP_VALUE_MAX + 1];
	memset(big, 'x', sizeof big);
	assert_int_equal(cluster_record_put(n.c, "k", 1, big, sizeof big, NULL), -EMSGSIZE);
	node_stop(&n);
	node_release(&n);

	/* Restart on the same state directory: record and keyring back, incarnation above. */
	node_config(&n, "solo", NULL, NULL);
	node_open_store(&n);
	node_start(&n);
	uint64_t inc2 = cluster_self(n.c)->incarnation;
	if (inc2 <= inc1)
		fail_msg("incarnation after restart %llu, before %llu", (unsigned long long)inc2,
			 (unsigned long long)inc1);
	const struct gossip_record *r = cluster_record_get(n.c, n.id, "health/web", 10);
	assert_non_null(r);
	if (r->version != v2)
		fail_msg("restored version %llu, expected %llu", (unsigned long long)r->version,
			 (unsigned long long)v2);
	assert_int_equal(r->value_len, 3);
	assert_memory_equal(r->value, "bad", 3);
	assert_int_equal(cluster_record_put(n.c, "health/web", 10, "ok", 2, &v3), 0);
	if (v3 <= v2)
		fail_msg("version after restart %llu, not above %llu", (unsigned long long)v3,
			 (unsigned long long)v2);
	node_stop(&n);
	node_release(&n);
	rm_rf(n.dir);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A persisted member row as agent/cluster/cluster.c writes it (its format is private; kept in sync). */
static void put_member_row(struct store *st, const uint8_t id[16], const char *name, int state,
			   uint64_t wall_ms)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t ip[16] = {127, 0, 0, 9};
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 9);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_str(&pk, strlen(name));
	msgpack_pack_str_body(&pk, name, strlen(name));
	msgpack_pack_uint8(&pk, GOSSIP_AF_INET);
	msgpack_pack_uint16(&pk, 9);
	msgpack_pack_bin(&pk, 16);
	msgpack_pack_bin_body(&pk, ip, 16);
	msgpack_pack_bin(&pk, 0);
	msgpack_pack_uint64(&pk, 5);
	msgpack_pack_uint8(&pk, (uint8_t)state);
	msgpack_pack_uint64(&pk, wall_ms);
	assert_int_equal(store_kv_put(st, STORE_KV_MEMBERS, id, 16, sb.data, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
}

static int count_rows(const void *k, size_t kl, const void *v, size_t vl, void *ud)
{
	(*(int *)ud)++;
	return 0;
}

static void test_restore_prunes_old_failures(void **state)
{
	struct node n;
	static const uint8_t old_id[16] = {0xaa, 1}, recent_id[16] = {0xbb, 2},
			     garbage_id[16] = {0xcc, 3};
	memset(&n, 0, sizeof n);
	assert_int_equal(uv_loop_init(&loop), 0);
	mkdir_node(&n, "prune");
	node_config(&n, "pruner", NULL, NULL);
	node_open_store(&n);
	/* Dead since 1970: beyond the 72 h reap time. Dead a minute ago: kept, still dead. */
	put_member_row(n.store, old_id, "ancient", GOSSIP_DEAD, 1000);
	put_member_row(n.store, recent_id, "recent", GOSSIP_DEAD, agent_now_ms() - 60000);
	assert_int_equal(store_kv_put(n.store, STORE_KV_MEMBERS, garbage_id, 16, "\xc1", 1), 0);
	node_start(&n);
	assert_null(cluster_member_get(n.c, old_id));
	const struct gossip_member *m = cluster_member_get(n.c, recent_id);
	assert_non_null(m);
	assert_string_equal(m->name, "recent");
	if (m->state != GOSSIP_DEAD)
		fail_msg("recent member restored as %s, expected dead",
			 gossip_state_name(m->state));
	assert_null(cluster_member_get(n.c, garbage_id));	/* a bad row is skipped */
	node_stop(&n);
	int rows = 0;
	assert_int_equal(store_kv_foreach(n.store, STORE_KV_MEMBERS, count_rows, &rows), 0);
	/* self + recent + the unreadable row (left for an operator to see); ancient deleted */
	assert_int_equal(rows, 3);
	node_release(&n);
	rm_rf(n.dir);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_explicit_keyring_missing(void **state)
{
	struct node n;
	char err[256] = "";
	memset(&n, 0, sizeof n);
	assert_int_equal(uv_loop_init(&loop), 0);
	mkdir_node(&n, "nokey");
	node_config(&n, "nokey", "/nonexistent/keyring", NULL);
	node_open_store(&n);
	int r = cluster_new(&loop, &n.cfg, n.store, n.id, NULL, &n.c, err, sizeof err);
	if (r != -ENOENT)
		fail_msg("cluster_new with a missing explicit keyring: %d (%s)", r, err);
	assert_non_null(strstr(err, "/nonexistent/keyring"));
	node_release(&n);
	rm_rf(n.dir);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

struct pair {
	struct node *a, *b;
	uint64_t want_version;
};

static bool both_alive(void *ud)
{
	struct pair *p = ud;
	return p->a->c && gossip_member_count(gossip_transport_core(cluster_transport(p->a->c)),
					      GOSSIP_ALIVE) == 2 &&
	       gossip_member_count(gossip_transport_core(cluster_transport(p->b->c)),
				   GOSSIP_ALIVE) == 2;
}

static bool b_has_record(void *ud)
{
	struct pair *p = ud;
	return p->b->records_seen > 0 && p->b->last_version == p->want_version;
}

static bool a_has_echo(void *ud)
{
	struct pair *p = ud;
	return cluster_record_get(p->a->c, p->b->id, "echo", 4) != NULL;
}

static void test_two_nodes_subscribers(void **state)
{
	struct node a, b;
	struct pair p = {&a, &b, 0};
	char join[80], keyring[128];
	struct gossip_addr adv;
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	assert_int_equal(uv_loop_init(&loop), 0);
	mkdir_node(&a, "a");
	mkdir_node(&b, "b");
	node_config(&a, "a", NULL, NULL);
	node_open_store(&a);
	node_start(&a);
	memset(&adv, 0, sizeof adv);
	gossip_transport_addrs(cluster_transport(a.c), NULL, &adv);
	gossip_addr_format(&adv, join, sizeof join);
	snprintf(keyring, sizeof keyring, "%s/keyring", a.dir);	/* same key: a's file */
	node_config(&b, "b", keyring, join);
	node_open_store(&b);
	node_start(&b);
	if (!run_until(both_alive, &p, 10000))
		fail_msg("two nodes did not see each other alive within 10 s");
	if (a.members_seen == 0 || b.members_seen == 0)
		fail_msg("member callbacks: a %u, b %u", a.members_seen, b.members_seen);

	b.republish = true;
	assert_int_equal(cluster_record_put(a.c, "rev/web", 7, "v42", 3, &p.want_version), 0);
	if (!run_until(b_has_record, &p, 10000))
		fail_msg("b did not receive a's record (seen %u, version %llu, want %llu)",
			 b.records_seen, (unsigned long long)b.last_version,
			 (unsigned long long)p.want_version);
	assert_string_equal(b.last_value, "v42");
	assert_int_equal(b.republish_rc, 0);
	if (!run_until(a_has_echo, &p, 10000))
		fail_msg("a did not receive the record b published from its callback");

	/* Membership iteration with labels decoded. */
	const struct gossip_member *mb = cluster_member_get(a.c, b.id);
	assert_non_null(mb);
	char site[16];
	assert_int_equal(cluster_label_get(mb->labels, mb->labels_len, "site", site, sizeof site),
			 4);
	assert_string_equal(site, "unit");

	struct cluster_summary s;
	cluster_summary(a.c, &s);
	if (s.members[GOSSIP_ALIVE] != 2)
		fail_msg("summary alive %zu, expected 2", s.members[GOSSIP_ALIVE]);

	/* Leave: b gossips it, the callback runs after the drain, a sees "left". */
	assert_int_equal(cluster_leave(b.c, closed, &closed_flag), 0);
	assert_int_equal(cluster_leave(b.c, closed, &closed_flag), -EALREADY);
	assert_int_equal(cluster_record_put(b.c, "k", 1, "x", 1, NULL), -ESHUTDOWN);
	while (!closed_flag)
		uv_run(&loop, UV_RUN_ONCE);
	const struct gossip_member *bl = cluster_member_get(a.c, b.id);
	assert_non_null(bl);
	if (bl->state != GOSSIP_LEFT)
		fail_msg("a sees b as %s after b's leave", gossip_state_name(bl->state));
	node_stop(&b);
	node_stop(&a);
	node_release(&a);
	node_release(&b);
	rm_rf(a.dir);
	rm_rf(b.dir);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_labels_roundtrip),
		cmocka_unit_test(test_labels_errors),
		cmocka_unit_test(test_restart_persists),
		cmocka_unit_test(test_restore_prunes_old_failures),
		cmocka_unit_test(test_explicit_keyring_missing),
		cmocka_unit_test(test_two_nodes_subscribers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
