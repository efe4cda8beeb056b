//! Gmail: the vacation responder as out-of-office. The client ([`GmailClient`]) speaks the Gmail
//! REST API (`users.getProfile`, `users.settings.getVacation`) with an OAuth2 access token, and
//! Google's token endpoint to refresh it.

mod client;
mod error;
pub mod types;

pub use client::{GmailClient, GmailCredentials};
pub use error::GmailError;
