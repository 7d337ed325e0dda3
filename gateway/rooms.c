#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include "gw.h"

void (*rooms_changed)(const room *r);

room *rooms_get(slice name)
{
	return map_get(&gw.rooms, name);
}

int rooms_has(rmember *list, slice name)
{
	for (rmember *m = list; m; m = m->onext)
		if (m->r->len == name.len && memcmp(m->r->name, name.base, name.len) == 0)
			return 1;
	return 0;
}

int rooms_join(rmember **list, void *owner, slice name)
{
	if (rooms_has(*list, name))
		return 0;
	room *r = map_get(&gw.rooms, name);
	if (!r) {
		r = malloc(sizeof(*r) + name.len + 1);
		if (!r)
			return -1;
		r->head = NULL;
		r->count = 0;
		r->len = (uint32_t)name.len;
		memcpy(r->name, name.base, name.len);
		r->name[name.len] = '\0';
		if (map_put(&gw.rooms, slice_make(r->name, r->len), r) < 0) {
			free(r);
			return -1;
		}
	}
	rmember *m = malloc(sizeof(*m));
	if (!m) {
		if (r->count == 0) {
			map_del(&gw.rooms, slice_make(r->name, r->len));
			free(r);
		}
		return -1;
	}
	m->r = r;
	m->owner = owner;
	m->rprev = NULL;
	m->rnext = r->head;
	if (r->head)
		r->head->rprev = m;
	r->head = m;
	r->count++;
	m->onext = *list;
	*list = m;
	if (rooms_changed)
		rooms_changed(r);
	return 1;
}

static void unlink_member(rmember *m)
{
	room *r = m->r;
	if (m->rprev)
		m->rprev->rnext = m->rnext;
	else
		r->head = m->rnext;
	if (m->rnext)
		m->rnext->rprev = m->rprev;
	r->count--;
	free(m);
	if (rooms_changed)
		rooms_changed(r);
	if (r->count == 0) {
		map_del(&gw.rooms, slice_make(r->name, r->len));
		free(r);
	}
}

int rooms_leave(rmember **list, slice name)
{
	for (rmember **pp = list; *pp; pp = &(*pp)->onext) {
		rmember *m = *pp;
		if (m->r->len == name.len && memcmp(m->r->name, name.base, name.len) == 0) {
			*pp = m->onext;
			unlink_member(m);
			return 1;
		}
	}
	return 0;
}

void rooms_leave_all(rmember **list)
{
	while (*list) {
		rmember *m = *list;
		*list = m->onext;
		unlink_member(m);
	}
}
