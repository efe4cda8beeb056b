//! Integration tests: the real server on a random port, real clients, the Slack simulator.
mod helpers;

mod auth;
mod bench;
mod browser;
mod checks;
mod cli;

mod fixtures;
mod fixtures_sources;
mod gmail;
mod jira;
mod openapi;
mod pipeline;
mod slack;
mod sse;
mod store;
mod ws;
