/*
 * http.h - a strict HTTP/1.1 request-head parser (RFC 7230), modelled on
 * picohttpparser.
 *
 * The parser is pure: no I/O, no logging, no allocation and no state kept
 * between calls. The caller owns the read buffer and the http_request; the
 * parser fills the request with slices that point into the buffer, so they
 * are valid exactly as long as those bytes stay where they are (consume the
 * head from the read buffer only after you are done with the slices).
 *
 * There is no feed API: after more bytes arrive, call http_parse_request
 * again on the whole buffer. Each call looks at no more than `max_head`
 * bytes, so re-parsing costs at most O(max_head) per read, and a peer that
 * sends one byte at a time is stopped by the connection's header deadline,
 * not by this module.
 *
 * Only the head is parsed. Bodies, Transfer-Encoding, duplicate-header
 * policy and target validation beyond the character set are the caller's.
 */
#ifndef TIDINGS_HTTP_H
#define TIDINGS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"

/* The most header fields one http_request can hold. */
#define HTTP_MAX_HEADERS 64

typedef struct http_header {
	slice name;  /* a token, as sent (case preserved), never empty */
	slice value; /* leading and trailing SP/HTAB removed; may be empty */
} http_header;

typedef struct http_request {
	slice method;      /* a token, e.g. "GET"; compare case-sensitively */
	slice target;      /* raw request-target, e.g. /socket.io/?EIO=4&transport=polling */
	slice path;        /* target up to the first '?' */
	slice query;       /* target after the first '?', without it; empty if none */
	int minor_version; /* 0 or 1: the x of HTTP/1.x */
	size_t num_headers;
	http_header headers[HTTP_MAX_HEADERS];
} http_request;

/* Results of http_parse_request other than a byte count. */
enum {
	HTTP_ERROR = -1,           /* malformed: answer 400 and close */
	HTTP_INCOMPLETE = -2,      /* a valid prefix so far: read more and call again */
	HTTP_TOO_LARGE = -3,       /* no complete head within max_head bytes: 431 and close */
	HTTP_TOO_MANY_HEADERS = -4 /* more than max_headers fields: 431 and close */
};

/*
 * Parses one request head (request line, header fields, blank line) from
 * buf[0..len). `buf` stays the caller's and needs no NUL terminator; `req`
 * is the caller's storage and on success holds slices into buf[0..n).
 *
 * Returns n > 0, the bytes consumed through the blank line: any bytes after
 * it (a body, a pipelined request) are left alone. Otherwise returns
 * HTTP_INCOMPLETE when buf holds a proper prefix of a head that may still
 * turn out valid (every proper prefix of a valid head gives exactly this),
 * or HTTP_ERROR / HTTP_TOO_LARGE / HTTP_TOO_MANY_HEADERS as above, after
 * which the contents of `req` are unspecified (num_headers may be partial).
 *
 * Limits: only buf[0..min(len, max_head)) is ever read, so a head longer
 * than max_head bytes is never accepted, and once len >= max_head without a
 * complete head inside it the result is HTTP_TOO_LARGE (max_head is capped
 * at INT_MAX so that n fits the return type). At most max_headers fields
 * are accepted (values above HTTP_MAX_HEADERS mean HTTP_MAX_HEADERS). The
 * time taken is linear in the bytes read.
 *
 * Strictness: the method and header names are RFC 7230 tokens; the target is
 * 1*(VCHAR) (no SP, CTL, DEL or bytes >= 0x80); the method, target and
 * version are separated by exactly one SP; the version is exactly HTTP/1.0
 * or HTTP/1.1; no space may precede a header's colon; obs-fold (a line that
 * starts with SP/HTAB) is an error; values are VCHAR, SP, HTAB and obs-text
 * (0x80-0xFF) only. Lines end in CRLF or a bare LF; a CR not followed by LF
 * is an error. One empty line before the request line is skipped (RFC 7230
 * section 3.5, for clients that add CRLF after a POST body).
 */
int http_parse_request(const char *buf, size_t len, http_request *req, size_t max_head,
                       size_t max_headers);

/*
 * Finds the first header field called `name` (a NUL-terminated string,
 * compared ASCII case-insensitively). Returns 1 and sets *value to a slice
 * of the field's value (borrowed from the request's buffer, SP/HTAB-trimmed)
 * or returns 0 and leaves *value alone.
 */
int http_header_get(const http_request *req, const char *name, slice *value);

/*
 * Returns how many header fields are called `name` (case-insensitively), so
 * that callers can refuse duplicates of fields such as Content-Length or Host.
 */
size_t http_header_count(const http_request *req, const char *name);

/*
 * Returns 1 if the comma-separated list `value` (e.g. a Connection or Upgrade
 * value) has an element equal to `token` (NUL-terminated) ASCII
 * case-insensitively, after SP/HTAB around each element is dropped; else 0.
 * Whole elements only: "upgrade-insecure" does not contain "upgrade". Empty
 * elements are ignored, and an empty token is never found.
 */
int http_header_has_token(slice value, const char *token);

/*
 * Looks up the first parameter called `name` (NUL-terminated, compared
 * byte for byte, case-sensitively, without percent-decoding) in a query
 * string such as req->query, split at '&'. Returns 1 and sets *value to the
 * raw bytes after the first '=' (borrowed from `query`; empty for "name" or
 * "name="), or returns 0 and leaves *value alone. An empty name is never
 * found.
 */
int http_query_get(slice query, const char *name, slice *value);

/*
 * Parses a Content-Length value strictly: one or more ASCII digits and
 * nothing else (no sign, no spaces, no list), without overflow and no
 * greater than `max`. Returns 0 and sets *out, or returns -1 and leaves
 * *out alone. Pass the value as http_header_get returns it (already trimmed).
 */
int http_parse_content_length(slice value, uint64_t max, uint64_t *out);

/*
 * Returns 1 if the connection persists after this request, looking at every
 * Connection field: never with a "close" token; for HTTP/1.1 otherwise yes;
 * for HTTP/1.0 only with a "keep-alive" token. Returns 0 otherwise.
 */
int http_keep_alive(const http_request *req);

#endif
