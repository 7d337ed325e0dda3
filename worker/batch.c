/*
 * batch.c - applying a batch of ingress entries (see batch.h), and the
 * handlers of the client events of catalogue section 2.
 *
 * A handler looks at one entry and adds to the batch's transaction the
 * statements that authorise it and carry its effect; the result callbacks
 * (which run in order, during the transaction) turn authorised outcomes
 * into fan-out operations. Authorisation is done in SQL against the
 * identity the gateway verified (entry field `user`), at use time, never
 * from a connect-time snapshot. Effects are gated on inserting the event
 * id into tidings_event in the same statement, so a redelivered event
 * changes nothing; the `events` updates of a batch applied as a whole are
 * merged (worker/persist.h) and their ids recorded in the same
 * transaction by a statement that a redelivered id makes fail, after which
 * the batch is applied one entry at a time.
 */
#include "batch.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"
#include "fanout.h"
#include "persist.h"
#include "wk.h"
#include "ydoc.h"

typedef struct batch {
	wk_entry *e;
	int n;
	/* Entries [lo, hi) are the ones being applied: the whole batch, or one
	 * entry at a time after the whole failed on a statement error (so one
	 * poisonous entry is found, parked and acknowledged, and the rest
	 * applied: a shard never stalls behind it). */
	int lo, hi;
	int split;
	unsigned flags;
	persist_merge pm; /* the `events` updates dispatched, when B_MERGE */
	void (*done)(void);
	fanout_list out;
	int attempt;
	struct event *retry_ev;
} batch;

enum {
	/* [lo, hi) is applied as a whole: its persisted `events` updates are
	 * merged (worker/persist.h) rather than a statement each. */
	B_MERGE = 1u << 0,
	/* The merged updates' event ids met one recorded before. */
	B_REDELIVERED = 1u << 1,
};

static void start(batch *b);

/* ---- entries ---- */

/* Binary attachments att0, att1, ... up to the first missing one. */
static void entry_decode_att(wk_entry *e, const redisReply *kv)
{
	char name[16];
	for (int k = 0; k < 16; k++) {
		snprintf(name, sizeof(name), "att%d", k);
		slice a = redis_field(kv, name);
		if (!a.base)
			break;
		wk_att *att = realloc(e->att, (size_t)(k + 1) * sizeof(*att));
		if (!att)
			break;
		e->att = att;
		e->att[k].p = malloc(a.len ? a.len : 1);
		if (!e->att[k].p)
			break;
		memcpy(e->att[k].p, a.base, a.len);
		e->att[k].len = a.len;
		e->natt = k + 1;
	}
}

/* The string fields an entry keeps, in wk_entry's order (docs/redis.md). */
static const char *const kept[] = {"id",  "kind",  "gw",   "sid",     "user",
                                   "nsp", "event", "data", "to_type", "to"};
#define NKEPT (sizeof(kept) / sizeof(kept[0]))

/* The kept fields are copied in one pass over the entry and into one
 * allocation: a batch holds thousands of entries, and ten lookups and ten
 * strndup each showed in the worker's profile. A field given twice counts
 * the first time, as redis_field reads it. */
int entry_decode(wk_entry *e, int shard, const redisReply *item)
{
	memset(e, 0, sizeof(*e));
	e->ack = -1;
	if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
	    item->element[0]->type != REDIS_REPLY_STRING ||
	    item->element[1]->type != REDIS_REPLY_ARRAY)
		return -1;
	const redisReply *kv = item->element[1];
	e->shard = shard;
	snprintf(e->id, sizeof(e->id), "%s", item->element[0]->str);
	slice f[NKEPT], v = SLICE_NULL, ack = SLICE_NULL, upd = SLICE_NULL;
	size_t total = 0;
	for (size_t k = 0; k < NKEPT; k++)
		f[k] = SLICE_NULL;
	for (size_t i = 0; i + 1 < kv->elements; i += 2) {
		const redisReply *name = kv->element[i], *val = kv->element[i + 1];
		if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
			continue;
		slice n = slice_make(name->str, name->len), x = slice_make(val->str, val->len);
		if (slice_eq_cstr(n, "v")) {
			v = v.base ? v : x;
		} else if (slice_eq_cstr(n, "ack")) {
			ack = ack.base ? ack : x;
		} else if (slice_eq_cstr(n, "update_db")) {
			upd = upd.base ? upd : x;
		} else {
			for (size_t k = 0; k < NKEPT; k++) {
				if (!f[k].base && slice_eq_cstr(n, kept[k])) {
					f[k] = x;
					total += x.len + 1;
					break;
				}
			}
		}
	}
	char *p = e->strs = malloc(total ? total : 1);
	if (!p)
		return -1;
	char **dst[NKEPT] = {&e->eid, &e->kind,  &e->gw,   &e->sid,     &e->user,
	                     &e->nsp, &e->event, &e->data, &e->to_type, &e->to};
	for (size_t k = 0; k < NKEPT; k++) {
		if (!f[k].base)
			continue;
		memcpy(p, f[k].base, f[k].len);
		p[f[k].len] = '\0';
		*dst[k] = p;
		p += f[k].len + 1;
	}
	e->update_db = slice_eq_cstr(upd, "1");
	entry_decode_att(e, kv);
	if (ack.base && ack.len && ack.len < 20)
		e->ack = strtoll(ack.base, NULL, 10);
	int emit = e->kind && strcmp(e->kind, "emit") == 0;
	if (!slice_eq_cstr(v, "1") || !e->eid || !e->kind ||
	    (emit ? !e->event || !e->to_type || !e->to : !e->user || !*e->user)) {
		entry_dispose(e);
		return -1;
	}
	if (e->data) {
		/* A client event's data is its argument list; an emit's is its
		 * one argument, kept as a one-element list for the same access. */
		cJSON *d = json_parse(e->data, strlen(e->data));
		if (emit && d) {
			e->args = cJSON_CreateArray();
			cJSON_AddItemToArray(e->args, d);
		} else {
			e->args = d;
		}
		if (!cJSON_IsArray(e->args)) {
			entry_dispose(e);
			return -1;
		}
	}
	return 0;
}

void entry_dispose(wk_entry *e)
{
	free(e->strs);
	cJSON_Delete(e->args);
	for (int k = 0; k < e->natt; k++)
		free(e->att[k].p);
	free(e->att);
	memset(e, 0, sizeof(*e));
}

static const char *arg_str(const wk_entry *e, const char *field)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(e->args, 0), field);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *arg_obj(const wk_entry *e, const char *field)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(e->args, 0), field);
}

/* ---- time, coalescing ---- */

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A timestamp from a payload as SQL bigint text: the number exactly as it
 * was written when it is a plain positive integer (nanosecond times are
 * past 2^53, where a double loses digits), else its value, else now (ns). */
