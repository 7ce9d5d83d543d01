/*
 * agent/base/hlc.h: hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks and
 * Consistent Snapshots in Globally Distributed Databases", 2014).
 *
 * What it is for
 * --------------
 * Every revision and vote carries an HLC timestamp. An HLC stays close to physical time (so
 * `agentctl history` can show it as a date) yet never goes backwards and always orders an event
 * after every event it could have heard of: if node A stamps a revision with t and node B
 * receives it and then writes anything, B's stamp is > t, whatever B's wall clock says. That
 * is what makes the (hlc, origin) tie-break of concurrent revisions meaningful when clocks
 * are skewed.
 *
 * Encoding: one uint64_t, compared as an integer.
 *
 *     63                                  16 15             0
 *     +-------------------------------------+----------------+
 *     | physical: wall clock, ms since epoch| logical counter|
 *     |            (48 bits)                |   (16 bits)    |
 *     +-------------------------------------+----------------+
 *
 * With the packed form the algorithm of the paper collapses to integer arithmetic:
 *
 *     local event / send:  t = max(last + 1, wall << 16)
 *     receive remote r:    t = max(last + 1, r + 1, wall << 16)
 *
 * (when the logical part would overflow 0xffff, "+ 1" carries into the physical part: the
 * clock borrows one millisecond from the future, which keeps it monotonic; 65536 events in one
 * millisecond are needed for that.)
 *
 * Bounded drift: a remote timestamp whose physical part is more than max_ahead_ms ahead of our
 * wall clock (a peer with a broken clock, or a corrupt record) would drag our clock, and
 * through us the whole cluster, into the future. hlc_update refuses it with -ERANGE and leaves
 * the clock as it was; the caller counts the event (a metric) and may still use the message's
 * content, only its clock does not follow.
 *
 * Purity: the caller passes the wall clock (milliseconds since the Unix epoch, e.g.
 * CLOCK_REALTIME) to every call; this module never reads a clock, so tests and the simulator
 * give each node its own skewed clock. Persist hlc_last() (store meta "hlc high-water") and
 * hand it to hlc_restore() after a restart so a node whose wall clock went backwards across a
 * restart still never reissues a timestamp.
 *
 * Threads: a struct hlc is plain data owned by the caller; no locking.
 */
#ifndef SHOAL_AGENT_HLC_H
#define SHOAL_AGENT_HLC_H

#include <stdint.h>

#define HLC_LOGICAL_BITS 16
#define HLC_LOGICAL_MASK ((UINT64_C(1) << HLC_LOGICAL_BITS) - 1)
#define HLC_PHYS_MAX	 ((UINT64_C(1) << 48) - 1) /* largest wall_ms accepted (year 10889) */
#define HLC_DEFAULT_MAX_AHEAD_MS (60ULL * 60 * 1000) /* one hour */

struct hlc {
	uint64_t last;		/* last timestamp issued or observed; 0 before the first */
	uint64_t max_ahead_ms;	/* remote stamps further ahead of our wall clock: refused */
};

/* Build / split the packed form. */
static inline uint64_t hlc_make(uint64_t phys_ms, uint16_t logical)
{
	return (phys_ms << HLC_LOGICAL_BITS) | logical;
}
static inline uint64_t hlc_phys(uint64_t t)
{
	return t >> HLC_LOGICAL_BITS;
}
static inline uint16_t hlc_logical(uint64_t t)
{
	return (uint16_t)(t & HLC_LOGICAL_MASK);
}

/* Initialise @h with no history. @max_ahead_ms: 0 means HLC_DEFAULT_MAX_AHEAD_MS. */
void hlc_init(struct hlc *h, uint64_t max_ahead_ms);

/*
 * After a restart: never issue anything <= @high_water (the last value persisted). Only moves
 * the clock forward.
 */
void hlc_restore(struct hlc *h, uint64_t high_water);

/* The last timestamp issued or observed (what to persist). */
static inline uint64_t hlc_last(const struct hlc *h)
{
	return h->last;
}

/*
 * Timestamp a local event or an outgoing message.
 * @wall_ms: the caller's wall clock now, ms since the epoch.
 * @return 0 and *ret_t (strictly greater than every timestamp issued or observed before);
 *         -EINVAL if @wall_ms > HLC_PHYS_MAX; -EOVERFLOW if the clock is exhausted (last is
 *         already the largest encodable value; only reachable through hlc_restore/update
 *         with absurd inputs). On failure the clock and *ret_t are untouched.
 */
int hlc_now(struct hlc *h, uint64_t wall_ms, uint64_t *ret_t);

/*
 * Merge the timestamp @remote of a received message, and timestamp the receive event.
 * @ret_t: may be NULL; receives the receive event's timestamp (> last and > @remote).
 * @return 0; -ERANGE if hlc_phys(@remote) > @wall_ms + max_ahead_ms (the remote clock is too
 *         far ahead: refused, clock untouched; count it); -EINVAL if @wall_ms > HLC_PHYS_MAX;
 *         -EOVERFLOW as hlc_now. On failure the clock and *ret_t are untouched.
 */
int hlc_update(struct hlc *h, uint64_t wall_ms, uint64_t remote, uint64_t *ret_t);

#endif
