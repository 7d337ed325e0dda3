/*
 * Tests gateway/ws_frame.c: the RFC 6455 section 5.7 examples, the Autobahn
 * server cases 1-7, 9 and 10 that can be written as byte sequences, and the
 * HARDENING rows for huge lengths and fragment bombs.
 *
 * Every vector is fed the way a server feeds it: bytes accumulate in a
 * buffer, the reader is called until it wants more, consumed bytes are
 * dropped. Each vector runs whole, one byte at a time, split at every point
 * (a sample of points for large vectors), in fixed chops and in random
 * chunks, and every run must produce the same events. Unless it is large,
 * the reader's input is copied against a PROT_NONE page before each call so
 * that an over-read crashes.
 */
#include "gateway/ws_frame.h"
#include "tap.h"

#include <stdarg.h>

#define GUARD_MAX 4096 /* inputs up to this size are fed from a guarded copy */

/* Rotating scratch strings for building expectations. */
static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
	static char slot[8][512];
	static int next;
	char *s = slot[next++ & 7];
	va_list ap;
	va_start(ap, f);
	vsnprintf(s, sizeof(slot[0]), f, ap);
	va_end(ap);
	return s;
}

static uint32_t fnv(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

/* Short printable payloads appear as themselves, others as length#hash. */
static const char *pl(const void *p, size_t n)
{
	const char *s = p;
	int plain = n <= 40;
	for (size_t i = 0; i < n && plain; i++)
		plain = s[i] >= 0x20 && s[i] <= 0x7e;
	if (plain)
		return fmt("%.*s", (int)n, s);
	return fmt("%zu#%08x", n, fnv(p, n));
}

static void render(buf *log, const ws_event *ev)
{
	const char *s;
	switch (ev->type) {
	case WS_EV_MESSAGE:
		s = fmt("%s:%s", ev->opcode == WS_OP_TEXT ? "T" : "B",
		        pl(ev->payload.base, ev->payload.len));
		break;
	case WS_EV_PING: s = fmt("ping:%s", pl(ev->payload.base, ev->payload.len)); break;
	case WS_EV_PONG: s = fmt("pong:%s", pl(ev->payload.base, ev->payload.len)); break;
	case WS_EV_CLOSE:
		s = fmt("close:%u:%s", ev->close_code,
		        pl(ev->close_reason.base, ev->close_reason.len));
		break;
	case WS_EV_ERROR: s = fmt("error:%u", ev->close_code); break;
	default: s = fmt("?%d", ev->type);
	}
	if (log->len)
		buf_append_byte(log, ' ');
	buf_append_cstr(log, s);
}

/* ---- building client frames ---- */

static uint32_t mask_seq;

static void put_header(buf *b, uint8_t b0, int masked, uint64_t len, int enc, uint8_t key[4])
{
	uint8_t h[14];
	size_t n = 0;

	if (enc == 0)
		enc = len < 126 ? 1 : len <= 0xffff ? 2 : 8;
	h[n++] = b0;
	if (enc == 1) {
		h[n++] = (uint8_t)((masked ? 0x80 : 0) | len);
	} else if (enc == 2) {
		h[n++] = (uint8_t)((masked ? 0x80 : 0) | 126);
		h[n++] = (uint8_t)(len >> 8), h[n++] = (uint8_t)len;
	} else {
		h[n++] = (uint8_t)((masked ? 0x80 : 0) | 127);
		for (int i = 0; i < 8; i++)
			h[n++] = (uint8_t)(len >> (56 - 8 * i));
	}
	if (masked) {
		/* Vary the key; every seventh frame uses the all-zero key. */
		uint32_t k = mask_seq++ % 7 == 6 ? 0 : fnv(&mask_seq, sizeof(mask_seq));
		for (int i = 0; i < 4; i++)
			h[n++] = key[i] = (uint8_t)(k >> (8 * i));
	}
	buf_append(b, h, n);
}

/* Appends a frame with header byte b0 (FIN, RSV, opcode) and the length in
 * `enc` bytes (0: the minimal encoding). */
static void frame_enc(buf *b, uint8_t b0, int masked, const void *p, size_t n, int enc)
{
	uint8_t key[4];
	const uint8_t *s = p;

	put_header(b, b0, masked, n, enc, key);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)(s[i] ^ (masked ? key[i & 3] : 0));
		buf_append_byte(b, (char)c);
	}
}

static void frame_b0(buf *b, uint8_t b0, int masked, const void *p, size_t n)
{
	frame_enc(b, b0, masked, p, n, 0);
}

static void frame(buf *b, int fin, int op, const void *p, size_t n)
{
	frame_b0(b, (uint8_t)((fin ? 0x80 : 0) | op), 1, p, n);
}

static void frame_s(buf *b, int fin, int op, const char *s)
{
	frame(b, fin, op, s, strlen(s));
}

static void close_frame(buf *b, uint16_t code, const char *reason, size_t rlen)
{
	uint8_t body[256];
	body[0] = (uint8_t)(code >> 8), body[1] = (uint8_t)code;
	memcpy(body + 2, reason, rlen);
	frame(b, 1, WS_OP_CLOSE, body, 2 + rlen);
}

/* A header announcing len bytes (in the given encoding), with no payload. */
static void header_only(buf *b, uint8_t b0, uint64_t len, int enc)
{
	uint8_t key[4];
	put_header(b, b0, 1, len, enc, key);
}

/* ---- feeding ---- */

enum { CH_WHOLE, CH_BYTES, CH_SPLIT, CH_FIXED, CH_RANDOM };

typedef struct chunker {
	int kind;
	size_t k;      /* SPLIT: the split point; FIXED: the chop size */
	uint64_t seed; /* RANDOM */
} chunker;

static size_t chunk_size(chunker *ch, size_t off, size_t n)
{
	size_t left = n - off, c = left;
	switch (ch->kind) {
	case CH_BYTES: c = 1; break;
	case CH_SPLIT: c = off < ch->k ? ch->k - off : left; break;
	case CH_FIXED: c = ch->k; break;
	case CH_RANDOM:
		ch->seed ^= ch->seed << 13, ch->seed ^= ch->seed >> 7, ch->seed ^= ch->seed << 17;
		c = 1 + ch->seed % (ch->seed & 64 ? 23 : 3);
		break;
	}
	return c > left ? left : c == 0 ? 1 : c;
}

