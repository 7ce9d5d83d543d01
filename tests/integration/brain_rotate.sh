#!/usr/bin/env bash
# Integration: node key rotation (agent/base/sign.h). 3 agents, trust on first join, quorum 3
# (every vote must count). v1 then v2 (rev 2) are deployed; n2 and n3 rotate their keys
# (agentctl rotate-key): every node re-binds their ids to the new keys without an operator.
# An operator rollback of rev 2, a revision written BEFORE the rotation, is decided: n2 and n3
# vote with their former keys, which rev 2's electorate names. A bad release deployed after
# the rotation (rev 4) is rolled back by health votes signed with the new keys. A roster
# record whose rotation is not signed by the bound key is refused. n2 restarts and comes back
# with its new key; a third decision counts its vote.
. "$(dirname "$0")/brain_lib.sh"

[ -n "${FORGE:-}" ] && [ -x "$FORGE" ] || { echo "SKIP: forge not built"; exit 77; }

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
make_artifact v3 3.0.0 0
start_cluster 3 --quorum web=3
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 1 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "rev 2 healthy everywhere" all_healthy 2

key_of() { ctl "$1" --json identity | jq -r .key; }
id_of() { ctl "$1" --json identity | jq -r .id; }
ID2=$(id_of 2); ID3=$(id_of 3)
OLD2=$(key_of 2); OLD3=$(key_of 3)

# 1. rotation: n2 and n3 (no enrolment: trust on first join needs no operator key)
out=$(SHOAL_OPERATOR_KEY= ctl 2 rotate-key) || die "rotate-key on n2: $out"
echo "$out" | grep -q "^new node key" || fail "rotate-key says: $out"
SHOAL_OPERATOR_KEY= ctl 3 rotate-key >/dev/null || die "rotate-key on n3"
NEW2=$(key_of 2); NEW3=$(key_of 3)
[ "$NEW2" != "$OLD2" ] && [ "$NEW3" != "$OLD3" ] || die "the keys did not change"
[ "$(ctl 2 --json identity | jq -r .rotated_from)" = "$OLD2" ] || fail "n2's rotated_from"
m=$(stat -c %a "$WORK/n2/node.key"); [ "$m" = 600 ] || fail "node.key has mode $m after rotation"
old=$(ls "$WORK"/n2/node.key.old.* 2>/dev/null | head -1)
[ -n "$old" ] || fail "n2 kept no former key in its state directory"
[ -n "$old" ] && { m=$(stat -c %a "$old"); [ "$m" = 600 ] || fail "$old has mode $m"; }
for i in 1 3; do
	wait_for 20 "n$i to re-bind n2" grep -q "roster: node n2 .* rotated its key: ${NEW2:0:8}" \
		"$WORK/n$i.log"
done
wait_for 20 "n1 to re-bind n3" grep -q "roster: node n3 .* rotated its key: ${NEW3:0:8}" "$WORK/n1.log"
grep -q "roster record for node $ID2 with another key" "$WORK"/n*.log &&
	fail "a node refused n2's rotated key"
[ "$(ctl 1 --json members | jq -r '.[] | select(.name == "n2") | .trust')" = "first join" ] ||
	fail "n1's trust of n2: $(ctl 1 --json members)"
ok "rotate-key: every node re-binds n2 and n3 to their new keys, signed by the old ones"

# 2. rev 2 was written before the rotation: its electorate names the former keys of n2, n3
ctl 1 rollback web --reason "rotation test" >/dev/null || die "rollback of rev 2"
wait_for 40 "rev 3 (v1) everywhere" all_run 3
v=$(ctl 1 --json votes web --rev 2)
[ "$(echo "$v" | jq -r .decided)" = true ] || fail "rev 2's rollback undecided: $v"
[ "$(echo "$v" | jq '[.votes[] | select(.counted)] | length')" = 3 ] ||
	fail "not 3 votes counted on rev 2: $v"
ok "a revision deployed before the rotation still decides (3 of 3, former keys)"

# 3. a bad release deployed after the rotation: health votes signed with the new keys
ctl 1 deploy web "$V3" >/dev/null || die "deploy v3"
wait_for 60 "rev 5 (the rollback of rev 4) everywhere" all_run 5
v=$(ctl 2 --json votes web --rev 4)
[ "$(echo "$v" | jq '[.votes[] | select(.counted)] | length')" = 3 ] ||
	fail "not 3 votes counted on rev 4: $v"
