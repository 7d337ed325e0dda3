#!/usr/bin/env bash
# The worker end to end (issue 3): real Redis, Postgres, gateways, workers
# and socket.io-client. Each client event's database effect is checked in
# SQL and its fan-out at the clients; refusals change nothing and deliver
# nothing; producer emits reach their target; redelivery has one effect; a
# killed worker's shards are taken over; a gateway without members of a
# room gets no delivery entry for it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

. "$(dirname "$0")/worker.sh"
start_db_stack
KEY=k$RANDOM
start_gateway gw1 TIDINGS_API_KEY=$KEY || bail "gateway gw1 starts"
start_gateway gw2 || bail "gateway gw2 starts"
start_gateway gw3 || bail "gateway gw3 starts"
start_gateway gw4 || bail "gateway gw4 starts"
P=$PREFIX
q_sql() { psql_q "$1" owui; }

# ---- seed: users, channels, grants, a chat, a note
now_s=$(date +%s)
q_sql "
INSERT INTO \"user\" (id, name, email, role, created_at, updated_at) VALUES
  ('u1','Alice','a@x','user',$now_s,$now_s), ('u2','Bob','b@x','user',$now_s,$now_s),
  ('u3','Pending','p@x','pending',$now_s,$now_s), ('u4','Dora','d@x','user',$now_s,$now_s);
INSERT INTO channel (id, user_id, type, name, created_at, updated_at) VALUES
  ('cstd','u1',NULL,'general',1,1), ('cgrp','u1','group','team',1,1), ('cgone','u1',NULL,'old',1,1);
UPDATE channel SET deleted_at = 5 WHERE id = 'cgone';
INSERT INTO channel_member (id, channel_id, user_id, is_active) VALUES
  ('m1','cgrp','u1',true), ('m2','cgrp','u2',false);
INSERT INTO access_grant (id, resource_type, resource_id, principal_type, principal_id, permission, created_at) VALUES
  ('g1','channel','cstd','user','u2','read',1), ('g2','channel','cgone','user','*','read',1);
INSERT INTO chat (id, user_id, title, chat, created_at, updated_at) VALUES
  ('chat1','u1','t','{\"history\":{\"messages\":{}}}',1,1);
INSERT INTO note (id, user_id, title, data, created_at, updated_at) VALUES ('n1','u1','note','{}',1,1);
INSERT INTO chat (id, user_id, title, chat, meta, created_at, updated_at) VALUES
  ('timer1','u1','t','{}','{\"internal\":true,\"type\":\"timer\",\"parent_chat_id\":\"chat1\",\"status\":\"pending\",\"cancel_on\":[\"chat.read\"]}',1,1),
  ('timer2','u1','t','{}','{\"internal\":true,\"type\":\"timer\",\"parent_chat_id\":\"chat1\",\"status\":\"pending\",\"cancel_on\":[]}',1,1);
" >/dev/null || bail "seed data inserted"

leases_of() { for i in $(seq 0 15); do rcli GET "$P:lease:$i"; done | grep -c "^$1\$"; }
worker_start w1 TIDINGS_LEASE_MS=2000 TIDINGS_HEARTBEAT_COALESCE_MS=0 TIDINGS_READ_COALESCE_MS=0
check "worker w1 takes all 16 shards" wait_until 10 bash -c "[ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w1\$') = 16 ]"
# worker.sh sets TIDINGS_WORKER_ADMIN_LISTEN to "": the internal port is
# off (it used to fall back to the default 127.0.0.1:8092).
is "$(grep -c 'internal port\|cannot listen' "$TMP/w1.log")" 0 "an empty TIDINGS_WORKER_ADMIN_LISTEN turns the internal port off"

U1=$(gw_url gw1)
U2=$(gw_url gw2)
emit() { client_send "$1" "{\"cmd\":\"emit\",\"event\":\"$2\",\"args\":[$3]${4:+,\"ack\":true,\"tag\":\"$4\"}}"; }

