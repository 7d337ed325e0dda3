/*
 * pg.c - one PostgreSQL connection on a libevent loop (see pg.h).
 *
 * The connection is a state machine, DOWN -> CONNECTING -> UP -> DOWN,
 * with one timer whose meaning follows the state: the reconnect backoff
 * when DOWN, the connect timeout when CONNECTING, and the deadline of the
 * oldest unanswered batch when UP.
 *
 * Batches are built in memory (pg_batch_add copies everything), and a
 * commit only queues the batch and schedules a deferred "kick" event; the
 * kick writes every queued batch into the pipeline at once, so callbacks
 * never run inside pg_batch_commit and several commits in one loop turn
 * share one flush. Results come back strictly in order, so the batches in
 * flight form a FIFO and each result belongs to the head's current step.
 *
 * A batch goes on the wire as BEGIN, its queries, Sync, COMMIT, Sync. The
 * Sync before COMMIT is not decoration: after an error inside an explicit
 * transaction block the server skips messages up to the next Sync but
 * leaves the block aborted, so with a single trailing Sync the skipped
 * COMMIT would leave the session poisoned and every batch already queued
 * behind it would fail with "current transaction is aborted". With the
 * extra Sync, the COMMIT always executes: it commits, fails (deferred
 * constraints: the error is then the COMMIT's), or, on an aborted block,
 * rolls back and answers with the tag ROLLBACK. The session is idle again
 * either way and the next batch in the pipeline is unaffected.
 *
 * User callbacks may call back into this module, including
 * pg_conn_destroy. Every entry from the event loop therefore counts itself
 * in pc->depth; a destroy inside a callback only marks the connection
 * closing, and the outermost handler frees it once the callbacks unwound.
 */
#include "pg.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define PG_BACKOFF_MIN_MS  100u
#define PG_BACKOFF_MAX_MS  5000u
#define PG_DEFAULT_QUEUED  64u
#define PG_DEFAULT_TIMEOUT 30000u
#define PG_MAX_PARAMS      65535 /* the protocol counts parameters in 16 bits */
#define PG_ERR_MAX         512   /* bytes of libpq's connection message kept */
#define PG_MAX_PREPARED    32    /* statements prepared per session; more run unnamed */

enum pg_state { PG_DOWN, PG_CONNECTING, PG_UP };

enum {
	PG_F_WRITING = 1u << 0, /* PQflush left data behind: ev_write is armed */
	PG_F_CLOSING = 1u << 1, /* pg_conn_destroy was called */
};

/* What the head batch expects next from PQgetResult. */
enum pg_step { PG_ST_BEGIN, PG_ST_PREPARE, PG_ST_QUERY, PG_ST_SYNC1, PG_ST_COMMIT, PG_ST_SYNC2 };

enum {
	PG_B_FAILED = 1u << 0, /* a statement failed or was skipped */
	PG_B_BROKEN = 1u << 1, /* failed while being built: never sent */
	PG_B_GOT = 1u << 2,    /* the current statement has had its result */
};

typedef struct pg_query {
	pg_result_fn *cb;
	void *arg;
	int nparams;
	int prepared;        /* sql is the caller's, to run as a prepared statement */
	const char **values; /* start of the query's one allocation */
	const char *sql;     /* inside that allocation, after values[]; or the caller's */
} pg_query;

struct pg_batch {
	pg_conn *pc;
	pg_batch *prev, *next; /* prev is used only while open */
	pg_query *q;
	uint32_t n, cap;
	uint32_t qi;  /* query whose result is expected, in PG_ST_QUERY */
	uint32_t ncb; /* query callbacks already run */
	uint8_t step;
	uint8_t flags;
	uint8_t nprep, prepi;               /* statements prepared ahead of the queries */
	uint8_t prep_slot[PG_MAX_PREPARED]; /* and their slots */
	pg_done_fn *done;
	void *done_arg;
	uint64_t deadline_ms;
	char *err; /* first error, owned */
};

typedef struct pg_fifo {
	pg_batch *head, *tail;
} pg_fifo;

