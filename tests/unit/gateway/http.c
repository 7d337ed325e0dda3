/*
 * Tests gateway/http.c. Every vector is parsed whole, at every split point
 * and grown byte by byte, each time from a copy that ends at a PROT_NONE
 * page, so an over-read crashes instead of passing.
 */
#include "gateway/http.h"
#include "common/buf.h"
#include "tap.h"

#include <time.h>

#define MAX_HEAD 8192

/* want: 1 for a head that parses (consumed = the head, the tail is left),
 * or the HTTP_* error code. repr is http_request rendered by render(). */
typedef struct vec {
	const char *name;
	const char *head;
	size_t head_len;
	const char *tail;
	size_t tail_len;
	int want;
	const char *repr;
} vec;

#define OK(name, head, repr)                                                                       \
	{                                                                                          \
		name, head, sizeof(head) - 1, "", 0, 1, repr                                       \
	}
#define OK_TAIL(name, head, tail, repr)                                                            \
	{                                                                                          \
		name, head, sizeof(head) - 1, tail, sizeof(tail) - 1, 1, repr                      \
	}
#define BAD(name, in, err)                                                                         \
	{                                                                                          \
		name, in, sizeof(in) - 1, "", 0, err, NULL                                         \
	}

static const vec vectors[] = {
    OK("engine.io polling GET",
       "GET /socket.io/?EIO=4&transport=polling&t=P1a2b3c HTTP/1.1\r\n"
       "Host: chat.example.com\r\n"
       "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
       "Accept: */*\r\n"
       "Connection: keep-alive\r\n"
       "\r\n",
       "GET /socket.io/?EIO=4&transport=polling&t=P1a2b3c [/socket.io/]"
       "[EIO=4&transport=polling&t=P1a2b3c] 1.1|Host=chat.example.com"
       "|User-Agent=Mozilla/5.0 (X11; Linux x86_64)|Accept=*/*|Connection=keep-alive"),
    OK_TAIL("engine.io polling POST leaves its body",
            "POST /socket.io/?EIO=4&transport=polling&sid=Lbo5JLzTotvW3g2LAAAA HTTP/1.1\r\n"
            "Host: chat.example.com\r\n"
            "Content-Type: text/plain;charset=UTF-8\r\n"
            "Content-Length: 17\r\n"
            "\r\n",
            "40{\"token\":\"abc\"}",
            "POST /socket.io/?EIO=4&transport=polling&sid=Lbo5JLzTotvW3g2LAAAA [/socket.io/]"
            "[EIO=4&transport=polling&sid=Lbo5JLzTotvW3g2LAAAA] 1.1|Host=chat.example.com"
            "|Content-Type=text/plain;charset=UTF-8|Content-Length=17"),
    OK("websocket upgrade",
       "GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1\r\n"
       "Host: chat.example.com\r\n"
       "Connection: Upgrade\r\n"
       "Upgrade: websocket\r\n"
       "Sec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Origin: https://chat.example.com\r\n"
       "\r\n",
       "GET /socket.io/?EIO=4&transport=websocket&sid=abc [/socket.io/]"
       "[EIO=4&transport=websocket&sid=abc] 1.1|Host=chat.example.com|Connection=Upgrade"
       "|Upgrade=websocket|Sec-WebSocket-Version=13|Sec-WebSocket-Key=dGhlIHNhbXBsZSBub25jZQ=="
       "|Origin=https://chat.example.com"),
    OK_TAIL("pipelined: consumed stops at the first head", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a [/a][] 1.1|Host=x"),
    OK_TAIL("pipelined: a broken second request is not looked at", "GET /a HTTP/1.1\r\n\r\n",
            "GET /b HTTP/9.9\r\n\0\r\n", "GET /a [/a][] 1.1"),
    OK("HTTP/1.0 without headers", "GET / HTTP/1.0\r\n\r\n", "GET / [/][] 1.0"),
    OK("bare LF line endings", "GET /x?y=1 HTTP/1.1\nHost: a\nX: b\n\n",
       "GET /x?y=1 [/x][y=1] 1.1|Host=a|X=b"),
    OK("mixed CRLF and LF", "GET / HTTP/1.1\nHost: a\r\nX: b\n\r\n", "GET / [/][] 1.1|Host=a|X=b"),
    OK("one leading CRLF is skipped", "\r\nGET / HTTP/1.1\r\n\r\n", "GET / [/][] 1.1"),
    OK("one leading LF is skipped", "\nGET / HTTP/1.1\r\n\r\n", "GET / [/][] 1.1"),
    OK("OWS around values is trimmed", "GET / HTTP/1.1\r\nA:  \t a \t b \t \r\nB:c\r\n\r\n",
       "GET / [/][] 1.1|A=a \t b|B=c"),
    OK("empty values", "GET / HTTP/1.1\r\nA:\r\nB: \r\nC:\t\n\r\n", "GET / [/][] 1.1|A=|B=|C="),
    OK("obs-text in a value", "GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n",
       "GET / [/][] 1.1|X-Name=caf\xc3\xa9 \xff"),
    OK("colons in a value", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
       "GET / [/][] 1.1|Host=[::1]:8080"),
    OK("every tchar in a name and method",
       "!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\n"
       "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
       "!#$%&'*+-.^_`|~09azAZ / [/][] 1.1|!#$%&'*+-.^_`|~09azAZ=v"),
    OK("asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS * [*][] 1.1"),
    OK("absolute-form", "GET http://example.com/x?y#z HTTP/1.1\r\n\r\n",
       "GET http://example.com/x?y#z [http://example.com/x][y#z] 1.1"),
    OK("empty query after '?'", "GET /a? HTTP/1.1\r\n\r\n", "GET /a? [/a][] 1.1"),
    OK("the query starts at the first '?'", "GET /a?b?c=? HTTP/1.1\r\n\r\n",
       "GET /a?b?c=? [/a][b?c=?] 1.1"),
    OK("a line ends at LF then CRLF", "GET / HTTP/1.1\r\nA: 1\n\r\n", "GET / [/][] 1.1|A=1"),

    BAD("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", HTTP_ERROR),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", HTTP_ERROR),
    BAD("lower-case version", "GET / http/1.1\r\n\r\n", HTTP_ERROR),
    BAD("HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", HTTP_ERROR),
    BAD("missing version", "GET /\r\n\r\n", HTTP_ERROR),
    BAD("method only", "GET\r\n\r\n", HTTP_ERROR),
    BAD("space after the version", "GET / HTTP/1.1 \r\n\r\n", HTTP_ERROR),
    BAD("two spaces after the method", "GET  / HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("two spaces before the version", "GET /  HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("tab as a separator", "GET\t/ HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("space in the target", "GET /a b HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("CTL in the target", "GET /a\x01 HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("DEL in the target", "GET /a\x7f HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("NUL in the target", "GET /a\0 HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("raw UTF-8 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("non-token method", "G(T / HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("empty method", " / HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("two leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTP_ERROR),
    BAD("tab before the colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", HTTP_ERROR),
    BAD("empty header name", "GET / HTTP/1.1\r\n: a\r\n\r\n", HTTP_ERROR),
    BAD("header without a colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", HTTP_ERROR),
    BAD("non-token header name", "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", HTTP_ERROR),
    BAD("obs-text in a header name", "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", HTTP_ERROR),
    BAD("NUL in a value", "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", HTTP_ERROR),
    BAD("ESC in a value",
        "GET / HTTP/1.1\r\nX: a\x1b"
        "b\r\n\r\n",
        HTTP_ERROR),
    BAD("DEL in a value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", HTTP_ERROR),
    BAD("obs-fold with SP", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", HTTP_ERROR),
    BAD("obs-fold with HTAB", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", HTTP_ERROR),
    BAD("space before the first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", HTTP_ERROR),
    BAD("bare CR after the request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", HTTP_ERROR),
    BAD("bare CR in a value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", HTTP_ERROR),
    BAD("bare CR at the end of a value", "GET / HTTP/1.1\r\nX: a\r\r\n\r\n", HTTP_ERROR),
    BAD("CR CR LF ends no head", "GET / HTTP/1.1\r\nX: a\r\n\r\r\n", HTTP_ERROR),
    BAD("bare CR in the leading empty line", "\rGET / HTTP/1.1\r\n\r\n", HTTP_ERROR),
    BAD("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP_ERROR),
    BAD("TLS handshake bytes", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", HTTP_ERROR),
};

/* Renders the parsed request, or "slice outside the head" if any slice does
 * not lie within base[0..n) or path and query do not split the target. */
static void render(const char *base, int n, const http_request *req, char *out, size_t cap)
{
	const char *end = base + n;
	const slice *s[] = {&req->method, &req->target, &req->path, &req->query};
	size_t at;

	const char *tend = req->target.base + req->target.len;

	for (size_t i = 0; i < 4; i++)
		if (s[i]->base < base || s[i]->base + s[i]->len > end)
			goto outside;
	/* path and query are the two sides of the target's first '?'. */
	if (req->path.base != req->target.base || req->query.base < req->path.base ||
	    req->query.base + req->query.len != tend ||
	    (req->query.base != tend && req->query.base != req->path.base + req->path.len + 1))
		goto outside;
	for (size_t i = 0; i < req->num_headers; i++) {
		const http_header *h = &req->headers[i];
		if (h->name.base < base || h->name.base + h->name.len > end ||
		    h->value.base < base || h->value.base + h->value.len > end)
			goto outside;
	}
	at = (size_t)snprintf(out, cap, "%.*s %.*s [%.*s][%.*s] 1.%d", (int)req->method.len,
	                      req->method.base, (int)req->target.len, req->target.base,
	                      (int)req->path.len, req->path.base, (int)req->query.len,
	                      req->query.base, req->minor_version);
	for (size_t i = 0; i < req->num_headers && at < cap; i++) {
		const http_header *h = &req->headers[i];
		at += (size_t)snprintf(out + at, cap - at, "|%.*s=%.*s", (int)h->name.len,
		                       h->name.base, (int)h->value.len, h->value.base);
	}
	return;
outside:
	snprintf(out, cap, "slice outside the head");
}

/* Parses in[0..n) from a guarded copy; renders a success into out. */
static int parse_at(const char *in, size_t n, http_request *req, size_t max_head,
                    size_t max_headers, char *out, size_t cap)
{
	char *g = tap_guard(in, n);
	int r = http_parse_request(g, n, req, max_head, max_headers);
	if (r > 0 && out)
		render(g, r, req, out, cap);
	tap_unguard(g, n);
	return r;
}

/* Runs one input whole, at every split point and byte by byte. `want` is
 * the byte count for a valid head, else the error. Prefixes past
 * max_head + 64 bytes all see the same window, so they are not repeated. */
static void run(const char *name, const char *in, size_t len, int want, const char *repr,
                size_t max_head, size_t max_headers)
{
	static http_request req;
	static char whole[16384], got[16384];
	size_t last = len < max_head + 64 ? len : max_head + 64;
	int r, bad = 0;

	r = parse_at(in, len, &req, max_head, max_headers, whole, sizeof(whole));
	is_int(r, want, "%s: whole", name);
	if (want > 0 && repr)
		is_str(whole, repr, "%s: fields", name);

	/* Split into two reads: the first part is a proper prefix, which must
	 * be incomplete until the verdict is decided (for a valid head: until
	 * its last byte, never an error) and give that verdict from then on.
	 * The request struct is reused as a reader would, so no state may leak
	 * from the first call into the second. */
	char *full = tap_guard(in, len);
	int decided = 0;
	for (size_t k = 0; k < last && !bad; k++) {
		int first = parse_at(in, k, &req, max_head, max_headers, NULL, 0);
		if (want > 0)
			decided = k >= (size_t)want;
		else if (first != HTTP_INCOMPLETE)
			decided = 1;
		if (first != (decided ? want : HTTP_INCOMPLETE)) {
			printf("# %s: prefix of %zu bytes gave %d\n", name, k, first);
			bad = 1;
		}
		r = http_parse_request(full, len, &req, max_head, max_headers);
		if (r > 0)
			render(full, r, &req, got, sizeof(got));
		if (r != want || (want > 0 && strcmp(got, whole) != 0)) {
			printf("# %s: split at %zu gave %d\n", name, k, r);
			bad = 1;
		}
	}
	tap_unguard(full, len);
	ok(!bad, "%s: every split point", name);

	/* Byte by byte: the first result that is not HTTP_INCOMPLETE is the
	 * final one, and a valid head is recognised at its very last byte. */
	bad = 1;
	for (size_t n = 1; n <= last; n++) {
		r = parse_at(in, n, &req, max_head, max_headers, got, sizeof(got));
		if (r == HTTP_INCOMPLETE)
			continue;
		bad = r != want || (want > 0 && (n != (size_t)want || strcmp(got, whole) != 0));
		if (bad)
			printf("# %s: after %zu bytes got %d\n", name, n, r);
		break;
	}
	ok(!bad, "%s: byte by byte", name);
}

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const vec *v = &vectors[i];
		size_t len = v->head_len + v->tail_len;
		char *in = malloc(len);
		memcpy(in, v->head, v->head_len);
		memcpy(in + v->head_len, v->tail, v->tail_len);
		run(v->name, in, len, v->want > 0 ? (int)v->head_len : v->want, v->repr, MAX_HEAD,
		    HTTP_MAX_HEADERS);
		free(in);
	}
}

/* A request line, `count` headers "X-<i>: v" and, if `end`, the blank line. */
static buf many_headers(size_t count, int end)
{
	buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "GET / HTTP/1.1\r\n");
	for (size_t i = 0; i < count; i++) {
		buf_append_cstr(&b, "X-");
		buf_append_u64(&b, i);
		buf_append_cstr(&b, ": v\r\n");
	}
	if (end)
		buf_append_cstr(&b, "\r\n");
	return b;
}

static void test_header_count_limit(void)
{
	http_request req;
	buf b = many_headers(HTTP_MAX_HEADERS, 1);
	run("exactly HTTP_MAX_HEADERS headers", b.data, b.len, (int)b.len, NULL, MAX_HEAD,
	    HTTP_MAX_HEADERS);
	is_int(http_parse_request(b.data, b.len, &req, MAX_HEAD, HTTP_MAX_HEADERS), (int)b.len,
	       "64 headers parse");
	is_int(req.num_headers, HTTP_MAX_HEADERS, "all 64 are kept");
	is_mem(req.headers[63].name.base, req.headers[63].name.len, "X-63", 4, "the last is X-63");
	buf_dispose(&b);

	b = many_headers(HTTP_MAX_HEADERS + 1, 1);
	run("one header too many", b.data, b.len, HTTP_TOO_MANY_HEADERS, NULL, MAX_HEAD,
	    HTTP_MAX_HEADERS);
	run("max_headers above HTTP_MAX_HEADERS is capped", b.data, b.len, HTTP_TOO_MANY_HEADERS,
	    NULL, MAX_HEAD, 1000);
	buf_dispose(&b);

	b = many_headers(3, 1);
	run("max_headers 2, three headers", b.data, b.len, HTTP_TOO_MANY_HEADERS, NULL, MAX_HEAD,
	    2);
	run("max_headers 3, three headers", b.data, b.len, (int)b.len, NULL, MAX_HEAD, 3);
	buf_dispose(&b);

	b = many_headers(1, 1);
	run("max_headers 0, one header", b.data, b.len, HTTP_TOO_MANY_HEADERS, NULL, MAX_HEAD, 0);
	buf_dispose(&b);

	/* HARDENING: 2 000 headers, refused at the 65th whatever the byte limit. */
	b = many_headers(2000, 1);
	run("2000 headers", b.data, b.len, HTTP_TOO_MANY_HEADERS, NULL, MAX_HEAD, HTTP_MAX_HEADERS);
	is_int(http_parse_request(b.data, b.len, &req, 1 << 20, HTTP_MAX_HEADERS),
	       HTTP_TOO_MANY_HEADERS, "2000 headers under a 1 MB byte limit");
	buf_dispose(&b);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_size_limit(void)
{
	http_request req;
	size_t big = 1 << 20;
	char *in = malloc(big), *g;
	buf b;
	double t0;
	int r = 0;

	/* HARDENING: a 1 MB header line that never ends. */
	memcpy(in, "GET / HTTP/1.1\r\nX: ", 19);
	memset(in + 19, 'a', big - 19);
	run("1 MB header line", in, big, HTTP_TOO_LARGE, NULL, MAX_HEAD, HTTP_MAX_HEADERS);

	/* Only the first max_head bytes are readable here, yet len says 1 MB:
	 * a parser that looked any further would hit the guard page. */
	g = tap_guard(in, MAX_HEAD);
	is_int(http_parse_request(g, big, &req, MAX_HEAD, HTTP_MAX_HEADERS), HTTP_TOO_LARGE,
	       "1 MB line: nothing past max_head is read");
	tap_unguard(g, MAX_HEAD);

	t0 = now();
	for (int i = 0; i < 1000; i++)
		r |=
		    http_parse_request(in, big, &req, MAX_HEAD, HTTP_MAX_HEADERS) != HTTP_TOO_LARGE;
	ok(!r && now() - t0 < 1.0, "1000 parses of the 1 MB line take %.3f s (< 1 s)", now() - t0);
	free(in);

	/* A head of exactly max_head bytes is accepted, one more byte is not. */
	buf_init(&b, 0);
	buf_append_cstr(&b, "GET / HTTP/1.1\r\nX: ");
	while (b.len < 100 - 4)
		buf_append_byte(&b, 'v');
	buf_append_cstr(&b, "\r\n\r\n");
	run("head of exactly max_head bytes", b.data, b.len, 100, NULL, 100, HTTP_MAX_HEADERS);
	run("head one byte over max_head", b.data, b.len, HTTP_TOO_LARGE, NULL, 99,
	    HTTP_MAX_HEADERS);
	buf_append_cstr(&b, "GET / HTTP/1.1\r\n\r\n");
	run("pipelined bytes past max_head do not count", b.data, b.len, 100, NULL, 100,
	    HTTP_MAX_HEADERS);
	buf_dispose(&b);

	is_int(http_parse_request("GET / HTTP/1.1\r\n\r\n", 18, &req, SIZE_MAX, HTTP_MAX_HEADERS),
	       18, "max_head above INT_MAX is capped, not refused");
	is_int(http_parse_request("GET / HTTP/1.1\r\n", 16, &req, SIZE_MAX, HTTP_MAX_HEADERS),
	       HTTP_INCOMPLETE, "... and a short head is still incomplete");
	is_int(http_parse_request(NULL, 0, &req, MAX_HEAD, HTTP_MAX_HEADERS), HTTP_INCOMPLETE,
	       "empty input is incomplete");
	is_int(http_parse_request("GET", 3, &req, 0, HTTP_MAX_HEADERS), HTTP_TOO_LARGE,
	       "max_head 0 accepts nothing");
	is_int(http_parse_request("GET / HTTP/1.1\r\n\r", 17, &req, 17, HTTP_MAX_HEADERS),
	       HTTP_TOO_LARGE, "a head cut by max_head is too large, not incomplete");
	is_int(http_parse_request("GET / HTTP/1.1\r\n\x01", 17, &req, 17, HTTP_MAX_HEADERS),
	       HTTP_ERROR, "an error inside max_head is reported as such");
}

/* Parses a literal head that must be valid, for the helper tests. */
static void parse_ok(const char *s, http_request *req)
{
	int r = http_parse_request(s, strlen(s), req, MAX_HEAD, HTTP_MAX_HEADERS);
	if (r != (int)strlen(s)) {
		printf("# could not parse: %s\n", s);
		exit(2);
	}
}

static void test_header_get(void)
{
	http_request req;
	slice v = SLICE_LIT("untouched");
	parse_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nEmpty:\r\n\r\n", &req);
	ok(http_header_get(&req, "host", &v), "lookup is case-insensitive");
	is_mem(v.base, v.len, "a", 1, "host value");
	ok(http_header_get(&req, "X-DUP", &v), "duplicate found");
	is_mem(v.base, v.len, "1", 1, "the first duplicate wins");
	is_int(http_header_count(&req, "x-dup"), 2, "duplicates counted");
	is_int(http_header_count(&req, "host"), 1, "single counted");
	is_int(http_header_count(&req, "nope"), 0, "absent counted");
	ok(http_header_get(&req, "empty", &v) && v.len == 0, "empty value found");
	v = SLICE_LIT("untouched");
	ok(!http_header_get(&req, "hos", &v), "a name prefix does not match");
	ok(!http_header_get(&req, "hostx", &v), "a longer name does not match");
	is_mem(v.base, v.len, "untouched", 9, "value left alone when absent");

	/* A hand-built request still gets a trimmed value. */
	req.num_headers = 1;
	req.headers[0].name = SLICE_LIT("Connection");
	req.headers[0].value = SLICE_LIT(" \tclose\t ");
	ok(http_header_get(&req, "connection", &v), "hand-built header found");
	is_mem(v.base, v.len, "close", 5, "hand-built value trimmed");
}

static void test_has_token(void)
{
	static const struct {
		const char *value, *token;
		int want;
	} t[] = {
	    {"keep-alive, Upgrade", "upgrade", 1},
	    {"keep-alive, Upgrade", "keep-alive", 1},
	    {"keep-alive, Upgrade", "close", 0},
	    {"Upgrade", "UPGRADE", 1},
	    {"upgrade-insecure", "upgrade", 0},
	    {"upgrade-insecure, keep-alive", "upgrade", 0},
	    {"xupgrade", "upgrade", 0},
	    {"upgrade2", "upgrade", 0},
	    {"upgrad", "upgrade", 0},
	    {"keep-alive,upgrade", "upgrade", 1},
	    {" \tkeep-alive , \tUpGrAdE\t ", "upgrade", 1},
	    {",, upgrade ,", "upgrade", 1},
	    {"", "upgrade", 0},
	    {" , ,", "upgrade", 0},
	    {"upgrade", "", 0},
	    {"up grade", "upgrade", 0},
	    {"close", "close", 1},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		is_int(http_header_has_token(slice_cstr(t[i].value), t[i].token), t[i].want,
		       "has_token(\"%s\", \"%s\")", t[i].value, t[i].token);
	is_int(http_header_has_token(SLICE_NULL, "close"), 0, "has_token on a null slice");

	/* Over-read check: the token at the very end of a guarded value. */
	char *g = tap_guard("keep-alive, upgrade", 19);
	is_int(http_header_has_token(slice_make(g, 19), "upgrade"), 1, "has_token, guarded");
	is_int(http_header_has_token(slice_make(g, 19), "upgrade-x"), 0,
	       "has_token, guarded, longer");
	tap_unguard(g, 19);
}

static void test_query_get(void)
{
	static const struct {
		const char *query, *name, *value; /* value NULL: absent */
	} t[] = {
	    {"EIO=4&transport=websocket&sid=abc", "EIO", "4"},
	    {"EIO=4&transport=websocket&sid=abc", "transport", "websocket"},
	    {"EIO=4&transport=websocket&sid=abc", "sid", "abc"},
	    {"EIO=4&transport=websocket&sid=abc", "t", NULL},
	    {"xsid=1", "sid", NULL},
	    {"sidx=1", "sid", NULL},
	    {"xsid=1&sid=2", "sid", "2"},
	    {"sid=1&sid=2", "sid", "1"},
	    {"SID=1", "sid", NULL},
	    {"sid", "sid", ""},
	    {"sid=", "sid", ""},
	    {"sid=&x=1", "sid", ""},
	    {"a=b=c", "a", "b=c"},
	    {"&&sid=x&&", "sid", "x"},
	    {"t=a%26b", "t", "a%26b"},
	    {"q=a=sid", "sid", NULL},
	    {"", "sid", NULL},
	    {"=1", "", NULL},
	};
	slice v;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = SLICE_LIT("untouched");
		int r = http_query_get(slice_cstr(t[i].query), t[i].name, &v);
		if (t[i].value) {
			ok(r == 1, "query_get(\"%s\", \"%s\") found", t[i].query, t[i].name);
			is_mem(v.base, v.len, t[i].value, strlen(t[i].value), "... value \"%s\"",
			       t[i].value);
		} else {
			ok(r == 0 && slice_eq_cstr(v, "untouched"),
			   "query_get(\"%s\", \"%s\") absent", t[i].query, t[i].name);
		}
	}

	/* End to end, from a parsed request, and against a guard page. */
	http_request req;
	const char *s = "GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n\r\n";
	parse_ok(s, &req);
	ok(http_query_get(req.query, "sid", &v) && slice_eq_cstr(v, "abc"), "sid from a request");
	ok(slice_eq_cstr(req.path, "/socket.io/"), "path from a request");
	char *g = tap_guard("EIO=4&sid", 9);
	ok(http_query_get(slice_make(g, 9), "sid", &v) && v.len == 0, "query_get, guarded");
	ok(!http_query_get(slice_make(g, 9), "sidx", &v), "query_get, guarded, longer name");
	tap_unguard(g, 9);
}

static void test_content_length(void)
{
	static const struct {
		const char *in;
		uint64_t max;
		int want;
		uint64_t value;
	} t[] = {
	    {"0", 100, 0, 0},
	    {"42", 100, 0, 42},
	    {"007", 100, 0, 7},
	    {"100", 100, 0, 100},
	    {"101", 100, -1, 0},
	    {"+1", 100, -1, 0},
	    {"-1", 100, -1, 0},
	    {" 1", 100, -1, 0},
	    {"1 ", 100, -1, 0},
	    {"1 1", 100, -1, 0},
	    {"", 100, -1, 0},
	    {"1a", 100, -1, 0},
	    {"0x10", 100, -1, 0},
	    {"1,1", 100, -1, 0},
	    {"1.0", 100, -1, 0},
	    {"99999999999999999999999", UINT64_MAX, -1, 0},
	    {"18446744073709551615", UINT64_MAX, 0, UINT64_MAX},
	    {"18446744073709551616", UINT64_MAX, -1, 0},
	    {"184467440737095516150", UINT64_MAX, -1, 0},
	    {"00000000000000000000000000000001", UINT64_MAX, 0, 1},
	    {"1048576", 1 << 20, 0, 1 << 20},
	    {"1048577", 1 << 20, -1, 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t v = 12345;
		int r = http_parse_content_length(slice_cstr(t[i].in), t[i].max, &v);
		is_int(r, t[i].want, "content_length(\"%s\", max %" PRIu64 ")", t[i].in, t[i].max);
		ok(v == (t[i].want == 0 ? t[i].value : 12345), "... value %" PRIu64, v);
	}
	uint64_t v;
	is_int(http_parse_content_length(slice_make("12\0", 3), 100, &v), -1, "NUL after digits");
	is_int(http_parse_content_length(SLICE_NULL, 100, &v), -1, "null slice");
}

static void test_keep_alive(void)
{
	static const struct {
		const char *name, *head;
		int want;
	} t[] = {
	    {"1.1 by default", "GET / HTTP/1.1\r\n\r\n", 1},
	    {"1.1 close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
	    {"1.1 close in a list", "GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", 0},
	    {"1.1 upgrade", "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", 1},
	    {"1.1 close in a second field",
	     "GET / HTTP/1.1\r\nConnection: keep-alive\r\nconnection: close\r\n\r\n", 0},
	    {"1.1 'closed' is not close", "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", 1},
	    {"1.1 other field", "GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", 1},
	    {"1.0 by default", "GET / HTTP/1.0\r\n\r\n", 0},
	    {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
	    {"1.0 Keep-Alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1},
	    {"1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
	     0},
	    {"1.0 'keep-alives'", "GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", 0},
	    {"1.0 close then keep-alive",
	     "GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", 0},
	};
	http_request req;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		parse_ok(t[i].head, &req);
		is_int(http_keep_alive(&req), t[i].want, "keep_alive: %s", t[i].name);
	}
}

int main(void)
{
	test_vectors();
	test_header_count_limit();
	test_size_limit();
	test_header_get();
	test_has_token();
	test_query_get();
	test_content_length();
	test_keep_alive();
	return tap_done();
}
