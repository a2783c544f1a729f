//! The buyer page in a real browser: headless Debian Chromium, driven by
//! `scripts/browser/buyer-quiz.mjs` (playwright-core), passes the quiz and
//! grabs through the buyer's hidden grab path, the answer read from the
//! load-test export (`GET /admin/v1/campaigns/{id}/quiz-answers`). The
//! screenshot is kept at `$CARGO_TARGET_DIR/artifacts/buyer-quiz.png`
//! (`<workspace>/target/artifacts/` without `CARGO_TARGET_DIR`).
//!
//! Needs `/usr/bin/chromium`, Node.js 20+ and playwright-core in
//! `scripts/browser/node_modules`: `bash scripts/install-browser.sh`
//! installs them. Without them this test fails (it does not skip).

mod common;

use bytes::Bytes;
use common::browser::{artifact_path, require_browser_tools, run_script};
use common::{now_ms, Server, ADMIN_TOKEN};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::Duration;

/// The sale starts this long after its creation. Preload (which draws the
/// 100-question bank: well under a second), the export and the browser's
/// start take less, so the page usually opens on the countdown
/// and fetches its grab path and question from the start instant; opening
/// after the start passes too (the test prints which happened).
const START_DELAY_MS: u64 = 3_000;
/// The browser script is killed after this long.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// An admin call that may take long (preload draws the quiz bank): the
/// harness's `call` gives up after 30 s.
async fn admin_post_slow(server: &Server, path: &str, limit: Duration) -> (u16, Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("{}{}", server.base, path))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let resp = tokio::time::timeout(limit, server.client.request(req))
        .await
        .unwrap_or_else(|_| panic!("POST {path}: no answer within {limit:?}"))
        .expect("request failed");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyer_page_passes_the_quiz_and_grabs_through_the_hidden_path() {
    require_browser_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let id = "browser-quiz";
    let buyer = "browser-buyer";

    let starts_at = now_ms() + START_DELAY_MS;
    let created = server
        .create_campaign(json!({
            "id": id,
            "title": "Browser test item",
            "price_cents": 4_999,
            "stock": 3,
            "starts_at_ms": starts_at,
            "quiz": true,
            "quiz_questions": 100,
            "hidden_path": true,
            "load_test": true,
        }))
        .await;
    assert_eq!(created["quiz"], true, "{created}");
    let (status, report) = admin_post_slow(
        &server,
        &format!("/admin/v1/campaigns/{id}/preload"),
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(status, 200, "preload: {report}");
    println!(
        "preload done {} ms before the start",
        i128::from(starts_at) - i128::from(now_ms())
    );

    let export = server
        .get(
            &format!("/admin/v1/campaigns/{id}/quiz-answers"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        export.status,
        200,
        "quiz-answers: {}",
        String::from_utf8_lossy(&export.body)
    );
    let answers = export.json();
    let count = answers["answers"].as_object().map_or(0, |m| m.len());
    assert!(count > 0, "the export has no answers: {answers}");
    let answers_file = dir.path().join("quiz-answers.json");
    std::fs::write(&answers_file, &export.body).expect("write answers");

    let token = server.tokens(&[buyer.to_string()]).await.remove(0);
    let shot = artifact_path("buyer-quiz.png");
    std::fs::create_dir_all(shot.parent().expect("artifact dir")).expect("artifact dir");
    let _ = std::fs::remove_file(&shot);
    let page_opened_before_start = now_ms() < starts_at;
    let args: Vec<String> = vec![
        "--url".into(),
        server.base.clone(),
        "--campaign".into(),
        id.into(),
        "--token".into(),
        token.clone(),
        "--answers".into(),
        answers_file.to_string_lossy().into_owned(),
        "--screenshot".into(),
        shot.to_string_lossy().into_owned(),
    ];
    let run =
        tokio::task::spawn_blocking(move || run_script("buyer-quiz.mjs", &args, BROWSER_LIMIT))
            .await
            .expect("browser run");
    eprintln!("buyer-quiz.mjs stderr:\n{}", run.stderr);
    println!("buyer-quiz.mjs stdout:\n{}", run.stdout);
    println!("browser screenshot: {}", shot.display());
    println!(
        "the browser was started {} the start instant",
        if page_opened_before_start {
            "before"
        } else {
            "after"
        }
    );
    assert_eq!(
        run.exit,
        Some(0),
        "buyer-quiz.mjs failed (exit {:?}, None = killed after {BROWSER_LIMIT:?}):\nstdout: {}\nstderr: {}",
        run.exit,
        run.stdout,
        run.stderr
    );
    let result = &run.result;
    assert_eq!(result["ok"], true, "{}", run.stdout);
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    let order_id = result["order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no order_id in {result}"))
        .to_string();
    assert!(
        result["result_text"]
            .as_str()
            .is_some_and(|t| t.contains(&order_id)),
        "the page shows the order id: {result}"
    );
    let image = result["image_url"].as_str().unwrap_or("");
    assert!(
        answers["answers"].get(image).is_some(),
        "the question the page showed ({image}) is in the export"
    );

    // Exactly one order, this buyer's, with the id the page showed.
    let stats = server.wait_persisted(id, 1).await;
    assert_eq!(stats["orders_persisted"], 1, "{stats}");
    assert_eq!(stats["sold"], 1, "{stats}");
    let rows = server
        .get(
            &format!("/admin/v1/campaigns/{id}/orders"),
            Some(ADMIN_TOKEN),
        )
        .await
        .json();
    let rows = rows.as_array().expect("orders as a JSON array").clone();
    let mine: Vec<&Value> = rows.iter().filter(|r| r["user_id"] == buyer).collect();
    assert_eq!(mine.len(), 1, "one order for the buyer: {rows:?}");
    assert_eq!(rows.len(), 1, "no other order: {rows:?}");
    assert_eq!(mine[0]["order_id"], order_id.as_str(), "{rows:?}");
    let order = server
        .get(&format!("/api/v1/orders/{order_id}"), Some(&token))
        .await;
    assert_eq!(
        order.status,
        200,
        "{}",
        String::from_utf8_lossy(&order.body)
    );
    let order = order.json();
    assert_eq!(order["order_id"], order_id.as_str(), "{order}");
    assert_eq!(order["campaign_id"], id, "{order}");
    assert_eq!(order["user_id"], buyer, "{order}");
}
