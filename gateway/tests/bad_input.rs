//! Bad input table: every malformed, unauthorized or mistimed request gets
//! the status and stable code of the API contract, and the server stays
//! healthy and exact afterwards.

mod common;

use bytes::Bytes;
use common::{now_ms, Server, ADMIN_TOKEN, JWT_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn jwt(secret: &str, sub: &str, exp_s: u64) -> String {
    let claims = json!({ "sub": sub, "exp": exp_s, "iat": exp_s.saturating_sub(60) });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn b64(s: &str) -> String {
    // base64url without padding, enough for a hand-made `alg: none` token.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    token: Option<String>,
    content_type: Option<&'static str>,
    body: Bytes,
    status: u16,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_contract_errors_and_server_stays_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]).without_connection_reuse();
    let now = now_ms();
    server
        .create_campaign(json!({ "id": "live", "stock": 5 }))
        .await;
    server
        .create_campaign(json!({ "id": "later", "starts_at_ms": now + 3_600_000, "ends_at_ms": now + 7_200_000 }))
        .await;
    server
        .create_campaign(
            json!({ "id": "over", "starts_at_ms": now - 7_200_000, "ends_at_ms": now - 3_600_000 }),
        )
        .await;
    server
        .create_campaign(json!({ "id": "held", "stock": 5 }))
        .await;
    let r = server
        .admin_post("/admin/v1/campaigns/held/pause", &json!({}))
        .await;
    assert_eq!(r.status, 200);

    let good = jwt(JWT_SECRET, "alice", now / 1000 + 600);
    let expired = jwt(JWT_SECRET, "alice", now / 1000 - 3_600);
    let wrong_key = jwt(
        "some-other-secret-some-other-secret-00",
        "alice",
        now / 1000 + 600,
    );
    let none_alg = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"alice","exp":{}}}"#, now / 1000 + 600))
    );
    let hs512 = {
        let claims = json!({ "sub": "alice", "exp": now / 1000 + 600 });
        encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("sign")
    };
    let bad_sub = jwt(JWT_SECRET, "has space", now / 1000 + 600);
    let grab = |c: &str| format!("/api/v1/campaigns/{c}/grab");
    let json_ct = Some("application/json");
    let case =
        |name, method, path: String, token: Option<&str>, ct, body: &'static str, status, code| {
            Case {
                name,
                method,
                path,
                token: token.map(str::to_string),
                content_type: ct,
                body: Bytes::from_static(body.as_bytes()),
                status,
                code,
            }
        };
    let mut cases = vec![
        case(
            "malformed json",
            "POST",
            grab("live"),
            Some(&good),
            json_ct,
            "{not json",
            400,
            "bad_request",
        ),
        // No field of a request body is nullable (API document): `null` is
        // a wrong type, not an absent field, also where the campaign asks
        // no question.
        case(
            "grab answer null",
            "POST",
            grab("live"),
            Some(&good),
            json_ct,
            r#"{"quiz_token":"x","answer":null}"#,
            400,
            "bad_request",
        ),
        case(
            "grab quiz_token null",
            "POST",
            grab("live"),
            Some(&good),
            json_ct,
            r#"{"quiz_token":null}"#,
            400,
            "bad_request",
        ),
        case(
            "json not an object",
            "POST",
            grab("live"),
            Some(&good),
            json_ct,
            "[1,2]",
            400,
            "bad_request",
        ),
        case(
            "wrong content type",
            "POST",
            grab("live"),
            Some(&good),
            Some("text/plain"),
            "{}",
            400,
            "bad_request",
        ),
        case(
            "unknown campaign",
            "POST",
            grab("nope"),
            Some(&good),
            json_ct,
            "{}",
            404,
            "campaign_not_found",
        ),
        case(
            "invalid campaign id",
            "POST",
            grab("bad%20id"),
            Some(&good),
            json_ct,
            "{}",
            404,
            "campaign_not_found",
        ),
        case(
            "missing token",
            "POST",
            grab("live"),
            None,
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "expired token",
            "POST",
            grab("live"),
            Some(&expired),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "forged: wrong key",
            "POST",
            grab("live"),
            Some(&wrong_key),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "forged: alg none",
            "POST",
            grab("live"),
            Some(&none_alg),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "forged: other alg",
            "POST",
            grab("live"),
            Some(&hs512),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "garbage token",
            "POST",
            grab("live"),
            Some("a.b.c"),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "invalid subject",
            "POST",
            grab("live"),
            Some(&bad_sub),
            json_ct,
            "{}",
            401,
            "unauthorized",
        ),
        case(
            "wrong method",
            "GET",
            grab("live"),
            Some(&good),
            None,
            "",
            405,
            "method_not_allowed",
        ),
        case(
            "wrong method on status",
            "DELETE",
            "/api/v1/campaigns/live".into(),
            None,
            None,
            "",
            405,
            "method_not_allowed",
        ),
        case(
            "before start",
            "POST",
            grab("later"),
            Some(&good),
            json_ct,
            "{}",
            425,
            "not_started",
        ),
        case(
            "after end",
            "POST",
            grab("over"),
            Some(&good),
            json_ct,
            "{}",
            410,
            "ended",
        ),
        case(
            "paused",
            "POST",
            grab("held"),
            Some(&good),
            json_ct,
            "{}",
            423,
            "paused",
        ),
        case(
            "unknown path",
            "GET",
            "/api/v1/nothing".into(),
            None,
            None,
            "",
            404,
            "not_found",
        ),
        case(
            "order id malformed",
            "GET",
            "/api/v1/orders/zzz".into(),
            Some(&good),
            None,
            "",
            404,
            "order_not_found",
        ),
        case(
            "admin without token",
            "GET",
            "/admin/v1/campaigns".into(),
            None,
            None,
            "",
            401,
            "unauthorized",
        ),
        case(
            "admin with buyer token",
            "GET",
            "/admin/v1/campaigns".into(),
            Some(&good),
            None,
            "",
            401,
            "unauthorized",
        ),
        case(
            "admin bad spec",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":0,"starts_at_ms":1,"ends_at_ms":2}"#,
            400,
            "bad_request",
        ),
        case(
            "admin unknown field",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2,"colour":"red"}"#,
            400,
            "bad_request",
        ),
        case(
            "admin negative price",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":-1,"stock":1,"starts_at_ms":1,"ends_at_ms":2}"#,
            400,
            "bad_request",
        ),
        case(
            "admin duplicate id",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"id":"live","title":"x","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2}"#,
            409,
            "campaign_exists",
        ),
        case(
            "admin more buckets than stock",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":2,"starts_at_ms":1,"ends_at_ms":2,"stock_buckets":5}"#,
            400,
            "bad_request",
        ),
        case(
            "admin price at 2^63",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":9223372036854775808,"stock":1,"starts_at_ms":1,"ends_at_ms":2}"#,
            400,
            "bad_request",
        ),
        case(
            "admin start at 2^63",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":1,"starts_at_ms":9223372036854775808,"ends_at_ms":18446744073709551615}"#,
            400,
            "bad_request",
        ),
        case(
            "admin end at u64 max",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":18446744073709551615}"#,
            400,
            "bad_request",
        ),
        case(
            "admin control character in title",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"a\u0007b","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2}"#,
            400,
            "bad_request",
        ),
        case(
            "admin bidi override in title",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"a\u202eb","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2}"#,
            400,
            "bad_request",
        ),
        case(
            "admin quiz bank too small",
            "POST",
            "/admin/v1/campaigns".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"title":"x","price_cents":1,"stock":1,"starts_at_ms":1,"ends_at_ms":2,"quiz":true,"quiz_questions":1}"#,
            400,
            "bad_request",
        ),
        case(
            "admin tokens bad user",
            "POST",
            "/admin/v1/tokens".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"user_ids":["a b"]}"#,
            400,
            "bad_request",
        ),
        case(
            "admin tokens bad ttl",
            "POST",
            "/admin/v1/tokens".into(),
            Some(ADMIN_TOKEN),
            json_ct,
            r#"{"user_ids":["a"],"ttl_s":0}"#,
            400,
            "bad_request",
        ),
        case(
            "admin export bad format",
            "GET",
            "/admin/v1/campaigns/live/orders?format=xml".into(),
            Some(ADMIN_TOKEN),
            None,
            "",
            400,
            "bad_request",
        ),
    ];
    // Oversized body: declared by Content-Length.
    cases.push(Case {
        name: "oversized body",
        method: "POST",
        path: grab("live"),
        token: Some(good.clone()),
        content_type: json_ct,
        body: Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024))),
        status: 413,
        code: "payload_too_large",
    });

    for c in &cases {
        let r = server
            .call(
                c.method,
                &c.path,
                c.token.as_deref(),
                c.content_type,
                c.body.clone(),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (c.status, c.code),
            "case {:?}: body {}",
            c.name,
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["message"].as_str().unwrap_or("").to_string();
        assert!(!msg.is_empty(), "case {:?} has a human message", c.name);
        if c.status == 401 {
            assert!(
                r.headers.contains_key("www-authenticate"),
                "case {:?}",
                c.name
            );
        }
    }

    // Still healthy, still exact: nothing above took stock.
    assert_eq!(server.get("/healthz", None).await.status, 200);
    assert_eq!(server.get("/readyz", None).await.status, 200);
    let stats = server.stats("live").await;
    assert_eq!(stats["remaining"], 5, "{stats}");
    let ok = server.grab("live", &good).await;
    assert_eq!(ok.status, 202, "a good grab still works");
    assert_eq!(server.grab("live", &good).await.code(), "already_bought");
}

/// A body streamed without Content-Length that grows past the limit is cut
/// off with 413 instead of being buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_oversized_body_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    server.create_campaign(json!({ "id": "live" })).await;
    let token = jwt(JWT_SECRET, "bob", now_ms() / 1000 + 600);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/campaigns/live/grab HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let chunk = "x".repeat(8 * 1024);
    for _ in 0..4 {
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if s.write_all(frame.as_bytes()).await.is_err() {
            break; // the server may close early; that is fine
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "got: {text}");
    assert!(text.contains("payload_too_large"), "got: {text}");
}

/// A client that never finishes its headers is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &["--header-read-timeout-ms", "300"],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // A slow client: it connects, waits, then starts a head it never ends
    // (the wait lets the server settle into its idle wait first, the case
    // that once slept through the header deadline towards the idle one).
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    let mut buf = vec![0u8; 1024];
    // The server closes the connection (EOF or an error status) on its own.
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the server must not wait forever")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "got: {text}");
    assert_eq!(server.get("/healthz", None).await.status, 200);
}
