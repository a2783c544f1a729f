//! `KafkaWriter` against a scripted source (no broker) and a real SQLite
//! store: which records end stored or dead-lettered, and when offsets are
//! committed. The end-to-end run with a real broker lives in the gateway.

use super::{KafkaWriter, KafkaWriterConfig, Source};
use crate::contract::units::unit;
use crate::contract::{campaign, ContractError};
use crate::SqliteStore;
use async_trait::async_trait;
use engine::ports::{LogRecord, OrderStore};
use engine::Campaign;
use order_log::{LogError, Poison, Sourced};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

type TestResult = Result<(), ContractError>;

/// Real-time bound on every wait, so a stuck writer fails the test.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// What the writer did with the source, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    DeadLetter(i64),
    Commit(Vec<i64>),
}

/// A source that hands out scripted batches, then empty polls; records
/// dead letters and commits; and can fail every dead-letter send, firing
/// `on_dead_letter_failure` the first time (a stand-in for a shutdown that
/// arrives while the dead-letter topic is down).
struct ScriptedSource {
    batches: VecDeque<Vec<Sourced>>,
    events: Arc<Mutex<Vec<Event>>>,
    commits: watch::Sender<usize>,
    dead_letters_fail: bool,
    on_dead_letter_failure: Mutex<Option<oneshot::Sender<()>>>,
}

impl ScriptedSource {
    fn push(&self, e: Event) {
        self.events.lock().expect("events lock").push(e);
    }
}

#[async_trait]
impl Source for ScriptedSource {
    async fn poll(&mut self, _rows_max: usize, wait_ms: u64) -> Result<Vec<Sourced>, LogError> {
        match self.batches.pop_front() {
            Some(batch) => Ok(batch),
            None => {
                // Like the broker when nothing arrives: wait, then nothing.
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                Ok(Vec::new())
            }
        }
    }
    async fn commit(&mut self, through: &[Sourced]) -> Result<(), LogError> {
        self.push(Event::Commit(through.iter().map(|s| s.offset).collect()));
        self.commits.send_modify(|n| *n += 1);
        Ok(())
    }
    async fn dead_letter(&self, s: &Sourced, _reason: &str) -> Result<(), LogError> {
        if self.dead_letters_fail {
            if let Some(fire) = self.on_dead_letter_failure.lock().expect("lock").take() {
                let _ = fire.send(());
            }
            return Err(LogError::Kafka("dead-letter topic unavailable".into()));
        }
        self.push(Event::DeadLetter(s.offset));
        Ok(())
    }
    async fn close(self: Box<Self>) {}
}

fn sourced(offset: i64, record: LogRecord) -> Sourced {
    Sourced {
        partition: 0,
        offset,
        record: Ok(record),
    }
}

/// A limit-1 campaign where "held" already holds an active unit 1, and a
/// batch [ok, held's unit 2 (refused), ok, poison, ok].
async fn setup(
    dir: &std::path::Path,
) -> Result<(Arc<SqliteStore>, Campaign, Vec<Sourced>), ContractError> {
    let store = Arc::new(SqliteStore::open(&dir.join("orders.db")).await?);
    let c = campaign("sale", 100)?;
    store.insert_campaign(&c).await?;
    store.write_batch(&[unit(&c, "held", 1)?], None).await?;
    let batch = vec![
        sourced(10, unit(&c, "a", 1)?),
        sourced(11, unit(&c, "held", 2)?),
        sourced(12, unit(&c, "c", 1)?),
        Sourced {
            partition: 0,
            offset: 13,
            record: Err(Poison {
                payload: b"not json".to_vec(),
                reason: "bad payload".into(),
            }),
        },
        sourced(14, unit(&c, "e", 1)?),
    ];
    Ok((store, c, batch))
}

fn config() -> KafkaWriterConfig {
    KafkaWriterConfig {
        tries_max: 2,
        topic: "orders".into(),
        ..KafkaWriterConfig::default()
    }
}

/// The record the store refuses goes to the dead-letter topic; the records
/// after it in the same batch are still stored; the offsets are committed
/// only after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_leaves_its_batch_mates_stored() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (store, c, batch) = setup(dir.path()).await?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let (commits_tx, mut commits) = watch::channel(0usize);
    let source = ScriptedSource {
        batches: VecDeque::from([batch]),
        events: Arc::clone(&events),
        commits: commits_tx,
        dead_letters_fail: false,
        on_dead_letter_failure: Mutex::new(None),
    };
    let writer = KafkaWriter::with_source(store.clone(), Box::new(source), config());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(writer.run(async {
        let _ = stopped.await;
    }));
    timeout(WAIT_LIMIT, commits.wait_for(|n| *n >= 1)).await??;
    let _ = stop.send(());
    let stats = timeout(WAIT_LIMIT, task).await???;

    let stored: Vec<String> = store
        .orders(&c.id)
        .await?
        .into_iter()
        .map(|o| format!("{}/{}", o.record.user_id, o.record.n))
        .collect();
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, ["a/1", "c/1", "e/1", "held/1"]);
    assert_eq!(
        *events.lock().expect("events lock"),
        vec![
            Event::DeadLetter(11),
            Event::DeadLetter(13),
            Event::Commit(vec![10, 11, 12, 13, 14]),
        ]
    );
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(stats.batches, 1);
    assert_eq!(store.dead_letters(Some(&c.id)).await?, 1);
    assert_eq!(store.dead_letters(None).await?, 2);
    Ok(())
}

/// Shutdown while the dead-letter topic is down: the refused record is not
/// safe anywhere, so nothing of the batch is committed (it is replayed by
/// the next owner; the stored records are absorbed as duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_cut_short_by_shutdown_commits_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (store, _c, batch) = setup(dir.path()).await?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let (failed_tx, failed) = oneshot::channel::<()>();
    let source = ScriptedSource {
        batches: VecDeque::from([batch]),
        events: Arc::clone(&events),
        commits: watch::channel(0).0,
        dead_letters_fail: true,
        on_dead_letter_failure: Mutex::new(Some(failed_tx)),
    };
    let writer = KafkaWriter::with_source(store.clone(), Box::new(source), config());
    // Shutdown comes as soon as the first dead-letter send has failed.
    let stats = timeout(
        WAIT_LIMIT,
        writer.run(async {
            let _ = failed.await;
        }),
    )
    .await??;
    assert_eq!(*events.lock().expect("events lock"), Vec::<Event>::new());
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.batches, 0);
    assert_eq!(store.dead_letters(None).await?, 0);
    Ok(())
}