typedef struct result {
	buf log;        /* rendered events, NUL-terminated */
	size_t max_cap; /* largest reassembly buffer seen */
	int mutated;    /* an incomplete frame's bytes were modified */
	int bad_type;   /* the return value and ev->type disagreed, or consumed was wrong */
} result;

/*
 * Feeds in[0..n) as a server would: each chunk is appended to the unconsumed
 * bytes, then the reader is called until it needs more. Stops at CLOSE or
 * ERROR; if the input ends with a frame still incomplete, the log ends with
 * "rest=N", N being the bytes left over.
 */
static void run(const ws_limits *lim, const uint8_t *in, size_t n, chunker ch, result *res)
{
	ws_reader r;
	uint8_t *acc = malloc(n ? n : 1);
	size_t start = 0, end = 0, off = 0;
	int done = 0;

	/* One guarded window per run; each call's input is copied to its end. */
	static const uint8_t zeros[GUARD_MAX];
	uint8_t *win = tap_guard(zeros, GUARD_MAX);

	ws_reader_init(&r, lim);
	buf_init(&res->log, 0);
	res->max_cap = 0, res->mutated = 0, res->bad_type = 0;
	while (off < n && !done) {
		size_t c = chunk_size(&ch, off, n);
		if (start) {
			memmove(acc, acc + start, end - start);
			end -= start, start = 0;
		}
		memcpy(acc + end, in + off, c);
		end += c, off += c;
		while (!done) {
			size_t have = end - start, used = 12345;
			ws_event ev;
			int t;
			if (have <= GUARD_MAX) {
				uint8_t *g = win + GUARD_MAX - have;
				memcpy(g, acc + start, have);
				t = ws_reader_feed(&r, g, have, &used, &ev);
				if (t == WS_EV_NEED_MORE && used == 0 &&
				    memcmp(g, acc + start, have))
					res->mutated = 1;
				if (t != WS_EV_NEED_MORE)
					render(&res->log, &ev);
				memcpy(acc + start, g, have);
			} else {
				/* Large inputs are fed in place (ASan still guards the
				 * heap block); comparing them on every call would make
				 * byte-by-byte runs quadratic. */
				t = ws_reader_feed(&r, acc + start, have, &used, &ev);
				if (t != WS_EV_NEED_MORE)
					render(&res->log, &ev);
			}
			if (t != ev.type || used > have || (t == WS_EV_ERROR && used != 0))
				res->bad_type = 1;
			if (r.msg.cap > res->max_cap)
				res->max_cap = r.msg.cap;
			if (t == WS_EV_ERROR || t == WS_EV_CLOSE)
				done = 1;
			else if (t == WS_EV_NEED_MORE && used == 0)
				break;
			start += used;
		}
	}
	if (!done && end > start)
		buf_append_cstr(&res->log, fmt("%srest=%zu", res->log.len ? " " : "", end - start));
	buf_append_byte(&res->log, 0);
	ws_reader_dispose(&r);
	tap_unguard(win, GUARD_MAX);
	free(acc);
}

enum { NO_ALLOC = 1 };

static const ws_limits lim_default = {1 << 20, 1 << 21, 1 << 16};
static const ws_limits lim_small = {4096, 8192, 16};

/*
 * Runs one vector in every chunking and reports: whole, byte by byte, all
 * other chunkings agree, invariants (untouched incomplete frames, reassembly
 * within max_message, consistent return values), and, with NO_ALLOC, that
 * the reader never allocated.
 */
static void check(const char *name_, const ws_limits *lim, const buf *in, const char *want_,
                  int flags)
{
	/* The scratch strings rotate; keep our own copies. */
	char *name = strdup(name_), *want = strdup(want_);
	const uint8_t *p = (const uint8_t *)in->data;
	size_t n = in->len, max_cap = 0, runs = 0;
	int mutated = 0, bad_type = 0;
	char *diff = NULL;
	result res;

	chunker whole = {CH_WHOLE, 0, 0};
	run(lim, p, n, whole, &res);
	is_str(res.log.data, want, "%s: whole", name);
	max_cap = res.max_cap, mutated |= res.mutated, bad_type |= res.bad_type;
	buf_dispose(&res.log);

	chunker bytes = {CH_BYTES, 0, 0};
	run(lim, p, n, bytes, &res);
	is_str(res.log.data, want, "%s: byte by byte", name);
	max_cap = res.max_cap > max_cap ? res.max_cap : max_cap;
	mutated |= res.mutated, bad_type |= res.bad_type;
	buf_dispose(&res.log);

	/* Every split point for small vectors; for large ones the first and
	 * last 64 and 200 points spread in between. */
	size_t stride = n <= 2048 ? 1 : n / 200;
	static const size_t chops[] = {2, 3, 7, 14, 997};
	size_t nsplit = 0;
	for (size_t k = 0; k <= n + 5 + 8 && !diff; k++) {
		chunker ch;
		if (k <= n) {
			if (stride > 1 && k > 64 && k + 64 < n && k % stride)
				continue;
			ch = (chunker){CH_SPLIT, k, 0};
			nsplit++;
		} else if (k <= n + 5) {
			ch = (chunker){CH_FIXED, chops[k - n - 1], 0};
		} else {
			ch = (chunker){CH_RANDOM, 0, 0x1234567ull * (k - n)};
		}
		run(lim, p, n, ch, &res);
		runs++;
		if (strcmp(res.log.data, want) != 0)
			diff = strdup(fmt("kind %d at %zu: '%.400s'", ch.kind, ch.k, res.log.data));
		max_cap = res.max_cap > max_cap ? res.max_cap : max_cap;
		mutated |= res.mutated, bad_type |= res.bad_type;
		buf_dispose(&res.log);
	}
	ok(!diff, "%s: %zu split points, 5 chop sizes, 8 random chunkings agree", name, nsplit);
	if (diff) {
		printf("#   expected: '%s'\n#   got %s\n", want, diff);
		free(diff);
	}
	ok(!mutated && !bad_type && (!lim->max_message || max_cap <= lim->max_message),
	   "%s: invariants (%zu runs; incomplete frames untouched %d, return values %d, "
	   "buffer %zu within limit)",
	   name, runs, !mutated, !bad_type, max_cap);
	if (flags & NO_ALLOC)
		is_int(max_cap, 0, "%s: nothing allocated", name);
	free(name);
	free(want);
}

static void vec_reset(buf *b)
{
	buf_reset(b);
	mask_seq = 0;
}

/* ---- RFC 6455 section 5.7 ---- */

