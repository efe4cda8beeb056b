//! A Gmail simulator: Google's OAuth2 token endpoint (`grant_type=refresh_token`) and the Gmail
//! calls Chex makes (`users.getProfile`, `users.settings.getVacation`, and `updateVacation` for
//! the person switching it), with Google's error envelopes, quota errors (429 and 403
//! `userRateLimitExceeded`), revocable grants, expiring access tokens and faults.

mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sim::faults::Faults;
use crate::sources::gmail::types::VacationSettings;

pub const CLIENT_ID: &str = "1234567890-sim.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-sim-client-secret";
/// Access tokens live this long, as Google's do.
pub const ACCESS_TOKEN_SECS: i64 = 3599;

pub struct Mailbox {
    pub address: String,
    pub refresh_token: String,
    /// Access token → expiry (unix seconds).
    pub access: HashMap<String, i64>,
    pub vacation: VacationSettings,
    pub messages_total: i64,
    pub faults: Faults,
    /// Quota faults answer 403 `userRateLimitExceeded` instead of 429.
    pub quota_as_403: bool,
}

impl Mailbox {
    pub fn new(address: &str) -> Mailbox {
        Mailbox {
            address: address.to_owned(),
            refresh_token: refresh_token_for(address),
            access: HashMap::new(),
            vacation: VacationSettings::default(),
            messages_total: 1200,
            faults: Faults::default(),
            quota_as_403: false,
        }
    }

    /// Switches the responder as the person would in Gmail's settings.
    pub fn set_vacation(
        &mut self,
        on: bool,
        subject: &str,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
    ) {
        self.vacation = VacationSettings {
            enable_auto_reply: on,
            response_subject: Some(subject.to_owned()),
            response_body_plain_text: Some(format!("{subject}. I will answer when I am back.")),
            response_body_html: None,
            restrict_to_contacts: false,
            restrict_to_domain: false,
            start_time: start_ms,
            end_time: end_ms,
        };
    }

    /// Every access token stops working now (the client must refresh).
    pub fn expire_access_tokens(&mut self) {
        self.access.clear();
    }
}

/// The refresh token the simulator issues for a mailbox: what an admin pastes in.
pub fn refresh_token_for(address: &str) -> String {
    format!("1//sim-refresh-{address}")
}

pub struct GmailWorld {
    pub mailboxes: Vec<Mailbox>,
    rng: StdRng,
}

impl GmailWorld {
    pub fn mailbox(&mut self, address: &str) -> Option<&mut Mailbox> {
        self.mailboxes.iter_mut().find(|m| m.address == address)
    }

    fn by_access_token(&mut self, token: &str, now: i64) -> Option<&mut Mailbox> {
        self.mailboxes
            .iter_mut()
            .find(|m| m.access.get(token).is_some_and(|exp| *exp > now))
    }

    fn issue_access_token(&mut self, i: usize, now: i64) -> String {
        let token = format!("ya29.sim-{:016x}", self.rng.random::<u64>());
        let m = &mut self.mailboxes[i];
        m.access.retain(|_, exp| *exp > now);
        m.access.insert(token.clone(), now + ACCESS_TOKEN_SECS);
        token
    }

    /// Someone switches their responder on or off: a team going on holiday.
    pub fn random_step(&mut self) {
        if self.mailboxes.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.mailboxes.len());
        let on = !self.mailboxes[i].vacation.enable_auto_reply;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let days = self.rng.random_range(1..14);
        self.mailboxes[i].set_vacation(
            on,
            "Out of office",
            Some(now_ms - 60_000),
            Some(now_ms + days * 86_400_000),
        );
    }
}

/// A running Gmail simulator. Cloning shares it.
#[derive(Clone)]
pub struct GmailSim {
    world: Arc<Mutex<GmailWorld>>,
    calls: Arc<DashMap<&'static str, u64>>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl GmailSim {
    pub async fn start(
        listener: TcpListener,
        addresses: &[String],
        seed: u64,
        life: Option<Duration>,
    ) -> std::io::Result<GmailSim> {
        let addr = listener.local_addr()?;
        let sim = GmailSim {
            world: Arc::new(Mutex::new(GmailWorld {
                mailboxes: addresses.iter().map(|a| Mailbox::new(a)).collect(),
                rng: StdRng::seed_from_u64(seed),
            })),
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

    /// The API base (`CHEX_GMAIL_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint (`CHEX_GOOGLE_TOKEN_URL`).
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut GmailWorld) -> R) -> R {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    /// Applies `f` to one mailbox; false when there is no such mailbox.
    pub fn mailbox(&self, address: &str, f: impl FnOnce(&mut Mailbox)) -> bool {
        self.with(|w| w.mailbox(address).map(f).is_some())
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.calls.get(op).map_or(0, |c| *c)
    }

    fn count(&self, op: &'static str) {
        *self.calls.entry(op).or_default() += 1;
    }
}
