//! The production shape behind nginx (`scripts/lb.sh`,
//! `deploy/nginx/seckill.conf.template`): nginx plays the CDN (the folder
//! the gateways publish into at preload) and the load balancer (`/api`,
//! `/admin` over two gateways). Needs `scripts/services.sh up` (Redis, the
//! Kafka-API broker, MariaDB); `lb.sh up` installs Debian's nginx if missing.

mod common;

use common::lb::{address, Nginx};
use common::prod::{eventually, ProdEnv, CONFIG};
use common::{now_ms, users, Reply, Server};
use rand::seq::SliceRandom;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `config/production.toml` with nginx (127.0.0.1) as the trusted proxy,
/// as README's production shape runs it: the gateways then count each
/// buyer under the address nginx saw, not all under 127.0.0.1.
fn behind_nginx_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(CONFIG).expect("config/production.toml");
    let edited = text.replace("trusted_proxies = []", "trusted_proxies = [\"127.0.0.1\"]");
    assert_ne!(
        edited, text,
        "config/production.toml has no `trusted_proxies = []` line"
    );
    let path = dir.join("production-behind-nginx.toml");
    std::fs::write(&path, edited).expect("write config");
    path
}

/// A production gateway with its own data dir whose `cdn` folder is the
/// shared `cdn` (a shared mount across machines; here a symlink), so
/// whichever gateway runs a preload publishes where nginx serves from.
fn gateway(env: &ProdEnv, dir: &Path, name: &str, config: &Path, cdn: &Path) -> Server {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    std::os::unix::fs::symlink(cdn, data.join("cdn")).expect("cdn symlink");
    Server::start_with(
        &data,
        &["--config", config.to_str().expect("utf-8 path")],
        &env.envs,
    )
}

