/*
 * persist.c - the statement that persists an `events` update (persist.h).
 *
 * Everything happens in one SQL statement made of CTEs:
 *
 *   ev   INSERT INTO tidings_event ... ON CONFLICT DO NOTHING RETURNING id
 *   cur  SELECT the owner's chat row ... AND EXISTS (SELECT 1 FROM ev)
 *        FOR NO KEY UPDATE
 *   ed   the edited chat JSON and message, computed from cur
 *   up   UPDATE chat ... FROM ed
 *   cm   INSERT INTO chat_message ... FROM ed JOIN up ON CONFLICT (id) DO UPDATE
 *
 * A redelivered event finds its id in tidings_event, ev returns no row, and
 * nothing after it does anything (not even lock the chat row). There is no
 * second statement whose skipping would need its own bookkeeping.
 *
 * Why no update is lost (catalogue 9 #11): the JSON is edited in SQL from
 * the row cur holds locked. Under READ COMMITTED a SELECT ... FOR NO KEY
 * UPDATE that finds the row locked waits for the holder to finish, then
 * re-reads and re-checks the newest version of the row (EvalPlanQual), so
 * a second concurrent emit edits the first one's result; no edit is
 * computed from a copy read before the lock. The UPDATE then writes that
 * same version, which nobody else can change meanwhile. (NO KEY: the lock
 * an UPDATE of non-key columns takes anyway; unlike FOR UPDATE it does not
 * hold up other sessions inserting chat_message rows that reference the
 * chat.) chat_message is written under the same lock, from the message as
 * edited, so the mirror ends equal to the chat JSON (which also heals a
 * mirror that had drifted).
 *
 * chat.chat is json, not jsonb: it is parsed to jsonb once per statement,
 * edited with jsonb functions (one jsonb_set or jsonb_insert pass when the
 * message exists) and printed back. The stored text is therefore
 * normalised (jsonb key order, no insignificant whitespace, duplicate keys
 * collapsed to the last one), which Open WebUI does not mind: it reads the
 * column with json.loads.
 *
 * The statement must not fail on data it finds, because a failed
 * statement aborts the worker's whole batch and the batch is retried until
 * it succeeds: one poisoned chat would stall its shard. Hence the \u0000
 * removal before the jsonb cast (json accepts the escape, jsonb refuses
 * it), the shape checks (a chat, history or messages value that is not an
 * object is left alone rather than replaced), the type checks before every
 * cast of a value taken from the JSON, and the UTF-8 check of parameters.
 * What remains is data jsonb cannot represent at all (a number beyond
 * numeric's range) and server errors.
 *
 * Cost: each statement parses and prints the whole chat JSON and writes a
 * new, TOAST-compressed row version, so it grows with the chat: about
 * 1.6 ms for a 40 KB chat and 5 ms for a 110 KB one on the development box
 * (tests/unit/worker/persist.c reports it), most of it pglz, the jsonb
 * parse and print, and the mirror row's own rewrite.
 */
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* ---- SQL ---- */

/* clang-format would re-indent the SQL around every macro call: off. */
/* clang-format off */

#define NOW_S "floor(extract(epoch FROM now()))::bigint"

/* x as a JSON object or array; anything else (absent, null) as empty. The
 * shape checks make sure "anything else" never discards data. */
#define OBJ(x) "CASE jsonb_typeof(" x ") WHEN 'object' THEN " x " ELSE '{}'::jsonb END"
#define ARR(x) "CASE jsonb_typeof(" x ") WHEN 'array' THEN " x " ELSE '[]'::jsonb END"
#define NONE_OR(x, types) "COALESCE(jsonb_typeof(" x "), 'null') IN (" types ")"

/* The locked chat JSON as jsonb (NULL for SQL NULL), with \u0000 escapes
 * removed first: json accepts them, jsonb refuses them. An escape is a
 * backslash preceded by an even number of backslashes. */
#define CHAT_JSONB \
	"(CASE WHEN strpos(cur.t, '\\u0000') = 0 THEN cur.t ELSE regexp_replace(cur.t, " \
	"'(?<!\\\\)((?:\\\\\\\\)*)\\\\u0000', '\\1', 'g') END)::jsonb"

