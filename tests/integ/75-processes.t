#!/usr/bin/env bash
# TIDINGS_PROCESSES=N: a supervisor forks N gateways sharing the public port
# (SO_REUSEPORT). Each is a gateway of its own in Redis; a child that dies is
# replaced; SIGTERM to the supervisor stops them all.
. "$(dirname "$0")/lib.sh"
watchdog 60

setup_stack TIDINGS_PROCESSES=2
SUP=${GW_PID[gw1]}
P=$PREFIX
kids() { pgrep -P "$SUP" | sort; }
members() { rcli ZRANGE "$P:gateways" 0 -1 | sort | tr '\n' ' '; }

check "two gateway processes under the supervisor" wait_until 5 bash -c "[ \$(pgrep -P $SUP | wc -l) = 2 ]"
check "each is its own gateway in Redis (gw1-0, gw1-1)" wait_until 5 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT ZRANGE $P:gateways 0 -1 | sort | tr '\n' ' ')\" = 'gw1-0 gw1-1 ' ]"

# Connections spread over both processes; each socket's session names its process.
URL=$(gw_url gw1)
for i in 1 2 3 4 5 6 7 8; do
	node_client "c$i" sio-client.js --url "$URL" --token "$(token "u$i")"
done
for i in 1 2 3 4 5 6 7 8; do client_wait "c$i" '"t":"connect"' 1 10 || true; done
gws=$(for i in 1 2 3 4 5 6 7 8; do rcli HGET "$P:sid:$(client_sid "c$i")" gw; done | sort -u | tr '\n' ' ')
like "$gws" '^gw1-[01] ' "sessions record the process that holds them ($gws)"
# A delivery to one process's stream reaches the sockets that process holds.
for i in 1 2 3 4 5 6 7 8; do
	g=$(rcli HGET "$P:sid:$(client_sid "c$i")" gw)
	dlv "$g" op room target "user:u$i" pkt "2[\"events\",{\"n\":$i}]"
done
got=0
for i in 1 2 3 4 5 6 7 8; do
	client_wait_q "c$i" "ev('events').some(a => a[0] && a[0].n === $i)" 5 && got=$((got + 1))
done
is "$got" 8 "every socket got the event sent to its process's delivery stream"
for i in 1 2 3 4 5 6 7 8; do client_stop "c$i"; done

# A child killed with SIGKILL is replaced.
victim=$(kids | head -1)
kill -KILL "$victim"
check "the dead process is replaced" wait_until 5 bash -c "pgrep -P $SUP | grep -vx $victim | wc -l | grep -qx 2"
check "the public port keeps answering" wait_until 5 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$URL/ws/socket.io/?EIO=4&transport=polling')\" = 200 ]"

children=$(kids)
t0=$(now_ms)
stop_gateway gw1 5
dt=$(($(now_ms) - t0))
is "${GW_STATUS[gw1]}" 0 "SIGTERM to the supervisor: it exits 0 ($dt ms)"
left=0
for k in $children; do alive "$k" && left=$((left + 1)); done
is "$left" 0 "and every gateway process is gone"
done_testing
