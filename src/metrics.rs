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
    pub resyncs: Counter,
    pub slow_consumers_closed: Counter,
    pub db_write_batches: Counter,
    pub db_write_micros: Counter,
    pub db_write_failures: Counter,
    pub events_lost: Counter,
    pub slack_events_received: Counter,
    pub slack_events_unknown: Counter,
    pub slack_events_rejected: Counter,
    pub slack_429: Counter,
    pub slack_wait_micros: Counter,
    pub watched_presence_overdue: Counter,
    pub slack_sweeps: Counter,
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
                &self.events_in,
            ),
            (
                "chex_events_committed_total",
                "Status events committed to history.",
                &self.events_committed,
            ),
            (
                "chex_frames_out_total",
                "Event frames written to client connections.",
                &self.frames_out,
            ),
            (
                "chex_frames_dropped_total",
                "Frames a lagging connection missed (answered with resync).",
                &self.frames_dropped,
            ),
            (
                "chex_resyncs_total",
                "Resync snapshots sent after lag.",
                &self.resyncs,
            ),
            (
                "chex_slow_consumers_closed_total",
                "Connections closed for staying behind (4008).",
                &self.slow_consumers_closed,
            ),
            (
                "chex_db_write_batches_total",
                "Event batches committed.",
                &self.db_write_batches,
            ),
            (
                "chex_db_write_seconds_total",
                "Time spent committing event batches, in microseconds / 1e6.",
                &self.db_write_micros,
            ),
            (
                "chex_db_write_failures_total",
                "Failed batch commits (retried).",
                &self.db_write_failures,
            ),
            (
                "chex_events_lost_total",
                "Events dropped after every retry failed.",
                &self.events_lost,
            ),
            (
                "chex_slack_events_received_total",
                "Slack Events API callbacks accepted.",
                &self.slack_events_received,
            ),
            (
                "chex_slack_events_unknown_total",
                "Slack Events API callbacks of types Chex ignores.",
                &self.slack_events_unknown,
            ),
            (
                "chex_slack_events_rejected_total",
                "Slack Events API callbacks refused (signature, replay).",
                &self.slack_events_rejected,
            ),
            (
                "chex_slack_ratelimited_total",
                "HTTP 429 answers from Slack.",
                &self.slack_429,
            ),
            (
                "chex_slack_governor_wait_seconds_total",
                "Time calls waited for the rate-limit governor.",
                &self.slack_wait_micros,
            ),
            (
                "chex_watched_presence_overdue_total",
                "Watched presence polls that ran later than one interval.",
                &self.watched_presence_overdue,
            ),
            (
                "chex_slack_sweeps_total",
                "Full users.list sweeps completed, all workspaces.",
                &self.slack_sweeps,
            ),
        ];
        for (name, help, c) in counters {
            let v = c.get();
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if name.ends_with("_seconds_total") {
                let _ = writeln!(out, "{name} {}", v as f64 / 1e6);
            } else {
                let _ = writeln!(out, "{name} {v}");
            }
        }
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
