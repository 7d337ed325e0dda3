/*
 * Tests worker/persist.c: the statements it builds are run with libpq
 * against a private PostgreSQL 15 cluster carrying the migrations of sql/,
 * and the chat JSON and chat_message rows they leave are checked in SQL.
 * The merged statements are checked against the single ones on random
 * sequences of updates (PERSIST_SEED=n picks another sequence), and the
 * throughput of both is reported (PERSIST_BENCH=full: of all 10 000
 * updates for the single statements too, which takes a minute more).
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

#include "common/pg.h"
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
	cJSON *d = json_parse(json, strlen(json)); /* as the worker parses entries */
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

	/* A timestamp past 2^53 and one past %.15g: stored as sent, not as a
	 * double printed back. */
	is_int(apply_ev("s2n", "u1", "c1", "m2", "status",
	                "{\"ts\":1795951088527890,\"at\":1700000000123456789,\"r\":0.1}"),
	       1, "status with big numbers applied");
	SQL_IS(
	    "1795951088527890|1700000000123456789|0.1", "its numbers are stored exactly",
	    "SELECT concat_ws('|', s ->> 'ts', s ->> 'at', s ->> 'r') FROM (SELECT chat::jsonb #> "
	    "'{history,messages,m2,statusHistory,-1}' AS s FROM chat WHERE id = $1) x",
	    "c1", NULL, NULL);
	SQL_IS("1795951088527890", "and mirrored exactly",
	       "SELECT status_history::jsonb #>> '{-1,ts}' FROM chat_message WHERE id = $1",
	       "c1-m2", NULL, NULL);

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

/* ---- merging: the merged statements against the single ones ---- */

/* Merges the updates (eid, json) with owner u1 into statements. */
static void merge_of(const char *const *eids, const char *const *jsons, int n, persist_stmt **st,
                     size_t *nst)
{
	persist_merge m;
	persist_merge_init(&m);
	for (int k = 0; k < n; k++) {
		cJSON *d = cJSON_Parse(jsons[k]);
		const char *err;
		persist_merge_add(&m, eids[k], "u1", d, &err);
		cJSON_Delete(d);
	}
	persist_merge_build(&m, st, nst);
}

/* Runs the statements of a merge on c, in order. Returns the number of
 * updates they say changed the chat, or -1 when one failed (its SQLSTATE
 * copied into state when given). */
static int run_merged(PGconn *c, persist_stmt *st, size_t n, char *state)
{
	int applied = 0;
	for (size_t i = 0; i < n && applied >= 0; i++) {
		PGresult *r = PQexecParams(c, st[i].sql, st[i].nparams, NULL,
		                           (const char *const *)st[i].values, NULL, NULL, 0);
		ExecStatusType s = PQresultStatus(r);
		if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
			const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			if (state)
				snprintf(state, 6, "%s", code ? code : "?????");
			else
				printf("# merged statement failed: %s", PQresultErrorMessage(r));
			applied = -1;
		} else if (st[i].kind == PERSIST_GROUP && PQntuples(r) == 1) {
			applied += atoi(PQgetvalue(r, 0, 2));
		} else if (st[i].kind == PERSIST_EVENT) {
			applied += PQntuples(r);
		}
		PQclear(r);
	}
	for (size_t i = 0; i < n; i++)
		persist_stmt_dispose(&st[i]);
	free(st);
	return applied;
}

/* A random update, as the worker would hand it over. */
typedef struct rev {
	char eid[16];
	const char *owner;
	char json[512];
} rev;

static uint64_t rng;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* A JSON array of 0-2 strings or objects made from tag and k. */
static void rnd_list(char *out, size_t size, const char *tag, int k, int objects)
{
	unsigned n = rnd(3);
	size_t o = (size_t)snprintf(out, size, "[");
	for (unsigned i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, size - o,
		                      objects ? "%s{\"id\":\"%s%d.%u\"}" : "%s\"%s%d.%u\"",
		                      i ? "," : "", tag, k, i);
	snprintf(out + o, size - o, "]");
}

/* Update k of a sequence; before: the updates so far (whose ids it may
 * reuse). With pair set, most updates go to the chats x and x-y. */
