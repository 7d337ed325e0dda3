/*
 * origin.h - the Origin allow-list (CORS_ALLOW_ORIGIN), checked on the
 * polling handshake and on every WebSocket upgrade: browsers do not apply
 * CORS to WebSockets, so this check is what stops cross-site hijacking.
 */
#ifndef TIDINGS_ORIGIN_H
#define TIDINGS_ORIGIN_H

#include "common/slice.h"
#include "http.h"

/* Parses the ';'-separated list. Returns 0 or -1 with a reason. A lone "*"
 * allows every origin (logged loudly by the caller). */
int origin_init(const char *list, const char **err);

int origin_wildcard(void);

/* 1 when the request may proceed: no Origin header (not a browser), an exact
 * scheme://host[:port] match of the list (default ports normalised, case
 * of scheme and host ignored), or, with an empty list, an Origin naming the
 * request's own Host. */
int origin_allowed(const http_request *req);

#endif
