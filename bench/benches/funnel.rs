//! The admission funnel's stages in-process, without HTTP or I/O, on one
//! thread: what each grab costs the gateway's CPU before the durable
//! append, stage by stage, and all of them in the funnel's order for a
//! grab on a quiz + hidden-path campaign that wins (a new buyer and a new,
//! correctly answered quiz token per grab, made outside the timed part).
//!
//!   cargo bench -p bench --bench funnel

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::ports::{Reservation, SharedState, StockLedger};
use engine::{CampaignId, CampaignSpec, UserId};
use gateway::auth::Auth;
use gateway::config::{QuizSettings, RateLimitSettings};
use gateway::funnel::GrabBody;
use gateway::quiz::Gate;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stock_ledger::{MemLedger, MemLedgerConfig};

const SECRET: &[u8] = b"bench-jwt-secret-0123456789abcdef0123";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn campaign(now: u64) -> engine::Campaign {
    let id = CampaignId::parse("bench-funnel").expect("id");
    CampaignSpec {
        id: Some(id.clone()),
        title: "bench".into(),
        price_cents: 100,
        stock: 1,
        starts_at_ms: now - 60_000,
        ends_at_ms: now + 3_600_000,
        per_user_limit: None,
        quiz: Some(true),
        quiz_questions: Some(1_000),
        hidden_path: Some(true),
        payment_window_s: None,
        load_test: None,
        stock_buckets: None,
        waiting_room: None,
        admit_per_s: None,
        admitted_max: None,
        admit_ttl_s: None,
        stock_factor_pct: None,
        queue_max: None,
    }
    .validate(id)
    .expect("valid campaign")
}

/// One grab's inputs, as a buyer would send them.
struct Grab {
    user: UserId,
    authorization: String,
    path_sig: String,
    body: Vec<u8>,
}

fn grabs(auth: &Auth, gate: &Gate, c: &engine::Campaign, n: u64, tag: u64, now: u64) -> Vec<Grab> {
    let bank = gate.bank(c);
    (0..n)
        .map(|i| {
            let user = UserId::parse(&format!("b{tag}-{i}")).expect("user");
            let token = auth.issue(&user, now, 3_600).expect("token");
            // Issued 2 s ago: past the minimum answer time.
            let (quiz_token, _) = gate.issue(c, &user, now - 2_000);
            let index: u32 = quiz_token
                .split('.')
                .nth(1)
                .unwrap_or("0")
                .parse()
                .expect("index");
            let answer = bank.question(index).answer;
            let path = gate.grab_path(c, &user);
            Grab {
                authorization: format!("Bearer {token}"),
                path_sig: path.rsplit('/').next().unwrap_or_default().to_string(),
                body: serde_json::to_vec(
                    &serde_json::json!({ "quiz_token": quiz_token, "answer": answer }),
                )
                .expect("body"),
                user,
            }
        })
        .collect()
}

fn funnel(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let now = now_ms();
    let campaign = campaign(now);
    let auth = Auth::new(SECRET, "bench-admin-token-0123".into()).expect("auth");
    let cdn = std::env::temp_dir();
    let gate = Gate::new(SECRET, QuizSettings::default(), &cdn);
    let clock: Arc<dyn gateway::clock::Clock> = Arc::new(gateway::clock::SystemClock);
    // Rate limits on, generous enough that none refuses: the cost of the check.
    let rate = gateway::limits::RateLimits::new(
        &RateLimitSettings {
            enabled: true,
            ip_per_s: 1_000_000_000,
            ip_burst: 1_000_000_000,
            user_per_s: 1_000,
            user_burst: 1_000,
            ..RateLimitSettings::default()
        },
        clock,
    );
    let client: IpAddr = Ipv4Addr::LOCALHOST.into();
    let sample = grabs(&auth, &gate, &campaign, 1, 0, now).remove(0);
    let headers = {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        h
    };

    let mut group = c.benchmark_group("funnel");
    group.throughput(Throughput::Elements(1));
    group.bench_function("state_admit", |b| {
        b.iter(|| engine::admit(black_box(&campaign), false, now).expect("live"))
    });
    group.bench_function("rate_ip_and_global", |b| {
        b.iter(|| {
            rate.ip(black_box(client)).expect("ip");
            rate.global().expect("global");
        })
    });
    group.bench_function("token_hs256", |b| {
        b.iter(|| {
            auth.buyer(Some(black_box(sample.authorization.as_bytes())), now)
                .expect("token")
        })
    });
    group.bench_function("hidden_path", |b| {
        b.iter(|| {
            gate.check_path(&campaign, black_box(&sample.user), Some(&sample.path_sig))
                .expect("path")
        })
    });
    group.bench_function("body_json", |b| {
        b.iter(|| {
            gateway::web::parse_json::<GrabBody>(&headers, black_box(&sample.body), true)
                .expect("body")
        })
    });

    // Everything in the funnel's order, each grab a new buyer who wins;
    // a fresh ledger and single-use store per sample.
    let mut tag = 1;
    group.bench_function("whole_to_reserve", |b| {
        b.iter_custom(|iters| {
            tag += 1;
            let batch = grabs(&auth, &gate, &campaign, iters, tag, now);
            let ledger = MemLedger::new(MemLedgerConfig { shards: 8 });
            let shared = shared_state::MemSharedState::new(
                usize::try_from(iters).unwrap_or(usize::MAX).max(1024),
            );
            rt.block_on(async {
                ledger.load(&campaign.id, iters, None).await.expect("load");
                let started = Instant::now();
                for g in &batch {
                    engine::admit(&campaign, ledger.sold_out_hint(&campaign.id), now)
                        .expect("live");
                    rate.ip(client).expect("ip");
                    rate.global().expect("global");
                    let user = auth
                        .buyer(Some(g.authorization.as_bytes()), now)
                        .expect("token");
                    rate.user(&user).expect("user");
                    gate.check_path(&campaign, &user, Some(&g.path_sig))
                        .expect("path");
                    let body: GrabBody =
                        gateway::web::parse_json(&headers, &g.body, true).expect("body");
                    gate.check_answer(
                        &shared as &dyn SharedState,
                        &campaign,
                        &user,
                        body.quiz_token.as_deref(),
                        body.answer.as_deref(),
                        now,
                    )
                    .await
                    .expect("right answer");
                    let r = ledger
                        .reserve(&campaign.id, &user, 1)
                        .await
                        .expect("reserve");
                    assert!(
                        matches!(r, Reservation::Reserved { .. }),
                        "every grab wins: {r:?}"
                    );
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = funnel
}
criterion_main!(benches);
