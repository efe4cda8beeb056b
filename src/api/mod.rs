//! The HTTP and WebSocket surface. Errors from every layer are mapped to HTTP once, in
//! [`error`]; every route ends in `recover`, so no rejection becomes a bare 500.

mod error;
mod openapi;
mod rest;
pub mod serve;
mod slack_events;
mod sources;
mod sse;
mod state;
mod topics;
mod web;
mod ws;

pub use error::ApiError;
pub use state::{AppState, Shared};

use warp::Filter;

/// Every route.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    // The Events API first: it takes a request per change, the busiest route by far, and every
    // route before it would be tried and rejected on each.
    slack_events::route(state.clone())
        .boxed()
        .or(rest::routes(state.clone()))
        .unify()
        .or(sources::routes(state.clone()))
        .unify()
        .or(ws::route(state.clone()).boxed())
        .unify()
        .or(sse::route(state).boxed())
        .unify()
        .or(web::routes().boxed())
        .unify()
        .boxed()
        .recover(error::handle_rejection)
        .with(warp::log::custom(|info| {
            // The path only: query strings may carry `access_token`.
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "request");
        }))
}
