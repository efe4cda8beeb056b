//! A Jira Cloud simulator: the REST v3 calls Chex makes (`myself`, `users/search`,
//! `search/jql` with token paging, `issue/{key}` with transitions) plus the writes a person makes
//! (`POST …/transitions`, `PUT …/assignee`), Basic auth, 429 + `Retry-After`, and faults.

mod server;
mod world;

pub use world::{JiraWorld, Jql, SimIssue, SimUser, WORKFLOW};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sim::faults::Budget;

/// A site to simulate.
#[derive(Clone, Debug)]
pub struct JiraSpec {
    /// The account Chex reads with, and its API token.
    pub email: String,
    pub api_token: String,
    /// People on the site: (display name, email). Each gets issues round-robin.
    pub people: Vec<(String, String)>,
    pub project: String,
    pub issues: usize,
    /// Calls per minute before 429 (`None`: unlimited).
    pub per_minute: Option<u32>,
}

impl Default for JiraSpec {
    fn default() -> Self {
        JiraSpec {
            email: "chex-reader@example.com".into(),
            api_token: "ATATT3xFfGF0-sim-token".into(),
            people: Vec::new(),
            project: "OPS".into(),
            issues: 0,
            per_minute: None,
        }
    }
}

/// A running Jira simulator. Cloning shares it.
#[derive(Clone)]
pub struct JiraSim {
    world: Arc<Mutex<JiraWorld>>,
    budget: Option<Arc<Mutex<Budget>>>,
    calls: Arc<DashMap<&'static str, u64>>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl JiraSim {
    pub async fn start(
        listener: TcpListener,
        spec: JiraSpec,
        seed: u64,
        life: Option<Duration>,
    ) -> std::io::Result<JiraSim> {
        let addr = listener.local_addr()?;
        let sim = JiraSim {
            world: Arc::new(Mutex::new(JiraWorld::new(
                &spec,
                format!("http://{addr}"),
                seed,
            ))),
            budget: spec
                .per_minute
                .map(|n| Arc::new(Mutex::new(Budget::new(n, Duration::from_secs(60))))),
            calls: Arc::default(),
            addr,
            shutdown: CancellationToken::new(),
        };
        tokio::spawn(server::serve(listener, sim.clone()));
        if let Some(every) = life {
            let s = sim.clone();
            super::every(every, sim.shutdown.clone(), move || {
                s.with(|w| w.random_step())
            });
        }
        Ok(sim)
    }

    /// The site URL a connection is made with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut JiraWorld) -> R) -> R {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    /// Calls received for an operation (`search.jql`, `issue.get`, …), every outcome.
    pub fn calls(&self, op: &str) -> u64 {
        self.calls.get(op).map_or(0, |c| *c)
    }

    fn count(&self, op: &'static str) {
        *self.calls.entry(op).or_default() += 1;
    }
}
