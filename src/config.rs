//! Settings, from flags, the environment and an optional `.env` file (loaded by `main`).
//!
//! Every setting is a `CHEX_…` variable documented in `.env.example`; `chex serve --help` prints
//! the same list. [`Config::validate`] runs before anything starts, so a bad setting stops the
//! process with one line that names the variable and the fix.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// A string that never prints: tokens, keys and passwords in config.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Server settings shared by `chex serve` and `chex demo`.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Database URL: `sqlite://chex.db?mode=rwc` (embedded default) or `postgres://user@host/db`.
    #[arg(
        long,
        env = "CHEX_DATABASE_URL",
        default_value = "sqlite://chex.db?mode=rwc"
    )]
    pub database_url: String,

    /// Address the HTTP/WebSocket server listens on.
    #[arg(long, env = "CHEX_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// URL clients use to reach this server (printed by the demo, used in links). Defaults to
    /// `http://{CHEX_BIND}`.
    #[arg(long, env = "CHEX_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// HS256 key for access tokens: at least 32 bytes. The demo makes one up when unset.
    #[arg(
        long,
        env = "CHEX_JWT_SECRET",
        default_value = "",
        hide_default_value = true
    )]
    pub jwt_secret: Secret,

    /// `iss` claim minted and required.
    #[arg(long, env = "CHEX_JWT_ISSUER", default_value = "chex")]
    pub jwt_issuer: String,

    /// `aud` claim minted and required.
    #[arg(long, env = "CHEX_JWT_AUDIENCE", default_value = "chex")]
    pub jwt_audience: String,

    /// PEM public key (RS256 or ES256) of the operator's own token issuer; tokens it signs are
    /// accepted besides Chex's own HS256 ones. A path to a PEM file works too.
    #[arg(long, env = "CHEX_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "CHEX_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,

    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "CHEX_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,

    /// 32-byte key (base64 or 64 hex digits) that encrypts source tokens at rest (AES-256-GCM).
    /// The demo makes one up when unset.
    #[arg(
        long,
        env = "CHEX_SECRET_KEY",
        default_value = "",
        hide_default_value = true
    )]
    pub secret_key: Secret,

    /// Log filter, in `tracing` directive syntax (`info`, `chex=debug,warn`).
    #[arg(long, env = "CHEX_LOG", default_value = "info")]
    pub log: String,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "CHEX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Base URL of Slack's Web API; tests and the demo point it at the simulator.
    #[arg(
        long,
        env = "CHEX_SLACK_API_URL",
        default_value = "https://slack.com/api"
    )]
    pub slack_api_url: String,

    /// Multiplies Slack's published per-minute limits the governor keeps to. Leave at 1 against
    /// real Slack; the simulator accepts the same factor.
    #[arg(long, env = "CHEX_SLACK_RATE_SCALE", default_value_t = 1.0)]
    pub slack_rate_scale: f64,

    /// Seconds between presence polls of a watched person (someone has them on screen).
    #[arg(long, env = "CHEX_POLL_WATCHED_INTERVAL", default_value_t = 30)]
    pub poll_watched_interval: u64,

    /// Whether presence budget left over after watched people goes to everyone else, oldest poll
    /// first. Off, only watched people are polled: history then holds presence only for people
    /// someone had on screen, and the workspace's `users.getPresence` budget stays free for other
    /// apps sharing it.
    #[arg(long, env = "CHEX_POLL_UNWATCHED_PRESENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub poll_unwatched_presence: bool,

    /// Seconds between full `users.list` sweeps of a workspace (profiles, custom status).
    #[arg(long, env = "CHEX_POLL_SWEEP_INTERVAL", default_value_t = 300)]
    pub poll_sweep_interval: u64,

    /// Seconds between `dnd.teamInfo` rounds.
    #[arg(long, env = "CHEX_POLL_DND_INTERVAL", default_value_t = 120)]
    pub poll_dnd_interval: u64,

    /// Base URL of the Gmail API; tests and the demo point it at the simulator.
    #[arg(
        long,
        env = "CHEX_GMAIL_API_URL",
        default_value = "https://gmail.googleapis.com"
    )]
    pub gmail_api_url: String,

    /// Google's OAuth2 token endpoint, where Gmail refresh tokens are exchanged.
    #[arg(
        long,
        env = "CHEX_GOOGLE_TOKEN_URL",
        default_value = "https://oauth2.googleapis.com/token"
    )]
    pub google_token_url: String,

    /// Seconds between two rounds of a Jira site (each person's in-progress search).
    #[arg(long, env = "CHEX_POLL_JIRA_INTERVAL", default_value_t = 60)]
    pub poll_jira_interval: u64,

    /// Seconds between two reads of a Gmail mailbox's vacation responder.
    #[arg(long, env = "CHEX_POLL_GMAIL_INTERVAL", default_value_t = 120)]
    pub poll_gmail_interval: u64,

    /// Source calls in flight at once across all workspaces: the poller pool's size.
    #[arg(long, env = "CHEX_POLL_WORKERS", default_value_t = 8)]
    pub poll_workers: usize,

    /// Largest WebSocket frame a client may send, in bytes; bigger ones close with 1009.
    #[arg(long, env = "CHEX_WS_MAX_FRAME", default_value_t = 64 * 1024)]
    pub ws_max_frame: usize,

    /// Topics one socket may hold.
    #[arg(long, env = "CHEX_WS_MAX_TOPICS", default_value_t = 1000)]
    pub ws_max_topics: usize,

    /// Frames queued for one socket before it is resynced or, if it stays behind, closed (4008).
    #[arg(long, env = "CHEX_WS_QUEUE", default_value_t = 256)]
    pub ws_queue: usize,

    /// Seconds of silence before the server pings a socket; a socket silent for twice this is
    /// closed as dead.
    #[arg(long, env = "CHEX_WS_PING_INTERVAL", default_value_t = 30)]
    pub ws_ping_interval: u64,

    /// Threads that write a large topic's changes to its idle sockets (docs/architecture.md,
    /// "Direct writes to parked sockets"); 0 for one fewer than the cores, at least one.
    #[arg(long, env = "CHEX_WS_FANOUT_THREADS", default_value_t = 0)]
    pub ws_fanout_threads: usize,
}

