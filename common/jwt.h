/*
 * jwt.h - verify and mint the HS256 JSON Web Tokens that Open WebUI issues.
 *
 * Open WebUI signs its session tokens with PyJWT, HS256, keyed with
 * WEBUI_SECRET_KEY. Its claims are `id` (the user id), `exp` (absent when
 * JWT_EXPIRES_IN is -1 or 0), `jti` (a uuid4), `iat`, and for internal tokens
 * `typ`. This module checks such a token and hands back those claims.
 *
 * HS256 is the only algorithm, fixed here and not read from the token: a
 * header naming anything else ("none", "HS384", "RS256", a missing `alg`) is
 * refused before the signature is looked at. The checks are deliberately
 * stricter than PyJWT's wherever a legitimate PyJWT token can never differ
 * (canonical base64url, no duplicate JSON keys, no raw control characters),
 * because every leniency is a second spelling an attacker may exploit.
 *
 * The module is a pure codec: no I/O, no logging, no state. Revocation
 * (Open WebUI's Redis keys on `jti` and the user's `revoked_at`) and the
 * user-row lookup belong to the caller, which gets the claims they need.
 */
#ifndef TIDINGS_JWT_H
#define TIDINGS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "slice.h"

/* Longest token accepted, checked before anything is decoded. */
#define JWT_MAX_TOKEN 8192
/* Longest `id` and `jti` accepted (bytes, excluding the NUL). */
#define JWT_MAX_ID 128

/* jwt_claims.flags: which optional claims the token carried. */
#define JWT_HAS_EXP 0x1
#define JWT_HAS_IAT 0x2
#define JWT_HAS_JTI 0x4
#define JWT_HAS_TYP 0x8

typedef struct jwt_claims {
	char id[JWT_MAX_ID + 1];  /* [A-Za-z0-9._:@-]{1,128}, NUL-terminated */
	char jti[JWT_MAX_ID + 1]; /* [A-Za-z0-9-]{1,128}, or "" without JWT_HAS_JTI */
	char typ[32];             /* [A-Za-z0-9._-]{1,31}, or "" without JWT_HAS_TYP */
	int64_t exp, iat;         /* unix seconds; 0 unless the matching flag is set */
	unsigned flags;
} jwt_claims;

/*
 * Verifies `token`, a compact JWS "header.payload.signature", with the
 * HMAC-SHA256 key key[0..keylen). `now` is the current time in unix seconds;
 * `require_exp` refuses tokens that carry no `exp`.
 *
 * The token is checked in this order, so the first failure names the real
 * problem: length (JWT_MAX_TOKEN, before any decoding); three parts, the
 * first two non-empty; the header (canonical base64url, a JSON object without
 * duplicate keys, `alg` exactly "HS256", no `crit`); the signature (present,
 * exactly 32 bytes, compared in constant time); and only then the payload,
 * so that the JSON parser never sees unauthenticated claims.
 *
 * Payload rules: an object without duplicate keys; `id` a string as
 * described in jwt_claims; `exp`, `iat`, `nbf` numbers if present (fractions
 * are floored, as PyJWT's int() truncates); expired when now >= exp, as
 * PyJWT without leeway; not yet valid when now < nbf; `jti` and `typ`
 * strings as described in jwt_claims; `sub` a string if present; a non-empty
 * `aud` is refused, as PyJWT refuses it when no audience is configured, and
 * Open WebUI configures none. A future `iat` is accepted (PyJWT refuses it),
 * since the issuer's clock is not ours.
 *
 * The token is borrowed for the call only and need not be NUL-terminated.
 * Returns 0 and fills *claims, or -1, zeroes *claims and sets *err (when
 * err is not NULL) to a short static reason fit for a log line: "too large",
 * "malformed", "bad base64", "bad header json", "duplicate key",
 * "alg not HS256", "crit header", "empty signature", "bad signature",
 * "bad payload json", "missing id", "bad id", "bad claim type", "bad jti",
 * "bad typ", "missing exp", "expired", "not yet valid", "unexpected aud",
 * "bad key" (empty, or longer than INT_MAX), "hmac failed" (OpenSSL could
 * not compute it). The reasons name what was wrong but never echo the token.
 */
int jwt_verify_hs256(slice token, const void *key, size_t keylen, int64_t now, int require_exp,
                     jwt_claims *claims, const char **err);

/*
 * Mints a token: header {"alg":"HS256","typ":"JWT"}, payload the bytes of
 * `payload_json` as given, signature HMAC-SHA256 with key[0..keylen). The
 * payload is not validated, so that tests can mint hostile tokens; callers
 * outside tests pass a compact JSON object. The token is appended to `out`
 * (not NUL-terminated). Returns 0, or -1 if the key is empty or `out` would
 * pass its limit, in which case `out` is unchanged.
 */
int jwt_sign_hs256(buf *out, slice payload_json, const void *key, size_t keylen);

#endif
