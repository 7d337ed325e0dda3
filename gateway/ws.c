#include "ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gw.h"
#include "httpd.h"

/* One per WebSocket connection: 104 bytes are a 112-byte malloc chunk (see
 * eio_sock.h). */
_Static_assert(sizeof(ws) <= 104, "ws: mind its malloc chunk");

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static size_t on_read(conn *c, char *data, size_t len);
static void on_conn_close(conn *c, const char *reason);
static const conn_handler ws_conn_handler = {on_read, on_conn_close};

int ws_check_upgrade(const http_request *req)
{
	slice v;
	if (!slice_eq_cstr(req->method, "GET") || req->minor_version != 1)
		return 400;
	if (!http_header_get(req, "upgrade", &v) || !http_header_has_token(v, "websocket"))
		return 400;
	if (!http_header_get(req, "connection", &v) || !http_header_has_token(v, "upgrade"))
		return 400;
	if (!http_header_get(req, "sec-websocket-version", &v) || !slice_eq_cstr(v, "13"))
		return 426;
	/* The key is 16 random bytes in base64: exactly 24 characters. */
	if (!http_header_get(req, "sec-websocket-key", &v) || v.len != 24)
		return 400;
	unsigned char raw[18];
	if (EVP_DecodeBlock(raw, (const unsigned char *)v.base, 24) != 18 || v.base[22] != '=' ||
	    v.base[23] != '=')
		return 400;
	return 0;
}

void ws_refuse(conn *c, int status)
{
	static const char msg[] = "not a valid WebSocket upgrade";
	c->flags &= ~CONN_KEEPALIVE;
	httpd_respond(c, status, "text/plain; charset=UTF-8",
	              status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL, msg, sizeof(msg) - 1);
}

/* SHA-1 of the key and the GUID. OpenSSL 3's one-shot SHA1() fetches the
 * algorithm from its provider on every call (1.5 % of the gateway's
 * connect path); the digest and a context are fetched once instead. */
static int accept_digest(const unsigned char *in, size_t n, unsigned char out[SHA_DIGEST_LENGTH])
{
	static EVP_MD *md;
	static EVP_MD_CTX *ctx;
	if (!md && !(md = EVP_MD_fetch(NULL, "SHA1", NULL)))
		return -1;
	if (!ctx && !(ctx = EVP_MD_CTX_new()))
		return -1;
	unsigned len = 0;
	if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, in, n) ||
	    !EVP_DigestFinal_ex(ctx, out, &len) || len != SHA_DIGEST_LENGTH)
		return -1;
	return 0;
}

ws *ws_accept(conn *c, const http_request *req, const ws_handler *h, void *ud, const ws_limits *lim)
{
	slice key;
	http_header_get(req, "sec-websocket-key", &key);
	unsigned char digest[SHA_DIGEST_LENGTH], cat[24 + sizeof(WS_GUID)];
	memcpy(cat, key.base, 24);
	memcpy(cat + 24, WS_GUID, sizeof(WS_GUID) - 1);
	if (accept_digest(cat, 24 + sizeof(WS_GUID) - 1, digest) < 0) {
		log_error("websocket handshake: SHA-1 unavailable");
		/* Our failure, not the client's: ws_refuse's body would blame it. */
		httpd_error(c, 500, "WebSocket handshake failed: SHA-1 unavailable on the server");
		return NULL;
	}
	char accept[32];
	EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);

	ws *w = calloc(1, sizeof(*w));
	if (!w) {
		conn_close(c, 0, "out of memory");
		return NULL;
	}
	char resp[256];
	int n = snprintf(resp, sizeof(resp),
	                 "HTTP/1.1 101 Switching Protocols\r\n"
	                 "Upgrade: websocket\r\n"
	                 "Connection: Upgrade\r\n"
	                 "Sec-WebSocket-Accept: %s\r\n\r\n",
	                 accept);
	httpd_detach(c);
	c->flags &= ~(CONN_HTTP_BUSY | CONN_KEEPALIVE);
	conn_send_copy(c, resp, (size_t)n);
	w->c = c;
	w->h = h;
	w->ud = ud;
	ws_reader_init(&w->rd, lim);
	conn_set_handler(c, &ws_conn_handler, w);
	conn_coalesce(c);
	gw.m.conns_ws++;
	return w;
}