/* Shape checks. UPSERT: the chat, its history and history.messages are
 * objects or absent, so creating the message replaces nothing. STATUS:
 * the message exists. MESSAGE: it exists and its content is a string or
 * absent (a list of content blocks is not turned into a string). */
#define SHAPE_UPSERT \
	NONE_OR("o.j", "'object', 'null'") " AND " \
	NONE_OR("a.j -> 'history'", "'object', 'null'") " AND " \
	NONE_OR("b.h -> 'messages'", "'object', 'null'")
#define SHAPE_STATUS "x.e IS NOT NULL"
#define SHAPE_MESSAGE "x.e IS NOT NULL AND " NONE_OR("x.e -> 'content'", "'string', 'null'")

/* The created-at of a mirror row: the message's timestamp (seconds, or
 * milliseconds converted), else now. */
#define MSG_TS \
	"CASE WHEN jsonb_typeof(ed.m -> 'timestamp') = 'number' THEN (SELECT CASE " \
	"WHEN z.n >= 0 AND z.n < 1e11 THEN floor(z.n)::bigint " \
	"WHEN z.n >= 0 AND z.n < 1e14 THEN floor(z.n / 1000)::bigint ELSE " NOW_S " END " \
	"FROM (SELECT (ed.m -> 'timestamp')::numeric AS n) z) ELSE " NOW_S " END"

/* The new chat JSON when the message exists: one pass that sets (or, for
 * the appending types, inserts into) one key of the message. Rebuilding
 * the message and each enclosing object with || would copy the whole
 * document several times over. */
#define SET_FIELD(field, value) \
	"jsonb_set(o.j, ARRAY['history', 'messages', $5::text, '" field "'], " value ")"
#define APPEND_FIELD(field) \
	"CASE jsonb_typeof(x.e -> '" field "') WHEN 'array' THEN jsonb_insert(o.j, " \
	"ARRAY['history', 'messages', $5::text, '" field "', '-1'], $6::jsonb, true) ELSE " \
	SET_FIELD(field, "jsonb_build_array($6::jsonb)") " END"

/* A message created by an update, as Open WebUI's upsert makes it. */
#define NEW_MESSAGE(field, value) \
	"jsonb_build_object('id', $5::text, 'parentId', p.par, 'childrenIds', '[]'::jsonb, " \
	"'role', CASE WHEN d.ms -> p.par ->> 'role' = 'assistant' THEN 'user' " \
	"ELSE 'assistant' END, 'timestamp', " NOW_S ", '" field "', " value ")"

/*
 * Parameters: $1 event id, $2 kind, $3 chat id, $4 user id, $5 message id,
 * $6 the payload (JSON text, or the content string for message/replace).
 *
 *   ev   records the event id; empty on a redelivery, which skips the rest.
 *   cur  locks the owner's chat row and reads its chat JSON.
 *   ed   edits it: o the jsonb, a/b/d the chat, history and messages
 *        objects, x the existing message, p the parent of a message about
 *        to be created, n the new chat JSON and m the new message. Each
 *        step is fenced with OFFSET 0: inlined, the planner would copy
 *        every expression into each of its uses, and the jsonb values
 *        would be parsed and copied many times over.
 *   up   writes the chat row; cm mirrors the message into chat_message.
 *
 * field: the message key edited; value: its new value (x.e is the existing
 * message, NULL when absent); inplace: the new chat JSON when the message
 * exists; touch: the new updated_at; shape: the WHERE of ed; col: the
 * mirrored chat_message column.
 */
