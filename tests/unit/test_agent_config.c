/*
 * Unit tests of agentd's configuration (agent/config/config.c): defaults, the file, flags over the
 * file, repeatable keys, and every error with its line number.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/config/config.h"

static char dir[64];
static char conf[128];

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/shoal-agent-config-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(conf, sizeof conf, "%s/agentd.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(conf);
	rmdir(dir);
	return 0;
}

static void write_conf(const char *text)
{
	FILE *f = fopen(conf, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Load with "--config conf" followed by @extra (NULL-terminated). */
static int load(struct agent_config *c, char *err, size_t errlen, ...)
{
	char *argv[32] = {"agentd", "--config", conf};
	int argc = 3;
	va_list ap;
	va_start(ap, errlen);
	const char *a;
	while ((a = va_arg(ap, const char *)) && argc < 31)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	return agent_config_load(argc, argv, c, err, errlen);
}

static void test_defaults(void **state)
{
	struct agent_config c;
	char err[256] = "";
	write_conf("; nothing\n");
	int r = load(&c, err, sizeof err, NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_true(c.config_loaded);
	assert_string_equal(c.state_dir, AGENT_DEFAULT_STATE_DIR);
	assert_string_equal(c.socket_path, AGENT_DEFAULT_SOCKET);
	assert_string_equal(c.cluster, AGENT_DEFAULT_CLUSTER);
	assert_string_equal(c.bind, AGENT_DEFAULT_BIND);
	assert_string_equal(c.socket_group, AGENT_DEFAULT_GROUP);
	assert_false(c.socket_group_explicit);
	assert_int_equal(c.socket_mode, 0660);
	assert_int_equal(c.log_level, AGENT_LOG_INFO);
	assert_int_equal(c.max_frame_size, 1024 * 1024);
	assert_int_equal(c.max_clients, 64);
	assert_int_equal(c.client_timeout_ms, 30000);
	assert_int_equal(c.retain_revisions, 10);
	assert_int_equal(c.njoin, 0);
	assert_null(c.metrics);
	assert_non_null(c.node_name);
	assert_int_equal(agent_config_check_name(c.node_name), 0);
	agent_config_release(&c);
	agent_config_release(&c); /* idempotent */
}

static void test_file_and_flags(void **state)
{
	struct agent_config c;
	char err[256] = "";
	write_conf("; top-level keys and an [agent] section are the same\n"
		   "node-name = from-file\n"
		   "[agent]\n"
		   "state-dir = /srv/shoal\n"
		   "socket = /srv/shoal/ctl.sock   ; inline comment\n"
		   "log-level = DEBUG\n"
		   "join = 10.0.0.1:7946\n"
		   "join = [fd00::1]:7946\n"
		   "label = site=par1\n"
		   "max-artifact-file-size = 64K\n"
		   "max-artifact-size = 2G\n"
		   "max-artifact-files = 50\n"
		   "retain-revisions = 3\n"
		   "socket-group = wheel\n"
		   "socket-mode = 0600\n"
		   "max-frame-size = 2M\n"
		   "max-clients = 8\n"
		   "client-timeout = 5s\n"
		   "metrics = 127.0.0.1:9100\n"
		   "keyring = keys/cluster.key\n");
	int r = load(&c, err, sizeof err, NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_string_equal(c.node_name, "from-file");
	assert_string_equal(c.state_dir, "/srv/shoal");
	assert_string_equal(c.socket_path, "/srv/shoal/ctl.sock");
	assert_int_equal(c.log_level, AGENT_LOG_DEBUG);
	assert_int_equal(c.njoin, 2);
	assert_string_equal(c.join[1], "[fd00::1]:7946");
	assert_int_equal(c.nlabels, 1);
	assert_int_equal(c.max_artifact_file_size, 64 * 1024);
	assert_int_equal(c.max_artifact_size, 2ull << 30);
	assert_int_equal(c.max_artifact_files, 50);
	assert_int_equal(c.retain_revisions, 3);
	assert_string_equal(c.socket_group, "wheel");
	assert_true(c.socket_group_explicit);
	assert_int_equal(c.socket_mode, 0600);
	assert_int_equal(c.max_frame_size, 2 * 1024 * 1024);
	assert_int_equal(c.max_clients, 8);
	assert_int_equal(c.client_timeout_ms, 5000);
	assert_string_equal(c.metrics, "127.0.0.1:9100");
	/* Relative paths are made absolute against the working directory. */
	char cwd[512], want[600];
	assert_non_null(getcwd(cwd, sizeof cwd));
	snprintf(want, sizeof want, "%s/keys/cluster.key", cwd);
	assert_string_equal(c.keyring, want);
	agent_config_release(&c);

	/* Flags override; the first --join replaces the file's list; later flags win. */
	r = load(&c, err, sizeof err, "--node-name", "flag", "--join", "h1:1", "--join", "h2:2",
		 "--log-level", "warn", "--log-level", "error", "--state-dir", "rel/state", NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_string_equal(c.node_name, "flag");
	assert_int_equal(c.njoin, 2);
	assert_string_equal(c.join[0], "h1:1");
	assert_string_equal(c.join[1], "h2:2");
	assert_int_equal(c.nlabels, 1); /* not given as a flag: the file's stays */
	assert_int_equal(c.log_level, AGENT_LOG_ERR);
	snprintf(want, sizeof want, "%s/rel/state", cwd);
	assert_string_equal(c.state_dir, want);
	agent_config_release(&c);

	/* An empty socket-group means "do not chgrp". */
	write_conf("socket-group =\n");
	r = load(&c, err, sizeof err, NULL);
	assert_int_equal(r, AGENT_CONFIG_RUN);
	assert_null(c.socket_group);
	agent_config_release(&c);
}

static void expect_file_error(const char *text, const char *want_in_msg)
{
	struct agent_config c;
	char err[256] = "";
	write_conf(text);
	memset(&c, 0x5a, sizeof c);
	int r = load(&c, err, sizeof err, NULL);
	if (r != -EINVAL)
		fail_msg("config \"%s\": got %d (%s), want -EINVAL", text, r, err);
	if (!strstr(err, want_in_msg))
		fail_msg("config \"%s\": message \"%s\" lacks \"%s\"", text, err, want_in_msg);
	/* *ret untouched on failure. */
	assert_int_equal(((unsigned char *)&c)[0], 0x5a);
}

static void test_file_errors(void **state)
{
	expect_file_error("node-name = a\nbogus = 1\n", ":2: unknown key \"bogus\"");
	expect_file_error("[gossip]\nbind = 1.2.3.4:5\n", ":2: unknown section [gossip]");
	expect_file_error("node-name = a\n[agent]\nnode-name = b\n", ":3: node-name: given twice");
	expect_file_error("log-level = loud\n", ":1: log-level: invalid value \"loud\"");
	expect_file_error("bind = 1.2.3.4\n", "bind: invalid value");
	expect_file_error("bind = 1.2.3.4:0\n", "bind: invalid value");
	expect_file_error("bind = 1.2.3.4:65536\n", "bind: invalid value");
	expect_file_error("join = a:b:c\n", "join: invalid value");
	expect_file_error("label = noequals\n", "label: invalid value");
	expect_file_error("label = =v\n", "label: invalid value");
	expect_file_error("node-name = has space\n", "node-name: invalid value");
	expect_file_error("max-artifact-file-size = lots\n", "max-artifact-file-size");
	expect_file_error("max-artifact-file-size = 0\n", "max-artifact-file-size");
	expect_file_error("retain-revisions = 0\n", "retain-revisions");
	expect_file_error("socket-mode = 0999\n", "socket-mode");
	expect_file_error("socket-mode = 0040\n", "socket-mode");
	expect_file_error("max-frame-size = 100\n", "max-frame-size");
	expect_file_error("client-timeout = forever\n", "client-timeout");
	expect_file_error("max-clients = 0\n", "max-clients");
	expect_file_error("this is not ini\n", ":1:");
	char longsock[300] = "socket = /";
	memset(longsock + 10, 'x', 200);
	strcpy(longsock + 210, "\n");
	expect_file_error(longsock, "too long for a unix socket");
}

static void test_flag_errors(void **state)
{
	struct agent_config c;
	char err[256] = "";
	write_conf("");
	assert_int_equal(load(&c, err, sizeof err, "--no-such-flag", NULL), -EINVAL);
	assert_non_null(strstr(err, "--no-such-flag"));
	assert_int_equal(load(&c, err, sizeof err, "stray", NULL), -EINVAL);
	assert_non_null(strstr(err, "stray"));
	assert_int_equal(load(&c, err, sizeof err, "--node-name", NULL), -EINVAL);
	assert_non_null(strstr(err, "needs a value"));
	assert_int_equal(load(&c, err, sizeof err, "--metrics", "localhost", NULL), -EINVAL);
	assert_non_null(strstr(err, "--metrics"));

	/* An explicit config that does not exist is an error (not the default path). */
	char *argv[] = {"agentd", "--config", "/nonexistent/shoal/agentd.conf", NULL};
	assert_int_equal(agent_config_load(3, argv, &c, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/shoal/agentd.conf"));

	char *help[] = {"agentd", "--node-name", "x", "--help", NULL};
	assert_int_equal(agent_config_load(4, help, &c, err, sizeof err), AGENT_CONFIG_HELP);
	agent_config_release(&c);
	char *ver[] = {"agentd", "--version", NULL};
	assert_int_equal(agent_config_load(2, ver, &c, err, sizeof err), AGENT_CONFIG_VERSION);
	agent_config_release(&c);
	assert_non_null(strstr(agent_config_usage(), "--client-timeout"));
}

/* --haproxy-site: the site the HAProxy drivers prefer (lb_wiring.c); unset by default, a site
 * name the traffic planner accepts or an error naming the key. */
static void test_haproxy_site(void **state)
{
	struct agent_config c;
	char err[256] = "";
	write_conf("label = site=b\nhaproxy-site = a\n");
	int r = load(&c, err, sizeof err, NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_string_equal(c.haproxy_site, "a");
	agent_config_release(&c);
	assert_int_equal(load(&c, err, sizeof err, "--haproxy-site", "par-1.x", NULL), AGENT_CONFIG_RUN);
	assert_string_equal(c.haproxy_site, "par-1.x");
	agent_config_release(&c);
	write_conf("");
	assert_int_equal(load(&c, err, sizeof err, NULL), AGENT_CONFIG_RUN);
	assert_null(c.haproxy_site);
	agent_config_release(&c);
	static const char *const bad[] = {"", "a b", "site/a",
		"a123456789012345678901234567890123456789012345678901234567890123"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(load(&c, err, sizeof err, "--haproxy-site", bad[i], NULL), -EINVAL);
		assert_non_null(strstr(err, "haproxy-site"));
	}
}

static void test_validators(void **state)
{
	static const char *const good_addr[] = {"1.2.3.4:1", "host-a.example:65535", "[::1]:7946",
						"[fd00::1:2]:80"};
	static const char *const bad_addr[] = {"", ":80", "host:", "host:0", "host:99999",
					       "[::1]", "[]:80", "a b:80", "host:80x", "[x]:80",
					       "a:b:80"};
	for (size_t i = 0; i < sizeof good_addr / sizeof good_addr[0]; i++)
		if (agent_config_check_addr(good_addr[i]) != 0)
			fail_msg("%s refused", good_addr[i]);
	for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++)
		if (agent_config_check_addr(bad_addr[i]) != -EINVAL)
			fail_msg("%s accepted", bad_addr[i]);
	assert_int_equal(agent_config_check_label("site=par1"), 0);
	assert_int_equal(agent_config_check_label("k8s.io/zone="), 0);
	assert_int_equal(agent_config_check_label("a=b\x01"), -EINVAL);
	assert_int_equal(agent_config_check_name("web-1.example_2"), 0);
	char n65[66];
	memset(n65, 'a', 65);
	n65[65] = 0;
	assert_int_equal(agent_config_check_name(n65), -EINVAL);
	n65[64] = 0;
	assert_int_equal(agent_config_check_name(n65), 0);
}


static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Drop-ins: CONFIG.d/NAME.conf after the file, in byte order, each overriding the one before;
 * repeatable keys accumulate; flags still win; a bad drop-in names its file and line. */
static void test_dropins(void **state)
{
	struct agent_config c;
	char err[512] = "";
	char d[192], p1[256], p2[256], p3[256], p4[256], other[192], p5[256];
	snprintf(d, sizeof d, "%s.d", conf);
	snprintf(p1, sizeof p1, "%s/10-site.conf", d);
	snprintf(p2, sizeof p2, "%s/20-hook.conf", d);
	snprintf(p3, sizeof p3, "%s/Z.conf.disabled", d);	/* not *.conf: ignored */
	snprintf(p4, sizeof p4, "%s/.hidden.conf", d);		/* hidden: ignored */
	assert_int_equal(mkdir(d, 0755), 0);
	write_conf("node-name = base\nlabel = a=1\nlog-level = error\n");
	write_file(p2, "node-name = second\nevent-hook = /bin/true\nevent-hook-timeout = 2s\n"
		       "event-hook-max-running = 2\nevent-hook-queue = 0\n");
	write_file(p1, "node-name = first\nlabel = site=par1\nlog-level = warning\n");
	write_file(p3, "bogus = 1\n");
	write_file(p4, "bogus = 1\n");

	int r = load(&c, err, sizeof err, NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_string_equal(c.node_name, "second");	/* 20- after 10- after the file */
	assert_int_equal(c.log_level, AGENT_LOG_WARNING);
	assert_int_equal(c.nlabels, 2);
	assert_string_equal(c.labels[1], "site=par1");
	assert_string_equal(c.event_hook, "/bin/true");
	assert_int_equal(c.event_hook_timeout_ms, 2000);
	assert_int_equal(c.event_hook_max_running, 2);
	assert_int_equal(c.event_hook_queue, 0);
	assert_int_equal(c.nconfig_files, 3);
	assert_string_equal(c.config_files[0], conf);
	assert_string_equal(c.config_files[1], p1);
	assert_string_equal(c.config_files[2], p2);
	assert_string_equal(c.config_dir, d);
	agent_config_release(&c);

	/* flags over drop-ins; --check-config parses everything and says so */
	r = load(&c, err, sizeof err, "--node-name", "flag", "--check-config", NULL);
	assert_int_equal(r, AGENT_CONFIG_CHECK);
	assert_string_equal(c.node_name, "flag");
	agent_config_release(&c);

	/* a scalar twice within one drop-in is an error, with its file and line */
	write_file(p1, "node-name = x\nnode-name = y\n");
	r = load(&c, err, sizeof err, NULL);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "10-site.conf:2: node-name: given twice"));
	write_file(p1, "event-hook-max-running = 0\n");
	r = load(&c, err, sizeof err, NULL);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "10-site.conf:1: event-hook-max-running"));
	unlink(p1);

	/* --config-dir replaces the default; a missing explicit one is an error, a missing
	 * default one is not */
	snprintf(other, sizeof other, "%s/other", dir);
	snprintf(p5, sizeof p5, "%s/a.conf", other);
	assert_int_equal(mkdir(other, 0755), 0);
	write_file(p5, "node-name = other\n");
	r = load(&c, err, sizeof err, "--config-dir", other, NULL);
	if (r != AGENT_CONFIG_RUN)
		fail_msg("load: %d (%s)", r, err);
	assert_string_equal(c.node_name, "other");
	agent_config_release(&c);
	unlink(p5);
	rmdir(other);
	r = load(&c, err, sizeof err, "--config-dir", other, NULL);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "cannot read config directory"));
	unlink(p2);
	unlink(p3);
	unlink(p4);
	rmdir(d);
	r = load(&c, err, sizeof err, NULL);
	assert_int_equal(r, AGENT_CONFIG_RUN);
	assert_string_equal(c.node_name, "base");
	assert_int_equal(c.nconfig_files, 1);
	agent_config_release(&c);
}

