/*
 * http.c - the strict HTTP/1.1 request-head parser; see http.h.
 *
 * Every step takes a cursor and the end of the readable window and returns
 * 0 (advanced over a whole element), HTTP_INCOMPLETE (the window ended
 * inside an element that could still be valid) or an error. Because a step
 * only ever reports an error on a byte that no valid head could have there,
 * a proper prefix of a valid head always comes back HTTP_INCOMPLETE.
 */
#include "gateway/http.h"

#include <limits.h>
#include <string.h>

/* RFC 7230 tchar: "!#$%&'*+-.^_`|~", DIGIT and ALPHA. Bytes >= 0x80 are 0. */
static const unsigned char token_char[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /* 0x20  !"#$%&'()*+,-./ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0x30 0-9 :;<=>? */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 @A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* 0x50 P-Z[\]^_ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 `a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* 0x70 p-z{|}~DEL */
};

static int is_token(char c)
{
	return token_char[(unsigned char)c];
}

/* request-target bytes: VCHAR only. Raw UTF-8 is refused; clients send it
 * percent-encoded, and nothing downstream has to cope with it. */
static int is_target(char c)
{
	return (unsigned char)c > 0x20 && (unsigned char)c < 0x7f;
}

/* field-value bytes: VCHAR, SP, HTAB and obs-text; any other CTL (NUL, CR
 * on its own, ESC, DEL, ...) is refused rather than passed on to code that
 * might treat it as a terminator. */
static int is_field(char c)
{
	unsigned char u = (unsigned char)c;
	return u == '\t' || (u >= 0x20 && u != 0x7f);
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Steps over the line ending at *pp (p < end): CRLF or a bare LF. A CR at the
 * end of the window may still be followed by LF, so it is incomplete. */
static int eat_eol(const char **pp, const char *end)
{
	const char *p = *pp;
	if (*p == '\r') {
		if (++p == end)
			return HTTP_INCOMPLETE;
		if (*p != '\n')
			return HTTP_ERROR;
	} else if (*p != '\n') {
		return HTTP_ERROR;
	}
	*pp = p + 1;
	return 0;
}

/* Reads 1*tchar followed by `delim`, which is stepped over but not kept. */
static int eat_token(const char **pp, const char *end, slice *out, char delim)
{
	const char *p = *pp, *start = p;
	while (p < end && is_token(*p))
		p++;
	if (p == end)
		return HTTP_INCOMPLETE;
	if (*p != delim || p == start)
		return HTTP_ERROR;
	*out = slice_make(start, (size_t)(p - start));
	*pp = p + 1;
	return 0;
}

/* Reads "HTTP/1.0" or "HTTP/1.1". The name is case-sensitive (RFC 7230
 * section 2.6), and HTTP/1.2 or HTTP/2.0 on this path is a broken client. */
static int eat_version(const char **pp, const char *end, int *minor)
{
	static const char prefix[] = "HTTP/1.";
	const char *p = *pp;
	for (size_t i = 0; i < sizeof(prefix) - 1; i++, p++) {
		if (p == end)
			return HTTP_INCOMPLETE;
		if (*p != prefix[i])
			return HTTP_ERROR;
	}
	if (p == end)
		return HTTP_INCOMPLETE;
	if (*p != '0' && *p != '1')
		return HTTP_ERROR;
	*minor = *p - '0';
	*pp = p + 1;
	return 0;
}

/* The empty query of a target without '?' still points into the buffer (at
 * the target's end), so every slice the parser returns lies inside it. */
static void split_target(http_request *req)
{
	const char *t = req->target.base;
	const char *q = memchr(t, '?', req->target.len);
	if (!q) {
		req->path = req->target;
		req->query = slice_make(t + req->target.len, 0);
		return;
	}
	req->path = slice_make(t, (size_t)(q - t));
	req->query = slice_make(q + 1, req->target.len - req->path.len - 1);
}

/* request-line = method SP request-target SP HTTP-version CRLF */
static int eat_request_line(const char **pp, const char *end, http_request *req)
{
	const char *p = *pp, *start;
	int r;
	if ((r = eat_token(&p, end, &req->method, ' ')) != 0)
		return r;
	start = p;
	while (p < end && is_target(*p))
		p++;
	if (p == end)
		return HTTP_INCOMPLETE;
	if (*p != ' ' || p == start)
		return HTTP_ERROR;
	req->target = slice_make(start, (size_t)(p - start));
	p++;
	if ((r = eat_version(&p, end, &req->minor_version)) != 0)
		return r;
	if (p == end)
		return HTTP_INCOMPLETE;
	if ((r = eat_eol(&p, end)) != 0)
		return r;
	split_target(req);
	*pp = p;
	return 0;
}

/* header-field = field-name ":" OWS field-value OWS, then the line ending.
 * The name must be followed by the colon at once: a space there has been
 * used to smuggle a second meaning past proxies (RFC 7230 section 3.2.4). */
static int eat_header(const char **pp, const char *end, http_header *h)
{
	const char *p = *pp, *start, *stop;
	int r;
	if ((r = eat_token(&p, end, &h->name, ':')) != 0)
		return r;
	while (p < end && is_ows(*p))
		p++;
	start = p;
	while (p < end && is_field(*p))
		p++;
	if (p == end)
		return HTTP_INCOMPLETE;
	stop = p;
	if ((r = eat_eol(&p, end)) != 0)
		return r;
	while (stop > start && is_ows(stop[-1]))
		stop--;
	h->value = slice_make(start, (size_t)(stop - start));
	*pp = p;
	return 0;
}

/* Header lines up to and including the empty line that ends the head. The
 * count is checked when the first byte of one more field arrives, so a head
 * with exactly max_headers fields is never refused while it is incomplete. */
static int eat_headers(const char **pp, const char *end, http_request *req, size_t max_headers)
{
	const char *p = *pp;
	int r;
	for (;;) {
		if (p == end)
			return HTTP_INCOMPLETE;
		if (*p == '\r' || *p == '\n')
			break;
		if (is_ows(*p))
			return HTTP_ERROR; /* obs-fold, or space before the first field */
		if (req->num_headers == max_headers)
			return HTTP_TOO_MANY_HEADERS;
		if ((r = eat_header(&p, end, &req->headers[req->num_headers])) != 0)
			return r;
		req->num_headers++;
	}
	if ((r = eat_eol(&p, end)) != 0)
		return r;
	*pp = p;
	return 0;
}

int http_parse_request(const char *buf, size_t len, http_request *req, size_t max_head,
                       size_t max_headers)
{
	size_t window;
	const char *p, *end;
	int r;

	req->num_headers = 0;
	if (max_head > INT_MAX)
		max_head = INT_MAX;
	if (max_headers > HTTP_MAX_HEADERS)
		max_headers = HTTP_MAX_HEADERS;
	/* Never look past max_head: a 1 MB line costs what an 8 KB one does. */
	window = len < max_head ? len : max_head;
	if (window == 0)
		return len >= max_head ? HTTP_TOO_LARGE : HTTP_INCOMPLETE;
	p = buf;
	end = buf + window;

	r = 0;
	if (*p == '\r' || *p == '\n')
		r = eat_eol(&p, end);
	if (r == 0)
		r = eat_request_line(&p, end, req);
	if (r == 0)
		r = eat_headers(&p, end, req, max_headers);
	if (r == HTTP_INCOMPLETE && len >= max_head)
		return HTTP_TOO_LARGE;
	if (r != 0)
		return r;
	return (int)(p - buf);
}

static slice trim_ows(slice s)
{
	while (s.len && is_ows(s.base[0])) {
		s.base++;
		s.len--;
	}
	while (s.len && is_ows(s.base[s.len - 1]))
		s.len--;
	return s;
}

int http_header_get(const http_request *req, const char *name, slice *value)
{
	for (size_t i = 0; i < req->num_headers; i++) {
		if (slice_eq_nocase(req->headers[i].name, name)) {
			*value = trim_ows(req->headers[i].value);
			return 1;
		}
	}
	return 0;
}

size_t http_header_count(const http_request *req, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < req->num_headers; i++)
		n += slice_eq_nocase(req->headers[i].name, name);
	return n;
}

int http_header_has_token(slice value, const char *token)
{
	const char *p, *end;
	if (!*token || value.len == 0)
		return 0;
	p = value.base;
	end = p + value.len;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		if (slice_eq_nocase(trim_ows(slice_make(p, (size_t)(stop - p))), token))
			return 1;
		p = comma ? comma + 1 : end;
	}
	return 0;
}

int http_query_get(slice query, const char *name, slice *value)
{
	const char *p, *end;
	size_t n = strlen(name);
	if (n == 0 || query.len == 0)
		return 0;
	p = query.base;
	end = p + query.len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		size_t plen = (size_t)(stop - p);
		/* The name must be the whole key: "xsid=1" is not "sid". */
		if (plen >= n && memcmp(p, name, n) == 0 && (plen == n || p[n] == '=')) {
			const char *v = plen == n ? stop : p + n + 1;
			*value = slice_make(v, (size_t)(stop - v));
			return 1;
		}
		p = amp ? amp + 1 : end;
	}
	return 0;
}

int http_parse_content_length(slice value, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (value.len == 0)
		return -1;
	for (size_t i = 0; i < value.len; i++) {
		unsigned d = (unsigned char)value.base[i] - (unsigned)'0';
		if (d > 9)
			return -1;
		/* Checking against max at every digit also rules out overflow,
		 * as long as the multiplication itself cannot wrap. */
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

int http_keep_alive(const http_request *req)
{
	int keep = req->minor_version >= 1;
	for (size_t i = 0; i < req->num_headers; i++) {
		const http_header *h = &req->headers[i];
		if (!slice_eq_nocase(h->name, "connection"))
			continue;
		if (http_header_has_token(h->value, "close"))
			return 0;
		if (http_header_has_token(h->value, "keep-alive"))
			keep = 1;
	}
	return keep;
}