#define PERSIST_SQL(field, value, inplace, touch, shape, col) \
	"WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1::text, $2::text) " \
		"ON CONFLICT DO NOTHING RETURNING id), " \
	"cur AS (SELECT c.id, c.user_id, c.chat::text AS t FROM chat c " \
		"WHERE c.id = $3::text AND c.user_id = COALESCE($4::text, c.user_id) AND EXISTS (SELECT 1 FROM ev) " \
		"FOR NO KEY UPDATE), " \
	"ed AS (SELECT cur.id, cur.user_id, x.e IS NULL AS created, n.j, " \
		"n.j #> ARRAY['history', 'messages', $5::text] AS m FROM cur, " \
		"LATERAL (SELECT " CHAT_JSONB " AS j OFFSET 0) o, " \
		"LATERAL (SELECT " OBJ("o.j") " AS j OFFSET 0) a, " \
		"LATERAL (SELECT " OBJ("a.j -> 'history'") " AS h OFFSET 0) b, " \
		"LATERAL (SELECT " OBJ("b.h -> 'messages'") " AS ms OFFSET 0) d, " \
		"LATERAL (SELECT CASE jsonb_typeof(d.ms -> $5::text) WHEN 'object' " \
			"THEN d.ms -> $5::text END AS e OFFSET 0) x, " \
		"LATERAL (SELECT CASE WHEN x.e IS NULL THEN (SELECT k.key FROM jsonb_each(d.ms) k " \
			"WHERE jsonb_typeof(k.value -> 'childrenIds') = 'array' " \
			"AND k.value -> 'childrenIds' ? $5::text LIMIT 1) END AS par OFFSET 0) p, " \
		"LATERAL (SELECT CASE WHEN x.e IS NOT NULL THEN " inplace " " \
			"ELSE a.j || jsonb_build_object('history', b.h || jsonb_build_object(" \
			"'messages', d.ms || jsonb_build_object($5::text, " NEW_MESSAGE(field, value) \
			"), 'currentId', $5::text)) END AS j OFFSET 0) n " \
		"WHERE " shape "), " \
	"up AS (UPDATE chat c SET chat = ed.j::json, current_message_id = " \
		"CASE WHEN ed.created THEN $5::text ELSE c.current_message_id END, " \
		"updated_at = " touch " FROM ed WHERE c.id = ed.id RETURNING c.id), " \
	"cm AS (INSERT INTO chat_message AS t (id, chat_id, user_id, role, parent_id, content, " \
		"output, model_id, files, sources, embeds, meta, done, status_history, error, " \
		"usage, context_summary, created_at, updated_at) " \
		"SELECT ed.id || '-' || $5::text, ed.id, COALESCE(ed.m ->> 'user_id', ed.user_id), " \
		"COALESCE(ed.m ->> 'role', 'assistant'), ed.m ->> 'parentId', " \
		"(ed.m -> 'content')::json, (ed.m -> 'output')::json, " \
		"COALESCE(ed.m ->> 'model_id', ed.m ->> 'model'), (ed.m -> 'files')::json, " \
		"(ed.m -> 'sources')::json, (ed.m -> 'embeds')::json, (ed.m -> 'meta')::json, " \
		"CASE jsonb_typeof(ed.m -> 'done') WHEN 'boolean' THEN (ed.m -> 'done')::boolean " \
			"ELSE true END, " \
		"(ed.m -> 'statusHistory')::json, (ed.m -> 'error')::json, " \
		"COALESCE(ed.m -> 'usage', ed.m #> '{info,usage}')::json, " \
		"ed.m ->> 'contextSummary', " MSG_TS ", " NOW_S " " \
		"FROM ed JOIN up ON up.id = ed.id " \
		"ON CONFLICT (id) DO UPDATE SET " col " = EXCLUDED." col ", " \
		"updated_at = EXCLUDED.updated_at WHERE t.chat_id = EXCLUDED.chat_id " \
		"RETURNING t.id) " \
	"SELECT $5::text AS message_id, (SELECT count(*) FROM cm)::int AS mirrored FROM up"

#define TOUCH NOW_S
#define KEEP "c.updated_at"

/* One more expansion step, so that APPENDED and SET become arguments. */
#define PERSIST(...) PERSIST_SQL(__VA_ARGS__)
/* Appending types: the array of a created message is [$6]. */
#define APPENDED(field) field, "jsonb_build_array($6::jsonb)", APPEND_FIELD(field)
/* The others: the same value whether the message is new or not. */
#define SET(field, value) field, value, SET_FIELD(field, value)

static const char sql_status[] =
	PERSIST(APPENDED("statusHistory"), KEEP, SHAPE_STATUS, "status_history");
static const char sql_message[] =
	PERSIST(SET("content", "to_jsonb(COALESCE(x.e ->> 'content', '') || $6::text)"), TOUCH,
		SHAPE_MESSAGE, "content");
