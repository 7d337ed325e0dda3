#!/usr/bin/env bash
# Faults under the worker (HARDENING.md 2): a Postgres pause delays effects
# and deliveries without losing or reordering them, and the worker backs off
# instead of spinning; a worker killed with SIGKILL in the middle of a
# backlog loses nothing and applies nothing twice once another takes over.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
watchdog 120

. "$(dirname "$0")/worker.sh"
start_db_stack
start_gateway gw1 || bail "gateway starts"
P=$PREFIX
psql_q "INSERT INTO \"user\" (id, name, email, role) VALUES ('u1','Alice','a@x','user');
INSERT INTO channel (id, user_id, name) VALUES ('c1','u1','general');
INSERT INTO channel_member (id, channel_id, user_id, is_active) VALUES ('m1','c1','u1',true);" owui >/dev/null

worker_start w1 TIDINGS_LEASE_MS=2000 TIDINGS_READ_COALESCE_MS=0 TIDINGS_AUTHZ_TTL_MS=60000

node_client a sio-client.js --url "$(gw_url gw1)" --token "$(token u1)"
client_wait a '"t":"connect"' 1 10 || bail "client connects"
SA=$(client_sid a)
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$(token u1)\"}}]}"
check "u1 is in channel:c1" wait_until 10 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:channel:c1 gw1)\" = 1 ]"

# Raw ingress entries, as a gateway writes them (shard of channel:c1).
shard=$(node -e 'let h=2166136261;for(const c of Buffer.from("channel:c1")){h^=c;h=Math.imul(h,16777619)>>>0}console.log(h%16)')
typing() { rcli XADD "$P:ingress:$shard" '*' v 1 id "t-$1" kind event gw gw1 sid "$SA" user u1 nsp / \
	event events:channel data "[{\"channel_id\":\"c1\",\"message_id\":\"$1\",\"data\":{\"type\":\"typing\"}}]" >/dev/null; }
readmark() { rcli XADD "$P:ingress:$shard" '*' v 1 id "r-$1" kind event gw gw1 sid "$SA" user u1 nsp / \
	event events:channel data '[{"channel_id":"c1","data":{"type":"last_read_at"}}]' >/dev/null; }

# ---- Postgres paused for 4 s
pg_pids="$PG_PID $(pgrep -P "$PG_PID" | tr '\n' ' ')"
kill -STOP $pg_pids
for i in $(seq 1 30); do typing "$i"; readmark "$i"; done
sleep 4
cpu=$(ps -o time= -p "$WPID_w1" | awk -F: '{print ($1*3600)+($2*60)+$3}')
is "$(q "ev('events:channel').length" a)" 0 "nothing is delivered while Postgres is paused (authorisation waits)"
kill -CONT $pg_pids
check "after the pause all 30 typing events arrive" client_wait_q a "ev('events:channel').length >= 30" 20
is "$(q "ev('events:channel').map(x => x[0].message_id).join(',')" a)" "$(seq -s, 1 30)" "in the order they were sent, none twice"
check "all 30 read-marker effects are recorded once each" wait_until 10 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(DISTINCT id) FROM tidings_event WHERE id LIKE 'r-%'\")\" = 30 ]"
like "$cpu" '^[0-3]$' "the worker did not spin while Postgres was paused (cpu ${cpu}s)"

# ---- typing whose authorisation is cached does not wait for Postgres
typing warm
check "a typing event primes the authorisation cache" client_wait_q a "ev('events:channel').some(x => x[0].message_id === 'warm')" 10
kill -STOP $pg_pids
typing during-pause
if client_wait_q a "ev('events:channel').some(x => x[0].message_id === 'during-pause')" 3; then
	pass "with Postgres paused, a typing event with a cached authorisation is delivered at once"
else
	fail "with Postgres paused, a typing event with a cached authorisation is delivered at once"
fi
kill -CONT $pg_pids

# ---- kill -9 with a backlog: nothing lost, nothing applied twice
# Written in one pipeline so the backlog is there at once; w1 dies while
# working through it.
for i in $(seq 1000 3999); do
	printf 'XADD %s:ingress:%s * v 1 id r-%d kind event gw gw1 sid %s user u1 nsp / event events:channel data "[{\\"channel_id\\":\\"c1\\",\\"data\\":{\\"type\\":\\"last_read_at\\"}}]"\n' "$P" "$shard" "$i" "$SA"
done | timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
sleep 0.05
kill -KILL "$WPID_w1"
before_kill=$(psql_q "SELECT count(*) FROM tidings_event WHERE id LIKE 'r-%'" owui)
diag "w1 had applied $((before_kill - 30)) of 3000 backlog entries when it was killed"
WADM=$(free_port)
worker_start w2 TIDINGS_LEASE_MS=2000 TIDINGS_READ_COALESCE_MS=0 TIDINGS_WORKER_ADMIN_LISTEN=127.0.0.1:$WADM
check "w2 takes over and applies the whole backlog" wait_until 30 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(*) FROM tidings_event WHERE id LIKE 'r-%'\")\" = 3030 ]"
is "$(psql_q "SELECT count(*) - count(DISTINCT id) FROM tidings_event" owui)" 0 "no event applied twice"
check "nothing left pending in the group" wait_until 10 bash -c \
	"[ \"\$(timeout 5 redis-cli -p $REDIS_PORT XPENDING $P:ingress:$shard workers | head -1)\" = 0 ]"

