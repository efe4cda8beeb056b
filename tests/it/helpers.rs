//! `TestApp`: a running Chex on an in-memory database (or a fresh PostgreSQL database), with a
//! Slack simulator, a demo organization, an admin token and a connected workspace.

use std::time::Duration;

use chex::app::Server;
use chex::config::Config;
use chex::crypto::{SecretKey, fingerprint};
use chex::sim::slack::{SimOptions, SlackSim, WorkspaceSpec};
use chex::store::NewConnection;
use chex::store::testing::TestDb;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const TEAM: &str = "T0TEST";

pub struct TestApp {
    pub server: Server,
    pub sim: SlackSim,
    pub spec: WorkspaceSpec,
    pub token: String,
    pub org_id: i64,
    pub http: reqwest::Client,
    _db: TestDb,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Options {
    pub users: usize,
    pub sim_scale: Option<f64>,
    pub client_scale: f64,
    pub track: bool,
    pub config: Box<dyn Fn(&mut Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: 10,
            sim_scale: Some(60.0),
            client_scale: 60.0,
            track: true,
            config: Box::new(|_| {}),
        }
    }
}

impl Options {
    /// `users` people, polled by the first sweep and DND poll only: the statuses after those are
    /// the test's own, not the simulator's of the moment.
    pub fn first_polls_only(users: usize) -> Options {
        Options {
            users,
            config: Box::new(|c| {
                c.poll_sweep_interval = 3600;
                c.poll_dnd_interval = 3600;
            }),
            ..Default::default()
        }
    }
}

impl TestApp {
    pub async fn spawn_with(o: Options) -> TestApp {
        let db = TestDb::sqlite().await;
        Self::spawn_on(db, o).await
    }

    pub async fn spawn_on(db: TestDb, o: Options) -> TestApp {
        install_crypto();
        let spec = WorkspaceSpec::new(TEAM, o.users);
        let sim = SlackSim::start(
            TcpListener::bind("127.0.0.1:0").await.expect("bind sim"),
            vec![spec.clone()],
            SimOptions {
                rate_scale: o.sim_scale,
                life_interval: None,
                seed: 1,
            },
        )
        .await
        .expect("sim");
        let mut config = Config::for_tests();
        config.slack_api_url = sim.api_url();
        config.slack_rate_scale = o.client_scale;
        config.poll_watched_interval = 1;
        config.poll_sweep_interval = 1;
        config.poll_dnd_interval = 1;
        (o.config)(&mut config);
        let store = db.store.clone();
        let key = SecretKey::parse(config.secret_key.expose()).expect("key");
        let org = store.ensure_organization("acme").await.expect("org");
        let conn = store
            .upsert_connection(NewConnection {
                organization_id: org.id,
                kind: "slack",
                external_id: TEAM,
                name: "Test",
                credential_ciphertext: key.seal(&spec.token),
                signing_secret_ciphertext: Some(key.seal(&spec.signing_secret)),
                fingerprint: fingerprint(&spec.token),
            })
            .await
            .expect("connection");
        if o.track {
            store
                .track_everyone_unless_checked(&conn, 1)
                .await
                .expect("check");
        }
        let listener = chex::app::listen(([127, 0, 0, 1], 0).into()).expect("listen");
        let server = Server::start_with_store(config, listener, store)
            .await
            .expect("server");
        sim.set_events_url(Some(format!("http://{}/slack/events", server.addr)));
        let (token, _) = server.state.keys.mint("1", org.id, "admin", None, None);
        TestApp {
            server,
            sim,
            spec,
            token,
            org_id: org.id,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// One unlabelled counter (or a histogram's `_count`) from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `method path` with a JSON body, as the admin.
    pub async fn send_json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Connection `id` as `GET /api/connections` lists it (`null` when absent).
    pub async fn connection(&self, id: i64) -> Value {
        let (_, v) = self.get("/api/connections").await;
        v["connections"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["id"] == id).cloned())
            .unwrap_or(Value::Null)
    }

    /// (real name, email) of the first `n` people of the simulated workspace.
    pub fn slack_people(&self, n: usize) -> Vec<(String, String)> {
        self.sim.with(|w| {
            w.by_team(TEAM)
                .expect("team")
                .users
                .iter()
                .filter(|u| !u.is_bot && !u.deleted)
                .filter_map(|u| Some((u.real_name.clone(), u.profile.email.clone()?)))
                .take(n)
                .collect()
        })
    }

    /// Waits (10 s at most) until person `id`'s REST object satisfies `pred`; returns it.
    pub async fn wait_for_person(&self, id: i64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, u) = self.get(&format!("/api/users/{id}")).await;
            if pred(&u) {
                return u;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "person {id} never matched: {u}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the pipeline has a status for every simulated user.
    pub async fn wait_for_people(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.get("/api/users?limit=1000").await;
            let users = v["users"].as_array().cloned().unwrap_or_default();
            if users.len() >= n
                && users
                    .iter()
                    .all(|u| u["status"]["presence"] != "unknown" && !u["status"].is_null())
            {
                return users;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "people never appeared: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (5 s at most) until person `id`'s current status text is `text`; returns its seq.
    pub async fn wait_for_status_text(&self, id: &Value, text: &str) -> i64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (_, u) = self.get(&format!("/api/users/{id}")).await;
            if u["status"]["text"] == text {
                return u["seq"].as_i64().expect("seq");
            }
            assert!(tokio::time::Instant::now() < deadline, "{text} not applied");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    pub async fn connect(&self, token: Option<&str>) -> Ws {
        let url = match token {
            Some(t) => format!("ws://{}/ws?access_token={t}", self.server.addr),
            None => format!("ws://{}/ws", self.server.addr),
        };
        tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect")
            .0
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next text frame as JSON, skipping pings; panics after 10 s.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Receives frames until one matches.
pub async fn recv_until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = recv(ws).await;
        if pred(&v) {
            return v;
        }
    }
}

/// A socket of the admin's subscribed to `topic`, with its `subscribed` reply.
pub async fn subscribed_to(app: &TestApp, topic: &str) -> (Ws, Value) {
    let mut ws = app.connect(Some(&app.token)).await;
    send(&mut ws, json!({"type": "subscribe", "topics": [topic]})).await;
    let reply = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    (ws, reply)
}

/// A socket of the admin's subscribed to person `id`'s topic.
pub async fn subscribed_to_person(app: &TestApp, id: i64) -> Ws {
    subscribed_to(app, &format!("user:{id}")).await.0
}

/// The next status frame whose `changed` names `field`.
pub async fn recv_change(ws: &mut Ws, field: &str) -> Value {
    recv_until(ws, |v| {
        v["type"] == "status"
            && v["changed"]
                .as_array()
                .is_some_and(|c| c.iter().any(|f| f == field))
    })
    .await
}

/// The close code the server ends the socket with.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("close within 10 s")
        {
            Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}
