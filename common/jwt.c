#include "jwt.h"

#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base64.h"
#include "jscan.h"

#define MAC_LEN     32
#define MAC_B64_LEN 43 /* base64url_encoded_len(MAC_LEN) */

/* Every part of a token within JWT_MAX_TOKEN decodes to fewer bytes. */
#define PART_MAX ((size_t)JWT_MAX_TOKEN / 4 * 3)

/* Header members beyond this refuse the token: the duplicate-key check is
 * quadratic, and it runs before the signature is known to be good. Open
 * WebUI's header has two. */
#define HEADER_MAX_KEYS 16

/* base64url of {"alg":"HS256","typ":"JWT"}, byte for byte what PyJWT emits
 * (it sorts header keys). */
static const char header_b64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/* Splits "h.p.s" into three parts. Anything but exactly two dots is
 * malformed, as is an empty header or payload. An empty signature is left
 * to check_signature(), so that an "alg none" token, the usual way to get
 * one, is refused for its algorithm first. */
static const char *split(slice t, slice part[3])
{
	if (t.len == 0)
		return "malformed";
	const char *p = t.base, *end = t.base + t.len;
	for (int i = 0; i < 2; i++) {
		const char *dot = p == end ? NULL : memchr(p, '.', (size_t)(end - p));
		if (!dot)
			return "malformed";
		part[i] = slice_make(p, (size_t)(dot - p));
		p = dot + 1;
	}
	part[2] = slice_make(p, (size_t)(end - p));
	if (part[2].len && memchr(part[2].base, '.', part[2].len))
		return "malformed";
	if (!part[0].len || !part[1].len)
		return "malformed";
	return NULL;
}

/*
 * cJSON parses more than JSON: raw control characters inside strings,
 * bytes that are not UTF-8, numbers with a leading zero ("01"). PyJWT's
 * json.loads refuses those, so the text must also pass jscan's strict
 * check, lest a token mean something to us that Open WebUI would not read
 * at all. Refuse the escape \u0000 as well, though JSON allows it: cJSON
 * stores strings NUL-terminated, so {"id":"admin\u0000x"} would read as
 * "admin", and a key "id\u0000" would shadow "id". PyJWT never emits any
 * of these.
 */
static int text_ok(const unsigned char *p, size_t n)
{
	jspan v;
	if (jscan_doc((const char *)p, n, &v) < 0)
		return 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\\')
			continue;
		if (n - i >= 6 && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4) == 0)
			return 0;
		i++; /* an escaped backslash cannot start an escape */
	}
	return 1;
}

/* cJSON keeps every member of an object, duplicates included, and its
 * lookups return the first, while Python's json keeps the last. A token
 * holding {"id":"a","id":"b"} would thus name a different user here than in
 * Open WebUI, so duplicates refuse the token. Names compare exactly. */
