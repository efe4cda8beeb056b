//! `chex bench`: the load generator behind docs/benchmarks.md.
//!
//! The server runs as a child process (`chex demo` with its status churn off), so its memory and
//! CPU are read from /proc apart from the load generator's. Changes enter through the real
//! ingestion path: signed Slack Events API `user_change` posts, each stamped with its send time in
//! the status text; every subscriber times every frame it receives. Sending is open-loop: the
//! schedule is fixed in advance, so a slow server shows up as latency, not as a slower sender.
//! The `floor` scenario swaps Chex for a bare writer (`floor.rs`) under the same load, so a figure
//! can be read as a ratio to what the machine itself allows.

mod floor;
mod floor_users;
mod histogram;
mod load;
mod post;
mod server;

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::demo::DEMO_TEAM;
use load::{Driver, Phase, Seen, Subscribers};
use server::{MachineTicks, ServerProcess};

pub use floor::serve as serve_floor;
pub use floor_users::serve as serve_users_floor;
pub use histogram::Histogram;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Every subscriber on one team topic; changes round-robin over the team's users.
    Team,
    /// One user topic per subscriber (users = subscribers); changes to random users.
    Users,
    /// Idle subscribed connections: memory only.
    Idle,
    /// A full sweep of a large workspace, and batched history writes on SQLite and PostgreSQL.
    Pipeline,
    /// The team scenario against a bare server that only writes frames: this machine's floor.
    Floor,
    /// The users scenario against a bare server that checks, commits and writes each change
    /// (`floor_users`): the users figure's floor.
    UsersFloor,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "team")]
    pub scenario: Scenario,
    /// WebSocket subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// People in the simulated workspace (team scenario; `users` uses one per subscriber, and
    /// `pipeline` sweeps this many).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Changes per second, one measured step per value: `--rates 1,5,10`.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub rates: Vec<f64>,
    /// Seconds each step sends for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// History events the pipeline scenario writes per backend.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// The floor scenario's writer threads: 0 for one per core; 1 for Chex's shape, one fan-out
    /// thread writing every socket.
    #[arg(long, default_value_t = 0)]
    pub floor_writers: usize,
}

/// One measured step, printed as a table row and as a `BENCH {json}` line.
#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub subscribers: usize,
    pub topics: usize,
    pub rate: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: i64,
    pub resyncs: u64,
    pub send_failures: u64,
    pub deliveries_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub rss_base_mb: f64,
    pub rss_idle_mb: f64,
    pub rss_peak_mb: f64,
    pub rss_per_conn_kb: f64,
    pub cpu_us_per_delivery: f64,
    /// Scenario-specific figures (pipeline: sweep seconds, writes per second).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

const MB: f64 = 1024.0 * 1024.0;

impl Report {
    fn print(&self) {
        println!(
            "{:<8} n={:<6} topics={:<6} rate={:<6} sent={:<7} delivered={:<9} lost={:<5} resyncs={:<4} {:>9.0}/s  p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms  rss idle={:.1}MB peak={:.1}MB per-conn={:.2}KB  cpu/delivery={:.2}µs",
            self.scenario,
            self.subscribers,
            self.topics,
            self.rate,
            self.sent,
            self.delivered,
            self.lost,
            self.resyncs,
            self.deliveries_per_sec,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.rss_idle_mb,
            self.rss_peak_mb,
            self.rss_per_conn_kb,
            self.cpu_us_per_delivery
        );
        for (k, v) in &self.extra {
            println!("         {k} = {v}");
        }
        println!("BENCH {}", serde_json::to_string(self).unwrap_or_default());
    }
}

/// Runs the scenario, printing a report per step; returns the reports.
pub async fn run(args: BenchArgs) -> anyhow::Result<Vec<Report>> {
    let limit = server::raise_nofile();
    if args.subscribers as u64 + 1000 > limit && args.scenario != Scenario::Pipeline {
        bail!(
            "{} subscribers need more open files than the limit of {limit}: raise `ulimit -n`",
            args.subscribers
        );
    }
    let reports = match args.scenario {
        Scenario::Pipeline => pipeline(&args).await?,
        Scenario::Floor => floor_run(&args).await?,
        Scenario::UsersFloor => users_floor_run(&args).await?,
        _ => fanout(&args).await?,
    };
    for r in &reports {
        r.print();
    }
    Ok(reports)
}

