/*
 * libFuzzer driver for gateway/eio.c. The input is taken as a WebSocket text
 * message, as a polling payload and as base64 text, and the invariants below
 * abort on a violation:
 *
 *   - every slice handed out lies inside the input;
 *   - a payload that iterates to its end without error, and whose 'b'
 *     packets all decode, is rebuilt byte for byte by eio_payload_append
 *     (the parser and the encoder agree, and base64 decoding is canonical);
 *   - base64 text that decodes encodes back to the same text.
 *
 * The input is copied into a heap block of exactly its size, so ASan flags
 * any read past the end.
 */
#include "gateway/eio.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/check.h"

static int inside(slice s, const char *base, size_t n)
{
	return s.len == 0 ||
	       (s.base >= base && s.len <= n && s.base - base <= (ptrdiff_t)(n - s.len));
}

static void check_text(slice in, buf *tmp)
{
	eio_packet pkt;
	if (eio_parse_text(in, &pkt) < 0) {
		CHECK(in.len == 0 || in.base[0] < '0' || in.base[0] > '6');
		return;
	}
	CHECK(inside(pkt.data, in.base, in.len) && pkt.data.len == in.len - 1);
	CHECK(pkt.type >= EIO_OPEN && pkt.type <= EIO_NOOP);
	CHECK(pkt.b64 == (in.base[0] == 'b') && pkt.binary == pkt.b64);
	if (!pkt.b64) {
		buf_reset(tmp);
		CHECK(eio_encode_text(tmp, pkt.type, pkt.data) == 0);
		CHECK(slice_eq(buf_slice(tmp), in));
	}
}

static void check_payload(slice in, buf *raw, buf *rebuilt)
{
	eio_payload_iter it;
	eio_packet pkt;
	int rc, decoded = 1;
	size_t count = 0;
	buf_reset(rebuilt);
	eio_payload_init(&it, in);
	while ((rc = eio_payload_next(&it, &pkt)) == 1) {
		count++;
		CHECK(inside(pkt.data, in.base, in.len));
		CHECK(memchr(pkt.data.base ? pkt.data.base : "", EIO_SEPARATOR, pkt.data.len) ==
		      NULL);
		if (pkt.b64) {
			buf_reset(raw);
			if (eio_base64_decode(raw, pkt.data) < 0) {
				decoded = 0;
				continue;
			}
			CHECK(eio_payload_append(rebuilt, 0, EIO_MESSAGE, buf_slice(raw), 1) == 0);
		} else {
			CHECK(eio_payload_append(rebuilt, 0, pkt.type, pkt.data, 0) == 0);
		}
	}
	CHECK(rc == 0 || rc == -1);
	CHECK(eio_payload_next(&it, &pkt) == rc);
	if (rc == 0) {
		CHECK(count > 0);
		if (decoded)
			CHECK(slice_eq(buf_slice(rebuilt), in));
	}
}

static void check_base64(slice in, buf *raw, buf *back)
{
	buf_reset(raw);
	buf_append_cstr(raw, "x");
	if (eio_base64_decode(raw, in) < 0) {
		CHECK(raw->len == 1);
		return;
	}
	CHECK(raw->len - 1 == in.len / 4 * 3 - (in.len && in.base[in.len - 1] == '=') -
	                          (in.len > 1 && in.base[in.len - 2] == '='));
	buf_reset(back);
	CHECK(eio_base64_encode(back, slice_make(raw->data + 1, raw->len - 1)) == 0);
	CHECK(slice_eq(buf_slice(back), in));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	slice in = slice_make(size ? copy : NULL, size);
	buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	check_text(in, &a);
	check_payload(in, &a, &b);
	check_base64(in, &a, &b);
	buf_dispose(&a);
	buf_dispose(&b);
	free(copy);
	return 0;
}
