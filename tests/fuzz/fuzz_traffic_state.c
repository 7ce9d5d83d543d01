/*
 * tests/fuzz/fuzz_traffic_state.c: `show servers state` answers (traffic_parse_servers_state)
 * on arbitrary bytes, then the planner against whatever state was accepted, and the answer
 * classifier (traffic_answer_check) on the same bytes. The parser must refuse with a reason
 * or return servers whose names and addresses the planner takes; the planner must then plan
 * (or refuse a slot named twice) without a crash, and every command must fit and end in a
 * known verb.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traffic/traffic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct traffic_server *s = NULL;
	size_t n = 0;
	char err[128];

	memset(err, 'x', sizeof err);
	int r = traffic_parse_servers_state((const char *)data, size, "web", &s, &n, err,
					    sizeof err);
	if (!memchr(err, '\0', sizeof err))
		abort();
	if (r != 0) {
		if ((r != -EBADMSG && r != -ENOENT && r != -ENOMEM) || err[0] == '\0')
			abort();
	} else {
		const char **slots = calloc(n ? n : 1, sizeof *slots);
		if (!slots)
			abort();
		for (size_t i = 0; i < n; i++) {
			if (!s[i].name[0] || s[i].uweight > TRAFFIC_WEIGHT_MAX ||
			    s[i].op_state > 3)
				abort();
			slots[i] = s[i].name;
		}
		struct traffic_endpoint e[] = {
			{ "n1", "a", "127.0.61.1", 18181, 10, TRAFFIC_HEALTHY, NULL },
			{ "n2", "b", "127.0.61.2", 18182, 300, TRAFFIC_HEALTHY, NULL },
			{ "n3", "a", "::1", 80, 5, TRAFFIC_DRAINING, NULL },
			{ "n4", "a", "127.0.0.1", 1, 5, TRAFFIC_STARTING, NULL },
		};
		struct traffic_plan_input in = {
			.backend = "web", .site = "a", .failover_permille = 500, .slots = slots,
			.nslots = n, .servers = s, .nservers = n, .endpoints = e, .nendpoints = 4,
		};
		struct traffic_plan p;
		int pr = traffic_plan_build(&in, &p);
		if (pr == 0) {
			/* H and the endpoints waiting for HAProxy's check are disjoint parts
			 * of L, whatever srv_op_state HAProxy reported */
			if (p.local_healthy + p.local_waiting > p.local_total ||
			    p.failover != !(p.local_healthy >= 1 &&
					    p.local_healthy >= p.local_need))
				abort();
			for (size_t i = 0; i < p.ncmds; i++)
				if (strncmp(p.cmds[i].line, "set ", 4) != 0 || p.cmds[i].slot >= n)
					abort();
			traffic_plan_release(&p);
		} else if (pr != -EINVAL && pr != -ENOMEM) {
			abort();
		}
		free(slots);
		free(s);
	}
	(void)traffic_answer_check("set server web/s1 addr 127.0.0.1 port 80", (const char *)data,
				   size);
	(void)traffic_answer_check("set weight web/s1 1", (const char *)data, size);
	return 0;
}
