#!/bin/bash
# tests/system/sbx.sh - Shoal's systemd sandbox: a real systemd as PID 1 of private pid, mount,
# uts and ipc namespaces, fenced off from the host's state.
#
# usage: sbx.sh start NAME        boot; waits (bounded) until `systemctl is-system-running` settles
#        sbx.sh exec  NAME CMD... run CMD inside the sandbox's namespaces
#        sbx.sh pid   NAME        host pid of the sandbox's systemd (exit 1 if not running)
#        sbx.sh stop  NAME        poweroff, SIGKILL after a bound, remove the sandbox's cgroups
# env:   SBX_BASE  state directory (required: tests pass a unique one, e.g. from mktemp -d);
#                  $SBX_BASE/NAME/system is /etc/systemd/system inside, $SBX_BASE/NAME/share is
#                  visible inside at the same path. Host /tmp is NOT visible inside.
#        SBX_OWNER a pid (the test's): when it dies without calling `stop` (SIGKILL by a
#                  test timeout: no trap runs), a watcher stops the sandbox within seconds.
#
# Why all the fencing: a bare `unshare --pid --mount --fork systemd` shares the host's
# filesystems, so its tmpfiles service empties the host's /tmp, it starts the host's enabled
# units, writes the host's journal and /var/lib/systemd, mounts extra cgroup v1 hierarchies
# (kernel-global) and leaves cgroups at the root of every hierarchy. Here:
#   1. the sandbox lives in its own cgroup below the caller's memory cgroup (every hierarchy
#      but cpuset), recorded in $ST/cgcreated and removed by `stop`;
#   2. /sys/fs/cgroup is a private, read-only tmpfs holding only the existing hierarchies;
#   3. /dev is private (null zero full random urandom tty, own devpts); /dev/console is a file;
#   4. /etc/systemd/system, /etc/hostname and /etc/machine-id are private binds; /run, /tmp,
#      /var/tmp, /var/lib/systemd and /var/log/journal are private tmpfs;
#   5. /proc is fresh; /proc/sys, /proc/sysrq-trigger and /sys are read-only bind remounts
#      (`remount,bind,ro`: a plain `remount,ro` of /sys would change the host's mount);
#   6. units that touch shared state (tmpfiles, sysctl, udev, logind, gettys, timers, ...) are
#      masked through /run/systemd/system symlinks to /dev/null;
#   7. journald is volatile, generators are off, and systemd boots sbx.target (basic + dbus +
#      journald) instead of the host's default target.
# Before any mount, the init step checks that it really is PID 1 of a new pid namespace in a
# mount namespace other than the host's, and makes every mount private (no propagation back).
# Each step runs under `set -e`: if anything fails, the init exits and systemd never starts.
set -euo pipefail
SELF=$(readlink -f "$0")
cmd=${1:?usage: sbx.sh start|exec|pid|stop NAME}
NAME=${2:?usage: sbx.sh $cmd NAME}
shift 2
case $NAME in *[!a-zA-Z0-9_.-]*|.*) echo "sbx: bad name '$NAME'" >&2; exit 2 ;; esac
BASE=${SBX_BASE:?sbx: set SBX_BASE to a directory of your own}
ST=$BASE/$NAME

hiers() { findmnt -rn -t cgroup,cgroup2 -o TARGET | grep -v cpuset | sed 's|$|/|'; }

# The sandbox's systemd, only if it is still the very process we started (pid + start time).
sbxpid() {
	local p st
	[ -s "$ST/pid" ] || return 1
	read -r p st < "$ST/pid" || return 1
	[ -n "$p" ] && [ "$(cut -d' ' -f22 "/proc/$p/stat" 2>/dev/null)" = "$st" ] && echo "$p"
}

MASK="systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service
 systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer systemd-remount-fs.service
 systemd-sysctl.service systemd-modules-load.service modprobe@.service
 kmod-static-nodes.service systemd-udevd.service systemd-udevd-control.socket
 systemd-udevd-kernel.socket systemd-udev-trigger.service systemd-udev-settle.service
 systemd-hwdb-update.service systemd-sysusers.service systemd-firstboot.service
 systemd-machine-id-commit.service ldconfig.service systemd-journal-catalog-update.service
 systemd-update-done.service systemd-random-seed.service systemd-update-utmp.service
 systemd-update-utmp-runlevel.service systemd-journal-flush.service
 systemd-journald-audit.socket systemd-binfmt.service proc-sys-fs-binfmt_misc.automount
 proc-sys-fs-binfmt_misc.mount dev-hugepages.mount sys-kernel-config.mount
 sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount
 systemd-logind.service getty.target console-getty.service getty-static.service
 serial-getty@.service getty@.service systemd-ask-password-wall.path
 systemd-ask-password-console.path systemd-timesyncd.service systemd-pstore.service
 systemd-repart.service systemd-pcrphase.service systemd-pcrphase-sysinit.service
 e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer
 man-db.timer dpkg-db-backup.timer systemd-networkd.service systemd-resolved.service
 networking.service ssh.service cron.service rsyslog.service"

