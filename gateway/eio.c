#include "eio.h"

#include "common/base64.h"

#include <string.h>

static int is_type(int c)
{
	return c >= EIO_OPEN && c <= EIO_NOOP;
}

int eio_parse_text(slice msg, eio_packet *pkt)
{
	if (msg.len == 0)
		return -1;
	int c = (unsigned char)msg.base[0];
	pkt->data = slice_make(msg.base + 1, msg.len - 1);
	if (c == 'b') {
		/* engine.io-parser treats 'b' as "binary MESSAGE, base64" in any
		 * string it decodes, not only in polling payloads. */
		pkt->type = EIO_MESSAGE;
		pkt->binary = 1;
		pkt->b64 = 1;
		return 0;
	}
	if (!is_type(c))
		return -1;
	pkt->type = c;
	pkt->binary = 0;
	pkt->b64 = 0;
	return 0;
}

void eio_parse_binary(slice msg, eio_packet *pkt)
{
	pkt->type = EIO_MESSAGE;
	pkt->data = msg;
	pkt->binary = 1;
	pkt->b64 = 0;
}

void eio_payload_init(eio_payload_iter *it, slice payload)
{
	it->rest = payload;
	it->state = EIO_ITER_MORE;
}

int eio_payload_next(eio_payload_iter *it, eio_packet *pkt)
{
	if (it->state == EIO_ITER_END)
		return 0;
	if (it->state != EIO_ITER_MORE)
		return -1;
	/* Each call owns the bytes up to the next separator. Reaching the end
	 * without one means this is the last packet; a separator at the very
	 * end therefore leaves an empty packet for the next call, which is an
	 * error just like an empty payload. */
	const char *sep = it->rest.len ? memchr(it->rest.base, EIO_SEPARATOR, it->rest.len) : NULL;
	slice one = it->rest;
	if (sep) {
		one.len = (size_t)(sep - it->rest.base);
		it->rest = slice_make(sep + 1, it->rest.len - one.len - 1);
	} else {
		it->rest.len = 0;
		it->state = EIO_ITER_END;
	}
	if (eio_parse_text(one, pkt) < 0) {
		it->state = EIO_ITER_ERROR;
		return -1;
	}
	return 1;
}

/* Shorthand for the fixed pieces of the handshake. */
static int put(buf *out, const char *s)
{
	return buf_append_cstr(out, s);
}

static int sid_ok(slice sid)
{
	if (sid.len == 0)
		return 0;
	for (size_t i = 0; i < sid.len; i++) {
		unsigned char c = (unsigned char)sid.base[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			return 0;
	}
	return 1;
}

int eio_encode_open(buf *out, slice sid, int allow_upgrade, uint32_t ping_interval_ms,
                    uint32_t ping_timeout_ms, uint32_t max_payload)
{
	if (!sid_ok(sid))
		return -1;
	/* Any failure rolls back to here, so a caller never sees half a packet. */
	size_t mark = out->len;
	if (put(out, "0{\"sid\":\"") < 0 || buf_append_slice(out, sid) < 0 ||
	    put(out, allow_upgrade ? "\",\"upgrades\":[\"websocket\"],\"pingInterval\":"
	                           : "\",\"upgrades\":[],\"pingInterval\":") < 0 ||
	    buf_append_u64(out, ping_interval_ms) < 0 || put(out, ",\"pingTimeout\":") < 0 ||
	    buf_append_u64(out, ping_timeout_ms) < 0 || put(out, ",\"maxPayload\":") < 0 ||
	    buf_append_u64(out, max_payload) < 0 || put(out, "}") < 0) {
		out->len = mark;
		return -1;
	}
	return 0;
}

int eio_encode_text(buf *out, int type, slice data)
{
	if (!is_type(type))
		return -1;
	/* Reserve first so that the two appends cannot half-succeed. */
	if (data.len == SIZE_MAX || buf_reserve(out, data.len + 1) < 0)
		return -1;
	buf_append_byte(out, (char)type);
	buf_append_slice(out, data);
	return 0;
}

int eio_payload_append(buf *out, size_t payload_start, int type, slice data, int binary)
{
	if (!is_type(type) || payload_start > out->len)
		return -1;
	if (binary && type != EIO_MESSAGE)
		return -1;
	if (!binary && data.len && memchr(data.base, EIO_SEPARATOR, data.len))
		return -1;
	size_t mark = out->len;
	if (out->len > payload_start && buf_append_byte(out, EIO_SEPARATOR) < 0)
		return -1;
	int rc = binary ? buf_append_byte(out, 'b') : eio_encode_text(out, type, data);
	if (rc == 0 && binary)
		rc = eio_base64_encode(out, data);
	if (rc < 0) {
		out->len = mark;
		return -1;
	}
	return 0;
}

/* Thin wrappers over common/base64: the strict standard-alphabet codec
 * (padding required, spare bits zero) appending to a buf. */
size_t eio_base64_encoded_len(size_t n)
{
	return base64_encoded_len(n);
}

int eio_base64_encode(buf *out, slice bin)
{
	if (bin.len == 0)
		return 0;
	if (bin.len > (SIZE_MAX / 4 - 1) * 3)
		return -1;
	size_t need = base64_encoded_len(bin.len);
	if (buf_reserve(out, need) < 0)
		return -1;
	out->len += base64_encode(out->data + out->len, bin.base, bin.len);
	return 0;
}

int eio_base64_decode(buf *out, slice text)
{
	if (text.len == 0)
		return 0;
	size_t cap = base64_decoded_max(text.len), n = 0;
	if (buf_reserve(out, cap) < 0)
		return -1;
	if (base64_decode(out->data + out->len, cap, text, &n) < 0)
		return -1;
	out->len += n;
	return 0;
}
