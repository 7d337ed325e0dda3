/* Tests common/json.c: every number comes out as it went in (integers past
 * 2^31 and 2^53, exponents, negative zero, fractions), whatever the
 * nesting, strings that look like numbers or hide quotes and escapes,
 * duplicate keys; numbers made in C print as integers when integral;
 * strings are escaped as JSON requires; the parse is strict about what
 * follows the value; inputs sit against a guard page. */
#include "common/json.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"

static cJSON *parse_guarded(const char *s)
{
	size_t n = strlen(s);
	char *g = tap_guard(s, n);
	cJSON *j = json_parse(g, n);
	tap_unguard(g, n);
	return j;
}

/* Parsing then printing gives back the compact text. */
static void round_trip(const char *in)
{
	cJSON *j = parse_guarded(in);
	char *out = j ? json_print(j) : NULL;
	is_str(out ? out : "(parse failed)", in, "round trip: %s", in);
	free(out);
	cJSON_Delete(j);
}

int main(void)
{
	static const char *const same[] = {
	    "1795951088527890",
	    "1700000000123456789",
	    "-9223372036854775808",
	    "123456789012345678901234567890",
	    "0",
	    "-0",
	    "0.1",
	    "1e400",
	    "2.5E-3",
	    "[1,2.0,3e2,-4]",
	    "{\"ts\":1795951088527890,\"n\":[1700000000123456789,{\"x\":-1.5}]}",
	    "{\"s\":\"12 \\\" 34\",\"t\":\"\\\\\",\"n\":5}",
	    "{\"a\":1,\"a\":2}",
	    "[\"1\",1,\"-\",-1,true,false,null]",
	    "\"unicode \xc3\xa9 \xf0\x9f\x98\x80\"",
	    "{\"deep\":[[[[[[42]]]]]]}",
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		round_trip(same[i]);

	cJSON *j = parse_guarded(" {\"a\" : [ 1 , 20 ] } \n");
	char *s = json_print(j);
	is_str(s, "{\"a\":[1,20]}", "whitespace is dropped, numbers kept");
	free(s);
	cJSON *dup = cJSON_Duplicate(j, 1);
	s = json_print(dup);
	is_str(s, "{\"a\":[1,20]}", "a duplicated tree keeps the number texts");
	free(s);
	cJSON_Delete(dup);
	cJSON_Delete(j);

	ok(parse_guarded("{} x") == NULL, "text after the value is refused");
	ok(parse_guarded("[1,") == NULL, "a truncated value is refused");
	ok(parse_guarded("") == NULL, "nothing is refused");

	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "big", 1795951088527890.0);
	cJSON_AddNumberToObject(o, "neg", -3000000000.0);
	cJSON_AddNumberToObject(o, "frac", 0.1);
	cJSON_AddNumberToObject(o, "third", 1.0 / 3.0);
	cJSON_AddNumberToObject(o, "huge", 1e300);
	cJSON_AddStringToObject(o, "ctl", "a\"b\\c\n\x01");
	cJSON_AddItemToObject(o, "raw", cJSON_CreateRaw("{\"k\":1700000000123456789}"));
	s = json_print(o);
	is_str(s,
	       "{\"big\":1795951088527890,\"neg\":-3000000000,\"frac\":0.1,"
	       "\"third\":0.33333333333333331,\"huge\":1e+300,\"ctl\":\"a\\\"b\\\\c\\n\\u0001\","
	       "\"raw\":{\"k\":1700000000123456789}}",
	       "numbers made in C: integral ones as integers, others shortest exact; strings "
	       "escaped; raw text verbatim");
	free(s);
	cJSON_SetNumberValue(cJSON_GetObjectItem(o, "big"), 7);
	s = json_print(cJSON_GetObjectItem(o, "big"));
	is_str(s, "7", "a number set in C prints its value");
	free(s);
	cJSON_Delete(o);
	return tap_done();
}
