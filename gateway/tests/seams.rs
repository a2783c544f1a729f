//! Exactness at the seams between ledger, log, writer, store and reconcile
//! (issue 6): each test replays one sequence of events that broke the
//! promise (no oversell, no undersell, no acknowledged order lost) on the
//! code before the fix. Production tests use their own database, topic and
//! group (and a private Redis where they lose its data).

mod common;

use common::prod::{
    campaign, eventually, grab_all, metric, operator, resumed_sale, run_seckill, run_seckill_with,
    ProdEnv, CONFIG,
};
use common::{users, Server, ADMIN_TOKEN, JWT_SECRET};
use engine::ports::{Reservation, StockLedger};
use engine::{CampaignId, OrderId, UserId};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The production tests here start several processes each and some depend
/// on timing (a producer's linger); they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The ledger a production gateway of `env` uses (same Redis, same prefix),
/// so a test can act as a gateway that crashed mid-grab.
async fn ledger_of(redis_url: &str) -> stock_ledger::RedisLedger<stock_ledger::RedisConn> {
    let conn = redis::Client::open(redis_url)
        .expect("redis url")
        .get_connection_manager()
        .await
        .expect("redis");
    stock_ledger::RedisLedger::new(
        conn,
        stock_ledger::RedisLedgerConfig {
            prefix: "seckill".into(), // config/production.toml's key_prefix
            buckets: 1,
        },
    )
}

async fn order_status(g: &Server, order: &str, token: &str) -> (u16, String) {
    let r = g.get(&format!("/api/v1/orders/{order}"), Some(token)).await;
    (
        r.status,
        r.json()["status"].as_str().unwrap_or_default().to_string(),
    )
}

// ------------------------------------------------------------ hole 2

