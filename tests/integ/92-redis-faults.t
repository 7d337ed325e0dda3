#!/usr/bin/env bash
# 92-redis-faults.t - the gateway rides out Redis faults (HARDENING.md §2):
#
# 1. Redis frozen (SIGSTOP): an authenticated socket.io-client on a 500 ms
#    heartbeat stays connected (Engine.IO pings keep flowing), /readyz turns
#    503 once the command timeout tears the connection down, a producer's
#    emit sent into the freeze is answered 503 while Redis is still frozen
#    (its callback failed with the teardown instead of waiting for Redis),
#    the gateway lives with bounded memory; after SIGCONT /readyz is 200 within
#    5 s, the session and registration (deleted just before the freeze) are
#    published again, and a delivery written after recovery arrives.
# 2. Redis restarted empty on the same port: /readyz 503 then 200, sessions
#    and registry republished, the delivery stream re-created by a new hello
#    and read again, a bounded number of reconnections (no crash loop).
# 3. A wrong password (a second redis-server with --requirepass): /readyz
#    stays 503 and the gateway reconnects no faster than its backoff.
. "$(dirname "$0")/lib.sh"
watchdog 120
# shellcheck disable=SC2034 # read by client_start in lib.sh
CLIENT_TIMEOUT=100
KEY=k-$RANDOM$RANDOM
FREEZE_MS=5000
setup_stack TIDINGS_PING_INTERVAL_MS=500 TIDINGS_PING_TIMEOUT_MS=500 TIDINGS_API_KEY=$KEY

