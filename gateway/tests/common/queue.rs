//! Steps shared by the waiting-room tests of both profiles.

use super::{Reply, Server};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A buyer in a queue: their token, their ticket, and the join's answer.
#[derive(Debug, Clone)]
pub struct Queued {
    pub user: String,
    pub token: String,
    pub ticket: String,
    pub joined: Value,
    /// Which gateway (index) the buyer joined through.
    pub gateway: usize,
    /// When the join was answered.
    pub at: Instant,
}

pub async fn join(g: &Server, id: &str, token: &str) -> Reply {
    g.post_json(
        &format!("/api/v1/campaigns/{id}/queue"),
        Some(token),
        &json!({}),
    )
    .await
}

pub async fn poll(g: &Server, id: &str, token: &str, ticket: &str) -> Reply {
    g.get_with(
        &format!("/api/v1/campaigns/{id}/queue"),
        Some(token),
        &[("x-queue-ticket", ticket)],
    )
    .await
}

/// Joins every buyer in the order given, `parallel` at a time, buyer `i`
/// through gateway `i % len`; every join must be answered 200 with a ticket.
pub async fn join_all(
    gateways: &[Arc<Server>],
    id: &str,
    users: &[String],
    tokens: &[String],
    parallel: usize,
) -> Vec<Queued> {
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (u, t)) in users.iter().zip(tokens).enumerate() {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("permit");
        let g = Arc::clone(&gateways[i % gateways.len()]);
        let (id, user, token) = (id.to_string(), u.clone(), t.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let r = join(&g, &id, &token).await;
            assert_eq!(
                r.status,
                200,
                "join {user}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let joined = r.json();
            let ticket = joined["ticket"].as_str().expect("ticket").to_string();
            (
                i,
                Queued {
                    user,
                    token,
                    ticket,
                    joined,
                    // Set below: the task does not hold the list.
                    gateway: 0,
                    at: Instant::now(),
                },
            )
        });
    }
    let mut out: Vec<Option<Queued>> = vec![None; users.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, mut q) = done.expect("join task");
        q.gateway = i % gateways.len();
        out[i] = Some(q);
    }
    out.into_iter()
        .map(|q| q.expect("every buyer joined"))
        .collect()
}

/// Polls every buyer once, `parallel` at a time, each through the gateway
/// `pick(i)`; the answers in buyer order.
pub async fn poll_all(
    gateways: &[Arc<Server>],
    id: &str,
    buyers: &[Queued],
    parallel: usize,
    pick: impl Fn(usize) -> usize,
) -> Vec<Reply> {
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, b) in buyers.iter().enumerate() {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("permit");
        let g = Arc::clone(&gateways[pick(i) % gateways.len()]);
        let (id, token, ticket) = (id.to_string(), b.token.clone(), b.ticket.clone());
        tasks.spawn(async move {
            let _permit = permit;
            (i, poll(&g, &id, &token, &ticket).await)
        });
    }
    let mut out: Vec<Option<Reply>> = (0..buyers.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.expect("poll task");
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.expect("every poll")).collect()
}

/// The state of a 200 poll (`waiting`, `admitted`, `sold_out`), or the
/// error code of another answer.
pub fn state(r: &Reply) -> String {
    if r.status == 200 {
        r.json()["state"].as_str().unwrap_or("?").to_string()
    } else {
        format!("{} {}", r.status, r.code())
    }
}

/// Polls one buyer every `every` until admitted (the answer), or panics
/// after `limit`.
pub async fn until_admitted(
    g: &Server,
    id: &str,
    b: &Queued,
    every: Duration,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = poll(g, id, &b.token, &b.ticket).await;
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            b.user,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        if v["state"] == "admitted" {
            return v;
        }
        assert_eq!(v["state"], "waiting", "{}: {v}", b.user);
        assert!(
            Instant::now() < deadline,
            "{} not admitted within {limit:?}: {v}",
            b.user
        );
        tokio::time::sleep(every).await;
    }
}

/// A grab on `path` with an empty body.
pub async fn grab_on(g: &Server, path: &str, token: &str) -> Reply {
    g.call("POST", path, Some(token), Some("application/json"), "{}")
        .await
}

/// A waiting-room campaign spec, live now unless `extra` says otherwise.
pub fn room_spec(id: &str, stock: u64, admit_per_s: u32, extra: Value) -> Value {
    let mut spec = json!({
        "id": id,
        "stock": stock,
        "waiting_room": true,
        "admit_per_s": admit_per_s,
    });
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    spec
}

/// Spearman's rank correlation of two equally long sequences of distinct
/// values.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(x: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
        let mut r = vec![0.0; x.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}