static void test_rfc_examples(buf *b)
{
	static const uint8_t hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                       0x7f, 0x9f, 0x4d, 0x51, 0x58};
	static const uint8_t hello_plain[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
	static const uint8_t pong_masked[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                      0x7f, 0x9f, 0x4d, 0x51, 0x58};
	static const uint8_t frag_plain[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
	static const uint8_t ping_plain[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};

	vec_reset(b);
	buf_append(b, hello_masked, sizeof(hello_masked));
	check("5.7 masked \"Hello\"", &lim_default, b, "T:Hello", NO_ALLOC);
	vec_reset(b);
	buf_append(b, hello_plain, sizeof(hello_plain));
	check("5.7 unmasked \"Hello\" from a client", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	buf_append(b, frag_plain, sizeof(frag_plain));
	check("5.7 unmasked fragments from a client", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	buf_append(b, ping_plain, sizeof(ping_plain));
	check("5.7 unmasked ping from a client", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "Hel");
	frame_s(b, 1, WS_OP_CONT, "lo");
	check("5.7 fragmented \"Hel\" + \"lo\", masked", &lim_default, b, "T:Hello", 0);
	vec_reset(b);
	frame_s(b, 1, WS_OP_PING, "Hello");
	buf_append(b, pong_masked, sizeof(pong_masked));
	check("5.7 ping \"Hello\", masked pong \"Hello\"", &lim_default, b, "ping:Hello pong:Hello",
	      NO_ALLOC);

	static uint8_t big[65536];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + (i >> 8));
	vec_reset(b);
	frame(b, 1, WS_OP_BINARY, big, 256);
	ok(b->len == 4 + 4 + 256 && (uint8_t)b->data[1] == 0xfe && b->data[2] == 1 &&
	       b->data[3] == 0,
	   "5.7 256-byte binary uses the 16-bit length");
	check("5.7 256 bytes binary in a single frame", &lim_default, b, fmt("B:%s", pl(big, 256)),
	      NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_BINARY, big, 65536);
	ok(b->len == 10 + 4 + 65536 && (uint8_t)b->data[1] == 0xff && b->data[7] == 1,
	   "5.7 64 KiB binary uses the 64-bit length");
	check("5.7 64 KiB binary in a single frame", &lim_default, b, fmt("B:%s", pl(big, 65536)),
	      NO_ALLOC);
}

/* ---- Autobahn 1: framing ---- */

static void test_ab1(buf *b)
{
	static const size_t lens[] = {0, 125, 126, 127, 128, 65535, 65536};
	static char star[65536];
	static uint8_t fe[65536];
	memset(star, '*', sizeof(star));
	memset(fe, 0xfe, sizeof(fe));

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		vec_reset(b);
		frame(b, 1, WS_OP_TEXT, star, lens[i]);
		check(fmt("1.1.%zu text, %zu bytes", i + 1, lens[i]), &lim_default, b,
		      fmt("T:%s", pl(star, lens[i])), NO_ALLOC);
		vec_reset(b);
		frame(b, 1, WS_OP_BINARY, fe, lens[i]);
		check(fmt("1.2.%zu binary, %zu bytes", i + 1, lens[i]), &lim_default, b,
		      fmt("B:%s", pl(fe, lens[i])), NO_ALLOC);
	}
	/* 1.1.8 / 1.2.8 (65536 bytes in 997-byte chops) are among the chop sizes. */
}

/* ---- Autobahn 2: ping and pong ---- */

static void test_ab2(buf *b)
{
	static const uint8_t bin[] = {0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff};
	uint8_t p125[126];
	memset(p125, 0xfe, sizeof(p125));

	vec_reset(b);
	frame(b, 1, WS_OP_PING, "", 0);
	check("2.1 ping without payload", &lim_default, b, "ping:", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 1, WS_OP_PING, "Hello, world!");
	check("2.2 ping with small text payload", &lim_default, b, "ping:Hello, world!", NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_PING, bin, sizeof(bin));
	check("2.3 ping with small binary payload", &lim_default, b,
	      fmt("ping:%s", pl(bin, sizeof(bin))), NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_PING, p125, 125);
	check("2.4 ping with 125-byte payload", &lim_default, b, fmt("ping:%s", pl(p125, 125)),
	      NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_PING, p125, 126);
	check("2.5 ping with 126-byte payload", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_PONG, "", 0);
	check("2.7 unsolicited pong without payload", &lim_default, b, "pong:", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 1, WS_OP_PONG, "unsolicited pong payload");
	check("2.8 unsolicited pong with payload", &lim_default, b, "pong:unsolicited pong payload",
	      NO_ALLOC);
	vec_reset(b);
	frame_s(b, 1, WS_OP_PONG, "unsolicited pong payload");
	frame_s(b, 1, WS_OP_PING, "ping payload");
	check("2.9 pong then ping", &lim_default, b,
	      "pong:unsolicited pong payload ping:ping payload", NO_ALLOC);
	vec_reset(b);
	buf want;
	buf_init(&want, 0);
	for (int i = 0; i < 10; i++) {
		frame_s(b, 1, WS_OP_PING, fmt("payload-%d", i));
		buf_append_cstr(&want, fmt("%sping:payload-%d", i ? " " : "", i));
	}
	buf_append_byte(&want, 0);
	check("2.10/2.11 ten pings", &lim_default, b, want.data, NO_ALLOC);
	buf_dispose(&want);
	vec_reset(b);
	header_only(b, 0x89, 5, 2);
	buf_append(b, "Hello", 5);
	check("ping with a 16-bit length field", &lim_default, b, "error:1002", NO_ALLOC);
}

/* ---- Autobahn 3: reserved bits ---- */

static void test_ab3(buf *b)
{
	static const struct {
		const char *name;
		uint8_t b0;
	} cases[] = {
	    {"3.1 text with RSV1", 0x80 | 0x40 | WS_OP_TEXT},
	    {"3.2 text with RSV2", 0x80 | 0x20 | WS_OP_TEXT},
	    {"3.3 text with RSV3", 0x80 | 0x10 | WS_OP_TEXT},
	    {"3.4 text with RSV1+RSV2", 0x80 | 0x60 | WS_OP_TEXT},
	    {"3.5 binary with RSV1+RSV3", 0x80 | 0x50 | WS_OP_BINARY},
	    {"3.6 ping with RSV2+RSV3", 0x80 | 0x30 | WS_OP_PING},
	    {"3.7 close with all RSV bits", 0x80 | 0x70 | WS_OP_CLOSE},
	    {"continuation with RSV1", 0x80 | 0x40 | WS_OP_CONT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vec_reset(b);
		frame_s(b, 1, WS_OP_TEXT, "Hello, world!");
		if ((cases[i].b0 & 0x0f) == WS_OP_CONT)
			frame_s(b, 0, WS_OP_TEXT, "frag");
		frame_b0(b, cases[i].b0, 1, "\x03\xe8", 2);
		frame(b, 1, WS_OP_PING, "", 0);
		check(cases[i].name, &lim_default, b, "T:Hello, world! error:1002", 0);
	}
}

/* ---- Autobahn 4: opcodes ---- */

static void test_ab4(buf *b)
{
	static const int ops[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		vec_reset(b);
		frame_b0(b, (uint8_t)(0x80 | ops[i]), 1, "", 0);
		check(fmt("4.%d.1 reserved opcode %d", ops[i] < 8 ? 1 : 2, ops[i]), &lim_default, b,
		      "error:1002", NO_ALLOC);
		vec_reset(b);
		frame_s(b, 1, WS_OP_TEXT, "Hello, world!");
		frame_b0(b, (uint8_t)(0x80 | ops[i]), 1, "reserved opcode payload", 23);
		frame(b, 1, WS_OP_PING, "", 0);
		check(fmt("4.x.3 text, opcode %d with payload, ping", ops[i]), &lim_default, b,
		      "T:Hello, world! error:1002", NO_ALLOC);
	}
}

/* ---- Autobahn 5: fragmentation ---- */

static void test_ab5(buf *b)
{
	vec_reset(b);
	frame_s(b, 0, WS_OP_PING, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("5.1 ping in 2 fragments", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_PONG, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("5.2 pong in 2 fragments", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_CLOSE, "\x03\xe8");
	check("close with FIN=0", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("5.3-5.5 text in 2 fragments", &lim_default, b, "T:fragment1fragment2", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_BINARY, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("binary in 2 fragments", &lim_default, b, "B:fragment1fragment2", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 1, WS_OP_PING, "ping payload");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("5.6-5.8 text in 2 fragments with a ping between", &lim_default, b,
	      "ping:ping payload T:fragment1fragment2", 0);
	vec_reset(b);
	frame_s(b, 1, WS_OP_CONT, "non-continuation payload");
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("5.9-5.11 continuation FIN=1 with nothing to continue", &lim_default, b, "error:1002",
	      NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_CONT, "non-continuation payload");
	frame_s(b, 1, WS_OP_TEXT, "Hello, world!");
	check("5.12-5.14 continuation FIN=0 with nothing to continue", &lim_default, b,
	      "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	frame_s(b, 0, WS_OP_CONT, "fragment3");
	frame_s(b, 1, WS_OP_TEXT, "fragment4");
	check("5.15 message, then a continuation without start", &lim_default, b,
	      "T:fragment1fragment2 error:1002", 0);
	vec_reset(b);
	for (int i = 0; i < 2; i++) {
		frame_s(b, 0, WS_OP_CONT, "fragment1");
		frame_s(b, 0, WS_OP_TEXT, "fragment2");
		frame_s(b, 1, WS_OP_CONT, "fragment3");
	}
	check("5.16 continuation FIN=0 first", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 1, WS_OP_CONT, "fragment1");
	frame_s(b, 0, WS_OP_TEXT, "fragment2");
	frame_s(b, 1, WS_OP_CONT, "fragment3");
	check("5.17 continuation FIN=1 first", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 1, WS_OP_TEXT, "fragment2");
	check("5.18 text FIN=0 then text FIN=1", &lim_default, b, "error:1002", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 0, WS_OP_BINARY, "fragment2");
	check("text FIN=0 then binary", &lim_default, b, "error:1002", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	frame_s(b, 0, WS_OP_CONT, "fragment2");
	frame_s(b, 1, WS_OP_PING, "pongme 1!");
	frame_s(b, 0, WS_OP_CONT, "fragment3");
	frame_s(b, 0, WS_OP_CONT, "fragment4");
	frame_s(b, 1, WS_OP_PING, "pongme 2!");
	frame_s(b, 1, WS_OP_PONG, "unsolicited");
	frame_s(b, 1, WS_OP_CONT, "fragment5");
	frame_s(b, 1, WS_OP_TEXT, "after");
	check("5.19/5.20 text in 5 fragments with pings between", &lim_default, b,
	      fmt("ping:pongme 1! ping:pongme 2! pong:unsolicited T:%s T:after",
	          pl("fragment1fragment2fragment3fragment4fragment5", 45)),
	      0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_BINARY, "ab");
	frame_s(b, 1, WS_OP_CONT, "cd");
	frame_s(b, 0, WS_OP_TEXT, "ef");
	frame_s(b, 1, WS_OP_CONT, "gh");
	frame_s(b, 1, WS_OP_BINARY, "ij");
	check("fragmented messages back to back", &lim_default, b, "B:abcd T:efgh B:ij", 0);
}

/* ---- Autobahn 6: UTF-8 ---- */

#define KOSME        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
#define KOSME_EDITED KOSME "\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
#define HELLO_UTF8   "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"

static void fragments_of(buf *b, int op, const char *s, size_t n, size_t size)
{
	size_t off = 0;
	do {
		size_t k = n - off < size ? n - off : size;
		frame(b, off + k == n, off ? WS_OP_CONT : op, s + off, k);
		off += k;
	} while (off < n);
}

static void test_ab6(buf *b)
{
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, "", 0);
	check("6.1.1 empty text message", &lim_default, b, "T:", NO_ALLOC);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, "", 0);
	frame(b, 0, WS_OP_CONT, "", 0);
	frame(b, 1, WS_OP_CONT, "", 0);
	check("6.1.2 three empty fragments", &lim_default, b, "T:", NO_ALLOC);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, "", 0);
	frame_s(b, 0, WS_OP_CONT, "middle frame payload");
	frame(b, 1, WS_OP_CONT, "", 0);
	check("6.1.3 empty, payload, empty", &lim_default, b, "T:middle frame payload", 0);

	const char *hello = HELLO_UTF8;
	size_t hn = strlen(hello);
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, hello, hn);
	check("6.2.1 valid UTF-8 in one frame", &lim_default, b, fmt("T:%s", pl(hello, hn)),
	      NO_ALLOC);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, hello, 12);
	frame(b, 1, WS_OP_CONT, hello + 12, hn - 12);
	check("6.2.2 valid UTF-8 in 2 fragments on a code point boundary", &lim_default, b,
	      fmt("T:%s", pl(hello, hn)), 0);
	vec_reset(b);
	fragments_of(b, WS_OP_TEXT, hello, hn, 1);
	check("6.2.3 valid UTF-8 in 1-byte fragments", &lim_default, b, fmt("T:%s", pl(hello, hn)),
	      0);
	vec_reset(b);
	fragments_of(b, WS_OP_TEXT, KOSME, strlen(KOSME), 1);
	check("6.2.4 kosme in 1-byte fragments", &lim_default, b,
	      fmt("T:%s", pl(KOSME, strlen(KOSME))), 0);

	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, KOSME_EDITED);
	check("6.3.1 invalid UTF-8 in one frame", &lim_default, b, "error:1007", NO_ALLOC);
	vec_reset(b);
	fragments_of(b, WS_OP_TEXT, KOSME_EDITED, strlen(KOSME_EDITED), 1);
	check("6.3.2 invalid UTF-8 in 1-byte fragments", &lim_default, b, "error:1007", 0);

	/* 6.4: the second part makes the text invalid; it must fail there,
	 * before the third part is sent. The vectors end before PART3. */
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, KOSME);
	frame_s(b, 0, WS_OP_CONT, "\xf4\x90\x80\x80");
	check("6.4.1 fail fast: invalid fragment", &lim_default, b, "error:1007", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, KOSME);
	frame_s(b, 0, WS_OP_CONT, "\xf4\x90");
	check("6.4.2 fail fast: fragment ending at the invalid byte", &lim_default, b, "error:1007",
	      0);
	/* 6.4.3/6.4.4: one frame of 21 bytes arriving in chops; the chops after
	 * the invalid byte never come. */
	static const char part[] = KOSME "\xf4\x90\x80\x80"
	                                 "edited";
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, part, sizeof(part) - 1);
	b->len -= 6;
	check("6.4.3 fail fast inside an incomplete frame", &lim_default, b, "error:1007",
	      NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, part, sizeof(part) - 1);
	b->len -= 8;
	check("6.4.4 fail fast inside an incomplete frame, cut at the bad byte", &lim_default, b,
	      "error:1007", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "x");
	frame(b, 1, WS_OP_CONT, part, sizeof(part) - 1);
	b->len -= 8;
	check("fail fast inside an incomplete continuation", &lim_default, b, "error:1007", 0);
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, part, sizeof(part) - 1);
	b->len -= 10;
	check("valid prefix of an incomplete frame waits", &lim_default, b, "rest=17", NO_ALLOC);

	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "ab\xe2");
	frame_s(b, 1, WS_OP_PING, "between");
	frame_s(b, 1, WS_OP_CONT, "\x82\xac");
	check("code point split across fragments, ping between", &lim_default, b,
	      fmt("ping:between T:%s", pl("ab\xe2\x82\xac", 5)), 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "ab\xe2");
	frame_s(b, 1, WS_OP_CONT, "\x82");
	check("message ends inside a code point", &lim_default, b, "error:1007", 0);
	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "ab\xe2\x82");
	check("single frame ends inside a code point", &lim_default, b, "error:1007", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 1, WS_OP_BINARY, KOSME_EDITED);
	check("binary messages are not validated", &lim_default, b,
	      fmt("B:%s", pl(KOSME_EDITED, strlen(KOSME_EDITED))), NO_ALLOC);

	/* A selection of 6.5-6.22, each in one frame and in 1-byte fragments. */
	static const char *const good[] = {"hello\xf0\xa4\xad\xa2world",
	                                   "\xf4\x8f\xbf\xbf",
	                                   "\xed\x9f\xbf",
	                                   "\xee\x80\x80",
	                                   "\xef\xbf\xbf",
	                                   "\xf0\x90\x80\x80"};
	static const char *const bad[] = {"\xf4\x90\x80\x80",
	                                  "\x80\xbf",
	                                  "\xc0\x20",
	                                  "\xe0\x80\xaf",
	                                  "\xf0\x8f\xbf\xbf",
	                                  "\xed\xa0\x80",
	                                  "\xed\xbf\xbf\xed\xa0\x80",
	                                  "\xfe",
	                                  "\xf8\x88\x80\x80\x80",
	                                  "\xf7\xbf\xbf\xbf",
	                                  "\xc1\xbf"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = strlen(good[i]);
		vec_reset(b);
		frame(b, 1, WS_OP_TEXT, good[i], n);
		fragments_of(b, WS_OP_TEXT, good[i], n, 1);
		check(fmt("6.x valid sequence %zu", i), &lim_default, b,
		      fmt("T:%s T:%s", pl(good[i], n), pl(good[i], n)), 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vec_reset(b);
		frame_s(b, 1, WS_OP_TEXT, bad[i]);
		check(fmt("6.x invalid sequence %zu in one frame", i), &lim_default, b,
		      "error:1007", NO_ALLOC);
		vec_reset(b);
		fragments_of(b, WS_OP_TEXT, bad[i], strlen(bad[i]), 1);
		check(fmt("6.x invalid sequence %zu in 1-byte fragments", i), &lim_default, b,
		      "error:1007", 0);
	}
}

