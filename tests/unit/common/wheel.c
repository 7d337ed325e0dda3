/* Tests common/wheel.c against a simulated clock: nothing here sleeps. */
#include "common/wheel.h"
#include "tap.h"

#define TICK     5
#define WEEK_MS  (7ull * 24 * 3600 * 1000)
#define MAX_RECS 64

/* A timer's owner, recording when and in which order it fired. */
typedef struct rec {
	wheel_timer t;
	int id;
	int nfired;
	uint64_t fired_at;
	void (*action)(struct rec *r); /* extra work done inside the callback */
	struct rec *other;
} rec;

static wheel w;
static uint64_t now;
static int order[MAX_RECS], norder;

static void on_fire(wheel_timer *t)
{
	rec *r = wheel_owner(t, rec, t);
	r->nfired++;
	r->fired_at = now;
	if (norder < MAX_RECS)
		order[norder++] = r->id;
	if (r->action)
		r->action(r);
}

static void rec_init(rec *r, int id)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	wheel_timer_init(&r->t, on_fire);
}

/* The first time at or after `ms` that lies on a tick boundary. */
static uint64_t round_up(uint64_t ms)
{
	return (ms + TICK - 1) / TICK * TICK;
}

static void advance_to(uint64_t ms, uint64_t step)
{
	while (now < ms) {
		now = now + step > ms ? ms : now + step;
		wheel_advance(&w, now);
	}
}

static void test_init(void)
{
	is_int(wheel_init(&w, 100, TICK, 1000), 0, "init");
	is_int(w.nslots, 128, "slot count rounded up to a power of two");
	is_int(w.now_tick, 200, "ticks count from time 0 of the clock");
	is_int(w.armed, 0, "nothing armed");
	is_int(wheel_next_ms(&w, 1000), -1, "next_ms is -1 when nothing is armed");
	is_int(wheel_advance(&w, 5000), 0, "advancing an empty wheel fires nothing");
	wheel_dispose(&w);
	is_int(wheel_init(&w, 0, TICK, 0), 0, "init with 0 slots");
	is_int(w.nslots, 1, "0 slots becomes 1");
	wheel_dispose(&w);
	is_int(wheel_init(&w, UINT32_MAX, TICK, 0), -1, "absurd slot count refused");
}

/* Each timer fires at the first advance at or after its expiry rounded up to
 * a tick, and never in the tick already processed when it was armed. */
static void test_timing(void)
{
	static const uint64_t delays[] = {0, 1, 4, 5, 6, 10, 12, 99, 100, 101};
	enum { N = sizeof(delays) / sizeof(delays[0]) };
	rec r[2 * N];
	int bad = 0;

	now = 1000;
	wheel_init(&w, 64, TICK, now);
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], i);
		wheel_timer_set(&w, &r[i].t, now, delays[i]);
		ok(wheel_timer_armed(&r[i].t), "timer with delay %d armed", (int)delays[i]);
	}
	is_int(w.armed, N, "armed count");
	is_int(wheel_advance(&w, now), 0, "advance to the same time fires nothing");
	advance_to(1002, 1);
	for (int i = 0; i < N; i++) {
		rec_init(&r[N + i], N + i);
		wheel_timer_set(&w, &r[N + i].t, now, delays[i]);
	}
	advance_to(1200, 1);
	for (int i = 0; i < 2 * N; i++) {
		uint64_t base = i < N ? 1000 : 1002;
		uint64_t want = round_up(base + delays[i % N]);
		if (want <= 1000)
			want = 1005;
		if (r[i].nfired != 1 || r[i].fired_at != want) {
			printf("# timer %d set at %d delay %d: fired %d times, at %d, want %d\n", i,
			       (int)base, (int)delays[i % N], r[i].nfired, (int)r[i].fired_at,
			       (int)want);
			bad++;
		}
	}
	ok(!bad, "20 timers fire once each at the expected time (1 ms clock steps)");
	is_int(w.armed, 0, "nothing armed after all fired");
	ok(!wheel_timer_armed(&r[0].t), "a fired timer is disarmed");
	wheel_dispose(&w);
}

