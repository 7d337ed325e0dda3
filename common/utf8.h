/*
 * utf8.h - incremental UTF-8 validation.
 *
 * A small deterministic automaton that accepts exactly the well-formed UTF-8
 * of RFC 3629 (Unicode table 3-7): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no 5- and 6-byte forms.
 * Noncharacters such as U+FFFE are valid, as RFC 6455 requires.
 *
 * The state is a plain integer owned by the caller, so a text message that
 * arrives in many WebSocket fragments can be validated one fragment at a
 * time, in place, without copying. The automaton moves to UTF8_REJECT at the
 * first byte that no valid continuation could follow, which lets a server
 * fail a connection "fast" instead of waiting for the rest of the message.
 */
#ifndef TIDINGS_UTF8_H
#define TIDINGS_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef uint32_t utf8_state;

/* At a character boundary: everything seen so far is complete, valid UTF-8.
 * This is also the initial state. */
#define UTF8_ACCEPT 0
/* Invalid input was seen. Sticky: utf8_validate never leaves it. Any other
 * value means "valid so far, in the middle of a multi-byte sequence". */
#define UTF8_REJECT 12

/* Advances the automaton from `st` over p[0..n) and returns the new state.
 * Stops reading at the first invalid byte and returns UTF8_REJECT. The whole
 * input is valid iff the final state is UTF8_ACCEPT. p may be NULL when n is 0. */
utf8_state utf8_validate(utf8_state st, const void *p, size_t n);

/* Returns 1 when p[0..n) is complete, valid UTF-8, else 0. */
int utf8_is_valid(const void *p, size_t n);

#endif
