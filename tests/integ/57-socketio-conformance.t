#!/usr/bin/env bash
# 57-socketio-conformance.t - Socket.IO v5 protocol conformance.
#
# The cases of the official Socket.IO v5 test suite (socketio/socket.io-protocol,
# test-suite), in our own code (clients/sioconf.py), against the gateway's
# Socket.IO endpoint in conformance mode (namespaces "/" and "/custom", auth
# echo, message-back, message-with-ack): the Engine.IO layer of that endpoint
# (handshake, bad requests, heartbeat, close, upgrade), CONNECT / CONNECT_ERROR
# and the auth echo, plain and binary events and acks over WebSocket and
# polling, namespace DISCONNECT keeping the Engine.IO connection, malformed
# packets closing the connection, and the 1000 ms connect timeout.
# SIOCONF_ONLY=REGEX runs only the matching case ids.

. "$(dirname "$0")/lib.sh"

watchdog 90

. "$(dirname "$0")/conformance.sh"

GW_CONF[gwc]="TIDINGS_CONFORMANCE=1 TIDINGS_PING_INTERVAL_MS=300 TIDINGS_PING_TIMEOUT_MS=200 TIDINGS_CONNECT_TIMEOUT_MS=1000 TIDINGS_LOG_LEVEL=warn"

require_gateway
start_redis || bail "private redis-server starts"
# shellcheck disable=SC2086
start_gateway gwc ${GW_CONF[gwc]} || bail "gateway gwc starts"

run_conformance sioconf sioconf.py gwc 85 --port "${GW_PORT[gwc]}" --path /ws/socket.io/ \
	--connect-timeout-ms 1000 ${SIOCONF_ONLY:+--only "$SIOCONF_ONLY"}

check_gateway_stop gwc

done_testing
