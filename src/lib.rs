#![recursion_limit = "256"]
//! Chex watches people's status in the tools a team works in (Slack first), keeps every change as
//! history, and pushes each change to dashboards, widgets and bots the moment it is seen.
//!
//! # Layout
//!
//! A status change travels one way:
//!
//! ```text
//! sources ──▶ poll ──▶ store ──▶ hub ──▶ api
//! (Slack     (pool,    (SeaORM,  (broadcast  (REST, WebSocket,
//!  client,    change    batched   per topic)  SSE, Events API)
//!  governor)  detection) writes)
//! ```
//!
//! * [`config`]: settings from the environment and `.env`, validated before anything starts.
//! * [`domain`]: the shared vocabulary: presence, status, topics, the status event.
//! * [`store`]: every query, behind a cheap-to-clone handle.
//! * [`sources`]: clients for the tools Chex reads (Slack's Web API and Events API).
//! * [`poll`]: the poller pool and the pipeline that turns observations into committed events.
//! * [`hub`]: topic → broadcast channel; serializes each event once per topic.
//! * [`auth`]: passwords, JWTs, bot tokens.
//! * [`api`]: the HTTP and WebSocket surface.
//! * [`sim`]: a Slack simulator for the demo, tests and benchmarks.
//!
//! No module reaches back up this chain: the poller learns who is watched through the narrow
//! [`hub::Watched`] handle, not by importing the API.

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
pub mod hub;
pub mod metrics;
pub mod poll;
pub mod sim;
pub mod sources;
pub mod store;
