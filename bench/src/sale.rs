//! The sale a run measures: its campaign, its buyers, and the invariants
//! read back through the admin API afterwards.

use crate::client::{Admin, Conn};
use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The campaign a run grabs on.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub stock: u64,
    /// When it starts, on the gateway's clock.
    pub starts_at_ms: u64,
}

/// What a run's campaign asks of buyers besides the grab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Plain,
    /// A quiz (1,000 questions) and a hidden grab path.
    Funnel,
    /// A waiting room (up to 10,000,000 queued).
    Room,
}

/// Creates a `load_test` campaign of `stock` units, one unit per buyer,
/// starting `lead` from now on the gateway's clock, of the given shape.
pub async fn setup(
    admin: &Admin,
    id: Option<&str>,
    stock: u64,
    lead: Duration,
    shape: Shape,
) -> anyhow::Result<Campaign> {
    let funnel = shape == Shape::Funnel;
    let now = admin.call("GET", "/api/v1/time", None).await?["now_ms"]
        .as_u64()
        .context("GET /api/v1/time: no now_ms")?;
    let id = id.map_or_else(|| format!("bench-{now:x}"), str::to_string);
    let starts_at_ms = now + u64::try_from(lead.as_millis()).unwrap_or(u64::MAX);
    let mut spec = json!({
                "id": id,
                "title": "seckill-bench",
                "price_cents": 100,
                "stock": stock,
                "starts_at_ms": starts_at_ms,
                "ends_at_ms": starts_at_ms + 3_600_000,
                "per_user_limit": 1,
                "load_test": true,
                "quiz": funnel,
                "hidden_path": funnel,
    });
    if funnel {
        spec["quiz_questions"] = json!(1_000);
    }
    if shape == Shape::Room {
        spec["waiting_room"] = json!(true);
        spec["queue_max"] = json!(10_000_000);
    }
    admin
        .call("POST", "/admin/v1/campaigns", Some(spec))
        .await?;
    // Preload waits for the quiz images at most 10 s per call.
    for _ in 0..60 {
        let p = admin
            .call(
                "POST",
                &format!("/admin/v1/campaigns/{id}/preload"),
                Some(json!({})),
            )
            .await?;
        if p["quiz_images"].is_null() || p["quiz_images"]["complete"] == json!(true) {
            break;
        }
    }
    Ok(Campaign {
        id,
        stock,
        starts_at_ms,
    })
}

/// A grab that passes the whole funnel: the buyer's own grab path and a
/// quiz token answered right (single use).
#[derive(Debug)]
pub struct Fixture {
    pub token: String,
    pub path: Arc<str>,
    pub body: Bytes,
}

/// Walks `count` buyers through the steps before the grab, as a page would
/// (`GET grab-path`, `GET quiz`), over `connections` connections, answers
/// each question from the load-test export, and waits out the quiz's
/// minimum answer time: the grabs are then ready to send. The campaign must
/// have started.
pub async fn funnel_fixtures(
    admin: &Admin,
    authority: &str,
    c: &Campaign,
    buyers: &Arc<Buyers>,
    count: u64,
    connections: usize,
) -> anyhow::Result<Vec<Fixture>> {
    let answers = admin
        .call(
            "GET",
            &format!("/admin/v1/campaigns/{}/quiz-answers", c.id),
            None,
        )
        .await?;
    let answers: Arc<HashMap<String, String>> = Arc::new(
        serde_json::from_value(answers["answers"].clone())
            .context("quiz-answers: no answers map")?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let base: Arc<str> = format!("/api/v1/campaigns/{}", c.id).into();
    let mut tasks = Vec::new();
    let mut min_answer_ms = 0;
    for _ in 0..connections.max(1) {
        let (next, answers, base, buyers) = (
            Arc::clone(&next),
            Arc::clone(&answers),
            Arc::clone(&base),
            Arc::clone(buyers),
        );
        let mut conn = Conn::open(authority).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut min_answer_ms = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let token = buyers.token(i)?;
                let gp = conn.get_json(&format!("{base}/grab-path"), &token).await?;
                let path = gp["grab_path"].as_str().context("no grab_path")?;
                let q = conn.get_json(&format!("{base}/quiz"), &token).await?;
                let image = q["image_url"].as_str().context("no image_url")?;
                let answer = answers
                    .get(image)
                    .with_context(|| format!("{image} is not in the quiz export"))?;
                min_answer_ms = q["min_answer_ms"].as_u64().unwrap_or(1_000);
                let body = json!({ "quiz_token": q["quiz_token"], "answer": answer });
                out.push(Fixture {
                    token,
                    path: path.into(),
                    body: Bytes::from(body.to_string()),
                });
            }
            Ok::<_, anyhow::Error>((out, min_answer_ms))
        }));
    }
    let mut fixtures = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for t in tasks {
        let (mut part, ms) = t.await??;
        fixtures.append(&mut part);
        min_answer_ms = min_answer_ms.max(ms);
    }
    tokio::time::sleep(Duration::from_millis(min_answer_ms + 50)).await;
    Ok(fixtures)
}

