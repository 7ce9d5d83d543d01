/*
 * plugins/scope.c: see scope.h.
 */
#include "plugins/scope.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MGR	"org.freedesktop.systemd1.Manager"
#define POLL_MS 5

void scope__unit_name(const char *service, char *buf)
{
	snprintf(buf, SCOPE_UNIT_MAX, "shoal-exec-%s.scope", service);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int bus_open(const char *bus_address, sd_bus **ret)
{
	sd_bus *bus = NULL;
	int r;

	if (bus_address) {
		/* a direct connection to systemd: no bus daemon, no Hello */
		r = sd_bus_new(&bus);
		if (r < 0)
			return r;
		r = sd_bus_set_address(bus, bus_address);
		if (r >= 0)
			r = sd_bus_start(bus);
	} else {
		r = sd_bus_open_system(&bus);
	}
	if (r < 0) {
		sd_bus_unref(bus);
		return r;
	}
	*ret = bus;
	return 0;
}

/* The errno of a failed call, never 0, with "@what: name: message" in @err. */
static int call_error(int r, const sd_bus_error *e, const char *what, char *err, size_t errlen)
{
	if (e && sd_bus_error_is_set(e))
		snprintf(err, errlen, "%s: %s: %s", what, e->name,
			 e->message ? e->message : "(no message)");
	else
		snprintf(err, errlen, "%s: %s", what, strerror(r < 0 ? -r : EIO));
	return r < 0 ? r : -EIO;
}

static int start_call(sd_bus *bus, const char *unit, pid_t pid, const char *desc,
		      uint32_t stop_timeout_ms, uint64_t usec, sd_bus_error *e)
{
	sd_bus_message *m = NULL, *reply = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MGR,
					   "StartTransientUnit");
	if (r < 0)
		goto out;
	/* mode "fail": never replace a job someone else queued for a unit of that name */
	r = sd_bus_message_append(m, "ss", unit, "fail");
	if (r < 0)
		goto out;
	r = sd_bus_message_append(m, "a(sv)", 4, "Description", "s", desc, "PIDs", "au", 1,
				  (uint32_t)pid, "CollectMode", "s", "inactive-or-failed",
				  "TimeoutStopUSec", "t", (uint64_t)stop_timeout_ms * 1000u);
	if (r < 0)
		goto out;
	r = sd_bus_message_append(m, "a(sa(sv))", 0);
	if (r < 0)
		goto out;
	r = sd_bus_call(bus, m, usec, e, &reply);
out:
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
	return r;
}

/* Whether systemd still has @unit loaded: 1 yes, 0 no (NoSuchUnit), < 0 error. */
static int unit_loaded(sd_bus *bus, const char *unit)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int r;

	r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MGR, "GetUnit", &e, &reply, "s", unit);
	if (r < 0 && sd_bus_error_has_name(&e, "org.freedesktop.systemd1.NoSuchUnit"))
		r = 0;
	else if (r >= 0)
		r = 1;
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	return r;
}

static int stop_call(sd_bus *bus, const char *unit, uint64_t usec, sd_bus_error *e)
{
	sd_bus_message *m = NULL, *reply = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, SD_DEST, SD_PATH, SD_MGR, "StopUnit");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", unit, "replace");
	if (r >= 0)
		r = sd_bus_call(bus, m, usec, e, &reply);
	if (r < 0 && sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit")) {
		sd_bus_error_free(e);
		r = 0;
	}
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
	return r;
}

bool scope__pid_in(pid_t pid, const char *unit)
{
	char path[64], buf[4096];
	size_t ul = strlen(unit);
	bool found = false;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cgroup", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* lines "ID:CONTROLLERS:PATH"; hybrid hosts have several, each path must end in /unit
	 * for one of them (systemd moves the process in all of them) */
	for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		size_t len;

		nl = strchr(line, '\n');
		len = nl ? (size_t)(nl - line) : strlen(line);
		if (len > ul && line[len - ul - 1] == '/' && memcmp(line + len - ul, unit, ul) == 0)
			found = true;
	}
	return found;
}

int scope__start(const char *bus_address, const char *unit, pid_t pid, const char *desc,
		 uint32_t stop_timeout_ms, uint32_t timeout_ms, char *err, size_t errlen)
{
	uint64_t deadline = mono_ms() + timeout_ms, usec = (uint64_t)timeout_ms * 1000u;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus *bus = NULL;
	int r;

	err[0] = '\0';
	r = bus_open(bus_address, &bus);
	if (r < 0) {
		snprintf(err, errlen, "cannot connect to systemd (%s): %s",
			 bus_address ? bus_address : "system bus", strerror(-r));
		return r;
	}
	r = start_call(bus, unit, pid, desc, stop_timeout_ms, usec, &e);
	if (r < 0 && sd_bus_error_has_name(&e, "org.freedesktop.systemd1.UnitExists")) {
		/* a scope of an earlier instance: systemd has not collected it yet, or processes
		 * that left that instance's process group keep it alive. Ours by its name: stop
		 * it, wait until it is gone, and try once more. */
		sd_bus_error_free(&e);
		r = stop_call(bus, unit, usec, &e);
		if (r < 0) {
			r = call_error(r, &e, "StopUnit of the earlier scope", err, errlen);
			goto out;
		}
		while ((r = unit_loaded(bus, unit)) > 0 && mono_ms() < deadline)
			sleep_ms(POLL_MS);
		if (r != 0) {
			snprintf(err, errlen, "an earlier %s did not go away in %u ms", unit,
				 timeout_ms);
			r = r < 0 ? r : -ETIMEDOUT;
			goto out;
		}
		r = start_call(bus, unit, pid, desc, stop_timeout_ms, usec, &e);
	}
	if (r < 0) {
		r = call_error(r, &e, "StartTransientUnit", err, errlen);
		goto out;
	}
	/* the reply only means "job queued": the move is seen in /proc */
	while (!scope__pid_in(pid, unit)) {
		if (mono_ms() >= deadline) {
			snprintf(err, errlen, "pid %ld not moved into %s within %u ms", (long)pid,
				 unit, timeout_ms);
			r = -ETIMEDOUT;
			goto out;
		}
		sleep_ms(POLL_MS);
	}
	r = 0;
out:
	sd_bus_error_free(&e);
	sd_bus_flush_close_unref(bus);
	return r;
}

int scope__stop(const char *bus_address, const char *unit, uint32_t timeout_ms, char *err,
		size_t errlen)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus *bus = NULL;
	int r;

	err[0] = '\0';
	r = bus_open(bus_address, &bus);
	if (r < 0) {
		snprintf(err, errlen, "cannot connect to systemd (%s): %s",
			 bus_address ? bus_address : "system bus", strerror(-r));
		return r;
	}
	r = stop_call(bus, unit, (uint64_t)timeout_ms * 1000u, &e);
	if (r < 0)
		r = call_error(r, &e, "StopUnit", err, errlen);
	else
		r = 0;
	sd_bus_error_free(&e);
	sd_bus_flush_close_unref(bus);
	return r;
}