/* ---- Autobahn 7: closing ---- */

static void test_ab7(buf *b)
{
	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "Hello World!");
	close_frame(b, 1000, "", 0);
	check("7.1.1 message then close", &lim_default, b, "T:Hello World! close:1000:", NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, "", 0);
	frame_s(b, 1, WS_OP_PING, "Hello World!");
	frame_s(b, 1, WS_OP_TEXT, "Hello World!");
	close_frame(b, 1000, "", 0);
	check("7.1.2-7.1.4 nothing is read after a close", &lim_default, b,
	      "close:1000:", NO_ALLOC);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "fragment1");
	close_frame(b, 1000, "", 0);
	frame_s(b, 1, WS_OP_CONT, "fragment2");
	check("7.1.5 close between fragments", &lim_default, b, "close:1000:", 0);
	static char big[131072];
	memset(big, '*', sizeof(big));
	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, big, sizeof(big));
	frame_s(b, 1, WS_OP_PING, "Hello World!");
	close_frame(b, 1000, "", 0);
	check("7.1.6 large message, ping, close", &lim_default, b,
	      fmt("T:%s ping:Hello World! close:1000:", pl(big, sizeof(big))), NO_ALLOC);

	vec_reset(b);
	frame(b, 1, WS_OP_CLOSE, "", 0);
	check("7.3.1 close with empty body", &lim_default, b, "close:1005:", NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_CLOSE, "\x03", 1);
	check("7.3.2 close with 1-byte body", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, "", 0);
	check("7.3.3 close with code only", &lim_default, b, "close:1000:", NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, "Hello World!", 12);
	check("7.3.4 close with code and reason", &lim_default, b, "close:1000:Hello World!",
	      NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, big, 123);
	check("7.3.5 close with 123-byte reason", &lim_default, b,
	      fmt("close:1000:%s", pl(big, 123)), NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, big, 124);
	check("7.3.6 close with 126-byte body", &lim_default, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1000, KOSME_EDITED, strlen(KOSME_EDITED));
	check("7.5.1 close reason not valid UTF-8", &lim_default, b, "error:1007", NO_ALLOC);
	vec_reset(b);
	close_frame(b, 1001, KOSME, strlen(KOSME));
	check("close reason valid UTF-8", &lim_default, b,
	      fmt("close:1001:%s", pl(KOSME, strlen(KOSME))), NO_ALLOC);

	static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
	                                1010, 1011, 3000, 3999, 4000, 4999};
	static const uint16_t bad[] = {0,    999,  1004, 1005, 1006, 1012, 1013, 1014,
	                               1015, 1016, 1100, 2000, 2999, 5000, 65535};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		vec_reset(b);
		close_frame(b, good[i], "", 0);
		check(fmt("7.7 valid close code %u", good[i]), &lim_default, b,
		      fmt("close:%u:", good[i]), NO_ALLOC);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vec_reset(b);
		close_frame(b, bad[i], "", 0);
		check(fmt("7.9/7.13 invalid close code %u", bad[i]), &lim_default, b, "error:1002",
		      NO_ALLOC);
	}
}

