/*
 * redis.c - one Redis connection on a libevent loop (see redis.h).
 *
 * The connection is a state machine driven by hiredis's callbacks and by a
 * 100 ms timer of its own:
 *
 *   DOWN --timer, backoff due--> CONNECTING --PING answered--> UP
 *     ^                              |                          |
 *     +------ error, EOF, timeout ---+--------------------------+
 *
 * CONNECTING covers the TCP connect and the handshake: AUTH and SELECT (when
 * the URL asks for them) and a PING, queued right after redisAsyncConnect so
 * that hiredis writes them as soon as the socket is connected. Only the
 * PING's reply makes the connection UP: a socket accepted by a frozen or
 * misconfigured server (wrong password, NOAUTH) is not "up", and the owner
 * sees one on_down for the whole outage instead of a flapping up/down pair
 * on every retry. The backoff is reset only then, for the same reason.
 *
 * Every command, the handshake's included, is wrapped in a heap record
 * (redis_req) kept in a FIFO. Redis answers in order, so the FIFO's head is
 * always the oldest command without a reply, and the timer compares its age
 * with timeout_ms (h2o's per-command timeout, measured from when it was
 * queued). The record also makes the reply path uniform: hiredis calls
 * on_reply exactly once per command, with the reply or with NULL when the
 * context is freed first, and on_reply calls the owner's callback.
 *
 * Teardown on our side (timeout, handshake error, destroy) always uses
 * redisAsyncFree, never redisAsyncDisconnect. In hiredis 0.14
 * redisAsyncDisconnect is a graceful close: it stops accepting commands
 * and waits for every pending reply before closing, so against a server
 * that stopped answering it never completes and no callback ever runs.
 * redisAsyncFree runs every pending callback with NULL at once, and it is
 * safe from inside a reply callback: hiredis then only sets a flag and
 * frees the context after the callback returns. It is not safe from inside
 * the connect or disconnect callbacks, which hiredis runs without that
 * guard; neither of ours calls it, or calls the owner.
 *
 * Before freeing a context we "disown" it: rc->ac is cleared and ac->data
 * set to NULL, so that the disconnect callback hiredis runs at the end of
 * the free is ignored and no code path can reach the dying context through
 * rc. The records still pending on it point at rc directly, which is why rc
 * must outlive them (see redis_conn_destroy).
 *
 * on_up and on_down are never called from inside hiredis: state changes
 * activate the timer event, and the timer compares the state with what the
 * owner was last told. The owner may therefore do anything in them,
 * redis_conn_destroy included, without a hiredis frame below it.
 */
#include "redis.h"

#include <assert.h>
#include <hiredis/async.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"

#define TICK_MS            100
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_PORT       6379

enum { ST_DOWN, ST_CONNECTING, ST_UP };

/* Handshake steps; 0 marks the owner's commands. */
enum { HS_NONE, HS_AUTH, HS_SELECT, HS_PING };

#define F_DESTROYING 0x1 /* redis_conn_destroy ran; freed once nothing uses rc */
#define F_TOLD_UP    0x2 /* on_up was the last thing the owner was told */
#define F_TOLD_DOWN  0x4 /* on_down was told for the current outage */

typedef struct redis_req {
	struct redis_req *next;
	redis_conn *rc;
	redis_reply_fn *cb;
	void *arg;
	uint64_t queued_ms;
	int step;
} redis_req;

struct redis_conn {
	struct event_base *base;
	struct event *tick;
	redisAsyncContext *ac; /* NULL while DOWN and once a context is disowned */
	int state;
	unsigned flags;
	int depth; /* frames of ours on the stack that use rc */
	redis_req *head, *tail;
	uint32_t pending;
	uint64_t errors;
	uint64_t timeout_ms;
	uint64_t backoff_ms;
	uint64_t retry_at_ms;
	char err[160]; /* why the connection last went down, for on_down */
	char *name, *host, *user, *password;
	int port, db;
	void (*on_up)(redis_conn *rc, void *arg);
	void (*on_down)(redis_conn *rc, const char *err, void *arg);
	void *arg;
};

