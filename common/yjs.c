/*
 * yjs.c - Yjs update format v1 (see yjs.h for the format and the contract).
 *
 * An update is read in two passes. The first (scan) validates everything
 * and records, per input, its struct runs: maximal sequences of structs of
 * one client that are contiguous in clock and contain no Skip. A run is all
 * the merge needs to remember, since its structs can be decoded again from
 * its byte offset; this keeps memory to a few words per run however long
 * the strings and documents inside are. The second pass sorts the runs and
 * writes each client's clocks once, decoding the structs as it goes.
 *
 * Processing whole runs in (client descending, start clock ascending) order
 * is what Yjs's lazy merge does too: it picks the reader whose next struct
 * has the lowest clock and then writes from that reader for as long as its
 * structs stay contiguous. Doing it from one sorted list instead of
 * re-sorting k live readers at every step gives the same structs, except
 * where runs of different inputs start at the same clock: Yjs then takes
 * the one its previous sorts left first, we take the earlier input. Both
 * are right, since the copies describe the same clocks. The sorted list
 * also stays correct for inputs whose groups are not in descending client
 * order, which Yjs's merge mishandles (it drops or repeats clients).
 */
#include "yjs.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

/* Content refs, the low five bits of a struct's info byte. */
enum {
	REF_GC = 0,
	REF_DELETED = 1,
	REF_JSON = 2,
	REF_BINARY = 3,
	REF_STRING = 4,
	REF_EMBED = 5,
	REF_FORMAT = 6,
	REF_TYPE = 7,
	REF_ANY = 8,
	REF_DOC = 9,
	REF_SKIP = 10,
};

#define INFO_ORIGIN 0x80
#define INFO_RIGHT  0x40
#define INFO_SUB    0x20
#define INFO_REF    0x1f

/* Type refs of Type content that carry a name: XmlElement and XmlHook. */
#define TYPE_XML_ELEMENT 3
#define TYPE_XML_HOOK    5
#define TYPE_LAST        6

static const char E_TRUNC[] = "truncated";
static const char E_RANGE[] = "integer out of range";
static const char E_LONG[] = "over-long integer";
static const char E_UTF8[] = "invalid utf-8";
static const char E_REF[] = "unknown content ref";
static const char E_ANY[] = "unknown any type";
static const char E_TYPE[] = "unknown type ref";
static const char E_PARENT[] = "bad parent info";
static const char E_JSON[] = "invalid json";
static const char E_DEEP[] = "too deeply nested";
static const char E_EMPTY[] = "empty struct";
static const char E_CLOCK[] = "clock out of range";
static const char E_DUP[] = "duplicate client";
static const char E_TRAIL[] = "trailing bytes";
static const char E_NOMEM[] = "out of memory";

/* ------------------------------------------------------------ lib0 reader */

/* A cursor over borrowed bytes. The first failure is sticky in `err`; the
 * cursor position after a failure is meaningless. */
typedef struct rd {
	const uint8_t *p, *end;
	const char *err;
} rd;

static rd rd_of(slice s)
{
	return (rd){(const uint8_t *)s.base, (const uint8_t *)s.base + s.len, NULL};
}

static int rd_fail(rd *r, const char *why)
{
	if (!r->err)
		r->err = why;
	return -1;
}

static int rd_u8(rd *r, uint8_t *v)
{
	if (r->p == r->end)
		return rd_fail(r, E_TRUNC);
	*v = *r->p++;
	return 0;
}

static int rd_skip(rd *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return rd_fail(r, E_TRUNC);
	r->p += n;
	return 0;
}

/* lib0 accepts any number of bytes as long as the value stays below 2^53;
 * eight bytes carry 56 bits, so a ninth is only ever padding, and refusing
 * it bounds the work per integer. */
static int rd_uint(rd *r, uint64_t *v)
{
	uint64_t n = 0;
	for (unsigned shift = 0; shift < 56; shift += 7) {
		uint8_t b = 0;
		if (rd_u8(r, &b) < 0)
			return -1;
		n |= (uint64_t)(b & 0x7f) << shift;
		if (n > YJS_MAX_SAFE)
			return rd_fail(r, E_RANGE);
		if (!(b & 0x80)) {
			*v = n;
			return 0;
		}
	}
	return rd_fail(r, E_LONG);
}

