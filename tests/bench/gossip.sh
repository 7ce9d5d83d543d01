#!/usr/bin/env bash
# Gossip benchmark: Shoal's gossip transport (tests/integration/gossipd, one process per node)
# against HashiCorp Serf (if installed) at the same cluster sizes, on loopback (127.a.b.0/24).
#
#   tests/bench/gossip.sh [-b BUILD_DIR] [-n "16 64 128"] [--stop-phase] [--no-serf | --serf-only]
#                         [--rest SECONDS] [--trials K] [--kills K]
#
# Both run with their default (LAN) timings: probe every 1 s, 500 ms timeout (Serf) / every
# 800 ms, 400 ms timeout (Shoal); push-pull / anti-entropy every 30 s (Shoal: a hash of the
# digests first, the digests only when they differ); gossip rounds every 200 ms (Serf) / 50 ms,
# news after ~12 ms (Shoal: a round with nothing queued sends nothing); both encrypt (Shoal:
# XChaCha20-Poly1305; Serf: -encrypt, AES-GCM). The machine's load average is recorded at the start of each run: the
# figures are only comparable between runs at similar load.
# Measured per system and N (all from the processes' own logs, stamped in wall-clock ms; Serf's
# lines are stamped as they are read from its stdout):
#   converge     time from the last process launch until every node sees all N alive
#   dissem p100  time from `put`/`serf event` (client spawned at t0) until the last node has it;
#                median over K trials (default 5), each from a random node
#   detect p50/p100  after kill -9 of a random node, time until half / all the others mark it
#                dead (Shoal "dead", Serf "EventMemberFailed"); K kills one after the other
#                (default 3, each once the previous one is dead everywhere, the cluster one
#                smaller each time): median p50 / median p100 over them, and the worst p100
#   false dead   (--stop-phase, 2 min) one node SIGSTOPped 2 s every 20 s: "dead"/"failed"
#                declarations about anyone during the phase (all false: nobody died)
#   RSS          median and max VmRSS per process at rest
#   CPU at rest  mean CPU share per process over a rest window (default 30 s)
#   B/s at rest  bytes per second per node sent on the wire at rest (IP packets from the
#                cluster's addresses, counted by an nftables rule; "n/a" without nft)
#   load         1-minute load average when the run started (and when it ended)
# Timing caveat: Serf's lines are stamped by a bash reader of its stdout, which adds a process
# wake-up (~ms, more under load) to every Serf figure; Shoal stamps inside the process.
# Use a build without sanitizers (e.g. `make build`, build/) for meaningful figures.
# KEEP_LOGS=1 keeps every process's log in the work directory (printed) for inspection.
# Nothing here is run by ctest.
set -u

BUILD=""
SIZES="16 64"
STOP_PHASE=0
SERF=1
SERF_ONLY=0
REST=30
TRIALS=5
KILLS=3
while [ $# -gt 0 ]; do
	case "$1" in
	-b) BUILD=$2; shift 2 ;;
	-n) SIZES=$2; shift 2 ;;
	--stop-phase) STOP_PHASE=1; shift ;;
	--no-serf) SERF=0; shift ;;
	--serf-only) SERF_ONLY=1; shift ;;
	--rest) REST=$2; shift 2 ;;
	--trials) TRIALS=$2; shift 2 ;;
	--kills) KILLS=$2; shift 2 ;;
	-h|--help) sed -n '2,34p' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "$BUILD" ] || BUILD=${SHOAL_BUILD_DIR:-$HERE/../../build}
G="$BUILD/tests/integration/gossipd"
[ -x "$G" ] || { echo "gossipd not found at $G (build the tree first)" >&2; exit 1; }
if [ $SERF = 1 ] && ! command -v serf >/dev/null; then
	echo "serf not installed: Shoal only" >&2
	SERF=0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-gossip.XXXXXX")
