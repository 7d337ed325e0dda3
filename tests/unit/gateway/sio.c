/* Tests gateway/sio.c: Socket.IO v5 packets, placeholders, encoders. */
#include "gateway/sio.h"
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
#define PH(n) "{\"_placeholder\":true,\"num\":" #n "}"
#define PH_0_TO_9                                                                                  \
	PH(0)                                                                                      \
	"," PH(1) "," PH(2) "," PH(3) "," PH(4) "," PH(5) "," PH(6) "," PH(7) "," PH(8) "," PH(9)

/* A parsed packet copied out of the guarded input, so it survives the
 * unguard. */
typedef struct parsed {
	int rc;
	const char *err;
	sio_packet pkt;
	char nsp[64];
	char data[512];
} parsed;

/* Parses a copy of text that ends at a PROT_NONE page: one byte read past
 * the end crashes the test instead of passing it. */
static void parse_guarded(slice text, const sio_limits *lim, parsed *out)
{
	char *g = tap_guard(text.base, text.len);
	out->err = NULL;
	out->rc = sio_parse(slice_make(g, text.len), lim, &out->pkt, &out->err);
	if (out->rc == 0) {
		sio_packet *p = &out->pkt;
		if (p->nsp.len > sizeof out->nsp || p->data.len > sizeof out->data) {
			out->rc = -2;
		} else {
			memcpy(out->nsp, p->nsp.base, p->nsp.len);
			if (p->data.len)
				memcpy(out->data, p->data.base, p->data.len);
			p->nsp.base = out->nsp;
			p->data.base = out->data;
		}
	}
	tap_unguard(g, text.len);
}

/* Every vector from the Socket.IO v5 protocol document (encoding tables,
 * examples, sample session), the brief, and the protocol test suite. */
