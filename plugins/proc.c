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
