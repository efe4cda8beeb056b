//! Slack's Events API: the request signature, and the callbacks Chex acts on.
//!
//! Slack signs each request with the app's signing secret: `v0=` + hex HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`. A request older than five minutes is a replay.
//!
//! Slack redelivers an event it could not deliver (no 2xx within three seconds) at once, a
//! minute later and five minutes later, marking each retry with `X-Slack-Retry-Num`.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::types::{DndInfo, User};

/// Oldest request timestamp accepted, in seconds from now (either direction).
pub const MAX_SKEW_SECS: i64 = 5 * 60;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    #[error("timestamp is not a number")]
    BadTimestamp,
    #[error("timestamp is more than five minutes away: replay refused")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// The signature Slack would send for this body.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a request's signature and age. Constant-time: the comparison does not leak how many
/// bytes matched.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let t: i64 = ts
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now_unix - t).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, ts.trim(), body);
    if expected.as_bytes().ct_eq(sig.trim().as_bytes()).into() {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The outer envelope of every Events API request, with its inner event's type read in the same
/// pass. What the event carries stays raw text (borrowed from the body) until the signature is
/// checked and the type says what it is: read into a `serde_json::Value` first and into the typed
/// event after, a `user_change` was parsed twice and allocated once per field, a tenth of the
/// server's CPU per change at 8,000 changes/s; and a pass over the event for its type alone, on
/// top of the envelope's and the user's, was over a quarter of the instructions spent parsing
/// (callgrind, session 23).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub team_id: Option<String>,
    pub challenge: Option<String>,
    pub event_id: Option<String>,
    /// When Slack dispatched the event, in whole seconds of Slack's clock; the same in every
    /// retry of it.
    pub event_time: Option<i64>,
    #[serde(borrow)]
    pub event: Option<RawEvent<'a>>,
}

/// An inner event as the envelope's pass leaves it: its type, and the parts Chex reads as raw
/// text, whose shape depends on the type (`user` is an object in `user_change`, an id in
/// `dnd_updated_user`). Anything else in it is skipped without being kept.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    dnd_status: Option<&'a RawValue>,
}

/// When a delivered event happened, for ordering it against the polls and other pushes about the
/// same person (`poll::pipeline`), whose times are read off this server's clock.
///
/// A first delivery is stamped when it arrived: it comes within seconds of the edit, and its
/// arrival is on the same clock as a poll's, where Slack's `event_time` is on Slack's and only to
/// the second. A retry is different: it arrives a minute or five late, after newer edits and
/// sweeps have been applied, and stamped at arrival it would undo them. It is stamped no later
/// than the end of the second Slack says it was dispatched in. That trusts Slack's clock to
/// within a second of this one, and only for retries, which are rare.
pub fn happened_by(received: DateTime<Utc>, retry: bool, event_time: Option<i64>) -> DateTime<Utc> {
    match event_time.and_then(|t| DateTime::from_timestamp(t.checked_add(1)?, 0)) {
        Some(dispatched_by) if retry => received.min(dispatched_by),
        _ => received,
    }
}

/// How long a taken event's id is remembered: Slack's last redelivery comes five minutes after
/// the first attempt, plus three seconds for each attempt's timeout.
pub const SEEN_FOR: Duration = Duration::from_secs(10 * 60);

/// Most event ids remembered at once (~4 MB when full).
pub const SEEN_MAX: usize = 100_000;

/// The events taken lately, by `event_id`, so that Slack's redelivery of one Chex already took is
/// acknowledged and dropped instead of being stored again.
///
/// Slack redelivers an event whose delivery got no 2xx within three seconds, and that includes
/// events Chex took but answered late, or whose answer was lost with its connection; Slack asks
/// receivers to dedupe by `event_id`. A duplicate would do no harm to the statuses (the same
/// status is not a change, and an older one is dropped by the pipeline's ordering rule), so this
/// saves the work, and makes the redeliveries of taken events countable
/// (`chex_slack_events_duplicate_total`): a rising count says Chex answers Slack too slowly.
///
/// Bounded in time ([`SEEN_FOR`]) and in count ([`SEEN_MAX`], the oldest forgotten first), so a
/// flood cannot grow it: at Slack's own cap of 30,000 events an hour per workspace, the count
/// covers hours. Ids are kept as 64-bit hashes under a per-process random key (no attacker can
/// aim collisions at it, and chance collisions among 100,000 ids are ~1 in 10⁹).
pub struct SeenEvents {
    key: RandomState,
    window: Duration,
    max: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Oldest first; each id at most once.
    order: VecDeque<(Instant, u64)>,
    ids: HashSet<u64>,
}