static void conn_free(redis_conn *rc)
{
	event_free(rc->tick);
	free(rc->name);
	free(rc->host); /* user and password live in the same allocation */
	free(rc);
}

/*
 * enter/leave bracket every frame of ours that may run the owner's code
 * and then touch rc again. redis_conn_destroy called inside such a frame
 * only marks rc; the outermost leave frees it, once the context is gone and
 * the last pending record has had its callback (Redis's freeClientAsync
 * rule: never free what is executing).
 */
static void enter(redis_conn *rc)
{
	rc->depth++;
}

static void leave(redis_conn *rc)
{
	if (--rc->depth == 0 && (rc->flags & F_DESTROYING) && !rc->ac && !rc->head)
		conn_free(rc);
}

/* Wakes the timer now, to tell the owner about a state change from outside
 * hiredis. Activated with no EV_TIMEOUT bit, libevent reschedules the
 * persistent timer from now instead of skipping a period. */
static void poke(redis_conn *rc)
{
	event_active(rc->tick, 0, 0);
}

/* The context is gone or disowned: go DOWN and schedule the next attempt. */
static void set_down(redis_conn *rc, const char *why)
{
	rc->state = ST_DOWN;
	rc->ac = NULL;
	snprintf(rc->err, sizeof(rc->err), "%s", why && *why ? why : "connection lost");
	rc->backoff_ms = rc->backoff_ms ? rc->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (rc->backoff_ms > BACKOFF_MAX_MS)
		rc->backoff_ms = BACKOFF_MAX_MS;
	rc->retry_at_ms = clock_mono_ms() + rc->backoff_ms;
	poke(rc);
}

/* Our own teardown. Every pending record's callback runs with NULL, now
 * when called from the timer or the owner's code, or right after the
 * current reply callback returns when called from inside one. */
static void teardown(redis_conn *rc, const char *why)
{
	redisAsyncContext *ac = rc->ac;
	ac->data = NULL;
	set_down(rc, why);
	redisAsyncFree(ac);
}

static const char *step_name(int step)
{
	switch (step) {
	case HS_AUTH: return "AUTH";
	case HS_SELECT: return "SELECT";
	default: return "PING";
	}
}

static void handshake_reply(redis_conn *rc, const redisAsyncContext *ac, const redisReply *reply,
                            int step)
{
	/* A disowned context, or one hiredis is freeing: its connect or
	 * disconnect callback reports why. */
	if (rc->ac != ac || !reply)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		char why[sizeof(rc->err)];
		snprintf(why, sizeof(why), "%s: %.*s", step_name(step), (int)reply->len,
		         reply->str ? reply->str : "");
		teardown(rc, why);
		return;
	}
	if (step == HS_PING) {
		rc->state = ST_UP;
		rc->backoff_ms = 0;
		poke(rc);
	}
}

/* hiredis's callback for every command we queue; runs exactly once per
 * record. The record leaves the FIFO before the owner's callback runs, so
 * that the callback sees an accurate pending count. */
static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
	redis_req *q = priv;
	redis_conn *rc = q->rc;
	const redisReply *reply = r;

	assert(q == rc->head); /* Redis answers in order */
	rc->head = q->next;
	if (!rc->head)
		rc->tail = NULL;
	rc->pending--;
	enter(rc);
	if (q->step != HS_NONE)
		handshake_reply(rc, ac, reply, q->step);
	else if (q->cb)
		q->cb(rc, reply, q->arg);
	else if (reply && reply->type == REDIS_REPLY_ERROR)
		rc->errors++;
	free(q);
	leave(rc);
}

/* Connect success is not interesting (UP waits for the PING); failure is,
 * for its reason. hiredis frees the context after this returns. */
