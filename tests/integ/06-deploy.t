#!/usr/bin/env bash
# deploy/ without Docker or a cluster: the Dockerfile's build stage is
# replayed (its COPYs into an empty directory, then its make) so a part it
# forgets to copy fails here; the runtime stage ships what was built; and
# every container of the Kubernetes manifests runs a binary of the image
# and sets only variables that binary reads.
. "$(dirname "$0")/lib.sh"
watchdog 300

DF=$TOP/deploy/Dockerfile
CTX=$TMP/ctx
mkdir -p "$CTX"

# The build stage: COPY src dst (relative to WORKDIR) and the make targets.
plan=$(/usr/bin/python3 - "$DF" <<'EOF'
import shlex, sys
stage = 0
for raw in open(sys.argv[1]).read().replace("\\\n", " ").splitlines():
    words = shlex.split(raw, comments=True)
    if not words:
        continue
    if words[0] == "FROM":
        stage += 1
    elif stage == 1 and words[0] == "COPY":
        print("copy", words[1], words[2])
    elif stage == 1 and words[0] == "RUN" and "make" in words:
        print("make", " ".join(w for w in words if w.startswith("build/")))
    elif stage == 2 and words[0] == "COPY" and words[1].startswith("--from="):
        print("ship", " ".join(words[2:-1]))
    elif stage == 2 and words[0] in ("CMD", "ENTRYPOINT"):
        print("start", raw.split(None, 1)[1])
EOF
)
like "$plan" $'\nmake build/' "the Dockerfile's build stage runs make on build/ targets"

while read -r what a b; do
	[ "$what" = copy ] || continue
	mkdir -p "$CTX/$(dirname "$b")"
	cp -a "$TOP/$a" "$CTX/$b"
done <<<"$plan"
targets=$(sed -n 's/^make //p' <<<"$plan")
out=$(cd "$CTX" && timeout 240 make -s -j2 $targets 2>&1)
is "$?" 0 "make $targets builds from what the build stage copies" || diag "$out"

for t in $targets; do
	out=$(env -i "$CTX/$t" --help 2>&1)
	is "$?" 0 "$t from the build stage runs (--help)"
done

# The migrations must be inside tidingsctl: without sql/ it would embed none.
for f in "$TOP"/sql/*.sql; do
	n=$(basename "$f" .sql)
	if grep -aqF "${n#*_}" "$CTX/build/tidingsctl" 2>/dev/null; then
		pass "the image's tidingsctl carries migration $n"
	else
		fail "the image's tidingsctl carries migration $n"
	fi
done

shipped=$(sed -n 's/^ship //p' <<<"$plan")
for s in $shipped; do
	case " $targets " in
	*" ${s#/src/} "*) pass "the runtime stage ships $s, built by the build stage" ;;
	*) fail "the runtime stage ships $s, built by the build stage" ;;
	esac
done
shipped_names=$(for s in $shipped; do basename "$s"; done | tr '\n' ' ')
image_cmd=$(sed -n 's/^start //p' <<<"$plan")
like "$image_cmd" 'tidings-gateway' "the image starts a gateway unless told otherwise"

# Every container of every manifest: its command is a shipped binary, and
# each variable it is given (env, and the keys of the ConfigMaps it loads)
# is one that binary's --help names (X_FILE names X).
checks=$(/usr/bin/python3 - "$TOP"/deploy/k8s/*.yaml <<'EOF'
import json, sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
for d in docs:
    if d["kind"] != "Deployment":
        continue
    pod = d["spec"]["template"]["spec"]
    if d["spec"]["selector"]["matchLabels"] != d["spec"]["template"]["metadata"]["labels"]:
        print(json.dumps({"deployment": d["metadata"]["name"], "error": "selector does not match the pod labels"}))
    for c in pod.get("initContainers", []) + pod["containers"]:
        names = [e["name"] for e in c.get("env", [])]
        for ref in c.get("envFrom", []):
            cm = ref.get("configMapRef", {}).get("name")
            if cm not in maps:
                print(json.dumps({"deployment": d["metadata"]["name"], "error": f"ConfigMap {cm} is not defined"}))
            names += list(maps.get(cm, {}))
        ports = [p["name"] for p in c.get("ports", [])]
        for probe in ("readinessProbe", "livenessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if port is not None and port not in ports:
                print(json.dumps({"deployment": d["metadata"]["name"], "error": f"{probe} port {port} is not a container port"}))
        print(json.dumps({"deployment": d["metadata"]["name"], "container": c["name"],
                          "command": c.get("command"), "env": names}))
EOF
)
is "$?" 0 "the manifests parse as YAML"
like "$checks" '"container": "worker"' "a manifest runs the worker"
like "$checks" '"container": "migrate"' "a manifest runs the migrations"
like "$checks" '"container": "gateway"' "a manifest runs the gateway"

while IFS= read -r line; do
	[ -n "$line" ] || continue
	if [[ $line == *'"error"'* ]]; then
		fail "manifest: $line"
		continue
	fi
	eval "$(/usr/bin/python3 -c '
import json, shlex, sys
c = json.loads(sys.argv[1])
print("dep=%s name=%s" % (shlex.quote(c["deployment"]), shlex.quote(c["container"])))
print("cmd=(%s)" % " ".join(shlex.quote(w) for w in (c["command"] or [])))
print("envs=(%s)" % " ".join(shlex.quote(e) for e in c["env"]))' "$line")"
	bin=$(basename "${cmd[0]:-tidings-gateway}")
	case " $shipped_names " in
	*" $bin "*) pass "$dep/$name runs $bin, which the image ships" ;;
	*) fail "$dep/$name runs $bin, which the image ships"; continue ;;
	esac
	help=$(env -i "$CTX/build/$bin" "${cmd[@]:1}" --help 2>&1)
	for e in "${envs[@]}"; do
		v=${e%_FILE}
		if grep -qE "(^|[ (,])$v([ ),]|\$)" <<<"$help"; then
			pass "$dep/$name: $bin reads $e"
		else
			fail "$dep/$name: $bin reads $e"
		fi
	done
done <<<"$checks"

# The sample environments name variables their binary reads.
for f in "$TOP"/deploy/*.env.sample; do
	bin=tidings-$(basename "$f" .env.sample)
	help=$(env -i "$CTX/build/$bin" --help 2>&1)
	while IFS='=' read -r v _; do
		[[ $v =~ ^[A-Z] ]] || continue
		if grep -qE "(^|[ (,])$v([ ),]|\$)" <<<"$help"; then
			pass "$(basename "$f"): $bin reads $v"
		else
			fail "$(basename "$f"): $bin reads $v"
		fi
	done <"$f"
done

done_testing
