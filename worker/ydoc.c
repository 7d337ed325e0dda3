/*
 * ydoc.c - collaborative notes (see ydoc.h): the `ydoc:*` events, the
 * document's sessions and update log in Redis, compaction, and the
 * debounced save of the note's content.
 *
 * A document is `note:{id}` (`note_{id}` is the same one); anything else
 * is refused, as no rule grants access to it (catalogue 9 #17). Access is
 * checked in SQL at use time, like join-note: read (admin, owner, or a
 * read grant to the user, to everyone or to one of the user's groups) to
 * join, ask for the state and send awareness; write (admin, owner or a
 * write grant) to send updates and to save. Identity is always the
 * entry's verified user; the gateway has already removed user_id and
 * socket_id from the payload.
 *
 * Per document, in Redis (docs/redis.md): the sessions hash (sid -> "gw
 * user", cluster-wide, so the `sessions` of a state answer and the
 * client's seeding decision do not depend on which gateway a client
 * landed on, catalogue 9 #1 #2), the update log (raw update bytes, one
 * entry per update), and each socket's set of documents for the
 * disconnect clean-up. Each event runs one script that checks and changes
 * them atomically and returns what the deliveries need: the sessions
 * connected now (a session counts while its socket's session key names
 * the same gateway; sessions of a gateway whose liveness key expired are
 * removed, and the others told they left), and the log.
 *
 * Deliveries go to the gateways of the document's sessions as read by
 * that script, not to the room registry: the registry learns of a member
 * only once its gateway has processed the join, so an update published in
 * between would miss the joiner for good. Here a joiner's session is in
 * the hash from its join's script on, and its gateway's stream holds the
 * join (and the state) before any later update.
 *
 * The log is merged (common/yjs.h) into the join answer, as pycrdt does in
 * Open WebUI, and compacted: the first k entries are replaced by their
 * merge by a script that first checks they are still the same (a SHA-1 of
 * them), so updates appended meanwhile, by any worker, are never lost
 * (catalogue 9 #15). Keys expire when unused: a day after their last use,
 * and the log a minute after its last session left (Open WebUI deletes it
 * at once, which loses the content when the note's save lagged behind).
 */
#include "ydoc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/ident.h"
#include "common/json.h"
#include "common/log.h"
#include "common/shard.h"
#include "common/yjs.h"
#include "wk.h"

#define YDOC_TTL_S         86400 /* sessions, log, a socket's documents: after last use */
#define YDOC_IDLE_MS       60000 /* the log, once its last session left */
#define YDOC_SAVE_DELAY_MS 500   /* a note is saved after this long without content updates */
#define YDOC_SAVE_TTL_S    86400 /* a pending save nobody could apply is dropped after this */
#define YDOC_SWEEP_MS      1000  /* every owned shard's pending saves are looked at this often */
#define YDOC_MAX_MERGE     (256u << 20)
#define YDOC_DOC_MAX       160

enum { Y_JOIN, Y_STATE, Y_UPDATE, Y_LEAVE, Y_AWARENESS };

static const char *const type_names[] = {"ydoc:document:join", "ydoc:document:state",
                                         "ydoc:document:update", "ydoc:document:leave",
                                         "ydoc:awareness:update"};

enum {
	Y_ALLOWED = 1u << 0, /* the access check's verdict (a leave needs none) */
	Y_BYTES = 1u << 1,   /* update, awareness: a payload came */
};

typedef struct yreq {
	const wk_entry *e;
	int type; /* Y_JOIN ... */
	unsigned flags;
	char doc[YDOC_DOC_MAX];
	char room[YDOC_DOC_MAX + 8]; /* doc_{doc} */
	char name[128];              /* join: the user's name, from the database */
	char color[40];              /* join: the client's colour for its cursor */
	int att;                     /* the payload's attachment, or -1: a byte array */
	buf bytes;                   /* the byte array's bytes */
	char *data;                  /* update: JSON object to save into note.data, or NULL */
} yreq;

/* ---- Lua ---- */

/* Shared head of the scripts: ARGV[1] is the key prefix, ARGV[2] the
 * document. sessions(h) returns the sessions of hash h whose socket is
 * connected now, flat (sid, gw, user)..., and removes those whose gateway
 * is dead, returned flat (sid, user)... A socket that disconnected while
 * its gateway lives is only left out here: its leave, queued behind its
 * last events, removes it. */
#define LUA_HEAD                                                                                   \
	"local P, doc = ARGV[1], ARGV[2] "                                                         \
	"local function sessions(h) "                                                              \
	"local all = redis.call('HGETALL', h) "                                                    \
	"local live, gone = {}, {} "                                                               \
	"for i = 1, #all, 2 do "                                                                   \
	"local sid, gw, user = all[i], string.match(all[i + 1], '^(%S+) (%S+)$') "                 \
	"if not gw or redis.call('EXISTS', P .. ':gw:' .. gw .. ':alive') == 0 then "              \
	"redis.call('HDEL', h, sid) "                                                              \
	"redis.call('SREM', P .. ':ydoc:sid:' .. sid, doc) "                                       \
	"gone[#gone + 1] = sid "                                                                   \
	"gone[#gone + 1] = user or '' "                                                            \
	"elseif redis.call('HGET', P .. ':sid:' .. sid, 'gw') == gw then "                         \
	"live[#live + 1] = sid "                                                                   \
	"live[#live + 1] = gw "                                                                    \
	"live[#live + 1] = user "                                                                  \
	"end "                                                                                     \
	"end "                                                                                     \
	"return live, gone "                                                                       \
	"end "

