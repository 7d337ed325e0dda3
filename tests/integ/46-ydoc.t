#!/usr/bin/env bash
# 46-ydoc.t - collaborative notes end to end (issue 5, catalogue section 6):
# real Redis, Postgres, two gateways, two workers, and Y.Doc editors built
# on the real `yjs` and `socket.io-client` (clients/ydoc-client.js) that
# speak the ydoc:* events as Open WebUI's front end does.
#
# Checked: one seeder when two editors open an empty note on different
# gateways at once (sessions are cluster-wide); concurrent random edits
# through both gateways converge, with number-array and binary updates; a
# late joiner's state has the content of Y.mergeUpdates of everything that
# was sent, including updates appended straight into the log while the
# workers compact it (nothing lost), and the log stays bounded; joined/left
# on join, leave, disconnect, a killed client and a dead gateway; forged
# user ids replaced; refusals (no grant, read-only, not joined, not a note)
# deliver and store nothing; the note's content is saved once after a quiet
# period of 0.5 s, merged into note.data, also when the worker that had it
# pending is killed (the second worker takes the shards over and saves it);
# keys expire when unused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 150

. "$(dirname "$0")/worker.sh"
export CLIENT_TIMEOUT=120
start_db_stack
start_gateway gw1 || bail "gateway gw1 starts"
start_gateway gw2 || bail "gateway gw2 starts"
P=$PREFIX
q_sql() { psql_q "$1" owui; }
U1=$(gw_url gw1)
U2=$(gw_url gw2)
LOG=$P:ydoc:note:n1:log
SIDS=$P:ydoc:note:n1:sids

now_s=$(date +%s)
q_sql "
INSERT INTO \"user\" (id, name, email, role, created_at, updated_at) VALUES
  ('u1','Alice','a@x','user',$now_s,$now_s), ('u2','Bob','b@x','user',$now_s,$now_s),
  ('u3','Carol','c@x','user',$now_s,$now_s), ('u4','Dan','d@x','user',$now_s,$now_s),
  ('u5','Eve','e@x','user',$now_s,$now_s);
INSERT INTO note (id, user_id, title, data, created_at, updated_at) VALUES
  ('n1','u1','shared','{\"content\":{\"md\":\"old\"},\"files\":[1]}',1,1);
INSERT INTO \"group\" (id, user_id, name, created_at, updated_at) VALUES ('g1','u1','team',1,1);
INSERT INTO group_member (id, group_id, user_id, created_at, updated_at) VALUES ('gm1','g1','u5',1,1);
INSERT INTO access_grant (id, resource_type, resource_id, principal_type, principal_id, permission, created_at) VALUES
  ('a1','note','n1','user','u2','read',1), ('a2','note','n1','user','u2','write',1),
  ('a3','note','n1','user','u3','read',1),
  ('a4','note','n1','group','g1','read',1), ('a5','note','n1','group','g1','write',1);
" >/dev/null || bail "seed data inserted"

# w1 starts alone and takes every shard; w2 joins and they share them.
owned_by() { for i in $(seq 0 15); do rcli GET "$P:lease:$i"; done | grep -c "^$1\$"; }
holds_all() { [ "$(owned_by "$1")" = 16 ]; }
worker_start w1 TIDINGS_LEASE_MS=2000 TIDINGS_YDOC_COMPACT_AT=20 TIDINGS_LOG_LEVEL=debug
check "worker w1 takes the 16 shards" wait_until 10 holds_all w1
worker_start w2 TIDINGS_LEASE_MS=2000 TIDINGS_YDOC_COMPACT_AT=20 TIDINGS_LOG_LEVEL=debug

