#!/usr/bin/env bash
# Integration: an insider holding only the cluster key (tests/integration/forge.c seals its
# own gossip packets) cannot vote in another node's name, forge a rollback certificate,
# take over a node id, forge another node's health or endpoint (what load balancers route
# to); a node key readable by others is refused (agent/base/sign.h).
# 3 agents, quorum 2: two forged votes would be enough to roll back without signatures.
. "$(dirname "$0")/brain_lib.sh"

[ -n "${FORGE:-}" ] && [ -x "$FORGE" ] || { echo "SKIP: forge not built"; exit 77; }

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
# an endpoint (agent/fleet/endpoints.h) for the ep/ forgeries of step 6; no drain wait
EPPORT=$((BASE + 50))
for v in v1 v2; do
	printf '\n[endpoint]\nport = %s\nprotocol = http\ndrain = 0s\n' "$EPPORT" >>"$WORK/art/$v/release.ini"
done
start_cluster 3
for i in 1 2 3; do
	m=$(stat -c %a "$WORK/n$i/node.key" 2>/dev/null) || fail "n$i has no node.key"
	[ "$m" = 600 ] || fail "n$i/node.key has mode $m, want 600"
done
ok "every node made its identity key (mode 600)"
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
ctl 2 deploy web "$V2" --wait --timeout 20s >/dev/null || die "deploy v2"
wait_for 30 "v2 (rev 2) healthy everywhere" all_healthy 2

id_of() { ctl "$1" --json status | jq -r .node_id; }
ID1=$(id_of 1); ID2=$(id_of 2); ID3=$(id_of 3)
SUBJ=$(ctl 3 --json votes web | jq -r .subject)
[ -n "$SUBJ" ] && [ "$SUBJ" != 0 ] && [ "$SUBJ" != null ] || die "no subject for rev 2: $SUBJ"
forge() { "$FORGE" "$WORK/keyring" "$LIB_NAME" "$(addr_of 3)" "$@"; }
no_rev3() { local i; for i in 1 2 3; do [ "$(desired_of "$i")" = 2 ] || return 1; done; }

# 1. votes in the names of n1 and n2 (a quorum of 2 of 3 if they counted)
forge vote "$ID1" web 2 "$SUBJ" 0 || die "forge vote n1"
forge vote "$ID2" web 2 "$SUBJ" 0 || die "forge vote n2"
sleep 6	# more than a resync (5 s): the forged records are replayed too
no_rev3 || fail "forged votes rolled rev 2 back: desired $(desired_of 1) $(desired_of 2) $(desired_of 3)"
c=$(ctl 3 --json votes web | jq -r .counted)
[ "$c" = 0 ] || fail "forged votes counted on n3: $c"
grep -q "in the name of node $ID1 refused" "$WORK/n3.log" ||
	fail "n3 does not say it refused the vote forged in n1's name"
ok "votes forged in the names of n1 and n2 are refused and not counted"

# 2. a rollback record whose certificate has no signatures, then one whose electorate and
# signatures are all of the forger's own keys
forge rollback nosig web 2 "$SUBJ" "$V1" "$V2" "$ID1,$ID2,$ID3" || die "forge rollback nosig"
sleep 2
no_rev3 || fail "an unsigned certificate was accepted"
grep -q "rollback at rev 3 refused: a certificate vote's signature does not verify" \
	"$WORK/n3.log" || fail "n3 does not say it refused the unsigned certificate"
forge rollback forged web 2 "$SUBJ" "$V1" "$V2" "$ID1,$ID2,$ID3" || die "forge rollback forged"
sleep 2
no_rev3 || fail "a certificate signed with the forger's keys was accepted"
n=$(grep -c "rollback at rev 3 refused" "$WORK/n3.log")
[ "$n" -ge 2 ] || fail "n3 refused $n forged rollback(s), want 2"
# two identities of the forger's own, joined first (trust on first join binds them), as the
# whole electorate of a rollback with a made-up subject
forge rollback sybil web 2 "$SUBJ" "$V1" "$V2" "$ID1" || die "forge rollback sybil"
sleep 3
no_rev3 || fail "a certificate of an electorate of the forger's own identities was accepted"
n=$(grep -c "rollback at rev 3 refused" "$WORK/n3.log")
[ "$n" -ge 3 ] || fail "n3 refused $n forged rollback(s), want 3"
ok "rollback certificates with missing or forged signatures, or of a made-up electorate, are refused"

