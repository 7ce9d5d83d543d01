#!/usr/bin/env bash
# Benchmark (issue 14): a rolling deploy behind a real HAProxy with and without the drain, and
# the time from a health change on one node to HAProxy's change.
#
#   tests/bench/traffic.sh BUILD_DIR [N ...]          (default N: 4 8 16; root only)
#
# For each N: N hosts in network namespaces (tests/system/netlab.sh), sites a (first half) and
# b, agentd and the service `web` (exec runtime, busybox httpd) on each; HAProxy 2.6 in host
# 1's namespace driven by host 1's agent (server-template slots, failover share 0.5,
# `retries 0`: a request sent to a stopped instance fails), and tests/system/lbload.py there
# (4 threads, one request each per 10 ms, every request recorded with its latency).
# Rollouts, one node per site at a time (max-parallel-swaps-per-site 1; a node keeps its slot
# until its new instance is healthy, in both modes):
#   no drain   the running artifact has `drain = 0s`: the swap stops the old instance at once
#              (its endpoint is marked draining, but nothing waits for HAProxy to hear it):
#              the plain "stop, swap, start"
#   drain      the running artifact has `drain = 2s`: the node marks its endpoint draining,
#              waits until HAProxy reports no session on it (host 1) or the 2 s pass (others,
#              which have no local HAProxy to ask), then swaps
# Printed per rollout: its duration, requests, failed requests, p50/p99 latency.
# Health to HAProxy: on host 2 (site a) the health file is taken away (its /health answers 404)
# and later put back, 3 times; measured from the agent's own health event (its log timestamp,
# same host clock) to the moment HAProxy shows the slot in maint (resp. ready), polled every
# ~10 ms through the stats socket. The whole path: health event -> endpoint record -> gossip
# to host 1 -> catalog -> 50 ms debounce -> driver pass -> `set server state`.
# Use a build without sanitizers (make bench: build/).
set -uo pipefail
build=${1:?usage: traffic.sh BUILD_DIR [N ...]}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(4 8 16)
AGENTD=$build/agent/agentd AGENTCTL=$build/agent/agentctl
HERE=$(cd "$(dirname "$0")" && pwd)
SYS=$(cd "$HERE/../system" && pwd)
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 0; }
for t in ip haproxy socat busybox python3 jq curl; do
	command -v "$t" >/dev/null || { echo "SKIP: '$t' not installed"; exit 0; }
