#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "gw.h"

/* A connection's malloc chunk: 280 bytes are a 288-byte one (see eio_sock.h). */
_Static_assert(sizeof(conn) <= 280, "conn: mind its malloc chunk");

#define SCRATCH_SIZE ((size_t)64 * 1024)
#define IOV_BATCH    64
#define LINGER_MS    2000

uint64_t conn_count;
void (*conn_freed_hook)(conn *c);

static struct event *flush_ev;
static struct event *hold_ev; /* the flush at the end of a hold (see schedule_flush) */
static conn *dirty_head;
static conn *free_head;
static char *scratch;
static uint64_t max_output;
static uint64_t next_id;

static void flush_all(evutil_socket_t fd, short what, void *arg);
static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

int conn_global_init(struct event_base *base, uint64_t max_out)
{
	scratch = malloc(SCRATCH_SIZE);
	flush_ev = event_new(base, -1, 0, flush_all, NULL);
	hold_ev = event_new(base, -1, 0, flush_all, &hold_ev);
	if (!scratch || !flush_ev || !hold_ev)
		return -1;
	/* Lowest priority: runs after every read callback of this turn, which
	 * is what turns N sends into one writev per connection. */
	event_priority_set(flush_ev, 2);
	event_priority_set(hold_ev, 2);
	max_output = max_out;
	return 0;
}

/* Coalescing under load. Each socket is written once per flush with all
 * it has pending, so the fewer flushes, the more frames per writev - and a
 * write costs 5-7 us of kernel time on this kind of machine whatever its
 * size. A flush that wrote to many streams (a fan-out to a big room, a
 * burst of handshakes) therefore holds the next writes to streams back for
 * coalesce_us: what arrives meanwhile leaves together. A quiet gateway (the
 * flush before wrote to few streams) flushes at the end of the loop turn
 * as always, so an isolated message is never delayed. Request/response
 * connections (HTTP: the emit API, long polling) are never held: their
 * clients wait for each answer before they send more. */
#define COALESCE_BUSY 16 /* streams written by one flush that make it busy */
static uint64_t coalesce_us;
static uint64_t hold_until_us; /* no stream writes before this (monotonic us) */
static conn *urgent_head;      /* dirty connections that are not streams */
static int now_armed, hold_armed;

void conn_set_coalesce(uint64_t us)
{
	coalesce_us = us;
}

void conn_coalesce(conn *c)
{
	c->flags |= CONN_STREAM;
}

static void schedule_flush(int stream)
{
	if (stream && hold_until_us && clock_mono_us() < hold_until_us) {
		if (!hold_armed) {
			uint64_t left = hold_until_us - clock_mono_us();
			struct timeval tv = {0, (suseconds_t)(left < 1000000 ? left : 999999)};
			hold_armed = 1;
			event_add(hold_ev, &tv);
		}
		return;
	}
	if (!now_armed) {
		now_armed = 1;
		event_active(flush_ev, 0, 0);
	}
}

conn *conn_create(int fd, const conn_handler *h, void *ud)
{
	conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->id = ++next_id;
	c->h = h;
	c->ud = ud;
	buf_init(&c->in, 0);
	event_assign(&c->rev, gw.base, fd, EV_READ | EV_PERSIST, on_readable, c);
	event_add(&c->rev, NULL);
	conn_count++;
	return c;
}

void conn_set_handler(conn *c, const conn_handler *h, void *ud)
{
	c->h = h;
	c->ud = ud;
}

static void mark_dirty(conn *c)
{
	if ((c->flags & CONN_DIRTY) ||
	    ((c->flags & CONN_WANT_WRITE) && !(c->flags & CONN_OVERFLOW)))
		return;
	c->flags |= CONN_DIRTY;
	int stream = (c->flags & CONN_STREAM) != 0;
	conn **head = stream ? &dirty_head : &urgent_head;
	c->dirty_next = *head;
	*head = c;
	schedule_flush(stream);
}

