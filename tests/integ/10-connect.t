#!/usr/bin/env bash
# 10-connect.t - socket.io-client, configured as Open WebUI configures it
# (websocket only, auth {token}), connects; the gateway records the session,
# the user's socket set and the room registry in Redis and removes them at
# disconnect. Sockets without a valid token (none, garbage, wrong secret,
# alg none, tampered payload, expired) are connected but anonymous: no
# session, no room. An anonymous socket that sends user-join with a valid
# token becomes that user's socket.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

URL=$(gw_url gw1)
P=$PREFIX

sess_exists() { [ "$(rcli EXISTS "$P:sid:$1")" = 1 ]; }
sess_gone() { [ "$(rcli EXISTS "$P:sid:$1")" = 0 ]; }
room_count() { rcli HGET "$P:room:$1" gw1; }
room_count_is() { [ "$(room_count "$1")" = "$2" ]; }

# ---- an authenticated socket
T1=$(token u1)
node_client a sio-client.js --url "$URL" --token "$T1"
if client_wait a '"t":"connect"' 1 10; then
	pass "websocket-only client with a valid token connects"
else
	bail "websocket-only client with a valid token connects"
fi
SID=$(client_sid a)
like "$SID" '^[A-Za-z0-9_-]{6,}$' "socket.id is set ($SID)"
is "$(q "L.find(l => l.t === 'connect').transport" a)" websocket "the transport is websocket"

check "session hash $P:sid:<sid> appears" wait_until 3 sess_exists "$SID"
is "$(rcli HGET "$P:sid:$SID" user)" u1 "session user is the token's id"
is "$(rcli HGET "$P:sid:$SID" gw)" gw1 "session gw is the gateway id"
like "$(rcli HGET "$P:sid:$SID" connected_at)" '^[0-9]+(\.[0-9]+)?$' "session connected_at is a number"
like "$(rcli HGET "$P:sid:$SID" last_seen)" '^[0-9]+(\.[0-9]+)?$' "session last_seen is a number"
ttl=$(rcli TTL "$P:sid:$SID")
if [ -n "$ttl" ] && [ "$ttl" -gt 0 ] 2>/dev/null; then
	pass "session hash has a TTL ($ttl s)"
else
	fail "session hash has a TTL" "TTL = '$ttl'"
fi
is "$(rcli SISMEMBER "$P:user:u1:sids" "$SID")" 1 "sid is in $P:user:u1:sids"
check "registry $P:room:user:u1 has gw1 = 1" wait_until 3 room_count_is user:u1 1

# ---- user-join with the CONNECT's own token, as Open WebUI's front end
# sends it on every connect: forwarded, but the session is not registered
# again (its connected_at stays) and the socket stays in its room.
at=$(rcli HGET "$P:sid:$SID" connected_at)
sleep 0.05
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T1\"}}]}"
join_forwarded() { ingress_dump | grep '"user-join"' | grep -qF -- "$SID"; }
check "the same user's user-join is forwarded" wait_until 10 join_forwarded
is "$(rcli HGET "$P:sid:$SID" connected_at)" "$at" "its session keeps its connected_at"
is "$(rcli HGET "$P:sid:$SID" user)" u1 "and its user"
repeats() { curl -s "$(admin_url gw1)/metrics" | sed -n 's/^tidings_token_repeats_total //p'; }
is "$(repeats)" 1 "the repeated token was not checked again (tidings_token_repeats_total)"
# Another token of the same user takes the whole check.
client_send a "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$(token u1)\"}}]}"
joins_forwarded() { [ "$(ingress_dump | grep '"user-join"' | grep -cF -- "$SID")" -ge "$1" ]; }
check "a user-join with a new token of the same user is forwarded" wait_until 10 joins_forwarded 2
is "$(repeats)" 1 "after a check of its own (the counter stays)"
check "registry still has user:u1 once" wait_until 3 room_count_is user:u1 1
dlv gw1 op room target user:u1 pkt '2["events",{"still":true}]'
check "the socket still receives user:u1 deliveries" \
	client_wait_q a "ev('events').some(a => a[0] && a[0].still === true)" 5

