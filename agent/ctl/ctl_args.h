/*
 * agent/ctl/ctl_args.h: what an operation's request means and how its failure is named.
 *
 * The control protocol's framing and codec are ctl_proto.h; this header holds what every room
 * that serves operations shares above the codec: the one mapping from an error code of the
 * store, the importer or the system to the protocol's stable error name.
 */
#ifndef SHOAL_CTL_ARGS_H
#define SHOAL_CTL_ARGS_H

#include "agent/ctl/ctl_proto.h"

/*
 * The stable error name for an error code of the store, the importer or the system, as the
 * control protocol reports it (e.g. -STORE_ENOREF -> CTL_E_NO_SUCH_REF, -ENOSPC ->
 * CTL_E_NO_SPACE, -ENOENT -> CTL_E_NOT_FOUND, anything unknown -> CTL_E_INTERNAL).
 */
enum ctl_err agent_ctl_err_from_errno(int err);

#endif
