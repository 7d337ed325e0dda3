/*
 * persist.c - the statements that persist `events` updates (persist.h):
 * one per update, or one per message for a batch's updates merged.
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
 * parse and print, and the mirror row's own rewrite. Planning these
 * statements costs about 1 ms more each time, which is why the worker runs
 * them prepared.
 *
 * Merging. A worker batch applies hundreds of updates in one transaction,
 * most of them to a few messages (a status stream, a plugin's deltas), and
 * paying the cost above once per update caps a chat at a few hundred
 * updates a second. persist_merge_build() folds the updates to one message
 * in C into one statement (sql_group): two folds, since whether the
 * message exists is only known under the lock (see sql_group), each a
 * handful of values (a content to set or to append, lists to prepend or
 * append), so the chat and the mirror are parsed, edited and written once
 * per message and the payloads are parsed once per list, not per update.
 * The fold follows the single statements exactly, skips included (an
 * append to content that is not a string, a status or message to a
 * missing message), and the unit test checks that against them on random
 * sequences.
 *
 * The statements of different messages are independent but for two
 * things: the message created last becomes history.currentId, so a
 * message's statement goes where its first creating update was (the only
 * place it can create it); and two messages whose mirror ids coincide race
 * for the mirror row, so their updates keep single statements, in order,
 * as do a message's updates for more than one owner (NULL and a user may
 * both match the chat, and their updates would interleave). The event ids
 * are recorded by one plain INSERT ahead of the groups: a redelivered id
 * fails it, and with it the transaction, before any group ran; the caller
 * then applies the updates one by one with the single statements.
 */
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
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

/* jsonb to json: a cast prints the value and parses the text again to
 * check it; to_json() only prints it. */
#define CAST_JSON(x) x "::json"
#define TO_JSON(x)   "to_json(" x ")"

/* The mirror row of message ed.m (id mid) of chat ed.id, as a whole: the
 * INSERT that the statements complete with their ON CONFLICT clause. J
 * turns jsonb into json. */
#define MIRROR_ROW(mid, J) \
	"INSERT INTO chat_message AS t (id, chat_id, user_id, role, parent_id, content, " \
	"output, model_id, files, sources, embeds, meta, done, status_history, error, " \
	"usage, context_summary, created_at, updated_at) " \
	"SELECT ed.id || '-' || " mid "::text, ed.id, COALESCE(ed.m ->> 'user_id', ed.user_id), " \
	"COALESCE(ed.m ->> 'role', 'assistant'), ed.m ->> 'parentId', " \
	J("(ed.m -> 'content')") ", " J("(ed.m -> 'output')") ", " \
	"COALESCE(ed.m ->> 'model_id', ed.m ->> 'model'), " J("(ed.m -> 'files')") ", " \
	J("(ed.m -> 'sources')") ", " J("(ed.m -> 'embeds')") ", " J("(ed.m -> 'meta')") ", " \
	"CASE jsonb_typeof(ed.m -> 'done') WHEN 'boolean' THEN (ed.m -> 'done')::boolean " \
		"ELSE true END, " \
	J("(ed.m -> 'statusHistory')") ", " J("(ed.m -> 'error')") ", " \
	J("COALESCE(ed.m -> 'usage', ed.m #> '{info,usage}')") ", " \
	"ed.m ->> 'contextSummary', " MSG_TS ", " NOW_S " " \
	"FROM ed JOIN up ON up.id = ed.id"

/* The parent of message mid about to be created: the message whose
 * childrenIds lists it. */
