#!/usr/bin/env bash
# tests/integration/cluster_basic.sh: three real agentd processes.
#
#  - first start generates STATE_DIR/keyring (0600) and says to copy it; the others use copies;
#  - --join at start, and `agentctl join` at run time; `members` table and --json; labels;
#  - `status` and the /metrics endpoint show the cluster (404 elsewhere; promtool if present);
#  - `agentctl leave`: the others see "left", the agent exits 0;
#  - SIGTERM: a clean leave too (exit 0, "left" everywhere);
#  - restarts with no --join rejoin through the persisted members, at a higher incarnation;
#  - SIGHUP reloads the keyring file; keyring errors (remove the primary, unknown id) and
#    usage errors have the documented exit statuses.
. "$(dirname "$0")/cluster_lib.sh"

MPORT=$(( PORT + 1 ))
ALL="1 2 3"
log "root $ROOT; agents on $(ip_of 1)..$(ip_of 3) port $PORT"

# ---- start, keyring generation --------------------------------------------------------------
start_agent 1 --metrics "127.0.0.1:$MPORT" --label site=paris --label rack=r1
wait_up 1
[ -f "$ROOT/n1/keyring" ] || fail "no keyring generated in the state directory"
[ "$(stat -c %a "$ROOT/n1/keyring")" = 600 ] || fail "keyring mode $(stat -c %a "$ROOT/n1/keyring")"
grep -q "copy this file to every other node" "$ROOT/n1/log" || fail "no notice about the new key"
for i in 2 3; do mkdir -p "$ROOT/n$i"; cp "$ROOT/n1/keyring" "$ROOT/n$i/keyring"; done
start_agent 2 --join "$(ip_of 1):$PORT" --label site=lyon
start_agent 3 --label site=lyon
wait_up 2; wait_up 3
wait_for 20 "n1 and n2 see each other" all_alive "1 2" 2
[ "$(count_state 3 alive)" = 1 ] || fail "n3 (no --join) already sees $(count_state 3 alive) alive"
"$AGENTCTL" -s "$(sock_of 3)" join "$(ip_of 1):$PORT" 2>/dev/null || fail "agentctl join failed"
wait_for 20 "all three see 3 alive" all_alive "$ALL" 3
log "joined (flag and agentctl join)"

out=$("$AGENTCTL" -s "$(sock_of 2)" members)
echo "$out"
echo "$out" | head -1 | grep -q "^NAME  *ADDRESS  *STATE  *INCARNATION  *RTT  *TRUST  *LABELS" ||
	fail "members table header: $(echo "$out" | head -1)"
echo "$out" | grep -q "^n1 .*alive .*site=paris,rack=r1" || fail "members table lacks n1's row"
[ "$(members_json 3 | jq -r '.[] | select(.name == "n1") | .labels.rack')" = r1 ] ||
	fail "labels not decoded in --json"
[ "$(members_json 3 | jq '[.[] | select(.self)] | length')" = 1 ] || fail "self not flagged once"

st=$("$AGENTCTL" -s "$(sock_of 1)" --json status)
[ "$(echo "$st" | jq '.gossip.members.alive')" = 3 ] || fail "status: $(echo "$st" | jq -c .gossip)"
[ "$(echo "$st" | jq -r '.gossip.advertise')" = "$(ip_of 1):$PORT" ] ||
	fail "status advertise $(echo "$st" | jq -r .gossip.advertise)"
"$AGENTCTL" -s "$(sock_of 1)" status | grep -q "^Members: *3 alive, 0 suspect, 0 dead, 0 left" ||
	fail "status (human) lacks the member counts"

# ---- metrics ----------------------------------------------------------------------------------
[ "$(metric "127.0.0.1:$MPORT" 'shoal_gossip_members{state="alive"}')" = 3 ] ||
	fail "metrics: members alive = '$(metric "127.0.0.1:$MPORT" 'shoal_gossip_members{state="alive"}')'"