static void test_log_levels(void **state)
{
	enum agent_log_level l = AGENT_LOG_INFO;
	assert_int_equal(agent_log_parse_level("Warning", &l), 0);
	assert_int_equal(l, AGENT_LOG_WARNING);
	assert_int_equal(agent_log_parse_level("err", &l), 0);
	assert_int_equal(l, AGENT_LOG_ERR);
	assert_int_equal(agent_log_parse_level("trace", &l), -EINVAL);
	assert_int_equal(l, AGENT_LOG_ERR);
	assert_string_equal(agent_log_level_name(AGENT_LOG_NOTICE), "notice");
}

/* require-enrolment (agent/base/sign.h): a file key, and a switch whose value is optional */
static void test_require_enrolment(void **state)
{
	struct agent_config c;
	char err[512];
	(void)state;
	write_conf("");
	assert_int_equal(load(&c, err, sizeof err, NULL), AGENT_CONFIG_RUN);
	assert_false(c.require_enrolment);
	agent_config_release(&c);
	assert_int_equal(load(&c, err, sizeof err, "--require-enrolment", NULL), AGENT_CONFIG_RUN);
	assert_true(c.require_enrolment);
	agent_config_release(&c);
	write_conf("require-enrolment = true\n");
	assert_int_equal(load(&c, err, sizeof err, NULL), AGENT_CONFIG_RUN);
	assert_true(c.require_enrolment);
	agent_config_release(&c);
	/* the flag overrides the file */
	assert_int_equal(load(&c, err, sizeof err, "--require-enrolment=false", NULL),
			 AGENT_CONFIG_RUN);
	assert_false(c.require_enrolment);
	agent_config_release(&c);
	write_conf("require-enrolment = maybe\n");
	assert_int_equal(load(&c, err, sizeof err, NULL), -EINVAL);
	assert_non_null(strstr(err, "must be true or false"));
	write_conf("");
	assert_int_equal(load(&c, err, sizeof err, "--require-enrolment=2", NULL), -EINVAL);
	assert_non_null(strstr(err, "require-enrolment"));
	assert_non_null(strstr(agent_config_usage(), "--require-enrolment"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_and_flags),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_flag_errors),
		cmocka_unit_test(test_haproxy_site),
		cmocka_unit_test(test_validators),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_dropins),
		cmocka_unit_test(test_require_enrolment),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
