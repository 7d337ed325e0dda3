/*
 * Tests common/pg.c against a private PostgreSQL 15 cluster started here.
 *
 * The cluster lives in a temporary directory owned by the postgres user
 * (Postgres refuses to run as root). A reaper process starts it, so the
 * postmaster's PID is known exactly, and stops it by that PID and removes
 * the directory as soon as the test process's end of a pipe closes: on
 * success, on a failed assertion, and on an ASan abort alike. Every wait
 * runs the event loop in slices bounded by event_base_loopexit.
 */
#include "common/pg.h"
#include "common/clock.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "pgcluster.h"

static struct event_base *base;

/* ---- the cluster ---- */

/* ---- loop helpers and recorders ---- */

typedef int cond_fn(const void *arg);

typedef struct waiter {
	cond_fn *cond;
	const void *arg;
} waiter;

static void check_cond(evutil_socket_t fd, short what, void *arg)
{
	const waiter *w = arg;
	(void)fd;
	(void)what;
	if (w->cond(w->arg))
		event_base_loopbreak(base);
}

/* Runs the loop until cond holds (checked every millisecond) or ms pass. */
static int wait_for(cond_fn *cond, const void *arg, int ms)
{
	if (cond(arg))
		return 1;
	waiter w = {cond, arg};
	struct event *ev = event_new(base, -1, EV_PERSIST, check_cond, &w);
	struct timeval tick = {0, 1000}, limit = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	event_add(ev, &tick);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	event_free(ev);
	/* A loopbreak leaves the loopexit timer armed: clear it. */
	event_base_loopexit(base, &(struct timeval){0, 0});
	event_base_loop(base, EVLOOP_NONBLOCK);
	return cond(arg);
}

static int never(const void *arg)
{
	(void)arg;
	return 0;
}

static void run_for(int ms)
{
	wait_for(never, NULL, ms);
}

static int is_up(const void *arg)
{
	return pg_conn_up(arg);
}

typedef struct conn_rec {
	int ups, downs;
	char last_down[256];
} conn_rec;

static void rec_up(pg_conn *pc, void *arg)
{
	(void)pc;
	((conn_rec *)arg)->ups++;
}

static void rec_down(pg_conn *pc, const char *err, void *arg)
{
	conn_rec *r = arg;
	(void)pc;
	r->downs++;
	snprintf(r->last_down, sizeof(r->last_down), "%s", err ? err : "(null)");
}

static int done_seq, query_seq;

typedef struct done_rec {
	int called, ok, seq, err_null;
	char err[256];
	uint64_t at_ms;
	pg_conn *destroy; /* destroyed from inside the callback when set */
} done_rec;

static void rec_done(void *arg, int ok, const char *err)
{
	done_rec *d = arg;
	d->called++;
	d->ok = ok;
	d->seq = ++done_seq;
	d->err_null = err == NULL;
	d->at_ms = clock_mono_ms();
	snprintf(d->err, sizeof(d->err), "%s", err ? err : "");
	if (d->destroy)
		pg_conn_destroy(d->destroy);
}

static int done_called(const void *arg)
{
	return ((const done_rec *)arg)->called > 0;
}

typedef struct all_done {
	const done_rec *d;
	int n;
} all_done;

static int all_called(const void *arg)
{
	const all_done *a = arg;
	for (int i = 0; i < a->n; i++)
		if (!a->d[i].called)
			return 0;
	return 1;
}

typedef struct query_rec {
	int called, was_null, seq, isnull;
	ExecStatusType st;
	char val[256];
} query_rec;

static void rec_query(void *arg, const PGresult *res)
{
	query_rec *q = arg;
	q->called++;
	q->seq = ++query_seq;
	q->was_null = res == NULL;
	if (!res)
		return;
	q->st = PQresultStatus(res);
	if (q->st == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0) {
		q->isnull = PQgetisnull(res, 0, 0);
		snprintf(q->val, sizeof(q->val), "%s", PQgetvalue(res, 0, 0));
	}
}

