# shellcheck shell=bash
# tests/system/agentd_lib.sh: helpers of the agentd system tests (sourced by test_agentd_*.sh).
# Provides skip/fail/ok, a bounded poll (wait_for), the unique run id, a private work directory
# and the artifacts the tests deploy. Each test installs its own cleanup trap, which must call
# agentd_lib_cleanup last.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${SHOAL_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
FAILS=0

skip() { echo "SKIP: $*"; [ -n "${WORK:-}" ] && rm -rf "$WORK"; exit 77; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
die() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); exit 1; }
# The sandboxes (sbx.sh) hide the host's /tmp, /var/tmp and /run behind their own tmpfs, so a
# build there (a clone under /tmp) is copied into the sandbox's share directory, which the
# sandbox sees at the same path. sandbox_bin SHARE SRC prints the path to run SRC by inside the
# sandbox whose share directory is SHARE (copying it the first time).
sandbox_bin() {
	local dst
	case $2 in
	/tmp/* | /var/tmp/* | /run/*)
		dst=$1/bin/$(basename "$2")
		[ -x "$dst" ] || { mkdir -p "$1/bin" && cp "$2" "$dst"; } || return 1
		echo "$dst"
		;;
	*) echo "$2" ;;
	esac
}
ok() { echo "ok: $(date -u +%T) $*"; }
note() { echo "   $(date -u +%T) $*"; }

# need_root_and TOOL...: the common skip conditions
need_root_and() {
	local t
	[ "$(id -u)" = 0 ] || skip "needs root (network namespaces / systemd sandbox)"
	for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "'$t' not installed"; done
	[ -n "${AGENTD:-}" ] && [ -x "$AGENTD" ] || skip "AGENTD not set or not executable"
	[ -n "${AGENTCTL:-}" ] && [ -x "$AGENTCTL" ] || skip "AGENTCTL not set or not executable"
}

# wait_for SECONDS DESC CMD...: poll CMD every 0.3 s until it succeeds; dies on timeout
wait_for() {
	local limit=$1 desc=$2; shift 2
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $desc"
		sleep 0.3
	done
}

# A run id short enough for namespace and sandbox names, unique among concurrent suites.
# shellcheck disable=SC2034 # used by the tests that source this file
RUNID=$(printf '%x%x' $(($$ % 4096)) $((RANDOM % 256)))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-sys-XXXXXX")
chmod 755 "$WORK"

# stop_agents: every process in the PID array (indexed by node), by PID: TERM to all, then
# each gets 5 s before KILL, and is reaped
stop_agents() {
	local i
	for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -TERM "${PID[$i]}" 2>/dev/null; done
	for i in "${!PID[@]}"; do
		[ -n "${PID[$i]}" ] || continue
		for _ in $(seq 1 50); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${PID[$i]}" 2>/dev/null
		wait "${PID[$i]}" 2>/dev/null
	done
}

agentd_lib_cleanup() {
	if [ -n "${SHOAL_KEEP_TMP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

# make_operator DIR: an operator key DIR/operator.key (agentctl keygen), trusted through
# DIR/operators/ (agent/base/sign.h): pass --operators-dir DIR/operators to agentd and
# --key DIR/operator.key to every deploy and rollback
make_operator() {
	mkdir -p "$1/operators"
	"$AGENTCTL" keygen "$1/operator.key" >/dev/null || die "agentctl keygen"
	cp "$1/operator.key.pub" "$1/operators/test.pub"
	chmod 755 "$1/operators"
	chmod 644 "$1/operators/test.pub"
}

# make_keyring FILE: a fresh cluster key
make_keyring() {
	head -c 32 /dev/urandom | base64 -w0 >"$1"
	echo >>"$1"
	chmod 600 "$1"
}

# exec_artifacts DIR: DIR/v1 and DIR/v2, copies of examples/web-v1 and web-v2 with quicker
# health timings. v2's health check is the example's failing one, but only once the file
# DIR/v2-broken exists: before that v2 is healthy, so the test decides when v2 turns bad (after
# it reached every node and the network is split) instead of racing its deadline.
exec_artifacts() {
	local d=$1 v
	for v in v1 v2; do
		cp -r "$SRC/examples/web-$v" "$d/$v"
		sed -i -e 's/^interval = .*/interval = 300ms/' -e 's/^deadline = .*/deadline = 5s/' \
			"$d/$v/release.ini"
	done
	mv "$d/v2/check.sh" "$d/v2/check-broken.sh"
	cat >"$d/v2/check.sh" <<EOF
#!/bin/sh
# healthy until the test breaks this release, then the example's failing check
[ -e "$d/v2-broken" ] || { echo "web 2.0.0: ok"; exit 0; }
exec ./check-broken.sh
EOF
	chmod +x "$d/v2/check.sh"
}
