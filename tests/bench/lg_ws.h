/*
 * lg_ws.h - the client side of RFC 6455, as a load generator needs it.
 *
 * A pure codec: no I/O, no allocation. The parser reads one frame header
 * from the caller's buffer and says how long the whole frame is, so the
 * caller can dispatch the payload in place or wait for more bytes; the
 * encoder writes a masked client frame into the caller's buffer.
 *
 * The parser is lenient where leniency is harmless to a client (a server
 * that masks its frames is unmasked by the caller) and strict where the
 * framing itself would become ambiguous: RSV bits, reserved opcodes,
 * fragmented or oversized control frames and 64-bit lengths with the top
 * bit set are malformed.
 */
#ifndef TIDINGS_LG_WS_H
#define TIDINGS_LG_WS_H

#include <stddef.h>
#include <stdint.h>

enum {
	LG_WS_CONT = 0,
	LG_WS_TEXT = 1,
	LG_WS_BINARY = 2,
	LG_WS_CLOSE = 8,
	LG_WS_PING = 9,
	LG_WS_PONG = 10
};

/* A client frame header is at most 14 bytes: 2, 8 of length, 4 of mask. */
#define LG_WS_HEADER_MAX  14
#define LG_WS_CONTROL_MAX 125
/* Length of a Sec-WebSocket-Key (16 bytes in base64) and of the accept
 * value (a SHA-1 in base64), without NUL. */
#define LG_WS_KEY_LEN    24
#define LG_WS_ACCEPT_LEN 28

typedef struct lg_ws_frame {
	uint64_t len;    /* payload bytes */
	uint8_t fin;     /* 0 or 1 */
	uint8_t opcode;  /* LG_WS_* */
	uint8_t masked;  /* the server masked the payload with mask[] */
	uint8_t mask[4]; /* valid when masked */
} lg_ws_frame;

/* Reads the frame header at p[0..n). Returns its length in bytes (the
 * payload follows it) and fills *f; 0 when more bytes are needed to know;
 * -1 when the header is malformed (see above). */
int lg_ws_parse(const void *p, size_t n, lg_ws_frame *f);

/* XORs p[0..n) with the mask key, starting at key offset 0: how both sides
 * mask and unmask a payload in place. */
void lg_ws_unmask(void *p, size_t n, const uint8_t mask[4]);

/* Encodes a final, masked frame with `mask` into out[0..cap). Returns the
 * frame's length, or 0 when it does not fit. */
size_t lg_ws_encode(void *out, size_t cap, int opcode, const void *payload, size_t len,
                    uint32_t mask);

/* Writes the Sec-WebSocket-Key for 16 nonce bytes (out: LG_WS_KEY_LEN bytes,
 * no NUL) and the Sec-WebSocket-Accept a server must answer for a key
 * (out: LG_WS_ACCEPT_LEN bytes, no NUL). */
void lg_ws_key(char *out, const uint8_t nonce[16]);
void lg_ws_accept(char *out, const char *key, size_t keylen);

#endif