static pg_conn *connect_new(conn_rec *r, const char *ci, uint64_t timeout_ms, uint32_t max_queued)
{
	memset(r, 0, sizeof(*r));
	pg_conn_opts o = {.conninfo = ci,
	                  .name = "test",
	                  .max_queued = max_queued,
	                  .timeout_ms = timeout_ms,
	                  .on_up = rec_up,
	                  .on_down = rec_down,
	                  .arg = r};
	return pg_conn_create(base, &o);
}

/* Runs one statement in its own batch and waits; 1 when it committed. */
static int run_one(pg_conn *pc, const char *sql, int nparams, const char *const *values,
                   query_rec *q)
{
	done_rec d = {0};
	memset(q, 0, sizeof(*q));
	pg_batch *b = pg_batch_begin(pc);
	if (!b)
		return 0;
	pg_batch_add(b, sql, nparams, values, rec_query, q);
	pg_batch_commit(b, rec_done, &d);
	return wait_for(done_called, &d, 10000) && d.ok;
}

/* The first line of a message, for a one-line TAP description. */
static const char *line1(const char *s)
{
	static char buf[4][160];
	static int next;
	char *b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "%.*s", (int)strcspn(s, "\n"), s);
	return b;
}

static void diag_ms(const char *what, uint64_t ms)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "%s: %llu ms", what, (unsigned long long)ms);
	tap_diag(buf);
}

/* ---- the cases ---- */

static pg_conn *pc;
static conn_rec crec;

static void test_connect(void)
{
	uint64_t t0 = clock_mono_ms();
	pc = connect_new(&crec, conninfo, 0, 0);
	ok(pc != NULL, "create");
	ok(!pg_conn_up(pc), "not up before the loop ran");
	ok(pg_batch_begin(pc) == NULL, "begin refused while not up");
	ok(wait_for(is_up, pc, 10000), "connects");
	is_int(crec.ups, 1, "on_up ran once");
	is_int(crec.downs, 0, "on_down did not run");
	diag_ms("connect", clock_mono_ms() - t0);

	query_rec q;
	ok(run_one(pc, "CREATE TABLE t (id int PRIMARY KEY, v text)", 0, NULL, &q), "create table");
	is_int(q.st, PGRES_COMMAND_OK, "create table result");
}

/* The first host refuses; libpq moves to the second on a new socket. */
static void test_socket_change(void)
{
	char ci[256];
	conn_rec r;
	snprintf(ci, sizeof(ci),
	         "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres", free_port(),
	         port);
	pg_conn *c = connect_new(&r, ci, 0, 0);
	ok(wait_for(is_up, c, 10000), "connects through the second host");
	query_rec q;
	ok(run_one(c, "SELECT 42", 0, NULL, &q), "and runs a batch");
	is_str(q.val, "42", "result");
	pg_conn_destroy(c);
}

static int destroyed;

static void destroy_on_down(pg_conn *c, const char *err, void *arg)
{
	(void)err;
	(*(int *)arg)++;
	pg_conn_destroy(c);
}

static void test_refused(void)
{
	char ci[256];
	conn_rec r;
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=postgres dbname=postgres",
	         free_port());
	uint64_t t0 = clock_mono_ms();
	pg_conn *c = connect_new(&r, ci, 0, 0);
	run_for(400); /* attempts at 0, 100, 300 ms */
	ok(r.downs >= 2 && r.downs <= 4, "attempts back off (%d in 400 ms)", r.downs);
	ok(strstr(r.last_down, "refused") != NULL, "on_down says why: %s", line1(r.last_down));
	is_int(r.ups, 0, "never up");
	ok(pg_batch_begin(c) == NULL, "begin refused");
	pg_conn_destroy(c);
	diag_ms("refused case", clock_mono_ms() - t0);

	/* Destroyed from inside on_down: freed once the callback returned. */
	pg_conn_opts o = {.conninfo = ci, .on_down = destroy_on_down, .arg = &destroyed};
	destroyed = 0;
	pg_conn_create(base, &o);
	run_for(50);
	is_int(destroyed, 1, "destroy inside on_down");
}

