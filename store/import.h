/*
 * store/import.h: turning an operator's release into a stored artifact.
 *
 * An artifact starts life as a directory, or a tree in a git repository, with a release.ini at
 * its root (DESIGN.md "Operator interface"). This module
 *
 *   - parses and validates release.ini into a struct store_manifest (store/release.c), and
 *   - walks a directory (store_import_dir) or a git tree at a ref (store_import_git, through
 *     libgit2, without a checkout) and streams every file into the store's import API
 *     (store_import_begin/file/write/file_end/commit in store/store.h), so an import is one
 *     write transaction: all or nothing.
 *
 * Rules every import enforces (the same for a directory and a git tree, so that importing the
 * same content either way gives the same artifact id):
 *
 *   - release.ini must be a regular file at the root of the tree and parse cleanly; files it
 *     names ([systemd] unit, [container] archive, the program of [exec] command and of
 *     [health] exec when given as a relative path) must exist in the tree.
 *   - Files are imported in byte order of their '/'-separated relative path. A regular file
 *     gets mode 0755 if any execute bit is set, else 0644 (git: 100755 / 100644). Nothing else
 *     of the file's metadata (owner, times, xattrs) enters the artifact.
 *   - A symlink is stored as a symlink (mode 0120000, its bytes are the target) only if the
 *     target, resolved against the tree itself exactly as the kernel would resolve it in the
 *     materialized directory (following symlinks inside the tree, ".." after a symlink
 *     included), stays inside the tree. Absolute targets, escaping targets and symlink loops
 *     are refused (-STORE_EESCAPE, the path and target in the message). Symlinked directories
 *     are never followed by the walk.
 *   - Directories themselves are not stored: an empty directory does not survive an import.
 *     Entries named ".git" are skipped at any depth (a checkout's repository is not content).
 *   - Other file types (fifos, sockets, devices) and git submodules (gitlink entries) are
 *     refused with -STORE_EINVALID naming the path: an artifact must be self-contained.
 *   - Limits (struct store_import_limits) are checked before a byte is stored where the size is
 *     known up front, and again while streaming.
 *   - Names and symlink targets are UTF-8 without control characters (C0, DEL, C1): a name
 *     with a newline or an escape byte is refused (-STORE_EBADPATH, the name escaped in the
 *     message). Commit metadata from git is text for humans instead: such bytes in the author
 *     or message become '?'.
 *   - All of the above that can be judged from the manifest and the symlink targets is
 *     store_manifest_validate (store/store.h), which the importers call before streaming and
 *     store_import_commit calls again: the same rules hold for artifacts fetched from peers.
 *
 * Errors: 0 or positive on success, negative errno or -STORE_E* (store/store.h) on failure.
 * Every function that can fail for a reason an operator can fix takes @err/@errlen and writes
 * one lowercase line there, naming the file, line and key or the path concerned, e.g.
 *
 *   release.ini:7: [health] interval: invalid duration "2x"
 *   bin/huge: 300000000 bytes, over the file size limit of 268435456 bytes
 *
 * @err may be NULL (then @errlen is ignored); the text is always NUL-terminated and truncated
 * to @errlen. On success @err is set to "". This module never logs.
 *
 * Threads: the functions keep no global state of their own; libgit2 is initialised and shut
 * down (reference-counted by libgit2) inside each store_import_git call, so concurrent calls
 * from several threads are fine. The store's rule applies: one import per thread at a time.
 * libgit2's process-wide options (e.g. its repository owner check) are left as they are.
 *
 * Blocking: the importers read the whole tree and hash every byte (about 1.5 s for 130 MiB
 * on one core here): call them from a worker thread (uv_queue_work), not from a loop thread.
 * They read with the caller's privileges: a daemon importing on someone's behalf should check
 * that the requester may read the path.
 */
#ifndef SHOAL_STORE_IMPORT_H
#define SHOAL_STORE_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- release.ini ------------------------------------------------------------------------ */

/* The name every artifact's manifest file has, at the root of its tree. */
#define STORE_RELEASE_FILE "release.ini"
/* release.ini larger than this is refused (-STORE_EINVALID) without being parsed. */
#define STORE_RELEASE_MAX_SIZE (64 * 1024)

/* Defaults of the health policy (store.h documents the fields). */
#define STORE_HEALTH_INTERVAL_MS 2000
#define STORE_HEALTH_TIMEOUT_MS	 1000
#define STORE_HEALTH_FAILURES	 3
#define STORE_HEALTH_DEADLINE_MS 60000
/* Bounds: failures in 1..STORE_HEALTH_FAILURES_MAX; durations in 1ms..UINT32_MAX ms. */
#define STORE_HEALTH_FAILURES_MAX 1000

