//! The demo identity service (seed 002's double-token scheme): login gives
//! a short access token (a buyer JWT) and a long refresh token; refresh
//! rotates both. A refresh token is opaque to clients and HMAC-signed
//! (`rt1.<payload>.<mac>`, key derived from the JWT secret), carrying its
//! family and sequence number. The family's current sequence lives behind
//! the shared-state port, so every gateway agrees: a rotation CAS-es
//! `n -> n+1`; a spent token (an older `n`) presented again revokes the
//! whole family (CAS to `revoked`), after which no token of it works.

use crate::app::App;
use crate::auth::{cannot_sign, denied, mac, Reason};
use crate::error::ApiError;
use crate::web::{self, Resp};
use base64::Engine as _;
use engine::ports::Swap;
use engine::UserId;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

const PREFIX: &str = "rt1";
/// The family's value once revoked.
const REVOKED: &str = "revoked";
/// Longest refresh token accepted, in bytes (ours are far shorter).
const REFRESH_TOKEN_LEN_MAX: usize = 1024;
/// Attempts to revoke a family whose sequence moves meanwhile.
const REVOKE_TRIES: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// Family id (random, hex).
    f: String,
    /// Sequence number within the family.
    n: u64,
    /// The buyer.
    u: UserId,
    /// Expiry, seconds since the epoch.
    e: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user_id: UserId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn family_key(family: &str) -> String {
    format!("refresh:{family}")
}

/// 404 when the service is off, 403 when this gateway cannot sign.
fn service(app: &App) -> Result<&[u8; 32], ApiError> {
    if !app.auth.identity.enabled {
        return Err(ApiError::not_found("no such endpoint"));
    }
    app.auth.refresh_key().ok_or_else(cannot_sign)
}

fn sign(key: &[u8; 32], p: &Payload) -> Result<String, ApiError> {
    let json = serde_json::to_vec(p).map_err(|_| ApiError::internal())?;
    let body = format!("{PREFIX}.{}", b64().encode(json));
    let tag = mac(key, &[body.as_bytes()]);
    Ok(format!("{body}.{}", b64().encode(tag)))
}

/// The payload of a refresh token whose MAC is ours and which has not
/// expired at `now_s`.
fn open(key: &[u8; 32], token: &str, now_s: u64) -> Result<Payload, ApiError> {
    let invalid = || denied(Reason::RefreshInvalid, "the refresh token is invalid");
    if token.len() > REFRESH_TOKEN_LEN_MAX {
        return Err(invalid());
    }
    let (body, tag) = token.rsplit_once('.').ok_or_else(invalid)?;
    let payload = body
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(invalid)?;
    let tag = b64().decode(tag).map_err(|_| invalid())?;
    let want = mac(key, &[body.as_bytes()]);
    if !bool::from(tag.as_slice().ct_eq(&want)) {
        return Err(invalid());
    }
    let json = b64().decode(payload).map_err(|_| invalid())?;
    let p: Payload = serde_json::from_slice(&json).map_err(|_| invalid())?;
    if now_s > p.e {
        return Err(denied(Reason::Expired, "the refresh token has expired"));
    }
    Ok(p)
}

/// A fresh access token and the refresh token of `family` at `n`.
fn pair(
    app: &App,
    key: &[u8; 32],
    user: UserId,
    family: String,
    n: u64,
    now_ms: u64,
) -> Result<Resp, ApiError> {
    let ttl = app.auth.identity;
    let access = app.auth.issue(&user, now_ms, ttl.access_ttl_s)?;
    let refresh = sign(
        key,
        &Payload {
            f: family,
            n,
            u: user,
            e: now_ms / 1000 + ttl.refresh_ttl_s,
        },
    )?;
    Ok(web::with_cache(
        web::json(
            StatusCode::OK,
            &crate::api::AuthTokens {
                access_token: access,
                refresh_token: refresh,
                expires_in_s: ttl.access_ttl_s,
            },
        ),
        "no-store",
    ))
}

