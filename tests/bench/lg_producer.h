/*
 * lg_producer.h - the load generator's producer: POST /api/v1/emit at a
 * steady rate over a few keep-alive HTTP/1.1 connections.
 *
 * Emit number `seq` goes to user "bench-u{seq % users}" and carries the wall
 * clock in microseconds at the moment it is sent ("ts") and its number
 * ("seq"), which the clients read back to measure latency and to tell late
 * deliveries of an earlier step from those of the current one.
 *
 * A step runs at a fixed rate for a fixed time. A timer (every 1 ms at high
 * rates, up to 50 ms at low ones) sends what the rate has made due; when
 * every connection has `pipeline` requests unanswered, the rest waits (the
 * backlog) and goes out as answers free a slot. Nothing ever blocks the
 * loop. Connections closed by the server are reopened at once, or 100 ms
 * later if they never worked.
 */
#ifndef TIDINGS_LG_PRODUCER_H
#define TIDINGS_LG_PRODUCER_H

#include <event2/event.h>
#include <stdint.h>
#include <sys/socket.h>

#define LG_PIPELINE_MAX 64

typedef struct lg_producer lg_producer;

typedef struct lg_producer_opts {
	struct event_base *base;
	const struct sockaddr *dst;
	socklen_t dstlen;
	const char *host;    /* Host header */
	const char *api_key; /* bearer token */
	uint32_t users;
	uint32_t conns;      /* connections, at least 1 */
	uint32_t pipeline;   /* requests in flight per connection, 1..LG_PIPELINE_MAX */
	uint32_t pad_bytes;  /* filler in each emit */
	int persist;         /* emits are persisted chat updates (see queue_emit) */
	uint32_t answers;    /* with persist: chats answered at once (0: all users' at once) */
	uint32_t answer_len; /* with answers: updates per answer, at least 1 */
	uint32_t batch;      /* most emits per request (an array when > 1), at least 1 */
} lg_producer_opts;

typedef struct lg_producer_stats {
	uint64_t due;         /* emits the rate asked for in the step */
	uint64_t sent;        /* emits written to a connection */
	uint64_t ok;          /* answered 2xx */
	uint64_t errors;      /* answered otherwise, lost with their connection, or unanswered */
	uint64_t backlog_max; /* most emits due and not yet sent at any time */
	int last_error;       /* the last non-2xx status; -1: a connection failed; 0: none */
	const uint64_t *ok_per_user; /* users entries; owned by the producer, valid until
	                              * the next lg_producer_start */
} lg_producer_stats;

/* Creates the producer and starts opening its connections on o->base. The
 * options (strings included) must outlive it. NULL when out of memory. */
lg_producer *lg_producer_create(const lg_producer_opts *o);

/* Closes every connection and frees the producer. */
void lg_producer_destroy(lg_producer *p);

/* The seq the next emit will carry. */
uint64_t lg_producer_next_seq(const lg_producer *p);

/* Starts a step: `rate` emits per second for `ms` milliseconds, counted
 * from now. The counts of the previous step are reset. */
void lg_producer_start(lg_producer *p, uint32_t rate, uint64_t ms);

/* Ends the sending part of the step: sends what can be sent of the rest
 * that became due, then nothing more. Emits still waiting stay unsent. */
void lg_producer_stop(lg_producer *p);

/* Closes the step's books: requests still unanswered count as errors (their
 * connections are reopened, so a late answer cannot be miscounted), and
 * *st receives the step's figures. */
void lg_producer_finish(lg_producer *p, lg_producer_stats *st);

#endif