# ---- user-join: ack {id, name}, channel rooms as catalogue 8.4 says
node_client a sio-client.js --url "$U1" --token "$(token u1)"
node_client b sio-client.js --url "$U2" --token "$(token u2)"
node_client p sio-client.js --url "$(gw_url gw3)" --token "$(token u3)"
py_client py --url "$(gw_url gw4)" --token "$(token u1)"
for c in a b p py; do client_wait "$c" '"t":"connect"' 1 10 || fail "client $c connects"; done
T1=$(token u1)
emit a user-join "{\"auth\":{\"token\":\"$T1\"}}" uj
check "user-join is acked with {id, name} from the database" \
	client_wait_q a "L.some(l => l.t === 'ack' && l.tag === 'uj' && l.args[0].id === 'u1' && l.args[0].name === 'Alice')" 10
emit b user-join "{\"auth\":{\"token\":\"$(token u2)\"}}"
emit py user-join "{\"auth\":{\"token\":\"$T1\"}}" pyj
check "python-socketio's user-join is acked too" client_wait_q py "L.some(l => l.t === 'ack' && l.tag === 'pyj' && l.args[0].name === 'Alice')" 10
emit p user-join "{\"auth\":{\"token\":\"$(token u3)\"}}" pj
room() { rcli HGET "$P:room:$1" "$2"; }
check "u1's socket joined channel:cstd (owner) on gw1" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:cstd gw1)\" = 1 ]"
check "u1's socket joined channel:cgrp (active member)" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:cgrp gw1)\" = 1 ]"
check "u2's socket joined channel:cstd (read grant) on gw2" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:cstd gw2)\" = 1 ]"
sleep 0.5
is "$(room channel:cgrp gw2)" "" "u2 (inactive member) is not in channel:cgrp"
is "$(rcli EXISTS "$P:room:channel:cgone")" 0 "nobody joined the deleted channel"
is "$(q "L.filter(l => l.t === 'ack' && l.tag === 'pj').length" p)" 0 "a pending user's user-join gets no answer"

# ---- typing: to the channel, sender included, identity from the database
emit a events:channel '{"channel_id":"cstd","message_id":null,"user_id":"forged","data":{"type":"typing","data":{"typing":true}}}'
for c in a b py; do
	check "typing reaches $c with user {id,name,role} from the database" client_wait_q "$c" \
		"ev('events:channel').some(x => x[0].channel_id === 'cstd' && x[0].message_id === null && x[0].data.type === 'typing' && x[0].data.data.typing === true && x[0].user.id === 'u1' && x[0].user.name === 'Alice' && x[0].user.role === 'user')" 10
done
# refused: u2 types into cgrp (inactive) and into cgone (deleted)
emit b events:channel '{"channel_id":"cgrp","data":{"type":"typing","data":{"typing":true}}}'
emit b events:channel '{"channel_id":"cgone","data":{"type":"typing","data":{"typing":true}}}'
sleep 1
is "$(q "ev('events:channel').filter(x => x[0].channel_id !== 'cstd').length" a b)" 0 "typing into an inactive membership or a deleted channel is delivered to nobody"
is "$(XL=$(rcli XRANGE "$P:gw:gw3:dlv" - +); grep -c channel <<<"$XL")" 0 "gw3 (no member of the channel) got no delivery entry for it"

# ---- last_read_at (ns), heartbeat (s), events:chat (s) + chat:list
emit a events:channel '{"channel_id":"cgrp","message_id":null,"data":{"type":"last_read_at"}}'
emit a heartbeat '{}'
emit a events:chat '{"chat_id":"chat1","data":{"type":"last_read_at"}}'
emit b events:chat '{"chat_id":"chat1","data":{"type":"last_read_at"}}'
check "channel_member.last_read_at is set in nanoseconds" wait_until 5 bash -c \
	"[ \"\$(PGPASSWORD= psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT last_read_at > ${now_s}000000000 AND updated_at = last_read_at FROM channel_member WHERE id='m1'\")\" = t ]"
is "$(q_sql "SELECT last_read_at IS NULL FROM channel_member WHERE id='m2'")" t "the inactive member's row is untouched"
check "user.last_active_at is set in seconds" wait_until 5 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT last_active_at BETWEEN $now_s AND $now_s + 120 FROM \\\"user\\\" WHERE id='u1'\")\" = t ]"
check "chat.last_read_at is set in seconds by its owner" wait_until 5 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT last_read_at BETWEEN $now_s AND $now_s + 120 FROM chat WHERE id='chat1'\")\" = t ]"
check "the owner's tabs get events chat:list" client_wait_q a \
	"ev('events').some(x => x[0].chat_id === 'chat1' && x[0].data.type === 'chat:list' && x[0].data.data.chat_id === 'chat1' && x[0].data.data.last_read_at > 0)" 5