/* ---- Autobahn 9 and 10: limits of size, many fragments ---- */

static void test_ab9_10(buf *b)
{
	static char text[1 << 20];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (char)('a' + i % 26);

	vec_reset(b);
	frame(b, 1, WS_OP_TEXT, text, sizeof(text));
	check("9.1 1 MiB text in one frame (= max_frame)", &lim_default, b,
	      fmt("T:%s", pl(text, sizeof(text))), NO_ALLOC);
	vec_reset(b);
	fragments_of(b, WS_OP_TEXT, text, 131072, 64);
	check("9.3 128 KiB text in 64-byte fragments", &lim_default, b,
	      fmt("T:%s", pl(text, 131072)), 0);
	vec_reset(b);
	fragments_of(b, WS_OP_BINARY, text, 1 << 20, 65536);
	check("9.4 1 MiB binary in 64 KiB fragments", &lim_default, b,
	      fmt("B:%s", pl(text, 1 << 20)), 0);
	vec_reset(b);
	fragments_of(b, WS_OP_TEXT, text, 65536, 1300);
	check("10.1.1 64 KiB text auto-fragmented at 1300 bytes", &lim_default, b,
	      fmt("T:%s", pl(text, 65536)), 0);
}

/* ---- HARDENING: huge lengths, fragment bombs ---- */