/// `POST /api/v1/auth/login` `{"user_id"}`: a new family at sequence 0.
/// A demo: anyone may log in as anyone.
pub async fn login(app: &App, headers: &http::HeaderMap, body: &[u8]) -> Result<Resp, ApiError> {
    let key = service(app)?;
    let req: LoginRequest = web::parse_json(headers, body, false)?;
    let now_ms = app.clock.now_ms();
    let family = hex::encode(rand::random::<[u8; 16]>());
    let ttl_ms = app.auth.identity.refresh_ttl_s.saturating_mul(1000);
    match app
        .shared
        .compare_and_set(&family_key(&family), None, "0", ttl_ms, now_ms)
        .await?
    {
        Swap::Done => pair(app, key, req.user_id, family, 0, now_ms),
        // 128 random bits never collide; if they did, refuse rather than share.
        Swap::Current(_) => Err(ApiError::internal()),
    }
}

/// `POST /api/v1/auth/refresh` `{"refresh_token"}`: rotates the family.
pub async fn refresh(app: &App, headers: &http::HeaderMap, body: &[u8]) -> Result<Resp, ApiError> {
    let key = service(app)?;
    let req: RefreshRequest = web::parse_json(headers, body, false)?;
    let now_ms = app.clock.now_ms();
    let p = open(key, &req.refresh_token, now_ms / 1000)?;
    let fkey = family_key(&p.f);
    let ttl_ms = app.auth.identity.refresh_ttl_s.saturating_mul(1000);
    let (from, to) = (p.n.to_string(), (p.n + 1).to_string());
    let mut seen = match app
        .shared
        .compare_and_set(&fkey, Some(&from), &to, ttl_ms, now_ms)
        .await?
    {
        Swap::Done => return pair(app, key, p.u, p.f, p.n + 1, now_ms),
        Swap::Current(seen) => seen,
    };
    // Not the current token: spent (reuse: revoke), revoked, or gone.
    for _ in 0..REVOKE_TRIES {
        match seen.as_deref() {
            None => {
                return Err(denied(
                    Reason::RefreshInvalid,
                    "the refresh token's family is unknown or has expired",
                ))
            }
            Some(REVOKED) => {
                return Err(denied(
                    Reason::RefreshRevoked,
                    "this refresh token's family was revoked; log in again",
                ))
            }
            Some(cur) if cur.parse::<u64>().is_ok_and(|c| c > p.n) => {
                tracing::warn!(family = %p.f, "a spent refresh token was presented again: family revoked");
                match app
                    .shared
                    .compare_and_set(&fkey, Some(cur), REVOKED, ttl_ms, now_ms)
                    .await?
                {
                    Swap::Done => {
                        return Err(denied(
                            Reason::RefreshReused,
                            "this refresh token was already used; its family is now revoked",
                        ))
                    }
                    Swap::Current(again) => seen = again,
                }
            }
            Some(_) => {
                return Err(denied(
                    Reason::RefreshInvalid,
                    "the refresh token is invalid",
                ))
            }
        }
    }
    // The family kept moving under us: refuse (safe side).
    Err(denied(
        Reason::RefreshReused,
        "this refresh token was already used",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_with_their_key_and_before_expiry() {
        let key = [7u8; 32];
        let p = Payload {
            f: "fam".into(),
            n: 3,
            u: UserId::parse("alice").unwrap(),
            e: 1_000,
        };
        let t = sign(&key, &p).unwrap();
        let got = open(&key, &t, 999).unwrap();
        assert_eq!((got.f.as_str(), got.n), ("fam", 3));
        let reason = |e: ApiError| e.body()["reason"].as_str().unwrap().to_string();
        assert_eq!(reason(open(&key, &t, 1_001).unwrap_err()), "expired");
        assert_eq!(
            reason(open(&[8u8; 32], &t, 999).unwrap_err()),
            "refresh_invalid"
        );
        // A payload changed (a higher sequence) without the key.
        let (body, tag) = t.rsplit_once('.').unwrap();
        let forged_payload = b64().encode(br#"{"f":"fam","n":9,"u":"alice","e":1000}"#);
        let forged = format!("{PREFIX}.{forged_payload}.{tag}");
        assert_ne!(forged, format!("{body}.{tag}"));
        assert_eq!(
            reason(open(&key, &forged, 999).unwrap_err()),
            "refresh_invalid"
        );
        for junk in ["", "rt1", "rt1..", "x.y.z"] {
            assert_eq!(reason(open(&key, junk, 0).unwrap_err()), "refresh_invalid");
        }
    }
}