/* Join (ARGV[7] = 'join') or state request. KEYS: sessions, log, the
 * socket's documents. ARGV: P, doc, sid, gw, user, ttl, mode. A joiner
 * must be connected (its session key names its gateway); a state request
 * must come from a joined socket. Returns {0} or {1, live, gone, log}. */
static const char read_lua[] =
    LUA_HEAD "local sid, gw, ttl = ARGV[3], ARGV[4], ARGV[6] "
             "if ARGV[7] == 'join' then "
             "if redis.call('HGET', P .. ':sid:' .. sid, 'gw') ~= gw then return {0} end "
             "redis.call('HSET', KEYS[1], sid, gw .. ' ' .. ARGV[5]) "
             "redis.call('SADD', KEYS[3], doc) "
             "redis.call('EXPIRE', KEYS[3], ttl) "
             "elseif redis.call('HEXISTS', KEYS[1], sid) == 0 then return {0} end "
             "local live, gone = sessions(KEYS[1]) "
             "redis.call('EXPIRE', KEYS[1], ttl) "
             "redis.call('EXPIRE', KEYS[2], ttl) "
             "return {1, live, gone, redis.call('LRANGE', KEYS[2], 0, -1)}";

/* Update, content-only update, awareness. KEYS: sessions, log, pending
 * save, the shard's pending saves. ARGV: P, doc, sid, ttl, update (or ''),
 * event id, user, data (or ''), due ms, save ttl. The sender must be
 * joined. Returns {0} or {1, live, gone, log length}. */
static const char update_lua[] =
    LUA_HEAD "if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then return {0} end "
             "local n = 0 "
             "if ARGV[5] ~= '' then "
             "n = redis.call('RPUSH', KEYS[2], ARGV[5]) "
             "redis.call('EXPIRE', KEYS[2], ARGV[4]) "
             "end "
             "if ARGV[8] ~= '' then "
             "redis.call('HSET', KEYS[3], 'eid', ARGV[6], 'user', ARGV[7], 'data', ARGV[8]) "
             "redis.call('EXPIRE', KEYS[3], ARGV[10]) "
             "redis.call('ZADD', KEYS[4], ARGV[9], doc) "
             "end "
             "redis.call('EXPIRE', KEYS[1], ARGV[4]) "
             "local live, gone = sessions(KEYS[1]) "
             "return {1, live, gone, n}";

/* Leave. KEYS: sessions, log, the socket's documents. ARGV: P, doc, sid,
 * idle ms. When no session is left the log and the sessions expire after
 * the idle time. Returns {0} or {1, user, live, gone}. */
static const char leave_lua[] =
    LUA_HEAD "local v = redis.call('HGET', KEYS[1], ARGV[3]) "
             "if not v then return {0} end "
             "redis.call('HDEL', KEYS[1], ARGV[3]) "
             "redis.call('SREM', KEYS[3], doc) "
             "local live, gone = sessions(KEYS[1]) "
             "if #live == 0 then "
             "for _, k in ipairs({KEYS[1], KEYS[2]}) do "
             "local t = redis.call('PTTL', k) "
             "if t == -1 or t > tonumber(ARGV[4]) then redis.call('PEXPIRE', k, ARGV[4]) end "
             "end "
             "end "
             "return {1, string.match(v, ' (%S+)$') or '', live, gone}";

/* Compaction. KEYS: log. ARGV: k, SHA-1 (hex) of the first k entries each
 * written as its length, ':', its bytes; their merge. The entries are
 * replaced only if they are still those: appends made since are kept
 * behind the merge, and a concurrent compaction makes this one a no-op.
 * The log keeps its time to live. Returns 0, or {1, number of entries
 * kept behind the merge}. */
static const char compact_lua[] =
    "local k = tonumber(ARGV[1]) "
    "local items = redis.call('LRANGE', KEYS[1], 0, k - 1) "
    "if #items ~= k then return 0 end "
    "local parts = {} "
    "for i, v in ipairs(items) do parts[i] = #v .. ':' .. v end "
    "if redis.sha1hex(table.concat(parts)) ~= ARGV[2] then return 0 end "
    "local ttl = redis.call('PTTL', KEYS[1]) "
    "local kept = redis.call('LLEN', KEYS[1]) - k "
    "redis.call('LTRIM', KEYS[1], k, -1) "
    "redis.call('LPUSH', KEYS[1], ARGV[3]) "
    "if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end "
    "return {1, kept}";

/* Pending saves that are due. KEYS: pending-save sets of shards. ARGV: P,
 * now ms, limit. Returns {{set, doc, eid, user, data}...}; entries whose
 * save expired are dropped. */
static const char due_lua[] =
    "local out = {} "
    "for _, z in ipairs(KEYS) do "
    "for _, doc in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[2], 'LIMIT', 0, "
    "ARGV[3])) do "
    "local s = redis.call('HMGET', ARGV[1] .. ':ydoc:' .. doc .. ':save', 'eid', 'user', "
    "'data') "
    "if s[1] and s[2] and s[3] then out[#out + 1] = {z, doc, s[1], s[2], s[3]} "
    "else redis.call('ZREM', z, doc) end "
    "end "
    "end "
    "return out";

/* A save is done. KEYS: pending save, the shard's set. ARGV: event id,
 * doc. Removed unless a newer update replaced it meanwhile. */
static const char saved_lua[] = "if redis.call('HGET', KEYS[1], 'eid') == ARGV[1] then "
                                "redis.call('DEL', KEYS[1]) "
                                "redis.call('ZREM', KEYS[2], ARGV[2]) "
                                "end "
                                "return 0";

/* ---- SQL ---- */

/* A grant of `perm` on note n to user u, to everyone, or to one of u's
 * groups (permissions match exactly: write does not imply read). */
