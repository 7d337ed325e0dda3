/*
 * jscan.h - JSON read in place: one validating pass, then values as spans
 * of the original text.
 *
 * For a reader that forwards most of a document as it came (the emit API
 * passes each emit's data on to Redis untouched) a tree is wasted work: it
 * allocates a node per value, and the data must then be printed back. Here
 * the text is checked once (jscan_doc), and a validated span is then walked
 * without allocating (jscan_item, jscan_member, jscan_find) and its strings
 * decoded into caller buffers (jscan_str).
 *
 * Accepted: exactly RFC 8259 JSON in well-formed UTF-8 (no raw control
 * characters in strings, no lone or reversed surrogate escapes, nesting at
 * most JSCAN_MAX_DEPTH). That is a subset of what cJSON parses, so a span
 * accepted here parses the same with json_parse downstream.
 */
#ifndef TIDINGS_JSCAN_H
#define TIDINGS_JSCAN_H

#include <stddef.h>

#define JSCAN_MAX_DEPTH 256

typedef enum {
	JS_NONE = 0, /* absent (a member not found) */
	JS_NULL,
	JS_FALSE,
	JS_TRUE,
	JS_NUMBER,
	JS_STRING, /* the span includes the quotes */
	JS_ARRAY,
	JS_OBJECT,
} jstype;

typedef struct jspan {
	const char *p;
	size_t n;
	jstype t;
} jspan;

/* Checks that p[0..n) is one JSON value with only whitespace around it,
 * and sets *v to the value. Returns 0, or -1 when the text is not JSON. */
int jscan_doc(const char *p, size_t n, jspan *v);

/* The next item of validated array a, from cursor *it (start at 0).
 * Returns 1 and sets *v, or 0 at the end. */
int jscan_item(const jspan *a, size_t *it, jspan *v);

/* The next member of validated object o, from cursor *it (start at 0).
 * Returns 1 and sets *key (a JS_STRING span) and *v, or 0 at the end. */
int jscan_member(const jspan *o, size_t *it, jspan *key, jspan *v);

/* The first member of validated object o named name (escapes decoded;
 * name shorter than 255 bytes), as cJSON_GetObjectItemCaseSensitive
 * finds it, except that a key holding \u0000 matches nothing (cJSON
 * cuts it at the NUL). Sets *v; returns 1, or 0
 * with v->t = JS_NONE when there is none (or o is not an object). */
int jscan_find(const jspan *o, const char *name, jspan *v);

/* Copies validated value v into out (at least v->n bytes) without the
 * whitespace between tokens; strings, escapes and number spellings stay
 * as written. Returns the length. */
size_t jscan_compact(const jspan *v, char *out);

/* Whether key (a JS_STRING span) decodes to name (shorter than 255
 * bytes); a key holding \u0000 matches nothing. */
int jscan_key_is(const jspan *key, const char *name);

/* Decodes validated string s into out (cap bytes, NUL-terminated).
 * Returns its length, or -1 when it does not fit or holds a NUL
 * (\u0000), which no C string can carry. */
int jscan_str(const jspan *s, char *out, size_t cap);

#endif