#define NINS 1000

static void test_thousand_inserts(void)
{
	static query_rec q[NINS];
	char ids[NINS][12];
	done_rec d = {0};
	uint64_t t0 = clock_mono_ms();
	pg_batch *b = pg_batch_begin(pc);
	ok(b != NULL, "begin");
	query_seq = 0;
	memset(q, 0, sizeof(q));
	for (int i = 0; i < NINS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", i + 1);
		const char *v[] = {ids[i]};
		if (pg_batch_add(b, "INSERT INTO t (id, v) VALUES ($1, 'x')", 1, v, rec_query,
		                 &q[i]) < 0)
			break;
	}
	memset(ids, 0, sizeof(ids)); /* the batch holds its own copies */
	pg_batch_commit(b, rec_done, &d);
	ok(wait_for(done_called, &d, 20000), "batch of %d inserts ends", NINS);
	ok(d.ok && d.err_null, "committed (err %s)", d.err);
	int in_order = 1, once = 1, status_ok = 1;
	for (int i = 0; i < NINS; i++) {
		in_order &= q[i].seq == i + 1;
		once &= q[i].called == 1;
		status_ok &= !q[i].was_null && q[i].st == PGRES_COMMAND_OK;
	}
	ok(once, "every statement callback ran once");
	ok(in_order, "in statement order");
	ok(status_ok, "each with PGRES_COMMAND_OK");
	diag_ms("1000-insert batch", clock_mono_ms() - t0);

	query_rec c;
	ok(run_one(pc, "SELECT count(*) FROM t", 0, NULL, &c), "count");
	is_str(c.val, "1000", "1000 rows");
}

static void test_failing_statement(void)
{
	query_rec q[4], good, c;
	done_rec d = {0}, d2 = {0};
	const char *ids[] = {"2001", "2002", "5", "2003"};
	pg_batch *b = pg_batch_begin(pc);
	memset(q, 0, sizeof(q));
	for (int i = 0; i < 4; i++)
		pg_batch_add(b, "INSERT INTO t (id) VALUES ($1)", 1, &ids[i], rec_query, &q[i]);
	pg_batch_commit(b, rec_done, &d);
	/* Pipelined right behind the failing one: must not inherit its abort. */
	pg_batch *b2 = pg_batch_begin(pc);
	const char *id2[] = {"3001"};
	memset(&good, 0, sizeof(good));
	pg_batch_add(b2, "INSERT INTO t (id) VALUES ($1)", 1, id2, rec_query, &good);
	pg_batch_commit(b2, rec_done, &d2);

	ok(wait_for(done_called, &d2, 10000), "both batches end");
	is_int(d.called, 1, "failing batch: done once");
	is_int(d.ok, 0, "failing batch: ok = 0");
	ok(strstr(d.err, "duplicate key") != NULL, "first error message: %s", line1(d.err));
	ok(d.err[strlen(d.err) - 1] != '\n', "message trimmed");
	ok(q[0].st == PGRES_COMMAND_OK && q[1].st == PGRES_COMMAND_OK, "earlier statements ran");
	ok(!q[2].was_null && q[2].st == PGRES_FATAL_ERROR, "failing statement gets its error");
	ok(q[3].called == 1 && q[3].was_null, "later statement gets NULL");
	ok(d2.ok && good.st == PGRES_COMMAND_OK, "next batch in the pipeline commits (%s)", d2.err);
	ok(d.seq < d2.seq, "done callbacks in order");

	ok(run_one(pc, "SELECT count(*) FROM t WHERE id BETWEEN 2001 AND 2003", 0, NULL, &c),
	   "count after failure");
	is_str(c.val, "0", "earlier inserts rolled back");
	ok(run_one(pc, "SELECT count(*) FROM t WHERE id = 3001", 0, NULL, &c), "count");
	is_str(c.val, "1", "next batch's insert is there");
}

#define NPIPE 50

static done_rec *chain_d;

