/*
 * tests/fuzz/fuzz_store_manifest.c: store_manifest_decode on arbitrary bytes (manifests arrive
 * from peers and from disk). Anything refused must be a clean error (-EBADMSG, -STORE_EFORMAT,
 * or the code store_manifest_validate gives a manifest it refuses); anything accepted must pass
 * store_manifest_validate, re-encode, and that encoding must decode to the same manifest and
 * re-encode to the same bytes (the encoding is canonical: an artifact id never depends on who
 * encoded it).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static int manifest_eq(const struct store_manifest *a, const struct store_manifest *b)
{
	if (!str_eq(a->service, b->service) || !str_eq(a->runtime, b->runtime) ||
	    !str_eq(a->version, b->version) || !str_eq(a->exec_command, b->exec_command) ||
	    !str_eq(a->systemd_unit, b->systemd_unit) ||
	    !str_eq(a->container_image, b->container_image) ||
	    !str_eq(a->container_archive, b->container_archive) ||
	    !str_eq(a->health.http, b->health.http) || !str_eq(a->health.tcp, b->health.tcp) ||
	    !str_eq(a->health.exec, b->health.exec) ||
	    a->health.interval_ms != b->health.interval_ms ||
	    a->health.timeout_ms != b->health.timeout_ms || a->health.failures != b->health.failures ||
	    a->health.deadline_ms != b->health.deadline_ms || a->endpoint.port != b->endpoint.port ||
	    !str_eq(a->endpoint.address, b->endpoint.address) ||
	    a->endpoint.weight != b->endpoint.weight || a->endpoint.protocol != b->endpoint.protocol ||
	    a->endpoint.drain_ms != b->endpoint.drain_ms ||
	    a->recovery.restarts != b->recovery.restarts ||
	    a->recovery.remove_unhealthy != b->recovery.remove_unhealthy ||
	    !str_eq(a->git_commit, b->git_commit) ||
	    !str_eq(a->git_tag, b->git_tag) || !str_eq(a->git_author, b->git_author) ||
	    !str_eq(a->git_message, b->git_message) || a->nfiles != b->nfiles)
		return 0;
	for (size_t i = 0; i < a->nfiles; i++)
		if (!str_eq(a->files[i].path, b->files[i].path) || a->files[i].mode != b->files[i].mode ||
		    a->files[i].size != b->files[i].size ||
		    memcmp(&a->files[i].blob, &b->files[i].blob, sizeof(a->files[i].blob)))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_manifest m, m2;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t len, len2;
	int r = store_manifest_decode(data, size, &m);
	if (r < 0) {
		if (r != -EBADMSG && r != -ENOMEM && r != -STORE_EFORMAT && r != -STORE_EBADPATH &&
		    r != -STORE_EINVALID)
			abort();
		return 0;
	}
	/* Decoding ran the validation already; with the default limits only size rules remain. */
	r = store_manifest_validate(&m, NULL, NULL, NULL, 0);
	if (r < 0 && r != -STORE_ETOOBIG)
		abort();
	if (store_manifest_encode(&m, &enc, &len) < 0)
		abort(); /* whatever decodes is valid, so it must encode */
	if (store_manifest_decode(enc, len, &m2) < 0 || !manifest_eq(&m, &m2))
		abort();
	if (store_manifest_encode(&m2, &enc2, &len2) < 0 || len != len2 || memcmp(enc, enc2, len))
		abort();
	struct store_id a, b;
	if (store_manifest_id(&m, &a) < 0 || store_manifest_id(&m2, &b) < 0 || memcmp(&a, &b, sizeof(a)))
		abort();
	store_manifest_release(&m);
	store_manifest_release(&m2);
	free(enc);
	free(enc2);
	return 0;
}