static int rd_int(rd *r, int64_t *v)
{
	uint8_t b = 0;
	if (rd_u8(r, &b) < 0)
		return -1;
	int neg = b & 0x40;
	uint64_t n = b & 0x3f;
	for (unsigned shift = 6; b & 0x80; shift += 7) {
		if (shift >= 55)
			return rd_fail(r, E_LONG);
		if (rd_u8(r, &b) < 0)
			return -1;
		n |= (uint64_t)(b & 0x7f) << shift;
		if (n > YJS_MAX_SAFE)
			return rd_fail(r, E_RANGE);
	}
	*v = neg ? -(int64_t)n : (int64_t)n;
	return 0;
}

static int rd_bytes(rd *r, slice *s)
{
	uint64_t n;

	*s = SLICE_NULL;
	if (rd_uint(r, &n) < 0)
		return -1;
	if (n > (uint64_t)(r->end - r->p))
		return rd_fail(r, E_TRUNC);
	*s = slice_make(r->p, (size_t)n);
	r->p += n;
	return 0;
}

/* lib0 decodes strings with a fatal TextDecoder, so an update with bad
 * UTF-8 fails to load in every client; it also keeps string lengths in
 * UTF-16 units well defined. An encoded surrogate is bad UTF-8 too. */
static int rd_str(rd *r, slice *s)
{
	if (rd_bytes(r, s) < 0)
		return -1;
	if (!utf8_is_valid(s->base, s->len))
		return rd_fail(r, E_UTF8);
	return 0;
}

static int rd_id(rd *r, uint64_t *client, uint64_t *clock)
{
	return rd_uint(r, client) < 0 ? -1 : rd_uint(r, clock);
}

/* Every element consumes at least one byte, so loops over counts read from
 * the input end at the input's end, whatever the count claims. */
static int rd_any(rd *r, unsigned depth)
{
	uint8_t tag;
	uint64_t n;
	int64_t i;
	slice s;

	if (depth > YJS_MAX_DEPTH)
		return rd_fail(r, E_DEEP);
	if (rd_u8(r, &tag) < 0)
		return -1;
	switch (tag) {
	case 127: /* undefined */
	case 126: /* null */
	case 121: /* false */
	case 120: /* true */ return 0;
	case 125: return rd_int(r, &i);
	case 124: return rd_skip(r, 4);
	case 123: /* float64 */
	case 122: /* bigint64 */ return rd_skip(r, 8);
	case 119: return rd_str(r, &s);
	case 118:
		if (rd_uint(r, &n) < 0)
			return -1;
		for (; n > 0; n--)
			if (rd_str(r, &s) < 0 || rd_any(r, depth + 1) < 0)
				return -1;
		return 0;
	case 117:
		if (rd_uint(r, &n) < 0)
			return -1;
		for (; n > 0; n--)
			if (rd_any(r, depth + 1) < 0)
				return -1;
		return 0;
	case 116: return rd_bytes(r, &s);
	default: return rd_fail(r, E_ANY);
	}
}

/* ------------------------------------------------------------ JSON syntax */

/*
 * JSON, Embed and Format content is JSON text that every receiving client
 * runs through JSON.parse; one bad text would make the merged update - and
 * so the whole document - fail to load for everyone. This is a strict
 * RFC 8259 syntax check (what JSON.parse accepts), without building values.
 * The text is already known to be valid UTF-8.
 */
typedef struct js {
	const uint8_t *p, *end;
} js;

static void js_ws(js *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int js_lit(js *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return -1;
	j->p += n;
	return 0;
}

static int js_digits(js *j)
{
	const uint8_t *start = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > start ? 0 : -1;
}

static int js_number(js *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (js_digits(j) < 0)
		return -1;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (js_digits(j) < 0)
			return -1;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (js_digits(j) < 0)
			return -1;
	}
	return 0;
}

static int is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* At the opening quote. Lone surrogate escapes are accepted: JSON.parse
 * accepts them too. */
static int js_string(js *j)
{
	j->p++;
	while (j->p < j->end) {
		uint8_t c = *j->p++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c != '\\')
			continue;
		if (j->p == j->end)
			return -1;
		c = *j->p++;
		if (c == 'u') {
			if (j->end - j->p < 4)
				return -1;
			for (int k = 0; k < 4; k++)
				if (!is_hex(*j->p++))
					return -1;
		} else if (!strchr("\"\\/bfnrt", c) || c == 0) {
			return -1;
		}
	}
	return -1;
}

