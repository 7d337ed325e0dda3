#include "lg_producer.h"

#include <errno.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "lg_http.h"

#define READ_ROOM  16384
#define IN_LIMIT   (1u << 20)
#define BACKOFF_MS 100
#define HOUSE_MS   20

enum { P_DOWN, P_CONNECTING, P_UP };

/* A request in flight: the step it belongs to and its emits. */
typedef struct pending {
	uint32_t step, n;
	uint64_t seq; /* the first emit's */
} pending;

typedef struct pconn {
	lg_producer *p;
	struct event ev;
	int fd;
	int state;
	int writing;    /* EV_WRITE is armed */
	int answered;   /* an answer came since the connection opened */
	int until_eof;  /* the answer being read ends with the connection */
	int eof_status; /* ... and has this status */
	int dirty;      /* requests were queued on it by the current dispatch */
	buf in, out;
	uint32_t head, count; /* ring of requests in flight, oldest at head */
	pending ring[LG_PIPELINE_MAX];
	uint64_t retry_ms; /* when DOWN: reopen at this time */
} pconn;

struct lg_producer {
	lg_producer_opts o;
	pconn *c;
	struct event *tick, *house;
	uint32_t step; /* the open step; 0 between steps */
	int sending;
	uint32_t rate;
	uint64_t t0_us, dur_us;
	uint64_t seq;
	uint32_t rr;
	buf prefix; /* the request head up to the Content-Length value */
	buf body;
	char *pad;
	lg_producer_stats st;
	uint64_t *ok_per_user;
};

static void on_conn_event(evutil_socket_t fd, short what, void *arg);
static void pc_open(pconn *pc);

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void pc_arm(pconn *pc)
{
	short what = pc->state == P_CONNECTING ? EV_WRITE : EV_READ;
	if (pc->writing)
		what |= EV_WRITE;
	if (event_initialized(&pc->ev))
		event_del(&pc->ev);
	event_assign(&pc->ev, pc->p->o.base, pc->fd, what | EV_PERSIST, on_conn_event, pc);
	event_add(&pc->ev, NULL);
}

/* Closes the connection. Requests of the open step still in flight on it
 * count as errors. Reopens it at once, or after a back-off when it never
 * worked (refused, or closed before any answer), so a dead server is not
 * hammered. */
static void pc_down(pconn *pc, int backoff)
{
	lg_producer *p = pc->p;
	for (uint32_t i = 0; i < pc->count; i++) {
		const pending *e = &pc->ring[(pc->head + i) % LG_PIPELINE_MAX];
		if (p->step && e->step == p->step) {
			p->st.errors += e->n;
			p->st.last_error = -1;
		}
	}
	pc->head = pc->count = 0;
	if (event_initialized(&pc->ev))
		event_del(&pc->ev);
	if (pc->fd >= 0)
		close(pc->fd);
	pc->fd = -1;
	buf_reset(&pc->in);
	buf_reset(&pc->out);
	pc->writing = pc->until_eof = pc->dirty = 0;
	pc->state = P_DOWN;
	pc->retry_ms = clock_mono_ms() + (backoff ? BACKOFF_MS : 0);
	if (!backoff)
		pc_open(pc);
}