# 3. a roster record in n1's name with another key, saying it left
forge roster "$ID1" || die "forge roster"
sleep 2
# n3 refuses it when its roster refresh (debounced) still finds it; n1, which gets it relayed,
# publishes its own again above it, and that may come first: then n3 never sees it held
grep -q "roster: a roster record in this node's name that it did not write" "$WORK/n1.log" ||
	fail "n1 does not say it publishes its own roster record again over the forged one"
grep -q "roster record for node $ID1 with another key" "$WORK/n3.log" ||
	echo "note: n3 had n1's own roster record again before its roster refresh"
ok "a roster record with another key than the one bound to the id is refused"

# 4. the real thing still works: an operator rollback on n1, echoed by the others (signed
# votes), decides rev 3 with a signed certificate on every node
ctl 1 rollback web --reason "forge test" >/dev/null || die "rollback"
wait_for 30 "rev 3 everywhere" all_run 3
h=$(ctl 2 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":3,"artifact":"'"$V1"'"' || fail "rev 3 does not run v1: $h"
ok "a genuine operator rollback is decided and adopted everywhere (signed votes)"

# 5. a node key readable by others is refused at start, with the fix in the error
kill -TERM "${PID[3]}"
for _ in $(seq 1 100); do kill -0 "${PID[3]}" 2>/dev/null || break; sleep 0.1; done
wait "${PID[3]}" 2>/dev/null
chmod 644 "$WORK/n3/node.key"
start_agent 3
for _ in $(seq 1 100); do kill -0 "${PID[3]}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${PID[3]}" 2>/dev/null && fail "agentd started with a node key of mode 644"
wait "${PID[3]}" 2>/dev/null
PID[3]=""
grep -q "node.key: key file is readable by group or others" "$WORK/n3.log" ||
	fail "agentd does not say why it refused the node key"
chmod 600 "$WORK/n3/node.key"
start_agent 3
wait_for 30 "n3 back" ctl 3 status
ok "a node key readable by others is refused; agentd starts once it is mode 600"

# 6. a health record in n2's name (n2 "runs rev 99 and failed"), signed with the forger's key:
# refused by every node, and the real health of n2 is what they show; n2 publishes its own
# again over the forged copy, so a node that joins afterwards learns the real one
node_health() { # node_health I NAME: "RUNNING HEALTH" of NAME in nI's status (web per node)
	ctl "$1" status | awk -v n="$2" '/^web per node:/ { f = 1; next }
		f && $1 == n { print $3 " " $4; exit }'
}
n2_real() { [ "$(node_health "$1" n2)" = "3 healthy" ]; }
for i in 1 3; do wait_for 20 "n$i to show n2 healthy on rev 3" n2_real "$i"; done
forge health "$ID2" web 99 || die "forge health"
sleep 2
for i in 1 3; do
	grep -q "web: health record in the name of node $ID2 refused: its signature does not verify" \
		"$WORK/n$i.log" || fail "n$i does not say it refused the health record forged in n2's name"
	n2_real "$i" || fail "n$i shows the forged health of n2: $(node_health "$i" n2)"
done
grep -q "web: a health record in this node's name that it did not write" "$WORK/n2.log" ||
	fail "n2 does not say it publishes its own health record again over the forged one"
ok "a health record forged in n2's name is refused by n1 and n3; both still show n2's own"
# the same at version 2^64 - 1: without the version ceiling it would stay the newest copy in
# every gossip table for good (n2 could never publish above it), so n4, joining next, would
# only ever get the forged copy
FORGE_VERSION=max forge health "$ID2" web 98 || die "forge health at the top version"
wait_for 10 "n3 (the forger's target) to refuse the record from the future" grep -q \
	"cluster: refused [0-9]* gossip record(s) (so far) whose version is more than 30 days" \
	"$WORK/n3.log"
ok "a record at version 2^64 - 1 is refused by the gossip layer (over the 30-day ceiling)"
# an endpoint record in n2's name (n2's endpoint "is 6.6.6.6 and draining"), signed with the
# forger's key, then in the older unsigned form: every load balancer would route to it.
# Refused by n1 and n3, whose catalogs keep n2's own; n2 publishes its own again
ep_real() { # ep_real I: n2's endpoint in nI's catalog is its own (127.0.0.1, healthy)
	ctl "$1" --json endpoints web | jq -e --argjson p "$EPPORT" '[.[] | select(.node == "n2" and
		.address == "127.0.0.1" and .port == $p and .state == "healthy")] | length == 1' >/dev/null
}
for i in 1 3; do wait_for 20 "n$i's catalog to show n2's endpoint" ep_real "$i"; done
forge ep rogue "$ID2" web 6.6.6.6 "$EPPORT" || die "forge ep rogue"
sleep 2
for i in 1 3; do
	grep -q "web: endpoint record in the name of node $ID2 refused: its signature does not verify" \
		"$WORK/n$i.log" || fail "n$i does not say it refused the endpoint record forged in n2's name"
	ep_real "$i" || fail "n$i's catalog has the forged endpoint of n2: $(ctl "$i" --json endpoints web)"
