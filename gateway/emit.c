#include "emit.h"

#include <cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "common/buf.h"
#include "common/ident.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rand.h"
#include "gw.h"

#define MAX_NAME 200

/* Most emits in one request: the answer lists their ids, and the request
 * holds a slot per emit until Redis has answered them all. */
#define MAX_BATCH 1000

/* One request: a single emit, or a batch whose answer waits for every
 * entry's XADD. */
typedef struct emit_req {
	conn *c; /* NULL once the client went away */
	int n, waiting, batch;
	const char *err; /* the first failure */
	char (*ids)[MAX_NAME + 1];
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

static void req_free(emit_req *r)
{
	free(r->ids);
	free(r);
}

/* {"id": ...} for one emit, {"ids": [...]} for a batch, in its order. */
static void answer(emit_req *r)
{
	buf b;
	buf_init(&b, 0);
	int rc = buf_append_cstr(&b, r->batch ? "{\"ids\":[" : "{\"id\":");
	for (int i = 0; i < r->n; i++) {
		rc |= buf_append_cstr(&b, i ? ",\"" : "\"");
		rc |= buf_append_cstr(&b, r->ids[i]); /* validated: no escaping needed */
		rc |= buf_append_byte(&b, '"');
	}
	rc |= buf_append_cstr(&b, r->batch ? "]}" : "}");
	if (rc)
		api_refuse(r->c, 503, "out of memory");
	else
		httpd_respond(r->c, 202, "application/json", NULL, b.data, b.len);
	buf_dispose(&b);
}

static void on_queued(void *arg, const char *err)
{
	emit_req *r = arg;
	if (err) {
		if (!r->err)
			r->err = err;
		log_warn("emit not queued: %s", err);
	}
	if (--r->waiting > 0)
		return;
	if (r->c) {
		if (r->err)
			api_refuse(r->c, 503, "not queued: Redis unavailable");
		else
			answer(r);
	}
	req_free(r);
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

/* The target of emit o ({user}, {room} or {sid}: *ttype, *target, which
 * is NULL when not a string); returns how many of the three o names. */
static int target_of(const cJSON *o, const char **ttype, const char **target)
{
	static const char *const kinds[] = {"user", "room", "sid"};
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(o, "to");
	int nto = 0;
	*ttype = *target = NULL;
	for (int i = 0; cJSON_IsObject(to) && i < 3; i++) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(to, kinds[i]);
		if (t) {
			nto++;
			*ttype = kinds[i];
			*target = cJSON_IsString(t) ? t->valuestring : NULL;
		}
	}
	return nto;
}

/* Why emit o cannot be queued, or NULL. */
static const char *check(const cJSON *o)
{
	if (!cJSON_IsObject(o))
		return "an emit must be a JSON object";
	const cJSON *event = cJSON_GetObjectItemCaseSensitive(o, "event");
	const cJSON *update_db = cJSON_GetObjectItemCaseSensitive(o, "update_db");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	const char *ttype, *target;
	int nto = target_of(o, &ttype, &target);
	if (!cJSON_IsString(event) || !*event->valuestring || strlen(event->valuestring) > MAX_NAME)
		return "event must be a non-empty string";
	if (nto != 1 || !target || !ident_valid(target, MAX_NAME))
		return "to must be exactly one of {user}, {room}, {sid}, a valid id";
	if (update_db && !cJSON_IsBool(update_db))
		return "update_db must be a boolean";
	if (id && (!cJSON_IsString(id) || !ident_valid(id->valuestring, MAX_NAME)))
		return "id must be 1-200 characters of [A-Za-z0-9._:@-]";
	return NULL;
}

/* XADDs checked emit o as entry k of r. */
static int queue(emit_req *r, int k, const cJSON *o)
{
	const char *ttype, *target;
	target_of(o, &ttype, &target);
	const cJSON *event = cJSON_GetObjectItemCaseSensitive(o, "event");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	char *rid = r->ids[k];
	if (id) {
		snprintf(rid, MAX_NAME + 1, "%s", id->valuestring);
	} else {
		/* An id of our own makes retries of this entry idempotent too. */
		char rnd[23];
		rand_id(rnd, 22);
		snprintf(rid, MAX_NAME + 1, "emit-%s", rnd);
	}
	char *djson = data ? json_print(data) : strdup("null");
	if (!djson)
		return -1;
	/* Events about one chat keep their order: they share its shard. */
	char skey[MAX_NAME + 16];
	const cJSON *chat = cJSON_GetObjectItemCaseSensitive(data, "chat_id");
	if (cJSON_IsString(chat) && ident_valid(chat->valuestring, MAX_NAME))
		snprintf(skey, sizeof(skey), "chat:%s", chat->valuestring);
	else
		snprintf(skey, sizeof(skey), "%s:%s", ttype, target);
	slice f[] = {SLICE_LIT("v"),
	             SLICE_LIT("1"),
	             SLICE_LIT("id"),
	             slice_cstr(rid),
	             SLICE_LIT("kind"),
	             SLICE_LIT("emit"),
	             SLICE_LIT("event"),
	             slice_cstr(event->valuestring),
	             SLICE_LIT("to_type"),
	             slice_cstr(ttype),
	             SLICE_LIT("to"),
	             slice_cstr(target),
	             SLICE_LIT("data"),
	             slice_cstr(djson),
	             SLICE_LIT("update_db"),
	             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "update_db"))
	                 ? SLICE_LIT("1")
	                 : SLICE_LIT("0")};
	int rc = bus_emit(f, 8, slice_cstr(skey), on_queued, r);
	free(djson);
	return rc;
}

