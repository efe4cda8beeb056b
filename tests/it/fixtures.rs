//! Every payload in ../shared/fixtures/slack parses, and the simulator answers with the keys real
//! Slack sends.

use std::path::PathBuf;

use chex::sources::slack::types::*;
use chex::sources::slack::{SlackError, UsersPage, parse};
use serde_json::Value;

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/slack");
    if d.is_dir() {
        return Some(d);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {} is missing",
        d.display()
    );
    eprintln!("skipped: {} not found", d.display());
    None
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(dir().expect("fixtures").join(rel)).expect(rel)
}

#[test]
fn every_documented_ok_example_parses() {
    let Some(d) = dir() else { return };
    let u: UsersList = parse(&read("docs-examples/users.list.ok.json")).expect("users.list");
    assert_eq!(u.members[0].id, "W012A3CDE");
    assert_eq!(u.members[0].profile.status_text, "Print is dead");
    let _: AuthTest = parse(&read("docs-examples/auth.test.ok.json")).expect("auth.test");
    let _: TeamInfo = parse(&read("docs-examples/team.info.ok.json")).expect("team.info");
    let _: UsersInfo = parse(&read("docs-examples/users.info.ok.json")).expect("users.info");
    let p: UserPresence =
        parse(&read("docs-examples/users.getPresence.ok.json")).expect("presence");
    assert_ne!(p.presence, "");
    let _: ProfileGet = parse(&read("docs-examples/users.profile.get.ok.json")).expect("profile");
    let _: DndInfo = parse(&read("docs-examples/dnd.info.ok.json")).expect("dnd.info");
    let t: DndTeamInfo = parse(&read("docs-examples/dnd.teamInfo.ok.json")).expect("dnd.teamInfo");
    assert!(t.users["U023BECGF"].dnd_enabled);
    for entry in std::fs::read_dir(d.join("docs-examples")).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".error.json") {
            let body = std::fs::read(&path).expect("read");
            assert!(parse::<Value>(&body).is_err(), "{name} is an error example");
        }
    }
}

