#!/usr/bin/env bash
# Integration: enrolment (agent/base/sign.h, require-enrolment). 5 agents, all with
# --require-enrolment. n1..n3 are enrolled by the team operator key (agentctl enrol, run
# against each node): they trust each other and form the electorate. n4 is never enrolled:
# every node refuses its roster record ("not enrolled" in members, the log and the events), so
# it is in no electorate and its votes are not counted. n5 is enrolled with a rogue operator
# key that only n5 itself trusts: the others refuse its enrolment. A bad release deployed to
# all five is then rolled back by the votes of n1..n3 alone. n3 rotates its key with an
# enrolment of the new one (n2 cannot rotate without one). n6, without require-enrolment,
# binds n4 on first join but still refuses n5's enrolment.
. "$(dirname "$0")/brain_lib.sh"

# the option: a switch, a file key, and a bad value refused by --check-config
mkdir -p "$WORK/cc"
cc() { "$AGENTD" --check-config --state-dir "$WORK/cc" --socket "$WORK/cc/s" --socket-group "" "$@"; }
cc --config /dev/null --require-enrolment >/dev/null 2>&1 || fail "--require-enrolment refused"
printf 'require-enrolment = true\n' >"$WORK/cc/a.conf"
cc --config "$WORK/cc/a.conf" >/dev/null 2>&1 || fail "require-enrolment = true refused"
printf 'require-enrolment = maybe\n' >"$WORK/cc/b.conf"
out=$(cc --config "$WORK/cc/b.conf" 2>&1) && fail "require-enrolment = maybe accepted"
echo "$out" | grep -q "must be true or false" || fail "bad require-enrolment: $out"
ok "require-enrolment: a switch, a file key, a bad value refused by --check-config"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 0
"$AGENTCTL" keygen "$WORK/rogue.key" >/dev/null || die "keygen rogue"
mkdir -p "$WORK/ops5"
cp "$WORK/operator.key.pub" "$WORK/ops5/team.pub"
cp "$WORK/rogue.key.pub" "$WORK/ops5/rogue.pub"	# only n5 trusts the rogue key
OPDIR[5]=$WORK/ops5

trust_of() { # trust_of I NAME: how node I trusts member NAME
	ctl "$1" --json members 2>/dev/null | jq -r ".[] | select(.name == \"$2\") | .trust"
}
trusts() { [ "$(trust_of "$1" "$2")" = "$3" ]; }

start_cluster 3 --require-enrolment
wait_for 20 "n1 to refuse n2 (not enrolled yet)" trusts 1 n2 "not enrolled"
for i in 1 2 3; do
	out=$(ctl "$i" enrol) || die "enrol n$i: $out"
	echo "$out" | grep -q "enrolled: key" || fail "enrol n$i says: $out"
done
for i in 1 2 3; do
	for j in 1 2 3; do wait_for 20 "n$i to trust n$j" trusts "$i" "n$j" enrolled; done
done
[ -f "$WORK/n2/node.enrol" ] || fail "n2 did not keep its enrolment in its state directory"
ctl 2 identity | grep -q "^Enrolled by: $(tail -c 65 "$WORK/operator.key.pub" | head -c 64)" ||
	fail "agentctl identity on n2: $(ctl 2 identity)"
ok "require-enrolment: a node is trusted once an operator enrolled it (agentctl enrol)"

# an operator key the node does not trust: the agent refuses the enrolment itself
out=$(ctl 1 enrol --key "$WORK/rogue.key" 2>&1) && fail "n1 took an enrolment of an untrusted key"
echo "$out" | grep -q "does not trust operator key" || fail "n1's refusal: $out"

# n4: never enrolled
start_agent 4 --require-enrolment
wait_for 30 "n1 to see n4 alive" sees_alive 1 4
for i in 1 2 3; do wait_for 20 "n$i to refuse n4" trusts "$i" n4 "not enrolled"; done
grep -q "roster record of node n4 .* refused: it is not enrolled" "$WORK/n1.log" ||
	fail "n1's log does not say why n4 is refused"