static const char sql_replace[] =
	PERSIST(SET("content", "to_jsonb($6::text)"), TOUCH, SHAPE_UPSERT, "content");
static const char sql_embeds_replace[] =
	PERSIST(SET("embeds", "$6::jsonb"), KEEP, SHAPE_UPSERT, "embeds");
static const char sql_embeds[] =
	PERSIST(SET("embeds", "$6::jsonb || " ARR("x.e -> 'embeds'")), KEEP, SHAPE_UPSERT,
		"embeds");
static const char sql_files[] =
	PERSIST(SET("files", "$6::jsonb || " ARR("x.e -> 'files'")), KEEP, SHAPE_UPSERT, "files");
static const char sql_sources[] = PERSIST(APPENDED("sources"), KEEP, SHAPE_UPSERT, "sources");

/* clang-format on */

/* ---- building ---- */

#define STR_(x)    #x
#define STR(x)     STR_(x)
#define ID_MAX_STR STR(PERSIST_MAX_ID)

/* Python truthiness, as Open WebUI tests `data.get('replace')`. */
static int truthy(const cJSON *v)
{
	if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
		return 0;
	if (cJSON_IsNumber(v))
		return v->valuedouble != 0;
	if (cJSON_IsString(v))
		return v->valuestring[0] != '\0';
	if (cJSON_IsArray(v) || cJSON_IsObject(v))
		return v->child != NULL;
	return 1;
}

static int has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* An id from the event: 1 when absent or empty (nothing to persist), -1
 * when it is not a usable string, 0 when *out is set. */
static int get_id(const cJSON *obj, const char *name, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]))
		return 1;
	if (!cJSON_IsString(v))
		return -1;
	*out = v->valuestring;
	return 0;
}

static int id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= PERSIST_MAX_ID && utf8_is_valid(s, n);
}

/* What each persisted type takes from data.data (d): the whole of d, or one
 * key of it, and of which JSON type. A missing value counts as empty, as
 * Open WebUI's `.get(key, default)` does. */
enum { P_OBJECT, P_SOURCE, P_STRING, P_ARRAY };

typedef struct ptype {
	const char *name;
	const char *sql;
	const char *sql_replace; /* used when d.replace is truthy; NULL: never */
	const char *key;         /* NULL: d itself */
	int kind;
	const char *why; /* the refusal of a malformed value */
} ptype;

static const ptype types[] = {
    {"status", sql_status, NULL, NULL, P_OBJECT, "status data must be an object"},
    {"message", sql_message, NULL, "content", P_STRING, "content must be a string"},
    {"replace", sql_replace, NULL, "content", P_STRING, "content must be a string"},
    {"embeds", sql_embeds, sql_embeds_replace, "embeds", P_ARRAY, "embeds must be an array"},
    {"files", sql_files, NULL, "files", P_ARRAY, "files must be an array"},
    {"source", sql_sources, NULL, NULL, P_SOURCE, "a source must be an object"},
    {"citation", sql_sources, NULL, NULL, P_SOURCE, "a citation must be an object"},
};

/* $6 for value v of type t: a copy of the string, or the JSON text. NULL
 * with *why set when v is of the wrong type, not valid UTF-8, or memory
 * ran out. */
static char *payload_text(const ptype *t, const cJSON *v, const char **why)
{
	static const char *const empty[] = {"{}", "{}", "", "[]"};
	char *s = NULL;
	int fits = t->kind == P_STRING  ? cJSON_IsString(v)
	           : t->kind == P_ARRAY ? cJSON_IsArray(v)
	                                : cJSON_IsObject(v);
	*why = t->why;
	if (!v)
		s = strdup(empty[t->kind]);
	else if (!fits)
		return NULL;
	else if (t->kind == P_STRING)
		s = strdup(v->valuestring);
	else
		s = cJSON_PrintUnformatted(v); /* malloc: we install no cJSON hooks */
	if (!s) {
		*why = "out of memory";
		return NULL;
	}
	if (!utf8_is_valid(s, strlen(s))) {
		*why = "strings must be valid UTF-8";
		free(s);
		return NULL;
	}
	return s;
}

