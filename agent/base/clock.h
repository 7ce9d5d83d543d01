/*
 * agent/base/clock.h: the wall clock of the agent.
 *
 * One function, here at the bottom of agent/ because every room needs "now" as the cluster sees
 * it: member rows and record versions (cluster/), import times (daemon/), HLC stamps (fleet/).
 * The pure cores (agree/, hlc.h, gossip/) never read a clock; their callers pass this value in.
 *
 * Thread-safe (clock_gettime).
 */
#ifndef SHOAL_AGENT_CLOCK_H
#define SHOAL_AGENT_CLOCK_H

#include <stdint.h>

/* Wall-clock milliseconds since the epoch (CLOCK_REALTIME: it may jump). */
uint64_t agent_now_ms(void);

#endif
