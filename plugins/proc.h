/*
 * plugins/proc.h: helpers for spawning a service's commands, shared by the exec driver and
 * by the agent's exec health checks (which run a command in the same environment).
 *
 * Pure and synchronous: no loop, no I/O, no logging. Thread-safety: reads the process's
 * `environ`, so not safe against a concurrent setenv/putenv in another thread.
 */
#ifndef SHOAL_PLUGINS_PROC_H
#define SHOAL_PLUGINS_PROC_H

#include <stdint.h>

/*
 * The environment for a command of a service: the process's own environment with any
 * SHOAL_SERVICE, SHOAL_REV, SHOAL_ARTIFACT and SHOAL_DIR removed, then those four set to
 * @service, @rev (decimal), @artifact and @dir (all non-NULL; copied).
 * Returns a NULL-terminated array to pass to uv_spawn / execve and release with
 * proc_env_free(), or NULL when out of memory (-ENOMEM). The entries taken from `environ` are
 * borrowed, so the result must be used before the environment changes (call it right before
 * spawning and free it right after).
 */
char **proc_env_new(const char *service, uint64_t rev, const char *artifact, const char *dir);

/* Release what proc_env_new() returned (the four SHOAL_* entries it made and the array). */
void proc_env_free(char **env);

#endif