#[test]
fn documented_errors_map_to_typed_variants() {
    if dir().is_none() {
        return;
    }
    assert_eq!(
        parse::<UserPresence>(&read("docs-examples/users.getPresence.error.json")).err(),
        Some(SlackError::InvalidAuth)
    );
    assert_eq!(
        parse::<UsersInfo>(&read("docs-examples/users.info.error.json")).err(),
        Some(SlackError::UserNotFound)
    );
    assert_eq!(
        parse::<AuthTest>(&read("recorded/error.not_authed.http200.real.json")).err(),
        Some(SlackError::NotAuthed)
    );
    let missing =
        br#"{"ok":false,"error":"missing_scope","needed":"users:read","provided":"chat:write"}"#;
    assert_eq!(
        parse::<UsersList>(missing).err(),
        Some(SlackError::MissingScope {
            needed: "users:read".into(),
            provided: "chat:write".into()
        })
    );
    assert_eq!(
        parse::<UsersList>(br#"{"ok":false,"error":"team_added_to_org"}"#).err(),
        Some(SlackError::Api("team_added_to_org".into()))
    );
    assert!(matches!(
        parse::<UsersList>(b"<html>"),
        Err(SlackError::Malformed(_))
    ));
}

#[test]
fn recorded_live_payloads_parse_with_nulls_and_unknown_keys() {
    if dir().is_none() {
        return;
    }
    let p1: UsersList = parse(&read("recorded/users.list.page1.real.json")).expect("page 1");
    assert_eq!(p1.members[0].id, "USLACKBOT");
    assert_eq!(p1.response_metadata.next_cursor, "dXNlcjpVMDc1MThEVEw=");
    let last: UsersList =
        parse(&read("recorded/users.list.last_page.real.json")).expect("last page");
    assert_eq!(last.response_metadata.next_cursor, "");
    let bot: UsersInfo =
        parse(&read("recorded/users.info.deleted_bot.real.json")).expect("deleted bot");
    assert!(bot.user.deleted && bot.user.is_bot && bot.user.tz.is_none());
    assert_eq!(bot.user.profile.image_512, "");
    let a: AuthTest = parse(&read("recorded/auth.test.bot_token.real.json")).expect("auth.test");
    assert_eq!(
        (a.team_id.as_str(), a.bot_id.as_deref()),
        ("T04KB5WQH", Some("B0J1L75DY"))
    );
    let other: UserPresence =
        parse(&read("recorded/users.getPresence.other_user.json")).expect("other");
    assert_eq!(other.presence(), chex::domain::Presence::Active);
    assert_eq!(other.online, None);
    let own: UserPresence = parse(&read("recorded/users.getPresence.self.json")).expect("self");
    assert_eq!(own.connection_count, Some(1));
    let prof: ProfileGet = parse(&read("recorded/users.profile.get.json")).expect("profile");
    assert_eq!(prof.profile.status_emoji, ":coffee:");
    let dnd: DndInfo = parse(&read("recorded/dnd.info.self.json")).expect("dnd");
    assert_eq!(dnd.snooze_remaining, Some(1196));
    let team: DndTeamInfo = parse(&read("recorded/dnd.teamInfo.json")).expect("team dnd");
    assert_eq!(team.users.len(), 2);
    let ti: TeamInfo = parse(&read("recorded/team.info.json")).expect("team.info");
    assert_eq!(ti.team.id, "T12345");
    let raw = String::from_utf8(read("recorded/error.ratelimited.429.http")).expect("utf8");
    let body = raw
        .split("\r\n\r\n")
        .nth(1)
        .or_else(|| raw.split("\n\n").nth(1))
        .expect("body");
    assert!(matches!(
        parse::<Value>(body.as_bytes()),
        Err(SlackError::RateLimited { .. })
    ));
}

#[test]
fn key_shape_samples_parse() {
    let Some(d) = dir() else { return };
    for entry in std::fs::read_dir(d.join("shapes/web")).expect("dir") {
        let path = entry.expect("entry").path();
        let mut v: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        // Shape samples say ok:false with an empty error; read them as the ok bodies they describe.
        v["ok"] = Value::Bool(true);
        let body = v.to_string();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let r = match name.as_str() {
            "users.list" => parse::<UsersList>(body.as_bytes()).map(|_| ()),
            "users.info" => parse::<UsersInfo>(body.as_bytes()).map(|_| ()),
            "users.getPresence" => parse::<UserPresence>(body.as_bytes()).map(|_| ()),
            "users.profile.get" => parse::<ProfileGet>(body.as_bytes()).map(|_| ()),
            "dnd.info" => parse::<DndInfo>(body.as_bytes()).map(|_| ()),
            "dnd.teamInfo" => parse::<DndTeamInfo>(body.as_bytes()).map(|_| ()),
            "team.info" => parse::<TeamInfo>(body.as_bytes()).map(|_| ()),
            "auth.test" => parse::<AuthTest>(body.as_bytes()).map(|_| ()),
            _ => parse::<Value>(body.as_bytes()).map(|_| ()),
        };
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn event_payloads_parse_into_events() {
    use chex::sources::slack::events::{Envelope, Event};
    let Some(d) = dir() else { return };
    let inner = read("recorded/event.user_change.json");
    let inner = std::str::from_utf8(&inner).expect("utf-8");
    let Event::UserChange(u) = Event::parse(inner).expect("user_change") else {
        panic!("user_change")
    };
    assert_eq!(u.profile.status_text, "riding a train");
    let body = read("recorded/event.user_status_changed.envelope.json");
    let env: Envelope = serde_json::from_slice(&body).expect("env");
    assert_eq!(env.event_time, Some(1734567890), "what orders a retry");
    let Event::UserStatusChanged(u) = Event::read(env.event.expect("event")).expect("parse") else {
        panic!("status")
    };
    assert_eq!(u.profile.status_emoji, ":docs-team-in-transit:");
    for entry in std::fs::read_dir(d.join("shapes/events")).expect("dir") {
        let body = std::fs::read(entry.expect("entry").path()).expect("read");
        let env: Envelope = serde_json::from_slice(&body).expect("envelope");
        Event::read(env.event.expect("event")).expect("event parses");
    }
    let presence = read("recorded/rtm.presence_change.json");
    let presence = std::str::from_utf8(&presence).expect("utf-8");
    assert!(matches!(Event::parse(presence), Ok(Event::Other(t)) if t == "presence_change"));
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test]
async fn the_simulator_answers_with_the_keys_real_slack_sends() {
    if dir().is_none() {
        return;
    }
    let app = crate::helpers::TestApp::spawn_with(crate::helpers::Options {
        track: false,
        ..Default::default()
    })
    .await;
    let base = app.sim.api_url();
    let get = |m: &str| {
        let c = app
            .http
            .get(format!("{base}/{m}"))
            .bearer_auth(&app.spec.token);
        async move {
            c.send()
                .await
                .expect("call")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let sim_list = get("users.list?limit=2").await;
    let real: Value =
        serde_json::from_slice(&read("recorded/users.list.last_page.real.json")).expect("json");
    let real_member = &real["members"][0];
    let sim_member = &sim_list["members"][0];
    for k in keys(real_member) {
        if k == "is_invited_user" {
            continue; // only on invited users
        }
        assert!(sim_member.get(&k).is_some(), "users.list member lacks {k}");
    }
    for k in keys(&real_member["profile"]) {
        assert!(sim_member["profile"].get(&k).is_some(), "profile lacks {k}");
    }
    for (method, sample) in [
        ("auth.test", "recorded/auth.test.bot_token.real.json"),
        ("team.info", "docs-examples/team.info.ok.json"),
    ] {
        let ours = get(method).await;
        let theirs: Value = serde_json::from_slice(&read(sample)).expect("json");
        for k in keys(&theirs) {
            assert!(ours.get(&k).is_some(), "{method} lacks {k}");
        }
    }
    let user = sim_member["id"].as_str().expect("id").to_owned();
    let presence = get(&format!("users.getPresence?user={user}")).await;
    assert_eq!(
        keys(&presence),
        vec!["ok", "presence"],
        "another user's presence is only `presence`"
    );
    let dnd = get(&format!("dnd.teamInfo?users={user}")).await;
    assert_eq!(
        keys(&dnd["users"][&user]),
        vec!["dnd_enabled", "next_dnd_end_ts", "next_dnd_start_ts"]
    );
}

#[test]
fn a_lazily_read_users_list_page_agrees_with_the_eager_one() {
    if dir().is_none() {
        return;
    }
    for rel in [
        "recorded/users.list.page1.real.json",
        "recorded/users.list.last_page.real.json",
        "docs-examples/users.list.ok.json",
    ] {
        let eager: UsersList = parse(&read(rel)).expect(rel);
        let lazy = UsersPage::read(read(rel)).expect(rel);
        assert_eq!(lazy.members().len(), eager.members.len(), "{rel}");
        for (m, u) in lazy.members().zip(&eager.members) {
            let head = m.head().expect("head");
            assert_eq!(
                (head.id.as_str(), head.deleted, head.is_bot, head.updated),
                (u.id.as_str(), u.deleted, u.is_bot, u.updated),
                "{rel}"
            );
            assert_eq!(head.profile.custom_status(), u.profile.custom_status());
            assert_eq!(&m.user().expect("user"), u, "{rel}");
        }
        assert_eq!(lazy.into_next_cursor(), eager.response_metadata.next_cursor);
    }
}

#[test]
fn a_users_list_member_of_the_wrong_shape_is_an_error_of_its_own() {
    let page = UsersPage::read(
        br#"{"ok":true,"members":[{"id":"U1","updated":5},{"id":"U2","updated":"soon"},null],
            "response_metadata":{"next_cursor":"dXNlcjpVMg=="}}"#
            .to_vec(),
    )
    .expect("the page itself reads");
    let members: Vec<_> = page.members().collect();
    assert_eq!(members[0].head().expect("U1").updated, 5);
    assert!(members[1].head().is_err(), "a bad member fails alone");
    assert_eq!(members[2].head().expect("null").id, "");
    assert_eq!(page.into_next_cursor(), "dXNlcjpVMg==");
}

#[test]
fn a_users_list_page_read_in_one_pass_fails_as_the_eager_parse_does() {
    if dir().is_some() {
        assert_eq!(
            UsersPage::read(read("docs-examples/users.list.error.json")).err(),
            parse::<UsersList>(&read("docs-examples/users.list.error.json")).err(),
        );
    }
    let cases: [&[u8]; 8] = [
        br#"{"ok":false,"error":"invalid_cursor"}"#,
        br#"{"ok":false,"error":"missing_scope","needed":"users:read","provided":"chat:write"}"#,
        // An error answer whose other keys are of no known shape still names its error.
        br#"{"ok":false,"error":"token_revoked","members":"none"}"#,
        br#"{"members":[]}"#,
        br#"{"ok":true,"members":{"id":"U1"}}"#,
        br#"{"ok":true,"members":[{"id":"U1"}"#,
        b"<html>502 Bad Gateway</html>",
        b"{\"ok\":true,\"members\":[\"\xff\"]}",
    ];
    for body in cases {
        let one_pass = UsersPage::read(body.to_vec()).err();
        assert!(one_pass.is_some(), "{}", String::from_utf8_lossy(body));
        let eager = parse::<UsersList>(body).err();
        assert_eq!(
            std::mem::discriminant(&one_pass.clone().unwrap()),
            std::mem::discriminant(&eager.clone().expect("the eager parse fails too")),
            "{}: {one_pass:?} against {eager:?}",
            String::from_utf8_lossy(body)
        );
        if !matches!(one_pass, Some(SlackError::Malformed(_))) {
            assert_eq!(one_pass, eager);
        }
    }
    let empty = UsersPage::read(br#"{"ok":true,"members":null,"response_metadata":null}"#.to_vec())
        .expect("nulls read as empty");
    assert_eq!(empty.members().len(), 0);
    assert_eq!(empty.into_next_cursor(), "");
}
