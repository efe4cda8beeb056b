//! Clients for the tools Chex reads status from. A source knows its API's wire format, errors and
//! rate limits; it knows nothing of the store, the hub or clients.

pub mod gmail;
pub mod http;
pub mod jira;
pub mod slack;
