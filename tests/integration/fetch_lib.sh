# tests/integration/fetch_lib.sh: helpers for the peer-to-peer artifact tests (sourced).
# Real agentd processes on 127.0.0.1 (ports unique per run), one shared keyring, exec runtime,
# state in a fresh temporary directory. Every agent is ended by PID; service processes they
# started are found by their SHOAL_DIR environment (under our directory) and killed by PID.
set -uo pipefail

if [ -z "${AGENTD:-}" ] || [ ! -x "$AGENTD" ] || [ -z "${AGENTCTL:-}" ] || [ ! -x "$AGENTCTL" ]; then
	echo "SKIP: agentd/agentctl not built (AGENTD=${AGENTD:-unset})"
	exit 77
fi
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

SRC=${SHOAL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=$(mktemp -d /tmp/shoal-fetch-XXXXXX)
# Ports below the kernel's ephemeral range (32768..), so no outgoing connection holds them;
# a base whose ports someone already listens on is skipped.
port_busy() { ss -Htanu 2>/dev/null | awk '{ print $5 }' | grep -q ":$1\$"; }
pick_base() {
	local try b i busy
	for try in $(seq 1 20); do
		b=$((12000 + ((RANDOM + $$ + try * 7919) % 2000) * 10))
		busy=0
		for i in 1 2 3 4 5; do port_busy $((b + i)) && busy=1; done
		[ "$busy" = 0 ] && { echo "$b"; return; }
	done
	echo "$b"
}
BASE=$(pick_base)
declare -a PID=()
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-200} SHOAL_RETRY_MS=${SHOAL_RETRY_MS:-300}

kill_orphans() {
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^SHOAL_DIR=$WORK/"; then
			kill -KILL "${p#/proc/}" 2>/dev/null
		fi
	done
	return 0
}

fetch_cleanup() {
	local rc=$? i
	for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -TERM "${PID[$i]}" 2>/dev/null; done
	for i in "${!PID[@]}"; do
		[ -n "${PID[$i]}" ] || continue
		for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${PID[$i]}" 2>/dev/null
	done
	wait 2>/dev/null
	kill_orphans
	if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$WORK"/n*.log >/dev/null 2>&1; then
		echo "sanitizer reports:"
		grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$WORK"/n*.log | head -80
		rc=1
	fi
	if [ "$rc" != 0 ]; then
		for f in "$WORK"/n*.log; do
			[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 25 "$f"; }
		done
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap fetch_cleanup EXIT
trap 'exit 1' INT TERM

die() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
ctl() { local i=$1; shift; "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }
addr_of() { echo "127.0.0.1:$((BASE + $1))"; }

wait_for() { # wait_for SECONDS DESC CMD...: poll CMD every 0.1 s; dies on timeout
	local limit=$1 desc=$2; shift 2
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $desc"
		sleep 0.1
	done
}

# make_artifact NAME VERSION MIB: examples/web-v1 plus MIB MiB of random data (multi-chunk).
make_artifact() {
	local name=$1 version=$2 mib=$3 d=$WORK/art/$1
	mkdir -p "$d/bin" "$d/data"
	cp "$SRC/examples/web-v1/bin/web" "$d/bin/web"
	sed -i "s/^VERSION=.*/VERSION=$version/" "$d/bin/web"
	printf '#!/bin/sh\necho "web %s: ok"\n' "$version" >"$d/check.sh"
	chmod +x "$d/check.sh" "$d/bin/web"
	head -c $((mib * 1024 * 1024 + 777)) /dev/urandom >"$d/data/blob.bin"
	cat >"$d/release.ini" <<INI
[release]
service = web
runtime = exec
version = $version
[exec]
command = ./bin/web
[health]
exec = ./check.sh
interval = 300ms
timeout = 2s
failures = 3
deadline = 5s
INI
}

start_agent() { # start_agent I [extra agentd args]: node nI on 127.0.0.1:BASE+I, joining n1
	local i=$1; shift
	rm -f "$WORK/n$i.sock"
	"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/n$i" \
		--socket "$WORK/n$i.sock" --socket-group "" --bind "$(addr_of "$i")" \
		--join "$(addr_of 1)" --keyring "$WORK/keyring" --cluster fetchtest \
		--log-level info "$@" 2>>"$WORK/n$i.log" &
	PID[$i]=$!
}

alive_count() {
	ctl "$1" --json members 2>/dev/null | jq '[.[] | select(.state == "alive")] | length'
}
sees_alive() { [ "$(alive_count "$1")" = "$2" ]; }

start_cluster() { # start_cluster N: N agents answering, each seeing N alive members
	local n=$1 i; shift
	NODES=$n
	head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"
	echo >>"$WORK/keyring"
	chmod 600 "$WORK/keyring"
	for i in $(seq 1 "$n"); do start_agent "$i" "$@"; done
	for i in $(seq 1 "$n"); do wait_for 15 "agent n$i to answer" ctl "$i" ping; done
	for i in $(seq 1 "$n"); do wait_for 30 "n$i to see $n alive" sees_alive "$i" "$n"; done
}

has_artifact() { ctl "$1" artifact show "$2" >/dev/null 2>&1; }

# same_artifact I J ID: both nodes hold ID with the same files (paths, modes, sizes, blobs)
files_of() { ctl "$1" --json artifact show "$2" | jq -c '.files // .manifest.files'; }
same_artifact() {
	local a b
	a=$(files_of "$1" "$3") && b=$(files_of "$2" "$3") || return 1
	[ -n "$a" ] && [ "$a" != null ] && [ "$a" = "$b" ]
}