static void time_text(char out[24], const cJSON *v)
{
	size_t n = cJSON_IsNumber(v) && v->valuestring ? strlen(v->valuestring) : 0;
	if (n && (n < 19 || (n == 19 && strcmp(v->valuestring, "9223372036854775807") <= 0)) &&
	    strspn(v->valuestring, "0123456789") == n && v->valuestring[0] != '0') {
		snprintf(out, 24, "%s", v->valuestring);
		return;
	}
	if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < 9.2e18)
		snprintf(out, 24, "%lld", (long long)v->valuedouble);
	else
		snprintf(out, 24, "%lld", (long long)now_ns());
}

/* Writes that only move a timestamp forward (heartbeat, read markers) are
 * coalesced: at most one per key per window. A key's events all land on
 * one shard, hence on this worker, so a process-local table is enough; a
 * write skipped here is at most one window stale. */
#define COALESCE_SLOTS 4096
static struct {
	uint64_t hash;
	uint64_t until;
} coalesce_tab[COALESCE_SLOTS];

static uint64_t fnv64(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = a; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = b; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static int coalesced(const char *kind, const char *a, const char *b, int64_t window_ms)
{
	if (window_ms <= 0)
		return 0;
	char k[512];
	snprintf(k, sizeof(k), "%s|%s", kind, a);
	uint64_t h = fnv64(k, b);
	uint64_t now = wk_now();
	size_t i = h % COALESCE_SLOTS;
	if (coalesce_tab[i].hash == h && now < coalesce_tab[i].until)
		return 1;
	coalesce_tab[i].hash = h;
	coalesce_tab[i].until = now + (uint64_t)window_ms;
	return 0;
}

/* ---- SQL shared by handlers ---- */

/* Channels user $1 may see (catalogue 8.4): group/dm channels with an
 * active membership; standard channels owned or granted read to the user,
 * to everyone, or to one of the user's groups; never deleted or archived. */
#define CHANNEL_ACCESS(c, u)                                                                       \
	"(" c ".deleted_at IS NULL AND " c ".archived_at IS NULL AND ("                            \
	"(" c ".type IN ('group','dm') AND EXISTS (SELECT 1 FROM channel_member m WHERE "          \
	"m.channel_id = " c ".id AND m.user_id = " u " AND m.is_active)) OR "                      \
	"(COALESCE(" c ".type,'') NOT IN ('group','dm') AND (" c ".user_id = " u " OR EXISTS "     \
	"(SELECT 1 FROM access_grant g WHERE g.resource_type = 'channel' AND g.resource_id = " c   \
	".id AND g.permission = 'read' AND ((g.principal_type = 'user' AND g.principal_id IN "     \
	"('*', " u ")) OR (g.principal_type = 'group' AND g.principal_id IN (SELECT gm.group_id "  \
	"FROM group_member gm WHERE gm.user_id = " u "))))))))"

/* Open WebUI's features.channels permission: admins always; others through
 * any of their groups' permissions, else the environment default ($2). */
#define CHANNELS_ALLOWED(u, dflt)                                                                  \
	"(u.role = 'admin' OR COALESCE((SELECT bool_or((g.permissions::jsonb #>> "                 \
	"'{features,channels}')::boolean) FROM \"group\" g JOIN group_member gm ON gm.group_id = " \
	"g.id WHERE gm.user_id = " u " AND g.permissions::jsonb #> '{features,channels}' IS NOT "  \
	"NULL), " dflt "))"

/* ---- handlers ---- */

typedef struct hctx {
	batch *b;
	int i; /* entry index */
} hctx;

static hctx *ctx(batch *b, int i)
{
	hctx *c = malloc(sizeof(*c));
	c->b = b;
	c->i = i;
	return c;
}

/* An `events` emit with update_db persists into the chat of its target
 * user (the chat's owner, as Open WebUI's emitter does), in one atomic
 * statement per event (worker/persist.c), or merged with the batch's
 * other updates to the same message. */
static void on_persisted(void *arg, const PGresult *res)
{
	hctx *c = arg;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		wk.m.effects++;
	free(c);
}

/* An `events:note` emit with update_db carries the note as Open WebUI's
 * REST update sends it (NoteModel, `data` trimmed to the keys updated):
 * the title is replaced when given, `data` and `meta` are merged
 * shallowly, updated_at (ns) is the payload's or now - in one statement,
 * recorded in tidings_event. */
static void persist_note(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const cJSON *note = cJSON_GetArrayItem(e->args, 0);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(note, "id");
	const cJSON *title = cJSON_GetObjectItemCaseSensitive(note, "title");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(note, "data");
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(note, "meta");
	const cJSON *upd = cJSON_GetObjectItemCaseSensitive(note, "updated_at");
	if (!cJSON_IsString(id) || (title && !cJSON_IsString(title)) ||
	    (data && !cJSON_IsObject(data)) || (meta && !cJSON_IsObject(meta))) {
		log_warn("emit %s: events:note not persisted: needs a note id and object data",
		         e->eid);
		return;
	}
	char *djson = data ? json_print(data) : NULL;
	char *mjson = meta ? json_print(meta) : NULL;
	char when[24];
	time_text(when, upd);
	const char *params[7] = {e->eid,
	                         "emit events:note",
	                         id->valuestring,
	                         title ? title->valuestring : NULL,
	                         djson,
	                         mjson,
	                         when};
	pg_batch_add_prepared(
	    pb,
	    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
	    "ON CONFLICT DO NOTHING RETURNING id) "
	    "UPDATE note SET title = COALESCE($4, title), "
	    "data = CASE WHEN $5::jsonb IS NULL THEN data ELSE "
	    "(CASE WHEN json_typeof(data) = 'object' THEN data::jsonb ELSE '{}' END "
	    "|| $5::jsonb)::json END, "
	    "meta = CASE WHEN $6::jsonb IS NULL THEN meta ELSE "
	    "(CASE WHEN json_typeof(meta) = 'object' THEN meta::jsonb ELSE '{}' END "
	    "|| $6::jsonb)::json END, "
	    "updated_at = $7::bigint WHERE id = $3 AND EXISTS (SELECT 1 FROM ev) "
	    "RETURNING id",
	    7, params, on_persisted, ctx(b, i));
	free(djson);
	free(mjson);
}

/* The merged statements of a batch (persist_merge_build): a group's row
 * says how many of its updates changed the chat. */
static void on_merged_group(void *arg, const PGresult *res)
{
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		wk.m.effects += (uint64_t)atoi(PQgetvalue(res, 0, 2));
}

/* The merged updates' event ids. A unique violation means one of them was
 * applied before: a redelivery, which the single statements skip. */
static void on_merged_ids(void *arg, const PGresult *res)
{
	batch *b = arg;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state && strcmp(state, "23505") == 0)
		b->flags |= B_REDELIVERED;
}

