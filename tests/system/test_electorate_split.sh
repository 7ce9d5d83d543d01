#!/bin/bash
# System test (issue 11, behaviours 3 and 7): votes split between two targets.
#
# Four agentd in network namespaces, revs 1..3 = v1, v2, v3 (all healthy). Split {1,2} | {3,4}:
# the operator on n1 votes `rollback web` (target: previous good = v2), the operator on n3
# `rollback web --to 1` (v1); each partner echoes its side's vote. Healed, the cluster holds
# 2 votes for each target: stuck at 2 of 4, quorum 3.
#   MODE=restart (behaviour 3): n4 is killed with SIGKILL and restarted while split (its view
#       of the votes must keep their targets), and n1 once every node holds all four votes. A
#       restart must not change what a vote meant: a decision may only come from >= 3 votes
#       for ONE target in ONE round (no certificate forged from votes whose target was
#       forgotten: the old code decided "previous" with 4 "voters" here).
#   MODE=resolve (behaviour 7): nobody restarts.
# In both modes the split must then RESOLVE (votes are re-cast into a new round for one
# target, agent/agree.h rule 4) within a bounded time: rev 4 is a rollback, the same record on
# every node, backed by a quorum of same-round votes for its target, and `votes --json` shows
# the round.
# After healing, n1 and n3 `agentctl join` each other so that the halves exchange state at once
# (the periodic anti-entropy round is 30 s; finding each other unaided is test_electorate_reap's
# business).
. "$(dirname "$0")/agentd_lib.sh"
. "$HERE/electorate_lib.sh"
MODE=${1:-resolve}
case $MODE in restart | resolve) ;; *) die "usage: $0 restart|resolve" ;; esac
N=4
ALL="1 2 3 4"
RESOLVE_S=${SHOAL_RESOLVE_S:-40}

lab_up $N
make_artifacts
for i in $ALL; do start_agent "$i"; done
wait_up "$ALL" $N
import_on "$ALL"
k=0
for a in "$V1" "$V2" "$V3"; do
	k=$((k + 1))
	ctl 1 deploy web "$a" --wait --timeout 30s >/dev/null || die "deploy v$k"
done
wait_for 40 "rev 3 running everywhere" all_state "$ALL" 3 3
ok "$N agents, revs 1..3 (v1 v2 v3) everywhere"

bash "$HERE/netlab.sh" split "1 2" "3 4" || die "split"
ctl 1 rollback web --reason "etest: previous" >/dev/null 2>&1 || die "rollback on n1"
ctl 3 rollback web --to 1 --reason "etest: to 1" >/dev/null 2>&1 || die "rollback --to 1 on n3"
nvotes() { votes_json "$1" --rev 3 | jq '.votes | length'; }
has_votes() { [ "$(nvotes "$1")" -ge "$2" ]; }
wait_for 20 "n1 to see its side's 2 votes" has_votes 1 2
wait_for 20 "n3 to see its side's 2 votes" has_votes 3 2
ok "split {1 2} | {3 4}: 'previous' voted on n1+n2, '--to 1' on n3+n4"
for i in $ALL; do
	has_rev "$i" 4 && fail "n$i decided rev 4 while split 2 | 2: $(rec "$i" 4)"
done

if [ "$MODE" = restart ]; then
	# while split (so that the resolution cannot come first): n4's view of its side's votes
	# must mean the same after a kill -9 and a restart as before
	before=$(votes_json 4 --rev 3 | jq -c '[.votes[] | {name, target}] | sort_by(.name)')
	stop_agent 4 KILL
	start_agent 4 3
	wait_for 30 "n4 to answer after its restart" ctl 4 ping
	has_votes4() { [ "$(votes_json 4 --rev 3 | jq '.votes | length')" -ge 2 ]; }
	wait_for 20 "n4 to hold its side's 2 votes again" has_votes4
	after=$(votes_json 4 --rev 3 | jq -c '[.votes[] | {name, target}] | sort_by(.name)')
	[ "$after" = "$before" ] ||
		fail "n4's votes changed meaning across its restart: before $before, after $after"
	has_rev 4 4 && fail "n4 decided rev 4 after its restart while split 2 | 2: $(rec 4 4)"
	ok "n4 killed with SIGKILL and restarted while split; its votes: $after"
