/*
 * conn.h - one TCP connection: nonblocking reads, a queue of shared output
 * blocks flushed once per loop turn, and deferred destruction.
 *
 * Reads land in one process-wide scratch buffer; only bytes a handler leaves
 * unconsumed (a partial request or frame) are copied into the connection's
 * own buffer, so an idle connection holds no read buffer. Output is a queue
 * of references to rbufs; conn_send marks the connection dirty, and all
 * dirty connections are written with writev in a low-priority event that
 * runs after every ready read of this loop turn - one syscall per
 * connection per turn however many messages it got.
 *
 * A connection is destroyed only from that same deferred event, so a
 * handler may call conn_close() on its own connection and keep using the
 * pointer until it returns.
 */
#ifndef TIDINGS_CONN_H
#define TIDINGS_CONN_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/rbuf.h"
#include "common/wheel.h"

typedef struct conn conn;

typedef struct conn_handler {
	/* Bytes arrived in data[0..len) (mutable, valid during the call only).
	 * Returns how many were consumed; the rest is kept and offered again
	 * with the next bytes. A handler that closed the connection returns
	 * anything; the connection ignores further input once closing. */
	size_t (*on_read)(conn *c, char *data, size_t len);
	/* The connection is closing (peer EOF, error, conn_close): called
	 * exactly once, first thing, so the owner can detach. */
	void (*on_close)(conn *c, const char *reason);
} conn_handler;

enum {
	CONN_CLOSING = 1 << 0,    /* no more reads are handed up */
	CONN_DIRTY = 1 << 1,      /* on the flush list */
	CONN_WANT_WRITE = 1 << 2, /* kernel buffer full: waiting for EV_WRITE */
	CONN_LINGER = 1 << 3,     /* output done, SHUT_WR sent, draining the peer */
	CONN_FREED = 1 << 4,      /* on the free list */
	CONN_HTTP_BUSY = 1 << 5,  /* HTTP layer: a request is being answered */
	CONN_KEEPALIVE = 1 << 6,  /* HTTP layer: keep the connection after the response */
	CONN_OVERFLOW = 1 << 7,   /* output over the limit: closed at the next flush */
	CONN_STREAM = 1 << 8,     /* a stream (WebSocket): its writes may be held to coalesce */
};

typedef struct outq_item {
	rbuf *rb;
	uint32_t off;
} outq_item;

struct conn {
	int fd;
	uint32_t flags;
	uint64_t id;
	const conn_handler *h;
	void *ud; /* the owner's object */
	buf in;   /* unconsumed input; empty (no heap) when idle */
	outq_item *q;
	uint32_t qhead, qlen, qcap;
	uint64_t pending; /* bytes queued, not yet written */
	conn *dirty_next;
	conn *free_next;
	wheel_timer timer; /* owner's deadline (header timeout, etc.) */
	uint32_t peer_ip;  /* IPv4 in network order, 0 otherwise: per-IP limits */
	struct event rev;
	/* Made when the kernel first refuses output: most sockets never need it. */
	struct event *wev;
};

/* Sets up the process-wide machinery on `base`: the flush event (lowest
 * priority of `base`, which must have been given >= 3 priorities) and the
 * scratch buffer. */
int conn_global_init(struct event_base *base, uint64_t max_output);

/* Holds each flush back by `us` microseconds after a flush that wrote to
 * many sockets, so that frames coalesce under load (0: never). */
void conn_set_coalesce(uint64_t us);

/* Marks c as a stream (a WebSocket, not request/response) whose writes
 * may be held back under load; see conn_set_coalesce. */
void conn_coalesce(conn *c);

/* Wraps an accepted, nonblocking fd. The connection starts reading at once
 * and calls h. Returns NULL (fd closed) when out of memory. */
conn *conn_create(int fd, const conn_handler *h, void *ud);

/* Switches the handler (e.g. HTTP -> WebSocket after an upgrade). */
void conn_set_handler(conn *c, const conn_handler *h, void *ud);

/* Queues a reference to rb (conn takes its own ref; the caller keeps
 * theirs). Returns 0, or -1 when the connection is closing or its pending
 * output would pass the limit - in which case it has been closed as a slow
 * consumer. */
int conn_send(conn *c, rbuf *rb);

/* Copies bytes into a fresh rbuf and queues it. */
int conn_send_copy(conn *c, const void *p, size_t n);

/* Closes: on_close runs now (once), output already queued is flushed
 * when `flush` is set (then the write side is shut and the peer drained
 * briefly, so the last bytes are not lost to a reset), and the memory is
 * released later from the loop. Safe to call more than once. */
void conn_close(conn *c, int flush, const char *reason);

/* Re-offers buffered input to the handler (after CONN_HTTP_BUSY clears). */
void conn_resume(conn *c);

/* Number of live connections. */
extern uint64_t conn_count;

/* Called for every connection just before its memory is released (the
 * process layer's per-address accounting). */
extern void (*conn_freed_hook)(conn *c);

#endif
