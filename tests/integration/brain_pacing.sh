#!/usr/bin/env bash
# Integration: pacing per failure domain. 4 agents of one site with
# --max-parallel-swaps-per-site 1: a deploy reaches every node, but the nodes swap one after
# the other (some report "paced"), and all end on the new revision. Best effort by design
# (agent/fleet/fleet.h): the overlap of swaps is measured and printed, and must stay at 1 here,
# where nothing is partitioned.
. "$(dirname "$0")/brain_lib.sh"

make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 1
start_cluster 4 --label site=east --max-parallel-swaps-per-site 1
import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" >/dev/null || die "deploy v1"
wait_for 60 "rev 1 everywhere" all_run 1
ok "rev 1 reached every node"
: >"$WORK/ev"
for i in 1 2 3 4; do ctl "$i" events | awk -v me="n$i" '$2 == me' >>"$WORK/ev"; done
paced=$(grep -c " paced " "$WORK/ev")
[ "$paced" -ge 1 ] || fail "no node was paced: $(cat "$WORK/ev")"
# overlap: walk the swap-start/swap-done events in time order
max=$(sort -s -k1,1 "$WORK/ev" | awk '$3 == "swap-start" { n++; if (n > m) m = n }
	$3 == "swap-done" { if (n > 0) n-- } END { print m + 0 }')
echo "swaps in flight at once: at most $max; paced refusals: $paced"
[ "$max" -le 1 ] || fail "$max swaps overlapped with max-parallel-swaps-per-site 1"
ok "nodes of site east swapped one at a time"
exit 0