static int js_value(js *j, unsigned depth);

/* At '[' or '{': comma-separated values (objects: "key": value pairs). */
static int js_container(js *j, unsigned depth)
{
	uint8_t close = *j->p == '[' ? ']' : '}';
	j->p++;
	js_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (j->p == j->end || *j->p != '"' || js_string(j) < 0)
				return -1;
			js_ws(j);
			if (j->p == j->end || *j->p++ != ':')
				return -1;
			js_ws(j);
		}
		if (js_value(j, depth + 1) < 0)
			return -1;
		js_ws(j);
		if (j->p == j->end)
			return -1;
		uint8_t c = *j->p++;
		if (c == close)
			return 0;
		if (c != ',')
			return -1;
		js_ws(j);
	}
}

static int js_value(js *j, unsigned depth)
{
	if (depth > YJS_MAX_DEPTH || j->p == j->end)
		return -1;
	switch (*j->p) {
	case '{':
	case '[': return js_container(j, depth);
	case '"': return js_string(j);
	case 't': return js_lit(j, "true");
	case 'f': return js_lit(j, "false");
	case 'n': return js_lit(j, "null");
	default: return js_number(j);
	}
}

static int json_valid(slice s)
{
	js j = {(const uint8_t *)s.base, (const uint8_t *)s.base + s.len};
	js_ws(&j);
	if (js_value(&j, 0) < 0)
		return 0;
	js_ws(&j);
	return j.p == j.end;
}

static int rd_json(rd *r)
{
	slice s;
	if (rd_str(r, &s) < 0)
		return -1;
	return json_valid(s) ? 0 : rd_fail(r, E_JSON);
}

/* ------------------------------------------------------------ structs */

/* Yjs counts string lengths in UTF-16 code units: one per code point, two
 * for those beyond the BMP (the four-byte UTF-8 sequences). */
static uint64_t utf16_len(slice s)
{
	uint64_t n = 0;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = (uint8_t)s.base[i];
		n += (c & 0xc0) != 0x80;
		n += c >= 0xf0;
	}
	return n;
}

/* Reads an Item's content, validating it, and returns its length in clocks. */
static int rd_content(rd *r, unsigned ref, uint64_t *len)
{
	uint64_t n;
	slice s;

	*len = 1;
	switch (ref) {
	case REF_DELETED: return rd_uint(r, len);
	case REF_JSON:
		if (rd_uint(r, len) < 0)
			return -1;
		for (n = *len; n > 0; n--) {
			if (rd_str(r, &s) < 0)
				return -1;
			if (!slice_eq_cstr(s, "undefined") && !json_valid(s))
				return rd_fail(r, E_JSON);
		}
		return 0;
	case REF_BINARY: return rd_bytes(r, &s);
	case REF_STRING:
		if (rd_str(r, &s) < 0)
			return -1;
		*len = utf16_len(s);
		return 0;
	case REF_EMBED: return rd_json(r);
	case REF_FORMAT: return rd_str(r, &s) < 0 ? -1 : rd_json(r);
	case REF_TYPE:
		if (rd_uint(r, &n) < 0)
			return -1;
		if (n > TYPE_LAST)
			return rd_fail(r, E_TYPE);
		return n == TYPE_XML_ELEMENT || n == TYPE_XML_HOOK ? rd_str(r, &s) : 0;
	case REF_ANY:
		if (rd_uint(r, len) < 0)
			return -1;
		for (n = *len; n > 0; n--)
			if (rd_any(r, 0) < 0)
				return -1;
		return 0;
	case REF_DOC: return rd_str(r, &s) < 0 ? -1 : rd_any(r, 0);
	default: return rd_fail(r, E_REF);
	}
}

/* One decoded struct. Item fields are valid as `info` says; `content` is
 * the raw content bytes, copied as they are unless the struct is sliced. */
typedef struct ystruct {
	uint64_t client, clock, len;
	uint8_t info, ref;
	uint64_t origin[2], right[2];
	uint64_t parent_info; /* 1: root type named parent_key; 0: parent_id */
	uint64_t parent_id[2];
	slice parent_key, parent_sub, content;
} ystruct;

