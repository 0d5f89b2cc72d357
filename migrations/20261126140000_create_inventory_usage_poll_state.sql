-- Key inventory: one row per provider key, from the provider's key listing (or first seen in
-- usage when the listing does not have it yet). Timestamps are Unix seconds, UTC.
CREATE TABLE api_keys (
    source           TEXT    NOT NULL,
    key_id           TEXT    NOT NULL,
    name             TEXT,
    -- active | inactive | archived | expired | deleted | unknown (seen in usage only)
    status           TEXT    NOT NULL,
    created_at       INTEGER,
    expires_at       INTEGER,
    workspace_id     TEXT,
    partial_key_hint TEXT,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    -- 1 when the last inventory listing had the key, 0 when known only from usage.
    in_inventory     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (source, key_id)
) WITHOUT ROWID;

-- Usage per key, model and bucket. The primary key is the bucket's natural key: re-polling a
-- bucket overwrites its counters (never adds to them). Usage without an API key (Console
-- Workbench) is stored under key_id 'workbench'. WITHOUT ROWID: the primary key is the table, so
-- a key's history and the detector's scan read it in order without a second lookup.
CREATE TABLE usage_buckets (
    source                  TEXT    NOT NULL,
    key_id                  TEXT    NOT NULL,
    bucket_width            INTEGER NOT NULL,  -- seconds: 60, 3600 or 86400
    bucket_start            INTEGER NOT NULL,
    model                   TEXT    NOT NULL,
    uncached_input_tokens   INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    cache_write_5m_tokens   INTEGER NOT NULL,
    cache_write_1h_tokens   INTEGER NOT NULL,
    output_tokens           INTEGER NOT NULL,
    web_search_requests     INTEGER NOT NULL DEFAULT 0,
    requests                INTEGER,           -- NULL where the provider gives no count
    cost_usd                REAL,              -- NULL when the model has no price
    updated_at              INTEGER NOT NULL,
    PRIMARY KEY (source, key_id, bucket_width, bucket_start, model)
) WITHOUT ROWID;

-- Per source and stream (e.g. 'usage:3600'): where the next poll re-reads from. The cursor is
-- written in the same transaction as the data it covers, so it never passes unstored data.
CREATE TABLE poll_state (
    source               TEXT    NOT NULL,
    stream               TEXT    NOT NULL,
    cursor               INTEGER,
    last_attempt_at      INTEGER,
    last_success_at      INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    PRIMARY KEY (source, stream)
) WITHOUT ROWID;
