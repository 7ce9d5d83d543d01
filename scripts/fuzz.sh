#!/usr/bin/env bash
# Run every libFuzzer target of a SHOAL_FUZZ build for FUZZ_SECONDS each (default 60), starting
# from the committed seed corpus (copied, so the repo only grows when you choose to), and print
# one line per target: executions, corpus size, and whether it found a crash.
#   scripts/fuzz.sh BUILD_DIR [TARGET...]
# Crash reproducers land in tests/fuzz/artifacts/<target>/; add them to the corpus with the fix.
set -uo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR [TARGET...]}
shift
secs=${FUZZ_SECONDS:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in "$build"/tests/fuzz/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f")"); done
fi
status=0
printf '%-26s %8s %14s %10s %s\n' target seconds executions corpus result
for t in "${targets[@]}"; do
	name=${t#fuzz_}
	mkdir -p "$work/$name" "$src/tests/fuzz/artifacts/$t"
	cp -r "$src/tests/fuzz/corpus/$name/." "$work/$name/" 2>/dev/null
	log="$work/$t.log"
	"$build/tests/fuzz/$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
		-artifact_prefix="$src/tests/fuzz/artifacts/$t/" "$work/$name" >"$log" 2>&1
	rc=$?
	execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
	corp=$(ls "$work/$name" | wc -l)
	if [ $rc -eq 0 ]; then res=clean; else res="CRASH (rc=$rc, see $log)"; status=1; cp "$log" "$src/tests/fuzz/artifacts/$t/"; fi
	printf '%-26s %8s %14s %10s %s\n' "$t" "$secs" "$execs" "$corp" "$res"
done
exit $status
