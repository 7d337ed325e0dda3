/*
 * libFuzzer driver for gateway/sio.c. The input is parsed as a Socket.IO
 * packet; what parses is handed to cJSON and the placeholder check, then
 * encoded and parsed again. The input is also used as an event name. The
 * invariants below abort on a violation:
 *
 *   - every slice handed out lies inside the input (nsp may be the static
 *     "/");
 *   - whatever sio_parse accepts, cJSON parses, and cJSON sees the JSON kind
 *     the packet type requires (our scanner is a subset of cJSON);
 *   - sio_encode of the parsed fields parses back to the same fields;
 *   - an event named by any input encodes to a packet that, when it parses
 *     (always, for ASCII without NUL), carries exactly that name.
 *
 * The input is copied into a heap block of exactly its size, so ASan flags
 * any read past the end.
 */
#include "gateway/sio.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/check.h"

static const sio_limits limits = {.max_attachments = SIO_DEFAULT_MAX_ATTACHMENTS,
                                  .max_depth = SIO_DEFAULT_MAX_DEPTH};

static int inside(slice s, const char *base, size_t n)
{
	return s.len == 0 ||
	       (s.base >= base && s.len <= n && s.base - base <= (ptrdiff_t)(n - s.len));
}

/* The tree has the shape sio_parse promised for the type. */
static void check_kind(const sio_packet *p, const cJSON *t)
{
	switch (p->type) {
	case SIO_CONNECT: CHECK(t == NULL || cJSON_IsObject(t)); break;
	case SIO_DISCONNECT: CHECK(t == NULL); break;
	case SIO_CONNECT_ERROR: CHECK(cJSON_IsObject(t)); break;
	case SIO_EVENT:
	case SIO_BINARY_EVENT: CHECK(cJSON_IsArray(t) && cJSON_IsString(t->child)); break;
	default: CHECK(cJSON_IsArray(t));
	}
}

static void check_packet(slice in, buf *out)
{
	sio_packet p, back;
	const char *err = NULL;
	if (sio_parse(in, &limits, &p, &err) < 0) {
		CHECK(err != NULL);
		return;
	}
	CHECK(p.type >= SIO_CONNECT && p.type <= SIO_BINARY_ACK);
	CHECK(slice_eq_cstr(p.nsp, "/") || inside(p.nsp, in.base, in.len));
	CHECK(p.nsp.len > 0 && p.nsp.base[0] == '/' && !memchr(p.nsp.base, ',', p.nsp.len));
	CHECK(inside(p.data, in.base, in.len));
	CHECK(p.id >= -1 && p.id <= SIO_MAX_ACK_ID);
	CHECK(p.attachments <= limits.max_attachments);

	cJSON *t = sio_parse_data(&p);
	CHECK(p.data.len == 0 || t != NULL);
	check_kind(&p, t);
	int binary = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
	err = NULL;
	if (sio_check_placeholders(t, binary ? p.attachments : 0, &err) < 0)
		CHECK(err != NULL);
	cJSON_Delete(t);

	buf_reset(out);
	CHECK(sio_encode(out, p.type, p.nsp, p.id, p.attachments, p.data) == 0);
	CHECK(sio_parse(buf_slice(out), &limits, &back, &err) == 0);
	CHECK(back.type == p.type && slice_eq(back.nsp, p.nsp) && back.id == p.id &&
	      back.attachments == p.attachments && slice_eq(back.data, p.data));
}

static void check_name(slice in, buf *out)
{
	sio_packet p;
	int ascii = 1;
	for (size_t i = 0; i < in.len; i++)
		if (in.base[i] == 0 || (unsigned char)in.base[i] >= 0x80)
			ascii = 0;
	buf_reset(out);
	CHECK(sio_encode_event(out, SLICE_LIT("/"), 1, in, SLICE_LIT("[1]")) == 0);
	if (sio_parse(buf_slice(out), &limits, &p, NULL) < 0) {
		CHECK(!ascii);
		return;
	}
	cJSON *t = sio_parse_data(&p);
	CHECK(cJSON_IsArray(t) && cJSON_IsString(t->child));
	CHECK(strlen(t->child->valuestring) == in.len);
	CHECK(in.len == 0 || memcmp(t->child->valuestring, in.base, in.len) == 0);
	CHECK(cJSON_GetArraySize(t) == 2);
	cJSON_Delete(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	slice in = slice_make(size ? copy : NULL, size);
	buf out;
	buf_init(&out, 0);
	check_packet(in, &out);
	check_name(in, &out);
	buf_dispose(&out);
	free(copy);
	return 0;
}
