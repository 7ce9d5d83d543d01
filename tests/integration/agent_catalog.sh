#!/usr/bin/env bash
# Integration (issue 14): the endpoint catalog and the read API on loopback, no root.
#
# Two agents (sites a and b) with --http-api; the service `web` has an [endpoint]. Checked:
# GET /v1/catalog, /v1/catalog/web and /v1/http_sd list both endpoints with their sites and
# revision; `agentctl endpoints --json` agrees; a long-poll at the current index waits and is
# answered by a deploy with a larger X-Shoal-Index; a long-poll with nothing changing answers
# after its wait with the same index; every swap drains (events on both nodes); the request
# parser's refusals (405, 404, 400 for a body or a bad query); the bound of waiting requests
# (the 257th gets 429 with Retry-After); an agent restart; a revision without [endpoint]
# withdraws every endpoint; a HAProxy driver whose stats socket is missing says
# so in `agentctl events` and the drain falls back to the drain time.
. "$(dirname "$0")/brain_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }

api() { echo "127.0.0.1:$((BASE + 10 + $1))"; }
get() { curl -fsS --max-time 10 "http://$(api "$1")$2"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
index_of() { curl -fsS --max-time 10 -D - -o /dev/null "http://$(api "$1")/v1/catalog" | tr -d '\r' |
	awk -F': ' 'tolower($1) == "x-shoal-index" { print $2 }'; }

new_keyring
start_agent 1 --label site=a --http-api "$(api 1)"
# n2 is also given a HAProxy that is not there: its driver reports it in words, in events
start_agent 2 --label site=b --http-api "$(api 2)" --haproxy-socket "$WORK/no-haproxy.sock" \
	--haproxy-backend web=web:s
wait_cluster 2

EPPORT=$((BASE + 50))
for v in 1 2; do
	make_artifact "v$v" "$v.0.0" 1
	printf '\n[endpoint]\nport = %s\nprotocol = http\ndrain = 1s\nweight = 7\n' "$EPPORT" \
		>>"$WORK/art/v$v/release.ini"
	import_all "v$v"
	eval "V$v=$ID"
done

# (a deploy is refused until the node has had its first anti-entropy exchange)
wait_for 30 "deploy v1 to be accepted" ctl 1 deploy web "$V1" --reason "catalog test v1"
wait_for 60 "rev 1 healthy on both" all_healthy 1
both_healthy() { # node I's catalog: both endpoints healthy at rev REV
	get "$1" /v1/catalog/web | jq -e --argjson r "$2" --argjson p "$EPPORT" \
		'[.endpoints[] | select(.state == "healthy" and .revision == $r and .port == $p and
		  .weight == 7 and .protocol == "http" and .address == "127.0.0.1")] | length == 2'
}
wait_for 20 "n1's catalog: 2 healthy endpoints" both_healthy 1 1
wait_for 20 "n2's catalog: 2 healthy endpoints" both_healthy 2 1
get 2 /v1/catalog | jq -e '.services.web | map(.site) | sort == ["a", "b"]' >/dev/null ||
	fail "catalog sites: $(get 2 /v1/catalog)"
get 1 /v1/http_sd | jq -e --arg t "127.0.0.1:$EPPORT" 'length == 2 and
	all(.[]; .targets == [$t] and .labels.service == "web" and .labels.revision == "1") and
	(map(.labels.site) | sort == ["a", "b"])' >/dev/null ||
	fail "http_sd: $(get 1 /v1/http_sd)"
ctl 1 --json endpoints web | jq -e 'length == 2 and all(.[]; .state == "healthy" and .rev == 1)' \
	>/dev/null || fail "agentctl endpoints: $(ctl 1 --json endpoints web)"
ctl 2 endpoints | grep -q "^web .*127.0.0.1:$EPPORT .*healthy" || fail "agentctl endpoints table: $(ctl 2 endpoints)"
ok "catalog, http_sd and agentctl endpoints list both endpoints (sites a, b; rev 1; weight 7)"

# a long-poll with nothing changing: answered after its wait, same index
idx=$(index_of 1)
[ -n "$idx" ] || die "no X-Shoal-Index"
t0=$(date +%s%3N)
h=$(curl -fsS --max-time 10 -D - -o /dev/null "http://$(api 1)/v1/catalog?index=$idx&wait=1s" |
	tr -d '\r' | awk -F': ' 'tolower($1) == "x-shoal-index" { print $2 }')
t1=$(date +%s%3N)
[ "$h" = "$idx" ] && [ $((t1 - t0)) -ge 900 ] || fail "wait=1s: index $h after $((t1 - t0)) ms, want $idx after >= 1 s"
ok "long-poll with nothing changing: answered after $((t1 - t0)) ms, index $idx"

# a long-poll answered by a deploy
idx=$(index_of 2)
curl -fsS --max-time 30 -D "$WORK/lp.hdr" -o "$WORK/lp.json" \
	"http://$(api 2)/v1/catalog/web?index=$idx&wait=25s" &
LP=$!
sleep 1
kill -0 $LP 2>/dev/null || fail "the long-poll at the current index $idx did not wait"
t0=$(date +%s%3N)
ctl 1 deploy web "$V2" --reason "catalog test v2" >/dev/null || die "deploy v2"
wait $LP || fail "long-poll failed"
t1=$(date +%s%3N)
nidx=$(tr -d '\r' <"$WORK/lp.hdr" | awk -F': ' 'tolower($1) == "x-shoal-index" { print $2 }')
[ "${nidx:-0}" -gt "$idx" ] || fail "long-poll: index $nidx, want > $idx"
ok "long-poll answered $((t1 - t0)) ms after the deploy: index $idx -> $nidx ($(jq -c '[.endpoints[].state]' "$WORK/lp.json"))"

