#include "eio.h"

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

/*
 * Base64 (RFC 4648, standard alphabet, padded). Polling 'b' packets are the
 * only user, so the decoder is as strict as the two clients we serve allow:
 * they pad and leave the spare bits zero, and accepting anything else would
 * only give the same bytes several spellings.
 */
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t eio_base64_encoded_len(size_t n)
{
	return (n / 3 + (n % 3 != 0)) * 4;
}

int eio_base64_encode(buf *out, slice bin)
{
	if (bin.len == 0)
		return 0;
	if (bin.len > (SIZE_MAX / 4 - 1) * 3)
		return -1;
	size_t need = eio_base64_encoded_len(bin.len);
	if (buf_reserve(out, need) < 0)
		return -1;
	const unsigned char *p = (const unsigned char *)bin.base;
	char *o = out->data + out->len;
	size_t i = 0;
	for (; i + 3 <= bin.len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (bin.len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (bin.len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	out->len += need;
	return 0;
}

/* The value of one base64 symbol, or -1 for anything outside the alphabet
 * (including '=', which the caller handles by position). */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int eio_base64_decode(buf *out, slice text)
{
	if (text.len % 4)
		return -1;
	if (text.len == 0)
		return 0;
	const unsigned char *p = (const unsigned char *)text.base;
	size_t pad = p[text.len - 1] == '=' ? (p[text.len - 2] == '=' ? 2 : 1) : 0;
	size_t need = text.len / 4 * 3 - pad;
	if (buf_reserve(out, need) < 0)
		return -1;
	char *o = out->data + out->len;
	for (size_t i = 0; i < text.len; i += 4) {
		int last = i + 4 == text.len;
		/* Padding may only fill the tail of the final quantum. */
		size_t syms = last ? 4 - pad : 4;
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = 0;
			if (k < syms) {
				d = b64_value(p[i + k]);
				if (d < 0)
					return -1;
			}
			v = v << 6 | (uint32_t)d;
		}
		*o++ = (char)(v >> 16);
		if (syms > 2)
			*o++ = (char)(v >> 8);
		if (syms > 3)
			*o++ = (char)v;
		/* Spare bits must be zero: "QR==" and "QQ==" must not both mean "A". */
		if ((syms == 2 && (v & 0xffff)) || (syms == 3 && (v & 0xff)))
			return -1;
	}
	out->len += need;
	return 0;
}
