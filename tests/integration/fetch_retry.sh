#!/usr/bin/env bash
# tests/integration/fetch_retry.sh: a stalled fetch does not stay stalled.
# n1 imports a 48 MiB artifact and deploys it, and is killed (-9) while n2 and n3 fetch it:
# the only holder is gone for 40 s. n2 runs with a short fetch back-off (200 ms .. 2 s) and
# must still be retrying after more than 10 attempts (it once gave up after 10); n3 runs with
# a long back-off (30 s, then 60 s, +-25 %: its next attempt after n1's return would come at
# least ~25 s later) and must fetch within a few seconds of n1's return, because a holder
# coming back alive triggers a retry at once. Both then run the revision.
. "$(dirname "$0")/fetch_lib.sh"

new_keyring
start_agent 1
SHOAL_FETCH_RETRY_MS=200 SHOAL_FETCH_RETRY_MAX_MS=2000 start_agent 2
SHOAL_FETCH_RETRY_MS=30000 SHOAL_FETCH_RETRY_MAX_MS=60000 start_agent 3
wait_cluster 3
make_artifact a1 1.0 48
ID=$(ctl 1 --timeout 120s artifact import "$WORK/art/a1") || die "import on n1"
ok "imported $ID (48 MiB) on n1 only"
ctl 1 deploy web "$ID" >/dev/null || die "deploy on n1"
kill -KILL "${PID[1]}"; wait "${PID[1]}" 2>/dev/null; PID[1]=
for i in 2 3; do has_artifact "$i" "$ID" && die "n$i got the whole artifact before n1 died (inconclusive)"; done
grep -q "fetching artifact ${ID:0:12}" "$WORK/n2.log" "$WORK/n3.log" ||
	ok "(the deploy had not reached the fetch yet when n1 died)"
ok "n1 killed during the transfers"

t_down=$SECONDS
while [ $((SECONDS - t_down)) -lt 40 ]; do sleep 1; done
for i in 2 3; do has_artifact "$i" "$ID" && die "n$i holds the artifact while its only holder is down"; done
last=$(grep -o "fetch: artifact ${ID:0:12}: [^(]*(attempt [0-9]*" "$WORK/n2.log" | tail -n 1 |
	sed 's/.*attempt //')
[ "${last:-0}" -gt 10 ] || die "n2 made ${last:-0} attempts in 40 s (want > 10: it must not give up)"
ok "n2 still retrying after $last attempts"

start_agent 1
wait_for 20 "n1 to answer again" ctl 1 ping
t_up=$SECONDS
wait_for 15 "n3 to fetch the artifact once n1 is back" has_artifact 3 "$ID"
late=$((SECONDS - t_up))
wait_for 15 "n2 to fetch the artifact once n1 is back" has_artifact 2 "$ID"
same_artifact 1 3 "$ID" || die "n3's copy differs"
ok "n3 fetched it ${late}s after n1 answered (its back-off alone: >= ~25 s)"
[ "$late" -le 15 ] || die "n3 waited ${late}s: the holder's return did not trigger a retry"
runs_rev() { [ "$(ctl "$1" --json services | jq '.[] | select(.service == "web") | .running_rev')" = "$2" ]; }
for i in 2 3; do wait_for 30 "n$i to run rev 1" runs_rev "$i" 1; done
ok "n2 and n3 run the deployed revision"
