/*
 * slice.h - borrowed byte ranges.
 *
 * A slice names bytes owned by someone else (a read buffer, a string
 * literal, a cJSON node). It never owns memory and is never assumed to be
 * NUL-terminated: parsers hand out slices into the caller's buffer, and the
 * slice is valid exactly as long as that buffer is.
 */
#ifndef TIDINGS_SLICE_H
#define TIDINGS_SLICE_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct slice {
	const char *base;
	size_t len;
} slice;

#define SLICE_LIT(s) ((slice){(s), sizeof(s) - 1})
#define SLICE_NULL   ((slice){NULL, 0})

static inline slice slice_make(const void *base, size_t len)
{
	return (slice){(const char *)base, len};
}

static inline slice slice_cstr(const char *s)
{
	return (slice){s, s ? strlen(s) : 0};
}

static inline int slice_eq(slice a, slice b)
{
	return a.len == b.len &&
	       (a.len == 0 || (a.base && b.base && memcmp(a.base, b.base, a.len) == 0));
}

static inline int slice_eq_cstr(slice a, const char *s)
{
	return slice_eq(a, slice_cstr(s));
}

/* ASCII case-insensitive comparison, as HTTP header names and tokens need. */
static inline int slice_eq_nocase(slice a, const char *s)
{
	size_t n = strlen(s);
	return a.len == n && strncasecmp(a.base, s, n) == 0;
}

#endif
