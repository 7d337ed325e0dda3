/*
 * Tests worker/persist.c: the statements it builds are run with libpq
 * against a private PostgreSQL 15 cluster carrying the migrations of sql/,
 * and the chat JSON and chat_message rows they leave are checked in SQL.
 *
 * The module is compiled into this test (the archive holds no worker/
 * objects). The cluster lives in a temporary directory owned by the
 * postgres user (Postgres refuses to run as root). A reaper process starts
 * it, so the postmaster's PID is known exactly, and stops it by that PID
 * and removes the directory as soon as the test's end of a pipe closes: on
 * success, on a failed assertion and on an ASan abort alike.
 */
#include "tap.h"
#include "worker/persist.c"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "pgcluster.h"

static PGconn *db;

/* ---- the cluster ---- */

static PGconn *connect_db(void)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("Bail out! connect: %s", PQerrorMessage(c));
		PQfinish(c);
		cluster_stop();
		exit(1);
	}
	PQsetNoticeProcessor(c, NULL, NULL);
	return c;
}

/* Applies sql/[0-9]*.sql in order, each as one simple-query string. */
static int migrate(PGconn *c)
{
	glob_t g;
	const char *sqldir = getenv("TIDINGS_SQL_DIR");
	char pat[256];
	snprintf(pat, sizeof(pat), "%s/[0-9]*.sql", sqldir ? sqldir : "sql");
	if (glob(pat, 0, NULL, &g) != 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");
		char *text = NULL;
		size_t cap = 0;
		ssize_t n = f ? getdelim(&text, &cap, '\0', f) : -1;
		if (f)
			fclose(f);
		PGresult *r = n > 0 ? PQexec(c, text) : NULL;
		if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
			printf("# %s: %s", g.gl_pathv[i],
			       r ? PQresultErrorMessage(r) : "unreadable\n");
			rc = -1;
		}
		PQclear(r);
		free(text);
	}
	globfree(&g);
	return rc;
}

/* ---- helpers ---- */

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		printf("# SQL failed: %s# in: %.200s\n", PQresultErrorMessage(r), sql);
	PQclear(r);
}

/* First column of the first row of a query with up to 3 text parameters,
 * copied into buf; "(none)" without rows, "(error)" on failure. */