/// Grabs this gateway has decided (every outcome): the count of the grab
/// latency histogram, summed over its outcomes.
async fn grabs_decided(g: &Server) -> u64 {
    let text = String::from_utf8_lossy(&g.get("/metrics", None).await.body).to_string();
    let n: f64 = text
        .lines()
        .filter(|l| l.starts_with("seckill_grab_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    n as u64
}

/// Orders this gateway logged for `campaign` (`seckill_orders_logged_total`).
async fn orders_logged(g: &Server, campaign: &str) -> u64 {
    let text = String::from_utf8_lossy(&g.get("/metrics", None).await.body).to_string();
    let prefix = format!("seckill_orders_logged_total{{campaign=\"{campaign}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn body(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).to_string()
}

/// Creates a campaign through nginx (live now), then waits until both
/// gateways know it (each re-reads campaigns from MySQL), so the preload
/// that follows may land on either.
async fn create_through(lb: &Nginx, gateways: [&Server; 2], spec: serde_json::Value) {
    let now = now_ms();
    let mut full = json!({
        "title": "Phone behind nginx", "price_cents": 49_900,
        "starts_at_ms": now - 1000, "ends_at_ms": now + 3_600_000,
    });
    for (k, v) in spec.as_object().expect("object") {
        full[k] = v.clone();
    }
    let id = full["id"].as_str().expect("id").to_string();
    let r = lb.admin_post("/admin/v1/campaigns", &full).await;
    assert_eq!(r.status, 201, "create through nginx: {}", body(&r));
    for g in gateways {
        let path = format!("/api/v1/campaigns/{id}");
        assert!(
            eventually(10, async || g.get(&path, None).await.status == 200).await,
            "gateway {} never learned {id}",
            g.base
        );
    }
}

/// Two gateways and a writer behind nginx: the campaign is created and
/// preloaded through nginx, the whole sale runs through nginx, and then:
/// the sale is exact against MySQL; both gateways decided grabs and every
/// grab was decided by exactly one of them (nginx never sent a POST
/// twice); the item page, its assets and the quiz images come from the CDN
/// folder with their cache headers, even with every gateway stopped; a
/// pause reaches buyers through nginx as 423 `paused`; with no gateway
/// left, nginx answers 503 `unavailable` in the API's error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_behind_nginx_is_exact_balanced_and_served_from_the_cdn_folder() {
    let env = ProdEnv::new("nginx");
    let dir = tempfile::tempdir().expect("tempdir");
    let cdn = dir.path().join("cdn");
    std::fs::create_dir_all(&cdn).expect("cdn dir");
    let config = behind_nginx_config(dir.path());
    let mut g1 = gateway(&env, dir.path(), "g1", &config, &cdn);
    let mut g2 = gateway(&env, dir.path(), "g2", &config, &cdn);
    let _writer = env.writer(dir.path(), "w1");
    let mut lb = Nginx::start(&cdn, &[&g1, &g2]);
    assert!(
        eventually(10, async || lb.get("/readyz", None).await.status == 200).await,
        "/readyz through nginx"
    );

    // ---- operator: create and preload through nginx (admin balanced)
    let id = format!("lb-{}", std::process::id());
    let quiz_id = format!("lbq-{}", std::process::id());
    let stock = 100usize;
    create_through(&lb, [&g1, &g2], json!({ "id": id, "stock": stock })).await;
    create_through(
        &lb,
        [&g1, &g2],
        json!({ "id": quiz_id, "stock": 5, "quiz": true, "quiz_questions": 10 }),
    )
    .await;
    let mut preloaded_by = Vec::new();
    for c in [&id, &quiz_id] {
        let r = lb
            .admin_post(&format!("/admin/v1/campaigns/{c}/preload"), &json!({}))
            .await;
        assert_eq!(r.status, 200, "preload {c} through nginx: {}", body(&r));
        let report = r.json();
        assert_eq!(report["page"], format!("/items/{c}.html"), "{report}");
        let written = report["static_page_file"].as_str().expect("page file");
        preloaded_by.push(written.to_string());
        if c == &quiz_id {
            assert_eq!(report["quiz_images"]["complete"], true, "{report}");
        }
    }
    eprintln!("preloads written by the gateways at {preloaded_by:?}");
    let page_file = cdn.join("items").join(format!("{id}.html"));
    let page_on_disk = std::fs::read(&page_file).expect("the preload published the page");

    // ---- buyers: a sale through nginx only
    let names = users("lb-", 1_500);
    let tokens = Arc::new(lb.tokens(&names).await);
    let before = (grabs_decided(&g1).await, grabs_decided(&g2).await);
    let mut plan: Vec<usize> = (0..3_000).map(|i| i % names.len()).collect();
    plan.shuffle(&mut rand::rng());
    let plan = Arc::new(plan);
    let http = Arc::new(lb.client());
    let concurrency = 64;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (plan, tokens, id, http) = (
            Arc::clone(&plan),
            Arc::clone(&tokens),
            id.clone(),
            Arc::clone(&http),
        );
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for &u in plan.iter().skip(w).step_by(concurrency) {
                let r = http.grab(&id, &tokens[u]).await;
                let order = r.json()["order_id"].as_str().map(str::to_string);
                seen.push((u, r.status, r.code(), order));
            }
            seen
        }));
    }
    let mut outcomes: HashMap<(u16, String), usize> = HashMap::new();
    let mut acked: HashMap<String, usize> = HashMap::new();
    for w in workers {
        for (u, status, code, order) in w.await.expect("buyer") {
            *outcomes.entry((status, code)).or_default() += 1;
            if status == 202 {
                assert!(
                    acked.insert(order.expect("order id"), u).is_none(),
                    "an order id twice"
                );
            }
        }
    }
    let sale = started.elapsed();
    let sent = plan.len();
    assert_eq!(outcomes.values().sum::<usize>(), sent);
    for (status, code) in outcomes.keys() {
        assert!(
            matches!(
                (*status, code.as_str()),
                (202, "") | (409, "already_bought") | (410, "sold_out")
            ),
            "unexpected {status} {code} through nginx: {outcomes:?}"
        );
    }
    assert_eq!(acked.len(), stock, "winners == stock: {outcomes:?}");
    let winners: HashSet<usize> = acked.values().copied().collect();
    assert_eq!(winners.len(), stock, "no buyer twice");

    // Both gateways sold, and every grab was decided exactly once.
    let after = (grabs_decided(&g1).await, grabs_decided(&g2).await);
    let per_gateway = (after.0 - before.0, after.1 - before.1);
    let logged = (orders_logged(&g1, &id).await, orders_logged(&g2, &id).await);
    eprintln!(
        "{sent} grabs through nginx in {sale:?}: decided by g1 {} / g2 {}; orders logged g1 {} / g2 {}; outcomes {outcomes:?}",
        per_gateway.0, per_gateway.1, logged.0, logged.1
    );
    assert_eq!(
        per_gateway.0 + per_gateway.1,
        sent as u64,
        "each grab sent through nginx reached exactly one gateway"
    );
    for n in [per_gateway.0, per_gateway.1] {
        assert!(
            n >= sent as u64 / 4,
            "round robin left a gateway with {n} of {sent} grabs"
        );
    }
    assert_eq!(logged.0 + logged.1, stock as u64, "{logged:?}");
    assert!(
        logged.0 > 0 && logged.1 > 0,
        "both gateways sold: {logged:?}"
    );

    // Exact in MySQL.
    assert!(
        eventually(30, async || env.rows(&id).await.len() >= stock).await,
        "the writer did not land {stock} rows"
    );
    assert_eq!(
        env.counts(&id).await,
        (stock as i64, stock as i64, stock as i64),
        "(rows, distinct orders, sold)"
    );
    let rows: HashSet<String> = env.rows(&id).await.into_iter().map(|(o, _)| o).collect();
    let acked_ids: HashSet<String> = acked.keys().cloned().collect();
    assert_eq!(
        rows, acked_ids,
        "MySQL holds exactly the acknowledged orders"
    );

    // ---- the CDN: item page, assets and a quiz image from the folder
    let page = http.get(&format!("/items/{id}.html"), None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        header(&page, "x-seckill-cdn"),
        "file",
        "served from the CDN folder"
    );
    assert_eq!(header(&page, "cache-control"), "public, max-age=5");
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert!(header(&page, "content-security-policy").contains("frame-ancestors 'none'"));
    assert!(page.headers.contains_key("last-modified") && page.headers.contains_key("etag"));
    assert_eq!(
        page.body.as_ref(),
        page_on_disk.as_slice(),
        "the preloaded file"
    );
    assert!(body(&page).contains(&format!("data-campaign-id=\"{id}\"")));
    let asset = http.get("/static/app.js", None).await;
    assert_eq!(
        (
            asset.status,
            header(&asset, "x-seckill-cdn"),
            header(&asset, "cache-control")
        ),
        (200, "file", "public, max-age=60")
    );
    assert_eq!(
        asset.body.as_ref(),
        std::fs::read(cdn.join("static").join("app.js"))
            .expect("app.js")
            .as_slice()
    );
    let q = http
        .get(
            &format!("/api/v1/campaigns/{quiz_id}/quiz"),
            Some(&tokens[0]),
        )
        .await;
    assert_eq!(q.status, 200, "quiz through nginx: {}", body(&q));
    let image_url = q.json()["image_url"]
        .as_str()
        .expect("image_url")
        .to_string();
    let image = http.get(&image_url, None).await;
    assert_eq!(
        (
            image.status,
            header(&image, "x-seckill-cdn"),
            header(&image, "cache-control"),
            header(&image, "content-type")
        ),
        (
            200,
            "file",
            "public, max-age=31536000, immutable",
            "image/png"
        ),
        "{image_url}"
    );
    let image_file = cdn.join(image_url.trim_start_matches('/'));
    assert_eq!(
        image.body.as_ref(),
        std::fs::read(&image_file)
            .expect("quiz image on disk")
            .as_slice()
    );
    // Not on disk: nginx asks a gateway (the origin), which answers in the API's shape.
    let missing = http.get("/items/no-such-campaign.html", None).await;
    assert_eq!(
        (missing.status, header(&missing, "x-seckill-cdn")),
        (404, "")
    );
    assert_eq!(missing.code(), "campaign_not_found", "{}", body(&missing));
    // One gateway's metrics are not the balancer's to show.
    assert_eq!(http.get("/metrics", None).await.status, 404);

    // ---- kill switch through nginx: 423 from both gateways
    let r = http
        .post_json(
            &format!("/admin/v1/campaigns/{id}/pause"),
            Some(common::ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "pause through nginx: {}", body(&r));
    let probe = &tokens[names.len() - 1];
    let paused = async || {
        for _ in 0..4 {
            let r = http.grab(&id, probe).await;
            if (r.status, r.code().as_str()) != (423, "paused") {
                return false;
            }
        }
        true
    };
    assert!(eventually(5, paused).await, "no 423 paused through nginx");
    let before = (grabs_decided(&g1).await, grabs_decided(&g2).await);
    for _ in 0..10 {
        let r = http.grab(&id, probe).await;
        assert_eq!((r.status, r.code().as_str()), (423, "paused"));
    }
    let after = (grabs_decided(&g1).await, grabs_decided(&g2).await);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "both gateways answered the paused grabs: {before:?} -> {after:?}"
    );

    // ---- every gateway gone: the CDN still serves, the API says unavailable
    for g in [&mut g1, &mut g2] {
        assert!(g.terminate().success(), "gateway stops cleanly");
    }
    let page = http.get(&format!("/items/{id}.html"), None).await;
    assert_eq!(
        (page.status, header(&page, "x-seckill-cdn")),
        (200, "file"),
        "the item page without any gateway"
    );
    assert_eq!(page.body.as_ref(), page_on_disk.as_slice());
    let api = http.get("/api/v1/time", None).await;
    assert_eq!(
        (api.status, api.code().as_str(), header(&api, "retry-after")),
        (503, "unavailable", "1"),
        "{}",
        body(&api)
    );

    // ---- nginx's own record: one gateway per grab, never two
    lb.stop();
    let log = lb.access_log();
    let grab_path = format!("\"POST /api/v1/campaigns/{id}/grab ");
    let mut by_upstream: HashMap<String, usize> = HashMap::new();
    for line in log.lines().filter(|l| l.contains(&grab_path)) {
        let upstream = line
            .split(" upstream=")
            .nth(1)
            .and_then(|rest| rest.split(" upstream_status=").next())
            .expect("upstream field");
        assert!(
            !upstream.contains(','),
            "a grab sent to two gateways: {line}"
        );
        *by_upstream.entry(upstream.to_string()).or_default() += 1;
    }
    eprintln!("grabs in nginx's access log by gateway: {by_upstream:?}");
    let logged_grabs: usize = by_upstream.values().sum();
    assert!(
        logged_grabs >= sent + 10,
        "{logged_grabs} grab lines for {sent}+ grabs"
    );
    for g in [&g1, &g2] {
        assert!(by_upstream.contains_key(address(g)), "{by_upstream:?}");
    }
}