impl Default for SeenEvents {
    fn default() -> Self {
        SeenEvents::new(SEEN_FOR, SEEN_MAX)
    }
}

impl SeenEvents {
    pub fn new(window: Duration, max: usize) -> SeenEvents {
        SeenEvents {
            key: RandomState::new(),
            window,
            max: max.max(1),
            seen: Mutex::default(),
        }
    }

    /// True, and remembered from now on, unless `event_id` was taken within the window. Call it
    /// only for a verified event that is about to be acknowledged: a refused one must stay new
    /// for Slack's retry of it.
    pub fn first_time(&self, event_id: &str, now: Instant) -> bool {
        let id = self.key.hash_one(event_id);
        // Nothing below panics, so a poisoned lock still holds a consistent set.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(at, old)) = seen.order.front() {
            if seen.order.len() < self.max && now.saturating_duration_since(at) < self.window {
                break;
            }
            seen.order.pop_front();
            seen.ids.remove(&old);
        }
        if !seen.ids.insert(id) {
            return false;
        }
        seen.order.push_back((now, id));
        true
    }
}

/// The inner events Chex acts on.
#[derive(Debug)]
pub enum Event {
    /// Carries the whole user: replaces the stored user and profile.
    UserChange(Box<User>),
    /// Carries the user with (part of) the profile: the custom status changed.
    UserStatusChanged(Box<User>),
    DndUpdatedUser {
        user: String,
        dnd: DndInfo,
    },
    /// Any other type: acknowledged and counted.
    Other(String),
}

impl Event {
    /// Reads an inner `event` object from its JSON text. An event of a known type with the wrong
    /// shape is an error.
    pub fn parse(json: &str) -> Result<Event, serde_json::Error> {
        Event::read(serde_json::from_str(json)?)
    }