static const struct {
	slice in;
	int type;
	const char *nsp;
	int64_t id;
	uint32_t att;
	const char *data;
} good[] = {
    {S("0"), SIO_CONNECT, "/", -1, 0, ""},
    {S("0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"), SIO_CONNECT, "/", -1, 0,
     "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"},
    {S("0/admin,"), SIO_CONNECT, "/admin", -1, 0, ""},
    {S("0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"), SIO_CONNECT, "/admin", -1, 0,
     "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"},
    {S("0/admin,{\"token\":\"123\"}"), SIO_CONNECT, "/admin", -1, 0, "{\"token\":\"123\"}"},
    {S("0/admin,{\"sid\":\"-G5j-67EZFp-q59rADQM\"}"), SIO_CONNECT, "/admin", -1, 0,
     "{\"sid\":\"-G5j-67EZFp-q59rADQM\"}"},
    {S("0{\"token\":\"123\"}"), SIO_CONNECT, "/", -1, 0, "{\"token\":\"123\"}"},
    {S("0/custom,{\"token\":\"abc\"}"), SIO_CONNECT, "/custom", -1, 0, "{\"token\":\"abc\"}"},
    {S("4{\"message\":\"Not authorized\"}"), SIO_CONNECT_ERROR, "/", -1, 0,
     "{\"message\":\"Not authorized\"}"},
    {S("4/random,{\"message\":\"Invalid namespace\"}"), SIO_CONNECT_ERROR, "/random", -1, 0,
     "{\"message\":\"Invalid namespace\"}"},
    {S("2[\"foo\"]"), SIO_EVENT, "/", -1, 0, "[\"foo\"]"},
    {S("2/admin,[\"bar\"]"), SIO_EVENT, "/admin", -1, 0, "[\"bar\"]"},
    {S("2[\"hello\",1]"), SIO_EVENT, "/", -1, 0, "[\"hello\",1]"},
    {S("2/admin,456[\"project:delete\",123]"), SIO_EVENT, "/admin", 456, 0,
     "[\"project:delete\",123]"},
    {S("2[\"hey\",\"Jude\"]"), SIO_EVENT, "/", -1, 0, "[\"hey\",\"Jude\"]"},
    {S("2[\"hello\"]"), SIO_EVENT, "/", -1, 0, "[\"hello\"]"},
    {S("2[\"message\",1,\"2\",{\"3\":[true]}]"), SIO_EVENT, "/", -1, 0,
     "[\"message\",1,\"2\",{\"3\":[true]}]"},
    {S("2/admin,1[\"tellme\"]"), SIO_EVENT, "/admin", 1, 0, "[\"tellme\"]"},
    {S("212[\"foo\"]"), SIO_EVENT, "/", 12, 0, "[\"foo\"]"},
    {S("2/admin,13[\"foo\"]"), SIO_EVENT, "/admin", 13, 0, "[\"foo\"]"},
    {S("215[\"foo\"]"), SIO_EVENT, "/", 15, 0, "[\"foo\"]"},
    {S("312[]"), SIO_ACK, "/", 12, 0, "[]"},
    {S("3/admin,13[\"bar\"]"), SIO_ACK, "/admin", 13, 0, "[\"bar\"]"},
    {S("3/admin,456[]"), SIO_ACK, "/admin", 456, 0, "[]"},
    {S("314[\"bar\"]"), SIO_ACK, "/", 14, 0, "[\"bar\"]"},
    {S("51-[\"baz\"," PH(0) "]"), SIO_BINARY_EVENT, "/", -1, 1, "[\"baz\"," PH(0) "]"},
    {S("51-[\"hello\"," PH(0) "]"), SIO_BINARY_EVENT, "/", -1, 1, "[\"hello\"," PH(0) "]"},
    {S("52-/admin,[\"baz\"," PH(0) "," PH(1) "]"), SIO_BINARY_EVENT, "/admin", -1, 2,
     "[\"baz\"," PH(0) "," PH(1) "]"},
    {S("52-[\"message\"," PH(0) "," PH(1) "]"), SIO_BINARY_EVENT, "/", -1, 2,
     "[\"message\"," PH(0) "," PH(1) "]"},
    {S("51-14[\"foo\"," PH(0) "]"), SIO_BINARY_EVENT, "/", 14, 1, "[\"foo\"," PH(0) "]"},
    {S("61-15[\"bar\"," PH(0) "]"), SIO_BINARY_ACK, "/", 15, 1, "[\"bar\"," PH(0) "]"},
    {S("61-/admin,1[" PH(0) "]"), SIO_BINARY_ACK, "/admin", 1, 1, "[" PH(0) "]"},
    {S("1"), SIO_DISCONNECT, "/", -1, 0, ""},
    {S("1/admin,"), SIO_DISCONNECT, "/admin", -1, 0, ""},
    {S("1/admin"), SIO_DISCONNECT, "/admin", -1, 0, ""},
    {S("0/custom"), SIO_CONNECT, "/custom", -1, 0, ""},
    /* Edges that are accepted. */
    {S("2/,[\"a\"]"), SIO_EVENT, "/", -1, 0, "[\"a\"]"},
    {S("20[\"a\"]"), SIO_EVENT, "/", 0, 0, "[\"a\"]"},
    {S("29007199254740992[\"a\"]"), SIO_EVENT, "/", 9007199254740992LL, 0, "[\"a\"]"},
    {S("2 [\"a\"] \r\n\t"), SIO_EVENT, "/", -1, 0, " [\"a\"] \r\n\t"},
    {S("0{}"), SIO_CONNECT, "/", -1, 0, "{}"},
    {S("510-[\"a\"," PH_0_TO_9 "]"), SIO_BINARY_EVENT, "/", -1, 10, "[\"a\"," PH_0_TO_9 "]"},
    {S("2[\"a\",true,false,null,-0.5e+10,0,1E3,{\"k\":[{},[]]},\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"),
     SIO_EVENT, "/", -1, 0,
     "[\"a\",true,false,null,-0.5e+10,0,1E3,{\"k\":[{},[]]},\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"},
    {S("2[\"\xe2\x82\xac\xf0\x9f\x98\x80\",\"\\ud83d\\ude00\\u20AC\"]"), SIO_EVENT, "/", -1, 0,
     "[\"\xe2\x82\xac\xf0\x9f\x98\x80\",\"\\ud83d\\ude00\\u20AC\"]"},
    {S("2/\xc3\xa9t\xc3\xa9,[\"a\"]"), SIO_EVENT, "/\xc3\xa9t\xc3\xa9", -1, 0, "[\"a\"]"},
    {S("2[\"connected\"]"), SIO_EVENT, "/", -1, 0, "[\"connected\"]"},
    {S("2[\"Connect\"]"), SIO_EVENT, "/", -1, 0, "[\"Connect\"]"},
    {S("2[\"connect \"]"), SIO_EVENT, "/", -1, 0, "[\"connect \"]"},
    {S("2[\"connec\"]"), SIO_EVENT, "/", -1, 0, "[\"connec\"]"},
    {S("2[\"\\u0063onnect_\"]"), SIO_EVENT, "/", -1, 0, "[\"\\u0063onnect_\"]"},
    {S("3/admin,1[\"disconnect\"]"), SIO_ACK, "/admin", 1, 0, "[\"disconnect\"]"},
    {S("2[\"a\",123456789012345678901234567890123456789012345678901234567890123]"), SIO_EVENT, "/",
     -1, 0, "[\"a\",123456789012345678901234567890123456789012345678901234567890123]"},
};

