#!/bin/bash
# System test (issue 5): three hosts in network namespaces (tests/system/netlab.sh), each one a
# real systemd sandbox (tests/system/sbx.sh, booted inside the host's namespace) running agentd
# as a unit, with the systemd plugin. A bad deploy is rolled back by cluster agreement while one
# host is cut off, and every step is observed in the three systemds:
#  1. v1 deployed: every systemd runs the unit of v1;
#  2. v2 deployed: every systemd runs v2 (healthy at first);
#  3. host 3's switch port goes down, then v2 turns bad everywhere (its health check fails);
#     hosts 1 and 2 vote (2 of 3 = quorum), write the rollback revision, and their systemds run
#     v1 again; host 3 votes too but alone has no quorum: its systemd keeps v2 while cut off
#     (checked for a bounded time);
#  4. the link returns: host 3 adopts the certified rollback and its systemd runs v1.
# Cleanup (trap): sandboxes stopped by PID (cgroups removed), then the namespaces with anything
# left in them, then the work directory; a canary in the host's /tmp must survive.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and ip nft jq unshare nsenter findmnt setsid systemctl
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
command -v systemd-notify >/dev/null || skip "'systemd-notify' not installed"

N=3
PFX=sc$RUNID
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
UNIT=shoal-sys-web.service
export NETLAB_PREFIX=$PFX NETLAB_NET=$NET NETLAB_OWNER=$$
export SBX_BASE=$WORK/sbx SBX_OWNER=$$
mkdir -p "$SBX_BASE"
CANARY=$(mktemp /tmp/shoal-canary.XXXXXX)
echo alive >"$CANARY"
sname() { echo "shoal-sc$RUNID-$1"; }
ns() { echo "${PFX}h$1"; }
sh_of() { echo "$SBX_BASE/$(sname "$1")/share"; }

