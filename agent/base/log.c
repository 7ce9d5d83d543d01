/* agent/base/log.c: see log.h. */
#include "agent/base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = AGENT_LOG_INFO;
static _Atomic bool log_journal = false;

void agent_log_init(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	bool j = false;
	/* Only trust JOURNAL_STREAM if it names our actual stderr: it is inherited by children
	 * whose stderr may have been redirected elsewhere. */
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		j = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	atomic_store(&log_journal, j);
}

void agent_log_set_journal(bool journal)
{
	atomic_store(&log_journal, journal);
}

void agent_log_set_level(enum agent_log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum agent_log_level agent_log_get_level(void)
{
	return (enum agent_log_level)atomic_load(&log_level);
}

static const struct {
	const char *name;
	enum agent_log_level level;
} log_names[] = {
	{"error", AGENT_LOG_ERR},     {"err", AGENT_LOG_ERR},	   {"warning", AGENT_LOG_WARNING},
	{"warn", AGENT_LOG_WARNING},  {"notice", AGENT_LOG_NOTICE}, {"info", AGENT_LOG_INFO},
	{"debug", AGENT_LOG_DEBUG},
};

int agent_log_parse_level(const char *s, enum agent_log_level *ret)
{
	for (size_t i = 0; s && i < sizeof log_names / sizeof log_names[0]; i++)
		if (strcasecmp(s, log_names[i].name) == 0) {
			*ret = log_names[i].level;
			return 0;
		}
	return -EINVAL;
}

const char *agent_log_level_name(enum agent_log_level level)
{
	switch (level) {
	case AGENT_LOG_ERR: return "error";
	case AGENT_LOG_WARNING: return "warning";
	case AGENT_LOG_NOTICE: return "notice";
	case AGENT_LOG_INFO: return "info";
	case AGENT_LOG_DEBUG: return "debug";
	}
	return "info";
}

void agent_logf(enum agent_log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load(&log_level))
		return;
	char line[2048];
	size_t n = 0;
	if (atomic_load(&log_journal)) {
		n = (size_t)snprintf(line, sizeof line, "<%d>", (int)level);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s: ",
				      ts.tv_nsec / 1000000, agent_log_level_name(level));
	}
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	size_t end = n + (size_t)m;
	if (end > sizeof line - 2)
		end = sizeof line - 2;
	/* One record per line: a newline inside a message would forge a second record. */
	for (size_t i = n; i < end; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[end++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, end);
	(void)w;
}
