//! `chex demo`: Chex on the embedded database with a simulated Slack workspace whose people
//! change status every few seconds, a demo organization and admin, and the lines a newcomer needs.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{Server, StartError};
use crate::auth::hash_password;
use crate::config::{Config, Secret};
use crate::crypto::{SecretKey, fingerprint};
use crate::sim::slack::{SimOptions, SlackSim, WorkspaceSpec};
use crate::store::{NewAccount, NewCheck, NewConnection, Store};

pub const DEMO_EMAIL: &str = "admin@demo.chex";
pub const DEMO_TEAM: &str = "T0DEMO";

/// What the demo started.
pub struct Demo {
    pub server: Server,
    pub sim: SlackSim,
    pub password: String,
    pub admin_token: String,
}

/// Fills in what the demo may make up: secrets when unset, the simulator as Slack, brisk polling.
pub fn prepare(mut config: Config, sim_url: &str) -> Config {
    if config.jwt_secret.expose().len() < 32 {
        config.jwt_secret = Secret::new(crate::crypto::random_token("demo-"));
    }
    if SecretKey::parse(config.secret_key.expose()).is_err() {
        config.secret_key = Secret::new(SecretKey::generate());
    }
    config.slack_api_url = sim_url.to_owned();
    if std::env::var("CHEX_POLL_WATCHED_INTERVAL").is_err() {
        config.poll_watched_interval = 5;
    }
    if std::env::var("CHEX_POLL_SWEEP_INTERVAL").is_err() {
        config.poll_sweep_interval = 10;
    }
    if std::env::var("CHEX_POLL_DND_INTERVAL").is_err() {
        config.poll_dnd_interval = 15;
    }
    if std::env::var("CHEX_SLACK_RATE_SCALE").is_err() {
        config.slack_rate_scale = 10.0;
    }
    config
}

/// Starts the simulator and Chex, and seeds the demo organization.
pub async fn start(
    config: Config,
    users: usize,
    signing_secret: Option<String>,
    life: Option<Duration>,
) -> Result<Demo, StartError> {
    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| StartError::Other(format!("simulator: {e}")))?;
    let mut spec = WorkspaceSpec::new(DEMO_TEAM, users);
    spec.team_name = "Demo Workspace".into();
    if let Some(s) = signing_secret {
        spec.signing_secret = s;
    }
    let scale = config_scale(&config);
    let sim = SlackSim::start(
        sim_listener,
        vec![spec.clone()],
        SimOptions {
            rate_scale: Some(scale),
            life_interval: life,
            seed: 7,
        },
    )
    .await
    .map_err(|e| StartError::Other(format!("simulator: {e}")))?;
    let config = prepare(config, &sim.api_url());
    let store = Store::connect(&config.database_url)
        .await
        .map_err(StartError::Database)?;
    store.migrate().await.map_err(StartError::Migrate)?;
    let key = SecretKey::parse(config.secret_key.expose())
        .map_err(|e| StartError::Other(e.to_string()))?;

    let org = store
        .ensure_organization("demo")
        .await
        .map_err(StartError::Database)?;
    let password =
        std::env::var("CHEX_DEMO_PASSWORD").unwrap_or_else(|_| "chex-demo-password".into());
    let account = match store
        .account_by_email(DEMO_EMAIL)
        .await
        .map_err(StartError::Database)?
    {
        Some(a) => a,
        None => store
            .create_account(NewAccount {
                organization_id: org.id,
                email: DEMO_EMAIL,
                password_hash: &hash_password(&password),
                role: "admin",
            })
            .await
            .map_err(StartError::Database)?,
    };
    let conn = store
        .upsert_connection(NewConnection {
            organization_id: org.id,
            kind: "slack",
            external_id: &spec.team_id,
            name: &spec.team_name,
            credential_ciphertext: key.seal(&spec.token),
            signing_secret_ciphertext: Some(key.seal(&spec.signing_secret)),
            fingerprint: fingerprint(&spec.token),
        })
        .await
        .map_err(StartError::Database)?;
    if store
        .checks(None, Some(conn.id), None)
        .await
        .map_err(StartError::Database)?
        .is_empty()
    {
        store
            .create_check(NewCheck {
                organization_id: org.id,
                connection_id: conn.id,
                kind: "slack",
                subject: "*",
                interval_secs: config.poll_watched_interval as i32,
            })
            .await
            .map_err(StartError::Database)?;
    }
    let listener = TcpListener::bind(config.bind).await.map_err(|e| {
        StartError::Other(format!("CHEX_BIND: cannot listen on {}: {e}", config.bind))
    })?;
    let server = Server::start_with_store(config, listener, store).await?;
    sim.set_events_url(Some(format!("http://{}/slack/events", server.addr)));
    let (admin_token, _) = server.state.keys.mint(
        &account.id.to_string(),
        org.id,
        "admin",
        None,
        Some(24 * 3600 + 60),
    );
    Ok(Demo {
        server,
        sim,
        password,
        admin_token,
    })
}

fn config_scale(config: &Config) -> f64 {
    if std::env::var("CHEX_SLACK_RATE_SCALE").is_ok() {
        config.slack_rate_scale
    } else {
        10.0
    }
}
