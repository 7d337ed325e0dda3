/*
 * yjs.h - the Yjs update format, version 1: validation, state vectors and
 * merging, for a server that keeps a log of a document's updates.
 *
 * Open WebUI's collaborative notes are Yjs documents. The server never holds
 * a Y.Doc: it stores the binary updates that clients send and, when a client
 * joins, answers with one update that has the effect of all of them, as
 * Yjs's `Y.mergeUpdates` (and pycrdt's `merge_updates`) would compute it.
 * This module does that on the bytes alone, without building a document.
 *
 * The format, in lib0's encoding (var-uint: 7 bits a byte, low first, high
 * bit "more follows"; var-string: var-uint byte length, then UTF-8):
 *
 *   update     = var-uint groups, group*, delete-set
 *   group      = var-uint structs, var-uint client, var-uint clock, struct*
 *   struct     = info byte; low 5 bits the content ref:
 *                  0 GC (var-uint length), 10 Skip (var-uint length),
 *                  1..9 an Item: [origin id if 0x80] [right origin id if
 *                  0x40] [if neither: parent (var-uint 1 + root type name,
 *                  or 0 + id), then parentSub var-string if 0x20] content
 *   id         = var-uint client, var-uint clock
 *   delete-set = var-uint clients, (var-uint client, var-uint n,
 *                (var-uint clock, var-uint length) * n) *
 *
 * Each struct occupies `length` consecutive clocks of its client, from the
 * group's clock on. Item content and its length in clocks: 1 Deleted (a
 * var-uint count), 2 JSON (count, then that many JSON texts or
 * "undefined"), 3 Binary (var-uint8array; 1), 4 String (var-string; its
 * length in UTF-16 code units), 5 Embed (JSON text; 1), 6 Format (key,
 * JSON text; 1), 7 Type (var-uint type ref 0..6, plus a name for
 * XmlElement (3) and XmlHook (5); 1), 8 Any (count, then lib0 Any values),
 * 9 Doc (guid, Any options; 1).
 *
 * Inputs come from browsers, so every reader here is hostile-input safe:
 * it never reads outside the given bytes, never allocates more than a
 * constant factor of the input (nothing is sized by a length field), and
 * refuses, with a short static reason in *err, anything Yjs itself would
 * fail to decode, plus a few things Yjs tolerates but never produces, so
 * that a merged update cannot carry a spelling that breaks the clients that
 * receive it:
 *
 *   "truncated"             the input ends inside a value
 *   "integer out of range"  a var-int above 2^53 - 1 (JavaScript's safe range)
 *   "over-long integer"     a var-int of more than 8 bytes
 *   "invalid utf-8"         a string that is not well-formed UTF-8 (lib0's
 *                           TextDecoder is fatal too)
 *   "unknown content ref"   content refs 11..31, or 10 (Skip) with flag bits
 *   "unknown any type"      an Any tag outside 116..127
 *   "unknown type ref"      a Type content ref above 6 (XmlText)
 *   "bad parent info"       a parent marker other than 0 or 1
 *   "invalid json"          JSON/Embed/Format text that JSON.parse refuses
 *   "too deeply nested"     Any or JSON nesting beyond YJS_MAX_DEPTH
 *   "empty struct"          a struct of length 0 (Yjs never writes one)
 *   "clock out of range"    clock + length beyond 2^53 - 1
 *   "duplicate client"      one client in two groups of the same update (Yjs
 *                           applies only the last of them, but merges both)
 *   "trailing bytes"        bytes after the delete set
 *   "out of memory"         an allocation failed or `out` hit its limit
 *
 * All functions are pure: no I/O, no logging, no global state. Inputs are
 * borrowed for the call only; outputs are appended to a caller's buf, and
 * on failure the buf is left as it was.
 */
#ifndef TIDINGS_YJS_H
#define TIDINGS_YJS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "slice.h"

/* The largest integer lib0 reads: Number.MAX_SAFE_INTEGER. */
#define YJS_MAX_SAFE ((UINT64_C(1) << 53) - 1)
/* Deepest nesting of Any arrays/objects and of JSON texts accepted. */
#define YJS_MAX_DEPTH 256

