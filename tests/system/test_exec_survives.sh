#!/bin/bash
# System test (issue 13): an exec service survives restarts of agentd under systemd.
#
# agentd runs as a Type=notify unit with Restart=on-failure inside a real systemd sandbox
# (tests/system/sbx.sh, the same harness as test_agentd_systemd.sh) and deploys a runtime=exec
# service: a tiny HTTP responder (busybox httpd serving "web vN" from the release directory).
# A client loop on the host polls it every 100 ms (each request bounded to 2 s) and counts
# failed requests. Then:
#  1. deploy v1, healthy; the responder's PID (the process listening on its port) is recorded
#  2. systemctl restart agentd                       -> same PID, no failed request
#  3. systemctl stop agentd; systemctl start agentd  -> same PID, no failed request
#  4. kill -9 of agentd, systemd restarts it (Restart=on-failure) -> same PID, no failed request
#  5. an upgrade as the .deb does it: the binary replaced by rename, daemon-reload,
#     systemctl try-restart                         -> same PID, no failed request
#     (after each: the agent reports rev 1 running and healthy again, without a swap)
#     and agentd's log shows no swap since the first deploy (it adopted the process)
#  6. the adopted process is killed: agentd sees it (pidfd) and starts a new one, in the scope
#  7. deploy v2: the old process is gone, a new one answers "web v2"
#  8. agentctl rollback: the v2 process is gone, a new one answers "web v1"
# Under systemd each exec service runs in a transient scope of its own (shoal-exec-web.scope),
# outside agentd's cgroup; the test checks that too.
# Cleanup (trap): the poller is stopped by PID, agentd stops with the sandbox, which is stopped
# by PID and its cgroups removed; a canary in the host's /tmp must survive.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and jq unshare nsenter findmnt setsid systemctl curl busybox ss pgrep
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
NAME=shoal-exs-$RUNID
export SBX_BASE=$WORK/sbx SBX_OWNER=$$	# the sandbox stops itself if this script is SIGKILLed
mkdir -p "$SBX_BASE"
AGENTD=$(sandbox_bin "$SBX_BASE/$NAME/share" "$AGENTD") || die "cannot copy agentd for the sandbox"
AGENTCTL=$(sandbox_bin "$SBX_BASE/$NAME/share" "$AGENTCTL") || die "cannot copy agentctl"
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX)
echo alive >"$CANARY"
POLLER=

cleanup() {
	local rc=$?
	[ -n "$POLLER" ] && kill "$POLLER" 2>/dev/null && wait "$POLLER" 2>/dev/null
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
wait_state() { # LIMIT DESIRED RUNNING HEALTH
	local end=$((SECONDS + $1))
	until state "$2" "$3" "$4" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] ||
			die "timed out after $1s waiting for desired $2, running $3, $4: $(svc 2>&1)"
		sleep 0.3
	done
}
# The PIDs (host namespace) listening on the service's port; empty when none.
listeners() {
	ss -Hltnp "sport = :$WPORT" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ' ' |
		sed 's/ $//'
}
answer() { curl -sf --max-time 2 "http://127.0.0.1:$WPORT/"; }
agent_pid() { X systemctl show -p MainPID --value shoal-agentd; }

# --- the sandbox and agentd in it
timeout 90 bash "$HERE/sbx.sh" start "$NAME" || die "sandbox did not start"
SH=$SBX_BASE/$NAME/share
mkdir -p "$SH/art" "$SH/state"
make_keyring "$SH/keyring"
make_operator "$SH"
PORT=$((20000 + RANDOM % 20000))
WPORT=$((PORT + 1))
for p in $PORT $WPORT; do
	[ -z "$(ss -Hltn "sport = :$p")" ] || skip "port $p is in use"
