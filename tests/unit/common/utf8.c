/*
 * Tests common/utf8.c: Markus Kuhn's decoder stress test and the Autobahn 6.x
 * sequences, every surrogate and range boundary, overlong forms, and an
 * exhaustive comparison against a straightforward reference decoder. Every
 * vector is validated whole, one byte at a time and split at every point,
 * and the state after each prefix must say REJECT exactly when no valid text
 * could start with that prefix (fail-fast).
 */
#include "common/utf8.h"
#include "tap.h"

/* Reference: decode every sequence and check its code point. */
static size_t ref_seq_len(uint8_t lead)
{
	if (lead < 0x80)
		return 1;
	if ((lead & 0xe0) == 0xc0)
		return 2;
	if ((lead & 0xf0) == 0xe0)
		return 3;
	if ((lead & 0xf8) == 0xf0)
		return 4;
	return 0;
}

static int ref_valid(const uint8_t *s, size_t n)
{
	static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
	size_t i = 0;

	while (i < n) {
		size_t len = ref_seq_len(s[i]);
		if (len == 0 || n - i < len)
			return 0;
		uint32_t c = len == 1 ? s[i] : s[i] & (0x7f >> len);
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (s[i + k] & 0x3f);
		}
		if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* Is s[0..n) the beginning of some valid text? Only the lead and second byte
 * of a sequence constrain its code point, so completing an unfinished tail
 * with any second byte and 0x80 fillers decides it. */
static int ref_viable(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t len = ref_seq_len(s[i]);
		if (len == 0)
			return 0;
		if (n - i >= len) {
			if (!ref_valid(s + i, len))
				return 0;
			i += len;
			continue;
		}
		uint8_t t[4];
		unsigned tries = i + 1 < n ? 1 : 256; /* second byte given, or any */
		for (unsigned b2 = 0; b2 < tries; b2++) {
			for (size_t k = 0; k < len; k++)
				t[k] = i + k < n ? s[i + k] : k == 1 ? (uint8_t)b2 : 0x80;
			if (ref_valid(t, len))
				return 1;
		}
		return 0;
	}
	return 1;
}