done
[ -x "$AGENTD" ] && [ -x "$AGENTCTL" ] || { echo "no agentd/agentctl in $build" >&2; exit 2; }
WORK=$(mktemp -d /tmp/shoal-bench-traffic-XXXXXX)
chmod 755 "$WORK"
PFX=bt$(printf '%x' $(($$ % 65536)))
export NETLAB_PREFIX=$PFX NETLAB_OWNER=$$
export SHOAL_GOSSIP_PROBE_MS=200 SHOAL_RETRY_MS=300
declare -a PID=()
HAPID="" LOADPID=""
stop_all() {
	local p
	touch "$WORK/stop-load"
	[ -n "$LOADPID" ] && { wait "$LOADPID" 2>/dev/null; LOADPID=""; }
	for p in "${PID[@]}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
	for p in "${PID[@]}"; do
		[ -n "$p" ] || continue
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null
	done
	PID=()
	[ -n "$HAPID" ] && { kill -TERM "$HAPID" 2>/dev/null; wait "$HAPID" 2>/dev/null; HAPID=""; }
	bash "$SYS/netlab.sh" down >/dev/null 2>&1
}
cleanup() { stop_all; [ -n "${SHOAL_KEEP_TMP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 1' INT TERM

ns() { echo "${PFX}h$1"; }
inns() { local i=$1; shift; ip netns exec "$(ns "$i")" "$@"; }
ctl() { local i=$1; shift; inns "$i" "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }
wait_for() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
now_ms() { date +%s%3N; }
hap() { echo "$1" | inns 1 socat -t 2 stdio "unix-connect:$WORK/haproxy.sock"; }
all_rev_healthy() { # every node runs REV healthy, not swapping
	local i
	for i in $(seq 1 "$N"); do
		ctl "$i" --timeout 5s --json services | jq -e --argjson r "$1" \
			'first(.. | objects | select(.service? == "web")) | .running_rev == $r and
			 .health == "healthy" and .swapping == false' >/dev/null || return 1
	done
}
# HAProxy: the local site's slots ready at weight 100 (N/2 of them)
local_ready() {
	hap "show servers state web" | awk -v net="$NET." -v half="$HALF" '
		NF > 10 && index($5, net) == 1 { split($5, o, "."); h = o[4] + 0;
			if (h <= half && ($7 == 0 || $7 == 4) && $8 == 100) n++ }
		END { exit !(n == half) }'
}
# slot_mode ADDR: maint | ready | drain | none
slot_mode() {
	hap "show servers state web" | awk -v a="$1" 'NF > 10 && $5 == a {
		if ($7 % 2 == 1) m = "maint"; else if ($7 >= 8 && $7 < 32) m = "drain"; else m = "ready" }
		END { print (m == "" ? "none" : m) }'
}
# window T0 T1: "requests failed p50 p99" of the requests sent in [T0, T1)
window() {
	awk -F, -v a="$1" -v b="$2" '$1 >= a && $1 < b { n++; if ($2 != 1) f++; print $5 > "/dev/stderr" }
		END { printf "%d %d", n, f }' "$WORK/load.csv" 2>"$WORK/lat"
	sort -n "$WORK/lat" | awk '{ v[NR] = $1 } END { if (!NR) { print " - -"; exit }
		i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999);
		printf " %.1f %.1f\n", v[i50], v[i99] }'
}
ev_ms() { # ev_ms LOG PATTERN AFTER_MS: the timestamp (ms) of the first log line matching after
	local line
	line=$(grep -E "$2" "$1" | while read -r l; do
		t=$(date -d "${l%%Z *}Z" +%s%3N 2>/dev/null) || continue
		[ "$t" -ge "$3" ] && { echo "$t"; break; }
	done)
	echo "${line:-0}"
}

mk() { # mk DIR VERSION DRAIN
	mkdir -p "$1"
	cat >"$1/release.ini" <<EOF
[release]
service = web
runtime = exec
version = $2

[exec]
command = ./run.sh

[health]
http = http://127.0.0.1:8080/health
interval = 300ms
timeout = 1s
failures = 2
deadline = 10s

[endpoint]
port = 8080
protocol = http
drain = $3
EOF
	cat >"$1/run.sh" <<EOF
#!/bin/sh
ip=\$(ip -4 -o addr show dev eth0 | awk '{print \$4}' | cut -d/ -f1)
d="$WORK/www-\$ip"
mkdir -p "\$d"
echo "$2 \$ip" >"\$d/index.html"
echo ok >"\$d/health"
exec busybox httpd -f -p 8080 -h "\$d"
EOF
	chmod +x "$1/run.sh"
}
mk "$WORK/A" A 0s
mk "$WORK/B" B 0s
mk "$WORK/C" C 2s
mk "$WORK/D" D 2s

rollout() { # rollout ARTIFACT REV LABEL: deploy, wait, print a row
	local t0 t1 r
	t0=$(now_ms)
	ctl 1 deploy web "$1" --reason "bench $3" >/dev/null || { echo "deploy failed" >&2; return 1; }
	wait_for 300 all_rev_healthy "$2" || { echo "rollout to rev $2 did not finish" >&2; return 1; }
	wait_for 30 local_ready
	sleep 0.5
	t1=$(now_ms)
	[ -n "$3" ] || return 0
	r=$(window "$t0" "$t1")
	# shellcheck disable=SC2086 # four numbers
	printf "%4d  %-9s %8.1f %9s %7s %8s %8s\n" "$N" "$3" "$(((t1 - t0) / 100))e-1" $r
}