static int submit_insert(int id, done_rec *d, pg_done_fn *done)
{
	char idstr[12];
	snprintf(idstr, sizeof(idstr), "%d", id);
	const char *v[] = {idstr};
	pg_batch *b = pg_batch_begin(pc);
	if (!b)
		return -1;
	pg_batch_add(b, "INSERT INTO t (id, v) VALUES ($1, 'p')", 1, v, NULL, NULL);
	pg_batch_add(b, "SELECT $1::int", 1, v, NULL, NULL);
	pg_batch_commit(b, done, d);
	return 0;
}

/* Submits the next batch of the chain from the previous one's callback. */
static void chain_done(void *arg, int ok, const char *err)
{
	rec_done(arg, ok, err);
	int i = (int)((done_rec *)arg - chain_d) + 1;
	if (i < NPIPE)
		submit_insert(5000 + i, &chain_d[i], chain_done);
}

static void test_pipelined(void)
{
	static done_rec d[NPIPE], s[NPIPE];
	memset(d, 0, sizeof(d));
	memset(s, 0, sizeof(s));
	uint64_t t0 = clock_mono_us();
	for (int i = 0; i < NPIPE; i++)
		submit_insert(4000 + i, &d[i], rec_done);
	all_done a = {d, NPIPE};
	ok(wait_for(all_called, &a, 20000), "%d batches submitted back to back end", NPIPE);
	uint64_t tp = clock_mono_us() - t0;
	int ok_all = 1, in_order = 1;
	for (int i = 0; i < NPIPE; i++) {
		ok_all &= d[i].called == 1 && d[i].ok;
		in_order &= i == 0 || d[i].seq == d[i - 1].seq + 1;
	}
	ok(ok_all, "all commit");
	ok(in_order, "done callbacks in submission order");

	chain_d = s;
	t0 = clock_mono_us();
	submit_insert(5000, &s[0], chain_done);
	all_done c = {s, NPIPE};
	ok(wait_for(all_called, &c, 20000), "%d batches one after another end", NPIPE);
	uint64_t ts = clock_mono_us() - t0;
	char buf[160];
	snprintf(buf, sizeof(buf), "50 batches: pipelined %llu us, one after another %llu us",
	         (unsigned long long)tp, (unsigned long long)ts);
	tap_diag(buf);

	query_rec q;
	ok(run_one(pc, "SELECT count(*) FROM t WHERE v = 'p'", 0, NULL, &q), "count");
	is_str(q.val, "100", "all rows there");
}

/* Statement errors other than constraints, and a batch broken while built. */
static void test_other_failures(void)
{
	done_rec d[3] = {{0}};
	query_rec q;
	pg_batch *b = pg_batch_begin(pc);
	memset(&q, 0, sizeof(q));
	pg_batch_add(b, "SELEC 1", 0, NULL, rec_query, &q);
	pg_batch_commit(b, rec_done, &d[0]);
	b = pg_batch_begin(pc);
	pg_batch_add(b, "SELECT 1", 0, NULL, NULL, NULL);
	is_int(pg_batch_add(b, "SELECT $1", 1, NULL, NULL, NULL), -1, "add without values: -1");
	is_int(pg_batch_add(b, "SELECT 2", 0, NULL, NULL, NULL), -1, "then the batch refuses more");
	pg_batch_commit(b, rec_done, &d[1]);
	b = pg_batch_begin(pc);
	pg_batch_add(b, "SELECT 3", 0, NULL, NULL, NULL);
	pg_batch_commit(b, rec_done, &d[2]);
	all_done a = {d, 3};
	ok(wait_for(all_called, &a, 10000), "three batches end");
	ok(!d[0].ok && strstr(d[0].err, "syntax error"), "syntax error: %s", line1(d[0].err));
	ok(!q.was_null && q.st == PGRES_FATAL_ERROR, "its statement gets the error result");
	ok(!d[1].ok && strcmp(d[1].err, "invalid statement") == 0, "broken batch: %s", d[1].err);
	ok(d[2].ok, "the next one commits");
	ok(d[0].seq < d[1].seq && d[1].seq < d[2].seq, "in submission order");
}