#define NOTE_GRANT(perm, u)                                                                        \
	"EXISTS (SELECT 1 FROM access_grant g WHERE g.resource_type = 'note' AND g.resource_id = " \
	"n.id AND g.permission = '" perm "' AND ((g.principal_type = 'user' AND g.principal_id "   \
	"IN ('*', " u ")) OR (g.principal_type = 'group' AND g.principal_id IN (SELECT "           \
	"gm.group_id FROM group_member gm WHERE gm.user_id = " u "))))"

/* The user's name and whether they may read and write note $2. */
// clang-format off
static const char access_sql[] =
	"SELECT u.name, "
	"u.role = 'admin' OR n.user_id = $1 OR " NOTE_GRANT("read", "$1") ", "
	"u.role = 'admin' OR n.user_id = $1 OR " NOTE_GRANT("write", "$1") " "
	"FROM note n JOIN \"user\" u ON u.id = $1 "
	"WHERE n.id = $2 AND u.role IN ('user', 'admin')";

/* The note's save, exactly once per update (id $1), if user $3 may still
 * write note $2: note.data shallow-merged with $4, updated_at = $5 (ns). */
static const char save_sql[] =
	"WITH ev AS (INSERT INTO tidings_event (id, kind) VALUES ($1, 'ydoc:document:update save') "
	"ON CONFLICT DO NOTHING RETURNING id) "
	"UPDATE note n SET data = ((CASE WHEN json_typeof(n.data) = 'object' THEN n.data::jsonb "
	"ELSE '{}' END) || $4::jsonb)::json, updated_at = $5::bigint FROM \"user\" u "
	"WHERE n.id = $2 AND u.id = $3 AND u.role IN ('user', 'admin') AND "
	"(u.role = 'admin' OR n.user_id = $3 OR " NOTE_GRANT("write", "$3") ") "
	"AND EXISTS (SELECT 1 FROM ev) RETURNING n.id";
// clang-format on

/* ---- helpers ---- */

static const char *arg_str(const wk_entry *e, const char *field)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(e->args, 0), field);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *arg_obj(const wk_entry *e, const char *field)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(e->args, 0), field);
}

/* note:{id} and note_{id} (Open WebUI's store spelling) are one document,
 * written note:{id}. Other documents, and ids unfit for a key, are
 * refused: -1. */
static int doc_canon(const char *in, char *out, size_t cap)
{
	if (strncmp(in, "note:", 5) != 0 && strncmp(in, "note_", 5) != 0)
		return -1;
	if (!ident_valid(in + 5, 128))
		return -1;
	snprintf(out, cap, "note:%s", in + 5);
	return 0;
}

static void ykey(char *out, size_t cap, const char *doc, const char *what)
{
	snprintf(out, cap, "%s:ydoc:%s:%s", wk.cfg.redis_prefix, doc, what);
}

static void sid_key(char *out, size_t cap, const char *sid)
{
	snprintf(out, cap, "%s:ydoc:sid:%s", wk.cfg.redis_prefix, sid);
}

/* The document's ingress shard (the gateway's key for its events), whose
 * owner also saves the note. */
static int doc_shard(const char *doc)
{
	char k[YDOC_DOC_MAX + 8];
	snprintf(k, sizeof(k), "doc:%s", doc);
	return (int)shard_of(slice_cstr(k), (uint32_t)wk.cfg.shards);
}

static void saves_key(char *out, size_t cap, int shard)
{
	snprintf(out, cap, "%s:ydoc:saves:%d", wk.cfg.redis_prefix, shard);
}

/* Bytes as a JSON array of numbers, the way Open WebUI sends them. */
static char *bytes_json(slice b)
{
	buf o;
	buf_init(&o, 0);
	buf_append_byte(&o, '[');
	for (size_t i = 0; i < b.len; i++) {
		if (i)
			buf_append_byte(&o, ',');
		buf_append_u64(&o, (unsigned char)b.base[i]);
	}
	buf_append_cstr(&o, "]");
	if (buf_append_byte(&o, '\0') < 0) {
		buf_dispose(&o);
		return NULL;
	}
	return o.data;
}

/* The payload an update or awareness event carries: a JSON array of byte
 * values, or a binary attachment ({"_placeholder":true,"num":N}). 0, or
 * -1 when it is neither. */
static int payload_parse(yreq *r, const cJSON *v)
{
	const wk_entry *e = r->e;
	if (cJSON_IsArray(v)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, v)
		{
			if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 255 ||
			    x->valuedouble != (double)(int)x->valuedouble)
				return -1;
			if (buf_append_byte(&r->bytes, (char)(int)x->valuedouble) < 0)
				return -1;
		}
		r->flags |= Y_BYTES;
		return 0;
	}
	const cJSON *ph = cJSON_GetObjectItemCaseSensitive(v, "_placeholder");
	const cJSON *num = cJSON_GetObjectItemCaseSensitive(v, "num");
	if (cJSON_IsTrue(ph) && cJSON_IsNumber(num) && num->valuedouble >= 0 &&
	    num->valuedouble < e->natt && num->valuedouble == (double)(int)num->valuedouble) {
		r->att = (int)num->valuedouble;
		r->flags |= Y_BYTES;
		return 0;
	}
	return -1;
}

static slice payload(const yreq *r)
{
	if (r->att >= 0)
		return slice_make(r->e->att[r->att].p, r->e->att[r->att].len);
	return buf_slice(&r->bytes);
}

/* Adds the payload to o as `update`, in the form it came in: a byte array
 * stays an array; an attachment is sent as one (*att, 1 returned). */
