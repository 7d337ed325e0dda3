/* Tests common/jscan.c: what the validating pass accepts and refuses
 * (RFC 8259 exactly, plus what cJSON downstream would refuse: lone
 * surrogates), spans of items and members, first-match lookup with escaped
 * keys, string decoding; every input sits against a guard page. */
#include "common/jscan.h"

#include <string.h>

#include "tap.h"

static int doc(const char *s, jspan *v)
{
	size_t n = strlen(s);
	char *g = tap_guard(s, n);
	jspan tmp;
	int rc = jscan_doc(g, n, v ? v : &tmp);
	tap_unguard(g, n);
	return rc;
}

static void accepts(const char *s)
{
	is_int(doc(s, NULL), 0, "accepts %s", s);
}

static void refuses(const char *s, const char *why)
{
	is_int(doc(s, NULL), -1, "refuses %s", why);
}

int main(void)
{
	accepts("0");
	accepts(" -0.5e+10 ");
	accepts("\"\"");
	accepts("[]");
	accepts("{}");
	accepts("[ 1 , {\"a\" : [true,false,null]} ]");
	accepts("\"\\ud83d\\ude00\\u00e9\\n\\\"\\\\\\/\"");
	accepts("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	accepts("1e400");

	refuses("", "empty text");
	refuses("  ", "only whitespace");
	refuses("[1,]", "a trailing comma");
	refuses("{\"a\":1,}", "a trailing comma in an object");
	refuses("{\"a\" 1}", "a missing colon");
	refuses("{1:2}", "a non-string key");
	refuses("01", "a leading zero");
	refuses("1.", "a fraction without digits");
	refuses("+1", "a plus sign");
	refuses(".5", "a bare fraction");
	refuses("1e", "an exponent without digits");
	refuses("tru", "a cut literal");
	refuses("nulls", "text after a literal");
	refuses("{} {}", "two values");
	refuses("\"abc", "an unterminated string");
	refuses("\"a\tb\"", "a raw control character");
	refuses("\"\\x\"", "an unknown escape");
	refuses("\"\\u12G4\"", "a bad hex digit");
	refuses("\"\\ud800\"", "a lone high surrogate");
	refuses("\"\\ud800\\u0041\"", "a high surrogate with no low one");
	refuses("\"\\udc00\"", "a lone low surrogate");
	refuses("\"\xc3\x28\"", "invalid UTF-8");
	refuses("\"\xed\xa0\x80\"", "an encoded surrogate");
	refuses("[\"a\" \"b\"]", "a missing comma");

	/* Depth: JSCAN_MAX_DEPTH containers pass, one more does not. */
	char deep[2 * JSCAN_MAX_DEPTH + 3];
	for (int i = 0; i <= JSCAN_MAX_DEPTH; i++) {
		deep[i] = '[';
		deep[2 * JSCAN_MAX_DEPTH + 1 - i] = ']';
	}
	deep[2 * JSCAN_MAX_DEPTH + 2] = '\0';
	refuses(deep, "nesting one past the limit");
	deep[2 * JSCAN_MAX_DEPTH + 1] = '\0';
	is_int(jscan_doc(deep + 1, 2 * JSCAN_MAX_DEPTH, &(jspan){0}), 0,
	       "nesting at the limit passes");

	/* Walking: items and their spans, whitespace excluded. */
	const char *arr = " [ 1 ,\"a,]\" , {\"k\":[2]} ,null ] ";
	jspan a, v;
	is_int(jscan_doc(arr, strlen(arr), &a), 0, "array parses");
	is_int(a.t, JS_ARRAY, "its type");
	size_t it = 0;
	const char *want[] = {"1", "\"a,]\"", "{\"k\":[2]}", "null"};
	jstype wt[] = {JS_NUMBER, JS_STRING, JS_OBJECT, JS_NULL};
	int k = 0;
	while (jscan_item(&a, &it, &v) && k < 4) {
		is_mem(v.p, v.n, want[k], strlen(want[k]), "item %d span", k);
		is_int(v.t, wt[k], "item %d type", k);
		k++;
	}
	is_int(k, 4, "four items");
	it = 0;
	jspan e = {"[]", 2, JS_ARRAY};
	is_int(jscan_item(&e, &it, &v), 0, "an empty array has no item");

	/* Members, first match, escaped keys. */
	const char *obj = "{\"to\": {\"user\" :\"u1\"}, \"d\\u0061ta\":{\"chat_id\":\"c\\u00e9\"},"
	                  " \"to\":\"second\", \"n\":-1.5E3}";
	jspan o, f;
	is_int(jscan_doc(obj, strlen(obj), &o), 0, "object parses");
	ok(jscan_find(&o, "to", &f) && f.t == JS_OBJECT, "the first of two keys is found");
	jspan u;
	ok(jscan_find(&f, "user", &u) && u.t == JS_STRING, "a nested member");
	char buf[64];
	is_int(jscan_str(&u, buf, sizeof(buf)), 2, "decoded length");
	is_str(buf, "u1", "decoded value");
	ok(jscan_find(&o, "data", &f) && f.t == JS_OBJECT, "an escaped key matches its decoding");
	ok(jscan_find(&f, "chat_id", &u), "chat_id inside it");
	is_int(jscan_str(&u, buf, sizeof(buf)), 3, "\\u00e9 decodes to two bytes");
	is_str(buf, "c\xc3\xa9", "as UTF-8");
	ok(jscan_find(&o, "n", &f) && f.t == JS_NUMBER, "a number member");
	is_mem(f.p, f.n, "-1.5E3", 6, "its text as written");
	ok(!jscan_find(&o, "missing", &f) && f.t == JS_NONE, "an absent member");
	ok(!jscan_find(&a, "to", &f), "find in an array finds nothing");
	size_t mi = 0;
	jspan key;
	k = 0;
	while (jscan_member(&o, &mi, &key, &v))
		k++;
	is_int(k, 4, "four members, duplicates included");

	/* Decoding: every escape, surrogate pairs, limits. */
	const char *s = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\ud83d\\ude00\"";
	jspan sv;
	is_int(jscan_doc(s, strlen(s), &sv), 0, "escapes parse");
	is_int(jscan_str(&sv, buf, sizeof(buf)), 13, "decoded length");
	is_mem(buf, 13, "\"\\/\b\f\n\r\tA\xf0\x9f\x98\x80", 13, "decoded bytes");
	is_int(jscan_str(&sv, buf, 13), -1, "one byte short of the NUL: refused");
	const char *nul = "\"a\\u0000b\"";
	is_int(jscan_doc(nul, strlen(nul), &sv), 0, "\\u0000 is JSON");
	is_int(jscan_str(&sv, buf, sizeof(buf)), -1, "but no C string can hold it");
	/* Compacting: whitespace between tokens goes, strings (spaces and
	 * escaped quotes included) and number spellings stay. */
	const char *sp = " { \"a b\" : [ 1.50 ,\t2E3 ] ,\n \"q\" : \"x \\\" y\" , \"e\" : { } } ";
	jspan cv;
	is_int(jscan_doc(sp, strlen(sp), &cv), 0, "spaced text parses");
	char cbuf[128];
	size_t cl = jscan_compact(&cv, cbuf);
	const char *want_c = "{\"a b\":[1.50,2E3],\"q\":\"x \\\" y\",\"e\":{}}";
	is_mem(cbuf, cl, want_c, strlen(want_c), "compacted");
	return tap_done();
}
