#include "sio.h"

#include <stdint.h>
#include <string.h>

#include "common/json.h"

static int fail(const char **err, const char *why)
{
	if (err)
		*err = why;
	return -1;
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * The length of the well-formed UTF-8 sequence that starts at p[0] (a byte
 * >= 0x80) within n bytes, or 0. Overlong forms, UTF-16 surrogates and code
 * points above U+10FFFF are ill-formed (RFC 3629), as a WebSocket peer
 * would also have to reject them in a text frame.
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/*
 * JSON validation without a tree. sio_parse must know that the data is one
 * well-formed JSON value of the right kind, but building a cJSON tree for
 * that would allocate on every packet, including the ones we then refuse.
 * This scanner is iterative (an explicit stack of open containers, so a
 * deep input cannot exhaust the C stack) and linear in the input.
 *
 * It accepts a strict subset of what cJSON accepts, so that anything that
 * passes here parses there too (sio_parse_data relies on it): cJSON skips a
 * byte-order mark, takes control bytes as whitespace or inside strings,
 * decodes \u0000 into a truncated C string, takes numbers like "01" or
 * "+1", and stops reading a number after 63 characters.
 */
enum { JV_NONE, JV_OBJECT, JV_ARRAY, JV_STRING, JV_SCALAR };

static size_t skip_ws(const unsigned char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

static int hex4(const unsigned char *p, unsigned *v)
{
	*v = 0;
	for (int k = 0; k < 4; k++) {
		unsigned char c = p[k];
		unsigned d;
		if (is_digit(c))
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

/* Scans the \uXXXX escape (or surrogate pair) at p[*pos]. */
static int scan_u_escape(const unsigned char *p, size_t n, size_t *pos)
{
	size_t i = *pos;
	unsigned u, lo;
	if (n - i < 6 || hex4(p + i + 2, &u) < 0)
		return -1;
	i += 6;
	if (u == 0 || (u >= 0xdc00 && u <= 0xdfff))
		return -1;
	if (u >= 0xd800 && u <= 0xdbff) {
		if (n - i < 6 || p[i] != '\\' || p[i + 1] != 'u' || hex4(p + i + 2, &lo) < 0 ||
		    lo < 0xdc00 || lo > 0xdfff)
			return -1;
		i += 6;
	}
	*pos = i;
	return 0;
}

/*
 * Whether any of the 8 bytes at p needs a look of its own in a string: a
 * quote, a backslash, a control character or a byte of a multi-byte UTF-8
 * sequence. Tokens and ids are long runs of plain ASCII, which this skips a
 * word at a time (one byte at a time, they were 6 % of the connect path's
 * instructions). The tests can report a plain byte as special after a
 * special one (a borrow runs on), never the other way round.
 */
static int word_special(const unsigned char *p)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t w;
	memcpy(&w, p, 8);
	uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
	uint64_t flags =
	    ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | w;
	return (flags & highs) != 0;
}

/* Scans the string literal whose opening quote is at p[*pos]. */
static int scan_string(const unsigned char *p, size_t n, size_t *pos)
{
	size_t i = *pos + 1;
	while (i < n) {
		while (n - i >= 8 && !word_special(p + i))
			i += 8;
		if (i >= n)
			break;
		unsigned char c = p[i];
		if (c == '"') {
			*pos = i + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c >= 0x80) {
			size_t k = utf8_seq(p + i, n - i);
			if (k == 0)
				return -1;
			i += k;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= n)
			return -1;
		switch (p[i + 1]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't': i += 2; break;
		case 'u':
			if (scan_u_escape(p, n, &i) < 0)
				return -1;
			break;
		default: return -1;
		}
	}
	return -1;
}

static size_t skip_digits(const unsigned char *p, size_t n, size_t i)
{
	while (i < n && is_digit(p[i]))
		i++;
	return i;
}

/* Scans a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(const unsigned char *p, size_t n, size_t *pos)
{
	size_t i = *pos, start = *pos;
	if (i < n && p[i] == '-')
		i++;
	if (i >= n || !is_digit(p[i]))
		return -1;
	i = p[i] == '0' ? i + 1 : skip_digits(p, n, i);
	if (i < n && p[i] == '.') {
		if (++i >= n || !is_digit(p[i]))
			return -1;
		i = skip_digits(p, n, i);
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		if (++i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n || !is_digit(p[i]))
			return -1;
		i = skip_digits(p, n, i);
	}
	if (i - start > 63)
		return -1;
	*pos = i;
	return 0;
}

static int scan_literal(const unsigned char *p, size_t n, size_t *pos, const char *word)
{
	size_t len = strlen(word);
	if (n - *pos < len || memcmp(p + *pos, word, len) != 0)
		return -1;
	*pos += len;
	return 0;
}

/* Scans a string, number or literal at p[*pos] and reports its kind. */
static int scan_scalar(const unsigned char *p, size_t n, size_t *pos, int *kind)
{
	unsigned char c = p[*pos];
	*kind = JV_SCALAR;
	if (c == '"') {
		*kind = JV_STRING;
		return scan_string(p, n, pos);
	}
	if (c == '-' || is_digit(c))
		return scan_number(p, n, pos);
	if (c == 't')
		return scan_literal(p, n, pos, "true");
	if (c == 'f')
		return scan_literal(p, n, pos, "false");
	if (c == 'n')
		return scan_literal(p, n, pos, "null");
	return -1;
}

/* Scans `"key" :` (with whitespace around) at p[*pos]. */
static int scan_key(const unsigned char *p, size_t n, size_t *pos)
{
	size_t i = skip_ws(p, n, *pos);
	if (i >= n || p[i] != '"' || scan_string(p, n, &i) < 0)
		return -1;
	i = skip_ws(p, n, i);
	if (i >= n || p[i] != ':')
		return -1;
	*pos = i + 1;
	return 0;
}

/*
 * Validates s as one JSON text. On success *kind is the kind of the
 * top-level value and *first the kind of a top-level array's first element
 * (JV_NONE when there is none); when that element is a string, *first_tok is
 * its literal, quotes included.
 */
static int json_scan(slice s, uint32_t max_depth, int *kind, int *first, slice *first_tok,
                     const char **err)
{
	const unsigned char *p = (const unsigned char *)s.base;
	size_t n = s.len, i = 0, depth = 0;
	unsigned char open[SIO_MAX_DEPTH]; /* '{' or '[' per open container */
	*kind = *first = JV_NONE;
	for (;;) {
		/* A value starts here. */
		int k;
		i = skip_ws(p, n, i);
		if (i >= n)
			return fail(err, "truncated JSON");
		size_t at = depth, start = i;
		unsigned char c = p[i];
		if (c == '{' || c == '[') {
			if (depth >= max_depth)
				return fail(err, "JSON nested too deeply");
			open[depth++] = c;
			k = c == '{' ? JV_OBJECT : JV_ARRAY;
		} else if (scan_scalar(p, n, &i, &k) < 0) {
			return fail(err, "malformed JSON");
		}
		if (at == 0)
			*kind = k;
		else if (at == 1 && open[0] == '[' && *first == JV_NONE) {
			*first = k;
			*first_tok = slice_make(p + start, i - start);
		}
		if (k == JV_OBJECT || k == JV_ARRAY) {
			i = skip_ws(p, n, i + 1);
			if (i >= n || p[i] != (c == '{' ? '}' : ']')) {
				if (c == '{' && scan_key(p, n, &i) < 0)
					return fail(err, "malformed JSON object");
				continue;
			}
			depth--;
			i++;
		}
		/* After a value: close containers until the next member. */
		for (;;) {
			i = skip_ws(p, n, i);
			if (depth == 0)
				return i == n ? 0 : fail(err, "trailing bytes after JSON");
			if (i >= n)
				return fail(err, "truncated JSON");
			unsigned char top = open[depth - 1];
			if (p[i] == ',') {
				i++;
				if (top == '{' && scan_key(p, n, &i) < 0)
					return fail(err, "malformed JSON object");
				break;
			}
			if (p[i] != (top == '{' ? '}' : ']'))
				return fail(err, "malformed JSON");
			depth--;
			i++;
		}
	}
}

/*
 * Scans a decimal at p[*pos] as the header fields are written: digits only,
 * no sign, no leading zero unless the number is 0. Returns 0, -1 when there
 * is no such number, or -2 when it exceeds max (stopping there, so a
 * thousand-digit count costs nothing and cannot overflow).
 */
static int scan_decimal(const char *p, size_t n, size_t *pos, uint64_t max, uint64_t *v)
{
	size_t i = *pos;
	if (i >= n || !is_digit((unsigned char)p[i]))
		return -1;
	if (p[i] == '0' && i + 1 < n && is_digit((unsigned char)p[i + 1]))
		return -1;
	*v = 0;
	for (; i < n && is_digit((unsigned char)p[i]); i++) {
		*v = *v * 10 + (uint64_t)(p[i] - '0');
		if (*v > max)
			return -2;
	}
	*pos = i;
	return 0;
}

/* Scans "<nsp>[,]" at p[*pos] (a '/'), leaving nsp without the comma. */
static int scan_nsp(const char *p, size_t n, size_t *pos, slice *nsp, const char **err)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = *pos;
	while (i < n && u[i] != ',') {
		if (u[i] < 0x20 || u[i] == 0x7f)
			return fail(err, "control byte in namespace");
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(u + i, n - i);
		if (k == 0)
			return fail(err, "invalid UTF-8 in namespace");
		i += k;
	}
	/* socket.io-parser ends the namespace at ',' or at the end of the
	 * packet: "40/custom" (no comma, no payload) is how its own test suite
	 * connects. */
	*nsp = slice_make(p + *pos, i - *pos);
	*pos = i < n ? i + 1 : n;
	return 0;
}

/*
 * Whether the JSON string literal tok (validated, quotes included) decodes
 * to the ASCII word. Only \uXXXX escapes can stand for a letter or '_'; any
 * other escape decodes to a character no word contains.
 */
static int literal_is(slice tok, const char *word)
{
	const unsigned char *p = (const unsigned char *)tok.base + 1;
	size_t n = tok.len - 2, i = 0;
	for (; *word; word++) {
		if (i >= n)
			return 0;
		unsigned c = p[i++];
		if (c == '\\') {
			if (p[i] != 'u' || hex4(p + i + 1, &c) < 0)
				return 0;
			i += 5;
		}
		if (c != (unsigned char)*word)
			return 0;
	}
	return i == n;
}

/*
 * Event names socket.io-parser refuses in an EVENT, because its client and
 * server use them for their own lifecycle events.
 */
static int is_reserved_event(slice tok)
{
	static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
	                                       "disconnecting", "newListener",   "removeListener"};
	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
		if (literal_is(tok, reserved[i]))
			return 1;
	return 0;
}

/* Checks that the data's presence and JSON kind suit the packet type. */
static int check_data(const sio_packet *pkt, uint32_t max_depth, const char **err)
{
	int t = pkt->type, kind, first;
	slice name = SLICE_NULL;
	if (pkt->data.len == 0) {
		if (t == SIO_CONNECT || t == SIO_DISCONNECT)
			return 0;
		return fail(err, "missing payload");
	}
	if (t == SIO_DISCONNECT)
		return fail(err, "DISCONNECT carries no payload");
	if (json_scan(pkt->data, max_depth, &kind, &first, &name, err) < 0)
		return -1;
	switch (t) {
	case SIO_CONNECT:
		return kind == JV_OBJECT ? 0 : fail(err, "CONNECT payload is not an object");
	case SIO_CONNECT_ERROR:
		return kind == JV_OBJECT ? 0 : fail(err, "CONNECT_ERROR payload is not an object");
	case SIO_EVENT:
	case SIO_BINARY_EVENT:
		if (kind != JV_ARRAY || first != JV_STRING)
			return fail(err, "EVENT payload is not an array starting with a name");
		return is_reserved_event(name) ? fail(err, "reserved event name") : 0;
	default: return kind == JV_ARRAY ? 0 : fail(err, "ACK payload is not an array");
	}
}

int sio_parse(slice text, const sio_limits *lim, sio_packet *pkt, const char **err)
{
	uint64_t max_att = lim ? lim->max_attachments : SIO_DEFAULT_MAX_ATTACHMENTS;
	uint32_t max_depth = lim && lim->max_depth ? lim->max_depth : SIO_DEFAULT_MAX_DEPTH;
	if (max_att > SIO_MAX_ATTACHMENTS)
		max_att = SIO_MAX_ATTACHMENTS;
	if (max_depth > SIO_MAX_DEPTH)
		max_depth = SIO_MAX_DEPTH;

	const char *p = text.base;
	size_t n = text.len, i = 1;
	uint64_t v;
	if (n == 0)
		return fail(err, "empty packet");
	if (p[0] < '0' || p[0] > '6')
		return fail(err, "unknown packet type");
	pkt->type = p[0] - '0';
	pkt->nsp = SLICE_LIT("/");
	pkt->id = -1;
	pkt->attachments = 0;

	int t = pkt->type;
	if (t == SIO_BINARY_EVENT || t == SIO_BINARY_ACK) {
		int rc = scan_decimal(p, n, &i, max_att, &v);
		if (rc == -2)
			return fail(err, "too many attachments");
		if (rc < 0 || v == 0 || i >= n || p[i] != '-')
			return fail(err, "bad attachment count");
		pkt->attachments = (uint32_t)v;
		i++;
	}
	if (i < n && p[i] == '/' && scan_nsp(p, n, &i, &pkt->nsp, err) < 0)
		return -1;
	if (i < n && is_digit((unsigned char)p[i])) {
		if (scan_decimal(p, n, &i, (uint64_t)SIO_MAX_ACK_ID, &v) < 0)
			return fail(err, "bad ack id");
		if (t == SIO_CONNECT || t == SIO_DISCONNECT || t == SIO_CONNECT_ERROR)
			return fail(err, "ack id on a packet that takes none");
		pkt->id = (int64_t)v;
	}
	if ((t == SIO_ACK || t == SIO_BINARY_ACK) && pkt->id < 0)
		return fail(err, "ACK without an id");
	pkt->data = slice_make(p + i, n - i);
	return check_data(pkt, max_depth, err);
}

cJSON *sio_parse_data(const sio_packet *pkt)
{
	if (pkt->data.len == 0)
		return NULL;
	return json_parse(pkt->data.base, pkt->data.len);
}

/*
 * Placeholder checking. The bitmap of attachment numbers already seen lives
 * on the stack, which is why SIO_MAX_ATTACHMENTS is a hard ceiling.
 */
typedef struct ph_check {
	uint64_t seen[SIO_MAX_ATTACHMENTS / 64];
	uint32_t attachments;
	uint32_t found;
	const char **err;
} ph_check;

static int check_placeholder(const cJSON *obj, ph_check *st)
{
	const cJSON *flag = NULL, *num = NULL;
	int members = 0;
	for (const cJSON *c = obj->child; c; c = c->next) {
		members++;
		if (c->string && strcmp(c->string, "_placeholder") == 0 && !flag)
			flag = c;
		else if (c->string && strcmp(c->string, "num") == 0 && !num)
			num = c;
	}
	if (members != 2 || !flag || !num || !cJSON_IsTrue(flag) || !cJSON_IsNumber(num))
		return fail(st->err, "malformed attachment placeholder");
	double d = num->valuedouble;
	if (!(d >= 0 && d < (double)st->attachments))
		return fail(st->err, "placeholder num out of range");
	uint32_t k = (uint32_t)d;
	if ((double)k != d)
		return fail(st->err, "placeholder num is not an integer");
	if (st->seen[k / 64] & (UINT64_C(1) << (k % 64)))
		return fail(st->err, "placeholder num used twice");
	st->seen[k / 64] |= UINT64_C(1) << (k % 64);
	st->found++;
	return 0;
}

static int check_node(const cJSON *node, ph_check *st, int depth)
{
	if (depth > SIO_MAX_DEPTH)
		return fail(st->err, "JSON nested too deeply");
	if (cJSON_IsObject(node)) {
		for (const cJSON *c = node->child; c; c = c->next)
			if (c->string && strcmp(c->string, "_placeholder") == 0)
				return check_placeholder(node, st);
	} else if (!cJSON_IsArray(node)) {
		return 0;
	}
	for (const cJSON *c = node->child; c; c = c->next)
		if (check_node(c, st, depth + 1) < 0)
			return -1;
	return 0;
}

int sio_check_placeholders(const cJSON *data, uint32_t attachments, const char **err)
{
	ph_check st = {.attachments = attachments, .err = err};
	if (attachments > SIO_MAX_ATTACHMENTS)
		return fail(err, "too many attachments");
	if (data && check_node(data, &st, 0) < 0)
		return -1;
	if (st.found != attachments)
		return fail(err, "attachment not referenced by any placeholder");
	return 0;
}

/* Appends the header "<type>[<n>-][<nsp>,][<id>]" shared by all encoders. */
static int put_head(buf *out, int type, slice nsp, int64_t id, uint32_t attachments)
{
	int binary = type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
	if (type < SIO_CONNECT || type > SIO_BINARY_ACK || id < -1 || id > SIO_MAX_ACK_ID ||
	    (binary && attachments == 0))
		return -1;
	int root = nsp.len == 0 || (nsp.len == 1 && nsp.base[0] == '/');
	if (!root && (nsp.base[0] != '/' || memchr(nsp.base, ',', nsp.len)))
		return -1;
	if (buf_append_byte(out, (char)('0' + type)) < 0)
		return -1;
	if (binary && (buf_append_u64(out, attachments) < 0 || buf_append_byte(out, '-') < 0))
		return -1;
	if (!root && (buf_append_slice(out, nsp) < 0 || buf_append_byte(out, ',') < 0))
		return -1;
	if (id >= 0 && buf_append_u64(out, (uint64_t)id) < 0)
		return -1;
	return 0;
}

int sio_encode(buf *out, int type, slice nsp, int64_t id, uint32_t attachments, slice json)
{
	size_t mark = out->len;
	if (put_head(out, type, nsp, id, attachments) < 0 || buf_append_slice(out, json) < 0) {
		out->len = mark;
		return -1;
	}
	return 0;
}

/* Appends <type>[<nsp>,]{"<key>":<escaped value>}. */
static int put_object1(buf *out, int type, slice nsp, const char *key, slice value)
{
	size_t mark = out->len;
	if (put_head(out, type, nsp, -1, 0) < 0 || buf_append_cstr(out, key) < 0 ||
	    sio_json_escape(out, value) < 0 || buf_append_byte(out, '}') < 0) {
		out->len = mark;
		return -1;
	}
	return 0;
}

int sio_encode_connect_ok(buf *out, slice nsp, slice sid)
{
	return put_object1(out, SIO_CONNECT, nsp, "{\"sid\":", sid);
}

int sio_encode_connect_error(buf *out, slice nsp, const char *message)
{
	return put_object1(out, SIO_CONNECT_ERROR, nsp, "{\"message\":", slice_cstr(message));
}

/* Trims JSON whitespace from both ends of s. */
static slice trim_ws(slice s)
{
	const unsigned char *p = (const unsigned char *)s.base;
	size_t i = skip_ws(p, s.len, 0), j = s.len;
	while (j > i &&
	       (p[j - 1] == ' ' || p[j - 1] == '\t' || p[j - 1] == '\n' || p[j - 1] == '\r'))
		j--;
	return slice_make(s.base + i, j - i);
}

int sio_encode_event(buf *out, slice nsp, int64_t id, slice name, slice args_json_array)
{
	slice args = trim_ws(args_json_array);
	if (args.len) {
		if (args.len < 2 || args.base[0] != '[' || args.base[args.len - 1] != ']')
			return -1;
		args = trim_ws(slice_make(args.base + 1, args.len - 2));
	}
	size_t mark = out->len;
	if (put_head(out, SIO_EVENT, nsp, id, 0) < 0 || buf_append_byte(out, '[') < 0 ||
	    sio_json_escape(out, name) < 0 ||
	    (args.len && (buf_append_byte(out, ',') < 0 || buf_append_slice(out, args) < 0)) ||
	    buf_append_byte(out, ']') < 0) {
		out->len = mark;
		return -1;
	}
	return 0;
}

int sio_json_escape(buf *out, slice s)
{
	static const char hex[] = "0123456789abcdef";
	size_t mark = out->len, run = 0;
	if (buf_append_byte(out, '"') < 0)
		return -1;
	/* Copy unescaped runs in one append each; most strings are one run. */
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.base[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		char esc[6] = {'\\', 0, '0', '0', hex[c >> 4], hex[c & 15]};
		size_t esc_len = 2;
		switch (c) {
		case '"':
		case '\\': esc[1] = (char)c; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default: esc[1] = 'u'; esc_len = 6;
		}
		if ((i > run && buf_append(out, s.base + run, i - run) < 0) ||
		    buf_append(out, esc, esc_len) < 0)
			goto fail;
		run = i + 1;
	}
	if ((s.len > run && buf_append(out, s.base + run, s.len - run) < 0) ||
	    buf_append_byte(out, '"') < 0)
		goto fail;
	return 0;
fail:
	out->len = mark;
	return -1;
}
