/*
 * store/store.h: all persistent state of one agent, in one LMDB environment.
 *
 * What lives here (one named database each, see store/db.c for the key layouts):
 *
 *   meta       schema version, node identity, hybrid-logical-clock high-water mark
 *   chunks     chunk hash -> chunk bytes            (content-addressed, stored once)
 *   blobs      blob id -> {size, chunk hashes}      (a file's content, as a chunk list)
 *   artifacts  artifact id -> canonical manifest    (msgpack; the id is its hash)
 *   artmeta    artifact id -> {imported_at, condemned, ...}   (local facts, not hashed)
 *   revisions  service \0 rev(be64) -> revision record
 *   votes      service \0 rev(be64) voter(16) -> vote record
 *   journal    service -> swap journal entry (reconciler steps, written before they happen)
 *   services   service -> {running artifact, last good artifact}
 *   kv_*       opaque key/value tables owned by the agent (members, gossip records)
 *
 * Invariants:
 *  - Every public function that changes state does it in exactly one write transaction:
 *    after a crash at any instant the store holds either all of a change or none of it.
 *  - Blobs and chunks are stored once however many artifacts reference them; chunks are
 *    STORE_CHUNK_SIZE bytes (the last one shorter) so a blob can be streamed and resumed.
 *  - An artifact id is BLAKE2b-256 (libsodium crypto_generichash) of the artifact's canonical
 *    msgpack encoding (manifest fields in a fixed order, files sorted by path); a chunk's hash
 *    and a blob's id are BLAKE2b-256 of their bytes.
 *  - When the map fills up, the store doubles it (up to store_opts.map_max) and retries the
 *    transaction; beyond the maximum the caller gets -ENOSPC and the store stays usable.
 *  - A store whose schema version is newer than this code's is refused (-STORE_ESCHEMA).
 *
 * Threads: a struct store may be used from several threads (LMDB serialises writers); each
 * call opens and ends its own transaction. Borrowed pointers are documented per function.
 *
 * Errors: 0 or positive on success, negative errno on failure. LMDB errors are translated at
 * this boundary (MDB_MAP_FULL beyond map_max -> -ENOSPC, MDB_NOTFOUND -> -ENOENT,
 * MDB_CORRUPTED/MDB_PAGE_NOTFOUND -> -EIO, ...). Store-specific codes live in the reserved
 * range below; store_strerror() names every code. This module never logs.
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_ID_LEN	 32	/* BLAKE2b-256 */
#define STORE_ID_HEXLEN	 64
#define STORE_NODE_ID_LEN 16
#define STORE_CHUNK_SIZE (256 * 1024)
#define STORE_SCHEMA_VERSION 1

/* Reserved error range: -(STORE_EBASE + n). */
#define STORE_EBASE	 11000
#define STORE_ESCHEMA	 (STORE_EBASE + 1) /* store written by a newer schema */
#define STORE_EINVALID	 (STORE_EBASE + 2) /* release.ini or artifact invalid (see message) */
#define STORE_ENOTREPO	 (STORE_EBASE + 3) /* git: not a repository */
#define STORE_ENOREF	 (STORE_EBASE + 4) /* git: ref not found */
#define STORE_ETOOBIG	 (STORE_EBASE + 5) /* a file over the configured size */
#define STORE_EESCAPE	 (STORE_EBASE + 6) /* a symlink points outside the tree */
#define STORE_ECONDEMNED (STORE_EBASE + 7) /* artifact is condemned; needs force */
#define STORE_ECORRUPT	 (STORE_EBASE + 8) /* stored bytes do not match their hash */

/* Human-readable text for any code this module returns (negative errno or STORE_E*). */
const char *store_strerror(int err);

struct store_id {
	uint8_t b[STORE_ID_LEN];
};

/* Lowercase hex, NUL-terminated: @out must hold STORE_ID_HEXLEN + 1 bytes. Returns @out. */
char *store_id_hex(const struct store_id *id, char *out);
/* Parse 64 hex digits. Returns 0 or -EINVAL. @ret untouched on failure. */
int store_id_parse(const char *hex, struct store_id *ret);