struct pg_conn {
	struct event_base *base;
	PGconn *conn;
	int fd;
	struct event *ev_read, *ev_write; /* on fd; re-created when fd changes */
	struct event *timer;
	struct event *kick;
	enum pg_state state;
	unsigned flags;
	unsigned depth; /* event-loop entries on the stack */
	uint32_t backoff_ms;
	uint32_t max_batches; /* the running one + max_queued */
	uint32_t nbatches;    /* open + queued + in flight */
	uint64_t timeout_ms;
	uint64_t armed_ms; /* deadline the timer is set for when UP; 0: none */
	pg_batch *open;    /* begun, not committed (doubly linked) */
	/* The statements this session has prepared (or is preparing), by
	 * slot: slot i is named tidings_p<i>. NULL: free. */
	const char *prepared[PG_MAX_PREPARED];
	pg_fifo sendq;    /* committed, not yet written */
	pg_fifo inflight; /* written (or broken), awaiting their end */
	char *conninfo;
	void (*on_up)(pg_conn *pc, void *arg);
	void (*on_down)(pg_conn *pc, const char *err, void *arg);
	void *arg;
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void lose(pg_conn *pc, const char *err, const char *detail);

static void fifo_push(pg_fifo *f, pg_batch *b)
{
	b->next = NULL;
	if (f->tail)
		f->tail->next = b;
	else
		f->head = b;
	f->tail = b;
}

static pg_batch *fifo_pop(pg_fifo *f)
{
	pg_batch *b = f->head;
	if (b) {
		f->head = b->next;
		if (!f->head)
			f->tail = NULL;
		b->next = NULL;
	}
	return b;
}

static void open_unlink(pg_conn *pc, pg_batch *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		pc->open = b->next;
	if (b->next)
		b->next->prev = b->prev;
	b->prev = b->next = NULL;
}

static void batch_free(pg_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++)
		free(b->q[i].values);
	free(b->q);
	free(b->err);
	free(b);
}

/* Copies s without its trailing whitespace (libpq ends messages with "\n"). */
static char *dup_trimmed(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		n--;
	return strndup(s, n);
}

static void note_error(pg_batch *b, const char *msg)
{
	b->flags |= PG_B_FAILED;
	if (!b->err && msg && *msg)
		b->err = dup_trimmed(msg);
}

/*
 * Ends a batch that is already unlinked from every list: the query
 * callbacks that have not run yet run with NULL, then done, then it is
 * freed. The batch leaves the count first so that the callbacks may begin
 * a new one in its place.
 */
static void batch_end(pg_conn *pc, pg_batch *b, int ok, const char *err)
{
	pc->nbatches--;
	while (b->ncb < b->n) {
		pg_query *q = &b->q[b->ncb++];
		if (q->cb)
			q->cb(q->arg, NULL);
	}
	if (b->done)
		b->done(b->done_arg, ok, ok ? NULL : err);
	batch_free(b);
}

/* Ends every batch in flight, then every queued one, in submission order.
 * Callbacks may queue more (by committing an open batch): those end too. */
static void fail_all(pg_conn *pc, const char *err)
{
	pg_batch *b;
	while ((b = fifo_pop(pc->inflight.head ? &pc->inflight : &pc->sendq)))
		batch_end(pc, b, 0, err);
}

static void events_free(pg_conn *pc)
{
	if (pc->ev_read)
		event_free(pc->ev_read);
	if (pc->ev_write)
		event_free(pc->ev_write);
	pc->ev_read = pc->ev_write = NULL;
	pc->fd = -1;
	pc->flags &= ~PG_F_WRITING;
}

/*
 * Points the two socket events at fd. libpq may close its socket and open
 * another one during the connection sequence (next host, next address,
 * SSL or GSS fallback), so the events are rebuilt whenever the number
 * changes. A new socket that reuses the old number is covered too: the
 * events are deleted before every PQconnectPoll, so libevent holds no
 * stale registration for the closed one.
 */
static int use_fd(pg_conn *pc, int fd)
{
	if (fd == pc->fd && pc->ev_read)
		return 0;
	events_free(pc);
	pc->ev_read = event_new(pc->base, fd, EV_READ | EV_PERSIST, on_io, pc);
	pc->ev_write = event_new(pc->base, fd, EV_WRITE | EV_PERSIST, on_io, pc);
	if (!pc->ev_read || !pc->ev_write) {
		events_free(pc);
		return -1;
	}
	pc->fd = fd;
	return 0;
}

