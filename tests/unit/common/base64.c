/* Tests common/base64.c: RFC 4648 vectors in both alphabets, strictness
 * (padding, alphabet, lengths, non-canonical trailing bits), and round trips
 * of every length from 0 to 64. Inputs sit against a guard page, and encoders
 * write into buffers that end at one, so any over-read or over-write crashes. */
#include "common/base64.h"
#include "tap.h"

typedef int (*decode_fn)(void *, size_t, slice, size_t *);
typedef size_t (*encode_fn)(char *, const void *, size_t);

/* Decodes s[0..n) from a guarded copy; returns the decoder's result. */
static int guarded_decode(decode_fn dec, const char *s, size_t n, void *out, size_t cap,
                          size_t *outlen)
{
	char *g = tap_guard(s, n);
	int rc = dec(out, cap, slice_make(g, n), outlen);
	tap_unguard(g, n);
	return rc;
}

/* The string with control characters escaped, for test names that must
 * stay on one TAP line. */
static const char *show(const char *s)
{
	static char out[64];
	size_t o = 0;
	for (; *s && o < sizeof(out) - 5; s++)
		o += (size_t)snprintf(out + o, sizeof(out) - o,
		                      (unsigned char)*s < 0x20 ? "\\x%02x" : "%c", *s);
	out[o] = '\0';
	return out;
}

static int decodes(decode_fn dec, const char *s)
{
	unsigned char out[64];
	size_t len;
	return guarded_decode(dec, s, strlen(s), out, sizeof(out), &len) == 0;
}

/* Encodes into a buffer of exactly the announced length, ending at a guard
 * page, and compares with `want`. */
static void check_encode(encode_fn enc, size_t (*enclen)(size_t), const char *in, size_t n,
                         const char *want, const char *name)
{
	static const char blank[128];
	size_t len = enclen(n);
	char *out = tap_guard(blank, len);
	size_t got = enc(out, in, n);
	is_mem(out, got, want, strlen(want), "%s encodes %zu bytes as \"%s\"", name, n, want);
	is_int(got, len, "%s encoded length of %zu bytes", name, n);
	tap_unguard(out, len);
}

static void check_decode(decode_fn dec, const char *in, const char *want, size_t wlen,
                         const char *name)
{
	unsigned char out[64];
	size_t len = 0;
	int rc = guarded_decode(dec, in, strlen(in), out, sizeof(out), &len);
	is_int(rc, 0, "%s decode \"%s\"", name, in);
	is_mem(out, len, want, wlen, "%s decoded \"%s\"", name, in);
}

static void test_rfc4648(void)
{
	static const struct {
		const char *in, *std, *url;
	} v[] = {
	    {"", "", ""},
	    {"f", "Zg==", "Zg"},
	    {"fo", "Zm8=", "Zm8"},
	    {"foo", "Zm9v", "Zm9v"},
	    {"foob", "Zm9vYg==", "Zm9vYg"},
	    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
	    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].in);
		check_encode(base64_encode, base64_encoded_len, v[i].in, n, v[i].std, "std");
		check_encode(base64url_encode, base64url_encoded_len, v[i].in, n, v[i].url, "url");
		check_decode(base64_decode, v[i].std, v[i].in, n, "std");
		check_decode(base64url_decode, v[i].url, v[i].in, n, "url");
	}
}

/* The two characters where the alphabets differ, from python3's
 * base64.b64encode and base64.urlsafe_b64encode. */
static void test_alphabets(void)
{
	check_encode(base64_encode, base64_encoded_len, "\xfb\xff", 2, "+/8=", "std");
	check_encode(base64url_encode, base64url_encoded_len, "\xfb\xff", 2, "-_8", "url");
	check_encode(base64_encode, base64_encoded_len, "\xfb\xef\xbe", 3, "++++", "std");
	check_encode(base64url_encode, base64url_encoded_len, "\xff\xff\xff", 3, "____", "url");
	check_encode(base64_encode, base64_encoded_len, "\xfa", 1, "+g==", "std");
	check_decode(base64_decode, "+/8=", "\xfb\xff", 2, "std");
	check_decode(base64url_decode, "-_8", "\xfb\xff", 2, "url");
	check_decode(base64_decode, "////", "\xff\xff\xff", 3, "std");
	check_decode(base64url_decode, "____", "\xff\xff\xff", 3, "url");
	check_decode(base64url_decode, "AAAA", "\0\0\0", 3, "url");
	ok(!decodes(base64url_decode, "+/8"), "url refuses + and /");
	ok(!decodes(base64url_decode, "Zm+v"), "url refuses +");
	ok(!decodes(base64_decode, "-_8="), "std refuses - and _");
	ok(!decodes(base64_decode, "Zm_v"), "std refuses _");
}

