#!/usr/bin/env bash
# tests/integration/cluster_agents.sh: N (default 32) real agentd processes on 127.A.B.1..N.
#
#  1. all converge: every `agentctl members --json` shows N alive (bounded wait; time printed);
#  2. kill -9 of one is detected by all the others (dead), time printed;
#  3. its restart, with NO --join, brings it back alive at a higher incarnation everywhere
#     (it rejoins through its persisted member table);
#  4. an agent holding the wrong key cannot join: nobody lists it, it sees only itself, and the
#     seed counts its packets as dropped (unknown_key) in `status` and on /metrics, and both
#     say so in their logs (the seed: foreign packets dropped; the intruder: still alone);
#  5. key rotation across the running cluster with agentctl keyring install / use / remove on
#     every node, with no member lost (no suspect/dead at the end, N alive everywhere);
#  6. RSS of the agents is printed; SIGTERM ends every agent with status 0.
# Environment: SHOAL_CLUSTER_N overrides N (>= 4).
. "$(dirname "$0")/cluster_lib.sh"

N=${SHOAL_CLUSTER_N:-32}
[ "$N" -ge 4 ] || fail "SHOAL_CLUSTER_N must be >= 4"
ALL=$(seq 1 "$N")
VICTIM=$(( N / 2 + 1 ))
MPORT=$(( PORT + 1 ))
new_key "$ROOT/key1"
# Each agent its own copy of the keyring file (keyring commands rewrite it).
kr() { mkdir -p "$ROOT/n$1"; [ -f "$ROOT/n$1/keyring" ] || cp "$ROOT/key1" "$ROOT/n$1/keyring"; echo "$ROOT/n$1/keyring"; }

log "root $ROOT; $N agents on $(ip_of 1)..$(ip_of "$N") port $PORT"

# ---- 1. convergence -------------------------------------------------------------------------
t0=$(now_ms)
start_agent 1 --keyring "$(kr 1)" --metrics "127.0.0.1:$MPORT" --label site=s1
for i in $(seq 2 "$N"); do
	# Two seeds each: the first agent and a random earlier one.
	s=$(( 1 + RANDOM % (i - 1) ))
	start_agent "$i" --keyring "$(kr "$i")" --join "$(ip_of 1):$PORT" \
		--join "$(ip_of "$s"):$PORT" --label "site=s$(( i % 3 ))"
done
for i in $ALL; do wait_up "$i"; done
t_up=$(now_ms)
wait_for 120 "all $N agents see $N alive" all_alive "$ALL" "$N"
t_conv=$(now_ms)
log "converged: all $N agents see $N alive $(( t_conv - t0 )) ms after the first start," \
	"$(( t_conv - t_up )) ms after the last control socket answered"
rss=0
for i in $ALL; do rss=$(( rss + $(rss_kb "${PIDS[$i]}") )); done
log "RSS: $(( rss / 1024 )) MiB for $N agents, $(( rss / N / 1024 )) MiB per agent (ASan build: $ASAN_OPTIONS)"
# CPU at rest: clock ticks of all agents over 5 s (and the gossip bytes out of n1).
ticks() { local t=0 i; for i in $ALL; do t=$(( t + $(awk '{ print $14 + $15 }' "/proc/${PIDS[$i]}/stat") )); done; echo "$t"; }
b0=$(metric "127.0.0.1:$MPORT" 'shoal_gossip_bytes_total{direction="out"}'); c0=$(ticks)
sleep 5
b1=$(metric "127.0.0.1:$MPORT" 'shoal_gossip_bytes_total{direction="out"}'); c1=$(ticks)
hz=$(getconf CLK_TCK)
log "at rest: $(awk -v d=$(( c1 - c0 )) -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", 100 * d / hz / 5 / n }')% of a core per agent (ASan);" \
	"n1 sends $(( (b1 - b0) / 5 )) gossip bytes/s"
lbl=$(members_json 2 | jq -r '.[] | select(.name == "n1") | .labels.site')
[ "$lbl" = "s1" ] || fail "n2 sees n1's label site='$lbl', expected s1"

# ---- 2. kill -9 detected by all -------------------------------------------------------------
OTHERS=$(for i in $ALL; do [ "$i" -ne "$VICTIM" ] && echo "$i"; done)
inc_before=$(inc_of 1 "n$VICTIM")
t0=$(now_ms)
stop_agent "$VICTIM" KILL || true
wait_for 90 "all see n$VICTIM dead" all_see "$OTHERS" dead "n$VICTIM"
t_dead=$(now_ms)
log "kill -9 of n$VICTIM: all $(( N - 1 )) others mark it dead after $(( t_dead - t0 )) ms"

# ---- 3. restart without --join: alive again, higher incarnation ---------------------------
t0=$(now_ms)
start_agent "$VICTIM" --keyring "$(kr "$VICTIM")" --label "site=s$(( VICTIM % 3 ))"
wait_up "$VICTIM"
wait_for 60 "all see n$VICTIM alive again" all_see "$ALL" alive "n$VICTIM"
log "restart of n$VICTIM (no --join): alive everywhere after $(( $(now_ms) - t0 )) ms"
for i in 1 2 "$N"; do
	inc=$(inc_of "$i" "n$VICTIM")
	[ "$inc" -gt "$inc_before" ] || fail "n$i sees n$VICTIM at incarnation $inc, not above $inc_before"
