//! Assembly: builds every part from a [`Config`], wires them in the one direction status flows,
//! and runs them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Shared};
use crate::auth::Keys;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::hub::Hub;
use crate::poll::Pipeline;
use crate::poll::Pollers;
use crate::poll::rounds::RoundsContext;
use crate::poll::slack::{Intervals, PollContext};
use crate::sources::gmail::GmailClient;
use crate::sources::slack::{Governor, SlackClient};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("CHEX_DATABASE_URL: cannot open the database: {0}")]
    Database(crate::store::StoreError),
    #[error("migrations failed: {0}")]
    Migrate(crate::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// A running Chex: server, pipeline and pollers.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Validates config, opens and migrates the database, and starts serving on `listener`.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Server, StartError> {
        config.validate()?;
        let store = Store::connect(&config.database_url)
            .await
            .map_err(StartError::Database)?;
        store.migrate().await.map_err(StartError::Migrate)?;
        Self::start_with_store(config, listener, store).await
    }

    /// As [`Server::start`], on a store the caller opened and migrated (tests share one).
    pub async fn start_with_store(
        config: Config,
        listener: TcpListener,
        store: Store,
    ) -> Result<Server, StartError> {
        config.validate()?;
        no_delay(&listener);
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Other(e.to_string()))?;
        let keys = Keys::from_config(&config).map_err(StartError::Other)?;
        for (jti, _) in store.revoked_jtis().await.map_err(StartError::Database)? {
            keys.revoke(&jti);
        }
        let secret_key = SecretKey::parse(config.secret_key.expose())
            .map_err(|e| StartError::Other(e.to_string()))?;
        let shutdown = CancellationToken::new();
        let hub = Hub::new(Box::new(crate::hub::LocalBroker), config.ws_fanout_threads);
        let (pipeline, pipeline_task) =
            Pipeline::spawn(store.clone(), hub.clone(), shutdown.child_token())
                .map_err(|e| StartError::Other(format!("starting the pipeline: {e}")))?;
        let governor = Arc::new(Governor::new(config.slack_rate_scale));
        let slack = SlackClient::new(&config.slack_api_url, governor)
            .map_err(|e| StartError::Other(e.to_string()))?;
        let known_users = crate::poll::slack::KnownUsers::default();
        let poll_ctx = PollContext {
            known: known_users.clone(),
            store: store.clone(),
            client: slack.clone(),
            pipeline: pipeline.clone(),
            watched: hub.watched(),
            key: secret_key.clone(),
            intervals: Intervals {
                watched: config.watched_interval(),
                sweep: std::time::Duration::from_secs(config.poll_sweep_interval),
                dnd: std::time::Duration::from_secs(config.poll_dnd_interval),
                unwatched_presence: config.poll_unwatched_presence,
            },
            pool: Arc::new(Semaphore::new(config.poll_workers)),
        };
        let http = crate::sources::http::client().map_err(|e| StartError::Other(e.to_string()))?;
        let rounds = RoundsContext {
            store: store.clone(),
            pipeline: pipeline.clone(),
            key: secret_key.clone(),
            gmail: GmailClient::new(
                http.clone(),
                &config.gmail_api_url,
                &config.google_token_url,
            ),
            http: http.clone(),
            jira_interval: Duration::from_secs(config.poll_jira_interval),
            gmail_interval: Duration::from_secs(config.poll_gmail_interval),
        };
        let poller_task = tokio::spawn(crate::poll::run(
            Pollers {
                slack: poll_ctx,
                rounds: rounds.clone(),
            },
            shutdown.child_token(),
        ));
        let state = AppState::new(Shared {
            store,
            hub,
            keys,
            config: Arc::new(config),
            pipeline,
            secret_key,
            slack,
            credentials: Arc::default(),
            known_users,
            workspaces: Arc::default(),
            seen_events: Default::default(),
            http,
            gmail: rounds.gmail,
            snapshots: Default::default(),
        });
        let routes = api::routes(state.clone());
        let stop = shutdown.clone();
        let server_task = tokio::spawn(async move {
            api::serve::serve(listener, routes, stop).await;
        });
        Ok(Server {
            addr,
            state,
            shutdown,
            tasks: vec![server_task, poller_task, pipeline_task],
        })
    }

    /// Resolves when any part stops on its own (which means something is wrong) or on shutdown.
    pub async fn wait(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        let (_, _, rest) = futures_util::future::select_all(tasks).await;
        self.tasks = rest;
    }

    /// Stops accepting, lets the pipeline commit what it holds, and waits for every task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Connections the kernel may hold for the server, handshaken but not yet accepted (the kernel
/// caps it at `net.core.somaxconn`, 4,096 by default since Linux 5.4).
///
/// `TcpListener::bind` asks for std's 128. Opening 10,000 bench subscribers, at most 700 at a time,
/// overflowed that ~2,800 times a run (`ListenOverflows` in `nstat`): each overflow costs a client
/// a SYN retransmit (1 s, then 3 s, …), and where a SYN cookie then fails, a reset (one bench run
/// in about a dozen died of one). Every dashboard reconnecting after a deploy is the same burst.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a queue of [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `bind` sets).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Sets TCP_NODELAY on the listening socket; Linux copies it to every accepted connection.
///
/// Without it Nagle's algorithm holds a small write while an earlier one is unacknowledged, and
/// the peer delays its ACK by up to 40 ms: a status frame right behind another waited that long,
/// and a 1 MB snapshot written in 2 KB pieces took 25 s. warp takes a plain listener and offers
/// no hook per accepted socket, hence the listener.
fn no_delay(listener: &TcpListener) {
    if let Err(error) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        tracing::warn!(
            %error,
            "could not set TCP_NODELAY; small frames may wait for ACKs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of connections past std's 128 all complete their handshake while nobody accepts:
    /// the kernel queues them instead of dropping their SYNs.
    #[tokio::test]
    async fn listen_queues_a_reconnect_burst() {
        const BURST: usize = 300;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        if somaxconn.is_none_or(|m| m < BURST) {
            eprintln!(
                "skipped: net.core.somaxconn is {somaxconn:?}, below the burst of {BURST} (the kernel caps the queue)"
            );
            return;
        }
        let listener = listen("127.0.0.1:0".parse().expect("address")).expect("listen");
        let addr = listener.local_addr().expect("address");
        let connects = (0..BURST).map(|_| {
            tokio::time::timeout(
                Duration::from_millis(800),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures_util::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        // With a queue of 128 the SYNs past it wait for their first retransmit, a second away.
        assert_eq!(connected, BURST, "connections handshaken within 800 ms");
        drop(listener);
    }
}
