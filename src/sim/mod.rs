//! Simulators of the tools Chex reads, faithful to their wire contracts, for the demo, the tests
//! and the benchmarks. No internet reaches the machines Chex is built on; the same client code
//! runs against these and against the real services.

pub mod faults;
pub mod gmail;
pub mod jira;
pub mod slack;

/// Serves `routes` on `listener` until `shutdown` fires.
pub(crate) async fn serve<F>(
    listener: tokio::net::TcpListener,
    routes: F,
    shutdown: tokio_util::sync::CancellationToken,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
}

/// Adds `Retry-After: secs` to a 429, as every simulated service sends it.
pub(crate) fn with_retry_after(mut r: warp::reply::Response, secs: u64) -> warp::reply::Response {
    r.headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from(secs));
    r
}

/// Calls `step` every `every` (first after one interval) until `shutdown`: a simulator's "life".
pub(crate) fn every(
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    step: impl Fn() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => step(),
            }
        }
    });
}
