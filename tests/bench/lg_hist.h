/*
 * lg_hist.h - a latency histogram in microseconds, log-linear like HDR.
 *
 * Values below LG_HIST_LINEAR are counted exactly (1 us buckets); above,
 * every power of two is cut into LG_HIST_SUB equal buckets, so a bucket is
 * at most 1/128 (0.8 %) of its value wide. Values of LG_HIST_MAX_US and more
 * (about 67 s) share the top bucket; the exact maximum is kept aside.
 *
 * The struct is plain data of fixed size: histograms of several processes
 * are sent whole over a pipe and merged by adding their arrays.
 */
#ifndef TIDINGS_LG_HIST_H
#define TIDINGS_LG_HIST_H

#include <stdint.h>

#define LG_HIST_LINEAR_BITS 10
#define LG_HIST_LINEAR      (1u << LG_HIST_LINEAR_BITS)
#define LG_HIST_SUB_BITS    7
#define LG_HIST_SUB         (1u << LG_HIST_SUB_BITS)
#define LG_HIST_TOP_BITS    26
#define LG_HIST_MAX_US      (1ull << LG_HIST_TOP_BITS)
#define LG_HIST_BUCKETS     (LG_HIST_LINEAR + (LG_HIST_TOP_BITS - LG_HIST_LINEAR_BITS) * LG_HIST_SUB)

typedef struct lg_hist {
	uint64_t total;
	uint64_t max;
	uint64_t count[LG_HIST_BUCKETS];
} lg_hist;

/* Empties the histogram (caller's storage). */
void lg_hist_reset(lg_hist *h);

/* Counts one value. */
void lg_hist_add(lg_hist *h, uint64_t us);

/* Adds every count of src to dst. */
void lg_hist_merge(lg_hist *dst, const lg_hist *src);

/* The value at quantile q (0 < q <= 1): the middle of the bucket holding the
 * ceil(q * total)-th smallest value, never more than the maximum seen.
 * 0 when the histogram is empty. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);

#endif
