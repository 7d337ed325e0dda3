#include "emit.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "common/buf.h"
#include "common/ident.h"
#include "common/jscan.h"
#include "common/log.h"
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

/* One emit of the body, read in place: spans of its members (JS_NONE when
 * absent) and the strings the entry needs, decoded. */
typedef struct emit_view {
	jspan event, to, data, update_db, id;
	const char *ttype; /* which of {user}, {room}, {sid} */
	char target[MAX_NAME + 1];
	char name[MAX_NAME + 1]; /* the event */
	char eid[MAX_NAME + 1];  /* the caller's id, or "" */
} emit_view;

/* A string member decoded into out (MAX_NAME + 1 bytes): 1 when it is a
 * string that fits, 0 otherwise. */
static int name_of(const jspan *v, char *out)
{
	return v->t == JS_STRING && jscan_str(v, out, MAX_NAME + 1) >= 0;
}

/* Reads emit o into *e; returns why it cannot be queued, or NULL. */
static const char *check(const jspan *o, emit_view *e)
{
	static const char *const kinds[] = {"user", "room", "sid"};
	static const char *const names[] = {"event", "to", "data", "update_db", "id"};
	jspan *slots[] = {&e->event, &e->to, &e->data, &e->update_db, &e->id};
	if (o->t != JS_OBJECT)
		return "an emit must be a JSON object";
	/* One walk over the members, the first of each name kept (as cJSON
	 * finds it): the data, maybe large, is skipped over once, not once
	 * per name looked up. */
	size_t it = 0;
	jspan k, v;
	while (jscan_member(o, &it, &k, &v))
		for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
			if (slots[i]->t == JS_NONE && jscan_key_is(&k, names[i])) {
				*slots[i] = v;
				break;
			}
	if (!name_of(&e->event, e->name) || !*e->name)
		return "event must be a non-empty string";
	int nto = 0, good = 0;
	for (int i = 0; e->to.t == JS_OBJECT && i < 3; i++) {
		jspan t;
		if (jscan_find(&e->to, kinds[i], &t)) {
			nto++;
			e->ttype = kinds[i];
			good = name_of(&t, e->target) && ident_valid(e->target, MAX_NAME);
		}
	}
	if (nto != 1 || !good)
		return "to must be exactly one of {user}, {room}, {sid}, a valid id";
	if (e->update_db.t != JS_NONE && e->update_db.t != JS_TRUE && e->update_db.t != JS_FALSE)
		return "update_db must be a boolean";
	e->eid[0] = '\0';
	if (e->id.t != JS_NONE && (!name_of(&e->id, e->eid) || !ident_valid(e->eid, MAX_NAME)))
		return "id must be 1-200 characters of [A-Za-z0-9._:@-]";
	return NULL;
}

/* XADDs checked emit e as entry k of r. Its data goes on as it came, not
 * parsed into a tree and printed back: only the whitespace between tokens
 * is dropped (stream values are compact JSON, docs/redis.md). */
