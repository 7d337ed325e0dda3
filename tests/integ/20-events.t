#!/usr/bin/env bash
# 20-events.t - client events become ingress entries (identity from the
# token, never from the payload; binary attachments byte for byte); delivery
# entries reach exactly the sockets they target; an ACK packet delivered to
# a sid resolves the client's emitWithAck.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack

URL=$(gw_url gw1)
T1=$(token u1)
T2=$(token u2)

node_client a1 sio-client.js --url "$URL" --token "$T1"
node_client a2 sio-client.js --url "$URL" --token "$T1"
node_client b1 sio-client.js --url "$URL" --token "$T2"
node_client anon sio-client.js --url "$URL"
for c in a1 a2 b1 anon; do
	client_wait "$c" '"t":"connect"' 1 10 || bail "client $c connects" "$(cat "$TMP/$c.out" "$TMP/$c.err")"
done
pass "three authenticated sockets (u1 twice, u2) and one anonymous socket connect"
A1=$(client_sid a1)
A2=$(client_sid a2)
B1=$(client_sid b1)
AN=$(client_sid anon)
# Sessions are written after the CONNECT ack: wait for them before testing routing.
for s in "$A1" "$A2" "$B1"; do
	wait_until 3 bash -c "[ \"\$(timeout 5 redis-cli -p $REDIS_PORT EXISTS $PREFIX:sid:$s)\" = 1 ]" ||
		fail "session of $s written"
done

# ingress_has EXPR: some ingress entry e satisfies EXPR (fields in e.f, base64 in e.b64).
ingress_has() {
	ingress_dump >"$TMP/ingress.out" 2>>"$TMP/ingress.err" || return 1
	timeout 10 "$NODE" "$CLIENTS/q.js" --test \
		"L.map(x => ({ ...x, f: x.fields })).some(e => ($1))" "$TMP/ingress.out"
}
# entry_q EXPR SELECT: SELECT evaluated on the first entry e matching EXPR.
entry_q() {
	timeout 10 "$NODE" "$CLIENTS/q.js" \
		"(() => { const e = L.map(x => ({ ...x, f: x.fields })).find(e => ($1)); return e ? ($2) : undefined; })()" \
		"$TMP/ingress.out"
}

# ---- connect entries
check "connect entry for a1 (kind=connect, user u1)" \
	wait_until 3 ingress_has "e.f.kind === 'connect' && e.f.sid === '$A1' && e.f.user === 'u1'"
if ingress_has "e.f.sid === '$AN'"; then
	fail "no ingress entry at all for the anonymous socket's connect"
else
	pass "no ingress entry at all for the anonymous socket's connect"
fi

# ---- a plain event with a forged user_id
PAYLOAD='{"chat_id":"c1","data":{"type":"last_read_at"},"user_id":"u2","session_id":"forged"}'
client_send a1 "{\"cmd\":\"emit\",\"event\":\"events:chat\",\"args\":[$PAYLOAD]}"
SEL="e.f.kind === 'event' && e.f.sid === '$A1' && e.f.event === 'events:chat'"
if wait_until 5 ingress_has "$SEL"; then
	pass "emit without ack becomes an ingress entry"
else
	fail "emit without ack becomes an ingress entry" "$(cat "$TMP/ingress.out")"
fi
like "$(entry_q "$SEL" 'e.stream')" "^$PREFIX:ingress:([0-9]|1[0-5])\$" "entry is on a shard stream $PREFIX:ingress:0..15"
is "$(entry_q "$SEL" 'e.f.v')" 1 "entry v=1"
like "$(entry_q "$SEL" 'e.f.id')" '^.{8,}$' "entry has an event id"
is "$(entry_q "$SEL" 'e.f.user')" u1 "entry user comes from the token (payload said user_id u2)"
is "$(entry_q "$SEL" 'e.f.gw')" gw1 "entry gw is the gateway id"
is "$(entry_q "$SEL" 'e.f.nsp')" / "entry nsp is /"
# Identity fields in payloads may be dropped or overwritten (HARDENING.md);
# everything else must arrive as sent.
STRIP='(o => { const c = { ...o }; delete c.user_id; delete c.session_id; delete c.socket_id; return c; })'
is "$(entry_q "$SEL" "(() => { const d = JSON.parse(e.f.data); return Array.isArray(d) && d.length === 1 && JSON.stringify($STRIP(d[0])) === JSON.stringify($STRIP($PAYLOAD)); })()")" true \
	"entry data is the JSON array of the arguments (identity fields aside)"
is "$(entry_q "$SEL" "'ack' in e.f")" false "no ack field when the client asked for none"

# ---- several arguments
client_send a1 '{"cmd":"emit","event":"multi","args":["one",2,{"three":[3]},null]}'
check "event with four arguments: data holds all four" \
	wait_until 5 ingress_has "e.f.event === 'multi' && e.f.sid === '$A1' && JSON.stringify(JSON.parse(e.f.data)) === '[\"one\",2,{\"three\":[3]},null]'"

