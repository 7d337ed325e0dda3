#!/usr/bin/env bash
# Replays every fuzz driver's seed corpus (tests/fuzz/corpus/NAME/) once, so a
# decoder regression on any stored input fails `make test` without fuzzing.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
n=0
fail=0
for drv in "$top"/tests/fuzz/*.c; do
	name=$(basename "$drv" .c)
	bin="$top/build/fuzz/$name"
	corpus="$top/tests/fuzz/corpus/$name"
	n=$((n + 1))
	if [ ! -x "$bin" ]; then
		echo "not ok $n - $name: driver not built ($bin)"
		fail=1
		continue
	fi
	count=$(find "$corpus" -type f 2>/dev/null | wc -l)
	if [ "$count" -eq 0 ]; then
		echo "not ok $n - $name: empty seed corpus"
		fail=1
		continue
	fi
	if out=$(find "$corpus" -type f -print0 | xargs -0 "$bin" 2>&1); then
		echo "ok $n - $name replays $count inputs"
	else
		echo "not ok $n - $name crashed on its corpus"
		printf '%s\n' "$out" | tail -n 20 | sed 's/^/#   /'
		fail=1
	fi
done
echo "1..$n"
exit $fail
