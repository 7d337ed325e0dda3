/*
 * libFuzzer driver for gateway/http.c. The input is copied into a heap block
 * of exactly its size, so ASan flags any read past the end; the parser and
 * every helper then run on it and on what it returns, and the invariants
 * below abort on a violation.
 */
#include "gateway/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/check.h"

static int inside(slice s, const char *base, size_t n)
{
	return s.base >= base && s.len <= n && s.base - base <= (ptrdiff_t)(n - s.len);
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Checks what a successful parse of base[0..n) returned. */
static void check_request(const http_request *req, const char *base, size_t n)
{
	const char *tend = req->target.base + req->target.len;
	slice v;
	uint64_t clen;

	CHECK(inside(req->method, base, n) && req->method.len > 0);
	CHECK(inside(req->target, base, n) && req->target.len > 0);
	CHECK(inside(req->path, base, n) && inside(req->query, base, n));
	CHECK(req->path.base == req->target.base);
	CHECK(req->query.base + req->query.len == tend);
	CHECK(req->path.len == req->target.len ||
	      (req->path.base[req->path.len] == '?' &&
	       req->query.base == req->path.base + req->path.len + 1));
	CHECK(memchr(req->path.base, '?', req->path.len) == NULL);
	CHECK(req->minor_version == 0 || req->minor_version == 1);
	CHECK(req->num_headers <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < req->num_headers; i++) {
		const http_header *h = &req->headers[i];
		CHECK(inside(h->name, base, n) && h->name.len > 0);
		CHECK(inside(h->value, base, n));
		CHECK(memchr(h->name.base, ':', h->name.len) == NULL);
		CHECK(h->value.len == 0 ||
		      (!is_ows(h->value.base[0]) && !is_ows(h->value.base[h->value.len - 1])));
		CHECK(memchr(h->value.base, '\0', h->value.len) == NULL);
		CHECK(memchr(h->value.base, '\r', h->value.len) == NULL);
		CHECK(memchr(h->value.base, '\n', h->value.len) == NULL);
	}

	static const char *const names[] = {"host", "connection", "upgrade", "content-length",
	                                    "sec-websocket-key"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (http_header_get(req, names[i], &v)) {
			CHECK(inside(v, base, n));
			CHECK(http_header_count(req, names[i]) >= 1);
			(void)http_header_has_token(v, "upgrade");
			if (http_parse_content_length(v, UINT64_MAX, &clen) == 0)
				CHECK(v.len > 0);
		} else {
			CHECK(http_header_count(req, names[i]) == 0);
		}
	}
	static const char *const params[] = {"EIO", "transport", "sid", "t"};
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
		if (http_query_get(req->query, params[i], &v))
			CHECK(inside(v, req->query.base, req->query.len));
	CHECK(http_keep_alive(req) == 0 || http_keep_alive(req) == 1);
}

/* The helpers also take arbitrary bytes, not only parser output. */
static void check_helpers(const char *buf, size_t size)
{
	slice all = slice_make(buf, size), v;
	uint64_t clen = 7;
	int r;

	(void)http_header_has_token(all, "keep-alive");
	if (http_query_get(all, "sid", &v))
		CHECK(inside(v, buf, size));
	r = http_parse_content_length(all, 1 << 20, &clen);
	CHECK(r == -1 ? clen == 7 : clen <= 1 << 20);
	if (r == 0)
		for (size_t i = 0; i < size; i++)
			CHECK(buf[i] >= '0' && buf[i] <= '9');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static http_request req;
	char *buf = malloc(size ? size : 1);
	int r, again;

	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);

	r = http_parse_request(buf, size, &req, 8192, HTTP_MAX_HEADERS);
	CHECK(r > 0 || r == HTTP_INCOMPLETE || r == HTTP_ERROR || r == HTTP_TOO_LARGE ||
	      r == HTTP_TOO_MANY_HEADERS);
	CHECK(r != HTTP_TOO_LARGE || size >= 8192);
	if (r > 0) {
		CHECK((size_t)r <= size && r <= 8192);
		check_request(&req, buf, (size_t)r);
		/* A head delimits itself: the same verdict without the trailing
		 * bytes, incomplete one byte short, and exactly r bytes fit
		 * max_head = r but not r - 1. */
		CHECK(http_parse_request(buf, (size_t)r, &req, 8192, HTTP_MAX_HEADERS) == r);
		CHECK(http_parse_request(buf, (size_t)r - 1, &req, 8192, HTTP_MAX_HEADERS) ==
		      HTTP_INCOMPLETE);
		CHECK(http_parse_request(buf, size, &req, (size_t)r, HTTP_MAX_HEADERS) == r);
		CHECK(http_parse_request(buf, size, &req, (size_t)r - 1, HTTP_MAX_HEADERS) ==
		      HTTP_TOO_LARGE);
		CHECK(http_parse_request(buf, size, &req, 8192, req.num_headers) == r);
		if (req.num_headers > 0)
			CHECK(http_parse_request(buf, size, &req, 8192, req.num_headers - 1) ==
			      HTTP_TOO_MANY_HEADERS);
	}

	/* A small byte limit reaches the HTTP_TOO_LARGE paths, and a lower
	 * header count the HTTP_TOO_MANY_HEADERS ones, on short inputs. */
	again = http_parse_request(buf, size, &req, 64, 4);
	if (again > 0) {
		CHECK(again <= 64 && (size_t)again <= size && req.num_headers <= 4);
		check_request(&req, buf, (size_t)again);
	} else if (again == HTTP_TOO_LARGE) {
		CHECK(size >= 64);
	}

	check_helpers(buf, size);
	free(buf);
	return 0;
}
