#!/usr/bin/env bash
# 50-engineio.t - conformance mode (TIDINGS_CONFORMANCE=1): the raw
# Engine.IO endpoint /engine.io/ echoes every message, text and binary,
# to engine.io-client over websocket and over polling-then-websocket.
. "$(dirname "$0")/lib.sh"
watchdog 60
setup_stack TIDINGS_CONFORMANCE=1

URL=$(gw_url gw1)
TEXT='hello, engine.io: ünïcödé ✓ "quotes" \\ and 4 leading digit'
TEXT_JSON=$("$NODE" -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$TEXT")
BIN=$("$NODE" -e 'const b = Buffer.alloc(256); for (let i = 0; i < 256; i++) b[i] = 255 - i; process.stdout.write(b.toString("base64"))')
BIG=$("$NODE" -e 'process.stdout.write(JSON.stringify("x".repeat(100000)))')

for tr in websocket polling,websocket; do
	name=eio-${tr/,/-}
	node_client "$name" eio-client.js --url "$URL" --path /engine.io/ --transports "$tr"
	if client_wait "$name" '"t":"open"' 1 10; then
		pass "[$tr] engine.io-client opens /engine.io/"
	else
		fail "[$tr] engine.io-client opens /engine.io/" "$(cat "$TMP/$name.out" "$TMP/$name.err" | tail -n 20)"
		client_stop "$name"
		continue
	fi
	like "$(q "L.find(l => l.t === 'open').sid" "$name")" '^.{6,}$' "[$tr] it has an Engine.IO sid"
	if [ "$tr" != websocket ]; then
		is "$(q "L.find(l => l.t === 'open').transport" "$name")" polling "[$tr] it opens over polling"
	fi

	client_send "$name" "{\"cmd\":\"send\",\"text\":$TEXT_JSON}"
	check "[$tr] text message echoed" client_wait_q "$name" "L.some(l => l.t === 'message' && l.text === $TEXT_JSON)" 5
	client_send "$name" "{\"cmd\":\"send\",\"b64\":\"$BIN\"}"
	check "[$tr] binary message echoed byte for byte" client_wait_q "$name" "L.some(l => l.t === 'message' && l.b64 === '$BIN')" 5
	client_send "$name" '{"cmd":"send","text":"42[\"looks\",\"like socket.io\"]"}'
	check "[$tr] text starting with digits echoed verbatim" client_wait_q "$name" "L.some(l => l.t === 'message' && l.text === '42[\"looks\",\"like socket.io\"]')" 5
	client_send "$name" '{"cmd":"send","text":""}'
	check "[$tr] empty text message echoed" client_wait_q "$name" "L.some(l => l.t === 'message' && l.text === '')" 5
	client_send "$name" "{\"cmd\":\"send\",\"text\":$BIG}"
	check "[$tr] 100 kB text message echoed" client_wait_q "$name" "L.some(l => l.t === 'message' && l.text && l.text.length === 100000)" 5

	if [ "$tr" != websocket ]; then
		check "[$tr] it upgrades to websocket" client_wait "$name" '"t":"upgrade","transport":"websocket"' 1 10
		client_send "$name" '{"cmd":"send","text":"after upgrade"}'
		check "[$tr] echo after the upgrade" client_wait_q "$name" "L.some(l => l.t === 'message' && l.text === 'after upgrade')" 5
		client_send "$name" '{"cmd":"send","b64":"AAECAw=="}'
		check "[$tr] binary echo after the upgrade" client_wait_q "$name" "L.some(l => l.t === 'message' && l.b64 === 'AAECAw==')" 5
	fi
	# Order: a burst of 20 alternating text/binary messages comes back in order.
	for i in $(seq 1 20); do
		if ((i % 2)); then
			client_send "$name" "{\"cmd\":\"send\",\"text\":\"burst-$i\"}"
		else
			client_send "$name" "{\"cmd\":\"send\",\"b64\":\"$(printf 'burst-%d' "$i" | base64)\"}"
		fi
	done
	ORDER="L.filter(l => l.t === 'message' && ((l.text || '').startsWith('burst-') || (l.b64 && Buffer.from(l.b64, 'base64').toString().startsWith('burst-')))).map(l => l.text || Buffer.from(l.b64, 'base64').toString()).join(',')"
	want=$(seq -f 'burst-%g' 1 20 | paste -sd,)
	client_wait_q "$name" "($ORDER).split(',').length >= 20" 5
	is "$(q "$ORDER" "$name")" "$want" "[$tr] a burst of 20 text/binary messages is echoed in order"
	is "$(q "L.filter(l => l.t === 'close').length" "$name")" 0 "[$tr] the connection stayed open"
	client_stop "$name"
done

# An idle polling client must upgrade too: the server has to release the
# pending long-poll GET (NOOP packet) once the websocket probe succeeded,
# without waiting for traffic to do it.
# The probe is held back 300 ms so that a long-poll GET is pending when it ends.
node_client eio-idle eio-client.js --url "$URL" --path /engine.io/ --transports polling,websocket --probe-delay-ms 300
client_wait eio-idle '"t":"open"' 1 10 || fail "[idle] engine.io-client opens over polling"
check "[idle] an idle polling client upgrades to websocket within 3 s" \
	client_wait eio-idle '"t":"upgrade","transport":"websocket"' 1 3
client_stop eio-idle

check_gateway_stop gw1
done_testing