done
# an artifact per release: busybox httpd serving "web vN", healthy when it answers so
mk_release() { # NAME VERSION
	local d=$SH/art/$1
	mkdir -p "$d/www"
	echo "web $1" >"$d/www/index.html"
	cat >"$d/check.sh" <<EOF
#!/bin/sh
[ "\$(curl -sf --max-time 2 http://127.0.0.1:$WPORT/)" = "web $1" ]
EOF
	chmod +x "$d/check.sh"
	cat >"$d/release.ini" <<EOF
[release]
service = web
runtime = exec
version = $2
[exec]
command = echo "web $1 starting in \$SHOAL_DIR"; setsid -f sleep $ESCAPEE; exec busybox httpd -f -p 127.0.0.1:$WPORT -h ./www
[health]
exec = ./check.sh
interval = 300ms
timeout = 5s
failures = 3
deadline = 30s
EOF
}
# Each instance also leaves a daemon behind that escapes its process group (setsid), as
# daemonising programs do: only the scope still holds it, and a swap must end it too.
ESCAPEE=7$WPORT	# a sleep this long is ours (unique per run: the port)
escapees() { pgrep -xf "sleep $ESCAPEE" | tr '\n' ' ' | sed 's/ $//'; }
mk_release v1 1.0.0
mk_release v2 2.0.0
# the unit runs its own copy, which step 5 upgrades in place the way dpkg does (rename)
mkdir -p "$SH/sbin"
cp "$AGENTD" "$SH/sbin/agentd" || die "cannot copy agentd"
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
ExecStart=$SH/sbin/agentd --config /dev/null --node-name sbx1 --state-dir $SH/state \\
	--socket $SH/agentd.sock --socket-group "" --bind 127.0.0.1:$PORT \\
	--keyring $SH/keyring --cluster exs$RUNID --log-level info --operators-dir $SH/operators
StandardError=append:$SH/agentd.log
Restart=on-failure
RestartSec=500ms
TimeoutStartSec=60
TimeoutStopSec=30
EOF
X systemctl daemon-reload || die "daemon-reload"
X systemctl start shoal-agentd.service ||
	die "agentd unit did not start: $(X systemctl status shoal-agentd --no-pager 2>&1 | tail -5)"
wait_for 30 "agentd to answer" ctl ping
ok "sandbox $NAME up; agentd runs in it as a unit (MainPID $(agent_pid))"

declare -A ID
for v in v1 v2; do
	ID[$v]=$(ctl artifact import "$SH/art/$v") || die "import $v"
done

# --- 1. v1
ctl deploy web --key "$SH/operator.key" "${ID[v1]}" --reason "v1" >/dev/null || die "deploy v1"
wait_state 60 1 1 healthy
[ "$(answer)" = "web v1" ] || die "v1 does not answer 'web v1': '$(answer)'"
PID1=$(listeners)
[ -n "$PID1" ] && [ "${PID1// /}" = "$PID1" ] || die "want one process on :$WPORT, have '$PID1'"
ok "rev 1: web v1 answers on 127.0.0.1:$WPORT (pid $PID1 on the host)"
E1=$(escapees)
[ -n "$E1" ] && [ "${E1// /}" = "$E1" ] || fail "want one escaped daemon of v1, have '$E1'"
# where systemd accounts it: a scope of its own, not agentd's service
cg=$(grep -E '^(0::|1:name=systemd:)' "/proc/$PID1/cgroup" | head -n1)
case $cg in
*/shoal-exec-web.scope) ok "pid $PID1 runs in its own scope ($cg)" ;;
*) fail "pid $PID1 is not in shoal-exec-web.scope: $cg" ;;
esac
journal_has() { X journalctl --no-pager -o cat -t shoal-exec-web | grep -q "$1"; }
end=$((SECONDS + 10))
until journal_has "web v1 starting"; do
	[ $SECONDS -lt $end ] || break
	sleep 0.3
done
if journal_has "web v1 starting"; then
	ok "its output is in the journal (journalctl -t shoal-exec-web)"
else
	fail "the service's output is not in the journal (journalctl -t shoal-exec-web)"
fi

