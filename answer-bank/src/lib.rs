//! The quiz of the grab funnel (seed 001, ch. 04): questions a person
//! answers at a glance and a script cannot read off the page, drawn as
//! distorted, noisy images by the `captcha` crate, and the signed,
//! single-use tokens that carry a question to the grab.
//!
//! Pure apart from [`Bank::render_all`], which writes image files: no clock
//! (times are passed in), no network.
//!
//! A bank is a function of (key, campaign, size): question `i`'s answer and
//! image name are keyed hashes, so every gateway holding the key can ask
//! and check question `i` without a shared manifest, and a name reveals
//! nothing about its answer, its campaign or its index.
//!
//! # Flow
//!
//! 1. The gateway derives one [`QuizKey`] from the configured secret
//!    ([`QuizKey::derive`]) and builds a [`Bank`] per campaign.
//! 2. Ahead of the sale, [`Bank::render_all`] draws every question into a
//!    directory served by the CDN (idempotent: existing files are kept).
//! 3. On a quiz request the gateway picks a question index, sends the
//!    question's [`Question::image_file`] and a token from [`issue`] bound to
//!    the buyer, the campaign, the question, the issue time and a nonce.
//! 4. On the grab it calls [`verify`] (signature, same buyer, same campaign),
//!    [`QuizClaim::check_time`] (not too fast, not expired),
//!    [`Bank::is_correct`], and records [`QuizClaim::id`] as used (single
//!    use is the gateway's job, e.g. via `shared-state` marks).
//!
//! # Cryptography
//!
//! Everything is HMAC-SHA256.
//!
//! * Key: `K = HMAC(secret, "seckill quiz key v1")`.
//! * Every other MAC input is a list of fields, each written as its length
//!   (8 bytes, big-endian) followed by its bytes, so no field can be shifted
//!   into its neighbour (`("ab", "c")` and `("a", "bc")` hash differently).
//!   Integers are fields of their fixed-width big-endian bytes. The first
//!   field is always a label that separates the uses of `K`.
//! * Answer of question `i`: `HMAC(K, ["answer", campaign, i, block])` for
//!   `block = 0, 1, ...`; each output byte `b` is used only if
//!   `b < 252 = 12 * 21` and is then mapped to `ALPHABET[b % 21]`
//!   (rejection sampling: exactly uniform, no modulo bias; a block of 32
//!   bytes almost always yields the 4 characters, further blocks are drawn
//!   in the astronomically rare case it does not).
//! * Image name of question `i`: lowercase hex of the first 16 bytes of
//!   `HMAC(K, ["image", campaign, i])`, then `.png`. Answer and name are
//!   independent PRF outputs, so the name says nothing about the answer.
//! * Token MAC: `HMAC(K, ["quiz token v1", user, campaign, question,
//!   issued_ms, nonce])` with `question` as `u32` and `issued_ms`, `nonce`
//!   as `u64`.
//!
//! # Answers
//!
//! [`ANSWER_LEN`] characters from [`ALPHABET`]: the upper-case letters and
//! digits the `captcha` crate's default font can draw, minus everything a
//! person could mistake for something else in a distorted image (see
//! [`ALPHABET`]). 21 symbols, 4 characters: 194 481 possible answers.
//!
//! # Tokens
//!
//! `v1.<question>.<issued_ms>.<nonce>.<mac>`: `question` and `issued_ms` in
//! canonical decimal (no sign, no leading zero), `nonce` as 16 lowercase hex
//! digits, `mac` as 64 lowercase hex digits. The parser accepts exactly this
//! form and nothing else, so each claim has exactly one valid spelling and
//! [`QuizClaim::id`] (the MAC in hex) identifies the token for single use.
//!
//! ```
//! use answer_bank::{issue, verify, Bank, QuizKey, Timing};
//!
//! let key = QuizKey::derive(b"configured secret");
//! let bank = Bank::new(key.clone(), "sale-42", 1000);
//! let question = bank.question(7);
//! assert!(question.image_file.ends_with(".png"));
//!
//! let token = issue(&key, "buyer-1", "sale-42", 7, 1_000_000, 0xfeed);
//! let claim = verify(&key, &token, "buyer-1", "sale-42").expect("valid token");
//! assert_eq!(claim.question, 7);
//! let timing = Timing { min_ms: 1_500, ttl_ms: 120_000 };
//! assert!(claim.check_time(1_002_000, timing).is_ok());
//! assert!(bank.is_correct(claim.question, &question.answer.to_lowercase()));
//! assert!(verify(&key, &token, "buyer-2", "sale-42").is_err());
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use captcha::filters::{Dots, Noise, Wave};
use captcha::Captcha;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The symbols answers are made of, upper case.
///
/// Start: what the `captcha` 1.0.0 default font can draw in upper case,
/// `1-9` and `A-Z` without `I`, `L`, `O` (it has no `0` either). Removed as
/// lookalikes: `1` (I, L, l), `2`/`Z`, `5`/`S`, `8`/`B`, `G` (6, C), `Q`
/// (O, 0), `D` (O, 0) and `U` (V, once waved). What is left reads the same
/// to everyone even through noise: `3 4 6 7 9 A C E F H J K M N P R T V W X
/// Y`.
pub const ALPHABET: &str = "34679ACEFHJKMNPRTVWXY";