editor() { # NAME GATEWAY_URL USER [ARGS...]
	local name=$1 url=$2 user=$3
	shift 3
	node_client "$name" ydoc-client.js --url "$url" --token "$(token "$user")" --doc note:n1 "$@"
}
cmd() { client_send "$1" "$2"; }
# dump_now NAME...: each client prints its document now.
dump_now() {
	local c n
	for c in "$@"; do
		n=$(count_lines "$c" '"t":"dump"')
		cmd "$c" '{"cmd":"dump"}'
		client_wait "$c" '"t":"dump"' $((n + 1)) 5 || return 1
	done
}
last_dump() { q "JSON.stringify((({text, side, sv}) => ({text, side, sv}))(L.filter(l => l.t === 'dump').pop() || {}))" "$1"; }
last_text() { q "JSON.stringify((L.filter(l => l.t === 'dump').pop() || {}).text)" "$1"; }
# converged NAME...: every named client's note reads the same. (Only
# editors that joined after the direct appends hold those, in another type.)
converged() {
	local first c
	dump_now "$@" || return 1
	first=$(last_text "$1")
	for c in "${@:2}"; do [ "$(last_text "$c")" = "$first" ] || return 1; done
}
# same_docs NAME...: identical documents, state vectors included.
same_docs() {
	local first c
	dump_now "$@" || return 1
	first=$(last_dump "$1")
	for c in "${@:2}"; do [ "$(last_dump "$c")" = "$first" ] || return 1; done
}
state_of() { q "JSON.stringify((({text, side, sv}) => ({text, side, sv}))(L.filter(l => l.t === 'state').pop() || {}))" "$1"; }
merged_of() { # content of Y.mergeUpdates of what the named clients sent
	local f=() n
	for n in "$@"; do f+=("$TMP/$n.out"); done
	timeout 30 "$NODE" "$CLIENTS/ydoc-client.js" merge "${f[@]}" |
		timeout 10 "$NODE" "$CLIENTS/q.js" "JSON.stringify((({text, side, sv}) => ({text, side, sv}))(L[0]))" -
}
# An update from a Y.Doc of its own, as a JSON byte array.
foreign_update() {
	timeout 10 "$NODE" -e "const Y=require('$TOP/tests/node_modules/yjs');const d=new Y.Doc();d.getText('side').insert(0,process.argv[1]);console.log(JSON.stringify(Array.from(Y.encodeStateAsUpdate(d))))" "$1"
}
sid_of() { client_sid "$1" "${2:-1}"; }

# ---- two editors open the empty note at once, on different gateways
editor A "$U1" u1 --name Alice --initial Hello
editor B "$U2" u2 --name Bob --initial Hello --binary
for c in A B; do client_wait "$c" '"t":"state"' 1 10 || fail "editor $c gets the document's state"; done
is "$(q "L.filter(l => l.t === 'state' && l.seeded).length" A B)" 1 "exactly one of them seeds the note (sessions are cluster-wide)"
SA=$(sid_of A)
SB=$(sid_of B)
is "$(q "JSON.stringify(L.filter(l => l.t === 'state').map(l => l.sessions.length).sort())" A B)" "[1,2]" \
	"the first joiner sees one session, the second both"
check "the second joiner's sessions name the first, on the other gateway" \
	qtest "L.filter(l => l.t === 'state' && l.sessions.length === 2).every(l => l.sessions.includes('$SA') && l.sessions.includes('$SB'))" A B
check "editors converge on the seeded content" wait_until 10 converged A B
like "$(last_dump A)" '^\{"text":"<paragraph>Hello</paragraph>"' "the seed is in the document once"
first=$([ "$(q "L.filter(l => l.t === 'state' && l.sessions.length === 1).length" A)" = 1 ] && echo A || echo B)
second=$([ "$first" = A ] && echo B || echo A)
suser=$([ "$second" = A ] && echo u1 || echo u2)
sname=$([ "$second" = A ] && echo Alice || echo Bob)
check "the first joiner is told of the second: ydoc:user:joined with the verified id and the name from the database" \
	client_wait_q "$first" "ev('ydoc:user:joined').some(x => x[0].document_id === 'note:n1' && x[0].user_id === '$suser' && x[0].user_name === '$sname' && x[0].user_color === '#4ECDC4')" 5
