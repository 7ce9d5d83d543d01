/*
 * agent/fleet/pacing.c: may a swap start now (max_parallel_per_site, see fleet.h "Pacing").
 */
#include "agent/fleet/fleet_int.h"

bool fleet__may_start(void *ud, const char *service, uint64_t rev)
{
	struct fleet *b = ud;
	struct svc *v = fleet__svc_find(b, service);
	if (!v)
		return true;
	if (b->max_par) {
		unsigned busy = 0;
		const char *mysite = b->has_site ? b->site : "";
		bool settling = uv_now(b->loop) - v->desired_since < SETTLE_MS;
		for (size_t i = 0; i < b->nmembers; i++) {
			const struct agree_member *m = &b->members[i];
			if (memcmp(m->id, b->id, STORE_NODE_ID_LEN) == 0 ||
			    m->state == AGREE_DEAD || m->state == AGREE_LEFT ||
			    strcmp(m->site ? m->site : "", mysite) != 0)
				continue;
			const struct peer_health *p = fleet__peer_find(b, m->id, service);
			/* a slot is taken by a peer that says it is swapping, or RESERVED by a
			 * peer with a lower id that must swap to this rev too (its record says
			 * so, or, while the news settles, it has not said anything yet): the
			 * nodes of a site thus follow a common order instead of all starting
			 * at the instant they learn of a new revision */
			if (p && p->h.swapping) {
				busy++;
				continue;
			}
			if (memcmp(m->id, b->id, STORE_NODE_ID_LEN) > 0 || (p && p->h.running_rev == rev))
				continue;
			if ((p && p->h.desired_rev == rev) || settling)
				busy++;
		}
		if (busy >= b->max_par) {
			fleet__event(b, "paced", service, rev, "%u node(s) of this site are swapping", busy);
			return false;
		}
	}
	v->swapping = true;
	/* only pacing reads a peer's swapping flag at once; without it the flag rides along
	 * with the swap's next change (the artifact arrived, the swap done) if that comes
	 * within DESIRED_PUBLISH_MS: one signed version fewer for every node to verify */
	fleet__publish_health_in(b, v, b->max_par ? PUBLISH_MS : DESIRED_PUBLISH_MS);
	return true;
}
