#!/usr/bin/env bash
# tests/system/test_disk_full.sh: a filesystem that fills during an import (issue 13).
# agentd's state directory on a 4 MiB tmpfs; an artifact of 8 MiB is imported: the import
# fails with the reason in words ("no space left on the filesystem of the state directory",
# error name no_space), never "Input/output error (internal)"; the agent keeps serving, and
# after a restart on the same directory (LMDB refuses writes after a failed commit until then)
# every artifact imported before the failure reads back and a small import succeeds.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and mount umount
WORK=$(mktemp -d /tmp/shoal-diskfull-XXXXXX)
FS=$WORK/fs
mkdir -p "$FS"
APID=
cleanup() {
	[ -n "$APID" ] && kill -TERM "$APID" 2>/dev/null && wait "$APID" 2>/dev/null
	mountpoint -q "$FS" && umount "$FS"
	agentd_lib_cleanup
}
trap cleanup EXIT
mount -t tmpfs -o size=4m tmpfs "$FS" || skip "cannot mount a tmpfs"
SOCK=$WORK/agentd.sock
start() {
	"$AGENTD" --config /dev/null --state-dir "$FS/st" --socket "$SOCK" --socket-group "" \
		--bind "127.0.0.1:$((20000 + RANDOM % 20000))" --log-level info 2>>"$WORK/agentd.log" &
	APID=$!
	wait_for 20 "agentd to answer" "$AGENTCTL" -s "$SOCK" ping
}
ctl() { "$AGENTCTL" -s "$SOCK" "$@"; }
mk() { # mk DIR SIZE
	mkdir -p "$1/bin"
	printf '[release]\nservice = big\nruntime = exec\nversion = %s\n[exec]\ncommand = ./bin/blob\n' \
		"$(basename "$1")" >"$1/release.ini"
	head -c "$2" /dev/urandom >"$1/bin/blob"
}
start
mk "$WORK/small" 100000
SMALL=$(ctl artifact import "$WORK/small") || die "small import before the disk fills"
mk "$WORK/huge" 8000000
out=$(ctl artifact import "$WORK/huge" 2>&1) && die "an 8 MiB import on a 4 MiB filesystem succeeded"
echo "$out" | grep -q "no space left on the filesystem of the state directory (no_space)" ||
	fail "the failed import does not say the disk is full: $out"
echo "$out" | grep -qi "input/output" && fail "the failed import still says Input/output error: $out"
ok "import on a full disk: $out"
ctl ping >/dev/null || fail "the agent stopped answering after the disk filled"
kill -TERM "$APID"; wait "$APID" 2>/dev/null; APID=
start
ctl artifact show "$SMALL" >/dev/null || fail "the artifact imported before the failure is gone"
rm -rf "$WORK/huge"
mk "$WORK/small2" 1000
ctl artifact import "$WORK/small2" >/dev/null || fail "a small import after a restart failed"
ok "after a restart: earlier artifacts read back, a small import succeeds"
[ "$FAILS" = 0 ]