done
grep -q "web: an endpoint record in this node's name that it did not write" "$WORK/n2.log" ||
	fail "n2 does not say it publishes its own endpoint record again over the forged one"
forge ep nosig "$ID2" web 6.6.6.6 "$EPPORT" || die "forge ep nosig"
sleep 2
for i in 1 3; do
	grep -q "web: endpoint record in the name of node $ID2 refused: it is not signed" \
		"$WORK/n$i.log" || fail "n$i does not say it refused the unsigned endpoint record in n2's name"
	ep_real "$i" || fail "n$i's catalog has the unsigned endpoint of n2: $(ctl "$i" --json endpoints web)"
done
ok "endpoint records forged in n2's name (a forger's key, unsigned) are refused by n1 and n3; their catalogs keep n2's own"
start_agent 4
wait_for 30 "n4 to learn n2's real health (rev 3, healthy)" n2_real 4
wait_for 30 "n4's catalog to show n2's own endpoint (n2 published it above the forged copy)" ep_real 4
n4_seen() { [ -n "$(node_health "$1" n4)" ]; }
for i in 1 3; do wait_for 20 "n4 in n$i's view of web" n4_seen "$i"; done
ok "a node that joins after the forgeries learns its peers' real health and endpoints (signed, keys bound)"
NODES=4

# 7. a leave in n2's name while n2 is down: a roster record "n2 left" under the forger's key
# (it displaces n2's own in the gossip tables, and n2 is not there to publish its own again)
# and the gossip layer's "n2 left" (unsigned). Neither is n2's signed leave: the next
# deploy's electorate still counts n2 (agree.h rule 0: off only by its own leave or an
# operator's removal)
make_artifact v3 3.0.0 1
make_artifact v4 4.0.0 1
V3=$(ctl 3 artifact import "$WORK/art/v3") || die "import v3 on n3"
V4=$(ctl 3 artifact import "$WORK/art/v4") || die "import v4 on n3"
R4=$(ctl 3 --json deploy web "$V3" | jq -r .rev)
[ -n "$R4" ] && [ "$R4" != null ] || die "deploy v3 on n3"
E4=$(ctl 3 --json votes web --rev "$R4" | jq -r .eligible)
kill -KILL "${PID[2]}"
wait "${PID[2]}" 2>/dev/null
PID[2]=
forge roster "$ID2" || die "forge roster n2"
forge leave "$ID2" || die "forge leave n2"
n2_left() { ctl 3 --json members | jq -e '.[] | select(.name == "n2") | .state == "left"' >/dev/null; }
wait_for 10 "n3's gossip layer to take the forged leave of n2" n2_left
sleep 1
grep -q "roster record for node $ID2 with another key" "$WORK/n3.log" ||
	fail "n3 does not say it refused the roster record with n2's id and another key"
R5=$(ctl 3 --json deploy web "$V4" | jq -r .rev)
[ -n "$R5" ] && [ "$R5" != null ] || die "deploy v4 on n3"
e=$(ctl 3 --json votes web --rev "$R5" | jq -r .eligible)
# n1-n4 and the two identities the sybil forgery joined (step 2)
[ "$e" = "$E4" ] ||
	fail "rev $R5's electorate has $e nodes after a forged leave of n2, rev $R4's had $E4"
echo "electorate before and after the forged leave of n2: $E4, $e"
ok "a leave forged in n2's name (roster record under another key, gossip leave) does not take n2 off the next electorate"

