//! Store queries on SQLite and, when `CHEX_TEST_DATABASE_URL` is set, on PostgreSQL.

use chex::domain::{Field, Presence, Source, Status, now};
use chex::store::testing::TestDb;
use chex::store::{NewEvent, SlackUserRecord, Store};
use migration::{Migrator, MigratorTrait};

async fn each_backend<F, Fut>(f: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sqlite = TestDb::sqlite().await;
    f(sqlite.store.clone()).await;
    let file = TestDb::sqlite_file().await;
    f(file.store.clone()).await;
    if let Some(pg) = TestDb::postgres().await {
        f(pg.store.clone()).await;
    }
}

/// An organization and a Slack connection for team `team`: `(organization id, connection id)`.
async fn workspace(store: &Store, org: &str, team: &str) -> (i64, i64) {
    let org = store.ensure_organization(org).await.expect("org");
    let conn = store
        .upsert_connection(chex::store::NewConnection {
            organization_id: org.id,
            kind: "slack",
            external_id: team,
            name: "t",
            credential_ciphertext: "x".into(),
            signing_secret_ciphertext: None,
            fingerprint: "f".into(),
        })
        .await
        .expect("conn");
    (org.id, conn.id)
}

async fn person(store: &Store, slack_id: &str) -> i64 {
    let (org, conn) = workspace(store, "acme", "T1").await;
    let rec = SlackUserRecord {
        slack_id: slack_id.into(),
        team_id: "T1".into(),
        name: slack_id.to_lowercase(),
        ..Default::default()
    };
    store
        .upsert_slack_users(conn, org, &[rec])
        .await
        .expect("upsert")[0]
        .person_id
}

/// `n` people of Slack team `team` (in an organization of their own): their person ids.
async fn team_of(store: &Store, team: &str, n: usize) -> Vec<i64> {
    let (org, conn) = workspace(store, &format!("org-{team}"), team).await;
    let records: Vec<SlackUserRecord> = (0..n)
        .map(|i| SlackUserRecord {
            slack_id: format!("U{team}{i:05}"),
            team_id: team.into(),
            name: format!("u{i}"),
            ..Default::default()
        })
        .collect();
    store
        .upsert_slack_users(conn, org, &records)
        .await
        .expect("upsert")
        .iter()
        .map(|p| p.person_id)
        .collect()
}

fn event(person_id: i64, presence: Presence, at: chrono::DateTime<chrono::Utc>) -> NewEvent {
    NewEvent {
        person_id,
        observed_at: at,
        status: Status {
            presence,
            ..Status::default()
        },
        changed: vec![Field::Presence],
        previous: Default::default(),
        source: Source::Slack,
    }
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    each_backend(|store| async move {
        let single = store.single().await.expect("single connection");
        let db = single.db();
        Migrator::down(db, None).await.expect("down");
        assert_eq!(
            Migrator::get_applied_migrations(db)
                .await
                .expect("applied")
                .len(),
            0
        );
        Migrator::up(db, None).await.expect("up again");
        assert!(store.ready().await.expect("ready"));
    })
    .await;
}

/// Undoing the migration that dropped `person_status` rebuilds the table from history (each
/// person's last seq and time, as appends kept it), and doing it again leaves appends continuing
/// each person's seqs from history alone.
#[tokio::test]
async fn undoing_the_person_status_drop_rebuilds_it_from_history() {
    use sea_orm::ConnectionTrait;
    each_backend(|store| async move {
        let (a, b) = (person(&store, "UA").await, person(&store, "UB").await);
        let t = now();
        let later = t + chrono::Duration::seconds(1);
        store
            .append_events(&[
                event(a, Presence::Active, t),
                event(a, Presence::Away, later),
                event(b, Presence::Active, t),
            ])
            .await
            .expect("append");
        let single = store.single().await.expect("single connection");
        let db = single.db();
        Migrator::down(db, Some(1)).await.expect("down one");
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT person_id, seq, observed_at FROM person_status ORDER BY person_id",
            ))
            .await
            .expect("person_status is back");
        let heads: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "person_id").expect("person_id"),
                    r.try_get("", "seq").expect("seq"),
                    r.try_get("", "observed_at").expect("observed_at"),
                )
            })
            .collect();
        let mut want = vec![(a, 2, later), (b, 1, t)];
        want.sort();
        assert_eq!(heads, want);
        Migrator::up(db, None).await.expect("up again");
        let next = store
            .append_events(&[event(
                a,
                Presence::Active,
                later + chrono::Duration::seconds(1),
            )])
            .await
            .expect("append after");
        assert_eq!(next[0].seq, 3, "seqs continue from history");
    })
    .await;
}

