#!/bin/bash
# System test (issue 5): agentd swaps a runtime=container service through a real Podman serving
# the Docker Engine API on a private unix socket (agentd --docker-host), every step checked
# with `podman ps` / `podman inspect` and by asking the container itself (busybox httpd).
#
# Podman is private to this run, as in test_container_plugin.sh: CONTAINERS_CONF (runc,
# cgroupfs, file events logger, own tmp and network config dirs) and CONTAINERS_STORAGE_CONF
# (own graphroot/runroot) under the work dir. Images v1, v2, v3 are busybox-static rootfs
# imported with `podman import` (no registry) running `httpd -f -p 127.0.0.1:HPORT -h /www`
# (host network) whose /www/version says the release; each is saved into its artifact as
# image.tar (release.ini: runtime = container, archive = image.tar) and removed from storage,
# so agentd really loads the archives. The health check (exec, on the host) fetches
# /version and wants its own release: healthy means "the engine runs this very release".
#  0. an unmanaged container named shoal-web-100 and labelled io.shoal.service=web (but not
#     io.shoal.managed) runs from the start: it must survive everything untouched
#  1. deploy v1 -> container shoal-web-1 runs, labels io.shoal.rev=1 and the artifact id
#  2. deploy v2 -> shoal-web-2 runs, shoal-web-1 is gone
#  3. agentctl rollback --wait -> rev 3 runs the v1 artifact again
#  4. kill -9 of agentd at rest (the container keeps running, same container id), then kill -9
#     in the middle of swaps (deploy v3, redeploys of v2 --force / v3 killed after a random
#     delay; every image stops 1.5 s after SIGTERM, so a swap lasts ~2 s), restart: the managed container ends on the desired revision, exactly one managed
#     container of the service exists and runs, the unmanaged one still runs.
# Cleanup (trap, every exit path): agentd and the API service stopped by PID, then
# `podman system reset -f` with the private configuration, then the work dir.
. "$(dirname "$0")/agentd_lib.sh"
need_root_and podman runc busybox jq ss timeout curl
BB=$(command -v busybox)
ldd "$BB" >/dev/null 2>&1 && skip "busybox at $BB is not static (install busybox-static)"
CURL=$(command -v curl)	# (static busybox's wget crashes in its resolver on some hosts)

SOCK=$WORK/api.sock
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
SVCPID=
AGPID=
P() { timeout 120 podman "$@" 2> >(grep -v 'level=warning' >&2); }

