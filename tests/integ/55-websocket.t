#!/usr/bin/env bash
# 55-websocket.t - RFC 6455 conformance of the gateway's WebSocket layer.
#
# Autobahn|Testsuite (server cases 1.* to 10.*) is the bar, but it cannot be
# installed here, so clients/wsconf.py covers the same behaviours with hand
# built frames: framing and lengths, ping/pong, reserved bits and opcodes,
# fragmentation, UTF-8 validation (fail-fast allowed), the close handshake
# and close codes, large messages with raised limits, frames split across
# TCP writes, the opening handshake, and hardening (impossible lengths, the
# default 1 MB limit, floods of continuation frames, unmasked frames).
#
# Two gateways in conformance mode (raw echo at /ws-echo): "gwc" with the
# default limits (the 1009 cases) and "gwcbig" with TIDINGS_MAX_PAYLOAD=17e6
# etc. (echo of messages up to 16 MB). Both must keep serving after every
# case and exit cleanly without a sanitizer report.
#
# WSCONF_ONLY=REGEX runs only the matching case ids (see
# `clients/wsconf.py cases --port 0 --list`).

. "$(dirname "$0")/lib.sh"

watchdog 90

. "$(dirname "$0")/conformance.sh"

CONF="TIDINGS_CONFORMANCE=1 TIDINGS_PING_INTERVAL_MS=300 TIDINGS_PING_TIMEOUT_MS=200 TIDINGS_CONNECT_TIMEOUT_MS=1000 TIDINGS_LOG_LEVEL=warn"
GW_CONF[gwc]=$CONF
GW_CONF[gwcbig]="$CONF TIDINGS_MAX_PAYLOAD=17000000 TIDINGS_MAX_FRAGMENTS=300000 TIDINGS_MAX_OUTPUT=40000000"

require_gateway
start_redis || bail "private redis-server starts"
# shellcheck disable=SC2086
start_gateway gwc ${GW_CONF[gwc]} || bail "gateway gwc (default limits) starts"
# shellcheck disable=SC2086
start_gateway gwcbig ${GW_CONF[gwcbig]} || bail "gateway gwcbig (raised limits) starts"

run_conformance wsconf wsconf.py "gwc gwcbig" 100 --port "${GW_PORT[gwc]}" \
	--big-port "${GW_PORT[gwcbig]}" ${WSCONF_ONLY:+--only "$WSCONF_ONLY"}

check_gateway_stop gwc
check_gateway_stop gwcbig

done_testing