#define PARENT_OF(ms, mid) \
	"(SELECT k.key FROM jsonb_each(" ms ") k WHERE jsonb_typeof(k.value -> 'childrenIds') = " \
	"'array' AND k.value -> 'childrenIds' ? " mid "::text LIMIT 1)"

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
		"LATERAL (SELECT CASE WHEN x.e IS NULL THEN " PARENT_OF("d.ms", "$5") " END AS par " \
			"OFFSET 0) p, " \
		"LATERAL (SELECT CASE WHEN x.e IS NOT NULL THEN " inplace " " \
			"ELSE a.j || jsonb_build_object('history', b.h || jsonb_build_object(" \
			"'messages', d.ms || jsonb_build_object($5::text, " NEW_MESSAGE(field, value) \
			"), 'currentId', $5::text)) END AS j OFFSET 0) n " \
		"WHERE " shape "), " \
	"up AS (UPDATE chat c SET chat = ed.j::json, current_message_id = " \
		"CASE WHEN ed.created THEN $5::text ELSE c.current_message_id END, " \
		"updated_at = " touch " FROM ed WHERE c.id = ed.id RETURNING c.id), " \
	"cm AS (" MIRROR_ROW("$5", CAST_JSON) " " \
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

/*
 * The merged updates of one message (persist_merge_build). The fold of
 * the group's updates comes folded twice, as seven values each: "all", the
 * whole group, used when the message exists, and "post", the updates from
 * the first one that creates the message on, used when it does not (the
 * updates before it would have found no message). Each fold is
 *
 *   cset   content = cset (a replace, then the appends after it)
 *   capp   content = content || capp, if content is a string or absent
 *   eset   embeds = eset (an embeds replace, then the prefixes after it)
 *   epre   embeds = epre ++ embeds
 *   fpre   files = fpre ++ files
 *   sapp   sources = sources ++ sapp
 *   happ   statusHistory = statusHistory ++ happ
 *
 * with NULL for "nothing of that kind" (cset and capp, eset and epre
 * exclude each other). A list that is not an array counts as empty, as
 * with the single statements.
 *
 * Parameters: $1 chat id, $2 owner, $3 message id, $4-$10 the "all" fold,
 * $11-$17 the "post" fold, $18 how many updates "all" holds, $19 how many
 * of them are appends that apply only to string content, $20 how many
 * updates "post" holds, $21 'n' (no update creates the message: nothing
 * happens if it is missing), 's' (the first one does: post is all, $11-$17
 * are NULL) or 'p'.
 *
 * The statement is the single statements' (see PERSIST_SQL), lock and
 * checks included, with the message built from the fold: c is the chat as
 * found (x.e the message, NULL when missing), f the fold that applies, z
 * the message before (the existing one, or the one created, as the first
 * creating update makes it), k whether the content fold applies (ap: the
 * content may be appended to; ca: the content changes), v the new values
 * of the keys that change and y.m the message after, set in one || (each
 * || copies the message), n the chat. The FROM lists are nested because
 * the planner searches join orders over a flat one: with 13 items it took
 * the genetic optimiser and most of a second to plan.
 *
 * The mirror row ends as the single statements would leave it: when it
 * exists (upd), the columns whose updates applied get the message's
 * values and the others stay as they are; when it does not (ins), it is
 * inserted from the whole message (a row inserted meanwhile by someone
 * else is updated as upd would have). jsonb becomes json by to_json(),
 * which does not parse the printed text again as a ::json cast does.
 */
#define FOLD(all, post) \
	"CASE WHEN c.e IS NOT NULL OR $21::text = 's' THEN " all "::text ELSE " post "::text END"
#define MIRROR_SET(col, cond, key) \
	col " = CASE WHEN " cond " THEN to_json(ed.m -> '" key "') ELSE t." col " END"
#define MIRROR_IF(col, cond) \
	col " = CASE WHEN (SELECT " cond " FROM ed) THEN EXCLUDED." col " ELSE t." col " END"
#define CHANGES "(g.ca OR g.eset IS NOT NULL OR g.epre IS NOT NULL OR g.fpre IS NOT NULL " \
	"OR g.sapp IS NOT NULL OR g.happ IS NOT NULL)"