static int payload_add(const yreq *r, cJSON *o, slice *att)
{
	if (r->att >= 0) {
		cJSON *ph = cJSON_AddObjectToObject(o, "update");
		cJSON_AddTrueToObject(ph, "_placeholder");
		cJSON_AddNumberToObject(ph, "num", 0);
		*att = payload(r);
		return 1;
	}
	char *txt = bytes_json(payload(r));
	cJSON_AddItemToObject(o, "update", txt ? cJSON_CreateRaw(txt) : cJSON_CreateArray());
	free(txt);
	return 0;
}

static void refuse(const yreq *r, const char *why)
{
	wk.m.refused++;
	log_info("user=%s sid=%s %s %s refused: %s", r->e->user, r->e->sid ? r->e->sid : "-",
	         type_names[r->type], r->doc[0] ? r->doc : "?", why);
}

static void yreq_free(void *arg)
{
	yreq *r = arg;
	buf_dispose(&r->bytes);
	free(r->data);
	free(r);
}

/* The distinct gateways of the flat (sid, gw, user) list, leaving out
 * socket `except`'s session. gws must have room for live->elements / 3. */
static int gateways(const redisReply *live, const char *except, const char **gws)
{
	int n = 0;
	for (size_t i = 0; i + 2 < live->elements; i += 3) {
		const char *sid = live->element[i]->str, *gw = live->element[i + 1]->str;
		if (except && strcmp(sid, except) == 0)
			continue;
		int seen = 0;
		for (int k = 0; k < n && !seen; k++)
			seen = strcmp(gws[k], gw) == 0;
		if (!seen)
			gws[n++] = gw;
	}
	return n;
}

static int reply_ok(const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY)
		return 0;
	for (size_t i = 1; i < r->elements; i++) {
		const redisReply *x = r->element[i];
		if (x->type == REDIS_REPLY_ARRAY)
			for (size_t k = 0; k < x->elements; k++)
				if (x->element[k]->type != REDIS_REPLY_STRING)
					return 0;
	}
	return r->elements >= 1 && r->element[0]->type == REDIS_REPLY_INTEGER;
}

/* `event` {document_id, ...} to the sessions' gateways (but `except`). */
static void to_room(fanout_step *st, const yreq *r, const redisReply *live, const char *except,
                    const char *event, const cJSON *o, const slice *att, int natt)
{
	const char **gws = calloc(live->elements / 3 + 1, sizeof(char *));
	if (!gws)
		return;
	int n = gateways(live, except, gws);
	fanout_step_emit(st, gws, n, r->room, event, o, att, natt, except);
	free(gws);
}

/* ydoc:user:left for the sessions of dead gateways the script removed. */
static void left_gone(fanout_step *st, const yreq *r, const redisReply *live,
                      const redisReply *gone)
{
	for (size_t i = 0; i + 1 < gone->elements; i += 2) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "document_id", r->doc);
		cJSON_AddStringToObject(o, "user_id", gone->element[i + 1]->str);
		to_room(st, r, live, NULL, "ydoc:user:left", o, NULL, 0);
		cJSON_Delete(o);
		log_info("%s: session %s of a dead gateway removed", r->doc, gone->element[i]->str);
	}
}

/* ---- merging and compaction ---- */

/* Merges the log (an array reply of update bytes) into out. Entries Yjs
 * would refuse (none should be there: updates are validated before they
 * are stored) are left out with a log line. 0, or -1 (out of memory). */
static int merge_log(const char *doc, const redisReply *log, buf *out)
{
	size_t n = log->elements;
	slice *u = calloc(n + 1, sizeof(*u));
	if (!u)
		return -1;
	for (size_t i = 0; i < n; i++)
		u[i] = slice_make(log->element[i]->str, log->element[i]->len);
	const char *err = NULL;
	int rc = yjs_merge(u, n, out, &err);
	if (rc < 0 && err && strcmp(err, "out of memory") != 0) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (yjs_valid(u[i], &err) == 0)
				u[k++] = u[i];
			else
				log_warn(
				    "%s: log entry %zu of %zu is not a valid update (%s): left out",
				    doc, i, n, err);
		}
		rc = yjs_merge(u, k, out, &err);
	}
	free(u);
	return rc;
}