# --- the client loop: one request every 100 ms, each bounded, until $SH/poll.stop exists
# (or 600 s); one line per failed request in $SH/poll.fail, a count of requests in poll.n
: >"$SH/poll.fail"
(
	n=0 end=$((SECONDS + 600))
	while [ ! -e "$SH/poll.stop" ] && [ $SECONDS -lt $end ]; do
		out=$(curl -sSf --max-time 2 "http://127.0.0.1:$WPORT/" 2>&1) ||
			echo "$(date -u +%T.%N) failed: $out" >>"$SH/poll.fail"
		n=$((n + 1))
		echo "$n" >"$SH/poll.n.tmp" && mv "$SH/poll.n.tmp" "$SH/poll.n"	# never read half-written
		sleep 0.1
	done
) &
POLLER=$!
polls() { local n; n=$(cat "$SH/poll.n" 2>/dev/null); echo "${n:-0}"; }
swaps() { grep -c 'event swap-start web' "$SH/agentd.log"; }
in_scope() { grep -Eq '^(0::|1:name=systemd:).*/shoal-exec-web\.scope$' "/proc/$1/cgroup"; }
# mark: before a step's action, what the poller has counted so far
mark() { P0=$(polls); F0=$(grep -c . "$SH/poll.fail"); }
# after STEP: the agent converged on rev 1 healthy, same PID, the poller saw no failure
same_service() {
	local step=$1 before=$P0 f0=$F0 now f
	wait_for 60 "agentd to answer after $step" ctl ping
	wait_state 60 1 1 healthy
	now=$(listeners)
	[ "$now" = "$PID1" ] || fail "$step: the service's PID changed: $PID1 -> '$now'"
	[ "$(answer)" = "web v1" ] || fail "$step: the service answers '$(answer)', want 'web v1'"
	sleep 1	# a few more requests after the agent is back
	f=$(grep -c . "$SH/poll.fail")
	[ "$f" = 0 ] || fail "$step: $((f - f0)) failed requests in this step, $f in all;" \
		"first: $(head -n2 "$SH/poll.fail")"
	[ "$(polls)" -gt "$before" ] || fail "$step: the client loop made no request"
	[ "$(swaps)" = "$SWAPS" ] || fail "$step: agentd swapped again: $(grep 'swap-start' "$SH/agentd.log" | tail -n1)"
	[ "$f" = 0 ] && [ "$now" = "$PID1" ] &&
		ok "$step: pid $PID1 kept running, $(polls) requests so far, none failed"
}

SWAPS=$(swaps)
# --- 2. systemctl restart
mark
a=$(agent_pid)
X systemctl restart shoal-agentd.service || die "systemctl restart agentd"
[ "$(agent_pid)" != "$a" ] || die "agentd was not restarted (MainPID $a)"
same_service "systemctl restart agentd"

# --- 3. stop, start
mark
X systemctl stop shoal-agentd.service || die "systemctl stop agentd"
sleep 1	# stopped for a while: the service must keep answering on its own
X systemctl start shoal-agentd.service || die "systemctl start agentd"
same_service "systemctl stop + start agentd"

# --- 4. kill -9, restarted by systemd
mark
a=$(agent_pid)
X systemctl kill --kill-whom=main --signal=KILL shoal-agentd.service || die "kill -9 agentd"
end=$((SECONDS + 30))
until b=$(agent_pid) && [ -n "$b" ] && [ "$b" != 0 ] && [ "$b" != "$a" ]; do
	[ $SECONDS -lt $end ] || die "systemd did not restart agentd after kill -9"
	sleep 0.2
done
same_service "kill -9 of agentd (Restart=on-failure)"

# --- 5. upgrade: new binary by rename (old inode stays with the running agentd), try-restart
mark
a=$(agent_pid)
cp "$AGENTD" "$SH/sbin/agentd.dpkg-new" && printf 'upgrade %s' "$RUNID" >>"$SH/sbin/agentd.dpkg-new" &&
	mv -f "$SH/sbin/agentd.dpkg-new" "$SH/sbin/agentd" || die "cannot replace agentd"
