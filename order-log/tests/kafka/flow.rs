//! The normal flow: concurrent appends read back by a group, manual commits,
//! poison records and the dead-letter topic.

use super::*;
use engine::ports::OrderLog;
use order_log::kafka::{DEAD_LETTER_REASON_HEADER, DEAD_LETTER_SOURCE_HEADER};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;

const TASKS: u64 = 50;
const APPENDS_PER_TASK: u64 = 40;
const CAMPAIGNS: u64 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_all_read_back_once_in_campaign_order() {
    let _broker = shared_broker().await;
    let topic = unique("flow");
    let (log, _settled) = log(KafkaLogConfig::new(brokers(), &topic)).await;
    let log = Arc::new(log);

    // Task t appends its records one after another, all in campaign t % 7,
    // so their order is fixed and must survive in the partition.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for i in 0..APPENDS_PER_TASK {
                let seq = t * APPENDS_PER_TASK + i;
                let record = order(
                    &format!("camp-{}", t % CAMPAIGNS),
                    &format!("user-{seq}"),
                    seq,
                );
                log.append(&record)
                    .await
                    .map_err(|e| format!("append {seq}: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.expect("task runs").expect("every append is Ok");
    }
    let total = (TASKS * APPENDS_PER_TASK) as usize;

    let mut source = source(&topic, &unique("group")).await;
    let got = read(&mut source, total, Duration::from_secs(60)).await;
    let records = records(&got);
    assert_eq!(
        records.len(),
        total,
        "exactly the appended records, no more, no fewer"
    );
    let expected: HashSet<_> = (0..TASKS * APPENDS_PER_TASK)
        .map(|seq| {
            order_id(&order(
                &format!("camp-{}", (seq / APPENDS_PER_TASK) % CAMPAIGNS),
                &format!("user-{seq}"),
                seq,
            ))
        })
        .collect();
    assert_eq!(distinct_ids(&records), expected);

    // One campaign, one partition; offsets grow within a partition; and each
    // task's records come in the order the task appended them.
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_seq_of_task: HashMap<u64, u64> = HashMap::new();
    for (s, record) in got.iter().zip(&records) {
        let campaign = record.campaign_id().as_str().to_string();
        let p = *partition_of.entry(campaign.clone()).or_insert(s.partition);
        assert_eq!(p, s.partition, "campaign {campaign} spread over partitions");
        if let Some(prev) = last_offset.insert(s.partition, s.offset) {
            assert!(
                s.offset > prev,
                "offsets go back in partition {}",
                s.partition
            );
        }
        let seq = seq_of(record);
        if let Some(prev) = last_seq_of_task.insert(seq / APPENDS_PER_TASK, seq) {
            assert!(
                seq > prev,
                "task {} reordered: {seq} after {prev}",
                seq / APPENDS_PER_TASK
            );
        }
    }
    source.close().await;
    log.flush(Duration::from_secs(5)).await.expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_after_the_last_commit() {
    let _broker = shared_broker().await;
    let topic = unique("commit");
    let group = unique("group");
    let mut cfg = KafkaLogConfig::new(brokers(), &topic);
    cfg.partitions = 1; // one partition, so "offset 50" means one place
    let (log, _settled) = log(cfg).await;
    for seq in 0..100 {
        log.append(&order("camp-commit", &format!("user-{seq}"), seq))
            .await
            .expect("append");
    }

    let mut first = source(&topic, &group).await;
    let got = read(&mut first, 100, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 100);
    let offsets: Vec<i64> = got.iter().map(|s| s.offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "dense offsets: {offsets:?}"
    );
    first.commit(&got[..50]).await.expect("commit");
    first.close().await;

    let mut second = source(&topic, &group).await;
    let again = read(&mut second, 50, Duration::from_secs(60)).await;
    assert_eq!(again.len(), 50, "the 50 uncommitted records, no more");
    assert_eq!(
        again[0].offset, got[50].offset,
        "resumes right after the commit"
    );
    assert_eq!(records(&again), records(&got[50..]));
    // Nothing else is waiting: the committed half is not delivered again.
    assert!(second.poll(10, 1_000).await.expect("poll").is_empty());
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_reported_and_dead_lettered_with_its_reason() {
    let _broker = shared_broker().await;
    let topic = unique("poison");
    let mut source = source(&topic, &unique("group")).await; // creates the topics

    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("plain producer");
    let junk = b"{not json at all".to_vec();
    raw.send(
        FutureRecord::<(), _>::to(&topic).payload(&junk),
        Duration::from_secs(5),
    )
    .await
    .expect("raw payload delivered");

    let got = read(&mut source, 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    let poison = got[0].record.clone().expect_err("poison, not a record");
    assert_eq!(poison.payload, junk);
    assert!(
        poison.reason.contains("not a log record"),
        "{}",
        poison.reason
    );

    source
        .dead_letter(&got[0], "cannot decode")
        .await
        .expect("dead letter");
    source.commit(&got).await.expect("commit");

    // Read the dead-letter topic back with a plain consumer.
    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("dlq-reader"))
        .create()
        .expect("plain consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&format!("{topic}.dlq"), 0, Offset::Beginning)
        .expect("partition");
    dlq.assign(&tpl).expect("assign");
    let letter = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a dead letter within 30 s")
        .expect("readable");
    assert_eq!(letter.payload(), Some(&junk[..]));
    let headers = letter.headers().expect("headers");
    let header = |key: &str| {
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(
        header(DEAD_LETTER_REASON_HEADER).as_deref(),
        Some("cannot decode")
    );
    assert_eq!(
        header(DEAD_LETTER_SOURCE_HEADER),
        Some(format!("{topic}/{}/{}", got[0].partition, got[0].offset))
    );
    source.close().await;
}
