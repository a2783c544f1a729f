//! The rest of the contract over real HTTP: clock, campaign status, pages,
//! preload, kill switch, stats, export, metrics and the OpenAPI document.

mod common;

use common::{now_ms, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_buyer_endpoints_follow_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);

    let before = now_ms();
    let t = server.get("/api/v1/time", None).await;
    assert_eq!(t.status, 200);
    let server_now = t.json()["now_ms"].as_u64().expect("now_ms");
    assert!(
        server_now >= before && server_now <= now_ms() + 1,
        "clock: {server_now}"
    );

    let created = server
        .create_campaign(
            json!({ "id": "tv", "title": "TV <b>4K</b>", "price_cents": 12_345, "stock": 3 }),
        )
        .await;
    assert_eq!(created["control"], "active");
    let c = server.get("/api/v1/campaigns/tv", None).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["cache-control"], "public, max-age=1");
    let view = c.json();
    for key in [
        "id",
        "title",
        "price_cents",
        "stock_total",
        "starts_at_ms",
        "ends_at_ms",
        "state",
        "remaining_hint",
        "quiz",
        "hidden_path",
    ] {
        assert!(view.get(key).is_some(), "campaign view lacks {key}: {view}");
    }
    assert_eq!(view["state"], "live");
    assert_eq!(view["remaining_hint"], 3);

    // The page is rendered, escaped, cacheable and locked to our origin.
    let page = server.get("/items/tv.html", None).await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("TV &lt;b&gt;4K&lt;/b&gt;") && html.contains("123.45"));
    assert_eq!(
        page.headers["content-security-policy"],
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("max-age"));
    assert!(!page.headers.contains_key("set-cookie"));
    assert_eq!(server.get("/static/app.js", None).await.status, 200);
    assert_eq!(server.get("/items/nope.html", None).await.status, 404);

    // Preload is safe to repeat and writes the CDN copy of the page.
    let p1 = server
        .admin_post("/admin/v1/campaigns/tv/preload", &json!({}))
        .await;
    assert_eq!(p1.status, 200, "{}", String::from_utf8_lossy(&p1.body));
    assert_eq!(
        p1.json()["ledger_newly_loaded"],
        false,
        "create already loaded the stock"
    );
    let file = p1.json()["static_page_file"]
        .as_str()
        .expect("path")
        .to_string();
    assert_eq!(std::fs::read_to_string(&file).expect("page file"), html);
    let p2 = server
        .admin_post("/admin/v1/campaigns/tv/preload", &json!({}))
        .await;
    assert_eq!(p2.json()["remaining"], 3);

    // Kill switch: pause hides the stock, resume restores it, stop is final.
    let token = server.tokens(&["viewer".to_string()]).await.remove(0);
    let paused = server
        .admin_post("/admin/v1/campaigns/tv/pause", &json!({}))
        .await;
    assert_eq!(paused.json()["state"], "paused");
    assert_eq!(server.grab("tv", &token).await.code(), "paused");
    let resumed = server
        .admin_post("/admin/v1/campaigns/tv/resume", &json!({}))
        .await;
    assert_eq!(resumed.json()["state"], "live");
    let won = server.grab("tv", &token).await;
    assert_eq!(won.status, 202);
    // Per-buyer answers never sit in a shared cache.
    assert_eq!(won.headers["cache-control"], "no-store");
    assert_eq!(
        server
            .get("/admin/v1/campaigns", Some(ADMIN_TOKEN))
            .await
            .headers["cache-control"],
        "no-store"
    );
    let order_id = won.json()["order_id"]
        .as_str()
        .expect("order id")
        .to_string();
    let stopped = server
        .admin_post("/admin/v1/campaigns/tv/stop", &json!({}))
        .await;
    assert_eq!(stopped.json()["state"], "ended");
    let again = server
        .admin_post("/admin/v1/campaigns/tv/resume", &json!({}))
        .await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (409, "campaign_stopped")
    );
    assert_eq!(server.grab("tv", &token).await.code(), "ended");

    // Stats, export and metrics agree on the one order.
    let stats = server.wait_persisted("tv", 1).await;
    for key in [
        "stock_total",
        "reserved",
        "sold",
        "remaining",
        "orders_queued",
        "orders_persisted",
        "orders_paid",
        "orders_expired",
        "rejected",
    ] {
        assert!(stats.get(key).is_some(), "stats lack {key}: {stats}");
    }
    assert_eq!(
        (stats["sold"].as_u64(), stats["remaining"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(stats["rejected"]["paused"], 1, "{stats}");
    assert_eq!(stats["rejected"]["ended"], 1, "{stats}");
    let csv = server
        .get(
            "/admin/v1/campaigns/tv/orders?format=csv",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = String::from_utf8_lossy(&csv.body).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("order_id,"));
    assert!(lines[1].starts_with(&format!("{order_id},tv,viewer,1,12345,confirmed,")));
    let rows = server
        .get("/admin/v1/campaigns/tv/orders", Some(ADMIN_TOKEN))
        .await
        .json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    let list = server
        .get("/admin/v1/campaigns", Some(ADMIN_TOKEN))
        .await
        .json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    // The mock payment: confirmed -> paid, idempotent, owner only.
    let pay = format!("/api/v1/orders/{order_id}/pay");
    let stranger = server.tokens(&["stranger".to_string()]).await.remove(0);
    assert_eq!(
        server
            .post_json(&pay, Some(&stranger), &json!({}))
            .await
            .status,
        404
    );
    for _ in 0..2 {
        let paid = server.post_json(&pay, Some(&token), &json!({})).await;
        assert_eq!(paid.status, 200, "{}", String::from_utf8_lossy(&paid.body));
        assert_eq!(paid.json()["status"], "paid");
    }
    let seen = server
        .get(&format!("/api/v1/orders/{order_id}"), Some(&token))
        .await;
    assert_eq!(seen.json()["status"], "paid");
    assert_eq!(server.stats("tv").await["orders_paid"], 1);

    let metrics = server.get("/metrics", None).await;
    let m = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        m.contains("seckill_orders_logged_total{campaign=\"tv\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("seckill_stock_remaining{campaign=\"tv\"} 2"),
        "{m}"
    );
    assert!(metrics.headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    assert_metrics_parse_with_histograms(&m);
}

/// `/metrics` parses as the Prometheus text format and carries the latency
/// histograms (millisecond buckets) with observations in them.
fn assert_metrics_parse_with_histograms(text: &str) {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text format");
    assert!(scrape.samples.len() > 20, "{text}");
    let histogram = |name: &str, label: Option<(&str, &str)>| {
        let found = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)));
        match found.map(|s| &s.value) {
            Some(prometheus_parse::Value::Histogram(buckets)) => buckets.clone(),
            other => panic!("{name} {label:?} is not a histogram: {other:?}\n{text}"),
        }
    };
    for (name, label) in [
        (
            "seckill_grab_duration_seconds",
            Some(("outcome", "accepted")),
        ),
        ("seckill_log_append_duration_seconds", None),
        (
            "seckill_ledger_call_duration_seconds",
            Some(("op", "reserve")),
        ),
        ("seckill_store_batch_duration_seconds", None),
    ] {
        let buckets = histogram(name, label);
        assert!(
            buckets.iter().any(|b| (b.less_than - 0.001).abs() < 1e-12),
            "{name}: no 1 ms bucket"
        );
        let all = buckets.last().expect("buckets");
        assert!(
            all.less_than.is_infinite() && all.count >= 1.0,
            "{name}: {buckets:?}"
        );
    }
    assert_eq!(
        scrape
            .docs
            .get("seckill_grab_duration_seconds")
            .map(String::as_str),
        Some("Grabs from the funnel's first stage to the answer, by outcome.")
    );
}

