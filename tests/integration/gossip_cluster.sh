#!/usr/bin/env bash
# Integration test of the gossip transport with real processes (tests/integration/gossipd):
#  1. N (default 32) processes on 127.a.b.1..N converge: everyone sees N alive;
#  2. a record published on one node reaches all;
#  3. kill -9 of one node is detected by all (dead);
#  4. its restart (same id, from its state file) brings it back alive at a higher incarnation;
#  5. a process with a wrong key cannot join and is counted rejected (unknown_key);
#  6. key rotation across the running cluster through SIGHUP reloads: install the new key
#     everywhere, switch the primary node by node, remove the old key; nothing is dropped and
#     nobody is declared dead on the way; a node holding only the old key is then rejected.
# Every wait is bounded; processes are ended by PID; addresses are a random 127.a.b.0/24.
set -u

G="${SHOAL_BUILD_DIR:-}/tests/integration/gossipd"
if [ ! -x "$G" ]; then
	echo "SKIP: gossipd not built at $G"
	exit 77
fi
N=${GOSSIP_N:-32}
NET="127.$((RANDOM % 200 + 20)).$((($$ + RANDOM) % 250 + 1))"
PORT=$((20000 + RANDOM % 20000))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-gossip-cluster.XXXXXX")
TIMING=(--probe-ms 500 --gossip-ms 100 --sync-ms 5000)
declare -A PID
FAILED=0

cleanup() {
	for k in "${!PID[@]}"; do
		kill -9 "${PID[$k]}" 2>/dev/null
	done
	for k in "${!PID[@]}"; do
		wait "${PID[$k]}" 2>/dev/null
	done
	if [ "$FAILED" != 0 ]; then
		echo "--- logs kept in $WORK (tails below)"
		for f in "$WORK"/n1.log "$WORK"/n2.log "$WORK"/n7.log; do
			[ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }
		done
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	FAILED=1
	exit 1
}

newkey() { head -c 32 /dev/urandom | base64 -w0; echo; }

ip_of() { echo "$NET.$1"; }

# start_node I KEYRINGFILE [extra args...]
start_node() {
	local i=$1 kr=$2
	shift 2
	rm -f "$WORK/n$i.sock"
	"$G" --bind "$(ip_of "$i"):$PORT" --keyring "$kr" --name "n$i" --cluster "itest" \
		--state "$WORK/n$i.state" --ctl "$WORK/n$i.sock" "${TIMING[@]}" "$@" \
		>>"$WORK/n$i.log" 2>&1 &
	PID[$i]=$!
}

ctl() { "$G" --ctl "$WORK/n$1.sock" --send "$2" 2>/dev/null; }

field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p"; } # field NAME < "a=1 b=2"

# wait_until DESC SECONDS CMD...: poll CMD every 0.5 s
wait_until() {
	local desc=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		if "$@"; then
			echo "ok: $desc ($((secs - (end - SECONDS))) s)"
			return 0
		fi
		sleep 0.5
	done
	fail "$desc: not within $secs s"
}

# all_count KEY VALUE NODES...: every listed node reports KEY=VALUE in `count`
all_count() {
	local key=$1 want=$2 i v
	shift 2
	for i in "$@"; do
		v=$(ctl "$i" count | field "$key")
		[ "$v" = "$want" ] || return 1
	done
	return 0
}

nodes_except() { local x=$1 i; for i in $(seq 1 "$N"); do [ "$i" != "$x" ] && echo "$i"; done; }

sock_ready() { [ -S "$WORK/n$1.sock" ] && ctl "$1" count >/dev/null; }

K1=$(newkey)
for i in $(seq 1 "$N"); do echo "$K1" >"$WORK/kr$i"; chmod 600 "$WORK/kr$i"; done
echo "cluster of $N on $NET.1-$N port $PORT, work dir $WORK"

# ---- 1. converge -------------------------------------------------------------------------
start_node 1 "$WORK/kr1"
wait_until "seed up" 20 sock_ready 1
for i in $(seq 2 "$N"); do
	start_node "$i" "$WORK/kr$i" --join "$(ip_of 1):$PORT" --join "$(ip_of 2):$PORT"
done
ALL=$(seq 1 "$N")
# shellcheck disable=SC2086
wait_until "all $N see $N alive" 90 all_count alive "$N" $ALL

# ---- 2. a record spreads ----------------------------------------------------------------
r=$(ctl 5 "put svc/web 1 healthy") || fail "put: $r"
# shellcheck disable=SC2086
wait_until "record from n5 on all $N" 30 all_count records 1 $ALL

# ---- 3. kill -9 is detected -------------------------------------------------------------
VICTIM=7
inc_of() { ctl "$1" members | awk -v n="n$2" '$1 == n { print $3 }'; }
state_of() { ctl "$1" members | awk -v n="n$2" '$1 == n { print $2 }'; }
OLD_INC=$(inc_of 1 $VICTIM)
kill -9 "${PID[$VICTIM]}"
wait "${PID[$VICTIM]}" 2>/dev/null
unset "PID[$VICTIM]"
# shellcheck disable=SC2046
wait_until "all others mark n$VICTIM dead" 60 all_count dead 1 $(nodes_except $VICTIM)

