#!/usr/bin/env bash
# Token lifetime and revocation on long-lived sockets (HARDENING.md 1):
# a socket is disconnected when its token expires; Open WebUI's revocation
# keys (per token and per user) are honoured at connect and at user-join;
# a socket re-authenticated as another user leaves the first user's room;
# events of anonymous sockets never reach the ingress streams.
. "$(dirname "$0")/lib.sh"
watchdog 60

setup_stack
URL=$(gw_url gw1)
P=$PREFIX
OW=open-webui
sess_exists() { [ "$(rcli EXISTS "$P:sid:$1")" = 1 ]; }
sess_gone() { [ "$(rcli EXISTS "$P:sid:$1")" = 0 ]; }
claim() { cut -d. -f2 <<<"$1" | tr '_-' '/+' | base64 -d 2>/dev/null | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr -d '"'; }
ingress_count() { ingress_dump | grep -c "\"$1\"" || true; }

# ---- a token that expires in 3 s: the socket is disconnected at ~3 s
T=$(token ue 3)
t0=$(now_ms)
node_client exp sio-client.js --url "$URL" --token "$T" --reconnection 0
check "socket with a 3 s token connects" client_wait exp '"t":"connect"' 1 10
SID=$(client_sid exp)
check "its session exists" wait_until 3 sess_exists "$SID"
if client_wait exp '"t":"disconnect"' 1 8; then
	dt=$(($(now_ms) - t0))
	if [ "$dt" -ge 2000 ] && [ "$dt" -le 6000 ]; then
		pass "disconnected when the token expired ($dt ms after connecting)"
	else
		fail "disconnected when the token expired" "after $dt ms"
	fi
	like "$(q "(L.find(l => l.t === 'disconnect') || {}).reason" exp)" 'io server disconnect' \
		"the client is told the server ended it (no silent reconnect with a dead token)"
else
	fail "disconnected when the token expired" "$(cat "$TMP/exp.out")"
fi
check "its session is removed" wait_until 3 sess_gone "$SID"
client_stop exp

# ---- a revoked token (sign-out): connected, but anonymous
T=$(token ur1)
jti=$(claim "$T" jti)
like "$jti" '^[0-9a-f-]{36}$' "the minted token carries a jti"
rcli SET "$OW:auth:token:$jti:revoked" 1 EX 60 >/dev/null
node_client rev sio-client.js --url "$URL" --token "$T"
check "socket with a revoked token connects" client_wait rev '"t":"connect"' 1 10
sleep 0.3
is "$(rcli EXISTS "$P:sid:$(client_sid rev)")" 0 "but gets no session (anonymous)"
is "$(rcli EXISTS "$P:room:user:ur1")" 0 "and is in no user room"
client_stop rev

# ---- user-wide revocation at or after iat (OIDC back-channel logout)
T=$(token ur2)
iat=$(claim "$T" iat)
rcli SET "$OW:auth:user:ur2:revoked_at" "$iat" EX 60 >/dev/null
node_client rev2 sio-client.js --url "$URL" --token "$T"
check "socket of a user revoked since iat connects" client_wait rev2 '"t":"connect"' 1 10
sleep 0.3
is "$(rcli EXISTS "$P:sid:$(client_sid rev2)")" 0 "but gets no session (revoked_at >= iat)"
# user-join with the same revoked token does not authenticate either
client_send rev2 "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T\"}}]}"
sleep 0.5
is "$(rcli EXISTS "$P:sid:$(client_sid rev2)")" 0 "user-join with the revoked token is refused too"
# a token issued later than revoked_at is fine
rcli SET "$OW:auth:user:ur2:revoked_at" $((iat - 10)) EX 60 >/dev/null
client_send rev2 "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T\"}}]}"
check "a token issued after revoked_at authenticates" wait_until 3 sess_exists "$(client_sid rev2)"
client_stop rev2

# ---- re-authentication as another user leaves the first user's room
node_client sw sio-client.js --url "$URL" --token "$(token ua)"
check "socket of ua connects" client_wait sw '"t":"connect"' 1 10
SID=$(client_sid sw)
check "registry has user:ua" wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:room:user:ua gw1)\" = 1 ]"
client_send sw "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$(token ub)\"}}]}"
check "session now belongs to ub" wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HGET $P:sid:$SID user)\" = ub ]"
check "registry no longer lists the socket under user:ua" \
	wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HEXISTS $P:room:user:ua gw1)\" = 0 ]"
dlv gw1 op room target user:ua pkt '2["events",{"for":"ua"}]'
dlv gw1 op room target user:ub pkt '2["events",{"for":"ub"}]'
check "it receives ub's events" client_wait_q sw "ev('events').some(a => a[0] && a[0].for === 'ub')" 5
is "$(q "ev('events').filter(a => a[0] && a[0].for === 'ua').length" sw)" 0 "and no longer ua's"
client_stop sw

# ---- events of anonymous sockets are dropped before Redis
before=$(ingress_count anon-probe-event)
node_client anon sio-client.js --url "$URL"
check "anonymous socket connects" client_wait anon '"t":"connect"' 1 10
client_send anon '{"cmd":"emit","event":"anon-probe-event","args":[{"channel_id":"c1"}]}'
sleep 0.5
is "$(ingress_count anon-probe-event)" "$before" "an anonymous socket's event produces no ingress entry"
client_stop anon

check_gateway_stop gw1
done_testing