static int has_duplicate_key(const cJSON *obj)
{
	for (const cJSON *a = obj->child; a; a = a->next)
		for (const cJSON *b = a->next; b; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return 1;
	return 0;
}

/* Decodes one base64url part into a JSON object of at most max_keys members
 * (0: any number), all with distinct names, which the caller frees. `bad` is
 * the reason for text that is not such an object. */
static const char *parse_part(slice part, const char *bad, int max_keys, cJSON **out)
{
	/* One spare byte for a NUL: cJSON is told the length and must not need
	 * it, but it bounds any peek past the end inside this buffer. */
	unsigned char text[PART_MAX + 1];
	size_t len;
	if (base64url_decode(text, PART_MAX, part, &len) < 0)
		return "bad base64";
	text[len] = '\0';
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts((const char *)text, len, &end, 0);
	if (!j)
		return bad;
	const char *stop = (const char *)text + len;
	while (end < stop && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
		end++;
	const char *why = NULL;
	if (end != stop)
		why = "malformed";
	else if (!text_ok(text, len) || !cJSON_IsObject(j) ||
	         (max_keys && cJSON_GetArraySize(j) > max_keys))
		why = bad;
	else if (has_duplicate_key(j))
		why = "duplicate key";
	if (why) {
		cJSON_Delete(j);
		return why;
	}
	*out = j;
	return NULL;
}

/* The algorithm is ours to choose, not the token's: the header must say
 * HS256, exactly, or the token is refused however it is signed. `crit`
 * names extensions the recipient must understand, and we understand none. */
static const char *check_header(slice part)
{
	/* PyJWT's header, which every Open WebUI token carries, is known to
	 * pass: decoding and parsing it again for each of a tab's two checks
	 * was a third of the cost of reading a token. */
	if (part.len == sizeof(header_b64) - 1 && memcmp(part.base, header_b64, part.len) == 0)
		return NULL;
	cJSON *h;
	const char *why = parse_part(part, "bad header json", HEADER_MAX_KEYS, &h);
	if (why)
		return why;
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
	if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
		why = "alg not HS256";
	else if (cJSON_GetObjectItemCaseSensitive(h, "crit"))
		why = "crit header";
	cJSON_Delete(h);
	return why;
}

/* HMAC-SHA256 over data[0..n). OpenSSL 3's one-shot HMAC() fetches the
 * algorithm and hashes the key on every call: 2 us, a few percent of the
 * gateway's connect path, which checks two tokens per tab. One context
 * keyed with the last key used is kept instead (a process uses one key)
 * and re-initialised per MAC, reusing the key: 0.4 us. A MAC over text an
 * attacker chose is a forgery waiting to leak, so the result is only
 * written to `out`. */
static int mac(unsigned char out[MAC_LEN], const void *key, size_t keylen, const void *data,
               size_t n)
{
	static EVP_MAC_CTX *ctx;
	static unsigned char *ctx_key; /* the key ctx holds, to tell a new one */
	static size_t ctx_keylen;
	if (!ctx || keylen != ctx_keylen || CRYPTO_memcmp(key, ctx_key, keylen) != 0) {
		char digest[] = "SHA256";
		OSSL_PARAM params[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		    OSSL_PARAM_construct_end()};
		EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
		EVP_MAC_CTX *c = alg ? EVP_MAC_CTX_new(alg) : NULL;
		unsigned char *k = malloc(keylen);
		EVP_MAC_free(alg); /* the context holds its own reference */
		if (!c || !k || !EVP_MAC_init(c, key, keylen, params)) {
			EVP_MAC_CTX_free(c);
			free(k);
			return -1;
		}
		memcpy(k, key, keylen);
		EVP_MAC_CTX_free(ctx);
		if (ctx_key)
			OPENSSL_cleanse(ctx_key, ctx_keylen);
		free(ctx_key);
		ctx = c;
		ctx_key = k;
		ctx_keylen = keylen;
	} else if (!EVP_MAC_init(ctx, NULL, 0, NULL)) {
		return -1;
	}
	size_t len = 0;
	if (!EVP_MAC_update(ctx, data, n) || !EVP_MAC_final(ctx, out, &len, MAC_LEN) ||
	    len != MAC_LEN)
		return -1;
	return 0;
}

/* A signature is exactly 43 characters for exactly 32 bytes, so truncated
 * and padded ones fail on length alone. The comparison takes the same time
 * wherever the first differing byte is. */
static const char *check_signature(slice token, const slice part[3], const void *key, size_t keylen)
{
	unsigned char sig[MAC_LEN], want[MAC_LEN];
	size_t siglen;
	if (part[2].len == 0)
		return "empty signature";
	if (part[2].len != MAC_B64_LEN)
		return "bad signature";
	if (base64url_decode(sig, sizeof(sig), part[2], &siglen) < 0 || siglen != MAC_LEN)
		return "bad base64";
	if (mac(want, key, keylen, token.base, part[0].len + 1 + part[1].len) < 0)
		return "hmac failed";
	int differ = CRYPTO_memcmp(sig, want, MAC_LEN);
	OPENSSL_cleanse(want, sizeof(want));
	return differ ? "bad signature" : NULL;
}

static int allowed(unsigned char c, const char *extra)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr(extra, c));
}

/* Copies a string claim into dst[0..cap) if it is 1..cap-1 characters, all
 * alphanumeric or in `extra`. Ids end up in Redis keys and log lines, so a
 * character outside the set refuses the token rather than being escaped. */
static const char *copy_string(const cJSON *item, const char *extra, char *dst, size_t cap,
                               const char *bad)
{
	if (!cJSON_IsString(item))
		return "bad claim type";
	const char *s = item->valuestring;
	size_t n = strlen(s);
	if (n == 0 || n >= cap)
		return bad;
	for (size_t i = 0; i < n; i++)
		if (!allowed((unsigned char)s[i], extra))
			return bad;
	memcpy(dst, s, n + 1);
	return NULL;
}

/* Reads a NumericDate. PyJWT takes int() of it, so it accepts fractions;
 * flooring agrees with that for every time after 1970. */
static const char *read_time(const cJSON *item, int64_t *out)
{
	if (!cJSON_IsNumber(item))
		return "bad claim type";
	double d = item->valuedouble;
	if (!isfinite(d) || d < -9.2e18 || d > 9.2e18)
		return "bad claim type";
	*out = (int64_t)floor(d);
	return NULL;
}

/* Python truthiness of a JSON value, for PyJWT's `aud` rule. */
static int truthy(const cJSON *j)
{
	if (cJSON_IsNull(j) || cJSON_IsFalse(j))
		return 0;
	if (cJSON_IsNumber(j))
		return j->valuedouble != 0;
	if (cJSON_IsString(j))
		return j->valuestring[0] != '\0';
	if (cJSON_IsArray(j) || cJSON_IsObject(j))
		return j->child != NULL;
	return 1;
}

