/*
 * tests/fuzz/fuzz_gossip_proto.c: arbitrary bytes into the gossip wire codec and into a real
 * core: as a datagram (gossip_recv) and as anti-entropy buffers (gossip_sync_diff,
 * gossip_sync_apply). Whatever the input, no crash, no leak, and everything the core sends in
 * response is itself a valid packet within the plaintext budget.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "gossip/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_send(void *ud, const struct gossip_addr *to, const uint8_t *buf, size_t len)
{
	/* the core's own output must always decode and fit */
	if (len > GOSSIP_MTU_DEFAULT - GOSSIP_SEAL_OVERHEAD || gossip__pkt_check(buf, len) < 0)
		abort();
}

static uint32_t fz_random(void *ud)
{
	uint32_t *x = ud;
	*x = *x * 1664525u + 1013904223u;
	return *x >> 8;
}

static struct gossip *fz_core(uint32_t *rng)
{
	struct gossip_config c;
	struct gossip_env env = { .send = fz_send, .random = fz_random, .ud = rng };
	struct gossip *g;
	gossip_config_default(&c);
	c.probe_interval_ms = 200;
	c.probe_timeout_ms = 100;
	c.gossip_interval_ms = 50;
	c.id[0] = 0xaa;
	c.name = "fuzz";
	c.addr.family = GOSSIP_AF_INET;
	c.addr.ip[0] = 127;
	c.addr.ip[3] = 1;
	if (gossip_new(&c, &env, &g) < 0)
		abort();
	/* a few members and records so that updates hit existing entries too */
	for (int i = 1; i <= 3; i++) {
		struct gossip_member m = { .incarnation = (uint64_t)i, .state = i == 3 ?
					   GOSSIP_DEAD : GOSSIP_ALIVE };
		m.id[0] = (uint8_t)i;
		m.addr.family = GOSSIP_AF_INET;
		m.addr.ip[3] = (uint8_t)(10 + i);
		gossip_member_restore(g, &m);
		struct gossip_record r = { .key = (const uint8_t *)"k", .key_len = 1,
					   .version = (uint64_t)i, .value = (const uint8_t *)"v",
					   .value_len = 1 };
		r.owner[0] = (uint8_t)i;
		gossip_record_restore(g, &r);
	}
	gossip_tick(g, 1000);
	return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the bare decoder */
	int n = gossip__pkt_check(data, size);
	if (n > GOSSIP_PROTO_MAX_MSGS)
		abort();

	uint32_t rng = 1;
	struct gossip *g = fz_core(&rng);
	struct gossip_addr from = { .family = GOSSIP_AF_INET, .port = 7946, .ip = { 10, 0, 0, 9 } };
	int r = gossip_recv(g, 1100, &from, data, size);
	if (r != 0 && r != -EBADMSG && r != -EPROTONOSUPPORT && r != -ENOMEM)
		abort();
	if ((n < 0) != (r == -EBADMSG || r == -EPROTONOSUPPORT))
		abort();	/* the core accepts exactly what the decoder accepts */
	/* time passes: timers run over whatever the packet changed */
	for (uint64_t t = 1100; t < 12000; t += 100)
		gossip_tick(g, t);

	uint8_t *out = NULL;
	size_t len;
	r = gossip_sync_diff(g, 12000, data, size, 4096, &out, &len);
	if (r >= 0) {
		if (len > 4096)
			abort();
		free(out);
	}
	r = gossip_sync_apply(g, 12000, data, size);
	(void)r;
	if (gossip_sync_digest(g, &out, &len) == 0)
		free(out);
	gossip_free(g);
	return 0;
}
