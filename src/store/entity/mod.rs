//! SeaORM entities, one file per table. They mirror `migration/` column for column; the queries
//! that use them live in the sibling modules of `store`.
pub mod account;
pub mod api_token;
pub mod check;
pub mod connection;
pub mod organization;
pub mod person;
pub mod refresh_token;
pub mod revoked_jti;
pub mod slack_profile;
pub mod slack_user;
pub mod source_identity;
pub mod status_event;
