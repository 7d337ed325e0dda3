#!/usr/bin/env bash
# Hostile input (HARDENING.md §1) against a real gateway: slowloris and
# silent connections, header floods, malformed and oversized frames and
# packets, fragment bombs, the per-address limit and a slow consumer. Each
# attack must end that connection with the right answer while the gateway
# keeps serving everyone else.
. "$(dirname "$0")/lib.sh"
watchdog 120

H="$PYTHON $CLIENTS/hostile.py"
setup_stack TIDINGS_HEADER_TIMEOUT_MS=800 TIDINGS_MAX_CONNS_PER_IP=60 TIDINGS_MAX_OUTPUT=1048576 TIDINGS_CONNECT_TIMEOUT_MS=1500
port=${GW_PORT[gw1]}

# Slowloris: 40 silent connections and one dribbling a byte per 100 ms are
# all closed by the 800 ms header deadline, while a real client still connects.
res=$(timeout 20 $H silent "$port" 40 4)
like "$res" '"closed": 40' "40 silent connections closed by the header deadline"
like "$res" '"slow_closed": true' "a one-byte-per-100-ms request is cut off (408 or close)"
code=$(http_code "$(gw_url gw1)/ws/socket.io/?EIO=4&transport=polling")
is "$code" 200 "a real handshake succeeds meanwhile"

res=$(timeout 20 $H headers "$port")
like "$res" '"many": "HTTP/1.1 431' "2000 header lines refused with 431"
like "$res" '"long": "HTTP/1.1 431' "a 20 KB header line refused with 431"
like "$res" '"malformed": "HTTP/1.1 400' "a header without a colon refused with 400"
like "$res" '"smuggle": "HTTP/1.1 400' "two Content-Length headers refused with 400"

res=$(timeout 30 $H badpackets "$port")
like "$res" '"sio_garbage": 1000' "malformed Socket.IO packet closes that session"
like "$res" '"eio_type": 1000' "unknown Engine.IO packet type closes that session"
like "$res" '"placeholder_string_num": 1000' "placeholder with a string num closes that session"
like "$res" '"attachments_huge": 1000' "attachment count of eight nines closes that session"
like "$res" '"rsv_bits": 1002' "reserved bits: close 1002"
like "$res" '"unmasked": 1002' "unmasked client frame: close 1002"
like "$res" '"len_2_63": 100[29]' "length 2^63: close 1002/1009 without allocating"
like "$res" '"len_2_64_1": 100[29]' "length 2^64-1: close 1002/1009"
like "$res" '"too_big": 1009' "a 5 MB message: close 1009 before buffering it"
like "$res" '"bystander": true' "another connection is served throughout"

res=$(timeout 20 $H noattach "$port")
like "$res" '"closed_after": (1\.[4-9]|2\.)' "announced attachments that never come: closed after the deadline ($res)"

res=$(timeout 30 $H fragments "$port")
like "$res" '"code": 100[89]' "100 000 one-byte continuations refused (1008/1009)"

# Per-address limit: 60 allowed, the rest get 503 at once.
res=$(timeout 20 $H perip "$port" 65)
like "$res" '"refused": 5' "connections past the per-address limit get 503"

# Slow consumer: one socket of user u9 stops reading while 200 events of
# 50 KB go to the room in rounds of 10; once its backlog passes the 1 MB cap
# it is dropped, and the reading socket of the same room gets everything.
tok=$(token u9)
$H stall "$port" "$tok" 5 >"$TMP/stall.out" 2>"$TMP/stall.err" &
stall_pid=$!
track_pid $stall_pid
$H reader "$port" "$tok" 8 >"$TMP/reader.out" 2>"$TMP/reader.err" &
reader_pid=$!
track_pid $reader_pid
wait_until 5 grep -q ready "$TMP/stall.out"
wait_until 5 grep -q ready "$TMP/reader.out"
wait_until 5 test "$(rcli HGET "$PREFIX:room:user:u9" gw1)" = 2
big=$(head -c 50000 /dev/zero | tr '\0' 'x')
for r in $(seq 0 19); do
	for i in $(seq $((r * 10 + 1)) $((r * 10 + 10))); do
		printf 'XADD %s:gw:gw1:dlv * op room target user:u9 pkt "2[\\"big\\",%d,\\"%s\\"]"\n' "$PREFIX" "$i" "$big"
	done | timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
	sleep 0.1
done
stall_sid=$(grep -o '"sid": "[^"]*"' "$TMP/stall.out" | cut -d'"' -f4)
wait "$stall_pid"
wait "$reader_pid"
is "$(rcli EXISTS "$PREFIX:sid:$stall_sid")" 0 "the stalled socket was disconnected (its session is gone)"
like "$(cat "$TMP/reader.out")" '"received": 200' "the reading socket of the same room got all 200 events"
metrics=$(curl -s "$(admin_url gw1)/metrics")
like "$metrics" 'tidings_slow_consumers_total [1-9]' "slow consumer counted in /metrics"

check "gateway still healthy after all of it" gateway_healthy gw1
check_gateway_stop gw1

# Reconnect storm: with a rate of 20 connections/s, a burst of 60 gets 503
# for what exceeds the bucket, and connections are let in again a second later.
start_gateway gw2 TIDINGS_MAX_CONNECT_RATE=20 || bail "gateway gw2 starts"
res=$(timeout 20 $H perip "${GW_PORT[gw2]}" 60)
like "$res" '"refused": (3[0-9]|4[0-9])' "a burst over the connection rate is answered 503 ($res)"
sleep 1.1
code=$(http_code "$(gw_url gw2)/ws/socket.io/?EIO=4&transport=polling")
is "$code" 200 "a second later connections are admitted again"
check_gateway_stop gw2
done_testing
