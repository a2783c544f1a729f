//! The waiting room in production (issue 11, acceptance 1): the queue lives
//! in Redis, so two gateways give every buyer one place and the same
//! position; buyers who join before the start are admitted in a random
//! order (not in the order they came), and one buyer joining 10,000 times
//! holds one place.

mod common;

use common::prod::{operator, ProdEnv};
use common::queue::{join, join_all, poll, poll_all, room_spec, spearman, Queued};
use common::{now_ms, users, Server};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUYERS: usize = 20_000;
const HAMMER_JOINS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_queue_across_two_gateways_is_drawn_at_random_with_one_place_per_buyer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = ProdEnv::new("room");
    let gs = [
        Arc::new(env.gateway(dir.path(), "g1")),
        Arc::new(env.gateway(dir.path(), "g2")),
    ];
    // Starts once everyone has joined (joins take a few seconds here).
    let starts_at = now_ms() + 35_000;
    // Campaign ids are unique per run: the tests share one Redis.
    let id = format!("fair-{}", now_ms());
    let id = id.as_str();
    gs[0]
        .create_campaign(room_spec(
            id,
            100_000,
            2_000,
            json!({ "starts_at_ms": starts_at, "admitted_max": 100_000 }),
        ))
        .await;
    let created = Instant::now();
    let seen = common::prod::eventually(10, async || {
        gs[1]
            .get(&format!("/api/v1/campaigns/{id}"), None)
            .await
            .status
            == 200
    })
    .await;
    assert!(seen, "the second gateway never saw the campaign");
    let mut names = users("f-", BUYERS);
    names.shuffle(&mut rand::rng());
    names.push("hammer".into());
    let tokens = gs[0].tokens(&names).await;
    let hammer_token = tokens[BUYERS].clone();
    // The hammer joins 10,000 times through both gateways while the crowd
    // joins in random order.
    let hammer = {
        let gs = gs.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut tickets = HashSet::new();
            for i in 0..HAMMER_JOINS {
                let r = join(&gs[i % 2], &id, &hammer_token).await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                tickets.insert(r.json()["ticket"].as_str().unwrap().to_string());
            }
            tickets
        })
    };
    let crowd = join_all(&gs, id, &names[..BUYERS], &tokens[..BUYERS], 64).await;
    let hammer_tickets = hammer.await.expect("hammer");
    assert_eq!(hammer_tickets.len(), 1, "one user, one ticket");
    println!(
        "{} buyers and {HAMMER_JOINS} joins of one buyer in {:?}",
        BUYERS,
        created.elapsed()
    );
    assert!(
        now_ms() < starts_at,
        "joins took too long: start the sale later"
    );
    let mut queued = crowd;
    let first_hammer = join(&gs[1], id, &tokens[BUYERS]).await;
    assert_eq!(first_hammer.status, 200);
    queued.push(Queued {
        user: "hammer".into(),
        token: tokens[BUYERS].clone(),
        ticket: hammer_tickets.into_iter().next().unwrap(),
        joined: first_hammer.json(),
        gateway: 1,
        at: Instant::now(),
    });
    for q in &queued {
        assert_eq!(q.joined["phase"], "pre_queue", "{}", q.joined);
        assert_eq!(q.joined["state"], "waiting");
    }
    // Every buyer has exactly one ticket: joining again, on the other
    // gateway, gives the same one.
    for q in queued.iter().step_by(97) {
        let again = join(&gs[(q.gateway + 1) % 2], id, &q.token).await.json();
        assert_eq!(
            again["ticket"].as_str(),
            Some(q.ticket.as_str()),
            "{}",
            q.user
        );
    }
    // Hold the cursor at the draw (paused), so each position is the rank.
    operator(&gs[0], id, "pause").await;
    let wait = Duration::from_millis(starts_at.saturating_sub(now_ms()) + 1_000);
    tokio::time::sleep(wait).await;
    let ranked = poll_all(&gs, id, &queued, 64, |i| i + 1).await;
    let mut positions = Vec::with_capacity(queued.len());
    for (q, r) in queued.iter_mut().zip(&ranked) {
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            q.user,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(
            (v["state"].as_str(), v["phase"].as_str()),
            (Some("waiting"), Some("queue")),
            "{v}"
        );
        q.ticket = v["ticket"]
            .as_str()
            .expect("a ranked ticket after the draw")
            .to_string();
        positions.push(v["position"].as_u64().expect("position"));
    }
    let distinct: HashSet<u64> = positions.iter().copied().collect();
    assert_eq!(distinct.len(), queued.len(), "one place each");
    assert_eq!(
        (
            positions.iter().min().copied(),
            positions.iter().max().copied()
        ),
        (Some(1), Some(queued.len() as u64)),
        "the places are 1..=n"
    );
    // Both gateways give the same position (ranked tickets: no look-up).
    let idx: Vec<usize> = (0..queued.len()).step_by(41).collect();
    let sample: Vec<Queued> = idx.iter().map(|&i| queued[i].clone()).collect();
    let other = poll_all(&gs, id, &sample, 64, |k| idx[k]).await;
    for (k, r) in other.iter().enumerate() {
        assert_eq!(
            r.json()["position"].as_u64(),
            Some(positions[idx[k]]),
            "{}",
            sample[k].user
        );
    }
    // The draw is a random permutation of the join order.
    let base = queued.iter().map(|q| q.at).min().expect("buyers");
    let joined_at: Vec<f64> = queued[..BUYERS]
        .iter()
        .map(|q| (q.at - base).as_secs_f64())
        .collect();
    let join_order: Vec<f64> = (0..BUYERS).map(|i| i as f64).collect();
    let place: Vec<f64> = positions[..BUYERS].iter().map(|&p| p as f64).collect();
    let by_time = spearman(&joined_at, &place);
    let by_order = spearman(&join_order, &place);
    println!(
        "rank correlation of place with join time {by_time:+.4}, with join order {by_order:+.4}"
    );
    assert!(by_time.abs() <= 0.05, "{by_time}");
    assert!(by_order.abs() <= 0.05, "{by_order}");
    // Admission follows the places: resume, and watch 150 buyers spread
    // over the queue be admitted in the order of their places.
    let by_place: HashMap<u64, &Queued> = queued
        .iter()
        .zip(&positions)
        .map(|(q, &p)| (p, q))
        .collect();
    let watched: Vec<(u64, Queued)> = (0..150u64)
        .map(|k| 1 + k * (queued.len() as u64 - 1) / 149)
        .map(|p| (p, by_place[&p].clone()))
        .collect();
    operator(&gs[0], id, "resume").await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (place, q)) in watched.into_iter().enumerate() {
        let g: Arc<Server> = Arc::clone(&gs[i % 2]);
        let id = id.to_string();
        tasks.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let v: Value = poll(&g, &id, &q.token, &q.ticket).await.json();
                if v["state"] == "admitted" {
                    return (place, started.elapsed().as_secs_f64());
                }
                assert_eq!(v["state"], "waiting", "{v}");
                assert!(Instant::now() < deadline, "{} not admitted: {v}", q.user);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let mut admitted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        admitted.push(done.expect("watcher"));
    }
    let (places, times): (Vec<f64>, Vec<f64>) =
        admitted.iter().map(|&(p, t)| (p as f64, t)).unzip();
    let follows = spearman(&places, &times);
    println!("rank correlation of admission time with place {follows:+.4}");
    assert!(follows > 0.95, "{follows}");
    let s = gs[1].stats(id).await["waiting_room"].clone();
    assert_eq!(s["pre_queued"], queued.len(), "{s}");
}