static void rnd_event(rev *v, int k, const rev *before, int pair)
{
	static const char *const mids[] = {"m1", "m2", "m3", "m4", "m5", "m6"};
	static const char *const kinds[] = {
	    "status", "status", "message", "message",  "message", "replace",        "embeds",
	    "embeds", "files",  "source",  "citation", "source",  "chat:completion"};
	static const char *const replaces[] = {"",
	                                       ",\"replace\":true",
	                                       ",\"replace\":false",
	                                       ",\"replace\":1",
	                                       ",\"replace\":\"\"",
	                                       ",\"replace\":[]"};
	const char *chat = "c1", *mid = mids[rnd(6)];
	unsigned w = pair ? 8 + rnd(12) : rnd(100);
	if (w < 8) {
		chat = "c2";
	} else if (w < 13) {
		chat = "x";
		mid = "y-z";
	} else if (w < 18) {
		chat = "x-y";
		mid = "z";
	} else if (w < 20) {
		chat = "nochat";
	} else if (w < 22) {
		chat = "temporary:t";
	}
	w = rnd(100);
	v->owner = w < 75 ? "u1" : w < 90 ? NULL : "u2";
	if (before && rnd(10) == 0)
		snprintf(v->eid, sizeof(v->eid), "%s", before[rnd((unsigned)k)].eid);
	else
		snprintf(v->eid, sizeof(v->eid), "e%d", k);
	const char *type = kinds[rnd(sizeof(kinds) / sizeof(kinds[0]))];
	char d[256], list[160];
	if (strcmp(type, "status") == 0) {
		snprintf(d, sizeof(d), rnd(5) ? ",\"data\":{\"n\":%d,\"done\":false}" : "", k);
	} else if (strcmp(type, "message") == 0 || strcmp(type, "replace") == 0) {
		unsigned c = rnd(6);
		snprintf(d, sizeof(d),
		         c == 0   ? ""
		         : c == 1 ? ",\"data\":{}"
		         : c == 2 ? ",\"data\":{\"content\":\"\"}"
		                  : ",\"data\":{\"content\":\"%s%d \\\"q\\\"\"}",
		         type[0] == 'm' ? "+" : "=", k);
	} else if (strcmp(type, "embeds") == 0) {
		rnd_list(list, sizeof(list), "e", k, 0);
		snprintf(d, sizeof(d), ",\"data\":{\"embeds\":%s%s}", list, replaces[rnd(6)]);
	} else if (strcmp(type, "files") == 0) {
		rnd_list(list, sizeof(list), "f", k, 1);
		snprintf(d, sizeof(d), rnd(8) ? ",\"data\":{\"files\":%s}" : ",\"data\":{}", list);
	} else if (strcmp(type, "chat:completion") == 0) {
		snprintf(d, sizeof(d), ",\"data\":{\"content\":\"c%d\"}", k);
	} else {
		snprintf(d, sizeof(d),
		         rnd(6) ? ",\"data\":{\"source\":{\"id\":\"s%d\"},\"document\":[\"d\"]}"
		                : ",\"data\":{\"type\":\"code_execution\",\"id\":\"x%d\"}",
		         k);
	}
	snprintf(v->json, sizeof(v->json),
	         "{\"chat_id\":\"%s\",\"message_id\":\"%s\",\"data\":{\"type\":\"%s\"%s}}", chat,
	         mid, type, d);
}

/* Chat c1's stored JSON: a message of every shape (m5's content is a list
 * of blocks, m6's lists are not lists), or no usable chat at all. */
static const char *const merge_chats[] = {
    "{\"title\":\"t\",\"history\":{\"currentId\":\"m2\",\"messages\":{"
    "\"m1\":{\"id\":\"m1\",\"parentId\":null,\"childrenIds\":[\"m2\"],\"role\":\"user\","
    "\"content\":\"hi\"},"
    "\"m2\":{\"id\":\"m2\",\"parentId\":\"m1\",\"childrenIds\":[\"m3\"],\"role\":\"assistant\","
    "\"content\":\"Hel\",\"statusHistory\":[{\"n\":0}],\"embeds\":[\"e0\"],\"model\":\"x\","
    "\"done\":false,\"timestamp\":1700000000},"
    "\"m5\":{\"id\":\"m5\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\"}]},"
    "\"m6\":{\"id\":\"m6\",\"role\":\"assistant\",\"content\":null,\"statusHistory\":\"s\","
    "\"sources\":{},\"embeds\":\"e\",\"files\":7}}}}",
    "{\"title\":\"t\",\"history\":{\"messages\":{\"m2\":{\"id\":\"m2\",\"content\":5,"
    "\"childrenIds\":[\"m4\"],\"role\":\"user\"},\"m1\":\"not a message\"}}}",
    "{\"title\":\"T\"}",
    "null",
    "[1,2]",
    "{\"history\":{\"messages\":{\"m1\":{\"content\":\"a\\u0000b\"}}}}",
};

/* The same starting state in schemas ref and mrg: c1 (of u1) from
 * template t, c2 (of u2), the chats x and x-y (of u1) whose messages y-z
 * and z share the mirror id x-y-z, and some mirror rows that drifted. */
