#include "base64.h"

#include <stdint.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t base64url_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t base64_encoded_len(size_t n)
{
	return (n / 3 + (n % 3 != 0)) * 4;
}

size_t base64_decoded_max(size_t n)
{
	return n / 4 * 3 + 2;
}

/* Encodes whole groups of three bytes, then the one- or two-byte tail as two
 * or three characters, padded to four when `pad` is set. */
static size_t encode(char *out, const unsigned char *in, size_t n, const char *alpha, int pad)
{
	char *o = out;
	size_t i = 0;
	for (; n - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = alpha[v >> 18];
		*o++ = alpha[v >> 12 & 63];
		*o++ = alpha[v >> 6 & 63];
		*o++ = alpha[v & 63];
	}
	if (i == n)
		return (size_t)(o - out);
	uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
	*o++ = alpha[v >> 18];
	*o++ = alpha[v >> 12 & 63];
	if (n - i == 2)
		*o++ = alpha[v >> 6 & 63];
	else if (pad)
		*o++ = '=';
	if (pad)
		*o++ = '=';
	return (size_t)(o - out);
}

size_t base64url_encode(char *out, const void *in, size_t n)
{
	return encode(out, in, n, url_alphabet, 0);
}

size_t base64_encode(char *out, const void *in, size_t n)
{
	return encode(out, in, n, std_alphabet, 1);
}

/* The value of each character in each alphabet, 64 for one outside it,
 * built by the compiler: a lookup is half the cost of range tests, and the
 * gateway decodes three token parts per check. */
#define SEXTET(c, c62, c63)                                                                        \
	((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                    \
	 : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                               \
	 : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                               \
	 : (c) == (c62)             ? 62                                                           \
	 : (c) == (c63)             ? 63                                                           \
	                            : 64)
#define STD(c)    (unsigned char)SEXTET(c, '+', '/')
#define URL(c)    (unsigned char)SEXTET(c, '-', '_')
#define T4(f, b)  f(b), f((b) + 1), f((b) + 2), f((b) + 3)
#define T16(f, b) T4(f, b), T4(f, (b) + 4), T4(f, (b) + 8), T4(f, (b) + 12)
#define T64(f, b) T16(f, b), T16(f, (b) + 16), T16(f, (b) + 32), T16(f, (b) + 48)
static const unsigned char std_values[256] = {T64(STD, 0), T64(STD, 64), T64(STD, 128),
                                              T64(STD, 192)};
static const unsigned char url_values[256] = {T64(URL, 0), T64(URL, 64), T64(URL, 128),
                                              T64(URL, 192)};

/* Decodes n unpadded characters. A tail of 2 or 3 characters carries 12 or
 * 18 bits for 8 or 16 bits of data; the spare low bits must be zero, or
 * several texts would decode to the same bytes. */
static int decode(unsigned char *out, size_t outcap, const unsigned char *in, size_t n,
                  const unsigned char *values, size_t *outlen)
{
	size_t tail = n % 4;
	if (tail == 1)
		return -1;
	size_t len = n / 4 * 3 + (tail ? tail - 1 : 0);
	if (len > outcap)
		return -1;
	uint32_t v = 0;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned s = values[in[i]];
		if (s > 63)
			return -1;
		v = v << 6 | s;
		if (i % 4 == 3) {
			out[j++] = (unsigned char)(v >> 16);
			out[j++] = (unsigned char)(v >> 8);
			out[j++] = (unsigned char)v;
			v = 0;
		}
	}
	if (tail == 2) {
		if (v & 0xf)
			return -1;
		out[j++] = (unsigned char)(v >> 4);
	} else if (tail == 3) {
		if (v & 0x3)
			return -1;
		out[j++] = (unsigned char)(v >> 10);
		out[j++] = (unsigned char)(v >> 2);
	}
	*outlen = j;
	return 0;
}

int base64url_decode(void *out, size_t outcap, slice in, size_t *outlen)
{
	return decode(out, outcap, (const unsigned char *)in.base, in.len, url_values, outlen);
}

/* Strips the padding, which must make the length a multiple of four, and
 * decodes the rest unpadded. A stray '=' left in the body is not in the
 * alphabet, so decode() refuses it; "x===" leaves a body ending in '='. */
int base64_decode(void *out, size_t outcap, slice in, size_t *outlen)
{
	size_t n = in.len;
	if (n % 4)
		return -1;
	if (n && in.base[n - 1] == '=')
		n -= in.base[n - 2] == '=' ? 2 : 1;
	return decode(out, outcap, (const unsigned char *)in.base, n, std_values, outlen);
}
