//! SQLite appends as one job, run where the connection lives.
//!
//! Through sqlx every statement is a hand-off to its connection's worker thread and back. On the
//! 2-vCPU VMs Chex is measured on, each hand-off cost 100–200 µs of wake-ups, and an append was
//! five of them at least (begin, read the heads, insert, upsert the heads, commit): a one-event
//! append took ~1.1 ms, mostly waiting, and at 2,000 changes/s the writer was busy 88% of the
//! time. Here a batch's statements run back to back on a connection of the appender's own
//! (rusqlite, on the same libsqlite3 as sqlx), prepared once for the connection's life.
//!
//! The pipeline's writer, on a thread of its own, runs them on that thread
//! ([`Appender::append_here`]). They used to run on a thread of the appender's: the hand-off to it
//! and the wake-up back were two more waits for a core on every batch, for a writer that only
//! waited meanwhile (docs/benchmarks-history.md, "What session 17 tried"). Callers on the runtime
//! ([`Appender::append`]) run them on tokio's blocking pool.
//!
//! An in-memory database exists only inside sqlx's one connection, so there the same statements
//! run on that connection's handle, borrowed under sqlx's lock ([`append_in_place`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sea_orm::{DatabaseConnection, DbErr};

use super::events::{Appended, NewEvent, Parts, appended, assign_seqs, people_of};
use super::{Result, StoreError};

/// A SQLite write connection for appends. It closes when the last handle (clone) is dropped.
#[derive(Clone, Debug)]
pub(super) struct Appender {
    /// The store's write turn already orders appends, so the lock is never contended; it is what
    /// lets the connection move between the writer's thread and the blocking pool.
    conn: Arc<Mutex<Appending>>,
}

#[derive(Debug)]
struct Appending {
    conn: rusqlite::Connection,
    heads: Heads,
}

/// Each person's last seq and time as this connection last committed them, so that a batch reads
/// from the table only the heads of people it has not written yet. Reading every person's head
/// per batch was about a ninth of the pipeline writer's SQLite time (users at 8,000/s, session
/// 23).
///
/// Valid while the file's `data_version` is what it was when they were kept: a commit by any
/// other connection (another server on the same file, a person deleted with their history)
/// changes it, and the heads are read again. This connection's own commits leave it alone. One
/// entry per person ever appended, some 40 bytes each.
#[derive(Debug, Default)]
struct Heads {
    version: Option<i64>,
    last: HashMap<i64, (i64, DateTime<Utc>)>,
}

impl Appender {
    /// Opens the database file at `path` for appending. The sqlx pools opened it first and put it
    /// in WAL mode, which the file keeps; the tables may come later (statements are prepared at
    /// the first append).
    pub(super) fn open(path: &Path) -> Result<Appender> {
        // Its WAL frames are written a commit at a time (`store::sqlite_wal_writes`).
        let conn = if super::sqlite_wal_writes::register() {
            rusqlite::Connection::open_with_flags_and_vfs(
                path,
                rusqlite::OpenFlags::default(),
                super::sqlite_wal_writes::VFS_NAME,
            )
        } else {
            rusqlite::Connection::open(path)
        }
        .map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite)?;
        // As the sqlx pool's connections (`store::options`), and like the other write connection
        // it leaves checkpoints to `store::checkpoints`, off the commit path.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = memory;
             PRAGMA cache_size = -32768;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(sqlite)?;
        Ok(Appender {
            conn: Arc::new(Mutex::new(Appending {
                conn,
                heads: Heads::default(),
            })),
        })
    }

    /// Appends `batch` in one transaction on the calling thread, which blocks meanwhile: only for
    /// a thread that has nothing else to run (see `Store::append_events_here`).
    pub(super) fn append_here(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        lock(&self.conn).append(batch).map_err(sqlite)
    }

    /// Appends `batch` in one transaction on tokio's blocking pool, for callers on the runtime.
    pub(super) async fn append(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        let conn = self.conn.clone();
        let batch = batch.to_vec();
        tokio::task::spawn_blocking(move || lock(&conn).append(&batch))
            .await
            .map_err(|e| StoreError::Db(DbErr::Custom(format!("the SQLite append failed: {e}"))))?
            .map_err(sqlite)
    }
}

