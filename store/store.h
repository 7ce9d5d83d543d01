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
 *    (An import streams its chunks in batches of their own, invisible until the final
 *    transaction that makes the artifact exist; see store_import_begin.)
 *  - Blobs and chunks are stored once however many artifacts reference them; chunks are
 *    STORE_CHUNK_SIZE bytes (the last one shorter) so a blob can be streamed and resumed.
 *  - An artifact id is BLAKE2b-256 (libsodium crypto_generichash) of the artifact's canonical
 *    msgpack encoding (manifest fields in a fixed order, files sorted by path); a chunk's hash
 *    and a blob's id are BLAKE2b-256 of their bytes.
 *  - When the map fills up, the store doubles it (up to store_opts.map_max) and retries the
 *    transaction; beyond the maximum the caller gets -EFBIG ("store is full (map_max
 *    reached)") and the store stays usable. A full FILESYSTEM is -ENOSPC: LMDB reports the
 *    short write of a commit as EIO, and a commit that failed so on a filesystem with less
 *    than 1 MiB left is reported as -ENOSPC (after it LMDB refuses every transaction until the
 *    agent restarts; those calls return -ENOSPC too, not -EIO).
 *  - A store whose schema version is not this code's is refused (-STORE_ESCHEMA).
 *
 * Threads: a struct store may be used from several threads (LMDB serialises writers); each
 * call opens and ends its own transaction. Borrowed pointers are documented per function.
 * Callbacks of the *_foreach functions run after the read transaction has ended (the records
 * are copied out first), so a callback may call any store function, writes included.
 * Only one struct store per environment per process (an LMDB rule).
 *
 * Errors: 0 or positive on success, negative errno on failure. LMDB errors are translated at
 * this boundary (MDB_MAP_FULL beyond map_max -> -EFBIG, MDB_NOTFOUND -> -ENOENT,
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
/* 2: manifests in format version 2 (codec.c). A store of another schema is refused: there is no
 * migration (artifact ids are hashes of the encoding, so they would all change). */
#define STORE_SCHEMA_VERSION 2

/* Reserved error range: -(STORE_EBASE + n). */
#define STORE_EBASE	 11000
#define STORE_ESCHEMA	 (STORE_EBASE + 1) /* store written by another schema version */
#define STORE_EINVALID	 (STORE_EBASE + 2) /* release.ini or artifact invalid (see message) */
#define STORE_ENOTREPO	 (STORE_EBASE + 3) /* git: not a repository */
#define STORE_ENOREF	 (STORE_EBASE + 4) /* git: ref not found */
#define STORE_ETOOBIG	 (STORE_EBASE + 5) /* a file over the configured size */
#define STORE_EESCAPE	 (STORE_EBASE + 6) /* a symlink points outside the tree */
#define STORE_ECONDEMNED (STORE_EBASE + 7) /* artifact is condemned; needs force */
#define STORE_ECORRUPT	 (STORE_EBASE + 8) /* stored bytes do not match their hash */
#define STORE_EBADPATH	 (STORE_EBASE + 9) /* an unsafe file path in an artifact (see message) */
#define STORE_EFORMAT	 (STORE_EBASE + 10) /* a manifest in a format version this build lacks */

/*
 * Human-readable text for any code this module returns (negative errno or STORE_E*, either
 * sign). Static string, never NULL.
 */
const char *store_strerror(int err);

struct store_id {
	uint8_t b[STORE_ID_LEN];
};

/* Lowercase hex, NUL-terminated: @out must hold STORE_ID_HEXLEN + 1 bytes. Returns @out. */
char *store_id_hex(const struct store_id *id, char *out);
/* Parse exactly 64 hex digits (either case). Returns 0 or -EINVAL. @ret untouched on failure. */
int store_id_parse(const char *hex, struct store_id *ret);

struct store;

struct store_opts {
	const char *path;	/* directory of the LMDB environment; created if missing */
	size_t map_size;	/* initial map size; 0 = 64 MiB */
	size_t map_max;		/* the map never grows past this; 0 = 64 GiB. If an existing
				 * environment is already bigger, its size becomes the maximum. */
	unsigned retain_revs;	/* revisions kept per service; 0 = 10 */
	bool nosync;		/* MDB_NOSYNC, for tests and benchmarks only */
};

/*
 * Open (creating if needed) the store at opts->path (the directory is created with mode 0700
 * if missing; files data.mdb and lock.mdb inside, mode 0600). A new store is stamped with
 * STORE_SCHEMA_VERSION. Chunks left by an import interrupted by a crash are collected here.
 * @ret: on success the handle, to be freed with store_close(); untouched on failure.
 * @return 0; -EINVAL (NULL opts/path/ret); -ENOMEM; -EACCES/-ENOENT/... from the filesystem;
 *         -STORE_ESCHEMA if the store was written by another schema version (newer, or the
 *         older one before manifest format 2: there is no migration); -EIO if it is corrupt;
 *         -ENOSPC if the map cannot hold even the initial records.
 */
int store_open(const struct store_opts *opts, struct store **ret);
/*
 * Close; accepts NULL. No other call on @s may be in progress, and every store_import of @s
 * must have been committed or aborted first.
 */
void store_close(struct store *s);

/*
 * This node's 16-byte id, created (random, libsodium) at the first call on a new store and kept
 * forever. Returns 0, -ENOSPC, -EIO, -ENOMEM; @ret_id untouched on failure.
 */
int store_node_id(struct store *s, uint8_t ret_id[STORE_NODE_ID_LEN]);

/* ---- Artifacts -------------------------------------------------------------------------- */

struct store_health_policy {
	char *http;		/* URL, or NULL */
	char *tcp;		/* host:port, or NULL */
	char *exec;		/* command relative to the artifact dir, or NULL */
	uint32_t interval_ms;	/* default 2000 (0: the agent's default) */
	uint32_t timeout_ms;	/* default 1000 (0: the agent's default) */
	uint32_t failures;	/* default 3; at most STORE_HEALTH_FAILURES_MAX (0: default) */
	uint32_t deadline_ms;	/* default 60000 (0: the agent's default) */
};

/*
 * release.ini [endpoint]: where a load balancer reaches one instance of the service. A manifest
 * without the section has an all-zero endpoint (port 0 = "no endpoint"); validation refuses any
 * other field set while port is 0, so the encoding stays canonical. Defaults (applied by the
 * release parser when the section exists) in store/import.h.
 */
enum store_endpoint_protocol {
	STORE_ENDPOINT_TCP = 0,
	STORE_ENDPOINT_HTTP = 1,
};
#define STORE_ENDPOINT_WEIGHT_MAX 256	  /* HAProxy's range: 0..256 */
#define STORE_ENDPOINT_DRAIN_MAX_MS 600000 /* 10 minutes */
struct store_endpoint {
	uint16_t port;		/* 1..65535; 0 = the service has no endpoint */
	char *address;		/* IPv4 or IPv6 literal; NULL = the node's advertise address */
	uint16_t weight;	/* 0..STORE_ENDPOINT_WEIGHT_MAX */
	enum store_endpoint_protocol protocol;
	uint32_t drain_ms;	/* 0..STORE_ENDPOINT_DRAIN_MAX_MS */
};

/* release.ini [recovery]: what the node does itself before the cluster decides. */
#define STORE_RECOVERY_RESTARTS_MAX 100
struct store_recovery {
	uint32_t restarts;	/* local restarts before the instance counts as failed, 0..MAX */
	bool remove_unhealthy;	/* take an unhealthy instance out of the load balancer at once */
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
 * Every field is part of the canonical encoding, so of the artifact id.
 */
struct store_manifest {
	char *service;		/* required: [a-zA-Z0-9._-]{1,64}, not "." or ".." */
	char *runtime;		/* required: "exec", "systemd" or "container" */
	char *version;		/* label; defaults to the git tag when imported from git */
	char *exec_command;	/* [exec] command */
	char *systemd_unit;	/* [systemd] unit */
	char *container_image;	/* [container] image */
	char *container_archive;/* [container] archive */
	struct store_health_policy health;
	struct store_endpoint endpoint;	/* [endpoint]; all zero when absent */
	struct store_recovery recovery;	/* [recovery] (the parser fills its defaults) */
	char *git_commit;	/* hex commit id, when imported from git */
	char *git_tag;		/* tag name, when the ref was a tag */
	char *git_author;	/* "Name <email>" */
	char *git_message;
	size_t nfiles;
	struct store_file *files; /* sorted by path */
};

/*
 * Free every string and the file list of @m (with free(3): they must have been allocated with
 * malloc/strdup) and zero it; accepts NULL and an all-zero manifest. Safe to call twice.
 */
void store_manifest_release(struct store_manifest *m);

/* Defaults of the limits, used for every zero field (and for a NULL limits pointer). */
#define STORE_IMPORT_MAX_FILE_SIZE  (256ULL << 20) /* 256 MiB per file */
#define STORE_IMPORT_MAX_TOTAL_SIZE (1ULL << 30)   /* 1 GiB per artifact */
#define STORE_IMPORT_MAX_FILES	    10000u
/* Fixed limits: a relative path's length, directories nested in one path, symlinks followed
 * while resolving one target, and a symlink target's length. */
#define STORE_IMPORT_MAX_PATH	    4095u
#define STORE_IMPORT_MAX_DEPTH	    64u
#define STORE_IMPORT_MAX_SYMLINKS   40u
#define STORE_IMPORT_MAX_TARGET	    4096u

/* Per-artifact limits an operator may configure (agentd.conf max_artifact_*). */
struct store_import_limits {
	uint64_t max_file_size;	 /* bytes of one file (a symlink counts its target's length) */
	uint64_t max_total_size; /* bytes of all files together */
	uint32_t max_files;	 /* files and symlinks, release.ini included */
};

/*
 * THE validation of an artifact's manifest: every artifact that enters the store, imported
 * from a directory or a git tree or fetched from a peer, passes exactly this (the importers
 * call it before streaming, store_import_commit calls it again with the symlink targets it
 * received, the codec calls it without targets or limits), so a peer cannot hand a node
 * anything a local import would refuse.
 *
 * Checks, in this order (the first failure is reported):
 *  - fields (-STORE_EINVALID): service [a-zA-Z0-9._-]{1,64}, not "." or ".."; runtime exec,
 *    systemd or container, with its own fields only ([exec] command with exec, ...) and the
 *    one it requires (command; unit; image or archive); every string valid UTF-8 without
 *    control characters (C0, DEL, C1; tab allowed in commands; tab, CR and LF in
 *    git_message), at most 4096 bytes (git_message 1 MiB); health: at most one of http, tcp,
 *    exec, each as release.ini wants it, failures <= STORE_HEALTH_FAILURES_MAX; systemd unit
 *    and container archive relative paths; endpoint: all zero, or port 1..65535, address an
 *    IPv4/IPv6 literal or NULL, weight <= STORE_ENDPOINT_WEIGHT_MAX, a known protocol,
 *    drain_ms <= STORE_ENDPOINT_DRAIN_MAX_MS; recovery.restarts <= STORE_RECOVERY_RESTARTS_MAX;
 *  - paths (-STORE_EBADPATH): each relative, 1..STORE_IMPORT_MAX_PATH bytes, no empty, "." or
 *    ".." component, at most STORE_IMPORT_MAX_DEPTH directories deep, valid UTF-8 without
 *    control characters (no newline, escape, DEL or C1 in a name); strictly sorted, no
 *    duplicates, and no file where another one needs a directory ("a" and "a/b");
 *  - files (-STORE_EINVALID): mode 0644, 0755 or 0120000; a symlink's size 1..4096;
 *  - limits (-STORE_ETOOBIG), when @lim is given: file count, each size, total size;
 *  - symlinks, when @targets is given (-STORE_EESCAPE, or -STORE_EBADPATH for a target with a
 *    control character, NUL or a length other than the file's size): resolved against the
 *    artifact's own files exactly as the kernel will resolve them once materialized (links
 *    inside the artifact followed, ".." after a link from the link's target), a target must
 *    not be absolute, leave the artifact, or need more than STORE_IMPORT_MAX_SYMLINKS links.
 *
 * @targets: NULL (symlink targets not known yet: store_import_commit checks them), or an array
 *           of m->nfiles entries, targets[i] the NUL-terminated target of files[i] when that
 *           is a symlink (other entries ignored). Borrowed for the call.
 * @lim: NULL = the defaults above (a zero field = its default too).
 * @err/@errlen: one lowercase line naming the field or the path, untrusted bytes escaped
 *           (\xNN), e.g. `"etc\x0a": control character in path`; "" on success; may be NULL.
 * @return 0; -EINVAL (@m NULL); -STORE_EINVALID; -STORE_EBADPATH; -STORE_ETOOBIG;
 *         -STORE_EESCAPE; -ENOMEM (resolving symlinks allocates). Pure, thread-safe.
 */
int store_manifest_validate(const struct store_manifest *m, const char *const *targets,
			    const struct store_import_limits *lim, char *err, size_t errlen);

/*
 * Canonical encoding of a manifest: one msgpack array whose first element is the format version
 * (2 today; the layout is drawn at the top of store/codec.c), fixed field order, files sorted by
 * path; any msgpack reader can parse it. The artifact id is the hash of these bytes, so a new
 * format version changes every id (format 1, before this one, declared 15 elements and wrote
 * 14; stores holding it are refused at open, see STORE_SCHEMA_VERSION).
 * store_manifest_encode: runs store_manifest_validate(m, NULL, NULL) first. *ret_buf is
 *   malloc'd, the caller frees it with free(3). Returns 0, -EINVAL (a manifest validation
 *   refuses, whatever its reason), -ENOMEM. Outputs untouched on failure.
 * store_manifest_decode: for bytes from anywhere (disk, peers): bounds-checked, every field
 *   type-checked, no trailing bytes, then store_manifest_validate(m, NULL, NULL). On success
 *   *ret owns heap strings (store_manifest_release). Returns 0; -EINVAL (NULL args);
 *   -EBADMSG (not a manifest); -STORE_EFORMAT (a manifest array whose format version is not
 *   2, e.g. from a newer or older build); what store_manifest_validate returns for a manifest
 *   that decodes but is refused (-STORE_EBADPATH, -STORE_EINVALID); -ENOMEM. @ret untouched
 *   on failure.
 */
int store_manifest_encode(const struct store_manifest *m, uint8_t **ret_buf, size_t *ret_len);
int store_manifest_decode(const uint8_t *buf, size_t len, struct store_manifest *ret);
/* The artifact id of @m: hash of its canonical encoding. 0, -EINVAL, -ENOMEM. */
int store_manifest_id(const struct store_manifest *m, struct store_id *ret);

/*
 * Importing an artifact: begin, stream each file's bytes, commit. An import is all or nothing:
 * the artifact exists from the moment the final transaction of store_import_commit commits,
 * not before. Complete chunks are buffered (8 MiB) and written in batches of their own
 * transactions on the way (so an import never holds the write lock for long and a full map can
 * be grown and the batch retried); such chunks are invisible garbage until the commit, protected
 * from garbage collection while the import is open, collected at once by store_import_abort and,
 * after a crash, by the next store_open. Several imports may be open at once, from any threads,
 * but one struct store_import must not be used by two threads at the same time.
 *
 * Errors are sticky: after any call on an import failed, every later call but abort/commit
 * returns the same error, and commit returns it and frees the import.
 *
 *   struct store_import *imp;
 *   store_import_begin(s, &imp);
 *   store_import_file(imp, "bin/web", 0755, &file_handle) ...
 *   store_import_write(imp, bytes, len)  (any number of times; chunks as it goes)
 *   store_import_file_end(imp)
 *   store_import_commit(imp, &manifest, &id)   (fills manifest->files from what was written)
 */
struct store_import;
/* Start an import. *ret must end with store_import_commit or store_import_abort. 0, -EINVAL,
 * -ENOMEM. */
int store_import_begin(struct store *s, struct store_import **ret);
/*
 * Start a regular file or a symlink. @mode: a regular file's mode (with or without S_IFREG; any
 * executable bit makes it 0755, else 0644) or S_IFLNK|... (0120000; its bytes are the target,
 * 1..4096 of them). @path is copied; it is validated (relative, no "."/".."/empty components)
 * at commit. Returns 0; -EINVAL (file already open, NULL path, other file type); -ENOMEM.
 */
int store_import_file(struct store_import *imp, const char *path, uint32_t mode);
/*
 * Append bytes to the open file (any number of calls, any sizes). Returns 0; -EINVAL (no file
 * open); -ENAMETOOLONG (symlink target over 4096 bytes); -ENOMEM; -EFBIG (map_max reached
 * while writing a batch of chunks); -EIO.
 */
int store_import_write(struct store_import *imp, const void *buf, size_t len);
/* End the open file. 0; -EINVAL (no file open, or an empty symlink); as store_import_write. */
int store_import_file_end(struct store_import *imp);
/*
 * Commit: sets m->files/nfiles (taking ownership of the file list it built, sorted by path;
 * any list @m had is freed), runs store_manifest_validate on the result with the symlink
 * targets written and the import's limits (store_import_set_limits), computes the id, stores
 * blobs + manifest + meta (imported_at = @now_ms) in one transaction and commits. This is the
 * gate every artifact passes, imported or fetched. Importing an artifact that already
 * exists is a success returning the same id (and 1 instead of 0; its meta is unchanged).
 * On any failure the import is aborted and freed and @m and @ret_id are untouched.
 * @imp is always consumed. @ret_id may be NULL.
 * @return 0 or 1; -EINVAL (NULL @m, a file still open); what store_manifest_validate returns
 *         (-STORE_EBADPATH for duplicate or unsafe paths, -STORE_EESCAPE, -STORE_EINVALID,
 *         -STORE_ETOOBIG); -ENOMEM; -ENOSPC; -EIO; or the import's sticky error.
 */
int store_import_commit(struct store_import *imp, struct store_manifest *m, uint64_t now_ms,
			struct store_id *ret_id);
/*
 * The limits store_import_commit enforces (copied; NULL or zero fields = the defaults, which
 * apply when this is never called). Call it before commit with the node's configured limits:
 * the importers do, and so should a fetch. Returns 0; -EINVAL (NULL @imp).
 */
int store_import_set_limits(struct store_import *imp, const struct store_import_limits *lim);
/* Abort and free; accepts NULL. Chunks written by the import and referenced by nothing else
 * are collected (best effort: if that fails, the next store_open does it). */
void store_import_abort(struct store_import *imp);

struct store_artifact_info {
	struct store_id id;
	struct store_manifest manifest;	/* owned; release with store_artifact_info_release */
	uint64_t imported_at_ms;
	uint64_t total_size;		/* sum of file sizes */
	bool condemned;
};
/* Release the manifest inside @a; accepts NULL. */
void store_artifact_info_release(struct store_artifact_info *a);

/*
 * Look up one artifact. On success *ret is filled and owns its manifest
 * (store_artifact_info_release). 0; -ENOENT if absent; -EIO if its records are damaged;
 * -ENOMEM; -EINVAL. @ret untouched on failure.
 */
int store_artifact_get(struct store *s, const struct store_id *id, struct store_artifact_info *ret);
/*
 * Find by unique hex prefix (4 to 64 digits, either case). 0 and *ret; -ENOENT none; -EEXIST
 * ambiguous; -EINVAL bad hex or length. @ret untouched on failure.
 */
int store_artifact_find(struct store *s, const char *hex_prefix, struct store_id *ret);
/*
 * Call @cb for each artifact (of @service, or all when NULL), oldest import first. @a is
 * borrowed for the call. A non-zero return from @cb stops the walk and is returned.
 * Errors before any callback: -EINVAL (NULL cb), -ENOMEM, -EIO.
 */
int store_artifact_foreach(struct store *s, const char *service,
			   int (*cb)(const struct store_artifact_info *a, void *ud), void *ud);
/* Mark an artifact condemned (true) or clear it (false). 0; -ENOENT if absent; -ENOSPC; -EIO. */
int store_artifact_set_condemned(struct store *s, const struct store_id *id, bool condemned);

/*
 * Reading blobs: whole, or chunk by chunk (for streaming to peers, resumable by index).
 * Blobs are shared by artifacts: a blob is reachable while some artifact references it.
 * store_blob_size: 0 and *ret_size; -ENOENT; -EIO (damaged record).
 * store_blob_read: copies up to @len bytes from @offset into @buf (one copy, straight out of
 * LMDB's map); returns bytes copied (0 at or past the end), -ENOENT (no such blob),
 * -STORE_ECORRUPT if a chunk is missing, has the wrong length, or (when @verify) fails its hash,
 * -EIO. Reads of whole chunks at chunk-aligned offsets are the cheapest.
 */
int store_blob_size(struct store *s, const struct store_id *blob, uint64_t *ret_size);
int64_t store_blob_read(struct store *s, const struct store_id *blob, uint64_t offset, void *buf,
			size_t len, bool verify);
/*
 * store_blob_chunks: number of chunks (ceil(size / STORE_CHUNK_SIZE)). 0; -ENOENT; -EIO.
 * store_blob_chunk: the hash of chunk @i (@ret_hash, may be NULL) and its length (@ret_len, may
 * be NULL); with @buf non-NULL the bytes are copied out after checking their hash (a peer gets
 * only verified bytes). 0; -ENOENT (no blob, or @i >= count); -ENOBUFS (@cap < chunk length);
 * -STORE_ECORRUPT; -EIO. Outputs untouched on failure.
 */
int store_blob_chunks(struct store *s, const struct store_id *blob, uint32_t *ret_count);
int store_blob_chunk(struct store *s, const struct store_id *blob, uint32_t i,
		     struct store_id *ret_hash, void *buf, size_t cap, size_t *ret_len);

/*
 * Zero-copy reading: call @cb with the bytes of the blob from @offset, @len bytes (0 = to the
 * end), one piece per chunk, straight out of LMDB's memory map. @buf is borrowed: valid only
 * during the call. @cb runs INSIDE a read transaction: it must not call any store function
 * (a write would deadlock against map growth) and should not block for long. A non-zero
 * return from @cb stops and is returned. Returns 0; -EINVAL; -ENOENT (no blob);
 * -STORE_ECORRUPT (as store_blob_read; with @verify each chunk is hashed before its bytes
 * are passed on); -EIO.
 */
int store_blob_stream(struct store *s, const struct store_id *blob, uint64_t offset, uint64_t len,
		      bool verify, int (*cb)(const void *buf, size_t len, void *ud), void *ud);

/*
 * Materialize an artifact's files under @dir (created; existing content replaced atomically:
 * written to @dir.tmp-XXXXXX, fsynced, then renamed over, or exchanged with an existing @dir by
 * renameat2(RENAME_EXCHANGE) and the old tree removed). Modes and symlinks restored; every chunk
 * verified against its hash. @dir's parent must exist. Holds a read transaction while writing
 * (a concurrent map growth waits for it). Returns 0, -EINVAL, -ENOENT (no such artifact),
 * -STORE_ECORRUPT (missing/damaged data; nothing changed at @dir), what store_manifest_validate
 * returns for the stored manifest and its symlink targets (checked again before anything is
 * written: nothing from a damaged or forged store lands outside @dir), or a filesystem errno.
 */
int store_artifact_materialize(struct store *s, const struct store_id *id, const char *dir);

/* ---- Revisions, votes, journal ------------------------------------------------------------ */

enum store_rev_kind { STORE_REV_DEPLOY = 0, STORE_REV_ROLLBACK = 1 };

/*
 * The quorum rule a revision is decided by, written into the revision (agent/agree.h): every
 * node computes the same quorum from the same record, whatever its own configuration says.
 */
enum store_quorum_kind {
	STORE_QUORUM_MAJORITY = 0,	/* floor(E / 2) + 1 of the electorate E */
	STORE_QUORUM_COUNT = 1,		/* min(count, E) */
	STORE_QUORUM_FRACTION = 2,	/* ceil(E * num / den) */
};
struct store_quorum {
	uint32_t kind;			/* enum store_quorum_kind; zero = majority */
	uint32_t count;			/* COUNT: >= 1 */
	uint32_t num, den;		/* FRACTION: 0 < num <= den */
};

#define STORE_ELECT_MAX 4096		/* electorate and certificate sizes */
#define STORE_KEY_LEN	32		/* an Ed25519 public key (agent/base/sign.h) */
#define STORE_SIG_LEN	64		/* an Ed25519 signature */

/* The signed vote of one certificate voter (agent/base/sign.h): with the record's service,
 * rev - 1, cert_subject, cert_target and cert_round it is the vote the voter signed. */
struct store_cert_sig {
	uint64_t hlc;
	uint32_t reason;		/* enum store_vote_reason */
	uint8_t sig[STORE_SIG_LEN];
};

/* An operator's signed statement (agent/base/sign.h struct sign_op): kind 0 = none. */
struct store_opsig {
	uint8_t kind;			/* 1 deploy, 2 rollback, 3 remove (agent/base/sign.h) */
	char scope[65];
	uint64_t target;
	uint64_t ts_ms;
	uint8_t nonce[16];
	uint8_t key[STORE_KEY_LEN];
	uint8_t sig[STORE_SIG_LEN];
};

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
	/* Parallel to cert (NULL: unsigned, which the agent refuses): each voter's signed vote. */
	struct store_cert_sig *cert_sigs;
	uint64_t cert_subject;		/* what the certificate's votes judged ... */
	uint64_t cert_target;		/* ... the target they named ... */
	uint32_t cert_round;		/* ... and their round (0 for a deploy) */
	/* The electorate: the roster members in scope when the deploy was written, sorted by
	 * id, unique (a rollback carries its bad record's). Only they vote on this revision. */
	uint32_t nelect;
	uint8_t (*elect)[STORE_NODE_ID_LEN]; /* heap-owned; store_revision_release frees */
	/* Parallel to elect (NULL: keys unknown, nobody's vote verifies): each elector's public
	 * key, so a vote is checked against the key the revision names (agent/base/sign.h). An
	 * all-zero key is an elector whose key was unknown when the deploy was written. */
	uint8_t (*elect_keys)[STORE_KEY_LEN];
	/* A deploy: its origin node's signature over the record (agent/base/sign.h), zero for a
	 * rollback (its certificate proves it). */
	uint8_t origin_sig[STORE_SIG_LEN];
	/* A deploy (and an override): the operator's signed statement that asked for it. */
	struct store_opsig op;
	struct store_quorum quorum;	/* the rule the electorate decides by */
	struct store_id condemns;	/* rollback: the bad record's artifact; deploy: zero */
};
/* Free r->cert, cert_sigs, elect and elect_keys (with free(3)) and zero their counts; accepts NULL. */
void store_revision_release(struct store_revision *r);
/*
 * Deep copy of @src into @dst (caller memory, fully overwritten; owns its arrays: release with
 * store_revision_release). 0; -ENOMEM (@dst untouched).
 */
int store_revision_copy(struct store_revision *dst, const struct store_revision *src);

/*
 * Canonical msgpack encoding of a revision (layout at the top of store/codec.c); also the wire
 * form agent/ may gossip. Valid: service as for manifests, rev >= 1, kind DEPLOY/ROLLBACK,
 * scope "" or "site:NAME" (<= 64 chars), NUL-terminated arrays, ncert <= 4096.
 * store_revision_encode: *ret_buf malloc'd (free(3)). 0, -EINVAL, -ENOMEM.
 * store_revision_decode: bounds- and type-checked as store_manifest_decode; on success *ret
 *   owns ret->cert (store_revision_release). 0, -EINVAL (NULL), -EBADMSG, -ENOMEM; @ret
 *   untouched on failure.
 */
int store_revision_encode(const struct store_revision *r, uint8_t **ret_buf, size_t *ret_len);
int store_revision_decode(const uint8_t *buf, size_t len, struct store_revision *ret);

/*
 * Append or replace revision r->rev of r->service (a replicated revision may arrive out of
 * order). Marks r->artifact as deployed if present, then applies retention for that service in
 * the same transaction (see store_retain). 0; -EINVAL (invalid revision); -ENOMEM; -ENOSPC; -EIO.
 */
int store_revision_put(struct store *s, const struct store_revision *r);
/* 0 and *ret (owns ret->cert: store_revision_release); -ENOENT if absent; -EINVAL; -EIO; -ENOMEM. */
int store_revision_get(struct store *s, const char *service, uint64_t rev,
		       struct store_revision *ret);
/* Highest rev of @service in *ret_rev (0 if none). 0; -EINVAL; -EIO. */
int store_revision_latest(struct store *s, const char *service, uint64_t *ret_rev);
/*
 * Newest first, at most @limit (0 = all). @r borrowed for the call; non-zero return stops and is
 * returned. 0; -EINVAL; -ENOMEM; -EIO (a damaged record).
 */
int store_revision_foreach(struct store *s, const char *service, unsigned limit,
			   int (*cb)(const struct store_revision *r, void *ud), void *ud);
/*
 * Every service that has a revision or an artifact, in name order, each once; @service borrowed
 * for the call. Non-zero return from @cb stops and is returned. 0; -EINVAL; -ENOMEM; -EIO.
 */
int store_service_foreach(struct store *s, int (*cb)(const char *service, void *ud), void *ud);

enum store_vote_reason { STORE_VOTE_HEALTH = 0, STORE_VOTE_OPERATOR = 1 };
/*
 * A vote is a durable fact: it names the exact record it judges (subject: that record's hlc),
 * the target (0 = the previous good revision, else the operator's `--to REV`) and the round
 * it was cast in (agent/agree.h rule 4: a voter re-casts only into a later round). A vote
 * whose subject is 0 (stored by an older format) has no known meaning and is never counted.
 */
struct store_vote {
	char service[65];
	uint64_t rev;
	uint8_t voter[STORE_NODE_ID_LEN];
	enum store_vote_reason reason;
	uint64_t hlc;
	uint64_t subject;	/* agree_subject() of the record at rev the voter judged */
	uint64_t target;	/* 0 = previous good; else --to REV */
	uint32_t round;		/* 0, 1, ...: a re-cast is a vote in a later round */
	uint8_t sig[STORE_SIG_LEN];	/* the voter's signature (agree_vote_msg); zero: none */
};
/* Is @a a later vote of its voter than @b: about the same subject, (round, hlc) greater;
 * about different subjects (the voter moved on to another record at that rev), hlc greater. */
bool store_vote_newer(const struct store_vote *a, const struct store_vote *b);
/*
 * One vote per (service, rev, voter): putting a vote replaces the held one only if it is
 * store_vote_newer (a re-cast); otherwise it is a no-op returning 1. 0 stored;
 * -EINVAL (bad service, rev 0, bad reason); -ENOSPC; -EIO. Votes of revisions dropped by
 * retention are dropped with them.
 */
int store_vote_put(struct store *s, const struct store_vote *v);
/*
 * store_vote_put of @n votes in ONE write transaction (one fsync instead of @n: an agent
 * receiving the votes of a large cluster). All or none: an invalid vote fails the whole batch
 * with -EINVAL before anything is written. Votes not newer than the held one are skipped.
 * @v borrowed for the call; @n 0 is a no-op. 0; -EINVAL; -ENOSPC; -ENOMEM; -EIO.
 */
int store_vote_put_many(struct store *s, const struct store_vote *v, size_t n);
/* Votes on (service, rev), in voter order; @v borrowed for the call. 0; -EINVAL; -ENOMEM; -EIO. */
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
/*
 * store_service_state_get: 0 and *ret; 1 when nothing was ever recorded for @service (*ret is
 * then all zeros); -EINVAL (bad service name); -EIO.
 * store_service_state_put: replaces the record. 0; -EINVAL; -ENOSPC; -EIO.
 */
int store_service_state_get(struct store *s, const char *service, struct store_service_state *ret);
int store_service_state_put(struct store *s, const char *service,
			    const struct store_service_state *st);

/*
 * The swap journal: one opaque entry per service, owned by the reconciler.
 * put: replaces (0; -EINVAL; -ENOSPC; -EIO). get: *ret_buf malloc'd (free(3)), -ENOENT if none.
 * del: 0; -ENOENT if none. foreach: service name order, @service/@buf borrowed for the call.
 */
int store_journal_put(struct store *s, const char *service, const void *buf, size_t len);
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
 * of artifacts dropped; -EINVAL; -ENOMEM; -ENOSPC; -EIO.
 * ("Newest retain_revs revisions" = the revision numbers (latest - retain_revs, latest]:
 * revisions are numbered densely per service, and the cut costs one seek. "Deployed" = some
 * revision stored here pointed at it; "newest imports" ranks all of the service's artifacts by
 * import order. Votes of dropped revisions are dropped too.)
 */
int store_retain(struct store *s, const char *service);

/*
 * Collect blobs no artifact references and chunks no blob (nor any open import) references.
 * store_retain does this itself when it drops artifacts; agent/ need not call it. Returns the
 * number of records removed; -ENOMEM; -ENOSPC; -EIO.
 */
int store_gc(struct store *s);

/* ---- Opaque tables for the agent (members, gossip records, node-local state) --------------- */

/*
 * Keys are 1..511 bytes (LMDB's limit), values any size. put replaces. del: -ENOENT if absent.
 * foreach walks in key order (memcmp), key/value borrowed for the call; a non-zero return from
 * @cb stops and is returned. All: -EINVAL (bad table or key), -ENOMEM, -ENOSPC, -EIO.
 */
enum store_table {
	STORE_KV_MEMBERS = 0,	/* the gossip layer's members */
	STORE_KV_RECORDS = 1,	/* the gossip layer's records */
	STORE_KV_AGENT = 2,	/* node-local decisions that must outlive a restart (the
				 * `rollback --local` markers) */
	STORE_KV__COUNT
};
int store_kv_put(struct store *s, enum store_table t, const void *key, size_t klen,
		 const void *val, size_t vlen);
int store_kv_del(struct store *s, enum store_table t, const void *key, size_t klen);
/*
 * Several puts and deletes in ONE write transaction (one fsync for a whole batch: the agent
 * persists the gossip records it receives in batches). Applied in order, all or none. A
 * delete of an absent key is not an error. @w borrowed for the call; @n 0 is a no-op.
 * 0; -EINVAL (a bad table or key: nothing written); -ENOMEM; -ENOSPC; -EIO.
 */
struct store_kv_write {
	enum store_table table;
	const void *key;
	size_t klen;
	const void *val;	/* put: the value (may be NULL with vlen 0) */
	size_t vlen;
	bool del;		/* delete @key instead */
};
int store_kv_write_many(struct store *s, const struct store_kv_write *w, size_t n);
int store_kv_foreach(struct store *s, enum store_table t,
		     int (*cb)(const void *key, size_t klen, const void *val, size_t vlen, void *ud),
		     void *ud);

/*
 * Statistics for `agentctl status` and metrics (chunk_bytes walks the chunk table: O(chunks)).
 * 0 and *ret; -EIO.
 */
struct store_stats {
	uint64_t map_size, map_used;
	uint64_t nartifacts, nblobs, nchunks, chunk_bytes;
};
int store_stats(struct store *s, struct store_stats *ret);

/* ---- Test hooks (not for production code) ------------------------------------------------ */

/*
 * Fault injection for the allocation-failure loops: the @n-th allocation from now fails (n >= 1;
 * n < 0 turns it off); with @persistent every later one fails too, until called again.
 * Process-wide. Covers every allocation the store makes itself: handles, import state and
 * buffers, decoded manifests/revisions (their strings too), msgpack encodings (msgpack-c packs
 * into our own buffer through its write callback), foreach collections, GC sets. It does not
 * cover allocations inside LMDB (txn/cursor structures, dirty page lists: reported as ENOMEM),
 * libsodium (none on these paths) or libc (opendir/mkdtemp in materialize).
 * store__alloc_count: allocations attempted so far (to size the loops).
 */
void store__alloc_fail_after(long n, bool persistent);
long store__alloc_count(void);

#endif