static void on_connect(const redisAsyncContext *ac, int status)
{
	redis_conn *rc = ac->data;
	if (rc && status != REDIS_OK)
		set_down(rc, ac->c.errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	redis_conn *rc = ac->data;
	if (rc)
		set_down(rc, status == REDIS_OK ? "connection closed" : ac->c.errstr);
}

/* The command in RESP, in a buffer kept for the next one. hiredis's own
 * formatter grows a new sds piece by piece with printf-like calls: 10 % of
 * the gateway's samples in the connect phase (~14 commands a connection),
 * against 5 % for this, which allocates only when a command is the
 * largest yet. */
static const char *format_cmd(int argc, const char **argv, const size_t *lens, size_t *len)
{
	static buf out;
	static int ready;
	if (!ready) {
		buf_init(&out, 0);
		ready = 1;
	}
	if (out.cap > 65536)
		buf_dispose(&out); /* a large command's block is not kept for ever */
	buf_reset(&out);
	/* The exact size first, then one reservation and plain stores: an
	 * append per piece was five calls per argument, 12 % of the gateway's
	 * instructions on the connect path (callgrind). */
	size_t need = 1 + BUF_U64_DIGITS + 2;
	for (int i = 0; i < argc; i++) {
		size_t n = lens ? lens[i] : strlen(argv[i]); /* as hiredis: no lengths, C strings */
		if (n > SIZE_MAX / 2 - need)
			return NULL;
		need += 1 + BUF_U64_DIGITS + 2 + n + 2;
	}
	if (buf_reserve(&out, need) < 0)
		return NULL;
	char *p = out.data;
	*p++ = '*';
	p += buf_u64_digits(p, (uint64_t)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (int i = 0; i < argc; i++) {
		size_t n = lens ? lens[i] : strlen(argv[i]);
		*p++ = '$';
		p += buf_u64_digits(p, n);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], n);
		p += n;
		*p++ = '\r';
		*p++ = '\n';
	}
	out.len = (size_t)(p - out.data);
	*len = out.len;
	return out.data;
}

static int queue_req(redis_conn *rc, redis_reply_fn *cb, void *arg, int step, int argc,
                     const char **argv, const size_t *lens)
{
	size_t len;
	const char *cmd = format_cmd(argc, argv, lens, &len);
	redis_req *q = cmd ? malloc(sizeof(*q)) : NULL;
	if (!q)
		return -1;
	*q =
	    (redis_req){.rc = rc, .cb = cb, .arg = arg, .queued_ms = clock_mono_ms(), .step = step};
	if (redisAsyncFormattedCommand(rc->ac, on_reply, q, cmd, len) != REDIS_OK) {
		free(q);
		return -1;
	}
	if (rc->tail)
		rc->tail->next = q;
	else
		rc->head = q;
	rc->tail = q;
	rc->pending++;
	return 0;
}

/* A handshake command from NUL-terminated strings. */
static int queue_step(redis_conn *rc, int step, int argc, const char **argv)
{
	size_t lens[3];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return queue_req(rc, NULL, NULL, step, argc, argv, lens);
}

/*
 * Reply objects. hiredis builds each reply with two allocations per
 * element (the object and its string) and frees them one by one: for the
 * worker's reads of ingress streams that was some 40 malloc/free pairs per
 * entry, and the free() of so many small chunks made glibc's
 * malloc_consolidate and unlink_chunk a fifth of the worker's profile. A
 * connection has at most one reply at a time (hiredis parses the next one
 * only after the previous one's callback returned and it was freed), so
 * the objects of a reply are carved from the connection's arena and
 * freeing the reply empties the arena. The blocks stay for the next
 * replies, up to ARENA_SPARE of them.
 *
 * freeObject gets only the root object: the root is allocated with a
 * header pointing at its arena (a root is an object without parent task).
 */
/* Under AddressSanitizer the free part of the arena is poisoned, so that a
 * reply used after its callback still fails the tests as it would with
 * hiredis's own malloc'd objects. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_BLOCK 65536
#define ARENA_BIG   (ARENA_BLOCK / 4) /* larger objects get a block of their own */
#define ARENA_SPARE 32                /* blocks kept for later replies: 2 MB */

