# shellcheck shell=bash
# lib.sh - shared helpers of the integration tests (tests/integ/*.t).
#
# Source it first thing in a test: `. "$(dirname "$0")/lib.sh"`. It creates
# $TMP (logs, FIFOs, client outputs) and installs a trap that, on any exit,
# stops every process started through it (by PID: TERM, then KILL) and
# removes $TMP. Rules kept everywhere: only 127.0.0.1, every wait has a
# deadline, every client runs under `timeout`, nothing is killed by name.
#
# TAP         pass DESC | fail DESC [DIAG] | check DESC CMD... | is GOT WANT DESC
#             isnt GOT NOT DESC | like GOT ERE DESC | diag TEXT | bail DESC [DIAG]
#             done_testing (prints 1..N; exit 1 when anything failed, after
#             dumping the logs) | watchdog SECONDS (the test fails past that)
# waiting     wait_until SECONDS CMD... (polls every 0.1 s) | now_ms
# processes   track_pid PID | stop_pid PID [GRACE] | alive PID | free_port
# redis       start_redis [PORT] -> REDIS_PORT, REDIS_PID | kill_redis | rcli ARGS...
#             ingress_dump (every ingress entry as JSON lines) | dlv GW FIELD VALUE...
# gateway     require_gateway | setup_stack [VAR=VALUE...] (redis + gateway gw1)
#             start_gateway NAME [VAR=VALUE...] (ports kept in GW_PORT/GW_ADMIN[NAME]
#             for restarts) | stop_gateway NAME [GRACE] -> GW_STATUS[NAME]
#             check_gateway_stop NAME (TAP: exit 0, no sanitizer report)
#             sanitizer_report NAME | gw_url NAME | admin_url NAME | gateway_healthy NAME
#             http_code URL [CURL_ARGS...]
# tokens      token USER [EXP] (valid JWT) | mint ARGS... (clients/mint-token.js)
# clients     node_client NAME SCRIPT ARGS... | py_client NAME ARGS... |
#             client_start NAME CMD... | client_send NAME JSON | client_stop NAME [SECONDS]
#             client_wait NAME FIXED_STRING [COUNT] [SECONDS] | client_wait_q NAME EXPR [SECONDS]
#             client_sid NAME [NTH] | q EXPR NAME... | qtest EXPR NAME... (clients/q.js)
#             count_lines NAME STRING | has_lines NAME STRING [COUNT]
#             run_client NAME SECONDS CMD... (to completion, stdin /dev/null)
#
# Environment understood:
#   TIDINGS_GATEWAY_BIN     gateway binary (default: build/asan/tidings-gateway when
#                           it exists, else build/tidings-gateway)
#   TIDINGS_TEST_KEEP=1     keep $TMP (logs, client outputs) after the test
#   TIDINGS_TEST_VERBOSE=0  do not dump the logs when a test fails (default 1)
#   NODE, PYTHON            interpreters (PYTHON: one that imports Debian's socketio)

set -u
set -o pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INTEG=$TOP/tests/integ
CLIENTS=$INTEG/clients
export TOP INTEG CLIENTS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tidings-integ.XXXXXX")
SECRET=integ-secret-$RANDOM$RANDOM
PREFIX=tidings
export TIDINGS_TEST_TMP=$TMP

# Node and a Python that has Debian's socketio (pyenv shims may shadow it).
NODE=${NODE:-node}
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
	for p in /usr/bin/python3 python3; do
		if "$p" -c 'import socketio' >/dev/null 2>&1; then
			PYTHON=$p
			break
		fi
	done
	PYTHON=${PYTHON:-/usr/bin/python3}
fi

TAP_N=0
TAP_FAILED=0
declare -a LIB_PIDS=()
declare -A GW_PID=() GW_PORT=() GW_ADMIN=() GW_STATUS=()
declare -A CLIENT_PID=() CLIENT_FD=()
REDIS_PORT=
REDIS_PID=
WATCHDOG_PID=

# ---------------------------------------------------------------- TAP

diag() {
	local line
	while IFS= read -r line; do printf '# %s\n' "$line" >&2; done <<<"$*"
}

