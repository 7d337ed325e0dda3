/*
 * json.c - number-preserving parse and print around cJSON (json.h).
 *
 * cJSON builds the tree; a second pass over the text then finds the number
 * tokens in document order (skipping strings), which is the order of a
 * pre-order walk of the tree (cJSON keeps members and items in source
 * order, duplicates included), and hangs each token's text on its node.
 */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static size_t skip_ws(const char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/* The next number token at or after *pos, skipping strings; 0 when none. */
static int next_number(const char *p, size_t n, size_t *pos, size_t *start, size_t *len)
{
	size_t i = *pos;
	while (i < n) {
		char c = p[i];
		if (c == '"') {
			for (i++; i < n && p[i] != '"'; i++)
				if (p[i] == '\\')
					i++;
			i++;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t s = i;
			while (i < n && (strchr("+-.eE", p[i]) || (p[i] >= '0' && p[i] <= '9')))
				i++;
			*start = s;
			*len = i - s;
			*pos = i;
			return 1;
		} else {
			i++;
		}
	}
	*pos = n;
	return 0;
}

typedef struct scan {
	const char *p;
	size_t n, pos;
	int ok;
} scan;

static void attach(cJSON *item, scan *sc)
{
	for (; item && sc->ok; item = item->next) {
		if (cJSON_IsNumber(item)) {
			size_t s, l;
			if (!next_number(sc->p, sc->n, &sc->pos, &s, &l)) {
				sc->ok = 0;
				return;
			}
			item->valuestring = malloc(l + 1);
			if (!item->valuestring) {
				sc->ok = 0;
				return;
			}
			memcpy(item->valuestring, sc->p + s, l);
			item->valuestring[l] = '\0';
		} else if (item->child) {
			attach(item->child, sc);
		}
	}
}

/* Drops recorded texts (a walk that lost step must not leave wrong ones). */
static void detach(cJSON *item)
{
	for (; item; item = item->next) {
		if (cJSON_IsNumber(item)) {
			free(item->valuestring);
			item->valuestring = NULL;
		} else if (item->child) {
			detach(item->child);
		}
	}
}

cJSON *json_parse(const char *text, size_t len)
{
	const char *end = NULL;
	cJSON *tree = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!tree)
		return NULL;
	if (skip_ws(text, len, (size_t)(end - text)) != len) {
		cJSON_Delete(tree);
		return NULL;
	}
	scan sc = {text, (size_t)(end - text), 0, 1};
	attach(tree, &sc);
	if (!sc.ok)
		detach(tree);
	return tree;
}

/* ---- printing ---- */

typedef struct out {
	buf *b;
	int failed; /* an append ran out of memory: the text has a hole */
} out;

static void app(out *o, const void *p, size_t n)
{
	if (buf_append(o->b, p, n) < 0)
		o->failed = 1;
}

static void put_number(out *o, const cJSON *item)
{
	if (item->valuestring) {
		app(o, item->valuestring, strlen(item->valuestring));
		return;
	}
	double d = item->valuedouble;
	char tmp[32];
	int n;
	if (!isfinite(d))
		n = snprintf(tmp, sizeof(tmp), "null");
	else if (d == floor(d) && fabs(d) < 9007199254740992.0)
		n = snprintf(tmp, sizeof(tmp), "%.0f", d);
	else {
		n = snprintf(tmp, sizeof(tmp), "%.15g", d);
		if (strtod(tmp, NULL) != d)
			n = snprintf(tmp, sizeof(tmp), "%.17g", d);
	}
	app(o, tmp, (size_t)n);
}

static void put_string(out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	app(o, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		app(o, run, (size_t)(s - run));
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t el = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			el = 6;
		}
		app(o, esc, el);
		run = s + 1;
	}
	app(o, run, (size_t)(s - run));
	app(o, "\"", 1);
}

static void put(out *o, const cJSON *item)
{
	switch (item->type & 0xff) {
	case cJSON_False: app(o, "false", 5); break;
	case cJSON_True: app(o, "true", 4); break;
	case cJSON_NULL: app(o, "null", 4); break;
	case cJSON_Number: put_number(o, item); break;
	case cJSON_String: put_string(o, item->valuestring ? item->valuestring : ""); break;
	case cJSON_Raw:
		if (item->valuestring)
			app(o, item->valuestring, strlen(item->valuestring));
		else
			app(o, "null", 4);
		break;
	case cJSON_Array:
	case cJSON_Object: {
		int obj = cJSON_IsObject(item);
		app(o, obj ? "{" : "[", 1);
		for (const cJSON *c = item->child; c; c = c->next) {
			if (c != item->child)
				app(o, ",", 1);
			if (obj) {
				put_string(o, c->string ? c->string : "");
				app(o, ":", 1);
			}
			put(o, c);
		}
		app(o, obj ? "}" : "]", 1);
		break;
	}
	default: app(o, "null", 4); /* cJSON_Invalid */
	}
}

int json_append(buf *b, const cJSON *item)
{
	size_t len = b->len;
	out o = {.b = b, .failed = 0};
	if (item)
		put(&o, item);
	else
		app(&o, "null", 4);
	if (o.failed)
		b->len = len; /* nothing half-written stays */
	return o.failed ? -1 : 0;
}

char *json_print(const cJSON *item)
{
	buf b;
	buf_init(&b, 0);
	/* The buffer's block is the string: no copy. */
	if (json_append(&b, item) < 0 || buf_append_byte(&b, '\0') < 0) {
		buf_dispose(&b);
		return NULL;
	}
	return b.data;
}