/* The hex SHA-1 of the entries, each as "{length}:{bytes}" (compact_lua). */
static int log_digest(const redisReply *log, char hex[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	for (size_t i = 0; ok && i < log->elements; i++) {
		char len[24];
		int l = snprintf(len, sizeof(len), "%zu:", log->element[i]->len);
		ok = EVP_DigestUpdate(ctx, len, (size_t)l) &&
		     EVP_DigestUpdate(ctx, log->element[i]->str, log->element[i]->len);
	}
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 20;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (size_t i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* Documents whose compaction is in flight, so one at a time each. */
#define COMPACTING_MAX 32
static char compacting[COMPACTING_MAX][YDOC_DOC_MAX];

static int compacting_claim(const char *doc)
{
	int free_slot = -1;
	for (int i = 0; i < COMPACTING_MAX; i++) {
		if (strcmp(compacting[i], doc) == 0)
			return 0;
		if (!compacting[i][0] && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return 0;
	snprintf(compacting[free_slot], YDOC_DOC_MAX, "%s", doc);
	return 1;
}

static void compacting_release(const char *doc)
{
	for (int i = 0; i < COMPACTING_MAX; i++)
		if (strcmp(compacting[i], doc) == 0)
			compacting[i][0] = '\0';
}

static void on_compacted(redis_conn *rc, const redisReply *r, void *arg)
{
	char *doc = arg;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_INTEGER)
		log_debug("%s: update log compacted, %lld entries appended since it was read kept",
		          doc, r->element[1]->integer);
	else if (r && r->type == REDIS_REPLY_INTEGER)
		log_debug("%s: update log changed at its head since it was read: not compacted",
		          doc);
	else if (r && r->type == REDIS_REPLY_ERROR)
		log_warn("%s: compaction script: %s", doc, r->str);
	compacting_release(doc);
	free(doc);
}

/* Replaces the log's first entries, as read in `log`, by their merge
 * (`merged`, or computed when NULL), when there are at least two. Not
 * waited for: whatever happens meanwhile, the script replaces them only
 * if they are unchanged. `claimed`: the caller holds the document's
 * compacting slot (released here). */
static void compact(const char *doc, const redisReply *log, const buf *merged, int claimed)
{
	buf m;
	buf_init(&m, YDOC_MAX_MERGE);
	char hex[41], key[400], k[24];
	char *d = NULL;
	if (log->elements < 2 || (!claimed && !compacting_claim(doc)))
		goto out;
	claimed = 1;
	if (!merged && merge_log(doc, log, &m) < 0)
		goto out;
	if (log_digest(log, hex) < 0 || !(d = strdup(doc)))
		goto out;
	ykey(key, sizeof(key), doc, "log");
	snprintf(k, sizeof(k), "%zu", log->elements);
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "EVAL");
	redis_arg_str(&a, compact_lua);
	redis_arg_str(&a, "1");
	redis_arg_str(&a, key);
	redis_arg_str(&a, k);
	redis_arg_str(&a, hex);
	redis_arg_slice(&a, buf_slice(merged ? merged : &m));
	if (redis_send(wk.rc, on_compacted, d, &a) == 0) {
		claimed = 0; /* on_compacted releases it */
		d = NULL;
	}
out:
	if (claimed)
		compacting_release(doc);
	free(d);
	buf_dispose(&m);
}

static void on_log_read(redis_conn *rc, const redisReply *r, void *arg)
{
	char *doc = arg;
	if (r && r->type == REDIS_REPLY_ARRAY)
		compact(doc, r, NULL, 1);
	else
		compacting_release(doc);
	free(doc);
}

/* The log grew past TIDINGS_YDOC_COMPACT_AT entries: read it, merge it,
 * replace what was read. */
static void compact_later(const char *doc)
{
	if (!compacting_claim(doc))
		return;
	char key[400];
	ykey(key, sizeof(key), doc, "log");
	char *d = strdup(doc);
	const char *argv[] = {"LRANGE", key, "0", "-1"};
	size_t lens[] = {6, strlen(key), 1, 2};
	if (!d || redis_cmd(wk.rc, on_log_read, d, 4, argv, lens) < 0) {
		compacting_release(doc);
		free(d);
	}
}

/* ---- pending saves: in-process hints ---- */

/* Per shard, when its pending saves should next be looked at (monotonic
 * ms; 0: at the next sweep). Only a hint: the saves themselves are in
 * Redis, and every owned shard is swept each YDOC_SWEEP_MS. */
static uint64_t *save_due;

static void hint_save(int shard, uint64_t at)
{
	if (!save_due)
		save_due = calloc((size_t)wk.cfg.shards, sizeof(*save_due));
	if (save_due && shard >= 0 && shard < wk.cfg.shards)
		save_due[shard] = at;
}

/* ---- the events ---- */

/* join and state request: {1, live, gone, log}. */
static void on_read(fanout_step *st, const yreq *r, const redisReply *rep)
{
	const wk_entry *e = r->e;
	const redisReply *live = rep->element[1], *gone = rep->element[2], *log = rep->element[3];
	if (r->type == Y_JOIN)
		fanout_step_join(st, e->gw, e->sid, r->room);
	buf m;
	buf_init(&m, YDOC_MAX_MERGE);
	if (merge_log(r->doc, log, &m) < 0) {
		/* What Open WebUI answers when building the state throws. */
		log_error("%s: the update log could not be merged (out of memory)", r->doc);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "message", "Failed to join document");
		fanout_step_emit_sid(st, e->gw, e->sid, "error", o);
		cJSON_Delete(o);
		buf_dispose(&m);
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "document_id", r->doc);
	char *state = bytes_json(buf_slice(&m));
	cJSON_AddItemToObject(o, "state", state ? cJSON_CreateRaw(state) : cJSON_CreateArray());
	free(state);
	cJSON *sessions = cJSON_AddArrayToObject(o, "sessions");
	for (size_t i = 0; i + 2 < live->elements; i += 3)
		cJSON_AddItemToArray(sessions, cJSON_CreateString(live->element[i]->str));
	fanout_step_emit_sid(st, e->gw, e->sid, "ydoc:document:state", o);
	cJSON_Delete(o);
	if (r->type == Y_JOIN) {
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "document_id", r->doc);
		cJSON_AddStringToObject(o, "user_id", e->user);
		cJSON_AddStringToObject(o, "user_name", r->name);
		cJSON_AddStringToObject(o, "user_color", r->color);
		to_room(st, r, live, e->sid, "ydoc:user:joined", o, NULL, 0);
		cJSON_Delete(o);
	}
	left_gone(st, r, live, gone);
	/* The merge is at hand: the log becomes that one entry. */
	compact(r->doc, log, &m, 0);
	buf_dispose(&m);
}

/* update and awareness: {1, live, gone, log length}. */
static void on_update(fanout_step *st, const yreq *r, const redisReply *rep)
{
	const wk_entry *e = r->e;
	const redisReply *live = rep->element[1], *gone = rep->element[2];
	if (r->flags & Y_BYTES) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "document_id", r->doc);
		cJSON_AddStringToObject(o, "user_id", e->user);
		slice att;
		int natt = payload_add(r, o, &att);
		if (r->type == Y_UPDATE) {
			cJSON_AddStringToObject(o, "socket_id", e->sid);
			to_room(st, r, live, e->sid, "ydoc:document:update", o, &att, natt);
		} else {
			to_room(st, r, live, e->sid, "ydoc:awareness:update", o, &att, natt);
		}
		cJSON_Delete(o);
	}
	left_gone(st, r, live, gone);
	if (r->type == Y_UPDATE && rep->element[3]->type == REDIS_REPLY_INTEGER &&
	    rep->element[3]->integer >= wk.cfg.ydoc_compact_at)
		compact_later(r->doc);
	if (r->data)
		hint_save(doc_shard(r->doc), wk_now() + YDOC_SAVE_DELAY_MS);
}

