/*
 * Fuzz target for the read API's request parser (agent/daemon/catalog.c): every byte of a
 * request comes from whoever reaches the --http-api port. A request is accepted (0) or refused
 * with one of the documented statuses; an accepted one names a known path, a valid service
 * for /v1/catalog/SERVICE, and a wait within bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/daemon/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct catalog_req r;
	char err[160];
	size_t hl = catalog_head_len((const char *)data, size);
	if (hl && (hl < 4 || hl > size || memcmp(data + hl - 4, "\r\n\r\n", 4) != 0))
		abort();
	int st = catalog_parse_request((const char *)data, size, &r, err, sizeof err);
	switch (st) {
	case 0:
		if (r.path != CATALOG_ALL && r.path != CATALOG_SERVICE && r.path != CATALOG_HTTP_SD)
			abort();
		if (r.path == CATALOG_SERVICE && (!r.service[0] || strlen(r.service) > 64 ||
						  strchr(r.service, '/')))
			abort();
		if (r.wait_ms > CATALOG_WAIT_MAX)
			abort();
		if (hl != size)
			abort();
		break;
	case 400: case 404: case 405: case 414: case 431: case 505:
		if (!memchr(err, 0, sizeof err) || !err[0])
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