is "$(q "ev('ydoc:user:joined').length" "$second")" 0 "the joiner is not told of itself"
check "the second joiner's awareness reaches the first with the verified user id" \
	client_wait_q "$first" "ev('ydoc:awareness:update').some(x => x[0].user_id === '$suser' && x[0].update.includes('\"$sname\"'))" 5
is "$(q "ev('ydoc:awareness:update').filter(x => x[0].user_id !== '$suser').length" "$first")" 0 "never with the client-supplied one"

# ---- concurrent random edits through both gateways, a third editor
# allowed through a group grant, and a second writer appending straight into
# the log while the workers compact it
editor C "$U2" u5 --name Eve
client_wait C '"t":"state"' 1 10 || fail "editor C (group grant) gets the state"
check "C converges" wait_until 10 converged A B C
run_client pusher 60 "$NODE" "$CLIENTS/ydoc-client.js" push "$REDIS_PORT" "$LOG" 1200 7 &
PUSHER=$!
wait_until 10 has_lines pusher '"t":"sent"' 50 || fail "the second writer starts"
cmd A '{"cmd":"edit","n":60,"seed":11,"gap_ms":4}'
cmd B '{"cmd":"edit","n":60,"seed":22,"gap_ms":4}'
cmd C '{"cmd":"edit","n":60,"seed":33,"gap_ms":4}'
for c in A B C; do client_wait "$c" '"t":"edited"' 1 20 || fail "editor $c finished its edits"; done
wait "$PUSHER"
is "$?" 0 "a second writer appended straight into the log meanwhile ($(q "L.find(l => l.t === 'pushed').n" pusher) updates)"
cmd A '{"cmd":"insert","text":"after the storm"}'
if wait_until 15 same_docs A B C; then pass "three editors on two gateways converge after concurrent random edits"; else fail "three editors converge" "$(for c in A B C; do last_dump $c | cut -c1-300; done)"; fi
is "$(q "L.filter(l => l.t === 'got' && l.user_id === 'u2').every(l => l.binary) && L.filter(l => l.t === 'got' && l.user_id === 'u2').length > 0" A)" true \
	"B's updates reach A as binary attachments, as sent"
is "$(q "L.filter(l => l.t === 'got' && l.user_id === 'u1').every(l => !l.binary) && L.filter(l => l.t === 'got' && l.user_id === 'u1').length > 0" B)" true \
	"A's updates reach B as number arrays, as sent"
is "$(q "L.filter(l => l.t === 'got' && (l.user_id !== 'u2' || l.socket_id !== '$SB') && l.user_id !== 'u5' && l.user_id !== 'u1').length" A)" 0 \
	"updates carry the sender's verified user id and socket id"
nsent=$(q "L.filter(l => l.t === 'sent').length" A B C pusher)
check "the log is compacted: at most ~20 entries after $nsent updates" wait_until 10 bash -c "[ \$(timeout 5 redis-cli -p $REDIS_PORT LLEN $LOG) -le 25 ]"
ncompact=$(cat "$TMP/w1.log" "$TMP/w2.log" | grep -c 'update log compacted')
nraced=$(cat "$TMP/w1.log" "$TMP/w2.log" | grep -c 'update log compacted, [1-9][0-9]* entries appended')
if [ "$nraced" -ge 1 ]; then
	pass "$nraced of $ncompact compactions kept entries appended between their read and their rewrite"
else
	fail "some compactions raced with appends" "$ncompact compactions, none raced"
fi

# ---- a late joiner gets exactly what everybody sent, merged
editor L "$U1" u2 --name Bob2
client_wait L '"t":"state"' 1 10 || fail "the late joiner gets the state"
want=$(merged_of A B C pusher)
is "$(state_of L)" "$want" "the late joiner's state has the content of Y.mergeUpdates of all $nsent updates"
is "$(q "(L.find(l => l.t === 'state') || {sessions: []}).sessions.length" L)" 4 "its sessions list all four editors, both gateways"
is "$(rcli LLEN "$LOG")" 1 "the join left the log compacted into one update"