/* leave: {1, user, live, gone}. */
static void on_leave(fanout_step *st, const yreq *r, const redisReply *rep)
{
	const wk_entry *e = r->e;
	const redisReply *live = rep->element[2], *gone = rep->element[3];
	fanout_step_leave(st, e->gw, e->sid, r->room);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "document_id", r->doc);
	cJSON_AddStringToObject(o, "user_id", e->user);
	to_room(st, r, live, NULL, "ydoc:user:left", o, NULL, 0);
	cJSON_Delete(o);
	left_gone(st, r, live, gone);
}

static void on_script(fanout_step *st, const redisReply *rep, void *arg)
{
	yreq *r = arg;
	if (rep->type == REDIS_REPLY_ERROR) {
		log_error("%s %s: script failed: %s", type_names[r->type], r->doc, rep->str);
		return;
	}
	if (!reply_ok(rep) || rep->element[0]->integer != 1) {
		refuse(r, r->type == Y_JOIN ? "socket not connected" : "socket has not joined");
		return;
	}
	if (rep->elements < 4)
		return;
	if (r->type == Y_JOIN || r->type == Y_STATE)
		on_read(st, r, rep);
	else if (r->type == Y_LEAVE)
		on_leave(st, r, rep);
	else
		on_update(st, r, rep);
}

/* EVAL, the script, its keys: the document's sessions and log, then
 * `more` keys. */
static void script_head(redis_argv *a, const char *lua, const yreq *r, const char *const *more,
                        int nmore, char keys[][400])
{
	ykey(keys[0], 400, r->doc, "sids");
	ykey(keys[1], 400, r->doc, "log");
	redis_argv_init(a);
	redis_arg_str(a, "EVAL");
	redis_arg_str(a, lua);
	redis_arg_i64(a, 2 + nmore);
	redis_arg_str(a, keys[0]);
	redis_arg_str(a, keys[1]);
	for (int i = 0; i < nmore; i++)
		redis_arg_str(a, more[i]);
	redis_arg_str(a, wk.cfg.redis_prefix);
	redis_arg_str(a, r->doc);
	redis_arg_str(a, r->e->sid);
}

/* The step: the event's script, run when the batch is published. */
static void run(fanout_step *st, void *arg)
{
	yreq *r = arg;
	const wk_entry *e = r->e;
	if (!(r->flags & Y_ALLOWED))
		return;
	char keys[2][400], k3[400], k4[400], ttl[24], num[24], save_ttl[24];
	snprintf(ttl, sizeof(ttl), "%d", YDOC_TTL_S);
	redis_argv a;
	if (r->type == Y_JOIN || r->type == Y_STATE || r->type == Y_LEAVE) {
		sid_key(k3, sizeof(k3), e->sid);
		const char *more[] = {k3};
		if (r->type == Y_LEAVE) {
			script_head(&a, leave_lua, r, more, 1, keys);
			snprintf(num, sizeof(num), "%d", YDOC_IDLE_MS);
			redis_arg_str(&a, num);
		} else {
			script_head(&a, read_lua, r, more, 1, keys);
			redis_arg_str(&a, e->gw);
			redis_arg_str(&a, e->user);
			redis_arg_str(&a, ttl);
			redis_arg_str(&a, r->type == Y_JOIN ? "join" : "state");
		}
	} else {
		ykey(k3, sizeof(k3), r->doc, "save");
		saves_key(k4, sizeof(k4), doc_shard(r->doc));
		const char *more[] = {k3, k4};
		script_head(&a, update_lua, r, more, 2, keys);
		snprintf(num, sizeof(num), "%llu",
		         (unsigned long long)clock_wall_ms() + YDOC_SAVE_DELAY_MS);
		snprintf(save_ttl, sizeof(save_ttl), "%d", YDOC_SAVE_TTL_S);
		redis_arg_str(&a, ttl);
		if (r->type == Y_UPDATE && (r->flags & Y_BYTES))
			redis_arg_slice(&a, payload(r));
		else
			redis_arg_str(&a, "");
		redis_arg_str(&a, e->eid);
		redis_arg_str(&a, e->user);
		redis_arg_str(&a, r->data ? r->data : "");
		redis_arg_str(&a, num);
		redis_arg_str(&a, save_ttl);
	}
	fanout_step_cmd(st, on_script, r, &a);
}

/* A socket that may no longer read the note is put out of it, as if it
 * had left (catalogue 9 #4: Open WebUI never revoked a room): the event
 * becomes a leave, which the script applies only if the socket had joined,
 * so its session goes, its gateway takes it out of the room and the
 * others get ydoc:user:left. */
static void evict(yreq *r, const char *why)
{
	refuse(r, why);
	if (r->type == Y_JOIN)
		return; /* not in the document (a join does not leave it) */
	r->type = Y_LEAVE;
	r->flags |= Y_ALLOWED;
}

