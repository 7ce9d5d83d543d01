# shellcheck shell=bash
# tests/system/electorate_lib.sh: what the electorate system tests (issue 11) share (sourced
# after agentd_lib.sh): a netlab of N hosts (tests/system/netlab.sh), one agentd per host
# namespace on $NET.I:7946 with state in $WORK/nI, agentctl inside the namespace, the test
# service `web` and its artifacts, and a cleanup that ends every agent by PID and takes the lab
# down. Hosts can be added later (lab_up makes MAXN of them; start only the first N).
# The agents run under ASan/UBSan in the test build: a sanitizer report in a log fails the test.
# SHOAL_TEST_AGENTD / SHOAL_TEST_AGENTCTL: run these tests against other binaries, also under
# ctest (whose ENVIRONMENT sets AGENTD/AGENTCTL to its own build tree), e.g. the code before a
# fix: SHOAL_TEST_AGENTD=/old/build-asan/agent/agentd SHOAL_TEST_AGENTCTL=... ctest -R electorate
AGENTD=${SHOAL_TEST_AGENTD:-${AGENTD:-}}
AGENTCTL=${SHOAL_TEST_AGENTCTL:-${AGENTCTL:-}}
need_root_and ip nft jq

PFX=el$RUNID
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
export NETLAB_PREFIX=$PFX NETLAB_NET=$NET NETLAB_OWNER=$$
export SHOAL_GOSSIP_PROBE_MS=${SHOAL_GOSSIP_PROBE_MS:-200} SHOAL_RETRY_MS=${SHOAL_RETRY_MS:-300}
declare -a PID=()

el_cleanup() {
	local rc=$? i
	stop_agents
	bash "$HERE/netlab.sh" down
	if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$WORK"/n*.log >/dev/null 2>&1
	then
		echo "FAIL: sanitizer reports in the agent logs:"
		grep -h -A30 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$WORK"/n*.log | head -80
		FAILS=$((FAILS + 1))
	fi
	if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
		for f in "$WORK"/n*.log; do
			[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 20 "$f"; }
		done
	fi
	agentd_lib_cleanup
	[ "$FAILS" = 0 ] || exit 1
	exit "$rc"
}
trap el_cleanup EXIT
trap 'exit 1' INT TERM

ns() { echo "${PFX}h$1"; }
ctl() { local i=$1; shift; ip netns exec "$(ns "$i")" "$AGENTCTL" --socket "$WORK/n$i.sock" "$@"; }

# lab_up MAXN: the lab with MAXN hosts and a fresh keyring
lab_up() {
	bash "$HERE/netlab.sh" up "$1" || die "netlab up"
	make_keyring "$WORK/keyring"
	# one operator key, trusted by every agent: deploys and rollbacks are signed with it
	make_operator "$WORK"
	export SHOAL_OPERATOR_KEY=$WORK/operator.key
}

