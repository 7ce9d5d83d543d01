/*
 * plugins/proc.h: helpers for spawning a service's commands, shared by the exec driver and
 * by the agent's exec health checks (which run a command in the same environment).
 *
 * Synchronous, no logging. proc_env_new reads the process's `environ`, so it is not safe against
 * a concurrent setenv/putenv in another thread; proc_spawn_sh runs on the caller's loop thread.
 */
#ifndef SHOAL_PLUGINS_PROC_H
#define SHOAL_PLUGINS_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

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

/*
 * Spawn `/bin/sh -c @command` in @dir as the leader of a new session and process group
 * (UV_PROCESS_DETACHED), stdin ignored, stdout into @out[0] and stderr into @out[1] (pipes
 * already initialised on @loop), with @env (from proc_env_new; borrowed for the call).
 * Returns uv_spawn's result: 0, or a negative libuv error, after which @proc still needs
 * uv_close (libuv's rule for a failed spawn).
 */
int proc_spawn_sh(uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb, const char *command,
		  const char *dir, char **env, uv_pipe_t out[2]);

/*
 * Like proc_spawn_sh, with the caller's @stdio (three containers: stdin, stdout, stderr) and,
 * with @gated, behind a gate: the process (same pid throughout, it execs) first reads one line
 * from its stdin, which must then be a pipe (UV_CREATE_PIPE | UV_READABLE_PIPE), and only then
 * runs `/bin/sh -c @command` with stdin /dev/null, exactly as proc_spawn_sh would. EOF before
 * a whole line makes it exit 0 without running @command. The caller opens the gate by writing
 * "\n" and closing the pipe; in between it may act on the pid (move it into another cgroup)
 * before anything was forked from it.
 */
int proc_spawn_sh_stdio(uv_loop_t *loop, uv_process_t *proc, uv_exit_cb exit_cb,
			const char *command, const char *dir, char **env,
			uv_stdio_container_t stdio[3], bool gated);

#endif