static void test_good(void)
{
	buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		parsed r;
		parse_guarded(good[i].in, NULL, &r);
		if (!ok(r.rc == 0, "parse '%s'", show(good[i].in))) {
			printf("#   err: %s\n", r.err ? r.err : "(none)");
			continue;
		}
		sio_packet *p = &r.pkt;
		is_int(p->type, good[i].type, "  type");
		is_mem(p->nsp.base, p->nsp.len, good[i].nsp, strlen(good[i].nsp), "  nsp");
		is_int(p->id, good[i].id, "  id");
		is_int(p->attachments, good[i].att, "  attachments");
		is_mem(p->data.base, p->data.len, good[i].data, strlen(good[i].data), "  data");

		/* The JSON check promises that cJSON agrees. */
		cJSON *tree = sio_parse_data(p);
		ok(p->data.len == 0 ? tree == NULL : tree != NULL, "  cJSON parses the data");
		if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
			const char *err = NULL;
			is_int(sio_check_placeholders(tree, p->attachments, &err), 0,
			       "  placeholders check out (%s)", err ? err : "ok");
		}
		cJSON_Delete(tree);

		/* Encoding the parsed fields gives the canonical text back (the
		 * vectors are canonical except an explicit "/," namespace). */
		buf_reset(&b);
		is_int(sio_encode(&b, p->type, p->nsp, p->id, p->attachments, p->data), 0,
		       "  encodes");
		parsed back;
		parse_guarded(buf_slice(&b), NULL, &back);
		ok(back.rc == 0 && back.pkt.type == p->type && slice_eq(back.pkt.nsp, p->nsp) &&
		       back.pkt.id == p->id && back.pkt.attachments == p->attachments &&
		       slice_eq(back.pkt.data, p->data),
		   "  round-trips through sio_encode");
		/* "0/custom" without its comma is accepted but re-encoded with it. */
		int comma =
		    slice_eq_cstr(p->nsp, "/") || memchr(good[i].in.base, ',', good[i].in.len);
		if (comma && (!slice_eq_cstr(p->nsp, "/") || good[i].in.base[1] != '/' ||
		              good[i].in.base[2] != ','))
			is_mem(b.data, b.len, good[i].in.base, good[i].in.len,
			       "  to the same bytes");

		/* Every proper prefix under its own guard page: no over-read,
		 * whatever the verdict. */
		for (size_t n = 0; n < good[i].in.len; n++)
			parse_guarded(slice_make(good[i].in.base, n), NULL, &back);
		ok(1, "  every prefix parses without over-reading");
	}
	buf_dispose(&b);
}

static char deep_ok[128], deep_bad[128], long_num[128];

static void make_deep(void)
{
	/* 2["a",[[...]]] nested to depth 32 (the default limit) and 33. */
	strcpy(deep_ok, "2[\"a\",");
	strcpy(deep_bad, "2[\"a\",");
	for (int i = 0; i < 31; i++)
		strcat(deep_ok, "[");
	for (int i = 0; i < 31; i++)
		strcat(deep_ok, "]");
	strcat(deep_ok, "]");
	for (int i = 0; i < 32; i++)
		strcat(deep_bad, "[");
	for (int i = 0; i < 32; i++)
		strcat(deep_bad, "]");
	strcat(deep_bad, "]");
	strcpy(long_num, "2[\"a\",");
	for (int i = 0; i < 64; i++)
		strcat(long_num, "1");
	strcat(long_num, "]");
}