static void merge_seed(PGconn *c, unsigned t, unsigned mirrors)
{
	for (int s = 0; s < 2; s++) {
		exec_ok(c, s ? "SET LOCAL search_path = mrg" : "SET LOCAL search_path = ref");
		const char *p[2] = {merge_chats[t], merge_chats[0]};
		PGresult *r = PQexecParams(
		    c,
		    "INSERT INTO chat (id, user_id, title, chat, created_at, updated_at, "
		    "current_message_id) VALUES ('c1', 'u1', 't', $1::json, 100, 100, 'm2'), "
		    "('c2', 'u2', 't', $2::json, 100, 100, 'm2'), "
		    "('x', 'u1', 't', "
		    "'{\"history\":{\"messages\":{\"y-z\":{\"id\":\"y-z\",\"role\":"
		    "\"assistant\",\"content\":\"\"}}}}', 1, 1, NULL), ('x-y', 'u1', 't', '{}', 1, "
		    "1, NULL)",
		    2, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			printf("# merge seed failed: %s", PQresultErrorMessage(r));
		PQclear(r);
		if (mirrors & 1)
			exec_ok(c,
			        "INSERT INTO chat_message (id, chat_id, user_id, role, content, "
			        "status_history, embeds, files, sources, created_at, updated_at) "
			        "VALUES ('c1-m2', 'c1', 'u9', 'user', '\"drifted\"', '[]', '[1]', "
			        "'[2]', '[3]', 5, 5)");
		if (mirrors & 2)
			exec_ok(
			    c, "INSERT INTO chat_message (id, chat_id, user_id, role, content, "
			       "created_at, updated_at) VALUES ('x-y-z', 'x-y', 'u1', 'assistant', "
			       "'\"other\"', 5, 5)");
	}
}

/* Rows that differ between ref and mrg, as text ("" when none). */
static void merge_diff(PGconn *c, char *out, size_t size)
{
/* A chat JSON holding \u0000 (which jsonb refuses) is compared as text. */
#define CHAT_COLS                                                                                  \
	"id, user_id, title, CASE WHEN strpos(chat::text, '\\u0000') > 0 THEN "                    \
	"to_jsonb(chat::text) "                                                                    \
	"ELSE chat::jsonb END, created_at, updated_at, current_message_id"
#define MSG_COLS                                                                                   \
	"id, chat_id, user_id, role, parent_id, content::jsonb, output::jsonb, model_id, "         \
	"files::jsonb, sources::jsonb, embeds::jsonb, meta::jsonb, done, status_history::jsonb, "  \
	"error::jsonb, usage::jsonb, context_summary, created_at, updated_at"
#define SYMDIFF(cols, t)                                                                           \
	"(SELECT 'ref' AS s, x::text AS row FROM (SELECT " cols " FROM ref." t                     \
	" EXCEPT SELECT " cols " FROM mrg." t                                                      \
	") x UNION ALL SELECT 'mrg', x::text FROM (SELECT " cols " FROM mrg." t                    \
	" EXCEPT SELECT " cols " FROM ref." t ") x)"
	value(out, size,
	      "SELECT COALESCE(string_agg(s || ' ' || row, E'\\n# '), '') FROM (" SYMDIFF(
	          CHAT_COLS,
	          "chat") " UNION ALL " SYMDIFF(MSG_COLS,
	                                        "chat_message") " UNION ALL " SYMDIFF("id, kind",
	                                                                              "tidings_"
	                                                                              "event") ") "
	                                                                                       "d",
	      NULL, NULL, NULL);
}

/* One random sequence of n updates, applied one by one in ref and merged
 * in mrg, in one transaction (so now() is the same for both). Returns 1
 * when the results are the same. */
static int merge_case(unsigned t, unsigned mirrors, int n, char *why, size_t size)
{
	rev *v = calloc((size_t)n, sizeof(*v));
	int pair = rnd(4) == 0;
	for (int k = 0; k < n; k++)
		rnd_event(&v[k], k, k ? v : NULL, pair);
	exec_ok(db, "BEGIN");
	merge_seed(db, t, mirrors);
	exec_ok(db, "SET LOCAL search_path = ref");
	int single = 0;
	for (int k = 0; k < n; k++) {
		int r = apply(v[k].eid, v[k].owner, v[k].json);
		single += r > 0 ? r : 0;
	}
	exec_ok(db, "SET LOCAL search_path = mrg");
	persist_merge m;
	persist_merge_init(&m);
	for (int k = 0; k < n; k++) {
		cJSON *d = cJSON_Parse(v[k].json);
		const char *err;
		persist_merge_add(&m, v[k].eid, v[k].owner, d, &err);
		cJSON_Delete(d);
	}
	persist_stmt *st;
	size_t nst;
	persist_merge_build(&m, &st, &nst);
	int merged = run_merged(db, st, nst, NULL);
	merge_diff(db, why, size);
	exec_ok(db, "ROLLBACK");
	int same = merged == single && why[0] == '\0';
	if (!same) {
		printf("# template %u, mirrors %u, %d updates: %d applied one by one, %d merged\n",
		       t, mirrors, n, single, merged);
		for (int k = 0; k < n; k++)
			printf("#   %s %s %s\n", v[k].eid, v[k].owner ? v[k].owner : "-",
			       v[k].json);
		printf("# %s\n", why);
	}
	free(v);
	return same;
}

static void test_merge_property(void)
{
	exec_ok(db, "TRUNCATE chat, chat_message, tidings_event");
	for (int s = 0; s < 2; s++) {
		const char *sch = s ? "mrg" : "ref";
		char sql[512];
		snprintf(sql, sizeof(sql),
		         "CREATE SCHEMA %s; CREATE TABLE %s.chat (LIKE public.chat INCLUDING ALL); "
		         "CREATE TABLE %s.chat_message (LIKE public.chat_message INCLUDING ALL); "
		         "CREATE TABLE %s.tidings_event (LIKE public.tidings_event INCLUDING ALL)",
		         sch, sch, sch, sch);
		exec_ok(db, sql);
	}
	const char *seed_env = getenv("PERSIST_SEED");
	rng = seed_env ? strtoull(seed_env, NULL, 10) : 0x9e3779b97f4a7c15ULL;
	int cases = 0, same = 0;
	char why[8192];
	uint64_t t0 = mono_us();
	for (int i = 0; i < 400; i++) {
		unsigned t = rnd(10);
		t = t < 5 ? 0 : t - 4 < 6 ? t - 4 : 0;
		cases++;
		same += merge_case(t, rnd(4), 1 + (int)rnd(i < 200 ? 12 : 40), why, sizeof(why));
	}
	is_int(same, cases,
	       "%d random sequences: merged = one by one (chat JSON, chat row, "
	       "mirror rows, event ids, updates applied)",
	       cases);
	char line[96];
	snprintf(line, sizeof(line), "property test: %.1f s", (mono_us() - t0) / 1e6);
	tap_diag(line);
}

/* Exactly once: a merged batch holding an event applied before fails as
 * a whole, with a unique violation; applied one by one (as the worker
 * then does), the rest lands once. An id twice in one batch counts once. */
static void test_merge_redelivery(void)
{
	static const char *const eids[] = {"r1", "r2", "r3", "r4"};
	static const char *const jsons[] = {
	    "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\",\"data\":{"
	    "\"n\":1}}}",
	    "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"status\",\"data\":{"
	    "\"n\":2}}}",
	    "{\"chat_id\":\"c1\",\"message_id\":\"m2\",\"data\":{\"type\":\"message\",\"data\":{"
	    "\"content\":\"lo\"}}}",
	    "{\"chat_id\":\"c1\",\"message_id\":\"m7\",\"data\":{\"type\":\"source\",\"data\":{"
	    "\"source\":{\"id\":\"s\"}}}}",
	};
	seed();
	is_int(apply(eids[1], "u1", jsons[1]), 1, "r2 applied in an earlier batch");
	persist_stmt *st;
	size_t nst;
	merge_of(eids, jsons, 4, &st, &nst);
	is_int((int)nst, 3, "merged: ids, then one statement per message");
	ok(nst == 3 && st[0].kind == PERSIST_IDS && st[1].kind == PERSIST_GROUP &&
	       st[2].kind == PERSIST_GROUP,
	   "in that order");
	char state[8] = "";
	exec_ok(db, "BEGIN");
	is_int(run_merged(db, st, nst, state), -1, "the merged batch fails");
	is_str(state, "23505", "with a unique violation");
	exec_ok(db, "ROLLBACK");
	SQL_IS("r2", "nothing of it was committed",
	       "SELECT string_agg(id, ',' ORDER BY id) FROM tidings_event", NULL, NULL, NULL);
	for (int k = 0; k < 4; k++) {
		exec_ok(db, "BEGIN");
		apply(eids[k], "u1", jsons[k]);
		exec_ok(db, "COMMIT");
	}
	JSONB_IS("[{\"n\": 2}, {\"n\": 1}]", "one by one: r2 is not applied twice",
	         "SELECT chat #> '{history,messages,m2,statusHistory}' FROM chat WHERE id = 'c1'");
	SQL_IS("Hello|[{\"source\": {\"id\": \"s\"}}]|r1,r2,r3,r4", "and the rest lands once",
	       "SELECT concat_ws('|', chat::jsonb #>> '{history,messages,m2,content}', chat::jsonb "
	       "#> '{history,messages,m7,sources}', (SELECT string_agg(id, ',' ORDER BY id) FROM "
	       "tidings_event)) FROM chat WHERE id = $1",
	       "c1", NULL, NULL);

	static const char *const twice[] = {"d1", "d1", "d2"};
	static const char *const tjsons[] = {jsons[0], jsons[1], jsons[0]};
	merge_of(twice, tjsons, 3, &st, &nst);
	exec_ok(db, "BEGIN");
	is_int(run_merged(db, st, nst, NULL), 2, "an id twice in one merged batch: applied once");
	exec_ok(db, "COMMIT");
	JSONB_IS("[{\"n\": 2}, {\"n\": 1}, {\"n\": 1}, {\"n\": 1}]", "the second d1 was dropped",
	         "SELECT chat #> '{history,messages,m2,statusHistory}' FROM chat WHERE id = 'c1'");
	MIRROR_IS("jsonb_array_length(status_history::jsonb)", "c1-m2", "4",
	          "mirror: four entries");
}

/* Two merged batches on one missing message, as two workers would apply
 * them: A creates it (and its mirror row) in an open transaction; B's
 * statement waits for the chat row, then finds both A's message and A's
 * mirror row, which its snapshot predates. */
static void test_merge_concurrency(void)
{
	static const char *const ea[] = {"ma1", "ma2"}, *const eb[] = {"mb1", "mb2"};
	static const char *const ja[] = {
	    "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"files\",\"data\":{"
	    "\"files\":[\"A\"]}}}",
	    "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"status\",\"data\":{"
	    "\"n\":\"A\"}}}"};
	static const char *const jb[] = {
	    "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"files\",\"data\":{"
	    "\"files\":[\"B\"]}}}",
	    "{\"chat_id\":\"c1\",\"message_id\":\"m8\",\"data\":{\"type\":\"message\",\"data\":{"
	    "\"content\":\"b\"}}}"};
	seed();
	PGconn *a = connect_db(), *b = connect_db();
	persist_stmt *sa, *sb;
	size_t na, nb;
	merge_of(ea, ja, 2, &sa, &na);
	merge_of(eb, jb, 2, &sb, &nb);
	exec_ok(a, "BEGIN");
	is_int(run_merged(a, sa, na, NULL), 2, "A: both updates applied in an open transaction");
	exec_ok(b, "BEGIN");
	PGresult *r = PQexecParams(b, sb[0].sql, sb[0].nparams, NULL,
	                           (const char *const *)sb[0].values, NULL, NULL, 0);
	ok(PQresultStatus(r) == PGRES_COMMAND_OK, "B: its ids recorded");
	PQclear(r);
	PQsendQueryParams(b, sb[1].sql, sb[1].nparams, NULL, (const char *const *)sb[1].values,
	                  NULL, NULL, 0);
	is_int(wait_result(b, 300), 0, "B's merged statement waits for the chat row");
	exec_ok(a, "COMMIT");
	is_int(wait_result(b, 10000), 1, "and completes once A committed");
	r = PQgetResult(b);
	ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	       strcmp(PQgetvalue(r, 0, 1), "1") == 0 && strcmp(PQgetvalue(r, 0, 2), "2") == 0,
	   "B: mirrored, both updates applied (%s)", PQresultErrorMessage(r));
	PQclear(r);
	while ((r = PQgetResult(b)))
		PQclear(r);
	exec_ok(b, "COMMIT");
	for (size_t i = 0; i < nb; i++)
		persist_stmt_dispose(&sb[i]);
	free(sb);
	PQfinish(a);
	PQfinish(b);
	JSONB_IS("{\"files\": [\"B\", \"A\"], \"statusHistory\": [{\"n\": \"A\"}], \"content\": "
	         "\"b\"}",
	         "the message holds both batches' updates",
	         "SELECT jsonb_build_object('files', j -> 'files', 'statusHistory', j -> "
	         "'statusHistory', 'content', j -> 'content') FROM (SELECT chat::jsonb #> "
	         "'{history,messages,m8}' AS j FROM chat WHERE id = 'c1') x");
	SQL_IS(
	    "t", "and so does the mirror row A inserted",
	    "SELECT m.files::jsonb = j -> 'files' AND m.status_history::jsonb = j -> "
	    "'statusHistory' AND m.content::jsonb = j -> 'content' FROM chat_message m, (SELECT "
	    "chat::jsonb #> '{history,messages,m8}' AS j FROM chat WHERE id = 'c1') x WHERE m.id "
	    "= $1",
	    "c1-m8", NULL, NULL);
}