pass() {
	TAP_N=$((TAP_N + 1))
	printf 'ok %d - %s\n' "$TAP_N" "$1"
}

# fail DESC [DIAGNOSTIC...]
fail() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	printf 'not ok %d - %s\n' "$TAP_N" "$1"
	shift
	[ $# -gt 0 ] && diag "$*"
	return 0
}

# check DESC CMD... : ok when CMD exits 0.
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc" "command failed: $*"; fi
}

# is GOT WANT DESC
is() {
	if [ "$1" = "$2" ]; then
		pass "$3"
	else
		fail "$3" "got:  '$1'
want: '$2'"
	fi
}

# isnt GOT UNWANTED DESC
isnt() {
	if [ "$1" != "$2" ]; then
		pass "$3"
	else
		fail "$3" "got '$1', which it should not be"
	fi
}

# like GOT ERE DESC
like() {
	if [[ $1 =~ $2 ]]; then
		pass "$3"
	else
		fail "$3" "got:  '$1'
want match of: $2"
	fi
}

# Prints the plan and exits: 0 when every test passed.
done_testing() {
	trap - TERM INT
	if [ "$TAP_FAILED" -gt 0 ] && [ "${TIDINGS_TEST_VERBOSE:-1}" = 1 ]; then
		dump_logs
	fi
	printf '1..%d\n' "$TAP_N"
	if [ "$TAP_FAILED" -gt 0 ]; then
		diag "failed $TAP_FAILED of $TAP_N"
		exit 1
	fi
	exit 0
}

# Stops the test here with one failing assertion (e.g. nothing to test against).
bail() {
	fail "$1" "${2:-}"
	done_testing
}

# Shows the end of every log and client output (redis logs: only their end).
dump_logs() {
	local f n
	for f in "$TMP"/*.log "$TMP"/*.err "$TMP"/*.out; do
		[ -s "$f" ] || continue
		n=25
		case ${f##*/} in redis-*) n=3 ;; esac
		diag "---- last lines of ${f##*/}"
		diag "$(tail -n "$n" "$f" | cut -c1-400)"
	done
}

# ---------------------------------------------------------------- processes

track_pid() { LIB_PIDS+=("$1"); }

