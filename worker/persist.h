/*
 * persist.h - the database effect of an `events` emit with update_db: one
 * SQL statement (text + parameters) per event that edits the message in
 * chat.chat->history->messages and mirrors it into chat_message, exactly as
 * catalogue section 3.3 describes, with the section 9 bugs (#11 lost
 * updates and the missing status mirror, #14 crash on a missing chat) fixed.
 *
 * This module builds statements and does no I/O: the worker adds the
 * statement to its batch (pg_batch_add), tests run it with PQexecParams.
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

#define PERSIST_MAX_PARAMS 8
/* Longest chat, message, user or event id accepted, in bytes. */
#define PERSIST_MAX_ID 512

/* One statement: sql is a string literal (never freed); values[0..nparams)
 * are text parameters owned by the struct. */
typedef struct persist_stmt {
	const char *sql;
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

/* Removes NUL characters from raw JSON text in place: every \u0000 escape
 * (an escape, not an escaped backslash followed by "u0000") and every raw
 * NUL byte. Returns the new length; the text stays valid JSON when it was.
 * Run it over an event's JSON before cJSON parses it, so "a\u0000b" keeps
 * its tail as "ab" (cJSON alone would cut it to "a"). */
size_t persist_strip_nul(char *json, size_t len);

#endif
