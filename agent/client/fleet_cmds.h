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

/*
 * The operator key of a change (agent/base/sign.h): the file @flag (--key), else
 * $SHOAL_OPERATOR_KEY. @what names the change in the error ("a deploy"). 0 and *ret; -1 after
 * saying what is missing and how to make and trust one (the same words for every change).
 */
struct sign_key;
int fleet_cmds_op_key(const char *flag, const char *what, struct sign_key *ret);

#endif