#[tokio::test]
async fn upserting_a_slack_user_twice_keeps_one_person() {
    each_backend(|store| async move {
        let a = person(&store, "U1").await;
        let b = person(&store, "U1").await;
        assert_eq!(a, b);
        let (u, prof) = store.slack_user_of(a).await.expect("q").expect("user");
        assert_eq!(u.slack_id, "U1");
        assert!(prof.is_some(), "profile joined through slack_user_id");
    })
    .await;
}

#[tokio::test]
async fn seqs_are_gap_free_across_batches_and_same_instant_events() {
    each_backend(|store| async move {
        let p = person(&store, "U2").await;
        let t = now();
        let batch: Vec<_> = (0..5)
            .map(|i| {
                event(
                    p,
                    if i % 2 == 0 {
                        Presence::Active
                    } else {
                        Presence::Away
                    },
                    t,
                )
            })
            .collect();
        let a = store.append_events(&batch).await.expect("append");
        assert_eq!(
            a.iter().map(|x| x.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(
            a.windows(2).all(|w| w[0].observed_at < w[1].observed_at),
            "same-instant events get distinct times"
        );
        assert!(
            a.windows(2).all(|w| w[0].id < w[1].id),
            "row ids follow input order"
        );
        let b = store
            .append_events(&[event(p, Presence::Active, t)])
            .await
            .expect("append");
        assert_eq!(b[0].seq, 6);
        assert!(b[0].id > a[4].id, "later commits get larger ids");
        let replay = store
            .events_after_id(&[p], a[2].id, 100)
            .await
            .expect("after id");
        assert_eq!(
            replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        let latest = store.latest_events(&[p]).await.expect("latest");
        assert_eq!(latest[&p].seq, 6);
    })
    .await;
}

#[tokio::test]
async fn history_pages_exactly_over_100k_events() {
    each_backend(|store| async move {
        let p = person(&store, "U3").await;
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc);
        let n = 100_000i64;
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|i| {
                    event(
                        p,
                        if i % 2 == 0 {
                            Presence::Active
                        } else {
                            Presence::Away
                        },
                        t0 + chrono::Duration::seconds(*i),
                    )
                })
                .collect();
            store.append_events(&batch).await.expect("append");
        }
        // Exact range: [t0+1000s, t0+3000s) holds seqs 1001..=3000.
        let from = t0 + chrono::Duration::seconds(1000);
        let to = t0 + chrono::Duration::seconds(3000);
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .history(p, Some(from), Some(to), cursor, 777)
                .await
                .expect("page");
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (1001..=3000).collect::<Vec<_>>());
        // Whole history pages without gap or duplicate.
        let mut count = 0;
        let mut last = 0;
        let mut cursor = None;
        loop {
            let page = store
                .history(p, None, None, cursor, 1000)
                .await
                .expect("page");
            for e in &page.events {
                assert_eq!(e.seq, last + 1);
                last = e.seq;
                count += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(count, n);
        let s = store
            .summary(p, t0, t0 + chrono::Duration::seconds(100))
            .await
            .expect("summary");
        assert_eq!(s.presence.get("active"), Some(&50));
        assert_eq!(s.presence.get("away"), Some(&50));
    })
    .await;
}

#[tokio::test]
async fn latest_events_of_a_large_team_in_one_call() {
    each_backend(|store| async move {
        let ids = team_of(&store, "TBIG", 2500).await;
        let batch: Vec<NewEvent> = ids
            .iter()
            .map(|p| event(*p, Presence::Active, now()))
            .collect();
        store.append_events(&batch).await.expect("append");
        let latest = store.latest_events(&ids).await.expect("latest of 2,500");
        assert_eq!(latest.len(), 2500);
        assert!(latest.values().all(|e| e.seq == 1));
    })
    .await;
}

#[tokio::test]
async fn identities_link_by_email_and_pins_stick() {
    each_backend(|store| async move {
        let (org, slack) = workspace(&store, "acme", "T1").await;
        let mut ada = SlackUserRecord {
            slack_id: "U1".into(),
            team_id: "T1".into(),
            name: "ada".into(),
            ..Default::default()
        };
        ada.profile.email = Some("Ada@Example.com".into());
        let mut bob = ada.clone();
        bob.slack_id = "U2".into();
        bob.profile.email = Some("bob@example.com".into());
        let rows = store
            .upsert_slack_users(slack, org, &[ada, bob])
            .await
            .expect("people");
        let (p_ada, p_bob) = (rows[0].person_id, rows[1].person_id);
        let jira = store
            .upsert_connection(chex::store::NewConnection {
                organization_id: org,
                kind: "jira",
                external_id: "acme.atlassian.net",
                name: "acme",
                credential_ciphertext: "x".into(),
                signing_secret_ciphertext: None,
                fingerprint: "f".into(),
            })
            .await
            .expect("jira")
            .id;
        let listed = |email: Option<&str>| chex::store::NewIdentity {
            external_id: "acc-1".into(),
            email: email.map(str::to_owned),
            display_name: "Ada".into(),
        };
        let ids = store
            .sync_identities(jira, org, &[listed(Some("ADA@example.com"))])
            .await
            .expect("sync");
        assert_eq!(
            ids[0].person_id,
            Some(p_ada),
            "emails match case-insensitively"
        );

        // An admin pins the account to Bob; a later listing does not undo it.
        let pinned = store
            .pin_identity(org, jira, "acc-1", Some(p_bob))
            .await
            .expect("pin");
        assert!(pinned.manual);
        let ids = store
            .sync_identities(jira, org, &[listed(Some("ada@example.com"))])
            .await
            .expect("sync");
        assert_eq!(ids[0].person_id, Some(p_bob));
        assert_eq!(store.identities_of(p_bob).await.expect("of").len(), 1);

        // Another organization's person, or an unknown account, is not found.
        let other = store.ensure_organization("other").await.expect("org");
        assert!(matches!(
            store.pin_identity(other.id, jira, "acc-1", None).await,
            Err(chex::store::StoreError::NotFound)
        ));
        assert!(matches!(
            store.pin_identity(org, jira, "acc-2", None).await,
            Err(chex::store::StoreError::NotFound)
        ));

        // Unpinned, the email decides again; an email that stops matching unlinks.
        let back = store
            .unpin_identity(org, jira, "acc-1")
            .await
            .expect("unpin");
        assert_eq!((back.person_id, back.manual), (Some(p_ada), false));
        let ids = store
            .sync_identities(jira, org, &[listed(None)])
            .await
            .expect("sync");
        assert_eq!(ids[0].person_id, None);
    })
    .await;
}

#[tokio::test]
async fn jira_and_gmail_parts_round_trip_through_history() {
    each_backend(|store| async move {
        let id = person(&store, "U9").await;
        let status = Status {
            presence: Presence::Active,
            jira: Some(chex::domain::JiraPart {
                issues: vec![chex::domain::JiraIssue {
                    key: "OPS-1".into(),
                    summary: "Ship it".into(),
                    status: "In Review".into(),
                    category: "indeterminate".into(),
                    url: "https://acme.atlassian.net/browse/OPS-1".into(),
                    next: vec!["Done".into()],
                }],
                moved: vec![chex::domain::IssueMove {
                    key: "OPS-1".into(),
                    summary: "Ship it".into(),
                    from: Some("In Progress".into()),
                    to: Some("In Review".into()),
                }],
                stale: false,
            }),
            gmail: Some(chex::domain::GmailPart {
                address: "u9@example.com".into(),
                auto_reply: true,
                out_of_office: true,
                subject: "Away".into(),
                since: Some(now()),
                until: None,
                stale: true,
            }),
            ..Status::default()
        };
        store
            .append_events(&[NewEvent {
                person_id: id,
                observed_at: now(),
                status: status.clone(),
                changed: vec![Field::Jira, Field::Gmail],
                previous: Default::default(),
                source: Source::Jira,
            }])
            .await
            .expect("append");
        let latest = store.latest_events(&[id]).await.expect("latest");
        let row = &latest[&id];
        assert_eq!(row.status(), status);
        assert_eq!(row.source, "jira");
    })
    .await;
}

#[tokio::test]
async fn status_text_with_copy_delimiters_and_json_round_trips() {
    each_backend(|store| async move {
        let p = person(&store, "U7").await;
        let mut e = event(p, Presence::Active, now());
        e.status.text = "tab\there\nnew line \\N back\\slash \r 🎉 \"quoted\"".into();
        e.status.emoji = ":\\:".into();
        e.changed = vec![Field::Text, Field::Emoji];
        e.previous
            .insert("text".into(), serde_json::json!("was\t\\ \n"));
        store.append_events(&[e.clone()]).await.expect("append");
        let got = store.latest_events(&[p]).await.expect("latest")[&p].clone();
        assert_eq!(got.status_text, e.status.text);
        assert_eq!(got.status_emoji, e.status.emoji);
        assert_eq!(got.changed, "text,emoji");
        let previous: serde_json::Value =
            serde_json::from_str(got.previous.as_deref().expect("previous")).expect("json");
        assert_eq!(previous["text"], "was\t\\ \n");
    })
    .await;
}

#[tokio::test]
async fn concurrent_appenders_never_share_a_seq_and_ids_stay_unique() {
    each_backend(|store| async move {
        let p = person(&store, "U8").await;
        let t = now();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..10 {
                        let at = t + chrono::Duration::milliseconds(w * 100 + i);
                        store
                            .append_events(&[event(p, Presence::Away, at)])
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
        let page = store
            .history(p, None, None, None, 100)
            .await
            .expect("history");
        let seqs: Vec<i64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "gap-free, no duplicate");
        let mut ids: Vec<i64> = page.events.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids follow seqs");
        ids.dedup();
        assert_eq!(ids.len(), 40);
    })
    .await;
}

/// Two servers on one SQLite file, each with its own appender: each one's appends follow the
/// other's, with no seq reused, though each keeps the heads it wrote (`sqlite_append::Heads`).
#[tokio::test]
async fn two_servers_on_one_sqlite_file_follow_each_others_seqs() {
    let db = TestDb::sqlite_file().await;
    let path = db.sqlite_path().expect("a file");
    let a = db.store.clone();
    let b = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("second server");
    let p = person(&a, "U7").await;
    let t = now();
    for (i, store) in [&a, &a, &b, &a, &b, &b, &a].into_iter().enumerate() {
        let at = t + chrono::Duration::milliseconds(i as i64);
        let got = store
            .append_events(&[event(p, Presence::Away, at)])
            .await
            .expect("append");
        assert_eq!(got[0].seq, i as i64 + 1, "append {i}");
    }
}

/// sqlx-core 0.9.0 stopped setting `TCP_NODELAY`, and every multi-segment message to PostgreSQL
/// could then wait 40 ms for a delayed ACK (vendor/README.md). The vendored fix must hold until a
/// release carries it: every socket this process has open to the database has Nagle off.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connections_to_postgresql_have_nagle_off() {
    let Some(pg) = TestDb::postgres().await else {
        return;
    };
    assert!(pg.store.ready().await.expect("query"));
    let port = std::env::var("CHEX_TEST_DATABASE_URL")
        .ok()
        .and_then(|u| url::Url::parse(&u).ok())
        .and_then(|u| u.port())
        .unwrap_or(5432);
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("fds").flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if peer_port(fd) != Some(port) {
            continue;
        }
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `on` and `len` outlive the call and `len` is `on`'s size. A descriptor that
        // closed meanwhile (other tests run in this process) makes the call fail, not misbehave.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut on as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            assert_eq!(on, 1, "a PostgreSQL connection (fd {fd}) has Nagle on");
            checked += 1;
        }
    }
    assert!(checked > 0, "no TCP connection to PostgreSQL found");
}