/// Buyer tokens: signed here, or minted by the admin API beforehand.
#[derive(Debug)]
pub enum Buyers {
    Signed {
        key: jsonwebtoken::EncodingKey,
        run: String,
        exp: u64,
    },
    Minted(Vec<String>),
}

/// Most tokens one admin call mints.
const MINT_BATCH: u64 = 10_000;
/// Most tokens minted ahead of a run (about 200 bytes each).
pub const MINTED_MAX: u64 = 1_000_000;

impl Buyers {
    pub async fn new(
        admin: &Admin,
        secret: Option<&str>,
        run: &str,
        users: u64,
    ) -> anyhow::Result<Self> {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        if let Some(secret) = secret {
            return Ok(Self::Signed {
                key: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                run: run.to_string(),
                exp: now_s + 3_600,
            });
        }
        if users > MINTED_MAX {
            bail!("--users {users}: at most {MINTED_MAX} tokens are minted ahead; give --jwt-secret to sign them on the fly");
        }
        let mut tokens = Vec::with_capacity(users as usize);
        let mut from = 0;
        while from < users {
            let to = (from + MINT_BATCH).min(users);
            let ids: Vec<String> = (from..to).map(|i| user_id(run, i)).collect();
            let minted = admin
                .call(
                    "POST",
                    "/admin/v1/tokens",
                    Some(json!({ "user_ids": ids, "ttl_s": 3600 })),
                )
                .await?;
            for u in &ids {
                tokens.push(
                    minted["tokens"][u]
                        .as_str()
                        .context("minted tokens: one missing")?
                        .to_string(),
                );
            }
            from = to;
        }
        Ok(Self::Minted(tokens))
    }

    /// The token of buyer `i`.
    pub fn token(&self, i: u64) -> anyhow::Result<String> {
        match self {
            Self::Minted(tokens) => Ok(tokens[(i % tokens.len() as u64) as usize].clone()),
            Self::Signed { key, run, exp } => {
                let claims = json!({ "sub": user_id(run, i), "exp": exp, "iat": exp - 3_600 });
                Ok(jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    key,
                )?)
            }
        }
    }
}

fn user_id(run: &str, i: u64) -> String {
    format!("b{run}-{i}")
}

/// What the read-back found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub winners: u64,
    pub paid: u64,
    pub persisted: u64,
    pub remaining: Option<u64>,
    pub problems: Vec<String>,
}

