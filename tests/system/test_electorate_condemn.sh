#!/bin/bash
# System test (issue 11, behaviour 6): condemnation is identical on every node.
#
# Five agentd in network namespaces, rev 1 = v1 everywhere; split {1,2} | {3,4,5}. The majority
# deploys v2 at rev 2, v2's check fails there, and its 3 health votes roll it back (rev 3 =
# rollback to v1, condemning v2). Later, the minority deploys v3 at ITS rev 2 (a later clock, so
# after healing v3's deploy wins rev 2 on every node, agent/agree.h rule 1). Nobody ever voted
# against v3. After healing, every node must hold the same revs 2 and 3 and condemn the same
# artifacts: v2 (what the votes were against) and not v3; `deploy web v2` without --force is
# refused on every node (the old code condemned whatever its log held at the bad rev: v2 on
# the majority, v3 on the minority, so v2 could be deployed again there without --force).
# n1 and n3 `agentctl join` each other after healing so that the halves exchange state at once.
. "$(dirname "$0")/agentd_lib.sh"
. "$HERE/electorate_lib.sh"
ALL="1 2 3 4 5"
MINORITY="1 2"
MAJORITY="3 4 5"

lab_up 5
make_artifacts
for i in $ALL; do start_agent "$i"; done
wait_up "$ALL" 5
import_on "$ALL"
ctl 1 deploy web "$V1" --wait --timeout 30s >/dev/null || die "deploy v1"
wait_for 40 "rev 1 running everywhere" all_state "$ALL" 1 1
ok "5 agents, rev 1 (v1) everywhere"

bash "$HERE/netlab.sh" split "$MINORITY" "$MAJORITY" || die "split"
ctl 3 deploy web "$V2" --reason "etest: majority v2" >/dev/null || die "deploy v2 on n3"
wait_for 30 "the majority to run rev 2" all_state "$MAJORITY" 2 2
break_on v2 "$MAJORITY"
wait_for 30 "the majority to roll rev 2 back" all_have_rev "$MAJORITY" 3
[ "$(rec 3 3)" = "rollback $V1" ] || fail "the majority's rev 3 is $(rec 3 3), want a rollback to v1"
ok "majority: rev 2 = v2, rolled back by 3 health votes (rev 3 = v1)"
ctl 1 deploy web "$V3" --reason "etest: minority v3" >/dev/null || die "deploy v3 on n1"
wait_for 30 "the minority to run its rev 2 (v3)" all_state "$MINORITY" 2 2
ok "minority: rev 2 = v3 (deployed later)"

bash "$HERE/netlab.sh" heal || die "heal"
ctl 1 join "$NET.3:7946" >/dev/null 2>&1
ctl 3 join "$NET.1:7946" >/dev/null 2>&1
conv() { same_rec "$ALL" 2 && same_rec "$ALL" 3; }
wait_for 40 "every node to hold the same revs 2 and 3" conv
ok "healed: rev 2 = $(rec 1 2 | cut -c1-20) rev 3 = $(rec 1 3 | cut -c1-20) on every node"

# condemned I ID: true / false from the node's store, "absent" if the node no longer holds the
# artifact (the store drops artifacts no revision names: v2 after v3's deploy won rev 2)
condemned() {
	local o
	o=$(ctl "$1" --timeout 5s --json artifact show "$2" 2>&1)
	case $o in *not_found*) echo absent; return ;; esac
	echo "$o" | jq -r '.condemned' 2>/dev/null || echo "error: $o"
}
# hist_condemned I REV: the node's history says REV's artifact is condemned (store or log)
hist_condemned() {
	ctl "$1" --timeout 5s --json history web | jq -r --argjson r "$2" '.[] | select(.rev == $r) | .condemned'
}
l2="" l3="" h2=""
for i in $ALL; do
	c2=$(condemned "$i" "$V2") c3=$(condemned "$i" "$V3") hc=$(hist_condemned "$i" 2)
	l2="$l2 n$i=$c2" l3="$l3 n$i=$c3" h2="$h2 n$i=$hc"
	[ "$c2" = true ] || [ "$c2" = absent ] || fail "n$i holds v2 and does not condemn it ($c2)"
	[ "$c3" = true ] && fail "n$i condemns v3 (store), which nobody voted against"
	[ "$hc" = false ] || fail "n$i: history says rev 2 (v3's deploy) is condemned=$hc, nobody voted against v3"
done
note "v2 condemned in the stores:$l2"
note "v3 condemned in the stores:$l3"
note "rev 2 (v3) condemned in the histories:$h2"
for i in $ALL; do
	if out=$(ctl "$i" deploy web "$V2" --reason "etest: v2 again" 2>&1); then
		fail "n$i deployed the condemned v2 without --force: $out"
	else
		echo "$out" | grep -qi condemn || fail "n$i refused v2 for another reason: $out"
	fi
done
[ "$FAILS" = 0 ] && ok "v2 condemned and refused without --force on every node; v3 condemned nowhere"
[ "$FAILS" = 0 ] && echo "PASS: test_electorate_condemn"
exit 0