static size_t enc(uint8_t *o, uint32_t c)
{
	if (c < 0x80) {
		o[0] = (uint8_t)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (uint8_t)(0xc0 | c >> 6);
		o[1] = (uint8_t)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (uint8_t)(0xe0 | c >> 12);
		o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
		o[2] = (uint8_t)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (uint8_t)(0xf0 | c >> 18);
	o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
	o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
	o[3] = (uint8_t)(0x80 | (c & 0x3f));
	return 4;
}

/*
 * Checks one vector in every way and returns a description of the first
 * disagreement, or NULL. The input is placed against a guard page so that
 * reading past it crashes.
 */
static const char *check_vector(const void *v, size_t n, int want_valid)
{
	uint8_t *s = tap_guard(v, n);
	const char *why = NULL;
	utf8_state whole = utf8_validate(UTF8_ACCEPT, s, n), st = UTF8_ACCEPT;

	if ((whole == UTF8_ACCEPT) != want_valid || utf8_is_valid(s, n) != want_valid)
		why = "whole";
	for (size_t i = 0; i < n && !why; i++) {
		st = utf8_validate(st, s + i, 1);
		if ((st == UTF8_REJECT) != !ref_viable(s, i + 1))
			why = "fail-fast: REJECT must come exactly at the first non-viable byte";
		else if ((st == UTF8_ACCEPT) != ref_valid(s, i + 1))
			why = "byte by byte: prefix state";
	}
	if (!why && n && st != whole)
		why = "byte by byte: final state";
	for (size_t k = 0; k <= n && !why; k++) {
		utf8_state a = utf8_validate(UTF8_ACCEPT, s, k);
		if (utf8_validate(a, s + k, n - k) != whole)
			why = "split point";
	}
	tap_unguard(s, n);
	return why;
}

#define V(lit)                                                                                     \
	{                                                                                          \
		lit, sizeof(lit) - 1                                                               \
	}
struct vec {
	const char *s;
	size_t n;
};

/* Valid sequences from Kuhn's UTF-8-test.txt and Autobahn 6.2, 6.5-6.23. */
static const struct vec valid[] = {
    V(""),
    V("hello\x24world"),
    V("hello\xc2\xa2world"),
    V("hello\xe2\x82\xacworld"),
    V("hello\xf0\xa4\xad\xa2world"),
    V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* kosme */
    V("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"),
    V("\x00"),
    V("\xc2\x80"),
    V("\xe0\xa0\x80"),
    V("\xf0\x90\x80\x80"), /* first of each length */
    V("\x7f"),
    V("\xdf\xbf"),
    V("\xef\xbf\xbf"),
    V("\xf4\x8f\xbf\xbf"), /* last of each length */
    V("\xed\x9f\xbf"),
    V("\xee\x80\x80"),
    V("\xef\xbf\xbd"), /* around the surrogates, replacement char */
    V("\xef\xbf\xbe"),
    V("\xf0\x9f\xbf\xbe"),
    V("\xf3\xbf\xbf\xbf"), /* noncharacters are valid */
    V("\xef\xbf\xb9\xef\xbf\xba\xef\xbf\xbb\xef\xbf\xbc"),
    V("\xf1\x80\x80\x80\xf3\x8f\xbf\xbf"),
    V("abcdefghijklmnopqrstuvwxyz0123456789\xe2\x82\xac"
      "abcdefghijklmnopqrstuvwxyz\xf0\x9f\x98\x80"),
};

/* Invalid sequences from Kuhn's UTF-8-test.txt and Autobahn 6.3-6.22. */
static const struct vec invalid[] = {
    V("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"),
    V("\xf8\x88\x80\x80\x80"),
    V("\xfc\x84\x80\x80\x80\x80"), /* 5/6-byte forms */
    V("\xf7\xbf\xbf\xbf"),
    V("\xfb\xbf\xbf\xbf\xbf"),
    V("\xfd\xbf\xbf\xbf\xbf\xbf"),
    V("\xf4\x90\x80\x80"), /* U+110000 */
    V("\x80"),
    V("\xbf"),
    V("\x80\xbf"),
    V("\x80\xbf\x80"),
    V("\x80\xbf\x80\xbf\x80\xbf"), /* stray continuations */
    V("\xc0\x20\xc1\x20\xc2\x20\xdf\x20"),
    V("\xe0\x20\xe1\x20\xef\x20"),
    V("\xf0\x20\xf4\x20\xf7\x20"),
    V("\xf8\x20\xfb\x20"),
    V("\xfc\x20\xfd\x20"), /* lonely starts */
    V("\xc0"),
    V("\xe0\x80"),
    V("\xf0\x80\x80"),
    V("\xf8\x80\x80\x80"),
    V("\xfc\x80\x80\x80\x80"),
    V("\xdf"),
    V("\xef\xbf"),
    V("\xf7\xbf\xbf"),
    V("\xfb\xbf\xbf\xbf"),
    V("\xfd\xbf\xbf\xbf\xbf"), /* last byte missing */
    V("\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80"
      "\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"),
    V("\xfe"),
    V("\xff"),
    V("\xfe\xfe\xff\xff"), /* impossible bytes */
    V("\xc0\xaf"),
    V("\xe0\x80\xaf"),
    V("\xf0\x80\x80\xaf"),
    V("\xf8\x80\x80\x80\xaf"),
    V("\xfc\x80\x80\x80\x80\xaf"), /* overlong '/' */
    V("\xc1\xbf"),
    V("\xe0\x9f\xbf"),
    V("\xf0\x8f\xbf\xbf"),
    V("\xf8\x87\xbf\xbf\xbf"),
    V("\xfc\x83\xbf\xbf\xbf\xbf"), /* maximum overlongs */
    V("\xc0\x80"),
    V("\xe0\x80\x80"),
    V("\xf0\x80\x80\x80"), /* overlong NUL */
    V("\xed\xa0\x80"),
    V("\xed\xad\xbf"),
    V("\xed\xae\x80"),
    V("\xed\xaf\xbf"),
    V("\xed\xb0\x80"),
    V("\xed\xbe\x80"),
    V("\xed\xbf\xbf"), /* single surrogates */
    V("\xed\xa0\x80\xed\xb0\x80"),
    V("\xed\xad\xbf\xed\xbf\xbf"),
    V("\xed\xaf\xbf\xed\xb0\x80"), /* paired surrogates */
    V("\x65\x64\x69\x74\x65\x64\xed\xa0\x80"),
    V("hello\xc2"),
    V("ascii run of more than eight bytes \xf5"),
};

static void test_vectors(void)
{
	const char *why;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		why = check_vector(valid[i].s, valid[i].n, 1);
		ok(!why, "valid vector %zu (%zu bytes)%s%s", i, valid[i].n, why ? ": " : "",
		   why ? why : "");
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		why = check_vector(invalid[i].s, invalid[i].n, 0);
		ok(!why, "invalid vector %zu (%zu bytes)%s%s", i, invalid[i].n, why ? ": " : "",
		   why ? why : "");
	}
}

