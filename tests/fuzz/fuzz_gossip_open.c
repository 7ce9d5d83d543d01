/*
 * Fuzz the receive path of the gossip transport: arbitrary bytes as a sealed datagram, as a TCP
 * stream of frames, and as keyring file text. Nothing may crash, read out of bounds or leak;
 * forged packets must never open (the fuzzer does not know the key).
 *
 * Input layout: byte 0 selects the path (mod 3), the rest is the payload. The seeds in
 * corpus/gossip_open/ include genuine packets sealed under the fixed key below, so the fuzzer
 * starts from inputs that pass the length, version and key id checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/crypto.h"

/* Fixed test key; its packets appear in the seed corpus. */
static const uint8_t fuzz_key[GOSSIP_KEY_LEN] = {
	0x5e, 0x0a, 0x1c, 0x77, 0x21, 0x90, 0x3b, 0x44, 0x12, 0xfe, 0x6d,
	0x08, 0x99, 0x31, 0xc4, 0x5a, 0x7b, 0x02, 0xe3, 0x66, 0x19, 0xaa,
	0x40, 0x8d, 0x57, 0x2f, 0xb1, 0x0c, 0x93, 0x75, 0xde, 0x11,
};
static const uint8_t fuzz_self[GOSSIP_SENDER_LEN] = {0xee, 0xee, 0xee, 0xee};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_keyring *kr = NULL;
	struct gossip_crypto *c = NULL;
	uint8_t *out = NULL;
	size_t m = 0;

	if (size < 1)
		return 0;
	if (gossip_keyring_new(&kr) < 0)
		return 0;
	if (gossip_keyring_install(kr, fuzz_key, NULL) < 0)
		goto out;
	if (gossip_crypto_new(kr, "fuzz", fuzz_self, 1, &c) < 0)
		goto out;
	out = malloc(size + 1);
	if (!out)
		goto out;
	switch (data[0] % 3) {
	case 0: /* one datagram, opened twice: the second time must be a replay or a failure */
		if (gossip_crypto_open(c, GOSSIP_SEAL_DATAGRAM, data + 1, size - 1, out, size, &m,
				       NULL) == 0) {
			if (m + GOSSIP_SEAL_OVERHEAD_BYTES != size - 1)
				abort();
			if (gossip_crypto_open(c, GOSSIP_SEAL_DATAGRAM, data + 1, size - 1, out,
					       size, &m, NULL) == 0)
				abort();
		}
		break;
	case 1: { /* a TCP stream: frames one after another until an error or the end */
		size_t pos = 1;

		while (pos < size) {
			size_t need = 0;
			int r = gossip_frame_parse(data + pos, size - pos, &need);

			if (r <= 0)
				break;
			if (need > size - pos || need < GOSSIP_FRAME_PREFIX)
				abort();
			(void)gossip_crypto_open(c, GOSSIP_SEAL_STREAM,
						 data + pos + GOSSIP_FRAME_PREFIX,
						 need - GOSSIP_FRAME_PREFIX, out, size, &m, NULL);
			pos += need;
		}
		break;
	}
	default: { /* keyring text */
		struct gossip_keyring *k2 = NULL;

		if (gossip_keyring_new(&k2) == 0) {
			if (gossip_keyring_parse(k2, (const char *)data + 1, size - 1) == 0 &&
			    (gossip_keyring_count(k2) == 0 || gossip_keyring_primary(k2) < 0))
				abort();
			gossip_keyring_free(k2);
		}
		break;
	}
	}
out:
	free(out);
	gossip_crypto_free(c);
	gossip_keyring_free(kr);
	return 0;
}
