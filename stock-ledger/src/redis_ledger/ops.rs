//! The multi-step operations of `RedisLedger`: layout discovery, writing a
//! campaign's buckets, the grab's fast and slow paths, release and peeking.

use super::{
    by_home, home, layout_key, shares, to_u64, unavailable, CampaignFlags, Keys, RedisLedger,
};
use engine::ports::{Hold, LedgerError, LedgerSnapshot, Reservation};
use engine::{CampaignId, UserId};
use redis::aio::ConnectionLike;
use std::sync::Arc;

impl<C> RedisLedger<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn keys(&self, c: &CampaignId, bucket: u32, buckets: u32) -> Keys {
        Keys::of(&self.cfg.prefix, c, bucket, buckets)
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

    /// Writes every bucket from scratch: `total` units minus `holds`, each
    /// hold in its user's home bucket, the rest spread evenly. The layout key
    /// goes last, so a half-written campaign is never visible as loaded.
    pub(super) async fn write_buckets(
        &self,
        c: &CampaignId,
        total: u64,
        buckets: u32,
        holds: &[Hold],
    ) -> Result<(), LedgerError> {
        let grouped = by_home(holds, buckets);
        let held: u64 = grouped.values().map(|v| v.len() as u64).sum();
        if held > total {
            return Err(LedgerError::Unavailable(format!(
                "durable records hold {held} units of {c} but its stock is {total}"
            )));
        }
        let stock = shares(total - held, buckets);
        for b in 0..buckets {
            let k = self.keys(c, b, buckets);
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
                .arg(buckets);
            for h in grouped.get(&b).into_iter().flatten() {
                inv.arg(h.user.as_str()).arg(h.n);
            }
            let _: i64 = inv
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
        }
        let _: () = redis::cmd("SET")
            .arg(layout_key(&self.cfg.prefix, c))
            .arg(buckets)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        // Fresh local state: old flags may describe another layout.
        self.campaigns
            .insert(c.clone(), Arc::new(CampaignFlags::new(buckets)));
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
        let (code, n, stock, seq): (i64, i64, i64, i64) = self
            .scripts
            .reserve
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.last)
            .key(&k.active)
            .key(&k.holds)
            .arg(user.as_str())
            .arg(limit)
            .arg(if flags.buckets > 1 { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if code == 3 {
            flags.set_blocked(true);
            return Ok(Reservation::NotLoaded);
        }
        flags.observe(h, to_u64(seq), to_u64(stock));
        Ok(match code {
            0 => Reservation::Reserved { n: hold_n(n)? },
            1 => Reservation::AlreadyBought,
            4 => return self.slow_path(c, flags, user, limit, h).await,
            _ => Reservation::SoldOut,
        })
    }

    /// The home bucket is empty: claim there (limit checked atomically),
    /// take a unit from any other bucket, then settle the claim. A crash in
    /// between leaves a pending claim that reconciliation settles from the
    /// durable records; it can make a user wait, never sell twice.
    async fn slow_path(
        &self,
        c: &CampaignId,
        flags: &CampaignFlags,
        user: &UserId,
        limit: u32,
        h: u32,
    ) -> Result<Reservation, LedgerError> {
        let hk = self.keys(c, h, flags.buckets);
        let (code, n): (i64, i64) = self
            .scripts
            .claim
            .key(&hk.meta)
            .key(&hk.last)
            .key(&hk.active)
            .key(&hk.holds)
            .key(&hk.pending)
            .arg(user.as_str())
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match code {
            0 => {}
            1 => return Ok(Reservation::AlreadyBought),
            _ => {
                flags.set_blocked(true);
                return Ok(Reservation::NotLoaded);
            }
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
            let took: Result<(i64, i64, i64, i64), _> = self
                .scripts
                .take
                .key(&k.meta)
                .key(&k.stock)
                .key(&k.seq)
                .invoke_async(&mut self.conn.clone())
                .await;
            match took {
                Ok((_, _, _, 0)) => {
                    flags.set_blocked(true);
                    break;
                }
                Ok((t, stock, seq, _)) => {
                    flags.observe(b, to_u64(seq), to_u64(stock));
                    if t == 1 {
                        taken = true;
                        break;
                    }
                }
                Err(e) => {
                    self.settle(&hk, user, n, true).await.ok();
                    return Err(unavailable(e));
                }
            }
        }
        self.settle(&hk, user, n, !taken).await?;
        Ok(if taken {
            Reservation::Reserved { n }
        } else if flags.blocked() {
            Reservation::NotLoaded
        } else {
            Reservation::SoldOut
        })
    }

    async fn settle(
        &self,
        hk: &Keys,
        user: &UserId,
        n: u32,
        undo: bool,
    ) -> Result<(), LedgerError> {
        let _: i64 = self
            .scripts
            .settle
            .key(&hk.active)
            .key(&hk.holds)
            .key(&hk.pending)
            .arg(user.as_str())
            .arg(n)
            .arg(if undo { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
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
        let (released, stock, seq): (i64, i64, i64) = self
            .scripts
            .release
            .key(&k.meta)
            .key(&k.stock)
            .key(&k.seq)
            .key(&k.active)
            .key(&k.holds)
            .arg(user.as_str())
            .arg(n)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if seq > 0 {
            flags.observe(h, to_u64(seq), to_u64(stock));
        }
        Ok(released == 1)
    }

    /// Reads every bucket; a missing one blocks the campaign on this gateway
    /// (and a complete read unblocks it, after a restore elsewhere).
    pub(super) async fn peek_all(
        &self,
        c: &CampaignId,
    ) -> Result<Option<LedgerSnapshot>, LedgerError> {
        let Some(flags) = self.layout(c).await? else {
            return Ok(None);
        };
        let (mut total, mut remaining, mut complete) = (0, 0, true);
        for b in 0..flags.buckets {
            let k = self.keys(c, b, flags.buckets);
            let (loaded, t, stock, seq): (i64, i64, i64, i64) = self
                .scripts
                .peek
                .key(&k.meta)
                .key(&k.stock)
                .key(&k.seq)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            if loaded == 0 {
                complete = false;
                continue;
            }
            if b == 0 {
                total = to_u64(t);
            }
            remaining += to_u64(stock);
            flags.observe(b, to_u64(seq), to_u64(stock));
        }
        flags.set_blocked(!complete);
        if !complete {
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
