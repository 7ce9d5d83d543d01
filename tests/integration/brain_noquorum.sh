#!/usr/bin/env bash
# Integration: `rollback --wait` exits 3 with the votes so far when no quorum is possible:
# 3 agents, two of them killed (failed members still count as eligible voters).
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
start=$SECONDS
out=$(ctl 1 rollback web --wait --timeout 3s 2>&1); st=$?
[ "$st" = 3 ] || fail "rollback --wait without quorum: exit $st, want 3 ($out)"
echo "$out" | grep -q "1 of 3, quorum 2" || fail "rollback --wait output: $out"
[ $((SECONDS - start)) -le 10 ] || fail "rollback --wait took $((SECONDS - start)) s"
[ "$(running_of 1)" = 2 ] || fail "n1 swapped without a quorum"
ok "rollback --wait: exit 3 with '1 of 3, quorum 2'"
exit 0