/// Hole 2, embedded profile: a reservation released (as a failed append's
/// compensation does), then the same user grabs again. The ledger hands out
/// n = 2 under a limit of 1; the store must take it (the limit bounds active
/// units, n never repeats) under a new order id, and a restart's replay
/// continues the numbering. On the old code the store refused n > limit as
/// an invariant error, which stopped the embedded writer for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_release_then_regrab_lands_with_a_new_order_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = gateway::config::resolve(
        gateway::config::FileConfig::default(),
        gateway::config::Overrides {
            data_dir: Some(dir.path().join("data")),
            no_demo: true,
            jwt_secret: Some(JWT_SECRET.into()),
            admin_token: Some(ADMIN_TOKEN.into()),
            ..Default::default()
        },
    )
    .expect("config");
    let c = CampaignId::parse("regrab").expect("id");
    let u = UserId::parse("alice").expect("user");
    let first_try = OrderId::derive(&c, &u, 1);
    let second = {
        let node = gateway::app::Embedded::open(&cfg).await.expect("open");
        let app = Arc::clone(&node.app);
        let now = gateway::app::now_ms();
        let spec: engine::CampaignSpec = serde_json::from_value(json!({
            "id": "regrab", "title": "t", "price_cents": 1, "stock": 3,
            "starts_at_ms": now - 1_000, "ends_at_ms": now + 3_600_000,
        }))
        .expect("spec");
        gateway::usecase::campaigns::create_validated(
            &app,
            spec.validate(c.clone()).expect("valid"),
        )
        .await
        .expect("create");
        // A grab whose append failed for sure: reserved, then compensated.
        assert_eq!(
            app.ledger.reserve(&c, &u, 1).await.expect("reserve"),
            Reservation::Reserved { n: 1 }
        );
        assert!(app.ledger.release(&c, &u, 1).await.expect("release"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(gateway::server::run(listener, Arc::clone(&app), async {
            let _ = stopped.await;
        }));
        let token = app
            .auth
            .issue(&u, now, 3_600)
            .map_err(|e| e.message)
            .expect("token");
        let http = reqwest_like(addr);
        let (status, body) = http.post("/api/v1/campaigns/regrab/grab", &token).await;
        assert_eq!(status, 202, "{body}");
        let order = body["order_id"].as_str().expect("order id").to_string();
        assert_eq!(order, OrderId::derive(&c, &u, 2).to_string());
        assert_ne!(order, first_try.to_string(), "an order id was reused");
        let confirmed = eventually(20, async || {
            http.get(&format!("/api/v1/orders/{order}"), &token).await.1["status"] == "confirmed"
        })
        .await;
        assert!(
            confirmed,
            "the writer never stored the second unit: {}",
            http.get("/readyz", &token).await.1
        );
        let _ = stop.send(());
        server.await.expect("server");
        node.shutdown().await;
        order
    };
    // Replay after a restart: the hold is n = 2; the next number is 3.
    let node = gateway::app::Embedded::open(&cfg).await.expect("reopen");
    let app = Arc::clone(&node.app);
    assert_eq!(
        app.ledger.reserve(&c, &u, 1).await.expect("reserve"),
        Reservation::AlreadyBought,
        "the replayed order {second} holds the user's one unit"
    );
    let stored = app
        .store
        .order(&OrderId::parse(&second).expect("id"))
        .await
        .expect("store")
        .expect("stored");
    assert_eq!(stored.record.n, 2);
    assert!(app.store.order(&first_try).await.expect("store").is_none());
    node.shutdown().await;
}

/// A minimal HTTP client for the in-process server (hyper's, like the
/// harness's).
struct Http {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

fn reqwest_like(addr: std::net::SocketAddr) -> Http {
    Http {
        base: format!("http://{addr}"),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new()),
    }
}

impl Http {
    async fn send(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        use http_body_util::BodyExt;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .expect("request");
        let resp = self.client.request(req).await.expect("response");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("POST", path, token, "{}").await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("GET", path, token, "").await
    }
}

/// Hole 2, production profile: the same sequence through Redis, Kafka and
/// MySQL. On the old code MySQL refused the second unit and the writer
/// dead-lettered an order its buyer had been answered 202 for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_release_then_regrab_lands_with_a_new_order_id() {
    let _serial = SERIAL.lock().await;
    let env = ProdEnv::new("regrab");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("regrab-{}", std::process::id());
    let c = campaign(&env, dir.path(), &id, 5).await;
    let g = env.gateway(dir.path(), "g");
    let _writer = env.writer(dir.path(), "w");
    let u = UserId::parse("bob").expect("user");
    let ledger = ledger_of(&common::prod::redis_url()).await;
    assert_eq!(
        ledger.reserve(&c.id, &u, 1).await.expect("reserve"),
        Reservation::Reserved { n: 1 }
    );
    assert!(ledger.release(&c.id, &u, 1).await.expect("release"));
    let token = g.tokens(&["bob".to_string()]).await.remove(0);
    let r = g.grab(&id, &token).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let order = r.json()["order_id"].as_str().expect("order id").to_string();
    assert_eq!(order, OrderId::derive(&c.id, &u, 2).to_string());
    let landed = eventually(30, async || env.counts(&id).await.0 == 1).await;
    assert!(
        landed,
        "the second unit never reached MySQL: {}",
        g.stats(&id).await
    );
    let rows = env.rows(&id).await;
    assert_eq!(rows, vec![(order.clone(), "bob".to_string())]);
    assert_eq!(g.stats(&id).await["orders_dead_lettered"], 0);
    let confirmed = eventually(10, async || {
        order_status(&g, &order, &token).await == (200, "confirmed".into())
    })
    .await;
    assert!(confirmed, "{:?}", order_status(&g, &order, &token).await);
}

// ------------------------------------------------------------ hole 8

