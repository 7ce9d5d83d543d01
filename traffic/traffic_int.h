/*
 * traffic/traffic_int.h: helpers shared by the files of the traffic module (not public).
 */
#ifndef SHOAL_TRAFFIC_INT_H
#define SHOAL_TRAFFIC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An address in binary form, for comparing what the agent and HAProxy print differently. */
struct traffic__ip {
	uint8_t family;		/* 0 none, 4, 6 */
	uint8_t b[16];
};

/* Numeric IPv4/IPv6 text into @ret. 0 or -EINVAL. */
int traffic__ip_parse(const char *s, struct traffic__ip *ret);
/* Names HAProxy accepts for proxies and servers, and we for nodes and sites. */
bool traffic__name_ok(const char *s, bool allow_empty);
/* Write a formatted English reason into err (NUL-terminated when errlen > 0). */
void traffic__err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