static void test_bad(void)
{
	static const struct {
		slice in;
		const char *why; /* the expected reason, or NULL for "any" */
	} bad[] = {
	    {S(""), "empty packet"},
	    {S("7[\"a\"]"), "unknown packet type"},
	    {S("7"), "unknown packet type"},
	    {S("a"), "unknown packet type"},
	    {S("/admin,"), "unknown packet type"},
	    {S(" 2[\"a\"]"), "unknown packet type"},
	    /* Attachments. */
	    {S("5-"), "bad attachment count"},
	    {S("5-[\"a\"]"), "bad attachment count"},
	    {S("50-[\"a\"]"), "bad attachment count"},
	    {S("60-1[]"), "bad attachment count"},
	    {S("5[\"a\"]"), "bad attachment count"},
	    {S("51[\"a\"]"), "bad attachment count"},
	    {S("51"), "bad attachment count"},
	    {S("5"), "bad attachment count"},
	    {S("6[]"), "bad attachment count"},
	    {S("501-[\"a\"," PH(0) "]"), "bad attachment count"},
	    {S("5a-[\"a\"]"), "bad attachment count"},
	    {S("5+1-[\"a\"]"), "bad attachment count"},
	    {S("599999999-[\"a\"]"), "too many attachments"},
	    {S("5999999999-[\"a\"]"), "too many attachments"},
	    {S("599999999999-[\"a\"]"), "too many attachments"},
	    {S("5184467440737095516161-[\"a\"]"), "too many attachments"},
	    {S("511-[\"a\"]"), "too many attachments"},
	    {S("21-[\"a\"]"), NULL},
	    /* Namespace. */
	    {S("2/admin[\"a\"]"), NULL},
	    {S("2/ad\x01min,[\"a\"]"), "control byte in namespace"},
	    {S("2/ad\x7fmin,[\"a\"]"), "control byte in namespace"},
	    {S("2/ad\xffmin,[\"a\"]"), "invalid UTF-8 in namespace"},
	    {S("2/ad\xc3min,[\"a\"]"), "invalid UTF-8 in namespace"},
	    /* Ack id. */
	    {S("29007199254740993[\"a\"]"), "bad ack id"},
	    {S("299999999999999999999999[\"a\"]"), "bad ack id"},
	    {S("2012[\"a\"]"), "bad ack id"},
	    {S("2/admin,00[\"a\"]"), "bad ack id"},
	    {S("3[]"), "ACK without an id"},
	    {S("3/admin,[]"), "ACK without an id"},
	    {S("61-[" PH(0) "]"), "ACK without an id"},
	    {S("112"), "ack id on a packet that takes none"},
	    {S("012{}"), "ack id on a packet that takes none"},
	    {S("41{\"message\":\"x\"}"), "ack id on a packet that takes none"},
	    {S("2-1[\"a\"]"), NULL},
	    /* Payload kind. */
	    {S("2"), "missing payload"},
	    {S("2/admin,"), "missing payload"},
	    {S("212"), "missing payload"},
	    {S("312"), "missing payload"},
	    {S("4"), "missing payload"},
	    {S("2[]"), "EVENT payload is not an array starting with a name"},
	    {S("2[1]"), "EVENT payload is not an array starting with a name"},
	    {S("2[null,\"a\"]"), "EVENT payload is not an array starting with a name"},
	    {S("2[[\"a\"]]"), "EVENT payload is not an array starting with a name"},
	    {S("2{}"), "EVENT payload is not an array starting with a name"},
	    {S("2\"a\""), "EVENT payload is not an array starting with a name"},
	    {S("51-[" PH(0) "]"), "EVENT payload is not an array starting with a name"},
	    {S("2[\"connect\"]"), "reserved event name"},
	    {S("2[\"connect_error\",1]"), "reserved event name"},
	    {S("2/admin,3[\"disconnect\"]"), "reserved event name"},
	    {S("2[\"disconnecting\"]"), "reserved event name"},
	    {S("2[\"newListener\"]"), "reserved event name"},
	    {S("2[\"removeListener\"]"), "reserved event name"},
	    {S("2[\"\\u0063onnect\"]"), "reserved event name"},
	    {S("2[\"connect\\u005ferror\"]"), "reserved event name"},
	    {S("2[\"\\u0064\\u0069\\u0073connect\"]"), "reserved event name"},
	    {S("51-[\"newListener\"," PH(0) "]"), "reserved event name"},
	    {S("312{}"), "ACK payload is not an array"},
	    {S("312\"a\""), "ACK payload is not an array"},
	    {S("1{}"), "DISCONNECT carries no payload"},
	    {S("1/admin,{}"), "DISCONNECT carries no payload"},
	    {S("0[]"), "CONNECT payload is not an object"},
	    {S("0\"x\""), "CONNECT payload is not an object"},
	    {S("0null"), "CONNECT payload is not an object"},
	    {S("4[]"), "CONNECT_ERROR payload is not an object"},
	    {S("4\"Not authorized\""), "CONNECT_ERROR payload is not an object"},
	    /* JSON syntax. */
	    {S("2[\"a\"]x"), "trailing bytes after JSON"},
	    {S("2[\"a\"] ]"), "trailing bytes after JSON"},
	    {S("2[\"a\"][\"b\"]"), "trailing bytes after JSON"},
	    {S("2[\"a\"]\0"), "trailing bytes after JSON"},
	    {S("0{}{}"), "trailing bytes after JSON"},
	    {S("2 "), "truncated JSON"},
	    {S("2[\"a\""), "truncated JSON"},
	    {S("2[\"a\","), "truncated JSON"},
	    {S("2[\"a"), NULL},
	    {S("2[\"a\",]"), NULL},
	    {S("2[,\"a\"]"), NULL},
	    {S("2[\"a\" \"b\"]"), NULL},
	    {S("2['a']"), NULL},
	    {S("2[\"a\\x\"]"), NULL},
	    {S("2[\"a\\u00\"]"), NULL},
	    {S("2[\"a\\u00zz\"]"), NULL},
	    {S("2[\"a\\"), NULL},
	    {S("2[\"\\u0000\"]"), NULL},
	    {S("2[\"\\ud800\"]"), NULL},
	    {S("2[\"\\ud800\\u0041\"]"), NULL},
	    {S("2[\"\\udc00\\ud800\"]"), NULL},
	    {S("2[\"a\x01\"]"), NULL},
	    {S("2[\"a\x1f\"]"), NULL},
	    {S("2[\"a\n\"]"), NULL},
	    {S("2[\"\xff\"]"), NULL},
	    {S("2[\"\xc0\xaf\"]"), NULL},
	    {S("2[\"\xe0\x80\xaf\"]"), NULL},
	    {S("2[\"\xed\xa0\x80\"]"), NULL},
	    {S("2[\"\xf4\x90\x80\x80\"]"), NULL},
	    {S("2[\"\xe2\x82\"]"), NULL},
	    {S("2[\"a\",01]"), NULL},
	    {S("2[\"a\",+1]"), NULL},
	    {S("2[\"a\",.5]"), NULL},
	    {S("2[\"a\",1.]"), NULL},
	    {S("2[\"a\",1e]"), NULL},
	    {S("2[\"a\",1e+]"), NULL},
	    {S("2[\"a\",-]"), NULL},
	    {S("2[\"a\",--1]"), NULL},
	    {S("2[\"a\",0x10]"), NULL},
	    {S("2[\"a\",tru]"), NULL},
	    {S("2[\"a\",nul]"), NULL},
	    {S("2[\"a\",True]"), NULL},
	    {S("2[\"a\",NaN]"), NULL},
	    {S("2[\"a\",Infinity]"), NULL},
	    {S("2[\"a\",undefined]"), NULL},
	    {S("2\xef\xbb\xbf[\"a\"]"), NULL},
	    {S("2[\"a\",{\"k\"}]"), NULL},
	    {S("2[\"a\",{\"k\":}]"), NULL},
	    {S("2[\"a\",{1:2}]"), NULL},
	    {S("2[\"a\",{\"k\":1,}]"), NULL},
	    {S("2[\"a\",{\"k\" 1}]"), NULL},
	    {S("2[\"a\",{\"k\":1]"), NULL},
	    {S("2[\"a\",[1}]"), NULL},
	    {S("2[\"a\"\f]"), NULL},
	    {S("2[\"a\"\v]"), NULL},
	    {S("0{\"a\":1 \"b\":2}"), NULL},
	    {S("0{\"a\":1}}"), "trailing bytes after JSON"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		parsed r;
		parse_guarded(bad[i].in, NULL, &r);
		int good_err =
		    r.rc == -1 && r.err && (!bad[i].why || strcmp(r.err, bad[i].why) == 0);
		if (!ok(good_err, "reject '%s'", show(bad[i].in)))
			printf("#   rc %d, err '%s', want '%s'\n", r.rc, r.err ? r.err : "(null)",
			       bad[i].why ? bad[i].why : "(any)");
	}

	make_deep();
	parsed r;
	parse_guarded(slice_cstr(deep_ok), NULL, &r);
	is_int(r.rc, 0, "nesting at the default depth limit (32) accepted");
	parse_guarded(slice_cstr(deep_bad), NULL, &r);
	ok(r.rc == -1 && strcmp(r.err, "JSON nested too deeply") == 0, "depth 33 refused");
	sio_limits deep = {.max_attachments = 10, .max_depth = 40};
	parse_guarded(slice_cstr(deep_bad), &deep, &r);
	is_int(r.rc, 0, "  but accepted with max_depth 40");
	parse_guarded(slice_cstr(long_num), NULL, &r);
	is_int(r.rc, -1, "a 64-character number refused (cJSON reads 63)");

	/* Limits. */
	sio_limits none = {.max_attachments = 0};
	parse_guarded(S("51-[\"a\"," PH(0) "]"), &none, &r);
	ok(r.rc == -1 && strcmp(r.err, "too many attachments") == 0,
	   "max_attachments 0 refuses binary packets");
	parse_guarded(S("2[\"a\"]"), &none, &r);
	is_int(r.rc, 0, "  but takes plain events");
	sio_limits many = {.max_attachments = 100000};
	parse_guarded(S("51024-[\"a\"]"), &many, &r);
	is_int(r.rc, 0, "max_attachments is capped at SIO_MAX_ATTACHMENTS: 1024 ok");
	parse_guarded(S("51025-[\"a\"]"), &many, &r);
	is_int(r.rc, -1, "  1025 refused");

	/* err may be NULL. */
	sio_packet p;
	is_int(sio_parse(S("7"), NULL, &p, NULL), -1, "NULL err is allowed");
}

static int check_ph(const char *json, uint32_t att, const char **err)
{
	cJSON *t = cJSON_Parse(json);
	*err = NULL;
	if (!t)
		return -2;
	int rc = sio_check_placeholders(t, att, err);
	cJSON_Delete(t);
	return rc;
}

static void test_placeholders(void)
{
	static const struct {
		const char *json;
		uint32_t att;
		const char *why; /* NULL: accepted */
	} v[] = {
	    {"[\"hello\"," PH(0) "]", 1, NULL},
	    {"[\"a\",{\"x\":[" PH(1) "," PH(0) "]}]", 2, NULL},
	    {"[\"a\",{\"num\":0,\"_placeholder\":true}]", 1, NULL},
	    {"[\"a\",{\"_placeholder\":true,\"num\":0.0}]", 1, NULL},
	    {"[\"a\",1,{\"b\":null}]", 0, NULL},
	    {"[\"a\"]", 0, NULL},
	    {"[\"a\",[[[[" PH(2) "]]]]," PH(0) ",{\"k\":" PH(1) "}]", 3, NULL},
	    /* HARDENING: num as a string, num beyond the count. */
	    {"[\"hello\",{\"_placeholder\":true,\"num\":\"0\"}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\"," PH(1) "]", 1, "placeholder num out of range"},
	    {"[\"hello\"," PH(10) "]", 10, "placeholder num out of range"},
	    {"[\"hello\",{\"_placeholder\":true,\"num\":-1}]", 1, "placeholder num out of range"},
	    {"[\"hello\",{\"_placeholder\":true,\"num\":1e300}]", 1,
	     "placeholder num out of range"},
	    {"[\"hello\",{\"_placeholder\":true,\"num\":0.5}]", 1,
	     "placeholder num is not an integer"},
	    {"[\"hello\"," PH(0) "," PH(0) "]", 2, "placeholder num used twice"},
	    {"[\"hello\"," PH(0) "]", 2, "attachment not referenced by any placeholder"},
	    {"[\"hello\"]", 1, "attachment not referenced by any placeholder"},
	    {"[\"hello\"," PH(0) "]", 0, "placeholder num out of range"},
	    {"[\"hello\",{\"_placeholder\":true,\"num\":0,\"x\":1}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":false,\"num\":0}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":1,\"num\":0}]", 1, "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":true}]", 1, "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":true,\"_placeholder\":true}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":true,\"num\":0,\"num\":0}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\",{\"_placeholder\":true,\"Num\":0}]", 1,
	     "malformed attachment placeholder"},
	    {"[\"hello\",{\"x\":{\"_placeholder\":null}}]", 0, "malformed attachment placeholder"},
	    {"[\"hello\",{\"_Placeholder\":true,\"num\":0}]", 1,
	     "attachment not referenced by any placeholder"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		const char *err;
		int rc = check_ph(v[i].json, v[i].att, &err);
		if (!v[i].why) {
			if (!ok(rc == 0, "placeholders ok: %s (%u)", v[i].json, v[i].att))
				printf("#   err: %s\n", err ? err : "(null)");
		} else {
			int good_err = rc == -1 && err && strcmp(err, v[i].why) == 0;
			if (!ok(good_err, "placeholders refused: %s (%u)", v[i].json, v[i].att))
				printf("#   rc %d err '%s' want '%s'\n", rc, err ? err : "(null)",
				       v[i].why);
		}
	}
	const char *err;
	is_int(sio_check_placeholders(NULL, 0, &err), 0, "no data, no attachments");
	is_int(sio_check_placeholders(NULL, 1, &err), -1, "no data, one attachment");
	is_int(check_ph("[\"a\"]", SIO_MAX_ATTACHMENTS + 1, &err), -1,
	       "more than SIO_MAX_ATTACHMENTS refused");

	/* End to end, the HARDENING vectors through the parser. */
	static const struct {
		slice in;
		int parse_rc, check_rc;
	} e2e[] = {
	    {S("5999999999-[\"hello\"," PH(0) "]"), -1, 0},
	    {S("599999999-[\"hello\"," PH(0) "]"), -1, 0},
	    {S("51-[\"hello\",{\"_placeholder\":true,\"num\":\"0\"}]"), 0, -1},
	    {S("51-[\"hello\"," PH(1) "]"), 0, -1},
	    {S("52-[\"hello\"," PH(1) "," PH(1) "]"), 0, -1},
	    {S("52-[\"hello\"," PH(1) "]"), 0, -1},
	    {S("51-[\"hello\",{\"_placeholder\":true,\"num\":0,\"x\":0}]"), 0, -1},
	    {S("51-[\"hello\"," PH(0) "]"), 0, 0},
	};
	for (size_t i = 0; i < sizeof e2e / sizeof e2e[0]; i++) {
		parsed r;
		parse_guarded(e2e[i].in, NULL, &r);
		is_int(r.rc, e2e[i].parse_rc, "end to end '%s': parse", show(e2e[i].in));
		if (r.rc == 0) {
			cJSON *t = sio_parse_data(&r.pkt);
			is_int(sio_check_placeholders(t, r.pkt.attachments, &err), e2e[i].check_rc,
			       "  placeholders");
			cJSON_Delete(t);
		}
	}
}