static void test_delay_zero(void)
{
	rec a;
	now = 1000;
	wheel_init(&w, 64, TICK, now);
	rec_init(&a, 0);
	wheel_timer_set(&w, &a.t, now, 0);
	is_int(wheel_next_ms(&w, now), 5, "delay 0 on a tick boundary: next_ms is one tick");
	is_int(wheel_advance(&w, now + wheel_next_ms(&w, now)), 1,
	       "delay 0 fires on the advance that next_ms asks for");
	now = 1007;
	wheel_timer_set(&w, &a.t, now, 0);
	is_int(wheel_next_ms(&w, now), 3, "delay 0 mid-tick: next_ms is to the tick boundary");
	is_int(wheel_advance(&w, 1009), 0, "not fired before the boundary");
	is_int(wheel_advance(&w, 1010), 1, "fired at the boundary");
	wheel_dispose(&w);
}

static void test_order(void)
{
	static const uint64_t delays[] = {30, 10, 20, 10, 25, 11};
	static const int want[] = {1, 3, 5, 2, 4, 0};
	rec r[6];

	now = 1000;
	norder = 0;
	wheel_init(&w, 16, TICK, now);
	for (int i = 0; i < 6; i++) {
		rec_init(&r[i], i);
		wheel_timer_set(&w, &r[i].t, now, delays[i]);
	}
	now = 1040;
	is_int(wheel_advance(&w, now), 6, "one advance over 8 ticks fires all six");
	is_mem(order, norder * sizeof(int), want, sizeof(want),
	       "fired in expiry order, arming order within a tick");
	wheel_dispose(&w);
}

static void test_next_ms(void)
{
	rec a, b;
	now = 1000;
	wheel_init(&w, 4096, TICK, now);
	rec_init(&a, 0);
	rec_init(&b, 1);
	wheel_timer_set(&w, &a.t, now, 100);
	is_int(wheel_next_ms(&w, now), 100, "next_ms finds a timer 20 ticks ahead");
	is_int(wheel_next_ms(&w, 1003), 97, "next_ms counts from now_ms");
	is_int(wheel_next_ms(&w, 1200), 0, "next_ms is 0 when the tick is overdue");
	wheel_timer_set(&w, &b.t, now, 12);
	is_int(wheel_next_ms(&w, now), 15, "next_ms finds the earliest timer");
	wheel_timer_cancel(&w, &b.t);
	wheel_timer_set(&w, &a.t, now, WEEK_MS);
	int64_t next = wheel_next_ms(&w, now);
	ok(next > 0 && next <= (int64_t)WEEK_MS, "next_ms for a far timer is bounded (%lld)",
	   (long long)next);
	wheel_timer_cancel(&w, &a.t);
	is_int(wheel_next_ms(&w, now), -1, "next_ms is -1 after the last cancel");
	wheel_dispose(&w);
}

static void rearm_self(rec *r)
{
	if (r->nfired < 10)
		wheel_timer_set(&w, &r->t, now, 10);
}

static void rearm_self_now(rec *r)
{
	wheel_timer_set(&w, &r->t, now, 0);
}

static void test_rearm(void)
{
	rec a;
	now = 1000;
	wheel_init(&w, 8, TICK, now);
	rec_init(&a, 0);
	a.action = rearm_self;
	wheel_timer_set(&w, &a.t, now, 10);
	advance_to(1200, 1);
	is_int(a.nfired, 10, "a timer re-arming itself fires 10 times");
	is_int(a.fired_at, 1100, "at 10 ms intervals");
	ok(!wheel_timer_armed(&a.t), "and is disarmed after the last");

	rec_init(&a, 0);
	a.action = rearm_self_now;
	wheel_timer_set(&w, &a.t, now, 0);
	is_int(wheel_advance(&w, now + 1000), 1,
	       "re-arming with delay 0 inside the callback does not fire again in the same "
	       "advance");
	ok(wheel_timer_armed(&a.t), "it stays armed");
	is_int(wheel_advance(&w, now + 1005), 1, "and fires on the next tick");
	wheel_timer_cancel(&w, &a.t);
	is_int(w.armed, 0, "cancelled");
	wheel_dispose(&w);
}

