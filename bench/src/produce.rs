//! `seckill-bench produce`: the broker's own produce limit, to compare the
//! production grab with. The producer has the order log's settings
//! (idempotent, `acks=all`, its `linger.ms`), each message is the JSON of an
//! order record (the order log's message), keyed by campaign, and a bounded
//! number are in flight at once; the rate counts acknowledged messages.

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic (created with the order log's partition count when missing).
    #[arg(long)]
    pub topic: String,
    /// Messages to send.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Messages in flight at once (as many grabs as wait for their append).
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// librdkafka `linger.ms` (the order log's default).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// A name for this run, carried into the JSON line.
    #[arg(long)]
    pub label: Option<String>,
}

pub async fn main(args: Args) -> anyhow::Result<bool> {
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    order_log::kafka::ensure_topics(
        &args.brokers,
        &[order_log::kafka::TopicSpec {
            name: &args.topic,
            partitions: order_log::kafka::PARTITIONS_DEFAULT,
            replication_factor: 1,
        }],
    )
    .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("client.id", "seckill-bench-produce")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", args.linger_ms.to_string())
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the producer")?;
    let payload = |i: u64| -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&order_log::test_support::record(i))?)
    };
    let size = payload(0)?.len();
    // The producer id first (idempotence), so the clock measures produce alone.
    producer
        .send(
            FutureRecord::to(&args.topic)
                .key("warm-up")
                .payload(&payload(0)?),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("warm-up message: {e}"))?;
    let permits = Arc::new(Semaphore::new(args.in_flight));
    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    for i in 0..args.messages {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let body = payload(i)?;
        let delivery = producer
            .send_result(FutureRecord::to(&args.topic).key("c1").payload(&body))
            .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?;
        let (acked, failed) = (Arc::clone(&acked), Arc::clone(&failed));
        tokio::spawn(async move {
            match delivery.await {
                Ok(Ok(_)) => acked.fetch_add(1, Ordering::Relaxed),
                _ => failed.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        });
    }
    let all = u32::try_from(args.in_flight).context("--in-flight too large")?;
    let _drained = permits.acquire_many(all).await?;
    let secs = start.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(10))?;
    let (ok, bad) = (
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "seckill-bench produce: {ok} messages of {size} bytes acknowledged in {secs:.2} s: {:.0} msg/s ({bad} failed; {} in flight, linger.ms {})",
        ok as f64 / secs,
        args.in_flight,
        args.linger_ms
    );
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "requests_per_s": ok as f64 / secs,
            "messages": ok,
            "failed": bad,
            "message_bytes": size,
            "in_flight": args.in_flight,
            "seconds": secs,
        })
    );
    Ok(bad == 0)
}
