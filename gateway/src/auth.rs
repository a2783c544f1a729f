//! Buyer JWTs, one pinned algorithm (HS256 with a secret, or EdDSA / RS256
//! with a public key when the shop's identity service signs), and the
//! operator's bearer token. Every refusal is 401 `unauthorized` with a
//! stable `reason` (`Reason`).

use crate::config::AuthSettings;
use crate::error::{ApiError, Code};
use base64::Engine as _;
use engine::UserId;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Shortest accepted HS256 secret, in bytes.
pub const JWT_SECRET_LEN_MIN: usize = 32;
/// Longest lifetime of a token issued by the admin endpoint, in seconds.
pub const TOKEN_TTL_S_MAX: u64 = 7 * 24 * 3600;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 5;

/// Why a credential was refused: the `reason` field of every 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Malformed,
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
    Lifetime,
    Issuer,
    Audience,
    Subject,
    RefreshReused,
    RefreshRevoked,
    RefreshInvalid,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::Missing,
        Reason::Malformed,
        Reason::Algorithm,
        Reason::Signature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Lifetime,
        Reason::Issuer,
        Reason::Audience,
        Reason::Subject,
        Reason::RefreshReused,
        Reason::RefreshRevoked,
        Reason::RefreshInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Algorithm => "algorithm",
            Reason::Signature => "signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Lifetime => "lifetime",
            Reason::Issuer => "issuer",
            Reason::Audience => "audience",
            Reason::Subject => "subject",
            Reason::RefreshReused => "refresh_reused",
            Reason::RefreshRevoked => "refresh_revoked",
            Reason::RefreshInvalid => "refresh_invalid",
        }
    }
}

/// 401 `unauthorized` with its `reason`.
pub fn denied(reason: Reason, message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(message).with_extra(serde_json::json!({ "reason": reason.as_str() }))
}

/// 403: a public-key gateway has nothing to sign with.
pub fn cannot_sign() -> ApiError {
    ApiError::new(Code::Forbidden, "this gateway only verifies tokens")
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    /// Issued at (seconds); when absent the lifetime counts from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// Not before (seconds); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// A string or a list of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
}

/// The demo identity service's settings, and its refresh-token key.
#[derive(Debug, Clone, Copy)]
pub struct IdentitySettings {
    pub enabled: bool,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
}

