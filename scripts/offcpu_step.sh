#!/usr/bin/env bash
# Where the server's threads wait during a step of `chex bench`: every context switch and wake-up
# on the machine, with kernel and user stacks, for SECS seconds:
#   scripts/offcpu_step.sh OUT SECS -- --scenario users --subscribers 10000 --rates 8000 --duration 10
#   scripts/offcpu_top.py OUT --comm chex-pipeline
#   scripts/offcpu_top.py OUT --comm tokio-rt-worker --pid <the server's pid, from OUT.pids>
# Recording starts a second after the server has received its first Slack event. A thread that
# leaves the CPU runnable (state R) was preempted; one that sleeps (S) waited for work or a timer;
# one in D waited for the disk; a sleeper's wake-up ends its sleep and starts its wait for a CPU.
# offcpu_top.py splits the time off the CPU that way (docs/benchmarks.md, "What session 22
# tried": the pipeline's writer, at 8,000 changes/s, runnable without a CPU ~11% of the time).
set -euo pipefail
OUT=$1; SECS=$2; shift 3
# shellcheck source=step_server.sh
source "$(dirname "$0")/step_server.sh"
perf record -a -e sched:sched_switch -e sched:sched_wakeup -g -o "$OUT" -- sleep "$SECS" 2> "$OUT.perf.log"
echo "server pid $server; bench pid $bench" > "$OUT.pids"
wait "$bench"
