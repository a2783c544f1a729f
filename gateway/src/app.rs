//! The application state shared by every request, and the one place where
//! concrete backends are chosen and wired (embedded default: `MemLedger`,
//! `FileLog`, `SqliteStore`, in-process `FileWriter`).

use crate::auth::Auth;
use crate::config::{Limits, ServeConfig};
use crate::orders::OrderIndex;
use crate::registry::Registry;
use anyhow::{bail, Context};
use engine::ports::{Hold, LedgerImage, LogRecord, OrderLog, OrderStore, StockLedger};
use engine::{CampaignId, CampaignSpec, OrderId, OrderStatus};
use order_log::{FileLog, FileLogConfig};
use order_store::{FileWriter, SqliteStore, FILE_LOG_SOURCE};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use stock_ledger::{MemLedger, MemLedgerConfig};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// The id of the campaign created for newcomers.
pub const DEMO_CAMPAIGN: &str = "demo";

/// Milliseconds since the Unix epoch. The only wall-clock read of the
/// request path; the engine receives the value.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds on a monotonic clock since the process's first call (never
/// 0 once called): for ages and deadlines, which must not jump with the
/// wall clock.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// Shared state of the gateway.
#[derive(Debug)]
pub struct App {
    /// The one clock handlers read (see `clock`).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Grab refusals per funnel stage and code.
    pub funnel: crate::funnel::FunnelCounters,
    /// Rate limits per address, buyer, gateway and campaign.
    pub rate: crate::limits::RateLimits,
    /// Requests per campaign, the hot ones and their admission queues.
    pub hot: crate::hot::HotItems,
    pub auth: Auth,
    pub registry: Registry,
    pub orders: OrderIndex,
    /// The ledger, metered (`ledger_calls` counts what reaches its backend).
    pub ledger: Arc<dyn StockLedger>,
    pub ledger_calls: Arc<crate::metered::LedgerCalls>,
    pub log: Arc<dyn OrderLog>,
    pub store: Arc<dyn OrderStore>,
    /// State every gateway must see the same (single-use quiz tokens).
    pub shared: Arc<dyn engine::ports::SharedState>,
    /// Where the waiting rooms' queues live (shared by gateways in production).
    pub room: Arc<dyn engine::ports::RoomStore>,
    /// This gateway's copies of the waiting rooms, and their keys.
    pub rooms: crate::usecase::queue::Rooms,
    /// The quiz and the hidden grab path (keys, settings, bank index).
    pub gate: crate::quiz::Gate,
    /// Caps grabs in flight (see `Limits::grabs_inflight_max`).
    pub grab_permits: Arc<Semaphore>,
    /// Grab critical sections run as tracked tasks so a client hanging up
    /// cannot cancel them between reserve and append, and shutdown waits.
    pub tasks: TaskTracker,
    pub limits: Limits,
    pub admin_token_generated: bool,
    /// Where preload writes the CDN copy of each item page and its assets.
    pub cdn_dir: std::path::PathBuf,
    /// False once the order writer has stopped on an error: orders then stay
    /// queued (durable in the log) until a restart, and `/readyz` says so.
    pub writer_running: std::sync::atomic::AtomicBool,
    /// True when many gateways share the ledger (production): this
    /// gateway's own counters then say nothing about campaign-wide sales.
    pub shared_ledger: bool,
    /// Production: the oldest campaign view this gateway still sells on
    /// (see `Registry::view_age_ms`); `None` when this process is the only
    /// writer of its campaigns (embedded).
    pub view_max_age_ms: Option<u64>,
    /// What this process's expiry sweeper did (embedded; production
    /// sweepers are `seckill sweeper` processes).
    pub expiry: Arc<crate::usecase::expiry::ExpiryCounters>,
}