/// Every route of the router's own table is in `openapi.json` (and every
/// documented operation is a route), so a new route cannot go undocumented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let doc: Value = server.get("/openapi.json", None).await.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let mut routed = std::collections::HashSet::new();
    for route in gateway::routes::ROUTES {
        let method = route.method.to_ascii_lowercase();
        assert!(
            paths.get(route.path).and_then(|p| p.get(&method)).is_some(),
            "openapi.json lacks {method} {}",
            route.path
        );
        routed.insert((route.path.to_string(), method));
    }
    for (path, ops) in paths {
        for method in ops.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete", "head"].contains(&method.as_str()) {
                assert!(
                    routed.contains(&(path.clone(), method.clone())),
                    "openapi.json documents {method} {path}, which no route serves"
                );
            }
        }
    }
}

/// Every error code the server can emit (the one table in `error.rs`) is
/// documented in `openapi.json` and in README, with its status in README.
#[test]
fn every_error_code_is_documented() {
    let openapi = include_str!("../openapi.json");
    let readme = include_str!("../../README.md");
    for code in gateway::error::Code::ALL {
        let name = format!("`{}`", code.as_str());
        assert!(openapi.contains(&name), "openapi.json does not list {name}");
        assert!(readme.contains(&name), "README does not list {name}");
        let status = code.status().as_u16().to_string();
        let documented = readme
            .lines()
            .any(|l| l.contains(&name) && l.contains(&status));
        assert!(
            documented,
            "README does not give {name} its status {status} on one line"
        );
    }
}