typedef struct rblock {
	struct rblock *next;
	size_t cap, used;
	max_align_t mem[];
} rblock;

typedef struct rarena {
	rblock *cur;   /* the block being carved, NULL before the first object */
	rblock *full;  /* this reply's other blocks, big ones included */
	rblock *spare; /* emptied ARENA_BLOCK blocks */
	int nspare;
} rarena;

typedef struct rroot {
	rarena *arena;
	redisReply r;
} rroot;

static void *arena_alloc(rarena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (n > ARENA_BIG) {
		rblock *b = malloc(sizeof(*b) + n);
		if (!b)
			return NULL;
		b->cap = b->used = n;
		b->next = a->full;
		a->full = b;
		return b->mem;
	}
	rblock *b = a->cur;
	if (!b || b->cap - b->used < n) {
		if (b) {
			b->next = a->full;
			a->full = b;
		}
		if (a->spare) {
			b = a->spare;
			a->spare = b->next;
			a->nspare--;
		} else if (!(b = malloc(sizeof(*b) + ARENA_BLOCK))) {
			a->cur = NULL;
			return NULL;
		} else {
			POISON(b->mem, ARENA_BLOCK);
		}
		b->cap = ARENA_BLOCK;
		b->used = 0;
		a->cur = b;
	}
	void *p = (char *)b->mem + b->used;
	b->used += n;
	UNPOISON(p, n);
	return p;
}

/* Empties the arena: the current block is kept for the next reply. */
static void arena_reset(rarena *a)
{
	if (a->cur) {
		POISON(a->cur->mem, a->cur->used);
		a->cur->used = 0;
	}
	while (a->full) {
		rblock *b = a->full;
		a->full = b->next;
		if (b->cap == ARENA_BLOCK && a->nspare < ARENA_SPARE) {
			POISON(b->mem, b->used);
			b->next = a->spare;
			a->spare = b;
			a->nspare++;
		} else {
			free(b);
		}
	}
}

static void arena_free(rarena *a)
{
	arena_reset(a);
	free(a->cur);
	while (a->spare) {
		rblock *b = a->spare;
		a->spare = b->next;
		free(b);
	}
	free(a);
}

static redisReply *reply_new(const redisReadTask *t, int type)
{
	rarena *a = t->privdata;
	redisReply *r;
	if (t->parent) {
		r = arena_alloc(a, sizeof(*r));
	} else {
		rroot *root = arena_alloc(a, sizeof(*root));
		r = root ? &root->r : NULL;
		if (root)
			root->arena = a;
	}
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->type = type;
	if (t->parent)
		((redisReply *)t->parent->obj)->element[t->idx] = r;
	return r;
}

static void *reply_string(const redisReadTask *t, char *str, size_t len)
{
	redisReply *r = reply_new(t, t->type);
	char *s = r ? arena_alloc(t->privdata, len + 1) : NULL;
	if (!s)
		return NULL;
	memcpy(s, str, len);
	s[len] = '\0';
	r->str = s;
	r->len = len;
	return r;
}

static void *reply_array(const redisReadTask *t, int n)
{
	redisReply *r = reply_new(t, REDIS_REPLY_ARRAY);
	if (!r)
		return NULL;
	if (n > 0) {
		size_t bytes = (size_t)n * sizeof(redisReply *);
		r->element = arena_alloc(t->privdata, bytes);
		if (!r->element)
			return NULL;
		memset(r->element, 0, bytes);
	}
	r->elements = (size_t)(n > 0 ? n : 0);
	return r;
}

static void *reply_integer(const redisReadTask *t, long long v)
{
	redisReply *r = reply_new(t, REDIS_REPLY_INTEGER);
	if (r)
		r->integer = v;
	return r;
}

static void *reply_nil(const redisReadTask *t)
{
	return reply_new(t, REDIS_REPLY_NIL);
}

