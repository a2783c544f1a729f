-- The production order store on MySQL 8 / MariaDB 10.11: the same tables,
-- columns and rules as migrations/sqlite/0001_init.sql, on InnoDB.
--
-- Every integer is a signed BIGINT: the store converts u64 values through a
-- checked i64 conversion, and sqlx decodes a signed column into i64 only.
-- utf8mb4_bin makes text compare byte for byte like SQLite does: ids are
-- case-sensitive ("Sale" and "sale" are two campaigns), and titles keep any
-- Unicode character, including 4-byte ones. Its PAD SPACE rule (trailing
-- spaces ignored) never applies, because ids cannot contain spaces.
-- VARCHAR sizes are the engine's limits (CAMPAIGN_ID_LEN_MAX,
-- USER_ID_LEN_MAX, ORDER_ID_LEN, TITLE_LEN_MAX).
-- Multi-column CHECKs are table constraints because both servers refuse a
-- column constraint that names another column; both enforce CHECK
-- (MySQL from 8.0.16, MariaDB from 10.2).

CREATE TABLE campaigns (
    id               VARCHAR(64)  NOT NULL,
    -- Creation order for `campaigns()`, which SQLite reads from its rowid.
    seq              BIGINT       NOT NULL AUTO_INCREMENT,
    title            VARCHAR(200) NOT NULL,
    price_cents      BIGINT       NOT NULL,
    stock_total      BIGINT       NOT NULL,
    starts_at_ms     BIGINT       NOT NULL,
    ends_at_ms       BIGINT       NOT NULL,
    per_user_limit   BIGINT       NOT NULL,
    quiz             BOOLEAN      NOT NULL,
    payment_window_s BIGINT       NOT NULL,
    load_test        BOOLEAN      NOT NULL,
    control          VARCHAR(16)  NOT NULL,
    sold             BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY campaigns_seq (seq),
    CONSTRAINT campaigns_price CHECK (price_cents >= 0),
    CONSTRAINT campaigns_stock CHECK (stock_total >= 0),
    CONSTRAINT campaigns_times CHECK (starts_at_ms >= 0 AND ends_at_ms >= 0),
    CONSTRAINT campaigns_limit CHECK (per_user_limit >= 1),
    CONSTRAINT campaigns_quiz CHECK (quiz IN (0, 1)),
    CONSTRAINT campaigns_window CHECK (payment_window_s >= 0),
    CONSTRAINT campaigns_load_test CHECK (load_test IN (0, 1)),
    CONSTRAINT campaigns_control CHECK (control IN ('active', 'paused', 'stopped')),
    -- The final oversell guard: the database itself refuses sold > stock.
    CONSTRAINT campaigns_sold CHECK (sold >= 0 AND sold <= stock_total)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE orders (
    order_id      VARCHAR(32)  NOT NULL,
    campaign_id   VARCHAR(64)  NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    n             BIGINT       NOT NULL,
    price_cents   BIGINT       NOT NULL,
    created_at_ms BIGINT       NOT NULL,
    pay_by_ms     BIGINT       NOT NULL,
    status        VARCHAR(16)  NOT NULL,
    updated_at_ms BIGINT       NOT NULL,
    PRIMARY KEY (order_id),
    -- One row per unit a user holds: a replayed or duplicated grab cannot
    -- become a second order even under a different order id. It also serves
    -- the foreign key, whose column must lead an index.
    UNIQUE KEY orders_unit (campaign_id, user_id, n),
    -- Serves `orders(campaign)`, which lists a campaign's orders in creation order.
    KEY orders_by_campaign_created (campaign_id, created_at_ms, order_id),
    CONSTRAINT orders_campaign FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
    CONSTRAINT orders_n CHECK (n >= 1),
    CONSTRAINT orders_price CHECK (price_cents >= 0),
    CONSTRAINT orders_times CHECK (created_at_ms >= 0 AND pay_by_ms >= 0 AND updated_at_ms >= 0),
    CONSTRAINT orders_status
        CHECK (status IN ('queued', 'confirmed', 'paid', 'cancelled', 'expired'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE checkpoints (
    -- A log source such as a file log name or a Kafka topic and partition.
    source   VARCHAR(255) NOT NULL,
    position BIGINT       NOT NULL,
    PRIMARY KEY (source),
    CONSTRAINT checkpoints_position CHECK (position >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