fi
bash "$HERE/netlab.sh" heal || die "heal"
ctl 1 join "$NET.3:7946" >/dev/null 2>&1
ctl 3 join "$NET.1:7946" >/dev/null 2>&1
all_votes() { local i; for i in $ALL; do has_votes "$i" 4 || return 1; done; }
wait_for 30 "every node to see all 4 votes" all_votes
t0=$SECONDS
ok "healed: every node holds the 4 votes ($(votes_json 1 --rev 3 | jq -c '[.votes[] | {name, target, round}]'))"

if [ "$MODE" = restart ]; then
	# and once every node holds all four votes: a node restarted now reads them from its
	# store; they must keep their targets (on the old code they all became "previous")
	stop_agent 1 KILL
	start_agent 1 3
	wait_for 30 "n1 to answer after its restart" ctl 1 ping
	ok "n1 killed with SIGKILL and restarted after healing"
fi

# supported I: node I holds rev 4, a rollback whose target has a quorum (3) of votes of the
# tally's round (a vote without a round is round 0) in node I's view of rev 3's votes
target_of() { # the target of rev 4 on node I: 0 = previous (v2), 1 = --to 1 (v1)
	case $(rec "$1" 4) in
	"rollback $V2") echo 0 ;;
	"rollback $V1") echo 1 ;;
	*) echo none ;;
	esac
}
supported() {
	local t
	t=$(target_of "$1")
	[ "$t" != none ] || return 1
	votes_json "$1" --rev 3 | jq -e --argjson t "$t" '(.round // 0) as $r |
		[.votes[] | select(.target == $t and (.round // 0) == $r)] | length >= 3' >/dev/null
}
decided_anywhere() { local i; for i in $ALL; do has_rev "$i" 4 && return 0; done; return 1; }
end=$((SECONDS + RESOLVE_S))
stuck_seen=0
until decided_anywhere; do
	[ $SECONDS -lt $end ] || break
	votes_json 1 --rev 3 | jq -e '.stuck == true' >/dev/null 2>&1 && stuck_seen=1
	sleep 0.3
done
if ! decided_anywhere; then
	die "no decision within ${RESOLVE_S}s of healing: the 2 | 2 split never resolves (n1 votes: $(votes_json 1 --rev 3 | jq -c .))"
fi
ok "rev 4 decided $((SECONDS - t0))s after healing ($(rec 1 4 || true)); stuck seen on n1: $stuck_seen"

# every node that holds rev 4 must hold it backed by a same-round quorum for its target
wait_for 30 "rev 4 on every node" all_have_rev "$ALL" 4
end=$((SECONDS + 10))
for i in $ALL; do
	until supported "$i"; do
		if [ $SECONDS -ge $end ]; then
			fail "n$i: rev 4 = $(rec "$i" 4) (certificate $(ctl "$i" --json history web |
				jq '.[] | select(.rev == 4) | .certificate')) is not backed by 3 votes of one round for its target (target $(target_of "$i")); votes: $(votes_json "$i" --rev 3 | jq -c '{round, stuck, votes: [.votes[] | {name, target, round}]}')"
			break
		fi
		sleep 0.3
	done
done
same_rec "$ALL" 4 || fail "nodes hold different records at rev 4: $(for i in $ALL; do echo "n$i=$(rec "$i" 4)"; done | tr '\n' ' ')"
votes_json 2 --rev 3 | jq -e 'has("round") and has("stuck")' >/dev/null ||
	fail "votes --json has no round/stuck: $(votes_json 2 --rev 3 | jq -c 'keys')"
wait_for 30 "every node to run rev 4" all_state "$ALL" 4 4
ok "every node holds the same rev 4 ($(rec 1 4)) and runs it; votes: $(votes_json 1 --rev 3 | jq -c '{round, stuck, counted, quorum}')"
[ "$FAILS" = 0 ] && echo "PASS: test_electorate_split $MODE"
exit 0
