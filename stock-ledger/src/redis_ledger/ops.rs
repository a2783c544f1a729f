//! The multi-step operations of `RedisLedger`: calling a script (with
//! re-sends when its outcome is unknown), layout discovery, writing a
//! campaign's buckets, the grab's fast and slow paths, release and peeking.

use super::flags::{Effect, Version};
use super::{
    by_home, home, layout_key, outcome_unknown, request_id, retired_by_home, shares, to_u64,
    unavailable, CallError, CampaignFlags, Keys, RedisLedger, RESENDS, RESEND_PAUSE, RESEND_WITHIN,
};
use engine::ports::{Hold, LedgerError, LedgerSnapshot, Reservation};
use engine::{CampaignId, UserId};
use redis::aio::ConnectionLike;
use redis::{FromRedisValue, ScriptInvocation};
use std::sync::Arc;
use tokio::time::Instant;

/// What a RESERVE answered, before the slow path or the flags get a say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReserveCode {
    Reserved,
    AlreadyBought,
    SoldOut,
    NotLoaded,
    /// Bucketed and the home bucket is empty: take the slow path.
    HomeEmpty,
}

/// Maps RESERVE's reply code; a code this version does not know (another
/// version's script, a bug) is an error, never a business answer.
pub(super) fn reserve_code(code: i64) -> Result<ReserveCode, LedgerError> {
    Ok(match code {
        0 => ReserveCode::Reserved,
        1 => ReserveCode::AlreadyBought,
        2 => ReserveCode::SoldOut,
        3 => ReserveCode::NotLoaded,
        4 => ReserveCode::HomeEmpty,
        other => return Err(unknown_code("RESERVE", other)),
    })
}

fn unknown_code(script: &str, code: i64) -> LedgerError {
    LedgerError::Unavailable(format!("redis: {script} answered unknown code {code}"))
}

fn version(generation: i64, seq: i64) -> Version {
    Version {
        generation: to_u64(generation),
        seq: to_u64(seq),
    }
}

fn went_back(c: &CampaignId) -> LedgerError {
    LedgerError::Unavailable(format!(
        "the ledger data of {c} went back in time; the campaign is blocked until a restore"
    ))
}

