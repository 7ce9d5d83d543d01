#!/usr/bin/env bash
# Integration: --scope site:NAME. 4 agents, n1 n2 in site east, n3 n4 in site west. A deploy
# scoped to east (made from a west node) runs on east only; a rollback scoped to east is
# decided by east's voters alone (quorum inside the site) and leaves west untouched.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
new_keyring
for i in 1 2 3 4; do
	site=east; [ "$i" -gt 2 ] && site=west
	start_agent "$i" --label "site=$site"
done
wait_cluster 4
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" >/dev/null || die "deploy v1"
wait_for 30 "rev 1 everywhere" all_run 1
ctl 3 deploy web "$V2" --scope site:east >/dev/null || die "deploy --scope site:east"
east_on() { runs 1 "$1" && runs 2 "$1"; }
wait_for 30 "east on rev 2" east_on 2
sleep 1
runs 3 1 && runs 4 1 || fail "west moved with an east-only revision: $(running_of 3) $(running_of 4)"
ok "a deploy scoped to site:east runs on east only"

# asked on a west node: its own vote does not count (not in the scope), but east's nodes echo
# an operator's vote against the revision they run, and decide among themselves
out=$(ctl 3 rollback web --scope site:east --reason "from the west" 2>&1) ||
	die "rollback --scope site:east on n3: $out"
wait_for 30 "east on rev 3" east_on 3
runs 3 1 && runs 4 1 || fail "west moved with east's rollback"
q=$(ctl 2 votes web --rev 2)
echo "$q" | grep -q "of 2, quorum 2" || fail "east's quorum is not counted inside the site: $q"
h=$(ctl 4 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":3,"artifact":"'"$V1"'"[^}]*"kind":"rollback","scope":"site:east"' ||
	fail "rev 3 is not east's rollback to v1: $h"
ok "rollback --scope site:east asked from the west, decided by east's 2 voters; west untouched"
exit 0