struct store;

struct store_opts {
	const char *path;	/* directory of the LMDB environment; created if missing */
	size_t map_size;	/* initial map size; 0 = 64 MiB */
	size_t map_max;		/* the map never grows past this; 0 = 64 GiB */
	unsigned retain_revs;	/* revisions kept per service; 0 = 10 */
	bool nosync;		/* MDB_NOSYNC, for tests and benchmarks only */
};

/*
 * Open (creating if needed) the store at opts->path.
 * @return 0; -ENOMEM; -EACCES/-ENOENT/... from the filesystem; -STORE_ESCHEMA if the store was
 *         written by a newer schema; -EIO if it is corrupt.
 */
int store_open(const struct store_opts *opts, struct store **ret);
/* Close; accepts NULL. No transaction may be in progress. */
void store_close(struct store *s);

/* This node's 16-byte id, created at the first call on a new store and kept forever. */
int store_node_id(struct store *s, uint8_t ret_id[STORE_NODE_ID_LEN]);

/* ---- Artifacts -------------------------------------------------------------------------- */

struct store_health_policy {
	char *http;		/* URL, or NULL */
	char *tcp;		/* host:port, or NULL */
	char *exec;		/* command relative to the artifact dir, or NULL */
	uint32_t interval_ms;	/* default 2000 */
	uint32_t timeout_ms;	/* default 1000 */
	uint32_t failures;	/* default 3 */
	uint32_t deadline_ms;	/* default 60000 */
};

struct store_file {
	char *path;		/* relative, '/'-separated, no "." or ".." components */
	uint32_t mode;		/* 0644 or 0755 (executable bit kept), or 0120000 for a symlink */
	uint64_t size;
	struct store_id blob;	/* content (for a symlink: its target string) */
};

/*
 * A manifest: everything that identifies an artifact. All strings are heap-owned by the
 * manifest (store_manifest_release frees them); optional ones are NULL when absent.
 */
struct store_manifest {
	char *service;		/* required: [a-zA-Z0-9._-]{1,64} */
	char *runtime;		/* required: "exec", "systemd" or "container" */
	char *version;		/* label; defaults to the git tag when imported from git */
	char *exec_command;	/* [exec] command */
	char *systemd_unit;	/* [systemd] unit */
	char *container_image;	/* [container] image */
	char *container_archive;/* [container] archive */
	struct store_health_policy health;
	char *git_commit;	/* hex commit id, when imported from git */
	char *git_tag;		/* tag name, when the ref was a tag */
	char *git_author;	/* "Name <email>" */
	char *git_message;
	size_t nfiles;
	struct store_file *files; /* sorted by path */
};

void store_manifest_release(struct store_manifest *m);

/*
 * Canonical encoding of a manifest (msgpack, fixed field order, files sorted by path).
 * store_manifest_encode: *ret_buf is malloc'd, caller frees. Returns 0, -ENOMEM, -EINVAL.
 * store_manifest_decode: bounds-checked; every field type-checked. Returns 0, -EBADMSG
 * (state of @ret untouched), -ENOMEM.
 */
int store_manifest_encode(const struct store_manifest *m, uint8_t **ret_buf, size_t *ret_len);
int store_manifest_decode(const uint8_t *buf, size_t len, struct store_manifest *ret);
/* The artifact id of @m: hash of its canonical encoding. */
int store_manifest_id(const struct store_manifest *m, struct store_id *ret);

/*
 * Importing an artifact: begin, stream each file's bytes, commit. Everything happens inside one
 * write transaction, so an import is all or nothing; an abandoned import (abort, or a crash)
 * leaves no trace. Only one import (one write transaction) may be open per thread.
 *
 *   struct store_import *imp;
 *   store_import_begin(s, &imp);
 *   store_import_file(imp, "bin/web", 0755, &file_handle) ...
 *   store_import_write(imp, bytes, len)  (any number of times; chunks as it goes)
 *   store_import_file_end(imp)
 *   store_import_commit(imp, &manifest, &id)   (fills manifest->files from what was written)
 */