rbuf *ws_frame_build2(int opcode, char prefix, slice payload)
{
	uint8_t hdr[14];
	size_t plen = payload.len + (prefix ? 1 : 0);
	size_t hl = ws_frame_header_encode(hdr, 1, opcode, plen);
	rbuf *rb = rbuf_create(hl + plen);
	if (!rb)
		return NULL;
	memcpy(rb->data, hdr, hl);
	char *p = rb->data + hl;
	if (prefix)
		*p++ = prefix;
	if (payload.len)
		memcpy(p, payload.base, payload.len);
	return rb;
}

rbuf *ws_frame_build(int opcode, slice payload)
{
	return ws_frame_build2(opcode, 0, payload);
}

int ws_send_frame(ws *w, rbuf *frame)
{
	if (w->flags & WS_CLOSE_SENT)
		return -1;
	return conn_send(w->c, frame);
}

int ws_send(ws *w, int opcode, slice payload)
{
	rbuf *rb = ws_frame_build(opcode, payload);
	if (!rb)
		return -1;
	int rc = ws_send_frame(w, rb);
	rbuf_unref(rb);
	return rc;
}

/* Ends the ws object: tells the owner, then detaches from the connection. */
static void finish(ws *w, uint16_t code, const char *reason)
{
	conn *c = w->c;
	const ws_handler *h = w->h;
	w->h = NULL;
	if (h && h->on_close)
		h->on_close(w, code, reason);
	ws_reader_dispose(&w->rd);
	gw.m.conns_ws--;
	conn_set_handler(c, NULL, NULL);
	free(w);
}

void ws_close(ws *w, uint16_t code, const char *reason)
{
	if (!(w->flags & WS_CLOSE_SENT)) {
		uint8_t body[127];
		size_t n = ws_close_body_encode(body, code, slice_cstr(reason ? reason : ""));
		ws_send(w, WS_OP_CLOSE, slice_make(body, n));
		w->flags |= WS_CLOSE_SENT;
	}
	conn *c = w->c;
	finish(w, code, reason);
	conn_close(c, 1, reason);
}

static void on_conn_close(conn *c, const char *reason)
{
	ws *w = c->ud;
	if (w)
		finish(w, 1006, reason);
}

static size_t on_read(conn *c, char *data, size_t len)
{
	ws *w = c->ud;
	size_t used = 0;
	while (used < len && c->ud == w && !(c->flags & CONN_CLOSING)) {
		size_t n = 0;
		ws_event ev;
		int t = ws_reader_feed(&w->rd, (uint8_t *)data + used, len - used, &n, &ev);
		used += n;
		switch (t) {
		case WS_EV_NEED_MORE:
			if (n == 0)
				return used;
			break;
		case WS_EV_MESSAGE: w->h->on_message(w, ev.opcode, ev.payload); break;
		case WS_EV_PING: ws_send(w, WS_OP_PONG, ev.payload); break;
		case WS_EV_PONG:
			if (w->h->on_pong)
				w->h->on_pong(w);
			break;
		case WS_EV_CLOSE: {
			/* Echo the peer's code (RFC 6455 5.5.1); an empty close is answered
			 * with an empty close. */
			uint8_t body[127];
			size_t bl = 0;
			if (ev.close_code != WS_CLOSE_NO_STATUS)
				bl = ws_close_body_encode(body, ev.close_code, SLICE_NULL);
			ws_send(w, WS_OP_CLOSE, slice_make(body, bl));
			w->flags |= WS_CLOSE_SENT;
			finish(w, ev.close_code, "client closed");
			conn_close(c, 1, "client closed");
			return used;
		}
		case WS_EV_ERROR:
		default: {
			char sample[64];
			gw.m.closed_bad_input++;
			log_info("conn=%llu websocket protocol error, closing with %u (%s)",
			         (unsigned long long)c->id, ev.close_code,
			         log_sample(sample, sizeof(sample), data + used,
			                    (unsigned long)(len - used), 16));
			ws_close(w, ev.close_code, "protocol error");
			return used;
		}
		}
	}
	return used;
}
