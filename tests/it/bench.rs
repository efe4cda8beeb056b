//! `chex bench` with tiny numbers: the tool works and loses nothing. Counts only, never times.

use serde_json::Value;

fn bench(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chex"))
        .arg("bench")
        .args(args)
        .env_remove("CHEX_DATABASE_URL")
        .env_remove("CHEX_JWT_SECRET")
        .env_remove("CHEX_SECRET_KEY")
        .output()
        .expect("run chex bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("BENCH "))
        .map(|l| serde_json::from_str(l).expect("machine-readable line"))
        .collect()
}

/// One step of one second at `rate`: its report.
fn one_step(scenario: &str, subscribers: u32, rate: u32) -> Value {
    let reports = bench(&[
        "--scenario",
        scenario,
        "--subscribers",
        &subscribers.to_string(),
        "--rates",
        &rate.to_string(),
        "--duration",
        "1",
    ]);
    assert_eq!(reports.len(), 1, "one report per rate");
    reports.into_iter().next().expect("a report")
}

/// Nothing lost, and what the machine did meanwhile recorded (shares of its CPU time).
fn assert_complete_step(r: &Value) {
    assert!(r["sent"].as_u64().expect("sent") > 0, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["delivered"], r["expected"], "{r}");
    assert_eq!(r["send_failures"], 0, "{r}");
    for key in ["machine_idle_pct", "machine_steal_pct"] {
        let pct = r["extra"][key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&pct), "{key}: {r}");
    }
}

#[test]
fn team_fanout_delivers_every_change_to_every_subscriber() {
    let reports = bench(&[
        "--scenario",
        "team",
        "--subscribers",
        "40",
        "--users",
        "8",
        "--rates",
        "20,40",
        "--duration",
        "1",
    ]);
    assert_eq!(reports.len(), 2, "one report per rate");
    for r in &reports {
        assert_complete_step(r);
        assert_eq!(r["subscribers"], 40);
        assert_eq!(r["expected"], r["sent"].as_u64().expect("sent") * 40);
    }
}

/// The reference server gets the same subscribers and schedule, and must deliver as exactly.
#[test]
fn the_floor_server_delivers_every_change_to_every_subscriber() {
    let r = &one_step("floor", 40, 20);
    assert_complete_step(r);
    assert_eq!(r["scenario"], "floor");
    assert_eq!(r["expected"], r["sent"].as_u64().expect("sent") * 40);
    assert!(r["extra"]["client_cpu_us_per_delivery"].is_number(), "{r}");
    assert!(r["extra"]["floor_writers"].as_u64() >= Some(1), "{r}");
}

/// With one writer thread, Chex's shape, the floor delivers as exactly, and says how it ran.
#[test]
fn the_floor_with_one_writer_delivers_every_change_to_every_subscriber() {
    let reports = bench(&[
        "--scenario",
        "floor",
        "--floor-writers",
        "1",
        "--subscribers",
        "40",
        "--rates",
        "20",
        "--duration",
        "1",
    ]);
    let r = reports.first().expect("a report");
    assert_complete_step(r);
    assert_eq!(r["expected"], r["sent"].as_u64().expect("sent") * 40);
    assert_eq!(r["extra"]["floor_writers"], 1, "{r}");
}

/// The users scenario's reference server takes the same signed posts, commits them and must
/// deliver each change once, to its one subscriber.
#[test]
fn the_users_floor_commits_and_delivers_each_change_once() {
    let r = &one_step("users-floor", 30, 60);
    assert_complete_step(r);
    assert_eq!(r["scenario"], "users-floor");
    assert_eq!(r["topics"], 30);
    assert_eq!(r["expected"], r["sent"]);
    // The frames carry observed_at, as Chex's do.
    let ms = r["extra"]["from_server_p50_ms"]
        .as_f64()
        .expect("from_server");
    assert!(ms > 0.0, "{r}");
}

#[test]
fn per_user_topics_deliver_each_change_once() {
    let r = &one_step("users", 30, 60);
    assert_complete_step(r);
    assert_eq!(r["topics"], 30);
    assert_eq!(r["expected"], r["sent"]);
    // Every delivery's latency was also split at the frame's observed_at: a frame the split
    // cannot read leaves its halves empty, and an empty half reads 0.
    for half in ["to_server_p50_ms", "from_server_p99_ms"] {
        let ms = r["extra"][half].as_f64().expect(half);
        assert!(ms > 0.0, "{half} was not recorded: {}", r);
    }
    // And the server counted each stage of the changes' way through it in its histograms.
    for stage in ["wait", "commit", "publish", "write"] {
        let key = format!("server_{stage}_p99_ms");
        let ms = r["extra"][&key].as_f64();
        assert!(ms.is_some_and(|ms| ms > 0.0), "{key} missing: {}", r);
    }
}

#[test]
fn idle_and_pipeline_scenarios_report_memory_and_throughput() {
    let idle = bench(&["--scenario", "idle", "--subscribers", "20", "--users", "5"]);
    assert!(idle[0]["rss_idle_mb"].as_f64().expect("rss") > 0.0);
    let pipeline = bench(&[
        "--scenario",
        "pipeline",
        "--users",
        "300",
        "--events",
        "4000",
    ]);
    let extra = &pipeline[0]["extra"];
    assert_eq!(extra["sweep_users"], 300);
    assert!(extra["sqlite_events_per_s"].as_f64().expect("sqlite rate") > 0.0);
}
