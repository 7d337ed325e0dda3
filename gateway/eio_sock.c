#include "eio_sock.h"

_Static_assert(sizeof(struct eio_sock) <= 136, "eio_sock: mind its malloc chunk (see eio_sock.h)");

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rand.h"
#include "eio.h"
#include "gw.h"
#include "httpd.h"
#include "origin.h"

uint64_t eio_count;

/* Engine.IO's error codes for refused requests. */
enum {
	EIO_ERR_TRANSPORT = 0,
	EIO_ERR_SID = 1,
	EIO_ERR_METHOD = 2,
	EIO_ERR_REQUEST = 3,
	EIO_ERR_FORBIDDEN = 4,
	EIO_ERR_VERSION = 5,
};

static const char *const eio_err_msg[] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method",
    "Bad request",       "Forbidden",          "Unsupported protocol version",
};

static void hb_fire(wheel_timer *t);
static void ws_on_message(ws *w, int opcode, slice payload);
static void ws_on_close(ws *w, uint16_t code, const char *reason);
static const ws_handler eio_ws_handler = {ws_on_message, NULL, ws_on_close};

/* CORS headers for a polling response: the allowed Origin is echoed with
 * credentials, as engine.io does with cors.credentials. */
static void cors_headers(const http_request *req, char *out, size_t cap)
{
	slice o;
	out[0] = '\0';
	if (req && http_header_get(req, "origin", &o) && o.len < 400)
		snprintf(out, cap,
		         "Access-Control-Allow-Origin: %.*s\r\n"
		         "Access-Control-Allow-Credentials: true\r\n"
		         "Vary: Origin\r\n",
		         (int)o.len, o.base);
}

static void eio_error(conn *c, const http_request *req, int status, int code)
{
	char body[96], hdrs[600];
	int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code,
	                 eio_err_msg[code]);
	cors_headers(req, hdrs, sizeof(hdrs));
	httpd_respond(c, status, "application/json", hdrs, body, (size_t)n);
}

static void arm_ping(eio_sock *e)
{
	e->flags &= ~EIO_F_PING_SENT;
	gw_timer_start(&e->hb, hb_fire, (uint64_t)gw.cfg.ping_interval_ms);
}

static eio_sock *session_create(const eio_handler *h, int transport, uint32_t ip)
{
	eio_sock *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	rand_id(e->sid, 20);
	e->transport = (uint8_t)transport;
	e->h = h;
	e->peer_ip = ip;
	buf_init(&e->pq, (size_t)gw.cfg.max_output);
	if (map_put(&gw.eio_by_sid, slice_make(e->sid, 20), e) < 0) {
		free(e);
		return NULL;
	}
	eio_count++;
	arm_ping(e);
	return e;
}

/* Answers the held GET with everything queued, as one payload. */
static void poll_flush(eio_sock *e)
{
	if (!e->poll || e->pq.len == 0)
		return;
	conn *c = e->poll;
	e->poll = NULL;
	gw.m.conns_polling--;
	httpd_respond(c, 200, "text/plain; charset=UTF-8", e->poll_cors, e->pq.data, e->pq.len);
	free(e->poll_cors);
	e->poll_cors = NULL;
	buf_reset(&e->pq);
	if (e->pq.cap > 4096)
		buf_dispose(&e->pq);
}

/* Queues one packet for the polling transport. */
static int poll_queue(eio_sock *e, int type, slice data, int binary)
{
	if (e->flags & EIO_F_OVERFLOW)
		return -1;
	if (eio_payload_append(&e->pq, 0, type, data, binary) < 0) {
		/* Closed from the timer, not here: the caller may be walking a room. */
		gw.m.slow_consumers++;
		log_warn("sid=%s polling queue over %lld bytes: closing", e->sid,
		         (long long)gw.cfg.max_output);
		e->flags |= EIO_F_OVERFLOW;
		gw_timer_set(&e->hb, 0);
		return -1;
	}
	poll_flush(e);
	return 0;
}

