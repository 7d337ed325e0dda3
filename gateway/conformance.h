/*
 * conformance.h - endpoints for public conformance suites, on only with
 * TIDINGS_CONFORMANCE=1: a raw Engine.IO echo at /engine.io/ and a raw
 * WebSocket echo at /ws-echo. (The Socket.IO behaviours of that mode live
 * in sio_sock.c, since they need the real Socket.IO stack.)
 */
#ifndef TIDINGS_CONFORMANCE_H
#define TIDINGS_CONFORMANCE_H

#include "eio_sock.h"
#include "httpd.h"

extern const eio_handler conformance_eio_echo;

/* Accepts a WebSocket at /ws-echo that echoes every message. */
void conformance_ws_echo(conn *c, const http_request *req);

#endif
