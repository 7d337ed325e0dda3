/*
 * Tests common/yjs.c: lib0 codec vectors (taken from lib0 0.2.120), merges
 * of hand-built updates (slicing of every content kind, surrogate pairs,
 * GC joining, gaps, delete sets, client order), golden merges and state
 * vectors computed by yjs 13.6.33, and hostile input: every truncation of
 * every valid update, every one-byte corruption and random bytes, all read
 * from guarded copies so that any over-read crashes.
 *
 * With arguments it is instead the driver of tests/integ/45-yjs-merge.t:
 *
 *   yjs merge OUT IN...   writes the merge of the IN files to OUT
 *   yjs sv OUT IN         writes the state vector of IN to OUT
 *   yjs hostile IN        the hostile-input checks below, on a real update
 *   yjs batch             reads such commands, one a line, from stdin
 *
 * and prints "ok FILE" or "error FILE REASON" for each command.
 */
#include "common/yjs.h"
#include "tap.h"

#include <errno.h>

/* ------------------------------------------------------------ helpers */

static size_t unhex(const char *h, char *out, size_t cap)
{
	size_t n = strlen(h) / 2;
	if (n > cap) {
		fprintf(stderr, "vector too long\n");
		exit(2);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (char)v;
	}
	return n;
}

static const char *tohex(const char *p, size_t n)
{
	static char out[4096];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 < sizeof(out); i++)
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%02x", (unsigned char)p[i]);
	out[o] = '\0';
	return out;
}

#define MAXIN 8

/* Merges guarded copies of the hex updates in[0..n); returns the result as
 * hex ("error: REASON" on failure). */
static const char *merge_hex(const char *const *in, size_t n)
{
	static char res[4096];
	char raw[MAXIN][1024];
	slice s[MAXIN];
	buf out;
	const char *err = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t len = unhex(in[i], raw[i], sizeof(raw[i]));
		s[i] = slice_make(tap_guard(raw[i], len), len);
	}
	buf_init(&out, 0);
	if (yjs_merge(s, n, &out, &err) == 0)
		snprintf(res, sizeof(res), "%s", tohex(out.data, out.len));
	else
		snprintf(res, sizeof(res), "error: %s", err);
	buf_dispose(&out);
	for (size_t i = 0; i < n; i++)
		tap_unguard((void *)s[i].base, s[i].len);
	return res;
}

