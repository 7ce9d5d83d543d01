#!/usr/bin/env bash
# Benchmark: a large artifact from a single holder to N hosts in network namespaces whose
# uplinks are shaped, next to the holder's own upload rate (issue 12: "the large one at N = 16
# in network namespaces").
#
#   tests/bench/swarm_netns.sh BUILD_DIR [-n N] [-s MIB] [-r RATE] [-m "2 1 64"]   (root)
#
# tests/system/netlab.sh makes N hosts on one bridge; every host's eth0 sends at most RATE
# (tbf, default 200mbit: each host's uplink is the bottleneck, as at an edge site; loopback
# would measure this machine's CPU instead). For each upload-slot setting of -m (agent/cluster/
# fetch.h "Upload slots", set through SHOAL_FETCH_SERVE_SLOTS; 2 is the default, 64 is
# "everyone downloads from the holder at once", as before slots existed), N fresh agents:
#   one      one transfer: n2 fetches a MIB artifact from n1 alone (`agentctl artifact fetch`):
#            the holder's own upload rate (MIB / one)
#   all      a second MIB artifact imported on n1 only, deployed from n1: nodes running it
#   last     from `agentctl deploy` to the last node's swap-done (agents' event clocks)
#   ratio    last / one: what N copies cost next to one (N - 1 would be "the holder sends
#            every copy itself"; log2(N) a doubling tree)
#   holder   bytes n1 served meanwhile (shoal_fetch_served_bytes_total) over MIB
# Use a build without sanitizers. Nothing here is run by ctest.
set -uo pipefail
build=${1:?usage: swarm_netns.sh BUILD_DIR [-n N] [-s MIB] [-r RATE] [-m SLOTS...]}
shift
N=16 MIB=100 RATE=200mbit MODES="2 1 64"
while getopts "n:s:r:m:" o; do
	case $o in
	n) N=$OPTARG ;; s) MIB=$OPTARG ;; r) RATE=$OPTARG ;; m) MODES=$OPTARG ;;
	*) echo "usage: swarm_netns.sh BUILD_DIR [-n N] [-s MIB] [-r RATE] [-m SLOTS...]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "SKIP: swarm_netns.sh needs root (network namespaces)"; exit 0; }
. "$(dirname "$0")/bench_lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
NETLAB=$HERE/../system/netlab.sh
export NETLAB_PREFIX=swn$(($$ % 100000)) NETLAB_NET=10.$((100 + $$ % 100)).231 NETLAB_OWNER=$$
bench_setup swarmns
bench_on_exit() { bash "$NETLAB" down >/dev/null 2>&1; }
now_ms() { date +%s%3N; }
addr() { echo "$NETLAB_NET.$1"; }
metric1() { # NAME-REGEX: the value of n1's metric
	ip netns exec "${NETLAB_PREFIX}h1" curl -s "http://$(addr 1):9100/metrics" |
		awk -v m="$1" '$1 ~ m { print $2 }'
}
served() { metric1 '^shoal_fetch_served_bytes_total$'; }
runs_rev() { ctl "$1" --json services 2>/dev/null | tr -d ' \n' |
	grep -q "\"running_rev\":$2,[^}]*\"swapping\":false"; }

bash "$NETLAB" up "$N" >/dev/null || { echo "netlab up failed" >&2; exit 1; }
for i in $(seq 1 "$N"); do
	ip netns exec "${NETLAB_PREFIX}h$i" tc qdisc add dev eth0 root tbf rate "$RATE" \
		burst 256kb latency 200ms || { echo "tbf on h$i failed" >&2; exit 1; }
done
bench_keys
mk_web "$WORK/a1" 1.0 "$MIB"; mk_web "$WORK/a2" 2.0 "$MIB"

echo "swarm_netns: $N hosts, uplinks $RATE (tbf), ${MIB} MiB, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), build $build"
printf '%-6s %-4s %-9s %-9s %-7s %-9s %-7s %-12s %s\n' slots N one "MB/s" all last ratio "holder/size" \
	"holder_busy"
for slots in $MODES; do
	for i in $(seq 1 "$N"); do
		extra=(--metrics "$(addr "$i"):9100")
		SHOAL_FETCH_SERVE_SLOTS=$slots ip netns exec "${NETLAB_PREFIX}h$i" "$AGENTD" \
			--config /dev/null --node-name "n$i" --state-dir "$WORK/s$slots/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "$(addr "$i"):7946" \
			--join "$(addr 1):7946" --keyring "$WORK/keyring" --cluster swn \
			"${opargs[@]}" --log-level warning "${extra[@]}" \
			2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	ok=1 end=$((SECONDS + 90))
	for i in $(seq 1 "$N"); do
		until ctl "$i" status 2>/dev/null | grep -q "members: $N alive"; do
			[ $SECONDS -lt $end ] || { ok=0; break 2; }; sleep 0.3
		done
	done
	[ $ok = 1 ] || { echo "slots=$slots: the cluster did not form in 90 s; n1.log:" >&2; tail -5 "$WORK/n1.log" >&2; stop_all; continue; }
	id1=$(ctl 1 --timeout 300s artifact import "$WORK/a1") || { echo "import failed" >&2; exit 1; }
	id2=$(ctl 1 --timeout 300s artifact import "$WORK/a2") || { echo "import failed" >&2; exit 1; }
	t0=$(now_ms)
	ctl 2 --timeout 300s artifact fetch "$id1" >/dev/null || { echo "fetch failed" >&2; exit 1; }
	one=$(($(now_ms) - t0))
	b0=$(served)
	t0=$(date +%H:%M:%S.%3N | ms_of)
	ctl 1 deploy web "$id2" >/dev/null || { echo "deploy failed" >&2; exit 1; }
	end=$((SECONDS + 600))
	for i in $(seq 1 "$N"); do
		until runs_rev "$i" 1; do [ $SECONDS -lt $end ] || break 2; sleep 0.3; done
	done
	b1=$(served)
	c=0
	for i in $(seq 1 "$N"); do runs_rev "$i" 1 && c=$((c + 1)); done
	last=$(for i in $(seq 1 "$N"); do ctl "$i" events 2>/dev/null; done |
		awk '$3 == "swap-done" && / rev 1 / { print $1 }' | ms_of | sort -n | tail -n 1)
	last=$((last - t0))
	printf '%-6s %-4s %-9s %-9s %-7s %-9s %-7s %-12s %s\n' "$slots" "$N" "${one}ms" \
		"$(awk -v m="$MIB" -v t="$one" 'BEGIN { printf "%.1f", m * 1.048576 / (t / 1000) }')" \
		"$c/$N" "${last}ms" "$(awk -v a="$last" -v b="$one" 'BEGIN { printf "%.1fx", a / b }')" \
		"$(awk -v a=$((b1 - b0)) -v m="$MIB" 'BEGIN { printf "%.1fx", a / (m * 1048576) }')" \
		"$(metric1 '^shoal_fetch_busy_total[{]side="served"')"
	if [ -n "${SWARM_VERBOSE:-}" ]; then	# who served what
		for i in $(seq 1 "$N"); do
			printf ' n%s:%s' "$i" "$(ip netns exec "${NETLAB_PREFIX}h$i" curl -s \
				"http://$(addr "$i"):9100/metrics" | awk '/^shoal_fetch_served_bytes_total / {
				printf "%.0fMiB", $2 / 1048576 }')"
		done
		echo
	fi
	stop_all
	rm -rf "$WORK/s$slots" "$WORK"/n*.sock
done