/// Each buyer keeps its own address through nginx and cannot choose
/// another: nginx sets `X-Forwarded-For` to the address it saw and the
/// gateway trusts it from 127.0.0.1 only (`limits.trusted_proxies`). With
/// a per-address limit of burst 5, one client (127.0.0.2) spending its
/// budget leaves another (127.0.0.3) untouched, and a spoofed
/// `X-Forwarded-For` (also from 127.0.0.1 itself, the proxy's own address)
/// does not escape the limit. An embedded gateway: the header handling
/// does not depend on the backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_buyer_keeps_its_own_address_through_nginx_and_cannot_choose_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("behind-nginx.toml");
    std::fs::write(&config, "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n").expect("config");
    let limits = [
        ("SECKILL_LIMITS", "on".to_string()),
        ("SECKILL_RATE_IP_PER_S", "1".to_string()),
        ("SECKILL_RATE_IP_BURST", "5".to_string()),
    ];
    let g = Server::start_with(
        &dir.path().join("g"),
        &["--config", config.to_str().expect("utf-8")],
        &limits,
    );
    let lb = Nginx::start(&g.data_dir.join("cdn"), &[&g]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let spoof = [("x-forwarded-for", "198.51.100.7")];
    for (who, client) in [
        ("127.0.0.2", lb.client_from(ip("127.0.0.2"))),
        ("127.0.0.1", lb.client_from(ip("127.0.0.1"))),
    ] {
        // Spend the budget: within 12 requests (burst 5 + 1/s) a 429 comes.
        let mut limited = false;
        for _ in 0..12 {
            let r = client.get("/api/v1/time", None).await;
            if r.status == 429 {
                assert_eq!(r.code(), "rate_limited");
                limited = true;
                break;
            }
            assert_eq!(r.status, 200, "{}", body(&r));
        }
        assert!(limited, "{who}: never limited");
        let r = client
            .request("GET", "/api/v1/time", &spoof, bytes::Bytes::new())
            .await;
        assert_eq!(
            r.status, 429,
            "{who}: a spoofed X-Forwarded-For escaped the per-address limit"
        );
    }
    // Another address behind the same nginx has its own, full budget.
    let other = lb.client_from(ip("127.0.0.3"));
    for i in 0..4 {
        let r = other.get("/api/v1/time", None).await;
        assert_eq!(
            r.status, 200,
            "request {i} of 127.0.0.3 was counted under another client's address"
        );
    }
}

