//! The production wiring: `RedisLedger` (one server or a cluster),
//! `KafkaLog`, `MysqlStore`; and the two other production processes,
//! `seckill writer` (a `KafkaWriter` in a consumer group) and
//! `seckill reconcile` (ledger against durable records).
//!
//! Gateways are stateless and interchangeable: they share stock through
//! Redis, campaigns through MySQL (re-read every 250 ms so one operator
//! call reaches every gateway), and the buyer-token secret and admin token
//! through the environment, which is therefore required here.

use crate::app::App;
use crate::auth::Auth;
use crate::config::{Production, RedisTarget, ServeConfig};
use anyhow::{bail, Context};
use engine::ports::{LogRecord, OrderLog, OrderStore, RoomStore, SharedState, StockLedger};
use order_log::{KafkaLog, KafkaLogConfig, KafkaSource, KafkaSourceConfig, Settled};
use order_store::{KafkaWriter, KafkaWriterConfig, KafkaWriterStats, MysqlStore};
use shared_state::{RedisRoomStore, RedisSharedState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use stock_ledger::{RedisLedger, RedisLedgerConfig};
use tokio::task::JoinHandle;

/// How often gateways re-read campaigns from the store: an operator's
/// pause or stop reaches every gateway within about this (one small query
/// per gateway each time).
pub const CAMPAIGN_SYNC_MS: u64 = 250;
/// A gateway whose campaign view is older than this (the store unreachable
/// for a few re-reads) stops selling until it reads them again, so an
/// operator's pause reaches every sale within this bound.
pub const CAMPAIGN_VIEW_MAX_AGE_MS: u64 = 3_000;

/// A production gateway and the background tasks it must stop.
#[derive(Debug)]
pub struct ProductionGateway {
    pub app: Arc<App>,
    pub admin_token: String,
    kafka: Arc<KafkaLog>,
    background: Vec<JoinHandle<()>>,
}

/// The shared ledger, and its flag refresher.
pub async fn connect_ledger(
    p: &Production,
    buckets: u32,
) -> anyhow::Result<(Arc<dyn StockLedger>, JoinHandle<()>)> {
    let cfg = RedisLedgerConfig {
        prefix: p.redis_key_prefix.clone(),
        buckets,
    };
    let every = Duration::from_millis(p.refresh_ms);
    Ok(match &p.redis {
        RedisTarget::Single(url) => {
            let conn = redis::Client::open(url.as_str())
                .with_context(|| format!("redis url {url}"))?
                .get_connection_manager()
                .await
                .with_context(|| format!("connecting to redis at {url}"))?;
            let ledger = Arc::new(RedisLedger::new(conn, cfg));
            let refresher = ledger.spawn_refresher(every);
            (ledger as Arc<dyn StockLedger>, refresher)
        }
        RedisTarget::Cluster(nodes) => {
            let conn = redis::cluster::ClusterClient::new(nodes.clone())
                .context("redis cluster urls")?
                .get_async_connection()
                .await
                .with_context(|| format!("connecting to the redis cluster {nodes:?}"))?;
            let ledger = Arc::new(RedisLedger::new(conn, cfg));
            let refresher = ledger.spawn_refresher(every);
            (ledger as Arc<dyn StockLedger>, refresher)
        }
    })
}

/// The shared state (single-use marks) and the waiting rooms, on the
/// ledger's Redis, under its key prefix.
pub async fn connect_shared(
    p: &Production,
) -> anyhow::Result<(Arc<dyn SharedState>, Arc<dyn RoomStore>)> {
    Ok(match &p.redis {
        RedisTarget::Single(url) => {
            let conn = redis::Client::open(url.as_str())
                .with_context(|| format!("redis url {url}"))?
                .get_connection_manager()
                .await
                .with_context(|| format!("connecting to redis at {url}"))?;
            (
                Arc::new(RedisSharedState::new(
                    conn.clone(),
                    p.redis_key_prefix.clone(),
                )),
                Arc::new(RedisRoomStore::new(conn, p.redis_key_prefix.clone())),
            )
        }
        RedisTarget::Cluster(nodes) => {
            let conn = redis::cluster::ClusterClient::new(nodes.clone())
                .context("redis cluster urls")?
                .get_async_connection()
                .await
                .with_context(|| format!("connecting to the redis cluster {nodes:?}"))?;
            (
                Arc::new(RedisSharedState::new(
                    conn.clone(),
                    p.redis_key_prefix.clone(),
                )),
                Arc::new(RedisRoomStore::new(conn, p.redis_key_prefix.clone())),
            )
        }
    })
}

/// Connects to MySQL, retrying a few times: at a cold start the database
/// may come up after us, and processes starting together race on the
/// first migration.
pub async fn connect_store(p: &Production) -> anyhow::Result<Arc<dyn OrderStore>> {
    let mut last = None;
    for attempt in 0..STORE_CONNECT_TRIES {
        match MysqlStore::connect(&p.mysql_url, p.mysql_pool_max).await {
            Ok(s) => return Ok(Arc::new(s)),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "MySQL order store not ready");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(250 * (attempt + 1))).await;
            }
        }
    }
    match last {
        Some(e) => Err(anyhow::Error::new(e).context("connecting to the MySQL order store")),
        None => bail!("no attempt to connect to MySQL was made"),
    }
}

