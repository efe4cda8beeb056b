#!/usr/bin/env bash
# Profiles the whole machine (both processes, kernel included) during a fan-out step of `chex bench`:
#   scripts/profile_step.sh OUT SECS -- --scenario users --subscribers 10000 --rates 5000 --duration 10
# Recording starts a second after the server has received its first Slack event, for SECS seconds;
# the server's /metrics are saved beside OUT before and after (OUT.m0, OUT.m1), the bench's output
# in OUT.log. `perf record -p` fails on processes whose threads come and go, hence `-a`; split the
# samples by process with `perf report -i OUT --sort pid,comm` (the server is `chex demo`).
set -euo pipefail
OUT=$1; SECS=$2; shift 3
# shellcheck source=step_server.sh
source "$(dirname "$0")/step_server.sh"
curl -s "http://$port/metrics" > "$OUT.m0"
perf record -a -F 499 --call-graph dwarf,8192 -o "$OUT" -- sleep "$SECS" 2> "$OUT.perf.log"
curl -s "http://$port/metrics" > "$OUT.m1"
wait "$bench"
