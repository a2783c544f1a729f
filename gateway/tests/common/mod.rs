//! Test harness: starts the real `seckill` binary on a free port with its
//! own data directory, and talks HTTP to it.
#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod expiry;
pub mod lb;
pub mod prod;
pub mod queue;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const ADMIN_TOKEN: &str = "admin-test-token-0123456789";

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after epoch")
        .as_millis() as u64
}

/// A running `seckill serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

impl Server {
    /// Starts the binary on `data_dir` and waits for its "listening" line.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        Self::start_with(data_dir, extra_args, &[])
    }

    /// Like `start`, with extra environment variables (production tests).
    pub fn start_with(data_dir: &Path, extra_args: &[&str], envs: &[(&str, String)]) -> Server {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-demo",
            "--data-dir",
        ];
        let dir = data_dir.to_str().expect("utf-8 path");
        args.push(dir);
        args.extend_from_slice(extra_args);
        let (child, base) = spawn_ready(&args, envs, "seckill listening on ", data_dir);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .build(connector);
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            client,
        }
    }

    /// Uses a new connection per request. For tests whose requests the
    /// server answers without reading the body (413, 401 before the body):
    /// it then closes the connection, and a pooled client could race that
    /// close with its next request.
    pub fn without_connection_reuse(mut self) -> Self {
        self.client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new());
        self
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_call(method, path, token, content_type, body)
            .await
            .expect("request failed")
    }

    /// Like `call`, but a refused or cut connection is `None` (crash tests).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Option<Reply> {
        self.try_call_with(method, path, token, content_type, &[], body)
            .await
    }

    /// `GET` with extra headers.
    pub async fn get_with(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_call_with("GET", path, token, None, headers, Bytes::new())
            .await
            .expect("request failed")
    }

    /// Like `try_call`, with extra headers.
    pub async fn try_call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Option<Reply> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("no answer within 30 s")
            .ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call("GET", path, token, None, Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(
            "POST",
            path,
            token,
            Some("application/json"),
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.post_json(path, Some(ADMIN_TOKEN), body).await
    }

    /// Creates a campaign that is live now unless the spec says otherwise.
    pub async fn create_campaign(&self, spec: Value) -> Value {
        let now = now_ms();
        let mut full = json!({
            "title": "Test item",
            "price_cents": 1000,
            "stock": 10,
            "starts_at_ms": now - 1000,
            "ends_at_ms": now + 3_600_000,
        });
        for (k, v) in spec.as_object().expect("object spec") {
            full[k] = v.clone();
        }
        let r = self.admin_post("/admin/v1/campaigns", &full).await;
        assert_eq!(
            r.status,
            201,
            "create campaign: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Buyer tokens for `users`, issued by the admin endpoint (10,000 a call).
    pub async fn tokens(&self, users: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(10_000) {
            let r = self
                .admin_post(
                    "/admin/v1/tokens",
                    &json!({ "user_ids": chunk, "ttl_s": 3600 }),
                )
                .await;
            assert_eq!(
                r.status,
                200,
                "tokens: {}",
                String::from_utf8_lossy(&r.body)
            );
            let map = r.json()["tokens"].clone();
            out.extend(
                chunk
                    .iter()
                    .map(|u| map[u].as_str().expect("token for user").to_string()),
            );
        }
        out
    }

    pub async fn grab(&self, campaign: &str, token: &str) -> Reply {
        self.try_grab(campaign, token)
            .await
            .expect("grab request failed")
    }

    pub async fn try_grab(&self, campaign: &str, token: &str) -> Option<Reply> {
        self.try_call(
            "POST",
            &format!("/api/v1/campaigns/{campaign}/grab"),
            Some(token),
            Some("application/json"),
            "{}",
        )
        .await
    }

    pub async fn stats(&self, campaign: &str) -> Value {
        let r = self
            .get(
                &format!("/admin/v1/campaigns/{campaign}/stats"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(r.status, 200, "stats: {}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Polls stats until `orders_persisted` reaches `want` (bounded wait).
    pub async fn wait_persisted(&self, campaign: &str, want: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.stats(campaign).await;
            if s["orders_persisted"].as_u64() == Some(want) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        send_signal(pid, "TERM");
        self.terminate_wait()
    }

    /// Waits (bounded) for the process to exit after a signal.
    pub fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Spawns `seckill <args>` and waits for the stdout line starting with
/// `ready`; returns the child and the rest of that line. The child's stderr
/// goes to `<log_base>.stderr.log`, shown if it dies before being ready.
pub fn spawn_ready(
    args: &[&str],
    envs: &[(&str, String)],
    ready: &str,
    log_base: &Path,
) -> (Child, String) {
    let log = log_base.with_extension("stderr.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("stderr log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill"));
    cmd.args(args)
        .env("SECKILL_JWT_SECRET", JWT_SECRET)
        .env("SECKILL_ADMIN_TOKEN", ADMIN_TOKEN)
        // Tests hammer from one machine: rate limits off unless a test
        // passes `SECKILL_LIMITS=on` in its `envs` (set after this).
        .env("SECKILL_LIMITS", "off")
        .env(
            "SECKILL_LOG",
            std::env::var("SECKILL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn seckill");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut rest = None;
    // The binary prints the line once it is ready; EOF means it died.
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if let Some(r) = line.strip_prefix(ready) {
            rest = Some(r.trim().to_string());
            break;
        }
    }
    let rest = rest.unwrap_or_else(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("seckill {args:?} exited before it was ready; stderr:\n{text}")
    });
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, rest)
}

/// A background `seckill` process other than a gateway (a writer), killed
/// when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with the `kill` tool: the workspace forbids `unsafe`,
/// which calling `libc::kill` would need.
pub fn send_signal(pid: i32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Opens the server's SQLite store read-only, to check rows directly.
pub async fn sqlite(data_dir: &Path) -> sqlx::SqlitePool {
    use sqlx::sqlite::SqliteConnectOptions;
    let opts = SqliteConnectOptions::new()
        .filename(data_dir.join("orders.db"))
        .read_only(true);
    sqlx::SqlitePool::connect_with(opts)
        .await
        .expect("open sqlite")
}

pub fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `seckill serve` on a free loopback port over `data_dir`, not started:
/// for tests that watch the process refuse to start or fight for a lock.
pub fn serve_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--data-dir",
    ])
    .arg(data_dir);
    cmd
}
