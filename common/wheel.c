/*
 * wheel.c - hashed timing wheel.
 *
 * Each slot is a circular doubly-linked list whose head is a sentinel
 * wheel_timer in w->slots, so arming and cancelling are O(1) pointer swaps
 * with no special case for the first or last node, and `next == NULL` can
 * mean "not armed". A timer due at tick T lives in slot T & (nslots - 1);
 * one slot may hold timers of several rotations, which is why firing
 * compares expires_tick against the current tick instead of trusting the
 * slot alone.
 *
 * Ticks count from time 0 of the caller's clock, not from the now_ms given
 * to wheel_init: tick(ms) = ms / tick_ms. The struct has no room for an
 * origin, and none is needed: the clock is monotonic, so absolute ticks are
 * as good as relative ones, and they cannot underflow when a caller passes
 * a slightly stale now_ms.
 */
#include "wheel.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* How many slots wheel_next_ms() looks ahead for an armed one. It bounds the
 * cost of the answer while letting an idle process sleep for up to this
 * many ticks instead of waking at every one. */
#define WHEEL_LOOKAHEAD 256u

static void list_init(wheel_timer *head)
{
	head->next = head;
	head->prev = head;
}

static void list_append(wheel_timer *head, wheel_timer *t)
{
	t->prev = head->prev;
	t->next = head;
	head->prev->next = t;
	head->prev = t;
}

static void list_unlink(wheel_timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = NULL;
	t->prev = NULL;
}

int wheel_init(wheel *w, uint32_t nslots, uint32_t tick_ms, uint64_t now_ms)
{
	assert(tick_ms > 0);
	uint32_t n = 1;
	while (n < nslots) {
		if (n > UINT32_MAX / 2)
			return -1;
		n *= 2;
	}
	w->slots = malloc((size_t)n * sizeof(*w->slots));
	if (!w->slots)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		list_init(&w->slots[i]);
	w->nslots = n;
	w->tick_ms = tick_ms;
	w->now_tick = now_ms / tick_ms;
	w->armed = 0;
	return 0;
}

/*
 * Clears the links of every armed timer before freeing the slots, so that a
 * later wheel_timer_armed() says no and a later wheel_timer_cancel() (say,
 * from an owner's destructor during shutdown) is harmless instead of writing
 * into freed memory.
 */
void wheel_dispose(wheel *w)
{
	for (uint32_t i = 0; w->slots && i < w->nslots; i++) {
		wheel_timer *head = &w->slots[i], *t, *next;
		for (t = head->next; t != head; t = next) {
			next = t->next;
			t->next = NULL;
			t->prev = NULL;
		}
	}
	free(w->slots);
	w->slots = NULL;
	w->nslots = 0;
	w->armed = 0;
}

/* Index 0 means "no callback", so a zeroed timer holds none. */
static wheel_cb *cbs[WHEEL_MAX_CBS + 1];
static unsigned ncbs;

void wheel_timer_init(wheel_timer *t, wheel_cb *cb)
{
	unsigned i = 1;
	while (i <= ncbs && cbs[i] != cb)
		i++;
	if (i > ncbs) {
		if (ncbs == WHEEL_MAX_CBS) {
			fprintf(stderr, "wheel: more than %d timer callbacks\n", WHEEL_MAX_CBS);
			abort();
		}
		cbs[++ncbs] = cb;
	}
	t->next = NULL;
	t->prev = NULL;
	t->expires_tick = 0;
	t->cb = i;
}

/*
 * The expiry is rounded up to a tick so a timer never fires early. It is
 * also pushed past the last processed tick: that tick's slot has already
 * been swept, so a timer due "now" fires at the next tick boundary, which
 * is what wheel_next_ms() reports. A delay past the last tick a timer can
 * hold saturates there.
 */
