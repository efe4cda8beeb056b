//! The server under test: `chex demo` in a child process, so its memory and CPU can be read from
//! /proc apart from the load generator's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How often the waits below read `/metrics`. The scrapes are server CPU like any other
/// request, so they are counted in the figures measured while waiting (a sweep's CPU): at 20 ms
/// they were a fifth of a steady sweep's.
const SCRAPE_EVERY: Duration = Duration::from_millis(200);

/// A running `chex demo` child; killed on drop.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub ws: String,
    pub token: String,
    pub sim_url: String,
    pub signing_secret: String,
    _dir: TempDir,
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts a demo server of `users` people with no simulated status churn (the bench makes the
    /// changes) and polling slow enough to stay out of the measurement once the first sweep is in.
    pub fn spawn(users: usize, database_url: Option<&str>) -> anyhow::Result<ServerProcess> {
        Self::spawn_with(users, database_url, &[])
    }

    /// As [`ServerProcess::spawn`], with settings of the scenario's own (applied last).
    pub fn spawn_with(
        users: usize,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ServerProcess> {
        let dir = std::env::temp_dir().join(format!(
            "chex-bench-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let secret = format!("bench-secret-{}", rand::random::<u64>());
        let db = database_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.0.display()));
        // `CHEX_BENCH_SERVER_WRAPPER="heaptrack -o /tmp/ht"` runs the server under a profiler
        // (docs/benchmarks.md, "Profiling"); /proc figures are then the wrapper's, not the server's.
        let wrapper = std::env::var("CHEX_BENCH_SERVER_WRAPPER").unwrap_or_default();
        let mut argv: Vec<std::ffi::OsString> =
            wrapper.split_whitespace().map(Into::into).collect();
        argv.push(std::env::current_exe()?.into());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("demo")
            .env("CHEX_DATABASE_URL", db)
            .env("CHEX_BIND", "127.0.0.1:0")
            .env("CHEX_DEMO_USERS", users.to_string())
            .env("CHEX_DEMO_SIGNING_SECRET", &secret)
            .env("CHEX_DEMO_CHANGE_EVERY", "0")
            .env("CHEX_POLL_SWEEP_INTERVAL", "3600")
            .env("CHEX_POLL_WATCHED_INTERVAL", "3600")
            .env("CHEX_POLL_DND_INTERVAL", "3600")
            // The demo's Jira site and mailboxes poll too; keep them out of the figures.
            .env("CHEX_POLL_JIRA_INTERVAL", "3600")
            .env("CHEX_POLL_GMAIL_INTERVAL", "3600")
            // Slack's tiers ×20: the first sweep of 50,000 people takes ~40 s instead of 12 min,
            // and presence polling stays a background trickle, as in production.
            .env("CHEX_SLACK_RATE_SCALE", "20")
            .env("CHEX_WS_MAX_TOPICS", "100")
            .env("CHEX_LOG", "warn")
            .env_remove("CHEX_PUBLIC_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting chex demo")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let lines = BufReader::new(stdout).lines();
        // A wrapper may print lines of its own before the demo's first.
        let mut lines =
            lines.skip_while(|l| l.as_ref().is_ok_and(|l| !l.starts_with("dashboard: ")));
        let mut field = |prefix: &str| -> anyhow::Result<String> {
            let line = lines
                .next()
                .context("chex demo exited before printing its address")??;
            line.strip_prefix(prefix)
                .map(|s| s.trim().to_owned())
                .with_context(|| format!("expected {prefix:?}, got {line:?}"))
        };
        let base = field("dashboard: ")?.trim_end_matches('/').to_owned();
        let _login = field("login: ")?;
        let token = field("token: ")?;
        let sim_url = field("slack simulator: ")?;
        // Keep reading what else the demo prints: a closed pipe would fail its next line.
        std::thread::spawn(move || lines.for_each(drop));
        let ws = base.replacen("http://", "ws://", 1) + "/ws";
        Ok(ServerProcess {
            child,
            base,
            ws,
            token,
            sim_url,
            signing_secret: secret,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident memory since start, in bytes.
    pub fn rss_peak(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:") * 1024
    }

    /// User + system CPU time used so far by the server, without the demo's simulators (they
    /// stand in for Slack, Jira and Google, and run on a thread of their own).
    pub fn cpu(&self) -> Duration {
        cpu_of(self.pid()).saturating_sub(self.sims_cpu())
    }

    /// CPU time of the simulators' thread.
    pub fn sims_cpu(&self) -> Duration {
        self.thread_cpu(crate::demo::SIM_THREAD)
    }

    /// CPU time of the pipeline's writer thread (zero where the writer has no thread of its own:
    /// on PostgreSQL). Every change passes through it in turn, and it is over half the server's
    /// CPU in the users scenario (docs/benchmarks.md, "What session 25 tried").
    pub fn writer_cpu(&self) -> Duration {
        self.thread_cpu(crate::poll::pipeline::WRITER_THREAD)
    }

    /// CPU time of the server's threads named `name`.
    fn thread_cpu(&self, name: &str) -> Duration {
        let pid = self.pid();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Duration::ZERO;
        };
        tasks
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })
            .map(|t| stat_cpu(&t.path().join("stat")))
            .sum()
    }

    /// Waits until the server reports `users` people with a status (the first sweep is in).
    pub async fn wait_for_people(
        &self,
        http: &reqwest::Client,
        users: usize,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let committed = self.metric(http, "chex_events_committed_total").await?;
            if committed >= users as u64 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {committed} of {users} people appeared within 10 minutes");
            }
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
    }

    /// Waits (10 minutes at most) until a counter reaches `at_least`; returns its value.
    pub async fn wait_for_metric(
        &self,
        http: &reqwest::Client,
        name: &str,
        at_least: u64,
    ) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let v = self.metric(http, name).await?;
            if v >= at_least {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{name} stayed at {v} (waited for {at_least})");
            }
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
    }

    /// The server's /metrics, read once.
    pub async fn scrape(&self, http: &reqwest::Client) -> anyhow::Result<Scrape> {
        Ok(Scrape(
            http.get(format!("{}/metrics", self.base))
                .send()
                .await?
                .text()
                .await?,
        ))
    }

    /// One counter or gauge, read now.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<u64> {
        Ok(self.scrape(http).await?.metric(name))
    }
}

