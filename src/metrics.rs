//! Process-wide counters, rendered in Prometheus' text format at `/metrics`.
//!
//! Plain atomics rather than a metrics framework: a handful of counters and gauges, bumped on hot
//! paths with one relaxed add each, and one small renderer.

use std::fmt::Write;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of durations in fixed buckets (Prometheus' cumulative `le` buckets when
/// rendered). Fixed bounds keep an observation to two relaxed adds and a short scan; the bounds
/// span what a change's path through Chex takes, from a tenth of a millisecond to seconds.
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// Upper bounds of [`Histogram`]'s buckets, in microseconds (the last bucket is everything above).
/// Finer around the milliseconds a change's stages take, so a stage's tail can be told apart.
pub const BOUNDS_MICROS: [u64; 23] = [
    50, 100, 250, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000,
    25_000, 50_000, 75_000, 100_000, 150_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe_micros(&self, micros: u64) {
        self.observe_micros_n(micros, 1);
    }

    /// `n` observations of the same value.
    pub fn observe_micros_n(&self, micros: u64, n: u64) {
        let i = BOUNDS_MICROS.partition_point(|&b| b < micros);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(micros.saturating_mul(n), Ordering::Relaxed);
    }

    pub fn observe(&self, d: std::time::Duration) {
        self.observe_n(d, 1);
    }

    pub fn observe_n(&self, d: std::time::Duration, n: u64) {
        self.observe_micros_n(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), n);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            match BOUNDS_MICROS.get(i) {
                Some(&le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {total}", le as f64 / 1e6);
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = self.sum_micros() as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Every metric Chex exports.
#[derive(Default)]
pub struct Metrics {
    pub sockets: Gauge,
    pub subscriptions: Gauge,
    pub hub_topics: Gauge,
    pub events_in: Counter,
    pub events_committed: Counter,
    pub frames_out: Counter,
    pub frames_dropped: Counter,
    /// Frames the publisher wrote to a parked subscriber's socket itself (hub::outlet).
    pub ws_direct_writes: Counter,
    /// Parked subscriptions the publisher handed back to their task (a full socket, a task
    /// mid-write, an earlier frame not yet written).
    pub ws_handed_back: Counter,
    pub resyncs: Counter,
    pub slow_consumers_closed: Counter,
    pub db_write_failures: Counter,
    pub events_lost: Counter,
    pub readings_superseded: Counter,
    pub slack_events_received: Counter,
    pub slack_events_unknown: Counter,
    pub slack_events_rejected: Counter,
    pub slack_events_duplicate: Counter,
    pub slack_429: Counter,
    pub slack_wait_micros: Counter,
    pub watched_presence_overdue: Counter,
    pub slack_sweeps: Counter,
    /// From a source's observation to its event's publication on the hub: the server's share of
    /// a change's latency (queueing, group commit, the write itself).
    pub publish_delay: Histogram,
    /// From an observation's queueing to the start of the commit that takes it: the pipeline
    /// writer's wake-up, the commit spacing, the commit before it.
    pub pipeline_wait: Histogram,
    /// From an event's publication on the hub to its frame flushed to a WebSocket: the socket
    /// task's wake-up on the runtime and the write. A tail here with a short publish delay is the
    /// runtime's queue (or a slow client's socket), not the pipeline.
    pub ws_write_delay: Histogram,
    /// How long each batch's commit took; `chex_db_write_batches_total` and
    /// `chex_db_write_seconds_total` are its count and sum.
    pub db_write_duration: Histogram,
    /// Source calls by `(source, method, outcome)`.
    pub source_calls: DashMap<(&'static str, String, &'static str), u64>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    pub fn source_call(&self, source: &'static str, method: &str, outcome: &'static str) {
        *self
            .source_calls
            .entry((source, method.to_owned(), outcome))
            .or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges = [
            (
                "chex_sockets",
                "Open WebSocket and SSE connections.",
                &self.sockets,
            ),
            (
                "chex_subscriptions",
                "Topic subscriptions held by connections.",
                &self.subscriptions,
            ),
            (
                "chex_hub_topics",
                "Topics with at least one subscriber.",
                &self.hub_topics,
            ),
        ];
        for (name, help, g) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                g.get()
            );
        }
        let counters = [
            (
                "chex_events_in_total",
                "Observations received from sources.",
                self.events_in.get(),
            ),
            (
                "chex_events_committed_total",
                "Status events committed to history.",
                self.events_committed.get(),
            ),
            (
                "chex_frames_out_total",
                "Event frames written to client connections.",
                self.frames_out.get(),
            ),
            (
                "chex_frames_dropped_total",
                "Frames a lagging connection missed (answered with resync).",
                self.frames_dropped.get(),
            ),
            (
                "chex_ws_direct_writes_total",
                "Event frames the publisher wrote to an idle socket itself, without waking its task.",
                self.ws_direct_writes.get(),
            ),
            (
                "chex_ws_handed_back_total",
                "Subscriptions the publisher handed back to their socket's task (full socket, task writing).",
                self.ws_handed_back.get(),
            ),
            (
                "chex_resyncs_total",
                "Resync snapshots sent after lag.",
                self.resyncs.get(),
            ),
            (
                "chex_slow_consumers_closed_total",
                "Connections closed for staying behind (4008).",
                self.slow_consumers_closed.get(),
            ),
            (
                "chex_db_write_batches_total",
                "Event batches committed.",
                self.db_write_duration.count(),
            ),
            (
                "chex_db_write_seconds_total",
                "Time spent committing event batches, in microseconds / 1e6.",
                self.db_write_duration.sum_micros(),
            ),
            (
                "chex_db_write_failures_total",
                "Failed batch commits (retried).",
                self.db_write_failures.get(),
            ),
            (
                "chex_events_lost_total",
                "Events dropped after every retry failed.",
                self.events_lost.get(),
            ),
            (
                "chex_readings_superseded_total",
                "Custom status or DND readings dropped as older than the one that set the field.",
                self.readings_superseded.get(),
            ),
            (
                "chex_slack_events_received_total",
                "Slack Events API callbacks accepted.",
                self.slack_events_received.get(),
            ),
            (
                "chex_slack_events_unknown_total",
                "Slack Events API callbacks of types Chex ignores.",
                self.slack_events_unknown.get(),
            ),
            (
                "chex_slack_events_rejected_total",
                "Slack Events API callbacks refused (signature, replay).",
                self.slack_events_rejected.get(),
            ),
            (
                "chex_slack_events_duplicate_total",
                "Slack Events API redeliveries of an event already taken, acknowledged and dropped.",
                self.slack_events_duplicate.get(),
            ),
            (
                "chex_slack_ratelimited_total",
                "HTTP 429 answers from Slack.",
                self.slack_429.get(),
            ),
            (
                "chex_slack_governor_wait_seconds_total",
                "Time calls waited for the rate-limit governor.",
                self.slack_wait_micros.get(),
            ),
            (
                "chex_watched_presence_overdue_total",
                "Watched presence polls that ran later than one interval.",
                self.watched_presence_overdue.get(),
            ),
            (
                "chex_slack_sweeps_total",
                "Full users.list sweeps completed, all workspaces.",
                self.slack_sweeps.get(),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if name.ends_with("_seconds_total") {
                let _ = writeln!(out, "{name} {}", v as f64 / 1e6);
            } else {
                let _ = writeln!(out, "{name} {v}");
            }
        }
        self.publish_delay.render(
            &mut out,
            "chex_publish_delay_seconds",
            "From a source's observation to the event's publication (persisted first).",
        );
        self.db_write_duration.render(
            &mut out,
            "chex_db_write_duration_seconds",
            "Time each event batch took to commit.",
        );
        self.pipeline_wait.render(
            &mut out,
            "chex_pipeline_wait_seconds",
            "From an observation's queueing to the start of the commit that takes it.",
        );
        self.ws_write_delay.render(
            &mut out,
            "chex_ws_write_delay_seconds",
            "From an event's publication to its frame flushed to a WebSocket.",
        );
        let _ = writeln!(
            out,
            "# HELP chex_source_calls_total Calls to source APIs by method and outcome.\n# TYPE chex_source_calls_total counter"
        );
        let mut rows: Vec<_> = self
            .source_calls
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        rows.sort();
        for ((source, method, outcome), v) in rows {
            let _ = writeln!(
                out,
                "chex_source_calls_total{{source=\"{source}\",method=\"{method}\",outcome=\"{outcome}\"}} {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let h = Histogram::default();
        for micros in [50, 100, 101, 2_000, 2_001, 9_999_999] {
            h.observe_micros(micros);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        let line = |le: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("x_seconds_bucket{{le=\"{le}\"}} ")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        // A value on a bound is inside that bucket; counts are cumulative.
        assert_eq!(line("0.0001"), Some(2));
        assert_eq!(line("0.00025"), Some(3));
        assert_eq!(line("0.002"), Some(4));
        assert_eq!(line("0.003"), Some(5));
        assert_eq!(line("2.5"), Some(5));
        assert_eq!(line("+Inf"), Some(6));
        assert!(out.contains("x_seconds_count 6\n"));
        assert!(out.contains("# TYPE x_seconds histogram"));
    }

    #[test]
    fn several_observations_at_once_count_each() {
        let h = Histogram::default();
        h.observe_n(std::time::Duration::from_micros(1_200), 3);
        h.observe_micros(40);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_micros(), 3_640);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(
            out.contains("x_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.0015\"} 4\n"), "{out}");
    }

    #[test]
    fn the_commit_counters_are_the_commit_histograms_count_and_sum() {
        let m = Metrics::default();
        m.db_write_duration.observe_micros(1_500);
        m.db_write_duration.observe_micros(500);
        let out = m.render();
        assert!(out.contains("\nchex_db_write_batches_total 2\n"), "{out}");
        assert!(
            out.contains("\nchex_db_write_seconds_total 0.002\n"),
            "{out}"
        );
        assert!(
            out.contains("\nchex_db_write_duration_seconds_count 2\n"),
            "{out}"
        );
    }
}
