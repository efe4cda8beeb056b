//! `chex demo`: Chex on the embedded database with a simulated Slack workspace whose people
//! change status every few seconds, a Jira site where their issues move, Gmail mailboxes whose
//! vacation responders switch, a demo organization and admin, and the lines a newcomer needs.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{Server, StartError};
use crate::auth::hash_password;
use crate::config::{Config, Secret};
use crate::crypto::{SecretKey, fingerprint};
use crate::sim::gmail::{self, GmailSim};
use crate::sim::jira::{JiraSim, JiraSpec};
use crate::sim::slack::{SimOptions, SlackSim, WorkspaceSpec};
use crate::sources::gmail::GmailCredentials;
use crate::sources::jira::JiraCredentials;
use crate::store::{NewAccount, NewConnection, Store};

pub const DEMO_EMAIL: &str = "admin@demo.chex";
pub const DEMO_TEAM: &str = "T0DEMO";
/// People of the demo workspace who also use Jira (issues round-robin, two each).
const JIRA_PEOPLE: usize = 40;
/// People whose Gmail mailbox the demo connects.
const GMAIL_PEOPLE: usize = 8;

/// What the demo started.
pub struct Demo {
    pub server: Server,
    pub sim: SlackSim,
    pub jira: JiraSim,
    pub gmail: GmailSim,
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
    if std::env::var("CHEX_POLL_JIRA_INTERVAL").is_err() {
        config.poll_jira_interval = 5;
    }
    if std::env::var("CHEX_POLL_GMAIL_INTERVAL").is_err() {
        config.poll_gmail_interval = 5;
    }
    config
}

/// Names and emails of the workspace's people, as the Slack simulator made them.
fn slack_people(sim: &SlackSim, limit: usize) -> Vec<(String, String)> {
    sim.with(|w| {
        w.by_team(DEMO_TEAM)
            .map(|ws| {
                ws.users
                    .iter()
                    .filter(|u| !u.is_bot && !u.deleted)
                    .filter_map(|u| Some((u.real_name.clone(), u.profile.email.clone()?)))
                    .take(limit)
                    .collect()
            })
            .unwrap_or_default()
    })
}

async fn listener(what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| StartError::Other(format!("{what} simulator: {e}")))
}

/// Starts the simulator and Chex, and seeds the demo organization.
pub async fn start(
    config: Config,
    users: usize,
    signing_secret: Option<String>,
    life: Option<Duration>,
) -> Result<Demo, StartError> {
    let mut spec = WorkspaceSpec::new(DEMO_TEAM, users);
    spec.team_name = "Demo Workspace".into();
    if let Some(s) = signing_secret {
        spec.signing_secret = s;
    }
    let scale = config_scale(&config);
    let sims = sim_runtime()?;
    let started = sims.spawn(start_sims(spec.clone(), scale, life));
    let Sims {
        slack: sim,
        jira,
        jira_spec,
        gmail,
        mailboxes,
    } = started
        .await
        .map_err(|e| StartError::Other(format!("simulators: {e}")))??;
    let mut config = prepare(config, &sim.api_url());
    config.gmail_api_url = gmail.api_url();
    config.google_token_url = gmail.token_url();
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
    store
        .track_everyone_unless_checked(&conn, config.poll_watched_interval as i32)
        .await
        .map_err(StartError::Database)?;
    connect_jira(&store, &key, org.id, &jira, &jira_spec).await?;
    for address in &mailboxes {
        connect_gmail(&store, &key, org.id, address).await?;
    }
    let listener = crate::app::listen(config.bind).map_err(|e| {
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
        jira,
        gmail,
        password,
        admin_token,
    })
}

/// The simulators the demo runs, and what Chex is connected to in them.
struct Sims {
    slack: SlackSim,
    jira: JiraSim,
    jira_spec: JiraSpec,
    gmail: GmailSim,
    mailboxes: Vec<String>,
}

/// The thread the demo's simulators run on.
pub const SIM_THREAD: &str = "chex-sims";

/// A runtime on a thread of its own for the simulators: they stand in for Slack, Jira and Google,
/// which are not this process, so `chex bench` reads their CPU apart (per thread, from /proc)
/// and leaves it out of the server's figures.
fn sim_runtime() -> Result<tokio::runtime::Handle, StartError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(SIM_THREAD.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(|e| StartError::Other(format!("simulator thread: {e}")))?;
    rx.recv()
        .map_err(|e| StartError::Other(format!("simulator thread: {e}")))?
        .map_err(|e| StartError::Other(format!("simulator runtime: {e}")))
}