/// Characters per answer.
pub const ANSWER_LEN: usize = 4;

/// Longest token [`verify`] looks at; a valid one is at most 116 bytes.
pub const MAX_TOKEN_LEN: usize = 200;

/// Width and height of a rendered question.
pub const IMAGE_SIZE: (u32, u32) = (220, 120);

const KEY_LABEL: &[u8] = b"seckill quiz key v1";
const ANSWER_LABEL: &[u8] = b"answer";
const IMAGE_LABEL: &[u8] = b"image";
const TOKEN_LABEL: &[u8] = b"quiz token v1";
const TOKEN_VERSION: &str = "v1";
/// SHA-256's block size: HMAC's key length after normalisation.
const HMAC_BLOCK: usize = 64;

/// HMAC-SHA256 keyed with `key`, without the fallible `new_from_slice`.
///
/// HMAC (RFC 2104) replaces a key longer than the block by its hash and
/// pads it with zeros to the block size; doing that here gives a full block
/// for the infallible `KeyInit::new` and the very same MAC.
fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    let mut block = [0u8; HMAC_BLOCK];
    if key.len() > HMAC_BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

/// Feeds length-prefixed fields into a MAC (see the crate docs).
fn put_fields(mac: &mut HmacSha256, fields: &[&[u8]]) {
    for field in fields {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
}

/// The secret every gateway shares; derived from configured secret bytes.
#[derive(Clone)]
pub struct QuizKey([u8; 32]);

impl std::fmt::Debug for QuizKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuizKey(..)")
    }
}

impl QuizKey {
    /// Derives the quiz key from a configured secret (domain-separated, so
    /// the same secret used for something else gives an unrelated key).
    ///
    /// `HMAC-SHA256(key = secret, msg = "seckill quiz key v1")`.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = keyed_hmac(secret);
        mac.update(KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// `HMAC(K, fields)` with length-prefixed fields.
    fn mac(&self, fields: &[&[u8]]) -> HmacSha256 {
        let mut mac = keyed_hmac(&self.0);
        put_fields(&mut mac, fields);
        mac
    }
}

/// One question of a bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub index: u32,
    /// `<32 lowercase hex>.png`: reveals nothing.
    pub image_file: String,
    /// What a person types (upper case; compared case-insensitively).
    pub answer: String,
}

/// A campaign's bank of `size` questions.
#[derive(Debug, Clone)]
pub struct Bank {
    key: QuizKey,
    campaign: String,
    size: u32,
}

/// Progress of a long render: `(done, total)`.
pub type Progress<'a> = &'a (dyn Fn(u32, u32) + Sync);

/// What a render did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderReport {
    pub written: u32,
    /// Already present (a name never changes its content once written).
    pub kept: u32,
}

/// What happened to one image in [`Bank::render_all`].
enum Rendered {
    Written,
    Kept,
}