# ---- the same document spelled note_: one shard, one document
cmd L '{"cmd":"emit","event":"ydoc:document:state","args":[{"document_id":"note_n1"}]}'
check "a state request for note_n1 is answered for note:n1" client_wait L '"t":"state"' 2 5
is "$(ingress_dump | timeout 10 "$NODE" "$CLIENTS/q.js" "[...new Set(L.filter(l => /ydoc:/.test(l.fields.event || '') && /note[:_]n1/.test(l.fields.data || '')).map(l => l.stream))].length" -)" 1 \
	"every ydoc event of note:n1 and note_n1 went to one ingress shard"

# ---- a pending save survives its worker: the worker owning the note's
# shard is killed within the quiet period, the other takes the shards over
# and saves the note
SHARD=$(ingress_dump | timeout 10 "$NODE" "$CLIENTS/q.js" "L.find(l => /ydoc:/.test(l.fields.event || '')).stream.split(':').pop()" -)
VICTIM=$(rcli GET "$P:lease:$SHARD")
if [ "$VICTIM" = w1 ]; then SURV=w2; else SURV=w1; fi
eval "VPID=\$WPID_$VICTIM SPID=\$WPID_$SURV"
cmd A '{"cmd":"insert","text":"TAKEOVER-MARK"}'
sleep 0.2
kill -KILL "$VPID"
check "$SURV takes the shards over from $VICTIM (owner of the note's shard $SHARD)" wait_until 10 holds_all "$SURV"
check "the save left pending by the killed worker is done by the next owner" wait_until 8 bash -c \
	"psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT data::jsonb #>> '{content,md}' FROM note WHERE id='n1'\" | grep -q TAKEOVER-MARK"

# ---- persistence: saved once, 0.5 s after the last update with content
sleep 1
saves0=$(q_sql "SELECT count(*) FROM tidings_event WHERE kind = 'ydoc:document:update save'")
cmd A '{"cmd":"edit","n":8,"seed":44,"gap_ms":40}'
client_wait A '"t":"edited"' 2 10
cmd A '{"cmd":"insert","text":"FINAL-MARK"}'
check "the note's content is saved" wait_until 5 bash -c "psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT data::jsonb #>> '{content,md}' FROM note WHERE id='n1'\" | grep -q FINAL-MARK"
check "editors converge" wait_until 5 converged A B C L
md=$(q_sql "SELECT data::jsonb #>> '{content,md}' FROM note WHERE id='n1'")
is "$md" "$(q "L.filter(l => l.t === 'sent' && l.md !== undefined).pop().md" A)" "note.data.content.md is what the last update carried"
is "$(q_sql "SELECT data::jsonb -> 'files' FROM note WHERE id='n1'")" "[1]" "note.data is merged shallowly: other keys stay"
last_sent=$(q "L.filter(l => l.t === 'sent').pop().wall" A)
upd_ms=$(q_sql "SELECT updated_at / 1000000 FROM note WHERE id='n1'")
quiet=$((upd_ms - last_sent))
if [ "$quiet" -ge 450 ] && [ "$quiet" -le 3000 ]; then pass "saved after the quiet period ($quiet ms after the last update)"; else fail "saved after the quiet period" "$quiet ms"; fi
sleep 1
saves1=$(q_sql "SELECT count(*) FROM tidings_event WHERE kind = 'ydoc:document:update save'")
is "$((saves1 - saves0))" 1 "a burst of 9 updates 40 ms apart is saved once"

