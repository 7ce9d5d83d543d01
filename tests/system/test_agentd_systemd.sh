#!/bin/bash
# System test (issue 5): agentd inside a real systemd sandbox (tests/system/sbx.sh) swaps a
# runtime=systemd service, every step checked with systemctl in the sandbox.
#
# agentd itself runs as a Type=notify unit of the sandbox's systemd (as in production) and its
# systemd plugin uses its defaults: the unit directory /etc/systemd/system (the sandbox's
# private one, $SBX_BASE/NAME/system on the host) and the system bus (the sandbox's
# dbus-daemon), as an installed agent would; --unit-dir and --systemd-bus are left at their
# defaults on purpose.
#
# The service is a Type=notify unit (systemd-notify --ready --status="web vN") whose health
# check asks systemd for that status: healthy means "systemd runs this very release".
#  1. deploy v1 -> unit file marker v1, active/running, StatusText "web v1"
#  2. deploy v2 -> marker v2, a new MainPID, StatusText "web v2"
#  3. agentctl rollback --wait -> rev 3 = rollback to v1: marker v1, StatusText "web v1"
#  4. kill -9 of agentd at rest (the restarted agent must keep the unit running and watch its
#     health again), then in the middle of swaps (v3, whose start takes 2 s; then redeploys
#     of v2 --force / v3 killed after a random delay), restart: the unit ends on the desired
#     revision, the unit file is always one whole release, no *.tmp is left in the unit dir.
# Cleanup (trap): agentd stops with the sandbox, which is stopped by PID and its cgroups removed;
# a canary in the host's /tmp must survive.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and jq unshare nsenter findmnt setsid systemctl
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
command -v systemd-notify >/dev/null || skip "'systemd-notify' not installed"
NAME=shoal-ads-$RUNID
UNIT=shoal-sys-web.service
export SBX_BASE=$WORK/sbx SBX_OWNER=$$	# the sandbox stops itself if this script is SIGKILLed
mkdir -p "$SBX_BASE"
AGENTD=$(sandbox_bin "$SBX_BASE/$NAME/share" "$AGENTD") || die "cannot copy agentd for the sandbox"
AGENTCTL=$(sandbox_bin "$SBX_BASE/$NAME/share" "$AGENTCTL") || die "cannot copy agentctl"
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX)
echo alive >"$CANARY"

