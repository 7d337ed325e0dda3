#include "lg_swarm.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/jwt.h"
#include "lg_hist.h"
#include "lg_http.h"
#include "lg_ipc.h"
#include "lg_proc.h"
#include "lg_ws.h"

/* Inbound messages longer than this are skipped unread (and counted as
 * dropped): the producer's events are far smaller, and a client must not be
 * made to buffer whatever a server announces. */
#define MAX_MESSAGE (64u << 20)
#define MAX_UPGRADE 8192 /* longest 101 answer */
/* Connections in the middle of their handshake when no connect rate is set. */
#define MAX_INFLIGHT 256
/* Every read lands here first; only the incomplete frame at its end, if
 * any, is copied to the client's own buffer. Idle clients own none. */
#define SCRATCH_SIZE (256u << 10)
#define MIN_READ     16384 /* room a client's own buffer offers each read */
#define OUT_LIMIT    (1u << 20)
#define OUT_MAX      (JWT_MAX_TOKEN + 1024)
#define PING_ECHO    1024 /* longest Engine.IO ping payload echoed */

/* Client states, in the order a client passes through them. */
enum { C_IDLE, C_TCP, C_UPGRADE, C_EIO, C_SIO, C_READY, C_FAILED, C_GONE };

#define CF_WRITING   0x01 /* output is queued: EV_WRITE is armed */
#define CF_FRAG_SKIP 0x02 /* dropping the continuations of a skipped message */

typedef struct client {
	struct event ev;
	char *rb;      /* an incomplete frame kept between reads; NULL when none */
	buf *frag;     /* a fragmented text message being reassembled; NULL when none */
	buf out;       /* output the socket would not take yet */
	uint64_t skip; /* payload bytes of an ignored frame still to come */
	uint32_t rlen, rcap;
	uint32_t idx;      /* number in the run; its user is idx % users */
	uint32_t start_ms; /* when it started connecting, after the swarm's start */
	int fd;
	uint8_t state;
	uint8_t flags;
} client;

static struct swarm {
	const lg_swarm_opts *o;
	struct event_base *base;
	const struct timeval *connect_tv; /* a common timeout: O(1) to re-arm */
	client *c;
	uint32_t n;    /* clients of this process */
	uint32_t next; /* the next one to start */
	uint32_t inflight;
	int connecting; /* the connect phase is not reported yet */
	int refilling;
	uint64_t t0_ms;
	uint64_t rng;
	uint64_t first_seq;
	uint64_t now_us; /* wall clock of the read being parsed; 0 until needed */
	lg_report r;
	lg_hist hist;
	uint32_t *per_user;
	struct event *pace, *cmd_ev;
	buf cmd_in;
	char *scratch;
	char msg[OUT_MAX]; /* a payload being composed */
	char out[OUT_MAX]; /* a frame being encoded */
} S;

static void on_event(evutil_socket_t fd, short what, void *arg);
static void refill(void);

static uint32_t next_mask(void)
{
	/* Masking keeps a client's bytes from steering naive proxies. Nothing
	 * on this path faces an attacker, so xorshift from a per-process seed
	 * does, without a syscall per frame. */
	uint64_t x = S.rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	S.rng = x;
	return (uint32_t)(x >> 32);
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* (Re)registers the client's one event for what its state needs. Until the
 * CONNECT is acknowledged the event carries the connect timeout. */
static void arm(client *c)
{
	short what = c->state == C_TCP ? EV_WRITE : EV_READ;
	if (c->flags & CF_WRITING)
		what |= EV_WRITE;
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	event_assign(&c->ev, S.base, c->fd, what | EV_PERSIST, on_event, c);
	event_add(&c->ev, c->state < C_READY ? S.connect_tv : NULL);
}

static void report(uint32_t type)
{
	S.r.cpu_s = lg_self_cpu_s();
	if (lg_ipc_send(S.o->rep_fd, type, &S.r, sizeof(S.r), NULL, 0, NULL, 0) < 0)
		event_base_loopbreak(S.base);
}

static void check_connected(void)
{
	if (!S.connecting || S.r.ok + S.r.failed < S.n)
		return;
	S.connecting = 0;
	report(LG_MSG_CONNECTED);
}

/* Closes the socket and frees the buffers; the struct stays in the array.
 * A caller up the stack that was parsing the client's input must return
 * without touching it: every function that can end a client says so by
 * returning -1. */
static int client_end(client *c, int reason)
{
	int was = c->state;
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rb);
	c->rb = NULL;
	c->rlen = c->rcap = 0;
	if (c->frag) {
		buf_dispose(c->frag);
		free(c->frag);
		c->frag = NULL;
	}
	buf_dispose(&c->out);
	c->flags = 0;
	c->skip = 0;
	if (was == C_READY) {
		c->state = C_GONE;
		S.r.ready--;
		S.r.disconnects++;
		return -1;
	}
	c->state = C_FAILED;
	S.r.failed++;
	S.r.fail[reason]++;
	S.inflight--;
	refill();
	check_connected();
	return -1;
}

