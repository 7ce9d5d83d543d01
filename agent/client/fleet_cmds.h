/*
 * agent/client/fleet_cmds.h: agentctl's commands of the replicated fleet state (fleet_cmds.c):
 * deploy, rollback, votes, services, events, history. They speak the control protocol
 * (ctl/ctl_client.h) to the agent's fleet operations (fleet/fleet.h lists their arguments and
 * results); nothing of the fleet itself is linked into agentctl.
 */
#ifndef SHOAL_CLIENT_FLEET_CMDS_H
#define SHOAL_CLIENT_FLEET_CMDS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * @argv[0] is the command. Returns the exit status, or -1 if @cmd is not one of them.
 * fleet_cmds_status prints the cluster and services part of `agentctl status`.
 */
int fleet_cmds_main(const char *socket, bool json, uint64_t timeout_ms, const char *cmd, int argc,
		   char **argv);
int fleet_cmds_status(const char *socket, bool json, uint64_t timeout_ms);

#endif
