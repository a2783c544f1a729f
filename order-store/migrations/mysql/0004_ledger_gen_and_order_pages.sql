-- The generation of a campaign's ledger data (`OrderStore::next_ledger_generation`):
-- 1 (engine::ports::FIRST_LEDGER_GENERATION) for the first load, raised by
-- one per restore. Existing campaigns were loaded once, so they start at 1.
ALTER TABLE campaigns ADD COLUMN ledger_gen BIGINT NOT NULL DEFAULT 1,
    ADD CONSTRAINT campaigns_ledger_gen CHECK (ledger_gen >= 1);

-- Serves `orders_page`: a campaign's orders in order-id order, resumed after
-- the last id of the previous page (keyset pagination).
CREATE INDEX orders_by_campaign_id ON orders (campaign_id, order_id);