/*
 * lib0 primitives, exported for the y-protocols framing around updates
 * (sync messages are lib0-encoded too) and for tests.
 *
 * Each reader decodes one value at the front of *in and, on success,
 * advances *in past it and returns 0. On failure it returns -1, leaves *in
 * unchanged and sets *err (when err is not NULL) to one of the reasons above.
 * Slices handed out point into the input.
 */

/* An unsigned var-int: at most 8 bytes, value at most YJS_MAX_SAFE. */
int yjs_read_varuint(slice *in, uint64_t *v, const char **err);

/* A signed var-int: the first byte holds 6 bits of magnitude, the sign
 * (0x40) and "more follows" (0x80); magnitude at most YJS_MAX_SAFE. lib0's
 * negative zero (0x40) reads as 0. */
int yjs_read_varint(slice *in, int64_t *v, const char **err);

/* A var-uint8array: a var-uint length, then that many bytes (*out). */
int yjs_read_varbytes(slice *in, slice *out, const char **err);

/* A var-string: as yjs_read_varbytes, and the bytes must be valid UTF-8. */
int yjs_read_varstring(slice *in, slice *out, const char **err);

/* One lib0 Any value (tags 127 undefined, 126 null, 125 var-int, 124
 * float32, 123 float64, 122 bigint64, 121 false, 120 true, 119 string,
 * 118 object, 117 array, 116 Uint8Array), validated to YJS_MAX_DEPTH;
 * *out is its encoded bytes. */
int yjs_read_any(slice *in, slice *out, const char **err);

/* Writers append the canonical (shortest) encoding; 0, or -1 when the buf
 * refuses the bytes (limit or memory). Values above YJS_MAX_SAFE are
 * written, but lib0 and the readers above refuse them. */
int yjs_write_varuint(buf *b, uint64_t v);
int yjs_write_varint(buf *b, int64_t v);
/* A var-uint length, then the bytes; a var-string is the same with UTF-8. */
int yjs_write_varbytes(buf *b, slice s);

/*
 * Checks that `update` is one well-formed v1 update: every struct group,
 * every content, the delete set, and nothing after it. Returns 0, or -1
 * and sets *err (when not NULL).
 */
int yjs_valid(slice update, const char **err);

/*
 * Appends the state vector that Yjs's `encodeStateVectorFromUpdate` gives
 * for `update`: for each client whose structs start at clock 0, the clock
 * up to which they are contiguous (a Skip or a gap ends the count), in the
 * update's group order, encoded as var-uint count, then (client, clock)
 * pairs. A client whose structs do not start at 0 is left out: a Y.Doc that
 * applied the update would hold them as pending, not as state. For a merged
 * update of a whole log (no gaps) this is each client's maximum clock.
 * The update is validated first. Returns 0, or -1 and sets *err (when not
 * NULL); `out` is unchanged then.
 */
int yjs_state_vector(slice update, buf *out, const char **err);

/*
 * Merges updates[0..n) into one v1 update, appended to `out`, that a Y.Doc
 * applies with the same effect as all of them in any order - what Yjs's
 * `mergeUpdates` computes. Every input is validated first; one bad input
 * fails the whole call.
 *
 * Per client (highest client first, as Yjs writes), the structs of all
 * inputs are taken in clock order, each input's contiguous run at a time
 * (runs starting at the same clock: the earlier input first). What an
 * earlier struct already covered is dropped; a struct that overlaps it is
 * sliced to the part after it: a GC or Deleted shortened, JSON and Any by
 * element, a String by UTF-16 code units, where a cut inside a surrogate
 * pair leaves U+FFFD in place of the low surrogate (Yjs's own rule). A
 * sliced Item gets the origin (client, clock - 1) of its new first clock and
 * so loses its parent info. A gap between a client's structs becomes a Skip;
 * a GC that starts a run right where a GC ended is joined to it. The input
 * Skips themselves are dropped. The delete sets are joined per client,
 * sorted by clock, overlapping and adjacent ranges coalesced, clients
 * written highest first.
 *
 * As in Yjs, a single update (n == 1) is copied unchanged (after
 * validation), and n == 0 gives the empty update {0, 0}.
 *
 * Memory: a few words per struct run and per delete range of the inputs,
 * freed before returning; nothing is sized by a length field.
 * Returns 0, or -1 and sets *err (when not NULL); `out` is unchanged then.
 */
int yjs_merge(const slice *updates, size_t n, buf *out, const char **err);

#endif
