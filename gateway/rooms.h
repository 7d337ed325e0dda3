/*
 * rooms.h - the gateway's local room index: room name -> local members.
 *
 * A member is any owner object (a Socket.IO socket); each owner keeps the
 * list of its memberships so that leaving everything at disconnect costs
 * one pass over its own rooms. Every change of a room's local member count
 * is reported through rooms_changed so the Redis registry can say which
 * gateways hold how many members of which rooms.
 */
#ifndef TIDINGS_ROOMS_H
#define TIDINGS_ROOMS_H

#include <stdint.h>

#include "common/slice.h"

typedef struct room room;
typedef struct rmember rmember;

struct rmember {
	room *r;
	void *owner;
	rmember *rprev, *rnext; /* in the room */
	rmember *onext;         /* in the owner's list */
};

struct room {
	rmember *head;
	uint32_t count;
	uint32_t len;
	char name[]; /* NUL-terminated, len bytes */
};

/* Called after every join and leave with the room's new local count (0:
 * the room is about to be freed). Set by the process layer. */
extern void (*rooms_changed)(const room *r);

/* Adds owner to the room `name` (created if new). Returns 1 when joined,
 * 0 when already a member, -1 when out of memory. */
int rooms_join(rmember **list, void *owner, slice name);

/* Removes owner from `name`; 0 when it was not a member. */
int rooms_leave(rmember **list, slice name);

/* Removes owner from every room it is in. */
void rooms_leave_all(rmember **list);

room *rooms_get(slice name);

/* 1 when owner is in room `name`. */
int rooms_has(rmember *list, slice name);

#endif