static void cancel_other(rec *r)
{
	wheel_timer_cancel(&w, &r->other->t);
}

static void postpone_other(rec *r)
{
	wheel_timer_set(&w, &r->other->t, now, 50);
}

static void test_cancel_in_cb(void)
{
	rec a, b, c, d;
	now = 1000;
	norder = 0;
	wheel_init(&w, 8, TICK, now);
	rec_init(&a, 0);
	rec_init(&b, 1);
	rec_init(&c, 2);
	a.action = cancel_other;
	a.other = &b;
	wheel_timer_set(&w, &a.t, now, 5);
	wheel_timer_set(&w, &b.t, now, 5);
	wheel_timer_set(&w, &c.t, now, 5);
	is_int(wheel_advance(&w, 1005), 2, "a callback cancelling a due timer of its slot");
	is_int(b.nfired, 0, "the cancelled timer does not fire");
	is_int(c.nfired, 1, "the one after it still does");
	is_int(w.armed, 0, "armed count stays right");

	rec_init(&a, 0);
	rec_init(&b, 1);
	a.action = cancel_other;
	a.other = &b;
	wheel_timer_set(&w, &a.t, now, 5);
	wheel_timer_set(&w, &b.t, now, 15);
	is_int(wheel_advance(&w, 1030), 1, "cancelling a due timer in a later slot");
	is_int(b.nfired, 0, "which then does not fire");

	rec_init(&a, 0);
	rec_init(&b, 1);
	rec_init(&d, 3);
	a.action = postpone_other;
	a.other = &b;
	wheel_timer_set(&w, &a.t, now, 5);
	wheel_timer_set(&w, &b.t, now, 5);
	wheel_timer_set(&w, &d.t, now, 5);
	now = 1035;
	is_int(wheel_advance(&w, now), 2, "a callback re-arming another due timer");
	ok(b.nfired == 0 && wheel_timer_armed(&b.t), "moves it out of this advance");
	advance_to(1090, 1);
	is_int(b.fired_at, 1085, "and it fires at its new time");
	wheel_dispose(&w);
}

static int freed_fired;

static void on_fire_free(wheel_timer *t)
{
	rec *r = wheel_owner(t, rec, t);
	freed_fired++;
	if (r->other) {
		wheel_timer_cancel(&w, &r->other->t);
		free(r->other);
	}
	free(r);
}

static void test_free_in_cb(void)
{
	rec *r[4];
	now = 1000;
	wheel_init(&w, 8, TICK, now);
	for (int i = 0; i < 4; i++) {
		r[i] = calloc(1, sizeof(*r[i]));
		wheel_timer_init(&r[i]->t, on_fire_free);
	}
	r[0]->other = r[1]; /* frees a due timer of the same slot */
	r[2]->other = r[3]; /* frees one of a later slot */
	wheel_timer_set(&w, &r[0]->t, now, 5);
	wheel_timer_set(&w, &r[1]->t, now, 5);
	wheel_timer_set(&w, &r[2]->t, now, 5);
	wheel_timer_set(&w, &r[3]->t, now, 20);
	is_int(wheel_advance(&w, 1040), 2, "callbacks freeing themselves and others (ASan)");
	is_int(freed_fired, 2, "the freed ones never fire");
	is_int(w.armed, 0, "nothing left armed");
	wheel_dispose(&w);
}

/* Timers of many rotations wait in their slot through every pass until
 * their round comes, whatever steps the clock takes. */
