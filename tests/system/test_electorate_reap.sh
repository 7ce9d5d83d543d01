#!/bin/bash
# System test (issue 11, behaviour 2): a minority partition longer than the reap time.
#
# Five agentd in network namespaces, started with `--reap-after 3s` (dead members forgotten
# after 3 s), revs 1, 2 = v1, v2 everywhere. The switch splits {1,2} | {3,4,5} and v2's check
# fails on every node. The majority rolls back (3 of 5). The minority votes too (2 of 5) and
# must never decide, however long the split lasts: we wait out the reap time, then restart n1
# and n2 (SIGTERM; a restart also dropped the dead members on the old code) and keep checking.
# Rev 2's electorate is in its record: forgetting members never makes 2 of 5 a quorum (the old
# code ended "2 of 2, quorum 2, decided").
# Then the split heals and NOBODY helps (no `agentctl join`): the halves must find each other
# again by themselves (members considered dead are retried, SHOAL_RECONNECT_MS=1000 here) and
# converge on the majority's rev 3 (the old code's rejoin timer only ran when a node was
# completely alone: the halves stayed apart).
# Until agentd has --reap-after the test runs without it, and the restart with libfaketime
# (package faketime) is what outlasts the reap time; with neither, it ends with SKIP if nothing
# failed.
. "$(dirname "$0")/agentd_lib.sh"
. "$HERE/electorate_lib.sh"
ALL="1 2 3 4 5"
MINORITY="1 2"
MAJORITY="3 4 5"
export SHOAL_RECONNECT_MS=${SHOAL_RECONNECT_MS:-1000}
REAP=()
if "$AGENTD" --help 2>&1 | grep -q -- '--reap-after'; then
	REAP=(--reap-after 3s)
fi

lab_up 5
make_artifacts
for i in $ALL; do start_agent "$i" 1 "${REAP[@]}"; done
wait_up "$ALL" 5
import_on "$ALL"
ctl 1 deploy web "$V1" --wait --timeout 30s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 30s >/dev/null || die "deploy v2"
wait_for 40 "rev 2 running everywhere" all_state "$ALL" 2 2
ok "5 agents (${REAP[*]:-no --reap-after}), revs 1, 2 (v1 v2) everywhere"

bash "$HERE/netlab.sh" split "$MINORITY" "$MAJORITY" || die "split"
SPLIT_T0=$SECONDS
break_on v2 "$ALL"
wait_for 30 "the majority to roll rev 2 back" all_have_rev "$MAJORITY" 3
M=$(rec 3 3)
[ "$M" = "rollback $V1" ] || fail "the majority's rev 3 is $M, want a rollback to v1"
minority_votes() { votes_json 1 --rev 2 | jq -e '[.votes[] | select(.name == "n1" or .name == "n2")] | length == 2'; }
wait_for 30 "both minority nodes to vote against rev 2" minority_votes
ok "split; majority decided rev 3 (v1); minority voted 2 of 5"

nodecide() { # nodecide SECONDS: no minority node holds rev 3 during SECONDS
	local end=$((SECONDS + $1)) i
	while [ $SECONDS -lt $end ]; do
		for i in $MINORITY; do
			has_rev "$i" 3 && {
				fail "minority n$i decided alone: rev 3 = $(rec "$i" 3) (certificate $(ctl "$i" --json history web | jq '.[] | select(.rev == 3) | .certificate')); votes $(votes_json "$i" --rev 2 | jq -c '{eligible, quorum, counted}'); members $(ctl "$i" --json members | jq -c '[.. | objects | select(.name? != null) | {name, state}]')"
				return 1
			}
		done
		sleep 0.5
	done
}
nodecide 6 || die "the minority decided alone"
ok "minority kept out of it for 6s${REAP:+ (--reap-after 3s)} $(ctl 1 --json members | jq -c '[.. | objects | select(.name? != null) | "\(.name)=\(.state)"]')"
# The restart: with libfaketime, n1 and n2 come back with their clocks 73 h ahead, as if the
# split had lasted longer than the default reap time (72 h) while they were down: the old code
# forgot members dead for longer than that at restart, and counted 2 of 2.
FT=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
[ -e "$FT" ] || FT=""
for i in $MINORITY; do stop_agent "$i" TERM; done
# shellcheck disable=SC2034 # read by start_agent (electorate_lib.sh)
[ -n "$FT" ] && AGENT_ENV="LD_PRELOAD=$FT FAKETIME=+73h FAKETIME_DONT_FAKE_MONOTONIC=1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
start_agent 1 2 "${REAP[@]}"
start_agent 2 1 "${REAP[@]}"
unset AGENT_ENV
for i in $MINORITY; do wait_for 20 "n$i to answer after its restart" ctl "$i" ping; done
# keep the split for at least 35 s in all: longer than agentd keeps gossiping to members it
# considers dead (30 s), so healing needs the halves to look for each other
nodecide $((SPLIT_T0 + 35 > SECONDS + 8 ? SPLIT_T0 + 35 - SECONDS : 8)) ||
	die "the minority decided alone after a restart"
ok "minority n1, n2 restarted during the split${FT:+ with clocks 73 h ahead}: still no decision ($(votes_json 1 --rev 2 | jq -c '{eligible, quorum, counted}'))"

bash "$HERE/netlab.sh" heal || die "heal"
t0=$SECONDS
found() { local i; for i in $ALL; do sees_alive "$i" 5 || return 1; done; }
end=$((SECONDS + 45))
until found; do
	[ $SECONDS -lt $end ] || die "the halves did not find each other within 45s of healing: $(for i in 1 3; do echo "n$i sees $(ctl "$i" --json members | jq -c '[.. | objects | select(.name? != null) | "\(.name)=\(.state)"]')"; done | tr '\n' ' ')"
	sleep 0.5
done
ok "healed after a split of $((t0 - SPLIT_T0))s: every node sees 5 alive members after $((SECONDS - t0))s, unaided"
wait_for 30 "every node to hold the majority's rev 3" same_rec "$ALL" 3
[ "$(rec 1 3)" = "$M" ] || fail "after healing rev 3 is $(rec 1 3), the majority's was $M"
wait_for 30 "every node to run rev 3" all_state "$ALL" 3 3
ok "all 5 run the majority's rev 3 ($((SECONDS - t0))s after healing)"
if [ ${#REAP[@]} = 0 ] && [ -z "$FT" ] && [ "$FAILS" = 0 ]; then
	skip "agentd has no --reap-after and libfaketime is not installed: the split outlasted no reap time (restart and healing parts passed)"
fi
[ "$FAILS" = 0 ] && echo "PASS: test_electorate_reap"
exit 0
