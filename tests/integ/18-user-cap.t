#!/usr/bin/env bash
# Cluster-wide cap on one user's connections (HARDENING.md 1: "50 tabs of
# one user over 3 gateways"): with TIDINGS_MAX_CONNS_PER_USER=4, the fifth
# socket of u1, on whichever gateway, gets CONNECT_ERROR "too many
# connections"; a closed tab frees its slot; other users are not affected.
. "$(dirname "$0")/lib.sh"
watchdog 90

require_gateway
start_redis || bail "redis starts"
for g in gw1 gw2 gw3; do
	start_gateway $g TIDINGS_MAX_CONNS_PER_USER=4 || bail "gateway $g starts"
done
T=$(token u1)
gws=(gw1 gw2 gw3)
outcome() { # prints connect / refused / none for client $1
	q "L.some(l => l.t === 'connect') ? 'connect' : L.some(l => l.t === 'connect_error' && l.message === 'too many connections') ? 'refused' : 'none'" "$1"
}
got=""
for i in $(seq 1 7); do
	g=${gws[$((i % 3))]}
	node_client "t$i" sio-client.js --url "$(gw_url "$g")" --token "$T" --reconnection 0
	wait_until 10 bash -c "grep -q '\"t\":\"connect' '$TMP/t$i.out'" || true
	got+="$(outcome "t$i") "
done
is "$got" "connect connect connect connect refused refused refused " "four tabs over three gateways connect, the rest are refused with a reason"
is "$(rcli ZCARD "$PREFIX:user:u1:conns")" 4 "the user's live connections are counted cluster-wide"

node_client other sio-client.js --url "$(gw_url gw1)" --token "$(token u2)" --reconnection 0
client_wait other '"t":"connect"' 1 10
is "$(outcome other)" connect "another user is not affected"

client_stop t1
wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT ZCARD $PREFIX:user:u1:conns)\" = 3 ]"
node_client t8 sio-client.js --url "$(gw_url gw2)" --token "$T" --reconnection 0
wait_until 10 bash -c "grep -q '\"t\":\"connect' '$TMP/t8.out'" || true
is "$(outcome t8)" connect "a closed tab frees its slot"

for i in 2 3 4 5 6 7 8; do client_stop "t$i"; done
client_stop other
for g in gw1 gw2 gw3; do check_gateway_stop $g; done
done_testing