/// The winners export streams page by page (1,000 orders per store read):
/// a campaign of several pages comes out whole, once each, in order-id
/// order, as CSV and as one JSON array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_export_streams_every_order_once() {
    const ORDERS: usize = 2_345;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = std::sync::Arc::new(Server::start(&dir.path().join("data"), &[]));
    server
        .create_campaign(json!({ "id": "big", "stock": ORDERS }))
        .await;
    let names = common::users("x-", ORDERS);
    let tokens = std::sync::Arc::new(server.tokens(&names).await);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (server, tokens) = (
            std::sync::Arc::clone(&server),
            std::sync::Arc::clone(&tokens),
        );
        tasks.push(tokio::spawn(async move {
            for i in (worker..ORDERS).step_by(8) {
                assert_eq!(server.grab("big", &tokens[i]).await.status, 202);
            }
        }));
    }
    for t in tasks {
        t.await.expect("grabber");
    }
    let s = server.wait_persisted("big", ORDERS as u64).await;
    assert_eq!(s["orders_persisted"], ORDERS as u64, "{s}");

    let csv = server
        .get(
            "/admin/v1/campaigns/big/orders?format=csv",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(csv.status, 200);
    let text = String::from_utf8(csv.body.to_vec()).expect("utf-8");
    let mut lines = text.lines();
    assert!(lines.next().expect("header").starts_with("order_id,"));
    let ids: Vec<&str> = lines.map(|l| l.split(',').next().expect("id")).collect();
    assert_eq!(ids.len(), ORDERS);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids, "each order once, in order-id order");

    let json = server
        .get("/admin/v1/campaigns/big/orders", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(json.status, 200);
    let rows = json.json();
    let rows = rows.as_array().expect("one JSON array");
    let from_json: Vec<&str> = rows
        .iter()
        .map(|r| r["order_id"].as_str().expect("order id"))
        .collect();
    assert_eq!(from_json, ids);
}

/// `SECKILL_LOG_FORMAT=json`: every stderr line is one JSON object, and
/// events carry the campaign and order ids as fields; a wrong format is
/// refused at start with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_campaign_and_order_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_with(
        &data,
        &[],
        &[
            ("SECKILL_LOG_FORMAT", "json".to_string()),
            ("SECKILL_LOG", "info,gateway=debug".to_string()),
        ],
    );
    server
        .create_campaign(json!({ "id": "logged", "stock": 2 }))
        .await;
    let token = server.tokens(&["lena".to_string()]).await.remove(0);
    let won = server.grab("logged", &token).await;
    assert_eq!(won.status, 202);
    let order_id = won.json()["order_id"]
        .as_str()
        .expect("order id")
        .to_string();
    let text = std::fs::read_to_string(data.with_extension("stderr.log")).expect("stderr log");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let has = |message: &str, key: &str, value: &str| {
        events
            .iter()
            .any(|e| e["message"] == message && e["campaign"] == "logged" && e[key] == value)
    };
    assert!(has("campaign created", "level", "INFO"), "{text}");
    assert!(has("order logged", "order_id", &order_id), "{text}");

    let refused = common::serve_command(&dir.path().join("other"))
        .env("SECKILL_LOG_FORMAT", "xml")
        .output()
        .expect("run seckill");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("SECKILL_LOG_FORMAT must be `text` or `json`"),
        "{err}"
    );
}
