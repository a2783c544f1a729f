//! A TCP proxy that loses replies on purpose, to make a Redis call's
//! outcome unknown to the client: the request reached Redis and ran, the
//! reply never came back, the connection died.
//!
//! It forwards bytes both ways. Once armed with a byte pattern (say the
//! SHA1 of a script, which every `EVALSHA` of it carries), after forwarding
//! a chunk from the client that contains the pattern it waits for the
//! server's next bytes (the reply: the script surely ran), drops them and
//! resets the client connection (and closes the server one). A `-NOSCRIPT`
//! reply is forwarded instead and the proxy stays armed (the client then
//! loads the script and sends the `EVALSHA` again).
//!
//! Sequential use only: a cut takes "the server's next bytes" as the reply
//! to the armed command, which holds while one request is in flight on the
//! connection.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

#[derive(Default)]
struct Armed {
    pattern: Vec<u8>,
    /// Cuts still to make; 0 = disarmed.
    left: u32,
}

struct State {
    upstream: SocketAddr,
    armed: Mutex<Armed>,
    cuts: AtomicU64,
    cut: Notify,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl State {
    fn pattern(&self) -> Option<Vec<u8>> {
        let a = self.armed.lock();
        (a.left > 0).then(|| a.pattern.clone())
    }

    /// Takes one cut if any is left.
    fn take_cut(&self) -> bool {
        let mut a = self.armed.lock();
        if a.left == 0 {
            return false;
        }
        a.left -= 1;
        true
    }
}

/// A proxy on `127.0.0.1:<ephemeral>` in front of `upstream`; its tasks end
/// when it is dropped.
pub struct CutProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on loopback");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            armed: Mutex::new(Armed::default()),
            cuts: AtomicU64::new(0),
            cut: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let st2 = Arc::clone(&st);
                let conn = tokio::spawn(async move {
                    let _ = pump(client, &st2).await;
                });
                let mut tasks = st.tasks.lock();
                tasks.retain(|t| !t.is_finished());
                tasks.push(conn.abort_handle());
            }
        });
        state.tasks.lock().push(accept.abort_handle());
        Self { addr, state }
    }

    /// Cuts the reply of the next `cuts` requests that contain `pattern`.
    pub fn arm(&self, pattern: &[u8], cuts: u32) {
        *self.state.armed.lock() = Armed {
            pattern: pattern.to_vec(),
            left: cuts,
        };
    }

    pub fn disarm(&self) {
        self.state.armed.lock().left = 0;
    }

    /// Replies cut so far.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until at least `n` replies were cut.
    pub async fn wait_cuts(&self, n: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.cut.notified();
            if self.cuts() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.cuts() >= n;
            }
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        for t in self.state.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

async fn pump(client: TcpStream, st: &State) -> std::io::Result<()> {
    let server = TcpStream::connect(st.upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    // A cut resets the connection (RST), as a dying peer or middlebox would.
    client.set_zero_linger()?;
    let (mut crd, mut cwr) = client.into_split();
    let (mut srd, mut swr) = server.into_split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    // The end of what the client sent before, so a pattern split over two
    // reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    let mut cut_pending = false;
    loop {
        tokio::select! {
            r = crd.read(&mut cbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                swr.write_all(&cbuf[..n]).await?;
                if let Some(p) = st.pattern() {
                    tail.extend_from_slice(&cbuf[..n]);
                    if contains(&tail, &p) {
                        cut_pending = true;
                        tail.clear();
                    } else {
                        let keep = p.len().saturating_sub(1).min(tail.len());
                        tail.drain(..tail.len() - keep);
                    }
                }
            }
            r = srd.read(&mut sbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                if cut_pending {
                    cut_pending = false;
                    if sbuf[..n].starts_with(b"-NOSCRIPT") {
                        cwr.write_all(&sbuf[..n]).await?;
                        continue;
                    }
                    if st.take_cut() {
                        // The reply is dropped; both connections die, the
                        // client's with a reset (no FIN from a shutdown
                        // first: `forget` skips it).
                        st.cuts.fetch_add(1, Ordering::SeqCst);
                        st.cut.notify_waiters();
                        cwr.forget();
                        return Ok(());
                    }
                }
                cwr.write_all(&sbuf[..n]).await?;
            }
        }
    }
}
