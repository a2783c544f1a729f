//! What the funnel verifies per grab before any stock is touched: a buyer's
//! JWT (HS256, the gateway's `Auth::buyer`) and a quiz token's signature
//! (`answer_bank::verify`).
//!
//!   cargo bench -p bench --bench verify

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));

    let secret = b"bench-jwt-secret-0123456789abcdef0123";
    let auth = gateway::auth::Auth::new(secret, "bench-admin-token-0123".into()).expect("auth");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let user = engine::UserId::parse("alice").expect("user");
    let token = auth.issue(&user, now_ms, 3_600).expect("issue");
    let header = format!("Bearer {token}");
    group.bench_function("buyer_jwt_hs256", |b| {
        b.iter(|| {
            let u = auth
                .buyer(Some(std::hint::black_box(header.as_bytes())), now_ms)
                .expect("valid token");
            std::hint::black_box(u)
        });
    });

    let key = answer_bank::QuizKey::derive(b"bench-quiz-secret");
    let quiz = answer_bank::issue(&key, "alice", "bench", 7, now_ms, 42);
    group.bench_function("quiz_token_hmac", |b| {
        b.iter(|| {
            let claim = answer_bank::verify(&key, std::hint::black_box(&quiz), "alice", "bench")
                .expect("valid quiz token");
            std::hint::black_box(claim)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = verification
}
criterion_main!(benches);
