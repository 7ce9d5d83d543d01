#!/usr/bin/env bash
# tests/integration/fetch_outsider.sh: an outsider cannot stall artifact distribution.
# n1 holds two artifacts of 100 MiB (random data). n2 fetches the first one from n1 with
# nobody else around (the unattacked time), then the second one while an outsider without the
# key (tests/integration/outsider) holds 4 idle TCP connections to n1's gossip port from each
# of 8 source addresses (127.0.0.2 .. 127.0.0.9), re-opening each as soon as n1 cuts it. The
# fetch must succeed; both times are printed side by side. (Before gossip/transport.h's
# "Unproven connections", those connections took all 8 inbound slots for 10 s each and every
# fetch from n1 failed within ~1.5 s.)
. "$(dirname "$0")/fetch_lib.sh"

OUTSIDER=${SHOAL_BUILD_DIR:-}/tests/integration/outsider
[ -x "$OUTSIDER" ] || { echo "SKIP: outsider not built at $OUTSIDER"; exit 77; }
lo=$(ip addr show lo 2>/dev/null) # (not piped into grep -q: pipefail and SIGPIPE)
[[ $lo == *"127.0.0.1/8"* ]] ||
	{ echo "SKIP: lo does not carry 127.0.0.0/8 (source addresses 127.0.0.2.. needed)"; exit 77; }

start_cluster 2
make_artifact a1 1.0 100
make_artifact a2 2.0 100
ID1=$(ctl 1 --timeout 300s artifact import "$WORK/art/a1") || die "import a1 on n1"
ID2=$(ctl 1 --timeout 300s artifact import "$WORK/art/a2") || die "import a2 on n1"
ok "n1 holds two 100 MiB artifacts"

now_ms() { date +%s%3N; }
t0=$(now_ms)
ctl 2 --timeout 300s artifact fetch "$ID1" --from "$(addr_of 1)" >/dev/null || die "unattacked fetch"
t_plain=$(( $(now_ms) - t0 ))
same_artifact 1 2 "$ID1" || die "n2's copy of a1 differs"
ok "unattacked fetch of 100 MiB: ${t_plain} ms"

"$OUTSIDER" "$(addr_of 1)" 8 4 $(( t_plain * 4 / 1000 + 60 )) >"$WORK/outsider.out" 2>&1 &
OPID=$!
sleep 1.5 # the outsider's connections are in place (and the first ones already cut)
t0=$(now_ms)
out=$(ctl 2 --timeout 300s artifact fetch "$ID2" --from "$(addr_of 1)" 2>&1)
rc=$?
t_attacked=$(( $(now_ms) - t0 ))
kill -TERM "$OPID" 2>/dev/null; wait "$OPID" 2>/dev/null
[ $rc = 0 ] || die "the fetch failed while the outsider held connections: $out"
same_artifact 1 2 "$ID2" || die "n2's copy of a2 differs"
ok "attacked fetch of 100 MiB: ${t_attacked} ms (unattacked: ${t_plain} ms)"
# the outsider was really there, and n1 kept cutting its connections
cat "$WORK/outsider.out"
cut=$(sed -n 's/.* \([0-9]*\) cut by the server.*/\1/p' "$WORK/outsider.out")
[ "${cut:-0}" -ge 32 ] || die "n1 cut only ${cut:-0} of the outsider's connections"
ok "n1 cut $cut idle outsider connections meanwhile"
ctl 1 ping >/dev/null || die "n1 does not answer"
ok "UDP gossip and the control socket kept working"
echo "RESULT fetch_outsider: 100 MiB unattacked ${t_plain} ms, attacked ${t_attacked} ms"
