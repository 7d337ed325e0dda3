/*
 * buf.h - a growable byte buffer with a hard limit.
 *
 * The caller owns the struct (buf_init/buf_dispose); the buffer owns its
 * heap block. An empty buffer holds no heap memory, so idle connections
 * that embed one cost only the struct. Every append is checked against
 * `limit` (0 means SIZE_MAX) before any allocation, so a length field read
 * from the network can never make us allocate more than the limit.
 */
#ifndef TIDINGS_BUF_H
#define TIDINGS_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "slice.h"

typedef struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t limit;
} buf;

/* Initializes an empty buffer that may grow to `limit` bytes (0: no limit). */
void buf_init(buf *b, size_t limit);

/* Frees the heap block; the buffer is empty and reusable afterwards. */
void buf_dispose(buf *b);

/* Makes room for `extra` more bytes. Returns 0, or -1 when the limit would
 * be passed or memory is exhausted (the buffer is unchanged then). */
int buf_reserve(buf *b, size_t extra);

/* Appends bytes; 0 or -1 as buf_reserve. */
int buf_append(buf *b, const void *p, size_t n);

static inline int buf_append_slice(buf *b, slice s)
{
	return buf_append(b, s.base, s.len);
}

int buf_append_cstr(buf *b, const char *s);
int buf_append_byte(buf *b, char c);

/* Appends a decimal number. */
int buf_append_u64(buf *b, uint64_t v);

/* Writes v in decimal at dst, which has room for BUF_U64_DIGITS bytes, and
 * returns how many it wrote (no NUL). snprintf's "%llu" costs 20 times as
 * many instructions, and the connect path writes some 100 numbers. */
#define BUF_U64_DIGITS 20
size_t buf_u64_digits(char *dst, uint64_t v);

/* Appends printf-formatted text; 0, or -1 as buf_reserve (or a format
 * error), the buffer unchanged then. Formatting needs room for a
 * terminator, so the text must end one byte short of the limit. */
int buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the first `n` bytes (n <= len), keeping the rest. */
void buf_consume(buf *b, size_t n);

/* Empties the buffer but keeps its heap block for reuse. */
static inline void buf_reset(buf *b)
{
	b->len = 0;
}

static inline slice buf_slice(const buf *b)
{
	return (slice){b->data, b->len};
}

#endif
