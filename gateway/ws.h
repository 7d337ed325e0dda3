/*
 * ws.h - a WebSocket (RFC 6455) server connection on top of conn: the
 * opening handshake, frame reading through ws_reader, automatic pong and
 * close handshake, and frame writing. What the messages mean is the
 * owner's business (Engine.IO, or the conformance echo).
 */
#ifndef TIDINGS_WS_H
#define TIDINGS_WS_H

#include "common/slice.h"
#include "conn.h"
#include "http.h"
#include "ws_frame.h"

typedef struct ws ws;

typedef struct ws_handler {
	/* A complete text or binary message. payload is valid during the call. */
	void (*on_message)(ws *w, int opcode, slice payload);
	/* A pong arrived (the owner may use it as liveness). May be NULL. */
	void (*on_pong)(ws *w);
	/* The transport is gone (closed by either side, or an error); the ws is
	 * freed right after this returns. Called exactly once. */
	void (*on_close)(ws *w, uint16_t code, const char *reason);
} ws_handler;

struct ws {
	conn *c;
	const ws_handler *h;
	void *ud;
	ws_reader rd;
	uint32_t flags;
};

enum { WS_CLOSE_SENT = 1 };

/* Validates an upgrade request (method, Upgrade, Connection, version, key)
 * and returns 0, or an HTTP status to refuse with (400, 426). */
int ws_check_upgrade(const http_request *req);

/* Answers a refused upgrade with `status` from ws_check_upgrade (426
 * carries the version we speak, as RFC 6455 4.4 requires) and closes. */
void ws_refuse(conn *c, int status);

/* Answers 101 and takes the connection over from the HTTP layer. Returns
 * the new ws (owned by the connection; freed after on_close), or NULL when
 * the connection was closed instead. */
ws *ws_accept(conn *c, const http_request *req, const ws_handler *h, void *ud,
              const ws_limits *lim);

/* Sends one unfragmented frame with a copy of payload. */
int ws_send(ws *w, int opcode, slice payload);

/* Sends a frame already encoded (header and payload) in a shared block. */
int ws_send_frame(ws *w, rbuf *frame);

/* Encodes a whole frame into a new rbuf (one reference, the caller's). */
rbuf *ws_frame_build(int opcode, slice payload);
/* Same with a one-byte prefix before the payload (Engine.IO's type byte). */
rbuf *ws_frame_build2(int opcode, char prefix, slice payload);

/* Starts the closing handshake: sends a close frame with code and reason
 * and closes the TCP connection once it is written. on_close runs now. */
void ws_close(ws *w, uint16_t code, const char *reason);

#endif
