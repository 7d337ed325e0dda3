#include "rand.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static unsigned char pool[4096];
static size_t pool_left;

void rand_bytes(void *p, size_t n)
{
	unsigned char *out = p;
	while (n) {
		if (pool_left == 0) {
			ssize_t r = getrandom(pool, sizeof(pool), 0);
			if (r != (ssize_t)sizeof(pool)) {
				if (r < 0 && errno == EINTR)
					continue;
				fprintf(stderr, "getrandom failed\n");
				abort();
			}
			pool_left = sizeof(pool);
		}
		size_t take = n < pool_left ? n : pool_left;
		memcpy(out, pool + sizeof(pool) - pool_left, take);
		/* Bytes handed out are not kept around. */
		memset(pool + sizeof(pool) - pool_left, 0, take);
		pool_left -= take;
		out += take;
		n -= take;
	}
}

void rand_id(char *out, size_t n)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char tmp[64];
	while (n) {
		size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
		rand_bytes(tmp, k);
		for (size_t i = 0; i < k; i++)
			*out++ = alphabet[tmp[i] & 63];
		n -= k;
	}
	*out = '\0';
}
