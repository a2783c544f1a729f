-- Ledger buckets a campaign asked for; 0 leaves the choice to the ledger.
ALTER TABLE campaigns ADD COLUMN stock_buckets BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT campaigns_stock_buckets CHECK (stock_buckets >= 0 AND stock_buckets <= 64);