/// The concrete backends one profile wires into the app.
#[allow(missing_debug_implementations)]
pub struct Ports {
    /// The ledger as built; `App::assemble` meters it.
    pub ledger: Arc<dyn StockLedger>,
    pub log: Arc<dyn OrderLog>,
    pub store: Arc<dyn OrderStore>,
    pub shared: Arc<dyn engine::ports::SharedState>,
    pub room: Arc<dyn engine::ports::RoomStore>,
}

/// How a profile's gateway differs from another's.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The admin token was generated at start (no configured one).
    pub admin_token_generated: bool,
    /// Many gateways share the ledger (see `App::shared_ledger`).
    pub shared_ledger: bool,
    /// See `App::view_max_age_ms`.
    pub view_max_age_ms: Option<u64>,
}

impl App {
    /// The one constructor of the app, for every profile: `secret` keys
    /// the quiz and the hidden path when no `funnel_secret` is configured.
    pub fn assemble(
        cfg: &crate::config::ServeConfig,
        ports: Ports,
        auth: Auth,
        secret: &str,
        profile: Profile,
    ) -> Self {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let (ledger, ledger_calls) = crate::metered::MeteredLedger::new(ports.ledger);
        Self {
            rate: crate::limits::RateLimits::new(&cfg.rate_limits, Arc::clone(&clock)),
            clock,
            hot: crate::hot::HotItems::new(&cfg.hot, cfg.limits.grabs_inflight_max),
            funnel: Default::default(),
            auth,
            registry: Registry::default(),
            orders: OrderIndex::default(),
            ledger: Arc::new(ledger),
            ledger_calls,
            log: ports.log,
            store: ports.store,
            shared: ports.shared,
            room: ports.room,
            rooms: crate::usecase::queue::Rooms::new(
                cfg.funnel_secret.as_deref().unwrap_or(secret).as_bytes(),
            ),
            gate: crate::quiz::Gate::new(
                cfg.funnel_secret.as_deref().unwrap_or(secret).as_bytes(),
                cfg.quiz.clone(),
                &cfg.data_dir.join("cdn"),
            ),
            grab_permits: Arc::new(Semaphore::new(cfg.limits.grabs_inflight_max)),
            tasks: TaskTracker::new(),
            limits: cfg.limits.clone(),
            admin_token_generated: profile.admin_token_generated,
            cdn_dir: cfg.data_dir.join("cdn"),
            writer_running: std::sync::atomic::AtomicBool::new(true),
            expiry: Arc::default(),
            shared_ledger: profile.shared_ledger,
            view_max_age_ms: profile.view_max_age_ms,
        }
    }
}

/// Most live single-use marks the embedded shared state holds (each lives
/// minutes at most); past it, new marks are refused rather than growing.
pub const SHARED_MARKS_MAX: usize = 1_000_000;

/// Longest a grab waits for the ledger's reservation before it answers 503.
/// Bounds how long after its admission a grab can still append an order
/// (see `reconcile::quiet_period_ms`).
pub const LEDGER_CALL_MAX_MS: u64 = 3_000;