URL=$(gw_url gw1)
ADMIN=$(admin_url gw1)
# shellcheck disable=SC2153 # set by start_gateway in lib.sh
GWPID=${GW_PID[gw1]}
U=u-faults
SIDKEY=
readyz_is() { [ "$(http_code "$1/readyz")" = "$2" ]; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
log_count() { grep -cF -- "$2" "$TMP/$1.log" 2>/dev/null || true; }
sess_user() { [ "$(rcli HGET "$SIDKEY" user 2>/dev/null)" = "$U" ]; }
registered() { [ "$(rcli HGET "$PREFIX:room:user:$U" gw1 2>/dev/null)" = 1 ]; }
alive_key() { [ "$(rcli EXISTS "$PREFIX:gw:gw1:alive" 2>/dev/null)" = 1 ]; }
hello_in_stream() { rcli XRANGE "$PREFIX:gw:gw1:dlv" - + 2>/dev/null | grep -qx hello; }
disconnects() { count_lines c '"t":"disconnect"'; }
got() { client_wait_q c "ev('events').some(a => a[0].n === '$1')" "${2:-6}"; }

node_client c sio-client.js --url "$URL" --token "$(token "$U")" --lifetime-ms 95000
client_wait c '"t":"connect"' 1 10 || bail "client connects" "$(cat "$TMP/c.out" "$TMP/c.err")"
pass "client connects"
SID=$(client_sid c)
SIDKEY=$PREFIX:sid:$SID
check "session published" wait_until 3 sess_user
check "registration published" wait_until 3 registered
check "/readyz is 200 with Redis up" readyz_is "$ADMIN" 200
dlv gw1 op sid target "$SID" pkt '2["events",{"n":"before"}]'
check "a delivery arrives before any fault" got before

# ---- 1. Redis frozen
# Deleted just before the freeze: finding them again afterwards proves the
# gateway published them again on reconnecting.
rcli DEL "$SIDKEY" "$PREFIX:room:user:$U" >/dev/null
RSS0=$(rss_kb "$GWPID")
kill -STOP "$REDIS_PID"
t0=$(now_ms)
curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 15 -X POST \
	-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
	--data '{"event":"events","to":{"user":"u-faults"},"data":{"frozen":true}}' \
	"$ADMIN/api/v1/emit" >"$TMP/emit-frozen.txt" 2>/dev/null &
EMIT_PID=$!
track_pid "$EMIT_PID"
# A socket authenticating into the freeze: its revocation look-up is queued
# on the frozen connection and must be answered (refused: fail closed) by
# the teardown, not left waiting for Redis.
node_client late sio-client.js --url "$URL" --token "$(token u-late)" --lifetime-ms 60000
# Events while frozen: queued until the timeout, then refused; never fatal.
for i in 1 2 3 4 5; do
	client_send c "{\"cmd\":\"emit\",\"event\":\"frozen\",\"args\":[{\"i\":$i,\"pad\":\"$(head -c 3000 /dev/zero | tr '\0' x)\"}]}"
done
if wait_until 4.5 readyz_is "$ADMIN" 503; then
	pass "/readyz turns 503 within 4.5 s of SIGSTOP ($(($(now_ms) - t0)) ms)"
else
	fail "/readyz turns 503 within 4.5 s of SIGSTOP" "still $(http_code "$ADMIN/readyz")"
fi
while (($(now_ms) - t0 < FREEZE_MS - 300)); do sleep 0.1; done
read -r ecode etime <"$TMP/emit-frozen.txt"
if has_lines late '"t":"connect"'; then
	pass "a socket authenticating into the freeze is answered while Redis is still frozen"
else
	fail "a socket authenticating into the freeze is answered while Redis is still frozen" \
		"$(cat "$TMP/late.out")"
fi
is "${ecode:-none}" 503 "an emit sent into the freeze is answered 503 while Redis is still frozen (in ${etime:-?} s)"
while (($(now_ms) - t0 < FREEZE_MS)); do sleep 0.1; done
check "gateway process alive while Redis is frozen" alive "$GWPID"
check "gateway /healthz answers while Redis is frozen" gateway_healthy gw1
RSS1=$(rss_kb "$GWPID")
is "$(disconnects)" 0 "client stays connected while Redis is frozen (heartbeat every 500 ms)"
kill -CONT "$REDIS_PID"
t1=$(now_ms)
wait "$EMIT_PID" 2>/dev/null
if [ -n "$RSS0" ] && [ -n "$RSS1" ] && ((RSS1 - RSS0 < 32768)); then
	pass "gateway RSS bounded while Redis is frozen (${RSS0} kB -> ${RSS1} kB)"
else
	fail "gateway RSS bounded while Redis is frozen" "${RSS0:-?} kB -> ${RSS1:-?} kB"
fi
if wait_until 5 readyz_is "$ADMIN" 200; then
	pass "/readyz back to 200 within 5 s of SIGCONT ($(($(now_ms) - t1)) ms)"
else
	fail "/readyz back to 200 within 5 s of SIGCONT" "got $(http_code "$ADMIN/readyz")"
fi
check "session published again after the freeze" wait_until 5 sess_user
LATE=$(client_sid late)
is "$(rcli EXISTS "$PREFIX:sid:${LATE:-none}")" 0 "its token was refused, not checked: it has no session"
client_stop late
check "registration published again after the freeze" wait_until 5 registered
dlv gw1 op sid target "$SID" pkt '2["events",{"n":"after-freeze"}]'
check "a delivery written after recovery arrives" got after-freeze 8
is "$(disconnects)" 0 "client never disconnected"

# ---- 2. Redis restarted, empty, on the same port
UP0=$(log_count gw1 'connection up')
PORT=$REDIS_PORT
kill_redis
check "/readyz turns 503 when Redis dies" wait_until 5 readyz_is "$ADMIN" 503
sleep 1
start_redis "$PORT" || bail "redis-server restarts on port $PORT"
pass "redis-server restarts on port $PORT, empty"
t2=$(now_ms)
if wait_until 8 readyz_is "$ADMIN" 200; then
	pass "/readyz back to 200 after the restart ($(($(now_ms) - t2)) ms)"
else
	fail "/readyz back to 200 after the restart" "got $(http_code "$ADMIN/readyz")"
fi
check "session republished after the restart" wait_until 5 sess_user
check "registration republished after the restart" wait_until 5 registered
check "liveness key published again" wait_until 5 alive_key
check "delivery stream re-created by a hello" wait_until 5 hello_in_stream
dlv gw1 op room target "user:$U" pkt '2["events",{"n":"after-restart"}]'
check "a delivery written after the restart arrives" got after-restart 8
sleep 2
UP1=$(log_count gw1 'connection up')
n=$((UP1 - UP0))
if ((n >= 2 && n <= 4)); then
	pass "each connection came up again once or twice, no crash loop ($n 'connection up' lines)"
else
	fail "each connection came up again once or twice, no crash loop" "$n 'connection up' lines"
fi
check "gateway process alive after the restart" alive "$GWPID"
is "$(disconnects)" 0 "client stayed connected through the restart"
client_stop c

# ---- 3. wrong password
PW=integ-pw-$RANDOM$RANDOM
PWPORT=$(free_port) || bail "a free port for the second redis-server"
mkdir -p "$TMP/redis-pw"
(
	close_client_fds
	exec redis-server --port "$PWPORT" --bind 127.0.0.1 --save '' --appendonly no \
		--requirepass "$PW" --dir "$TMP/redis-pw" --daemonize no --logfile "$TMP/redis-pw.log"
) &
PWPID=$!
track_pid "$PWPID"
pwcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$PWPORT" -a "$PW" --no-auth-warning "$@"; }
pw_up() { [ "$(pwcli PING 2>/dev/null)" = PONG ]; }
conns() { pwcli INFO stats | tr -d '\r' | awk -F: '$1 == "total_connections_received" { print $2 }'; }
wait_until 5 pw_up || bail "redis-server with --requirepass starts"
pass "redis-server with --requirepass starts (port $PWPORT)"
start_gateway gw2 REDIS_URL="redis://:wrong-$PW@127.0.0.1:$PWPORT/0" ||
	bail "gateway gw2 starts with a wrong Redis password"
# Past the first, fast retries: the window below sees the backoff grown.
sleep 1
L0=$(log_count gw2 connection)
c0=$(conns)
bad=0
for _ in $(seq 1 12); do
	readyz_is "$(admin_url gw2)" 503 || bad=$((bad + 1))
	sleep 0.25
done
L1=$(log_count gw2 connection)
c1=$(conns)
is "$bad" 0 "/readyz stays 503 with a wrong password (12 samples over 3 s)"
# Backoff 100 ms doubling to 5 s: attempts at about 0, 0.1, 0.3, 0.7, 1.5,
# 3.1, 6.3 s, so 2 per connection from 1 s to 4 s; at every 100 ms, 60.
if [ -n "$c0" ] && [ -n "$c1" ] && ((c1 - c0 <= 10)); then
	pass "at most 10 connection attempts in 3 s ($((c1 - c0)), by Redis's count)"
else
	fail "at most 10 connection attempts in 3 s" "Redis counted ${c0:-?} -> ${c1:-?}"
fi
if ((L1 - L0 <= 10 && L1 <= 10)); then
	pass "at most 10 'connection' log lines ($L1 since start, $((L1 - L0)) in 3 s)"
else
	fail "at most 10 'connection' log lines" "$L1 since start, $((L1 - L0)) in 3 s"
fi
like "$(grep -F 'connection down' "$TMP/gw2.log" | head -n 1)" 'AUTH: (WRONGPASS|ERR invalid password)' \
	"the log says why: the password is refused"
check_gateway_stop gw2
stop_pid "$PWPID"

check_gateway_stop gw1
done_testing