static const char sql_group[] =
	"WITH cur AS (SELECT c.id, c.user_id, c.chat::text AS t FROM chat c "
		"WHERE c.id = $1::text AND c.user_id = COALESCE($2::text, c.user_id) "
		"FOR NO KEY UPDATE), "
	"ed AS (SELECT cur.id, cur.user_id, c.e IS NULL AS created, g.*, n.j FROM cur, "
		"LATERAL (SELECT o.j, a.j AS aj, b.h, d.ms, x.e FROM "
			"(SELECT " CHAT_JSONB " AS j OFFSET 0) o, "
			"LATERAL (SELECT " OBJ("o.j") " AS j OFFSET 0) a, "
			"LATERAL (SELECT " OBJ("a.j -> 'history'") " AS h OFFSET 0) b, "
			"LATERAL (SELECT " OBJ("b.h -> 'messages'") " AS ms OFFSET 0) d, "
			"LATERAL (SELECT CASE jsonb_typeof(d.ms -> $3::text) WHEN 'object' "
				"THEN d.ms -> $3::text END AS e OFFSET 0) x OFFSET 0) c, "
		"LATERAL (SELECT f.*, k.ap, k.ca, y.m FROM "
			"(SELECT " FOLD("$4", "$11") " AS cset, " FOLD("$5", "$12") " AS capp, "
				FOLD("$6", "$13") " AS eset, " FOLD("$7", "$14") " AS epre, "
				FOLD("$8", "$15") " AS fpre, " FOLD("$9", "$16") " AS sapp, "
				FOLD("$10", "$17") " AS happ OFFSET 0) f, "
			"LATERAL (SELECT COALESCE(c.e, (SELECT jsonb_build_object('id', $3::text, "
				"'parentId', p.par, 'childrenIds', '[]'::jsonb, 'role', CASE WHEN "
				"c.ms -> p.par ->> 'role' = 'assistant' THEN 'user' ELSE 'assistant' END, "
				"'timestamp', " NOW_S ") FROM (SELECT " PARENT_OF("c.ms", "$3")
				" AS par OFFSET 0) p "
				"WHERE $21::text <> 'n')) AS e OFFSET 0) z, "
			"LATERAL (SELECT q.ap, f.cset IS NOT NULL OR (f.capp IS NOT NULL AND q.ap) AS ca "
				"FROM (SELECT " NONE_OR("z.e -> 'content'", "'string', 'null'") " AS ap) q "
				"OFFSET 0) k, "
			"LATERAL (SELECT z.e || (jsonb_build_object('content', v.c, 'embeds', v.e, "
				"'files', v.f, 'sources', v.s, 'statusHistory', v.h) - ARRAY["
				"CASE WHEN v.c IS NULL THEN 'content' END, "
				"CASE WHEN v.e IS NULL THEN 'embeds' END, "
				"CASE WHEN v.f IS NULL THEN 'files' END, "
				"CASE WHEN v.s IS NULL THEN 'sources' END, "
				"CASE WHEN v.h IS NULL THEN 'statusHistory' END]) AS m FROM (SELECT "
				"CASE WHEN f.cset IS NOT NULL THEN to_jsonb(f.cset) WHEN k.ca THEN "
					"to_jsonb(COALESCE(z.e ->> 'content', '') || f.capp) END AS c, "
				"CASE WHEN f.eset IS NOT NULL THEN f.eset::jsonb WHEN f.epre IS NOT NULL "
					"THEN f.epre::jsonb || " ARR("z.e -> 'embeds'") " END AS e, "
				"f.fpre::jsonb || " ARR("z.e -> 'files'") " AS f, "
				ARR("z.e -> 'sources'") " || f.sapp::jsonb AS s, "
				ARR("z.e -> 'statusHistory'") " || f.happ::jsonb AS h "
				"OFFSET 0) v OFFSET 0) y OFFSET 0) g, "
		"LATERAL (SELECT CASE WHEN c.e IS NOT NULL THEN jsonb_set(c.j, ARRAY['history', "
			"'messages', $3::text], g.m) ELSE c.aj || jsonb_build_object('history', c.h || "
			"jsonb_build_object('messages', c.ms || jsonb_build_object($3::text, g.m), "
			"'currentId', $3::text)) END AS j OFFSET 0) n "
		"WHERE " CHANGES " AND (c.e IS NOT NULL OR (" NONE_OR("c.j", "'object', 'null'")
			" AND " NONE_OR("c.aj -> 'history'", "'object', 'null'") " AND "
			NONE_OR("c.h -> 'messages'", "'object', 'null'") "))), "
	"up AS (UPDATE chat c SET chat = to_json(ed.j), current_message_id = "
		"CASE WHEN ed.created THEN $3::text ELSE c.current_message_id END, "
		"updated_at = CASE WHEN ed.ca THEN " NOW_S " ELSE c.updated_at END "
		"FROM ed WHERE c.id = $1::text RETURNING c.id), "
	"upd AS (UPDATE chat_message t SET "
		MIRROR_SET("content", "ed.ca", "content") ", "
		MIRROR_SET("embeds", "ed.eset IS NOT NULL OR ed.epre IS NOT NULL", "embeds") ", "
		MIRROR_SET("files", "ed.fpre IS NOT NULL", "files") ", "
		MIRROR_SET("sources", "ed.sapp IS NOT NULL", "sources") ", "
		MIRROR_SET("status_history", "ed.happ IS NOT NULL", "statusHistory") ", "
		"updated_at = " NOW_S " FROM ed JOIN up ON up.id = ed.id "
		"WHERE t.id = $1::text || '-' || $3::text AND t.chat_id = $1::text RETURNING t.id), "
	"ins AS (" MIRROR_ROW("$3", TO_JSON) " WHERE NOT EXISTS (SELECT 1 FROM upd) "
		"ON CONFLICT (id) DO UPDATE SET "
		MIRROR_IF("content", "ca") ", "
		MIRROR_IF("embeds", "eset IS NOT NULL OR epre IS NOT NULL") ", "
		MIRROR_IF("files", "fpre IS NOT NULL") ", "
		MIRROR_IF("sources", "sapp IS NOT NULL") ", "
		MIRROR_IF("status_history", "happ IS NOT NULL") ", "
		"updated_at = EXCLUDED.updated_at WHERE t.chat_id = EXCLUDED.chat_id "
		"RETURNING t.id) "
	"SELECT $3::text AS message_id, ((SELECT count(*) FROM upd) + "
		"(SELECT count(*) FROM ins))::int AS mirrored, "
		"CASE WHEN ed.created THEN $20::int ELSE $18::int - CASE WHEN ed.ap THEN 0 "
		"ELSE $19::int END END AS applied FROM ed JOIN up ON up.id = ed.id";

