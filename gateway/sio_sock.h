/*
 * sio_sock.h - Socket.IO v5 on top of Engine.IO sessions: namespaces,
 * CONNECT with auth, events and acks both ways, binary attachments, and
 * delivery of packets to local rooms and sockets.
 */
#ifndef TIDINGS_SIO_SOCK_H
#define TIDINGS_SIO_SOCK_H

#include <stdint.h>

#include "common/wheel.h"
#include "eio_sock.h"
#include "rooms.h"

typedef struct sio_client sio_client;
typedef struct sio_sock sio_sock;

enum {
	SIO_S_AUTHED = 1 << 0,
	SIO_S_CLOSED = 1 << 1,
};

struct sio_sock {
	sio_client *cl;
	sio_sock *next; /* in the client's list of namespace sockets */
	char sid[24];
	const char *nsp;   /* one of the configured namespaces */
	char *user;        /* verified user id, NULL when anonymous */
	int64_t exp;       /* the token's expiry, unix seconds; 0: none */
	uint64_t tok_hash; /* keyed hash of the token it authenticated with; 0: none */
	wheel_timer exp_timer;
	rmember *rooms;
	struct sio_call *calls; /* server-to-client calls awaiting the ack */
	uint32_t flags;
	uint32_t ack_seq;
};

/* The Engine.IO handler that runs Socket.IO on a session. */
extern const eio_handler sio_eio_handler;

/* Delivery: sends a Socket.IO packet (text, plus binary attachments) to
 * every local socket of `room`, except the socket whose sid is `except`
 * (may be empty). The packet is framed once and shared. Returns the number
 * of sockets reached. */
uint32_t sio_deliver_room(slice room, slice packet, const slice *att, uint32_t natt, slice except);

/* Delivery to one socket by Socket.IO sid; 1 when it is here. */
uint32_t sio_deliver_sid(slice sid, slice packet, const slice *att, uint32_t natt);

/* Control operations from the delivery stream. */
int sio_join(slice sid, slice name);
int sio_leave(slice sid, slice name);
int sio_disconnect(slice sid);

/* Makes the rooms of socket sid that start with `prefix` exactly the
 * rooms named in `rooms_json` (a JSON array of strings): missing ones are
 * joined, others with that prefix left. This is how a worker applies a
 * user's current channel memberships, revocations included. Returns the
 * number of changes, or -1 when the socket is not here or the list is bad. */
int sio_sync_rooms(slice sid, slice prefix, slice rooms_json);

/* A call from the delivery stream: emits `event` with `data` (JSON) to
 * socket sid with a fresh ack id; the client's ack, or its disconnect, is
 * sent to gateway reply_gw as op=reply for call_id. */
void sio_call(slice sid, slice event, slice data, slice reply_gw, slice call_id);

/* Validates a namespace list from the settings; -1 with *err. */
int sio_namespaces_init(const char *list, int conformance, const char **err);

/* Sockets whose Redis session should be re-published (after Redis came
 * back): calls fn for each authenticated socket. */
void sio_each_authed(void (*fn)(const sio_sock *s));

extern uint64_t sio_count;

#endif
