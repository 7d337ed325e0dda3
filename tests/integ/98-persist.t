#!/usr/bin/env bash
# Producer emits with update_db, end to end: POST /api/v1/emit -> ingress ->
# worker -> Postgres (and to the user's sockets). Checked in SQL: each type's
# effect on the chat JSON and its chat_message mirror, an idempotency key
# used twice, and two producers emitting to one message at once losing
# nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

. "$(dirname "$0")/worker.sh"
start_db_stack
KEY=k$RANDOM
start_gateway gw1 TIDINGS_API_KEY=$KEY || bail "gateway starts"
sql() { psql_q "$1" owui; }
sql "INSERT INTO \"user\" (id, name, email, role) VALUES ('u1','Alice','a@x','user'), ('u2','Bob','b@x','user');
INSERT INTO chat (id, user_id, title, chat, created_at, updated_at) VALUES
 ('chat1','u1','t','{\"history\":{\"currentId\":\"m1\",\"messages\":{\"m1\":{\"id\":\"m1\",\"role\":\"assistant\",\"content\":\"Hi\"}}}}',1,1);" >/dev/null
# The worker takes Open WebUI's own DATABASE_URL form (a SQLAlchemy driver).
DB_PLAIN=$DB
DB=${DB/postgresql:/postgresql+psycopg:}
worker_start w1
DB=$DB_PLAIN
WPID=$WPID_w1

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token u1)"
client_wait a '"t":"connect"' 1 10 || bail "client connects"
post() { curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" --data "$1" "$(admin_url gw1)/api/v1/emit"; }
ev() { printf '{"event":"events","to":{"user":"%s"},"update_db":true%s,"data":{"chat_id":"%s","message_id":"m1","data":{"type":"%s","data":%s}}}' "$1" "${5:+,\"id\":\"$5\"}" "$2" "$3" "$4"; }
msg() { sql "SELECT chat::jsonb #> '{history,messages,m1,$1}' FROM chat WHERE id='chat1'"; }

is "$(post "$(ev u1 chat1 status '{"description":"searching","done":false}')")" 202 "status emitted"
is "$(post "$(ev u1 chat1 message '{"content":" there"}')")" 202 "message emitted"
is "$(post "$(ev u1 chat1 source '{"source":{"name":"doc","url":"https://x"},"document":["d"]}')")" 202 "source emitted"
is "$(post "$(ev u1 chat1 files '{"files":[{"id":"f1"}]}')")" 202 "files emitted"
check "the user's socket got the events too" client_wait_q a "ev('events').filter(x => x[0].chat_id === 'chat1').length >= 4" 10
check "status appended to statusHistory" wait_until 10 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::jsonb #>> '{history,messages,m1,statusHistory,0,description}' FROM chat WHERE id='chat1'\")\" = searching ]"
check "message content appended" wait_until 10 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::jsonb #>> '{history,messages,m1,content}' FROM chat WHERE id='chat1'\")\" = 'Hi there' ]"
check "source appended to sources" wait_until 10 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::jsonb #>> '{history,messages,m1,sources,0,source,name}' FROM chat WHERE id='chat1'\")\" = doc ]"
check "files set" wait_until 10 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::jsonb #>> '{history,messages,m1,files,0,id}' FROM chat WHERE id='chat1'\")\" = f1 ]"
is "$(sql "SELECT status_history::jsonb #>> '{0,description}' FROM chat_message WHERE id='chat1-m1'")" searching "status mirrored into chat_message.status_history"
is "$(sql "SELECT content::jsonb #>> '{}' FROM chat_message WHERE id='chat1-m1'")" "Hi there" "content mirrored into chat_message"

# addressed to a socket or to the user's room: persisted for the chat's owner
SA=$(client_sid a)
is "$(post "{\"event\":\"events\",\"to\":{\"sid\":\"$SA\"},\"update_db\":true,\"data\":{\"chat_id\":\"chat1\",\"message_id\":\"m1\",\"data\":{\"type\":\"status\",\"data\":{\"description\":\"via-sid\"}}}}")" 202 "status emitted to a socket"
is "$(post "$(ev u1 chat1 status '{"description":"via-room"}' | sed 's/{"user":"u1"}/{"room":"user:u1"}/')")" 202 "status emitted to the room user:u1"
for w in via-sid via-room; do
	check "the emit $w is persisted" wait_until 10 bash -c "psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::text FROM chat WHERE id='chat1'\" | grep -q $w"
done
check "and delivered to the socket" client_wait_q a "ev('events').some(x => x[0].data.data.description === 'via-sid')" 10

# another user's chat: delivered to that user, nothing written
before=$(sql "SELECT md5(chat::text) FROM chat WHERE id='chat1'")
is "$(post "$(ev u2 chat1 status '{"description":"forged"}')")" 202 "emit naming another user's chat accepted (delivery only)"
sleep 1
is "$(sql "SELECT md5(chat::text) FROM chat WHERE id='chat1'")" "$before" "another user's emit does not touch the chat"

# the same idempotency key twice: one effect
n0=$(msg statusHistory | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).length)')
post "$(ev u1 chat1 status '{"description":"once"}' idem-1)" >/dev/null
post "$(ev u1 chat1 status '{"description":"once"}' idem-1)" >/dev/null
check "the keyed status lands" wait_until 10 bash -c "psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT chat::text FROM chat WHERE id='chat1'\" | grep -q once"
sleep 1
is "$(msg statusHistory | node -e 'const a=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(a.filter(s=>s.description==="once").length)')" 1 "the same id twice has one effect"

