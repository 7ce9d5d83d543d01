#!/usr/bin/env bash
# Benchmark: a deploy from a single holder fanning out (peer-to-peer artifacts as a swarm).
#
#   tests/bench/swarm.sh BUILD_DIR [-n "16 64 128"] [-r RUNS] [-L "16"] [-s LARGE_MIB]
#
# For each N: N agents on loopback, each on its own address (bench_lib.sh ip_of; BENCH_ADDRS=one
# puts them all on 127.0.0.1), exec runtime, shared keyring.
# A small artifact (a shell script and release.ini, a few hundred bytes) is imported on n1
# ONLY and deployed from n1; every other node learns the revision by gossip, finds the
# artifact missing and fetches it from whoever holds it (n1 at first, then every node that
# fetched it: agent/cluster/fetch.c asks the current holders of the health records, in random
# order). Measured, per run:
#   all      how many nodes run the revision (goal: N of N, every time)
#   last     the last node's "swap-done" for it, minus the moment `agentctl deploy` was called
#            (from the agents' own event timestamps, same host clock; exec spawn included)
#   learned  the last node's "desired" (it learned the revision by gossip) minus the deploy:
#            the revision's spread, which the fetch does not control
#   fetch    the largest per-node time from "desired" to "swap-done": the fetch and the swap
#   holder   bytes n1 sent on gossip TCP streams meanwhile (fetch answers, plus the few
#            anti-entropy frames; from its metrics endpoint), and that over the artifact size
#   checks   Ed25519 verifications n1 computed meanwhile (shoal_signature_checks_total;
#            "-" for builds without it): the signing cost of one node, which this machine
#            pays N times over
#   cpu      CPU time n2 (a node that is not the holder) used meanwhile: what one host of a
#            real fleet spends on a deploy (here, N such agents share this machine's cores)
# Then the same with a LARGE_MIB (default 100) MiB artifact at each N of -L (default 16).
# Network namespaces (issue 12 asks for them at N = 16) are not used: loopback only, so the
# large figure is bounded by this host's CPU and LMDB writes, not by a link.
# Use a build without sanitizers (make bench uses build/). Nothing here is run by ctest.
set -uo pipefail
build=${1:?usage: swarm.sh BUILD_DIR [-n SIZES] [-r RUNS] [-L LARGE_SIZES] [-s LARGE_MIB]}
shift
sizes="16 64 128" runs=1 large_sizes="16" large_mib=100
while getopts "n:r:L:s:" o; do
	case $o in
	n) sizes=$OPTARG ;;
	r) runs=$OPTARG ;;
	L) large_sizes=$OPTARG ;;
	s) large_mib=$OPTARG ;;
	*) echo "usage: swarm.sh BUILD_DIR [-n SIZES] [-r RUNS] [-L LARGE_SIZES] [-s LARGE_MIB]" >&2
	   exit 2 ;;
	esac
done
. "$(dirname "$0")/bench_lib.sh"
command -v curl >/dev/null || { echo "curl is needed (metrics)" >&2; exit 2; }
bench_setup swarm
bench_keys
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-500}
metric_out() { # bytes n1 sent on streams
	curl -s "http://127.0.0.1:$mport/metrics" |
		awk '/^shoal_gossip_stream_bytes_total\{direction="out"\}/ { print $2 }'
}
metric_checks() { # Ed25519 verifications n1 computed (empty without the metric)
	curl -s "http://127.0.0.1:$mport/metrics" |
		awk '/^shoal_signature_checks_total\{result="computed"\}/ { print $2 }'
}
runs_rev() { # I REV
	ctl "$1" --json services 2>/dev/null | tr -d ' \n' |
		grep -q "\"running_rev\":$2,[^}]*\"swapping\":false"
}
count_rev() { # REV: nodes running it
	local i c=0
	for i in $(seq 1 "$N"); do runs_rev "$i" "$1" && c=$((c + 1)); done
	echo "$c"
}

echo "swarm: one holder, deploy from it; loopback, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), build $build"
printf '%-6s %-8s %-4s %-8s %-9s %-9s %-9s %-12s %-12s %-7s %s\n' N artifact run all last \
	learned fetch holder_out "holder/size" checks cpu
