//! The waiting-room store contract: behaviour every `RoomStore` backend
//! must show. Each test uses campaigns no other test uses.

use crate::contract::unique_key;
use engine::ports::{Entry, Join, RoomError, RoomStore};
use engine::room::RoomState;
use engine::{CampaignId, UserId};
use std::collections::HashSet;
use std::sync::Arc;

const START: u64 = 1_000_000;

fn campaign() -> CampaignId {
    CampaignId::parse(&unique_key("room")).expect("campaign id")
}

fn user(i: u64) -> UserId {
    UserId::parse(&format!("u{i}")).expect("user id")
}

fn join<'a>(c: &'a CampaignId, u: &'a UserId, draw: u64, now_ms: u64) -> Join<'a> {
    Join {
        campaign: c,
        user: u,
        draw,
        now_ms,
        starts_at_ms: START,
        queue_max: 1_000,
        epoch: 7,
    }
}

/// Before the start buyers are pre-queued; at the start the pre-queue is
/// ranked by draw and sealed; later joiners are ranked behind, in order;
/// every buyer has one entry however often they join.
pub async fn pre_queue_is_ranked_by_draw_then_later_joiners_queue_behind(s: Arc<dyn RoomStore>) {
    let c = campaign();
    let draws = [50u64, 10, 40, 20, 30];
    for (i, &d) in draws.iter().enumerate() {
        let u = user(i as u64);
        for _ in 0..3 {
            assert_eq!(
                s.join(&join(&c, &u, d, START - 10)).await,
                Ok((7, Entry::Pre))
            );
        }
    }
    let counts = s.counts(&c, START - 5, START, 9).await.expect("counts");
    assert_eq!(
        (counts.epoch, counts.pre, counts.sealed, counts.queued),
        (7, 5, false, 0)
    );
    assert_eq!(
        s.pre_rank(&c, &user(0)).await,
        Ok(None),
        "no rank before the seal"
    );
    // The first join after the start seals: ranks follow the draws.
    let late = user(100);
    let (_, e) = s.join(&join(&c, &late, 0, START + 1)).await.expect("join");
    assert_eq!(
        e,
        Entry::Ranked {
            rank: 6,
            joined_ms: START + 1,
            eta_s: None
        }
    );
    let want = [5u64, 1, 4, 2, 3];
    for (i, &rank) in want.iter().enumerate() {
        assert_eq!(s.pre_rank(&c, &user(i as u64)).await, Ok(Some(rank)));
    }
    assert_eq!(s.pre_rank(&c, &late).await, Ok(None));
    // A pre-queued buyer joining again after the start keeps their draw.
    assert_eq!(
        s.join(&join(&c, &user(1), 99, START + 2)).await,
        Ok((7, Entry::Pre))
    );
    // Joining again keeps the first place and time.
    let (_, again) = s.join(&join(&c, &late, 0, START + 50)).await.expect("join");
    assert_eq!(again, e);
    let (_, e2) = s
        .join(&join(&c, &user(101), 0, START + 3))
        .await
        .expect("join");
    assert!(matches!(e2, Entry::Ranked { rank: 7, .. }), "{e2:?}");
    let counts = s.counts(&c, START + 4, START, 9).await.expect("counts");
    assert_eq!((counts.pre, counts.sealed, counts.queued), (5, true, 7));
}

/// Counting at the start seals an empty pre-queue too.
pub async fn counting_at_the_start_seals(s: Arc<dyn RoomStore>) {
    let c = campaign();
    let counts = s.counts(&c, START, START, 3).await.expect("counts");
    assert_eq!(
        (counts.epoch, counts.pre, counts.sealed, counts.queued),
        (3, 0, true, 0)
    );
    // A gateway whose clock is behind still queues behind the seal.
    let (_, e) = s
        .join(&join(&c, &user(1), 5, START - 1))
        .await
        .expect("join");
    assert!(matches!(e, Entry::Ranked { rank: 1, .. }), "{e:?}");
}

pub async fn a_full_queue_refuses_newcomers_only(s: Arc<dyn RoomStore>) {
    let c = campaign();
    fn small<'a>(c: &'a CampaignId, u: &'a UserId, now: u64) -> Join<'a> {
        Join {
            queue_max: 3,
            ..join(c, u, 1, now)
        }
    }
    let (a, b, d) = (user(1), user(2), user(3));
    s.join(&small(&c, &a, START - 1)).await.expect("1");
    s.join(&small(&c, &b, START + 1)).await.expect("2");
    s.join(&small(&c, &d, START + 1)).await.expect("3");
    assert_eq!(
        s.join(&small(&c, &user(4), START + 2)).await,
        Err(RoomError::Full)
    );
    assert_eq!(s.join(&small(&c, &a, START + 2)).await, Ok((7, Entry::Pre)));
    assert!(
        s.join(&small(&c, &b, START + 2)).await.is_ok(),
        "members may rejoin"
    );
}

