/* Tests common/map.c: behaviour against a brute-force reference, SipHash
 * against published vectors, and allocation failure. */
#include "tap.h"

/* The module is compiled into this test, rather than taken from the
 * archive, to reach its static siphash() and to make calloc fail on demand.
 * Every map_* symbol is then defined here, so the archive's copy of map.o
 * is never linked. */
static int fail_alloc;

static void *test_calloc(size_t n, size_t size)
{
	return fail_alloc ? NULL : calloc(n, size);
}

#define calloc test_calloc
#include "common/map.c"
#undef calloc

#define VAL(x) ((void *)(uintptr_t)(x))

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

/* SipHash-2-4, key 00..0f, messages 00, 00 01, ... (the paper's appendix
 * and the reference implementation's vectors.h). */
static const uint64_t sip24_vectors[64] = {
    0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
    0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
    0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
    0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
    0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull, 0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull,
    0xbed65cf21aa2ee98ull, 0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
    0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull, 0x2f2e6163076bcfadull,
    0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull, 0xad87a3535c49ef28ull, 0x32d892fad841c342ull,
    0x7127512f72f27cceull, 0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
    0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull, 0x9abfd8766a33735cull,
    0x0e3ea96b5304a7d0ull, 0xad0c42d6fc585992ull, 0x187306c89bc215a9ull, 0xd4a60abcf3792b95ull,
    0xf935451de4f21df2ull, 0xa9538f0419755787ull, 0xdb9acddff56ca510ull, 0xd06c98cd5c0975ebull,
    0xe612a3cb9ecba951ull, 0xc766e62cfcadaf96ull, 0xee64435a9752fe72ull, 0xa192d576b245165aull,
    0x0a8787bf8ecb74b2ull, 0x81b3e73d20b49b6full, 0x7fa8220ba3b2eceaull, 0x245731c13ca42499ull,
    0xb78dbfaf3a8d83bdull, 0xea1ad565322a1a0bull, 0x60e61c23a3795013ull, 0x6606d7e446282b93ull,
    0x6ca4ecb15c5f91e1ull, 0x9f626da15c9625f3ull, 0xe51b38608ef25f57ull, 0x958a324ceb064572ull,
};

/* SipHash-1-3, zero key, messages 00, 00 01, ... 00..0f: CPython 3.11's
 * hash() of those bytes under PYTHONHASHSEED=0, an independent
 * implementation of the same function. */
static const uint64_t sip13_vectors[16] = {
    0x68a914128e01e473ull, 0x010bac45c41e3669ull, 0x4d4c9a4a8ef6e0adull, 0x7cc43f98813e4dbdull,
    0x5abe2169dff36275ull, 0xe3c25f87624f1cdbull, 0x2f098ab0c751325aull, 0xead411e67ebe2eeaull,
    0x75927f9d95124362ull, 0xaf9f77a65ab51a1dull, 0xfe64ce8b6617fcffull, 0xa6baf4fb0f9fe1c2ull,
    0xa0cf3211850f8e0dull, 0x7f86049379fbfe67ull, 0xf30eb725bb91c9eaull, 0x8972188433a5c5b7ull,
};

static void test_siphash(void)
{
	unsigned char msg[64], kb[16];
	uint64_t key[2], zero[2] = {0, 0};
	int bad = 0;

	for (int i = 0; i < 64; i++)
		msg[i] = (unsigned char)i;
	for (int i = 0; i < 16; i++)
		kb[i] = (unsigned char)i;
	key[0] = load_le64(kb);
	key[1] = load_le64(kb + 8);
	for (int i = 0; i < 64; i++)
		bad += siphash(key, msg, (size_t)i, 2, 4) != sip24_vectors[i];
	ok(!bad, "SipHash-2-4 matches the 64 reference vectors");
	bad = 0;
	for (int i = 0; i < 16; i++)
		bad += siphash(zero, msg, (size_t)i + 1, 1, 3) != sip13_vectors[i];
	ok(!bad, "SipHash-1-3 matches 16 vectors from CPython");
}

