#include "httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gw.h"

/* One per HTTP connection; freed when the connection closes or is taken
 * over by another protocol. */
typedef struct httpd_conn {
	httpd_route_fn *route;
	void (*on_abort)(conn *c, void *arg);
	void *abort_arg;
} httpd_conn;

static conn *reading; /* the connection whose on_read is running */

static size_t on_read(conn *c, char *data, size_t len);
static void on_close(conn *c, const char *reason);
static const conn_handler httpd_handler = {on_read, on_close};

static void header_deadline(wheel_timer *t)
{
	conn *c = wheel_owner(t, conn, timer);
	gw.m.handshake_fail[HS_FAIL_HEADER_TIMEOUT]++;
	log_debug("conn=%llu HTTP request not complete within %lld ms", (unsigned long long)c->id,
	          (long long)gw.cfg.header_timeout_ms);
	httpd_error(c, 408, "request timeout");
}

static void arm_deadline(conn *c)
{
	gw_timer_start(&c->timer, header_deadline, (uint64_t)gw.cfg.header_timeout_ms);
}

void httpd_start(conn *c, httpd_route_fn *route)
{
	httpd_conn *h = malloc(sizeof(*h));
	if (!h) {
		conn_close(c, 0, "out of memory");
		return;
	}
	h->route = route;
	h->on_abort = NULL;
	conn_set_handler(c, &httpd_handler, h);
	gw.m.conns_http++;
	arm_deadline(c);
}

void httpd_detach(conn *c)
{
	if (c->h == &httpd_handler) {
		free(c->ud);
		gw.m.conns_http--;
		gw_timer_cancel(&c->timer);
		conn_set_handler(c, NULL, NULL);
	}
}

void httpd_hold(conn *c, void (*on_abort)(conn *c, void *arg), void *arg)
{
	httpd_conn *h = c->ud;
	h->on_abort = on_abort;
	h->abort_arg = arg;
}

static void on_close(conn *c, const char *reason)
{
	httpd_conn *h = c->ud;
	if (h->on_abort && (c->flags & CONN_HTTP_BUSY))
		h->on_abort(c, h->abort_arg);
	free(c->ud);
	gw.m.conns_http--;
}

const char *httpd_reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

void httpd_respond(conn *c, int status, const char *content_type, const char *headers,
                   const void *body, size_t len)
{
	char head[1024];
	int keep = (c->flags & CONN_KEEPALIVE) && status < 400;
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\n"
	                 "Content-Length: %zu\r\n"
	                 "%s%s%s"
	                 "%s"
	                 "Connection: %s\r\n\r\n",
	                 status, httpd_reason(status), len, content_type ? "Content-Type: " : "",
	                 content_type ? content_type : "", content_type ? "\r\n" : "",
	                 headers ? headers : "", keep ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		conn_close(c, 0, "response head too large");
		return;
	}
	rbuf *rb = rbuf_create((size_t)n + len);
	if (!rb) {
		conn_close(c, 0, "out of memory");
		return;
	}
	memcpy(rb->data, head, (size_t)n);
	if (len)
		memcpy(rb->data + n, body, len);
	conn_send(c, rb);
	rbuf_unref(rb);
	c->flags &= ~CONN_HTTP_BUSY;
	if (c->h == &httpd_handler)
		((httpd_conn *)c->ud)->on_abort = NULL;
	if (!keep) {
		conn_close(c, 1, "response sent");
		return;
	}
	arm_deadline(c);
	if (reading != c)
		conn_resume(c);
}

void httpd_error(conn *c, int status, const char *msg)
{
	c->flags &= ~CONN_KEEPALIVE;
	httpd_respond(c, status, "text/plain; charset=UTF-8", NULL, msg, strlen(msg));
}

/* Parses and routes as many complete requests as the bytes hold, one at a
 * time: a request answered later (a long poll) holds the rest back. */
static size_t on_read(conn *c, char *data, size_t len)
{
	size_t used = 0;
	reading = c;
	while (used < len && !(c->flags & (CONN_HTTP_BUSY | CONN_CLOSING)) &&
	       c->h == &httpd_handler) {
		http_request req;
		int rc =
		    http_parse_request(data + used, len - used, &req,
		                       (size_t)gw.cfg.max_header_bytes, (size_t)gw.cfg.max_headers);
		if (rc == HTTP_INCOMPLETE)
			break;
		if (rc < 0) {
			gw.m.handshake_fail[rc == HTTP_ERROR ? HS_FAIL_BAD_REQUEST
			                                     : HS_FAIL_TOO_LARGE]++;
			log_debug("conn=%llu bad HTTP request (%d)", (unsigned long long)c->id, rc);
			httpd_error(c, rc == HTTP_ERROR ? 400 : 431,
			            rc == HTTP_ERROR ? "malformed request"
			                             : "request head too large");
			break;
		}
		slice v;
		uint64_t clen = 0;
		if (http_header_get(&req, "transfer-encoding", &v)) {
			httpd_error(c, 501,
			            "chunked bodies are not supported; send Content-Length");
			break;
		}
		if (http_header_count(&req, "content-length") > 1) {
			/* Two lengths are how request smuggling starts. */
			httpd_error(c, 400, "duplicate Content-Length");
			break;
		}
		if (http_header_get(&req, "content-length", &v) &&
		    http_parse_content_length(v, UINT64_MAX, &clen) < 0) {
			httpd_error(c, 400, "bad Content-Length");
			break;
		}
		if (clen > (uint64_t)gw.cfg.max_payload) {
			gw.m.handshake_fail[HS_FAIL_TOO_LARGE]++;
			httpd_error(c, 413, "body too large");
			break;
		}
		if (len - used - (size_t)rc < clen)
			break; /* body still coming; the deadline still runs */
		gw_timer_cancel(&c->timer);
		c->flags |= CONN_HTTP_BUSY;
		if (http_keep_alive(&req))
			c->flags |= CONN_KEEPALIVE;
		else
			c->flags &= ~CONN_KEEPALIVE;
		httpd_conn *h = c->ud;
		h->route(c, &req, slice_make(data + used + rc, (size_t)clen));
		used += (size_t)rc + (size_t)clen;
	}
	reading = NULL;
	return used;
}