/* The body is one emit object, or an array of up to MAX_BATCH of them
 * (a busy producer's emits in one request: one parse, one answer, their
 * XADDs pipelined). A batch is checked whole before anything is queued,
 * so a refused batch queued nothing; entries keep the array's order per
 * chat, as separate requests sent in that order would. */
void emit_route(conn *c, const http_request *req, slice body)
{
	const char *denied = api_check(req);
	if (denied) {
		api_refuse(c, *gw.cfg.api_key ? 401 : 403, denied);
		return;
	}
	cJSON *doc = json_parse(body.base, body.len);
	int batch = cJSON_IsArray(doc);
	int n = batch ? cJSON_GetArraySize(doc) : 1;
	char why[300];
	why[0] = 0;
	if (!cJSON_IsObject(doc) && !batch)
		snprintf(why, sizeof(why), "body must be a JSON object or an array of them");
	else if (batch && (n < 1 || n > MAX_BATCH))
		snprintf(why, sizeof(why), "a batch holds 1 to %d emits", MAX_BATCH);
	int k = 0;
	for (const cJSON *o = batch ? doc->child : doc; o && !why[0]; o = batch ? o->next : NULL) {
		const char *bad = check(o);
		if (bad && batch)
			snprintf(why, sizeof(why), "emit %d: %s", k, bad);
		else if (bad)
			snprintf(why, sizeof(why), "%s", bad);
		k++;
	}
	if (why[0]) {
		cJSON_Delete(doc);
		api_refuse(c, 400, why);
		return;
	}
	emit_req *r = calloc(1, sizeof(*r));
	if (r)
		r->ids = calloc((size_t)n, sizeof(*r->ids));
	if (!r || !r->ids) {
		free(r);
		cJSON_Delete(doc);
		api_refuse(c, 503, "out of memory");
		return;
	}
	r->c = c;
	r->n = n;
	r->batch = batch;
	/* Held at one while queuing, so no early answer can free it. */
	r->waiting = 1;
	k = 0;
	for (const cJSON *o = batch ? doc->child : doc; o; o = batch ? o->next : NULL) {
		r->waiting++;
		if (queue(r, k++, o) < 0) {
			r->waiting--;
			r->err = "Redis unavailable";
			break;
		}
	}
	cJSON_Delete(doc);
	if (r->err && r->waiting == 1) {
		/* Nothing in flight: answer now. */
		api_refuse(c, 503, "not queued: Redis unavailable");
		req_free(r);
		return;
	}
	httpd_hold(c, on_abort, r);
	on_queued(r, NULL);
}