NFT_TABLE="shoal_bench_$$"
HZ=$(getconf CLK_TCK)
declare -a PIDS=()
declare -A RES=()
NFT=0

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	[ $NFT = 1 ] && nft delete table inet "$NFT_TABLE" 2>/dev/null
	[ -n "${KEEP_LOGS:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
stamp() { local line; while IFS= read -r line; do printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"; done; }

if command -v nft >/dev/null && nft add table inet "$NFT_TABLE" 2>/dev/null; then
	NFT=1
	nft add chain inet "$NFT_TABLE" out '{ type filter hook output priority 0; policy accept; }'
fi

# Count bytes sent from SUBNET (a /24). Echoes the counter's byte total.
nft_watch() {
	[ $NFT = 1 ] || return 0
	nft flush chain inet "$NFT_TABLE" out
	nft add rule inet "$NFT_TABLE" out ip saddr "$1.0/24" counter
}
nft_bytes() {
	[ $NFT = 1 ] || { echo 0; return; }
	nft list chain inet "$NFT_TABLE" out | sed -n 's/.*counter packets [0-9]* bytes \([0-9]*\).*/\1/p'
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
pct() { # pct P: P-th percentile (nearest rank) of stdin numbers
	sort -n | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } i = int((p * NR + 99) / 100); if (i < 1) i = 1; print a[i] }'
}

# wait_logs SECONDS PATTERN COUNT FILES...: until COUNT files contain PATTERN (grep -E)
wait_logs() {
	local secs=$1 pat=$2 want=$3
	shift 3
	local end=$((SECONDS + secs)) n
	while [ $SECONDS -lt $end ]; do
		n=$(grep -lE -- "$pat" "$@" 2>/dev/null | wc -l)
		[ "$n" -ge "$want" ] && return 0
		sleep 0.2
	done
	return 1
}

# first_ms PATTERN FILE: timestamp (ms) of the first line matching PATTERN (Serf lines: us)
first_ms() {
	awk -v pat="$2" -v sys="$1" '$0 ~ pat { t = $1; if (sys == "serf") t = $1 / 1000; printf "%.0f\n", t; exit }' "$3"
}

# ---- per system: start / names / patterns -----------------------------------------------

start_shoal() { # N NET PORT
	local n=$1 net=$2 port=$3 i
	echo "$(head -c 32 /dev/urandom | base64 -w0)" >"$WORK/kr"
	"$G" --bind "$net.1:$port" --keyring "$WORK/kr" --name n1 --cluster bench \
		--ctl "$WORK/c1.sock" >"$WORK/n1.log" 2>&1 &
	PIDS+=($!)
	local end=$((SECONDS + 20))
	until "$G" --ctl "$WORK/c1.sock" --send count >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { echo "shoal seed did not start" >&2; return 1; }
		sleep 0.1
	done
	for i in $(seq 2 "$n"); do
		"$G" --bind "$net.$i:$port" --keyring "$WORK/kr" --name "n$i" --cluster bench \
			--ctl "$WORK/c$i.sock" --join "$net.1:$port" >"$WORK/n$i.log" 2>&1 &
		PIDS+=($!)
	done
}

start_serf() { # N NET PORT
	local n=$1 net=$2 port=$3 i key
	key=$(head -c 32 /dev/urandom | base64 -w0)
	serf agent -node n1 -bind "$net.1:$port" -rpc-addr "$net.1:$((port + 1))" -encrypt "$key" \
		-log-level info > >(stamp >"$WORK/n1.log") 2>&1 &
	PIDS+=($!)
	local end=$((SECONDS + 20))
	until serf members -rpc-addr "$net.1:$((port + 1))" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { echo "serf seed did not start" >&2; return 1; }
		sleep 0.1
	done
	for i in $(seq 2 "$n"); do
		serf agent -node "n$i" -bind "$net.$i:$port" -rpc-addr "$net.$i:$((port + 1))" \
			-encrypt "$key" -join "$net.1:$port" -log-level info \
			> >(stamp >"$WORK/n$i.log") 2>&1 &
		PIDS+=($!)
	done
}

# Time (ms) node log FILE first saw all N alive.
conv_ms() { # SYS N FILE
	if [ "$1" = shoal ]; then
		awk -v n="$2" '$2 == "member" && $6 == "alive=" n { print $1; exit }' "$3"
	else
		awk -v n="$2" '/EventMemberJoin: / { for (i = 1; i <= NF; i++) if ($i == "EventMemberJoin:") seen[$(i + 1)] = 1;
			c = 0; for (k in seen) c++; if (c >= n) { printf "%.0f\n", $1 / 1000; exit } }' "$3"
	fi
}

