//! The operators' live dashboard (`GET /admin/dashboard`) in a real
//! browser during a running sale: headless Debian Chromium, driven by
//! `scripts/browser/dashboard.mjs` (playwright-core), refuses a wrong admin
//! token with a clear 401 message, then shows every campaign's numbers and
//! draws its uPlot charts while grabs go on; once the sale is over and
//! stored, the numbers it shows must equal `GET /admin/v1/campaigns/{id}/stats`.
//! The screenshot is kept at `$CARGO_TARGET_DIR/artifacts/dashboard.png`.
//!
//! Needs `/usr/bin/chromium`, Node.js 20+ and playwright-core in
//! `scripts/browser/node_modules`: `bash scripts/install-browser.sh`
//! installs them. Without them this test fails (it does not skip).

mod common;

use common::browser::{artifact_path, require_browser_tools, run_script};
use common::{users, Server, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The browser script is killed after this long (its own limit is shorter).
const BROWSER_LIMIT: Duration = Duration::from_secs(55);
/// The script's own limit for everything it waits for.
const SCRIPT_TIMEOUT_MS: u64 = 45_000;
/// How long buyers keep grabbing while the page is open.
const SALE_WHILE_OPEN: Duration = Duration::from_secs(3);
/// The sale while the page is open stops after this long at most.
const SALE_MAX: Duration = Duration::from_secs(12);
/// The numbers of a row that must equal the stats API's.
const FIELDS: &[&str] = &[
    "stock_total",
    "sold",
    "remaining",
    "reserved",
    "orders_queued",
    "orders_persisted",
    "orders_paid",
    "orders_expired",
    "units_returned",
];

/// Without a token: the page and its assets (with the pages' security
/// headers), 404 `not_found` for any other asset name; everything else under
/// `/admin/` still wants the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_assets_need_no_token_and_nothing_else_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let page = server.get("/admin/dashboard", None).await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    for (file, kind) in [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
    ] {
        let path = format!("/admin/static/{file}");
        assert!(html.contains(&path), "the page links {path}");
        let r = server.get(&path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], kind, "{path}");
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
        assert!(!r.body.is_empty(), "{path}");
    }
    let missing = server.get("/admin/static/nope.js", None).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );
    for path in ["/admin/v1/hot", "/admin/v1/campaigns", "/admin/static/a/b"] {
        let r = server.get(path, None).await;
        assert_eq!(r.status, 401, "{path} without the token");
    }
    // Another method on these public paths: 405 like any page (with Allow).
    let post = server.post_json("/admin/dashboard", None, &json!({})).await;
    assert_eq!(post.status, 405, "{}", String::from_utf8_lossy(&post.body));
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_numbers_of_a_running_sale() {
    require_browser_tools();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let (a, b) = ("dash-phone", "dash-tv");
    server
        .create_campaign(json!({ "id": a, "title": "Phone", "stock": 30 }))
        .await;
    server
        .create_campaign(json!({ "id": b, "title": "TV", "stock": 5 }))
        .await;
    let names = users("dash-", 60);
    let tokens = server.tokens(&names).await;

    // Before the page opens: 4 units of A, 2 of B, one refusal; one order paid.
    let mut paid_order = String::new();
    for t in &tokens[..4] {
        let r = server.grab(a, t).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        if paid_order.is_empty() {
            paid_order = r.json()["order_id"].as_str().expect("order id").into();
        }
    }
    for t in &tokens[4..6] {
        assert_eq!(server.grab(b, t).await.status, 202);
    }
    assert_eq!(server.grab(a, &tokens[0]).await.code(), "already_bought");
    assert_eq!(server.wait_persisted(a, 4).await["orders_persisted"], 4);
    assert_eq!(server.wait_persisted(b, 2).await["orders_persisted"], 2);
    let pay = server
        .post_json(
            &format!("/api/v1/orders/{paid_order}/pay"),
            Some(&tokens[0]),
            &json!({}),
        )
        .await;
    assert_eq!(pay.status, 200, "{}", String::from_utf8_lossy(&pay.body));
    assert_eq!(pay.json()["status"], "paid");

    // The operator opens the dashboard.
    let ready = dir.path().join("ready.json");
    let go = dir.path().join("go");
    let shot = artifact_path("dashboard.png");
    std::fs::create_dir_all(shot.parent().expect("artifact dir")).expect("artifact dir");
    let _ = std::fs::remove_file(&shot);
    let args: Vec<String> = vec![
        "--url".into(),
        server.base.clone(),
        "--token".into(),
        ADMIN_TOKEN.into(),
        "--campaigns".into(),
        format!("{a},{b}"),
        "--screenshot".into(),
        shot.to_string_lossy().into_owned(),
        "--ready-file".into(),
        ready.to_string_lossy().into_owned(),
        "--go-file".into(),
        go.to_string_lossy().into_owned(),
        "--timeout-ms".into(),
        SCRIPT_TIMEOUT_MS.to_string(),
    ];
    let browser =
        tokio::task::spawn_blocking(move || run_script("dashboard.mjs", &args, BROWSER_LIMIT));
    let wait_until = Instant::now() + BROWSER_LIMIT;
    while !ready.exists() && !browser.is_finished() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page_ready = ready.exists();
    let opened_after = started.elapsed();

    // While the page shows the sale: A sells out, then refuses; B refuses repeats.
    let mut next = 6;
    let (mut accepted, mut refused) = (0u32, 0u32);
    if page_ready {
        let sale_end = Instant::now() + SALE_WHILE_OPEN;
        let sale_cap = Instant::now() + SALE_MAX;
        // At least SALE_WHILE_OPEN, and on until A has sold out and refused a
        // few (54 buyers for its last 26 units), however slow the machine.
        while (Instant::now() < sale_end || refused < 3) && Instant::now() < sale_cap {
            if next < tokens.len() {
                match server.grab(a, &tokens[next]).await.status {
                    202 => accepted += 1,
                    _ => refused += 1,
                }
                next += 1;
            }
            assert_eq!(server.grab(b, &tokens[4]).await.code(), "already_bought");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    let sold_a = server.stats(a).await["sold"].as_u64().expect("sold");
    server.wait_persisted(a, sold_a).await;
    std::fs::write(&go, b"go\n").expect("write the go file");

    let run = browser.await.expect("browser run");
    eprintln!("dashboard.mjs stderr:\n{}", run.stderr);
    println!("dashboard.mjs stdout:\n{}", run.stdout);
    println!("dashboard screenshot: {}", shot.display());
    println!(
        "page ready {opened_after:?} after the start; grabs of A while open: {accepted} accepted, \
         {refused} refused; whole test {:?}",
        started.elapsed()
    );
    assert!(
        page_ready,
        "the dashboard never showed the campaigns (exit {:?}):\n{}\n{}",
        run.exit, run.stdout, run.stderr
    );
    assert_eq!(
        run.exit,
        Some(0),
        "dashboard.mjs failed (exit {:?}, None = killed after {BROWSER_LIMIT:?}):\nstdout: {}\nstderr: {}",
        run.exit,
        run.stdout,
        run.stderr
    );
    let result = &run.result;
    assert_eq!(result["ok"], true, "{}", run.stdout);
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    assert!(
        result["unauthorized_message"]
            .as_str()
            .is_some_and(|m| m.contains("401")),
        "a wrong token is refused clearly: {result}"
    );

    // The sale went on while the page was open, and the page followed it.
    assert_eq!(sold_a, 30, "A sold out while the page was open");
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    let first_sold = result["first"][a]["sold"].as_u64().expect("first sold");
    let final_sold = result["final"][a]["sold"].as_u64().expect("final sold");
    assert!(
        first_sold < final_sold,
        "the page showed sold rising during the sale: {first_sold} then {final_sold}"
    );

    // The final numbers are the stats API's, the state the list's.
    let list = server
        .get("/admin/v1/campaigns", Some(ADMIN_TOKEN))
        .await
        .json();
    let list = list.as_array().expect("campaign list").clone();
    for id in [a, b] {
        let shown = &result["final"][id];
        let stats = server.stats(id).await;
        for f in FIELDS {
            assert_eq!(
                shown[f], stats[f],
                "{id}.{f}: the page shows {} and the stats say {}",
                shown[f], stats[f]
            );
        }
        let rejected = stats["rejected"].as_object().expect("rejected");
        assert_eq!(
            shown["rejected"].as_object().expect("rejected shown"),
            rejected,
            "{id}: refusals by code"
        );
        let total: u64 = rejected.values().filter_map(Value::as_u64).sum();
        assert_eq!(shown["rejected_total"], total, "{id}: refusals in all");
        let state = list
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["state"].clone());
        assert_eq!(Some(shown["state"].clone()), state, "{id}: state");
        assert_eq!(
            result["charts"][id].as_array().map(Vec::len),
            Some(2),
            "{id}: two charts drawn: {result}"
        );
    }
    assert_eq!(result["final"][a]["orders_paid"], 1);
    assert_eq!(result["final"][a]["remaining"], 0);
    assert_eq!(result["final"][a]["state"], "sold_out");
    assert!(
        result["final"][a]["rejected"]["sold_out"].as_u64() > Some(0),
        "A's sold-out refusals shown: {result}"
    );
    assert!(
        result["final"][b]["rejected"]["already_bought"].as_u64() > Some(0),
        "B's repeat grabs shown: {result}"
    );
}
