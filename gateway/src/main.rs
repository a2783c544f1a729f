//! `seckill`: the binary operators run.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gateway::app::{Embedded, DEMO_CAMPAIGN};
use gateway::config::{Limits, ServeConfig};
use order_store::WriterConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "seckill", version, about = "A flash-sale engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded default: memory ledger, file log, SQLite).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SECKILL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the order log, the SQLite store and the JWT secret.
    #[arg(long, env = "SECKILL_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Do not create the demo campaign.
    #[arg(long)]
    no_demo: bool,
    /// Rows per batch of the order writer.
    #[arg(long, env = "SECKILL_WRITER_BATCH_ROWS", default_value_t = WriterConfig::default().batch_rows_max)]
    writer_batch_rows: usize,
    /// Longest wait before a partial batch is written, in milliseconds.
    #[arg(long, env = "SECKILL_WRITER_BATCH_INTERVAL_MS", default_value_t = WriterConfig::default().batch_interval_ms)]
    writer_batch_interval_ms: u64,
    /// Ceiling on rows written to the store per second.
    #[arg(long, env = "SECKILL_WRITER_ROWS_PER_S", default_value_t = WriterConfig::default().rows_per_s_max)]
    writer_rows_per_s: u32,
    /// Most open connections.
    #[arg(long, env = "SECKILL_CONNECTIONS_MAX", default_value_t = Limits::default().connections_max)]
    connections_max: usize,
    /// Time a client has to send a request's headers, in milliseconds.
    #[arg(long, env = "SECKILL_HEADER_READ_TIMEOUT_MS", default_value_t = Limits::default().header_read_timeout_ms)]
    header_read_timeout_ms: u64,
    /// Largest grab request body, in bytes.
    #[arg(long, env = "SECKILL_BODY_BYTES_MAX", default_value_t = Limits::default().body_bytes_max)]
    body_bytes_max: usize,
    /// Most grabs in flight before shedding with 503 overloaded.
    #[arg(long, env = "SECKILL_GRABS_INFLIGHT_MAX", default_value_t = Limits::default().grabs_inflight_max)]
    grabs_inflight_max: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SECKILL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        demo: !args.no_demo,
        limits: Limits {
            connections_max: args.connections_max,
            grabs_inflight_max: args.grabs_inflight_max,
            header_read_timeout_ms: args.header_read_timeout_ms,
            body_bytes_max: args.body_bytes_max,
            ..Limits::default()
        },
        writer: WriterConfig {
            batch_rows_max: args.writer_batch_rows,
            batch_interval_ms: args.writer_batch_interval_ms,
            rows_per_s_max: args.writer_rows_per_s,
            ..WriterConfig::default()
        },
        jwt_secret: std::env::var("SECKILL_JWT_SECRET").ok(),
        admin_token: std::env::var("SECKILL_ADMIN_TOKEN").ok(),
    };
    let embedded = Embedded::open(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    announce(&embedded, addr, &cfg)?;
    gateway::server::run(
        listener,
        std::sync::Arc::clone(&embedded.app),
        shutdown_signal(),
    )
    .await;
    embedded.shutdown().await;
    println!("seckill stopped cleanly");
    Ok(())
}

/// Prints what a newcomer needs: the address, the admin token (when it was
/// generated) and a ready-to-open demo page with a buyer token.
fn announce(embedded: &Embedded, addr: SocketAddr, cfg: &ServeConfig) -> anyhow::Result<()> {
    use std::io::Write;
    let app = &embedded.app;
    let mut out = std::io::stdout().lock();
    writeln!(out, "seckill listening on http://{addr}")?;
    writeln!(out, "data directory: {}", cfg.data_dir.display())?;
    if app.admin_token_generated {
        writeln!(
            out,
            "admin token (generated; set SECKILL_ADMIN_TOKEN to choose one): {}",
            embedded.admin_token
        )?;
    }
    if cfg.demo {
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