/// The peer port of `fd` when it is a connected IPv4/IPv6 socket.
#[cfg(target_os = "linux")]
fn peer_port(fd: i32) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is a valid value, and getpeername writes at most `len`
    // bytes into it.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: ss_family says which of the two layouts the storage holds.
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(u16::from_be(a.sin_port))
        }
        libc::AF_INET6 => {
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(u16::from_be(a.sin6_port))
        }
        _ => None,
    }
}

/// A SQLite file's WAL is checkpointed and restarted while a writer appends without a pause, so it
/// holds the last moments of writes rather than every page ever written (it grew to 560 MB over
/// 200,000 appends when checkpoints could not restart it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_restarts_under_a_writer_that_never_pauses() {
    let db = TestDb::sqlite_file().await;
    let wal_path = db.sqlite_path().expect("a file").with_extension("db-wal");
    let store = db.store.clone();
    let people = team_of(&store, "T1", 200).await;
    // The WAL header's checkpoint sequence number (bytes 12..16, big-endian) counts restarts.
    let restarts = || {
        use std::io::Read;
        let mut head = [0u8; 16];
        std::fs::File::open(&wal_path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_or(0, |()| {
                u32::from_be_bytes([head[12], head[13], head[14], head[15]])
            })
    };
    let before = restarts();
    let started = std::time::Instant::now();
    let t0 = now();
    let mut written = 0;
    // The WAL restarts once it holds ~16 MiB (`store::RESTART_AFTER_FRAMES`): write until it has
    // restarted a few times, or give up after a minute.
    while restarts().wrapping_sub(before) < 4
        && started.elapsed() < std::time::Duration::from_secs(60)
    {
        let batch: Vec<NewEvent> = people
            .iter()
            .map(|&p| {
                written += 1;
                let presence = if written % 2 == 0 {
                    Presence::Active
                } else {
                    Presence::Away
                };
                event(p, presence, t0 + chrono::Duration::milliseconds(written))
            })
            .collect();
        store.append_events(&batch).await.expect("append");
    }
    let after = restarts();
    let wal = std::fs::metadata(&wal_path).map_or(0, |m| m.len());
    assert_eq!(
        store
            .last_seqs(&people)
            .await
            .expect("seqs")
            .values()
            .sum::<i64>(),
        written,
        "every event is stored"
    );
    eprintln!(
        "{written} events in {:?}: WAL restarted {} times, {wal} B",
        started.elapsed(),
        after.wrapping_sub(before)
    );
    assert!(
        after.wrapping_sub(before) >= 4,
        "after {written} events the WAL restarted {} times ({wal} B)",
        after.wrapping_sub(before)
    );
}

