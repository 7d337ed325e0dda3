/*
 * shards.c - which ingress shards this worker owns, and reading them.
 *
 * Each shard is owned by one worker at a time through a lease key
 * (P:lease:{shard} = worker id, PX lease_ms), renewed every third of the
 * lease. Workers announce themselves in P:workers (a ZSET scored by their
 * last tick) and each aims at its fair share ceil(shards / live workers):
 * a worker over its share releases shards between batches, one under it
 * takes free ones. A new owner first claims everything still pending in
 * the consumer group (XAUTOCLAIM), so the entries a dead worker had read
 * but not acknowledged are applied before anything newer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "common/log.h"
#include "wk.h"

/* Renew only if we still hold it; release likewise. */
static const char renew_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
static const char release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('DEL', KEYS[1]) else return 0 end";

static int live_workers = 1;

int shard_usable(const wk_shard *s)
{
	return s->owned && wk_now() < s->lease_until;
}

void shards_init(void)
{
	wk.shards = calloc((size_t)wk.cfg.shards, sizeof(wk_shard));
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		s->idx = i;
		snprintf(s->stream, sizeof(s->stream), "%s:ingress:%d", wk.cfg.redis_prefix, i);
		snprintf(s->lease_key, sizeof(s->lease_key), "%s:lease:%d", wk.cfg.redis_prefix, i);
	}
}

static void lose(wk_shard *s, const char *why)
{
	if (!s->owned)
		return;
	log_info("shard %d released: %s", s->idx, why);
	s->owned = s->ready = s->setting_up = s->give_back = 0;
	wk.owned--;
}

/* ---- leases ---- */

static void on_renew(redis_conn *rc, const redisReply *r, void *arg)
{
	wk_shard *s = arg;
	s->renewing = 0;
	if (!s->owned)
		return;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
		s->lease_until =
		    wk_now() + (uint64_t)wk.cfg.lease_ms - (uint64_t)wk.cfg.lease_ms / 10;
	else if (r)
		lose(s, "lease taken by another worker");
}

static void acquire(int limit);
static int owned_or_asked(void);
static int share_min(void);

static void on_acquire(redis_conn *rc, const redisReply *r, void *arg)
{
	wk_shard *s = arg;
	s->renewing = 0;
	if (r && r->type == REDIS_REPLY_NIL && !s->owned) {
		/* Held by another worker: while below the share, ask for one not
		 * yet asked this round, rather than wait for the next round. */
		if (owned_or_asked() < share_min())
			acquire(share_min());
		return;
	}
	if (!r || r->type != REDIS_REPLY_STATUS || s->owned)
		return;
	s->owned = 1;
	s->ready = 0;
	strcpy(s->claim_cursor, "0-0");
	s->lease_until = wk_now() + (uint64_t)wk.cfg.lease_ms - (uint64_t)wk.cfg.lease_ms / 10;
	wk.owned++;
	log_info("shard %d acquired (%d owned)", s->idx, wk.owned);
	shards_pump();
}

static void lease_cmd(wk_shard *s, const char *script, redis_reply_fn *cb)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "EVAL");
	redis_arg_str(&a, script);
	redis_arg_str(&a, "1");
	redis_arg_str(&a, s->lease_key);
	redis_arg_str(&a, wk.cfg.worker_id);
	redis_arg_i64(&a, wk.cfg.lease_ms);
	if (redis_send(wk.rc, cb, s, &a) == 0)
		s->renewing = 1;
}

static void rebalance(void);

static void on_count(redis_conn *rc, const redisReply *r, void *arg)
{
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 &&
	    live_workers != (int)r->integer) {
		/* Acted on at once, not at the next tick: a worker that joined or
		 * left would otherwise wait a tick for the count and another for
		 * the shards, seconds in which the shards handed over are read by
		 * nobody. */
		live_workers = (int)r->integer;
		rebalance();
	}
}

/* Announces this worker and counts the live ones (ticked within the last
 * two leases). */
static void announce(void)
{
	char key[300], now[24], old[24];
	snprintf(key, sizeof(key), "%s:workers", wk.cfg.redis_prefix);
	uint64_t t = (uint64_t)time(NULL) * 1000;
	snprintf(now, sizeof(now), "%llu", (unsigned long long)t);
	snprintf(old, sizeof(old), "(%llu",
	         (unsigned long long)(t - 2 * (uint64_t)wk.cfg.lease_ms));
	const char *a1[] = {"ZADD", key, now, wk.cfg.worker_id};
	size_t l1[] = {4, strlen(key), strlen(now), strlen(wk.cfg.worker_id)};
	redis_cmd(wk.rc, NULL, NULL, 4, a1, l1);
	const char *a2[] = {"ZREMRANGEBYSCORE", key, "-inf", old};
	size_t l2[] = {16, strlen(key), 4, strlen(old)};
	redis_cmd(wk.rc, NULL, NULL, 4, a2, l2);
	const char *a3[] = {"ZCARD", key};
	size_t l3[] = {5, strlen(key)};
	redis_cmd(wk.rc, on_count, NULL, 2, a3, l3);
}

