#!/usr/bin/env bash
# Integration (issue 11, behaviour 8): `rollback --local` survives a restart.
# agentctl(1): a node rolled back with --local stays diverged until the next revision. Three
# agents on rev 2; n1 rolls back locally to rev 1; then n1 is restarted twice (SIGTERM, then
# kill -9): each time it must come back running rev 1, diverged, and stay so (the old code
# forgot the marker and returned to rev 2). A new deploy (rev 3) then ends the divergence.
. "$(dirname "$0")/electorate_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
make_artifact v3 3.0.0 1
start_cluster 3
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2
out=$(ctl 1 rollback web --local --wait --timeout 20s 2>&1) || die "rollback --local: $out"
diverged1() { runs 1 1 && svc_json 1 | grep -q '"diverged":true'; }
wait_for 20 "n1 to run rev 1, diverged" diverged1
ok "n1 rolled back locally: runs rev 1, diverged; desired $(desired_of 1)"

for sig in TERM KILL; do
	stop_agent 1 "$sig"
	[ "$sig" = KILL ] && kill_services_of 1
	start_agent 1 --join "$(addr_of 2)"
	wait_for 15 "n1 to answer after SIG$sig" ctl 1 ping
	settled() { svc_json 1 | grep -q '"swapping":false' && [ "$(running_of 1)" != 0 ]; }
	wait_for 20 "n1 to run something after SIG$sig" settled
	end=$((SECONDS + 8))
	while [ $SECONDS -lt $end ]; do
		if ! diverged1; then
			fail "after SIG$sig and a restart n1 forgot its local rollback: $(svc_json 1 | jq -c '.[] | {desired_rev, running_rev, diverged, swapping}')"
			break 2
		fi
		sleep 0.5
	done
	ok "after SIG$sig and a restart n1 still runs rev 1, diverged, for 8s"
done

ctl 2 deploy web "$V3" --wait --timeout 20s >/dev/null || die "deploy v3"
wait_for 30 "rev 3 everywhere, n1 included" all_run 3
svc_json 1 | grep -q '"diverged":false' || fail "n1 still diverged after rev 3"
ok "a new revision ends the divergence"
exit 0