# ---- refusals
got0=$(q "L.filter(l => l.t === 'got').length" A C L)
UPD=$(foreign_update NOGRANT-MARK)
editor D "$U1" u4 --name Dan
client_wait D '"t":"connect"' 1 10
cmd D "{\"cmd\":\"emit\",\"event\":\"ydoc:document:update\",\"args\":[{\"document_id\":\"note:n1\",\"update\":$UPD}]}"
cmd D '{"cmd":"emit","event":"ydoc:document:state","args":[{"document_id":"note:n1"}]}'
RO=$(foreign_update RO-MARK)
editor R "$U2" u3 --name Carol
check "a read-only user joins and gets the state" client_wait R '"t":"state"' 1 10
cmd R "{\"cmd\":\"emit\",\"event\":\"ydoc:document:update\",\"args\":[{\"document_id\":\"note:n1\",\"update\":$RO,\"data\":{\"content\":{\"md\":\"RO-MARK\"}}}]}"
LEFT=$(foreign_update LEFT-MARK)
cmd B '{"cmd":"leave"}'
check "a leave tells the others: ydoc:user:left with the verified id" \
	client_wait_q A "ev('ydoc:user:left').some(x => x[0].document_id === 'note:n1' && x[0].user_id === 'u2')" 5
is "$(rcli HEXISTS "$SIDS" "$SB")" 0 "the leaver's session is gone"
cmd B "{\"cmd\":\"emit\",\"event\":\"ydoc:document:update\",\"args\":[{\"document_id\":\"note:n1\",\"update\":$LEFT}]}"
cmd A '{"cmd":"emit","event":"ydoc:document:join","args":[{"document_id":"chat:c1","user_id":"u1"}]}'
cmd A '{"cmd":"emit","event":"ydoc:document:join","args":[{"document_id":"note:n1/../x"}]}'
cmd A '{"cmd":"emit","event":"ydoc:document:update","args":[{"document_id":"note:n1","update":[1,2,3,250]}]}'
sleep 1.5
is "$(count_lines D '"t":"state"')" 0 "a user without a grant gets no state"
is "$(q "ev('ydoc:user:joined').filter(x => x[0].user_id === 'u4').length" A B C L)" 0 "nobody is told of a refused joiner"
is "$(q "L.filter(l => l.t === 'got').length" A C L)" "$got0" \
	"updates without write access, from a socket that left, or invalid are forwarded to nobody"
is "$(q "L.filter(l => l.t === 'got' && (l.user_id === 'u3' || l.user_id === 'u4')).length" A C L)" 0 \
	"not even before"
is "$(count_lines A '"t":"state"'),$(q "ev('error').length" A)" "1,0" \
	"joins of non-note documents and malformed ids are answered with nothing"
is "$(q "L.filter(l => l.t === 'got' && l.len === 4).length" C L)" 0 "an invalid update is forwarded to nobody"
check "the worker logs the refusals" grep -q "refused: not a note document" "$TMP/w1.log" "$TMP/w2.log"
is "$(q_sql "SELECT data::jsonb #>> '{content,md}' LIKE '%RO-MARK%' FROM note WHERE id='n1'")" f "a read-only user's content is not saved"
editor L2 "$U2" u1 --name Alice2
client_wait L2 '"t":"state"' 1 10 || fail "a second late joiner gets the state"
side_pushed=$(timeout 30 "$NODE" "$CLIENTS/ydoc-client.js" merge "$TMP/pusher.out" |
	timeout 10 "$NODE" "$CLIENTS/q.js" "JSON.stringify(L[0].side)" -)
is "$(q "JSON.stringify((L.find(l => l.t === 'state') || {}).side)" L2)" "$side_pushed" \
	"refused updates are not in the stored state (no NOGRANT/RO/LEFT marks)"
is "$(state_of L2)" "$(merged_of A B C L pusher)" "the stored state is still exactly everything accepted"

# ---- access checked at use time: a joined reader whose grant is removed
# is put out of the document at its next event
SR=$(sid_of R)
is "$(rcli HEXISTS "$SIDS" "$SR")" 1 "the reader has a session"
q_sql "DELETE FROM access_grant WHERE id='a3'" >/dev/null
cmd R '{"cmd":"emit","event":"ydoc:document:state","args":[{"document_id":"note:n1"}]}'
check "a reader whose grant was removed loses its session at its next event" wait_until 5 bash -c \
	"[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HEXISTS $SIDS $SR)\" = 0 ]"
