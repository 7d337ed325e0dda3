#!/usr/bin/env bash
# 45-yjs-merge.t - common/yjs.c's merge against the real yjs from npm.
#
# clients/yjs-gen.js plays random collaborative editing sessions (a TipTap
# note over Y.XmlFragment, Y.Text with emoji, Y.Map, Y.Array, partial syncs,
# whole-state snapshots) and records every update; the C driver (the unit
# test binary, build/tests/unit/common/yjs, in batch mode) merges them: all
# of them shuffled and reversed, random subsets with duplicates, merges of
# its own merges with more updates, and a server-like compaction chain. The
# checker applies each C merge to a fresh Y.Doc and compares the document
# with one that applied the same updates one by one and with one that
# applied Y.mergeUpdates of the same inputs; state vectors are compared with
# Y.encodeStateVectorFromUpdate. Real updates then go through the hostile-
# input checks (every truncation, random corruptions) under ASan.
#
# TIDINGS_YJS_SEEDS sets the number of sessions (default 240).
. "$(dirname "$0")/lib.sh"
watchdog 120

DRV=$TOP/build/tests/unit/common/yjs
GEN=$CLIENTS/yjs-gen.js
SEEDS=${TIDINGS_YJS_SEEDS:-240}
[ -x "$DRV" ] || bail "the yjs driver is built" "make build/tests/unit/common/yjs"
[ -d "$TOP/tests/node_modules/yjs" ] || bail "yjs is installed" "run: (cd tests && npm ci)"
export ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

mkdir -p "$TMP/yjs"
t0=$(now_ms)
timeout 60 "$NODE" "$GEN" gen "$TMP/yjs" 0 "$SEEDS" >"$TMP/plan.txt" 2>"$TMP/gen.err"
is "$?" 0 "yjs-gen.js recorded $SEEDS editing sessions"
nupd=$(find "$TMP/yjs" -name 'u*.bin' | wc -l)
njobs=$(grep -c '^merge ' "$TMP/plan.txt")
diag "$nupd updates, $njobs merges ($(($(now_ms) - t0)) ms)"

t0=$(now_ms)
timeout 60 "$DRV" batch <"$TMP/plan.txt" >"$TMP/merge.out" 2>"$TMP/merge.err"
is "$?" 0 "the C driver ran the whole plan"
is "$(grep -c '^ok ' "$TMP/merge.out")" "$(wc -l <"$TMP/plan.txt")" "every merge and state vector succeeded"
grep -v '^ok ' "$TMP/merge.out" | head -n 5 | while IFS= read -r l; do diag "$l"; done
is "$(grep -cE 'Sanitizer|runtime error' "$TMP/merge.err")" 0 "no sanitizer report"
diag "C merges: $(($(now_ms) - t0)) ms"

t0=$(now_ms)
timeout 90 "$NODE" "$GEN" check "$TMP/yjs" 0 "$SEEDS" >"$TMP/yjs-check.out" 2>"$TMP/check.err"
is "$?" 0 "the checker ran"
summary() { q "(L.find(l => l.summary) || {summary: {}}).summary.$1" yjs-check; }
is "$(summary seeds)" "$SEEDS" "all $SEEDS sessions checked"
is "$(summary jobs)" "$njobs" "all $njobs merges checked"
is "$(summary failures)" 0 "each C merge has the effect of its updates, as Y.mergeUpdates does"
q "L.filter(l => l.why).slice(0, 5).map(l => JSON.stringify(l).slice(0, 600)).join('\n')" yjs-check |
	while IFS= read -r l; do [ -n "$l" ] && diag "$l"; done
is "$(summary sv)" $((2 * SEEDS)) "state vectors equal Y.encodeStateVectorFromUpdate"
diag "byte-identical to Y.mergeUpdates: $(summary same_bytes) of $njobs (the rest differ in" \
	"which copy of a clock range wins a tie); order-dependent in Yjs itself:" \
	"$(summary order_dependent) ($(($(now_ms) - t0)) ms)"

# Hostile input, on real updates: the biggest merges and a few originals.
find "$TMP/yjs" -name 'm0.bin' -size +1k | head -n 12 | sed 's/^/hostile /' >"$TMP/hostile.txt"
find "$TMP/yjs/1" -name 'u*.bin' | head -n 8 | sed 's/^/hostile /' >>"$TMP/hostile.txt"
timeout 60 "$DRV" batch <"$TMP/hostile.txt" >"$TMP/hostile.out" 2>>"$TMP/merge.err"
is "$?" 0 "hostile-input checks ran"
is "$(grep -c '^ok ' "$TMP/hostile.out")" "$(wc -l <"$TMP/hostile.txt")" \
	"real updates: every truncation refused, corruptions merged exactly when valid"
grep -v '^ok ' "$TMP/hostile.out" | head -n 5 | while IFS= read -r l; do diag "$l"; done
is "$(grep -cE 'Sanitizer|runtime error' "$TMP/merge.err")" 0 "no sanitizer report"
done_testing
