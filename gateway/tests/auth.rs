//! Acceptance 3 (issue 8): the auth table against the real binary. Each
//! refused token is 401 `unauthorized` with its `reason`, and no order is
//! created; the demo identity service rotates refresh tokens and revokes a
//! family whose spent token comes back.

mod common;

use common::{now_ms, Reply, Server, ADMIN_TOKEN, JWT_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://shop.example";
const AUDIENCE: &str = "seckill";

fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).expect("test key")
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        claims,
    )
}

/// Good claims for `user`, `iss` and `aud` included, then `changes`.
fn claims(user: &str, changes: Value) -> Value {
    let now = now_ms() / 1000;
    let mut c = json!({
        "sub": user, "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE,
    });
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn reason(r: &Reply) -> String {
    r.json()["reason"].as_str().unwrap_or("").to_string()
}

async fn assert_refused(g: &Server, campaign: &str, token: &str, want: &str, case: &str) {
    let r = g.grab(campaign, token).await;
    assert_eq!(
        (r.status, r.code().as_str(), reason(&r).as_str()),
        (401, "unauthorized", want),
        "{case}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

async fn assert_no_order(g: &Server, campaign: &str) {
    let s = g.stats(campaign).await;
    assert_eq!(s["sold"], 0, "no order may be created: {s}");
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test]
async fn hs256_gateway_refuses_each_bad_token_with_its_reason() {
    let d = dir();
    let g = Server::start_with(
        &d.path().join("data"),
        &[],
        &[
            ("SECKILL_JWT_ISSUER", ISSUER.to_string()),
            ("SECKILL_JWT_AUDIENCE", AUDIENCE.to_string()),
        ],
    );
    g.create_campaign(json!({ "id": "deny" })).await;
    let now = now_ms() / 1000;
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("alice", json!({})).to_string().as_bytes())
    );
    let wrong_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
        &claims("alice", json!({})),
    );
    let table = [
        ("alg none", none, "algorithm"),
        ("wrong key", wrong_key, "signature"),
        (
            "wrong aud",
            hs(&claims("alice", json!({"aud": "elsewhere"}))),
            "audience",
        ),
        (
            "no aud",
            hs(&claims("alice", json!({"aud": null}))),
            "audience",
        ),
        (
            "wrong iss",
            hs(&claims("alice", json!({"iss": "https://evil.example"}))),
            "issuer",
        ),
        (
            "expired",
            hs(&claims(
                "alice",
                json!({"iat": now - 900, "exp": now - 600}),
            )),
            "expired",
        ),
        (
            "nbf in the future",
            hs(&claims(
                "alice",
                json!({"nbf": now + 600, "exp": now + 900}),
            )),
            "not_yet_valid",
        ),
        (
            "lifetime over the maximum",
            hs(&claims("alice", json!({"exp": now + 8 * 24 * 3600}))),
            "lifetime",
        ),
        (
            "no exp",
            hs(&claims("alice", json!({"exp": null}))),
            "lifetime",
        ),
        (
            "no sub",
            hs(&claims("alice", json!({"sub": null}))),
            "subject",
        ),
        ("garbage", "not-a-jwt".to_string(), "malformed"),
    ];
    for (case, token, want) in &table {
        assert_refused(&g, "deny", token, want, case).await;
    }
    let r = g
        .call("POST", "/api/v1/campaigns/deny/grab", None, None, "{}")
        .await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "missing"));
    // The same claims, correctly signed, are accepted: the refusals above
    // are the claims', not the harness's.
    let good = hs(&claims("alice", json!({})));
    assert_eq!(g.grab("deny", &good).await.status, 202);
}