# ---- a poisonous entry: parked, the rest of its batch applied
psql_q "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS
  \$\$ BEGIN IF NEW.channel_id = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END \$\$;
INSERT INTO channel (id, user_id, name) VALUES ('poison','u1','p');
INSERT INTO channel_member (id, channel_id, user_id, is_active) VALUES ('mp','poison','u1',true);
CREATE TRIGGER refuse_poison BEFORE UPDATE ON channel_member FOR EACH ROW EXECUTE FUNCTION refuse_poison();" owui >/dev/null
{
	for i in 1 2 3; do
		printf 'XADD %s:ingress:%s * v 1 id ok-a%d kind event gw gw1 sid %s user u1 nsp / event events:channel data "[{\\"channel_id\\":\\"c1\\",\\"data\\":{\\"type\\":\\"last_read_at\\"}}]"\n' "$P" "$shard" "$i" "$SA"
	done
	printf 'XADD %s:ingress:%s * v 1 id bad-1 kind event gw gw1 sid %s user u1 nsp / event events:channel data "[{\\"channel_id\\":\\"poison\\",\\"data\\":{\\"type\\":\\"last_read_at\\"}}]"\n' "$P" "$shard" "$SA"
	for i in 1 2 3; do
		printf 'XADD %s:ingress:%s * v 1 id ok-b%d kind event gw gw1 sid %s user u1 nsp / event events:channel data "[{\\"channel_id\\":\\"c1\\",\\"data\\":{\\"type\\":\\"last_read_at\\"}}]"\n' "$P" "$shard" "$i" "$SA"
	done
} | timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
check "the entries around a poisonous one are applied" wait_until 15 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(*) FROM tidings_event WHERE id LIKE 'ok-%'\")\" = 6 ]"
check "the poisonous entry is parked with its reason" wait_until 10 bash -c \
	"timeout 5 redis-cli -p $REDIS_PORT XRANGE $P:ingress:parked - + | grep -q 'poison refused'"
is "$(psql_q "SELECT count(*) FROM tidings_event WHERE id = 'bad-1'" owui)" 0 "and had no effect"
check "nothing stays pending behind it" wait_until 10 bash -c \
	"[ \"\$(timeout 5 redis-cli -p $REDIS_PORT XPENDING $P:ingress:$shard workers | head -1)\" = 0 ]"

# ---- a backlog is read in chunks, applied in large batches
# 2 000 entries wait on one shard while Postgres holds the worker in a
# batch. Then each XREADGROUP takes at most 128 per shard (one read of
# 1 024 kept Redis busy for milliseconds, every client waiting), and the
# chunks are applied together: a batch holds up to TIDINGS_BATCH (1 024).
check "w2 owns every shard" wait_until 10 bash -c \
	"curl -s http://127.0.0.1:$WADM/metrics | grep -q 'tidings_worker_shards_owned 16'"
metric() { curl -s "http://127.0.0.1:$WADM/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
pg_pids="$PG_PID $(pgrep -P "$PG_PID" | tr '\n' ' ')" # w2's backend is new
kill -STOP $pg_pids
readmark hold
sleep 0.5
for i in $(seq 5000 6999); do
	printf 'XADD %s:ingress:%s * v 1 id k-%d kind event gw gw1 sid %s user u1 nsp / event events:channel data "[{\\"channel_id\\":\\"c1\\",\\"data\\":{\\"type\\":\\"last_read_at\\"}}]"\n' "$P" "$shard" "$i" "$SA"
done | timeout 20 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" >/dev/null
batches0=$(metric tidings_worker_batches_total)
rcli CONFIG RESETSTAT >/dev/null
kill -CONT $pg_pids
check "the 2 000 backlog entries are applied" wait_until 30 bash -c \
	"[ \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -At -d owui -c \"SELECT count(*) FROM tidings_event WHERE id LIKE 'k-%'\")\" = 2000 ]"
reads=$(rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_xreadgroup:calls=\([0-9]*\),.*/\1/p')
batches=$(( $(metric tidings_worker_batches_total) - batches0 ))
check "read in chunks of at most 128: ${reads:-no} XREADGROUP calls (>= 16)" test "${reads:-0}" -ge 16
check "applied in a few large batches: $batches (<= 4, one of them the held one)" test "$batches" -le 4

# ---- readiness follows the database
check "w2 owns every shard once w1's leases expire" wait_until 10 bash -c \
	"curl -s http://127.0.0.1:$WADM/metrics | grep -q 'tidings_worker_shards_owned 16'"
like "$(curl -s "http://127.0.0.1:$WADM/metrics")" 'tidings_worker_entries_total [1-9]' "w2 applied entries itself"
is "$(curl -s "http://127.0.0.1:$WADM/readyz")" ready "worker /readyz: ready"
stop_pg
check "worker /readyz turns 503 when Postgres goes away" wait_until 10 bash -c \
	"[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$WADM/readyz)\" = 503 ]"
like "$(curl -s "http://127.0.0.1:$WADM/readyz")" 'database unavailable' "and says why"
alive "$WPID_w2" && pass "the worker waits instead of exiting" || fail "the worker waits instead of exiting"

client_stop a
stop_pid "$WPID_w2" 10
check_gateway_stop gw1
done_testing
