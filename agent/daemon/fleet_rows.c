/*
 * agent/fleet_ops.c: the brain's control operations as ctl_server ops (ud = struct agent *).
 * They are INLINE ops: the brain lives on the loop thread. See brain.h for the table.
 */
#include "agent/daemon/agent.h"
#include "agent/fleet/fleet.h"

static void run(void *ud, const char *op, const struct ctl_request *req,
		const struct ctl_peer *peer, struct ctl_enc *out)
{
	struct agent *a = ud;
	fleet_ctl(a->fleet, op, req, peer, out);
}

void fleet_op_deploy(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	run(ud, "deploy", req, peer, out);
}

void fleet_op_rollback(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		       struct ctl_enc *out)
{
	run(ud, "rollback", req, peer, out);
}

void fleet_op_votes(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		    struct ctl_enc *out)
{
	run(ud, "votes", req, peer, out);
}

void fleet_op_services(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		       struct ctl_enc *out)
{
	run(ud, "services", req, peer, out);
}

void fleet_op_status(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	run(ud, "brain.status", req, peer, out);
}

void fleet_op_events(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		     struct ctl_enc *out)
{
	run(ud, "events", req, peer, out);
}

void fleet_op_history(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		      struct ctl_enc *out)
{
	run(ud, "history", req, peer, out);
}
