/*
 * libFuzzer driver for common/jwt.c and common/base64.c.
 *
 * Each input is tried three ways:
 *   - as a token, verified with a fixed key: it must be refused or yield
 *     claims that keep every promise of jwt.h;
 *   - as a payload, signed with that key and verified, so that the fuzzer
 *     reaches the claim checks that a forged signature never gets past;
 *   - as base64 text in both variants: decoding is canonical, so whatever
 *     decodes must re-encode to the input exactly; and as bytes, whose
 *     encoding must decode back to them.
 * A broken promise aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/jwt.h"

#define KEY "tidings-fuzz-key"
#define NOW 1750000000

static void check(int cond)
{
	if (!cond)
		abort();
}

static int id_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return 0;
	}
	return 1;
}

/* Verifies with and without require_exp and checks what jwt.h promises. */
static void verify(slice token)
{
	for (int require_exp = 0; require_exp < 2; require_exp++) {
		jwt_claims c;
		const char *err = NULL;
		int rc = jwt_verify_hs256(token, KEY, sizeof(KEY) - 1, NOW, require_exp, &c, &err);
		if (rc != 0) {
			check(rc == -1 && err != NULL && c.id[0] == '\0' && c.flags == 0);
			continue;
		}
		check(err == NULL && token.len <= JWT_MAX_TOKEN);
		check(id_ok(c.id, "._:@-", JWT_MAX_ID));
		check(!(c.flags & JWT_HAS_JTI) || id_ok(c.jti, "-", JWT_MAX_ID));
		check(!(c.flags & JWT_HAS_TYP) || id_ok(c.typ, "._-", sizeof(c.typ) - 1));
		check(!require_exp || (c.flags & JWT_HAS_EXP));
		check(!(c.flags & JWT_HAS_EXP) || c.exp > NOW);
	}
}

static void sign_and_verify(const uint8_t *data, size_t size)
{
	buf b;
	buf_init(&b, 0);
	check(jwt_sign_hs256(&b, slice_make(data, size), KEY, sizeof(KEY) - 1) == 0);
	verify(buf_slice(&b));
	buf_dispose(&b);
}

typedef int (*decode_fn)(void *, size_t, slice, size_t *);
typedef size_t (*encode_fn)(char *, const void *, size_t);

static void round_trip(const uint8_t *data, size_t size, decode_fn dec, encode_fn enc,
                       size_t (*enclen)(size_t))
{
	size_t cap = base64_decoded_max(size), len = 0;
	unsigned char *bin = malloc((cap > size ? cap : size) + 1);
	char *text = malloc(enclen(size) + 1);
	check(bin && text);
	if (dec(bin, cap, slice_make(data, size), &len) == 0) {
		check(len <= cap && enclen(len) == size);
		check(enc(text, bin, len) == size && memcmp(text, data, size) == 0);
	}
	size_t tl = enc(text, data, size);
	check(tl == enclen(size));
	check(dec(bin, size, slice_make(text, tl), &len) == 0);
	check(len == size && memcmp(bin, data, size) == 0);
	free(bin);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	verify(slice_make(data, size));
	sign_and_verify(data, size);
	round_trip(data, size, base64url_decode, base64url_encode, base64url_encoded_len);
	round_trip(data, size, base64_decode, base64_encode, base64_encoded_len);
	return 0;
}