wait_for 60 "rev 2 healthy on both" all_healthy 2
wait_for 20 "n1's catalog: 2 healthy endpoints of rev 2" both_healthy 1 2
for i in 1 2; do
	ev=$(ctl "$i" events --since 0)
	echo "$ev" | grep -q "drain web: 127.0.0.1:$EPPORT draining before the swap, up to 1.0 s" ||
		fail "n$i: no drain event: $(echo "$ev" | grep -i drain)"
	# the drain time measured: 1.0 s, a little more on a loaded machine (1.1 s failed 1 run in 8)
	echo "$ev" | grep -Eq "drain web: 1\.[0-9] s drain time over \(no local load balancer" ||
		fail "n$i: the drain did not end: $(echo "$ev" | grep -i drain)"
done
ok "every swap to rev 2 drained (events on n1 and n2)"
# the other node's endpoint changes are events too (what an event hook forwards to a load
# balancer of another kind): n1 saw n2's endpoint go draining and come back healthy at rev 2
ev=$(ctl 1 events --since 0)
echo "$ev" | grep -Eq "endpoint +web .*n2 127.0.0.1:$EPPORT draining" ||
	fail "n1: no endpoint event for n2 draining: $(echo "$ev" | grep endpoint)"
echo "$ev" | sed -n "/endpoint .*n2 127.0.0.1:$EPPORT draining/,\$p" |
	grep -Eq "endpoint +web .*n2 127.0.0.1:$EPPORT healthy" ||
	fail "n1: no endpoint event for n2 healthy again: $(echo "$ev" | grep endpoint)"
ok "endpoint changes of other nodes are events (and so reach the event hook)"

# n2's HAProxy driver: the missing stats socket, in words, in events
lb_error() { ctl 2 events --since 0 | grep -E "lb +web.*haproxy web: .*no-haproxy.sock.*(retrying)"; }
wait_for 20 "n2's lb error event" lb_error
ok "unreachable stats socket reported: $(lb_error | head -1 | sed 's/^.*haproxy web: /haproxy web: /')"
ctl 2 events --since 0 | grep -q "drain web: cannot ask the load balancer for sessions" ||
	fail "n2's drain did not say that it could not ask HAProxy: $(ctl 2 events --since 0 | grep drain)"

# the parser's refusals
[ "$(status_of -X POST "http://$(api 1)/v1/catalog")" = 405 ] || fail "POST: not 405"
[ "$(status_of "http://$(api 1)/v1/nope")" = 404 ] || fail "/v1/nope: not 404"
[ "$(status_of "http://$(api 1)/v1/catalog?index=x")" = 400 ] || fail "index=x: not 400"
[ "$(status_of "http://$(api 1)/v1/catalog?wait=1h&index=1")" = 400 ] || fail "wait=1h: not 400"
[ "$(status_of "http://$(api 1)/v1/catalog/nosuch")" = 200 ] || fail "an unknown service: not 200"
raw=$(python3 - "$BASE" <<'PYEND'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]) + 11), timeout=5)
s.sendall(b"GET /v1/catalog HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd")
print(s.recv(200).split(b"\r\n")[0].decode())
PYEND
)
[ "$raw" = "HTTP/1.1 400 Bad Request" ] || fail "a request with a body: '$raw'"
ok "refusals: 405 (POST), 404, 400 (bad index, wait over 5m, a body); unknown service 200 empty"

# the bound of waiting requests: 256 wait, the 257th is refused with 429
idx=$(index_of 1)
res=$(python3 - "$BASE" "$idx" <<'PYEND'
import socket, sys, time
port, idx = int(sys.argv[1]) + 11, sys.argv[2]
req = ("GET /v1/http_sd?index=%s&wait=20s HTTP/1.1\r\n\r\n" % idx).encode()
socks = []
for _ in range(256):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(req)
    socks.append(s)
time.sleep(1.0)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(req)
head = s.recv(300).decode()
s.close()
for s in socks:
    s.close()
print(head.split("\r\n")[0] + ("; retry-after" if "Retry-After: 1" in head else ""))
PYEND
)
[ "$res" = "HTTP/1.1 429 Too Many Requests; retry-after" ] || fail "the 257th waiting request: '$res'"
get 1 /v1/catalog >/dev/null || fail "the API does not answer after the burst"
ok "256 requests waiting, the next one: $res; the API answers afterwards"
# an agent restart: its endpoint comes back as it runs now (starting, then healthy)
kill -TERM "${PID[2]}"
wait "${PID[2]}" 2>/dev/null
PID[2]=""
start_agent 2 --label site=b --http-api "$(api 2)"
wait_for 20 "n2 to answer again" ctl 2 ping
wait_for 60 "rev 2 healthy on both after n2's restart" all_healthy 2
wait_for 30 "n1's catalog: both healthy after n2's restart" both_healthy 1 2
ok "n2 restarted: both endpoints healthy again in n1's catalog"

# a revision without [endpoint]: every node withdraws its endpoint
make_artifact v3 3.0.0 1
import_all v3
ctl 1 deploy web "$ID" --reason "catalog test v3, no endpoint" >/dev/null || die "deploy v3"
wait_for 60 "rev 3 healthy on both" all_healthy 3
empty() { get "$1" /v1/catalog/web | jq -e '.endpoints == []' && get "$1" /v1/http_sd | jq -e '. == []'; }
wait_for 20 "n1's catalog to be empty" empty 1
wait_for 20 "n2's catalog to be empty" empty 2
ok "v3 has no [endpoint]: both endpoints withdrawn (catalog and http_sd empty)"
[ "$FAILS" = 0 ] && echo "PASS: agent_catalog"
exit 0