static int send_packet(eio_sock *e, int type, slice data, int binary)
{
	if (e->flags & EIO_F_CLOSED)
		return -1;
	gw.m.eio_out++;
	if (e->transport == EIO_T_WEBSOCKET) {
		if (binary)
			return ws_send(e->ws, WS_OP_BINARY, data);
		rbuf *rb = ws_frame_build2(WS_OP_TEXT, (char)type, data);
		if (!rb)
			return -1;
		int rc = ws_send_frame(e->ws, rb);
		rbuf_unref(rb);
		return rc;
	}
	return poll_queue(e, type, data, binary);
}

int eio_send(eio_sock *e, slice data, int binary)
{
	return send_packet(e, EIO_MESSAGE, data, binary);
}

int eio_send_shared(eio_sock *e, rbuf *ws_frame, slice data, int binary)
{
	if (e->flags & EIO_F_CLOSED)
		return -1;
	gw.m.eio_out++;
	if (e->transport == EIO_T_WEBSOCKET)
		return ws_send_frame(e->ws, ws_frame);
	return poll_queue(e, EIO_MESSAGE, data, binary);
}

static void free_later(wheel_timer *t)
{
	free(wheel_owner(t, eio_sock, hb));
}

static void session_free(eio_sock *e, const char *reason)
{
	if (e->flags & EIO_F_CLOSED)
		return;
	e->flags |= EIO_F_CLOSED;
	gw_timer_cancel(&e->hb);
	map_del(&gw.eio_by_sid, slice_make(e->sid, 20));
	eio_count--;
	if (e->h && e->h->on_close)
		e->h->on_close(e, reason);
	/* 1001 tells a client the server is going away (it reconnects to
	 * another gateway); 1000 is an ordinary end of session. */
	uint16_t code = gw.draining ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL;
	if (e->probe) {
		ws *p = e->probe;
		e->probe = NULL;
		p->ud = NULL;
		ws_close(p, code, reason);
	}
	if (e->ws) {
		ws *w = e->ws;
		e->ws = NULL;
		w->ud = NULL;
		ws_close(w, code, reason);
	}
	if (e->poll) {
		conn *c = e->poll;
		e->poll = NULL;
		gw.m.conns_polling--;
		c->flags &= ~CONN_KEEPALIVE;
		httpd_respond(c, 200, "text/plain; charset=UTF-8", e->poll_cors, "1", 1);
	}
	free(e->poll_cors);
	e->poll_cors = NULL;
	buf_dispose(&e->pq);
	/* Freed from the wheel, after every callback on the stack unwinds:
	 * callers may still test e->flags for EIO_F_CLOSED. */
	gw_timer_start(&e->hb, free_later, 0);
}

void eio_close(eio_sock *e, const char *reason)
{
	session_free(e, reason);
}

static void hb_fire(wheel_timer *t)
{
	eio_sock *e = wheel_owner(t, eio_sock, hb);
	if (e->flags & EIO_F_OVERFLOW) {
		session_free(e, "slow consumer");
		return;
	}
	if (e->flags & EIO_F_PING_SENT) {
		log_debug("sid=%s ping timeout", e->sid);
		session_free(e, "ping timeout");
		return;
	}
	e->flags |= EIO_F_PING_SENT;
	gw_timer_set(&e->hb, (uint64_t)gw.cfg.ping_timeout_ms);
	send_packet(e, EIO_PING, SLICE_NULL, 0);
}

/* Handles one decoded packet from the client, whatever the transport.
 * Returns -1 when the session was closed. */
