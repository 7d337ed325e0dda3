/*
 * wk.h - the worker process's one global: loop, settings, connections and
 * shard table. Exists once per process; common/ never sees it.
 */
#ifndef TIDINGS_WK_H
#define TIDINGS_WK_H

#include <event2/event.h>
#include <stdint.h>

#include "common/pg.h"
#include "common/redis.h"
#include "wsettings.h"

#define WK_GROUP "workers"

typedef struct wk_shard {
	int idx;
	char stream[256];
	char lease_key[256];
	uint8_t owned;      /* we hold the lease */
	uint8_t ready;      /* group exists and pending entries were claimed */
	uint8_t setting_up; /* XGROUP CREATE / XAUTOCLAIM in flight */
	uint8_t renewing;
	uint8_t give_back;    /* over the fair share: released once the batch is done */
	uint8_t in_read;      /* named by the XREADGROUP in flight */
	unsigned tried;       /* the last acquisition round that asked for it */
	uint64_t lease_until; /* monotonic ms: stop touching the shard after this */
	char claim_cursor[48];
} wk_shard;

typedef struct wk_metrics {
	uint64_t entries, batches, batch_failures, effects, skipped_duplicates;
	uint64_t deliveries, refused, malformed;
} wk_metrics;

typedef struct wk_state {
	struct event_base *base;
	wsettings cfg;
	redis_conn *rc;  /* commands: leases, fan-out, acks */
	redis_conn *blk; /* blocking XREADGROUP */
	pg_conn *pg;
	wk_shard *shards;
	int owned;
	int reading;    /* an XREADGROUP is in flight */
	int batch_busy; /* a batch is being applied */
	int draining;
	uint64_t retry_at; /* after a failed batch, not before this */
	wk_metrics m;
} wk_state;

extern wk_state wk;

uint64_t wk_now(void);

/* admin.c */
void admin_start(void);

/* shards.c */
void shards_init(void);
void shards_tick(void);
/* Called often (every loop tick): asks again for free shards while below
 * the fair share, every half second. */
void shards_retry(void);
void shards_release_all(void);
/* Starts the next read or setup step if nothing is in flight. */
void shards_pump(void);
/* Sets entry `id` of `shard` aside in P:ingress:parked with the reason,
 * and acknowledges it, so the shard moves on. */
void shards_park(int shard, const char *id, const char *reason);
/* A shard we may process entries of now (lease held and not expired). */
int shard_usable(const wk_shard *s);

#endif
