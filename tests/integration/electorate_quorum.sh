#!/usr/bin/env bash
# Integration (issue 11, behaviour 4): nodes configured with different quorum rules.
# n1 runs with `--quorum web=1`, n2..n4 with the default (majority). The rule of a revision is
# the deployer's, written into the record, and every node follows the record:
#  - rev 2 (v2) is deployed from n2 (majority of 4 = 3). v2's check fails on n1 only: n1 votes
#    alone and must NOT roll back (the old code: n1 rolled back alone, the others refused its
#    certificate). n1, configured otherwise, says so with a 'config' event.
#  - the next deploy (v3 from n2) is rev 3 on every node, the same record (the old code: rev 3
#    = rollback on n1 and rev 3 = deploy on the others, all reporting desired rev 3).
#  - rev 4 (v2 again) is deployed from n1: its record carries n1's rule (1 vote). n1's failing
#    check alone now decides, and every node accepts that rollback (rev 5) and runs it: the
#    rule of the record, not of the receiver.
. "$(dirname "$0")/electorate_lib.sh"
ALL="1 2 3 4"

el_artifact v1 1.0.0
el_artifact v2 2.0.0
el_artifact v3 3.0.0
new_keyring
start_agent 1 --quorum web=1
for i in 2 3 4; do start_agent "$i"; done
wait_cluster 4
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID
ctl 2 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 2 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2
ok "n1 with --quorum web=1, n2..n4 majority; rev 2 (v2) deployed from n2"

break_on v2 1
n1_voted() { ctl 1 --json votes web --rev 2 | jq -e '[.votes[] | select(.name == "n1")] | length == 1'; }
wait_for 20 "n1 to vote against rev 2" n1_voted
no_rev_for 8 3 "$ALL" && ok "n1's lone vote decided nothing for 8s ($(ctl 1 --json votes web --rev 2 | jq -c '{eligible, quorum, counted}'))"
c=$(events_of 1 config | head -3)
[ -n "$c" ] || fail "n1 (configured web=1) shows no 'config' event about rev 2's rule (majority)"
[ -n "$c" ] && ok "n1 says its configuration differs: $(echo "$c" | head -1 | jq -r .text)"

rm -f "$WORK/broken-v2-n1"
ctl 2 deploy web "$V3" --wait --timeout 20s >/dev/null || die "deploy v3"
all_have3() { local i; for i in $ALL; do has_rev "$i" 3 || return 1; done; }
wait_for 20 "rev 3 on every node" all_have3
f0=$FAILS
same_rec "$ALL" 3 || fail "nodes diverge on rev 3: $(for i in $ALL; do echo "n$i=$(rec "$i" 3 | cut -c1-20)"; done | tr '\n' ' ')"
for i in $ALL; do
	d=$(desired_of "$i")
	[ "$d" = 3 ] || fail "n$i desires rev $d, want 3"
done
[ "$(rec 1 3)" = "deploy $V3" ] || fail "rev 3 on n1 is $(rec 1 3), want the deploy of v3"
wait_for 30 "every node to run rev 3" all_run 3
[ "$FAILS" = "$f0" ] && ok "rev 3 = the deploy of v3 on every node"

# rev 4 from n1: its record says 1 vote decides
break_on v2 1
ctl 1 deploy web "$V2" --reason "etest: from n1 (web=1)" >/dev/null || die "deploy v2 from n1"
wait_for 40 "all four to hold the same rev 5" same_rec "$ALL" 5
[ "$(rec 2 5)" = "rollback $V3" ] || fail "rev 5 is $(rec 2 5), want a rollback to v3"
wait_for 30 "every node to run rev 5" all_run 5
c=$(events_of 2 config | head -1)
[ -n "$c" ] || fail "n2 (majority) shows no 'config' event about rev 4's rule (1 vote)"
ok "rev 4 from n1 carried its rule (1): n1's lone vote rolled it back to v3 (rev 5) on every node"
exit 0