impl Bank {
    pub fn new(key: QuizKey, campaign: &str, size: u32) -> Self {
        Self {
            key,
            campaign: campaign.to_string(),
            size,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Question `index` (`index < size`).
    ///
    /// The function is defined for every `index` (it is a keyed hash), but
    /// only indexes below [`Bank::size`] belong to the bank: they are the
    /// ones [`Bank::render_all`] draws and [`Bank::is_correct`] accepts.
    pub fn question(&self, index: u32) -> Question {
        Question {
            index,
            image_file: self.image_file(index),
            answer: self.answer(index),
        }
    }

    fn image_file(&self, index: u32) -> String {
        let tag = self
            .key
            .mac(&[IMAGE_LABEL, self.campaign.as_bytes(), &index.to_be_bytes()])
            .finalize()
            .into_bytes();
        let mut name = hex::encode(&tag[..16]);
        name.push_str(".png");
        name
    }

    fn answer(&self, index: u32) -> String {
        let alphabet = ALPHABET.as_bytes();
        let n = alphabet.len();
        // Largest multiple of n that fits a byte: bytes at or above it are
        // rejected, so every symbol is exactly equally likely.
        let limit = 256 - 256 % n;
        let mut answer = String::with_capacity(ANSWER_LEN);
        let mut block: u32 = 0;
        while answer.len() < ANSWER_LEN {
            let tag = self
                .key
                .mac(&[
                    ANSWER_LABEL,
                    self.campaign.as_bytes(),
                    &index.to_be_bytes(),
                    &block.to_be_bytes(),
                ])
                .finalize()
                .into_bytes();
            for &b in tag.iter() {
                if answer.len() == ANSWER_LEN {
                    break;
                }
                if usize::from(b) < limit {
                    answer.push(char::from(alphabet[usize::from(b) % n]));
                }
            }
            block = block.wrapping_add(1);
        }
        answer
    }

    /// Whether `given` answers question `index`: trimmed, case-insensitive,
    /// compared in constant time.
    ///
    /// An index outside the bank (`index >= size`) is never answered
    /// correctly. Only the content comparison is constant time; the length
    /// of the answer is public ([`ANSWER_LEN`]).
    pub fn is_correct(&self, index: u32, given: &str) -> bool {
        if index >= self.size {
            return false;
        }
        let given = given.trim();
        if given.len() != ANSWER_LEN {
            return false;
        }
        let given = given.to_ascii_uppercase();
        let expected = self.answer(index);
        bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// Question `index` drawn as a PNG.
    ///
    /// Empty if drawing failed (which the `captcha` crate only reports, as
    /// "no PNG", for an encoder failure); use [`Bank::try_render_png`] to
    /// see the error. Each call draws fresh noise, so two renders of the
    /// same question differ in their pixels but not in their answer.
    pub fn render_png(&self, index: u32) -> Vec<u8> {
        self.try_render_png(index).unwrap_or_default()
    }

    /// Question `index` drawn as a PNG of [`IMAGE_SIZE`]: the answer's
    /// characters in the `captcha` crate's default font, salted with pixel
    /// noise, waved horizontally and vertically, and sprinkled with a few
    /// small dots. Tuned to stay readable at a glance.
    pub fn try_render_png(&self, index: u32) -> io::Result<Vec<u8>> {
        let answer: Vec<char> = self.answer(index).chars().collect();
        let mut image = Captcha::new();
        for &c in &answer {
            // `add_char` draws one random character of the allowed set: a
            // set of one forces the character.
            image.set_chars(&[c]).add_char();
        }
        if image.chars() != answer {
            // `add_char` silently skips a glyph the font cannot load.
            return Err(io::Error::other(
                "the captcha font could not draw the answer",
            ));
        }
        let (width, height) = IMAGE_SIZE;
        image
            .apply_filter(Noise::new(0.15))
            .apply_filter(Wave::new(2.0, 10.0).horizontal())
            .apply_filter(Wave::new(2.0, 6.0).vertical())
            .view(width, height)
            .apply_filter(Dots::new(10).min_radius(2).max_radius(4));
        image
            .as_png()
            .ok_or_else(|| io::Error::other("the captcha crate could not encode the PNG"))
    }

    /// Draws every question into `dir` (created if missing) on `threads`
    /// threads, each file written to a temporary name and renamed; files
    /// already present are kept. Calls `progress` as images complete.
    ///
    /// * `threads == 0` means one thread; more threads than images are not
    ///   started.
    /// * Each image is written to `<name>.tmp-<pid>-<thread>` (so processes rendering into one
    ///   shared folder never rename each other's half-written files), flushed to disk
    ///   (`fsync`) and renamed to `<name>`, so a name only ever holds a whole
    ///   image, even after a crash. The directory is synced at the end.
    /// * A non-empty regular file already under a name is kept, not
    ///   redrawn (an empty one, the trace of a crash on a filesystem that
    ///   lost the data, is redrawn).
    /// * `progress(done, total)` is called once after each image, written
    ///   or kept, with `done` increasing by one each call (calls are
    ///   serialised); with an empty bank it is called once with `(0, 0)`.
    /// * The first error stops every thread (after its current image) and
    ///   is returned; files completed until then stay.
    pub fn render_all(
        &self,
        dir: &Path,
        threads: usize,
        progress: Progress<'_>,
    ) -> std::io::Result<RenderReport> {
        fs::create_dir_all(dir)?;
        let total = self.size;
        if total == 0 {
            progress(0, 0);
            return Ok(RenderReport {
                written: 0,
                kept: 0,
            });
        }
        let threads = threads
            .max(1)
            .min(usize::try_from(total).unwrap_or(usize::MAX));

        // u64: `fetch_add` past `total` by every thread cannot wrap around.
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let written = AtomicU32::new(0);
        let kept = AtomicU32::new(0);
        let done = Mutex::new(0u32);
        let first_error: Mutex<Option<io::Error>> = Mutex::new(None);

        std::thread::scope(|scope| {
            for thread in 0..threads {
                let (next, stop, written, kept, done, first_error) =
                    (&next, &stop, &written, &kept, &done, &first_error);
                scope.spawn(move || loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Ok(index) = u32::try_from(index) else {
                        break;
                    };
                    if index >= total {
                        break;
                    }
                    match self.render_one(dir, index, thread) {
                        Ok(Rendered::Written) => written.fetch_add(1, Ordering::Relaxed),
                        Ok(Rendered::Kept) => kept.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot =
                                first_error.lock().unwrap_or_else(PoisonError::into_inner);
                            slot.get_or_insert(error);
                            break;
                        }
                    };
                    let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
                    *done += 1;
                    progress(*done, total);
                });
            }
        });

        if let Some(error) = first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(error);
        }
        let report = RenderReport {
            written: written.into_inner(),
            kept: kept.into_inner(),
        };
        if report.written > 0 {
            sync_dir(dir)?;
        }
        Ok(report)
    }