/* Where exactly the automaton gives up: at the byte that proves the error. */
static size_t reject_at(const char *s, size_t n)
{
	utf8_state st = UTF8_ACCEPT;
	for (size_t i = 0; i < n; i++) {
		st = utf8_validate(st, s + i, 1);
		if (st == UTF8_REJECT)
			return i;
	}
	return n;
}

static void test_fail_fast(void)
{
	is_int(reject_at("\xed\xa0\x80", 3), 1, "surrogate rejected at its second byte");
	is_int(reject_at("\xe0\x80\x80", 3), 1, "3-byte overlong rejected at its second byte");
	is_int(reject_at("\xf0\x8f\xbf\xbf", 4), 1, "4-byte overlong rejected at its second byte");
	is_int(reject_at("\xf4\x90\x80\x80", 4), 1, "U+110000 rejected at its second byte");
	is_int(reject_at("\xf5", 1), 0, "F5 rejected as a lead");
	is_int(reject_at("\xc0\x80", 2), 0, "C0 rejected as a lead");
	is_int(reject_at("\xc1\xbf", 2), 0, "C1 rejected as a lead");
	is_int(reject_at("ab\xe2\x82\x41", 5), 4, "missing continuation rejected at the intruder");
	is_int(reject_at("\x65\x64\x69\x74\x65\x64\xed\xa0\x80", 9), 7,
	       "Autobahn incremental example fails on byte 7");
	is_int(utf8_validate(utf8_validate(UTF8_ACCEPT, "\x65\x64\x69\x74\x65\x64\xed", 7),
	                     "\xa0\x80", 2),
	       UTF8_REJECT, "failure across chunks (ED | A0 80)");
	is_int(utf8_validate(UTF8_ACCEPT, "\xf5", 1), UTF8_REJECT, "single bad byte");
	is_int(utf8_validate(UTF8_REJECT, "abc", 3), UTF8_REJECT, "REJECT is sticky");
	is_int(utf8_validate(UTF8_REJECT, "", 0), UTF8_REJECT, "REJECT is sticky on empty input");
	ok(utf8_validate(UTF8_ACCEPT, "\xe2\x82", 2) != UTF8_ACCEPT &&
	       utf8_validate(UTF8_ACCEPT, "\xe2\x82", 2) != UTF8_REJECT,
	   "incomplete sequence is neither ACCEPT nor REJECT");
	is_int(utf8_validate(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT, "empty input, NULL pointer");
	is_int(utf8_validate(5, "a", 1), UTF8_REJECT, "a foreign state is treated as REJECT");
	is_int(utf8_validate(1000, "a", 1), UTF8_REJECT, "an out-of-range state is REJECT");
}

/* Every scalar value is valid alone and after every alignment of ASCII;
 * every surrogate, encoded the generic way, is not. */
static void test_code_points(void)
{
	uint8_t b[4];
	size_t bad = 0, n;

	for (uint32_t c = 0; c <= 0x10ffff; c++) {
		n = enc(b, c);
		int want = c < 0xd800 || c > 0xdfff;
		if (utf8_is_valid(b, n) != want)
			bad++;
	}
	is_int(bad, 0, "all 1 114 112 code points: valid except U+D800..U+DFFF");

	static const struct {
		uint32_t c;
		int valid;
	} edges[] = {{0xd7ff, 1}, {0xd800, 0}, {0xdbff, 0}, {0xdc00, 0},  {0xdfff, 0},  {0xe000, 1},
	             {0xfffd, 1}, {0xfffe, 1}, {0xffff, 1}, {0x10000, 1}, {0x10ffff, 1}};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		n = enc(b, edges[i].c);
		is_int(utf8_is_valid(b, n), edges[i].valid, "U+%04" PRIX32 " boundary", edges[i].c);
	}
	is_int(utf8_is_valid("\xf4\x90\x80\x80", 4), 0, "U+110000 (F4 90 80 80) invalid");
	is_int(utf8_is_valid("\xf4\x8f\xbf\xbf", 4), 1, "U+10FFFF (F4 8F BF BF) valid");
	is_int(utf8_is_valid("\xf7\xbf\xbf\xbf", 4), 0, "U+1FFFFF (F7 BF BF BF) invalid");

	/* Alignment: the eight-byte ASCII skip must not hide anything. */
	char buf[64];
	size_t fails = 0;
	for (size_t pre = 0; pre < 40; pre++) {
		for (size_t post = 0; post < 17; post++) {
			memset(buf, 'a', sizeof(buf));
			buf[pre] = (char)0xe2, buf[pre + 1] = (char)0x82, buf[pre + 2] = (char)0xac;
			if (!utf8_is_valid(buf, pre + 3 + post))
				fails++;
			buf[pre + 1] = 'x';
			if (utf8_is_valid(buf, pre + 3 + post))
				fails++;
			memset(buf, 'a', sizeof(buf));
			buf[pre] = (char)0x80;
			if (utf8_is_valid(buf, pre + 1 + post))
				fails++;
		}
	}
	is_int(fails, 0, "valid and invalid bytes at every offset within ASCII runs");
}

