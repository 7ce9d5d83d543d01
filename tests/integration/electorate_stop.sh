#!/usr/bin/env bash
# Integration (issue 11, behaviour 5): a clean stop (SIGTERM) is not a leave.
# Four agents on rev 2; n4 is stopped with SIGTERM (a restart, an upgrade). Then v2's check
# fails on n1 and n2: 2 votes of rev 2's electorate of 4, quorum 3: nothing may be decided
# (the old code counted the stop as a leave: 2 of 3, decided with a certificate of 2, and n4
# refused that decision when it came back). n4 comes back, v2 fails on n3 as well: 3 of 4
# decide, and all four hold that one rollback and run it.
. "$(dirname "$0")/electorate_lib.sh"

el_artifact v1 1.0.0
el_artifact v2 2.0.0
start_cluster 4
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2
stop_agent 4 TERM
n4_gone() { ctl 1 --json members | jq -e '[.. | objects | select(.name? == "n4" and .state? == "alive")] | length == 0'; }
wait_for 15 "n1 to see n4 gone" n4_gone
ok "rev 2 on 4 nodes; n4 stopped with SIGTERM ($(ctl 1 --json members | jq -c '[.. | objects | select(.name? == "n4") | .state]'))"

break_on v2 "1 2"
two_votes() { ctl 1 --json votes web --rev 2 | jq -e '[.votes[] | select(.reason == "health")] | length >= 2'; }
wait_for 20 "n1 and n2 to vote against rev 2" two_votes
no_rev_for 8 3 "1 2 3" && ok "2 health votes, nothing decided for 8s ($(ctl 1 --json votes web --rev 2 | jq -c '{eligible, quorum, counted}'))"

start_agent 4
wait_for 15 "n4 to answer" ctl 4 ping
break_on v2 3
wait_for 40 "all four to hold the same rev 3" same_rec "1 2 3 4" 3
[ "$(rec 1 3)" = "rollback $V1" ] || fail "rev 3 is $(rec 1 3), want a rollback to v1"
c=$(cert 1 3)
[ "$c" -ge 3 ] || fail "rev 3's certificate has $c voters, want >= 3 of 4"
wait_for 30 "all four to run rev 3" all_run 3
ok "n4 back, v2 fails on n3 too: rev 3 = rollback to v1 (certificate $c) on all four"
exit 0
