//! Persistence: every query Chex runs, behind one cheap-to-clone [`Store`] handle.
//!
//! The store knows tables, not protocols: it takes and returns plain records and domain types and
//! never imports the API, the hub or a source. Anything that writes more than one table does so in
//! one transaction.

pub mod entity;

mod accounts;
mod connections;
mod events;
mod events_copy;
mod identities;
mod people;
mod sqlite_append;
pub mod sqlite_pcache;
pub mod sqlite_wal_writes;

pub use accounts::{ApiTokenRecord, NewAccount};
pub use connections::{CheckPatch, NewCheck, NewConnection};
/// The rule every appender numbers a person's entries by (the bench's users floor too).
pub(crate) use events::next_entry;
pub use events::{Appended, HistoryPage, NewEvent, Summary};
pub use identities::{Identity, NewIdentity};
pub use people::{PeopleFilter, PersonRow, SlackProfileRecord, SlackUserRecord};

use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// What can go wrong in the store. Callers branch on `NotFound` and `Conflict`; the rest is a
/// database failure that the API reports as a 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A failure of a query run on sqlx directly (the bulk append paths), as sea-orm reports its
    /// own.
    fn sqlx(e: sea_orm::sqlx::Error) -> StoreError {
        StoreError::Db(DbErr::Query(sea_orm::RuntimeErr::SqlxError(
            std::sync::Arc::new(e),
        )))
    }

    /// Maps a unique-constraint violation to `Conflict`, everything else to `Db`.
    fn from_write(e: DbErr, what: &str) -> StoreError {
        let text = e.to_string().to_lowercase();
        if text.contains("unique") || text.contains("duplicate") {
            StoreError::Conflict(what.to_owned())
        } else {
            StoreError::Db(e)
        }
    }
}

/// A handle to the database. Clone it freely: it wraps a connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Where write transactions other than history appends run (people, accounts, connections):
    /// on a SQLite file, one connection of its own (see `connect_with`); otherwise the same pool
    /// as `db`. Appends to a SQLite file run on `appender`.
    write_db: DatabaseConnection,
    url: std::sync::Arc<str>,
    /// SQLite allows one writer, and a transaction that reads before it writes cannot wait for
    /// the lock (its snapshot would be stale: SQLITE_BUSY at once, whatever the busy timeout).
    /// Write transactions therefore queue here first. PostgreSQL needs no such thing.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Set by each write transaction, cleared by [`checkpoints`]: an idle store is not
    /// checkpointed ten times a second for nothing.
    wrote: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where a SQLite file's appends run (`sqlite_append`); `None` on PostgreSQL and in memory.
    appender: Option<sqlite_append::Appender>,
}

/// True for a SQLite URL of an in-memory database, which each connection would see a fresh copy
/// of: it keeps to one connection, and has no WAL to checkpoint.
fn sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// How to open `url`: SQLite's pragmas, pool sizes (`max` connections, or the default).
fn options(url: &str, max: Option<u32>) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        if sqlite_in_memory(url) {
            opts.max_connections(1);
        } else {
            opts.max_connections(max.unwrap_or(4));
        }
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // A multi-row INSERT keeps a statement journal for its own rollback: in
                // memory, not in a temporary file written and read back per batch.
                .pragma("temp_store", "memory")
                // 32 MiB of pages per connection (the default is 2 MiB): history's table and
                // its five indexes are read back on every append otherwise.
                .pragma("cache_size", "-32768")
                // Checkpoint every ~16 MiB of WAL rather than 4 MiB: a page rewritten by
                // several batches is copied into the database once. (The writer connection
                // leaves them to [`checkpoints`].)
                .pragma("wal_autocheckpoint", "4000")
                // After a checkpoint has caught up, the WAL file shrinks back to 64 MiB.
                .pragma("journal_size_limit", "67108864")
        });
    } else {
        opts.max_connections(max.unwrap_or(16)).min_connections(1);
    }
    opts
}