/// A setting that cannot work, with the variable and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}; {fix}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

impl Config {
    /// Checks every setting. `demo` relaxes nothing but the secrets, which it generates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.expose().len() < 32 {
            return Err(ConfigError {
                var: "CHEX_JWT_SECRET",
                problem: format!(
                    "is {} bytes, needs at least 32",
                    self.jwt_secret.expose().len()
                ),
                fix: "set it to a random string, e.g. `openssl rand -base64 48`",
            });
        }
        if let Err(e) = crate::crypto::SecretKey::parse(self.secret_key.expose()) {
            return Err(ConfigError {
                var: "CHEX_SECRET_KEY",
                problem: e.to_string(),
                fix: "set it to 32 random bytes in base64, e.g. `openssl rand -base64 32`",
            });
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return Err(ConfigError {
                var: "CHEX_DATABASE_URL",
                problem: "is neither a sqlite: nor a postgres:// URL".into(),
                fix: "use e.g. sqlite://chex.db?mode=rwc or postgres://user@host:5432/chex",
            });
        }
        if url::Url::parse(&self.slack_api_url).is_err() {
            return Err(ConfigError {
                var: "CHEX_SLACK_API_URL",
                problem: "is not a URL".into(),
                fix: "use https://slack.com/api, or the simulator's URL",
            });
        }
        if !(self.slack_rate_scale > 0.0 && self.slack_rate_scale <= 1000.0) {
            return Err(ConfigError {
                var: "CHEX_SLACK_RATE_SCALE",
                problem: "must be above 0 and at most 1000".into(),
                fix: "leave it at 1 against real Slack",
            });
        }
        for (var, v) in [
            ("CHEX_POLL_WATCHED_INTERVAL", self.poll_watched_interval),
            ("CHEX_POLL_SWEEP_INTERVAL", self.poll_sweep_interval),
            ("CHEX_POLL_DND_INTERVAL", self.poll_dnd_interval),
        ] {
            if v == 0 || v > 86_400 {
                return Err(ConfigError {
                    var,
                    problem: format!("{v} is out of range"),
                    fix: "use a number of seconds between 1 and 86400",
                });
            }
        }
        if self.poll_workers == 0 || self.poll_workers > 1024 {
            return Err(ConfigError {
                var: "CHEX_POLL_WORKERS",
                problem: "must be between 1 and 1024".into(),
                fix: "8 suits most installations",
            });
        }
        if self.ws_max_frame < 1024 || self.ws_queue < 8 || self.ws_max_topics == 0 {
            return Err(ConfigError {
                var: "CHEX_WS_MAX_FRAME / CHEX_WS_QUEUE / CHEX_WS_MAX_TOPICS",
                problem: "too small".into(),
                fix: "use at least 1024 bytes, 8 frames and 1 topic",
            });
        }
        if self.access_token_ttl < 10 {
            return Err(ConfigError {
                var: "CHEX_ACCESS_TOKEN_TTL",
                problem: "is under 10 seconds".into(),
                fix: "use e.g. 900",
            });
        }
        if let Some(pem) = &self.jwt_public_key
            && let Err(e) = crate::auth::PublicKey::load(pem)
        {
            return Err(ConfigError {
                var: "CHEX_JWT_PUBLIC_KEY",
                problem: e,
                fix: "give an RS256 or ES256 public key in PEM, or a path to one",
            });
        }
        Ok(())
    }

    /// The URL people and scripts use to reach this server.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn watched_interval(&self) -> Duration {
        Duration::from_secs(self.poll_watched_interval)
    }

    /// A configuration for tests and tools: valid, in memory, with fixed secrets.
    pub fn for_tests() -> Config {
        Config {
            database_url: "sqlite::memory:".into(),
            bind: "127.0.0.1:0".parse().expect("literal address"),
            public_url: None,
            jwt_secret: Secret::new("test-secret-test-secret-test-secret-0123"),
            jwt_issuer: "chex".into(),
            jwt_audience: "chex".into(),
            jwt_public_key: None,
            access_token_ttl: 900,
            refresh_token_ttl: 3600,
            secret_key: Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            log: "warn".into(),
            log_format: LogFormat::Text,
            slack_api_url: "http://127.0.0.1:9/api".into(),
            slack_rate_scale: 1.0,
            poll_watched_interval: 30,
            poll_unwatched_presence: true,
            poll_sweep_interval: 300,
            poll_dnd_interval: 120,
            gmail_api_url: "http://127.0.0.1:9".into(),
            google_token_url: "http://127.0.0.1:9/token".into(),
            poll_jira_interval: 60,
            poll_gmail_interval: 120,
            poll_workers: 8,
            ws_max_frame: 64 * 1024,
            ws_max_topics: 1000,
            ws_queue: 256,
            ws_ping_interval: 30,
            ws_fanout_threads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_config_is_valid() {
        Config::for_tests().validate().expect("valid");
    }

    #[test]
    fn a_short_jwt_secret_names_the_variable_and_the_fix() {
        let mut c = Config::for_tests();
        c.jwt_secret = Secret::new("short");
        let e = c.validate().expect_err("refused").to_string();
        assert!(e.starts_with("CHEX_JWT_SECRET: is 5 bytes"), "{e}");
        assert!(e.contains("openssl rand"), "{e}");
    }

    #[test]
    fn a_bad_secret_key_is_refused() {
        let mut c = Config::for_tests();
        c.secret_key = Secret::new("not-a-key");
        assert_eq!(c.validate().expect_err("refused").var, "CHEX_SECRET_KEY");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let mut c = Config::for_tests();
        c.database_url = "mysql://x".into();
        assert_eq!(c.validate().expect_err("refused").var, "CHEX_DATABASE_URL");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::for_tests();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("test-secret"), "{dbg}");
    }
}