    /// Question `index`'s image in `dir`, drawn and written there first if
    /// it is missing (written as `render_all` writes: temp name, fsync,
    /// rename; a file already there wins). For a server asked for an image
    /// it never rendered.
    pub fn image_in(&self, dir: &Path, index: u32) -> io::Result<Vec<u8>> {
        // Temp names distinct from `render_all`'s threads and from each
        // other, so concurrent calls in one process never share one.
        static NEXT_TAG: AtomicUsize = AtomicUsize::new(1 << 20);
        fs::create_dir_all(dir)?;
        self.render_one(dir, index, NEXT_TAG.fetch_add(1, Ordering::Relaxed))?;
        fs::read(dir.join(self.image_file(index)))
    }

    /// Draws question `index` into `dir` unless it is already there.
    fn render_one(&self, dir: &Path, index: u32, thread: usize) -> io::Result<Rendered> {
        let name = self.image_file(index);
        let path = dir.join(&name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() > 0 => return Ok(Rendered::Kept),
            // An empty file is redrawn; anything else (a directory) makes
            // the rename below fail with a clear error.
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let png = self.try_render_png(index)?;
        let tmp = dir.join(format!("{name}.tmp-{}-{thread}", std::process::id()));
        let result = write_synced(&tmp, &png).and_then(|()| fs::rename(&tmp, &path));
        if result.is_err() {
            // Best effort: the error that matters is the one returned.
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| Rendered::Written)
    }
}

/// Writes `bytes` to a new (or truncated) file and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the renames into `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Why a quiz token or answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuizError {
    #[error("the quiz token is malformed")]
    Malformed,
    /// Forged, altered, or issued to another user or campaign.
    #[error("the quiz token is not valid for this buyer and sale")]
    BadSignature,
    #[error("answered too fast: wait {wait_ms} ms more before sending the answer")]
    TooFast { wait_ms: u64 },
    #[error("the quiz token has expired; fetch a new question")]
    Expired,
    #[error("the answer is wrong; fetch a new question")]
    WrongAnswer,
}