static int on_packet(eio_sock *e, const eio_packet *p)
{
	gw.m.eio_in++;
	switch (p->type) {
	case EIO_PONG:
		if (e->flags & EIO_F_PING_SENT) {
			arm_ping(e);
			if (e->h->on_heartbeat)
				e->h->on_heartbeat(e);
		}
		return 0;
	case EIO_MESSAGE:
		if (p->b64) {
			buf raw;
			buf_init(&raw, (size_t)gw.cfg.max_payload);
			if (eio_base64_decode(&raw, p->data) < 0) {
				buf_dispose(&raw);
				session_free(e, "bad base64 packet");
				return -1;
			}
			e->h->on_message(e, buf_slice(&raw), 1);
			buf_dispose(&raw);
		} else {
			e->h->on_message(e, p->data, p->binary);
		}
		return (e->flags & EIO_F_CLOSED) ? -1 : 0;
	case EIO_CLOSE:
		/* A held poll ends with a noop, as engine.io answers it; the
		 * session is gone for the next request. */
		if (e->poll) {
			conn *c = e->poll;
			e->poll = NULL;
			gw.m.conns_polling--;
			httpd_respond(c, 200, "text/plain; charset=UTF-8", e->poll_cors, "6", 1);
		}
		session_free(e, "client closed");
		return -1;
	default:
		/* open, ping (outside a probe), upgrade, noop from a client */
		log_debug("sid=%s unexpected packet type %c", e->sid, p->type);
		session_free(e, "unexpected packet");
		return -1;
	}
}

/* ---- WebSocket transport ---- */

static void ws_on_message(ws *w, int opcode, slice payload)
{
	eio_sock *e = w->ud;
	if (!e)
		return;
	eio_packet p;
	if (opcode == WS_OP_BINARY) {
		eio_parse_binary(payload, &p);
	} else if (eio_parse_text(payload, &p) < 0) {
		gw.m.closed_bad_input++;
		log_info("sid=%s malformed Engine.IO packet: closing", e->sid);
		session_free(e, "malformed packet");
		return;
	}
	if (w == e->probe) {
		/* Upgrade: 2probe -> 3probe, then noop the held poll so the client
		 * stops polling, then 5 switches the transport. */
		if (p.type == EIO_PING && slice_eq_cstr(p.data, "probe")) {
			ws_send(w, WS_OP_TEXT, SLICE_LIT("3probe"));
			e->flags |= EIO_F_UPGRADING;
			if (e->poll) {
				eio_payload_append(&e->pq, 0, EIO_NOOP, SLICE_NULL, 0);
				poll_flush(e);
			}
		} else if (p.type == EIO_UPGRADE && (e->flags & EIO_F_UPGRADING)) {
			e->probe = NULL;
			e->ws = w;
			e->transport = EIO_T_WEBSOCKET;
			e->flags &= ~EIO_F_UPGRADING;
			gw.m.conns_polling -= e->poll ? 1 : 0;
			if (e->poll) {
				/* Answer the last poll with a noop so it ends cleanly. */
				conn *c = e->poll;
				e->poll = NULL;
				httpd_respond(c, 200, "text/plain; charset=UTF-8", e->poll_cors,
				              "6", 1);
			}
			/* Whatever was queued for polling goes out first, in order. */
			eio_payload_iter it;
			eio_packet q;
			if (e->pq.len) {
				buf old = e->pq;
				buf_init(&e->pq, (size_t)gw.cfg.max_output);
				eio_payload_init(&it, buf_slice(&old));
				while (eio_payload_next(&it, &q) == 1) {
					if (q.type == EIO_NOOP)
						continue;
					if (q.b64) {
						buf raw;
						buf_init(&raw, 0);
						eio_base64_decode(&raw, q.data);
						ws_send(w, WS_OP_BINARY, buf_slice(&raw));
						buf_dispose(&raw);
					} else {
						ws_send(
						    w, WS_OP_TEXT,
						    slice_make(q.data.base - 1, q.data.len + 1));
					}
				}
				buf_dispose(&old);
			}
		} else {
			session_free(e, "bad upgrade");
		}
		return;
	}
	on_packet(e, &p);
}

static void ws_on_close(ws *w, uint16_t code, const char *reason)
{
	eio_sock *e = w->ud;
	if (!e)
		return;
	if (w == e->probe) {
		/* A failed probe leaves the polling session as it was. */
		e->probe = NULL;
		e->flags &= ~EIO_F_UPGRADING;
		return;
	}
	e->ws = NULL;
	session_free(e, code == 1006 ? "transport close" : "transport closed by client");
}

/* ---- polling transport ---- */

