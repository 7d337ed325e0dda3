#include "call.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rand.h"
#include "emit.h"
#include "gw.h"

#define TIMED_OUT "Event call timed out. The browser tab may be inactive or closed."

typedef struct pending_call {
	char id[24];
	conn *c; /* NULL once the HTTP client went away */
	char *sid, *user, *event, *data;
	wheel_timer timer;
} pending_call;

static map calls; /* id -> pending_call */

static void call_free(pending_call *p)
{
	map_del(&calls, slice_make(p->id, strlen(p->id)));
	gw_timer_cancel(&p->timer);
	free(p->sid);
	free(p->user);
	free(p->event);
	free(p->data);
	free(p);
}

static void answer(pending_call *p, const char *json)
{
	if (p->c)
		httpd_respond(p->c, 200, "application/json", NULL, json, strlen(json));
	call_free(p);
}

static void answer_error(pending_call *p, const char *why)
{
	char body[200];
	snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why);
	answer(p, body);
}

static void on_timeout(wheel_timer *t)
{
	pending_call *p = wheel_owner(t, pending_call, timer);
	log_info("call %s to sid=%s timed out", p->id, p->sid);
	answer_error(p, TIMED_OUT);
}

static void on_abort(conn *c, void *arg)
{
	((pending_call *)arg)->c = NULL;
}

void call_reply(slice id, slice data, slice error)
{
	pending_call *p = map_get(&calls, id);
	if (!p)
		return;
	if (error.len) {
		char why[160];
		snprintf(why, sizeof(why), "%.*s", (int)error.len, error.base);
		/* Only our own fixed reasons travel here; keep them JSON-safe. */
		for (char *q = why; *q; q++)
			if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
				*q = ' ';
		answer_error(p, why);
		return;
	}
	char *json = strndup(data.base ? data.base : "null", data.base ? data.len : 4);
	answer(p, json);
	free(json);
}

/* The session says where the socket is: send it the call there. */
static void on_session(void *arg, const char *gwid, const char *user, const char *err)
{
	pending_call *p = map_get(&calls, slice_cstr((const char *)arg));
	free(arg);
	if (!p)
		return;
	if (err) {
		answer_error(p, "not delivered: Redis unavailable");
		return;
	}
	/* Open WebUI's precondition: the session exists and, when the caller
	 * names the user, belongs to that user. */
	if (!gwid || (p->user && (!user || strcmp(user, p->user) != 0))) {
		answer_error(p, CALL_DISCONNECTED);
		return;
	}
	slice f[] = {SLICE_LIT("v"),      SLICE_LIT("1"),        SLICE_LIT("op"),
	             SLICE_LIT("call"),   SLICE_LIT("target"),   slice_cstr(p->sid),
	             SLICE_LIT("event"),  slice_cstr(p->event),  SLICE_LIT("data"),
	             slice_cstr(p->data), SLICE_LIT("reply_gw"), slice_cstr(bus_gateway_id()),
	             SLICE_LIT("call"),   slice_cstr(p->id)};
	if (bus_deliver(slice_cstr(gwid), f, 7) < 0)
		answer_error(p, "not delivered: Redis unavailable");
}

void call_route(conn *c, const http_request *req, slice body)
{
	if (!calls.cap)
		map_init(&calls);
	const char *why = api_check(req);
	if (why) {
		api_refuse(c, *gw.cfg.api_key ? 401 : 403, why);
		return;
	}
	cJSON *doc = json_parse(body.base, body.len);
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(doc, "sid");
	const cJSON *event = cJSON_GetObjectItemCaseSensitive(doc, "event");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
	const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(doc, "timeout_ms");
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(doc, "user_id");
	if (!cJSON_IsObject(doc))
		why = "body must be a JSON object";
	else if (!cJSON_IsString(sid) || !api_valid_id(sid->valuestring))
		why = "sid must be a socket id";
	else if (event && (!cJSON_IsString(event) || !*event->valuestring ||
	                   strlen(event->valuestring) > 200))
		why = "event must be a non-empty string";
	else if (timeout && (!cJSON_IsNumber(timeout) || timeout->valuedouble < 1 ||
	                     timeout->valuedouble > 86400000))
		why = "timeout_ms must be a number of milliseconds (1 to 86400000)";
	else if (user && (!cJSON_IsString(user) || !api_valid_id(user->valuestring)))
		why = "user_id must be a user id";
	if (why) {
		cJSON_Delete(doc);
		api_refuse(c, 400, why);
		return;
	}
	pending_call *p = calloc(1, sizeof(*p));
	char rnd[21];
	rand_id(rnd, 20);
	snprintf(p->id, sizeof(p->id), "c%s", rnd);
	p->sid = strdup(sid->valuestring);
	p->user = user ? strdup(user->valuestring) : NULL;
	p->event = strdup(event ? event->valuestring : "events");
	p->data = data ? json_print(data) : strdup("null");
	p->c = c;
	uint64_t ms = timeout ? (uint64_t)timeout->valuedouble : (uint64_t)gw.cfg.call_timeout_ms;
	cJSON_Delete(doc);
	map_put(&calls, slice_make(p->id, strlen(p->id)), p);
	gw_timer_start(&p->timer, on_timeout, ms);
	httpd_hold(c, on_abort, p);
	if (bus_session_get(slice_cstr(p->sid), on_session, strdup(p->id)) < 0)
		answer_error(p, "not delivered: Redis unavailable");
}
