/*
 * ws_frame.h - server-side RFC 6455 frame codec.
 *
 * A pure codec: no I/O, no logging, no timers. The reader takes the bytes a
 * connection has received, consumes at most one frame per call and returns
 * an event; the writer helpers encode server frame headers and close bodies.
 * The only memory it allocates is the reassembly buffer of a fragmented
 * message, which the reader owns.
 *
 * The reader enforces everything RFC 6455 asks of a server that negotiated no
 * extension (masking, RSV bits, opcodes, control-frame rules, fragmentation
 * order, UTF-8 in text messages and close reasons, close codes) plus the
 * limits in ws_limits, which are checked against the frame header before any
 * payload is awaited or any memory allocated. Each violation is reported as
 * WS_EV_ERROR with the close code the server should send.
 *
 * Typical loop (data/len: the connection's unconsumed input):
 *
 *	for (;;) {
 *		int t = ws_reader_feed(&r, data, len, &used, &ev);
 *		data += used, len -= used;
 *		if (t == WS_EV_NEED_MORE && used == 0)
 *			break;             // keep data[0..len), read more, call again
 *		if (t == WS_EV_ERROR || t == WS_EV_CLOSE)
 *			...                // send close, stop feeding this reader
 *		else if (t != WS_EV_NEED_MORE)
 *			...                // dispatch ev before the next call
 *	}
 */
#ifndef TIDINGS_WS_FRAME_H
#define TIDINGS_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/slice.h"
#include "common/utf8.h"

/* Opcodes (RFC 6455 section 5.2). */
enum {
	WS_OP_CONT = 0,
	WS_OP_TEXT = 1,
	WS_OP_BINARY = 2,
	WS_OP_CLOSE = 8,
	WS_OP_PING = 9,
	WS_OP_PONG = 10
};

/* Close status codes (section 7.4.1). 1005 is never sent: it is what a close
 * frame without a body reports. */
#define WS_CLOSE_NORMAL       1000
#define WS_CLOSE_GOING_AWAY   1001
#define WS_CLOSE_PROTOCOL     1002
#define WS_CLOSE_UNSUPPORTED  1003
#define WS_CLOSE_NO_STATUS    1005
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY       1008
#define WS_CLOSE_TOO_BIG      1009
#define WS_CLOSE_INTERNAL     1011

/* A server frame header is at most 10 bytes, a client one 14 (with the mask
 * key); a control frame carries at most 125 payload bytes. */
#define WS_FRAME_HEADER_MAX 10
#define WS_CONTROL_MAX      125

/* Per-connection limits; 0 means "no limit" for any of them.
 *   max_frame      payload bytes of a single frame
 *   max_message    payload bytes of a whole (reassembled) data message
 *   max_fragments  frames in one data message, the first one included; empty
 *                  continuations count, so a stream of them cannot run forever
 * Exceeding max_frame or max_message closes with 1009, max_fragments with
 * 1008. Control frames (at most 125 bytes) are not subject to these limits. */
typedef struct ws_limits {
	uint64_t max_frame;
	uint64_t max_message;
	uint32_t max_fragments;
} ws_limits;

/* Reader steps. */
enum {
	WS_RD_IDLE = 0, /* between messages */
	WS_RD_MESSAGE,  /* a fragmented data message is being reassembled */
	WS_RD_CLOSED,   /* a close frame was returned */
	WS_RD_FAILED    /* an error was returned; err holds its close code */
};

/* Reader flags. */
#define WS_RD_F_SCAN 0x01 /* scan_* describe the partial frame at the input's start */

typedef struct ws_reader {
	const ws_limits *lim;
	uint8_t step;       /* WS_RD_* */
	uint8_t flags;      /* WS_RD_F_* */
	uint8_t msg_opcode; /* WS_OP_TEXT or WS_OP_BINARY while step == WS_RD_MESSAGE */
	uint16_t err;       /* close code of the error, once step == WS_RD_FAILED */
	uint32_t fragments; /* frames of the message in progress */
	utf8_state utf8;    /* validator state at the end of the last text fragment */
	buf msg;            /* reassembled payload of the message in progress */

	/* Fail-fast validation of a text frame whose payload is still arriving:
	 * how far it got, and which frame it was (length and mask key). Only an
	 * early error depends on this; complete frames are always validated in
	 * full. 32 bits, which frames over 4 GiB go without, keep a WebSocket
	 * (ws.h) in a 112-byte malloc chunk. */
	uint32_t scan_len;
	uint32_t scan_done;
	uint32_t scan_mask;
	utf8_state scan_utf8;
} ws_reader;

