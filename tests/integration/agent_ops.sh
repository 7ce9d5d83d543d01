#!/usr/bin/env bash
# Integration: what an operator relies on, with real agents (issue 13).
#  1. agentd --check-config: file + drop-ins + flags, keyring, paths, hook; "configuration OK"
#     and 0, or the reason on stderr and 2; SIGHUP reads the drop-ins.
#  2. Membership events (join, suspect/failed, back, left) in `agentctl events`, logged at
#     notice, and given to a real event hook that appends its stdin to a file.
#  3. The hook's bounds: a failing hook is logged with its status, a hanging one killed with its
#     children after the timeout, events beyond the queue dropped, counted and logged.
#  4. Audit: deploy and rollback logged at notice with uid and pid, once.
#  5. history: the rollback revision shows when this node learned of it, also after a restart.
. "$(dirname "$0")/brain_lib.sh"

ME=$(id -u)

# ---- 1. --check-config ------------------------------------------------------------------------
new_keyring
mkdir -p "$WORK/etc/agentd.conf.d"
CONF=$WORK/etc/agentd.conf
cat >"$CONF" <<EOF
node-name = chk
state-dir = $WORK/chk
socket = $WORK/chk.sock
socket-group =
keyring = $WORK/keyring
bind = $(addr_of 8)
cluster = $LIB_NAME
log-level = info
EOF
echo "log-level = notice" >"$WORK/etc/agentd.conf.d/10-level.conf"
check() { "$AGENTD" --check-config --config "$CONF" "$@" >"$WORK/chk.out" 2>"$WORK/chk.err"; }
check || die "check-config of a good configuration: exit $?: $(cat "$WORK/chk.err")"
grep -q "^configuration OK (.*10-level.conf)" "$WORK/chk.out" || fail "check-config: $(cat "$WORK/chk.out")"
[ -d "$WORK/chk" ] && fail "check-config created the state directory"
echo "log-level = loud" >"$WORK/etc/agentd.conf.d/20-bad.conf"
check; st=$?
[ "$st" = 2 ] || fail "check-config of a bad drop-in: exit $st, want 2"
grep -q "20-bad.conf:1: log-level: invalid value" "$WORK/chk.err" || fail "bad drop-in: $(cat "$WORK/chk.err")"
[ -s "$WORK/chk.out" ] && fail "check-config printed on stdout for a broken file"
rm "$WORK/etc/agentd.conf.d/20-bad.conf"
echo "not a key" >"$WORK/badkeys"
check --keyring "$WORK/badkeys"; st=$?
[ "$st" = 2 ] && grep -q "not a keyring" "$WORK/chk.err" || fail "bad keyring: exit $st: $(cat "$WORK/chk.err")"
check --keyring "$WORK/nokeys"; st=$?
[ "$st" = 2 ] && grep -q "nokeys: No such file" "$WORK/chk.err" || fail "missing keyring: exit $st: $(cat "$WORK/chk.err")"
printf '#!/bin/sh\n' >"$WORK/noexec.sh"
chmod 644 "$WORK/noexec.sh"	# no x bit at all: not executable even for root
check --event-hook "$WORK/noexec.sh"; st=$?
[ "$st" = 2 ] && grep -q "event-hook .*not executable" "$WORK/chk.err" || fail "hook 0644: exit $st: $(cat "$WORK/chk.err")"
check --state-dir "$CONF/sub"; st=$?
[ "$st" = 2 ] && grep -q "state-dir" "$WORK/chk.err" || fail "state dir under a file: exit $st: $(cat "$WORK/chk.err")"
check --config-dir "$WORK/none"; st=$?
[ "$st" = 2 ] && grep -q "cannot read config directory" "$WORK/chk.err" || fail "missing --config-dir: exit $st"
ok "--check-config: OK with drop-ins; bad drop-in, keyring, hook, state dir, config dir: exit 2 with the reason"

# SIGHUP: the drop-ins are read again
"$AGENTD" --config "$CONF" 2>>"$WORK/n8.log" &
PID[8]=$!
wait_for 15 "the config-file agent to answer" "$AGENTCTL" --socket "$WORK/chk.sock" ping
lvl() { "$AGENTCTL" --socket "$WORK/chk.sock" --json status | jq -r .log_level; }
[ "$(lvl)" = notice ] || fail "drop-in log level not applied at start: $(lvl)"
echo "log-level = info" >"$WORK/etc/agentd.conf.d/30-later.conf"
kill -HUP "${PID[8]}"
lvl_is() { [ "$(lvl)" = "$1" ]; }
wait_for 10 "the reload to apply the new drop-in" lvl_is info
grep -q "configuration reloaded from $CONF and its drop-ins (log level info)" "$WORK/n8.log" ||
	fail "reload line: $(grep reload "$WORK/n8.log")"