/* Adds the statements of the `events` updates merged so far. The ids go
 * first, so that a redelivery fails the transaction before the groups
 * run. */
static void persist_flush(batch *b, pg_batch *pb)
{
	persist_stmt *st;
	size_t n;
	if (persist_merge_build(&b->pm, &st, &n) < 0) {
		/* Out of memory. A NULL statement fails the batch (pg.h), so
		 * nothing is committed without these updates. */
		log_error("batch of %d entries: no memory to merge its updates", b->hi - b->lo);
		pg_batch_add(pb, NULL, 0, NULL, NULL, NULL);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		pg_result_fn *cb = st[k].kind == PERSIST_IDS     ? on_merged_ids
		                   : st[k].kind == PERSIST_GROUP ? on_merged_group
		                                                 : on_persisted;
		pg_batch_add_prepared(pb, st[k].sql, st[k].nparams,
		                      (const char *const *)st[k].values, cb,
		                      st[k].kind == PERSIST_IDS ? b : NULL);
		persist_stmt_dispose(&st[k]);
	}
	free(st);
}

/* Entries whose statements read or write what the merged statements
 * write (chat, chat_message): the merged updates before them are flushed
 * first, so each sees the chats as the single statements would leave
 * them. events:chat marks a chat read and reads its updated_at. */
static int reads_chats(const wk_entry *e)
{
	return strcmp(e->kind, "event") == 0 && e->event && strcmp(e->event, "events:chat") == 0;
}

static void persist_emit(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	if (e->update_db && strcmp(e->event, "events:note") == 0) {
		persist_note(b, i, pb);
		return;
	}
	if (!e->update_db || strcmp(e->event, "events") != 0)
		return;
	/* The chat must belong to the user the event is for: to.user, or the
	 * user of a user:{id} room. An emit to another room or to a socket
	 * names no user; the producer (trusted with the API key) is taken at
	 * its word and the chat is edited for whoever owns it. */
	const char *owner = NULL;
	if (strcmp(e->to_type, "user") == 0)
		owner = e->to;
	else if (strcmp(e->to_type, "room") == 0 && strncmp(e->to, "user:", 5) == 0)
		owner = e->to + 5;
	const cJSON *data = cJSON_GetArrayItem(e->args, 0);
	const char *err = NULL;
	int rc;
	if (b->flags & B_MERGE) {
		rc = persist_merge_add(&b->pm, e->eid, owner, data, &err);
	} else {
		persist_stmt st = {0};
		rc = persist_events_stmt(e->eid, owner, data, &st, &err);
		if (rc == 0)
			pg_batch_add_prepared(pb, st.sql, st.nparams,
			                      (const char *const *)st.values, on_persisted,
			                      ctx(b, i));
		persist_stmt_dispose(&st);
	}
	if (rc < 0)
		log_warn("emit %s not persisted: %s", e->eid, err);
}

/* user-join and join-channels: the user's channels become rooms of this
 * socket; user-join answers {id, name} when asked. */
static void on_user_channels(void *arg, const PGresult *res)
{
	hctx *c = arg;
	wk_entry *e = &c->b->e[c->i];
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (res)
			log_info("user=%s %s refused: no such user", e->user, e->event);
		wk.m.refused += res != NULL;
		free(c);
		return;
	}
	const char *name = PQgetvalue(res, 0, 0), *role = PQgetvalue(res, 0, 1);
	if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0) {
		log_info("user=%s %s refused: role '%s'", e->user, e->event, role);
		wk.m.refused++;
		free(c);
		return;
	}
	/* The socket's channel rooms become exactly the channels the user may
	 * see now: new ones joined, revoked ones left. */
	cJSON *ids = json_parse(PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
	cJSON *rooms = cJSON_CreateArray();
	const cJSON *id;
	cJSON_ArrayForEach(id, ids)
	{
		if (!cJSON_IsString(id))
			continue;
		char room[300];
		snprintf(room, sizeof(room), "channel:%s", id->valuestring);
		cJSON_AddItemToArray(rooms, cJSON_CreateString(room));
	}
	fanout_sync(&c->b->out, e->gw, e->sid, "channel:", rooms);
	cJSON_Delete(rooms);
	cJSON_Delete(ids);
	if (strcmp(e->event, "user-join") == 0 && e->ack >= 0) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "id", e->user);
		cJSON_AddStringToObject(o, "name", name);
		fanout_ack(&c->b->out, e->gw, e->sid, e->nsp, e->ack, o);
		cJSON_Delete(o);
	}
	free(c);
}

static void h_user_channels(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const char *params[2] = {e->user, wk.cfg.channels_default ? "true" : "false"};
	pg_batch_add_prepared(
	    pb,
	    "SELECT u.name, u.role, CASE WHEN " CHANNELS_ALLOWED(
	        "$1",
	        "$2::boolean") " THEN COALESCE((SELECT json_agg(c.id ORDER BY c.id) FROM channel c "
	                       "WHERE " CHANNEL_ACCESS("c", "$1") "), '[]') ELSE '[]' END FROM "
	                                                          "\"user\" u WHERE u.id = $1",
	    2, params, on_user_channels, ctx(b, i));
}

/* heartbeat: user.last_active_at = now (seconds), coalesced. */
static void h_user_channels(batch *b, int i, pg_batch *pb);

static void h_heartbeat(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	/* Every heartbeat (30 s per tab) re-applies the socket's channel
	 * memberships, so a user removed from a channel stops receiving it
	 * within one heartbeat, whoever removed them. */
	h_user_channels(b, i, pb);
	if (coalesced("hb", e->user, NULL, wk.cfg.heartbeat_coalesce_ms))
		return;
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)now_s());
	const char *params[4] = {e->eid, "heartbeat", e->user, now};
	pg_batch_add_prepared(pb,
	                      "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
	                      "ON CONFLICT DO NOTHING RETURNING id) "
	                      "UPDATE \"user\" SET last_active_at = $4::bigint WHERE id = $3 "
	                      "AND EXISTS (SELECT 1 FROM ev)",
	                      4, params, NULL, NULL);
}

/* events:channel typing: fanned out to the channel (sender included) with
 * the sender's {id, name, role}, if the user may see the channel now. */
/* Typing is ephemeral and frequent (a keystroke each): its authorisation
 * is cached for a moment (TIDINGS_AUTHZ_TTL_MS, default 1 s), and a cached
 * decision is delivered at once, without waiting for the batch's
 * transaction, so typing keeps flowing while Postgres is slow. A revoked
 * membership is therefore honoured within the TTL. */