stop_pid() { # PID: TERM, bounded wait, KILL
	local p=$1
	[ -n "$p" ] || return 0
	kill "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}
cleanup() {
	local rc=$?
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		echo "--- agentd.log (tail)"; tail -n 40 "$WORK/agentd.log" 2>/dev/null
		echo "--- podman ps -a"
		P ps -a --format '{{.Names}} {{.State}} {{.Labels}}' 2>/dev/null
		echo "--- service log (tail)"; tail -n 20 "$WORK/service.log" 2>/dev/null
	fi
	stop_pid "$AGPID"
	stop_pid "$SVCPID"
	timeout 120 podman system reset -f >/dev/null 2>&1
	# As in test_container_plugin.sh: podman's teardown can lag its reset under load.
	for _ in $(seq 25); do findmnt -rn -o TARGET | grep -q "^$WORK" || break; sleep 0.2; done
	if findmnt -rn -o TARGET | grep -q "^$WORK"; then
		echo "note: podman left mounts under $WORK after its reset; unmounting them"
		findmnt -rn -o TARGET | grep "^$WORK" | sort -r | xargs -r -n1 umount -l
		findmnt -rn -o TARGET | grep -q "^$WORK" && fail "mounts left under $WORK"
	fi
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$WORK/tmp" "$WORK/networks" "$WORK/art" "$WORK/state"
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_config_dir = "$WORK/networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$WORK/tmp"
EOF
printf '[storage]\ndriver = "overlay"\nrunroot = "%s/runroot"\ngraphroot = "%s/graph"\n' \
	"$WORK" "$WORK" >"$CONTAINERS_STORAGE_CONF"

# free loopback ports: HPORT for the service (host network), GPORT (< 32768) for gossip
free_port() { # LO HI
	local p
	for _ in $(seq 100); do
		p=$(($1 + RANDOM % ($2 - $1)))
		[ -z "$(ss -Htuln "sport = :$p")" ] && { echo "$p"; return 0; }
	done
	return 1
}
HPORT=$(free_port 20000 30000) || die "no free port"
GPORT=$(free_port 10000 20000) || die "no free port"
IMG=localhost/shoal-sys-$RUNID

# mkimg NAME VERSION CMD-JSON: a busybox rootfs whose /www/version says VERSION
mkimg() {
	local r=$WORK/rootfs
	rm -rf "$r"; mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,www}
	cp "$BB" "$r/bin/busybox"
	for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
	echo 'root:x:0:0:root:/:/bin/sh' >"$r/etc/passwd"
	echo "$2" >"$r/www/version"
	# a slow stop (1.5 s after SIGTERM) keeps each swap in progress long enough to be killed
	cat >"$r/start.sh" <<'EOS'
#!/bin/sh
"$@" &
p=$!
trap 'sleep 1.5; kill $p; exit 0' TERM
wait
EOS
	chmod +x "$r/start.sh"
	tar -C "$r" -cf - . | P import -q --change "CMD $3" - "$1" >/dev/null
}
HTTPD="[\"/start.sh\",\"httpd\",\"-f\",\"-p\",\"127.0.0.1:$HPORT\",\"-h\",\"/www\"]"
mk_release() { # VERSION SEMVER
	local d=$WORK/art/$1
	mkdir -p "$d"
	mkimg "$IMG/app:$1" "$1" "$HTTPD" || return 1
	P save -q -o "$d/image.tar" "$IMG/app:$1" || return 1
	P rmi "$IMG/app:$1" >/dev/null || return 1
	cat >"$d/check.sh" <<EOF
#!/bin/sh
# healthy when the service on 127.0.0.1:$HPORT is release $1
v=\$($CURL -fsS -m 2 http://127.0.0.1:$HPORT/version) || exit 1
[ "\$v" = "$1" ] || { echo "serving '\$v', want $1"; exit 1; }
EOF
	chmod +x "$d/check.sh"
	cat >"$d/release.ini" <<EOF
[release]
service = web
runtime = container
version = $2
[container]
archive = image.tar
[health]
exec = ./check.sh
interval = 300ms
timeout = 3s
failures = 3
deadline = 30s
EOF
}
mk_release v1 1.0.0 || die "building v1"
mk_release v2 2.0.0 || die "building v2"
mk_release v3 3.0.0 || die "building v3"
mkimg "$IMG/other:1" other '["sleep","100000"]' || die "building the unmanaged image"
rm -rf "$WORK/rootfs"

podman system service --time=0 "unix://$SOCK" >"$WORK/service.log" 2>&1 &
SVCPID=$!
wait_for 30 "the Podman API socket" test -S "$SOCK"

# 0. the unmanaged container: a name and labels that look like ours, but not managed
P run -d --name shoal-web-100 --network none --label io.shoal.service=web \
	--label io.shoal.rev=100 "$IMG/other:1" >/dev/null || die "cannot run the unmanaged container"
UNMANAGED=$(P inspect -f '{{.Id}}' shoal-web-100) || die "inspect shoal-web-100"
ok "Podman API on $SOCK (pid $SVCPID); unmanaged shoal-web-100 running (${UNMANAGED:0:12})"

make_keyring "$WORK/keyring"
make_operator "$WORK"
start_agentd() {
	local e
	SHOAL_RETRY_MS=200 SHOAL_GOSSIP_PROBE_MS=200 "$AGENTD" --config /dev/null --node-name ct1 \
		--state-dir "$WORK/state" --socket "$WORK/agentd.sock" --socket-group "" \
		--bind "127.0.0.1:$GPORT" --keyring "$WORK/keyring" --cluster "ct$RUNID" \
		--docker-host "$SOCK" --retain-revisions 4 --log-level info \
		--operators-dir "$WORK/operators" >>"$WORK/agentd.log" 2>&1 &
	AGPID=$!
	e=$((SECONDS + 30))
	until ctl ping >/dev/null 2>&1; do
		kill -0 "$AGPID" 2>/dev/null || die "agentd exited: $(tail -n 5 "$WORK/agentd.log")"
		[ $SECONDS -lt $e ] || die "agentd does not answer after 30s"
		sleep 0.2
	done
}
kill_agentd() { # WHY
	kill -9 "$AGPID" 2>/dev/null || die "agentd (pid $AGPID) was not running"
	wait "$AGPID" 2>/dev/null
	note "agentd (pid $AGPID) killed with SIGKILL: $1"
	AGPID=
}
ctl() { timeout 60 "$AGENTCTL" --socket "$WORK/agentd.sock" "$@"; }
svc() {
	ctl --timeout 5s --json services | jq -ce 'first(.. | objects | select(.service? == "web"))'
}
state() { # DESIRED RUNNING HEALTH, not swapping
	svc | jq -e --argjson d "$1" --argjson r "$2" --arg h "$3" \
		'.desired_rev == $d and .running_rev == $r and .health == $h and .swapping == false'
}
converged() {
	svc | jq -e --argjson r "$1" '.desired_rev == $r and .running_rev == $r and .swapping == false'
}
wait_state() { # LIMIT DESIRED RUNNING HEALTH [soft]
	local end=$((SECONDS + $1)) m
	until state "$2" "$3" "$4" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			m="timed out after $1s waiting for desired $2, running $3, $4, not swapping"
			m="$m; agent says: $(svc 2>&1)"
			if [ "${5:-}" = soft ]; then fail "$m"; return 1; fi
			die "$m"
		fi
		sleep 0.3
	done
}
check() { local d=$1 out; shift; out=$("$@" 2>&1) || fail "$d: $out"; }

# managed containers of the service, all states: "NAME STATE REV ARTIFACT" per line
managed() {
	local n
	for n in $(P ps -aq --filter label=io.shoal.managed=true --filter label=io.shoal.service=web); do
		P inspect -f '{{.Name}} {{.State.Status}} {{index .Config.Labels "io.shoal.rev"}} {{index .Config.Labels "io.shoal.artifact"}}' "$n" || return 1
	done | sed 's|^/||'	# Docker's names start with a slash, Podman's do not
}
# runs_rev REV VERSION: exactly one managed container of web, shoal-web-REV, running release
# VERSION's artifact, serving VERSION; the unmanaged container still runs, untouched
runs_rev() {
	local rev=$1 v=$2 m got
	m=$(managed) || { echo "podman ps failed"; return 1; }
	[ "$(echo "$m" | grep -c .)" = 1 ] || { echo "managed containers, want 1: $m"; return 1; }
	[ "$m" = "shoal-web-$rev running $rev ${ID[$v]}" ] ||
		{ echo "managed: '$m', want 'shoal-web-$rev running $rev ${ID[$v]}'"; return 1; }
	[ "$(P inspect -f '{{.State.Running}}' "shoal-web-$rev")" = true ] ||
		{ echo "inspect: shoal-web-$rev not running"; return 1; }
	got=$(curl -fsS -m 2 "http://127.0.0.1:$HPORT/version") ||
		{ echo "nothing answers on 127.0.0.1:$HPORT"; return 1; }
	[ "$got" = "$v" ] || { echo "127.0.0.1:$HPORT serves '$got', want $v"; return 1; }
	unmanaged_ok
}
unmanaged_ok() {
	local s
	s=$(P inspect -f '{{.Id}} {{.State.Running}} {{index .Config.Labels "io.shoal.managed"}}' \
		shoal-web-100) || { echo "unmanaged shoal-web-100 is gone"; return 1; }
	[ "$s" = "$UNMANAGED true " ] || [ "$s" = "$UNMANAGED true <no value>" ] ||
		{ echo "unmanaged shoal-web-100 changed: '$s'"; return 1; }
}

T0=$SECONDS
start_agentd
ok "agentd up (pid $AGPID, --docker-host $SOCK, gossip 127.0.0.1:$GPORT)"
declare -A ID
for v in v1 v2 v3; do
	ID[$v]=$(ctl artifact import "$WORK/art/$v") || die "import $v"
done

# --- 1. v1
t=$SECONDS
ctl deploy web --key "$WORK/operator.key" "${ID[v1]}" --reason v1 >/dev/null || die "deploy v1"
wait_state 60 1 1 healthy
check "after deploy v1" runs_rev 1 v1
C1=$(P inspect -f '{{.Id}}' shoal-web-1)
ok "rev 1: shoal-web-1 runs v1 (${C1:0:12}) after $((SECONDS - t))s"

# --- 2. v2
t=$SECONDS
ctl deploy web --key "$WORK/operator.key" "${ID[v2]}" --reason v2 >/dev/null || die "deploy v2"
wait_state 60 2 2 healthy
check "after deploy v2" runs_rev 2 v2
ok "rev 2: shoal-web-2 runs v2, shoal-web-1 removed, after $((SECONDS - t))s"

# --- 3. operator rollback
t=$SECONDS
out=$(ctl rollback web --key "$WORK/operator.key" --reason "system test" --wait --timeout 60s 2>&1) ||
	die "rollback --wait: $out"
wait_state 60 3 3 healthy
check "after rollback" runs_rev 3 v1
ctl --json history web | jq -e 'first(.. | objects | select(.rev? == 3)) | .kind == "rollback"' \
	>/dev/null || fail "history: rev 3 is not a rollback: $(ctl --json history web)"
ok "rev 3 (rollback): shoal-web-3 runs the v1 artifact again, after $((SECONDS - t))s"

# --- 4a. kill -9 at rest: the restarted agent must not recreate the container
C3=$(P inspect -f '{{.Id}}' shoal-web-3)
kill_agentd "at rest, rev 3 healthy"
check "agentd dead, container alive" runs_rev 3 v1
start_agentd
wait_for 30 "rev 3 running after restart" converged 3
check "after kill -9 at rest + restart" runs_rev 3 v1
[ "$(P inspect -f '{{.Id}}' shoal-web-3)" = "$C3" ] ||
	fail "the restarted agent recreated shoal-web-3"
wait_state 30 3 3 healthy soft && ok "rev 3: agentd killed at rest and restarted: same" \
	"container ${C3:0:12}, healthy again"

# --- 4b. kill -9 in the middle of swaps, after random delays
# Each swap takes about 2 s (the old container's slow stop). Round 1 kills as soon as the
# agent reports the swap in progress; the others after a random delay of 0..1.99 s.
swapping() { svc | jq -e '.swapping == true or .running_rev != .desired_rev'; }
rev=3
midswap=0
for k in 1 2 3 4 5 6; do
	case $((k % 2)) in 1) a=v3; force= ;; *) a=v2; force=--force ;; esac
	t=$SECONDS
	ctl deploy web --key "$WORK/operator.key" "${ID[$a]}" $force --reason "swap $k" >/dev/null || die "deploy $a $force"
	rev=$((rev + 1))
	if [ $k = 1 ]; then
		wait_for 30 "the swap to rev $rev to be in progress" swapping
		d="$((SECONDS - t))s (as soon as the swap was seen in progress)"
	else
		d=$((RANDOM % 2)).$((RANDOM % 10))$((RANDOM % 10))
		sleep "$d"
		d=${d}s
	fi
	before=$(managed | tr '\n' ',')
	# the swap was not over yet if anything but the new container, running, was there
	[ "$before" = "shoal-web-$rev running $rev ${ID[$a]}," ] || midswap=$((midswap + 1))
	kill_agentd "$(printf 'swap %d to %s (rev %d), %s after the deploy; managed: %s' \
		"$k" "$a" "$rev" "$d" "$before")"
	check "right after kill -9 ($k)" unmanaged_ok
	t=$SECONDS
	start_agentd
	wait_for 90 "rev $rev running after restart" converged $rev
	check "after kill -9 + restart (rev $rev)" runs_rev $rev $a
	ok "rev $rev: killed ${d} after the deploy of $a, restarted: shoal-web-$rev runs $a" \
		"($((SECONDS - t))s after the restart)"
	wait_state 30 $rev $rev healthy soft && ok "rev $rev healthy after the restart"
done

# Retention (--retain-revisions 4) dropped revisions 1..rev-4 from the store; after its swaps
# the agent has the container plugin forget them: no image tag r<N> is left for those.
tags() { P images --format '{{.Repository}}:{{.Tag}}' | sed -n 's|^localhost/shoal/web:r||p'; }
no_dropped_tags() { ! tags | awk -v lim=$((rev - 4)) '$1 <= lim' | grep -q .; }
wait_for 30 "image tags of revisions dropped by retention to be removed" no_dropped_tags
ok "retention: no image tag left for revisions 1..$((rev - 4)); kept: r$(tags | sort -n | paste -sd, | sed 's/,/ r/g')"

note "$midswap of 6 kills landed before the swap was over (the rest right after it)"
[ $midswap -gt 0 ] || note "no kill landed in the middle of a swap this time"
stop_pid "$AGPID"
AGPID=
check "after agentd stopped" runs_rev $rev $a
ok "agentd stopped cleanly; the container it manages keeps running ($((SECONDS - T0))s total)"
[ "$FAILS" = 0 ] && echo "PASS: test_agentd_container"
exit 0