kill -TERM "${PID[8]}"; wait "${PID[8]}" 2>/dev/null; PID[8]=
ok "SIGHUP re-reads the drop-ins"

# ---- 2. membership events and a real hook ------------------------------------------------------
HOOK_OUT=$WORK/hook.out
cat >"$WORK/hook.sh" <<EOF
#!/bin/sh
cat >>"$HOOK_OUT"
EOF
chmod 755 "$WORK/hook.sh"
make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 0
for i in 1 2 3; do start_agent "$i" --event-hook "$WORK/hook.sh"; done
wait_cluster 3
ev_has() { ctl "$1" events | grep -q "$2"; }
wait_for 10 "member-join of n2 and n3 in n1's events" ev_has 1 "member-join .*n3 (127.0.0.1"
ev_has 1 "member-join .*n2 (127.0.0.1" || fail "n1 events lack n2's join: $(ctl 1 events)"
grep -q "notice: event member-join: n2" "$WORK/n1.log" || fail "member-join not logged at notice"
hook_has() { jq -e -s "map(select($1)) | length >= ${2:-1}" "$HOOK_OUT" >/dev/null 2>&1; }
wait_for 10 "the hook to receive n1's member-join of n2" hook_has '.node == "n1" and .kind == "member-join" and (.text | startswith("n2 "))'
jq -e -s 'all(.[]; (.seq | type) == "number" and (.time | test("^20[0-9-]+T[0-9:.]+Z$")) and
	(.kind | type) == "string" and (.service | type) == "string" and (.rev | type) == "number"
	and (.node | type) == "string" and (.text | type) == "string")' "$HOOK_OUT" >/dev/null ||
	fail "hook input is not one JSON event per line with every field: $(head -3 "$HOOK_OUT")"
ok "member joins in events, at notice, and in the hook's JSON"

# ---- 3. the hook's bounds (n9: a failing, then hanging hook; 1 at once, 1 waiting) -------------
cat >"$WORK/badhook.sh" <<'EOF'
#!/bin/sh
ev=$(cat)
case "$ev" in *'"kind":"start"'*) sleep 1.5; exit 3 ;; esac	# the joins arrive meanwhile
sleep 30	# a child: must die with the hook's process group
echo never
EOF
chmod 755 "$WORK/badhook.sh"
MP9=$((BASE + 9 + 100))
SHOAL_DIR=$WORK/hookmark start_agent 9 --event-hook "$WORK/badhook.sh" --event-hook-timeout 2500ms \
	--event-hook-max-running 1 --event-hook-queue 1 --metrics "127.0.0.1:$MP9"
wait_for 15 "n9 to answer" ctl 9 ping
wait_for 20 "n9 to see 4 alive members" sees_alive 9 4
m9() { curl -sf "http://127.0.0.1:$MP9/metrics"; }
metric_ge() { local v; v=$(m9 | awk -v k="$1" '$1 == k { print $2 }'); [ -n "$v" ] && awk -v v="$v" -v w="$2" 'BEGIN { exit !(v >= w) }'; }
wait_for 20 "a hook killed after its timeout" metric_ge 'shoal_event_hook_runs_total{result="timeout"}' 1
metric_ge 'shoal_event_hook_runs_total{result="failed"}' 1 || fail "failing hook not counted: $(m9 | grep hook)"
metric_ge 'shoal_event_hook_dropped_total' 1 || fail "no event dropped: $(m9 | grep hook)"
grep -q "event hook $WORK/badhook.sh: exited with status 3 (event 1 start)" "$WORK/n9.log" || fail "exit status not logged"
grep -q "event hook $WORK/badhook.sh: still running after 2500 ms, killed with its process group" "$WORK/n9.log" || fail "timeout not logged"
grep -q "event hook $WORK/badhook.sh: 1 running and 1 waiting (the limits): [0-9]* event(s) dropped" "$WORK/n9.log" || fail "drop not logged"
sleep_children() {
	local p n=0
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = sleep ] || continue
		tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -q "^SHOAL_DIR=$WORK/hookmark" && n=$((n + 1))
	done
	echo "$n"
}
no_sleepers() { [ "$(sleep_children)" = 0 ]; }
wait_for 10 "the killed hooks' sleep children to be gone" no_sleepers
ctl 9 ping >/dev/null || fail "n9 stopped answering while its hooks hung"
# a leave, not a stop: a stopped node stays on the roster and would count in the electorate
ctl 9 leave >/dev/null || fail "leave n9"
wait "${PID[9]}" 2>/dev/null; PID[9]=
ok "hook: exit status logged, hung hook and its child killed after 2.5 s, overflow dropped and counted"
wait_for 20 "n1 to see n9 gone" ev_has 1 "member-left .*n9 "

