//! The funnel's two anti-bot layers (seed 001, ch. 04), as use cases the
//! HTTP handlers and the grab funnel call:
//!
//! - **the quiz**: `GET .../quiz` gives a buyer one question of the
//!   campaign's bank (an image, see the `answer-bank` crate) and a token
//!   signed over (user, campaign, question, issue time); the grab carries
//!   the token and the answer, accepted no sooner than
//!   `quiz.min_answer_ms` after issue, before `quiz.token_ttl_ms`, and only
//!   once across all gateways (the shared-state port);
//! - **the hidden grab path**: `GET .../grab-path` answers from the start
//!   instant; for a campaign with `hidden_path` the path carries an HMAC
//!   over (user, campaign, start), so a script can neither precompute it
//!   before the start nor share one buyer's path with another.
//!
//! Both keys are derived from one funnel secret that every gateway shares
//! (`SECKILL_FUNNEL_SECRET`, else the JWT secret, domain-separated).

use crate::config::QuizSettings;
use crate::error::{ApiError, Code};
use answer_bank::{Bank, QuizError, QuizKey, Timing};
use dashmap::DashMap;
use engine::{Campaign, CampaignId, UserId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

/// Where quiz images are served from (and written to, under the CDN folder).
pub const IMAGE_URL_PREFIX: &str = "/static/quiz/";

/// Hex characters of a hidden path's signature (128 bits).
const PATH_SIG_HEX: usize = 32;

/// The funnel's keys, its quiz settings and the bank name index.
pub struct Gate {
    quiz_key: QuizKey,
    path_key: [u8; 32],
    pub settings: QuizSettings,
    /// `<cdn>/static/quiz`: images rendered at preload, or on demand by a
    /// gateway that did not run the preload.
    pub image_dir: PathBuf,
    /// Per quiz campaign: image file name -> question, built on first need
    /// so any gateway can redraw an image it never rendered. Bounded by the
    /// registry's campaign cap times the bank size cap.
    names: DashMap<CampaignId, Arc<HashMap<String, u32>>>,
    /// Bank renders running now: at most one per campaign (so bounded by
    /// the registry's campaign cap); an entry leaves when its render ends.
    renders: Arc<DashMap<CampaignId, Arc<RenderJob>>>,
}

/// A bank render running on the blocking pool. A preload waits for it a
/// bounded time; past that the render goes on alone and a repeated preload
/// joins it (images are write-once; missing ones are drawn on demand).
#[derive(Debug)]
pub struct RenderJob {
    pub total: u32,
    done: std::sync::atomic::AtomicU32,
    started: std::time::Instant,
    outcome: tokio::sync::watch::Sender<Option<Result<answer_bank::RenderReport, String>>>,
}

/// What a preload reports about its campaign's bank.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RenderStatus {
    /// Every image is on disk.
    pub complete: bool,
    /// Images done so far (written or kept).
    pub done: u32,
    pub total: u32,
    /// Written by this render / already present (when complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<u32>,
    pub ms: u64,
}

