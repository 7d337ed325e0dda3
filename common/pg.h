/*
 * pg.h - one PostgreSQL connection on a libevent loop: nonblocking libpq
 * in pipeline mode, transactions submitted as batches, reconnection with
 * backoff. Nothing here ever blocks the loop (no PQexec, no synchronous
 * connect).
 *
 * The unit of work is a batch: BEGIN, the queries added to it, COMMIT,
 * then a pipeline sync, all written in one go (pipeline mode) and answered
 * in order. (On the wire: BEGIN, queries, Sync, COMMIT, Sync, so that a
 * failed statement never leaves the session in an aborted transaction for
 * the batches pipelined behind it.) Each query's callback runs with its
 * result (the failing one with its error result); the batch's done
 * callback runs once at the end with ok = 1 when COMMIT succeeded, or
 * ok = 0 with a reason when any statement failed (Postgres then aborted
 * the transaction and skipped the rest: their callbacks run with
 * res == NULL) or the connection was lost or timed out. After a statement
 * failure the batch changed nothing; after a lost connection or a timeout
 * the COMMIT may or may not have happened. Either way the caller may
 * submit it again: effects are made idempotent by the caller (the
 * tidings_event table).
 *
 * Batches are pipelined: one submitted while others are in flight is sent
 * behind them at once (at most 1 + max_queued open, queued or in flight),
 * and done callbacks run in submission order, never from inside
 * pg_batch_commit. Host names in conninfo are resolved with a blocking
 * lookup: give an IP address (or hostaddr=).
 */
#ifndef TIDINGS_PG_H
#define TIDINGS_PG_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdint.h>

typedef struct pg_conn pg_conn;
typedef struct pg_batch pg_batch;

/* res is owned by the library and valid during the call only; NULL when the
 * statement did not run (an earlier one failed, or the connection died). */
typedef void pg_result_fn(void *arg, const PGresult *res);
typedef void pg_done_fn(void *arg, int ok, const char *err);

typedef struct pg_conn_opts {
	const char *conninfo; /* DATABASE_URL: URI or key=value string */
	const char *name;     /* for log lines */
	uint32_t max_queued;  /* batches waiting behind the running one; 0: 64 */
	uint64_t
	    timeout_ms; /* a batch not answered within this tears the connection down; 0: 30000 */
	void (*on_up)(pg_conn *pc, void *arg);
	void (*on_down)(pg_conn *pc, const char *err, void *arg);
	void *arg;
} pg_conn_opts;

/* Open WebUI's DATABASE_URL is a SQLAlchemy URL that may name a driver
 * (postgresql+psycopg://...); libpq knows only postgresql:// and
 * postgres://. Drops the driver in place. Returns 0, or -1 when the URL
 * names SQLite (Tidings needs PostgreSQL). */
int pg_url_normalize(char *url);

/* Creates the connection and starts connecting (PQconnectStart + polling
 * on the loop). Options are copied. NULL on no memory. */
pg_conn *pg_conn_create(struct event_base *base, const pg_conn_opts *opts);

/* Closes; batches in flight or queued end with ok = 0. */
void pg_conn_destroy(pg_conn *pc);

int pg_conn_up(const pg_conn *pc);

/* Starts a batch (a transaction). Returns NULL when the connection is not
 * up or the queue is full: the caller backs off and retries later. */
pg_batch *pg_batch_begin(pg_conn *pc);

/* Adds a parameterised statement (text parameters, NULL value = SQL NULL;
 * the strings are copied). cb may be NULL. Returns 0 or -1 (no memory: the
 * batch will fail). */
int pg_batch_add(pg_batch *b, const char *sql, int nparams, const char *const *values,
                 pg_result_fn *cb, void *arg);

/* As pg_batch_add, for a statement run often: sql must stay valid and
 * unchanged while the connection lives (a string literal), and is
 * prepared once per session (on first use, in the batch that first uses
 * it) and executed by name afterwards, which saves parsing and planning
 * it every time. Its parameter types are inferred from the SQL. At most
 * 32 statements are prepared per session; others run as pg_batch_add's. */
int pg_batch_add_prepared(pg_batch *b, const char *sql, int nparams, const char *const *values,
                          pg_result_fn *cb, void *arg);

/* Closes the batch with COMMIT and sends it; done runs exactly once. */
void pg_batch_commit(pg_batch *b, pg_done_fn *done, void *arg);

#endif
