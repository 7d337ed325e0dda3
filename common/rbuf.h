/*
 * rbuf.h - refcounted immutable byte blocks for fan-out.
 *
 * A broadcast is encoded and framed once into one rbuf; each recipient's
 * output queue holds a reference, never a copy. The block is freed when the
 * last queue lets go of it.
 */
#ifndef TIDINGS_RBUF_H
#define TIDINGS_RBUF_H

#include <stdint.h>
#include <stdlib.h>

typedef struct rbuf {
	uint32_t refs;
	uint32_t len;
	char data[];
} rbuf;

/* Allocates a block of len bytes (contents to be written by the caller)
 * holding one reference. Returns NULL when out of memory or len > 4 GB. */
static inline rbuf *rbuf_create(size_t len)
{
	if (len > UINT32_MAX)
		return NULL;
	rbuf *r = malloc(sizeof(rbuf) + len);
	if (r) {
		r->refs = 1;
		r->len = (uint32_t)len;
	}
	return r;
}

static inline rbuf *rbuf_ref(rbuf *r)
{
	r->refs++;
	return r;
}

static inline void rbuf_unref(rbuf *r)
{
	if (r && --r->refs == 0)
		free(r);
}

#endif
