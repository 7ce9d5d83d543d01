#!/bin/bash
# System test (issue 4): a bad deploy during a 2 / 3 partition, five hosts in network namespaces.
#
# Five agentd, one per network namespace (tests/system/netlab.sh), each on its own 10.x address,
# exec runtime, one keyring. v1 is deployed and healthy everywhere; v2 is deployed from a
# majority node and reaches all five (healthy at first); then the switch drops every frame
# between {1,2} and {3,4,5}, and v2 turns bad on every host (its health check starts failing).
#  - the majority (3 of 5 votes = quorum) writes the rollback revision and runs v1 again;
#  - the minority (2 of 5, no quorum) keeps v2 as desired and running for as long as the split
#    lasts (checked for a bounded time), although it voted against it;
#  - once healed, the minority adopts the certified rollback revision and runs v1.
# Every check goes through `agentctl --json` run inside the host's namespace, plus the real
# service processes in each namespace (their SHOAL_REV). Cleanup (trap): agents by PID, the
# namespaces (with anything left in them), the work directory.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and ip nft jq

N=5
MINORITY="1 2"
MAJORITY="3 4 5"
PFX=ap$RUNID
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
export NETLAB_PREFIX=$PFX NETLAB_NET=$NET NETLAB_OWNER=$$
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-200} SHOAL_RETRY_MS=${SHOAL_RETRY_MS:-300}
# the netlab must not be left behind if this script is killed: its owner watcher handles that
declare -a PID=()

