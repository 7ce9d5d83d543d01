#!/usr/bin/env bash
# The Shoal demo (`make demo`): five agents on loopback form a gossip cluster with no central
# control plane. web v1 is imported from a directory on every node, web v2 from a git tag on one
# node only (the others fetch it from that peer when it is deployed). web v1 is deployed and
# turns healthy everywhere; web v2 is deployed and fails its health check; every node votes
# against it, the cluster reaches a quorum, writes the rollback revision and every node swaps
# back to v1. Prints a timeline and the final state.
#
#   scripts/demo.sh BUILD_DIR
#
# Everything lives in a fresh temporary directory removed at the end, whatever happens; the
# agents are stopped by PID. No root needed. Takes about 7 seconds.
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
agentd=$build/agent/agentd
agentctl=$build/agent/agentctl
for b in "$agentd" "$agentctl"; do
	[ -x "$b" ] || { echo "demo: $b not built (run: make build)" >&2; exit 1; }
done
N=${SHOAL_DEMO_NODES:-5}
t0=$(date +%s.%N)

tmp=$(mktemp -d /tmp/shoal-demo-XXXXXX)
declare -a PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ "$rc" != 0 ]; then
		for i in $(seq 1 "$N"); do
			[ -f "$tmp/n$i.log" ] && { echo "--- n$i log (tail)"; tail -n 15 "$tmp/n$i.log"; }
		done
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { local i=$1; shift; "$agentctl" --socket "$tmp/n$i.sock" "$@"; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_for SECONDS DESC CMD...: poll CMD every 0.1 s
wait_for() {
	local limit=$1 desc=$2; shift 2
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { echo "demo: timed out waiting for $desc" >&2; return 1; }
		sleep 0.1
	done
}

# A port base unlikely to collide with another run.
base=$((10000 + ($$ % 2000) * 10))  # below the ephemeral port range (32768+)
# The demo's own copies of the example service, with a short start deadline for v2 so the
# demo stays short: v2 answers its health check with an error, so it is unhealthy after 3 s.
ex=$tmp/examples
mkdir -p "$ex"
for v in 1 2; do
	src=$here/examples/web-v$v
	cp -r "$src" "$ex/web-v$v"
	sed -i -e 's/^interval *=.*/interval = 300ms/' -e 's/^deadline *=.*/deadline = 3s/' \
		"$ex/web-v$v/release.ini"
done

step "start $N agents on 127.0.0.1:$((base + 1))..$((base + N)) (shared keyring, sites east/west)"
head -c 32 /dev/urandom | base64 -w0 >"$tmp/keyring"
echo >>"$tmp/keyring"
chmod 600 "$tmp/keyring"
# the demo's own operator key, trusted by every agent: deploys and rollbacks are signed
mkdir -p "$tmp/operators"
"$agentctl" keygen "$tmp/operator.key" >/dev/null
cp "$tmp/operator.key.pub" "$tmp/operators/demo.pub"
export SHOAL_OPERATOR_KEY=$tmp/operator.key
export SHOAL_GOSSIP_PROBE_MS=200 SHOAL_RETRY_MS=300
for i in $(seq 1 "$N"); do
	site=east
	[ "$i" -gt 3 ] && site=west
	"$agentd" --config /dev/null --node-name "n$i" --state-dir "$tmp/n$i" \
		--socket "$tmp/n$i.sock" --socket-group "" --bind "127.0.0.1:$((base + i))" \
		--join "127.0.0.1:$((base + 1))" --keyring "$tmp/keyring" --cluster demo \
		--operators-dir "$tmp/operators" \
		--label "site=$site" --log-level info 2>"$tmp/n$i.log" &
	PIDS+=($!)
done
members_ok() {
	local i=$1
	ctl "$i" status 2>/dev/null | grep -q "^Voters: *$N members: $N alive"
}
for i in $(seq 1 "$N"); do
	wait_for 10 "agent n$i" ctl "$i" ping
done
for i in $(seq 1 "$N"); do
	wait_for 15 "n$i to see $N members" members_ok "$i"
done
echo "agents running (pids ${PIDS[*]}); every node sees $N alive members [$(elapsed) s]"

step "import web v1 from a directory on every node, web v2 from a git tag on n1 only"
for i in $(seq 1 "$N"); do
	v1=$(ctl "$i" artifact import "$ex/web-v1" 2>/dev/null)
done
echo "web 1.0.0: $v1 (directory)"
# v2 lives in a git repository, as releases often do; only n1 imports it (read from the tag's
# tree, no checkout). The other nodes fetch it from n1 over the gossip channel when deployed.
repo=$tmp/web.git
git init -q -b main "$repo"
cp -r "$ex/web-v2/." "$repo/"
git -C "$repo" add -A
git -C "$repo" -c user.name="Demo Operator" -c user.email=ops@example.org \
	commit -q -m "web 2.0.0: new feature"
git -C "$repo" tag v2.0.0
printf '$ agentctl artifact import --git %s --ref v2.0.0\n' "$repo"
v2=$(ctl 1 artifact import --git "$repo" --ref v2.0.0 2>/dev/null)
echo "web 2.0.0: $v2 (git tag v2.0.0 on n1)"
ctl 1 artifact show "$v2" | sed -n '1,12p'

healthy_everywhere() { # rev: every node runs it and reports healthy
	local rev=$1 i
	for i in $(seq 1 "$N"); do
		ctl "$i" --json services | tr -d ' \n' |
			grep -q "\"running_rev\":$rev,[^}]*\"health\":\"healthy\"" || return 1
	done
}
running_everywhere() { # rev
	local rev=$1 i
	for i in $(seq 1 "$N"); do
		ctl "$i" --json services | tr -d ' \n' |
			grep -q "\"running_rev\":$rev,[^}]*\"swapping\":false" || return 1
	done
}

step "deploy web v1 from n1 and wait until it is healthy on every node"
printf '$ agentctl deploy web %.12s --reason "first release" --wait\n' "$v1"
ctl 1 deploy web "$v1" --reason "first release" --wait --timeout 20s
wait_for 20 "v1 healthy everywhere" healthy_everywhere 1
echo "web v1 healthy on all $N nodes [$(elapsed) s]"
last_seq() { ctl "$1" --json events | tail -n 1 | sed -n 's/.*"seq": *\([0-9]*\).*/\1/p'; }
marks=()
for i in $(seq 1 "$N"); do
	marks[$i]=$(last_seq "$i")
done

step "deploy web v2 (its health check fails): the cluster votes and rolls it back"
printf '$ agentctl deploy web %.12s --reason "new feature"\n' "$v2"
ctl 1 deploy web "$v2" --reason "new feature"
wait_for 25 "the rollback to v1 on every node" running_everywhere 3
echo "every node runs rev 3 (web v1 again) [$(elapsed) s]"
# then healthy again, as every node sees it (health records are gossiped)
cluster_healthy() { ctl 4 status | grep -q "^web  *3  *3  *3  *healthy  *$N/$N"; }
wait_for 15 "v1 healthy again everywhere" healthy_everywhere 3 &&
	wait_for 5 "n4 to see every node healthy" cluster_healthy &&
	echo "web v1 healthy again on all $N nodes [$(elapsed) s]"

step "timeline (events of every node, merged)"
for i in $(seq 1 "$N"); do
	ctl "$i" events --since "${marks[$i]}" |
		awk -v me="n$i" '$2 == me && ($3 == "revision" && me == "n1" || $3 == "vote" ||
		     $3 == "decision" || $3 ~ /^swap/ || $3 == "health" || $3 == "desired" ||
		     $3 == "fetching")' |
		awk '$3 != "vote" || $0 ~ ($2 " votes")'
done | sort -s -k1,1 | sed 's/^/  /'

step "agentctl status (n4)"
ctl 4 status
step "agentctl history web (n2)"
ctl 2 history web
step "agentctl votes web (n5)"
ctl 5 votes web --rev 2

step "stop the agents"
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do
	for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
echo "done in $(elapsed) s"