/* Every merged event id, recorded in one statement. Plainly: an id
 * recorded before fails it (see persist.h). $1 ids, $2 kinds. */
static const char sql_ids[] =
	"INSERT INTO tidings_event (id, kind) SELECT * FROM unnest($1::text[], $2::text[])";

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
		s = json_print(v); /* numbers as they came, not as doubles */
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

/* ---- merging a batch ---- */

/* The update types as the fold sees them; the ones from OP_REPLACE on
 * create a missing message. */
enum { OP_STATUS, OP_MESSAGE, OP_REPLACE, OP_EMBEDS, OP_EMBEDS_SET, OP_FILES, OP_SOURCE };

/* One update added: its own statement (the fallback, and where the fold
 * finds its ids and payload) and its type. Its position is its index. */
typedef struct persist_ev {
	persist_stmt st;
	int op;
} persist_ev;

#define EV_EID(e)   ((e)->st.values[0])
#define EV_KIND(e)  ((e)->st.values[1])
#define EV_CHAT(e)  ((e)->st.values[2])
#define EV_OWNER(e) ((e)->st.values[3])
#define EV_MID(e)   ((e)->st.values[4])
#define EV_DATA(e)  ((e)->st.values[5])

static int op_of(const char *sql)
{
	return sql == sql_status           ? OP_STATUS
	       : sql == sql_message        ? OP_MESSAGE
	       : sql == sql_replace        ? OP_REPLACE
	       : sql == sql_embeds         ? OP_EMBEDS
	       : sql == sql_embeds_replace ? OP_EMBEDS_SET
	       : sql == sql_files          ? OP_FILES
	                                   : OP_SOURCE;
}