#[tokio::test]
async fn demo_identity_rotates_and_revokes_a_reused_family() {
    let d = dir();
    let g = Server::start(&d.path().join("data"), &[]);
    g.create_campaign(json!({ "id": "first" })).await;
    g.create_campaign(json!({ "id": "second" })).await;

    // Happy path: login -> grab -> refresh -> grab.
    let login = g
        .post_json("/api/v1/auth/login", None, &json!({"user_id": "carol"}))
        .await;
    assert_eq!(
        login.status,
        200,
        "{}",
        String::from_utf8_lossy(&login.body)
    );
    assert_eq!(login.headers["cache-control"], "no-store");
    let l = login.json();
    assert_eq!(l["expires_in_s"], 600);
    let access = l["access_token"].as_str().expect("access token");
    assert_eq!(g.grab("first", access).await.status, 202);
    let refresh = |t: &str| {
        let body = json!({ "refresh_token": t });
        let g = &g;
        async move { g.post_json("/api/v1/auth/refresh", None, &body).await }
    };
    let r0 = l["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let one = refresh(&r0).await;
    assert_eq!(one.status, 200, "{}", String::from_utf8_lossy(&one.body));
    assert_eq!(one.headers["cache-control"], "no-store");
    let one = one.json();
    let r1 = one["refresh_token"].as_str().expect("rotated").to_string();
    assert_ne!(r1, r0);
    let access1 = one["access_token"].as_str().expect("access token");
    assert_eq!(g.grab("second", access1).await.status, 202);

    let two = refresh(&r1).await;
    assert_eq!(two.status, 200);
    let r2 = two.json()["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();

    // r0 is spent: presenting it again revokes the family...
    let reused = refresh(&r0).await;
    assert_eq!(
        (reused.status, reason(&reused).as_str()),
        (401, "refresh_reused"),
        "{}",
        String::from_utf8_lossy(&reused.body)
    );
    // ...so every token of it is refused, the newest included.
    for t in [&r2, &r1, &r0] {
        let r = refresh(t).await;
        assert_eq!((r.status, reason(&r).as_str()), (401, "refresh_revoked"));
    }
    // Another login starts a family of its own.
    let other = g
        .post_json("/api/v1/auth/login", None, &json!({"user_id": "carol"}))
        .await;
    let r = refresh(other.json()["refresh_token"].as_str().expect("token")).await;
    assert_eq!(r.status, 200);

    // Tampered and junk refresh tokens; bad bodies.
    let mut tampered = r2.clone();
    tampered.push('A');
    for t in [tampered.as_str(), "rt1.e30.AAAA", "x"] {
        let r = refresh(t).await;
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, "refresh_invalid"),
            "{t}"
        );
    }
    for body in [json!({}), json!({"user_id": ""}), json!({"user_id": 5})] {
        let r = g.post_json("/api/v1/auth/login", None, &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "bad_request"),
            "{body}"
        );
    }
    let r = g
        .post_json("/api/v1/auth/refresh", None, &json!({"token": "x"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"));
    // No order came from any refused attempt: just the two grabs.
    assert_eq!(g.wait_persisted("first", 1).await["sold"], 1);
    assert_eq!(g.wait_persisted("second", 1).await["sold"], 1);
}

#[tokio::test]
async fn rs256_gateway_refuses_hs_rs_confusion_and_cannot_sign() {
    let d = dir();
    let g = Server::start_with(
        &d.path().join("data"),
        &[],
        &[
            ("SECKILL_JWT_ALGORITHM", "RS256".to_string()),
            (
                "SECKILL_JWT_PUBLIC_KEY_FILE",
                key_file("rs256-public.pem").display().to_string(),
            ),
            (
                "SECKILL_FUNNEL_SECRET",
                "funnel-secret-funnel-secret-0123456".to_string(),
            ),
        ],
    );
    g.create_campaign(json!({ "id": "rs" })).await;
    let c = claims("dave", json!({"iss": null, "aud": null}));
    // The public key's PEM bytes used as an HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&key_bytes("rs256-public.pem")),
        &c,
    );
    assert_refused(&g, "rs", &confused, "algorithm", "HS/RS confusion").await;
    assert_refused(&g, "rs", &hs(&c), "algorithm", "HS256 with the secret").await;
    assert_no_order(&g, "rs").await;
    let good = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&key_bytes("rs256-private.pem")).expect("rsa key"),
        &c,
    );
    assert_eq!(g.grab("rs", &good).await.status, 202);

    // Nothing to sign with: login, refresh and the admin token endpoint 403.
    let forbidden = [
        g.post_json("/api/v1/auth/login", None, &json!({"user_id": "dave"}))
            .await,
        g.post_json("/api/v1/auth/refresh", None, &json!({"refresh_token": "x"}))
            .await,
        g.post_json(
            "/admin/v1/tokens",
            Some(ADMIN_TOKEN),
            &json!({"user_ids": ["dave"]}),
        )
        .await,
    ];
    for r in forbidden {
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[tokio::test]
async fn eddsa_gateway_accepts_its_key_and_refuses_a_forgery() {
    let d = dir();
    let g = Server::start_with(
        &d.path().join("data"),
        &[],
        &[
            ("SECKILL_JWT_ALGORITHM", "EdDSA".to_string()),
            (
                "SECKILL_JWT_PUBLIC_KEY_FILE",
                key_file("ed25519-public.pem").display().to_string(),
            ),
            (
                "SECKILL_FUNNEL_SECRET",
                "funnel-secret-funnel-secret-0123456".to_string(),
            ),
        ],
    );
    g.create_campaign(json!({ "id": "ed" })).await;
    let c = claims("erin", json!({"iss": null, "aud": null}));
    let forged = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(&key_bytes("ed25519-other-private.pem")).expect("ed key"),
        &c,
    );
    assert_refused(&g, "ed", &forged, "signature", "EdDSA forgery").await;
    assert_no_order(&g, "ed").await;
    let good = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(&key_bytes("ed25519-private.pem")).expect("ed key"),
        &c,
    );
    assert_eq!(g.grab("ed", &good).await.status, 202);
}