# 8. removals (sign.h SIGN_OP_REMOVE): remove records of n4 written without an operator
# signature, and signed with an operator key of the forger's own, are refused by every node
# and n4 stays on the roster; agentctl members remove without a key says how to make one,
# with an untrusted key it is refused; signed with the trusted key it is applied everywhere
ID4=$(id_of 4)
make_artifact v5 5.0.0 1
make_artifact v6 6.0.0 1
V5=$(ctl 3 artifact import "$WORK/art/v5") || die "import v5 on n3"
V6=$(ctl 3 artifact import "$WORK/art/v6") || die "import v6 on n3"
forge remove nosig "$ID4" "forged removal" || die "forge remove nosig"
forge remove rogue "$ID4" "forged removal" || die "forge remove rogue"
sleep 2
for i in 1 3 4; do
	grep -q "roster: a removal of node n4 ($ID4) written by [0-9a-f]* refused: it carries no operator signature" \
		"$WORK/n$i.log" || fail "n$i does not say it refused the unsigned removal of n4"
	grep -q "roster: a removal of node n4 ($ID4) written by [0-9a-f]* refused: its operator key is not trusted here" \
		"$WORK/n$i.log" || fail "n$i does not say it refused the removal of n4 signed by an untrusted key"
done
"$AGENTCTL" keygen "$WORK/rogue.key" >/dev/null || die "keygen rogue"
out=$(SHOAL_OPERATOR_KEY= ctl 1 members remove n4 --reason "no key" 2>&1) &&
	fail "members remove without an operator key was accepted: $out"
echo "$out" | grep -q "agentctl keygen FILE" || fail "members remove without a key does not say how: $out"
out=$(ctl 1 members remove n4 --reason "rogue key" --key "$WORK/rogue.key" 2>&1) &&
	fail "members remove signed by an untrusted key was accepted: $out"
echo "$out" | grep -q "does not trust that key" || fail "members remove with an untrusted key: $out"
R6=$(ctl 3 --json deploy web "$V5" | jq -r .rev)
[ -n "$R6" ] && [ "$R6" != null ] || die "deploy v5 on n3"
e=$(ctl 3 --json votes web --rev "$R6" | jq -r .eligible)
[ "$e" = "$E4" ] || fail "rev $R6's electorate has $e nodes after refused removals of n4, want $E4"
ok "removals of n4 unsigned, or signed by an untrusted operator key, are refused by every node (electorate $e)"

ctl 1 members remove "${ID4:0:8}" --reason "decommissioned" >/dev/null || die "members remove n4"
grep -q "roster: node n4 ($ID4) removed by uid $(id -u) pid [0-9]*: decommissioned" "$WORK/n1.log" ||
	fail "the removal of n4 is not in n1's log"
sleep 2
R7=$(ctl 3 --json deploy web "$V6" | jq -r .rev)
[ -n "$R7" ] && [ "$R7" != null ] || die "deploy v6 on n3"
e=$(ctl 3 --json votes web --rev "$R7" | jq -r .eligible)
[ "$e" = $((E4 - 1)) ] || fail "rev $R7's electorate has $e nodes after the signed removal of n4, want $((E4 - 1))"
for i in 1 3 4; do
	grep -q "a removal of node n4 ($ID4) written by n1 refused" "$WORK/n$i.log" &&
		fail "n$i refused the signed removal of n4"
done
ok "a removal signed with a trusted operator key is applied (electorate $e)"

# 9. a removal stands while the operator key that signed it is trusted: n3 stops trusting it
# (SIGHUP) and refuses the removal of n4 at its next roster refresh; trusted again, n3 applies
# it again and its next deploy's electorate lacks n4
mv "$WORK/operators/test.pub" "$WORK/test.pub.off"
kill -HUP "${PID[3]}"
wait_for 10 "n3 reloaded" grep -q "operators: 0 operator key(s) trusted" "$WORK/n3.log"
wait_for 20 "n3 to refuse the removal signed by the key it no longer trusts" grep -q \
	"a removal of node n4 ($ID4) written by n1 refused: its operator key is not trusted here" \
	"$WORK/n3.log"
mv "$WORK/test.pub.off" "$WORK/operators/test.pub"
kill -HUP "${PID[3]}"
wait_for 10 "n3 reloaded again" grep -q "operators: 1 operator key(s) trusted" "$WORK/n3.log"
make_artifact v7 7.0.0 1
V7=$(ctl 3 artifact import "$WORK/art/v7") || die "import v7 on n3"
R8=$(ctl 3 --json deploy web "$V7" | jq -r .rev)
[ -n "$R8" ] && [ "$R8" != null ] || die "deploy v7 on n3"
e=$(ctl 3 --json votes web --rev "$R8" | jq -r .eligible)
[ "$e" = $((E4 - 1)) ] || fail "rev $R8's electorate has $e nodes once the key is trusted again, want $((E4 - 1))"
ok "a removal is refused while its operator key is not trusted, applied again once it is"
