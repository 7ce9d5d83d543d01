#!/usr/bin/env bash
# tests/integration/fetch_op.sh: `agentctl artifact fetch` between real agentd processes.
#  - an artifact (6 MiB of random data: multi-chunk) imported on n1 only;
#  - n2 fetches it from n1's address (--from): same files, blob for blob; it can be shown and
#    deployed-from locally afterwards; a second fetch says it is present at once;
#  - n3 fetches it with no --from (every live member is a candidate; n2 and n1 hold it);
#  - fetching an id nobody holds fails with not_found (exit 1), and n3's store is unchanged;
#  - a bad id is a usage error of the agent (bad_request);
#  - a failed fetch (from an address nobody listens on: ~20 polls of one failing transfer) is
#    not handed to a later request: the next fetch on n3, from n1, succeeds;
#  - `agentctl deploy` on a node lacking the artifact: with a prefix, not_found and a hint;
#    with the full id, agentctl fetches it from a peer first and deploys (n4, joined late);
#    a full id nobody holds: the fetch's not_found, and no revision.
. "$(dirname "$0")/fetch_lib.sh"

start_cluster 3
make_artifact a1 1.0 6
ID=$(ctl 1 artifact import "$WORK/art/a1") || die "import on n1"
ok "imported $ID on n1 only"
has_artifact 2 "$ID" && die "n2 holds it before the fetch"

out=$(ctl 2 --timeout 60s artifact fetch "$ID" --from "$(addr_of 1)") || die "fetch on n2: $out"
[ "$out" = "$ID" ] || die "fetch printed '$out', expected $ID"
has_artifact 2 "$ID" || die "n2 does not hold it after the fetch"
same_artifact 1 2 "$ID" || die "n2's copy differs: $(files_of 2 "$ID") vs $(files_of 1 "$ID")"
ok "n2 fetched it from n1: identical files"
st=$(ctl 2 --json artifact fetch "$ID" --from "$(addr_of 1)" | jq -r .state)
[ "$st" = present ] || die "second fetch state '$st', expected present"

ctl 3 --timeout 60s artifact fetch "$ID" >/dev/null || die "fetch on n3 from any member"
same_artifact 1 3 "$ID" || die "n3's copy differs"
ok "n3 fetched it with no --from"

NOPE=$(printf '%064d' 7)
if err=$(ctl 3 --timeout 30s artifact fetch "$NOPE" 2>&1); then
	die "fetching an unknown id succeeded: $err"
fi
echo "$err" | grep -q "not_found" || die "unknown id: '$err', expected not_found"
has_artifact 3 "$NOPE" && die "n3 holds the unknown id"
n=$(ctl 3 --json artifact list | jq length)
[ "$n" = 1 ] || die "n3 holds $n artifacts, expected 1"
ok "unknown id: not_found"

make_artifact a2 2.0 1
ID2=$(ctl 1 artifact import "$WORK/art/a2") || die "import a2 on n1"
DEAD=127.0.0.1:$((BASE + 9)) # nobody listens there (pick_base checked)
if err=$(ctl 3 --timeout 30s artifact fetch "$ID2" --from "$DEAD" 2>&1); then
	die "fetch from a dead address succeeded: $err"
fi
ok "fetch from a dead address failed: $err"
out=$(ctl 3 --timeout 60s artifact fetch "$ID2" --from "$(addr_of 1)" 2>&1) ||
	die "a later fetch got an earlier request's failure: $out"
same_artifact 1 3 "$ID2" || die "n3's copy of a2 differs"
ok "a later request starts its own transfer"

if err=$(ctl 3 artifact fetch 1234 2>&1); then die "a short id was accepted"; fi
echo "$err" | grep -q "bad_request" || die "short id: '$err'"
ok "bad id: bad_request"

start_agent 4
wait_for 30 "n4 to see 4 alive members" sees_alive 4 4
if err=$(ctl 4 deploy web "${ID:0:12}" 2>&1); then die "deploy by a prefix n4 lacks succeeded"; fi
echo "$err" | grep -q "give its full id" || die "deploy by prefix: '$err', expected the hint"
if err=$(ctl 4 --timeout 30s deploy web "$NOPE" 2>&1); then die "deploy of an unknown id succeeded"; fi
echo "$err" | grep -q "no peer holds" || die "deploy of an unknown id: '$err'"
out=$(ctl 4 --timeout 60s deploy web "$ID" --wait 2>&1) || die "deploy by full id on n4: $out"
echo "$out" | grep -q "fetching it from peers" || die "deploy on n4 did not say it fetched: $out"
same_artifact 1 4 "$ID" || die "n4's copy differs"
[ "$(ctl 1 history web | awk 'NR > 1' | wc -l)" = 1 ] || die "history on n1: $(ctl 1 history web)"
ok "deploy by full id on a node lacking the artifact fetched it, then deployed rev 1"
