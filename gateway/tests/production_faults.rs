//! Failure tests of the production pipeline against the real services:
//! the writer killed repeatedly while draining, and a poison record.
//! Each test gets its own database, topic and consumer group.

mod common;

use common::prod::{eventually, ProdEnv};
use common::users;
use engine::ports::{LogRecord, OrderLog};
use engine::{Campaign, CampaignId, Control, OrderRecord, UserId};
use order_log::{KafkaLog, KafkaLogConfig};
use serde_json::json;
use std::sync::Arc;

/// The tests of this file stop shared services (the broker) or load them
/// heavily; they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn brokers() -> String {
    std::env::var("SECKILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Creates the campaign through a gateway (so it is in MySQL) and returns
/// the engine's view of it, to build order records the same way.
async fn campaign(env: &ProdEnv, dir: &std::path::Path, id: &str, stock: u64) -> Campaign {
    let g = env.gateway(dir, "g1");
    let v = g.create_campaign(json!({ "id": id, "stock": stock })).await;
    let field = |k: &str| v[k].as_u64().expect("numeric field");
    Campaign {
        id: CampaignId::parse(id).expect("id"),
        title: v["title"].as_str().expect("title").to_string(),
        price_cents: field("price_cents"),
        stock_total: stock,
        starts_at_ms: field("starts_at_ms"),
        ends_at_ms: field("ends_at_ms"),
        per_user_limit: 1,
        quiz: false,
        payment_window_s: 900,
        load_test: false,
        control: Control::Active,
        stock_buckets: None,
    }
}

/// Appends one order per user straight to the topic (the gateway's job,
/// done here directly so the test is about the writer alone).
async fn produce(env: &ProdEnv, c: &Campaign, names: &[String]) {
    let cfg = KafkaLogConfig::new(brokers(), env.topic());
    let log = Arc::new(
        KafkaLog::connect(cfg, Arc::new(|_, _| {}))
            .await
            .expect("kafka"),
    );
    let chunks: Vec<Vec<String>> = names
        .chunks(names.len().div_ceil(100))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (log, c) = (Arc::clone(&log), c.clone());
        tasks.push(tokio::spawn(async move {
            for u in chunk {
                let rec = OrderRecord::new(&c, UserId::parse(&u).expect("user"), 1, c.starts_at_ms);
                log.append(&LogRecord::Order(rec))
                    .await
                    .expect("acknowledged append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer task");
    }
}

/// Acceptance: the writer is `kill -9`ed 5 times while draining 20,000
/// orders; every order ends in MySQL exactly once and the guarded sold
/// counter equals the row count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_five_times_lands_every_order_once() {
    let _serial = SERIAL.lock().await;
    let env = ProdEnv::new("kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("kill-{}", std::process::id());
    let c = campaign(&env, dir.path(), &id, 20_000).await;
    produce(&env, &c, &users("k-", 20_000)).await;

    // A paced writer (about 4,000 rows/s) so the kills land mid-drain, with
    // a short session so a killed writer's partitions move on quickly.
    let slow = [
        "--writer-rows-per-s",
        "4000",
        "--writer-batch-rows",
        "400",
        "--kafka-session-timeout-ms",
        "6000",
    ];
    let mut writer = env.writer_with(dir.path(), "w", &slow);
    let mut last = 0;
    for kill in 0..5 {
        let moved = eventually(30, async || env.counts(&id).await.0 >= last + 1_500).await;
        assert!(moved, "the writer made no progress before kill {kill}");
        let (rows, _, _) = env.counts(&id).await;
        assert!(
            rows < 20_000,
            "drained before kill {kill}: the test needs a slower writer"
        );
        writer.0.kill().expect("SIGKILL");
        writer.0.wait().expect("reap");
        last = rows;
        writer = env.writer_with(dir.path(), &format!("w{kill}"), &slow);
    }
    assert!(
        eventually(60, async || env.counts(&id).await.0 >= 20_000).await,
        "the writer never finished draining"
    );
    let (rows, distinct, sold) = env.counts(&id).await;
    assert_eq!((rows, distinct, sold), (20_000, 20_000, 20_000));
}

/// Acceptance: a record that is not an order is dead-lettered after 3
/// tries, counted in stats, and the writer keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_record_is_dead_lettered_and_the_writer_keeps_going() {
    let _serial = SERIAL.lock().await;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let env = ProdEnv::new("poison");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("poison-{}", std::process::id());
    let c = campaign(&env, dir.path(), &id, 10).await;
    produce(&env, &c, &users("before-", 3)).await;
    let raw: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    raw.send(
        FutureRecord::to(env.topic())
            .key(id.as_str())
            .payload("this is not an order"),
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("poison produced");
    produce(&env, &c, &users("after-", 3)).await;

    let _writer = env.writer(dir.path(), "w");
    assert!(
        eventually(30, async || env.counts(&id).await.0 >= 6).await,
        "the orders around the poison record never landed"
    );
    let g = env.gateway(dir.path(), "g2");
    let ok = eventually(30, async || g.stats(&id).await["dead_letters_total"] == 1).await;
    assert!(
        ok,
        "the poison record is not counted: {}",
        g.stats(&id).await
    );
    assert_eq!(env.counts(&id).await, (6, 6, 6));
}

/// A private Redis server on a free port, killed when dropped.
struct PrivateRedis {
    port: u16,
    proc: Option<common::Proc>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = PrivateRedis { port, proc: None };
        r.restart_empty();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (as a crash would) and starts an empty one.
    fn restart_empty(&mut self) {
        self.stop();
        self.start_empty();
    }

    fn stop(&mut self) {
        self.proc = None; // Proc's drop kills -9 and reaps
    }

    fn start_empty(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh needs it too)");
        self.proc = Some(common::Proc(child));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Grabs once per user through alternating gateways; returns the acked
/// (user, order id) pairs and the count of each (status, code).
async fn grab_all(
    gateways: &[&common::Server],
    campaign: &str,
    tokens: &[String],
    users: std::ops::Range<usize>,
) -> (
    Vec<(usize, String)>,
    std::collections::HashMap<(u16, String), usize>,
) {
    let mut acked = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for u in users {
        let r = gateways[u % gateways.len()]
            .grab(campaign, &tokens[u])
            .await;
        if r.status == 202 {
            acked.push((
                u,
                r.json()["order_id"].as_str().expect("order id").to_string(),
            ));
        }
        *seen.entry((r.status, r.code())).or_insert(0) += 1;
    }
    (acked, seen)
}

/// Acceptance: Redis restarted empty mid-sale. The gateways stop selling
/// the campaign (503, never 202), `seckill reconcile --repair` restores it
/// from MySQL, and the sale ends with exactly the stock sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_blocks_until_reconciled_and_the_count_is_exact() {
    let _serial = SERIAL.lock().await;
    let mut redis = PrivateRedis::start();
    let mut env = ProdEnv::new("redisloss");
    env.envs.push(("SECKILL_REDIS_URL", redis.url()));
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("loss-{}", std::process::id());
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    let _writer = env.writer(dir.path(), "w");
    g1.create_campaign(json!({ "id": id, "stock": 200 })).await;
    let path = format!("/api/v1/campaigns/{id}");
    assert!(eventually(10, async || g2.get(&path, None).await.status == 200).await);
    let names = users("r-", 1_000);
    let tokens = g1.tokens(&names).await;

    let (first, _) = grab_all(&[&g1, &g2], &id, &tokens, 0..60).await;
    assert_eq!(first.len(), 60);
    redis.stop();
    assert!(
        eventually(10, async || g1.get("/readyz", None).await.status == 503).await,
        "readiness must report the ledger down"
    );
    redis.start_empty();
    assert!(
        eventually(10, async || g1.get("/readyz", None).await.status == 200).await,
        "readiness must recover with the ledger"
    );
    let (during, seen) = grab_all(&[&g1, &g2], &id, &tokens, 60..160).await;
    assert!(
        during.is_empty(),
        "sold {} units with the ledger gone",
        during.len()
    );
    assert_eq!(
        seen.get(&(503, "unavailable".to_string())),
        Some(&100),
        "{seen:?}"
    );

    // The operator: pause, let the writer drain, reconcile, resume.
    operator(&g1, &id, "pause").await;
    assert!(eventually(30, async || env.counts(&id).await.0 >= 60).await);
    let mut reconcile = vec![
        "reconcile",
        "--config",
        common::prod::CONFIG,
        "--campaign",
        &id,
    ];
    let out = run_seckill(&env, &reconcile);
    assert_eq!(
        out.0, 3,
        "a lost ledger is reported, not repaired, without --repair: {}",
        out.1
    );
    assert!(out.1.contains("ledger lost this campaign"), "{}", out.1);
    reconcile.push("--repair");
    let out = run_seckill(&env, &reconcile);
    assert_eq!(out.0, 0, "{}", out.1);
    assert!(out.1.contains("140 units remaining"), "{}", out.1);
    operator(&g1, &id, "resume").await;
    // Gateways learn the resume and the restored stock within their refresh periods.
    resumed_sale(&g2, &id, &tokens[999], 10).await;
    let (last, seen) = grab_all(&[&g1, &g2], &id, &tokens, 160..999).await;
    assert_eq!(last.len(), 139, "{seen:?}");
    assert!(eventually(30, async || env.counts(&id).await.0 >= 200).await);
    assert_eq!(env.counts(&id).await, (200, 200, 200));
    let rows: std::collections::HashSet<String> =
        env.rows(&id).await.into_iter().map(|(o, _)| o).collect();
    for (_, order) in first.iter().chain(&last) {
        assert!(rows.contains(order), "acknowledged order {order} missing");
    }
}

/// An operator's kill-switch call (`pause` or `resume`) that must succeed.
async fn operator(g: &common::Server, id: &str, action: &str) {
    let r = g
        .admin_post(&format!("/admin/v1/campaigns/{id}/{action}"), &json!({}))
        .await;
    assert_eq!(
        r.status,
        200,
        "{action}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Waits until a gateway sells again (it learns a resume and restored stock
/// within its refresh periods); the probe buyer takes one unit.
async fn resumed_sale(g: &common::Server, id: &str, probe: &str, secs: u64) {
    assert!(
        eventually(secs, async || g.grab(id, probe).await.status == 202).await,
        "selling did not resume within {secs} s"
    );
}

/// Runs `seckill <args>` with the test's environment; (exit code, stdout+stderr).
fn run_seckill(env: &ProdEnv, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seckill"));
    cmd.args(args).env("SECKILL_LOG", "warn");
    for (k, v) in &env.envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run seckill");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A TCP proxy to MySQL that a test can cut: while cut, every connection
/// through it is dropped and new ones are closed at once.
struct CuttableProxy {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttableProxy {
    async fn start(upstream: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (c, g) = (Arc::clone(&cut), Arc::clone(&generation));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let mut killed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        CuttableProxy {
            port,
            cut,
            generation,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// Sum of the group's committed offsets on the topic (what a restarted
/// writer would resume from).
async fn committed(env: &ProdEnv) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let group = env.envs[2].1.clone();
    let topic = env.topic().to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &group)
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..order_log::kafka::PARTITIONS_DEFAULT {
            tpl.add_partition(&topic, p);
        }
        let got = c
            .committed_offsets(tpl, std::time::Duration::from_secs(10))
            .expect("committed offsets");
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    })
    .await
    .expect("blocking task")
}

/// Acceptance: MySQL unreachable for 20 s while the writer drains. The
/// writer pauses without committing offsets, then drains everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_outage_pauses_the_writer_without_committing() {
    let _serial = SERIAL.lock().await;
    let mut env = ProdEnv::new("mysqlout");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("out-{}", std::process::id());
    let c = campaign(&env, dir.path(), &id, 5_000).await;
    produce(&env, &c, &users("m-", 5_000)).await;
    let proxy = CuttableProxy::start("127.0.0.1:3306").await;
    let direct = env.envs[0].1.clone();
    let via_proxy = direct.replace("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        direct, via_proxy,
        "the test must route the writer through the proxy"
    );
    env.envs[0].1 = via_proxy;
    let slow = ["--writer-rows-per-s", "500", "--writer-batch-rows", "100"];
    let _writer = env.writer_with(dir.path(), "w", &slow);
    env.envs[0].1 = direct;
    assert!(
        eventually(30, async || env.counts(&id).await.0 >= 500).await,
        "no progress"
    );

    proxy.set_cut(true);
    // Let batches in flight finish or fail, then watch 20 s of outage.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (rows_cut, _, _) = env.counts(&id).await;
    let offsets_cut = committed(&env).await;
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    assert_eq!(
        env.counts(&id).await.0,
        rows_cut,
        "rows landed with MySQL unreachable"
    );
    assert_eq!(
        committed(&env).await,
        offsets_cut,
        "offsets committed during the outage"
    );
    assert!(
        rows_cut < 5_000,
        "drained before the outage; the test needs a slower writer"
    );

    proxy.set_cut(false);
    assert!(
        eventually(60, async || env.counts(&id).await.0 >= 5_000).await,
        "the writer did not drain after MySQL came back"
    );
    assert_eq!(env.counts(&id).await, (5_000, 5_000, 5_000));
}

fn services(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    let status = std::process::Command::new("bash")
        .args([script, cmd])
        .status()
        .expect("run scripts/services.sh");
    assert!(status.success(), "scripts/services.sh {cmd}");
}

/// Records of the topic the writers have not committed yet.
async fn lag(env: &ProdEnv) -> u64 {
    order_log::kafka::group_lag(&brokers(), env.topic(), &env.envs[2].1)
        .await
        .expect("group lag")
}

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP: the broker hangs, connections stay open.
    Paused,
    /// kill -9, restarted on the same storage 20 s later.
    Killed,
}

/// Acceptance: the broker is stopped for 20 s mid-sale. Grabs during the
/// outage get 503 within the bounded wait (never 202, never a hang); no
/// acknowledged order is lost; every order with an unknown outcome ends
/// persisted or released after reconciliation; nothing is oversold; the
/// sale resumes and ends exact.
async fn broker_outage_mid_sale(kind: Outage) {
    const STOCK: usize = 300;
    let mut env = ProdEnv::new(&format!("{kind:?}").to_lowercase());
    // Longer than the outage: records queued during it are retried and
    // delivered when the broker returns, instead of timing out in flight
    // (which tansu 0.6, unlike Kafka, does not survive: see scripts/services.sh).
    env.envs
        .push(("SECKILL_KAFKA_MESSAGE_TIMEOUT_MS", "45000".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("broker-{kind:?}-{}", std::process::id()).to_lowercase();
    let g1 = Arc::new(env.gateway(dir.path(), "g1"));
    let g2 = Arc::new(env.gateway(dir.path(), "g2"));
    let _writer = env.writer(dir.path(), "w");
    g1.create_campaign(json!({ "id": id, "stock": STOCK }))
        .await;
    let path = format!("/api/v1/campaigns/{id}");
    assert!(eventually(10, async || g2.get(&path, None).await.status == 200).await);
    let tokens = Arc::new(g1.tokens(&users("b-", 1_000)).await);
    let (first, _) = grab_all(&[&g1, &g2], &id, &tokens, 0..50).await;
    assert_eq!(first.len(), 50);

    let outage_start = std::time::Instant::now();
    services(match kind {
        Outage::Paused => "kafka-pause",
        Outage::Killed => "kafka-kill",
    });
    let mut during = Vec::new();
    for u in 50..150 {
        let g = Arc::clone(if u % 2 == 0 { &g1 } else { &g2 });
        let (tokens, id) = (Arc::clone(&tokens), id.clone());
        during.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = g.grab(&id, &tokens[u]).await;
            (
                u,
                r.status,
                r.code(),
                r.json()["order_id"].as_str().map(str::to_string),
                t.elapsed(),
            )
        }));
    }
    let mut unknown = Vec::new();
    for d in during {
        let (u, status, code, order, took) = d.await.expect("grab task");
        assert!(
            took < std::time::Duration::from_secs(5),
            "a grab hung for {took:?}"
        );
        assert_eq!(
            status, 503,
            "user {u} got {status} {code} with the broker down"
        );
        if let Some(o) = order {
            unknown.push((u, o));
        }
    }
    let outage = std::time::Duration::from_secs(20);
    tokio::time::sleep(outage.saturating_sub(outage_start.elapsed())).await;
    services(match kind {
        Outage::Paused => "kafka-resume",
        Outage::Killed => "kafka-start",
    });

    // The operator: pause, let the producers deliver what they held and the
    // writer drain, then reconcile. The producers retry every few hundred ms,
    // so a few seconds after the broker is back their queues are empty.
    operator(&g1, &id, "pause").await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    if !eventually(60, async || lag(&env).await == 0).await {
        let log = std::fs::read_to_string(dir.path().join("w.stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "the writer did not catch up (lag {}); its log ends:\n{}",
            lag(&env).await,
            tail.join("\n")
        );
    }
    let reconcile = [
        "reconcile",
        "--config",
        common::prod::CONFIG,
        "--campaign",
        &id,
        "--repair",
    ];
    let out = run_seckill(&env, &reconcile);
    assert_eq!(out.0, 0, "{}", out.1);
    let rows: std::collections::HashSet<String> =
        env.rows(&id).await.into_iter().map(|(o, _)| o).collect();
    for (_, order) in &first {
        assert!(rows.contains(order), "acknowledged order {order} lost");
    }
    let settled_in = unknown.iter().filter(|(_, o)| rows.contains(o)).count();
    let stats = g1.stats(&id).await;
    let held = stats["reserved"].as_u64().expect("reserved") as usize;
    assert_eq!(
        held,
        rows.len(),
        "after repair the ledger holds exactly the stored orders: {stats}"
    );
    assert!(rows.len() <= STOCK);
    eprintln!(
        "{kind:?}: {} unknown outcomes, {settled_in} persisted, the rest released",
        unknown.len()
    );

    operator(&g1, &id, "resume").await;
    resumed_sale(&g2, &id, &tokens[999], 15).await;
    let (last, _) = grab_all(&[&g1, &g2], &id, &tokens, 150..999).await;
    assert_eq!(rows.len() + 1 + last.len(), STOCK, "sold exactly the stock");
    assert!(eventually(30, async || env.counts(&id).await.0 as usize >= STOCK).await);
    let n = STOCK as i64;
    assert_eq!(env.counts(&id).await, (n, n, n));
    let rows: std::collections::HashSet<String> =
        env.rows(&id).await.into_iter().map(|(o, _)| o).collect();
    for (_, order) in first.iter().chain(&last) {
        assert!(rows.contains(order), "acknowledged order {order} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_for_20_s_mid_sale() {
    let _serial = SERIAL.lock().await;
    broker_outage_mid_sale(Outage::Paused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_for_20_s_mid_sale() {
    let _serial = SERIAL.lock().await;
    broker_outage_mid_sale(Outage::Killed).await;
}
