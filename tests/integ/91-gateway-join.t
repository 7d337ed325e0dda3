#!/usr/bin/env bash
# A gateway that starts after the worker gets its members' room events at
# once. The worker used to filter a room's gateways through a live set it
# refreshed every third of a lease: a gateway that came (or came back,
# after a Redis restart) since the last refresh was taken for dead, and
# events for its members were dropped until the next one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/worker.sh"
watchdog 60

start_db_stack
P=$PREFIX
psql_q "INSERT INTO \"user\" (id, name, email, role) VALUES ('u1','Alice','a@x','user');
INSERT INTO channel (id, user_id, name) VALUES ('c1','u1','general');" owui >/dev/null

# A long lease: the worker's timer runs every 20 s, after the test is over.
worker_start w1 TIDINGS_LEASE_MS=60000
check "w1 takes all 16 shards" wait_until 10 bash -c "[ \$(for i in \$(seq 0 15); do timeout 5 redis-cli -p $REDIS_PORT GET $P:lease:\$i; done | grep -c '^w1\$') = 16 ]"
start_gateway gw1 || bail "gateway starts"

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token u1)"
client_wait a '"t":"connect"' 1 10 || bail "client connects"
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$(token u1)\"}}]}"
check "u1 joins channel:c1 through the worker" wait_until 10 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:c1 gw1)\" = 1 ]"
client_send a '{"cmd":"emit","event":"events:channel","args":[{"channel_id":"c1","message_id":"new-gw","data":{"type":"typing"}}]}'
check "a typing event reaches the member on the new gateway" client_wait_q a \
	"ev('events:channel').some(x => x[0].message_id === 'new-gw')" 10

client_stop a
stop_pid "$WPID_w1" 10
check_gateway_stop gw1
done_testing
