#!/bin/bash
# System test (issue 13): the .deb's whole life under a real systemd, in a sandbox (sbx.sh)
# whose /usr, /etc and /var are overlays of the host's, so dpkg inside writes only to scratch
# directories of this test and never to the host's /usr, /etc or dpkg database.
#
#  0. build the package twice from this source tree, as `make deb` does (release build,
#     hardened, stripped + shoal-dbgsym): version V and V+systest1; lintian must report no
#     error or warning on either.
#  1. dpkg -i V: files in place, group shoal created (sysusers), unit not enabled or started
#     (a new install waits for the operator), agentd.service loads with its sandboxing, and
#     `systemd-analyze security` rates it at most 4.0.
#  2. configure (loopback gossip port), enable --now: active, `agentctl status` answers as
#     root, the systemd runtime can write its unit into /etc/systemd/system and start it over
#     D-Bus despite ProtectSystem= (a deploy reaches healthy).
#  3. reload: `systemctl reload` keeps the MainPID; with a broken config it fails and the
#     agent keeps running. Needs `agentd --check-config` (ExecReload runs it): without that
#     flag every reload fails, so this step is skipped with a NOTE (the rest still runs).
#  4. a config error (exit status 2) fails the unit once: RestartPreventExitStatus=2, no
#     restart loop.
#  5. upgrade: dpkg -i V+systest1 restarts the running agent (try-restart: new MainPID),
#     keeps it enabled, the deployed systemd service keeps running (same MainPID).
#  6. purge: the agent is stopped, every file of the package, /etc/shoal, /var/lib/shoal,
#     /run/shoal and the enablement symlink are gone; group shoal stays (Debian keeps system
#     groups; README "The Debian package").
# Host checks: no /usr/sbin/agentd, no shoal in the host's dpkg database, no group shoal
# appeared on the host; the sandbox's host /tmp canary survives.
# Prints "SKIP: <reason>" and exits 77 without root, systemd, overlayfs or a needed tool.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and jq unshare nsenter findmnt setsid systemctl cmake cpack dpkg-deb dpkg-shlibdeps \
	file objcopy readelf lintian
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
grep -qw overlay /proc/filesystems || skip "the kernel has no overlay filesystem"
for d in /usr /etc /var; do
	[ -d "$d" ] && ! [ -L "$d" ] || skip "$d is not a directory (the overlays need one)"
done
NAME=shoal-deb-$RUNID
UNIT=shoal-deb-web.service
export SBX_BASE=$WORK/sbx SBX_OWNER=$$
mkdir -p "$SBX_BASE"
SH=$SBX_BASE/$NAME/share
OV=$WORK/ovl
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX)
echo alive >"$CANARY"
# What the host has before: none of it may change.
host_state() {
	echo "agentd: $(ls -l --time-style=+%s /usr/sbin/agentd 2>&1 | cut -c1-60)"
	echo "dpkg: $(dpkg-query -W -f='${Status} ${Version}' shoal 2>&1)"
	echo "group: $(getent group shoal || echo none)"
	echo "etc: $(ls -l /etc/shoal 2>&1 | head -n3 | tr '\n' ' ')"
}
HOST_BEFORE=$(host_state)