/* ---- through common/pg, as the worker sends them ---- */

static struct event_base *base;

typedef struct wbatch {
	int called, ok, prepared;
	char state[6];
	char backend[16];
} wbatch;

static void w_done(void *arg, int ok_, const char *err)
{
	wbatch *w = arg;
	w->called = 1;
	w->ok = ok_;
}

static void w_ids(void *arg, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	snprintf(((wbatch *)arg)->state, 6, "%s", state ? state : "");
}

static void w_prepared(void *arg, const PGresult *res)
{
	wbatch *w = arg;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
		w->prepared = atoi(PQgetvalue(res, 0, 0));
		snprintf(w->backend, sizeof(w->backend), "%s", PQgetvalue(res, 0, 1));
	}
}

/* Runs the loop until *flag equals want, for at most ms. */
static int w_wait(const int *flag, int want, int ms)
{
	for (int waited = 0; *flag != want && waited < ms; waited += 10) {
		struct timeval tv = {0, 10000};
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return *flag == want;
}

static int conn_up;

static void w_up(pg_conn *c, void *arg)
{
	conn_up = 1;
}

static void w_down(pg_conn *c, const char *err, void *arg)
{
	conn_up = 0;
}

/* One batch of the merged statements of the updates (owner u1), and a
 * count of the session's prepared statements; waits for its end. */
static void w_batch(pg_conn *pc, const char *const *eids, const char *const *jsons, int n,
                    wbatch *w)
{
	memset(w, 0, sizeof(*w));
	w->prepared = -1;
	pg_batch *b = pg_batch_begin(pc);
	if (!b)
		return;
	persist_stmt *st;
	size_t nst;
	merge_of(eids, jsons, n, &st, &nst);
	for (size_t k = 0; k < nst; k++) {
		pg_batch_add_prepared(b, st[k].sql, st[k].nparams,
		                      (const char *const *)st[k].values,
		                      st[k].kind == PERSIST_IDS ? w_ids : NULL, w);
		persist_stmt_dispose(&st[k]);
	}
	free(st);
	pg_batch_add(b, "SELECT count(*), pg_backend_pid() FROM pg_prepared_statements", 0, NULL,
	             w_prepared, w);
	pg_batch_commit(b, w_done, w);
	w_wait(&w->called, 1, 10000);
}

#define W_EV(mid, type, data)                                                                      \
	"{\"chat_id\":\"c1\",\"message_id\":\"" mid "\",\"data\":{\"type\":\"" type                \
	"\",\"data\":" data "}}"

/* The statements are prepared once per session: a failed batch leaves
 * them usable, a new session prepares them again. */
static void test_merge_through_pg(void)
{
	seed();
	base = event_base_new();
	pg_conn_opts o = {.conninfo = conninfo, .name = "test", .on_up = w_up, .on_down = w_down};
	pg_conn *pc = pg_conn_create(base, &o);
	ok(w_wait(&conn_up, 1, 10000), "common/pg connects");
	wbatch w;
	static const char *const a[] = {"w1", "w2", "w3"};
	static const char *const aj[] = {W_EV("m2", "status", "{\"n\":1}"),
	                                 W_EV("m2", "message", "{\"content\":\"lo\"}"),
	                                 W_EV("m7", "source", "{\"source\":{\"id\":\"s\"}}")};
	w_batch(pc, a, aj, 3, &w);
	ok(w.ok, "a merged batch commits");
	is_int(w.prepared, 2, "its two statements were prepared");
	static const char *const b[] = {"w4", "w1"};
	static const char *const bj[] = {W_EV("m2", "status", "{\"n\":4}"),
	                                 W_EV("m2", "status", "{\"n\":1}")};
	w_batch(pc, b, bj, 2, &w);
	ok(w.called && !w.ok, "a batch with a redelivered id fails");
	is_str(w.state, "23505", "with a unique violation on the ids");
	static const char *const c[] = {"w5", "w6"};
	static const char *const cj[] = {W_EV("m2", "status", "{\"n\":5}"),
	                                 W_EV("m2", "message", "{\"content\":\"!\"}")};
	w_batch(pc, c, cj, 2, &w);
	ok(w.ok, "the next batch on the session commits");
	is_int(w.prepared, 2, "with the statements prepared before");

	SQL_IS("true", "its backend is terminated", "SELECT pg_terminate_backend($1::int)::text",
	       w.backend, NULL, NULL);
	ok(w_wait(&conn_up, 0, 5000) && w_wait(&conn_up, 1, 10000), "common/pg reconnects");
	static const char *const d[] = {"w7"};
	static const char *const dj[] = {W_EV("m2", "status", "{\"n\":7}")};
	w_batch(pc, d, dj, 1, &w);
	ok(w.ok, "a merged batch on the new session commits");
	is_int(w.prepared, 2, "its statements were prepared again");
	JSONB_IS("[{\"n\": 1}, {\"n\": 5}, {\"n\": 7}]", "each status once, in order",
	         "SELECT chat #> '{history,messages,m2,statusHistory}' FROM chat WHERE id = 'c1'");
	SQL_IS("Hello!|1", "the rest too",
	       "SELECT concat_ws('|', chat::jsonb #>> '{history,messages,m2,content}', "
	       "jsonb_array_length(chat::jsonb #> '{history,messages,m7,sources}')) FROM chat "
	       "WHERE id = $1",
	       "c1", NULL, NULL);
	pg_conn_destroy(pc);
	event_base_free(base);
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

/*
 * The worker's batches: a mix of updates (60% status, 30% message, 10%
 * source) to message m2 of chats of about 4 KB, in transactions of
 * `per_tx` updates sent as the worker sends them (pipelined, BEGIN ...
 * COMMIT, one sync, the next once it committed), synchronous_commit on.
 * Paths: a statement per update as text (the worker before merging), the
 * same statements prepared, and the merged statements, prepared (the
 * worker now). The updates come parsed; building the statements counts.
 */
enum { PATH_SINGLE, PATH_PREPARED, PATH_MERGED };

typedef struct bench_ev {
	char eid[16];
	cJSON *data;
} bench_ev;

static const char *bench_name(const char *sql)
{
	static const char *const sqls[] = {sql_status, sql_message, sql_sources, sql_group,
	                                   sql_ids};
	static const char *const names[] = {"b_status", "b_message", "b_sources", "b_group",
	                                    "b_ids"};
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++)
		if (sql == sqls[i])
			return names[i];
	return NULL;
}

static void bench_prepare(void)
{
	static const char *const sqls[] = {sql_status, sql_message, sql_sources, sql_group,
	                                   sql_ids};
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		PGresult *r = PQprepare(db, bench_name(sqls[i]), sqls[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			printf("# prepare failed: %s", PQresultErrorMessage(r));
		PQclear(r);
	}
}

/* nchats copies of c1 with two 1.7 KB messages more; returns the average
 * size of their chat JSON in bytes. */
static int bench_seed(int nchats)
{
	exec_ok(db, "TRUNCATE chat, chat_message, tidings_event");
	char n[16], size[32];
	snprintf(n, sizeof(n), "%d", nchats);
	const char *p[2] = {c1_json, n};
	PGresult *r = PQexecParams(
	    db,
	    "INSERT INTO chat (id, user_id, title, chat, created_at, updated_at, "
	    "current_message_id) SELECT 'b' || g, 'u1', 't', jsonb_set($1::jsonb, "
	    "'{history,messages}', ($1::jsonb #> '{history,messages}') || (SELECT "
	    "jsonb_object_agg('p' || i, jsonb_build_object('id', 'p' || i, 'role', 'user', "
	    "'content', repeat('x', 1700))) FROM generate_series(1, 2) i))::json, 100, 100, 'm2' "
	    "FROM generate_series(0, $2::int - 1) g",
	    2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		printf("# bench seed failed: %s", PQresultErrorMessage(r));
	PQclear(r);
	/* The other messages' mirror rows and events applied before: a
	 * database in use, whose statistics make the planner look rows up
	 * by index rather than scan the tables. */
	exec_ok(db,
	        "INSERT INTO chat_message (id, chat_id, user_id, role, content, created_at, "
	        "updated_at) SELECT c.id || '-h' || g, c.id, 'u1', 'user', '\"old\"', 1, 1 FROM "
	        "chat c, generate_series(1, 20000 / (SELECT count(*) FROM chat)) g");
	exec_ok(db, "INSERT INTO tidings_event (id, kind) SELECT 'old-' || g, 'events status' FROM "
	            "generate_series(1, 20000) g");
	exec_ok(db, "ANALYZE chat, chat_message, tidings_event");
	return atoi(value(size, sizeof(size), "SELECT avg(octet_length(chat::text))::int FROM chat",
	                  NULL, NULL, NULL));
}

static bench_ev *bench_events(int n, int nchats)
{
	bench_ev *v = calloc((size_t)n, sizeof(*v));
	uint64_t saved = rng;
	rng = 0x2545f4914f6cdd1dULL;
	for (int k = 0; k < n; k++) {
		char json[512];
		unsigned w = rnd(10);
		int chat = (int)rnd((unsigned)nchats);
		if (w < 6)
			snprintf(
			    json, sizeof(json),
			    "{\"chat_id\":\"b%d\",\"message_id\":\"m2\",\"data\":{\"type\":"
			    "\"status\","
			    "\"data\":{\"action\":\"web_search\",\"description\":\"Searching %d\","
			    "\"done\":false}}}",
			    chat, k);
		else if (w < 9)
			snprintf(json, sizeof(json),
			         "{\"chat_id\":\"b%d\",\"message_id\":\"m2\",\"data\":{\"type\":"
			         "\"message\",\"data\":{\"content\":\" token %d\"}}}",
			         chat, k);
		else
			snprintf(
			    json, sizeof(json),
			    "{\"chat_id\":\"b%d\",\"message_id\":\"m2\",\"data\":{\"type\":"
			    "\"source\","
			    "\"data\":{\"source\":{\"name\":\"doc "
			    "%d\",\"url\":\"https://example.com/"
			    "%d\"},\"document\":[\"a passage of the document\"],\"metadata\":[{"
			    "\"source\":\"https://example.com/%d\"}]}}}",
			    chat, k, k, k);
		snprintf(v[k].eid, sizeof(v[k].eid), "bench-%d", k % 1000000);
		v[k].data = cJSON_Parse(json);
	}
	rng = saved;
	return v;
}

/* One transaction: BEGIN, the statements, COMMIT, one sync. Adds the
 * updates applied to *applied; returns the number of failed results. */
static int bench_tx(persist_stmt *st, size_t n, int prepared, int *applied)
{
	PQenterPipelineMode(db);
	PQsendQueryParams(db, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		const char *name = prepared ? bench_name(st[i].sql) : NULL;
		if (name)
			PQsendQueryPrepared(db, name, st[i].nparams,
			                    (const char *const *)st[i].values, NULL, NULL, 0);
		else
			PQsendQueryParams(db, st[i].sql, st[i].nparams, NULL,
			                  (const char *const *)st[i].values, NULL, NULL, 0);
	}
	PQsendQueryParams(db, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	PQpipelineSync(db);
	int failed = 0, synced = 0;
	size_t res = 0; /* results so far: BEGIN, then the statements, then COMMIT */
	while (!synced && PQstatus(db) == CONNECTION_OK) {
		PGresult *r = PQgetResult(db);
		if (!r)
			continue;
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_PIPELINE_SYNC) {
			synced = 1;
		} else if (s == PGRES_TUPLES_OK && res >= 1 && res <= n) {
			if (st[res - 1].kind == PERSIST_GROUP)
				*applied += PQntuples(r) ? atoi(PQgetvalue(r, 0, 2)) : 0;
			else
				*applied += PQntuples(r);
		} else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
			if (!failed)
				printf("# bench: %s", PQresultErrorMessage(r));
			failed++;
		}
		res += !synced;
		PQclear(r);
	}
	PQexitPipelineMode(db);
	if (failed)
		exec_ok(db, "ROLLBACK");
	return failed;
}

/* Applies v[0..n) in transactions of per_tx by one path; returns the time
 * taken in microseconds and the statements sent in *nstmts. */
static uint64_t bench_run(bench_ev *v, int n, int per_tx, int path, int *applied, int *failed,
                          size_t *nstmts)
{
	uint64_t t0 = mono_us();
	for (int lo = 0; lo < n; lo += per_tx) {
		int hi = lo + per_tx < n ? lo + per_tx : n;
		persist_stmt *st = NULL;
		size_t nst = 0;
		if (path == PATH_MERGED) {
			persist_merge m;
			persist_merge_init(&m);
			const char *err;
			for (int k = lo; k < hi; k++)
				persist_merge_add(&m, v[k].eid, "u1", v[k].data, &err);
			persist_merge_build(&m, &st, &nst);
		} else {
			st = calloc((size_t)(hi - lo), sizeof(*st));
			const char *err;
			for (int k = lo; k < hi; k++)
				nst += persist_events_stmt(v[k].eid, "u1", v[k].data, &st[nst],
				                           &err) == 0;
		}
		*failed += bench_tx(st, nst, path != PATH_SINGLE, applied);
		*nstmts += nst;
		for (size_t i = 0; i < nst; i++)
			persist_stmt_dispose(&st[i]);
		free(st);
	}
	return mono_us() - t0;
}

/* The chats and mirror rows, as one digest; "ok" or what is wrong with
 * them after n updates. */
static void bench_check(int n, int nchats, char *digest, size_t size)
{
	char want[64], sn[16];
	int statuses = 0, sources = 0;
	rng = 0x2545f4914f6cdd1dULL;
	for (int k = 0; k < n; k++) {
		unsigned w = rnd(10);
		rnd((unsigned)nchats);
		statuses += w < 6;
		sources += w >= 9;
	}
	snprintf(want, sizeof(want), "%d|%d|t", statuses, sources);
	snprintf(sn, sizeof(sn), "%d", n);
	SQL_IS(
	    want, "every update is in the chats, and the mirror rows equal them",
	    "SELECT concat_ws('|', sum(jsonb_array_length(j -> 'statusHistory')), "
	    "sum(jsonb_array_length(j -> 'sources')), bool_and(m.status_history::jsonb = j -> "
	    "'statusHistory' AND m.content::jsonb = j -> 'content' AND m.sources::jsonb = j -> "
	    "'sources')) FROM (SELECT id, chat::jsonb #> '{history,messages,m2}' AS j FROM chat) "
	    "c JOIN chat_message m ON m.id = c.id || '-m2'",
	    NULL, NULL, NULL);
	value(digest, size,
	      "SELECT md5(string_agg(chat::jsonb::text || m.status_history::jsonb::text || "
	      "m.content::jsonb::text || m.sources::jsonb::text, '' ORDER BY c.id)) FROM chat c "
	      "JOIN chat_message m ON m.id = c.id || '-m2'",
	      NULL, NULL, NULL);
}

static void bench(int nchats, int n, int per_tx, int path, char *digest, size_t size)
{
	static const char *const paths[] = {"a statement per update",
	                                    "a prepared statement per update", "merged, prepared"};
	int kb = bench_seed(nchats), applied = 0, failed = 0;
	size_t nst = 0;
	bench_ev *v = bench_events(n, nchats);
	uint64_t us = bench_run(v, n, per_tx, path, &applied, &failed, &nst);
	for (int k = 0; k < n; k++)
		cJSON_Delete(v[k].data);
	free(v);
	is_int(failed, 0, "%d chats, %s: no statement failed", nchats, paths[path]);
	is_int(applied, n, "%d chats, %s: every update applied", nchats, paths[path]);
	bench_check(n, nchats, digest, size);
	char line[256];
	snprintf(line, sizeof(line),
	         "throughput: %d updates to %d chats of %.1f KB, %d per transaction, %s (%zu "
	         "statements): %.0f ms, %.0f updates/s",
	         n, nchats, kb / 1024.0, per_tx, paths[path], nst, us / 1000.0,
	         n * 1e6 / (double)us);
	tap_diag(line);
}

static void test_throughput(void)
{
	throughput(1);
	throughput(100);
	/* A statement per update takes seconds per thousand: by default those
	 * paths run the first 1000 updates only (PERSIST_BENCH=full: all). */
	enum { N = 10000 };
	int nsingle =
	    getenv("PERSIST_BENCH") && strcmp(getenv("PERSIST_BENCH"), "full") == 0 ? N : 1000;
	bench_prepare();
	static const int chats[] = {100, 10};
	for (size_t c = 0; c < 2; c++) {
		char single[64], merged[64];
		bench(chats[c], nsingle, 1000, PATH_SINGLE, single, sizeof(single));
		bench(chats[c], nsingle, 1000, PATH_PREPARED, merged, sizeof(merged));
		is_str(merged, single, "%d chats: prepared statements, the same result", chats[c]);
		bench(chats[c], nsingle, 1000, PATH_MERGED, merged, sizeof(merged));
		is_str(merged, single, "%d chats: merged, the same result as a statement each",
		       chats[c]);
		static const int per_tx[] = {500, 1000, 2000};
		for (size_t t = 0; t < 3; t++)
			bench(chats[c], N, per_tx[t], PATH_MERGED, merged, sizeof(merged));
	}
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
	test_merge_property();
	test_merge_redelivery();
	test_merge_concurrency();
	test_merge_through_pg();
	test_throughput();
	PQfinish(db);
	cluster_stop();
	return tap_done();
}
