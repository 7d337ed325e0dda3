#!/usr/bin/env bash
# Fan-out under load: the gateway holds writes to WebSockets back after a
# busy flush so that frames coalesce (TIDINGS_COALESCE_US). Driven by the
# load generator (build/tidings-loadgen: 200 clients in one room, emits at
# 150/s through the emit API, worker and delivery stream), with a real
# socket.io-client in the same room: every delivery arrives, none twice,
# each client's in the order emitted, nobody is dropped; the emit API
# (request/response, never held) keeps answering at the rate asked.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

LOADGEN=$TOP/build/tidings-loadgen
[ -x "$LOADGEN" ] || bail "load generator built" "make build/tidings-loadgen"
. "$(dirname "$0")/worker.sh"
start_db_stack
KEY=k$RANDOM
start_gateway gw1 TIDINGS_API_KEY=$KEY TIDINGS_COALESCE_US=5000 || bail "gateway starts"
worker_start w1

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token bench-u0)"
client_wait a '"t":"connect"' 1 10 || bail "client connects"
check "the client's socket is in user:bench-u0" wait_until 10 bash -c \
	"[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:room:user:bench-u0 gw1)\" = 1 ]"

timeout 60 "$LOADGEN" --ws "127.0.0.1:${GW_PORT[gw1]}" --clients 200 --procs 2 --users 1 \
	--secret "$SECRET" --user-join --emit "127.0.0.1:${GW_ADMIN[gw1]}" --api-key "$KEY" \
	--steps 150 --step-seconds 3 --drain-seconds 3 --json "$TMP/lg.json" 2>"$TMP/lg.err"
is "$?" 0 "the load generator ran to the end"
r() { node -e "const r=JSON.parse(require('fs').readFileSync('$TMP/lg.json','utf8'));console.log($1)"; }
is "$(r 'r.connect.ok')" 200 "200 clients connected"
is "$(r 'r.steps[0].emit_errors')" 0 "every emit was accepted"
like "$(r 'r.steps[0].emits_per_s')" '^1(4[0-9]|5[0-9])(\.[0-9]+)?$' "the emit API kept the pace asked (150/s)"
is "$(r 'r.steps[0].deliveries === r.steps[0].expected && r.steps[0].expected === r.steps[0].emits_sent * 200')" true \
	"every emit reached all 200 clients: $(r 'r.steps[0].deliveries') deliveries"
is "$(r 'r.steps[0].lost + r.disconnects')" 0 "nothing lost, nobody dropped"
n=$(r 'r.steps[0].emits_sent')
check "the socket.io-client got every emit" client_wait_q a "ev('events').length === $n" 10
is "$(q "ev('events').every((x, i, a) => i === 0 || x[0].data.data.seq > a[i - 1][0].data.data.seq)" a)" true \
	"in the order they were emitted, none twice"
client_stop a
stop_pid "$WPID_w1" 10
check_gateway_stop gw1
done_testing
