/* Tests common/buf.c: growth, limits, consume. */
#include "common/buf.h"
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	buf b;
	buf_init(&b, 10);
	is_int(b.len, 0, "new buffer is empty");
	ok(b.data == NULL, "new buffer holds no heap block");
	is_int(buf_append_cstr(&b, "hello"), 0, "append within limit");
	is_int(buf_append_cstr(&b, "world"), 0, "append up to the limit");
	is_int(buf_append_byte(&b, '!'), -1, "append past the limit refused");
	is_mem(b.data, b.len, "helloworld", 10, "contents kept after refusal");
	ok(b.cap <= 10, "capacity never exceeds the limit");
	buf_consume(&b, 5);
	is_mem(b.data, b.len, "world", 5, "consume drops the front");
	is_int(buf_reserve(&b, SIZE_MAX), -1, "huge reserve refused without overflow");
	buf_reset(&b);
	is_int(buf_append_u64(&b, 1234567890ULL), 0, "append number");
	is_mem(b.data, b.len, "1234567890", 10, "decimal encoding");
	buf_reset(&b);
	is_int(buf_appendf(&b, "%s=%d", "ab", 42), 0, "formatted append");
	is_mem(b.data, b.len, "ab=42", 5, "formatted text, no terminator counted");
	is_int(buf_appendf(&b, "%s", "123456"), -1, "formatted append past the limit refused");
	is_mem(b.data, b.len, "ab=42", 5, "contents kept after a refused formatted append");
	buf_dispose(&b);
	buf big;
	buf_init(&big, 0);
	char line[3000];
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	is_int(buf_appendf(&big, "[%s]", line), 0, "a long formatted append");
	is_int((int)big.len, (int)sizeof(line) + 1, "is not truncated");
	buf_dispose(&big);
	ok(b.data == NULL && b.len == 0, "dispose frees");

	/* Every length from 1 to 20 digits, against snprintf. */
	char want[32], got[BUF_U64_DIGITS + 1];
	uint64_t v = 0;
	int same = 1;
	for (int d = 0; d <= 20; d++) {
		uint64_t cases[] = {v, v ? v - 1 : 0, v + 1};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			size_t n = buf_u64_digits(got, cases[i]);
			int wn = snprintf(want, sizeof(want), "%llu", (unsigned long long)cases[i]);
			same &= n == (size_t)wn && memcmp(got, want, n) == 0;
		}
		v = d == 0 ? 1 : v * 10;
	}
	ok(same, "buf_u64_digits agrees with snprintf around every power of ten");
	is_int((int)buf_u64_digits(got, UINT64_MAX), 20, "UINT64_MAX takes 20 digits");
	is_mem(got, 20, "18446744073709551615", 20, "UINT64_MAX in decimal");
	return tap_done();
}
