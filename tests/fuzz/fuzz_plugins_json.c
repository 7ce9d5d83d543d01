/*
 * Fuzz the JSON reader (plugins/json.c) with what an engine may answer, and check that every
 * accessor stays inside the text: walk all tokens, decode every string and number, follow the
 * paths the container driver uses. Then write back every string through the writer and read
 * the result again: the round trip must reproduce the same decoded string.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const char *s)
{
	struct json_w w;
	char *out = NULL;
	size_t len = 0;
	json_w_init(&w, 0);
	json_w_arr_begin(&w);
	json_w_str(&w, s);
	json_w_arr_end(&w);
	if (json_w_finish(&w, &out, &len) != 0)
		abort(); /* decoded strings are valid UTF-8 without NUL: must be writable */
	json_w_release(&w);
	struct json_doc d;
	if (json_parse(out, len, 0, &d) != 0)
		abort();
	static char back[1 << 16];
	int n = json_get_str(&d, json_arr_at(&d, 0, 0), back, sizeof back);
	if (n < 0 || strcmp(back, s) != 0)
		abort();
	json_doc_release(&d);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc d;
	static char buf[1 << 16];
	if (json_parse((const char *)data, size, 4096, &d) != 0)
		return 0;
	for (uint32_t t = 0; t < d.ntoks; t++) {
		int64_t v;
		bool b;
		if (d.toks[t].end <= t || d.toks[t].end > d.ntoks)
			abort();
		switch (json_type(&d, (int)t)) {
		case JSON_STRING: {
			int n = json_get_str(&d, (int)t, buf, sizeof buf);
			if (n >= 0) {
				if (!json_str_eq(&d, (int)t, buf))
					abort();
				roundtrip(buf);
			}
			break;
		}
		case JSON_NUMBER:
			json_get_i64(&d, (int)t, &v);
			break;
		case JSON_TRUE:
		case JSON_FALSE:
			if (json_get_bool(&d, (int)t, &b) != 0)
				abort();
			break;
		case JSON_ARRAY:
		case JSON_OBJECT: {
			int k = 0;
			for (int c = json_first(&d, (int)t); c >= 0; c = json_next(&d, (int)t, c))
				k++;
			int want = json_size(&d, (int)t) * (json_type(&d, (int)t) == JSON_OBJECT ? 2 : 1);
			if (k != want)
				abort();
			break;
		}
		}
	}
	static const char *paths[] = { "State.Status", "State.Running", "State.ExitCode", "Id",
				       "RestartCount", "0.Id", "0.Labels", "Config.Labels" };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		int t = json_path(&d, 0, paths[i]);
		if (t >= 0 && json_type(&d, t) == 0)
			abort();
		json_get_str(&d, t, buf, 8);
	}
	json_doc_release(&d);
	return 0;
}
