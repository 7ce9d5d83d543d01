/*
 * agent/ctl/ctl_proto.h: the control-socket protocol between agentctl (or any client) and
 * agentd.
 *
 * Shared by the server (ctl_server.c), agentctl, the tests and the fuzzer, so that there is
 * one codec and one list of error names.
 *
 * Framing. Every request and every response is one frame on a unix stream socket:
 *
 *     0        4                         4 + len
 *     +--------+-------------------------+
 *     | len    | one msgpack object      |      len: uint32, big-endian, 1 .. max_frame
 *     +--------+-------------------------+
 *
 * Request:   {"op": str, "args": map}            ("args" optional)
 * Response:  {"ok": true,  "result": any}
 *            {"ok": false, "error": str, "message": str}
 *
 * "error" is one of the stable names of enum ctl_err (ctl_err_name): scripts match on it, so a
 * name never changes meaning and is never removed. "message" is for people.
 *
 * A client sends a request and reads exactly one response; it may pipeline several requests,
 * whose responses come back in order. The server answers a framing error (bad_frame,
 * frame_too_large) and then closes the connection, because it can no longer find the next frame
 * boundary; every other error leaves the connection open.
 *
 * Decoding outside bytes: ctl_msg_decode first walks the payload with a bounds-checked
 * validator (ctl_msgpack_check) that rejects truncated objects, trailing bytes, the reserved 0xc1
 * byte, nesting deeper than CTL_MAX_DEPTH and container counts larger than the bytes left, and
 * only then hands it to msgpack-c. That bounds msgpack-c's allocations to a small multiple of the
 * frame size (it allocates a container's declared count up front) and its recursion depth.
 *
 * Nothing here logs, reads a clock or touches a socket. All functions are thread-safe on
 * distinct objects.
 */
#ifndef SHOAL_CTL_PROTO_H
#define SHOAL_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <msgpack.h>

#define CTL_FRAME_HDR		4
#define CTL_FRAME_MAX_DEFAULT	(1024u * 1024u)	/* 1 MiB */
#define CTL_FRAME_MAX_LIMIT	(64u * 1024u * 1024u)	/* largest max_frame we accept */
#define CTL_MAX_DEPTH		16			/* nesting of arrays/maps */
#define CTL_OP_MAX		64			/* longest op name */

/* Stable error names. Append only; never renumber or rename (clients match on the names). */
enum ctl_err {
	CTL_E_NONE = 0,
	CTL_E_BAD_FRAME,	 /* payload is not exactly one msgpack object */
	CTL_E_FRAME_TOO_LARGE,	 /* declared length over the server's max frame size */
	CTL_E_UNKNOWN_OP,	 /* "op" names no operation of this version */
	CTL_E_BAD_REQUEST,	 /* not a map, "op"/"args" missing or wrongly typed, bad argument */
	CTL_E_NOT_FOUND,	 /* artifact, service, directory ... does not exist */
	CTL_E_AMBIGUOUS,	 /* an id prefix matches several artifacts */
	CTL_E_INVALID_ARTIFACT,	 /* release.ini missing or invalid, bad file in the tree */
	CTL_E_NOT_A_REPO,	 /* git import: not a repository */
	CTL_E_NO_SUCH_REF,	 /* git import: ref (or subdir) not found */
	CTL_E_TOO_BIG,		 /* a file over max-artifact-file-size */
	CTL_E_ESCAPES_TREE,	 /* a symlink points outside the artifact tree */
	CTL_E_NO_SPACE,		 /* the store is full (map at its maximum, or disk full) */
	CTL_E_INTERNAL,		 /* anything else; see the message and the agent's log */
	CTL_E_BUSY,		 /* too many clients; try again */
	CTL_E_TIMEOUT,		 /* the client was too slow sending a frame */
	CTL_E_SHUTTING_DOWN,	 /* the agent is stopping */
	CTL_E_PERMISSION_DENIED, /* the agent may not read the given path */
	CTL_E_CONDEMNED,	 /* deploy of a condemned artifact without --force (brain) */
	CTL_E_NO_REVISION,	 /* nothing to roll back / no such revision (brain) */
	CTL_E__COUNT
};

/* The stable name of @e ("bad_frame", ...); "internal" for out-of-range values. */
const char *ctl_err_name(enum ctl_err e);
/* The code of a name (@len bytes, not NUL-terminated), or -ENOENT if unknown. */
int ctl_err_from_name(const char *name, size_t len);

/* ---- Framing -------------------------------------------------------------------------------- */