/// The connection, whatever happened to a holder before: a panic mid-append rolled its
/// transaction back when the transaction dropped, so the connection is sound.
fn lock(conn: &Mutex<Appending>) -> std::sync::MutexGuard<'_, Appending> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Appending {
    fn append(&mut self, batch: &[NewEvent]) -> rusqlite::Result<Vec<Appended>> {
        append(&self.conn, Some(&mut self.heads), batch)
    }
}

/// Appends `batch` on the connection of an in-memory database: sqlx's own, locked meanwhile.
/// The work is a few in-memory statements, done on the calling thread.
pub(super) async fn append_in_place(
    db: &DatabaseConnection,
    batch: &[NewEvent],
) -> Result<Vec<Appended>> {
    let mut conn = db
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(StoreError::sqlx)?;
    let mut locked = conn.lock_handle().await.map_err(StoreError::sqlx)?;
    // SAFETY: the handle is sqlx's open connection, and it stays locked (its worker runs nothing)
    // until `locked` drops, after this wrapper: the wrapper neither closes the handle nor
    // outlives the lock, and it leaves the connection as it found it (outside a transaction).
    let borrowed = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }
        .map_err(sqlite)?;
    // No heads kept: sqlx's other statements write on this connection too.
    append(&borrowed, None, batch).map_err(sqlite)
}

/// One append: the heads read, seqs assigned and rows inserted, in one IMMEDIATE transaction (it
/// takes the write lock first, so its read of the heads cannot go stale). With `kept`, the heads
/// this connection wrote last are taken from there while still valid ([`Heads`]), and the batch's
/// new ones are kept once it is committed.
fn append(
    conn: &rusqlite::Connection,
    mut kept: Option<&mut Heads>,
    batch: &[NewEvent],
) -> rusqlite::Result<Vec<Appended>> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    if let Some(heads) = kept.as_deref_mut() {
        let version = tx
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        if heads.version != Some(version) {
            heads.last.clear();
            heads.version = Some(version);
        }
    }
    let people = people_of(batch);
    let mut last: HashMap<i64, (i64, DateTime<Utc>)> = HashMap::with_capacity(people.len());
    {
        // The person's last entry of `ux_status_events_person_seq`, read backwards.
        let mut head = tx.prepare_cached(
            "SELECT seq, observed_at FROM status_events WHERE person_id = ?1 \
             ORDER BY seq DESC LIMIT 1",
        )?;
        for &p in &people {
            if let Some(&known) = kept.as_deref().and_then(|h| h.last.get(&p)) {
                last.insert(p, known);
                continue;
            }
            let row = head
                .query_row([p], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .optional()?;
            if let Some((seq, at)) = row {
                last.insert(p, (seq, parse_time(&at)?));
            }
        }
    }
    let assigned = assign_seqs(batch, &mut last);
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO status_events (person_id, seq, observed_at, presence, status_text, \
             status_emoji, status_expires_at, dnd_enabled, dnd_until, stale, changed, previous, \
             extra, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for (e, (seq, at)) in batch.iter().zip(&assigned) {
            let s = &e.status;
            insert.execute(params![
                e.person_id,
                seq,
                time(*at),
                s.presence.as_str(),
                s.text,
                s.emoji,
                s.expires_at.map(time),
                s.dnd.enabled,
                s.dnd.until.map(time),
                s.stale,
                e.changed_column(),
                e.previous_column(),
                Parts::to_json(s),
                e.source.as_str(),
            ])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    if let Some(heads) = kept {
        heads.last.extend(last);
    }
    Ok(appended(assigned, ids))
}

/// A time as sqlx writes `DateTime<Utc>` to SQLite, so rows read the same whichever path wrote
/// them, and text comparisons of times (history's range filters) order them correctly.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn parse_time(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::Db(DbErr::Custom(format!("sqlite: {e}")))
}
