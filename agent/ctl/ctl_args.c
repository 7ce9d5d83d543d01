/* agent/ctl/ctl_args.c: see ctl_args.h. */
#include "agent/ctl/ctl_args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* The value is there and of the right type, but refused by the row's rule. */
static int refused(const struct ctl_arg *a, struct ctl_enc *out)
{
	const char *msg = a->invalid ? a->invalid : a->bad;
	if (msg)
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "%s", msg);
	else
		ctl_enc_fail(out, CTL_E_BAD_REQUEST, "argument \"%s\" is not valid", a->key);
	return -EINVAL;
}

/* One row: 0, or <0 with the error response written. */
static int decode_one(const struct ctl_arg *a, const struct ctl_request *req, char *base,
		      struct ctl_enc *out)
{
	const msgpack_object *o;
	char *s = NULL;
	int r;

	switch (a->type) {
	case CTL_ARG_STR:
		r = ctl_arg_str(req, a->key, &s);
		if (r == -ENOENT && !a->required)
			return 0;
		if (r == -ENOMEM) {
			ctl_enc_fail(out, CTL_E_INTERNAL, "%s", strerror(ENOMEM));
			return r;
		}
		if (r < 0) {
			if (a->bad)
				ctl_enc_fail(out, CTL_E_BAD_REQUEST, "%s", a->bad);
			else if (r == -ENOENT)
				ctl_enc_fail(out, CTL_E_BAD_REQUEST, "missing argument \"%s\"", a->key);
			else
				ctl_enc_fail(out, CTL_E_BAD_REQUEST,
					     "argument \"%s\" must be a non-empty string without NUL "
					     "bytes", a->key);
			return -EINVAL;
		}
		/* stored first, so that a refused value is released with the rest */
		memcpy(base + a->offset, &s, sizeof s);
		if ((a->check && a->check(s) < 0) || (a->max_len && strlen(s) > a->max_len))
			return refused(a, out);
		return 0;
	case CTL_ARG_UINT:
		o = ctl_map_get(req->args, a->key);
		if (!o || o->type == MSGPACK_OBJECT_NIL)
			return 0;
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
			if (a->bad)
				ctl_enc_fail(out, CTL_E_BAD_REQUEST, "%s", a->bad);
			else
				ctl_enc_fail(out, CTL_E_BAD_REQUEST,
					     "\"%s\" must be a non-negative integer", a->key);
			return -EINVAL;
		}
		if (a->max && o->via.u64 > a->max)
			return refused(a, out);
		memcpy(base + a->offset, &o->via.u64, sizeof o->via.u64);
		return 0;
	case CTL_ARG_FLAG: {
		o = ctl_map_get(req->args, a->key);
		bool v = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
		memcpy(base + a->offset, &v, sizeof v);
		return 0;
	}
	}
	ctl_enc_fail(out, CTL_E_INTERNAL, "argument \"%s\" of an unknown type", a->key);
	return -EINVAL;
}

int ctl_args_decode(const struct ctl_args_spec *spec, const struct ctl_request *req, void *ret,
		    struct ctl_enc *out)
{
	memset(ret, 0, spec->size);
	for (size_t i = 0; i < spec->nargs; i++) {
		int r = decode_one(&spec->args[i], req, ret, out);
		if (r < 0) {
			ctl_args_release(spec, ret);
			return r;
		}
	}
	return 0;
}

void ctl_args_release(const struct ctl_args_spec *spec, void *args)
{
	char *base = args;
	for (size_t i = 0; i < spec->nargs; i++) {
		char *s;
		if (spec->args[i].type != CTL_ARG_STR)
			continue;
		memcpy(&s, base + spec->args[i].offset, sizeof s);
		free(s);
		s = NULL;
		memcpy(base + spec->args[i].offset, &s, sizeof s);
	}
}

enum ctl_err agent_ctl_err_from_errno(int err)
{
	switch (-err) {
	case STORE_EINVALID: case STORE_EBADPATH: case STORE_EFORMAT: return CTL_E_INVALID_ARTIFACT;
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

