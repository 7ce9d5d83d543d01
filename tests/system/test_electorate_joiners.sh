#!/bin/bash
# System test (issue 11, behaviours 1 and 5): nodes that join during a partition.
#
# Five agentd in network namespaces, revs 1..3 = v1, v2, v3 everywhere (healthy), then the
# switch splits {1,2} | {3,4,5} and three brand-new nodes n6, n7, n8 join the minority side.
# They joined after rev 3 was written, so they are not in its electorate: they may neither vote
# on it nor make the minority's 2 votes a quorum.
#   MODE=decide (behaviour 1, "fresh joiners decide alone"): the operator on n3 votes
#       `rollback --to 1` (n4, n5 echo: 3 of 5, decided), the operator on n1 plain `rollback`.
#       The minority must not decide anything (the old code decided "previous", 5 of 8, while
#       the majority decided --to 1: two different decisions for one revision).
#   MODE=grown (behaviour 5, "healed clusters stay split"): v3's check fails on n3, n4, n5 only;
#       their health votes decide (3 of 5). After healing, the side that grew to 5 members
#       (8 in its view) must accept that certificate (the old code checked it against its own
#       view: 3 < 5 of 8, refused forever).
# In both modes, after healing every one of the 8 nodes must hold the majority's rev 4 and run
# it. n1 and n3 `agentctl join` each other after healing so that the halves exchange state at
# once (the periodic anti-entropy round is 30 s; finding each other unaided is
# test_electorate_reap's business).
. "$(dirname "$0")/agentd_lib.sh"
. "$HERE/electorate_lib.sh"
MODE=${1:-decide}
case $MODE in decide | grown) ;; *) die "usage: $0 decide|grown" ;; esac
FIRST="1 2 3 4 5"
MINORITY="1 2"
MAJORITY="3 4 5"
JOINERS="6 7 8"
ALL="$FIRST $JOINERS"
HOLD=${SHOAL_SPLIT_HOLD_S:-8}

lab_up 8
make_artifacts
for i in $FIRST; do start_agent "$i"; done
wait_up "$FIRST" 5
import_on "$FIRST"
k=0
for a in "$V1" "$V2" "$V3"; do
	k=$((k + 1))
	ctl 1 deploy web "$a" --wait --timeout 30s >/dev/null || die "deploy v$k"
done
wait_for 40 "rev 3 running on the first five" all_state "$FIRST" 3 3
ok "5 agents, revs 1..3 (v1 v2 v3) everywhere"

bash "$HERE/netlab.sh" split "$MINORITY $JOINERS" "$MAJORITY" || die "split"
for i in $JOINERS; do start_agent "$i" 1; done
wait_up "$MINORITY $JOINERS" 5
wait_for 40 "the joiners to run rev 3" all_state "$JOINERS" 3 3
ok "split {$MINORITY} | {$MAJORITY}; n6 n7 n8 joined the minority side and run rev 3"

if [ "$MODE" = decide ]; then
	ctl 3 rollback web --to 1 --reason "etest: majority, to 1" >/dev/null 2>&1 ||
		die "rollback --to 1 on n3"
	ctl 1 rollback web --reason "etest: minority, previous" >/dev/null 2>&1 ||
		die "rollback on n1"
	WANT=$V1
else
	break_on v3 "$MAJORITY"
	WANT=$V2
fi
wait_for 30 "the majority to decide rev 4" all_have_rev "$MAJORITY" 4
M=$(rec 3 4)
[ "$M" = "rollback $WANT" ] || fail "the majority's rev 4 is '$M', want 'rollback $WANT'"
ok "majority {$MAJORITY} decided rev 4: $M (certificate $(ctl 3 --json history web |
	jq '.[] | select(.rev == 4) | .certificate'))"

# the minority side (2 electors + 3 joiners) must not decide: for HOLD seconds, no rev 4 there,
# and above all none different from the majority's
end=$((SECONDS + HOLD))
while [ $SECONDS -lt $end ]; do
	for i in $MINORITY $JOINERS; do
		r=$(rec "$i" 4) || continue
		if [ "$r" != none ]; then
			c=$(ctl "$i" --json history web | jq '.[] | select(.rev == 4) | .certificate')
			if [ "$r" != "$M" ]; then
				fail "two decisions for rev 3: the minority side's n$i holds rev 4 = $r (certificate $c), the majority's is $M"
			else
				fail "the minority side's n$i decided rev 4 = $r (certificate $c) while split"
			fi
			break 2
		fi
	done
	sleep 0.5
done
[ "$FAILS" = 0 ] && ok "the minority side (2 of 5 electors + 3 joiners) decided nothing for ${HOLD}s; n1 votes: $(votes_json 1 --rev 3 | jq -c '{eligible, quorum, counted}')"

bash "$HERE/netlab.sh" heal || die "heal"
ctl 1 join "$NET.3:7946" >/dev/null 2>&1
ctl 3 join "$NET.1:7946" >/dev/null 2>&1
t0=$SECONDS
conv() { same_rec "$ALL" 4 && [ "$(rec 1 4)" = "$M" ]; }
end=$((SECONDS + 40))
until conv; do
	if [ $SECONDS -ge $end ]; then
		die "not converged 40s after healing: $(for i in $ALL; do echo "n$i=$(rec "$i" 4 | cut -c1-20)"; done | tr '\n' ' ')(majority: ${M:0:20})"
	fi
	sleep 0.5
done
wait_for 30 "all 8 to run rev 4" all_state "$ALL" 4 4
ok "healed: all 8 nodes hold the majority's rev 4 and run it ($((SECONDS - t0))s)"
[ "$FAILS" = 0 ] && echo "PASS: test_electorate_joiners $MODE"
exit 0
