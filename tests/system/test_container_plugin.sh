#!/bin/bash
# tests/system/test_container_plugin.sh: plugins/container.c against a real Podman serving the
# Docker Engine API (v1.41) on a private unix socket.
#
# Everything Podman touches is private to this run: CONTAINERS_CONF (runc, cgroupfs, file
# events logger, lowered ulimits, own tmp_dir and network config dir) and
# CONTAINERS_STORAGE_CONF (own graphroot/runroot) under a fresh temp dir. Images are built
# from busybox-static with `podman import` (no registry), saved with `podman save` into
# artifact directories, and removed from storage so the plugin really loads them.
# Cleanup on every exit path: the API service is stopped by PID, then `podman system reset -f`
# with the same variables (the overlay graphroot is a mount point), then the temp dir.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (rootful podman with a private storage)"
for c in podman runc busybox ss timeout; do
	command -v $c >/dev/null || skip "$c is missing"
done
BB=$(command -v busybox)
ldd "$BB" >/dev/null 2>&1 && skip "busybox at $BB is not static (install busybox-static)"
BIN=${SHOAL_BUILD_DIR:?SHOAL_BUILD_DIR not set}/tests/system/test_container_plugin
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/shoal-ct.XXXXXX")	# short: the socket path must fit 107 bytes
SOCK=$W/api.sock
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf
SVC=
RC=1
P() { timeout 120 podman "$@" 2> >(grep -v 'level=warning' >&2); }
cleanup() {
	if [ -n "$SVC" ]; then
		kill "$SVC" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$SVC" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$SVC" 2>/dev/null
		wait "$SVC" 2>/dev/null
	fi
	timeout 120 podman system reset -f >/dev/null 2>&1
	# Under load podman's overlay teardown can lag its reset: give it a bounded moment, then
	# detach what is left; only a mount that survives that is a cleanup failure.
	for _ in $(seq 25); do findmnt -rn -o TARGET | grep -q "^$W" || break; sleep 0.2; done
	if findmnt -rn -o TARGET | grep -q "^$W"; then
		echo "note: podman left mounts under $W after its reset; unmounting them"
		findmnt -rn -o TARGET | grep "^$W" | sort -r | xargs -r -n1 umount -l
		if findmnt -rn -o TARGET | grep -q "^$W"; then
			echo "FAIL: mounts left under $W"; RC=1
		fi
	fi
	rm -rf "$W"
	echo "exit $RC"
	exit $RC
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$W/tmp" "$W/networks"
cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_config_dir = "$W/networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$W/tmp"
EOF
printf '[storage]\ndriver = "overlay"\nrunroot = "%s/runroot"\ngraphroot = "%s/graph"\n' \
	"$W" "$W" > "$CONTAINERS_STORAGE_CONF"

# A free loopback port for the httpd images (they run with host networking).
PORT=
for _ in $(seq 50); do
	p=$((20000 + RANDOM % 40000))
	[ -z "$(ss -Htln "sport = :$p")" ] && { PORT=$p; break; }
done
[ -n "$PORT" ] || { echo "FAIL: no free port"; exit 1; }

ID=$(basename "$W" | tr 'A-Z.' 'a-z-')
# mkimg NAME VERSION CMD-JSON: a busybox rootfs whose /www/version says VERSION
mkimg() {
	local r=$W/rootfs
	rm -rf "$r"; mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,www}
	cp "$BB" "$r/bin/busybox"
	for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
	echo 'root:x:0:0:root:/:/bin/sh' > "$r/etc/passwd"
	echo "$2" > "$r/www/version"
	tar -C "$r" -cf - . | P import -q --change "CMD $3" - "$1" >/dev/null
}
HTTPD="[\"httpd\",\"-f\",\"-p\",\"127.0.0.1:$PORT\",\"-h\",\"/www\"]"
set -e
mkdir -p "$W/art1" "$W/art2" "$W/bad"
mkimg "localhost/$ID/app:v1" v1 "$HTTPD"
mkimg "localhost/$ID/app:v2" v2 "$HTTPD"
mkimg "localhost/$ID/app:v3" v3 "$HTTPD"
mkimg "localhost/$ID/crash:1" crash '["sh","-c","sleep 0.3; exit 3"]'
P save -q -o "$W/art1/image.tar" "localhost/$ID/app:v1"
P save -q -o "$W/art2/image.tar" "localhost/$ID/app:v2"
P rmi "localhost/$ID/app:v1" "localhost/$ID/app:v2" >/dev/null
echo "not a tar archive" > "$W/bad/image.tar"
rm -rf "$W/rootfs"
set +e
echo "images: $(P images --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')"

podman system service --time=0 "unix://$SOCK" > "$W/service.log" 2>&1 &
SVC=$!

export CT_SOCK=$SOCK CT_WORK=$W CT_PORT=$PORT CT_ART1=$W/art1 CT_ART2=$W/art2 CT_BAD=$W/bad
export CT_ART1_NAME=localhost/$ID/app:v1 CT_NAMED=localhost/$ID/app:v3 CT_CRASH=localhost/$ID/crash:1
timeout 280 "$BIN"
RC=$?
if [ $RC != 0 ]; then
	echo "--- podman ps -a"
	P ps -a --format '{{.Names}} {{.State}} {{.Labels}}'
	echo "--- podman images"
	P images
	echo "--- service log (last 40 lines)"
	tail -n 40 "$W/service.log"
fi
exit $RC