static void poll_abort(conn *c, void *arg)
{
	eio_sock *e = arg;
	if (e->poll == c) {
		e->poll = NULL;
		gw.m.conns_polling--;
		/* engine.io ends the session when a poll is dropped before its
		 * answer: the client is gone (or broken), not merely slow. */
		session_free(e, "poll connection closed prematurely");
	}
}

static void handle_get(conn *c, const http_request *req, eio_sock *e)
{
	if (e->transport != EIO_T_POLLING) {
		eio_error(c, req, 400, EIO_ERR_REQUEST);
		return;
	}
	if (e->poll) {
		/* Two overlapping polls: the client is confused; end the session. */
		eio_error(c, req, 400, EIO_ERR_REQUEST);
		session_free(e, "overlapping polls");
		return;
	}
	if (e->pq.len || e->probe) {
		/* While a WebSocket is being probed, polls are answered at once
		 * (a noop if nothing is queued) so the client can pause polling
		 * and finish the upgrade. */
		char hdrs[600];
		cors_headers(req, hdrs, sizeof(hdrs));
		if (!e->pq.len)
			eio_payload_append(&e->pq, 0, EIO_NOOP, SLICE_NULL, 0);
		httpd_respond(c, 200, "text/plain; charset=UTF-8", hdrs, e->pq.data, e->pq.len);
		buf_reset(&e->pq);
		return;
	}
	/* The request's headers are gone by the time the poll is answered;
	 * keep the CORS lines its answer needs. */
	char hdrs[600];
	cors_headers(req, hdrs, sizeof(hdrs));
	free(e->poll_cors);
	e->poll_cors = *hdrs ? strdup(hdrs) : NULL;
	e->poll = c;
	gw.m.conns_polling++;
	httpd_hold(c, poll_abort, e);
}

static void handle_post(conn *c, const http_request *req, slice body, eio_sock *e)
{
	char hdrs[600];
	cors_headers(req, hdrs, sizeof(hdrs));
	eio_payload_iter it;
	eio_packet p;
	int rc;
	/* The whole body is checked before any packet of it takes effect: a
	 * malformed payload is refused (400) and ends the session. */
	eio_payload_init(&it, body);
	while ((rc = eio_payload_next(&it, &p)) == 1)
		;
	if (rc < 0) {
		gw.m.closed_bad_input++;
		log_info("sid=%s malformed polling payload: closing", e->sid);
		eio_error(c, req, 400, EIO_ERR_REQUEST);
		session_free(e, "malformed payload");
		return;
	}
	/* Answered before dispatch: handlers may close the session, and the
	 * client is owed "ok" for a body it sent correctly. */
	httpd_respond(c, 200, "text/html", hdrs, "ok", 2);
	eio_payload_init(&it, body);
	while (eio_payload_next(&it, &p) == 1)
		if (on_packet(e, &p) < 0)
			return;
}

static void send_open(eio_sock *e, int allow_upgrades, buf *out)
{
	eio_encode_open(out, slice_make(e->sid, 20), allow_upgrades,
	                (uint32_t)gw.cfg.ping_interval_ms, (uint32_t)gw.cfg.ping_timeout_ms,
	                (uint32_t)gw.cfg.max_payload);
}

static ws_limits ws_lim;

static const ws_limits *limits(void)
{
	ws_lim.max_frame = (uint64_t)gw.cfg.max_payload;
	ws_lim.max_message = (uint64_t)gw.cfg.max_payload;
	ws_lim.max_fragments = (uint32_t)gw.cfg.max_fragments;
	return &ws_lim;
}

