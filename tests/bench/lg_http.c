#include "lg_http.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "common/slice.h"

/* Whether the comma-separated header value v holds token tok. */
static int has_token(slice v, const char *tok)
{
	size_t tl = strlen(tok);
	const char *p = v.base, *end = v.base + v.len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		const char *s = p;
		while (p < end && *p != ',')
			p++;
		const char *e = p;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0)
			return 1;
	}
	return 0;
}

static int parse_length(slice v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i = 0;
	while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t'))
		i++;
	size_t digits = 0;
	for (; i < v.len && v.base[i] >= '0' && v.base[i] <= '9'; i++, digits++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v.base[i] - '0');
	}
	while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t'))
		i++;
	if (!digits || i != v.len)
		return -1;
	*out = n;
	return 0;
}

/* Walks the chunks starting at p[0..n). Returns the bytes up to and
 * including the blank line after the last chunk's trailers, 0 or -1. */
static long chunked_length(const char *p, size_t n)
{
	size_t pos = 0;
	for (;;) {
		const char *eol = memmem(p + pos, n - pos, "\r\n", 2);
		if (!eol)
			return n - pos > 1024 ? -1 : 0;
		uint64_t size = 0;
		const char *q = p + pos;
		int digits = 0;
		for (; q < eol; q++, digits++) {
			int d = *q >= '0' && *q <= '9'   ? *q - '0'
			        : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
			        : *q >= 'A' && *q <= 'F' ? *q - 'A' + 10
			                                 : -1;
			if (d < 0)
				break;
			if (size >> 56)
				return -1;
			size = size << 4 | (uint64_t)d;
		}
		if (!digits || (q < eol && *q != ';' && *q != ' ' && *q != '\t'))
			return -1;
		pos = (size_t)(eol - p) + 2;
		if (size == 0)
			break;
		if (size > n - pos || n - pos - size < 2)
			return 0;
		if (memcmp(p + pos + size, "\r\n", 2) != 0)
			return -1;
		pos += size + 2;
	}
	/* Trailer lines, then the blank line that ends the message. */
	for (;;) {
		const char *eol = memmem(p + pos, n - pos, "\r\n", 2);
		if (!eol)
			return n - pos > LG_HTTP_MAX_HEAD ? -1 : 0;
		size_t line = (size_t)(eol - (p + pos));
		pos += line + 2;
		if (line == 0)
			return (long)pos;
	}
}

long lg_http_response(const char *p, size_t n, lg_http_resp *r)
{
	size_t scan = n < LG_HTTP_MAX_HEAD ? n : LG_HTTP_MAX_HEAD;
	const char *end = memmem(p, scan, "\r\n\r\n", 4);
	if (!end)
		return n >= LG_HTTP_MAX_HEAD ? -1 : 0;
	size_t head = (size_t)(end - p) + 4;
	if (head < 14 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ')
		return -1;
	int status = 0;
	for (int i = 9; i < 12; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		status = status * 10 + (p[i] - '0');
	}
	if (status < 100 || (p[12] != ' ' && p[12] != '\r'))
		return -1;
	int http10 = p[7] == '0';
	int chunked = 0, have_len = 0, keep_alive = 0;
	uint64_t clen = 0;
	r->status = status;
	r->close = 0;
	r->until_eof = 0;

	const char *line = (const char *)memchr(p, '\n', head) + 1;
	while (line < end + 2) {
		const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			return -1;
		slice name = slice_make(line, (size_t)(colon - line));
		slice v = slice_make(colon + 1, (size_t)(eol - colon - 1));
		if (slice_eq_nocase(name, "content-length")) {
			uint64_t l;
			if (parse_length(v, &l) < 0 || (have_len && l != clen))
				return -1;
			clen = l;
			have_len = 1;
		} else if (slice_eq_nocase(name, "transfer-encoding")) {
			chunked = has_token(v, "chunked");
		} else if (slice_eq_nocase(name, "connection")) {
			r->close |= has_token(v, "close");
			keep_alive |= has_token(v, "keep-alive");
		}
		line = eol + 2;
	}
	if (http10 && !keep_alive)
		r->close = 1;
	if (status < 200 || status == 204 || status == 304)
		return (long)head;
	if (chunked) {
		long c = chunked_length(p + head, n - head);
		return c <= 0 ? c : (long)head + c;
	}
	if (have_len) {
		if (clen > (uint64_t)(n - head))
			return 0;
		return (long)(head + clen);
	}
	r->until_eof = 1;
	r->close = 1;
	return (long)head;
}

int lg_http_header(const char *p, size_t n, const char *name, slice *v)
{
	size_t nl = strlen(name);
	const char *line = memchr(p, '\n', n);
	const char *end = p + n;
	while (line && ++line < end) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		if ((size_t)(eol - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *s = line + nl + 1, *e = eol;
			while (s < e && (*s == ' ' || *s == '\t'))
				s++;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
				e--;
			*v = slice_make(s, (size_t)(e - s));
			return 1;
		}
		line = eol;
	}
	return 0;
}
