//! Quiz tokens (answer-bank): `verify` with any token text, and issue then
//! verify then `check_time` with any numbers.
//!
//! Input: one mode byte, then
//! - even mode: the token, verified for a fixed buyer and sale;
//! - odd mode: 48 bytes of numbers (question u32, issued_ms, nonce, now_ms,
//!   min_ms, ttl_ms as u64, big-endian; missing bytes are zeros), then the
//!   user id text.
#![no_main]

use answer_bank::{issue, verify, QuizError, QuizKey, Timing};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const USER: &str = "alice";
const CAMPAIGN: &str = "tv";

fn key() -> &'static QuizKey {
    static KEY: OnceLock<QuizKey> = OnceLock::new();
    KEY.get_or_init(|| QuizKey::derive(b"fuzz-quiz-secret-fuzz-quiz-secret"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_be_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(claim) = verify(key(), token, USER, CAMPAIGN) {
            // Only a token issued for exactly these values verifies.
            let nonce = u64::from_str_radix(token.split('.').nth(3).unwrap_or(""), 16)
                .expect("a verified token has a hex nonce");
            assert_eq!(
                issue(
                    key(),
                    USER,
                    CAMPAIGN,
                    claim.question,
                    claim.issued_ms,
                    nonce
                ),
                token
            );
        }
        return;
    }
    let question = (u64_at(rest, 0) >> 32) as u32;
    let issued_ms = u64_at(rest, 4);
    let nonce = u64_at(rest, 12);
    let now_ms = u64_at(rest, 20);
    let timing = Timing {
        min_ms: u64_at(rest, 28),
        ttl_ms: u64_at(rest, 36),
    };
    let user = std::str::from_utf8(rest.get(48..).unwrap_or_default()).unwrap_or(USER);
    let token = issue(key(), user, CAMPAIGN, question, issued_ms, nonce);
    let claim = verify(key(), &token, user, CAMPAIGN).expect("an issued token verifies");
    assert_eq!((claim.question, claim.issued_ms), (question, issued_ms));
    assert_eq!(
        verify(key(), &token, user, "other-sale"),
        Err(QuizError::BadSignature)
    );
    match claim.check_time(now_ms, timing) {
        Ok(()) => assert!(now_ms >= issued_ms),
        Err(QuizError::TooFast { wait_ms }) => assert!(wait_ms > 0),
        Err(QuizError::Expired) => assert!(now_ms > issued_ms),
        Err(e) => panic!("check_time can only judge time, not {e:?}"),
    }
});