/// Waits (bounded) for the writers to drain, then checks the sale against
/// what the run was told: every acknowledged order is a stored winner and
/// every stored winner was acknowledged, no buyer twice, never more than
/// the stock and exactly the stock once anyone was told `sold_out`, and
/// the ledger conserves the stock.
pub async fn verify(
    admin: &Admin,
    c: &Campaign,
    acknowledged: &HashSet<String>,
    saw_sold_out: bool,
    drain_wait: Duration,
) -> anyhow::Result<Verdict> {
    let stats_path = format!("/admin/v1/campaigns/{}/stats", c.id);
    let deadline = tokio::time::Instant::now() + drain_wait;
    let stats = loop {
        let stats = admin.call("GET", &stats_path, None).await?;
        if stats["orders_queued"].as_u64() == Some(0) || tokio::time::Instant::now() >= deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rows = admin
        .call(
            "GET",
            &format!("/admin/v1/campaigns/{}/orders?format=json", c.id),
            None,
        )
        .await?;
    let rows = rows.as_array().context("the export is not an array")?;
    Ok(judge(c.stock, acknowledged, saw_sold_out, rows, &stats))
}

/// The invariants, from the export's rows and the stats (see `verify`).
pub fn judge(
    stock: u64,
    acknowledged: &HashSet<String>,
    saw_sold_out: bool,
    rows: &[Value],
    stats: &Value,
) -> Verdict {
    let live: Vec<&Value> = rows
        .iter()
        .filter(|o| !matches!(o["status"].as_str(), Some("expired" | "cancelled")))
        .collect();
    let ids: HashSet<String> = live
        .iter()
        .filter_map(|o| o["order_id"].as_str().map(str::to_string))
        .collect();
    let users: HashSet<&str> = live.iter().filter_map(|o| o["user_id"].as_str()).collect();
    let mut v = Verdict {
        winners: live.len() as u64,
        paid: stats["orders_paid"].as_u64().unwrap_or(0),
        persisted: stats["orders_persisted"].as_u64().unwrap_or(0),
        remaining: stats["remaining"].as_u64(),
        problems: Vec::new(),
    };
    if stats["orders_queued"].as_u64() != Some(0) {
        v.problems.push(format!(
            "{} orders still queued when the read-back gave up waiting",
            stats["orders_queued"]
        ));
    }
    let lost = acknowledged.difference(&ids).count();
    if lost > 0 {
        v.problems
            .push(format!("{lost} acknowledged orders are not stored winners"));
    }
    let unacked = ids.difference(acknowledged).count();
    if unacked > 0 {
        v.problems.push(format!(
            "{unacked} stored winners were never acknowledged (202) to this run"
        ));
    }
    if users.len() != live.len() {
        v.problems.push(format!(
            "{} buyers hold more than one unit",
            live.len() - users.len()
        ));
    }
    if v.winners > stock {
        v.problems
            .push(format!("{} winners for {} units", v.winners, stock));
    }
    if saw_sold_out && v.winners != stock {
        v.problems.push(format!(
            "sold out with {} winners for {} units",
            v.winners, stock
        ));
    }
    if let (Some(rem), Some(sold)) = (v.remaining, stats["sold"].as_u64()) {
        if rem + sold != stock {
            v.problems
                .push(format!("remaining {rem} + sold {sold} != stock {}", stock));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::judge;
    use serde_json::{json, Value};
    use std::collections::HashSet;

    fn row(id: &str, user: &str, status: &str) -> Value {
        json!({ "order_id": id, "user_id": user, "status": status })
    }

    fn acked(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn stats(sold: u64, remaining: u64) -> Value {
        json!({ "orders_queued": 0, "sold": sold, "remaining": remaining, "orders_persisted": sold })
    }

    #[test]
    fn a_clean_sale_holds() {
        let rows = [
            row("a", "u1", "confirmed"),
            row("b", "u2", "paid"),
            row("c", "u3", "expired"),
        ];
        let v = judge(2, &acked(&["a", "b"]), true, &rows, &stats(2, 0));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.winners, 2);
    }

    #[test]
    fn every_broken_invariant_is_named() {
        // An acknowledged order missing, a stored one never acknowledged.
        let rows = [row("a", "u1", "confirmed"), row("x", "u2", "confirmed")];
        let v = judge(2, &acked(&["a", "b"]), false, &rows, &stats(2, 0));
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        // A buyer twice, more winners than stock, stock not conserved.
        let rows = [
            row("a", "u1", "confirmed"),
            row("b", "u1", "confirmed"),
            row("c", "u3", "paid"),
        ];
        let v = judge(2, &acked(&["a", "b", "c"]), true, &rows, &stats(3, 1));
        let all = v.problems.join("; ");
        assert!(all.contains("more than one unit"), "{all}");
        assert!(all.contains("3 winners for 2 units"), "{all}");
        assert!(all.contains("sold out with 3 winners"), "{all}");
        assert!(all.contains("remaining 1 + sold 3 != stock 2"), "{all}");
        // Sold out told to buyers while a unit is left unsold.
        let rows = [row("a", "u1", "confirmed")];
        let v = judge(2, &acked(&["a"]), true, &rows, &stats(1, 1));
        assert_eq!(
            v.problems,
            vec!["sold out with 1 winners for 2 units".to_string()]
        );
    }
}