static void test_encode(void)
{
	buf b;
	buf_init(&b, 0);
	static const struct {
		int type;
		slice nsp;
		int64_t id;
		uint32_t att;
		slice json;
		const char *want;
	} v[] = {
	    {SIO_CONNECT, S("/"), -1, 0, S(""), "0"},
	    {SIO_CONNECT, S(""), -1, 0, S(""), "0"},
	    {SIO_CONNECT, S("/admin"), -1, 0, S(""), "0/admin,"},
	    {SIO_DISCONNECT, S("/admin"), -1, 0, S(""), "1/admin,"},
	    {SIO_EVENT, S("/"), -1, 0, S("[\"foo\"]"), "2[\"foo\"]"},
	    {SIO_EVENT, S("/admin"), 13, 0, S("[\"foo\"]"), "2/admin,13[\"foo\"]"},
	    {SIO_ACK, S("/"), 12, 0, S("[]"), "312[]"},
	    {SIO_ACK, S("/admin"), 456, 0, S("[]"), "3/admin,456[]"},
	    {SIO_CONNECT_ERROR, S("/"), -1, 0, S("{\"message\":\"Not authorized\"}"),
	     "4{\"message\":\"Not authorized\"}"},
	    {SIO_BINARY_EVENT, S("/admin"), -1, 2, S("[\"baz\"," PH(0) "," PH(1) "]"),
	     "52-/admin,[\"baz\"," PH(0) "," PH(1) "]"},
	    {SIO_BINARY_ACK, S("/"), 15, 1, S("[\"bar\"," PH(0) "]"), "61-15[\"bar\"," PH(0) "]"},
	    {SIO_EVENT, S("/"), 0, 7, S("[\"a\"]"), "20[\"a\"]"},
	    {SIO_EVENT, S("/"), SIO_MAX_ACK_ID, 0, S("[\"a\"]"), "29007199254740992[\"a\"]"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		buf_reset(&b);
		is_int(sio_encode(&b, v[i].type, v[i].nsp, v[i].id, v[i].att, v[i].json), 0,
		       "encode %s", v[i].want);
		is_mem(b.data, b.len, v[i].want, strlen(v[i].want), "  bytes");
	}

	buf_reset(&b);
	buf_append_cstr(&b, "keep");
	is_int(sio_encode(&b, 7, S("/"), -1, 0, S("")), -1, "type 7 refused");
	is_int(sio_encode(&b, -1, S("/"), -1, 0, S("")), -1, "type -1 refused");
	is_int(sio_encode(&b, SIO_EVENT, S("admin"), -1, 0, S("[\"a\"]")), -1,
	       "nsp without '/' refused");
	is_int(sio_encode(&b, SIO_EVENT, S("/a,b"), -1, 0, S("[\"a\"]")), -1,
	       "nsp with ',' refused");
	is_int(sio_encode(&b, SIO_EVENT, S("/"), -2, 0, S("[\"a\"]")), -1, "id -2 refused");
	is_int(sio_encode(&b, SIO_BINARY_EVENT, S("/"), -1, 0, S("[\"a\"]")), -1,
	       "binary with 0 attachments refused");
	is_int(sio_encode(&b, SIO_EVENT, S("/"), SIO_MAX_ACK_ID + 1, 0, S("[\"a\"]")), -1,
	       "id 2^53+1 refused");
	is_mem(b.data, b.len, "keep", 4, "  buffer untouched");

	buf_reset(&b);
	is_int(sio_encode_connect_ok(&b, S("/"), S("wZX3oN0bSVIhsaknAAAI")), 0, "connect ok");
	is_str((buf_append_byte(&b, 0), b.data), "0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}", "  root");
	buf_reset(&b);
	is_int(sio_encode_connect_ok(&b, S("/admin"), S("oSO0OpakMV_3jnilAAAA")), 0,
	       "connect ok /admin");
	is_str((buf_append_byte(&b, 0), b.data), "0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
	       "  namespaced");
	buf_reset(&b);
	is_int(sio_encode_connect_error(&b, S("/"), "Not authorized"), 0, "connect error");
	is_str((buf_append_byte(&b, 0), b.data), "4{\"message\":\"Not authorized\"}", "  root");
	buf_reset(&b);
	is_int(sio_encode_connect_error(&b, S("/random"), "Invalid namespace"), 0,
	       "connect error /random");
	is_str((buf_append_byte(&b, 0), b.data), "4/random,{\"message\":\"Invalid namespace\"}",
	       "  as the protocol test suite expects");
	buf_reset(&b);
	is_int(sio_encode_connect_error(&b, S("/"), "say \"no\"\n\\"), 0, "connect error escaped");
	is_str((buf_append_byte(&b, 0), b.data), "4{\"message\":\"say \\\"no\\\"\\n\\\\\"}",
	       "  escaped");
	buf_reset(&b);
	is_int(sio_encode_connect_ok(&b, S("nope"), S("x")), -1, "connect ok with a bad nsp");
	is_int(b.len, 0, "  nothing written");

	static const struct {
		slice nsp;
		int64_t id;
		slice name, args;
		const char *want;
	} ev[] = {
	    {S("/"), -1, S("hello"), S("[1]"), "2[\"hello\",1]"},
	    {S("/admin"), 456, S("project:delete"), S("[123]"),
	     "2/admin,456[\"project:delete\",123]"},
	    {S("/"), -1, S("foo"), S(""), "2[\"foo\"]"},
	    {S("/"), -1, S("foo"), S("[]"), "2[\"foo\"]"},
	    {S("/"), -1, S("foo"), S(" [ ] "), "2[\"foo\"]"},
	    {S("/"), 7, S("foo"), S("\n[ 1 , {\"a\":[2]} ]\n"), "27[\"foo\",1 , {\"a\":[2]}]"},
	    {S("/"), -1, S("hey"), S("[\"Jude\"]"), "2[\"hey\",\"Jude\"]"},
	    {S("/"), -1, S("we\"ird\n"), S("[null]"), "2[\"we\\\"ird\\n\",null]"},
	    {S("/"), -1, S(""), S(""), "2[\"\"]"},
	};
	for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
		buf_reset(&b);
		is_int(sio_encode_event(&b, ev[i].nsp, ev[i].id, ev[i].name, ev[i].args), 0,
		       "encode_event %s", ev[i].want);
		is_mem(b.data, b.len, ev[i].want, strlen(ev[i].want), "  bytes");
		parsed r;
		parse_guarded(buf_slice(&b), NULL, &r);
		ok(r.rc == 0 && r.pkt.type == SIO_EVENT && r.pkt.id == ev[i].id, "  parses back");
	}
	buf_reset(&b);
	is_int(sio_encode_event(&b, S("/"), -1, S("a"), S("1")), -1, "args not an array");
	is_int(sio_encode_event(&b, S("/"), -1, S("a"), S("[")), -1, "args unbalanced");
	is_int(sio_encode_event(&b, S("/"), -1, S("a"), S("{}")), -1, "args an object");
	is_int(sio_encode_event(&b, S("x"), -1, S("a"), S("")), -1, "bad nsp");
	is_int(sio_encode_event(&b, S("/"), -5, S("a"), S("")), -1, "bad id");
	is_int(b.len, 0, "  nothing written");

	/* The limit holds and failures leave nothing behind. */
	buf small;
	buf_init(&small, 8);
	is_int(sio_encode_event(&small, S("/"), -1, S("hello"), S("[1]")), -1,
	       "encode_event past the limit");
	is_int(sio_encode_connect_ok(&small, S("/"), S("abcdef")), -1, "connect_ok past limit");
	is_int(sio_encode(&small, SIO_EVENT, S("/admin"), 1, 0, S("[\"a\"]")), -1,
	       "encode past limit");
	is_int(small.len, 0, "  nothing half-written");
	is_int(sio_encode(&small, SIO_EVENT, S("/"), 1, 0, S("[\"ab\"]")), 0, "encode at limit");
	is_int(small.len, 8, "  exactly full");
	buf_dispose(&small);
	buf_dispose(&b);
}

