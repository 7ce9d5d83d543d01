#!/usr/bin/env bash
# Install the Debian packages a make target needs, when missing.
#   scripts/deps.sh build|test|fuzz|deb
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail
build=(gcc make cmake pkg-config git libuv1-dev libmsgpack-dev liblmdb-dev libgit2-dev
       libsystemd-dev libsodium-dev libinih-dev libcmocka-dev)
# Tests: clang (fuzz replay is gcc, fuzzing is clang), real systemd/podman/netns for system tests,
# serf for the side-by-side gossip benchmark, lmdb-utils for inspecting stores.
# catatonit is Podman's init binary: the container plugin creates containers with
# HostConfig.Init=true, and podman only *recommends* catatonit, which the
# --no-install-recommends below would otherwise leave out (container create then fails with
# "container-init binary not found on the host").
# haproxy (2.6) is the load balancer the traffic driver steers (integration_traffic_haproxy);
# wrk is a load generator; system_agentd_traffic and tests/bench/traffic.sh use their own
# bounded client (python3, tests/system/lbload.py), which records every request; prometheus
# also scrapes the read API's http_sd in system_agentd_traffic.
# The .deb (make deb, and the package system test): dpkg-shlibdeps, file (CPack finds the
# ELF files with it), objcopy/readelf (binutils; debug symbols), lintian.
# prometheus (its promtool too) scrapes a real cluster in integration_agent_prometheus and
# lints the metrics and the example alerting rules.
# faketime: tests/system/test_electorate_reap.sh can restart agents with their clocks 73 h
# ahead (a partition longer than the default reap time, without --reap-after).
deb=(dpkg-dev file binutils lintian)
test=(clang libclang-rt-14-dev systemd dbus podman catatonit runc busybox-static iproute2 nftables socat
      lmdb-utils procps psmisc serf jq curl util-linux haproxy wrk faketime prometheus python3 "${deb[@]}")
case "${1:-build}" in
build) want=("${build[@]}") ;;
test|fuzz) want=("${build[@]}" "${test[@]}") ;;
deb) want=("${build[@]}" "${deb[@]}") ;;
*) echo "usage: $0 build|test|fuzz|deb" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "missing Debian packages; run as root:" >&2
	echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
