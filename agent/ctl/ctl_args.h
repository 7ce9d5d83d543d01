/*
 * agent/ctl/ctl_args.h: the arguments of an operation, decoded and checked in one place, and
 * the names of its failures.
 *
 * The control protocol's framing and codec are ctl_proto.h. Above the codec, every room that
 * serves operations declares what its operation takes as a table of struct ctl_arg (key, type,
 * required or not, where it goes in the op's own argument struct, the rule a value must meet
 * and the message a client gets otherwise), and ctl_args_decode turns a request into that
 * struct or answers bad_request. The op function then receives the struct, never the request:
 *
 *     struct fleet_rollback_args { char *service, *scope, *reason; uint64_t to; bool local; };
 *     static const struct ctl_arg rollback_args[] = {
 *             {"service", CTL_ARG_STR, .required = true,
 *              .offset = offsetof(struct fleet_rollback_args, service),
 *              .check = agent_config_check_name, .bad = "\"service\" must be a service name"},
 *             {"to", CTL_ARG_UINT, .offset = offsetof(..., to)},
 *             ...
 *     };
 *
 * Rows are checked in table order and the first failure answers: the order is part of the
 * protocol (it decides which message a request with two faults gets).
 *
 * Also here: the one mapping from an error code of the store, the importer or the system to the
 * protocol's stable error name. Thread-safe: nothing here keeps state.
 */
#ifndef SHOAL_CTL_ARGS_H
#define SHOAL_CTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/ctl/ctl_proto.h"

enum ctl_arg_type {
	CTL_ARG_STR,	/* char * (malloc'd, ctl_args_release frees it): a non-empty string of at
			 * most 4096 bytes without NUL; absent or nil: NULL */
	CTL_ARG_UINT,	/* uint64_t: a non-negative integer; absent or nil: 0 */
	CTL_ARG_FLAG,	/* bool: true for the boolean true, false for anything else (never fails) */
};

struct ctl_arg {
	const char *key;
	enum ctl_arg_type type;
	bool required;			/* STR: absent or nil is a failure */
	size_t offset;			/* of the field in the op's argument struct */
	/* bad_request message when the value is missing or of the wrong type; NULL: the
	 * protocol's defaults ("missing argument \"KEY\"", "argument \"KEY\" must be a non-empty
	 * string without NUL bytes", "\"KEY\" must be a non-negative integer") */
	const char *bad;
	int (*check)(const char *s);	/* STR: 0 if the value is fine, <0 if not; NULL: any */
	size_t max_len;			/* STR: at most this many bytes; 0: no more limit */
	uint64_t max;			/* UINT: at most this; 0: no limit */
	const char *invalid;		/* message when check/max_len/max refuse it; NULL: @bad,
					 * else "argument \"KEY\" is not valid" */
};

/* An op's arguments: the rows and the size of the struct they are decoded into. */
struct ctl_args_spec {
	const struct ctl_arg *args;
	size_t nargs;
	size_t size;
};
#define CTL_ARGS_SPEC(type, rows) {(rows), sizeof(rows) / sizeof((rows)[0]), sizeof(type)}

/*
 * Decode @req's arguments into @ret (@spec->size bytes, zeroed first). On a failure: a complete
 * error response in @out (bad_request with the row's message; internal for out of memory),
 * everything decoded so far released, and -EINVAL (or -ENOMEM).
 */
int ctl_args_decode(const struct ctl_args_spec *spec, const struct ctl_request *req, void *ret,
		    struct ctl_enc *out);
/* Free the strings of a struct ctl_args_decode filled (or zeroed); it may be reused after. */
void ctl_args_release(const struct ctl_args_spec *spec, void *args);

/*
 * The stable error name for an error code of the store, the importer or the system, as the
 * control protocol reports it (e.g. -STORE_ENOREF -> CTL_E_NO_SUCH_REF, -ENOSPC ->
 * CTL_E_NO_SPACE, -ENOENT -> CTL_E_NOT_FOUND, anything unknown -> CTL_E_INTERNAL).
 */
enum ctl_err agent_ctl_err_from_errno(int err);

#endif
