/*
 * json.h - cJSON in and out without changing numbers.
 *
 * cJSON keeps a number only as a double and prints a double whose value
 * does not fit an int with "%1.15g": 1795951088527890 comes out as
 * 1.79595108852789e+15 (a float to a Python client, where python-socketio
 * would have passed an int), and Open WebUI's nanosecond timestamps
 * (~1.7e18, past 2^53) lose their last digits. Events pass through the
 * gateway and the worker as parsed trees, so every number a producer or a
 * client sent must come out as it went in.
 *
 * json_parse() records each number's source text in the node's valuestring
 * (cJSON frees it with the node and copies it in cJSON_Duplicate), and
 * json_print() prints a number from that text when it has one; numbers
 * made in C print as integers when integral (exactly, up to 2^53), else
 * with the shortest "%.17g" form that reads back the same double. A
 * parsed number keeps printing its source text: to change one, replace
 * the node rather than setting its value.
 */
#ifndef TIDINGS_JSON_H
#define TIDINGS_JSON_H

#include <cJSON.h>
#include <stddef.h>

struct buf;

/* Parses text[0..len): one JSON value, only whitespace around it. NULL
 * when malformed. */
cJSON *json_parse(const char *text, size_t len);

/* Prints item compactly into a malloc'd string (NULL when out of memory). */
char *json_print(const cJSON *item);

/* Appends item's compact text to b; -1 (b unchanged) when out of room.
 * For text made of several JSON values, without a string per value. */
int json_append(struct buf *b, const cJSON *item);

#endif
