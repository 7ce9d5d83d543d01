#!/usr/bin/env bash
# tests/integration/fetch_deploy.sh: the brain's deploy path fetches what a node lacks.
# An artifact (4 MiB of random data on top of the example service) is imported on n1 only and
# deployed from n1: every other node learns the revision by gossip, finds the artifact missing,
# fetches it from a peer (fleet opts need_artifact -> agent/cluster/fetch.c), and runs it.
# Then a second revision, for site east only (n1 is west: it keeps the revision but does not
# fetch the artifact), deployed from n3 while n2 is down; n3, its only holder, stops; n2 (east)
# comes back (with SHOAL_RETRY_MS=4000: back-off 4 s, 8 s, 16 s) and its swap fails for want
# of the artifact; when the artifact lands ~13 s later (n3 back, an operator fetch on n2), n2
# swaps at once, not at the end of its back-off (fetch_set_arrived -> brain_artifact_arrived).
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

# ---- a swap waiting in back-off goes on as soon as its artifact lands -------------------------
for i in 1 2; do kill -TERM "${PID[$i]}"; wait "${PID[$i]}" 2>/dev/null; done
start_agent 1 --label site=west	# keeps the records, does not want the east revision
wait_for 20 "n1 to see n3 again" sees_alive 1 2
make_artifact a2 2.0 1
ID2=$(ctl 3 artifact import "$WORK/art/a2") || die "import a2 on n3"
ctl 3 deploy web "$ID2" --scope site:east >/dev/null || die "deploy a2 on n3"
knows_rev2() { ctl 1 history web | awk '$1 == 2 { f = 1 } END { exit !f }'; }
wait_for 20 "n1 to learn rev 2" knows_rev2
kill -TERM "${PID[3]}"; wait "${PID[3]}" 2>/dev/null
SHOAL_RETRY_MS=4000 start_agent 2 --label site=east	# nobody alive holds rev 2's artifact
desires() { [ "$(ctl "$1" --json services | jq '.[] | select(.service == "web") | .desired_rev')" = "$2" ]; }
wait_for 20 "n2 to desire rev 2" desires 2 2
t_desired=$SECONDS
while [ $((SECONDS - t_desired)) -lt 13 ]; do sleep 0.5; done
has_artifact 2 "$ID2" && die "n2 holds the artifact before its holder came back"
start_agent 3
wait_for 15 "n3 to answer again" ctl 3 ping
ctl 2 --timeout 30s artifact fetch "$ID2" --from "$(addr_of 3)" >/dev/null || die "fetch a2 on n2"
t_arrived=$SECONDS
runs_rev() { [ "$(ctl "$1" --json services | jq '.[] | select(.service == "web") | .running_rev')" = "$2" ]; }
wait_for 30 "n2 to run rev 2" runs_rev 2 2
late=$((SECONDS - t_arrived))
[ "$late" -le 3 ] || die "n2 swapped ${late}s after the artifact landed (waited out its back-off)"
ok "n2 swapped ${late}s after the artifact landed, $((t_arrived - t_desired))s after it desired it"
