/*
 * redis.h - one Redis connection on a libevent loop, as an explicit state
 * machine (DOWN -> CONNECTING -> UP -> DOWN ...), for both processes.
 *
 * It adds to hiredis's async API what a long-lived server needs: parsing
 * of redis:// URLs (password, user, db), AUTH and SELECT on every connect,
 * reconnection with exponential backoff (100 ms doubling to 5 s), and a
 * command timeout: when a reply is overdue the connection is torn down
 * (h2o's rule), which fails every queued command, and is rebuilt.
 *
 * Every command's callback runs exactly once: with the reply, or with
 * reply == NULL when the connection failed or was closed first. A command
 * submitted while the connection is not UP is refused at once (-1) and its
 * callback never runs. Commands are argv-style only: nothing is ever
 * formatted into a command string.
 */
#ifndef TIDINGS_REDIS_H
#define TIDINGS_REDIS_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "slice.h"

typedef struct redis_conn redis_conn;

/* reply is owned by hiredis and valid during the call only; NULL when the
 * command failed without a reply (connection lost, timeout, shutdown). */
typedef void redis_reply_fn(redis_conn *rc, const redisReply *reply, void *arg);

typedef struct redis_conn_opts {
	const char *url;     /* redis://[[user]:password@]host[:port][/db] */
	const char *name;    /* for log lines: "command", "delivery", ... */
	uint64_t timeout_ms; /* a reply later than this tears the connection down; 0: 5000 */
	/* Called each time the connection comes up (once AUTH, SELECT and a
	 * PING were answered) and each time it goes down (err says why); from
	 * the connection's own timer, never from inside hiredis. May be NULL. */
	void (*on_up)(redis_conn *rc, void *arg);
	void (*on_down)(redis_conn *rc, const char *err, void *arg);
	void *arg;
} redis_conn_opts;

/* Copies url to out with any password replaced by "***", for logs. */
const char *redis_url_redacted(const char *url, char *out, size_t cap);

/* Parses a URL; 0 or -1. host/password/user are written NUL-terminated. */
int redis_parse_url(const char *url, char *host, size_t hostcap, int *port, int *db, char *user,
                    size_t usercap, char *password, size_t pwcap);

/* Creates the connection and starts connecting on `base`. The options are
 * copied (strings included). Returns NULL on a bad URL or no memory. */
redis_conn *redis_conn_create(struct event_base *base, const redis_conn_opts *opts);

/* Closes the connection; pending callbacks run with NULL first. */
void redis_conn_destroy(redis_conn *rc);

int redis_conn_up(const redis_conn *rc);

/* Commands sent and not yet answered. */
uint32_t redis_conn_pending(const redis_conn *rc);

/* Queues one command. Returns 0 (cb will run exactly once) or -1 when the
 * connection is not up (cb will not run). cb may be NULL: an error reply is
 * then only counted (redis_conn_errors). */
int redis_cmd(redis_conn *rc, redis_reply_fn *cb, void *arg, int argc, const char *const *argv,
              const size_t *lens);

/* Error replies received for commands sent without a callback. */
uint64_t redis_conn_errors(const redis_conn *rc);

/* An argv under construction: up to REDIS_ARGV_MAX arguments, numbers
 * formatted into the builder's own storage. */
#define REDIS_ARGV_MAX 64
typedef struct redis_argv {
	int n;
	const char *v[REDIS_ARGV_MAX];
	size_t l[REDIS_ARGV_MAX];
	char num[16][24];
	int nnum;
} redis_argv;

static inline void redis_argv_init(redis_argv *a)
{
	a->n = 0;
	a->nnum = 0;
}
void redis_arg(redis_argv *a, const char *p, size_t len);
void redis_arg_str(redis_argv *a, const char *s);
void redis_arg_slice(redis_argv *a, slice s);
void redis_arg_u64(redis_argv *a, uint64_t v);
void redis_arg_i64(redis_argv *a, int64_t v);

static inline int redis_send(redis_conn *rc, redis_reply_fn *cb, void *arg, const redis_argv *a)
{
	return redis_cmd(rc, cb, arg, a->n, a->v, a->l);
}

/* Field lookup in a flat [field, value, field, value...] array reply (as
 * XREAD entries and HGETALL give); SLICE_NULL when absent. */
slice redis_field(const redisReply *kv, const char *name);

#endif