/// A stand-in upstream that reads each request (head and body) and hangs
/// up without answering, as a gateway that dies mid-request would; counts
/// the requests it received by method.
async fn hang_up_upstream() -> (String, Arc<std::sync::Mutex<HashMap<String, usize>>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let counts = Arc::clone(&seen);
    // Ends with the test's runtime.
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded: a request head and a small body.
                while buf.len() < 64 * 1024 {
                    let Ok(Ok(n)) = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        conn.read(&mut chunk),
                    )
                    .await
                    else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        let method = text.split(' ').next().unwrap_or("").to_string();
                        *counts.lock().expect("counts").entry(method).or_default() += 1;
                        return; // hang up: the request was sent, no answer comes
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// nginx moves a GET on to the next gateway when one fails, but never a
/// grab (a POST) once it was sent: the gateway that received it may have
/// reserved a unit and logged the order, and a second gateway deciding
/// the same click again is what `proxy_next_upstream` without
/// `non_idempotent` rules out. Behind nginx: a stand-in that hangs up after
/// reading each request, and a real (embedded) gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_grab_is_never_sent_to_a_second_gateway_but_a_get_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Server::start(&dir.path().join("g"), &[]);
    let id = "retry";
    g.create_campaign(json!({ "id": id, "stock": 1000 })).await;
    let names = users("r-", 20);
    let tokens = g.tokens(&names).await;
    let (dead, seen) = hang_up_upstream().await;
    // nginx stops sending to an upstream after 3 failures (`max_fails`) for
    // 5 s, so grabs and GETs each get a fresh nginx: round robin over two
    // upstreams hands the stand-in one of the first two requests of each.
    let before = grabs_decided(&g).await;
    let mut answers: HashMap<(u16, String), usize> = HashMap::new();
    {
        let lb = Nginx::start_on(&g.data_dir.join("cdn"), &[&dead, address(&g)]);
        let http = lb.client();
        for token in &tokens {
            let r = http.grab(id, token).await;
            *answers.entry((r.status, r.code())).or_default() += 1;
        }
    }
    {
        let lb = Nginx::start_on(&g.data_dir.join("cdn"), &[&dead, address(&g)]);
        let http = lb.client();
        for i in 0..tokens.len() {
            // Every one answered (by the gateway, after the stand-in failed).
            let r = http.get("/api/v1/time", None).await;
            assert_eq!(r.status, 200, "GET {i}: {}", body(&r));
        }
    }
    let decided = grabs_decided(&g).await - before;
    let seen = seen.lock().expect("counts").clone();
    eprintln!("stand-in received {seen:?}; answers {answers:?}; the gateway decided {decided}");
    let lost = seen.get("POST").copied().unwrap_or(0);
    assert!(lost > 0, "the stand-in never received a grab: {seen:?}");
    assert!(seen.get("GET").copied().unwrap_or(0) > 0, "{seen:?}");
    assert_eq!(
        answers.get(&(503, "unavailable".to_string())).copied(),
        Some(lost),
        "each grab the stand-in took is answered 503 unavailable, not retried: {answers:?}"
    );
    assert_eq!(
        answers.get(&(202, String::new())).copied().unwrap_or(0) as u64,
        decided,
        "the gateway decided exactly the grabs answered 202: {answers:?}"
    );
    assert_eq!(decided as usize + lost, tokens.len(), "{answers:?}");
}