/* The server went away (EOF, reset, close frame, Engine.IO close or a
 * Socket.IO disconnect): a disconnect, or a failure before CONNECT. */
static int lost(client *c)
{
	return client_end(c, LG_FAIL_CLOSED);
}

/* Sends bytes, queueing what the socket does not take. 0, or -1 when the
 * client ended. */
static int send_raw(client *c, const void *p, size_t n)
{
	if (c->out.len == 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w == (ssize_t)n)
			return 0;
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return lost(c);
			w = 0;
		}
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	if (buf_append(&c->out, p, n) < 0)
		return lost(c);
	if (!(c->flags & CF_WRITING)) {
		c->flags |= CF_WRITING;
		arm(c);
	}
	return 0;
}

static int send_frame(client *c, int opcode, const void *p, size_t n)
{
	size_t len = lg_ws_encode(S.out, sizeof(S.out), opcode, p, n, next_mask());
	if (len == 0)
		return lost(c); /* cannot happen: payloads are bounded by OUT_MAX */
	return send_raw(c, S.out, len);
}

static int flush(client *c)
{
	ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : lost(c);
	buf_consume(&c->out, (size_t)w);
	if (c->out.len == 0) {
		buf_dispose(&c->out);
		c->flags &= ~CF_WRITING;
		arm(c);
	}
	return 0;
}

static void client_start(client *c)
{
	const lg_swarm_opts *o = S.o;
	int one = 1;
	c->start_ms = (uint32_t)(clock_mono_ms() - S.t0_ms);
	c->state = C_TCP;
	S.inflight++;
	c->fd = socket(o->dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		client_end(c, LG_FAIL_TCP);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->src) {
		/* Without this, bind() picks the port before the destination is
		 * known, so ports are unique per source address and one address
		 * holds ~28 000 connections to all servers together; with it,
		 * connect() picks the port per 4-tuple. */
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, o->src, o->srclen) < 0) {
			client_end(c, LG_FAIL_TCP);
			return;
		}
	}
	if (connect(c->fd, o->dst, o->dstlen) < 0 && errno != EINPROGRESS) {
		client_end(c, LG_FAIL_TCP);
		return;
	}
	arm(c);
}

/* Starts clients while fewer than MAX_INFLIGHT are connecting (no connect
 * rate). Runs from inside client callbacks, and a client that fails at once
 * calls it again: the flag keeps that from recursing. */
static void refill(void)
{
	if (S.o->connect_rate || S.refilling)
		return;
	S.refilling = 1;
	while (S.next < S.n && S.inflight < MAX_INFLIGHT)
		client_start(&S.c[S.next++]);
	S.refilling = 0;
}

/* With a connect rate: starts every client due by now, evenly paced. */
static void on_pace(evutil_socket_t fd, short what, void *arg)
{
	uint64_t due = (clock_mono_ms() - S.t0_ms) * S.o->connect_rate / 1000 + 1;
	if (due > S.n)
		due = S.n;
	while (S.next < due)
		client_start(&S.c[S.next++]);
	if (S.next == S.n)
		event_del(S.pace);
}

/* The WebSocket key of a client is the process nonce followed by its index:
 * unique per connection, and recomputed instead of kept. */
static void client_key(const client *c, char *key)
{
	uint8_t nonce[16];
	memcpy(nonce, S.o->nonce, 12);
	memcpy(nonce + 12, &c->idx, 4);
	lg_ws_key(key, nonce);
}

