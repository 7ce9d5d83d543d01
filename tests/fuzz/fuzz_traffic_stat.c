/*
 * tests/fuzz/fuzz_traffic_stat.c: `show stat` CSV answers (traffic_parse_stat) on arbitrary
 * bytes, and failover shares (traffic_share_parse) on short ones. Refusals come with a reason;
 * accepted rows have a name and NUL-terminated texts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traffic/traffic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct traffic_stat *s = NULL;
	size_t n = 0;
	char err[128];

	memset(err, 'x', sizeof err);
	int r = traffic_parse_stat((const char *)data, size, "web", &s, &n, err, sizeof err);
	if (!memchr(err, '\0', sizeof err))
		abort();
	if (r != 0) {
		if ((r != -EBADMSG && r != -ENOENT && r != -ENOMEM) || err[0] == '\0')
			abort();
	} else {
		for (size_t i = 0; i < n; i++)
			if (!s[i].name[0] || !memchr(s[i].status, '\0', sizeof s[i].status) ||
			    !memchr(s[i].addr, '\0', sizeof s[i].addr))
				abort();
		free(s);
	}
	if (size < 32) {
		char t[32];
		memcpy(t, data, size);
		t[size] = '\0';
		unsigned pm = 4242;
		int pr = traffic_share_parse(t, &pm);
		if ((pr == 0 && pm > 1000) || (pr != 0 && (pr != -EINVAL || pm != 4242)))
			abort();
	}
	return 0;
}
