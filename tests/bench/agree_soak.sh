#!/usr/bin/env bash
# Agreement soak: tests/sim/sim_agree.c over many seeds in a Release build (the ctest run,
# label sim, does 1,000 under ASan). Prints the simulator's summary and a table:
#
#   tests/bench/agree_soak.sh [-b BUILD_DIR] [-n SEEDS] [-j SHARDS]
#
# SEEDS defaults to 100000; SHARDS (default 1) processes run disjoint seed ranges side by side
# and their tables are printed one per shard. Columns: seeds, failed seeds, decisions (bad
# records rolled back), re-cast votes (rule 4: behind / stuck), the highest round any vote
# reached, rounds seen stuck that were later decided (split targets resolved), joins,
# removals, kills between persisting a vote and gossiping it, wall time (record the load:
# figures are only comparable at similar load). A failing seed prints "replay: SEED=n".
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build-release
seeds=100000
shards=1
while getopts "b:n:j:" o; do
	case $o in
	b) build=$OPTARG ;;
	n) seeds=$OPTARG ;;
	j) shards=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD_DIR] [-n SEEDS] [-j SHARDS]" >&2; exit 2 ;;
	esac
done
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target sim_agree_chaos >/dev/null
bin=$build/tests/sim/sim_agree_chaos
echo "agree soak: $seeds seeds, $shards shard(s), load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%FT%TZ)"
per=$(( (seeds + shards - 1) / shards ))
pids=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < shards; i++)); do
	base=$(( i * per ))
	n=$(( seeds - base < per ? seeds - base : per ))
	SEED_BASE=$base SIM_TABLE=1 "$bin" "$n" >"$tmp/$i" 2>&1 &
	pids+=($!)
done
rc=0
for ((i = 0; i < shards; i++)); do
	wait "${pids[$i]}" || rc=1
	cat "$tmp/$i"
done
echo "load at the end $(cut -d' ' -f1 /proc/loadavg)"
exit $rc
