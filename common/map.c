/*
 * map.c - open addressing with linear probing over a power-of-two table.
 *
 * An entry is a borrowed key slice and a value; nothing else is stored (no
 * cached hash), so a lookup hashes the key once and compares lengths before
 * bytes. A deleted entry becomes a tombstone that keeps probe chains intact;
 * the table is rebuilt, without tombstones, when live entries plus
 * tombstones reach 70% of it.
 *
 * The hash is SipHash-1-3 under a key drawn once per process from
 * getrandom(), the choice of Rust and CPython for hash tables: keys come
 * from clients (sids, room names), and an unkeyed hash would let them build
 * colliding keys that turn every probe into a walk of the whole table.
 */
#include "map.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* A deleted entry's key.base. Only its address matters: no caller's key can
 * live there, so it cannot be mistaken for a real key. */
static const char map_tombstone[1];
#define MAP_TOMBSTONE map_tombstone

/* Stands in for the base of an empty key given as SLICE_NULL, because a NULL
 * base marks an empty entry. */
static const char map_empty_key[1];

#define MAP_MIN_CAP 8

static uint64_t sip_key[2];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

/* One load (the byte-wise loop compiled to eight): keys are hashed on
 * every map lookup, and tokens of 160 bytes once per connection. */
static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13);
	v[1] ^= v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16);
	v[3] ^= v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21);
	v[3] ^= v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17);
	v[1] ^= v[2];
	v[2] = rotl(v[2], 32);
}

/*
 * SipHash-c-d with a 64-bit output, as in Aumasson and Bernstein, "SipHash:
 * a fast short-input PRF" (2012). The round counts are parameters so that
 * the unit test can check this code against the paper's SipHash-2-4
 * vectors; the map uses 1 and 3.
 */