# In a child about to exec: close the FIFO ends held for clients, so that a
# client sees EOF when we close its FIFO whatever was started after it.
close_client_fds() {
	local fd
	for fd in "${CLIENT_FD[@]}"; do exec {fd}>&-; done
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# stop_pid PID [GRACE_SECONDS]: TERM, then KILL after the grace time; reaps it.
stop_pid() {
	local pid=$1 grace=${2:-5} i
	alive "$pid" || {
		wait "$pid" 2>/dev/null
		return 0
	}
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < grace * 20; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

lib_cleanup() {
	local i fd
	set +e
	for fd in "${CLIENT_FD[@]}"; do exec {fd}>&- 2>/dev/null; done
	for ((i = ${#LIB_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${LIB_PIDS[$i]}" 3
	done
	if [ "${TIDINGS_TEST_KEEP:-0}" = 1 ]; then
		echo "# kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}

lib_on_signal() {
	fail "test finished within its time limit (watchdog or signal)"
	done_testing
}

trap lib_cleanup EXIT
trap lib_on_signal TERM INT

# watchdog SECONDS: the test is stopped (TERM to this shell) past this.
watchdog() {
	local secs=$1 self=$$
	(
		sleep "$secs" &
		sp=$!
		trap 'kill $sp 2>/dev/null; exit 0' TERM
		wait $sp && {
			echo "# watchdog: test exceeded ${secs}s" >&2
			kill -TERM "$self"
		}
	) &
	WATCHDOG_PID=$!
	track_pid "$WATCHDOG_PID"
}

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# wait_until TIMEOUT_SECONDS CMD...: polls CMD every 0.1 s; 0 once it succeeds,
# 1 when TIMEOUT_SECONDS (may be fractional) passed first.
wait_until() {
	local end
	end=$(($(now_ms) + $(awk -v t="$1" 'BEGIN { printf "%d", t * 1000 }')))
	shift
	while :; do
		"$@" && return 0
		(($(now_ms) >= end)) && return 1
		sleep 0.1
	done
}

# ---------------------------------------------------------------- ports

declare -A LIB_USED_PORTS=()

port_listening() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# Prints a free TCP port below the ephemeral range, never the same twice here.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		[ -n "${LIB_USED_PORTS[$p]:-}" ] && continue
		port_listening "$p" && continue
		LIB_USED_PORTS[$p]=1
		echo "$p"
		return 0
	done
	echo "free_port: no free port found" >&2
	return 1
}

# ---------------------------------------------------------------- redis

rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_up() { [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# start_redis [PORT]: a private redis-server; sets REDIS_PORT and REDIS_PID.
# Without PORT a free one is picked (three tries); with PORT it must be that one.
# shellcheck disable=SC2120 # tests pass the port
start_redis() {
	local want=${1:-} port pid dir _
	for _ in 1 2 3; do
		port=${want:-$(free_port)} || return 1
		dir=$TMP/redis-$port
		mkdir -p "$dir"
		(
			close_client_fds
			exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
				--dir "$dir" --daemonize no --logfile "$TMP/redis-$port.log"
		) &
		pid=$!
		track_pid "$pid"
		if wait_until 5 redis_up "$port"; then
			REDIS_PORT=$port
			REDIS_PID=$pid
			return 0
		fi
		stop_pid "$pid" 2
		[ -n "$want" ] && break
	done
	diag "redis-server did not start"
	return 1
}

# kill_redis: SIGKILL the private redis (a crash, not a clean shutdown).
kill_redis() {
	[ -n "$REDIS_PID" ] || return 0
	kill -KILL "$REDIS_PID" 2>/dev/null
	wait "$REDIS_PID" 2>/dev/null
	REDIS_PID=
	return 0
}

# Every ingress entry as JSON lines {"stream","id","fields","b64"}.
ingress_dump() { timeout 10 "$NODE" "$CLIENTS/redis-q.js" "$REDIS_PORT" ingress "$PREFIX"; }

# dlv GW FIELD VALUE...: XADD a delivery entry for gateway GW.
dlv() {
	local gw=$1
	shift
	rcli XADD "$PREFIX:gw:$gw:dlv" '*' "$@" >/dev/null
}

# ---------------------------------------------------------------- gateway

gateway_bin() {
	if [ -n "${TIDINGS_GATEWAY_BIN:-}" ]; then
		echo "$TIDINGS_GATEWAY_BIN"
	elif [ -x "$TOP/build/asan/tidings-gateway" ]; then
		echo "$TOP/build/asan/tidings-gateway"
	else
		echo "$TOP/build/tidings-gateway"
	fi
}

# require_gateway: fails the test at once when there is no gateway binary.
require_gateway() {
	local bin
	bin=$(gateway_bin)
	[ -x "$bin" ] || bail "gateway binary $bin exists" "build it with: make build/asan/tidings-gateway"
	[ -d "$TOP/tests/node_modules/socket.io-client" ] ||
		bail "test clients installed" "run: (cd tests && npm ci)"
	command -v redis-server >/dev/null || bail "redis-server installed"
}

gw_url() { echo "http://127.0.0.1:${GW_PORT[$1]}"; }
admin_url() { echo "http://127.0.0.1:${GW_ADMIN[$1]}"; }

# http_code URL [CURL_ARGS...]: the status code, 000 when nothing answered.
http_code() {
	local url=$1
	shift
	curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" "$url" 2>/dev/null
	return 0
}

gateway_healthy() { [ "$(http_code "$(admin_url "$1")/healthz")" = 200 ]; }

# start_gateway NAME [VAR=VALUE...]: starts a gateway with id NAME on loopback
# (its ports are kept for restarts), waits for /healthz. Extra VAR=VALUE
# settings are added to (or override) the environment below.
start_gateway() {
	local name=$1 bin pid
	shift
	bin=$(gateway_bin)
	[ -n "${GW_PORT[$name]:-}" ] || GW_PORT[$name]=$(free_port)
	[ -n "${GW_ADMIN[$name]:-}" ] || GW_ADMIN[$name]=$(free_port)
	(
		close_client_fds
		exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
			TIDINGS_LISTEN="127.0.0.1:${GW_PORT[$name]}" \
			TIDINGS_ADMIN_LISTEN="127.0.0.1:${GW_ADMIN[$name]}" \
			REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
			TIDINGS_REDIS_PREFIX="$PREFIX" \
			TIDINGS_GATEWAY_ID="$name" \
			WEBUI_SECRET_KEY="$SECRET" \
			ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
			UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
			"$@" "$bin" >>"$TMP/$name.log" 2>>"$TMP/$name.err"
	) &
	pid=$!
	track_pid "$pid"
	GW_PID[$name]=$pid
	GW_STATUS[$name]=
	local deadline=$((SECONDS + 15))
	while ((SECONDS < deadline)); do
		if ! alive "$pid"; then
			wait "$pid"
			GW_STATUS[$name]=$?
			diag "gateway $name exited during start-up with status ${GW_STATUS[$name]}"
			diag "$(tail -n 20 "$TMP/$name.err" "$TMP/$name.log" 2>/dev/null | cut -c1-400)"
			return 1
		fi
		gateway_healthy "$name" && return 0
		sleep 0.1
	done
	diag "gateway $name did not answer /healthz within 15 s"
	return 1
}

# stop_gateway NAME [GRACE]: SIGTERM, wait (KILL past GRACE s, default 10).
# Sets GW_STATUS[NAME]: the exit status, "killed" when it had to be killed,
# "dead:N" when it was already gone (crashed) before the SIGTERM.
stop_gateway() {
	local name=$1 grace=${2:-10} pid=${GW_PID[$1]:-} i
	[ -n "$pid" ] || return 0
	if ! alive "$pid"; then
		wait "$pid" 2>/dev/null
		GW_STATUS[$name]="dead:$?"
		GW_PID[$name]=
		return 0
	fi
	kill -TERM "$pid"
	for ((i = 0; i < grace * 20; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	if alive "$pid"; then
		kill -KILL "$pid"
		wait "$pid" 2>/dev/null
		GW_STATUS[$name]=killed
	else
		wait "$pid"
		GW_STATUS[$name]=$?
	fi
	GW_PID[$name]=
	return 0
}

# sanitizer_report NAME: prints the sanitizer lines of the gateway's stderr.
sanitizer_report() {
	grep -E 'ERROR: (Address|Leak|Undefined|Memory)Sanitizer|runtime error:|SUMMARY: .*Sanitizer' \
		"$TMP/$1.err" 2>/dev/null | head -n 20
}

# check_gateway_stop NAME: stops the gateway, TAP test of a clean exit.
check_gateway_stop() {
	local name=$1 san
	stop_gateway "$name"
	san=$(sanitizer_report "$name")
	if [ "${GW_STATUS[$name]}" = 0 ] && [ -z "$san" ]; then
		pass "gateway $name exits 0 on SIGTERM, no sanitizer report"
	else
		fail "gateway $name exits 0 on SIGTERM, no sanitizer report" \
			"exit status: ${GW_STATUS[$name]}
$san"
	fi
}

# ---------------------------------------------------------------- tokens

# token USER [EXP_SECONDS]: a valid JWT (tidingsctl when built, else node).
token() {
	local user=$1 exp=${2:-3600} t
	if [ -x "$TOP/build/tidingsctl" ]; then
		t=$(WEBUI_SECRET_KEY=$SECRET timeout 5 "$TOP/build/tidingsctl" token --user "$user" --exp "$exp" 2>/dev/null)
		if [ -n "$t" ]; then
			echo "$t"
			return 0
		fi
		diag "tidingsctl token failed; minting in node"
	fi
	WEBUI_SECRET_KEY=$SECRET timeout 5 "$NODE" "$CLIENTS/mint-token.js" --user "$user" --exp "$exp"
}

# mint ARGS...: mint-token.js with the test secret (forged variants).
mint() { WEBUI_SECRET_KEY=$SECRET timeout 5 "$NODE" "$CLIENTS/mint-token.js" "$@"; }

# ---------------------------------------------------------------- clients

# client_start NAME CMD...: runs CMD under `timeout`, stdin from a FIFO we
# hold open, stdout to $TMP/NAME.out (JSON lines), stderr to $TMP/NAME.err.
client_start() {
	local name=$1 fd
	shift
	rm -f "$TMP/$name.in"
	mkfifo "$TMP/$name.in"
	# Read-write open of a FIFO never blocks; closing it gives the client EOF.
	exec {fd}<>"$TMP/$name.in"
	CLIENT_FD[$name]=$fd
	(
		close_client_fds
		exec timeout -k 2 "${CLIENT_TIMEOUT:-40}" "$@" <"$TMP/$name.in" >"$TMP/$name.out" 2>"$TMP/$name.err"
	) &
	CLIENT_PID[$name]=$!
	track_pid "${CLIENT_PID[$name]}"
}

node_client() {
	local name=$1 script=$2
	shift 2
	client_start "$name" "$NODE" "$CLIENTS/$script" "$@"
}

py_client() {
	local name=$1
	shift
	client_start "$name" "$PYTHON" "$CLIENTS/sio_client.py" "$@"
}

# client_send NAME JSON: one command line to the client's stdin. Written by
# an external command under `timeout`, so a client that stopped reading
# cannot block the test (a builtin blocked on a full FIFO defers all traps).
client_send() {
	printf '%s\n' "$2" | timeout 5 tee -a "$TMP/$1.in" >/dev/null ||
		diag "client_send $1: could not write the command within 5 s"
}

client_out() { echo "$TMP/$1.out"; }

# q EXPR NAME...: evaluates EXPR over the output lines of the named clients.
q() {
	local expr=$1 f=() n
	shift
	for n in "$@"; do f+=("$TMP/$n.out"); done
	timeout 10 "$NODE" "$CLIENTS/q.js" "$expr" "${f[@]}"
}

qtest() {
	local expr=$1 f=() n
	shift
	for n in "$@"; do f+=("$TMP/$n.out"); done
	timeout 10 "$NODE" "$CLIENTS/q.js" --test "$expr" "${f[@]}"
}

# count_lines NAME FIXED_STRING: output lines of client NAME containing it.
count_lines() { grep -cF -- "$2" "$TMP/$1.out" 2>/dev/null || true; }

has_lines() { [ "$(count_lines "$1" "$2")" -ge "${3:-1}" ]; }

# client_wait NAME FIXED_STRING [COUNT] [TIMEOUT_S]: waits for COUNT lines.
client_wait() {
	local name=$1 s=$2 n=${3:-1} t=${4:-10}
	wait_until "$t" has_lines "$name" "$s" "$n"
}

# client_wait_q NAME EXPR [TIMEOUT_S]: waits until EXPR holds over its output.
client_wait_q() {
	local name=$1 e=$2 t=${3:-10}
	wait_until "$t" qtest "$e" "$name"
}

# client_sid NAME [NTH]: the socket id of the NTH (default 1st) connect line.
client_sid() { q "(L.filter(l => l.t === 'connect')[${2:-1} - 1] || {}).id || ''" "$1"; }

# client_stop NAME [TIMEOUT_S]: EOF on stdin, wait, else stop by PID.
# Returns the client's exit status (124/137 when it had to be stopped).
client_stop() {
	local name=$1 t=${2:-5} pid=${CLIENT_PID[$1]:-} fd=${CLIENT_FD[$1]:-} i st
	[ -n "$fd" ] && exec {fd}>&-
	unset 'CLIENT_FD[$name]'
	[ -n "$pid" ] || return 0
	for ((i = 0; i < t * 20; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	alive "$pid" && stop_pid "$pid" 2
	wait "$pid" 2>/dev/null
	st=$?
	CLIENT_PID[$name]=
	return $st
}

# run_client NAME TIMEOUT_S CMD...: runs a client to completion (no stdin).
run_client() {
	local name=$1 t=$2
	shift 2
	timeout -k 2 "$t" "$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err"
}

# ---------------------------------------------------------------- common setup

# setup_stack [VAR=VALUE...]: redis + gateway gw1 (with those settings),
# failing the whole test when either does not come up.
setup_stack() {
	require_gateway
	start_redis || bail "private redis-server starts"
	start_gateway gw1 "$@" || bail "gateway gw1 starts and answers /healthz"
}
