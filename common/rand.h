/*
 * rand.h - unguessable identifiers from the kernel's CSPRNG, drawn in
 * blocks so an id costs no syscall.
 */
#ifndef TIDINGS_RAND_H
#define TIDINGS_RAND_H

#include <stddef.h>

/* Writes n base64url characters (6 random bits each) and a NUL to out
 * (n + 1 bytes). Aborts if the kernel cannot supply randomness. */
void rand_id(char *out, size_t n);

/* Fills p with n random bytes. */
void rand_bytes(void *p, size_t n);

#endif
