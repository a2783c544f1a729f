//! Helpers of the production-profile tests: a fresh MySQL database, Kafka
//! topic and consumer group per test, and processes started on them.

use super::{spawn_ready, Proc, Server};
use engine::ports::{LogRecord, OrderLog};
use engine::{Campaign, CampaignId, Control, OrderRecord, UserId};
use order_log::{KafkaLog, KafkaLogConfig};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/production.toml");

/// A fresh database, topic and group; the database is dropped at the end.
pub struct ProdEnv {
    pub db: String,
    pub envs: Vec<(&'static str, String)>,
}

impl ProdEnv {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!("{tag}_{}_{nanos}", std::process::id());
        let db = format!("seckill_p_{id}");
        mysql(&format!("CREATE DATABASE {db}"));
        let base = std::env::var("SECKILL_MYSQL_BASE")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        ProdEnv {
            envs: vec![
                ("SECKILL_MYSQL_URL", format!("{base}/{db}")),
                ("SECKILL_KAFKA_TOPIC", format!("seckill-test-{id}")),
                ("SECKILL_KAFKA_GROUP", format!("seckill-test-writers-{id}")),
            ],
            db,
        }
    }

    /// A fresh environment on a private Redis (for tests that lose its
    /// data), with a short producer timeout so reconcile's quiet period
    /// stays short.
    pub fn on_private_redis(tag: &str) -> (PrivateRedis, Self) {
        let redis = PrivateRedis::start();
        let mut env = ProdEnv::new(tag);
        env.envs.push(("SECKILL_REDIS_URL", redis.url()));
        env.envs
            .push(("SECKILL_KAFKA_MESSAGE_TIMEOUT_MS", "4000".into()));
        (redis, env)
    }

    pub fn gateway(&self, dir: &Path, name: &str) -> Server {
        Server::start_with(&dir.join(name), &["--config", CONFIG], &self.envs)
    }

    pub fn writer(&self, dir: &Path, name: &str) -> Proc {
        self.writer_with(dir, name, &[])
    }

    /// A writer with extra flags (e.g. a slower pace).
    pub fn writer_with(&self, dir: &Path, name: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["writer", "--config", CONFIG];
        args.extend_from_slice(extra);
        let (child, _) = spawn_ready(
            &args,
            &self.envs,
            "seckill writer draining",
            &dir.join(name),
        );
        Proc(child)
    }

    pub fn topic(&self) -> &str {
        &self.envs[1].1
    }

    /// (rows, distinct order ids, the campaign's guarded sold counter).
    pub async fn counts(&self, campaign: &str) -> (i64, i64, i64) {
        let pool = sqlx::MySqlPool::connect(&self.envs[0].1)
            .await
            .expect("mysql");
        let (rows, distinct): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT order_id) FROM orders WHERE campaign_id = ?",
        )
        .bind(campaign)
        .fetch_one(&pool)
        .await
        .expect("count");
        let sold: i64 = sqlx::query_scalar("SELECT sold FROM campaigns WHERE id = ?")
            .bind(campaign)
            .fetch_one(&pool)
            .await
            .expect("sold");
        pool.close().await;
        (rows, distinct, sold)
    }

    pub async fn rows(&self, campaign: &str) -> Vec<(String, String)> {
        let url = &self.envs[0].1;
        let pool = sqlx::MySqlPool::connect(url).await.expect("mysql");
        let rows = sqlx::query_as(
            "SELECT CAST(order_id AS CHAR), CAST(user_id AS CHAR) FROM orders WHERE campaign_id = ?",
        )
            .bind(campaign)
            .fetch_all(&pool)
            .await
            .expect("query");
        pool.close().await;
        rows
    }
}

impl Drop for ProdEnv {
    fn drop(&mut self) {
        mysql(&format!("DROP DATABASE IF EXISTS {}", self.db));
    }
}

pub fn mysql(sql: &str) {
    let status = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
        .status()
        .expect("run the mariadb client (scripts/services.sh up starts the server)");
    assert!(status.success(), "mariadb: {sql}");
}

/// Polls `f` until it returns true, for at most `secs` seconds.
pub async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A private Redis server on a free port, killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    proc: Option<super::Proc>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = PrivateRedis { port, proc: None };
        r.restart_empty();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would) and starts an empty one.
    pub fn restart_empty(&mut self) {
        self.stop();
        self.start_empty();
    }

    pub fn stop(&mut self) {
        self.proc = None; // Proc's drop kills -9 and reaps
    }

    pub fn start_empty(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh needs it too)");
        self.proc = Some(super::Proc(child));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Grabs once per user through alternating gateways; returns the acked