/* Defaults of [endpoint] (when the section is present) and [recovery] (always). */
#define STORE_ENDPOINT_WEIGHT	 100
#define STORE_ENDPOINT_DRAIN_MS	 10000
#define STORE_RECOVERY_RESTARTS 0
#define STORE_RECOVERY_REMOVE_UNHEALTHY true

/*
 * Parse a duration: one or more groups of decimal digits followed by a unit, "ms", "s", "m"
 * or "h" ("500ms", "2s", "1m30s", "1h"). No sign, no fraction, no spaces, no bare number.
 * Useful beyond release.ini (e.g. agentctl --timeout).
 * @return 0 and *ret_ms; -EINVAL if malformed (including ""); -ERANGE if over UINT64_MAX ms.
 *         *ret_ms untouched on failure.
 */
int store_duration_parse(const char *s, uint64_t *ret_ms);

/*
 * Does the artifact being imported contain a file (regular file or symlink) at @path?
 * @path is relative, '/'-separated, already normalised ("./" prefixes removed).
 */
typedef bool (*store_release_has_file_cb)(const char *path, void *ud);

/*
 * Parse release.ini from @buf (@len bytes; need not be NUL-terminated; NUL bytes are an error)
 * into *@ret.
 *
 * Syntax: inih's (sections, "key = value" or "key: value", comments starting a line with ';'
 * or '#', inline comments after whitespace with ';' or '#', a value starting with '#' is a
 * comment too; values trimmed and otherwise taken verbatim: no quoting, no escapes; no
 * continuation lines: leading whitespace is ignored; CRLF and a UTF-8 BOM accepted). A line
 * may hold at most 198 bytes after its leading whitespace (inih's line buffer). Keys and
 * section names are case-sensitive; a section may appear more than once. Values are valid
 * UTF-8 and hold no control characters (C0, DEL, C1; commands may hold tabs).
 *
 * The stored values: strings as written, except [systemd] unit and [container] archive,
 * which are stored normalised (leading "./" removed). Commands are not split or interpreted
 * here (the exec plugin runs [exec] command with /bin/sh -c in the artifact directory).
 *
 * Sections and keys (any other section or key, a key outside a section, a key given twice or
 * an empty value ([endpoint] address excepted) is an error, for typo safety):
 *   [release]   service (required, [a-zA-Z0-9._-]{1,64}, not "." or ".."),
 *               runtime (required: exec | systemd | container), version (printable, <= 128)
 *   [exec]      command                      (required when runtime = exec)
 *   [systemd]   unit: relative path of a unit file in the artifact, name ending ".service"
 *                                            (required when runtime = systemd)
 *   [container] image: image reference; archive: relative path of an image archive in the
 *               artifact                     (at least one required when runtime = container)
 *   [health]    http (http://HOST[:PORT][/PATH]), tcp (HOST:PORT or [V6]:PORT),
 *               exec (a command run from the artifact directory): at most one of the three;
 *               interval, timeout, deadline (durations, see store_duration_parse, > 0);
 *               failures (1..STORE_HEALTH_FAILURES_MAX). Absent ones take the defaults above.
 *   [endpoint]  where a load balancer reaches the service (struct store_endpoint):
 *               port (required in the section: 1..65535); address (an IPv4 or IPv6 literal
 *               such as 10.0.0.5 or fd00::5, no brackets; absent or empty = the node's
 *               advertise address); weight (0..256, HAProxy's range, default 100); protocol
 *               (tcp | http, default tcp); drain (duration 0..10m, default 10s: how long a
 *               swap waits for connections to leave the instance). Without the section the
 *               service has no endpoint (all zero).
 *   [recovery]  restarts (local restarts before the node counts the instance as failed:
 *               0..100, default 0); remove_unhealthy (true | false, also yes/no, on/off, 1/0;
 *               default true: an unhealthy instance leaves the load balancer at once, while
 *               the cluster decides). Defaults apply whether or not the section is present.
 * The sections of the other runtimes ([systemd] with runtime = exec, ...) are errors too.
 * Relative paths never start with '/' and contain no "." or ".." component ("./x" is taken
 * as "x").
 *
 * When @has_file is not NULL, the files the manifest names are checked with it: [systemd]
 * unit, [container] archive, and the first word of [exec] command and [health] exec when it
 * contains a '/' and does not start with one (e.g. "./check.sh"; "sh -c ..." and "/bin/true"
 * are taken from the host). store_release_parse() is store_release_parse_files() without the
 * check.
 *
 * @filename: used as the prefix of error messages only (e.g. "release.ini").
 * @ret: on success, filled with heap-owned strings (free with store_manifest_release());
 *       health defaults applied; git_* fields NULL; no files. Untouched on failure.
 * The result passes store_manifest_validate (without files); a rule only that function knows
 * would be reported as "file: manifest: ...", which a parser bug would be.
 * @return 0; -STORE_EINVALID (message in @err, naming "file:line: [section] key: problem",
 *         or "file: [section] key: problem" for a missing key; among errors of single
 *         lines the first by line wins, inih's "file:line: syntax error (...)" included;
 *         whole-file rules (missing keys, files, one health check) are checked after);
 *         -ENOMEM.
 * Pure: no I/O, no global state (inih's global settings are not touched); thread-safe.
 */
