/*
 * lg_http.h - an HTTP/1.1 response parser for the producer's keep-alive
 * connections.
 *
 * A pure codec in picohttpparser's manner: the caller's buffer in, the
 * facts it needs out, no allocation. It re-parses from the start of the
 * response each time more bytes arrive; the producer's answers are a few
 * hundred bytes, so a resumable state machine would buy nothing.
 */
#ifndef TIDINGS_LG_HTTP_H
#define TIDINGS_LG_HTTP_H

#include <stddef.h>

#include "common/slice.h"

/* Longest response head accepted. */
#define LG_HTTP_MAX_HEAD 16384

typedef struct lg_http_resp {
	int status;    /* 100..999 */
	int close;     /* the server will close after this response */
	int until_eof; /* no framing: the body runs to the end of the connection */
} lg_http_resp;

/* Parses the response at p[0..n): status line, headers, and a body framed
 * by Content-Length or chunked transfer coding (1xx, 204 and 304 have none).
 * Returns the bytes of the whole response, 0 when more are needed, or -1
 * when it is malformed or its head passes LG_HTTP_MAX_HEAD. With until_eof
 * set, the count covers the head only. */
long lg_http_response(const char *p, size_t n, lg_http_resp *r);

/* Finds header `name` (case-insensitive) in the response head p[0..n) and
 * sets *v to its value, surrounding blanks trimmed, pointing into p.
 * Returns 1, or 0 when absent. */
int lg_http_header(const char *p, size_t n, const char *name, slice *v);

#endif
