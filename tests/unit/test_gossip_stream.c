/*
 * Application streams on the gossip TCP port (gossip/transport.h "Application streams"): real
 * transports on 127.0.0.1, one loop. Echo with sender authentication, refusal of unserved
 * protocols and beyond the cap, a foreign key never reaching the handler, the idle deadline,
 * size bounds, and anti-entropy still working on the same port.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "gossip/transport.h"

struct node {
	struct gossip_transport *t;
	struct gossip_keyring *kr;
	struct gossip_addr addr;
	uint8_t id[GOSSIP_ID_LEN];
	bool closed;
};

/* one end of a stream, as seen by its owner */
struct end {
	struct gossip_stream *s;
	unsigned frames;
	size_t bytes;
	uint8_t last[64];
	size_t last_len;
	bool closed;
	int err;
	bool echo;
};

static uv_loop_t loop;
static struct node nodes[3];
static struct end server_ends[8];
static unsigned n_server_ends;
static uint8_t accepted_sender[GOSSIP_SENDER_LEN];

static void end_frame(struct gossip_stream *s, void *ud, const uint8_t *buf, size_t len)
{
	struct end *e = ud;

	e->frames++;
	e->bytes += len;
	e->last_len = len < sizeof(e->last) ? len : sizeof(e->last);
	memcpy(e->last, buf, e->last_len);
	if (e->echo)
		assert_int_equal(gossip_stream_send(s, buf, len), 0);
}

static void end_close(struct gossip_stream *s, void *ud, int err)
{
	struct end *e = ud;

	(void)s;
	e->closed = true;
	e->err = err;
	e->s = NULL;
}

static const struct gossip_stream_ops end_ops = { end_frame, end_close };

static int on_accept(void *ud, struct gossip_stream *s, const uint8_t sender[GOSSIP_SENDER_LEN])
{
	struct end *e;

	(void)ud;
	if (n_server_ends >= 8)
		return -ENOSPC;
	e = &server_ends[n_server_ends++];
	memset(e, 0, sizeof(*e));
	e->s = s;
	e->echo = true;
	memcpy(accepted_sender, sender, GOSSIP_SENDER_LEN);
	gossip_stream_set_ops(s, &end_ops, e);
	return 0;
}

static void node_up(int i, const uint8_t *key, unsigned max_app, uint32_t idle_ms)
{
	struct node *n = &nodes[i];
	struct gossip_transport_config cfg;

	memset(n, 0, sizeof(*n));
	n->id[0] = (uint8_t)(0x40 + i);
	n->id[15] = 0x99;
	assert_int_equal(gossip_keyring_new(&n->kr), 0);
	assert_int_equal(gossip_keyring_install(n->kr, key, NULL), 0);
	gossip_transport_config_default(&cfg);
	memcpy(cfg.core.id, n->id, GOSSIP_ID_LEN);
	cfg.core.name = "s";
	cfg.cluster = "stream-unit";
	cfg.bind = "127.0.0.1:0";
	cfg.sync_interval_ms = UINT32_MAX;
	cfg.keyring = n->kr;
	cfg.app_max_streams = max_app;
	cfg.app_idle_ms = idle_ms;
	assert_int_equal(gossip_transport_new(&loop, &cfg, &n->t), 0);
	gossip_transport_addrs(n->t, NULL, &n->addr);
}

static void node_closed_flag(struct gossip_transport *t, void *ud)
{
	(void)t;
	*(bool *)ud = true;
}

static void node_closed(struct gossip_transport *t, void *ud)
{
	(void)t;
	((struct node *)ud)->closed = true;
}

struct waiter {
	bool (*pred)(void *);
	void *arg;
	uint64_t deadline;
	bool ok;
};

static void wait_tick(uv_timer_t *timer)
{
	struct waiter *w = timer->data;

	if (w->pred(w->arg)) {
		w->ok = true;
		uv_stop(&loop);
	} else if (uv_now(&loop) >= w->deadline) {
		uv_stop(&loop);
	}
}