#define AUTHZ_SLOTS 4096
typedef struct authz_entry {
	uint64_t hash;
	uint64_t until;
	int allowed;
	char name[128];
	char role[16];
} authz_entry;
static authz_entry authz_tab[AUTHZ_SLOTS];

static authz_entry *authz_slot(const char *user, const char *channel, uint64_t *hash)
{
	*hash = fnv64(user, channel);
	return &authz_tab[*hash % AUTHZ_SLOTS];
}

static const authz_entry *authz_get(const char *user, const char *channel)
{
	uint64_t h;
	authz_entry *a = authz_slot(user, channel, &h);
	return a->hash == h && wk_now() < a->until ? a : NULL;
}

/* Forgets a decision that a change made through this worker has made
 * stale. (Another worker's copy still lives out its TTL.) */
static void authz_drop(const char *user, const char *channel)
{
	uint64_t h;
	authz_entry *a = authz_slot(user, channel, &h);
	if (a->hash == h)
		a->until = 0;
}

static void authz_put(const char *user, const char *channel, int allowed, const char *name,
                      const char *role)
{
	uint64_t h;
	authz_entry *a = authz_slot(user, channel, &h);
	a->hash = h;
	a->until = wk_now() + (uint64_t)wk.cfg.authz_ttl_ms;
	a->allowed = allowed;
	snprintf(a->name, sizeof(a->name), "%s", name ? name : "");
	snprintf(a->role, sizeof(a->role), "%s", role ? role : "");
}

static void typing_emit(fanout_list *out, const wk_entry *e, const char *name, const char *role)
{
	const char *cid = arg_str(e, "channel_id");
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "channel_id", cid);
	const char *mid = arg_str(e, "message_id");
	if (mid)
		cJSON_AddStringToObject(o, "message_id", mid);
	else
		cJSON_AddNullToObject(o, "message_id");
	cJSON_AddItemToObject(o, "data", cJSON_Duplicate(arg_obj(e, "data"), 1));
	cJSON *u = cJSON_AddObjectToObject(o, "user");
	cJSON_AddStringToObject(u, "id", e->user);
	cJSON_AddStringToObject(u, "name", name);
	cJSON_AddStringToObject(u, "role", role);
	char room[300];
	snprintf(room, sizeof(room), "channel:%s", cid);
	fanout_emit(out, room, "events:channel", o, NULL);
	cJSON_Delete(o);
}

static void on_typing(void *arg, const PGresult *res)
{
	hctx *c = arg;
	wk_entry *e = &c->b->e[c->i];
	const char *cid = arg_str(e, "channel_id");
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (res) {
			wk.m.refused++;
			authz_put(e->user, cid, 0, NULL, NULL);
			log_info("user=%s typing refused: no access to channel %s", e->user, cid);
		}
		free(c);
		return;
	}
	authz_put(e->user, cid, 1, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	typing_emit(&c->b->out, e, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	free(c);
}

static void free_list(void *arg, int ok)
{
	fanout_list *l = arg;
	fanout_dispose(l);
	free(l);
}

/* A typing event whose authorisation is cached: out at once. */
static int typing_cached(const wk_entry *e, const char *cid)
{
	const authz_entry *a = authz_get(e->user, cid);
	if (!a)
		return 0;
	if (a->allowed) {
		fanout_list *l = malloc(sizeof(*l));
		fanout_init(l);
		typing_emit(l, e, a->name, a->role);
		fanout_publish(l, free_list, l);
	} else {
		wk.m.refused++;
	}
	return 1;
}

static void h_events_channel(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const char *cid = arg_str(e, "channel_id");
	const cJSON *data = arg_obj(e, "data");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(data, "type");
	if (!cid || !cJSON_IsString(type))
		return;
	if (strcmp(type->valuestring, "typing") == 0) {
		if (typing_cached(e, cid))
			return;
		const char *params[3] = {e->user, cid, wk.cfg.channels_default ? "true" : "false"};
		pg_batch_add_prepared(
		    pb,
		    "SELECT u.name, u.role FROM \"user\" u JOIN channel c ON c.id = $2 "
		    "WHERE u.id = $1 AND u.role IN ('user','admin') AND " CHANNELS_ALLOWED(
		        "$1", "$3::boolean") " AND " CHANNEL_ACCESS("c", "$1"),
		    3, params, on_typing, ctx(b, i));
	} else if (strcmp(type->valuestring, "last_read_at") == 0) {
		if (coalesced("chr", e->user, cid, wk.cfg.read_coalesce_ms))
			return;
		char now[24];
		snprintf(now, sizeof(now), "%lld", (long long)now_ns());
		const char *params[5] = {e->eid, "events:channel last_read_at", e->user, cid, now};
		pg_batch_add_prepared(
		    pb,
		    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
		    "ON CONFLICT DO NOTHING RETURNING id) "
		    "UPDATE channel_member SET last_read_at = $5::bigint, updated_at = "
		    "$5::bigint WHERE channel_id = $4 AND user_id = $3 "
		    "AND EXISTS (SELECT 1 FROM ev)",
		    5, params, NULL, NULL);
	}
}

/* Unread chats per folder of user u (catalogue 8.7) as a JSON object
 * {folder_id: count} over all the user's folders: non-archived chats
 * updated since they were last read and with no assistant message still
 * running, each counted in its folder and every ancestor. Chat `read` is
 * the one being marked read by the same statement, whose snapshot still
 * shows it unread. The depth bound keeps a parent_id cycle finite. */
#define FOLDER_UNREAD(u, read)                                                                     \
	"(WITH RECURSIVE f AS (SELECT id, parent_id FROM folder WHERE user_id = " u "), "          \
	"unread AS (SELECT c.folder_id AS fid FROM chat c WHERE c.user_id = " u " AND "            \
	"c.folder_id IS NOT NULL AND c.id <> " read " AND NOT COALESCE(c.archived, false) AND "    \
	"c.updated_at > COALESCE(c.last_read_at, 0) AND NOT EXISTS (SELECT 1 FROM chat_message m " \
	"WHERE m.chat_id = c.id AND m.role = 'assistant' AND m.done = false)), "                   \
	"up (anc, depth) AS (SELECT fid, 0 FROM unread UNION ALL SELECT f.parent_id, up.depth + "  \
	"1 "                                                                                       \
	"FROM up JOIN f ON f.id = up.anc WHERE f.parent_id IS NOT NULL AND up.depth < 64) "        \
	"SELECT COALESCE(json_object_agg(f.id, (SELECT count(*) FROM up WHERE up.anc = f.id) "     \
	"ORDER BY f.id), "                                                                         \
	"'{}') FROM f)"

/* events:chat last_read_at: the owner's chat is marked read and the user's
 * tabs get a chat:list event, with the folders' unread counts when the
 * chat was unread until now. */
static void on_chat_read(void *arg, const PGresult *res)
{
	hctx *c = arg;
	wk_entry *e = &c->b->e[c->i];
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		const char *chat = arg_str(e, "chat_id");
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "chat_id", chat);
		cJSON *d = cJSON_AddObjectToObject(o, "data");
		cJSON_AddStringToObject(d, "type", "chat:list");
		cJSON *dd = cJSON_AddObjectToObject(d, "data");
		cJSON_AddStringToObject(dd, "chat_id", chat);
		cJSON_AddNumberToObject(dd, "last_read_at", atof(PQgetvalue(res, 0, 0)));
		if (!PQgetisnull(res, 0, 1)) {
			cJSON *counts =
			    json_parse(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
			if (counts)
				cJSON_AddItemToObject(dd, "folder_unread_counts", counts);
		}
		char room[200];
		snprintf(room, sizeof(room), "user:%s", e->user);
		fanout_emit(&c->b->out, room, "events", o, NULL);
		cJSON_Delete(o);
	} else if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
		/* Not the owner's chat, or already applied (redelivery). */
		log_debug("user=%s events:chat: no effect on chat %s", e->user,
		          arg_str(e, "chat_id"));
	}
	free(c);
}