check "the others get ydoc:user:left for it" \
	client_wait_q A "ev('ydoc:user:left').some(x => x[0].document_id === 'note:n1' && x[0].user_id === 'u3')" 5
nR=$(q "L.filter(l => l.t === 'got').length" R)
cmd A '{"cmd":"insert","text":"AFTER-REVOKE"}'
check "the editors still get each other's updates" client_wait_q L2 "L.some(l => l.t === 'got' && l.user_id === 'u1')" 10
sleep 0.5
is "$(q "L.filter(l => l.t === 'got').length" R)" "$nR" "the reader put out gets no more updates"

# ---- disconnects: a reconnecting editor, a killed one
cmd B '{"cmd":"disconnect"}'
client_wait B '"t":"disconnect"' 1 5
cmd B '{"cmd":"connect"}'
check "B reconnects with a new socket and rejoins" client_wait B '"t":"state"' 2 10
cmd B '{"cmd":"edit","n":10,"seed":55,"gap_ms":5}'
client_wait B '"t":"edited"' 2 10
check "after a reconnect everybody converges again" wait_until 10 converged A B C L L2
SC=$(sid_of C)
nleft=$(q "ev('ydoc:user:left').filter(x => x[0].user_id === 'u5').length" A)
kill -KILL "$(pgrep -P "${CLIENT_PID[C]}" node)"
check "a killed editor's disconnect sends ydoc:user:left" \
	client_wait_q A "ev('ydoc:user:left').filter(x => x[0].user_id === 'u5').length > $nleft" 10
check "and removes its session" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HEXISTS $SIDS $SC)\" = 0 ]"
is "$(rcli SCARD "$P:ydoc:sid:$SC")" 0 "and its list of documents"

# ---- a dead gateway's sessions disappear
gw2_sids=$(q "[...new Set(L.filter(l => l.t === 'connect').map(l => l.id))].join(' ')" B R L2)
kill -KILL "${GW_PID[gw2]}"
rcli DEL "$P:gw:gw2:alive" >/dev/null # what 15 s without a refresh does
nl=$(count_lines A '"t":"state"')
cmd A '{"cmd":"state"}'
client_wait A '"t":"state"' $((nl + 1)) 5
GW_PID[gw2]=
is "$(q "JSON.stringify(L.filter(l => l.t === 'state').pop().sessions.sort())" A)" "$(q "JSON.stringify(['$SA', '$(sid_of L)'].sort())" A)" \
	"sessions held by a dead gateway are dropped from the state answer"
check "the others are told they left" client_wait_q A "ev('ydoc:user:left').some(x => x[0].user_id === 'u3')" 5
is "$(for s in $gw2_sids; do rcli HEXISTS "$SIDS" "$s"; done | sort -u | tr -d '\n')" 0 "and their session entries are removed"

# ---- keys expire when unused
ttl=$(rcli PTTL "$LOG")
if [ "$ttl" -gt 3600000 ]; then pass "a log in use lives a day from its last use"; else fail "a log in use lives a day" "PTTL $ttl"; fi
cmd L '{"cmd":"leave"}'
cmd A '{"cmd":"leave"}'
check "the last leave makes the log expire within a minute" wait_until 5 bash -c "t=\$(timeout 5 redis-cli -p $REDIS_PORT PTTL $LOG); [ \$t -gt 0 ] && [ \$t -le 60000 ]"
check "no save is left pending" wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT EXISTS $P:ydoc:note:n1:save)\" = 0 ]"

for c in A B D R L L2; do client_stop "$c"; done
stop_pid "$SPID" 10
like "$(tail -n 3 "$TMP/$SURV.log")" 'stopped' "worker $SURV stops cleanly"
is "$(grep -cE 'Sanitizer|runtime error' "$TMP/w1.log" "$TMP/w2.log" | awk -F: '{s += $2} END {print s}')" 0 "no sanitizer report from the workers"
check_gateway_stop gw1
done_testing