static void timer_ms(pg_conn *pc, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
	evtimer_add(pc->timer, &tv);
}

static void close_conn(pg_conn *pc)
{
	events_free(pc);
	if (pc->conn)
		PQfinish(pc->conn); /* sends Terminate without waiting, closes */
	pc->conn = NULL;
	evtimer_del(pc->timer);
	pc->armed_ms = 0;
	pc->state = PG_DOWN;
	memset(pc->prepared, 0, sizeof(pc->prepared)); /* they died with the session */
}

/*
 * Drops the connection (or the attempt): every batch in flight or queued
 * ends with ok = 0 and err, on_down hears detail, and a reconnection is
 * scheduled after the current backoff, which then doubles.
 */
static void lose(pg_conn *pc, const char *err, const char *detail)
{
	char msg[PG_ERR_MAX];
	size_t n = strnlen(detail, sizeof(msg) - 1); /* detail may live in pc->conn */
	while (n > 0 && (detail[n - 1] == '\n' || detail[n - 1] == ' '))
		n--;
	memcpy(msg, detail, n);
	msg[n] = '\0';

	close_conn(pc);
	timer_ms(pc, pc->backoff_ms);
	pc->backoff_ms =
	    pc->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : pc->backoff_ms * 2;
	fail_all(pc, err);
	if (!(pc->flags & PG_F_CLOSING) && pc->on_down)
		pc->on_down(pc, msg, pc->arg);
}

static void lose_conn(pg_conn *pc)
{
	lose(pc, "connection lost", PQerrorMessage(pc->conn));
}

static void ignore_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Arms the timer for the oldest batch in flight, or disarms it. */
static void arm_deadline(pg_conn *pc)
{
	pg_batch *b = pc->inflight.head;
	if (!b) {
		if (pc->armed_ms)
			evtimer_del(pc->timer);
		pc->armed_ms = 0;
		return;
	}
	if (b->deadline_ms == pc->armed_ms)
		return;
	uint64_t now = clock_mono_ms();
	timer_ms(pc, b->deadline_ms > now ? b->deadline_ms - now : 0);
	pc->armed_ms = b->deadline_ms;
}

/* Pushes libpq's output buffer out; 0, or -1 when the connection is lost. */
static int flush(pg_conn *pc)
{
	int r = PQflush(pc->conn);
	if (r < 0) {
		lose_conn(pc);
		return -1;
	}
	if (r > 0 && !(pc->flags & PG_F_WRITING)) {
		event_add(pc->ev_write, NULL);
		pc->flags |= PG_F_WRITING;
	} else if (r == 0 && (pc->flags & PG_F_WRITING)) {
		event_del(pc->ev_write);
		pc->flags &= ~PG_F_WRITING;
	}
	return 0;
}

/* A statement's results ended (PQgetResult gave NULL): move to the next. */
static void step_next(pg_batch *b)
{
	if (!(b->flags & PG_B_GOT))
		return;
	b->flags &= ~PG_B_GOT;
	switch (b->step) {
	case PG_ST_BEGIN:
		b->step = b->nprep ? PG_ST_PREPARE : b->n ? PG_ST_QUERY : PG_ST_SYNC1;
		break;
	case PG_ST_PREPARE:
		b->step = ++b->prepi < b->nprep ? PG_ST_PREPARE : b->n ? PG_ST_QUERY : PG_ST_SYNC1;
		break;
	case PG_ST_QUERY: b->step = ++b->qi < b->n ? PG_ST_QUERY : PG_ST_SYNC1; break;
	case PG_ST_COMMIT: b->step = PG_ST_SYNC2; break;
	default: break;
	}
}

