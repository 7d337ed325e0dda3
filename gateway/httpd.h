/*
 * httpd.h - the HTTP/1.1 server side of a connection: request heads with
 * limits and a deadline, bodies by Content-Length, keep-alive, and one
 * response at a time. Both listeners use it; what differs is the route
 * function that answers each request.
 */
#ifndef TIDINGS_HTTPD_H
#define TIDINGS_HTTPD_H

#include "common/slice.h"
#include "conn.h"
#include "http.h"

/* Answers one request. req and body point into the read buffer and are
 * valid only during the call: a handler that answers later copies what it
 * needs. The handler must eventually call httpd_respond (now or later),
 * take the connection over (WebSocket upgrade) or close it. */
typedef void httpd_route_fn(conn *c, const http_request *req, slice body);

/* Starts serving HTTP on an accepted connection. */
void httpd_start(conn *c, httpd_route_fn *route);

/* Sends a complete response. `headers` holds extra header lines, each
 * ending in CRLF (may be NULL). The connection stays open for the next
 * request when the request allowed keep-alive, else closes after the
 * write. */
void httpd_respond(conn *c, int status, const char *content_type, const char *headers,
                   const void *body, size_t len);

/* Sends a response and closes, for errors before or instead of routing. */
void httpd_error(conn *c, int status, const char *msg);

/* Marks the current request as answered later (a long poll): when the
 * connection closes before httpd_respond, on_abort(c, arg) runs so the
 * holder can forget it. */
void httpd_hold(conn *c, void (*on_abort)(conn *c, void *arg), void *arg);

/* Detaches the HTTP layer (the caller installed another handler). */
void httpd_detach(conn *c);

const char *httpd_reason(int status);

#endif
