/*
 * Fuzz the HTTP/1.1 response parser (plugins/http.c): the bytes a Docker/Podman engine (or
 * anything listening on the configured socket) sends back. The input is parsed three ways
 * that must agree: in one piece, byte by byte, and split at a point chosen by the input, with
 * a small body cap on a fourth pass. Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *data, size_t size, size_t split, size_t max_body,
	       struct http_parser *p)
{
	size_t used = 0, off = 0;
	int r = 0;
	http_parser_init(p, max_body, false);
	while (off < size) {
		size_t n = split ? split : size;
		if (n > size - off)
			n = size - off;
		r = http_parser_feed(p, data + off, n, &used);
		if (r != 0) {
			off += r == 1 ? used : 0;
			break;
		}
		if (used != n)
			abort(); /* 0 means everything was consumed */
		off += n;
	}
	if (r == 0)
		r = http_parser_eof(p);
	if (r == 1 && p->body_len && (!p->body || p->body[p->body_len] != '\0'))
		abort();
	if (r == 1 && (p->status < 200 || p->status > 599))
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_parser a, b, c, d;
	size_t split = size ? (size_t)data[0] % 17 + 1 : 1;
	int ra = run(data, size, 0, 1 << 20, &a);
	int rb = run(data, size, 1, 1 << 20, &b);
	int rc = run(data, size, split, 1 << 20, &c);
	if (ra != rb || ra != rc)
		abort();
	if (ra == 1 && (a.status != b.status || a.body_len != b.body_len ||
			a.body_len != c.body_len ||
			(a.body_len && (memcmp(a.body, b.body, a.body_len) ||
					memcmp(a.body, c.body, a.body_len)))))
		abort();
	int rd = run(data, size, split, 16, &d);
	if (rd == 1 && d.body_len > 16)
		abort();
	http_parser_release(&a);
	http_parser_release(&b);
	http_parser_release(&c);
	http_parser_release(&d);
	return 0;
}
