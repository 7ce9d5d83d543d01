#!/usr/bin/env bash
# Benchmark: what an idle cluster of real agents sends, per node and second ("bytes at rest").
#
#   tests/bench/rest.sh BUILD_DIR [-n "16 64"] [-w SECONDS] [-s SETTLE]
#
# For each N: N agents on 127.0.0.1 (distinct ports, exec runtime, shared keyring, an operator
# key when the build has them, the gossip timings of rollback.sh). Once every node sees N
# alive voters, a small artifact (imported on every node) is deployed and runs everywhere, so
# the fleet's records exist (roster, deploy and electorate, health; with node keys, signed);
# after SETTLE seconds (default 20) of nothing, the agents' own counters
# (shoal_gossip_bytes_total: UDP, sealed sizes; shoal_gossip_stream_bytes_total: TCP streams,
# i.e. anti-entropy) are read on every node, again WINDOW seconds later (default 60), and
# the table gives bytes sent per node and second: UDP, TCP and both, the mean over the nodes.
# Use a release build (no sanitizers). Nothing here is run by ctest. Needs curl.
set -uo pipefail
build=${1:?usage: rest.sh BUILD_DIR [-n SIZES] [-w SECONDS] [-s SETTLE]}
shift
sizes="16 64" window=60 settle=20
while getopts "n:w:s:" o; do
	case $o in
	n) sizes=$OPTARG ;;
	w) window=$OPTARG ;;
	s) settle=$OPTARG ;;
	*) echo "usage: rest.sh BUILD_DIR [-n SIZES] [-w SECONDS] [-s SETTLE]" >&2; exit 2 ;;
	esac
done
. "$(dirname "$0")/bench_lib.sh"
command -v curl >/dev/null || { echo "curl is needed (metrics)" >&2; exit 2; }
bench_setup rest
mk_web "$WORK/web" 1.0.0
bench_keys
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-500} SHOAL_RETRY_MS=300
all_run() {
	local i
	for i in $(seq 1 "$N"); do
		ctl "$i" --json services | tr -d ' \n' |
			grep -q "\"running_rev\":1,[^}]*\"swapping\":false" || return 1
	done
}
counters() { # -> "udp_out tcp_out" summed over the nodes
	local i u=0 t=0 m
	for i in $(seq 1 "$N"); do
		m=$(curl -s --max-time 5 "http://127.0.0.1:$((mbase + i))/metrics")
		u=$((u + $(awk '/^shoal_gossip_bytes_total\{direction="out"\}/ { print $2 }' <<<"$m")))
		t=$((t + $(awk '/^shoal_gossip_stream_bytes_total\{direction="out"\}/ { print $2 }' <<<"$m")))
	done
	echo "$u $t"
}

printf '%-6s %-10s %-12s %-12s %-12s %s\n' "N" "records" "UDP B/s" "TCP B/s" "total B/s" "members"
for N in $sizes; do
	base=$((10000 + ($$ % 80) * 256)) mbase=$((base + 128))
	for i in $(seq 1 "$N"); do
		"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/s$N/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "127.0.0.1:$((base + i))" \
			--join "127.0.0.1:$((base + 1))" --join "127.0.0.1:$((base + 2))" \
			--metrics "127.0.0.1:$((mbase + i))" \
			--keyring "$WORK/keyring" --cluster rest$N --log-level warning "${opargs[@]}" \
			2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	ok=1
	seen() { ctl "$1" status 2>/dev/null | grep -q "^Voters: *$N members: $N alive"; }
	for i in $(seq 1 "$N"); do wait_for 90 seen "$i" || { ok=0; break; }; done
	if [ $ok = 1 ]; then
		for i in $(seq 1 "$N"); do id=$(ctl "$i" artifact import "$WORK/web" 2>/dev/null); done
		ctl 1 deploy web "$id" >/dev/null && wait_for 120 all_run || ok=0
	fi
	if [ $ok = 0 ]; then
		printf '%-6s %s\n' "$N" "cluster did not form or deploy did not run everywhere"
		stop_all
		continue
	fi
	sleep "$settle"
	read -r u0 t0 <<<"$(counters)"
	s0=$(date +%s.%N)
	sleep "$window"
	read -r u1 t1 <<<"$(counters)"
	s1=$(date +%s.%N)
	recs=$(ctl 1 status | awk '/record\(s\)/ { print $(NF-1) }')
	mem=$(ctl 1 status | sed -n 's/^Members: *//p')
	awk -v n="$N" -v u="$((u1 - u0))" -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" \
		-v r="$recs" -v m="$mem" 'BEGIN {
		d = (s1 - s0) * n
		printf "%-6s %-10s %-12.0f %-12.0f %-12.0f %s\n", n, r, u / d, t / d, (u + t) / d, m }'
	stop_all
	rm -rf "$WORK/s$N" "$WORK"/n*.sock
done