# ---- 4. audit, 5. history learn time -----------------------------------------------------------
import_all v1; V1=$ID
import_all v2; V2=$ID
grep -q "notice: ctl: imported artifact $V1 (service web, version 1.0.0) from .* by uid $ME pid [0-9]" "$WORK/n1.log" ||
	fail "import not audited"
ctl 1 deploy web "$V1" --reason "first" --wait --timeout 20s >/dev/null || die "deploy v1"
wait_for 30 "v1 healthy on every node" all_healthy 1
ctl 2 deploy web "$V2" --reason "bad one" >/dev/null || die "deploy v2"
wait_for 60 "the cluster rollback (rev 3) on every node" all_run 3
n=$(grep -c "notice: ctl: deploy of web artifact ${V2:0:12} (version 2.0.0) as rev 2 scope cluster by uid $ME pid [0-9]*: bad one" "$WORK/n2.log")
[ "$n" = 1 ] || fail "deploy of rev 2 audited $n times on n2, want 1"
grep -q "ctl: deploy of web" "$WORK/n3.log" && fail "n3 logged a deploy it did not handle"
ok "deploy audited once, where handled, with uid and pid"
wait_for 10 "the hook to receive the decision from every node" hook_has '.kind == "decision" and .service == "web" and .rev == 3' 3

hist_learned() { ctl "$1" --json history web | jq -r '.[] | select(.rev == 3) | .learned_ms'; }
L1=$(hist_learned 1)
H3=$(ctl 1 --json history web | jq -r '.[] | select(.rev == 3) | .hlc')
[ -n "$L1" ] && [ "$L1" != null ] || fail "n1: no learned_ms for rev 3"
[ "$L1" -ge $((H3 >> 16)) ] 2>/dev/null || fail "learned $L1 before the revision's time $((H3 >> 16))"
ctl 1 history web | grep -E "^3 +[0-9a-f]{12} .*rollback +[0-9-]+ [0-9:]+ +[0-9-]+ [0-9:]+ " >/dev/null ||
	fail "history lacks the LEARNED column: $(ctl 1 history web)"
ctl 1 history web | grep -q "^2 .*deploy .* - " || fail "a deploy's LEARNED is not '-': $(ctl 1 history web)"
ok "history shows when n1 learned of the rollback"

# ---- 2 (cont.): a member failing, coming back, leaving ----------------------------------------
kill -KILL "${PID[3]}"; wait "${PID[3]}" 2>/dev/null
wait_for 30 "n1 to report n3 failed" ev_has 1 "member-failed .*n3 (127.0.0.1"
grep -q "notice: event member-failed: n3" "$WORK/n1.log" || fail "member-failed not at notice"
start_agent 3 --event-hook "$WORK/hook.sh"
wait_for 30 "n1 to report n3 back" ev_has 1 "member-back .*n3 (127.0.0.1.* came back after failing"
wait_for 10 "the hook to get n3's return" hook_has '.node == "n1" and .kind == "member-back"'
ctl 2 leave >/dev/null || fail "leave n2"
wait_for 30 "n1 to report n2 left" ev_has 1 "member-left .*n2 (127.0.0.1"
ok "member failed, back and left: in events and the hook"

# learned time survives a restart of n1
kill -TERM "${PID[1]}"; wait "${PID[1]}" 2>/dev/null
start_agent 1
wait_for 15 "n1 to answer after its restart" ctl 1 ping
[ "$(hist_learned 1)" = "$L1" ] || fail "learned time after restart: $(hist_learned 1), want $L1"
ok "the learn time is kept across a restart"
exit 0
