//! Slack: the Web API client ([`SlackClient`]), its rate-limit [`Governor`], the wire types, and
//! the Events API's signature check and payloads.

mod client;
mod error;
pub mod events;
mod governor;
pub mod types;
mod users_page;

pub use client::{DND_TEAM_BATCH, SlackClient, USERS_LIST_LIMIT, parse};
pub use error::SlackError;
pub use governor::{Governor, Tier, tier_of};
pub use users_page::{Member, UsersPage};
