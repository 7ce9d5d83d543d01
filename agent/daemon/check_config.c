/*
 * agent/daemon/check_config.c: `agentd --check-config` beyond the parse (agent.h:
 * agent_check_config). The parse (config/config.h) already refused unknown keys and bad values;
 * here, what would make startup fail later without being a value's syntax: directories that
 * cannot be created or written, a keyring that cannot be read or is not a keyring, a socket
 * group that does not exist, a metrics address that is not numeric, an event hook that is not
 * an executable file. Nothing is created or changed: a check run beside a live agent (systemd's
 * ExecReload) must not disturb it.
 */
#include "agent/daemon/agent.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gossip/crypto.h"

/*
 * @path is an existing directory this process may write into, or could be created: its
 * nearest existing ancestor is a directory we may write into. @what names it in @err.
 */
static int check_dir(const char *what, const char *path, char *err, size_t errlen)
{
	char p[PATH_MAX];
	struct stat st;
	bool exists = true;
	snprintf(p, sizeof p, "%s", path);
	for (;;) {
		if (stat(p, &st) == 0)
			break;
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s %s: cannot check %s: %s", what, path, p,
				 strerror(errno));
			return -errno;
		}
		exists = false;
		char *slash = strrchr(p, '/');
		if (!slash)
			return 0;
		if (slash == p) {
			p[1] = 0;
			continue;
		}
		*slash = 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s %s: %s is not a directory", what, path, p);
		return -ENOTDIR;
	}
	if (access(p, W_OK | X_OK) < 0) {
		int e = errno;
		if (exists)
			snprintf(err, errlen, "%s %s: not writable by this user: %s", what, path,
				 strerror(e));
		else
			snprintf(err, errlen, "%s %s: cannot be created: %s: %s", what, path, p,
				 strerror(e));
		return -e;
	}
	return 0;
}

/* The parent directory of a file path @path, as check_dir. */
static int check_parent(const char *what, const char *path, char *err, size_t errlen)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	char *slash = strrchr(p, '/');
	if (!slash)
		return 0;
	if (slash == p)
		slash[1] = 0;
	else
		*slash = 0;
	return check_dir(what, p, err, errlen);
}

static int check_keyring(const struct agent_config *cfg, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct gossip_keyring *kr = NULL;
	int r;
	if (cfg->keyring)
		snprintf(path, sizeof path, "%s", cfg->keyring);
	else
		snprintf(path, sizeof path, "%s/keyring", cfg->state_dir);
	if (!cfg->keyring && access(path, F_OK) < 0 && errno == ENOENT)
		return 0;	/* the default keyring is created at the first start */
	r = gossip_keyring_new(&kr);
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		return r;
	}
	r = gossip_keyring_load(kr, path);
	if (r < 0)
		snprintf(err, errlen, "keyring %s: %s%s", path,
			 r == -EINVAL || r == -EBADMSG ? "not a keyring (one base64 key of 32 bytes "
							 "per line)"
						       : strerror(-r),
			 r == -ENOENT ? " (an explicit --keyring must exist)" : "");
	gossip_keyring_free(kr);
	return r;
}

static int check_metrics(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	char host[128];
	const char *colon = strrchr(addr, ':');
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	int r;
	if (!colon || hl == 0 || hl >= sizeof host)
		goto bad;
	memcpy(host, addr, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host[hl - 1] = 0;
		r = uv_ip6_addr(host + 1, atoi(colon + 1), (struct sockaddr_in6 *)&ss);
	} else {
		r = uv_ip4_addr(host, atoi(colon + 1), (struct sockaddr_in *)&ss);
	}
	if (r == 0)
		return 0;
bad:
	snprintf(err, errlen, "metrics %s: must be a numeric IP:PORT (e.g. 127.0.0.1:9464)", addr);
	return -EINVAL;
}

static int check_hook(const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "event-hook %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "event-hook %s: not a regular file", path);
		return -EINVAL;
	}
	if (access(path, X_OK) < 0) {
		snprintf(err, errlen, "event-hook %s: not executable by this user: %s", path,
			 strerror(errno));
		return -EACCES;
	}
	return 0;
}

int agent_check_config(const struct agent_config *cfg, char *err, size_t errlen)
{
	int r;
	if ((r = check_dir("state-dir", cfg->state_dir, err, errlen)) < 0)
		return r;
	if ((r = check_parent("socket", cfg->socket_path, err, errlen)) < 0)
		return r;
	if ((r = check_keyring(cfg, err, errlen)) < 0)
		return r;
	if (cfg->socket_group && cfg->socket_group_explicit && !getgrnam(cfg->socket_group)) {
		snprintf(err, errlen, "socket-group %s: no such group", cfg->socket_group);
		return -ENOENT;
	}
	if (cfg->metrics && (r = check_metrics(cfg->metrics, err, errlen)) < 0)
		return r;
	if (cfg->event_hook && (r = check_hook(cfg->event_hook, err, errlen)) < 0)
		return r;
	return 0;
}
