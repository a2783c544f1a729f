//! Tests of `KafkaLog` and `KafkaSource` against the real broker started by
//! `scripts/services.sh up` (address from `SECKILL_KAFKA_BROKERS`, default
//! 127.0.0.1:9092). A missing broker fails every test with a message that
//! says how to start it: these tests never skip.
//!
//! Each test uses its own topics and group. The fault tests pause or stop the
//! shared broker, so every test holds [`broker`]'s lock: shared by the normal
//! tests, exclusive for a fault test.

mod faults;
mod flow;
mod group;

use engine::ports::LogRecord;
use engine::{CampaignId, OrderId, OrderRecord, UserId};
use order_log::{
    KafkaLog, KafkaLogConfig, KafkaSource, KafkaSourceConfig, OnSettled, Settled, Sourced,
};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, RwLock};

/// Normal tests share the broker; a fault test takes it alone.
static BROKER_LOCK: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

pub fn brokers() -> String {
    std::env::var("SECKILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// Fails the test, loudly, when the broker does not accept connections.
pub async fn require_broker() {
    let addr = brokers();
    let first = addr.split(',').next().unwrap_or_default().to_string();
    let connect = tokio::net::TcpStream::connect(first.clone());
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "the Kafka broker at {first} is unreachable ({e}); start it with `scripts/services.sh up`"
        ),
        Err(_) => panic!(
            "the Kafka broker at {first} does not answer (paused?); start it with `scripts/services.sh up`"
        ),
    }
}

/// A name no other test run uses.
pub fn unique(what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "seckill-test-{what}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The order of `user` in `campaign`; `seq` lands in `created_at_ms` so a
/// test can read back in which order a task appended.
pub fn order(campaign: &str, user: &str, seq: u64) -> LogRecord {
    let campaign_id = CampaignId::parse(campaign).expect("valid campaign id");
    let user_id = UserId::parse(user).expect("valid user id");
    LogRecord::Order(OrderRecord {
        order_id: OrderId::derive(&campaign_id, &user_id, 1),
        campaign_id,
        user_id,
        n: 1,
        price_cents: 100,
        created_at_ms: 1_700_000_000_000 + seq,
        pay_by_ms: 1_700_000_900_000 + seq,
    })
}

pub fn order_id(record: &LogRecord) -> OrderId {
    let LogRecord::Order(o) = record;
    o.order_id.clone()
}

pub fn seq_of(record: &LogRecord) -> u64 {
    let LogRecord::Order(o) = record;
    o.created_at_ms - 1_700_000_000_000
}

/// Settlements that `on_settled` reported, in arrival order.
pub type Settlements = mpsc::UnboundedReceiver<(LogRecord, Settled)>;

pub fn settlement_channel() -> (OnSettled, Settlements) {
    let (tx, rx) = mpsc::unbounded_channel();
    let on_settled: OnSettled = Arc::new(move |record, settled| {
        // The receiver outlives every append in these tests.
        let _ = tx.send((record, settled));
    });
    (on_settled, rx)
}

pub async fn log(cfg: KafkaLogConfig) -> (KafkaLog, Settlements) {
    let (on_settled, rx) = settlement_channel();
    let log = KafkaLog::connect(cfg, on_settled)
        .await
        .expect("KafkaLog connects");
    (log, rx)
}

/// Appends `record` and insists it is delivered: an `Unknown` answer (the
/// first append after `connect` can wait ~0.5 s for the producer id) must be
/// settled `Delivered` by `on_settled`. For warm-ups before a fault.
pub async fn append_delivered(log: &KafkaLog, settlements: &mut Settlements, record: &LogRecord) {
    use engine::ports::{AppendError, OrderLog};
    match log.append(record).await {
        Ok(()) => {}
        Err(AppendError::Unknown(_)) => {
            let (settled_record, settled) =
                tokio::time::timeout(Duration::from_secs(60), settlements.recv())
                    .await
                    .expect("settled within a minute")
                    .expect("channel open");
            assert_eq!(&settled_record, record);
            assert_eq!(settled, Settled::Delivered);
        }
        Err(e) => panic!("append failed: {e}"),
    }
}

pub async fn source(topic: &str, group: &str) -> KafkaSource {
    KafkaSource::connect(KafkaSourceConfig::new(brokers(), topic, group))
        .await
        .expect("KafkaSource connects")
}

/// Polls until `want` records arrived or `within` passed; never more than `want`
/// unless the source returns extra in its last batch (returned too, so a
/// test can see duplicates).
pub async fn read(source: &mut KafkaSource, want: usize, within: Duration) -> Vec<Sourced> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let batch = source.poll(want - got.len(), 500).await.expect("poll");
        got.extend(batch);
    }
    got
}

/// Records of `got` that decoded, failing on poison.
pub fn records(got: &[Sourced]) -> Vec<LogRecord> {
    got.iter()
        .map(|s| s.record.clone().expect("a valid log record"))
        .collect()
}

pub fn distinct_ids(records: &[LogRecord]) -> HashSet<OrderId> {
    records.iter().map(order_id).collect()
}

pub fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// Runs `scripts/services.sh <command>`, failing the test if it fails.
pub fn services(command: &str) {
    let out = std::process::Command::new("bash")
        .arg(services_script())
        .arg(command)
        .output()
        .expect("run scripts/services.sh");
    assert!(
        out.status.success(),
        "scripts/services.sh {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes the broker for a normal test.
pub async fn shared_broker() -> tokio::sync::RwLockReadGuard<'static, ()> {
    let guard = BROKER_LOCK.read().await;
    require_broker().await;
    guard
}

/// Takes the broker alone, for a test that pauses or stops it.
pub async fn exclusive_broker() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    let guard = BROKER_LOCK.write().await;
    require_broker().await;
    guard
}