/* Hands one statement result to its owner: the head batch's current step. */
static void on_statement(pg_batch *b, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	if (b->flags & PG_B_GOT)
		return; /* the extended protocol gives one result per statement */
	b->flags |= PG_B_GOT;
	if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE)
		note_error(b, PQresultErrorMessage(res));
	else if (st == PGRES_PIPELINE_ABORTED)
		b->flags |= PG_B_FAILED;
	if (b->step == PG_ST_PREPARE && st != PGRES_COMMAND_OK) {
		/* Not prepared after all: free the slot for another try. */
		b->pc->prepared[b->prep_slot[b->prepi]] = NULL;
	} else if (b->step == PG_ST_QUERY) {
		pg_query *q = &b->q[b->qi];
		b->ncb = b->qi + 1;
		if (q->cb)
			q->cb(q->arg, st == PGRES_PIPELINE_ABORTED ? NULL : res);
	} else if (b->step == PG_ST_COMMIT && st == PGRES_COMMAND_OK &&
	           strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		note_error(b, "transaction rolled back");
	}
}

/* Handles one non-NULL result; 0, or -1 when the connection was dropped. */
static int on_result(pg_conn *pc, PGresult *res)
{
	pg_batch *b = pc->inflight.head;
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
		lose(pc, "connection lost", "COPY is not supported in a batch");
		return -1;
	}
	if (st == PGRES_PIPELINE_SYNC) {
		if (b->step == PG_ST_SYNC1) {
			b->step = PG_ST_COMMIT;
		} else if (b->step == PG_ST_SYNC2) {
			fifo_pop(&pc->inflight);
			int ok = !(b->flags & PG_B_FAILED);
			batch_end(pc, b, ok, b->err ? b->err : "batch failed");
		} else {
			lose(pc, "connection lost", "pipeline out of step");
			return -1;
		}
		return 0;
	}
	if (b->step == PG_ST_SYNC1 || b->step == PG_ST_SYNC2) {
		/* An error at a sync point belongs to no statement; it still
		 * fails the batch. */
		if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE)
			note_error(b, PQresultErrorMessage(res));
		return 0;
	}
	on_statement(b, res);
	return 0;
}

/* Ends the batches at the head that were never sent (broken while built):
 * they wait for their turn so that done callbacks keep submission order. */
static void end_broken(pg_conn *pc)
{
	pg_batch *b;
	while ((b = pc->inflight.head) && (b->flags & PG_B_BROKEN) && !(pc->flags & PG_F_CLOSING)) {
		fifo_pop(&pc->inflight);
		batch_end(pc, b, 0, b->err ? b->err : "out of memory");
	}
}

/*
 * Runs every result libpq already holds, never waiting for more: results
 * are taken only while PQisBusy says the next one is complete (PQgetResult
 * would block otherwise, even on a nonblocking connection). Two NULLs in a
 * row mean libpq has nothing queued that we expect; the deadline timer
 * then settles it.
 */
static void read_results(pg_conn *pc)
{
	int nulls = 0;
	for (;;) {
		end_broken(pc);
		if (pc->state != PG_UP || (pc->flags & PG_F_CLOSING) || !pc->inflight.head ||
		    PQisBusy(pc->conn))
			return;
		PGresult *res = PQgetResult(pc->conn);
		if (!res) {
			if (!(pc->inflight.head->flags & PG_B_GOT) && ++nulls >= 2)
				return;
			step_next(pc->inflight.head);
			continue;
		}
		nulls = 0;
		int r = on_result(pc, res);
		PQclear(res);
		if (r < 0)
			return;
	}
}

/* After any I/O: results, then the deadline of what is still in flight. */
static void pump(pg_conn *pc)
{
	read_results(pc);
	if (pc->state == PG_UP && !(pc->flags & PG_F_CLOSING))
		arm_deadline(pc);
}

static int send_stmt(pg_conn *pc, const char *sql, int nparams, const char *const *values)
{
	return PQsendQueryParams(pc->conn, sql, nparams, NULL, values, NULL, NULL, 0);
}

/* The slot of a prepared statement in this session; -1 when none is free. */
static int prepared_slot(const pg_conn *pc, const char *sql, int *fresh)
{
	int free_slot = -1;
	*fresh = 0;
	for (int i = 0; i < PG_MAX_PREPARED; i++) {
		if (pc->prepared[i] == sql)
			return i;
		if (!pc->prepared[i] && free_slot < 0)
			free_slot = i;
	}
	*fresh = free_slot >= 0;
	return free_slot;
}