ctl 1 events | grep -q "n4 .* not enrolled" || fail "n1's events do not show n4 as not enrolled"
ok "an unenrolled node is refused by every node that requires enrolment (members, log, events)"

# n5: enrolled with a key only n5 trusts
start_agent 5 --require-enrolment
wait_for 30 "n1 to see n5 alive" sees_alive 1 5
out=$(ctl 5 enrol --key "$WORK/rogue.key") || die "enrol n5 with the rogue key: $out"
for i in 1 2 3; do wait_for 20 "n$i to refuse n5's enrolment" trusts "$i" n5 "enrolment refused"; done
grep -q "roster record of node n5 .* refused: its enrolment is signed by an operator key this node does not trust" \
	"$WORK/n2.log" || fail "n2's log does not say why n5 is refused"
ok "an enrolment signed by an untrusted operator key is refused"

NODES=5
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
wait_for 30 "v1 healthy everywhere" all_healthy 1
v=$(ctl 2 --json votes web --rev 1 | tr -d ' \n')
echo "$v" | grep -q '"eligible":3,"quorum":2' || fail "rev 1's electorate is not n1..n3: $v"
ok "a deploy's electorate is the 3 enrolled nodes (not n4, not n5)"

# v2 fails its check on all five: n1..n3 decide the rollback; n4's and n5's votes do not count
ctl 1 deploy web "$V2" >/dev/null || die "deploy v2"
wait_for 60 "rev 3 (the rollback) on n1..n3" bash -c \
	"for i in 1 2 3; do \"$AGENTCTL\" --socket \"$WORK/n\$i.sock\" --json services | tr -d ' \n' | grep -q '\"running_rev\":3,' || exit 1; done"
for i in 1 2 3; do
	v=$(ctl "$i" --json votes web --rev 2)
	[ "$(echo "$v" | jq -r .decided)" = true ] || fail "rev 2 undecided on n$i: $v"
	n=$(echo "$v" | jq '[.votes[] | select((.name == "n4" or .name == "n5") and .counted)] | length')
	[ "$n" = 0 ] || fail "n$i counted a vote of n4 or n5: $v"
	n=$(echo "$v" | jq '[.votes[] | select(.counted)] | length')
	[ "$n" -ge 2 ] || fail "n$i counted $n votes of enrolled nodes: $v"
done
ok "the enrolled nodes' votes decide the rollback; the unenrolled ones' are not counted"

# rotation under require-enrolment: the new key needs its own enrolment
out=$(SHOAL_OPERATOR_KEY= ctl 2 rotate-key 2>&1) && fail "n2 rotated without enrolling its new key"
echo "$out" | grep -q "enrolment of this node.s new key" || fail "rotate-key without a key says: $out"
out=$(ctl 3 rotate-key) || die "rotate-key on n3: $out"
echo "$out" | grep -q "; enrolled" || fail "rotate-key on n3 says: $out"
NEW3=$(ctl 3 --json identity | jq -r .key)
for i in 1 2; do
	wait_for 20 "n$i to re-bind n3" grep -q \
		"roster: node n3 .* rotated its key: ${NEW3:0:8}.*(the new key is enrolled)" "$WORK/n$i.log"
	wait_for 20 "n$i to trust n3" trusts "$i" n3 enrolled
done
ok "rotate-key under require-enrolment enrols the new key in the same step; without a key it is refused"

# n6 does not require enrolment (trust on first join): it binds n4 on first join, but the
# enrolment n5 carries is still checked, and refused
start_agent 6
wait_for 30 "n6 to see 6 alive" sees_alive 6 6
wait_for 20 "n6 to trust n1 (enrolled)" trusts 6 n1 enrolled
wait_for 20 "n6 to bind n4 on first join" trusts 6 n4 "first join"
wait_for 20 "n6 to refuse n5's enrolment" trusts 6 n5 "enrolment refused"
ok "without require-enrolment: trust on first join, but a carried enrolment is still checked"