/// Attempts to reach MySQL before giving up (about 14 s in all).
const STORE_CONNECT_TRIES: u64 = 10;

fn required_env(name: &str, value: &Option<String>) -> anyhow::Result<String> {
    match value {
        Some(v) => Ok(v.clone()),
        None => bail!("{name} must be set in production: every gateway must share it"),
    }
}

impl ProductionGateway {
    pub async fn open(cfg: &ServeConfig, p: &Production) -> anyhow::Result<Self> {
        // A public-key gateway needs no JWT secret (its funnel secret is
        // then required by the config).
        let jwt = if cfg.auth.algorithm == "HS256" {
            required_env("SECKILL_JWT_SECRET", &cfg.jwt_secret)?
        } else {
            cfg.jwt_secret.clone().unwrap_or_default()
        };
        let admin_token = required_env("SECKILL_ADMIN_TOKEN", &cfg.admin_token)?;
        let auth = Auth::from_settings(&cfg.auth, Some(jwt.as_bytes()), admin_token.clone())
            .map_err(anyhow::Error::msg)?;
        let store = connect_store(p).await?;
        let (ledger, refresher) = connect_ledger(p, p.redis_buckets).await?;
        let (shared, room) = connect_shared(p).await?;

        // The log reports late outcomes to the app, which exists only after
        // the log: a cell closes the loop without a reference cycle.
        let cell: Arc<OnceLock<Weak<App>>> = Arc::new(OnceLock::new());
        let kafka = Arc::new(
            KafkaLog::connect(kafka_log_config(p), on_settled(Arc::clone(&cell)))
                .await
                .context("connecting to kafka")?,
        );
        let app = Arc::new(App::assemble(
            cfg,
            crate::app::Ports {
                ledger,
                log: Arc::clone(&kafka) as Arc<dyn OrderLog>,
                store: Arc::clone(&store),
                shared,
                room,
            },
            auth,
            &jwt,
            crate::app::Profile {
                admin_token_generated: false,
                shared_ledger: true,
                view_max_age_ms: Some(CAMPAIGN_VIEW_MAX_AGE_MS),
            },
        ));
        let _ = cell.set(Arc::downgrade(&app));
        let upkeep = crate::limits::spawn_upkeep(&app);
        sync_campaigns(&app).await.context("loading campaigns")?;
        let rooms = crate::usecase::queue::spawn_ticker(&app);
        let sync = {
            let weak = Arc::downgrade(&app);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(CAMPAIGN_SYNC_MS));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(app) = weak.upgrade() else { return };
                    if let Err(e) = sync_campaigns(&app).await {
                        tracing::warn!(error = %e, "re-reading campaigns failed");
                    }
                }
            })
        };
        Ok(Self {
            app,
            admin_token,
            kafka,
            background: vec![refresher, sync, upkeep, rooms],
        })
    }

    /// Waits for grabs in flight, then gives the producer the grace period
    /// to deliver what it holds.
    pub async fn shutdown(self) {
        self.app.tasks.close();
        self.app.tasks.wait().await;
        let grace = Duration::from_millis(self.app.limits.shutdown_grace_ms);
        if let Err(e) = self.kafka.flush(grace).await {
            tracing::error!(error = %e, "kafka flush at shutdown");
        }
        for t in self.background {
            t.abort();
        }
    }
}

