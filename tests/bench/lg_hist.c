#include "lg_hist.h"

#include <math.h>
#include <string.h>

void lg_hist_reset(lg_hist *h)
{
	memset(h, 0, sizeof(*h));
}

static uint32_t bucket_of(uint64_t v)
{
	if (v < LG_HIST_LINEAR)
		return (uint32_t)v;
	if (v >= LG_HIST_MAX_US)
		return LG_HIST_BUCKETS - 1;
	uint32_t k = 63u - (uint32_t)__builtin_clzll(v); /* 2^k <= v < 2^(k+1) */
	uint32_t sub = (uint32_t)(v >> (k - LG_HIST_SUB_BITS)) & (LG_HIST_SUB - 1);
	return LG_HIST_LINEAR + (k - LG_HIST_LINEAR_BITS) * LG_HIST_SUB + sub;
}

/* The middle of bucket i, the value reported for everything counted in it. */
static uint64_t value_of(uint32_t i)
{
	if (i < LG_HIST_LINEAR)
		return i;
	uint32_t k = (i - LG_HIST_LINEAR) / LG_HIST_SUB + LG_HIST_LINEAR_BITS;
	uint32_t sub = (i - LG_HIST_LINEAR) % LG_HIST_SUB;
	uint64_t width = 1ull << (k - LG_HIST_SUB_BITS);
	return (1ull << k) + sub * width + (width - 1) / 2;
}

void lg_hist_add(lg_hist *h, uint64_t us)
{
	h->count[bucket_of(us)]++;
	h->total++;
	if (us > h->max)
		h->max = us;
}

void lg_hist_merge(lg_hist *dst, const lg_hist *src)
{
	for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++)
		dst->count[i] += src->count[i];
	dst->total += src->total;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
	if (h->total == 0)
		return 0;
	uint64_t rank = (uint64_t)ceil(q * (double)h->total);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t v = value_of(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}
