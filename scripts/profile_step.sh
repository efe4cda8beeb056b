#!/usr/bin/env bash
# Profiles the whole machine (both processes, kernel included) during a fan-out step of `chex bench`:
#   scripts/profile_step.sh OUT SECS -- --scenario users --subscribers 10000 --rates 5000 --duration 10
# Recording starts a second after the server has received its first Slack event, for SECS seconds;
# the server's /metrics are saved beside OUT before and after (OUT.m0, OUT.m1), the bench's output
# in OUT.log. `perf record -p` fails on processes whose threads come and go, hence `-a`; split the
# samples by process with `perf report -i OUT --sort pid,comm` (the server is `chex demo`).
set -euo pipefail
OUT=$1; SECS=$2; shift 3
CHEX="${CHEX:-${CARGO_TARGET_DIR:-/root/.cache/chex-release}/release/chex}"
ulimit -n 20000
"$CHEX" bench "$@" > "$OUT.log" 2>&1 &
bench=$!
port=""
while [ -z "$port" ]; do
  sleep 0.5
  kill -0 "$bench" 2>/dev/null || { echo "the bench ended before its server was up: see $OUT.log" >&2; exit 1; }
  server=$(pgrep -f "$CHEX demo" | head -1 || true)
  # The demo listens on several ports (its simulators too): the server is the one with /metrics.
  for p in $( [ -n "$server" ] && ss -ltnp | grep "pid=$server," | grep -o '127.0.0.1:[0-9]*' ); do
    curl -s "http://$p/metrics" | grep -q '^chex_' && { port=$p; break; }
  done
done
echo "server pid $server at $port" >&2
metric() { curl -s "http://$port/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }
until [ "$(metric chex_slack_events_received_total)" -gt 0 ]; do
  kill -0 "$bench" 2>/dev/null || { echo "the bench ended before a step started" >&2; exit 1; }
  sleep 0.2
done
sleep 1
curl -s "http://$port/metrics" > "$OUT.m0"
perf record -a -F 499 --call-graph dwarf,8192 -o "$OUT" -- sleep "$SECS" 2> "$OUT.perf.log"
curl -s "http://$port/metrics" > "$OUT.m1"
wait "$bench"
