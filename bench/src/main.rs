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
mod produce;
mod report;
mod run;
mod sale;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "seckill-bench",
    version,
    about = "Load generator for the seckill gateway, with the sale's invariants checked",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The broker's own produce limit: an idempotent, acks=all producer
    /// (the order log's settings) sending messages of one size as fast as
    /// the broker takes them (bench/limits.sh).
    Produce(produce::Args),
    /// Writes BENCHMARKS.md from the results bench/limits.sh collected.
    Report(report::Args),
    /// Prints a Redis ledger script (for `redis-cli SCRIPT LOAD`, so
    /// `redis-benchmark` can run it by `EVALSHA`).
    Lua {
        /// `reserve` (the grab's script).
        #[arg(value_parser = ["reserve"])]
        name: String,
    },
}

/// What each request of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `POST` grab, a new buyer per request (no quiz, no hidden path).
    Grab,
    /// The whole funnel: hidden path and quiz. Before the clock starts,
    /// every buyer fetches its grab path and a quiz question (answered from
    /// the load-test export), so the timed part sends only grabs, each
    /// with its own single-use quiz token.
    Funnel,
    /// `GET /api/v1/campaigns/{id}` (the item page's data).
    Campaign,
    /// `GET --path` on `--url`, with no sale (a static page, `/healthz`).
    Get,
    /// `POST .../queue`: buyers join a waiting-room campaign that starts
    /// after the run (a pre-queue), each once (the run ends after
    /// `--users` joins); read back: the room holds exactly the buyers
    /// answered 200 (what a pre-queue costs: watch the gateway's RSS, or
    /// Redis's `used_memory`, before and after).
    Join,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The gateway (or the load balancer in front of several).
    #[arg(long, env = "SECKILL_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token, to set the campaign up and read the sale back.
    /// Needed by every mode but `get`.
    #[arg(long, env = "SECKILL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// What each request is.
    #[arg(long, value_enum, default_value_t = Mode::Grab)]
    pub mode: Mode,
    /// The path `--mode get` requests.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// `--mode funnel`: buyers prepared before the clock (grab path and
    /// quiz token each); the run ends early when they are used up.
    #[arg(long, default_value_t = 100_000)]
    pub funnel_buyers: u64,
    /// A name for this run, carried into the JSON report (bench/limits.sh).
    #[arg(long)]
    pub label: Option<String>,
    /// How long the read-back waits for the order writer to store every
    /// acknowledged order (a writer at its ceiling drains a big sale slowly).
    #[arg(long, default_value_t = 120)]
    pub drain_wait_s: u64,
    /// Send the load but do not read the sale back (to build a backlog for
    /// a writer that is stopped); the run then proves nothing about the sale.
    #[arg(long)]
    pub no_verify: bool,
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
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = match cli.cmd {
        Some(Cmd::Produce(a)) => runtime.block_on(produce::main(a))?,
        Some(Cmd::Report(a)) => report::main(&a)?,
        Some(Cmd::Lua { .. }) => {
            print!("{}", stock_ledger::scripts::RESERVE);
            true
        }
        None => runtime.block_on(run::main(cli.run))?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