static void tcp_connected(client *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		client_end(c, LG_FAIL_TCP);
		return;
	}
	c->state = C_UPGRADE;
	arm(c);
	char key[LG_WS_KEY_LEN + 1];
	client_key(c, key);
	key[LG_WS_KEY_LEN] = '\0';
	const char *path = S.o->path;
	int n = snprintf(S.msg, sizeof(S.msg),
	                 "GET %s%cEIO=4&transport=websocket HTTP/1.1\r\n"
	                 "Host: %s\r\n"
	                 "Upgrade: websocket\r\n"
	                 "Connection: Upgrade\r\n"
	                 "Sec-WebSocket-Key: %s\r\n"
	                 "Sec-WebSocket-Version: 13\r\n\r\n",
	                 path, strchr(path, '?') ? '&' : '?', S.o->host, key);
	if (n < 0 || (size_t)n >= sizeof(S.msg)) {
		client_end(c, LG_FAIL_HANDSHAKE);
		return;
	}
	send_raw(c, S.msg, (size_t)n);
}

/* Checks the 101 answer at p[0..n). Returns the bytes of its head, 0 when
 * it is incomplete, -1 when the client ended. */
static long upgrade(client *c, const char *p, size_t n)
{
	const char *end = memmem(p, n, "\r\n\r\n", 4);
	if (!end)
		return n >= MAX_UPGRADE ? client_end(c, LG_FAIL_HANDSHAKE) : 0;
	size_t head = (size_t)(end - p) + 4;
	char key[LG_WS_KEY_LEN], want[LG_WS_ACCEPT_LEN];
	client_key(c, key);
	lg_ws_accept(want, key, sizeof(key));
	slice v;
	if (head < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 ||
	    !lg_http_header(p, head, "sec-websocket-accept", &v) || v.len != sizeof(want) ||
	    memcmp(v.base, want, sizeof(want)) != 0)
		return client_end(c, LG_FAIL_HANDSHAKE);
	c->state = C_EIO;
	return (long)head;
}

static int connected(client *c)
{
	c->state = C_READY;
	S.r.ok++;
	S.r.ready++;
	S.inflight--;
	arm(c); /* without the connect timeout now */
	refill();
	check_connected();
	if (!S.o->user_join)
		return 0;
	const char *tok = S.o->tokens[c->idx % S.o->users];
	int n =
	    snprintf(S.msg, sizeof(S.msg), "42[\"user-join\",{\"auth\":{\"token\":\"%s\"}}]", tok);
	return send_frame(c, LG_WS_TEXT, S.msg, (size_t)n);
}

static int number_char(char ch)
{
	return (ch >= '0' && ch <= '9') || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' ||
	       ch == '-';
}

/* Parses the JSON number after optional blanks as a non-negative integer.
 * The producer writes integers, but a server that re-encodes the data may
 * not keep them so: cJSON prints 1795951088527890 as 1.79595108852789e+15.
 * Plain digits take the fast path. 0, or -1 when no number is there. */
static int number(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	while (p < end && *p == ' ')
		p++;
	size_t n = 0, digits = 0;
	uint64_t v = 0;
	for (; p + n < end && number_char(p[n]) && n < 40; n++) {
		if (p[n] >= '0' && p[n] <= '9' && digits == n && n < 19) {
			v = v * 10 + (uint64_t)(p[n] - '0');
			digits++;
		}
	}
	if (n == 0)
		return -1;
	if (digits < n) {
		char tmp[48], *e;
		memcpy(tmp, p, n);
		tmp[n] = '\0';
		double d = strtod(tmp, &e);
		if (e == tmp || !(d >= 0 && d < 1.8e19))
			return -1;
		v = (uint64_t)(d + 0.5);
	}
	*pp = p + n;
	*out = v;
	return 0;
}

/* An event packet (after "42"). The producer's carry "ts" and then "seq";
 * finding them by name spares a JSON parse, and the filler that follows
 * them is never looked at. */