/*
 * Look at the first bytes of a stream buffer.
 * @return 0 when fewer than CTL_FRAME_HDR bytes are there (need more);
 *         1 with *ret_len = payload length when the header is complete;
 *         -EBADMSG if the declared length is 0;
 *         -EMSGSIZE if it exceeds @max (*ret_len still set, for the error message).
 */
int ctl_frame_peek(const uint8_t *buf, size_t len, uint32_t max, uint32_t *ret_len);

/* Write the 4-byte big-endian header for a payload of @len bytes into @hdr. */
void ctl_frame_put_header(uint8_t hdr[CTL_FRAME_HDR], uint32_t len);

/* ---- Decoding ------------------------------------------------------------------------------- */

/*
 * Validate that @buf starts with one complete, well-formed msgpack object within the limits
 * described above, and store its length in *ret_used (untouched on failure).
 * @return 0; -EBADMSG if malformed, truncated, too deep or with an impossible container count.
 */
int ctl_msgpack_check(const uint8_t *buf, size_t len, size_t *ret_used);

/*
 * A decoded payload. root borrows from the payload buffer given to ctl_msg_decode (strings point
 * into it) and from the message's zone: it is valid until ctl_msg_release and while that buffer
 * lives and is unchanged.
 */
struct ctl_msg {
	msgpack_unpacked up;
	const msgpack_object *root;
	bool inited;
};

/*
 * Decode @len bytes that must hold exactly one msgpack object.
 * @return 0; -EBADMSG (not one valid object, trailing bytes); -ENOMEM.
 * On failure *ret needs no release (but ctl_msg_release accepts it).
 */
int ctl_msg_decode(const uint8_t *buf, size_t len, struct ctl_msg *ret);
/* Free what ctl_msg_decode allocated; accepts a zeroed or already-released msg. */
void ctl_msg_release(struct ctl_msg *m);

/* The value of string key @key in map @map, or NULL if absent or @map is not a map. */
const msgpack_object *ctl_map_get(const msgpack_object *map, const char *key);

/* True if @o is a str equal to @s. */
bool ctl_obj_streq(const msgpack_object *o, const char *s);

/* A decoded request. op is NUL-terminated (copied); args is NULL or a map inside msg. */
struct ctl_request {
	char op[CTL_OP_MAX + 1];
	const msgpack_object *args;
	struct ctl_msg msg;
};

/*
 * Decode a request payload (without its frame header). @buf must outlive the request.
 * @return 0;
 *         -EBADMSG: not exactly one msgpack object (answer bad_frame, then close);
 *         -EPROTO: an object, but not a map with a string "op" (of at most CTL_OP_MAX bytes, no
 *                  NUL) and an optional map "args" (answer bad_request, keep the connection);
 *         -ENOMEM.
 * When @err is not NULL it receives a one-line reason for -EBADMSG/-EPROTO.
 * On failure *ret needs no release (ctl_request_release accepts it anyway).
 */
int ctl_request_decode(const uint8_t *buf, size_t len, struct ctl_request *ret, char *err,
		       size_t errlen);
void ctl_request_release(struct ctl_request *r);

/*
 * Fetch string argument @key of @r as a malloc'd NUL-terminated copy in *ret (caller frees).
 * @return 0; -ENOENT if absent (or nil) — an error for required arguments, the caller decides;
 *         -EINVAL if present but not a str, empty, containing a NUL byte, or longer than 4096;
 *         -ENOMEM. *ret untouched on failure.
 */
int ctl_arg_str(const struct ctl_request *r, const char *key, char **ret);

/* A decoded response. result/message borrow from msg (see struct ctl_msg). */
struct ctl_response {
	bool ok;
	const msgpack_object *result;	/* ok: the result (never NULL; nil object if absent) */
	char error[32];			/* !ok: the error name ("internal" if unknown/absent) */
	char message[512];		/* !ok: the message, truncated; "" if absent */
	struct ctl_msg msg;
};

/*
 * Decode a response payload. @buf must outlive the response.
 * @return 0; -EBADMSG if not one msgpack map with a bool "ok" (and a str "error" when ok is
 *         false); -ENOMEM.
 */
int ctl_response_decode(const uint8_t *buf, size_t len, struct ctl_response *ret);
void ctl_response_release(struct ctl_response *r);

/* ---- Encoding ------------------------------------------------------------------------------- */

/*
 * An encoder building one frame (header included). Errors are sticky: once a write fails
 * (ENOMEM) every later call is a no-op and ctl_enc_finish reports it, so callers need not check
 * each call.
 *
 *   struct ctl_enc e;
 *   ctl_enc_init(&e);
 *   ctl_enc_ok(&e);  ctl_enc_map(&e, 1); ctl_enc_str(&e, "pong"); ctl_enc_bool(&e, true);
 *   ctl_enc_finish(&e, &buf, &len);   ... send ...   ctl_enc_release(&e);
 */
