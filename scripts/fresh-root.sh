#!/usr/bin/env bash
# scripts/fresh-root.sh - run the README's `make test` in a freshly bootstrapped Debian 12 root.
#
# usage (as root): scripts/fresh-root.sh [--keep] [--dir DIR] [--mirror URL] [--ref REV]
#   --dir DIR     where the root goes (default: a new /var/tmp/shoal-fresh.XXXXXX)
#   --keep        keep the root afterwards (default: removed at the end)
#   --mirror URL  Debian mirror (default: the first .../debian URI of /etc/apt/sources.list*,
#                 so the root comes from the same registry this machine uses)
#   --ref REV     what to test (default: HEAD of the repository this script is in)
# env: CTEST_ARGS (passed to `make test`, e.g. "-L unit"), JOBS
#
# What it proves: a clean clone (git clone of REV: no build directory, no untracked file of the
# working tree) passes `make test` on a machine that has nothing but Debian 12's minimal base
# (debootstrap --variant=minbase) plus `make`, the one package a user installs by hand to type
# `make test`. Everything else must come from scripts/deps.sh, so a package that the suite needs
# and deps.sh forgets fails here even though the developer's machine happens to have it.
#
# How: debootstrap bookworm into DIR; `git clone` REV into DIR/root/shoal; then, in a private
# mount namespace (nothing below is visible to, or propagates back to, the host), a fresh /proc,
# recursive binds of /sys (the cgroup hierarchies the systemd sandbox tests need) and /dev, a
# tmpfs /run, DIR made the namespace's root with pivot_root (the host's tree detached), and
# `make test` as root. Prints ctest's summary and the wall time, and
# exits with make's status.
#
# Differences from a real machine, on purpose:
#   - /usr/sbin/policy-rc.d refuses service starts inside the root: apt would otherwise start
#     dbus (and others) from their init scripts, since no systemd is PID 1 in a chroot; those
#     daemons would outlive the run. The suite starts every daemon it needs itself.
#   - No systemd is PID 1 (neither is it on these build machines): the system tests boot their
#     own systemd in a sandbox (tests/system/sbx.sh).
#   - The host's kernel, cgroups and network namespace (tests use 127.0.0.0/8 and namespaces of
#     their own); /etc/resolv.conf is copied in for apt.
set -euo pipefail
die() { echo "fresh-root: $*" >&2; exit 1; }

KEEP=0 DIR="" MIRROR="" REF=HEAD
while [ $# -gt 0 ]; do
	case $1 in
	--keep) KEEP=1 ;;
	--dir) DIR=${2:?--dir needs a directory}; shift ;;
	--mirror) MIRROR=${2:?--mirror needs a URL}; shift ;;
	--ref) REF=${2:?--ref needs a revision}; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for t in debootstrap git unshare chroot findmnt; do
	command -v "$t" >/dev/null || die "'$t' missing (apt-get install -y debootstrap git util-linux)"
done
REPO=$(git -C "$(dirname "$(readlink -f "$0")")" rev-parse --show-toplevel)
SHA=$(git -C "$REPO" rev-parse --verify "$REF^{commit}") || die "no commit '$REF'"

# The machine's own Debian mirror and security archive (deb822 "URIs:" or one-line "deb URI").
apt_uri() { # REGEX: first URI of the apt sources matching it
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
		2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p; s/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}//p' |
		tr ' ' '\n' | grep -E "$1" | head -n1 || true
}
[ -n "$MIRROR" ] || MIRROR=$(apt_uri '/debian/?$')
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
SECURITY=$(apt_uri '/debian-security/?$')

if [ -z "$DIR" ]; then
	DIR=$(mktemp -d /var/tmp/shoal-fresh.XXXXXX)