impl RenderJob {
    /// Waits at most `wait` for the render to end: `Ok(status)` (complete or
    /// still running), or the render's error.
    pub async fn wait(&self, wait: std::time::Duration) -> Result<RenderStatus, String> {
        let mut rx = self.outcome.subscribe();
        let ended = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let running = RenderStatus {
            complete: false,
            done: self.done.load(std::sync::atomic::Ordering::Relaxed),
            total: self.total,
            written: None,
            kept: None,
            ms,
        };
        match ended {
            Ok(Ok(outcome)) => match outcome.as_ref() {
                Some(Ok(r)) => Ok(RenderStatus {
                    complete: true,
                    done: self.total,
                    total: self.total,
                    written: Some(r.written),
                    kept: Some(r.kept),
                    ms,
                }),
                Some(Err(e)) => Err(e.clone()),
                None => Ok(running),
            },
            // Timed out (or the sender is gone, which cannot happen while
            // we hold the job): still running.
            _ => Ok(running),
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("settings", &self.settings)
            .field("image_dir", &self.image_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // Every part is length-prefixed, so no two part lists sign alike.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Gate {
    pub fn new(secret: &[u8], settings: QuizSettings, cdn_dir: &Path) -> Self {
        Self {
            quiz_key: QuizKey::derive(secret),
            path_key: hmac(secret, &[b"seckill grab path key v1"]),
            settings,
            image_dir: cdn_dir.join("static").join("quiz"),
            names: DashMap::new(),
            renders: Arc::new(DashMap::new()),
        }
    }

    pub fn bank(&self, c: &Campaign) -> Bank {
        Bank::new(self.quiz_key.clone(), c.id.as_str(), c.quiz_questions)
    }

    fn timing(&self) -> Timing {
        Timing {
            min_ms: self.settings.min_answer_ms,
            ttl_ms: self.settings.token_ttl_ms,
        }
    }

    fn path_sig(&self, c: &Campaign, user: &UserId) -> String {
        let mac = hmac(
            &self.path_key,
            &[
                user.as_str().as_bytes(),
                c.id.as_str().as_bytes(),
                &c.starts_at_ms.to_be_bytes(),
            ],
        );
        hex::encode(&mac[..PATH_SIG_HEX / 2])
    }

    /// The path `user` must POST the grab of `c` to.
    pub fn grab_path(&self, c: &Campaign, user: &UserId) -> String {
        if c.hidden_path {
            format!("/api/v1/campaigns/{}/grab/{}", c.id, self.path_sig(c, user))
        } else {
            format!("/api/v1/campaigns/{}/grab", c.id)
        }
    }

    /// Whether a grab that arrived on the plain path (`sig` `None`) or on
    /// `.../grab/{sig}` is on `user`'s path: the comparison takes the same
    /// time whatever the mismatch.
    pub fn check_path(
        &self,
        c: &Campaign,
        user: &UserId,
        sig: Option<&str>,
    ) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        let ok = match (c.hidden_path, sig) {
            (false, None) => true,
            (true, Some(given)) => {
                let want = self.path_sig(c, user);
                bool::from(want.as_bytes().ct_eq(given.as_bytes()))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::NotFound,
                "this is not your grab path for this sale; GET /api/v1/campaigns/{id}/grab-path for yours",
            ))
        }
    }

    /// A new question for `user`: `(token, image_url)`.
    pub fn issue(&self, c: &Campaign, user: &UserId, now_ms: u64) -> (String, String) {
        let bank = self.bank(c);
        let index = rand::random_range(0..c.quiz_questions.max(1));
        let q = bank.question(index);
        let token = answer_bank::issue(
            &self.quiz_key,
            user.as_str(),
            c.id.as_str(),
            index,
            now_ms,
            rand::random::<u64>(),
        );
        (token, format!("{IMAGE_URL_PREFIX}{}", q.image_file))
    }

    /// Checks a grab's quiz fields before any stock is touched: the
    /// signature (this user, this campaign), the token's age, the answer,
    /// then its single use across gateways. A token whose signature holds
    /// is spent by any attempt, right or wrong, so an answer cannot be
    /// guessed by retrying one token.
    pub async fn check_answer(
        &self,
        shared: &dyn engine::ports::SharedState,
        c: &Campaign,
        user: &UserId,
        token: Option<&str>,
        answer: Option<&str>,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let (Some(token), Some(answer)) = (token, answer) else {
            return Err(failed(
                "this sale asks a question first: send quiz_token and answer \
                 (GET /api/v1/campaigns/{id}/quiz)",
            ));
        };
        let claim = answer_bank::verify(&self.quiz_key, token, user.as_str(), c.id.as_str())
            .map_err(quiz_error)?;
        if claim.question >= c.quiz_questions {
            return Err(quiz_error(QuizError::BadSignature));
        }
        let timing = self.timing();
        if let Err(QuizError::Expired) = claim.check_time(now_ms, timing) {
            return Err(quiz_error(QuizError::Expired));
        }
        // Spent from here on, whatever follows. The mark outlives the
        // token, so a replay is refused until the token has expired anyway.
        let ttl = timing.ttl_ms.saturating_add(1_000);
        let key = format!("quiz:{}", claim.id);
        match shared.use_once(&key, ttl, now_ms).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(failed(
                    "this question was already answered; fetch a new one",
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "shared state unavailable for a quiz token");
                return Err(ApiError::unavailable(
                    "the quiz cannot be checked right now; try again shortly",
                ));
            }
        }
        claim.check_time(now_ms, timing).map_err(quiz_error)?;
        if !self.bank(c).is_correct(claim.question, answer) {
            return Err(quiz_error(QuizError::WrongAnswer));
        }
        Ok(())
    }