# two producers, 50 statuses each, at once: none lost
for p in A B; do
	(for i in $(seq 1 50); do post "$(ev u1 chat1 status "{\"description\":\"$p$i\"}")" >/dev/null; done) &
done
wait_producers() { [ "$(msg statusHistory | node -e 'const a=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(a.filter(s=>/^[AB][0-9]+$/.test(s.description)).length)')" = 100 ]; }
check "two concurrent producers: all 100 statuses persisted" wait_until 30 wait_producers
order=$(msg statusHistory | node -e 'const a=JSON.parse(require("fs").readFileSync(0,"utf8")).map(s=>s.description);const ok=["A","B"].every(p=>{const n=a.filter(d=>d&&d[0]===p).map(d=>+d.slice(1));return n.every((v,i)=>v===i+1)});console.log(ok)')
is "$order" true "each producer's statuses in the order it sent them"
is "$(sql "SELECT json_array_length(status_history) = json_array_length(chat::json #> '{history,messages,m1,statusHistory}') FROM chat_message cm JOIN chat c ON c.id = cm.chat_id WHERE cm.id='chat1-m1'")" t "the mirror holds exactly the same statuses"

# ---- a backlog, merged: the worker folds a batch's updates per message
# into one statement each (worker/persist.h). Written while the worker is
# stopped, so it reads them as few large batches.
shard=$(node -e 'let h=2166136261;for(const c of Buffer.from("chat:chat1")){h^=c;h=Math.imul(h,16777619)>>>0}console.log(h%16)')
raw() { # id message type data: an emit entry as the gateway writes it
	local d="{\"chat_id\":\"chat1\",\"message_id\":\"$2\",\"data\":{\"type\":\"$3\",\"data\":$4}}"
	printf 'XADD %s:ingress:%s * v 1 id %s kind emit event events to_type user to u1 update_db 1 data "%s"\n' \
		"$PREFIX" "$shard" "$1" "${d//\"/\\\"}"
}
burst() { # prefix: 200 updates to m1 and to mb (created by its first source)
	raw "$1-0" mb status '{"b":"early"}'
	for i in $(seq 1 200); do
		case $((i % 10)) in
		[0-5]) raw "$1-$i" m1 status "{\"b\":\"$1\",\"i\":$i}" ;;
		[6-8]) raw "$1-$i" m1 message "{\"content\":\"<$i>\"}" ;;
		9) raw "$1-$i" mb source "{\"source\":{\"id\":\"$1$i\"}}" ;;
		esac
	done
}
content0=$(sql "SELECT chat::jsonb #>> '{history,messages,m1,content}' FROM chat WHERE id='chat1'")
kill -STOP "$WPID"
burst B | timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
kill -CONT "$WPID"
check "a backlog of 201 updates is applied" wait_until 20 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(*) FROM tidings_event WHERE id LIKE 'B-%'\")\" = 201 ]"
like "$(sql "SELECT count(DISTINCT applied_at) FROM tidings_event WHERE id LIKE 'B-%'")" '^[1-9]$' "in a few transactions"
want=$(for i in $(seq 1 200); do case $((i % 10)) in [6-8]) printf '<%d>' "$i" ;; esac; done)
is "$(sql "SELECT chat::jsonb #>> '{history,messages,m1,content}' FROM chat WHERE id='chat1'")" "$content0$want" "message updates appended in order"
is "$(msg statusHistory | node -e 'const a=JSON.parse(require("fs").readFileSync(0,"utf8")).filter(s=>s.b==="B").map(s=>s.i);console.log(a.length, a.every((v,i)=>i===0||v>a[i-1]))')" "120 true" "status updates appended in order"
is "$(sql "SELECT concat_ws('|', jsonb_array_length(m -> 'sources'), m -> 'sources' -> 0 -> 'source' ->> 'id', m ? 'statusHistory', m ->> 'role') FROM (SELECT chat::jsonb #> '{history,messages,mb}' AS m FROM chat WHERE id='chat1') x")" "20|B9|f|assistant" \
	"the first source created mb; the status before it found no message"
is "$(sql "SELECT bool_and(cm.content::jsonb = j -> 'content' AND cm.status_history::jsonb IS NOT DISTINCT FROM j -> 'statusHistory' AND cm.sources::jsonb IS NOT DISTINCT FROM j -> 'sources') FROM chat_message cm JOIN LATERAL (SELECT chat::jsonb #> ARRAY['history','messages',substr(cm.id, 7)] AS j FROM chat WHERE id='chat1') x ON true WHERE cm.id IN ('chat1-m1','chat1-mb')")" t "the mirror rows equal the chat's messages"
is "$(grep -c 'applying one by one' "$TMP/w1.log")" 0 "no batch had to be applied one by one"
# The worker's session stores what it rewrites with lz4 (its default
# TIDINGS_TOAST_COMPRESSION); the chat, kilobytes now, is compressed.
like "$(sql "SELECT octet_length(chat::text) FROM chat WHERE id='chat1'")" '^[0-9]{4,}$' "the chat is kilobytes"
is "$(sql "SELECT pg_column_compression(chat) FROM chat WHERE id='chat1'")" lz4 "the worker's rewrite of it is lz4-compressed"
is "$(grep -c 'default_toast_compression' "$TMP/w1.log")" 0 "the server took the setting"

# A backlog holding an event applied before (the id idem-1): its batch
# fails as a whole and is applied one entry at a time; everything lands
# once.
kill -STOP "$WPID"
{
	burst C
	raw idem-1 m1 status '{"description":"once"}'
} | timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
kill -CONT "$WPID"
check "a backlog with a redelivered event is applied" wait_until 30 bash -c "[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(*) FROM tidings_event WHERE id LIKE 'C-%'\")\" = 201 ]"
check "its batch was applied one by one" wait_until 10 grep -q 'holds events applied before' "$TMP/w1.log"
is "$(msg statusHistory | node -e 'const a=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(a.filter(s=>s.b==="C").length, a.filter(s=>s.description==="once").length)')" "120 1" "every update once, the redelivered one not again"
is "$(sql "SELECT jsonb_array_length(chat::jsonb #> '{history,messages,mb,sources}') FROM chat WHERE id='chat1'")" 40 "sources: 20 more"

# events:note with update_db: the note row follows the emitted model
sql "INSERT INTO note (id, user_id, title, data, meta, created_at, updated_at) VALUES ('n1','u1','old','{\"content\":{\"md\":\"a\"},\"files\":[]}','{}',1,1)" >/dev/null
is "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" --data '{"event":"events:note","to":{"room":"note:n1"},"update_db":true,"data":{"id":"n1","user_id":"u1","title":"new","data":{"content":{"md":"b"}},"updated_at":1700000000000000000}}' "$(admin_url gw1)/api/v1/emit")" 202 "events:note emitted with update_db"
check "the note's title is replaced and data merged shallowly" wait_until 10 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT title || '|' || (data::jsonb #>> '{content,md}') || '|' || (data::jsonb ? 'files')::text || '|' || updated_at FROM note WHERE id='n1'\")\" = 'new|b|true|1700000000000000000' ]"

# A compression the server has no name for is refused before starting.
out=$(env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 DATABASE_URL="$DB" TIDINGS_TOAST_COMPRESSION=zstd "$WORKER" 2>&1)
is "$?" 2 "TIDINGS_TOAST_COMPRESSION=zstd: the worker exits 2"
like "$out" "toast-compression: 'zstd' is not lz4, pglz or empty" "and says why"

client_stop a
stop_pid $WPID 10
check_gateway_stop gw1
done_testing
