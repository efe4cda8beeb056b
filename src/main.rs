//! The `chex` binary: parses the command line and hands over to the library.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chex::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chex",
    version,
    about = "Watches people's status in Slack (then Jira and Gmail), keeps history, pushes changes live."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: REST, WebSocket, Slack Events API and the pollers. Applies pending migrations first.
    Serve(#[command(flatten)] Config),
    /// Run the server with a built-in Slack simulator and demo data, on the embedded database by default.
    Demo {
        #[command(flatten)]
        config: Config,
        /// People in the simulated workspace.
        #[arg(long, env = "CHEX_DEMO_USERS", default_value_t = 20)]
        users: usize,
        /// Events API signing secret of the demo workspace (so scripts can post signed events).
        #[arg(long, env = "CHEX_DEMO_SIGNING_SECRET")]
        signing_secret: Option<String>,
        /// Seconds between random status changes in the simulator.
        #[arg(long, env = "CHEX_DEMO_CHANGE_EVERY", default_value_t = 3)]
        change_every: u64,
    },
    /// Measure fan-out, latency, memory and the pipeline (docs/benchmarks.md).
    Bench(#[command(flatten)] chex::bench::BenchArgs),
    /// The bench's reference server (`--scenario floor` starts it): not for use on its own.
    #[command(hide = true)]
    BenchFloor,
    /// The bench's reference server for the users scenario (`--scenario users-floor`).
    #[command(hide = true)]
    BenchFloorUsers,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        /// Database URL.
        #[arg(
            long,
            env = "CHEX_DATABASE_URL",
            default_value = "sqlite://chex.db?mode=rwc",
            global = true
        )]
        database_url: String,
    },
    /// Administer accounts.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Mint tokens for scripts.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run a simulator on its own.
    Sim {
        #[command(subcommand)]
        action: SimAction,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop everything and apply all migrations again (destroys data).
    Fresh,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an account (the password comes from CHEX_ADMIN_PASSWORD or standard input).
    CreateAccount {
        #[arg(long)]
        email: String,
        /// Organization name; created when missing.
        #[arg(long)]
        org: String,
        /// Make the account an admin of its organization.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print an access JWT for an organization.
    Issue {
        /// Organization name.
        #[arg(long)]
        org: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Role: admin or member.
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        config: Config,
    },
}

#[derive(Subcommand)]
enum SimAction {
    /// Serve a simulated Slack Web API.
    Slack {
        #[arg(long, default_value = "127.0.0.1:4000")]
        bind: std::net::SocketAddr,
        /// Team id of the simulated workspace (its token is xoxb-sim-<team id in lower case>).
        #[arg(long, default_value = "T0SIM")]
        team: String,
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Seconds between random changes; 0 for none.
        #[arg(long, default_value_t = 5)]
        change_every: u64,
        /// Multiplies Slack's tiers; 0 disables rate limiting.
        #[arg(long, default_value_t = 1.0)]
        rate_scale: f64,
    },
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{filter},sqlx=warn,hyper=warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Prints what a long-running command (`demo`, `sim slack`) tells its operator at start. Whoever
/// reads it may stop reading (`chex demo | head -3`, a test that takes the lines it needs):
/// `println!` would then panic on the broken pipe and take the server down with it, so a write
/// that fails ends the banner and nothing else.
fn print_banner(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chex: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            init_tracing(&config.log, config.log_format);
            let listener = chex::app::listen(config.bind)
                .with_context(|| format!("CHEX_BIND: cannot listen on {}", config.bind))?;
            let mut server = chex::app::Server::start(config, listener).await?;
            tracing::info!(addr = %server.addr, "chex listening");
            tokio::select! {
                _ = server.wait() => bail!("a server task stopped unexpectedly"),
                _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            }
            server.shutdown().await;
            Ok(())
        }
        Command::Demo {
            config,
            users,
            signing_secret,
            change_every,
        } => {
            init_tracing(&config.log, config.log_format);
            let life = (change_every > 0).then(|| Duration::from_secs(change_every));
            let mut demo = chex::demo::start(config, users, signing_secret, life).await?;
            let url = demo
                .server
                .state
                .config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", demo.server.addr));
            print_banner(&[
                format!("dashboard: {url}/"),
                format!("login: {} / {}", chex::demo::DEMO_EMAIL, demo.password),
                format!("token: {}", demo.admin_token),
                format!("slack simulator: {}", demo.sim.api_url()),
                format!("jira simulator: {}", demo.jira.url()),
                format!("gmail simulator: {}", demo.gmail.api_url()),
            ]);
            tokio::select! {
                _ = demo.server.wait() => bail!("a server task stopped unexpectedly"),
                _ = tokio::signal::ctrl_c() => {}
            }
            demo.sim.stop();
            demo.jira.stop();
            demo.gmail.stop();
            demo.server.shutdown().await;
            Ok(())
        }
        Command::Migrate {
            action,
            database_url,
        } => {
            let store = chex::store::Store::connect(&database_url)
                .await
                .context("CHEX_DATABASE_URL: cannot open the database")?;
            let store = store.single().await?;
            let db = store.db();
            match action {
                MigrateAction::Up => Migrator::up(db, None).await?,
                MigrateAction::Down => Migrator::down(db, Some(1)).await?,
                MigrateAction::Fresh => Migrator::fresh(db).await?,
                MigrateAction::Status => {
                    let applied: Vec<String> = Migrator::get_applied_migrations(db)
                        .await?
                        .iter()
                        .map(|m| m.name().to_owned())
                        .collect();
                    for m in Migrator::migrations() {
                        let state = if applied.iter().any(|a| a == m.name()) {
                            "applied"
                        } else {
                            "pending"
                        };
                        println!("{state:8} {}", m.name());
                    }
                }
            }
            Ok(())
        }
        Command::Admin {
            action:
                AdminAction::CreateAccount {
                    email,
                    org,
                    admin,
                    config,
                },
        } => {
            let password = match std::env::var("CHEX_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the password from standard input")?;
                    s.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            if password.len() < 12 {
                bail!("the password must be at least 12 characters");
            }
            let store = chex::store::Store::connect(&config.database_url)
                .await
                .context("CHEX_DATABASE_URL: cannot open the database")?;
            store.migrate().await?;
            let o = store.ensure_organization(&org).await?;
            let a = store
                .create_account(chex::store::NewAccount {
                    organization_id: o.id,
                    email: &email,
                    password_hash: &chex::auth::hash_password(&password),
                    role: if admin { "admin" } else { "member" },
                })
                .await?;
            println!(
                "created account {} ({}) in organization {}",
                a.email, a.role, o.name
            );
            Ok(())
        }
        Command::Bench(args) => {
            chex::bench::run(args).await?;
            Ok(())
        }
        Command::BenchFloor => chex::bench::serve_floor(),
        Command::BenchFloorUsers => chex::bench::serve_users_floor().await,
        Command::Token {
            action:
                TokenAction::Issue {
                    org,
                    ttl,
                    role,
                    config,
                },
        } => {
            config.validate()?;
            let store = chex::store::Store::connect(&config.database_url)
                .await
                .context("CHEX_DATABASE_URL: cannot open the database")?;
            store.migrate().await?;
            let o = store
                .organization_by_name(&org)
                .await?
                .with_context(|| format!("no organization named {org}"))?;
            if role != "admin" && role != "member" {
                bail!("--role must be admin or member");
            }
            let keys = chex::auth::Keys::from_config(&config).map_err(anyhow::Error::msg)?;
            let (token, _) = keys.mint(&format!("cli:{}", o.id), o.id, &role, None, Some(ttl));
            println!("{token}");
            Ok(())
        }
        Command::Sim {
            action:
                SimAction::Slack {
                    bind,
                    team,
                    users,
                    change_every,
                    rate_scale,
                },
        } => {
            init_tracing("info", LogFormat::Text);
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            let spec = chex::sim::slack::WorkspaceSpec::new(&team, users);
            let opts = chex::sim::slack::SimOptions {
                rate_scale: (rate_scale > 0.0).then_some(rate_scale),
                life_interval: (change_every > 0).then(|| Duration::from_secs(change_every)),
                seed: 42,
            };
            let sim = chex::sim::slack::SlackSim::start(listener, vec![spec.clone()], opts).await?;
            print_banner(&[format!(
                "slack simulator: {} (token {}, signing secret {})",
                sim.api_url(),
                spec.token,
                spec.signing_secret
            )]);
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}
