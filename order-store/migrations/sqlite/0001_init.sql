-- The embedded order store: campaigns with their guarded sold counter, the
-- final record of every order, and the log checkpoints committed with them.
-- STRICT tables make SQLite refuse values of the wrong type, so a bad row
-- cannot be written in the first place.

CREATE TABLE campaigns (
    id               TEXT    NOT NULL PRIMARY KEY,
    title            TEXT    NOT NULL,
    price_cents      INTEGER NOT NULL CHECK (price_cents >= 0),
    stock_total      INTEGER NOT NULL CHECK (stock_total >= 0),
    starts_at_ms     INTEGER NOT NULL CHECK (starts_at_ms >= 0),
    ends_at_ms       INTEGER NOT NULL CHECK (ends_at_ms >= 0),
    per_user_limit   INTEGER NOT NULL CHECK (per_user_limit >= 1),
    quiz             INTEGER NOT NULL CHECK (quiz IN (0, 1)),
    payment_window_s INTEGER NOT NULL CHECK (payment_window_s >= 0),
    load_test        INTEGER NOT NULL CHECK (load_test IN (0, 1)),
    control          TEXT    NOT NULL CHECK (control IN ('active', 'paused', 'stopped')),
    -- The final oversell guard: the database itself refuses sold > stock.
    sold             INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0 AND sold <= stock_total)
) STRICT;

CREATE TABLE orders (
    order_id      TEXT    NOT NULL PRIMARY KEY,
    campaign_id   TEXT    NOT NULL REFERENCES campaigns (id),
    user_id       TEXT    NOT NULL,
    n             INTEGER NOT NULL CHECK (n >= 1),
    price_cents   INTEGER NOT NULL CHECK (price_cents >= 0),
    created_at_ms INTEGER NOT NULL CHECK (created_at_ms >= 0),
    pay_by_ms     INTEGER NOT NULL CHECK (pay_by_ms >= 0),
    status        TEXT    NOT NULL
        CHECK (status IN ('queued', 'confirmed', 'paid', 'cancelled', 'expired')),
    updated_at_ms INTEGER NOT NULL CHECK (updated_at_ms >= 0),
    -- One row per unit a user holds: a replayed or duplicated grab cannot
    -- become a second order even under a different order id.
    UNIQUE (campaign_id, user_id, n)
) STRICT;

-- Serves `orders(campaign)`, which lists a campaign's orders in creation order.
CREATE INDEX orders_by_campaign_created ON orders (campaign_id, created_at_ms, order_id);

CREATE TABLE checkpoints (
    source   TEXT    NOT NULL PRIMARY KEY,
    position INTEGER NOT NULL CHECK (position >= 0)
) STRICT;