impl<C> RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn keys(&self, c: &CampaignId, bucket: u32, buckets: u32) -> Keys {
        Keys::of(&self.cfg.prefix, c, bucket, buckets)
    }

    /// Runs a script invocation. When the outcome is unknown (an I/O error
    /// after the request may have left), sends the very same invocation
    /// again (same request id, so it cannot act twice) up to `RESENDS`
    /// times within `RESEND_WITHIN`, to learn what happened.
    async fn call<T: FromRedisValue>(
        &self,
        script: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        let mut conn = self.conn.clone();
        let mut last = match inv.invoke_async(&mut conn).await {
            Ok(v) => return Ok(v),
            Err(e) if !outcome_unknown(&e) => return Err(CallError::Failed(unavailable(e))),
            Err(e) => e,
        };
        let deadline = Instant::now() + RESEND_WITHIN;
        let mut pause = None;
        for _ in 0..RESENDS {
            if let Some(p) = pause {
                if Instant::now() + p >= deadline {
                    break;
                }
                tokio::time::sleep(p).await;
            }
            pause = Some(pause.map_or(RESEND_PAUSE, |p| p * 2));
            match tokio::time::timeout_at(deadline, inv.invoke_async(&mut conn)).await {
                Ok(Ok(v)) => {
                    tracing::info!(script, error = %last, "outcome learnt by re-sending");
                    return Ok(v);
                }
                // Even a definite error now leaves the first attempt's
                // outcome unknown: only an answer settles it.
                Ok(Err(e)) => last = e,
                Err(_) => break,
            }
        }
        Err(CallError::Unknown(LedgerError::Unavailable(format!(
            "redis: the outcome of {script} is unknown ({last})"
        ))))
    }

    /// The campaign's flags, reading its bucket count from Redis once per
    /// gateway; `None` when the campaign is not loaded.
    pub(super) async fn layout(
        &self,
        c: &CampaignId,
    ) -> Result<Option<Arc<CampaignFlags>>, LedgerError> {
        if let Some(f) = self.campaigns.get(c) {
            return Ok(Some(Arc::clone(&f)));
        }
        let buckets: Option<u32> = redis::cmd("GET")
            .arg(layout_key(&self.cfg.prefix, c))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let Some(buckets) = buckets.filter(|b| (1..=super::BUCKETS_MAX).contains(b)) else {
            return Ok(None);
        };
        let flags = Arc::clone(
            &self
                .campaigns
                .entry(c.clone())
                .or_insert_with(|| Arc::new(CampaignFlags::new(buckets))),
        );
        Ok(Some(flags))
    }

    /// Writes every bucket from scratch with `generation`: `total` units
    /// minus the distinct `holds`, each hold in its user's home bucket, the
    /// rest spread evenly; `retired` numbers only move each user's `n` on.
    /// The layout key goes last, so a half-written campaign is never visible
    /// as loaded. Refused when the data in Redis has a newer generation.
    pub(super) async fn write_buckets(
        &self,
        c: &CampaignId,
        total: u64,
        buckets: u32,
        holds: &[Hold],
        retired: &[Hold],
        generation: u64,
    ) -> Result<(), LedgerError> {
        let grouped = by_home(holds, buckets);
        let retired = retired_by_home(retired, buckets);
        let held: u64 = grouped.values().map(|v| v.len() as u64).sum();
        if held > total {
            return Err(LedgerError::Unavailable(format!(
                "durable records hold {held} units of {c} but its stock is {total}"
            )));
        }
        // The flags this gateway has stay (the new generation replaces what
        // they know), unless they describe another layout.
        let flags = match self.campaigns.get(c) {
            Some(f) if f.buckets == buckets => Arc::clone(&f),
            _ => Arc::new(CampaignFlags::new(buckets)),
        };
        let stock = shares(total - held, buckets);
        for b in 0..buckets {
            let k = self.keys(c, b, buckets);
            let mine = grouped.get(&b).map_or(&[][..], Vec::as_slice);
            let mut inv = self.scripts.restore.prepare_invoke();
            inv.key(&k.meta)
                .key(&k.stock)
                .key(&k.seq)
                .key(&k.last)
                .key(&k.active)
                .key(&k.holds)
                .key(&k.pending)
                .arg(stock[b as usize])
                .arg(total)
                .arg(buckets)
                .arg(generation)
                .arg(mine.len());
            for h in mine {
                inv.arg(h.user.as_str()).arg(h.n);
            }
            for (user, n) in retired.get(&b).into_iter().flatten() {
                inv.arg(user.as_str()).arg(*n);
            }
            let floor = flags.floor(b);
            let (done, gen, seq, left): (i64, i64, i64, i64) = self.call("RESTORE", &inv).await?;
            if done == 0 {
                return Err(LedgerError::Unavailable(format!(
                    "restoring {c} with generation {generation} refused: its ledger data already \
                     has generation {gen}"
                )));
            }
            flags.observe(b, floor, version(gen, seq), to_u64(left), Effect::Changed);
        }
        let _: () = redis::cmd("SET")
            .arg(layout_key(&self.cfg.prefix, c))
            .arg(buckets)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.campaigns.insert(c.clone(), flags);
        self.peek_all(c).await?;
        Ok(())
    }

    pub(super) async fn reserve_in(
        &self,
        c: &CampaignId,
        flags: &CampaignFlags,
        user: &UserId,
        limit: u32,
    ) -> Result<Reservation, LedgerError> {
        let h = home(user, flags.buckets);
        let k = self.keys(c, h, flags.buckets);
        let rid = request_id();
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.last)
            .key(&k.active)
            .key(&k.holds)
            .key(k.request(&rid))
            .arg(user.as_str())
            .arg(limit)
            .arg(if flags.buckets > 1 { "1" } else { "0" });
        let floor = flags.floor(h);
        let (code, n, stock, gen, seq): (i64, i64, i64, i64, i64) =
            self.call("RESERVE", &inv).await?;
        let code = reserve_code(code)?;
        if code == ReserveCode::NotLoaded {
            flags.mark_lost(h);
            return Ok(Reservation::NotLoaded);
        }
        let effect = if code == ReserveCode::Reserved {
            Effect::Changed
        } else {
            Effect::Unchanged
        };
        if !flags.observe(h, floor, version(gen, seq), to_u64(stock), effect) {
            // The data went back in time; a hold made there lives only in
            // the stale data, which the restore replaces.
            return Ok(Reservation::NotLoaded);
        }
        Ok(match code {
            ReserveCode::Reserved => Reservation::Reserved { n: hold_n(n)? },
            ReserveCode::AlreadyBought => Reservation::AlreadyBought,
            ReserveCode::SoldOut => Reservation::SoldOut,
            ReserveCode::NotLoaded => Reservation::NotLoaded,
            ReserveCode::HomeEmpty => return self.slow_path(c, flags, user, limit, h).await,
        })
    }

    /// The home bucket is empty: claim there (limit checked atomically),
    /// take a unit from any other bucket, then settle the claim. A crash, or
    /// a take whose outcome stays unknown, in between leaves a pending claim
    /// (listed by `holds()`) that reconciliation settles from the durable
    /// records; it can make a user wait, never sell twice.
    async fn slow_path(
        &self,
        c: &CampaignId,
        flags: &CampaignFlags,
        user: &UserId,
        limit: u32,
        h: u32,
    ) -> Result<Reservation, LedgerError> {
        let hk = self.keys(c, h, flags.buckets);
        let rid = request_id();
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(&hk.meta)
            .key(&hk.stock)
            .key(&hk.seq)
            .key(&hk.last)
            .key(&hk.active)
            .key(&hk.holds)
            .key(&hk.pending)
            .key(hk.request(&rid))
            .arg(user.as_str())
            .arg(limit);
        let floor = flags.floor(h);
        let (code, n, stock, gen, seq): (i64, i64, i64, i64, i64) =
            self.call("CLAIM", &inv).await?;
        let effect = match code {
            0 => Effect::Changed,
            1 => Effect::Unchanged,
            3 => {
                flags.mark_lost(h);
                return Ok(Reservation::NotLoaded);
            }
            other => return Err(unknown_code("CLAIM", other)),
        };
        if !flags.observe(h, floor, version(gen, seq), to_u64(stock), effect) {
            return Ok(Reservation::NotLoaded);
        }
        if effect == Effect::Unchanged {
            return Ok(Reservation::AlreadyBought);
        }
        let n = hold_n(n)?;
        // Buckets believed non-empty first; then the rest, since flags lag.
        let mut order: Vec<u32> = (1..flags.buckets)
            .map(|i| (h + i) % flags.buckets)
            .collect();
        order.sort_by_key(|&b| flags.bucket_empty(b));
        let mut taken = false;
        for b in order {
            let k = self.keys(c, b, flags.buckets);
            let rid = request_id();
            let mut inv = self.scripts.take.prepare_invoke();
            inv.key(&k.meta)
                .key(&k.stock)
                .key(&k.seq)
                .key(k.request(&rid));
            let floor = flags.floor(b);
            match self.call::<(i64, i64, i64, i64, i64)>("TAKE", &inv).await {
                Ok((_, _, _, _, 0)) => {
                    flags.mark_lost(b);
                    break;
                }
                Ok((t, stock, gen, seq, _)) => {
                    let effect = if t == 1 {
                        Effect::Changed
                    } else {
                        Effect::Unchanged
                    };
                    // A unit taken from data that went back in time is not
                    // one: the claim is undone below, the stale data
                    // replaced by the restore.
                    if !flags.observe(b, floor, version(gen, seq), to_u64(stock), effect) {
                        break;
                    }
                    if t == 1 {
                        taken = true;
                        break;
                    }
                }
                Err(CallError::Failed(e)) => {
                    // The take did not run: nothing left bucket `b`.
                    self.settle(flags, &hk, h, user, n, true).await.ok();
                    return Err(e);
                }
                Err(CallError::Unknown(e)) => {
                    // A unit may or may not have left bucket `b`: undoing
                    // the claim could strand it, finishing it could sell one
                    // that is still there. The claim stays pending for
                    // reconciliation.
                    tracing::warn!(campaign = %c, user = %user, n, bucket = b, error = %e,
                        "slow-path take outcome unknown; claim left pending for reconciliation");
                    return Err(e);
                }
            }
        }
        let settled = self.settle(flags, &hk, h, user, n, !taken).await?;
        Ok(if taken && settled {
            Reservation::Reserved { n }
        } else if flags.blocked() || !settled {
            Reservation::NotLoaded
        } else {
            Reservation::SoldOut
        })
    }

    /// Finishes (`undo == false`) or undoes a claim; false when the reply
    /// cannot be trusted (keys gone, data went back in time).
    async fn settle(
        &self,
        flags: &CampaignFlags,
        hk: &Keys,
        h: u32,
        user: &UserId,
        n: u32,
        undo: bool,
    ) -> Result<bool, LedgerError> {
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(&hk.meta)
            .key(&hk.stock)
            .key(&hk.seq)
            .key(&hk.active)
            .key(&hk.holds)
            .key(&hk.pending)
            .arg(user.as_str())
            .arg(n)
            .arg(if undo { "1" } else { "0" });
        let floor = flags.floor(h);
        let (loaded, stock, gen, seq): (i64, i64, i64, i64) =
            self.call("SETTLE_CLAIM", &inv).await?;
        if loaded == 0 {
            flags.mark_lost(h);
            return Ok(false);
        }
        Ok(flags.observe(
            h,
            floor,
            version(gen, seq),
            to_u64(stock),
            Effect::Unchanged,
        ))
    }

    pub(super) async fn release_in(
        &self,
        c: &CampaignId,
        flags: &CampaignFlags,
        user: &UserId,
        n: u32,
    ) -> Result<bool, LedgerError> {
        let h = home(user, flags.buckets);
        let k = self.keys(c, h, flags.buckets);
        let rid = request_id();
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.active)
            .key(&k.holds)
            .key(&k.pending)
            .key(k.request(&rid))
            .arg(user.as_str())
            .arg(n);
        let floor = flags.floor(h);
        let (released, stock, gen, seq, loaded): (i64, i64, i64, i64, i64) =
            self.call("RELEASE", &inv).await?;
        if loaded == 0 {
            flags.mark_lost(h);
            return Ok(false);
        }
        let effect = if released == 1 {
            Effect::Changed
        } else {
            Effect::Unchanged
        };
        if !flags.observe(h, floor, version(gen, seq), to_u64(stock), effect) {
            return Err(went_back(c));
        }
        Ok(released == 1)
    }

    /// Reads every bucket; a missing one blocks the campaign on this gateway
    /// (until it is back), data older than seen blocks it until a newer
    /// generation. `None` while the campaign is blocked.
    pub(super) async fn peek_all(
        &self,
        c: &CampaignId,
    ) -> Result<Option<LedgerSnapshot>, LedgerError> {
        let Some(flags) = self.layout(c).await? else {
            return Ok(None);
        };
        let (mut total, mut remaining) = (0, 0);
        for b in 0..flags.buckets {
            let k = self.keys(c, b, flags.buckets);
            let mut inv = self.scripts.peek.prepare_invoke();
            inv.key(&k.meta).key(&k.stock).key(&k.seq);
            let floor = flags.floor(b);
            let (loaded, t, stock, gen, seq): (i64, i64, i64, i64, i64) =
                self.call("PEEK", &inv).await?;
            if loaded == 0 {
                flags.mark_lost(b);
                continue;
            }
            if b == 0 {
                total = to_u64(t);
            }
            remaining += to_u64(stock);
            flags.observe(
                b,
                floor,
                version(gen, seq),
                to_u64(stock),
                Effect::Unchanged,
            );
        }
        if flags.blocked() {
            return Ok(None);
        }
        Ok(Some(LedgerSnapshot {
            total,
            reserved: total.saturating_sub(remaining),
            remaining,
        }))
    }
}

fn hold_n(n: i64) -> Result<u32, LedgerError> {
    u32::try_from(n)
        .map_err(|_| LedgerError::Unavailable(format!("redis returned hold number {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_codes_map_and_unknown_codes_are_errors() {
        assert_eq!(reserve_code(0), Ok(ReserveCode::Reserved));
        assert_eq!(reserve_code(1), Ok(ReserveCode::AlreadyBought));
        assert_eq!(reserve_code(2), Ok(ReserveCode::SoldOut));
        assert_eq!(reserve_code(3), Ok(ReserveCode::NotLoaded));
        assert_eq!(reserve_code(4), Ok(ReserveCode::HomeEmpty));
        for code in [5, -1, 99] {
            match reserve_code(code) {
                Err(LedgerError::Unavailable(why)) => {
                    assert!(why.contains(&code.to_string()), "{why}")
                }
                other => panic!("code {code} must be an error, got {other:?}"),
            }
        }
    }
}
