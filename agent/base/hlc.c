/*
 * agent/base/hlc.c: hybrid logical clock; see hlc.h for the algorithm and the packed encoding.
 */
#include "agent/base/hlc.h"

#include <errno.h>

void hlc_init(struct hlc *h, uint64_t max_ahead_ms)
{
	h->last = 0;
	h->max_ahead_ms = max_ahead_ms ? max_ahead_ms : HLC_DEFAULT_MAX_AHEAD_MS;
}

void hlc_restore(struct hlc *h, uint64_t high_water)
{
	if (high_water > h->last)
		h->last = high_water;
}

/* max(last + 1, floor, wall << 16), or -EOVERFLOW when last + 1 does not fit. */
static int hlc_next(const struct hlc *h, uint64_t wall_ms, uint64_t floor, uint64_t *ret_t)
{
	uint64_t t;

	if (wall_ms > HLC_PHYS_MAX)
		return -EINVAL;
	if (h->last == UINT64_MAX || floor == UINT64_MAX)
		return -EOVERFLOW;
	t = h->last + 1;
	if (floor + 1 > t)
		t = floor + 1;
	if (hlc_make(wall_ms, 0) > t)
		t = hlc_make(wall_ms, 0);
	*ret_t = t;
	return 0;
}

int hlc_now(struct hlc *h, uint64_t wall_ms, uint64_t *ret_t)
{
	uint64_t t;
	int r;

	r = hlc_next(h, wall_ms, 0, &t);
	if (r < 0)
		return r;
	h->last = t;
	*ret_t = t;
	return 0;
}

int hlc_update(struct hlc *h, uint64_t wall_ms, uint64_t remote, uint64_t *ret_t)
{
	uint64_t t;
	int r;

	if (wall_ms > HLC_PHYS_MAX)
		return -EINVAL;
	/* Written to avoid overflow: wall_ms <= 2^48 and max_ahead_ms is caller-sane, but a huge
	 * max_ahead_ms must not wrap around and reject everything. */
	if (hlc_phys(remote) > wall_ms && hlc_phys(remote) - wall_ms > h->max_ahead_ms)
		return -ERANGE;
	r = hlc_next(h, wall_ms, remote, &t);
	if (r < 0)
		return r;
	h->last = t;
	if (ret_t)
		*ret_t = t;
	return 0;
}
