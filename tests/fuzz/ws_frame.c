/*
 * libFuzzer driver for gateway/ws_frame.c and common/utf8.c.
 *
 * Input: one control byte, then the bytes a client sends. The stream is fed
 * to a reader with small limits twice, as a server would: once whole, once in
 * chunks whose sizes derive from the control byte. Both runs must produce the
 * same events, and every event must satisfy the codec's promises (payload
 * inside the input or the reassembly buffer, control payloads <= 125 bytes,
 * text and close reasons valid UTF-8, limits respected). The UTF-8 validator
 * is checked the same way: chunked must equal whole.
 */
#include "gateway/ws_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/check.h"

static const ws_limits lim = {4096, 8192, 16};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ull;
	return h;
}

static int within(slice s, const void *base, size_t len)
{
	const char *b = base;
	return s.len == 0 ||
	       (s.base >= b && s.len <= len && s.base - b <= (ptrdiff_t)(len - s.len));
}

/* Checks one event against the codec's promises and folds it into h. */
static uint64_t account(const ws_reader *r, const ws_event *ev, int t, const uint8_t *in,
                        size_t len, size_t used, uint64_t h)
{
	CHECK(t == ev->type);
	CHECK(used <= len);
	CHECK(r->msg.len <= lim.max_message);
	CHECK(r->fragments <= lim.max_fragments);
	switch (t) {
	case WS_EV_NEED_MORE: return h;
	case WS_EV_MESSAGE:
		CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
		CHECK(ev->payload.len <= lim.max_message);
		CHECK(within(ev->payload, in, used) ||
		      within(ev->payload, r->msg.data, r->msg.len));
		if (ev->opcode == WS_OP_TEXT)
			CHECK(utf8_is_valid(ev->payload.base, ev->payload.len));
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		CHECK(ev->payload.len <= WS_CONTROL_MAX);
		CHECK(within(ev->payload, in, used));
		break;
	case WS_EV_CLOSE:
		CHECK(ev->close_code == WS_CLOSE_NO_STATUS || ws_close_code_valid(ev->close_code));
		CHECK(utf8_is_valid(ev->close_reason.base, ev->close_reason.len));
		CHECK(within(ev->close_reason, in, used));
		break;
	case WS_EV_ERROR:
		CHECK(used == 0);
		CHECK(ev->close_code == WS_CLOSE_PROTOCOL ||
		      ev->close_code == WS_CLOSE_INVALID_DATA ||
		      ev->close_code == WS_CLOSE_POLICY || ev->close_code == WS_CLOSE_TOO_BIG);
		break;
	default: CHECK(0);
	}
	h = mix(h, &t, sizeof(t));
	h = mix(h, &ev->opcode, sizeof(ev->opcode));
	h = mix(h, &ev->close_code, sizeof(ev->close_code));
	h = mix(h, ev->payload.base, ev->payload.len);
	return mix(h, ev->close_reason.base, ev->close_reason.len);
}

/*
 * Feeds stream[0..n) in chunks (chunk 0: all at once) into a fresh reader,
 * accumulating unconsumed bytes like a server. Returns a hash of the events;
 * *events counts them.
 */
static uint64_t run(const uint8_t *stream, size_t n, unsigned chunk, size_t *events)
{
	ws_reader r;
	uint8_t *acc = malloc(n ? n : 1);
	size_t start = 0, end = 0, off = 0;
	uint64_t h = 1469598103934665603ull;
	int done = 0;

	*events = 0;
	ws_reader_init(&r, &lim);
	while (off < n && !done) {
		size_t c = chunk ? chunk + (off % 3) : n;
		if (c > n - off)
			c = n - off;
		memmove(acc, acc + start, end - start);
		end -= start, start = 0;
		memcpy(acc + end, stream + off, c);
		end += c, off += c;
		while (!done) {
			ws_event ev;
			size_t used = (size_t)-1, have = end - start;
			/* An exact-size copy, so that ASan sees any over-read. */
			uint8_t *in = malloc(have ? have : 1);
			memcpy(in, acc + start, have);
			int t = ws_reader_feed(&r, in, have, &used, &ev);
			h = account(&r, &ev, t, in, have, used, h);
			if (t == WS_EV_NEED_MORE && used == 0)
				CHECK(memcmp(in, acc + start, have) == 0);
			memcpy(acc + start, in, have);
			free(in);
			if (t != WS_EV_NEED_MORE)
				++*events;
			if (t == WS_EV_ERROR || t == WS_EV_CLOSE)
				done = 1;
			else if (t == WS_EV_NEED_MORE && used == 0)
				break;
			start += used;
		}
	}
	ws_reader_dispose(&r);
	free(acc);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned chunk = 1 + data[0] % 29;
	const uint8_t *stream = data + 1;
	size_t n = size - 1, ev_whole, ev_chunked;

	uint64_t whole = run(stream, n, 0, &ev_whole);
	uint64_t chunked = run(stream, n, chunk, &ev_chunked);
	CHECK(ev_whole == ev_chunked);
	CHECK(whole == chunked);

	/* The validator: chunked equals whole, and REJECT is final. */
	utf8_state all = utf8_validate(UTF8_ACCEPT, stream, n), st = UTF8_ACCEPT;
	for (size_t i = 0; i < n; i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		utf8_state prev = st;
		st = utf8_validate(st, stream + i, k);
		CHECK(prev != UTF8_REJECT || st == UTF8_REJECT);
	}
	CHECK(st == all);
	CHECK(utf8_is_valid(stream, n) == (all == UTF8_ACCEPT));
	return 0;
}