static void h_events_chat(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const char *chat = arg_str(e, "chat_id");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(arg_obj(e, "data"), "type");
	if (!chat || !cJSON_IsString(type) || strcmp(type->valuestring, "last_read_at") != 0)
		return;
	if (coalesced("cr", e->user, chat, wk.cfg.read_coalesce_ms))
		return;
	char now[24], nowns[24];
	snprintf(now, sizeof(now), "%lld", (long long)now_s());
	snprintf(nowns, sizeof(nowns), "%lld", (long long)now_ns());
	const char *params[6] = {e->eid, "events:chat last_read_at", e->user, chat, now, nowns};
	/* Reading a chat also cancels its pending timer chats that were set to
	 * be cancelled on read (catalogue 2, events:chat), in the same
	 * statement and so under the same exactly-once record. */
	pg_batch_add_prepared(
	    pb,
	    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
	    "ON CONFLICT DO NOTHING RETURNING id), "
	    "timers AS (UPDATE chat SET meta = (meta::jsonb || jsonb_build_object("
	    "'status', 'cancelled', 'timer_cancelled_at', $6::bigint, "
	    "'timer_cancelled_by', 'chat.read'))::json, updated_at = $5::bigint "
	    "WHERE user_id = $3 AND meta::jsonb ->> 'parent_chat_id' = $4 "
	    "AND meta::jsonb ->> 'status' = 'pending' "
	    "AND jsonb_typeof(meta::jsonb -> 'cancel_on') = 'array' "
	    "AND meta::jsonb -> 'cancel_on' ? 'chat.read' "
	    "AND EXISTS (SELECT 1 FROM ev) AND EXISTS (SELECT 1 FROM chat p WHERE "
	    "p.id = $4 AND p.user_id = $3)), "
	    "old AS (SELECT updated_at > COALESCE(last_read_at, 0) AS unread FROM chat "
	    "WHERE id = $4 AND user_id = $3) "
	    "UPDATE chat SET last_read_at = $5::bigint WHERE id = $4 AND user_id = $3 "
	    "AND EXISTS (SELECT 1 FROM ev) RETURNING last_read_at, "
	    "CASE WHEN (SELECT unread FROM old) THEN " FOLDER_UNREAD("$3", "$4") " END",
	    6, params, on_chat_read, ctx(b, i));
}

/* join-note: read access (admin, owner, or a read grant to the user, to
 * everyone or to one of the user's groups) puts the socket in note:{id}. */
static void on_note(void *arg, const PGresult *res)
{
	hctx *c = arg;
	wk_entry *e = &c->b->e[c->i];
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		char room[300];
		snprintf(room, sizeof(room), "note:%s", PQgetvalue(res, 0, 0));
		fanout_join(&c->b->out, e->gw, e->sid, room);
	} else if (res) {
		wk.m.refused++;
		log_info("user=%s join-note refused for note %s", e->user, arg_str(e, "note_id"));
	}
	free(c);
}

static void h_join_note(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const char *note = arg_str(e, "note_id");
	if (!note)
		return;
	/* note:<id> and note_<id> name the same note. */
	if (strncmp(note, "note:", 5) == 0 || strncmp(note, "note_", 5) == 0)
		note += 5;
	const char *params[2] = {e->user, note};
	pg_batch_add_prepared(
	    pb,
	    "SELECT n.id FROM note n JOIN \"user\" u ON u.id = $1 WHERE n.id = $2 AND "
	    "u.role IN ('user','admin') AND (u.role = 'admin' OR n.user_id = $1 OR EXISTS "
	    "(SELECT 1 FROM access_grant g WHERE g.resource_type = 'note' AND g.resource_id "
	    "= n.id AND g.permission = 'read' AND ((g.principal_type = 'user' AND "
	    "g.principal_id IN ('*', $1)) OR (g.principal_type = 'group' AND g.principal_id "
	    "IN (SELECT gm.group_id FROM group_member gm WHERE gm.user_id = $1)))))",
	    2, params, on_note, ctx(b, i));
}

/* ---- channel messages from producers ---- */

/* A channel message as Open WebUI's MessageResponse (catalogue 3.2), built
 * from row m: the author, the message it replies to (slim: its data
 * collapsed to whether it has any), its thread's size and latest reply,
 * and its reactions grouped by emoji in order of first use. */
#define MESSAGE_RESPONSE(m)                                                                        \
	"json_build_object('id', " m ".id, 'user_id', " m ".user_id, 'channel_id', " m             \
	".channel_id, 'reply_to_id', " m ".reply_to_id, 'parent_id', " m                           \
	".parent_id, 'is_pinned', " m ".is_pinned, 'pinned_by', " m ".pinned_by, 'pinned_at', " m  \
	".pinned_at, 'content', " m ".content, 'data', " m ".data, 'meta', " m                     \
	".meta, 'created_at', " m ".created_at, "                                                  \
	"'updated_at', " m ".updated_at, "                                                         \
	"'user', (SELECT json_build_object('id', u.id, 'name', u.name, 'role', u.role) FROM "      \
	"\"user\" u WHERE u.id = " m ".user_id), "                                                 \
	"'reply_to_message', (SELECT json_build_object('id', r.id, 'user_id', r.user_id, "         \
	"'channel_id', r.channel_id, 'reply_to_id', r.reply_to_id, 'parent_id', r.parent_id, "     \
	"'is_pinned', r.is_pinned, 'content', r.content, 'data', COALESCE(r.data::text NOT IN "    \
	"('null', '{}'), false), 'meta', r.meta, 'created_at', r.created_at, 'updated_at', "       \
	"r.updated_at, 'user', (SELECT json_build_object('id', u.id, 'name', u.name, 'role', "     \
	"u.role) FROM \"user\" u WHERE u.id = r.user_id)) FROM message r WHERE r.id = " m          \
	".reply_to_id), "                                                                          \
	"'latest_reply_at', (SELECT max(t.created_at) FROM message t WHERE t.parent_id = " m       \
	".id), 'reply_count', (SELECT count(*) FROM message t WHERE t.parent_id = " m ".id), "     \
	"'reactions', COALESCE((SELECT json_agg(json_build_object('name', x.name, 'users', "       \
	"x.users, "                                                                                \
	"'count', x.n) ORDER BY x.first) FROM (SELECT r.name, json_agg(json_build_object('id', "   \
	"r.user_id, 'name', u.name) ORDER BY r.created_at) AS users, count(*) AS n, "              \
	"min(r.created_at) AS first FROM message_reaction r LEFT JOIN \"user\" u ON u.id = "       \
	"r.user_id WHERE r.message_id = " m ".id GROUP BY r.name) x), '[]'))"