is "$(q "ev('events').filter(x => x[0].data && x[0].data.type === 'chat:list').length" b)" 0 "another user's events:chat changes nothing and tells nobody"
is "$(q_sql "SELECT meta::jsonb->>'status', meta::jsonb->>'timer_cancelled_by', (meta::jsonb->>'timer_cancelled_at')::bigint > ${now_s}000000000 FROM chat WHERE id='timer1'")" "cancelled|chat.read|t" "reading the chat cancels its timer chats set to cancel on read"
is "$(q_sql "SELECT meta::jsonb->>'status' FROM chat WHERE id='timer2'")" pending "a timer without cancel_on chat.read stays pending"

# ---- join-note: read access puts the socket in note:{id}
emit a join-note '{"note_id":"n1","auth":{"token":"x"}}'
emit b join-note '{"note_id":"note_n1","auth":{"token":"x"}}'
check "the owner joins note:n1" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:note:n1 gw1)\" = 1 ]"
sleep 0.5
is "$(room note:n1 gw2)" "" "a user without a grant does not (note_ spelling canonicalised)"

# ---- usage: the model's pool in Redis, with expiry
emit a usage '{"action":"chat","model":"llama3:8b","chat_id":"chat1"}'
check "usage puts the socket in the model's pool" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT ZSCORE $P:usage:llama3:8b $(client_sid a))\" != '' ]"
ttl=$(rcli PTTL "$P:usage:llama3:8b")
like "$ttl" '^[0-9]{3,5}$' "the pool expires when nobody pings ($ttl ms left)"
emit a usage '{"action":"chat","model":"bad model*"}'
sleep 0.5
is "$(rcli --scan --pattern "$P:usage:bad*" | wc -l)" 0 "a model id unfit for a key is dropped"

# ---- revocation at use time: a grant removed behind Tidings' back takes
# effect at the user's next heartbeat; a grant added likewise
q_sql "DELETE FROM access_grant WHERE id='g1'" >/dev/null
emit b heartbeat '{}'
check "u2's socket left channel:cstd after its grant was removed" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HEXISTS $P:room:channel:cstd gw2)\" = 0 ]"
emit a events:channel '{"channel_id":"cstd","message_id":"after-revoke","data":{"type":"typing","data":{}}}'
check "u1 still gets channel events" client_wait_q a "ev('events:channel').some(x => x[0].message_id === 'after-revoke')" 5
sleep 0.5
is "$(q "ev('events:channel').filter(x => x[0].message_id === 'after-revoke').length" b)" 0 "the removed user no longer receives them"
q_sql "INSERT INTO access_grant (id, resource_type, resource_id, principal_type, principal_id, permission, created_at) VALUES ('g1','channel','cstd','user','u2','read',1)" >/dev/null
emit b heartbeat '{}'
check "a grant given back is applied at the next heartbeat" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:cstd gw2)\" = 1 ]"

# ---- producer emits
post() { curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" --data "$1" "$(admin_url gw1)/api/v1/emit"; }
is "$(post '{"event":"events","to":{"room":"channel:cstd"},"data":{"n":"room"}}')" 202 "emit to a room accepted"
is "$(post '{"event":"events","to":{"user":"u2"},"data":{"n":"user"}}')" 202 "emit to a user accepted"
SA=$(client_sid a)
is "$(post "{\"event\":\"events\",\"to\":{\"sid\":\"$SA\"},\"data\":{\"n\":\"sid\"}}")" 202 "emit to a sid accepted"
check "room emit reaches u1 (gw1)" client_wait_q a "ev('events').some(x => x[0].n === 'room')" 5
check "room emit reaches u2 (gw2)" client_wait_q b "ev('events').some(x => x[0].n === 'room')" 5
check "user emit reaches u2" client_wait_q b "ev('events').some(x => x[0].n === 'user')" 5
check "sid emit reaches that socket" client_wait_q a "ev('events').some(x => x[0].n === 'sid')" 5
sleep 0.3
is "$(q "ev('events').filter(x => x[0].n === 'user').length" a)" 0 "the user emit did not reach u1"
is "$(q "ev('events').filter(x => x[0].n === 'sid').length" b)" 0 "the sid emit did not reach u2"

# ---- the same event id twice: one effect
for _ in 1 2; do
	rcli XADD "$P:ingress:3" '*' v 1 id dup-1 kind event gw gw1 sid "$SA" user u1 nsp / event events:chat \
		data '[{"chat_id":"chat1","data":{"type":"last_read_at"}}]' >/dev/null
done
check "both copies consumed" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT XPENDING $P:ingress:3 workers | head -1)\" = 0 ]"
is "$(q_sql "SELECT count(*) FROM tidings_event WHERE id='dup-1'")" 1 "one tidings_event row: one effect"

