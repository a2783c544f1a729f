//! Scratch databases for the MySQL tests: each test gets a database of its
//! own, so tests run in parallel without seeing each other's rows, and the
//! database is dropped when its guard is, also when the test panics.
//!
//! The server comes from `SECKILL_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`, the database `scripts/services.sh up`
//! provides); the account must be allowed to create and drop databases.
//! Without a server the tests fail with a message saying so, never skip.

use crate::contract::ContractError;
use crate::sql::rows::DbRow;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const URL_ENV: &str = "SECKILL_MYSQL_URL";
const URL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";
/// Scratch database names: `seckill_t_<unix seconds>_<pid>_<sequence>`.
const PREFIX: &str = "seckill_t_";
/// A scratch database older than this is a leftover of a killed run; a
/// younger one may belong to a run in progress in another process.
const STALE_AFTER_S: u64 = 3_600;
/// Bounds connecting, so an address that swallows packets fails the test
/// instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A database that exists until this guard is dropped.
#[derive(Debug)]
pub(super) struct ScratchDb {
    name: String,
    admin: MySqlConnectOptions,
}

impl ScratchDb {
    /// Creates a fresh, empty database; the first call in a process also
    /// drops stale leftovers of earlier runs.
    pub(super) async fn create() -> Result<ScratchDb, ContractError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        static CLEANED: AtomicBool = AtomicBool::new(false);
        let admin = admin_options()?;
        let mut conn = admin_connection(&admin).await?;
        if !CLEANED.swap(true, Ordering::Relaxed) {
            drop_stale(&mut conn).await?;
        }
        let name = format!(
            "{PREFIX}{}_{}_{}",
            unix_s(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        conn.execute(format!("CREATE DATABASE `{name}`").as_str())
            .await?;
        conn.close().await?;
        Ok(ScratchDb { name, admin })
    }

    /// Options for connecting to this database.
    pub(super) fn options(&self) -> MySqlConnectOptions {
        self.admin.clone().database(&self.name)
    }
}

impl Drop for ScratchDb {
    /// Drop cannot await, and the test's runtime may be unwinding; a thread
    /// with a runtime of its own does the work and is waited for, so the
    /// database is gone when the test ends.
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin.clone());
        let worker = std::thread::spawn(move || -> Result<(), ContractError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = admin_connection(&admin).await?;
                drop_database(&mut conn, &name).await?;
                conn.close().await?;
                Ok(())
            })
        });
        match worker.join() {
            Ok(Ok(())) => {}
            // Not a panic: a test that already failed must report its own
            // error, and a later run drops the leftover once it is stale.
            Ok(Err(e)) => eprintln!("could not drop scratch database {}: {e}", self.name),
            Err(_) => eprintln!("dropping scratch database {} panicked", self.name),
        }
    }
}

fn admin_options() -> Result<MySqlConnectOptions, ContractError> {
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| URL_DEFAULT.to_owned());
    MySqlConnectOptions::from_str(&url)
        .map_err(|e| format!("{URL_ENV} is not a MySQL url: {e}").into())
}

async fn admin_connection(admin: &MySqlConnectOptions) -> Result<MySqlConnection, ContractError> {
    let server = format!("{}:{}", admin.get_host(), admin.get_port());
    let failed = |e: &dyn std::fmt::Display| -> ContractError {
        format!(
            "MySQL at {server} is required for the MySQL store tests \
             (start it with scripts/services.sh up, or point {URL_ENV} at one): {e}"
        )
        .into()
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, admin.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(failed(&e)),
        Err(e) => Err(failed(&e)),
    }
}

/// Ends the sessions still using the database (a test that panicked inside a
/// transaction leaves one holding locks), then drops it.
async fn drop_database(conn: &mut MySqlConnection, name: &str) -> Result<(), ContractError> {
    let sessions = sqlx::query(
        "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
         WHERE db = ? AND id <> CONNECTION_ID()",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    for session in &sessions {
        // A session may end by itself meanwhile; what counts is the DROP.
        let _ = conn
            .execute(format!("KILL {}", session.int("id")?).as_str())
            .await;
    }
    conn.execute(format!("DROP DATABASE IF EXISTS `{name}`").as_str())
        .await?;
    Ok(())
}

async fn drop_stale(conn: &mut MySqlConnection) -> Result<(), ContractError> {
    let found = sqlx::query(
        "SELECT schema_name AS name FROM information_schema.schemata \
         WHERE schema_name LIKE 'seckill\\_t\\_%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let now = unix_s();
    for row in &found {
        let name = row.text("name")?;
        let created_s = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        // Names that do not parse are not ours to drop.
        if created_s.is_some_and(|s| now.saturating_sub(s) > STALE_AFTER_S) {
            drop_database(conn, &name).await?;
        }
    }
    Ok(())
}