# start_agent I [JOIN_HOST] [extra agentd args]: agentd nI in host I, joining host JOIN_HOST
# (default 1), with the environment words in $AGENT_ENV if set
start_agent() {
	local i=$1 j=${2:-1}
	shift; [ $# -gt 0 ] && shift
	rm -f "$WORK/n$i.sock"
	# shellcheck disable=SC2086 # AGENT_ENV: VAR=VALUE words for this start (e.g. faketime)
	ip netns exec "$(ns "$i")" env ${AGENT_ENV:-} "$AGENTD" --config /dev/null --node-name "n$i" \
		--state-dir "$WORK/n$i" --socket "$WORK/n$i.sock" --socket-group "" \
		--bind "$NET.$i:7946" --join "$NET.$j:7946" --keyring "$WORK/keyring" \
		--cluster "el$RUNID" --operators-dir "$WORK/operators" --log-level info "$@" \
		2>>"$WORK/n$i.log" &
	PID[$i]=$!
}
# stop_agent I [SIGNAL]: end nI by PID (default SIGTERM; bounded), and forget it
stop_agent() {
	local i=$1 sig=${2:-TERM}
	[ -n "${PID[$i]:-}" ] || return 0
	kill -"$sig" "${PID[$i]}" 2>/dev/null
	for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "${PID[$i]}" 2>/dev/null
	wait "${PID[$i]}" 2>/dev/null
	PID[$i]=
}

alive_n() {
	ctl "$1" --timeout 5s --json members 2>/dev/null |
		jq '[.. | objects | select(.state? == "alive")] | length'
}
sees_alive() { [ "$(alive_n "$1")" = "$2" ]; }
# wait_up "I..." COUNT: each agent answers and sees COUNT members alive
wait_up() {
	local i
	for i in $1; do wait_for 30 "agent n$i to answer" ctl "$i" ping; done
	for i in $1; do wait_for 40 "n$i to see $2 alive members" sees_alive "$i" "$2"; done
}

svc() { ctl "$1" --timeout 5s --json services | jq -ce 'first(.. | objects | select(.service? == "web"))'; }
desired() { svc "$1" | jq -r .desired_rev; }
# state I DESIRED RUNNING: node I wants DESIRED and runs RUNNING, not swapping
state() {
	svc "$1" | jq -e --argjson d "$2" --argjson r "$3" \
		'.desired_rev == $d and .running_rev == $r and .swapping == false'
}
all_state() { local i; for i in $1; do state "$i" "$2" "$3" || return 1; done; }
# rec I REV: node I's record at REV as "kind artifact" ("none" if it holds none)
rec() {
	ctl "$1" --timeout 5s --json history web |
		jq -r --argjson r "$2" '[.. | objects | select(.rev? == $r and .kind? != null)] |
			if length == 0 then "none" else (.[0] | "\(.kind) \(.artifact)") end'
}
has_rev() { [ "$(rec "$1" "$2")" != none ]; }
all_have_rev() { local i; for i in $1; do has_rev "$i" "$2" || return 1; done; }
# same_rec "I..." REV: every node holds a record at REV, the same one
same_rec() {
	local i first="" r
	for i in $1; do
		r=$(rec "$i" "$2") || return 1
		[ "$r" != none ] || return 1
		[ -z "$first" ] && first=$r
		[ "$r" = "$first" ] || return 1
	done
}
votes_json() { ctl "$1" --timeout 5s --json votes web "${@:2}"; }

# artifacts: $WORK/art/vK (K = 1..3), copies of examples/web-v1 with their own version and a
# health check that fails on node nI once the file $WORK/broken-vK-nI exists (node from the
# check's working directory, the artifact directory under $WORK/nI).
make_artifacts() {
	local k d
	for k in 1 2 3; do
		d=$WORK/art/v$k
		mkdir -p "$d/bin"
		cp "$SRC/examples/web-v1/bin/web" "$d/bin/web"
		sed -i "s/^VERSION=.*/VERSION=$k.0.0/" "$d/bin/web"
		cat >"$d/check.sh" <<EOF
#!/bin/sh
node=\$(pwd | sed -n 's#^$WORK/\\(n[0-9]*\\)/.*#\\1#p')
[ -e "$WORK/broken-v$k-\$node" ] && { echo "web $k: 500 on \$node" >&2; exit 1; }
echo "web $k: ok"
EOF
		chmod +x "$d/check.sh" "$d/bin/web"
		cat >"$d/release.ini" <<INI
[release]
service = web
runtime = exec
version = $k.0.0
[exec]
command = ./bin/web
[health]
exec = ./check.sh
interval = 300ms
timeout = 2s
failures = 3
deadline = 5s
INI
	done
}
# import_on "I...": import v1..v3 on these nodes; sets V1 V2 V3
# shellcheck disable=SC2034 # V1..V3 are for the tests that source this file
import_on() {
	local i
	for i in $1; do
		V1=$(ctl "$i" artifact import "$WORK/art/v1" 2>/dev/null) || die "import v1 on n$i"
		V2=$(ctl "$i" artifact import "$WORK/art/v2" 2>/dev/null) || die "import v2 on n$i"
		V3=$(ctl "$i" artifact import "$WORK/art/v3" 2>/dev/null) || die "import v3 on n$i"
	done
}
# break_on VK "I...": VK's health check fails on these nodes from now on
break_on() { local i; for i in $2; do touch "$WORK/broken-$1-n$i"; done; }

# stays_for SECONDS DESC CMD...: CMD must hold at every poll for SECONDS; fail() otherwise
stays_for() {
	local limit=$1 desc=$2; shift 2
	local end=$((SECONDS + limit))
	while [ $SECONDS -lt $end ]; do
		"$@" >/dev/null 2>&1 || { fail "$desc"; return 1; }
		sleep 0.5
	done
	return 0
}
