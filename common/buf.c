#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit ? limit : SIZE_MAX;
}

void buf_dispose(buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

int buf_reserve(buf *b, size_t extra)
{
	if (extra > b->limit || b->len > b->limit - extra)
		return -1;
	size_t need = b->len + extra;
	if (need <= b->cap)
		return 0;
	/* Grow geometrically from a small first block, but never past the limit:
	 * a connection allowed 1 MB must not be handed 2 MB by doubling. */
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->limit)
		cap = b->limit;
	char *p = realloc(b->data, cap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_append_cstr(buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_append_byte(buf *b, char c)
{
	return buf_append(b, &c, 1);
}

size_t buf_u64_digits(char *dst, uint64_t v)
{
	/* Most numbers written are RESP lengths of one or two digits, where the
	 * copy below would cost more than the digits. */
	if (v < 10) {
		dst[0] = (char)('0' + v);
		return 1;
	}
	if (v < 100) {
		dst[0] = (char)('0' + v / 10);
		dst[1] = (char)('0' + v % 10);
		return 2;
	}
	char tmp[BUF_U64_DIGITS];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	memcpy(dst, tmp + i, sizeof(tmp) - i);
	return sizeof(tmp) - i;
}

int buf_append_u64(buf *b, uint64_t v)
{
	char tmp[BUF_U64_DIGITS];
	return buf_append(b, tmp, buf_u64_digits(tmp, v));
}

int buf_appendf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_consume(buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
