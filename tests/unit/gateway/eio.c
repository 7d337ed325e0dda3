/* Tests gateway/eio.c: Engine.IO v4 packets, polling payloads, base64. */
#include "gateway/eio.h"
#include "tap.h"

#define S(lit) SLICE_LIT(lit)

/* Renders bytes for a TAP description: printable ASCII as it is, anything
 * else as \xNN, so that a vector holding a newline or a NUL cannot break
 * the TAP stream. Rotates through a few static buffers. */
static const char *show(slice s)
{
	static char out[4][512];
	static unsigned k;
	char *o = out[k++ % 4];
	size_t n = 0;
	for (size_t i = 0; i < s.len && n + 5 < sizeof out[0]; i++) {
		unsigned char c = (unsigned char)s.base[i];
		if (c >= 0x20 && c < 0x7f)
			o[n++] = (char)c;
		else
			n += (size_t)snprintf(o + n, sizeof out[0] - n, "\\x%02x", c);
	}
	o[n] = 0;
	return o;
}

/* Parses a copy of msg that ends at a PROT_NONE page, so any read past the
 * end crashes the test; the packet's data is copied out before unguarding. */
static int parse_guarded(slice msg, eio_packet *pkt, char *data, size_t cap)
{
	char *g = tap_guard(msg.base, msg.len);
	int rc = eio_parse_text(slice_make(g, msg.len), pkt);
	if (rc == 0) {
		if (pkt->data.len > cap)
			rc = -2;
		else if (pkt->data.len)
			memcpy(data, pkt->data.base, pkt->data.len);
		pkt->data.base = data;
	}
	tap_unguard(g, msg.len);
	return rc;
}

static void test_parse_text(void)
{
	static const struct {
		slice in;
		int type;
		slice data;
		int binary;
	} good[] = {
	    {S("4hello"), EIO_MESSAGE, S("hello"), 0},
	    {S("2probe"), EIO_PING, S("probe"), 0},
	    {S("3probe"), EIO_PONG, S("probe"), 0},
	    {S("2"), EIO_PING, S(""), 0},
	    {S("3"), EIO_PONG, S(""), 0},
	    {S("1"), EIO_CLOSE, S(""), 0},
	    {S("5"), EIO_UPGRADE, S(""), 0},
	    {S("6"), EIO_NOOP, S(""), 0},
	    {S("0{\"sid\":\"x\"}"), EIO_OPEN, S("{\"sid\":\"x\"}"), 0},
	    {S("42[\"foo\"]"), EIO_MESSAGE, S("2[\"foo\"]"), 0},
	    {S("4\xe2\x82\xac"), EIO_MESSAGE, S("\xe2\x82\xac"), 0},
	    {S("4"), EIO_MESSAGE, S(""), 0},
	    {S("bAQIDBA=="), EIO_MESSAGE, S("AQIDBA=="), 1},
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		eio_packet pkt;
		char data[64];
		int rc = parse_guarded(good[i].in, &pkt, data, sizeof data);
		is_int(rc, 0, "parse_text '%s'", show(good[i].in));
		is_int(pkt.type, good[i].type, "  type");
		is_mem(pkt.data.base, pkt.data.len, good[i].data.base, good[i].data.len, "  data");
		ok(pkt.binary == good[i].binary && pkt.b64 == good[i].binary, "  binary flags");
		/* Every prefix, each against its own guard page: never a crash,
		 * and a non-empty prefix of a good packet is a good packet. */
		int prefixes_ok = 1;
		for (size_t n = 0; n <= good[i].in.len; n++) {
			rc = parse_guarded(slice_make(good[i].in.base, n), &pkt, data, sizeof data);
			prefixes_ok &= (n == 0) ? rc == -1 : rc == 0;
		}
		ok(prefixes_ok, "  every prefix parses or fails cleanly");
	}

	static const slice bad[] = {S(""),     S("7"),  S("9hello"), S("x"),    S("/"),
	                            S("\x1e"), S(" 4"), S("B"),      S("\xff"), S("\0004")};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		eio_packet pkt;
		char data[16];
		is_int(parse_guarded(bad[i], &pkt, data, sizeof data), -1,
		       "parse_text rejects bad vector %zu", i);
	}
}

static void test_parse_binary(void)
{
	eio_packet pkt;
	eio_parse_binary(S("\x01\x02\x03\x04"), &pkt);
	ok(pkt.type == EIO_MESSAGE && pkt.binary == 1 && pkt.b64 == 0, "binary frame is a MESSAGE");
	is_mem(pkt.data.base, pkt.data.len, "\x01\x02\x03\x04", 4,
	       "binary frame data is the frame");
	eio_parse_binary(S(""), &pkt);
	ok(pkt.type == EIO_MESSAGE && pkt.binary && pkt.data.len == 0, "empty binary frame");
}