/// A token's verified contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuizClaim {
    pub question: u32,
    pub issued_ms: u64,
    /// Unique per token: the key its single use is recorded under.
    pub id: String,
}

/// When an answer is accepted: not before `min_ms` after issue, not after `ttl_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub min_ms: u64,
    pub ttl_ms: u64,
}

/// The token MAC over (user, campaign, question, issue time, nonce).
fn token_mac(
    key: &QuizKey,
    user: &str,
    campaign: &str,
    question: u32,
    issued_ms: u64,
    nonce: u64,
) -> HmacSha256 {
    key.mac(&[
        TOKEN_LABEL,
        user.as_bytes(),
        campaign.as_bytes(),
        &question.to_be_bytes(),
        &issued_ms.to_be_bytes(),
        &nonce.to_be_bytes(),
    ])
}

/// Signs a token for (user, campaign, question, issue time, nonce).
///
/// The nonce must differ between tokens of the same user, campaign,
/// question and millisecond (a random `u64` does): it is what makes
/// [`QuizClaim::id`] unique.
pub fn issue(
    key: &QuizKey,
    user: &str,
    campaign: &str,
    question: u32,
    issued_ms: u64,
    nonce: u64,
) -> String {
    let tag = token_mac(key, user, campaign, question, issued_ms, nonce)
        .finalize()
        .into_bytes();
    format!(
        "{TOKEN_VERSION}.{question}.{issued_ms}.{nonce:016x}.{}",
        hex::encode(tag)
    )
}

/// Checks a token's signature for this user and campaign (constant time).
///
/// [`QuizError::Malformed`] for anything that is not exactly the form
/// [`issue`] writes (longer than [`MAX_TOKEN_LEN`], wrong version, wrong
/// number of parts, signs, leading zeros, upper-case or short hex, numbers
/// out of range); [`QuizError::BadSignature`] when the MAC does not match
/// (altered, forged, other user, other campaign, other key).
pub fn verify(
    key: &QuizKey,
    token: &str,
    user: &str,
    campaign: &str,
) -> Result<QuizClaim, QuizError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(QuizError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(version), Some(question), Some(issued_ms), Some(nonce), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(QuizError::Malformed);
    };
    if version != TOKEN_VERSION {
        return Err(QuizError::Malformed);
    }
    let question = parse_decimal(question)
        .and_then(|q| u32::try_from(q).ok())
        .ok_or(QuizError::Malformed)?;
    let issued_ms = parse_decimal(issued_ms).ok_or(QuizError::Malformed)?;
    let nonce = parse_lower_hex::<8>(nonce)
        .map(u64::from_be_bytes)
        .ok_or(QuizError::Malformed)?;
    let tag = parse_lower_hex::<32>(tag).ok_or(QuizError::Malformed)?;

    token_mac(key, user, campaign, question, issued_ms, nonce)
        .verify_slice(&tag)
        .map_err(|_| QuizError::BadSignature)?;
    Ok(QuizClaim {
        question,
        issued_ms,
        id: hex::encode(tag),
    })
}

/// A canonical decimal `u64`: digits only, no leading zero (but `"0"`).
fn parse_decimal(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let canonical = !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes.len() == 1 || bytes[0] != b'0');
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// Exactly `2 * N` lowercase hex digits.
fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    let lower = bytes.len() == 2 * N
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !lower {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(bytes, &mut out).ok()?;
    Some(out)
}

impl QuizClaim {
    /// Judges the token's age at `now_ms`.
    ///
    /// Accepted from `issued_ms + min_ms` to `issued_ms + ttl_ms`, both
    /// inclusive. Before: [`QuizError::TooFast`] with the milliseconds left
    /// (a token issued in the future is too fast too); after:
    /// [`QuizError::Expired`]. Sums saturate, so no input overflows.
    pub fn check_time(&self, now_ms: u64, timing: Timing) -> Result<(), QuizError> {
        let earliest = self.issued_ms.saturating_add(timing.min_ms);
        if now_ms < earliest {
            return Err(QuizError::TooFast {
                wait_ms: earliest - now_ms,
            });
        }
        if now_ms > self.issued_ms.saturating_add(timing.ttl_ms) {
            return Err(QuizError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
