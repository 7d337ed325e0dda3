/*
 * fanout.h - the fan-out of a batch: deliveries to rooms and sockets and
 * room joins, collected while the transaction runs and published after it
 * commits, in order.
 *
 * A room delivery goes to exactly the gateways listed in the room's
 * registry hash (P:room:{room}) that are alive: one delivery entry per
 * gateway with members, never one per socket, never one per gateway of the
 * cluster. Socket-targeted operations go to the gateway recorded in the
 * ingress entry.
 */
#ifndef TIDINGS_FANOUT_H
#define TIDINGS_FANOUT_H

#include <cJSON.h>

typedef struct fanout_op {
	int type; /* FANOUT_ROOM, FANOUT_SID, FANOUT_JOIN */
	char *gw, *target, *room, *pkt, *except;
	char **gws; /* FANOUT_ROOM: gateways found in the registry */
	int ngws;
} fanout_op;

enum { FANOUT_ROOM, FANOUT_SID, FANOUT_JOIN, FANOUT_SYNC };

typedef struct fanout_list {
	fanout_op *ops;
	int n, cap;
	int waiting; /* registry look-ups outstanding */
	int failed;
	void (*cb)(void *arg, int ok);
	void *arg;
} fanout_list;

void fanout_init(fanout_list *l);
void fanout_dispose(fanout_list *l);

/* Emits `event` with one argument `data` to every socket of `room`
 * (except the sid `except`, may be NULL). */
void fanout_emit(fanout_list *l, const char *room, const char *event, const cJSON *data,
                 const char *except);
/* Answers a client's ack id on socket sid at gateway gw with one argument. */
void fanout_ack(fanout_list *l, const char *gw, const char *sid, const char *nsp, long long ack,
                const cJSON *arg);
/* Emits `event` with `data` to one socket, wherever its session says it is. */
void fanout_emit_sid(fanout_list *l, const char *sid, const char *event, const cJSON *data);
/* Makes socket sid's rooms under `prefix` exactly `rooms` (a JSON array of
 * room names): joins the new, leaves the revoked. */
void fanout_sync(fanout_list *l, const char *gw, const char *sid, const char *prefix,
                 const cJSON *rooms);
/* Puts socket sid (at gateway gw) in room. */
void fanout_join(fanout_list *l, const char *gw, const char *sid, const char *room);

/* Publishes everything in order; cb(arg, ok) runs once: ok = 1 when every
 * entry is queued on the Redis connection, 0 when Redis was unavailable
 * (nothing or part was sent: the caller retries the whole batch, and
 * clients may see a delivery twice, never miss one). */
void fanout_publish(fanout_list *l, void (*cb)(void *arg, int ok), void *arg);

/* Refreshes the set of live gateways (called from the worker's tick). */
void fanout_tick(void);

#endif