# ---- 4. restart: alive again at a higher incarnation --------------------------------------
start_node $VICTIM "$WORK/kr$VICTIM" --join "$(ip_of 1):$PORT"
# shellcheck disable=SC2086
wait_until "n$VICTIM alive again on all" 60 all_count alive "$N" $ALL
NEW_INC=$(inc_of 1 $VICTIM)
[ -n "$OLD_INC" ] && [ -n "$NEW_INC" ] && [ "$NEW_INC" -gt "$OLD_INC" ] ||
	fail "incarnation of n$VICTIM: before kill $OLD_INC, after restart $NEW_INC (want greater)"
echo "ok: n$VICTIM incarnation $OLD_INC -> $NEW_INC"
# the restarted node got the record over anti-entropy / gossip
wait_until "restarted n$VICTIM holds the record" 30 all_count records 1 $VICTIM

# ---- 5. wrong key -----------------------------------------------------------------------
BAD=$((N + 1))
newkey >"$WORK/kr$BAD"
# A random key has the cluster key's id byte once in 256: its packets then fail authentication
# instead. Either way they are rejected and counted.
foreign_drops() { echo $(( $(ctl 1 stats | field drop_unknown_key) + $(ctl 1 stats | field drop_auth) )); }
before=$(foreign_drops)
start_node $BAD "$WORK/kr$BAD" --join "$(ip_of 1):$PORT"
wait_until "intruder up" 20 sock_ready $BAD
sleep 4
a=$(ctl $BAD count | field alive)
[ "$a" = 1 ] || fail "node with a wrong key sees alive=$a (want 1: itself)"
a=$(ctl 1 count | field alive)
[ "$a" = "$N" ] || fail "n1 sees alive=$a with the intruder around (want $N)"
after=$(foreign_drops)
[ "$after" -gt "$before" ] || fail "n1 unknown_key + auth drops $before -> $after (want an increase)"
echo "ok: wrong key rejected (n1 unknown_key + auth drops $before -> $after)"
kill -9 "${PID[$BAD]}"
wait "${PID[$BAD]}" 2>/dev/null
unset "PID[$BAD]"

# ---- 6. key rotation through SIGHUP -----------------------------------------------------
K2=$(newkey)
hup_all() { # write FILE CONTENT to every node's keyring, SIGHUP, wait for the reload line
	local content=$1 want=$2 i
	for i in $ALL; do
		local before_n
		before_n=$(grep -c "keyring reloaded" "$WORK/n$i.log")
		printf '%s\n' "$content" >"$WORK/kr$i.tmp" && mv "$WORK/kr$i.tmp" "$WORK/kr$i"
		kill -HUP "${PID[$i]}"
		local end=$((SECONDS + 10))
		while [ "$(grep -c "keyring reloaded" "$WORK/n$i.log")" -le "$before_n" ]; do
			[ $SECONDS -lt $end ] || fail "n$i did not reload its keyring"
			sleep 0.1
		done
		grep "keyring reloaded" "$WORK/n$i.log" | tail -n 1 | grep -q "keys=$want" ||
			fail "n$i: $(grep 'keyring' "$WORK/n$i.log" | tail -n 1) (want keys=$want)"
		sleep 0.05 # a rolling change: mixed keyrings coexist for a while
	done
}
dead_before=$(cat "$WORK"/n*.log | grep -c " member .* dead ")
hup_all "$K1
$K2" 2
P1=$(grep "keyring reloaded" "$WORK/n1.log" | tail -n 1 | sed 's/.*primary=\([0-9a-f]*\).*/\1/')
hup_all "$K2
$K1" 2
P2=$(grep "keyring reloaded" "$WORK/n1.log" | tail -n 1 | sed 's/.*primary=\([0-9a-f]*\).*/\1/')
[ "$P1" != "$P2" ] || fail "primary did not change ($P1)"
sleep 2
# shellcheck disable=SC2086
all_count alive "$N" $ALL || fail "cluster not whole while both keys coexist"
hup_all "$K2" 1
echo "ok: rotated primary $P1 -> $P2 and removed the old key on all $N"
r=$(ctl 3 "put after/rotation 1 yes") || fail "put: $r"
# shellcheck disable=SC2086
wait_until "record sealed under the new key reaches all" 30 all_count records 2 $ALL
sleep 3
# shellcheck disable=SC2086
all_count alive "$N" $ALL || fail "cluster not whole after rotation"
dead_after=$(cat "$WORK"/n*.log | grep -c " member .* dead ")
[ "$dead_after" = "$dead_before" ] ||
	fail "nodes declared dead during rotation: $dead_before -> $dead_after"
for i in $(nodes_except 1); do
	s=$(ctl "$i" stats)
	u=$(echo "$s" | field drop_unknown_key)
	au=$(echo "$s" | field drop_auth)
	[ "$u" = 0 ] && [ "$au" = 0 ] || fail "n$i dropped packets during rotation: $s"
done
echo "ok: no drops, no deaths during rotation"
# a node that only holds the removed key is now rejected
OLDK=$((N + 2))
echo "$K1" >"$WORK/kr$OLDK"
start_node $OLDK "$WORK/kr$OLDK" --join "$(ip_of 1):$PORT"
wait_until "old-key node up" 20 sock_ready $OLDK
sleep 3
a=$(ctl $OLDK count | field alive)
[ "$a" = 1 ] || fail "node with the removed key sees alive=$a (want 1)"
echo "ok: node with the removed key rejected"
echo "PASS"
exit 0