static inline uint64_t siphash(const uint64_t k[2], const void *data, size_t len, int crounds,
                               int drounds)
{
	const unsigned char *p = data;
	uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ull, k[1] ^ 0x646f72616e646f6dull,
	                 k[0] ^ 0x6c7967656e657261ull, k[1] ^ 0x7465646279746573ull};
	uint64_t m;
	size_t off;
	int i;

	for (off = 0; len - off >= 8; off += 8) {
		m = load_le64(p + off);
		v[3] ^= m;
		for (i = 0; i < crounds; i++)
			sip_round(v);
		v[0] ^= m;
	}
	/* The last block holds the 0-7 remaining bytes and the length mod 256
	 * in its top byte. */
	m = (uint64_t)len << 56;
	for (i = (int)(len - off) - 1; i >= 0; i--)
		m |= (uint64_t)p[off + (size_t)i] << (8 * i);
	v[3] ^= m;
	for (i = 0; i < crounds; i++)
		sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	for (i = 0; i < drounds; i++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/*
 * getrandom() only fails on kernels older than 3.17 or under a seccomp
 * filter that forbids it. The map must keep working there, so the fallback
 * mixes what varies between processes; it is guessable, which weakens the
 * flooding protection but nothing else.
 */
static void sip_key_init(void)
{
	unsigned char *p = (unsigned char *)sip_key;
	size_t got = 0;

	while (got < sizeof(sip_key)) {
		ssize_t n = getrandom(p + got, sizeof(sip_key) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof(sip_key)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t seed[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
		                    (uint64_t)(uintptr_t)&ts};
		const uint64_t zero[2] = {0, 0};
		sip_key[0] = siphash(zero, seed, sizeof(seed), 2, 4);
		sip_key[1] = siphash(sip_key, seed, sizeof(seed), 2, 4);
	}
}

uint64_t map_hash(slice key)
{
	pthread_once(&sip_once, sip_key_init);
	return siphash(sip_key, key.base, key.len, 1, 3);
}

void map_init(map *m)
{
	m->tab = NULL;
	m->cap = 0;
	m->count = 0;
	m->used = 0;
}

void map_dispose(map *m)
{
	free(m->tab);
	map_init(m);
}

static int is_live(const map_entry *e)
{
	return e->key.base != NULL && e->key.base != MAP_TOMBSTONE;
}

/*
 * Walks key's probe chain. Returns the live entry holding key, or NULL; in
 * that case *slot (when given) is where key would go: the first tombstone on
 * the chain, which can be reused without raising `used`, or else the empty
 * entry that ends it. The table must exist.
 */
static map_entry *probe(const map *m, slice key, map_entry **slot)
{
	size_t mask = m->cap - 1;
	map_entry *tomb = NULL;
	for (size_t i = (size_t)map_hash(key) & mask;; i = (i + 1) & mask) {
		map_entry *e = &m->tab[i];
		if (e->key.base == NULL) {
			if (slot)
				*slot = tomb ? tomb : e;
			return NULL;
		}
		if (e->key.base == MAP_TOMBSTONE) {
			if (!tomb)
				tomb = e;
		} else if (slice_eq(e->key, key)) {
			return e;
		}
	}
}

static map_entry *find(const map *m, slice key)
{
	return m->count ? probe(m, key, NULL) : NULL;
}

/*
 * Rebuilds the table without tombstones. It doubles when live entries are
 * the majority of `used`, and otherwise keeps its size: at least half of
 * `used` was tombstones, so the rebuilt table is at most 35% full either
 * way, and a map whose keys churn does not grow without bound. The table
 * never shrinks. On allocation failure the map is untouched.
 */
static int rehash(map *m)
{
	size_t cap = m->cap;
	if (!cap) {
		cap = MAP_MIN_CAP;
	} else if (m->count * 2 >= m->used) {
		if (cap > SIZE_MAX / 2 / sizeof(map_entry))
			return -1;
		cap *= 2;
	}
	map_entry *tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -1;
	size_t mask = cap - 1;
	for (size_t i = 0; i < m->cap; i++) {
		if (!is_live(&m->tab[i]))
			continue;
		size_t j = (size_t)map_hash(m->tab[i].key) & mask;
		while (tab[j].key.base != NULL)
			j = (j + 1) & mask;
		tab[j] = m->tab[i];
	}
	free(m->tab);
	m->tab = tab;
	m->cap = cap;
	m->used = m->count;
	return 0;
}

/*
 * A replaced entry takes the new key slice as well as the new value: the
 * old key's bytes usually live inside the old value, which the caller is
 * about to free.
 */
int map_put(map *m, slice key, void *value)
{
	map_entry *e, *slot = NULL;

	if (key.base == NULL)
		key.base = map_empty_key;
	if (m->cap) {
		e = probe(m, key, &slot);
		if (e) {
			e->key = key;
			e->value = value;
			return 0;
		}
	}
	if (!slot || (slot->key.base == NULL && (m->used + 1) * 10 > m->cap * 7)) {
		if (rehash(m) < 0)
			return -1;
		probe(m, key, &slot);
	}
	if (slot->key.base == NULL)
		m->used++;
	slot->key = key;
	slot->value = value;
	m->count++;
	return 0;
}

/*
 * When the entry after the deleted one is empty, no probe chain runs through
 * the deleted one, so it becomes empty rather than a tombstone, and so do the
 * tombstones just before it. This keeps tables with churn (rooms joined and
 * left) from filling with tombstones. Only entries at or before the deleted
 * one change, so an iteration that deletes its current key is unaffected.
 */
void *map_del(map *m, slice key)
{
	map_entry *e = find(m, key);
	if (!e)
		return NULL;
	void *value = e->value;
	size_t mask = m->cap - 1, i = (size_t)(e - m->tab);

	m->count--;
	if (m->tab[(i + 1) & mask].key.base != NULL) {
		e->key = slice_make(MAP_TOMBSTONE, 0);
		e->value = NULL;
		return value;
	}
	do {
		m->tab[i].key = SLICE_NULL;
		m->tab[i].value = NULL;
		m->used--;
		i = (i - 1) & mask;
	} while (m->tab[i].key.base == MAP_TOMBSTONE);
	return value;
}

void *map_get(const map *m, slice key)
{
	map_entry *e = find(m, key);
	return e ? e->value : NULL;
}

map_entry *map_next(const map *m, size_t *iter)
{
	while (*iter < m->cap) {
		map_entry *e = &m->tab[(*iter)++];
		if (is_live(e))
			return e;
	}
	return NULL;
}