    /// Reads an inner event the envelope's pass left raw. An event of a known type with the wrong
    /// shape is an error.
    pub fn read(raw: RawEvent<'_>) -> Result<Event, serde_json::Error> {
        fn required<'a>(
            part: Option<&'a RawValue>,
            name: &'static str,
        ) -> Result<&'a str, serde_json::Error> {
            part.map(RawValue::get)
                .ok_or_else(|| serde::de::Error::missing_field(name))
        }
        Ok(match raw.kind.as_ref() {
            "user_change" => {
                Event::UserChange(Box::new(serde_json::from_str(required(raw.user, "user")?)?))
            }
            "user_status_changed" => Event::UserStatusChanged(Box::new(serde_json::from_str(
                required(raw.user, "user")?,
            )?)),
            "dnd_updated_user" => Event::DndUpdatedUser {
                user: serde_json::from_str(required(raw.user, "user")?)?,
                dnd: match raw.dnd_status {
                    Some(d) => serde_json::from_str(d.get())?,
                    None => DndInfo::default(),
                },
            },
            other => Event::Other(other.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_taken_once_within_the_window_and_the_count() {
        let seen = SeenEvents::new(Duration::from_secs(600), 3);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(seen.first_time("Ev1", at(0)));
        assert!(!seen.first_time("Ev1", at(60)), "Slack's retry");
        assert!(!seen.first_time("Ev1", at(303)), "its last retry");
        assert!(seen.first_time("Ev2", at(0)), "another event");
        // Out of the window: forgotten.
        assert!(seen.first_time("Ev1", at(601)));
        // Three remembered at most: the oldest make room first.
        assert!(seen.first_time("Ev3", at(602)));
        assert!(seen.first_time("Ev4", at(603)));
        assert!(seen.first_time("Ev5", at(604)));
        assert!(seen.first_time("Ev1", at(605)), "pushed out by the count");
        assert!(!seen.first_time("Ev5", at(606)));
    }

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn slacks_documented_example_signature_verifies() {
        // The worked example of Slack's "Verifying requests from Slack" guide.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", body), sig);
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(sig), body, 1531420618 + 10),
            Ok(())
        );
    }

    #[test]
    fn inner_events_are_read_by_their_type() {
        let dnd = r#"{"type":"dnd_updated_user","user":"U1","dnd_status":{"dnd_enabled":true}}"#;
        assert!(matches!(
            Event::parse(dnd),
            Ok(Event::DndUpdatedUser { user, dnd }) if user == "U1" && dnd.dnd_enabled
        ));
        // The type may be escaped like any JSON string, and come after the payload.
        let user =
            r#"{"user":{"id":"U2","profile":{"status_text":"hi"}},"type":"user\u005fchange"}"#;
        assert!(matches!(
            Event::parse(user),
            Ok(Event::UserChange(u)) if u.id == "U2" && u.profile.status_text == "hi"
        ));
        assert!(matches!(
            Event::parse(r#"{"type":"team_join","user":{"id":"U3"}}"#),
            Ok(Event::Other(t)) if t == "team_join"
        ));
        assert!(matches!(Event::parse("{}"), Ok(Event::Other(t)) if t.is_empty()));
        // A known type of the wrong shape is refused, as is text that is not an object.
        assert!(Event::parse(r#"{"type":"user_change","user":"U4"}"#).is_err());
        assert!(Event::parse(r#"{"type":"dnd_updated_user"}"#).is_err());
        assert!(Event::parse("[1,2]").is_err());
    }

    #[test]
    fn a_retry_is_stamped_by_its_dispatch_and_a_first_delivery_by_its_arrival() {
        let received = DateTime::from_timestamp(1_700_000_300, 500_000_000).expect("time");
        let five_minutes_late = Some(1_700_000_000);
        let at = |secs| DateTime::from_timestamp(secs, 0).expect("time");
        assert_eq!(
            happened_by(received, true, five_minutes_late),
            at(1_700_000_001)
        );
        // A first delivery is not moved by Slack's clock, however far off it reads.
        assert_eq!(happened_by(received, false, five_minutes_late), received);
        // A retry is never stamped after its arrival (Slack's clock ahead of this one), and one
        // with no usable event_time keeps its arrival.
        assert_eq!(happened_by(received, true, Some(1_700_000_900)), received);
        assert_eq!(happened_by(received, true, None), received);
        assert_eq!(happened_by(received, true, Some(i64::MAX)), received);
    }

    #[test]
    fn an_envelope_reads_its_events_type_and_skips_the_rest() {
        let body = br#"{"type":"event_callback","team_id":"T1","unknown":{"a":[1]},"event":{"type":"x","n":1},"event_time":1734567890}"#;
        let env: Envelope = serde_json::from_slice(body).expect("envelope");
        assert_eq!(env.kind, "event_callback");
        assert_eq!(env.event_time, Some(1734567890));
        assert_eq!(env.team_id.as_deref(), Some("T1"));
        let event = env.event.expect("event");
        assert_eq!(event.kind, "x");
        assert!(matches!(Event::read(event), Ok(Event::Other(t)) if t == "x"));
        // The type read in the same pass wherever it stands, and the user after it.
        let body = br#"{"type":"event_callback","event":{"user":{"id":"U1","profile":{"status_text":"a \"b\""}},"type":"user_change"}}"#;
        let env: Envelope = serde_json::from_slice(body).expect("envelope");
        let Ok(Event::UserChange(u)) = Event::read(env.event.expect("event")) else {
            panic!("user_change")
        };
        assert_eq!(
            (u.id.as_str(), u.profile.status_text.as_str()),
            ("U1", "a \"b\"")
        );
    }

    #[test]
    fn bad_missing_and_stale_signatures_are_refused() {
        let body = br#"{"type":"event_callback"}"#;
        let now = 1_700_000_000;
        let ts = now.to_string();
        let good = sign(SECRET, &ts, body);
        assert_eq!(
            verify(SECRET, Some(&ts), None, body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, None, Some(&good), body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("other", Some(&ts), Some(&good), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&good), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                Some(&ts),
                Some(&good),
                body,
                now + MAX_SKEW_SECS + 1
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some("abc"), Some(&good), body, now),
            Err(SignatureError::BadTimestamp)
        );
    }
}