void wheel_timer_set(wheel *w, wheel_timer *t, uint64_t now_ms, uint64_t delay_ms)
{
	if (t->next) {
		list_unlink(t);
		w->armed--;
	}
	uint64_t at = delay_ms > UINT64_MAX - now_ms ? UINT64_MAX : now_ms + delay_ms;
	uint64_t tick = at / w->tick_ms + (at % w->tick_ms != 0);
	if (tick <= w->now_tick)
		tick = w->now_tick + 1;
	if (tick > WHEEL_MAX_TICK)
		tick = WHEEL_MAX_TICK;
	t->expires_tick = tick;
	list_append(&w->slots[tick & (w->nslots - 1)], t);
	w->armed++;
}

void wheel_timer_cancel(wheel *w, wheel_timer *t)
{
	if (!t->next)
		return;
	list_unlink(t);
	w->armed--;
}

/*
 * Fires the timers of one slot that are due by tick `cur`. The due ones are
 * first moved to a local list, because a callback may arm, cancel or free
 * any timer: walking the slot itself while callbacks run could follow a
 * pointer into a freed or moved node. Timers on the local list still count
 * as armed and stay linked, so a callback that cancels another due timer
 * simply unlinks it from the local list and it never fires.
 */
static uint32_t fire_slot(wheel *w, wheel_timer *head, uint64_t cur)
{
	wheel_timer due, *t, *next;
	uint32_t fired = 0;

	list_init(&due);
	for (t = head->next; t != head; t = next) {
		next = t->next;
		if (t->expires_tick <= cur) {
			list_unlink(t);
			list_append(&due, t);
		}
	}
	while (due.next != &due) {
		t = due.next;
		list_unlink(t);
		w->armed--;
		fired++;
		cbs[t->cb](t);
	}
	return fired;
}

/*
 * now_tick is moved to the current tick before any callback runs, so a
 * timer (re)armed by a callback lands after it and cannot fire again in this
 * call: every timer fires at most once per wheel_advance(), even one that
 * re-arms itself with no delay.
 *
 * Ticks are swept in order, so timers fire in expiry order (and in arming
 * order within a tick) as long as the clock moved by less than one
 * rotation. After a longer gap every slot is swept once, starting from the
 * slot after the current tick's; the order is then only roughly by expiry,
 * which is the price of not visiting each of the missed ticks.
 */
uint32_t wheel_advance(wheel *w, uint64_t now_ms)
{
	uint64_t cur = now_ms / w->tick_ms;
	uint64_t from = w->now_tick + 1;
	uint32_t fired = 0;

	if (cur <= w->now_tick)
		return 0;
	w->now_tick = cur;
	if (cur - from >= w->nslots)
		from = cur - w->nslots + 1;
	for (uint64_t tick = from; tick <= cur && w->armed; tick++)
		fired += fire_slot(w, &w->slots[tick & (w->nslots - 1)], cur);
	return fired;
}

/*
 * Looks ahead up to WHEEL_LOOKAHEAD slots for a non-empty one. Every armed
 * timer expires after now_tick, and one due within the next nslots ticks
 * sits in the slot of its tick, so the first non-empty slot bounds the next
 * firing from below; it may only hold timers of a later rotation, in which
 * case the loop wakes early and finds nothing to do, which is harmless.
 */
int64_t wheel_next_ms(const wheel *w, uint64_t now_ms)
{
	if (!w->armed)
		return -1;
	uint32_t ahead = w->nslots < WHEEL_LOOKAHEAD ? w->nslots : WHEEL_LOOKAHEAD;
	uint64_t tick = w->now_tick + 1;
	for (uint32_t i = 0; i < ahead; i++, tick++) {
		const wheel_timer *head = &w->slots[tick & (w->nslots - 1)];
		if (head->next != head)
			break;
	}
	if (tick > UINT64_MAX / w->tick_ms)
		return INT64_MAX;
	uint64_t at = tick * w->tick_ms;
	if (at <= now_ms)
		return 0;
	return at - now_ms > INT64_MAX ? INT64_MAX : (int64_t)(at - now_ms);
}
