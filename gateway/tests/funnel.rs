//! The grab funnel over HTTP: cheapest stages first, and a sold-out storm
//! that never reaches the ledger backend or the log, in both profiles.

mod common;

use common::prod::{eventually, metric, ProdEnv};
use common::{users, Server};
use serde_json::json;
use std::sync::Arc;

/// Ledger calls that reached the backend, by operation, from one read of
/// `/metrics` (which itself makes one `snapshot` call per campaign).
async fn ledger_calls(g: &Server) -> std::collections::BTreeMap<String, f64> {
    let r = g.get("/metrics", None).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let calls: std::collections::BTreeMap<String, f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("seckill_ledger_calls_total{op=\"")?;
            let (op, value) = rest.split_once("\"} ")?;
            Some((op.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(calls.len(), 6, "{text}");
    calls
}

/// Sells out a 5-unit campaign, then sends 10,000 more grabs (8 at a
/// time, each buyer a new user with a valid token): every one is `410
/// sold_out`, counted at the funnel's `state` stage, and the ledger backend
/// sees no call at all (one snapshot per `/metrics` read aside).
async fn sold_out_storm_never_reaches_the_ledger(g: Arc<Server>, id: &str) {
    const STORM: usize = 10_000;
    let tokens = Arc::new(g.tokens(&users("storm-", STORM)).await);
    let winners = g.tokens(&users("early-", 5)).await;
    for t in &winners {
        assert_eq!(g.grab(id, t).await.status, 202);
    }
    let sold_out = eventually(10, async || {
        let r = g.grab(id, &tokens[0]).await;
        (r.status, r.code()) == (410, "sold_out".to_string())
    })
    .await;
    assert!(sold_out, "the sold-out flag never showed");
    let mut before = ledger_calls(&g).await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (g, tokens, id) = (Arc::clone(&g), Arc::clone(&tokens), id.to_string());
        tasks.push(tokio::spawn(async move {
            let mut other = Vec::new();
            for i in (worker..STORM).step_by(8) {
                let r = g.grab(&id, &tokens[i]).await;
                if (r.status, r.code()) != (410, "sold_out".to_string()) {
                    other.push((r.status, r.code()));
                }
            }
            other
        }));
    }
    for t in tasks {
        let other = t.await.expect("storm task");
        assert!(other.is_empty(), "not 410 sold_out: {other:?}");
    }
    // The only call since: the second `/metrics` read's own snapshot.
    *before.get_mut("snapshot").expect("snapshot count") += 1.0;
    assert_eq!(
        ledger_calls(&g).await,
        before,
        "a sold-out grab reached the ledger backend"
    );
    let refused = metric(
        &g,
        "seckill_funnel_refused_total{code=\"sold_out\",stage=\"state\"}",
    )
    .await
    .expect("funnel count");
    assert!(refused >= STORM as f64, "{refused}");
    let stats = g.stats(id).await;
    assert_eq!(stats["sold"], 5, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sold_out_storm_never_reaches_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Arc::new(Server::start(&dir.path().join("data"), &[]));
    g.create_campaign(json!({ "id": "storm", "stock": 5 }))
        .await;
    sold_out_storm_never_reaches_the_ledger(g, "storm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_sold_out_storm_never_reaches_the_ledger() {
    let env = ProdEnv::new("storm");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("storm-{}", std::process::id());
    let g = Arc::new(env.gateway(dir.path(), "g"));
    g.create_campaign(json!({ "id": id, "stock": 5 })).await;
    sold_out_storm_never_reaches_the_ledger(g, &id).await;
}

/// Cheapest first: a paused campaign refuses before the token is looked
/// at, so even a request without a token learns only `423 paused`, and an
/// unknown campaign answers 404 before anything else; the refusals are
/// counted at their stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_refuse_in_order_and_are_counted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Server::start(&dir.path().join("data"), &[]);
    g.create_campaign(json!({ "id": "held", "stock": 5 })).await;
    let r = g
        .admin_post("/admin/v1/campaigns/held/pause", &json!({}))
        .await;
    assert_eq!(r.status, 200);
    let no_token = g
        .call(
            "POST",
            "/api/v1/campaigns/held/grab",
            None,
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!((no_token.status, no_token.code()), (423, "paused".into()));
    let nowhere = g
        .call(
            "POST",
            "/api/v1/campaigns/nowhere/grab",
            None,
            Some("application/json"),
            "{}",
        )
        .await;
    assert_eq!(nowhere.status, 404);
    let r = g
        .admin_post("/admin/v1/campaigns/held/resume", &json!({}))
        .await;
    assert_eq!(r.status, 200);
    let bad_token = g
        .call(
            "POST",
            "/api/v1/campaigns/held/grab",
            Some("a.b.c"),
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(
        bad_token.status, 401,
        "the token is checked before the body"
    );
    let token = g.tokens(&["ann".to_string()]).await.remove(0);
    let bad_body = g
        .call(
            "POST",
            "/api/v1/campaigns/held/grab",
            Some(&token),
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(bad_body.status, 400);
    for (stage, code) in [
        ("state", "paused"),
        ("campaign", "campaign_not_found"),
        ("token", "unauthorized"),
        ("body", "bad_request"),
    ] {
        let name = format!("seckill_funnel_refused_total{{code=\"{code}\",stage=\"{stage}\"}}");
        assert_eq!(metric(&g, &name).await, Some(1.0), "{name}");
    }
}
