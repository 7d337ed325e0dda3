#!/usr/bin/env bash
# 90-admin.t - the internal admin port: /healthz (liveness), /readyz (200
# while Redis is reachable, 503 after Redis is killed, 200 again once Redis
# is back on the same port) and /metrics (Prometheus text with connection
# gauges and packet counters that move). Sockets survive the Redis outage
# and the delivery stream works again afterwards.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

URL=$(gw_url gw1)
ADMIN=$(admin_url gw1)
code_is() { [ "$(http_code "$1")" = "$2" ]; }

is "$(http_code "$ADMIN/healthz")" 200 "/healthz is 200"
is "$(http_code "$ADMIN/readyz")" 200 "/readyz is 200 with Redis up"
is "$(http_code "$ADMIN/metrics")" 200 "/metrics is 200"

# metrics_json: /metrics as JSON lines (prom.js) in $TMP/metrics.out
metrics_json() {
	curl -s --max-time 3 "$ADMIN/metrics" | timeout 5 "$NODE" "$CLIENTS/prom.js" >"$TMP/metrics.out"
}
# the largest sum over every metric of TYPE whose name matches RE
metric_max() {
	q "(() => { const ts = L.filter(l => l.t === 'type' && l.type === '$1' && /$2/i.test(l.name)); if (!ts.length) return 'none'; return Math.max(...ts.map(t => L.filter(l => l.t === 'sample' && (l.name === t.name || l.name === t.name + '_total')).reduce((s, l) => s + l.value, 0))); })()" metrics
}

metrics_json
is "$(q "L.filter(l => l.t === 'bad').length" metrics)" 0 "/metrics is valid Prometheus text"
like "$(q "L.filter(l => l.t === 'type' && l.type === 'gauge' && /conn|socket/i.test(l.name)).map(l => l.name).join(' ')" metrics)" '.' \
	"/metrics has a connection gauge"
like "$(q "L.filter(l => l.t === 'type' && l.type === 'counter' && /packet/i.test(l.name)).map(l => l.name).join(' ')" metrics)" '.' \
	"/metrics has packet counters"
diag "gauges: $(q "L.filter(l => l.t === 'type' && l.type === 'gauge').map(l => l.name).join(' ')" metrics)"
diag "counters: $(q "L.filter(l => l.t === 'type' && l.type === 'counter').map(l => l.name).join(' ')" metrics)"
before_pk=$(metric_max counter packet)

node_client c sio-client.js --url "$URL" --token "$(token u-admin)" --lifetime-ms 45000
client_wait c '"t":"connect"' 1 10 || bail "client connects" "$(cat "$TMP/c.out" "$TMP/c.err")"
SID=$(client_sid c)
client_send c '{"cmd":"emit","event":"heartbeat","args":[{}]}'
dlv gw1 op room target user:u-admin pkt '2["events",{"m":1}]'
client_wait_q c "ev('events').length >= 1" 5 || fail "delivery reaches the client"
sleep 0.3
metrics_json
conn=$(metric_max gauge 'conn|socket')
like "$conn" '^[1-9][0-9]*(\.0+)?$' "a connection gauge counts the connected socket ($conn)"
after_pk=$(metric_max counter packet)
if [[ $before_pk =~ ^[0-9.e+]+$ && $after_pk =~ ^[0-9.e+]+$ ]] && awk -v a="$after_pk" -v b="$before_pk" 'BEGIN { exit !(a > b) }'; then
	pass "packet counters grew with traffic ($before_pk -> $after_pk)"
else
	fail "packet counters grew with traffic" "before: $before_pk after: $after_pk"
fi

# ---- Redis dies
RPORT=$REDIS_PORT
kill_redis
if wait_until 5 code_is "$ADMIN/readyz" 503; then
	pass "/readyz turns 503 after Redis is killed"
else
	fail "/readyz turns 503 after Redis is killed" "last: $(http_code "$ADMIN/readyz")"
fi
is "$(http_code "$ADMIN/healthz")" 200 "/healthz stays 200 without Redis"
sleep 1
check "gateway process is still running without Redis" alive "${GW_PID[gw1]}"
is "$(http_code "$ADMIN/readyz")" 503 "/readyz stays 503 while Redis is down"

# ---- Redis comes back on the same port (empty: no persistence)
start_redis "$RPORT" || bail "redis restarts on port $RPORT"
if wait_until 15 code_is "$ADMIN/readyz" 200; then
	pass "/readyz is 200 again after Redis is back"
else
	fail "/readyz is 200 again after Redis is back" "last: $(http_code "$ADMIN/readyz")"
fi
is "$(q "L.filter(l => l.t === 'disconnect').length" c)" 0 "the socket stayed connected through the Redis outage"
dlv gw1 op sid target "$SID" pkt '2["events",{"m":2}]'
check "delivery stream works again after the Redis restart" client_wait_q c "ev('events').some(a => a[0].m === 2)" 10
node_client d sio-client.js --url "$URL" --token "$(token u-admin2)"
if client_wait d '"t":"connect"' 1 10; then
	SID_D=$(client_sid d)
	check "a new socket's session is written to the restarted Redis" \
		wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $PREFIX:sid:$SID_D user)\" = u-admin2 ]"
else
	fail "a new client connects after the Redis restart"
fi
client_stop d
client_stop c

check_gateway_stop gw1
done_testing