static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms)
{
	uv_timer_t timer;
	struct waiter w = { pred, arg, 0, false };

	uv_update_time(&loop);
	w.deadline = uv_now(&loop) + ms;
	uv_timer_init(&loop, &timer);
	timer.data = &w;
	uv_timer_start(&timer, wait_tick, 10, 10);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return w.ok;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

static void run_for(uint64_t ms)
{
	run_until(never, NULL, ms);
}

static bool end_closed(void *arg)
{
	return ((struct end *)arg)->closed;
}

static bool end_has_frame(void *arg)
{
	return ((struct end *)arg)->frames >= 1;
}

static bool end_has_frames(void *arg)
{
	return ((struct end *)arg)->frames >= 3;
}

static int setup(void **state)
{
	uint8_t key[GOSSIP_KEY_LEN], other[GOSSIP_KEY_LEN];

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	gossip_key_generate(key);
	do /* another key id, so its frames count as unknown_key (1 in 256 would be "auth") */
		gossip_key_generate(other);
	while (gossip_key_id(other) == gossip_key_id(key));
	node_up(0, key, 2, 400);   /* server: 2 app streams at most, 400 ms idle */
	node_up(1, key, 32, 5000); /* client */
	node_up(2, other, 32, 5000); /* another cluster key */
	assert_int_equal(gossip_transport_app_listen(nodes[0].t, 'E', on_accept, NULL), 0);
	n_server_ends = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		gossip_transport_close(nodes[i].t, node_closed, &nodes[i]);
	for (int k = 0; k < 400; k++)
		if (uv_run(&loop, UV_RUN_NOWAIT) == 0)
			break;
	for (int i = 0; i < 3; i++) {
		assert_true(nodes[i].closed);
		gossip_keyring_free(nodes[i].kr);
	}
	assert_int_equal(uv_loop_close(&loop), 0);
	return 0;
}

static void test_echo(void **state)
{
	struct end c = { 0 };
	struct gossip_transport_stats st;
	uint8_t big[200000];

	(void)state;
	assert_int_equal(gossip_transport_app_connect(nodes[1].t, &nodes[0].addr, 'E', &end_ops,
						      &c, &c.s), 0);
	/* queued before the connection completes */
	assert_int_equal(gossip_stream_send(c.s, (const uint8_t *)"one", 3), 0);
	assert_int_equal(gossip_stream_send(c.s, (const uint8_t *)"two", 3), 0);
	memset(big, 0x5c, sizeof(big));
	assert_int_equal(gossip_stream_send(c.s, big, sizeof(big)), 0);
	assert_true(run_until(end_has_frames, &c, 5000));
	assert_int_equal(c.bytes, 3 + 3 + sizeof(big));
	assert_int_equal(n_server_ends, 1);
	assert_int_equal(server_ends[0].frames, 3);
	/* the handler saw the client's authenticated id, and so does the client's peer() */
	assert_memory_equal(accepted_sender, nodes[1].id, GOSSIP_SENDER_LEN);
	uint8_t peer[GOSSIP_SENDER_LEN];
	gossip_stream_peer(c.s, peer);
	assert_memory_equal(peer, nodes[0].id, GOSSIP_SENDER_LEN);
	/* size bound */
	static uint8_t huge[GOSSIP_STREAM_PAYLOAD_MAX + 1];
	assert_int_equal(gossip_stream_send(c.s, huge, sizeof(huge)), -EMSGSIZE);
	assert_int_equal(gossip_stream_send(c.s, huge, GOSSIP_STREAM_PAYLOAD_MAX), 0);
	/* the client closes: the server's end sees a clean close (0) */
	run_for(200);
	gossip_stream_close(c.s);
	assert_true(run_until(end_closed, &server_ends[0], 5000));
	assert_int_equal(server_ends[0].err, 0);
	assert_false(c.closed); /* no callback after our own close */
	gossip_transport_stats(nodes[0].t, &st);
	assert_int_equal(st.app_accepted, 1);
	assert_int_equal(st.sync_accepted, 0);
	gossip_transport_stats(nodes[1].t, &st);
	assert_int_equal(st.app_connected, 1);
}

static void test_refusals(void **state)
{
	struct end c[4];
	struct gossip_transport_stats st;

	(void)state;
	memset(c, 0, sizeof(c));
	/* an unserved protocol: closed, counted, the handler never called */
	assert_int_equal(gossip_transport_app_connect(nodes[1].t, &nodes[0].addr, 'Z', &end_ops,
						      &c[0], &c[0].s), 0);
	assert_true(run_until(end_closed, &c[0], 5000));
	assert_int_equal(n_server_ends, 0);
	/* a node of another cluster key: its frames never open; the handler is never called */
	assert_int_equal(gossip_transport_app_connect(nodes[2].t, &nodes[0].addr, 'E', &end_ops,
						      &c[1], &c[1].s), 0);
	assert_true(run_until(end_closed, &c[1], 5000));
	assert_int_equal(n_server_ends, 0);
	gossip_transport_stats(nodes[0].t, &st);
	assert_int_equal(st.app_refused, 1);
	assert_true(st.drops[GOSSIP_DROP_UNKNOWN_KEY] >= 1);
	/* the cap (2): the third concurrent stream is refused */
	for (int i = 0; i < 3; i++) {
		struct end *e = i < 2 ? &c[2 + i] : &c[0];

		memset(e, 0, sizeof(*e));
		assert_int_equal(gossip_transport_app_connect(nodes[1].t, &nodes[0].addr, 'E',
							      &end_ops, e, &e->s), 0);
		assert_int_equal(gossip_stream_send(e->s, (const uint8_t *)"x", 1), 0);
		run_for(50);
	}
	assert_true(run_until(end_closed, &c[0], 5000));
	assert_int_equal(n_server_ends, 2);
	gossip_transport_stats(nodes[0].t, &st);
	assert_int_equal(st.app_refused, 2);
	/* idle deadline (400 ms on the server): both accepted streams time out there */
	assert_true(run_until(end_closed, &server_ends[1], 3000));
	assert_true(run_until(end_closed, &server_ends[0], 3000));
	assert_int_equal(server_ends[0].err, -ETIMEDOUT);
	assert_true(run_until(end_closed, &c[2], 3000));
	assert_true(run_until(end_closed, &c[3], 3000));
}

/* Outgoing streams leave from the bound address, not from the kernel's pick: a peer's
 * "known member" check is by IP (the pending-connection pools, transport.h). On loopback the
 * kernel would pick 127.0.0.1 for any 127.0.0.0/8 destination. */
static void test_source_address(void **state)
{
	(void)state;
	uint8_t key[GOSSIP_KEY_LEN];
	struct gossip_transport_config cfg;
	struct gossip_keyring *kr;
	struct gossip_transport *t;
	struct end c = {0};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof sa;

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	sa.sin_addr.s_addr = htonl(0x7f000001);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(ls, 4), 0);
	assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	struct gossip_addr to = {.family = GOSSIP_AF_INET, .port = ntohs(sa.sin_port),
				 .ip = {127, 0, 0, 1}};

	gossip_key_generate(key);
	assert_int_equal(gossip_keyring_new(&kr), 0);
	assert_int_equal(gossip_keyring_install(kr, key, NULL), 0);
	gossip_transport_config_default(&cfg);
	cfg.core.id[0] = 0x77;
	cfg.core.name = "src";
	cfg.cluster = "stream-unit";
	cfg.bind = "127.0.0.3:0";
	cfg.sync_interval_ms = UINT32_MAX;
	cfg.keyring = kr;
	assert_int_equal(gossip_transport_new(&loop, &cfg, &t), 0);
	assert_int_equal(gossip_transport_app_connect(t, &to, 'E', &end_ops, &c, &c.s), 0);
	run_for(200);
	struct sockaddr_in peer;
	sl = sizeof peer;
	int fd = accept(ls, (struct sockaddr *)&peer, &sl);
	assert_true(fd >= 0);
	assert_int_equal(ntohl(peer.sin_addr.s_addr), 0x7f000003);
	close(fd);
	close(ls);
	bool closed = false;
	gossip_transport_close(t, node_closed_flag, &closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	gossip_keyring_free(kr);
}

static bool sync_done(void *arg)
{
	struct gossip_transport_stats st;

	gossip_transport_stats(arg, &st);
	return st.sync_ok >= 1;
}

static void test_sync_still_works(void **state)
{
	struct end c = { 0 };

	(void)state;
	assert_int_equal(gossip_transport_app_connect(nodes[1].t, &nodes[0].addr, 'E', &end_ops,
						      &c, &c.s), 0);
	assert_int_equal(gossip_transport_sync(nodes[1].t, &nodes[0].addr), 0);
	assert_true(run_until(sync_done, nodes[1].t, 5000));
	assert_int_equal(gossip_stream_send(c.s, (const uint8_t *)"abc", 3), 0);
	assert_true(run_until(end_has_frame, &c, 5000));
	assert_int_equal(c.frames, 1);
	assert_memory_equal(c.last, "abc", 3);
	gossip_stream_close(c.s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_still_works, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