/* The `events:channel` message:update that follows an edit: the message as
 * it is now in the database, to everyone in the channel. */
static void on_message_edited(void *arg, const PGresult *res)
{
	hctx *c = arg;
	wk_entry *e = &c->b->e[c->i];
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		wk.m.effects++;
		cJSON *msg = json_parse(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
		const char *cid = PQgetvalue(res, 0, 1);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "channel_id", cid);
		cJSON_AddStringToObject(o, "message_id", PQgetvalue(res, 0, 2));
		cJSON *d = cJSON_AddObjectToObject(o, "data");
		cJSON_AddStringToObject(d, "type", "message:update");
		cJSON_AddItemToObject(d, "data", msg ? msg : cJSON_CreateNull());
		char room[300];
		snprintf(room, sizeof(room), "channel:%s", cid);
		fanout_emit(&c->b->out, room, "events:channel", o, NULL);
		cJSON_Delete(o);
	} else if (res) {
		log_info("emit %s: channel message not updated (no such message in the channel, "
		         "or already applied)",
		         e->eid);
	}
	free(c);
}

/* Edits message `mid` of channel `cid`: content replaced when given, data
 * and meta merged shallowly with the given objects, updated_at = now (ns);
 * one statement recorded in tidings_event, answering the new
 * MessageResponse. */
static void message_edit(batch *b, int i, pg_batch *pb, const char *cid, const char *mid,
                         const char *content, const cJSON *data, const cJSON *meta)
{
	wk_entry *e = &b->e[i];
	char *djson = data ? json_print(data) : NULL;
	char *mjson = meta ? json_print(meta) : NULL;
	char when[24];
	snprintf(when, sizeof(when), "%lld", (long long)now_ns());
	const char *params[8] = {e->eid, "emit channel message", cid, mid, content, djson, mjson,
	                         when};
	pg_batch_add_prepared(
	    pb,
	    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
	    "ON CONFLICT DO NOTHING RETURNING id), "
	    "m AS (UPDATE message SET content = COALESCE($5, content), "
	    "data = CASE WHEN $6::jsonb IS NULL THEN data ELSE "
	    "(CASE WHEN json_typeof(data) = 'object' THEN data::jsonb ELSE '{}' END "
	    "|| $6::jsonb)::json END, "
	    "meta = CASE WHEN $7::jsonb IS NULL THEN meta ELSE "
	    "(CASE WHEN json_typeof(meta) = 'object' THEN meta::jsonb ELSE '{}' END "
	    "|| $7::jsonb)::json END, "
	    "updated_at = $8::bigint WHERE id = $4 AND channel_id = $3 "
	    "AND EXISTS (SELECT 1 FROM ev) RETURNING *) "
	    "SELECT " MESSAGE_RESPONSE("m") ", m.channel_id, m.id FROM m",
	    8, params, on_message_edited, ctx(b, i));
	free(djson);
	free(mjson);
}

/* Channel mode (catalogue 3.3): an `events` emit whose chat_id is
 * channel:{cid} is an AI reply streaming into channel message message_id.
 * chat:completion replaces the message's content and data.output and, on
 * done, sets meta.done; chat:message:error makes the content "Error: ..."
 * and finishes it. Each such update rewrites the message row and sends
 * the channel the message as it now is; other types are dropped. As in
 * Open WebUI the row is written whatever update_db says (the message is
 * where a channel reply lives), and updates short of done are throttled
 * to one per message every 150 ms: each carries the whole reply so far, so
 * the next one, or done, supersedes what was skipped. */
#define CHANNEL_THROTTLE_MS 150

static void channel_mode(batch *b, int i, pg_batch *pb, const cJSON *data, const char *cid)
{
	wk_entry *e = &b->e[i];
	const char *mid =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "message_id"));
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(data, "data");
	const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
	if (!mid || !*mid || !*cid || !type)
		return;
	const char *content = NULL;
	char *owned = NULL;
	cJSON *patch = NULL, *meta = NULL;
	int done;
	if (strcmp(type, "chat:completion") == 0) {
		content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "content"));
		const cJSON *output = cJSON_GetObjectItemCaseSensitive(d, "output");
		if (cJSON_IsArray(output)) {
			patch = cJSON_CreateObject();
			cJSON_AddItemToObject(patch, "output", cJSON_Duplicate(output, 1));
		}
		done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "done"));
	} else if (strcmp(type, "chat:message:error") == 0) {
		const cJSON *err = cJSON_GetObjectItemCaseSensitive(d, "error");
		const char *msg =
		    cJSON_IsString(err)
		        ? err->valuestring
		        : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "content"));
		size_t n = strlen(msg ? msg : "") + 8;
		owned = malloc(n);
		snprintf(owned, n, "Error: %s", msg ? msg : "");
		content = owned;
		done = 1;
	} else {
		log_debug("emit %s: %s to a channel chat is not sent (channel mode)", e->eid, type);
		return;
	}
	if (!done && coalesced("cm", cid, mid, CHANNEL_THROTTLE_MS)) {
		cJSON_Delete(patch);
		return;
	}
	if (done) {
		meta = cJSON_CreateObject();
		cJSON_AddTrueToObject(meta, "done");
	}
	if (content || patch || meta)
		message_edit(b, i, pb, cid, mid, content, patch, meta);
	cJSON_Delete(patch);
	cJSON_Delete(meta);
	free(owned);
}

/* `events:channel` from a producer with update_db: a new message is
 * inserted (and, in a standard channel, its author becomes a member, as
 * posting does in Open WebUI), an edit goes through message_edit, a
 * deletion removes the message, its reactions and its thread. All in the
 * same exactly-once statement form. Returns 1 when the fan-out is left to
 * the statement's result (edits, which send the stored message). */