/// Hole 8: in production the gateway that took an order never hears that a
/// writer stored it. Its index said `queued` forever, so a buyer behind a
/// sticky load balancer could never pay (409 `order_not_confirmed`). The
/// status now reads through to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_pays_on_the_gateway_that_took_the_order() {
    let _serial = SERIAL.lock().await;
    let env = ProdEnv::new("pay");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("pay-{}", std::process::id());
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    let _writer = env.writer(dir.path(), "w");
    g1.create_campaign(json!({ "id": id, "stock": 5 })).await;
    let tokens = g1.tokens(&users("p-", 2)).await;
    let r = g1.grab(&id, &tokens[0]).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let order = r.json()["order_id"].as_str().expect("order id").to_string();
    for g in [&g1, &g2] {
        let confirmed = eventually(30, async || {
            order_status(g, &order, &tokens[0]).await == (200, "confirmed".into())
        })
        .await;
        assert!(confirmed, "{:?}", order_status(g, &order, &tokens[0]).await);
    }
    // Another buyer still cannot see it, on either gateway.
    assert_eq!(order_status(&g2, &order, &tokens[1]).await.0, 404);
    let paid = g1
        .post_json(
            &format!("/api/v1/orders/{order}/pay"),
            Some(&tokens[0]),
            &json!({}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", String::from_utf8_lossy(&paid.body));
    assert_eq!(paid.json()["status"], "paid");
    // The other gateway learns it from the store within its re-check period.
    let seen = eventually(10, async || {
        order_status(&g2, &order, &tokens[0]).await == (200, "paid".into())
    })
    .await;
    assert!(seen, "{:?}", order_status(&g2, &order, &tokens[0]).await);
    let again = g2
        .post_json(
            &format!("/api/v1/orders/{order}/pay"),
            Some(&tokens[0]),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 200, "paying twice is idempotent");
}

// ------------------------------------------------------------ hole 6

/// Hole 6: Redis lost a campaign whose orders are only in the log (no
/// writer has stored them yet, so the store's `sold` is 0). Preload on a
/// gateway that never cached the layout used to load full stock over the
/// lost keys, selling those units again. Now preload refuses with 409
/// `needs_reconcile`, and reconcile rebuilds the ledger from the durable
/// orders once the writer has stored them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preload_after_data_loss_needs_reconcile() {
    let _serial = SERIAL.lock().await;
    let (mut redis, env) = ProdEnv::on_private_redis("preload");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("preload-{}", std::process::id());
    let g1 = env.gateway(dir.path(), "g1");
    g1.create_campaign(json!({ "id": id, "stock": 5 })).await;
    let tokens = g1.tokens(&users("l-", 20)).await;
    let (sold, _) = grab_all(&[&g1], &id, &tokens, 0..3).await;
    assert_eq!(sold.len(), 3);
    redis.restart_empty();
    // A gateway that never saw the campaign's layout.
    let g2 = env.gateway(dir.path(), "g2");
    for g in [&g1, &g2] {
        let r = g
            .admin_post(&format!("/admin/v1/campaigns/{id}/preload"), &json!({}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "needs_reconcile".to_string()),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = g2.grab(&id, &tokens[10]).await;
    assert_eq!(r.status, 503, "nothing sells before the repair");

    let _writer = env.writer(dir.path(), "w");
    assert!(eventually(30, async || env.counts(&id).await.0 == 3).await);
    operator(&g1, &id, "pause").await;
    let out = run_seckill(
        &env,
        &[
            "reconcile",
            "--config",
            CONFIG,
            "--campaign",
            &id,
            "--repair",
        ],
    );
    assert_eq!(out.0, 0, "{}", out.1);
    assert!(out.1.contains("2 units remaining"), "{}", out.1);
    operator(&g1, &id, "resume").await;
    resumed_sale(&g2, &id, &tokens[19], 15).await;
    let (last, seen) = grab_all(&[&g1, &g2], &id, &tokens, 3..19).await;
    assert_eq!(last.len(), 1, "{seen:?}");
    assert!(eventually(30, async || env.counts(&id).await.0 == 5).await);
    assert_eq!(env.counts(&id).await, (5, 5, 5));
}

// ------------------------------------------------------------ hole 4

/// Hole 4: the running gateways learned "sold out" with a high change
/// counter; Redis restarted empty and the repair restarted the counter at 1,
/// so their flags ignored the news and answered 410 while units were for
/// sale. Sold out here includes three units held by grabs whose outcome was
/// never known (a gateway died between reserve and append); the repair
/// returns them, and the running gateways sell them without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_gateways_sell_what_a_repair_returns() {
    let _serial = SERIAL.lock().await;
    let (mut redis, env) = ProdEnv::on_private_redis("restored");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("restored-{}", std::process::id());
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    let _writer = env.writer(dir.path(), "w");
    g1.create_campaign(json!({ "id": id, "stock": 10 })).await;
    let path = format!("/api/v1/campaigns/{id}");
    assert!(eventually(10, async || g2.get(&path, None).await.status == 200).await);
    let tokens = g1.tokens(&users("s-", 40)).await;
    let (first, _) = grab_all(&[&g1, &g2], &id, &tokens, 0..7).await;
    assert_eq!(first.len(), 7);
    // The crashed gateway's three reservations: held, never logged.
    let ghost = ledger_of(&redis.url()).await;
    let c = CampaignId::parse(&id).expect("id");
    for i in 0..3 {
        let u = UserId::parse(&format!("ghost-{i}")).expect("user");
        assert!(matches!(
            ghost.reserve(&c, &u, 1).await.expect("reserve"),
            Reservation::Reserved { .. }
        ));
    }
    for g in [&g1, &g2] {
        let sold_out = eventually(10, async || {
            let r = g.grab(&id, &tokens[39]).await;
            (r.status, r.code()) == (410, "sold_out".to_string())
        })
        .await;
        assert!(sold_out, "both gateways must know the campaign is sold out");
    }
    redis.restart_empty();
    assert!(eventually(30, async || env.counts(&id).await.0 == 7).await);
    operator(&g1, &id, "pause").await;
    let out = run_seckill(
        &env,
        &[
            "reconcile",
            "--config",
            CONFIG,
            "--campaign",
            &id,
            "--repair",
        ],
    );
    assert_eq!(out.0, 0, "{}", out.1);
    assert!(out.1.contains("3 units remaining"), "{}", out.1);
    operator(&g1, &id, "resume").await;
    // The same processes, never restarted, sell the returned units.
    resumed_sale(&g1, &id, &tokens[38], 15).await;
    resumed_sale(&g2, &id, &tokens[37], 15).await;
    let (last, seen) = grab_all(&[&g1, &g2], &id, &tokens, 7..37).await;
    assert_eq!(last.len(), 1, "{seen:?}");
    assert!(eventually(30, async || env.counts(&id).await.0 == 10).await);
    assert_eq!(env.counts(&id).await, (10, 10, 10));
}

// ------------------------------------------------------------ hole 5

/// Hole 5: a grab's record still in a gateway's producer (here held back by
/// a long linger, as a slow network or a busy producer would) when the
/// operator repairs. The old reconcile saw a hold without an order and a
/// drained log, returned the unit, and sold it again: the late record then
/// oversold the campaign (the store refused it, and a buyer answered 503 to
/// poll their order lost it to the dead-letter topic). Now the repair waits
/// until no record admitted before the pause can still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_waits_for_records_still_on_their_way() {
    let _serial = SERIAL.lock().await;
    let mut env = ProdEnv::new("inflight");
    env.envs.extend([
        ("SECKILL_KAFKA_MESSAGE_TIMEOUT_MS", "10000".to_string()),
        ("SECKILL_KAFKA_LINGER_MS", "6000".to_string()),
        ("SECKILL_KAFKA_DELIVERY_WAIT_MS", "500".to_string()),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("inflight-{}", std::process::id());
    let g = env.gateway(dir.path(), "g");
    let _writer = env.writer(dir.path(), "w");
    g.create_campaign(json!({ "id": id, "stock": 1 })).await;
    let tokens = g.tokens(&users("f-", 2)).await;
    let r = g.grab(&id, &tokens[0]).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "unavailable".to_string()),
        "the record lingers, so its outcome is unknown at first"
    );
    let order = r.json()["order_id"]
        .as_str()
        .expect("order id to poll")
        .to_string();
    operator(&g, &id, "pause").await;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let envs = env.envs.clone();
        let id = id.clone();
        move || {
            run_seckill_with(
                &envs,
                &[
                    "reconcile",
                    "--config",
                    CONFIG,
                    "--campaign",
                    &id,
                    "--repair",
                ],
            )
        }
    })
    .await
    .expect("reconcile task");
    assert!(
        out.0 != 0 || started.elapsed() >= Duration::from_secs(10),
        "reconcile repaired {:?} after the pause without waiting for the record in flight: {}",
        started.elapsed(),
        out.1
    );
    operator(&g, &id, "resume").await;
    let r = g.grab(&id, &tokens[1]).await;
    assert_eq!(
        (r.status, r.code()),
        (410, "sold_out".to_string()),
        "the only unit belongs to the order in flight"
    );
    let settled = eventually(30, async || {
        metric(&g, "seckill_order_log_unsettled").await == Some(0.0)
    })
    .await;
    assert!(settled);
    assert!(eventually(30, async || env.counts(&id).await.0 >= 1).await);
    assert_eq!(env.rows(&id).await, vec![(order, "f-0".to_string())]);
    assert_eq!(env.counts(&id).await, (1, 1, 1));
    assert_eq!(g.stats(&id).await["dead_letters_total"], 0);
}

