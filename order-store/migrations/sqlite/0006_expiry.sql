-- Payment expiry. `sold` now counts the units held by active orders
-- (queued, confirmed, paid): a status change that releases stock (expired,
-- cancelled) lowers it in the same transaction, so a unit that came back
-- can be sold again under the guard `sold <= stock_total`.
-- `released_at_ms` is the durable mark that an order's unit went back to the
-- stock ledger (NULL: not yet); the expiry sweeper sets it after the
-- ledger's idempotent release, so a crash between the two is finished by
-- the next sweep. Orders expired before this column existed start
-- unreleased; the release is idempotent, so the sweeper settles them.
ALTER TABLE orders ADD COLUMN released_at_ms INTEGER
    CHECK (released_at_ms IS NULL OR released_at_ms >= 0);
UPDATE campaigns SET sold = (
    SELECT COUNT(*) FROM orders
    WHERE orders.campaign_id = campaigns.id AND orders.status NOT IN ('expired', 'cancelled'));
-- Serves the sweeper's two scans: confirmed orders by deadline, and
-- released-status orders not marked yet.
CREATE INDEX orders_sweep ON orders (status, released_at_ms, pay_by_ms);
