/*
 * batch.h - applying a batch of ingress entries: every database effect of
 * the batch in one transaction (with each event id recorded in
 * tidings_event, so a redelivered event changes nothing), then the batch's
 * fan-out as pipelined XADDs to exactly the gateways holding members of
 * each target room, then XACK. A batch that fails is retried with backoff;
 * it is never dropped and nothing after it runs before it succeeds, which
 * keeps every key's events in order.
 */
#ifndef TIDINGS_BATCH_H
#define TIDINGS_BATCH_H

#include <cJSON.h>
#include <hiredis/hiredis.h>
#include <stdint.h>

/* A binary attachment of a client event (fields att0..attN). */
typedef struct wk_att {
	char *p;
	size_t len;
} wk_att;

typedef struct wk_entry {
	int shard;
	char id[48]; /* stream id, for XACK */
	char *eid, *kind, *gw, *sid, *user, *nsp, *event, *data;
	char *to_type, *to; /* kind=emit */
	char *strs;         /* the block all of the above point into */
	int update_db;
	int64_t ack;
	cJSON *args; /* parsed data, or NULL */
	wk_att *att; /* referenced from args by {"_placeholder":true,"num":i} */
	int natt;
} wk_entry;

/* Fills e from one stream entry ([id, [field, value, ...]]) of shard
 * `shard`. Returns 0, or -1 when the entry is malformed (it is then acked
 * and parked aside by the caller, never retried forever). */
int entry_decode(wk_entry *e, int shard, const redisReply *item);
void entry_dispose(wk_entry *e);

/* Applies n entries (the array and its contents become the batch's) and
 * calls done() once they are applied, delivered and acknowledged. */
void batch_run(wk_entry *entries, int n, void (*done)(void));

#endif
