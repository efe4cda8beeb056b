//! A `users.list` page read for a sweep: one pass over Slack's body, members parsed on demand.
//!
//! A sweep of a 50,000-person workspace reads ~100 MB of JSON, and on a steady workspace almost
//! nobody's record changed since the last one: only the head of each member (id, `updated`,
//! status) is needed, and the whole record only when `updated` moved. Parsing all ~40 fields of
//! every member into owned strings was most of a steady sweep's CPU. The page keeps the body and
//! where each member lies in it: finding them is the one pass that also reads `ok` and the
//! cursor, and nothing is copied (reading the envelope first, then copying each member out,
//! walked and copied the whole body twice more).

use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::client::parse;
use super::error::SlackError;
use super::types::{Envelope, ResponseMetadata, User, UserHead};

/// One `users.list` page: Slack's body and the place of each member in it.
#[derive(Debug)]
pub struct UsersPage {
    body: String,
    members: Vec<Range<usize>>,
    next_cursor: String,
}

/// The page as it reads in one pass; members borrow from the body.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    needed: Option<String>,
    #[serde(default)]
    provided: Option<String>,
    #[serde(default, borrow)]
    members: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

impl UsersPage {
    /// Reads a `users.list` body: `ok:false` becomes the typed error, as in [`parse`].
    pub fn read(body: Vec<u8>) -> Result<UsersPage, SlackError> {
        let body = String::from_utf8(body).map_err(|e| SlackError::Malformed(e.to_string()))?;
        let wire: Wire<'_> = match serde_json::from_str(&body) {
            Ok(w) => w,
            // An error answer of an unexpected shape still says which error it is.
            Err(e) => {
                parse::<Envelope>(body.as_bytes())?;
                return Err(SlackError::Malformed(e.to_string()));
            }
        };
        if wire.ok != Some(true) {
            let code = wire.error.unwrap_or_else(|| "unknown_error".into());
            return Err(SlackError::from_code(&code, wire.needed, wire.provided));
        }
        let base = body.as_ptr() as usize;
        let members = wire
            .members
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let start = m.get().as_ptr() as usize - base;
                start..start + m.get().len()
            })
            .collect();
        let next_cursor = wire.response_metadata.unwrap_or_default().next_cursor;
        Ok(UsersPage {
            body,
            members,
            next_cursor,
        })
    }

    pub fn members(&self) -> impl ExactSizeIterator<Item = Member<'_>> {
        self.members.iter().map(|r| Member(&self.body[r.clone()]))
    }

    /// The cursor of the next page, empty on the last; the body is freed with the page.
    pub fn into_next_cursor(self) -> String {
        self.next_cursor
    }
}

/// One member of a [`UsersPage`], still as the JSON Slack sent.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a>(&'a str);

impl Member<'_> {
    pub fn head(&self) -> Result<UserHead, serde_json::Error> {
        self.parse()
    }

    pub fn user(&self) -> Result<User, serde_json::Error> {
        self.parse()
    }

    /// The member as `T`; a `null` member is `T`'s default, as in an eager parse.
    fn parse<T: DeserializeOwned + Default>(&self) -> Result<T, serde_json::Error> {
        Ok(serde_json::from_str::<Option<T>>(self.0)?.unwrap_or_default())
    }
}