/*
 * Sends a query, as a prepared statement when it asks to be one. A
 * statement new to the session is prepared first, right after the
 * batch's BEGIN: nothing before it in the pipeline segment can fail and
 * skip it, so batches sent behind this one may count on it. (A prepared
 * statement outlives the transaction that prepared it, rolled back or
 * not.)
 */
static int send_query(pg_conn *pc, const pg_query *q)
{
	int fresh = 0, slot = q->prepared ? prepared_slot(pc, q->sql, &fresh) : -1;
	if (slot < 0 || fresh) /* every slot taken: run it unnamed */
		return send_stmt(pc, q->sql, q->nparams, q->values);
	char name[24];
	snprintf(name, sizeof(name), "tidings_p%d", slot);
	return PQsendQueryPrepared(pc->conn, name, q->nparams, q->values, NULL, NULL, 0);
}

/* Prepares the statements of b that this session has not prepared yet. */
static int send_prepares(pg_conn *pc, pg_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		int fresh, slot = b->q[i].prepared ? prepared_slot(pc, b->q[i].sql, &fresh) : -1;
		if (slot < 0 || !fresh)
			continue;
		char name[24];
		snprintf(name, sizeof(name), "tidings_p%d", slot);
		if (!PQsendPrepare(pc->conn, name, b->q[i].sql, b->q[i].nparams, NULL))
			return -1;
		pc->prepared[slot] = b->q[i].sql;
		b->prep_slot[b->nprep++] = (uint8_t)slot;
	}
	return 0;
}

/* Writes one batch into libpq's output buffer; 0 or -1 (connection bad). */
static int send_batch(pg_conn *pc, pg_batch *b)
{
	if (!send_stmt(pc, "BEGIN", 0, NULL) || send_prepares(pc, b) < 0)
		return -1;
	for (uint32_t i = 0; i < b->n; i++)
		if (!send_query(pc, &b->q[i]))
			return -1;
	if (!PQpipelineSync(pc->conn) || !send_stmt(pc, "COMMIT", 0, NULL) ||
	    !PQpipelineSync(pc->conn))
		return -1;
	return 0;
}

/*
 * Moves every committed batch into the pipeline. libpq may read from the
 * socket while it writes (to avoid a deadlock against a server that is
 * itself blocked writing), which a level-triggered read event would then
 * not report, so results are always looked at afterwards.
 */
static void send_queued(pg_conn *pc)
{
	pg_batch *b;
	while ((b = fifo_pop(&pc->sendq))) {
		fifo_push(&pc->inflight, b);
		if (!(b->flags & PG_B_BROKEN) && send_batch(pc, b) < 0) {
			lose_conn(pc);
			return;
		}
	}
	if (flush(pc) == 0)
		pump(pc);
}

/* Frees the connection; runs with no handler of ours on the stack. */
static void conn_free(pg_conn *pc)
{
	pc->depth++; /* a destroy from the callbacks below is a no-op */
	close_conn(pc);
	fail_all(pc, "connection closed");
	for (pg_batch *b = pc->open, *next; b; b = next) {
		next = b->next;
		batch_free(b);
	}
	pc->open = NULL;
	event_free(pc->timer);
	event_free(pc->kick);
	free(pc->conninfo);
	free(pc);
}

/* Every handler ends here: the place where a deferred destroy happens. */
static void leave(pg_conn *pc)
{
	if (--pc->depth == 0 && (pc->flags & PG_F_CLOSING))
		conn_free(pc);
}

static void went_up(pg_conn *pc)
{
	if (PQsetnonblocking(pc->conn, 1) != 0 || !PQenterPipelineMode(pc->conn) ||
	    use_fd(pc, PQsocket(pc->conn)) < 0 || event_add(pc->ev_read, NULL) < 0) {
		lose(pc, "connection lost", PQerrorMessage(pc->conn));
		return;
	}
	evtimer_del(pc->timer);
	pc->armed_ms = 0;
	pc->state = PG_UP;
	pc->backoff_ms = PG_BACKOFF_MIN_MS;
	if (pc->on_up)
		pc->on_up(pc, pc->arg);
}

