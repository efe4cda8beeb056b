//! A Slack Web API simulator: the methods Chex calls, with Slack's JSON shapes, cursor paging,
//! per-(token, method) tier limits answered with HTTP 429 + `Retry-After`, scripted and random
//! status life, signed Events API callbacks redelivered on failure as Slack does, and fault
//! injection for tests.
//!
//! Start it with [`SlackSim::start`]; drive it through the returned handle (tests) or its
//! `/_sim/…` HTTP control routes (scripts, browser tests).

mod delivery;
mod limits;
mod names;
mod server;
mod world;

pub use world::{Faults, SimWorkspace, WorkspaceSpec};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use limits::Limits;
use world::World;

/// A running simulator. Cloning shares it.
#[derive(Clone)]
pub struct SlackSim {
    pub(crate) world: Arc<Mutex<World>>,
    pub(crate) limits: Arc<Limits>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Multiplies Slack's per-minute tiers; `None` disables enforcement.
    pub rate_scale: Option<f64>,
    /// Random status changes this often (per workspace, a few users each time); `None`: only
    /// scripted changes.
    pub life_interval: Option<Duration>,
    /// Seed of every random choice: the same seed gives the same workspace and the same life.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            rate_scale: Some(1.0),
            life_interval: None,
            seed: 42,
        }
    }
}

impl SlackSim {
    /// Binds `listener` and serves the given workspaces until the handle's `stop` (or drop of
    /// every clone) — the server task ends with the token.
    pub async fn start(
        listener: TcpListener,
        workspaces: Vec<WorkspaceSpec>,
        opts: SimOptions,
    ) -> std::io::Result<SlackSim> {
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World::new(
            &workspaces,
            opts.seed,
            format!("http://{addr}"),
        )));
        let limits = Arc::new(Limits::new(opts.rate_scale));
        let shutdown = CancellationToken::new();
        let http = delivery::client().map_err(std::io::Error::other)?;
        let sim = SlackSim {
            world,
            limits,
            addr,
            shutdown,
            http,
        };
        tokio::spawn(server::serve(listener, sim.clone()));
        if let Some(every) = opts.life_interval {
            tokio::spawn(sim.clone().live(every));
        }
        Ok(sim)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API base URL, e.g. `http://127.0.0.1:4000/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Reads or changes the simulated world.
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    /// Calls received for `method` (every outcome, 429s included).
    pub fn calls(&self, method: &str) -> u64 {
        self.limits.calls(method)
    }

    /// HTTP 429 answers given so far, all methods.
    pub fn rate_limited(&self) -> u64 {
        self.limits.rejected()
    }

    /// Where signed `user_change` callbacks go when the simulator changes a user.
    pub fn set_events_url(&self, url: Option<String>) {
        self.with(|w| w.events_url = url);
    }

    /// Applies a random change to a few users and pushes the callbacks.
    pub async fn step(&self) {
        let pushes = self.with(|w| w.random_step());
        self.push(pushes).await;
    }

    /// Sets a user's custom status as Slack would (profile edit), pushing `user_change`.
    pub async fn set_status(
        &self,
        team: &str,
        user: &str,
        text: &str,
        emoji: &str,
        expiration: i64,
    ) -> bool {
        let push = self.with(|w| w.set_status(team, user, text, emoji, expiration));
        let ok = push.is_some();
        self.push(push.into_iter().collect()).await;
        ok
    }

    pub fn set_presence(&self, team: &str, user: &str, active: bool) -> bool {
        self.with(|w| w.set_presence(team, user, active))
    }

    /// Sets the waits before each redelivery of a callback the app failed to take (Slack's:
    /// at once, a minute, five minutes); tests shorten them.
    pub fn set_event_retry_delays(&self, delays: Vec<Duration>) {
        self.with(|w| w.retry_delays = delays);
    }

    /// Delivers each callback in turn; one that fails is retried later, on its own.
    async fn push(&self, pushes: Vec<world::Push>) {
        let delays = self.with(|w| w.retry_delays.clone());
        for p in pushes {
            delivery::deliver(&self.http, p, delays.clone(), &self.shutdown).await;
        }
    }

    async fn live(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => self.step().await,
            }
        }
    }
}