static int is_skip(const ystruct *s)
{
	return s->info == REF_SKIP;
}

/* Yjs reads any info byte whose low bits are 0 as a GC, whatever the flag
 * bits say, and only the exact byte 10 as a Skip; a 10 with flags would be
 * an Item with no content reader, which rd_content refuses. */
static int rd_struct(rd *r, uint64_t client, uint64_t clock, ystruct *s)
{
	memset(s, 0, sizeof(*s));
	s->client = client;
	s->clock = clock;
	if (rd_u8(r, &s->info) < 0)
		return -1;
	s->ref = s->info & INFO_REF;
	if (s->ref == REF_GC || is_skip(s)) {
		if (rd_uint(r, &s->len) < 0)
			return -1;
	} else {
		if ((s->info & INFO_ORIGIN) && rd_id(r, &s->origin[0], &s->origin[1]) < 0)
			return -1;
		if ((s->info & INFO_RIGHT) && rd_id(r, &s->right[0], &s->right[1]) < 0)
			return -1;
		if (!(s->info & (INFO_ORIGIN | INFO_RIGHT))) {
			if (rd_uint(r, &s->parent_info) < 0)
				return -1;
			if (s->parent_info > 1)
				return rd_fail(r, E_PARENT);
			if (s->parent_info ? rd_str(r, &s->parent_key) < 0
			                   : rd_id(r, &s->parent_id[0], &s->parent_id[1]) < 0)
				return -1;
			if ((s->info & INFO_SUB) && rd_str(r, &s->parent_sub) < 0)
				return -1;
		}
		const uint8_t *at = r->p;
		if (rd_content(r, s->ref, &s->len) < 0)
			return -1;
		s->content = slice_make(at, (size_t)(r->p - at));
	}
	if (s->len == 0)
		return rd_fail(r, E_EMPTY);
	if (s->len > YJS_MAX_SAFE - clock)
		return rd_fail(r, E_CLOCK);
	return 0;
}

/* ------------------------------------------------------------ scan */

typedef struct yrun {
	uint64_t client, start, end;
	size_t upd, off; /* input index; offset of the first struct in it */
	size_t seq;      /* position among all runs, for a stable order */
} yrun;

typedef struct ydel {
	uint64_t client, clock, len;
} ydel;

/* What the first pass collects over all inputs. `clients` is scratch for
 * the duplicate-group check of the update being read. */
typedef struct scan {
	yrun *runs;
	size_t nruns, cap_runs;
	ydel *dels;
	size_t ndels, cap_dels;
	uint64_t *clients;
	size_t nclients, cap_clients;
} scan;

/* Returns arr with room for element n (of `size` bytes), growing it by
 * doubling; NULL when memory is exhausted (arr is still valid then). */
static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return arr;
	size_t ncap = *cap ? *cap * 2 : 16;
	if (ncap < *cap || ncap > SIZE_MAX / size)
		return NULL;
	void *p = realloc(arr, ncap * size);
	if (p)
		*cap = ncap;
	return p;
}

