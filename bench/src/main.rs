//! `seckill-bench`: a load generator for the seckill gateway that proves a
//! sale, not just a rate.
//!
//! It sets up its own `load_test` campaign through the admin API, gives every
//! request a new buyer (tokens signed here with the gateway's HS256 secret,
//! or minted by the admin API before the clock starts), sends grabs over
//! HTTP/1.1 keep-alive connections, and reports requests/s, latency
//! percentiles (an HDR histogram), the count of every outcome code, and the
//! sale's invariants read back through the admin API.
//!
//! Open loop (`--rate`): request *i* is due at `start + i / rate`, whether
//! or not earlier ones were answered, and its latency is measured from that
//! intended instant, so a stalled server shows up as latency instead of
//! silently lowering the rate (coordinated omission). Closed loop (no
//! `--rate`): each connection sends its next request as soon as the last
//! one is answered; latency is then the service time alone.

mod charts;
mod client;
mod run;
mod sale;

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "seckill-bench",
    version,
    about = "Load generator for the seckill gateway, with the sale's invariants checked"
)]
pub struct Args {
    /// The gateway (or the load balancer in front of several).
    #[arg(long, env = "SECKILL_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token, to set the campaign up and read the sale back.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The gateway's HS256 secret: buyer tokens are then signed here, on the
    /// fly (any number of buyers, no memory); without it they are minted by
    /// the admin API before the run (10,000 per call).
    #[arg(long, env = "SECKILL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Open loop: requests per second, each measured from its intended send
    /// time. Without it: closed loop.
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long requests are sent, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Units on sale in the campaign the run creates.
    #[arg(long, default_value_t = 1_000)]
    pub stock: u64,
    /// Distinct buyers: request i is buyer i mod users (so a run longer
    /// than the crowd sends repeats, answered `already_bought` or
    /// `sold_out`).
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    /// Write latency and throughput charts (SVG) into this directory.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
    /// Print the report as JSON too (one line, last).
    #[arg(long)]
    pub json: bool,
    /// Use this campaign id (default: a new one per run).
    #[arg(long)]
    pub campaign: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(run::main(args))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