static void delivery(const char *p, size_t n)
{
	const char *end = p + n;
	const char *t = memmem(p, n, "\"ts\":", 5);
	if (!t)
		return; /* not the producer's */
	const char *q = t + 5;
	uint64_t ts, seq;
	if (number(&q, end, &ts) < 0) {
		S.r.bad++;
		return;
	}
	const char *s = memmem(q, (size_t)(end - q), "\"seq\":", 6);
	if (!s) {
		S.r.bad++;
		return;
	}
	q = s + 6;
	if (number(&q, end, &seq) < 0) {
		S.r.bad++;
		return;
	}
	if (seq < S.first_seq) {
		S.r.late++;
		return;
	}
	if (!S.now_us)
		S.now_us = wall_us();
	lg_hist_add(&S.hist, S.now_us > ts ? S.now_us - ts : 0);
	S.r.deliveries++;
}

/* A Socket.IO packet (after the Engine.IO "4"). Only namespace "/" is
 * used, so packets carry no namespace. */
static int sio_packet(client *c, const char *p, size_t n)
{
	switch (p[0]) {
	case '0': return c->state == C_SIO ? connected(c) : 0;
	case '1': return lost(c);
	case '2':
		if (c->state == C_READY)
			delivery(p + 1, n - 1);
		return 0;
	case '4': return c->state == C_SIO ? client_end(c, LG_FAIL_REFUSED) : 0;
	default: return 0;
	}
}

/* A whole text message: an Engine.IO packet. 0, or -1 when the client ended. */
static int message(client *c, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	switch (p[0]) {
	case '0': {
		if (c->state != C_EIO)
			return 0;
		c->state = C_SIO;
		const char *tok = S.o->tokens[c->idx % S.o->users];
		int len = snprintf(S.msg, sizeof(S.msg), "40{\"token\":\"%s\"}", tok);
		return send_frame(c, LG_WS_TEXT, S.msg, (size_t)len);
	}
	case '1': return lost(c);
	case '2': {
		size_t len = n - 1 < PING_ECHO ? n - 1 : PING_ECHO;
		S.msg[0] = '3';
		memcpy(S.msg + 1, p + 1, len);
		return send_frame(c, LG_WS_TEXT, S.msg, len + 1);
	}
	case '4': return n > 1 ? sio_packet(c, p + 1, n - 1) : 0;
	default: return 0; /* pong, upgrade, noop */
	}
}

static void drop_frag(client *c)
{
	if (c->frag) {
		buf_dispose(c->frag);
		free(c->frag);
		c->frag = NULL;
	}
}

/* Decides, from its header alone, whether a data frame's payload is to be
 * dropped as it streams past instead of buffered: binary messages, messages
 * over MAX_MESSAGE, and continuations of either. Its side effects happen
 * only when it returns 1, because the caller then consumes the frame at
 * once; a frame it keeps may be looked at again after the next read. */
static int skip_frame(client *c, const lg_ws_frame *f)
{
	switch (f->opcode) {
	case LG_WS_BINARY:
		drop_frag(c);
		if (!f->fin)
			c->flags |= CF_FRAG_SKIP;
		return 1;
	case LG_WS_TEXT:
		if (f->len <= MAX_MESSAGE)
			return 0;
		drop_frag(c);
		S.r.dropped++;
		if (!f->fin)
			c->flags |= CF_FRAG_SKIP;
		return 1;
	case LG_WS_CONT:
		if (c->flags & CF_FRAG_SKIP) {
			if (f->fin)
				c->flags &= ~CF_FRAG_SKIP;
			return 1;
		}
		if (!c->frag)
			return 1; /* continues nothing: ignored */
		if (f->len <= MAX_MESSAGE - c->frag->len)
			return 0;
		drop_frag(c);
		S.r.dropped++;
		if (!f->fin)
			c->flags |= CF_FRAG_SKIP;
		return 1;
	default: return 0;
	}
}

/* A whole frame whose payload p[0..f->len) is in memory (and unmasked).
 * 0, or -1 when the client ended. */