static void pc_open(pconn *pc)
{
	const lg_producer_opts *o = &pc->p->o;
	int one = 1;
	pc->fd = socket(o->dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (pc->fd >= 0) {
		setsockopt(pc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(pc->fd, o->dst, o->dstlen) == 0 || errno == EINPROGRESS) {
			pc->state = P_CONNECTING;
			pc->answered = 0;
			pc_arm(pc);
			return;
		}
		close(pc->fd);
		pc->fd = -1;
	}
	pc->state = P_DOWN;
	pc->retry_ms = clock_mono_ms() + BACKOFF_MS;
}

static void pc_flush(pconn *pc)
{
	pc->dirty = 0;
	while (pc->out.len) {
		ssize_t w = send(pc->fd, pc->out.data, pc->out.len, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			pc_down(pc, 1);
			return;
		}
		buf_consume(&pc->out, (size_t)w);
	}
	int want = pc->out.len > 0;
	if (want != pc->writing) {
		pc->writing = want;
		pc_arm(pc);
	}
}

/* The user (and chat) emit seq goes to; *turn: how many updates its
 * answer had before it (persisted emits). */
static uint32_t user_of(const lg_producer *p, uint64_t seq, uint64_t *turn)
{
	if (p->o.persist && p->o.answers) {
		/* `answers` chats are being answered at once, emit seq going to
		 * answer seq % answers; an answer ends after answer_len updates
		 * and a fresh chat takes its place, so chats keep the size of a
		 * real conversation however long the run. */
		uint64_t slot = seq % p->o.answers, round = seq / p->o.answers;
		*turn = round % p->o.answer_len;
		return (uint32_t)(((round / p->o.answer_len) * p->o.answers + slot) % p->o.users);
	}
	*turn = seq / p->o.users;
	return (uint32_t)(seq % p->o.users);
}

/* Appends emit seq's JSON object to b. */
static int append_emit(lg_producer *p, buf *b, uint64_t seq)
{
	uint64_t turn;
	uint32_t user = user_of(p, seq, &turn);
	int rc = buf_append_cstr(b, "{\"event\":\"events\",\"to\":{\"user\":\"bench-u");
	rc |= buf_append_u64(b, user);
	if (p->o.persist) {
		/* A chat being answered: user k's chat bench-c{k}, message m1,
		 * getting status lines (60 %), content deltas (30 %) and
		 * sources (10 %), persisted. */
		static const char status[] =
		    "status\",\"data\":{\"description\":\"Searching\",\"done\":false,";
		static const char message[] = "message\",\"data\":{\"content\":\"token \",";
		static const char source[] =
		    "source\",\"data\":{\"source\":{\"name\":\"doc\",\"id\":\"d1\"},"
		    "\"document\":[\"text\"],\"metadata\":[{\"source\":\"d1\"}],";
		static const char *const kinds[10] = {status, status,  status,  status,  status,
		                                      status, message, message, message, source};
		rc |= buf_append_cstr(b, "\"},\"update_db\":true,\"data\":{\"chat_id\":\"bench-c");
		rc |= buf_append_u64(b, user);
		rc |= buf_append_cstr(b, "\",\"message_id\":\"m1\",\"data\":{\"type\":\"");
		rc |= buf_append_cstr(b, kinds[turn % 10]);
		rc |= buf_append_cstr(b, "\"ts\":");
	} else {
		rc |=
		    buf_append_cstr(b, "\"},\"data\":{\"chat_id\":\"bench\",\"message_id\":\"m1\","
		                       "\"data\":{\"type\":\"bench\",\"data\":{\"ts\":");
	}
	rc |= buf_append_u64(b, wall_us());
	rc |= buf_append_cstr(b, ",\"seq\":");
	rc |= buf_append_u64(b, seq);
	rc |= buf_append_cstr(b, ",\"pad\":\"");
	rc |= buf_append(b, p->pad, p->o.pad_bytes);
	rc |= buf_append_cstr(b, p->o.persist ? "\"}}}}" : "\"}}},\"update_db\":false}");
	return rc;
}

/* Appends a request with the next n emits (an array when batching) to
 * the connection's output. */
static int queue_emits(lg_producer *p, pconn *pc, uint32_t n)
{
	buf *b = &p->body;
	buf_reset(b);
	int rc = p->o.batch > 1 ? buf_append_byte(b, '[') : 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i)
			rc |= buf_append_byte(b, ',');
		rc |= append_emit(p, b, p->seq + i);
	}
	if (p->o.batch > 1)
		rc |= buf_append_byte(b, ']');
	rc |= buf_append_slice(&pc->out, buf_slice(&p->prefix));
	rc |= buf_append_u64(&pc->out, b->len);
	rc |= buf_append(&pc->out, "\r\n\r\n", 4);
	rc |= buf_append_slice(&pc->out, buf_slice(b));
	if (rc)
		return -1;
	pc->ring[(pc->head + pc->count) % LG_PIPELINE_MAX] = (pending){p->step, n, p->seq};
	pc->count++;
	pc->dirty = 1;
	p->seq += n;
	p->st.sent += n;
	return 0;
}

/* A free request slot, round robin over the connections; NULL when all
 * are busy or down. */
static pconn *free_conn(lg_producer *p)
{
	for (uint32_t i = 0; i < p->o.conns; i++) {
		pconn *pc = &p->c[(p->rr + i) % p->o.conns];
		if (pc->state == P_UP && pc->count < p->o.pipeline) {
			p->rr = (p->rr + i + 1) % p->o.conns;
			return pc;
		}
	}
	return NULL;
}