# ---- malformed entry: parked, the worker lives on
rcli XADD "$P:ingress:5" '*' v 9 garbage yes >/dev/null
check "a malformed entry is parked aside" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT XLEN $P:ingress:parked)\" -ge 1 ]"

# ---- failover: kill -9 w1, w2 takes the shards within the lease window
worker_start w2 TIDINGS_LEASE_MS=2000 TIDINGS_HEARTBEAT_COALESCE_MS=0 TIDINGS_READ_COALESCE_MS=0
# Two live workers share the shards: w1 hands half over while it keeps
# working, and no entry is stranded on the way.
for i in $(seq 1 30); do
	emit a events:channel "{\"channel_id\":\"cstd\",\"message_id\":\"rebal-$i\",\"data\":{\"type\":\"typing\",\"data\":{}}}"
	sleep 0.1
done
check "two live workers hold 8 shards each" wait_until 15 bash -c \
	"[ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w1\$') = 8 ] && [ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w2\$') = 8 ]"
check "every event sent while the shards moved was delivered" client_wait_q b \
	"new Set(ev('events:channel').filter(x => /^rebal-/.test(x[0].message_id)).map(x => x[0].message_id)).size === 30" 15
kill -KILL "$WPID_w1"
t0=$(now_ms)
emit a events:channel '{"channel_id":"cstd","message_id":"after-kill","data":{"type":"typing","data":{}}}'
if client_wait_q b "ev('events:channel').some(x => x[0].message_id === 'after-kill')" 15; then
	pass "after kill -9 of w1, w2 delivers the next event ($(($(now_ms) - t0)) ms)"
else
	fail "after kill -9 of w1, w2 delivers the next event"
fi
check "w2 holds every shard" wait_until 10 bash -c "[ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w2\$') = 16 ]"

# A worker that joins gets its share as soon as it is given back, not at its
# own next lease tick: w3's ticks are 5 s apart (a 15 s lease); w2 notices
# it at its own next tick (0.7 s) and gives the shards back when its
# blocking read returns (1 s), and w3 asks again every 0.5 s meanwhile.
# (w1 is dropped from the live set by hand: w3 would count it for two of
# its own leases.)
rcli ZREM "$P:workers" w1 >/dev/null
t0=$(now_ms)
worker_start w3 TIDINGS_LEASE_MS=15000 TIDINGS_HEARTBEAT_COALESCE_MS=0 TIDINGS_READ_COALESCE_MS=0
if wait_until 10 bash -c "[ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w3\$') = 8 ]"; then
	took=$(($(now_ms) - t0))
	if ((took < 3500)); then
		pass "a joining worker (lease ticks 5 s apart) holds its 8 shards within 3.5 s: ${took} ms"
	else
		fail "a joining worker (lease ticks 5 s apart) holds its 8 shards within 3.5 s" "took ${took} ms"
	fi
else
	fail "a joining worker holds its 8 shards within 10 s"
fi
emit a events:channel '{"channel_id":"cstd","message_id":"after-join","data":{"type":"typing","data":{}}}'
check "events flow after the handover" client_wait_q b "ev('events:channel').some(x => x[0].message_id === 'after-join')" 10

for c in a b p py; do client_stop "$c"; done
stop_pid "$WPID_w3" 10
stop_pid "$WPID_w2" 10
like "$(tail -n 3 "$TMP/w2.log")" 'stopped' "w2 stops cleanly on SIGTERM"
check_gateway_stop gw1
done_testing
