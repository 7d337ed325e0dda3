/*
 * map.h - an open-addressing hash map from byte-string keys to pointers.
 *
 * Used for the gateway's sid and room indexes. Keys are borrowed: the map
 * stores the slice, and the caller keeps the key bytes alive and unchanged
 * while the entry exists (typically the key lives inside the value). This
 * keeps an entry at 24 bytes with no allocation per insert. The hash is
 * seeded per process (SipHash-1-3 or similar keyed hash) so clients cannot
 * aim collisions at one bucket.
 */
#ifndef TIDINGS_MAP_H
#define TIDINGS_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "slice.h"

typedef struct map_entry {
	slice key; /* key.base == NULL: empty; a private sentinel: deleted */
	void *value;
} map_entry;

typedef struct map {
	map_entry *tab;
	size_t cap; /* power of two, or 0 */
	size_t count;
	size_t used; /* count + tombstones */
} map;

void map_init(map *m);
void map_dispose(map *m);

/* Returns the value for key, or NULL. */
void *map_get(const map *m, slice key);
/* Inserts or replaces. Replacing stores the new key slice too, so a key
 * living inside the old value may be freed with it. Returns 0, or -1 when
 * out of memory (map unchanged). */
int map_put(map *m, slice key, void *value);
/* Removes key; returns the old value or NULL. */
void *map_del(map *m, slice key);

/* Iteration: `for (size_t i = 0; (e = map_next(m, &i)) != NULL;)`. The map
 * must not be changed during iteration except by map_del of the current key. */
map_entry *map_next(const map *m, size_t *iter);

/* Keyed 64-bit hash used by the map (exposed for tests and sharding). */
uint64_t map_hash(slice key);

#endif
