#!/usr/bin/env bash
# The worker across a Redis restart (HARDENING.md 2): Redis is killed and
# started empty on the same port; the worker neither crashes nor spins,
# re-creates its consumer groups (no NOGROUP loop), takes its shards again
# and applies the events sent after the restart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/worker.sh"
watchdog 90

start_db_stack
start_gateway gw1 || bail "gateway starts"
P=$PREFIX
psql_q "INSERT INTO \"user\" (id, name, email, role) VALUES ('u1','Alice','a@x','user');
INSERT INTO channel (id, user_id, name) VALUES ('c1','u1','general');" owui >/dev/null
WADM=$(free_port)
worker_start w1 TIDINGS_LEASE_MS=2000 TIDINGS_WORKER_ADMIN_LISTEN=127.0.0.1:$WADM

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token u1)"
client_wait a '"t":"connect"' 1 10 || bail "client connects"
T=$(token u1)
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T\"}}]}"
check "u1 joins channel:c1 through the worker" wait_until 10 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:c1 gw1)\" = 1 ]"

port=$REDIS_PORT
kill_redis
check "worker /readyz turns 503 without Redis" wait_until 10 bash -c \
	"[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$WADM/readyz)\" = 503 ]"
sleep 2
cpu0=$(ps -o time= -p "$WPID_w1" | awk -F: '{print ($1*3600)+($2*60)+$3}')
start_redis "$port" || bail "redis restarts on the same port"
check "worker /readyz is 200 again" wait_until 15 bash -c \
	"[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$WADM/readyz)\" = 200 ]"
check "the worker holds its shards again" wait_until 15 bash -c \
	"curl -s http://127.0.0.1:$WADM/metrics | grep -q 'tidings_worker_shards_owned 16'"
alive "$WPID_w1" && pass "the worker survived the restart" || fail "the worker survived the restart"
like "$cpu0" '^[0-3]$' "no busy loop while Redis was away (cpu ${cpu0}s)"

# The gateway re-registered the socket; a user-join re-applies its channel
# rooms, then typing flows through the recreated groups.
check "the gateway re-registered the session" wait_until 10 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT EXISTS $P:sid:$(client_sid a))\" = 1 ]"
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T\"}}]}"
check "channel room back after user-join" wait_until 10 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:c1 gw1)\" = 1 ]"
client_send a '{"cmd":"emit","event":"events:channel","args":[{"channel_id":"c1","message_id":"after-restart","data":{"type":"typing"}}]}'
check "an event after the restart is applied and delivered" client_wait_q a \
	"ev('events:channel').some(x => x[0].message_id === 'after-restart')" 10
nogroup=$(grep -c NOGROUP "$TMP/w1.log" || true)
if [ "$nogroup" -le 5 ]; then pass "no NOGROUP loop ($nogroup log lines)"; else fail "no NOGROUP loop" "$nogroup lines"; fi

client_stop a
stop_pid "$WPID_w1" 10
check_gateway_stop gw1
done_testing
