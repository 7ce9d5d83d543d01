/*
 * agent/ctl/ctl_server.h: the control socket server (libuv pipe), one state machine per client.
 *
 * The server accepts clients on a unix stream socket, reads frames (agent/ctl/ctl_proto.h), calls
 * the operation named by each request and writes the response. It knows nothing of what the
 * operations do: the agent hands it a table of struct ctl_op.
 *
 * Per connection:
 *
 *          accept ──► READ ──full frame──► (inline op) ──────────────► WRITE ──done──► READ
 *                      │  │                (blocking op) ─► WORK ─────►   │
 *                      │  └─ bad_frame / frame_too_large ─► WRITE, then close
 *                      └─ EOF, error, timeout ─► close
 *
 *  - A client has client-timeout (1) from connecting, or from the end of its previous
 *    response, to deliver one complete request, and (2) from the start of a response to read
 *    it. The clock is not reset by each byte, so a client trickling bytes is cut off too.
 *  - While an operation runs or a response is being written the server does not read from
 *    that client: a pipelining client is served in order and cannot make the server buffer
 *    more than one frame (plus one read) per connection.
 *  - Blocking operations (store access, imports) run on the libuv threadpool (uv_queue_work);
 *    the loop only parses, dispatches and writes, so one slow client or a long import never
 *    delays anyone else. Inline operations (ping) run on the loop. Heavy operations (imports)
 *    run at most max_heavy at a time, later ones wait in FIFO order before reaching the
 *    threadpool: libuv's pool has 4 threads by default, and quick reads (status, list) must
 *    always find one free.
 *  - At most max_clients connections; the next one gets a "busy" error and is closed.
 *  - Every connection records its peer's credentials (SO_PEERCRED) at accept, handed to each
 *    operation so that changes can record who made them.
 *
 * Ownership and threads: all functions run on the loop thread. ctl_server_close() stops
 * accepting, closes every client (waiting for operations in flight on the threadpool, which
 * cannot be interrupted) and calls its callback from the loop once nothing of the server
 * remains; only then may the caller free what the operations use (the store).
 */
#ifndef SHOAL_CTL_SERVER_H
#define SHOAL_CTL_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "agent/ctl/ctl_proto.h"

/* Who is on the other end of a connection (SO_PEERCRED at accept). */
struct ctl_peer {
	bool known;		/* false if getsockopt failed: uid/gid UINT32_MAX, pid -1 */
	uint32_t uid, gid;
	int32_t pid;
	uint64_t conn_id;	/* 1, 2, ... per server, for log lines */
};

/*
 * One operation, one row of a table. It writes a complete response frame body into @out:
 * either ctl_enc_ok() followed by exactly one value, or ctl_enc_error(). @req and @peer are
 * borrowed for the call. A blocking op runs on a threadpool thread (several may run at once,
 * for different clients); an inline one on the loop thread and must return quickly.
 *
 * Two kinds of rows:
 *  - a declared op (@args set): the server decodes the request's arguments into a struct of
 *    @args->size bytes (ctl_args.h: ctl_args_decode answers bad_request itself) and calls
 *    @run(target, &that struct, peer, out), target = @of(ud), the object of the module that
 *    owns the op (NULL @of: ud itself). The module's function never sees the request.
 *  - a raw op (@args NULL): @fn(ud, req, peer, out) reads the request itself (with
 *    ctl_args_decode too, when its arguments fit a table).
 */
struct ctl_args_spec;
struct ctl_op {
	const char *name;
	bool blocking;		/* runs on the threadpool */
	bool heavy;		/* blocking and long: counted against max_heavy */
	void (*fn)(void *ud, const struct ctl_request *req, const struct ctl_peer *peer,
		   struct ctl_enc *out);
	const struct ctl_args_spec *args;
	void *(*of)(void *ud);
	void (*run)(void *target, const void *args, const struct ctl_peer *peer,
		    struct ctl_enc *out);
};

/* Run @op for one request as the server does (decode the declared arguments, then the call). */
void ctl_op_call(const struct ctl_op *op, void *ud, const struct ctl_request *req,
		 const struct ctl_peer *peer, struct ctl_enc *out);

struct ctl_server_opts {
	const char *path;	/* socket path; the parent directory is created (0755) if missing */
	unsigned mode;		/* chmod after bind (e.g. 0660) */
	const char *group;	/* NULL: leave the group alone; else chgrp the socket */
	bool group_required;	/* true: a missing group is an error; false: skipped */
	uint32_t max_frame;	/* largest request payload */
	unsigned max_clients;
	unsigned max_heavy;	/* heavy ops at once; 0 = 2 */
	uint64_t timeout_ms;	/* client-timeout, see above */
	const struct ctl_op *ops;
	size_t nops;
	void *ud;		/* passed to every op */
};

struct ctl_server;

/*
 * Create the socket and start listening.
 * If @path exists: a socket on which another process accepts is left alone and this call fails
 * with -EADDRINUSE (another agent runs); a dead socket is removed; anything else (a regular
 * file, a directory) is refused with -EEXIST.
 * @return 0; -EADDRINUSE; -EEXIST; -ENAMETOOLONG; -ENOENT (group required and missing);
 *         filesystem errnos (mkdir, bind, chmod, chown); -ENOMEM. @err gets one line naming
 *         the path and the problem. On failure nothing is left behind (no socket file, no
 *         handle: the loop needs no extra run).
 */
int ctl_server_new(uv_loop_t *loop, const struct ctl_server_opts *opts, struct ctl_server **ret,
		   char *err, size_t errlen);

/*
 * Stop: close the listening socket (and remove the socket file if it still is ours), answer
 * nothing more, close all clients. @cb(@ud) runs on the loop when the last handle is closed and
 * the last threadpool operation has finished; the server is then freed. Calling it twice is a
 * no-op for the second call. Accepts NULL (then calls nothing).
 */
void ctl_server_close(struct ctl_server *s, void (*cb)(void *ud), void *ud);

/* Connected clients right now. Readable from any thread. */
unsigned ctl_server_clients(const struct ctl_server *s);
/* Operations running on the threadpool right now (loop thread only). */
unsigned ctl_server_busy(const struct ctl_server *s);

#endif
