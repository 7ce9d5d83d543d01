#!/bin/bash
# tests/system/test_systemd_plugin.sh: the systemd plugin against a real systemd booted in a
# sandbox (sbx.sh). The C test runs inside the sandbox (its /run/systemd/private is only
# reachable from its own namespaces: a connection from the host is refused), writes units
# into the sandbox's /etc/systemd/system and checks every step with systemctl in there.
# Host safety: a canary in the host's /tmp and /var/tmp must survive; the sandbox is stopped
# by PID and its cgroups removed on every exit path (trap).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (mount/pid namespaces, cgroups)"
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
for c in unshare nsenter findmnt setsid systemctl; do
	command -v $c >/dev/null || skip "$c is missing"
done
BIN=${SHOAL_BUILD_DIR:?SHOAL_BUILD_DIR not set}/tests/system/test_systemd_plugin
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }

NAME=shoal-sdp-$$-$RANDOM	# unique: several suites may run at once
export SBX_BASE SBX_OWNER=$$	# the sandbox stops itself if this script is SIGKILLed
SBX_BASE=$(mktemp -d "${TMPDIR:-/tmp}/shoal-sbx.XXXXXX")
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX)
VCANARY=$(mktemp /var/tmp/shoal-canary.XXXXXX)
echo alive > "$CANARY"; echo alive > "$VCANARY"
RC=1
cleanup() {
	local bad=0
	timeout 60 bash "$HERE/sbx.sh" stop "$NAME" || bad=1
	[ "$(cat "$CANARY" 2>/dev/null)" = alive ] || { echo "FAIL: host /tmp canary is gone"; bad=1; }
	[ "$(cat "$VCANARY" 2>/dev/null)" = alive ] || { echo "FAIL: host /var/tmp canary is gone"; bad=1; }
	rm -f "$CANARY" "$VCANARY"
	rm -rf "$SBX_BASE"
	[ $bad = 0 ] || RC=1
	echo "exit $RC"
	exit $RC
}
trap cleanup EXIT
trap 'exit 1' INT TERM

timeout 90 bash "$HERE/sbx.sh" start "$NAME" || { echo "FAIL: sandbox did not start"; exit 1; }
SH=$SBX_BASE/$NAME/share
cp "$BIN" "$SH/" && mkdir -p "$SH/work"
timeout 200 bash "$HERE/sbx.sh" exec "$NAME" "$SH/test_systemd_plugin" "$SH/work"
RC=$?
if [ $RC != 0 ]; then
	echo "--- sandbox journal (last 60 lines)"
	timeout 20 bash "$HERE/sbx.sh" exec "$NAME" journalctl --no-pager -n 60 || true
fi
exit $RC