static const char *value(char *buf, size_t size, const char *sql, const char *p1, const char *p2,
                         const char *p3)
{
	const char *params[3] = {p1, p2, p3};
	int n = p3 ? 3 : p2 ? 2 : p1 ? 1 : 0;
	PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		printf("# SQL failed: %s", PQresultErrorMessage(r));
		snprintf(buf, size, "(error)");
	} else if (PQntuples(r) == 0) {
		snprintf(buf, size, "(none)");
	} else {
		snprintf(buf, size, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	return buf;
}

#define SQL_IS(want, name, sql, ...)                                                               \
	do {                                                                                       \
		char b_[8192];                                                                     \
		is_str(value(b_, sizeof(b_), sql, __VA_ARGS__), want, name);                       \
	} while (0)

/* The jsonb value of a query without parameters compared with want:
 * shows the value found when it differs. */
#define JSONB_IS(want, name, sql)                                                                  \
	SQL_IS("same", name,                                                                       \
	       "SELECT CASE WHEN x.v::jsonb = $1::jsonb THEN 'same' ELSE coalesce(x.v::text, "     \
	       "'(null)') END FROM (" sql ") x (v)",                                               \
	       want, NULL, NULL)

/* A column of a chat_message row, as text. */
#define MIRROR_IS(col, id, want, name)                                                             \
	SQL_IS(want, name, "SELECT " col "::text FROM chat_message WHERE id = $1", id, NULL, NULL)

/* Builds the statement for the JSON text `json` and runs it on c.
 * Returns the number of rows it returned, or -1 (build refused or SQL
 * error), -2 when the build said "nothing to persist". */
static int apply_on(PGconn *c, const char *eid, const char *user, const char *json)
{
	cJSON *d = cJSON_Parse(json);
	persist_stmt st;
	const char *err = NULL;
	int r = persist_events_stmt(eid, user, d, &st, &err);
	cJSON_Delete(d);
	if (r == 1)
		return -2;
	if (r < 0) {
		printf("# build refused: %s\n", err);
		return -1;
	}
	PGresult *res = PQexecParams(c, st.sql, st.nparams, NULL, (const char *const *)st.values,
	                             NULL, NULL, 0);
	int n = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		n = PQntuples(res);
	else
		printf("# statement failed: %s", PQresultErrorMessage(res));
	PQclear(res);
	persist_stmt_dispose(&st);
	return n;
}

static int apply(const char *eid, const char *user, const char *json)
{
	return apply_on(db, eid, user, json);
}

/* An events argument for chat/message with {type, data}. */
static char *ev(const char *chat, const char *mid, const char *type, const char *data)
{
	char *s = NULL;
	if (asprintf(&s,
	             "{\"chat_id\":\"%s\",\"message_id\":\"%s\",\"data\":{\"type\":\"%s\"%s%s}}",
	             chat, mid, type, data ? ",\"data\":" : "", data ? data : "") < 0)
		abort();
	return s;
}

static int apply_ev(const char *eid, const char *user, const char *chat, const char *mid,
                    const char *type, const char *data)
{
	char *j = ev(chat, mid, type, data);
	int n = apply(eid, user, j);
	free(j);
	return n;
}

static int build_rc(const char *json, const char **err)
{
	cJSON *d = cJSON_Parse(json);
	persist_stmt st;
	*err = NULL;
	int r = persist_events_stmt("e", "u1", d, &st, err);
	persist_stmt_dispose(&st);
	cJSON_Delete(d);
	return r;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Chat c1 of u1: m1 (user) -> m2 (assistant, "Hel", lists m3 as a child
 * that does not exist yet). Chat c2 belongs to u2. updated_at = 100 so a
 * touch is visible. */
static const char c1_json[] =
    "{\"title\":\"t\",\"models\":[\"x\"],\"history\":{\"currentId\":\"m2\",\"messages\":{"
    "\"m1\":{\"id\":\"m1\",\"parentId\":null,\"childrenIds\":[\"m2\"],\"role\":\"user\","
    "\"content\":\"hi\",\"timestamp\":1700000000},"
    "\"m2\":{\"id\":\"m2\",\"parentId\":\"m1\",\"childrenIds\":[\"m3\"],\"role\":\"assistant\","
    "\"content\":\"Hel\",\"model\":\"llama\",\"done\":false,\"output\":[{\"type\":\"message\"}],"
    "\"timestamp\":1700000001000}}}}";

static void seed(void)
{
	exec_ok(db, "TRUNCATE chat, chat_message, tidings_event");
	const char *p[2] = {c1_json, NULL};
	PGresult *r = PQexecParams(db,
	                           "INSERT INTO chat (id, user_id, title, chat, created_at, "
	                           "updated_at, current_message_id) VALUES "
	                           "('c1', 'u1', 't', $1::json, 100, 100, 'm2'), "
	                           "('c2', 'u2', 't', $1::json, 100, 100, 'm2')",
	                           1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		printf("# seed failed: %s", PQresultErrorMessage(r));
	PQclear(r);
}

/* ---- building without a database ---- */

static void test_build(void)
{
	const char *err;
	is_int(build_rc("{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\","
	                "\"data\":{\"done\":true}}}",
	                &err),
	       0, "status builds");
	static const char *const skipped[] = {
	    "{\"chat_id\":\"temporary:x\",\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"local:x\",\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"channel:x\",\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":null,\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"chat:completion\","
	    "\"data\":{\"content\":\"x\"}}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"chat:message:delta\","
	    "\"data\":7}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"source\",\"data\":{"
	    "\"type\":\"code_execution\",\"id\":\"x\"}}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"citation\",\"data\":{"
	    "\"type\":null}}}",
	};
	for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
		is_int(build_rc(skipped[i], &err), 1, "persists nothing: %s", skipped[i]);
	static const char *const malformed[] = {
	    "[]",
	    "\"x\"",
	    "{\"chat_id\":5,\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":[],\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\"}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":[]}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":3}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"status\",\"data\":\"x\"}"
	    "}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"message\",\"data\":{"
	    "\"content\":5}}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"replace\",\"data\":[]}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"embeds\",\"data\":{"
	    "\"embeds\":\"x\"}}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"files\",\"data\":{"
	    "\"files\":{}}}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"source\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"citation\",\"data\":[1]}"
	    "}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"replace\",\"data\":{"
	    "\"content\":\"\xff\xfe\"}}}",
	    "{\"chat_id\":\"c\xc3\",\"message_id\":\"m\",\"data\":{\"type\":\"status\"}}",
	    "{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":\"files\",\"data\":{"
	    "\"files\":[\"\xed\xa0\x80\"]}}}",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		int r = build_rc(malformed[i], &err);
		is_int(r, -1, "malformed refused: %s", malformed[i]);
		ok(r != -1 || (err && *err), "  with a reason (%s)", err ? err : "none");
	}
	char big[PERSIST_MAX_ID + 64], *j;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	j = ev(big, "m", "status", NULL);
	is_int(build_rc(j, &err), -1, "an over-long chat id is refused");
	free(j);
	persist_stmt st;
	cJSON *d = cJSON_Parse("{\"chat_id\":\"c\",\"message_id\":\"m\",\"data\":{\"type\":"
	                       "\"status\"}}");
	is_int(persist_events_stmt("", "u", d, &st, &err), -1, "an empty event id is refused");
	is_int(persist_events_stmt("e", "", d, &st, &err), -1, "an empty user is refused");
	ok(st.sql == NULL && st.values[0] == NULL, "a refusal leaves the statement zeroed");
	is_int(persist_events_stmt("e", NULL, d, &st, &err), 0, "no user: built");
	ok(st.values[3] == NULL && st.values[4] != NULL, "the owner parameter is NULL");
	persist_stmt_dispose(&st);
	is_int(persist_events_stmt("e", "u", d, &st, &err), 0, "built");
	is_int(st.nparams, 6, "six parameters");
	is_str(st.values[1], "events status", "kind names the event and type");
	is_str(st.values[5], "{}", "a status without data appends {}");
	persist_stmt_dispose(&st);
	persist_stmt_dispose(&st); /* twice is harmless */
	cJSON_Delete(d);
}

static void test_strip_nul(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} v[] = {
	    {"\"a\\u0000b\"", 10, "\"ab\""},
	    {"\"\\u0000\\u0000\"", 14, "\"\""},
	    {"\"a\\\\u0000b\"", 11, "\"a\\\\u0000b\""},  /* escaped backslash, then text */
	    {"\"a\\\\\\u0000b\"", 13, "\"a\\\\b\""},     /* escaped backslash, then NUL */
	    {"\"\\u00001\\n\\\"\"", 14, "\"1\\n\\\"\""}, /* other escapes kept */
	    {"\"a\0b\"", 5, "\"ab\""},                   /* a raw NUL byte */
	    {"\"\\u000\"", 7, "\"\\u000\""},             /* too short to be one */
	    {"\\", 1, "\\"},                             /* a lone trailing backslash */
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char buf[64];
		memcpy(buf, v[i].in, v[i].len);
		size_t n = persist_strip_nul(buf, v[i].len);
		is_mem(buf, n, v[i].out, strlen(v[i].out), "strip_nul vector %zu", i);
	}
}

/* ---- each type against the seeded chat ---- */

static void test_status(void)
{
	seed();
	is_int(apply_ev("s1", "u1", "c1", "m2", "status",
	                "{\"action\":\"web_search\",\"description\":\"Searching {{count}}\","
	                "\"done\":false}"),
	       1, "status applied");
	is_int(apply_ev("s2", "u1", "c1", "m2", "status", "{\"done\":true,\"urls\":[\"u\"]}"), 1,
	       "second status applied");
	JSONB_IS("[{\"action\": \"web_search\", \"description\": \"Searching {{count}}\", "
	         "\"done\": false}, {\"done\": true, \"urls\": [\"u\"]}]",
	         "statusHistory created and appended in order",
	         "SELECT chat #> '{history,messages,m2,statusHistory}' FROM chat WHERE id = 'c1'");
	SQL_IS("Hel", "the rest of the message is kept",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	SQL_IS("100", "updated_at untouched", "SELECT updated_at FROM chat WHERE id = $1", "c1",
	       NULL, NULL);
	SQL_IS("t", "mirrored to chat_message.status_history (catalogue 9 #11)",
	       "SELECT status_history::jsonb = chat.chat::jsonb #> "
	       "'{history,messages,m2,statusHistory}' FROM chat_message JOIN chat ON chat.id = "
	       "chat_id WHERE chat_message.id = $1",
	       "c1-m2", NULL, NULL);
	SQL_IS("c1|u1|assistant|m1|\"Hel\"|llama|f|[{\"type\": \"message\"}]|1700000001",
	       "the mirror row was created from the whole message",
	       "SELECT concat_ws('|', chat_id, user_id, role, parent_id, content::text, model_id, "
	       "done, output::jsonb::text, created_at) FROM chat_message WHERE id = $1",
	       "c1-m2", NULL, NULL);
	SQL_IS("2", "the event ids were recorded",
	       "SELECT count(*) FROM tidings_event WHERE kind = $1", "events status", NULL, NULL);

	is_int(apply_ev("s2b", NULL, "c2", "m2", "status", "{\"done\":true}"), 1,
	       "no user named: applied to the chat, whoever owns it");
	SQL_IS("1", "c2 (of u2) got the status",
	       "SELECT json_array_length(chat #> '{history,messages,m2,statusHistory}') FROM chat "
	       "WHERE id = $1",
	       "c2", NULL, NULL);
	is_int(apply_ev("s3", "u1", "c1", "m9", "status", "{\"done\":true}"), 0,
	       "status to a missing message: no row");
	SQL_IS("f", "no message was created",
	       "SELECT chat::jsonb #> '{history,messages}' ? 'm9' FROM chat WHERE id = $1", "c1",
	       NULL, NULL);
	SQL_IS("0", "no mirror row either", "SELECT count(*) FROM chat_message WHERE id = $1",
	       "c1-m9", NULL, NULL);
}

static void test_message_replace(void)
{
	seed();
	is_int(apply_ev("a1", "u1", "c1", "m2", "message", "{\"content\":\"lo\"}"), 1,
	       "message applied");
	is_int(apply_ev("a2", "u1", "c1", "m2", "message", "{\"content\":\", world\"}"), 1,
	       "message applied again");
	SQL_IS("Hello, world", "content appended",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	SQL_IS("t", "updated_at touched",
	       "SELECT updated_at >= extract(epoch FROM now()) - 5 FROM chat WHERE id = $1", "c1",
	       NULL, NULL);
	MIRROR_IS("content", "c1-m2", "\"Hello, world\"", "content mirrored");
	is_int(apply_ev("a3", "u1", "c1", "m9", "message", "{\"content\":\"x\"}"), 0,
	       "message to a missing message: no row (catalogue: skipped)");
	SQL_IS("f", "no message was created",
	       "SELECT chat::jsonb #> '{history,messages}' ? 'm9' FROM chat WHERE id = $1", "c1",
	       NULL, NULL);

	is_int(apply_ev("r1", "u1", "c1", "m2", "replace", "{\"content\":\"Bye\"}"), 1,
	       "replace applied");
	SQL_IS("Bye", "content replaced",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	MIRROR_IS("content", "c1-m2", "\"Bye\"", "replacement mirrored");

	/* m3 is listed as a child of m2 (an assistant message), m4 nowhere. */
	exec_ok(db, "UPDATE chat SET updated_at = 100 WHERE id = 'c1'");
	is_int(apply_ev("r2", "u1", "c1", "m3", "replace", "{\"content\":\"new\"}"), 1,
	       "replace creates a missing message");
	SQL_IS(
	    "t", "created with parent and role inferred from the tree",
	    "SELECT (chat::jsonb #> '{history,messages,m3}') - 'timestamp' = '{\"id\": \"m3\", "
	    "\"parentId\": \"m2\", \"childrenIds\": [], \"role\": \"user\", \"content\": "
	    "\"new\"}'::jsonb AND jsonb_typeof(chat::jsonb #> '{history,messages,m3,timestamp}') "
	    "= 'number' FROM chat WHERE id = $1",
	    "c1", NULL, NULL);
	SQL_IS("m3|m3", "it became history.currentId and current_message_id",
	       "SELECT concat_ws('|', chat::jsonb #>> '{history,currentId}', current_message_id) "
	       "FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	is_int(apply_ev("r3", "u1", "c1", "m4", "replace", "{\"content\":\"orphan\"}"), 1,
	       "replace creates a message nobody lists");
	JSONB_IS(
	    "{\"id\":\"m4\",\"parentId\":null,\"childrenIds\":[],\"role\":\"assistant\","
	    "\"content\":\"orphan\"}",
	    "no parent, so role assistant",
	    "SELECT (chat::jsonb #> '{history,messages,m4}') - 'timestamp' FROM chat WHERE id = "
	    "'c1'");
	SQL_IS("assistant|(null)|\"orphan\"", "mirror row of the created message",
	       "SELECT concat_ws('|', role, coalesce(parent_id, '(null)'), content::text) FROM "
	       "chat_message WHERE id = $1",
	       "c1-m4", NULL, NULL);
	SQL_IS("t", "the other messages are untouched",
	       "SELECT chat::jsonb #> '{history,messages,m1}' = $2::jsonb #> "
	       "'{history,messages,m1}' FROM chat WHERE id = $1",
	       "c1", c1_json, NULL);

	/* Content that is not a string is not appended to. */
	exec_ok(db,
	        "UPDATE chat SET chat = jsonb_set(chat::jsonb, '{history,messages,m1,content}', "
	        "'[{\"type\":\"text\"}]')::json WHERE id = 'c1'");
	is_int(apply_ev("a4", "u1", "c1", "m1", "message", "{\"content\":\"x\"}"), 0,
	       "message to list content: no row");
}

static void test_embeds_files_sources(void)
{
	seed();
	is_int(apply_ev("b1", "u1", "c1", "m2", "embeds", "{\"embeds\":[\"<a>\"]}"), 1,
	       "embeds applied");
	is_int(apply_ev("b2", "u1", "c1", "m2", "embeds", "{\"embeds\":[\"<b>\",\"<c>\"]}"), 1,
	       "embeds applied again");
	JSONB_IS("[\"<b>\", \"<c>\", \"<a>\"]", "new embeds first, then existing",
	         "SELECT chat #> '{history,messages,m2,embeds}' FROM chat WHERE id = 'c1'");
	is_int(
	    apply_ev("b3", "u1", "c1", "m2", "embeds", "{\"embeds\":[\"<d>\"],\"replace\":true}"),
	    1, "embeds with replace applied");
	JSONB_IS("[\"<d>\"]", "replace: true replaces",
	         "SELECT chat #> '{history,messages,m2,embeds}' FROM chat WHERE id = 'c1'");
	MIRROR_IS("embeds", "c1-m2", "[\"<d>\"]", "embeds mirrored");

	is_int(apply_ev("f1", "u1", "c1", "m2", "files", "{\"files\":[{\"id\":\"f1\"}]}"), 1,
	       "files applied");
	is_int(apply_ev("f2", "u1", "c1", "m2", "files", "{\"files\":[{\"id\":\"f2\"}]}"), 1,
	       "files applied again");
	JSONB_IS("[{\"id\": \"f2\"}, {\"id\": \"f1\"}]", "new files first, then existing",
	         "SELECT chat #> '{history,messages,m2,files}' FROM chat WHERE id = 'c1'");
	JSONB_IS("[{\"id\": \"f2\"}, {\"id\": \"f1\"}]", "files mirrored",
	         "SELECT files FROM chat_message WHERE id = 'c1-m2'");

	is_int(apply_ev("o1", "u1", "c1", "m2", "source",
	                "{\"source\":{\"name\":\"a\",\"url\":\"http://a\"},\"document\":[\"d\"],"
	                "\"metadata\":[{}]}"),
	       1, "source applied");
	is_int(apply_ev("o2", "u1", "c1", "m2", "citation", "{\"source\":{\"id\":\"b\"}}"), 1,
	       "citation applied");
	is_int(apply_ev("o3", "u1", "c1", "m2", "source",
	                "{\"type\":\"code_execution\",\"id\":\"x\"}"),
	       -2, "code execution source not persisted");
	JSONB_IS("[{\"source\": {\"name\": \"a\", \"url\": \"http://a\"}, \"document\": "
	         "[\"d\"], \"metadata\": [{}]}, {\"source\": {\"id\": \"b\"}}]",
	         "sources appended in order",
	         "SELECT chat #> '{history,messages,m2,sources}' FROM chat WHERE id = 'c1'");
	MIRROR_IS("jsonb_array_length(sources::jsonb)", "c1-m2", "2", "sources mirrored");
	SQL_IS("100", "none of these touched updated_at",
	       "SELECT updated_at FROM chat WHERE id = $1", "c1", NULL, NULL);
	SQL_IS("t", "the mirror equals the chat JSON's message",
	       "SELECT m.embeds::jsonb = j -> 'embeds' AND m.files::jsonb = j -> 'files' AND "
	       "m.sources::jsonb = j -> 'sources' FROM chat_message m, (SELECT chat::jsonb #> "
	       "'{history,messages,m2}' AS j FROM chat WHERE id = 'c1') x WHERE m.id = $1",
	       "c1-m2", NULL, NULL);

	is_int(apply_ev("f3", "u1", "c1", "m7", "files", "{\"files\":[{\"id\":\"f3\"}]}"), 1,
	       "files creates a missing message");
	SQL_IS("assistant|[{\"id\": \"f3\"}]", "created with the files",
	       "SELECT concat_ws('|', chat::jsonb #>> '{history,messages,m7,role}', chat::jsonb #> "
	       "'{history,messages,m7,files}') FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
}

/* ---- exactly once, ownership, missing rows ---- */

static void test_guards(void)
{
	seed();
	is_int(apply_ev("x1", "u1", "c1", "m2", "status", "{\"n\":1}"), 1, "applied");
	is_int(apply_ev("x1", "u1", "c1", "m2", "status", "{\"n\":1}"), 0,
	       "the same event id again: no row");
	is_int(apply_ev("x1", "u1", "c1", "m2", "replace", "{\"content\":\"zzz\"}"), 0,
	       "the same id with another payload: no row");
	SQL_IS("1", "statusHistory has one entry",
	       "SELECT jsonb_array_length(chat::jsonb #> '{history,messages,m2,statusHistory}') "
	       "FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	SQL_IS("Hel", "the content did not change",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	MIRROR_IS("jsonb_array_length(status_history::jsonb)", "c1-m2", "1", "mirror: one entry");

	/* A redelivery inside one transaction (the same id twice in a batch). */
	exec_ok(db, "BEGIN");
	int a = apply_ev("x2", "u1", "c1", "m2", "status", "{\"n\":2}");
	int b = apply_ev("x2", "u1", "c1", "m2", "status", "{\"n\":2}");
	exec_ok(db, "COMMIT");
	ok(a == 1 && b == 0, "twice in one transaction: applied once (%d, %d)", a, b);

	char before[8192], after[8192];
	value(before, sizeof(before), "SELECT chat::text || updated_at FROM chat WHERE id = $1",
	      "c2", NULL, NULL);
	is_int(apply_ev("y1", "u1", "c2", "m2", "replace", "{\"content\":\"pwned\"}"), 0,
	       "another user's chat: no row");
	is_int(apply_ev("y2", "u1", "c2", "m2", "status", "{\"n\":1}"), 0, "status: no row");
	is_int(apply_ev("y3", "u1", "c2", "m5", "files", "{\"files\":[1]}"), 0, "files: no row");
	value(after, sizeof(after), "SELECT chat::text || updated_at FROM chat WHERE id = $1", "c2",
	      NULL, NULL);
	is_str(after, before, "the other user's chat is byte for byte unchanged");
	SQL_IS("0", "and has no mirror rows",
	       "SELECT count(*) FROM chat_message WHERE chat_id = $1", "c2", NULL, NULL);

	is_int(apply_ev("z1", "u1", "nochat", "m1", "files", "{\"files\":[1]}"), 0,
	       "a missing chat: no row, no error (catalogue 9 #14)");
	is_int(apply_ev("z2", "u1", "nochat", "m1", "embeds", "{\"embeds\":[1]}"), 0, "embeds too");
	is_int(apply_ev("z3", "u1", "nochat", "m1", "source", "{\"source\":{}}"), 0, "and source");
	is_int(apply_ev("z4", "u1", "temporary:abc", "m1", "status", "{}"), -2,
	       "temporary chat: nothing built");
	is_int(apply_ev("z5", "u1", "local:abc", "m1", "replace", "{\"content\":\"x\"}"), -2,
	       "local chat: nothing built");
	is_int(apply_ev("z6", "u1", "channel:abc", "m1", "message", "{\"content\":\"x\"}"), -2,
	       "channel: nothing built");
	SQL_IS("0", "nothing recorded for them",
	       "SELECT count(*) FROM tidings_event WHERE id IN ('z4', 'z5', 'z6')", NULL, NULL,
	       NULL);
}

/* chat_message ids are '{chat}-{message}', which two chats can share:
 * chat x + message y-z and chat x-y + message z. The mirror of one must
 * never overwrite the other's row. */
static void test_mirror_collision(void)
{
	seed();
	exec_ok(db, "INSERT INTO chat (id, user_id, chat, created_at, updated_at) VALUES "
	            "('x', 'u1', '{\"history\":{\"messages\":{\"y-z\":{\"id\":\"y-z\",\"role\":"
	            "\"assistant\",\"content\":\"\"}}}}', 1, 1), "
	            "('x-y', 'u2', '{\"history\":{\"messages\":{\"z\":{\"id\":\"z\",\"role\":"
	            "\"assistant\",\"content\":\"secret\"}}}}', 1, 1)");
	exec_ok(db, "INSERT INTO chat_message (id, chat_id, user_id, role, content, created_at, "
	            "updated_at) VALUES ('x-y-z', 'x-y', 'u2', 'assistant', '\"secret\"', 1, 1)");
	PGresult *r;
	cJSON *d = cJSON_Parse("{\"chat_id\":\"x\",\"message_id\":\"y-z\",\"data\":{\"type\":"
	                       "\"replace\",\"data\":{\"content\":\"mine\"}}}");
	persist_stmt st;
	const char *err;
	persist_events_stmt("col1", "u1", d, &st, &err);
	r = PQexecParams(db, st.sql, st.nparams, NULL, (const char *const *)st.values, NULL, NULL,
	                 0);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	       strcmp(PQgetvalue(r, 0, 1), "0") == 0,
	   "the chat was updated, and the statement says nothing was mirrored");
	PQclear(r);
	persist_stmt_dispose(&st);
	cJSON_Delete(d);
	SQL_IS(
	    "x-y|u2|\"secret\"", "the other chat's mirror row is untouched",
	    "SELECT concat_ws('|', chat_id, user_id, content::text) FROM chat_message WHERE id = "
	    "$1",
	    "x-y-z", NULL, NULL);
	SQL_IS("mine", "the chat JSON got the update",
	       "SELECT chat::jsonb #>> '{history,messages,y-z,content}' FROM chat WHERE id = $1",
	       "x", NULL, NULL);
}

/* ---- odd stored data ---- */

static void test_stored_shapes(void)
{
	seed();
	exec_ok(db, "INSERT INTO chat (id, user_id, chat, created_at, updated_at) VALUES "
	            "('n1', 'u1', NULL, 1, 1), ('n2', 'u1', 'null', 1, 1), "
	            "('n3', 'u1', '[1,2]', 1, 1), ('n4', 'u1', '{\"history\":[]}', 1, 1), "
	            "('n5', 'u1', '{\"history\":{\"messages\":\"x\"}}', 1, 1), "
	            "('n6', 'u1', '{\"title\":\"T\"}', 1, 1)");
	is_int(apply_ev("h1", "u1", "n1", "m", "replace", "{\"content\":\"a\"}"), 1,
	       "SQL NULL chat: replace applies");
	JSONB_IS(
	    "{\"history\":{\"currentId\":\"m\",\"messages\":{\"m\":{\"id\":\"m\","
	    "\"parentId\":null,\"childrenIds\":[],\"role\":\"assistant\",\"content\":\"a\"}}}}",
	    "a history is created",
	    "SELECT chat::jsonb #- '{history,messages,m,timestamp}' FROM chat WHERE id = 'n1'");
	is_int(apply_ev("h2", "u1", "n2", "m", "files", "{\"files\":[1]}"), 1,
	       "JSON null chat: files applies");
	is_int(apply_ev("h6", "u1", "n6", "m", "embeds", "{\"embeds\":[1]}"), 1,
	       "chat without history: embeds applies");
	SQL_IS("T", "the title is kept", "SELECT chat::jsonb ->> 'title' FROM chat WHERE id = $1",
	       "n6", NULL, NULL);
	is_int(apply_ev("h3", "u1", "n3", "m", "replace", "{\"content\":\"a\"}"), 0,
	       "an array chat is left alone");
	is_int(apply_ev("h4", "u1", "n4", "m", "replace", "{\"content\":\"a\"}"), 0,
	       "an array history is left alone");
	is_int(apply_ev("h5", "u1", "n5", "m", "replace", "{\"content\":\"a\"}"), 0,
	       "a string messages is left alone");
	SQL_IS("[1,2]|{\"history\":[]}|{\"history\":{\"messages\":\"x\"}}", "byte for byte",
	       "SELECT string_agg(chat::text, '|' ORDER BY id) FROM chat WHERE id IN ('n3', 'n4', "
	       "'n5')",
	       NULL, NULL, NULL);

	/* json accepts \u0000, jsonb does not: a chat someone stored with one
	 * must not make every later statement (and the batch) fail. */
	exec_ok(db, "UPDATE chat SET chat = replace(chat::text, '\"hi\"', "
	            "'\"h\\u0000i \\\\u0000 \\\\\\u0000\"')::json WHERE id = 'c1'");
	is_int(apply_ev("h7", "u1", "c1", "m2", "status", "{\"n\":1}"), 1,
	       "a chat holding \\u0000 escapes still takes updates");
	SQL_IS("hi \\u0000 \\", "the NULs were dropped, escaped backslashes kept",
	       "SELECT chat::jsonb #>> '{history,messages,m1,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
}

/* ---- strings that look like SQL, and NULs ---- */

static void test_verbatim(void)
{
	seed();
	static const char nasty[] =
	    "'); DROP TABLE chat; -- \\\" $1 $6 %s \\\\ \\u00e9 \\ud83d\\ude00";
	static const char nasty_stored[] = "'); DROP TABLE chat; -- \" $1 $6 %s \\ \xc3\xa9 "
	                                   "\xf0\x9f\x98\x80";
	static const char mid[] = "m'\\\"$5\\\\";
	static const char mid_stored[] = "m'\"$5\\";
	char data[256], *j;
	snprintf(data, sizeof(data), "{\"content\":\"%s\"}", nasty);
	j = ev("c1", mid, "replace", data);
	is_int(apply("v1", "u1", j), 1, "replace with a nasty content and message id");
	free(j);
	SQL_IS(nasty_stored, "content stored verbatim",
	       "SELECT chat::jsonb -> 'history' -> 'messages' -> $2 ->> 'content' FROM chat WHERE "
	       "id = $1",
	       "c1", mid_stored, NULL);
	SQL_IS(nasty_stored, "and mirrored verbatim",
	       "SELECT content #>> '{}' FROM chat_message WHERE id = 'c1-' || $1", mid_stored, NULL,
	       NULL);
	SQL_IS("2", "the chat table is still there",
	       "SELECT count(*) FROM chat WHERE id IN ('c1', 'c2')", NULL, NULL, NULL);
	j = ev("c1", mid, "status", "{\"q\":\"' OR 1=1 --\",\"$1\":\"\\\\\"}");
	is_int(apply("v2", "u1", j), 1, "status with quotes in keys and values");
	free(j);
	SQL_IS("' OR 1=1 --|\\", "stored verbatim",
	       "SELECT concat_ws('|', s ->> 'q', s ->> '$1') FROM (SELECT chat::jsonb -> 'history' "
	       "-> 'messages' -> $2 -> 'statusHistory' -> 0 AS s FROM chat WHERE id = $1) x",
	       "c1", mid_stored, NULL);

	/* The NUL path: raw text stripped before parsing keeps the tail. */
	char raw[] = "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"replace\","
	             "\"data\":{\"content\":\"a\\u0000b\\u0000\"}}}";
	size_t n = persist_strip_nul(raw, strlen(raw));
	raw[n] = '\0';
	is_int(apply("v3", "u1", raw), 1, "content with \\u0000, stripped first");
	SQL_IS("ab", "stored without the NULs",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
	is_int(apply("v4", "u1",
	             "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"replace\","
	             "\"data\":{\"content\":\"c\\u0000d\"}}}"),
	       1, "not stripped: cJSON ends the string at the NUL, nothing fails");
	SQL_IS("c", "(the tail is lost that way)",
	       "SELECT chat::jsonb #>> '{history,messages,m2,content}' FROM chat WHERE id = $1",
	       "c1", NULL, NULL);
}

/* ---- two writers on one message ---- */

static int wait_result(PGconn *c, int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		if (!PQconsumeInput(c))
			return -1;
		if (!PQisBusy(c))
			return 1;
		struct pollfd p = {PQsocket(c), POLLIN, 0};
		poll(&p, 1, 10);
	}
	return 0;
}

/* Connection A applies and holds its transaction open; B applies and must
 * block on the chat row; A commits; B must finish with A's change in. */
static void concurrent(const char *type, const char *m, const char *da, const char *db_,
                       const char *check, const char *want)
{
	seed();
	PGconn *a = connect_db(), *b = connect_db();
	char eida[32], eidb[32];
	snprintf(eida, sizeof(eida), "%s-A", type);
	snprintf(eidb, sizeof(eidb), "%s-B", type);
	exec_ok(a, "BEGIN");
	is_int(apply_on(a, eida, "u1", da), 1, "%s: A applied in an open transaction", type);

	exec_ok(b, "BEGIN");
	cJSON *d = cJSON_Parse(db_);
	persist_stmt st;
	const char *err;
	persist_events_stmt(eidb, "u1", d, &st, &err);
	cJSON_Delete(d);
	PQsendQueryParams(b, st.sql, st.nparams, NULL, (const char *const *)st.values, NULL, NULL,
	                  0);
	is_int(wait_result(b, 300), 0, "%s: B blocks on the chat row", type);
	char pid[16], w[64];
	snprintf(pid, sizeof(pid), "%d", PQbackendPID(b));
	is_str(value(w, sizeof(w), "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
	             pid, NULL, NULL),
	       "Lock", "%s: B waits for a lock", type);

	exec_ok(a, "COMMIT");
	is_int(wait_result(b, 10000), 1, "%s: B completes once A committed", type);
	PGresult *r = PQgetResult(b);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: B applied (%s)", type,
	   PQresultErrorMessage(r));
	PQclear(r);
	while ((r = PQgetResult(b)))
		PQclear(r);
	exec_ok(b, "COMMIT");
	persist_stmt_dispose(&st);
	PQfinish(a);
	PQfinish(b);

	char sql[512];
	snprintf(sql, sizeof(sql),
	         "SELECT CASE WHEN x.v = $1::jsonb THEN 'same' ELSE x.v::text END FROM (SELECT "
	         "chat::jsonb #> '{history,messages,%s,%s}' FROM chat WHERE id = 'c1') x (v)",
	         m, check);
	SQL_IS("same", "both updates are in the chat JSON", sql, want, NULL, NULL);
	const char *col = strcmp(check, "statusHistory") == 0 ? "status_history" : check;
	snprintf(sql, sizeof(sql),
	         "SELECT CASE WHEN x.v = $1::jsonb THEN 'same' ELSE x.v::text END FROM (SELECT "
	         "%s::jsonb FROM chat_message WHERE id = 'c1-%s') x (v)",
	         col, m);
	SQL_IS("same", "and in the mirror", sql, want, NULL, NULL);
}

static void test_concurrency(void)
{
	concurrent("status", "m2",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\","
	           "\"data\":{\"from\":\"A\"}}}",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\","
	           "\"data\":{\"from\":\"B\"}}}",
	           "statusHistory", "[{\"from\": \"A\"}, {\"from\": \"B\"}]");
	concurrent("message", "m2",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"message\","
	           "\"data\":{\"content\":\"lo\"}}}",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"message\","
	           "\"data\":{\"content\":\"!\"}}}",
	           "content", "\"Hello!\"");
	/* Both create the same missing message: the second sees the first's. */
	concurrent("files", "m8",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"files\","
	           "\"data\":{\"files\":[\"A\"]}}}",
	           "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"files\","
	           "\"data\":{\"files\":[\"B\"]}}}",
	           "files", "[\"B\", \"A\"]");
	/* A status and a source on one message, as parallel tools do. */
	seed();
	PGconn *a = connect_db(), *b = connect_db();
	exec_ok(a, "BEGIN");
	exec_ok(b, "BEGIN");
	apply_on(a, "mix-A", "u1",
	         "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\","
	         "\"data\":{\"n\":1}}}");
	cJSON *d = cJSON_Parse("{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":"
	                       "\"source\",\"data\":{\"source\":{\"id\":\"s\"}}}}");
	persist_stmt st;
	const char *err;
	persist_events_stmt("mix-B", "u1", d, &st, &err);
	cJSON_Delete(d);
	PQsendQueryParams(b, st.sql, st.nparams, NULL, (const char *const *)st.values, NULL, NULL,
	                  0);
	wait_result(b, 200);
	exec_ok(a, "COMMIT");
	wait_result(b, 10000);
	PGresult *r;
	while ((r = PQgetResult(b)))
		PQclear(r);
	exec_ok(b, "COMMIT");
	persist_stmt_dispose(&st);
	PQfinish(a);
	PQfinish(b);
	SQL_IS("1|1", "status and source on one message: both kept",
	       "SELECT concat_ws('|', jsonb_array_length(j -> 'statusHistory'), "
	       "jsonb_array_length(j -> 'sources')) FROM (SELECT chat::jsonb #> "
	       "'{history,messages,m2}' AS j FROM chat WHERE id = 'c1') x",
	       NULL, NULL, NULL);
}

/* ---- throughput ---- */

/* 1000 status updates in one transaction, sent the way the worker sends a
 * batch: pipelined, BEGIN ... COMMIT, one sync. The updates go round-robin
 * to message m2 of `nchats` chats (c1, t1, t2, ...), each a copy of c1
 * padded with 20 messages of 2 KB so every statement has a realistic blob
 * to rewrite. With one chat, its JSON grows from 41 KB to about 110 KB. */
static void throughput(int nchats)
{
	enum { N = 1000 };
	seed();
	exec_ok(db, "UPDATE chat SET chat = jsonb_set(chat::jsonb, '{history,messages}', "
	            "(chat::jsonb #> '{history,messages}') || (SELECT jsonb_object_agg('p' || i, "
	            "jsonb_build_object('id', 'p' || i, 'role', 'user', 'content', repeat('x', "
	            "2000))) FROM generate_series(1, 20) i))::json WHERE id = 'c1'");
	char n[16];
	snprintf(n, sizeof(n), "%d", nchats - 1);
	SQL_IS("t", "chats copied",
	       "WITH i AS (INSERT INTO chat (id, user_id, chat, created_at, updated_at) SELECT 't' "
	       "|| g, 'u1', c.chat, 1, 1 FROM chat c, generate_series(1, $1::int) g WHERE c.id = "
	       "'c1' RETURNING 1) SELECT count(*) = $1::int FROM i",
	       n, NULL, NULL);
	persist_stmt *st = calloc(N, sizeof(*st));
	for (int i = 0; i < N; i++) {
		char eid[32], chat[16], json[256];
		const char *err;
		snprintf(eid, sizeof(eid), "tp-%d", i);
		if (i % nchats == 0)
			snprintf(chat, sizeof(chat), "c1");
		else
			snprintf(chat, sizeof(chat), "t%d", i % nchats);
		snprintf(json, sizeof(json),
		         "{\"chat_id\":\"%s\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\","
		         "\"data\":{\"action\":\"web_search\",\"description\":\"step %d\","
		         "\"done\":false}}}",
		         chat, i);
		cJSON *d = cJSON_Parse(json);
		persist_events_stmt(eid, "u1", d, &st[i], &err);
		cJSON_Delete(d);
	}
	uint64_t t0 = mono_us();
	PQenterPipelineMode(db);
	PQsendQueryParams(db, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	for (int i = 0; i < N; i++)
		PQsendQueryParams(db, st[i].sql, st[i].nparams, NULL,
		                  (const char *const *)st[i].values, NULL, NULL, 0);
	PQsendQueryParams(db, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	PQpipelineSync(db);
	int applied = 0, failed = 0, synced = 0;
	while (!synced && PQstatus(db) == CONNECTION_OK) {
		PGresult *r = PQgetResult(db);
		if (!r)
			continue; /* the end of one statement's results */
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_PIPELINE_SYNC)
			synced = 1;
		else if (s == PGRES_TUPLES_OK)
			applied += PQntuples(r);
		else if (s != PGRES_COMMAND_OK)
			failed++;
		PQclear(r);
	}
	PQexitPipelineMode(db);
	uint64_t us = mono_us() - t0;
	for (int i = 0; i < N; i++)
		persist_stmt_dispose(&st[i]);
	free(st);
	is_int(failed, 0, "%d chats: no statement failed", nchats);
	is_int(applied, N, "%d chats: every update applied", nchats);
	char want[32];
	snprintf(want, sizeof(want), "%d|%d|%d", nchats, N / nchats, N / nchats);
	SQL_IS(want, "every status is in the chat JSON and in the mirror",
	       "SELECT concat_ws('|', count(*), min(jsonb_array_length(c.chat::jsonb #> "
	       "'{history,messages,m2,statusHistory}')), min(jsonb_array_length("
	       "m.status_history::jsonb))) FROM chat c JOIN chat_message m ON m.chat_id = c.id "
	       "AND m.id = c.id || '-m2'",
	       NULL, NULL, NULL);
	char line[160];
	snprintf(line, sizeof(line),
	         "throughput: %d status updates to %d chat(s) in one transaction: %.1f ms, %.0f "
	         "updates/s",
	         N, nchats, us / 1000.0, N * 1e6 / (double)us);
	tap_diag(line);
}

static void test_throughput(void)
{
	throughput(1);
	throughput(100);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_build();
	test_strip_nul();
	int r = cluster_start();
	if (r == 0) {
		tap_diag("database tests skipped: needs root, a postgres user and PostgreSQL 15 "
		         "in " PGBIN);
		return tap_done();
	}
	if (r < 0) {
		printf("Bail out! cannot start a Postgres cluster in %s\n", dir);
		cluster_stop();
		return 1;
	}
	db = connect_db();
	if (migrate(db) < 0) {
		printf("Bail out! migrations failed\n");
		PQfinish(db);
		cluster_stop();
		return 1;
	}
	test_status();
	test_message_replace();
	test_embeds_files_sources();
	test_guards();
	test_mirror_collision();
	test_stored_shapes();
	test_verbatim();
	test_concurrency();
	test_throughput();
	PQfinish(db);
	cluster_stop();
	return tap_done();
}
