/*
 * tests/integration/store_crash_gen.h: the artifacts of the store crash test, as a pure function
 * of a seed, so the checker can regenerate what the crasher imported.
 */
#ifndef STORE_CRASH_GEN_H
#define STORE_CRASH_GEN_H

#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

static inline uint64_t cg_next(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 2685821657736338717ull;
}

/* Number of files of artifact @seed (1..3). */
static inline unsigned cg_nfiles(uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	return 1 + (unsigned)(cg_next(&x) % 3);
}

/* Size of file @j: mostly small, some multi-chunk, a few over one import batch (8 MiB). */
static inline size_t cg_size(uint64_t seed, unsigned j)
{
	uint64_t x = (seed * 0x9e3779b97f4a7c15ull) ^ (j + 7) * 0xbf58476d1ce4e5b9ull;
	cg_next(&x);
	uint64_t r = cg_next(&x);
	switch (r % 10) {
	case 0:
		return (size_t)(r >> 8) % (9 * STORE_CHUNK_SIZE) + 8 * 1024 * 1024;
	case 1: case 2: case 3:
		return (size_t)(r >> 8) % (4 * STORE_CHUNK_SIZE) + STORE_CHUNK_SIZE;
	default:
		return (size_t)(r >> 8) % 70000;
	}
}

static inline void cg_fill(uint64_t seed, unsigned j, uint8_t *buf, size_t len)
{
	uint64_t x = (seed + 1) * 0x94d049bb133111ebull + j + 1;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = cg_next(&x);
		for (int k = 0; k < 8; k++)
			buf[i + k] = (uint8_t)(v >> (8 * k));
	}
	for (size_t i = len & ~(size_t)7; i < len; i++)
		buf[i] = (uint8_t)cg_next(&x);
}

static inline void cg_path(unsigned j, char *out, size_t cap)
{
	snprintf(out, cap, "dir%u/file%u", j % 2, j);
}

#endif
