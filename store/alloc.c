/*
 * store/alloc.c: the store's allocator, with a fault-injection hook for the OOM loop tests.
 *
 * Every allocation the store makes itself (records, manifests, revisions, buffers, msgpack
 * encodings through our own msgpack-c write callback, decoded strings, import state, foreach
 * collections) goes through store__malloc & co. LMDB's and libsodium's internal allocations
 * do not; they are few (LMDB allocates its transaction and cursor structures and dirty-page
 * lists) and LMDB reports their failure as ENOMEM, which we pass on.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* Allocations left before the injected failure; < 0 = off. */
static atomic_long fail_after = -1;
static atomic_bool fail_persistent;
static atomic_long alloc_count;

void store__alloc_fail_after(long n, bool persistent)
{
	atomic_store(&fail_persistent, persistent);
	atomic_store(&fail_after, n);
}

long store__alloc_count(void)
{
	return atomic_load(&alloc_count);
}

/* true when this allocation must fail. */
static bool should_fail(void)
{
	atomic_fetch_add(&alloc_count, 1);
	long n = atomic_load(&fail_after);
	if (n < 0)
		return false;
	if (n > 1) {
		atomic_fetch_sub(&fail_after, 1);
		return false;
	}
	/* n is 0 or 1: this is the failing allocation. */
	if (!atomic_load(&fail_persistent))
		atomic_store(&fail_after, -1);
	else
		atomic_store(&fail_after, 0);
	return true;
}

void *store__malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *store__calloc(size_t nmemb, size_t n)
{
	if (should_fail())
		return NULL;
	if (nmemb == 0 || n == 0)
		nmemb = n = 1;
	return calloc(nmemb, n);
}

void *store__realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

char *store__strndup(const char *s, size_t n)
{
	char *d = store__malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *store__strdup(const char *s)
{
	return store__strndup(s, strlen(s));
}

void store__free(void *p)
{
	free(p);
}

int store__buf_append(struct store__buf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX - b->len)
		return -ENOMEM;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = store__realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int store__buf_write_cb(void *data, const char *buf, size_t len)
{
	return store__buf_append(data, buf, len) < 0 ? -1 : 0;
}