static int persist_channel(batch *b, int i, pg_batch *pb, const cJSON *data)
{
	wk_entry *e = &b->e[i];
	const char *cid =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "channel_id"));
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(data, "data");
	const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "data");
	const char *mid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
	if (!mid)
		mid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "message_id"));
	if (!cid || !type || !mid || !cJSON_IsObject(m))
		return 0;
	const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
	const cJSON *mdata = cJSON_GetObjectItemCaseSensitive(m, "data");
	const cJSON *mmeta = cJSON_GetObjectItemCaseSensitive(m, "meta");
	if (!cJSON_IsObject(mdata))
		mdata = NULL;
	if (!cJSON_IsObject(mmeta))
		mmeta = NULL;
	if (strcmp(type, "message:update") == 0) {
		message_edit(b, i, pb, cid, mid, content, mdata, mmeta);
		return 1;
	}
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)now_ns());
	if (strcmp(type, "message") == 0) {
		const char *author =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "user_id"));
		const char *reply =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "reply_to_id"));
		const char *parent =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "parent_id"));
		const cJSON *created = cJSON_GetObjectItemCaseSensitive(m, "created_at");
		char when[24];
		time_text(when, created);
		if (author)
			authz_drop(author, cid); /* posting may make the author a member */
		char *djson = mdata ? json_print(mdata) : NULL;
		char *mjson = mmeta ? json_print(mmeta) : NULL;
		const char *params[11] = {e->eid, "emit channel message",
		                          cid,    mid,
		                          author, reply,
		                          parent, content,
		                          djson,  mjson,
		                          when};
		pg_batch_add_prepared(
		    pb,
		    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
		    "ON CONFLICT DO NOTHING RETURNING id), "
		    "ins AS (INSERT INTO message (id, user_id, channel_id, reply_to_id, parent_id, "
		    "content, data, meta, created_at, updated_at) SELECT $4, $5, $3, $6, $7, "
		    "COALESCE($8, ''), $9::json, $10::json, $11::bigint, $11::bigint "
		    "WHERE EXISTS (SELECT 1 FROM ev) ON CONFLICT (id) DO NOTHING RETURNING id) "
		    "INSERT INTO channel_member (id, channel_id, user_id, status, is_active, "
		    "last_read_at, joined_at, created_at, updated_at) SELECT "
		    "gen_random_uuid()::text, "
		    "$3, $5, 'joined', true, $11::bigint, $11::bigint, $11::bigint, $11::bigint "
		    "WHERE $5 IS NOT NULL AND EXISTS (SELECT 1 FROM ins) AND EXISTS (SELECT 1 FROM "
		    "channel c WHERE c.id = $3 AND COALESCE(c.type, '') NOT IN ('group', 'dm')) "
		    "AND NOT EXISTS (SELECT 1 FROM channel_member cm WHERE cm.channel_id = $3 AND "
		    "cm.user_id = $5)",
		    11, params, on_persisted, ctx(b, i));
		free(djson);
		free(mjson);
	} else if (strcmp(type, "message:delete") == 0) {
		const char *params[4] = {e->eid, "emit channel message", cid, mid};
		pg_batch_add_prepared(
		    pb,
		    "WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, $2) "
		    "ON CONFLICT DO NOTHING RETURNING id), "
		    "gone AS (DELETE FROM message WHERE (id = $4 OR parent_id = $4) AND "
		    "channel_id = $3 AND EXISTS (SELECT 1 FROM ev) RETURNING id) "
		    "DELETE FROM message_reaction WHERE message_id IN (SELECT id FROM gone)",
		    4, params, on_persisted, ctx(b, i));
	}
	return 0;
}

/* A producer's emit: delivered to its target; `events` with update_db are
 * persisted in the same transaction as the rest of the batch. */
static void h_emit(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	const cJSON *data = cJSON_GetArrayItem(e->args, 0);
	const char *chat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "chat_id"));
	if (strcmp(e->event, "events") == 0 && chat && strncmp(chat, "channel:", 8) == 0) {
		channel_mode(b, i, pb, data, chat + 8);
		return;
	}
	if (e->update_db && strcmp(e->event, "events:channel") == 0 &&
	    persist_channel(b, i, pb, data))
		return;
	if (strcmp(e->to_type, "sid") == 0) {
		fanout_emit_sid(&b->out, e->to, e->event, data);
	} else {
		char room[300];
		if (strcmp(e->to_type, "user") == 0)
			snprintf(room, sizeof(room), "user:%s", e->to);
		else
			snprintf(room, sizeof(room), "%s", e->to);
		/* The entry outlives the batch's fan-out list. */
		fanout_emit_ref(&b->out, room, e->event, data);
	}
	persist_emit(b, i, pb);
}

/* usage: which sockets are using a model right now. Open WebUI kept a JSON
 * blob per model, read-modified-written by every socket (catalogue 9 #10);
 * here it is one sorted set per model, sid scored by the time of its last
 * ping: ZADD is atomic, readers count members newer than 3 s, and the key
 * expires when nobody pings. A disconnect needs no cleanup: its member
 * simply ages out. */
static int valid_model(const char *m)
{
	size_t n = strlen(m);
	if (n == 0 || n > 200)
		return 0;
	for (; *m; m++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-",
		            *m))
			return 0;
	return 1;
}

static void h_usage(batch *b, int i)
{
	wk_entry *e = &b->e[i];
	const char *model = arg_str(e, "model");
	if (!model || !valid_model(model) || !e->sid) {
		log_debug("user=%s usage without a valid model: dropped", e->user);
		return;
	}
	char key[300];
	snprintf(key, sizeof(key), "%s:usage:%s", wk.cfg.redis_prefix, model);
	uint64_t now = (uint64_t)time(NULL) * 1000;
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "ZADD");
	redis_arg_str(&a, key);
	redis_arg_u64(&a, now);
	redis_arg_str(&a, e->sid);
	redis_send(wk.rc, NULL, NULL, &a);
	redis_argv_init(&a);
	redis_arg_str(&a, "ZREMRANGEBYSCORE");
	redis_arg_str(&a, key);
	redis_arg_str(&a, "-inf");
	redis_arg_u64(&a, now - 3000);
	redis_send(wk.rc, NULL, NULL, &a);
	redis_argv_init(&a);
	redis_arg_str(&a, "PEXPIRE");
	redis_arg_str(&a, key);
	redis_arg_str(&a, "10000");
	redis_send(wk.rc, NULL, NULL, &a);
}