static void test_long(void)
{
	static const uint64_t rot = 4096 * TICK;
	static const uint64_t delays[] = {rot - TICK, rot,         rot + 1,
	                                  rot + TICK, 3 * rot + 7, 4 * WEEK_MS};
	enum { N = sizeof(delays) / sizeof(delays[0]) };
	rec r[N];
	int bad = 0;

	now = 123456789;
	wheel_init(&w, 4096, TICK, now);
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], i);
		wheel_timer_set(&w, &r[i].t, now, delays[i]);
	}
	advance_to(now + 4 * rot, 1);
	uint64_t want4w = round_up(123456789 + 4 * WEEK_MS);
	/* Hour steps sweep the whole wheel each time; then close in by ticks. */
	advance_to(want4w - 2 * rot, 3600 * 1000);
	ok(r[N - 1].nfired == 0, "the 4-week timer has not fired 2 rotations before its time");
	advance_to(want4w - 1, 1);
	ok(r[N - 1].nfired == 0, "nor 1 ms before");
	advance_to(want4w, 1);
	for (int i = 0; i < N; i++) {
		uint64_t want = round_up(123456789 + delays[i]);
		if (r[i].nfired != 1 || r[i].fired_at != want) {
			printf("# delay %llu: fired %d times, at %llu, want %llu\n",
			       (unsigned long long)delays[i], r[i].nfired,
			       (unsigned long long)r[i].fired_at, (unsigned long long)want);
			bad++;
		}
	}
	ok(!bad, "timers of 1 to 118000 rotations fire once, at their tick");
	wheel_dispose(&w);
}

static int other_fired;

static void on_other(wheel_timer *t)
{
	other_fired++;
	on_fire(t);
}

/* Callbacks are kept as indexes: each timer must still run its own, and a
 * timer re-initialised with another callback must run the new one. */
static void test_callbacks(void)
{
	rec a, b;
	now = 1000;
	wheel_init(&w, 64, TICK, now);
	rec_init(&a, 1);
	rec_init(&b, 2);
	wheel_timer_init(&b.t, on_other);
	wheel_timer_set(&w, &a.t, now, 10);
	wheel_timer_set(&w, &b.t, now, 10);
	other_fired = 0;
	advance_to(now + 10, 1);
	ok(a.nfired == 1 && b.nfired == 1 && other_fired == 1, "each timer runs its own callback");
	wheel_timer_init(&a.t, on_other);
	wheel_timer_init(&b.t, on_fire);
	wheel_timer_set(&w, &a.t, now, 10);
	wheel_timer_set(&w, &b.t, now, 10);
	advance_to(now + 10, 1);
	ok(a.nfired == 2 && b.nfired == 2 && other_fired == 2, "and the new one after re-init");
	is_int(sizeof(wheel_timer), 3 * sizeof(void *), "a timer is three words");
	wheel_dispose(&w);
}

/* A delay beyond the 48-bit tick saturates there rather than wrapping to
 * a near tick. */
static void test_horizon(void)
{
	rec a;
	now = 5000;
	wheel_init(&w, 64, TICK, now);
	rec_init(&a, 1);
	wheel_timer_set(&w, &a.t, now, UINT64_MAX - 1);
	ok(a.t.expires_tick == WHEEL_MAX_TICK, "an overlong delay is held at the last tick");
	advance_to(now + WEEK_MS, 3600 * 1000);
	ok(a.nfired == 0 && wheel_timer_armed(&a.t), "and does not fire within a week");
	wheel_timer_set(&w, &a.t, now, WHEEL_MAX_TICK * TICK);
	ok(a.t.expires_tick == WHEEL_MAX_TICK, "nor does one just past the horizon wrap");
	wheel_dispose(&w);
}

static void test_jump(void)
{
	enum { N = 1000 };
	static rec r[N];
	uint64_t rot = 64 * TICK;
	int bad = 0;

	now = 0;
	wheel_init(&w, 64, TICK, now);
	srand(1);
	for (int i = 0; i < N; i++) {
		rec_init(&r[i], i);
		wheel_timer_set(&w, &r[i].t, now, (uint64_t)rand() % (10 * rot));
	}
	uint64_t lim = 5 * rot;
	now = lim;
	uint32_t n = wheel_advance(&w, now);
	for (int i = 0; i < N; i++)
		bad += r[i].nfired != (round_up(r[i].t.expires_tick * TICK) <= lim);
	ok(!bad && n == N - w.armed, "a jump of 5 rotations fires exactly the due timers (%u)", n);
	is_int(wheel_advance(&w, now - 100), 0, "a clock going backwards fires nothing");
	now = 1000 * rot + 3;
	wheel_advance(&w, now);
	for (int i = 0; i < N; i++)
		bad += r[i].nfired != 1;
	ok(!bad, "a jump of 1000 rotations fires the rest, once each");
	is_int(w.armed, 0, "wheel empty");
	is_int(wheel_next_ms(&w, now), -1, "next_ms -1");
	wheel_dispose(&w);
}