static void reply_free(void *obj)
{
	arena_reset(((rroot *)((char *)obj - offsetof(rroot, r)))->arena);
}

static redisReplyObjectFunctions reply_fns = {reply_string, reply_array, reply_integer, reply_nil,
                                              reply_free};

/*
 * The event adapter. hiredis's own (adapters/libevent.h) uses one-shot
 * events: libevent removes each from epoll when it fires and hiredis adds
 * it back, two epoll_ctl calls per read and per write, and each write
 * waits a loop turn for an EPOLLOUT the socket almost always has. Under
 * S4's load those calls were as many as the reads themselves (strace -c of
 * the worker: 6 466 epoll_ctl for 3 207 reads). Here the read event stays
 * registered, and queued commands are written when the loop turn's other
 * callbacks are done (one write for all of them, as the gateway flushes
 * its sockets). EPOLLOUT is asked for only while the TCP connect is in
 * progress and when the socket's buffer is full.
 */
typedef struct rio {
	redisAsyncContext *ac;
	struct event *rev, *wev, *flush;
	rarena *arena; /* the reader's, see reply_fns */
} rio;

/* The adapter whose redisAsyncHandleWrite is running: an addWrite from
 * inside it means the socket's buffer is full. Not a field of rio, which
 * a failed write frees before redisAsyncHandleWrite returns. */
static rio *flushing;

static void rio_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleRead(((rio *)arg)->ac);
}

/* For EPOLLOUT and for the end-of-turn flush alike. */
static void rio_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flushing = arg;
	redisAsyncHandleWrite(((rio *)arg)->ac);
	flushing = NULL;
}

static void rio_add_read(void *p)
{
	event_add(((rio *)p)->rev, NULL); /* no system call when already added */
}

static void rio_del_read(void *p)
{
	event_del(((rio *)p)->rev);
}

static void rio_add_write(void *p)
{
	rio *e = p;
	if (e == flushing || !(e->ac->c.flags & REDIS_CONNECTED))
		event_add(e->wev, NULL);
	else if (!event_pending(e->wev, EV_WRITE, NULL)) /* else EPOLLOUT will say when */
		event_active(e->flush, 0, 0);            /* once per turn: no-op if active */
}

static void rio_del_write(void *p)
{
	event_del(((rio *)p)->wev);
}

static void rio_cleanup(void *p)
{
	rio *e = p;
	if (flushing == e)
		flushing = NULL;
	/* The context frees its reader after this: a reply it was still
	 * reading is now freed with the arena, so the reader must not. */
	e->ac->c.reader->fn = NULL;
	arena_free(e->arena);
	event_free(e->rev);
	event_free(e->wev);
	event_free(e->flush);
	free(e);
}

static int rio_attach(redisAsyncContext *ac, struct event_base *base)
{
	rio *e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	e->ac = ac;
	int fd = ac->c.fd;
	e->rev = event_new(base, fd, EV_READ | EV_PERSIST, rio_read, e);
	e->wev = event_new(base, fd, EV_WRITE, rio_write, e);
	e->flush = event_new(base, -1, 0, rio_write, e);
	e->arena = calloc(1, sizeof(*e->arena));
	if (!e->rev || !e->wev || !e->flush || !e->arena) {
		free(e->arena);
		if (e->rev)
			event_free(e->rev);
		if (e->wev)
			event_free(e->wev);
		if (e->flush)
			event_free(e->flush);
		free(e);
		return -1;
	}
	/* After this turn's reads, whatever the base's priorities. */
	event_priority_set(e->flush, event_base_get_npriorities(base) - 1);
	ac->ev.addRead = rio_add_read;
	ac->ev.delRead = rio_del_read;
	ac->ev.addWrite = rio_add_write;
	ac->ev.delWrite = rio_del_write;
	ac->ev.cleanup = rio_cleanup;
	ac->ev.data = e;
	ac->c.reader->fn = &reply_fns;
	ac->c.reader->privdata = e->arena;
	event_add(e->rev, NULL);
	return 0;
}

