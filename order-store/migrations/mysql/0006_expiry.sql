-- Payment expiry; the same change as migrations/sqlite/0006_expiry.sql.
-- `sold` now counts the units held by active orders (queued, confirmed,
-- paid): a status change that releases stock (expired, cancelled) lowers it
-- in the same transaction. `released_at_ms` is the durable mark that an
-- order's unit went back to the stock ledger (NULL: not yet).
ALTER TABLE orders ADD COLUMN released_at_ms BIGINT NULL,
    ADD CONSTRAINT orders_released CHECK (released_at_ms IS NULL OR released_at_ms >= 0),
    ADD KEY orders_sweep (status, released_at_ms, pay_by_ms);
UPDATE campaigns SET sold = (
    SELECT COUNT(*) FROM orders
    WHERE orders.campaign_id = campaigns.id AND orders.status NOT IN ('expired', 'cancelled'));
