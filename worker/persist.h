/*
 * persist.h - the database effect of an `events` emit with update_db: one
 * SQL statement (text + parameters) per event that edits the message in
 * chat.chat->history->messages and mirrors it into chat_message, exactly as
 * catalogue section 3.3 describes, with the section 9 bugs (#11 lost
 * updates and the missing status mirror, #14 crash on a missing chat)
 * fixed; or, for a batch applied in one transaction, the same effect with
 * one statement per message (persist_merge_*, below; catalogue 9 #12).
 *
 * This module builds statements and does no I/O: the worker adds the
 * statements to its batch (pg_batch_add_prepared), tests run them with
 * PQexecParams.
 *
 * What one statement does, all inside Postgres and atomically:
 *   - records the event id in tidings_event; if it was already there (a
 *     redelivery) nothing else happens;
 *   - edits the chat JSON of chat `chat_id` if that chat belongs to
 *     `user_id` (otherwise, or when the chat row does not exist, nothing),
 *     from the row version it holds the lock on, never from a copy read
 *     earlier, so concurrent emits to one message all land;
 *   - mirrors the edited message into chat_message row
 *     '{chat_id}-{message_id}' (inserted from the whole message when
 *     missing; otherwise only the changed column and updated_at).
 *
 * Per type (data.data.type), with d = data.data:
 *   status    append d to statusHistory; only if the message exists;
 *             updated_at untouched; mirrored to status_history.
 *   message   content = content || d.content; only if the message exists
 *             and its content is a string (or absent); updated_at = now.
 *   replace   content = d.content; creates the message when absent;
 *             updated_at = now.
 *   embeds    d.replace truthy: embeds = d.embeds; else d.embeds followed
 *             by the existing ones; creates the message; updated_at kept.
 *   files     d.files followed by the existing ones; creates; kept.
 *   source, citation
 *             append d to sources, unless d has a `type` key (code
 *             execution results, not persisted); creates; kept.
 * A message created here gets id, parentId (the message whose childrenIds
 * lists it, else null), childrenIds [], role ('user' under an assistant
 * parent, else 'assistant') and timestamp, becomes history.currentId and
 * chat.current_message_id, as Open WebUI's upsert does.
 *
 * Strings: cJSON ends a string at a decoded \u0000, so no NUL can reach
 * Postgres from a cJSON value (jsonb could not hold one). To remove NULs
 * the way Open WebUI does (dropping only the NUL, keeping the rest of the
 * string) run persist_strip_nul() over the raw JSON text before parsing it.
 * A stored chat JSON that contains \u0000 escapes (written by another
 * program; the json type accepts them) has them removed when this edits it,
 * instead of failing the statement and with it the worker's batch.
 */
#ifndef TIDINGS_PERSIST_H
#define TIDINGS_PERSIST_H

#include <cJSON.h>
#include <stddef.h>

#define PERSIST_MAX_PARAMS 21
/* Longest chat, message, user or event id accepted, in bytes. */
#define PERSIST_MAX_ID 512

/* What a statement is, and so what it returns (see each builder). */
enum {
	PERSIST_EVENT, /* one event: persist_events_stmt() */
	PERSIST_GROUP, /* one message's merged updates: persist_merge_build() */
	PERSIST_IDS,   /* the merged events' ids into tidings_event */
};

/* One statement: sql is a string literal (never freed, so it may be
 * prepared once per session and executed by name); values[0..nparams)
 * are text parameters owned by the struct. */
typedef struct persist_stmt {
	const char *sql;
	int kind;
	int nparams;
	char *values[PERSIST_MAX_PARAMS];
} persist_stmt;

