//! SQLite under Chex's wrappers, each checked against SQLite itself: the page cache
//! (`chex::store::sqlite_pcache`) and the VFS that writes a commit's WAL frames together
//! (`chex::store::sqlite_wal_writes`). A test binary of its own: the page cache's wrapper goes in
//! before SQLite starts, which the integration tests' binary, with its many servers, cannot
//! promise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use chex::store::{sqlite_pcache, sqlite_wal_writes};
use rusqlite::{Connection, OpenFlags, params};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn open(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).expect("open");
    pragmas(&conn, -32768);
    conn
}

/// `cache_size` as SQLite takes it: pages, or KiB when negative.
fn pragmas(conn: &Connection, cache_size: i64) {
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = {cache_size};"
    ))
    .expect("pragmas");
}

/// A scratch directory for one test's database.
fn scratch(name: &str) -> Scratch {
    let dir = Scratch(std::env::temp_dir().join(format!(
        "chex-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&dir.0).expect("scratch dir");
    dir
}

const SCHEMA: &str = "CREATE TABLE events (id INTEGER PRIMARY KEY, person INTEGER NOT NULL, \
     seq INTEGER NOT NULL, body TEXT NOT NULL);
     CREATE UNIQUE INDEX ux_events_person_seq ON events (person, seq);";

/// Appends `n` rows of random people, each at its person's next seq, and commits or rolls back.
fn append(
    conn: &mut Connection,
    rng: &mut Rng,
    seqs: &mut HashMap<u64, i64>,
    n: usize,
    keep: bool,
) {
    append_with(conn, rng, seqs, n, 48, keep, false);
}

/// [`append`] with bodies padded by `pad` bytes; with `read_back`, the transaction reads its own
/// rows back before it commits, after a small cache has spilled their pages to the WAL.
fn append_with(
    conn: &mut Connection,
    rng: &mut Rng,
    seqs: &mut HashMap<u64, i64>,
    n: usize,
    pad: usize,
    keep: bool,
    read_back: bool,
) {
    let mut next = seqs.clone();
    let tx = conn.transaction().expect("begin");
    let before: i64 = tx
        .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
        .expect("last id");
    let mut bodies = Vec::with_capacity(n);
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO events (person, seq, body) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for _ in 0..n {
            let person = rng.next(5_000);
            let seq = next.entry(person).or_default();
            *seq += 1;
            let body = format!("{person:>8}:{seq:>8}:{}", "x".repeat(pad));
            insert
                .execute(params![person as i64, *seq, body])
                .expect("insert");
            bodies.push(body);
        }
    }
    if read_back {
        let mut rows = tx
            .prepare("SELECT body FROM events WHERE id > ?1 ORDER BY id")
            .expect("prepare");
        let read: Vec<String> = rows
            .query_map([before], |r| r.get(0))
            .expect("read back")
            .map(|r| r.expect("row"))
            .collect();
        assert!(
            read == bodies,
            "the transaction read back other rows than it wrote"
        );
    }
    if keep {
        tx.commit().expect("commit");
        *seqs = next;
    } else {
        tx.rollback().expect("rollback");
    }
}

/// Counts the rows `conn` sees.
fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

/// Checks `conn` sees exactly the committed history.
fn check(conn: &Connection, seqs: &HashMap<u64, i64>) {
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    assert_eq!(rows(conn), seqs.values().sum::<i64>());
    let mut last = conn
        .prepare("SELECT person, max(seq), count(*) FROM events GROUP BY person")
        .expect("prepare");
    let found: HashMap<u64, (i64, i64)> = last
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, (r.get(1)?, r.get(2)?)))
        })
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(found.len(), seqs.len());
    for (person, seq) in seqs {
        assert_eq!(found.get(person), Some(&(*seq, *seq)), "person {person}");
    }
}

/// Checks both connections, then, with them closed, a new one.
fn check_everywhere(
    a: Connection,
    b: Connection,
    path: &std::path::Path,
    seqs: &HashMap<u64, i64>,
) {
    check(&a, seqs);
    check(&b, seqs);
    drop((a, b));
    check(&open(path), seqs);
}