static void test_strict(void)
{
	static const char *const url_bad[] = {
	    "Zg==",   "Zm8=",  "Zg=",    "Zm9v=",    "=",
	    "Z",      "Zm9vY",                            /* padding, length 1 mod 4 */
	    "Zh",     "Zm9",   "Zm9vYh", "Zm9vYmF",       /* non-zero trailing bits */
	    "Zm9v\n", " Zm9v", "Zm 9v",  "Zm9v\r\n", ".", /* whitespace, junk */
	};
	static const char *const std_bad[] = {
	    "Zg",       "Zg=",   "Zg===",    "Zm8",  "Z===", "====",     "===",
	    "Zg==Zg==", "=Zg=",  "Zm=v",     "Zh==", "Zm9=", "Zm9vYh==", /* non-zero trailing bits
	                                                                  */
	    "Zm9v\n",   "Zm9v ", "Zm9v====",                             /* junk, surplus padding */
	};
	for (size_t i = 0; i < sizeof(url_bad) / sizeof(url_bad[0]); i++)
		ok(!decodes(base64url_decode, url_bad[i]), "url refuses \"%s\"", show(url_bad[i]));
	for (size_t i = 0; i < sizeof(std_bad) / sizeof(std_bad[0]); i++)
		ok(!decodes(base64_decode, std_bad[i]), "std refuses \"%s\"", show(std_bad[i]));

	unsigned char out[8];
	size_t len = 99;
	is_int(guarded_decode(base64url_decode, "Zm\0v", 4, out, sizeof(out), &len), -1,
	       "url refuses a NUL");
	is_int(guarded_decode(base64_decode, "Zg=\0", 4, out, sizeof(out), &len), -1,
	       "std refuses a NUL");
	is_int(len, 99, "outlen untouched on failure");
	is_int(base64url_decode(out, 0, SLICE_NULL, &len), 0, "empty input decodes");
	is_int(len, 0, "to nothing");
	is_int(base64_decode(out, 0, SLICE_NULL, &len), 0, "empty padded input decodes");
}

static void test_capacity(void)
{
	unsigned char out[6];
	size_t len;
	is_int(guarded_decode(base64url_decode, "Zm9vYmFy", 8, out, 5, &len), -1,
	       "output one byte short refused");
	is_int(guarded_decode(base64url_decode, "Zm9vYmFy", 8, out, 6, &len), 0,
	       "output of exactly the size");
	is_int(guarded_decode(base64_decode, "Zm9vYmE=", 8, out, 4, &len), -1,
	       "std output one byte short refused");
	is_int(guarded_decode(base64_decode, "Zm9vYmE=", 8, out, 5, &len), 0,
	       "std output of exactly the size");
	int bounded = 1;
	for (size_t n = 0; n < 200; n++)
		if (base64_decoded_max(base64_encoded_len(n)) < n ||
		    base64_decoded_max(base64url_encoded_len(n)) < n)
			bounded = 0;
	ok(bounded, "base64_decoded_max bounds both variants");
}

/* Every length 0..64: encode, then decode the encoding, in both variants. */
static void test_round_trips(void)
{
	unsigned char in[64], out[64];
	char text[100];
	unsigned seed = 12345;
	int good = 0;
	for (size_t n = 0; n <= 64; n++) {
		for (size_t i = 0; i < n; i++)
			in[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
		size_t tl, ol = 0;
		tl = base64url_encode(text, in, n);
		int u = tl == base64url_encoded_len(n) &&
		        guarded_decode(base64url_decode, text, tl, out, n, &ol) == 0 && ol == n &&
		        memcmp(in, out, n) == 0;
		tl = base64_encode(text, in, n);
		int s = tl == base64_encoded_len(n) && tl % 4 == 0 &&
		        guarded_decode(base64_decode, text, tl, out, n, &ol) == 0 && ol == n &&
		        memcmp(in, out, n) == 0;
		good += u && s;
		if (!(u && s))
			printf("# round trip of %zu bytes failed (url %d, std %d)\n", n, u, s);
	}
	is_int(good, 65, "every length 0..64 round-trips in both variants");
}

/* Exhaustively over short inputs, a decode succeeds only for the canonical
 * encodings, and re-encoding gives back the input. Two characters carry one
 * byte, so 256 of 65536 pairs decode; three carry two, so 65536 of 64^3. */
static void test_canonical(void)
{
	char t[4], e[4];
	unsigned char out[3];
	size_t len;
	int accepted = 0, mismatched = 0;
	for (int a = 0; a < 256; a++)
		for (int b = 0; b < 256; b++) {
			t[0] = (char)a, t[1] = (char)b, t[2] = t[3] = '=';
			if (base64url_decode(out, sizeof(out), slice_make(t, 2), &len) == 0) {
				accepted++;
				mismatched += len != 1 || base64url_encode(e, out, len) != 2 ||
				              memcmp(e, t, 2) != 0;
			}
			if (base64_decode(out, sizeof(out), slice_make(t, 4), &len) == 0) {
				accepted++;
				mismatched += len != 1 || base64_encode(e, out, len) != 4 ||
				              memcmp(e, t, 4) != 0;
			}
		}
	is_int(accepted, 2 * 256, "one-byte encodings: exactly 256 per variant");
	is_int(mismatched, 0, "each re-encodes to itself");

	static const char url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	accepted = mismatched = 0;
	for (int a = 0; a < 64; a++)
		for (int b = 0; b < 64; b++)
			for (int c = 0; c < 64; c++) {
				t[0] = url[a], t[1] = url[b], t[2] = url[c];
				if (base64url_decode(out, sizeof(out), slice_make(t, 3), &len))
					continue;
				accepted++;
				mismatched += len != 2 || base64url_encode(e, out, len) != 3 ||
				              memcmp(e, t, 3) != 0;
			}
	is_int(accepted, 65536, "two-byte encodings: exactly 65536");
	is_int(mismatched, 0, "each re-encodes to itself");
}

int main(void)
{
	test_rfc4648();
	test_alphabets();
	test_strict();
	test_capacity();
	test_round_trips();
	test_canonical();
	return tap_done();
}