/* Builds the statement applying one `events` update with update_db.
 *
 * eid is the event id (the idempotency key), user_id the user the event is
 * emitted for (it must own the chat; NULL: whoever owns it), data the
 * emitted argument
 * {chat_id, message_id, data: {type, data}}. Nothing is kept: the strings
 * are copied into *st.
 *
 * Returns
 *    0  *st is filled; release it with persist_stmt_dispose(). The
 *       statement returns one row (message_id, mirrored) when it changed
 *       the chat (mirrored = 1 when chat_message was written, 0 when the
 *       mirror row's id belongs to another chat), and no row when it
 *       changed nothing: a redelivery, a chat that is missing or belongs
 *       to someone else, or (status, message) a missing message.
 *    1  the update persists nothing: a type that is not persisted, a
 *       source with a `type`, a temporary:, local: or channel: chat, or a
 *       missing/empty chat_id or message_id. *st is zeroed.
 *   -1  malformed: *err says why (a static string). *st is zeroed.
 * Ids and payload strings must be valid UTF-8 (Postgres would refuse them
 * and fail the whole batch); ids are at most PERSIST_MAX_ID bytes. */
int persist_events_stmt(const char *eid, const char *user_id, const cJSON *data, persist_stmt *st,
                        const char **err);

/* Frees the parameters and zeroes *st; safe on a zeroed struct. */
void persist_stmt_dispose(persist_stmt *st);

/*
 * Merging a batch. A transaction that applies many updates turns them
 * into few statements: the updates to one message (same chat_id, owner
 * and message_id) are folded, in order, into one PERSIST_GROUP statement
 * that parses and rewrites the chat JSON and the mirror row once, and one
 * PERSIST_IDS statement records every merged event id. The result is the
 * one the PERSIST_EVENT statements of the same updates, run one by one in
 * the order added, would leave (chat JSON, chat.updated_at and
 * current_message_id, chat_message row, tidings_event ids), with one
 * exception by design: PERSIST_IDS is a plain INSERT, so an event id
 * already recorded (a redelivery) makes it fail with a unique violation
 * (SQLSTATE 23505) and with it the transaction. The caller then applies
 * the updates one by one with persist_events_stmt(), whose statements skip
 * what was applied before.
 *
 * Updates that merging could reorder observably are given PERSIST_EVENT
 * statements instead, placed in order among the groups: those to a message
 * that receives updates for more than one owner (a NULL owner matches any
 * chat, a named one only its own), and those to two messages whose mirror
 * rows would share an id ('{chat_id}-{message_id}' is ambiguous). An id
 * added twice counts once, as the second statement would have skipped.
 */
typedef struct persist_merge {
	struct persist_ev *ev;
	size_t n, cap;
} persist_merge;

void persist_merge_init(persist_merge *m);

/* Frees what was added; m is empty and reusable afterwards. */
void persist_merge_dispose(persist_merge *m);

/* Adds one update, with the arguments and the return convention of
 * persist_events_stmt(): 0 added, 1 nothing to persist, -1 malformed
 * (*err). Nothing is kept of the arguments. */
int persist_merge_add(persist_merge *m, const char *eid, const char *user_id, const cJSON *data,
                      const char **err);

/* The statements that apply everything added, to run in order in one
 * transaction: *out (malloc'd, *n entries; each to be released with
 * persist_stmt_dispose() and the array with free()) is empty when nothing
 * was added, and starts with the PERSIST_IDS statement (which returns no
 * rows) when any update was merged. A PERSIST_GROUP statement returns one row (message_id, mirrored
 * as for persist_events_stmt(), and applied: how many of its updates
 * changed the chat) when it changed the chat, none otherwise. m is left
 * empty. Returns 0, or -1 when memory ran out (*out NULL, m empty). */
int persist_merge_build(persist_merge *m, persist_stmt **out, size_t *n);

/* Removes NUL characters from raw JSON text in place: every \u0000 escape
 * (an escape, not an escaped backslash followed by "u0000") and every raw
 * NUL byte. Returns the new length; the text stays valid JSON when it was.
 * Run it over an event's JSON before cJSON parses it, so "a\u0000b" keeps
 * its tail as "ab" (cJSON alone would cut it to "a"). */
size_t persist_strip_nul(char *json, size_t len);

#endif