/// Starts Slack, Jira and Gmail simulators whose people are the same (by email). Runs on the
/// simulators' runtime: their sockets belong to its reactor.
async fn start_sims(
    spec: WorkspaceSpec,
    scale: f64,
    life: Option<Duration>,
) -> Result<Sims, StartError> {
    let slack = SlackSim::start(
        listener("slack").await?,
        vec![spec],
        SimOptions {
            rate_scale: Some(scale),
            life_interval: life,
            seed: 7,
        },
    )
    .await
    .map_err(|e| StartError::Other(format!("slack simulator: {e}")))?;
    let people = slack_people(&slack, JIRA_PEOPLE);
    let jira_spec = JiraSpec {
        issues: people.len() * 2,
        people: people.clone(),
        ..JiraSpec::default()
    };
    let jira = JiraSim::start(listener("jira").await?, jira_spec.clone(), 7, life)
        .await
        .map_err(|e| StartError::Other(format!("jira simulator: {e}")))?;
    let mailboxes: Vec<String> = people
        .iter()
        .take(GMAIL_PEOPLE)
        .map(|(_, e)| e.clone())
        .collect();
    let gmail = GmailSim::start(listener("gmail").await?, &mailboxes, 7, life.map(|l| l * 4))
        .await
        .map_err(|e| StartError::Other(format!("gmail simulator: {e}")))?;
    if let Some(first) = mailboxes.first() {
        let now_ms = chrono::Utc::now().timestamp_millis();
        gmail.mailbox(first, |m| {
            m.set_vacation(
                true,
                "Back on Monday",
                Some(now_ms),
                Some(now_ms + 3 * 86_400_000),
            )
        });
    }
    Ok(Sims {
        slack,
        jira,
        jira_spec,
        gmail,
        mailboxes,
    })
}

/// Connects the simulated Jira site as an admin would through `POST /api/connections/jira`.
async fn connect_jira(
    store: &Store,
    key: &SecretKey,
    org: i64,
    jira: &JiraSim,
    spec: &JiraSpec,
) -> Result<(), StartError> {
    let creds = JiraCredentials {
        site_url: jira.url(),
        email: spec.email.clone(),
        api_token: spec.api_token.clone(),
    };
    // A fixed name, not the simulator's port: a demo restarted on the same database replaces
    // the credentials of the same connection instead of adding one per run.
    let external = "demo.atlassian.net";
    let sealed = key.seal(&serde_json::to_string(&creds).unwrap_or_default());
    connect(store, org, "jira", external, sealed, &spec.api_token).await
}

/// Connects one simulated mailbox as `POST /api/connections/gmail` would.
async fn connect_gmail(
    store: &Store,
    key: &SecretKey,
    org: i64,
    address: &str,
) -> Result<(), StartError> {
    let creds = GmailCredentials {
        client_id: gmail::CLIENT_ID.into(),
        client_secret: gmail::CLIENT_SECRET.into(),
        refresh_token: gmail::refresh_token_for(address),
        access_token: None,
        expires_at: None,
    };
    let sealed = key.seal(&serde_json::to_string(&creds).unwrap_or_default());
    connect(store, org, "gmail", address, sealed, &creds.refresh_token).await
}

async fn connect(
    store: &Store,
    org: i64,
    kind: &str,
    external_id: &str,
    sealed: String,
    secret: &str,
) -> Result<(), StartError> {
    let conn = store
        .upsert_connection(NewConnection {
            organization_id: org,
            kind,
            external_id,
            name: external_id,
            credential_ciphertext: sealed,
            signing_secret_ciphertext: None,
            fingerprint: fingerprint(secret),
        })
        .await
        .map_err(StartError::Database)?;
    store
        .track_everyone_unless_checked(&conn, 5)
        .await
        .map_err(StartError::Database)?;
    Ok(())
}

fn config_scale(config: &Config) -> f64 {
    if std::env::var("CHEX_SLACK_RATE_SCALE").is_ok() {
        config.slack_rate_scale
    } else {
        10.0
    }
}