static void test_queue_limit(void)
{
	conn_rec r;
	pg_conn *c = connect_new(&r, conninfo, 0, 3);
	wait_for(is_up, c, 10000);
	pg_batch *b[5];
	done_rec d[4] = {{0}};
	for (int i = 0; i < 5; i++)
		b[i] = pg_batch_begin(c);
	ok(b[0] && b[1] && b[2] && b[3], "running + max_queued (3) batches begin");
	ok(b[4] == NULL, "the next is refused");
	for (int i = 0; i < 4; i++)
		pg_batch_commit(b[i], rec_done, &d[i]);
	all_done a = {d, 4};
	ok(wait_for(all_called, &a, 10000) && d[0].ok && d[3].ok, "empty batches commit");
	ok(pg_batch_begin(c) != NULL, "room again");
	pg_conn_destroy(c); /* with that one open: freed, no callback */
}

static void test_params(void)
{
	static const char *vals[] = {
	    "it's",
	    "back\\slash\\\\",
	    "double \"quote\"",
	    "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
	    "$1",
	    "%s%n",
	    "",
	    "'); DROP TABLE t; --",
	    "\\x00 E'\\n'",
	    NULL,
	};
	enum { N = sizeof(vals) / sizeof(vals[0]) };
	char ids[N][12];
	query_rec q[N];
	done_rec d = {0}, d2 = {0};
	pg_batch *b = pg_batch_begin(pc);
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%d", 6000 + i);
		const char *v[] = {ids[i], vals[i]};
		pg_batch_add(b, "INSERT INTO t (id, v) VALUES ($1, $2)", 2, v, NULL, NULL);
	}
	pg_batch_commit(b, rec_done, &d);
	b = pg_batch_begin(pc);
	memset(q, 0, sizeof(q));
	for (int i = 0; i < N; i++) {
		const char *v[] = {ids[i]};
		pg_batch_add(b, "SELECT v FROM t WHERE id = $1", 1, v, rec_query, &q[i]);
	}
	pg_batch_commit(b, rec_done, &d2);
	/* Larger than the socket buffers: PQflush has to wait for EV_WRITE. */
	size_t big_len = 8u << 20;
	char *big = malloc(big_len + 1);
	memset(big, 'a', big_len);
	big[big_len] = '\0';
	const char *bv[] = {big};
	query_rec bq = {0};
	done_rec bd = {0};
	b = pg_batch_begin(pc);
	pg_batch_add(b, "SELECT length($1)", 1, bv, rec_query, &bq);
	pg_batch_commit(b, rec_done, &bd);
	free(big);
	ok(wait_for(done_called, &d2, 10000) && d.ok && d2.ok, "insert and read back");
	ok(wait_for(done_called, &bd, 10000) && bd.ok, "8 MB parameter");
	is_str(bq.val, "8388608", "its length");
	for (int i = 0; i < N; i++) {
		if (vals[i])
			is_str(q[i].val, vals[i], "stored verbatim: %s", vals[i]);
		else
			ok(q[i].isnull, "NULL value is SQL NULL");
	}
}

