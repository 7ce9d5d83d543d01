#!/usr/bin/env bash
# Integration: the roster and the liveness exits of the electorate (agree.h rule 0).
# 3 agents on rev 2; two are killed for good: an operator rollback on n1 is 1 of 3 (quorum 2)
# and must stay undecided however long, since dead members keep their vote. Removing them
# from the roster (members remove, audited) does not change rev 2's electorate either: only
# the documented override (rollback --override, audited) runs v1 again, as a new deploy whose
# electorate is the roster that remains. Then `agentctl leave` takes a node off the roster:
# the next deploy's electorate no longer counts it.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
start_cluster 3
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2
kill -KILL "${PID[2]}" "${PID[3]}"
wait "${PID[2]}" "${PID[3]}" 2>/dev/null
PID[2]= ; PID[3]=
kill_orphans
ctl 1 rollback web >/dev/null || die "rollback on n1"
sleep 3
v=$(ctl 1 --json votes web | tr -d ' \n')
echo "$v" | grep -q '"eligible":3,"quorum":2,"counted":1' || fail "votes after the kill: $v"
[ "$(running_of 1)" = 2 ] || fail "n1 swapped with 1 of 3 votes"

out=$(ctl 1 members remove n2 2>&1) && fail "members remove without --reason was accepted: $out"
ctl 1 members remove n2 --reason "disk died" >/dev/null || die "members remove n2"
ctl 1 members remove n3 --reason "stolen" >/dev/null || die "members remove n3"
grep -q "roster: node n2 .* removed by uid $(id -u) pid [0-9]*: disk died" "$WORK/n1.log" ||
	fail "the removal of n2 is not in n1's log with the operator's uid"
out=$(ctl 1 members remove n1 --reason x 2>&1) && fail "a node removed itself: $out"
sleep 2
v=$(ctl 1 --json votes web | tr -d ' \n')
echo "$v" | grep -q '"eligible":3,"quorum":2' ||
	fail "removals changed the electorate of a revision already written: $v"
[ "$(running_of 1)" = 2 ] || fail "n1 swapped after removals, without a quorum"
ok "a revision's electorate outlives deaths and removals: 1 of 3, quorum 2, undecided"

out=$(ctl 1 rollback web --override 2>&1) && fail "--override without --reason: $out"
ctl 1 rollback web --override --reason "n2 and n3 are gone" >/dev/null || die "override"
wait_for 30 "n1 to run v1 again" runs 1 3
h=$(ctl 1 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":3,"artifact":"'"$V1"'"[^}]*"kind":"deploy"' || fail "rev 3: $h"
echo "$h" | grep -q '"reason":"override:n2andn3aregone"' || fail "rev 3's reason: $h"
grep -q "rollback OVERRIDE of web rev 2 by uid $(id -u)" "$WORK/n1.log" ||
	fail "the override is not in n1's log with the operator's uid"
ok "rollback --override: rev 3 deploys v1 (audited), with the roster that remains"

# a leave is a decommission: n4 joins, leaves; the next deploy's electorate lacks it
start_agent 4
wait_for 20 "n4 to see n1" sees_alive 4 2
ctl 4 leave >/dev/null || die "leave on n4"
wait "${PID[4]}" 2>/dev/null; PID[4]=
sleep 1
ctl 1 deploy web "$V2" --force --wait --timeout 20s >/dev/null || die "deploy v2 again"
v=$(ctl 1 --json votes web --rev 4 | tr -d ' \n')
echo "$v" | grep -q '"eligible":1,"quorum":1' ||
	fail "rev 4's electorate should be n1 alone (n2, n3 removed, n4 left): $v"
ok "after removals and a leave, a new revision's electorate is the roster that remains"
[ "$FAILS" = 0 ]
