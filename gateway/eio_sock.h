/*
 * eio_sock.h - Engine.IO v4 sessions: the handshake, both transports
 * (WebSocket and HTTP long-polling), the upgrade from polling to
 * WebSocket, and the server-driven heartbeat.
 *
 * The layer above (Socket.IO, or the conformance echo) sees only message
 * packets through an eio_handler and sends with eio_send*. Whatever the
 * transport, packets leave in the order they were sent.
 */
#ifndef TIDINGS_EIO_SOCK_H
#define TIDINGS_EIO_SOCK_H

#include "common/buf.h"
#include "common/rbuf.h"
#include "common/wheel.h"
#include "conn.h"
#include "http.h"
#include "ws.h"

typedef struct eio_sock eio_sock;

typedef struct eio_handler {
	/* A new session is open (its open packet is queued). */
	void (*on_open)(eio_sock *e);
	/* A message packet; binary ones are raw bytes (base64 already decoded).
	 * May call eio_close. */
	void (*on_message)(eio_sock *e, slice data, int binary);
	/* The session ended; e is freed right after. Exactly once. */
	void (*on_close)(eio_sock *e, const char *reason);
	/* The client answered a ping (liveness); may be NULL. */
	void (*on_heartbeat)(eio_sock *e);
} eio_handler;

enum { EIO_T_POLLING = 1, EIO_T_WEBSOCKET = 2 };

enum {
	EIO_F_PING_SENT = 1 << 0, /* waiting for the pong */
	EIO_F_UPGRADING = 1 << 1, /* a probe WebSocket answered 3probe */
	EIO_F_CLOSED = 1 << 2,
	EIO_F_OVERFLOW = 1 << 3, /* polling queue over the limit: closing */
};

/* One per connection, so its malloc chunk counts: glibc serves n bytes
 * from a chunk of n + 8 rounded up to 16, and 136 bytes is a 144-byte
 * chunk. peer_ip sits in the padding after flags (at the end it would cost
 * a chunk size). */
struct eio_sock {
	char sid[24];
	uint8_t transport;
	uint8_t flags;
	uint32_t peer_ip;
	const eio_handler *h;
	void *ud;
	ws *ws;          /* the WebSocket transport once open or upgraded */
	ws *probe;       /* a WebSocket being probed during an upgrade */
	conn *poll;      /* a held long-poll GET */
	char *poll_cors; /* CORS header lines for the held GET's answer */
	buf pq;          /* polling: packets waiting for the next GET, as a payload */
	wheel_timer hb;
};

/* Answers a request on the Engine.IO path (handshake, poll, post, or
 * WebSocket upgrade) for a service described by h. */
void eio_handle(conn *c, const http_request *req, slice body, const eio_handler *h,
                int allow_upgrades);

/* Sends one message packet (type 4): text, or binary bytes. */
int eio_send(eio_sock *e, slice data, int binary);

/* Sends a message packet already framed for WebSocket (text: "4" + data;
 * binary: the bytes) in a shared block; `data` is the same packet
 * unframed, for a polling transport. This is the fan-out path: one frame,
 * many references. */
int eio_send_shared(eio_sock *e, rbuf *ws_frame, slice data, int binary);

/* Closes the session (WebSocket close 1000 or a close packet for a held
 * poll). on_close runs before this returns. */
void eio_close(eio_sock *e, const char *reason);

/* The number of open sessions. */
extern uint64_t eio_count;

#endif
