//! The accept loop: a bound listener in, a shutdown future to stop it.
//!
//! A semaphore caps open connections before `accept` (the excess waits in
//! the kernel's backlog instead of in our memory). Each connection has a
//! watchdog: with no request in flight it is closed after
//! `idle_timeout_ms` without a byte, or `header_read_timeout_ms` after the
//! first byte of a head that never completes. (hyper's own
//! `header_read_timeout` is off: in hyper 1.x its timer starts whenever the
//! connection waits for a head, so on a kept-alive connection it also
//! times the idle wait, and idle and slow clients could not be told apart
//! or given different limits.) Each request gets `request_timeout_ms`;
//! heads are bounded in bytes and fields. Everything shed is counted
//! (`crate::shed`). On shutdown the listener closes, in-flight requests get
//! a grace period, and then the caller stops the backends.

use crate::app::App;
use crate::error::ApiError;
use crate::routes;
use crate::shed::{self, Reason};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The address a connection was accepted from (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::IpAddr);

/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_RETRY_MS: u64 = 50;
/// Seconds a client is told to wait after a request timed out.
const REQUEST_TIMEOUT_RETRY_S: u64 = 1;

/// Serves until `shutdown` resolves, then drains connections for at most
/// the configured grace period.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.limits.clone();
    raise_fd_limit(limits.connections_max);
    let conn_permits = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.head_bytes_max)
        .max_headers(limits.headers_max);
    let timeouts = Timeouts {
        header: Duration::from_millis(limits.header_read_timeout_ms),
        idle: Duration::from_millis(limits.idle_timeout_ms),
    };
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    tokio::pin!(shutdown);
    loop {
        let permit = match Arc::clone(&conn_permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: the next client waits in the backlog.
                shed::count(Reason::ConnectionsMax);
                tokio::select! {
                    p = Arc::clone(&conn_permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break, // the semaphore is never closed
                    },
                    () = &mut shutdown => break,
                }
            }
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
        let activity = Arc::new(Activity::new());
        let io = Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let app = Arc::clone(&app);
        let on_request = Arc::clone(&activity);
        let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            // The address from accept travels with each request.
            req.extensions_mut().insert(Peer(peer.ip()));
            let busy = Busy::begin(Arc::clone(&on_request));
            let app = Arc::clone(&app);
            async move {
                let _busy = busy;
                // Dropping a handler is safe: a grab past its reservation
                // finishes in a task of its own (see `crate::funnel`).
                match tokio::time::timeout(request_timeout, routes::handle(app, req)).await {
                    Ok(r) => r,
                    Err(_) => {
                        shed::count(Reason::RequestTimeout);
                        let e = ApiError::new(
                            crate::error::Code::Overloaded,
                            "the request was not answered in time; try again",
                        )
                        .retry_after(REQUEST_TIMEOUT_RETRY_S);
                        Ok(crate::web::error(&e))
                    }
                }
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), svc));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        if e.is_parse_too_large() {
                            shed::count(Reason::HeadTooLarge);
                        }
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                // Dropping the connection closes it; nothing is in flight.
                reason = watchdog(&activity, timeouts) => shed::count(reason),
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

/// Raises the soft limit on open files to the hard limit (each connection
/// is one), and warns when `connections_max` cannot fit under it.
fn raise_fd_limit(connections_max: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            // Listener, logs, stores and backends need some descriptors too.
            if connections_max as u64 + FD_RESERVE > soft {
                tracing::warn!(
                    connections_max,
                    nofile = soft,
                    "limits.connections_max exceeds the open-file limit; accepts will fail before the cap"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Descriptors kept for everything but client connections.
const FD_RESERVE: u64 = 64;

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// What a connection is doing, for its watchdog. Times are milliseconds
/// since the connection was accepted.
struct Activity {
    start: Instant,
    /// Requests between head and answer.
    inflight: AtomicU32,
    /// When the connection last became free of requests.
    idle_since_ms: AtomicU64,
    /// When the first byte arrived since then (`NONE`: none yet).
    head_from_ms: AtomicU64,
    /// Wakes the watchdog when a head starts: it may be sleeping towards
    /// the (much later) idle deadline.
    head_started: tokio::sync::Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            inflight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_from_ms: AtomicU64::new(NONE),
            head_started: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Bytes arrived: with no request in flight they start a head.
    fn read(&self) {
        if self.inflight.load(Ordering::Acquire) == 0
            && self.head_from_ms.load(Ordering::Relaxed) == NONE
        {
            let started = self.head_from_ms.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if started.is_ok() {
                // `notify_one` keeps a permit when nobody waits: no lost wake-up.
                self.head_started.notify_one();
            }
        }
    }

    /// When the watchdog should act and why, given nothing is in flight.
    fn deadline(&self, t: Timeouts) -> (u64, Reason) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE / 2);
        match self.head_from_ms.load(Ordering::Relaxed) {
            NONE => (
                self.idle_since_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(ms(t.idle)),
                Reason::IdleTimeout,
            ),
            from => (from.saturating_add(ms(t.header)), Reason::HeaderTimeout),
        }
    }
}

/// A request in flight on a connection (dropped when it is answered).
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(a: Arc<Activity>) -> Self {
        a.inflight.fetch_add(1, Ordering::AcqRel);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Relaxed);
        a.head_from_ms.store(NONE, Ordering::Relaxed);
        a.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection has to go: idle too long, or a head too
/// slow, with no request in flight. Runs as long as the connection.
async fn watchdog(a: &Activity, t: Timeouts) -> Reason {
    // While a request is in flight its own timeouts govern; look again later.
    let recheck = t.header.min(t.idle);
    loop {
        let now = a.now_ms();
        let wake = if a.inflight.load(Ordering::Acquire) > 0 {
            a.start + Duration::from_millis(now) + recheck
        } else {
            let (deadline, reason) = a.deadline(t);
            if now >= deadline {
                return reason;
            }
            a.start + Duration::from_millis(deadline)
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = a.head_started.notified() => {}
        }
    }
}

/// The client's stream, telling the watchdog when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
