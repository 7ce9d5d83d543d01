/*
 * agent/base/log.h: the agent's logging. Only code under agent/ logs (STYLE.md); everything below
 * returns errors and the agent logs them once, where it handles them.
 *
 * Lines go to stderr. When stderr is connected to the journal (systemd sets JOURNAL_STREAM to
 * the device:inode of that stream), each line starts with the syslog priority as "<N>" so that
 * journald records the level, and carries no timestamp (the journal has its own). Otherwise a
 * line is "2026-11-26T17:40:00.123Z warning: text".
 *
 * Thread-safe: a line is formatted into a buffer and written with one write(2), so lines from the
 * loop and from threadpool workers never interleave. The level may be changed at any time
 * (SIGHUP reload).
 */
#ifndef SHOAL_AGENT_LOG_H
#define SHOAL_AGENT_LOG_H

#include <stdbool.h>

/* syslog priorities, so "<N>" prefixes are right for journald. */
enum agent_log_level {
	AGENT_LOG_ERR = 3,
	AGENT_LOG_WARNING = 4,
	AGENT_LOG_NOTICE = 5,
	AGENT_LOG_INFO = 6,
	AGENT_LOG_DEBUG = 7,
};

/* Look at JOURNAL_STREAM and stderr to choose the line format. Call once, early. */
void agent_log_init(void);
/* Force the format (tests). */
void agent_log_set_journal(bool journal);

void agent_log_set_level(enum agent_log_level level);
enum agent_log_level agent_log_get_level(void);

/*
 * Parse "error"/"err", "warning"/"warn", "notice", "info", "debug" (case-insensitive).
 * @return 0; -EINVAL. *ret untouched on failure.
 */
int agent_log_parse_level(const char *s, enum agent_log_level *ret);
const char *agent_log_level_name(enum agent_log_level level);

/* Log one line (a trailing newline is added; embedded newlines are replaced by spaces). */
void agent_logf(enum agent_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...)	 agent_logf(AGENT_LOG_ERR, __VA_ARGS__)
#define log_warning(...) agent_logf(AGENT_LOG_WARNING, __VA_ARGS__)
#define log_notice(...)	 agent_logf(AGENT_LOG_NOTICE, __VA_ARGS__)
#define log_info(...)	 agent_logf(AGENT_LOG_INFO, __VA_ARGS__)
#define log_debug(...)	 agent_logf(AGENT_LOG_DEBUG, __VA_ARGS__)

#endif
