#!/usr/bin/env bash
# Peer-to-peer artifact throughput: two agentd processes on 127.0.0.1; an artifact of SIZE MiB
# (random, incompressible, one file) is imported on n1 and fetched by n2 with
# `agentctl artifact fetch ID --from n1` (agent/cluster/fetch.c over the sealed gossip TCP port:
# XChaCha20-Poly1305 per 256 KiB chunk, BLAKE2b per chunk and per blob on receipt, written to
# LMDB through a store import). Each run uses a fresh artifact. Printed per run: the local
# import on n1 (reference: store write speed) and the peer fetch, in MB/s (10^6 bytes/s).
#
#   tests/bench/p2p.sh [-b BUILD_DIR] [-s SIZE_MIB] [-r RUNS]
#
# Use a build without sanitizers (e.g. cmake -DCMAKE_BUILD_TYPE=Release) for meaningful figures.
# Nothing here is run by ctest.
set -u

BUILD=""
SIZE=100
RUNS=3
while getopts "b:s:r:" o; do
	case $o in
	b) BUILD=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	r) RUNS=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD_DIR] [-s SIZE_MIB] [-r RUNS]" >&2; exit 2 ;;
	esac
done
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRCDIR/build}
AGENTD=$BUILD/agent/agentd
AGENTCTL=$BUILD/agent/agentctl
[ -x "$AGENTD" ] && [ -x "$AGENTCTL" ] || { echo "no agentd/agentctl in $BUILD" >&2; exit 2; }

WORK=$(mktemp -d /tmp/shoal-p2p-XXXXXX)
BASE=$((14000 + ($$ % 1000) * 10)) # below the ephemeral range (32768..)
declare -a PID=()
cleanup() {
	local i
	for i in "${!PID[@]}"; do kill -TERM "${PID[$i]}" 2>/dev/null; done
	for i in "${!PID[@]}"; do
		for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${PID[$i]}" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ctl() { local i=$1; shift; "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }
now_ns() { date +%s%N; }
head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"; echo >>"$WORK/keyring"; chmod 600 "$WORK/keyring"
for i in 1 2; do
	"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/n$i" \
		--socket "$WORK/n$i.sock" --socket-group "" --bind "127.0.0.1:$((BASE + i))" \
		--join "127.0.0.1:$((BASE + 1))" --keyring "$WORK/keyring" --cluster p2pbench \
		--log-level notice 2>>"$WORK/n$i.log" &
	PID[$i]=$!
done
for i in 1 2; do
	for _ in $(seq 1 100); do ctl "$i" ping >/dev/null 2>&1 && break; sleep 0.1; done
	ctl "$i" ping >/dev/null 2>&1 || { echo "agent n$i does not answer" >&2; tail "$WORK/n$i.log"; exit 1; }
done

mbps() { awk -v b="$1" -v ns="$2" 'BEGIN { printf "%.1f", b / (ns / 1e9) / 1e6 }'; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e9 }'; }

echo "peer-to-peer artifact fetch, ${SIZE} MiB, loopback, $(nproc) CPUs, build $BUILD"
printf '%-4s %10s %10s %12s %10s %12s\n' run bytes import_s import_MB/s fetch_s fetch_MB/s
for run in $(seq 1 "$RUNS"); do
	d=$WORK/art$run
	mkdir -p "$d"
	head -c $((SIZE * 1024 * 1024)) /dev/urandom >"$d/blob.bin"
	printf '[release]\nservice = bench\nruntime = exec\nversion = %s\n[exec]\ncommand = ./blob.bin\n' \
		"$run" >"$d/release.ini"
	bytes=$(stat -c %s "$d/blob.bin")
	t0=$(now_ns)
	id=$(ctl 1 --timeout 600s artifact import "$d" 2>/dev/null) || { echo "import failed" >&2; exit 1; }
	t1=$(now_ns)
	ctl 2 --timeout 600s artifact fetch "$id" --from "127.0.0.1:$((BASE + 1))" >/dev/null ||
		{ echo "fetch failed" >&2; tail "$WORK/n2.log"; exit 1; }
	t2=$(now_ns)
	printf '%-4s %10s %10s %12s %10s %12s\n' "$run" "$bytes" "$(secs $((t1 - t0)))" \
		"$(mbps "$bytes" $((t1 - t0)))" "$(secs $((t2 - t1)))" "$(mbps "$bytes" $((t2 - t1)))"
	rm -rf "$d"
done