static void test_hardening(buf *b)
{
	static char data[8193];
	memset(data, 'x', sizeof(data));

	vec_reset(b);
	header_only(b, 0x82, 1ull << 63, 8);
	check("length 2^63", &lim_small, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x82, UINT64_MAX, 8);
	check("length 2^64-1", &lim_small, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x82, UINT64_MAX, 8);
	check("length 2^64-1 without limits", &(ws_limits){0, 0, 0}, b, "error:1002", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x82, (1ull << 63) - 1, 8);
	check("length 2^63-1", &lim_small, b, "error:1009", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x82, (1ull << 63) - 1, 8);
	check("length 2^63-1 without limits waits", &(ws_limits){0, 0, 0}, b, "rest=14", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x81, 4097, 8);
	check("max_frame+1, 64-bit length", &lim_small, b, "error:1009", NO_ALLOC);
	vec_reset(b);
	header_only(b, 0x81, 4097, 2);
	check("max_frame+1, 16-bit length", &lim_small, b, "error:1009", NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_BINARY, data, 4097);
	check("max_frame+1 with its payload", &lim_small, b, "error:1009", NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_BINARY, data, 4096);
	check("exactly max_frame", &lim_small, b, fmt("B:%s", pl(data, 4096)), NO_ALLOC);
	vec_reset(b);
	frame(b, 1, WS_OP_PING, data, 125);
	frame(b, 0, WS_OP_TEXT, data, 10);
	frame(b, 1, WS_OP_PONG, data, 100);
	frame(b, 1, WS_OP_CONT, data, 10);
	check("control frames up to 125 bytes pass limits below 125", &(ws_limits){16, 32, 4}, b,
	      fmt("ping:%s pong:%s T:%s", pl(data, 125), pl(data, 100), pl(data, 20)), 0);
	vec_reset(b);
	frame(b, 1, WS_OP_BINARY, data, 2);
	frame_enc(b, 0x82, 1, "yy", 2, 8);
	frame_enc(b, 0x82, 1, "zz", 2, 2);
	check("non-minimal length encodings are accepted", &lim_small, b, "B:xx B:yy B:zz",
	      NO_ALLOC);

	vec_reset(b);
	frame(b, 0, WS_OP_BINARY, data, 4096);
	frame(b, 0, WS_OP_CONT, data, 4096);
	frame(b, 1, WS_OP_CONT, data, 1);
	check("max_message+1 over three fragments", &lim_small, b, "error:1009", 0);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, data, 4096);
	frame(b, 1, WS_OP_CONT, data, 4096);
	check("exactly max_message over two fragments", &lim_small, b, fmt("T:%s", pl(data, 8192)),
	      0);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, data, 10);
	header_only(b, 0x80, (1ull << 63) - 1, 8);
	check("continuation announcing 2^63-1", &lim_small, b, "error:1009", 0);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, data, 10);
	header_only(b, 0x80, UINT64_MAX - 5, 8);
	check("continuation announcing 2^64-6, no limits", &(ws_limits){0, 0, 0}, b, "error:1002",
	      0);

	/* 16 fragments allowed: exactly 16 pass, 17 do not. */
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "a");
	for (int i = 0; i < 14; i++)
		frame_s(b, 0, WS_OP_CONT, "b");
	frame_s(b, 1, WS_OP_CONT, "c");
	check("exactly max_fragments", &lim_small, b, "T:abbbbbbbbbbbbbbc", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "a");
	for (int i = 0; i < 15; i++)
		frame_s(b, 0, WS_OP_CONT, "b");
	frame_s(b, 1, WS_OP_CONT, "c");
	check("max_fragments+1", &lim_small, b, "error:1008", 0);
	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "a");
	for (int i = 0; i < 15; i++) {
		frame_s(b, 0, WS_OP_CONT, "b");
		frame_s(b, 1, WS_OP_PING, "p");
	}
	frame_s(b, 1, WS_OP_CONT, "c");
	check("control frames do not count as fragments", &lim_small, b,
	      "ping:p ping:p ping:p ping:p ping:p ping:p ping:p ping:p ping:p ping:p "
	      "ping:p ping:p ping:p ping:p ping:p error:1008",
	      0);

	ws_limits lim_1000 = {4096, 1 << 20, 1000};
	vec_reset(b);
	frame_s(b, 0, WS_OP_BINARY, "a");
	for (int i = 1; i < 100000; i++)
		frame_s(b, 0, WS_OP_CONT, "a");
	check("100 000 one-byte continuations", &lim_1000, b, "error:1008", 0);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, "", 0);
	for (int i = 1; i < 100000; i++)
		frame(b, 0, WS_OP_CONT, "", 0);
	check("endless empty continuations", &lim_1000, b, "error:1008", NO_ALLOC);
	vec_reset(b);
	frame(b, 0, WS_OP_TEXT, "", 0);
	for (int i = 1; i < 3000; i++)
		frame(b, 0, WS_OP_CONT, "", 0);
	check("empty continuations, fragment limit off: waits", &(ws_limits){4096, 8192, 0}, b, "",
	      NO_ALLOC);
}