done
grep -q "restored $(( N - 1 )) member(s)" "$ROOT/n$VICTIM/log" ||
	fail "n$VICTIM did not restore its $(( N - 1 )) peers: $(grep restored "$ROOT/n$VICTIM/log")"

# ---- 4. wrong key ---------------------------------------------------------------------------
BAD=$(( N + 1 ))
new_key "$ROOT/keybad"
# A random key has the cluster key's id byte once in 256: its packets then fail authentication
# instead of naming an unknown key. Either way they are rejected and counted.
foreign_drops() {
	local u a
	u=$(metric "127.0.0.1:$MPORT" 'shoal_gossip_dropped_total{reason="unknown_key"}')
	a=$(metric "127.0.0.1:$MPORT" 'shoal_gossip_dropped_total{reason="auth"}')
	echo $(( ${u:-0} + ${a:-0} ))
}
drops_before=$(foreign_drops)
start_agent "$BAD" --keyring "$ROOT/keybad" --join "$(ip_of 1):$PORT"
wait_up "$BAD"
drops_seen() { [ "$(foreign_drops)" -gt "$drops_before" ]; }
wait_for 20 "n1 counts the intruder's packets as unknown_key (or auth) drops" drops_seen
sleep 3	# time enough for a wrong join to have spread, if it could
[ "$(count_state "$BAD" alive)" = 1 ] || fail "the wrong-key agent sees $(count_state "$BAD" alive) alive"
for i in $ALL; do
	[ -z "$(state_of "$i" "n$BAD")" ] || fail "n$i lists the wrong-key agent n$BAD"
done
st_drops=$("$AGENTCTL" -s "$(sock_of 1)" --json status |
	jq '.gossip.dropped.unknown_key + .gossip.dropped.auth')
[ "$st_drops" -gt 0 ] || fail "status of n1 shows unknown_key + auth drops $st_drops, expected > 0"
log "wrong key: rejected; n1 counted $st_drops unknown_key + auth drops (status) and" \
	"$(foreign_drops) (metrics)"
grep -q "packet(s) sealed with a key id this node does not hold" "$ROOT/n1/log" ||
	fail "n1 did not log the foreign packets it dropped"
wait_for 15 "the wrong-key agent warns that no seed answered" \
	grep -q "cluster: still alone" "$ROOT/n$BAD/log"
stop_agent "$BAD" TERM || fail "wrong-key agent exited with status $?"

# ---- 5. key rotation across the running cluster -------------------------------------------
new_key "$ROOT/key2"
old=$("$AGENTCTL" -s "$(sock_of 1)" --json keyring list | jq -r '.primary')
t0=$(now_ms)
for i in $ALL; do
	"$AGENTCTL" -s "$(sock_of "$i")" --json keyring install "$ROOT/key2" >"$ROOT/kr.json" ||
		fail "keyring install on n$i"
done
new=$(jq -r '.keys[] | select(.primary == false) | .id' "$ROOT/kr.json")
[ -n "$new" ] && [ "$new" != "$old" ] || fail "new key id '$new' (old '$old')"
for i in $ALL; do
	"$AGENTCTL" -s "$(sock_of "$i")" keyring use "$new" >/dev/null || fail "keyring use on n$i"
done
sleep 2	# packets sealed with the old key still in flight must open
for i in $ALL; do
	"$AGENTCTL" -s "$(sock_of "$i")" keyring remove "$old" >/dev/null || fail "keyring remove on n$i"
done
log "key rotation $old -> $new on $N nodes took $(( $(now_ms) - t0 )) ms of commands"
sleep 5	# a few protocol periods under the new key only
wait_for 30 "all $N alive after the rotation" all_alive "$ALL" "$N"
for i in $ALL; do
	s=$(count_state "$i" suspect); d=$(count_state "$i" dead)
	[ "$s" = 0 ] && [ "$d" = 0 ] || fail "n$i sees $s suspect and $d dead after the rotation"
done
for i in 1 "$N"; do
	ks=$("$AGENTCTL" -s "$(sock_of "$i")" --json keyring list | jq -r '[.keys[].id] | join(",")')
	[ "$ks" = "$new" ] || fail "n$i keyring holds '$ks', expected only $new"
done
for i in 1 "$N"; do
	[ "$(grep -c -v '^#' "$ROOT/n$i/keyring")" = 1 ] || fail "n$i's keyring file holds more than one key"
	grep -q -F "$(cat "$ROOT/key2")" "$ROOT/n$i/keyring" || fail "n$i's keyring file lacks the new key"
done
log "key rotation: no member lost; keyring files rewritten"

# ---- 6. SIGTERM: every agent leaves and exits 0 -------------------------------------------
# Half of them first: the other half must see them "left" (a clean leave, not a failure).
HALF=$(seq 1 $(( N / 2 ))); REST=$(seq $(( N / 2 + 1 )) "$N")
for i in $HALF; do kill -TERM "${PIDS[$i]}"; done
for i in $HALF; do wait_exit "$i" TERM || fail "n$i exited with status $? on SIGTERM"; done
for i in $REST; do
	[ "$(count_state "$i" left)" = $(( N / 2 )) ] ||
		fail "n$i sees $(count_state "$i" left) left members after $(( N / 2 )) SIGTERMs"
done
for i in $REST; do kill -TERM "${PIDS[$i]}"; done
for i in $REST; do wait_exit "$i" TERM || fail "n$i exited with status $? on SIGTERM"; done
log "PASS"