int conn_send(conn *c, rbuf *rb)
{
	if (c->flags & CONN_CLOSING)
		return -1;
	if (rb->len == 0)
		return 0;
	if (c->flags & CONN_OVERFLOW)
		return -1;
	if (c->pending + rb->len > max_output) {
		/* Closed from the flush event, not here: the caller may be walking
		 * a room whose membership the close would change under it. */
		gw.m.slow_consumers++;
		log_warn("conn=%llu dropped as a slow consumer: %llu bytes pending",
		         (unsigned long long)c->id, (unsigned long long)c->pending);
		c->flags |= CONN_OVERFLOW;
		mark_dirty(c);
		return -1;
	}
	if (c->qhead + c->qlen == c->qcap) {
		if (c->qhead > 0) {
			memmove(c->q, c->q + c->qhead, c->qlen * sizeof(*c->q));
			c->qhead = 0;
		} else {
			uint32_t cap = c->qcap ? c->qcap * 2 : 4;
			outq_item *q = realloc(c->q, cap * sizeof(*q));
			if (!q) {
				conn_close(c, 0, "out of memory");
				return -1;
			}
			c->q = q;
			c->qcap = cap;
		}
	}
	c->q[c->qhead + c->qlen++] = (outq_item){rbuf_ref(rb), 0};
	c->pending += rb->len;
	mark_dirty(c);
	return 0;
}

int conn_send_copy(conn *c, const void *p, size_t n)
{
	rbuf *rb = rbuf_create(n);
	if (!rb)
		return -1;
	memcpy(rb->data, p, n);
	int rc = conn_send(c, rb);
	rbuf_unref(rb);
	return rc;
}

static void drop_queue(conn *c)
{
	for (uint32_t i = 0; i < c->qlen; i++)
		rbuf_unref(c->q[c->qhead + i].rb);
	free(c->q);
	c->q = NULL;
	c->qhead = c->qlen = c->qcap = 0;
	c->pending = 0;
}

static void destroy_later(conn *c)
{
	if (c->flags & CONN_FREED)
		return;
	c->flags |= CONN_FREED;
	event_del(&c->rev);
	if (c->wev) {
		event_free(c->wev);
		c->wev = NULL;
	}
	gw_timer_cancel(&c->timer);
	c->free_next = free_head;
	free_head = c;
	schedule_flush(0);
}

static void linger_done(wheel_timer *t)
{
	destroy_later(wheel_owner(t, conn, timer));
}

/* After the last byte is written: half-close and read until the peer's EOF
 * (or a short deadline), so unread input does not turn our close into a
 * reset that could discard the final frame or response in flight. */
static void start_linger(conn *c)
{
	c->flags |= CONN_LINGER;
	shutdown(c->fd, SHUT_WR);
	gw_timer_start(&c->timer, linger_done, LINGER_MS);
}

/* Writes as much of the queue as the kernel takes. Returns 0 when the
 * queue is empty, 1 when it must wait for EV_WRITE, -1 on error. */