cleanup() {
	local rc=$?
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		if [ -f "${SH:-/nonexistent}/agentd.log" ]; then
			echo "--- agentd.log (tail)"; tail -n 40 "$SH/agentd.log"
		fi
		timeout 20 bash "$HERE/sbx.sh" exec "$NAME" journalctl --no-pager -n 40 2>/dev/null
	fi
	timeout 90 bash "$HERE/sbx.sh" stop "$NAME" >/dev/null || fail "sandbox stop left something"
	[ "$(cat "$CANARY" 2>/dev/null)" = alive ] || fail "host /tmp canary is gone"
	rm -f "$CANARY"
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

X() { timeout 30 bash "$HERE/sbx.sh" exec "$NAME" "$@"; }
ctl() { X "$AGENTCTL" --socket "$SH/agentd.sock" "$@"; }
svc() {
	ctl --timeout 5s --json services | jq -ce 'first(.. | objects | select(.service? == "web"))'
}
state() { # DESIRED RUNNING HEALTH, not swapping
	svc | jq -e --argjson d "$1" --argjson r "$2" --arg h "$3" \
		'.desired_rev == $d and .running_rev == $r and .health == $h and .swapping == false'
}
show() { X systemctl show -p "$1" --value "$UNIT"; }
# unit_is VERSION: systemd runs release VERSION of the unit, from a whole file of ours
unit_is() {
	local v=$1 f=$SBX_BASE/$NAME/system/$UNIT
	head -n1 "$f" | grep -q '^# managed-by: shoal' ||
		{ echo "no shoal marker: $(head -n1 "$f")"; return 1; }
	grep -qx "# release: web $v" "$f" ||
		{ echo "unit file is not $v: $(grep '^# release' "$f")"; return 1; }
	[ "$(show ActiveState)" = active ] || { echo "ActiveState $(show ActiveState)"; return 1; }
	[ "$(show SubState)" = running ] || { echo "SubState $(show SubState)"; return 1; }
	[ "$(show StatusText)" = "web $v" ] ||
		{ echo "StatusText '$(show StatusText)', want 'web $v'"; return 1; }
	[ "$(show NeedDaemonReload)" = no ] || { echo "NeedDaemonReload=yes"; return 1; }
}
# whole_unit_file: the unit file is one release's complete file (never a torn write)
whole_unit_file() {
	local f=$SBX_BASE/$NAME/system/$UNIT v
	for v in v1 v2 v3; do
		tail -n +2 "$f" | cmp -s - "$SH/art/$v/$UNIT" && return 0
	done
	echo "unit file matches no release:"; cat "$f"; return 1
}
no_tmp() {
	local t
	t=$(find "$SBX_BASE/$NAME/system" -maxdepth 2 \( -name '*.tmp' -o -name '.#*' -o -name '*~' \))
	[ -z "$t" ] || { echo "temporary files left in the unit dir: $t"; return 1; }
}
# wait_state LIMIT DESIRED RUNNING HEALTH [soft]: wait_for with the agent's last answer on
# timeout; fatal unless "soft" (then one failure is counted and the test goes on)
wait_state() {
	local end=$((SECONDS + $1)) m
	until state "$2" "$3" "$4" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			m="timed out after $1s waiting for desired $2, running $3, $4, not swapping"
			m="$m; agent says: $(svc 2>&1)"
			if [ "${5:-}" = soft ]; then fail "$m"; return 1; fi
			die "$m"
		fi
		sleep 0.3
	done
}
# check DESC CMD...: run CMD once, fail with its output
check() { local d=$1 out; shift; out=$("$@" 2>&1) || fail "$d: $out"; }

# --- the sandbox and agentd in it
timeout 90 bash "$HERE/sbx.sh" start "$NAME" || die "sandbox did not start"
SH=$SBX_BASE/$NAME/share
mkdir -p "$SH/art" "$SH/state"
make_keyring "$SH/keyring"
make_operator "$SH"
# an artifact per release: the unit (Type=notify, status "web vN") and a health check that
# asks systemd whether this release is the one running
mk_release() { # NAME VERSION START_DELAY
	local d=$SH/art/$1
	mkdir -p "$d"
	cat >"$d/$UNIT" <<EOF
# release: web $1
[Unit]
Description=Shoal system test web $1 ($2)
[Service]
Type=notify
NotifyAccess=all
TimeoutStartSec=60
ExecStart=/bin/sh -c 'sleep $3; systemd-notify --ready --status="web $1"; exec sleep infinity'
EOF
	cat >"$d/check.sh" <<EOF
#!/bin/sh
[ "\$(systemctl show -p StatusText --value $UNIT)" = "web $1" ]
EOF
	chmod +x "$d/check.sh"
	cat >"$d/release.ini" <<EOF
[release]
service = web
runtime = systemd
version = $2
[systemd]
unit = $UNIT
[health]
exec = ./check.sh
interval = 300ms
timeout = 5s
failures = 3
deadline = 30s
EOF
}
mk_release v1 1.0.0 0
mk_release v2 2.0.0 0
mk_release v3 3.0.0 2
PORT=$((20000 + RANDOM % 20000))
ENVS="SHOAL_GOSSIP_PROBE_MS=200"
for e in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
	[ -n "${!e:-}" ] && ENVS="$ENVS $e=${!e}"
done
cat >"$SBX_BASE/$NAME/system/shoal-agentd.service" <<EOF
[Unit]
Description=Shoal agent (system test)
[Service]
Type=notify
Environment=$ENVS
ExecStart=$AGENTD --config /dev/null --node-name sbx1 --state-dir $SH/state \\
	--socket $SH/agentd.sock --socket-group "" --bind 127.0.0.1:$PORT \\
	--keyring $SH/keyring --cluster sys$RUNID --log-level info --operators-dir $SH/operators
StandardError=append:$SH/agentd.log
TimeoutStartSec=60
TimeoutStopSec=30
EOF
X systemctl daemon-reload || die "daemon-reload"
start_agentd() {
	X systemctl start shoal-agentd.service ||
		die "agentd unit did not start: $(X systemctl status shoal-agentd --no-pager 2>&1 | tail -5)"
	wait_for 30 "agentd to answer" ctl ping
}
start_agentd
ok "sandbox $NAME up; agentd runs in it as a Type=notify unit" \
	"(MainPID $(X systemctl show -p MainPID --value shoal-agentd))"

declare -A ID
for v in v1 v2 v3; do
	ID[$v]=$(ctl artifact import "$SH/art/$v") || die "import $v"
done

# --- 1. v1
ctl deploy web --key "$SH/operator.key" "${ID[v1]}" --reason "v1" >/dev/null || die "deploy v1"
wait_state 60 1 1 healthy
check "after deploy v1" unit_is v1
check "after deploy v1" no_tmp
pid1=$(show MainPID)
ok "rev 1: systemd runs $UNIT v1 (active/running, MainPID $pid1, StatusText 'web v1')"

# --- 2. v2
ctl deploy web --key "$SH/operator.key" "${ID[v2]}" --reason "v2" >/dev/null || die "deploy v2"
wait_state 60 2 2 healthy
check "after deploy v2" unit_is v2
check "after deploy v2" no_tmp
pid2=$(show MainPID)
[ "$pid2" != "$pid1" ] || fail "MainPID did not change from v1 to v2 ($pid1)"
ok "rev 2: systemd runs v2 (MainPID $pid2)"

# --- 3. operator rollback
out=$(ctl rollback web --key "$SH/operator.key" --reason "system test" --wait --timeout 60s 2>&1) ||
	die "rollback --wait: $out"
wait_state 60 3 3 healthy
check "after rollback" unit_is v1
check "after rollback" no_tmp
[ "$(svc | jq -r .running)" = "${ID[v1]}" ] ||
	fail "rev 3 runs $(svc | jq -r .running), want v1 ${ID[v1]}"
ctl --json history web | jq -e 'first(.. | objects | select(.rev? == 3)) | .kind == "rollback"' \
	>/dev/null || fail "history: rev 3 is not a rollback: $(ctl --json history web)"
ok "rev 3 (rollback): systemd runs v1 again (MainPID $(show MainPID))"

# --- 4. kill -9 of agentd in the middle of a swap, then restart
kill_agentd() {
	local p
	p=$(X systemctl show -p MainPID --value shoal-agentd)
	[ -n "$p" ] && [ "$p" != 0 ] || die "no agentd MainPID"
	# only agentd itself: the service's unit has its own cgroup anyway
	X systemctl kill --kill-whom=main --signal=KILL shoal-agentd.service || die "kill agentd"
	for _ in $(seq 100); do
		[ "$(X systemctl show -p ActiveState --value shoal-agentd)" != active ] && break
		sleep 0.1
	done
	note "agentd (pid $p in the sandbox) killed with SIGKILL: $1"
}
converged() {
	svc | jq -e --argjson r "$1" '.desired_rev == $r and .running_rev == $r and .swapping == false'
}
swapping() { svc | jq -e '.swapping == true or .running_rev != .desired_rev'; }

# 4a. steady state: kill -9 and restart must neither restart the unit nor lose its health
pid3=$(show MainPID)
kill_agentd "at rest, rev 3 healthy"
start_agentd
wait_for 30 "rev 3 running after restart" converged 3
check "after kill -9 at rest + restart" unit_is v1
[ "$(show MainPID)" = "$pid3" ] ||
	fail "the restarted agent restarted the unit: MainPID $pid3 -> $(show MainPID)"
ok "rev 3: agentd killed at rest and restarted: the unit kept running (MainPID $pid3)"
wait_state 30 3 3 healthy soft && ok "rev 3 healthy again after the restart"

# 4b. v3 starts slowly (2 s before READY): kill while the swap is observed in progress
ctl deploy web --key "$SH/operator.key" "${ID[v3]}" --reason "v3" >/dev/null || die "deploy v3"
wait_for 30 "the swap to rev 4 to be in progress" swapping
kill_agentd "during the swap to rev 4 ($(X systemctl show -p ActiveState,SubState,Job "$UNIT" |
	tr '\n' ' '))"