cleanup() {
	local rc=$?
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		timeout 20 bash "$HERE/sbx.sh" exec "$NAME" journalctl --no-pager -n 60 2>/dev/null
	fi
	timeout 90 bash "$HERE/sbx.sh" stop "$NAME" >/dev/null || fail "sandbox stop left something"
	[ "$(cat "$CANARY" 2>/dev/null)" = alive ] || fail "host /tmp canary is gone"
	rm -f "$CANARY"
	local after
	after=$(host_state)
	[ "$after" = "$HOST_BEFORE" ] ||
		fail "the host changed: before [$HOST_BEFORE] after [$after]"
	# the overlays lived in namespaces that are gone with the sandbox; --one-file-system
	# guards against removing through a mount anyway
	rm -rf --one-file-system "$OV" 2>/dev/null || true
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

X() { timeout 120 bash "$HERE/sbx.sh" exec "$NAME" "$@"; }
ctl() { X /usr/bin/agentctl "$@"; }
check() { local d=$1 out; shift; out=$("$@" 2>&1) || fail "$d: $out"; }
unit() { X systemctl show -p "$1" --value "${2:-agentd.service}"; }

# --- 0. two packages, built as `make deb` builds them
B=${SHOAL_BUILD_DIR:?}/systest-deb
V=$(sed -n 's/^project(shoal VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$V" ] || die "no project version in $SRC/CMakeLists.txt"
V2=$V+systest1
mkdir -p "$WORK/debs"
build_deb() { # VERSION
	cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
		-DSHOAL_TESTS=OFF -DSHOAL_SANITIZE=OFF -DSHOAL_FUZZ=OFF -DSHOAL_HARDEN=ON \
		-DSHOAL_WERROR=ON -DSHOAL_DEB_VERSION="$1" >"$WORK/cmake.log" 2>&1 &&
		cmake --build "$B" -j2 >>"$WORK/cmake.log" 2>&1 &&
		rm -f "$B"/*.deb "$B"/*.ddeb &&
		(cd "$B" && cpack -G DEB) >>"$WORK/cmake.log" 2>&1 &&
		cp "$B"/*.deb "$B"/*.ddeb "$WORK/debs/" ||
		{ tail -n 30 "$WORK/cmake.log"; die "building the $1 package failed"; }
}
build_deb "$V"
build_deb "$V2"
ARCH=$(dpkg --print-architecture)
DEB1=$WORK/debs/shoal_${V}_$ARCH.deb DEB2=$WORK/debs/shoal_${V2}_$ARCH.deb
for f in "$DEB1" "$DEB2" "$WORK/debs/shoal-dbgsym_${V}_$ARCH.ddeb"; do
	[ -s "$f" ] || die "no $f (have: $(ls "$WORK/debs"))"
done
lint=$(lintian --fail-on error,warning --display-info "$DEB1" "$WORK/debs/shoal-dbgsym_${V}_$ARCH.ddeb" \
	"$DEB2" 2>&1) || die "lintian reports errors or warnings: $lint"
ok "built shoal $V and $V2 (+ dbgsym); lintian: no error, no warning"
echo "$lint" | grep -v 'running with root privileges' | sed 's/^/   | /'

# --- the sandbox, on overlays of /usr, /etc and /var (a private mount namespace for the
# overlays, which the sandbox's own namespace copies; the host's mounts never change)
for d in usr etc var; do mkdir -p "$OV/$d/up" "$OV/$d/wk"; done
timeout 120 unshare --mount --propagation private -- bash -euc '
	for d in usr etc var; do
		mount -t overlay "shoal-deb-$d" -o "lowerdir=/$d,upperdir=$1/$d/up,workdir=$1/$d/wk" "/$d"
	done
	# the proof that writes land in the overlay: a file in /usr here is absent on the host
	touch "/usr/.shoal-deb-$3"
	exec bash "$2" start "$3"' _ "$OV" "$HERE/sbx.sh" "$NAME" || die "sandbox did not start"
[ ! -e "/usr/.shoal-deb-$NAME" ] && [ -e "$OV/usr/up/.shoal-deb-$NAME" ] ||
	die "the /usr overlay is not in effect (a probe file reached the host's /usr)"
X test -e "/usr/.shoal-deb-$NAME" || die "the sandbox does not see its /usr overlay"
# A Debian machine has no policy-rc.d; images made for containers (Docker's debian, and the
# fresh-root.sh chroot) have one that refuses every start, and deb-systemd-invoke obeys it. The
# sandbox is a machine with its own systemd: it loses the file (in its /usr overlay only).
X rm -f /usr/sbin/policy-rc.d || die "cannot remove the sandbox's policy-rc.d"
mkdir -p "$SH"
cp "$DEB1" "$DEB2" "$SH/"
ok "sandbox $NAME up on overlays of /usr /etc /var"

# --- 1. install
out=$(X env DEBIAN_FRONTEND=noninteractive dpkg -i "$SH/$(basename "$DEB1")" 2>&1) ||
	die "dpkg -i $V: $out"
[ "$(X dpkg-query -W -f='${Status} ${Version}' shoal)" = "install ok installed $V" ] ||
	fail "dpkg-query: $(X dpkg-query -W shoal 2>&1)"
for f in /usr/sbin/agentd /usr/bin/agentctl /usr/lib/systemd/system/agentd.service \
	/etc/shoal/agentd.conf /usr/share/man/man8/agentd.8.gz /usr/share/doc/shoal/copyright; do
	X test -e "$f" || fail "$f not installed"
done
X getent group shoal >/dev/null || fail "group shoal not created by the postinst (sysusers)"
[ "$(X systemctl is-enabled agentd.service 2>&1)" = disabled ] ||
	fail "a new install enabled agentd: $(X systemctl is-enabled agentd.service 2>&1)"
[ "$(unit ActiveState)" = inactive ] || fail "a new install started agentd: $(unit ActiveState)"
[ "$(unit LoadState)" = loaded ] || fail "agentd.service LoadState $(unit LoadState)"
sec=$(X systemd-analyze security --no-pager agentd.service 2>&1 | sed -n 's/.*Overall exposure level for agentd.service: \([0-9.]*\).*/\1/p')
[ -n "$sec" ] || fail "no exposure level from systemd-analyze security"
[ -z "$sec" ] || awk -v s="$sec" 'BEGIN { exit !(s <= 4.0) }' ||
	fail "systemd-analyze security rates agentd.service $sec (> 4.0)"
ok "installed $V: files, group shoal, unit loaded, disabled, inactive; exposure $sec"

# --- 2. configure and start
PORT=$((20000 + RANDOM % 20000))
X sh -c "printf '\n; system test: gossip on loopback only\nbind = 127.0.0.1:$PORT\nlog-level = debug\n' >> /etc/shoal/agentd.conf" ||
	die "cannot edit the config"
# an operator key for the deploy below, trusted the documented way (agentd(8) operators-dir)
X sh -c 'mkdir -p /etc/shoal/operators && agentctl keygen /etc/shoal/test-op.key >/dev/null &&
	cp /etc/shoal/test-op.key.pub /etc/shoal/operators/test.pub' || die "agentctl keygen"
out=$(X systemctl enable --now agentd.service 2>&1) ||
	die "enable --now: $out $(X systemctl status agentd --no-pager 2>&1 | tail -n 8)"
wait_for 30 "agentctl status as root" ctl status
st=$(ctl status) || die "agentctl status failed"
echo "$st" | sed 's/^/   | /'
# the node is named after the host (the sandbox's hostname), the version is the package's
echo "$st" | grep -Eq "^Node: +$NAME\$" || fail "agentctl status: no 'Node: $NAME'"
echo "$st" | grep -Eq "^Version: +$V\$" || fail "agentctl status: no 'Version: $V'"
echo "$st" | grep -Eq "^State dir: +/var/lib/shoal\$" || fail "agentctl status: state dir"
PID1=$(unit MainPID)
[ "$PID1" -gt 0 ] 2>/dev/null || die "no MainPID"
[ "$(X stat -c '%G %a' /run/shoal/agentd.sock)" = "shoal 660" ] ||
	fail "control socket: $(X stat -c '%U:%G %a' /run/shoal/agentd.sock 2>&1)"
ok "agentd active (MainPID $PID1), agentctl status answers, socket root:shoal 0660"

# the systemd runtime under the unit's sandbox: a unit file into /etc/systemd/system, D-Bus
A=$SH/art
mkdir -p "$A"
cat >"$A/$UNIT" <<EOF
[Unit]
Description=Shoal .deb system test service
[Service]
ExecStart=/bin/sleep infinity
EOF
cat >"$A/check.sh" <<EOF
#!/bin/sh
systemctl is-active --quiet $UNIT
EOF
chmod +x "$A/check.sh"
cat >"$A/release.ini" <<EOF
[release]
service = debweb
runtime = systemd
version = 1.0.0
[systemd]
unit = $UNIT
[health]
exec = ./check.sh
interval = 300ms
timeout = 5s
failures = 3
deadline = 30s
EOF
id=$(ctl artifact import "$A" 2>/dev/null) || die "import: $(ctl artifact import "$A" 2>&1)"
ctl deploy debweb "$id" --reason "deb test" --key /etc/shoal/test-op.key >/dev/null || die "deploy"
healthy() {
	ctl --json services | jq -e 'first(.. | objects | select(.service? == "debweb")) |
		.health == "healthy" and .running_rev == 1'
}
end=$((SECONDS + 60))
until healthy >/dev/null 2>&1; do
	[ $SECONDS -lt $end ] || die "debweb never healthy: $(ctl --json services 2>&1 | head -c 600)"
	sleep 0.5
done
[ "$(unit ActiveState "$UNIT")" = active ] || fail "$UNIT: $(unit ActiveState "$UNIT")"
WEBPID=$(unit MainPID "$UNIT")
ok "systemd runtime works under the unit's sandbox: $UNIT active (MainPID $WEBPID), healthy"

# --- 3. reload
if X /usr/sbin/agentd --help 2>&1 | grep -q -- --check-config; then
	out=$(X systemctl reload agentd.service 2>&1) || fail "reload of a good config: $out"
	[ "$(unit MainPID)" = "$PID1" ] || fail "reload changed the MainPID"
	X cp /etc/shoal/agentd.conf "$SH/agentd.conf.good"
	X sh -c 'echo "no-such-key = 1" >> /etc/shoal/agentd.conf'
	if X systemctl reload agentd.service >/dev/null 2>&1; then
		fail "reload of a broken config succeeded"
	fi
	[ "$(unit ActiveState)" = active ] && [ "$(unit MainPID)" = "$PID1" ] ||
		fail "a failed reload disturbed the agent: $(unit ActiveState) $(unit MainPID)"
	X cp "$SH/agentd.conf.good" /etc/shoal/agentd.conf
	ctl status >/dev/null || fail "agentctl status after the failed reload"
	ok "reload: good config keeps MainPID $PID1; a broken one fails the reload, agent unharmed"
else
	note "NOTE: this agentd has no --check-config, which ExecReload runs first: every" \
		"'systemctl reload agentd' fails until it has; reload not tested"
fi

# --- 4. a configuration error stops the unit without a restart loop
X cp /etc/shoal/agentd.conf "$SH/agentd.conf.good"
X sh -c 'echo "no-such-key = 1" >> /etc/shoal/agentd.conf'
X systemctl restart agentd.service >/dev/null 2>&1 && fail "restart with a broken config succeeded"
sleep 5 # RestartSec=2s: a loop would have restarted by now
[ "$(unit ActiveState)" = failed ] || fail "after a config error: ActiveState $(unit ActiveState)"
[ "$(unit ExecMainStatus)" = 2 ] || fail "exit status $(unit ExecMainStatus), want 2"
[ "$(unit NRestarts)" = 0 ] || fail "the unit restarted $(unit NRestarts) times on exit status 2"
X cp "$SH/agentd.conf.good" /etc/shoal/agentd.conf
X systemctl reset-failed agentd.service
X systemctl start agentd.service || die "start after restoring the config"
wait_for 30 "agentctl status after the restart" ctl status
PID1=$(unit MainPID)
ok "config error: exit status 2, unit failed, 0 restarts; restored and restarted (MainPID $PID1)"

# --- 5. upgrade
out=$(X env DEBIAN_FRONTEND=noninteractive dpkg -i "$SH/$(basename "$DEB2")" 2>&1) ||
	die "dpkg -i $V2: $out"
[ "$(X dpkg-query -W -f='${Version}' shoal)" = "$V2" ] || fail "version after upgrade"
wait_for 30 "agentd active after the upgrade" test "$(unit ActiveState)" = active
PID2=$(unit MainPID)
[ "$PID2" != "$PID1" ] || fail "the upgrade did not restart agentd (MainPID still $PID1)"
[ "$(X systemctl is-enabled agentd.service 2>&1)" = enabled ] || fail "the upgrade disabled agentd"
wait_for 30 "agentctl status after the upgrade" ctl status
[ "$(unit MainPID "$UNIT")" = "$WEBPID" ] ||
	fail "the systemd-runtime service was restarted by the upgrade"
X zcat /usr/share/doc/shoal/changelog.gz | head -n1 | grep -qF "($V2)" ||
	fail "changelog does not start with $V2"
ok "upgrade to $V2: agentd restarted (MainPID $PID1 -> $PID2), still enabled; $UNIT untouched"

# --- 6. purge
files=$(X dpkg-query -L shoal) || die "dpkg-query -L"
# the operator key files are the test's, not the package's: an operator removes such files
X rm -f /etc/shoal/test-op.key /etc/shoal/test-op.key.pub /etc/shoal/operators/test.pub
out=$(X env DEBIAN_FRONTEND=noninteractive dpkg --purge shoal 2>&1) || die "dpkg --purge: $out"
[ "$(unit ActiveState)" = inactive ] || fail "agentd still $(unit ActiveState) after purge"
left=""
while read -r f; do
	[ -n "$f" ] || continue
	if X test -d "$f"; then continue; fi	# shared directories (/usr/bin, ...) stay
	X test -e "$f" && left="$left $f"
done <<<"$files"
for f in /etc/shoal /var/lib/shoal /run/shoal /usr/share/doc/shoal \
	/etc/systemd/system/multi-user.target.wants/agentd.service \
	/var/lib/systemd/deb-systemd-helper-enabled/agentd.service.dsh-also; do
	X test -e "$f" && left="$left $f"
done
[ -z "$left" ] || fail "left after purge:$left"
st=$(X dpkg-query -W -f='${Status}' shoal 2>/dev/null || true)
case $st in "" | "unknown ok not-installed" | "purge ok not-installed") ;;
*) fail "dpkg status after purge: $st" ;; esac
X getent group shoal >/dev/null || fail "group shoal was removed (documented: it stays)"
ok "purged: no file of the package, no /etc/shoal /var/lib/shoal /run/shoal, unit gone;" \
	"group shoal kept"
