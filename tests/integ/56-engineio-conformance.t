#!/usr/bin/env bash
# 56-engineio-conformance.t - Engine.IO v4 protocol conformance.
#
# The cases of the official Engine.IO v4 test suite (socketio/engine.io-protocol,
# test-suite), in our own code (clients/eioconf.py): handshake over polling and
# WebSocket with the exact open packet, bad requests refused with HTTP 400 and
# a JSON {code, message} body, polling payloads (\x1e separators, binary as
# 'b' + base64), duplicate and aborted polls, heartbeat at 300/200 ms, close,
# and the polling -> WebSocket upgrade (probe, noop, upgrade, stale sid).
#
# Against the gateway in conformance mode: raw Engine.IO echo at /engine.io/.
# EIOCONF_ONLY=REGEX runs only the matching case ids.

. "$(dirname "$0")/lib.sh"

watchdog 90

. "$(dirname "$0")/conformance.sh"

GW_CONF[gwc]="TIDINGS_CONFORMANCE=1 TIDINGS_PING_INTERVAL_MS=300 TIDINGS_PING_TIMEOUT_MS=200 TIDINGS_CONNECT_TIMEOUT_MS=1000 TIDINGS_LOG_LEVEL=warn"

require_gateway
start_redis || bail "private redis-server starts"
# shellcheck disable=SC2086
start_gateway gwc ${GW_CONF[gwc]} || bail "gateway gwc starts"

run_conformance eioconf eioconf.py gwc 85 --port "${GW_PORT[gwc]}" --path /engine.io/ \
	${EIOCONF_ONLY:+--only "$EIOCONF_ONLY"}

check_gateway_stop gwc

done_testing
