/* agent/ctl/ctl_args.c: see ctl_args.h. */
#include "agent/ctl/ctl_args.h"

#include <errno.h>

#include "store/store.h"

enum ctl_err agent_ctl_err_from_errno(int err)
{
	switch (-err) {
	case STORE_EINVALID: return CTL_E_INVALID_ARTIFACT;
	case STORE_ENOTREPO: return CTL_E_NOT_A_REPO;
	case STORE_ENOREF: return CTL_E_NO_SUCH_REF;
	case STORE_ETOOBIG: return CTL_E_TOO_BIG;
	case STORE_EESCAPE: return CTL_E_ESCAPES_TREE;
	case ENOSPC: case EDQUOT: case EFBIG: return CTL_E_NO_SPACE;
	case ENOENT: case ENOTDIR: return CTL_E_NOT_FOUND;
	case EEXIST: return CTL_E_AMBIGUOUS;
	case EACCES: case EPERM: return CTL_E_PERMISSION_DENIED;
	case EINVAL: return CTL_E_BAD_REQUEST;
	default: return CTL_E_INTERNAL;
	}
}

