/*
 * wheel.h - one hashed timing wheel per process.
 *
 * Every connection needs a deadline or two (header deadline, heartbeat,
 * token expiry). A timer per connection in the event loop's heap costs a
 * heap node and O(log n) per re-arm; the wheel costs an intrusive list node
 * embedded in the owner and O(1) per re-arm, and the loop holds one timer
 * for the whole process.
 *
 * The wheel advances in ticks of `tick_ms` milliseconds of the monotonic
 * clock. A timer fires on the first wheel_advance() at or after its expiry
 * rounded up to a tick, so precision is one tick (a few milliseconds).
 * Timers further away than one rotation stay in their slot and are skipped
 * until their round comes.
 */
#ifndef TIDINGS_WHEEL_H
#define TIDINGS_WHEEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct wheel_timer wheel_timer;
typedef void wheel_cb(wheel_timer *t);

/*
 * Embedded in its owner, which a callback recovers with wheel_owner(). A
 * connection embeds up to four, so a timer is three words, not five: it
 * keeps no pointer to its owner, and its callback is kept as an index into
 * the process's table of timer callbacks (a program has a handful of them)
 * in the bits the due tick leaves free (2^48 ticks of 1 ms are 8 900
 * years). Zero-initialise or wheel_timer_init before first use.
 */
struct wheel_timer {
	wheel_timer *next, *prev; /* NULL when not armed */
	uint64_t expires_tick : 48;
	uint64_t cb : 16; /* index into the callback table; 0: none */
};

#define WHEEL_MAX_TICK ((UINT64_C(1) << 48) - 1)

/* The object of type `type` whose member `member` is the timer t. */
#define wheel_owner(t, type, member) ((type *)(void *)((char *)(t)-offsetof(type, member)))

typedef struct wheel {
	wheel_timer *slots; /* nslots list heads (sentinels) */
	uint32_t nslots;    /* power of two */
	uint32_t tick_ms;
	uint64_t now_tick; /* last tick processed */
	uint64_t armed;    /* number of armed timers */
} wheel;

/* Sets up a wheel of `nslots` (rounded up to a power of two) slots of
 * `tick_ms` each, starting at monotonic time `now_ms`. Returns 0 or -1 (no
 * memory). */
int wheel_init(wheel *w, uint32_t nslots, uint32_t tick_ms, uint64_t now_ms);
/* Frees the slots. Armed timers are forgotten, not fired. */
void wheel_dispose(wheel *w);

/* Sets t's callback (t must not be armed). The first use of a callback
 * enters it in the process's table; more than WHEEL_MAX_CBS distinct ones
 * is a programming error and aborts. Not thread-safe, like the wheel. */
void wheel_timer_init(wheel_timer *t, wheel_cb *cb);

#define WHEEL_MAX_CBS 64

/* (Re)arms t to fire `delay_ms` after `now_ms`; an armed timer is moved. */
void wheel_timer_set(wheel *w, wheel_timer *t, uint64_t now_ms, uint64_t delay_ms);
/* Disarms t; harmless when it is not armed. */
void wheel_timer_cancel(wheel *w, wheel_timer *t);

static inline int wheel_timer_armed(const wheel_timer *t)
{
	return t->next != 0;
}

/* Fires, in expiry order per slot, every timer due at or before `now_ms`.
 * A callback may arm, cancel or free any timer, including its own (it is
 * disarmed before its callback runs). Returns the number fired. */
uint32_t wheel_advance(wheel *w, uint64_t now_ms);

/* Milliseconds from now_ms until the next tick that may hold a due timer,
 * or -1 when nothing is armed. Used to arm the loop's single timer. */
int64_t wheel_next_ms(const wheel *w, uint64_t now_ms);

#endif