case $cmd in
start)
	if sbxpid >/dev/null; then echo "sbx: $NAME already running" >&2; exit 1; fi
	mkdir -p "$ST/system" "$ST/share"
	: > "$ST/console.log"; : > "$ST/cgcreated"; rm -f "$ST/pid" "$ST/hostpid"
	echo "$NAME" > "$ST/hostname"
	tr -d '-' < /proc/sys/kernel/random/uuid > "$ST/machine-id"
	mcg=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
	CGP="${mcg%/}/shoal-sbx-$NAME"
	echo "$CGP" > "$ST/cgpath"
	# retried: a concurrent suite's `stop` may remove a shared parent while mkdir -p runs
	for h in $(hiers); do
		for _ in 1 2 3; do mkdir -pv "$h${CGP#/}" && break; sleep 0.1; done
	done | sed -n "s/^mkdir: created directory '\(.*\)'$/\1/p" >> "$ST/cgcreated"
	cat > "$ST/system/sbx.target" <<'EOF'
[Unit]
Description=Shoal sandbox target
Requires=basic.target
Wants=dbus.socket systemd-journald.socket
After=basic.target
AllowIsolate=yes
EOF
	HOSTMNT=$(readlink /proc/self/ns/mnt) HOSTPID=$(readlink /proc/self/ns/pid) \
	ST="$ST" CGP="$CGP" MASK="$MASK" setsid \
		unshare --pid --mount --uts --ipc --fork --kill-child /bin/bash "$SELF" _init "$NAME" \
		</dev/null >"$ST/init.log" 2>&1 &
	# The init writes its host pid (it becomes systemd by exec) before anything else.
	p=""
	for _ in $(seq 100); do
		[ -s "$ST/hostpid" ] && p=$(cat "$ST/hostpid") && [ -n "$p" ] && break
		sleep 0.1
	done
	if [ -z "$p" ]; then echo "sbx: no init process" >&2; cat "$ST/init.log" >&2; exit 1; fi
	echo "$p $(cut -d' ' -f22 /proc/$p/stat)" > "$ST/pid"
	for _ in $(seq 150); do
		[ -S "/proc/$p/root/run/systemd/private" ] && break
		[ -d "/proc/$p" ] || break
		sleep 0.2
	done
	if ! [ -S "/proc/$p/root/run/systemd/private" ]; then
		echo "sbx: systemd did not come up" >&2; cat "$ST/init.log" >&2; exit 1
	fi
	if [ -n "${SBX_OWNER:-}" ]; then
		# detached watcher: ends by itself once the sandbox is stopped (pid file gone)
		( cd / && setsid bash -c 'while [ -s "$1/pid" ] && kill -0 "$2" 2>/dev/null; do
			sleep 1; done; [ -s "$1/pid" ] && exec bash "$3" stop "$4"' \
			watch "$ST" "$SBX_OWNER" "$SELF" "$NAME" </dev/null >"$ST/watch.log" 2>&1 & )
	fi
	st=$(timeout 60 nsenter -t "$p" -m -p systemctl is-system-running --wait 2>&1) || true
	echo "sbx: $NAME host pid $p state: $st"
	case $st in running|degraded) ;; *) exit 1 ;; esac
	;;