static int flush_one(conn *c)
{
	while (c->qlen) {
		struct iovec iov[IOV_BATCH];
		int n = 0;
		for (uint32_t i = 0; i < c->qlen && n < IOV_BATCH; i++, n++) {
			outq_item *it = &c->q[c->qhead + i];
			iov[n].iov_base = it->rb->data + it->off;
			iov[n].iov_len = it->rb->len - it->off;
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->pending -= (uint64_t)w;
		while (w > 0) {
			outq_item *it = &c->q[c->qhead];
			size_t left = it->rb->len - it->off;
			if ((size_t)w < left) {
				it->off += (uint32_t)w;
				break;
			}
			w -= (ssize_t)left;
			rbuf_unref(it->rb);
			c->qhead++;
			c->qlen--;
		}
	}
	/* Idle connections hold no queue memory. */
	free(c->q);
	c->q = NULL;
	c->qhead = c->qcap = 0;
	return 0;
}

static void after_flush(conn *c, int rc)
{
	if (rc < 0) {
		if (!(c->flags & CONN_CLOSING))
			conn_close(c, 0, strerror(errno));
		destroy_later(c);
	} else if (rc == 1) {
		c->flags |= CONN_WANT_WRITE;
		if (!c->wev)
			c->wev = event_new(gw.base, c->fd, EV_WRITE, on_writable, c);
		if (c->wev)
			event_add(c->wev, NULL);
		else
			conn_close(c, 0, "out of memory");
	} else if ((c->flags & CONN_CLOSING) && !(c->flags & CONN_LINGER)) {
		start_linger(c);
	}
}

/* Writes the dirty connections of one list; returns how many. */
static uint32_t flush_list(conn **head)
{
	uint32_t written = 0;
	while (*head) {
		conn *c = *head;
		*head = c->dirty_next;
		c->flags &= ~CONN_DIRTY;
		if (c->flags & CONN_FREED)
			continue;
		if ((c->flags & CONN_OVERFLOW) && !(c->flags & CONN_CLOSING)) {
			conn_close(c, 0, "slow consumer");
			continue;
		}
		if (c->flags & CONN_WANT_WRITE)
			continue;
		after_flush(c, flush_one(c));
		written++;
	}
	return written;
}

static void flush_all(evutil_socket_t fd, short what, void *arg)
{
	if (arg)
		hold_armed = 0;
	else
		now_armed = 0;
	gw_now_update();
	flush_list(&urgent_head);
	if (dirty_head) {
		if (hold_until_us && clock_mono_us() < hold_until_us) {
			schedule_flush(1); /* the hold is not over: the timer writes them */
		} else {
			uint32_t written = flush_list(&dirty_head);
			hold_until_us = coalesce_us && written >= COALESCE_BUSY
			                    ? clock_mono_us() + coalesce_us
			                    : 0;
		}
	}
	while (free_head) {
		conn *c = free_head;
		free_head = c->free_next;
		drop_queue(c);
		buf_dispose(&c->in);
		if (conn_freed_hook)
			conn_freed_hook(c);
		close(c->fd);
		conn_count--;
		free(c);
	}
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;
	gw_now_update();
	c->flags &= ~CONN_WANT_WRITE;
	after_flush(c, flush_one(c));
}

void conn_close(conn *c, int flush, const char *reason)
{
	if (c->flags & CONN_CLOSING) {
		if (!flush)
			destroy_later(c);
		return;
	}
	c->flags = (c->flags | CONN_CLOSING) & ~CONN_KEEPALIVE;
	gw_timer_cancel(&c->timer);
	buf_dispose(&c->in);
	if (c->h && c->h->on_close)
		c->h->on_close(c, reason);
	c->h = NULL;
	if (!flush || c->qlen == 0) {
		if (flush)
			start_linger(c);
		else
			destroy_later(c);
	}
	/* Otherwise the flush event writes the rest, then lingers. */
}

/* Hands bytes to the handler and keeps what it did not consume. */
static void deliver(conn *c, char *data, size_t len, int from_in)
{
	size_t used = c->h->on_read(c, data, len);
	if (c->flags & CONN_CLOSING)
		return;
	if (used > len)
		used = len;
	if (from_in) {
		buf_consume(&c->in, used);
		if (c->in.len == 0)
			buf_dispose(&c->in);
	} else if (used < len) {
		if (buf_append(&c->in, data + used, len - used) < 0)
			conn_close(c, 0, "out of memory");
	}
}

void conn_resume(conn *c)
{
	if (c->in.len && !(c->flags & CONN_CLOSING))
		deliver(c, c->in.data, c->in.len, 1);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;
	gw_now_update();
	char *dst = scratch;
	size_t room = SCRATCH_SIZE;
	int use_in = c->in.len > 0;
	if (use_in) {
		/* A partial message is pending: read straight behind it. */
		if (buf_reserve(&c->in, SCRATCH_SIZE) < 0) {
			conn_close(c, 0, "out of memory");
			return;
		}
		dst = c->in.data + c->in.len;
	}
	ssize_t n = read(fd, dst, room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		conn_close(c, 0, strerror(errno));
		if (c->flags & CONN_LINGER)
			destroy_later(c);
		return;
	}
	if (n == 0) {
		if (c->flags & CONN_CLOSING) {
			destroy_later(c);
			return;
		}
		conn_close(c, 0, "peer closed");
		return;
	}
	if (c->flags & CONN_CLOSING) {
		buf_dispose(&c->in);
		return; /* lingering: discard */
	}
	if (use_in) {
		c->in.len += (size_t)n;
		deliver(c, c->in.data, c->in.len, 1);
	} else {
		deliver(c, scratch, (size_t)n, 0);
	}
}
