//! `seckill`: the binary operators run.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gateway::app::{App, Embedded, DEMO_CAMPAIGN};
use gateway::config::{resolve, Backends, FileConfig, Overrides, Production, ServeConfig};
use gateway::production::ProductionGateway;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "seckill", version, about = "A flash-sale engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded default: memory ledger, file log, SQLite;
    /// production with --config: Redis, Kafka, MySQL).
    Serve(ServeArgs),
    /// Production only: move orders from Kafka to MySQL (a consumer group
    /// member; run several).
    Writer(ServeArgs),
    /// Production only: expire unpaid orders whose payment window closed and
    /// give their units back to the ledger (safe to run several).
    Sweeper(ServeArgs),
    /// Operators' commands over the admin API of a running gateway: create,
    /// validate, preload, pause/resume/stop, status, reconcile, export.
    Admin(gateway::admin_cli::AdminArgs),
    /// Production only: compare a campaign's ledger with its durable orders;
    /// `--repair` rebuilds the ledger from the orders.
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    #[command(flatten)]
    common: ServeArgs,
    /// The campaign to reconcile.
    #[arg(long)]
    campaign: String,
    /// Rebuild the ledger from the durable orders when they differ.
    #[arg(long)]
    repair: bool,
    /// Skip the safety checks: run although the campaign is live, do not
    /// wait for in-flight grabs to settle, repair although the log is not
    /// drained. Only when every gateway is stopped.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (see config/production.toml); flags and env override it.
    #[arg(long, env = "SECKILL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SECKILL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the order log, the SQLite store and the JWT secret [default: ./data].
    #[arg(long, env = "SECKILL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Do not create the demo campaign.
    #[arg(long)]
    no_demo: bool,
    /// Rows per batch of the order writer [default: 500].
    #[arg(long, env = "SECKILL_WRITER_BATCH_ROWS")]
    writer_batch_rows: Option<usize>,
    /// Longest wait before a partial batch is written, in milliseconds [default: 20].
    #[arg(long, env = "SECKILL_WRITER_BATCH_INTERVAL_MS")]
    writer_batch_interval_ms: Option<u64>,
    /// Ceiling on rows written to the store per second [default: 10000].
    #[arg(long, env = "SECKILL_WRITER_ROWS_PER_S")]
    writer_rows_per_s: Option<u32>,
    /// Most open connections [default: 20000].
    #[arg(long, env = "SECKILL_CONNECTIONS_MAX")]
    connections_max: Option<usize>,
    /// Time a client has to send a request's headers, in milliseconds [default: 5000].
    #[arg(long, env = "SECKILL_HEADER_READ_TIMEOUT_MS")]
    header_read_timeout_ms: Option<u64>,
    /// Largest grab request body, in bytes [default: 4096].
    #[arg(long, env = "SECKILL_BODY_BYTES_MAX")]
    body_bytes_max: Option<usize>,
    /// Time a client has to send a request body, in milliseconds [default: 10000].
    #[arg(long, env = "SECKILL_BODY_READ_TIMEOUT_MS")]
    body_read_timeout_ms: Option<u64>,
    /// Idle keep-alive connections are closed after this, in milliseconds [default: 60000].
    #[arg(long, env = "SECKILL_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// Requests not answered within this get 503, in milliseconds [default: 30000].
    #[arg(long, env = "SECKILL_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Largest request head, in bytes [default: 16384].
    #[arg(long, env = "SECKILL_HEAD_BYTES_MAX")]
    head_bytes_max: Option<usize>,
    /// Most header fields in a request [default: 64].
    #[arg(long, env = "SECKILL_HEADERS_MAX")]
    headers_max: Option<usize>,
    /// Most grabs in flight before shedding with 503 overloaded [default: 20000].
    #[arg(long, env = "SECKILL_GRABS_INFLIGHT_MAX")]
    grabs_inflight_max: Option<usize>,
    /// Redis URL of the production ledger (overrides ledger.redis_url).
    #[arg(long, env = "SECKILL_REDIS_URL")]
    redis_url: Option<String>,
    /// Kafka bootstrap servers (overrides order_log.brokers).
    #[arg(long, env = "SECKILL_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// MySQL URL of the production store (overrides order_store.mysql_url).
    #[arg(long, env = "SECKILL_MYSQL_URL")]
    mysql_url: Option<String>,
    /// Kafka topic of the order log (overrides order_log.topic).
    #[arg(long, env = "SECKILL_KAFKA_TOPIC")]
    kafka_topic: Option<String>,
    /// How long the producer retries a record before giving up, in ms
    /// (overrides order_log.message_timeout_ms).
    #[arg(long, env = "SECKILL_KAFKA_MESSAGE_TIMEOUT_MS")]
    kafka_message_timeout_ms: Option<u64>,
    /// How long a grab waits for the broker's acknowledgement, in ms
    /// (overrides order_log.delivery_wait_ms).
    #[arg(long, env = "SECKILL_KAFKA_DELIVERY_WAIT_MS")]
    kafka_delivery_wait_ms: Option<u64>,
    /// How long a record waits for others to join its batch, in ms
    /// (overrides order_log.linger_ms).
    #[arg(long, env = "SECKILL_KAFKA_LINGER_MS")]
    kafka_linger_ms: Option<u64>,
    /// How long a silent writer keeps its partitions, in ms
    /// (overrides writer.session_timeout_ms).
    #[arg(long, env = "SECKILL_KAFKA_SESSION_TIMEOUT_MS")]
    kafka_session_timeout_ms: Option<u64>,
    /// Consumer group of the writers (overrides writer.group_id).
    #[arg(long, env = "SECKILL_KAFKA_GROUP")]
    kafka_group: Option<String>,
    /// Quiz answers sent sooner after their question are refused, in ms
    /// (overrides quiz.min_answer_ms) [default: 1000].
    #[arg(long, env = "SECKILL_QUIZ_MIN_ANSWER_MS")]
    quiz_min_answer_ms: Option<u64>,
    /// A quiz question's token expires after this many ms
    /// (overrides quiz.token_ttl_ms) [default: 120000].
    #[arg(long, env = "SECKILL_QUIZ_TOKEN_TTL_MS")]
    quiz_token_ttl_ms: Option<u64>,
}

