#!/usr/bin/env bash
# Per-thread accounting of the server during a step of `chex bench`, without a profiler:
#   scripts/threads_step.sh OUT SECS -- --scenario users --subscribers 10000 --rates 8000 --duration 10
# For SECS seconds, starting a second after the server has received its first Slack event, each
# server thread's CPU, voluntary and involuntary context switches, write calls and bytes written
# (/proc/<pid>/task/<tid>/{stat,status,io}), and the commits and events committed meanwhile
# (/metrics). A thread that wakes for every arrival shows as voluntary switches; one preempted by
# others as involuntary ones; the pipeline thread's write calls (it runs the appends; two per WAL
# frame) count its frames.
# The bench's own output goes to OUT.log, the table to OUT (and stdout).
set -euo pipefail
export LC_ALL=C
OUT=$1; SECS=$2; shift 3
# shellcheck source=step_server.sh
source "$(dirname "$0")/step_server.sh"
# One line per thread: tid, name, voluntary and involuntary switches, CPU ticks, write calls, bytes.
snapshot() {
  for t in /proc/"$server"/task/*; do
    [ -r "$t/io" ] || continue
    printf '%s %s %s %s %s\n' "$(basename "$t")" "$(tr ' ' '_' < "$t/comm")" \
      "$(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status")" \
      "$(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/^syscw/ {c = $2} /^wchar/ {b = $2} END {print c, b}' "$t/io")"
  done | sort
}
commits0=$(metric chex_db_write_duration_seconds_count); events0=$(metric chex_events_committed_total)
snapshot > "$OUT.t0"
sleep "$SECS"
snapshot > "$OUT.t1"
commits1=$(metric chex_db_write_duration_seconds_count); events1=$(metric chex_events_committed_total)
hz=$(getconf CLK_TCK)
{
  echo "over ${SECS} s: $((commits1 - commits0)) commits, $((events1 - events0)) events committed"
  printf '%-8s %-16s %9s %9s %8s %9s %10s\n' tid thread voluntary involunt cpu_s writes MB_written
  # Threads that started or ended inside the window are left out: they have no pair of readings.
  join "$OUT.t0" "$OUT.t1" | awk -v hz="$hz" '{
    printf "%-8s %-16s %9d %9d %8.2f %9d %10.1f\n", $1, $2, $9 - $3, $10 - $4, ($11 - $5) / hz, $12 - $6, ($13 - $7) / 1e6
  }'
} | tee "$OUT"
wait "$bench"