rev=0
bench() { # LABEL DIR
	local label=$1 dir=$2 id bytes t0 b0 b1 end c last i
	local -a mark=()
	id=$(ctl 1 --timeout 300s artifact import "$dir" 2>/dev/null) ||
		{ echo "import failed" >&2; return 1; }
	bytes=$(find "$dir" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
	rev=$((rev + 1))
	for i in $(seq 1 "$N"); do mark[$i]=$(last_seq "$i"); done
	b0=$(metric_out)
	k0=$(metric_checks)
	u0=$(cpu_ms "${PID[1]}")
	t0=$(date +%H:%M:%S.%3N | ms_of)
	ctl 1 deploy web "$id" >/dev/null || { echo "deploy failed" >&2; return 1; }
	# every node, polled one after the other; bounded: 60 s (small) or 300 s (large)
	end=$((SECONDS + (bytes > 10000000 ? 300 : 60)))
	for i in $(seq 1 "$N"); do
		until runs_rev "$i" "$rev"; do [ $SECONDS -lt $end ] || break 2; sleep 0.1; done
	done
	b1=$(metric_out)
	k1=$(metric_checks)
	u1=$(cpu_ms "${PID[1]}")
	c=$(count_rev "$rev")
	: >"$WORK/ev"
	for i in $(seq 1 "$N"); do events_all "$i" "${mark[$i]:-0}" >>"$WORK/ev"; done
	last=$(awk -v r="rev $rev " '$3 == "swap-done" && index($0, r) { print $1 }' "$WORK/ev" |
		ms_of | sort -n | tail -n 1)
	learned=$(awk -v r="rev $rev " '$3 == "desired" && index($0, r) { print $1 }' "$WORK/ev" |
		ms_of | sort -n | tail -n 1)
	# per node: swap-done minus desired (both in ms of the day), the largest
	fetch=$(awk -v r="rev $rev " '($3 == "desired" || $3 == "swap-done") && index($0, r) {
			split($1, t, /[:.]/); ms = ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]
			if ($3 == "desired") d[$2] = ms; else s[$2] = ms }
		END { m = -1; for (n in s) if (n in d && s[n] - d[n] > m) m = s[n] - d[n]; print m }' \
		"$WORK/ev")
	printf '%-6s %-8s %-4s %-8s %-9s %-9s %-9s %-12s %-12s %-7s %s\n' "$N" "$label" "$run" "$c/$N" \
		"$([ -n "$last" ] && echo "$((last - t0))ms" || echo -)" \
		"$([ -n "$learned" ] && echo "$((learned - t0))ms" || echo -)" "${fetch}ms" \
		"$((b1 - b0))" "$(awk -v a=$((b1 - b0)) -v b="$bytes" 'BEGIN { printf "%.1fx", a / b }')" \
		"$([ -n "$k0" ] && [ -n "$k1" ] && echo $((k1 - k0)) || echo -)" "$((u1 - u0))ms"
}

for N in $(echo $sizes $large_sizes | tr ' ' '\n' | sort -nu); do
	base=$((10000 + ($$ % 80) * 256))
	mport=$((base + 250))
	rev=0
	for i in $(seq 1 "$N"); do
		extra=()
		[ "$i" = 1 ] && extra=(--metrics "127.0.0.1:$mport")
		"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/s$N/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "$(ip_of "$i"):$((base + i))" \
			--join "$(ip_of 1):$((base + 1))" --join "$(ip_of 2):$((base + 2))" \
			--keyring "$WORK/keyring" --cluster swarm$N --log-level warning "${extra[@]}" \
			"${opargs[@]}" \
			2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	ok=1
	for i in $(seq 1 "$N"); do wait_for 60 ctl "$i" ping || { ok=0; break; }; done
	seen() { ctl "$1" status 2>/dev/null | grep -q "members: $N alive"; }
	for i in $(seq 1 "$N"); do [ $ok = 1 ] && { wait_for 90 seen "$i" || ok=0; }; done
	if [ $ok = 0 ]; then
		echo "N=$N: the cluster did not form" >&2
		stop_all
		continue
	fi
	if [[ " $sizes " == *" $N "* ]]; then
		for run in $(seq 1 "$runs"); do
			mk_web "$WORK/small$N.$run" "1.$run"
			bench small "$WORK/small$N.$run"
		done
	fi
	if [[ " $large_sizes " == *" $N "* ]]; then
		run=1
		mk_web "$WORK/large$N" "9.0" "$large_mib"
		bench "${large_mib}MiB" "$WORK/large$N"
		rm -rf "$WORK/large$N"
	fi
	stop_all
	rm -rf "$WORK/s$N" "$WORK"/n*.sock
done