static void test_dispose(void)
{
	rec a;
	wheel_init(&w, 8, TICK, 0);
	rec_init(&a, 0);
	wheel_timer_set(&w, &a.t, 0, 100);
	wheel_dispose(&w);
	ok(!wheel_timer_armed(&a.t), "dispose disarms timers it forgets");
	wheel_timer_cancel(&w, &a.t);
	ok(w.slots == NULL, "cancel after dispose is harmless");
}

/*
 * Random operations against a reference model: an expiry per timer and a
 * binary heap of (tick, arming sequence) with lazy deletion. Every callback
 * checks that its timer is due and armed in the model, in expiry order when
 * the clock moved by less than a rotation; after each advance nothing due
 * may remain in the model. Callbacks themselves re-arm, cancel and arm
 * timers, mirrored in the model.
 */
enum { MN = 100000 };

typedef struct hent {
	uint64_t tick, seq;
	uint32_t id;
} hent;

static struct {
	uint32_t nslots, tick_ms;
	wheel_timer t[MN];
	uint64_t exp[MN], seq[MN]; /* exp 0: disarmed */
	hent *heap;
	size_t nheap, capheap;
	uint64_t nseq, now_tick, cur, narmed, nfired, last_tick, last_seq;
	int ordered, bad;
	uint64_t rng;
} m;

static uint64_t rnd(uint64_t n)
{
	m.rng ^= m.rng << 13;
	m.rng ^= m.rng >> 7;
	m.rng ^= m.rng << 17;
	return n ? m.rng % n : 0;
}

static int hless(const hent *a, const hent *b)
{
	return a->tick < b->tick || (a->tick == b->tick && a->seq < b->seq);
}

static void hpush(hent e)
{
	if (m.nheap == m.capheap) {
		m.capheap = m.capheap ? 2 * m.capheap : 1024;
		m.heap = realloc(m.heap, m.capheap * sizeof(*m.heap));
	}
	size_t i = m.nheap++;
	while (i && hless(&e, &m.heap[(i - 1) / 2])) {
		m.heap[i] = m.heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	m.heap[i] = e;
}

static void hpop(void)
{
	hent e = m.heap[--m.nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= m.nheap)
			break;
		if (c + 1 < m.nheap && hless(&m.heap[c + 1], &m.heap[c]))
			c++;
		if (!hless(&m.heap[c], &e))
			break;
		m.heap[i] = m.heap[c];
		i = c;
	}
	if (m.nheap)
		m.heap[i] = e;
}

/* The earliest armed timer's tick in the model, or 0. */
static uint64_t model_min(void)
{
	while (m.nheap) {
		hent *e = &m.heap[0];
		if (m.exp[e->id] == e->tick && m.seq[e->id] == e->seq)
			return e->tick;
		hpop();
	}
	return 0;
}

static uint64_t rand_delay(void)
{
	uint64_t rot = (uint64_t)m.nslots * m.tick_ms, p = rnd(100);
	if (p < 60)
		return rnd(200);
	if (p < 90)
		return rnd(2 * rot);
	return rnd(50 * rot);
}

static void model_set(uint32_t id, uint64_t delay)
{
	wheel_timer_set(&w, &m.t[id], now, delay);
	uint64_t at = now + delay, tick = (at + m.tick_ms - 1) / m.tick_ms;
	if (tick <= m.now_tick)
		tick = m.now_tick + 1;
	m.narmed += !m.exp[id];
	m.exp[id] = tick;
	m.seq[id] = ++m.nseq;
	hpush((hent){tick, m.nseq, id});
}

static void model_cancel(uint32_t id)
{
	wheel_timer_cancel(&w, &m.t[id]);
	m.narmed -= !!m.exp[id];
	m.exp[id] = 0;
}

