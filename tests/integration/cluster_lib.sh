# tests/integration/cluster_lib.sh: helpers shared by the agentd cluster tests (sourced).
#
# Real agentd processes on loopback addresses 127.A.B.i (A.B unique per run), one gossip port,
# one state directory each under a fresh temporary root. Every process is recorded by PID and
# ended by PID in the EXIT trap; every wait is bounded.

set -u

if [ -z "${AGENTD:-}" ] || [ ! -x "$AGENTD" ] || [ -z "${AGENTCTL:-}" ] || [ ! -x "$AGENTCTL" ]; then
	echo "SKIP: agentd/agentctl not built (AGENTD=${AGENTD:-unset})"
	exit 77
fi
for tool in jq; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed"
		exit 77
	fi
done

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/shoal-cluster.XXXXXX")
# Addresses: 127.<100..227>.<1..250>.i, picked from the PID and $RANDOM; port random too.
NET_A=$(( 100 + ($$ % 128) ))
NET_B=$(( 1 + (RANDOM % 250) ))
PORT=$(( 20000 + (RANDOM % 20000) ))
declare -A PIDS=()
FAILED=0
# ASan: 32 agents at once; a smaller quarantine keeps each process's RSS reasonable.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:quarantine_size_mb=16:malloc_context_size=10"

log() { printf '%s %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }
fail() { log "FAIL: $*"; FAILED=1; exit 1; }

ip_of() { echo "127.$NET_A.$NET_B.$1"; }
sock_of() { echo "$ROOT/n$1/agentd.sock"; }
now_ms() { date +%s%3N; }

cleanup() {
	local rc=$?
	for i in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$i]}" 2>/dev/null || true
	done
	local deadline=$(( $(date +%s) + 15 ))
	for i in "${!PIDS[@]}"; do
		while kill -0 "${PIDS[$i]}" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
			sleep 0.1
		done
		kill -KILL "${PIDS[$i]}" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$ROOT"/n*/log >/dev/null 2>&1; then
		log "sanitizer reports:"
		grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$ROOT"/n*/log | head -80
		rc=1
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		log "logs kept in $ROOT"
		for f in "$ROOT"/n*/log; do
			[ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
		done | tail -n 200
	else
		rm -rf "$ROOT"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

new_key() { head -c 32 /dev/urandom | base64 > "$1"; chmod 600 "$1"; }

# start_agent I [extra agentd flags...]: state in $ROOT/nI, log appended to $ROOT/nI/log.
start_agent() {
	local i=$1
	shift
	mkdir -p "$ROOT/n$i"
	"$AGENTD" --node-name "n$i" --state-dir "$ROOT/n$i" --socket "$(sock_of "$i")" \
		--bind "$(ip_of "$i"):$PORT" --log-level info "$@" >>"$ROOT/n$i/log" 2>&1 &
	PIDS[$i]=$!
}

# wait_up I: the control socket answers (10 s).
wait_up() {
	local deadline=$(( $(now_ms) + 10000 ))
	while ! "$AGENTCTL" -s "$(sock_of "$1")" --timeout 2s ping >/dev/null 2>&1; do
		kill -0 "${PIDS[$1]}" 2>/dev/null || fail "agent n$1 exited at start: $(tail -3 "$ROOT/n$1/log")"
		[ "$(now_ms)" -lt "$deadline" ] || fail "agent n$1 does not answer"
		sleep 0.1
	done
}

stop_agent() { # stop_agent I SIGNAL: signal it and wait for it to exit (20 s); returns its status
	kill "-$2" "${PIDS[$1]}" 2>/dev/null || true
	wait_exit "$1" "$2"
}

wait_exit() { # wait_exit I [WHAT]: wait for agent I to exit (20 s); returns its exit status
	local i=$1 sig=${2:-exit} pid=${PIDS[$1]}
	local deadline=$(( $(now_ms) + 20000 ))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$(now_ms)" -lt "$deadline" ] || fail "agent n$i (pid $pid) did not exit after SIG$sig"
		sleep 0.05
	done
	local st=0
	wait "$pid" 2>/dev/null || st=$?
	unset "PIDS[$i]"
	return "$st"
}

members_json() { "$AGENTCTL" -s "$(sock_of "$1")" --timeout 5s --json members 2>/dev/null; }

# state_of VIEWER NAME: the state VIEWER sees for member NAME ("" if absent)
state_of() { members_json "$1" | jq -r --arg n "$2" '.[] | select(.name == $n) | .state'; }
inc_of() { members_json "$1" | jq -r --arg n "$2" '.[] | select(.name == $n) | .incarnation'; }
count_state() { members_json "$1" | jq --arg s "$2" '[.[] | select(.state == $s)] | length'; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.25 s until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$(( $(now_ms) + secs * 1000 ))
	until "$@"; do
		[ "$(now_ms)" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for: $what"
		sleep 0.25
	done
}

# all_see LIST STATE NAME: every agent of LIST sees NAME in STATE
all_see() {
	local list=$1 st=$2 name=$3 i
	for i in $list; do
		[ "$(state_of "$i" "$name")" = "$st" ] || return 1
	done
}

# all_alive LIST N: every agent of LIST sees exactly N alive members
all_alive() {
	local list=$1 n=$2 i
	for i in $list; do
		[ "$(count_state "$i" alive)" = "$n" ] || return 1
	done
}

metric() { # metric HOST:PORT NAME{labels}: value from the endpoint (bash /dev/tcp, no curl)
	local host=${1%:*} port=${1##*:}
	exec 9<>"/dev/tcp/$host/$port" || return 1
	printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&9
	local body
	body=$(cat <&9)
	exec 9<&-
	printf '%s\n' "$body" | tr -d '\r' | awk -v m="$2" '$1 == m { print $2 }'
}

rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