/// (user, order id) pairs and the count of each (status, code).
pub async fn grab_all(
    gateways: &[&super::Server],
    campaign: &str,
    tokens: &[String],
    users: std::ops::Range<usize>,
) -> (
    Vec<(usize, String)>,
    std::collections::HashMap<(u16, String), usize>,
) {
    let mut acked = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for u in users {
        let r = gateways[u % gateways.len()]
            .grab(campaign, &tokens[u])
            .await;
        if r.status == 202 {
            acked.push((
                u,
                r.json()["order_id"].as_str().expect("order id").to_string(),
            ));
        }
        *seen.entry((r.status, r.code())).or_insert(0) += 1;
    }
    (acked, seen)
}

/// An operator's kill-switch call (`pause` or `resume`) that must succeed.
pub async fn operator(g: &super::Server, id: &str, action: &str) {
    let r = g
        .admin_post(&format!("/admin/v1/campaigns/{id}/{action}"), &json!({}))
        .await;
    assert_eq!(
        r.status,
        200,
        "{action}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Waits until a gateway sells again (it learns a resume and restored stock
/// within its refresh periods); the probe buyer takes one unit.
pub async fn resumed_sale(g: &super::Server, id: &str, probe: &str, secs: u64) {
    assert!(
        eventually(secs, async || g.grab(id, probe).await.status == 202).await,
        "selling did not resume within {secs} s"
    );
}

/// Runs `seckill <args>` with the test's environment; (exit code, stdout+stderr).
pub fn run_seckill(env: &ProdEnv, args: &[&str]) -> (i32, String) {
    run_seckill_with(&env.envs, args)
}

/// `run_seckill` with the environment given directly (for a blocking task).
pub fn run_seckill_with(envs: &[(&'static str, String)], args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seckill"));
    // Limits off unless `envs` says `SECKILL_LIMITS=on` (see common::spawn).
    cmd.args(args)
        .env("SECKILL_LOG", "warn")
        .env("SECKILL_LIMITS", "off");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run seckill");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The shared Redis the production config points at.
pub fn redis_url() -> String {
    std::env::var("SECKILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

pub fn brokers() -> String {
    std::env::var("SECKILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Creates the campaign through a gateway (so it is in MySQL) and returns
/// the engine's view of it, to build order records the same way.
pub async fn campaign(env: &ProdEnv, dir: &std::path::Path, id: &str, stock: u64) -> Campaign {
    let g = env.gateway(dir, "g1");
    let v = g.create_campaign(json!({ "id": id, "stock": stock })).await;
    let field = |k: &str| v[k].as_u64().expect("numeric field");
    Campaign {
        id: CampaignId::parse(id).expect("id"),
        title: v["title"].as_str().expect("title").to_string(),
        price_cents: field("price_cents"),
        stock_total: stock,
        starts_at_ms: field("starts_at_ms"),
        ends_at_ms: field("ends_at_ms"),
        per_user_limit: 1,
        quiz: false,
        quiz_questions: 0,
        hidden_path: false,
        payment_window_s: 900,
        load_test: false,
        control: Control::Active,
        stock_buckets: None,
        waiting_room: None,
    }
}

/// Appends one order per user straight to the topic (the gateway's job,
/// done here directly so the test is about the writer alone).
pub async fn produce(env: &ProdEnv, c: &Campaign, names: &[String]) {
    let cfg = KafkaLogConfig::new(brokers(), env.topic());
    let log = Arc::new(
        KafkaLog::connect(cfg, Arc::new(|_, _| {}))
            .await
            .expect("kafka"),
    );
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(100))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (log, c) = (Arc::clone(&log), c.clone());
        tasks.push(tokio::spawn(async move {
            for u in chunk {
                let rec = OrderRecord::new(&c, UserId::parse(&u).expect("user"), 1, c.starts_at_ms);
                log.append(&LogRecord::Order(rec))
                    .await
                    .expect("acknowledged append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer task");
    }
}

/// A gauge or counter of a gateway's `/metrics` (unlabelled series).
pub async fn metric(g: &Server, name: &str) -> Option<f64> {
    let r = g.get("/metrics", None).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