static int frame(client *c, const lg_ws_frame *f, char *p)
{
	size_t n = (size_t)f->len;
	switch (f->opcode) {
	case LG_WS_TEXT:
		drop_frag(c);
		if (f->fin)
			return message(c, p, n);
		/* Servers seldom fragment; the one allocation of this path is
		 * paid only when one does. */
		c->frag = malloc(sizeof(*c->frag));
		if (!c->frag)
			return lost(c);
		buf_init(c->frag, MAX_MESSAGE);
		return buf_append(c->frag, p, n) < 0 ? lost(c) : 0;
	case LG_WS_CONT: /* skip_frame let it through: frag is set */
		if (!c->frag || buf_append(c->frag, p, n) < 0)
			return lost(c);
		if (!f->fin)
			return 0;
		if (message(c, c->frag->data, c->frag->len) < 0)
			return -1;
		drop_frag(c);
		return 0;
	case LG_WS_PING: return send_frame(c, LG_WS_PONG, p, n);
	case LG_WS_CLOSE:
		/* Echo the status code, then hang up without waiting for the
		 * server's FIN: the close is what counts. */
		if (send_frame(c, LG_WS_CLOSE, p, n < 2 ? 0 : 2) < 0)
			return -1;
		return lost(c);
	default: return 0;
	}
}

/* Parses what p[0..n) holds: the 101 answer first, then whole frames, in
 * place. Returns the bytes consumed, or -1 when the client ended. Sets *need
 * to the size its buffer must reach to hold the incomplete rest. */
static long consume(client *c, char *p, size_t n, size_t *need)
{
	size_t off = 0;
	if (c->state == C_UPGRADE) {
		long h = upgrade(c, p, n);
		if (h <= 0) {
			*need = MAX_UPGRADE;
			return h;
		}
		off = (size_t)h;
	}
	while (off < n) {
		if (c->skip) {
			uint64_t take = c->skip < n - off ? c->skip : n - off;
			off += (size_t)take;
			c->skip -= take;
			continue;
		}
		lg_ws_frame f;
		int h = lg_ws_parse(p + off, n - off, &f);
		if (h == 0) {
			*need = LG_WS_HEADER_MAX;
			break;
		}
		if (h < 0)
			return client_end(c, LG_FAIL_HANDSHAKE);
		if (skip_frame(c, &f)) {
			off += (size_t)h;
			uint64_t take = f.len < n - off ? f.len : n - off;
			off += (size_t)take;
			c->skip = f.len - take;
			continue;
		}
		if (f.len > n - off - (size_t)h) {
			*need = (size_t)h + (size_t)f.len;
			break;
		}
		char *payload = p + off + h;
		if (f.masked)
			lg_ws_unmask(payload, (size_t)f.len, f.mask);
		off += (size_t)h + (size_t)f.len;
		if (frame(c, &f, payload) < 0)
			return -1;
	}
	return (long)off;
}

static int grow(client *c, size_t cap)
{
	if (c->rb && cap <= c->rcap)
		return 0;
	char *p = realloc(c->rb, cap);
	if (!p)
		return -1;
	c->rb = p;
	c->rcap = (uint32_t)cap;
	return 0;
}

/* Keeps the unconsumed rest of base[0..have) for the next read, in the
 * client's own buffer, which is freed as soon as nothing is left. */
static void keep(client *c, char *base, size_t have, size_t used, size_t need)
{
	size_t left = have - used;
	if (left == 0) {
		free(c->rb);
		c->rb = NULL;
		c->rlen = c->rcap = 0;
		return;
	}
	if (need < left)
		need = left;
	if (c->rb && base == c->rb) {
		memmove(c->rb, c->rb + used, left);
		c->rlen = (uint32_t)left;
		if (grow(c, need) < 0)
			lost(c);
		return;
	}
	if (grow(c, need) < 0) {
		lost(c);
		return;
	}
	memcpy(c->rb, base + used, left);
	c->rlen = (uint32_t)left;
}

static void readable(client *c)
{
	char *base = S.scratch;
	size_t have = 0, room = SCRATCH_SIZE;
	if (c->rb) {
		if (c->rcap - c->rlen < MIN_READ && grow(c, (size_t)c->rlen + MIN_READ) < 0) {
			lost(c);
			return;
		}
		base = c->rb;
		have = c->rlen;
		room = c->rcap - c->rlen;
	}
	ssize_t r = recv(c->fd, base + have, room, 0);
	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		lost(c);
		return;
	}
	have += (size_t)r;
	if (c->state < C_READY &&
	    clock_mono_ms() - S.t0_ms - c->start_ms >= S.o->connect_timeout_ms) {
		client_end(c, LG_FAIL_TIMEOUT);
		return;
	}
	S.now_us = 0;
	size_t need = 0;
	long used = consume(c, base, have, &need);
	if (used >= 0)
		keep(c, base, have, (size_t)used, need);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	client *c = arg;
	if (what & EV_TIMEOUT) {
		if (c->state < C_READY)
			client_end(c, LG_FAIL_TIMEOUT);
		return;
	}
	if (c->state == C_TCP) {
		tcp_connected(c);
		return;
	}
	if ((what & EV_WRITE) && flush(c) < 0)
		return;
	if (what & EV_READ)
		readable(c);
}

