/*
 * eio.h - Engine.IO v4 packet codec (the framing under Socket.IO v5).
 *
 * Engine.IO v4 has two encodings of the same packets:
 *
 *   WebSocket  one packet per message. A text message is "<type digit><data>",
 *              e.g. "4hello" or "2probe"; a binary message is always a binary
 *              MESSAGE packet and carries no type byte at all (v3 had one).
 *   polling    one HTTP body holds one or more packets separated by the record
 *              separator 0x1e: "4hello\x1e4\xe2\x82\xac\x1ebAQIDBA==". A packet
 *              that starts with 'b' is a binary MESSAGE whose bytes follow as
 *              standard, padded base64.
 *
 * The codec is pure: no I/O, no logging, no allocation of its own. Parsers
 * take a slice the caller owns and hand back slices into it, valid as long as
 * those bytes are; encoders append to a caller's buf (whose limit bounds the
 * output) and, when they fail, leave the buf exactly as it was.
 *
 * The parsers judge framing only. What a packet's data means (a PING's probe,
 * a MESSAGE's Socket.IO packet) and which packets are allowed in which state
 * of the session are the caller's business.
 */
#ifndef TIDINGS_EIO_H
#define TIDINGS_EIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/slice.h"

/* Packet types, as the ASCII digit that starts a text packet. */
enum {
	EIO_OPEN = '0',
	EIO_CLOSE = '1',
	EIO_PING = '2',
	EIO_PONG = '3',
	EIO_MESSAGE = '4',
	EIO_UPGRADE = '5',
	EIO_NOOP = '6'
};

/* Separates packets in a polling payload (ASCII record separator). */
#define EIO_SEPARATOR '\x1e'

typedef struct eio_packet {
	int type;   /* EIO_OPEN .. EIO_NOOP */
	slice data; /* the bytes after the type character; may be empty */
	int binary; /* 1: binary MESSAGE, raw (ws binary frame) or base64 (see b64) */
	int b64;    /* 1: data is the base64 text of a 'b' packet; decode it with
	             * eio_base64_decode before use */
} eio_packet;

/*
 * Parses one packet from a WebSocket text message. The first byte is the
 * type digit '0'..'6' and the rest is the data, which may be empty. A
 * message starting with 'b' is accepted as a base64 binary MESSAGE (type
 * EIO_MESSAGE, binary = b64 = 1), as engine.io-parser accepts it from a
 * client created with forceBase64. `pkt` is the caller's; its data slice
 * points into msg.
 *
 * Returns 0, or -1 for an empty message or an unknown type byte (pkt is
 * unspecified then).
 */
int eio_parse_text(slice msg, eio_packet *pkt);

/*
 * Describes a WebSocket binary message: in Engine.IO v4 it is always a
 * MESSAGE packet whose data is the whole message (binary = 1, b64 = 0).
 * Cannot fail.
 */
void eio_parse_binary(slice msg, eio_packet *pkt);

/*
 * Iterates over the packets of a polling payload (an HTTP POST body).
 * Initialise with eio_payload_init (or as {.rest = payload}: a zeroed state
 * is the initial one); the payload stays the caller's and must outlive the
 * packets handed out.
 */
typedef struct eio_payload_iter {
	slice rest; /* bytes not yet looked at */
	int state;  /* EIO_ITER_MORE, EIO_ITER_END or EIO_ITER_ERROR */
} eio_payload_iter;

enum { EIO_ITER_MORE = 0, EIO_ITER_END, EIO_ITER_ERROR };

void eio_payload_init(eio_payload_iter *it, slice payload);

/*
 * Yields the next packet of the payload into *pkt: returns 1 with a packet,
 * 0 after the last one, or -1 when the payload is malformed. A payload is
 * one or more packets joined by 0x1e, so an empty payload, an empty packet
 * (two separators in a row, or one at either end) and a packet whose first
 * byte is neither a type digit nor 'b' are malformed. A 'b' packet yields a
 * binary MESSAGE with b64 = 1 and data = the base64 text, which this
 * function does not decode. Once it has returned 0 or -1 it keeps returning
 * that; packets yielded before a -1 were well-formed, but Engine.IO drops the
 * whole transport on a malformed payload, and so should the caller.
 */
int eio_payload_next(eio_payload_iter *it, eio_packet *pkt);

/*
 * Appends the handshake OPEN packet, exactly as engine.io writes it:
 *
 *   0{"sid":"<sid>","upgrades":["websocket"],"pingInterval":25000,
 *     "pingTimeout":20000,"maxPayload":1000000}
 *
 * (one line; "upgrades":[] when allow_upgrade is 0). These five keys only,
 * in this order. The sid is written without escaping, so it must be non-empty
 * printable ASCII without '"' or '\\' (Engine.IO sids are base64url);
 * anything else is refused. Returns 0, or -1 on a bad sid or
 * when out's limit would be passed (out unchanged).
 */
int eio_encode_open(buf *out, slice sid, int allow_upgrade, uint32_t ping_interval_ms,
                    uint32_t ping_timeout_ms, uint32_t max_payload);

/*
 * Appends one text packet, the type digit followed by data: the form of a
 * WebSocket text message (binary data goes out as a binary message as it
 * is, with nothing to encode). Returns 0, or -1 for a type outside
 * EIO_OPEN..EIO_NOOP or past out's limit (out unchanged).
 */
int eio_encode_text(buf *out, int type, slice data);

/*
 * Appends one packet to a polling payload under construction that starts at
 * out->data[payload_start] (payload_start <= out->len): a 0x1e separator
 * first unless the payload is still empty (out->len == payload_start), then
 * the type digit and data, or for binary data 'b' and its standard base64.
 * Binary packets must be EIO_MESSAGE. Text data may not contain 0x1e, which
 * would split the packet in two on the other side (JSON never has a raw one).
 * Returns 0, or -1 on a bad type, binary non-MESSAGE, a 0x1e in text data,
 * payload_start > out->len, or past out's limit (out unchanged).
 */
int eio_payload_append(buf *out, size_t payload_start, int type, slice data, int binary);

/* The length of the base64 text for n bytes of binary data (padded). */
size_t eio_base64_encoded_len(size_t n);

/*
 * Appends the standard base64 (RFC 4648 section 4 alphabet, '=' padding) of
 * bin to out. Returns 0, or -1 past out's limit (out unchanged).
 */
int eio_base64_encode(buf *out, slice bin);

/*
 * Decodes standard base64 as engine.io-client and python-engineio write it,
 * appending the bytes to out. Strict: the length is a multiple of 4, every
 * byte is from the standard alphabet, '=' appears only as one or two
 * padding bytes at the very end, the unused low bits of the last symbol are
 * zero (so each byte string has exactly one accepted encoding), and there is
 * no whitespace. The empty text decodes to no bytes. Returns 0, or -1 on
 * any of those errors or past out's limit (out unchanged either way).
 */
int eio_base64_decode(buf *out, slice text);

#endif