_init)
	# PID 1 of the new namespaces, before systemd. Refuse to touch anything unless the
	# namespaces really are new: every mount below would otherwise land on the host.
	[ "$$" = 1 ] || { echo "sbx: init is not PID 1" >&2; exit 1; }
	[ "$(readlink /proc/self/ns/mnt)" != "$HOSTMNT" ] || { echo "sbx: host mount ns" >&2; exit 1; }
	mount --make-rprivate /
	# our pid as the host sees it: /proc is still the host's procfs here, and `read` is a
	# builtin, so /proc/self is this shell, which execs systemd below (same pid)
	read -r hp _ < /proc/self/stat
	echo "$hp" > "$ST/hostpid"
	for h in $(hiers); do echo 0 > "$h${CGP#/}/cgroup.procs"; done
	# (2) private read-only /sys/fs/cgroup with only the existing hierarchies
	mkdir -p "$ST/cg"; mount --rbind /sys/fs/cgroup "$ST/cg"
	mount -t tmpfs -o mode=755,size=64k tmpfs /sys/fs/cgroup
	for h in $(findmnt -rn -t cgroup,cgroup2 -o TARGET | grep "^$ST/cg/"); do
		mkdir -p "/sys/fs/cgroup/${h##*/}"; mount --move "$h" "/sys/fs/cgroup/${h##*/}"
	done
	umount -l "$ST/cg"; mount -o remount,ro /sys/fs/cgroup
	# (3) private /dev
	mount -t tmpfs -o mode=755,nosuid,size=8m tmpfs /dev
	for d in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
		set -- $d; mknod -m 666 "/dev/$1" c "$2" "$3"
	done
	mkdir -p /dev/pts /dev/shm /dev/mqueue
	ln -s pts/ptmx /dev/ptmx; ln -s /proc/self/fd /dev/fd
	ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout
	ln -s /proc/self/fd/2 /dev/stderr
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
	touch /dev/console; mount --bind "$ST/console.log" /dev/console
	# (4) private config and state; the binds from $ST come first, $ST may live under /tmp
	mount --bind "$ST/system" /etc/systemd/system
	mount --bind "$ST/hostname" /etc/hostname
	mount --bind "$ST/machine-id" /etc/machine-id
	mount -t tmpfs -o mode=755 tmpfs /var/lib/systemd
	if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=2755 tmpfs /var/log/journal; fi
	mount -t tmpfs -o mode=755 tmpfs /run
	mkdir /run/.share; mount --bind "$ST/share" /run/.share
	mount -t tmpfs -o mode=1777 tmpfs /var/tmp
	mount -t tmpfs -o mode=1777 tmpfs /tmp
	mkdir -p "$ST/share"; mount --move /run/.share "$ST/share"; rmdir /run/.share
	# (5) fresh /proc, read-only kernel knobs
	mount -t proc proc /proc
	for k in /proc/sys /proc/sysrq-trigger; do
		if [ -e "$k" ]; then mount --bind "$k" "$k"; mount -o remount,bind,ro "$k"; fi
	done
	mount -o remount,bind,ro /sys
	# (6) masks, (7) manager and journald settings
	mkdir -p /run/systemd/system /run/systemd/system.conf.d /run/systemd/journald.conf.d \
		/run/sbx-nogen
	for u in $MASK; do ln -s /dev/null "/run/systemd/system/$u"; done
	printf '[Manager]\nShowStatus=no\nDefaultTimeoutStopSec=10s\n' \
		> /run/systemd/system.conf.d/sbx.conf
	printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' > /run/systemd/journald.conf.d/sbx.conf
	hostname "$NAME"
	exec env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		SYSTEMD_GENERATOR_PATH=/run/sbx-nogen \
		/lib/systemd/systemd --system --unit=sbx.target
	;;
exec)
	p=$(sbxpid) || { echo "sbx: $NAME not running" >&2; exit 1; }
	exec nsenter -t "$p" -m -p -u -i -- "$@"
	;;
pid)
	sbxpid
	;;
stop)
	if p=$(sbxpid); then
		# SIGRTMIN+4 asks systemd as PID 1 for a clean poweroff (`systemctl poweroff`
		# would go through the masked logind)
		kill -s RTMIN+4 "$p" 2>/dev/null || true
		for _ in $(seq 100); do [ -d "/proc/$p" ] || break; sleep 0.2; done
		if [ -d "/proc/$p" ]; then
			echo "sbx: $NAME: SIGKILL to $p"
			kill -KILL "$p" 2>/dev/null || true
			for _ in $(seq 50); do [ -d "/proc/$p" ] || break; sleep 0.1; done
		fi
	fi
	rm -f "$ST/pid" "$ST/hostpid"
	CGP=$(cat "$ST/cgpath" 2>/dev/null || true)
	if [ -n "$CGP" ]; then
		for _ in $(seq 30); do	# exiting processes may hold a cgroup for a moment
			busy=0
			for h in $(hiers); do
				if [ -d "$h${CGP#/}" ]; then
					find "$h${CGP#/}" -depth -type d -exec rmdir {} + 2>/dev/null ||
						busy=1
				fi
			done
			[ $busy = 0 ] && break
			sleep 0.1
		done
	fi
	if [ -s "$ST/cgcreated" ]; then
		# parents we created, deepest first; busy ones (another sandbox inside) stay
		tac "$ST/cgcreated" | while read -r d; do
			if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
		done
	fi
	left=0
	for h in $(hiers); do
		if [ -n "$CGP" ] && [ -d "$h${CGP#/}" ]; then echo "sbx: WARN cgroup $h${CGP#/} left"; left=1; fi
	done
	echo "sbx: $NAME stopped"
	exit $left
	;;
*)
	echo "sbx: unknown command $cmd" >&2; exit 2
	;;
esac
