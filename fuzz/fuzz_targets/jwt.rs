//! Buyer JWTs: `Auth::buyer` with any `Authorization` header bytes, and the
//! admin check with the same bytes.
//!
//! Input: one mode byte, then
//! - even mode: the raw header value;
//! - odd mode: `<JOSE header JSON>\n<claims JSON>[\n<now_ms>]`, signed here
//!   with the gateway's HS256 secret, so the fuzzer reaches what lies past
//!   the signature (claim types, `exp`/`nbf`/`iat` arithmetic, the subject).
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway::auth::Auth;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::sync::OnceLock;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret-0123";
const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";
/// 2023-11-14, the clock the seeds' claims are written against.
const NOW_MS: u64 = 1_700_000_000_000;

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| Auth::new(SECRET, ADMIN_TOKEN.into()).expect("valid auth config"))
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = auth().buyer(Some(rest), NOW_MS);
        let admin = auth().admin(Some(rest));
        assert!(admin.is_err() || String::from_utf8_lossy(rest).contains(ADMIN_TOKEN));
        return;
    }
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let header = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let now_ms = parts
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(NOW_MS);
    let value = format!("Bearer {}", sign(header, claims));
    if let Ok(user) = auth().buyer(Some(value.as_bytes()), now_ms) {
        // Accepted: the claims are a JSON object naming this subject, with
        // a whole-number `exp`. Read like the gateway reads them (unknown
        // claims skipped: `{"x": 1e4000}` is JSON that a `serde_json::Value`
        // cannot hold, and the gateway rightly ignores it).
        let seen: Seen = serde_json::from_slice(claims).expect("accepted claims parse");
        assert_eq!(seen.sub, user.as_str());
        assert!(
            seen.exp >= (now_ms / 1000).saturating_sub(60),
            "an expired token was accepted"
        );
    }
});

#[derive(serde::Deserialize)]
struct Seen {
    sub: String,
    exp: u64,
}
