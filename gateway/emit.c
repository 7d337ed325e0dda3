#include "emit.h"

#include <cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "common/ident.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rand.h"
#include "gw.h"

#define MAX_NAME 200

typedef struct emit_req {
	conn *c; /* NULL once the client went away */
	char id[MAX_NAME + 1];
} emit_req;

void api_refuse(conn *c, int status, const char *why)
{
	/* The reason is ours (never client bytes), so it needs no escaping. */
	char body[600];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why);
	httpd_respond(c, status, "application/json", NULL, body, (size_t)n);
}

int api_valid_id(const char *s)
{
	return ident_valid(s, MAX_NAME);
}

static void on_abort(conn *c, void *arg)
{
	((emit_req *)arg)->c = NULL;
}

static void on_queued(void *arg, const char *err)
{
	emit_req *r = arg;
	if (r->c) {
		if (err)
			api_refuse(r->c, 503, "not queued: Redis unavailable");
		else {
			char body[300];
			int n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", r->id);
			httpd_respond(r->c, 202, "application/json", NULL, body, (size_t)n);
		}
	}
	if (err)
		log_warn("emit %s not queued: %s", r->id, err);
	free(r);
}

static int authorized(const http_request *req)
{
	slice v;
	size_t kl = strlen(gw.cfg.api_key);
	if (!http_header_get(req, "authorization", &v) || v.len != 7 + kl ||
	    strncasecmp(v.base, "Bearer ", 7) != 0)
		return 0;
	return CRYPTO_memcmp(v.base + 7, gw.cfg.api_key, kl) == 0;
}

const char *api_check(const http_request *req)
{
	if (!*gw.cfg.api_key)
		return "API disabled: set TIDINGS_API_KEY";
	if (!authorized(req))
		return "missing or wrong bearer token";
	return NULL;
}

void emit_route(conn *c, const http_request *req, slice body)
{
	const char *denied = api_check(req);
	if (denied) {
		api_refuse(c, *gw.cfg.api_key ? 401 : 403, denied);
		return;
	}
	cJSON *doc = json_parse(body.base, body.len);
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		api_refuse(c, 400, "body must be a JSON object");
		return;
	}
	const cJSON *event = cJSON_GetObjectItemCaseSensitive(doc, "event");
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(doc, "to");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
	const cJSON *update_db = cJSON_GetObjectItemCaseSensitive(doc, "update_db");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
	const char *why = NULL;
	const char *ttype = NULL, *target = NULL;
	int nto = 0;
	static const char *const kinds[] = {"user", "room", "sid"};
	for (int i = 0; cJSON_IsObject(to) && i < 3; i++) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(to, kinds[i]);
		if (t) {
			nto++;
			ttype = kinds[i];
			target = cJSON_IsString(t) ? t->valuestring : NULL;
		}
	}
	if (!cJSON_IsString(event) || !*event->valuestring || strlen(event->valuestring) > MAX_NAME)
		why = "event must be a non-empty string";
	else if (nto != 1 || !target || !ident_valid(target, MAX_NAME))
		why = "to must be exactly one of {user}, {room}, {sid}, a valid id";
	else if (update_db && !cJSON_IsBool(update_db))
		why = "update_db must be a boolean";
	else if (id && (!cJSON_IsString(id) || !ident_valid(id->valuestring, MAX_NAME)))
		why = "id must be 1-200 characters of [A-Za-z0-9._:@-]";
	if (why) {
		cJSON_Delete(doc);
		api_refuse(c, 400, why);
		return;
	}
	emit_req *r = calloc(1, sizeof(*r));
	if (id) {
		snprintf(r->id, sizeof(r->id), "%s", id->valuestring);
	} else {
		/* An id of our own makes retries of this entry idempotent too. */
		char rnd[23];
		rand_id(rnd, 22);
		snprintf(r->id, sizeof(r->id), "emit-%s", rnd);
	}
	char *djson = data ? json_print(data) : strdup("null");
	/* Events about one chat keep their order: they share its shard. */
	char skey[MAX_NAME + 16];
	const cJSON *chat = cJSON_GetObjectItemCaseSensitive(data, "chat_id");
	if (cJSON_IsString(chat) && ident_valid(chat->valuestring, MAX_NAME))
		snprintf(skey, sizeof(skey), "chat:%s", chat->valuestring);
	else
		snprintf(skey, sizeof(skey), "%s:%s", ttype, target);
	slice f[] = {
	    SLICE_LIT("v"),         SLICE_LIT("1"),
	    SLICE_LIT("id"),        slice_cstr(r->id),
	    SLICE_LIT("kind"),      SLICE_LIT("emit"),
	    SLICE_LIT("event"),     slice_cstr(event->valuestring),
	    SLICE_LIT("to_type"),   slice_cstr(ttype),
	    SLICE_LIT("to"),        slice_cstr(target),
	    SLICE_LIT("data"),      slice_cstr(djson),
	    SLICE_LIT("update_db"), cJSON_IsTrue(update_db) ? SLICE_LIT("1") : SLICE_LIT("0")};
	r->c = c;
	if (bus_emit(f, 8, slice_cstr(skey), on_queued, r) < 0) {
		free(r);
		api_refuse(c, 503, "not queued: Redis unavailable");
	} else {
		httpd_hold(c, on_abort, r);
	}
	free(djson);
	cJSON_Delete(doc);
}
