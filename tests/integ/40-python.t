#!/usr/bin/env bash
# 40-python.t - Debian's python-socketio client (a second implementation
# nobody here wrote), over websocket and over long-polling: connects with an
# auth token, its event becomes an ingress entry, it receives a delivered
# event and a delivered ACK, and its session goes away at disconnect.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

"$PYTHON" -c 'import socketio' 2>/dev/null || bail "python3-socketio importable by $PYTHON"
URL=$(gw_url gw1)

ingress_has() {
	ingress_dump >"$TMP/ingress.out" 2>>"$TMP/ingress.err" &&
		timeout 10 "$NODE" "$CLIENTS/q.js" --test "L.some(e => { const f = e.fields; return ($1); })" "$TMP/ingress.out"
}
ingress_get() {
	timeout 10 "$NODE" "$CLIENTS/q.js" "(L.find(e => { const f = e.fields; return ($1); }) || {fields: {}}).fields.$2" "$TMP/ingress.out"
}
sess_is() { [ "$(rcli EXISTS "$PREFIX:sid:$1")" = "$2" ]; }

for tr in websocket polling; do
	user=py-$tr
	name=py-$tr
	T=$(token "$user")
	py_client "$name" --url "$URL" --token "$T" --transports "$tr"
	if client_wait "$name" '"t":"connect"' 1 15; then
		pass "[$tr] python-socketio connects"
	else
		fail "[$tr] python-socketio connects" "$(cat "$TMP/$name.out" "$TMP/$name.err" | tail -n 20)"
		client_stop "$name"
		continue
	fi
	SID=$(client_sid "$name")
	like "$SID" '^[A-Za-z0-9_-]{6,}$' "[$tr] it has a sid ($SID)"
	is "$(q "L.find(l => l.t === 'connect').transport" "$name")" "$tr" "[$tr] transport is $tr"
	check "[$tr] session exists" wait_until 3 sess_is "$SID" 1
	is "$(rcli HGET "$PREFIX:sid:$SID" user)" "$user" "[$tr] session user is the token's id"

	# an event, with a forged user id in the payload
	client_send "$name" '{"cmd":"emit","event":"events:chat","args":[{"chat_id":"c-py","data":{"type":"last_read_at"},"user_id":"someone-else"}]}'
	SEL="f.sid === '$SID' && f.event === 'events:chat'"
	if wait_until 5 ingress_has "$SEL"; then
		pass "[$tr] emitted event becomes an ingress entry"
		is "$(ingress_get "$SEL" user)" "$user" "[$tr] entry user is the token's id"
		# identity fields may be dropped from payloads (HARDENING.md), the rest must be intact
		is "$(timeout 10 "$NODE" "$CLIENTS/q.js" "(() => { const e = L.find(e => { const f = e.fields; return ($SEL); }); const d = JSON.parse(e.fields.data); delete d[0].user_id; return JSON.stringify(d); })()" "$TMP/ingress.out")" \
			'[{"chat_id":"c-py","data":{"type":"last_read_at"}}]' "[$tr] entry data is the argument list (identity fields aside)"
	else
		fail "[$tr] emitted event becomes an ingress entry" "$(cat "$TMP/ingress.out")"
	fi

	# a delivered event
	dlv gw1 op room target "user:$user" pkt '2["events",{"chat_id":"c-py","data":{"type":"status","data":{"done":true}}}]'
	check "[$tr] receives the delivered event" \
		client_wait_q "$name" "ev('events').some(a => a[0].chat_id === 'c-py' && a[0].data.data.done === true)" 5

	# an ACK delivered for its call
	client_send "$name" '{"cmd":"emit","event":"usage","args":[{"action":"chat","model":"m","chat_id":"c-py"}],"ack":true,"timeout":8000,"tag":"pyack"}'
	SELA="f.sid === '$SID' && f.event === 'usage'"
	if wait_until 5 ingress_has "$SELA"; then
		ACKID=$(ingress_get "$SELA" ack)
		like "$ACKID" '^[0-9]+$' "[$tr] emit with callback: entry carries the ack id"
		dlv gw1 op sid target "$SID" pkt "3${ACKID}[\"ok\",{\"n\":1}]"
		check "[$tr] the delivered ACK reaches the callback" client_wait "$name" '"t":"ack","tag":"pyack"' 1 5
		is "$(q "JSON.stringify((L.find(l => l.tag === 'pyack') || {}).args)" "$name")" '["ok",{"n":1}]' \
			"[$tr] callback gets both ACK arguments"
	else
		fail "[$tr] emit with callback becomes an ingress entry"
	fi

	client_send "$name" '{"cmd":"disconnect"}'
	check "[$tr] client sees its disconnect" client_wait "$name" '"t":"disconnect"' 1 5
	check "[$tr] session removed after disconnect" wait_until 3 sess_is "$SID" 0
	client_stop "$name"
	is "$?" 0 "[$tr] python client exits 0"
done

check_gateway_stop gw1
done_testing