struct ctl_enc {
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int err;
};

void ctl_enc_init(struct ctl_enc *e);
/* Frees the buffer; after it the encoder may be initialised again. Accepts a released one. */
void ctl_enc_release(struct ctl_enc *e);
/* Discard what was written, keep the buffer (to replace a half-built result by an error). */
void ctl_enc_reset(struct ctl_enc *e);

void ctl_enc_map(struct ctl_enc *e, uint32_t n);
void ctl_enc_array(struct ctl_enc *e, uint32_t n);
void ctl_enc_str(struct ctl_enc *e, const char *s);	/* NULL encodes nil */
void ctl_enc_strn(struct ctl_enc *e, const char *s, size_t n);
void ctl_enc_uint(struct ctl_enc *e, uint64_t v);
void ctl_enc_int(struct ctl_enc *e, int64_t v);
void ctl_enc_bool(struct ctl_enc *e, bool v);
void ctl_enc_nil(struct ctl_enc *e);
void ctl_enc_bin(struct ctl_enc *e, const void *p, size_t n);
/* Append @n bytes that already are msgpack (e.g. items encoded into another encoder). */
void ctl_enc_raw(struct ctl_enc *e, const void *p, size_t n);
/* The payload written so far (after the reserved header) and its length; borrowed. */
const uint8_t *ctl_enc_payload(const struct ctl_enc *e, size_t *ret_len);
/* Copy one decoded object (e.g. echoing args in tests). Depth is bounded by the decoder. */
void ctl_enc_object(struct ctl_enc *e, const msgpack_object *o);

/* Start a request: {"op": @op, "args": <next value>} when @has_args, else {"op": @op}. */
void ctl_enc_request(struct ctl_enc *e, const char *op, bool has_args);
/* Start a success response: {"ok": true, "result": <next value>}. */
void ctl_enc_ok(struct ctl_enc *e);
/* A complete error response: {"ok": false, "error": name, "message": @msg}. */
void ctl_enc_error(struct ctl_enc *e, enum ctl_err err, const char *msg);
/* A success response whose result is an array of the @n values already encoded in @items
 * (e.g. one per record of a store walk); @items is only read. */
void ctl_enc_ok_array(struct ctl_enc *e, const struct ctl_enc *items, uint32_t n);
/* Discard what @e holds (ctl_enc_reset) and make it a complete error response whose message is
 * printf(@fmt, ...), cut at 511 bytes. For the ops handlers, which may fail half-way through a
 * result. */
void ctl_enc_fail(struct ctl_enc *e, enum ctl_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One map entry: the string key @k, then the value (@v NULL encodes nil for ctl_kv_str). */
void ctl_kv_str(struct ctl_enc *e, const char *k, const char *v);
void ctl_kv_uint(struct ctl_enc *e, const char *k, uint64_t v);
void ctl_kv_bool(struct ctl_enc *e, const char *k, bool v);

/*
 * Patch the frame header and return the frame (borrowed from @e, valid until the next call on
 * @e). @return 0; -ENOMEM if any write failed; -EMSGSIZE if the payload is over 4 GiB - 1.
 */
int ctl_enc_finish(struct ctl_enc *e, const uint8_t **ret_buf, size_t *ret_len);

/* ---- JSON ----------------------------------------------------------------------------------- */

/*
 * Print @o as JSON on @f (agentctl --json). Strings are escaped per RFC 8259 and invalid UTF-8 is
 * replaced by U+FFFD, so the output is always valid JSON; bin and ext become lowercase hex
 * strings; non-finite floats become null; non-string map keys are printed as their JSON text
 * inside a string. @indent > 0 pretty-prints with that many spaces per level.
 * @return 0; -EIO if writing failed.
 */
int ctl_json_write(FILE *f, const msgpack_object *o, int indent);

/* ---- Argument parsing helpers shared by agentd and agentctl -------------------------------- */

/*
 * Parse a duration: "250ms", "10s", "5m", "1h", or a bare number of seconds; fractions allowed
 * ("1.5s"). @return 0 with *ret_ms; -EINVAL. *ret_ms untouched on failure.
 */
int ctl_parse_duration_ms(const char *s, uint64_t *ret_ms);
/* Parse a size: "4096", "512K", "16M", "2G" (powers of 1024; optional trailing "B"/"iB").
 * @return 0; -EINVAL; -ERANGE. */
int ctl_parse_size(const char *s, uint64_t *ret);

#endif