#define MERGE(want, ...)                                                                           \
	do {                                                                                       \
		const char *in_[] = {__VA_ARGS__};                                                 \
		is_str(merge_hex(in_, sizeof(in_) / sizeof(in_[0])), want, "merge %s",             \
		       #__VA_ARGS__);                                                              \
	} while (0)

/* yjs_valid on a guarded copy of p[0..n): the error, or NULL when valid. */
static const char *guarded_valid(const char *p, size_t n)
{
	const char *err = NULL;
	char *g = tap_guard(p, n);
	int rc = yjs_valid(slice_make(g, n), &err);
	tap_unguard(g, n);
	return rc == 0 ? NULL : err ? err : "(no reason)";
}

/* ------------------------------------------------------------ lib0 */

static void test_varuint(void)
{
	static const struct {
		uint64_t v;
		const char *hex;
	} vec[] = {
	    {0, "00"},
	    {1, "01"},
	    {127, "7f"},
	    {128, "8001"},
	    {300, "ac02"},
	    {16383, "ff7f"},
	    {16384, "808001"},
	    {4294967295u, "ffffffff0f"},
	    {YJS_MAX_SAFE, "ffffffffffffff0f"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		buf b;
		buf_init(&b, 0);
		yjs_write_varuint(&b, vec[i].v);
		is_str(tohex(b.data, b.len), vec[i].hex, "var-uint %llu encodes as lib0 does",
		       (unsigned long long)vec[i].v);
		char raw[16];
		size_t n = unhex(vec[i].hex, raw, sizeof(raw));
		/* Every proper prefix is truncated; the whole decodes. */
		for (size_t k = 0; k <= n; k++) {
			char *g = tap_guard(raw, k);
			slice in = slice_make(g, k);
			uint64_t v = 0;
			const char *err = NULL;
			int rc = yjs_read_varuint(&in, &v, &err);
			if (k < n && (rc == 0 || strcmp(err, "truncated") != 0))
				ok(0, "var-uint prefix %zu of %s is truncated", k, vec[i].hex);
			if (k == n) {
				ok(rc == 0 && v == vec[i].v && in.len == 0, "var-uint %s decodes",
				   vec[i].hex);
			}
			tap_unguard(g, k);
		}
		buf_dispose(&b);
	}
	static const struct {
		const char *hex, *err;
	} bad[] = {
	    {"8080808080808010", "integer out of range"}, /* 2^53 */
	    {"ffffffffffffff7f", "integer out of range"},
	    {"808080808080808000", "over-long integer"},
	    {"80", "truncated"},
	    {"", "truncated"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char raw[16];
		size_t n = unhex(bad[i].hex, raw, sizeof(raw));
		slice in = slice_make(raw, n);
		uint64_t v;
		const char *err = NULL;
		int rc = yjs_read_varuint(&in, &v, &err);
		ok(rc < 0 && in.len == n && err && strcmp(err, bad[i].err) == 0,
		   "var-uint '%s' refused: %s (got %s)", bad[i].hex, bad[i].err, err);
	}
	/* lib0 reads a non-canonical zero padding as the value. */
	char pad[] = "\x81\x80\x00";
	slice in = slice_make(pad, 3);
	uint64_t v;
	ok(yjs_read_varuint(&in, &v, NULL) == 0 && v == 1 && in.len == 0,
	   "non-canonical var-uint padding reads as lib0 reads it");
}

static void test_varint(void)
{
	static const struct {
		int64_t v;
		const char *hex;
	} vec[] = {
	    {0, "00"},
	    {1, "01"},
	    {-1, "41"},
	    {63, "3f"},
	    {-63, "7f"},
	    {64, "8001"},
	    {-64, "c001"},
	    {8191, "bf7f"},
	    {8192, "808001"},
	    {-8192, "c08001"},
	    {2147483648LL, "8080808010"},
	    {-2147483648LL, "c080808010"},
	    {(int64_t)YJS_MAX_SAFE, "bfffffffffffff1f"},
	    {-(int64_t)YJS_MAX_SAFE, "ffffffffffffff1f"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		buf b;
		buf_init(&b, 0);
		yjs_write_varint(&b, vec[i].v);
		is_str(tohex(b.data, b.len), vec[i].hex, "var-int %lld encodes as lib0 does",
		       (long long)vec[i].v);
		slice in = buf_slice(&b);
		int64_t v = 0;
		ok(yjs_read_varint(&in, &v, NULL) == 0 && v == vec[i].v && in.len == 0,
		   "var-int %s decodes", vec[i].hex);
		for (size_t k = 0; k < b.len; k++) {
			slice pre = slice_make(b.data, k);
			if (yjs_read_varint(&pre, &v, NULL) == 0)
				ok(0, "var-int prefix %zu of %s refused", k, vec[i].hex);
		}
		buf_dispose(&b);
	}
	slice in = SLICE_LIT("\x40");
	int64_t v = 7;
	ok(yjs_read_varint(&in, &v, NULL) == 0 && v == 0, "lib0's negative zero reads as 0");
	in = SLICE_LIT("\x80\x80\x80\x80\x80\x80\x80\x80\x00");
	const char *err = NULL;
	ok(yjs_read_varint(&in, &v, &err) < 0 && strcmp(err, "over-long integer") == 0,
	   "over-long var-int refused");
	in = SLICE_LIT("\x80\x80\x80\x80\x80\x80\x80\x20");
	ok(yjs_read_varint(&in, &v, &err) < 0 && strcmp(err, "integer out of range") == 0,
	   "var-int of 2^53 refused");
}

static void test_strings(void)
{
	buf b;
	buf_init(&b, 0);
	yjs_write_varbytes(&b, SLICE_LIT("h\xc3\xa9"));
	is_str(tohex(b.data, b.len), "0368c3a9", "var-string encodes as lib0 does");
	slice in = buf_slice(&b), s;
	ok(yjs_read_varstring(&in, &s, NULL) == 0 && slice_eq_cstr(s, "h\xc3\xa9") && in.len == 0,
	   "var-string decodes");
	buf_dispose(&b);

	const char *err = NULL;
	in = SLICE_LIT("\x02\xc3\x28");
	ok(yjs_read_varstring(&in, &s, &err) < 0 && strcmp(err, "invalid utf-8") == 0 &&
	       in.len == 3,
	   "var-string with invalid UTF-8 refused, input untouched");
	in = SLICE_LIT("\x02\xc3\x28");
	ok(yjs_read_varbytes(&in, &s, NULL) == 0 && s.len == 2, "the same as var-uint8array reads");
	in = SLICE_LIT("\x04\xed\xa0\x80\x41");
	ok(yjs_read_varstring(&in, &s, &err) < 0, "an encoded surrogate is invalid UTF-8");
	in = SLICE_LIT("\x05"
	               "abc");
	ok(yjs_read_varbytes(&in, &s, &err) < 0 && strcmp(err, "truncated") == 0,
	   "a length beyond the input is truncated");
	in = SLICE_LIT("\xff\xff\xff\xff\xff\xff\xff\x0f");
	ok(yjs_read_varbytes(&in, &s, &err) < 0 && strcmp(err, "truncated") == 0,
	   "a huge length is truncated, not allocated");
}

static void test_any(void)
{
	/* lib0 writeAny of: undefined, null, 42, -7, 1.5, 0.1, 2n**40n, false,
	 * true, "hé", {a:1,b:[true,null,"x"]}, [1,[2,[3]]], Uint8Array [1,2,3],
	 * 2**40 (a float32). */
	static const char *vec[] = {
	    "7f",
	    "7e",
	    "7d2a",
	    "7d47",
	    "7c3fc00000",
	    "7b3fb999999999999a",
	    "7a0000010000000000",
	    "79",
	    "78",
	    "770368c3a9",
	    "760201617d0101627503787e770178",
	    "75027d0175027d0275017d03",
	    "7403010203",
	    "7c53800000",
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char raw[64];
		size_t n = unhex(vec[i], raw, sizeof(raw));
		int prefixes_refused = 1;
		for (size_t k = 0; k <= n; k++) {
			char *g = tap_guard(raw, k);
			slice in = slice_make(g, k), v;
			int rc = yjs_read_any(&in, &v, NULL);
			if (k < n && rc == 0)
				prefixes_refused = 0;
			if (k == n)
				ok(rc == 0 && v.len == n && in.len == 0, "Any %s decodes whole",
				   vec[i]);
			tap_unguard(g, k);
		}
		ok(prefixes_refused, "every prefix of Any %s is refused", vec[i]);
	}
	const char *err = NULL;
	slice in = SLICE_LIT("\x73"), v;
	ok(yjs_read_any(&in, &v, &err) < 0 && strcmp(err, "unknown any type") == 0,
	   "Any tag 115 refused");
	in = SLICE_LIT("\x80");
	ok(yjs_read_any(&in, &v, &err) < 0 && strcmp(err, "unknown any type") == 0,
	   "Any tag 128 refused");
	char deep[2 * YJS_MAX_DEPTH + 8];
	memset(deep, 0x75, sizeof(deep)); /* arrays of one array of ... */
	for (size_t i = 1; i < sizeof(deep); i += 2)
		deep[i] = 1;
	deep[sizeof(deep) - 1] = 0x7e;
	in = slice_make(deep, sizeof(deep));
	ok(yjs_read_any(&in, &v, &err) < 0 && strcmp(err, "too deeply nested") == 0,
	   "Any nesting beyond YJS_MAX_DEPTH refused");
}

/* ------------------------------------------------------------ merges */

/* Client 5 (0x05) and 7; root type "t" (0174). */
#define A_ABC "01010500040101740361626300" /* "abc" at 5:0, parent "t" */
#define B_DE                                                                                       \
	"01010503"                                                                                 \
	"84"                                                                                       \
	"0502"                                                                                     \
	"026465"                                                                                   \
	"00" /* "de" at 5:3 after 5:2 */
#define C_FULL                                                                                     \
	"0101050004010174056162636465"                                                             \
	"00" /* "abcde" at 5:0 */
#define AB_OUT                                                                                     \
	"01020500"                                                                                 \
	"0401017403616263"                                                                         \
	"840502026465"                                                                             \
	"00"

static void test_merge_basic(void)
{
	MERGE("0000");
	MERGE(A_ABC, A_ABC);
	MERGE(AB_OUT, A_ABC, B_DE);
	MERGE(AB_OUT, B_DE, A_ABC);
	MERGE(AB_OUT, A_ABC, B_DE, A_ABC, B_DE);
	/* The whole item after its first part: cut at 3, origin 5:2. */
	MERGE(AB_OUT, A_ABC, C_FULL);
	/* The longer struct first covers the shorter one. */
	MERGE(C_FULL, C_FULL, A_ABC);
	MERGE(C_FULL, C_FULL, B_DE);
	/* Merges of merges give the same. */
	MERGE(AB_OUT, AB_OUT, A_ABC, B_DE, AB_OUT);
	/* A gap becomes a Skip: "abc" at 0..3, "x" at 10 after 5:9. */
	MERGE("01030500"
	      "0401017403616263"
	      "0a07"
	      "8405090178"
	      "00",
	      A_ABC,
	      "010105"
	      "0a"
	      "84050901"
	      "78"
	      "00");
	/* Input Skips are dropped, the struct after one stays where it was. */
	MERGE(AB_OUT,
	      "01"
	      "020500"
	      "0a03"
	      "840502026465"
	      "00",
	      A_ABC);
	/* Higher clients first, whatever order the inputs' groups are in. (Yjs
	 * 13.6.33 drops client 7 from the first of these: its merge assumes each
	 * input lists its clients in descending order, as Yjs writes them.) */
	MERGE("02"
	      "010700"
	      "0401017401"
	      "78"
	      "010500"
	      "0401017401"
	      "79"
	      "00",
	      "02"
	      "010500"
	      "0401017401"
	      "79"
	      "010700"
	      "0401017401"
	      "78"
	      "00",
	      "0000");
	MERGE("02"
	      "010700"
	      "0401017401"
	      "78"
	      "010500"
	      "0401017401"
	      "79"
	      "00",
	      "01"
	      "010500"
	      "0401017401"
	      "79"
	      "00",
	      "01"
	      "010700"
	      "0401017401"
	      "78"
	      "00");
}

static void test_merge_slicing(void)
{
	/* "x😀z" (4 UTF-16 units) cut after "xy" (2): inside the pair, so the
	 * low surrogate becomes U+FFFD, as Yjs's ContentString.splice does. */
	MERGE("0102050004010174027879"
	      "840501"
	      "04efbfbd7a"
	      "00",
	      "0101050004010174027879"
	      "00",
	      "01010500040101740678f09f98807a"
	      "00");
	/* Cut right after the pair, and right before it. */
	MERGE("01020500040101740578f09f9880"
	      "840502017a"
	      "00",
	      "01010500040101740578f09f9880"
	      "00",
	      "01010500040101740678f09f98807a"
	      "00");
	MERGE("010205000401017401"
	      "78"
	      "840500"
	      "05f09f98807a"
	      "00",
	      "010105000401017401"
	      "78"
	      "00",
	      "01010500040101740678f09f98807a"
	      "00");
	/* Deleted content: length shortened. */
	MERGE("0102050001010174"
	      "02"
	      "810501"
	      "03"
	      "00",
	      "0101050001010174"
	      "02"
	      "00",
	      "0101050001010174"
	      "05"
	      "00");
	/* JSON content by element: [1, "a", undefined] after one element. */
	MERGE("010205000201017401"
	      "0131"
	      "82050002"
	      "03226122"
	      "09756e646566696e6564"
	      "00",
	      "010105000201017401"
	      "0131"
	      "00",
	      "010105000201017403"
	      "0131"
	      "03226122"
	      "09756e646566696e6564"
	      "00");
	/* Any content by element: [1, "ab", [2]] after two elements. */
	MERGE("010205000801017402"
	      "7d01"
	      "77026162"
	      "88050101"
	      "75017d02"
	      "00",
	      "010105000801017402"
	      "7d01"
	      "77026162"
	      "00",
	      "010105000801017403"
	      "7d01"
	      "77026162"
	      "75017d02"
	      "00");
	/* A cut Item that had a parent and a parentSub: the parent goes, the
	 * parentSub flag stays as Yjs writes it (its string does not). */
	MERGE("0102050021"
	      "01016d016b"
	      "01"
	      "a1050002"
	      "00",
	      "0101050021"
	      "01016d016b"
	      "01"
	      "00",
	      "0101050021"
	      "01016d016b"
	      "03"
	      "00");
	/* An Item read with an origin has no parentSub: the flag is dropped. */
	MERGE("0102050021"
	      "01016d016b"
	      "01"
	      "88"
	      "0500"
	      "017d03"
	      "00",
	      "0101050021"
	      "01016d016b"
	      "01"
	      "00",
	      "01010501"
	      "a8"
	      "0500"
	      "017d03"
	      "00");
	/* A right origin is kept; an Item with one writes no parent. */
	MERGE("0102050004010174026162"
	      "c4"
	      "0501"
	      "0909"
	      "0163"
	      "00",
	      "0101050004010174026162"
	      "00",
	      "01010500"
	      "44"
	      "0909"
	      "03616263"
	      "00");
}

static void test_merge_gc_and_ds(void)
{
	/* GC runs that meet are joined; GC cut by an overlap too. */
	MERGE("0101070000"
	      "05"
	      "00",
	      "0101070000"
	      "03"
	      "00",
	      "0101070300"
	      "02"
	      "00");
	MERGE("0101070000"
	      "06"
	      "00",
	      "0101070000"
	      "03"
	      "00",
	      "0101070100"
	      "05"
	      "00");
	/* Within one input's run Yjs does not join GCs, nor across a Skip. */
	MERGE("0102070000"
	      "0300"
	      "02"
	      "00",
	      "0102070000"
	      "0300"
	      "02"
	      "00",
	      "0000");
	MERGE("010307000003"
	      "0a02"
	      "0002"
	      "00",
	      "0101070000"
	      "03"
	      "00",
	      "0101070500"
	      "02"
	      "00");
	/* A GC after an Item. At a tie between an Item and a GC the earlier
	 * input wins; Yjs's sort comparator is inconsistent there (it orders
	 * either one first), so its choice depends on V8's sort. */
	MERGE("010205000401017401"
	      "78"
	      "0003"
	      "00",
	      "01010500040101740178"
	      "00",
	      "0101050000"
	      "04"
	      "00");
	/* Delete sets: joined per client, sorted, touching ranges coalesced,
	 * highest client first; an input without structs still counts. */
	MERGE("00"
	      "02"
	      "0701"
	      "0001"
	      "0502"
	      "0003"
	      "0a01",
	      "00"
	      "01"
	      "0502"
	      "0002"
	      "0a01",
	      "00"
	      "02"
	      "0502"
	      "0201"
	      "0001"
	      "0701"
	      "0001");
	MERGE("00"
	      "01"
	      "0501"
	      "0006",
	      "00"
	      "01"
	      "0501"
	      "0204",
	      "00"
	      "01"
	      "0502"
	      "0003"
	      "0101");
	/* A client listed with no ranges is dropped. */
	MERGE("00"
	      "01"
	      "0501"
	      "0001",
	      "00"
	      "01"
	      "0700",
	      "00"
	      "01"
	      "0501"
	      "0001");
}

/* Golden: yjs 13.6.33. Client 5 types "ab😀cd" into text "t", deletes the
 * low surrogate's unit (splitting the pair), inserts "X", sets map key "k"
 * twice, inserts [1,2,3,4] into array "a" and deletes two of them. */
static const char *golden_up[] = {
    "0101050004010174086162f09f9880636400",
    "000105010301",
    "01010506c405000501015800",
    "010105072801016d016b0175027d01770374776f00",
    "01010508a80507017d030105010701",
    "0101050908010161047d017d027d037d0400",
    "000105010a02",
};
static const char golden_state[] =
    "010a05000401017401618405000462efbfbd81050201840503026364c40500050101582101016d016b01a8050701"
    "7d0308010161017d018105090288050b017d04010503030107010a02";

static void test_golden(void)
{
	size_t n = sizeof(golden_up) / sizeof(golden_up[0]);
	is_str(
	    merge_hex(golden_up, n),
	    "0105050004010174086162f09f98806364c40500050101582801016d016b0175027d01770374776f880507"
	    "017d0308010161047d017d027d037d04010503030107010a02",
	    "merge of a session's updates equals Y.mergeUpdates");
	const char *with_state[MAXIN] = {golden_state};
	memcpy(with_state + 1, golden_up, n * sizeof(*golden_up));
	is_str(
	    merge_hex(with_state, n + 1),
	    "010a05000401017401618405000462efbfbd81050201840503026364c40500050101582101016d016b0188"
	    "0507017d0308010161017d018105090288050b017d04010503030107010a02",
	    "state first, then the updates: equals Y.mergeUpdates");
	const char *state_last[MAXIN];
	memcpy(state_last, golden_up, n * sizeof(*golden_up));
	state_last[n] = golden_state;
	is_str(
	    merge_hex(state_last, n + 1),
	    "0107050004010174086162f09f98806364c40500050101582101016d016b01880507017d0308010161017d"
	    "018105090288050b017d04010503030107010a02",
	    "the updates, then the state: equals Y.mergeUpdates");

	char raw[1024];
	size_t len = unhex(golden_state, raw, sizeof(raw));
	buf sv;
	buf_init(&sv, 0);
	const char *err = NULL;
	ok(yjs_state_vector(slice_make(raw, len), &sv, &err) == 0, "state vector of the state");
	is_str(tohex(sv.data, sv.len), "01050d", "equals Y.encodeStateVectorFromUpdate");
	buf_reset(&sv);
	len = unhex("02"
	            "020700"
	            "0401017401"
	            "78"
	            "0a01"
	            "010503"
	            "0401017401"
	            "79"
	            "00",
	            raw, sizeof(raw));
	ok(yjs_state_vector(slice_make(raw, len), &sv, &err) == 0 && sv.len == 3 &&
	       memcmp(sv.data, "\x01\x07\x01", 3) == 0,
	   "a Skip ends a client's count, a client not starting at 0 is left out");
	buf_dispose(&sv);
}

/* ------------------------------------------------------------ hostile */

static const char *valid_updates[] = {
    A_ABC,
    B_DE,
    C_FULL,
    AB_OUT,
    "0102050004010174027879"
    "840501"
    "04efbfbd7a"
    "00",
    "010105000201017403"
    "0131"
    "03226122"
    "09756e646566696e6564"
    "00",
    "0102050021"
    "01016d016b"
    "01"
    "a1050002"
    "00",
    "0101050003"
    "010174"
    "0301ff00"
    "00", /* Binary */
    "0101050005"
    "010174"
    "077b2261223a317d"
    "00", /* Embed {"a":1} */
    "0101050006"
    "010174"
    "0162"
    "0474727565"
    "00", /* Format b=true */
    "010305000701017403"
    "0170"
    "87050000"
    "880501017e"
    "00", /* Types, Any */
    "0101050009"
    "010174"
    "03677569"
    "76010161"
    "78"
    "00", /* Doc */
    "010105000701017405"
    "0168"
    "00", /* XmlHook */
    "0000",
    "00"
    "02"
    "0701"
    "0001"
    "0502"
    "0003"
    "0a01",
};

static void test_truncations(void)
{
	size_t nv = sizeof(valid_updates) / sizeof(valid_updates[0]);
	for (size_t i = 0; i < nv; i++) {
		char raw[512];
		size_t n = unhex(valid_updates[i], raw, sizeof(raw));
		const char *err = guarded_valid(raw, n);
		ok(err == NULL, "valid update %zu accepted (%s)", i, err ? err : "ok");
		size_t bad = 0;
		for (size_t k = 0; k < n; k++) {
			err = guarded_valid(raw, k);
			bad += !err || strcmp(err, "truncated") != 0;
		}
		is_int(bad, 0, "all %zu truncations of update %zu refused as truncated", n, i);
		raw[n] = 0;
		err = guarded_valid(raw, n + 1);
		ok(err && strcmp(err, "trailing bytes") == 0, "a byte after update %zu refused", i);
	}
}

/* Each byte of each valid update replaced by every other value: never a
 * crash, and when the result is accepted, merging it works too. */
static void test_corruptions(void)
{
	size_t nv = sizeof(valid_updates) / sizeof(valid_updates[0]), checked = 0, bad = 0;
	for (size_t i = 0; i < nv; i++) {
		char raw[512];
		size_t n = unhex(valid_updates[i], raw, sizeof(raw));
		for (size_t k = 0; k < n; k++) {
			for (int v = 0; v < 256; v++) {
				char save = raw[k];
				raw[k] = (char)v;
				char *g = tap_guard(raw, n);
				slice s[2] = {slice_make(g, n), slice_make(g, n)};
				buf out;
				buf_init(&out, 0);
				int valid = yjs_valid(s[0], NULL) == 0;
				int merged = yjs_merge(s, 2, &out, NULL) == 0;
				if (merged && yjs_valid(buf_slice(&out), NULL) < 0)
					merged = 0;
				bad += valid != merged;
				checked++;
				buf_dispose(&out);
				tap_unguard(g, n);
				raw[k] = save;
			}
		}
	}
	is_int(bad, 0, "%zu corrupted updates: merge accepts exactly the valid ones, output valid",
	       checked);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_random(void)
{
	size_t rejected = 0, total = 20000;
	char raw[300];
	for (size_t i = 0; i < total; i++) {
		size_t n = 8 + next_rand() % 280;
		for (size_t k = 0; k < n; k++)
			raw[k] = (char)next_rand();
		raw[0] = (char)(1 + next_rand() % 4); /* a plausible group count */
		rejected += guarded_valid(raw, n) != NULL;
	}
	is_int(rejected, total, "random bytes refused");
}

static void test_refusals(void)
{
	static const struct {
		const char *hex, *err;
	} vec[] = {
	    {"010105000b0101740100", "unknown content ref"},
	    {"010105008a0101740100", "unknown content ref"},
	    {"010105001f0101740100", "unknown content ref"},
	    {"0101050007010174070000", "unknown type ref"},
	    {"01010500040201740161"
	     "00",
	     "bad parent info"},
	    {"01010500040101740000", "empty struct"},
	    {"0101050000"
	     "00"
	     "00",
	     "empty struct"},
	    {"0101050001010174"
	     "00"
	     "00",
	     "empty struct"},
	    {"01010500050101740131"
	     "00",
	     "ok"},
	    {"0101050005010174027b7d"
	     "00",
	     "ok"},
	    {"0101050005010174027b2c"
	     "00",
	     "invalid json"},
	    {"0101050005010174023031"
	     "00",
	     "invalid json"},
	    {"01010500050101740522615c7822"
	     "00",
	     "invalid json"},
	    {"010105000501017407225c7530304122"
	     "00",
	     "invalid json"},
	    {"0101050005010174075b312c7b7d2c5d"
	     "00",
	     "invalid json"},
	    {"01010500050101740e2022615c6e5c7564383030222009"
	     "00",
	     "ok"},
	    {"01010500050101740a2d302e35652b31302020"
	     "00",
	     "ok"},
	    {"0101050005010174022d30"
	     "00",
	     "ok"},
	    {"0101050005010174012d"
	     "00",
	     "invalid json"},
	    {"01010500050101740131"
	     "00"
	     "ff",
	     "trailing bytes"},
	    {"02"
	     "0105000001"
	     "0105050001"
	     "00",
	     "duplicate client"},
	    {"00"
	     "01"
	     "0501"
	     "ffffffffffffff0f"
	     "01",
	     "clock out of range"},
	    {"010105ffffffffffffff0f04010174026162"
	     "00",
	     "clock out of range"},
	    {"0101050004010174"
	     "02c328"
	     "00",
	     "invalid utf-8"},
	    {"0101050004"
	     "0101ff"
	     "0161"
	     "00",
	     "invalid utf-8"},
	    {"01010500080101740173"
	     "00",
	     "unknown any type"},
	};
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char raw[128];
		size_t n = unhex(vec[i].hex, raw, sizeof(raw));
		const char *err = guarded_valid(raw, n);
		is_str(err ? err : "ok", vec[i].err, "%s: %s", vec[i].hex, vec[i].err);
	}
	/* A JSON text nested deeper than the limit. */
	char deep[2 * YJS_MAX_DEPTH + 40];
	size_t n = 0, d = YJS_MAX_DEPTH + 2;
	memcpy(deep, "\x01\x01\x05\x00\x05\x01\x01\x74", 8);
	n = 8;
	deep[n++] = (char)(0x80 | ((2 * d) & 0x7f));
	deep[n++] = (char)((2 * d) >> 7);
	memset(deep + n, '[', d);
	memset(deep + n + d, ']', d);
	n += 2 * d;
	deep[n++] = 0;
	const char *err = guarded_valid(deep, n);
	is_str(err ? err : "ok", "invalid json", "JSON nested beyond YJS_MAX_DEPTH refused");
}

static void test_limits(void)
{
	const char *in[] = {A_ABC, B_DE};
	char raw[2][64];
	slice s[2];
	for (int i = 0; i < 2; i++)
		s[i] = slice_make(raw[i], unhex(in[i], raw[i], sizeof(raw[i])));
	buf out;
	buf_init(&out, 8);
	buf_append(&out, "xy", 2);
	const char *err = NULL;
	ok(yjs_merge(s, 2, &out, &err) < 0 && strcmp(err, "out of memory") == 0 && out.len == 2 &&
	       memcmp(out.data, "xy", 2) == 0,
	   "an output over the buf limit fails and leaves the buf as it was");
	buf_dispose(&out);
	buf_init(&out, 0);
	buf_append(&out, "xy", 2);
	ok(yjs_merge(s, 2, &out, &err) == 0 && out.len == 2 + strlen(AB_OUT) / 2 &&
	       strcmp(tohex(out.data + 2, out.len - 2), AB_OUT) == 0,
	   "the merge is appended to what the buf holds");
	s[1].len--;
	ok(yjs_merge(s, 2, &out, &err) < 0 && strcmp(err, "truncated") == 0 &&
	       out.len == 2 + strlen(AB_OUT) / 2,
	   "one bad input fails the merge, buf unchanged");
	buf_dispose(&out);
}

/* ------------------------------------------------------------ driver */

static int read_file(const char *path, buf *b)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_append(b, chunk, n) < 0)
			break;
	int rc = ferror(f) ? -1 : 0;
	fclose(f);
	return rc;
}

static int write_file(const char *path, const buf *b)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t n = b->len ? fwrite(b->data, 1, b->len, f) : 0;
	return fclose(f) == 0 && n == b->len ? 0 : -1;
}

/* The hostile-input checks of the unit test on a real update: every proper
 * prefix is refused as truncated, and of 2000 one-byte corruptions merge
 * accepts exactly those yjs_valid accepts, with valid output. */
static const char *hostile(slice u)
{
	if (yjs_valid(u, NULL) < 0)
		return "the update itself is refused";
	for (size_t k = 0; k < u.len; k++) {
		const char *err = guarded_valid(u.base, k);
		if (!err || strcmp(err, "truncated") != 0)
			return "a prefix is not refused as truncated";
	}
	char *copy = malloc(u.len ? u.len : 1);
	const char *why = NULL;
	memcpy(copy, u.base, u.len);
	for (int i = 0; i < 2000 && u.len > 0 && !why; i++) {
		size_t at = next_rand() % u.len;
		char save = copy[at];
		copy[at] = (char)next_rand();
		char *g = tap_guard(copy, u.len);
		slice s[2] = {slice_make(g, u.len), slice_make(u.base, u.len)};
		buf out;
		buf_init(&out, 0);
		int valid = yjs_valid(s[0], NULL) == 0;
		int merged =
		    yjs_merge(s, 2, &out, NULL) == 0 && yjs_valid(buf_slice(&out), NULL) == 0;
		if (valid != merged)
			why = "a corruption is merged but not valid, or the reverse";
		buf_dispose(&out);
		tap_unguard(g, u.len);
		copy[at] = save;
	}
	free(copy);
	return why;
}

/* Runs one command: argv[0] is "merge", "sv" or "hostile", argv[1] the
 * output file (for hostile: the input). */
static int run_command(int argc, char **argv)
{
	if (strcmp(argv[0], "hostile") == 0 && argc == 2) {
		buf in;
		buf_init(&in, 0);
		const char *why =
		    read_file(argv[1], &in) < 0 ? "cannot read" : hostile(buf_slice(&in));
		if (why)
			printf("error %s %s\n", argv[1], why);
		else
			printf("ok %s\n", argv[1]);
		buf_dispose(&in);
		return why ? 1 : 0;
	}
	int merge = strcmp(argv[0], "merge") == 0;
	if (merge ? argc < 2 : strcmp(argv[0], "sv") != 0 || argc != 3) {
		fprintf(stderr, "usage: yjs merge OUT IN... | sv OUT IN | hostile IN | batch\n");
		return 2;
	}
	size_t n = (size_t)argc - 2;
	buf *in = calloc(n + 1, sizeof(buf));
	slice *s = calloc(n + 1, sizeof(slice));
	buf out;
	const char *err = "cannot read input";
	int rc = -1;

	buf_init(&out, 0);
	for (size_t i = 0; i < n; i++) {
		buf_init(&in[i], 0);
		if (read_file(argv[i + 2], &in[i]) < 0)
			goto done;
		s[i] = buf_slice(&in[i]);
	}
	if (merge)
		rc = yjs_merge(s, n, &out, &err);
	else
		rc = yjs_state_vector(s[0], &out, &err);
	if (rc == 0 && write_file(argv[1], &out) < 0) {
		err = strerror(errno);
		rc = -1;
	}
done:
	if (rc == 0)
		printf("ok %s\n", argv[1]);
	else
		printf("error %s %s\n", argv[1], err);
	for (size_t i = 0; i < n; i++)
		buf_dispose(&in[i]);
	buf_dispose(&out);
	free(in);
	free(s);
	return rc == 0 ? 0 : 1;
}

static int batch(void)
{
	char line[1 << 16];
	int rc = 0;
	while (fgets(line, sizeof(line), stdin)) {
		char *argv[512];
		int argc = 0;
		for (char *t = strtok(line, " \t\n"); t && argc < 512; t = strtok(NULL, " \t\n"))
			argv[argc++] = t;
		if (argc > 0 && run_command(argc, argv) == 2)
			rc = 2;
		fflush(stdout);
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "batch") == 0)
		return batch();
	if (argc > 1)
		return run_command(argc - 1, argv + 1);
	test_varuint();
	test_varint();
	test_strings();
	test_any();
	test_merge_basic();
	test_merge_slicing();
	test_merge_gc_and_ds();
	test_golden();
	test_truncations();
	test_corruptions();
	test_random();
	test_refusals();
	test_limits();
	return tap_done();
}