/* Runs the payload iterator over a guarded copy and renders what it saw:
 * one "<type><binary?'b':'t'>:<data>|" per packet, then "END" or "ERR". */
static void iterate(slice payload, char *trace, size_t cap)
{
	char *g = tap_guard(payload.base, payload.len);
	eio_payload_iter it;
	eio_packet pkt;
	size_t len = 0;
	int rc;
	eio_payload_init(&it, slice_make(g, payload.len));
	while ((rc = eio_payload_next(&it, &pkt)) == 1)
		len += (size_t)snprintf(trace + len, cap - len, "%c%c:%.*s|", pkt.type,
		                        pkt.b64 ? 'b' : 't', (int)pkt.data.len, pkt.data.base);
	snprintf(trace + len, cap - len, "%s", rc == 0 ? "END" : "ERR");
	/* The end state is sticky. */
	if (eio_payload_next(&it, &pkt) != rc)
		snprintf(trace + len, cap - len, "NOT-STICKY");
	tap_unguard(g, payload.len);
}

static void test_payload(void)
{
	static const struct {
		slice in;
		const char *trace;
	} v[] = {
	    /* The Engine.IO v4 examples. */
	    {S("4hello\x1e"
	       "4\xe2\x82\xac\x1e"
	       "bAQIDBA=="),
	     "4t:hello|4t:\xe2\x82\xac|4b:AQIDBA==|END"},
	    {S("4hello\x1e"
	       "4\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"),
	     "4t:hello|4t:\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac|END"},
	    {S("4hello\x1e"
	       "bAQID"),
	     "4t:hello|4b:AQID|END"},
	    {S("42[\"hello\"]\x1e"
	       "42[\"world\"]"),
	     "4t:2[\"hello\"]|4t:2[\"world\"]|END"},
	    {S("4hello"), "4t:hello|END"},
	    {S("2"), "2t:|END"},
	    {S("1"), "1t:|END"},
	    {S("6\x1e"
	       "6"),
	     "6t:|6t:|END"},
	    {S("b"), "4b:|END"},
	    /* Malformed. */
	    {S(""), "ERR"},
	    {S("\x1e"), "ERR"},
	    {S("4a\x1e"), "4t:a|ERR"},
	    {S("\x1e"
	       "4a"),
	     "ERR"},
	    {S("4a\x1e\x1e"
	       "4b"),
	     "4t:a|ERR"},
	    {S("4a\x1e"
	       "9b"),
	     "4t:a|ERR"},
	    {S("4a\x1e"
	       "4b\x1e"
	       "x"),
	     "4t:a|4t:b|ERR"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char trace[256];
		iterate(v[i].in, trace, sizeof trace);
		is_str(trace, v[i].trace, "payload vector %zu", i);
		/* Every prefix under a guard page must not crash. */
		for (size_t n = 0; n < v[i].in.len; n++)
			iterate(slice_make(v[i].in.base, n), trace, sizeof trace);
		ok(1, "  every prefix iterates without over-reading");
	}

	/* A zero-initialised iterator is a fresh one. */
	eio_payload_iter it = {.rest = S("4x")};
	eio_packet pkt;
	is_int(eio_payload_next(&it, &pkt), 1, "brace-initialised iterator works");
	is_int(eio_payload_next(&it, &pkt), 0, "  and ends");
}

static void test_encode(void)
{
	buf b;
	buf_init(&b, 0);
	static const char open_ws[] =
	    "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
	    "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}";
	is_int(eio_encode_open(&b, S("lv_VI97HAXpY6yYWAAAC"), 1, 25000, 20000, 1000000), 0,
	       "encode_open with upgrade");
	is_mem(b.data, b.len, open_ws, sizeof open_ws - 1, "  exact handshake");
	buf_reset(&b);
	static const char open_none[] =
	    "0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,"
	    "\"maxPayload\":0}";
	is_int(eio_encode_open(&b, S("abc"), 0, 300, 200, 0), 0, "encode_open without upgrade");
	is_mem(b.data, b.len, open_none, sizeof open_none - 1, "  exact handshake");
	buf_reset(&b);
	is_int(eio_encode_open(&b, S("x"), 1, UINT32_MAX, UINT32_MAX, UINT32_MAX), 0,
	       "encode_open with maximal numbers");
	ok(b.len > 0 && memmem(b.data, b.len, "\"maxPayload\":4294967295}", 24) != NULL,
	   "  numbers in full");

	static const slice bad_sids[] = {S(""),     S("a\"b"),     S("a\\b"),
	                                 S("a\nb"), S("\xc3\xa9"), S("a\x7f")};
	buf_append_cstr(&b, "keep");
	size_t keep = b.len;
	for (size_t i = 0; i < sizeof bad_sids / sizeof bad_sids[0]; i++)
		is_int(eio_encode_open(&b, bad_sids[i], 1, 1, 1, 1), -1, "bad sid %zu refused", i);
	is_int(b.len, keep, "  buffer untouched");

	buf_reset(&b);
	is_int(eio_encode_text(&b, EIO_PONG, S("probe")), 0, "encode_text pong");
	is_mem(b.data, b.len, "3probe", 6, "  3probe");
	is_int(eio_encode_text(&b, EIO_PING, S("")), 0, "encode_text empty ping");
	is_mem(b.data, b.len, "3probe2", 7, "  appended 2");
	is_int(eio_encode_text(&b, '7', S("x")), -1, "encode_text type 7 refused");
	is_int(eio_encode_text(&b, 4, S("x")), -1, "encode_text numeric 4 (not '4') refused");
	is_int(b.len, 7, "  buffer untouched");

	/* The limit holds and failures leave the buffer as it was. */
	buf small;
	buf_init(&small, 10);
	is_int(eio_encode_open(&small, S("abc"), 1, 1, 1, 1), -1, "encode_open past limit");
	is_int(small.len, 0, "  nothing half-written");
	is_int(eio_encode_text(&small, EIO_MESSAGE, S("123456789")), 0, "encode_text at limit");
	is_int(eio_encode_text(&small, EIO_MESSAGE, S("")), -1, "encode_text past limit");
	is_int(small.len, 10, "  length kept");
	buf_dispose(&small);
	buf_dispose(&b);
}

static void test_payload_append(void)
{
	buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "HTTP-head:");
	size_t start = b.len;
	is_int(eio_payload_append(&b, start, EIO_MESSAGE, S("hello"), 0), 0, "append first");
	is_int(eio_payload_append(&b, start, EIO_MESSAGE, S("\xe2\x82\xac"), 0), 0, "append text");
	is_int(eio_payload_append(&b, start, EIO_MESSAGE, S("\x01\x02\x03\x04"), 1), 0,
	       "append binary");
	static const char want[] = "HTTP-head:4hello\x1e"
	                           "4\xe2\x82\xac\x1e"
	                           "bAQIDBA==";
	is_mem(b.data, b.len, want, sizeof want - 1, "payload matches the spec example");

	char trace[128];
	iterate(slice_make(b.data + start, b.len - start), trace, sizeof trace);
	is_str(trace, "4t:hello|4t:\xe2\x82\xac|4b:AQIDBA==|END", "  and iterates back");

	size_t len = b.len;
	is_int(eio_payload_append(&b, start, EIO_PING, S("\x01"), 1), -1, "binary PING refused");
	is_int(eio_payload_append(&b, start, EIO_MESSAGE,
	                          S("a\x1e"
	                            "b"),
	                          0),
	       -1, "text with a separator refused");
	is_int(eio_payload_append(&b, start, 'x', S("a"), 0), -1, "bad type refused");
	is_int(eio_payload_append(&b, b.len + 1, EIO_MESSAGE, S("a"), 0), -1,
	       "payload_start past the end refused");
	is_int(b.len, len, "  buffer untouched");

	buf_reset(&b);
	is_int(eio_payload_append(&b, 0, EIO_NOOP, S(""), 0), 0, "lone noop");
	is_mem(b.data, b.len, "6", 1, "  no separator before the first packet");
	is_int(eio_payload_append(&b, 0, EIO_MESSAGE, S(""), 1), 0, "empty binary");
	is_mem(b.data, b.len,
	       "6\x1e"
	       "b",
	       3, "  is a bare b");

	buf small;
	buf_init(&small, 6);
	is_int(eio_payload_append(&small, 0, EIO_MESSAGE, S("ab"), 0), 0, "fits");
	is_int(eio_payload_append(&small, 0, EIO_MESSAGE, S("\x01"), 1), -1, "base64 past limit");
	is_int(eio_payload_append(&small, 0, EIO_MESSAGE, S("a"), 0), 0, "fits exactly");
	is_int(eio_payload_append(&small, 0, EIO_MESSAGE, S(""), 0), -1, "separator past limit");
	is_mem(small.data, small.len,
	       "4ab\x1e"
	       "4a",
	       6, "  nothing half-written");
	buf_dispose(&small);
	buf_dispose(&b);
}

