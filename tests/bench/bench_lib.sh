# tests/bench/bench_lib.sh: what the benchmarks of real agents share (sourced, not run).
#
#   build=BUILD_DIR; . bench_lib.sh; bench_setup NAME
#
# bench_setup checks $build/agent/{agentd,agentctl} (AGENTD, AGENTCTL), makes WORK
# (/tmp/shoal-bench-NAME-XXXXXX) and the PID array, and ends every agent in PID (by PID: TERM,
# then KILL after 5 s) and removes WORK on exit (SHOAL_KEEP_TMP=1 keeps it and says where);
# a function bench_on_exit, if the script defines one, runs first.
# Then: ctl I ARGS (agentctl on node I's socket $WORK/nI.sock), wait_for SECONDS CMD...,
# ms_of (HH:MM:SS.mmm on stdin to milliseconds of the day), mk_web DIR VERSION [MIB] (the exec
# service `web`, plus MIB MiB of random data), bench_keys (a keyring in $WORK/keyring and an
# operator key every agent trusts: opargs holds the agentd arguments, empty for builds from
# before operator signatures, which have no --operators-dir), events_all I [SINCE] and
# last_seq I (node I's events, every page).

bench_setup() {
	build=$(cd "$build" && pwd)
	AGENTD=$build/agent/agentd AGENTCTL=$build/agent/agentctl
	[ -x "$AGENTD" ] && [ -x "$AGENTCTL" ] || { echo "no agentd/agentctl in $build" >&2; exit 2; }
	WORK=$(mktemp -d "/tmp/shoal-bench-$1-XXXXXX")
	PID=()
	trap bench_cleanup EXIT
	trap 'exit 1' INT TERM
}

stop_all() {
	local p
	for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PID[@]}"; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$p" 2>/dev/null
	done
	PID=()
}

bench_cleanup() {
	declare -F bench_on_exit >/dev/null && bench_on_exit
	stop_all
	if [ -n "${SHOAL_KEEP_TMP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

ctl() { local i=$1; shift; "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }

# cpu_ms PID: CPU time (user + system) the process has used, in ms (10 ms ticks).
cpu_ms() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / hz) }' \
		"/proc/$1/stat" 2>/dev/null
}

# ip_of I: node I's address. BENCH_ADDRS=many (the default): 127.0.0.(I+1), one address per
# node as on a real fleet (agentd binds its outgoing streams to it, and peers count a member's
# connections by address); BENCH_ADDRS=one: every node on 127.0.0.1 (distinct ports), for
# builds from before outgoing streams were bound (they would connect from 127.0.0.1 and be
# taken for outsiders).
ip_of() {
	if [ "${BENCH_ADDRS:-many}" = one ]; then echo 127.0.0.1; else echo "127.0.0.$(($1 + 1))"; fi
}

wait_for() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}

ms_of() { awk -F'[:.]' '{ printf "%d\n", (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'; }

mk_web() {
	local d=$1
	mkdir -p "$d/bin"
	# stops at once on SIGTERM (wait is interrupted; sleep alone would delay the trap)
	printf '#!/bin/sh\ntrap '"'"'kill $s 2>/dev/null; exit 0'"'"' TERM\nwhile :; do sleep 10 & s=$!; wait $s; done\n' \
		>"$d/bin/web"
	chmod +x "$d/bin/web"
	printf '[release]\nservice = web\nruntime = exec\nversion = %s\n[exec]\ncommand = ./bin/web\n' \
		"$2" >"$d/release.ini"
	[ "${3:-0}" -gt 0 ] && head -c $(($3 * 1024 * 1024)) /dev/urandom >"$d/data.bin"
	return 0
}

bench_keys() {
	head -c 32 /dev/urandom | base64 -w0 >"$WORK/keyring"
	echo >>"$WORK/keyring"
	chmod 600 "$WORK/keyring"
	opargs=()
	"$AGENTD" --help >"$WORK/help" 2>/dev/null	# a file: `--help | grep -q` may SIGPIPE agentd
	if grep -q -- --operators-dir "$WORK/help"; then
		mkdir -p "$WORK/operators"
		"$AGENTCTL" keygen "$WORK/operator.key" >/dev/null
		cp "$WORK/operator.key.pub" "$WORK/operators/bench.pub"
		export SHOAL_OPERATOR_KEY=$WORK/operator.key
		opargs=(--operators-dir "$WORK/operators")
	fi
}

# The agent answers `events` 512 at a time (fleet.h): a cluster of 128 makes more than that per
# node in one deploy (every peer's health, member events), so read every page.
events_all() { # I [SINCE]: node I's events after SINCE (text), every page
	local i=$1 since=${2:-0} page n
	while :; do
		page=$(ctl "$i" events --since "$since" 2>/dev/null | grep -v '^-- ') || return 0
		[ -n "$page" ] || return 0
		printf '%s\n' "$page"
		n=$(printf '%s\n' "$page" | wc -l)
		[ "$n" -lt 512 ] && return 0
		since=$((since + n))
	done
}
last_seq() { # I: the seq of node I's newest event (0: none)
	local i=$1 s=0 out n
	while :; do
		out=$(ctl "$i" --json events --since "$s" 2>/dev/null) || break
		n=$(grep -c '"seq"' <<<"$out")
		[ "$n" -gt 0 ] && s=$(tail -n 1 <<<"$out" | sed -n 's/.*"seq": *\([0-9]*\).*/\1/p')
		[ "$n" -lt 512 ] && break
	done
	echo "$s"
}