cleanup() {
	local rc=$? i
	stop_agents
	bash "$HERE/netlab.sh" down
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		for f in "$WORK"/n*.log; do
			[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 30 "$f"; }
		done
	fi
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ns() { echo "${PFX}h$1"; }
ctl() { local i=$1; shift; ip netns exec "$(ns "$i")" "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }
svc() { # node I's view of service web (one JSON object)
	ctl "$1" --timeout 5s --json services |
		jq -ce 'first(.. | objects | select(.service? == "web"))'
}
field() { svc "$1" | jq -r ".$2"; }
# state I DESIRED RUNNING HEALTH: node I wants DESIRED, runs RUNNING with HEALTH, not swapping
state() {
	svc "$1" | jq -e --argjson d "$2" --argjson r "$3" --arg h "$4" \
		'.desired_rev == $d and .running_rev == $r and .health == $h and .swapping == false'
}
all_state() { local i; for i in $1; do state "$i" "$2" "$3" "$4" || return 1; done; }
sees_alive() { # node I sees COUNT members alive
	ctl "$1" --timeout 5s --json members |
		jq -e --argjson n "$2" '[.. | objects | select(.state? == "alive")] | length == $n'
}
# procs I: "rev artifact" of every web process the exec runtime runs in host I's namespace
procs() {
	local p
	for p in $(ip netns pids "$(ns "$1")"); do
		# (processes come and go: a vanished one is simply skipped)
		{ tr '\0' '\n' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q 'bin/web' || continue
		{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -q '^SHOAL_SERVICE=web$' ||
			continue
		{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^SHOAL_REV=//p'
	done
}
# runs_proc I REV: exactly one web process in host I, of revision REV
runs_proc() { [ "$(procs "$1" | sort -u | tr '\n' ' ')" = "$2 " ]; }
all_runs_proc() { local i; for i in $1; do runs_proc "$i" "$2" || return 1; done; }

# --- the lab and the agents
bash "$HERE/netlab.sh" up $N || die "netlab up"
ok "netlab $PFX up: $N hosts on $NET.0/24"
make_keyring "$WORK/keyring"
make_operator "$WORK"
start_agent() {
	local i=$1
	rm -f "$WORK/n$i.sock"
	ip netns exec "$(ns "$i")" "$AGENTD" --config /dev/null --node-name "n$i" \
		--state-dir "$WORK/n$i" --socket "$WORK/n$i.sock" --socket-group "" \
		--bind "$NET.$i:7946" --join "$NET.1:7946" --keyring "$WORK/keyring" \
		--cluster "sys$RUNID" --log-level info --operators-dir "$WORK/operators" \
		2>>"$WORK/n$i.log" &
	PID[$i]=$!
}
for i in $(seq 1 $N); do start_agent "$i"; done
for i in $(seq 1 $N); do wait_for 30 "agent n$i to answer" ctl "$i" ping; done
for i in $(seq 1 $N); do wait_for 60 "n$i to see $N alive members" sees_alive "$i" $N; done
ok "$N agents up, each sees $N alive members"

exec_artifacts "$WORK"
for i in $(seq 1 $N); do
	V1=$(ctl "$i" artifact import "$WORK/v1") || die "import v1 on n$i"
	V2=$(ctl "$i" artifact import "$WORK/v2") || die "import v2 on n$i"
done
ok "v1 $V1 and v2 $V2 imported on every node"

# --- v1 everywhere
ctl 3 deploy web --key "$WORK/operator.key" "$V1" --reason "system test v1" >/dev/null || die "deploy v1"
wait_for 90 "rev 1 healthy on every node" all_state "$(seq 1 $N)" 1 1 healthy
wait_for 30 "one web process of rev 1 per host" all_runs_proc "$(seq 1 $N)" 1
ok "rev 1 (v1) healthy on all $N hosts, one process of rev 1 in each namespace"

# --- v2 everywhere (healthy for now), deployed from a majority node
ctl 3 deploy web --key "$WORK/operator.key" "$V2" --reason "system test v2" >/dev/null || die "deploy v2"
wait_for 90 "rev 2 healthy on every node" all_state "$(seq 1 $N)" 2 2 healthy
wait_for 30 "one web process of rev 2 per host" all_runs_proc "$(seq 1 $N)" 2
ok "rev 2 (v2) healthy on all $N hosts"

# --- split 2 / 3, then v2 turns bad everywhere
bash "$HERE/netlab.sh" split "$MINORITY" "$MAJORITY" || die "split"
touch "$WORK/v2-broken"
ok "split {$MINORITY} / {$MAJORITY}; v2's health check fails from now on"

wait_for 90 "the majority to roll back to v1 (rev 3)" all_state "$MAJORITY" 3 3 healthy
wait_for 30 "one web process of rev 3 per majority host" all_runs_proc "$MAJORITY" 3
for i in $MAJORITY; do
	a=$(field "$i" running)
	[ "$a" = "$V1" ] || fail "n$i runs artifact $a after the rollback, want v1 $V1"
done
h=$(ctl 3 --json history web) || die "history on n3"
echo "$h" | jq -e --arg v1 "$V1" 'first(.. | objects | select(.rev? == 3)) |
	.kind == "rollback" and .artifact == $v1' >/dev/null ||
	fail "n3 history: rev 3 is not a rollback to v1: $(echo "$h" | jq -c .)"
echo "$h" | jq -e 'first(.. | objects | select(.rev? == 2)) | .condemned == true' >/dev/null ||
	fail "n3 history: rev 2 not condemned: $(echo "$h" | jq -c .)"
ok "majority {$MAJORITY} rolled back: rev 3 = rollback to v1, rev 2 condemned"

# The minority must hold on to v2 while split. Its own nodes do vote against it (their health
# fails), which is what makes this a real check: 2 votes of 5 are no quorum.
wait_for 60 "the minority to vote against rev 2" \
	sh -c "[ \"\$(ip netns exec $(ns 1) $AGENTCTL --socket $WORK/n1.sock --json votes web |
		jq '[.. | objects | select(.reason? == \"health\")] | length')\" -ge 2 ]"
HOLD=${SHOAL_SPLIT_HOLD_S:-10}
end=$((SECONDS + HOLD))
while [ $SECONDS -lt $end ]; do
	for i in $MINORITY; do
		s=$(svc "$i") || { fail "n$i: no services answer while split"; continue; }
		d=$(echo "$s" | jq .desired_rev) r=$(echo "$s" | jq .running_rev)
		if [ "$d" != 2 ] || [ "$r" != 2 ]; then
			fail "minority n$i moved while split: desired $d running $r, want 2 and 2 ($s)"
			break 2
		fi
		runs_proc "$i" 2 || { fail "n$i: web processes of revs '$(procs "$i")', want 2"; break 2; }
	done
	sleep 1
done
v=$(ctl 1 --json votes web | jq -c '[.. | objects | select(.voter? != null) | .name]')
ok "minority {$MINORITY} kept v2 (desired 2, running 2) for ${HOLD}s while split; votes seen: $v"

# --- heal: the minority converges to the rollback revision
bash "$HERE/netlab.sh" heal || die "heal"
t0=$SECONDS
# The minority learns the rollback revision through anti-entropy: a periodic exchange every
# 30 s (+-25%, not shortened by SHOAL_GOSSIP_PROBE_MS) that picks a member seen dead only now
# and then, so healing takes from seconds to a few of those rounds (11..107 s measured).
wait_for 180 "every node on rev 3 after healing" all_state "$(seq 1 $N)" 3 3 healthy
wait_for 30 "one web process of rev 3 per host" all_runs_proc "$(seq 1 $N)" 3
for i in $MINORITY; do
	a=$(field "$i" running)
	[ "$a" = "$V1" ] || fail "n$i runs artifact $a after healing, want v1 $V1"
	ctl "$i" --json history web | jq -e --arg v1 "$V1" \
		'first(.. | objects | select(.rev? == 3)) | .kind == "rollback" and .artifact == $v1' \
		>/dev/null || fail "n$i history has no rollback rev 3 to v1"
done
ok "healed: minority converged to rev 3 (v1) in $((SECONDS - t0))s; all $N hosts agree"
[ "$FAILS" = 0 ] && echo "PASS: test_agentd_partition"
exit 0