/* The fair share: ceil(shards / live workers) is the most a worker keeps,
 * floor(...) the least it works to get quickly (with 3 workers and 16
 * shards, 6/5/5 is settled and nobody keeps asking). */
static int share_max(void)
{
	return wk.draining ? 0 : (int)((wk.cfg.shards + live_workers - 1) / live_workers);
}

static int share_min(void)
{
	return wk.draining ? 0 : (int)(wk.cfg.shards / live_workers);
}

/* Acquisitions in flight count as owned until answered. */
static int owned_or_asked(void)
{
	int n = 0;
	for (int i = 0; i < wk.cfg.shards; i++)
		n += wk.shards[i].owned || wk.shards[i].renewing;
	return n;
}

/* Asks for free shards until `limit` are owned or asked for, each shard at
 * most once per call. The first shard tried moves on every call: always
 * starting at 0, a worker under its share would keep asking for the shards
 * another holds and never reach the ones just given back. */
static unsigned pass; /* acquisition rounds: each shard is asked once per round */

static void acquire(int limit)
{
	static int first_try;
	int owned = owned_or_asked();
	for (int k = 0; k < wk.cfg.shards && owned < limit; k++) {
		int i = (first_try + k) % (int)wk.cfg.shards;
		wk_shard *s = &wk.shards[i];
		if (s->owned || s->renewing || s->tried == pass)
			continue;
		s->tried = pass;
		redis_argv a;
		redis_argv_init(&a);
		redis_arg_str(&a, "SET");
		redis_arg_str(&a, s->lease_key);
		redis_arg_str(&a, wk.cfg.worker_id);
		redis_arg_str(&a, "NX");
		redis_arg_str(&a, "PX");
		redis_arg_i64(&a, wk.cfg.lease_ms);
		if (redis_send(wk.rc, on_acquire, s, &a) == 0) {
			s->renewing = 1;
			owned++;
			first_try = (i + 1) % (int)wk.cfg.shards;
		}
	}
}

/* Over the fair share: give back, but never while a batch may hold
 * entries of the shard, nor while a read in flight names it: its next
 * owner claims what is pending only when it takes the shard over, so an
 * entry delivered to us after that would be stranded. Such a shard is
 * left out of the following reads and handed over when the batch ends
 * (under a steady load there is always one) or at a later tick. Returns
 * how many are kept. */
static int shed(int renew)
{
	int target = share_max(), owned = 0;
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		if (!s->owned || s->renewing)
			continue;
		if (owned >= target) {
			if (!wk.batch_busy && !s->in_read) {
				lease_cmd(s, release_lua, NULL);
				s->renewing = 0;
				lose(s, "rebalancing");
				continue;
			}
			s->give_back = 1;
		}
		owned++;
		if (renew)
			lease_cmd(s, renew_lua, on_renew);
	}
	return owned;
}

static void rebalance(void)
{
	if (!redis_conn_up(wk.rc))
		return;
	shed(0);
	pass++;
	acquire(share_max());
}

void shards_tick(void)
{
	if (!redis_conn_up(wk.rc))
		return;
	announce();
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		if (s->owned && wk_now() >= s->lease_until)
			lose(s, "lease expired before it could be renewed");
	}
	shed(1);
	pass++;
	acquire(share_max());
}

void shards_retry(void)
{
	/* Below the least share, ask again every half second rather than
	 * every tick (a third of the lease): shards given back by a worker
	 * that saw this one join are taken within that. */
	static uint64_t next;
	if (!redis_conn_up(wk.rc) || wk_now() < next || owned_or_asked() >= share_min())
		return;
	next = wk_now() + 500;
	pass++;
	acquire(share_min());
}

void shards_release_all(void)
{
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		if (s->owned) {
			lease_cmd(s, release_lua, NULL);
			lose(s, "shutting down");
		}
	}
}

/* ---- reading ---- */

void shards_park(int shard, const char *id, const char *reason)
{
	const char *stream = wk.shards[shard].stream;
	char pk[300];
	snprintf(pk, sizeof(pk), "%s:ingress:parked", wk.cfg.redis_prefix);
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XADD");
	redis_arg_str(&a, pk);
	redis_arg_str(&a, "MAXLEN");
	redis_arg_str(&a, "~");
	redis_arg_str(&a, "10000");
	redis_arg_str(&a, "*");
	redis_arg_str(&a, "stream");
	redis_arg_str(&a, stream);
	redis_arg_str(&a, "id");
	redis_arg_str(&a, id);
	redis_arg_str(&a, "reason");
	redis_arg_str(&a, reason);
	redis_send(wk.rc, NULL, NULL, &a);
	redis_argv_init(&a);
	redis_arg_str(&a, "XACK");
	redis_arg_str(&a, stream);
	redis_arg_str(&a, WK_GROUP);
	redis_arg_str(&a, id);
	redis_send(wk.rc, NULL, NULL, &a);
}

