/*
 * tests/fuzz/fuzz_store_revision.c: store_revision_decode on arbitrary bytes (revisions are
 * gossiped between nodes and read back from disk). Refused input is a clean -EBADMSG; accepted
 * input re-encodes, and decoding that gives the same revision and the same bytes again
 * (format 3: with the electors' keys, the certificate's signed votes and the origin's
 * signature).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int revision_eq(const struct store_revision *a, const struct store_revision *b)
{
	return !strcmp(a->service, b->service) && a->rev == b->rev &&
	       !memcmp(&a->artifact, &b->artifact, sizeof(a->artifact)) && a->kind == b->kind &&
	       !strcmp(a->scope, b->scope) && !memcmp(a->origin, b->origin, sizeof(a->origin)) &&
	       a->hlc == b->hlc && a->operator_uid == b->operator_uid &&
	       a->operator_pid == b->operator_pid && !strcmp(a->reason, b->reason) &&
	       a->ncert == b->ncert &&
	       (a->ncert == 0 || !memcmp(a->cert, b->cert, (size_t)a->ncert * STORE_NODE_ID_LEN)) &&
	       /* format 3: keys, signed votes, origin signature */
	       (a->elect_keys != NULL) == (b->elect_keys != NULL) &&
	       (!a->elect_keys ||
		!memcmp(a->elect_keys, b->elect_keys, (size_t)a->nelect * STORE_KEY_LEN)) &&
	       (a->cert_sigs != NULL) == (b->cert_sigs != NULL) &&
	       (!a->cert_sigs ||
		!memcmp(a->cert_sigs, b->cert_sigs, (size_t)a->ncert * sizeof(*a->cert_sigs))) &&
	       a->cert_subject == b->cert_subject && a->cert_target == b->cert_target &&
	       a->cert_round == b->cert_round &&
	       !memcmp(a->origin_sig, b->origin_sig, STORE_SIG_LEN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_revision r, r2;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t len, len2;
	int e = store_revision_decode(data, size, &r);
	if (e < 0) {
		if (e != -EBADMSG && e != -ENOMEM)
			abort();
		return 0;
	}
	if (store_revision_encode(&r, &enc, &len) < 0)
		abort();
	if (store_revision_decode(enc, len, &r2) < 0 || !revision_eq(&r, &r2))
		abort();
	if (store_revision_encode(&r2, &enc2, &len2) < 0 || len != len2 || memcmp(enc, enc2, len))
		abort();
	store_revision_release(&r);
	store_revision_release(&r2);
	free(enc);
	free(enc2);
	return 0;
}