    /// Every question's image URL and answer (the load-test export).
    pub fn answers(&self, c: &Campaign) -> std::collections::BTreeMap<String, String> {
        let bank = self.bank(c);
        (0..c.quiz_questions)
            .map(|i| {
                let q = bank.question(i);
                (format!("{IMAGE_URL_PREFIX}{}", q.image_file), q.answer)
            })
            .collect()
    }

    /// The question an image file name belongs to, among `campaigns`.
    pub fn find_image(
        &self,
        campaigns: &[Arc<Campaign>],
        file: &str,
    ) -> Option<(Arc<Campaign>, u32)> {
        for c in campaigns.iter().filter(|c| c.quiz) {
            let index = match self.names.get(&c.id) {
                Some(names) => names.get(file).copied(),
                None => {
                    let bank = self.bank(c);
                    let names: HashMap<String, u32> = (0..c.quiz_questions)
                        .map(|i| (bank.question(i).image_file, i))
                        .collect();
                    let found = names.get(file).copied();
                    self.names.insert(c.id.clone(), Arc::new(names));
                    found
                }
            };
            if let Some(i) = index {
                return Some((Arc::clone(c), i));
            }
        }
        None
    }

    /// The running render of `c`'s bank, started here when none runs.
    pub fn render(&self, c: &Campaign) -> Arc<RenderJob> {
        use dashmap::mapref::entry::Entry;
        let job = match self.renders.entry(c.id.clone()) {
            Entry::Occupied(o) => return Arc::clone(o.get()),
            Entry::Vacant(v) => {
                let (tx, _) = tokio::sync::watch::channel(None);
                let job = Arc::new(RenderJob {
                    total: c.quiz_questions,
                    done: std::sync::atomic::AtomicU32::new(0),
                    started: std::time::Instant::now(),
                    outcome: tx,
                });
                v.insert(Arc::clone(&job));
                job
            }
        };
        let bank = self.bank(c);
        let dir = self.image_dir.clone();
        let threads = self.render_threads();
        let renders = Arc::clone(&self.renders);
        let (id, running) = (c.id.clone(), Arc::clone(&job));
        tokio::task::spawn_blocking(move || {
            let step = (bank.size() / 10).max(1);
            let progress = |done: u32, total: u32| {
                running
                    .done
                    .store(done, std::sync::atomic::Ordering::Relaxed);
                if done.is_multiple_of(step) || done == total {
                    tracing::info!(campaign = %id, done, total, "rendering the quiz bank");
                }
            };
            let outcome = bank.render_all(&dir, threads, &progress).map_err(|e| {
                tracing::error!(campaign = %id, error = %e, "rendering the quiz bank");
                e.to_string()
            });
            renders.remove(&id);
            running.outcome.send_replace(Some(outcome));
        });
        job
    }

    /// Threads a bank render uses.
    pub fn render_threads(&self) -> usize {
        match self.settings.render_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Whether `file` looks like a bank image name (`<32 hex>.png`).
pub fn is_image_name(file: &str) -> bool {
    file.strip_suffix(".png").is_some_and(|stem| {
        stem.len() == 32
            && stem
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn failed(message: &str) -> ApiError {
    ApiError::new(Code::QuizFailed, message)
}

fn quiz_error(e: QuizError) -> ApiError {
    match e {
        // The token is spent by then: say so, and how long a person waits.
        QuizError::TooFast { wait_ms } => failed(&format!(
            "answered {wait_ms} ms too soon: an answer counts only a moment after its \
             question appears; this question is spent, fetch a new one and take your time"
        ))
        .with_extra(serde_json::json!({ "too_soon_ms": wait_ms })),
        _ => failed(&e.to_string()),
    }
}
