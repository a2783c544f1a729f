//! Buyer JWTs (HS256, algorithm pinned) and the operator's bearer token.

use crate::error::ApiError;
use engine::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Shortest accepted HS256 secret, in bytes.
pub const JWT_SECRET_LEN_MIN: usize = 32;
/// Longest lifetime of a token issued by the admin endpoint, in seconds.
pub const TOKEN_TTL_S_MAX: u64 = 7 * 24 * 3600;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Issued at (seconds); when absent the lifetime counts from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// Not before (seconds); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Verifies and issues buyer tokens, and checks the admin credential.
pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    admin_token: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }") // never print secrets
    }
}

impl Auth {
    pub fn new(jwt_secret: &[u8], admin_token: String) -> Result<Self, String> {
        if jwt_secret.len() < JWT_SECRET_LEN_MIN {
            return Err(format!(
                "the JWT secret must be at least {JWT_SECRET_LEN_MIN} bytes"
            ));
        }
        if admin_token.len() < 16 {
            return Err("the admin token must be at least 16 characters".into());
        }
        // Pinned to HS256: a token claiming any other algorithm (including
        // `none`) is refused before its signature is even looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        // Time is checked against the app's clock below, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            decoding: DecodingKey::from_secret(jwt_secret),
            encoding: EncodingKey::from_secret(jwt_secret),
            validation,
            admin_token,
        })
    }

    /// The buyer named by an `Authorization: Bearer <jwt>` header value,
    /// at `now_ms` by the app's clock: `exp` and `nbf` are checked against
    /// it (with a few seconds of leeway), and a token whose lifetime
    /// (`exp - iat`) is longer than `TOKEN_TTL_S_MAX` is refused.
    pub fn buyer(&self, authorization: Option<&[u8]>, now_ms: u64) -> Result<UserId, ApiError> {
        let token = bearer(authorization)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token signature is invalid",
                    ErrorKind::InvalidAlgorithm => "the token uses a refused algorithm",
                    _ => "the token is malformed",
                };
                ApiError::unauthorized(why)
            })?;
        let c = &data.claims;
        let now = now_ms / 1000;
        if now > c.exp.saturating_add(LEEWAY_S) {
            return Err(ApiError::unauthorized("the token has expired"));
        }
        if c.nbf.is_some_and(|nbf| now.saturating_add(LEEWAY_S) < nbf) {
            return Err(ApiError::unauthorized("the token is not valid yet"));
        }
        let lifetime = c.exp.saturating_sub(c.iat.unwrap_or(now));
        if lifetime > TOKEN_TTL_S_MAX || c.exp.saturating_sub(now) > TOKEN_TTL_S_MAX {
            return Err(ApiError::unauthorized(
                "the token's lifetime is longer than this gateway accepts",
            ));
        }
        UserId::parse(&c.sub)
            .map_err(|e| ApiError::unauthorized(format!("the token subject is invalid: {e}")))
    }

    /// Refuses anything but the exact admin token, compared in constant time.
    pub fn admin(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        let token = bearer(authorization)?;
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the admin token is wrong"))
        }
    }

    /// A buyer token for `user`, valid for `ttl_s` seconds from `now_ms`.
    pub fn issue(&self, user: &UserId, now_ms: u64, ttl_s: u64) -> Result<String, ApiError> {
        let iat = now_ms / 1000;
        let claims = Claims {
            sub: user.as_str().to_string(),
            exp: iat + ttl_s,
            iat: Some(iat),
            nbf: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "signing a buyer token failed");
            ApiError::internal()
        })
    }
}

fn bearer(authorization: Option<&[u8]>) -> Result<&str, ApiError> {
    let value = authorization.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let value = std::str::from_utf8(value)
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected 'Authorization: Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "expected 'Authorization: Bearer <token>'",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn auth() -> Auth {
        Auth::new(SECRET, "admin-token-123456".into()).unwrap()
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn issued_tokens_verify() {
        let a = auth();
        let u = UserId::parse("alice").unwrap();
        let t = a.issue(&u, now_ms(), 60).unwrap();
        let header = format!("Bearer {t}");
        assert_eq!(a.buyer(Some(header.as_bytes()), now_ms()).unwrap(), u);
    }

    #[test]
    fn refuses_none_alg_wrong_key_expired_and_garbage() {
        let a = auth();
        let u = UserId::parse("alice").unwrap();
        // alg: none, hand-built.
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        let other = Auth::new(
            b"another-secret-another-secret-xx",
            "admin-token-123456".into(),
        )
        .unwrap()
        .issue(&u, now_ms(), 60)
        .unwrap();
        let expired = a.issue(&u, now_ms() - 3_600_000, 60).unwrap();
        for bad in [none, other.as_str(), expired.as_str(), "x.y.z", ""] {
            let h = format!("Bearer {bad}");
            let e = a.buyer(Some(h.as_bytes()), now_ms()).unwrap_err();
            assert_eq!(e.code, crate::error::Code::Unauthorized, "{bad}");
        }
        assert!(a.buyer(None, now_ms()).is_err());
        assert!(a.buyer(Some(b"Basic abc"), now_ms()).is_err());
    }

    /// Expiry, not-before and lifetime are judged by the clock passed in.
    #[test]
    fn time_claims_follow_the_given_clock() {
        let a = auth();
        let u = UserId::parse("alice").unwrap();
        let t0 = 1_700_000_000_000;
        let h = format!("Bearer {}", a.issue(&u, t0, 60).unwrap());
        assert!(a.buyer(Some(h.as_bytes()), t0).is_ok());
        assert!(a
            .buyer(Some(h.as_bytes()), t0 + (60 + LEEWAY_S) * 1000)
            .is_ok());
        let late = a.buyer(Some(h.as_bytes()), t0 + (61 + LEEWAY_S) * 1000);
        assert_eq!(late.unwrap_err().message, "the token has expired");
        let sign = |claims: serde_json::Value| {
            let t = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            format!("Bearer {t}")
        };
        let now = t0 / 1000;
        let early = sign(serde_json::json!({"sub": "alice", "exp": now + 600, "nbf": now + 60}));
        assert!(a.buyer(Some(early.as_bytes()), t0).is_err());
        assert!(a.buyer(Some(early.as_bytes()), t0 + 60_000).is_ok());
        let long =
            sign(serde_json::json!({"sub": "alice", "exp": now + TOKEN_TTL_S_MAX + 1, "iat": now}));
        assert!(a.buyer(Some(long.as_bytes()), t0).is_err());
        let no_iat = sign(serde_json::json!({"sub": "alice", "exp": now + TOKEN_TTL_S_MAX + 100}));
        assert!(a.buyer(Some(no_iat.as_bytes()), t0).is_err());
        let fine = sign(serde_json::json!({"sub": "alice", "exp": now + 600}));
        assert!(a.buyer(Some(fine.as_bytes()), t0).is_ok());
    }

    #[test]
    fn admin_token_must_match_exactly() {
        let a = auth();
        assert!(a.admin(Some(b"Bearer admin-token-123456")).is_ok());
        assert!(a.admin(Some(b"Bearer admin-token-12345")).is_err());
        assert!(a.admin(Some(b"Bearer admin-token-1234567")).is_err());
        assert!(a.admin(None).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Auth::new(b"short", "admin-token-123456".into()).is_err());
    }
}