/* The access check's answer: name, may read, may write. */
static void on_access(void *arg, const PGresult *res)
{
	yreq *r = arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		return; /* the batch fails and is applied again */
	if (PQntuples(res) != 1) {
		evict(r, "no such note, or the user may not use it");
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", PQgetvalue(res, 0, 0));
	int may_read = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	int may_write = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	if (!may_read)
		evict(r, "no read access");
	else if (r->type == Y_UPDATE && !may_write)
		refuse(r, "no write access"); /* a reader stays a reader */
	else
		r->flags |= Y_ALLOWED;
}

/* Reads what each event carries; -1 (with *why) to refuse it. */
static int parse(yreq *r, const char **why)
{
	const wk_entry *e = r->e;
	if (r->type == Y_JOIN) {
		const char *color = arg_str(e, "user_color");
		snprintf(r->color, sizeof(r->color), "%s",
		         color && *color && strlen(color) < sizeof(r->color) ? color : "#000000");
	} else if (r->type == Y_UPDATE) {
		const cJSON *u = arg_obj(e, "update"), *data = arg_obj(e, "data");
		const char *err = NULL;
		if (u && (payload_parse(r, u) < 0 || yjs_valid(payload(r), &err) < 0)) {
			*why = err ? err : "update is neither bytes nor an attachment";
			return -1;
		}
		/* Open WebUI saves when `data` is a non-empty object. */
		if (cJSON_IsObject(data) && data->child)
			r->data = json_print(data);
		if (!(r->flags & Y_BYTES) && !r->data) {
			*why = "nothing to apply";
			return -1;
		}
	} else if (r->type == Y_AWARENESS) {
		if (payload_parse(r, arg_obj(e, "update")) < 0) {
			*why = "update is neither bytes nor an attachment";
			return -1;
		}
	}
	return 0;
}

void ydoc_handle(const wk_entry *e, pg_batch *pb, fanout_list *out)
{
	int type = -1;
	for (int i = 0; i < (int)(sizeof(type_names) / sizeof(*type_names)); i++)
		if (strcmp(e->event, type_names[i]) == 0)
			type = i;
	if (type < 0 || !e->sid || !e->gw || !ident_valid(e->sid, 64) || !ident_valid(e->gw, 100)) {
		log_debug("event '%s' has no handler or no socket: dropped", e->event);
		return;
	}
	yreq *r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->e = e;
	r->type = type;
	r->att = -1;
	buf_init(&r->bytes, 0);
	const char *id = arg_str(e, "document_id");
	const char *why = NULL;
	if (!id || doc_canon(id, r->doc, sizeof(r->doc)) < 0)
		why = "not a note document";
	else if (parse(r, &why) == 0)
		why = NULL;
	if (why) {
		refuse(r, why);
		yreq_free(r);
		return;
	}
	snprintf(r->room, sizeof(r->room), "doc_%s", r->doc);
	/* The step holds the event's place in the batch's order; the access
	 * check, answered during the transaction, lets it run. */
	fanout_add_step(out, run, yreq_free, r);
	if (type == Y_LEAVE) {
		r->flags |= Y_ALLOWED; /* the script checks the socket had joined */
		return;
	}
	const char *params[2] = {e->user, r->doc + 5};
	pg_batch_add_prepared(pb, access_sql, 2, params, on_access, r);
}

/* ---- disconnect ---- */

/* The socket's documents: one leave entry each, on the document's shard.
 * Appended after the disconnect was read, they come after every event the
 * socket sent before disconnecting, so its last updates are applied
 * before its session goes. Applied twice (a retried batch) they are
 * no-ops the second time. */
static void on_docs(fanout_step *st, const redisReply *r, void *arg)
{
	const wk_entry *e = arg;
	if (r->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *d = r->element[i];
		char doc[YDOC_DOC_MAX], stream[300], id[200];
		if (d->type != REDIS_REPLY_STRING || d->len >= sizeof(doc))
			continue;
		memcpy(doc, d->str, d->len);
		doc[d->len] = '\0';
		char canon[YDOC_DOC_MAX];
		if (doc_canon(doc, canon, sizeof(canon)) < 0)
			continue;
		cJSON *args = cJSON_CreateArray();
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "document_id", canon);
		cJSON_AddItemToArray(args, o);
		char *data = json_print(args);
		cJSON_Delete(args);
		snprintf(stream, sizeof(stream), "%s:ingress:%d", wk.cfg.redis_prefix,
		         doc_shard(canon));
		snprintf(id, sizeof(id), "%s-leave-%zu", e->eid, i);
		redis_argv a;
		redis_argv_init(&a);
		redis_arg_str(&a, "XADD");
		redis_arg_str(&a, stream);
		redis_arg_str(&a, "*");
		redis_arg_str(&a, "v");
		redis_arg_str(&a, "1");
		redis_arg_str(&a, "id");
		redis_arg_str(&a, id);
		redis_arg_str(&a, "kind");
		redis_arg_str(&a, "event");
		redis_arg_str(&a, "gw");
		redis_arg_str(&a, e->gw);
		redis_arg_str(&a, "sid");
		redis_arg_str(&a, e->sid);
		redis_arg_str(&a, "user");
		redis_arg_str(&a, e->user);
		redis_arg_str(&a, "nsp");
		redis_arg_str(&a, e->nsp ? e->nsp : "/");
		redis_arg_str(&a, "event");
		redis_arg_str(&a, "ydoc:document:leave");
		redis_arg_str(&a, "data");
		redis_arg_str(&a, data ? data : "[]");
		/* Queued before the disconnect is acknowledged, on the same
		 * connection: a crash in between redelivers the disconnect. */
		redis_send(wk.rc, NULL, NULL, &a);
		free(data);
		log_debug("sid=%s disconnected: leaves %s", e->sid, canon);
	}
}

static void run_disconnect(fanout_step *st, void *arg)
{
	const wk_entry *e = arg;
	char key[400];
	sid_key(key, sizeof(key), e->sid);
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "SMEMBERS");
	redis_arg_str(&a, key);
	fanout_step_cmd(st, on_docs, arg, &a);
}

