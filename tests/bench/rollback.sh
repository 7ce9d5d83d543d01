#!/usr/bin/env bash
# Benchmark: cluster-agreed rollback latency on loopback.
#
#   tests/bench/rollback.sh BUILD_DIR [N ...]        (default N: 16 64 128)
#
# For each N: N agents on 127.0.0.1 (distinct ports, exec runtime, shared keyring) hold two
# good releases of `web`; v1 then v2 are deployed and run everywhere; then an operator asks
# `agentctl rollback web` on one node, the other nodes echo the vote, a quorum forms and the
# rollback revision spreads. Measured from the agents' own event timestamps (same host clock):
#   quorum   the first "decision" event on any node (a node saw the quorum and wrote the
#            rollback) minus the operator's vote
#   spread   the last node's "swap-done" to the rollback revision minus that first decision:
#            the time from "a quorum of votes exists" to "every node runs the previous
#            artifact" (the exec runtime's spawn included, the service's own start excluded)
# Prints one table row per N. Use a release build (no sanitizers) for meaningful figures.
set -uo pipefail
build=${1:?usage: rollback.sh BUILD_DIR [N ...]}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16 64 128)
AGENTD=$build/agent/agentd AGENTCTL=$build/agent/agentctl
SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/shoal-bench-rollback-XXXXXX)
declare -a PID=()
stop_all() {
	local p
	for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PID[@]}"; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null
	done
	PID=()
}
cleanup() { stop_all; [ -n "${SHOAL_KEEP_TMP:-}" ] && cp "$WORK/ev" /tmp/bench-ev.txt; rm -rf "$WORK"; }
trap cleanup EXIT
ctl() { local i=$1; shift; "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }
wait_for() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
mk() { # NAME VERSION
	local d=$WORK/$1
	mkdir -p "$d/bin"
	# stops at once on SIGTERM (wait is interrupted; sleep alone would delay the trap)
	printf '#!/bin/sh\ntrap '"'"'kill $s 2>/dev/null; exit 0'"'"' TERM\nwhile :; do sleep 10 & s=$!; wait $s; done\n' \
		>"$d/bin/web"
	chmod +x "$d/bin/web"
	printf '[release]\nservice = web\nruntime = exec\nversion = %s\n[exec]\ncommand = ./bin/web\n' \
		"$2" >"$d/release.ini"
}
mk v1 1.0.0
mk v2 2.0.0
head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"; echo >>"$WORK/keyring"; chmod 600 "$WORK/keyring"
# an operator key trusted by every agent (agent/base/sign.h); builds from before operator
# signatures (to compare) have no --operators-dir and sign nothing
opargs=()
"$AGENTD" --help >"$WORK/help" 2>/dev/null	# a file: `--help | grep -q` may SIGPIPE agentd
if grep -q -- --operators-dir "$WORK/help"; then
	mkdir -p "$WORK/operators"
	"$AGENTCTL" keygen "$WORK/operator.key" >/dev/null
	cp "$WORK/operator.key.pub" "$WORK/operators/bench.pub"
	export SHOAL_OPERATOR_KEY=$WORK/operator.key
	opargs=(--operators-dir "$WORK/operators")
fi
# gossip timings: probe 500 ms for the bigger clusters on a small machine
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-500} SHOAL_RETRY_MS=300
# The agent answers `events` 512 at a time (fleet.h): a cluster of 128 makes more than that per
# node in one deploy (every peer's health, member events), so read every page.
events_all() { # I [SINCE]: node I's events after SINCE (text), every page
	local i=$1 since=${2:-0} page n
	while :; do
		page=$(ctl "$i" events --since "$since" 2>/dev/null | grep -v '^-- ') || return 0
		[ -n "$page" ] || return 0
		printf '%s\n' "$page"
		n=$(printf '%s\n' "$page" | wc -l)
		[ "$n" -lt 512 ] && return 0
		since=$((since + n))
	done
}
last_seq() { # I: the seq of node I's newest event (0: none)
	local i=$1 s=0 out n
	while :; do
		out=$(ctl "$i" --json events --since "$s" 2>/dev/null) || break
		n=$(grep -c '"seq"' <<<"$out")
		[ "$n" -gt 0 ] && s=$(tail -n 1 <<<"$out" | sed -n 's/.*"seq": *\([0-9]*\).*/\1/p')
		[ "$n" -lt 512 ] && break
	done
	echo "$s"
}
ms_of() { # "HH:MM:SS.mmm" -> ms of the day
	awk -F'[:.]' '{ printf "%d\n", (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'
}
all_run() { # REV
	local i
	for i in $(seq 1 "$N"); do
		ctl "$i" --json services | tr -d ' \n' |
			grep -q "\"running_rev\":$1,[^}]*\"swapping\":false" || return 1
	done
}

printf '%-6s %-12s %-14s %-14s %s\n' "N" "members ok" "vote->quorum" "quorum->all" "result"
for N in "${sizes[@]}"; do
	base=$((10000 + ($$ % 80) * 256))  # below the ephemeral range (32768+)
	for i in $(seq 1 "$N"); do
		"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/s$N/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "127.0.0.1:$((base + i))" \
			--join "127.0.0.1:$((base + 1))" --join "127.0.0.1:$((base + 2))" \
			--keyring "$WORK/keyring" --cluster bench$N --log-level warning "${opargs[@]}" \
			2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	t0=$SECONDS
	ok=1
	for i in $(seq 1 "$N"); do wait_for 60 ctl "$i" ping || { ok=0; break; }; done
	seen() { ctl "$1" status 2>/dev/null | grep -q "^Voters: *$N members: $N alive"; }
	for i in $(seq 1 "$N"); do wait_for 60 seen "$i" || { ok=0; break; }; done
	tm=$((SECONDS - t0))
	if [ $ok = 0 ]; then
		printf '%-6s %-12s %-14s %-14s %s\n' "$N" "no" "-" "-" "cluster did not form (n$i)"
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
	ctl 2 rollback web >/dev/null
	res=ok
	wait_for 120 all_run 3 || res="not converged"
	: >"$WORK/ev"
	for i in $(seq 1 "$N"); do
		events_all "$i" "${marks[$i]}" >>"$WORK/ev"
	done
	vote=$(awk '$2 == "n2" && $3 == "vote" && $0 ~ /n2 votes/ { print $1; exit }' "$WORK/ev" | ms_of)
	dec=$(awk '$3 == "decision" { print $1 }' "$WORK/ev" | ms_of | sort -n | head -n 1)
	last=$(awk '$3 == "swap-done" && $0 ~ /runs rev 3 / { print $1 }' "$WORK/ev" | ms_of |
		sort -n | tail -n 1)
	printf '%-6s %-12s %-14s %-14s %s\n' "$N" "${tm}s" "$((dec - vote)) ms" "$((last - dec)) ms" \
		"$res"
	stop_all
	rm -rf "$WORK/s$N" "$WORK"/n*.sock
done
