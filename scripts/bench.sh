#!/usr/bin/env bash
# Run every benchmark under tests/bench/ against a build without sanitizers (`make bench` uses
# build/) and print their tables. Nothing here is run by ctest; figures are measured on the
# machine at hand, never stored. BENCH="store gossip_sim gossip rollback rest p2p swarm traffic" picks
# a subset (traffic needs root).
#   scripts/bench.sh BUILD_DIR
set -uo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
which=${BENCH:-"store gossip_sim gossip rollback rest p2p swarm traffic"}
status=0
run() {
	echo "== $1 ($(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg))"
	shift
	"$@" || { echo "bench failed: $*" >&2; status=1; }
	echo
}
for b in $which; do
	case $b in
	store) run store "$build/tests/bench/bench_store" ;;
	# SIM_SIZES: the default table goes to N = 10,000 (~4 min, ~10 GiB of RAM)
	gossip_sim) run gossip_sim "$build/tests/bench/bench_gossip_sim" ${SIM_SIZES:-} ;;
	gossip) run gossip bash "$here/tests/bench/gossip.sh" -b "$build" -n "16 64 128" --stop-phase ;;
	rollback) [ -f "$here/tests/bench/rollback.sh" ] && run rollback bash "$here/tests/bench/rollback.sh" "$build" ;;
	rest) run rest bash "$here/tests/bench/rest.sh" "$build" -n "16 64" ;;
	p2p) [ -f "$here/tests/bench/p2p.sh" ] && run p2p bash "$here/tests/bench/p2p.sh" -b "$build" ;;
	swarm) run swarm bash "$here/tests/bench/swarm.sh" "$build" -n "16 64 128" -r 3 -L 16 ;;
	traffic) run traffic bash "$here/tests/bench/traffic.sh" "$build" ${TRAFFIC_SIZES:-} ;;
	*) echo "unknown benchmark '$b'" >&2; status=2 ;;
	esac
done
exit $status