dead_pat() { # SYS NAME
	if [ "$1" = shoal ]; then echo " member $2 dead "; else echo "EventMemberFailed: $2 "; fi
}
any_dead_pat() { if [ "$1" = shoal ]; then echo " member [^ ]+ dead "; else echo "EventMemberFailed: "; fi; }

# ---- one run -----------------------------------------------------------------------------

run() { # SYS N
	local sys=$1 n=$2 i net port t_launch t0 f
	net="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))"
	port=$((20000 + RANDOM % 20000))
	rm -f "$WORK"/n*.log "$WORK"/c*.sock
	PIDS=()
	echo "== $sys N=$n on $net.1-$n" >&2
	RES[$sys,$n,load]=$(cut -d' ' -f1 /proc/loadavg)
	"start_$sys" "$n" "$net" "$port" || return 1
	t_launch=$(now_ms)
	local logs=()
	for i in $(seq 1 "$n"); do logs+=("$WORK/n$i.log"); done

	# converge
	local timeout=$((60 + n))
	local end=$((SECONDS + timeout)) ok=0 worst
	while [ $SECONDS -lt $end ]; do
		ok=1
		for f in "${logs[@]}"; do
			[ -n "$(conv_ms "$sys" "$n" "$f")" ] || { ok=0; break; }
		done
		[ $ok = 1 ] && break
		sleep 0.5
	done
	if [ $ok = 1 ]; then
		worst=$(for f in "${logs[@]}"; do conv_ms "$sys" "$n" "$f"; done | sort -n | tail -n 1)
		RES[$sys,$n,converge]="$((worst - t_launch)) ms"
	else
		RES[$sys,$n,converge]="> ${timeout} s"
	fi

	# rest: CPU, bytes, RSS
	sleep 5
	nft_watch "$net"
	local b0 b1 c0=() c1=()
	b0=$(nft_bytes)
	for p in "${PIDS[@]}"; do c0+=("$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"); done
	sleep "$REST"
	for p in "${PIDS[@]}"; do c1+=("$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"); done
	b1=$(nft_bytes)
	local cpu
	cpu=$(for i in "${!PIDS[@]}"; do echo $((${c1[$i]} - ${c0[$i]})); done |
		awk -v hz="$HZ" -v s="$REST" '{ t += $1; k++ } END { printf "%.3f %%", 100 * t / hz / s / k }')
	RES[$sys,$n,cpu]=$cpu
	if [ $NFT = 1 ]; then
		RES[$sys,$n,bps]="$(( (b1 - b0) / REST / n )) B/s"
	else
		RES[$sys,$n,bps]="n/a"
	fi
	local rss
	rss=$(for p in "${PIDS[@]}"; do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done)
	RES[$sys,$n,rss]="$(echo "$rss" | median) / $(echo "$rss" | sort -n | tail -n 1) KiB"

	# dissemination
	local lat=() k origin key
	for k in $(seq 1 "$TRIALS"); do
		origin=$((RANDOM % n + 1))
		key="bench$k$RANDOM"
		t0=$(now_ms)
		if [ $sys = shoal ]; then
			"$G" --ctl "$WORK/c$origin.sock" --send "put $key 1 x" >/dev/null
			wait_logs 30 " record [0-9a-f]+ $key 1 " $((n - 1)) "${logs[@]}" || { lat+=(timeout); continue; }
			worst=$(for f in "${logs[@]}"; do first_ms shoal " record [0-9a-f]+ $key 1 " "$f"; done | sort -n | tail -n 1)
		else
			serf event -coalesce=false -rpc-addr "$net.$origin:$((port + 1))" "$key" x >/dev/null
			wait_logs 30 "user-event: $key\$" "$n" "${logs[@]}" || { lat+=(timeout); continue; }
			worst=$(for f in "${logs[@]}"; do first_ms serf "user-event: $key\$" "$f"; done | sort -n | tail -n 1)
		fi
		lat+=($((worst - t0)))
		sleep 1
	done
	RES[$sys,$n,dissem]="$(printf '%s\n' "${lat[@]}" | grep -v timeout | median) ms ($(printf '%s ' "${lat[@]}"))"

	# false positives under SIGSTOP
	if [ $STOP_PHASE = 1 ]; then
		local stopped=$((n / 2 + 1)) d0 d1 pat
		pat=$(any_dead_pat $sys)
		d0=$(cat "${logs[@]}" | grep -cE -- "$pat")
		for k in 1 2 3 4 5 6; do
			sleep 18
			kill -STOP "${PIDS[$((stopped - 1))]}"
			sleep 2
			kill -CONT "${PIDS[$((stopped - 1))]}"
		done
		sleep 5
		d1=$(cat "${logs[@]}" | grep -cE -- "$pat")
		RES[$sys,$n,falsedead]=$((d1 - d0))
	else
		RES[$sys,$n,falsedead]="(skipped)"
	fi

	# detection of a kill -9, KILLS times (victims among nodes 2..n, never twice)
	local k victim others pat det p50s=() p100s=() dead=" "
	for k in $(seq 1 "$KILLS"); do
		[ $((n - 1 - k)) -ge 2 ] || break
		victim=$((RANDOM % (n - 1) + 2))
		while [[ $dead == *" $victim "* ]]; do victim=$((RANDOM % (n - 1) + 2)); done
		others=()
		for i in $(seq 1 "$n"); do
			[ "$i" != "$victim" ] && [[ $dead != *" $i "* ]] && others+=("$WORK/n$i.log")
		done
		pat=$(dead_pat $sys "n$victim")
		t0=$(now_ms)
		kill -9 "${PIDS[$((victim - 1))]}"
		{ wait "${PIDS[$((victim - 1))]}"; } 2>/dev/null # reaped here: no "Killed" line from bash
		dead="$dead$victim "
		if ! wait_logs 120 "$pat" ${#others[@]} "${others[@]}"; then
			p100s+=(999999)
			break
		fi
		det=$(for f in "${others[@]}"; do echo $(($(first_ms $sys "$pat" "$f") - t0)); done)
		p50s+=("$(echo "$det" | pct 50)")
		p100s+=("$(echo "$det" | pct 100)")
		sleep 2
	done
	local worst
	worst=$(printf '%s\n' "${p100s[@]}" | sort -n | tail -n 1)
	if [ ${#p100s[@]} -eq 0 ]; then
		RES[$sys,$n,detect]="(skipped: N too small)"
	elif [ "$worst" = 999999 ]; then
		RES[$sys,$n,detect]="> 120 s"
	else
		RES[$sys,$n,detect]="$(printf '%s\n' "${p50s[@]}" | median) / $(printf '%s\n' "${p100s[@]}" | median) / $worst ms (${#p100s[@]} kills)"
	fi

	RES[$sys,$n,load]="${RES[$sys,$n,load]} -> $(cut -d' ' -f1 /proc/loadavg)"
	# tear down
	for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	PIDS=()
	if [ -n "${KEEP_LOGS:-}" ]; then # KEEP_LOGS=1: keep every run's logs in the work dir
		mkdir -p "$WORK/logs-$sys-$n" && mv "$WORK"/n*.log "$WORK/logs-$sys-$n/"
		echo "logs of $sys N=$n kept in $WORK/logs-$sys-$n" >&2
	fi
	sleep 1
}

SYSTEMS="shoal"
[ $SERF = 1 ] && SYSTEMS="shoal serf"
[ $SERF = 1 ] && [ $SERF_ONLY = 1 ] && SYSTEMS="serf"
for n in $SIZES; do
	for s in $SYSTEMS; do
		run "$s" "$n"
	done
done

# ---- table -------------------------------------------------------------------------------
echo
echo "gossip benchmark ($(nproc) cores, loopback, rest window ${REST}s, ${TRIALS} dissemination trials; $(date -u +%FT%TZ))"
printf '%-5s %-26s %-34s %-34s\n' N metric shoal serf
for n in $SIZES; do
	for m in converge dissem detect falsedead rss cpu bps load; do
		case $m in
		converge) label="converge (all see N alive)" ;;
		dissem) label="dissem p100, median" ;;
		detect) label="detect kill -9 p50/p100/max" ;;
		falsedead) label="false dead (SIGSTOP 2s/20s)" ;;
		rss) label="RSS median/max" ;;
		cpu) label="CPU per process at rest" ;;
		bps) label="bytes/s per node at rest" ;;
		load) label="load avg 1 min start->end" ;;
		esac
		printf '%-5s %-26s %-34s %-34s\n' "$n" "$label" "${RES[shoal,$n,$m]:-}" "${RES[serf,$n,$m]:-n/a}"
	done
done