async fn fanout(args: &BenchArgs) -> anyhow::Result<Vec<Report>> {
    let users = match args.scenario {
        Scenario::Users => args.subscribers,
        _ => args.users,
    };
    let http = reqwest::Client::new();
    let srv = ServerProcess::spawn(users, None)?;
    srv.wait_for_people(&http, users).await?;
    let driver = Driver::new(
        &http,
        &srv.base,
        &srv.sim_url,
        DEMO_TEAM,
        &srv.signing_secret,
    )
    .await?;
    let topics: Vec<String> = match args.scenario {
        Scenario::Users => {
            let mut by_slack = std::collections::HashMap::new();
            let mut cursor: Option<i64> = None;
            loop {
                let mut url = format!("{}/api/users?limit=1000", srv.base);
                if let Some(c) = cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let v: serde_json::Value = http
                    .get(url)
                    .bearer_auth(&srv.token)
                    .send()
                    .await?
                    .json()
                    .await?;
                for u in v["users"].as_array().into_iter().flatten() {
                    if let (Some(s), Some(t)) = (u["slack_id"].as_str(), u["topic"].as_str()) {
                        by_slack.insert(s.to_owned(), t.to_owned());
                    }
                }
                cursor = v["next_cursor"].as_i64();
                if cursor.is_none() {
                    break;
                }
            }
            driver
                .users()
                .iter()
                .map(|u| {
                    by_slack
                        .get(u["id"].as_str().unwrap_or(""))
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("no person for {}", u["id"]))
                })
                .collect::<anyhow::Result<_>>()?
        }
        _ => vec![format!("team:{DEMO_TEAM}"); args.subscribers],
    };
    let topic_count = match args.scenario {
        Scenario::Users => topics.len(),
        _ => 1,
    };
    // Let the first sweep's allocations settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_base = srv.rss();
    let subs = Subscribers::open(&srv.ws, &srv.token, topics).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = srv.rss();
    let n = subs.count();
    let mut base = Report {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        subscribers: n,
        topics: topic_count,
        rss_base_mb: rss_base as f64 / MB,
        rss_idle_mb: rss_idle as f64 / MB,
        rss_per_conn_kb: rss_idle.saturating_sub(rss_base) as f64 / n.max(1) as f64 / 1024.0,
        ..Default::default()
    };
    if args.scenario == Scenario::Idle {
        base.rss_peak_mb = srv.rss_peak() as f64 / MB;
        subs.finish().await?;
        return Ok(vec![base]);
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut steps = Vec::new();
    for (k, &rate) in args.rates.iter().enumerate() {
        let before = subs.received();
        let failed_before = driver.failed();
        let cpu0 = srv.cpu();
        let writer0 = srv.writer_cpu();
        let client0 = server::cpu_of(std::process::id());
        let machine0 = MachineTicks::now();
        let metrics0 = srv.scrape(&http).await?;
        let started_us = load::now_us();
        subs.set_phase(Phase::Measure(k));
        let per_user = match args.scenario {
            Scenario::Users => {
                driver
                    .drive(rate, args.duration, |_| rng.random_range(0..users))
                    .await
            }
            _ => {
                driver
                    .drive(rate, args.duration, |i| i as usize % users)
                    .await
            }
        };
        let sent: u64 = per_user.iter().sum();
        let expected = match args.scenario {
            Scenario::Users => sent,
            _ => sent * n as u64,
        };
        drain(&subs, before, expected).await;
        let cpu = srv.cpu().saturating_sub(cpu0);
        let client_cpu = server::cpu_of(std::process::id()).saturating_sub(client0);
        let machine = MachineTicks::now();
        // What the server itself counted over the step: tells an event that was late (received
        // and committed, not delivered within the drain) from one that was lost.
        let metrics = srv.scrape(&http).await?;
        let mut server = machine_shares(machine0, machine);
        let writer = srv.writer_cpu().saturating_sub(writer0);
        if !writer.is_zero() {
            server.insert(
                "server_writer_cpu_us_per_change".into(),
                round3(writer.as_micros() as f64 / sent.max(1) as f64).into(),
            );
        }
        for (name, metric) in SERVER_COUNTERS {
            let counted = metrics
                .metric(metric)
                .saturating_sub(metrics0.metric(metric));
            server.insert(format!("server_{name}"), counted.into());
        }
        // The server's share of the latency and its stages, from its own histograms (bucket
        // bounds, so "at most").
        for (name, histogram) in SERVER_STAGES {
            let (before, after) = (metrics0.histogram(histogram), metrics.histogram(histogram));
            for (q, label) in QUANTILES {
                if let Some(le) = server::quantile_between(&before, &after, q) {
                    server.insert(format!("server_{name}_{label}_ms"), (le * 1e3).into());
                }
            }
        }
        steps.push(StepRecord {
            rate,
            sent,
            expected,
            started_us,
            cpu,
            client_cpu,
            failed: driver.failed() - failed_before,
            server,
        });
        // A quiet second between steps, so one step's tail is not the next one's start.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    base.rss_peak_mb = srv.rss_peak() as f64 / MB;
    let seen = subs.finish().await?;
    Ok(step_reports(&base, steps, &seen))
}

/// One step as the load generator saw it from the sending side.
struct StepRecord {
    rate: f64,
    sent: u64,
    expected: u64,
    started_us: u64,
    /// The server's CPU over the step.
    cpu: Duration,
    /// The load generator's (this process's) CPU over the step: it shares the server's cores.
    client_cpu: Duration,
    failed: u64,
    /// The server's own counters over the step.
    server: serde_json::Map<String, serde_json::Value>,
}

/// The machine's idle and steal shares over a step (`machine_idle_pct`, `machine_steal_pct`), the
/// first of its extra figures; none where /proc/stat cannot be read.
fn machine_shares(
    before: Option<MachineTicks>,
    after: Option<MachineTicks>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    if let Some((idle, steal)) = before
        .zip(after)
        .and_then(|(before, after)| after.shares_since(&before))
    {
        extra.insert("machine_idle_pct".into(), idle.into());
        extra.insert("machine_steal_pct".into(), steal.into());
    }
    extra
}

/// Waits until everything expected arrived, or nothing more arrived for 3 s; then stops recording.
async fn drain(subs: &Subscribers, before: u64, expected: u64) {
    let mut last = (before, Instant::now());
    loop {
        let got = subs.received();
        if got - before >= expected {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subs.set_phase(Phase::Idle);
}

/// A report per step: what was sent (`steps`) against what the subscribers saw (`seen`), with the
/// run's connection figures from `base`.
fn step_reports(base: &Report, steps: Vec<StepRecord>, seen: &Seen) -> Vec<Report> {
    let mut reports = Vec::new();
    for (k, st) in steps.into_iter().enumerate() {
        let step = seen.steps.get(k).cloned().unwrap_or_default();
        let delivered = step.latencies.count();
        let secs = (step.last_us.saturating_sub(st.started_us) as f64 / 1e6).max(1e-3);
        let mut extra = st.server;
        extra.extend(base.extra.clone());
        extra.insert(
            "client_cpu_us_per_delivery".into(),
            round3(st.client_cpu.as_micros() as f64 / delivered.max(1) as f64).into(),
        );
        for (part, h) in [
            ("to_server", &step.to_server),
            ("from_server", &step.from_server),
        ] {
            for (q, name) in QUANTILES {
                let ms = h.quantile_us(q) as f64 / 1000.0;
                extra.insert(format!("{part}_{name}_ms"), ms.into());
            }
        }
        reports.push(Report {
            scenario: base.scenario.clone(),
            subscribers: base.subscribers,
            topics: base.topics,
            rate: st.rate,
            sent: st.sent,
            expected: st.expected,
            delivered,
            lost: st.expected as i64 - delivered as i64,
            resyncs: seen.resyncs,
            send_failures: st.failed,
            deliveries_per_sec: delivered as f64 / secs,
            p50_ms: step.latencies.quantile_us(0.5) as f64 / 1000.0,
            p90_ms: step.latencies.quantile_us(0.9) as f64 / 1000.0,
            p99_ms: step.latencies.quantile_us(0.99) as f64 / 1000.0,
            max_ms: step.latencies.max_us() as f64 / 1000.0,
            rss_base_mb: base.rss_base_mb,
            rss_idle_mb: base.rss_idle_mb,
            rss_peak_mb: base.rss_peak_mb,
            rss_per_conn_kb: base.rss_per_conn_kb,
            cpu_us_per_delivery: st.cpu.as_micros() as f64 / delivered.max(1) as f64,
            extra,
        });
    }
    reports
}

/// The floor (`floor.rs`): the team scenario's subscribers and schedule against a bare server
/// that only writes, for a ratio against Chex from the same machine.
async fn floor_run(args: &BenchArgs) -> anyhow::Result<Vec<Report>> {
    let writers = floor::writers(args.floor_writers);
    let mut floor = floor::FloorProcess::spawn(args.users, writers)?;
    let topics = vec![format!("team:{DEMO_TEAM}"); args.subscribers];
    let subs = Subscribers::open(&floor.ws, "floor", topics).await?;
    let n = subs.count();
    let mut base = Report {
        scenario: "floor".into(),
        subscribers: n,
        topics: 1,
        ..Default::default()
    };
    base.extra.insert("floor_writers".into(), writers.into());
    let pid = floor.pid();
    let mut steps = Vec::new();
    for (k, &rate) in args.rates.iter().enumerate() {
        let step = reference_step(
            &subs,
            pid,
            k,
            rate,
            async {
                let last = std::sync::atomic::AtomicU64::new(0);
                let mut sent = 0;
                let mut failed = None;
                load::open_loop(rate, args.duration, |_| {
                    match floor.change(load::unique_stamp(&last)) {
                        Ok(()) => sent += 1,
                        Err(e) => failed = Some(e),
                    }
                })
                .await;
                if let Some(e) = failed {
                    bail!("the floor server stopped taking changes: {e}");
                }
                Ok(Sent {
                    sent,
                    expected: sent * n as u64,
                })
            },
            || 0,
        )
        .await?;
        steps.push(step);
    }
    let seen = subs.finish().await?;
    Ok(step_reports(&base, steps, &seen))
}

/// What one step against a reference server sent: changes, and the deliveries they call for.
struct Sent {
    sent: u64,
    expected: u64,
}

/// One step against a reference server, process `pid`, which keeps no histograms: `send` drives
/// the step, and the subscribers' count and both processes' CPU are read around it; `failed`,
/// read once the deliveries are drained, counts the step's posts not answered with a 2xx.
async fn reference_step(
    subs: &Subscribers,
    pid: u32,
    k: usize,
    rate: f64,
    send: impl Future<Output = anyhow::Result<Sent>>,
    failed: impl FnOnce() -> u64,
) -> anyhow::Result<StepRecord> {
    let before = subs.received();
    let cpu0 = server::cpu_of(pid);
    let client0 = server::cpu_of(std::process::id());
    let machine0 = MachineTicks::now();
    let started_us = load::now_us();
    subs.set_phase(Phase::Measure(k));
    let Sent { sent, expected } = send.await?;
    drain(subs, before, expected).await;
    let step = StepRecord {
        rate,
        sent,
        expected,
        started_us,
        cpu: server::cpu_of(pid).saturating_sub(cpu0),
        client_cpu: server::cpu_of(std::process::id()).saturating_sub(client0),
        failed: failed(),
        server: machine_shares(machine0, MachineTicks::now()),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(step)
}

/// The users scenario's subscribers and schedule against the users floor. Slack's `users.list`,
/// which the sender's events are built from, comes from a simulator in this process.
async fn users_floor_run(args: &BenchArgs) -> anyhow::Result<Vec<Report>> {
    use crate::sim::slack::{SimOptions, SlackSim, WorkspaceSpec};
    let spec = WorkspaceSpec::new(DEMO_TEAM, args.subscribers);
    let sim = SlackSim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        vec![spec.clone()],
        SimOptions {
            rate_scale: None,
            life_interval: None,
            seed: 42,
        },
    )
    .await?;
    let floor = floor_users::UsersFloorProcess::spawn(&spec.signing_secret)?;
    let http = reqwest::Client::new();
    let driver = Driver::new(
        &http,
        &floor.http,
        &sim.api_url(),
        DEMO_TEAM,
        &spec.signing_secret,
    )
    .await?;
    let topics: Vec<String> = driver
        .users()
        .iter()
        .map(|u| floor_users::topic_of(u["id"].as_str().unwrap_or_default()))
        .collect();
    let users = topics.len();
    let subs = Subscribers::open(&floor.ws, "floor", topics).await?;
    let base = Report {
        scenario: "users-floor".into(),
        subscribers: subs.count(),
        topics: users,
        ..Default::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pid = floor.pid();
    let mut steps = Vec::new();
    for (k, &rate) in args.rates.iter().enumerate() {
        let failed_before = driver.failed();
        let step = reference_step(
            &subs,
            pid,
            k,
            rate,
            async {
                let per_user = driver
                    .drive(rate, args.duration, |_| rng.random_range(0..users))
                    .await;
                let sent = per_user.iter().sum();
                Ok(Sent {
                    sent,
                    expected: sent,
                })
            },
            || driver.failed() - failed_before,
        )
        .await?;
        steps.push(step);
    }
    let seen = subs.finish().await?;
    sim.stop();
    Ok(step_reports(&base, steps, &seen))
}

use rand::{Rng, SeedableRng};

/// The quantiles each step reports of its latency's parts, with their names in the report.
const QUANTILES: [(f64, &str); 2] = [(0.5, "p50"), (0.99, "p99")];

/// The server's histograms of a change's way through it, `(name in the report, metric)`: the
/// wait for the pipeline's writer (queue, spacing, the commit before), a batch's commit, the whole
/// of observation to publication, and publication to the socket's flush.
const SERVER_STAGES: [(&str, &str); 4] = [
    ("wait", "chex_pipeline_wait_seconds"),
    ("commit", "chex_db_write_duration_seconds"),
    ("publish", "chex_publish_delay_seconds"),
    ("write", "chex_ws_write_delay_seconds"),
];

/// The server's own counts of Slack events received, status events committed, events lost after
/// every retry, and readings dropped as older than the field's last (two pushes about one person
/// handled in the reverse of their arrival): `(name in the report, metric)`.
const SERVER_COUNTERS: [(&str, &str); 4] = [
    ("received", "chex_slack_events_received_total"),
    ("committed", "chex_events_committed_total"),
    ("lost", "chex_events_lost_total"),
    ("superseded", "chex_readings_superseded_total"),
];

/// Scenario 5: full sweeps of `users` people through the real poller (CPU and wall time of the
/// server process; the simulators' thread is measured apart) — the first, which imports everyone, and the next one,
/// which is what recurs every `CHEX_POLL_SWEEP_INTERVAL` — then `events` history writes in
/// batches of 2,000 on SQLite and, when `CHEX_TEST_DATABASE_URL` names a server, on a scratch
/// PostgreSQL database.
async fn pipeline(args: &BenchArgs) -> anyhow::Result<Vec<Report>> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    // Sweeps back to back (1 s apart) so the second one can be timed on its own, and no presence
    // polling of unwatched people (nobody watches here), which would otherwise fill the window
    // with ~650 polls and their events: the figure is the sweep's.
    let srv = ServerProcess::spawn_with(
        args.users,
        None,
        &[
            ("CHEX_POLL_SWEEP_INTERVAL", "1"),
            ("CHEX_POLL_UNWATCHED_PRESENCE", "false"),
        ],
    )?;
    let cpu_start = srv.cpu();
    let sims_start = srv.sims_cpu();
    srv.wait_for_people(&http, args.users).await?;
    let wall = started.elapsed();
    let cpu = srv.cpu().saturating_sub(cpu_start);
    let sims_cpu = srv.sims_cpu().saturating_sub(sims_start);
    // The steady sweep: from the end of one sweep to the end of the next (1 s of waiting and the
    // runtime's idle wake-ups included).
    let first = srv
        .wait_for_metric(&http, "chex_slack_sweeps_total", 1)
        .await?;
    let (cpu0, sims0, t0) = (srv.cpu(), srv.sims_cpu(), Instant::now());
    srv.wait_for_metric(&http, "chex_slack_sweeps_total", first + 1)
        .await?;
    let (steady_cpu, steady_wall) = (srv.cpu().saturating_sub(cpu0), t0.elapsed());
    let steady_sims = srv.sims_cpu().saturating_sub(sims0);
    let mut r = Report {
        scenario: "pipeline".into(),
        rss_peak_mb: srv.rss_peak() as f64 / MB,
        ..Default::default()
    };
    drop(srv);
    r.extra.insert("sweep_users".into(), args.users.into());
    for (name, d) in [
        ("sweep_wall_s", wall),
        ("sweep_cpu_s", cpu),
        ("steady_sweep_wall_s", steady_wall),
        ("steady_sweep_cpu_s", steady_cpu),
        ("sweep_sims_cpu_s", sims_cpu),
        ("steady_sweep_sims_cpu_s", steady_sims),
    ] {
        r.extra.insert(name.into(), round3(d.as_secs_f64()).into());
    }

    let dir = std::env::temp_dir().join(format!("chex-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite =
        crate::store::Store::connect(&format!("sqlite://{}/history.db?mode=rwc", dir.display()))
            .await?;
    sqlite.migrate().await?;
    let rate = history_writes(&sqlite, args.events).await?;
    r.extra
        .insert("sqlite_events_per_s".into(), rate.round().into());
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var("CHEX_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
        && let Some(pg) = crate::store::testing::TestDb::postgres().await
    {
        let rate = history_writes(&pg.store, args.events).await?;
        r.extra
            .insert("postgres_events_per_s".into(), rate.round().into());
    }
    Ok(vec![r])
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Appends `n` events for 1,000 people in batches of 2,000 (the pipeline's batch size) and
/// returns events per second.
async fn history_writes(store: &crate::store::Store, n: usize) -> anyhow::Result<f64> {
    use crate::domain::{Field, Presence, Source, Status};
    use crate::store::{NewConnection, NewEvent, SlackUserRecord};
    let org = store.ensure_organization("bench").await?;
    let conn = store
        .upsert_connection(NewConnection {
            organization_id: org.id,
            kind: "slack",
            external_id: "TBENCH",
            name: "bench",
            credential_ciphertext: "x".into(),
            signing_secret_ciphertext: None,
            fingerprint: "f".into(),
        })
        .await?;
    let records: Vec<SlackUserRecord> = (0..1000)
        .map(|i| SlackUserRecord {
            slack_id: format!("UB{i:06}"),
            team_id: "TBENCH".into(),
            name: format!("user{i}"),
            ..Default::default()
        })
        .collect();
    let people: Vec<i64> = store
        .upsert_slack_users(conn.id, org.id, &records)
        .await?
        .iter()
        .map(|p| p.person_id)
        .collect();
    let t0 = crate::domain::now();
    let started = Instant::now();
    let mut written = 0;
    while written < n {
        let batch: Vec<NewEvent> = (written..(written + 2000).min(n))
            .map(|i| NewEvent {
                person_id: people[i % people.len()],
                observed_at: t0 + chrono::Duration::milliseconds(i as i64),
                status: Status {
                    presence: if i % 2 == 0 {
                        Presence::Active
                    } else {
                        Presence::Away
                    },
                    text: format!("status {i}"),
                    ..Status::default()
                },
                changed: vec![Field::Presence, Field::Text],
                previous: Default::default(),
                source: Source::Slack,
            })
            .collect();
        written += batch.len();
        store.append_events(&batch).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