impl ServeArgs {
    /// Reads the file (if any) and applies flags and env over it.
    fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            no_demo: self.no_demo,
            connections_max: self.connections_max,
            grabs_inflight_max: self.grabs_inflight_max,
            header_read_timeout_ms: self.header_read_timeout_ms,
            body_bytes_max: self.body_bytes_max,
            body_read_timeout_ms: self.body_read_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            head_bytes_max: self.head_bytes_max,
            headers_max: self.headers_max,
            writer_batch_rows: self.writer_batch_rows,
            writer_batch_interval_ms: self.writer_batch_interval_ms,
            writer_rows_per_s: self.writer_rows_per_s,
            redis_url: self.redis_url,
            kafka_brokers: self.kafka_brokers,
            mysql_url: self.mysql_url,
            kafka_topic: self.kafka_topic,
            kafka_group: self.kafka_group,
            kafka_message_timeout_ms: self.kafka_message_timeout_ms,
            kafka_delivery_wait_ms: self.kafka_delivery_wait_ms,
            kafka_linger_ms: self.kafka_linger_ms,
            kafka_session_timeout_ms: self.kafka_session_timeout_ms,
            quiz_min_answer_ms: self.quiz_min_answer_ms,
            quiz_token_ttl_ms: self.quiz_token_ttl_ms,
            jwt_secret: std::env::var("SECKILL_JWT_SECRET").ok(),
            admin_token: std::env::var("SECKILL_ADMIN_TOKEN").ok(),
            funnel_secret: std::env::var("SECKILL_FUNNEL_SECRET").ok(),
        };
        Ok(resolve(file, overrides)?)
    }
}

