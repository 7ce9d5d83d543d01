#!/usr/bin/env bash
# Integration: operator-signed changes (agent/base/sign.h). 3 agents, each with its own
# operators directory: a deploy without a signature is refused (agentctl and the log say how
# to make a key); a signed one runs everywhere; a deploy signed by a key only n1 trusts is
# written by n1 and refused by n2 and n3 (the receivers check the record, not only the node
# asked); an operator vote whose key n2 does not trust is not echoed there; a key removed from
# a node's directory stops working after SIGHUP.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
make_artifact v3 3.0.0 1
"$AGENTCTL" keygen "$WORK/rogue.key" >/dev/null || die "keygen rogue"
for i in 1 2 3; do
	mkdir -p "$WORK/ops$i"
	cp "$WORK/operator.key.pub" "$WORK/ops$i/team.pub"
	OPDIR[$i]=$WORK/ops$i
done
cp "$WORK/rogue.key.pub" "$WORK/ops1/rogue.pub"	# only n1 trusts the rogue key
start_cluster 3
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID

# 1. unsigned: refused with words, in agentctl and in the log
out=$(SHOAL_OPERATOR_KEY= ctl 1 deploy web "$V1" 2>&1) && fail "an unsigned deploy was accepted"
echo "$out" | grep -q "agentctl keygen FILE" || fail "agentctl does not say how to get a key: $out"
out=$("$AGENTCTL" --socket "$WORK/n1.sock" --json deploy web "$V1" --key /nonexistent 2>&1) &&
	fail "a deploy with a missing key file was accepted"
ok "a deploy without a usable key fails and says how to make one"

# 2. signed by the team key: everywhere
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "signed deploy v1"
wait_for 30 "v1 (rev 1) everywhere" all_run 1
ok "a deploy signed by a trusted operator key runs on every node"

# 3. signed by a key only n1 trusts: n1 writes it, n2 and n3 refuse the record
ctl 1 deploy web "$V2" --key "$WORK/rogue.key" >/dev/null || die "rogue deploy on n1"
wait_for 20 "n1 desires rev 2" test "$(desired_of 1)" = 2
for i in 2 3; do
	wait_for 20 "n$i refuses rev 2" grep -q \
		"deploy at rev 2 refused: it carries no valid signature of a trusted operator key" \
		"$WORK/n$i.log"
	[ "$(desired_of "$i")" = 1 ] || fail "n$i desires rev $(desired_of "$i") after the rogue deploy"
done
ok "a deploy signed by an untrusted key is refused by every node that does not trust it"

# the team key takes over again: a new deploy (rev 2 again on n2, n3; it wins over n1's by
# its later clock) runs everywhere
ctl 2 deploy web "$V3" --wait --timeout 20s >/dev/null || die "signed deploy v3"
wait_for 30 "v3 everywhere" bash -c "for i in 1 2 3; do \"$AGENTCTL\" --socket \"$WORK/n\$i.sock\" --json services | tr -d ' \n' | grep -q '\"running_rev\":2,' || exit 1; done"
h=$(ctl 1 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":2,"artifact":"'"$V3"'"' || fail "rev 2 on n1 is not v3: $h"
ok "the signed deploy wins over the refused one on n1 too"

# 4. an operator rollback signed by the rogue key on n1: n2 and n3 do not echo it
ctl 1 rollback web --key "$WORK/rogue.key" >/dev/null || die "rogue rollback vote on n1"
for i in 2 3; do
	wait_for 20 "n$i does not echo" grep -q "operator vote of node .* not echoed" "$WORK/n$i.log"
done
sleep 1
[ "$(desired_of 2)" = 2 ] || fail "a rollback voted with an untrusted key was decided"
ok "an operator vote signed by an untrusted key is not echoed"

# 5. the team key removed from n2's directory: after SIGHUP, n2 refuses what it signs
rm -f "$WORK/ops2/team.pub"
kill -HUP "${PID[2]}"
wait_for 10 "n2 reloaded" grep -q "operators: 0 operator key(s) trusted" "$WORK/n2.log"
out=$(ctl 2 deploy web "$V1" 2>&1) && fail "n2 accepted a deploy signed by a removed key"
echo "$out" | grep -q "permission_denied" || fail "n2's refusal: $out"
ctl 3 deploy web "$V1" >/dev/null || die "deploy on n3"
wait_for 20 "n2 refuses n3's deploy" grep -q \
	"deploy at rev 3 refused: it carries no valid signature of a trusted operator key" \
	"$WORK/n2.log"
[ "$(desired_of 2)" = 2 ] || fail "n2 follows a deploy signed by a key it no longer trusts"
ok "an operator key removed from the directory stops working after SIGHUP"
