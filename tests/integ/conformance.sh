# shellcheck shell=bash
# conformance.sh - the driver shared by the protocol conformance tests
# (55-websocket.t, 56-engineio-conformance.t, 57-socketio-conformance.t).
# Source it after lib.sh. The caller fills GW_CONF[name] with each
# gateway's settings, used to restart a gateway that stopped answering.

declare -A GW_CONF=()

# run_conformance LABEL SCRIPT "GATEWAY..." BUDGET_S ARGS...: runs the case
# runner; its "ok - ..." / "not ok - ..." lines become TAP tests here. The
# runner checks the gateways' /healthz after every case; when one stopped
# answering, that is a failed test (with the process state and any sanitizer
# report), the gateway is restarted and the runner resumes after that case.
run_conformance() {
	local label=$1 script=$2 gws=$3 budget=$4
	shift 4
	local after='' n=0 out rc line down complete g left why admins end=$((SECONDS + budget))
	while :; do
		n=$((n + 1))
		out=$TMP/$label.$n.out
		admins=()
		for g in $gws; do admins+=(--admin-port "${GW_ADMIN[$g]}"); done
		left=$((end - SECONDS))
		((left < 5)) && left=5
		timeout -k 2 "$left" "$PYTHON" "$CLIENTS/$script" cases "$@" "${admins[@]}" \
			${after:+--after "$after"} >"$out" 2>"$TMP/$label.$n.err"
		rc=$?
		down='' complete=0
		while IFS= read -r line; do
			case $line in
			"ok - "*) pass "${line#ok - }" ;;
			"not ok - "*) fail "${line#not ok - }" ;;
			"# cases-complete") complete=1 ;;
			"# gateway-down-after "*) down=${line#\# gateway-down-after } ;;
			"#"*) printf '%s\n' "$line" >&2 ;;
			*) printf '# runner: %s\n' "$line" >&2 ;;
			esac
		done <"$out"
		[ -z "$down" ] && break
		why=''
		for g in $gws; do
			gateway_healthy "$g" && continue
			why+="gateway $g no longer answers /healthz; process state: $(ps -o stat=,pcpu=,time= -p "${GW_PID[$g]}" 2>/dev/null || echo gone)"$'\n'
			stop_gateway "$g" 2
			why+="stopped: ${GW_STATUS[$g]} $(sanitizer_report "$g")"$'\n'
			# keep this instance's logs apart, so the final sanitizer check is about the new one
			mv "$TMP/$g.err" "$TMP/$g-run$n.err" 2>/dev/null
			mv "$TMP/$g.log" "$TMP/$g-run$n.log" 2>/dev/null
			# shellcheck disable=SC2086
			start_gateway "$g" ${GW_CONF[$g]} || bail "gateway $g restarts"
		done
		fail "gateway kept serving after case $down" "$why(restarted; resuming after $down)"
		after=$down
	done
	if [ "$complete" = 1 ] && [ "$rc" = 0 ]; then
		pass "$script ran every case to the end"
	else
		fail "$script ran every case to the end" "exit status $rc
$(tail -n 20 "$TMP/$label.$n.err")"
	fi
}
