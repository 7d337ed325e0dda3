/*
 * libFuzzer driver for common/jscan.c. The input sits in a heap block of
 * exactly its size (ASan flags any read past it). jscan accepts a subset of
 * what cJSON parses, and its walk must see the tree cJSON builds: for an
 * accepted document, every span it yields parses on its own to a value of
 * the same type, containers have as many elements as cJSON's, members the
 * same names, and decoded strings cJSON's bytes.
 */
#include "common/jscan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tests/fuzz/check.h"

static int same_type(jstype t, const cJSON *j)
{
	switch (t) {
	case JS_NULL: return cJSON_IsNull(j);
	case JS_FALSE: return cJSON_IsFalse(j);
	case JS_TRUE: return cJSON_IsTrue(j);
	case JS_NUMBER: return cJSON_IsNumber(j);
	case JS_STRING: return cJSON_IsString(j);
	case JS_ARRAY: return cJSON_IsArray(j);
	case JS_OBJECT: return cJSON_IsObject(j);
	default: return 0;
	}
}

static void walk(const jspan *v, const cJSON *j, int depth)
{
	CHECK(same_type(v->t, j));
	if (v->t == JS_STRING) {
		char out[512];
		int n = jscan_str(v, out, sizeof(out));
		/* cJSON stops a string at a \u0000; jscan refuses to decode it. */
		if (n >= 0)
			CHECK(strcmp(out, j->valuestring) == 0 && (size_t)n == strlen(out));
		return;
	}
	if (v->t != JS_ARRAY && v->t != JS_OBJECT)
		return;
	size_t it = 0;
	jspan k, e;
	const cJSON *c = j->child;
	int more, cut = 0;
	/* A key that does not decode (a \u0000 in it) is one cJSON cut short,
	 * and may then shadow a later key: lookups are compared without. */
	while (v->t == JS_OBJECT && jscan_member(v, &it, &k, &e)) {
		char name[512];
		cut |= jscan_str(&k, name, sizeof(name)) < 0;
	}
	it = 0;
	while ((more = v->t == JS_ARRAY ? jscan_item(v, &it, &e) : jscan_member(v, &it, &k, &e))) {
		CHECK(c != NULL);
		if (v->t == JS_OBJECT) {
			char name[512];
			CHECK(k.t == JS_STRING);
			int nl = jscan_str(&k, name, sizeof(name));
			if (nl >= 0) {
				CHECK(strcmp(name, c->string) == 0);
				jspan f;
				if (nl < 255 && !cut) {
					CHECK(jscan_find(v, name, &f));
					CHECK(same_type(f.t,
					                cJSON_GetObjectItemCaseSensitive(j, name)));
				}
			}
		}
		if (depth < 64) {
			cJSON *alone = json_parse(e.p, e.n);
			CHECK(alone != NULL);
			CHECK(same_type(e.t, alone));
			cJSON_Delete(alone);
		}
		walk(&e, c, depth + 1);
		c = c->next;
	}
	CHECK(c == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	jspan v;
	if (jscan_doc(p, size, &v) == 0) {
		cJSON *j = json_parse(p, size);
		CHECK(j != NULL);
		CHECK(v.p >= p && v.p + v.n <= p + size);
		walk(&v, j, 0);
		/* Compacted, it is the same document. */
		char *c = malloc(v.n);
		if (c) {
			size_t cn = jscan_compact(&v, c);
			jspan cv;
			CHECK(cn <= v.n && jscan_doc(c, cn, &cv) == 0 && cv.n == cn);
			cJSON *cj = json_parse(c, cn);
			char *a = json_print(j), *b = cj ? json_print(cj) : NULL;
			CHECK(a && b && strcmp(a, b) == 0);
			free(a);
			free(b);
			cJSON_Delete(cj);
			free(c);
		}
		cJSON_Delete(j);
	}
	free(p);
	return 0;
}
