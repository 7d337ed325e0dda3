#!/usr/bin/env bash
# 80-origin.t - cross-site WebSocket hijacking defence. With
# CORS_ALLOW_ORIGIN=http://app.example.com both the WebSocket upgrade and the
# polling handshake are refused with 403 for any other Origin: other sites,
# look-alike hosts, "null", other schemes and ports, a trailing dot, and
# odd-case spellings; the allowed origin and requests without Origin pass.
. "$(dirname "$0")/lib.sh"
watchdog 60
ALLOWED=http://app.example.com
setup_stack CORS_ALLOW_ORIGIN="$ALLOWED"

PORT=${GW_PORT[gw1]}
URL=$(gw_url gw1)
WS_PATH='/ws/socket.io/?EIO=4&transport=websocket'
POLL="$URL/ws/socket.io/?EIO=4&transport=polling"

# ws_status [ORIGIN]: HTTP status of a WebSocket upgrade (raw client).
ws_status() {
	local args=(--port "$PORT" --path "$WS_PATH" --mode handshake --lifetime-ms 5000)
	[ $# -gt 0 ] && args+=(--origin "$1")
	timeout -k 1 8 "$NODE" "$CLIENTS/raw-ws.js" "${args[@]}" </dev/null 2>/dev/null |
		timeout 5 "$NODE" "$CLIENTS/q.js" "(L.find(l => l.t === 'status') || {}).code" -
}

# poll_status [ORIGIN]: HTTP status of the polling handshake.
poll_status() {
	if [ $# -gt 0 ]; then
		http_code "$POLL" -H "Origin: $1"
	else
		http_code "$POLL"
	fi
}

BAD=(
	"https://evil.example"
	"http://app.example.com.evil.example"
	"http://evil.example.app.example.com"
	"null"
	"http://APP.EXAMPLE.COM"
	"HTTP://app.example.com"
	"http://App.Example.Com"
	"http://app.example.com."
	"https://app.example.com"
	"http://app.example.com:8080"
	"http://app.example.com@evil.example"
	"http://app.example.co"
	"app.example.com"
	"ws://app.example.com"
)
for o in "${BAD[@]}"; do
	is "$(ws_status "$o")" 403 "websocket upgrade with Origin '$o' is refused with 403"
	is "$(poll_status "$o")" 403 "polling handshake with Origin '$o' is refused with 403"
done

is "$(ws_status "$ALLOWED")" 101 "websocket upgrade with the allowed Origin is accepted (101)"
is "$(poll_status "$ALLOWED")" 200 "polling handshake with the allowed Origin is accepted (200)"
body=$(curl -s --max-time 3 -H "Origin: $ALLOWED" "$POLL")
like "$body" '^0\{.*"sid"' "polling handshake body is an Engine.IO open packet"
is "$(ws_status)" 101 "websocket upgrade without Origin is accepted (not a browser)"
is "$(poll_status)" 200 "polling handshake without Origin is accepted (not a browser)"

# A refused upgrade leaves nothing behind and the gateway keeps serving.
T=$(token u-origin)
node_client c sio-client.js --url "$URL" --token "$T"
check "a real client (no Origin) still connects afterwards" client_wait c '"t":"connect"' 1 10
client_stop c
no_sessions() { [ "$(rcli --scan --pattern "$PREFIX:sid:*" | wc -l)" -eq 0 ]; }
check "no session left behind by the refused handshakes" wait_until 3 no_sessions

check_gateway_stop gw1
done_testing
