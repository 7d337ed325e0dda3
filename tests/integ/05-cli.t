#!/usr/bin/env bash
# The configuration table from the outside: --help, tidingsctl checkconfig
# (effective values, secrets masked, errors refused), Open WebUI's variable
# names as aliases in their own units, *_FILE secrets, and tidingsctl token.
. "$(dirname "$0")/lib.sh"
watchdog 30

GW=$(gateway_bin)
CTL=$TOP/build/tidingsctl
[ -x "$CTL" ] || bail "tidingsctl is built" "make build/tidingsctl"
run() { env -i PATH="$PATH" ASAN_OPTIONS=detect_leaks=0 "$@" 2>&1; }

out=$(run "$GW" --help)
is "$?" 0 "tidings-gateway --help exits 0"
like "$out" 'TIDINGS_PING_INTERVAL_MS \(or WEBSOCKET_SERVER_PING_INTERVAL\)' "--help lists options with their variables and aliases"
like "$out" 'TIDINGS_CONFORMANCE' "--help documents the conformance switch"

out=$(run WEBUI_SECRET_KEY=hunter2 WEBSOCKET_SERVER_PING_INTERVAL=30 WEBSOCKET_SERVER_PING_TIMEOUT=7 \
	REDIS_URL=redis://127.0.0.1:6999/2 CORS_ALLOW_ORIGIN='https://a.example;https://b.example' "$CTL" checkconfig)
is "$?" 0 "checkconfig accepts Open WebUI's variables"
like "$out" $'ping-interval-ms = 30000\n' "WEBSOCKET_SERVER_PING_INTERVAL is read in seconds"
like "$out" $'ping-timeout-ms = 7000\n' "WEBSOCKET_SERVER_PING_TIMEOUT is read in seconds"
like "$out" 'redis-url = redis://127.0.0.1:6999/2' "REDIS_URL is the Redis address"
like "$out" 'secret = \*+ \(set\)' "the secret is masked"
[[ $out == *hunter2* ]] && fail "the secret never appears in the dump" || pass "the secret never appears in the dump"

out=$(run WEBSOCKET_SERVER_PING_INTERVAL=soon "$CTL" checkconfig)
is "$?" 0 "a non-integer Open WebUI ping interval falls back (as Open WebUI does)"
like "$out" $'ping-interval-ms = 25000\n' "to the default of 25 s"

out=$(run TIDINGS_PING_INTERVAL_MS=soon "$CTL" checkconfig)
is "$?" 2 "a bad TIDINGS_* value is refused"
like "$out" "TIDINGS_PING_INTERVAL_MS: 'soon' is not an integer" "with the variable and the reason"
out=$(run TIDINGS_MAX_PAYLOAD=10 "$CTL" checkconfig)
like "$out" "outside \[1024," "a value out of bounds is refused with the bounds"
out=$(run "$CTL" checkconfig --no-such-flag=1)
like "$out" "unknown option '--no-such-flag'" "an unknown flag is refused"
out=$(run TIDINGS_PING_TIMEOUT_MS=900 "$CTL" checkconfig --ping-timeout-ms=1200)
like "$out" $'ping-timeout-ms = 1200\n' "a flag overrides the environment"

echo "from-a-file" >"$TMP/secret"
out=$(run WEBUI_SECRET_KEY_FILE="$TMP/secret" "$CTL" token --user u1)
like "$out" '^eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$' "WEBUI_SECRET_KEY_FILE is read; token printed"
sig=$(cut -d. -f3 <<<"$out")
want=$(printf '%s' "$(cut -d. -f1-2 <<<"$out")" | openssl dgst -sha256 -hmac from-a-file -binary | base64 | tr '+/' '-_' | tr -d '=')
is "$sig" "$want" "the token is HS256-signed with the file's secret (checked with openssl)"
out=$(run "$CTL" token --user u1)
like "$out" 'WEBUI_SECRET_KEY .* is not set' "token refuses to mint without a secret"
out=$(run WEBUI_SECRET_KEY=x "$CTL" token --user 'a*b')
like "$out" 'must be 1-128 characters' "token refuses a user id unfit for Redis keys"

out=$(run TIDINGS_CORS_ALLOW_ORIGIN='not a url' "$GW")
is "$?" 2 "the gateway refuses to start with a malformed origin list"
like "$out" 'scheme://host' "and says why"
done_testing
