/*
 * ydoc.h - Open WebUI's collaborative notes (catalogue sections 2, 3.1 and
 * 6): the `ydoc:*` client events, the cluster-wide sessions of each
 * document, its Yjs update log in Redis, and the note's debounced save.
 *
 * Every `ydoc:*` event of one document reaches one ingress shard (the
 * gateway keys it `doc:note:{id}` for both spellings of the id), so one
 * worker at a time applies a document's events, in order. A handler adds
 * its access check to the batch's transaction and a fan-out step
 * (worker/fanout.h) that runs one Redis script when the batch is
 * published: the script reads and writes the document's sessions and log
 * atomically, and its answer decides the deliveries, which go out at the
 * step's place in the batch's order. The Redis keys are described in
 * docs/redis.md.
 */
#ifndef TIDINGS_YDOC_H
#define TIDINGS_YDOC_H

#include "batch.h"
#include "common/pg.h"
#include "fanout.h"

/* A client event whose name starts with "ydoc:" (entry e of the batch
 * whose transaction is pb and fan-out is out). e must stay valid until out
 * is disposed; nothing of it is kept afterwards. Events that are refused
 * (not a note, no access, not joined, an invalid update) deliver nothing
 * and are logged at info level. */
void ydoc_handle(const wk_entry *e, pg_batch *pb, fanout_list *out);

/* A socket's disconnect entry: for each document the socket had joined, a
 * `ydoc:document:leave` entry is appended to that document's ingress
 * shard, behind the events the socket sent before it disconnected, so
 * that the others get `ydoc:user:left` and the session is cleaned up as
 * by an explicit leave. */
void ydoc_disconnect(const wk_entry *e, fanout_list *out);

/* Called from the worker's tick: saves the notes of owned shards whose
 * quiet period (0.5 s after their last update carrying content) is over.
 * Pending saves live in Redis, so a shard's next owner finishes what a
 * dead worker left; each is applied at most once (tidings_event). */
void ydoc_tick(void);

#endif