/* ---- direct API checks ---- */

static int feed1(ws_reader *r, buf *in, size_t *used, ws_event *ev)
{
	return ws_reader_feed(r, (uint8_t *)in->data, in->len, used, ev);
}

static void test_api(buf *b)
{
	ws_reader r;
	ws_event ev;
	size_t used;

	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "in place");
	ws_reader_init(&r, &lim_default);
	is_int(feed1(&r, b, &used, &ev), WS_EV_MESSAGE, "unfragmented message");
	ok(ev.payload.base == b->data + 6 && memcmp(b->data + 6, "in place", 8) == 0,
	   "unfragmented payload points into the input, unmasked in place");
	is_int(used, b->len, "whole frame consumed");
	ws_reader_dispose(&r);

	vec_reset(b);
	frame_s(b, 0, WS_OP_TEXT, "frag");
	size_t first = b->len;
	frame_s(b, 1, WS_OP_CONT, "ment");
	ws_reader_init(&r, &lim_default);
	is_int(feed1(&r, b, &used, &ev), WS_EV_NEED_MORE, "non-final fragment: NEED_MORE");
	is_int(used, first, "... with the fragment consumed");
	is_int(r.step, WS_RD_MESSAGE, "... and a message in progress");
	is_int(ws_reader_feed(&r, (uint8_t *)b->data + first, b->len - first, &used, &ev),
	       WS_EV_MESSAGE, "final fragment delivers");
	ok(ev.payload.base == r.msg.data, "reassembled payload points into the reader");
	ok(r.msg.cap > 0, "reassembly buffer held while the message is in use");
	is_int(ws_reader_feed(&r, (uint8_t *)b->data, 0, &used, &ev), WS_EV_NEED_MORE,
	       "empty input: NEED_MORE");
	is_int(r.msg.cap, 0, "reassembly buffer released at the next call");
	ws_reader_dispose(&r);

	vec_reset(b);
	close_frame(b, 1000, "bye", 3);
	ws_reader_init(&r, &lim_default);
	is_int(feed1(&r, b, &used, &ev), WS_EV_CLOSE, "close");
	is_mem(ev.payload.base, ev.payload.len,
	       "\x03\xe8"
	       "bye",
	       5, "close event carries the whole body");
	is_int(feed1(&r, b, &used, &ev), WS_EV_ERROR, "fed after close: ERROR");
	is_int(used, 0, "... nothing consumed");
	ws_reader_dispose(&r);

	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "\xff");
	ws_reader_init(&r, &lim_default);
	is_int(feed1(&r, b, &used, &ev), WS_EV_ERROR, "invalid text: ERROR");
	is_int(ev.close_code, 1007, "... 1007");
	is_int(used, 0, "... nothing consumed");
	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "ok");
	is_int(feed1(&r, b, &used, &ev), WS_EV_ERROR, "fed after an error: ERROR again");
	is_int(ev.close_code, 1007, "... with the same code");
	ws_reader_dispose(&r);

	/* A caller that breaks the contract and presents a different partial
	 * frame: the early scan restarts, and the complete frame decides. */
	buf other;
	buf_init(&other, 0);
	vec_reset(b);
	frame_s(b, 1, WS_OP_TEXT, "valid text, long enough");
	frame_s(&other, 1, WS_OP_TEXT, "\xce\xba\xce\xba\xce\xba\xff");
	ws_reader_init(&r, &lim_default);
	is_int(ws_reader_feed(&r, (uint8_t *)b->data, 20, &used, &ev), WS_EV_NEED_MORE,
	       "partial valid text frame waits");
	is_int(ws_reader_feed(&r, (uint8_t *)other.data, 10, &used, &ev), WS_EV_NEED_MORE,
	       "another partial frame (valid so far) waits");
	is_int(ws_reader_feed(&r, (uint8_t *)other.data, other.len, &used, &ev), WS_EV_ERROR,
	       "its invalid end is found");
	ws_reader_dispose(&r);
	buf_dispose(&other);

	ws_limits zero = {0, 0, 0};
	vec_reset(b);
	header_only(b, 0x82, 1ull << 62, 8);
	ws_reader_init(&r, &zero);
	is_int(feed1(&r, b, &used, &ev), WS_EV_NEED_MORE, "limits of 0 mean unlimited");
	is_int(r.msg.cap, 0, "... and nothing is allocated in advance");
	ws_reader_dispose(&r);
}

/* ---- encoders ---- */

