-- Ledger buckets a campaign asked for; 0 leaves the choice to the ledger.
ALTER TABLE campaigns ADD COLUMN stock_buckets INTEGER NOT NULL DEFAULT 0
    CHECK (stock_buckets >= 0 AND stock_buckets <= 64);
