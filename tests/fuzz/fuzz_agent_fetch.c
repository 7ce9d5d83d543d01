/*
 * Fuzz the frame decoder of the peer-to-peer artifact fetch (agent/cluster/fetch.c): frames arrive from
 * any cluster member. fetch_msg_decode must return 0, -EBADMSG or -EPROTONOSUPPORT, never
 * crash, read out of bounds or leak; what it accepts must stay within the input and
 * re-encode to a frame that decodes to the same message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cluster/fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_msg m, again;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = fetch_msg_decode(data, size, &m);

	if (r != 0 && r != -EBADMSG && r != -EPROTONOSUPPORT)
		abort();
	if (r != 0)
		return 0;
	if (m.data && (m.data < data || m.data + m.len > data + size))
		abort();
	if (m.type == FETCH_CHUNK && m.len > STORE_CHUNK_SIZE)
		abort();
	if (m.type == FETCH_BLOB &&
	    (m.len % STORE_ID_LEN || m.len / STORE_ID_LEN > FETCH_HASHES_MAX))
		abort();
	/* accepted frames round-trip */
	if (fetch_msg_encode(&m, &buf, &len) != 0)
		abort();
	if (fetch_msg_decode(buf, len, &again) != 0 || again.type != m.type ||
	    memcmp(again.id.b, m.id.b, STORE_ID_LEN) != 0 || again.index != m.index ||
	    again.size != m.size || again.code != m.code || again.len != m.len ||
	    (m.len && memcmp(again.data, m.data, m.len) != 0))
		abort();
	free(buf);
	return 0;
}
