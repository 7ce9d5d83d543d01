#!/usr/bin/env bash
# tests/integration/fetch_deploy.sh: the brain's deploy path fetches what a node lacks.
# An artifact (4 MiB of random data on top of the example service) is imported on n1 only and
# deployed from n1: every other node learns the revision by gossip, finds the artifact missing,
# fetches it from a peer (brain_need_artifact -> agent/fetch.c), and runs it.
. "$(dirname "$0")/fetch_lib.sh"

start_cluster 3
make_artifact a1 1.0 4
ID=$(ctl 1 artifact import "$WORK/art/a1") || die "import on n1"
ok "imported $ID on n1 only"
ctl 1 deploy web "$ID" >/dev/null || die "deploy on n1"
for i in 2 3; do
	wait_for 60 "n$i to receive the artifact" has_artifact "$i" "$ID"
	same_artifact 1 "$i" "$ID" || die "n$i's copy differs"
done
ok "n2 and n3 fetched it from a peer"
runs() { ctl "$1" --json services | jq -e --arg id "$ID" \
	'.[] | select(.service == "web") | select(.running_rev != null and .running_rev > 0)' ; }
for i in 1 2 3; do wait_for 60 "n$i to run web" runs "$i"; done
grep -q "fetch: artifact ${ID:0:12} received from a peer" "$WORK/n2.log" ||
	die "n2's log does not say it fetched the artifact"
ok "all three run the deployed revision"