echo "# rollout behind HAProxy (retries 0), one node per site at a time; latency in ms"
printf "%4s  %-9s %8s %9s %7s %8s %8s\n" N mode seconds requests failed p50 p99
declare -a HROWS=()
for N in "${sizes[@]}"; do
	HALF=$((N / 2))
	NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
	export NETLAB_NET=$NET
	rm -rf "$WORK"/n* "$WORK"/www-* "$WORK/load.csv" "$WORK/stop-load"
	bash "$SYS/netlab.sh" up "$N" >/dev/null || { echo "netlab up failed" >&2; exit 1; }
	head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"; echo >>"$WORK/keyring"
	chmod 600 "$WORK/keyring"
	cat >"$WORK/haproxy.cfg" <<EOF
global
    stats socket $WORK/haproxy.sock mode 600 level admin
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 5s
    retries 0
frontend fe
    bind 127.0.0.1:8000
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /
    server-template s 1-$((N + 2)) 127.0.0.1:1 disabled check inter 500ms fall 2 rise 1
EOF
	rm -f "$WORK/haproxy.sock"
	inns 1 haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
	HAPID=$!
	wait_for 10 test -S "$WORK/haproxy.sock"
	for i in $(seq 1 "$N"); do
		site=a; [ "$i" -gt "$HALF" ] && site=b
		extra=()
		[ "$i" = 1 ] && extra=(--haproxy-socket "$WORK/haproxy.sock" --haproxy-backend web=web:s)
		inns "$i" "$AGENTD" --config /dev/null --node-name "n$i" --state-dir "$WORK/n$i" \
			--socket "$WORK/n$i.sock" --socket-group "" --bind "$NET.$i:7946" \
			--join "$NET.1:7946" --keyring "$WORK/keyring" --cluster "bt$N" \
			--label "site=$site" --log-level info --max-parallel-swaps-per-site 1 \
			"${extra[@]}" 2>>"$WORK/n$i.log" &
		PID+=($!)
	done
	for i in $(seq 1 "$N"); do wait_for 30 ctl "$i" ping || { echo "n$i down" >&2; exit 1; }; done
	for i in $(seq 1 "$N"); do
		for v in A B C D; do
			id=$(ctl "$i" artifact import "$WORK/$v" 2>/dev/null) || { echo "import" >&2; exit 1; }
			eval "ID_$v=$id"
		done
	done
	rollout "$ID_A" 1 "" || exit 1
	inns 1 python3 "$SYS/lbload.py" http://127.0.0.1:8000/ "$WORK/load.csv" --threads 4 \
		--interval-ms 10 --max-s 900 --stop "$WORK/stop-load" >"$WORK/load.out" 2>&1 &
	LOADPID=$!
	sleep 2
	rollout "$ID_B" 2 "no drain" || exit 1
	rollout "$ID_C" 3 "" || exit 1
	rollout "$ID_D" 4 "drain" || exit 1

	# health change on host 2 -> HAProxy (3 times down and up)
	a2=$NET.2
	for k in 1 2 3; do
		t0=$(now_ms)
		rm -f "$WORK/www-$a2/health"
		end=$((SECONDS + 20))
		until [ "$(slot_mode "$a2")" = maint ] || [ $SECONDS -ge $end ]; do sleep 0.01; done
		tl=$(now_ms)
		te=$(ev_ms "$WORK/n2.log" "event health web rev 4: n2: rev 4 unhealthy" "$t0")
		down=$((tl - te))
		t0=$(now_ms)
		echo ok >"$WORK/www-$a2/health"
		end=$((SECONDS + 20))
		until [ "$(slot_mode "$a2")" = ready ] || [ $SECONDS -ge $end ]; do sleep 0.01; done
		tl=$(now_ms)
		te=$(ev_ms "$WORK/n2.log" "event health web rev 4: n2: rev 4 healthy" "$t0")
		up=$((tl - te))
		HROWS+=("$(printf "%4d  %5d  %6d ms  %6d ms" "$N" "$k" "$down" "$up")")
		sleep 1
	done
	stop_all
done
echo
echo "# health change on one node -> HAProxy slot (from the node's health event to the slot's"
echo "# state in HAProxy, polled every ~10 ms)"
printf "%4s  %5s  %9s  %9s\n" N try "to maint" "to ready"
for r in "${HROWS[@]}"; do echo "$r"; done
