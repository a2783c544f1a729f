//! `seckill admin` end to end against a running embedded gateway, the way
//! an operator runs it: create from a TOML file, validate a good and a bad
//! file, preload with progress, pause (buyers get 423), status, resume, a
//! sale, reconcile, export CSV. Every command is the real binary talking to
//! the admin API over HTTP.

mod common;

use common::{now_ms, Server, ADMIN_TOKEN};
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `seckill admin <args>` against `server` (bounded: a command that
/// hangs is killed and fails the test).
fn admin(server: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill"));
    cmd.arg("admin")
        .args(["--url", &server.base])
        .args(args)
        .env("SECKILL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("SECKILL_URL");
    run_bounded(cmd, Duration::from_secs(60))
}

fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn seckill admin");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("seckill admin output"),
        Err(_) => {
            common::send_signal(pid as i32, "-KILL");
            panic!("seckill admin {cmd:?} did not finish within {limit:?}");
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_run_a_sale_with_seckill_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let id = "cli-sale";
    let stock = 4u64;

    // A campaign file as an operator writes it: relative start and length,
    // resolved against the gateway's clock; a quiz bank for the crowd.
    let good = dir.path().join("campaign.toml");
    std::fs::write(
        &good,
        format!(
            "id = \"{id}\"\ntitle = \"CLI keyboard\"\nprice_cents = 4999\nstock = {stock}\n\
             starts_in_s = 120\nduration_s = 3600\nquiz = true\nquiz_questions = 300\n\
             payment_window_s = 600\nexpected_buyers = 20000\n"
        ),
    )
    .expect("write campaign file");
    let v = admin(&server, &["validate", "--file", good.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(stdout(&v).contains("campaign.toml: ok"), "{}", text(&v));
    assert!(!stdout(&v).contains("problem:"), "{}", text(&v));

    // Bad files: every problem named, exit 1, nothing created.
    let bad = dir.path().join("bad.toml");
    let past = now_ms() - 60_000;
    std::fs::write(
        &bad,
        format!(
            "id = \"{id}-bad\"\ntitle = \"Bad\"\nprice_cents = 1\nstock = 0\n\
             starts_at_ms = {past}\nends_at_ms = {}\nquiz = true\nquiz_questions = 10\n",
            past + 1000
        ),
    )
    .expect("write bad file");
    let v = admin(
        &server,
        &[
            "validate",
            "--file",
            bad.to_str().unwrap(),
            "--expected-buyers",
            "100000",
        ],
    );
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let out = stdout(&v);
    assert!(out.contains("INVALID"), "{}", text(&v));
    assert!(
        out.contains("problem: starts_at_ms"),
        "start in the past: {}",
        text(&v)
    );
    assert!(out.contains("problem: stock"), "zero stock: {}", text(&v));
    // The quiz bank check needs a spec the engine accepts: a second file.
    let small_bank = dir.path().join("small-bank.toml");
    std::fs::write(
        &small_bank,
        format!(
            "id = \"{id}-bank\"\ntitle = \"Bank\"\nprice_cents = 1\nstock = 10\n\
             starts_in_s = 600\nduration_s = 600\nquiz = true\nquiz_questions = 10\n\
             payment_window_s = 5\n"
        ),
    )
    .expect("write small-bank file");
    let v = admin(
        &server,
        &[
            "validate",
            "--file",
            small_bank.to_str().unwrap(),
            "--expected-buyers",
            "100000",
        ],
    );
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        stdout(&v).contains("problem: quiz_questions"),
        "{}",
        text(&v)
    );
    assert!(
        stdout(&v).contains("warning: payment_window_s"),
        "{}",
        text(&v)
    );
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "title = \"x\"\nstok = 3\n").expect("write");
    let v = admin(&server, &["validate", "--file", unknown.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        stdout(&v).contains("problem: stok: not a campaign spec"),
        "{}",
        text(&v)
    );
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "title = \n").expect("write");
    let v = admin(&server, &["validate", "--file", broken.to_str().unwrap()]);
    assert!(!v.status.success(), "{}", text(&v));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("not valid TOML"),
        "{}",
        text(&v)
    );
    let list = admin(&server, &["list"]);
    assert!(list.status.success(), "{}", text(&list));
    assert!(
        stdout(&list).contains("no campaigns"),
        "validate created something: {}",
        text(&list)
    );

    // Create, and creating it again is refused with its code.
    let c = admin(&server, &["create", "--file", good.to_str().unwrap()]);
    assert!(c.status.success(), "{}", text(&c));
    assert!(
        stdout(&c).contains(&format!("created campaign {id}")),
        "{}",
        text(&c)
    );
    let again = admin(&server, &["create", "--file", good.to_str().unwrap()]);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("campaign_exists"),
        "{}",
        text(&again)
    );

    // Preload draws the 300-question bank, reporting progress on stderr
    // (not a terminal here: lines instead of a bar).
    let p = admin(&server, &["preload", id]);
    assert!(p.status.success(), "{}", text(&p));
    let err = String::from_utf8_lossy(&p.stderr);
    assert!(err.contains("/300 images"), "no progress: {}", text(&p));
    assert!(stdout(&p).contains("quiz bank: 300 images"), "{}", text(&p));
    let page = server.get(&format!("/items/{id}.html"), None).await;
    assert_eq!(page.status, 200);

    // Pause (the campaign has not started: buyers see it scheduled, the
    // admin view paused); status; resume.
    let paused = admin(&server, &["pause", id]);
    assert!(paused.status.success(), "{}", text(&paused));
    assert!(stdout(&paused).contains("Paused"), "{}", text(&paused));
    let list = server
        .get("/admin/v1/campaigns", Some(ADMIN_TOKEN))
        .await
        .json();
    let mine = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == id))
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["control"], "paused", "{list}");
    let s = admin(
        &server,
        &[
            "status",
            id,
            "--watch",
            "--interval-ms",
            "100",
            "--count",
            "3",
        ],
    );
    assert!(s.status.success(), "{}", text(&s));
    let out = stdout(&s);
    assert_eq!(out.matches("(refresh ").count(), 3, "{}", text(&s));
    assert!(
        out.contains(&format!("campaign {id}: stock {stock}  sold 0")),
        "{}",
        text(&s)
    );
    let resumed = admin(&server, &["resume", id]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(stdout(&resumed).contains("Active"), "{}", text(&resumed));

    // Unknown campaign: a clear error naming the code, exit non-zero.
    let missing = admin(&server, &["status", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("campaign_not_found"),
        "{}",
        text(&missing)
    );
    let wrong_token = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seckill"));
        cmd.args(["admin", "--url", &server.base, "--token", "wrong", "list"]);
        run_bounded(cmd, Duration::from_secs(30))
    };
    assert!(!wrong_token.status.success());
    assert!(
        String::from_utf8_lossy(&wrong_token.stderr).contains("unauthorized"),
        "{}",
        text(&wrong_token)
    );

    // A sale on a campaign without a quiz, started now, to export.
    let sale = dir.path().join("sale.toml");
    let sale_id = "cli-now";
    std::fs::write(
        &sale,
        format!(
            "id = \"{sale_id}\"\ntitle = \"Now\"\nprice_cents = 100\nstock = {stock}\n\
             starts_at_ms = {}\nends_at_ms = {}\n",
            now_ms(),
            now_ms() + 3_600_000
        ),
    )
    .expect("write sale file");
    let c = admin(&server, &["create", "--file", sale.to_str().unwrap()]);
    assert!(c.status.success(), "{}", text(&c));
    let buyers = common::users("cli-buyer", 6);
    let tokens = server.tokens(&buyers).await;
    let mut won = Vec::new();
    for (user, token) in buyers.iter().zip(&tokens) {
        let r = server.grab(sale_id, token).await;
        if r.status == 202 {
            won.push(user.clone());
        } else {
            assert_eq!(r.code(), "sold_out", "{}", String::from_utf8_lossy(&r.body));
        }
    }
    assert_eq!(won.len() as u64, stock);
    server.wait_persisted(sale_id, stock).await;

    let r = admin(&server, &["reconcile", sale_id]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(
        stdout(&r).contains("the ledger matches the durable orders"),
        "{}",
        text(&r)
    );

    // The contract's form: `export --campaign <id>` prints the CSV.
    let printed = admin(&server, &["export", "--campaign", sale_id]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert_eq!(
        stdout(&printed).lines().count() as u64,
        stock + 1,
        "{}",
        text(&printed)
    );

    let csv = dir.path().join("winners.csv");
    let e = admin(
        &server,
        &["export", sale_id, "--out", csv.to_str().unwrap()],
    );
    assert!(e.status.success(), "{}", text(&e));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains(&format!("{stock} orders written")),
        "{}",
        text(&e)
    );
    let body = std::fs::read_to_string(&csv).expect("read csv");
    let mut lines = body.lines();
    assert_eq!(
        lines.next(),
        Some("order_id,campaign_id,user_id,n,price_cents,status,created_at_ms,pay_by_ms")
    );
    let mut users: Vec<String> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            assert_eq!(cols.len(), 8, "{l}");
            assert_eq!(cols[1], sale_id, "{l}");
            assert_eq!(cols[5], "confirmed", "{l}");
            cols[2].to_string()
        })
        .collect();
    users.sort();
    won.sort();
    assert_eq!(users, won, "the export names exactly the winners");

    // Stop is final.
    let stop = admin(&server, &["stop", sale_id]);
    assert!(stop.status.success(), "{}", text(&stop));
    let again = admin(&server, &["resume", sale_id]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("campaign_stopped"),
        "{}",
        text(&again)
    );
}