X systemctl daemon-reload || die "daemon-reload"
X systemctl try-restart shoal-agentd.service || die "systemctl try-restart agentd"
[ "$(agent_pid)" != "$a" ] || die "agentd was not restarted by try-restart (MainPID $a)"
same_service "upgrade (binary replaced, try-restart)"
touch "$SH/poll.stop"
wait "$POLLER"
POLLER=
note "client loop: $(polls) requests, $(grep -c . "$SH/poll.fail") failed"

# --- 6. the adopted process dies: the agent notices and starts a new one (same revision)
# only the very process recorded at rev 1 (still listening), never a pid that may be recycled
[ "$(listeners)" = "$PID1" ] || die "the adopted process $PID1 no longer listens: '$(listeners)'"
kill -KILL "$PID1"
end=$((SECONDS + 30))
until n=$(listeners) && [ -n "$n" ] && [ "$n" != "$PID1" ] && [ "$(answer)" = "web v1" ]; do
	[ $SECONDS -lt $end ] || die "no new v1 process within 30 s after kill -9 of the adopted $PID1"
	sleep 0.2
done
in_scope "$n" || fail "the restarted process $n is not in shoal-exec-web.scope"
ok "the adopted pid $PID1 killed: agentd started pid $n (in shoal-exec-web.scope)," \
	"$(svc | jq -r '"\(.running_rev) \(.health)"')"
wait_state 60 1 1 healthy

# --- 7. a real swap still replaces the process
PID1=$(listeners)
E1=$(escapees)
[ -n "$E1" ] && [ "${E1// /}" = "$E1" ] || fail "before deploy v2: want one escaped daemon, have '$E1'"
ctl deploy web --key "$SH/operator.key" "${ID[v2]}" --reason "v2" >/dev/null || die "deploy v2"
wait_state 60 2 2 healthy
PID2=$(listeners)
[ "$(answer)" = "web v2" ] || fail "after deploy v2: answers '$(answer)'"
[ -n "$PID2" ] && [ "$PID2" != "$PID1" ] || fail "after deploy v2: listener '$PID2' (v1 was $PID1)"
[ -e "/proc/$PID1" ] && fail "after deploy v2: the v1 process $PID1 is still alive"
E2=$(escapees)
[ -n "$E2" ] && [ "${E2// /}" = "$E2" ] && [ "$E2" != "$E1" ] ||
	fail "after deploy v2: want one escaped daemon, v2's, have '$E2' (v1's was $E1)"
ok "rev 2: v1 (pid $PID1) stopped with its escaped daemon, v2 answers (pid $PID2)"

# --- 8. and a rollback too
out=$(ctl rollback web --key "$SH/operator.key" --reason "system test" --wait --timeout 60s 2>&1) ||
	die "rollback --wait: $out"
wait_state 60 3 3 healthy
PID3=$(listeners)
[ "$(answer)" = "web v1" ] || fail "after rollback: answers '$(answer)'"
[ -n "$PID3" ] && [ "$PID3" != "$PID2" ] || fail "after rollback: listener '$PID3' (v2 was $PID2)"
[ -e "/proc/$PID2" ] && fail "after rollback: the v2 process $PID2 is still alive"
E3=$(escapees)
[ -n "$E3" ] && [ "${E3// /}" = "$E3" ] && [ "$E3" != "$E2" ] ||
	fail "after rollback: want one escaped daemon, v1's, have '$E3' (v2's was $E2)"
ok "rev 3 (rollback): v2 (pid $PID2) stopped, v1 answers again (pid $PID3)"
n=$(X systemctl list-units --all --no-legend 'shoal-exec-*' | grep -c .)
[ "$n" = 1 ] || fail "$n shoal-exec-* units, want 1: $(X systemctl list-units --all 'shoal-exec-*')"
[ "$FAILS" = 0 ] && echo "PASS: test_exec_survives"
exit 0