static void test_escape(void)
{
	buf b;
	buf_init(&b, 0);
	static const struct {
		slice in;
		const char *want; /* JSON.stringify's output */
	} v[] = {
	    {S(""), "\"\""},
	    {S("abc"), "\"abc\""},
	    {S("a\"b\\c/d"), "\"a\\\"b\\\\c/d\""},
	    {S("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\""},
	    {S("\x00\x01\x0b\x1e\x1f"), "\"\\u0000\\u0001\\u000b\\u001e\\u001f\""},
	    {S(" \x7f~"), "\" \x7f~\""},
	    {S("\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8"),
	     "\"\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8\""},
	    {S("<script>'&'</script>"), "\"<script>'&'</script>\""},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		buf_reset(&b);
		char *g = tap_guard(v[i].in.base, v[i].in.len);
		is_int(sio_json_escape(&b, slice_make(g, v[i].in.len)), 0, "escape vector %zu", i);
		tap_unguard(g, v[i].in.len);
		is_mem(b.data, b.len, v[i].want, strlen(v[i].want), "  as JSON.stringify");
	}

	/* All of ASCII except NUL: cJSON reads back the original. */
	char all[127];
	for (int c = 1; c < 128; c++)
		all[c - 1] = (char)c;
	buf_reset(&b);
	sio_json_escape(&b, slice_make(all, sizeof all));
	buf_append_byte(&b, 0);
	cJSON *s = cJSON_Parse(b.data);
	ok(s && cJSON_IsString(s) && strlen(s->valuestring) == sizeof all &&
	       memcmp(s->valuestring, all, sizeof all) == 0,
	   "escaped ASCII parses back to itself");
	cJSON_Delete(s);

	buf small;
	buf_init(&small, 4);
	is_int(sio_json_escape(&small, S("ab\n")), -1, "escape past the limit");
	is_int(small.len, 0, "  nothing half-written");
	is_int(sio_json_escape(&small, S("ab")), 0, "escape at the limit");
	buf_dispose(&small);
	buf_dispose(&b);
}

/* Strings are scanned 8 bytes at a time until a byte needs a look of its
 * own. Each piece below goes at every offset of a 26-byte string, after a
 * run of 0 to 25 plain bytes, so it lands at every place in a word and
 * across words: the verdict must not depend on where it falls. */
static void test_string_words(void)
{
	static const struct {
		slice piece;
		int good;
	} v[] = {
	    {S("\\n"), 1},          {S("\\\\"), 1},     {S("\\u00e9"), 1},
	    {S("\\\""), 1},         {S("\xc3\xa9"), 1}, {S("\xf0\x9f\x98\x80"), 1},
	    {S("\x7f"), 1},         {S("\x1f"), 0},     {S("\x01"), 0},
	    {S("\x00"), 0},         {S("\xff"), 0},     {S("\xc0\x80"), 0},
	    {S("\xed\xa0\x80"), 0}, {S("\\x"), 0},      {S("\""), 0},
	    {S("\x80"), 0},
	};
	char text[64];
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int wrong = 0;
		for (size_t at = 0; at < 26; at++) {
			size_t n = 0;
			memcpy(text + n, "2[\"", 3);
			n += 3;
			memset(text + n, 'a', at);
			n += at;
			memcpy(text + n, v[i].piece.base, v[i].piece.len);
			n += v[i].piece.len;
			memset(text + n, 'b', 26 - at);
			n += 26 - at;
			memcpy(text + n, "\"]", 2);
			n += 2;
			parsed r;
			parse_guarded(slice_make(text, n), NULL, &r);
			if ((r.rc == 0) != v[i].good) {
				wrong++;
				printf("#   at %zu: %s\n", at, r.err ? r.err : "accepted");
			}
		}
		ok(wrong == 0, "string holding '%s' %s at every offset", show(v[i].piece),
		   v[i].good ? "accepted" : "refused");
	}
}

int main(void)
{
	test_good();
	test_bad();
	test_placeholders();
	test_encode();
	test_escape();
	test_string_words();
	return tap_done();
}