/* Event types returned by ws_reader_feed. */
enum { WS_EV_NEED_MORE = 0, WS_EV_MESSAGE, WS_EV_PING, WS_EV_PONG, WS_EV_CLOSE, WS_EV_ERROR };

/* What ws_reader_feed found. Which fields are set depends on the type:
 *   MESSAGE     opcode (TEXT or BINARY), payload (the whole message)
 *   PING, PONG  opcode, payload
 *   CLOSE       opcode, payload (the whole body), close_code (1005 when the
 *               body was empty), close_reason (valid UTF-8, maybe empty)
 *   ERROR       close_code: the code to close the connection with */
typedef struct ws_event {
	int type; /* WS_EV_* */
	int opcode;
	slice payload;
	uint16_t close_code;
	slice close_reason;
} ws_event;

/* Prepares a reader in caller-owned storage. The reader keeps the pointer
 * `lim`: the limits must outlive it and must not change while it lives. */
void ws_reader_init(ws_reader *r, const ws_limits *lim);

/* Frees the reassembly buffer. The reader may be initialised again. */
void ws_reader_dispose(ws_reader *r);

/*
 * Consumes at most one complete client frame from the start of data[0..len)
 * and reports it. data must be mutable: the frame's payload is unmasked in
 * place once the frame is complete; the bytes of an incomplete frame are
 * never modified. Sets *consumed to the number of bytes used and returns the
 * event type (also stored in ev->type):
 *
 *   WS_EV_NEED_MORE  *consumed == 0: the next frame is incomplete. Call again
 *                    with the same unconsumed bytes followed by more input.
 *                    *consumed > 0: a non-final fragment was absorbed into
 *                    the reassembly buffer; call again with the rest.
 *   WS_EV_MESSAGE    a whole TEXT or BINARY message (ev->opcode). ev->payload
 *                    points into data for an unfragmented message, or into
 *                    the reader's buffer for a reassembled one.
 *   WS_EV_PING/PONG  a control frame, payload <= 125 bytes, pointing into
 *                    data. Control frames may arrive between the fragments
 *                    of a message; the reassembly continues afterwards.
 *   WS_EV_CLOSE      the peer's close frame: close_code (1005 when the body
 *                    was empty) and close_reason (validated UTF-8).
 *   WS_EV_ERROR      the peer broke the protocol or a limit; ev->close_code is
 *                    the code to close with: 1002 protocol, 1007 invalid
 *                    UTF-8, 1008 too many fragments, 1009 too big, 1011 out of
 *                    memory. *consumed is 0.
 *
 * Every slice in ev stays valid until the next call on this reader or until
 * data changes, whichever comes first. After WS_EV_CLOSE or WS_EV_ERROR the
 * reader must not be fed again (if it is, it returns WS_EV_ERROR).
 *
 * Errors are reported as soon as the bytes that prove them are present: a
 * bad header or an oversized length right after its header bytes, without
 * waiting for the payload; invalid UTF-8 in a text frame as soon as the
 * offending byte has arrived, even while the rest of the frame is missing.
 * That early UTF-8 check remembers how far it got in the frame at the start
 * of data, so call again with the same frame at the start, as above.
 */
int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, size_t *consumed, ws_event *ev);

/* Encodes the header of an unmasked server frame carrying len payload bytes
 * (len < 2^63) into out, which must hold WS_FRAME_HEADER_MAX bytes. fin is a
 * boolean. Returns the header size: 2, 4 or 10. */
size_t ws_frame_header_encode(uint8_t *out, int fin, int opcode, uint64_t len);

/* Encodes a close frame body into out, which must hold WS_CONTROL_MAX bytes:
 * the code in network order, then as much of reason as fits in 123 bytes, cut
 * at a character boundary (a reason that is not valid UTF-8 is left out).
 * Codes that must not appear on the wire (1005, 1006, 1015, and anything
 * outside 1000..4999) produce an empty body. Returns the body length. */
size_t ws_close_body_encode(uint8_t *out, uint16_t code, slice reason);

/* Returns 1 when a peer may send `code` in a close frame: 1000-1003,
 * 1007-1011 or 3000-4999; else 0. */
int ws_close_code_valid(uint16_t code);

#endif
