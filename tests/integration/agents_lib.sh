# tests/integration/agents_lib.sh: what the agent integration tests share (sourced, through
# brain_lib.sh or fetch_lib.sh, which set LIB_NAME first).
# Real agentd processes on 127.0.0.1 (ports unique per run), one shared keyring, exec runtime,
# state in a fresh temporary directory. Every agent is ended by PID; service processes they
# started are found by their SHOAL_DIR environment (under our directory) and killed by PID.
# The agents run under ASan/UBSan in the test build: a sanitizer report in a log fails the test.
# SHOAL_KEEP_TMP=1 keeps the directory (logs, stores) for a post-mortem.
set -uo pipefail

if [ -z "${AGENTD:-}" ] || [ ! -x "$AGENTD" ] || [ -z "${AGENTCTL:-}" ] || [ ! -x "$AGENTCTL" ]; then
	echo "SKIP: agentd/agentctl not built (AGENTD=${AGENTD:-unset})"
	exit 77
fi
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

SRC=${SHOAL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WORK=$(mktemp -d "/tmp/shoal-${LIB_NAME:?}-XXXXXX")
# Ports below the kernel's ephemeral range (32768..), so no outgoing connection holds them;
# a base whose ports someone already listens on is skipped.
port_busy() { ss -Htanu 2>/dev/null | awk '{ print $5 }' | grep -q ":$1\$"; }
pick_base() {
	local try b i busy
	for try in $(seq 1 20); do
		b=$((12000 + ((RANDOM + $$ + try * 7919) % 2000) * 10))
		busy=0
		for i in 1 2 3 4 5 6 7 8 9; do port_busy $((b + i)) && busy=1; done
		[ "$busy" = 0 ] && { echo "$b"; return; }
	done
	echo "$b"
}
BASE=$(pick_base)
declare -a PID=()
declare -a OPDIR=()	# a node's own operators directory (default: the shared one)
FAILS=0
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

agents_cleanup() {
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
		echo "FAIL: sanitizer reports in the agent logs:"
		grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$WORK"/n*.log | head -80
		FAILS=$((FAILS + 1))
	fi
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		for f in "$WORK"/n*.log; do
			[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 25 "$f"; }
		done
	fi
	if [ -n "${SHOAL_KEEP_TMP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap agents_cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); } # go on; the test fails at exit
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

# write_release DIR VERSION DEADLINE: release.ini of the test service `web` (exec runtime,
# ./bin/web, health ./check.sh every 300 ms, 3 failures, DEADLINE to start).
write_release() {
	cat >"$1/release.ini" <<INI
[release]
service = web
runtime = exec
version = $2
[exec]
command = ./bin/web
[health]
exec = ./check.sh
interval = 300ms
timeout = 2s
failures = 3
deadline = $3
INI
}

new_keyring() {
	head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"
	echo >>"$WORK/keyring"
	chmod 600 "$WORK/keyring"
}

# One operator key per test cluster (agent/base/sign.h), trusted by every agent: deploys and
# rollbacks through ctl are signed with it (SHOAL_OPERATOR_KEY).
mkdir -p "$WORK/operators"
"$AGENTCTL" keygen "$WORK/operator.key" >/dev/null || { echo "FAIL: agentctl keygen"; exit 1; }
cp "$WORK/operator.key.pub" "$WORK/operators/test.pub"
export SHOAL_OPERATOR_KEY=$WORK/operator.key

start_agent() { # start_agent I [extra agentd args]: node nI on 127.0.0.1:BASE+I, joining n1
	local i=$1; shift
	rm -f "$WORK/n$i.sock"
	"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/n$i" \
		--socket "$WORK/n$i.sock" --socket-group "" --bind "$(addr_of "$i")" \
		--join "$(addr_of 1)" --keyring "$WORK/keyring" --cluster "$LIB_NAME" \
		--operators-dir "${OPDIR[$i]:-$WORK/operators}" \
		--log-level info "$@" 2>>"$WORK/n$i.log" &
	PID[$i]=$!
}

alive_count() {
	ctl "$1" --json members 2>/dev/null | jq '[.[] | select(.state == "alive")] | length'
}
sees_alive() { [ "$(alive_count "$1")" = "$2" ]; }

# wait_cluster N: agents n1..nN answer, and each sees N alive members. Sets NODES.
wait_cluster() {
	local i
	NODES=$1
	for i in $(seq 1 "$1"); do wait_for 15 "agent n$i to answer" ctl "$i" ping; done
	for i in $(seq 1 "$1"); do wait_for 30 "n$i to see $1 alive members" sees_alive "$i" "$1"; done
}

start_cluster() { # start_cluster N [extra agentd args]: a new keyring, N agents, wait_cluster
	local n=$1 i; shift
	new_keyring
	for i in $(seq 1 "$n"); do start_agent "$i" "$@"; done
	wait_cluster "$n"
}