/* Gives back the shards marked for it, once no batch or read names them. */
static void hand_over(void)
{
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		if (s->owned && s->give_back && !wk.batch_busy && !s->in_read) {
			lease_cmd(s, release_lua, NULL);
			s->renewing = 0; /* a renewal in flight finds the shard lost */
			lose(s, "rebalancing");
		}
	}
}

static void batch_done(void)
{
	wk.batch_busy = 0;
	hand_over();
	shards_pump();
}

/* Turns the entries of one stream ([[id, fields], ...]) into wk_entry
 * records appended to *out. Malformed entries are acked and parked. */
static int collect(wk_shard *s, const redisReply *items, wk_entry **out, int *n, int *cap)
{
	for (size_t i = 0; i < items->elements; i++) {
		const redisReply *it = items->element[i];
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			*out = realloc(*out, (size_t)*cap * sizeof(wk_entry));
		}
		wk_entry *e = &(*out)[*n];
		if (entry_decode(e, s->idx, it) < 0) {
			/* Parked aside for an operator, acknowledged so the shard
			 * lives on. */
			wk.m.malformed++;
			const char *id = it->type == REDIS_REPLY_ARRAY && it->elements == 2 &&
			                         it->element[0]->type == REDIS_REPLY_STRING
			                     ? it->element[0]->str
			                     : NULL;
			log_warn("shard %d: malformed ingress entry %s parked in %s:ingress:parked",
			         s->idx, id ? id : "?", wk.cfg.redis_prefix);
			if (id)
				shards_park(s->idx, id, "malformed entry");
			continue;
		}
		(*n)++;
	}
	return 0;
}

static void run_or_pump(wk_entry *entries, int n)
{
	if (n == 0) {
		free(entries);
		/* An idle worker's read just ended: what it named is free to go
		 * now, not a tick later. */
		hand_over();
		shards_pump();
		return;
	}
	wk.batch_busy = 1;
	wk.m.batches++;
	batch_run(entries, n, batch_done);
}

/*
 * A batch is read in chunks of at most READ_CHUNK entries per shard. One
 * XREADGROUP over 16 shards x 1 024 entries returned ~12 000 entries at
 * S4's load and kept Redis busy for ~25 ms (2 us per entry), while no
 * gateway's XADD or delivery read was served. While a chunk comes back
 * full from some shard, the next one is read at once, without BLOCK, up to
 * TIDINGS_BATCH entries per shard in all: the batch is as large as before
 * and Redis serves the other clients between the chunks.
 */
#define READ_CHUNK 128

static struct {
	wk_entry *entries;
	int n, cap;
	int reads; /* chunks read into it */
} acc;

static int chunk(void)
{
	return wk.cfg.batch < READ_CHUNK ? wk.cfg.batch : READ_CHUNK;
}

static void on_read(redis_conn *rc, const redisReply *r, void *arg);

/* Sends an XREADGROUP over the usable shards, with BLOCK for the first
 * chunk of a batch only. 1 when sent. */
static int send_read(int block)
{
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "XREADGROUP");
	redis_arg_str(&a, "GROUP");
	redis_arg_str(&a, WK_GROUP);
	redis_arg_str(&a, wk.cfg.worker_id);
	redis_arg_str(&a, "COUNT");
	redis_arg_i64(&a, chunk());
	if (block) {
		redis_arg_str(&a, "BLOCK");
		redis_arg_i64(&a, wk.cfg.block_ms);
	}
	redis_arg_str(&a, "STREAMS");
	int ns = 0;
	for (int i = 0; i < wk.cfg.shards && a.n < REDIS_ARGV_MAX / 2 + 4; i++)
		if (shard_usable(&wk.shards[i]) && wk.shards[i].ready && !wk.shards[i].give_back) {
			redis_arg_str(&a, wk.shards[i].stream);
			wk.shards[i].in_read = 1;
			ns++;
		}
	if (ns == 0)
		return 0;
	for (int i = 0; i < ns; i++)
		redis_arg_str(&a, ">");
	if (redis_send(wk.blk, on_read, NULL, &a) == 0) {
		wk.reading = 1;
		return 1;
	}
	for (int i = 0; i < wk.cfg.shards; i++)
		wk.shards[i].in_read = 0;
	return 0;
}