static void test_hash(void)
{
	enum { N = 100000, B = 256 };
	static int lo[B], hi[B];
	char s[32];
	int bad = 0;

	ok(map_hash(SLICE_LIT("abc")) == map_hash(slice_make(&"xabc"[1], 3)),
	   "the hash depends on the bytes, not their address");
	ok(map_hash(SLICE_LIT("abc")) != map_hash(SLICE_LIT("abd")), "differs for other bytes");
	ok(map_hash(SLICE_LIT("a\0b")) != map_hash(SLICE_LIT("a\0c")), "sees bytes after a NUL");
	ok(map_hash(SLICE_NULL) == map_hash(SLICE_LIT("")), "SLICE_NULL hashes as the empty key");
	ok(sip_key[0] || sip_key[1], "the process key is set");
	for (int i = 0; i < N; i++) {
		int n = snprintf(s, sizeof(s), "sid:%d", i);
		uint64_t h = map_hash(slice_make(s, (size_t)n));
		lo[h % B]++;
		hi[h >> 56]++;
	}
	for (int i = 0; i < B; i++)
		bad += lo[i] < N / B * 3 / 4 || lo[i] > N / B * 5 / 4 || hi[i] < N / B * 3 / 4 ||
		       hi[i] > N / B * 5 / 4;
	ok(!bad, "100000 similar keys spread evenly over the low and high 8 bits");
}

static void test_basic(void)
{
	map m;
	size_t it = 0;
	char buf[] = "room";

	map_init(&m);
	ok(map_get(&m, SLICE_LIT("x")) == NULL, "get on an empty map");
	ok(map_del(&m, SLICE_LIT("x")) == NULL, "del on an empty map");
	ok(map_next(&m, &it) == NULL, "iterating an empty map");
	is_int(map_put(&m, SLICE_LIT("a"), VAL(1)), 0, "put a");
	is_int(map_put(&m, SLICE_LIT("b"), VAL(2)), 0, "put b");
	ok(map_get(&m, SLICE_LIT("a")) == VAL(1), "get a");
	ok(map_get(&m, SLICE_LIT("b")) == VAL(2), "get b");
	ok(map_get(&m, SLICE_LIT("c")) == NULL, "get of a missing key");
	ok(map_get(&m, SLICE_LIT("ab")) == NULL, "get of a longer key");
	is_int(m.count, 2, "count 2");
	ok(m.cap >= 8 && (m.cap & (m.cap - 1)) == 0, "capacity is a power of two");

	is_int(map_put(&m, slice_make(buf, 4), VAL(3)), 0, "put room");
	is_int(map_put(&m, SLICE_LIT("room"), VAL(4)), 0, "put room again, other bytes");
	is_int(m.count, 3, "replacing keeps the count");
	ok(map_get(&m, SLICE_LIT("room")) == VAL(4), "the value is replaced");
	memset(buf, 'X', 4);
	ok(map_get(&m, SLICE_LIT("room")) == VAL(4), "and so is the key slice");

	ok(map_del(&m, SLICE_LIT("a")) == VAL(1), "del returns the old value");
	ok(map_get(&m, SLICE_LIT("a")) == NULL, "a is gone");
	ok(map_del(&m, SLICE_LIT("a")) == NULL, "a second del finds nothing");
	ok(map_get(&m, SLICE_LIT("b")) == VAL(2), "b is still there");
	is_int(m.count, 2, "count 2");
	map_dispose(&m);
	ok(m.tab == NULL && m.cap == 0 && m.count == 0, "dispose frees and resets");
}

static void test_odd_keys(void)
{
	map m;
	map_entry *e;
	size_t it = 0;
	static const char nul[] = "a\0b\0";

	map_init(&m);
	map_put(&m, slice_make(nul, 1), VAL(1));
	map_put(&m, slice_make(nul, 2), VAL(2));
	map_put(&m, slice_make(nul, 3), VAL(3));
	map_put(&m, slice_make(nul, 4), VAL(4));
	map_put(&m, SLICE_LIT("a\0c"), VAL(5));
	is_int(m.count, 5, "keys differing only after a NUL are distinct");
	ok(map_get(&m, slice_make(nul, 3)) == VAL(3), "a\\0b");
	ok(map_get(&m, SLICE_LIT("a\0c")) == VAL(5), "a\\0c");
	ok(map_get(&m, slice_make(nul, 2)) == VAL(2), "a\\0");
	ok(map_get(&m, SLICE_LIT("")) == NULL, "no empty key yet");

	is_int(map_put(&m, SLICE_NULL, VAL(6)), 0, "put SLICE_NULL as the empty key");
	ok(map_get(&m, SLICE_LIT("")) == VAL(6), "found as \"\"");
	ok(map_get(&m, SLICE_NULL) == VAL(6), "and as SLICE_NULL");
	ok(map_get(&m, slice_make(nul, 0)) == VAL(6), "and as any zero-length slice");
	is_int(m.count, 6, "count 6");
	int seen = 0;
	while ((e = map_next(&m, &it)) != NULL)
		seen += e->key.len == 0 && e->key.base != NULL;
	is_int(seen, 1, "iteration shows the empty key once, with a non-NULL base");
	ok(map_del(&m, SLICE_LIT("")) == VAL(6), "del the empty key");
	ok(map_get(&m, SLICE_NULL) == NULL, "gone");
	map_dispose(&m);
}

