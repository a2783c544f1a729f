-- Records the writer sent to the dead-letter topic, so stats can show them.
CREATE TABLE dead_letters (
    source      TEXT    NOT NULL PRIMARY KEY,
    campaign_id TEXT,
    reason      TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0)
) STRICT;
CREATE INDEX dead_letters_by_campaign ON dead_letters (campaign_id);