int store_release_parse(const char *buf, size_t len, const char *filename,
			struct store_manifest *ret, char *err, size_t errlen);
int store_release_parse_files(const char *buf, size_t len, const char *filename,
			      store_release_has_file_cb has_file, void *ud,
			      struct store_manifest *ret, char *err, size_t errlen);

/* ---- Importing ---------------------------------------------------------------------------- */

/* The limits (struct store_import_limits, STORE_IMPORT_MAX_*) are in store/store.h. */

/*
 * Import the directory @dir as an artifact.
 *
 * release.ini is read first (at most STORE_RELEASE_MAX_SIZE bytes) and validated, then the
 * tree is walked (without following symlinks: openat/fstatat with O_NOFOLLOW), checked
 * against the limits and the rules above, and only then streamed into the store file by file
 * in 64 KiB reads (a file is never held in memory whole). A file that changes size while it
 * is read is caught by the limits or by the size recorded at the walk (-EAGAIN).
 *
 * @lim: may be NULL (defaults). @now_ms: recorded as the import time.
 * @ret_id: the artifact id, set on success only.
 * @return 0 when the artifact is new, 1 when the same content was already stored (same id);
 *         -STORE_EINVALID (release.ini missing, invalid, or naming a missing file; unsupported
 *         file type); -STORE_EBADPATH (a name or symlink target with a control character or
 *         invalid UTF-8); -STORE_ETOOBIG (a file, the total or the file count over the limit: the
 *         message names the file and the limit); -STORE_EESCAPE (a symlink leaving the tree;
 *         the message names it); -ENOENT/-ENOTDIR/-EACCES/... (@dir itself or a file in it;
 *         path in the message); -EAGAIN (a file changed during the import); -ENOMEM; any
 *         error of store_import_* (e.g. -ENOSPC). Nothing is stored on failure.
 */
int store_import_dir(struct store *s, const char *dir, const struct store_import_limits *lim,
		     uint64_t now_ms, struct store_id *ret_id, char *err, size_t errlen);

/*
 * Import the tree of a git commit, read straight from the object database (no checkout, no
 * working tree needed: bare repositories work).
 *
 * @repo_path: the repository (its working directory or its .git / bare directory; no
 *             searching of parent directories).
 * @ref: anything git_revparse_single() accepts that peels to a commit: a tag (annotated or
 *       lightweight), a branch, "HEAD", a full or abbreviated commit id, "v1~2", ...
 * @subdir: NULL, "" or "." for the root of the commit's tree; else the relative path of a
 *          directory in it (leading "./" and trailing "/" ignored), which becomes the
 *          artifact's root (release.ini is looked for there, symlinks must stay inside it).
 *
 * The manifest records git_commit (40 hex digits), git_author ("Name <email>" of the commit's
 * author), git_message (the commit message, whitespace-trimmed) and, when @ref itself names a
 * tag (refs/tags/..., found the way git_revparse_single() finds it), git_tag (its short name,
 * e.g. "v1.4.2"); version defaults to that tag when release.ini has none. A message longer
 * than 64 KiB is cut there (at a UTF-8 character boundary). Blob bytes are stored exactly as
 * in the repository (no filters, no line-ending conversion); libgit2 hands a blob over whole,
 * so the largest blob (at most max_file_size) is held in memory once, one blob at a time.
 * Gitlinks (submodules) inside the imported tree are refused (-STORE_EINVALID): vendor the
 * files, or import the submodule's repository as its own artifact.
 *
 * @return as store_import_dir, plus: -STORE_ENOTREPO (@repo_path is not a git repository);
 *         -STORE_ENOREF (@ref does not exist, is ambiguous or malformed, or does not peel to a
 *         commit); -ENOENT (@subdir not in the tree); -ENOTDIR (@subdir is not a directory);
 *         -EINVAL (@subdir absolute or with "." / ".." components inside it, @ref empty or
 *         NULL); -EACCES (libgit2 refuses a repository owned by another user: its
 *         safe.directory rule); -EIO (libgit2 failed reading the repository; its message in
 *         @err).
 */
int store_import_git(struct store *s, const char *repo_path, const char *ref, const char *subdir,
		     const struct store_import_limits *lim, uint64_t now_ms,
		     struct store_id *ret_id, char *err, size_t errlen);

#endif