/// Random inserts into a person-keyed index split and rebalance its pages (the balances that
/// park a page), rolled-back batches grow the file and shrink it back, and a second connection
/// writes past the first one's cached end. Every connection, new or old, must read exactly what
/// was committed, and the wrapper must have both skipped drops and passed some on.
#[test]
fn history_written_through_the_wrapped_page_cache_reads_back_whole() {
    assert!(
        sqlite_pcache::install(),
        "the wrapper must go in before SQLite starts in this binary"
    );
    let dir = scratch("pcache");
    let path = dir.0.join("history.db");
    let mut a = open(&path);
    a.execute_batch(SCHEMA).expect("schema");
    let mut b = open(&path);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seqs = HashMap::new();
    for round in 0..300 {
        match round % 10 {
            // A large batch that is rolled back: the file grew, and its end goes back.
            3 => append(&mut a, &mut rng, &mut seqs, 2_000, false),
            // The other connection writes past where the first one's end was.
            4 => append(&mut b, &mut rng, &mut seqs, 1_500, true),
            _ => append(&mut a, &mut rng, &mut seqs, 60, true),
        }
    }
    check_everywhere(a, b, &path, &seqs);
    assert!(
        sqlite_pcache::SKIPPED.load(Ordering::Relaxed) > 0,
        "no drop was skipped: the wrapper is not in use"
    );
    assert!(
        sqlite_pcache::PASSED_ON.load(Ordering::Relaxed) > 0,
        "no drop was passed on, not even after a rolled-back growth"
    );
}

/// A connection whose WAL frames are written a commit at a time, beside one on SQLite's own VFS
/// that reads after every commit (a commit published before its frames reached the file would
/// show as missing rows or a malformed page) and writes and checkpoints now and then, so the WAL
/// starts over under the first one. A cache of 64 pages makes large transactions spill pages
/// into the WAL before they commit: some write those pages again, some read them back, some roll
/// back.
#[test]
fn history_written_through_the_gathered_wal_writes_reads_back_whole() {
    assert!(sqlite_wal_writes::register(), "the VFS must register");
    let dir = scratch("wal-writes");
    let path = dir.0.join("history.db");
    let mut b = open(&path);
    b.execute_batch(SCHEMA).expect("schema");
    let mut a = Connection::open_with_flags_and_vfs(
        &path,
        OpenFlags::default(),
        sqlite_wal_writes::VFS_NAME,
    )
    .expect("open through the VFS");
    pragmas(&a, 64);
    let held_before = sqlite_wal_writes::HELD.load(Ordering::Relaxed);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seqs = HashMap::new();
    for round in 0..300 {
        match round % 10 {
            // Spills, then a rollback: frames in the WAL that no commit covers.
            3 => append(&mut a, &mut rng, &mut seqs, 2_000, false),
            // Spills, pages written again, checksums rewritten at the commit.
            6 => append(&mut a, &mut rng, &mut seqs, 1_500, true),
            // Spills of new pages only, read back before the commit: reads of frames held.
            1 => append_with(&mut a, &mut rng, &mut seqs, 300, 1_000, true, true),
            // The other connection writes, and every so often checkpoints so the WAL restarts.
            8 => {
                append(&mut b, &mut rng, &mut seqs, 200, true);
                if round % 40 == 8 {
                    b.execute_batch("PRAGMA wal_checkpoint(RESTART);")
                        .expect("checkpoint");
                }
            }
            _ => append(&mut a, &mut rng, &mut seqs, 60, true),
        }
        assert_eq!(rows(&b), seqs.values().sum::<i64>(), "round {round}");
    }
    check_everywhere(a, b, &path, &seqs);
    assert!(
        sqlite_wal_writes::HELD.load(Ordering::Relaxed) > held_before,
        "no write was held: the VFS is not in use"
    );
    assert!(sqlite_wal_writes::SENT.load(Ordering::Relaxed) > 0);
}