void ydoc_disconnect(const wk_entry *e, fanout_list *out)
{
	if (!e->sid || !e->gw || !ident_valid(e->sid, 64))
		return;
	fanout_add_step(out, run_disconnect, NULL, (void *)e);
}

/* ---- saving notes ---- */

typedef struct save {
	char set[300], doc[YDOC_DOC_MAX], *eid, *user, *data;
} save;

static int saves_in_flight;
static uint64_t last_sweep;

static void save_free(save *s)
{
	free(s->eid);
	free(s->user);
	free(s->data);
	free(s);
}

/* Failures that say nothing about the save itself: it stays pending. */
static int transient(const char *err)
{
	return !err || strstr(err, "connection") || strstr(err, "timeout") ||
	       strstr(err, "not connected") || strstr(err, "out of memory") ||
	       strstr(err, "deadlock") || strstr(err, "serializ");
}

static void saved(save *s)
{
	char key[400];
	ykey(key, sizeof(key), s->doc, "save");
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "EVAL");
	redis_arg_str(&a, saved_lua);
	redis_arg_str(&a, "2");
	redis_arg_str(&a, key);
	redis_arg_str(&a, s->set);
	redis_arg_str(&a, s->eid);
	redis_arg_str(&a, s->doc);
	redis_send(wk.rc, NULL, NULL, &a);
}

static void on_save_row(void *arg, const PGresult *res)
{
	save *s = arg;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
		if (PQntuples(res) == 1) {
			wk.m.effects++;
			log_debug("%s saved (update %s of user %s)", s->doc, s->eid, s->user);
		} else {
			log_info("%s: save of update %s not applied (applied before, no such note, "
			         "or user %s may no longer write it)",
			         s->doc, s->eid, s->user);
		}
	}
}

static void on_save_done(void *arg, int ok, const char *err)
{
	save *s = arg;
	saves_in_flight--;
	if (ok || !transient(err)) {
		if (!ok)
			log_error("%s: save of update %s refused by the database, dropped: %s",
			          s->doc, s->eid, err);
		saved(s);
	} else {
		log_warn("%s: save of update %s failed (%s); retried", s->doc, s->eid, err);
	}
	save_free(s);
}

static void start_save(const redisReply *x)
{
	save *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	const redisReply *const *f = (const redisReply *const *)x->element;
	snprintf(s->set, sizeof(s->set), "%.*s", (int)f[0]->len, f[0]->str);
	snprintf(s->doc, sizeof(s->doc), "%.*s", (int)f[1]->len, f[1]->str);
	s->eid = strndup(f[2]->str, f[2]->len);
	s->user = strndup(f[3]->str, f[3]->len);
	s->data = strndup(f[4]->str, f[4]->len);
	char id[300], now[24];
	snprintf(id, sizeof(id), "%s/save", s->eid);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(now, sizeof(now), "%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	pg_batch *pb = pg_batch_begin(wk.pg);
	if (!s->eid || !s->user || !s->data || !pb) {
		save_free(s); /* still pending: the next sweep retries */
		return;
	}
	const char *params[5] = {id, s->doc + 5, s->user, s->data, now};
	pg_batch_add_prepared(pb, save_sql, 5, params, on_save_row, s);
	saves_in_flight++;
	pg_batch_commit(pb, on_save_done, s);
}

static void on_due(redis_conn *rc, const redisReply *r, void *arg)
{
	saves_in_flight--;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("pending note saves: %s", r->str);
		return;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *x = r->element[i];
		int ok = x->type == REDIS_REPLY_ARRAY && x->elements == 5;
		for (size_t k = 0; ok && k < 5; k++)
			ok = x->element[k]->type == REDIS_REPLY_STRING;
		if (ok)
			start_save(x);
	}
}

static void send_due(char keys[][64], int n)
{
	char nowms[24], count[8];
	snprintf(nowms, sizeof(nowms), "%llu", (unsigned long long)clock_wall_ms());
	snprintf(count, sizeof(count), "%d", n);
	redis_argv a;
	redis_argv_init(&a);
	redis_arg_str(&a, "EVAL");
	redis_arg_str(&a, due_lua);
	redis_arg_str(&a, count);
	for (int i = 0; i < n; i++)
		redis_arg_str(&a, keys[i]);
	redis_arg_str(&a, wk.cfg.redis_prefix);
	redis_arg_str(&a, nowms);
	redis_arg_str(&a, "64");
	if (redis_send(wk.rc, on_due, NULL, &a) == 0)
		saves_in_flight++;
}

/* Looks at the pending saves of the owned shards that are hinted due, or
 * of all of them once per YDOC_SWEEP_MS (a shard taken over from a dead
 * worker, a hint lost). One round (look-ups and saves) at a time. */
void ydoc_tick(void)
{
	if (saves_in_flight || !redis_conn_up(wk.rc) || !pg_conn_up(wk.pg))
		return;
	uint64_t now = wk_now();
	int sweep = now - last_sweep >= YDOC_SWEEP_MS;
	if (sweep)
		last_sweep = now;
	char keys[40][64];
	int n = 0;
	for (int i = 0; i < wk.cfg.shards; i++) {
		if (!shard_usable(&wk.shards[i]))
			continue;
		int hinted = save_due && save_due[i] && now >= save_due[i];
		if (!sweep && !hinted)
			continue;
		if (save_due)
			save_due[i] = 0;
		saves_key(keys[n], sizeof(keys[n]), i);
		if (++n == 40) {
			send_due(keys, n);
			n = 0;
		}
	}
	if (n)
		send_due(keys, n);
}