// ------------------------------------------------------------ hole 3

/// Hole 3, the reconcile side: a script's reply lost after Redis ran it
/// (here: a unit taken from a bucket whose claim was then undone, as the old
/// slow path did) leaves stock + holds = total - 1 with the same holds on
/// both sides. The old reconcile compared only holds and called it clean;
/// now it checks conservation, reports the stranded unit and a repair puts
/// it back on sale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_and_repairs_a_stranded_unit() {
    let _serial = SERIAL.lock().await;
    let (redis, env) = ProdEnv::on_private_redis("leak");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("leak-{}", std::process::id());
    let g = env.gateway(dir.path(), "g");
    let _writer = env.writer(dir.path(), "w");
    g.create_campaign(json!({ "id": id, "stock": 5 })).await;
    let tokens = g.tokens(&users("k-", 20)).await;
    let (first, _) = grab_all(&[&g], &id, &tokens, 0..2).await;
    assert_eq!(first.len(), 2);
    assert!(eventually(30, async || env.counts(&id).await.0 == 2).await);
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let left: i64 = redis::cmd("DECR")
        .arg(format!("seckill:{{{id}}}:stock"))
        .query_async(&mut conn)
        .await
        .expect("decr");
    assert_eq!(left, 2, "3 units were on sale");
    operator(&g, &id, "pause").await;
    let reconcile = ["reconcile", "--config", CONFIG, "--campaign", &id];
    let out = run_seckill(&env, &reconcile);
    assert_eq!(out.0, 3, "a leak needs a repair: {}", out.1);
    assert!(out.1.contains("1 units stranded"), "{}", out.1);
    let mut repair = reconcile.to_vec();
    repair.push("--repair");
    let out = run_seckill(&env, &repair);
    assert_eq!(out.0, 0, "{}", out.1);
    assert!(out.1.contains("3 units remaining"), "{}", out.1);
    operator(&g, &id, "resume").await;
    resumed_sale(&g, &id, &tokens[19], 15).await;
    let (last, seen) = grab_all(&[&g], &id, &tokens, 2..19).await;
    assert_eq!(last.len(), 2, "{seen:?}");
    assert!(eventually(30, async || env.counts(&id).await.0 == 5).await);
    assert_eq!(env.counts(&id).await, (5, 5, 5));
}

