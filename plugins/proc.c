/*
 * plugins/proc.c: see proc.h.
 */
#include "plugins/proc.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* The variables we set: always the last PROC_NOURS entries of an environment we built. */
enum { PROC_NOURS = 4 };

char **proc_env_new(const char *service, uint64_t rev, const char *artifact, const char *dir)
{
	static const char *const ours[PROC_NOURS] = { "SHOAL_SERVICE=", "SHOAL_REV=",
						      "SHOAL_ARTIFACT=", "SHOAL_DIR=" };
	char buf[32];
	const char *val[PROC_NOURS] = { service, buf, artifact, dir };
	size_t n = 0, k = 0;
	char **env;

	snprintf(buf, sizeof(buf), "%" PRIu64, rev);
	while (environ && environ[n])
		n++;
	env = calloc(n + PROC_NOURS + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool skip = false;

		for (size_t j = 0; j < PROC_NOURS; j++)
			skip |= strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
		if (!skip)
			env[k++] = environ[i];	/* borrowed: only ours are freed */
	}
	for (size_t j = 0; j < PROC_NOURS; j++) {
		size_t len = strlen(ours[j]) + strlen(val[j]) + 1;

		env[k + j] = malloc(len);
		if (!env[k + j]) {
			for (size_t m = k; m < k + j; m++)
				free(env[m]);
			free(env);
			return NULL;
		}
		snprintf(env[k + j], len, "%s%s", ours[j], val[j]);
	}
	env[k + PROC_NOURS] = NULL;
	return env;
}

void proc_env_free(char **env)
{
	size_t n = 0;

	while (env[n])
		n++;
	for (size_t i = n - PROC_NOURS; i < n; i++)
		free(env[i]);
	free(env);
}

int proc_spawn_sh_stdio(uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb,
			const char *command, const char *dir, char **env,
			uv_stdio_container_t stdio[3], bool gated)
{
	/* The gate: `read` returns non-zero at EOF without a newline. The command goes in as
	 * $1 of the outer shell and runs as `sh -c "$1"`, so it sees what it would see without
	 * the gate ($0 "sh", no positional parameters). */
	char *plain[] = { "sh", "-c", (char *)command, NULL };
	char *gate[] = { "sh", "-c", "IFS= read -r _ || exit 0; exec /bin/sh -c \"$1\" </dev/null",
			 "shoal-exec-gate", (char *)command, NULL };
	uv_process_options_t o;

	memset(&o, 0, sizeof(o));
	o.exit_cb = exit_cb;
	o.file = "/bin/sh";
	o.args = gated ? gate : plain;
	o.env = env;
	o.cwd = dir;
	o.flags = UV_PROCESS_DETACHED;
	o.stdio_count = 3;
	o.stdio = stdio;
	return uv_spawn(loop, proc, &o);
}

int proc_spawn_sh(uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb, const char *command,
		  const char *dir, char **env, uv_pipe_t out[2])
{
	uv_stdio_container_t stdio[3];

	memset(stdio, 0, sizeof(stdio));
	stdio[0].flags = UV_IGNORE;
	for (int i = 0; i < 2; i++) {
		stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[i + 1].data.stream = (uv_stream_t *)&out[i];
	}
	return proc_spawn_sh_stdio(loop, proc, exit_cb, command, dir, env, stdio, false);
}