# ---- a second socket of the same user: counts go to 2 and back
node_client a2 sio-client.js --url "$URL" --token "$T1"
client_wait a2 '"t":"connect"' 1 10 || fail "second socket of u1 connects"
SID2=$(client_sid a2)
isnt "$SID2" "$SID" "second socket gets its own sid"
check "registry count for user:u1 becomes 2" wait_until 3 room_count_is user:u1 2
check "user set holds both sids" wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT SCARD $P:user:u1:sids)\" = 2 ]"
client_stop a2
check "registry count drops to 1 when the second socket leaves" wait_until 3 room_count_is user:u1 1
check "second socket's session is removed" wait_until 3 sess_gone "$SID2"

# ---- disconnect removes everything
client_send a '{"cmd":"disconnect"}'
check "client sees its disconnect" client_wait a '"t":"disconnect"' 1 5
check "session hash removed at disconnect" wait_until 3 sess_gone "$SID"
check "user set no longer holds the sid" wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT SISMEMBER $P:user:u1:sids $SID)\" = 0 ]"
check "registry entry for user:u1 removed (no local member left)" \
	wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT HEXISTS $P:room:user:u1 gw1)\" = 0 ]"
client_stop a

# ---- anonymous sockets: no token, garbage, forged, expired
declare -A ANON=(
	[none]=""
	[garbage]="not-a-jwt"
	[wrongsecret]="$(mint --user u2 --secret wrong-secret)"
	[algnone]="$(mint --user u2 --alg none)"
	[tampered]="$(mint --user u2 --tamper)"
	[expired]="$(mint --user u2 --exp -120)"
)
for k in "${!ANON[@]}"; do
	if [ "$k" = none ]; then
		node_client "anon-$k" sio-client.js --url "$URL"
	else
		node_client "anon-$k" sio-client.js --url "$URL" --token "${ANON[$k]}"
	fi
done
for k in none garbage wrongsecret algnone tampered expired; do
	if client_wait "anon-$k" '"t":"connect"' 1 10; then
		s=$(client_sid "anon-$k")
		like "$s" '^[A-Za-z0-9_-]{6,}$' "anonymous socket ($k token) is connected with a sid"
	else
		fail "anonymous socket ($k token) is connected with a sid" "$(cat "$TMP/anon-$k.out")"
	fi
done
sleep 0.5 # give a wrong session write time to happen
for k in none garbage wrongsecret algnone tampered expired; do
	s=$(client_sid "anon-$k")
	[ -n "$s" ] || continue
	is "$(rcli EXISTS "$P:sid:$s")" 0 "no session for the anonymous socket ($k token)"
done
is "$(rcli EXISTS "$P:user:u2:sids")" 0 "no socket set for the forged/expired user u2"
is "$(rcli EXISTS "$P:room:user:u2")" 0 "no registry entry for user:u2"
is "$(rcli EXISTS "$P:room:user:u2-admin")" 0 "no registry entry for the tampered id"
nsess=$(rcli --scan --pattern "$P:sid:*" | wc -l)
is "$nsess" 0 "no session keys at all while only anonymous sockets are connected"
is "$(q "L.filter(l => l.t === 'disconnect').length" anon-none anon-garbage anon-wrongsecret anon-algnone anon-tampered anon-expired)" 0 \
	"anonymous sockets stay connected"

# ---- user-join authenticates an anonymous socket later (Open WebUI emits it on every connect)
ASID=$(client_sid anon-none)
T3=$(token u3)
client_send anon-none "{\"cmd\":\"emit\",\"event\":\"user-join\",\"args\":[{\"auth\":{\"token\":\"$T3\"}}]}"
check "user-join with a valid token creates the session" wait_until 3 sess_exists "$ASID"
is "$(rcli HGET "$P:sid:$ASID" user)" u3 "session user is the user-join token's id"
check "registry has user:u3 after user-join" wait_until 3 room_count_is user:u3 1
dlv gw1 op room target user:u3 pkt '2["events",{"joined":true}]'
check "socket authenticated by user-join receives user:u3 deliveries" \
	client_wait_q anon-none "ev('events').some(a => a[0] && a[0].joined === true)" 5

for k in none garbage wrongsecret algnone tampered expired; do client_stop "anon-$k"; done
check "session of the user-join socket removed at disconnect" wait_until 3 sess_gone "$ASID"

check_gateway_stop gw1
done_testing
