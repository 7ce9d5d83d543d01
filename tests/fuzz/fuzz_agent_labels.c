/*
 * Fuzz the member label blob decoders of agent/cluster/cluster.c (the blob arrives from any member over
 * gossip): cluster_label_get and cluster_labels_format must return a value or -EBADMSG, never
 * crash, read out of bounds or leak, and agree on whether the blob is well formed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cluster/cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char v[32], all[512];
	if (size > GOSSIP_LABELS_MAX)
		size = GOSSIP_LABELS_MAX;
	int g = cluster_label_get(data, size, "site", v, sizeof v);
	int f = cluster_labels_format(data, size, all, sizeof all);
	if (g >= 0 && strlen(v) >= sizeof v)
		abort();
	if (f >= 0 && strlen(all) >= sizeof all)
		abort();
	/* A blob the formatter refuses is refused by the getter too, and the other way round. */
	if (size && (g == -EBADMSG) != (f == -EBADMSG))
		abort();
	return 0;
}