fn kafka_log_config(p: &Production) -> KafkaLogConfig {
    KafkaLogConfig {
        partitions: p.kafka_partitions,
        delivery_wait_ms: p.kafka_delivery_wait_ms,
        message_timeout_ms: p.kafka_message_timeout_ms,
        linger_ms: p.kafka_linger_ms,
        ..KafkaLogConfig::new(p.kafka_brokers.clone(), p.kafka_topic.clone())
    }
}

/// Late outcomes of appends answered "unknown": a delivered record becomes
/// a known order; a definite failure returns its unit; a still-unknown one
/// keeps its unit held for reconciliation.
fn on_settled(cell: Arc<OnceLock<Weak<App>>>) -> order_log::OnSettled {
    Arc::new(move |record: LogRecord, settled: Settled| {
        let Some(app) = cell.get().and_then(Weak::upgrade) else {
            return;
        };
        let LogRecord::Order(o) = record;
        match settled {
            Settled::Delivered => {
                if let Some(live) = app.registry.get(&o.campaign_id) {
                    live.counters.logged.fetch_add(1, Ordering::Relaxed);
                }
                app.orders.insert_queued(o);
            }
            Settled::Failed(why) => {
                tracing::warn!(order = %o.order_id, %why, "late append failure; returning the unit");
                tokio::spawn(async move {
                    if let Err(e) = app.ledger.release(&o.campaign_id, &o.user_id, o.n).await {
                        tracing::error!(order = %o.order_id, error = %e, "release failed; reconcile");
                    }
                });
            }
            Settled::Unknown(why) => {
                tracing::error!(order = %o.order_id, %why, "append outcome stays unknown; reconcile settles it");
            }
        }
    })
}

/// Adds campaigns created elsewhere and applies control changes; on
/// success the view counts as fresh as of the read's start.
async fn sync_campaigns(app: &App) -> anyhow::Result<()> {
    let started = crate::app::mono_ms();
    for c in app.store.campaigns().await? {
        match app.registry.get(&c.id) {
            Some(live) if *live.get() != c => live.set(c),
            Some(_) => {}
            None => {
                if let Err(e) = app.registry.insert(c) {
                    // Readiness reports it (`Registry::overflowed`).
                    tracing::error!(error = %e, "a campaign is not served by this gateway");
                }
            }
        }
    }
    app.registry.mark_synced(started);
    Ok(())
}

/// `seckill sweeper`: expires unpaid orders and releases their units
/// (`usecase::expiry`) until `shutdown`. `SECKILL_SWEEPER_CRASH`
/// (`after_expire`, `after_release`) makes it stop dead at that point of a
/// sweep, for the crash tests.
pub async fn run_sweeper(
    p: &Production,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<crate::usecase::expiry::SweepReport> {
    use crate::usecase::expiry::{self, CrashPoint, Sweeper};
    let crash = CrashPoint::from_env()?;
    let store = connect_store(p).await?;
    let (ledger, refresher) = connect_ledger(p, p.redis_buckets).await?;
    let sweeper = Sweeper {
        crash,
        ..Sweeper::new(store, ledger)
    };
    let total = expiry::run(sweeper, Arc::new(crate::clock::SystemClock), shutdown).await;
    refresher.abort();
    Ok(total)
}

/// `seckill writer`: drains the topic into MySQL until `shutdown`.
pub async fn run_writer(
    cfg: &ServeConfig,
    p: &Production,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<KafkaWriterStats> {
    let store = connect_store(p).await?;
    let source = KafkaSource::connect(KafkaSourceConfig {
        dead_letter_topic: p.kafka_dead_letter_topic.clone(),
        partitions: p.kafka_partitions,
        session_timeout_ms: p.kafka_session_timeout_ms,
        ..KafkaSourceConfig::new(
            p.kafka_brokers.clone(),
            p.kafka_topic.clone(),
            p.kafka_group_id.clone(),
        )
    })
    .await
    .context("joining the writers' consumer group")?;
    let writer = KafkaWriter::new(
        store,
        source,
        KafkaWriterConfig {
            batch: cfg.writer.clone(),
            tries_max: 3,
            topic: p.kafka_topic.clone(),
        },
    );
    Ok(writer.run(shutdown).await?)
}