struct store_import;
int store_import_begin(struct store *s, struct store_import **ret);
/* Start a regular file (mode 0644/0755) or a symlink (mode 0120000; its bytes are the target). */
int store_import_file(struct store_import *imp, const char *path, uint32_t mode);
int store_import_write(struct store_import *imp, const void *buf, size_t len);
int store_import_file_end(struct store_import *imp);
/*
 * Commit: sets m->files/nfiles (taking ownership of the file list it built), computes the id,
 * stores manifest + meta (imported_at = @now_ms) and commits. Importing an artifact that already
 * exists is a success returning the same id (and 1 instead of 0).
 * On any failure the import is aborted and freed. @imp is always consumed.
 */
int store_import_commit(struct store_import *imp, struct store_manifest *m, uint64_t now_ms,
			struct store_id *ret_id);
/* Abort and free; accepts NULL. */
void store_import_abort(struct store_import *imp);

struct store_artifact_info {
	struct store_id id;
	struct store_manifest manifest;	/* owned; release with store_artifact_info_release */
	uint64_t imported_at_ms;
	uint64_t total_size;		/* sum of file sizes */
	bool condemned;
};
void store_artifact_info_release(struct store_artifact_info *a);

/* Look up one artifact. -ENOENT if absent. */
int store_artifact_get(struct store *s, const struct store_id *id, struct store_artifact_info *ret);
/*
 * Find by unique hex prefix (at least 4 digits). -ENOENT none; -EEXIST ambiguous; -EINVAL bad hex.
 */
int store_artifact_find(struct store *s, const char *hex_prefix, struct store_id *ret);
/*
 * Call @cb for each artifact (of @service, or all when NULL), oldest import first. @a is
 * borrowed for the call. A non-zero return from @cb stops the walk and is returned.
 */
int store_artifact_foreach(struct store *s, const char *service,
			   int (*cb)(const struct store_artifact_info *a, void *ud), void *ud);
/* Mark an artifact condemned (true) or clear it (false). -ENOENT if absent. */
int store_artifact_set_condemned(struct store *s, const struct store_id *id, bool condemned);

/*
 * Reading blobs: whole, or chunk by chunk (for streaming to peers, resumable by index).
 * store_blob_read: copies up to @len bytes from @offset into @buf; returns bytes copied (0 at
 * end), -ENOENT, -STORE_ECORRUPT if a chunk fails its hash (verified on every read when
 * @verify).
 */
int store_blob_size(struct store *s, const struct store_id *blob, uint64_t *ret_size);
int64_t store_blob_read(struct store *s, const struct store_id *blob, uint64_t offset, void *buf,
			size_t len, bool verify);
/* Number of chunks, the hash of chunk @i, and (optional) chunk bytes copied out. */
int store_blob_chunks(struct store *s, const struct store_id *blob, uint32_t *ret_count);
int store_blob_chunk(struct store *s, const struct store_id *blob, uint32_t i,
		     struct store_id *ret_hash, void *buf, size_t cap, size_t *ret_len);

/*
 * Materialize an artifact's files under @dir (created; existing content replaced atomically:
 * written to @dir.tmp-XXXX then renamed). Modes and symlinks restored. Returns 0, -ENOENT,
 * -STORE_ECORRUPT, or a filesystem errno.
 */
int store_artifact_materialize(struct store *s, const struct store_id *id, const char *dir);

/* ---- Revisions, votes, journal ------------------------------------------------------------ */

enum store_rev_kind { STORE_REV_DEPLOY = 0, STORE_REV_ROLLBACK = 1 };

struct store_revision {
	char service[65];
	uint64_t rev;			/* 1, 2, ... per service */
	struct store_id artifact;
	enum store_rev_kind kind;
	char scope[65];			/* "" = whole cluster, else "site:NAME" */
	uint8_t origin[STORE_NODE_ID_LEN];
	uint64_t hlc;			/* hybrid logical clock: ms << 16 | logical */
	uint32_t operator_uid;		/* from SO_PEERCRED; UINT32_MAX when none */
	int32_t operator_pid;
	char reason[257];
	/* Quorum certificate of a rollback: the voters whose votes decided it. */
	uint32_t ncert;
	uint8_t (*cert)[STORE_NODE_ID_LEN]; /* heap-owned; store_revision_release frees */
};
void store_revision_release(struct store_revision *r);

