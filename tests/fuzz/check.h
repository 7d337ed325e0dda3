/*
 * check.h - the invariant check of the libFuzzer drivers: a violated
 * invariant aborts, which libFuzzer reports as a crash with its input.
 */
#ifndef TIDINGS_FUZZ_CHECK_H
#define TIDINGS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__,     \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
