#include "utf8.h"

#include <string.h>

/*
 * Each byte first maps to one of twelve classes; the transition table is then
 * indexed by state + class. States are stored premultiplied by the class
 * count, so a step is two loads and an add.
 *
 * Classes (what the byte may be):
 *   0  00..7F  ASCII             6  E0        lead, 2nd byte must be A0..BF
 *   1  80..8F  continuation      7  E1..EC,   lead of 3
 *   2  90..9F  continuation         EE..EF
 *   3  A0..BF  continuation      8  ED        lead, 2nd byte 80..9F (no surrogates)
 *   4  C0 C1 F5..FF never valid  9  F0        lead, 2nd byte must be 90..BF
 *   5  C2..DF  lead of 2        10  F1..F3    lead of 4
 *                               11  F4        lead, 2nd byte 80..8F (<= U+10FFFF)
 *
 * The three continuation classes are split only where some lead restricts
 * its second byte; that restriction is what rejects overlongs, surrogates
 * and code points above U+10FFFF at the earliest possible byte.
 */
/* clang-format off */
static const uint8_t utf8_class[256] = {
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 00 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 10 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 20 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 30 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 40 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 50 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 60 */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 70 */
	1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  /* 80 */
	2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  /* 90 */
	3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* A0 */
	3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  /* B0 */
	4,  4,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* C0 */
	5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  5,  /* D0 */
	6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  7,  /* E0 */
	9,  10, 10, 10, 11, 4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* F0 */
};
/* clang-format on */

/* States, premultiplied by the number of classes. */
enum {
	S_ACC = 0,  /* UTF8_ACCEPT */
	S_REJ = 12, /* UTF8_REJECT */
	S_C1 = 24,  /* one continuation byte left */
	S_C2 = 36,  /* two left */
	S_C3 = 48,  /* three left */
	S_E0 = 60,  /* after E0: A0..BF, then one more */
	S_ED = 72,  /* after ED: 80..9F, then one more */
	S_F0 = 84,  /* after F0: 90..BF, then two more */
	S_F4 = 96,  /* after F4: 80..8F, then two more */
	S_COUNT = 108
};

/* clang-format off */
#define R S_REJ
static const uint8_t utf8_next[S_COUNT] = {
	/*         ascii  80..8F 90..9F A0..BF bad  C2..DF E0    E1..EF ED    F0    F1..F3 F4 */
	/* ACC */ S_ACC, R,     R,     R,     R,   S_C1,  S_E0, S_C2,  S_ED, S_F0, S_C3,  S_F4,
	/* REJ */ R,     R,     R,     R,     R,   R,     R,    R,     R,    R,    R,     R,
	/* C1  */ R,     S_ACC, S_ACC, S_ACC, R,   R,     R,    R,     R,    R,    R,     R,
	/* C2  */ R,     S_C1,  S_C1,  S_C1,  R,   R,     R,    R,     R,    R,    R,     R,
	/* C3  */ R,     S_C2,  S_C2,  S_C2,  R,   R,     R,    R,     R,    R,    R,     R,
	/* E0  */ R,     R,     R,     S_C1,  R,   R,     R,    R,     R,    R,    R,     R,
	/* ED  */ R,     S_C1,  S_C1,  R,     R,   R,     R,    R,     R,    R,    R,     R,
	/* F0  */ R,     R,     S_C2,  S_C2,  R,   R,     R,    R,     R,    R,    R,     R,
	/* F4  */ R,     S_C2,  R,     R,     R,   R,     R,    R,     R,    R,    R,     R,
};
#undef R
/* clang-format on */

_Static_assert(UTF8_ACCEPT == S_ACC && UTF8_REJECT == S_REJ, "utf8.h constants match the table");

/*
 * Chat traffic is mostly ASCII, so at a character boundary we skip eight
 * ASCII bytes per step and only run the automaton over the rest. A state
 * that is not one of ours (the caller's bug) is treated as REJECT rather than
 * indexing outside the table.
 */
utf8_state utf8_validate(utf8_state st, const void *p, size_t n)
{
	const uint8_t *s = p, *end = s + n;

	if (st >= S_COUNT || st % 12 != 0)
		return UTF8_REJECT;
	if (n == 0 || st == S_REJ)
		return st;
	while (s < end) {
		if (st == S_ACC) {
			while ((size_t)(end - s) >= 8) {
				uint64_t w;
				memcpy(&w, s, 8);
				if (w & 0x8080808080808080ull)
					break;
				s += 8;
			}
			while (s < end && *s < 0x80)
				s++;
			if (s == end)
				break;
		}
		st = utf8_next[st + utf8_class[*s++]];
		if (st == S_REJ)
			break;
	}
	return st;
}

int utf8_is_valid(const void *p, size_t n)
{
	return utf8_validate(UTF8_ACCEPT, p, n) == UTF8_ACCEPT;
}