static void dispatch(batch *b, int i, pg_batch *pb)
{
	wk_entry *e = &b->e[i];
	if (strcmp(e->kind, "emit") == 0) {
		h_emit(b, i, pb);
		return;
	}
	if (strcmp(e->kind, "disconnect") == 0) {
		ydoc_disconnect(e, &b->out);
		return;
	}
	if (strcmp(e->kind, "event") != 0 || !e->event)
		return; /* connect, ack: nothing in the database yet */
	if (strcmp(e->event, "user-join") == 0 || strcmp(e->event, "join-channels") == 0)
		h_user_channels(b, i, pb);
	else if (strcmp(e->event, "heartbeat") == 0)
		h_heartbeat(b, i, pb);
	else if (strcmp(e->event, "events:channel") == 0)
		h_events_channel(b, i, pb);
	else if (strcmp(e->event, "events:chat") == 0)
		h_events_chat(b, i, pb);
	else if (strcmp(e->event, "join-note") == 0)
		h_join_note(b, i, pb);
	else if (strcmp(e->event, "usage") == 0)
		h_usage(b, i);
	else if (strncmp(e->event, "ydoc:", 5) == 0)
		ydoc_handle(e, pb, &b->out);
	else
		log_debug("event '%s' has no handler: dropped", e->event);
}

/* ---- the batch lifecycle ---- */

static void batch_free(batch *b)
{
	for (int i = 0; i < b->n; i++)
		entry_dispose(&b->e[i]);
	free(b->e);
	fanout_dispose(&b->out);
	persist_merge_dispose(&b->pm);
	if (b->retry_ev)
		event_free(b->retry_ev);
	free(b);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	start(arg);
}

static void retry_later(batch *b, const char *why)
{
	wk.m.batch_failures++;
	uint64_t ms = 100u << (b->attempt < 6 ? b->attempt : 6);
	b->attempt++;
	log_warn("batch of %d entries not applied (%s); retry %d in %llu ms", b->hi - b->lo, why,
	         b->attempt, (unsigned long long)ms);
	fanout_dispose(&b->out);
	fanout_init(&b->out);
	if (!b->retry_ev)
		b->retry_ev = evtimer_new(wk.base, retry_cb, b);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(b->retry_ev, &tv);
}

/* XACKs entries [lo, hi): one command per run of entries of one shard
 * (as many ids as it holds), not one per entry. */
static void ack(const wk_entry *e, int lo, int hi)
{
	redis_argv a;
	redis_argv_init(&a);
	for (int i = lo; i < hi; i++) {
		if (a.n > 0 && (e[i].shard != e[i - 1].shard || a.n == REDIS_ARGV_MAX)) {
			redis_send(wk.rc, NULL, NULL, &a);
			redis_argv_init(&a);
		}
		if (a.n == 0) {
			redis_arg_str(&a, "XACK");
			redis_arg_str(&a, wk.shards[e[i].shard].stream);
			redis_arg_str(&a, WK_GROUP);
		}
		redis_arg_str(&a, e[i].id);
	}
	if (a.n > 0)
		redis_send(wk.rc, NULL, NULL, &a);
}

/* The rest of the batch, or the end of it. */
static void next_range(batch *b)
{
	if (b->split && b->hi < b->n) {
		b->lo = b->hi;
		b->hi = b->lo + 1;
		b->attempt = 0;
		fanout_dispose(&b->out);
		fanout_init(&b->out);
		start(b);
		return;
	}
	void (*done)(void) = b->done;
	batch_free(b);
	done();
}

static void on_published(void *arg, int ok)
{
	batch *b = arg;
	if (!ok) {
		retry_later(b, "Redis unavailable for fan-out");
		return;
	}
	/* Acknowledged only once the fan-out is queued in Redis behind the
	 * same connection: a crash before this redelivers, never loses. */
	ack(b->e, b->lo, b->hi);
	wk.m.entries += (uint64_t)(b->hi - b->lo);
	next_range(b);
}

/* Failures of the connection, deadlocks and serialization conflicts say
 * nothing about the entries and are retried; any other failure is a
 * statement Postgres refused. */
static int transient_failure(const char *err)
{
	return !err || strstr(err, "connection") || strstr(err, "timeout") ||
	       strstr(err, "not connected") || strstr(err, "out of memory") ||
	       strstr(err, "deadlock") || strstr(err, "serializ");
}

/* An entry that fails on its own is set aside where an operator can see
 * it, and acknowledged. */
static void park(batch *b, const char *why)
{
	wk_entry *e = &b->e[b->lo];
	wk.m.malformed++;
	log_error("entry %s (event id %s, %s) refused by the database and parked: %s", e->id,
	          e->eid, e->event ? e->event : e->kind, why);
	shards_park(e->shard, e->id, why);
	next_range(b);
}

/* From now on the entries are applied one at a time, from the first. */
static void split_up(batch *b, const char *why, const char *err)
{
	log_warn("batch of %d entries %s (%s): applying one by one", b->n, why, err);
	b->split = 1;
	b->lo = -1;
	b->hi = 0;
	fanout_dispose(&b->out);
	fanout_init(&b->out);
	next_range(b);
}

static void on_commit(void *arg, int ok, const char *err)
{
	batch *b = arg;
	if (ok) {
		fanout_publish(&b->out, on_published, b);
		return;
	}
	/* A redelivery among the merged updates: no retry of the whole can
	 * succeed, and the message (which quotes the event id) must not be
	 * mistaken for a transient failure. The single statements skip what
	 * was applied. */
	if (b->flags & B_REDELIVERED) {
		split_up(b, "holds events applied before", err);
		return;
	}
	if (!transient_failure(err)) {
		if (b->split) {
			park(b, err);
			return;
		}
		if (b->n > 1 || b->attempt >= 2) {
			split_up(b, "refused by the database", err);
			return;
		}
	}
	retry_later(b, err ? err : "transaction failed");
}

static void start(batch *b)
{
	pg_batch *pb = pg_batch_begin(wk.pg);
	if (!pb) {
		retry_later(b, "database unavailable");
		return;
	}
	/* One entry at a time (split, or a batch of one) keeps the single
	 * statements: they skip a redelivered event instead of failing. */
	b->flags = !b->split && b->hi - b->lo > 1 ? B_MERGE : 0;
	persist_merge_dispose(&b->pm);
	for (int i = b->lo; i < b->hi; i++) {
		if (reads_chats(&b->e[i]))
			persist_flush(b, pb);
		dispatch(b, i, pb);
	}
	persist_flush(b, pb);
	pg_batch_commit(pb, on_commit, b);
}

void batch_run(wk_entry *entries, int n, void (*done)(void))
{
	batch *b = calloc(1, sizeof(*b));
	b->e = entries;
	b->n = n;
	b->lo = 0;
	b->hi = n;
	b->done = done;
	fanout_init(&b->out);
	start(b);
}
