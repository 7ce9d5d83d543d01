#!/usr/bin/env bash
# Benchmark: cluster-agreed rollback latency on loopback.
#
#   tests/bench/rollback.sh BUILD_DIR [N ...]        (default N: 16 64 128)
#
# For each N: N agents on loopback, each on its own address (bench_lib.sh ip_of; BENCH_ADDRS=one:
# all on 127.0.0.1), exec runtime, shared keyring, hold two
# good releases of `web`; v1 then v2 are deployed and run everywhere; then an operator asks
# `agentctl rollback web` on one node, the other nodes echo the vote, a quorum forms and the
# rollback revision spreads. Measured from the agents' own event timestamps (same host clock):
#   quorum   the first "decision" event on any node (a node saw the quorum and wrote the
#            rollback) minus the operator's vote
#   spread   the last node's "swap-done" to the rollback revision minus that first decision:
#            the time from "a quorum of votes exists" to "every node runs the previous
#            artifact" (the exec runtime's spawn included, the service's own start excluded)
#   checks   Ed25519 verifications node n3 computed from the operator's vote until every node
#            ran the rollback (its metrics, shoal_signature_checks_total; "-" for builds
#            without that metric): what signing costs one node, which this machine pays
#            N times over
#   cpu      CPU time n3 used over the same span: what one host of a real fleet spends
# Prints one table row per N. Use a release build (no sanitizers) for meaningful figures.
set -uo pipefail
build=${1:?usage: rollback.sh BUILD_DIR [N ...]}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16 64 128)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/bench_lib.sh"
bench_setup rollback
mk_web "$WORK/v1" 1.0.0
mk_web "$WORK/v2" 2.0.0
# a keyring, and an operator key trusted by every agent (agent/base/sign.h); builds from before
# operator signatures (to compare) have no --operators-dir and sign nothing
bench_keys
# gossip timings: probe 500 ms for the bigger clusters on a small machine
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-500} SHOAL_RETRY_MS=300
all_run() { # REV
	local i
	for i in $(seq 1 "$N"); do
		ctl "$i" --json services | tr -d ' \n' |
			grep -q "\"running_rev\":$1,[^}]*\"swapping\":false" || return 1
	done
}

checks() { # computed signature checks of n3 (empty without the metric)
	curl -s "http://127.0.0.1:$mport/metrics" 2>/dev/null |
		awk '/^shoal_signature_checks_total\{result="computed"\}/ { print $2 }'
}
printf '%-6s %-12s %-14s %-14s %-8s %-8s %s\n' "N" "members ok" "vote->quorum" "quorum->all" \
	"checks" "cpu" "result"
for N in "${sizes[@]}"; do
	base=$((10000 + ($$ % 80) * 256))  # below the ephemeral range (32768+)
	mport=$((base + 250))
	for i in $(seq 1 "$N"); do
		extra=()
		[ "$i" = 3 ] && extra=(--metrics "127.0.0.1:$mport")
		"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/s$N/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "$(ip_of "$i"):$((base + i))" \
			--join "$(ip_of 1):$((base + 1))" --join "$(ip_of 2):$((base + 2))" \
			--keyring "$WORK/keyring" --cluster bench$N --log-level warning "${opargs[@]}" \
			"${extra[@]}" 2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	t0=$SECONDS
	ok=1
	for i in $(seq 1 "$N"); do wait_for 60 ctl "$i" ping || { ok=0; break; }; done
	seen() { ctl "$1" status 2>/dev/null | grep -q "^Voters: *$N members: $N alive"; }
	for i in $(seq 1 "$N"); do wait_for 60 seen "$i" || { ok=0; break; }; done
	tm=$((SECONDS - t0))
	if [ $ok = 0 ]; then
		printf '%-6s %-12s %-14s %-14s %-8s %-8s %s\n' "$N" "no" "-" "-" "-" "-" \
			"cluster did not form (n$i)"
		tail -n 5 "$WORK/n$i.log" >&2; ctl "$i" status 2>&1 | grep -i "voters\|members" >&2
		stop_all
		continue
	fi
	for i in $(seq 1 "$N"); do
		v1=$(ctl "$i" artifact import "$WORK/v1" 2>/dev/null)
		v2=$(ctl "$i" artifact import "$WORK/v2" 2>/dev/null)
	done
	ctl 1 deploy web "$v1" >/dev/null
	wait_for 120 all_run 1
	ctl 1 deploy web "$v2" >/dev/null
	wait_for 120 all_run 2
	marks=()
	for i in $(seq 1 "$N"); do
		marks[$i]=$(last_seq "$i")
	done
	c0=$(checks)
	u0=$(cpu_ms "${PID[2]}")
	ctl 2 rollback web >/dev/null
	res=ok
	wait_for 120 all_run 3 || res="not converged"
	c1=$(checks)
	u1=$(cpu_ms "${PID[2]}")
	: >"$WORK/ev"
	for i in $(seq 1 "$N"); do
		events_all "$i" "${marks[$i]}" >>"$WORK/ev"
	done
	vote=$(awk '$2 == "n2" && $3 == "vote" && $0 ~ /n2 votes/ { print $1; exit }' "$WORK/ev" | ms_of)
	dec=$(awk '$3 == "decision" { print $1 }' "$WORK/ev" | ms_of | sort -n | head -n 1)
	last=$(awk '$3 == "swap-done" && $0 ~ /runs rev 3 / { print $1 }' "$WORK/ev" | ms_of |
		sort -n | tail -n 1)
	printf '%-6s %-12s %-14s %-14s %-8s %-8s %s\n' "$N" "${tm}s" "$((dec - vote)) ms" \
		"$((last - dec)) ms" "$([ -n "$c0" ] && [ -n "$c1" ] && echo $((c1 - c0)) || echo -)" \
		"$((u1 - u0))ms" "$res"
	stop_all
	rm -rf "$WORK/s$N" "$WORK"/n*.sock
done