void persist_merge_init(persist_merge *m)
{
	memset(m, 0, sizeof(*m));
}

void persist_merge_dispose(persist_merge *m)
{
	for (size_t i = 0; i < m->n; i++)
		persist_stmt_dispose(&m->ev[i].st);
	free(m->ev);
	memset(m, 0, sizeof(*m));
}

int persist_merge_add(persist_merge *m, const char *eid, const char *user_id, const cJSON *data,
                      const char **err)
{
	persist_stmt st;
	int r = persist_events_stmt(eid, user_id, data, &st, err);
	if (r != 0)
		return r;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		persist_ev *ev = realloc(m->ev, cap * sizeof(*ev));
		if (!ev) {
			persist_stmt_dispose(&st);
			*err = "out of memory";
			return -1;
		}
		m->ev = ev;
		m->cap = cap;
	}
	m->ev[m->n].st = st;
	m->ev[m->n].op = op_of(st.sql);
	m->n++;
	return 0;
}

/* Comparisons for qsort over arrays of persist_ev pointers into one array:
 * the pointers' order is the updates' order, which breaks every tie so
 * that equal keys stay in the order added. */
static int by_pos(const persist_ev *a, const persist_ev *b)
{
	return (a > b) - (a < b);
}

static int cmp_eid(const void *x, const void *y)
{
	const persist_ev *a = *(persist_ev *const *)x, *b = *(persist_ev *const *)y;
	int c = strcmp(EV_EID(a), EV_EID(b));
	return c ? c : by_pos(a, b);
}

static int cmp_message(const void *x, const void *y)
{
	const persist_ev *a = *(persist_ev *const *)x, *b = *(persist_ev *const *)y;
	int c = strcmp(EV_CHAT(a), EV_CHAT(b));
	if (!c)
		c = strcmp(EV_MID(a), EV_MID(b));
	return c ? c : by_pos(a, b);
}

static int same_owner(const persist_ev *a, const persist_ev *b)
{
	const char *x = EV_OWNER(a), *y = EV_OWNER(b);
	return x && y ? strcmp(x, y) == 0 : x == y;
}

/* The updates to one message: sorted[lo, hi) of the build. at is where
 * its statement goes among the others: its first update that creates the
 * message (creating messages in the order the single statements would,
 * which decides history.currentId), else its first update. alone: its
 * updates get single statements (see persist.h). */
typedef struct run {
	size_t lo, hi;
	const persist_ev *at;
	char *mirror; /* the mirror row id, '{chat_id}-{message_id}' */
	int alone;
} run;

static int cmp_mirror(const void *x, const void *y)
{
	const run *a = *(run *const *)x, *b = *(run *const *)y;
	return strcmp(a->mirror, b->mirror);
}

/* A statement of the build, in order: a run's, or one update's. */
typedef struct item {
	const persist_ev *at;
	run *r;        /* NULL: one update */
	persist_ev *e; /* that update */
} item;

static int cmp_item(const void *x, const void *y)
{
	return by_pos(((const item *)x)->at, ((const item *)y)->at);
}

/* Growable text. (Not common/buf.h: its type name is a common local
 * variable name in code that includes this file.) */
typedef struct pbuf {
	char *data;
	size_t len, cap;
} pbuf;

/* One fold (see sql_group): the payloads concatenated as SQL wants them,
 * lists as their elements without brackets. */
typedef struct fold {
	pbuf cset, capp, emb, files, src, hist;
	int has_cset, has_capp, has_files, emb_op; /* emb_op: 0, OP_EMBEDS, OP_EMBEDS_SET */
	int n, ncond;
	int oom;
} fold;

static void fold_init(fold *f)
{
	memset(f, 0, sizeof(*f));
}

