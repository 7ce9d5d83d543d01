#!/usr/bin/env bash
# Integration: pacing's wave and the electorate (agent/fleet/decide.c wave_follow). Six agents,
# sites a (n1-n3) and b (n4-n6), --max-parallel-swaps-per-site 1, the default quorum (a
# majority: 4 of 6), and a service with an [endpoint], whose pacing slot is held until the new
# instance is healthy. So a bad revision stops at the first node of each site; before the
# wave, the 4 other nodes never ran it and the 2 votes of the first nodes decided nothing.
#   1. v2 fails its check everywhere: the nodes held back follow the health vote of their
#      site's first node, the cluster decides the rollback, and at most one node per site
#      ever ran v2.
#   2. v3 fails only in site a: site a's nodes follow their first node (3 votes of 6), site
#      b's nodes do not (v3 is healthy there): nothing is decided, site b runs v3.
. "$(dirname "$0")/brain_lib.sh"

# make_wave NAME VERSION BADSITES: like make_artifact, with an endpoint; the check fails on the
# nodes whose state directory matches the shell pattern BADSITES (none if empty)
make_wave() {
	make_artifact "$1" "$2" 1
	local d=$WORK/art/$1
	cat >"$d/check.sh" <<SH
#!/bin/sh
case "\$SHOAL_DIR" in
$3) echo "web $2: 500" >&2; exit 1 ;;
esac
echo "web $2: ok"
SH
	printf '\n[endpoint]\nport = 18080\nprotocol = http\ndrain = 200ms\n' >>"$d/release.ini"
}
make_wave v1 1.0.0 "/nonexistent/*"
make_wave v2 2.0.0 "*"
make_wave v3 3.0.0 "$WORK/n[123]/*"

new_keyring
for i in 1 2 3 4 5 6; do
	site=a; [ "$i" -gt 3 ] && site=b
	start_agent "$i" --label site=$site --max-parallel-swaps-per-site 1
done
wait_cluster 6
import_all v1; V1=$ID
import_all v2; V2=$ID
import_all v3; V3=$ID
ctl 1 deploy web "$V1" >/dev/null || die "deploy v1"
wait_for 60 "rev 1 healthy everywhere" all_healthy 1
ok "rev 1 healthy on all six nodes"

# 1. bad everywhere
ctl 1 deploy web "$V2" >/dev/null || die "deploy v2"
wait_for 60 "the rollback of rev 2 (rev 3) desired everywhere" bash -c \
	"for i in 1 2 3 4 5 6; do [ \"\$(\"$AGENTCTL\" --socket \"$WORK/n\$i.sock\" --json services | tr -d ' \n' | sed -n 's/.*\"desired_rev\":\([0-9]*\).*/\1/p')\" = 3 ] || exit 1; done"
wait_for 60 "v1 healthy everywhere again" all_healthy 3
ran=0 waved=0
for i in 1 2 3 4 5 6; do
	ev=$(ctl "$i" events)
	echo "$ev" | grep -q "swap-done .*now runs rev 2 " && ran=$((ran + 1))
	echo "$ev" | grep -q " wave " && waved=$((waved + 1))
done
echo "nodes that ran rev 2: $ran; nodes that followed a wave vote: $waved"
[ "$ran" -ge 1 ] && [ "$ran" -le 2 ] || fail "$ran nodes ran the bad rev 2 (pacing: one per site)"
[ "$waved" -ge 2 ] || fail "only $waved node(s) followed their site's first node"
h=$(ctl 2 --json history web | tr -d ' \n')
echo "$h" | grep -q '"rev":3,"artifact":"'"$V1"'"' || fail "rev 3 is not the rollback to v1: $h"
ok "a bad revision held at the first node of each site is rolled back by the majority"

# 2. bad in site a only
ctl 4 deploy web "$V3" >/dev/null || die "deploy v3"
wait_for 60 "site b runs rev 4 healthy" bash -c "for i in 4 5 6; do \"$AGENTCTL\" --socket \"$WORK/n\$i.sock\" --json services | tr -d ' \n' | grep -q '\"running_rev\":4,[^}]*\"health\":\"healthy\"' || exit 1; done"
wait_for 30 "site a's held-back nodes vote" bash -c \
	"[ \"\$(\"$AGENTCTL\" --socket \"$WORK/n1.sock\" --json votes web --rev 4 | jq .counted)\" = 3 ]"
sleep 4	# > the settle and resync times: a wrong vote would arrive by now
for i in 4 5 6; do
	ctl "$i" events | grep -q "n$i votes against rev 4" && fail "n$i (site b, healthy on v3) voted"
done
for i in 1 2 3 4 5 6; do
	[ "$(desired_of "$i")" = 4 ] || fail "n$i desires rev $(desired_of "$i"): 3 votes of 6 decided"
done
ok "site a's failure stays site a's votes: 3 of 6, nothing decided, site b runs v3"
exit 0