static void test_base64(void)
{
	static const struct {
		slice bin, text;
	} v[] = {
	    {S(""), S("")},
	    {S("f"), S("Zg==")},
	    {S("fo"), S("Zm8=")},
	    {S("foo"), S("Zm9v")},
	    {S("foob"), S("Zm9vYg==")},
	    {S("fooba"), S("Zm9vYmE=")},
	    {S("foobar"), S("Zm9vYmFy")},
	    {S("\x01\x02\x03\x04"), S("AQIDBA==")},
	    {S("\x01\x02\x03"), S("AQID")},
	    {S("\xfb\xff\xbf"), S("+/+/")},
	    {S("\x00\x00"), S("AAA=")},
	};
	buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		buf_reset(&b);
		is_int(eio_base64_encode(&b, v[i].bin), 0, "encode vector %zu", i);
		is_mem(b.data, b.len, v[i].text.base, v[i].text.len, "  text");
		is_int(eio_base64_encoded_len(v[i].bin.len), v[i].text.len, "  encoded_len");
		buf_reset(&b);
		char *g = tap_guard(v[i].text.base, v[i].text.len);
		is_int(eio_base64_decode(&b, slice_make(g, v[i].text.len)), 0, "decode vector %zu",
		       i);
		tap_unguard(g, v[i].text.len);
		is_mem(b.data, b.len, v[i].bin.base, v[i].bin.len, "  bytes");
	}

	static const slice bad[] = {
	    S("Zg="),  S("Zg"),       S("Z"),        S("Z==="),     S("===="),    S("Zh=="),
	    S("Zm9="), S("Zm 9v"),    S("Zm9v\n"),   S("Zg==Zg=="), S("Zm9-"),    S("Zm9_"),
	    S("=Zm9"), S("Zg=a"),     S("Zm9v===="), S("Zm9\x00"),  S("Zm9\xc3"), S("AAA=AAAA"),
	    S("A=AA"), S("\r\nZm9v"), S("Zm9v=")};
	buf_reset(&b);
	buf_append_cstr(&b, "keep");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *g = tap_guard(bad[i].base, bad[i].len);
		is_int(eio_base64_decode(&b, slice_make(g, bad[i].len)), -1,
		       "decode rejects bad vector %zu", i);
		tap_unguard(g, bad[i].len);
	}
	is_mem(b.data, b.len, "keep", 4, "  buffer untouched");

	/* Every length and every byte value round-trips, and decoding the
	 * canonical text is the only way back. */
	unsigned char all[300];
	for (size_t i = 0; i < sizeof all; i++)
		all[i] = (unsigned char)(i * 7 + 3);
	int round = 1;
	buf d;
	buf_init(&d, 0);
	for (size_t n = 0; n <= sizeof all; n++) {
		buf_reset(&b);
		buf_reset(&d);
		round &= eio_base64_encode(&b, slice_make(all, n)) == 0;
		round &= eio_base64_decode(&d, buf_slice(&b)) == 0;
		round &= d.len == n && (n == 0 || memcmp(d.data, all, n) == 0);
	}
	ok(round, "lengths 0..300 round-trip");

	/* Empty input into a buffer that owns no memory yet. */
	buf fresh;
	buf_init(&fresh, 0);
	is_int(eio_base64_encode(&fresh, SLICE_NULL), 0, "encode nothing into an empty buf");
	is_int(eio_base64_decode(&fresh, SLICE_NULL), 0, "decode nothing into an empty buf");
	is_int(eio_payload_append(&fresh, 0, EIO_MESSAGE, SLICE_NULL, 1), 0, "empty binary packet");
	is_mem(fresh.data, fresh.len, "b", 1, "  is a bare b");
	buf_dispose(&fresh);

	buf small;
	buf_init(&small, 3);
	is_int(eio_base64_decode(&small, S("Zm9vYg==")), -1, "decode past the limit");
	is_int(small.len, 0, "  nothing appended");
	is_int(eio_base64_encode(&small, S("f")), -1, "encode past the limit");
	buf_dispose(&small);
	buf_dispose(&d);
	buf_dispose(&b);
}

int main(void)
{
	test_parse_text();
	test_parse_binary();
	test_payload();
	test_encode();
	test_payload_append();
	test_base64();
	return tap_done();
}