/* Every string of up to three bytes, and every 4-byte string whose lead is
 * F0..FF with every second and third byte, against the reference. */
static void test_exhaustive(void)
{
	uint8_t s[4];
	size_t bad = 0, fast = 0;
	static const uint8_t last[] = {0x00, 0x7f, 0x80, 0x9f, 0xbf, 0xc0, 0xf4, 0xff};

	for (uint32_t v = 0; v < 1u << 24; v++) {
		s[0] = (uint8_t)(v >> 16), s[1] = (uint8_t)(v >> 8), s[2] = (uint8_t)v;
		for (size_t n = 1; n <= 3; n++) {
			if (n < 3 && (v & ((1u << (8 * (3 - n))) - 1)))
				continue; /* shorter strings once each */
			utf8_state st = utf8_validate(UTF8_ACCEPT, s, n);
			if ((st == UTF8_ACCEPT) != ref_valid(s, n))
				bad++;
			if ((st == UTF8_REJECT) != !ref_viable(s, n))
				fast++;
		}
	}
	is_int(bad, 0, "all strings of 1-3 bytes agree with the reference");
	is_int(fast, 0, "all strings of 1-3 bytes: REJECT exactly when not a valid prefix");

	bad = fast = 0;
	for (uint32_t v = 0xf00000; v <= 0xffffff; v++) {
		s[0] = (uint8_t)(v >> 16), s[1] = (uint8_t)(v >> 8), s[2] = (uint8_t)v;
		for (size_t k = 0; k < sizeof(last); k++) {
			s[3] = last[k];
			utf8_state st = utf8_validate(UTF8_ACCEPT, s, 4);
			if ((st == UTF8_ACCEPT) != ref_valid(s, 4))
				bad++;
			if ((st == UTF8_REJECT) != !ref_viable(s, 4))
				fast++;
		}
	}
	is_int(bad, 0, "4-byte strings led by F0..FF agree with the reference");
	is_int(fast, 0, "4-byte strings led by F0..FF: REJECT exactly when not a valid prefix");
}

/* Random strings built from the interesting bytes, checked in random chunks. */
static void test_random(void)
{
	static const uint8_t alphabet[] = {'a',  0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
	                                   0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec,
	                                   0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5,
	                                   0xf8, 0xfe, 0xff, 0x80, 0xbf, 0x90, 'z',  0xa0};
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t s[24];
	size_t bad = 0;

	for (int iter = 0; iter < 300000; iter++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t n = x % sizeof(s);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			s[i] = alphabet[x % sizeof(alphabet)];
		}
		utf8_state st = UTF8_ACCEPT;
		for (size_t i = 0; i < n;) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t k = 1 + x % 5;
			if (k > n - i)
				k = n - i;
			st = utf8_validate(st, s + i, k);
			i += k;
			if ((st == UTF8_REJECT) != !ref_viable(s, i))
				bad++;
		}
		if ((st == UTF8_ACCEPT) != ref_valid(s, n))
			bad++;
	}
	is_int(bad, 0, "300 000 random strings in random chunks agree with the reference");
}

int main(void)
{
	test_vectors();
	test_fail_fast();
	test_code_points();
	test_exhaustive();
	test_random();
	return tap_done();
}
