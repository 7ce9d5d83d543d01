#!/bin/bash
# tests/system/test_systemd_sbx.sh: the sandbox harness itself. Two sandboxes boot at the same
# time (as two suites would), stay independent (a unit started in one is unknown to the
# other, each has its own hostname and /tmp), stop cleanly (no cgroup left, systemd gone) and
# leave the host's /tmp, /var/tmp and host processes alone. A sandbox whose owner dies by
# SIGKILL is stopped by its watcher.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (mount/pid namespaces, cgroups)"
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
for c in unshare nsenter findmnt setsid systemctl; do
	command -v $c >/dev/null || skip "$c is missing"
done
A=shoal-sbxa-$$-$RANDOM; B=shoal-sbxb-$$-$RANDOM
export SBX_BASE SBX_OWNER=$$	# the sandbox stops itself if this script is SIGKILLed
SBX_BASE=$(mktemp -d "${TMPDIR:-/tmp}/shoal-sbx.XXXXXX")
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX); VCANARY=$(mktemp /var/tmp/shoal-canary.XXXXXX)
echo alive > "$CANARY"; echo alive > "$VCANARY"
sleep 600 & GUARD=$!	# a host process that must survive
RC=1
fail() { echo "FAIL: $*"; exit 1; }
cleanup() {
	local bad=0
	timeout 60 bash "$HERE/sbx.sh" stop "$A" >/dev/null || bad=1
	timeout 60 bash "$HERE/sbx.sh" stop "$B" >/dev/null || bad=1
	kill -0 $GUARD 2>/dev/null || { echo "FAIL: host guard process died"; bad=1; }
	kill $GUARD 2>/dev/null; wait $GUARD 2>/dev/null
	[ "$(cat "$CANARY" 2>/dev/null)" = alive ] || { echo "FAIL: host /tmp canary is gone"; bad=1; }
	[ "$(cat "$VCANARY" 2>/dev/null)" = alive ] || { echo "FAIL: host /var/tmp canary is gone"; bad=1; }
	rm -f "$CANARY" "$VCANARY"; rm -rf "$SBX_BASE"
	[ $bad = 0 ] || RC=1
	echo "exit $RC"; exit $RC
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# both at once
timeout 90 bash "$HERE/sbx.sh" start "$A" > "$SBX_BASE/a.out" 2>&1 & pa=$!
timeout 90 bash "$HERE/sbx.sh" start "$B" > "$SBX_BASE/b.out" 2>&1 & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
cat "$SBX_BASE/a.out" "$SBX_BASE/b.out"
[ $ra = 0 ] && [ $rb = 0 ] || fail "a sandbox did not start ($ra, $rb)"
PA=$(bash "$HERE/sbx.sh" pid "$A"); PB=$(bash "$HERE/sbx.sh" pid "$B")
[ -n "$PA" ] && [ -n "$PB" ] && [ "$PA" != "$PB" ] || fail "pids '$PA' '$PB'"
X() { timeout 30 bash "$HERE/sbx.sh" exec "$@"; }
[ "$(X "$A" hostname)" = "$A" ] || fail "hostname in $A"
[ "$(X "$B" hostname)" = "$B" ] || fail "hostname in $B"
[ "$(X "$A" systemctl is-system-running)" = running ] || fail "$A not running"
# the host /tmp is not the sandbox's /tmp
X "$A" test -e "$CANARY" && fail "host /tmp visible in $A"
X "$A" sh -c "echo a > /tmp/shoal-inside-$$"
[ -e /tmp/shoal-inside-$$ ] && fail "sandbox /tmp write reached the host"
# units are per sandbox
printf '[Service]\nExecStart=/bin/sleep 1000\n' > "$SBX_BASE/$A/system/only-a.service"
X "$A" systemctl daemon-reload
X "$A" systemctl start only-a.service || fail "start in $A"
[ "$(X "$A" systemctl is-active only-a.service)" = active ] || fail "only-a not active in $A"
[ "$(X "$B" systemctl show -p LoadState --value only-a.service)" = not-found ] ||
	fail "only-a visible in $B"
# the sandbox's PID 1 is systemd, in its own pid namespace
[ "$(X "$A" cat /proc/1/comm)" = systemd ] || fail "PID 1 in $A"
[ "$(readlink /proc/$PA/ns/pid)" != "$(readlink /proc/self/ns/pid)" ] || fail "same pid ns"
[ "$(readlink /proc/$PA/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] || fail "same mount ns"
# stop A while B keeps running; A's processes and cgroups go away
timeout 60 bash "$HERE/sbx.sh" stop "$A" || fail "stop $A left something"
[ -d /proc/$PA ] && fail "systemd of $A still alive"
[ "$(X "$B" systemctl is-system-running)" = running ] || fail "$B affected by stopping $A"
find /sys/fs/cgroup -maxdepth 6 -type d -name "shoal-sbx-$A" | grep -q . && fail "cgroup of $A left"
# a suite killed with SIGKILL (no trap runs): the owner watcher stops its sandbox
C=shoal-sbxc-$$-$RANDOM
sleep 600 & OWNER=$!
SBX_OWNER=$OWNER timeout 90 bash "$HERE/sbx.sh" start "$C" >/dev/null || fail "start $C"
PC=$(bash "$HERE/sbx.sh" pid "$C") || fail "no pid for $C"
kill -KILL $OWNER; wait $OWNER 2>/dev/null
for _ in $(seq 150); do [ -d /proc/$PC ] || break; sleep 0.2; done
[ -d /proc/$PC ] && { bash "$HERE/sbx.sh" stop "$C"; fail "sandbox $C outlived its owner"; }
# the watcher's stop goes on to remove the cgroups: give it a bounded while
for _ in $(seq 100); do
	find /sys/fs/cgroup -maxdepth 6 -type d -name "shoal-sbx-$C" | grep -q . || break
	sleep 0.1
done
find /sys/fs/cgroup -maxdepth 6 -type d -name "shoal-sbx-$C" | grep -q . && fail "cgroup of $C left"
RC=0