static void model_fire(wheel_timer *t)
{
	uint32_t id = (uint32_t)(t - m.t);
	m.nfired++;
	if (!m.exp[id] || m.exp[id] > m.cur || wheel_timer_armed(t)) {
		if (!m.bad++)
			printf("# timer %u fired at tick %llu, model expiry %llu\n", id,
			       (unsigned long long)m.cur, (unsigned long long)m.exp[id]);
		return;
	}
	if (m.ordered &&
	    (m.exp[id] < m.last_tick || (m.exp[id] == m.last_tick && m.seq[id] < m.last_seq))) {
		if (!m.bad++)
			printf("# timer %u fired out of order\n", id);
	}
	m.last_tick = m.exp[id];
	m.last_seq = m.seq[id];
	m.exp[id] = 0;
	m.narmed--;
	uint64_t p = rnd(100);
	if (p < 20)
		model_set(id, rand_delay());
	else if (p < 30)
		model_cancel((uint32_t)rnd(MN));
	else if (p < 35)
		model_set((uint32_t)rnd(MN), rand_delay());
}

static void model_advance(void)
{
	uint64_t rot = (uint64_t)m.nslots * m.tick_ms, p = rnd(1000);
	now += p < 900 ? rnd(4 * m.tick_ms) : p < 995 ? rnd(2 * rot) : rnd(30 * rot);
	m.cur = now / m.tick_ms;
	m.ordered = m.cur - m.now_tick <= m.nslots;
	m.last_tick = 0;
	m.last_seq = 0;
	if (m.cur > m.now_tick)
		m.now_tick = m.cur;
	uint64_t before = m.nfired;
	uint32_t n = wheel_advance(&w, now);
	if (n != m.nfired - before && !m.bad++)
		printf("# advance returned %u, %llu callbacks ran\n", n,
		       (unsigned long long)(m.nfired - before));
	uint64_t min = model_min();
	if (min && min <= m.cur && !m.bad++)
		printf("# timer %u due at tick %llu not fired by tick %llu\n", m.heap[0].id,
		       (unsigned long long)min, (unsigned long long)m.cur);
	if ((w.armed != m.narmed || w.now_tick != m.now_tick) && !m.bad++)
		printf("# armed %llu, model %llu\n", (unsigned long long)w.armed,
		       (unsigned long long)m.narmed);
	int64_t next = wheel_next_ms(&w, now);
	uint64_t due_ms = min * m.tick_ms;
	if ((min ? next < 0 || (uint64_t)next > (due_ms > now ? due_ms - now : 0) : next != -1) &&
	    !m.bad++)
		printf("# next_ms %lld, next expiry at %llu ms, now %llu\n", (long long)next,
		       (unsigned long long)due_ms, (unsigned long long)now);
}

static void test_model(uint32_t nslots, uint32_t tick_ms, int ops)
{
	memset(&m, 0, sizeof(m));
	m.rng = 0x9e3779b97f4a7c15ull ^ nslots;
	m.nslots = nslots;
	m.tick_ms = tick_ms;
	now = 987654321;
	m.now_tick = now / tick_ms;
	wheel_init(&w, nslots, tick_ms, now);
	for (uint32_t i = 0; i < MN; i++)
		wheel_timer_init(&m.t[i], model_fire);
	for (int i = 0; i < ops && !m.bad; i++) {
		uint64_t p = rnd(100);
		if (p < 55)
			model_set((uint32_t)rnd(MN), rand_delay());
		else if (p < 70)
			model_cancel((uint32_t)rnd(MN));
		else
			model_advance();
	}
	ok(!m.bad, "%d random operations, %u slots of %u ms: %llu fired, as the model says", ops,
	   nslots, tick_ms, (unsigned long long)m.nfired);
	while (m.narmed && !m.bad) {
		now += 1000 * (uint64_t)nslots * tick_ms;
		model_advance();
	}
	ok(!m.bad && w.armed == 0, "draining the wheel fires the rest");
	wheel_dispose(&w);
	free(m.heap);
}

int main(void)
{
	test_init();
	test_timing();
	test_delay_zero();
	test_order();
	test_next_ms();
	test_rearm();
	test_cancel_in_cb();
	test_free_in_cb();
	test_long();
	test_jump();
	test_callbacks();
	test_horizon();
	test_dispose();
	test_model(256, 5, 400000);
	test_model(4096, 1, 400000);
	test_model(1, 10, 100000);
	return tap_done();
}