ok "after the rotation, votes signed with the new keys count (rev 4 rolled back, 3 of 3)"

# 4. a rotation not signed by the bound key (a cluster key holder's) is refused
"$FORGE" "$WORK/keyring" "$LIB_NAME" "$(addr_of 3)" rotate "$ID2" "$NEW2" || die "forge rotate"
wait_for 20 "n3 to refuse the forged rotation" grep -q \
	"roster record for node $ID2 with another key" "$WORK/n3.log"
sleep 1
[ "$(ctl 3 --json members | jq -r '.[] | select(.name == "n2") | .trust')" = "first join" ] ||
	fail "n3's trust of n2 after the forged rotation: $(ctl 3 --json members)"
"$FORGE" "$WORK/keyring" "$LIB_NAME" "$(addr_of 3)" roster "$ID2" || die "forge roster"
sleep 2
ok "a roster record with a new key not signed by the bound key is refused"

# 5. n2 restarts: it comes back with its new key, and the others keep it
kill -TERM "${PID[2]}"
for _ in $(seq 1 100); do kill -0 "${PID[2]}" 2>/dev/null || break; sleep 0.1; done
wait "${PID[2]}" 2>/dev/null
start_agent 2 --quorum web=3
wait_for 30 "n2 back" ctl 2 status
[ "$(key_of 2)" = "$NEW2" ] || fail "n2 restarted with key $(key_of 2), want $NEW2"
wait_cluster 3
ctl 2 deploy web "$V3" --force >/dev/null || die "deploy v3 again"
wait_for 60 "rev 7 (the rollback of rev 6) everywhere" all_run 7
v=$(ctl 1 --json votes web --rev 6)
[ "$(echo "$v" | jq '[.votes[] | select(.counted)] | length')" = 3 ] ||
	fail "not 3 votes counted on rev 6 after n2's restart: $v"
grep -q "node key differs from the one bound" "$WORK/n2.log" &&
	fail "n2 did not keep its rotated binding across the restart"
ok "after a restart n2 signs with its new key: rev 6 rolled back, 3 of 3"

# 6. n1 restarts: the bindings it changed (n2, n3 re-bound) were kept in its store
kill -TERM "${PID[1]}"
for _ in $(seq 1 100); do kill -0 "${PID[1]}" 2>/dev/null || break; sleep 0.1; done
wait "${PID[1]}" 2>/dev/null
lines=$(wc -l <"$WORK/n1.log")
start_agent 1 --quorum web=3
wait_for 30 "n1 back" ctl 1 status
wait_cluster 3
sleep 2
tail -n +"$((lines + 1))" "$WORK/n1.log" |
	grep -E "node ($ID2|$ID3|n2|n3) .*(joins with key|another key|rotated its key)" &&
	fail "n1 bound n2 or n3 again (or refused them) after its restart"
for n in n2 n3; do
	[ "$(ctl 1 --json members | jq -r ".[] | select(.name == \"$n\") | .trust")" = "first join" ] ||
		fail "n1's trust of $n after its restart: $(ctl 1 --json members)"
done
ok "a restarted node keeps the re-bound keys (store)"

# 7. n2 rotates again while its health does not change, then n4 joins: n4 binds only n2's
# newest key, so n2 must sign its health record again with it (it is signed once per
# content: before, n4 refused n2's health until it changed)
SHOAL_OPERATOR_KEY= ctl 2 rotate-key >/dev/null || die "second rotate-key on n2"
NEW2B=$(key_of 2)
for i in 1 3; do
	wait_for 20 "n$i to re-bind n2 again" grep -q "roster: node n2 .* rotated its key: ${NEW2B:0:8}" \
		"$WORK/n$i.log"
done
start_agent 4 --quorum web=3
wait_cluster 4
n2_seen_by_n4() { ctl 4 status | awk '/^web per node:/ { f = 1; next } f && $1 == "n2" { ok = 1 } END { exit !ok }'; }
wait_for 30 "n4 to show n2's health" n2_seen_by_n4
grep "health record in the name of node $ID2 refused" "$WORK/n4.log" &&
	fail "n4 refused n2's health record (signed with a key n2 rotated away from)"
ok "after a rotation a node that joins later takes the node's health (re-signed with the new key)"
