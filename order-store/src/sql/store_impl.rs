//! `impl_sql_store!`: the `OrderStore` methods whose SQL is the same on every
//! SQL backend, written once. sqlx types queries per database, so a generic
//! function would need a wall of trait bounds; a macro over the store type
//! gives each backend the same text, checked by the same contract suite.
//! The methods that differ (`write_batch`, `set_status`,
//! `next_ledger_generation`) come from the caller.

/// `impl_sql_store!(Store, campaign_order: "<column>", insert_dead_letter: CONST, { fns })`
/// implements `OrderStore` for `Store`, which must have a `pool` field.
macro_rules! impl_sql_store {
    ($store:ty, campaign_order: $order:literal, insert_dead_letter: $dead_letter:expr, { $($specific:tt)* }) => {
        #[async_trait::async_trait]
        impl engine::ports::OrderStore for $store {
            $($specific)*

            async fn insert_campaign(&self, c: &engine::Campaign) -> Result<(), engine::ports::StoreError> {
                use $crate::sql::rows::{self, db_err, is_unique_violation, to_i64};
                // The ledger generation starts explicitly at the engine's
                // first generation; the column default only serves the rows
                // that existed before the column did.
                let sql = format!(
                    "INSERT INTO campaigns ({}, ledger_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows::CAMPAIGN_COLUMNS
                );
                let result = sqlx::query(&sql)
                    .bind(c.id.as_str())
                    .bind(&c.title)
                    .bind(to_i64(c.price_cents, "price_cents")?)
                    .bind(to_i64(c.stock_total, "stock_total")?)
                    .bind(to_i64(c.starts_at_ms, "starts_at_ms")?)
                    .bind(to_i64(c.ends_at_ms, "ends_at_ms")?)
                    .bind(i64::from(c.per_user_limit))
                    .bind(c.quiz)
                    .bind(i64::from(c.payment_window_s))
                    .bind(c.load_test)
                    .bind(c.control.as_str())
                    .bind(i64::from(c.stock_buckets.unwrap_or(0)))
                    .bind(i64::from(c.quiz_questions))
                    .bind(c.hidden_path)
                    .bind(rows::room_to_text(c.waiting_room.as_ref())?)
                    .bind(to_i64(engine::ports::FIRST_LEDGER_GENERATION, "ledger_gen")?)
                    .execute(&self.pool)
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(engine::ports::StoreError::Conflict(
                        format!("campaign {} already exists", c.id),
                    )),
                    Err(e) => Err(db_err("inserting a campaign", e)),
                }
            }

            async fn set_control(
                &self,
                id: &engine::CampaignId,
                control: engine::Control,
            ) -> Result<(), engine::ports::StoreError> {
                // Both drivers report rows matched (MySQL through
                // CLIENT_FOUND_ROWS), so re-setting the current value counts 1.
                let done = sqlx::query("UPDATE campaigns SET control = ? WHERE id = ?")
                    .bind(control.as_str())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::sql::rows::db_err("setting a campaign's control", e))?;
                if done.rows_affected() == 0 {
                    return Err(engine::ports::StoreError::NotFound(format!("campaign {id}")));
                }
                Ok(())
            }

            async fn set_waiting_room(
                &self,
                id: &engine::CampaignId,
                room: Option<&engine::room::RoomConfig>,
            ) -> Result<(), engine::ports::StoreError> {
                let text = $crate::sql::rows::room_to_text(room)?;
                let done = sqlx::query("UPDATE campaigns SET waiting_room = ? WHERE id = ?")
                    .bind(text)
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::sql::rows::db_err("setting a campaign's waiting room", e))?;
                if done.rows_affected() == 0 {
                    return Err(engine::ports::StoreError::NotFound(format!("campaign {id}")));
                }
                Ok(())
            }

            async fn campaigns(&self) -> Result<Vec<engine::Campaign>, engine::ports::StoreError> {
                use $crate::sql::rows;
                // Creation order is what an operator expects.
                let sql = format!(
                    "SELECT {} FROM campaigns ORDER BY {}",
                    rows::CAMPAIGN_COLUMNS,
                    $order
                );
                let found = sqlx::query(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("listing campaigns", e))?;
                found.iter().map(rows::campaign_from_row).collect()
            }

            async fn checkpoint(&self, source: &str) -> Result<Option<u64>, engine::ports::StoreError> {
                use $crate::sql::rows::{db_err, get_u64};
                let row = sqlx::query("SELECT position FROM checkpoints WHERE source = ?")
                    .bind(source)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db_err("reading a checkpoint", e))?;
                row.map(|r| get_u64(&r, "position")).transpose()
            }

            async fn order(
                &self,
                id: &engine::OrderId,
            ) -> Result<Option<engine::Order>, engine::ports::StoreError> {
                use $crate::sql::rows;
                let sql = format!("SELECT {} FROM orders WHERE order_id = ?", rows::ORDER_COLUMNS);
                let row = sqlx::query(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("reading an order", e))?;
                row.map(|r| rows::order_from_row(&r)).transpose()
            }

            async fn orders(
                &self,
                campaign: &engine::CampaignId,
            ) -> Result<Vec<engine::Order>, engine::ports::StoreError> {
                use $crate::sql::rows;
                let sql = format!(
                    "SELECT {} FROM orders WHERE campaign_id = ? ORDER BY created_at_ms, order_id",
                    rows::ORDER_COLUMNS
                );
                let found = sqlx::query(&sql)
                    .bind(campaign.as_str())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("listing orders", e))?;
                found.iter().map(rows::order_from_row).collect()
            }

            async fn orders_page(
                &self,
                campaign: &engine::CampaignId,
                after: Option<&engine::OrderId>,
                limit: u32,
            ) -> Result<Vec<engine::Order>, engine::ports::StoreError> {
                use $crate::sql::rows;
                // "Up to 0 orders" is an empty page; no need to ask.
                if limit == 0 {
                    return Ok(Vec::new());
                }
                // Both schemas compare ids byte for byte, which is the order
                // of `OrderId`'s `Ord`. Starting after "" (no id is empty)
                // reads the first page.
                let found = sqlx::query(&rows::orders_page_sql())
                    .bind(campaign.as_str())
                    .bind(after.map_or("", engine::OrderId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("listing a page of orders", e))?;
                found.iter().map(rows::order_from_row).collect()
            }

            async fn count_by_status(
                &self,
                campaign: &engine::CampaignId,
            ) -> Result<Vec<(engine::OrderStatus, u64)>, engine::ports::StoreError> {
                use $crate::sql::rows;
                let found = sqlx::query(
                    "SELECT status, COUNT(*) AS count FROM orders WHERE campaign_id = ? \
                     GROUP BY status ORDER BY status",
                )
                .bind(campaign.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(|e| rows::db_err("counting orders", e))?;
                found.iter().map(rows::status_count_from_row).collect()
            }

            async fn sold(&self, campaign: &engine::CampaignId) -> Result<u64, engine::ports::StoreError> {
                use $crate::sql::rows::{db_err, get_u64};
                let row = sqlx::query("SELECT sold FROM campaigns WHERE id = ?")
                    .bind(campaign.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db_err("reading sold", e))?
                    .ok_or_else(|| engine::ports::StoreError::NotFound(format!("campaign {campaign}")))?;
                get_u64(&row, "sold")
            }

            async fn due_for_expiry(
                &self,
                now_ms: u64,
                limit: u32,
            ) -> Result<Vec<engine::Order>, engine::ports::StoreError> {
                use $crate::sql::rows;
                let sql = format!(
                    "SELECT {} FROM orders WHERE status = 'confirmed' AND released_at_ms IS NULL \
                     AND pay_by_ms < ? ORDER BY pay_by_ms, order_id LIMIT ?",
                    rows::ORDER_COLUMNS
                );
                let found = sqlx::query(&sql)
                    .bind(rows::to_i64(now_ms, "now_ms")?)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("listing orders due for expiry", e))?;
                found.iter().map(rows::order_from_row).collect()
            }

            async fn unreleased(
                &self,
                limit: u32,
            ) -> Result<Vec<engine::Order>, engine::ports::StoreError> {
                use $crate::sql::rows;
                let sql = format!(
                    "SELECT {} FROM orders WHERE status IN ('expired', 'cancelled') \
                     AND released_at_ms IS NULL ORDER BY pay_by_ms, order_id LIMIT ?",
                    rows::ORDER_COLUMNS
                );
                let found = sqlx::query(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("listing unreleased orders", e))?;
                found.iter().map(rows::order_from_row).collect()
            }

            async fn mark_released(
                &self,
                order: &engine::OrderId,
            ) -> Result<(), engine::ports::StoreError> {
                use $crate::sql::rows;
                // Both drivers report rows matched, so a repeat counts 1 too.
                let done = sqlx::query(
                    "UPDATE orders SET released_at_ms = COALESCE(released_at_ms, ?) \
                     WHERE order_id = ? AND status IN ('expired', 'cancelled')",
                )
                .bind($crate::sql::batch::wall_clock_ms())
                .bind(order.as_str())
                .execute(&self.pool)
                .await
                .map_err(|e| rows::db_err("marking an order released", e))?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                let row = sqlx::query($crate::sql::status::CURRENT_STATUS_SQL)
                    .bind(order.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| rows::db_err("reading an order status", e))?;
                match row.as_ref().map(rows::status_from_row).transpose()? {
                    None => Err(engine::ports::StoreError::NotFound(format!("order {order}"))),
                    Some(s) => Err(engine::ports::StoreError::Invariant(format!(
                        "order {order} is {}: its unit is still held, not released",
                        s.as_str()
                    ))),
                }
            }

            async fn released(
                &self,
                campaign: &engine::CampaignId,
            ) -> Result<u64, engine::ports::StoreError> {
                use $crate::sql::rows;
                let row = sqlx::query(
                    "SELECT COUNT(*) AS count FROM orders \
                     WHERE campaign_id = ? AND released_at_ms IS NOT NULL",
                )
                .bind(campaign.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| rows::db_err("counting released orders", e))?;
                rows::get_u64(&row, "count")
            }

            async fn record_dead_letter(
                &self,
                source: &str,
                campaign: Option<&engine::CampaignId>,
                reason: &str,
            ) -> Result<(), engine::ports::StoreError> {
                sqlx::query($dead_letter)
                    .bind(source)
                    .bind(campaign.map(engine::CampaignId::as_str))
                    .bind(reason)
                    .bind($crate::sql::batch::wall_clock_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::sql::rows::db_err("recording a dead letter", e))?;
                Ok(())
            }

            async fn dead_letters(
                &self,
                campaign: Option<&engine::CampaignId>,
            ) -> Result<u64, engine::ports::StoreError> {
                let n: i64 = match campaign {
                    Some(c) => {
                        sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters WHERE campaign_id = ?")
                            .bind(c.as_str())
                            .fetch_one(&self.pool)
                            .await
                    }
                    None => {
                        sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
                            .fetch_one(&self.pool)
                            .await
                    }
                }
                .map_err(|e| $crate::sql::rows::db_err("counting dead letters", e))?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}

pub(crate) use impl_sql_store;