static void on_read(redis_conn *rc, const redisReply *r, void *arg)
{
	wk.reading = 0;
	for (int k = 0; k < wk.cfg.shards; k++)
		wk.shards[k].in_read = 0;
	int full = 0;
	if (r && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			const redisReply *st = r->element[i];
			if (st->type != REDIS_REPLY_ARRAY || st->elements != 2)
				continue;
			for (int k = 0; k < wk.cfg.shards; k++)
				if (strcmp(wk.shards[k].stream, st->element[0]->str) == 0 &&
				    shard_usable(&wk.shards[k])) {
					collect(&wk.shards[k], st->element[1], &acc.entries, &acc.n,
					        &acc.cap);
					full |= st->element[1]->elements >= (size_t)chunk();
				}
		}
	} else if (r && r->type == REDIS_REPLY_ERROR) {
		log_warn("XREADGROUP: %s", r->str);
		/* NOGROUP after a Redis restart: set the shards up again. */
		for (int k = 0; k < wk.cfg.shards; k++)
			wk.shards[k].ready = 0;
	}
	/* While the next chunk is read, the entries so far are a batch in
	 * progress: their shards are not handed over, no other read starts. */
	if (full && !wk.draining && (int64_t)++acc.reads * chunk() < wk.cfg.batch) {
		wk.batch_busy = 1;
		if (send_read(0))
			return;
	}
	wk.batch_busy = 0;
	wk_entry *entries = acc.entries;
	int n = acc.n;
	memset(&acc, 0, sizeof(acc));
	run_or_pump(entries, n);
}

static void on_claim(redis_conn *rc, const redisReply *r, void *arg)
{
	wk_shard *s = arg;
	s->setting_up = 0;
	wk.reading = 0;
	wk_entry *entries = NULL;
	int n = 0, cap = 0;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("shard %d: XAUTOCLAIM: %s", s->idx, r->str);
		shards_pump();
		return;
	}
	snprintf(s->claim_cursor, sizeof(s->claim_cursor), "%s", r->element[0]->str);
	if (shard_usable(s))
		collect(s, r->element[1], &entries, &n, &cap);
	if (strcmp(s->claim_cursor, "0-0") == 0) {
		s->ready = 1;
		if (n)
			log_info("shard %d: took over %d pending entries", s->idx, n);
	}
	run_or_pump(entries, n);
}

static void on_group(redis_conn *rc, const redisReply *r, void *arg)
{
	wk_shard *s = arg;
	s->setting_up = 0;
	if (r && (r->type == REDIS_REPLY_STATUS ||
	          (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0))) {
		strcpy(s->claim_cursor, "0-0");
		s->setting_up = 2; /* group exists: claim next */
	}
	shards_pump();
}

static int setup_step(wk_shard *s)
{
	redis_argv a;
	redis_argv_init(&a);
	if (s->setting_up == 0) {
		/* From 0: entries written before any worker existed are ours too. */
		redis_arg_str(&a, "XGROUP");
		redis_arg_str(&a, "CREATE");
		redis_arg_str(&a, s->stream);
		redis_arg_str(&a, WK_GROUP);
		redis_arg_str(&a, "0");
		redis_arg_str(&a, "MKSTREAM");
		if (redis_send(wk.rc, on_group, s, &a) == 0)
			s->setting_up = 1;
		return 1;
	}
	if (s->setting_up == 2) {
		/* Everything pending in the group, whoever read it: the previous
		 * owner is gone (we hold the lease) or was us. */
		redis_arg_str(&a, "XAUTOCLAIM");
		redis_arg_str(&a, s->stream);
		redis_arg_str(&a, WK_GROUP);
		redis_arg_str(&a, wk.cfg.worker_id);
		redis_arg_str(&a, "0");
		redis_arg_str(&a, s->claim_cursor);
		redis_arg_str(&a, "COUNT");
		redis_arg_i64(&a, wk.cfg.batch);
		if (redis_send(wk.rc, on_claim, s, &a) == 0) {
			s->setting_up = 3;
			wk.reading = 1;
		}
		return 1;
	}
	return s->setting_up == 1 || s->setting_up == 3;
}

void shards_pump(void)
{
	if (wk.reading || wk.batch_busy || wk.draining || wk_now() < wk.retry_at)
		return;
	if (!redis_conn_up(wk.rc) || !redis_conn_up(wk.blk) || !pg_conn_up(wk.pg))
		return;
	/* Shards being set up go first; one step at a time keeps order simple. */
	for (int i = 0; i < wk.cfg.shards; i++) {
		wk_shard *s = &wk.shards[i];
		if (shard_usable(s) && !s->ready) {
			if (setup_step(s))
				return;
		}
	}
	send_read(1);
}
