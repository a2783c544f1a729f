//! The accept loop: a bound listener in, a shutdown future to stop it.
//!
//! A semaphore caps open connections before `accept` (the excess waits in
//! the kernel's backlog instead of in our memory); each connection gets a
//! header-read timeout; on shutdown the listener closes, in-flight requests
//! get a grace period, and then the caller stops the backends.

use crate::app::App;
use crate::routes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The address a connection was accepted from (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::IpAddr);

/// Largest request head (request line plus headers) buffered, in bytes.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_RETRY_MS: u64 = 50;

/// Serves until `shutdown` resolves, then drains connections for at most
/// the configured grace period.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.limits.clone();
    let conn_permits = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(HEAD_BYTES_MAX.max(8192));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&conn_permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // The address from accept travels with each request.
            req.extensions_mut().insert(Peer(peer.ip()));
            routes::handle(Arc::clone(&app), req)
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}
