//! Gmail's JSON, the fields Chex reads. Google encodes 64-bit integers as strings
//! (`"startTime": "1700000000000"`); both forms are read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// `users.getProfile`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    #[serde(default)]
    pub messages_total: i64,
    #[serde(default)]
    pub threads_total: i64,
    #[serde(default, deserialize_with = "int64")]
    pub history_id: Option<i64>,
}

/// `users.settings.getVacation`: the vacation responder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VacationSettings {
    #[serde(default)]
    pub enable_auto_reply: bool,
    #[serde(default)]
    pub response_subject: Option<String>,
    #[serde(default)]
    pub response_body_plain_text: Option<String>,
    #[serde(default)]
    pub response_body_html: Option<String>,
    #[serde(default)]
    pub restrict_to_contacts: bool,
    #[serde(default)]
    pub restrict_to_domain: bool,
    /// Epoch milliseconds.
    #[serde(default, deserialize_with = "int64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub end_time: Option<i64>,
}

impl VacationSettings {
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.start_time.and_then(DateTime::from_timestamp_millis)
    }

    pub fn until(&self) -> Option<DateTime<Utc>> {
        self.end_time.and_then(DateTime::from_timestamp_millis)
    }
}

/// The token endpoint's answer to `grant_type=refresh_token`.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub token_type: Option<String>,
}

/// The token endpoint's error.
#[derive(Debug, Default, Deserialize)]
pub struct TokenError {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

/// Google's API error envelope.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub error: ApiError,
}

#[derive(Debug, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorItem {
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub domain: String,
}

impl ApiError {
    pub fn reason(&self) -> &str {
        self.errors.first().map_or("", |e| e.reason.as_str())
    }
}

/// An int64 as Google sends it: a JSON string of digits, or (from other producers) a number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        N(i64),
        S(String),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(None),
        Some(Int::N(n)) => Ok(Some(n)),
        Some(Int::S(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}