void eio_handle(conn *c, const http_request *req, slice body, const eio_handler *h,
                int allow_upgrades)
{
	slice v, transport, sidv;
	int is_options = slice_eq_cstr(req->method, "OPTIONS");
	if (!origin_allowed(req)) {
		gw.m.handshake_fail[HS_FAIL_ORIGIN]++;
		slice o;
		http_header_get(req, "origin", &o);
		char sample[80];
		log_info("conn=%llu refused Origin %s", (unsigned long long)c->id,
		         log_sample(sample, sizeof(sample), o.base, o.len, 60));
		c->flags &= ~CONN_KEEPALIVE;
		eio_error(c, NULL, 403, EIO_ERR_FORBIDDEN);
		return;
	}
	if (is_options) {
		char hdrs[800];
		cors_headers(req, hdrs, sizeof(hdrs) - 200);
		strcat(hdrs, "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
		             "Access-Control-Allow-Headers: content-type\r\n");
		httpd_respond(c, 204, NULL, hdrs, NULL, 0);
		return;
	}
	if (!http_query_get(req->query, "EIO", &v) || !slice_eq_cstr(v, "4")) {
		gw.m.handshake_fail[HS_FAIL_BAD_REQUEST]++;
		eio_error(c, req, 400, EIO_ERR_VERSION);
		return;
	}
	if (!http_query_get(req->query, "transport", &transport) ||
	    (!slice_eq_cstr(transport, "polling") && !slice_eq_cstr(transport, "websocket"))) {
		gw.m.handshake_fail[HS_FAIL_TRANSPORT]++;
		eio_error(c, req, 400, EIO_ERR_TRANSPORT);
		return;
	}
	int websocket = slice_eq_cstr(transport, "websocket");
	eio_sock *e = NULL;
	if (http_query_get(req->query, "sid", &sidv)) {
		e = map_get(&gw.eio_by_sid, sidv);
		if (!e) {
			gw.m.handshake_fail[HS_FAIL_UNKNOWN_SID]++;
			eio_error(c, req, 400, EIO_ERR_SID);
			return;
		}
	}
	if (websocket) {
		int st = ws_check_upgrade(req);
		if (st) {
			gw.m.handshake_fail[HS_FAIL_BAD_REQUEST]++;
			ws_refuse(c, st);
			return;
		}
		if (e && (e->transport != EIO_T_POLLING || e->probe || !allow_upgrades)) {
			eio_error(c, req, 400, EIO_ERR_REQUEST);
			return;
		}
		if (gw.draining) {
			httpd_error(c, 503, "draining");
			return;
		}
		if (!e) {
			e = session_create(h, EIO_T_WEBSOCKET, c->peer_ip);
			if (!e) {
				httpd_error(c, 503, "out of memory");
				return;
			}
		}
		ws *w = ws_accept(c, req, &eio_ws_handler, e, limits());
		if (!w) {
			if (e->transport == EIO_T_WEBSOCKET && !e->ws)
				session_free(e, "upgrade failed");
			return;
		}
		if (e->transport == EIO_T_WEBSOCKET && !e->ws) {
			e->ws = w;
			buf open;
			buf_init(&open, 0);
			send_open(e, 0, &open);
			ws_send(w, WS_OP_TEXT, buf_slice(&open));
			buf_dispose(&open);
			e->h->on_open(e);
		} else {
			e->probe = w;
			if (e->poll) {
				eio_payload_append(&e->pq, 0, EIO_NOOP, SLICE_NULL, 0);
				poll_flush(e);
			}
		}
		return;
	}
	if (!e) {
		if (!slice_eq_cstr(req->method, "GET")) {
			eio_error(c, req, 400, EIO_ERR_METHOD);
			return;
		}
		if (gw.draining) {
			httpd_error(c, 503, "draining");
			return;
		}
		e = session_create(h, EIO_T_POLLING, c->peer_ip);
		if (!e) {
			httpd_error(c, 503, "out of memory");
			return;
		}
		buf open;
		buf_init(&open, 0);
		send_open(e, allow_upgrades, &open);
		char hdrs[600];
		cors_headers(req, hdrs, sizeof(hdrs));
		httpd_respond(c, 200, "text/plain; charset=UTF-8", hdrs, open.data, open.len);
		buf_dispose(&open);
		e->h->on_open(e);
		return;
	}
	if (slice_eq_cstr(req->method, "GET"))
		handle_get(c, req, e);
	else if (slice_eq_cstr(req->method, "POST"))
		handle_post(c, req, body, e);
	else
		eio_error(c, req, 400, EIO_ERR_METHOD);
}
