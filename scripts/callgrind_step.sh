#!/usr/bin/env bash
# Instructions the server runs per change during a step of `chex bench`, counted by callgrind:
#   scripts/callgrind_step.sh OUT SECS -- --scenario users --subscribers 1000 --rates 40 --duration 40
# Unlike time, the count is the same from run to run for the same binary and inputs, whatever
# else the machine is doing, so two builds compare in one run each. The server runs under
# valgrind (some 50× slower: keep the rate low); counting is zeroed a second after its first Slack
# event and dumped SECS seconds later, and the changes it received meanwhile come from /metrics.
# Prints instructions per change (user space only: the kernel's share is not counted), and keeps
# the dump as OUT.cg. At a low rate each change is a commit of its own, so the figure is higher
# than at 8,000/s, where commits are shared: compare two builds at the same rate.
# `callgrind_annotate` misreads these dumps (everything under `clone`, session 18); split one by
# function with `scripts/callgrind_top.py OUT.cg --per CHANGES [--inclusive]`. valgrind's CPU has
# no SHA extensions, so the Slack signature's SHA-256 runs in software under it, at far more
# instructions than natively on a CPU with SHA-NI (session 19: 109k of 599k per change).
set -euo pipefail
OUT=$1; SECS=$2; shift 3
export CHEX_BENCH_SERVER_WRAPPER="valgrind --tool=callgrind --callgrind-out-file=$OUT.cg.%p"
# shellcheck source=step_server.sh
source "$(dirname "$0")/step_server.sh"
events0=$(metric chex_slack_events_received_total)
callgrind_control -z "$server" > /dev/null 2>&1
sleep "$SECS"
callgrind_control -d "$server" > /dev/null 2>&1
events1=$(metric chex_slack_events_received_total)
wait "$bench" || true
dump=$(ls -t "$OUT".cg."$server"* | head -1)
mv "$dump" "$OUT.cg"
rm -f "$OUT".cg."$server"*
ir=$(awk '/^summary:/ {print $2}' "$OUT.cg")
changes=$((events1 - events0))
echo "over ${SECS} s: $changes changes, $ir instructions, $((ir / (changes > 0 ? changes : 1))) per change" | tee "$OUT"