[ -n "$(metric "127.0.0.1:$MPORT" 'shoal_store_map_size_bytes')" ] || fail "metrics: no store figures"
exec 8<>"/dev/tcp/127.0.0.1/$MPORT"
printf 'GET /nope HTTP/1.0\r\n\r\n' >&8
head -1 <&8 | grep -q "404" || fail "metrics: /nope is not a 404"
exec 8<&-
exec 8<>"/dev/tcp/127.0.0.1/$MPORT"
head -c 6000 /dev/zero | tr '\0' 'a' >&8 2>/dev/null || true
head -1 <&8 | grep -q "431" || fail "metrics: an oversized request is not refused with 431"
exec 8<&-
if command -v promtool >/dev/null; then
	exec 8<>"/dev/tcp/127.0.0.1/$MPORT"
	printf 'GET /metrics HTTP/1.0\r\n\r\n' >&8
	sed '1,/^\r$/d' <&8 | promtool check metrics || fail "promtool check metrics"
	exec 8<&-
	log "promtool: metrics well formed"
else
	log "promtool not installed: exposition format not checked by promtool"
fi

# ---- agentctl leave: left everywhere, agent exits 0 ---------------------------------------
inc3=$(inc_of 1 n3)
"$AGENTCTL" -s "$(sock_of 3)" leave 2>/dev/null || fail "agentctl leave failed"
wait_exit 3 || fail "n3 exited with status $? after agentctl leave"
wait_for 10 "n1 and n2 see n3 left" all_see "1 2" left n3
log "agentctl leave: n3 left and exited 0"

# ---- SIGTERM: clean leave ---------------------------------------------------------------------
inc2=$(inc_of 1 n2)
stop_agent 2 TERM || fail "n2 exited with status $? on SIGTERM"
wait_for 10 "n1 sees n2 left" all_see "1" left n2
log "SIGTERM: n2 left and exited 0"

# ---- restarts rejoin through the persisted members, higher incarnation ---------------------
start_agent 2 --label site=lyon
start_agent 3 --label site=lyon
wait_up 2; wait_up 3
wait_for 20 "all three alive again" all_alive "$ALL" 3
[ "$(inc_of 1 n2)" -gt "$inc2" ] || fail "n2 incarnation $(inc_of 1 n2) not above $inc2"
[ "$(inc_of 1 n3)" -gt "$inc3" ] || fail "n3 incarnation $(inc_of 1 n3) not above $inc3"
log "restarts without --join: alive again at incarnations $(inc_of 1 n2), $(inc_of 1 n3)"

# ---- keyring: SIGHUP reload, errors -----------------------------------------------------------
head -c 32 /dev/urandom | base64 > "$ROOT/extra.key"
cat "$ROOT/extra.key" >> "$ROOT/n1/keyring"
kill -HUP "${PIDS[1]}"
wait_for 10 "SIGHUP reload shows 2 keys" \
	bash -c "[ \"\$('$AGENTCTL' -s '$(sock_of 1)' --json keyring list | jq '.keys | length')\" = 2 ]"
primary=$("$AGENTCTL" -s "$(sock_of 1)" --json keyring list | jq -r .primary)
x=0; "$AGENTCTL" -s "$(sock_of 1)" keyring remove "$primary" 2>/dev/null || x=$?
[ "$x" = 1 ] || fail "removing the primary: exit $x, expected 1"
x=0; "$AGENTCTL" -s "$(sock_of 1)" keyring use zz 2>/dev/null || x=$?
[ "$x" = 1 ] || fail "keyring use zz: exit $x, expected 1"
x=0; "$AGENTCTL" -s "$(sock_of 1)" join 2>/dev/null || x=$?
[ "$x" = 2 ] || fail "join without ADDR: exit $x, expected 2"
x=0; "$AGENTCTL" -s "$(sock_of 1)" join not-an-address 2>/dev/null || x=$?
[ "$x" = 1 ] || fail "join not-an-address: exit $x, expected 1"
x=0; "$AGENTCTL" -s "$(sock_of 1)" keyring install /nonexistent 2>/dev/null || x=$?
[ "$x" = 1 ] || fail "keyring install /nonexistent: exit $x, expected 1"
[ "$(count_state 1 alive)" = 3 ] || fail "members lost after the keyring changes"
log "keyring reload and errors ok"

for i in $ALL; do kill -TERM "${PIDS[$i]}"; done
for i in $ALL; do wait_exit "$i" TERM || fail "n$i exited with status $?"; done
log "PASS"
