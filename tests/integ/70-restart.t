#!/usr/bin/env bash
# 70-restart.t - a connected socket.io-client (reconnection on, Open WebUI's
# delays) survives a gateway restart on the same port: the gateway stops
# cleanly on SIGTERM (closing the transport, not sending a Socket.IO
# DISCONNECT, which would stop the client from reconnecting), the client
# reconnects by itself to the new process, gets a new socket id and a new
# session, the old session is gone, and deliveries reach it again.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

URL=$(gw_url gw1)
T=$(token u-restart)
sess_is() { [ "$(rcli EXISTS "$PREFIX:sid:$1")" = "$2" ]; }

node_client c sio-client.js --url "$URL" --token "$T" --lifetime-ms 45000
client_wait c '"t":"connect"' 1 10 || bail "client connects" "$(cat "$TMP/c.out" "$TMP/c.err")"
pass "client connects"
SID1=$(client_sid c)
check "first session exists" wait_until 3 sess_is "$SID1" 1

t0=$(now_ms)
stop_gateway gw1 20
is "${GW_STATUS[gw1]}" 0 "gateway exits 0 on SIGTERM"
diag "gateway stopped in $(($(now_ms) - t0)) ms"
san=$(sanitizer_report gw1)
is "$san" "" "no sanitizer report from the first gateway process"
check "client notices the disconnect" client_wait c '"t":"disconnect"' 1 5
reason=$(q "L.find(l => l.t === 'disconnect').reason" c)
isnt "$reason" "io server disconnect" "disconnect reason lets the client reconnect (got '$reason')"

start_gateway gw1 || bail "gateway restarts on the same ports"
pass "gateway restarts on the same ports (${GW_PORT[gw1]}, ${GW_ADMIN[gw1]})"
# Backoff: 1000 ms doubling to 5000, +-50 %: one or two attempts at most here.
if client_wait c '"t":"connect"' 2 15; then
	pass "client reconnects by itself"
else
	fail "client reconnects by itself" "$(tail -n 20 "$TMP/c.out")"
fi
SID2=$(client_sid c 2)
like "$SID2" '^[A-Za-z0-9_-]{6,}$' "it has a socket id after reconnecting"
isnt "$SID2" "$SID1" "the socket id is new"
if [ -n "$SID2" ]; then
	check "new session exists" wait_until 3 sess_is "$SID2" 1
	is "$(rcli HGET "$PREFIX:sid:$SID2" user)" u-restart "new session has the same user"
	is "$(rcli HGET "$PREFIX:sid:$SID2" gw)" gw1 "new session names the gateway"
	check "old session is gone" wait_until 3 sess_is "$SID1" 0
	is "$(rcli SMEMBERS "$PREFIX:user:u-restart:sids")" "$SID2" "user set holds only the new sid"
	is "$(rcli HGET "$PREFIX:room:user:u-restart" gw1)" 1 "registry count for the user's room is 1"
	dlv gw1 op room target user:u-restart pkt '2["events",{"after":"restart"}]'
	check "room delivery reaches the reconnected socket" client_wait_q c "ev('events').some(a => a[0].after === 'restart')" 5
	dlv gw1 op sid target "$SID2" pkt '2["events",{"to":"sid2"}]'
	check "sid delivery reaches the reconnected socket" client_wait_q c "ev('events').some(a => a[0].to === 'sid2')" 5
	sleep 0.2
	is "$(q "ev('events').length" c)" 2 "exactly the two deliveries arrived (nothing replayed from before)"
fi

client_stop c
check_gateway_stop gw1
done_testing