// ------------------------------------------------------------ hole 7

/// Hole 7: Redis comes back with older data (a snapshot restored, a lagging
/// replica promoted): the campaign's keys reappear with more stock than is
/// true. The gateway notices that the data went back in time and stops
/// selling the campaign (503) instead of selling past the durable orders;
/// a repair (new generation) rebuilds it from MySQL and the sale ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_redis_data_blocks_the_campaign_until_repaired() {
    let _serial = SERIAL.lock().await;
    let (redis, env) = ProdEnv::on_private_redis("rollback");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("rollback-{}", std::process::id());
    let g = env.gateway(dir.path(), "g");
    let _writer = env.writer(dir.path(), "w");
    g.create_campaign(json!({ "id": id, "stock": 10 })).await;
    let tokens = g.tokens(&users("b-", 40)).await;
    let (first, _) = grab_all(&[&g], &id, &tokens, 0..3).await;
    assert_eq!(first.len(), 3);

    // A snapshot of the campaign's data, taken mid-sale.
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("seckill:{{{id}}}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut snapshot = Vec::new();
    for k in keys
        .iter()
        .filter(|k| !k.contains(":r:") && !k.ends_with(":layout"))
    {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .expect("dump");
        snapshot.push((k.clone(), dump));
    }
    assert!(snapshot.len() >= 3, "{keys:?}");
    let (more, _) = grab_all(&[&g], &id, &tokens, 3..6).await;
    assert_eq!(more.len(), 3);
    // The old copy comes back: 7 units "left" where 4 are.
    for (k, dump) in &snapshot {
        let _: () = redis::cmd("RESTORE")
            .arg(k)
            .arg(0)
            .arg(dump.as_slice())
            .arg("REPLACE")
            .query_async(&mut conn)
            .await
            .expect("restore");
    }
    let (during, seen) = grab_all(&[&g], &id, &tokens, 6..16).await;
    assert!(
        during.is_empty(),
        "sold {} units on data from the past",
        during.len()
    );
    assert_eq!(
        seen.get(&(503, "unavailable".to_string())),
        Some(&10),
        "{seen:?}"
    );

    assert!(eventually(30, async || env.counts(&id).await.0 == 6).await);
    operator(&g, &id, "pause").await;
    let out = run_seckill(
        &env,
        &[
            "reconcile",
            "--config",
            CONFIG,
            "--campaign",
            &id,
            "--repair",
        ],
    );
    assert_eq!(out.0, 0, "{}", out.1);
    assert!(out.1.contains("4 units remaining"), "{}", out.1);
    operator(&g, &id, "resume").await;
    resumed_sale(&g, &id, &tokens[39], 15).await;
    let (last, seen) = grab_all(&[&g], &id, &tokens, 16..39).await;
    assert_eq!(last.len(), 3, "{seen:?}");
    assert!(eventually(30, async || env.counts(&id).await.0 == 10).await);
    assert_eq!(env.counts(&id).await, (10, 10, 10));
}
