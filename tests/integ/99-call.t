#!/usr/bin/env bash
# Server-to-client calls (Open WebUI's event_call) across gateways:
# POST /api/v1/call at gw1 for a socket held by gw2 answers with the
# client's ack; a socket that never answers times out; an unknown or
# disconnected socket, or one of another user, gets "Client session
# disconnected."; tidingsctl call does the same from the command line.
. "$(dirname "$0")/lib.sh"
watchdog 90

KEY=k$RANDOM
require_gateway
start_redis || bail "redis starts"
start_gateway gw1 TIDINGS_API_KEY=$KEY || bail "gateway gw1 starts"
start_gateway gw2 TIDINGS_API_KEY=$KEY || bail "gateway gw2 starts"
A=$(admin_url gw1)
call() { curl -s -m 20 -X POST -H "Authorization: Bearer $KEY" --data "$1" "$A/api/v1/call"; }

node_client b sio-client.js --url "$(gw_url gw2)" --token "$(token u1)"
client_wait b '"t":"connect"' 1 10 || bail "client connects to gw2"
SB=$(client_sid b)
wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:sid:$SB gw)\" = gw2 ]"

res=$(call "{\"sid\":\"$SB\",\"event\":\"events\",\"data\":{\"chat_id\":\"c\",\"data\":{\"type\":\"confirmation\",\"data\":{\"title\":\"ok?\"}}}}")
is "$res" '{"acked":true,"event":"events"}' "a call through gw1 to a socket on gw2 answers with the client's ack"
check "the client saw the event with an ack requested" client_wait_q b \
	"L.some(l => l.t === 'event' && l.event === 'events' && l.ackRequested && l.args[0].data.type === 'confirmation')" 5

res=$(call "{\"sid\":\"$SB\",\"user_id\":\"u1\",\"data\":{}}")
is "$res" '{"acked":true,"event":"events"}' "with user_id of the session's owner: answered"
res=$(call "{\"sid\":\"$SB\",\"user_id\":\"someone-else\",\"data\":{}}")
is "$res" '{"error":"Client session disconnected."}' "with another user's id: Client session disconnected."
res=$(call '{"sid":"AAAAAAAAAAAAAAAAAAAA","data":{}}')
is "$res" '{"error":"Client session disconnected."}' "an unknown sid: Client session disconnected."

# A socket that never acks: the timeout answers.
tok=$(token u2)
$PYTHON "$CLIENTS/hostile.py" noack "${GW_PORT[gw2]}" "$tok" 8 >"$TMP/noack.out" 2>"$TMP/noack.err" &
track_pid $!
wait_until 5 grep -q ready "$TMP/noack.out"
SN=$(grep -o '"sid": "[^"]*"' "$TMP/noack.out" | cut -d'"' -f4)
wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:sid:$SN gw)\" = gw2 ]"
t0=$(now_ms)
res=$(call "{\"sid\":\"$SN\",\"data\":{\"x\":1},\"timeout_ms\":700}")
dt=$(($(now_ms) - t0))
like "$res" '"error":"Event call timed out' "a client that never answers: timeout error ($dt ms)"
if [ "$dt" -ge 650 ] && [ "$dt" -lt 3000 ]; then pass "after about timeout_ms"; else fail "after about timeout_ms" "$dt ms"; fi
like "$(cat "$TMP/noack.out")" '"got": "421\[\\"events\\",\{\\"x\\":1\}\]"' "the event reached it with ack id 1"

# Disconnect while a call waits: answered at once, not at the timeout.
$PYTHON "$CLIENTS/hostile.py" noack "${GW_PORT[gw2]}" "$(token u4)" 20 >"$TMP/noack2.out" 2>/dev/null &
NPID=$!
track_pid $NPID
wait_until 5 grep -q ready "$TMP/noack2.out"
SN2=$(grep -o '"sid": "[^"]*"' "$TMP/noack2.out" | cut -d'"' -f4)
wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:sid:$SN2 gw)\" = gw2 ]"
(sleep 0.5; kill -KILL $NPID) &
t0=$(now_ms)
res=$(call "{\"sid\":\"$SN2\",\"data\":{},\"timeout_ms\":15000}")
dt=$(($(now_ms) - t0))
is "$res" '{"error":"Client session disconnected."}' "the socket dropping while a call waits answers Client session disconnected."
if [ "$dt" -lt 10000 ]; then pass "when it is detected, before the timeout ($dt ms)"; else fail "before the timeout" "$dt ms"; fi

node_client b2 sio-client.js --url "$(gw_url gw2)" --token "$(token u3)"
client_wait b2 '"t":"connect"' 1 10
SB2=$(client_sid b2)
wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:sid:$SB2 gw)\" = gw2 ]"
# tidingsctl call, against gw2 itself this time
res=$(TIDINGS_API_KEY=$KEY TIDINGS_ADMIN_LISTEN=127.0.0.1:${GW_ADMIN[gw2]} timeout 20 "$TOP/build/tidingsctl" call --sid "$SB2" --data '{"y":2}')
is "$res" '{"acked":true,"event":"events"}' "tidingsctl call answers with the client's ack (same gateway)"

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{"sid":"x"}' "$A/api/v1/call")
is "$code" 401 "no bearer token: 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" --data '{"sid":"a b"}' "$A/api/v1/call")
is "$code" 400 "a malformed sid: 400"
client_stop b2
check_gateway_stop gw1
check_gateway_stop gw2
done_testing
