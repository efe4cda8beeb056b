//! PostgreSQL appends by `COPY … FROM STDIN`: the bulk path of the busiest table.
//!
//! An `INSERT` of 2,000 rows — whether as multi-row VALUES (28,000 bound parameters) or one JSON
//! parameter unpacked by `jsonb_to_recordset` — makes the server parse, plan and evaluate an
//! expression per value; `COPY` streams rows straight into the table and its indexes, which on
//! this project's machine is ~1.5× less server time per batch (docs/benchmarks-history.md).
//! `COPY` does not return the ids it assigns, so the batch takes its ids from the table's sequence
//! first: one writer appends (the pipeline), so ids still increase in commit order.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sqlx::{self, PgPool, Row};

use super::events::{Appended, NewEvent, Parts, appended, assign_seqs, people_of};
use super::{Result, StoreError};

const COLUMNS: &str = "id, person_id, seq, observed_at, presence, status_text, status_emoji, \
    status_expires_at, dnd_enabled, dnd_until, stale, changed, previous, extra, source";

/// The advisory lock every appender holds: one writer at a time, across processes too.
const APPEND_LOCK: i64 = 0x6368_6578_0001;

/// COPY data per protocol message.
const COPY_CHUNK: usize = 64 * 1024;

/// Appends `batch` in one transaction: heads read, ids drawn, rows copied.
pub(super) async fn append(pool: &PgPool, batch: &[NewEvent]) -> Result<Vec<Appended>> {
    let mut tx = pool.begin().await.map_err(StoreError::sqlx)?;
    // One appender at a time (across processes too): seqs are read and assigned under it, and
    // the block of ids below is contiguous.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::sqlx)?;
    let people = people_of(batch);

    let mut last: HashMap<i64, (i64, DateTime<Utc>)> = HashMap::with_capacity(people.len());
    // Each person's last entry of `ux_status_events_person_seq`, one backward index probe each.
    for row in sqlx::query(
        "SELECT p.id, h.seq, h.observed_at FROM unnest($1::bigint[]) AS p(id) \
         CROSS JOIN LATERAL (SELECT seq, observed_at FROM status_events \
         WHERE person_id = p.id ORDER BY seq DESC LIMIT 1) AS h",
    )
    .bind(&people)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::sqlx)?
    {
        last.insert(
            row.try_get(0).map_err(StoreError::sqlx)?,
            (
                row.try_get(1).map_err(StoreError::sqlx)?,
                row.try_get(2).map_err(StoreError::sqlx)?,
            ),
        );
    }
    let assigned = assign_seqs(batch, &mut last);

    // A block of ids, reserved in one call: appenders hold the lock, so nobody draws from the
    // sequence between `nextval` and `setval` and the block is contiguous.
    let last_id: i64 = sqlx::query_scalar(
        "SELECT setval(pg_get_serial_sequence('status_events', 'id'), \
         nextval(pg_get_serial_sequence('status_events', 'id')) + $1 - 1)",
    )
    .bind(batch.len() as i64)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::sqlx)?;
    let ids: Vec<i64> = (last_id + 1 - batch.len() as i64..=last_id).collect();

    let mut data = String::with_capacity(batch.len() * 160);
    for ((e, (seq, at)), id) in batch.iter().zip(&assigned).zip(&ids) {
        copy_row(&mut data, *id, e, *seq, *at);
    }
    let mut copy = tx
        .copy_in_raw(&format!("COPY status_events ({COLUMNS}) FROM STDIN"))
        .await
        .map_err(StoreError::sqlx)?;
    for chunk in data.as_bytes().chunks(COPY_CHUNK) {
        if let Err(e) = copy.send(chunk).await {
            let _ = copy.abort("append failed").await;
            return Err(StoreError::sqlx(e));
        }
    }
    copy.finish().await.map_err(StoreError::sqlx)?;

    tx.commit().await.map_err(StoreError::sqlx)?;
    Ok(appended(assigned, ids))
}

/// One row in COPY's text format: tab-separated, `\N` for NULL.
fn copy_row(out: &mut String, id: i64, e: &NewEvent, seq: i64, at: DateTime<Utc>) {
    let s = &e.status;
    let _ = write!(out, "{id}\t{}\t{seq}\t", e.person_id);
    time(out, Some(at));
    out.push('\t');
    text(out, Some(s.presence.as_str()));
    out.push('\t');
    text(out, Some(&s.text));
    out.push('\t');
    text(out, Some(&s.emoji));
    out.push('\t');
    time(out, s.expires_at);
    out.push('\t');
    out.push(if s.dnd.enabled { 't' } else { 'f' });
    out.push('\t');
    time(out, s.dnd.until);
    out.push('\t');
    out.push(if s.stale { 't' } else { 'f' });
    out.push('\t');
    text(out, Some(&e.changed_column()));
    out.push('\t');
    text(out, e.previous_column().as_deref());
    out.push('\t');
    text(out, Parts::to_json(s).as_deref());
    out.push('\t');
    text(out, Some(e.source.as_str()));
    out.push('\n');
}

fn time(out: &mut String, t: Option<DateTime<Utc>>) {
    match t {
        Some(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        None => out.push_str("\\N"),
    }
}

/// A text value escaped for COPY. PostgreSQL text cannot hold NUL, so a NUL from a source is
/// dropped rather than failing the whole batch.
fn text(out: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        out.push_str("\\N");
        return;
    };
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_copy_would_read_as_structure() {
        let mut out = String::new();
        text(&mut out, Some("a\tb\nc\\d\re\0f 🎉"));
        assert_eq!(out, "a\\tb\\nc\\\\d\\ref 🎉");
        out.clear();
        text(&mut out, None);
        assert_eq!(out, "\\N");
    }
}