check "right after kill -9" whole_unit_file
check "right after kill -9" no_tmp
start_agentd
wait_state 90 4 4 healthy
check "after kill -9 + restart (rev 4)" unit_is v3
check "after kill -9 + restart (rev 4)" no_tmp
ok "rev 4: killed mid-swap, restarted: systemd runs v3, no temporary file"

# 4c..: a condemned release needs --force; redeploys killed after random delays
out=$(ctl deploy web --key "$SH/operator.key" "${ID[v2]}" 2>&1) &&
	fail "deploy of condemned v2 without --force succeeded: $out"
rev=4
for k in 1 2 3; do
	case $((k % 2)) in 1) a=v2; aid=${ID[v2]} ;; 0) a=v3; aid=${ID[v3]} ;; esac
	ctl deploy web --key "$SH/operator.key" "$aid" --force --reason "redeploy $k" >/dev/null || die "deploy $a --force"
	rev=$((rev + 1))
	d=0.$((RANDOM % 10))$((RANDOM % 10))
	sleep "$d"
	kill_agentd "$(printf 'redeploy %d of %s, %s s after the deploy' "$k" "$a" "$d")"
	check "right after kill -9 ($k)" whole_unit_file
	check "right after kill -9 ($k)" no_tmp
	start_agentd
	# converged first (what runs), then health (the agent must watch it again after restart)
	wait_for 90 "rev $rev running after restart" converged $rev
	check "after kill -9 + restart (rev $rev)" unit_is $a
	check "after kill -9 + restart (rev $rev)" no_tmp
	ok "rev $rev: killed ${d}s after the deploy of $a, restarted: systemd runs $a"
	# after a restart the agent must watch the running revision's health again
	wait_state 30 $rev $rev healthy soft && ok "rev $rev healthy again after the restart"
done
units=$(X systemctl list-units --all --no-legend 'shoal-sys-*')
n=$(echo "$units" | grep -c .)
[ "$n" = 1 ] || fail "$n shoal-sys-* units in the sandbox, want 1: $units"
X systemctl stop shoal-agentd.service || fail "agentd did not stop cleanly"
[ "$(show ActiveState)" = active ] ||
	fail "stopping agentd stopped the service ($(show ActiveState))"
ok "agentd stopped cleanly; the service it manages keeps running"
[ "$FAILS" = 0 ] && echo "PASS: test_agentd_systemd"
exit 0
