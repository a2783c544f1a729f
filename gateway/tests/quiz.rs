//! The funnel's anti-bot layers over HTTP: the quiz and the hidden grab
//! path. Every abuse is refused with its status and code and creates no
//! order, in both profiles; a bot answering at once gets nothing while
//! people answering after 1.5 s get all the stock.

mod common;

use common::prod::ProdEnv;
use common::{now_ms, users, Server, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A question: its token and image URL.
struct Question {
    token: String,
    image: String,
}

async fn question(g: &Server, id: &str, buyer: &str) -> Question {
    try_question(g, id, buyer)
        .await
        .unwrap_or_else(|(status, code)| panic!("quiz: {status} {code}"))
}

/// A question, or the refusal's status and code.
async fn try_question(g: &Server, id: &str, buyer: &str) -> Result<Question, (u16, String)> {
    let r = g
        .get(&format!("/api/v1/campaigns/{id}/quiz"), Some(buyer))
        .await;
    if r.status != 200 {
        return Err((r.status, r.code()));
    }
    assert_eq!(r.headers["cache-control"], "private, no-store");
    let v = r.json();
    Ok(Question {
        token: v["quiz_token"].as_str().expect("quiz_token").to_string(),
        image: v["image_url"].as_str().expect("image_url").to_string(),
    })
}

async fn answers(g: &Server, id: &str) -> HashMap<String, String> {
    let r = g
        .get(
            &format!("/admin/v1/campaigns/{id}/quiz-answers"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_value(r.json()["answers"].clone()).expect("answers map")
}

async fn grab_path(g: &Server, id: &str, buyer: &str) -> String {
    let r = g
        .get(&format!("/api/v1/campaigns/{id}/grab-path"), Some(buyer))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["grab_path"]
        .as_str()
        .expect("grab_path")
        .to_string()
}

async fn grab_at(g: &Server, path: &str, buyer: &str, body: Value) -> (u16, String, Value) {
    let r = g.post_json(path, Some(buyer), &body).await;
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v["code"].as_str().unwrap_or("").to_string(), v)
}

fn answer_body(q: &Question, answer: &str) -> Value {
    json!({ "quiz_token": q.token, "answer": answer })
}

/// A wrong answer of the same shape as `right`.
fn wrong(right: &str) -> String {
    right
        .chars()
        .map(|c| if c == 'A' { 'C' } else { 'A' })
        .collect()
}

async fn sold(g: &Server, id: &str) -> u64 {
    g.stats(id).await["sold"].as_u64().expect("sold")
}

/// Creates `id`: a load-test quiz campaign with a hidden path, preloaded
/// (its bank rendered), live now.
async fn quiz_campaign(g: &Server, id: &str, stock: u64) {
    g.create_campaign(json!({
        "id": id, "stock": stock, "quiz": true, "quiz_questions": 40,
        "hidden_path": true, "load_test": true,
    }))
    .await;
    let r = g
        .admin_post(&format!("/admin/v1/campaigns/{id}/preload"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let images = &r.json()["quiz_images"];
    assert_eq!(
        images["written"].as_u64().unwrap_or(0) + images["kept"].as_u64().unwrap_or(0),
        40,
        "{images}"
    );
}

/// The abuse table against `g` (and, for the replay, `g2`: another
/// gateway of the same deployment, or `g` again in the embedded profile).
/// Needs the gateways started with `SECKILL_QUIZ_TOKEN_TTL_MS=3000`.
async fn abuse_table(g: &Server, g2: &Server, tag: &str) {
    let (q1, q2, later, plain) = (
        format!("{tag}-q1"),
        format!("{tag}-q2"),
        format!("{tag}-later"),
        format!("{tag}-plain"),
    );
    quiz_campaign(g, &q1, 50).await;
    quiz_campaign(g, &q2, 50).await;
    g.create_campaign(json!({
        "id": later, "stock": 5, "quiz": true, "hidden_path": true,
        "starts_at_ms": now_ms() + 3_600_000, "ends_at_ms": now_ms() + 7_200_000,
    }))
    .await;
    g.create_campaign(json!({ "id": plain, "stock": 5, "hidden_path": true }))
        .await;
    let names = users(&format!("{tag}-u"), 12);
    let t = g.tokens(&names).await;
    let bank = answers(g, &q1).await;
    let bank2 = answers(g, &q2).await;
    let right = |q: &Question, bank: &HashMap<String, String>| {
        bank.get(&q.image).expect("image in the export").clone()
    };
    let path = |i: usize, id: &str| {
        let (id, t) = (id.to_string(), t[i].clone());
        async move { grab_path(g, &id, &t).await }
    };
    let mut outcomes: Vec<(&str, u16, String)> = Vec::new();

    // Too fast: the right answer at once.
    let q = question(g, &q1, &t[0]).await;
    let (s, c, v) = grab_at(
        g,
        &path(0, &q1).await,
        &t[0],
        answer_body(&q, &right(&q, &bank)),
    )
    .await;
    assert!(v["too_soon_ms"].as_u64().is_some(), "{v}");
    outcomes.push(("answer under 1 s", s, c));

    // Prepare the rest, then let a second pass so answers are not too fast.
    let wrong_q = question(g, &q1, &t[1]).await;
    let replay_q = question(g, &q1, &t[2]).await;
    let other_user_q = question(g, &q1, &t[3]).await;
    let other_campaign_q = question(g, &q2, &t[4]).await;
    let forged_q = question(g, &q1, &t[5]).await;
    let expiring_q = question(g, &q1, &t[6]).await;
    let hidden_q = question(g, &q1, &t[7]).await;
    let other_path_q = question(g, &q1, &t[8]).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let (s, c, _) = grab_at(
        g,
        &path(1, &q1).await,
        &t[1],
        answer_body(&wrong_q, &wrong(&right(&wrong_q, &bank))),
    )
    .await;
    outcomes.push(("wrong answer", s, c));

    // A replay: the first use wins an order, the second (here, or on the
    // other gateway) is refused.
    let body = answer_body(&replay_q, &right(&replay_q, &bank));
    let (s, _, v) = grab_at(g, &path(2, &q1).await, &t[2], body.clone()).await;
    assert_eq!(s, 202, "the genuine answer must win: {v}");
    let (s, c, _) = grab_at(g2, &path(2, &q1).await, &t[2], body).await;
    outcomes.push(("replayed quiz token", s, c));

    // Another user's token, answered right, by user 9.
    let body = answer_body(&other_user_q, &right(&other_user_q, &bank));
    let (s, c, _) = grab_at(g, &path(9, &q1).await, &t[9], body).await;
    outcomes.push(("quiz token of another user", s, c));

    // A token of campaign q2 (answered right for q2) used on q1.
    let body = answer_body(&other_campaign_q, &right(&other_campaign_q, &bank2));
    let (s, c, _) = grab_at(g, &path(4, &q1).await, &t[4], body).await;
    outcomes.push(("quiz token of another campaign", s, c));

    // Forged: the question number changed (to one whose answer is known),
    // and a signature flipped.
    let mut parts: Vec<String> = forged_q.token.split('.').map(str::to_string).collect();
    assert_eq!(parts.len(), 5, "token shape {}", forged_q.token);
    parts[1] = if parts[1] == "0" {
        "1".into()
    } else {
        "0".into()
    };
    let forged = parts.join(".");
    let answer0 = bank.values().next().expect("a question").clone();
    let (s, c, _) = grab_at(
        g,
        &path(5, &q1).await,
        &t[5],
        json!({ "quiz_token": forged, "answer": answer0 }),
    )
    .await;
    outcomes.push(("forged quiz token (question changed)", s, c));
    let mut sig = forged_q.token.clone();
    let last = sig.pop().expect("char");
    sig.push(if last == '0' { '1' } else { '0' });
    let (s, c, _) = grab_at(
        g,
        &path(5, &q1).await,
        &t[5],
        answer_body(
            &Question {
                token: sig,
                image: String::new(),
            },
            &right(&forged_q, &bank),
        ),
    )
    .await;
    outcomes.push(("forged signature", s, c));

    // The plain path, and another user's path, of a hidden-path campaign,
    // with a right answer.
    let body = answer_body(&hidden_q, &right(&hidden_q, &bank));
    let (s, c, _) = grab_at(g, &format!("/api/v1/campaigns/{q1}/grab"), &t[7], body).await;
    outcomes.push(("plain path of a hidden-path campaign", s, c));
    let body = answer_body(&other_path_q, &right(&other_path_q, &bank));
    let (s, c, _) = grab_at(g, &path(10, &q1).await, &t[8], body).await;
    outcomes.push(("another user's path", s, c));
    let (s, c, _) = grab_at(
        g,
        &format!("/api/v1/campaigns/{plain}/grab"),
        &t[11],
        json!({}),
    )
    .await;
    outcomes.push(("plain path of a hidden-path campaign (no quiz)", s, c));

    // Before the start, there is no path and no question.
    let r = g
        .get(&format!("/api/v1/campaigns/{later}/grab-path"), Some(&t[0]))
        .await;
    outcomes.push(("grab-path request before start", r.status, r.code()));
    let r = g
        .get(&format!("/api/v1/campaigns/{later}/quiz"), Some(&t[0]))
        .await;
    outcomes.push(("quiz request before start", r.status, r.code()));

    // The export of a campaign that is not a load test.
    let r = g
        .get(
            &format!("/admin/v1/campaigns/{later}/quiz-answers"),
            Some(ADMIN_TOKEN),
        )
        .await;
    outcomes.push(("answers export, not a load test", r.status, r.code()));

    // Expired: the token lives 3 s here.
    let wait = Duration::from_millis(3_100).saturating_sub(Duration::from_millis(1_200));
    tokio::time::sleep(wait).await;
    let body = answer_body(&expiring_q, &right(&expiring_q, &bank));
    let (s, c, _) = grab_at(g, &path(6, &q1).await, &t[6], body).await;
    outcomes.push(("expired quiz token", s, c));

    for (what, status, code) in &outcomes {
        let want: (u16, &str) = match *what {
            "grab-path request before start" | "quiz request before start" => (425, "not_started"),
            "answers export, not a load test" => (403, "forbidden"),
            w if w.contains("path") => (404, "not_found"),
            _ => (403, "quiz_failed"),
        };
        assert_eq!((*status, code.as_str()), want, "{what}");
    }
    // Only the genuine first use of the replayed token made an order.
    assert_eq!(sold(g, &q1).await, 1);
    assert_eq!(sold(g, &q2).await, 0);
    assert_eq!(sold(g, &plain).await, 0);
    assert_eq!(sold(g, &later).await, 0);
}

const SHORT_QUIZ: (&str, &str) = ("SECKILL_QUIZ_TOKEN_TTL_MS", "3000");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_abuse_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Server::start_with(
        &dir.path().join("data"),
        &[],
        &[(SHORT_QUIZ.0, SHORT_QUIZ.1.to_string())],
    );
    abuse_table(&g, &g, "e").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_abuse_table_across_two_gateways() {
    let mut env = ProdEnv::new("quiz");
    env.envs.push((SHORT_QUIZ.0, SHORT_QUIZ.1.to_string()));
    let dir = tempfile::tempdir().expect("tempdir");
    let g1 = env.gateway(dir.path(), "g1");
    let g2 = env.gateway(dir.path(), "g2");
    let tag = format!("p{}", std::process::id());
    abuse_table(&g1, &g2, &tag).await;
    // The second gateway serves an image it never rendered (it did not
    // run the preload), drawn on demand with the same answer.
    let id = format!("{tag}-q1");
    let t = g2.tokens(&["seer".to_string()]).await;
    let q = question(&g2, &id, &t[0]).await;
    let img = g2.get(&q.image, None).await;
    assert_eq!(img.status, 200);
    assert_eq!(img.headers["content-type"], "image/png");
    assert!(img.body.starts_with(b"\x89PNG"), "not a PNG");
    assert_eq!(
        g2.get("/static/quiz/0123456789abcdef0123456789abcdef.png", None)
            .await
            .status,
        404
    );
}

/// Bots answer every question right but at once, as fast as they can;
/// people answer right after 1.5 s. The people get every unit, the bots
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_bots_get_nothing_and_people_get_all_the_stock() {
    const STOCK: u64 = 15;
    const PEOPLE: usize = 25;
    const BOTS: usize = 20;
    const BOT_TRIES: usize = 15;
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Arc::new(Server::start(&dir.path().join("data"), &[]));
    quiz_campaign(&g, "race", STOCK).await;
    let bank = Arc::new(answers(&g, "race").await);
    let people = users("person-", PEOPLE);
    let bots = users("bot-", BOTS);
    let people_t = g.tokens(&people).await;
    let bots_t = g.tokens(&bots).await;
    let mut tasks = Vec::new();
    for (i, t) in bots_t.into_iter().enumerate() {
        let (g, bank) = (Arc::clone(&g), Arc::clone(&bank));
        tasks.push(tokio::spawn(async move {
            let path = grab_path(&g, "race", &t).await;
            let mut won = 0;
            for _ in 0..BOT_TRIES {
                let q = match try_question(&g, "race", &t).await {
                    Ok(q) => q,
                    // The people have bought everything.
                    Err((410, code)) if code == "sold_out" => break,
                    Err(e) => panic!("bot {i}: quiz {e:?}"),
                };
                let body = answer_body(&q, &bank[&q.image]);
                let (s, c, _) = grab_at(&g, &path, &t, body).await;
                assert!(
                    s == 202 || c == "quiz_failed" || c == "sold_out",
                    "bot {i}: {s} {c}"
                );
                won += u64::from(s == 202);
            }
            (false, won)
        }));
    }
    for t in people_t.into_iter() {
        let (g, bank) = (Arc::clone(&g), Arc::clone(&bank));
        tasks.push(tokio::spawn(async move {
            let path = grab_path(&g, "race", &t).await;
            let q = question(&g, "race", &t).await;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let (s, c, _) = grab_at(&g, &path, &t, answer_body(&q, &bank[&q.image])).await;
            assert!(s == 202 || c == "sold_out", "person: {s} {c}");
            (true, u64::from(s == 202))
        }));
    }
    let (mut people_won, mut bots_won) = (0, 0);
    for t in tasks {
        let (person, won) = t.await.expect("task");
        if person {
            people_won += won;
        } else {
            bots_won += won;
        }
    }
    assert_eq!(bots_won, 0, "a bot answering at once won");
    assert_eq!(people_won, STOCK, "people did not get all the stock");
    let stats = g.wait_persisted("race", STOCK).await;
    assert_eq!(stats["sold"], STOCK, "{stats}");
    let orders = g
        .get("/admin/v1/campaigns/race/orders", Some(ADMIN_TOKEN))
        .await;
    let text = String::from_utf8_lossy(&orders.body).to_string();
    assert!(!text.contains("bot-"), "a bot's order was stored: {text}");
    assert_eq!(text.matches("person-").count() as u64, STOCK, "{text}");
}

/// Where a property-test grab goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Unknown,
    Live,
    Paused,
    Scheduled,
    SoldOut,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Right,
    Wrong,
    Missing,
    TooFast,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    target: Target,
    bad_token: bool,
    bad_path: bool,
    bad_body: bool,
    answer: Answer,
}

impl Case {
    /// The documented order: campaign, state, token, path, body, quiz; the
    /// status and code of the first failing stage, or 202.
    fn expected(&self) -> (u16, &'static str) {
        match self.target {
            Target::Unknown => return (404, "campaign_not_found"),
            Target::Paused => return (423, "paused"),
            Target::Scheduled => return (425, "not_started"),
            Target::SoldOut => return (410, "sold_out"),
            Target::Ended => return (410, "ended"),
            Target::Live => {}
        }
        if self.bad_token {
            (401, "unauthorized")
        } else if self.bad_path {
            (404, "not_found")
        } else if self.bad_body {
            (400, "bad_request")
        } else if self.answer != Answer::Right {
            (403, "quiz_failed")
        } else {
            (202, "")
        }
    }
}

fn case_strategy() -> impl proptest::strategy::Strategy<Value = Case> {
    use proptest::prelude::*;
    let target = prop_oneof![
        8 => Just(Target::Live),
        1 => Just(Target::Unknown),
        1 => Just(Target::Paused),
        1 => Just(Target::Scheduled),
        1 => Just(Target::SoldOut),
        1 => Just(Target::Ended),
    ];
    let answer = prop_oneof![
        3 => Just(Answer::Right),
        1 => Just(Answer::Wrong),
        1 => Just(Answer::Missing),
        1 => Just(Answer::TooFast),
    ];
    (
        target,
        proptest::bool::weighted(0.4),
        proptest::bool::weighted(0.4),
        proptest::bool::weighted(0.4),
        answer,
    )
        .prop_map(|(target, bad_token, bad_path, bad_body, answer)| Case {
            target,
            bad_token,
            bad_path,
            bad_body,
            answer,
        })
}

async fn reserve_calls(g: &Server) -> f64 {
    common::prod::metric(g, "seckill_ledger_calls_total{op=\"reserve\"}")
        .await
        .expect("reserve count")
}

/// Property: whatever combination of conditions fails, a grab is refused
/// with the code of the first failing stage in the documented order, and
/// the ledger sees a reservation only for grabs where nothing failed.
#[test]
fn the_first_failing_stage_decides_and_nothing_is_reserved() {
    use proptest::test_runner::{Config, TestRunner};
    const CASES: u32 = 150;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Server::start(&dir.path().join("data"), &[]);
    let names = users("prop-", CASES as usize);
    let (tokens, questions, bank, paths) = rt.block_on(async {
        quiz_campaign(&g, "live", 10_000).await;
        let hidden = json!({ "quiz": true, "hidden_path": true });
        let mut paused = hidden.clone();
        paused["id"] = json!("paused");
        g.create_campaign(paused).await;
        let r = g
            .admin_post("/admin/v1/campaigns/paused/pause", &json!({}))
            .await;
        assert_eq!(r.status, 200);
        let mut scheduled = hidden.clone();
        scheduled["id"] = json!("scheduled");
        scheduled["starts_at_ms"] = json!(now_ms() + 3_600_000);
        scheduled["ends_at_ms"] = json!(now_ms() + 7_200_000);
        g.create_campaign(scheduled).await;
        let mut ended = hidden.clone();
        ended["id"] = json!("ended");
        ended["starts_at_ms"] = json!(now_ms() - 20_000);
        ended["ends_at_ms"] = json!(now_ms() - 10_000);
        g.create_campaign(ended).await;
        g.create_campaign(json!({ "id": "gone", "stock": 1 })).await;
        let first = g.tokens(&["first".to_string()]).await;
        assert_eq!(g.grab("gone", &first[0]).await.status, 202);
        let tokens = g.tokens(&names).await;
        let bank = answers(&g, "live").await;
        let mut questions = Vec::new();
        let mut paths = Vec::new();
        for t in &tokens {
            questions.push(question(&g, "live", t).await);
            paths.push(grab_path(&g, "live", t).await);
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        (tokens, questions, bank, paths)
    });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case_strategy(), |case| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(i < CASES as usize, "more cases than prepared buyers");
        rt.block_on(async {
            let id = match case.target {
                Target::Unknown => "nowhere",
                Target::Live => "live",
                Target::Paused => "paused",
                Target::Scheduled => "scheduled",
                Target::SoldOut => "gone",
                Target::Ended => "ended",
            };
            let token = if case.bad_token {
                "not.a.token".to_string()
            } else {
                tokens[i].clone()
            };
            let path = match (case.target, case.bad_path) {
                (Target::Live, false) => paths[i].clone(),
                (Target::Live, true) => "/api/v1/campaigns/live/grab".to_string(),
                (_, false) => format!("/api/v1/campaigns/{id}/grab"),
                (_, true) => format!("/api/v1/campaigns/{id}/grab/{}", "0".repeat(32)),
            };
            let q = if case.answer == Answer::TooFast && !case.bad_token {
                question(&g, "live", &tokens[i]).await
            } else {
                Question {
                    token: questions[i].token.clone(),
                    image: questions[i].image.clone(),
                }
            };
            let right = bank.get(&q.image).cloned().unwrap_or_default();
            let body = if case.bad_body {
                "{not json".to_string()
            } else {
                match case.answer {
                    Answer::Right | Answer::TooFast => answer_body(&q, &right).to_string(),
                    Answer::Wrong => answer_body(&q, &wrong(&right)).to_string(),
                    Answer::Missing => "{}".to_string(),
                }
            };
            let before = reserve_calls(&g).await;
            let r = g
                .call("POST", &path, Some(&token), Some("application/json"), body)
                .await;
            let got = (
                r.status,
                if r.status == 202 {
                    String::new()
                } else {
                    r.code()
                },
            );
            let want = case.expected();
            assert_eq!((got.0, got.1.as_str()), want, "{case:?}");
            let reserved = reserve_calls(&g).await - before;
            let want_reserved = if want.0 == 202 { 1.0 } else { 0.0 };
            assert_eq!(reserved, want_reserved, "reservations for {case:?}");
        });
        Ok(())
    });
    result.expect("property");
}

/// A bank too large to draw within a request: the preload answers 200 in
/// bounded time with the render's progress (no 5xx, no request timeout),
/// a repeated preload joins the same render, and buyers get their images
/// meanwhile (drawn on demand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bank_preloads_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Preload waits at most half the request timeout for its bank.
    let g = Server::start(&dir.path().join("data"), &["--request-timeout-ms", "6000"]);
    g.create_campaign(json!({
        "id": "big-bank", "stock": 10, "quiz": true, "quiz_questions": 100_000,
    }))
    .await;
    let mut done = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let r = g
            .admin_post("/admin/v1/campaigns/big-bank/preload", &json!({}))
            .await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            took < std::time::Duration::from_millis(5_000),
            "the preload waited {took:?}, past half the request timeout"
        );
        let images = &r.json()["quiz_images"];
        assert_eq!(images["complete"], false, "{images}");
        assert_eq!(images["total"], 100_000, "{images}");
        done.push(images["done"].as_u64().expect("done"));
    }
    assert!(
        done[1] >= done[0],
        "a repeated preload joins the running render: {done:?}"
    );
    let buyer = g.tokens(&["reader".to_string()]).await.remove(0);
    let q = question(&g, "big-bank", &buyer).await;
    let img = g.get(&q.image, None).await;
    assert_eq!(img.status, 200, "{}", String::from_utf8_lossy(&img.body));
    assert!(img.body.starts_with(b"\x89PNG"), "an image is served");
}