static void fold_dispose(fold *f)
{
	free(f->cset.data);
	free(f->capp.data);
	free(f->emb.data);
	free(f->files.data);
	free(f->src.data);
	free(f->hist.data);
}

/* Appends n bytes to b; running out of memory is noted in f. */
static void cat(fold *f, pbuf *b, const char *s, size_t n)
{
	if (f->oom || n == 0)
		return;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p) {
			f->oom = 1;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

/* Appends one list element (a JSON value) or the elements of a JSON array
 * printed without whitespace ("[]" or "[...]"), comma-separated. */
static void join(fold *f, pbuf *b, const char *json, int array)
{
	size_t n = strlen(json);
	if (array) {
		json++;
		n -= 2;
	}
	if (n == 0)
		return;
	if (b->len)
		cat(f, b, ",", 1);
	cat(f, b, json, n);
}

/* Folds the updates e[0..n) (in order). Content, sources and statuses in
 * order; embeds and files backwards, since each update's list goes in
 * front of what is there. */
static void fold_run(fold *f, persist_ev *const *e, size_t n)
{
	f->n = (int)n;
	for (size_t i = 0; i < n; i++) {
		const char *d = EV_DATA(e[i]);
		switch (e[i]->op) {
		case OP_STATUS: join(f, &f->hist, d, 0); break;
		case OP_SOURCE: join(f, &f->src, d, 0); break;
		case OP_REPLACE:
			f->cset.len = 0;
			cat(f, &f->cset, d, strlen(d));
			f->has_cset = 1;
			break;
		case OP_MESSAGE:
			cat(f, f->has_cset ? &f->cset : &f->capp, d, strlen(d));
			f->has_capp |= !f->has_cset;
			f->ncond += !f->has_cset;
			break;
		default: break;
		}
	}
	for (size_t i = n; i-- > 0;) {
		const char *d = EV_DATA(e[i]);
		if (e[i]->op == OP_FILES) {
			join(f, &f->files, d, 1);
			f->has_files = 1;
		} else if ((e[i]->op == OP_EMBEDS || e[i]->op == OP_EMBEDS_SET) &&
		           f->emb_op != OP_EMBEDS_SET) {
			join(f, &f->emb, d, 1);
			f->emb_op = e[i]->op;
		}
	}
}

/* A NUL-terminated copy of b's bytes, bracketed when a list; NULL when
 * absent (and on no memory, noted in f). */
static char *take(fold *f, const pbuf *b, int present, int list)
{
	if (!present)
		return NULL;
	char *s = malloc(b->len + 3);
	if (!s) {
		f->oom = 1;
		return NULL;
	}
	size_t o = 0;
	if (list)
		s[o++] = '[';
	if (b->len)
		memcpy(s + o, b->data, b->len);
	o += b->len;
	if (list)
		s[o++] = ']';
	s[o] = '\0';
	return s;
}

/* The fold's seven parameters, from v[0]. */
static void fold_params(fold *f, char **v)
{
	v[0] = take(f, &f->cset, f->has_cset, 0);
	v[1] = take(f, &f->capp, f->has_capp && !f->has_cset, 0);
	v[2] = take(f, &f->emb, f->emb_op == OP_EMBEDS_SET, 1);
	v[3] = take(f, &f->emb, f->emb_op == OP_EMBEDS, 1);
	v[4] = take(f, &f->files, f->has_files, 1);
	v[5] = take(f, &f->src, f->src.len > 0, 1);
	v[6] = take(f, &f->hist, f->hist.len > 0, 1);
}

static char *num(int n)
{
	char s[16];
	snprintf(s, sizeof(s), "%d", n);
	return strdup(s);
}

/* The statement of the updates e[0..n) to one message. Returns 0 or -1
 * (no memory; *st is then released). */
static int group_stmt(persist_ev *const *e, size_t n, persist_stmt *st)
{
	size_t first = 0;
	while (first < n && e[first]->op < OP_REPLACE)
		first++;
	fold all, post;
	fold_init(&all);
	fold_init(&post);
	fold_run(&all, e, n);
	if (first > 0 && first < n)
		fold_run(&post, e + first, n - first);
	memset(st, 0, sizeof(*st));
	st->sql = sql_group;
	st->kind = PERSIST_GROUP;
	st->nparams = 21;
	char **v = st->values;
	int oom = (v[0] = strdup(EV_CHAT(e[0]))) == NULL || (v[2] = strdup(EV_MID(e[0]))) == NULL ||
	          (EV_OWNER(e[0]) && (v[1] = strdup(EV_OWNER(e[0]))) == NULL);
	fold_params(&all, v + 3);
	if (first > 0 && first < n)
		fold_params(&post, v + 10);
	v[17] = num(all.n);
	v[18] = num(all.ncond);
	v[19] = num(first < n ? (int)(n - first) : 0);
	v[20] = strdup(first == n ? "n" : first == 0 ? "s" : "p");
	oom |= all.oom || post.oom || !v[17] || !v[18] || !v[19] || !v[20];
	fold_dispose(&all);
	fold_dispose(&post);
	if (oom)
		persist_stmt_dispose(st);
	return oom ? -1 : 0;
}

/* Appends s to a Postgres array literal as one quoted element. */
static void array_elem(fold *f, pbuf *b, const char *s)
{
	cat(f, b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
	for (const char *p = s; *p; p++) {
		if (*p == '"' || *p == '\\')
			cat(f, b, "\\", 1);
		cat(f, b, p, 1);
	}
	cat(f, b, "\"", 1);
}

/* The PERSIST_IDS statement for the updates in runs that are not alone. */
static int ids_stmt(persist_ev *const *sorted, const run *runs, size_t nruns, persist_stmt *st)
{
	fold f; /* for its buffers and sticky out-of-memory flag */
	fold_init(&f);
	cat(&f, &f.cset, "{", 1);
	cat(&f, &f.capp, "{", 1);
	for (size_t r = 0; r < nruns; r++) {
		for (size_t i = runs[r].lo; i < runs[r].hi && !runs[r].alone; i++) {
			array_elem(&f, &f.cset, EV_EID(sorted[i]));
			array_elem(&f, &f.capp, EV_KIND(sorted[i]));
		}
	}
	cat(&f, &f.cset, "}", 1);
	cat(&f, &f.capp, "}", 1);
	memset(st, 0, sizeof(*st));
	st->sql = sql_ids;
	st->kind = PERSIST_IDS;
	st->nparams = 2;
	st->values[0] = take(&f, &f.cset, 1, 0);
	st->values[1] = take(&f, &f.capp, 1, 0);
	int oom = f.oom;
	fold_dispose(&f);
	if (oom)
		persist_stmt_dispose(st);
	return oom ? -1 : 0;
}

/* Splits sorted[0..n) (sorted by message) into runs, one per message, and
 * marks the runs that must stay single statements. Returns the number of
 * runs, or 0 on no memory. */
static size_t find_runs(persist_ev *const *sorted, size_t n, run *runs)
{
	size_t nruns = 0;
	for (size_t i = 0; i < n;) {
		run *r = &runs[nruns++];
		r->lo = i;
		r->at = NULL;
		r->alone = 0;
		for (; i < n && strcmp(EV_CHAT(sorted[i]), EV_CHAT(sorted[r->lo])) == 0 &&
		       strcmp(EV_MID(sorted[i]), EV_MID(sorted[r->lo])) == 0;
		     i++) {
			r->alone |= !same_owner(sorted[i], sorted[r->lo]);
			if (!r->at && sorted[i]->op >= OP_REPLACE)
				r->at = sorted[i];
		}
		r->hi = i;
		if (!r->at)
			r->at = sorted[r->lo];
		if (asprintf(&r->mirror, "%s-%s", EV_CHAT(sorted[r->lo]), EV_MID(sorted[r->lo])) <
		    0) {
			r->mirror = NULL;
			return 0;
		}
	}
	/* Two messages whose mirror rows share an id: which one's statement
	 * inserts the row first decides who owns it. */
	run **by = malloc(nruns * sizeof(run *));
	if (!by)
		return 0;
	for (size_t r = 0; r < nruns; r++)
		by[r] = &runs[r];
	qsort(by, nruns, sizeof(run *), cmp_mirror);
	for (size_t r = 1; r < nruns; r++) {
		if (strcmp(by[r]->mirror, by[r - 1]->mirror) == 0)
			by[r]->alone = by[r - 1]->alone = 1;
	}
	free(by);
	return nruns;
}

/* Orders the statements: each run's at its place, or its updates' at
 * theirs. Returns the number of items. */
static size_t order_items(persist_ev *const *sorted, run *runs, size_t nruns, item *items)
{
	size_t k = 0;
	for (size_t r = 0; r < nruns; r++) {
		if (!runs[r].alone) {
			items[k++] = (item){runs[r].at, &runs[r], NULL};
			continue;
		}
		for (size_t i = runs[r].lo; i < runs[r].hi; i++)
			items[k++] = (item){sorted[i], NULL, sorted[i]};
	}
	qsort(items, k, sizeof(*items), cmp_item);
	return k;
}

/* Emits the ordered statements into out (room for 1 + nitems). */
static int build_stmts(persist_ev *const *sorted, run *runs, size_t nruns, const item *items,
                       size_t nitems, persist_stmt *out, size_t *nout)
{
	size_t k = 0;
	int merged = 0;
	for (size_t r = 0; r < nruns; r++)
		merged |= !runs[r].alone;
	if (merged && ids_stmt(sorted, runs, nruns, &out[k++]) < 0)
		return -1;
	for (size_t i = 0; i < nitems; i++) {
		if (items[i].r) {
			if (group_stmt(sorted + items[i].r->lo, items[i].r->hi - items[i].r->lo,
			               &out[k]) < 0) {
				*nout = k;
				return -1;
			}
			k++;
		} else {
			out[k++] = items[i].e->st;
			memset(&items[i].e->st, 0, sizeof(items[i].e->st));
		}
	}
	*nout = k;
	return 0;
}

int persist_merge_build(persist_merge *m, persist_stmt **out, size_t *nout)
{
	*out = NULL;
	*nout = 0;
	if (m->n == 0) {
		persist_merge_dispose(m);
		return 0;
	}
	size_t n = m->n, nruns = 0, nitems = 0, kept = 0;
	persist_ev **sorted = malloc(n * sizeof(persist_ev *));
	run *runs = calloc(n, sizeof(*runs));
	item *items = malloc(n * sizeof(*items));
	persist_stmt *st = calloc(n + 1, sizeof(*st));
	int rc = -1;
	if (!sorted || !runs || !items || !st)
		goto done;
	/* An id seen before counts once: its later statements would skip. */
	for (size_t i = 0; i < n; i++)
		sorted[i] = &m->ev[i];
	qsort(sorted, n, sizeof(persist_ev *), cmp_eid);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(EV_EID(sorted[i]), EV_EID(sorted[kept - 1])) != 0)
			sorted[kept++] = sorted[i];
	}
	qsort(sorted, kept, sizeof(persist_ev *), cmp_message);
	nruns = find_runs(sorted, kept, runs);
	if (nruns == 0)
		goto done;
	nitems = order_items(sorted, runs, nruns, items);
	rc = build_stmts(sorted, runs, nruns, items, nitems, st, nout);
done:
	for (size_t r = 0; r < n && runs; r++)
		free(runs[r].mirror);
	if (rc < 0 && st) {
		for (size_t i = 0; i < *nout; i++)
			persist_stmt_dispose(&st[i]);
		*nout = 0;
	}
	free(sorted);
	free(runs);
	free(items);
	if (rc == 0)
		*out = st;
	else
		free(st);
	persist_merge_dispose(m);
	return rc;
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