pub async fn the_first_estimate_is_kept(s: Arc<dyn RoomStore>) {
    let c = campaign();
    let u = user(1);
    s.join(&join(&c, &u, 0, START + 1)).await.expect("join");
    assert_eq!(s.set_eta(&c, &u, 42).await, Ok(42));
    assert_eq!(s.set_eta(&c, &u, 7).await, Ok(42));
    let (_, e) = s.join(&join(&c, &u, 0, START + 9)).await.expect("join");
    assert_eq!(
        e,
        Entry::Ranked {
            rank: 1,
            joined_ms: START + 1,
            eta_s: Some(42)
        }
    );
}

/// One leader at a time; only the leader's state is stored.
pub async fn the_lease_fences_the_cursor(s: Arc<dyn RoomStore>) {
    let c = campaign();
    s.counts(&c, 0, START, 1).await.expect("counts");
    assert_eq!(s.state(&c).await, Ok(None));
    assert_eq!(s.lead(&c, 1, 60_000).await, Ok(true));
    assert_eq!(s.lead(&c, 2, 60_000).await, Ok(false), "held by 1");
    assert_eq!(s.lead(&c, 1, 60_000).await, Ok(true), "renewed");
    let st = RoomState {
        epoch: 1,
        admitted_milli: 12_000,
        history: vec![(1, 2), (3, 4)],
        ..RoomState::default()
    };
    assert_eq!(s.put_state(&c, 2, &st).await, Ok(false));
    assert_eq!(s.state(&c).await, Ok(None));
    assert_eq!(s.put_state(&c, 1, &st).await, Ok(true));
    assert_eq!(s.state(&c).await, Ok(Some(st)));
    // A lease ends when not renewed.
    let c2 = campaign();
    s.counts(&c2, 0, START, 1).await.expect("counts");
    assert_eq!(s.lead(&c2, 1, 50).await, Ok(true));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.lead(&c2, 2, 50).await.expect("lead") {
        assert!(std::time::Instant::now() < deadline, "lease never ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn claims_count_uses_and_finished_ranks(s: Arc<dyn RoomStore>) {
    let c = campaign();
    s.counts(&c, 0, START, 1).await.expect("counts");
    assert_eq!(s.claim(&c, 5, 1).await, Ok(true));
    assert_eq!(s.claim(&c, 5, 1).await, Ok(false), "one use");
    assert_eq!(s.claim(&c, 9, 2).await, Ok(true));
    assert_eq!(s.claim(&c, 9, 2).await, Ok(true));
    assert_eq!(s.claim(&c, 9, 2).await, Ok(false));
    assert_eq!(s.claim(&c, 2, 1).await, Ok(true));
    assert_eq!(s.finished(&c, 4).await, Ok((2, 3)));
    assert_eq!(s.finished(&c, 5).await, Ok((1, 3)));
    s.unclaim(&c, 5).await.expect("unclaim");
    assert_eq!(s.finished(&c, 0).await, Ok((2, 2)));
    assert_eq!(s.claim(&c, 5, 1).await, Ok(true), "given back");
    s.unclaim(&c, 9).await.expect("unclaim");
    assert_eq!(s.finished(&c, 0).await, Ok((3, 3)), "9 keeps one use");
}

/// 200 buyers join at once from many tasks, each several times: each gets
/// one rank, and the ranks are exactly 1..=200.
pub async fn racing_joins_get_distinct_ranks(s: Arc<dyn RoomStore>) {
    let c = Arc::new(campaign());
    s.counts(&c, START, START, 1).await.expect("counts");
    let tasks: Vec<_> = (0..600u64)
        .map(|i| {
            let (s, c) = (Arc::clone(&s), Arc::clone(&c));
            tokio::spawn(async move {
                let u = user(i % 200);
                let (_, e) = s.join(&join(&c, &u, 0, START + i)).await.expect("join");
                match e {
                    Entry::Ranked { rank, .. } => (i % 200, rank),
                    Entry::Pre => panic!("pre-queued after the seal"),
                }
            })
        })
        .collect();
    let mut by_user = std::collections::HashMap::new();
    for t in tasks {
        let (u, rank) = t.await.expect("task");
        let first = *by_user.entry(u).or_insert(rank);
        assert_eq!(first, rank, "user {u} got two ranks");
    }
    let ranks: HashSet<u64> = by_user.values().copied().collect();
    assert_eq!(ranks, (1..=200).collect::<HashSet<u64>>());
}

#[macro_export]
macro_rules! room_contract_tests {
    ($make:expr) => {
        $crate::room_contract_tests!(@each $make;
            pre_queue_is_ranked_by_draw_then_later_joiners_queue_behind,
            counting_at_the_start_seals,
            a_full_queue_refuses_newcomers_only,
            the_first_estimate_is_kept,
            the_lease_fences_the_cursor,
            claims_count_uses_and_finished_ranks,
            racing_joins_get_distinct_ranks
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        mod room_contract {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let make = $make;
                    let store: ::std::sync::Arc<dyn ::engine::ports::RoomStore> =
                        ::std::sync::Arc::new(make().await);
                    $crate::room_contract::$name(store).await;
                }
            )*
        }
    };
}
