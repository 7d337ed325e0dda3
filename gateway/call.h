/*
 * call.h - POST /api/v1/call on the internal port: Open WebUI's event_call.
 * An event is delivered with an ack id to one socket, on whichever gateway
 * holds it, and the HTTP answer is the client's ack arguments (one
 * argument: its value; several: an array), or {"error": "Client session
 * disconnected."}, or {"error": "Event call timed out. ..."} after
 * timeout_ms (default WEBSOCKET_EVENT_CALLER_TIMEOUT).
 */
#ifndef TIDINGS_CALL_H
#define TIDINGS_CALL_H

#include "httpd.h"

void call_route(conn *c, const http_request *req, slice body);

/* The answer to call `id` arrived (from this or another gateway): data is
 * the JSON answer, or error a reason. Unknown ids (timed out) are ignored. */
void call_reply(slice id, slice data, slice error);

#define CALL_DISCONNECTED "Client session disconnected."

#endif