/* Sends emits until `due` were sent in the step or no slot is free, then
 * writes each connection's new requests with one send. */
static void dispatch_to(lg_producer *p, uint64_t due)
{
	while (p->st.sent < due) {
		pconn *pc = free_conn(p);
		uint64_t n = due - p->st.sent;
		if (!pc || queue_emits(p, pc, (uint32_t)(n < p->o.batch ? n : p->o.batch)) < 0)
			break;
	}
	for (uint32_t i = 0; i < p->o.conns; i++)
		if (p->c[i].dirty)
			pc_flush(&p->c[i]);
	uint64_t backlog = due - p->st.sent;
	if (backlog > p->st.backlog_max)
		p->st.backlog_max = backlog;
}

static uint64_t due_now(const lg_producer *p)
{
	uint64_t el = clock_mono_us() - p->t0_us;
	if (el > p->dur_us)
		el = p->dur_us;
	return (uint64_t)((unsigned __int128)p->rate * el / 1000000u);
}

static void dispatch(lg_producer *p)
{
	if (p->sending)
		dispatch_to(p, due_now(p));
}

/* One answer, to the oldest request in flight. -1 when nothing was asked. */
static int answered(pconn *pc, int status)
{
	lg_producer *p = pc->p;
	if (pc->count == 0)
		return -1;
	pending e = pc->ring[pc->head];
	pc->head = (pc->head + 1) % LG_PIPELINE_MAX;
	pc->count--;
	pc->answered = 1;
	if (!p->step || e.step != p->step)
		return 0; /* of a closed step, already counted as an error */
	if (status >= 200 && status < 300) {
		p->st.ok += e.n;
		for (uint32_t i = 0; i < e.n; i++) {
			uint64_t turn;
			p->ok_per_user[user_of(p, e.seq + i, &turn)]++;
		}
	} else {
		p->st.errors += e.n;
		p->st.last_error = status;
	}
	return 0;
}

static void pc_read(pconn *pc)
{
	if (buf_reserve(&pc->in, READ_ROOM) < 0) {
		pc_down(pc, 1);
		return;
	}
	ssize_t r = recv(pc->fd, pc->in.data + pc->in.len, pc->in.cap - pc->in.len, 0);
	if (r < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			pc_down(pc, 1);
		return;
	}
	if (r == 0) {
		if (pc->until_eof)
			answered(pc, pc->eof_status);
		pc_down(pc, !pc->answered);
		return;
	}
	pc->in.len += (size_t)r;
	while (pc->in.len && !pc->until_eof) {
		lg_http_resp resp;
		long n = lg_http_response(pc->in.data, pc->in.len, &resp);
		if (n == 0)
			break;
		if (n < 0) {
			pc_down(pc, 1);
			return;
		}
		buf_consume(&pc->in, (size_t)n);
		if (resp.status < 200)
			continue; /* 100 Continue and the like: the answer follows */
		if (resp.until_eof) {
			pc->until_eof = 1;
			pc->eof_status = resp.status;
			break;
		}
		if (answered(pc, resp.status) < 0) {
			pc_down(pc, 1);
			return;
		}
		if (resp.close) {
			pc_down(pc, 0);
			return;
		}
	}
	if (pc->until_eof)
		buf_reset(&pc->in); /* the body of an unframed answer: unread */
	/* The tick posts what is due every millisecond; an answer starts the
	 * next request at once only when a whole batch is waiting. Sending
	 * whatever was due on every answer kept 16 requests of 1-6 emits in
	 * flight (6 300 a second at S4's 40 000/s), and S4 then measured the
	 * HTTP round trips (6 of the gateway's 9 us per update, 3 of Redis'
	 * 8) rather than the persistence. With --batch 1 nothing changes. */
	if (pc->p->sending && due_now(pc->p) - pc->p->st.sent >= pc->p->o.batch)
		dispatch(pc->p);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
	pconn *pc = arg;
	if (pc->state == P_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			pc_down(pc, 1);
			return;
		}
		pc->state = P_UP;
		pc_arm(pc);
		dispatch(pc->p);
		return;
	}
	if (what & EV_WRITE) {
		pc_flush(pc);
		if (pc->state != P_UP)
			return;
	}
	if (what & EV_READ)
		pc_read(pc);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	dispatch(arg);
}

