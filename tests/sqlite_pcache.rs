//! The wrapped SQLite page cache (`chex::store::sqlite_pcache`) under SQLite itself. A test binary
//! of its own: the wrapper goes in before SQLite starts, which the integration tests' binary, with
//! its many servers, cannot promise to this one test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use chex::store::sqlite_pcache;
use rusqlite::{Connection, params};

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
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -32768;",
    )
    .expect("pragmas");
    conn
}

/// Appends `n` rows of random people, each at its person's next seq, and commits or rolls back.
fn append(
    conn: &mut Connection,
    rng: &mut Rng,
    seqs: &mut HashMap<u64, i64>,
    n: usize,
    keep: bool,
) {
    let mut next = seqs.clone();
    let tx = conn.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO events (person, seq, body) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for _ in 0..n {
            let person = rng.next(5_000);
            let seq = next.entry(person).or_default();
            *seq += 1;
            let body = format!("{person:>8}:{seq:>8}:{}", "x".repeat(48));
            insert
                .execute(params![person as i64, *seq, body])
                .expect("insert");
        }
    }
    if keep {
        tx.commit().expect("commit");
        *seqs = next;
    } else {
        tx.rollback().expect("rollback");
    }
}

/// Checks `conn` sees exactly the committed history.
fn check(conn: &Connection, seqs: &HashMap<u64, i64>) {
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, seqs.values().sum::<i64>());
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
    let dir = Scratch(std::env::temp_dir().join(format!(
        "chex-pcache-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&dir.0).expect("scratch dir");
    let path = dir.0.join("history.db");
    let mut a = open(&path);
    a.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, person INTEGER NOT NULL, \
         seq INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE UNIQUE INDEX ux_events_person_seq ON events (person, seq);",
    )
    .expect("schema");
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
    check(&a, &seqs);
    check(&b, &seqs);
    drop((a, b));
    check(&open(&path), &seqs);
    assert!(
        sqlite_pcache::SKIPPED.load(Ordering::Relaxed) > 0,
        "no drop was skipped: the wrapper is not in use"
    );
    assert!(
        sqlite_pcache::PASSED_ON.load(Ordering::Relaxed) > 0,
        "no drop was passed on, not even after a rolled-back growth"
    );
}