static void test_encode(void)
{
	uint8_t h[WS_FRAME_HEADER_MAX];
	size_t n;

	n = ws_frame_header_encode(h, 1, WS_OP_TEXT, 5);
	is_mem(h, n, "\x81\x05", 2, "5.7 \"Hello\" header");
	n = ws_frame_header_encode(h, 0, WS_OP_TEXT, 3);
	is_mem(h, n, "\x01\x03", 2, "5.7 first fragment header");
	n = ws_frame_header_encode(h, 1, WS_OP_CONT, 2);
	is_mem(h, n, "\x80\x02", 2, "5.7 last fragment header");
	n = ws_frame_header_encode(h, 1, WS_OP_PING, 5);
	is_mem(h, n, "\x89\x05", 2, "5.7 ping header");
	n = ws_frame_header_encode(h, 1, WS_OP_PONG, 0);
	is_mem(h, n, "\x8a\x00", 2, "empty pong header");
	n = ws_frame_header_encode(h, 1, WS_OP_BINARY, 256);
	is_mem(h, n, "\x82\x7e\x01\x00", 4, "5.7 256-byte binary header");
	n = ws_frame_header_encode(h, 1, WS_OP_BINARY, 65536);
	is_mem(h, n, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, "5.7 64 KiB binary header");
	n = ws_frame_header_encode(h, 1, WS_OP_TEXT, 125);
	is_mem(h, n, "\x81\x7d", 2, "125 fits in 7 bits");
	n = ws_frame_header_encode(h, 1, WS_OP_TEXT, 126);
	is_mem(h, n, "\x81\x7e\x00\x7e", 4, "126 needs 16 bits");
	n = ws_frame_header_encode(h, 1, WS_OP_TEXT, 65535);
	is_mem(h, n, "\x81\x7e\xff\xff", 4, "65535 fits in 16 bits");
	n = ws_frame_header_encode(h, 1, WS_OP_TEXT, (1ull << 63) - 1);
	is_mem(h, n, "\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10, "2^63-1 in 64 bits");

	/* Round trip through the reader, with the mask bit and a key added. */
	static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
	static uint8_t frm[70000 + 14];
	size_t fails = 0;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		ws_reader r;
		ws_event ev;
		size_t used;
		n = ws_frame_header_encode(frm, 1, WS_OP_BINARY, lens[i]);
		frm[1] |= 0x80;
		memset(frm + n, 0, 4 + lens[i]);
		ws_reader_init(&r, &lim_default);
		if (ws_reader_feed(&r, frm, n + 4 + lens[i], &used, &ev) != WS_EV_MESSAGE ||
		    ev.payload.len != lens[i] || used != n + 4 + lens[i])
			fails++;
		ws_reader_dispose(&r);
	}
	is_int(fails, 0, "encoded headers parse back to their length");

	uint8_t body[WS_CONTROL_MAX];
	n = ws_close_body_encode(body, 1000, SLICE_NULL);
	is_mem(body, n, "\x03\xe8", 2, "close body: code only");
	n = ws_close_body_encode(body, 1001, SLICE_LIT("bye"));
	is_mem(body, n,
	       "\x03\xe9"
	       "bye",
	       5, "close body: code and reason");
	is_int(ws_close_body_encode(body, 1005, SLICE_LIT("x")), 0, "1005 is never sent");
	is_int(ws_close_body_encode(body, 1006, SLICE_NULL), 0, "1006 is never sent");
	is_int(ws_close_body_encode(body, 1015, SLICE_NULL), 0, "1015 is never sent");
	is_int(ws_close_body_encode(body, 999, SLICE_NULL), 0, "999 is never sent");
	char reason[300];
	memset(reason, 'r', sizeof(reason));
	n = ws_close_body_encode(body, 3000, slice_make(reason, sizeof(reason)));
	is_int(n, 125, "long reason truncated to a 125-byte body");
	for (int i = 0; i < 61; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	memcpy(reason + 122, "\xe2\x82\xac", 3);
	n = ws_close_body_encode(body, 1000, slice_make(reason, 125));
	is_int(n, 124, "truncation does not split a code point");
	ok(utf8_is_valid(body + 2, n - 2), "... and leaves valid UTF-8");
	n = ws_close_body_encode(body, 1000, slice_make(reason, 122));
	is_int(n, 124, "a 122-byte reason is kept whole");
	n = ws_close_body_encode(body, 1000, slice_make(reason, 123));
	is_int(n, 2, "a reason ending inside a code point is dropped");
	n = ws_close_body_encode(body, 1000, SLICE_LIT("bad \xff reason"));
	is_int(n, 2, "an invalid reason is dropped");

	ws_reader r;
	ws_event ev;
	size_t used;
	uint8_t frm2[WS_CONTROL_MAX + 6] = {0x88, 0x80};
	n = ws_close_body_encode(body, 4321, SLICE_LIT("round trip"));
	frm2[1] = (uint8_t)(0x80 | n);
	memcpy(frm2 + 6, body, n);
	ws_reader_init(&r, &lim_default);
	is_int(ws_reader_feed(&r, frm2, 6 + n, &used, &ev), WS_EV_CLOSE, "encoded close parses");
	ok(ev.close_code == 4321 && slice_eq(ev.close_reason, SLICE_LIT("round trip")),
	   "... to the same code and reason");
	ws_reader_dispose(&r);

	static const struct {
		uint16_t code;
		int valid;
	} codes[] = {{0, 0},    {999, 0},  {1000, 1}, {1001, 1}, {1002, 1}, {1003, 1},
	             {1004, 0}, {1005, 0}, {1006, 0}, {1007, 1}, {1008, 1}, {1009, 1},
	             {1010, 1}, {1011, 1}, {1012, 0}, {1015, 0}, {1016, 0}, {2999, 0},
	             {3000, 1}, {3999, 1}, {4000, 1}, {4999, 1}, {5000, 0}, {65535, 0}};
	fails = 0;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (ws_close_code_valid(codes[i].code) != codes[i].valid) {
			printf("# close code %u\n", codes[i].code);
			fails++;
		}
	is_int(fails, 0, "close code table (valid 1000-1003, 1007-1011, 3000-4999)");
	size_t count = 0;
	for (uint32_t c = 0; c <= 0xffff; c++)
		count += (size_t)ws_close_code_valid((uint16_t)c);
	is_int(count, 4 + 5 + 2000, "exactly 2009 codes are valid");
}

int main(void)
{
	buf b;
	buf_init(&b, 0);
	test_rfc_examples(&b);
	test_ab1(&b);
	test_ab2(&b);
	test_ab3(&b);
	test_ab4(&b);
	test_ab5(&b);
	test_ab6(&b);
	test_ab7(&b);
	test_ab9_10(&b);
	test_hardening(&b);
	test_api(&b);
	test_encode();
	buf_dispose(&b);
	return tap_done();
}
