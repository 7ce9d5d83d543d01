# tests/integration/brain_lib.sh: helpers for the cluster brain's integration tests (sourced).
# Real agentd processes on 127.0.0.1 (distinct ports), one shared keyring, exec runtime, state
# in a fresh temporary directory; every agent is stopped by PID and every service process they
# started is killed (found by its SHOAL_DIR environment under our directory) on exit.
set -uo pipefail

: "${AGENTD:?AGENTD not set}" "${AGENTCTL:?AGENTCTL not set}"
SRC=${SHOAL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=$(mktemp -d /tmp/shoal-brain-XXXXXX)
BASE=$((10000 + ($$ % 2000) * 10))  # below the ephemeral port range (32768+)
declare -a PID=()
FAILS=0
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-200} SHOAL_RETRY_MS=${SHOAL_RETRY_MS:-300}

kill_orphans() { # service processes started by our agents (exec runtime), by PID
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^SHOAL_DIR=$WORK/"; then
			kill -KILL "${p#/proc/}" 2>/dev/null
		fi
	done
	return 0
}

brain_cleanup() {
	local rc=$? i
	for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -TERM "${PID[$i]}" 2>/dev/null; done
	for i in "${!PID[@]}"; do
		[ -n "${PID[$i]}" ] || continue
		for _ in $(seq 1 50); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${PID[$i]}" 2>/dev/null
	done
	kill_orphans
	# the agents run under ASan/UBSan in the test build: any report is a failure
	if grep -l "Sanitizer\|runtime error:" "$WORK"/n*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in the agent logs above"
		FAILS=$((FAILS + 1))
		grep -h -A20 "Sanitizer\|runtime error:" "$WORK"/n*.log | head -n 60
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
trap brain_cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
die() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); exit 1; }
ok() { echo "ok: $*"; }
ctl() { local i=$1; shift; "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }

# wait_for SECONDS DESC CMD...: poll CMD every 0.1 s; dies on timeout
wait_for() {
	local limit=$1 desc=$2; shift 2
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $desc"
		sleep 0.1
	done
}

# make_artifact NAME VERSION GOOD(1|0): a copy of examples/web-v1 with its own version label;
# a bad one fails its check. Short intervals and a 3 s start deadline keep the tests quick.
make_artifact() {
	local name=$1 version=$2 good=$3 d=$WORK/art/$1
	mkdir -p "$d/bin"
	cp "$SRC/examples/web-v1/bin/web" "$d/bin/web"
	sed -i "s/^VERSION=.*/VERSION=$version/" "$d/bin/web"
	if [ "$good" = 1 ]; then
		printf '#!/bin/sh\necho "web %s: ok"\n' "$version" >"$d/check.sh"
	else
		printf '#!/bin/sh\necho "web %s: 500" >&2\nexit 1\n' "$version" >"$d/check.sh"
	fi
	chmod +x "$d/check.sh" "$d/bin/web"
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
deadline = 3s
INI
}

# start_agent I [extra agentd args]: node nI on 127.0.0.1:BASE+I, joining node 1.
start_agent() {
	local i=$1; shift
	rm -f "$WORK/n$i.sock"
	"$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/n$i" \
		--socket "$WORK/n$i.sock" --socket-group "" --bind "127.0.0.1:$((BASE + i))" \
		--join "127.0.0.1:$((BASE + 1))" --keyring "$WORK/keyring" --cluster itest \
		--log-level info "$@" 2>>"$WORK/n$i.log" &
	PID[$i]=$!
}

# start_cluster N [extra agentd args]: N agents, all answering and seeing N alive members.
start_cluster() {
	local n=$1 i; shift
	NODES=$n
	head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"
	echo >>"$WORK/keyring"
	chmod 600 "$WORK/keyring"
	for i in $(seq 1 "$n"); do start_agent "$i" "$@"; done
	for i in $(seq 1 "$n"); do wait_for 15 "agent n$i to answer" ctl "$i" ping; done
	for i in $(seq 1 "$n"); do wait_for 30 "n$i to see $n alive members" sees_alive "$i" "$n"; done
}

sees_alive() { ctl "$1" status 2>/dev/null | grep -q "^Voters: *$2 members: $2 alive"; }

# import_all NAME: import $WORK/art/NAME on every node; sets ID to its id
import_all() {
	local i
	for i in $(seq 1 "$NODES"); do
		ID=$(ctl "$i" artifact import "$WORK/art/$1" 2>/dev/null) || die "import $1 on n$i"
	done
}

svc_json() { ctl "$1" --json services | tr -d ' \n'; }
# runs I REV: node I runs REV, not swapping
runs() { svc_json "$1" | grep -q "\"running_rev\":$2,[^}]*\"swapping\":false"; }
runs_healthy() { svc_json "$1" | grep -q "\"running_rev\":$2,[^}]*\"health\":\"healthy\""; }
all_run() { local i; for i in $(seq 1 "$NODES"); do runs "$i" "$1" || return 1; done; }
all_healthy() { local i; for i in $(seq 1 "$NODES"); do runs_healthy "$i" "$1" || return 1; done; }
desired_of() { svc_json "$1" | sed -n 's/.*"desired_rev":\([0-9]*\).*/\1/p'; }
running_of() { svc_json "$1" | sed -n 's/.*"running_rev":\([0-9]*\).*/\1/p'; }