int store_revision_encode(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len);
int store_revision_decode(const uint8_t *buf, size_t len, struct store_revision *ret);

/*
 * Append or replace revision r->rev of r->service (a replicated revision may arrive out of
 * order). Then applies retention for that service in the same transaction.
 */
int store_revision_put(struct store *s, const struct store_revision *r);
/* -ENOENT if absent. */
int store_revision_get(struct store *s, const char *service, uint64_t rev,
		       struct store_revision *ret);
/* Highest rev of @service in *ret_rev (0 if none). */
int store_revision_latest(struct store *s, const char *service, uint64_t *ret_rev);
/* Newest first, at most @limit (0 = all). @r borrowed for the call; non-zero return stops. */
int store_revision_foreach(struct store *s, const char *service, unsigned limit,
			   int (*cb)(const struct store_revision *r, void *ud), void *ud);
/* Every service that has a revision or an artifact, in name order. */
int store_service_foreach(struct store *s, int (*cb)(const char *service, void *ud), void *ud);

enum store_vote_reason { STORE_VOTE_HEALTH = 0, STORE_VOTE_OPERATOR = 1 };
struct store_vote {
	char service[65];
	uint64_t rev;
	uint8_t voter[STORE_NODE_ID_LEN];
	enum store_vote_reason reason;
	uint64_t hlc;
};
/* Grow-only: putting an existing vote is a no-op returning 1. */
int store_vote_put(struct store *s, const struct store_vote *v);
int store_vote_foreach(struct store *s, const char *service, uint64_t rev,
		       int (*cb)(const struct store_vote *v, void *ud), void *ud);

/*
 * Per-service local state: what runs and what last ran healthy. Retention never drops these
 * artifacts. Zero ids mean "none".
 */
struct store_service_state {
	struct store_id running;
	uint64_t running_rev;
	struct store_id last_good;
};
int store_service_state_get(struct store *s, const char *service, struct store_service_state *ret);
int store_service_state_put(struct store *s, const char *service,
			    const struct store_service_state *st);

/* The swap journal: one opaque entry per service, owned by the reconciler. */
int store_journal_put(struct store *s, const char *service, const void *buf, size_t len);
/* *ret_buf malloc'd; -ENOENT if none. */
int store_journal_get(struct store *s, const char *service, void **ret_buf, size_t *ret_len);
int store_journal_del(struct store *s, const char *service);
int store_journal_foreach(struct store *s,
			  int (*cb)(const char *service, const void *buf, size_t len, void *ud),
			  void *ud);

/*
 * Retention for @service: keep the newest retain_revs revisions; drop artifacts of the service
 * that no kept revision references, except the running one, the last good one, and artifacts
 * never deployed that are among the newest retain_revs imports; then collect blobs and chunks
 * no artifact references. Called by store_revision_put; callable directly. Returns the number
 * of artifacts dropped.
 */
int store_retain(struct store *s, const char *service);

/* ---- Opaque tables for the agent (members, gossip records) -------------------------------- */

enum store_table { STORE_KV_MEMBERS = 0, STORE_KV_RECORDS = 1, STORE_KV__COUNT };
int store_kv_put(struct store *s, enum store_table t, const void *key, size_t klen,
		 const void *val, size_t vlen);
int store_kv_del(struct store *s, enum store_table t, const void *key, size_t klen);
int store_kv_foreach(struct store *s, enum store_table t,
		     int (*cb)(const void *key, size_t klen, const void *val, size_t vlen, void *ud),
		     void *ud);

/* Statistics for `agentctl status` and metrics. */
struct store_stats {
	uint64_t map_size, map_used;
	uint64_t nartifacts, nblobs, nchunks, chunk_bytes;
};
int store_stats(struct store *s, struct store_stats *ret);

#endif