/* AUTH, SELECT and PING, queued before the socket is even connected:
 * hiredis keeps command order, so nothing can overtake them. */
static int queue_handshake(redis_conn *rc)
{
	if (*rc->user) {
		const char *argv[3] = {"AUTH", rc->user, rc->password};
		if (queue_step(rc, HS_AUTH, 3, argv) < 0)
			return -1;
	} else if (*rc->password) {
		const char *argv[2] = {"AUTH", rc->password};
		if (queue_step(rc, HS_AUTH, 2, argv) < 0)
			return -1;
	}
	if (rc->db) {
		char d[16];
		snprintf(d, sizeof(d), "%d", rc->db);
		const char *argv[2] = {"SELECT", d};
		if (queue_step(rc, HS_SELECT, 2, argv) < 0)
			return -1;
	}
	const char *argv[1] = {"PING"};
	return queue_step(rc, HS_PING, 1, argv);
}

/*
 * Starts one attempt. Name resolution inside redisAsyncConnect is
 * synchronous (getaddrinfo): with an IP literal or /etc/hosts it costs
 * nothing, with a DNS name it can stall the loop, which hiredis 0.14 gives
 * no way around short of resolving ourselves.
 */
static void conn_start(redis_conn *rc)
{
	rc->state = ST_CONNECTING;
	redisAsyncContext *ac = redisAsyncConnect(rc->host, rc->port);
	if (!ac) {
		set_down(rc, "out of memory");
		return;
	}
	if (ac->err) {
		char why[sizeof(rc->err)];
		snprintf(why, sizeof(why), "%s", ac->c.errstr);
		redisAsyncFree(ac);
		set_down(rc, why);
		return;
	}
	if (rio_attach(ac, rc->base) < 0) {
		redisAsyncFree(ac);
		set_down(rc, "out of memory");
		return;
	}
	rc->ac = ac;
	ac->data = rc;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (queue_handshake(rc) < 0)
		teardown(rc, "out of memory");
}

/* Tells the owner what changed since it was last told. on_down comes once
 * per outage: for the first failed attempt, and after each on_up. */
static void notify(redis_conn *rc)
{
	if (rc->state == ST_UP && !(rc->flags & F_TOLD_UP)) {
		rc->flags = (rc->flags | F_TOLD_UP) & ~(unsigned)F_TOLD_DOWN;
		if (rc->on_up)
			rc->on_up(rc, rc->arg);
	} else if (rc->state == ST_DOWN && !(rc->flags & F_TOLD_DOWN)) {
		rc->flags = (rc->flags | F_TOLD_DOWN) & ~(unsigned)F_TOLD_UP;
		if (rc->on_down)
			rc->on_down(rc, rc->err, rc->arg);
	}
}

/* A teardown here activates the timer again, so the resulting on_down is
 * delivered by the next run, in the same loop iteration. */
