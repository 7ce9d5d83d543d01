#!/usr/bin/env bash
# The local demo (`make demo`): one agent on this host, artifacts imported from a directory and
# from git tags, shown with agentctl.
#
#   scripts/demo.sh BUILD_DIR
#
# Everything lives in a fresh temporary directory (state, socket, git repository) that is
# removed at the end, whatever happens; the agent is stopped by its PID. No root needed.
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
agentd=$build/agent/agentd
agentctl=$build/agent/agentctl
for b in "$agentd" "$agentctl"; do
	[ -x "$b" ] || { echo "demo: $b not built (run: make build)" >&2; exit 1; }
done
command -v git >/dev/null || { echo "demo: git is needed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/shoal-demo-XXXXXX)
agent_pid=
cleanup() {
	local rc=$?
	if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
		kill -TERM "$agent_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$agent_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT INT TERM

sock=$tmp/agentd.sock
ctl() { "$agentctl" --socket "$sock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ agentctl %s\n' "$*"; ctl "$@"; }

# Example artifacts: examples/ when present, else equivalent ones made here.
ex=$here/examples
if [ ! -f "$ex/web-v1/release.ini" ] || [ ! -f "$ex/web-v2/release.ini" ]; then
	ex=$tmp/examples
	for v in 1 2; do
		mkdir -p "$ex/web-v$v/bin"
		printf '[release]\nservice = web\nruntime = exec\nversion = %s.0.0\n[exec]\ncommand = ./bin/web\n' \
			"$v" >"$ex/web-v$v/release.ini"
		printf '#!/bin/sh\necho "web v%s"\nexec sleep 100000\n' "$v" >"$ex/web-v$v/bin/web"
		chmod +x "$ex/web-v$v/bin/web"
	done
fi

step "start agentd (state in $tmp/state, socket $sock)"
"$agentd" --config /dev/null --node-name demo-node --state-dir "$tmp/state" --socket "$sock" \
	--label site=demo 2>"$tmp/agentd.log" &
agent_pid=$!
for _ in $(seq 1 100); do
	ctl ping >/dev/null 2>&1 && break
	if ! kill -0 "$agent_pid" 2>/dev/null; then
		cat "$tmp/agentd.log" >&2
		echo "demo: agentd exited" >&2
		agent_pid=
		exit 1
	fi
	sleep 0.1
done
ctl ping >/dev/null || { echo "demo: agentd did not answer within 10 s" >&2; exit 1; }
echo "agentd running, pid $agent_pid"
show status

step "import examples/web-v1 from a directory"
printf '$ agentctl artifact import %s\n' "$ex/web-v1"
id_dir=$(ctl artifact import "$ex/web-v1")
echo "$id_dir"

step "import web v1 and v2 from git tags"
repo=$tmp/web.git
git init -q "$repo"
git -C "$repo" config user.email demo@example.org
git -C "$repo" config user.name "Shoal Demo"
cp -r "$ex/web-v1/." "$repo/"
git -C "$repo" add -A
git -C "$repo" commit -qm "web 1.0.0"
git -C "$repo" tag v1.0.0
git -C "$repo" rm -rqf .
cp -r "$ex/web-v2/." "$repo/"
git -C "$repo" add -A
git -C "$repo" commit -qm "web 2.0.0"
git -C "$repo" tag -a v2.0.0 -m "release 2.0.0"
printf '$ agentctl artifact import --git %s --ref v1.0.0\n' "$repo"
id_v1=$(ctl artifact import --git "$repo" --ref v1.0.0)
echo "$id_v1"
printf '$ agentctl artifact import --git %s --ref v2.0.0\n' "$repo"
id_v2=$(ctl artifact import --git "$repo" --ref v2.0.0)
echo "$id_v2"
if [ "$id_dir" = "$id_v1" ]; then
	echo "(same content from a directory and from git: same artifact id)"
else
	echo "(the git tree differs from the directory, e.g. by the version label: another id)"
fi

step "what the agent holds"
show artifact list
echo
show artifact show "${id_v2:0:12}"
echo
show history web
echo
printf '$ agentctl --json artifact list web | head -n 12\n'
ctl --json artifact list web | head -n 12
echo
show status

step "stop agentd (SIGTERM to pid $agent_pid)"
kill -TERM "$agent_pid"
for _ in $(seq 1 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$agent_pid" 2>/dev/null; then
	echo "demo: agentd did not stop within 10 s" >&2
	exit 1
fi
wait "$agent_pid" && echo "agentd exited cleanly" || { echo "demo: agentd exit status $?" >&2; exit 1; }
agent_pid=
echo
echo "agent log:"
sed 's/^/  /' "$tmp/agentd.log"