/// How often [`checkpoints`] copies a SQLite file's WAL into the database. Users at 8,000
/// changes/s measured p99 48 and 114 ms with 100 ms where 250 ms measured 331 and 407 (two
/// interleaved pairs, session 8); 500 ms was better at 8,000/s and worse at 5,000/s in three pairs
/// each (session 10). Noisy machines: a direction more than a figure.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (4 KiB pages) past which [`checkpoints`] also takes the writer's turn, so the next
/// write restarts the WAL: ~16 MiB of WAL at most, give or take one interval's writes.
const RESTART_AFTER_FRAMES: i64 = 4096;

/// Reader passes run back to back, at most, before [`restart_wal`] takes the writer's turn.
const CATCH_UP_PASSES: u32 = 3;

/// New frames few enough for the pass on the writer's turn to copy ([`restart_wal`]).
const CATCH_UP_FRAMES: i64 = 64;

/// Checkpoints a SQLite file's WAL every [`CHECKPOINT_EVERY`], until every handle of its store
/// is gone (`turn` is the store's writer queue).
///
/// Left to itself, SQLite checkpoints inside the commit that crosses `wal_autocheckpoint`: at
/// 8,000 changes/s a commit every ~150 ms also copied the WAL into the database and synced it
/// (12% of the writer's time), and the changes of that batch waited for it before they were
/// published. Here the copy runs on a reader connection beside the writer. A WAL restarts from
/// its beginning only when everything in it has been copied, which never happens by itself under
/// a writer that never pauses (the WAL grew to 560 MB over 200,000 appends): so once the WAL
/// holds [`RESTART_AFTER_FRAMES`], a last pass runs on the writer's turn between two batches,
/// copying the little written since the one before, and the next write starts the WAL over
/// ([`restart_wal`]).
///
/// That last pass holds every append back for its copy and two fsyncs (0.3-10 ms each on this
/// VM's disk). Run on every 100 ms tick, it put the server's p99 from observation to publication
/// in the 10-25 ms bucket at 500 and 2,000 changes/s; run only when the WAL is past the threshold
/// (every few seconds at those rates), in the 5-10 ms one (one run each on a noisy VM).
async fn checkpoints(
    readers: DatabaseConnection,
    writer: DatabaseConnection,
    turn: std::sync::Weak<tokio::sync::Mutex<()>>,
    wrote: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if turn.strong_count() == 0 {
            return;
        }
        if !wrote.swap(false, std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let done = match checkpoint_pass(&readers).await {
            Ok(frames) if frames >= RESTART_AFTER_FRAMES => match turn.upgrade() {
                Some(turn) => restart_wal(&readers, &writer, &turn, frames).await,
                None => return,
            },
            passed => passed.map(drop),
        };
        if let Err(e) = done {
            wrote.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, "checkpointing the SQLite WAL failed; retrying");
        }
    }
}

/// Copies what is left of a WAL past [`RESTART_AFTER_FRAMES`] on the writer's turn, so that the
/// next write starts it over; `frames` is what the reader pass just copied up to.
///
/// What is left is what the appender wrote during that pass, and the writer's turn holds every
/// append back while it is copied and synced: at 8,000 changes/s a reader pass took 8-24 ms and
/// the pass on the writer's turn after it 5-13 ms, every ~200 ms. Reader passes back to back
/// first, each copying what arrived during the one before, leave it less: the writer's pass
/// 3.4-4.8 ms (median of a run) against 7.8-10.7, and the users scenario's p90 at 8,000/s 6.5-10.1
/// ms against 14.0-15.3, in three interleaved pairs (session 12), and its p99 26.1 ms against
/// 35.0 (medians of seven runs each). At lower rates the first catch-up pass finds next to
/// nothing new. A threshold of 16,384 frames (a quarter of the restarts) measured no different
/// in three pairs.
async fn restart_wal(
    readers: &DatabaseConnection,
    writer: &DatabaseConnection,
    turn: &tokio::sync::Mutex<()>,
    mut frames: i64,
) -> Result<()> {
    for _ in 0..CATCH_UP_PASSES {
        let now = checkpoint_pass(readers).await?;
        if now < frames {
            // Caught up between two appends: the WAL has started over by itself.
            return Ok(());
        }
        let fresh = now - frames;
        frames = now;
        if fresh <= CATCH_UP_FRAMES {
            break;
        }
    }
    let _writing = turn.lock().await;
    checkpoint_pass(writer).await.map(drop)
}

