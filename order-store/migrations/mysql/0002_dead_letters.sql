-- Records the writer sent to the dead-letter topic, so stats can show them.
CREATE TABLE dead_letters (
    source      VARCHAR(255) NOT NULL,
    campaign_id VARCHAR(64)  NULL,
    reason      TEXT         NOT NULL,
    at_ms       BIGINT       NOT NULL,
    PRIMARY KEY (source),
    KEY dead_letters_by_campaign (campaign_id),
    CONSTRAINT dead_letters_at CHECK (at_ms >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