/// A verify-only gateway cannot derive the funnel key from a secret it
/// does not hold: it refuses to start, naming the key.
#[test]
fn a_public_key_gateway_needs_an_explicit_funnel_secret() {
    let d = dir();
    let mut child = common::serve_command(&d.path().join("data"))
        .env("SECKILL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SECKILL_JWT_ALGORITHM", "RS256")
        .env("SECKILL_JWT_PUBLIC_KEY_FILE", key_file("rs256-public.pem"))
        .env_remove("SECKILL_FUNNEL_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn seckill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway started without a funnel secret");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success());
    assert!(err.contains("SECKILL_FUNNEL_SECRET"), "{err}");
}

/// `/admin/v1/tokens` never mints a token the gateway would refuse (its
/// lifetime over `auth.max_lifetime_s`), and with the demo identity service
/// off its endpoints do not exist.
#[tokio::test]
async fn admin_tokens_respect_the_lifetime_cap_and_identity_can_be_off() {
    let d = dir();
    let config = d.path().join("seckill.toml");
    std::fs::write(
        &config,
        "[auth]\nmax_lifetime_s = 600\naccess_ttl_s = 300\ndemo_identity = false\n",
    )
    .expect("config");
    let g = Server::start(
        &d.path().join("data"),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    g.create_campaign(json!({ "id": "capped" })).await;
    let over = g
        .admin_post(
            "/admin/v1/tokens",
            &json!({ "user_ids": ["dave"], "ttl_s": 601 }),
        )
        .await;
    assert_eq!((over.status, over.code().as_str()), (400, "bad_request"));
    let ok = g
        .admin_post(
            "/admin/v1/tokens",
            &json!({ "user_ids": ["dave"], "ttl_s": 600 }),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let token = ok.json()["tokens"]["dave"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(g.grab("capped", &token).await.status, 202);
    // The default lifetime (an hour) is capped too, not refused.
    let default = g
        .admin_post("/admin/v1/tokens", &json!({ "user_ids": ["erin"] }))
        .await;
    assert_eq!(default.status, 200);
    let erin = default.json()["tokens"]["erin"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(g.grab("capped", &erin).await.status, 202);

    for path in ["/api/v1/auth/login", "/api/v1/auth/refresh"] {
        let r = g.post_json(path, None, &json!({ "user_id": "x" })).await;
        assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{path}");
    }
}
