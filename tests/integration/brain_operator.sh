#!/usr/bin/env bash
# Integration: operator rollback from any node, and rollback --to. 4 agents; the rollback is
# asked on a node that did not deploy, `--wait` returns once that node has swapped.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
make_artifact v3 3.0.0 1
start_cluster 4
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
ctl 2 deploy web "$V3" --wait --timeout 20s >/dev/null || die "deploy v3"
wait_for 30 "v3 (rev 3) healthy everywhere" all_healthy 3
ok "three healthy releases deployed (revs 1..3)"

out=$(ctl 4 rollback web --reason "customer reports" --wait --timeout 30s 2>&1) ||
	die "rollback --wait on n4: $out"
echo "$out" | grep -q "rolled back" || fail "rollback --wait output: $out"
[ "$(running_of 4)" = 4 ] || fail "n4 runs rev $(running_of 4) after rollback --wait, want 4"
wait_for 30 "rev 4 everywhere" all_run 4
h=$(ctl 1 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":4,"artifact":"'"$V2"'"' || fail "rev 4 does not run v2: $h"
ok "operator rollback from n4: every node runs v2 again (rev 4)"

out=$(ctl 3 rollback web --to 1 --wait --timeout 30s 2>&1) || die "rollback --to 1: $out"
wait_for 30 "rev 5 everywhere" all_run 5
h=$(ctl 2 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":5,"artifact":"'"$V1"'"[^}]*"kind":"rollback"' ||
	fail "rev 5 is not a rollback to v1: $h"
ok "rollback --to 1 from n3: every node runs v1 (rev 5)"

out=$(ctl 2 rollback web --to 9 2>&1); st=$?
[ "$st" = 1 ] || fail "rollback --to a missing rev: exit $st"
out=$(ctl 2 rollback web --to x 2>&1); st=$?
[ "$st" = 2 ] || fail "rollback --to x: exit $st, want 2 (usage)"
ok "bad --to refused"

# --local: every earlier artifact is condemned by now (revs 4 and 5 were rollbacks), so there
# is no previous good one: refused; with --to 3, n1 alone swaps to v3, gossips that it
# diverged, and follows the cluster again at the next revision
out=$(ctl 1 rollback web --local 2>&1); st=$?
[ "$st" = 1 ] && echo "$out" | grep -q no_revision || fail "--local without a good target: $out"
out=$(ctl 1 rollback web --local --to 3 --wait --timeout 30s 2>&1) || die "rollback --local: $out"
[ "$(running_of 1)" = 3 ] || fail "n1 runs rev $(running_of 1) after --local --to 3, want 3"
svc_json 1 | grep -q '"diverged":true' || fail "n1 does not say it diverged"
[ "$(running_of 2)" = 5 ] || fail "n2 moved with n1's local rollback"
diverged_seen() { ctl 2 status | grep -q "^  n1 .*(diverged)"; }
wait_for 20 "n2 to see n1 diverged" diverged_seen
ok "rollback --local --to 3: n1 runs v3 alone and the cluster sees it diverged"
ctl 2 deploy web "$V3" --force >/dev/null || die "deploy v3 again (--force: condemned by rev 4)"
wait_for 30 "rev 6 everywhere, n1 included" all_run 6
svc_json 1 | grep -q '"diverged":false' || fail "n1 still diverged after a new revision"
ok "a new revision ends the divergence"
exit 0
