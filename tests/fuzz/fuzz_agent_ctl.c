/*
 * Fuzz target for the control-socket decoders (agent/ctl/ctl_proto.c): the input is a byte stream
 * as a client would send it. It is split into frames exactly as the server does
 * (ctl_frame_peek with a 64 KiB limit), and each payload goes through the request decoder, the
 * argument getters, the response decoder (agentctl's side) and the JSON printer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ctl/ctl_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

static void one_payload(const uint8_t *p, size_t n)
{
	struct ctl_request req;
	char err[128];
	if (ctl_request_decode(p, n, &req, err, sizeof err) == 0) {
		char *s = NULL;
		static const char *const keys[] = {"dir", "repo", "ref", "path", "id", "service"};
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
			if (ctl_arg_str(&req, keys[i], &s) == 0) {
				free(s);
				s = NULL;
			}
		}
		ctl_json_write(devnull, req.msg.root, 2);
		/* Re-encode what was decoded, as a server echo would. */
		struct ctl_enc e;
		const uint8_t *b;
		size_t bl;
		ctl_enc_init(&e);
		ctl_enc_ok(&e);
		ctl_enc_object(&e, req.msg.root);
		if (ctl_enc_finish(&e, &b, &bl) == 0) {
			struct ctl_response resp;
			if (ctl_response_decode(b + CTL_FRAME_HDR, bl - CTL_FRAME_HDR, &resp) == 0)
				ctl_response_release(&resp);
		}
		ctl_enc_release(&e);
		ctl_request_release(&req);
	}
	struct ctl_response resp;
	if (ctl_response_decode(p, n, &resp) == 0) {
		ctl_json_write(devnull, resp.result ? resp.result : resp.msg.root, 0);
		ctl_response_release(&resp);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (!devnull)
		return 0;
	size_t off = 0;
	while (off < size) {
		uint32_t plen = 0;
		int r = ctl_frame_peek(data + off, size - off, 64 * 1024, &plen);
		if (r <= 0)
			break;	/* need more, zero length or too large: the server stops here */
		if (size - off - CTL_FRAME_HDR < plen) {
			/* Truncated last frame: decode what there is, as a bare payload. */
			one_payload(data + off + CTL_FRAME_HDR, size - off - CTL_FRAME_HDR);
			break;
		}
		/* Exact-size copy so an over-read is caught even in the middle of the input. */
		uint8_t *copy = malloc(plen);
		if (!copy)
			return 0;
		memcpy(copy, data + off + CTL_FRAME_HDR, plen);
		one_payload(copy, plen);
		free(copy);
		off += CTL_FRAME_HDR + plen;
	}
	return 0;
}
