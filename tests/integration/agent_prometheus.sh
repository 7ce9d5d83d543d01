#!/usr/bin/env bash
# Integration: a real Prometheus scrapes three real agents on 127.0.0.1 (no root needed). The
# demo's story: v1 healthy, the bad v2 deployed, the quorum rolls it back; then the rollback
# counter shoal_rollbacks_total, read through Prometheus' HTTP API, went from 0 to 1 on every
# node. Also: `promtool check metrics` is clean on an agent's exposition (every family present,
# with services, a fetch and a hook), and `promtool check rules` on examples/prometheus/alerts.yml.
. "$(dirname "$0")/brain_lib.sh"
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
	{ echo "SKIP: prometheus/promtool not installed (scripts/deps.sh test)"; exit 77; }

promtool check rules "$SRC/examples/prometheus/alerts.yml" >"$WORK/rules.out" 2>&1 ||
	fail "promtool check rules: $(cat "$WORK/rules.out")"

# Ports: agents at BASE+1..3, their metrics at BASE+4..6, Prometheus at BASE+7 (pick_base
# checked BASE+1..9 free).
PP=$((BASE + 7))
printf '#!/bin/sh\ncat >/dev/null\n' >"$WORK/hook.sh"
chmod 755 "$WORK/hook.sh"
make_artifact v1 1.0.0 1
make_artifact v2 2.0.0 0
new_keyring
for i in 1 2 3; do
	start_agent "$i" --metrics "127.0.0.1:$((BASE + 3 + i))" --event-hook "$WORK/hook.sh"
done
wait_cluster 3

cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$SRC/examples/prometheus/alerts.yml"]
scrape_configs:
  - job_name: shoal
    static_configs: [{targets: ["127.0.0.1:$((BASE + 4))", "127.0.0.1:$((BASE + 5))", "127.0.0.1:$((BASE + 6))"]}]
EOF
promtool check config "$WORK/prometheus.yml" >"$WORK/config.out" 2>&1 || die "promtool check config: $(cat "$WORK/config.out")"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
	--web.listen-address="127.0.0.1:$PP" --storage.tsdb.retention.time=1h >"$WORK/prometheus.log" 2>&1 &
PROM=$!
PID[20]=$PROM	# ended by agents_cleanup with the agents, by PID
q() { curl -sf "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result'; }
qval() { q "$1" | jq -r '.[0].value[1] // empty'; }
wait_for 30 "Prometheus to be ready" curl -sf "http://127.0.0.1:$PP/-/ready"
all_up() { [ "$(qval 'sum(up{job="shoal"})')" = 3 ]; }
wait_for 30 "Prometheus to scrape the three agents" all_up
ok "Prometheus scrapes 3 agents"

import_all v1; V1=$ID
import_all v2; V2=$ID
ctl 1 deploy web "$V1" --wait --timeout 20s >/dev/null || die "deploy v1"
wait_for 30 "v1 healthy on every node" all_healthy 1
before_seen() { [ "$(qval 'count(shoal_rollbacks_total{service="web",reason="health"} == 0)')" = 3 ]; }
wait_for 20 "Prometheus to see web's rollback counters at 0 on every node" before_seen
nine_healthy() { [ "$(qval 'sum(shoal_service_nodes_healthy{service="web"})')" = 9 ]; }
wait_for 20 "every node to see web healthy on 3 nodes (3 x 3), through Prometheus" nine_healthy
ok "before: shoal_rollbacks_total{service=web} is 0 on every node, web healthy on 3 of 3"

ctl 2 deploy web "$V2" --reason "bad one" >/dev/null || die "deploy v2"
wait_for 60 "the cluster rollback (rev 3) on every node" all_run 3
after_seen() { [ "$(qval 'count(shoal_rollbacks_total{service="web",reason="health"} == 1)')" = 3 ]; }
wait_for 20 "Prometheus to see the rollback counted once on every node" after_seen
inc=$(qval 'max(increase(shoal_rollbacks_total{service="web"}[5m]))')
awk -v v="${inc:-0}" 'BEGIN { exit !(v > 0) }' || fail "increase() over 5m is ${inc:-empty}"
[ "$(qval 'max(shoal_service_running_revision{service="web"})')" = 3 ] || fail "running revision"
votes=$(qval 'sum(shoal_votes_cast_total{service="web",reason="health"})')
[ "${votes:-0}" -ge 2 ] || fail "health votes cast: ${votes:-none}, want >= 2 (a quorum of 3)"
swaps=$(qval 'sum(shoal_swap_duration_seconds_count{service="web"})')
[ "${swaps:-0}" -ge 6 ] || fail "swap durations observed: ${swaps:-none}, want >= 6 (3 nodes x 3 swaps)"
# every node verified its peers' signed votes and health records; nothing here was forged
checked=$(qval 'min(shoal_signature_checks_total{result="computed"})')
[ "${checked:-0}" -ge 2 ] || fail "signature checks computed: ${checked:-none} on some node, want >= 2"
[ "$(qval 'max(shoal_signed_records_refused_total)')" = 0 ] || fail "signed records refused"
fired() { q 'ALERTS{alertname="ShoalRollbackDecided",service="web"}' | jq -e 'length > 0' >/dev/null; }
wait_for 20 "the example rule ShoalRollbackDecided to fire" fired
ok "after: shoal_rollbacks_total 0 -> 1 on every node (through Prometheus), votes, swaps, the example alert fires"

curl -sf "http://127.0.0.1:$((BASE + 4))/metrics" >"$WORK/metrics.txt" || die "scrape n1"
promtool check metrics <"$WORK/metrics.txt" >"$WORK/lint.out" 2>&1 || fail "promtool check metrics: $(cat "$WORK/lint.out")"
for m in shoal_build_info process_resident_memory_bytes process_cpu_seconds_total \
	process_open_fds process_max_fds process_start_time_seconds shoal_rollbacks_total \
	shoal_votes_cast_total shoal_swaps_total shoal_swap_duration_seconds_bucket \
	shoal_service_desired_revision shoal_service_running_revision shoal_service_healthy \
	shoal_service_nodes_healthy shoal_fetches_total shoal_fetch_bytes_total \
	shoal_event_hook_runs_total shoal_signature_checks_total shoal_signed_records_refused_total \
	shoal_gossip_records_future_total; do
	grep -q "^$m[{ ]" "$WORK/metrics.txt" || fail "metric $m missing"
done
# duplicate series are what promtool does not catch
dups=$(grep -v '^#' "$WORK/metrics.txt" | awk '{ print $1 }' | sort | uniq -d)
[ -z "$dups" ] || fail "duplicate series: $dups"
ok "promtool check metrics clean, every family present, no duplicate series"
exit 0
