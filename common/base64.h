/*
 * base64.h - strict, canonical base64 (RFC 4648) in both alphabets.
 *
 * Two variants share one implementation:
 *
 *   base64url_*  the URL-safe alphabet ("-_"), never padded, as JWTs use.
 *   base64_*     the standard alphabet ("+/"), always padded with '='.
 *
 * The decoders are strict on purpose: they accept exactly the strings their
 * encoder produces and nothing else. No whitespace, no characters of the
 * other alphabet, no missing or surplus padding, and no non-zero bits in the
 * unused low bits of the last character. Every byte string therefore has
 * exactly one accepted encoding, so a token cannot be re-spelled (and so
 * slip past a cache or a revocation list keyed on its text) without
 * changing its meaning.
 *
 * Nothing here allocates or NUL-terminates: the caller owns both buffers,
 * and outputs are exactly the bytes counted by the return value.
 */
#ifndef TIDINGS_BASE64_H
#define TIDINGS_BASE64_H

#include <stddef.h>

#include "slice.h"

/* Length of the unpadded URL-safe encoding of n bytes: ceil(4n / 3).
 * n must be at most SIZE_MAX / 4 * 3 (the result would not fit otherwise). */
size_t base64url_encoded_len(size_t n);

/* Length of the padded standard encoding of n bytes: 4 * ceil(n / 3).
 * Same bound on n as base64url_encoded_len. */
size_t base64_encoded_len(size_t n);

/* An upper bound on the bytes that an encoding of `n` characters in either
 * variant decodes to; size decode buffers with it. */
size_t base64_decoded_max(size_t n);

/* Encodes in[0..n) into out, which must hold base64url_encoded_len(n)
 * bytes. Writes no padding and no NUL. Returns the number of bytes written. */
size_t base64url_encode(char *out, const void *in, size_t n);

/* Encodes in[0..n) into out, which must hold base64_encoded_len(n) bytes,
 * with '=' padding and no NUL. Returns the number of bytes written. */
size_t base64_encode(char *out, const void *in, size_t n);

/* Decodes the unpadded URL-safe text `in` into out[0..outcap). Returns 0
 * and sets *outlen, or -1 if the text is not a canonical encoding (a
 * character outside [A-Za-z0-9_-], any '=', a length of 1 mod 4, non-zero
 * trailing bits) or the result would not fit in outcap. On -1, out may hold
 * partial output and *outlen is unchanged. */
int base64url_decode(void *out, size_t outcap, slice in, size_t *outlen);

/* As base64url_decode for the padded standard alphabet: the length must be
 * a multiple of 4 and exactly the right number of '=' (0, 1 or 2) must end
 * the text; '=' anywhere else is refused. */
int base64_decode(void *out, size_t outcap, slice in, size_t *outlen);

#endif