/// On SQLite, appends write their rows with statements of their own rather than through sea-orm
/// (`store::sqlite_append`): each column must hold exactly what sea-orm would have written, times
/// above all, which history's range filters compare as text.
#[tokio::test]
async fn appended_sqlite_rows_hold_what_sea_orm_would_have_written() {
    use chex::domain::Dnd;
    use chex::store::entity::status_event;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbBackend, Statement};
    for db in [TestDb::sqlite().await, TestDb::sqlite_file().await] {
        let store = &db.store;
        let p = person(store, "U9").await;
        // The oracle's row: another person, as (person, time) is unique.
        let q = person(store, "U10").await;
        // Nanoseconds, which sqlx's encoding keeps.
        let at: chrono::DateTime<chrono::Utc> =
            "2026-11-29T18:46:28.123456789Z".parse().expect("time");
        let status = Status {
            presence: Presence::Away,
            text: "in a meeting, \"quoted\"".into(),
            emoji: ":calendar:".into(),
            expires_at: Some(at + chrono::Duration::hours(1)),
            dnd: Dnd {
                enabled: true,
                until: Some(at + chrono::Duration::minutes(30)),
            },
            stale: false,
            ..Status::default()
        };
        let mut previous = serde_json::Map::new();
        previous.insert("presence".into(), "active".into());
        let e = NewEvent {
            person_id: p,
            observed_at: at,
            status: status.clone(),
            changed: vec![Field::Presence, Field::Text],
            previous: previous.clone(),
            source: Source::Slack,
        };
        let appended = store.append_events(&[e]).await.expect("append");
        assert_eq!(appended[0].observed_at, at);
        status_event::ActiveModel {
            person_id: Set(q),
            seq: Set(1),
            observed_at: Set(at),
            presence: Set("away".into()),
            status_text: Set(status.text.clone()),
            status_emoji: Set(status.emoji.clone()),
            status_expires_at: Set(status.expires_at),
            dnd_enabled: Set(true),
            dnd_until: Set(status.dnd.until),
            stale: Set(false),
            changed: Set("presence,text".into()),
            previous: Set(Some(serde_json::to_string(&previous).expect("json"))),
            extra: Set(None),
            source: Set("slack".into()),
            ..Default::default()
        }
        .insert(store.db())
        .await
        .expect("insert through sea-orm");
        let rows = store
            .db()
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT quote(observed_at) || ' ' || quote(presence) \
                 || ' ' || quote(status_text) || ' ' || quote(status_emoji) || ' ' \
                 || quote(status_expires_at) || ' ' || quote(dnd_enabled) || ' ' \
                 || quote(dnd_until) || ' ' || quote(stale) || ' ' || quote(changed) || ' ' \
                 || quote(previous) || ' ' || quote(extra) || ' ' || quote(source) AS r \
                 FROM status_events ORDER BY id",
            ))
            .await
            .expect("rows");
        let rows: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("", "r").expect("text"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], rows[1], "appended row vs sea-orm's");
        // And sea-orm reads the appended row back as it went in.
        let history = store
            .history(p, None, None, None, 10)
            .await
            .expect("history");
        assert_eq!(history.events[0].observed_at, at);
        assert_eq!(history.events[0].dnd_until, status.dnd.until);
    }
}

/// A batch that cannot be stored (here: an event of a person who does not exist) fails whole, on
/// every backend: nothing of it is left behind, and the next batch lands with the seqs it would
/// have had.
#[tokio::test]
async fn a_failed_append_leaves_nothing_behind_and_the_next_one_lands() {
    each_backend(|store| async move {
        let p = person(&store, "U3").await;
        let t = now();
        store
            .append_events(&[event(p, Presence::Active, t)])
            .await
            .expect("first append");
        let bad = [
            event(p, Presence::Away, t + chrono::Duration::seconds(1)),
            event(i64::MAX - 7, Presence::Away, t),
        ];
        assert!(store.append_events(&bad).await.is_err(), "unknown person");
        assert_eq!(store.last_seqs(&[p]).await.expect("seqs")[&p], 1);
        let next = store
            .append_events(&[event(p, Presence::Away, t + chrono::Duration::seconds(2))])
            .await
            .expect("append after a failure");
        assert_eq!(next[0].seq, 2);
        let history = store
            .history(p, None, None, None, 10)
            .await
            .expect("history");
        assert_eq!(history.events.len(), 2);
    })
    .await;
}