/* The string claims: `id` is required; `jti` and `typ` are optional;
 * `sub`, which Open WebUI does not use, must be a string as PyJWT demands. */
static const char *read_strings(const cJSON *p, jwt_claims *c)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(p, "id");
	const char *why;
	if (!item)
		return "missing id";
	if ((why = copy_string(item, "._:@-", c->id, sizeof(c->id), "bad id")))
		return why;
	if ((item = cJSON_GetObjectItemCaseSensitive(p, "jti"))) {
		if ((why = copy_string(item, "-", c->jti, sizeof(c->jti), "bad jti")))
			return why;
		c->flags |= JWT_HAS_JTI;
	}
	if ((item = cJSON_GetObjectItemCaseSensitive(p, "typ"))) {
		if ((why = copy_string(item, "._-", c->typ, sizeof(c->typ), "bad typ")))
			return why;
		c->flags |= JWT_HAS_TYP;
	}
	item = cJSON_GetObjectItemCaseSensitive(p, "sub");
	if (item && !cJSON_IsString(item))
		return "bad claim type";
	return NULL;
}

/* The time claims and `aud`, checked as PyJWT checks them with no leeway
 * and no audience configured. A future `iat` is not refused (PyJWT does):
 * the issuer's clock is not ours, and a second of skew would refuse fresh
 * tokens. */
static const char *read_times(const cJSON *p, int64_t now, int require_exp, jwt_claims *c)
{
	const cJSON *item;
	const char *why;
	int64_t nbf;
	if ((item = cJSON_GetObjectItemCaseSensitive(p, "exp"))) {
		if ((why = read_time(item, &c->exp)))
			return why;
		c->flags |= JWT_HAS_EXP;
	}
	if ((item = cJSON_GetObjectItemCaseSensitive(p, "iat"))) {
		if ((why = read_time(item, &c->iat)))
			return why;
		c->flags |= JWT_HAS_IAT;
	}
	if ((item = cJSON_GetObjectItemCaseSensitive(p, "nbf"))) {
		if ((why = read_time(item, &nbf)))
			return why;
		if (now < nbf)
			return "not yet valid";
	}
	if (!(c->flags & JWT_HAS_EXP) && require_exp)
		return "missing exp";
	if ((c->flags & JWT_HAS_EXP) && now >= c->exp)
		return "expired";
	item = cJSON_GetObjectItemCaseSensitive(p, "aud");
	if (item && truthy(item))
		return "unexpected aud";
	return NULL;
}

static const char *verify(slice token, const void *key, size_t keylen, int64_t now, int require_exp,
                          jwt_claims *c)
{
	slice part[3];
	const char *why;
	cJSON *p;
	if (token.len > JWT_MAX_TOKEN)
		return "too large";
	if (keylen == 0 || keylen > INT_MAX)
		return "bad key";
	if ((why = split(token, part)) || (why = check_header(part[0])) ||
	    (why = check_signature(token, part, key, keylen)))
		return why;
	if ((why = parse_part(part[1], "bad payload json", 0, &p)))
		return why;
	if (!(why = read_strings(p, c)))
		why = read_times(p, now, require_exp, c);
	cJSON_Delete(p);
	return why;
}

int jwt_verify_hs256(slice token, const void *key, size_t keylen, int64_t now, int require_exp,
                     jwt_claims *claims, const char **err)
{
	memset(claims, 0, sizeof(*claims));
	const char *why = verify(token, key, keylen, now, require_exp, claims);
	if (!why)
		return 0;
	memset(claims, 0, sizeof(*claims));
	if (err)
		*err = why;
	return -1;
}

/* Reserves the whole token first, so that a refusal leaves `out` as it
 * was, then writes header, payload and signature in place. */
int jwt_sign_hs256(buf *out, slice payload_json, const void *key, size_t keylen)
{
	size_t hlen = sizeof(header_b64) - 1;
	if (keylen == 0 || keylen > INT_MAX || payload_json.len > SIZE_MAX / 2)
		return -1;
	size_t plen = base64url_encoded_len(payload_json.len);
	if (buf_reserve(out, hlen + 1 + plen + 1 + MAC_B64_LEN) < 0)
		return -1;
	char *start = out->data + out->len, *w = start;
	memcpy(w, header_b64, hlen);
	w += hlen;
	*w++ = '.';
	w += base64url_encode(w, payload_json.base, payload_json.len);
	unsigned char sig[MAC_LEN];
	if (mac(sig, key, keylen, start, (size_t)(w - start)) < 0)
		return -1;
	*w++ = '.';
	w += base64url_encode(w, sig, MAC_LEN);
	out->len += (size_t)(w - start);
	return 0;
}