static void test_timeout(void)
{
	conn_rec r;
	pg_conn *c = connect_new(&r, conninfo, 500, 0);
	ok(wait_for(is_up, c, 10000), "second connection up (timeout_ms 500)");
	query_rec q;
	done_rec d = {0};
	signal_cluster(pm_pid, SIGSTOP);
	uint64_t t0 = clock_mono_ms();
	pg_batch *b = pg_batch_begin(c);
	memset(&q, 0, sizeof(q));
	pg_batch_add(b, "SELECT 1", 0, NULL, rec_query, &q);
	pg_batch_commit(b, rec_done, &d);
	ok(wait_for(done_called, &d, 5000), "batch ends while the server is stopped");
	uint64_t took = d.at_ms - t0;
	ok(!d.ok, "ok = 0");
	is_str(d.err, "timeout", "err");
	ok(q.called == 1 && q.was_null, "statement callback got NULL");
	ok(took >= 450 && took < 2000, "after about timeout_ms (%llu ms)",
	   (unsigned long long)took);
	ok(r.downs >= 1 && strcmp(r.last_down, "timeout") == 0, "on_down: %s", r.last_down);
	run_for(1000); /* connect attempts time out against the stopped server */
	ok(!pg_conn_up(c), "still down while stopped (%d on_down)", r.downs);
	signal_cluster(pm_pid, SIGCONT);
	uint64_t t1 = clock_mono_ms();
	ok(wait_for(is_up, c, 15000), "reconnects after SIGCONT");
	diag_ms("reconnect after SIGCONT", clock_mono_ms() - t1);
	ok(run_one(c, "SELECT 2", 0, NULL, &q), "and runs a batch");
	is_str(q.val, "2", "result");

	/* Destroy from inside a done callback: the rest still end, once. */
	done_rec e[3] = {{0}};
	e[0].destroy = c;
	for (int i = 0; i < 3; i++) {
		b = pg_batch_begin(c);
		pg_batch_add(b, i ? "SELECT pg_sleep(2)" : "SELECT 1", 0, NULL, NULL, NULL);
		pg_batch_commit(b, rec_done, &e[i]);
	}
	all_done a = {e, 3};
	ok(wait_for(all_called, &a, 5000), "destroy inside a callback: all batches end");
	ok(e[0].ok && !e[1].ok && !e[2].ok, "first committed, the others failed");
	ok(e[1].called == 1 && e[2].called == 1 && e[1].seq < e[2].seq, "once each, in order");
	is_str(e[1].err, "connection closed", "err");
}

typedef struct killer {
	pg_conn *pc;
	int called;
} killer;

static void destroy_in_query(void *arg, const PGresult *res)
{
	killer *k = arg;
	(void)res;
	k->called++;
	pg_conn_destroy(k->pc);
}

/* Destroyed from inside a statement callback, mid-batch. */
static void test_destroy_in_query(void)
{
	conn_rec r;
	query_rec q[2];
	done_rec d[2] = {{0}};
	pg_conn *c = connect_new(&r, conninfo, 0, 0);
	ok(wait_for(is_up, c, 10000), "up");
	killer k = {c, 0};
	memset(q, 0, sizeof(q));
	pg_batch *b = pg_batch_begin(c);
	pg_batch_add(b, "SELECT 1", 0, NULL, rec_query, &q[0]);
	pg_batch_add(b, "SELECT 2", 0, NULL, destroy_in_query, &k);
	pg_batch_add(b, "SELECT 3", 0, NULL, rec_query, &q[1]);
	pg_batch_commit(b, rec_done, &d[0]);
	b = pg_batch_begin(c);
	pg_batch_commit(b, rec_done, &d[1]);
	all_done a = {d, 2};
	ok(wait_for(all_called, &a, 5000), "both batches end");
	ok(q[0].st == PGRES_TUPLES_OK && k.called == 1, "statements before ran once");
	ok(q[1].called == 1 && q[1].was_null, "the one after got NULL");
	ok(!d[0].ok && !d[1].ok && d[0].called == 1 && d[1].called == 1, "both failed once");
	is_str(d[0].err, "connection closed", "err");
}

