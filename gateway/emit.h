/*
 * emit.h - the producer API on the internal port: POST /api/v1/emit puts
 * an event for a user, a room or a socket on the ingress streams, where a
 * worker persists it (update_db) and fans it out; the answer is 202 once
 * the entry is durably queued in Redis.
 */
#ifndef TIDINGS_EMIT_H
#define TIDINGS_EMIT_H

#include "httpd.h"

void emit_route(conn *c, const http_request *req, slice body);

/* Shared by the internal API's routes: NULL when the request carries the
 * right bearer token, else why not. */
const char *api_check(const http_request *req);

/* Answers status with {"error": why}; `why` is ours, never client bytes. */
void api_refuse(conn *c, int status, const char *why);

/* 1 when s is fit for a key or a room name: [A-Za-z0-9._:@-]{1,200}. */
int api_valid_id(const char *s);

#endif