/* Picks the statement for the envelope's type and makes $6. Returns 0,
 * 1 (not persisted) or -1 (*err). */
static int payload(const char *type, const cJSON *d, const char **sql, char **p6, const char **err)
{
	const ptype *t = NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && !t; i++)
		if (strcmp(type, types[i].name) == 0)
			t = &types[i];
	if (!t)
		return 1;
	if (d && !cJSON_IsObject(d)) {
		*err = t->kind == P_OBJECT || t->kind == P_SOURCE ? t->why
		                                                  : "data.data must be an object";
		return -1;
	}
	if (t->kind == P_SOURCE) {
		if (!d) {
			*err = t->why;
			return -1;
		}
		/* Code execution results carry a type and only live in the UI. */
		if (cJSON_GetObjectItemCaseSensitive(d, "type"))
			return 1;
	}
	const cJSON *replace = cJSON_GetObjectItemCaseSensitive(d, "replace");
	*sql = t->sql_replace && truthy(replace) ? t->sql_replace : t->sql;
	*p6 = payload_text(t, t->key ? cJSON_GetObjectItemCaseSensitive(d, t->key) : d, err);
	return *p6 ? 0 : -1;
}

int persist_events_stmt(const char *eid, const char *user_id, const cJSON *data, persist_stmt *st,
                        const char **err)
{
	const char *chat = NULL, *mid = NULL, *sql = NULL;
	char *p6 = NULL;
	memset(st, 0, sizeof(*st));
	if (!id_ok(eid) || (user_id && !id_ok(user_id))) {
		*err = "event id and user id must be 1-" ID_MAX_STR " bytes of valid UTF-8";
		return -1;
	}
	if (!cJSON_IsObject(data)) {
		*err = "the events argument must be an object";
		return -1;
	}
	int r = get_id(data, "chat_id", &chat);
	int r2 = get_id(data, "message_id", &mid);
	if (r < 0 || r2 < 0 || (r == 0 && !id_ok(chat)) || (r2 == 0 && !id_ok(mid))) {
		*err = "chat_id and message_id must be strings of 1-" ID_MAX_STR
		       " bytes of valid UTF-8";
		return -1;
	}
	if (r || r2)
		return 1;
	if (has_prefix(chat, "temporary:") || has_prefix(chat, "local:") ||
	    has_prefix(chat, "channel:"))
		return 1;
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(data, "data");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(env, "type");
	if (!cJSON_IsObject(env) || !cJSON_IsString(type)) {
		*err = "data must be an object with a string type";
		return -1;
	}
	r = payload(type->valuestring, cJSON_GetObjectItemCaseSensitive(env, "data"), &sql, &p6,
	            err);
	if (r != 0)
		return r;
	char kind[64];
	snprintf(kind, sizeof(kind), "events %s", type->valuestring);
	st->sql = sql;
	st->nparams = 6;
	st->values[0] = strdup(eid);
	st->values[1] = strdup(kind);
	st->values[2] = strdup(chat);
	st->values[3] = user_id ? strdup(user_id) : NULL;
	st->values[4] = strdup(mid);
	st->values[5] = p6;
	for (int i = 0; i < st->nparams; i++) {
		if (!st->values[i] && !(i == 3 && !user_id)) {
			persist_stmt_dispose(st);
			*err = "out of memory";
			return -1;
		}
	}
	return 0;
}

void persist_stmt_dispose(persist_stmt *st)
{
	for (int i = 0; i < PERSIST_MAX_PARAMS; i++)
		free(st->values[i]);
	memset(st, 0, sizeof(*st));
}

size_t persist_strip_nul(char *json, size_t len)
{
	size_t i = 0, o = 0;
	while (i < len) {
		if (json[i] == '\0') {
			i++;
		} else if (json[i] != '\\') {
			json[o++] = json[i++];
		} else if (len - i >= 6 && memcmp(json + i + 1, "u0000", 5) == 0) {
			i += 6;
		} else {
			/* An escape pair is copied whole, so the backslash of an
			 * escaped backslash never starts a \u0000 match. */
			json[o++] = json[i++];
			if (i < len && json[i] != '\0')
				json[o++] = json[i++];
		}
	}
	return o;
}
