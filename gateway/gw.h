/*
 * gw.h - the gateway process's one global: the loop, the settings, the
 * timer wheel and the indexes every module shares. Like Redis's `server`,
 * it exists once per process; leaf modules in common/ never see it.
 */
#ifndef TIDINGS_GW_H
#define TIDINGS_GW_H

#include <event2/event.h>
#include <stdint.h>

#include "common/map.h"
#include "common/wheel.h"
#include "settings.h"

typedef struct gw_metrics {
	uint64_t conns_ws, conns_polling, conns_http;
	uint64_t accepted, handshake_fail[8];
	uint64_t pkts_in[7], pkts_out[7]; /* by Socket.IO packet type */
	uint64_t eio_in, eio_out;
	uint64_t deliveries, delivery_entries, ingress_entries, ingress_errors;
	uint64_t slow_consumers, closed_bad_input;
	uint64_t token_repeats; /* user-joins with the token their socket authenticated with */
} gw_metrics;

/* Reasons for refused handshakes, indexes of handshake_fail. */
enum {
	HS_FAIL_ORIGIN,
	HS_FAIL_BAD_REQUEST,
	HS_FAIL_UNKNOWN_SID,
	HS_FAIL_TRANSPORT,
	HS_FAIL_TOO_MANY,
	HS_FAIL_HEADER_TIMEOUT,
	HS_FAIL_TOO_LARGE,
	HS_FAIL_AUTH,
};

typedef struct gw_state {
	struct event_base *base;
	settings cfg;
	wheel wheel;
	struct event *wheel_ev;
	map eio_by_sid; /* Engine.IO sid -> eio_sock */
	map sio_by_sid; /* Socket.IO sid -> sio_sock */
	map rooms;      /* room name -> room */
	map ip_counts;  /* peer address -> connection count (when limited) */
	gw_metrics m;
	int draining;
	uint64_t started_ms;
} gw_state;

extern gw_state gw;

/* Monotonic milliseconds, cached per loop turn by gw_now_update(). */
uint64_t gw_now(void);
void gw_now_update(void);

/* Makes the loop timer that drives the wheel wake by due_ms (monotonic ms
 * of a timer just armed), or, with 0, at the wheel's next due tick. */
void gw_wheel_kick(uint64_t due_ms);

static inline void gw_timer_set(wheel_timer *t, uint64_t delay_ms)
{
	wheel_timer_set(&gw.wheel, t, gw_now(), delay_ms);
	gw_wheel_kick(gw_now() + delay_ms);
}

static inline void gw_timer_cancel(wheel_timer *t)
{
	wheel_timer_cancel(&gw.wheel, t);
}

/* (Re)arms t with a new callback: an armed timer is first taken off the
 * wheel, never re-initialised in place (which would corrupt its slot). */
static inline void gw_timer_start(wheel_timer *t, wheel_cb *cb, uint64_t delay_ms)
{
	wheel_timer_cancel(&gw.wheel, t);
	wheel_timer_init(t, cb);
	gw_timer_set(t, delay_ms);
}

#endif