/* Acts on what PQconnectPoll asked for: wait on the socket, or finish. */
static void connect_step(pg_conn *pc, PostgresPollingStatusType st)
{
	short what;
	switch (st) {
	case PGRES_POLLING_OK: went_up(pc); return;
	case PGRES_POLLING_READING: what = EV_READ; break;
	case PGRES_POLLING_WRITING:
	case PGRES_POLLING_ACTIVE: what = EV_WRITE; break;
	default: lose(pc, "connection lost", PQerrorMessage(pc->conn)); return;
	}
	int fd = PQsocket(pc->conn);
	if (fd < 0 || use_fd(pc, fd) < 0 ||
	    event_add(what == EV_READ ? pc->ev_read : pc->ev_write, NULL) < 0)
		lose(pc, "connection lost", "cannot watch the socket");
}

/*
 * Starts an attempt. PQconnectStart does not wait for the server, but it
 * resolves a host name with the blocking getaddrinfo(): a conninfo meant
 * for the event loop names an address (host=IP or hostaddr=).
 */
static void start_connect(pg_conn *pc)
{
	pc->conn = PQconnectStart(pc->conninfo);
	if (!pc->conn) {
		lose(pc, "connection lost", "out of memory");
		return;
	}
	PQsetNoticeProcessor(pc->conn, ignore_notice, NULL); /* leaf modules never log */
	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		lose(pc, "connection lost", PQerrorMessage(pc->conn));
		return;
	}
	pc->state = PG_CONNECTING;
	timer_ms(pc, pc->timeout_ms); /* libpq's connect_timeout is for blocking connects */
	connect_step(pc, PGRES_POLLING_WRITING);
}

static void on_up_io(pg_conn *pc, short what)
{
	if ((what & EV_READ) && !PQconsumeInput(pc->conn)) {
		lose_conn(pc);
		return;
	}
	if ((pc->flags & PG_F_WRITING) && flush(pc) < 0)
		return;
	pump(pc);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	pg_conn *pc = arg;
	(void)fd;
	pc->depth++;
	if (pc->state == PG_CONNECTING) {
		event_del(pc->ev_read);
		event_del(pc->ev_write);
		connect_step(pc, PQconnectPoll(pc->conn));
	} else if (pc->state == PG_UP) {
		on_up_io(pc, what);
	}
	leave(pc);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	pg_conn *pc = arg;
	(void)fd;
	(void)what;
	pc->depth++;
	pc->armed_ms = 0;
	if (pc->state == PG_DOWN) {
		start_connect(pc);
	} else if (pc->state == PG_CONNECTING) {
		lose(pc, "connection lost", "connect timeout");
	} else if (pc->inflight.head && pc->inflight.head->deadline_ms <= clock_mono_ms()) {
		lose(pc, "timeout", "timeout");
	} else {
		arm_deadline(pc);
	}
	leave(pc);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	pg_conn *pc = arg;
	(void)fd;
	(void)what;
	pc->depth++;
	if (pc->state == PG_UP)
		send_queued(pc);
	else
		fail_all(pc, "not connected"); /* inflight is empty when not UP */
	leave(pc);
}

pg_conn *pg_conn_create(struct event_base *base, const pg_conn_opts *opts)
{
	pg_conn *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->base = base;
	pc->fd = -1;
	pc->state = PG_DOWN;
	pc->backoff_ms = PG_BACKOFF_MIN_MS;
	pc->max_batches = 1 + (opts->max_queued ? opts->max_queued : PG_DEFAULT_QUEUED);
	pc->timeout_ms = opts->timeout_ms ? opts->timeout_ms : PG_DEFAULT_TIMEOUT;
	pc->on_up = opts->on_up;
	pc->on_down = opts->on_down;
	pc->arg = opts->arg;
	pc->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
	pc->timer = evtimer_new(base, on_timer, pc);
	pc->kick = event_new(base, -1, 0, on_kick, pc);
	if (!pc->conninfo || !pc->timer || !pc->kick) {
		if (pc->timer)
			event_free(pc->timer);
		if (pc->kick)
			event_free(pc->kick);
		free(pc->conninfo);
		free(pc);
		return NULL;
	}
	/* The first attempt starts from the loop, so that on_down never runs
	 * before the caller has the pointer. */
	timer_ms(pc, 0);
	return pc;
}

void pg_conn_destroy(pg_conn *pc)
{
	if (!pc || (pc->flags & PG_F_CLOSING))
		return;
	pc->flags |= PG_F_CLOSING;
	if (pc->depth == 0)
		conn_free(pc);
}

