#!/usr/bin/env bash
# Integration: kill -9 of agents in the middle of swaps, ROUNDS times (default 20): after each
# round the killed agent is restarted; at the end every node runs the desired revision, and
# every node desires the same one. Only one instance of the service runs per node.
. "$(dirname "$0")/brain_lib.sh"
ROUNDS=${BRAIN_KILL_ROUNDS:-20}

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
start_cluster 3
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
for r in $(seq 1 "$ROUNDS"); do
	victim=$(( (r % 3) + 1 ))
	deployer=$(( ((r + 1) % 3) + 1 ))
	art=$V2; [ $((r % 2)) = 0 ] && art=$V1
	ctl "$deployer" deploy web "$art" --reason "round $r" >/dev/null || die "round $r: deploy"
	sleep "0.0$((RANDOM % 10))"
	kill -KILL "${PID[$victim]}"
	wait "${PID[$victim]}" 2>/dev/null
	start_agent "$victim"
	wait_for 40 "n$victim to answer after its restart" ctl "$victim" ping
done
converged() {
	local d i want
	want=$(desired_of 1)
	[ -n "$want" ] || return 1
	for i in 1 2 3; do
		d=$(desired_of "$i")
		[ "$d" = "$want" ] && runs "$i" "$want" || return 1
	done
}
wait_for 60 "every node on the same desired revision" converged
want=$(desired_of 1)
[ "$want" = $((ROUNDS + 1)) ] || fail "desired rev $want, want $((ROUNDS + 1))"
# one instance per node: count the service's processes by their SHOAL_DIR
n=0
for p in /proc/[0-9]*; do
	{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^SHOAL_DIR=$WORK/" || continue
	{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^SHOAL_REV=" || continue
	[ "$(cat "$p/comm" 2>/dev/null)" = web ] && n=$((n + 1))
done
[ "$n" = 3 ] || fail "$n instances of web run, want 3 (one per node)"
ok "$ROUNDS kill -9 rounds: all nodes run rev $want"
exit 0