# ---- binary attachment: every byte value, exactly
BIN=$("$NODE" -e 'const b = Buffer.alloc(300); for (let i = 0; i < 300; i++) b[i] = (i * 7 + 3) & 255; b[0] = 0; b[1] = 255; b[2] = 13; b[3] = 10; process.stdout.write(b.toString("base64"))')
client_send a1 "{\"cmd\":\"emit\",\"event\":\"ydoc:document:update\",\"args\":[{\"document_id\":\"note:n1\",\"update\":{\"\$bin\":\"$BIN\"}}]}"
SELB="e.f.sid === '$A1' && e.f.event === 'ydoc:document:update'"
if wait_until 5 ingress_has "$SELB"; then
	pass "binary event becomes an ingress entry"
	is "$(entry_q "$SELB" 'e.b64.att0')" "$BIN" "att0 holds the exact bytes (300 bytes, 0x00 0xff CR LF included)"
	is "$(entry_q "$SELB" "'att1' in e.f")" false "only one attachment field"
	is "$(entry_q "$SELB" 'JSON.stringify(JSON.parse(e.f.data)[0].update)')" '{"_placeholder":true,"num":0}' \
		"data keeps the placeholder for attachment 0"
	is "$(entry_q "$SELB" 'JSON.parse(e.f.data)[0].document_id')" note:n1 "data keeps the other fields"
else
	fail "binary event becomes an ingress entry" "$(cat "$TMP/ingress.out")"
fi

# ---- anonymous events are dropped
client_send anon '{"cmd":"emit","event":"events:chat","args":[{"chat_id":"c1","data":{"type":"last_read_at"}}]}'
sleep 0.5
if ingress_has "e.f.sid === '$AN'"; then
	fail "anonymous socket's events are dropped"
else
	pass "anonymous socket's events are dropped"
fi

# ---- delivery to a room
dlv gw1 op room target user:u1 pkt '2["events",{"x":1}]'
check "room delivery reaches u1's first socket" client_wait_q a1 "ev('events').some(a => a[0].x === 1)" 5
check "room delivery reaches u1's second socket" client_wait_q a2 "ev('events').some(a => a[0].x === 1)" 5
sleep 0.3
is "$(q "ev('events').length" b1)" 0 "room delivery to user:u1 does not reach u2's socket"
is "$(q "ev('events').length" anon)" 0 "room delivery to user:u1 does not reach the anonymous socket"
is "$(q "JSON.stringify(ev('events'))" a1)" '[[{"x":1}]]' "u1's socket got exactly one copy with the exact payload"

# ---- delivery to a sid
dlv gw1 op sid target "$A2" pkt '2["events",{"x":2}]'
check "sid delivery reaches that socket" client_wait_q a2 "ev('events').some(a => a[0].x === 2)" 5
sleep 0.3
is "$(q "ev('events').filter(a => a[0].x === 2).length" a1 b1 anon)" 0 "sid delivery reaches no other socket"

# ---- room delivery with except
dlv gw1 op room target user:u1 except "$A1" pkt '2["events",{"x":3}]'
check "room delivery with except reaches the other member" client_wait_q a2 "ev('events').some(a => a[0].x === 3)" 5
sleep 0.3
is "$(q "ev('events').filter(a => a[0].x === 3).length" a1)" 0 "room delivery skips the excepted sid"

# ---- emitWithAck resolved by an ACK packet delivered to the sid
client_send a1 '{"cmd":"emit","event":"usage","args":[{"action":"chat","model":"m1","chat_id":"c1"}],"ack":true,"timeout":8000,"tag":"ack1"}'
SELA="e.f.sid === '$A1' && e.f.event === 'usage'"
if wait_until 5 ingress_has "$SELA"; then
	ACKID=$(entry_q "$SELA" 'e.f.ack')
	like "$ACKID" '^[0-9]+$' "emit with ack: the entry carries the ack id ($ACKID)"
	dlv gw1 op sid target "$A1" pkt "3${ACKID}[\"ok\"]"
	check "the delivered ACK resolves emitWithAck" client_wait a1 '"t":"ack","tag":"ack1"' 1 5
	is "$(q "JSON.stringify(L.find(l => l.t === 'ack' && l.tag === 'ack1').args)" a1)" '["ok"]' "ack carries the delivered arguments"
else
	fail "emit with ack becomes an ingress entry"
fi

# ---- disconnect entries
client_stop b1
check "disconnect entry for b1 (kind=disconnect, user u2)" \
	wait_until 3 ingress_has "e.f.kind === 'disconnect' && e.f.sid === '$B1' && e.f.user === 'u2'"
for c in a1 a2 anon; do client_stop "$c"; done

check_gateway_stop gw1
done_testing
