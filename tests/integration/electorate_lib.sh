# shellcheck shell=bash
# tests/integration/electorate_lib.sh: helpers of the electorate integration tests (issue 11;
# sourced): brain_lib.sh (real agentd on loopback, keyring, cleanup by PID, waits) plus
# artifacts whose health check fails on chosen nodes only, per-node stop, records and events.
# SHOAL_TEST_AGENTD / SHOAL_TEST_AGENTCTL: run these tests against other binaries, also under
# ctest (whose ENVIRONMENT sets AGENTD/AGENTCTL to its own build tree), e.g. the code before a
# fix: SHOAL_TEST_AGENTD=/old/build-asan/agent/agentd SHOAL_TEST_AGENTCTL=... ctest -R electorate
AGENTD=${SHOAL_TEST_AGENTD:-${AGENTD:-}}
AGENTCTL=${SHOAL_TEST_AGENTCTL:-${AGENTCTL:-}}
. "$(dirname "${BASH_SOURCE[0]}")/brain_lib.sh"

# el_artifact NAME VERSION: like make_artifact, but the check fails on node nI once the file
# $WORK/broken-NAME-nI exists (the node is read from the check's working directory, the
# artifact directory under the node's state directory $WORK/nI)
el_artifact() {
	local name=$1 d=$WORK/art/$1
	make_artifact "$name" "$2" 1
	cat >"$d/check.sh" <<CHECK
#!/bin/sh
node=\$(pwd | sed -n 's#^$WORK/\\(n[0-9]*\\)/.*#\\1#p')
[ -e "$WORK/broken-$name-\$node" ] && { echo "web $2: 500 on \$node" >&2; exit 1; }
echo "web $2: ok"
CHECK
	chmod +x "$d/check.sh"
}
break_on() { local i; for i in $2; do touch "$WORK/broken-$1-n$i"; done; }

# kill_services_of I: SIGKILL the service processes node nI started (by PID, from their
# SHOAL_DIR under $WORK/nI)
kill_services_of() {
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^SHOAL_DIR=$WORK/n$1/"; then
			kill -KILL "${p#/proc/}" 2>/dev/null
		fi
	done
	return 0
}
# stop_agent I [SIGNAL]: end nI by PID (default SIGTERM, bounded wait, then SIGKILL)
stop_agent() {
	local i=$1 sig=${2:-TERM}
	[ -n "${PID[$i]:-}" ] || return 0
	kill -"$sig" "${PID[$i]}" 2>/dev/null
	for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "${PID[$i]}" 2>/dev/null
	wait "${PID[$i]}" 2>/dev/null
	PID[$i]=
}

# rec I REV: node I's record at REV as "kind artifact", "none" if it holds none
rec() {
	ctl "$1" --timeout 5s --json history web 2>/dev/null |
		jq -r --argjson r "$2" '[.. | objects | select(.rev? == $r and .kind? != null)] |
			if length == 0 then "none" else (.[0] | "\(.kind) \(.artifact)") end'
}
cert() { ctl "$1" --json history web | jq --argjson r "$2" '.[] | select(.rev == $r) | .certificate'; }
has_rev() { local r; r=$(rec "$1" "$2") && [ -n "$r" ] && [ "$r" != none ]; }
same_rec() { # same_rec "I..." REV: all hold a record at REV, the same one
	local i first="" r
	for i in $1; do
		r=$(rec "$i" "$2") || return 1
		[ -n "$r" ] && [ "$r" != none ] || return 1
		[ -z "$first" ] && first=$r
		[ "$r" = "$first" ] || return 1
	done
}
# no_rev_for SECONDS REV "I...": none of these nodes may hold REV during SECONDS; fail() once
no_rev_for() {
	local end=$((SECONDS + $1)) i
	while [ $SECONDS -lt $end ]; do
		for i in $3; do
			if has_rev "$i" "$2"; then
				fail "n$i holds rev $2 = $(rec "$i" "$2") (certificate $(cert "$i" "$2")); votes: $(ctl "$i" --json votes web --rev $(($2 - 1)) | jq -c '{eligible, quorum, counted}')"
				return 1
			fi
		done
		sleep 0.5
	done
	return 0
}
# events_of I KIND: node I's events of KIND (JSON lines)
events_of() { ctl "$1" --json events | jq -c --arg k "$2" '.. | objects | select(.kind? == $k)'; }
