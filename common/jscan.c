/*
 * jscan.c - JSON read in place (jscan.h).
 *
 * Two kinds of pass. jscan_doc is a recursive-descent check of the RFC 8259
 * grammar (UTF-8 is checked once over the whole text first, so the string
 * scanner only looks for quotes, backslashes and control bytes). The
 * walkers then trust their span: skipping a value only needs to find where
 * its strings end and its brackets balance.
 */
#include "jscan.h"

#include <string.h>

#include "utf8.h"

typedef struct scanner {
	const char *p;
	size_t n, i;
	int depth;
} scanner;

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(scanner *s)
{
	while (s->i < s->n && is_ws(s->p[s->i]))
		s->i++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at p (at least 4 bytes there), or -1. */
static long hex4(const char *p)
{
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p[k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* A \u escape at p[0..left): its code point, and *used bytes (6, or 12
 * for a surrogate pair). -1 for a bad escape, a lone or reversed
 * surrogate: cJSON refuses those, and the text must parse downstream. */
static long u_escape(const char *p, size_t left, size_t *used)
{
	if (left < 6)
		return -1;
	long c = hex4(p + 2);
	if (c < 0 || (c >= 0xDC00 && c <= 0xDFFF))
		return -1;
	*used = 6;
	if (c >= 0xD800 && c <= 0xDBFF) {
		if (left < 12 || p[6] != '\\' || p[7] != 'u')
			return -1;
		long lo = hex4(p + 8);
		if (lo < 0xDC00 || lo > 0xDFFF)
			return -1;
		c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
		*used = 12;
	}
	return c;
}

static int scan_string(scanner *s)
{
	s->i++; /* the opening quote */
	while (s->i < s->n) {
		unsigned char c = (unsigned char)s->p[s->i];
		if (c == '"') {
			s->i++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			s->i++;
			continue;
		}
		if (s->i + 1 >= s->n)
			return -1;
		char e = s->p[s->i + 1];
		if (e == 'u') {
			size_t used;
			if (u_escape(s->p + s->i, s->n - s->i, &used) < 0)
				return -1;
			s->i += used;
		} else if (strchr("\"\\/bfnrt", e) && e) {
			s->i += 2;
		} else {
			return -1;
		}
	}
	return -1;
}

static int digits(scanner *s)
{
	size_t from = s->i;
	while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
		s->i++;
	return s->i > from ? 0 : -1;
}

static int scan_number(scanner *s)
{
	if (s->p[s->i] == '-')
		s->i++;
	if (s->i < s->n && s->p[s->i] == '0')
		s->i++;
	else if (digits(s) < 0)
		return -1;
	if (s->i < s->n && s->p[s->i] == '.') {
		s->i++;
		if (digits(s) < 0)
			return -1;
	}
	if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
		s->i++;
		if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
			s->i++;
		if (digits(s) < 0)
			return -1;
	}
	return 0;
}

static int literal(scanner *s, const char *word)
{
	size_t l = strlen(word);
	if (s->n - s->i < l || memcmp(s->p + s->i, word, l) != 0)
		return -1;
	s->i += l;
	return 0;
}

static int scan_value(scanner *s, jstype *t);

/* An array or object: items separated by commas; an object's are
 * "key": value. */
static int scan_container(scanner *s, char close)
{
	if (++s->depth > JSCAN_MAX_DEPTH)
		return -1;
	s->i++;
	skip_ws(s);
	if (s->i < s->n && s->p[s->i] == close) {
		s->i++;
		s->depth--;
		return 0;
	}
	for (;;) {
		jstype t;
		if (close == '}') {
			if (s->i >= s->n || s->p[s->i] != '"' || scan_string(s) < 0)
				return -1;
			skip_ws(s);
			if (s->i >= s->n || s->p[s->i] != ':')
				return -1;
			s->i++;
		}
		if (scan_value(s, &t) < 0)
			return -1;
		skip_ws(s);
		if (s->i >= s->n)
			return -1;
		if (s->p[s->i] == close) {
			s->i++;
			s->depth--;
			return 0;
		}
		if (s->p[s->i] != ',')
			return -1;
		s->i++;
		skip_ws(s);
	}
}

/* One value after optional whitespace; s->i ends just past it. */
static int scan_value(scanner *s, jstype *t)
{
	skip_ws(s);
	if (s->i >= s->n)
		return -1;
	switch (s->p[s->i]) {
	case '{': *t = JS_OBJECT; return scan_container(s, '}');
	case '[': *t = JS_ARRAY; return scan_container(s, ']');
	case '"': *t = JS_STRING; return scan_string(s);
	case 't': *t = JS_TRUE; return literal(s, "true");
	case 'f': *t = JS_FALSE; return literal(s, "false");
	case 'n': *t = JS_NULL; return literal(s, "null");
	default: *t = JS_NUMBER; return scan_number(s);
	}
}

int jscan_doc(const char *p, size_t n, jspan *v)
{
	scanner s = {p, n, 0, 0};
	if (!utf8_is_valid(p, n))
		return -1;
	skip_ws(&s);
	size_t from = s.i;
	jstype t;
	if (scan_value(&s, &t) < 0)
		return -1;
	*v = (jspan){p + from, s.i - from, t};
	skip_ws(&s);
	return s.i == n ? 0 : -1;
}

/* ---- walking validated spans ---- */

static size_t skip_string(const char *p, size_t i)
{
	for (i++;; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
}

static jstype type_at(char c)
{
	switch (c) {
	case '{': return JS_OBJECT;
	case '[': return JS_ARRAY;
	case '"': return JS_STRING;
	case 't': return JS_TRUE;
	case 'f': return JS_FALSE;
	case 'n': return JS_NULL;
	default: return JS_NUMBER;
	}
}

/* The value starting at p[i] (no whitespace before it), within p[0..n). */
static size_t skip_value(const char *p, size_t n, size_t i)
{
	if (p[i] == '"')
		return skip_string(p, i);
	if (p[i] != '{' && p[i] != '[') {
		while (i < n && !strchr(",}] \t\n\r", p[i]))
			i++;
		return i;
	}
	int depth = 0;
	while (i < n) {
		char c = p[i];
		if (c == '"') {
			i = skip_string(p, i);
			continue;
		}
		i++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return i;
	}
	return i;
}

static size_t ws(const char *p, size_t n, size_t i)
{
	while (i < n && is_ws(p[i]))
		i++;
	return i;
}

/* The cursor is an offset into the container's span: 0 before its first
 * element, else just after the previous one (its separator not yet read). */
static int next_value(const jspan *c, size_t *it, jspan *v)
{
	const char *p = c->p;
	size_t n = c->n - 1; /* the closing bracket */
	size_t i = ws(p, n, *it ? *it : 1);
	if (i < n && p[i] == ',')
		i = ws(p, n, i + 1);
	if (i >= n)
		return 0;
	size_t end = skip_value(p, n, i);
	*v = (jspan){p + i, end - i, type_at(p[i])};
	*it = end;
	return 1;
}

int jscan_item(const jspan *a, size_t *it, jspan *v)
{
	return a->t == JS_ARRAY && next_value(a, it, v);
}

int jscan_member(const jspan *o, size_t *it, jspan *key, jspan *v)
{
	if (o->t != JS_OBJECT || !next_value(o, it, key))
		return 0;
	const char *p = o->p;
	size_t i = ws(p, o->n, *it);
	i = ws(p, o->n, i + 1); /* the colon */
	size_t end = skip_value(p, o->n - 1, i);
	*v = (jspan){p + i, end - i, type_at(p[i])};
	*it = end;
	return 1;
}

int jscan_key_is(const jspan *key, const char *name)
{
	size_t l = strlen(name);
	if (!memchr(key->p, '\\', key->n))
		return key->n == l + 2 && memcmp(key->p + 1, name, l) == 0;
	char dec[256];
	int dl = jscan_str(key, dec, sizeof(dec));
	return dl >= 0 && (size_t)dl == l && memcmp(dec, name, l) == 0;
}

int jscan_find(const jspan *o, const char *name, jspan *v)
{
	size_t it = 0;
	jspan k;
	while (jscan_member(o, &it, &k, v))
		if (jscan_key_is(&k, name))
			return 1;
	*v = (jspan){NULL, 0, JS_NONE};
	return 0;
}

size_t jscan_compact(const jspan *v, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < v->n;) {
		char c = v->p[i];
		if (c == '"') {
			size_t end = skip_string(v->p, i);
			memcpy(out + o, v->p + i, end - i);
			o += end - i;
			i = end;
		} else {
			if (!is_ws(c))
				out[o++] = c;
			i++;
		}
	}
	return o;
}

static int put_utf8(char *out, size_t cap, size_t *o, long c)
{
	unsigned char b[4];
	int k;
	if (c < 0x80) {
		b[0] = (unsigned char)c;
		k = 1;
	} else if (c < 0x800) {
		b[0] = (unsigned char)(0xC0 | (c >> 6));
		b[1] = (unsigned char)(0x80 | (c & 0x3F));
		k = 2;
	} else if (c < 0x10000) {
		b[0] = (unsigned char)(0xE0 | (c >> 12));
		b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
		b[2] = (unsigned char)(0x80 | (c & 0x3F));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xF0 | (c >> 18));
		b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
		b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
		b[3] = (unsigned char)(0x80 | (c & 0x3F));
		k = 4;
	}
	if (*o + (size_t)k >= cap)
		return -1;
	memcpy(out + *o, b, (size_t)k);
	*o += (size_t)k;
	return 0;
}

int jscan_str(const jspan *s, char *out, size_t cap)
{
	if (s->t != JS_STRING || cap == 0)
		return -1;
	size_t o = 0, end = s->n - 1;
	for (size_t i = 1; i < end;) {
		long c = (unsigned char)s->p[i];
		size_t used = 1;
		if (c == '\\') {
			char e = s->p[i + 1];
			used = 2;
			switch (e) {
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': c = u_escape(s->p + i, end - i, &used); break;
			default: c = (unsigned char)e; break;
			}
			if (c <= 0)
				return -1;
			if (put_utf8(out, cap, &o, c) < 0)
				return -1;
		} else {
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)c; /* raw bytes, multi-byte UTF-8 included */
		}
		i += used;
	}
	out[o] = '\0';
	return (int)o;
}
