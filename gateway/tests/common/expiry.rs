//! Steps shared by the payment-expiry tests of both profiles.

use super::{Server, ADMIN_TOKEN};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A buyer's order and the token that owns it.
#[derive(Debug, Clone)]
pub struct Bought {
    pub user: String,
    pub token: String,
    pub order_id: String,
}

/// One grab per token through alternating gateways; every one must be
/// accepted.
pub async fn buy(
    gateways: &[&Server],
    campaign: &str,
    users: &[String],
    tokens: &[String],
) -> Vec<Bought> {
    let mut out = Vec::new();
    for (i, (u, t)) in users.iter().zip(tokens).enumerate() {
        let r = gateways[i % gateways.len()].grab(campaign, t).await;
        assert_eq!(r.status, 202, "{u}: {}", String::from_utf8_lossy(&r.body));
        out.push(Bought {
            user: u.clone(),
            token: t.clone(),
            order_id: r.json()["order_id"].as_str().expect("order id").to_string(),
        });
    }
    out
}

pub async fn order(g: &Server, b: &Bought) -> Value {
    let r = g
        .get(&format!("/api/v1/orders/{}", b.order_id), Some(&b.token))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Pays once the order is confirmed (a queued one answers 409
/// `order_not_confirmed` with Retry-After): the reply of the first attempt
/// that is not "still queued", within `secs`.
pub async fn pay(g: &Server, b: &Bought, secs: u64) -> super::Reply {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = g
            .post_json(
                &format!("/api/v1/orders/{}/pay", b.order_id),
                Some(&b.token),
                &serde_json::json!({}),
            )
            .await;
        if r.code() != "order_not_confirmed" || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn pay_all(g: &Server, bought: &[Bought]) {
    for b in bought {
        let r = pay(g, b, 20).await;
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            b.user,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["status"], "paid");
    }
}

/// Polls the campaign's stats until `done` holds (at most `secs`); returns
/// the last stats read.
pub async fn stats_until(
    g: &Server,
    campaign: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = g.stats(campaign).await;
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "stats did not settle within {secs} s: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The numbers the acceptance fixes, read from stats.
pub fn assert_final(s: &Value, stock: u64, paid: u64, expired: u64) {
    assert_eq!(s["stock_total"], stock, "{s}");
    assert_eq!(s["orders_paid"], paid, "{s}");
    assert_eq!(s["orders_expired"], expired, "{s}");
    assert_eq!(
        s["units_returned"], expired,
        "every expired unit returned once: {s}"
    );
    assert_eq!(s["orders_persisted"], paid + expired, "{s}");
    assert_eq!(s["sold"], paid, "{s}");
    assert_eq!(s["store_sold"], paid, "{s}");
    let remaining = s["remaining"].as_u64().expect("ledger loaded");
    assert_eq!(remaining + paid, stock, "stock conserved: {s}");
}

pub async fn admin_get(g: &Server, path: &str) -> Value {
    let r = g.get(path, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// Checks each payment answer of a payment-vs-expiry race against the
/// order's final status (read from `g`): 200 means paid, 409
/// `order_expired` means expired, anything else fails. Returns
/// `(paid, expired)`.
pub async fn settle_race(g: &Server, answers: &[(Bought, u16, String)]) -> (u64, u64) {
    let (mut paid, mut expired) = (0u64, 0u64);
    for (b, status, code) in answers {
        let final_status = order(g, b).await["status"]
            .as_str()
            .expect("status")
            .to_string();
        match (*status, code.as_str()) {
            (200, _) => {
                assert_eq!(final_status, "paid", "{}", b.order_id);
                paid += 1;
            }
            (409, "order_expired") => {
                assert_eq!(final_status, "expired", "{}", b.order_id);
                expired += 1;
            }
            other => panic!("{}: unexpected answer {other:?}", b.order_id),
        }
    }
    (paid, expired)
}