static void on_house(evutil_socket_t fd, short what, void *arg)
{
	lg_producer *p = arg;
	uint64_t now = clock_mono_ms();
	for (uint32_t i = 0; i < p->o.conns; i++)
		if (p->c[i].state == P_DOWN && p->c[i].retry_ms <= now)
			pc_open(&p->c[i]);
}

lg_producer *lg_producer_create(const lg_producer_opts *o)
{
	lg_producer *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->o = *o;
	p->c = calloc(o->conns, sizeof(*p->c));
	p->pad = malloc(o->pad_bytes + 1);
	p->ok_per_user = calloc(o->users, sizeof(*p->ok_per_user));
	p->tick = event_new(o->base, -1, EV_PERSIST, on_tick, p);
	p->house = event_new(o->base, -1, EV_PERSIST, on_house, p);
	if (!p->c || !p->pad || !p->ok_per_user || !p->tick || !p->house) {
		lg_producer_destroy(p);
		return NULL;
	}
	memset(p->pad, 'x', o->pad_bytes);
	buf_init(&p->body, 0);
	buf_init(&p->prefix, 0);
	buf_append_cstr(&p->prefix, "POST /api/v1/emit HTTP/1.1\r\nHost: ");
	buf_append_cstr(&p->prefix, o->host);
	buf_append_cstr(&p->prefix, "\r\nAuthorization: Bearer ");
	buf_append_cstr(&p->prefix, o->api_key);
	buf_append_cstr(&p->prefix, "\r\nContent-Type: application/json\r\nContent-Length: ");
	for (uint32_t i = 0; i < o->conns; i++) {
		pconn *pc = &p->c[i];
		pc->p = p;
		pc->fd = -1;
		buf_init(&pc->in, IN_LIMIT);
		buf_init(&pc->out, 0);
		pc_open(pc);
	}
	struct timeval tv = {0, (suseconds_t)HOUSE_MS * 1000};
	event_add(p->house, &tv);
	return p;
}

void lg_producer_destroy(lg_producer *p)
{
	if (!p)
		return;
	for (uint32_t i = 0; p->c && i < p->o.conns; i++) {
		pconn *pc = &p->c[i];
		if (pc->p) {
			if (event_initialized(&pc->ev))
				event_del(&pc->ev);
			if (pc->fd >= 0)
				close(pc->fd);
			buf_dispose(&pc->in);
			buf_dispose(&pc->out);
		}
	}
	if (p->tick)
		event_free(p->tick);
	if (p->house)
		event_free(p->house);
	buf_dispose(&p->body);
	buf_dispose(&p->prefix);
	free(p->c);
	free(p->pad);
	free(p->ok_per_user);
	free(p);
}

uint64_t lg_producer_next_seq(const lg_producer *p)
{
	return p->seq;
}

void lg_producer_start(lg_producer *p, uint32_t rate, uint64_t ms)
{
	if (++p->step == 0)
		p->step = 1;
	memset(&p->st, 0, sizeof(p->st));
	memset(p->ok_per_user, 0, (size_t)p->o.users * sizeof(*p->ok_per_user));
	p->rate = rate;
	p->dur_us = ms * 1000;
	p->t0_us = clock_mono_us();
	p->sending = 1;
	/* A quarter of the gap between emits, within 1..50 ms: low rates stay
	 * evenly paced without a thousand wake-ups a second. */
	uint64_t us = rate ? 250000u / rate : 50000u;
	us = us < 1000 ? 1000 : us > 50000 ? 50000 : us;
	struct timeval tv = {0, (suseconds_t)us};
	event_add(p->tick, &tv);
	dispatch(p);
}

void lg_producer_stop(lg_producer *p)
{
	if (!p->sending)
		return;
	/* The window is over whatever the clock says: everything it made due
	 * is due now. */
	p->st.due = (uint64_t)((unsigned __int128)p->rate * p->dur_us / 1000000u);
	dispatch_to(p, p->st.due);
	p->sending = 0;
	event_del(p->tick);
}

void lg_producer_finish(lg_producer *p, lg_producer_stats *st)
{
	lg_producer_stop(p);
	for (uint32_t i = 0; i < p->o.conns; i++)
		if (p->c[i].count)
			pc_down(&p->c[i], 0);
	p->step = 0;
	*st = p->st;
	st->ok_per_user = p->ok_per_user;
}