/* Keys are a fixed pool of distinct random byte strings (NULs included);
 * each has a second copy at another address so that a re-put can be seen
 * to take the new key slice. The reference is the value per pool key. */
enum { NK = 3000 };
static char keys[2][NK][24];
static size_t klen[NK];
static void *ref[NK];
static int refcopy[NK];
static size_t refcount;

static void make_keys(void)
{
	for (int i = 0; i < NK; i++) {
		int dup;
		do {
			klen[i] = i == 0 ? 0 : 1 + rnd(i < 100 ? 8 : 24);
			for (size_t j = 0; j < klen[i]; j++)
				keys[0][i][j] = (char)rnd(i < 100 ? 2 : 256);
			dup = 0;
			for (int k = 0; k < i && !dup; k++)
				dup =
				    klen[k] == klen[i] && !memcmp(keys[0][k], keys[0][i], klen[i]);
		} while (dup);
		memcpy(keys[1][i], keys[0][i], klen[i]);
	}
}

static slice key(int i, int copy)
{
	return slice_make(keys[copy][i], klen[i]);
}

/* Full check of the map against the reference: every pool key, the counts
 * (`used` against the tombstones actually in the table), the load limit,
 * and one visit per live entry with the latest key slice. */
static int check(const map *m)
{
	static int seen[NK];
	map_entry *e;
	size_t it = 0, n = 0;
	int bad = 0;

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < NK; i++)
		bad += map_get(m, key(i, (int)rnd(2))) != ref[i];
	bad += m->count != refcount || m->used < m->count || m->used * 10 > m->cap * 7;
	while ((e = map_next(m, &it)) != NULL) {
		n++;
		int i = (int)((e->key.base - keys[0][0]) / 24 % NK);
		int copy = e->key.base >= keys[1][0];
		bad += e->key.base != keys[copy][i] || e->key.len != klen[i] ||
		       copy != refcopy[i] || seen[i]++ || e->value != ref[i];
	}
	bad += n != refcount;
	size_t tombs = 0;
	for (size_t j = 0; j < m->cap; j++)
		tombs += m->tab[j].key.base == MAP_TOMBSTONE;
	bad += m->used != m->count + tombs;
	return bad;
}

static void test_random(void)
{
	map m;
	int bad = 0, ops = 100000;

	make_keys();
	map_init(&m);
	for (int op = 0; op < ops; op++) {
		/* Bias toward puts for the first half so the table grows large,
		 * then toward deletes so tombstones pile up. */
		int i = (int)rnd(NK), p = (int)rnd(100), putp = op < ops / 2 ? 60 : 35;
		if (p < putp) {
			int c = (int)rnd(2);
			void *v = VAL(rnd(1000000) + 1);
			bad += map_put(&m, key(i, c), v) != 0;
			refcount += ref[i] == NULL;
			ref[i] = v;
			refcopy[i] = c;
		} else if (p < 90) {
			bad += map_del(&m, key(i, (int)rnd(2))) != ref[i];
			refcount -= ref[i] != NULL;
			ref[i] = NULL;
		} else {
			bad += map_get(&m, key(i, (int)rnd(2))) != ref[i];
		}
		if (op % 1000 == 999)
			bad += check(&m);
	}
	ok(!bad, "%d random put/del/get against a reference, full check every 1000", ops);
	for (int i = 0; i < NK; i++) {
		if (ref[i])
			bad += map_del(&m, key(i, 0)) != ref[i];
		ref[i] = NULL;
	}
	refcount = 0;
	bad += check(&m);
	ok(!bad && m.count == 0, "deleting everything empties the map");
	map_dispose(&m);
}