else
	mkdir -p "$DIR"
	[ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty"
fi
DIR=$(readlink -f "$DIR")
[ "$DIR" != / ] || die "refusing / as the root"
# It becomes /: mktemp's 0700 would lock every other user out (apt's _apt, the sandboxes'
# dbus-daemon running as messagebus).
chmod 755 "$DIR"

# Processes left running in the root's mount namespace (a daemon a test forgot): ended by pid.
reap_root() {
	local p ns
	[ -s "$DIR.mntns" ] || return 0
	ns=$(cat "$DIR.mntns")
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] || continue
		echo "fresh-root: ending leftover pid ${p#/proc/}: $(tr '\0' ' ' <"$p/cmdline" | cut -c1-80)"
		kill -KILL "${p#/proc/}" 2>/dev/null || true
	done
	rm -f "$DIR.mntns"
}
cleanup() {
	local rc=$?
	reap_root
	if [ "$KEEP" = 1 ]; then
		echo "fresh-root: root kept in $DIR"
	elif [ -d "$DIR" ]; then
		# The mounts lived in the private namespace only; --one-file-system guards anyway.
		rm -rf --one-file-system "$DIR" || echo "fresh-root: could not remove all of $DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

T0=$SECONDS
echo "fresh-root: debootstrap bookworm (minbase) from $MIRROR into $DIR"
debootstrap --variant=minbase bookworm "$DIR" "$MIRROR" >"$DIR.debootstrap.log" 2>&1 ||
	{ tail -n 20 "$DIR.debootstrap.log"; die "debootstrap failed (log: $DIR.debootstrap.log)"; }
rm -f "$DIR.debootstrap.log"
{
	echo "deb $MIRROR bookworm main"
	echo "deb $MIRROR bookworm-updates main"
	[ -z "$SECURITY" ] || echo "deb $SECURITY bookworm-security main"
} >"$DIR/etc/apt/sources.list"
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
printf '#!/bin/sh\n# fresh-root.sh: no service starts inside the chroot\nexit 101\n' \
	>"$DIR/usr/sbin/policy-rc.d"
chmod 755 "$DIR/usr/sbin/policy-rc.d"
echo "fresh-root: bootstrapped in $((SECONDS - T0)) s"

echo "fresh-root: git clone of $SHA into /root/shoal"
git clone -q --no-local "$REPO" "$DIR/root/shoal"
git -C "$DIR/root/shoal" checkout -q --detach "$SHA"

# Inside: a private mount namespace, so no mount below reaches the host, and all of them go
# away with the namespace.
T1=$SECONDS
set +e
unshare --mount --propagation private -- env -i DIR="$DIR" JOBS="${JOBS:-}" \
	CTEST_ARGS="${CTEST_ARGS:-}" PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -euo pipefail -c '
	# The new root becomes the root of this mount namespace (pivot_root, not just chroot):
	# tools that enter a namespace (nsenter, as the systemd sandbox tests do) get the root of
	# the namespace, and systemctl compares its root with PID 1'"'"'s to detect a chroot.
	readlink /proc/self/ns/mnt >"$DIR.mntns"
	mount --bind "$DIR" "$DIR"
	mount -t proc proc "$DIR/proc"
	mount --rbind /sys "$DIR/sys"
	mount --rbind /dev "$DIR/dev"
	mount -t tmpfs -o mode=755 tmpfs "$DIR/run"
	mkdir -p "$DIR/run/lock" "$DIR/.oldroot" && chmod 1777 "$DIR/run/lock"
	cd "$DIR"
	pivot_root . .oldroot
	umount -l /.oldroot
	rmdir /.oldroot
	exec chroot / /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive CTEST_ARGS="$CTEST_ARGS" ${JOBS:+JOBS=$JOBS} \
		bash -euo pipefail -c "
		echo \"fresh-root: apt-get install make (the one package installed by hand)\"
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends make >/dev/null
		cd /root/shoal
		echo \"fresh-root: make test in /root/shoal\"
		make test CTEST_ARGS=\"\$CTEST_ARGS\" \${JOBS:+JOBS=\$JOBS}
	"' 2>&1 | tee "$DIR.make-test.log"
rc=${PIPESTATUS[0]}
set -e
echo "fresh-root: ---- summary (full log: $DIR.make-test.log)"
grep -E '^[0-9]+% tests passed|^Total Test time|^The following tests|^[[:space:]]+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Not Run|Subprocess)' \
	"$DIR.make-test.log" || echo "fresh-root: no ctest summary (make test stopped before ctest)"
echo "fresh-root: commit $SHA, make test exit $rc, $((SECONDS - T1)) s (bootstrap $((T1 - T0)) s)"
exit "$rc"