/// One reading of the server's /metrics text.
pub struct Scrape(String);

impl Scrape {
    /// A counter or gauge (summed over labels).
    pub fn metric(&self, name: &str) -> u64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// A histogram's cumulative buckets, as `(upper bound in seconds, count)`.
    pub fn histogram(&self, name: &str) -> Vec<(f64, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        self.0
            .lines()
            .filter_map(|l| {
                let (le, count) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.parse().ok()?))
            })
            .collect()
    }
}

/// The bucket bound under which a `q` share of what was counted between two scrapes of one
/// histogram fell (`None` if nothing was counted).
pub fn quantile_between(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .zip(before.iter().map(|b| b.1).chain(std::iter::repeat(0)))
        .map(|(&(le, a), b)| (le, a.saturating_sub(b)))
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil() as u64;
    delta.iter().find(|(_, c)| *c >= want).map(|(le, _)| *le)
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, from /proc/<pid>/stat (clock ticks of 10 ms on Linux).
pub fn cpu_of(pid: u32) -> Duration {
    stat_cpu(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// utime + stime from a process's or thread's `stat` file.
fn stat_cpu(path: &std::path::Path) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name, which may itself hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The whole machine's CPU time so far, from the first line of /proc/stat (clock ticks): what the
/// two processes of a step left idle, and what the hypervisor took. These VMs report steal time,
/// and a step during which the host took a third of the CPUs measures the host, not Chex: the
/// bench records both shares with every step so that such a run can be told apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub idle: u64,
    pub steal: u64,
    pub total: u64,
}

impl MachineTicks {
    pub fn now() -> Option<MachineTicks> {
        MachineTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The `cpu` line: user nice system idle iowait irq softirq steal (guest time is already
    /// counted in user and nice).
    fn parse(stat: &str) -> Option<MachineTicks> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let f: Vec<u64> = line
            .split_whitespace()
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let [_, _, _, idle, iowait, _, _, steal] = f[..] else {
            return None;
        };
        Some(MachineTicks {
            idle: idle + iowait,
            steal,
            total: f.iter().sum(),
        })
    }

    /// Idle and steal, in percent of all the CPUs' time between `before` and `self`.
    pub fn shares_since(&self, before: &MachineTicks) -> Option<(f64, f64)> {
        let total = self.total.checked_sub(before.total).filter(|&t| t > 0)? as f64;
        let pct =
            |now: u64, then: u64| (now.saturating_sub(then) as f64 * 1000.0 / total).round() / 10.0;
        Some((pct(self.idle, before.idle), pct(self.steal, before.steal)))
    }
}

/// Raises this process's open-file limit as far as it may go (children inherit it): the hard
/// limit for anyone, and past it up to 1,048,576 for root.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.max(1 << 20);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_idle_and_steal_shares_come_from_proc_stat() {
        let before = MachineTicks::parse("cpu  100 0 50 800 20 0 10 20 0 0\ncpu0 1 2 3\n");
        assert_eq!(
            before,
            Some(MachineTicks {
                idle: 820,
                steal: 20,
                total: 1000
            })
        );
        // 1,000 ticks later: 300 busy, 400 idle, 100 waiting for the disk, 200 stolen.
        let after = MachineTicks::parse("cpu  300 0 150 1200 120 0 10 220 0 0\n");
        let (Some(before), Some(after)) = (before, after) else {
            panic!("parsed")
        };
        assert_eq!(after.shares_since(&before), Some((50.0, 20.0)));
        assert_eq!(before.shares_since(&before), None, "no time passed");
        assert_eq!(MachineTicks::parse("intr 1 2 3\n"), None);
        assert_eq!(MachineTicks::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn a_quantile_is_read_from_the_buckets_counted_between_two_scrapes() {
        let inf = f64::INFINITY;
        let before = [(0.001, 10), (0.005, 10), (0.01, 10), (inf, 10)];
        // 100 more, of which 90 under 1 ms, 9 under 5 ms and one above 10 ms.
        let after = [(0.001, 100), (0.005, 109), (0.01, 109), (inf, 110)];
        assert_eq!(quantile_between(&before, &after, 0.5), Some(0.001));
        assert_eq!(quantile_between(&before, &after, 0.9), Some(0.001));
        assert_eq!(quantile_between(&before, &after, 0.99), Some(0.005));
        assert_eq!(quantile_between(&before, &after, 1.0), Some(inf));
        assert_eq!(quantile_between(&after, &after, 0.5), None);
        // A server that restarted in between (or a first scrape that failed) reads as a start.
        assert_eq!(quantile_between(&[], &after, 0.5), Some(0.001));
    }

    #[test]
    fn one_scrape_answers_counters_and_histograms() {
        let s = Scrape(
            "# TYPE chex_x_total counter\nchex_x_total{source=\"a\"} 2\nchex_x_total{source=\"b\"} 3\n\
             chex_d_seconds_bucket{le=\"0.001\"} 4\nchex_d_seconds_bucket{le=\"+Inf\"} 6\nchex_d_seconds_count 6\n"
                .into(),
        );
        assert_eq!(s.metric("chex_x_total"), 5);
        assert_eq!(s.metric("chex_missing_total"), 0);
        assert_eq!(
            s.histogram("chex_d_seconds"),
            vec![(0.001, 4), (f64::INFINITY, 6)]
        );
    }
}