/// The embedded default: the app plus the pieces it must stop in order.
#[derive(Debug)]
pub struct Embedded {
    pub app: Arc<App>,
    /// The operator credential in force (printed at start-up when generated).
    pub admin_token: String,
    file_log: Arc<FileLog>,
    /// Held for the process's life: two processes appending to one order
    /// log would interleave records and break replay.
    _dir_lock: std::fs::File,
    writer_stop: tokio::sync::oneshot::Sender<()>,
    writer: tokio::task::JoinHandle<()>,
    /// The payment-expiry sweeper (see `usecase::expiry`).
    sweeper: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// Opens the data directory, replays the order log into the ledger and
    /// the order index, and starts the order writer.
    pub async fn open(cfg: &ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
        let dir_lock = lock_data_dir(&cfg.data_dir)?;
        let store: Arc<dyn OrderStore> = Arc::new(
            SqliteStore::open(&cfg.data_dir.join("orders.db"))
                .await
                .context("opening the SQLite order store")?,
        );
        let log_cfg = FileLogConfig::new(cfg.data_dir.join("orders.log"));
        let (file_log, replayed) = tokio::task::spawn_blocking(move || FileLog::open(log_cfg))
            .await
            .context("order log replay task")?
            .context("opening the order log")?;
        let file_log = Arc::new(file_log);
        let (jwt_secret, admin_token) = secrets(cfg)?;
        let auth = Auth::from_settings(&cfg.auth, Some(jwt_secret.as_bytes()), admin_token.clone())
            .map_err(anyhow::Error::msg)?;
        let app = Arc::new(App::assemble(
            cfg,
            Ports {
                ledger: Arc::new(MemLedger::new(MemLedgerConfig::default())),
                log: Arc::clone(&file_log) as Arc<dyn OrderLog>,
                store: Arc::clone(&store),
                shared: Arc::new(shared_state::MemSharedState::new(SHARED_MARKS_MAX)),
                room: Arc::new(shared_state::MemRoomStore::new(
                    crate::registry::CAMPAIGNS_MAX,
                )),
            },
            auth,
            &jwt_secret,
            Profile {
                admin_token_generated: cfg.admin_token.is_none(),
                shared_ledger: false,
                view_max_age_ms: None,
            },
        ));
        // Ends by itself once the app is dropped.
        let _upkeep = crate::limits::spawn_upkeep(&app);
        let _rooms = crate::usecase::queue::spawn_ticker(&app);

        for c in store.campaigns().await.context("loading campaigns")? {
            app.registry.insert(c)?;
        }
        let checkpoint = store
            .checkpoint(FILE_LOG_SOURCE)
            .await
            .context("reading the writer checkpoint")?
            .unwrap_or(0);
        // Stored statuses decide which replayed orders still hold stock
        // (expired and cancelled ones do not, but their numbers stay spent).
        let mut stored: HashMap<OrderId, OrderStatus> = HashMap::new();
        for live in app.registry.all() {
            let id = live.get().id.clone();
            for o in store.orders(&id).await.context("reading stored orders")? {
                stored.insert(o.record.order_id, o.status);
            }
        }
        let mut images: HashMap<CampaignId, LedgerImage> = HashMap::new();
        for p in replayed {
            let LogRecord::Order(o) = p.record;
            let Some(live) = app.registry.get(&o.campaign_id) else {
                bail!(
                    "the order log holds order {} of campaign {}, which the store does not know",
                    o.order_id,
                    o.campaign_id
                );
            };
            live.counters.logged.fetch_add(1, Ordering::Relaxed);
            let status = stored.get(&o.order_id).copied();
            let unit = Hold {
                user: o.user_id.clone(),
                n: o.n,
            };
            let image = images.entry(o.campaign_id.clone()).or_default();
            if status.is_some_and(OrderStatus::releases_stock) {
                image.retired.push(unit);
            } else {
                image.holds.push(unit);
            }
            let id = o.order_id.clone();
            app.orders.insert_queued(o);
            if p.end <= checkpoint || status.is_some() {
                app.orders.advance(&id, OrderStatus::Confirmed);
                live.counters.persisted.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(s) = status {
                app.orders.advance(&id, s);
            }
        }
        // The ledger is rebuilt from durable records only, never from memory,
        // each time with a new generation.
        for live in app.registry.all() {
            let c = live.get();
            let mut image = images.remove(&c.id).unwrap_or_default();
            image.total = c.stock_total;
            image.buckets = c.stock_buckets;
            image.generation = store
                .next_ledger_generation(&c.id)
                .await
                .with_context(|| format!("renewing the ledger generation of {}", c.id))?;
            app.ledger
                .restore(&c.id, &image)
                .await
                .with_context(|| format!("restoring the ledger of {}", c.id))?;
        }

        let reader = file_log
            .reader(checkpoint)
            .context("opening a log reader")?;
        let writer_app = Arc::clone(&app);
        let on_commit: order_store::OnCommit = Arc::new(move |batch, took| {
            crate::metrics::observe(&crate::metrics::LATENCY.store_batch, took);
            for LogRecord::Order(o) in batch {
                if writer_app
                    .orders
                    .advance(&o.order_id, OrderStatus::Confirmed)
                {
                    if let Some(live) = writer_app.registry.get(&o.campaign_id) {
                        live.counters.persisted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        let writer = FileWriter::new(Arc::clone(&store), reader, cfg.writer.clone(), on_commit);
        let (writer_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let watch_app = Arc::clone(&app);
        let writer = tokio::spawn(async move {
            match writer
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
            {
                Ok(stats) => tracing::info!(?stats, "order writer stopped"),
                Err(e) => {
                    watch_app.writer_running.store(false, Ordering::SeqCst);
                    tracing::error!(error = %e, "order writer failed; orders stay queued in the log until a restart");
                }
            }
        });

        let sweeper = crate::usecase::expiry::spawn_in_gateway(&app)?;
        let embedded = Self {
            sweeper,
            app,
            admin_token,
            file_log,
            _dir_lock: dir_lock,
            writer_stop,
            writer,
        };
        if cfg.demo {
            embedded.ensure_demo().await?;
        }
        Ok(embedded)
    }

    async fn ensure_demo(&self) -> anyhow::Result<()> {
        let id = CampaignId::parse(DEMO_CAMPAIGN)?;
        if self.app.registry.get(&id).is_some() {
            return Ok(());
        }
        let now = now_ms();
        let spec = CampaignSpec {
            id: Some(id.clone()),
            title: "Demo flash sale: mechanical keyboard".into(),
            price_cents: 1_999,
            stock: 100,
            starts_at_ms: now + 15_000,
            ends_at_ms: now + 2 * 3_600_000,
            per_user_limit: Some(1),
            quiz: None,
            quiz_questions: None,
            hidden_path: None,
            payment_window_s: None,
            load_test: None,
            stock_buckets: None,
            waiting_room: None,
            admit_per_s: None,
            admitted_max: None,
            admit_ttl_s: None,
            stock_factor_pct: None,
            queue_max: None,
        };
        crate::usecase::campaigns::create_validated(&self.app, spec.validate(id)?)
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo campaign: {}", e.message))?;
        Ok(())
    }

    /// Stops in dependency order: grabs, then the log (flushing what was
    /// accepted), then the writer (draining what is durable).
    pub async fn shutdown(self) {
        // A sweep cut short is finished by the next start's first sweep.
        self.sweeper.abort();
        self.app.tasks.close();
        self.app.tasks.wait().await;
        let log = Arc::clone(&self.file_log);
        if let Err(e) = tokio::task::spawn_blocking(move || log.close()).await {
            tracing::error!(error = %e, "closing the order log");
        }
        let _ = self.writer_stop.send(());
        // The final drain is paced; bound it. Cutting it short is safe: the
        // rows are durable in the log and land after the next start.
        let grace = std::time::Duration::from_millis(self.app.limits.shutdown_grace_ms);
        let mut writer = self.writer;
        match tokio::time::timeout(grace, &mut writer).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "order writer task"),
            Err(_) => {
                writer.abort();
                tracing::warn!(
                    ?grace,
                    "order writer still draining; the rest lands after the next start"
                );
            }
        }
    }
}

/// Takes the data directory's exclusive lock (released by the OS on exit,
/// including `kill -9`).
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "data directory {} is in use by another seckill process",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The JWT secret (env, or kept in the data directory) and the admin token.
fn secrets(cfg: &ServeConfig) -> anyhow::Result<(String, String)> {
    let jwt = match &cfg.jwt_secret {
        Some(s) => s.clone(),
        None => load_or_create_secret(&cfg.data_dir.join("jwt-secret"))?,
    };
    let admin = match &cfg.admin_token {
        Some(t) => t.clone(),
        None => random_hex(24),
    };
    Ok((jwt, admin))
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = random_hex(32);
    write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
