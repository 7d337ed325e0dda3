/*
 * fanout.h - the fan-out of a batch: deliveries to rooms and sockets and
 * room joins, collected while the transaction runs and published after it
 * commits, in order.
 *
 * A room delivery goes to exactly the gateways listed in the room's
 * registry hash (P:room:{room}) that are alive: one delivery entry per
 * gateway with members, never one per socket, never one per gateway of the
 * cluster. Socket-targeted operations go to the gateway recorded in the
 * ingress entry. Steps (below) decide their deliveries from a Redis
 * script's answer and name their gateways themselves.
 */
#ifndef TIDINGS_FANOUT_H
#define TIDINGS_FANOUT_H

#include <cJSON.h>
#include <hiredis/hiredis.h>

#include "common/redis.h"
#include "common/slice.h"

typedef struct fanout_step fanout_step;

typedef struct fanout_op {
	int type; /* FANOUT_* */
	char *gw, *target, *room, *pkt, *except;
	char **gws; /* FANOUT_ROOM: gateways found in the registry (or given) */
	int ngws;
	char **att; /* binary attachments of pkt (a `5` packet) */
	size_t *att_len;
	int natt;
	fanout_step *step; /* FANOUT_STEP */
	/* fanout_emit_ref: the packet is made from these (borrowed) only if
	 * some gateway is to receive it. */
	const char *ref_event;
	const cJSON *ref_data;
	int same_as; /* FANOUT_ROOM: 1 + the index of an earlier op of the same
	              * room whose look-up this one shares; 0: its own */
} fanout_op;

enum { FANOUT_ROOM, FANOUT_SID, FANOUT_JOIN, FANOUT_SYNC, FANOUT_LEAVE, FANOUT_STEP };

typedef struct fanout_list {
	fanout_op *ops;
	int n, cap;
	int waiting; /* replies outstanding (+1 while the commands are being sent) */
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
/* fanout_emit without the copy: event and data are borrowed and must stay
 * unchanged until the list is disposed. The packet is only made when the
 * room has members somewhere, which a producer's emits to users with no
 * open tab (most persisted updates) never do. */
void fanout_emit_ref(fanout_list *l, const char *room, const char *event, const cJSON *data);
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

/*
 * Steps: operations whose deliveries are only known once Redis has
 * answered (a collaborative document's sessions and update log, read and
 * written by one script). A step runs when the list is published, in the
 * list's order with the registry look-ups and the other steps, so the
 * Redis effects of a batch happen in the order of its entries; the
 * deliveries it then makes go out at that same place in the order.
 *
 * run(st, arg) is called once by fanout_publish, only when Redis is up; it
 * sends its commands with fanout_step_cmd (or none). Each command's
 * callback runs once with the reply (possibly an error reply, which the
 * step handles); a lost connection fails the publish instead, without
 * calling it. Deliveries are added, from run or from a callback, with the
 * fanout_step_* functions below, whose gateways the step names itself.
 * dispose(arg) runs when the list is disposed (also after a publish that
 * failed: the batch is then applied again and makes new steps). The step
 * owns nothing of the list; arg is the caller's.
 */
typedef void fanout_step_fn(fanout_step *st, void *arg);
typedef void fanout_reply_fn(fanout_step *st, const redisReply *r, void *arg);

void fanout_add_step(fanout_list *l, fanout_step_fn *run, void (*dispose)(void *arg), void *arg);

/* Sends a command whose reply the publish waits for; cb(st, reply, arg)
 * runs once with it. Returns 0, or -1 when the command could not be
 * queued (the publish fails; cb never runs). */
int fanout_step_cmd(fanout_step *st, fanout_reply_fn *cb, void *arg, const redis_argv *a);

/* `event` with `data` to the members of `room` at each of gateways
 * gws[0..ngws), except socket `except` (may be NULL). With natt > 0 the
 * packet is a binary event: data refers to att[i] by
 * {"_placeholder":true,"num":i}. Strings and bytes are copied. */
void fanout_step_emit(fanout_step *st, const char *const *gws, int ngws, const char *room,
                      const char *event, const cJSON *data, const slice *att, int natt,
                      const char *except);
/* `event` with `data` to socket sid, held by gateway gw. */
void fanout_step_emit_sid(fanout_step *st, const char *gw, const char *sid, const char *event,
                          const cJSON *data);
/* Puts socket sid (at gateway gw) in room, or takes it out. */
void fanout_step_join(fanout_step *st, const char *gw, const char *sid, const char *room);
void fanout_step_leave(fanout_step *st, const char *gw, const char *sid, const char *room);

/* Publishes everything in order; cb(arg, ok) runs once: ok = 1 when every
 * entry is queued on the Redis connection, 0 when Redis was unavailable
 * (nothing or part was sent: the caller retries the whole batch, and
 * clients may see a delivery twice, never miss one). */
void fanout_publish(fanout_list *l, void (*cb)(void *arg, int ok), void *arg);

#endif
