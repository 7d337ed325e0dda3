/*
 * bus.h - the gateway's side of the Redis contract (docs/redis.md):
 * sessions, the room registry, ingress entries for client events, token
 * revocation look-ups, and the delivery stream this gateway reads.
 *
 * Every write is pipelined on one connection (common/redis.h) and never
 * waited for on the request path; the delivery stream is read on a second
 * connection with a blocking XREAD. A connection whose reply is overdue
 * (Redis frozen) is torn down, failing what it had queued, and rebuilt
 * with backoff. When Redis is away, or too many commands already wait for
 * its replies, writes are dropped with a counted error (liveness, sessions
 * and registrations are re-published when the command connection comes
 * back) and /readyz reports 503.
 */
#ifndef TIDINGS_BUS_H
#define TIDINGS_BUS_H

#include <stdint.h>

#include "common/jwt.h"
#include "common/slice.h"

typedef struct sio_sock sio_sock;
typedef struct room room;

/* Connects both Redis connections (asynchronously, with reconnect) and
 * starts the liveness and delivery loops. Returns -1 on a bad URL (or a
 * prefix and gateway id too long for a key, logged). */
int bus_init(void);

/* Stops reading (closes the delivery connection) and liveness, and
 * removes this gateway's liveness keys. The command connection stays open
 * for the removals of the sessions and rooms closed during the drain. */
void bus_shutdown(void);

/* 1 when the command connection is up (its handshake answered). */
int bus_ready(void);

/* Session of an authenticated socket: written at connect, refreshed by the
 * heartbeat, removed at disconnect. */
void bus_session_add(const sio_sock *s);
void bus_session_touch(const sio_sock *s);
void bus_session_del(const sio_sock *s);

/* Registry: room r's local member count changed to r->count (0 removes). */
void bus_room_changed(const room *r);

/* A new event id, "{prefix}{gateway}-{boot ms}-{seq}": unique across the
 * cluster as long as gateway ids are, and increasing within a gateway. */
void bus_event_id(char *out, size_t n, const char *prefix);

/* An ingress entry for socket s. kind: "connect", "event", "disconnect".
 * data: the JSON array of arguments (may be empty), ack: -1 for none,
 * att/natt: binary attachments. Returns 0 when queued. */
int bus_ingress(const sio_sock *s, const char *kind, slice event, slice data, int64_t ack,
                const slice *att, uint32_t natt, slice shard_key);

/* A producer's emit (docs/redis.md): appends `fields` (name, value pairs,
 * nfields names) to the ingress shard of shard_key with XADD and calls
 * cb(arg, err) once Redis has answered: err NULL when the entry is durably
 * queued, else why not. Returns -1 (cb not called) when Redis is away or
 * too many commands wait for its replies. */
typedef void bus_emit_cb(void *arg, const char *err);
int bus_emit(const slice *fields, int nfields, slice shard_key, bus_emit_cb *cb, void *arg);

/* Server-to-client calls (Open WebUI's event_call) cross gateways through
 * the delivery streams: the gateway serving POST /api/v1/call looks up
 * the target socket's session, appends an op=call entry to the stream of
 * the gateway holding it, and that gateway appends op=reply to the
 * caller's stream when the client acks (or disconnects). */

/* Reads the session of sid; cb(arg, gw, user, err) once: gw/user NULL when
 * there is no such session, err set when Redis could not answer. Returns
 * -1 (cb not called) when Redis is away. */
typedef void bus_session_cb(void *arg, const char *gw, const char *user, const char *err);
int bus_session_get(slice sid, bus_session_cb *cb, void *arg);

/* Appends an entry (nfields name/value pairs) to the delivery stream of
 * gateway gw_id. 0 when queued, -1 when Redis is away. */
int bus_deliver(slice gw_id, const slice *fields, int nfields);

/* Our own gateway id, for reply routing. */
const char *bus_gateway_id(void);

/* Checks Open WebUI's revocation keys for a verified token, then calls
 * cb(arg, ok, why) exactly once: ok = 1 accepted, 0 revoked or not
 * checkable (Redis away, a look-up failed or timed out: fail closed). When
 * Redis is away cb runs before this returns. */
typedef void bus_auth_cb(void *arg, int ok, const char *why);

/* The `why` of a refusal because the user already holds
 * TIDINGS_MAX_CONNS_PER_USER connections cluster-wide (compare pointers). */
extern const char BUS_TOO_MANY[];
void bus_check_revoked(const jwt_claims *cl, bus_auth_cb *cb, void *arg);

/* Commands sent on the command connection and not yet answered. */
int bus_flush_pending(void);

/* Computes the ingress shard of a key as documented: FNV-1a 32 % shards. */
uint32_t bus_shard(slice key);

#endif