static void scan_dispose(scan *sc)
{
	free(sc->runs);
	free(sc->dels);
	free(sc->clients);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Reads one group's structs, extending the last run or starting new ones. */
static int scan_group(rd *r, const uint8_t *base, size_t upd, scan *sc)
{
	uint64_t count, client, clock;
	int in_run = 0;

	if (rd_uint(r, &count) < 0 || rd_uint(r, &client) < 0 || rd_uint(r, &clock) < 0)
		return -1;
	uint64_t *clients = grow(sc->clients, &sc->cap_clients, sc->nclients, sizeof(*clients));
	if (!clients)
		return rd_fail(r, E_NOMEM);
	sc->clients = clients;
	sc->clients[sc->nclients++] = client;
	for (; count > 0; count--) {
		size_t off = (size_t)(r->p - base);
		ystruct s;
		if (rd_struct(r, client, clock, &s) < 0)
			return -1;
		if (is_skip(&s)) {
			in_run = 0;
		} else if (in_run) {
			sc->runs[sc->nruns - 1].end = clock + s.len;
		} else {
			yrun *runs = grow(sc->runs, &sc->cap_runs, sc->nruns, sizeof(*runs));
			if (!runs)
				return rd_fail(r, E_NOMEM);
			sc->runs = runs;
			sc->runs[sc->nruns] =
			    (yrun){client, clock, clock + s.len, upd, off, sc->nruns};
			sc->nruns++;
			in_run = 1;
		}
		clock += s.len;
	}
	return 0;
}

static int scan_delete_set(rd *r, scan *sc)
{
	uint64_t nclients, client, count, clock, len;

	if (rd_uint(r, &nclients) < 0)
		return -1;
	for (; nclients > 0; nclients--) {
		if (rd_uint(r, &client) < 0 || rd_uint(r, &count) < 0)
			return -1;
		for (; count > 0; count--) {
			if (rd_uint(r, &clock) < 0 || rd_uint(r, &len) < 0)
				return -1;
			if (len > YJS_MAX_SAFE - clock)
				return rd_fail(r, E_CLOCK);
			ydel *dels = grow(sc->dels, &sc->cap_dels, sc->ndels, sizeof(*dels));
			if (!dels)
				return rd_fail(r, E_NOMEM);
			sc->dels = dels;
			sc->dels[sc->ndels++] = (ydel){client, clock, len};
		}
	}
	return 0;
}

/* Validates update `upd` and appends its runs and delete ranges to *sc. */
static int scan_update(slice u, size_t upd, scan *sc, const char **err)
{
	rd r = rd_of(u);
	uint64_t ngroups;

	sc->nclients = 0;
	if (rd_uint(&r, &ngroups) < 0)
		goto fail;
	for (; ngroups > 0; ngroups--)
		if (scan_group(&r, (const uint8_t *)u.base, upd, sc) < 0)
			goto fail;
	if (scan_delete_set(&r, sc) < 0)
		goto fail;
	if (r.p != r.end) {
		rd_fail(&r, E_TRAIL);
		goto fail;
	}
	if (sc->nclients > 1)
		qsort(sc->clients, sc->nclients, sizeof(uint64_t), cmp_u64);
	for (size_t i = 1; i < sc->nclients; i++) {
		if (sc->clients[i] == sc->clients[i - 1]) {
			rd_fail(&r, E_DUP);
			goto fail;
		}
	}
	return 0;
fail:
	if (err)
		*err = r.err;
	return -1;
}

/* ------------------------------------------------------------ writing */

static int put_id(buf *b, uint64_t client, uint64_t clock)
{
	return yjs_write_varuint(b, client) < 0 ? -1 : yjs_write_varuint(b, clock);
}

/* JSON (`any` 0: var-strings) or Any (`any` 1) content without its first
 * n elements: the count left, then the remaining elements' bytes as they are. */
static int put_elements_after(buf *b, slice content, uint64_t n, int any)
{
	rd r = rd_of(content);
	uint64_t count;
	slice s;

	if (rd_uint(&r, &count) < 0 || n > count)
		return -1;
	for (uint64_t i = 0; i < n; i++)
		if (any ? rd_any(&r, 0) < 0 : rd_str(&r, &s) < 0)
			return -1;
	if (yjs_write_varuint(b, count - n) < 0)
		return -1;
	return buf_append(b, r.p, (size_t)(r.end - r.p));
}

/* The string after its first n UTF-16 code units. A cut between the halves
 * of a surrogate pair keeps the length right by putting U+FFFD where the
 * low surrogate was, as Yjs's ContentString.splice does. */
static int put_string_after(buf *b, slice content, uint64_t n)
{
	rd r = rd_of(content);
	slice s;
	size_t i = 0;
	uint64_t units = 0;

	if (rd_str(&r, &s) < 0)
		return -1;
	const uint8_t *p = (const uint8_t *)s.base;
	while (units < n && i < s.len) {
		if (p[i] >= 0xf0) {
			if (units + 1 == n) {
				static const char fffd[] = "\xef\xbf\xbd";
				size_t rest = s.len - i - 4;
				if (yjs_write_varuint(b, rest + 3) < 0 ||
				    buf_append(b, fffd, 3) < 0)
					return -1;
				return buf_append(b, p + i + 4, rest);
			}
			units += 2;
			i += 4;
		} else {
			units++;
			i += p[i] < 0x80 ? 1 : p[i] < 0xe0 ? 2 : 3;
		}
	}
	return yjs_write_varbytes(b, slice_make(p + i, s.len - i));
}

/* The content of s without its first `diff` clocks. Only contents longer
 * than one clock can be cut, so the others never get here. */
static int put_content_after(buf *b, const ystruct *s, uint64_t diff)
{
	if (diff == 0)
		return buf_append_slice(b, s->content);
	switch (s->ref) {
	case REF_DELETED: return yjs_write_varuint(b, s->len - diff);
	case REF_JSON: return put_elements_after(b, s->content, diff, 0);
	case REF_ANY: return put_elements_after(b, s->content, diff, 1);
	case REF_STRING: return put_string_after(b, s->content, diff);
	default: return -1;
	}
}

/*
 * Writes Item s without its first `diff` clocks. The info byte is rebuilt
 * as Yjs writes it: a cut Item gets an origin, and an Item that has an
 * origin (or a right origin) writes no parent, so its parentSub is not
 * written either. Yjs keeps the parentSub flag of a cut Item that had a
 * parent (its in-memory parentSub survives the cut) while Items read with
 * an origin never have one; the flag is mirrored here for byte-identical
 * output, and readers ignore it whenever an origin is present.
 */
static int put_item(buf *b, const ystruct *s, uint64_t diff)
{
	int had_origins = (s->info & (INFO_ORIGIN | INFO_RIGHT)) != 0;
	int origin = diff > 0 || (s->info & INFO_ORIGIN);
	uint8_t info = s->ref;

	if (origin)
		info |= INFO_ORIGIN;
	info |= s->info & INFO_RIGHT;
	if (!had_origins)
		info |= s->info & INFO_SUB;
	if (buf_append_byte(b, (char)info) < 0)
		return -1;
	if (diff > 0 && put_id(b, s->client, s->clock + diff - 1) < 0)
		return -1;
	if (diff == 0 && origin && put_id(b, s->origin[0], s->origin[1]) < 0)
		return -1;
	if ((s->info & INFO_RIGHT) && put_id(b, s->right[0], s->right[1]) < 0)
		return -1;
	if (!origin && !(s->info & INFO_RIGHT)) {
		if (yjs_write_varuint(b, s->parent_info) < 0)
			return -1;
		if (s->parent_info ? yjs_write_varbytes(b, s->parent_key) < 0
		                   : put_id(b, s->parent_id[0], s->parent_id[1]) < 0)
			return -1;
		if ((s->info & INFO_SUB) && yjs_write_varbytes(b, s->parent_sub) < 0)
			return -1;
	}
	return put_content_after(b, s, diff);
}

/* The merge's output state: one client group at a time goes into `grp`,
 * finished groups into `body`. A GC is held back in `gc_len` because the
 * next run may extend it. */
typedef struct wr {
	buf body, grp;
	uint64_t ngroups;
	uint64_t client, start, end, nstructs;
	int open;        /* a group is being written; start/end are valid */
	uint64_t gc_len; /* a pending GC ending at `end`, 0 when none */
} wr;

static int wr_put_len(wr *w, uint8_t info, uint64_t len)
{
	w->nstructs++;
	return buf_append_byte(&w->grp, (char)info) < 0 ? -1 : yjs_write_varuint(&w->grp, len);
}

static int wr_flush_gc(wr *w)
{
	uint64_t len = w->gc_len;
	w->gc_len = 0;
	return len ? wr_put_len(w, REF_GC, len) : 0;
}

static int wr_end_group(wr *w)
{
	if (!w->open)
		return 0;
	w->open = 0;
	if (wr_flush_gc(w) < 0)
		return -1;
	w->ngroups++;
	if (yjs_write_varuint(&w->body, w->nstructs) < 0 ||
	    put_id(&w->body, w->client, w->start) < 0)
		return -1;
	if (buf_append_slice(&w->body, buf_slice(&w->grp)) < 0)
		return -1;
	buf_reset(&w->grp);
	return 0;
}

/*
 * Writes what run `run` of update `u` adds beyond w->end. Structs it has
 * in common with what was written are skipped, the first one that reaches
 * past w->end is cut there, and a gap before it becomes a Skip. Like Yjs,
 * only the first struct written from a run may be joined to a pending GC.
 */
static int wr_run(wr *w, slice u, const yrun *run)
{
	rd r = rd_of(u);
	uint64_t clock = run->start;
	int started = 0;

	r.p += run->off;
	while (clock < run->end) {
		ystruct s;
		if (rd_struct(&r, run->client, clock, &s) < 0 || is_skip(&s))
			return -1; /* cannot happen: scanned before */
		uint64_t end = clock + s.len, diff = 0;
		int joinable = !started;
		if (w->open && end <= w->end) {
			clock = end;
			continue;
		}
		if (!w->open) {
			w->open = 1;
			w->start = clock;
		} else if (clock > w->end) {
			if (wr_flush_gc(w) < 0 || wr_put_len(w, REF_SKIP, clock - w->end) < 0)
				return -1;
			joinable = 0;
		} else {
			diff = w->end - clock;
		}
		if (s.ref == REF_GC && joinable && w->gc_len) {
			w->gc_len += s.len - diff;
		} else if (wr_flush_gc(w) < 0) {
			return -1;
		} else if (s.ref == REF_GC) {
			w->gc_len = s.len - diff;
		} else {
			w->nstructs++;
			if (put_item(&w->grp, &s, diff) < 0)
				return -1;
		}
		w->end = end;
		started = 1;
		clock = end;
	}
	return 0;
}

/* Highest client first, then by clock, then in input order. */
static int cmp_run(const void *a, const void *b)
{
	const yrun *x = a, *y = b;
	if (x->client != y->client)
		return x->client > y->client ? -1 : 1;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_del(const void *a, const void *b)
{
	const ydel *x = a, *y = b;
	if (x->client != y->client)
		return x->client > y->client ? -1 : 1;
	return (x->clock > y->clock) - (x->clock < y->clock);
}

/* Sorts and coalesces the delete ranges in place, as Yjs's
 * sortAndMergeDeleteSet does (ranges that touch are joined), and writes them. */
static int put_delete_set(buf *b, ydel *d, size_t n)
{
	size_t m = 0, nclients = 0;

	if (n > 1)
		qsort(d, n, sizeof(*d), cmp_del);
	for (size_t i = 0; i < n; i++) {
		ydel *left = m ? &d[m - 1] : NULL;
		if (left && left->client == d[i].client && left->clock + left->len >= d[i].clock) {
			uint64_t end = d[i].clock + d[i].len;
			if (end > left->clock + left->len)
				left->len = end - left->clock;
			continue;
		}
		nclients += !left || left->client != d[i].client;
		d[m++] = d[i];
	}
	if (yjs_write_varuint(b, nclients) < 0)
		return -1;
	for (size_t i = 0; i < m;) {
		size_t j = i;
		while (j < m && d[j].client == d[i].client)
			j++;
		if (yjs_write_varuint(b, d[i].client) < 0 || yjs_write_varuint(b, j - i) < 0)
			return -1;
		for (; i < j; i++)
			if (put_id(b, d[i].clock, d[i].len) < 0)
				return -1;
	}
	return 0;
}

static int write_merged(const slice *updates, scan *sc, buf *out)
{
	wr w;
	int rc = -1;

	memset(&w, 0, sizeof(w));
	buf_init(&w.body, out->limit);
	buf_init(&w.grp, out->limit);
	if (sc->nruns > 1)
		qsort(sc->runs, sc->nruns, sizeof(yrun), cmp_run);
	for (size_t i = 0; i < sc->nruns; i++) {
		const yrun *run = &sc->runs[i];
		if (w.open && run->client != w.client && wr_end_group(&w) < 0)
			goto done;
		if (!w.open) {
			w.client = run->client;
			w.nstructs = 0;
		}
		if (wr_run(&w, updates[run->upd], run) < 0)
			goto done;
	}
	if (wr_end_group(&w) < 0 || yjs_write_varuint(out, w.ngroups) < 0 ||
	    buf_append_slice(out, buf_slice(&w.body)) < 0 ||
	    put_delete_set(out, sc->dels, sc->ndels) < 0)
		goto done;
	rc = 0;
done:
	buf_dispose(&w.body);
	buf_dispose(&w.grp);
	return rc;
}

/* ------------------------------------------------------------ public */

static int set_err(const char **err, const char *why)
{
	if (err)
		*err = why;
	return -1;
}

int yjs_read_varuint(slice *in, uint64_t *v, const char **err)
{
	rd r = rd_of(*in);
	if (rd_uint(&r, v) < 0)
		return set_err(err, r.err);
	*in = slice_make(r.p, (size_t)(r.end - r.p));
	return 0;
}

int yjs_read_varint(slice *in, int64_t *v, const char **err)
{
	rd r = rd_of(*in);
	if (rd_int(&r, v) < 0)
		return set_err(err, r.err);
	*in = slice_make(r.p, (size_t)(r.end - r.p));
	return 0;
}

int yjs_read_varbytes(slice *in, slice *out, const char **err)
{
	rd r = rd_of(*in);
	if (rd_bytes(&r, out) < 0)
		return set_err(err, r.err);
	*in = slice_make(r.p, (size_t)(r.end - r.p));
	return 0;
}

int yjs_read_varstring(slice *in, slice *out, const char **err)
{
	rd r = rd_of(*in);
	if (rd_str(&r, out) < 0)
		return set_err(err, r.err);
	*in = slice_make(r.p, (size_t)(r.end - r.p));
	return 0;
}

int yjs_read_any(slice *in, slice *out, const char **err)
{
	rd r = rd_of(*in);
	if (rd_any(&r, 0) < 0)
		return set_err(err, r.err);
	*out = slice_make(in->base, (size_t)((const char *)r.p - in->base));
	*in = slice_make(r.p, (size_t)(r.end - r.p));
	return 0;
}

int yjs_write_varuint(buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	while (v > 0x7f) {
		tmp[n++] = (uint8_t)(0x80 | (v & 0x7f));
		v >>= 7;
	}
	tmp[n++] = (uint8_t)v;
	return buf_append(b, tmp, n);
}

int yjs_write_varint(buf *b, int64_t v)
{
	uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	uint8_t tmp[10];
	size_t n = 0;
	tmp[n++] = (uint8_t)((m > 0x3f ? 0x80 : 0) | (v < 0 ? 0x40 : 0) | (m & 0x3f));
	m >>= 6;
	while (m > 0) {
		tmp[n++] = (uint8_t)((m > 0x7f ? 0x80 : 0) | (m & 0x7f));
		m >>= 7;
	}
	return buf_append(b, tmp, n);
}

int yjs_write_varbytes(buf *b, slice s)
{
	size_t mark = b->len;
	if (yjs_write_varuint(b, s.len) < 0 || buf_append_slice(b, s) < 0) {
		b->len = mark;
		return -1;
	}
	return 0;
}

int yjs_valid(slice update, const char **err)
{
	scan sc;
	memset(&sc, 0, sizeof(sc));
	int rc = scan_update(update, 0, &sc, err);
	scan_dispose(&sc);
	return rc;
}

/* Runs never contain a Skip and a run at clock 0 is the first of its
 * group, so it ends exactly where the update's contiguous state does. */
int yjs_state_vector(slice update, buf *out, const char **err)
{
	scan sc;
	size_t mark = out->len, n = 0;
	int rc = -1;

	memset(&sc, 0, sizeof(sc));
	if (scan_update(update, 0, &sc, err) < 0)
		goto done;
	for (size_t i = 0; i < sc.nruns; i++)
		n += sc.runs[i].start == 0;
	if (yjs_write_varuint(out, n) < 0)
		goto nomem;
	for (size_t i = 0; i < sc.nruns; i++)
		if (sc.runs[i].start == 0 && put_id(out, sc.runs[i].client, sc.runs[i].end) < 0)
			goto nomem;
	rc = 0;
	goto done;
nomem:
	set_err(err, E_NOMEM);
	out->len = mark;
done:
	scan_dispose(&sc);
	return rc;
}

int yjs_merge(const slice *updates, size_t n, buf *out, const char **err)
{
	scan sc;
	size_t mark = out->len;
	int rc = -1;

	memset(&sc, 0, sizeof(sc));
	for (size_t i = 0; i < n; i++)
		if (scan_update(updates[i], i, &sc, err) < 0)
			goto done;
	if (n == 1)
		rc = buf_append_slice(out, updates[0]);
	else
		rc = write_merged(updates, &sc, out);
	if (rc < 0) {
		set_err(err, E_NOMEM);
		out->len = mark;
	}
done:
	scan_dispose(&sc);
	return rc;
}
