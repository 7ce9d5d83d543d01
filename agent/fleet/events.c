/*
 * agent/fleet/events.c: the ring of events behind `agentctl events` (fleet.h: FLEET_EVENTS_MAX).
 */
#include "agent/fleet/fleet_int.h"

void fleet__event(struct fleet *b, const char *kind, const char *service, uint64_t rev,
		  const char *fmt, ...)
{
	struct fleet_ev *e = &b->ring[b->seq % FLEET_EVENTS_MAX];
	va_list ap;
	memset(e, 0, sizeof *e);
	e->seq = ++b->seq;
	e->wall_ms = agent_now_ms();
	snprintf(e->kind, sizeof e->kind, "%s", kind);
	snprintf(e->service, sizeof e->service, "%s", service ? service : "");
	e->rev = rev;
	snprintf(e->node, sizeof e->node, "%s", b->name);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	log_info("event %s %s rev %" PRIu64 ": %s", e->kind, e->service, rev, e->text);
}

uint64_t fleet_event_seq(const struct fleet *b)
{
	return b->seq;
}
