/*
 * shard.h - which ingress stream an event goes to (docs/redis.md): the
 * 32-bit FNV-1a hash of its ordering key, modulo the number of shards.
 * Producers in other languages compute the same; never change it.
 */
#ifndef TIDINGS_SHARD_H
#define TIDINGS_SHARD_H

#include <stdint.h>

#include "slice.h"

static inline uint32_t shard_of(slice key, uint32_t shards)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < key.len; i++) {
		h ^= (unsigned char)key.base[i];
		h *= 16777619u;
	}
	return shards ? h % shards : 0;
}

#endif