static int queue(emit_req *r, int k, const emit_view *e)
{
	static buf data = {NULL, 0, 0, SIZE_MAX}; /* reused: emits are queued one at a time */
	slice d = SLICE_LIT("null");
	if (e->data.t != JS_NONE) {
		if (data.cap > 65536)
			buf_dispose(&data); /* a large emit's block is not kept for ever */
		buf_reset(&data);
		if (buf_reserve(&data, e->data.n) < 0)
			return -1;
		d = slice_make(data.data, jscan_compact(&e->data, data.data));
	}
	char *rid = r->ids[k];
	if (*e->eid) {
		memcpy(rid, e->eid, strlen(e->eid) + 1);
	} else {
		/* An id of our own makes retries of this entry idempotent too. */
		bus_event_id(rid, MAX_NAME + 1, "emit-");
	}
	/* Events about one chat keep their order: they share its shard. */
	char skey[MAX_NAME + 16], chat[MAX_NAME + 1];
	jspan c;
	if (jscan_find(&e->data, "chat_id", &c) && name_of(&c, chat) && ident_valid(chat, MAX_NAME))
		snprintf(skey, sizeof(skey), "chat:%s", chat);
	else
		snprintf(skey, sizeof(skey), "%s:%s", e->ttype, e->target);
	slice f[] = {
	    SLICE_LIT("v"),         SLICE_LIT("1"),
	    SLICE_LIT("id"),        slice_cstr(rid),
	    SLICE_LIT("kind"),      SLICE_LIT("emit"),
	    SLICE_LIT("event"),     slice_cstr(e->name),
	    SLICE_LIT("to_type"),   slice_cstr(e->ttype),
	    SLICE_LIT("to"),        slice_cstr(e->target),
	    SLICE_LIT("data"),      d,
	    SLICE_LIT("update_db"), e->update_db.t == JS_TRUE ? SLICE_LIT("1") : SLICE_LIT("0")};
	return bus_emit(f, 8, slice_cstr(skey), on_queued, r);
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
	jspan doc, o;
	if (jscan_doc(body.base, body.len, &doc) < 0 || (doc.t != JS_OBJECT && doc.t != JS_ARRAY)) {
		api_refuse(c, 400, "body must be a JSON object or an array of them");
		return;
	}
	int batch = doc.t == JS_ARRAY;
	/* One walk over the emits, checking each as it comes: the views grow
	 * with the batch, so the body is not walked once more to count it. */
	emit_view *ev = NULL;
	int n = 0, cap = 0, oom = 0;
	char why[300];
	why[0] = 0;
	size_t it = 0;
	for (;;) {
		if (batch ? !jscan_item(&doc, &it, &o) : n == 1)
			break;
		if (n == MAX_BATCH) {
			snprintf(why, sizeof(why), "a batch holds 1 to %d emits", MAX_BATCH);
			break;
		}
		if (n == cap) {
			int ncap = cap ? cap * 2 : (batch ? 16 : 1);
			emit_view *g = realloc(ev, (size_t)ncap * sizeof(*ev));
			if (!g) {
				oom = 1;
				break;
			}
			memset(g + cap, 0, (size_t)(ncap - cap) * sizeof(*ev));
			ev = g;
			cap = ncap;
		}
		const char *bad = check(batch ? &o : &doc, &ev[n]);
		if (bad && batch)
			snprintf(why, sizeof(why), "emit %d: %s", n, bad);
		else if (bad)
			snprintf(why, sizeof(why), "%s", bad);
		if (bad)
			break;
		n++;
	}
	if (!why[0] && !oom && n == 0)
		snprintf(why, sizeof(why), "a batch holds 1 to %d emits", MAX_BATCH);
	/* n < 1 implies why is set; spelled out for the static analyser. */
	if (why[0] || oom || n < 1) {
		free(ev);
		api_refuse(c, oom ? 503 : 400, oom ? "out of memory" : why);
		return;
	}
	emit_req *r = calloc(1, sizeof(*r));
	if (r)
		r->ids = calloc((size_t)n, sizeof(*r->ids));
	if (!r || !r->ids) {
		free(r);
		free(ev);
		api_refuse(c, 503, "out of memory");
		return;
	}
	r->c = c;
	r->n = n;
	r->batch = batch;
	/* Held at one while queuing, so no early answer can free it. */
	r->waiting = 1;
	for (int k = 0; k < n; k++) {
		r->waiting++;
		if (queue(r, k, &ev[k]) < 0) {
			r->waiting--;
			r->err = "Redis unavailable";
			break;
		}
	}
	free(ev);
	if (r->err && r->waiting == 1) {
		/* Nothing in flight: answer now. */
		api_refuse(c, 503, "not queued: Redis unavailable");
		req_free(r);
		return;
	}
	httpd_hold(c, on_abort, r);
	on_queued(r, NULL);
}
