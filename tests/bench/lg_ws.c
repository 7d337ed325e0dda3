#include "lg_ws.h"

#include <openssl/sha.h>
#include <string.h>

#include "common/base64.h"

int lg_ws_parse(const void *p, size_t n, lg_ws_frame *f)
{
	const uint8_t *b = p;
	if (n < 2)
		return 0;
	uint8_t op = b[0] & 0x0f;
	if (b[0] & 0x70)
		return -1;
	switch (op) {
	case LG_WS_CONT:
	case LG_WS_TEXT:
	case LG_WS_BINARY: break;
	case LG_WS_CLOSE:
	case LG_WS_PING:
	case LG_WS_PONG:
		if (!(b[0] & 0x80) || (b[1] & 0x7f) > LG_WS_CONTROL_MAX)
			return -1;
		break;
	default: return -1;
	}
	size_t hdr = 2;
	uint64_t len = b[1] & 0x7f;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)b[2] << 8 | b[3];
		hdr = 4;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		if (b[2] & 0x80)
			return -1;
		len = 0;
		for (int i = 2; i < 10; i++)
			len = len << 8 | b[i];
		hdr = 10;
	}
	f->masked = (b[1] & 0x80) != 0;
	if (f->masked) {
		if (n < hdr + 4)
			return 0;
		memcpy(f->mask, b + hdr, 4);
		hdr += 4;
	}
	f->len = len;
	f->fin = (b[0] & 0x80) != 0;
	f->opcode = op;
	return (int)hdr;
}

void lg_ws_unmask(void *p, size_t n, const uint8_t mask[4])
{
	uint8_t *d = p;
	for (size_t i = 0; i < n; i++)
		d[i] ^= mask[i & 3];
}

size_t lg_ws_encode(void *out, size_t cap, int opcode, const void *payload, size_t len,
                    uint32_t mask)
{
	uint8_t *o = out;
	size_t hdr = len < 126 ? 6 : len <= 0xffff ? 8 : 14;
	if (cap < hdr || cap - hdr < len)
		return 0;
	o[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		o[1] = (uint8_t)(0x80 | len);
	} else if (len <= 0xffff) {
		o[1] = 0x80 | 126;
		o[2] = (uint8_t)(len >> 8);
		o[3] = (uint8_t)len;
	} else {
		o[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			o[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	}
	uint8_t *key = o + hdr - 4;
	memcpy(key, &mask, 4);
	if (len)
		memcpy(o + hdr, payload, len);
	lg_ws_unmask(o + hdr, len, key);
	return hdr + len;
}

void lg_ws_key(char *out, const uint8_t nonce[16])
{
	base64_encode(out, nonce, 16);
}

void lg_ws_accept(char *out, const char *key, size_t keylen)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t cat[LG_WS_KEY_LEN + sizeof(guid)];
	uint8_t md[SHA_DIGEST_LENGTH];
	if (keylen > LG_WS_KEY_LEN)
		keylen = LG_WS_KEY_LEN; /* a longer key is never ours; the compare fails */
	memcpy(cat, key, keylen);
	memcpy(cat + keylen, guid, sizeof(guid) - 1);
	SHA1(cat, keylen + sizeof(guid) - 1, md);
	base64_encode(out, md, sizeof(md));
}