static void test_backend_killed(void)
{
	query_rec q, s1, s2;
	ok(run_one(pc, "SELECT pg_backend_pid()", 0, NULL, &q), "backend pid");
	pid_t backend = atoi(q.val);
	int downs = crec.downs, ups = crec.ups;

	done_rec d[2] = {{0}}, late = {0};
	pg_batch *b = pg_batch_begin(pc);
	memset(&s1, 0, sizeof(s1));
	memset(&s2, 0, sizeof(s2));
	pg_batch_add(b, "SELECT pg_sleep(10)", 0, NULL, rec_query, &s1);
	pg_batch_add(b, "SELECT 1", 0, NULL, rec_query, &s2);
	pg_batch_commit(b, rec_done, &d[0]);
	b = pg_batch_begin(pc);
	pg_batch_add(b, "INSERT INTO t (id) VALUES (7001)", 0, NULL, NULL, NULL);
	pg_batch_commit(b, rec_done, &d[1]);
	pg_batch *held = pg_batch_begin(pc); /* committed only after the loss */
	pg_batch_add(held, "INSERT INTO t (id) VALUES (7002)", 0, NULL, NULL, NULL);
	run_for(200);
	ok(backend > 0 && kill(backend, SIGKILL) == 0, "killed backend %d", (int)backend);
	all_done a = {d, 2};
	uint64_t t0 = clock_mono_ms();
	ok(wait_for(all_called, &a, 5000), "in-flight batches end");
	ok(!d[0].ok && !d[1].ok, "with ok = 0");
	is_str(d[0].err, "connection lost", "err");
	ok(s1.was_null && s2.was_null, "statement callbacks got NULL");
	ok(crec.downs == downs + 1, "on_down: %s", line1(crec.last_down));
	ok(!pg_conn_up(pc), "down");
	pg_batch_commit(held, rec_done, &late);
	ok(wait_for(done_called, &late, 2000) && !late.ok, "batch committed while down fails");
	is_str(late.err, "not connected", "err");
	ok(wait_for(is_up, pc, 30000), "back up after crash recovery");
	is_int(crec.ups, ups + 1, "on_up again");
	diag_ms("reconnect after backend kill", clock_mono_ms() - t0);
	ok(run_one(pc, "INSERT INTO t (id) VALUES (7003)", 0, NULL, &q), "new batch works");
	ok(run_one(pc, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t WHERE id > 7000", 0,
	           NULL, &q),
	   "select");
	is_str(q.val, "7003", "only the new batch's row");
}

static void test_destroy_in_flight(void)
{
	done_rec d[4] = {{0}};
	query_rec q[4];
	memset(q, 0, sizeof(q));
	for (int i = 0; i < 4; i++) {
		pg_batch *b = pg_batch_begin(pc);
		pg_batch_add(b, i == 0 ? "SELECT pg_sleep(5)" : "SELECT 1", 0, NULL, rec_query,
		             &q[i]);
		pg_batch_commit(b, rec_done, &d[i]);
	}
	pg_batch *held = pg_batch_begin(pc); /* never committed: freed silently */
	pg_batch_add(held, "SELECT 1", 0, NULL, rec_query, &q[0]);
	run_for(100);
	uint64_t t0 = clock_mono_ms();
	pg_conn_destroy(pc);
	pc = NULL;
	int all = 1, order = 1;
	for (int i = 0; i < 4; i++) {
		all &= d[i].called == 1 && !d[i].ok && q[i].called == 1 && q[i].was_null;
		order &= i == 0 || d[i].seq > d[i - 1].seq;
	}
	ok(all, "destroy: every batch ended once with ok = 0, statements NULL");
	ok(order, "in order");
	is_str(d[0].err, "connection closed", "err");
	ok(clock_mono_ms() - t0 < 100, "destroy did not wait for the server");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int r = cluster_start();
	if (r == 0) {
		printf("1..0 # SKIP needs root, a postgres user and PostgreSQL 15 in %s\n", PGBIN);
		return 0;
	}
	if (r < 0) {
		printf("Bail out! cannot start a Postgres cluster in %s (see %s/server.log)\n", dir,
		       dir);
		cluster_stop();
		return 1;
	}
	base = event_base_new();
	uint64_t t0 = clock_mono_ms();
	test_connect();
	test_socket_change();
	test_refused();
	test_thousand_inserts();
	test_failing_statement();
	test_pipelined();
	test_other_failures();
	test_queue_limit();
	test_params();
	test_timeout();
	test_destroy_in_query();
	test_backend_killed();
	test_destroy_in_flight();
	diag_ms("all cases", clock_mono_ms() - t0);
	event_base_free(base);
	libevent_global_shutdown();
	cluster_stop();
	return tap_done();
}