cleanup() {
	local rc=$? i
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		for i in $(seq 1 $N); do
			[ -f "$(sh_of "$i")/agentd.log" ] || continue
			echo "--- host $i agentd.log (tail)"; tail -n 25 "$(sh_of "$i")/agentd.log"
		done
	fi
	for i in $(seq 1 $N); do
		timeout 90 bash "$HERE/sbx.sh" stop "$(sname "$i")" >/dev/null 2>&1 &
	done
	wait
	bash "$HERE/netlab.sh" down
	[ "$(cat "$CANARY" 2>/dev/null)" = alive ] || fail "host /tmp canary is gone"
	rm -f "$CANARY"
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

X() { local i=$1; shift; timeout 30 bash "$HERE/sbx.sh" exec "$(sname "$i")" "$@"; }
ctl() {
	local i=$1
	shift
	X "$i" "$(sandbox_bin "$(sh_of "$i")" "$AGENTCTL")" --socket "$(sh_of "$i")/agentd.sock" "$@"
}
svc() { # node I's view of service web (one JSON object)
	ctl "$1" --timeout 5s --json services |
		jq -ce 'first(.. | objects | select(.service? == "web"))'
}
state() { # I DESIRED RUNNING HEALTH, not swapping
	svc "$1" | jq -e --argjson d "$2" --argjson r "$3" --arg h "$4" \
		'.desired_rev == $d and .running_rev == $r and .health == $h and .swapping == false'
}
all_state() { local i; for i in $1; do state "$i" "$2" "$3" "$4" || return 1; done; }
sees_alive() {
	ctl "$1" --timeout 5s --json members |
		jq -e --argjson n "$2" '[.. | objects | select(.state? == "alive")] | length == $n'
}
show() { X "$1" systemctl show -p "$2" --value "$UNIT"; }
# sd_runs I VERSION: host I's systemd runs release VERSION of the unit, from our whole file
sd_runs() {
	local f
	f=$SBX_BASE/$(sname "$1")/system/$UNIT
	head -n1 "$f" | grep -q '^# managed-by: shoal' || return 1
	grep -qx "# release: web $2" "$f" || return 1
	[ "$(show "$1" ActiveState)" = active ] && [ "$(show "$1" SubState)" = running ] &&
		[ "$(show "$1" StatusText)" = "web $2" ]
}
all_sd_runs() { local i; for i in $1; do sd_runs "$i" "$2" || return 1; done; }
sd_report() { local i; for i in $(seq 1 $N); do
	echo "host $i: $(grep '^# release' "$SBX_BASE/$(sname "$i")/system/$UNIT" 2>/dev/null)," \
		"$(X "$i" systemctl show -p ActiveState,StatusText "$UNIT" 2>&1 | tr '\n' ' ')"
done; }

# --- lab, sandboxes, agents
bash "$HERE/netlab.sh" up $N || die "netlab up"
for i in $(seq 1 $N); do
	# nsenter --net, not `ip netns exec`: the latter also remounts /sys in a new mount
	# namespace, hiding the cgroup hierarchies the sandbox needs; the sandbox's systemd (and
	# every unit it starts: agentd, the service) inherits the network namespace
	nsenter --net="/run/netns/$(ns "$i")" timeout 90 bash "$HERE/sbx.sh" start "$(sname "$i")" \
		>"$WORK/sbx$i.out" 2>&1 &
done
wait
for i in $(seq 1 $N); do
	bash "$HERE/sbx.sh" pid "$(sname "$i")" >/dev/null ||
		die "sandbox $i did not start: $(cat "$WORK/sbx$i.out")"
	p=$(bash "$HERE/sbx.sh" pid "$(sname "$i")")
	[ "$(readlink "/proc/$p/ns/net")" = "$(ip netns exec "$(ns "$i")" readlink /proc/self/ns/net)" ] ||
		die "sandbox $i's systemd is not in namespace $(ns "$i")"
done
ok "$N hosts on $NET.0/24, each a systemd sandbox inside its network namespace"

make_keyring "$WORK/keyring"
make_operator "$WORK"
ENVS="SHOAL_GOSSIP_PROBE_MS=200"
for e in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
	[ -n "${!e:-}" ] && ENVS="$ENVS $e=${!e}"
done
mk_release() { # DIR NAME VERSION: unit Type=notify with status "web NAME"; v2's check fails
	local d=$1/$2 # once /run/shoal-v2-broken exists in the sandbox
	mkdir -p "$d"
	cat >"$d/$UNIT" <<EOF
# release: web $2
[Unit]
Description=Shoal system test web $2 ($3)
[Service]
Type=notify
NotifyAccess=all
TimeoutStartSec=60
ExecStart=/bin/sh -c 'systemd-notify --ready --status="web $2"; exec sleep infinity'
EOF
	cat >"$d/check.sh" <<EOF
#!/bin/sh
[ ! -e /run/shoal-$2-broken ] || { echo "web $2: broken" >&2; exit 1; }
[ "\$(systemctl show -p StatusText --value $UNIT)" = "web $2" ]
EOF
	chmod +x "$d/check.sh"
	cat >"$d/release.ini" <<EOF
[release]
service = web
runtime = systemd
version = $3
[systemd]
unit = $UNIT
[health]
exec = ./check.sh
interval = 300ms
timeout = 5s
failures = 3
deadline = 30s
EOF
}
for i in $(seq 1 $N); do
	S=$(sh_of "$i")
	mkdir -p "$S/state" "$S/art"
	cp "$WORK/keyring" "$S/keyring"
	cp -r "$WORK/operators" "$S/operators"
	cp -p "$WORK/operator.key" "$S/operator.key"
	mk_release "$S/art" v1 1.0.0
	mk_release "$S/art" v2 2.0.0
	cat >"$SBX_BASE/$(sname "$i")/system/shoal-agentd.service" <<EOF
[Unit]
Description=Shoal agent (system test, host $i)
[Service]
Type=notify
Environment=$ENVS
ExecStart=$(sandbox_bin "$S" "$AGENTD") --config /dev/null --node-name h$i --state-dir $S/state \\
	--socket $S/agentd.sock --socket-group "" --bind $NET.$i:7946 --join $NET.1:7946 \\
	--keyring $S/keyring --cluster sys$RUNID --log-level info --operators-dir $S/operators
StandardError=append:$S/agentd.log
TimeoutStartSec=60
EOF
	X "$i" systemctl daemon-reload || die "daemon-reload on host $i"
	X "$i" systemctl start shoal-agentd.service || die "agentd did not start on host $i"
done
for i in $(seq 1 $N); do wait_for 30 "agent on host $i to answer" ctl "$i" ping; done
for i in $(seq 1 $N); do wait_for 60 "host $i to see $N alive members" sees_alive "$i" $N; done
for i in $(seq 1 $N); do
	V1=$(ctl "$i" artifact import "$(sh_of "$i")/art/v1") || die "import v1 on host $i"
	V2=$(ctl "$i" artifact import "$(sh_of "$i")/art/v2") || die "import v2 on host $i"
done
ok "agentd runs as a unit in each sandbox; $N members alive; v1 and v2 imported"

# --- 1, 2: v1 then v2 in every systemd
ctl 1 deploy web --key "$(sh_of 1)/operator.key" "$V1" >/dev/null || die "deploy v1"
wait_for 90 "rev 1 healthy on every host" all_state "$(seq 1 $N)" 1 1 healthy
wait_for 30 "every systemd to run v1" all_sd_runs "$(seq 1 $N)" v1
ok "rev 1: the $N systemds run v1"
ctl 2 deploy web --key "$(sh_of 2)/operator.key" "$V2" >/dev/null || die "deploy v2"
wait_for 90 "rev 2 healthy on every host" all_state "$(seq 1 $N)" 2 2 healthy
wait_for 30 "every systemd to run v2" all_sd_runs "$(seq 1 $N)" v2
ok "rev 2: the $N systemds run v2"

# --- 3: host 3 cut off, v2 turns bad everywhere
bash "$HERE/netlab.sh" cut 3 || die "cut"
for i in $(seq 1 $N); do X "$i" touch /run/shoal-v2-broken || die "break v2 on host $i"; done
ok "host 3 cut off; v2's health check fails on every host from now on"
wait_for 90 "hosts 1 and 2 to roll back (rev 3)" all_state "1 2" 3 3 healthy
wait_for 30 "systemds 1 and 2 to run v1" all_sd_runs "1 2" v1
ctl 1 --json history web | jq -e --arg v1 "$V1" 'first(.. | objects | select(.rev? == 3)) |
	.kind == "rollback" and .artifact == $v1' >/dev/null ||
	fail "host 1 history: rev 3 is not a rollback to v1: $(ctl 1 --json history web)"
ok "hosts 1 and 2 agreed (2 of 3) and rolled back: their systemds run v1"
HOLD=${SHOAL_SPLIT_HOLD_S:-10}
end=$((SECONDS + HOLD))
while [ $SECONDS -lt $end ]; do
	s=$(svc 3) || { fail "host 3: no services answer while cut off"; break; }
	if [ "$(echo "$s" | jq .desired_rev)" != 2 ] || [ "$(echo "$s" | jq .running_rev)" != 2 ]; then
		fail "host 3 moved while cut off: $s"; break
	fi
	sd_runs 3 v2 || { fail "host 3's systemd left v2 while cut off: $(sd_report | tail -1)"; break; }
	sleep 1
done
ctl 3 --json votes web | jq -e '[.. | objects | select(.reason? == "health")] | length >= 1' \
	>/dev/null || fail "host 3 did not vote against v2: $(ctl 3 --json votes web)"
ok "host 3 voted against v2 but, alone, kept it (desired 2, systemd runs v2) for ${HOLD}s"

# --- 4: the link returns, host 3 converges
bash "$HERE/netlab.sh" uncut 3 || die "uncut"
t0=$SECONDS
# learnt through anti-entropy (every 30 s +-25%, a member seen dead picked now and then)
wait_for 150 "host 3 to adopt the rollback (rev 3)" state 3 3 3 healthy
wait_for 30 "every systemd to run v1" all_sd_runs "$(seq 1 $N)" v1
ok "link back: host 3 converged to rev 3 in $((SECONDS - t0))s; the $N systemds run v1"
sd_report
[ "$FAILS" = 0 ] && echo "PASS: test_agentd_sdcluster"
exit 0
