//! Several writers in one consumer group: the partitions are split between
//! them, and together they read every record.

use super::*;
use engine::ports::OrderLog;
use std::collections::BTreeSet;
use tokio::sync::Mutex;

const RECORDS: u64 = 400;

/// Polls and commits until `seen` holds every expected id or the deadline
/// passes; returns the member and the partitions it read from.
async fn drain(
    mut source: KafkaSource,
    seen: Arc<Mutex<HashSet<OrderId>>>,
    want: usize,
    deadline: Instant,
) -> (KafkaSource, BTreeSet<i32>) {
    let mut partitions = BTreeSet::new();
    while Instant::now() < deadline && seen.lock().await.len() < want {
        let batch = source.poll(100, 200).await.expect("poll");
        let mut seen = seen.lock().await;
        for s in &batch {
            partitions.insert(s.partition);
            seen.insert(order_id(s.record.as_ref().expect("a valid record")));
        }
        drop(seen);
        source.commit(&batch).await.expect("commit");
    }
    (source, partitions)
}

/// Polls every member until each owns at least one partition (polling is
/// what serves the group's join and assignment); meanwhile nothing may be
/// read.
async fn until_all_assigned(members: &mut [KafkaSource], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut all = true;
        for m in members.iter_mut() {
            let got = m.poll(10, 100).await.expect("poll");
            assert!(
                got.is_empty(),
                "nothing to read yet, got {} records",
                got.len()
            );
            all &= !m.assigned_partitions().expect("assignment").is_empty();
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not assign partitions to both members"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_split_the_partitions_and_together_read_everything() {
    let _broker = shared_broker().await;
    let topic = unique("group");
    let group = unique("split");
    let (log, _settled) = log(KafkaLogConfig::new(brokers(), &topic)).await;
    let mut members = vec![source(&topic, &group).await, source(&topic, &group).await];
    until_all_assigned(&mut members, Duration::from_secs(60)).await;
    let a = members[0].assigned_partitions().expect("assignment");
    let b = members[1].assigned_partitions().expect("assignment");
    assert!(
        a.iter().all(|p| !b.contains(p)),
        "both own a partition: {a:?} {b:?}"
    );

    let mut want = HashSet::new();
    for seq in 0..RECORDS {
        let record = order(&format!("camp-{}", seq % 16), &format!("user-{seq}"), seq);
        want.insert(order_id(&record));
        log.append(&record).await.expect("append");
    }

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = members.pop().expect("two members");
    let first = members.pop().expect("two members");
    let first = tokio::spawn(drain(first, Arc::clone(&seen), want.len(), deadline));
    let second = tokio::spawn(drain(second, Arc::clone(&seen), want.len(), deadline));
    let (first, read_a) = first.await.expect("first member");
    let (second, read_b) = second.await.expect("second member");
    // One after the other: tansu 0.6 can wedge a group when two members
    // leave at the same moment (it keeps a departed leader and never assigns
    // a newcomer), which real Kafka does not do.
    first.close().await;
    second.close().await;
    assert_eq!(*seen.lock().await, want, "together they read every record");
    assert!(
        !read_a.is_empty() && !read_b.is_empty(),
        "both did work: {read_a:?} {read_b:?}"
    );

    // Everything is committed: a newcomer to the group finds nothing left.
    // (Polls while waiting for its assignment must be empty too.)
    let mut late = [source(&topic, &group).await];
    until_all_assigned(&mut late, Duration::from_secs(60)).await;
    let [mut late] = late;
    let rest = late.poll(10, 1_000).await.expect("poll");
    assert!(
        rest.is_empty(),
        "records read again after their commit: {}",
        rest.len()
    );
    late.close().await;
}
