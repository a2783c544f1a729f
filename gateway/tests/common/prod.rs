//! Helpers of the production-profile tests: a fresh MySQL database, Kafka
//! topic and consumer group per test, and processes started on them.

use super::{spawn_ready, Proc, Server};
use std::path::Path;
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
