//! Turning what sources say into committed, published events.
//!
//! * [`pipeline`]: the single writer. Observations (partial statuses) come in from pollers and the
//!   Events API; it detects real changes, commits them in batches, then publishes them.
//! * [`slack`]: the Slack poller pool: sweeps, watched-first presence polling, DND rounds.

pub mod pipeline;
pub mod slack;

pub use pipeline::{Observation, Pipeline};
