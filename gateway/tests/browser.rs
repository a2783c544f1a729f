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
use common::{now_ms, Server, ADMIN_TOKEN};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sale starts this long after its creation. Preload (which draws the
/// 100-question bank: well under a second), the export and the browser's
/// start take less, so the page usually opens on the countdown
/// and fetches its grab path and question from the start instant; opening
/// after the start passes too (the test prints which happened).
const START_DELAY_MS: u64 = 3_000;
/// The browser script is killed after this long.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
const INSTALL_HINT: &str = "run `bash scripts/install-browser.sh` (installs Debian chromium, \
     chromium-driver and playwright-core into scripts/browser/node_modules)";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("SECKILL_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails (never skips) when the browser, Node.js or playwright-core is missing.
fn require_browser_tools() {
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "{} is missing: {INSTALL_HINT}",
        chromium.display()
    );
    let node = Command::new("node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output();
    let major = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0),
        Ok(out) => panic!(
            "node does not run ({}): {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("node not found ({e}): Node.js 20 or newer is needed; {INSTALL_HINT}"),
    };
    assert!(major >= 20, "Node.js {major} is too old (20+ needed)");
    let playwright = workspace().join("scripts/browser/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: {INSTALL_HINT}",
        playwright.display()
    );
}

/// Where the screenshot is kept after the test.
fn artifact_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    target.join("artifacts").join("buyer-quiz.png")
}

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

/// What the browser script did: its exit code (None when killed), the
/// JSON line it printed, and everything it wrote.
struct BrowserRun {
    exit: Option<i32>,
    result: Value,
    stdout: String,
    stderr: String,
}

/// Runs `node scripts/browser/buyer-quiz.mjs <args>`, killed after
/// `BROWSER_LIMIT`.
fn run_buyer_quiz(args: &[String]) -> BrowserRun {
    let script = workspace().join("scripts/browser/buyer-quiz.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node {}: {e}; {INSTALL_HINT}", script.display()));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_LIMIT;
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let result = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    BrowserRun {
        exit,
        result,
        stdout,
        stderr,
    }
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
    let shot = artifact_path();
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
    let run = tokio::task::spawn_blocking(move || run_buyer_quiz(&args))
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
