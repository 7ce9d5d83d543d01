/*
 * Fuzz target for the endpoint gossip records (agent/fleet/endpoints.c): every byte comes
 * from another node. The input is split at the first 0x00 into a KEY and a VALUE; the key goes
 * through fleet_ep_key_parse (and back through fleet_ep_key_format), the value through
 * fleet_endpoint_decode (both forms: the signed version 4 and the unsigned version 3); what
 * decodes is re-encoded (always the signed form) and decoded again to the same fields, and
 * the message its signature covers (fleet_endpoint_msg) stays within FLEET_EP_MSG_MAX and
 * is the same for both copies.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/fleet/endpoints.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *zero = memchr(data, 0, size);
	size_t klen = zero ? (size_t)(zero - data) : size;
	const uint8_t *val = zero ? zero + 1 : data + size;
	size_t vlen = zero ? size - klen - 1 : 0;
	char svc[65], key[80];
	struct fleet_endpoint e, e2;
	uint8_t *buf, m1[FLEET_EP_MSG_MAX], m2[FLEET_EP_MSG_MAX];
	static const uint8_t owner[STORE_NODE_ID_LEN] = {1, 2, 3};
	size_t len;

	if (fleet_ep_key_parse(data, klen, svc) == 0) {
		int n = fleet_ep_key_format(svc, key, sizeof key);
		if (n < 0 || (size_t)n != klen || memcmp(key, data, klen) != 0)
			abort();
	}
	if (fleet_endpoint_decode(val, vlen, &e) == 0) {
		if (fleet_endpoint_encode(&e, &buf, &len) != 0)
			abort();
		if (fleet_endpoint_decode(buf, len, &e2) != 0 || memcmp(&e, &e2, sizeof e) != 0)
			abort();
		free(buf);
		size_t n1 = fleet_endpoint_msg(owner, &e, m1), n2 = fleet_endpoint_msg(owner, &e2, m2);
		if (n1 > FLEET_EP_MSG_MAX || n1 != n2 || memcmp(m1, m2, n1) != 0)
			abort();
	}
	return 0;
}
