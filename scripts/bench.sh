#!/usr/bin/env bash
# Every scenario of docs/benchmarks.md, RUNS times each (default 3), on a release build.
# Output: one `BENCH {json}` line per measured step in $OUT (default bench-results.jsonl);
# scripts/bench_summary.py turns them into the tables of docs/benchmarks.md (medians).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
OUT="${OUT:-bench-results.jsonl}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/chex-release}"
cargo build --release --bin chex
CHEX="$CARGO_TARGET_DIR/release/chex"
# The pipeline scenario's PostgreSQL figure needs a server to write to (a scratch database on it).
[ -n "${CHEX_TEST_DATABASE_URL:-}" ] || echo "CHEX_TEST_DATABASE_URL is not set: no PostgreSQL write figure (e.g. postgres://postgres@127.0.0.1:5432/postgres)" >&2
: > "$OUT"
# Every line to stderr through the shell's own descriptor: `tee /dev/stderr` opened the file anew
# and truncated it, so under `nohup ... > log 2>&1` each step emptied what the steps before it had
# logged, errors included (and `tee -a` wrote where the shell's next line then overwrote it).
run() {
  "$CHEX" bench "$@" | while IFS= read -r line; do
    printf '%s\n' "$line" >&2
    case "$line" in "BENCH "*) printf '%s\n' "${line#BENCH }" >> "$OUT" ;; esac
  done
}
for i in $(seq 1 "$RUNS"); do
  echo "== run $i of $RUNS" >&2
  run --scenario team --subscribers 1000 --users 100 --rates 50 --duration 10
  run --scenario team --subscribers 10000 --users 100 --rates 1,5,10,20,30,40,50 --duration 10
  # The same subscribers and schedule against a bare writer: this machine's floor (docs/benchmarks.md).
  run --scenario floor --subscribers 10000 --rates 1,5,10,20,30,40,50 --duration 10
  run --scenario users --subscribers 10000 --rates 2000,5000,8000 --duration 10
  # The same posts and subscribers against a bare server that checks, commits and writes each.
  run --scenario users-floor --subscribers 10000 --rates 2000,5000,8000 --duration 10
  # 19,000: this sandbox caps open files at 20,000 per process (hard limit), the issue asks 20,000.
  run --scenario idle --subscribers 19000 --users 100
  run --scenario pipeline --users 50000 --events 100000
done
echo "results in $OUT" >&2
