#!/usr/bin/env bash
# Integration: deploy and automatic rollback with 5 real agents. v1 deployed and healthy
# everywhere; v2 fails its health check on every node; the nodes vote, a quorum decides, the
# rollback revision (with its certificate) reaches every node and every node runs v1 again.
# Then the condemned v2 is refused without --force (error "condemned", exit 1) and accepted
# with it, and rolled back again by the cluster.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 0
start_cluster 5
ok "5 agents up"
import_all v1; V1=$ID
import_all v2; V2=$ID

ctl 1 deploy web "$V1" --reason "first" --wait --timeout 20s >/dev/null || die "deploy v1 --wait"
wait_for 30 "v1 healthy on every node" all_healthy 1
ok "v1 (rev 1) healthy on all nodes"

ctl 2 deploy web "$V2" --reason "bad one" >/dev/null || die "deploy v2"
wait_for 60 "the cluster rollback (rev 3) on every node" all_run 3
ok "every node runs rev 3 after the automatic rollback"
for i in 1 2 3 4 5; do
	h=$(ctl "$i" --json history web | tr -d ' \n')
	echo "$h" | grep -q '"rev":3,"artifact":"'"$V1"'"[^}]*"kind":"rollback"' ||
		fail "n$i: rev 3 is not a rollback to v1: $h"
	ctl "$i" history web | grep -q "^2 .*deploy .* condemned " ||
		fail "n$i: v2 not condemned in history: $(ctl "$i" history web)"
	c=$(echo "$h" | sed -n 's/.*"rev":3,[^}]*"certificate":\([0-9]*\).*/\1/p')
	[ "${c:-0}" -ge 3 ] || fail "n$i: certificate of rev 3 has ${c:-0} voters, want >= 3"
done
v=$(ctl 3 votes web --rev 2)
echo "$v" | grep -q "quorum 3 (decided" || fail "votes: $v"
ok "history and votes agree on every node"

# condemned: refused without --force, accepted with it (then rolled back again)
out=$(ctl 4 deploy web "$V2" 2>&1); st=$?
[ "$st" = 1 ] || fail "deploy of a condemned artifact: exit $st, want 1"
echo "$out" | grep -q "(condemned)" || fail "deploy of a condemned artifact: $out"
out=$(ctl 4 --json deploy web "$V2" 2>/dev/null)
echo "$out" | grep -q '"error":"condemned"' || fail "--json error name is not condemned: $out"
ok "condemned artifact refused without --force"
ctl 4 deploy web "$V2" --force --reason "try again" >/dev/null || fail "deploy --force"
[ "$(desired_of 4)" = 4 ] || fail "deploy --force did not create rev 4 (desired $(desired_of 4))"
wait_for 60 "the second rollback (rev 5)" all_run 5
ok "forced deploy (rev 4) accepted, then rolled back by the cluster (rev 5)"
exit 0
