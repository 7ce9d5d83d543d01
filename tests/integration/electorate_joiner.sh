#!/usr/bin/env bash
# Integration (issue 11, behaviour 1): a fresh joiner does not decide alone.
# Three agents on rev 2; n2 and n3 are killed (kill -9, with their services); the operator on
# n1 votes to roll back: 1 of 3, quorum 2, nothing may happen. A brand-new n4 joins: it joined
# after rev 2 was written, so it is not in rev 2's electorate and must neither count nor write
# a rollback (the old code: n4 tallied with a view of itself and wrote the rollback with a
# certificate of 1 voter). Then n2 comes back: with its echo, 2 of 3 electors decide, and every
# node, n4 included, holds that one rollback.
. "$(dirname "$0")/electorate_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
start_cluster 3
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2
stop_agent 2 KILL; kill_services_of 2
stop_agent 3 KILL; kill_services_of 3
ctl 1 rollback web --reason "etest: operator on n1" >/dev/null 2>&1 || die "rollback on n1"
ok "rev 2 on n1..n3; n2, n3 killed; the operator on n1 voted (1 of 3)"

start_agent 4
wait_for 15 "n4 to answer" ctl 4 ping
wait_for 30 "n4 to learn rev 2" has_rev 4 2
no_rev_for 10 3 "1 4" && ok "a brand-new n4 joined and nobody decided for 10s (n4 votes: $(ctl 4 --json votes web --rev 2 | jq -c '{eligible, quorum, counted}'))"

# n2 restarts and learns n1's operator vote (during its first anti-entropy exchange): it is an
# elector of rev 2 and echoes it (agree.h rule 4), which makes 2 of 3
start_agent 2
wait_for 15 "n2 to answer" ctl 2 ping
n2_echoed() { ctl 1 --json votes web --rev 2 | jq -e '[.votes[] | select(.name == "n2")] | length == 1'; }
end=$((SECONDS + 20))
until n2_echoed; do
	[ $SECONDS -lt $end ] || die "n2 never echoed n1's operator vote after its restart (20 s); n2 votes: $(ctl 2 --json votes web --rev 2 | jq -c '[.votes[] | {name, round, target}]')"
	sleep 0.3
done
wait_for 30 "n1, n2 and n4 to hold the same rev 3" same_rec "1 2 4" 3
[ "$(rec 1 3)" = "rollback $V1" ] || fail "rev 3 is $(rec 1 3), want a rollback to v1"
c=$(cert 1 3)
[ "$c" -ge 2 ] || fail "rev 3's certificate has $c voters, want >= 2 of the 3 electors"
ok "n2 back: rev 3 = rollback to v1 (certificate $c) on n1, n2 and n4"
exit 0
