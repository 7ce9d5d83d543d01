/*
 * tests/sim/sim_gossip_harness.h: a deterministic cluster of real gossip cores in one process.
 *
 * N struct gossip run on a virtual clock driven by a priority queue of events (packet
 * deliveries, core deadlines, anti-entropy rounds). All randomness comes from one seeded
 * PRNG: the seed is printed ("seed=N") and SEED=N in the environment replays a run exactly.
 * The network is a function of the sender and receiver: base delay + jitter, a loss rate
 * (global, and per node), partitions (nodes in different groups cannot talk), crashed nodes
 * (nothing in, nothing out) and slow nodes (every packet and timer they handle is delayed).
 * Anti-entropy is driven by the harness exactly as the transport does it: every
 * sync_interval_ms each node picks a peer with gossip_sync_pick and runs the
 * digest/diff/apply exchange (reliable, like TCP, but only across a working link), and the
 * exchange of a join is followed by the transport's follow-ups (gossip/transport.h:
 * GOSSIP_TRANSPORT_FOLLOWUP_MS later, again while the digests differ).
 * A restart is what an agent does: a new core with the persisted incarnation + 1, the member
 * table and records it had persisted restored, then a join to a few members it knew.
 */
#ifndef SHOAL_SIM_GOSSIP_HARNESS_H
#define SHOAL_SIM_GOSSIP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

struct simg;

struct simg_opts {
	unsigned max_nodes;		/* capacity (nodes are never removed, only crashed) */
	uint64_t seed;			/* 0: from SEED env, or from the time */
	uint32_t delay_ms;		/* one-way base delay; default 1 */
	uint32_t jitter_ms;		/* + uniform [0, jitter]; default 2 */
	double loss;			/* drop probability per packet, every link */
	uint32_t sync_interval_ms;	/* anti-entropy period per node; 0 = none */
	struct gossip_config cfg;	/* template for every node (id, name, addr filled in) */
	bool quiet;			/* don't print "seed=N" (the caller does) */
};

/* Hooks for scenarios: called for every callback of every core. */
struct simg_hooks {
	void (*on_member)(void *ud, struct simg *s, unsigned observer,
			  const struct gossip_member *m);
	void (*on_record)(void *ud, struct simg *s, unsigned observer,
			  const struct gossip_record *r);
	void *ud;
};

struct simg *simg_new(const struct simg_opts *o);
void simg_free(struct simg *s);
void simg_set_hooks(struct simg *s, const struct simg_hooks *h);
uint64_t simg_seed(const struct simg *s);
uint64_t simg_now(const struct simg *s);
/* Node @i's own clock (what its core is given, and its members' state_change are in). */
uint64_t simg_node_now(const struct simg *s, unsigned i);
uint32_t simg_rand(struct simg *s);

/* Create node @i (a new id) now and join it to @seed (-1: no join). Returns the index. */
int simg_spawn(struct simg *s, int seed);
/*
 * Create @n nodes now, each already holding every node of the cluster (those spawned before
 * included) as alive at its current incarnation, as if each had restarted from the table a
 * converged cluster persisted (gossip_member_restore): no joins, no message exchanged. For
 * clusters too big to converge by joining in reasonable time. Returns 0, -ENOSPC or the
 * error of gossip_new / gossip_member_restore.
 */
int simg_spawn_converged(struct simg *s, unsigned n);
unsigned simg_count(const struct simg *s);
struct gossip *simg_core(struct simg *s, unsigned i);	/* NULL while crashed */
bool simg_up(const struct simg *s, unsigned i);
const uint8_t *simg_id(const struct simg *s, unsigned i);
/* Index of the node with this id, or -1. */
int simg_index(const struct simg *s, const uint8_t *id);

void simg_crash(struct simg *s, unsigned i);	/* persisted state kept for a restart */
int simg_restart(struct simg *s, unsigned i);
void simg_leave(struct simg *s, unsigned i);	/* gossip_leave; the node keeps running */
void simg_stop(struct simg *s, unsigned i);	/* after a leave: free the core, no restart */

void simg_set_group(struct simg *s, unsigned i, int group);	/* partition */
void simg_set_loss(struct simg *s, double loss);
void simg_set_node_loss(struct simg *s, unsigned i, double loss);	/* in and out */
void simg_set_slow(struct simg *s, unsigned i, uint32_t ms);
/* Per-link override, directed a -> b: extra loss probability (1.0 cuts it) and extra delay.
 * Anti-entropy between a and b fails while either direction has loss >= 1. */
void simg_set_link(struct simg *s, unsigned a, unsigned b, double loss, uint32_t delay_ms);
/* Change the anti-entropy period (0 stops it; rounds already scheduled still run once). */
void simg_set_sync_interval(struct simg *s, uint32_t ms);

int simg_put(struct simg *s, unsigned i, const char *key, uint64_t version, const void *val,
	     size_t len);

/* Run events up to virtual time @t (inclusive). */
void simg_run_until(struct simg *s, uint64_t t);
/* Run in steps of @step_ms until @pred is true or @limit_ms passed. Returns the virtual time
 * at which @pred held, or 0 if it never did. */
uint64_t simg_run_until_pred(struct simg *s, bool (*pred)(struct simg *s, void *ud), void *ud,
			     uint64_t step_ms, uint64_t limit_ms);

/* Up nodes that see exactly the up nodes as alive (and nobody else alive). */
bool simg_converged(struct simg *s, void *ud);

struct simg_traffic {
	uint64_t packets, bytes, dropped, syncs, sync_bytes;
};
void simg_traffic(const struct simg *s, struct simg_traffic *ret);

#endif