/// Verifies (and, with a secret, issues) buyer tokens, and checks the admin
/// credential.
pub struct Auth {
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// `None` with a public key: this gateway only verifies.
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime_s: u64,
    admin_token: String,
    /// HMAC key of refresh tokens, derived from the secret.
    refresh_key: Option<[u8; 32]>,
    pub identity: IdentitySettings,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }") // never print secrets
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `parts` under `key`.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl Auth {
    /// Longest token lifetime this gateway accepts (`auth.max_lifetime_s`).
    pub fn max_lifetime_s(&self) -> u64 {
        self.max_lifetime_s
    }

    /// HS256 with `jwt_secret` and the default settings.
    pub fn new(jwt_secret: &[u8], admin_token: String) -> Result<Self, String> {
        Self::from_settings(&AuthSettings::default(), Some(jwt_secret), admin_token)
    }

    /// The algorithm `s.algorithm` only: HS256 needs `jwt_secret`; EdDSA and
    /// RS256 read the public key from `s.public_key_file` (the secret is
    /// then unused and the gateway cannot sign).
    pub fn from_settings(
        s: &AuthSettings,
        jwt_secret: Option<&[u8]>,
        admin_token: String,
    ) -> Result<Self, String> {
        if admin_token.len() < 16 {
            return Err("the admin token must be at least 16 characters".into());
        }
        let pem = |alg: &str| -> Result<Vec<u8>, String> {
            let path = s
                .public_key_file
                .as_ref()
                .ok_or_else(|| format!("auth.public_key_file: {alg} needs a public key"))?;
            std::fs::read(path).map_err(|e| format!("auth.public_key_file {}: {e}", path.display()))
        };
        let bad_key = |e: jsonwebtoken::errors::Error| format!("auth.public_key_file: {e}");
        let (algorithm, decoding, encoding, refresh_key) = match s.algorithm.as_str() {
            "HS256" => {
                let secret = jwt_secret.ok_or("SECKILL_JWT_SECRET is required for HS256")?;
                if secret.len() < JWT_SECRET_LEN_MIN {
                    return Err(format!(
                        "the JWT secret must be at least {JWT_SECRET_LEN_MIN} bytes"
                    ));
                }
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret),
                    Some(EncodingKey::from_secret(secret)),
                    Some(mac(secret, &[b"seckill refresh token key v1"])),
                )
            }
            "EdDSA" => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(&pem("EdDSA")?).map_err(bad_key)?,
                None,
                None,
            ),
            "RS256" => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(&pem("RS256")?).map_err(bad_key)?,
                None,
                None,
            ),
            other => {
                return Err(format!(
                    "auth.algorithm: {other:?} is not HS256, EdDSA or RS256"
                ))
            }
        };
        // Pinned: a token claiming any other algorithm (including `none`,
        // or HS256 "signed" with a public key) is refused before its
        // signature is looked at (see `header_alg`, and again here).
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        // Time is checked against the app's clock below, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_aud = false;
        Ok(Self {
            algorithm,
            decoding,
            encoding,
            validation,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            max_lifetime_s: s.max_lifetime_s,
            admin_token,
            refresh_key,
            identity: IdentitySettings {
                enabled: s.demo_identity.unwrap_or(true),
                access_ttl_s: s.access_ttl_s,
                refresh_ttl_s: s.refresh_ttl_s,
            },
        })
    }

    /// Whether this gateway holds a signing key (HS256).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    pub(crate) fn refresh_key(&self) -> Option<&[u8; 32]> {
        self.refresh_key.as_ref()
    }

    /// The buyer named by an `Authorization: Bearer <jwt>` header value,
    /// at `now_ms` by the app's clock: `exp` (required) and `nbf` are
    /// checked against it (with a few seconds of leeway), a lifetime
    /// (`exp - iat`, or `exp - now`) over the configured maximum is
    /// refused, and `iss` / `aud` must match when configured.
    pub fn buyer(&self, authorization: Option<&[u8]>, now_ms: u64) -> Result<UserId, ApiError> {
        let token = bearer(authorization)?;
        let alg = header_alg(token)?;
        if alg != alg_name(self.algorithm) {
            return Err(denied(
                Reason::Algorithm,
                format!("the token's algorithm {alg:?} is refused"),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => {
                        denied(Reason::Signature, "the token signature is invalid")
                    }
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        denied(Reason::Algorithm, "the token uses a refused algorithm")
                    }
                    _ => denied(Reason::Malformed, "the token is malformed"),
                }
            })?;
        let c = &data.claims;
        let now = now_ms / 1000;
        let exp = c
            .exp
            .ok_or_else(|| denied(Reason::Lifetime, "the token has no expiry (exp)"))?;
        if now > exp.saturating_add(LEEWAY_S) {
            return Err(denied(Reason::Expired, "the token has expired"));
        }
        if c.nbf.is_some_and(|nbf| now.saturating_add(LEEWAY_S) < nbf) {
            return Err(denied(Reason::NotYetValid, "the token is not valid yet"));
        }
        let lifetime = exp.saturating_sub(c.iat.unwrap_or(now).min(now.saturating_add(LEEWAY_S)));
        if lifetime > self.max_lifetime_s || exp.saturating_sub(now) > self.max_lifetime_s {
            return Err(denied(
                Reason::Lifetime,
                "the token's lifetime is longer than this gateway accepts",
            ));
        }
        if let Some(want) = &self.issuer {
            if c.iss.as_ref() != Some(want) {
                return Err(denied(Reason::Issuer, "the token's issuer (iss) is wrong"));
            }
        }
        if let Some(want) = &self.audience {
            let has = |v: &serde_json::Value| v.as_str() == Some(want.as_str());
            let ok = match &c.aud {
                Some(serde_json::Value::Array(list)) => list.iter().any(has),
                Some(v) => has(v),
                None => false,
            };
            if !ok {
                return Err(denied(
                    Reason::Audience,
                    "the token's audience (aud) is wrong",
                ));
            }
        }
        let sub = c
            .sub
            .as_deref()
            .ok_or_else(|| denied(Reason::Subject, "the token has no subject (sub)"))?;
        UserId::parse(sub).map_err(|e| {
            denied(
                Reason::Subject,
                format!("the token subject is invalid: {e}"),
            )
        })
    }

    /// Refuses anything but the exact admin token, compared in constant time.
    pub fn admin(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        let token = bearer(authorization)?;
        if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) {
            Ok(())
        } else {
            Err(denied(Reason::Signature, "the admin token is wrong"))
        }
    }

    /// A buyer token for `user`, valid for `ttl_s` seconds from `now_ms`
    /// (with the configured `iss` and `aud`); 403 without a signing key.
    pub fn issue(&self, user: &UserId, now_ms: u64, ttl_s: u64) -> Result<String, ApiError> {
        let encoding = self.encoding.as_ref().ok_or_else(cannot_sign)?;
        let iat = now_ms / 1000;
        let claims = Claims {
            sub: Some(user.as_str().to_string()),
            exp: Some(iat + ttl_s),
            iat: Some(iat),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, encoding).map_err(|e| {
            tracing::error!(error = %e, "signing a buyer token failed");
            ApiError::internal()
        })
    }
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        _ => "?",
    }
}

/// The `alg` of a compact JWS's header, read before anything else.
fn header_alg(token: &str) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct H {
        alg: String,
    }
    let malformed = || denied(Reason::Malformed, "the token is malformed");
    let (head, _) = token.split_once('.').ok_or_else(malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| malformed())?;
    let h: H = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    Ok(h.alg)
}

fn bearer(authorization: Option<&[u8]>) -> Result<&str, ApiError> {
    let value = authorization.ok_or_else(|| denied(Reason::Missing, "missing bearer token"))?;
    let malformed = || {
        denied(
            Reason::Malformed,
            "expected 'Authorization: Bearer <token>'",
        )
    };
    let value = std::str::from_utf8(value).map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(malformed());
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

    /// Every `reason` is in openapi.json's `Error.reason` enum and README.
    #[test]
    fn every_reason_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let listed = &doc["components"]["schemas"]["Error"]["properties"]["reason"]["enum"];
        let readme = include_str!("../../README.md");
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(
                listed.as_array().unwrap().iter().any(|v| v == s),
                "{s} not in openapi.json"
            );
            assert!(readme.contains(&format!("`{s}`")), "{s} not in README");
        }
        assert_eq!(listed.as_array().unwrap().len(), Reason::ALL.len());
    }

    #[test]
    fn refusals_carry_their_reason() {
        let a = auth();
        let reason = |h: Option<&[u8]>| {
            a.buyer(h, now_ms()).unwrap_err().body()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(reason(None), "missing");
        assert_eq!(reason(Some(b"Basic abc")), "malformed");
        assert_eq!(reason(Some(b"Bearer x.y.z")), "malformed");
        let none = b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.";
        assert_eq!(reason(Some(none)), "algorithm");
        assert_eq!(
            a.admin(Some(b"Bearer nope")).unwrap_err().body()["reason"],
            "signature"
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Auth::new(b"short", "admin-token-123456".into()).is_err());
    }
}