/// Logs go to stderr: human-readable text, or one JSON object per line
/// (`SECKILL_LOG_FORMAT=json`, for log shippers) with the event's fields
/// (`campaign`, `order_id`, ...) as keys. `SECKILL_LOG` filters them
/// (`info` by default; e.g. `debug` logs every order as it is logged).
fn init_logs() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECKILL_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("SECKILL_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => builder.init(),
        Ok("json") => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        Ok(other) => anyhow::bail!("SECKILL_LOG_FORMAT must be `text` or `json`, not `{other}`"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    init_logs()?;
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Writer(args) => runtime.block_on(writer(args)),
        Command::Sweeper(args) => runtime.block_on(sweeper(args)),
        Command::Reconcile(args) => runtime.block_on(reconcile(args)),
        Command::Admin(args) => {
            if !runtime.block_on(gateway::admin_cli::run(args))? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn production(cfg: &ServeConfig, what: &str) -> anyhow::Result<Production> {
    match &cfg.backends {
        Backends::Production(p) => Ok((**p).clone()),
        Backends::Embedded => anyhow::bail!(
            "`seckill {what}` needs the production profile (--config with redis/kafka/mysql); \
             the embedded default runs its writer inside `seckill serve`"
        ),
    }
}

async fn writer(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let p = production(&cfg, "writer")?;
    println!(
        "seckill writer draining {} into MySQL (group {})",
        p.kafka_topic, p.kafka_group_id
    );
    let stats = gateway::production::run_writer(&cfg, &p, shutdown_signal()).await?;
    println!(
        "seckill writer stopped: {} batches, {} rows ({} duplicates), {} dead-lettered",
        stats.batches, stats.rows, stats.duplicates, stats.dead_lettered
    );
    Ok(())
}

async fn sweeper(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let p = production(&cfg, "sweeper")?;
    println!(
        "seckill sweeper expiring unpaid orders every {} ms",
        gateway::usecase::expiry::SWEEP_INTERVAL_MS
    );
    let total = gateway::production::run_sweeper(&p, shutdown_signal()).await?;
    println!(
        "seckill sweeper stopped: {} expired, {} units released ({} already released)",
        total.expired, total.released, total.already_released
    );
    Ok(())
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let cfg = args.common.resolve()?;
    let p = production(&cfg, "reconcile")?;
    let campaign = engine::CampaignId::parse(&args.campaign)?;
    let r = gateway::reconcile::reconcile(&p, &campaign, args.repair, args.force).await?;
    let d = &r.diff;
    println!(
        "campaign {campaign}: stock {}, durable orders {}, ledger holds {}{}",
        d.stock_total,
        d.durable,
        d.held,
        if r.ledger_was_loaded {
            ""
        } else {
            " (ledger lost this campaign)"
        }
    );
    println!(
        "ledger stock left {} + holds {} {} stock {}{}",
        d.stock_left,
        d.held,
        if d.conserved() { "==" } else { "!=" },
        d.stock_total,
        match d.leaked() {
            0 => String::new(),
            n if n > 0 => format!(" ({n} units stranded; a repair returns them)"),
            n => format!(" ({} units too many; a repair removes them)", -n),
        }
    );
    println!("order log: {} records not yet in the store", r.log_lag);
    println!(
        "holds without a durable order (released by --repair): {}",
        d.holds_without_record.len()
    );
    for h in &d.holds_without_record {
        println!("  - {} #{}", h.user, h.n);
    }
    println!(
        "durable orders without a hold (restored by --repair): {}",
        d.records_without_hold.len()
    );
    for h in &d.records_without_hold {
        println!("  + {} #{}", h.user, h.n);
    }
    if r.repaired {
        println!(
            "repaired: ledger rebuilt (generation {}), {} units remaining",
            r.generation.unwrap_or_default(),
            d.remaining_after_repair()
        );
    } else if d.is_clean() && r.ledger_was_loaded {
        println!("clean: nothing to repair");
    } else {
        println!("not repaired (pass --repair)");
        std::process::exit(3);
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    if let Backends::Production(p) = &cfg.backends {
        let node = ProductionGateway::open(&cfg, p).await?;
        let listener = bind(&cfg).await?;
        announce(&node.app, &node.admin_token, listener.local_addr()?, &cfg)?;
        gateway::server::run(listener, Arc::clone(&node.app), shutdown_signal()).await;
        node.shutdown().await;
    } else {
        let embedded = Embedded::open(&cfg).await?;
        let listener = bind(&cfg).await?;
        announce(
            &embedded.app,
            &embedded.admin_token,
            listener.local_addr()?,
            &cfg,
        )?;
        gateway::server::run(listener, Arc::clone(&embedded.app), shutdown_signal()).await;
        embedded.shutdown().await;
    }
    println!("seckill stopped cleanly");
    Ok(())
}

async fn bind(cfg: &ServeConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))
}

/// Prints what a newcomer needs: the address, the admin token (when it was
/// generated) and a ready-to-open demo page with a buyer token.
fn announce(
    app: &App,
    admin_token: &str,
    addr: SocketAddr,
    cfg: &ServeConfig,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "seckill listening on http://{addr}")?;
    writeln!(out, "data directory: {}", cfg.data_dir.display())?;
    if app.admin_token_generated {
        writeln!(
            out,
            "admin token (generated; set SECKILL_ADMIN_TOKEN to choose one): {admin_token}"
        )?;
    }
    let demo_exists = engine::CampaignId::parse(DEMO_CAMPAIGN)
        .ok()
        .and_then(|id| app.registry.get(&id))
        .is_some();
    if cfg.demo && demo_exists {
        let user = engine::UserId::parse("demo-buyer")?;
        let token = app
            .auth
            .issue(&user, gateway::app::now_ms(), 24 * 3600)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        writeln!(
            out,
            "demo page: http://{addr}/items/{DEMO_CAMPAIGN}.html#token={token}"
        )?;
    }
    out.flush()?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received; draining");
}
