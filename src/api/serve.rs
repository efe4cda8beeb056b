//! The HTTP server's accept loop: HTTP/1.1 with upgrades, over plain TCP.
//!
//! warp's own `serve` hands each connection to hyper-util's protocol-sniffing builder, which wraps
//! the socket in a private type: a WebSocket upgraded there cannot be taken back as the TCP socket
//! it is, and the hub writes to an idle subscriber's socket itself ([`crate::hub::outlet`]). Here
//! hyper serves the socket as it is, so the upgrade hands it back whole. Chex speaks HTTP/1.1
//! only (no h2c), as every client of it does.

use std::convert::Infallible;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::{Filter, Reply};

/// Serves `routes` on `listener` until `stop`; then stops accepting, lets each connection finish
/// the request it is on, and returns when they have. Upgraded sockets live on by themselves.
/// `routes` answer every request (their rejections are recovered into answers).
pub async fn serve<F, R>(listener: TcpListener, routes: F, stop: CancellationToken)
where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let connections = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to be closed rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(warp::service(routes.clone()));
        let conn = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
