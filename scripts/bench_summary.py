#!/usr/bin/env python3
"""Medians per scenario step from `BENCH` lines (scripts/bench.sh), as Markdown tables."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1] if len(sys.argv) > 1 else "bench-results.jsonl") if l.strip()]
groups = defaultdict(list)
for r in rows:
    groups[(r["scenario"], r["subscribers"], r["topics"], r["rate"])].append(r)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def med_extra(rs, key):
    vals = [r["extra"][key] for r in rs if key in r.get("extra", {})]
    return f"{statistics.median(vals):.2f}" if vals else "–"


print("| scenario | subscribers | topics | changes/s | runs | delivered (median) | lost (max) | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | RSS idle MB | KB/conn | CPU µs/delivery | load gen. CPU µs/delivery |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (sc, n, t, rate), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "team", kv[0])):
    if sc == "pipeline":
        continue
    print(f"| {sc} | {n} | {t} | {rate:g} | {len(rs)} | {med(rs, 'delivered'):.0f} | {max(r['lost'] for r in rs)} | "
          f"{med(rs, 'deliveries_per_sec'):,.0f} | {med(rs, 'p50_ms'):.1f} | {med(rs, 'p90_ms'):.1f} | {med(rs, 'p99_ms'):.1f} | "
          f"{med(rs, 'max_ms'):.1f} | {med(rs, 'rss_idle_mb'):.1f} | {med(rs, 'rss_per_conn_kb'):.2f} | {med(rs, 'cpu_us_per_delivery'):.2f} | {med_extra(rs, 'client_cpu_us_per_delivery')} |")
pipe = [r for r in rows if r["scenario"] == "pipeline"]
# Rows whose latency can be split at the frame's observed_at (the floors' too; they have no
# histograms, so their server's share shows "–").
served = [(k, rs) for k, rs in sorted(groups.items())
          if any("server_publish_p99_ms" in r.get("extra", {}) or "from_server_p99_ms" in r.get("extra", {}) for r in rs)]
if served:
    # The server's own histogram of observation-to-publication delays (bucket bounds: "at most"),
    # and the subscribers' latencies split at the frame's observed_at: send to observation,
    # observation to receipt (runs from before the split was recorded show "–").
    print()
    print("| scenario | subscribers | changes/s | p50 ms end to end | server's share, p50 ms ≤ | p99 ms end to end | server's share, p99 ms ≤ "
          "| send → observation, p50 / p99 ms | observation → subscriber, p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (sc, n, t, rate), rs in served:
        print(f"| {sc} | {n} | {rate:g} | {med(rs, 'p50_ms'):.1f} | {med_extra(rs, 'server_publish_p50_ms')} | "
              f"{med(rs, 'p99_ms'):.1f} | {med_extra(rs, 'server_publish_p99_ms')} | "
              f"{med_extra(rs, 'to_server_p50_ms')} / {med_extra(rs, 'to_server_p99_ms')} | "
              f"{med_extra(rs, 'from_server_p50_ms')} / {med_extra(rs, 'from_server_p99_ms')} |")
staged = [(k, rs) for k, rs in served if any("server_write_p99_ms" in r.get("extra", {}) for r in rs)]
if staged:
    # The server's histograms of each stage (bucket bounds: "at most"): the wait for the pipeline's
    # writer, a batch's commit, observation to publication, publication to the socket's flush; and
    # the writer thread's CPU per change (since session 25; "–" before, and on PostgreSQL).
    print()
    print("| scenario | subscribers | changes/s | wait for the writer, p50 / p99 ms ≤ | commit, p50 / p99 ms ≤ "
          "| observation → publication, p50 / p99 ms ≤ | publication → socket flushed, p50 / p99 ms ≤ "
          "| writer thread CPU µs/change |")
    print("|---|---|---|---|---|---|---|---|")
    for (sc, n, t, rate), rs in staged:
        cells = " | ".join(f"{med_extra(rs, f'server_{st}_p50_ms')} / {med_extra(rs, f'server_{st}_p99_ms')}"
                           for st in ["wait", "commit", "publish", "write"])
        print(f"| {sc} | {n} | {rate:g} | {cells} | {med_extra(rs, 'server_writer_cpu_us_per_change')} |")
machine = [(k, rs) for k, rs in sorted(groups.items()) if any("machine_steal_pct" in r.get("extra", {}) for r in rs)]
if machine:
    # Each run's p99 beside what the machine did meanwhile: the share left idle, and the share the
    # hypervisor took (steal), which makes a run measure the host rather than the code.
    def each(rs, key):
        vals = [r.get("extra", {}).get(key, r.get(key)) for r in rs]
        return " / ".join("–" if v is None else f"{v:.1f}" for v in vals)
    print()
    print("| scenario | subscribers | changes/s | p99 ms, each run | machine idle %, each run | steal %, each run |")
    print("|---|---|---|---|---|---|")
    for (sc, n, t, rate), rs in machine:
        print(f"| {sc} | {n} | {rate:g} | {each(rs, 'p99_ms')} | {each(rs, 'machine_idle_pct')} | {each(rs, 'machine_steal_pct')} |")
if pipe:
    print()
    print("| pipeline figure | median | runs |")
    print("|---|---|---|")
    for key in ["sweep_users", "sweep_wall_s", "sweep_cpu_s", "sweep_sims_cpu_s", "steady_sweep_wall_s",
                "steady_sweep_cpu_s", "steady_sweep_sims_cpu_s", "sqlite_events_per_s", "postgres_events_per_s"]:
        vals = [r["extra"][key] for r in pipe if key in r.get("extra", {})]
        if vals:
            print(f"| {key} | {statistics.median(vals):,} | {len(vals)}: {' / '.join(f'{v:,}' for v in vals)} |")