/// One PASSIVE checkpoint pass on `db`'s connection; returns the frames in the WAL (the pragma's
/// second column).
async fn checkpoint_pass(db: &DatabaseConnection) -> Result<i64> {
    const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            CHECKPOINT,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("{CHECKPOINT} returned no row")))?;
    Ok(row.try_get_by_index::<i64>(1)?)
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    ///
    /// SQLite files run in WAL mode so the API can read while the writer commits; an in-memory
    /// SQLite database keeps one connection because each connection would see its own database.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, None).await
    }

    /// A store on one connection, for migrations: sea-orm-migration takes a session-level lock on
    /// PostgreSQL, which must be released on the connection that took it, not on another one of a
    /// pool.
    pub async fn single(&self) -> Result<Store> {
        if self.backend() == DbBackend::Sqlite {
            return Ok(self.clone());
        }
        Self::connect_with(&self.url, Some(1)).await
    }

    async fn connect_with(url: &str, max: Option<u32>) -> Result<Store> {
        // Before the first database this process opens: SQLite takes a page cache only then.
        sqlite_pcache::install();
        let sqlite_file = url.starts_with("sqlite:") && !sqlite_in_memory(url);
        let db = Database::connect(options(url, max)).await?;
        // SQLite discards a connection's whole page cache when another connection has written
        // since its last transaction: appends rotating over a pool re-read history's pages from
        // the OS on every batch (a users-scenario profile: ~7% of the server's CPU). Writes take
        // their turn anyway, so they run on connections that only write — appends on the
        // appender's, the rest on this one — whose caches stay warm. In-memory SQLite must stay on
        // its one connection, and PostgreSQL has no such cost.
        let write_db = if sqlite_file {
            let mut opts = options(url, Some(1));
            opts.map_sqlx_sqlite_opts(|o| o.pragma("wal_autocheckpoint", "0"));
            Database::connect(opts).await?
        } else {
            db.clone()
        };
        let appender = if sqlite_file {
            let path = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbErr::Custom(format!("SQLite URL: {e}")))?
                .get_filename()
                .to_owned();
            Some(sqlite_append::Appender::open(&path)?)
        } else {
            None
        };
        let store = Store {
            db,
            write_db,
            url: url.into(),
            writer: Default::default(),
            wrote: Default::default(),
            appender,
        };
        if sqlite_file {
            tokio::spawn(checkpoints(
                store.db.clone(),
                store.write_db.clone(),
                std::sync::Arc::downgrade(&store.writer),
                store.wrote.clone(),
            ));
        }
        Ok(store)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        let single = self.single().await?;
        Migrator::up(&single.db, None).await?;
        if single.backend() != DbBackend::Sqlite {
            single.db.close_by_ref().await?;
        }
        Ok(())
    }

    /// True when the database answers and no migration is pending: what `/readyz` reports.
    pub async fn ready(&self) -> Result<bool> {
        self.db.execute_unprepared("SELECT 1").await?;
        Ok(Migrator::get_pending_migrations(&self.db).await?.is_empty())
    }

    /// Begins a write transaction. On SQLite it takes its turn on [`Store::writer`] and begins
    /// IMMEDIATE: a deferred transaction that has read cannot wait for the write lock (a write
    /// committed since its snapshot fails it with SQLITE_BUSY_SNAPSHOT at once), while BEGIN
    /// IMMEDIATE takes the lock first and waits for it under the busy timeout. Hold the guard as
    /// long as the transaction.
    async fn begin_write(
        &self,
    ) -> Result<(
        Option<tokio::sync::MutexGuard<'_, ()>>,
        sea_orm::DatabaseTransaction,
    )> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        if self.backend() != DbBackend::Sqlite {
            return Ok((None, self.db.begin().await?));
        }
        let turn = self.write_turn().await;
        let txn = self
            .write_db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        Ok((Some(turn), txn))
    }

    /// Queues for [`Store::writer`]; whatever is written under the guard gets checkpointed.
    async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let turn = self.writer.lock().await;
        self.wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        turn
    }

    /// True where the pipeline's statements may be awaited from a runtime of their own: on a
    /// SQLite file appends run on the calling thread (`Store::append_events_here`) or tokio's
    /// blocking pool, and reads on sqlx's SQLite threads. Not on PostgreSQL, whose connections
    /// are sockets of the runtime that opened them; not in memory, where sqlx hands a used
    /// connection back to its pool from a task of the runtime that used it, and one dropped with
    /// that runtime would take the whole database with it.
    pub fn appends_off_runtime(&self) -> bool {
        self.appender.is_some()
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The raw connection, for migrations in tools and tests.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

#[doc(hidden)]
pub mod testing {
    //! A fresh database per test: in-memory SQLite, a SQLite file in a directory of its own, or
    //! a new PostgreSQL database named `chex_test_<uuid>` when `CHEX_TEST_DATABASE_URL` is set;
    //! each removed again when the test ends.
    use super::Store;

    pub struct TestDb {
        pub store: Store,
        drop_pg: Option<(String, String)>,
        drop_dir: Option<std::path::PathBuf>,
    }

    /// The database file of [`TestDb::sqlite_file`], in its directory.
    const SQLITE_FILE: &str = "chex.db";

    impl TestDb {
        pub async fn sqlite() -> TestDb {
            let store = Store::connect("sqlite::memory:").await.expect("sqlite");
            store.migrate().await.expect("migrate");
            TestDb::wrap(store)
        }

        /// A SQLite file, as the server runs by default: its appends take another path than an
        /// in-memory database's (`sqlite_append`).
        pub async fn sqlite_file() -> TestDb {
            let dir =
                std::env::temp_dir().join(format!("chex-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("test directory");
            let url = format!("sqlite://{}/{SQLITE_FILE}?mode=rwc", dir.display());
            let store = Store::connect(&url).await.expect("sqlite file");
            store.migrate().await.expect("migrate");
            let mut db = TestDb::wrap(store);
            db.drop_dir = Some(dir);
            db
        }

        /// The SQLite file of a [`TestDb::sqlite_file`], for a second store on it or a look at
        /// its WAL.
        pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
            self.drop_dir.as_ref().map(|d| d.join(SQLITE_FILE))
        }

        /// Wraps a store the caller opened (nothing is dropped at the end).
        pub fn wrap(store: Store) -> TestDb {
            TestDb {
                store,
                drop_pg: None,
                drop_dir: None,
            }
        }

        /// `None` (with a printed reason) when no PostgreSQL is configured; a panic under CI.
        pub async fn postgres() -> Option<TestDb> {
            let admin_url = match std::env::var("CHEX_TEST_DATABASE_URL") {
                Ok(u) if !u.is_empty() => u,
                _ => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("CI=true but CHEX_TEST_DATABASE_URL is not set");
                    }
                    eprintln!("skipped: CHEX_TEST_DATABASE_URL is not set, PostgreSQL leg not run");
                    return None;
                }
            };
            let name = format!("chex_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Store::connect(&admin_url)
                .await
                .expect("connect to PostgreSQL");
            use sea_orm::ConnectionTrait;
            admin
                .db
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let url = replace_db_name(&admin_url, &name);
            let store = Store::connect(&url).await.expect("connect test database");
            store.migrate().await.expect("migrate");
            let mut db = TestDb::wrap(store);
            db.drop_pg = Some((admin_url, name));
            Some(db)
        }
    }

    pub fn replace_db_name(url: &str, name: &str) -> String {
        let mut u = url::Url::parse(url).expect("CHEX_TEST_DATABASE_URL is a URL");
        u.set_path(&format!("/{name}"));
        u.to_string()
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Some(dir) = self.drop_dir.take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            if let Some((admin_url, name)) = self.drop_pg.take() {
                // The test's runtime is blocked in this drop, so the pool (whose connections live on
                // that runtime) is left alone: a fresh admin connection on a runtime of its own
                // drops the database, and FORCE ends the pool's sessions.
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async move {
                            if let Ok(admin) = Store::connect(&admin_url).await {
                                use sea_orm::ConnectionTrait;
                                let _ = admin
                                    .db
                                    .execute_unprepared(&format!(
                                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                    ))
                                    .await;
                            }
                        });
                    }
                })
                .join()
                .ok();
            }
        }
    }
}