static void test_iterate(void)
{
	enum { N = 1000 };
	static char names[N][8];
	static int seen[N];
	map m;
	map_entry *e;
	size_t it = 0;
	int bad = 0, n = 0;

	map_init(&m);
	for (int i = 0; i < N; i++) {
		int len = snprintf(names[i], sizeof(names[i]), "k%d", i);
		map_put(&m, slice_make(names[i], (size_t)len), VAL(i + 1));
	}
	while ((e = map_next(&m, &it)) != NULL) {
		int i = (int)(uintptr_t)e->value - 1;
		bad += seen[i]++ != 0 || e->key.base != names[i];
		n++;
	}
	ok(!bad && n == N, "iteration visits each of %d keys once", N);

	/* Delete every third key as it is visited, then all the rest. */
	memset(seen, 0, sizeof(seen));
	it = 0;
	n = 0;
	while ((e = map_next(&m, &it)) != NULL) {
		int i = (int)(uintptr_t)e->value - 1;
		bad += seen[i]++ != 0;
		n++;
		if (i % 3 == 0)
			bad += map_del(&m, e->key) != VAL(i + 1);
	}
	ok(!bad && n == N, "deleting the current key while iterating visits each key once");
	is_int(m.count, N - (N + 2) / 3, "the deleted ones are gone");
	for (int i = 0; i < N; i++)
		bad += (map_get(&m, slice_cstr(names[i])) != NULL) != (i % 3 != 0);
	ok(!bad, "and the others are all there");
	it = 0;
	while ((e = map_next(&m, &it)) != NULL)
		map_del(&m, e->key);
	is_int(m.count, 0, "deleting every key while iterating empties the map");
	it = 0;
	ok(map_next(&m, &it) == NULL, "nothing left to visit");
	is_int(map_put(&m, SLICE_LIT("again"), VAL(1)), 0, "the map is reusable");
	ok(map_get(&m, SLICE_LIT("again")) == VAL(1), "after that");
	map_dispose(&m);
}

/* Keys that come and go must not grow the table without bound. */
static void test_churn(void)
{
	map m;
	static char names[16][16];
	int bad = 0;

	map_init(&m);
	for (int i = 0; i < 200000; i++) {
		char *s = names[i % 16];
		int len = snprintf(s, 16, "c%d", i);
		bad += map_put(&m, slice_make(s, (size_t)len), VAL(1)) != 0;
		if (i >= 10) {
			char *old = names[(i - 10) % 16];
			bad += map_del(&m, slice_cstr(old)) != VAL(1);
		}
	}
	ok(!bad && m.count == 10, "200000 keys through a map of 10");
	ok(m.cap <= 32, "the table stays small (%zu entries)", m.cap);
	map_dispose(&m);
}

static void test_oom(void)
{
	enum { N = 100 };
	static char names[N][8];
	map m;
	int bad = 0;

	map_init(&m);
	fail_alloc = 1;
	is_int(map_put(&m, SLICE_LIT("x"), VAL(1)), -1, "first put fails without memory");
	ok(m.tab == NULL && m.count == 0, "map unchanged");
	fail_alloc = 0;
	for (int i = 0; i < N; i++) {
		int len = snprintf(names[i], sizeof(names[i]), "k%d", i);
		slice k = slice_make(names[i], (size_t)len);
		if (m.used + 1 > m.cap * 7 / 10) {
			size_t cap = m.cap, count = m.count;
			fail_alloc = 1;
			bad += map_put(&m, k, VAL(i + 1)) != -1;
			bad += m.cap != cap || m.count != count || map_get(&m, k) != NULL;
			fail_alloc = 0;
		}
		bad += map_put(&m, k, VAL(i + 1)) != 0;
	}
	for (int i = 0; i < N; i++)
		bad += map_get(&m, slice_cstr(names[i])) != VAL(i + 1);
	ok(!bad, "every failed growth leaves the map as it was; retries succeed");
	fail_alloc = 1;
	is_int(map_put(&m, SLICE_LIT("k5"), VAL(7)), 0, "replacing needs no memory");
	ok(map_del(&m, SLICE_LIT("k6")) == VAL(7), "nor does deleting");
	fail_alloc = 0;
	map_dispose(&m);
}

int main(void)
{
	test_siphash();
	test_hash();
	test_basic();
	test_odd_keys();
	test_random();
	test_iterate();
	test_churn();
	test_oom();
	return tap_done();
}
