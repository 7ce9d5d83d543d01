/*
 * tests/integration/reconcile_harness.h: helpers shared by the reconciler's unit test
 * (tests/unit/test_agent_reconcile.c) and crash test (tests/integration/reconcile_crash*.c).
 * Header-only, static.
 *
 * The services these tests run are exec artifacts whose command is ./run.sh:
 *
 *   printf '%s %s\n' "$SHOAL_REV" "$$" > "$RC_MARK_DIR/$SHOAL_SERVICE.tmp.$$"
 *   mv -f ... "$RC_MARK_DIR/$SHOAL_SERVICE.marker"      (atomic: a reader sees a whole line)
 *   exec sleep 300
 *
 * so the marker names the revision and pid (the process group leader, which `exec`s into
 * sleep) of the instance started last, and every instance carries RC_TAG=<tag> in its
 * environment, which rh_scan() finds in /proc to count the instances alive.
 */
#ifndef RECONCILE_HARNESS_H
#define RECONCILE_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/import.h"
#include "store/store.h"

static inline void rh_rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;

		if (d) {
			while ((e = readdir(d))) {
				char sub[PATH_MAX];

				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
					continue;
				if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >=
				    (int)sizeof(sub))
					continue;
				rh_rm_rf(sub);
			}
			closedir(d);
		}
		rmdir(path);
	} else {
		unlink(path);
	}
}

static inline int rh_write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fputs(text, f);
	if (fclose(f) != 0)
		return -EIO;
	return chmod(path, mode) < 0 ? -errno : 0;
}

/*
 * Import an exec artifact of @service labelled @version (different versions: different ids)
 * from a fresh directory under @root. @extra: more shell lines run before the marker is
 * written (NULL for none). 0 or a negative error (message on stderr).
 */
static inline int rh_make_artifact(struct store *s, const char *root, const char *service,
				   const char *version, const char *extra, struct store_id *ret)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], text[1024], err[512];
	int r;

	snprintf(dir, sizeof(dir), "%s/src-%s-%s", root, service, version);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/release.ini", dir);
	snprintf(text, sizeof(text),
		 "[release]\nservice = %s\nruntime = exec\nversion = %s\n\n"
		 "[exec]\ncommand = ./run.sh\n", service, version);
	r = rh_write_file(path, text, 0644);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/run.sh", dir);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\n# version %s\n%s\n"
		 "m=\"$RC_MARK_DIR/$SHOAL_SERVICE\"\n"
		 "printf '%%s %%s\\n' \"$SHOAL_REV\" \"$$\" > \"$m.tmp.$$\"\n"
		 "mv -f \"$m.tmp.$$\" \"$m.marker\"\n"
		 "exec sleep 300\n", version, extra ? extra : "");
	r = rh_write_file(path, text, 0755);
	if (r < 0)
		return r;
	r = store_import_dir(s, dir, NULL, 1, ret, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "import %s: %s (%s)\n", dir, err, store_strerror(r));
	return r < 0 ? r : 0;
}

/* The marker of @service under @markdir: 0 and rev/pid; -ENOENT; -EBADMSG. */
static inline int rh_read_marker(const char *markdir, const char *service, uint64_t *ret_rev,
				 long *ret_pid)
{
	char path[PATH_MAX];
	unsigned long long rev;
	long pid;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "%s/%s.marker", markdir, service);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	n = fscanf(f, "%llu %ld", &rev, &pid);
	fclose(f);
	if (n != 2)
		return -EBADMSG;
	*ret_rev = rev;
	*ret_pid = pid;
	return 0;
}

/* Is @pid alive and not a zombie? */
static inline bool rh_alive(long pid)
{
	char path[64], buf[512], *q;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	q = strrchr(buf, ')');
	return q && q[1] == ' ' && q[2] != 'Z' && q[2] != 'X';
}

struct rh_proc {
	long pid, pgid;
	uint64_t rev;
};

/*
 * Every live (non-zombie) process whose environment holds RC_TAG=@tag: up to @cap of them
 * into @out (pid, process group, SHOAL_REV). Returns how many were found (may exceed @cap).
 */
static inline int rh_scan(const char *tag, struct rh_proc *out, int cap)
{
	char want[256], path[64], buf[16384];
	struct dirent *e;
	DIR *d = opendir("/proc");
	int found = 0;

	if (!d)
		return 0;
	snprintf(want, sizeof(want), "RC_TAG=%s", tag);
	while ((e = readdir(d))) {
		long pid = strtol(e->d_name, NULL, 10);
		bool match = false;
		uint64_t rev = 0;
		size_t n;
		int fd;

		if (pid <= 0 || !rh_alive(pid))
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = 0;
		for (;;) {
			ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);

			if (k <= 0)
				break;
			n += (size_t)k;
			if (n == sizeof(buf) - 1)
				break;
		}
		close(fd);
		buf[n] = '\0';
		for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
			if (strcmp(buf + i, want) == 0)
				match = true;
			else if (strncmp(buf + i, "SHOAL_REV=", 10) == 0)
				rev = strtoull(buf + i + 10, NULL, 10);
		}
		if (!match || rev == 0)	/* rev 0: our own test process (or its driver) */
			continue;
		if (found < cap) {
			out[found].pid = pid;
			out[found].pgid = getpgid((pid_t)pid);
			out[found].rev = rev;
		}
		found++;
	}
	closedir(d);
	return found;
}

/* SIGKILL every process rh_scan finds for @tag (by PID). Returns how many. */
static inline int rh_kill_tagged(const char *tag)
{
	struct rh_proc p[64];
	int n = rh_scan(tag, p, 64);

	for (int i = 0; i < n && i < 64; i++)
		kill((pid_t)p[i].pid, SIGKILL);
	return n;
}

/* Entries in @dir other than "." and "..", or -errno. */
static inline int rh_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int rh_journal_count_cb(const char *service, const void *buf, size_t len, void *ud)
{
	(void)service;
	(void)buf;
	(void)len;
	(*(int *)ud)++;
	return 0;
}

/* Number of journal entries, or a negative error. */
static inline int rh_journal_count(struct store *s)
{
	int n = 0;
	int r = store_journal_foreach(s, rh_journal_count_cb, &n);

	return r < 0 ? r : n;
}

#endif
