//! Hostile connections against the real binary (issue 8, acceptance 4):
//! slow headers, slow bodies, huge bodies, idle keep-alive connections,
//! oversized heads and slow handlers, while a legitimate buyer keeps
//! grabbing on connections of its own; its p99 is printed per scenario and
//! held under a generous bound. The hostile clients are raw TCP streams.
//! Servers run with small timeouts (flags) so the file stays short, and
//! with `SECKILL_LIMITS=off` so the buyer is never rate limited.

mod common;

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The scenarios measure latency and memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The buyer's p99 must stay under this while the server is attacked.
const BUYER_P99_MAX: Duration = Duration::from_millis(1_000);
/// How late a timeout may fire on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(1_500);

/// A server with one live campaign of ample stock and buyer tokens.
struct Sale {
    server: Server,
    campaign: String,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Sale {
    async fn start_env(args: &[&str], envs: &[(&str, String)], users: usize) -> Sale {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut envs = envs.to_vec();
        envs.push(("SECKILL_LIMITS", "off".into()));
        let server = Server::start_with(dir.path(), args, &envs);
        let c = server
            .create_campaign(json!({ "stock": 1_000_000, "title": "Hostile" }))
            .await;
        let campaign = c["id"].as_str().expect("id").to_string();
        let tokens = server.tokens(&common::users("buyer", users)).await;
        Sale {
            server,
            campaign,
            tokens,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        self.server.base.trim_start_matches("http://").to_string()
    }

    fn pid(&self) -> u32 {
        self.server.child.id()
    }

    fn grab_path(&self) -> String {
        format!("/api/v1/campaigns/{}/grab", self.campaign)
    }

    /// `seckill_shed_total{reason="<reason>"}`, 0 when absent.
    async fn shed(&self, reason: &str) -> u64 {
        let text = self.server.get("/metrics", None).await;
        let text = String::from_utf8_lossy(&text.body).to_string();
        let key = format!("seckill_shed_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A legitimate buyer: two loops grabbing on their own pooled connections,
/// a short pause between grabs, every answer timed.
struct Buyer {
    stop: Arc<AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)>>,
}

const BUYER_LOOPS: usize = 2;
const BUYER_GRABS_MAX: usize = 100_000;

impl Buyer {
    fn start(sale: &Sale) -> Buyer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let loops = (0..BUYER_LOOPS)
            .map(|l| {
                let (stop, client) = (Arc::clone(&stop), client.clone());
                let url = format!("{}{}", sale.server.base, sale.grab_path());
                let tokens = sale.tokens.clone();
                tokio::spawn(async move {
                    let (mut times, mut failures) = (Vec::new(), Vec::new());
                    for i in 0..BUYER_GRABS_MAX {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let token = &tokens[(i * BUYER_LOOPS + l) % tokens.len()];
                        let req = http::Request::post(&url)
                            .header("authorization", format!("Bearer {token}"))
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{}")))
                            .expect("request");
                        let t0 = Instant::now();
                        let answer = tokio::time::timeout(Duration::from_secs(10), async {
                            let resp = client.request(req).await.map_err(|e| e.to_string())?;
                            let status = resp.status().as_u16();
                            resp.into_body()
                                .collect()
                                .await
                                .map_err(|e| e.to_string())?;
                            Ok::<u16, String>(status)
                        })
                        .await;
                        times.push(t0.elapsed());
                        match answer {
                            Ok(Ok(202 | 409)) => {}
                            Ok(Ok(s)) => failures.push(format!("status {s}")),
                            Ok(Err(e)) => failures.push(e),
                            Err(_) => failures.push("no answer within 10 s".into()),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    (times, failures)
                })
            })
            .collect();
        Buyer { stop, loops }
    }

    /// Stops the buyer, prints its latency and asserts it was served.
    async fn finish(self, scenario: &str) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let (mut times, mut failures) = (Vec::new(), Vec::new());
        for l in self.loops {
            let (t, f) = l.await.expect("buyer loop");
            times.extend(t);
            failures.extend(f);
        }
        times.sort();
        assert!(
            times.len() >= 20,
            "{scenario}: the buyer made only {} grabs",
            times.len()
        );
        let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).max(1) - 1];
        let p99 = pct(0.99);
        eprintln!(
            "[{scenario}] buyer: {} grabs, p50 {:?}, p99 {:?}, max {:?}, failures {}",
            times.len(),
            pct(0.50),
            p99,
            times[times.len() - 1],
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{scenario}: buyer failures {:?}",
            &failures[..failures.len().min(5)]
        );
        assert!(p99 < BUYER_P99_MAX, "{scenario}: buyer p99 {p99:?}");
        p99
    }
}

async fn connect(addr: &str) -> TcpStream {
    let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect within 10 s")
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A response read from a raw stream (Content-Length bodies only).
struct RawReply {
    status: u16,
    /// The head, lowercased.
    head: String,
    body: Vec<u8>,
}

impl RawReply {
    /// The error code of a JSON error body ("" when there is none).
    fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

async fn read_response(s: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<RawReply> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 1 << 20 {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                return Some(RawReply { status, head, body });
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    None
}

/// Sends `head` then `body` one byte at a time, `gap` apart, reading what
/// comes back; returns when the server closes (with the time since the
/// first body byte and what it answered), or after `give_up`.
async fn trickle(
    addr: String,
    head: String,
    body: Vec<u8>,
    gap: Duration,
    give_up: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let mut s = connect(&addr).await;
    s.write_all(head.as_bytes()).await.expect("head");
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    for b in &body {
        if start.elapsed() > give_up {
            return (None, got);
        }
        if s.write_all(std::slice::from_ref(b)).await.is_err() {
            return (Some(start.elapsed()), got);
        }
        if gap.is_zero() {
            continue;
        }
        // Wait out the gap, noticing an answer or a close meanwhile.
        match tokio::time::timeout(gap, s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (Some(start.elapsed()), got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    // The whole body went out: read the answer until the server closes or
    // keeps the connection (then drop it).
    let left = give_up.saturating_sub(start.elapsed());
    let deadline = tokio::time::Instant::now() + left;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (Some(start.elapsed()), got),
            Ok(Ok(n)) => {
                got.extend_from_slice(&chunk[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") && !gap.is_zero() {
                    continue;
                }
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return (Some(start.elapsed()), got);
                }
            }
            Err(_) => return (None, got),
        }
    }
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(reply.get(..12)?).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

fn grab_head(addr: &str, path: &str, token: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

const BODY_TIMEOUT_MS: u64 = 4_000;
/// Bodies trickled one byte per millisecond (plus scheduling delay on a
/// loaded machine): done well within the body timeout.
const FAST_BODY_BYTES: usize = 300;

/// The bug an outside tester found: a body trickled one byte per packet
/// cost about 3.6 KB of resident memory per byte, kept after the
/// connection ended, and nothing cut a slow body off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_bodies_cost_no_memory_and_are_cut_off() {
    let _serial = SERIAL.lock().await;
    let sale = Sale::start_env(
        &["--connections-max", "220"],
        &[("SECKILL_BODY_READ_TIMEOUT_MS", BODY_TIMEOUT_MS.to_string())],
        400,
    )
    .await;
    let addr = sale.addr();
    let buyer = Buyer::start(&sale);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. 100 grabs whose 300-byte bodies arrive one byte per packet,
    // finishing well within the body timeout: they must be answered, and
    // cost no memory once done.
    let before = common::rss_kib(sale.pid());
    let mut fast = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut body = vec![b' '; FAST_BODY_BYTES];
        body[0] = b'{';
        body[FAST_BODY_BYTES - 1] = b'}';
        let head = grab_head(&addr, &sale.grab_path(), &sale.tokens[200 + i], body.len());
        fast.spawn(trickle(
            addr.clone(),
            head,
            body,
            Duration::from_millis(1),
            Duration::from_secs(20),
        ));
    }
    let (mut answered, mut fast_statuses) = (0, std::collections::BTreeMap::new());
    while let Some(r) = fast.join_next().await {
        let (_, reply) = r.expect("trickle task");
        *fast_statuses.entry(status_of(&reply)).or_insert(0) += 1;
        if matches!(status_of(&reply), Some(202 | 409)) {
            answered += 1;
        }
    }
    eprintln!("[slow body, 1 byte per packet] answers {fast_statuses:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_fast = common::rss_kib(sale.pid());
    let grown_fast = after_fast.saturating_sub(before);
    eprintln!("[slow body, 1 byte per packet] 100 x {FAST_BODY_BYTES} B: {answered} answered, RSS {before} kB -> {after_fast} kB (+{grown_fast} kB)");
    assert_eq!(answered, 100, "every trickled grab is answered");
    assert!(
        grown_fast < 20 * 1024,
        "RSS grew by {grown_fast} kB for 100 trickled bodies"
    );

    // 2. 200 connections trickling a body one byte per second: cut within
    // the body timeout, while others still get in under the cap.
    let before = common::rss_kib(sale.pid());
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..200 {
        let head = grab_head(&addr, &sale.grab_path(), &sale.tokens[i], 1_000);
        slow.spawn(trickle(
            addr.clone(),
            head,
            vec![b' '; 1_000],
            Duration::from_secs(1),
            Duration::from_millis(BODY_TIMEOUT_MS) + SLACK * 3,
        ));
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // Newcomers are served while the 200 hold their connections.
    for _ in 0..5 {
        let t0 = Instant::now();
        let mut s = connect(&addr).await;
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let r = read_response(&mut s, Duration::from_secs(2)).await;
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "a newcomer is served beside 200 slow bodies"
        );
        eprintln!(
            "[slow body, 1 byte per second] newcomer served in {:?}",
            t0.elapsed()
        );
    }
    let (mut cut, mut late, mut statuses) = (Vec::new(), 0, std::collections::BTreeMap::new());
    while let Some(r) = slow.join_next().await {
        let (closed, reply) = r.expect("trickle task");
        *statuses.entry(status_of(&reply)).or_insert(0) += 1;
        match closed {
            Some(t) => cut.push(t),
            None => late += 1,
        }
    }
    let after_slow = common::rss_kib(sale.pid());
    let grown = after_slow.saturating_sub(before);
    cut.sort();
    let last = cut.last().copied().unwrap_or_default();
    eprintln!(
        "[slow body, 1 byte per second] 200 connections: {} cut (last after {last:?}), {late} still open, answers {statuses:?}, RSS {before} kB -> {after_slow} kB (+{grown} kB)",
        cut.len()
    );
    assert_eq!(late, 0, "every slow body is cut off");
    assert!(
        last <= Duration::from_millis(BODY_TIMEOUT_MS) + SLACK,
        "cut after {last:?}, body timeout {BODY_TIMEOUT_MS} ms"
    );
    assert!(grown < 20 * 1024, "RSS grew by {grown} kB");
    assert!(sale.shed("body_timeout").await >= 200);
    buyer.finish("slow bodies").await;
}

const HEADER_TIMEOUT_MS: u64 = 2_000;
const LORIS_CONNS: usize = 500;
/// The server counts its timeouts in whole milliseconds: a close may come
/// up to one sooner than the timeout (one more for good measure).
const MS_ROUNDING: Duration = Duration::from_millis(2);
/// Resident memory a held connection may cost the server, generously (a
/// few kB are expected: buffers, a task, a watchdog).
const CONN_BYTES_MAX: u64 = 64 * 1024;

/// A slow-loris: the request line, then `X-a: `, then one byte per `gap`,
/// never ending the head. Returns when the server closes (the time since
/// the first byte, and what it answered), or `None` after `give_up`.
async fn slow_loris(addr: String, gap: Duration, give_up: Duration) -> (Option<Duration>, Vec<u8>) {
    let mut s = connect(&addr).await;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let pieces: [&[u8]; 2] = [b"GET /healthz HTTP/1.1\r\n", b"X-a: "];
    let steps = (give_up.as_millis() / gap.as_millis().max(1)) as usize + 2;
    for i in 0..steps {
        let piece = pieces.get(i).copied().unwrap_or(b"a");
        let written = tokio::time::timeout(gap, s.write_all(piece)).await;
        if !matches!(written, Ok(Ok(()))) {
            return (Some(start.elapsed()), got);
        }
        // Wait out the gap, noticing an answer or a close meanwhile.
        let next = tokio::time::Instant::now() + gap;
        loop {
            match tokio::time::timeout_at(next, s.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return (Some(start.elapsed()), got),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        if start.elapsed() > give_up {
            break;
        }
    }
    (None, got)
}

/// Issue 8, acceptance 4: 500 slow-loris connections, one header byte per
/// second, are all closed within the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_loris_heads_are_closed_within_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let header_timeout = Duration::from_millis(HEADER_TIMEOUT_MS);
    let sale = Sale::start_env(
        &[
            "--header-read-timeout-ms",
            &HEADER_TIMEOUT_MS.to_string(),
            "--connections-max",
            &(LORIS_CONNS + 100).to_string(),
        ],
        &[],
        100,
    )
    .await;
    let addr = sale.addr();
    let buyer = Buyer::start(&sale);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = common::rss_kib(sale.pid());
    let mut lorises = tokio::task::JoinSet::new();
    for _ in 0..LORIS_CONNS {
        lorises.spawn(slow_loris(
            addr.clone(),
            Duration::from_secs(1),
            header_timeout + SLACK * 3,
        ));
    }
    // Halfway through the header timeout all 500 hold a connection.
    tokio::time::sleep(header_timeout / 2).await;
    let during = common::rss_kib(sale.pid());
    let (mut closed, mut open, mut statuses) = (Vec::new(), 0, std::collections::BTreeMap::new());
    while let Some(r) = lorises.join_next().await {
        let (after, reply) = r.expect("slow-loris task");
        *statuses.entry(status_of(&reply)).or_insert(0) += 1;
        match after {
            Some(t) => closed.push(t),
            None => open += 1,
        }
    }
    let after = common::rss_kib(sale.pid());
    closed.sort();
    let first = closed.first().copied().unwrap_or_default();
    let last = closed.last().copied().unwrap_or_default();
    let shed = sale.shed("header_timeout").await;
    eprintln!(
        "[slow loris, 1 header byte per second] {LORIS_CONNS} connections, header timeout {header_timeout:?}: {} closed (first after {first:?}, median {:?}, last after {last:?}), {open} still open, answers {statuses:?} (None: closed without one), shed header_timeout {shed}, RSS {before} kB -> {during} kB with all open -> {after} kB",
        closed.len(),
        closed.get(closed.len() / 2).copied().unwrap_or_default(),
    );
    assert_eq!(open, 0, "every slow-loris connection is closed");
    assert_eq!(closed.len(), LORIS_CONNS);
    assert!(
        last <= header_timeout + SLACK,
        "closed after {last:?}, header timeout {header_timeout:?}"
    );
    // The header timeout closed them, nothing sooner.
    assert!(
        first + MS_ROUNDING >= header_timeout,
        "closed after {first:?}, header timeout {header_timeout:?}"
    );
    assert!(
        statuses.keys().all(|s| matches!(s, None | Some(408))),
        "answers {statuses:?}"
    );
    assert!(shed >= LORIS_CONNS as u64, "shed header_timeout {shed}");
    let grown = during.saturating_sub(before);
    assert!(
        grown * 1024 <= CONN_BYTES_MAX * LORIS_CONNS as u64,
        "RSS grew by {grown} kB for {LORIS_CONNS} slow-loris connections"
    );
    buyer.finish("slow loris").await;
}

const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;
const UPLOAD_PIECE_BYTES: usize = 64 * 1024;
/// The uploader's pace: the whole body would take 10 s.
const UPLOAD_GAP: Duration = Duration::from_micros(62_500);
/// The 413 comes at once: long before the body could have been sent.
const HUGE_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// What a 10 MB upload got back, how soon, and how much of the body the
/// client had handed to its socket by then.
struct Upload {
    answer: Option<RawReply>,
    after: Duration,
    written: usize,
}

/// Sends `head`, then a 10 MiB body (chunked or not) at `UPLOAD_GAP` per
/// 64 KiB, while reading the answer.
async fn upload_huge(addr: &str, head: String, chunked: bool) -> Upload {
    let (mut rd, mut wr) = connect(addr).await.into_split();
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let io = Duration::from_secs(2);
        if !matches!(
            tokio::time::timeout(io, wr.write_all(head.as_bytes())).await,
            Ok(Ok(()))
        ) {
            return;
        }
        let mut piece = Vec::with_capacity(UPLOAD_PIECE_BYTES + 16);
        if chunked {
            piece.extend_from_slice(format!("{UPLOAD_PIECE_BYTES:x}\r\n").as_bytes());
        }
        piece.resize(piece.len() + UPLOAD_PIECE_BYTES, b' ');
        if chunked {
            piece.extend_from_slice(b"\r\n");
        }
        for _ in 0..HUGE_BODY_BYTES / UPLOAD_PIECE_BYTES {
            // Counted before the write: an upper bound of what went out.
            counter.fetch_add(UPLOAD_PIECE_BYTES, Ordering::Relaxed);
            if !matches!(
                tokio::time::timeout(io, wr.write_all(&piece)).await,
                Ok(Ok(()))
            ) {
                return; // the server closed: expected once it answered
            }
            tokio::time::sleep(UPLOAD_GAP).await;
        }
        if chunked {
            let _ = tokio::time::timeout(io, wr.write_all(b"0\r\n\r\n")).await;
        }
    });
    let answer = read_response(&mut rd, HUGE_ANSWER_WITHIN * 2).await;
    let after = start.elapsed();
    let written = written.load(Ordering::Relaxed);
    writer.abort();
    Upload {
        answer,
        after,
        written,
    }
}

/// Issue 8, acceptance 4: a 10 MB grab body, declared or chunked, is
/// refused with 413 at once, not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_bodies_get_413_at_once() {
    let _serial = SERIAL.lock().await;
    let sale = Sale::start_env(&[], &[], 100).await;
    let addr = sale.addr();
    let buyer = Buyer::start(&sale);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = common::rss_kib(sale.pid());
    let declared = grab_head(&addr, &sale.grab_path(), &sale.tokens[0], HUGE_BODY_BYTES);
    let chunked = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        sale.grab_path(),
        sale.tokens[1]
    );
    for (what, head, is_chunked) in [
        ("Content-Length: 10485760", declared, false),
        ("chunked, 10 MiB", chunked, true),
    ] {
        let up = upload_huge(&addr, head, is_chunked).await;
        let status = up.answer.as_ref().map(|a| a.status);
        let code = up.answer.as_ref().map(RawReply::code).unwrap_or_default();
        eprintln!(
            "[huge body, {what}] answer {status:?} {code:?} after {:?}, the client had written at most {} KiB of {} KiB",
            up.after,
            up.written / 1024,
            HUGE_BODY_BYTES / 1024
        );
        assert_eq!(status, Some(413), "{what}");
        assert_eq!(code, "payload_too_large", "{what}");
        assert!(
            up.after <= HUGE_ANSWER_WITHIN,
            "{what}: answered after {:?}",
            up.after
        );
        assert!(
            up.written <= HUGE_BODY_BYTES / 5,
            "{what}: answered after {} bytes were written",
            up.written
        );
        let head = &up.answer.as_ref().expect("answer").head;
        assert!(head.contains("connection: close"), "{what}: {head}");
    }
    let after = common::rss_kib(sale.pid());
    let shed = sale.shed("body_too_large").await;
    eprintln!("[huge body] shed body_too_large {shed}, RSS {before} kB -> {after} kB");
    assert!(shed >= 2, "shed body_too_large {shed}");
    buyer.finish("huge bodies").await;
}

const IDLE_TIMEOUT_MS: u64 = 1_500;
const IDLE_CONNS: usize = 3_000;
/// Rounds of 3,000: the second shows whether the memory of the first was
/// given back for reuse.
const IDLE_ROUNDS: usize = 2;
/// Connections being opened at once (under the listen backlog).
const OPENING_AT_ONCE: usize = 200;

/// One idle keep-alive connection's times, all as the client saw them.
struct IdleConn {
    /// From writing the request to reading its answer.
    took: Duration,
    /// When the server closed, counted from the request being sent (the
    /// server's idle wait starts later: no correct close comes sooner than
    /// the idle timeout) and from the answer being read (the idle wait
    /// started earlier: a late close shows in full). `None`: still open
    /// at `give_up`.
    closed: Option<(Duration, Duration)>,
}

/// One keep-alive connection: a GET /healthz, then idle until the server
/// closes it.
async fn idle_keep_alive(
    addr: String,
    opening: Arc<tokio::sync::Semaphore>,
    opened: Arc<AtomicUsize>,
    give_up: Duration,
) -> Result<IdleConn, String> {
    let permit = tokio::time::timeout(Duration::from_secs(30), opening.acquire_owned())
        .await
        .map_err(|_| "no turn to open within 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    let mut s = connect(&addr).await;
    let sent = Instant::now();
    let get = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tokio::time::timeout(Duration::from_secs(5), s.write_all(get.as_bytes()))
        .await
        .map_err(|_| "request not written within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let reply = read_response(&mut s, Duration::from_secs(10))
        .await
        .ok_or_else(|| "no answer within 10 s".to_string())?;
    let served = Instant::now();
    drop(permit);
    if reply.status != 200 || reply.head.contains("connection: close") {
        return Err(format!("not kept alive: {}", reply.head));
    }
    opened.fetch_add(1, Ordering::Relaxed);
    let mut chunk = [0u8; 256];
    let closed = match tokio::time::timeout(give_up, s.read(&mut chunk)).await {
        Ok(Ok(0) | Err(_)) => Some((sent.elapsed(), served.elapsed())),
        Ok(Ok(n)) => {
            return Err(format!(
                "unexpected bytes on an idle connection: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ))
        }
        Err(_) => None,
    };
    Ok(IdleConn {
        took: served - sent,
        closed,
    })
}

/// What a round of idle connections saw.
struct IdleRound {
    conns: Vec<IdleConn>,
    failures: Vec<String>,
    opened_in: Duration,
    /// RSS with all open, and how many had closed by then.
    rss_open: (u64, usize),
}

/// Opens `IDLE_CONNS` keep-alive connections and waits until the server
/// closes them all (bounded).
async fn idle_round(sale: &Sale, idle_timeout: Duration) -> IdleRound {
    let addr = sale.addr();
    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let opened = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..IDLE_CONNS {
        set.spawn(idle_keep_alive(
            addr.clone(),
            Arc::clone(&opening),
            Arc::clone(&opened),
            idle_timeout + SLACK * 3,
        ));
    }
    let (mut conns, mut failures) = (Vec::new(), Vec::new());
    let (mut rss_open, mut opened_in) = (None, Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if rss_open.is_none() && opened.load(Ordering::Relaxed) + failures.len() >= IDLE_CONNS {
            opened_in = t0.elapsed();
            let closed = conns
                .iter()
                .filter(|c: &&IdleConn| c.closed.is_some())
                .count();
            rss_open = Some((common::rss_kib(sale.pid()), closed));
        }
        let next = if rss_open.is_none() {
            // Look at the open count again at least every 20 ms.
            match tokio::time::timeout(Duration::from_millis(20), set.join_next()).await {
                Ok(next) => next,
                Err(_) => {
                    assert!(tokio::time::Instant::now() < deadline, "not open in 60 s");
                    continue;
                }
            }
        } else {
            tokio::time::timeout_at(deadline, set.join_next())
                .await
                .expect("every connection done within 60 s")
        };
        let Some(r) = next else { break };
        match r.expect("idle connection task") {
            Ok(c) => conns.push(c),
            Err(e) => failures.push(e),
        }
    }
    IdleRound {
        conns,
        failures,
        opened_in,
        rss_open: rss_open.unwrap_or_default(),
    }
}

/// Issue 8, acceptance 4: 3,000 idle keep-alive connections are closed
/// after the idle timeout, not before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    // Each connection is a descriptor here as well as in the server.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
    assert!(
        nofile > IDLE_CONNS as u64 + 200,
        "open-file limit {nofile} is too low for {IDLE_CONNS} connections"
    );
    let idle_timeout = Duration::from_millis(IDLE_TIMEOUT_MS);
    let sale = Sale::start_env(
        &[
            "--idle-timeout-ms",
            &IDLE_TIMEOUT_MS.to_string(),
            // The 3,000, the buyer's two and a few for /metrics.
            "--connections-max",
            &(IDLE_CONNS + 100).to_string(),
        ],
        &[],
        100,
    )
    .await;
    let buyer = Buyer::start(&sale);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut rss = vec![common::rss_kib(sale.pid())];
    for round in 1..=IDLE_ROUNDS {
        let r = idle_round(&sale, idle_timeout).await;
        let after = common::rss_kib(sale.pid());
        let open = r.conns.iter().filter(|c| c.closed.is_none()).count();
        let mut took: Vec<Duration> = r.conns.iter().map(|c| c.took).collect();
        let mut from_sent: Vec<Duration> = r
            .conns
            .iter()
            .filter_map(|c| c.closed.map(|t| t.0))
            .collect();
        let mut from_answer: Vec<Duration> = r
            .conns
            .iter()
            .filter_map(|c| c.closed.map(|t| t.1))
            .collect();
        took.sort();
        from_sent.sort();
        from_answer.sort();
        let span = |v: &[Duration]| {
            format!(
                "first {:?}, median {:?}, last {:?}",
                v.first().copied().unwrap_or_default(),
                v.get(v.len() / 2).copied().unwrap_or_default(),
                v.last().copied().unwrap_or_default()
            )
        };
        let (rss_open, closed_by_then) = r.rss_open;
        let before = rss[rss.len() - 1];
        eprintln!(
            "[idle keep-alive, round {round}] {IDLE_CONNS} connections opened in {:?} (request max {:?}), idle timeout {idle_timeout:?}: {} closed, {open} still open, {} failed; close after the request: {}; after the answer: {}; RSS {before} kB -> {rss_open} kB with all open ({} B per connection; {closed_by_then} had closed by then) -> {after} kB",
            r.opened_in,
            took.last().copied().unwrap_or_default(),
            from_sent.len(),
            r.failures.len(),
            span(&from_sent),
            span(&from_answer),
            rss_open.saturating_sub(before) * 1024 / IDLE_CONNS as u64,
        );
        rss.extend([rss_open, after]);
        assert!(
            r.failures.is_empty(),
            "{} failed: {:?}",
            r.failures.len(),
            &r.failures[..r.failures.len().min(5)]
        );
        assert_eq!(open, 0, "every idle connection is closed");
        assert_eq!(from_sent.len(), IDLE_CONNS);
        // Not before the idle timeout...
        let first = from_sent.first().copied().unwrap_or_default();
        assert!(
            first + MS_ROUNDING >= idle_timeout,
            "closed {first:?} after the request, idle timeout {idle_timeout:?}"
        );
        // ...and soon after it.
        let last = from_answer.last().copied().unwrap_or_default();
        assert!(
            last <= idle_timeout + SLACK,
            "closed {last:?} after the answer, idle timeout {idle_timeout:?}"
        );
        let grown = rss_open.saturating_sub(before);
        assert!(
            grown * 1024 <= CONN_BYTES_MAX * IDLE_CONNS as u64,
            "RSS grew by {grown} kB for {IDLE_CONNS} idle connections"
        );
    }
    // The memory of a round's connections is reused by the next: the
    // allocator keeps some of it (RSS does not fall back), but a second
    // round costs much less than the first. Measured: the second costs
    // about 40% of the first, later rounds level off.
    let first_round = rss[1].saturating_sub(rss[0]);
    let second_round = rss[3].saturating_sub(rss[1]);
    assert!(
        second_round * 4 < first_round * 3,
        "RSS with all open grew {first_round} kB in round 1, then {second_round} kB more in round 2: kept per connection?"
    );
    let shed = sale.shed("idle_timeout").await;
    eprintln!("[idle keep-alive] shed idle_timeout {shed}, RSS over the rounds {rss:?} kB");
    assert!(
        shed >= (IDLE_CONNS * IDLE_ROUNDS) as u64,
        "shed idle_timeout {shed}"
    );
    buyer.finish("idle keep-alive").await;
}