static void check(redis_conn *rc)
{
	uint64_t now = clock_mono_ms();
	if (rc->state == ST_DOWN) {
		if (now >= rc->retry_at_ms)
			conn_start(rc);
	} else if (rc->head && now - rc->head->queued_ms >= rc->timeout_ms) {
		teardown(rc, rc->state == ST_UP ? "reply timeout" : "connect timeout");
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	redis_conn *rc = arg;
	(void)fd;
	(void)what;
	enter(rc);
	if (!(rc->flags & F_DESTROYING))
		notify(rc);
	if (!(rc->flags & F_DESTROYING))
		check(rc);
	leave(rc);
}

redis_conn *redis_conn_create(struct event_base *base, const redis_conn_opts *opts)
{
	if (!base || !opts || !opts->url)
		return NULL;
	size_t n = strlen(opts->url) + 1;
	redis_conn *rc = calloc(1, sizeof(*rc));
	char *strs = malloc(3 * n);
	if (!rc || !strs)
		goto fail;
	rc->host = strs;
	rc->user = strs + n;
	rc->password = strs + 2 * n;
	if (redis_parse_url(opts->url, rc->host, n, &rc->port, &rc->db, rc->user, n, rc->password,
	                    n) < 0)
		goto fail;
	rc->name = strdup(opts->name ? opts->name : "redis");
	rc->tick = event_new(base, -1, EV_PERSIST, on_tick, rc);
	if (!rc->name || !rc->tick)
		goto fail;
	struct timeval tv = {0, (suseconds_t)TICK_MS * 1000};
	event_add(rc->tick, &tv);
	rc->base = base;
	rc->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	rc->on_up = opts->on_up;
	rc->on_down = opts->on_down;
	rc->arg = opts->arg;
	conn_start(rc);
	return rc;
fail:
	if (rc) {
		if (rc->tick)
			event_free(rc->tick);
		free(rc->name);
	}
	free(strs);
	free(rc);
	return NULL;
}

/*
 * Outside any callback of this connection everything happens before the
 * function returns: pending callbacks run with NULL and rc is freed. From
 * inside a reply callback, hiredis defers the context's free until that
 * callback returns; the remaining callbacks then run with NULL and the last
 * of them frees rc, all before control returns to the loop. on_down is not
 * called: the owner knows.
 */
void redis_conn_destroy(redis_conn *rc)
{
	if (!rc || (rc->flags & F_DESTROYING))
		return;
	rc->flags |= F_DESTROYING;
	enter(rc);
	if (rc->ac)
		teardown(rc, "closed");
	leave(rc);
}

/* UP, and not in the middle of a teardown that hiredis has started but not
 * yet reported (the NULL callbacks run before the disconnect callback). */
int redis_conn_up(const redis_conn *rc)
{
	return rc->state == ST_UP && rc->ac &&
	       !(rc->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

uint32_t redis_conn_pending(const redis_conn *rc)
{
	return rc->pending;
}

uint64_t redis_conn_errors(const redis_conn *rc)
{
	return rc->errors;
}

/* Commands that put the connection in a mode where one command gets many
 * replies; hiredis would then call the callback more than once. */
static int multi_reply(const char *name, size_t len)
{
	static const char *const names[] = {"subscribe",   "psubscribe",   "ssubscribe",
	                                    "unsubscribe", "punsubscribe", "sunsubscribe",
	                                    "monitor"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
			return 1;
	return 0;
}

int redis_cmd(redis_conn *rc, redis_reply_fn *cb, void *arg, int argc, const char *const *argv,
              const size_t *lens)
{
	if (!redis_conn_up(rc) || argc <= 0 || !argv || !argv[0])
		return -1;
	if (multi_reply(argv[0], lens ? lens[0] : strlen(argv[0])))
		return -1;
	/* hiredis's prototype lacks the inner const; it does not write. */
	return queue_req(rc, cb, arg, HS_NONE, argc, (const char **)argv, lens);
}

/* ---- argv builder ----
 *
 * An argument that does not fit (more than REDIS_ARGV_MAX of them, or more
 * numbers than the builder has room for) poisons the builder: n becomes -1
 * and redis_cmd refuses it, rather than sending a truncated command. */

void redis_arg(redis_argv *a, const char *p, size_t len)
{
	if (a->n < 0)
		return;
	if (a->n >= REDIS_ARGV_MAX) {
		a->n = -1;
		return;
	}
	a->v[a->n] = p ? p : "";
	a->l[a->n++] = p ? len : 0;
}

void redis_arg_str(redis_argv *a, const char *s)
{
	redis_arg(a, s, s ? strlen(s) : 0);
}

void redis_arg_slice(redis_argv *a, slice s)
{
	redis_arg(a, s.base, s.len);
}

static char *num_slot(redis_argv *a)
{
	if (a->n < 0 || a->nnum >= (int)(sizeof(a->num) / sizeof(a->num[0]))) {
		a->n = -1;
		return NULL;
	}
	return a->num[a->nnum++];
}

void redis_arg_u64(redis_argv *a, uint64_t v)
{
	char *p = num_slot(a);
	if (p)
		redis_arg(a, p, buf_u64_digits(p, v));
}

void redis_arg_i64(redis_argv *a, int64_t v)
{
	char *p = num_slot(a);
	if (!p)
		return;
	size_t n = 0;
	if (v < 0)
		p[n++] = '-';
	/* The magnitude of INT64_MIN does not fit an int64_t, but does a uint64_t. */
	n += buf_u64_digits(p + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	redis_arg(a, p, n);
}

slice redis_field(const redisReply *kv, const char *name)
{
	if (!kv || kv->type != REDIS_REPLY_ARRAY || !name)
		return SLICE_NULL;
	size_t n = strlen(name);
	for (size_t i = 0; i + 1 < kv->elements; i += 2) {
		const redisReply *f = kv->element[i], *v = kv->element[i + 1];
		if (f && f->type == REDIS_REPLY_STRING && f->len == n &&
		    memcmp(f->str, name, n) == 0)
			return v && v->type == REDIS_REPLY_STRING ? slice_make(v->str, v->len)
			                                          : SLICE_NULL;
	}
	return SLICE_NULL;
}

/* ---- URL ---- */

/* Digits only, at least one, at most max. */
static int parse_uint(const char *p, size_t n, long max, int *out)
{
	long v = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
		if (v > max)
			return -1;
	}
	*out = (int)v;
	return 0;
}

static int copy_out(char *dst, size_t cap, const char *s, size_t n)
{
	if (!dst || n >= cap)
		return -1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

/*
 * redis://[[user]:password@]host[:port][/db], host possibly an IPv6 literal
 * in brackets. Userinfo without a colon is a password, as redis-cli reads
 * it. The last '@' ends the userinfo, so a password may contain '@', ':'
 * and '/'. No percent-decoding; rediss:// (TLS), unix sockets and query
 * parameters are refused.
 */
int redis_parse_url(const char *url, char *host, size_t hostcap, int *port, int *db, char *user,
                    size_t usercap, char *password, size_t pwcap)
{
	if (!url || strncasecmp(url, "redis://", 8) != 0)
		return -1;
	const char *p = url + 8;
	const char *u = "", *pw = "";
	size_t ulen = 0, pwlen = 0;
	const char *at = strrchr(p, '@');
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			u = p;
			ulen = (size_t)(colon - p);
			pw = colon + 1;
			pwlen = (size_t)(at - colon - 1);
		} else {
			pw = p;
			pwlen = (size_t)(at - p);
		}
		p = at + 1;
	}
	const char *h = p;
	size_t hlen;
	if (*p == '[') {
		const char *close = strchr(p, ']');
		if (!close)
			return -1;
		h = p + 1;
		hlen = (size_t)(close - h);
		p = close + 1;
	} else {
		hlen = strcspn(p, ":/?#[]");
		p += hlen;
	}
	if (hlen == 0)
		return -1;
	*port = DEFAULT_PORT;
	*db = 0;
	if (*p == ':') {
		size_t n = strcspn(++p, "/");
		if (parse_uint(p, n, 65535, port) < 0 || *port == 0)
			return -1;
		p += n;
	}
	if (*p == '/') {
		size_t n = strlen(++p);
		if (n && parse_uint(p, n, INT_MAX, db) < 0)
			return -1;
		p += n;
	}
	if (*p)
		return -1;
	if (copy_out(host, hostcap, h, hlen) < 0 || copy_out(user, usercap, u, ulen) < 0 ||
	    copy_out(password, pwcap, pw, pwlen) < 0)
		return -1;
	return 0;
}

const char *redis_url_redacted(const char *url, char *out, size_t cap)
{
	const char *scheme = strstr(url, "://");
	const char *at = strrchr(url, '@');
	const char *colon =
	    scheme && at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
	if (!colon)
		snprintf(out, cap, "%s", url);
	else
		snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
	return out;
}