static void send_stats(void)
{
	S.r.cpu_s = lg_self_cpu_s();
	if (lg_ipc_send(S.o->rep_fd, LG_MSG_STATS, &S.r, sizeof(S.r), &S.hist, sizeof(S.hist),
	                S.per_user, (size_t)S.o->users * sizeof(*S.per_user)) < 0)
		event_base_loopbreak(S.base);
}

static void command(const lg_cmd *cmd)
{
	switch (cmd->type) {
	case LG_CMD_SNAP:
		/* Who is connected now decides how many deliveries the step's
		 * emits should make, user by user. */
		memset(S.per_user, 0, (size_t)S.o->users * sizeof(*S.per_user));
		for (uint32_t i = 0; i < S.n; i++)
			if (S.c[i].state == C_READY)
				S.per_user[S.c[i].idx % S.o->users]++;
		S.r.deliveries = S.r.late = S.r.bad = S.r.dropped = 0;
		lg_hist_reset(&S.hist);
		S.first_seq = cmd->first_seq;
		report(LG_MSG_SNAP_ACK);
		break;
	case LG_CMD_STATS: send_stats(); break;
	default: event_base_loopbreak(S.base); break;
	}
}

static void on_cmd(evutil_socket_t fd, short what, void *arg)
{
	char tmp[4096];
	ssize_t r = read(fd, tmp, sizeof(tmp));
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0 || buf_append(&S.cmd_in, tmp, (size_t)r) < 0) {
		event_base_loopbreak(S.base); /* the parent is gone */
		return;
	}
	while (S.cmd_in.len >= sizeof(lg_cmd)) {
		lg_cmd cmd;
		memcpy(&cmd, S.cmd_in.data, sizeof(cmd));
		buf_consume(&S.cmd_in, sizeof(cmd));
		command(&cmd);
	}
}

int lg_swarm_run(const lg_swarm_opts *o)
{
	S.o = o;
	S.rng = o->seed | 1;
	S.n = o->index < o->clients ? (o->clients - o->index + o->procs - 1) / o->procs : 0;
	S.c = calloc(S.n ? S.n : 1, sizeof(*S.c));
	S.per_user = calloc(o->users, sizeof(*S.per_user));
	S.scratch = malloc(SCRATCH_SIZE);
	S.base = event_base_new();
	if (!S.c || !S.per_user || !S.scratch || !S.base) {
		fprintf(stderr, "tidings-loadgen: process %u: out of memory\n", o->index);
		return 1;
	}
	struct timeval tv = {(time_t)(o->connect_timeout_ms / 1000),
	                     (suseconds_t)(o->connect_timeout_ms % 1000) * 1000};
	S.connect_tv = event_base_init_common_timeout(S.base, &tv);
	for (uint32_t i = 0; i < S.n; i++) {
		S.c[i].idx = o->index + i * o->procs;
		S.c[i].fd = -1;
		buf_init(&S.c[i].out, OUT_LIMIT);
	}
	buf_init(&S.cmd_in, 1 << 20);
	fcntl(o->cmd_fd, F_SETFL, fcntl(o->cmd_fd, F_GETFL) | O_NONBLOCK);
	S.cmd_ev = event_new(S.base, o->cmd_fd, EV_READ | EV_PERSIST, on_cmd, NULL);
	event_add(S.cmd_ev, NULL);

	S.t0_ms = clock_mono_ms();
	S.connecting = 1;
	if (o->connect_rate) {
		struct timeval ms = {0, 1000};
		S.pace = event_new(S.base, -1, EV_PERSIST, on_pace, NULL);
		event_add(S.pace, &ms);
		on_pace(-1, 0, NULL);
	} else {
		refill();
	}
	check_connected();
	event_base_dispatch(S.base);
	return 0;
}
