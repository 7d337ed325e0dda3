#!/usr/bin/env bash
# 30-polling.t - socket.io-client with transports ['polling','websocket']
# (Open WebUI's setting when websockets are not forced): connects over
# long-polling, upgrades to websocket, and loses, duplicates or reorders no
# delivery sent before, during or after the upgrade.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

URL=$(gw_url gw1)
T1=$(token u1)

# ---- the stock client: connect over polling, upgrade, keep working
node_client p1 sio-client.js --url "$URL" --token "$T1" --transports polling,websocket
if client_wait p1 '"t":"connect"' 1 10; then
	pass "polling-then-websocket client connects"
else
	bail "polling-then-websocket client connects" "$(cat "$TMP/p1.out" "$TMP/p1.err")"
fi
# Whether the CONNECT ack comes over polling or already over the upgraded
# websocket is a race on loopback; the delayed-probe client below pins it.
diag "stock client's CONNECT completed over: $(q "L.find(l => l.t === 'connect').transport" p1)"
check "it upgrades (within 5 s)" client_wait p1 '"t":"upgrade","transport":"websocket"' 1 5
client_send p1 '{"cmd":"state"}'
client_wait p1 '"t":"state"' 1 5
is "$(q "L.filter(l => l.t === 'state').pop().transport" p1)" websocket \
	"socket.io.engine.transport.name is websocket after the upgrade"
is "$(q "L.filter(l => l.t === 'state').pop().connected" p1)" true "socket is connected"
P1=$(client_sid p1)
dlv gw1 op sid target "$P1" pkt '2["events",{"after":"upgrade"}]'
check "delivery after the upgrade arrives" client_wait_q p1 "ev('events').some(a => a[0].after === 'upgrade')" 5
client_send p1 '{"cmd":"emit","event":"heartbeat","args":[{}]}'
ingress_heartbeat() {
	ingress_dump >"$TMP/ingress.out" &&
		timeout 10 "$NODE" "$CLIENTS/q.js" --test \
			"L.some(e => e.fields.sid === '$P1' && e.fields.event === 'heartbeat' && e.fields.user === 'u1')" "$TMP/ingress.out"
}
check "event emitted after the upgrade becomes an ingress entry" wait_until 5 ingress_heartbeat
client_stop p1

# ---- an idle client whose probe starts while a long-poll GET is held
# The CONNECT completes over polling, then the client holds an idle GET; when
# the probe succeeds the server must release that GET (NOOP packet) so that
# the client can pause polling and finish the upgrade with no traffic at all.
node_client p2 sio-client.js --url "$URL" --token "$T1" --transports polling,websocket --probe-delay-ms 300
client_wait p2 '"t":"connect"' 1 10 || fail "client with a delayed probe connects" "$(cat "$TMP/p2.out" "$TMP/p2.err")"
is "$(q "(L.find(l => l.t === 'connect') || {}).transport" p2)" polling "client with a delayed probe connects over polling"
check "idle client upgrades within 3 s (server releases the held GET)" \
	client_wait p2 '"t":"upgrade","transport":"websocket"' 1 3
client_send p2 '{"cmd":"state"}'
client_wait p2 '"t":"state"' 1 5
is "$(q "L.filter(l => l.t === 'state').pop().transport" p2)" websocket "its engine transport is websocket"
client_stop p2

# ---- a long-poll GET that reaches the server after the probe succeeded
# The probe opens 100 ms after the handshake; the GET sent after the CONNECT
# ack (the 3rd) leaves 300 ms late. The client counts it as in flight and
# pauses for it, so the server must answer it at once (NOOP) even though it
# arrived after the probe: holding it stalls the upgrade until the next
# server packet (a ping, 25 s by default). This is the order the stock client
# hits by chance on loopback (first section); here it is pinned.
node_client p3 sio-client.js --url "$URL" --token "$T1" --transports polling,websocket \
	--probe-delay-ms 100 --poll-delay-ms 300 --poll-delay-from 3
client_wait p3 '"t":"connect"' 1 10 || fail "client with a late GET connects" "$(cat "$TMP/p3.out" "$TMP/p3.err")"
check "GET arriving after the probe is answered: client upgrades within 3 s" \
	client_wait p3 '"t":"upgrade","transport":"websocket"' 1 3
client_stop p3

# ---- 50 numbered deliveries spread over the upgrade
# sio-upgrade.js XADDs them itself at each phase (see the script's header).
run_client up 30 "$NODE" "$CLIENTS/sio-upgrade.js" --url "$URL" --token "$T1" --user u1 \
	--redis-port "$REDIS_PORT" --gateway-id gw1 --prefix "$PREFIX" --count 50 \
	--probe-delay-ms 300 --upgrade-delay-ms 300 --timeout-ms 20000
st=$?
R="L.filter(l => l.t === 'result').pop()"
if ! qtest "$R" up; then
	fail "upgrade scenario produced a result" "exit $st; $(tail -n 20 "$TMP/up.out" "$TMP/up.err")"
else
	diag "phases: $(q "JSON.stringify($R.phases)" up); arrival order: $(q "$R.order.join(' ')" up)"
	is "$(q "$R.transportAtConnect" up)" polling "Socket.IO CONNECT completed over polling"
	is "$(q "$R.transportAfterUpgrade" up)" websocket "transport is websocket after the upgrade"
	is "$(q "$R.sent" up)" 50 "50 delivery entries were sent"
	for ph in polling upgrading window upgraded after; do
		like "$(q "$R.phases['$ph'] || 0" up)" '^[1-9][0-9]*$' "some were sent in phase '$ph'"
	done
	is "$(q "JSON.stringify($R.missing)" up)" '[]' "none lost"
	is "$(q "$R.duplicates" up)" 0 "none duplicated"
	is "$(q "$R.outOfOrder" up)" 0 "all in order"
	is "$(q "$R.received" up)" 50 "exactly 50 received"
	is "$st" 0 "upgrade client exits 0"
fi

check_gateway_stop gw1
done_testing
