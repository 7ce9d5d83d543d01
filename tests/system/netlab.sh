#!/bin/bash
# tests/system/netlab.sh - Shoal's network lab: N "hosts" as network namespaces on one Linux
# bridge that lives in a namespace of its own, so the root network namespace never changes.
#
# usage: netlab.sh up N            ${P}sw (bridge br0) + ${P}h1..N, eth0 = ${NET}.i/24
#        netlab.sh down            kill every process left in our namespaces (by PID, from
#                                  `ip netns pids`), then delete the namespaces
#        netlab.sh cut I | uncut I host I's switch port down / up
#        netlab.sh split "1 2" "3 4 5"   silent drop between the two groups, in the switch
#        netlab.sh heal            remove the split
#        netlab.sh ns I            print host I's namespace name
#        netlab.sh addr I          print host I's address
# env:   NETLAB_PREFIX  required, unique per run (several suites may run at once); at most
#                       10 characters of [a-z0-9]
#        NETLAB_NET     first three octets of the lab subnet (default 10.200.0); addresses
#                       exist only inside the namespaces, so labs may reuse a subnet
#        NETLAB_OWNER   a pid (the test's): when it dies without `down` (SIGKILL by a test
#                       timeout, no trap runs), a detached watcher runs `down` within seconds.
#
# Why drop in the switch: a rule in the sender's OUTPUT chain makes sendto() fail with EPERM,
# which the agent sees as an error, not as loss. A bridge-family forward rule in the switch's
# namespace silently drops frames, as a real partition does. Why veth ends are created directly
# inside the namespaces: nothing ever appears, even for a moment, in the root namespace.
set -euo pipefail
SELF=$(readlink -f "$0")
P=${NETLAB_PREFIX:?netlab: set NETLAB_PREFIX to a unique name}
case $P in *[!a-z0-9]*|'') echo "netlab: bad prefix '$P'" >&2; exit 2 ;; esac
[ ${#P} -le 10 ] || { echo "netlab: prefix '$P' longer than 10" >&2; exit 2; }
NET=${NETLAB_NET:-10.200.0}
SW=${P}sw
ns() { echo "${P}h$1"; }
ours() { ip netns list | awk '{print $1}' | grep -E "^${P}(sw|h[0-9]+)$" || true; }

cmd=${1:-}
case $cmd in
up)
	n=${2:?usage: netlab.sh up N}
	if [ -n "$(ours)" ]; then echo "netlab: $P already up" >&2; exit 1; fi
	ip netns add "$SW"
	ip -n "$SW" link set lo up
	ip -n "$SW" link add br0 type bridge
	ip -n "$SW" link set br0 up
	for i in $(seq 1 "$n"); do
		h=$(ns "$i")
		ip netns add "$h"
		ip -n "$h" link set lo up
		ip link add eth0 netns "$h" type veth peer name "port$i" netns "$SW"
		ip -n "$SW" link set "port$i" master br0 up
		ip -n "$h" addr add "$NET.$i/24" dev eth0
		ip -n "$h" link set eth0 up
	done
	# STP is off on br0, so its ports forward at once (no listening/learning delay)
	if [ -n "${NETLAB_OWNER:-}" ]; then
		( cd / && setsid bash -c 'while [ -e "/run/netns/$1sw" ] && kill -0 "$2" 2>/dev/null;
			do sleep 1; done; [ -e "/run/netns/$1sw" ] && NETLAB_PREFIX=$1 exec bash "$3" down' \
			watch "$P" "$NETLAB_OWNER" "$SELF" </dev/null >/dev/null 2>&1 & )
	fi
	;;
down)
	for x in $(ours); do
		# processes still in the namespace are ours (we made it): end them by PID
		for p in $(ip netns pids "$x" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	done
	for x in $(ours); do
		for _ in $(seq 30); do [ -z "$(ip netns pids "$x" 2>/dev/null)" ] && break; sleep 0.1; done
		ip netns del "$x" || true
	done
	;;
cut)   ip -n "$SW" link set "port${2:?I}" down ;;
uncut) ip -n "$SW" link set "port${2:?I}" up ;;
split)
	a=${2:?usage: netlab.sh split "GROUP A" "GROUP B"}; b=${3:?}
	ip netns exec "$SW" nft add table bridge netlab_part
	ip netns exec "$SW" nft "add chain bridge netlab_part f { type filter hook forward priority 0; }"
	for x in $a; do for y in $b; do
		ip netns exec "$SW" nft add rule bridge netlab_part f iifname "port$x" oifname "port$y" drop
		ip netns exec "$SW" nft add rule bridge netlab_part f iifname "port$y" oifname "port$x" drop
	done; done
	;;
heal) ip netns exec "$SW" nft delete table bridge netlab_part 2>/dev/null || true ;;
ns)   ns "${2:?I}" ;;
addr) echo "$NET.${2:?I}" ;;
*)    sed -n '2,16p' "$SELF"; exit 2 ;;
esac
