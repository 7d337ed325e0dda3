/*
 * tidings-worker: consumes the ingress shards it holds leases on,
 * authorises each event against Postgres, applies a batch's effects in one
 * transaction, publishes the fan-out to the gateways holding members of
 * each target room, then acknowledges. One single-threaded libevent loop;
 * run several for throughput and failover.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "fanout.h"
#include "wk.h"
#include "ydoc.h"

wk_state wk;

uint64_t wk_now(void)
{
	return clock_mono_ms();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	static uint64_t last_lease;
	uint64_t now = wk_now();
	if (now - last_lease >= (uint64_t)wk.cfg.lease_ms / 3) {
		last_lease = now;
		shards_tick();
	}
	shards_retry();
	shards_pump();
	ydoc_tick();
	if (wk.draining && !wk.batch_busy) {
		shards_release_all();
		/* One more turn to flush the releases, then stop. */
		if (wk.draining++ > 3)
			event_base_loopbreak(wk.base);
	}
}

static void redis_up(redis_conn *rc, void *arg)
{
	log_info("redis %s connection up", (const char *)arg);
	shards_tick();
	shards_pump();
}

static void redis_down(redis_conn *rc, const char *err, void *arg)
{
	log_warn("redis %s connection down: %s", (const char *)arg, err ? err : "closed");
	if (rc == wk.blk)
		wk.reading = 0;
}

static void toast_set(void *arg, int ok, const char *err)
{
	if (!ok)
		log_warn("database: default_toast_compression=%s refused, chats are compressed as "
		         "the server's default: %s",
		         wk.cfg.toast_compression, err ? err : "?");
}

/*
 * Every persisted update rewrites its chat, a JSON value of kilobytes that
 * Postgres compresses as it stores it: with pglz, the server's default,
 * that was 7 % of the database's time under S4 (docs/performance.md). lz4
 * is cheaper and transparent to whoever reads the row; the setting is the
 * session's, so it touches only what the worker writes. A server without
 * lz4 (or before 14) refuses it in a transaction of its own, and the
 * worker goes on with the server's default.
 */
static void pg_up(pg_conn *pc, void *arg)
{
	log_info("database connection up");
	if (*wk.cfg.toast_compression) {
		pg_batch *b = pg_batch_begin(pc);
		const char *v[] = {wk.cfg.toast_compression};
		if (b) {
			pg_batch_add(b, "SELECT set_config('default_toast_compression', $1, false)",
			             1, v, NULL, NULL);
			pg_batch_commit(b, toast_set, NULL);
		}
	}
	shards_pump();
}

static void pg_down(pg_conn *pc, const char *err, void *arg)
{
	log_warn("database connection down: %s", err ? err : "closed");
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	if (!wk.draining) {
		log_info("signal %d: finishing the current batch and releasing shards", (int)sig);
		wk.draining = 1;
	}
}

int main(int argc, char **argv)
{
	char err[512];
	int rc = wsettings_load(&wk.cfg, argc, argv, err, sizeof(err));
	if (rc == 1) {
		config_help(wsettings_table,
		            "usage: tidings-worker [--option=value ...]\n"
		            "Worker of Tidings: applies client events and producer emits.",
		            stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "tidings-worker: %s\n", err);
		return 2;
	}
	if (!*wk.cfg.database_url) {
		fprintf(stderr, "tidings-worker: DATABASE_URL is not set\n");
		return 2;
	}
	if (pg_url_normalize(wk.cfg.database_url) < 0) {
		fprintf(stderr,
		        "tidings-worker: DATABASE_URL names SQLite; Tidings needs PostgreSQL\n");
		return 2;
	}
	log_init(log_level_parse(wk.cfg.log_level),
	         strcmp(wk.cfg.log_format, "text") == 0 ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON,
	         "worker");
	signal(SIGPIPE, SIG_IGN);
	wk.base = event_base_new();
	shards_init();
	redis_conn_opts ro = {wk.cfg.redis_url, "command", 5000, redis_up, redis_down, "command"};
	wk.rc = redis_conn_create(wk.base, &ro);
	redis_conn_opts bo = {wk.cfg.redis_url, "read",     (uint64_t)wk.cfg.block_ms + 5000,
	                      redis_up,         redis_down, "read"};
	wk.blk = redis_conn_create(wk.base, &bo);
	if (!wk.rc || !wk.blk) {
		char red[512];
		fprintf(stderr, "tidings-worker: bad Redis URL '%s'\n",
		        redis_url_redacted(wk.cfg.redis_url, red, sizeof(red)));
		return 2;
	}
	pg_conn_opts po = {wk.cfg.database_url, "database", 0, 30000, pg_up, pg_down, NULL};
	wk.pg = pg_conn_create(wk.base, &po);
	admin_start();
	struct event *tick = event_new(wk.base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 100000};
	event_add(tick, &tv);
	struct event *sigterm = evsignal_new(wk.base, SIGTERM, on_term, NULL);
	struct event *sigint = evsignal_new(wk.base, SIGINT, on_term, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	char redbuf[512];
	log_info("worker %s: %lld shards, lease %lld ms, redis %s", wk.cfg.worker_id,
	         (long long)wk.cfg.shards, (long long)wk.cfg.lease_ms,
	         redis_url_redacted(wk.cfg.redis_url, redbuf, sizeof(redbuf)));
	event_base_dispatch(wk.base);
	log_info("worker %s stopped (%llu entries, %llu batches, %llu failed attempts)",
	         wk.cfg.worker_id, (unsigned long long)wk.m.entries,
	         (unsigned long long)wk.m.batches, (unsigned long long)wk.m.batch_failures);
	return 0;
}