int pg_conn_up(const pg_conn *pc)
{
	return pc->state == PG_UP && !(pc->flags & PG_F_CLOSING);
}

pg_batch *pg_batch_begin(pg_conn *pc)
{
	if (!pg_conn_up(pc) || pc->nbatches >= pc->max_batches)
		return NULL;
	pg_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->pc = pc;
	b->next = pc->open;
	if (pc->open)
		pc->open->prev = b;
	pc->open = b;
	pc->nbatches++;
	return b;
}

/* Copies a statement into one allocation: values[], then sql (unless it is
 * a prepared statement's, which the caller keeps), then the parameter
 * strings. */
static int query_copy(pg_query *q, const char *sql, int nparams, const char *const *values)
{
	size_t sqllen = q->prepared ? 0 : strlen(sql) + 1;
	size_t size = (size_t)nparams * sizeof(char *) + sqllen;
	for (int i = 0; i < nparams; i++)
		if (values[i])
			size += strlen(values[i]) + 1;
	const char **v = malloc(size ? size : 1); /* a prepared statement may have nothing */
	if (!v)
		return -1;
	char *p = (char *)(v + nparams);
	q->sql = sql;
	if (sqllen) {
		memcpy(p, sql, sqllen);
		q->sql = p;
		p += sqllen;
	}
	for (int i = 0; i < nparams; i++) {
		v[i] = NULL;
		if (values[i]) {
			size_t len = strlen(values[i]) + 1;
			memcpy(p, values[i], len);
			v[i] = p;
			p += len;
		}
	}
	q->values = v;
	q->nparams = nparams;
	return 0;
}

/* Marks a batch that cannot be sent: it will end with ok = 0 and err. */
static int batch_broken(pg_batch *b, const char *err)
{
	note_error(b, err);
	b->flags |= PG_B_BROKEN;
	return -1;
}

static int batch_add(pg_batch *b, int prepared, const char *sql, int nparams,
                     const char *const *values, pg_result_fn *cb, void *arg)
{
	if (b->flags & PG_B_BROKEN)
		return -1;
	if (!sql || nparams < 0 || nparams > PG_MAX_PARAMS || (nparams > 0 && !values))
		return batch_broken(b, "invalid statement");
	if (b->n == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : 8;
		pg_query *grown = cap > b->cap ? realloc(b->q, cap * sizeof(*grown)) : NULL;
		if (!grown)
			return batch_broken(b, "out of memory");
		b->q = grown;
		b->cap = cap;
	}
	pg_query *q = &b->q[b->n];
	q->prepared = prepared;
	if (query_copy(q, sql, nparams, values) < 0)
		return batch_broken(b, "out of memory");
	q->cb = cb;
	q->arg = arg;
	b->n++;
	return 0;
}

int pg_batch_add(pg_batch *b, const char *sql, int nparams, const char *const *values,
                 pg_result_fn *cb, void *arg)
{
	return batch_add(b, 0, sql, nparams, values, cb, arg);
}

int pg_batch_add_prepared(pg_batch *b, const char *sql, int nparams, const char *const *values,
                          pg_result_fn *cb, void *arg)
{
	return batch_add(b, 1, sql, nparams, values, cb, arg);
}

void pg_batch_commit(pg_batch *b, pg_done_fn *done, void *arg)
{
	pg_conn *pc = b->pc;
	open_unlink(pc, b);
	b->done = done;
	b->done_arg = arg;
	b->deadline_ms = clock_mono_ms() + pc->timeout_ms;
	fifo_push(&pc->sendq, b);
	/* Closing: conn_free, pending on the stack, ends it. */
	if (!(pc->flags & PG_F_CLOSING))
		event_active(pc->kick, 0, 0);
}

int pg_url_normalize(char *url)
{
	if (strncmp(url, "sqlite", 6) == 0)
		return -1;
	char *sep = strstr(url, "://");
	char *plus = sep ? memchr(url, '+', (size_t)(sep - url)) : NULL;
	if (plus && strncmp(url, "postgres", 8) == 0)
		memmove(plus, sep, strlen(sep) + 1);
	return 0;
}
